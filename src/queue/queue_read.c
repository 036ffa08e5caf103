/*
 * queue_read.c - synchronous reads: claiming due recipients from the
 * time-ordered index, a message's envelope and recipients, paged message
 * listing, the consistency check, and the streaming body reader.
 * Loop thread (the body reader: any one thread at a time). Reads hold the
 * RocksDB handle's read lock; they never wait for a WAL sync.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/core.h"
#include "queue/queue_internal.h"

/* qget - point read under the caller's read lock; NULL if absent/error */
static char *
qget(struct queue *q, int cf, const unsigned char *k, size_t klen,
     size_t *vlen, int *bad)
{
	char *e = NULL, *v;

	if (q->db == NULL) {
		*bad = 1;
		return NULL;
	}
	v = rocksdb_get_cf(q->db, q->ropts, q->cf[cf], (const char *)k, klen,
	    vlen, &e);
	if (e) {
		log_warnx("-", "spool %s: read: %s", q->path, e);
		rocksdb_free(e);
		*bad = 1;
		return NULL;
	}
	return v;
}

/* env_load - 1 found, 0 absent, -1 error (read lock held) */
static int
env_load(struct queue *q, queue_msgid id, struct qenv *e)
{
	unsigned char k[QK_MSG_LEN];
	size_t len;
	int bad = 0, rc = 0;
	char *v;

	qk_msg(k, id);
	v = qget(q, QCF_MSG, k, sizeof(k), &len, &bad);
	if (bad)
		return -1;
	if (v)
		rc = qenv_decode(v, len, e) == 0 ? 1 : 0;
	rocksdb_free(v);
	return rc;
}

/* ---- claim ---- */

/* claim_floor - lower each class's scan floor to the earliest due key the
 * store thread wrote in it since the last claim (a release, a deferral) */
static void
claim_floor(struct queue *q)
{
	uint64_t low[QK_CLASSES];
	unsigned char k[QK_DUE_LEN];

	pthread_mutex_lock(&q->lock);
	memcpy(low, q->due_inserted_min, sizeof(low));
	for (int c = 0; c < QK_CLASSES; c++)
		q->due_inserted_min[c] = UINT64_MAX;
	pthread_mutex_unlock(&q->lock);
	for (unsigned c = 0; c < QK_CLASSES; c++) {
		if (low[c] == UINT64_MAX)
			continue;
		q->due_class[c] = 1;
		qk_due(k, c, low[c], 0, 0);
		if (memcmp(k, q->due_floor[c], QK_DUE_LEN) < 0)
			memcpy(q->due_floor[c], k, QK_DUE_LEN);
	}
}

struct qscan {
	struct queue_rcpt *out;
	struct qclaim *claims;  /* n claimed, then stale keys to delete */
	size_t n, n_claims, cap;
	rocksdb_iterator_t *rit; /* over the rcpt family, NULL until needed */
};

static void
scan_add(struct qscan *s, const struct qclaim *c)
{
	if (s->n_claims == s->cap) {
		s->cap *= 2;
		s->claims = xrealloc(s->claims, s->cap * sizeof(*s->claims));
	}
	s->claims[s->n_claims++] = *c;
}

/* scan_rcpt - a recipient record through one iterator: the due keys of a
 * message mostly name its recipients in index order, so the next record
 * is usually the iterator's next key (cheaper than a point read, which
 * probes every memtable and level). 1 found, 0 absent, -1 error. */
static int
scan_rcpt(struct queue *q, struct qscan *s, queue_msgid id, uint32_t idx,
          struct queue_rcpt *r)
{
	unsigned char k[QK_RCPT_LEN];
	const char *v;
	size_t vlen;
	int f;

	qk_rcpt(k, id, idx);
	r->msgid = id;
	r->idx = idx;
	if (s->rit == NULL)
		s->rit = rocksdb_create_iterator_cf(q->db, q->ropts,
		    q->cf[QCF_RCPT]);
	f = qdb_iter_get(q, s->rit, k, sizeof(k), &v, &vlen);
	if (f <= 0)
		return f;
	return qrcpt_decode(v, vlen, r) == 0 ? 1 : 0;
}

/* scan_key - one due key: claim it, skip it, or note it stale;
 * -1 on a read error */
static int
scan_key(struct queue *q, struct qscan *s, const char *k, size_t klen)
{
	struct queue_rcpt *r = &s->out[s->n];
	struct qclaim c;
	int found;

	if (qk_due_parse(k, klen, &c.cls, &c.due_ms, &c.id, &c.idx) < 0 ||
	    qclaimset_has(q->claimed, c.id, c.idx))
		return 0;
	memset(r, 0, sizeof(*r));
	found = scan_rcpt(q, s, c.id, c.idx, r);
	if (found < 0)
		return -1;
	if (found == 0 || r->state != QUEUE_RCPT_QUEUED || r->next_ms != c.due_ms) {
		qrcpt_clear(r);
		scan_add(s, &c); /* stale: the claim op deletes the key */
		return 0;
	}
	r->state = QUEUE_RCPT_INFLIGHT;
	scan_add(s, &c); /* then swap it before the stale ones */
	s->claims[s->n_claims - 1] = s->claims[s->n];
	s->claims[s->n++] = c;
	return 0;
}

/* claim_class - walk one priority class of the due index from its floor
 * up to now. Every key below the floor is gone (claimed, deleted) or was
 * reported back through due_inserted_min, so deleted keys at the head of
 * the index (tombstones until compaction) are not walked again and again.
 * The iterator's bounds are the class's floor and its end, so a class
 * never walks into the next one's tombstones; a class found empty is
 * skipped until a key is written in it again. -1 on a read error. */
static int
claim_class(struct queue *q, unsigned cls, uint64_t now, size_t max,
            struct qscan *s)
{
	unsigned char ub[1], last[QK_DUE_LEN], *floor = q->due_floor[cls];
	rocksdb_readoptions_t *ro;
	rocksdb_iterator_t *it;
	size_t klen;
	char *e = NULL;
	int stopped = 0, bad = 0;

	if (qk_get64(floor + 1) > now)
		return 0; /* nothing of this class is due yet */
	ro = rocksdb_readoptions_create();
	ub[0] = (unsigned char)(cls + 1);
	rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)ub, 1);
	rocksdb_readoptions_set_iterate_lower_bound(ro, (const char *)floor,
	    QK_DUE_LEN);
	it = rocksdb_create_iterator_cf(q->db, ro, q->cf[QCF_DUE]);
	memcpy(last, floor, QK_DUE_LEN);
	rocksdb_iter_seek(it, (const char *)floor, QK_DUE_LEN);
	if (!rocksdb_iter_valid(it))
		q->due_class[cls] = 0; /* empty from the floor on */
	for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		const char *k = rocksdb_iter_key(it, &klen);

		if (klen == QK_DUE_LEN &&
		    qk_get64((const unsigned char *)k + 1) > now)
			break;
		if (s->n == max || (bad = scan_key(q, s, k, klen)) < 0) {
			stopped = 1; /* resume at this key next time */
			if (klen == QK_DUE_LEN)
				memcpy(last, k, QK_DUE_LEN);
			break;
		}
	}
	rocksdb_iter_get_error(it, &e);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	if (e) {
		log_warnx("-", "spool %s: due index: %s", q->path, e);
		rocksdb_free(e);
		return -1;
	}
	if (!stopped)
		qk_due(last, cls, now + 1, 0, 0);
	if (memcmp(last, floor, QK_DUE_LEN) > 0)
		memcpy(floor, last, QK_DUE_LEN);
	return bad;
}

/* claim_scan - the classes in priority order (0 = highest): a due
 * recipient of a higher priority is claimed before any of a lower one */
static void
claim_scan(struct queue *q, uint64_t now, size_t max, struct qscan *s)
{
	claim_floor(q);
	for (unsigned c = 0; c < QK_CLASSES && s->n < max; c++) {
		int rc;

		if (!q->due_class[c])
			continue;
		rc = claim_class(q, c, now, max, s);
		/* a class reads records through an rcpt iterator made after its
		 * due iterator: one left from an earlier class could miss a
		 * record written since (a deferral: new record, new due key)
		 * and take the new key for stale, leaving that recipient due
		 * nowhere */
		if (s->rit)
			rocksdb_iter_destroy(s->rit);
		s->rit = NULL;
		if (rc < 0)
			break;
	}
}

int
queue_due_claim(struct queue *q, uint64_t now, size_t max,
                struct queue_rcpt **out)
{
	struct qscan s = { 0 };
	struct qop *op;

	*out = NULL;
	if (max == 0)
		return 0;
	pthread_rwlock_rdlock(&q->dblock);
	if (q->db == NULL) {
		pthread_rwlock_unlock(&q->dblock);
		return -1;
	}
	s.out = xcalloc(max, sizeof(*s.out));
	s.cap = max + 16;
	s.claims = xcalloc(s.cap, sizeof(*s.claims));
	claim_scan(q, now, max, &s);
	pthread_rwlock_unlock(&q->dblock);
	if (s.n_claims == 0) {
		free(s.claims);
		free(s.out);
		return 0;
	}
	for (size_t i = 0; i < s.n; i++)
		qclaimset_add(q->claimed, s.claims[i].id, s.claims[i].idx);
	op = xcalloc(1, sizeof(*op));
	op->kind = QOP_CLAIM;
	op->claims = s.claims;
	op->n_claims = s.n_claims;
	op->n_claimed = s.n;
	qstore_submit(q, op);
	if (s.n == 0) {
		free(s.out);
		return 0;
	}
	*out = s.out;
	return (int)s.n;
}

uint64_t
queue_due_next_ms(struct queue *q)
{
	rocksdb_readoptions_t *ro;
	rocksdb_iterator_t *it;
	uint64_t when = UINT64_MAX, ms;
	queue_msgid id;
	uint32_t idx;
	unsigned cls;
	size_t klen;

	pthread_rwlock_rdlock(&q->dblock);
	if (q->db == NULL)
		goto done;
	claim_floor(q);
	for (unsigned c = 0; c < QK_CLASSES; c++) {
		unsigned char ub[1] = { (unsigned char)(c + 1) };

		if (!q->due_class[c])
			continue;
		ro = rocksdb_readoptions_create();
		rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)ub, 1);
		it = rocksdb_create_iterator_cf(q->db, ro, q->cf[QCF_DUE]);
		for (rocksdb_iter_seek(it, (const char *)q->due_floor[c],
		         QK_DUE_LEN);
		     rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
			const char *k = rocksdb_iter_key(it, &klen);

			if (qk_due_parse(k, klen, &cls, &ms, &id, &idx) < 0 ||
			    qclaimset_has(q->claimed, id, idx))
				continue;
			if (ms < when)
				when = ms;
			break;
		}
		rocksdb_iter_destroy(it);
		rocksdb_readoptions_destroy(ro);
	}
done:
	pthread_rwlock_unlock(&q->dblock);
	return when;
}

/* ---- one message ---- */

/* rcpts_scan - the records of one message (read lock held) */
static int
rcpts_scan(struct queue *q, queue_msgid id, struct queue_rcpt **out)
{
	unsigned char lo[QK_RCPT_LEN];
	rocksdb_iterator_t *it;
	size_t n = 0, cap = 0, klen, vlen;

	*out = NULL;
	qk_rcpt(lo, id, 0);
	it = rocksdb_create_iterator_cf(q->db, q->ropts, q->cf[QCF_RCPT]);
	for (rocksdb_iter_seek(it, (const char *)lo, sizeof(lo));
	     rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		const unsigned char *k =
		    (const unsigned char *)rocksdb_iter_key(it, &klen);
		const char *v = rocksdb_iter_value(it, &vlen);

		if (klen != QK_RCPT_LEN || qk_get64(k) != id)
			break;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			*out = xrealloc(*out, cap * sizeof(**out));
		}
		memset(&(*out)[n], 0, sizeof(**out));
		(*out)[n].msgid = id;
		(*out)[n].idx = qk_get32(k + 8);
		if (qrcpt_decode(v, vlen, &(*out)[n]) == 0)
			n++;
	}
	rocksdb_iter_destroy(it);
	return (int)n;
}

int
queue_msg_rcpts(struct queue *q, queue_msgid id, struct queue_rcpt **out)
{
	int n = -1;

	*out = NULL;
	pthread_rwlock_rdlock(&q->dblock);
	if (q->db)
		n = rcpts_scan(q, id, out);
	pthread_rwlock_unlock(&q->dblock);
	return n;
}

struct queue_envelope *
queue_envelope_get(struct queue *q, queue_msgid id)
{
	struct queue_envelope *out = NULL;
	struct qenv e;

	pthread_rwlock_rdlock(&q->dblock);
	if (env_load(q, id, &e) > 0) {
		out = qenv_export(&e, id);
		qenv_clear(&e);
	}
	pthread_rwlock_unlock(&q->dblock);
	return out;
}

/* ---- listing ---- */

/* list_match - does a message pass the filter? (read lock held) */
static int
list_match(struct queue *q, queue_msgid id, const struct qenv *e,
           const struct queue_filter *f)
{
	struct queue_rcpt *r;
	int n, hit = 0;

	if (f == NULL)
		return 1;
	if ((f->sender && strcasecmp(f->sender, e->sender) != 0) ||
	    (f->tenant && (e->tenant == NULL || strcmp(f->tenant, e->tenant))) ||
	    (f->held_only && !(e->flags & QUEUE_MSG_HELD)))
		return 0;
	if (f->domain == NULL)
		return 1;
	n = rcpts_scan(q, id, &r);
	for (int i = 0; i < n && !hit; i++)
		hit = strcasecmp(r[i].domain, f->domain) == 0;
	queue_rcpts_free(r, n > 0 ? (size_t)n : 0);
	return hit;
}

int
queue_msg_list(struct queue *q, queue_msgid after,
               const struct queue_filter *f, size_t max,
               struct queue_envelope **out)
{
	unsigned char k0[QK_MSG_LEN];
	rocksdb_iterator_t *it;
	size_t n = 0, klen, vlen;

	pthread_rwlock_rdlock(&q->dblock);
	if (q->db == NULL) {
		pthread_rwlock_unlock(&q->dblock);
		return -1;
	}
	qk_msg(k0, after + 1);
	it = rocksdb_create_iterator_cf(q->db, q->ropts, q->cf[QCF_MSG]);
	for (rocksdb_iter_seek(it, (const char *)k0, sizeof(k0));
	     rocksdb_iter_valid(it) && n < max; rocksdb_iter_next(it)) {
		const char *k = rocksdb_iter_key(it, &klen);
		const char *v = rocksdb_iter_value(it, &vlen);
		queue_msgid id = qk_get64((const unsigned char *)k);
		struct qenv e;

		if (klen != QK_MSG_LEN || qenv_decode(v, vlen, &e) < 0)
			continue;
		if (list_match(q, id, &e, f))
			out[n++] = qenv_export(&e, id);
		qenv_clear(&e);
	}
	rocksdb_iter_destroy(it);
	pthread_rwlock_unlock(&q->dblock);
	return (int)n;
}

/* orphan_found - chunks 0..n-1 of id have no message: report, maybe drop */
static int
orphan_found(struct queue *q, queue_msgid id, uint32_t n, int fix)
{
	unsigned char k[QK_MSG_LEN];
	char idt[QUEUE_ID_TEXT_LEN];
	int bad = 0, live;
	size_t len;
	char *v;
	struct qop *op;

	qk_msg(k, id);
	v = qget(q, QCF_MSG, k, sizeof(k), &len, &bad);
	live = v != NULL;
	rocksdb_free(v);
	if (!live && !bad) {  /* still streaming? */
		v = qget(q, QCF_INCOMING, k, sizeof(k), &len, &bad);
		live = v != NULL;
		rocksdb_free(v);
	}
	if (live || bad)
		return 0;
	queue_id_to_text(id, idt);
	log_warnx(idt, "spool %s: %u body chunk(s) without a message%s",
	    q->path, n, fix ? "; removing them" : "");
	if (fix) {
		op = xcalloc(1, sizeof(*op));
		op->kind = QOP_ABORT;
		op->internal = 1;
		op->id = id;
		op->chunk_no = n;
		qstore_submit(q, op);
	}
	return 1;
}

/* check_orphans - body chunks of no message (read lock held) */
static int
check_orphans(struct queue *q, int fix)
{
	rocksdb_iterator_t *it;
	queue_msgid cur = 0;
	uint32_t n = 0;
	size_t klen;
	int orphans = 0;

	it = rocksdb_create_iterator_cf(q->db, q->ropts, q->cf[QCF_BODY]);
	for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
	     rocksdb_iter_next(it)) {
		const unsigned char *k =
		    (const unsigned char *)rocksdb_iter_key(it, &klen);

		if (klen != QK_BODY_LEN)
			continue;
		if (n > 0 && qk_get64(k) != cur) {
			orphans += orphan_found(q, cur, n, fix);
			n = 0;
		}
		cur = qk_get64(k);
		n = qk_get32(k + 8) + 1;
	}
	if (n > 0)
		orphans += orphan_found(q, cur, n, fix);
	rocksdb_iter_destroy(it);
	return orphans;
}

int
queue_check(struct queue *q, int fix, struct queue_counters *scanned)
{
	struct queue_counters s, c;
	int rc, ok, orphans = 0;

	pthread_rwlock_rdlock(&q->dblock);
	rc = q->db ? qdb_scan_counts(q, &s) : -1;
	if (rc == 0)
		orphans = check_orphans(q, fix);
	pthread_rwlock_unlock(&q->dblock);
	if (rc < 0)
		return -1;
	if (scanned)
		*scanned = s;
	queue_counters_get(q, &c);
	ok = s.messages == c.messages && s.bytes == c.bytes &&
	    s.rcpts == c.rcpts && s.rcpts_queued == c.rcpts_queued &&
	    s.rcpts_deferred == c.rcpts_deferred &&
	    s.rcpts_inflight == c.rcpts_inflight && s.rcpts_held == c.rcpts_held;
	if (!ok) {
		log_warnx("-", "spool %s: counters differ from a scan%s",
		    q->path, fix ? "; rewriting them" : "");
		if (fix)
			queue_counters_fix(q, &s);
	}
	return ok && orphans == 0 ? 0 : -1;
}

/* ---- body reader ---- */

struct queue_body {
	struct queue *q;
	queue_msgid id;
	uint64_t size, pos;
	uint32_t chunk_size;
	int64_t cur_no;
	char *cur;
	size_t cur_len;
};

struct queue_body *
queue_body_open(struct queue *q, queue_msgid id)
{
	struct queue_body *r = NULL;
	struct qenv e;

	pthread_rwlock_rdlock(&q->dblock);
	if (env_load(q, id, &e) > 0) {
		r = xcalloc(1, sizeof(*r));
		r->q = q;
		r->id = id;
		r->size = e.size;
		r->chunk_size = e.chunk_size;
		r->cur_no = -1;
		qenv_clear(&e);
	}
	pthread_rwlock_unlock(&q->dblock);
	return r;
}

/* body_load - make chunk no current; -1 if missing */
static int
body_load(struct queue_body *r, int64_t no)
{
	unsigned char k[QK_BODY_LEN];
	int bad = 0;

	rocksdb_free(r->cur);
	r->cur = NULL;
	r->cur_no = -1;
	qk_body(k, r->id, (uint32_t)no);
	pthread_rwlock_rdlock(&r->q->dblock);
	r->cur = qget(r->q, QCF_BODY, k, sizeof(k), &r->cur_len, &bad);
	pthread_rwlock_unlock(&r->q->dblock);
	if (r->cur == NULL)
		return -1;
	r->cur_no = no;
	return 0;
}

long
queue_body_read(struct queue_body *r, void *buf, size_t len)
{
	int64_t no;
	size_t off, n;

	if (r->pos >= r->size || len == 0)
		return 0;
	no = (int64_t)(r->pos / r->chunk_size);
	off = (size_t)(r->pos % r->chunk_size);
	if (no != r->cur_no && body_load(r, no) < 0)
		return -1;
	if (off >= r->cur_len)
		return -1;
	n = r->cur_len - off;
	if (n > len)
		n = len;
	if (n > r->size - r->pos)
		n = (size_t)(r->size - r->pos);
	memcpy(buf, r->cur + off, n);
	r->pos += n;
	return (long)n;
}

void
queue_body_rewind(struct queue_body *r)
{
	r->pos = 0;
}

uint64_t
queue_body_size(const struct queue_body *r)
{
	return r->size;
}

void
queue_body_close(struct queue_body *r)
{
	if (r == NULL)
		return;
	rocksdb_free(r->cur);
	free(r);
}
