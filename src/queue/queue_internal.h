/*
 * queue_internal.h - structures shared by the files of src/queue only.
 *
 * Threads: struct queue is shared by the loop thread and the store thread.
 * `lock` guards the pending/done op lists and the published counters;
 * `dblock` (rwlock) guards the RocksDB handle, which only the store thread
 * replaces (reopen after a write error such as ENOSPC).
 */
#ifndef MXB_QUEUE_INTERNAL_H
#define MXB_QUEUE_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <rocksdb/c.h>

#include "queue/queue.h"

#define QUEUE_CHUNK_SIZE (64u * 1024u)  /* body bytes per body-CF value */
#define QUEUE_SCHEMA_VERSION "2" /* 1: due keys without priority class */

/* column families, in open order (docs/spool.md) */
enum qcf { QCF_DEFAULT = 0, QCF_MSG, QCF_BODY, QCF_RCPT, QCF_DUE, QCF_INFLIGHT,
           QCF_INCOMING, QCF_COUNT };

/* ---- keys (big-endian so byte order = numeric order) ---- */
#define QK_MSG_LEN  8   /* msgid */
#define QK_BODY_LEN 12  /* msgid, chunk no (u32) */
#define QK_RCPT_LEN 12  /* msgid, rcpt idx (u32) */
#define QK_DUE_LEN  21  /* priority class (u8), due ms (u64), msgid, idx */
#define QK_DUE_V1_LEN 20 /* schema 1: due ms, msgid, rcpt idx */
#define QK_CLASSES  255 /* priority classes: 0 = priority 127 (first) */

void qk_put64(unsigned char *p, uint64_t v);
void qk_put32(unsigned char *p, uint32_t v);
uint64_t qk_get64(const unsigned char *p);
uint32_t qk_get32(const unsigned char *p);
void qk_msg(unsigned char k[QK_MSG_LEN], queue_msgid id);
void qk_body(unsigned char k[QK_BODY_LEN], queue_msgid id, uint32_t chunk);
void qk_rcpt(unsigned char k[QK_RCPT_LEN], queue_msgid id, uint32_t idx);
/* the due-key class of a message priority: 127 - priority, clamped to
 * -127..127, so higher priorities sort (and are claimed) first */
unsigned qk_prio(int priority);
void qk_due(unsigned char k[QK_DUE_LEN], unsigned cls, uint64_t ms,
            queue_msgid id, uint32_t idx);
/* 0 ok, -1 wrong length */
int qk_due_parse(const char *k, size_t len, unsigned *cls, uint64_t *ms,
                 queue_msgid *id, uint32_t *idx);

/* ---- records ---- */
struct qbuf { char *p; size_t len, cap; };
void qbuf_free(struct qbuf *b);

/* an envelope as stored */
struct qenv {
	unsigned flags;
	int ret, priority;
	uint64_t submit_ms, size;
	uint32_t chunk_size, rcpts_total, rcpts_live;
	char *sender, *listener, *tenant, *envid; /* NULL allowed except sender */
};
void qenv_encode(const struct qenv *e, struct qbuf *out);
int qenv_decode(const char *p, size_t len, struct qenv *e); /* owns strings */
void qenv_clear(struct qenv *e);
struct queue_envelope *qenv_export(const struct qenv *e, queue_msgid id);

/* a recipient as stored: struct queue_rcpt (strings owned) */
void qrcpt_encode(const struct queue_rcpt *r, struct qbuf *out);
int qrcpt_decode(const char *p, size_t len, struct queue_rcpt *r);
void qrcpt_clear(struct queue_rcpt *r);

#define QCNT_FIELDS 12
void qcnt_encode(const struct queue_counters *c, unsigned char out[QCNT_FIELDS * 8]);
int qcnt_decode(const char *p, size_t len, struct queue_counters *c);
/* add (sign +1) or remove (sign -1) one recipient's state from counters */
void qcnt_rcpt(struct queue_counters *c, const struct queue_rcpt *r, int sign);

/* ---- ops: loop -> store thread -> loop ---- */
enum qop_kind { QOP_CHUNK, QOP_COMMIT, QOP_ABORT, QOP_CLAIM, QOP_OUTCOMES,
                QOP_HOLD, QOP_RELEASE, QOP_DELETE, QOP_COUNTERS,
                QOP_KV_PUT, QOP_KV_DEL, QOP_RETRY_NOW };

struct qrcpt_in { char *address, *domain, *orcpt; unsigned notify; };
struct qclaim { queue_msgid id; uint32_t idx; uint64_t due_ms; unsigned cls; };

struct qop {
	struct qop *next;
	enum qop_kind kind;
	enum queue_status st;
	queue_msgid id;
	/* CHUNK: one body chunk; COMMIT: the last one (may be empty) */
	uint32_t chunk_no;
	char *data;
	size_t len;
	int first_chunk;        /* CHUNK: mark the message incoming */
	/* COMMIT */
	struct qenv env;
	struct qrcpt_in *rcpts;
	size_t n_rcpts;
	/* ABORT: chunks to delete = chunk_no */
	/* CLAIM */
	struct qclaim *claims;  /* n_claimed to mark in flight, then stale */
	size_t n_claims, n_claimed;
	/* OUTCOMES */
	struct queue_outcome *outs;
	size_t n_outs;
	/* DELETE */
	char *by;
	/* KV_PUT / KV_DEL: a small record of the default column family
	 * (suppressions); key in by, value in data/len */
	/* COUNTERS */
	struct queue_counters cnt;
	int internal;           /* queued by the store thread itself */
	int written;            /* in a batch written before the round failed */
	enum queue_status fail_st; /* decided on the loop (too big, ...) */
	queue_commit_cb ccb;
	queue_done_cb dcb;
	void *arg;
};
void qop_free(struct qop *op);

/* ---- claimed-but-not-yet-written set (loop thread only) ---- */
struct qclaimset;
struct qclaimset *qclaimset_new(void);
void qclaimset_free(struct qclaimset *s);
int qclaimset_has(const struct qclaimset *s, queue_msgid id, uint32_t idx);
void qclaimset_add(struct qclaimset *s, queue_msgid id, uint32_t idx);
void qclaimset_del(struct qclaimset *s, queue_msgid id, uint32_t idx);

/* a submission in progress (loop thread) */
struct queue_writer {
	struct queue *q;
	queue_msgid id;
	struct qenv env;
	char *chunk;            /* NULL until the first byte */
	size_t clen, ccap;
	uint32_t chunk_no;
	int toobig;
	struct qrcpt_in *rcpts;
	size_t n_rcpts, cap_rcpts;
};

/* ---- the queue ---- */
struct queue {
	char *path;
	struct queue_opts opts;
	struct event_base *base;
	struct event *ev;
	int efd;

	/* RocksDB */
	pthread_rwlock_t dblock;
	rocksdb_t *db;
	rocksdb_column_family_handle_t *cf[QCF_COUNT];
	rocksdb_options_t *dbopts, *cfopts[QCF_COUNT];
	rocksdb_cache_t *cache;
	rocksdb_block_based_table_options_t *bbto, *bbto_body;
	rocksdb_filterpolicy_t *bloom;
	rocksdb_readoptions_t *ropts;
	rocksdb_writeoptions_t *wsync, *wnosync;

	/* store thread */
	pthread_t thread;
	int thread_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct qop *pending, **pending_tail;
	struct qop *done, **done_tail;
	int closing;
	int paused;                     /* tests: rounds wait (qstore_pause) */
	uint64_t backlog;               /* CHUNK bytes pending (lock) */
	struct queue_counters published; /* counters as last written (lock) */

	/* failure state (lock) */
	int db_broken;                  /* a write failed: reopen first */
	enum queue_status broken_st;
	struct qfail *failed;           /* ids whose body chunk failed */

	/* store thread only */
	rocksdb_writebatch_t *wb;       /* reused round after round */
	struct qrcache *rc;
	struct queue_counters cnt;      /* working copy */
	uint64_t last_reopen_ms;
	int space_low;                  /* free space < min_free_bytes */

	/* earliest due key written per priority class (lock) */
	uint64_t due_inserted_min[QK_CLASSES];
	struct queue_stats stats;       /* (lock) */

	/* loop thread only */
	queue_msgid last_id;
	/* per priority class: claims scan from the floor; classes that may
	 * hold due keys */
	unsigned char due_floor[QK_CLASSES][QK_DUE_LEN];
	unsigned char due_class[QK_CLASSES];
	struct qclaimset *claimed;
	struct qop *claim_retry;        /* claim ops to resubmit */
	struct event *retry_ev;
};

/* queue_db.c */
int qdb_open(struct queue *q, char *err, size_t errlen);
void qdb_close(struct queue *q);
int qdb_open_ro(struct queue *q);
void qdb_free_options(struct queue *q);
enum queue_status qdb_status_of(const char *rocksdb_err);
int qdb_load_counters(struct queue *q, struct queue_counters *c, int *found);
int qdb_scan_counts(struct queue *q, struct queue_counters *c);
int qdb_recover(struct queue *q, char *err, size_t errlen);
/* loop side: the priority classes present in the due index */
void qdb_due_classes(struct queue *q);
queue_msgid qdb_max_id(struct queue *q);
/* Read key k through an iterator kept across calls: next() when k follows
 * the current key (reads in key order, as claims and outcomes mostly are,
 * cost a step instead of a point read probing every memtable and level),
 * else seek. 1 found (*v, *vlen point into the iterator), 0 absent, -1 on
 * an iterator error (logged). */
int qdb_iter_get(struct queue *q, rocksdb_iterator_t *it,
                 const unsigned char *k, size_t klen, const char **v,
                 size_t *vlen);

/* queue_store.c */
int qstore_start(struct queue *q);
void qstore_stop(struct queue *q);
void qstore_submit(struct queue *q, struct qop *op);
/* Tests only: on = 1 makes the store thread wait before its next round,
 * so ops pile up and a test can order them against loop-side reads. */
void qstore_pause(struct queue *q, int on);

/* queue.c */
void queue_counters_fix(struct queue *q, const struct queue_counters *c);

/* queue_apply.c (store thread, inside a round) */
struct qround {
	struct queue *q;
	rocksdb_writebatch_t *wb;
	struct qrcache *rc;
	int unsynced;           /* an earlier batch of the round was not synced */
	uint64_t min_due[QK_CLASSES]; /* earliest due key written, per class */
	rocksdb_iterator_t *rit;  /* over rcpt, for the current op, or NULL */
};

/* queue_rcache.c: msg/rcpt records written in the current round */
struct qrcache;
struct qrcache *qrcache_new(void);
void qrcache_clear(struct qrcache *c);
void qrcache_free(struct qrcache *c);
/* 1 if the round wrote the key (*val NULL if it deleted it), else 0 */
int qrcache_get(struct qrcache *c, int cf, const unsigned char *k,
                size_t klen, char **val, size_t *vlen);
void qrcache_set(struct qrcache *c, int cf, const unsigned char *k,
                 size_t klen, const char *val, size_t vlen);
void qapply(struct qround *r, struct qop *op);
/* ids whose body chunk failed: their commit must fail too */
struct qfail { struct qfail *next; queue_msgid id; enum queue_status st; };
void qfail_add(struct queue *q, queue_msgid id, enum queue_status st);
void qfail_free_all(struct queue *q);
void qapply_counters(struct qround *r);
/* queue.c: count one written round (caller holds q->lock) */
void qstats_round(struct queue *q, size_t n_ops, uint64_t sync_us);

#endif
