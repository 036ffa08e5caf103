/*
 * mxsched_pool.c - source-address pools and what replies do to a
 * (source address, site) pair. Owns the scheduler's struct rep: the pools
 * of [pool "NAME"] sections, the table of sending addresses (shared with
 * the DNSBL monitor, mxsched_dnsbl.c), each site's sources with their
 * adaptive throttle, reply-driven blocks and releases. Loop thread only.
 *
 * A site sends from one address of its pool at a time, chosen by weighted
 * rendezvous hashing of the site key, so it stays on the same address run
 * after run; an address blocked for the site (a reply) or suspended for all
 * (a listing) is skipped and the next one in the site's order takes over.
 * With none left the site is suspended (its recipients wait on disk
 * without spending attempts) until the first release.
 */
#include "mxsched/mxsched_internal.h"

#include <arpa/inet.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

/* ---- pools ---- */

static uint64_t
fnv1a(uint64_t h, const char *s)
{
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ull;
	}
	return h;
}

/* mix64 - spread the bits (splitmix64 finaliser) */
static uint64_t
mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

int
pool_pick(const struct pool *p, const char *site_key, const int *skip)
{
	double best = -1, score, u;
	uint64_t h;
	int idx = -1;
	size_t i;

	for (i = 0; i < p->n; i++) {
		if (skip && skip[i])
			continue;
		h = mix64(fnv1a(fnv1a(0xcbf29ce484222325ull, site_key), p->m[i].a->ip));
		u = ((double)(h >> 11) + 0.5) / 9007199254740992.0; /* (0,1) */
		score = (double)p->m[i].weight / -log(u);
		if (score > best) {
			best = score;
			idx = (int)i;
		}
	}
	return idx;
}

/* member_parse - "ip[=ehlo][*weight]" */
static int
member_parse(char *item, struct pool *p, struct smap *table, char *err,
             size_t errlen)
{
	char *ehlo = strchr(item, '='), *w = strrchr(item, '*'), *end;
	struct srcaddr *a;
	unsigned long weight = 1;
	unsigned char bin[16];
	int family;

	if (w) {
		*w++ = '\0';
		weight = strtoul(w, &end, 10);
		if (*w == '\0' || *end != '\0' || weight < 1 || weight > 1000) {
			snprintf(err, errlen, "%s: weight must be 1..1000", item);
			return -1;
		}
	}
	if (ehlo)
		*ehlo++ = '\0';
	if (ehlo && (*ehlo == '\0' || strpbrk(ehlo, " \t<>[]@") != NULL)) {
		snprintf(err, errlen, "%s: bad EHLO name", item);
		return -1;
	}
	family = strchr(item, ':') ? AF_INET6 : AF_INET;
	if (inet_pton(family, item, bin) != 1) {
		snprintf(err, errlen, "%s: not an IPv4 or IPv6 address", item);
		return -1;
	}
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->m[i].a->ip, item) == 0) {
			snprintf(err, errlen, "%s: listed twice", item);
			return -1;
		}
	if ((a = smap_get(table, item)) == NULL) {
		a = xcalloc(1, sizeof(*a));
		a->ip = xstrdup(item);
		a->ehlo = ehlo ? xstrdup(ehlo) : NULL;
		a->family = family;
		memcpy(a->bin, bin, sizeof(bin));
		smap_put(table, a->ip, a);
	} else if ((a->ehlo == NULL) != (ehlo == NULL) ||
	           (ehlo && strcasecmp(a->ehlo, ehlo) != 0)) {
		snprintf(err, errlen, "%s: two different EHLO names in pools", item);
		return -1;
	}
	p->m = xrealloc(p->m, (p->n + 1) * sizeof(*p->m));
	p->m[p->n].a = a;
	p->m[p->n++].weight = (unsigned)weight;
	return 0;
}

int
pool_parse(struct pool *p, const char *spec, struct smap *table, char *err,
           size_t errlen)
{
	char *copy = xstrdup(spec ? spec : ""), *save = NULL, *item;
	int rc = 0;

	for (item = strtok_r(copy, ", \t", &save); item && rc == 0;
	     item = strtok_r(NULL, ", \t", &save))
		rc = member_parse(item, p, table, err, errlen);
	if (rc == 0 && p->n == 0) {
		snprintf(err, errlen, "no address");
		rc = -1;
	}
	free(copy);
	return rc;
}

static void
pool_free(void *val)
{
	struct pool *p = val;

	free(p->m);
	free(p->name);
	free(p);
}

static void
srcaddr_free(void *val)
{
	struct srcaddr *a = val;

	free(a->bl);
	free(a->ip);
	free(a->ehlo);
	free(a);
}

/* ---- the scheduler's reputation state ---- */

/* rep_check_sites - every [site] pool names a declared pool */
static int
rep_check_sites(struct mxsched *s, char *err, size_t errlen)
{
	const struct config *c = s->cfg;
	size_t i;

	for (i = 0; i < c->n_sites; i++)
		if (c->sites[i].pool && smap_get(&s->rep->pools, c->sites[i].pool) == NULL) {
			snprintf(err, errlen, "[site \"%s\"] pool: no [pool \"%s\"] declared",
			         c->sites[i].pattern, c->sites[i].pool);
			return -1;
		}
	return 0;
}

/* rep_chooser - a [tenant] or [listen] pool names a declared pool */
static int
rep_chooser(struct mxsched *s, struct smap *m, const char *what,
            const char *name, const char *pool, char *err, size_t errlen)
{
	struct pool *p;

	if (pool == NULL || *pool == '\0')
		return 0;
	if ((p = smap_get(&s->rep->pools, pool)) == NULL) {
		snprintf(err, errlen, "[%s \"%s\"] pool: no [pool \"%s\"] declared",
		         what, name, pool);
		return -1;
	}
	smap_put(m, name, p);
	return 0;
}

static int
rep_choosers(struct mxsched *s, char *err, size_t errlen)
{
	const struct config *c = s->cfg;
	size_t i;

	for (i = 0; i < c->n_tenants; i++)
		if (rep_chooser(s, &s->rep->tenant_pools, "tenant", c->tenants[i].name,
		                c->tenants[i].pool, err, errlen) < 0)
			return -1;
	for (i = 0; i < c->n_listens; i++)
		if (rep_chooser(s, &s->rep->listener_pools, "listen", c->listens[i].name,
		                c->listens[i].pool, err, errlen) < 0)
			return -1;
	return 0;
}

struct pool *
rep_msg_pool(const struct mxsched *s, const struct queue_envelope *env)
{
	const struct rep *rep = s->rep;
	struct pool *p = NULL;

	if (env->tenant && rep->tenant_pools.n)
		p = smap_get(&rep->tenant_pools, env->tenant);
	if (p == NULL && env->listener && rep->listener_pools.n)
		p = smap_get(&rep->listener_pools, env->listener);
	return p;
}

int
rep_new(struct mxsched *s, char *err, size_t errlen)
{
	const struct config *c = s->cfg;
	struct rep *rep = xcalloc(1, sizeof(*rep));
	char why[256];
	size_t i;

	s->rep = rep;
	smap_init(&rep->pools);
	smap_init(&rep->addrs);
	smap_init(&rep->tenant_pools);
	smap_init(&rep->listener_pools);
	rep->act_suspend = c->bl_action == NULL || strcasecmp(c->bl_action, "suspend") == 0;
	for (i = 0; i < c->n_pools; i++) {
		struct pool *p = xcalloc(1, sizeof(*p));
		p->name = xstrdup(c->pools[i].name);
		smap_put(&rep->pools, p->name, p);
		if (pool_parse(p, c->pools[i].addresses, &rep->addrs, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "[pool \"%s\"] addresses: %s", p->name, why);
			return -1;
		}
		log_info("-", "pool %s: %zu source address%s", p->name, p->n,
		         p->n == 1 ? "" : "es");
	}
	rep->default_pool = smap_get(&rep->pools, "default");
	if (rep_check_sites(s, err, errlen) < 0 || rep_choosers(s, err, errlen) < 0)
		return -1;
	if (((c->bl_zones && strspn(c->bl_zones, ", \t") < strlen(c->bl_zones)) ||
	     (c->bl_domain_zones && strspn(c->bl_domain_zones, ", \t") <
	      strlen(c->bl_domain_zones))) &&
	    (rep->bl = dnsbl_new(s, err, errlen)) == NULL)
		return -1;
	return 0;
}

void
rep_free(struct mxsched *s)
{
	struct rep *rep = s->rep;

	if (rep == NULL)
		return;
	dnsbl_free(rep->bl);
	smap_clear(&rep->pools, pool_free);
	smap_clear(&rep->addrs, srcaddr_free);
	smap_clear(&rep->tenant_pools, NULL);
	smap_clear(&rep->listener_pools, NULL);
	free(rep->pools.b);
	free(rep->addrs.b);
	free(rep->tenant_pools.b);
	free(rep->listener_pools.b);
	free(rep);
	s->rep = NULL;
}

/* ---- a site's sources ---- */

static const char *
src_name(const struct site_src *ss)
{
	return ss->a ? ss->a->ip : "(unbound)";
}

void
rep_site_init(struct site *site, const char *pool_name)
{
	struct rep *rep = site->s->rep;
	size_t i;

	site->pool = pool_name ? smap_get(&rep->pools, pool_name) : NULL;
	if (pool_name && site->pool == NULL)
		log_warnx(site->key, "pool %s not declared: using the default", pool_name);
	if (site->pool == NULL)
		site->pool = rep->default_pool;
	site->n_src = site->pool ? site->pool->n : 1;
	site->src = xcalloc(site->n_src, sizeof(*site->src));
	for (i = 0; i < site->n_src; i++) {
		site->src[i].a = site->pool ? site->pool->m[i].a : NULL;
		aimd_init(&site->src[i].aimd, site->max_conns, site->max_rate,
		          (double)site->s->cfg->throttle_min_rate);
	}
	site->cur_src = -2; /* nothing chosen yet */
	rep_site_pick(site);
}

void
rep_site_free(struct site *site)
{
	free(site->src);
	site->src = NULL;
}

/* src_release - a block ends (time, delisting or the operator) */
static void
src_release(struct site *site, struct site_src *ss, const char *how)
{
	log_info(site->key, "source %s usable here again (%s)", src_name(ss), how);
	ss->blocked_until = 0;
	ss->blocked_since = 0;
	ss->reason[0] = '\0';
	site->s->rep->st.releases++;
}

/* src_unusable - blocked here, or suspended everywhere for a listing */
static int
src_unusable(struct site *site, struct site_src *ss, uint64_t now)
{
	const struct config *c = site->s->cfg;
	struct srcaddr *a = ss->a;

	if (ss->blocked_until != 0) {
		if (now < ss->blocked_until)
			return 1;
		src_release(site, ss, "release_after passed");
	}
	if (a == NULL || !a->suspended || a->released)
		return 0;
	if (c->bl_release_after_ms && now >= a->listed_since + c->bl_release_after_ms) {
		a->released = 1;
		site->s->rep->st.releases++;
		log_warnx(a->ip, "still listed after release_after: used again");
		return 0;
	}
	return 1;
}

int
rep_site_pick(struct site *site)
{
	uint64_t now = now_ms();
	int skip[site->n_src], idx;
	size_t i;

	for (i = 0; i < site->n_src; i++)
		skip[i] = src_unusable(site, &site->src[i], now);
	if (site->pool)
		idx = pool_pick(site->pool, site->key, skip);
	else
		idx = skip[0] ? -1 : 0;
	if (idx != site->cur_src && site->cur_src != -2) {
		if (idx >= 0 && site->cur_src >= 0)
			site->s->rep->st.address_moves++;
		log_info(site->key, "source address now %s",
		         idx >= 0 ? src_name(&site->src[idx]) : "none (all blocked)");
	}
	site->cur_src = idx;
	site->conn_limit = idx >= 0 ? aimd_conns(&site->src[idx].aimd) : 1;
	return idx;
}

/* ---- waiting when no source is left ---- */

/* rep_site_wait - every source is blocked: suspend the site until the
 * first one is released by time (a delisting or the operator resumes it
 * earlier, rep_addr_changed) */
static void
rep_site_wait(struct site *site)
{
	const struct config *c = site->s->cfg;
	uint64_t now = now_ms(), until = UINT64_MAX, t;
	size_t i;

	for (i = 0; i < site->n_src; i++) {
		const struct site_src *ss = &site->src[i];
		if (ss->blocked_until != 0 && ss->blocked_until < until)
			until = ss->blocked_until;
		if (ss->a && ss->a->suspended && c->bl_release_after_ms &&
		    (t = ss->a->listed_since + c->bl_release_after_ms) < until)
			until = t;
	}
	if (until == UINT64_MAX)
		t = c->site_backoff_max_ms;
	else
		t = until > now + 1000 ? until - now : 1000;
	site->src_wait = 1;
	site_suspend_for(site, t, site->pool ? "every source address of the pool is blocked"
	                                     : "the source address is blocked");
}

/* rep_site_unwait - a source is usable again: end the wait now */
static void
rep_site_unwait(struct site *site)
{
	if (!site->src_wait)
		return;
	event_del(site->resume_timer);
	site->src_wait = 0;
	site->suspended_until = 0;
	site->reason[0] = '\0';
	log_info(site->key, "a source address is usable again: resuming");
}

/* rep_site_reconsider - after a change of some address: choose again */
static void
rep_site_reconsider(void *val, void *arg)
{
	struct site *site = val;
	struct srcaddr *a = arg;
	size_t i;

	for (i = 0; i < site->n_src && a; i++)
		if (site->src[i].a == a)
			break;
	if (a && i == site->n_src)
		return;
	if (site->src_wait) {
		rep_site_unwait(site);
	}
	if (rep_site_pick(site) < 0 && !site_suspended(site, now_ms()))
		rep_site_wait(site);
	site_pump(site);
}

void
rep_addr_changed(struct mxsched *s, struct srcaddr *a)
{
	smap_each(&s->sites, rep_site_reconsider, a);
	sched_flush(s);
}

/* the site found none usable while pumping (a timed release not due yet) */
void
rep_site_none(struct site *site)
{
	if (!site_suspended(site, now_ms()))
		rep_site_wait(site);
}

/* ---- what replies do ---- */

int
rep_throttled(struct site *site, int src, const char *why)
{
	struct site_src *ss = &site->src[src];
	uint64_t now = now_ms();
	int at_floor = aimd_at_floor(&ss->aimd);

	ss->throttles++;
	if (!aimd_cut(&ss->aimd, site_observed_rate(site, now), now))
		return 0; /* this burst of replies was already answered */
	site->s->rep->st.throttle_cuts++;
	if (src == site->cur_src)
		site->conn_limit = aimd_conns(&ss->aimd);
	snprintf(ss->reason, sizeof(ss->reason), "%s", why);
	log_warnx(site->key, "throttled (source %s): connections %u, rate %.0f/min: %s",
	          src_name(ss), aimd_conns(&ss->aimd), ss->aimd.rate, why);
	return at_floor;
}

int
rep_blocked(struct site *site, int src, const char *why)
{
	struct rep *rep = site->s->rep;
	struct site_src *ss = &site->src[src];
	uint64_t now = now_ms(), after = site->s->cfg->bl_release_after_ms;

	rep->st.reply_blocks++;
	ss->blocks++;
	if (ss->blocked_since == 0)
		ss->blocked_since = now;
	snprintf(ss->reason, sizeof(ss->reason), "%s", why);
	if (ss->a == NULL || !rep->act_suspend) {
		log_warnx(site->key, "source %s blocked here (%s): %s", src_name(ss),
		          ss->a ? "action alert" : "no pool", why);
		return 0;
	}
	if (ss->blocked_until == 0)
		log_warnx(site->key, "source %s blocked here, suspended for this site: %s",
		          src_name(ss), why);
	ss->blocked_until = after ? now + after : UINT64_MAX;
	if (rep_site_pick(site) < 0)
		rep_site_wait(site);
	return 1;
}

void
rep_clean(struct site *site, int src, uint64_t start_ms)
{
	struct site_src *ss = &site->src[src];
	int was = aimd_reduced(&ss->aimd);

	/* a transaction begun before the last cut says nothing about the
	 * limits in force since */
	if (start_ms >= ss->aimd.last_cut_ms)
		aimd_raise(&ss->aimd);
	if (src == site->cur_src)
		site->conn_limit = aimd_conns(&ss->aimd);
	if (was && !aimd_reduced(&ss->aimd)) {
		log_info(site->key, "throttle lifted (source %s)", src_name(ss));
		ss->reason[0] = '\0';
	}
	if (ss->blocked_until == 0)
		ss->blocked_since = 0; /* an alert-only block is over */
}

/* release_site - the operator releases ip (or every source) at one site */
static void
release_site(void *val, void *arg)
{
	struct site *site = val;
	const char *ip = arg;
	size_t i;

	for (i = 0; i < site->n_src; i++) {
		struct site_src *ss = &site->src[i];
		if ((ip == NULL || (ss->a && strcmp(ss->a->ip, ip) == 0)) &&
		    (ss->blocked_until || ss->blocked_since))
			src_release(site, ss, "released by the operator");
	}
}

int
rep_release(struct mxsched *s, const char *ip, const char *site_key)
{
	struct srcaddr *a = ip && *ip ? smap_get(&s->rep->addrs, ip) : NULL;
	struct site *site = site_key && *site_key ? smap_get(&s->sites, site_key) : NULL;

	if (ip && *ip && a == NULL && (site_key == NULL || *site_key == '\0'))
		return dnsbl_domain_release(s->rep->bl, ip); /* a sending domain? */
	if ((ip && *ip && a == NULL) || (site_key && *site_key && site == NULL))
		return -1;
	if (site != NULL) {
		release_site(site, a ? a->ip : NULL);
		rep_site_reconsider(site, NULL);
		sched_flush(s);
		return 0;
	}
	if (a == NULL)
		return -1;
	if (a->suspended && !a->released) {
		a->released = 1;
		s->rep->st.releases++;
		log_info(a->ip, "listing released by the operator");
	}
	smap_each(&s->sites, release_site, a->ip);
	rep_addr_changed(s, a);
	return 0;
}
