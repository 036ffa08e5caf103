/*
 * mxsched_internal.h - structures shared by the files of src/mxsched.
 * No other folder includes this.
 *
 * In memory the scheduler holds only claimed recipients (bounded by
 * [delivery] max_inflight_recipients), the messages they belong to, the
 * domains being resolved and the active sites with their connections.
 * State = which list an object is on:
 *   rcpt: on a domain's wait list (resolving) -> on a site's mset (ready)
 *         -> in a batch (in flight) -> gone (outcome recorded).
 */
#ifndef MXB_MXSCHED_INTERNAL_H
#define MXB_MXSCHED_INTERNAL_H

#include <stdio.h>
#include <sys/queue.h>

#include "core/core.h"
#include "mxsched/mxsched.h"
#include "mxsched/resolve.h"
#include "mxsched/sitekey.h"
#include "bounce/bounce.h"
#include "queue/queue.h"
#include "smtpclient/smtpc.h"

struct event;

#define RPT_BUCKETS 10   /* recipients-per-transaction histogram buckets */

/* ---- a small string-keyed hash map (mxsched_map.c) ---- */
struct smap_ent {
	struct smap_ent *next;
	char *key;
	void *val;
};
struct smap {
	struct smap_ent **b;
	size_t nb, n;
};
void smap_init(struct smap *m);
void *smap_get(const struct smap *m, const char *key);
void smap_put(struct smap *m, const char *key, void *val);
void *smap_del(struct smap *m, const char *key);
void smap_clear(struct smap *m, void (*free_val)(void *));
/* call fn for every value (fn must not change the map) */
void smap_each(const struct smap *m, void (*fn)(void *val, void *arg), void *arg);

/* ---- objects ---- */
struct qmsg {                   /* a message with recipients in memory */
	queue_msgid id;
	char idtext[QUEUE_ID_TEXT_LEN];
	struct queue_envelope *env;
	unsigned refs;              /* recipients in memory (+ temporary holds) */
	unsigned resolving;         /* of which waiting for their domain */
	struct site **sites;        /* sites holding its ready recipients */
	size_t n_sites;
};

struct rcpt {
	TAILQ_ENTRY(rcpt) link;
	struct qmsg *msg;
	uint32_t idx;
	char *address, *domain, *orcpt;
	unsigned notify;
	uint32_t attempts;          /* made so far */
	uint64_t first_ms;
};
TAILQ_HEAD(rcpt_list, rcpt);

struct domwait {                /* recipients waiting for one resolution */
	char *domain;
	struct rcpt_list rcpts;
	size_t n;
	struct resolve_req *req;
	struct mxsched *s;
};

enum md_mode { MD_DENY, MD_ALLOW, MD_LEARN };

struct mset {                   /* one message's recipients ready at a site */
	TAILQ_ENTRY(mset) link;
	struct qmsg *msg;
	struct rcpt_list rcpts;
	size_t n;
	char *mapkey;
};
TAILQ_HEAD(mset_list, mset);

struct batch;

struct sconn {                  /* one connection of a site */
	TAILQ_ENTRY(sconn) link;
	struct site *site;
	struct smtpc_conn *c;
	int ready;                  /* greeting/EHLO/TLS done */
	int closing;
	struct batch *b;            /* transaction in flight, or NULL */
	struct event *idle_timer;
};
TAILQ_HEAD(sconn_list, sconn);

struct site {
	char *key;
	char *provider;             /* or NULL */
	struct mxsched *s;
	/* shape in force */
	unsigned max_conns, conn_limit, msgs_per_conn, rcpt_limit, max_rcpt;
	uint64_t conn_age_ms, idle_ms;
	enum md_mode md;
	int md_learned;             /* learn -> deny happened */
	enum smtpc_tls_policy tls;
	/* where to connect: the latest resolution of any of its domains */
	struct smtpc_mx *mx;
	size_t n_mx;
	/* ready recipients, one mset per message, oldest first */
	struct mset_list ready;
	size_t n_ready, n_msets;
	/* connections */
	struct sconn_list conns;
	unsigned n_conns, n_connecting;
	/* backoff */
	uint64_t suspended_until;   /* wall ms; 0 = not suspended */
	unsigned backoff_level;
	char reason[256];
	struct event *resume_timer;
	/* counters */
	uint64_t delivered, bounced, deferred, txns, conns_opened;
	uint64_t possibly_delivered, splits_452, splits_md;
	uint64_t defer_recipient, defer_connection, defer_reputation;
};

struct pending_out;             /* outcomes on their way to the store */

struct mxsched {
	struct event_base *base;
	const struct config *cfg;
	struct queue *q;
	struct dns *dns;
	struct resolver *res;
	struct provider_table *providers;
	struct smtpc_tls *tls;
	struct smtpc_netlist *allow_private;
	struct mxsched_retry retry;
	char ehlo[256];
	struct event *tick;
	int stopping;
	uint64_t in_memory;         /* claimed recipients held */
	uint64_t busy_writes;       /* outcome rounds not yet durable */
	struct smap msgs;           /* idtext -> qmsg */
	struct smap waits;          /* domain -> domwait */
	struct smap sites;          /* site key -> site */
	struct smap msets;          /* "site key\nmsgid" -> mset */
	struct pending_out *out;    /* outcomes being collected */
	struct smap dsn_jobs;       /* msg idtext -> dsn_job of this round */
	struct bounce_rules *rules; /* reply classification */
	uint64_t dsns;              /* DSNs queued */
	int dead;                   /* freed; waiting for store callbacks */
	uint32_t rng;
	/* metrics */
	uint64_t rpt_hist[RPT_BUCKETS + 1]; /* recipients per transaction */
	uint64_t rpt_sum, txns, conns_opened, delivered, bounced, deferred,
	         expired, suspensions;
};

/* What is known about an outcome, for the store, the log and DSNs. */
struct sched_reply {
	int code;                   /* 0: none (our own decision) */
	const char *enhanced, *text;
	const struct site *site;
	const char *mx_host, *mx_addr, *tls;
	const char *category;       /* NULL: classified when it matters */
};
#define SREPLY(...) (&(const struct sched_reply){ __VA_ARGS__ })

/* mxsched.c */
uint32_t sched_random(struct mxsched *s);
void sched_rcpt_free(struct mxsched *s, struct rcpt *r);
void sched_msg_unref(struct mxsched *s, struct qmsg *m);
/* A store callback came back: 1 if the scheduler is gone (then the
 * caller only frees its own things), and the last one frees it. */
int sched_callback_done(struct mxsched *s);
/* Record an outcome for r (and free r). A bounce or expiry the sender
 * asked to hear about joins its message's DSN for this round. */
void sched_outcome(struct mxsched *s, struct rcpt *r,
                   enum queue_outcome_kind kind, uint64_t next_ms,
                   const struct sched_reply *rp);
/* A temporary failure: deferred by the retry schedule, or expired. */
void sched_defer(struct mxsched *s, struct rcpt *r, const struct sched_reply *rp);
/* Write the outcomes collected so far (and this round's DSNs). */
void sched_flush(struct mxsched *s);
/* Classify a reply with the bounce rules. */
struct bounce_class sched_classify(const struct mxsched *s, enum bounce_phase ph,
                                   int code, const char *enhanced,
                                   const char *text, const char *mx);
/* the pending-round helpers shared with mxsched_dsn.c */
struct pending_out *sched_out_new(struct mxsched *s);
const char *sched_out_str(struct pending_out *p, const char *v);
void sched_out_add(struct pending_out *p, struct rcpt *r,
                   enum queue_outcome_kind kind, uint64_t next_ms,
                   const struct sched_reply *rp, const char *category);
void sched_out_submit(struct pending_out *p);
void sched_out_free(struct pending_out *p);

/* mxsched_dsn.c: one DSN per message per round */
struct dsn_job;
/* The pending round of m's DSN (created on first use). */
struct pending_out *dsn_job_add(struct mxsched *s, struct rcpt *r,
                                enum queue_outcome_kind kind,
                                const struct sched_reply *rp);
void dsn_jobs_run(struct mxsched *s);
void dsn_jobs_drop(struct mxsched *s);

/* mxsched_site.c */
struct site *site_get(struct mxsched *s, const struct resolve_result *res);
void site_enqueue(struct site *site, struct rcpt *r);
void site_pump(struct site *site);
int site_busy(const struct site *site);
void site_stop(struct site *site);
void site_free(struct site *site);
int site_suspended(const struct site *site, uint64_t now);
void site_suspend_for(struct site *site, uint64_t ms, const char *why);
void site_resume(struct site *site);
/* recipients-per-transaction histogram bucket bounds (mxsched_admin.c) */
extern const unsigned rpt_bounds[RPT_BUCKETS];
void sched_count_txn(struct mxsched *s, size_t n_rcpts);

/* mxsched_dlog.c: render one delivery-log line */
void dlog_write(FILE *f, const char *event, const struct qmsg *m,
                const struct rcpt *r, const struct sched_reply *rp,
                const char *category, uint64_t next_ms);

#endif
