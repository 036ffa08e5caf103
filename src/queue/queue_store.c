/*
 * queue_store.c - the store thread and its group commit.
 *
 * The loop thread appends ops to q->pending and signals q->cond. The store
 * thread takes every op pending at the start of a round, applies them in
 * order to one WriteBatch (later ops read earlier ones' writes through the
 * round cache) and writes it with the WAL synced: one fsync per round,
 * however many submissions and outcomes it carries. A round whose batch
 * grows beyond max_round_bytes (large bodies) is written as several
 * batches, only the last one synced (a WAL sync covers every earlier
 * write).
 *
 * Why not sync on a separate thread (SyncWAL) to overlap round k's fsync
 * with round k+1? Tried: no measurable gain on this 2-core machine, and
 * Debian's RocksDB 7.8 is built with assertions: SyncWAL on a WAL whose
 * append just failed (ENOSPC) aborts the process
 * (WritableFileWriter::AssertFalseAndGetStatusForPrevError).
 *
 * If a write fails, every op of the round fails with that status (disk
 * full or temporary), RocksDB is closed and reopened before the next
 * round (RocksDB refuses writes after a failed WAL write), the counters
 * are reloaded from disk, and bodies of failed submissions are deleted by
 * internal abort ops. Finished ops go to q->done and the loop is woken
 * through the eventfd, where their callbacks run.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/statvfs.h>

#include "core/core.h"
#include "queue/queue_internal.h"

#define QSTORE_REOPEN_EVERY_MS 200

void
qop_free(struct qop *op)
{
	if (op == NULL)
		return;
	free(op->data);
	qenv_clear(&op->env);
	for (size_t i = 0; i < op->n_rcpts; i++) {
		free(op->rcpts[i].address);
		free(op->rcpts[i].domain);
		free(op->rcpts[i].orcpt);
	}
	free(op->rcpts);
	free(op->claims);
	for (size_t i = 0; i < op->n_outs; i++) {
		free((char *)op->outs[i].reply.enhanced);
		free((char *)op->outs[i].reply.text);
		free((char *)op->outs[i].reply.mx);
		free((char *)op->outs[i].by);
	}
	free(op->outs);
	free(op->by);
	free(op);
}

void
qstore_submit(struct queue *q, struct qop *op)
{
	op->next = NULL;
	pthread_mutex_lock(&q->lock);
	if (op->kind == QOP_CHUNK)
		q->backlog += op->len;
	*q->pending_tail = op;
	q->pending_tail = &op->next;
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

/* qstore_broken - note a failed write */
static void
qstore_broken(struct queue *q, enum queue_status st)
{
	pthread_mutex_lock(&q->lock);
	q->db_broken = 1;
	q->broken_st = st;
	pthread_mutex_unlock(&q->lock);
}

/* qstore_reopen - close and reopen RocksDB after a failed write */
static int
qstore_reopen(struct queue *q)
{
	char err[1024];
	int found, rc;
	uint64_t t = mono_ms();

	if (t - q->last_reopen_ms < QSTORE_REOPEN_EVERY_MS)
		return -1;
	q->last_reopen_ms = t;
	pthread_rwlock_wrlock(&q->dblock);
	qdb_close(q);
	rc = qdb_open(q, err, sizeof(err));
	if (rc < 0)
		qdb_open_ro(q); /* keep reads working meanwhile */
	pthread_rwlock_unlock(&q->dblock);
	if (rc < 0) {
		log_warnx("-", "%s; writes keep failing until it opens", err);
		return -1;
	}
	if (qdb_load_counters(q, &q->cnt, &found) < 0)
		return -1;
	pthread_mutex_lock(&q->lock);
	q->published = q->cnt;
	q->db_broken = 0;
	pthread_mutex_unlock(&q->lock);
	log_info("-", "spool %s: reopened after a failed write; writes resume",
	    q->path);
	return 0;
}

/* qstore_write - write the batch (and reset it); status of the write */
static enum queue_status
qstore_write(struct qround *r, int sync)
{
	struct queue *q = r->q;
	char *e = NULL;
	enum queue_status st = QUEUE_OK;

	if (rocksdb_writebatch_count(r->wb) == 0 && !(sync && r->unsynced))
		return QUEUE_OK;
	qapply_counters(r);
	rocksdb_write(q->db, sync ? q->wsync : q->wnosync, r->wb, &e);
	r->unsynced = !sync;
	if (e) {
		st = qdb_status_of(e);
		log_warnx("-", "spool %s: write failed (%s): %s", q->path,
		    queue_status_to_text(st), e);
		rocksdb_free(e);
		qstore_broken(q, st);
	}
	rocksdb_writebatch_clear(r->wb);
	return st;
}

/* qstore_cleanup_failed - bodies of failed submissions must not stay */
static void
qstore_cleanup_failed(struct queue *q, struct qop *ops)
{
	for (struct qop *op = ops; op; op = op->next) {
		struct qop *ab;

		if (op->kind != QOP_COMMIT && op->kind != QOP_CHUNK)
			continue;
		if (op->kind == QOP_COMMIT && (op->chunk_no == 0 || op->written))
			continue; /* nothing written, or committed whole (its
			           * caller hears of a failure: a retry makes a
			           * duplicate, never a message without body) */
		ab = xcalloc(1, sizeof(*ab));
		ab->kind = QOP_ABORT;
		ab->internal = 1;
		ab->id = op->id;
		ab->chunk_no = op->chunk_no + 1;
		pthread_mutex_lock(&q->lock);
		ab->next = q->pending;
		q->pending = ab;
		if (q->pending_tail == &q->pending)
			q->pending_tail = &ab->next;
		pthread_cond_signal(&q->cond);
		pthread_mutex_unlock(&q->lock);
	}
}

/* qstore_fail_all - every op of a failed round gets st */
static void
qstore_fail_all(struct queue *q, struct qop *ops, enum queue_status st)
{
	for (struct qop *op = ops; op; op = op->next) {
		if (op->kind == QOP_CHUNK && op->st == QUEUE_OK)
			qfail_add(q, op->id, st);
		op->st = st;
	}
	qstore_cleanup_failed(q, ops);
}

/* qstore_drop_data - body bytes are in the batch now: free them early,
 * so memory is bounded by the backlog + one batch, whatever the loop does */
static void
qstore_drop_data(struct queue *q, struct qop *op)
{
	if (op->data == NULL)
		return;
	free(op->data);
	op->data = NULL;
	if (op->kind == QOP_CHUNK) {
		pthread_mutex_lock(&q->lock);
		q->backlog -= op->len;
		pthread_mutex_unlock(&q->lock);
	}
}

/* qstore_check_space - is the spool's filesystem below min_free_bytes?
 * Checked every round (a statvfs costs far less than the fsync). New bodies are refused while it is, so
 * RocksDB keeps room for its flushes and never meets ENOSPC in the usual
 * case (Debian's RocksDB 7.8 asserts on some paths after a failed WAL
 * append; the reopen below stays as the fallback). */
static void
qstore_check_space(struct queue *q)
{
	struct statvfs sv;
	uint64_t avail;
	int low;

	if (statvfs(q->path, &sv) < 0)
		return;
	avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	low = avail < q->opts.min_free_bytes;
	if (low != q->space_low)
		log_warnx("-", "spool %s: %llu bytes free, %s new messages",
		    q->path, (unsigned long long)avail,
		    low ? "refusing (452 4.3.1)" : "accepting again");
	q->space_low = low;
}

/* qstore_us - monotonic microseconds (round statistics) */
static uint64_t
qstore_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* qstore_round - apply and durably write every op of one round */
static int
qstore_round(struct queue *q, struct qop *ops)
{
	struct qround r = { q, q->wb, q->rc, 0, { 0 }, NULL };
	enum queue_status st = QUEUE_OK;
	size_t size, n_ops = 0;
	uint64_t t0, sync_us = 0;
	int broken;

	pthread_mutex_lock(&q->lock);
	broken = q->db_broken;
	st = q->broken_st;
	pthread_mutex_unlock(&q->lock);
	if (broken && qstore_reopen(q) < 0) {
		qstore_fail_all(q, ops, st);
		return -1;
	}
	qstore_check_space(q);
	for (int c = 0; c < QK_CLASSES; c++)
		r.min_due[c] = UINT64_MAX;
	st = QUEUE_OK;
	for (struct qop *op = ops, *seg = ops; op && st == QUEUE_OK;
	     op = op->next) {
		qapply(&r, op);
		qstore_drop_data(q, op);
		rocksdb_writebatch_data(r.wb, &size);
		if (size >= q->opts.max_round_bytes &&
		    (st = qstore_write(&r, 0)) == QUEUE_OK) {
			for (; seg != op->next; seg = seg->next)
				seg->written = 1; /* in RocksDB, not synced yet */
		}
	}
	if (st == QUEUE_OK) {
		t0 = qstore_us();
		st = qstore_write(&r, 1);
		sync_us = qstore_us() - t0;
	}
	rocksdb_writebatch_clear(r.wb);
	qrcache_clear(r.rc);
	pthread_mutex_lock(&q->lock); /* even if failed: a batch may be in */
	for (int c = 0; c < QK_CLASSES; c++)
		if (r.min_due[c] < q->due_inserted_min[c])
			q->due_inserted_min[c] = r.min_due[c];
	q->stats.rounds_failed += st != QUEUE_OK;
	pthread_mutex_unlock(&q->lock);
	if (st != QUEUE_OK) {
		qstore_fail_all(q, ops, st);
		return -1;
	}
	for (struct qop *op = ops; op; op = op->next)
		n_ops++;
	pthread_mutex_lock(&q->lock);
	q->published = q->cnt;
	qstats_round(q, n_ops, sync_us);
	pthread_mutex_unlock(&q->lock);
	return 0;
}

/* qstore_finish - hand finished ops to the loop */
static void
qstore_finish(struct queue *q, struct qop *ops)
{
	uint64_t one = 1;
	struct qop *last = ops;

	while (last->next)
		last = last->next;
	pthread_mutex_lock(&q->lock);
	for (struct qop *op = ops; op; op = op->next)
		if (op->kind == QOP_CHUNK && op->data != NULL) {
			q->backlog -= op->len; /* never applied (failed round) */
			free(op->data);
			op->data = NULL;
		}
	*q->done_tail = ops;
	q->done_tail = &last->next;
	pthread_mutex_unlock(&q->lock);
	if (write(q->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("-", "spool %s: eventfd write", q->path);
}

/* qstore_main - the store thread: rounds until closed and drained */
static void *
qstore_main(void *arg)
{
	struct queue *q = arg;
	struct qop *ops;

	pthread_mutex_lock(&q->lock);
	for (;;) {
		while ((q->pending == NULL || q->paused) && !q->closing)
			pthread_cond_wait(&q->cond, &q->lock);
		if (q->pending == NULL)
			break;
		ops = q->pending;
		q->pending = NULL;
		q->pending_tail = &q->pending;
		pthread_mutex_unlock(&q->lock);
		qstore_round(q, ops);
		qstore_finish(q, ops);
		pthread_mutex_lock(&q->lock);
		if (q->closing && q->db_broken && q->pending &&
		    q->pending->internal)
			break; /* cleanup is left to recovery at next open */
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

void
qstore_pause(struct queue *q, int on)
{
	pthread_mutex_lock(&q->lock);
	q->paused = on;
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

int
qstore_start(struct queue *q)
{
	q->pending_tail = &q->pending;
	q->done_tail = &q->done;
	q->wb = rocksdb_writebatch_create();
	q->rc = qrcache_new();
	if (pthread_create(&q->thread, NULL, qstore_main, q) != 0)
		return -1;
	q->thread_started = 1;
	return 0;
}

void
qstore_stop(struct queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->closing = 1;
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
	if (q->thread_started)
		pthread_join(q->thread, NULL);
	q->thread_started = 0;
	/* internal cleanup ops left behind: recovery at next open does it */
	while (q->pending) {
		struct qop *op = q->pending;

		q->pending = op->next;
		op->st = QUEUE_ECLOSED;
		op->next = NULL;
		*q->done_tail = op;
		q->done_tail = &op->next;
	}
	q->pending_tail = &q->pending;
	if (q->wb)
		rocksdb_writebatch_destroy(q->wb);
	qrcache_free(q->rc);
	q->wb = NULL;
	q->rc = NULL;
}
