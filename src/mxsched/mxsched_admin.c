/*
 * mxsched_admin.c - what the scheduler shows and takes from postmasters:
 * site summaries as JSON, suspend / resume / retry-now by site key, and
 * the scheduler's metrics. Called on the loop thread by the admin API
 * through the ops table that src/daemon.c builds.
 */
#include "mxsched/mxsched_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

const unsigned rpt_bounds[RPT_BUCKETS] = { 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000 };

void
hist_add(struct count_hist *h, uint64_t n)
{
	size_t i;

	for (i = 0; i < RPT_BUCKETS && n > rpt_bounds[i]; i++)
		;
	h->b[i]++;
	h->sum += n;
	h->count++;
}

struct json_t *
hist_json(const struct count_hist *h)
{
	json_t *arr = json_array();
	uint64_t cum = 0;

	for (size_t i = 0; i <= RPT_BUCKETS; i++) {
		cum += h->b[i];
		json_array_append_new(arr, json_pack("{s:o, s:I}", "le",
		    i < RPT_BUCKETS ? json_integer(rpt_bounds[i]) : json_string("+Inf"),
		    "count", (json_int_t)cum));
	}
	return json_pack("{s:o, s:I, s:I}", "buckets", arr, "sum", (json_int_t)h->sum,
	                 "count", (json_int_t)h->count);
}

void
sched_count_txn(struct mxsched *s, struct site *site, size_t n)
{
	hist_add(&s->rpt, n);
	hist_add(&site->rpt, n);
}

void
site_count_conn(struct site *site, unsigned n)
{
	hist_add(&site->mpc, n);
}

static const char *
md_name(enum md_mode m)
{
	return m == MD_DENY ? "deny" : m == MD_ALLOW ? "allow" : "learn";
}

static const char *const tls_names[] = { "none", "may", "encrypt", "verify" };

static json_t *
site_mx_json(const struct site *site)
{
	json_t *a = json_array();
	size_t i, j;

	for (i = 0; i < site->n_mx; i++) {
		json_t *addrs = json_array();
		for (j = 0; j < site->mx[i].n_addrs; j++)
			json_array_append_new(addrs, json_string(site->mx[i].addrs[j]));
		json_array_append_new(a, json_pack("{s:s, s:o}", "host", site->mx[i].name,
		                                   "addresses", addrs));
	}
	return a;
}

/* ---- reputation: sources, throttles, block lists ---- */

static json_t *
rate_json(double rate)
{
	return rate > 0 ? json_integer((json_int_t)(rate + 0.5)) : json_null();
}

static json_t *
src_json(const struct site *site, size_t i)
{
	const struct site_src *ss = &site->src[i];
	uint64_t now = now_ms();
	int blocked = ss->blocked_until != 0 && now < ss->blocked_until;
	json_t *o = json_pack("{s:o, s:o, s:b, s:b, s:I, s:o, s:I, s:I, s:I}",
	    "address", ss->a ? json_string(ss->a->ip) : json_null(),
	    "ehlo", json_string(ss->a && ss->a->ehlo ? ss->a->ehlo : site->s->ehlo),
	    "in_use", (int)i == site->cur_src, "blocked", blocked,
	    "connections_allowed", (json_int_t)aimd_conns(&ss->aimd),
	    "recipients_per_minute_allowed", rate_json(ss->aimd.rate),
	    "throttle_cuts", (json_int_t)ss->aimd.cuts,
	    "throttle_replies", (json_int_t)ss->throttles,
	    "block_replies", (json_int_t)ss->blocks);
	json_object_set_new(o, "listed", json_boolean(ss->a && ss->a->listed > 0));
	json_object_set_new(o, "suspended_everywhere",
	    json_boolean(ss->a && ss->a->suspended && !ss->a->released));
	if (blocked && ss->blocked_until != UINT64_MAX)
		json_object_set_new(o, "blocked_until_ms", json_integer((json_int_t)ss->blocked_until));
	if (ss->blocked_since)
		json_object_set_new(o, "blocked_since_ms", json_integer((json_int_t)ss->blocked_since));
	if (ss->reason[0])
		json_object_set_new(o, "reason", json_string(ss->reason));
	return o;
}

/* site_rep_json - the site's pool, sources and adaptive limits */
static void
site_rep_json(json_t *o, const struct site *site)
{
	json_t *a = json_array();
	const struct site_src *cur = site->cur_src >= 0 ? &site->src[site->cur_src] : NULL;
	size_t i;

	for (i = 0; i < site->n_src; i++)
		json_array_append_new(a, src_json(site, i));
	json_object_set_new(o, "pool", site->pool ? json_string(site->pool->name) : json_null());
	json_object_set_new(o, "source_address", cur && cur->a ? json_string(cur->a->ip) : json_null());
	json_object_set_new(o, "sources", a);
	json_object_set_new(o, "throttle", json_pack("{s:b, s:I, s:I, s:o, s:o, s:I}",
	    "reduced", cur ? aimd_reduced(&cur->aimd) : 0,
	    "connections_allowed", (json_int_t)site->conn_limit,
	    "connections_shape", (json_int_t)site->max_conns,
	    "recipients_per_minute_allowed", rate_json(cur ? cur->aimd.rate : 0),
	    "recipients_per_minute_shape", rate_json(site->max_rate),
	    "recipients_per_minute_observed",
	    (json_int_t)(site_observed_rate(site, now_ms()) + 0.5)));
}

struct addr_ctx {
	struct mxsched *s;
	json_t *arr;
};

/* addr_blocks - the sites where one address is blocked (reply-driven) */
static void
addr_blocks(void *val, void *arg)
{
	const struct site *site = val;
	json_t **pair = arg;      /* [0] = array, [1] = the address (as string) */
	const char *ip = json_string_value(pair[1]);
	size_t i;

	for (i = 0; i < site->n_src; i++) {
		const struct site_src *ss = &site->src[i];
		if (ss->a == NULL || strcmp(ss->a->ip, ip) != 0 || ss->blocked_since == 0)
			continue;
		json_t *o = json_pack("{s:s, s:s, s:I, s:b}", "site", site->key,
		    "reason", ss->reason, "since_ms", (json_int_t)ss->blocked_since,
		    "suspended", ss->blocked_until != 0);
		if (ss->blocked_until && ss->blocked_until != UINT64_MAX)
			json_object_set_new(o, "until_ms", json_integer((json_int_t)ss->blocked_until));
		json_array_append_new(pair[0], o);
	}
}

static void
addr_json(void *val, void *arg)
{
	struct addr_ctx *ctx = arg;
	const struct srcaddr *a = val;
	json_t *pair[2] = { json_array(), json_string(a->ip) };
	json_t *o;

	smap_each(&ctx->s->sites, addr_blocks, pair);
	o = json_pack("{s:s, s:o, s:b, s:b, s:b, s:o, s:o}", "address", a->ip,
	    "ehlo", json_string(a->ehlo ? a->ehlo : ctx->s->ehlo),
	    "listed", a->listed > 0, "suspended", a->suspended && !a->released,
	    "released", a->released,
	    "zones", dnsbl_json(ctx->s->rep->bl, a), "blocked_at", pair[0]);
	if (a->listed) {
		json_object_set_new(o, "listed_since_ms", json_integer((json_int_t)a->listed_since));
		json_object_set_new(o, "reason", json_string(a->reason));
	}
	json_decref(pair[1]);
	json_array_append_new(ctx->arr, o);
}

static void
pool_json(void *val, void *arg)
{
	const struct pool *p = val;
	json_t *m = json_array();
	size_t i;

	for (i = 0; i < p->n; i++)
		json_array_append_new(m, json_pack("{s:s, s:I}", "address", p->m[i].a->ip,
		                                   "weight", (json_int_t)p->m[i].weight));
	json_object_set_new(arg, p->name, m);
}

static json_t *
rep_stats_json(const struct rep_stats *st)
{
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
	    "checks", (json_int_t)st->checks, "check_errors", (json_int_t)st->check_errors,
	    "listings", (json_int_t)st->listings, "delistings", (json_int_t)st->delistings,
	    "monitor_problems", (json_int_t)st->monitor_problems,
	    "reply_blocks", (json_int_t)st->reply_blocks, "releases", (json_int_t)st->releases,
	    "throttle_cuts", (json_int_t)st->throttle_cuts,
	    "address_moves", (json_int_t)st->address_moves,
	    "domain_listings", (json_int_t)st->domain_listings,
	    "domain_delistings", (json_int_t)st->domain_delistings,
	    "held", (json_int_t)st->held);
}

struct json_t *
mxsched_blocklists_json(struct mxsched *s)
{
	const struct config *c = s->cfg;
	struct addr_ctx ctx = { s, json_array() };
	json_t *pools = json_object(), *o;

	smap_each(&s->rep->addrs, addr_json, &ctx);
	smap_each(&s->rep->pools, pool_json, pools);
	o = json_pack("{s:o, s:I, s:s, s:I, s:o, s:o, s:o}",
	    "zones", dnsbl_zones_json(s->rep->bl),
	    "interval_ms", (json_int_t)c->bl_interval_ms,
	    "action", s->rep->act_suspend ? "suspend" : "alert",
	    "release_after_ms", (json_int_t)c->bl_release_after_ms,
	    "pools", pools, "addresses", ctx.arr,
	    "counters", rep_stats_json(&s->rep->st));
	dnsbl_domains_json(s->rep->bl, o);
	return o;
}

int
mxsched_blocklist_release(struct mxsched *s, const char *address, const char *site)
{
	if ((address == NULL || *address == '\0') && (site == NULL || *site == '\0'))
		return -1;
	return rep_release(s, address, site);
}

static json_t *
site_json(const struct site *site)
{
	uint64_t now = now_ms();
	json_t *o = json_pack(
	    "{s:s, s:o, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:s, s:b, s:s}, "
	    "s:I, s:I, s:I}",
	    "site", site->key,
	    "provider", site->provider ? json_string(site->provider) : json_null(),
	    "mx", site_mx_json(site),
	    "shape", "connections", (json_int_t)site->max_conns,
	    "connections_allowed_now", (json_int_t)site->conn_limit,
	    "messages_per_connection", (json_int_t)site->msgs_per_conn,
	    "recipients_per_transaction", (json_int_t)site->max_rcpt,
	    "recipients_limit_learned", (json_int_t)site->rcpt_limit,
	    "multi_domain", md_name(site->md), "multi_domain_learned", site->md_learned,
	    "tls", tls_names[site->tls],
	    "connections_open", (json_int_t)site->n_conns,
	    "ready_recipients", (json_int_t)site->n_ready,
	    "ready_messages", (json_int_t)site->n_msets);
	json_object_set_new(o, "suspended", json_boolean(site_suspended(site, now)));
	if (site_suspended(site, now)) {
		json_object_set_new(o, "suspended_until_ms", json_integer((json_int_t)site->suspended_until));
		json_object_set_new(o, "reason", json_string(site->reason));
	}
	json_object_set_new(o, "backoff_level", json_integer(site->backoff_level));
	json_object_set_new(o, "domains_known", json_integer((json_int_t)site->domains.n));
	site_rep_json(o, site);
	json_object_set_new(o, "counters", json_pack(
	    "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I}}",
	    "delivered", (json_int_t)site->delivered, "bounced", (json_int_t)site->bounced,
	    "deferred", (json_int_t)site->deferred, "transactions", (json_int_t)site->txns,
	    "connections_opened", (json_int_t)site->conns_opened,
	    "possibly_delivered", (json_int_t)site->possibly_delivered,
	    "splits_452", (json_int_t)site->splits_452,
	    "splits_multi_domain", (json_int_t)site->splits_md,
	    "deferrals", "recipient", (json_int_t)site->defer_recipient,
	    "connection", (json_int_t)site->defer_connection,
	    "reputation", (json_int_t)site->defer_reputation));
	json_object_set_new(json_object_get(o, "counters"), "ready_full",
	                    json_integer((json_int_t)site->ready_full));
	json_object_set_new(json_object_get(o, "shape"), "max_ready",
	                    json_integer((json_int_t)site->max_ready));
	json_object_set_new(o, "recipients_per_transaction", hist_json(&site->rpt));
	json_object_set_new(o, "messages_per_connection", hist_json(&site->mpc));
	return o;
}

static void
append_site(void *val, void *arg)
{
	json_array_append_new(arg, site_json(val));
}

struct json_t *
mxsched_sites_json(struct mxsched *s)
{
	json_t *a = json_array();

	smap_each(&s->sites, append_site, a);
	return a;
}

struct json_t *
mxsched_site_json(struct mxsched *s, const char *key)
{
	struct site *site = smap_get(&s->sites, key);
	json_t *o;

	if (site == NULL)
		return NULL;
	o = site_json(site);
	site_hist_json(site, o);
	return o;
}

int
mxsched_domain_site(struct mxsched *s, const char *domain, char *out, size_t len)
{
	char *key = resolver_site_of(s->res, domain);
	int rc = key && strlen(key) < len ? 0 : -1;

	if (rc == 0)
		memcpy(out, key, strlen(key) + 1);
	free(key);
	return rc;
}

int
mxsched_site_suspend(struct mxsched *s, const char *key, uint64_t ms,
                     const char *reason)
{
	struct site *site = smap_get(&s->sites, key);

	if (site == NULL)
		return -1;
	site_suspend_for(site, ms ? ms : s->cfg->site_backoff_ms,
	                 reason && *reason ? reason : "by the operator");
	sched_flush(s);
	site_pump(site);
	return 0;
}

int
mxsched_site_resume(struct mxsched *s, const char *key)
{
	struct site *site = smap_get(&s->sites, key);

	if (site == NULL)
		return -1;
	site_resume(site);
	site_pump(site);
	return 0;
}

int
mxsched_site_retry_now(struct mxsched *s, const char *key)
{
	if (mxsched_site_resume(s, key) < 0)
		return -1;
	mxsched_kick(s);
	return 0;
}

struct json_t *
mxsched_metrics_json(struct mxsched *s)
{
	struct resolve_stats rs;
	json_t *o;

	resolver_get_stats(s->res, &rs);
	o = json_pack(
	    "{s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
	    "s:{s:I, s:I, s:I, s:I, s:I}}",
	    "recipients_per_transaction", hist_json(&s->rpt),
	    "transactions", (json_int_t)s->rpt.count,
	    "connections_opened", (json_int_t)s->conns_opened,
	    "delivered", (json_int_t)s->delivered, "bounced", (json_int_t)s->bounced,
	    "deferred", (json_int_t)s->deferred, "suspensions", (json_int_t)s->suspensions,
	    "sites", (json_int_t)s->sites.n, "recipients_in_memory", (json_int_t)s->in_memory,
	    "domains_resolving", (json_int_t)s->waits.n,
	    "dns", "requests", (json_int_t)rs.requests, "queries", (json_int_t)rs.queries_sent,
	    "cache_hits", (json_int_t)rs.cache_hits, "cache_misses", (json_int_t)rs.cache_misses,
	    "coalesced", (json_int_t)rs.coalesced);
	json_object_set_new(o, "reputation", rep_stats_json(&s->rep->st));
	return o;
}
