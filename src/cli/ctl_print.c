/*
 * ctl_print.c - mxbatchctl's human output: tables in the spirit of
 * postqueue -p and kcli (one line per object, fixed columns, newest
 * information last), and key: value blocks for single objects.
 */
#include "cli/ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long long
geti(json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

static const char *
gets_(json_t *o, const char *k, const char *def)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s && *s ? s : def;
}

const char *
ctl_age(long long ms, char *buf, size_t len)
{
	long long s = ms / 1000;

	if (s >= 86400)
		snprintf(buf, len, "%lldd%lldh", s / 86400, s % 86400 / 3600);
	else if (s >= 3600)
		snprintf(buf, len, "%lldh%lldm", s / 3600, s % 3600 / 60);
	else if (s >= 60)
		snprintf(buf, len, "%lldm%llds", s / 60, s % 60);
	else
		snprintf(buf, len, "%llds", s);
	return buf;
}

void
ctl_print_json(json_t *o)
{
	char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	if (s) {
		puts(s);
		free(s);
	}
}

/* print_top - one "top" array of /v1/queue */
static void
print_top(json_t *o, const char *arr, const char *key, const char *count)
{
	json_t *a = json_object_get(o, arr), *e;
	char age[32];
	size_t i;

	if (json_array_size(a) == 0)
		return;
	printf("\n%-40s %10s %10s %s\n", key, count, "OLDEST", "LAST");
	json_array_foreach(a, i, e) {
		json_t *ag = json_object_get(e, "oldest_age_ms");

		printf("%-40s %10lld %10s %s\n", gets_(e, key, "(none)"), geti(e, count),
		       ag ? ctl_age(json_integer_value(ag), age, sizeof(age)) : "-",
		       gets_(e, "last_reply_class", "-"));
	}
}

void
ctl_print_queue(json_t *o)
{
	json_t *r = json_object_get(o, "recipients"), *t = json_object_get(o, "totals");
	json_t *old = json_object_get(o, "oldest"), *smp = json_object_get(o, "sample");
	char age[32];

	printf("messages %lld (%lld bytes), recipients %lld: ready %lld, deferred %lld, "
	       "in flight %lld, held %lld\n", geti(o, "messages"), geti(o, "bytes"),
	       geti(r, "total"), geti(r, "ready"), geti(r, "deferred"), geti(r, "inflight"),
	       geti(r, "held"));
	printf("since creation: %lld messages accepted; recipients delivered %lld, "
	       "bounced %lld, expired %lld, deleted %lld\n", geti(t, "messages"),
	       geti(t, "delivered"), geti(t, "bounced"), geti(t, "expired"),
	       geti(t, "deleted"));
	if (json_is_object(old))
		printf("oldest message %s, %s old\n", gets_(old, "id", "?"),
		       ctl_age(geti(old, "age_ms"), age, sizeof(age)));
	print_top(o, "top_sites", "site", "ready_recipients");
	print_top(o, "top_providers", "provider", "ready_recipients");
	print_top(o, "top_domains", "domain", "recipients");
	print_top(o, "top_tenants", "tenant", "recipients");
	if (smp && !json_is_true(json_object_get(smp, "complete")))
		printf("\n(domains and tenants from a sample of the %lld oldest messages)\n",
		       geti(smp, "messages"));
}

void
ctl_print_sites(json_t *o)
{
	json_t *a = json_object_get(o, "sites"), *s;
	size_t i;

	printf("%-40s %-12s %5s %7s %9s %9s %8s %s\n", "SITE", "PROVIDER", "CONNS",
	       "READY", "DELIVERED", "DEFERRED", "BOUNCED", "STATE");
	json_array_foreach(a, i, s) {
		json_t *c = json_object_get(s, "counters");

		printf("%-40s %-12s %5lld %7lld %9lld %9lld %8lld %s%s%s\n",
		       gets_(s, "site", "?"), gets_(s, "provider", "-"),
		       geti(s, "connections_open"), geti(s, "ready_recipients"),
		       geti(c, "delivered"), geti(c, "deferred"), geti(c, "bounced"),
		       json_is_true(json_object_get(s, "suspended")) ? "suspended" : "active",
		       json_object_get(s, "reason") ? ": " : "", gets_(s, "reason", ""));
	}
	if (json_array_size(a) == 0)
		printf("(no site known to the scheduler yet)\n");
}

/* hhmm - a wall-clock time in ms as UTC text (fmt for strftime) */
static const char *
hhmm(long long ms, const char *fmt, char *buf, size_t len)
{
	time_t sec = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&sec, &tm);
	strftime(buf, len, fmt, &tm);
	return buf;
}

/* print_minutes - the minutes of the last hour that saw an outcome */
static void
print_minutes(json_t *a)
{
	long long tot[3] = { 0, 0, 0 };
	json_t *m;
	size_t i;
	char t[16];

	printf("last hour, per minute (UTC):\n  %-6s %9s %7s %8s\n", "MINUTE",
	       "DELIVERED", "FAILED", "DEFERRED");
	json_array_foreach(a, i, m) {
		long long d = geti(m, "delivered"), f = geti(m, "failed"), r = geti(m, "deferred");

		tot[0] += d;
		tot[1] += f;
		tot[2] += r;
		if (d || f || r)
			printf("  %-6s %9lld %7lld %8lld\n",
			       hhmm(geti(m, "minute_ms"), "%H:%M", t, sizeof(t)), d, f, r);
	}
	printf("  %-6s %9lld %7lld %8lld\n", "total", tot[0], tot[1], tot[2]);
}

static void
print_replies(json_t *a)
{
	json_t *r;
	size_t i;
	char t[16];

	if (json_array_size(a) == 0) {
		printf("last replies: none yet\n");
		return;
	}
	printf("last replies (newest first):\n  %-8s %6s %-9s %-24s %-14s %s\n", "TIME",
	       "COUNT", "OUTCOME", "MX", "CATEGORY", "REPLY");
	json_array_foreach(a, i, r)
		printf("  %-8s %6lld %-9s %-24s %-14s %lld %s%s%s\n",
		       hhmm(geti(r, "time_ms"), "%H:%M:%S", t, sizeof(t)), geti(r, "count"),
		       gets_(r, "outcome", "?"), gets_(r, "mx", "-"),
		       gets_(r, "category", "-"), geti(r, "code"), gets_(r, "enhanced", ""),
		       json_is_string(json_object_get(r, "enhanced")) ? " " : "",
		       gets_(r, "text", ""));
}

/* print_site_state - suspension, shape and counters of one site */
static void
print_site_state(json_t *o)
{
	json_t *sh = json_object_get(o, "shape"), *c = json_object_get(o, "counters");
	json_t *mx, *ad;
	size_t i, j;
	char t[32];

	printf("site: %s\nprovider: %s\n", gets_(o, "site", "?"), gets_(o, "provider", "-"));
	if (json_is_true(json_object_get(o, "suspended")))
		printf("state: suspended until %s: %s\n",
		       hhmm(geti(o, "suspended_until_ms"), "%Y-%m-%dT%H:%M:%SZ", t, sizeof(t)),
		       gets_(o, "reason", ""));
	else
		printf("state: active\n");
	json_array_foreach(json_object_get(o, "mx"), i, mx) {
		printf("mx: %s", gets_(mx, "host", "?"));
		json_array_foreach(json_object_get(mx, "addresses"), j, ad)
			printf(" %s", json_string_value(ad));
		printf("\n");
	}
	printf("shape: connections %lld (allowed now %lld), recipients/transaction %lld "
	       "(learned %lld), messages/connection %lld, multi_domain %s, tls %s\n",
	       geti(sh, "connections"), geti(sh, "connections_allowed_now"),
	       geti(sh, "recipients_per_transaction"), geti(sh, "recipients_limit_learned"),
	       geti(sh, "messages_per_connection"), gets_(sh, "multi_domain", "?"),
	       gets_(sh, "tls", "?"));
	printf("now: connections open %lld, ready recipients %lld (%lld messages), "
	       "backoff level %lld, source %s\n", geti(o, "connections_open"),
	       geti(o, "ready_recipients"), geti(o, "ready_messages"),
	       geti(o, "backoff_level"), gets_(o, "source_address", "-"));
	printf("since start: delivered %lld, bounced %lld, deferred %lld, transactions "
	       "%lld, connections opened %lld\n", geti(c, "delivered"), geti(c, "bounced"),
	       geti(c, "deferred"), geti(c, "transactions"), geti(c, "connections_opened"));
}

void
ctl_print_site(json_t *o)
{
	json_t *d;
	size_t i;

	print_site_state(o);
	printf("domains:");
	json_array_foreach(json_object_get(o, "domains"), i, d)
		printf(" %s", json_string_value(d));
	printf("%s\n", json_is_false(json_object_get(o, "domains_complete")) ?
	       " (and more)" : "");
	print_minutes(json_object_get(o, "per_minute"));
	print_replies(json_object_get(o, "last_replies"));
}

void
ctl_print_kv(json_t *o, int indent)
{
	const char *k;
	json_t *v, *e;
	size_t i;

	json_object_foreach(o, k, v) {
		if (json_is_object(v)) {
			printf("%*s%s:\n", indent, "", k);
			ctl_print_kv(v, indent + 2);
		} else if (json_is_array(v) && json_array_size(v) && json_is_object(json_array_get(v, 0))) {
			printf("%*s%s:\n", indent, "", k);
			json_array_foreach(v, i, e) {
				printf("%*s-\n", indent + 2, "");
				ctl_print_kv(e, indent + 4);
			}
		} else {
			char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
			const char *t = json_string_value(v);

			printf("%*s%s: %s\n", indent, "", k, t ? t : s ? s : "?");
			free(s);
		}
	}
}

void
ctl_print_messages(json_t *o)
{
	json_t *a = json_object_get(o, "messages"), *m;
	char age[32];
	size_t i;

	printf("%-16s %8s %9s %6s %-5s %s\n", "ID", "AGE", "SIZE", "RCPTS", "HELD", "SENDER");
	json_array_foreach(a, i, m) {
		printf("%-16s %8s %9lld %6lld %-5s <%s>%s%s\n", gets_(m, "id", "?"),
		       ctl_age(geti(m, "age_ms"), age, sizeof(age)), geti(m, "size"),
		       geti(m, "recipients_live"),
		       json_is_true(json_object_get(m, "held")) ? "held" : "",
		       gets_(m, "sender", ""), json_object_get(m, "tenant") &&
		       !json_is_null(json_object_get(m, "tenant")) ? " tenant=" : "",
		       gets_(m, "tenant", ""));
	}
	printf("-- %zu message(s)", json_array_size(a));
	if (json_is_string(json_object_get(o, "next")))
		printf("; more: --after %s", gets_(o, "next", ""));
	printf("\n");
}

void
ctl_print_message(json_t *o)
{
	json_t *rs = json_object_get(o, "recipients"), *r;
	char age[32];
	size_t i;

	printf("id: %s\nsender: <%s>\nsize: %lld\nage: %s\nheld: %s\n",
	       gets_(o, "id", "?"), gets_(o, "sender", ""), geti(o, "size"),
	       ctl_age(geti(o, "age_ms"), age, sizeof(age)),
	       json_is_true(json_object_get(o, "held")) ? "yes" : "no");
	if (json_is_string(json_object_get(o, "tenant")))
		printf("tenant: %s\n", gets_(o, "tenant", ""));
	if (json_is_string(json_object_get(o, "envid")))
		printf("envid: %s\n", gets_(o, "envid", ""));
	printf("recipients: %lld of %lld left\n", geti(o, "recipients_live"),
	       geti(o, "recipients_total"));
	json_array_foreach(rs, i, r) {
		json_t *lr = json_object_get(r, "last_reply");

		printf("  %-40s %-9s attempts %lld", gets_(r, "address", "?"),
		       gets_(r, "state", "?"), geti(r, "attempts"));
		if (lr)
			printf("  last: %lld %s %s", geti(lr, "code"), gets_(lr, "enhanced", ""),
			       gets_(lr, "text", ""));
		printf("\n");
	}
	printf("headers:\n%s\n", gets_(o, "headers", ""));
}

void
ctl_print_event(json_t *ev)
{
	double t = json_number_value(json_object_get(ev, "time"));
	time_t sec = (time_t)t;
	struct tm tm;
	char ts[32];

	gmtime_r(&sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	printf("%s %-16s %s <%s>", ts, gets_(ev, "event", "?"), gets_(ev, "id", "-"),
	       gets_(ev, "recipient", ""));
	if (json_object_get(ev, "code"))
		printf(" %lld", geti(ev, "code"));
	if (json_object_get(ev, "reply"))
		printf(" %s", gets_(ev, "reply", ""));
	printf("\n");
}

/* zones_line - "zone=state" for each zone of an address or domain that is
 * not clean; "clean" when none is */
static void
zones_line(json_t *zones)
{
	json_t *z;
	size_t i;
	int any = 0;

	json_array_foreach(zones, i, z) {
		const char *st = gets_(z, "state", "?");

		if (strcmp(st, "clean") == 0 || strcmp(st, "unknown") == 0)
			continue;
		printf("%s%s=%s", any++ ? " " : "", gets_(z, "zone", "?"), st);
	}
	printf("%s\n", any ? "" : "clean");
}

/* print_blocks - the listing reason and, if any, the per-site blocks */
static void
print_blocks(json_t *a)
{
	json_t *b;
	char t[32];
	size_t i;

	if (json_object_get(a, "reason"))
		printf("    listed: %s\n", gets_(a, "reason", ""));
	json_array_foreach(json_object_get(a, "blocked_at"), i, b)
		printf("    blocked at %s since %s%s: %s\n", gets_(b, "site", "?"),
		       hhmm(geti(b, "since_ms"), "%Y-%m-%d %H:%M", t, sizeof(t)),
		       json_is_true(json_object_get(b, "suspended")) ? " (suspended)" : "",
		       gets_(b, "reason", ""));
}

/* bl_row - name, listed, state (suspended: its word), zones not clean */
static void
bl_row(json_t *a, const char *name, const char *suspended)
{
	printf("%-40s %-8s %-9s ", gets_(a, name, "?"),
	       json_is_true(json_object_get(a, "listed")) ? "yes" : "no",
	       json_is_true(json_object_get(a, "suspended")) ? suspended :
	       json_is_true(json_object_get(a, "released")) ? "released" : "active");
	zones_line(json_object_get(a, "zones"));
}

void
ctl_print_blocklists(json_t *o)
{
	json_t *arr = json_object_get(o, "addresses"), *a;
	size_t i;

	printf("%-40s %-8s %-9s %s\n", "ADDRESS", "LISTED", "STATE", "ZONES");
	json_array_foreach(arr, i, a) {
		bl_row(a, "address", "suspended");
		print_blocks(a);
	}
	if (json_array_size(arr) == 0)
		printf("(no sending address is watched)\n");
	arr = json_object_get(o, "domains");
	if (json_array_size(arr) == 0)
		return;
	printf("\n%-40s %-8s %-9s %s\n", "SENDING DOMAIN", "LISTED", "STATE", "ZONES");
	json_array_foreach(arr, i, a) {
		bl_row(a, "domain", "held");
		if (json_object_get(a, "reason"))
			printf("    listed: %s\n", gets_(a, "reason", ""));
	}
}
