/*
 * test_resolve.c - the real dns.c + resolve.c against the scripted
 * server of fakedns.c on one libevent loop: RFC 5321/7505 outcomes,
 * query counts (coalescing, cache), cancellation, bounds.
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
#include "fakedns.h"
#include "test_resolve.h"

#define T_A 1
#define T_AAAA 28
#define T_MX 15
#define T_TXT 16

struct fx {
	struct event_base *base;
	struct fakedns *fake;
	struct dns *dns;
	struct resolver *res;
	struct resolve_options ropt;
	unsigned max_inflight;
};

/* what one callback saw, copied out of the result */
struct seen {
	int calls;
	enum resolve_status status;
	int code;
	char reason[512];
	char site_key[512];
	int implicit;
	int null_mx;
	size_t n_mx;
	char names[8][128];
	unsigned prefs[8];
	size_t n_addrs[8];
	char addr0[8][64];
	int has_error[8];
};

static struct fx *
fx_start(struct fx *f)
{
	struct dns_options dopt = { fakedns_server(f->fake), 300, 1,
		f->max_inflight };
	char err[256];

	f->dns = dns_new(f->base, &dopt, err, sizeof(err));
	if (f->dns == NULL)
		fail_msg("dns_new: %s", err);
	f->res = resolver_new(f->base, f->dns, &f->ropt);
	return f;
}

int
resolve_setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));

	f->base = event_base_new();
	f->fake = fakedns_new(f->base);
	f->ropt.min_ttl_ms = 60000;
	f->ropt.seed = 7;
	*state = f;
	return 0;
}

int
resolve_teardown(void **state)
{
	struct fx *f = *state;

	resolver_free(f->res);   /* drops pending requests silently */
	dns_free(f->dns);
	fakedns_free(f->fake);
	event_base_free(f->base);
	free(f);
	return 0;
}

static void
on_seen(void *arg, const struct resolve_result *r)
{
	struct seen *s = arg;

	s->calls++;
	s->status = r->status;
	s->code = r->code;
	snprintf(s->reason, sizeof(s->reason), "%s", r->reason ? r->reason : "");
	snprintf(s->site_key, sizeof(s->site_key), "%s",
	         r->site_key ? r->site_key : "");
	s->implicit = r->implicit_mx;
	s->null_mx = r->null_mx;
	s->n_mx = r->n_mx;
	for (size_t i = 0; i < r->n_mx && i < 8; i++) {
		snprintf(s->names[i], sizeof(s->names[i]), "%s", r->mx[i].name);
		s->prefs[i] = r->mx[i].pref;
		s->n_addrs[i] = r->mx[i].n_addrs;
		s->has_error[i] = r->mx[i].error != NULL;
		snprintf(s->addr0[i], sizeof(s->addr0[i]), "%s",
		         r->mx[i].n_addrs ? r->mx[i].addrs[0].text : "");
	}
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(int *)arg = 1;
}

/* run - turn the loop until *calls reaches want (10 s safety net) */
static void
run(struct fx *f, const int *calls, int want)
{
	int expired = 0;
	struct timeval tv = { 10, 0 };
	struct event *t = evtimer_new(f->base, on_deadline, &expired);

	evtimer_add(t, &tv);
	while (*calls < want && !expired)
		event_base_loop(f->base, EVLOOP_ONCE);
	event_free(t);
	if (expired)
		fail_msg("no answer: %d of %d callbacks", *calls, want);
}

static struct seen
resolve1(struct fx *f, const char *domain)
{
	struct seen s;

	memset(&s, 0, sizeof(s));
	resolve_domain(f->res, domain, on_seen, &s);
	assert_int_equal(s.calls, 0);          /* never from inside the call */
	run(f, &s.calls, 1);
	return s;
}

void
test_resolve_mx_order(void **state)
{
	struct fx *f = *state;
	struct seen s;

	fakedns_add(f->fake, "ex.test", T_MX, "20 mx3.ex.test", 300);
	fakedns_add(f->fake, "ex.test", T_MX, "10 MX1.ex.test", 300);
	fakedns_add(f->fake, "ex.test", T_MX, "10 mx2.ex.test", 300);
	fakedns_add(f->fake, "ex.test", T_A, "192.0.2.99", 300);
	fakedns_add(f->fake, "mx1.ex.test", T_A, "127.0.1.1", 300);
	fakedns_add(f->fake, "mx2.ex.test", T_A, "127.0.1.2", 300);
	fakedns_add(f->fake, "mx2.ex.test", T_AAAA, "2001:db8::2", 300);
	fakedns_add(f->fake, "mx3.ex.test", T_A, "127.0.1.3", 300);
	fx_start(f);
	s = resolve1(f, "EX.test.");
	assert_int_equal(s.status, RESOLVE_OK);
	assert_int_equal(s.code, 0);
	assert_false(s.implicit);
	assert_int_equal(s.n_mx, 3);
	assert_int_equal(s.prefs[0], 10);
	assert_int_equal(s.prefs[1], 10);
	assert_string_equal(s.names[2], "mx3.ex.test");
	assert_string_equal(s.addr0[2], "127.0.1.3");
	for (int i = 0; i < 2; i++)
		if (strcmp(s.names[i], "mx2.ex.test") == 0)
			assert_int_equal(s.n_addrs[i], 2);  /* A + AAAA */
	assert_string_equal(s.site_key,
	                    "10:mx1.ex.test,mx2.ex.test;20:mx3.ex.test");
	assert_int_equal(fakedns_count(f->fake, "ex.test", T_MX), 1);
	assert_int_equal(fakedns_count(f->fake, "ex.test", T_A), 0);
	assert_int_equal(fakedns_count(f->fake, "mx1.ex.test", T_A), 1);
	assert_int_equal(fakedns_count(f->fake, "mx1.ex.test", T_AAAA), 1);
}

void
test_resolve_coalesce(void **state)
{
	struct fx *f = *state;
	static struct seen s[1000];
	int calls = 0;
	struct resolve_stats st;

	fakedns_add(f->fake, "co.test", T_MX, "10 mx.shared.test", 300);
	fakedns_add(f->fake, "co2.test", T_MX, "10 mx.shared.test", 300);
	fakedns_add(f->fake, "mx.shared.test", T_A, "127.0.1.5", 300);
	fx_start(f);
	memset(s, 0, sizeof(s));
	for (int i = 0; i < 1000; i++)
		resolve_domain(f->res, i % 2 ? "co.test" : "CO2.test", on_seen,
		               &s[i]);
	while (calls < 1000) {
		int before = calls;

		run(f, &s[999].calls, 1);
		calls = 0;
		for (int i = 0; i < 1000; i++)
			calls += s[i].calls;
		assert_true(calls >= before);
	}
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(s[i].calls, 1);
		assert_int_equal(s[i].status, RESOLVE_OK);
		assert_string_equal(s[i].site_key, "10:mx.shared.test");
	}
	assert_int_equal(fakedns_count(f->fake, "co.test", T_MX), 1);
	assert_int_equal(fakedns_count(f->fake, "co2.test", T_MX), 1);
	assert_int_equal(fakedns_count(f->fake, "mx.shared.test", T_A), 1);
	assert_int_equal(fakedns_count(f->fake, "mx.shared.test", T_AAAA), 1);
	resolver_get_stats(f->res, &st);
	assert_int_equal(st.requests, 1000);
	assert_int_equal(st.coalesced, 998);
	assert_int_equal(st.queries_sent, 4);
	assert_int_equal(st.ok, 1000);
}

void
test_resolve_implicit(void **state)
{
	struct fx *f = *state;
	struct seen s;

	fakedns_add(f->fake, "impl.test", T_A, "127.0.1.9", 300);
	fakedns_add(f->fake, "impl.test", T_AAAA, "::1", 300);
	fx_start(f);
	s = resolve1(f, "impl.test");
	assert_int_equal(s.status, RESOLVE_OK);
	assert_true(s.implicit);
	assert_int_equal(s.n_mx, 1);
	assert_string_equal(s.names[0], "impl.test");
	assert_int_equal(s.prefs[0], 0);
	assert_int_equal(s.n_addrs[0], 2);
	assert_string_equal(s.addr0[0], "127.0.1.9");
	assert_string_equal(s.site_key, "0:impl.test");
}

void
test_resolve_null_mx(void **state)
{
	struct fx *f = *state;
	struct seen s;

	fakedns_add(f->fake, "null.test", T_MX, "0 .", 300);
	fakedns_add(f->fake, "null.test", T_A, "127.0.1.9", 300);
	fx_start(f);
	s = resolve1(f, "null.test");
	assert_int_equal(s.status, RESOLVE_PERM);
	assert_int_equal(s.code, 556);
	assert_non_null(strstr(s.reason, "556 5.1.10"));
	assert_true(s.null_mx);
	assert_int_equal(s.n_mx, 0);
	assert_int_equal(fakedns_count(f->fake, "null.test", T_A), 0);
	assert_int_equal(fakedns_count(f->fake, "", 0), 0);
}

void
test_resolve_nxdomain(void **state)
{
	struct fx *f = *state;
	struct seen s;

	fx_start(f);
	s = resolve1(f, "nope.test");
	assert_int_equal(s.status, RESOLVE_PERM);
	assert_int_equal(s.code, 550);
	assert_non_null(strstr(s.reason, "550 5.1.2"));
	assert_false(s.null_mx);
	assert_int_equal(fakedns_count(f->fake, NULL, 0), 1);
	s = resolve1(f, "nope.test");            /* negative cache */
	assert_int_equal(s.status, RESOLVE_PERM);
	assert_int_equal(fakedns_count(f->fake, NULL, 0), 1);
}

void
test_resolve_servfail_then_fixed(void **state)
{
	struct fx *f = *state;
	struct seen s;

	fakedns_rcode(f->fake, "sf.test", 2);
	fx_start(f);
	s = resolve1(f, "sf.test");
	assert_int_equal(s.status, RESOLVE_TEMP);
	assert_int_equal(s.code, 451);
	assert_non_null(strstr(s.reason, "4.4.3"));
	assert_non_null(strstr(s.reason, "SERVFAIL"));
	fakedns_clear(f->fake);
	fakedns_add(f->fake, "sf.test", T_MX, "10 mx.sf.test", 300);
	fakedns_add(f->fake, "mx.sf.test", T_A, "127.0.1.8", 300);
	s = resolve1(f, "sf.test");            /* temp answer still cached */
	assert_int_equal(s.status, RESOLVE_TEMP);
	resolver_flush(f->res);
	s = resolve1(f, "sf.test");
	assert_int_equal(s.status, RESOLVE_OK);
	assert_string_equal(s.addr0[0], "127.0.1.8");

	fakedns_rcode(f->fake, "ref.test", 5); /* REFUSED: temporary too */
	s = resolve1(f, "ref.test");
	assert_int_equal(s.status, RESOLVE_TEMP);
}

void
test_resolve_timeout(void **state)
{
	struct fx *f = *state;
	struct seen s;

	fakedns_mode(f->fake, "slow.test", FAKE_DROP);
	fx_start(f);
	s = resolve1(f, "slow.test");
	assert_int_equal(s.status, RESOLVE_TEMP);
	assert_non_null(strstr(s.reason, "TIMEOUT"));
}

void
test_resolve_malformed(void **state)
{
	struct fx *f = *state;
	struct seen s;

	fakedns_mode(f->fake, "junk.test", FAKE_GARBAGE);
	fx_start(f);
	s = resolve1(f, "junk.test");
	assert_int_equal(s.status, RESOLVE_TEMP);
	assert_non_null(strstr(s.reason, "MALFORMED"));
}

void
test_resolve_no_addresses(void **state)
{
	struct fx *f = *state;
	struct seen s;

	fakedns_add(f->fake, "noaddr.test", T_MX, "10 gone.noaddr.test", 300);
	fakedns_add(f->fake, "lit.test", T_MX, "10 192.0.2.1", 300);
	fakedns_add(f->fake, "bare.test", T_TXT, "v=spf1 -all", 300);
	fx_start(f);
	s = resolve1(f, "noaddr.test");
	assert_int_equal(s.status, RESOLVE_TEMP);
	assert_non_null(strstr(s.reason, "451 4.4.4"));
	s = resolve1(f, "lit.test");
	assert_int_equal(s.status, RESOLVE_TEMP);
	assert_non_null(strstr(s.reason, "IP address"));
	assert_int_equal(fakedns_count(f->fake, "192.0.2.1", 0), 0);
	/* no MX and no address at all: the domain cannot receive mail */
	s = resolve1(f, "bare.test");
	assert_int_equal(s.status, RESOLVE_PERM);
	assert_non_null(strstr(s.reason, "5.4.4"));
}

void
test_resolve_partial(void **state)
{
	struct fx *f = *state;
	struct seen s;

	fakedns_add(f->fake, "half.test", T_MX, "10 dead.half.test", 300);
	fakedns_add(f->fake, "half.test", T_MX, "20 live.half.test", 300);
	fakedns_add(f->fake, "live.half.test", T_A, "127.0.1.4", 300);
	fx_start(f);
	s = resolve1(f, "half.test");
	assert_int_equal(s.status, RESOLVE_OK);
	assert_int_equal(s.n_mx, 2);
	assert_string_equal(s.names[0], "dead.half.test");
	assert_int_equal(s.n_addrs[0], 0);
	assert_true(s.has_error[0]);
	assert_int_equal(s.n_addrs[1], 1);
	assert_string_equal(s.site_key, "10:dead.half.test;20:live.half.test");
}

void
test_resolve_cache_ttl(void **state)
{
	struct fx *f = *state;
	struct seen s;
	struct resolve_stats st;
	uint64_t t0;

	fakedns_add(f->fake, "c.test", T_MX, "10 mx.c.test", 300);
	fakedns_add(f->fake, "mx.c.test", T_A, "127.0.1.6", 300);
	fakedns_add(f->fake, "z.test", T_MX, "10 mx.z.test", 0);
	fakedns_add(f->fake, "mx.z.test", T_A, "127.0.1.7", 0);
	f->ropt.min_ttl_ms = 0;
	fx_start(f);
	s = resolve1(f, "c.test");
	assert_int_equal(s.status, RESOLVE_OK);
	s = resolve1(f, "c.test");
	assert_int_equal(s.status, RESOLVE_OK);
	assert_int_equal(fakedns_count(f->fake, "c.test", T_MX), 1);
	assert_int_equal(fakedns_count(f->fake, "mx.c.test", T_A), 1);
	resolver_get_stats(f->res, &st);
	assert_int_equal(st.cache_hits, 3);    /* MX, A, AAAA */
	/* TTL 0 with no floor: every new resolution asks again */
	s = resolve1(f, "z.test");
	assert_int_equal(s.status, RESOLVE_OK);
	t0 = mono_ms();
	while (mono_ms() == t0)              /* let the clock tick */
		;
	s = resolve1(f, "z.test");
	assert_int_equal(s.status, RESOLVE_OK);
	assert_int_equal(fakedns_count(f->fake, "z.test", T_MX), 2);
}

/* a callback that cancels its own request and the next one */
struct selfcancel {
	struct resolve_req *self, *other;
	int calls;
};

static void
on_selfcancel(void *arg, const struct resolve_result *r)
{
	struct selfcancel *c = arg;

	(void)r;
	c->calls++;
	resolve_cancel(c->self);     /* no-op: it is being answered */
	resolve_cancel(c->other);
}

void
test_resolve_cancel(void **state)
{
	struct selfcancel sc1 = { NULL, NULL, 0 }, sc2 = { NULL, NULL, 0 };
	struct fx *f = *state;
	struct seen s[10], last;
	struct resolve_req *q[10];

	fakedns_add(f->fake, "k.test", T_MX, "10 mx.k.test", 300);
	fakedns_add(f->fake, "mx.k.test", T_A, "127.0.1.6", 300);
	fakedns_add(f->fake, "gone.test", T_MX, "10 mx.k.test", 300);
	fx_start(f);
	memset(s, 0, sizeof(s));
	for (int i = 0; i < 10; i++)
		q[i] = resolve_domain(f->res, "k.test", on_seen, &s[i]);
	for (int i = 0; i < 10; i += 2)
		resolve_cancel(q[i]);
	resolve_cancel(NULL);
	/* every request of one domain cancelled: the lookup still fills the
	 * cache, and nobody is called */
	resolve_cancel(resolve_domain(f->res, "gone.test", on_seen, &s[0]));
	run(f, &s[9].calls, 1);
	for (int i = 0; i < 10; i++)
		assert_int_equal(s[i].calls, i % 2);
	memset(&last, 0, sizeof(last));
	last = resolve1(f, "gone.test");
	assert_int_equal(last.status, RESOLVE_OK);
	assert_int_equal(s[0].calls, 0);
	assert_int_equal(fakedns_count(f->fake, "gone.test", T_MX), 1);
	/* cancels from inside callbacks */
	sc1.self = resolve_domain(f->res, "k.test", on_selfcancel, &sc1);
	sc2.self = resolve_domain(f->res, "k.test", on_selfcancel, &sc2);
	sc1.other = sc2.self;
	run(f, &sc1.calls, 1);
	last = resolve1(f, "k.test");
	assert_int_equal(sc1.calls, 1);
	assert_int_equal(sc2.calls, 0);
	/* pending at teardown: resolver_free drops it without a call */
	resolve_domain(f->res, "pending.test", on_seen, &s[0]);
}

void
test_resolve_invalid_and_literal(void **state)
{
	struct fx *f = *state;
	struct seen s;

	fx_start(f);
	s = resolve1(f, "bad..name");
	assert_int_equal(s.status, RESOLVE_PERM);
	assert_non_null(strstr(s.reason, "5.1.3"));
	s = resolve1(f, "-x.test");
	assert_int_equal(s.status, RESOLVE_PERM);
	s = resolve1(f, "[192.0.2.7]");
	assert_int_equal(s.status, RESOLVE_OK);
	assert_string_equal(s.addr0[0], "192.0.2.7");
	assert_string_equal(s.site_key, "0:[192.0.2.7]");
	s = resolve1(f, "[IPv6:2001:DB8::7]");
	assert_int_equal(s.status, RESOLVE_OK);
	assert_string_equal(s.addr0[0], "2001:db8::7");
	s = resolve1(f, "[300.1.1.1]");
	assert_int_equal(s.status, RESOLVE_PERM);
	assert_int_equal(fakedns_count(f->fake, NULL, 0), 0);
}

void
test_resolve_eviction(void **state)
{
	struct fx *f = *state;
	struct resolve_stats st;
	char name[64];
	struct seen s;

	f->ropt.max_entries = 8;
	fx_start(f);
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "d%d.test", i);
		fakedns_add(f->fake, name, T_A, "127.0.1.1", 300);
		s = resolve1(f, name);
		assert_int_equal(s.status, RESOLVE_OK);
		resolver_get_stats(f->res, &st);
		assert_true(st.entries <= 8);
	}
	assert_true(st.evictions >= 60 - 8);
	s = resolve1(f, "d0.test");          /* evicted: asked again */
	assert_int_equal(s.status, RESOLVE_OK);
	assert_int_equal(fakedns_count(f->fake, "d0.test", T_MX), 2);
}

static void
on_count(void *arg, const struct dns_answer *a)
{
	(void)a;
	++*(int *)arg;
}

void
test_resolve_inflight_cap(void **state)
{
	int filled = 0, never = 0;
	struct fx *f = *state;
	static struct seen s[300];
	struct dns_stats ds;
	char name[64];
	int calls = 0;

	f->max_inflight = 3;
	fx_start(f);
	memset(s, 0, sizeof(s));
	/* three slots taken by raw queries; a cancelled query waiting for
	 * a slot is never sent */
	for (int i = 0; i < 3; i++)
		dns_lookup_a(f->dns, "fill.test", on_count, &filled);
	dns_cancel(dns_lookup_txt(f->dns, "never.test", on_count, &never));
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "cap%d.test", i);
		fakedns_add(f->fake, name, T_A, "127.0.1.1", 300);
		resolve_domain(f->res, name, on_seen, &s[i]);
	}
	dns_get_stats(f->dns, &ds);
	assert_true(ds.inflight <= 3);
	while (calls < 100) {
		run(f, &s[99].calls, 1);
		calls = 0;
		for (int i = 0; i < 100; i++)
			calls += s[i].calls;
		dns_get_stats(f->dns, &ds);
		assert_true(ds.inflight <= 3);
	}
	for (int i = 0; i < 100; i++)
		assert_int_equal(s[i].status, RESOLVE_OK);
	assert_int_equal(fakedns_count(f->fake, NULL, T_MX), 100);
	assert_int_equal(fakedns_count(f->fake, "never.test", 0), 0);
	assert_int_equal(never, 0);
	assert_int_equal(filled, 3);
}

/* ---- raw queries (the block-list monitor's A + TXT) ---- */

struct raw_seen {
	int calls;
	enum dns_status st;
	size_t n;
	char first[256];
	uint32_t ttl;
};

static void
on_raw(void *arg, const struct dns_answer *a)
{
	struct raw_seen *r = arg;
	char buf[INET6_ADDRSTRLEN];

	r->calls++;
	r->st = a->status;
	r->n = a->n;
	r->ttl = a->ttl;
	r->first[0] = '\0';
	if (a->status != DNS_OK)
		return;
	if (a->type == DNS_T_TXT)
		snprintf(r->first, sizeof(r->first), "%s", a->txt[0].text);
	else if (a->type == DNS_T_MX)
		snprintf(r->first, sizeof(r->first), "%u %s", a->mx[0].pref,
		         a->mx[0].host);
	else
		snprintf(r->first, sizeof(r->first), "%s", inet_ntop(
		         a->addr[0].family, &a->addr[0].u, buf, sizeof(buf)));
}

void
test_dns_raw_queries(void **state)
{
	struct fx *f = *state;
	struct raw_seen a, t, nx, nd, c;
	struct dns_stats ds;

	fakedns_add(f->fake, "2.0.0.127.bl.test", T_A, "127.0.0.2", 900);
	fakedns_add(f->fake, "2.0.0.127.bl.test", T_TXT, "Listed: see "
	            "https://bl.test/q?2", 900);
	fx_start(f);
	memset(&a, 0, sizeof(a));
	memset(&t, 0, sizeof(t));
	memset(&nx, 0, sizeof(nx));
	memset(&nd, 0, sizeof(nd));
	memset(&c, 0, sizeof(c));
	dns_lookup_a(f->dns, "2.0.0.127.bl.test", on_raw, &a);
	dns_lookup_txt(f->dns, "2.0.0.127.bl.test", on_raw, &t);
	dns_lookup_a(f->dns, "3.0.0.127.bl.test", on_raw, &nx);
	dns_lookup_aaaa(f->dns, "2.0.0.127.bl.test", on_raw, &nd);
	dns_cancel(dns_lookup_mx(f->dns, "2.0.0.127.bl.test", on_raw, &c));
	assert_int_equal(a.calls + t.calls + nx.calls + nd.calls, 0);
	run(f, &nd.calls, 1);
	run(f, &nx.calls, 1);
	run(f, &t.calls, 1);
	run(f, &a.calls, 1);
	assert_int_equal(a.st, DNS_OK);
	assert_string_equal(a.first, "127.0.0.2");
	assert_int_equal(a.ttl, 900);
	assert_int_equal(t.st, DNS_OK);
	assert_string_equal(t.first, "Listed: see https://bl.test/q?2");
	assert_int_equal(nx.st, DNS_NXDOMAIN);
	assert_false(dns_status_is_temp(nx.st));
	assert_int_equal(nd.st, DNS_NODATA);
	/* the cancelled MX query got its answer, but no callback */
	while (fakedns_count(f->fake, NULL, T_MX) == 0)
		event_base_loop(f->base, EVLOOP_ONCE);
	dns_get_stats(f->dns, &ds);
	assert_int_equal(c.calls, 0);
	assert_int_equal(ds.cancelled, 1);
	assert_int_equal(ds.sent[DNS_T_A], 2);
	assert_int_equal(ds.sent[DNS_T_TXT], 1);
}
