/*
 * queue_claimset.c - the set of recipients claimed on the loop whose
 * in-flight mark the store thread has not written yet. queue_due_claim
 * skips them while their due-index entry is still visible. Loop thread
 * only. A chained hash table keyed by (msgid, rcpt idx).
 */
#include <stdlib.h>

#include "core/core.h"
#include "queue/queue_internal.h"

struct qcnode { struct qcnode *next; queue_msgid id; uint32_t idx; };

struct qclaimset {
	struct qcnode **b;
	size_t nb, n;
};

static size_t
qcs_hash(const struct qclaimset *s, queue_msgid id, uint32_t idx)
{
	uint64_t h = (id ^ ((uint64_t)idx << 32) ^ idx) * 0x9e3779b97f4a7c15ull;

	return (size_t)(h >> 20) & (s->nb - 1);
}

struct qclaimset *
qclaimset_new(void)
{
	struct qclaimset *s = xcalloc(1, sizeof(*s));

	s->nb = 256;
	s->b = xcalloc(s->nb, sizeof(*s->b));
	return s;
}

void
qclaimset_free(struct qclaimset *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->nb; i++) {
		struct qcnode *n = s->b[i], *next;

		for (; n; n = next) {
			next = n->next;
			free(n);
		}
	}
	free(s->b);
	free(s);
}

int
qclaimset_has(const struct qclaimset *s, queue_msgid id, uint32_t idx)
{
	const struct qcnode *n = s->b[qcs_hash(s, id, idx)];

	for (; n; n = n->next)
		if (n->id == id && n->idx == idx)
			return 1;
	return 0;
}

/* qcs_grow - double the bucket array */
static void
qcs_grow(struct qclaimset *s)
{
	struct qcnode **old = s->b;
	size_t onb = s->nb;

	s->nb *= 2;
	s->b = xcalloc(s->nb, sizeof(*s->b));
	for (size_t i = 0; i < onb; i++) {
		struct qcnode *n = old[i], *next;

		for (; n; n = next) {
			size_t h = qcs_hash(s, n->id, n->idx);

			next = n->next;
			n->next = s->b[h];
			s->b[h] = n;
		}
	}
	free(old);
}

void
qclaimset_add(struct qclaimset *s, queue_msgid id, uint32_t idx)
{
	struct qcnode *n;
	size_t h;

	if (qclaimset_has(s, id, idx))
		return;
	if (s->n >= s->nb * 2)
		qcs_grow(s);
	h = qcs_hash(s, id, idx);
	n = xmalloc(sizeof(*n));
	n->id = id;
	n->idx = idx;
	n->next = s->b[h];
	s->b[h] = n;
	s->n++;
}

void
qclaimset_del(struct qclaimset *s, queue_msgid id, uint32_t idx)
{
	struct qcnode **pp = &s->b[qcs_hash(s, id, idx)];

	for (; *pp; pp = &(*pp)->next) {
		struct qcnode *n = *pp;

		if (n->id == id && n->idx == idx) {
			*pp = n->next;
			free(n);
			s->n--;
			return;
		}
	}
}
