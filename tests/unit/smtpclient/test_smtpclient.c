/*
 * test_smtpclient.c - unit tests of the SMTP client's pure parts: reply
 * parsing (multi-line, hostile input), enhanced codes, text sanitizing,
 * EHLO capabilities, the DATA/BDAT body encoder and destination safety.
 * The session itself is tested against the test MX sink
 * (tests/integration/test_smtpclient.py).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "smtpclient/smtpc_internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* feed - feed NUL-separated lines; returns the last result */
static enum smtpc_reply_rv
feed(struct smtpc_reply *r, const char *const *lines, size_t n)
{
	enum smtpc_reply_rv rv = SMTPC_REPLY_BAD;

	smtpc_reply_reset(r);
	for (size_t i = 0; i < n; i++) {
		rv = smtpc_reply_feed(r, lines[i], strlen(lines[i]), NULL, NULL);
		if (rv != SMTPC_REPLY_MORE)
			return rv;
	}
	return rv;
}

static void
test_reply_single(void **state)
{
	struct smtpc_reply r;
	const char *l[] = { "250 2.1.5 Ok, recipient accepted" };

	(void)state;
	assert_int_equal(feed(&r, l, 1), SMTPC_REPLY_DONE);
	assert_int_equal(r.code, 250);
	assert_string_equal(r.enhanced, "2.1.5");
	assert_string_equal(r.text, "Ok, recipient accepted");
}

static void
test_reply_multiline(void **state)
{
	struct smtpc_reply r;
	const char *l[] = { "550-5.1.1 The email account that you tried",
	                    "550-5.1.1 to reach does not exist.",
	                    "550 5.1.1 Please check." };
	const char *bare[] = { "250" };
	const char *tail[] = { "250-first", "250" };

	(void)state;
	assert_int_equal(feed(&r, l, 3), SMTPC_REPLY_DONE);
	assert_int_equal(r.code, 550);
	assert_int_equal(r.nlines, 3);
	assert_string_equal(r.enhanced, "5.1.1");
	assert_string_equal(r.text, "The email account that you tried to reach "
	                    "does not exist. Please check.");
	assert_int_equal(feed(&r, bare, 1), SMTPC_REPLY_DONE);
	assert_int_equal(r.code, 250);
	assert_string_equal(r.text, "");
	assert_int_equal(feed(&r, tail, 2), SMTPC_REPLY_DONE);
	assert_string_equal(r.text, "first");
}

static void
test_reply_invalid(void **state)
{
	struct smtpc_reply r;
	const char *bad[] = { "25", "999 x", "099 x", "2500 ok", "abc", "",
	                      "250x", "160 x", "270 x", " 250 ok" };
	const char *change[] = { "250-a", "550 b" };

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(feed(&r, &bad[i], 1), SMTPC_REPLY_BAD);
		assert_non_null(r.error);
	}
	assert_int_equal(feed(&r, change, 2), SMTPC_REPLY_BAD);
	assert_string_equal(r.error,
	                    "reply code changed inside a multi-line reply");
}

static void
test_reply_endless(void **state)
{
	struct smtpc_reply r;
	enum smtpc_reply_rv rv = SMTPC_REPLY_MORE;
	int n = 0;

	(void)state;
	smtpc_reply_reset(&r);
	while (rv == SMTPC_REPLY_MORE && n < 100000) {
		rv = smtpc_reply_feed(&r, "250-x", 5, NULL, NULL);
		n++;
	}
	assert_int_equal(rv, SMTPC_REPLY_BAD);
	assert_true(n <= SMTPC_REPLY_MAX_LINES + 1);
	/* long lines hit the byte bound before the line bound */
	char line[SMTPC_LINE_MAX];
	memset(line, 'a', sizeof(line));
	memcpy(line, "250-", 4);
	smtpc_reply_reset(&r);
	rv = SMTPC_REPLY_MORE;
	for (n = 0; rv == SMTPC_REPLY_MORE && n < 1000; n++)
		rv = smtpc_reply_feed(&r, line, sizeof(line) - 2, NULL, NULL);
	assert_int_equal(rv, SMTPC_REPLY_BAD);
	assert_true(n * (int)sizeof(line) <= SMTPC_REPLY_MAX_BYTES + 2 * (int)sizeof(line));
	assert_true(r.textlen < SMTPC_TEXT_MAX);
}

static void
test_reply_text_sanitized(void **state)
{
	struct smtpc_reply r;
	const char *l[] = { "451 4.3.0 bad\x1b[31m\x01 text\r\xc3\xa9\tend" };

	(void)state;
	assert_int_equal(feed(&r, l, 1), SMTPC_REPLY_DONE);
	assert_string_equal(r.text, "bad?[31m? text??? end");
	for (size_t i = 0; r.text[i]; i++)
		assert_true(r.text[i] >= 0x20 && r.text[i] < 0x7f);
}

/* test_reply_random - random lines (mostly valid prefixes) never break
 * the parser's bounds; kept text stays printable and bounded */
static void
test_reply_random(void **state)
{
	struct smtpc_reply r;
	struct smtpc_caps caps;
	char line[SMTPC_LINE_MAX];
	unsigned seed = 4242;
	const char *text;
	size_t tlen;

	(void)state;
	smtpc_reply_reset(&r);
	memset(&caps, 0, sizeof(caps));
	for (int i = 0; i < 20000; i++) {
		seed = seed * 1103515245u + 12345u;
		size_t len = (seed >> 8) % sizeof(line);
		for (size_t j = 0; j < len; j++) {
			seed = seed * 1103515245u + 12345u;
			line[j] = (char)(seed >> 16);
		}
		if (len >= 4 && (seed & 3) != 0)   /* often a plausible prefix */
			memcpy(line, (seed & 4) ? "250-" : "250 ", 4);
		enum smtpc_reply_rv rv = smtpc_reply_feed(&r, line, len, &text, &tlen);
		if (rv != SMTPC_REPLY_BAD)
			smtpc_caps_parse_line(&caps, text, tlen);
		assert_true(r.textlen < SMTPC_TEXT_MAX);
		assert_int_equal(strlen(r.text), r.textlen);
		for (size_t j = 0; j < r.textlen; j++)
			assert_true(r.text[j] >= 0x20 && r.text[j] < 0x7f);
		if (rv != SMTPC_REPLY_MORE)
			smtpc_reply_reset(&r);
	}
}

static void
test_enhanced(void **state)
{
	char e[16];
	size_t n;

	(void)state;
	n = smtpc_enhanced_parse(452, "4.5.3 Too many", 14, e, sizeof(e));
	assert_int_equal(n, 6);
	assert_string_equal(e, "4.5.3");
	n = smtpc_enhanced_parse(250, "2.0.0", 5, e, sizeof(e));
	assert_int_equal(n, 5);
	assert_string_equal(e, "2.0.0");
	/* class disagrees with the basic code: skipped but not kept */
	n = smtpc_enhanced_parse(550, "2.0.0 no", 8, e, sizeof(e));
	assert_int_equal(n, 6);
	assert_string_equal(e, "");
	smtpc_enhanced_parse(451, "5.1.1 x", 7, e, sizeof(e));
	assert_string_equal(e, "");
	/* not enhanced codes */
	assert_int_equal(smtpc_enhanced_parse(250, "9.9.9 ok", 8, e, sizeof(e)), 0);
	assert_int_equal(smtpc_enhanced_parse(250, "2.0 ok", 6, e, sizeof(e)), 0);
	assert_int_equal(smtpc_enhanced_parse(250, "2.0.0ok", 7, e, sizeof(e)), 0);
	assert_int_equal(smtpc_enhanced_parse(250, "2.1234.0 x", 10, e, sizeof(e)), 0);
	assert_int_equal(smtpc_enhanced_parse(250, "Ok", 2, e, sizeof(e)), 0);
	assert_string_equal(e, "");
	/* in a reply: 250 9.9.9 keeps the text, no enhanced code */
	struct smtpc_reply r;
	const char *l[] = { "250 9.9.9 ok" };
	feed(&r, l, 1);
	assert_string_equal(r.enhanced, "");
	assert_string_equal(r.text, "9.9.9 ok");
}

static void
test_text_truncate(void **state)
{
	char big[2000], dst[SMTPC_TEXT_MAX];
	size_t n = 0;

	(void)state;
	memset(big, 'x', sizeof(big));
	smtpc_text_append(dst, sizeof(dst), &n, big, sizeof(big));
	assert_int_equal(n, sizeof(dst) - 1);
	assert_int_equal(strlen(dst), sizeof(dst) - 1);
	assert_memory_equal(dst + n - 3, "...", 3);
	/* appending to a full buffer changes nothing */
	smtpc_text_append(dst, sizeof(dst), &n, "abc", 3);
	assert_int_equal(n, sizeof(dst) - 1);
}

static void
test_caps(void **state)
{
	struct smtpc_caps c;
	const char *lines[] = { "PIPELINING", "SIZE 10240000", "8BITMIME",
	                        "chunking", "DSN", "SMTPUTF8", "STARTTLS",
	                        "ENHANCEDSTATUSCODES", "AUTH PLAIN LOGIN",
	                        "PIPELININGX" };

	(void)state;
	memset(&c, 0, sizeof(c));
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		smtpc_caps_parse_line(&c, lines[i], strlen(lines[i]));
	assert_true(c.pipelining && c.chunking && c.dsn && c.smtputf8 &&
	            c.eightbitmime && c.starttls);
	assert_int_equal(c.size, 10240000);
	memset(&c, 0, sizeof(c));
	smtpc_caps_parse_line(&c, "SIZE", 4);
	assert_int_equal(c.size, 0);
	smtpc_caps_parse_line(&c, "SIZE 12x", 8);
	assert_int_equal(c.size, 0);
	smtpc_caps_parse_line(&c, "PIPELININGX", 11);
	assert_false(c.pipelining);
	smtpc_caps_parse_line(&c, "SIZE 99999999999999999999999", 28);
	assert_int_equal(c.size, 0);
}

/* encode - the whole input through the encoder in chunks of step */
static char *
encode(const char *in, size_t step, int dotstuff)
{
	size_t len = strlen(in), o = 0;
	char *out = malloc(2 * len + 16);
	struct smtpc_dot d;

	smtpc_dot_init(&d, dotstuff);
	for (size_t i = 0; i < len; i += step) {
		size_t n = len - i < step ? len - i : step;
		o += smtpc_dot_encode(&d, in + i, n, out + o);
	}
	o += smtpc_dot_finish(&d, out + o);
	out[o] = '\0';
	return out;
}

static void
check_encode(const char *in, int dotstuff, const char *want)
{
	for (size_t step = 1; step <= strlen(in) + 1; step++) {
		char *got = encode(in, step, dotstuff);
		assert_string_equal(got, want);
		free(got);
	}
}

static void
test_dot_stuffing(void **state)
{
	(void)state;
	check_encode("", 1, ".\r\n");
	check_encode("a\r\nb\r\n", 1, "a\r\nb\r\n.\r\n");
	check_encode("a\r\nb", 1, "a\r\nb\r\n.\r\n");
	check_encode(".\r\n", 1, "..\r\n.\r\n");
	check_encode("x\r\n.\r\n..y\r\n", 1, "x\r\n..\r\n...y\r\n.\r\n");
	check_encode(".start", 1, "..start\r\n.\r\n");
	check_encode("a.b\r\n", 1, "a.b\r\n.\r\n");
	/* bare LF and bare CR become CRLF, also before a dot */
	check_encode("a\nb\n", 1, "a\r\nb\r\n.\r\n");
	check_encode("a\rb\r", 1, "a\r\nb\r\n.\r\n");
	check_encode("a\r\r\nb", 1, "a\r\n\r\nb\r\n.\r\n");
	check_encode("a\n.\n", 1, "a\r\n..\r\n.\r\n");
	check_encode("a\r.\r", 1, "a\r\n..\r\n.\r\n");
	check_encode("\n\n", 1, "\r\n\r\n.\r\n");
	/* BDAT: the same line ends, no dots */
	check_encode(".x\nb", 0, ".x\r\nb\r\n");
	check_encode("", 0, "");
	check_encode("a\r\n", 0, "a\r\n");
}

static void
test_dot_no_bare(void **state)
{
	char in[4096];
	unsigned seed = 12345;

	(void)state;
	for (int round = 0; round < 50; round++) {
		for (size_t i = 0; i < sizeof(in) - 1; i++) {
			seed = seed * 1103515245u + 12345u;
			const char set[] = "\r\n.a";
			in[i] = set[(seed >> 16) % 4];
		}
		in[sizeof(in) - 1] = '\0';
		char *out = encode(in, 1 + round * 37, 1);
		size_t n = strlen(out);
		for (size_t i = 0; i < n; i++) {
			if (out[i] == '\r')
				assert_true(i + 1 < n && out[i + 1] == '\n');
			if (out[i] == '\n')
				assert_true(i > 0 && out[i - 1] == '\r');
		}
		/* only the terminator is a lone dot line */
		assert_non_null(strstr(out, "\r\n.\r\n"));
		assert_ptr_equal(strstr(out, "\r\n.\r\n"), out + n - 5);
		free(out);
	}
}

static void
test_long_lines_folded(void **state)
{
	char in[5000], want[5100];
	char *got;

	(void)state;
	/* exactly 998 octets: untouched */
	memset(in, 'a', 998);
	strcpy(in + 998, "\r\n");
	memcpy(want, in, 1000);
	strcpy(want + 1000, ".\r\n");
	got = encode(in, 4096, 1);
	assert_string_equal(got, want);
	free(got);
	/* 999: broken with CRLF SPACE before the last octet */
	memset(in, 'a', 999);
	strcpy(in + 999, "\r\n");
	memset(want, 'a', 998);
	strcpy(want + 998, "\r\n a\r\n.\r\n");
	for (size_t step = 1; step < 1200; step += 97) {
		got = encode(in, step, 1);
		assert_string_equal(got, want);
		free(got);
	}
	/* a dot-stuffed line counts its extra dot; no wire line > 998 */
	in[0] = '.';
	memset(in + 1, 'b', 4000);
	in[4001] = '\0';
	got = encode(in, 1000, 1);
	size_t col = 0, n = strlen(got);
	for (size_t i = 0; i < n; i++) {
		if (got[i] == '\r') {
			assert_true(col <= 998);
			col = 0;
			i++;
			continue;
		}
		col++;
	}
	assert_memory_equal(got, "..", 2);
	assert_int_equal(got[998], '\r');
	assert_int_equal(got[1000], ' ');
	free(got);
}

/* sa - parse a numeric address into storage */
static struct sockaddr *
sa(const char *s, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, s, &((struct sockaddr_in *)ss)->sin_addr) == 1)
		ss->ss_family = AF_INET;
	else {
		assert_int_equal(inet_pton(AF_INET6, s,
		                 &((struct sockaddr_in6 *)ss)->sin6_addr), 1);
		ss->ss_family = AF_INET6;
	}
	return (struct sockaddr *)ss;
}

static void
test_addr_classify(void **state)
{
	struct sockaddr_storage ss;
	struct { const char *a; enum smtpc_addr_class c; } t[] = {
		{ "8.8.8.8", SMTPC_ADDR_PUBLIC },
		{ "127.0.0.1", SMTPC_ADDR_LOOPBACK },
		{ "127.0.1.5", SMTPC_ADDR_LOOPBACK },
		{ "10.1.2.3", SMTPC_ADDR_PRIVATE },
		{ "172.16.0.1", SMTPC_ADDR_PRIVATE },
		{ "172.31.255.1", SMTPC_ADDR_PRIVATE },
		{ "172.32.0.1", SMTPC_ADDR_PUBLIC },
		{ "192.168.1.1", SMTPC_ADDR_PRIVATE },
		{ "100.64.0.1", SMTPC_ADDR_PRIVATE },
		{ "169.254.1.1", SMTPC_ADDR_LINK_LOCAL },
		{ "0.0.0.0", SMTPC_ADDR_UNSPECIFIED },
		{ "224.0.0.1", SMTPC_ADDR_OTHER_RESERVED },
		{ "255.255.255.255", SMTPC_ADDR_OTHER_RESERVED },
		{ "2001:4860:4860::8888", SMTPC_ADDR_PUBLIC },
		{ "::1", SMTPC_ADDR_LOOPBACK },
		{ "::", SMTPC_ADDR_UNSPECIFIED },
		{ "fe80::1", SMTPC_ADDR_LINK_LOCAL },
		{ "fd00::1", SMTPC_ADDR_PRIVATE },
		{ "fc00::1", SMTPC_ADDR_PRIVATE },
		{ "ff02::1", SMTPC_ADDR_OTHER_RESERVED },
		{ "::ffff:127.0.0.1", SMTPC_ADDR_LOOPBACK },
		{ "::ffff:10.0.0.1", SMTPC_ADDR_PRIVATE },
		{ "::ffff:8.8.8.8", SMTPC_ADDR_PUBLIC },
		{ "64:ff9b::192.168.0.1", SMTPC_ADDR_PRIVATE },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		enum smtpc_addr_class got = smtpc_addr_classify(sa(t[i].a, &ss));
		if (got != t[i].c)
			fail_msg("%s: got %s want %s", t[i].a,
			         smtpc_addr_class_name(got),
			         smtpc_addr_class_name(t[i].c));
	}
}

static void
test_netlist(void **state)
{
	struct smtpc_netlist *nl = NULL;
	struct sockaddr_storage ss;
	char err[128];

	(void)state;
	assert_int_equal(smtpc_netlist_parse("no", &nl, err, sizeof(err)), 0);
	assert_null(nl);
	assert_false(smtpc_dest_allowed(nl, sa("127.0.1.1", &ss)));
	assert_true(smtpc_dest_allowed(nl, sa("8.8.8.8", &ss)));
	assert_int_equal(smtpc_netlist_parse("yes", &nl, err, sizeof(err)), 0);
	assert_true(smtpc_dest_allowed(nl, sa("10.0.0.1", &ss)));
	assert_true(smtpc_dest_allowed(nl, sa("::1", &ss)));
	smtpc_netlist_free(nl);
	assert_int_equal(smtpc_netlist_parse(" 127.0.1.0/24 , fd00::/8,10.1.2.3",
	                                     &nl, err, sizeof(err)), 0);
	assert_true(smtpc_dest_allowed(nl, sa("127.0.1.77", &ss)));
	assert_false(smtpc_dest_allowed(nl, sa("127.0.2.1", &ss)));
	assert_true(smtpc_dest_allowed(nl, sa("::ffff:127.0.1.3", &ss)));
	assert_true(smtpc_dest_allowed(nl, sa("fd12::5", &ss)));
	assert_false(smtpc_dest_allowed(nl, sa("fe80::1", &ss)));
	assert_true(smtpc_dest_allowed(nl, sa("10.1.2.3", &ss)));
	assert_false(smtpc_dest_allowed(nl, sa("10.1.2.4", &ss)));
	smtpc_netlist_free(nl);
	assert_int_equal(smtpc_netlist_parse("127.0.0.0/33", &nl, err,
	                                     sizeof(err)), -1);
	assert_non_null(strstr(err, "127.0.0.0/33"));
	assert_int_equal(smtpc_netlist_parse("10.0.0.0/8,bogus", &nl, err,
	                                     sizeof(err)), -1);
	assert_int_equal(smtpc_netlist_parse("::/", &nl, err, sizeof(err)), -1);
	assert_int_equal(smtpc_netlist_parse("1.2.3.4/x", &nl, err, sizeof(err)), -1);
	assert_null(nl);
	assert_int_equal(smtpc_netlist_parse("0.0.0.0/0", &nl, err, sizeof(err)), 0);
	assert_true(smtpc_dest_allowed(nl, sa("192.168.9.9", &ss)));
	assert_false(smtpc_dest_allowed(nl, sa("fd00::1", &ss)));
	smtpc_netlist_free(nl);
}

static void
test_addr_valid(void **state)
{
	(void)state;
	assert_true(smtpc_addr_valid("user@example.com", 0));
	assert_true(smtpc_addr_valid("", 0));
	assert_true(smtpc_addr_valid("\"john doe\"@example.com", 0));
	assert_false(smtpc_addr_valid("a@b\r\nRCPT TO:<x@y>", 0));
	assert_false(smtpc_addr_valid("a@b> NOTIFY=NEVER", 0));
	assert_false(smtpc_addr_valid("a b@c", 0));
	assert_false(smtpc_addr_valid("j\xc3\xb6rg@example.com", 0));
	assert_true(smtpc_addr_valid("j\xc3\xb6rg@example.com", 1));
}

static void
test_names(void **state)
{
	enum smtpc_tls_policy p;

	(void)state;
	assert_int_equal(smtpc_tls_policy_parse("verify", &p), 0);
	assert_int_equal(p, SMTPC_TLS_VERIFY);
	assert_int_equal(smtpc_tls_policy_parse("bogus", &p), -1);
	assert_string_equal(smtpc_rcpt_status_name(SMTPC_RCPT_RETRY_NOW),
	                    "retry-now");
	assert_string_equal(smtpc_state_name(SMTPC_S_EOM), "EOM");
	assert_string_equal(smtpc_error_name(SMTPC_ERR_UNSAFE_DEST),
	                    "unsafe-destination");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reply_single),
		cmocka_unit_test(test_reply_multiline),
		cmocka_unit_test(test_reply_invalid),
		cmocka_unit_test(test_reply_endless),
		cmocka_unit_test(test_reply_text_sanitized),
		cmocka_unit_test(test_reply_random),
		cmocka_unit_test(test_enhanced),
		cmocka_unit_test(test_text_truncate),
		cmocka_unit_test(test_caps),
		cmocka_unit_test(test_dot_stuffing),
		cmocka_unit_test(test_dot_no_bare),
		cmocka_unit_test(test_long_lines_folded),
		cmocka_unit_test(test_addr_classify),
		cmocka_unit_test(test_netlist),
		cmocka_unit_test(test_addr_valid),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
