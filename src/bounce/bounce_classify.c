/*
 * bounce_classify.c - classify one remote reply (or our own failure
 * reason) with a rule set: first matching rule wins.
 *
 * Pure and thread-safe (regexec on compiled, read-only rules). Called by
 * the scheduler on the loop thread for every non-2xx recipient reply and
 * for connection-level failures.
 */
#include "bounce/bounce_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

size_t
bounce_status_scan(const char *s, int st[3])
{
	const char *p = s;

	for (int i = 0; i < 3; i++) {
		int n = 0, v = 0;
		while (isdigit((unsigned char)*p) && n < 4) {
			v = v * 10 + (*p - '0');
			p++, n++;
		}
		if (n == 0 || n > 3 || (i == 0 && n != 1))
			return 0;
		st[i] = v;
		if (i < 2) {
			if (*p != '.')
				return 0;
			p++;
		}
	}
	if (isdigit((unsigned char)*p) || *p == '.')
		return 0;
	return (size_t)(p - s);
}

void
bounce_status_of(const struct bounce_reply *reply, struct bounce_status *out)
{
	const char *src = reply->enhanced;
	int cls = reply->code / 100;

	memset(out, 0, sizeof(*out));
	if (src == NULL || *src == '\0')
		src = reply->text;
	if (src == NULL)
		return;
	while (*src == ' ' || *src == '-')
		src++;
	if (bounce_status_scan(src, out->st) == 0)
		return;
	if (out->st[0] != 2 && out->st[0] != 4 && out->st[0] != 5)
		return;
	/* RFC 3463: the class must agree with the basic code; it wins */
	if (cls == 2 || cls == 4 || cls == 5)
		out->st[0] = cls;
	out->valid = 1;
}

static int
code_match(const char *pat, int code)
{
	char c[8];

	if (code < 0 || code > 999)
		return 0;
	snprintf(c, sizeof(c), "%03d", code);
	for (int i = 0; i < 3; i++)
		if (pat[i] != 'x' && pat[i] != c[i])
			return 0;
	return 1;
}

static int
status_match(const struct bounce_rule *ru, const struct bounce_status *st)
{
	if (!st->valid)
		return 0;
	for (int i = 0; i < 3; i++)
		if (ru->st[i] != BOUNCE_ANY && ru->st[i] != st->st[i])
			return 0;
	return 1;
}

/* rule_match - every condition the rule sets holds for the reply */
static int
rule_match(const struct bounce_rule *ru, const struct bounce_reply *reply,
           const struct bounce_status *st)
{
	if (ru->phases && !(ru->phases & (1u << reply->phase)))
		return 0;
	if (ru->has_code && !code_match(ru->code, reply->code))
		return 0;
	if (ru->has_status && !status_match(ru, st))
		return 0;
	if (ru->has_mx &&
	    regexec(&ru->mx, reply->mx_host ? reply->mx_host : "", 0, NULL, 0))
		return 0;
	if (ru->has_text &&
	    regexec(&ru->text, reply->text ? reply->text : "", 0, NULL, 0))
		return 0;
	return 1;
}

/* is_permanent - the basic code decides; with none, the enhanced class */
static int
is_permanent(const struct bounce_reply *reply, const struct bounce_status *st)
{
	if (reply->code >= 100)
		return reply->code / 100 == 5;
	return st->valid && st->st[0] == 5;
}

struct bounce_class
bounce_classify(const struct bounce_rules *r, const struct bounce_reply *reply)
{
	struct bounce_class c = { BOUNCE_CAT_OTHER, BOUNCE_SIG_NONE, 0, -1 };
	struct bounce_reply rp;
	struct bounce_status st;

	if (reply == NULL)
		return c;
	rp = *reply;
	if ((unsigned)rp.phase >= BOUNCE_PHASE_COUNT)
		rp.phase = BOUNCE_PHASE_ANY;
	bounce_status_of(&rp, &st);
	c.permanent = is_permanent(&rp, &st);
	for (size_t i = 0; r != NULL && i < r->n; i++) {
		if (rule_match(&r->v[i], &rp, &st)) {
			c.cat = r->v[i].cat;
			c.sig = r->v[i].sig;
			c.rule = (int)i;
			break;
		}
	}
	return c;
}
