/*
 * queue_codec.c - key layouts, record encodings and message ids of the
 * spool (docs/spool.md), plus small value helpers. Pure functions, any
 * thread.
 */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "queue/queue_internal.h"

#define QREC_VERSION 1
#define QSTR_NULL 0xffffffffu

void
qk_put64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)(v & 0xff);
}

void
qk_put32(unsigned char *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)(v & 0xff);
}

uint64_t
qk_get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

uint32_t
qk_get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

void
qk_msg(unsigned char k[QK_MSG_LEN], queue_msgid id)
{
	qk_put64(k, id);
}

void
qk_body(unsigned char k[QK_BODY_LEN], queue_msgid id, uint32_t chunk)
{
	qk_put64(k, id);
	qk_put32(k + 8, chunk);
}

void
qk_rcpt(unsigned char k[QK_RCPT_LEN], queue_msgid id, uint32_t idx)
{
	qk_put64(k, id);
	qk_put32(k + 8, idx);
}

unsigned
qk_prio(int priority)
{
	if (priority > 127)
		priority = 127;
	if (priority < -127)
		priority = -127;
	return (unsigned)(127 - priority);
}

void
qk_due(unsigned char k[QK_DUE_LEN], unsigned cls, uint64_t ms, queue_msgid id,
       uint32_t idx)
{
	k[0] = (unsigned char)cls;
	qk_put64(k + 1, ms);
	qk_put64(k + 9, id);
	qk_put32(k + 17, idx);
}

int
qk_due_parse(const char *k, size_t len, unsigned *cls, uint64_t *ms,
             queue_msgid *id, uint32_t *idx)
{
	const unsigned char *p = (const unsigned char *)k;

	if (len != QK_DUE_LEN)
		return -1;
	*cls = p[0];
	*ms = qk_get64(p + 1);
	*id = qk_get64(p + 9);
	*idx = qk_get32(p + 17);
	return 0;
}

/* ---- message ids ---- */

void
queue_id_to_text(queue_msgid id, char out[QUEUE_ID_TEXT_LEN])
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 15; i >= 0; i--, id >>= 4)
		out[i] = hex[id & 0xf];
	out[16] = '\0';
}

int
queue_id_parse(const char *s, queue_msgid *out)
{
	queue_msgid v = 0;
	int i;

	if (s == NULL)
		return -1;
	for (i = 0; i < 16; i++) {
		char c = s[i];
		unsigned d;

		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			return -1;
		v = (v << 4) | d;
	}
	if (s[16] != '\0')
		return -1;
	*out = v;
	return 0;
}

uint64_t
queue_id_time_ms(queue_msgid id)
{
	return id >> 16;
}

/* ---- growable buffer and field writers ---- */

void
qbuf_free(struct qbuf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

static void
qbuf_add(struct qbuf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 128;

		while (cap < b->len + n)
			cap *= 2;
		b->p = xrealloc(b->p, cap);
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void
qbuf_u32(struct qbuf *b, uint32_t v)
{
	unsigned char k[4];

	qk_put32(k, v);
	qbuf_add(b, k, 4);
}

static void
qbuf_u64(struct qbuf *b, uint64_t v)
{
	unsigned char k[8];

	qk_put64(k, v);
	qbuf_add(b, k, 8);
}

static void
qbuf_str(struct qbuf *b, const char *s)
{
	if (s == NULL) {
		qbuf_u32(b, QSTR_NULL);
		return;
	}
	qbuf_u32(b, (uint32_t)strlen(s));
	qbuf_add(b, s, strlen(s));
}

/* field reader: fails once, then every get fails */
struct qrd { const unsigned char *p; size_t left; int bad; };

static uint32_t
qrd_u32(struct qrd *r)
{
	uint32_t v;

	if (r->bad || r->left < 4) {
		r->bad = 1;
		return 0;
	}
	v = qk_get32(r->p);
	r->p += 4;
	r->left -= 4;
	return v;
}

static uint64_t
qrd_u64(struct qrd *r)
{
	uint64_t v;

	if (r->bad || r->left < 8) {
		r->bad = 1;
		return 0;
	}
	v = qk_get64(r->p);
	r->p += 8;
	r->left -= 8;
	return v;
}

static char *
qrd_str(struct qrd *r)
{
	uint32_t n = qrd_u32(r);
	char *s;

	if (r->bad || n == QSTR_NULL)
		return NULL;
	if (n > r->left) {
		r->bad = 1;
		return NULL;
	}
	s = xstrndup((const char *)r->p, n);
	r->p += n;
	r->left -= n;
	return s;
}

/* ---- envelope ---- */

void
qenv_encode(const struct qenv *e, struct qbuf *out)
{
	qbuf_u32(out, QREC_VERSION);
	qbuf_u32(out, e->flags);
	qbuf_u32(out, (uint32_t)e->ret);
	qbuf_u32(out, (uint32_t)e->priority);
	qbuf_u64(out, e->submit_ms);
	qbuf_u64(out, e->size);
	qbuf_u32(out, e->chunk_size);
	qbuf_u32(out, e->rcpts_total);
	qbuf_u32(out, e->rcpts_live);
	qbuf_str(out, e->sender);
	qbuf_str(out, e->listener);
	qbuf_str(out, e->tenant);
	qbuf_str(out, e->envid);
}

int
qenv_decode(const char *p, size_t len, struct qenv *e)
{
	struct qrd r = { (const unsigned char *)p, len, 0 };

	memset(e, 0, sizeof(*e));
	if (qrd_u32(&r) != QREC_VERSION)
		return -1;
	e->flags = qrd_u32(&r);
	e->ret = (int)qrd_u32(&r);
	e->priority = (int)qrd_u32(&r);
	e->submit_ms = qrd_u64(&r);
	e->size = qrd_u64(&r);
	e->chunk_size = qrd_u32(&r);
	e->rcpts_total = qrd_u32(&r);
	e->rcpts_live = qrd_u32(&r);
	e->sender = qrd_str(&r);
	e->listener = qrd_str(&r);
	e->tenant = qrd_str(&r);
	e->envid = qrd_str(&r);
	if (r.bad || e->sender == NULL || e->chunk_size == 0) {
		qenv_clear(e);
		return -1;
	}
	return 0;
}

void
qenv_clear(struct qenv *e)
{
	free(e->sender);
	free(e->listener);
	free(e->tenant);
	free(e->envid);
	e->sender = e->listener = e->tenant = e->envid = NULL;
}

/* qenv_export - a public envelope whose strings live in the same block */
struct queue_envelope *
qenv_export(const struct qenv *e, queue_msgid id)
{
	const char *src[4] = { e->sender, e->listener, e->tenant, e->envid };
	size_t need = sizeof(struct queue_envelope);
	struct queue_envelope *out;
	char *p, *dst[4];

	for (int i = 0; i < 4; i++)
		need += src[i] ? strlen(src[i]) + 1 : 0;
	out = xcalloc(1, need);
	p = (char *)(out + 1);
	for (int i = 0; i < 4; i++) {
		dst[i] = NULL;
		if (src[i]) {
			dst[i] = strcpy(p, src[i]);
			p += strlen(src[i]) + 1;
		}
	}
	out->sender = dst[0];
	out->listener = dst[1];
	out->tenant = dst[2];
	out->envid = dst[3];
	out->ret = (enum queue_ret)e->ret;
	out->priority = e->priority;
	out->flags = e->flags;
	out->submit_ms = e->submit_ms;
	out->id = id;
	out->size = e->size;
	out->rcpts_total = e->rcpts_total;
	out->rcpts_live = e->rcpts_live;
	return out;
}

void
queue_envelope_free(struct queue_envelope *env)
{
	free(env);
}

/* ---- recipient ---- */

void
qrcpt_encode(const struct queue_rcpt *r, struct qbuf *out)
{
	qbuf_u32(out, QREC_VERSION);
	qbuf_u32(out, (uint32_t)r->state);
	qbuf_u32(out, r->notify);
	qbuf_u32(out, r->attempts);
	qbuf_u64(out, r->submit_ms);
	qbuf_u64(out, r->first_attempt_ms);
	qbuf_u64(out, r->next_ms);
	qbuf_u32(out, (uint32_t)r->last_code);
	qbuf_str(out, r->address);
	qbuf_str(out, r->domain);
	qbuf_str(out, r->orcpt);
	qbuf_str(out, r->last_enhanced);
	qbuf_str(out, r->last_text);
	qbuf_str(out, r->last_mx);
	qbuf_u64(out, r->warned_ms); /* trailing: absent in older records */
}

int
qrcpt_decode(const char *p, size_t len, struct queue_rcpt *r)
{
	struct qrd d = { (const unsigned char *)p, len, 0 };
	queue_msgid id = r->msgid;
	uint32_t idx = r->idx;

	memset(r, 0, sizeof(*r));
	r->msgid = id;
	r->idx = idx;
	if (qrd_u32(&d) != QREC_VERSION)
		return -1;
	r->state = (enum queue_rcpt_state)qrd_u32(&d);
	r->notify = qrd_u32(&d);
	r->attempts = qrd_u32(&d);
	r->submit_ms = qrd_u64(&d);
	r->first_attempt_ms = qrd_u64(&d);
	r->next_ms = qrd_u64(&d);
	r->last_code = (int)qrd_u32(&d);
	r->address = qrd_str(&d);
	r->domain = qrd_str(&d);
	r->orcpt = qrd_str(&d);
	r->last_enhanced = qrd_str(&d);
	r->last_text = qrd_str(&d);
	r->last_mx = qrd_str(&d);
	if (!d.bad && d.left > 0)
		r->warned_ms = qrd_u64(&d); /* older records end before it */
	if (d.bad || r->address == NULL || r->domain == NULL ||
	    r->state > QUEUE_RCPT_HELD) {
		qrcpt_clear(r);
		return -1;
	}
	return 0;
}

void
qrcpt_clear(struct queue_rcpt *r)
{
	free(r->address);
	free(r->domain);
	free(r->orcpt);
	free(r->last_enhanced);
	free(r->last_text);
	free(r->last_mx);
	r->address = r->domain = r->orcpt = NULL;
	r->last_enhanced = r->last_text = r->last_mx = NULL;
}

void
queue_rcpts_free(struct queue_rcpt *r, size_t n)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		qrcpt_clear(&r[i]);
	free(r);
}

/* ---- counters ---- */

static uint64_t *
qcnt_field(struct queue_counters *c, int i)
{
	uint64_t *f[QCNT_FIELDS] = {
		&c->messages, &c->bytes, &c->rcpts, &c->rcpts_queued,
		&c->rcpts_deferred, &c->rcpts_inflight, &c->rcpts_held,
		&c->total_messages, &c->total_delivered, &c->total_bounced,
		&c->total_expired, &c->total_deleted
	};
	return f[i];
}

void
qcnt_encode(const struct queue_counters *c, unsigned char out[QCNT_FIELDS * 8])
{
	struct queue_counters tmp = *c;

	for (int i = 0; i < QCNT_FIELDS; i++)
		qk_put64(out + 8 * i, *qcnt_field(&tmp, i));
}

int
qcnt_decode(const char *p, size_t len, struct queue_counters *c)
{
	memset(c, 0, sizeof(*c));
	if (len != QCNT_FIELDS * 8)
		return -1;
	for (int i = 0; i < QCNT_FIELDS; i++)
		*qcnt_field(c, i) = qk_get64((const unsigned char *)p + 8 * i);
	return 0;
}

void
qcnt_rcpt(struct queue_counters *c, const struct queue_rcpt *r, int sign)
{
	uint64_t d = (uint64_t)(int64_t)sign; /* +1 or wraps to -1 */

	c->rcpts += d;
	switch (r->state) {
	case QUEUE_RCPT_QUEUED:
		c->rcpts_queued += d;
		if (r->attempts > 0)
			c->rcpts_deferred += d;
		break;
	case QUEUE_RCPT_INFLIGHT:
		c->rcpts_inflight += d;
		break;
	case QUEUE_RCPT_HELD:
		c->rcpts_held += d;
		break;
	}
}

/* ---- texts ---- */

const char *
queue_status_to_text(enum queue_status st)
{
	switch (st) {
	case QUEUE_OK: return "ok";
	case QUEUE_ETEMP: return "temporary store error";
	case QUEUE_EDISKFULL: return "spool disk full";
	case QUEUE_ETOOBIG: return "message too big";
	case QUEUE_ENOTFOUND: return "no such message";
	case QUEUE_EINVAL: return "invalid request";
	case QUEUE_ECLOSED: return "queue closing";
	}
	return "unknown";
}

const char *
queue_rcpt_state_to_text(enum queue_rcpt_state st)
{
	switch (st) {
	case QUEUE_RCPT_QUEUED: return "queued";
	case QUEUE_RCPT_INFLIGHT: return "inflight";
	case QUEUE_RCPT_HELD: return "held";
	}
	return "unknown";
}
