/*
 * admin_metrics.c - GET /metrics in the Prometheus text exposition
 * format (version 0.0.4).
 *
 * Sources: the store's maintained counters (queue sizes by state, totals
 * since the spool was created) and its round statistics, the submission
 * server's counters, the admin API's own request counters, and,
 * when the scheduler is wired in, ops->metrics (flattened: numbers become
 * mxbatch_sched_<path>, an object with "buckets" [{le, count}], "sum" and
 * "count" becomes a histogram) and ops->sites (per-site series labelled
 * site and provider). Loop thread; reads no message.
 */
#include "api/admin_internal.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "core/core.h"

/* names of scheduler values that are gauges; everything else counts up */
static const char *const sched_gauges[] = {
	"sites", "recipients_in_memory", "domains_resolving", NULL
};

static void
metric_head(struct evbuffer *b, const char *name, const char *type,
            const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
metric_u64(struct evbuffer *b, const char *name, const char *labels, uint64_t v)
{
	evbuffer_add_printf(b, "%s%s %llu\n", name, labels ? labels : "",
	                    (unsigned long long)v);
}

/* metric_one - a metric with one unlabelled sample */
static void
metric_one(struct evbuffer *b, const char *name, const char *type,
           const char *help, uint64_t v)
{
	metric_head(b, name, type, help);
	metric_u64(b, name, NULL, v);
}

/* label_value - escape \, " and newline for a label value */
static void
label_value(char *out, size_t len, const char *s)
{
	size_t o = 0;

	for (; s && *s && o + 3 < len; s++) {
		if (*s == '\\' || *s == '"' || *s == '\n') {
			out[o++] = '\\';
			out[o++] = *s == '\n' ? 'n' : *s;
		} else {
			out[o++] = *s;
		}
	}
	out[o] = '\0';
}

static void
queue_metrics(struct admin *a, struct evbuffer *b)
{
	static const char *const out[] = { "delivered", "bounced", "expired", "deleted" };
	struct queue_counters c;
	uint64_t tot[4];
	char l[64];

	queue_counters_get(a->q, &c);
	tot[0] = c.total_delivered;
	tot[1] = c.total_bounced;
	tot[2] = c.total_expired;
	tot[3] = c.total_deleted;
	metric_one(b, "mxbatch_queue_messages", "gauge",
	           "Messages in the spool", c.messages);
	metric_one(b, "mxbatch_queue_bytes", "gauge",
	           "Body bytes in the spool", c.bytes);
	metric_head(b, "mxbatch_queue_recipients", "gauge",
	            "Non-terminal recipients by state");
	metric_u64(b, "mxbatch_queue_recipients", "{state=\"ready\"}",
	           c.rcpts_queued - c.rcpts_deferred);
	metric_u64(b, "mxbatch_queue_recipients", "{state=\"deferred\"}", c.rcpts_deferred);
	metric_u64(b, "mxbatch_queue_recipients", "{state=\"inflight\"}", c.rcpts_inflight);
	metric_u64(b, "mxbatch_queue_recipients", "{state=\"held\"}", c.rcpts_held);
	metric_one(b, "mxbatch_messages_accepted_total", "counter",
	           "Messages accepted into the spool since it was created",
	           c.total_messages);
	metric_head(b, "mxbatch_recipients_total", "counter",
	            "Recipients that reached a final state, by outcome");
	for (int i = 0; i < 4; i++) {
		snprintf(l, sizeof(l), "{outcome=\"%s\"}", out[i]);
		metric_u64(b, "mxbatch_recipients_total", l, tot[i]);
	}
}

/* hist_u64 - a histogram from per-bucket counts (n bounds, n + 1
 * counts); bounds are divided by scale (microseconds -> seconds) */
static void
hist_u64(struct evbuffer *b, const char *name, const char *help,
         const uint64_t *bounds, const uint64_t *counts, size_t n,
         double scale, double sum, uint64_t count)
{
	uint64_t cum = 0;

	metric_head(b, name, "histogram", help);
	for (size_t i = 0; i <= n; i++) {
		cum += counts[i];
		if (i < n)
			evbuffer_add_printf(b, "%s_bucket{le=\"%.17g\"} %llu\n", name,
			                    (double)bounds[i] / scale, (unsigned long long)cum);
		else
			evbuffer_add_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name,
			                    (unsigned long long)cum);
	}
	evbuffer_add_printf(b, "%s_sum %.17g\n%s_count %llu\n", name, sum, name,
	                    (unsigned long long)count);
}

/* store_metrics - the store thread's rounds (group commit) */
static void
store_metrics(struct admin *a, struct evbuffer *b)
{
	struct queue_stats st;

	queue_stats_get(a->q, &st);
	metric_one(b, "mxbatch_store_rounds_total", "counter",
	           "Store commit rounds written with the WAL synced", st.rounds);
	metric_one(b, "mxbatch_store_rounds_failed_total", "counter",
	           "Store commit rounds whose write failed", st.rounds_failed);
	hist_u64(b, "mxbatch_store_round_operations", "Operations (submissions, "
	         "outcomes, actions) per store commit round", queue_round_ops_bounds,
	         st.round_ops, QUEUE_STAT_BUCKETS, 1, (double)st.ops, st.rounds);
	hist_u64(b, "mxbatch_store_sync_seconds", "Duration of each round's synced "
	         "write (WAL write + fsync)", queue_sync_us_bounds, st.sync_us,
	         QUEUE_STAT_BUCKETS, 1e6, (double)st.sync_us_sum / 1e6, st.rounds);
}

/* smtpd_metrics - the submission server: sessions, acceptances,
 * rejections by reason */
static void
smtpd_metrics(struct admin *a, struct evbuffer *b)
{
	struct smtpd_stats st;
	char l[64];

	if (a->smtpd == NULL)
		return;
	smtpd_stats_get(a->smtpd, &st);
	metric_one(b, "mxbatch_smtpd_sessions_open", "gauge",
	           "Submission sessions open now", st.sessions_open);
	metric_one(b, "mxbatch_smtpd_sessions_total", "counter",
	           "Submission sessions since start", st.sessions_total);
	metric_one(b, "mxbatch_smtpd_messages_accepted_total", "counter",
	           "Messages accepted by submission since start (durable, 250 sent)",
	           st.messages);
	metric_one(b, "mxbatch_smtpd_recipients_accepted_total", "counter",
	           "Recipients of the messages accepted by submission since start",
	           st.recipients);
	metric_head(b, "mxbatch_smtpd_rejections_total", "counter",
	            "4xx/5xx replies sent by submission, and connections refused, by reason");
	for (int i = 0; i < SMTPD_REJECT_REASONS; i++) {
		snprintf(l, sizeof(l), "{reason=\"%s\"}", smtpd_reject_names[i]);
		metric_u64(b, "mxbatch_smtpd_rejections_total", l, st.rejected[i]);
	}
}

static void
admin_self_metrics(struct admin *a, struct evbuffer *b)
{
	metric_one(b, "mxbatch_admin_requests_total", "counter",
	           "Admin API requests received", a->n_requests);
	metric_one(b, "mxbatch_admin_unauthorized_total", "counter",
	           "Admin API requests refused for a missing or wrong token",
	           a->n_unauthorized);
	metric_one(b, "mxbatch_admin_actions_total", "counter",
	           "Admin actions performed (hold, release, delete, suspend, ...)",
	           a->n_actions);
	metric_one(b, "mxbatch_admin_event_waiters", "gauge",
	           "Event long-polls waiting", a->n_waiters);
}

/* hist_lines - the samples of one histogram {buckets: [{le, count}],
 * sum, count}; labels: "" or 'k="v",...' put before le */
static void
hist_lines(struct evbuffer *b, const char *name, const char *labels, json_t *h)
{
	json_t *bk;
	size_t i;
	char le[32];

	json_array_foreach(json_object_get(h, "buckets"), i, bk) {
		json_t *v = json_object_get(bk, "le");

		if (json_is_integer(v))
			snprintf(le, sizeof(le), "%lld", (long long)json_integer_value(v));
		else
			snprintf(le, sizeof(le), "+Inf");
		evbuffer_add_printf(b, "%s_bucket{%s%sle=\"%s\"} %lld\n", name, labels,
		                    *labels ? "," : "", le,
		                    (long long)json_integer_value(json_object_get(bk, "count")));
	}
	evbuffer_add_printf(b, "%s_sum%s%s%s %lld\n%s_count%s%s%s %lld\n",
	                    name, *labels ? "{" : "", labels, *labels ? "}" : "",
	                    (long long)json_integer_value(json_object_get(h, "sum")),
	                    name, *labels ? "{" : "", labels, *labels ? "}" : "",
	                    (long long)json_integer_value(json_object_get(h, "count")));
}

static void
sched_histogram(struct evbuffer *b, const char *name, json_t *h)
{
	metric_head(b, name, "histogram", "Scheduler histogram");
	hist_lines(b, name, "", h);
}

static int
is_gauge(const char *key)
{
	for (int i = 0; sched_gauges[i]; i++)
		if (strcmp(sched_gauges[i], key) == 0)
			return 1;
	return 0;
}

/* sched_flatten - write every number of o under prefix */
static void
sched_flatten(struct evbuffer *b, const char *prefix, json_t *o, int depth)
{
	const char *k;
	json_t *v;
	char name[256];

	json_object_foreach(o, k, v) {
		if (snprintf(name, sizeof(name), "%s_%s", prefix, k) >= (int)sizeof(name))
			continue; /* no metric name is that long */
		for (char *p = name; *p; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			      (*p >= '0' && *p <= '9') || *p == '_'))
				*p = '_';
		if (json_is_object(v) && json_object_get(v, "buckets")) {
			sched_histogram(b, name, v);
		} else if (json_is_object(v) && depth < 3) {
			sched_flatten(b, name, v, depth + 1);
		} else if (json_is_number(v) && is_gauge(k)) {
			metric_head(b, name, "gauge", "Scheduler gauge");
			evbuffer_add_printf(b, "%s %.17g\n", name, json_number_value(v));
		} else if (json_is_number(v)) {
			strncat(name, "_total", sizeof(name) - strlen(name) - 1);
			metric_head(b, name, "counter", "Scheduler counter");
			evbuffer_add_printf(b, "%s %.17g\n", name, json_number_value(v));
		}
	}
}

/* site_series - one per-site metric over every site */
static void
site_series(struct evbuffer *b, json_t *sites, const char *name, const char *type,
            const char *help, const char *obj, const char *field)
{
	json_t *s;
	size_t i;
	char key[512], prov[256];

	metric_head(b, name, type, help);
	json_array_foreach(sites, i, s) {
		json_t *src = obj ? json_object_get(s, obj) : s;
		json_t *v = json_object_get(src, field);

		if (v == NULL)
			continue;
		label_value(key, sizeof(key), json_string_value(json_object_get(s, "site")));
		label_value(prov, sizeof(prov), json_string_value(json_object_get(s, "provider")));
		evbuffer_add_printf(b, "%s{site=\"%s\",provider=\"%s\"} %lld\n", name, key,
		                    prov, json_is_true(v) ? 1LL : (long long)json_integer_value(v));
	}
}

/* site_deferrals - counters.deferrals {class: n} of every site */
static void
site_deferrals(struct evbuffer *b, json_t *sites)
{
	const char *name = "mxbatch_site_deferrals_total", *cls;
	char key[512], prov[256], lc[64];
	json_t *s, *v;
	size_t i;

	metric_head(b, name, "counter", "Deferrals per site by class "
	            "(recipient, connection, reputation)");
	json_array_foreach(sites, i, s) {
		label_value(key, sizeof(key), json_string_value(json_object_get(s, "site")));
		label_value(prov, sizeof(prov), json_string_value(json_object_get(s, "provider")));
		json_object_foreach(json_object_get(json_object_get(s, "counters"),
		                                    "deferrals"), cls, v) {
			label_value(lc, sizeof(lc), cls);
			evbuffer_add_printf(b, "%s{site=\"%s\",provider=\"%s\",class=\"%s\"} "
			                    "%lld\n", name, key, prov, lc,
			                    (long long)json_integer_value(v));
		}
	}
}

/* site_histogram - one per-site histogram ({buckets, sum, count}) */
static void
site_histogram(struct evbuffer *b, json_t *sites, const char *name,
               const char *help, const char *field)
{
	char key[512], prov[256], labels[1024];
	json_t *s, *h;
	size_t i;

	metric_head(b, name, "histogram", help);
	json_array_foreach(sites, i, s) {
		if ((h = json_object_get(s, field)) == NULL)
			continue;
		label_value(key, sizeof(key), json_string_value(json_object_get(s, "site")));
		label_value(prov, sizeof(prov), json_string_value(json_object_get(s, "provider")));
		snprintf(labels, sizeof(labels), "site=\"%s\",provider=\"%s\"", key, prov);
		hist_lines(b, name, labels, h);
	}
}

static void
site_metrics(struct evbuffer *b, json_t *sites)
{
	site_series(b, sites, "mxbatch_site_connections_open", "gauge",
	            "Open SMTP connections per site", NULL, "connections_open");
	site_series(b, sites, "mxbatch_site_ready_recipients", "gauge",
	            "Recipients ready for a site", NULL, "ready_recipients");
	site_series(b, sites, "mxbatch_site_suspended", "gauge",
	            "1 while a site is suspended", NULL, "suspended");
	site_series(b, sites, "mxbatch_site_recipients_limit", "gauge",
	            "Recipients per transaction in force (learned)", "shape",
	            "recipients_limit_learned");
	site_series(b, sites, "mxbatch_site_delivered_total", "counter",
	            "Recipients delivered per site", "counters", "delivered");
	site_series(b, sites, "mxbatch_site_bounced_total", "counter",
	            "Recipients bounced per site", "counters", "bounced");
	site_series(b, sites, "mxbatch_site_deferred_total", "counter",
	            "Recipients deferred per site", "counters", "deferred");
	site_series(b, sites, "mxbatch_site_transactions_total", "counter",
	            "SMTP transactions per site", "counters", "transactions");
	site_series(b, sites, "mxbatch_site_connections_opened_total", "counter",
	            "SMTP connections opened per site", "counters", "connections_opened");
	site_series(b, sites, "mxbatch_site_possibly_delivered_total", "counter",
	            "Recipients deferred after a connection lost after the final dot",
	            "counters", "possibly_delivered");
	site_series(b, sites, "mxbatch_site_ready_full_total", "counter",
	            "Recipients sent back to disk because the site had max_ready ready",
	            "counters", "ready_full");
	site_deferrals(b, sites);
	site_histogram(b, sites, "mxbatch_site_recipients_per_transaction",
	               "Recipients per SMTP transaction, per site", "recipients_per_transaction");
	site_histogram(b, sites, "mxbatch_site_messages_per_connection",
	               "Messages (transactions) per closed SMTP connection, per site",
	               "messages_per_connection");
}

void
admin_metrics_get(struct admin_req *r)
{
	const struct admin_sched_ops *ops = r->a->ops;
	struct evbuffer *b;
	json_t *m;

	if (r->method != EVHTTP_REQ_GET) {
		admin_reply_error(r->req, 405, "method_not_allowed", "GET /metrics");
		return;
	}
	b = evbuffer_new();
	queue_metrics(r->a, b);
	store_metrics(r->a, b);
	smtpd_metrics(r->a, b);
	admin_self_metrics(r->a, b);
	metric_one(b, "mxbatch_scheduler_up", "gauge",
	           "1 when the scheduler reports to the admin API", ops != NULL);
	if (ops && ops->metrics && (m = ops->metrics(ops->ctx)) != NULL) {
		sched_flatten(b, "mxbatch_sched", m, 0);
		json_decref(m);
	}
	if (ops && ops->sites && (m = ops->sites(ops->ctx)) != NULL) {
		site_metrics(b, m);
		json_decref(m);
	}
	admin_reply_text(r->req, 200, "text/plain; version=0.0.4; charset=utf-8", b);
	evbuffer_free(b);
}
