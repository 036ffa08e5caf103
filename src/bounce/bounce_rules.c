/*
 * bounce_rules.c - the classification rule set: parsing rule lines,
 * loading rule files, the compiled-in copy of contrib/bounce-rules.conf,
 * and the names of categories, signals and phases.
 *
 * A rule line is "CATEGORY SIGNAL [phase=..] [code=..] [status=..]
 * [mx=REGEX] [text=REGEX...]" (docs/bounces.md). Regular expressions are
 * POSIX extended, case-insensitive, compiled once here; a rule set is
 * immutable once built, so any thread may classify with it.
 * Runs at start-up and on reload, on whichever thread loads the config.
 */
#include "bounce/bounce_internal.h"
#include "core/core.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bounce_rules_builtin.h" /* generated: bounce_builtin_text[] */

#define RULE_LINE_MAX 4096

static const char *const cat_names[BOUNCE_CAT_COUNT] = {
	[BOUNCE_CAT_OTHER] = "other",
	[BOUNCE_CAT_BAD_MAILBOX] = "bad-mailbox",
	[BOUNCE_CAT_BAD_DOMAIN] = "bad-domain",
	[BOUNCE_CAT_INACTIVE_MAILBOX] = "inactive-mailbox",
	[BOUNCE_CAT_QUOTA_ISSUES] = "quota-issues",
	[BOUNCE_CAT_SPAM_RELATED] = "spam-related",
	[BOUNCE_CAT_POLICY_RELATED] = "policy-related",
	[BOUNCE_CAT_CONTENT_RELATED] = "content-related",
	[BOUNCE_CAT_VIRUS_RELATED] = "virus-related",
	[BOUNCE_CAT_INVALID_SENDER] = "invalid-sender",
	[BOUNCE_CAT_RELAYING_ISSUES] = "relaying-issues",
	[BOUNCE_CAT_ROUTING_ERRORS] = "routing-errors",
	[BOUNCE_CAT_PROTOCOL_ERRORS] = "protocol-errors",
	[BOUNCE_CAT_BAD_CONNECTION] = "bad-connection",
	[BOUNCE_CAT_NO_ANSWER_FROM_HOST] = "no-answer-from-host",
	[BOUNCE_CAT_BAD_CONFIGURATION] = "bad-configuration",
	[BOUNCE_CAT_MESSAGE_EXPIRED] = "message-expired",
	[BOUNCE_CAT_BLOCKLISTED] = "blocklisted",
	[BOUNCE_CAT_THROTTLED] = "throttled",
};

static const char *const sig_names[BOUNCE_SIG_COUNT] = {
	[BOUNCE_SIG_NONE] = "none",
	[BOUNCE_SIG_CONNECTION] = "connection",
	[BOUNCE_SIG_REPUTATION] = "reputation",
};

static const char *const phase_names[BOUNCE_PHASE_COUNT] = {
	[BOUNCE_PHASE_ANY] = "any",
	[BOUNCE_PHASE_DNS] = "dns",
	[BOUNCE_PHASE_CONNECT] = "connect",
	[BOUNCE_PHASE_GREETING] = "greeting",
	[BOUNCE_PHASE_EHLO] = "ehlo",
	[BOUNCE_PHASE_STARTTLS] = "starttls",
	[BOUNCE_PHASE_MAIL] = "mail",
	[BOUNCE_PHASE_RCPT] = "rcpt",
	[BOUNCE_PHASE_DATA] = "data",
	[BOUNCE_PHASE_EOM] = "eom",
	[BOUNCE_PHASE_LOCAL] = "local",
};

static int
name_parse(const char *const *names, int n, const char *s, size_t len)
{
	for (int i = 0; i < n; i++)
		if (strlen(names[i]) == len && strncasecmp(names[i], s, len) == 0)
			return i;
	return -1;
}

const char *
bounce_category_name(enum bounce_category c)
{
	return (unsigned)c < BOUNCE_CAT_COUNT ? cat_names[c] : "other";
}

int
bounce_category_parse(const char *s, enum bounce_category *out)
{
	int i = name_parse(cat_names, BOUNCE_CAT_COUNT, s, strlen(s));
	if (i < 0)
		return -1;
	*out = (enum bounce_category)i;
	return 0;
}

const char *
bounce_signal_name(enum bounce_signal s)
{
	return (unsigned)s < BOUNCE_SIG_COUNT ? sig_names[s] : "none";
}

int
bounce_signal_parse(const char *s, enum bounce_signal *out)
{
	int i = strcmp(s, "-") == 0 ? 0 :
	        name_parse(sig_names, BOUNCE_SIG_COUNT, s, strlen(s));
	if (i < 0)
		return -1;
	*out = (enum bounce_signal)i;
	return 0;
}

const char *
bounce_phase_name(enum bounce_phase p)
{
	return (unsigned)p < BOUNCE_PHASE_COUNT ? phase_names[p] : "any";
}

int
bounce_phase_parse(const char *s, enum bounce_phase *out)
{
	int i = name_parse(phase_names, BOUNCE_PHASE_COUNT, s, strlen(s));
	if (i < 0)
		return -1;
	*out = (enum bounce_phase)i;
	return 0;
}

/* ---- rule set ---- */

struct bounce_rules *
bounce_rules_new(void)
{
	return xcalloc(1, sizeof(struct bounce_rules));
}

static void
rule_clear(struct bounce_rule *ru)
{
	if (ru->has_mx)
		regfree(&ru->mx);
	if (ru->has_text)
		regfree(&ru->text);
	free(ru->origin);
	memset(ru, 0, sizeof(*ru));
}

void
bounce_rules_free(struct bounce_rules *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		rule_clear(&r->v[i]);
	free(r->v);
	free(r);
}

size_t
bounce_rules_count(const struct bounce_rules *r)
{
	return r ? r->n : 0;
}

const char *
bounce_rules_origin(const struct bounce_rules *r, int i)
{
	if (r == NULL || i < 0 || (size_t)i >= r->n)
		return "";
	return r->v[i].origin;
}

/* ---- parsing one line ---- */

struct lineparse {
	const char *origin;
	unsigned lineno;
	char *err;
	size_t errlen;
};

static int
perr(struct lineparse *lp, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (lp->err && lp->errlen)
		snprintf(lp->err, lp->errlen, "%s:%u: %s",
		         lp->origin ? lp->origin : "rule", lp->lineno, msg);
	return -1;
}

/* next_word - cut the next space-separated word; NULL at the end */
static char *
next_word(char **pp)
{
	char *p = *pp, *w;

	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0')
		return NULL;
	w = p;
	while (*p && *p != ' ' && *p != '\t')
		p++;
	if (*p)
		*p++ = '\0';
	*pp = p;
	return w;
}

#define RE_MAX_LEN 1024    /* bytes of one pattern */
#define RE_MAX_REPEAT 100  /* largest {n,m} bound */

/* re_too_costly - patterns whose compilation can take gigabytes in
 * glibc's regcomp: a quantifier stacked on a quantifier ("a++", "a*{2}")
 * or a bounded repeat over RE_MAX_REPEAT. The reason, or NULL if fine. */
static const char *
re_too_costly(const char *p)
{
	int prev_quant = 0;

	if (strlen(p) > RE_MAX_LEN)
		return "longer than 1024 bytes";
	for (; *p; p++) {
		int quant = *p == '*' || *p == '+' || *p == '?' || *p == '{';
		if (*p == '\\' && p[1]) {
			p++;
		} else if (*p == '[') { /* a bracket expression is one atom */
			const char *q = p + 1 + (p[1] == '^') + (p[1 + (p[1] == '^')] == ']');
			while (*q && *q != ']')
				q++;
			p = *q ? q : p;
		} else if (quant && prev_quant) {
			return "a quantifier on a quantifier";
		} else if (*p == '{') {
			char *e;
			unsigned long n = strtoul(p + 1, &e, 10);
			unsigned long m = *e == ',' ? strtoul(e + 1, &e, 10) : n;
			if (n > RE_MAX_REPEAT || m > RE_MAX_REPEAT)
				return "a repeat count over 100";
			while (*p && *p != '}')
				p++;
			if (*p == '\0')
				break;
		}
		prev_quant = quant;
	}
	return NULL;
}

static int
compile_re(struct lineparse *lp, regex_t *re, const char *src,
           const char *what)
{
	const char *why;
	int rc;
	char buf[256];

	if (*src == '\0')
		return perr(lp, "%s= needs a regular expression", what);
	if ((why = re_too_costly(src)) != NULL)
		return perr(lp, "%s=: pattern refused: %s", what, why);
	rc = regcomp(re, src, REG_EXTENDED | REG_ICASE | REG_NOSUB);
	if (rc != 0) {
		regerror(rc, re, buf, sizeof(buf));
		return perr(lp, "%s=%s: %s", what, src, buf);
	}
	return 0;
}

static int
parse_status(struct lineparse *lp, struct bounce_rule *ru, const char *v)
{
	const char *p = v;

	for (int i = 0; i < 3; i++) {
		char *end;
		if (*p == '*') {
			ru->st[i] = BOUNCE_ANY;
			end = (char *)p + 1;
		} else {
			if (!isdigit((unsigned char)*p))
				goto bad;
			ru->st[i] = (int)strtol(p, &end, 10);
			if (end - p > 3)
				goto bad;
		}
		if (i < 2 && *end != '.')
			goto bad;
		p = end + (i < 2);
	}
	if (*p != '\0' || (ru->st[0] != BOUNCE_ANY && ru->st[0] != 2 &&
	                   ru->st[0] != 4 && ru->st[0] != 5))
		goto bad;
	ru->has_status = 1;
	return 0;
bad:
	return perr(lp, "status=%s: expected CLASS.SUBJECT.DETAIL, each a "
	            "number or '*', class 2, 4 or 5", v);
}

static int
parse_code(struct lineparse *lp, struct bounce_rule *ru, const char *v)
{
	if (strlen(v) != 3 || !isdigit((unsigned char)v[0]))
		goto bad;
	for (int i = 1; i < 3; i++)
		if (!isdigit((unsigned char)v[i]) && v[i] != 'x' && v[i] != 'X')
			goto bad;
	for (int i = 0; i < 3; i++)
		ru->code[i] = (char)tolower((unsigned char)v[i]);
	ru->code[3] = '\0';
	ru->has_code = 1;
	return 0;
bad:
	return perr(lp, "code=%s: expected three characters, a digit then "
	            "digits or 'x' (550, 5xx, 000 = no reply)", v);
}

static int
parse_phases(struct lineparse *lp, struct bounce_rule *ru, char *v)
{
	char *save = NULL;

	for (char *t = strtok_r(v, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		enum bounce_phase ph;
		if (bounce_phase_parse(t, &ph) != 0)
			return perr(lp, "phase=%s: unknown phase (dns, connect, "
			            "greeting, ehlo, starttls, mail, rcpt, data, "
			            "eom, local, any)", t);
		ru->phases |= 1u << ph;
	}
	if (ru->phases & 1u) /* "any" */
		ru->phases = 0;
	return 0;
}

/* parse_term - one key=value condition; text= takes the rest of line */
static int
parse_term(struct lineparse *lp, struct bounce_rule *ru, char *w, char **rest)
{
	char *v = strchr(w, '=');

	if (v == NULL)
		return perr(lp, "'%s': expected key=value (phase, code, status, "
		            "mx, text)", w);
	*v++ = '\0';
	if (strcmp(w, "text") == 0) {
		char *all = v;
		if (**rest) { /* re-join: the regex is the rest of the line */
			v[strlen(v)] = ' ';
			*rest += strlen(*rest);
		}
		while (*all && all[strlen(all) - 1] == ' ')
			all[strlen(all) - 1] = '\0';
		if (ru->has_text)
			return perr(lp, "text= given twice");
		if (compile_re(lp, &ru->text, all, "text") != 0)
			return -1;
		ru->has_text = 1;
		return 0;
	}
	if (strcmp(w, "mx") == 0) {
		if (ru->has_mx)
			return perr(lp, "mx= given twice");
		if (compile_re(lp, &ru->mx, v, "mx") != 0)
			return -1;
		ru->has_mx = 1;
		return 0;
	}
	if (strcmp(w, "status") == 0)
		return parse_status(lp, ru, v);
	if (strcmp(w, "code") == 0)
		return parse_code(lp, ru, v);
	if (strcmp(w, "phase") == 0)
		return parse_phases(lp, ru, v);
	return perr(lp, "unknown condition '%s' (phase, code, status, mx, "
	            "text)", w);
}

/* parse_rule - fill ru from a comment-free, non-empty line */
static int
parse_rule(struct lineparse *lp, struct bounce_rule *ru, char *line)
{
	char *p = line, *w;

	w = next_word(&p);
	if (bounce_category_parse(w, &ru->cat) != 0)
		return perr(lp, "unknown category '%s'", w);
	w = next_word(&p);
	if (w == NULL)
		return perr(lp, "missing signal (none, connection, reputation)");
	if (bounce_signal_parse(w, &ru->sig) != 0)
		return perr(lp, "unknown signal '%s' (none, connection, "
		            "reputation)", w);
	while ((w = next_word(&p)) != NULL)
		if (parse_term(lp, ru, w, &p) != 0)
			return -1;
	return 0;
}

/* add_one - parse into the next slot; the slot is only kept on success */
static int
add_one(struct bounce_rules *r, struct lineparse *lp, const char *line)
{
	char buf[RULE_LINE_MAX], origin[512];
	struct bounce_rule ru;
	size_t len = strlen(line);

	while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' ||
	               line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	while (len && (*line == ' ' || *line == '\t'))
		line++, len--;
	if (len == 0 || *line == '#')
		return 0;
	if (len >= sizeof(buf))
		return perr(lp, "line longer than %d bytes", RULE_LINE_MAX - 1);
	memcpy(buf, line, len);
	buf[len] = '\0';
	memset(&ru, 0, sizeof(ru));
	if (parse_rule(lp, &ru, buf) != 0) {
		rule_clear(&ru);
		return -1;
	}
	snprintf(origin, sizeof(origin), "%s:%u",
	         lp->origin ? lp->origin : "rule", lp->lineno);
	ru.origin = xstrdup(origin);
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 64;
		r->v = xrealloc(r->v, r->cap * sizeof(*r->v));
	}
	r->v[r->n++] = ru;
	return 0;
}

int
bounce_rules_add_line(struct bounce_rules *r, const char *line,
                      const char *origin, unsigned lineno, char *err,
                      size_t errlen)
{
	struct lineparse lp = { origin, lineno, err, errlen };

	if (r == NULL || line == NULL)
		return perr(&lp, "no rule set or line");
	return add_one(r, &lp, line);
}

static void
truncate_to(struct bounce_rules *r, size_t n)
{
	while (r->n > n)
		rule_clear(&r->v[--r->n]);
}

int
bounce_rules_add_file(struct bounce_rules *r, const char *path, char *err,
                      size_t errlen)
{
	char line[RULE_LINE_MAX + 2];
	size_t before = r->n;
	unsigned lineno = 0;
	int rc = -1;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			snprintf(err, errlen, "%s:%u: line longer than %d bytes",
			         path, lineno, RULE_LINE_MAX - 1);
			goto done;
		}
		if (bounce_rules_add_line(r, line, path, lineno, err, errlen) != 0)
			goto done;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error", path);
		goto done;
	}
	rc = 0;
done:
	if (rc != 0)
		truncate_to(r, before);
	fclose(f);
	return rc;
}

void
bounce_rules_add_builtin(struct bounce_rules *r)
{
	const char *p = bounce_builtin_text;
	unsigned lineno = 0;
	char line[RULE_LINE_MAX], err[256];

	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		lineno++;
		if (len >= sizeof(line))
			len = sizeof(line) - 1;
		memcpy(line, p, len);
		line[len] = '\0';
		/* the build tests the shipped file; a failure here is a bug */
		if (bounce_rules_add_line(r, line, "builtin", lineno, err,
		                          sizeof(err)) != 0)
			log_errx("-", "bounce: built-in rule skipped: %s", err);
		p = nl ? nl + 1 : p + len;
	}
}

struct bounce_rules *
bounce_rules_load(const char *path, char *err, size_t errlen)
{
	struct bounce_rules *r = bounce_rules_new();

	if (bounce_rules_add_file(r, path, err, errlen) != 0) {
		bounce_rules_free(r);
		return NULL;
	}
	return r;
}

struct bounce_rules *
bounce_rules_builtin(void)
{
	struct bounce_rules *r = bounce_rules_new();
	bounce_rules_add_builtin(r);
	return r;
}
