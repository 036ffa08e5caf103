/*
 * queue.c - open/close of the store and the loop-side half of its API:
 * message ids, the streaming writer, outcomes and admin submissions (ops
 * handed to the store thread), and the dispatch of finished ops back on
 * the event loop (eventfd + one persistent event). Loop thread.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <event2/event.h>

#include "core/core.h"
#include "queue/queue_internal.h"


/* ---- finished ops, back on the loop ---- */

/* queue_on_retry - resubmit claim ops whose round failed */
static void
queue_on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct queue *q = arg;
	struct qop *op, *next;

	(void)fd;
	(void)what;
	op = q->claim_retry;
	q->claim_retry = NULL;
	for (; op; op = next) {
		next = op->next;
		qstore_submit(q, op);
	}
}

/* queue_claim_retry - an in-flight mark failed to be written (disk full):
 * retry in 100 ms rather than spin against a broken store */
static void
queue_claim_retry(struct queue *q, struct qop *op)
{
	struct timeval tv = { 0, 100 * 1000 };

	op->next = q->claim_retry;
	q->claim_retry = op;
	if (!evtimer_pending(q->retry_ev, NULL))
		evtimer_add(q->retry_ev, &tv);
}

/* queue_op_done - one finished op: callback, then free */
static void
queue_op_done(struct queue *q, struct qop *op)
{
	enum queue_status st = op->fail_st != QUEUE_OK ? op->fail_st : op->st;

	if (op->kind == QOP_CLAIM) {
		if (st != QUEUE_OK && !q->closing) {
			queue_claim_retry(q, op); /* keep them claimed */
			return;
		}
		for (size_t i = 0; i < op->n_claimed; i++)
			qclaimset_del(q->claimed, op->claims[i].id,
			    op->claims[i].idx);
	}
	if (op->ccb)
		op->ccb(op->arg, st, op->id);
	else if (op->dcb)
		op->dcb(op->arg, st);
	qop_free(op);
}

static void
queue_run_done(struct queue *q)
{
	struct qop *ops, *next;

	pthread_mutex_lock(&q->lock);
	ops = q->done;
	q->done = NULL;
	q->done_tail = &q->done;
	pthread_mutex_unlock(&q->lock);
	for (; ops; ops = next) {
		next = ops->next;
		ops->next = NULL;
		queue_op_done(q, ops);
	}
}

/* queue_on_wake - the store thread finished a round */
static void
queue_on_wake(evutil_socket_t fd, short what, void *arg)
{
	uint64_t n;

	(void)what;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_warn("-", "queue eventfd read");
	queue_run_done(arg);
}

/* ---- open / close ---- */

/* queue_tune_malloc - once per process: RocksDB allocates its memtable
 * arenas in blocks of 1-2 MiB, which glibc serves with mmap and hands back
 * with munmap (or trims from the heap top) when a memtable is flushed,
 * so every new memtable page-faults its way in again: about a quarter of
 * the store thread's CPU on the test machine (a VM, where faults are
 * dear). Serving blocks up to 32 MiB from the heap and trimming it only
 * above 128 MiB free keeps them for reuse; memtables are bounded by
 * memtable_bytes, so this keeps at most that much more resident. An
 * environment that sets MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_
 * keeps its own values. */
static void
queue_tune_malloc(void)
{
	if (getenv("MALLOC_MMAP_THRESHOLD_") == NULL)
		mallopt(M_MMAP_THRESHOLD, 32 << 20);
	if (getenv("MALLOC_TRIM_THRESHOLD_") == NULL)
		mallopt(M_TRIM_THRESHOLD, 128 << 20);
}

static void
queue_opts_defaults(struct queue_opts *o)
{
	if (o->cache_bytes == 0)
		o->cache_bytes = 32ull << 20;
	if (o->memtable_bytes == 0)
		o->memtable_bytes = 64ull << 20;
	if (o->max_message_size == 0)
		o->max_message_size = 50ull << 20;
	if (o->max_round_bytes == 0)
		o->max_round_bytes = 2ull << 20;
	if (o->min_free_bytes == 0)
		o->min_free_bytes = 64ull << 20;
}

static struct queue *
queue_alloc(const struct queue_opts *o)
{
	struct queue *q = xcalloc(1, sizeof(*q));

	q->opts = *o;
	q->path = xstrdup(o->path);
	q->opts.path = q->path;
	queue_opts_defaults(&q->opts);
	q->efd = -1;
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->cond, NULL);
	pthread_rwlock_init(&q->dblock, NULL);
	q->pending_tail = &q->pending;
	q->done_tail = &q->done;
	q->claimed = qclaimset_new();
	for (int c = 0; c < QK_CLASSES; c++) {
		q->due_inserted_min[c] = UINT64_MAX;
		qk_due(q->due_floor[c], (unsigned)c, 0, 0, 0);
	}
	return q;
}

/* queue_wire - eventfd + event on the loop, then the store thread */
static int
queue_wire(struct queue *q, char *err, size_t errlen)
{
	q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (q->efd < 0) {
		snprintf(err, errlen, "spool %s: eventfd: %s", q->path,
		    strerror(errno));
		return -1;
	}
	q->ev = event_new(q->base, q->efd, EV_READ | EV_PERSIST, queue_on_wake, q);
	q->retry_ev = evtimer_new(q->base, queue_on_retry, q);
	if (q->ev == NULL || q->retry_ev == NULL || event_add(q->ev, NULL) < 0 || qstore_start(q) < 0) {
		snprintf(err, errlen, "spool %s: cannot start the store thread",
		    q->path);
		return -1;
	}
	return 0;
}

static void
queue_release(struct queue *q)
{
	if (q->thread_started)
		qstore_stop(q);
	if (q->ev)
		event_free(q->ev);
	if (q->retry_ev)
		event_free(q->retry_ev);
	while (q->claim_retry) {
		struct qop *op = q->claim_retry;

		q->claim_retry = op->next;
		qop_free(op);
	}
	if (q->efd >= 0)
		close(q->efd);
	qdb_close(q);
	qdb_free_options(q);
	qclaimset_free(q->claimed);
	qfail_free_all(q);
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->cond);
	pthread_rwlock_destroy(&q->dblock);
	free(q->path);
	free(q);
}

struct queue *
queue_open(struct event_base *base, const struct queue_opts *o, char *err,
           size_t errlen)
{
	static pthread_once_t tuned = PTHREAD_ONCE_INIT;
	struct queue *q;

	if (o == NULL || o->path == NULL || o->path[0] == '\0') {
		snprintf(err, errlen, "spool: no path configured");
		return NULL;
	}
	pthread_once(&tuned, queue_tune_malloc);
	q = queue_alloc(o);
	q->base = base;
	if (qdb_open(q, err, errlen) < 0 || qdb_recover(q, err, errlen) < 0 ||
	    queue_wire(q, err, errlen) < 0) {
		queue_release(q);
		return NULL;
	}
	q->last_id = qdb_max_id(q);
	qdb_due_classes(q);
	return q;
}

struct queue *
queue_open_config(struct event_base *base, const struct config *cfg,
                  char *err, size_t errlen)
{
	struct queue_opts o = { 0 };

	o.path = cfg->spool_path;
	o.cache_bytes = cfg->spool_cache_size;
	o.max_message_size = cfg->max_message_size;
	return queue_open(base, &o, err, errlen);
}

void
queue_close(struct queue *q)
{
	if (q == NULL)
		return;
	qstore_stop(q); /* sets q->closing */
	queue_run_done(q);
	queue_release(q);
}

const char *
queue_path(const struct queue *q)
{
	return q->path;
}

uint64_t
queue_write_backlog(const struct queue *q)
{
	uint64_t b;

	pthread_mutex_lock((pthread_mutex_t *)&q->lock);
	b = q->backlog;
	pthread_mutex_unlock((pthread_mutex_t *)&q->lock);
	return b;
}

void
queue_counters_get(struct queue *q, struct queue_counters *out)
{
	pthread_mutex_lock(&q->lock);
	*out = q->published;
	pthread_mutex_unlock(&q->lock);
}

const uint64_t queue_round_ops_bounds[QUEUE_STAT_BUCKETS] = {
	1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000 };
const uint64_t queue_sync_us_bounds[QUEUE_STAT_BUCKETS] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
	250000, 1000000 };

void
queue_stats_get(struct queue *q, struct queue_stats *out)
{
	pthread_mutex_lock(&q->lock);
	*out = q->stats;
	pthread_mutex_unlock(&q->lock);
}

/* qstats_round - one round written: n ops, synced in us (under q->lock) */
void
qstats_round(struct queue *q, size_t n, uint64_t us)
{
	size_t i;

	for (i = 0; i < QUEUE_STAT_BUCKETS && n > queue_round_ops_bounds[i]; i++)
		;
	q->stats.round_ops[i]++;
	for (i = 0; i < QUEUE_STAT_BUCKETS && us > queue_sync_us_bounds[i]; i++)
		;
	q->stats.sync_us[i]++;
	q->stats.rounds++;
	q->stats.ops += n;
	q->stats.sync_us_sum += us;
}

/* ---- submission ---- */

/* queue_next_id - time-sortable, strictly increasing */
static queue_msgid
queue_next_id(struct queue *q)
{
	queue_msgid t = now_ms() << 16;

	q->last_id = t > q->last_id ? t : q->last_id + 1;
	return q->last_id;
}

static char *
dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

struct queue_writer *
queue_msg_begin(struct queue *q, const struct queue_envelope *env)
{
	struct queue_writer *w = xcalloc(1, sizeof(*w));

	w->q = q;
	w->id = queue_next_id(q);
	w->env.sender = xstrdup(env->sender ? env->sender : "");
	w->env.listener = dup_or_null(env->listener);
	w->env.tenant = dup_or_null(env->tenant);
	w->env.envid = dup_or_null(env->envid);
	w->env.ret = env->ret;
	w->env.priority = env->priority;
	w->env.flags = env->flags;
	w->env.submit_ms = env->submit_ms ? env->submit_ms : now_ms();
	w->env.chunk_size = QUEUE_CHUNK_SIZE;
	return w;
}

queue_msgid
queue_msg_id(const struct queue_writer *w)
{
	return w->id;
}

uint64_t
queue_msg_size(const struct queue_writer *w)
{
	return w->env.size;
}

/* writer_reserve - grow the chunk buffer up to QUEUE_CHUNK_SIZE, so a
 * writer of a small message holds a few KiB, not 64 */
static void
writer_reserve(struct queue_writer *w, size_t need)
{
	size_t cap = w->ccap ? w->ccap : 4096;

	if (need <= w->ccap)
		return;
	while (cap < need)
		cap *= 2;
	if (cap > QUEUE_CHUNK_SIZE)
		cap = QUEUE_CHUNK_SIZE;
	w->chunk = xrealloc(w->chunk, cap);
	w->ccap = cap;
}

/* writer_flush - a full chunk goes to the store thread */
static void
writer_flush(struct queue_writer *w)
{
	struct qop *op = xcalloc(1, sizeof(*op));

	op->kind = QOP_CHUNK;
	op->id = w->id;
	op->chunk_no = w->chunk_no;
	op->first_chunk = w->chunk_no == 0;
	op->data = w->chunk;
	op->len = w->clen;
	qstore_submit(w->q, op);
	w->chunk_no++;
	w->chunk = NULL;
	w->ccap = 0;
	w->clen = 0;
}

int
queue_msg_write(struct queue_writer *w, const void *buf, size_t len)
{
	const char *p = buf;

	if (w->toobig || w->env.size + len > w->q->opts.max_message_size) {
		w->toobig = 1;
		return -1;
	}
	w->env.size += len;
	while (len > 0) {
		size_t n = QUEUE_CHUNK_SIZE - w->clen;

		if (n > len)
			n = len;
		writer_reserve(w, w->clen + n);
		memcpy(w->chunk + w->clen, p, n);
		w->clen += n;
		p += n;
		len -= n;
		if (w->clen == QUEUE_CHUNK_SIZE)
			writer_flush(w);
	}
	return 0;
}

/* rcpt_domain - lowercased domain: given, or after the last '@' */
static char *
rcpt_domain(const struct queue_rcpt_in *r)
{
	const char *d = r->domain;
	char *out;

	if (d == NULL) {
		d = strrchr(r->address, '@');
		if (d == NULL || d[1] == '\0')
			return NULL;
		d++;
	}
	out = xstrdup(d);
	for (char *p = out; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return out;
}

int
queue_msg_add_rcpt(struct queue_writer *w, const struct queue_rcpt_in *r)
{
	struct qrcpt_in *in;
	char *dom;

	if (r == NULL || r->address == NULL || r->address[0] == '\0' ||
	    strlen(r->address) > 1024 || (dom = rcpt_domain(r)) == NULL)
		return -1;
	if (w->n_rcpts == w->cap_rcpts) {
		w->cap_rcpts = w->cap_rcpts ? w->cap_rcpts * 2 : 16;
		w->rcpts = xrealloc(w->rcpts, w->cap_rcpts * sizeof(*w->rcpts));
	}
	in = &w->rcpts[w->n_rcpts++];
	in->address = xstrdup(r->address);
	in->domain = dom;
	in->orcpt = dup_or_null(r->orcpt);
	in->notify = r->notify;
	return 0;
}

/* writer_free - what is left of a writer after its op took the rest */
static void
writer_free(struct queue_writer *w)
{
	free(w->chunk);
	qenv_clear(&w->env);
	for (size_t i = 0; i < w->n_rcpts; i++) {
		free(w->rcpts[i].address);
		free(w->rcpts[i].domain);
		free(w->rcpts[i].orcpt);
	}
	free(w->rcpts);
	free(w);
}

/* writer_abort_op - an op deleting every chunk sent so far */
static struct qop *
writer_abort_op(struct queue_writer *w)
{
	struct qop *op = xcalloc(1, sizeof(*op));

	op->kind = QOP_ABORT;
	op->id = w->id;
	op->chunk_no = w->chunk_no;
	return op;
}

/* op_copy_outs - the op's own copy of n outcomes */
static void
op_copy_outs(struct qop *op, const struct queue_outcome *o, size_t n)
{
	op->outs = xcalloc(n ? n : 1, sizeof(*op->outs));
	op->n_outs = n;
	for (size_t i = 0; i < n; i++) {
		struct queue_outcome *d = &op->outs[i];

		*d = o[i];
		d->reply.enhanced = dup_or_null(o[i].reply.enhanced);
		d->reply.text = dup_or_null(o[i].reply.text);
		d->reply.mx = dup_or_null(o[i].reply.mx);
		d->by = dup_or_null(o[i].by);
	}
}

void
queue_msg_commit_with(struct queue_writer *w, const struct queue_outcome *o,
                      size_t n, queue_commit_cb cb, void *arg)
{
	struct qop *op;

	if (w->toobig || w->n_rcpts == 0) {
		op = writer_abort_op(w);
		op->fail_st = w->toobig ? QUEUE_ETOOBIG : QUEUE_EINVAL;
	} else {
		op = xcalloc(1, sizeof(*op));
		op->kind = QOP_COMMIT;
		op->id = w->id;
		op->chunk_no = w->chunk_no;
		op->data = w->chunk;
		op->len = w->clen;
		op->env = w->env;
		op->rcpts = w->rcpts;
		op->n_rcpts = w->n_rcpts;
		w->chunk = NULL;
		memset(&w->env, 0, sizeof(w->env));
		w->rcpts = NULL;
		w->n_rcpts = 0;
		if (n > 0)
			op_copy_outs(op, o, n);
	}
	op->ccb = cb;
	op->arg = arg;
	qstore_submit(w->q, op);
	writer_free(w);
}

void
queue_msg_commit(struct queue_writer *w, queue_commit_cb cb, void *arg)
{
	queue_msg_commit_with(w, NULL, 0, cb, arg);
}

void
queue_msg_abort(struct queue_writer *w)
{
	if (w == NULL)
		return;
	if (w->chunk_no > 0)
		qstore_submit(w->q, writer_abort_op(w));
	writer_free(w);
}

/* ---- outcomes and admin ---- */

void
queue_outcomes(struct queue *q, const struct queue_outcome *o, size_t n,
               queue_done_cb cb, void *arg)
{
	struct qop *op = xcalloc(1, sizeof(*op));

	op->kind = QOP_OUTCOMES;
	op_copy_outs(op, o, n);
	op->dcb = cb;
	op->arg = arg;
	qstore_submit(q, op);
}

static void
queue_admin(struct queue *q, enum qop_kind kind, queue_msgid id,
            const char *by, queue_done_cb cb, void *arg)
{
	struct qop *op = xcalloc(1, sizeof(*op));

	op->kind = kind;
	op->id = id;
	op->by = dup_or_null(by);
	op->dcb = cb;
	op->arg = arg;
	qstore_submit(q, op);
}

void
queue_msg_hold(struct queue *q, queue_msgid id, queue_done_cb cb, void *arg)
{
	queue_admin(q, QOP_HOLD, id, NULL, cb, arg);
}

void
queue_msg_release(struct queue *q, queue_msgid id, queue_done_cb cb,
                  void *arg)
{
	queue_admin(q, QOP_RELEASE, id, NULL, cb, arg);
}

void
queue_msg_retry_now(struct queue *q, queue_msgid id, queue_done_cb cb,
                    void *arg)
{
	queue_admin(q, QOP_RETRY_NOW, id, NULL, cb, arg);
}

void
queue_msg_delete(struct queue *q, queue_msgid id, const char *by,
                 queue_done_cb cb, void *arg)
{
	queue_admin(q, QOP_DELETE, id, by, cb, arg);
}

/* queue_counters_fix - rewrite counters (queue_check, fix = 1) */
void
queue_counters_fix(struct queue *q, const struct queue_counters *c)
{
	struct qop *op = xcalloc(1, sizeof(*op));

	op->kind = QOP_COUNTERS;
	op->cnt = *c;
	qstore_submit(q, op);
}
