/*
 * test_dns.c - unit tests of the DNS side of src/mxsched: site keys, the
 * provider table, TTL clamping, exchanger ordering, null-MX detection,
 * name validation, and the real c-ares glue + resolver against the
 * in-process scripted server of fakedns.c (no dnsmasq, no timing asserts).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core/core.h"
#include "mxsched/dns.h"
#include "mxsched/resolve.h"
#include "mxsched/sitekey.h"
#include "fakedns.h"

/* ---- pure logic ---- */

static void
test_sitekey_format(void **state)
{
	const char *names[] = { "c.mx.test", "b.mx.test", "a.mx.test",
		"b.mx.test" };
	unsigned prefs[] = { 20, 10, 10, 30 };
	char *k;
	(void)state;

	k = sitekey_make(names, prefs, 4);
	assert_string_equal(k, "10:a.mx.test,b.mx.test;20:c.mx.test");
	assert_true(sitekey_hash(k) == sitekey_hash("10:a.mx.test,b.mx.test;"
	                                            "20:c.mx.test"));
	assert_true(sitekey_hash(k) != sitekey_hash("10:a.mx.test"));
	free(k);
	k = sitekey_make(names, prefs, 1);
	assert_string_equal(k, "20:c.mx.test");
	free(k);
}

static void
test_sitekey_same_set_same_key(void **state)
{
	struct resolve_mx a[3] = { { "mx2.p.test", 5, NULL, 0, NULL },
		{ "mx1.p.test", 5, NULL, 0, NULL },
		{ "backup.p.test", 50, NULL, 0, NULL } };
	struct resolve_mx b[3] = { a[2], a[0], a[1] };
	char *ka = sitekey_from_mx(a, 3), *kb = sitekey_from_mx(b, 3);
	(void)state;

	assert_string_equal(ka, kb);
	assert_string_equal(ka, "5:mx1.p.test,mx2.p.test;50:backup.p.test");
	free(ka);
	free(kb);
}

static void
test_ttl_clamp(void **state)
{
	(void)state;
	assert_int_equal(resolve_ttl_clamp(300, 60000, 86400000), 300000);
	assert_int_equal(resolve_ttl_clamp(5, 60000, 86400000), 60000);
	assert_int_equal(resolve_ttl_clamp(0, 60000, 86400000), 60000);
	assert_int_equal(resolve_ttl_clamp(604800, 60000, 86400000), 86400000);
	assert_int_equal(resolve_ttl_clamp(0, 0, 86400000), 0);
	assert_int_equal(resolve_ttl_clamp(UINT32_MAX, 0, 1000), 1000);
}

static void
test_null_mx(void **state)
{
	struct dns_mx null1[] = { { 0, "" } };
	struct dns_mx null10[] = { { 10, "" } };
	struct dns_mx mixed[] = { { 0, "" }, { 10, "mx.test" } };
	struct dns_mx real[] = { { 0, "mx.test" } };
	(void)state;

	assert_true(resolve_mx_is_null(null1, 1));
	assert_true(resolve_mx_is_null(null10, 1));
	assert_false(resolve_mx_is_null(mixed, 2));
	assert_false(resolve_mx_is_null(real, 1));
	assert_false(resolve_mx_is_null(real, 0));
}

static void
test_mx_order_and_shuffle(void **state)
{
	struct resolve_mx in[5] = { { "c", 20, NULL, 0, NULL },
		{ "a", 10, NULL, 0, NULL }, { "x", 5, NULL, 0, NULL },
		{ "b", 10, NULL, 0, NULL }, { "d", 20, NULL, 0, NULL } };
	struct resolve_mx mx[5];
	uint64_t rng = 42;
	int a_first = 0, b_first = 0, c_first = 0, d_first = 0;
	(void)state;

	for (int round = 0; round < 200; round++) {
		memcpy(mx, in, sizeof(mx));
		resolve_mx_order(mx, 5, &rng);
		assert_string_equal(mx[0].name, "x");
		assert_int_equal(mx[1].pref, 10);
		assert_int_equal(mx[2].pref, 10);
		assert_int_equal(mx[3].pref, 20);
		assert_int_equal(mx[4].pref, 20);
		a_first += strcmp(mx[1].name, "a") == 0;
		b_first += strcmp(mx[1].name, "b") == 0;
		c_first += strcmp(mx[3].name, "c") == 0;
		d_first += strcmp(mx[3].name, "d") == 0;
	}
	/* both orders of each tie happen, and roughly evenly */
	assert_true(a_first > 50 && b_first > 50);
	assert_true(c_first > 50 && d_first > 50);
	assert_int_equal(a_first + b_first, 200);
}

static void
test_name_normalize(void **state)
{
	char out[256], long_label[80], long_name[300];
	(void)state;

	assert_int_equal(resolve_name_normalize("Example.TEST.", out,
	                                        sizeof(out)), 0);
	assert_string_equal(out, "example.test");
	assert_int_equal(resolve_name_normalize("b\xc3\xbc" "cher.test", out,
	                                        sizeof(out)), 0);
	assert_string_equal(out, "xn--bcher-kva.test");
	assert_int_equal(resolve_name_normalize("mx_1.example.test", out,
	                                        sizeof(out)), 0);
	assert_int_equal(resolve_name_normalize("localhost", out,
	                                        sizeof(out)), 0);
	assert_int_equal(resolve_name_normalize("", out, sizeof(out)), -1);
	assert_int_equal(resolve_name_normalize(".", out, sizeof(out)), -1);
	assert_int_equal(resolve_name_normalize("a..test", out, sizeof(out)),
	                 -1);
	assert_int_equal(resolve_name_normalize(".a.test", out, sizeof(out)),
	                 -1);
	assert_int_equal(resolve_name_normalize("-a.test", out, sizeof(out)),
	                 -1);
	assert_int_equal(resolve_name_normalize("a-.test", out, sizeof(out)),
	                 -1);
	assert_int_equal(resolve_name_normalize("a b.test", out, sizeof(out)),
	                 -1);
	assert_int_equal(resolve_name_normalize("a@b.test", out, sizeof(out)),
	                 -1);
	assert_int_equal(resolve_name_normalize("192.0.2.1", out, sizeof(out)),
	                 -1);
	assert_int_equal(resolve_name_normalize(NULL, out, sizeof(out)), -1);
	memset(long_label, 'a', 64);
	strcpy(long_label + 64, ".test");
	assert_int_equal(resolve_name_normalize(long_label, out, sizeof(out)),
	                 -1);
	memmove(long_label + 63, long_label + 64, 6); /* 63 is fine */
	assert_int_equal(resolve_name_normalize(long_label, out, sizeof(out)),
	                 0);
	for (int i = 0; i < 290; i++)
		long_name[i] = i % 2 ? '.' : 'a';
	long_name[289] = 'a';
	long_name[290] = '\0';
	assert_int_equal(resolve_name_normalize(long_name, out, sizeof(out)),
	                 -1);
}

static void
test_reverse_name(void **state)
{
	unsigned char v4[4] = { 127, 0, 0, 2 };
	unsigned char v6[16];
	char out[256];
	(void)state;

	assert_int_equal(dns_reverse_name(AF_INET, v4, "zen.test", out,
	                                  sizeof(out)), 0);
	assert_string_equal(out, "2.0.0.127.zen.test");
	inet_pton(AF_INET6, "2001:db8::1", v6);
	assert_int_equal(dns_reverse_name(AF_INET6, v6, "bl.test", out,
	                                  sizeof(out)), 0);
	assert_string_equal(out, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0."
	                    "0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test");
	assert_int_equal(dns_reverse_name(AF_INET, v4, "zen.test", out, 8), -1);
	assert_int_equal(dns_reverse_name(99, v4, "zen.test", out, 99), -1);
}

/* ---- provider table ---- */

static void
test_provider_lines(void **state)
{
	struct provider_table *t = provider_table_new();
	struct resolve_mx g[2] = { { "aspmx.l.google.com", 1, NULL, 0, NULL },
		{ "alt1.aspmx.l.google.com", 5, NULL, 0, NULL } };
	struct resolve_mx mixed[2] = { { "aspmx.l.google.com", 1, NULL, 0, NULL },
		{ "mx.own.test", 1, NULL, 0, NULL } };
	struct resolve_mx backup[2] = { { "aspmx.l.google.com", 1, NULL, 0,
		NULL }, { "mx.own.test", 20, NULL, 0, NULL } };
	const struct provider *p;
	const char *k, *v;
	char err[256];
	(void)state;

	assert_int_equal(provider_table_add_line(t, "# comment", err,
	                                         sizeof(err)), 0);
	assert_int_equal(provider_table_add_line(t, "   ", err, sizeof(err)), 0);
	assert_int_equal(provider_table_add_line(t, "google .google.com,"
	    "googlemail.com multi_domain=deny # Gmail 451 4.3.0", err,
	    sizeof(err)), 0);
	assert_int_equal(provider_table_add_line(t, "gsub l.google.com", err,
	                                         sizeof(err)), 0);
	assert_int_equal(provider_table_add_line(t, "yahoo yahoodns.net "
	    "messages_per_connection=20", err, sizeof(err)), 0);
	assert_int_equal(provider_table_count(t), 3);
	/* longest suffix wins */
	p = provider_for_host(t, "alt1.aspmx.l.google.com");
	assert_string_equal(provider_name(p), "gsub");
	p = provider_for_host(t, "smtp.google.com");
	assert_string_equal(provider_name(p), "google");
	assert_string_equal(provider_option(p, "multi_domain"), "deny");
	assert_null(provider_option(p, "tls"));
	assert_int_equal(provider_option_at(p, 0, &k, &v), 0);
	assert_string_equal(k, "multi_domain");
	assert_int_equal(provider_option_at(p, 1, &k, &v), -1);
	assert_null(provider_for_host(t, "notgoogle.com"));
	assert_non_null(provider_for_host(t, "googlemail.com"));
	/* the most preferred group decides, and must agree */
	assert_string_equal(provider_name(provider_for_mx(t, g, 2)), "gsub");
	assert_null(provider_for_mx(t, mixed, 2));
	assert_string_equal(provider_name(provider_for_mx(t, backup, 2)),
	                    "gsub");
	/* a later line extends and overrides */
	assert_int_equal(provider_table_add_line(t, "yahoo ymail.test "
	    "messages_per_connection=30", err, sizeof(err)), 0);
	p = provider_for_host(t, "mx.ymail.test");
	assert_string_equal(provider_option(p, "messages_per_connection"), "30");
	provider_table_free(t);
}

static void
test_provider_errors(void **state)
{
	struct provider_table *t = provider_table_new();
	char err[256];
	(void)state;

	assert_int_equal(provider_table_add_line(t, "google", err,
	                                         sizeof(err)), -1);
	assert_non_null(strstr(err, "suffixes missing"));
	assert_int_equal(provider_table_add_line(t, "g google.com colour=red",
	                                         err, sizeof(err)), -1);
	assert_non_null(strstr(err, "unknown option"));
	assert_int_equal(provider_table_add_line(t, "g google.com "
	    "multi_domain=maybe", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "deny, allow or learn"));
	assert_int_equal(provider_table_add_line(t, "g google.com "
	    "connections=0", err, sizeof(err)), -1);
	assert_int_equal(provider_table_add_line(t, "g google.com "
	    "connections=x", err, sizeof(err)), -1);
	assert_int_equal(provider_table_add_line(t, "g google..com", err,
	                                         sizeof(err)), -1);
	assert_int_equal(provider_table_add_line(t, "g/x google.com", err,
	                                         sizeof(err)), -1);
	assert_int_equal(provider_table_add_line(t, "g google.com idle=soon",
	                                         err, sizeof(err)), -1);
	assert_int_equal(provider_table_add_line(t, "g google.com tls=verify "
	    "connection_age=5m recipients_per_hour=0 pool=warm", err,
	    sizeof(err)), 0);
	provider_table_free(t);
}

static void
test_provider_shipped_table(void **state)
{
	char err[512];
	struct provider_table *t = provider_table_load(
	    MXB_SOURCE_DIR "/contrib/providers.conf", err, sizeof(err));
	const struct provider *p;
	(void)state;

	if (t == NULL)
		fail_msg("%s", err);
	p = provider_for_host(t, "aspmx.l.google.com");
	assert_string_equal(provider_name(p), "google");
	assert_string_equal(provider_option(p, "multi_domain"), "deny");
	p = provider_for_host(t, "example-com.mail.protection.outlook.com");
	assert_string_equal(provider_name(p), "microsoft");
	assert_string_equal(provider_option(p, "multi_domain"), "deny");
	p = provider_for_host(t, "mta5.am0.yahoodns.net");
	assert_string_equal(provider_name(p), "yahoo");
	assert_string_equal(provider_option(p, "messages_per_connection"),
	                    "20");
	assert_null(provider_for_host(t, "mx.example.test"));
	provider_table_free(t);
	t = provider_table_load("/nonexistent/providers.conf", err,
	                        sizeof(err));
	assert_null(t);
	assert_non_null(strstr(err, "/nonexistent/providers.conf"));
}

#include "test_resolve.h"

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sitekey_format),
		cmocka_unit_test(test_sitekey_same_set_same_key),
		cmocka_unit_test(test_ttl_clamp),
		cmocka_unit_test(test_null_mx),
		cmocka_unit_test(test_mx_order_and_shuffle),
		cmocka_unit_test(test_name_normalize),
		cmocka_unit_test(test_reverse_name),
		cmocka_unit_test(test_provider_lines),
		cmocka_unit_test(test_provider_errors),
		cmocka_unit_test(test_provider_shipped_table),
		RESOLVE_TESTS
	};

	log_init("test_mxsched", 1, LOG_LVL_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
