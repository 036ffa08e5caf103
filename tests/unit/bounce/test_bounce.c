/*
 * test_bounce.c - unit tests of src/bounce: the classifier against the
 * golden table data/replies.in -> data/replies.ref (shipped rules, from
 * the file and compiled in), rule syntax errors, DSN golden files
 * data/dsn_*.in -> data/dsn_*.ref, DSN safety properties, and the DSN,
 * delay-warning and suppression policies.
 *
 * BOUNCE_REGEN=1 rewrites the DSN .ref files (review the diff!); the
 * classifier's .ref is written by hand and never regenerated.
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
#include <unistd.h>

#include "bounce/bounce.h"
#include "dsnspec.h"

#ifndef BOUNCE_DATA_DIR
#error BOUNCE_DATA_DIR must name tests/unit/bounce/data
#endif
#ifndef BOUNCE_RULES_FILE
#error BOUNCE_RULES_FILE must name contrib/bounce-rules.conf
#endif

/* ---------------- classifier golden table ---------------- */

static char *
next_field(char **pp)
{
	char *p = *pp, *w;

	while (*p == ' ')
		p++;
	w = p;
	while (*p && *p != ' ')
		p++;
	if (*p)
		*p++ = '\0';
	*pp = p;
	return w;
}

/* parse_case - "phase code enhanced mx text..." into a reply */
static int
parse_case(char *line, struct bounce_reply *r)
{
	char *p = line, *ph, *code, *enh, *mx;

	memset(r, 0, sizeof(*r));
	ph = next_field(&p);
	code = next_field(&p);
	enh = next_field(&p);
	mx = next_field(&p);
	while (*p == ' ')
		p++;
	if (bounce_phase_parse(ph, &r->phase) != 0 || *code == '\0')
		return -1;
	r->code = atoi(code);
	r->enhanced = strcmp(enh, "-") == 0 ? NULL : enh;
	r->mx_host = strcmp(mx, "-") == 0 ? NULL : mx;
	r->text = strcmp(p, "-") == 0 ? NULL : p;
	return 0;
}

static int
golden_replies(const struct bounce_rules *rules, const char *what)
{
	FILE *in = fopen(BOUNCE_DATA_DIR "/replies.in", "r");
	FILE *ref = fopen(BOUNCE_DATA_DIR "/replies.ref", "r");
	char line[4096], want[256], got[256], copy[4096];
	int n = 0, bad = 0;

	assert_non_null(in);
	assert_non_null(ref);
	while (fgets(line, sizeof(line), in)) {
		struct bounce_reply r;
		struct bounce_class c;
		line[strcspn(line, "\n")] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		n++;
		snprintf(copy, sizeof(copy), "%s", line);
		assert_int_equal(parse_case(line, &r), 0);
		c = bounce_classify(rules, &r);
		snprintf(got, sizeof(got), "%d %s %s %s", n,
		         bounce_category_name(c.cat), bounce_signal_name(c.sig),
		         c.permanent ? "perm" : "temp");
		if (fgets(want, sizeof(want), ref) == NULL)
			want[0] = '\0';
		want[strcspn(want, "\n")] = '\0';
		if (strcmp(want, got) != 0) {
			fprintf(stderr, "[%s] case %d: %s\n  expected: %s\n  got:      "
			        "%s (rule %s)\n", what, n, copy, want, got,
			        bounce_rules_origin(rules, c.rule));
			bad++;
		}
	}
	if (fgets(want, sizeof(want), ref) != NULL) {
		fprintf(stderr, "[%s] replies.ref has more lines than cases\n", what);
		bad++;
	}
	fclose(in);
	fclose(ref);
	fprintf(stderr, "[%s] %d cases, %d differences, %zu rules\n", what, n,
	        bad, bounce_rules_count(rules));
	assert_true(n >= 60);
	return bad;
}

static void
test_golden_file_rules(void **state)
{
	char err[512] = "";
	struct bounce_rules *r = bounce_rules_load(BOUNCE_RULES_FILE, err,
	                                           sizeof(err));
	(void)state;
	if (r == NULL)
		fprintf(stderr, "%s\n", err);
	assert_non_null(r);
	assert_int_equal(golden_replies(r, "file"), 0);
	bounce_rules_free(r);
}

static void
test_golden_builtin_rules(void **state)
{
	char err[512] = "";
	struct bounce_rules *b = bounce_rules_builtin();
	struct bounce_rules *f = bounce_rules_load(BOUNCE_RULES_FILE, err,
	                                           sizeof(err));
	(void)state;
	assert_non_null(f);
	/* the compiled-in copy is the shipped file, rule for rule */
	assert_int_equal(bounce_rules_count(b), bounce_rules_count(f));
	assert_true(bounce_rules_count(b) >= 50);
	assert_string_equal(bounce_rules_origin(b, 0) + strlen("builtin"),
	                    strrchr(bounce_rules_origin(f, 0), ':'));
	assert_int_equal(golden_replies(b, "builtin"), 0);
	bounce_rules_free(b);
	bounce_rules_free(f);
}

/* ---------------- rule syntax ---------------- */

static void
expect_bad_line(const char *line, const char *needle)
{
	struct bounce_rules *r = bounce_rules_new();
	char err[512] = "";

	assert_int_equal(bounce_rules_add_line(r, line, "t.conf", 7, err,
	                                       sizeof(err)), -1);
	if (strstr(err, needle) == NULL || strncmp(err, "t.conf:7: ", 10) != 0)
		fail_msg("line '%s': error '%s' lacks '%s'", line, err, needle);
	assert_int_equal(bounce_rules_count(r), 0);
	bounce_rules_free(r);
}

static void
test_rule_syntax_errors(void **state)
{
	(void)state;
	expect_bad_line("bad-mailboxx none status=5.1.1", "unknown category");
	expect_bad_line("bad-mailbox", "missing signal");
	expect_bad_line("bad-mailbox loud status=5.1.1", "unknown signal");
	expect_bad_line("bad-mailbox none status=5.1", "status=5.1");
	expect_bad_line("bad-mailbox none status=3.1.1", "class 2, 4 or 5");
	expect_bad_line("bad-mailbox none status=5.1.1x", "status=");
	expect_bad_line("bad-mailbox none code=55", "code=55");
	expect_bad_line("bad-mailbox none code=x50", "code=x50");
	expect_bad_line("bad-mailbox none phase=rcpt,later", "phase=later");
	expect_bad_line("bad-mailbox none text=(unclosed", "text=(unclosed");
	expect_bad_line("bad-mailbox none mx=[", "mx=[");
	expect_bad_line("bad-mailbox none text=", "needs a regular expression");
	expect_bad_line("bad-mailbox none colour=red", "unknown condition");
	expect_bad_line("bad-mailbox none 5.1.1", "expected key=value");
}

static void
test_rule_file_errors(void **state)
{
	char path[] = "/tmp/test_bounce_rulesXXXXXX", err[512] = "";
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	struct bounce_rules *r;

	(void)state;
	fputs("# ok\nbad-mailbox none status=5.1.1\n\nthrottled nope\n", f);
	fclose(f);
	assert_null(bounce_rules_load(path, err, sizeof(err)));
	assert_non_null(strstr(err, ":4: unknown signal 'nope'"));
	assert_non_null(strstr(err, path));
	r = bounce_rules_new();
	assert_int_equal(bounce_rules_add_file(r, path, err, sizeof(err)), -1);
	assert_int_equal(bounce_rules_count(r), 0); /* all or nothing */
	bounce_rules_free(r);
	unlink(path);
	assert_null(bounce_rules_load("/nonexistent/rules.conf", err,
	                              sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/rules.conf: "));
}

/* Operator rules go before the shipped ones and win. */
static void
test_rule_override_and_match(void **state)
{
	struct bounce_rules *r = bounce_rules_new();
	char err[256];
	struct bounce_reply rp = { BOUNCE_PHASE_RCPT, 550, "5.1.1",
	                           "our special  wordin", "mx1.example.com" };
	struct bounce_class c;

	(void)state;
	assert_int_equal(bounce_rules_add_line(r, "  other reputation "
	    "mx=^mx[0-9]\\.example\\.com$ code=5x0 status=5.*.1 phase=rcpt,mail "
	    "text=special  wording? \r\n", NULL, 1, err, sizeof(err)), 0);
	bounce_rules_add_builtin(r);
	c = bounce_classify(r, &rp);
	assert_int_equal(c.cat, BOUNCE_CAT_OTHER);
	assert_int_equal(c.sig, BOUNCE_SIG_REPUTATION);
	assert_int_equal(c.rule, 0);
	assert_true(c.permanent);
	rp.mx_host = "mx1.example.org"; /* mx condition fails: shipped rules */
	c = bounce_classify(r, &rp);
	assert_int_equal(c.cat, BOUNCE_CAT_BAD_MAILBOX);
	assert_true(c.rule > 0);
	bounce_rules_free(r);
	/* no rules, NULL reply: "other" */
	c = bounce_classify(NULL, NULL);
	assert_int_equal(c.cat, BOUNCE_CAT_OTHER);
	assert_int_equal(c.rule, -1);
}

static void
test_names(void **state)
{
	enum bounce_category c;
	enum bounce_signal s;
	enum bounce_phase p;

	(void)state;
	for (int i = 0; i < BOUNCE_CAT_COUNT; i++) {
		assert_int_equal(bounce_category_parse(
		    bounce_category_name((enum bounce_category)i), &c), 0);
		assert_int_equal((int)c, i);
	}
	assert_string_equal(bounce_category_name(BOUNCE_CAT_THROTTLED),
	                    "throttled");
	assert_string_equal(bounce_category_name((enum bounce_category)99),
	                    "other");
	assert_int_equal(bounce_signal_parse("-", &s), 0);
	assert_int_equal(s, BOUNCE_SIG_NONE);
	assert_int_equal(bounce_signal_parse("Reputation", &s), 0);
	assert_int_equal(s, BOUNCE_SIG_REPUTATION);
	assert_int_equal(bounce_phase_parse("EOM", &p), 0);
	assert_int_equal(p, BOUNCE_PHASE_EOM);
	assert_int_equal(bounce_phase_parse("", &p), -1);
	assert_int_equal(bounce_category_parse("spam", &c), -1);
}

/* Random bytes as rule lines and as replies: a clean 0/-1, never a
 * crash (run under ASan/UBSan by tests/run.sh). Fixed seed. */
static void
test_fuzz_rules_and_replies(void **state)
{
	static const char *const pieces[] = {
		"bad-mailbox ", "throttled ", "none ", "reputation ", "status=",
		"code=", "phase=", "mx=", "text=", "5.1.1 ", "*.*.* ", "5xx ",
		"rcpt,eom ", "(", ")", "[", "\\", "*", "|", "=", " ", "\t",
		"\xff", "\x01", "#", "any", "x",
	};
	struct bounce_rules *b = bounce_rules_builtin();
	struct bounce_rules *r = bounce_rules_new();
	unsigned seed = 12345;
	char line[512], err[256];
	int ok = 0;

	(void)state;
	for (int i = 0; i < 20000; i++) {
		size_t len = 0;
		int n = (int)(rand_r(&seed) % 12);
		line[0] = '\0';
		for (int k = 0; k < n; k++) {
			const char *p = pieces[rand_r(&seed) % (sizeof(pieces) /
			                                       sizeof(pieces[0]))];
			if (len + strlen(p) + 1 < sizeof(line)) {
				memcpy(line + len, p, strlen(p) + 1);
				len += strlen(p);
			}
		}
		ok += bounce_rules_add_line(r, line, "fuzz", (unsigned)i, err,
		                            sizeof(err)) == 0;
	}
	assert_true(ok > 0);
	for (int i = 0; i < 20000; i++) {
		char text[200], enh[12], mx[16];
		struct bounce_reply rp;
		for (size_t k = 0; k < sizeof(text) - 1; k++)
			text[k] = (char)(1 + rand_r(&seed) % 255);
		text[rand_r(&seed) % sizeof(text)] = '\0';
		text[sizeof(text) - 1] = '\0';
		snprintf(enh, sizeof(enh), "%u.%u.%u", rand_r(&seed) % 7,
		         rand_r(&seed) % 12, rand_r(&seed) % 1200);
		snprintf(mx, sizeof(mx), "mx%u.x", rand_r(&seed) % 10);
		rp.phase = (enum bounce_phase)(rand_r(&seed) % 14);
		rp.code = (int)(rand_r(&seed) % 1200) - 100;
		rp.enhanced = rand_r(&seed) % 3 ? enh : NULL;
		rp.text = rand_r(&seed) % 5 ? text : NULL;
		rp.mx_host = rand_r(&seed) % 2 ? mx : NULL;
		struct bounce_class c1 = bounce_classify(b, &rp);
		struct bounce_class c2 = bounce_classify(r, &rp);
		assert_true((unsigned)c1.cat < BOUNCE_CAT_COUNT);
		assert_true((unsigned)c2.sig < BOUNCE_SIG_COUNT);
	}
	bounce_rules_free(b);
	bounce_rules_free(r);
}

int test_bounce_dsn_main(void);
int test_bounce_policy_main(void);

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden_file_rules),
		cmocka_unit_test(test_golden_builtin_rules),
		cmocka_unit_test(test_rule_syntax_errors),
		cmocka_unit_test(test_rule_file_errors),
		cmocka_unit_test(test_rule_override_and_match),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_fuzz_rules_and_replies),
	};
	int rc = cmocka_run_group_tests_name("bounce_classify", tests, NULL,
	                                     NULL);
	rc |= test_bounce_dsn_main();
	rc |= test_bounce_policy_main();
	return rc;
}
