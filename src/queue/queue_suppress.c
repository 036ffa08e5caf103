/*
 * queue_suppress.c - the suppression list: addresses that hard-bounced,
 * with the time until which new mail to them is refused. Records live in
 * the default column family under "sup:" + the lowercase address, value
 * "until_ms added_ms category\treason". Writes go through the store
 * thread's group commit like everything else; reads are point reads and
 * a prefix scan on the calling (loop) thread.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "queue/queue_internal.h"

#define SUP_PREFIX "sup:"
#define SUP_ADDR_MAX 512

/* sup_key - "sup:" + lowercase address; -1 if empty or too long */
static int
sup_key(const char *address, char *out, size_t outlen)
{
	size_t n = address ? strlen(address) : 0, i;

	if (n == 0 || n > SUP_ADDR_MAX || n + sizeof(SUP_PREFIX) > outlen)
		return -1;
	memcpy(out, SUP_PREFIX, sizeof(SUP_PREFIX) - 1);
	for (i = 0; i < n; i++)
		out[sizeof(SUP_PREFIX) - 1 + i] = (char)tolower((unsigned char)address[i]);
	out[sizeof(SUP_PREFIX) - 1 + n] = '\0';
	return 0;
}

static void
sup_submit(struct queue *q, enum qop_kind kind, char *key, char *val,
           queue_done_cb cb, void *arg)
{
	struct qop *op = xcalloc(1, sizeof(*op));

	op->kind = kind;
	op->by = key;
	op->data = val;
	op->len = val ? strlen(val) : 0;
	op->dcb = cb;
	op->arg = arg;
	qstore_submit(q, op);
}

void
queue_suppress_add(struct queue *q, const char *address, uint64_t until_ms,
                   const char *category, const char *reason,
                   queue_done_cb cb, void *arg)
{
	char key[SUP_ADDR_MAX + 8], *val = NULL;
	size_t len = 0;
	FILE *f;

	if (sup_key(address, key, sizeof(key)) < 0) {
		log_warnx("-", "suppression: ignoring an empty or overlong address");
		return; /* documented: nothing happens, cb is not called */
	}
	f = open_memstream(&val, &len);
	fprintf(f, "%llu %llu %s\t", (unsigned long long)until_ms,
	        (unsigned long long)now_ms(), category && *category ? category : "-");
	for (const char *p = reason ? reason : ""; *p && p - reason < 400; p++)
		fputc((unsigned char)*p < 0x20 ? ' ' : *p, f); /* one line */
	fclose(f);
	sup_submit(q, QOP_KV_PUT, xstrdup(key), val, cb, arg);
}

void
queue_suppress_delete(struct queue *q, const char *address, queue_done_cb cb,
                      void *arg)
{
	char key[SUP_ADDR_MAX + 8];

	if (sup_key(address, key, sizeof(key)) < 0)
		snprintf(key, sizeof(key), "%s", SUP_PREFIX); /* never stored: ENOTFOUND */
	sup_submit(q, QOP_KV_DEL, xstrdup(key), NULL, cb, arg);
}

/* sup_decode - a stored record into out; -1 if malformed */
static int
sup_decode(const char *key, size_t klen, const char *v, size_t vlen,
           struct queue_suppression *out)
{
	char *copy = xstrndup(v, vlen), *tab, cat[64];
	unsigned long long until, added;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (klen <= sizeof(SUP_PREFIX) - 1 || (tab = strchr(copy, '\t')) == NULL)
		goto done;
	*tab = '\0';
	if (sscanf(copy, "%llu %llu %63s", &until, &added, cat) != 3)
		goto done;
	out->address = xstrndup(key + sizeof(SUP_PREFIX) - 1, klen - (sizeof(SUP_PREFIX) - 1));
	out->until_ms = until;
	out->added_ms = added;
	out->category = xstrdup(cat);
	out->reason = xstrdup(tab + 1);
	rc = 0;
done:
	free(copy);
	return rc;
}

int
queue_suppress_check(struct queue *q, const char *address, uint64_t now,
                     struct queue_suppression *out)
{
	char key[SUP_ADDR_MAX + 8], *v, *e = NULL;
	struct queue_suppression tmp;
	size_t vlen;
	int rc = 0;

	if (sup_key(address, key, sizeof(key)) < 0)
		return 0;
	pthread_rwlock_rdlock(&q->dblock);
	if (q->db == NULL) {
		pthread_rwlock_unlock(&q->dblock);
		return -1;
	}
	v = rocksdb_get_cf(q->db, q->ropts, q->cf[QCF_DEFAULT], key, strlen(key), &vlen, &e);
	pthread_rwlock_unlock(&q->dblock);
	if (e) {
		log_warnx("-", "spool %s: suppression read: %s", q->path, e);
		rocksdb_free(e);
		return -1;
	}
	if (v == NULL)
		return 0;
	if (sup_decode(key, strlen(key), v, vlen, &tmp) == 0 && tmp.until_ms > now) {
		rc = 1;
		if (out)
			*out = tmp;
		else
			queue_suppression_clear(&tmp);
	} else {
		queue_suppression_clear(&tmp);
	}
	rocksdb_free(v);
	return rc;
}

int
queue_suppress_list(struct queue *q, const char *after, size_t max,
                    struct queue_suppression **out)
{
	char start[SUP_ADDR_MAX + 8];
	rocksdb_iterator_t *it;
	size_t n = 0, klen, vlen;
	char *e = NULL;

	*out = xcalloc(max ? max : 1, sizeof(**out));
	if (after == NULL || *after == '\0' || sup_key(after, start, sizeof(start)) < 0)
		snprintf(start, sizeof(start), "%s", SUP_PREFIX);
	pthread_rwlock_rdlock(&q->dblock);
	if (q->db == NULL) {
		pthread_rwlock_unlock(&q->dblock);
		return -1;
	}
	it = rocksdb_create_iterator_cf(q->db, q->ropts, q->cf[QCF_DEFAULT]);
	for (rocksdb_iter_seek(it, start, strlen(start)); rocksdb_iter_valid(it) && n < max;
	     rocksdb_iter_next(it)) {
		const char *k = rocksdb_iter_key(it, &klen);
		const char *v = rocksdb_iter_value(it, &vlen);
		if (klen < sizeof(SUP_PREFIX) - 1 || memcmp(k, SUP_PREFIX, sizeof(SUP_PREFIX) - 1))
			break;
		if (klen == strlen(start) && memcmp(k, start, klen) == 0 && after && *after)
			continue; /* strictly after */
		if (sup_decode(k, klen, v, vlen, &(*out)[n]) == 0)
			n++;
	}
	rocksdb_iter_get_error(it, &e);
	rocksdb_iter_destroy(it);
	pthread_rwlock_unlock(&q->dblock);
	if (e) {
		log_warnx("-", "spool %s: suppression list: %s", q->path, e);
		rocksdb_free(e);
		queue_suppressions_free(*out, n);
		*out = NULL;
		return -1;
	}
	return (int)n;
}

void
queue_suppression_clear(struct queue_suppression *s)
{
	free(s->address);
	free(s->category);
	free(s->reason);
	memset(s, 0, sizeof(*s));
}

void
queue_suppressions_free(struct queue_suppression *s, size_t n)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < n; i++)
		queue_suppression_clear(&s[i]);
	free(s);
}
