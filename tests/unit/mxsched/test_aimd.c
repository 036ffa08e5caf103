/*
 * test_aimd.c - the reputation arithmetic of src/mxsched: adaptive
 * throttle cuts and recovery, the recipient token bucket, pool address
 * parsing and the stable weighted choice of a site's source address.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sys/socket.h>

#include "mxsched/mxsched_internal.h"

/* ---- AIMD ---- */

static void
test_aimd_cut_halves_not_below_floor(void **state)
{
	struct aimd a;
	uint64_t t = 1000000;
	(void)state;

	aimd_init(&a, 8, 0, 30);
	assert_int_equal(aimd_conns(&a), 8);
	assert_false(aimd_reduced(&a));
	/* no rate set: the cut starts from what was sent lately */
	assert_int_equal(aimd_cut(&a, 600, t), 1);
	assert_int_equal(aimd_conns(&a), 4);
	assert_true(a.rate > 299 && a.rate < 301);
	assert_true(aimd_reduced(&a));
	/* a second reply of the same burst is held */
	assert_int_equal(aimd_cut(&a, 600, t + AIMD_HOLD_MS - 1), 0);
	assert_int_equal(aimd_conns(&a), 4);
	for (int i = 1; i <= 10; i++)
		assert_int_equal(aimd_cut(&a, 600, t + (uint64_t)i * AIMD_HOLD_MS), 1);
	assert_int_equal(aimd_conns(&a), 1);       /* never below 1 */
	assert_true(a.rate >= 30 && a.rate < 30.01); /* nor below the floor */
	assert_true(aimd_at_floor(&a));
}

static void
test_aimd_additive_recovery_to_no_limit(void **state)
{
	struct aimd a;
	int n = 0;
	(void)state;

	aimd_init(&a, 4, 0, 10);
	aimd_cut(&a, 200, 5000);
	aimd_cut(&a, 200, 7000);                   /* 1 conn, 50/min */
	assert_int_equal(aimd_conns(&a), 1);
	aimd_raise(&a);
	assert_int_equal(aimd_conns(&a), 2);       /* +1 connection a round */
	assert_true(a.rate > 69 && a.rate < 71);   /* +200/10 */
	aimd_raise(&a);                            /* a round is 2 now */
	assert_int_equal(aimd_conns(&a), 2);
	assert_true(a.rate > 79 && a.rate < 81);
	aimd_raise(&a);
	assert_int_equal(aimd_conns(&a), 3);
	while (aimd_reduced(&a) && n++ < 100)
		aimd_raise(&a);
	assert_true(n <= 30);                      /* about ten rounds */
	assert_int_equal(aimd_conns(&a), 4);
	assert_true(a.rate == 0);                  /* no limit again */
	/* a later throttle starts afresh from the observed rate */
	assert_int_equal(aimd_cut(&a, 1000, 100000), 1);
	assert_true(a.rate > 499 && a.rate < 501);
}

static void
test_aimd_shape_rate(void **state)
{
	struct aimd a;
	(void)state;

	aimd_init(&a, 2, 120, 10);                 /* recipients_per_hour 7200 */
	assert_true(a.rate == 120);
	aimd_cut(&a, 5000, 1000);                  /* observed is ignored */
	assert_true(a.rate > 59 && a.rate < 61);
	assert_int_equal(aimd_conns(&a), 1);
	for (int i = 0; i < 10; i++)
		aimd_raise(&a);
	assert_true(a.rate == 120);                /* back to the shape, not above */
	assert_int_equal(aimd_conns(&a), 2);
	assert_false(aimd_reduced(&a));
}

static void
test_tbucket(void **state)
{
	struct tbucket b = { 0 };
	(void)state;

	assert_int_equal(tbucket_wait(&b, 0, 1000), 0); /* no limit */
	/* 60/min: burst of 2, then one a second */
	assert_int_equal(tbucket_wait(&b, 60, 1000), 0);
	tbucket_take(&b, 60, 2, 1000);
	assert_true(tbucket_wait(&b, 60, 1000) > 900);
	assert_true(tbucket_wait(&b, 60, 1000) <= 1001);
	assert_int_equal(tbucket_wait(&b, 60, 2001), 0);
	/* a batch of 10 leaves a debt: 9 s before the next */
	tbucket_take(&b, 60, 10, 2001);
	assert_true(tbucket_wait(&b, 60, 2001) > 9000);
	assert_int_equal(tbucket_wait(&b, 60, 12100), 0);
}

/* ---- pools ---- */

static void
addr_free(void *v)
{
	struct srcaddr *a = v;

	free(a->ip);
	free(a->ehlo);
	free(a);
}

static void
test_pool_parse(void **state)
{
	struct smap table;
	struct pool p = { 0 }, q = { 0 }, bad = { 0 };
	char err[256];
	(void)state;

	smap_init(&table);
	assert_int_equal(pool_parse(&p, "192.0.2.10=out1.example.net*5, "
	                 "2001:db8::1=out6.example.net,192.0.2.11", &table, err,
	                 sizeof(err)), 0);
	assert_int_equal(p.n, 3);
	assert_string_equal(p.m[0].a->ip, "192.0.2.10");
	assert_string_equal(p.m[0].a->ehlo, "out1.example.net");
	assert_int_equal(p.m[0].weight, 5);
	assert_int_equal(p.m[1].a->family, AF_INET6);
	assert_int_equal(p.m[1].weight, 1);
	assert_null(p.m[2].a->ehlo);               /* the server's hostname */
	/* an address in two pools is one address */
	assert_int_equal(pool_parse(&q, "192.0.2.10=out1.example.net*1", &table,
	                 err, sizeof(err)), 0);
	assert_ptr_equal(q.m[0].a, p.m[0].a);
	const char *bads[] = { "", "192.0.2.300=x", "host.example=x", "192.0.2.1=x*0",
	                       "192.0.2.1=x*1001", "192.0.2.1=x*", "192.0.2.1=",
	                       "192.0.2.1=a b", "192.0.2.5=a, 192.0.2.5=a",
	                       "192.0.2.10=other.example.net" };
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		err[0] = '\0';
		assert_int_equal(pool_parse(&bad, bads[i], &table, err, sizeof(err)), -1);
		assert_true(err[0] != '\0');
		free(bad.m);
		memset(&bad, 0, sizeof(bad));
	}
	free(p.m);
	free(q.m);
	smap_clear(&table, addr_free);
	free(table.b);
}

static struct pool *
pool_of(const char *spec, struct smap *table)
{
	struct pool *p = calloc(1, sizeof(*p));
	char err[256];

	assert_int_equal(pool_parse(p, spec, table, err, sizeof(err)), 0);
	return p;
}

static void
test_pool_pick_stable_and_skips(void **state)
{
	struct smap table;
	struct pool *p;
	int skip[3] = { 0, 0, 0 }, first, second;
	(void)state;

	smap_init(&table);
	p = pool_of("10.0.0.1=a, 10.0.0.2=b, 10.0.0.3=c", &table);
	first = pool_pick(p, "10:mx.example.com", NULL);
	assert_in_range(first, 0, 2);
	for (int i = 0; i < 5; i++)                /* stable */
		assert_int_equal(pool_pick(p, "10:mx.example.com", skip), first);
	skip[first] = 1;
	second = pool_pick(p, "10:mx.example.com", skip);
	assert_true(second >= 0 && second != first);
	skip[second] = 1;
	assert_int_equal(pool_pick(p, "10:mx.example.com", skip), 3 - first - second);
	skip[3 - first - second] = 1;
	assert_int_equal(pool_pick(p, "10:mx.example.com", skip), -1);
	/* skipping another site's choice does not move this one */
	memset(skip, 0, sizeof(skip));
	skip[(first + 1) % 3] = 1;
	assert_int_equal(pool_pick(p, "10:mx.example.com", skip), first);
	free(p->m);
	free(p);
	smap_clear(&table, addr_free);
	free(table.b);
}

static void
test_pool_pick_by_weight(void **state)
{
	struct smap table;
	struct pool *p;
	int count[2] = { 0, 0 }, i;
	char key[64];
	(void)state;

	smap_init(&table);
	p = pool_of("10.0.0.1=a*3, 10.0.0.2=b*1", &table);
	for (i = 0; i < 4000; i++) {
		snprintf(key, sizeof(key), "10:mx%d.example.net", i);
		count[pool_pick(p, key, NULL)]++;
	}
	/* 3:1 -> 3000 / 1000, within a few percent */
	assert_in_range(count[0], 2850, 3150);
	assert_in_range(count[1], 850, 1150);
	free(p->m);
	free(p);
	smap_clear(&table, addr_free);
	free(table.b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_aimd_cut_halves_not_below_floor),
		cmocka_unit_test(test_aimd_additive_recovery_to_no_limit),
		cmocka_unit_test(test_aimd_shape_rate),
		cmocka_unit_test(test_tbucket),
		cmocka_unit_test(test_pool_parse),
		cmocka_unit_test(test_pool_pick_stable_and_skips),
		cmocka_unit_test(test_pool_pick_by_weight),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
