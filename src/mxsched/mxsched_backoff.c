/*
 * mxsched_backoff.c - retry and backoff arithmetic. Pure functions: no
 * state, no I/O, unit-tested. (What a reply says about the site is the
 * bounce rules' business: src/bounce.)
 */
#include "mxsched/mxsched.h"
#include "core/core.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int
mxsched_retry_parse(const char *spec, struct mxsched_retry *out)
{
	const char *p = spec;
	char item[64];

	memset(out, 0, sizeof(*out));
	out->jitter_pct = 10;
	if (spec == NULL || *spec == '\0')
		return -1;
	for (;;) {
		size_t n = strcspn(p, ",");
		uint64_t ms;
		if (n == 0 || n >= sizeof(item))
			goto bad;
		memcpy(item, p, n);
		item[n] = '\0';
		if (parse_duration_ms(item, &ms) < 0 || ms == 0)
			goto bad;
		out->delays_ms = xrealloc(out->delays_ms, (out->n + 1) * sizeof(uint64_t));
		out->delays_ms[out->n++] = ms;
		if (p[n] == '\0')
			return 0;
		p += n + 1;
	}
bad:
	mxsched_retry_free(out);
	return -1;
}

void
mxsched_retry_free(struct mxsched_retry *r)
{
	free(r->delays_ms);
	r->delays_ms = NULL;
	r->n = 0;
}

uint64_t
mxsched_retry_delay(const struct mxsched_retry *r, unsigned attempts,
                    uint32_t rnd)
{
	size_t i = attempts == 0 ? 0 : attempts - 1;
	uint64_t d, span;

	if (r->n == 0)
		return 300000;
	if (i >= r->n)
		i = r->n - 1;
	d = r->delays_ms[i];
	span = d * r->jitter_pct / 100;
	if (span == 0)
		return d;
	/* uniform in [d - span, d + span] */
	return d - span + (uint64_t)rnd % (2 * span + 1);
}

uint64_t
mxsched_retry_next(const struct mxsched_retry *r, unsigned attempts,
                   uint64_t now, uint64_t submit_ms, uint64_t lifetime_ms,
                   uint32_t rnd)
{
	uint64_t next = now + mxsched_retry_delay(r, attempts, rnd);
	uint64_t end = submit_ms + lifetime_ms;

	if (now >= end)
		return 0;
	/* one last try at the end of the lifetime rather than none */
	return next > end ? end : next;
}

uint64_t
mxsched_backoff_delay(uint64_t base_ms, uint64_t cap_ms, unsigned level)
{
	uint64_t d = base_ms;

	while (level > 1 && d < cap_ms) {
		d *= 2;
		level--;
	}
	return d > cap_ms ? cap_ms : d;
}
