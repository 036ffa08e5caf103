/*
 * dsngen - write the DSN that src/bounce composes for a test case, or
 * classify replies with a rule set; for tests/integration/test_bounce_dsn.py
 * and for operators checking their own rules.
 *
 *   dsngen CASE.in            DSN bytes on stdout (case format:
 *                             tests/unit/bounce/dsnspec.c); on stderr
 *                             "size=N returned=none|headers|full truncated=0|1"
 *   dsngen --classify [--rules FILE]
 *                             read "phase code enhanced mx text" lines on
 *                             stdin ('-' = none), print "category signal
 *                             perm|temp origin" per line (shipped rules by
 *                             default)
 * Exit 0 ok, 1 on bad input or a failed composition (message on stderr).
 */
#include "bounce/bounce.h"
#include "dsnspec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
stdout_write(void *arg, const void *p, size_t len)
{
	(void)arg;
	return fwrite(p, 1, len, stdout) == len ? 0 : -1;
}

static int
gen(const char *path)
{
	static const char *const ret[] = { "none", "headers", "full" };
	struct dsnspec s;
	struct bounce_dsn_info info;
	enum bounce_dsn_status st;
	char err[512];

	if (dsnspec_load(&s, path, err, sizeof(err)) != 0) {
		fprintf(stderr, "dsngen: %s\n", err);
		return 1;
	}
	if (dsnspec_open(&s) != 0) {
		fprintf(stderr, "dsngen: %s: cannot open\n", s.original);
		dsnspec_free(&s);
		return 1;
	}
	st = bounce_dsn_write(&s.dsn, stdout_write, NULL, &info);
	dsnspec_free(&s);
	if (st != BOUNCE_DSN_OK || fflush(stdout) != 0) {
		fprintf(stderr, "dsngen: %s\n", bounce_dsn_status_text(st));
		return 1;
	}
	fprintf(stderr, "size=%llu returned=%s truncated=%d\n",
	        (unsigned long long)info.size, ret[info.returned],
	        info.truncated);
	return 0;
}

/* classify_line - "phase code enhanced mx text..." -> one result line */
static int
classify_line(const struct bounce_rules *r, char *line)
{
	char *f[4], *p = line, *save = NULL;
	struct bounce_reply rp = { 0 };
	struct bounce_class c;

	for (int i = 0; i < 4; i++) {
		f[i] = strtok_r(i ? NULL : p, " ", &save);
		if (f[i] == NULL)
			return -1;
	}
	p = save ? save : (char *)"";
	if (bounce_phase_parse(f[0], &rp.phase) != 0)
		return -1;
	rp.code = atoi(f[1]);
	rp.enhanced = strcmp(f[2], "-") ? f[2] : NULL;
	rp.mx_host = strcmp(f[3], "-") ? f[3] : NULL;
	rp.text = strcmp(p, "-") ? p : NULL;
	c = bounce_classify(r, &rp);
	printf("%s %s %s %s\n", bounce_category_name(c.cat),
	       bounce_signal_name(c.sig), c.permanent ? "perm" : "temp",
	       c.rule >= 0 ? bounce_rules_origin(r, c.rule) : "-");
	return 0;
}

static int
classify(const char *rules_path)
{
	struct bounce_rules *r;
	char line[8192], err[512];
	unsigned lineno = 0;
	int rc = 0;

	r = rules_path ? bounce_rules_load(rules_path, err, sizeof(err)) :
	                 bounce_rules_builtin();
	if (r == NULL) {
		fprintf(stderr, "dsngen: %s\n", err);
		return 1;
	}
	while (fgets(line, sizeof(line), stdin)) {
		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		if (classify_line(r, line) != 0) {
			fprintf(stderr, "dsngen: stdin:%u: expected phase code "
			        "enhanced mx text\n", lineno);
			rc = 1;
		}
	}
	bounce_rules_free(r);
	return rc;
}

int
main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "--classify") == 0) {
		if (argc == 4 && strcmp(argv[2], "--rules") == 0)
			return classify(argv[3]);
		if (argc == 2)
			return classify(NULL);
	} else if (argc == 2 && argv[1][0] != '-') {
		return gen(argv[1]);
	}
	fprintf(stderr, "usage: dsngen CASE.in\n"
	        "       dsngen --classify [--rules FILE] < replies\n");
	return 1;
}
