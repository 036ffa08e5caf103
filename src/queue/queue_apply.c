/*
 * queue_apply.c - what each op writes, on the store thread, into the
 * round's WriteBatch. Envelope and recipient records written in the round
 * are also kept in the round cache, and reads look there first, so an op
 * sees the writes of the ops before it in the same round.
 *
 * Lifecycle: a recipient record is QUEUED (with a due-index key), INFLIGHT
 * (with an inflight key holding its due time) or HELD (no index key).
 * Terminal outcomes delete the record; the message's rcpts_live is its
 * reference count, and when it reaches 0 the envelope and every body chunk
 * are deleted in the same batch. Counters change with every state change
 * and are written in every batch (qapply_counters).
 */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "queue/queue_internal.h"

static const char qkey_counters[] = "counters";

/* ---- small helpers over the round's batch ---- */

/* wget - read through the round cache; NULL if absent; *bad on error */
static char *
wget(struct qround *r, int cf, const unsigned char *k, size_t klen,
     size_t *vlen, int *bad)
{
	struct queue *q = r->q;
	char *e = NULL, *v;

	if (qrcache_get(r->rc, cf, k, klen, &v, vlen))
		return v;
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

static void
wput(struct qround *r, int cf, const unsigned char *k, size_t klen,
     const char *v, size_t vlen)
{
	rocksdb_writebatch_put_cf(r->wb, r->q->cf[cf], (const char *)k, klen,
	    v, vlen);
	if (cf == QCF_MSG || cf == QCF_RCPT)
		qrcache_set(r->rc, cf, k, klen, v, vlen);
}

static void
wdel(struct qround *r, int cf, const unsigned char *k, size_t klen)
{
	rocksdb_writebatch_delete_cf(r->wb, r->q->cf[cf], (const char *)k,
	    klen);
	if (cf == QCF_MSG || cf == QCF_RCPT)
		qrcache_set(r->rc, cf, k, klen, NULL, 0);
}

/* env_get - load an envelope: 1 found, 0 absent, -1 error */
static int
env_get(struct qround *r, queue_msgid id, struct qenv *e)
{
	unsigned char k[QK_MSG_LEN];
	size_t len;
	int bad = 0, rc = 0;
	char *v;

	qk_msg(k, id);
	v = wget(r, QCF_MSG, k, sizeof(k), &len, &bad);
	if (bad)
		return -1;
	if (v)
		rc = qenv_decode(v, len, e) == 0 ? 1 : -1;
	rocksdb_free(v);
	return rc;
}

static void
env_put(struct qround *r, queue_msgid id, const struct qenv *e)
{
	unsigned char k[QK_MSG_LEN];
	struct qbuf b = { 0 };

	qk_msg(k, id);
	qenv_encode(e, &b);
	wput(r, QCF_MSG, k, sizeof(k), b.p, b.len);
	qbuf_free(&b);
}

/* rcpt_get - load a recipient: 1 found, 0 absent, -1 error. What this
 * round wrote comes from the round cache; the rest through one iterator
 * per op (r->rit, created after every earlier round's write, destroyed
 * when the op is applied), as claims and outcomes come in key order. */
static int
rcpt_get(struct qround *r, queue_msgid id, uint32_t idx, struct queue_rcpt *rc)
{
	unsigned char k[QK_RCPT_LEN];
	size_t len;
	int ret = 0;
	const char *cv;
	char *v;

	qk_rcpt(k, id, idx);
	rc->msgid = id;
	rc->idx = idx;
	if (qrcache_get(r->rc, QCF_RCPT, k, sizeof(k), &v, &len)) {
		if (v)
			ret = qrcpt_decode(v, len, rc) == 0 ? 1 : -1;
		free(v);
		return ret;
	}
	if (r->rit == NULL)
		r->rit = rocksdb_create_iterator_cf(r->q->db, r->q->ropts,
		    r->q->cf[QCF_RCPT]);
	ret = qdb_iter_get(r->q, r->rit, k, sizeof(k), &cv, &len);
	if (ret > 0)
		ret = qrcpt_decode(cv, len, rc) == 0 ? 1 : -1;
	return ret;
}

/* rcpt_put - write the record and the index key of its state; cls is
 * the priority class of its message (qk_prio) */
static void
rcpt_put(struct qround *r, const struct queue_rcpt *rc, unsigned cls)
{
	unsigned char k[QK_RCPT_LEN], dk[QK_DUE_LEN], v[8];
	struct qbuf b = { 0 };

	qk_rcpt(k, rc->msgid, rc->idx);
	qrcpt_encode(rc, &b);
	wput(r, QCF_RCPT, k, sizeof(k), b.p, b.len);
	qbuf_free(&b);
	if (rc->state == QUEUE_RCPT_QUEUED) {
		qk_due(dk, cls, rc->next_ms, rc->msgid, rc->idx);
		wput(r, QCF_DUE, dk, sizeof(dk), "", 0);
		if (rc->next_ms < r->min_due[cls])
			r->min_due[cls] = rc->next_ms;
	} else if (rc->state == QUEUE_RCPT_INFLIGHT) {
		qk_put64(v, rc->next_ms);
		wput(r, QCF_INFLIGHT, k, sizeof(k), (const char *)v, sizeof(v));
	}
	qcnt_rcpt(&r->q->cnt, rc, 1);
}

/* rcpt_unindex - remove the index key of its state (record stays) */
static void
rcpt_unindex(struct qround *r, const struct queue_rcpt *rc, unsigned cls)
{
	unsigned char k[QK_RCPT_LEN], dk[QK_DUE_LEN];

	qk_rcpt(k, rc->msgid, rc->idx);
	if (rc->state == QUEUE_RCPT_QUEUED) {
		qk_due(dk, cls, rc->next_ms, rc->msgid, rc->idx);
		wdel(r, QCF_DUE, dk, sizeof(dk));
	} else if (rc->state == QUEUE_RCPT_INFLIGHT) {
		wdel(r, QCF_INFLIGHT, k, sizeof(k));
	}
	qcnt_rcpt(&r->q->cnt, rc, -1);
}

static void
rcpt_delete(struct qround *r, const struct queue_rcpt *rc, unsigned cls)
{
	unsigned char k[QK_RCPT_LEN];

	rcpt_unindex(r, rc, cls);
	qk_rcpt(k, rc->msgid, rc->idx);
	wdel(r, QCF_RCPT, k, sizeof(k));
}

/* msg_delete - envelope and every body chunk go */
static void
msg_delete(struct qround *r, queue_msgid id, const struct qenv *e)
{
	unsigned char k[QK_BODY_LEN];
	uint64_t n = (e->size + e->chunk_size - 1) / e->chunk_size;

	for (uint64_t c = 0; c < n; c++) {
		qk_body(k, id, (uint32_t)c);
		wdel(r, QCF_BODY, k, sizeof(k));
	}
	qk_msg(k, id);
	wdel(r, QCF_MSG, k, QK_MSG_LEN);
	r->q->cnt.messages--;
	r->q->cnt.bytes -= e->size;
}

void
qapply_counters(struct qround *r)
{
	unsigned char v[QCNT_FIELDS * 8];

	qcnt_encode(&r->q->cnt, v);
	rocksdb_writebatch_put_cf(r->wb, r->q->cf[QCF_DEFAULT],
	    qkey_counters, sizeof(qkey_counters) - 1, (const char *)v,
	    sizeof(v));
}

/* ---- failed-chunk ids (q->lock) ---- */

void
qfail_add(struct queue *q, queue_msgid id, enum queue_status st)
{
	struct qfail *f = xcalloc(1, sizeof(*f));

	f->id = id;
	f->st = st;
	pthread_mutex_lock(&q->lock);
	f->next = q->failed;
	q->failed = f;
	pthread_mutex_unlock(&q->lock);
}

/* qfail_find - status of a failed id (QUEUE_OK = none); remove if asked */
static enum queue_status
qfail_find(struct queue *q, queue_msgid id, int remove)
{
	enum queue_status st = QUEUE_OK;
	struct qfail **pp;

	pthread_mutex_lock(&q->lock);
	for (pp = &q->failed; *pp;) {
		struct qfail *f = *pp;

		if (f->id != id) {
			pp = &f->next;
			continue;
		}
		st = f->st;
		if (!remove)
			break;
		*pp = f->next; /* duplicates (several failed chunks) go too */
		free(f);
	}
	pthread_mutex_unlock(&q->lock);
	return st;
}

void
qfail_free_all(struct queue *q)
{
	while (q->failed) {
		struct qfail *f = q->failed;

		q->failed = f->next;
		free(f);
	}
}

/* ---- ops ---- */

static void
apply_chunk(struct qround *r, struct qop *op)
{
	unsigned char k[QK_BODY_LEN];

	op->st = qfail_find(r->q, op->id, 0);
	if (op->st == QUEUE_OK && r->q->space_low) {
		op->st = QUEUE_EDISKFULL; /* its commit will fail too */
		qfail_add(r->q, op->id, op->st);
	}
	if (op->st != QUEUE_OK)
		return;
	qk_body(k, op->id, op->chunk_no);
	wput(r, QCF_BODY, k, sizeof(k), op->data, op->len);
	if (op->first_chunk) {
		qk_msg(k, op->id);
		wput(r, QCF_INCOMING, k, QK_MSG_LEN, "", 0);
	}
}

static void apply_outcomes(struct qround *r, struct qop *op);

/* commit_drop_chunks - a refused commit leaves none of its body */
static void
commit_drop_chunks(struct qround *r, struct qop *op)
{
	unsigned char k[QK_BODY_LEN];

	if (op->chunk_no == 0)
		return;
	for (uint32_t c = 0; c < op->chunk_no; c++) {
		qk_body(k, op->id, c);
		wdel(r, QCF_BODY, k, sizeof(k));
	}
	qk_msg(k, op->id);
	wdel(r, QCF_INCOMING, k, QK_MSG_LEN);
}

static void
apply_commit(struct qround *r, struct qop *op)
{
	unsigned char k[QK_BODY_LEN];
	int held = (op->env.flags & QUEUE_MSG_HELD) != 0;

	op->st = qfail_find(r->q, op->id, 1);
	if (op->st == QUEUE_OK && r->q->space_low)
		op->st = QUEUE_EDISKFULL;
	if (op->st != QUEUE_OK) {
		commit_drop_chunks(r, op); /* what was streamed before */
		return;
	}
	if (op->len > 0) {
		qk_body(k, op->id, op->chunk_no);
		wput(r, QCF_BODY, k, sizeof(k), op->data, op->len);
	}
	if (op->chunk_no > 0) {
		qk_msg(k, op->id);
		wdel(r, QCF_INCOMING, k, QK_MSG_LEN);
	}
	op->env.rcpts_total = op->env.rcpts_live = (uint32_t)op->n_rcpts;
	env_put(r, op->id, &op->env);
	for (size_t i = 0; i < op->n_rcpts; i++) {
		struct queue_rcpt rc = {
			.msgid = op->id, .idx = (uint32_t)i,
			.state = held ? QUEUE_RCPT_HELD : QUEUE_RCPT_QUEUED,
			.address = op->rcpts[i].address,
			.domain = op->rcpts[i].domain,
			.orcpt = op->rcpts[i].orcpt,
			.notify = op->rcpts[i].notify,
			.submit_ms = op->env.submit_ms,
			.next_ms = op->env.submit_ms,
		};
		rcpt_put(r, &rc, qk_prio(op->env.priority));
	}
	r->q->cnt.messages++;
	r->q->cnt.bytes += op->env.size;
	r->q->cnt.total_messages++;
	/* queue_msg_commit_with: the outcomes go in the same batch. A read
	 * error skips an outcome (its recipient stays in flight until the
	 * next start) but the message itself is in: its status stays OK */
	apply_outcomes(r, op);
	op->st = QUEUE_OK;
}

static void
apply_abort(struct qround *r, struct qop *op)
{
	unsigned char k[QK_BODY_LEN];

	if (!op->internal)
		qfail_find(r->q, op->id, 1);
	for (uint32_t c = 0; c < op->chunk_no; c++) {
		qk_body(k, op->id, c);
		wdel(r, QCF_BODY, k, sizeof(k));
	}
	qk_msg(k, op->id);
	wdel(r, QCF_INCOMING, k, QK_MSG_LEN);
}

/* apply_claim - mark claimed recipients in flight; delete stale keys.
 * The loop read the recipients before the ops pending ahead of this one
 * were applied, and the scheduler already has them: whatever those ops
 * did (a hold, a release, a retry-now moved the due time), a claimed
 * recipient that still exists is in flight now, or it could be claimed a
 * second time while its first attempt runs. Its outcome then decides (a
 * deferral of a held message's recipient makes it held). */
static void
apply_claim(struct qround *r, struct qop *op)
{
	for (size_t i = 0; i < op->n_claims; i++) {
		struct qclaim *c = &op->claims[i];
		struct queue_rcpt rc = { 0 };
		int found = rcpt_get(r, c->id, c->idx, &rc);
		unsigned char dk[QK_DUE_LEN];

		if (found < 0) {
			op->st = QUEUE_ETEMP;
			return;
		}
		if (!found || rc.state != QUEUE_RCPT_QUEUED ||
		    rc.next_ms != c->due_ms) {
			qk_due(dk, c->cls, c->due_ms, c->id, c->idx); /* stale */
			wdel(r, QCF_DUE, dk, sizeof(dk));
		}
		if (i < op->n_claimed && found && rc.state != QUEUE_RCPT_INFLIGHT) {
			rcpt_unindex(r, &rc, c->cls); /* a message's class is fixed */
			rc.state = QUEUE_RCPT_INFLIGHT;
			rcpt_put(r, &rc, c->cls);
		}
		qrcpt_clear(&rc);
	}
}

/* outcome_reply - keep the last reply of a recipient */
static void
outcome_reply(struct queue_rcpt *rc, const struct queue_outcome *o)
{
	if (o->reply.code == 0 && o->reply.text == NULL)
		return;
	free(rc->last_enhanced);
	free(rc->last_text);
	free(rc->last_mx);
	rc->last_code = o->reply.code;
	rc->last_enhanced = o->reply.enhanced ? xstrdup(o->reply.enhanced) : NULL;
	rc->last_text = o->reply.text ? xstrdup(o->reply.text) : NULL;
	rc->last_mx = o->reply.mx ? xstrdup(o->reply.mx) : NULL;
}

/* outcome_terminal - the recipient leaves; the message with its last */
static void
outcome_terminal(struct qround *r, struct queue_rcpt *rc, struct qenv *e,
                 enum queue_outcome_kind kind)
{
	struct queue_counters *c = &r->q->cnt;

	rcpt_delete(r, rc, qk_prio(e->priority));
	if (kind == QUEUE_OUT_DELIVERED)
		c->total_delivered++;
	else if (kind == QUEUE_OUT_BOUNCED)
		c->total_bounced++;
	else if (kind == QUEUE_OUT_EXPIRED)
		c->total_expired++;
	else
		c->total_deleted++;
	if (e->rcpts_live > 0)
		e->rcpts_live--;
	if (e->rcpts_live == 0)
		msg_delete(r, rc->msgid, e);
	else
		env_put(r, rc->msgid, e);
}

/* apply_outcome - one recipient's outcome; -1 on a read error */
static int
apply_outcome(struct qround *r, const struct queue_outcome *o)
{
	struct queue_rcpt rc = { 0 };
	struct qenv e;
	int found = rcpt_get(r, o->msgid, o->idx, &rc), efound = 0;
	uint64_t now = now_ms();

	if (found > 0)
		efound = env_get(r, o->msgid, &e);
	if (found <= 0 || efound <= 0) {
		qrcpt_clear(&rc);
		if (efound > 0)
			qenv_clear(&e);
		return found < 0 || efound < 0 ? -1 : 0;
	}
	if (o->kind <= QUEUE_OUT_BOUNCED) {
		rc.attempts++;
		if (rc.first_attempt_ms == 0)
			rc.first_attempt_ms = o->attempt_ms ? o->attempt_ms : now;
	}
	if (o->kind == QUEUE_OUT_DELIVERED || o->kind == QUEUE_OUT_BOUNCED ||
	    o->kind == QUEUE_OUT_EXPIRED || o->kind == QUEUE_OUT_DELETED) {
		outcome_terminal(r, &rc, &e, o->kind);
	} else {
		rcpt_unindex(r, &rc, qk_prio(e.priority));
		outcome_reply(&rc, o);
		rc.next_ms = o->kind == QUEUE_OUT_RELEASE ? now : o->next_ms;
		if (o->warned_ms)
			rc.warned_ms = o->warned_ms;
		rc.state = (e.flags & QUEUE_MSG_HELD) ? QUEUE_RCPT_HELD
		                                      : QUEUE_RCPT_QUEUED;
		rcpt_put(r, &rc, qk_prio(e.priority));
	}
	qrcpt_clear(&rc);
	qenv_clear(&e);
	return 0;
}

static void
apply_outcomes(struct qround *r, struct qop *op)
{
	for (size_t i = 0; i < op->n_outs; i++)
		if (apply_outcome(r, &op->outs[i]) < 0)
			op->st = QUEUE_ETEMP;
}

/* admin_rcpt - hold, release or delete one recipient */
static void
admin_rcpt(struct qround *r, struct qop *op, struct queue_rcpt *rc,
           unsigned cls)
{
	if (op->kind == QOP_HOLD && rc->state == QUEUE_RCPT_QUEUED) {
		rcpt_unindex(r, rc, cls);
		rc->state = QUEUE_RCPT_HELD;
		rcpt_put(r, rc, cls);
	} else if (op->kind == QOP_RELEASE && rc->state == QUEUE_RCPT_HELD) {
		rcpt_unindex(r, rc, cls);
		rc->state = QUEUE_RCPT_QUEUED;
		rc->next_ms = now_ms();
		rcpt_put(r, rc, cls);
	} else if (op->kind == QOP_RETRY_NOW &&
	    rc->state == QUEUE_RCPT_QUEUED && rc->next_ms > now_ms()) {
		rcpt_unindex(r, rc, cls);
		rc->next_ms = now_ms();
		rcpt_put(r, rc, cls);
	} else if (op->kind == QOP_DELETE) {
		rcpt_delete(r, rc, cls);
		r->q->cnt.total_deleted++;
	}
}

static void
apply_admin(struct qround *r, struct qop *op)
{
	struct qenv e;
	int found = env_get(r, op->id, &e);

	if (found <= 0) {
		op->st = found < 0 ? QUEUE_ETEMP : QUEUE_ENOTFOUND;
		return;
	}
	for (uint32_t i = 0; i < e.rcpts_total; i++) {
		struct queue_rcpt rc = { 0 };
		int f = rcpt_get(r, op->id, i, &rc);

		if (f > 0)
			admin_rcpt(r, op, &rc, qk_prio(e.priority));
		qrcpt_clear(&rc);
	}
	if (op->kind == QOP_DELETE) {
		char idt[QUEUE_ID_TEXT_LEN];

		msg_delete(r, op->id, &e);
		queue_id_to_text(op->id, idt);
		log_info(idt, "message deleted by %s", op->by ? op->by : "admin");
	} else if (op->kind != QOP_RETRY_NOW) {
		if (op->kind == QOP_HOLD)
			e.flags |= QUEUE_MSG_HELD;
		else
			e.flags &= ~QUEUE_MSG_HELD;
		env_put(r, op->id, &e);
	}
	qenv_clear(&e);
}

/* apply_kv - put or delete one small record of the default family */
static void
apply_kv(struct qround *r, struct qop *op)
{
	size_t klen = strlen(op->by), vlen;
	int bad = 0;
	char *v;

	if (op->kind == QOP_KV_PUT) {
		wput(r, QCF_DEFAULT, (const unsigned char *)op->by, klen, op->data, op->len);
		return;
	}
	v = wget(r, QCF_DEFAULT, (const unsigned char *)op->by, klen, &vlen, &bad);
	if (bad) {
		op->st = QUEUE_ETEMP;
		return;
	}
	if (v == NULL) {
		op->st = QUEUE_ENOTFOUND;
		return;
	}
	rocksdb_free(v);
	wdel(r, QCF_DEFAULT, (const unsigned char *)op->by, klen);
}

void
qapply(struct qround *r, struct qop *op)
{
	op->st = QUEUE_OK;
	switch (op->kind) {
	case QOP_CHUNK: apply_chunk(r, op); break;
	case QOP_COMMIT: apply_commit(r, op); break;
	case QOP_ABORT: apply_abort(r, op); break;
	case QOP_CLAIM: apply_claim(r, op); break;
	case QOP_OUTCOMES: apply_outcomes(r, op); break;
	case QOP_HOLD:
	case QOP_RELEASE:
	case QOP_RETRY_NOW:
	case QOP_DELETE: apply_admin(r, op); break;
	case QOP_KV_PUT:
	case QOP_KV_DEL: apply_kv(r, op); break;
	case QOP_COUNTERS:
		op->cnt.total_messages = r->q->cnt.total_messages;
		op->cnt.total_delivered = r->q->cnt.total_delivered;
		op->cnt.total_bounced = r->q->cnt.total_bounced;
		op->cnt.total_expired = r->q->cnt.total_expired;
		op->cnt.total_deleted = r->q->cnt.total_deleted;
		r->q->cnt = op->cnt;
		break;
	}
	if (r->rit) {
		rocksdb_iter_destroy(r->rit);
		r->rit = NULL;
	}
}
