/*
 * mxsched_aimd.c - the arithmetic of adaptive throttles, pure (no state
 * beyond the structs it is given, no I/O), so unit tests drive it alone.
 *
 * AIMD per (source address, site): a throttling or reputation reply halves
 * the connections (not below 1) and the recipient rate (not below the
 * floor) allowed; each round of clean transactions (one per connection
 * allowed) adds one connection and one rate step back. The rate step is a
 * tenth of the rate in force before the first cut, so about ten rounds
 * climb back from any depth to where the site started. A token bucket
 * turns the rate into waits.
 */
#include "mxsched/mxsched_internal.h"

#include <string.h>

#define AIMD_FACTOR 0.5         /* kept of the limits on a cut */
#define AIMD_STEPS 10.0         /* clean transactions from a cut to the top */
#define BUCKET_SECONDS 2.0      /* burst: this many seconds of the rate */

void
aimd_init(struct aimd *a, unsigned max_conns, double max_rate, double min_rate)
{
	memset(a, 0, sizeof(*a));
	a->max_conns = max_conns ? max_conns : 1;
	a->conns = a->max_conns;
	a->max_rate = max_rate;
	a->rate = max_rate;
	a->min_rate = min_rate > 0 ? min_rate : 1;
}

int
aimd_cut(struct aimd *a, double observed, uint64_t now)
{
	double base;

	if (a->cuts > 0 && now < a->last_cut_ms + AIMD_HOLD_MS)
		return 0;
	a->cuts++;
	a->last_cut_ms = now;
	a->conns *= AIMD_FACTOR;
	if (a->conns < 1)
		a->conns = 1;
	/* the rate in force, or (no limit yet) what was sent lately */
	base = a->rate > 0 ? a->rate : observed;
	if (base < a->min_rate)
		base = a->min_rate;
	if (a->rate_ceiling <= 0) { /* the first cut from the top */
		a->rate_ceiling = a->max_rate > 0 ? a->max_rate : base;
		a->rate_step = a->rate_ceiling / AIMD_STEPS;
		if (a->rate_step < 1)
			a->rate_step = 1;
	}
	a->rate = base * AIMD_FACTOR;
	if (a->rate < a->min_rate)
		a->rate = a->min_rate;
	return 1;
}

void
aimd_raise(struct aimd *a)
{
	/* one step per round of transactions over the connections allowed,
	 * as TCP grows its window by one segment per round trip */
	double round = (double)aimd_conns(a);

	if (a->conns < a->max_conns) {
		a->conns += 1.0 / round;
		if (a->conns > a->max_conns - 1e-9)
			a->conns = a->max_conns;
	}
	if (a->rate_step <= 0 || a->rate == a->max_rate)
		return;
	a->rate += a->rate_step / round;
	if (a->rate >= a->rate_ceiling) {
		/* back at the top: the shape's rate (or no limit) again */
		a->rate = a->max_rate;
		a->rate_step = 0;
		a->rate_ceiling = 0;
	}
}

unsigned
aimd_conns(const struct aimd *a)
{
	unsigned n = (unsigned)(a->conns + 1e-9);

	return n < 1 ? 1 : n;
}

int
aimd_at_floor(const struct aimd *a)
{
	return aimd_conns(a) == 1 && a->rate > 0 && a->rate <= a->min_rate;
}

int
aimd_reduced(const struct aimd *a)
{
	return aimd_conns(a) < a->max_conns || a->rate != a->max_rate;
}

/* tbucket_fill - tokens earned since the last look, capped at the burst */
static void
tbucket_fill(struct tbucket *b, double rate, uint64_t now)
{
	double burst = rate * BUCKET_SECONDS / 60.0;

	if (burst < 1)
		burst = 1;
	if (b->last_ms == 0 || now < b->last_ms) {
		b->tokens = burst;
	} else {
		b->tokens += (double)(now - b->last_ms) * rate / 60000.0;
		if (b->tokens > burst)
			b->tokens = burst;
	}
	b->last_ms = now;
}

uint64_t
tbucket_wait(struct tbucket *b, double rate, uint64_t now)
{
	if (rate <= 0)
		return 0;
	tbucket_fill(b, rate, now);
	if (b->tokens >= 1)
		return 0;
	/* a batch may start once one recipient's worth is there; a batch
	 * larger than that leaves the bucket in debt */
	return (uint64_t)((1.0 - b->tokens) * 60000.0 / rate) + 1;
}

void
tbucket_take(struct tbucket *b, double rate, size_t n, uint64_t now)
{
	if (rate <= 0)
		return;
	tbucket_fill(b, rate, now);
	b->tokens -= (double)n;
}
