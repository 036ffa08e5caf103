/*
 * queue_db.c - RocksDB open/close with bounded memory, the mapping of
 * RocksDB errors to queue_status, and recovery at open (in-flight ->
 * due, bodies of never-committed submissions removed, counters loaded or
 * rebuilt). Runs on the opening thread before the store thread starts, and
 * on the store thread when it reopens after a failed write.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core.h"
#include "queue/queue_internal.h"

static const char *const qcf_names[QCF_COUNT] = {
	"default", "msg", "body", "rcpt", "due", "inflight", "incoming"
};

static const char qkey_counters[] = "counters";
static const char qkey_schema[] = "schema";

enum queue_status
qdb_status_of(const char *e)
{
	if (e && (strstr(e, "No space left") || strstr(e, "ENOSPC") ||
	          strstr(e, "File too large") || strstr(e, "NoSpace")))
		return QUEUE_EDISKFULL;
	return QUEUE_ETEMP;
}

/* qdb_cf_options - per-family options: shared block cache, blooms */
static rocksdb_options_t *
qdb_cf_options(struct queue *q, int cf)
{
	rocksdb_options_t *o = rocksdb_options_create_copy(q->dbopts);
	uint64_t mt = q->opts.memtable_bytes;

	rocksdb_options_set_block_based_table_factory(o,
	    cf == QCF_BODY ? q->bbto_body : q->bbto);
	rocksdb_options_set_compression(o, rocksdb_lz4_compression);
	rocksdb_options_set_max_write_buffer_number(o, 3);
	if (cf == QCF_BODY || cf == QCF_RCPT || cf == QCF_DUE)
		rocksdb_options_set_write_buffer_size(o, mt / 4);
	else
		rocksdb_options_set_write_buffer_size(o, mt / 8);
	rocksdb_options_set_level_compaction_dynamic_level_bytes(o, 1);
	if (cf == QCF_BODY && q->opts.body_blob_files) {
		rocksdb_options_set_enable_blob_files(o, 1);
		rocksdb_options_set_min_blob_size(o, 1024);
		rocksdb_options_set_enable_blob_gc(o, 1);
	}
	return o;
}

/* qdb_options - database-wide options, created once per queue */
static void
qdb_options(struct queue *q)
{
	if (q->dbopts)
		return;
	q->cache = rocksdb_cache_create_lru(q->opts.cache_bytes);
	q->bloom = rocksdb_filterpolicy_create_bloom_full(10);
	q->bbto = rocksdb_block_based_options_create();
	rocksdb_block_based_options_set_block_cache(q->bbto, q->cache);
	rocksdb_block_based_options_set_cache_index_and_filter_blocks(q->bbto, 1);
	rocksdb_block_based_options_set_filter_policy(q->bbto, q->bloom);
	rocksdb_block_based_options_set_block_size(q->bbto, 16 * 1024);
	q->bbto_body = rocksdb_block_based_options_create();
	rocksdb_block_based_options_set_block_cache(q->bbto_body, q->cache);
	rocksdb_block_based_options_set_cache_index_and_filter_blocks(q->bbto_body, 1);
	rocksdb_block_based_options_set_block_size(q->bbto_body, 64 * 1024);
	q->dbopts = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(q->dbopts, 1);
	rocksdb_options_set_create_missing_column_families(q->dbopts, 1);
	rocksdb_options_increase_parallelism(q->dbopts, 2);
	rocksdb_options_set_max_background_jobs(q->dbopts, 2);
	rocksdb_options_set_db_write_buffer_size(q->dbopts, q->opts.memtable_bytes);
	rocksdb_options_set_max_total_wal_size(q->dbopts, q->opts.memtable_bytes * 2);
	rocksdb_options_set_max_open_files(q->dbopts, 512);
	rocksdb_options_set_keep_log_file_num(q->dbopts, 3);
	rocksdb_options_set_max_log_file_size(q->dbopts, 8 << 20);
	rocksdb_options_set_info_log_level(q->dbopts, 2); /* warn */
	for (int i = 0; i < QCF_COUNT; i++)
		q->cfopts[i] = qdb_cf_options(q, i);
	q->ropts = rocksdb_readoptions_create();
	q->wsync = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(q->wsync, 1);
	q->wnosync = rocksdb_writeoptions_create();
}

/* qdb_prepare_dir - create the spool directory, name what is wrong */
static int
qdb_prepare_dir(struct queue *q, char *err, size_t errlen)
{
	struct stat st;

	if (stat(q->path, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			snprintf(err, errlen, "spool %s: not a directory", q->path);
			return -1;
		}
		return 0;
	}
	if (errno != ENOENT || mkdir(q->path, 0700) < 0) {
		snprintf(err, errlen, "spool %s: %s", q->path, strerror(errno));
		return -1;
	}
	return 0;
}

int
qdb_open(struct queue *q, char *err, size_t errlen)
{
	char *e = NULL;

	if (qdb_prepare_dir(q, err, errlen) < 0)
		return -1;
	qdb_options(q);
	q->db = rocksdb_open_column_families(q->dbopts, q->path, QCF_COUNT,
	    qcf_names, (const rocksdb_options_t *const *)q->cfopts, q->cf, &e);
	if (e != NULL) {
		snprintf(err, errlen, "spool %s: cannot open RocksDB: %s%s",
		    q->path, e, strstr(e, "LOCK") ? " (spool locked: is another "
		    "mxbatchd using it?)" : "");
		rocksdb_free(e);
		q->db = NULL;
		return -1;
	}
	return 0;
}

/* qdb_open_ro - read-only fallback while a read-write open fails (disk
 * full): readers keep working, writes keep failing until reopened */
int
qdb_open_ro(struct queue *q)
{
	char *e = NULL;

	q->db = rocksdb_open_for_read_only_column_families(q->dbopts, q->path,
	    QCF_COUNT, qcf_names, (const rocksdb_options_t *const *)q->cfopts,
	    q->cf, 0, &e);
	if (e != NULL) {
		log_warnx("-", "spool %s: read-only open failed too: %s",
		    q->path, e);
		rocksdb_free(e);
		q->db = NULL;
		return -1;
	}
	return 0;
}

void
qdb_close(struct queue *q)
{
	if (q->db == NULL)
		return;
	for (int i = 0; i < QCF_COUNT; i++) {
		rocksdb_column_family_handle_destroy(q->cf[i]);
		q->cf[i] = NULL;
	}
	rocksdb_close(q->db);
	q->db = NULL;
}

/* qdb_free_options - after the last close */
void
qdb_free_options(struct queue *q)
{
	if (q->dbopts == NULL)
		return;
	for (int i = 0; i < QCF_COUNT; i++)
		rocksdb_options_destroy(q->cfopts[i]);
	rocksdb_options_destroy(q->dbopts);
	rocksdb_block_based_options_destroy(q->bbto);
	rocksdb_block_based_options_destroy(q->bbto_body);
	/* the bloom policy is owned by bbto in RocksDB >= 6 */
	rocksdb_cache_destroy(q->cache);
	rocksdb_readoptions_destroy(q->ropts);
	rocksdb_writeoptions_destroy(q->wsync);
	rocksdb_writeoptions_destroy(q->wnosync);
	q->dbopts = NULL;
}

int
qdb_load_counters(struct queue *q, struct queue_counters *c, int *found)
{
	char *e = NULL, *v;
	size_t len = 0;
	int rc = 0;

	*found = 0;
	memset(c, 0, sizeof(*c));
	v = rocksdb_get_cf(q->db, q->ropts, q->cf[QCF_DEFAULT], qkey_counters,
	    sizeof(qkey_counters) - 1, &len, &e);
	if (e) {
		log_warnx("-", "spool %s: reading counters: %s", q->path, e);
		rocksdb_free(e);
		return -1;
	}
	if (v) {
		rc = qcnt_decode(v, len, c);
		*found = rc == 0;
		rocksdb_free(v);
	}
	return rc;
}

/* qdb_put_counters - add the counters record to a plain batch */
static void
qdb_put_counters(struct queue *q, rocksdb_writebatch_t *wb,
                 const struct queue_counters *c)
{
	unsigned char v[QCNT_FIELDS * 8];

	qcnt_encode(c, v);
	rocksdb_writebatch_put_cf(wb, q->cf[QCF_DEFAULT], qkey_counters,
	    sizeof(qkey_counters) - 1, (const char *)v, sizeof(v));
	rocksdb_writebatch_put_cf(wb, q->cf[QCF_DEFAULT], qkey_schema,
	    sizeof(qkey_schema) - 1, QUEUE_SCHEMA_VERSION,
	    strlen(QUEUE_SCHEMA_VERSION));
}

/* qdb_iter - an iterator over one family (caller destroys) */
static rocksdb_iterator_t *
qdb_iter(struct queue *q, int cf)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(q->db, q->ropts,
	    q->cf[cf]);

	rocksdb_iter_seek_to_first(it);
	return it;
}

/* qdb_iter_done - 0 if the iterator ended cleanly */
static int
qdb_iter_done(struct queue *q, rocksdb_iterator_t *it)
{
	char *e = NULL;

	rocksdb_iter_get_error(it, &e);
	rocksdb_iter_destroy(it);
	if (e) {
		log_warnx("-", "spool %s: scan: %s", q->path, e);
		rocksdb_free(e);
		return -1;
	}
	return 0;
}

int
qdb_scan_counts(struct queue *q, struct queue_counters *c)
{
	rocksdb_iterator_t *it;
	size_t len;
	const char *v;

	memset(c, 0, sizeof(*c));
	it = qdb_iter(q, QCF_MSG);
	for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		struct qenv e;

		v = rocksdb_iter_value(it, &len);
		if (qenv_decode(v, len, &e) < 0)
			continue;
		c->messages++;
		c->bytes += e.size;
		qenv_clear(&e);
	}
	if (qdb_iter_done(q, it) < 0)
		return -1;
	it = qdb_iter(q, QCF_RCPT);
	for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		struct queue_rcpt r = { 0 };

		v = rocksdb_iter_value(it, &len);
		if (qrcpt_decode(v, len, &r) < 0)
			continue;
		qcnt_rcpt(c, &r, 1);
		qrcpt_clear(&r);
	}
	return qdb_iter_done(q, it);
}

/* qdb_drop_incoming - delete bodies of submissions that never committed */
static int
qdb_drop_incoming(struct queue *q, rocksdb_writebatch_t *wb, int *n)
{
	rocksdb_iterator_t *it = qdb_iter(q, QCF_INCOMING);
	size_t klen;

	for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		const char *k = rocksdb_iter_key(it, &klen);
		unsigned char lo[QK_BODY_LEN], hi[QK_BODY_LEN];
		queue_msgid id;

		if (klen != QK_MSG_LEN)
			continue;
		id = qk_get64((const unsigned char *)k);
		qk_body(lo, id, 0);
		qk_body(hi, id + 1, 0);
		rocksdb_writebatch_delete_range_cf(wb, q->cf[QCF_BODY],
		    (const char *)lo, sizeof(lo), (const char *)hi, sizeof(hi));
		rocksdb_writebatch_delete_cf(wb, q->cf[QCF_INCOMING], k, klen);
		(*n)++;
	}
	return qdb_iter_done(q, it);
}

/* qdb_msg_info - is the message held, its priority class (recovery);
 * 0 if found */
static int
qdb_msg_info(struct queue *q, queue_msgid id, int *held, unsigned *cls)
{
	unsigned char k[QK_MSG_LEN];
	struct qenv e;
	char *err = NULL, *v;
	size_t len;
	int rc = -1;

	*held = 0;
	*cls = qk_prio(0);
	qk_msg(k, id);
	v = rocksdb_get_cf(q->db, q->ropts, q->cf[QCF_MSG], (const char *)k,
	    sizeof(k), &len, &err);
	if (err)
		rocksdb_free(err);
	if (v && qenv_decode(v, len, &e) == 0) {
		*held = (e.flags & QUEUE_MSG_HELD) != 0;
		*cls = qk_prio(e.priority);
		qenv_clear(&e);
		rc = 0;
	}
	rocksdb_free(v);
	return rc;
}

/* qdb_requeue_one - an in-flight recipient becomes due again (held if
 * its message was held meanwhile) */
static void
qdb_requeue_one(struct queue *q, rocksdb_writebatch_t *wb,
                struct queue_counters *c, queue_msgid id, uint32_t idx,
                uint64_t due)
{
	unsigned char rk[QK_RCPT_LEN], dk[QK_DUE_LEN];
	struct queue_rcpt r = { .msgid = id, .idx = idx };
	struct qbuf b = { 0 };
	char *e = NULL, *v;
	size_t len;
	unsigned cls;
	int held;

	qk_rcpt(rk, id, idx);
	v = rocksdb_get_cf(q->db, q->ropts, q->cf[QCF_RCPT], (const char *)rk,
	    sizeof(rk), &len, &e);
	if (e || v == NULL || qrcpt_decode(v, len, &r) < 0 ||
	    r.state != QUEUE_RCPT_INFLIGHT)
		goto done;
	qcnt_rcpt(c, &r, -1);
	qdb_msg_info(q, id, &held, &cls);
	r.state = held ? QUEUE_RCPT_HELD : QUEUE_RCPT_QUEUED;
	r.next_ms = due;
	qcnt_rcpt(c, &r, 1);
	qrcpt_encode(&r, &b);
	rocksdb_writebatch_put_cf(wb, q->cf[QCF_RCPT], (const char *)rk,
	    sizeof(rk), b.p, b.len);
	qk_due(dk, cls, due, id, idx);
	if (r.state == QUEUE_RCPT_QUEUED)
		rocksdb_writebatch_put_cf(wb, q->cf[QCF_DUE], (const char *)dk,
		    sizeof(dk), "", 0);
done:
	if (e)
		rocksdb_free(e);
	rocksdb_free(v);
	qrcpt_clear(&r);
	qbuf_free(&b);
}

/* qdb_requeue_inflight - every in-flight recipient is due again */
static int
qdb_requeue_inflight(struct queue *q, rocksdb_writebatch_t *wb,
                     struct queue_counters *c, int *n)
{
	rocksdb_iterator_t *it = qdb_iter(q, QCF_INFLIGHT);
	size_t klen, vlen;

	for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		const char *k = rocksdb_iter_key(it, &klen);
		const char *v = rocksdb_iter_value(it, &vlen);
		const unsigned char *uk = (const unsigned char *)k;

		if (klen == QK_RCPT_LEN && vlen == 8)
			qdb_requeue_one(q, wb, c, qk_get64(uk), qk_get32(uk + 8),
			    qk_get64((const unsigned char *)v));
		rocksdb_writebatch_delete_cf(wb, q->cf[QCF_INFLIGHT], k, klen);
		(*n)++;
	}
	return qdb_iter_done(q, it);
}

/* qdb_counters_at_open - stored counters, or rebuilt by a scan */
static int
qdb_counters_at_open(struct queue *q, struct queue_counters *c)
{
	struct queue_counters scan;
	int found;

	if (qdb_load_counters(q, c, &found) == 0 && found)
		return 0;
	if (qdb_scan_counts(q, &scan) < 0)
		return -1;
	if (scan.messages || scan.rcpts)
		log_warnx("-", "spool %s: counters missing, rebuilt by a scan",
		    q->path);
	scan.total_messages = c->total_messages;
	*c = scan;
	return 0;
}

/* qdb_migrate_due - schema 1 -> 2: due keys gain the priority class of
 * their message. Written in batches; a crash midway leaves both key forms,
 * and the next open (schema still 1) converts the rest. */
static int
qdb_migrate_due(struct queue *q, char *err, size_t errlen)
{
	rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
	rocksdb_iterator_t *it = qdb_iter(q, QCF_DUE);
	queue_msgid last = 0;
	unsigned cls = qk_prio(0);
	size_t klen, n = 0, total = 0;
	char *e = NULL;
	int held, rc = 0;

	for (; rocksdb_iter_valid(it) && rc == 0; rocksdb_iter_next(it)) {
		const char *k = rocksdb_iter_key(it, &klen);
		const unsigned char *uk = (const unsigned char *)k;
		unsigned char nk[QK_DUE_LEN];
		queue_msgid id;

		if (klen != QK_DUE_V1_LEN)
			continue;
		id = qk_get64(uk + 8);
		if (id != last || total == 0) {
			qdb_msg_info(q, id, &held, &cls); /* none: a stale key */
			last = id;
		}
		qk_due(nk, cls, qk_get64(uk), id, qk_get32(uk + 16));
		rocksdb_writebatch_delete_cf(wb, q->cf[QCF_DUE], k, klen);
		rocksdb_writebatch_put_cf(wb, q->cf[QCF_DUE], (const char *)nk,
		    sizeof(nk), "", 0);
		total++;
		if (++n == 100000) {
			rocksdb_write(q->db, q->wsync, wb, &e);
			rocksdb_writebatch_clear(wb);
			n = 0;
			rc = e ? -1 : 0;
		}
	}
	if (qdb_iter_done(q, it) < 0)
		rc = -1;
	if (rc == 0 && e == NULL) {
		rocksdb_writebatch_put_cf(wb, q->cf[QCF_DEFAULT], qkey_schema,
		    sizeof(qkey_schema) - 1, QUEUE_SCHEMA_VERSION,
		    strlen(QUEUE_SCHEMA_VERSION));
		rocksdb_write(q->db, q->wsync, wb, &e);
	}
	if (e) {
		snprintf(err, errlen, "spool %s: converting the due index to "
		    "schema %s: %s", q->path, QUEUE_SCHEMA_VERSION, e);
		rocksdb_free(e);
		rc = -1;
	} else if (rc < 0) {
		snprintf(err, errlen, "spool %s: converting the due index to "
		    "schema %s: read error", q->path, QUEUE_SCHEMA_VERSION);
	} else {
		log_info("-", "spool %s: schema 1 -> %s: %zu due key(s) now carry "
		    "their message's priority", q->path, QUEUE_SCHEMA_VERSION,
		    total);
	}
	rocksdb_writebatch_destroy(wb);
	return rc;
}

/* qdb_schema - refuse a spool written by a newer version; convert an
 * older one. A new (or pre-schema-key) spool is written at recovery. */
static int
qdb_schema(struct queue *q, char *err, size_t errlen)
{
	char *e = NULL, *v;
	size_t len = 0;
	int rc = 0;

	v = rocksdb_get_cf(q->db, q->ropts, q->cf[QCF_DEFAULT], qkey_schema,
	    sizeof(qkey_schema) - 1, &len, &e);
	if (e) {
		snprintf(err, errlen, "spool %s: reading the schema version: %s",
		    q->path, e);
		rocksdb_free(e);
		return -1;
	}
	if (v == NULL || (len == 1 && v[0] == '1'))
		rc = qdb_migrate_due(q, err, errlen);
	else if (len != strlen(QUEUE_SCHEMA_VERSION) ||
	    memcmp(v, QUEUE_SCHEMA_VERSION, len) != 0) {
		snprintf(err, errlen, "spool %s: schema version \"%.*s\", this "
		    "mxbatchd reads %s (written by a newer version?)", q->path,
		    (int)(len < 16 ? len : 16), v, QUEUE_SCHEMA_VERSION);
		rc = -1;
	}
	rocksdb_free(v);
	return rc;
}

/* qdb_due_classes - which priority classes have due keys (one seek per
 * class present) */
void
qdb_due_classes(struct queue *q)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(q->db, q->ropts,
	    q->cf[QCF_DUE]);
	unsigned char k = 0;
	size_t klen;

	for (rocksdb_iter_seek(it, (const char *)&k, 1); rocksdb_iter_valid(it);) {
		const unsigned char *p =
		    (const unsigned char *)rocksdb_iter_key(it, &klen);

		if (klen == 0 || p[0] >= QK_CLASSES)
			break;
		q->due_class[p[0]] = 1;
		k = (unsigned char)(p[0] + 1);
		rocksdb_iter_seek(it, (const char *)&k, 1);
	}
	rocksdb_iter_destroy(it);
}

int
qdb_recover(struct queue *q, char *err, size_t errlen)
{
	rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
	int n_in = 0, n_fl = 0, rc = -1;
	char *e = NULL;

	if (qdb_schema(q, err, errlen) < 0)
		goto done;
	if (qdb_counters_at_open(q, &q->cnt) < 0 ||
	    qdb_drop_incoming(q, wb, &n_in) < 0 ||
	    qdb_requeue_inflight(q, wb, &q->cnt, &n_fl) < 0) {
		snprintf(err, errlen, "spool %s: recovery scan failed", q->path);
		goto done;
	}
	qdb_put_counters(q, wb, &q->cnt);
	rocksdb_write(q->db, q->wsync, wb, &e);
	if (e) {
		snprintf(err, errlen, "spool %s: recovery write: %s", q->path, e);
		rocksdb_free(e);
		goto done;
	}
	if (n_in || n_fl)
		log_info("-", "spool %s: recovered: %d unfinished submission(s) "
		    "removed, %d in-flight recipient(s) due again", q->path,
		    n_in, n_fl);
	q->published = q->cnt;
	rc = 0;
done:
	rocksdb_writebatch_destroy(wb);
	return rc;
}

/* qdb_last_key_id - the largest 8-byte id prefix of a family, or 0 */
static queue_msgid
qdb_last_key_id(struct queue *q, int cf)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(q->db, q->ropts,
	    q->cf[cf]);
	queue_msgid id = 0;
	size_t klen;

	rocksdb_iter_seek_to_last(it);
	if (rocksdb_iter_valid(it)) {
		const char *k = rocksdb_iter_key(it, &klen);

		if (klen >= 8)
			id = qk_get64((const unsigned char *)k);
	}
	rocksdb_iter_destroy(it);
	return id;
}

int
qdb_iter_get(struct queue *q, rocksdb_iterator_t *it, const unsigned char *k,
             size_t klen, const char **v, size_t *vlen)
{
	const char *ik;
	size_t iklen;
	char *e = NULL;
	int at = 0;

	if (rocksdb_iter_valid(it)) {
		ik = rocksdb_iter_key(it, &iklen);
		if (iklen == klen && memcmp(ik, k, klen) < 0)
			rocksdb_iter_next(it); /* usually lands on k */
		if (rocksdb_iter_valid(it)) {
			ik = rocksdb_iter_key(it, &iklen);
			at = iklen == klen && memcmp(ik, k, klen) == 0;
		}
	}
	if (!at)
		rocksdb_iter_seek(it, (const char *)k, klen);
	if (!rocksdb_iter_valid(it)) {
		rocksdb_iter_get_error(it, &e);
		if (e) {
			log_warnx("-", "spool %s: read: %s", q->path, e);
			rocksdb_free(e);
			return -1;
		}
		return 0;
	}
	ik = rocksdb_iter_key(it, &iklen);
	if (iklen != klen || memcmp(ik, k, klen) != 0)
		return 0;
	*v = rocksdb_iter_value(it, vlen);
	return 1;
}

queue_msgid
qdb_max_id(struct queue *q)
{
	queue_msgid a = qdb_last_key_id(q, QCF_MSG);
	queue_msgid b = qdb_last_key_id(q, QCF_BODY);

	return a > b ? a : b;
}
