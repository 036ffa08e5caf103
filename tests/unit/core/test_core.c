/*
 * test_core.c - unit tests of src/core: value parsing and the
 * configuration table (defaults, errors naming file/line/key, shapes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"

static void
test_durations(void **state)
{
	uint64_t ms;
	(void)state;

	assert_int_equal(parse_duration_ms("30s", &ms), 0);
	assert_int_equal(ms, 30000);
	assert_int_equal(parse_duration_ms("5m", &ms), 0);
	assert_int_equal(ms, 300000);
	assert_int_equal(parse_duration_ms("4h", &ms), 0);
	assert_int_equal(ms, 4 * 3600000ull);
	assert_int_equal(parse_duration_ms("5d", &ms), 0);
	assert_int_equal(ms, 5 * 86400000ull);
	assert_int_equal(parse_duration_ms("250ms", &ms), 0);
	assert_int_equal(ms, 250);
	assert_int_equal(parse_duration_ms("12", &ms), 0);
	assert_int_equal(ms, 12000);
	assert_int_equal(parse_duration_ms("5x", &ms), -1);
	assert_int_equal(parse_duration_ms("m", &ms), -1);
	assert_int_equal(parse_duration_ms("-5s", &ms), -1);
	assert_int_equal(parse_duration_ms("", &ms), -1);
	assert_int_equal(parse_duration_ms("99999999999999999999d", &ms), -1);
	assert_int_equal(parse_duration_ms("999999999999999d", &ms), -1);
}

static void
test_sizes(void **state)
{
	uint64_t b;
	(void)state;

	assert_int_equal(parse_size("10M", &b), 0);
	assert_int_equal(b, 10u << 20);
	assert_int_equal(parse_size("64k", &b), 0);
	assert_int_equal(b, 64u << 10);
	assert_int_equal(parse_size("2GB", &b), 0);
	assert_int_equal(b, 2ull << 30);
	assert_int_equal(parse_size("512", &b), 0);
	assert_int_equal(b, 512);
	assert_int_equal(parse_size("10Q", &b), -1);
	assert_int_equal(parse_size("M", &b), -1);
}

static void
test_bool_and_hostport(void **state)
{
	char host[64];
	int v, port;
	(void)state;

	assert_int_equal(parse_bool("yes", &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(parse_bool("Off", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(parse_bool("maybe", &v), -1);

	assert_int_equal(parse_hostport("127.0.0.1:5353", host, sizeof(host), &port, 53), 0);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 5353);
	assert_int_equal(parse_hostport("10.0.0.1", host, sizeof(host), &port, 53), 0);
	assert_int_equal(port, 53);
	assert_int_equal(parse_hostport("[::1]:25", host, sizeof(host), &port, 53), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 25);
	assert_int_equal(parse_hostport("::1", host, sizeof(host), &port, 53), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(parse_hostport("h:99999", host, sizeof(host), &port, 53), -1);
	assert_int_equal(parse_hostport("h:", host, sizeof(host), &port, 53), -1);
	assert_int_equal(parse_hostport("[::1", host, sizeof(host), &port, 53), -1);
}

/* load_text - write text to a temp file and load it as a config */
static struct config *
load_text(const char *text, char *err, size_t errlen, char *path, size_t plen)
{
	int fd;

	snprintf(path, plen, "/tmp/mxb-test-core-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	struct config *cfg = config_load(path, err, errlen);
	unlink(path);
	return cfg;
}

static void
test_config_defaults(void **state)
{
	char err[1024];
	struct config *cfg = config_load(NULL, err, sizeof(err));
	(void)state;

	assert_non_null(cfg);
	assert_string_equal(cfg->spool_path, "var/spool");
	assert_int_equal(cfg->max_message_size, 50u << 20);
	assert_int_equal(cfg->queue_lifetime_ms, 5 * 86400000ull);
	assert_string_equal(cfg->admin_listen, "127.0.0.1:8025");
	assert_null(cfg->dns_servers);
	assert_int_equal(cfg->smtp_port, 25);
	assert_int_equal(cfg->n_listens, 1);
	assert_string_equal(cfg->listens[0].name, "routing");
	assert_string_equal(cfg->listens[0].socket, "var/mxbatch.sock");
	assert_int_equal(cfg->listens[0].mode, 0660);
	assert_int_equal(cfg->listens[0].max_recipients, 10000);
	assert_int_equal(cfg->n_sites, 1);
	assert_string_equal(cfg->sites[0].multi_domain, "learn");
	assert_int_equal(cfg->sites[0].recipients_per_transaction, 100);
	config_free(cfg);
}

static void
test_config_file(void **state)
{
	char err[1024], path[64];
	struct config *cfg;
	(void)state;

	cfg = load_text("[server]\nhostname = out.example.net ; comment\n"
	                "[dns]\nservers = 127.0.0.1:5353, [::1]:53\n"
	                "[listen \"relay\"]\naddress = 127.0.0.1:2587\n"
	                "[site \"default\"]\nconnections = 3\n"
	                "[site \"*.google.com\"]\nmulti_domain = deny\n"
	                "[site \"yahoo\"]\nmessages_per_connection = 20\n",
	                err, sizeof(err), path, sizeof(path));
	assert_non_null(cfg);
	assert_string_equal(cfg->hostname, "out.example.net");
	assert_string_equal(cfg->dns_servers, "127.0.0.1:5353, [::1]:53");
	assert_int_equal(cfg->n_listens, 1);
	assert_int_equal(cfg->listens[0].max_recipients, 1000); /* TCP default */
	assert_int_equal(cfg->n_sites, 3);

	const char *gmx[] = { "alt1.aspmx.l.google.com" };
	const struct config_site *s = config_site_for(cfg, gmx, 1, NULL);
	assert_string_equal(s->pattern, "*.google.com");
	assert_string_equal(s->multi_domain, "deny");
	assert_int_equal(s->connections, 3); /* inherited from default */
	const char *ymx[] = { "mta5.am0.yahoodns.net" };
	s = config_site_for(cfg, ymx, 1, "yahoo");
	assert_int_equal(s->messages_per_connection, 20);
	const char *other[] = { "mx.example.org" };
	s = config_site_for(cfg, other, 1, NULL);
	assert_string_equal(s->pattern, "default");
	config_free(cfg);
}

/* expect_error - the file is refused and the error names line and key */
static void
expect_error(const char *text, const char *needle)
{
	char err[2048], path[64], want[256];
	struct config *cfg = load_text(text, err, sizeof(err), path, sizeof(path));

	assert_null(cfg);
	snprintf(want, sizeof(want), "%s:%s", path, needle);
	if (strstr(err, want) == NULL)
		fail_msg("error '%s' lacks '%s'", err, want);
}

static void
test_config_errors(void **state)
{
	(void)state;
	expect_error("[server]\nhostname = a\nbogus = 1\n", "3: [server] bogus: unknown key");
	expect_error("[spool]\n\nqueue_lifetime = 5 days\n",
	             "3: [spool] queue_lifetime: '5 days' is not a duration");
	expect_error("[spool]\nmax_message_size = lots\n",
	             "2: [spool] max_message_size: 'lots' is not a size");
	expect_error("[site \"default\"]\nmulti_domain = sometimes\n",
	             "2: [site \"default\"] multi_domain: 'sometimes' is not one of");
	expect_error("[nosuch]\nkey = 1\n", "2: [nosuch]: unknown section");
	expect_error("[site]\nconnections = 1\n", "2: [site]: section needs a quoted name");
	expect_error("[site \"x\"]\nconnections = 0\n",
	             "2: [site \"x\"] connections: '0' is out of range");
	expect_error("[delivery]\nretry_schedule = 5m,,1h\n",
	             "2: [delivery] retry_schedule");
	expect_error("[dns]\nservers = 127.0.0.1:99999\n", "2: [dns] servers");
	expect_error("[delivery]\nallow_private_destinations = 10.0.0.0/33\n",
	             "2: [delivery] allow_private_destinations");
	expect_error("[server]\nthis line has no equals sign\n", "2:");
	expect_error("[listen \"x\"]\nauth = required\naddress = 127.0.0.1:1\n",
	             "0: [listen \"x\"] accounts: auth = required needs");
}

static void
test_config_missing_file(void **state)
{
	char err[512];
	(void)state;
	assert_null(config_load("/nonexistent/mxbatch.conf", err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/mxbatch.conf: cannot open"));
}

static void
test_config_dump(void **state)
{
	char err[256], *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct config *cfg = config_load(NULL, err, sizeof(err));
	(void)state;

	config_dump(cfg, f);
	fclose(f);
	assert_non_null(strstr(buf, "queue_lifetime = 5d"));
	assert_non_null(strstr(buf, "[listen \"routing\"]"));
	assert_non_null(strstr(buf, "multi_domain = learn"));
	free(buf);
	config_free(cfg);
}

static void
test_list_has(void **state)
{
	(void)state;
	assert_true(list_has("a.test,B.test,c.test", "b.test"));
	assert_true(list_has("a.test", "A.TEST"));
	assert_true(list_has("a.test,c.test", "c.test"));
	assert_false(list_has("a.test,c.test", "test"));
	assert_false(list_has("ab.test", "a"));
	assert_false(list_has("", "a.test"));
	assert_false(list_has(NULL, "a.test"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_list_has),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_bool_and_hostport),
		cmocka_unit_test(test_config_defaults),
		cmocka_unit_test(test_config_file),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_config_missing_file),
		cmocka_unit_test(test_config_dump),
	};
	log_init("test_core", 1, LOG_LVL_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
