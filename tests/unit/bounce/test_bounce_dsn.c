/*
 * test_bounce_dsn.c - the DSN composer: golden files data/dsn_*.in ->
 * data/dsn_*.ref (fixed dates and ids), and the properties every DSN
 * must have whatever its input: CRLF only, no line over 998 octets, no
 * header injection from reply texts or addresses, bounded streaming of
 * the original, and clear errors for bad input and failing callbacks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bounce/bounce.h"
#include "dsnspec.h"

/* check_lines - CRLF only, nothing over 998 octets, no NUL */
static void
check_lines(const struct bounce_buf *b, const char *what)
{
	size_t col = 0;

	for (size_t i = 0; i < b->len; i++) {
		char c = b->data[i];
		if (c == '\0')
			fail_msg("%s: NUL at %zu", what, i);
		if (c == '\n' && (i == 0 || b->data[i - 1] != '\r'))
			fail_msg("%s: bare LF at %zu", what, i);
		if (c == '\r' && (i + 1 >= b->len || b->data[i + 1] != '\n'))
			fail_msg("%s: bare CR at %zu", what, i);
		if (c == '\r' || c == '\n') {
			col = 0;
			continue;
		}
		if (++col > 998)
			fail_msg("%s: line over 998 octets at %zu", what, i);
	}
	assert_true(b->len >= 2 && memcmp(b->data + b->len - 2, "\r\n", 2) == 0);
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *p;
	long n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	p = malloc((size_t)n + 1);
	assert_non_null(p);
	*len = fread(p, 1, (size_t)n, f);
	p[*len] = '\0';
	fclose(f);
	return p;
}

static void
report_difference(const char *name, const char *want, size_t wl,
                  const char *got, size_t gl)
{
	size_t i = 0, line = 1, start = 0;

	while (i < wl && i < gl && want[i] == got[i]) {
		if (want[i] == '\n')
			line++, start = i + 1;
		i++;
	}
	fprintf(stderr, "%s: differs from .ref at line %zu\n  want: %.*s\n"
	        "  got:  %.*s\n", name, line,
	        (int)strcspn(want + start, "\r\n"), want + start,
	        (int)strcspn(got + start, "\r\n"), got + start);
}

static int
golden_one(const char *name)
{
	char in[1024], ref[1024], err[512];
	struct dsnspec s;
	struct bounce_buf b = { 0 };
	size_t wl = 0;
	char *want;
	int bad = 0;

	snprintf(in, sizeof(in), "%s/%s", BOUNCE_DATA_DIR, name);
	snprintf(ref, sizeof(ref), "%.*s.ref", (int)(strlen(in) - 3), in);
	if (dsnspec_load(&s, in, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(dsnspec_open(&s), 0);
	assert_int_equal(bounce_dsn_write(&s.dsn, bounce_buf_write, &b, NULL),
	                 BOUNCE_DSN_OK);
	check_lines(&b, name);
	if (getenv("BOUNCE_REGEN")) {
		FILE *f = fopen(ref, "wb");
		assert_non_null(f);
		fwrite(b.data, 1, b.len, f);
		fclose(f);
	}
	want = slurp(ref, &wl);
	if (want == NULL || wl != b.len || memcmp(want, b.data, wl) != 0) {
		report_difference(name, want ? want : "", wl, b.data, b.len);
		bad = 1;
	}
	free(want);
	bounce_buf_release(&b);
	dsnspec_free(&s);
	return bad;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
test_dsn_golden(void **state)
{
	DIR *d = opendir(BOUNCE_DATA_DIR);
	struct dirent *e;
	char *names[64];
	size_t n = 0;
	int bad = 0;

	(void)state;
	assert_non_null(d);
	while ((e = readdir(d)) != NULL && n < 64) {
		size_t l = strlen(e->d_name);
		if (strncmp(e->d_name, "dsn_", 4) == 0 && l > 3 &&
		    strcmp(e->d_name + l - 3, ".in") == 0)
			names[n++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(names[0]), cmp_str);
	for (size_t i = 0; i < n; i++) {
		bad += golden_one(names[i]);
		free(names[i]);
	}
	fprintf(stderr, "dsn golden: %zu cases, %d differences\n", n, bad);
	assert_true(n >= 6);
	assert_int_equal(bad, 0);
}

/* ---- properties with in-memory originals ---- */

struct mem {
	const char *p;
	size_t len, off, read_calls;
	size_t fail_after;   /* 0 = never */
};

static long
mem_read(void *arg, void *buf, size_t len)
{
	struct mem *m = arg;
	size_t n = m->len - m->off;

	m->read_calls++;
	if (m->fail_after && m->off >= m->fail_after)
		return -1;
	if (n > len)
		n = len;
	memcpy(buf, m->p + m->off, n);
	m->off += n;
	return (long)n;
}

static void
base_dsn(struct bounce_dsn *d, struct bounce_dsn_rcpt *r, struct mem *m)
{
	memset(d, 0, sizeof(*d));
	memset(r, 0, sizeof(*r));
	r->address = "bob@example.net";
	r->action = BOUNCE_ACTION_FAILED;
	r->code = 550;
	r->enhanced = "5.1.1";
	r->text = "no such user";
	r->remote_mta = "mx.example.net";
	d->reporting_mta = "mx-out.example.org";
	d->sender = "alice@example.org";
	d->arrival_ms = 1700000000000ULL;
	d->date_ms = 1700003600000ULL;
	d->queue_id = "q1";
	d->rcpts = r;
	d->n_rcpts = 1;
	if (m) {
		d->read = mem_read;
		d->read_arg = m;
		d->original_size = m->len;
	}
}

static void
test_dsn_injection(void **state)
{
	struct bounce_dsn d;
	struct bounce_dsn_rcpt r;
	struct bounce_buf b = { 0 };
	const char *line;

	(void)state;
	base_dsn(&d, &r, NULL);
	r.text = "user unknown\r\nBcc: victim@example.com\r\n\r\nhello";
	r.address = "bob@example.net\r\nX-Injected: 1";
	r.remote_mta = "mx\nX-Evil: 2";
	r.orcpt = "rfc822;bob@example.net\rX-Evil: 3";
	d.envid = "id\r\nX-Evil: 4";
	d.sender = "alice@example.org\r\nBcc: x@y";
	assert_int_equal(bounce_dsn_write(&d, bounce_buf_write, &b, NULL),
	                 BOUNCE_DSN_OK);
	check_lines(&b, "injection");
	for (line = b.data; line; line = strstr(line, "\r\n")) {
		line += line == b.data ? 0 : 2;
		assert_true(strncmp(line, "Bcc:", 4) != 0);
		assert_true(strncmp(line, "X-Injected:", 11) != 0);
		assert_true(strncmp(line, "X-Evil:", 7) != 0);
		if (*line == '\0')
			break;
	}
	assert_non_null(strstr(b.data, "Original-Envelope-Id: id+0D+0AX-Evil:+204"));
	bounce_buf_release(&b);
}

static void
test_dsn_long_text(void **state)
{
	struct bounce_dsn d;
	struct bounce_dsn_rcpt r;
	struct bounce_buf b = { 0 };
	char *big = malloc(20001);

	(void)state;
	memset(big, 'A', 20000);
	big[20000] = '\0';
	memcpy(big + 5000, " spaces here and ", 17);
	base_dsn(&d, &r, NULL);
	r.text = big;
	r.remote_mta = big;
	assert_int_equal(bounce_dsn_write(&d, bounce_buf_write, &b, NULL),
	                 BOUNCE_DSN_OK);
	check_lines(&b, "long text");
	assert_true(b.len < 20000); /* reply text is capped */
	bounce_buf_release(&b);
	free(big);
}

static void
test_dsn_bad_input(void **state)
{
	struct bounce_dsn d;
	struct bounce_dsn_rcpt r;
	struct bounce_buf b = { 0 };
	struct bounce_dsn_info info;

	(void)state;
	base_dsn(&d, &r, NULL);
	d.sender = "";
	assert_int_equal(bounce_dsn_write(&d, bounce_buf_write, &b, &info),
	                 BOUNCE_DSN_EINVAL);
	d.sender = "<>";
	assert_int_equal(bounce_dsn_write(&d, bounce_buf_write, &b, &info),
	                 BOUNCE_DSN_EINVAL);
	d.sender = "a@b";
	d.n_rcpts = 0;
	assert_int_equal(bounce_dsn_write(&d, bounce_buf_write, &b, &info),
	                 BOUNCE_DSN_EINVAL);
	d.n_rcpts = 1;
	d.reporting_mta = "\r\n";
	assert_int_equal(bounce_dsn_write(&d, bounce_buf_write, &b, &info),
	                 BOUNCE_DSN_EINVAL);
	assert_int_equal(bounce_dsn_write(NULL, bounce_buf_write, &b, NULL),
	                 BOUNCE_DSN_EINVAL);
	assert_int_equal(b.len, 0);
	assert_string_equal(bounce_dsn_status_text(BOUNCE_DSN_EREAD),
	                    "reading the original message failed");
}

static int
failing_write(void *arg, const void *p, size_t len)
{
	size_t *left = arg;
	(void)p;
	if (len > *left)
		return -1;
	*left -= len;
	return 0;
}

static void
test_dsn_callback_errors(void **state)
{
	const char msg[] = "Subject: hi\r\nFrom: a@b\r\n\r\nbody\r\n";
	struct mem m = { msg, sizeof(msg) - 1, 0, 0, 20 };
	struct bounce_dsn d;
	struct bounce_dsn_rcpt r;
	struct bounce_buf b = { 0 };
	size_t left = 300;

	(void)state;
	base_dsn(&d, &r, &m);
	d.ret = BOUNCE_RET_FULL;
	assert_int_equal(bounce_dsn_write(&d, bounce_buf_write, &b, NULL),
	                 BOUNCE_DSN_EREAD);
	bounce_buf_release(&b);
	m.fail_after = 0;
	m.off = 0;
	assert_int_equal(bounce_dsn_write(&d, failing_write, &left, NULL),
	                 BOUNCE_DSN_EWRITE);
}

/* A big original with RET=HDRS: only the header is read and returned. */
static void
test_dsn_streams_headers_only(void **state)
{
	size_t big = 8 * 1024 * 1024;
	char *msg = malloc(big);
	struct mem m = { msg, big, 0, 0, 0 };
	struct bounce_dsn d;
	struct bounce_dsn_rcpt r;
	struct bounce_buf b = { 0 };
	struct bounce_dsn_info info;
	const char hdr[] = "Subject: big\nFrom: a@b\n\n";

	(void)state;
	memset(msg, 'x', big);
	for (size_t i = 100; i < big; i += 100)
		msg[i] = '\n';
	memcpy(msg, hdr, sizeof(hdr) - 1);
	base_dsn(&d, &r, &m);
	d.ret = BOUNCE_RET_HDRS;
	assert_int_equal(bounce_dsn_write(&d, bounce_buf_write, &b, &info),
	                 BOUNCE_DSN_OK);
	assert_int_equal(info.returned, 1);
	assert_true(m.off < 64 * 1024); /* stopped at the blank line */
	assert_non_null(strstr(b.data, "text/rfc822-headers\r\n\r\n"
	                       "Subject: big\r\nFrom: a@b\r\n\r\n--"));
	assert_int_equal(info.size, b.len);
	bounce_buf_release(&b);

	/* RET=FULL over the limit: headers only, and the text says so */
	m.off = 0;
	d.ret = BOUNCE_RET_FULL;
	d.max_return = 1024 * 1024;
	assert_int_equal(bounce_dsn_write(&d, bounce_buf_write, &b, &info),
	                 BOUNCE_DSN_OK);
	assert_int_equal(info.returned, 1);
	assert_int_equal(info.truncated, 1);
	assert_non_null(strstr(b.data, "larger than 1048576 bytes"));
	assert_true(b.len < 64 * 1024);
	check_lines(&b, "big RET=FULL");
	bounce_buf_release(&b);

	/* RET=FULL within the limit: all of it, LF made CRLF */
	m.off = 0;
	d.max_return = 0 + big;
	assert_int_equal(bounce_dsn_write(&d, bounce_buf_write, &b, &info),
	                 BOUNCE_DSN_OK);
	assert_int_equal(info.returned, 2);
	assert_true(b.len > big);
	check_lines(&b, "full");
	bounce_buf_release(&b);
	free(msg);
}

static void
test_dsn_status_defaults(void **state)
{
	struct bounce_dsn d;
	struct bounce_dsn_rcpt r[4];
	struct bounce_buf b = { 0 };

	(void)state;
	base_dsn(&d, r, NULL);
	r[1] = r[0], r[2] = r[0], r[3] = r[0];
	r[0].enhanced = "5.1.1", r[0].code = 451;       /* class from the code */
	r[1].enhanced = NULL, r[1].code = 554;           /* from the code */
	r[2].enhanced = NULL, r[2].code = 0;             /* from the action */
	r[2].action = BOUNCE_ACTION_DELAYED;
	r[3].status = "5.4.7";                           /* given wins */
	d.rcpts = r;
	d.n_rcpts = 4;
	assert_int_equal(bounce_dsn_write(&d, bounce_buf_write, &b, NULL),
	                 BOUNCE_DSN_OK);
	assert_non_null(strstr(b.data, "Status: 4.1.1\r\n"));
	assert_non_null(strstr(b.data, "Status: 5.0.0\r\n"));
	assert_non_null(strstr(b.data, "Status: 4.0.0\r\n"));
	assert_non_null(strstr(b.data, "Status: 5.4.7\r\n"));
	assert_non_null(strstr(b.data, "Diagnostic-Code: X-mxbatch; no such user"));
	/* a failure among them: the failure subject */
	assert_non_null(strstr(b.data, "Subject: Undelivered Mail Returned"));
	bounce_buf_release(&b);
}

static void
random_bytes(char *p, size_t cap, unsigned *seed)
{
	size_t n = rand_r(seed) % cap;
	for (size_t i = 0; i < n; i++)
		p[i] = (char)(1 + rand_r(seed) % 255);
	p[n] = '\0';
}

/* Random bytes in every outside value: each DSN is still CRLF-only with
 * short lines, or refused as invalid. Fixed seed. */
static void
test_dsn_fuzz(void **state)
{
	unsigned seed = 777;
	char text[1500], addr[300], mta[100], orcpt[300], envid[120], snd[200];
	struct bounce_dsn d;
	struct bounce_dsn_rcpt r;

	(void)state;
	for (int i = 0; i < 3000; i++) {
		struct bounce_buf b = { 0 };
		enum bounce_dsn_status st;
		base_dsn(&d, &r, NULL);
		random_bytes(text, sizeof(text), &seed);
		random_bytes(addr, sizeof(addr), &seed);
		random_bytes(mta, sizeof(mta), &seed);
		random_bytes(orcpt, sizeof(orcpt), &seed);
		random_bytes(envid, sizeof(envid), &seed);
		random_bytes(snd, sizeof(snd), &seed);
		r.text = text, r.address = addr, r.remote_mta = mta;
		r.orcpt = orcpt, d.envid = envid, d.sender = snd;
		r.enhanced = i % 2 ? text : "5.1.1";
		r.status = i % 3 ? NULL : mta;
		r.code = (int)(rand_r(&seed) % 1100) - 50;
		r.action = (enum bounce_action)(rand_r(&seed) % 5);
		st = bounce_dsn_write(&d, bounce_buf_write, &b, NULL);
		assert_true(st == BOUNCE_DSN_OK || st == BOUNCE_DSN_EINVAL);
		if (st == BOUNCE_DSN_OK)
			check_lines(&b, "fuzz");
		bounce_buf_release(&b);
	}
}

int
test_bounce_dsn_main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dsn_golden),
		cmocka_unit_test(test_dsn_injection),
		cmocka_unit_test(test_dsn_long_text),
		cmocka_unit_test(test_dsn_bad_input),
		cmocka_unit_test(test_dsn_callback_errors),
		cmocka_unit_test(test_dsn_streams_headers_only),
		cmocka_unit_test(test_dsn_status_defaults),
		cmocka_unit_test(test_dsn_fuzz),
	};
	return cmocka_run_group_tests_name("bounce_dsn", tests, NULL, NULL);
}
