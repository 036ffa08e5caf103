/*
 * api.h - the one public header of src/api: the doors into mxbatch.
 *
 * The SMTP submission server and, later, the admin HTTP API live here.
 * Everything runs on the daemon's event loop thread.
 */
#ifndef MXB_API_H
#define MXB_API_H

#include <stddef.h>

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
void admin_stop(struct admin *a);  /* stop listening */
void admin_free(struct admin *a);  /* NULL is a no-op; before queue_close() */
/* ==== end of admin HTTP API ==== */

#endif
