/*
 * dsnspec.h - read a DSN test case (data/dsn_*.in) into a struct
 * bounce_dsn; shared by the unit test and tests/tools/dsngen.
 */
#ifndef MXB_TEST_DSNSPEC_H
#define MXB_TEST_DSNSPEC_H

#include "bounce/bounce.h"

#include <stdio.h>

#define DSNSPEC_MAX_RCPTS 64

struct dsnspec {
	struct bounce_dsn dsn;
	struct bounce_dsn_rcpt rcpts[DSNSPEC_MAX_RCPTS];
	char *strings[16 * DSNSPEC_MAX_RCPTS]; /* owned copies */
	size_t n_strings;
	char original[1024];      /* path of the original message, or "" */
	FILE *orig;               /* open while composing */
	int fail_read_at;         /* test hook: read error after N bytes */
	long read_total;
};

/* Parse path; 0 ok, -1 with a message in err. */
int dsnspec_load(struct dsnspec *s, const char *path, char *err,
                 size_t errlen);
/* Open the original and point s->dsn.read at it. 0 ok, -1 error. */
int dsnspec_open(struct dsnspec *s);
void dsnspec_free(struct dsnspec *s);

#endif
