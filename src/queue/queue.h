/*
 * queue.h - the single-copy message store (src/queue), on RocksDB.
 *
 * The one public header of src/queue. Every accepted message lives here
 * until its last recipient is delivered, bounced, expired or deleted: the
 * body once, the envelope once, one small record per recipient, and a
 * time-ordered index of when each non-terminal recipient is next due.
 * The key layout is documented in docs/spool.md.
 *
 * Threads. A queue is opened on an event loop (`base`). Every function
 * below is called from that loop's thread, except the body reader, which
 * any one thread at a time may use. Writes (submissions, outcomes, admin
 * actions) go to a dedicated store thread that group-commits them: every
 * write pending at the start of a round goes into one WriteBatch written
 * with the WAL synced. Completion callbacks run later on the loop thread,
 * never from inside the call that submitted the work, and only once the
 * write is durable (or has failed). The store thread wakes the loop
 * through an eventfd watched by one persistent event on `base`.
 * Reads (claim, envelope, recipients, body, counters) are synchronous
 * RocksDB reads on the calling thread; they never wait for a sync.
 *
 * Returned structures are heap allocated and freed with the matching
 * *_free function (free of NULL is a no-op).
 */
#ifndef MXB_QUEUE_H
#define MXB_QUEUE_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct config;
struct queue;
struct queue_writer;
struct queue_body;
struct queue_outcome;

/* ---- status of an asynchronous store operation ---- */
enum queue_status {
	QUEUE_OK = 0,
	QUEUE_ETEMP,     /* temporary store error (I/O, store reopening): 451 4.3.0 */
	QUEUE_EDISKFULL, /* no space left (ENOSPC/EFBIG): 452 4.3.1 */
	QUEUE_ETOOBIG,   /* body over opts.max_message_size: 552 5.3.4 */
	QUEUE_ENOTFOUND, /* no such message / recipient (admin actions) */
	QUEUE_EINVAL,    /* bad argument (no recipients, bad address, ...) */
	QUEUE_ECLOSED    /* the queue is closing; work was not done */
};
const char *queue_status_to_text(enum queue_status st);

/* ---- message ids ----
 * 64 bits: milliseconds since the epoch << 16 | a sequence number, so ids
 * sort by submission time and are unique per spool (the generator never
 * goes below the largest id found at open). Printed as 16 lowercase hex
 * digits. */
typedef uint64_t queue_msgid;
#define QUEUE_ID_TEXT_LEN 17 /* 16 hex digits + NUL */
void queue_id_to_text(queue_msgid id, char out[QUEUE_ID_TEXT_LEN]);
/* Parse exactly 16 hex digits (either case). 0 ok, -1 bad. */
int queue_id_parse(const char *s, queue_msgid *out);
/* The submission time encoded in an id, ms since the epoch. */
uint64_t queue_id_time_ms(queue_msgid id);

/* ---- opening ---- */
struct queue_opts {
	const char *path;          /* spool directory (created if missing) */
	uint64_t cache_bytes;      /* RocksDB block cache; 0 = 32 MiB */
	uint64_t memtable_bytes;   /* total memtables, all families; 0 = 64 MiB */
	uint64_t max_message_size; /* body bytes; 0 = 50 MiB */
	uint64_t max_round_bytes;  /* bytes per WriteBatch before splitting a
	                            * round; 0 = 2 MiB */
	int body_blob_files;       /* 1: body chunks in RocksDB blob files */
	int read_only_check;       /* reserved, 0 */
	/* Refuse new message bodies (QUEUE_EDISKFULL, before RocksDB sees an
	 * ENOSPC) while the spool's filesystem has less free space than this;
	 * outcomes and deletions still go through. 0 = 64 MiB. */
	uint64_t min_free_bytes;
};

/* Open (or create) the spool at o->path and run recovery: in-flight
 * recipients become due again, bodies of submissions that never committed
 * are removed, counters are loaded (rebuilt by a scan if missing).
 * On failure returns NULL and writes into err a message naming the path and
 * the RocksDB error (spool locked by another process, permission denied,
 * corruption, ...). */
struct queue *queue_open(struct event_base *base, const struct queue_opts *o,
                         char *err, size_t errlen);
/* queue_open with the [spool] options of the daemon configuration. */
struct queue *queue_open_config(struct event_base *base,
                                const struct config *cfg, char *err,
                                size_t errlen);
/* Finish every write already submitted (their callbacks run, from inside
 * this call), stop the store thread, close RocksDB. NULL is a no-op.
 * Writers and body readers still open must be closed first. */
void queue_close(struct queue *q);
/* The spool path (for logs). */
const char *queue_path(const struct queue *q);

/* ---- envelopes ---- */
enum queue_ret { QUEUE_RET_UNSET = 0, QUEUE_RET_FULL, QUEUE_RET_HDRS };

#define QUEUE_MSG_HELD     0x0001u /* held: no recipient is due */
#define QUEUE_MSG_SMTPUTF8 0x0002u
#define QUEUE_MSG_8BITMIME 0x0004u
#define QUEUE_MSG_BINARYMIME 0x0008u
#define QUEUE_MSG_DSN      0x0010u /* this message is a DSN we generated */

struct queue_envelope {
	const char *sender;   /* "" = null sender <> */
	const char *listener; /* listener name, or NULL */
	const char *tenant;   /* account / tenant, or NULL */
	const char *envid;    /* DSN ENVID (xtext-decoded), or NULL */
	enum queue_ret ret;   /* DSN RET */
	int priority;         /* higher = sooner; 0 = normal */
	unsigned flags;       /* QUEUE_MSG_* */
	uint64_t submit_ms;   /* 0 at submission = now */
	/* Filled when read back (ignored at submission): */
	queue_msgid id;
	uint64_t size;        /* body bytes */
	uint32_t rcpts_total; /* recipients at submission */
	uint32_t rcpts_live;  /* non-terminal recipients left */
};

/* Load a message's envelope (strings owned by the result). NULL if the
 * message does not exist or on a read error. */
struct queue_envelope *queue_envelope_get(struct queue *q, queue_msgid id);
void queue_envelope_free(struct queue_envelope *env);

/* ---- recipients ---- */
#define QUEUE_NOTIFY_NEVER   0x1u
#define QUEUE_NOTIFY_SUCCESS 0x2u
#define QUEUE_NOTIFY_FAILURE 0x4u
#define QUEUE_NOTIFY_DELAY   0x8u  /* 0 = NOTIFY not given */

struct queue_rcpt_in {
	const char *address;  /* local@domain, as given in RCPT TO */
	const char *domain;   /* lowercased domain; NULL = after the last '@' */
	unsigned notify;      /* QUEUE_NOTIFY_* */
	const char *orcpt;    /* DSN ORCPT ("rfc822;x@y"), or NULL */
};

enum queue_rcpt_state {
	QUEUE_RCPT_QUEUED = 0, /* waiting in the due index (new or deferred) */
	QUEUE_RCPT_INFLIGHT,   /* claimed by the scheduler */
	QUEUE_RCPT_HELD        /* its message is held */
};
const char *queue_rcpt_state_to_text(enum queue_rcpt_state st);

struct queue_reply {
	int code;             /* 0 = none yet */
	const char *enhanced; /* "4.2.2", or NULL */
	const char *text;     /* reply text, or NULL */
	const char *mx;       /* MX host that answered, or NULL */
};

struct queue_rcpt {
	queue_msgid msgid;
	uint32_t idx;         /* recipient index within its message */
	enum queue_rcpt_state state;
	char *address, *domain, *orcpt; /* orcpt may be NULL */
	unsigned notify;
	uint32_t attempts;
	uint64_t submit_ms;
	uint64_t first_attempt_ms; /* 0 = never attempted */
	uint64_t next_ms;          /* next attempt (due) time */
	int last_code;             /* last reply, 0 = none */
	char *last_enhanced, *last_text, *last_mx; /* may be NULL */
	uint64_t warned_ms;        /* last delay warning (DSN), 0 = none */
};
/* Free the strings of n recipients and the array itself. */
void queue_rcpts_free(struct queue_rcpt *r, size_t n);

/* ---- submission (streaming) ----
 * begin -> write body bytes in any chunk sizes -> add recipients (any time
 * before commit) -> commit or abort. The body is cut into chunks that go
 * to the store thread as they fill, so it is never held whole in memory.
 * A writer is owned by the caller until commit/abort, which free it. */
typedef void (*queue_commit_cb)(void *arg, enum queue_status st,
                                queue_msgid id);

struct queue_writer *queue_msg_begin(struct queue *q,
                                     const struct queue_envelope *env);
queue_msgid queue_msg_id(const struct queue_writer *w);
/* 0 ok; -1 once the body exceeds max_message_size (then only abort, or
 * commit which fails with QUEUE_ETOOBIG). */
int queue_msg_write(struct queue_writer *w, const void *buf, size_t len);
/* 0 ok, -1 bad recipient (empty address). */
int queue_msg_add_rcpt(struct queue_writer *w, const struct queue_rcpt_in *r);
/* Bytes written so far. */
uint64_t queue_msg_size(const struct queue_writer *w);
/* cb(arg, status, id) runs on the loop once envelope, body, recipients and
 * due-index entries are in RocksDB with the WAL synced, or the write
 * failed (then nothing of the message is visible). Every recipient is due
 * at once (or held if the envelope says so). Frees w. */
void queue_msg_commit(struct queue_writer *w, queue_commit_cb cb, void *arg);
/* queue_msg_commit, and in the same WriteBatch (so both or neither are
 * durable) the n outcomes (copied), applied after the message: a DSN and
 * the outcomes of the recipients it reports. If the message is refused
 * (too big, disk full, no recipient) the outcomes are not applied either
 * and cb gets the message's status. Frees w. */
void queue_msg_commit_with(struct queue_writer *w,
                           const struct queue_outcome *o, size_t n,
                           queue_commit_cb cb, void *arg);
/* Drop the message; nothing remains. Frees w. NULL is a no-op. */
void queue_msg_abort(struct queue_writer *w);

/* Bytes of body chunks handed to the store thread and not yet written:
 * a submission server may stop reading from clients while this is high. */
uint64_t queue_write_backlog(const struct queue *q);

/* ---- the scheduler's reads ----
 * Claim up to max recipients whose next attempt time is <= now_ms, not
 * held, those of a higher message priority first (priority clamped to
 * -127..127), oldest due first within a priority, and mark them in flight: they are not returned
 * again until an outcome is recorded for them (or the process restarts:
 * at open every in-flight recipient is due again). Reads only the due
 * index, so costs O(returned). *out is an array the caller frees with
 * queue_rcpts_free(*out, n). Returns n >= 0, or -1 on a read error.
 * A claimed recipient may vanish (admin delete); its outcome is then
 * ignored and queue_envelope_get/queue_body_open return NULL. */
int queue_due_claim(struct queue *q, uint64_t now_ms, size_t max,
                    struct queue_rcpt **out);
/* Earliest next-attempt time in the due index (to arm a timer), or
 * UINT64_MAX if nothing is queued. In-flight and held are not counted. */
uint64_t queue_due_next_ms(struct queue *q);
/* Every non-terminal recipient of one message (queued, in flight, held),
 * in index order. Returns n >= 0 (0 if no such message), -1 on error. */
int queue_msg_rcpts(struct queue *q, queue_msgid id, struct queue_rcpt **out);

/* ---- body reader (streams; any one thread at a time) ---- */
struct queue_body *queue_body_open(struct queue *q, queue_msgid id);
/* Copies up to len bytes; returns bytes read, 0 at the end, -1 on error
 * (missing chunk: the message was deleted meanwhile, or a read error). */
long queue_body_read(struct queue_body *r, void *buf, size_t len);
void queue_body_rewind(struct queue_body *r);
uint64_t queue_body_size(const struct queue_body *r);
void queue_body_close(struct queue_body *r);

/* ---- outcomes (batched, group committed, durable before cb) ---- */
enum queue_outcome_kind {
	QUEUE_OUT_DELIVERED = 0, /* terminal; counts an attempt */
	QUEUE_OUT_DEFERRED,      /* due again at next_ms; counts an attempt */
	QUEUE_OUT_BOUNCED,       /* terminal; counts an attempt */
	QUEUE_OUT_EXPIRED,       /* terminal (queue lifetime); no attempt */
	QUEUE_OUT_DELETED,       /* terminal (admin, `by`); no attempt */
	QUEUE_OUT_RELEASE,       /* due now again, no attempt spent
	                          * (suspended site, shutdown) */
	QUEUE_OUT_REDEFER        /* due at next_ms, no attempt spent */
};

struct queue_outcome {
	queue_msgid msgid;
	uint32_t idx;
	enum queue_outcome_kind kind;
	uint64_t next_ms;         /* DEFERRED, REDEFER */
	uint64_t attempt_ms;      /* when the attempt happened; 0 = now */
	struct queue_reply reply; /* stored for DEFERRED/REDEFER; copied */
	const char *by;           /* DELETED: who; may be NULL */
	uint64_t warned_ms;       /* DEFERRED/REDEFER/RELEASE: a delay warning
	                           * went out at this time; 0 = keep the old */
};

typedef void (*queue_done_cb)(void *arg, enum queue_status st);

/* Record n outcomes (copied; the array may be freed on return). They are
 * applied in order in one round; a recipient that no longer exists is
 * skipped. When a message's last recipient becomes terminal, its envelope
 * and body are deleted in the same batch. cb may be NULL. */
void queue_outcomes(struct queue *q, const struct queue_outcome *o, size_t n,
                    queue_done_cb cb, void *arg);

/* ---- admin ---- */
/* Hold: none of the message's recipients is due until released (one in
 * flight finishes its attempt; if deferred it becomes held). Release: held
 * recipients are due now. Delete: every recipient and the message go
 * (in-flight outcomes are then ignored). cb gets QUEUE_ENOTFOUND for an
 * unknown id. */
void queue_msg_hold(struct queue *q, queue_msgid id, queue_done_cb cb,
                    void *arg);
void queue_msg_release(struct queue *q, queue_msgid id, queue_done_cb cb,
                       void *arg);
void queue_msg_delete(struct queue *q, queue_msgid id, const char *by,
                      queue_done_cb cb, void *arg);
/* Retry now: the message's queued recipients due later than now become
 * due now, no attempt spent; held and in-flight ones are left alone.
 * Decided by the store in order with claims, so a recipient being
 * delivered is never made due a second time. */
void queue_msg_retry_now(struct queue *q, queue_msgid id, queue_done_cb cb,
                         void *arg);

/* Counters maintained in every batch (never a scan). */
struct queue_counters {
	uint64_t messages;       /* stored messages */
	uint64_t bytes;          /* their body bytes */
	uint64_t rcpts;          /* non-terminal recipients */
	uint64_t rcpts_queued;   /* of which waiting in the due index */
	uint64_t rcpts_deferred; /* of which queued with attempts > 0 */
	uint64_t rcpts_inflight; /* of which claimed */
	uint64_t rcpts_held;     /* of which held */
	/* totals since the spool was created */
	uint64_t total_messages, total_delivered, total_bounced,
	         total_expired, total_deleted;
};
void queue_counters_get(struct queue *q, struct queue_counters *out);

/* Store thread statistics since open (metrics): rounds written, the
 * operations (submissions, outcomes, actions) each carried, and how long
 * each round's synced write took (WAL write + fsync). Histograms count
 * per bucket (not cumulative); the last bucket is everything above the
 * last bound. Cheap: one mutex, no I/O. */
#define QUEUE_STAT_BUCKETS 12
extern const uint64_t queue_round_ops_bounds[QUEUE_STAT_BUCKETS];
extern const uint64_t queue_sync_us_bounds[QUEUE_STAT_BUCKETS];
struct queue_stats {
	uint64_t rounds, rounds_failed, ops;
	uint64_t round_ops[QUEUE_STAT_BUCKETS + 1];   /* operations per round */
	uint64_t sync_us_sum;
	uint64_t sync_us[QUEUE_STAT_BUCKETS + 1];     /* synced write, us */
};
void queue_stats_get(struct queue *q, struct queue_stats *out);

/* Iterate messages in id order, page by page: fills up to max envelopes
 * with id > after (0 = from the start) that match the filter. Returns the
 * count (free each with queue_envelope_free), -1 on error. Filters scan. */
struct queue_filter {
	const char *sender;   /* exact, or NULL */
	const char *tenant;   /* exact, or NULL */
	const char *domain;   /* some non-terminal recipient in it, or NULL */
	int held_only;
};
int queue_msg_list(struct queue *q, queue_msgid after,
                   const struct queue_filter *f, size_t max,
                   struct queue_envelope **out);

/* ---- suppression list ----
 * Addresses that hard-bounced (bad mailbox, bad domain) are suppressed
 * until a time: new mail to them is refused at RCPT or bounced at once.
 * Kept in the spool (default column family, keys "sup:" + address in
 * lowercase); written through the same group-committed path. */
struct queue_suppression {
	char *address;        /* lowercase */
	uint64_t added_ms, until_ms;
	char *category;       /* bounce category, e.g. "bad-mailbox" */
	char *reason;         /* the reply that caused it */
};
/* Free an array of n entries; clear frees one entry's strings. */
void queue_suppressions_free(struct queue_suppression *s, size_t n);
void queue_suppression_clear(struct queue_suppression *s);
/* Add or extend (cb may be NULL). An empty or overlong address is
 * ignored and logged (cb is then not called). */
void queue_suppress_add(struct queue *q, const char *address, uint64_t until_ms,
                        const char *category, const char *reason,
                        queue_done_cb cb, void *arg);
/* Remove; cb gets QUEUE_ENOTFOUND if there was none. */
void queue_suppress_delete(struct queue *q, const char *address,
                           queue_done_cb cb, void *arg);
/* 1 and *out (if given; free with queue_suppression_clear(out)) when
 * the address is suppressed at now_ms, 0 if not (expired entries count
 * as not), -1 on a read error. Synchronous point read. */
int queue_suppress_check(struct queue *q, const char *address, uint64_t now_ms,
                         struct queue_suppression *out);
/* Entries with address > after ("" = from the start), up to max, expired
 * ones included (until_ms says). Returns the count, -1 on error. */
int queue_suppress_list(struct queue *q, const char *after, size_t max,
                        struct queue_suppression **out);

/* Full consistency scan (tests, `check` tooling): recounts everything and
 * looks for body chunks of no message; returns 0 if the stored counters
 * match and there are no such chunks, -1 otherwise; with fix = 1 the
 * counters are rewritten from the scan and orphan chunks deleted (both
 * through the store thread: done after its next round). Slow: O(queue).
 * Loop thread. */
int queue_check(struct queue *q, int fix, struct queue_counters *scanned);

#endif
