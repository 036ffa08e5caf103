/*
 * mxsched.h - the MX-batching scheduler, public header of src/mxsched.
 *
 * The scheduler pulls due recipients from the store in bounded pages,
 * resolves their domains (c-ares, cached), groups them by site (the MX host
 * set), cuts batches of one message x one site x up to the site's recipient
 * limit, and hands them to per-site connection pools of the SMTP client.
 * Each recipient's outcome goes back to the store durably and to the
 * delivery log. Runs entirely on the daemon's event loop.
 */
#ifndef MXB_MXSCHED_H
#define MXB_MXSCHED_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct config;
struct queue;
struct mxsched;

/* Start scheduling on base. NULL on error, with the reason in err. */
struct mxsched *mxsched_new(struct event_base *base, const struct config *cfg,
                            struct queue *q, char *err, size_t errlen);
/* Graceful stop: claim nothing new, open no connection, let transactions in
 * flight finish; mxsched_busy() turns 0 once none is left. */
void mxsched_stop(struct mxsched *s);
int mxsched_busy(const struct mxsched *s);
void mxsched_free(struct mxsched *s);
/* Look at the store now (a submission just committed new recipients). */
void mxsched_kick(struct mxsched *s);

/* ---- postmasters' view and levers (mxsched_admin.c) ----
 * JSON results are new jansson references (json_t); site keys as shown. */
struct json_t;
struct json_t *mxsched_sites_json(struct mxsched *s);
/* One site with its recent history: domains routed to it, outcomes per
 * minute over the last hour, the last replies. NULL: unknown. */
struct json_t *mxsched_site_json(struct mxsched *s, const char *key);
/* The site key the last resolution of domain gave (resolver cache only,
 * no query) into out; -1 when unknown or longer than len. */
int mxsched_domain_site(struct mxsched *s, const char *domain, char *out,
                        size_t len);
/* Suspend for ms (0: [delivery] site_backoff); -1 if the site is unknown. */
int mxsched_site_suspend(struct mxsched *s, const char *key, uint64_t ms,
                         const char *reason);
int mxsched_site_resume(struct mxsched *s, const char *key);
/* Resume and look for due recipients at once. Recipients already waiting
 * on disk for the end of a suspension keep their time. */
int mxsched_site_retry_now(struct mxsched *s, const char *key);
struct json_t *mxsched_metrics_json(struct mxsched *s);
/* Sending addresses (by pool), their block-list state per zone, their
 * blocks at sites (reply-driven) and adaptive throttles, the monitor's
 * counters (GET /v1/blocklists). */
struct json_t *mxsched_blocklists_json(struct mxsched *s);
/* Use a blocked/suspended source address again now: address (IP text)
 * everywhere, or at one site (site key), or every address at that site.
 * A listing stays released until it clears and comes back. -1 if the
 * address or site is unknown (or both are NULL/empty). */
int mxsched_blocklist_release(struct mxsched *s, const char *address,
                              const char *site);

/* An operator bounces message id: its non-terminal recipients (those of
 * domain only, if not NULL) fail with 5.0.0 "deleted by administrator",
 * one DSN goes to the sender (NOTIFY respected, never to <>), each gets
 * a Bounce line naming `who`. Recipients in a transaction finish it first
 * (one delivered then stays delivered). done(arg, status, n) runs once
 * it is durable (status: a queue_status value, 0 = ok; n = recipients
 * bounced). Returns 0 (started), -1 unknown message, -2 a bounce of it
 * is in progress (done is then not called). */
typedef void (*mxsched_bounce_cb)(void *arg, int status, size_t n);
int mxsched_msg_bounce(struct mxsched *s, uint64_t id, const char *domain,
                       const char *who, mxsched_bounce_cb done, void *arg);
/* The same without the DSN: each recipient gets one terminal AdminAction
 * line (action "delete", by who) once its removal is durable; one in a
 * transaction finishes it first (delivered stays delivered, a 5xx from
 * the MX is its Bounce). domain: NULL, or a comma-separated list (also
 * for mxsched_msg_bounce). -2: a bounce or delete of it is in progress. */
int mxsched_msg_delete(struct mxsched *s, uint64_t id, const char *domain,
                       const char *who, mxsched_bounce_cb done, void *arg);

/* ---- retry and backoff arithmetic (pure; mxsched_backoff.c) ---- */

struct mxsched_retry {
	uint64_t *delays_ms;   /* [delivery] retry_schedule */
	size_t n;
	unsigned jitter_pct;   /* +/- this percentage, 0..50 */
};

/* "5m,10m,1h" -> schedule. 0 ok, -1 bad. */
int mxsched_retry_parse(const char *spec, struct mxsched_retry *out);
void mxsched_retry_free(struct mxsched_retry *r);
/* Delay before attempt number attempts+1 (attempts >= 1 made so far); the
 * last step repeats. rnd is a uniform random 32-bit value (for jitter). */
uint64_t mxsched_retry_delay(const struct mxsched_retry *r, unsigned attempts,
                             uint32_t rnd);
/* Next attempt time for a deferred recipient, or 0 when it must expire
 * (the next attempt would fall after submit_ms + lifetime_ms). */
uint64_t mxsched_retry_next(const struct mxsched_retry *r, unsigned attempts,
                            uint64_t now, uint64_t submit_ms,
                            uint64_t lifetime_ms, uint32_t rnd);
/* Site suspension: base * 2^(level-1), capped. level >= 1. */
uint64_t mxsched_backoff_delay(uint64_t base_ms, uint64_t cap_ms,
                               unsigned level);

#endif
