/*
 * test_resolve.h - the resolver/c-ares tests of test_resolve.c, listed
 * for the cmocka group in test_dns.c.
 */
#ifndef MXB_TEST_RESOLVE_H
#define MXB_TEST_RESOLVE_H

int resolve_setup(void **state);
int resolve_teardown(void **state);
void test_resolve_mx_order(void **state);
void test_resolve_coalesce(void **state);
void test_resolve_implicit(void **state);
void test_resolve_null_mx(void **state);
void test_resolve_nxdomain(void **state);
void test_resolve_servfail_then_fixed(void **state);
void test_resolve_timeout(void **state);
void test_resolve_malformed(void **state);
void test_resolve_no_addresses(void **state);
void test_resolve_partial(void **state);
void test_resolve_cache_ttl(void **state);
void test_resolve_cancel(void **state);
void test_resolve_invalid_and_literal(void **state);
void test_resolve_eviction(void **state);
void test_resolve_inflight_cap(void **state);
void test_dns_raw_queries(void **state);

#define RT(f) cmocka_unit_test_setup_teardown(f, resolve_setup, \
                                              resolve_teardown)
#define RESOLVE_TESTS \
	RT(test_resolve_mx_order), RT(test_resolve_coalesce), \
	RT(test_resolve_implicit), RT(test_resolve_null_mx), \
	RT(test_resolve_nxdomain), RT(test_resolve_servfail_then_fixed), \
	RT(test_resolve_timeout), RT(test_resolve_malformed), \
	RT(test_resolve_no_addresses), RT(test_resolve_partial), \
	RT(test_resolve_cache_ttl), RT(test_resolve_cancel), \
	RT(test_resolve_invalid_and_literal), RT(test_resolve_eviction), \
	RT(test_resolve_inflight_cap), RT(test_dns_raw_queries)

#endif
