/*
 * test_queue.c - unit tests of src/queue against a real RocksDB in a
 * fresh temporary directory: key encodings, id ordering, submission and
 * read-back, counters, claim / in-flight / recovery, outcomes and
 * refcount deletion, hold / release / delete, open errors.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <cmocka.h>
#include <event2/event.h>

#include "core/core.h"
#include "queue/queue.h"
#include "queue/queue_internal.h"

struct fx {
	char dir[256];
	char spool[300];
	struct event_base *base;
	struct queue *q;
	int pending;
	enum queue_status st;
	queue_msgid id;
	int prio;               /* priority of the next submit() */
};

static int
rm_rf(const char *path)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	return system(cmd);
}

static struct queue *
fx_open(struct fx *f)
{
	struct queue_opts o = { .path = f->spool, .cache_bytes = 8 << 20,
	                        .memtable_bytes = 16 << 20 };
	char err[512] = "";
	struct queue *q = queue_open(f->base, &o, err, sizeof(err));

	if (q == NULL)
		fprintf(stderr, "open: %s\n", err);
	return q;
}

static int
setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

	snprintf(f->dir, sizeof(f->dir), "%s/mxbq.XXXXXX", tmp);
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->spool, sizeof(f->spool), "%s/spool", f->dir);
	f->base = event_base_new();
	f->q = fx_open(f);
	assert_non_null(f->q);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	queue_close(f->q);
	event_base_free(f->base);
	rm_rf(f->dir);
	free(f);
	return 0;
}

/* ---- loop helpers ---- */

static void
on_commit(void *arg, enum queue_status st, queue_msgid id)
{
	struct fx *f = arg;

	f->pending--;
	f->st = st;
	f->id = id;
}

static void
on_done(void *arg, enum queue_status st)
{
	struct fx *f = arg;

	f->pending--;
	f->st = st;
}

static void
fx_wait(struct fx *f)
{
	while (f->pending > 0)
		event_base_loop(f->base, EVLOOP_ONCE);
}

static void
fill(char *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)('a' + (i * 7 + seed) % 26);
}

/* submit - a message of size bytes (written in odd pieces), n rcpts */
static queue_msgid
submit(struct fx *f, size_t size, int n, unsigned flags)
{
	struct queue_envelope env = { .sender = "s@example.org",
	                              .tenant = "t1", .listener = "routing",
	                              .envid = "E1", .ret = QUEUE_RET_HDRS,
	                              .flags = flags, .priority = f->prio };
	struct queue_writer *w = queue_msg_begin(f->q, &env);
	char *body = xmalloc(size + 1), addr[64];

	fill(body, size, (unsigned)size);
	for (size_t off = 0; off < size;) {
		size_t piece = 1 + (off * 31 + 4093) % 9001;

		if (piece > size - off)
			piece = size - off;
		assert_int_equal(queue_msg_write(w, body + off, piece), 0);
		off += piece;
	}
	for (int i = 0; i < n; i++) {
		struct queue_rcpt_in r = { .address = addr,
		                           .notify = QUEUE_NOTIFY_FAILURE,
		                           .orcpt = i == 0 ? "rfc822;o@x" : NULL };

		snprintf(addr, sizeof(addr), "u%d@D%d.example", i, i % 3);
		assert_int_equal(queue_msg_add_rcpt(w, &r), 0);
	}
	f->pending++;
	queue_msg_commit(w, on_commit, f);
	fx_wait(f);
	free(body);
	return f->id;
}

static void
check_body(struct fx *f, queue_msgid id, size_t size)
{
	struct queue_body *r = queue_body_open(f->q, id);
	char *want = xmalloc(size + 1), *got = xmalloc(size + 1), buf[777];
	size_t off = 0;
	long n;

	assert_non_null(r);
	assert_int_equal(queue_body_size(r), size);
	fill(want, size, (unsigned)size);
	for (int pass = 0; pass < 2; pass++) {
		off = 0;
		while ((n = queue_body_read(r, buf, sizeof(buf))) > 0) {
			assert_true(off + (size_t)n <= size);
			memcpy(got + off, buf, (size_t)n);
			off += (size_t)n;
		}
		assert_int_equal(n, 0);
		assert_int_equal(off, size);
		assert_memory_equal(got, want, size);
		queue_body_rewind(r);
	}
	queue_body_close(r);
	free(want);
	free(got);
}

static void
outcome(struct fx *f, queue_msgid id, uint32_t idx,
        enum queue_outcome_kind kind, uint64_t next)
{
	struct queue_outcome o = { .msgid = id, .idx = idx, .kind = kind,
	                           .next_ms = next,
	                           .reply = { 451, "4.7.1", "try later",
	                                      "mx1.example" } };

	f->pending++;
	queue_outcomes(f->q, &o, 1, on_done, f);
	fx_wait(f);
	assert_int_equal(f->st, QUEUE_OK);
}

static void
assert_consistent(struct fx *f)
{
	struct queue_counters s;

	assert_int_equal(queue_check(f->q, 0, &s), 0);
}

/* ---- tests ---- */

static void
test_keys(void **state)
{
	unsigned char a[QK_DUE_LEN], b[QK_DUE_LEN];
	uint64_t ms;
	queue_msgid id;
	uint32_t idx;
	unsigned cls;

	(void)state;
	qk_due(a, qk_prio(0), 1000, 5, 7);
	qk_due(b, qk_prio(0), 1001, 1, 0);
	assert_true(memcmp(a, b, sizeof(a)) < 0); /* time first */
	qk_due(b, qk_prio(0), 1000, 5, 8);
	assert_true(memcmp(a, b, sizeof(a)) < 0); /* then id, idx */
	qk_due(b, qk_prio(0), 1000, 0x100000000ull, 0);
	assert_true(memcmp(a, b, sizeof(a)) < 0);
	qk_due(b, qk_prio(1), 999999, 9, 9); /* a higher priority: before */
	assert_true(memcmp(b, a, sizeof(a)) < 0);
	qk_due(b, qk_prio(-1), 1, 1, 1);     /* a lower one: after */
	assert_true(memcmp(a, b, sizeof(a)) < 0);
	assert_int_equal(qk_prio(1000), qk_prio(127)); /* clamped */
	assert_int_equal(qk_prio(-1000), qk_prio(-127));
	assert_true(qk_prio(-127) < QK_CLASSES);
	assert_int_equal(qk_due_parse((char *)a, sizeof(a), &cls, &ms, &id,
	    &idx), 0);
	assert_int_equal(cls, qk_prio(0));
	assert_int_equal(ms, 1000);
	assert_int_equal(id, 5);
	assert_int_equal(idx, 7);
	assert_int_equal(qk_due_parse((char *)a, 20, &cls, &ms, &id, &idx), -1);
}

static void
test_records(void **state)
{
	struct queue_rcpt r = { .msgid = 9, .idx = 3, .state = QUEUE_RCPT_HELD,
	                        .address = "a@b", .domain = "b", .orcpt = NULL,
	                        .notify = 6, .attempts = 4, .submit_ms = 11,
	                        .first_attempt_ms = 12, .next_ms = 13,
	                        .last_code = 451, .last_text = "x",
	                        .warned_ms = 14 }, d = { 0 };
	struct qenv e = { .flags = 3, .ret = 2, .priority = -1, .size = 99,
	                  .chunk_size = 65536, .rcpts_total = 5, .rcpts_live = 4,
	                  .sender = "", .envid = "ENV" }, e2;
	struct qbuf b = { 0 };

	(void)state;
	qrcpt_encode(&r, &b);
	d.msgid = 9;
	assert_int_equal(qrcpt_decode(b.p, b.len, &d), 0);
	assert_string_equal(d.address, "a@b");
	assert_null(d.orcpt);
	assert_null(d.last_mx);
	assert_string_equal(d.last_text, "x");
	assert_int_equal(d.attempts, 4);
	assert_int_equal(d.next_ms, 13);
	assert_int_equal(d.state, QUEUE_RCPT_HELD);
	assert_int_equal(d.warned_ms, 14);
	qrcpt_clear(&d);
	/* a record written before the delay-warning field still reads */
	assert_int_equal(qrcpt_decode(b.p, b.len - 8, &d), 0);
	assert_int_equal(d.warned_ms, 0);
	assert_string_equal(d.last_text, "x");
	qrcpt_clear(&d);
	assert_int_equal(qrcpt_decode(b.p, b.len - 1, &d), -1); /* truncated */
	qbuf_free(&b);
	qenv_encode(&e, &b);
	assert_int_equal(qenv_decode(b.p, b.len, &e2), 0);
	assert_string_equal(e2.sender, "");
	assert_null(e2.tenant);
	assert_string_equal(e2.envid, "ENV");
	assert_int_equal(e2.priority, -1);
	assert_int_equal(e2.rcpts_live, 4);
	qenv_clear(&e2);
	b.p[3] = 9; /* unknown version */
	assert_int_equal(qenv_decode(b.p, b.len, &e2), -1);
	qbuf_free(&b);
}

static void
test_ids(void **state)
{
	struct fx *f = *state;
	struct queue_envelope env = { .sender = "" };
	queue_msgid prev = 0, id;
	char text[QUEUE_ID_TEXT_LEN];

	for (int i = 0; i < 1000; i++) {
		struct queue_writer *w = queue_msg_begin(f->q, &env);

		id = queue_msg_id(w);
		assert_true(id > prev);
		queue_id_to_text(id, text);
		assert_int_equal(strlen(text), 16);
		if (prev) {
			char pt[QUEUE_ID_TEXT_LEN];

			queue_id_to_text(prev, pt);
			assert_true(strcmp(pt, text) < 0); /* text sorts too */
		}
		prev = id;
		queue_msg_abort(w);
	}
	assert_int_equal(queue_id_parse(text, &id), 0);
	assert_int_equal(id, prev);
	assert_true(queue_id_time_ms(id) <= now_ms());
	assert_true(queue_id_time_ms(id) + 60000 > now_ms());
	assert_int_equal(queue_id_parse("0123", &id), -1);
	assert_int_equal(queue_id_parse("0123456789abcdeg", &id), -1);
	assert_int_equal(queue_id_parse("0123456789abcdef0", &id), -1);
	assert_int_equal(queue_id_parse("0123456789ABCDEF", &id), 0);
	assert_int_equal(id, 0x0123456789abcdefull);
}

static void
test_submit_read(void **state)
{
	struct fx *f = *state;
	struct queue_envelope *e;
	struct queue_rcpt *r;
	struct queue_counters c;
	queue_msgid id1, id2;
	int n;

	id1 = submit(f, 200 * 1024 + 17, 3, 0);
	assert_int_equal(f->st, QUEUE_OK);
	id2 = submit(f, 10, 1, 0);
	assert_true(id2 > id1);
	e = queue_envelope_get(f->q, id1);
	assert_non_null(e);
	assert_string_equal(e->sender, "s@example.org");
	assert_string_equal(e->tenant, "t1");
	assert_string_equal(e->listener, "routing");
	assert_string_equal(e->envid, "E1");
	assert_int_equal(e->ret, QUEUE_RET_HDRS);
	assert_int_equal(e->size, 200 * 1024 + 17);
	assert_int_equal(e->rcpts_total, 3);
	assert_int_equal(e->rcpts_live, 3);
	queue_envelope_free(e);
	check_body(f, id1, 200 * 1024 + 17);
	check_body(f, id2, 10);
	n = queue_msg_rcpts(f->q, id1, &r);
	assert_int_equal(n, 3);
	assert_string_equal(r[1].address, "u1@D1.example");
	assert_string_equal(r[1].domain, "d1.example"); /* lowercased */
	assert_string_equal(r[0].orcpt, "rfc822;o@x");
	assert_int_equal(r[0].notify, QUEUE_NOTIFY_FAILURE);
	assert_int_equal(r[2].state, QUEUE_RCPT_QUEUED);
	queue_rcpts_free(r, (size_t)n);
	queue_counters_get(f->q, &c);
	assert_int_equal(c.messages, 2);
	assert_int_equal(c.rcpts, 4);
	assert_int_equal(c.rcpts_queued, 4);
	assert_int_equal(c.bytes, 200 * 1024 + 27);
	assert_int_equal(c.total_messages, 2);
	assert_null(queue_envelope_get(f->q, id2 + 1));
	assert_null(queue_body_open(f->q, id2 + 1));
	assert_consistent(f);
}

static void
test_submit_errors(void **state)
{
	struct fx *f = *state;
	struct queue_envelope env = { .sender = "a@b" };
	struct queue_rcpt_in bad = { .address = "nodomain" };
	struct queue_rcpt_in empty = { .address = "" };
	struct queue_writer *w;
	struct queue_counters c;
	char *big;

	w = queue_msg_begin(f->q, &env);
	assert_int_equal(queue_msg_add_rcpt(w, &bad), -1);
	assert_int_equal(queue_msg_add_rcpt(w, &empty), -1);
	f->pending++;
	queue_msg_commit(w, on_commit, f); /* no recipients */
	assert_int_equal(f->pending, 1);  /* never called from inside */
	fx_wait(f);
	assert_int_equal(f->st, QUEUE_EINVAL);

	queue_close(f->q);
	{
		struct queue_opts o = { .path = f->spool,
		                        .max_message_size = 100000 };
		char err[256];

		f->q = queue_open(f->base, &o, err, sizeof(err));
		assert_non_null(f->q);
	}
	big = xcalloc(1, 70000);
	w = queue_msg_begin(f->q, &env);
	assert_int_equal(queue_msg_write(w, big, 70000), 0);
	assert_int_equal(queue_msg_write(w, big, 70000), -1);
	empty.address = "x@y";
	assert_int_equal(queue_msg_add_rcpt(w, &empty), 0);
	f->pending++;
	queue_msg_commit(w, on_commit, f);
	fx_wait(f);
	assert_int_equal(f->st, QUEUE_ETOOBIG);
	free(big);
	queue_counters_get(f->q, &c);
	assert_int_equal(c.messages, 0);
	assert_consistent(f);
}

/* body_keys - count body-CF keys (orphans) directly */
static int
body_keys(struct queue *q)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(q->db, q->ropts,
	    q->cf[QCF_BODY]);
	int n = 0;

	for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
	     rocksdb_iter_next(it))
		n++;
	rocksdb_iter_destroy(it);
	return n;
}

static void
test_abort_and_orphans(void **state)
{
	struct fx *f = *state;
	struct queue_envelope env = { .sender = "a@b" };
	struct queue_writer *w;
	char *buf = xcalloc(1, 300000);
	queue_msgid id;

	w = queue_msg_begin(f->q, &env);
	queue_msg_write(w, buf, 300000);
	queue_msg_abort(w);
	id = submit(f, 10, 1, 0); /* a round after the abort */
	assert_int_equal(body_keys(f->q), 1);
	/* a writer that never finishes, as if the process died */
	w = queue_msg_begin(f->q, &env);
	queue_msg_write(w, buf, 300000);
	submit(f, 10, 1, 0);
	assert_int_equal(body_keys(f->q), 2 + 4);
	queue_close(f->q);
	f->q = fx_open(f);
	assert_non_null(f->q);
	assert_int_equal(body_keys(f->q), 2); /* orphan chunks removed */
	check_body(f, id, 10);
	/* the dangling writer's id is never reused */
	assert_true(submit(f, 5, 1, 0) > queue_msg_id(w));
	free(buf);
	assert_consistent(f);
	w->q = f->q; /* the writer outlived its queue: abort it on the new one */
	queue_msg_abort(w);
	f->pending++;
	queue_outcomes(f->q, NULL, 0, on_done, f);
	fx_wait(f);
}

static long
rss_peak_kb(void)
{
	FILE *fp = fopen("/proc/self/status", "r");
	char line[256];
	long kb = 0;

	while (fp && fgets(line, sizeof(line), fp))
		if (strncmp(line, "VmHWM:", 6) == 0)
			kb = atol(line + 6);
	if (fp)
		fclose(fp);
	return kb;
}

/* test_big_body - 200 MB in and out in chunks, memory stays bounded */
static void
test_big_body(void **state)
{
	struct fx *f = *state;
	struct queue_envelope env = { .sender = "big@example.org" };
	struct queue_rcpt_in rin = { .address = "x@big.example" };
	const uint64_t total = 200ull << 20;
	char *buf = xmalloc(1 << 20);
	uint64_t off = 0, h1 = 1469598103934665603ull, h2 = h1;
	long peak0, n;
	struct queue_writer *w;
	struct queue_body *r;
	queue_msgid id;

	queue_close(f->q);
	{
		struct queue_opts o = { .path = f->spool, .cache_bytes = 8 << 20,
		                        .memtable_bytes = 16 << 20,
		                        .max_message_size = 256 << 20 };
		char err[256];

		f->q = queue_open(f->base, &o, err, sizeof(err));
		assert_non_null(f->q);
	}
	peak0 = rss_peak_kb();
	w = queue_msg_begin(f->q, &env);
	for (; off < total; off += 1 << 20) {
		for (int i = 0; i < (1 << 20); i++)
			buf[i] = (char)((off + (uint64_t)i) * 2654435761u >> 13);
		for (int i = 0; i < (1 << 20); i++)
			h1 = (h1 ^ (unsigned char)buf[i]) * 1099511628211ull;
		assert_int_equal(queue_msg_write(w, buf, 1 << 20), 0);
		while (queue_write_backlog(f->q) > (8u << 20)) /* as smtpd would */
			event_base_loop(f->base, EVLOOP_ONCE);
	}
	assert_int_equal(queue_msg_add_rcpt(w, &rin), 0);
	f->pending++;
	queue_msg_commit(w, on_commit, f);
	fx_wait(f);
	assert_int_equal(f->st, QUEUE_OK);
	id = f->id;
	r = queue_body_open(f->q, id);
	assert_non_null(r);
	assert_int_equal(queue_body_size(r), total);
	off = 0;
	while ((n = queue_body_read(r, buf, 100000)) > 0) {
		for (long i = 0; i < n; i++)
			h2 = (h2 ^ (unsigned char)buf[i]) * 1099511628211ull;
		off += (uint64_t)n;
	}
	queue_body_close(r);
	assert_int_equal(off, total);
	assert_true(h1 == h2);
	/* neither side held the body: peak RSS grew far less than 200 MB
	 * (not measurable under ASan, whose quarantine keeps freed memory) */
#ifndef __SANITIZE_ADDRESS__
	assert_true(rss_peak_kb() - peak0 < 80 * 1024);
#else
	(void)peak0;
#endif
	outcome(f, id, 0, QUEUE_OUT_DELIVERED, 0);
	assert_int_equal(body_keys(f->q), 0);
	free(buf);
}

static void
test_claim(void **state)
{
	struct fx *f = *state;
	struct queue_rcpt *r, *r2;
	struct queue_counters c;
	queue_msgid id1, id2;
	int n;

	id1 = submit(f, 100, 3, 0);
	id2 = submit(f, 100, 2, 0);
	assert_true(queue_due_next_ms(f->q) <= now_ms());
	n = queue_due_claim(f->q, now_ms(), 4, &r);
	assert_int_equal(n, 4);
	/* oldest first: all of id1, then id2's first */
	assert_true(r[0].msgid == id1 && r[2].msgid == id1 && r[3].msgid == id2);
	assert_string_equal(r[3].address, "u0@D0.example");
	assert_int_equal(r[0].state, QUEUE_RCPT_INFLIGHT);
	assert_true(r[0].submit_ms > 0);
	/* not returned again, even before the claim is written */
	n = queue_due_claim(f->q, now_ms(), 10, &r2);
	assert_int_equal(n, 1);
	assert_int_equal(r2[0].msgid, id2);
	assert_int_equal(r2[0].idx, 1);
	queue_rcpts_free(r2, 1);
	assert_int_equal(queue_due_claim(f->q, now_ms(), 10, &r2), 0);
	assert_null(r2);
	assert_int_equal(queue_due_next_ms(f->q), UINT64_MAX);
	f->pending++;
	queue_outcomes(f->q, NULL, 0, on_done, f); /* flush the claim */
	fx_wait(f);
	queue_counters_get(f->q, &c);
	assert_int_equal(c.rcpts_inflight, 5);
	assert_int_equal(c.rcpts_queued, 0);
	assert_consistent(f);
	/* recovery: every in-flight recipient is due again */
	queue_close(f->q);
	f->q = fx_open(f);
	queue_counters_get(f->q, &c);
	assert_int_equal(c.rcpts_inflight, 0);
	assert_int_equal(c.rcpts_queued, 5);
	assert_consistent(f);
	n = queue_due_claim(f->q, now_ms(), 100, &r2);
	assert_int_equal(n, 5);
	assert_int_equal(r2[0].msgid, id1);
	assert_int_equal(r2[0].attempts, 0); /* a crash is not an attempt */
	queue_rcpts_free(r2, 5);
	queue_rcpts_free(r, 4);
}

static void
test_outcomes_refcount(void **state)
{
	struct fx *f = *state;
	struct queue_rcpt *r;
	struct queue_counters c;
	queue_msgid id;
	uint64_t later = now_ms() + 3600 * 1000;
	int n;

	id = submit(f, 150000, 3, 0);
	n = queue_due_claim(f->q, now_ms(), 10, &r);
	assert_int_equal(n, 3);
	queue_rcpts_free(r, 3);
	outcome(f, id, 0, QUEUE_OUT_DELIVERED, 0);
	outcome(f, id, 1, QUEUE_OUT_DEFERRED, later);
	outcome(f, id, 2, QUEUE_OUT_RELEASE, 0);
	queue_counters_get(f->q, &c);
	assert_int_equal(c.rcpts, 2);
	assert_int_equal(c.rcpts_deferred, 1);
	assert_int_equal(c.total_delivered, 1);
	assert_consistent(f);
	/* only the released one is due now, with no attempt spent */
	n = queue_due_claim(f->q, now_ms(), 10, &r);
	assert_int_equal(n, 1);
	assert_int_equal(r[0].idx, 2);
	assert_int_equal(r[0].attempts, 0);
	queue_rcpts_free(r, 1);
	assert_int_equal(queue_due_next_ms(f->q), later);
	n = queue_due_claim(f->q, later, 10, &r);
	assert_int_equal(n, 1);
	assert_int_equal(r[0].idx, 1);
	assert_int_equal(r[0].attempts, 1);
	assert_int_equal(r[0].last_code, 451);
	assert_string_equal(r[0].last_enhanced, "4.7.1");
	assert_string_equal(r[0].last_mx, "mx1.example");
	assert_true(r[0].first_attempt_ms > 0);
	queue_rcpts_free(r, 1);
	outcome(f, id, 1, QUEUE_OUT_REDEFER, later + 5);
	outcome(f, id, 1, QUEUE_OUT_BOUNCED, 0);
	{
		struct queue_envelope *e = queue_envelope_get(f->q, id);

		assert_non_null(e);
		assert_int_equal(e->rcpts_live, 1); /* the refcount */
		queue_envelope_free(e);
	}
	outcome(f, id, 2, QUEUE_OUT_EXPIRED, 0);
	/* last recipient gone: envelope and body too */
	assert_null(queue_envelope_get(f->q, id));
	assert_int_equal(body_keys(f->q), 0);
	outcome(f, id, 2, QUEUE_OUT_DELIVERED, 0); /* unknown: skipped */
	queue_counters_get(f->q, &c);
	assert_int_equal(c.messages, 0);
	assert_int_equal(c.rcpts, 0);
	assert_int_equal(c.bytes, 0);
	assert_int_equal(c.total_bounced, 1);
	assert_int_equal(c.total_expired, 1);
	assert_consistent(f);
}

static int
due_keys(struct queue *q)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(q->db, q->ropts,
	    q->cf[QCF_DUE]);
	int n = 0;

	for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
	     rocksdb_iter_next(it))
		n++;
	rocksdb_iter_destroy(it);
	return n;
}

/* test_claim_floor - claims skip the drained head of the due index, yet
 * see keys written below it later; stale index keys are removed */
static void
test_claim_floor(void **state)
{
	struct fx *f = *state;
	struct queue_rcpt *r;
	unsigned char k[QK_DUE_LEN];
	char *e = NULL;
	queue_msgid id;
	uint64_t t;
	int n;

	id = submit(f, 10, 2, 0);
	n = queue_due_claim(f->q, now_ms() + 1000000, 10, &r); /* floor jumps */
	assert_int_equal(n, 2);
	queue_rcpts_free(r, 2);
	outcome(f, id, 0, QUEUE_OUT_REDEFER, 1000); /* far below the floor */
	n = queue_due_claim(f->q, now_ms(), 10, &r);
	assert_int_equal(n, 1);
	assert_int_equal(r[0].idx, 0);
	queue_rcpts_free(r, 1);
	outcome(f, id, 1, QUEUE_OUT_RELEASE, 0); /* lowers the floor to now */
	/* a due key without a recipient record: skipped, then deleted */
	t = now_ms() + 50;
	qk_due(k, qk_prio(0), t, id + 99, 0);
	rocksdb_put_cf(f->q->db, f->q->wsync, f->q->cf[QCF_DUE], (char *)k,
	    sizeof(k), "", 0, &e);
	assert_null(e);
	n = queue_due_claim(f->q, t, 10, &r);
	assert_int_equal(n, 1);
	assert_int_equal(r[0].idx, 1);
	queue_rcpts_free(r, 1);
	f->pending++;
	queue_outcomes(f->q, NULL, 0, on_done, f); /* flush the claim op */
	fx_wait(f);
	assert_int_equal(due_keys(f->q), 0);
	assert_consistent(f);
}

static void
admin(struct fx *f, enum qop_kind k, queue_msgid id, enum queue_status want)
{
	f->pending++;
	if (k == QOP_HOLD)
		queue_msg_hold(f->q, id, on_done, f);
	else if (k == QOP_RELEASE)
		queue_msg_release(f->q, id, on_done, f);
	else
		queue_msg_delete(f->q, id, "tester", on_done, f);
	fx_wait(f);
	assert_int_equal(f->st, want);
}

/* test_commit_with - a DSN-like message and the outcomes it reports are
 * written in one batch; a delay-warning time given with a deferral is kept
 * in the recipient record */
static void
test_commit_with(void **state)
{
	struct fx *f = *state;
	struct queue_envelope env = { .sender = "", .flags = QUEUE_MSG_DSN };
	struct queue_rcpt_in rin = { .address = "s@example.org" };
	struct queue_outcome o[2];
	struct queue_rcpt *r;
	struct queue_writer *w;
	struct queue_counters c;
	queue_msgid id, dsn;
	uint64_t later = now_ms() + 3600 * 1000;
	int n;

	id = submit(f, 100, 2, 0);
	n = queue_due_claim(f->q, now_ms(), 10, &r);
	assert_int_equal(n, 2);
	queue_rcpts_free(r, 2);
	memset(o, 0, sizeof(o));
	o[0] = (struct queue_outcome){ .msgid = id, .idx = 0,
	                               .kind = QUEUE_OUT_BOUNCED,
	                               .reply = { 550, "5.1.1", "no such user", "mx" } };
	o[1] = (struct queue_outcome){ .msgid = id, .idx = 1,
	                               .kind = QUEUE_OUT_DEFERRED, .next_ms = later,
	                               .warned_ms = 4242 };
	w = queue_msg_begin(f->q, &env);
	assert_int_equal(queue_msg_write(w, "report\r\n", 8), 0);
	assert_int_equal(queue_msg_add_rcpt(w, &rin), 0);
	f->pending++;
	queue_msg_commit_with(w, o, 2, on_commit, f);
	fx_wait(f);
	assert_int_equal(f->st, QUEUE_OK);
	dsn = f->id;
	assert_true(dsn != id);
	queue_counters_get(f->q, &c);
	assert_int_equal(c.total_bounced, 1);
	assert_int_equal(c.messages, 2);
	assert_int_equal(c.rcpts_deferred, 1);
	n = queue_msg_rcpts(f->q, id, &r);
	assert_int_equal(n, 1);
	assert_int_equal(r[0].idx, 1);
	assert_int_equal(r[0].warned_ms, 4242);
	queue_rcpts_free(r, 1);
	/* a refused message (no recipient) applies none of its outcomes */
	o[0].idx = 1;
	o[0].kind = QUEUE_OUT_DELIVERED;
	w = queue_msg_begin(f->q, &env);
	f->pending++;
	queue_msg_commit_with(w, o, 1, on_commit, f);
	fx_wait(f);
	assert_int_equal(f->st, QUEUE_EINVAL);
	queue_counters_get(f->q, &c);
	assert_int_equal(c.total_delivered, 0);
	/* a later deferral without a warning time keeps the old one */
	n = queue_due_claim(f->q, later, 10, &r);
	assert_true(n >= 1);
	queue_rcpts_free(r, (size_t)n);
	outcome(f, id, 1, QUEUE_OUT_DEFERRED, later + 10);
	n = queue_msg_rcpts(f->q, id, &r);
	assert_int_equal(n, 1);
	assert_int_equal(r[0].warned_ms, 4242);
	queue_rcpts_free(r, 1);
	assert_consistent(f);
}

static void
test_hold_release_delete(void **state)
{
	struct fx *f = *state;
	struct queue_rcpt *r;
	struct queue_counters c;
	struct queue_envelope *e[4];
	struct queue_filter flt = { .held_only = 1 };
	queue_msgid id, id2, id3;
	int n;

	id = submit(f, 1000, 3, 0);
	id2 = submit(f, 1000, 2, QUEUE_MSG_HELD);
	n = queue_due_claim(f->q, now_ms(), 1, &r); /* idx 0 in flight */
	assert_int_equal(n, 1);
	queue_rcpts_free(r, 1);
	admin(f, QOP_HOLD, id, QUEUE_OK);
	queue_counters_get(f->q, &c);
	assert_int_equal(c.rcpts_held, 4);
	assert_int_equal(c.rcpts_inflight, 1);
	assert_int_equal(queue_due_claim(f->q, now_ms(), 10, &r), 0);
	assert_int_equal(queue_msg_list(f->q, 0, &flt, 4, e), 2);
	queue_envelope_free(e[0]);
	queue_envelope_free(e[1]);
	/* the in-flight one, deferred while held, becomes held */
	outcome(f, id, 0, QUEUE_OUT_DEFERRED, now_ms());
	queue_counters_get(f->q, &c);
	assert_int_equal(c.rcpts_held, 5);
	admin(f, QOP_RELEASE, id, QUEUE_OK);
	n = queue_due_claim(f->q, now_ms(), 10, &r);
	assert_int_equal(n, 3);
	queue_rcpts_free(r, 3);
	admin(f, QOP_DELETE, id2, QUEUE_OK);
	admin(f, QOP_DELETE, id2, QUEUE_ENOTFOUND);
	admin(f, QOP_HOLD, id2, QUEUE_ENOTFOUND);
	admin(f, QOP_DELETE, id, QUEUE_OK); /* with recipients in flight */
	outcome(f, id, 1, QUEUE_OUT_DELIVERED, 0); /* ignored */
	queue_counters_get(f->q, &c);
	assert_int_equal(c.messages, 0);
	assert_int_equal(c.rcpts, 0);
	assert_int_equal(c.total_deleted, 5);
	assert_int_equal(body_keys(f->q), 0);
	assert_consistent(f);
	/* listing with filters */
	id3 = submit(f, 10, 2, 0);
	submit(f, 10, 1, 0);
	flt.held_only = 0;
	flt.domain = "d1.example";
	assert_int_equal(queue_msg_list(f->q, 0, &flt, 4, e), 1);
	assert_int_equal(e[0]->id, id3);
	queue_envelope_free(e[0]);
	assert_int_equal(queue_msg_list(f->q, 0, NULL, 1, e), 1);
	assert_int_equal(e[0]->id, id3);
	queue_envelope_free(e[0]);
	assert_int_equal(queue_msg_list(f->q, id3, NULL, 4, e), 1);
	queue_envelope_free(e[0]);
}

/* test_held_recovery - in flight when held, then a crash: stays held */
static void
test_held_recovery(void **state)
{
	struct fx *f = *state;
	struct queue_rcpt *r;
	struct queue_counters c;
	queue_msgid id;
	int n;

	id = submit(f, 10, 2, 0);
	n = queue_due_claim(f->q, now_ms(), 1, &r);
	assert_int_equal(n, 1);
	queue_rcpts_free(r, 1);
	admin(f, QOP_HOLD, id, QUEUE_OK);
	queue_close(f->q); /* as if the process died with idx 0 in flight */
	f->q = fx_open(f);
	queue_counters_get(f->q, &c);
	assert_int_equal(c.rcpts_held, 2);
	assert_int_equal(c.rcpts_inflight, 0);
	assert_int_equal(queue_due_claim(f->q, now_ms(), 10, &r), 0);
	assert_consistent(f);
	admin(f, QOP_RELEASE, id, QUEUE_OK);
	n = queue_due_claim(f->q, now_ms(), 10, &r);
	assert_int_equal(n, 2);
	queue_rcpts_free(r, 2);
}

/* flush - wait for a round after everything submitted so far */
static void
flush(struct fx *f)
{
	f->pending++;
	queue_outcomes(f->q, NULL, 0, on_done, f);
	fx_wait(f);
}

/* test_claim_races - a claim read before pending admin ops are applied:
 * the claimed recipient must end in flight, never claimable twice. The
 * store thread is paused so the ops are applied after the claim's read. */
static void
test_claim_races(void **state)
{
	struct fx *f = *state;
	struct queue_rcpt *r;
	struct queue_counters c;
	uint64_t later = now_ms() + 3600 * 1000;
	queue_msgid id;
	int n;

	/* hold pending, then a claim, then a release: one delivery only */
	id = submit(f, 10, 1, 0);
	qstore_pause(f->q, 1);
	f->pending++;
	queue_msg_hold(f->q, id, on_done, f);
	n = queue_due_claim(f->q, now_ms(), 10, &r);
	assert_int_equal(n, 1);
	queue_rcpts_free(r, 1);
	qstore_pause(f->q, 0);
	fx_wait(f);
	flush(f);
	queue_counters_get(f->q, &c);
	assert_int_equal(c.rcpts_inflight, 1);
	assert_int_equal(c.rcpts_held, 0);
	admin(f, QOP_RELEASE, id, QUEUE_OK);
	assert_int_equal(queue_due_claim(f->q, now_ms(), 10, &r), 0);
	assert_consistent(f);
	outcome(f, id, 0, QUEUE_OUT_DEFERRED, later);
	queue_counters_get(f->q, &c);
	assert_int_equal(c.rcpts_deferred, 1);

	/* retry-now pending, then a claim of the deferred recipient */
	qstore_pause(f->q, 1);
	f->pending++;
	queue_msg_retry_now(f->q, id, on_done, f);
	n = queue_due_claim(f->q, later, 10, &r);
	assert_int_equal(n, 1);
	queue_rcpts_free(r, 1);
	qstore_pause(f->q, 0);
	fx_wait(f);
	assert_int_equal(f->st, QUEUE_OK);
	flush(f);
	assert_int_equal(queue_due_claim(f->q, now_ms(), 10, &r), 0);
	queue_counters_get(f->q, &c);
	assert_int_equal(c.rcpts_inflight, 1);
	assert_consistent(f);
	outcome(f, id, 0, QUEUE_OUT_DEFERRED, later);

	/* a claim pending, then retry-now: it leaves the in-flight one */
	qstore_pause(f->q, 1);
	n = queue_due_claim(f->q, later, 10, &r);
	assert_int_equal(n, 1);
	queue_rcpts_free(r, 1);
	f->pending++;
	queue_msg_retry_now(f->q, id, on_done, f);
	qstore_pause(f->q, 0);
	fx_wait(f);
	flush(f);
	assert_int_equal(queue_due_claim(f->q, now_ms(), 10, &r), 0);
	queue_counters_get(f->q, &c);
	assert_int_equal(c.rcpts_inflight, 1);
	/* retry-now of a deferred recipient: due now, no attempt spent */
	outcome(f, id, 0, QUEUE_OUT_DEFERRED, later);
	f->pending++;
	queue_msg_retry_now(f->q, id, on_done, f);
	fx_wait(f);
	n = queue_due_claim(f->q, now_ms(), 10, &r);
	assert_int_equal(n, 1);
	assert_int_equal(r[0].attempts, 3);
	queue_rcpts_free(r, 1);
	f->pending++;
	queue_msg_retry_now(f->q, id + 1, on_done, f);
	fx_wait(f);
	assert_int_equal(f->st, QUEUE_ENOTFOUND);
	flush(f);
	assert_consistent(f);
}

/* test_priority - due recipients of a higher priority are claimed first;
 * a priority does not make a recipient due early; classes survive a
 * restart */
static void
test_priority(void **state)
{
	struct fx *f = *state;
	struct queue_rcpt *r;
	queue_msgid lo, mid, hi1, hi2;
	uint64_t later = now_ms() + 3600 * 1000;
	int n;

	f->prio = 0;
	mid = submit(f, 10, 2, 0);
	f->prio = -3;
	lo = submit(f, 10, 1, 0);
	f->prio = 5;
	hi1 = submit(f, 10, 1, 0);
	f->prio = 500; /* clamped to 127: still the highest */
	hi2 = submit(f, 10, 1, 0);
	f->prio = 0;
	n = queue_due_claim(f->q, now_ms(), 2, &r);
	assert_int_equal(n, 2);
	assert_true(r[0].msgid == hi2 && r[1].msgid == hi1);
	queue_rcpts_free(r, 2);
	n = queue_due_claim(f->q, now_ms(), 10, &r);
	assert_int_equal(n, 3);
	assert_true(r[0].msgid == mid && r[1].msgid == mid && r[2].msgid == lo);
	queue_rcpts_free(r, 3);
	/* deferred: the high one due later, the low one due now */
	outcome(f, hi1, 0, QUEUE_OUT_DEFERRED, later);
	outcome(f, lo, 0, QUEUE_OUT_DEFERRED, now_ms() - 1);
	assert_true(queue_due_next_ms(f->q) < later);
	n = queue_due_claim(f->q, now_ms(), 10, &r);
	assert_int_equal(n, 1);
	assert_int_equal(r[0].msgid, lo);
	queue_rcpts_free(r, 1);
	assert_int_equal(queue_due_next_ms(f->q), later);
	outcome(f, lo, 0, QUEUE_OUT_DEFERRED, later);
	outcome(f, mid, 1, QUEUE_OUT_DEFERRED, later);
	outcome(f, mid, 0, QUEUE_OUT_DELIVERED, 0);
	outcome(f, hi2, 0, QUEUE_OUT_DELIVERED, 0);
	assert_consistent(f);
	/* after a restart: the classes are found again */
	queue_close(f->q);
	f->q = fx_open(f);
	assert_int_equal(queue_due_next_ms(f->q), later);
	n = queue_due_claim(f->q, later, 10, &r);
	assert_int_equal(n, 3);
	assert_true(r[0].msgid == hi1 && r[1].msgid == mid && r[2].msgid == lo);
	queue_rcpts_free(r, 3);
	flush(f);
	assert_consistent(f);
}

/* v1_due_keys - rewrite the due index as schema 1 wrote it (no class) */
static void
v1_due_keys(struct queue *q)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(q->db, q->ropts,
	    q->cf[QCF_DUE]);
	rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
	char *e = NULL;
	size_t klen;

	for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
	     rocksdb_iter_next(it)) {
		const char *k = rocksdb_iter_key(it, &klen);

		assert_int_equal(klen, QK_DUE_LEN);
		rocksdb_writebatch_delete_cf(wb, q->cf[QCF_DUE], k, klen);
		rocksdb_writebatch_put_cf(wb, q->cf[QCF_DUE], k + 1, klen - 1,
		    "", 0);
	}
	rocksdb_iter_destroy(it);
	rocksdb_writebatch_put_cf(wb, q->cf[QCF_DEFAULT], "schema", 6, "1", 1);
	rocksdb_write(q->db, q->wsync, wb, &e);
	assert_null(e);
	rocksdb_writebatch_destroy(wb);
}

/* test_schema_upgrade - a schema 1 spool opens and keeps its due index
 * (now in priority order); a newer schema is refused with a clear error */
static void
test_schema_upgrade(void **state)
{
	struct fx *f = *state;
	struct queue_rcpt *r;
	struct queue_opts o = { .path = f->spool };
	char err[512] = "", *e = NULL;
	queue_msgid a, b;
	int n;

	a = submit(f, 10, 2, 0);
	f->prio = 9;
	b = submit(f, 10, 1, 0);
	f->prio = 0;
	v1_due_keys(f->q);
	queue_close(f->q);
	f->q = fx_open(f);
	assert_non_null(f->q);
	assert_int_equal(due_keys(f->q), 3);
	n = queue_due_claim(f->q, now_ms(), 10, &r);
	assert_int_equal(n, 3);
	assert_true(r[0].msgid == b && r[1].msgid == a && r[2].msgid == a);
	queue_rcpts_free(r, 3);
	flush(f);
	assert_consistent(f);
	rocksdb_put_cf(f->q->db, f->q->wsync, f->q->cf[QCF_DEFAULT], "schema",
	    6, "9", 1, &e);
	assert_null(e);
	queue_close(f->q);
	f->q = queue_open(f->base, &o, err, sizeof(err));
	assert_null(f->q);
	assert_non_null(strstr(err, "schema version \"9\""));
	assert_non_null(strstr(err, f->spool));
	f->q = fx_open(f) ; /* still refused: teardown needs a queue */
	assert_null(f->q);
	rm_rf(f->spool);
	f->q = fx_open(f);
	assert_non_null(f->q);
}

static void
test_counters_rebuild(void **state)
{
	struct fx *f = *state;
	struct queue_counters c, bad = { .messages = 7 };

	submit(f, 10, 2, 0);
	f->pending++;
	queue_counters_fix(f->q, &bad); /* corrupt them on purpose */
	queue_outcomes(f->q, NULL, 0, on_done, f);
	fx_wait(f);
	assert_int_equal(queue_check(f->q, 1, NULL), -1);
	f->pending++;
	queue_outcomes(f->q, NULL, 0, on_done, f);
	fx_wait(f);
	assert_consistent(f);
	/* a body chunk of no message: found, and removed with fix */
	{
		unsigned char k[QK_BODY_LEN];
		char *e = NULL;

		qk_body(k, 12345, 0);
		rocksdb_put_cf(f->q->db, f->q->wsync, f->q->cf[QCF_BODY],
		    (char *)k, sizeof(k), "x", 1, &e);
		assert_null(e);
		assert_int_equal(queue_check(f->q, 1, NULL), -1);
		f->pending++;
		queue_outcomes(f->q, NULL, 0, on_done, f);
		fx_wait(f);
		assert_consistent(f);
		assert_int_equal(body_keys(f->q), 1);
	}
	queue_counters_get(f->q, &c);
	assert_int_equal(c.messages, 1);
	assert_int_equal(c.rcpts_queued, 2);
	assert_int_equal(c.total_messages, 1); /* totals kept */
}

static void
test_open_errors(void **state)
{
	struct fx *f = *state;
	struct queue_opts o = { .path = f->spool };
	char err[512] = "", path[400];
	FILE *fp;

	/* locked: already open (by this process here) */
	assert_null(queue_open(f->base, &o, err, sizeof(err)));
	assert_non_null(strstr(err, f->spool));
	assert_non_null(strstr(err, "lock"));
	/* not a directory */
	snprintf(path, sizeof(path), "%s/file", f->dir);
	fp = fopen(path, "w");
	fclose(fp);
	o.path = path;
	assert_null(queue_open(f->base, &o, err, sizeof(err)));
	assert_non_null(strstr(err, path));
	o.path = "";
	assert_null(queue_open(f->base, &o, err, sizeof(err)));
	/* corrupt: garbage CURRENT */
	queue_close(f->q);
	f->q = NULL;
	snprintf(path, sizeof(path), "%s/CURRENT", f->spool);
	fp = fopen(path, "w");
	fputs("MANIFEST-999999\n", fp);
	fclose(fp);
	o.path = f->spool;
	assert_null(queue_open(f->base, &o, err, sizeof(err)));
	assert_non_null(strstr(err, f->spool));
	assert_non_null(strstr(err, "RocksDB"));
	/* unreadable: permissions (meaningful when not root) */
	if (geteuid() != 0) {
		rm_rf(f->spool);
		mkdir(f->spool, 0);
		assert_null(queue_open(f->base, &o, err, sizeof(err)));
		assert_non_null(strstr(err, f->spool));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_records),
		cmocka_unit_test_setup_teardown(test_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_submit_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_submit_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort_and_orphans, setup, teardown),
		cmocka_unit_test_setup_teardown(test_claim, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_claim_floor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_outcomes_refcount, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_with, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hold_release_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_held_recovery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_claim_races, setup, teardown),
		cmocka_unit_test_setup_teardown(test_priority, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schema_upgrade, setup, teardown),
		cmocka_unit_test_setup_teardown(test_counters_rebuild, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
	};

	log_init("test_queue", 1, LOG_LVL_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
