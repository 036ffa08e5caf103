/*
 * config.c - the operator's configuration: one table of every option.
 *
 * Each row names the section kind, the key, its type, where it lands in
 * struct config (or in a named section's struct), its default, its bounds
 * and one line of help. Defaults are applied from the same table, so the
 * daemon runs with no file at all, and --check-config prints every row.
 * Parsing uses libinih through a line-counting reader so that every error
 * names the file, the line, the section and the key. Runs at start-up and
 * on reload only (it reads a file, so never on the hot path).
 */
#include "core/core.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum sect { S_SERVER, S_SPOOL, S_DNS, S_DELIVERY, S_ADMIN, S_LOG, S_LISTEN,
	    S_SITE, S_POOL, S_BLOCKLISTS, S_BOUNCE, S_TENANT, S_COUNT };
enum otype { T_STR, T_DURATION, T_SIZE, T_UINT, T_BOOL, T_MODE, T_ENUM,
	     T_DURLIST, T_HOSTLIST, T_CIDRS };

struct option {
	enum sect sect;
	const char *key;
	enum otype type;
	size_t off;
	const char *def;     /* NULL: unset */
	uint64_t min, max;   /* for numbers (ms for durations) */
	const char *choices; /* T_ENUM: "a|b|c" */
	const char *help;
};

#define G(f) offsetof(struct config, f)
#define L(f) offsetof(struct config_listen, f)
#define SI(f) offsetof(struct config_site, f)
#define P(f) offsetof(struct config_pool, f)
#define TN(f) offsetof(struct config_tenant, f)
#define DAY (86400000ull)
#define NOMAX UINT64_MAX

static const char *const sect_names[S_COUNT] = {
	"server", "spool", "dns", "delivery", "admin", "log", "listen", "site",
	"pool", "blocklists", "bounce", "tenant",
};

static const struct option options[] = {
	{ S_SERVER, "hostname", T_STR, G(hostname), NULL, 0, 0, NULL,
	  "EHLO name and Reporting-MTA (default: the machine's host name)" },
	{ S_SERVER, "user", T_STR, G(user), NULL, 0, 0, NULL,
	  "when started as root: bind, then run as this user" },
	{ S_SERVER, "pid_file", T_STR, G(pid_file), "var/mxbatchd.pid", 0, 0, NULL,
	  "pid file, written at start, removed at exit" },
	{ S_SERVER, "shutdown_timeout", T_DURATION, G(shutdown_timeout_ms), "10s",
	  0, 10 * 60000, NULL, "how long SIGTERM waits for in-flight work" },
	{ S_SPOOL, "path", T_STR, G(spool_path), "var/spool", 0, 0, NULL,
	  "directory of the embedded RocksDB spool" },
	{ S_SPOOL, "max_message_size", T_SIZE, G(max_message_size), "50M",
	  1024, 4ull << 30, NULL, "largest message accepted (SIZE)" },
	{ S_SPOOL, "queue_lifetime", T_DURATION, G(queue_lifetime_ms), "5d",
	  1000, 60 * DAY, NULL, "how long a recipient may wait before it expires" },
	{ S_SPOOL, "cache_size", T_SIZE, G(spool_cache_size), "64M",
	  1 << 20, 64ull << 30, NULL, "RocksDB block cache" },
	{ S_DNS, "servers", T_HOSTLIST, G(dns_servers), NULL, 0, 0, NULL,
	  "resolvers, address[:port] comma-separated (default: the system's)" },
	{ S_DNS, "min_ttl", T_DURATION, G(dns_min_ttl_ms), "60s", 0, DAY, NULL,
	  "shortest time an answer is cached" },
	{ S_DNS, "max_ttl", T_DURATION, G(dns_max_ttl_ms), "1d", 1000, 7 * DAY, NULL,
	  "longest time an answer is cached" },
	{ S_DNS, "negative_ttl", T_DURATION, G(dns_negative_ttl_ms), "5m", 0, DAY,
	  NULL, "how long NXDOMAIN / no-data answers are cached" },
	{ S_DNS, "error_ttl", T_DURATION, G(dns_error_ttl_ms), "15s", 100, 3600000,
	  NULL, "how long SERVFAIL / timed-out answers are cached" },
	{ S_DNS, "tries", T_UINT, G(dns_tries), "2", 1, 10, NULL,
	  "attempts per server and query" },
	{ S_DNS, "max_inflight", T_UINT, G(dns_max_inflight), "64", 1, 10000, NULL,
	  "queries outstanding at once (more wait their turn)" },
	{ S_DNS, "cache_size", T_UINT, G(dns_cache_size), "65536", 16, 10000000,
	  NULL, "records kept in the resolver cache" },
	{ S_DNS, "ipv6", T_BOOL, G(dns_ipv6), "yes", 0, 0, NULL,
	  "look up AAAA records of exchangers" },
	{ S_DNS, "timeout", T_DURATION, G(dns_timeout_ms), "5s", 100, 60000, NULL,
	  "per-query timeout (c-ares retries once per server)" },
	{ S_DELIVERY, "smtp_port", T_UINT, G(smtp_port), "25", 1, 65535, NULL,
	  "destination port of remote exchangers" },
	{ S_DELIVERY, "allow_private_destinations", T_CIDRS,
	  G(allow_private_destinations), "no", 0, 0, NULL,
	  "yes, no, or CIDRs of loopback/private exchangers allowed" },
	{ S_DELIVERY, "connect_timeout", T_DURATION, G(connect_timeout_ms), "30s",
	  100, 10 * 60000, NULL, "TCP connect timeout per exchanger address" },
	{ S_DELIVERY, "greeting_timeout", T_DURATION, G(greeting_timeout_ms), "5m",
	  100, 3600000, NULL, "wait for a server's greeting (RFC 5321 4.5.3.2)" },
	{ S_DELIVERY, "command_timeout", T_DURATION, G(command_timeout_ms), "5m",
	  100, 3600000, NULL, "wait for replies to EHLO, STARTTLS, MAIL, RCPT, RSET" },
	{ S_DELIVERY, "data_timeout", T_DURATION, G(data_timeout_ms), "3m", 100,
	  3600000, NULL, "DATA's 354, and progress while sending the body" },
	{ S_DELIVERY, "final_timeout", T_DURATION, G(final_timeout_ms), "10m", 100,
	  3600000, NULL, "the reply after the final dot or BDAT LAST" },
	{ S_DELIVERY, "retry_schedule", T_DURLIST, G(retry_schedule),
	  "5m,10m,20m,40m,1h,2h,4h", 0, 0, NULL,
	  "delays between attempts; the last repeats until queue_lifetime" },
	{ S_DELIVERY, "max_mx_addresses", T_UINT, G(max_mx_addresses), "5", 2, 100,
	  NULL, "exchanger addresses tried per attempt (RFC 5321 5: at least 2)" },
	{ S_DELIVERY, "paused", T_BOOL, G(paused), "no", 0, 0, NULL,
	  "accept and queue, but deliver nothing" },
	{ S_DELIVERY, "tls_ca_file", T_STR, G(tls_ca_file), NULL, 0, 0, NULL,
	  "CA bundle for tls = verify (default: the system's CA store)" },
	{ S_DELIVERY, "providers_file", T_STR, G(providers_file),
	  "contrib/providers.conf", 0, 0, NULL,
	  "provider table: MX host suffix -> provider and its shape" },
	{ S_DELIVERY, "max_inflight_recipients", T_UINT, G(max_inflight_rcpts),
	  "200000", 100, 100000000, NULL,
	  "recipients the scheduler holds in memory; the rest wait on disk" },
	{ S_DELIVERY, "ready_full_delay", T_DURATION, G(ready_full_delay_ms), "30s",
	  1000, DAY, NULL, "how long a recipient waits on disk, no attempt spent, "
	  "when its site already has [site] max_ready recipients ready" },
	{ S_DELIVERY, "site_backoff", T_DURATION, G(site_backoff_ms), "1m", 100,
	  DAY, NULL, "first suspension of a site that is unreachable or "
	  "answers with rate/reputation replies; doubles each time" },
	{ S_DELIVERY, "site_backoff_max", T_DURATION, G(site_backoff_max_ms), "4h",
	  100, 7 * DAY, NULL, "longest site suspension" },
	{ S_DELIVERY, "throttle_min_rate", T_UINT, G(throttle_min_rate), "60", 1,
	  1000000, NULL, "recipients per minute an adaptive throttle (after "
	  "rate-limit replies) never goes below" },
	{ S_ADMIN, "listen", T_STR, G(admin_listen), "127.0.0.1:8025", 0, 0, NULL,
	  "admin HTTP API address" },
	{ S_ADMIN, "token_file", T_STR, G(admin_token_file), "var/admin.token", 0, 0,
	  NULL, "bearer token file (created if missing; must not be world-readable)" },
	{ S_LOG, "level", T_ENUM, G(log_level), "info", 0, 0,
	  "error|warning|info|debug", "operational log level" },
	{ S_LOG, "delivery_log", T_STR, G(delivery_log), "var/delivery.jsonl", 0, 0,
	  NULL, "JSON-lines delivery log (reopened on SIGHUP)" },

	{ S_LISTEN, "socket", T_STR, L(socket), NULL, 0, 0, NULL,
	  "Unix socket path (the routing tier's door)" },
	{ S_LISTEN, "address", T_STR, L(address), NULL, 0, 0, NULL,
	  "TCP host:port" },
	{ S_LISTEN, "mode", T_MODE, L(mode), "0660", 0, 0777, NULL,
	  "Unix socket permissions" },
	{ S_LISTEN, "group", T_STR, L(group), NULL, 0, 0, NULL,
	  "Unix socket group" },
	{ S_LISTEN, "tls_cert", T_STR, L(tls_cert), NULL, 0, 0, NULL,
	  "certificate chain (PEM) for STARTTLS" },
	{ S_LISTEN, "tls_key", T_STR, L(tls_key), NULL, 0, 0, NULL,
	  "private key (PEM) for STARTTLS" },
	{ S_LISTEN, "implicit_tls", T_BOOL, L(implicit_tls), "no", 0, 0, NULL,
	  "TLS from the first byte (port 465 style)" },
	{ S_LISTEN, "auth", T_ENUM, L(auth), "none", 0, 0, "none|required",
	  "required: relay only after AUTH (offered only after TLS)" },
	{ S_LISTEN, "accounts", T_STR, L(accounts), NULL, 0, 0, NULL,
	  "hosting-customer accounts file" },
	{ S_LISTEN, "trusted_networks", T_CIDRS, L(trusted_networks), NULL, 0, 0,
	  NULL, "client networks that may relay without AUTH" },
	{ S_LISTEN, "max_recipients", T_UINT, L(max_recipients), "0", 0, 1000000,
	  NULL, "recipients per message (0: 10000 on sockets, 1000 on TCP)" },
	{ S_LISTEN, "max_connections", T_UINT, L(max_connections), "1000", 1,
	  1000000, NULL, "concurrent sessions on this listener" },
	{ S_LISTEN, "max_connections_per_ip", T_UINT, L(max_connections_per_ip),
	  "50", 1, 1000000, NULL, "concurrent sessions per client address" },
	{ S_LISTEN, "max_connections_per_ip_per_minute", T_UINT,
	  L(max_connections_per_ip_per_minute), "0", 0, 1000000, NULL,
	  "new connections per client address per minute, more get 421 4.7.0 "
	  "(TCP, 0: no limit, trusted_networks exempt)" },
	{ S_LISTEN, "greet_wait", T_DURATION, L(greet_wait_ms), "1s", 0, 60000,
	  NULL, "TCP: delay of the greeting, a client that talks first gets 554 "
	  "(0: off, see docs/submission.md)" },
	{ S_LISTEN, "idle_timeout", T_DURATION, L(idle_timeout_ms), "5m", 1000,
	  DAY, NULL, "close a session idle this long" },
	{ S_LISTEN, "command_timeout", T_DURATION, L(command_timeout_ms), "10m",
	  1000, DAY, NULL, "deadline for one command or one DATA phase" },
	{ S_LISTEN, "max_errors", T_UINT, L(max_errors), "10", 1, 1000, NULL,
	  "errors before the session is closed" },

	{ S_LISTEN, "suppressed", T_ENUM, L(suppressed), "refuse", 0, 0,
	  "refuse|accept", "RCPT to a suppressed address: refuse with 550 5.1.1, "
	  "or accept and bounce it (DSN)" },
	{ S_LISTEN, "pool", T_STR, L(pool), NULL, 0, 0, NULL,
	  "source address pool of mail submitted here (before the site's; "
	  "a tenant's pool comes first)" },
	{ S_SITE, "connections", T_UINT, SI(connections), "10", 1, 1000, NULL,
	  "concurrent connections per site" },
	{ S_SITE, "messages_per_connection", T_UINT, SI(messages_per_connection),
	  "100", 1, 1000000, NULL, "transactions before a connection is closed" },
	{ S_SITE, "recipients_per_transaction", T_UINT,
	  SI(recipients_per_transaction), "100", 1, 10000, NULL,
	  "recipients per MAIL transaction" },
	{ S_SITE, "recipients_per_hour", T_UINT, SI(recipients_per_hour), "0", 0,
	  NOMAX, NULL, "rate limit (0: none)" },
	{ S_SITE, "connection_age", T_DURATION, SI(connection_age_ms), "5m", 1000,
	  DAY, NULL, "close a connection older than this after its transaction" },
	{ S_SITE, "idle_timeout", T_DURATION, SI(idle_ms), "5s", 0, 10 * 60000,
	  NULL, "close a connection with no batch to carry after this" },
	{ S_SITE, "max_ready", T_UINT, SI(max_ready), "20000", 10, 100000000, NULL,
	  "recipients held in memory ready for the site; more wait on disk "
	  "([delivery] ready_full_delay), so a slow site cannot take every "
	  "in-memory slot from the others" },
	{ S_SITE, "multi_domain", T_ENUM, SI(multi_domain), "learn", 0, 0,
	  "deny|allow|learn", "may one transaction carry several domains" },
	{ S_SITE, "tls", T_ENUM, SI(tls), "may", 0, 0, "none|may|encrypt|verify",
	  "TLS policy towards the site's exchangers" },
	{ S_SITE, "pool", T_STR, SI(pool), NULL, 0, 0, NULL,
	  "source address pool, unless the message's tenant or listener "
	  "chooses one (default: the pool named \"default\", if any)" },

	{ S_POOL, "addresses", T_STR, P(addresses), NULL, 0, 0, NULL,
	  "source addresses: ip=ehlo-name*weight, comma-separated (weight "
	  "1..1000, default 1; see docs/reputation.md)" },
	{ S_TENANT, "pool", T_STR, TN(pool), NULL, 0, 0, NULL,
	  "source address pool of this tenant's mail (before the listener's "
	  "and the site's)" },

	{ S_BOUNCE, "rules_file", T_STR, G(bounce_rules_file), NULL, 0, 0, NULL,
	  "reply classification rules tried before the shipped ones" },
	{ S_BOUNCE, "return_limit", T_SIZE, G(bounce_return_limit), "1M", 0,
	  1ull << 30, NULL, "RET=FULL returns the message up to this size, "
	  "else its headers" },
	{ S_BOUNCE, "suppress_bad_mailbox", T_DURATION, G(suppress_bad_mailbox_ms),
	  "30d", 0, 3650 * DAY, NULL, "suppress an address that hard-bounced as "
	  "unknown/inactive mailbox for this long (0: never)" },
	{ S_BOUNCE, "suppress_bad_domain", T_DURATION, G(suppress_bad_domain_ms),
	  "3d", 0, 3650 * DAY, NULL, "suppress an address whose domain does not "
	  "exist for this long (0: never)" },
	{ S_BOUNCE, "delay_warning", T_DURATION, G(delay_warning_ms), "0", 0,
	  30 * DAY, NULL, "warn the sender (a \"delayed\" DSN) about recipients "
	  "still queued this long after submission (0: never)" },
	{ S_BOUNCE, "delay_warning_interval", T_DURATION,
	  G(delay_warning_interval_ms), "1d", 0, 30 * DAY, NULL, "at most one "
	  "delay warning per recipient this often (0: only one)" },
	{ S_BLOCKLISTS, "zones", T_STR, G(bl_zones), NULL, 0, 0, NULL,
	  "DNSBL zones checked for our sending addresses" },
	{ S_BLOCKLISTS, "interval", T_DURATION, G(bl_interval_ms), "15m", 1000,
	  DAY, NULL, "how often each address is checked" },
	{ S_BLOCKLISTS, "action", T_ENUM, G(bl_action), "suspend", 0, 0,
	  "alert|suspend", "what a listing does" },
	{ S_BLOCKLISTS, "release_after", T_DURATION, G(bl_release_after_ms), "4h",
	  0, 30 * DAY, NULL, "an address blocked for a site by a reply, or "
	  "suspended for a listing, is used again after this long at the latest "
	  "(0: only when delisted or released by hand)" },
	{ S_BLOCKLISTS, "domains", T_STR, G(bl_domains), NULL, 0, 0, NULL,
	  "our sending domains, checked on the domain_zones" },
	{ S_BLOCKLISTS, "domain_zones", T_STR, G(bl_domain_zones), NULL, 0, 0, NULL,
	  "domain block lists (DBL) checked for the sending domains" },
	{ S_BLOCKLISTS, "domain_action", T_ENUM, G(bl_domain_action), "alert", 0, 0,
	  "alert|suspend", "what a domain listing does (suspend: hold the mail "
	  "whose envelope sender is in that domain)" },
};
#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

struct parse_ctx {
	struct config *cfg;
	const char *file;
	FILE *fp;
	int line;
	int line_too_long;
	char *err;
	size_t errlen, errused;
	int nerr;
};

static void
perr(struct parse_ctx *c, const char *section, const char *key,
     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* perr - append "FILE:LINE: [section] key: what" to the error text */
static void
perr(struct parse_ctx *c, const char *section, const char *key,
     const char *fmt, ...)
{
	char what[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	c->nerr++;
	if (c->errused >= c->errlen)
		return;
	n = snprintf(c->err + c->errused, c->errlen - c->errused,
	             "%s:%d: [%s]%s%s: %s\n", c->file, c->line, section,
	             key ? " " : "", key ? key : "", what);
	if (n > 0)
		c->errused += (size_t)n;
	if (c->errused > c->errlen)
		c->errused = c->errlen;
}

static int
named_kind(enum sect kind)
{
	return kind == S_LISTEN || kind == S_SITE || kind == S_POOL || kind == S_TENANT;
}

/* split_section - "listen \"routing\"" -> kind and name */
static int
split_section(const char *s, enum sect *kind, char *name, size_t namelen)
{
	size_t klen = strcspn(s, " \t\"");
	const char *q;
	int i;

	for (i = 0; i < S_COUNT; i++)
		if (strlen(sect_names[i]) == klen &&
		    strncasecmp(s, sect_names[i], klen) == 0)
			break;
	if (i == S_COUNT)
		return -1;
	*kind = (enum sect)i;
	name[0] = '\0';
	s += klen;
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '\0')
		return named_kind(*kind) ? -2 : 0;
	if (!named_kind(*kind))
		return -3;
	if (*s != '"' || (q = strchr(s + 1, '"')) == NULL || q[1] != '\0' ||
	    q == s + 1 || (size_t)(q - s) > namelen)
		return -2;
	memcpy(name, s + 1, (size_t)(q - s - 1));
	name[q - s - 1] = '\0';
	return 0;
}

static void
set_string(char **slot, const char *v)
{
	free(*slot);
	*slot = v ? xstrdup(v) : NULL;
}

/* check_list - every comma-separated item is non-empty and satisfies ok() */
static int
check_list(const char *v, int (*ok)(const char *item))
{
	char item[256];
	const char *p = v;

	for (;;) {
		size_t n = strcspn(p, ",");
		const char *b = p, *e = p + n;
		while (b < e && isspace((unsigned char)*b))
			b++;
		while (e > b && isspace((unsigned char)e[-1]))
			e--;
		if (e == b || (size_t)(e - b) >= sizeof(item))
			return -1;
		memcpy(item, b, (size_t)(e - b));
		item[e - b] = '\0';
		if (!ok(item))
			return -1;
		if (p[n] == '\0')
			return 0;
		p += n + 1;
	}
}

static int
ok_duration(const char *s)
{
	uint64_t ms;
	return parse_duration_ms(s, &ms) == 0 && ms > 0;
}

static int
ok_hostport(const char *s)
{
	char host[256];
	int port;
	return parse_hostport(s, host, sizeof(host), &port, 53) == 0;
}

static int
ok_cidr(const char *s)
{
	char buf[64];
	unsigned char addr[16];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	int v6, bits = -1;

	if (n == 0 || n >= sizeof(buf))
		return 0;
	memcpy(buf, s, n);
	buf[n] = '\0';
	v6 = strchr(buf, ':') != NULL;
	if (inet_pton(v6 ? AF_INET6 : AF_INET, buf, addr) != 1)
		return 0;
	if (slash) {
		char *e;
		bits = (int)strtol(slash + 1, &e, 10);
		if (*e != '\0' || e == slash + 1 || bits < 0 || bits > (v6 ? 128 : 32))
			return 0;
	}
	return 1;
}

static int
enum_ok(const char *choices, const char *v)
{
	size_t n = strlen(v);
	const char *p = choices;

	while (p && *p) {
		size_t len = strcspn(p, "|");
		if (len == n && strncasecmp(p, v, n) == 0)
			return 1;
		p += len;
		if (*p == '|')
			p++;
	}
	return 0;
}

/* number_value - parse a numeric option and check its bounds */
static int
number_value(const struct option *o, const char *v, uint64_t *out,
             const char **why)
{
	int b;
	char *e;

	switch (o->type) {
	case T_DURATION:
		*why = "not a duration (e.g. 30s, 5m, 4h, 5d)";
		if (parse_duration_ms(v, out) < 0)
			return -1;
		break;
	case T_SIZE:
		*why = "not a size (e.g. 512K, 50M, 1G)";
		if (parse_size(v, out) < 0)
			return -1;
		break;
	case T_BOOL:
		*why = "not a boolean (yes or no)";
		if (parse_bool(v, &b) < 0)
			return -1;
		*out = (uint64_t)b;
		return 0;
	case T_MODE:
		*why = "not an octal mode (e.g. 0660)";
		*out = strtoull(v, &e, 8);
		if (*v == '\0' || *e != '\0')
			return -1;
		break;
	default:
		*why = "not a non-negative integer";
		if (!isdigit((unsigned char)*v))
			return -1;
		*out = strtoull(v, &e, 10);
		if (*e != '\0')
			return -1;
		break;
	}
	if (*out < o->min || *out > o->max) {
		*why = "out of range";
		return -1;
	}
	return 0;
}

/* option_apply - parse value v of option o into the struct at base */
static void value_text(const struct option *o, const void *base, char *buf,
                       size_t len);

static int
option_apply(const struct option *o, void *base, const char *v,
             const char **why)
{
	char *slot = (char *)base + o->off;
	uint64_t num;

	switch (o->type) {
	case T_STR:
		set_string((char **)slot, *v ? v : NULL);
		return 0;
	case T_ENUM:
		*why = "not one of the allowed values";
		if (!enum_ok(o->choices, v))
			return -1;
		set_string((char **)slot, v);
		return 0;
	case T_DURLIST:
		*why = "not a comma-separated list of durations";
		if (check_list(v, ok_duration) < 0)
			return -1;
		set_string((char **)slot, v);
		return 0;
	case T_HOSTLIST:
		*why = "not a comma-separated list of address[:port]";
		if (*v == '\0' && o->def == NULL) { /* as --check-config prints unset */
			set_string((char **)slot, NULL);
			return 0;
		}
		if (check_list(v, ok_hostport) < 0)
			return -1;
		set_string((char **)slot, v);
		return 0;
	case T_CIDRS:
		*why = "not yes, no, or a comma-separated list of CIDRs";
		if (*v == '\0' && o->def == NULL) {
			set_string((char **)slot, NULL);
			return 0;
		}
		if (strcasecmp(v, "yes") && strcasecmp(v, "no") &&
		    check_list(v, ok_cidr) < 0)
			return -1;
		set_string((char **)slot, v);
		return 0;
	case T_BOOL:
	case T_MODE:
		if (number_value(o, v, &num, why) < 0)
			return -1;
		if (o->type == T_BOOL)
			*(int *)slot = (int)num;
		else
			*(unsigned *)slot = (unsigned)num;
		return 0;
	default:
		if (number_value(o, v, &num, why) < 0)
			return -1;
		*(uint64_t *)slot = num;
		return 0;
	}
}

/* apply_defaults - every option of a section kind to its default */
static void
apply_defaults(enum sect kind, void *base)
{
	const char *why;
	size_t i;

	for (i = 0; i < N_OPTIONS; i++)
		if (options[i].sect == kind && options[i].def != NULL)
			if (option_apply(&options[i], base, options[i].def, &why) < 0)
				abort(); /* a default that fails its own check */
}

static const struct option *
option_find(enum sect kind, const char *key)
{
	size_t i;

	for (i = 0; i < N_OPTIONS; i++)
		if (options[i].sect == kind && strcasecmp(options[i].key, key) == 0)
			return &options[i];
	return NULL;
}

/* site_bit - the set_mask bit of a [site] option (its rank among them) */
static unsigned
site_bit(const struct option *o)
{
	unsigned rank = 0;
	const struct option *p;

	for (p = options; p < o; p++)
		if (p->sect == S_SITE)
			rank++;
	return 1u << rank;
}

/* inherit_site - fields a [site "x"] did not set come from [site "default"] */
static void
inherit_site(struct config_site *s, const struct config_site *def)
{
	const char *why;
	char val[1024];
	size_t i;

	for (i = 0; i < N_OPTIONS; i++) {
		const struct option *o = &options[i];
		if (o->sect != S_SITE || (s->set_mask & site_bit(o)))
			continue;
		value_text(o, def, val, sizeof(val));
		if (o->type == T_STR && val[0] == '\0')
			continue;
		if (option_apply(o, s, val, &why) < 0)
			abort();
	}
}

/* named_section - find or create the struct of [kind "name"] */
static void *
named_section(struct config *cfg, enum sect kind, const char *name)
{
	size_t i;

	switch (kind) {
	case S_LISTEN:
		for (i = 0; i < cfg->n_listens; i++)
			if (strcmp(cfg->listens[i].name, name) == 0)
				return &cfg->listens[i];
		cfg->listens = xrealloc(cfg->listens, (cfg->n_listens + 1) * sizeof(*cfg->listens));
		memset(&cfg->listens[cfg->n_listens], 0, sizeof(*cfg->listens));
		apply_defaults(S_LISTEN, &cfg->listens[cfg->n_listens]);
		cfg->listens[cfg->n_listens].name = xstrdup(name);
		return &cfg->listens[cfg->n_listens++];
	case S_SITE:
		for (i = 0; i < cfg->n_sites; i++)
			if (strcasecmp(cfg->sites[i].pattern, name) == 0)
				return &cfg->sites[i];
		cfg->sites = xrealloc(cfg->sites, (cfg->n_sites + 1) * sizeof(*cfg->sites));
		memset(&cfg->sites[cfg->n_sites], 0, sizeof(*cfg->sites));
		apply_defaults(S_SITE, &cfg->sites[cfg->n_sites]);
		cfg->sites[cfg->n_sites].pattern = xstrdup(name);
		return &cfg->sites[cfg->n_sites++];
	case S_POOL:
		for (i = 0; i < cfg->n_pools; i++)
			if (strcmp(cfg->pools[i].name, name) == 0)
				return &cfg->pools[i];
		cfg->pools = xrealloc(cfg->pools, (cfg->n_pools + 1) * sizeof(*cfg->pools));
		memset(&cfg->pools[cfg->n_pools], 0, sizeof(*cfg->pools));
		cfg->pools[cfg->n_pools].name = xstrdup(name);
		return &cfg->pools[cfg->n_pools++];
	case S_TENANT:
		for (i = 0; i < cfg->n_tenants; i++)
			if (strcmp(cfg->tenants[i].name, name) == 0)
				return &cfg->tenants[i];
		cfg->tenants = xrealloc(cfg->tenants, (cfg->n_tenants + 1) * sizeof(*cfg->tenants));
		memset(&cfg->tenants[cfg->n_tenants], 0, sizeof(*cfg->tenants));
		cfg->tenants[cfg->n_tenants].name = xstrdup(name);
		return &cfg->tenants[cfg->n_tenants++];
	default:
		return cfg;
	}
}

static int
config_on_kv(void *user, const char *section, const char *key, const char *value)
{
	struct parse_ctx *c = user;
	const struct option *o;
	const char *why = NULL;
	char name[256];
	enum sect kind;
	void *base;
	int r;

	if (c->line_too_long) {
		perr(c, section, key, "line too long");
		return 1;
	}
	if ((r = split_section(section, &kind, name, sizeof(name))) < 0) {
		perr(c, section, NULL, r == -1 ? "unknown section" :
		     r == -2 ? "section needs a quoted name, e.g. [site \"default\"]"
		             : "this section takes no name");
		return 1;
	}
	if ((o = option_find(kind, key)) == NULL) {
		perr(c, section, key, "unknown key");
		return 1;
	}
	base = named_section(c->cfg, kind, name);
	if (option_apply(o, base, value, &why) < 0) {
		perr(c, section, key, "'%s' is %s", value, why);
		return 1;
	}
	if (kind == S_SITE)
		((struct config_site *)base)->set_mask |= site_bit(o);
	return 1;
}

/* reader - fgets that counts lines for error messages */
static char *
reader(char *str, int num, void *stream)
{
	struct parse_ctx *c = stream;
	char *r = fgets(str, num, c->fp);
	size_t n;

	if (r == NULL)
		return NULL;
	c->line++;
	n = strlen(r);
	c->line_too_long = (n == (size_t)num - 1 && r[n - 1] != '\n' && !feof(c->fp));
	if (c->line_too_long) { /* swallow the rest of the line */
		int ch;
		while ((ch = fgetc(c->fp)) != EOF && ch != '\n')
			;
	}
	return r;
}

static void
default_listener(struct config *cfg)
{
	struct config_listen *l = named_section(cfg, S_LISTEN, "routing");
	set_string(&l->socket, "var/mxbatch.sock");
}

/* finish - cross-option checks and derived defaults */
static void
finish(struct parse_ctx *c)
{
	struct config *cfg = c->cfg;
	const struct config_site *def;
	size_t i;

	c->line = 0;
	if (cfg->n_listens == 0)
		default_listener(cfg);
	for (i = 0; i < cfg->n_listens; i++) {
		struct config_listen *l = &cfg->listens[i];
		char sect[300];
		snprintf(sect, sizeof(sect), "listen \"%s\"", l->name);
		if ((l->socket == NULL) == (l->address == NULL))
			perr(c, sect, NULL, "needs exactly one of socket or address");
		if (l->max_recipients == 0)
			l->max_recipients = l->socket ? 10000 : 1000;
		if ((l->tls_cert == NULL) != (l->tls_key == NULL))
			perr(c, sect, "tls_key", "tls_cert and tls_key go together");
		if (l->implicit_tls && l->tls_cert == NULL)
			perr(c, sect, "implicit_tls", "needs tls_cert and tls_key");
		if (l->auth && strcasecmp(l->auth, "required") == 0 &&
		    l->accounts == NULL)
			perr(c, sect, "accounts", "auth = required needs an accounts file");
	}
	def = named_section(cfg, S_SITE, "default");
	for (i = 0; i < cfg->n_sites; i++)
		if (&cfg->sites[i] != def)
			inherit_site(&cfg->sites[i], def);
	if (cfg->dns_min_ttl_ms > cfg->dns_max_ttl_ms)
		perr(c, "dns", "min_ttl", "is larger than max_ttl");
}

struct config *
config_load(const char *path, char *err, size_t errlen)
{
	struct config *cfg = xcalloc(1, sizeof(*cfg));
	struct parse_ctx c = { .cfg = cfg, .file = path ? path : "(defaults)",
	                       .err = err, .errlen = errlen };
	int r;

	if (errlen)
		err[0] = '\0';
	apply_defaults(S_SERVER, cfg);
	apply_defaults(S_SPOOL, cfg);
	apply_defaults(S_DNS, cfg);
	apply_defaults(S_DELIVERY, cfg);
	apply_defaults(S_ADMIN, cfg);
	apply_defaults(S_LOG, cfg);
	apply_defaults(S_BLOCKLISTS, cfg);
	apply_defaults(S_BOUNCE, cfg);
	named_section(cfg, S_SITE, "default");
	if (path != NULL) {
		cfg->path = xstrdup(path);
		if ((c.fp = fopen(path, "r")) == NULL) {
			snprintf(err, errlen, "%s: cannot open: %s\n", path, strerror(errno));
			config_free(cfg);
			return NULL;
		}
		r = ini_parse_stream(reader, &c, config_on_kv, &c);
		fclose(c.fp);
		if (r > 0) {
			c.line = r;
			perr(&c, "-", NULL, "syntax error (expected [section] or key = value)");
		}
	}
	finish(&c);
	if (c.nerr > 0) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

static void
free_fields(enum sect kind, void *base)
{
	size_t i;

	for (i = 0; i < N_OPTIONS; i++) {
		const struct option *o = &options[i];
		if (o->sect == kind && (o->type == T_STR || o->type == T_ENUM ||
		    o->type == T_DURLIST || o->type == T_HOSTLIST || o->type == T_CIDRS))
			free(*(char **)((char *)base + o->off));
	}
}

void
config_free(struct config *cfg)
{
	size_t i;
	int k;

	if (cfg == NULL)
		return;
	for (k = 0; k < S_COUNT; k++)
		if (!named_kind((enum sect)k))
			free_fields((enum sect)k, cfg);
	for (i = 0; i < cfg->n_listens; i++) {
		free_fields(S_LISTEN, &cfg->listens[i]);
		free(cfg->listens[i].name);
	}
	for (i = 0; i < cfg->n_sites; i++) {
		free_fields(S_SITE, &cfg->sites[i]);
		free(cfg->sites[i].pattern);
	}
	for (i = 0; i < cfg->n_pools; i++) {
		free_fields(S_POOL, &cfg->pools[i]);
		free(cfg->pools[i].name);
	}
	free(cfg->listens);
	free(cfg->sites);
	for (i = 0; i < cfg->n_tenants; i++) {
		free_fields(S_TENANT, &cfg->tenants[i]);
		free(cfg->tenants[i].name);
	}
	free(cfg->pools);
	free(cfg->tenants);
	free(cfg->path);
	free(cfg);
}

/* duration_text - ms in the largest unit that divides it: 5d, 30s, 250ms */
static void
duration_text(uint64_t v, char *buf, size_t len)
{
	static const struct { uint64_t ms; const char *sfx; } u[] = {
		{ 86400000, "d" }, { 3600000, "h" }, { 60000, "m" }, { 1000, "s" },
	};
	size_t i;

	for (i = 0; i < 4; i++)
		if (v && v % u[i].ms == 0) {
			snprintf(buf, len, "%llu%s", (unsigned long long)(v / u[i].ms), u[i].sfx);
			return;
		}
	snprintf(buf, len, "%llums", (unsigned long long)v);
}

/* value_text - an option's current value as the operator would write it */
static void
value_text(const struct option *o, const void *base, char *buf, size_t len)
{
	const char *slot = (const char *)base + o->off;
	uint64_t v;

	switch (o->type) {
	case T_BOOL:
		snprintf(buf, len, "%s", *(const int *)slot ? "yes" : "no");
		return;
	case T_MODE:
		snprintf(buf, len, "%04o", *(const unsigned *)slot);
		return;
	case T_UINT:
		snprintf(buf, len, "%llu", (unsigned long long)*(const uint64_t *)slot);
		return;
	case T_SIZE:
		v = *(const uint64_t *)slot;
		if (v && v % (1 << 20) == 0)
			snprintf(buf, len, "%lluM", (unsigned long long)(v >> 20));
		else
			snprintf(buf, len, "%llu", (unsigned long long)v);
		return;
	case T_DURATION:
		v = *(const uint64_t *)slot;
		duration_text(v, buf, len);
		return;
	default:
		snprintf(buf, len, "%s", *(char *const *)slot ? *(char *const *)slot : "");
		return;
	}
}

static void
dump_section(FILE *out, enum sect kind, const char *name, const void *base)
{
	char val[1024];
	int pad, room;
	size_t i;

	if (name)
		fprintf(out, "\n[%s \"%s\"]\n", sect_names[kind], name);
	else
		fprintf(out, "\n[%s]\n", sect_names[kind]);
	for (i = 0; i < N_OPTIONS; i++) {
		if (options[i].sect != kind)
			continue;
		value_text(&options[i], base, val, sizeof(val));
		pad = (int)(strlen(options[i].key) + strlen(val) < 40 ?
		            40 - strlen(options[i].key) - strlen(val) : 1);
		room = 190 - (int)(strlen(options[i].key) + strlen(val)) - pad - 5;
		/* one line under inih's 200 bytes, so the dump loads again */
		fprintf(out, "%s = %s%*s; %.*s\n", options[i].key, val, pad, "",
		        room > 20 ? room : 20, options[i].help);
	}
}

void
config_dump(const struct config *cfg, FILE *out)
{
	size_t i;
	int k;

	fprintf(out, "; effective configuration (%s)\n",
	        cfg->path ? cfg->path : "built-in defaults");
	for (k = S_SERVER; k <= S_LOG; k++)
		dump_section(out, (enum sect)k, NULL, cfg);
	dump_section(out, S_BOUNCE, NULL, cfg);
	dump_section(out, S_BLOCKLISTS, NULL, cfg);
	for (i = 0; i < cfg->n_listens; i++)
		dump_section(out, S_LISTEN, cfg->listens[i].name, &cfg->listens[i]);
	for (i = 0; i < cfg->n_sites; i++)
		dump_section(out, S_SITE, cfg->sites[i].pattern, &cfg->sites[i]);
	for (i = 0; i < cfg->n_pools; i++)
		dump_section(out, S_POOL, cfg->pools[i].name, &cfg->pools[i]);
	for (i = 0; i < cfg->n_tenants; i++)
		dump_section(out, S_TENANT, cfg->tenants[i].name, &cfg->tenants[i]);
}

const struct config_site *
config_site_for(const struct config *cfg, const char *const *mx_hosts,
                size_t n, const char *provider)
{
	const struct config_site *def = NULL;
	size_t i, j;

	for (i = 0; i < cfg->n_sites; i++) {
		const struct config_site *s = &cfg->sites[i];
		if (strcasecmp(s->pattern, "default") == 0) {
			def = s;
			continue;
		}
		if (provider && strcasecmp(s->pattern, provider) == 0)
			return s;
		for (j = 0; j < n; j++)
			if (fnmatch(s->pattern, mx_hosts[j], FNM_CASEFOLD) == 0)
				return s;
	}
	return def;
}
