/*
 * api.h - the one public header of src/api: the doors into mxbatch.
 *
 * The SMTP submission server and, later, the admin HTTP API live here.
 * Everything runs on the daemon's event loop thread.
 */
#ifndef MXB_API_H
#define MXB_API_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct config;
struct queue;

/* ---- SMTP submission server (smtpd*.c, accounts.c) ----
 * One listener per [listen "NAME"] of the configuration: a Unix socket
 * (trusted: the routing tier) or TCP (STARTTLS, AUTH after TLS, relay only
 * after AUTH or from trusted_networks). A 250 to DATA / BDAT LAST is sent
 * only once the queue reports the message durable. */
struct smtpd;

/* smtpd_start - bind every listener of cfg (logs "listening on ..." for
 * each) and accept on base. cfg and q must outlive the server. NULL with a
 * clear error in err (bad certificate, accounts file, address in use,
 * ...) on failure; nothing is left bound then. */
struct smtpd *smtpd_start(struct event_base *base, const struct config *cfg,
                          struct queue *q, char *err, size_t errlen);
/* smtpd_stop_accepting - graceful stop: close the listeners, close idle
 * sessions with 421; a session receiving or committing a message finishes
 * it (its client gets the real answer), then gets 421. */
void smtpd_stop_accepting(struct smtpd *sd);
/* smtpd_busy - number of sessions still receiving or committing a message
 * (a graceful stop may wait while this is non-zero). */
size_t smtpd_busy(const struct smtpd *sd);
/* smtpd_reload - re-read the accounts files (SIGHUP). A file that fails to
 * load is logged and the accounts in force are kept. */
void smtpd_reload(struct smtpd *sd);
/* smtpd_stats_get - counters since start (metrics). Rejections are the
 * 4xx/5xx replies sent, by reason (smtpd_reject_names), plus the
 * connections refused before a session ("connections"). */
enum smtpd_reject {
	SMTPD_REJ_CONNECTIONS, SMTPD_REJ_AUTH_FAILED, SMTPD_REJ_AUTH_UNAVAILABLE,
	SMTPD_REJ_AUTH_REQUIRED, SMTPD_REJ_TLS_REQUIRED, SMTPD_REJ_RATE_LIMITED,
	SMTPD_REJ_RELAY_DENIED, SMTPD_REJ_SENDER_DENIED, SMTPD_REJ_SUPPRESSED,
	SMTPD_REJ_TOO_MANY_RCPTS, SMTPD_REJ_SIZE, SMTPD_REJ_BAD_DATA,
	SMTPD_REJ_STORAGE, SMTPD_REJ_SEQUENCE, SMTPD_REJ_SYNTAX, SMTPD_REJ_TIMEOUT,
	SMTPD_REJ_TOO_MANY_ERRORS, SMTPD_REJ_SHUTDOWN, SMTPD_REJ_OTHER,
	SMTPD_REJECT_REASONS
};
extern const char *const smtpd_reject_names[SMTPD_REJECT_REASONS];
struct smtpd_stats {
	uint64_t sessions_open, sessions_total;
	uint64_t messages, recipients;     /* accepted (durable, 250 sent) */
	uint64_t rejected[SMTPD_REJECT_REASONS];
};
void smtpd_stats_get(const struct smtpd *sd, struct smtpd_stats *out);
/* smtpd_reject_of - the reason of a reply line ("550 5.7.1 ...") */
enum smtpd_reject smtpd_reject_of(const char *reply, size_t len);
/* smtpd_free - close everything (in-progress messages are dropped, never
 * acknowledged). NULL is a no-op. Call before queue_close(). */
void smtpd_free(struct smtpd *sd);

/* ==== admin HTTP API (admin*.c; owned by the admin helper) ==== */
#include <stdint.h>

/* The scheduler's side of the admin API, filled in by daemon.c (src/api
 * never includes mxsched.h). Every function runs on the loop thread. */
struct json_t;                 /* jansson */
struct admin_sched_ops {
	void *ctx;
	/* array of site summaries (key, provider, mx hosts+addresses, shape in force:
	 * connections limit/current, messages_per_connection, recipients limit learned,
	 * multi_domain verdict, tls; open connections, ready recipients, suspended_until,
	 * backoff level, reason, counters delivered/bounced/deferred/transactions/
	 * connections_opened/possibly_delivered/splits) — new reference */
	struct json_t *(*sites)(void *ctx);
	/* one site: the summary plus domains, per_minute, last_replies */
	struct json_t *(*site)(void *ctx, const char *key);      /* NULL: unknown */
	int (*site_suspend)(void *ctx, const char *key, uint64_t ms, const char *reason);
	int (*site_resume)(void *ctx, const char *key);           /* 0 ok, -1 unknown */
	int (*site_retry_now)(void *ctx, const char *key);
	/* scheduler metrics as a JSON object of counters/histograms (recipients per
	 * transaction histogram buckets, transactions, connections opened, deferrals by
	 * class, DNS queries/cache hits) — new reference */
	struct json_t *(*metrics)(void *ctx);
	/* block-list monitor and reply-driven blocks: pools, addresses, per-zone
	 * states, per-site blocks, counters — new reference */
	struct json_t *(*blocklists)(void *ctx);
	/* release an address everywhere, an address at one site, or every
	 * address at one site (either may be NULL, not both); 0 ok, -1 unknown */
	int (*blocklist_release)(void *ctx, const char *address, const char *site);
	/* the site key that domain was last resolved to (cache only) into
	 * out; -1 unknown (GET /v1/messages?site=) */
	int (*domain_site)(void *ctx, const char *domain, char *out, size_t len);
	/* an operator bounces message id (all its recipients, or those of
	 * domain): 5.0.0 failures, one DSN, Bounce lines naming who; done(arg,
	 * queue_status, recipients bounced) once durable. 0 started, -1
	 * unknown message, -2 a bounce of it is in progress (no done call) */
	int (*msg_bounce)(void *ctx, uint64_t id, const char *domain, const char *who,
	                  void (*done)(void *arg, int status, size_t n), void *arg);
	/* the same as a delete: no DSN, one terminal AdminAction line per
	 * recipient written by the scheduler; a recipient in a transaction
	 * finishes it first. domain may list several, comma-separated */
	int (*msg_delete)(void *ctx, uint64_t id, const char *domain, const char *who,
	                  void (*done)(void *arg, int status, size_t n), void *arg);
};
struct admin;
/* admin_start - listen on [admin] listen with the bearer token(s) of
 * [admin] token_file (created with a random token, mode 0600, if missing;
 * refused if group/world-readable). cfg, q and ops must outlive it; ops
 * may be NULL (site endpoints then answer 503). NULL with the reason in
 * err on failure. */
struct admin *admin_start(struct event_base *base, const struct config *cfg,
                          struct queue *q, const struct admin_sched_ops *ops,
                          char *err, size_t errlen);   /* ops may be NULL */
/* admin_set_smtpd - the submission server whose counters /metrics shows
 * (sd must outlive a, or be unset with NULL first) */
void admin_set_smtpd(struct admin *a, const struct smtpd *sd);
void admin_stop(struct admin *a);  /* stop listening */
void admin_free(struct admin *a);  /* NULL is a no-op; before queue_close() */
/* ==== end of admin HTTP API ==== */

#endif
