/*
 * test_bounce_policy.c - who gets a DSN (NOTIFY, null sender), when a
 * delay warning is due, and which bounces suppress an address.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "bounce/bounce.h"

#define H (3600ULL * 1000)

static void
test_should_dsn(void **state)
{
	const unsigned F = BOUNCE_NOTIFY_FAILURE, D = BOUNCE_NOTIFY_DELAY,
	               S = BOUNCE_NOTIFY_SUCCESS, N = BOUNCE_NOTIFY_NEVER;
	(void)state;
	/* never to the null sender, whatever NOTIFY says */
	assert_false(bounce_should_dsn("", F, BOUNCE_ACTION_FAILED, 1));
	assert_false(bounce_should_dsn(NULL, 0, BOUNCE_ACTION_FAILED, 1));
	assert_false(bounce_should_dsn("<>", 0, BOUNCE_ACTION_FAILED, 1));
	assert_false(bounce_should_dsn(" <> ", S, BOUNCE_ACTION_DELIVERED, 1));
	/* NOTIFY=NEVER */
	assert_false(bounce_should_dsn("a@b", N, BOUNCE_ACTION_FAILED, 1));
	assert_false(bounce_should_dsn("a@b", N, BOUNCE_ACTION_DELAYED, 1));
	/* no NOTIFY: failures yes, delays by policy, successes no */
	assert_true(bounce_should_dsn("a@b", 0, BOUNCE_ACTION_FAILED, 0));
	assert_true(bounce_should_dsn("a@b", 0, BOUNCE_ACTION_DELAYED, 1));
	assert_false(bounce_should_dsn("a@b", 0, BOUNCE_ACTION_DELAYED, 0));
	assert_false(bounce_should_dsn("a@b", 0, BOUNCE_ACTION_DELIVERED, 1));
	assert_false(bounce_should_dsn("a@b", 0, BOUNCE_ACTION_RELAYED, 1));
	/* NOTIFY given: only what it names */
	assert_false(bounce_should_dsn("a@b", S, BOUNCE_ACTION_FAILED, 1));
	assert_false(bounce_should_dsn("a@b", D, BOUNCE_ACTION_FAILED, 1));
	assert_true(bounce_should_dsn("a@b", F | D, BOUNCE_ACTION_FAILED, 0));
	assert_true(bounce_should_dsn("a@b", F | D, BOUNCE_ACTION_DELAYED, 0));
	assert_false(bounce_should_dsn("a@b", F, BOUNCE_ACTION_DELAYED, 1));
	assert_true(bounce_should_dsn("a@b", S, BOUNCE_ACTION_RELAYED, 0));
	assert_true(bounce_should_dsn("a@b", S, BOUNCE_ACTION_DELIVERED, 0));
	assert_true(bounce_should_dsn("a@b", S, BOUNCE_ACTION_EXPANDED, 0));
	assert_false(bounce_should_dsn("a@b", F, BOUNCE_ACTION_DELIVERED, 0));
}

static void
test_delay_warning_due(void **state)
{
	const uint64_t t0 = 1700000000000ULL;
	(void)state;
	assert_false(bounce_delay_warning_due(t0, 0, t0 + 100 * H, 0, 4 * H));
	assert_false(bounce_delay_warning_due(t0, 0, t0 + 3 * H, 4 * H, 4 * H));
	assert_true(bounce_delay_warning_due(t0, 0, t0 + 4 * H, 4 * H, 4 * H));
	/* warned at 4h: not again before 8h */
	assert_false(bounce_delay_warning_due(t0, t0 + 4 * H, t0 + 7 * H,
	                                      4 * H, 4 * H));
	assert_true(bounce_delay_warning_due(t0, t0 + 4 * H, t0 + 8 * H,
	                                     4 * H, 4 * H));
	/* interval 0: once only */
	assert_false(bounce_delay_warning_due(t0, t0 + 4 * H, t0 + 90 * H,
	                                      4 * H, 0));
	/* clock went backwards: no storm */
	assert_false(bounce_delay_warning_due(t0, 0, t0 - H, 4 * H, 4 * H));
	assert_false(bounce_delay_warning_due(t0, t0 + 9 * H, t0 + 5 * H,
	                                      4 * H, 4 * H));
}

static void
test_suppress(void **state)
{
	struct bounce_suppress_policy p;
	struct bounce_class c = { BOUNCE_CAT_BAD_MAILBOX, BOUNCE_SIG_NONE, 1, 0 };
	char key[64];

	(void)state;
	bounce_suppress_defaults(&p);
	assert_int_equal(bounce_suppress_for(&p, &c), 30 * 24 * H);
	c.cat = BOUNCE_CAT_BAD_DOMAIN;
	assert_int_equal(bounce_suppress_for(&p, &c), 3 * 24 * H);
	c.cat = BOUNCE_CAT_INACTIVE_MAILBOX;
	assert_int_equal(bounce_suppress_for(&p, &c), 30 * 24 * H);
	c.permanent = 0; /* a 4xx never suppresses */
	assert_int_equal(bounce_suppress_for(&p, &c), 0);
	c.permanent = 1;
	for (int cat = 0; cat < BOUNCE_CAT_COUNT; cat++) {
		c.cat = (enum bounce_category)cat;
		if (cat != BOUNCE_CAT_BAD_MAILBOX && cat != BOUNCE_CAT_BAD_DOMAIN &&
		    cat != BOUNCE_CAT_INACTIVE_MAILBOX)
			assert_int_equal(bounce_suppress_for(&p, &c), 0);
	}
	p.bad_mailbox_ms = 0; /* operator turned it off */
	c.cat = BOUNCE_CAT_BAD_MAILBOX;
	assert_int_equal(bounce_suppress_for(&p, &c), 0);
	assert_int_equal(bounce_suppress_for(NULL, &c), 0);

	assert_int_equal(bounce_suppress_key(" <Some.One@Example.COM> ", key,
	                                     sizeof(key)), 0);
	assert_string_equal(key, "some.one@example.com");
	assert_int_equal(bounce_suppress_key("nobody", key, sizeof(key)), -1);
	assert_int_equal(bounce_suppress_key("<>", key, sizeof(key)), -1);
	assert_int_equal(bounce_suppress_key("a@", key, sizeof(key)), -1);
	assert_int_equal(bounce_suppress_key("a b@c", key, sizeof(key)), -1);
	assert_int_equal(bounce_suppress_key("a@b\r\nX: y", key, sizeof(key)),
	                 -1);
	assert_int_equal(bounce_suppress_key("a@b", key, 3), -1);
}

int
test_bounce_policy_main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_should_dsn),
		cmocka_unit_test(test_delay_warning_due),
		cmocka_unit_test(test_suppress),
	};
	return cmocka_run_group_tests_name("bounce_policy", tests, NULL, NULL);
}
