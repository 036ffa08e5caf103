/*
 * test_sched_backoff.c - retry schedule, jitter, expiry and site backoff
 * arithmetic.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/core.h"
#include "mxsched/mxsched.h"

#define MIN 60000ull
#define HOUR (60 * MIN)

static void
test_retry_parse(void **state)
{
	struct mxsched_retry r;
	(void)state;

	assert_int_equal(mxsched_retry_parse("5m,10m,1h", &r), 0);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.delays_ms[2], HOUR);
	mxsched_retry_free(&r);
	assert_int_equal(mxsched_retry_parse("5m,,1h", &r), -1);
	assert_int_equal(mxsched_retry_parse("soon", &r), -1);
	assert_int_equal(mxsched_retry_parse("", &r), -1);
	assert_int_equal(mxsched_retry_parse("0s", &r), -1);
}

static void
test_retry_delay_and_jitter(void **state)
{
	struct mxsched_retry r;
	uint32_t rnd;
	(void)state;

	assert_int_equal(mxsched_retry_parse("5m,10m,1h", &r), 0);
	r.jitter_pct = 0;
	assert_int_equal(mxsched_retry_delay(&r, 1, 0), 5 * MIN);
	assert_int_equal(mxsched_retry_delay(&r, 2, 0), 10 * MIN);
	assert_int_equal(mxsched_retry_delay(&r, 3, 0), HOUR);
	assert_int_equal(mxsched_retry_delay(&r, 50, 0), HOUR); /* last repeats */
	r.jitter_pct = 10;
	for (rnd = 0; rnd < 100000; rnd += 997) {
		uint64_t d = mxsched_retry_delay(&r, 1, rnd * 2654435761u);
		assert_true(d >= 270000 && d <= 330000);
	}
	/* jitter spreads: not every value the same */
	assert_int_not_equal(mxsched_retry_delay(&r, 1, 1), mxsched_retry_delay(&r, 1, 12345));
	mxsched_retry_free(&r);
}

static void
test_retry_next_and_expiry(void **state)
{
	struct mxsched_retry r;
	uint64_t submit = 1000000, life = 2 * HOUR;
	(void)state;

	assert_int_equal(mxsched_retry_parse("1h", &r), 0);
	r.jitter_pct = 0;
	assert_int_equal(mxsched_retry_next(&r, 1, submit, submit, life, 0), submit + HOUR);
	/* would land after the lifetime: one last try at its end */
	assert_int_equal(mxsched_retry_next(&r, 2, submit + 90 * MIN, submit, life, 0),
	                 submit + life);
	/* at or past the end: expire (0) */
	assert_int_equal(mxsched_retry_next(&r, 3, submit + life, submit, life, 0), 0);
	mxsched_retry_free(&r);
}

static void
test_backoff(void **state)
{
	(void)state;
	assert_int_equal(mxsched_backoff_delay(MIN, 4 * HOUR, 1), MIN);
	assert_int_equal(mxsched_backoff_delay(MIN, 4 * HOUR, 2), 2 * MIN);
	assert_int_equal(mxsched_backoff_delay(MIN, 4 * HOUR, 5), 16 * MIN);
	assert_int_equal(mxsched_backoff_delay(MIN, 4 * HOUR, 40), 4 * HOUR);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_retry_parse),
		cmocka_unit_test(test_retry_delay_and_jitter),
		cmocka_unit_test(test_retry_next_and_expiry),
		cmocka_unit_test(test_backoff),
	};
	log_init("test_sched_backoff", 1, LOG_LVL_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
