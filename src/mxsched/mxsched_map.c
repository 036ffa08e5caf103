/*
 * mxsched_map.c - a string-keyed chained hash map for the scheduler's
 * in-memory tables (messages, domains being resolved, sites, msets).
 * Grows by doubling; keys are copied.
 */
#include "mxsched/mxsched_internal.h"

#include <stdlib.h>
#include <string.h>

static size_t
hash(const char *k)
{
	uint64_t h = 1469598103934665603ull;

	while (*k) {
		h ^= (unsigned char)*k++;
		h *= 1099511628211ull;
	}
	return (size_t)h;
}

void
smap_init(struct smap *m)
{
	m->nb = 64;
	m->n = 0;
	m->b = xcalloc(m->nb, sizeof(*m->b));
}

static struct smap_ent **
slot(const struct smap *m, const char *key)
{
	struct smap_ent **p = &m->b[hash(key) & (m->nb - 1)];

	while (*p && strcmp((*p)->key, key) != 0)
		p = &(*p)->next;
	return p;
}

void *
smap_get(const struct smap *m, const char *key)
{
	struct smap_ent *e = *slot(m, key);
	return e ? e->val : NULL;
}

static void
grow(struct smap *m)
{
	struct smap_ent **old = m->b, *e, *next;
	size_t i, onb = m->nb;

	m->nb *= 2;
	m->b = xcalloc(m->nb, sizeof(*m->b));
	for (i = 0; i < onb; i++)
		for (e = old[i]; e; e = next) {
			next = e->next;
			size_t h = hash(e->key) & (m->nb - 1);
			e->next = m->b[h];
			m->b[h] = e;
		}
	free(old);
}

void
smap_put(struct smap *m, const char *key, void *val)
{
	struct smap_ent **p = slot(m, key), *e;

	if (*p) {
		(*p)->val = val;
		return;
	}
	e = xmalloc(sizeof(*e));
	e->key = xstrdup(key);
	e->val = val;
	e->next = NULL;
	*p = e;
	if (++m->n > m->nb)
		grow(m);
}

void *
smap_del(struct smap *m, const char *key)
{
	struct smap_ent **p = slot(m, key), *e = *p;
	void *v;

	if (e == NULL)
		return NULL;
	*p = e->next;
	v = e->val;
	free(e->key);
	free(e);
	m->n--;
	return v;
}

void
smap_each(const struct smap *m, void (*fn)(void *val, void *arg), void *arg)
{
	struct smap_ent *e;
	size_t i;

	for (i = 0; i < m->nb; i++)
		for (e = m->b[i]; e; e = e->next)
			fn(e->val, arg);
}

void
smap_clear(struct smap *m, void (*free_val)(void *))
{
	struct smap_ent *e, *next;
	size_t i;

	for (i = 0; m->b && i < m->nb; i++)
		for (e = m->b[i]; e; e = next) {
			next = e->next;
			if (free_val)
				free_val(e->val);
			free(e->key);
			free(e);
		}
	free(m->b);
	m->b = NULL;
	m->n = m->nb = 0;
}
