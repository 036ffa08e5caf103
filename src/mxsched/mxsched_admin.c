/*
 * mxsched_admin.c - what the scheduler shows and takes from postmasters:
 * site summaries as JSON, suspend / resume / retry-now by site key, and
 * the scheduler's metrics. Called on the loop thread by the admin API
 * through the ops table that src/daemon.c builds.
 */
#include "mxsched/mxsched_internal.h"

#include <jansson.h>
#include <string.h>

const unsigned rpt_bounds[RPT_BUCKETS] = { 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000 };

void
sched_count_txn(struct mxsched *s, size_t n)
{
	size_t i;

	for (i = 0; i < RPT_BUCKETS && n > rpt_bounds[i]; i++)
		;
	s->rpt_hist[i]++;
	s->rpt_sum += n;
	s->txns++;
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

	return site ? site_json(site) : NULL;
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
	json_t *hist = json_array();
	uint64_t cum = 0;
	size_t i;

	for (i = 0; i <= RPT_BUCKETS; i++) {
		cum += s->rpt_hist[i];
		json_array_append_new(hist, json_pack("{s:o, s:I}", "le",
		    i < RPT_BUCKETS ? json_integer(rpt_bounds[i]) : json_string("+Inf"),
		    "count", (json_int_t)cum));
	}
	resolver_get_stats(s->res, &rs);
	return json_pack(
	    "{s:{s:o, s:I, s:I}, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
	    "s:{s:I, s:I, s:I, s:I, s:I}}",
	    "recipients_per_transaction", "buckets", hist, "sum", (json_int_t)s->rpt_sum,
	    "count", (json_int_t)s->txns,
	    "transactions", (json_int_t)s->txns,
	    "connections_opened", (json_int_t)s->conns_opened,
	    "delivered", (json_int_t)s->delivered, "bounced", (json_int_t)s->bounced,
	    "deferred", (json_int_t)s->deferred, "suspensions", (json_int_t)s->suspensions,
	    "sites", (json_int_t)s->sites.n, "recipients_in_memory", (json_int_t)s->in_memory,
	    "domains_resolving", (json_int_t)s->waits.n,
	    "dns", "requests", (json_int_t)rs.requests, "queries", (json_int_t)rs.queries_sent,
	    "cache_hits", (json_int_t)rs.cache_hits, "cache_misses", (json_int_t)rs.cache_misses,
	    "coalesced", (json_int_t)rs.coalesced);
}
