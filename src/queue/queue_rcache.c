/*
 * queue_rcache.c - the round cache: envelope and recipient records
 * written during the current round, so an op reads what an earlier op of
 * the same round wrote before the batch reaches RocksDB. Cheaper than a
 * WriteBatchWithIndex, which indexes every key (bodies, due keys) although
 * only these two families are ever read back. Store thread only; emptied
 * at the end of every round.
 */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "queue/queue_internal.h"

#define RC_BUCKETS 4096

struct rcnode {
	struct rcnode *next;
	int cf;
	unsigned char key[QK_RCPT_LEN];
	size_t klen;
	char *val;      /* NULL = deleted in this round */
	size_t vlen;
};

struct qrcache {
	struct rcnode *b[RC_BUCKETS];
	size_t n;
};

struct qrcache *
qrcache_new(void)
{
	return xcalloc(1, sizeof(struct qrcache));
}

void
qrcache_clear(struct qrcache *c)
{
	if (c->n == 0)
		return;
	for (size_t i = 0; i < RC_BUCKETS; i++) {
		struct rcnode *n = c->b[i], *next;

		for (; n; n = next) {
			next = n->next;
			free(n->val);
			free(n);
		}
		c->b[i] = NULL;
	}
	c->n = 0;
}

void
qrcache_free(struct qrcache *c)
{
	if (c == NULL)
		return;
	qrcache_clear(c);
	free(c);
}

static size_t
rc_hash(int cf, const unsigned char *k, size_t klen)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)cf;

	for (size_t i = 0; i < klen; i++)
		h = (h ^ k[i]) * 1099511628211ull;
	return (size_t)(h % RC_BUCKETS);
}

static struct rcnode *
rc_find(struct qrcache *c, int cf, const unsigned char *k, size_t klen)
{
	struct rcnode *n = c->b[rc_hash(cf, k, klen)];

	for (; n; n = n->next)
		if (n->cf == cf && n->klen == klen && !memcmp(n->key, k, klen))
			return n;
	return NULL;
}

int
qrcache_get(struct qrcache *c, int cf, const unsigned char *k, size_t klen,
            char **val, size_t *vlen)
{
	struct rcnode *n = rc_find(c, cf, k, klen);

	if (n == NULL)
		return 0;
	*val = NULL;
	if (n->val) {
		*val = xmalloc(n->vlen ? n->vlen : 1);
		memcpy(*val, n->val, n->vlen);
		*vlen = n->vlen;
	}
	return 1;
}

void
qrcache_set(struct qrcache *c, int cf, const unsigned char *k, size_t klen,
            const char *val, size_t vlen)
{
	struct rcnode *n = rc_find(c, cf, k, klen);

	if (n == NULL) {
		size_t h = rc_hash(cf, k, klen);

		n = xcalloc(1, sizeof(*n));
		n->cf = cf;
		memcpy(n->key, k, klen);
		n->klen = klen;
		n->next = c->b[h];
		c->b[h] = n;
		c->n++;
	}
	free(n->val);
	n->val = NULL;
	if (val) {
		n->val = xmalloc(vlen ? vlen : 1);
		memcpy(n->val, val, vlen);
	}
	n->vlen = vlen;
}
