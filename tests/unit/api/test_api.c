/*
 * test_api.c - unit tests of the submission server's parsers (src/api):
 * command lines, RFC 5321 paths, MAIL/RCPT parameters with DSN, xtext,
 * BDAT arguments, base64 and SASL PLAIN, CIDR matching, accounts files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "api/smtpd_internal.h"

/* code_of - the 3-digit code + enhanced code prefix of a reply, "" if NULL */
static const char *
code_of(const char *reply)
{
	static char buf[16];

	if (reply == NULL)
		return "";
	snprintf(buf, sizeof(buf), "%.9s", reply);
	return buf;
}

static void
test_cmd_parse(void **state)
{
	const char *arg;

	(void)state;
	assert_int_equal(smtpd_cmd_parse("EHLO client.example", &arg), CMD_EHLO);
	assert_string_equal(arg, "client.example");
	assert_int_equal(smtpd_cmd_parse("mail FROM:<a@b>", &arg), CMD_MAIL);
	assert_string_equal(arg, "FROM:<a@b>");
	assert_int_equal(smtpd_cmd_parse("DATA", &arg), CMD_DATA);
	assert_string_equal(arg, "");
	assert_int_equal(smtpd_cmd_parse("StartTLS", &arg), CMD_STARTTLS);
	assert_int_equal(smtpd_cmd_parse("DATAX", &arg), CMD_UNKNOWN);
	assert_int_equal(smtpd_cmd_parse("MAILFROM:<a@b>", &arg), CMD_UNKNOWN);
	assert_int_equal(smtpd_cmd_parse("", &arg), CMD_UNKNOWN);
	assert_int_equal(smtpd_cmd_parse("GET / HTTP/1.0", &arg), CMD_UNKNOWN);
	assert_string_equal(smtpd_cmd_name(CMD_BDAT), "BDAT");
}

static void
test_line_check(void **state)
{
	(void)state;
	assert_null(smtpd_line_check("NOOP", 4));
	assert_string_equal(code_of(smtpd_line_check("NO\0OP", 5)), "500 5.5.2");
	assert_string_equal(code_of(smtpd_line_check("NO\rOP", 5)), "500 5.5.2");
	assert_string_equal(code_of(smtpd_line_check("NO\nOP", 5)), "500 5.5.2");
}

/* path - parse s with flags; return rc, out in buf */
static enum smtpd_path_rc
path(const char *s, int flags, char *buf, int *utf8)
{
	const char *p = s;

	return smtpd_path_parse(&p, flags, buf, utf8);
}

static void
test_path_ok(void **state)
{
	char out[SMTPD_PATH_MAX + 1];
	int u;

	(void)state;
	assert_int_equal(path("<User@Example.COM>", 0, out, &u), PATH_OK);
	assert_string_equal(out, "User@example.com"); /* local part kept, domain lowered */
	assert_int_equal(path("<\"john doe\"@example.com>", 0, out, &u), PATH_OK);
	assert_string_equal(out, "\"john doe\"@example.com");
	assert_int_equal(path("<\"a\\\"b>c\"@example.com>", 0, out, &u), PATH_OK);
	assert_string_equal(out, "\"a\\\"b>c\"@example.com");
	assert_int_equal(path("<@relay1.example,@relay2.example:bob@example.org>", 0, out, &u),
	                 PATH_OK);
	assert_string_equal(out, "bob@example.org");
	assert_int_equal(path("<a.b+tag@[192.0.2.1]>", 0, out, &u), PATH_OK);
	assert_string_equal(out, "a.b+tag@[192.0.2.1]");
	assert_int_equal(path("<x@[IPv6:2001:db8::1]>", 0, out, &u), PATH_OK);
	assert_int_equal(path("<>", PATH_NULL_OK, out, &u), PATH_OK);
	assert_string_equal(out, "");
	assert_int_equal(path("<!#$%&'*+-/=?^_`{|}~@x.y>", 0, out, &u), PATH_OK);
}

static void
test_path_bad(void **state)
{
	char out[SMTPD_PATH_MAX + 1], lp[80], longp[400];
	int u;

	(void)state;
	assert_int_equal(path("user@example.com", 0, out, &u), PATH_SYNTAX);
	assert_int_equal(path("<user@example.com", 0, out, &u), PATH_SYNTAX);
	assert_int_equal(path("<>", 0, out, &u), PATH_NULL);
	assert_int_equal(path("<user>", 0, out, &u), PATH_SYNTAX);
	assert_int_equal(path("<.user@example.com>", 0, out, &u), PATH_SYNTAX);
	assert_int_equal(path("<us..er@example.com>", 0, out, &u), PATH_SYNTAX);
	assert_int_equal(path("<user.@example.com>", 0, out, &u), PATH_SYNTAX);
	assert_int_equal(path("<us er@example.com>", 0, out, &u), PATH_SYNTAX);
	assert_int_equal(path("<user@-example.com>", 0, out, &u), PATH_SYNTAX);
	assert_int_equal(path("<user@example-.com>", 0, out, &u), PATH_SYNTAX);
	assert_int_equal(path("<user@exa_mple.com>", 0, out, &u), PATH_SYNTAX);
	assert_int_equal(path("<user@example..com>", 0, out, &u), PATH_SYNTAX);
	assert_int_equal(path("<user@>", 0, out, &u), PATH_SYNTAX);
	assert_int_equal(path("<user@[300.1.1.1]>", 0, out, &u), PATH_SYNTAX);
	assert_int_equal(path("<\"\"@example.com>", 0, out, &u), PATH_SYNTAX);
	assert_int_equal(path("<a@b@c.d>", 0, out, &u), PATH_SYNTAX);
	memset(lp, 'a', 65);
	lp[65] = '\0';
	snprintf(longp, sizeof(longp), "<%s@example.com>", lp);
	assert_int_equal(path(longp, 0, out, &u), PATH_TOO_LONG);
	memset(longp, 0, sizeof(longp));
	strcpy(longp, "<a@");
	memset(longp + 3, 'b', 300);
	strcat(longp, ".com>");
	assert_int_not_equal(path(longp, 0, out, &u), PATH_OK);
}

static void
test_path_utf8(void **state)
{
	char out[SMTPD_PATH_MAX + 1];
	int u;

	(void)state;
	/* IDN domain: A-label, needs SMTPUTF8 to be written in UTF-8 */
	assert_int_equal(path("<user@b\xc3\xbc" "cher.example>", 0, out, &u), PATH_NEED_UTF8);
	assert_int_equal(path("<user@B\xc3\xbc" "cher.example>", PATH_UTF8_OK, out, &u), PATH_OK);
	assert_string_equal(out, "user@xn--bcher-kva.example");
	assert_int_equal(u, 0);
	/* UTF-8 local part */
	assert_int_equal(path("<j\xc3\xb6rg@example.com>", 0, out, &u), PATH_NEED_UTF8);
	assert_int_equal(path("<j\xc3\xb6rg@example.com>", PATH_UTF8_OK, out, &u), PATH_OK);
	assert_int_equal(u, 1);
	/* invalid UTF-8 (overlong, lone continuation) */
	assert_int_not_equal(path("<j\xc0\xafrg@example.com>", PATH_UTF8_OK, out, &u), PATH_OK);
	assert_int_not_equal(path("<j\x80rg@example.com>", PATH_UTF8_OK, out, &u), PATH_OK);
	/* A-labels pass as they are */
	assert_int_equal(path("<u@XN--BCHER-KVA.example>", 0, out, &u), PATH_OK);
	assert_string_equal(out, "u@xn--bcher-kva.example");
	/* a U-label domain (177 bytes) whose A-labels (207) make the path too
	 * long: refused, never written past out (found by fuzz_smtpd_path) */
	{
		char in[512], lab[] = "xx\xc3\xaexx\xc3\xafxx\xc3\xb0xx\xc3\xb1.";
		size_t n;

		memset(in, 0, sizeof(in));
		in[0] = '<';
		memset(in + 1, 'a', 60);
		in[61] = '@';
		for (int i = 0; i < 10; i++)
			strcat(in, lab);
		strcat(in, "example>");
		n = strlen(in);
		assert_true(n < SMTPD_PATH_MAX); /* fits before normalising */
		assert_int_equal(path(in, PATH_UTF8_OK, out, &u), PATH_TOO_LONG);
		in[62] = '\0'; /* three such labels fit */
		for (int i = 0; i < 3; i++)
			strcat(in, lab);
		strcat(in, "example>");
		assert_int_equal(path(in, PATH_UTF8_OK, out, &u), PATH_OK);
		assert_non_null(strstr(out, "@xn--"));
	}
}

static void
test_xtext(void **state)
{
	char dec[64];

	(void)state;
	assert_int_equal(smtpd_xtext_decode("abc+2Bdef", 9, 0, dec, sizeof(dec)), 0);
	assert_string_equal(dec, "abc+def");
	assert_int_equal(smtpd_xtext_decode("a+3Db", 5, 0, dec, sizeof(dec)), 0);
	assert_string_equal(dec, "a=b");
	assert_int_equal(smtpd_xtext_decode("a+2b", 4, 0, dec, sizeof(dec)), -1); /* lowercase hex */
	assert_int_equal(smtpd_xtext_decode("a+2", 3, 0, dec, sizeof(dec)), -1);
	assert_int_equal(smtpd_xtext_decode("a=b", 3, 0, dec, sizeof(dec)), -1);
	assert_int_equal(smtpd_xtext_decode("a+0Db", 5, 0, dec, sizeof(dec)), -1); /* CR */
	assert_int_equal(smtpd_xtext_decode("a+0Ab", 5, 0, dec, sizeof(dec)), -1); /* LF */
	assert_int_equal(smtpd_xtext_decode("a+00b", 5, 0, dec, sizeof(dec)), -1); /* NUL */
	assert_int_equal(smtpd_xtext_decode("a b", 3, 0, dec, sizeof(dec)), -1);
	assert_int_equal(smtpd_xtext_decode("a+C3+B6", 7, 0, dec, sizeof(dec)), -1);
	assert_int_equal(smtpd_xtext_decode("a+C3+B6", 7, 1, dec, sizeof(dec)), 0);
}

static void
test_mail_params(void **state)
{
	struct smtpd_mail_args a;
	char from[SMTPD_PATH_MAX + 1];
	int u;

	(void)state;
	assert_null(smtpd_mail_parse("FROM:<a@b.c> SIZE=1000 BODY=8BITMIME RET=HDRS ENVID=QQ+2B1",
	                             1, from, &u, &a));
	assert_string_equal(from, "a@b.c");
	assert_int_equal(a.size, 1000);
	assert_int_equal(a.body_8bit, 1);
	assert_int_equal(a.ret, RET_HDRS);
	assert_string_equal(a.envid, "QQ+2B1"); /* kept as given */
	assert_null(smtpd_mail_parse("from: <> smtputf8", 1, from, &u, &a));
	assert_string_equal(from, "");
	assert_int_equal(a.smtputf8, 1);
	assert_null(smtpd_mail_parse("FROM:<j\xc3\xb6rg@b.c> SMTPUTF8", 1, from, &u, &a));
	assert_int_equal(u, 1);
	assert_string_equal(code_of(smtpd_mail_parse("FROM:<j\xc3\xb6rg@b.c>", 1, from, &u, &a)),
	                    "553 5.6.7");
	assert_string_equal(code_of(smtpd_mail_parse("TO:<a@b.c>", 1, from, &u, &a)), "501 5.5.4");
	assert_string_equal(code_of(smtpd_mail_parse("FROM:a@b.c", 1, from, &u, &a)), "501 5.5.4");
	assert_string_equal(code_of(smtpd_mail_parse("FROM:<a@b.c>x", 1, from, &u, &a)), "501 5.5.4");
	assert_string_equal(code_of(smtpd_mail_parse("FROM:<a@@b.c>", 1, from, &u, &a)), "553 5.1.7");
	assert_string_equal(code_of(smtpd_mail_parse("FROM:<a@b.c> SIZE=x", 1, from, &u, &a)), "501 5.5.4");
	assert_string_equal(code_of(smtpd_mail_parse("FROM:<a@b.c> SIZE=99999999999999999999999", 1,
	                                             from, &u, &a)), "501 5.5.4");
	assert_string_equal(code_of(smtpd_mail_parse("FROM:<a@b.c> BODY=BINARYMIME", 1, from, &u, &a)),
	                    "501 5.5.4");
	assert_string_equal(code_of(smtpd_mail_parse("FROM:<a@b.c> RET=ALL", 1, from, &u, &a)), "501 5.5.4");
	assert_string_equal(code_of(smtpd_mail_parse("FROM:<a@b.c> ENVID=a+0Db", 1, from, &u, &a)),
	                    "501 5.5.4");
	assert_string_equal(code_of(smtpd_mail_parse("FROM:<a@b.c> FOO=bar", 1, from, &u, &a)),
	                    "555 5.5.4");
	assert_string_equal(code_of(smtpd_mail_parse("FROM:<a@b.c> RET=FULL", 0, from, &u, &a)),
	                    "555 5.5.4"); /* DSN not offered (HELO) */
	assert_string_equal(code_of(smtpd_mail_parse("FROM:<a@b.c> SIZE=1 SIZE=2", 1, from, &u, &a)),
	                    "501 5.5.4");
	assert_null(smtpd_mail_parse("FROM:<a@b.c> AUTH=<>", 1, from, &u, &a));
}

static void
test_rcpt_params(void **state)
{
	struct smtpd_rcpt_args a;
	char to[SMTPD_PATH_MAX + 1];
	int u;

	(void)state;
	assert_null(smtpd_rcpt_parse("TO:<x@y.z> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x+40y.z",
	                             1, 0, to, &u, &a));
	assert_string_equal(to, "x@y.z");
	assert_int_equal(a.notify, NOTIFY_SUCCESS | NOTIFY_FAILURE);
	assert_string_equal(a.orcpt, "rfc822;x+40y.z");
	assert_null(smtpd_rcpt_parse("TO:<x@y.z> NOTIFY=never", 1, 0, to, &u, &a));
	assert_int_equal(a.notify, NOTIFY_NEVER);
	assert_string_equal(code_of(smtpd_rcpt_parse("TO:<x@y.z> NOTIFY=NEVER,DELAY", 1, 0, to, &u, &a)),
	                    "501 5.5.4");
	assert_string_equal(code_of(smtpd_rcpt_parse("TO:<x@y.z> NOTIFY=SUCCESS,", 1, 0, to, &u, &a)),
	                    "501 5.5.4");
	assert_string_equal(code_of(smtpd_rcpt_parse("TO:<x@y.z> NOTIFY=SOMETIMES", 1, 0, to, &u, &a)),
	                    "501 5.5.4");
	assert_string_equal(code_of(smtpd_rcpt_parse("TO:<x@y.z> ORCPT=x@y.z", 1, 0, to, &u, &a)),
	                    "501 5.5.4");
	assert_string_equal(code_of(smtpd_rcpt_parse("TO:<x@y.z> ORCPT=rfc822;a+0Ab", 1, 0, to, &u, &a)),
	                    "501 5.5.4");
	assert_string_equal(code_of(smtpd_rcpt_parse("TO:<x@y.z> ORCPT=;abc", 1, 0, to, &u, &a)),
	                    "501 5.5.4");
	assert_string_equal(code_of(smtpd_rcpt_parse("TO:<x@y.z> NOTIFY=NEVER", 0, 0, to, &u, &a)),
	                    "555 5.5.4");
	assert_string_equal(code_of(smtpd_rcpt_parse("TO:<>", 1, 0, to, &u, &a)), "553 5.1.3");
	assert_string_equal(code_of(smtpd_rcpt_parse("TO:<x@y..z>", 1, 0, to, &u, &a)), "553 5.1.3");
	assert_string_equal(code_of(smtpd_rcpt_parse("FROM:<x@y.z>", 1, 0, to, &u, &a)), "501 5.5.4");
	assert_null(smtpd_rcpt_parse("To: <x@Y.Z>", 1, 0, to, &u, &a));
	assert_string_equal(to, "x@y.z");
}

static void
test_bdat_parse(void **state)
{
	uint64_t n;
	int last;

	(void)state;
	assert_int_equal(smtpd_bdat_parse("100", &n, &last), 0);
	assert_int_equal(n, 100);
	assert_int_equal(last, 0);
	assert_int_equal(smtpd_bdat_parse("0 last", &n, &last), 0);
	assert_int_equal(n, 0);
	assert_int_equal(last, 1);
	assert_int_equal(smtpd_bdat_parse("", &n, &last), -1);
	assert_int_equal(smtpd_bdat_parse("-1", &n, &last), -1);
	assert_int_equal(smtpd_bdat_parse("10 LASTX", &n, &last), -1);
	assert_int_equal(smtpd_bdat_parse("10  LAST", &n, &last), -1);
	assert_int_equal(smtpd_bdat_parse("99999999999999999999999", &n, &last), -1);
}

static void
test_b64_plain(void **state)
{
	unsigned char buf[64];
	char user[32], pass[32];
	long n;

	(void)state;
	n = smtpd_b64_decode("AGFsaWNlAHNlY3JldA==", 20, buf, sizeof(buf));
	assert_int_equal(n, 13);
	assert_int_equal(smtpd_auth_plain(buf, (size_t)n, user, sizeof(user), pass, sizeof(pass)), 0);
	assert_string_equal(user, "alice");
	assert_string_equal(pass, "secret");
	/* authzid equal to authcid is fine, another identity is not */
	assert_int_equal(smtpd_auth_plain((const unsigned char *)"alice\0alice\0pw", 14, user,
	                                  sizeof(user), pass, sizeof(pass)), 0);
	assert_int_equal(smtpd_auth_plain((const unsigned char *)"bob\0alice\0pw", 12, user,
	                                  sizeof(user), pass, sizeof(pass)), -1);
	assert_int_equal(smtpd_auth_plain((const unsigned char *)"\0alice", 6, user,
	                                  sizeof(user), pass, sizeof(pass)), -1);
	assert_int_equal(smtpd_auth_plain((const unsigned char *)"\0\0pw", 4, user,
	                                  sizeof(user), pass, sizeof(pass)), -1);
	assert_int_equal(smtpd_b64_decode("YWJj", 4, buf, sizeof(buf)), 3);
	assert_int_equal(smtpd_b64_decode("YWJ", 3, buf, sizeof(buf)), -1);
	assert_int_equal(smtpd_b64_decode("Y=Jj", 4, buf, sizeof(buf)), -1);
	assert_int_equal(smtpd_b64_decode("YW=j", 4, buf, sizeof(buf)), -1);
	assert_int_equal(smtpd_b64_decode("YW Jj", 5, buf, sizeof(buf)), -1);
	assert_int_equal(smtpd_b64_decode("YWJjZA==YWJj", 12, buf, sizeof(buf)), -1);
}

static void
test_cidr(void **state)
{
	char err[128];
	struct smtpd_cidrs *c = smtpd_cidrs_parse("10.0.0.0/8, 192.0.2.7 2001:db8::/32", err, sizeof(err));
	struct sockaddr_in a4 = { .sin_family = AF_INET };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6 };

	(void)state;
	assert_non_null(c);
	inet_pton(AF_INET, "10.200.1.1", &a4.sin_addr);
	assert_true(smtpd_cidrs_match(c, (struct sockaddr *)&a4));
	inet_pton(AF_INET, "11.0.0.1", &a4.sin_addr);
	assert_false(smtpd_cidrs_match(c, (struct sockaddr *)&a4));
	inet_pton(AF_INET, "192.0.2.7", &a4.sin_addr);
	assert_true(smtpd_cidrs_match(c, (struct sockaddr *)&a4));
	inet_pton(AF_INET, "192.0.2.8", &a4.sin_addr);
	assert_false(smtpd_cidrs_match(c, (struct sockaddr *)&a4));
	inet_pton(AF_INET6, "2001:db8:ffff::1", &a6.sin6_addr);
	assert_true(smtpd_cidrs_match(c, (struct sockaddr *)&a6));
	inet_pton(AF_INET6, "2001:db9::1", &a6.sin6_addr);
	assert_false(smtpd_cidrs_match(c, (struct sockaddr *)&a6));
	inet_pton(AF_INET6, "::ffff:10.1.2.3", &a6.sin6_addr); /* mapped IPv4 */
	assert_true(smtpd_cidrs_match(c, (struct sockaddr *)&a6));
	smtpd_cidrs_free(c);
	c = smtpd_cidrs_parse("10.0.0.0/33", err, sizeof(err));
	assert_null(c);
	assert_non_null(strstr(err, "10.0.0.0/33"));
	assert_null(smtpd_cidrs_parse("example.com", err, sizeof(err)));
	c = smtpd_cidrs_parse("10.1.2.3/9", err, sizeof(err)); /* host bits ignored */
	inet_pton(AF_INET, "10.0.0.1", &a4.sin_addr);
	assert_true(smtpd_cidrs_match(c, (struct sockaddr *)&a4));
	smtpd_cidrs_free(c);
}

/* write_file - a temp file with text; returns its path (static buffer) */
static const char *
write_file(const char *text)
{
	static char path[64];
	FILE *fp;
	int fd;

	strcpy(path, "/tmp/mxb-test-accounts-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	fp = fdopen(fd, "w");
	fputs(text, fp);
	fclose(fp);
	return path;
}

static void
test_accounts(void **state)
{
	/* "secret" hashed with SHA-512 crypt, salt "saltsalt" */
	const char *hash = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5"
	                   "knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
	char text[1024], err[256];
	struct accounts *as, *as2;
	struct account *a;
	const char *p;

	(void)state;
	snprintf(text, sizeof(text), "# comment\n\nalice %s tenant=acme senders=example.com,"
	         "@example.org,bob@other.net messages_per_hour=2 recipients_per_hour=5 "
	         "recipients_per_message=3\ncarol %s senders=*\n", hash, hash);
	p = write_file(text);
	as = accounts_load(p, NULL, err, sizeof(err));
	assert_non_null(as);
	assert_int_equal(accounts_count(as), 2);
	assert_null(accounts_verify(as, "alice", "wrong"));
	assert_null(accounts_verify(as, "nobody", "secret"));
	a = accounts_verify(as, "alice", "secret");
	assert_non_null(a);
	assert_ptr_equal(accounts_verify(as, "alice", "secret"), a); /* cached */
	assert_string_equal(a->tenant, "acme");
	assert_int_equal(a->rcpts_per_msg, 3);
	assert_true(account_sender_ok(a, "x@example.com"));
	assert_true(account_sender_ok(a, "x@example.org"));
	assert_true(account_sender_ok(a, "Bob@Other.net"));
	assert_false(account_sender_ok(a, "eve@other.net"));
	assert_false(account_sender_ok(a, "x@sub.example.com"));
	assert_true(account_sender_ok(accounts_find(as, "carol"), "any@where.org"));
	assert_string_equal(accounts_find(as, "carol")->tenant, "carol");
	/* hourly budgets, kept over a reload */
	assert_true(account_msg_allowed(a, 1000));
	account_charge(a, 1000, 4);
	assert_true(account_rcpt_allowed(a, 1000, 0));
	assert_false(account_rcpt_allowed(a, 1000, 1));
	account_charge(a, 1000, 0);
	assert_false(account_msg_allowed(a, 2000));
	as2 = accounts_load(p, as, err, sizeof(err));
	assert_non_null(as2);
	assert_false(account_msg_allowed(accounts_find(as2, "alice"), 3000));
	assert_true(account_msg_allowed(accounts_find(as2, "alice"), 1000 + 3600000));
	accounts_free(as);
	accounts_free(as2);
	unlink(p);
	/* errors name file and line */
	p = write_file("alice $6$x$y\nbob nohash\n");
	assert_null(accounts_load(p, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, ":2:"));
	unlink(p);
	p = write_file("alice $6$x$y colour=blue\n");
	assert_null(accounts_load(p, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "unknown option"));
	unlink(p);
	assert_null(accounts_load("/nonexistent/accounts", NULL, err, sizeof(err)));
}

/* the replies the server sends, each to the reason /metrics counts */
static void
test_reject_reasons(void **state)
{
	static const struct { const char *reply, *reason; } t[] = {
		{ "535 5.7.8 Authentication credentials invalid", "auth_failed" },
		{ "454 4.7.0 Too many failed authentication attempts", "auth_unavailable" },
		{ "530 5.7.0 Authentication required", "auth_required" },
		{ "538 5.7.11 Encryption required for authentication", "tls_required" },
		{ "451 4.7.1 Hourly message limit (10) reached", "rate_limited" },
		{ "550 5.7.1 Relay access denied (authenticate first)", "relay_denied" },
		{ "553 5.7.1 Sender address <a@b> not allowed", "sender_denied" },
		{ "550 5.1.1 <x@y>: Recipient address suppressed", "suppressed" },
		{ "452 4.5.3 Too many recipients (at most 3 per message)", "too_many_recipients" },
		{ "552 5.3.4 Message size exceeds fixed limit", "size" },
		{ "554 5.6.0 Bare LF in message data refused", "bad_data" },
		{ "451 4.3.0 Temporary storage failure; try again later", "storage" },
		{ "452 4.3.1 Insufficient system storage", "storage" },
		{ "503 5.5.1 Need MAIL command first", "sequence" },
		{ "554 5.5.1 No valid recipients", "sequence" },
		{ "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]", "syntax" },
		{ "553 5.1.3 Recipient address syntax error", "syntax" },
		{ "500 5.5.2 Command unrecognized", "syntax" },
		{ "555 5.5.4 Unsupported MAIL parameter", "syntax" },
		{ "421 4.4.2 mx Error: timeout exceeded", "timeout" },
		{ "421 4.7.0 Too many errors, closing connection", "too_many_errors" },
		{ "421 4.3.2 Service shutting down", "shutdown" },
		{ "450 4.2.0 something new", "other" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		assert_string_equal(smtpd_reject_names[smtpd_reject_of(t[i].reply,
		                    strlen(t[i].reply))], t[i].reason);
	assert_string_equal(smtpd_reject_names[SMTPD_REJ_CONNECTIONS], "connections");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cmd_parse),
		cmocka_unit_test(test_line_check),
		cmocka_unit_test(test_path_ok),
		cmocka_unit_test(test_path_bad),
		cmocka_unit_test(test_path_utf8),
		cmocka_unit_test(test_xtext),
		cmocka_unit_test(test_mail_params),
		cmocka_unit_test(test_rcpt_params),
		cmocka_unit_test(test_bdat_parse),
		cmocka_unit_test(test_b64_plain),
		cmocka_unit_test(test_cidr),
		cmocka_unit_test(test_accounts),
		cmocka_unit_test(test_reject_reasons),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
