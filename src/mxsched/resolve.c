/*
 * resolve.c - recipient domain -> ordered exchangers with addresses.
 *
 * RFC 5321 section 5: MX lookup; no MX (NODATA) means the implicit MX, the
 * domain itself; MX present means never the domain's own addresses; then
 * A and AAAA of every exchanger. RFC 7505 null MX and NXDOMAIN fail
 * permanently, SERVFAIL/timeouts and exchangers without addresses fail
 * temporarily.
 *
 * Owns a cache of DNS records (struct rentry, one per (type, name): MX of
 * a domain, A or AAAA of a host) with TTLs clamped to [min_ttl, max_ttl],
 * negative entries, LRU eviction beyond max_entries, and one job (struct
 * rjob) per domain being resolved: every request for that domain joins
 * it, every job needing a record joins that record's query. A job holds a
 * reference on each record it uses (held records are never evicted), and
 * a record fetched during a job counts as fresh for it whatever its TTL.
 *
 * Runs on the event loop of the base given to resolver_new(); requests are
 * started from one "ready" event so that no callback runs inside
 * resolve_domain().
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <idn2.h>

#include "core/core.h"
#include "mxsched/resolve.h"
#include "mxsched/sitekey.h"

#define RESOLVE_MAX_MX 10   /* exchangers used per domain (lowest prefs) */

enum ent_state { ENT_NEW, ENT_PENDING, ENT_DONE };

/* rnode - hash table link, first member of rentry and rjob */
struct rnode {
	struct rnode *hnext;
	uint32_t hash;
	char *key;
};

struct rtab {
	struct rnode **b;
	size_t size, n;
};

struct rentry {
	struct rnode node;           /* key: type letter + name */
	struct resolver *r;
	enum dns_type type;
	const char *name;            /* points into node.key */
	struct rentry *lru_prev, *lru_next;
	enum ent_state state;
	enum dns_status status;
	uint64_t fetched_ms, expires_ms;
	struct dns_mx *mx;           /* DNS_T_MX */
	struct resolve_addr *addrs;  /* DNS_T_A, DNS_T_AAAA */
	size_t n;
	struct dns_query *q;
	struct rjob **waiters;
	size_t n_waiters, cap_waiters;
	unsigned refs;
};

struct rhold {
	struct rentry *e;
	int waiting;
};

struct resolve_req {
	struct rjob *job;
	resolve_cb cb;
	void *arg;
	struct resolve_req *prev, *next;
};

struct rjob {
	struct rnode node;           /* key: normalized domain, "!raw" if bad */
	struct resolver *r;
	const char *domain;
	int invalid;
	int literal;                 /* "[192.0.2.1]": no DNS at all */
	int null_mx;                 /* the MX answer was RFC 7505's */
	struct resolve_addr lit;
	uint64_t started_ms;
	struct rhold *holds;
	size_t n_holds, cap_holds, pending;
	struct resolve_req *reqs, *reqs_tail;
	struct rjob *ready_next;
	int on_ready;
};

struct resolver {
	struct event_base *base;
	struct dns *dns;
	struct resolve_options opt;
	struct rtab entries, jobs;
	struct rentry *lru_head, *lru_tail;
	struct rjob *ready_head, *ready_tail;
	struct event *ready_ev;
	uint64_t rng;
	struct resolve_stats st;
};

/* what a finished job hands to each request, before its own shuffle */
struct rout {
	struct resolve_result res;
	struct resolve_mx *mx;       /* base order */
	struct resolve_addr *addrs;
	char **errors;
	char reason[512];
	char *site_key;
};

/* ---- pure helpers ---- */

uint64_t
resolve_ttl_clamp(uint32_t ttl_s, uint64_t min_ms, uint64_t max_ms)
{
	uint64_t ms = (uint64_t)ttl_s * 1000;

	if (ms < min_ms)
		ms = min_ms;
	if (max_ms != 0 && ms > max_ms)
		ms = max_ms;
	return ms;
}

int
resolve_mx_is_null(const struct dns_mx *mx, size_t n)
{
	return n == 1 && mx[0].host != NULL && mx[0].host[0] == '\0';
}

static uint64_t
rng_next(uint64_t *s)
{
	uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ull;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

void
resolve_mx_order(struct resolve_mx *mx, size_t n, uint64_t *rng)
{
	size_t i, j, start;
	struct resolve_mx t;

	for (i = 1; i < n; i++) {            /* stable insertion sort */
		t = mx[i];
		for (j = i; j > 0 && mx[j - 1].pref > t.pref; j--)
			mx[j] = mx[j - 1];
		mx[j] = t;
	}
	for (start = 0; start < n; start = i) {
		for (i = start + 1; i < n && mx[i].pref == mx[start].pref; i++)
			;
		for (j = i - 1; j > start; j--) {   /* Fisher-Yates */
			size_t k = start + (size_t)(rng_next(rng) %
			                            (j - start + 1));
			t = mx[j];
			mx[j] = mx[k];
			mx[k] = t;
		}
	}
}

/* name_check - the syntax rules of resolve_name_normalize on out */
static int
name_check(const char *s)
{
	size_t n = strlen(s), lab = 0, i;
	const char *last = s;
	int digits = 1;

	if (n == 0 || n > 253)
		return -1;
	for (i = 0; i <= n; i++) {
		char c = s[i];

		if (c == '.' || c == '\0') {
			if (lab == 0 || lab > 63 || s[i - 1] == '-')
				return -1;
			lab = 0;
			last = s + i + 1;
			continue;
		}
		if (lab == 0 && c == '-')
			return -1;
		if (!(islower((unsigned char)c) || isdigit((unsigned char)c) ||
		      c == '-' || c == '_'))
			return -1;
		lab++;
	}
	for (last = strrchr(s, '.') ? strrchr(s, '.') + 1 : s; *last; last++)
		digits &= isdigit((unsigned char)*last) != 0;
	return digits ? -1 : 0;
}

int
resolve_name_normalize(const char *in, char *out, size_t outlen)
{
	char *ace = NULL;
	const char *src = in;
	size_t n, i;
	int rc = -1;

	if (in == NULL)
		return -1;
	for (i = 0; in[i]; i++)
		if ((unsigned char)in[i] >= 0x80)
			break;
	if (in[i] != '\0') {
		if (idn2_lookup_u8((const uint8_t *)in, (uint8_t **)&ace,
		                   IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL)
		    != IDN2_OK)
			goto done;
		src = ace;
	}
	n = strlen(src);
	if (n > 0 && src[n - 1] == '.')
		n--;
	if (n == 0 || n >= outlen)
		goto done;
	for (i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)src[i]);
	out[n] = '\0';
	rc = name_check(out);
done:
	if (ace != NULL)
		idn2_free(ace);
	return rc;
}

/* addr_literal - "[192.0.2.1]" or "[IPv6:2001:db8::1]" to *a; 0 ok */
static int
addr_literal(const char *s, struct resolve_addr *a)
{
	char buf[INET6_ADDRSTRLEN + 8];
	size_t n = strlen(s);

	if (n < 3 || s[0] != '[' || s[n - 1] != ']' || n - 2 >= sizeof(buf))
		return -1;
	memcpy(buf, s + 1, n - 2);
	buf[n - 2] = '\0';
	memset(a, 0, sizeof(*a));
	if (strncasecmp(buf, "IPv6:", 5) == 0) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;

		if (inet_pton(AF_INET6, buf + 5, &s6->sin6_addr) != 1)
			return -1;
		s6->sin6_family = AF_INET6;
		a->len = sizeof(*s6);
		inet_ntop(AF_INET6, &s6->sin6_addr, a->text, sizeof(a->text));
		return 0;
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;

	if (inet_pton(AF_INET, buf, &s4->sin_addr) != 1)
		return -1;
	s4->sin_family = AF_INET;
	a->len = sizeof(*s4);
	inet_ntop(AF_INET, &s4->sin_addr, a->text, sizeof(a->text));
	return 0;
}

static void
addr_from_dns(struct resolve_addr *a, const struct dns_addr *d)
{
	memset(a, 0, sizeof(*a));
	if (d->family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_addr = d->u.v6;
		a->len = sizeof(*s6);
		inet_ntop(AF_INET6, &d->u.v6, a->text, sizeof(a->text));
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;

		s4->sin_family = AF_INET;
		s4->sin_addr = d->u.v4;
		a->len = sizeof(*s4);
		inet_ntop(AF_INET, &d->u.v4, a->text, sizeof(a->text));
	}
}

/* ---- hash table of rnodes ---- */

static uint32_t
str_hash(const char *s)
{
	uint32_t h = 2166136261u;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 16777619u;
	return h;
}

static struct rnode *
rtab_find(const struct rtab *t, const char *key)
{
	uint32_t h = str_hash(key);
	struct rnode *n;

	if (t->size == 0)
		return NULL;
	for (n = t->b[h & (t->size - 1)]; n != NULL; n = n->hnext)
		if (n->hash == h && strcmp(n->key, key) == 0)
			return n;
	return NULL;
}

static void
rtab_add(struct rtab *t, struct rnode *n)
{
	if (t->n >= t->size) {
		size_t nsize = t->size ? t->size * 2 : 256, i;
		struct rnode **nb = xcalloc(nsize, sizeof(*nb)), *x, *next;

		for (i = 0; i < t->size; i++)
			for (x = t->b[i]; x != NULL; x = next) {
				next = x->hnext;
				x->hnext = nb[x->hash & (nsize - 1)];
				nb[x->hash & (nsize - 1)] = x;
			}
		free(t->b);
		t->b = nb;
		t->size = nsize;
	}
	n->hash = str_hash(n->key);
	n->hnext = t->b[n->hash & (t->size - 1)];
	t->b[n->hash & (t->size - 1)] = n;
	t->n++;
}

static void
rtab_del(struct rtab *t, struct rnode *n)
{
	struct rnode **pp;

	for (pp = &t->b[n->hash & (t->size - 1)]; *pp; pp = &(*pp)->hnext)
		if (*pp == n) {
			*pp = n->hnext;
			t->n--;
			return;
		}
}


/* ---- record cache ---- */

static const char type_letter[] = { '4', '6', 'M', 'T' };

static void job_step(struct rjob *job);

static void
lru_unlink(struct resolver *r, struct rentry *e)
{
	if (e->lru_prev != NULL)
		e->lru_prev->lru_next = e->lru_next;
	else
		r->lru_head = e->lru_next;
	if (e->lru_next != NULL)
		e->lru_next->lru_prev = e->lru_prev;
	else
		r->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void
lru_push(struct resolver *r, struct rentry *e)
{
	e->lru_prev = NULL;
	e->lru_next = r->lru_head;
	if (r->lru_head != NULL)
		r->lru_head->lru_prev = e;
	r->lru_head = e;
	if (r->lru_tail == NULL)
		r->lru_tail = e;
}

static void
entry_clear_data(struct rentry *e)
{
	for (size_t i = 0; e->mx != NULL && i < e->n; i++)
		free((char *)e->mx[i].host);
	free(e->mx);
	free(e->addrs);
	e->mx = NULL;
	e->addrs = NULL;
	e->n = 0;
}

static void
entry_free(struct rentry *e)
{
	struct resolver *r = e->r;

	rtab_del(&r->entries, &e->node);
	lru_unlink(r, e);
	dns_cancel(e->q);
	entry_clear_data(e);
	free(e->waiters);
	free(e->node.key);
	free(e);
}

/* cache_evict - make room for one record: drop least recently used
 * records that no job holds and no query fills */
static void
cache_evict(struct resolver *r)
{
	struct rentry *e = r->lru_tail, *prev;
	int busy = 0;

	while (e != NULL && r->entries.n >= r->opt.max_entries && busy < 256) {
		prev = e->lru_prev;
		if (e->refs == 0 && e->state != ENT_PENDING) {
			entry_free(e);
			r->st.evictions++;
		} else {
			busy++;
		}
		e = prev;
	}
}

/* cache_get - the record (type, name), created empty if absent */
static struct rentry *
cache_get(struct resolver *r, enum dns_type type, const char *name)
{
	char key[300];
	struct rentry *e;

	snprintf(key, sizeof(key), "%c%s", type_letter[type], name);
	e = (struct rentry *)rtab_find(&r->entries, key);
	if (e != NULL) {
		lru_unlink(r, e);
		lru_push(r, e);
		return e;
	}
	cache_evict(r);
	e = xcalloc(1, sizeof(*e));
	e->r = r;
	e->type = type;
	e->node.key = xstrdup(key);
	e->name = e->node.key + 1;
	rtab_add(&r->entries, &e->node);
	lru_push(r, e);
	return e;
}

static int
entry_usable(const struct rentry *e, const struct rjob *job)
{
	return e->state == ENT_DONE &&
	       (e->expires_ms > mono_ms() || e->fetched_ms >= job->started_ms);
}

/* entry_store - keep a DNS answer with its clamped lifetime */
static void
entry_store(struct rentry *e, const struct dns_answer *ans)
{
	const struct resolve_options *o = &e->r->opt;
	uint64_t life;

	entry_clear_data(e);
	e->status = ans->status;
	e->fetched_ms = mono_ms();
	if (ans->status == DNS_OK) {
		life = resolve_ttl_clamp(ans->ttl, o->min_ttl_ms, o->max_ttl_ms);
		e->n = ans->n;
		if (e->type == DNS_T_MX) {
			e->mx = xcalloc(ans->n, sizeof(*e->mx));
			for (size_t i = 0; i < ans->n; i++) {
				e->mx[i].pref = ans->mx[i].pref;
				e->mx[i].host = xstrdup(ans->mx[i].host);
			}
		} else {
			e->addrs = xcalloc(ans->n, sizeof(*e->addrs));
			for (size_t i = 0; i < ans->n; i++)
				addr_from_dns(&e->addrs[i], &ans->addr[i]);
		}
	} else if (dns_status_is_temp(ans->status)) {
		life = o->temp_ttl_ms;
	} else {
		life = o->negative_ttl_ms;
	}
	e->expires_ms = e->fetched_ms + life;
}

static void job_unwait(struct rjob *job, struct rentry *e);

/* entry_on_answer - a record's query finished: store it, wake its jobs */
static void
entry_on_answer(void *arg, const struct dns_answer *ans)
{
	struct rentry *e = arg;
	struct rjob **w = e->waiters;
	size_t n = e->n_waiters;

	e->q = NULL;
	entry_store(e, ans);
	e->state = ENT_DONE;
	e->waiters = NULL;
	e->n_waiters = e->cap_waiters = 0;
	for (size_t i = 0; i < n; i++) {
		job_unwait(w[i], e);
		if (w[i]->pending == 0)
			job_step(w[i]);
	}
	free(w);
}

static void
entry_add_waiter(struct rentry *e, struct rjob *job)
{
	if (e->n_waiters == e->cap_waiters) {
		e->cap_waiters = e->cap_waiters ? e->cap_waiters * 2 : 4;
		e->waiters = xrealloc(e->waiters,
		                      e->cap_waiters * sizeof(*e->waiters));
	}
	e->waiters[e->n_waiters++] = job;
}

void
resolver_flush(struct resolver *r)
{
	struct rentry *e, *next;

	for (e = r->lru_head; e != NULL; e = next) {
		next = e->lru_next;
		if (e->refs == 0 && e->state != ENT_PENDING)
			entry_free(e);
		else
			e->expires_ms = 0;
	}
}

/* ---- jobs: one per domain being resolved ---- */

struct rhost {
	const char *name;
	unsigned pref;
	const char *bad;             /* why this host is not looked up */
};

static struct rhold *
job_hold_find(struct rjob *job, const struct rentry *e)
{
	for (size_t i = 0; i < job->n_holds; i++)
		if (job->holds[i].e == e)
			return &job->holds[i];
	return NULL;
}

/* job_held - the held record (type, name), or NULL */
static struct rentry *
job_held(struct rjob *job, enum dns_type type, const char *name)
{
	for (size_t i = 0; i < job->n_holds; i++) {
		struct rentry *e = job->holds[i].e;

		if (e->type == type && strcmp(e->name, name) == 0)
			return e;
	}
	return NULL;
}

static void
job_unwait(struct rjob *job, struct rentry *e)
{
	struct rhold *h = job_hold_find(job, e);

	if (h != NULL && h->waiting) {
		h->waiting = 0;
		job->pending--;
	}
}

/* job_need - the record if fresh; else make sure it is being fetched,
 * wait for it and return NULL */
static struct rentry *
job_need(struct rjob *job, enum dns_type type, const char *name)
{
	struct resolver *r = job->r;
	struct rentry *e = cache_get(r, type, name);
	struct rhold *h = job_hold_find(job, e);

	if (h == NULL) {
		if (job->n_holds == job->cap_holds) {
			job->cap_holds = job->cap_holds ? job->cap_holds * 2 : 8;
			job->holds = xrealloc(job->holds, job->cap_holds *
			                      sizeof(*job->holds));
		}
		h = &job->holds[job->n_holds++];
		h->e = e;
		h->waiting = 0;
		e->refs++;
		if (entry_usable(e, job))
			r->st.cache_hits++;
	}
	if (entry_usable(e, job))
		return e;
	if (h->waiting)
		return NULL;
	if (e->state != ENT_PENDING) {
		e->state = ENT_PENDING;
		r->st.queries_sent++;
		r->st.cache_misses++;
		e->q = dns_query(r->dns, type, name, entry_on_answer, e);
	} else {
		r->st.cache_joins++;
	}
	entry_add_waiter(e, job);
	h->waiting = 1;
	job->pending++;
	return NULL;
}

static void
job_free(struct rjob *job)
{
	struct resolve_req *q, *next;

	for (size_t i = 0; i < job->n_holds; i++)
		job->holds[i].e->refs--;
	for (q = job->reqs; q != NULL; q = next) {
		next = q->next;
		free(q);
	}
	free(job->holds);
	free(job->node.key);
	free(job);
}

/* job_deliver - hand the outcome to every request (each its own shuffle),
 * then free the job */
static void
job_deliver(struct rjob *job, struct rout *o)
{
	struct resolver *r = job->r;
	struct resolve_req *q;
	struct resolve_mx *tmp = NULL;
	size_t n = o->res.n_mx;

	rtab_del(&r->jobs, &job->node); /* new requests start afresh */
	o->res.domain = job->domain;
	o->res.site_key = o->site_key;
	if (n > 0)
		tmp = xcalloc(n, sizeof(*tmp));
	log_debug(job->domain, "resolve: %s%s%s",
	          o->res.status == RESOLVE_OK ? "ok " : "",
	          o->res.reason ? o->res.reason : "",
	          o->site_key ? o->site_key : "");
	while ((q = job->reqs) != NULL) {
		job->reqs = q->next;
		if (job->reqs != NULL)
			job->reqs->prev = NULL;
		else
			job->reqs_tail = NULL;
		q->job = NULL;               /* being answered: cancel is a no-op */
		if (n > 0) {
			memcpy(tmp, o->mx, n * sizeof(*tmp));
			resolve_mx_order(tmp, n, &r->rng);
		}
		o->res.mx = tmp;
		r->st.ok += o->res.status == RESOLVE_OK;
		r->st.temp += o->res.status == RESOLVE_TEMP;
		r->st.perm += o->res.status == RESOLVE_PERM;
		q->cb(q->arg, &o->res);
		free(q);
	}
	free(tmp);
	job_free(job);
}

/* job_ttl - how long the records behind this answer stay valid */
static uint64_t
job_ttl(const struct rjob *job)
{
	uint64_t now = mono_ms(), min = UINT64_MAX;

	for (size_t i = 0; i < job->n_holds; i++) {
		const struct rentry *e = job->holds[i].e;
		uint64_t left = e->expires_ms > now ? e->expires_ms - now : 0;

		min = left < min ? left : min;
	}
	return min == UINT64_MAX ? 0 : min;
}

/* job_fail - finish with a temporary or permanent failure */
static void
job_fail(struct rjob *job, enum resolve_status st, int code,
         const char *enh, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void
job_fail(struct rjob *job, enum resolve_status st, int code,
         const char *enh, const char *fmt, ...)
{
	struct rout o;
	va_list ap;
	int n;

	memset(&o, 0, sizeof(o));
	n = snprintf(o.reason, sizeof(o.reason), "%d %s ", code, enh);
	va_start(ap, fmt);
	vsnprintf(o.reason + n, sizeof(o.reason) - (size_t)n, fmt, ap);
	va_end(ap);
	o.res.status = st;
	o.res.code = code;
	o.res.enhanced = enh;
	o.res.reason = o.reason;
	o.res.null_mx = job->null_mx;
	o.res.ttl_ms = job_ttl(job);
	job_deliver(job, &o);
}

/* host_addrs - copy the held A then AAAA addresses of h to dst; the
 * exchanger's error text when it has none */
static void
host_addrs(struct rjob *job, const struct rhost *h, struct resolve_addr *dst,
           struct resolve_mx *mx, char **err, int *temp)
{
	struct rentry *a = job_held(job, DNS_T_A, h->name);
	struct rentry *aaaa = job_held(job, DNS_T_AAAA, h->name);
	enum dns_status s4 = a ? a->status : DNS_NODATA;
	enum dns_status s6 = aaaa ? aaaa->status : DNS_NODATA;
	char buf[128];

	mx->name = h->name;
	mx->pref = h->pref;
	mx->addrs = dst;
	for (int k = 0; k < 2; k++) {
		struct rentry *e = k ? aaaa : a;

		for (size_t i = 0; e && e->status == DNS_OK && i < e->n; i++)
			dst[mx->n_addrs++] = e->addrs[i];
	}
	if (mx->n_addrs > 0)
		return;
	if (h->bad != NULL) {
		snprintf(buf, sizeof(buf), "%s", h->bad);
	} else {
		snprintf(buf, sizeof(buf), "no address (A %s, AAAA %s)",
		         dns_status_str(s4), dns_status_str(s6));
		*temp |= dns_status_is_temp(s4) || dns_status_is_temp(s6);
	}
	*err = xstrdup(buf);
	mx->error = *err;
}

static void
rout_free(struct rout *o, size_t n)
{
	for (size_t i = 0; o->errors != NULL && i < n; i++)
		free(o->errors[i]);
	free(o->errors);
	free(o->addrs);
	free(o->mx);
	free(o->site_key);
}

/* job_finish_hosts - every record is in: build the answer */
static void
job_finish_hosts(struct rjob *job, const struct rhost *h, size_t n,
                 int implicit)
{
	struct rout o;
	size_t total = 0, usable = 0, i;
	int temp = 0;

	memset(&o, 0, sizeof(o));
	for (i = 0; i < n; i++)
		for (int t = DNS_T_A; t <= DNS_T_AAAA; t++) {
			struct rentry *e = job_held(job, t, h[i].name);

			total += e && e->status == DNS_OK ? e->n : 0;
		}
	o.mx = xcalloc(n ? n : 1, sizeof(*o.mx));
	o.addrs = xcalloc(total ? total : 1, sizeof(*o.addrs));
	o.errors = xcalloc(n ? n : 1, sizeof(*o.errors));
	for (i = 0, total = 0; i < n; i++) {
		host_addrs(job, &h[i], o.addrs + total, &o.mx[i], &o.errors[i],
		           &temp);
		total += o.mx[i].n_addrs;
		usable += o.mx[i].n_addrs > 0;
	}
	o.res.n_mx = n;
	if (usable > 0) {
		resolve_mx_order(o.mx, n, &job->r->rng);
		o.site_key = sitekey_from_mx(o.mx, n);
		o.res.status = RESOLVE_OK;
		o.res.implicit_mx = implicit;
		o.res.ttl_ms = job_ttl(job);
		job_deliver(job, &o);
	} else if (implicit && !temp) {
		job_fail(job, RESOLVE_PERM, 550, "5.4.4", "Domain %s has no MX "
		         "and no address records", job->domain);
	} else if (implicit) {
		job_fail(job, RESOLVE_TEMP, 451, "4.4.3", "DNS lookup of the "
		         "address of %s failed: %s", job->domain, o.mx[0].error);
	} else {
		job_fail(job, RESOLVE_TEMP, 451, "4.4.4", "No address for any MX "
		         "host of %s (%s: %s)", job->domain, h[0].name,
		         o.mx[0].error);
	}
	rout_free(&o, n);
}

/* mx_hosts - exchangers of an MX answer: lowest preference first, each
 * host once, at most RESOLVE_MAX_MX; "." and IP-literal targets are kept
 * as unusable hosts (never queried) */
static size_t
mx_hosts(const struct rentry *e, struct rhost *h)
{
	size_t n = 0, i, j = 0;
	const struct dns_mx *best;
	unsigned char ip[sizeof(struct in6_addr)];
	char *used = xcalloc(e->n ? e->n : 1, 1);

	while (n < RESOLVE_MAX_MX) {
		best = NULL;
		for (i = 0; i < e->n; i++)
			if (!used[i] && (best == NULL || e->mx[i].pref < best->pref))
				best = &e->mx[j = i];
		if (best == NULL)
			break;
		used[j] = 1;
		for (i = 0; i < n && strcmp(h[i].name, best->host) != 0; i++)
			;
		if (i < n || best->host[0] == '\0')
			continue;           /* duplicate, or "." among others */
		h[n].name = best->host;
		h[n].pref = best->pref;
		h[n].bad = NULL;
		if (inet_pton(AF_INET, best->host, ip) == 1 ||
		    inet_pton(AF_INET6, best->host, ip) == 1)
			h[n].bad = "MX target is an IP address, not a host name";
		else if (name_check(best->host) != 0)
			h[n].bad = "MX target is not a valid host name";
		n++;
	}
	free(used);
	return n;
}

/* job_mx_failed - the MX answer ends the job: 1 if it did */
static int
job_mx_failed(struct rjob *job, const struct rentry *e)
{
	switch (e->status) {
	case DNS_OK:
		if (!resolve_mx_is_null(e->mx, e->n))
			return 0;
		job->null_mx = 1;
		job_fail(job, RESOLVE_PERM, 556, "5.1.10", "Recipient address "
		         "has null MX: %s accepts no mail (RFC 7505)",
		         job->domain);
		return 1;
	case DNS_NODATA:
		return 0;
	case DNS_NXDOMAIN:
		job_fail(job, RESOLVE_PERM, 550, "5.1.2", "Recipient domain %s "
		         "does not exist (DNS NXDOMAIN)", job->domain);
		return 1;
	case DNS_BADNAME:
		job_fail(job, RESOLVE_PERM, 553, "5.1.3", "Invalid recipient "
		         "domain name %s", job->domain);
		return 1;
	default:
		job_fail(job, RESOLVE_TEMP, 451, "4.4.3", "DNS lookup of MX for "
		         "%s failed: %s", job->domain, dns_status_str(e->status));
		return 1;
	}
}

static void
job_finish_literal(struct rjob *job)
{
	struct rhost h = { job->node.key, 0, NULL };
	struct rout o;

	memset(&o, 0, sizeof(o));
	o.mx = xcalloc(1, sizeof(*o.mx));
	o.mx->name = h.name;
	o.mx->addrs = &job->lit;
	o.mx->n_addrs = 1;
	o.site_key = sitekey_from_mx(o.mx, 1);
	o.res.status = RESOLVE_OK;
	o.res.implicit_mx = 1;
	o.res.n_mx = 1;
	o.res.ttl_ms = job->r->opt.max_ttl_ms;
	job_deliver(job, &o);
	rout_free(&o, 0);
}

/* job_step - take the resolution as far as the cache allows */
static void
job_step(struct rjob *job)
{
	struct rhost h[RESOLVE_MAX_MX];
	struct rentry *mx;
	size_t n, i;
	int implicit;

	if (job->invalid) {
		job_fail(job, RESOLVE_PERM, 553, "5.1.3", "Invalid recipient "
		         "domain name \"%s\"", job->domain);
		return;
	}
	if (job->literal) {
		job_finish_literal(job);
		return;
	}
	if ((mx = job_need(job, DNS_T_MX, job->domain)) == NULL)
		return;
	if (job_mx_failed(job, mx))
		return;
	implicit = mx->status == DNS_NODATA;
	if (implicit) {
		h[0].name = job->domain;
		h[0].pref = 0;
		h[0].bad = NULL;
		n = 1;
	} else {
		n = mx_hosts(mx, h);
	}
	for (i = 0; i < n; i++) {
		if (h[i].bad != NULL)
			continue;
		job_need(job, DNS_T_A, h[i].name);
		if (!job->r->opt.no_ipv6)
			job_need(job, DNS_T_AAAA, h[i].name);
	}
	if (job->pending == 0)
		job_finish_hosts(job, h, n, implicit);
}

/* ---- requests ---- */

static void
resolver_on_ready(evutil_socket_t fd, short what, void *arg)
{
	struct resolver *r = arg;
	struct rjob *job = r->ready_head, *next;

	(void)fd;
	(void)what;
	r->ready_head = r->ready_tail = NULL;
	for (; job != NULL; job = next) {
		next = job->ready_next;
		job->on_ready = 0;
		job->started_ms = mono_ms();
		job_step(job);
	}
}

static struct rjob *
job_new(struct resolver *r, const char *key, const char *domain)
{
	struct rjob *job = xcalloc(1, sizeof(*job));

	job->r = r;
	job->node.key = xstrdup(key);
	job->domain = domain ? job->node.key : job->node.key + 1;
	rtab_add(&r->jobs, &job->node);
	if (r->ready_tail != NULL)
		r->ready_tail->ready_next = job;
	else
		r->ready_head = job;
	r->ready_tail = job;
	job->on_ready = 1;
	event_active(r->ready_ev, EV_TIMEOUT, 0);
	return job;
}

/* request_key - the job key of a domain: normalized name, canonical
 * address literal, or "!" + the raw text when invalid */
static int
request_key(const char *domain, char *key, size_t keylen,
            struct resolve_addr *lit)
{
	if (domain != NULL && domain[0] == '[' && addr_literal(domain, lit) == 0) {
		snprintf(key, keylen, lit->ss.ss_family == AF_INET6 ?
		         "[IPv6:%s]" : "[%s]", lit->text);
		return 1;
	}
	if (resolve_name_normalize(domain, key, keylen) == 0)
		return 0;
	snprintf(key, keylen, "!%s", domain ? domain : "(null)");
	return -1;
}

char *
resolver_site_of(const struct resolver *r, const char *domain)
{
	char key[300], mkey[304];
	struct resolve_addr lit;
	struct rhost h[RESOLVE_MAX_MX];
	const char *names[RESOLVE_MAX_MX];
	unsigned prefs[RESOLVE_MAX_MX] = { 0 };
	const struct rentry *e;
	int kind = request_key(domain, key, sizeof(key), &lit);
	size_t n = 1, i;

	names[0] = key;             /* literal or implicit MX: the name itself */
	if (kind > 0)
		return sitekey_make(names, prefs, 1);
	if (kind < 0)
		return NULL;
	snprintf(mkey, sizeof(mkey), "%c%s", type_letter[DNS_T_MX], key);
	e = (const struct rentry *)rtab_find(&r->entries, mkey);
	if (e == NULL || e->state != ENT_DONE ||
	    (e->status != DNS_NODATA && e->status != DNS_OK) ||
	    (e->status == DNS_OK && resolve_mx_is_null(e->mx, e->n)))
		return NULL;
	if (e->status == DNS_OK) {
		n = mx_hosts(e, h);
		for (i = 0; i < n; i++) {
			names[i] = h[i].name;
			prefs[i] = h[i].pref;
		}
	}
	return n > 0 ? sitekey_make(names, prefs, n) : NULL;
}

struct resolve_req *
resolve_domain(struct resolver *r, const char *domain, resolve_cb cb,
               void *arg)
{
	char key[300];
	struct resolve_addr lit;
	struct resolve_req *q = xcalloc(1, sizeof(*q));
	struct rjob *job;
	int kind = request_key(domain, key, sizeof(key), &lit);

	r->st.requests++;
	job = (struct rjob *)rtab_find(&r->jobs, key);
	if (job != NULL) {
		r->st.coalesced++;
	} else {
		job = job_new(r, key, kind >= 0 ? key : NULL);
		job->invalid = kind < 0;
		job->literal = kind > 0;
		job->lit = lit;
	}
	q->job = job;
	q->cb = cb;
	q->arg = arg;
	q->prev = job->reqs_tail;
	if (job->reqs_tail != NULL)
		job->reqs_tail->next = q;
	else
		job->reqs = q;
	job->reqs_tail = q;
	return q;
}

void
resolve_cancel(struct resolve_req *q)
{
	struct rjob *job;

	if (q == NULL || (job = q->job) == NULL)
		return;
	if (q->prev != NULL)
		q->prev->next = q->next;
	else
		job->reqs = q->next;
	if (q->next != NULL)
		q->next->prev = q->prev;
	else
		job->reqs_tail = q->prev;
	free(q);
}

struct resolver *
resolver_new(struct event_base *base, struct dns *dns,
             const struct resolve_options *opt)
{
	struct resolver *r = xcalloc(1, sizeof(*r));

	r->base = base;
	r->dns = dns;
	if (opt != NULL)
		r->opt = *opt;
	else
		r->opt.min_ttl_ms = 60000;
	if (r->opt.max_ttl_ms == 0)
		r->opt.max_ttl_ms = 86400000;
	if (r->opt.negative_ttl_ms == 0)
		r->opt.negative_ttl_ms = 300000;
	if (r->opt.temp_ttl_ms == 0)
		r->opt.temp_ttl_ms = 15000;
	if (r->opt.max_entries == 0)
		r->opt.max_entries = 65536;
	r->rng = r->opt.seed ? r->opt.seed :
	         (now_ms() << 16) ^ (uint64_t)getpid() ^ (uintptr_t)r;
	r->ready_ev = event_new(base, -1, 0, resolver_on_ready, r);
	return r;
}

void
resolver_free(struct resolver *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->jobs.size; i++)
		while (r->jobs.b[i] != NULL) {
			struct rjob *job = (struct rjob *)r->jobs.b[i];

			r->jobs.b[i] = job->node.hnext;
			job_free(job);
		}
	while (r->lru_head != NULL)
		entry_free(r->lru_head);
	event_free(r->ready_ev);
	free(r->jobs.b);
	free(r->entries.b);
	free(r);
}

void
resolver_get_stats(const struct resolver *r, struct resolve_stats *out)
{
	*out = r->st;
	out->entries = r->entries.n;
}
