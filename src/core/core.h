/*
 * core.h - the one public header of src/core: memory, time, logging,
 * duration/size parsing, address helpers and the configuration table.
 *
 * Every other module may include this header; core includes none of theirs.
 * Nothing here blocks except config_load() (start-up and reload only).
 */
#ifndef MXB_CORE_H
#define MXB_CORE_H

#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

/* ---- memory: out-of-memory aborts (decided once, here) ---- */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* is item one of the comma-separated names of list (case-insensitive)? */
int list_has(const char *list, const char *item);

/* ---- time ---- */
uint64_t now_ms(void);  /* wall clock, ms since the epoch (stored times) */
uint64_t mono_ms(void); /* monotonic clock, ms (timeouts, intervals) */

/* ---- logging ----
 * Each line carries the id of what it is about ("-" when none): a message id,
 * a session id ("s1a2b"), a site key. To stderr in the foreground, to syslog
 * as a daemon. log_warn/log_err append strerror(errno); the *x forms do not. */
enum log_level { LOG_LVL_ERR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

void log_init(const char *ident, int foreground, enum log_level level);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
int log_level_parse(const char *s, enum log_level *out); /* 0 ok, -1 unknown */
void log_reopen(void); /* SIGHUP */

void log_msg(enum log_level lvl, int with_errno, const char *id,
             const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#define log_err(id, ...)   log_msg(LOG_LVL_ERR, 1, (id), __VA_ARGS__)
#define log_errx(id, ...)  log_msg(LOG_LVL_ERR, 0, (id), __VA_ARGS__)
#define log_warn(id, ...)  log_msg(LOG_LVL_WARN, 1, (id), __VA_ARGS__)
#define log_warnx(id, ...) log_msg(LOG_LVL_WARN, 0, (id), __VA_ARGS__)
#define log_info(id, ...)  log_msg(LOG_LVL_INFO, 0, (id), __VA_ARGS__)
#define log_debug(id, ...) log_msg(LOG_LVL_DEBUG, 0, (id), __VA_ARGS__)

/* ---- the delivery log (JSON lines, one shared file) ----
 * Opened by the daemon from [log] delivery_log. Modules render whole lines
 * (a JSON object and '\n'; see docs/delivery-log.md) and append them;
 * each call is one write on an O_APPEND descriptor, so lines never mix.
 * Thread-safe. Without dlog_open() appends are dropped. */
int dlog_open(const char *path);    /* 0 ok, -1 (errno) */
void dlog_reopen(void);             /* SIGHUP */
void dlog_close(void);
int dlog_enabled(void);
void dlog_append(const char *buf, size_t len);
const char *dlog_file(void);        /* its path, or NULL */

/* ---- parsing of operator values (one place for the whole project) ----
 * durations: "250ms", "30s", "5m", "4h", "5d", "2w"; a bare number is seconds.
 * sizes: "512", "64K", "10M", "2G" (powers of 1024). Return 0 ok, -1 bad. */
int parse_duration_ms(const char *s, uint64_t *out_ms);
int parse_size(const char *s, uint64_t *out_bytes);
int parse_bool(const char *s, int *out); /* yes/no/true/false/on/off/1/0 */

/* ---- addresses ----
 * "host:port", "1.2.3.4:25", "[::1]:25", "host" (port = default_port).
 * Fills host (without brackets) and port. 0 ok, -1 bad. */
int parse_hostport(const char *s, char *host, size_t hostlen, int *port,
                   int default_port);

/* ---- configuration ----
 * One table of every option (src/core/config.c): section, key, type,
 * default, bounds, help. config_load(NULL) gives the built-in defaults.
 * Named sections ([site "x"], [listen "x"], [pool "x"], [tenant "x"]) are
 * lists. */
struct config_listen {
	char *name;
	char *socket;         /* Unix socket path, or NULL */
	char *address;        /* host:port, or NULL */
	unsigned mode;        /* Unix socket mode */
	char *group;          /* Unix socket group, or NULL */
	char *tls_cert, *tls_key;
	int implicit_tls;     /* 465-style */
	char *auth;           /* "none" | "required" */
	char *accounts;       /* accounts file, or NULL */
	char *trusted_networks; /* CIDR list, or NULL */
	uint64_t max_recipients;
	uint64_t max_connections;
	uint64_t max_connections_per_ip;
	uint64_t max_connections_per_ip_per_minute; /* new connections; 0 = no limit */
	uint64_t greet_wait_ms; /* TCP: pause before the greeting; early talkers refused */
	uint64_t idle_timeout_ms;
	uint64_t command_timeout_ms;
	uint64_t max_errors;
	char *suppressed;     /* refuse | accept: RCPT to a suppressed address */
	char *pool;           /* source address pool of its mail, or NULL */
};

struct config_site {
	char *pattern;        /* "default", an MX-host pattern, or a provider */
	uint64_t connections;
	uint64_t messages_per_connection;
	uint64_t recipients_per_transaction;
	uint64_t recipients_per_hour; /* 0 = unlimited */
	uint64_t connection_age_ms;
	uint64_t idle_ms;
	uint64_t max_ready;   /* recipients ready in memory; more wait on disk */
	char *multi_domain;   /* deny | allow | learn */
	char *tls;            /* none | may | encrypt | verify */
	char *pool;           /* source address pool name, or NULL */
	unsigned set_mask;    /* which fields the file set (bit per field) */
};

struct config_pool {
	char *name;
	char *addresses;      /* "ip=ehlo, ip=ehlo" as written */
};

struct config_tenant {    /* [tenant "NAME"]: NAME as stored on messages */
	char *name;
	char *pool;           /* source address pool of its mail, or NULL */
};

struct config {
	char *path;           /* file it came from, or NULL for defaults */
	/* [server] */
	char *hostname;
	char *user;
	char *pid_file;
	uint64_t shutdown_timeout_ms;
	/* [spool] */
	char *spool_path;
	uint64_t max_message_size;
	uint64_t queue_lifetime_ms;
	uint64_t spool_cache_size;
	/* [dns] */
	char *dns_servers;    /* "addr[:port], ..." or NULL for the system's */
	uint64_t dns_min_ttl_ms, dns_max_ttl_ms, dns_negative_ttl_ms;
	uint64_t dns_timeout_ms;
	uint64_t dns_error_ttl_ms; /* SERVFAIL / timeout answers cached */
	uint64_t dns_tries, dns_max_inflight, dns_cache_size;
	int dns_ipv6;         /* look up AAAA of exchangers */
	/* [delivery] */
	uint64_t smtp_port;
	char *allow_private_destinations; /* "no", "yes" or a CIDR list */
	uint64_t connect_timeout_ms;
	uint64_t greeting_timeout_ms, command_timeout_ms, data_timeout_ms,
	         final_timeout_ms; /* the SMTP client's reply timeouts */
	char *retry_schedule; /* "5m,10m,..." validated at load */
	uint64_t max_mx_addresses;
	int paused;           /* deliver nothing (benchmarks, maintenance) */
	char *tls_ca_file;    /* CA bundle for tls = verify; NULL = system */
	char *providers_file; /* provider table (MX suffix -> provider) */
	uint64_t max_inflight_rcpts; /* recipients the scheduler holds in RAM */
	uint64_t site_backoff_ms, site_backoff_max_ms; /* site suspension */
	uint64_t ready_full_delay_ms; /* on disk while a site's ready queue is full */
	uint64_t throttle_min_rate; /* AIMD floor, recipients per minute */
	/* [admin] */
	char *admin_listen;
	char *admin_token_file;
	/* [log] */
	char *log_level;
	char *delivery_log;
	/* [bounce] */
	char *bounce_rules_file; /* operator rules, before the shipped ones */
	uint64_t bounce_return_limit; /* RET=FULL returns up to this much */
	uint64_t suppress_bad_mailbox_ms, suppress_bad_domain_ms; /* 0 = off */
	uint64_t delay_warning_ms;          /* 0 = no delay warnings */
	uint64_t delay_warning_interval_ms; /* 0 = one warning only */
	/* [blocklists] */
	char *bl_zones;
	uint64_t bl_interval_ms;
	char *bl_action;
	uint64_t bl_release_after_ms; /* 0 = delisting or by hand only */
	char *bl_domains;     /* our sending domains, for the domain lists */
	char *bl_domain_zones;
	char *bl_domain_action; /* alert | suspend (hold their mail) */
	/* named sections */
	struct config_listen *listens; size_t n_listens;
	struct config_site *sites;     size_t n_sites;
	struct config_pool *pools;     size_t n_pools;
	struct config_tenant *tenants; size_t n_tenants;
};

/* Load path (NULL = defaults only). On error returns NULL and writes
 * "FILE:LINE: [section] key: what was wrong" lines into err. */
struct config *config_load(const char *path, char *err, size_t errlen);
void config_free(struct config *cfg);
/* Print the effective configuration, INI form, every option. */
void config_dump(const struct config *cfg, FILE *out);
/* The site shape in force for a site whose MX hosts are given (first
 * matching pattern, then "default"); never NULL. */
const struct config_site *config_site_for(const struct config *cfg,
                                          const char *const *mx_hosts,
                                          size_t n, const char *provider);

#endif
