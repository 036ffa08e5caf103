/*
 * bounce_internal.h - structs shared by the files of src/bounce only.
 */
#ifndef MXB_BOUNCE_INTERNAL_H
#define MXB_BOUNCE_INTERNAL_H

#include "bounce/bounce.h"

#include <regex.h>

#define BOUNCE_ANY (-1)

/* One rule line, compiled. Unset conditions match everything. */
struct bounce_rule {
	enum bounce_category cat;
	enum bounce_signal sig;
	unsigned phases;          /* bit per enum bounce_phase; 0 = any */
	int has_status;
	int st[3];                /* class, subject, detail; BOUNCE_ANY = '*' */
	int has_code;
	char code[4];             /* "550", "5xx", "000" */
	int has_mx, has_text;
	regex_t mx, text;
	char *origin;             /* "file:line" */
};

struct bounce_rules {
	struct bounce_rule *v;
	size_t n, cap;
};

/* A reply's enhanced code, validated and with its class forced to agree
 * with the basic code (RFC 3463: on conflict the basic code wins). */
struct bounce_status {
	int valid;
	int st[3];
};
void bounce_status_of(const struct bounce_reply *reply,
                      struct bounce_status *out);
/* Parse "c.s.d" at s (digits only); returns chars used, 0 if none. */
size_t bounce_status_scan(const char *s, int st[3]);

/* NULL, "", "<>" (spaces allowed): the null reverse-path. */
int bounce_null_sender(const char *sender);

/* Text helpers (bounce_text.c) */
/* Copy src into dst (size dstlen) keeping printable ASCII, other bytes
 * as '?', CR/LF/TAB as a space, runs of spaces collapsed, trimmed. */
void bounce_text_clean(const char *src, char *dst, size_t dstlen);
/* RFC 5322 date of ms since the epoch, in UTC. */
void bounce_text_date(uint64_t ms, char *dst, size_t dstlen);

#endif
