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
	uint64_t warned_ms;         /* last delay warning, 0 = none */
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

struct site;
struct mxsched;

/* ---- reputation: adaptive throttle (pure arithmetic, mxsched_aimd.c) ----
 * Per (source address, site): a throttling reply cuts the connections and
 * the recipient rate allowed in half (not below 1 connection, nor below
 * min_rate), at most once per AIMD_HOLD_MS; each clean transaction adds
 * 1/connections connection (one per round of transactions) and
 * rate_step / connections recipients/minute back, up to the shape. */
#define AIMD_HOLD_MS 1000
struct aimd {
	double conns;               /* connections allowed, 1..max_conns */
	double rate;                /* recipients/minute allowed; 0 = no limit */
	double rate_step;           /* increase per clean transaction */
	double rate_ceiling;        /* at or above this: the shape's rate again */
	unsigned max_conns;
	double max_rate;            /* the shape's rate; 0 = none */
	double min_rate;            /* floor of a cut rate */
	uint64_t cuts, last_cut_ms;
};
void aimd_init(struct aimd *a, unsigned max_conns, double max_rate,
               double min_rate);
/* a throttling reply at now; observed = recipients/minute sent lately.
 * 1 if it cut, 0 if held (a cut happened less than AIMD_HOLD_MS ago) */
int aimd_cut(struct aimd *a, double observed, uint64_t now);
void aimd_raise(struct aimd *a);        /* one clean transaction */
unsigned aimd_conns(const struct aimd *a);
int aimd_at_floor(const struct aimd *a);
int aimd_reduced(const struct aimd *a); /* below the shape in any way */

/* token bucket of recipients (rate per minute; 0 = no limit) */
struct tbucket {
	double tokens;
	uint64_t last_ms;
};
/* ms until a batch may start (0: now) */
uint64_t tbucket_wait(struct tbucket *b, double rate, uint64_t now);
void tbucket_take(struct tbucket *b, double rate, size_t n, uint64_t now);

/* ---- reputation: source addresses and pools (mxsched_pool.c) ---- */
struct bl_entry;                /* one (address, zone) of the DNSBL monitor */
struct srcaddr {                /* one sending address of the config */
	char *ip, *ehlo;
	int family;
	unsigned char bin[16];
	struct bl_entry *bl;        /* one per zone (mxsched_dnsbl.c) */
	unsigned listed;            /* zones listing it now */
	uint64_t listed_since;
	int suspended;              /* for every site: a listing, action suspend */
	int released;               /* by hand or release_after, until delisted */
	char reason[256];
};
struct pool_member {
	struct srcaddr *a;
	unsigned weight;
};
struct pool {
	char *name;
	struct pool_member *m;
	size_t n;
};
/* Stable weighted choice (rendezvous hashing): the member of p with the
 * highest weighted score for site_key, skipping those with skip[i] set;
 * -1 if every member is skipped. The same key always gets the same
 * member while the skip set is the same; about weight / sum of weights of
 * all keys land on each member. */
int pool_pick(const struct pool *p, const char *site_key, const int *skip);
/* "ip=ehlo*weight, ..." -> members added to p (addresses interned in
 * table). 0 ok, -1 with the reason in err. */
int pool_parse(struct pool *p, const char *spec, struct smap *table,
               char *err, size_t errlen);

struct site_src {               /* one (source address, site) */
	struct srcaddr *a;          /* NULL: no binding (no pool) */
	struct aimd aimd;
	uint64_t blocked_until;     /* reply-driven block; UINT64_MAX = by hand */
	uint64_t blocked_since;
	char reason[256];
	uint64_t throttles, blocks;
};

struct rep_stats {
	uint64_t checks, check_errors, listings, delistings, monitor_problems;
	uint64_t reply_blocks, releases, throttle_cuts, address_moves;
	uint64_t domain_listings, domain_delistings, held; /* sending domains */
};
struct dnsbl;
struct rep {                    /* the scheduler's reputation state */
	struct smap pools;          /* name -> pool */
	struct smap addrs;          /* ip text -> srcaddr */
	struct pool *default_pool;
	struct smap tenant_pools;   /* [tenant] pool: name -> pool */
	struct smap listener_pools; /* [listen] pool: name -> pool */
	int act_suspend;            /* [blocklists] action = suspend */
	struct dnsbl *bl;
	struct rep_stats st;
};
int rep_new(struct mxsched *s, char *err, size_t errlen);
void rep_free(struct mxsched *s);
/* the site's pool and sources (site creation; shape already set) */
void rep_site_init(struct site *site, const char *pool_name);
/* the pool the message itself chooses (its tenant's, else its listener's),
 * or NULL: the site's own pool */
struct pool *rep_msg_pool(const struct mxsched *s, const struct queue_envelope *env);
void rep_site_free(struct site *site);
/* the source a new connection of the site uses now, -1: none usable */
int rep_site_pick(struct site *site);
/* none usable while pumping: the site waits for the first release */
void rep_site_none(struct site *site);
/* what a transaction's replies say about (source, site):
 * rep_throttled: AIMD cut; 1 if it was at the floor already (then the
 * caller suspends the site). rep_blocked: the pair is blocked; 1 if the
 * site moved to another source or now waits, 0 if only alerted (no pool,
 * or action = alert: the caller suspends the site as before). */
int rep_throttled(struct site *site, int src, const char *why);
int rep_blocked(struct site *site, int src, const char *why);
/* a clean transaction begun at start_ms (raises only if begun after the
 * last cut) */
void rep_clean(struct site *site, int src, uint64_t start_ms);
/* usability of an address changed: every site re-picks and pumps */
void rep_addr_changed(struct mxsched *s, struct srcaddr *a);
int rep_release(struct mxsched *s, const char *ip, const char *site_key);
double site_observed_rate(const struct site *site, uint64_t now);
/* mxsched_dnsbl.c */
struct dnsbl *dnsbl_new(struct mxsched *s, char *err, size_t errlen);
void dnsbl_free(struct dnsbl *bl);
struct json_t;
struct json_t *dnsbl_json(const struct dnsbl *bl, const struct srcaddr *a);
struct json_t *dnsbl_zones_json(const struct dnsbl *bl);
/* "domain_zones", "domain_action" and "domains" (sending domains) into o */
void dnsbl_domains_json(const struct dnsbl *bl, struct json_t *o);
/* 1 if the mail of this envelope sender is held (its domain is listed,
 * domain_action = suspend): until = when to look at it again, why = the
 * reason; 0 if it may go */
int dnsbl_sender_held(struct dnsbl *bl, const char *sender, uint64_t now,
                      uint64_t *until, char *why, size_t whylen);
/* the operator sends a listed domain's mail again; -1 if not watched */
int dnsbl_domain_release(struct dnsbl *bl, const char *name);

struct batch;

/* a histogram of counts (bounds rpt_bounds, then +Inf) */
struct count_hist {
	uint64_t b[RPT_BUCKETS + 1];
	uint64_t sum, count;
};

struct sconn {                  /* one connection of a site */
	TAILQ_ENTRY(sconn) link;
	struct site *site;
	struct smtpc_conn *c;
	int ready;                  /* greeting/EHLO/TLS done */
	int closing;
	struct batch *b;            /* transaction in flight, or NULL */
	struct event *idle_timer;
	int src;                    /* index in site->src */
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
	uint64_t ready_full;        /* recipients sent back: ready queue full */
	unsigned max_ready;         /* [site] max_ready */
	struct count_hist rpt;      /* recipients per transaction */
	struct count_hist mpc;      /* messages (transactions) per connection */
	/* reputation: source addresses and adaptive throttle */
	struct pool *pool;          /* NULL: no source binding */
	struct site_src *src;       /* one per pool member, or one unbound */
	size_t n_src;
	int cur_src;                /* in use now; -1: every one blocked */
	int src_wait;               /* suspended because none is usable */
	double max_rate;            /* the shape's recipients/minute, 0 = none */
	struct tbucket bucket;
	struct event *rate_timer;
	uint64_t rate_win_start, rate_win_n, rate_prev_n;
	/* lately, for postmasters (mxsched_sitelog.c) */
	struct site_hist *hist;     /* NULL until the first outcome */
	struct smap domains;        /* domains routed here, at most SITE_DOMAINS_MAX */
	int domains_more;           /* more were routed than kept */
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
	struct smap abounces;       /* msg idtext -> operator's bounce job */
	struct bounce_rules *rules; /* reply classification */
	struct rep *rep;            /* pools, DNSBL monitor (mxsched_pool.c) */
	uint64_t dsns;              /* DSNs queued */
	int dead;                   /* freed; waiting for store callbacks */
	int suppress_any;           /* the suppression list is not empty */
	uint32_t rng;
	/* metrics */
	struct count_hist rpt;      /* recipients per transaction */
	uint64_t conns_opened, delivered, bounced, deferred,
	         expired, suspensions;
};

/* What is known about an outcome, for the store, the log and DSNs. */
struct sched_reply {
	int code;                   /* 0: none (our own decision) */
	const char *enhanced, *text;
	const struct site *site;
	const char *mx_host, *mx_addr, *tls;
	const char *category;       /* NULL: classified when it matters */
	int no_remote_dsn;          /* delivered to a server without DSN */
	const char *by;             /* an operator's action: who */
	int quiet;                  /* no delivery-log line (REDEFER) */
};
#define SREPLY(...) (&(const struct sched_reply){ __VA_ARGS__ })

/* mxsched.c */
uint32_t sched_random(struct mxsched *s);
/* the in-memory message (loaded if need be; no reference taken), NULL
 * if it no longer exists */
struct qmsg *sched_msg_get(struct mxsched *s, queue_msgid id);
/* a recipient of m (a reference to m) in memory, from its store record */
struct rcpt *sched_rcpt_new(struct mxsched *s, struct qmsg *m,
                            const struct queue_rcpt *qr);
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
/* the round's outcomes (to write them with another op) */
const struct queue_outcome *sched_out_list(const struct pending_out *p,
                                           size_t *n);
/* forget the delay-warning times of its outcomes (the warning was not sent) */
void sched_out_unwarn(struct pending_out *p);
/* they are durable (written with another op): log them, free p */
void sched_out_written(struct pending_out *p);
void sched_out_free(struct pending_out *p);

/* mxsched_dsn.c: one DSN per message per round */
struct dsn_job;
/* If r's outcome earns a DSN (src/bounce policy), add r to this round's
 * DSN of its message for that kind of report (failed, delayed or
 * relayed: one DSN each) and return the pending round its outcome must
 * join (written with the DSN); NULL if no DSN is due. */
struct pending_out *dsn_job_add(struct mxsched *s, struct rcpt *r,
                                enum bounce_action action,
                                enum queue_outcome_kind kind,
                                const struct sched_reply *rp);
void dsn_jobs_run(struct mxsched *s);
void dsn_jobs_drop(struct mxsched *s);

/* mxsched_abounce.c: an operator bounces a message */
/* 1 if r belongs to a message being bounced (then it is taken: held for
 * the bounce, or freed if claimed after it); claimed: from sched_take */
int abounce_catch(struct mxsched *s, struct rcpt *r, int claimed);
void abounces_drop(struct mxsched *s);

/* mxsched_site.c */
/* m's ready recipients (of domain only, if not NULL) leave the site's
 * queue for out; how many */
size_t site_msg_take(struct site *site, struct qmsg *m, const char *domain,
                     struct rcpt_list *out);
/* m's recipients (of domain, if not NULL) in the site's transactions */
size_t site_msg_busy(const struct site *site, const struct qmsg *m,
                     const char *domain);
struct site *site_get(struct mxsched *s, const struct resolve_result *res);
/* the site's twin for mail sent from pool p (key "SITE@POOL"), its own
 * connections, limits and state; base itself when p is NULL or its pool */
struct site *site_for_pool(struct site *base, const struct resolve_result *res,
                           struct pool *p);
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
/* a transaction of n_rcpts recipients at site (scheduler and site) */
void sched_count_txn(struct mxsched *s, struct site *site, size_t n_rcpts);
/* a connection of site that carried n transactions closed */
void site_count_conn(struct site *site, unsigned n);
void hist_add(struct count_hist *h, uint64_t n);
/* {buckets: [{le, count}] (cumulative), sum, count} */
struct json_t *hist_json(const struct count_hist *h);

/* mxsched_sitelog.c: per-minute outcomes, last replies, domains */
#define SITE_MINUTES 60
#define SITE_REPLIES 16
#define SITE_DOMAINS_MAX 256
enum site_hist_kind { SITE_DELIVERED, SITE_FAILED, SITE_DEFERRED, SITE_HIST_KINDS };
struct site_hist;
void site_hist_count(struct site *site, enum site_hist_kind kind);
void site_hist_reply(struct site *site, enum site_hist_kind kind, int code,
                     const char *enhanced, const char *text, const char *mx,
                     const char *category);
void site_hist_outcome(struct site *site, enum site_hist_kind kind,
                       const struct sched_reply *rp);
void site_hist_conn(struct site *site, const char *why, const char *mx);
void site_note_domain(struct site *site, const char *domain);
void site_hist_json(struct site *site, struct json_t *o);
void site_hist_free(struct site *site);

/* mxsched_dlog.c: render one delivery-log line */
void dlog_write(FILE *f, const char *event, const struct qmsg *m,
                const struct rcpt *r, const struct sched_reply *rp,
                const char *category, uint64_t next_ms);

#endif
