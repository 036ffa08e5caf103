/*
 * admin_queue.c - GET /v1/queue: the queue at a glance.
 *
 * Totals by state come from the store's maintained counters (never a
 * scan). The oldest message is the first key of the id-ordered message
 * table (one seek). Top sites and providers come from the scheduler's
 * in-memory site table (ops->sites): recipients it holds ready per site.
 * Top domains and tenants come from a bounded sample: the oldest
 * ADMIN_SAMPLE_MSGS messages (at most ADMIN_SAMPLE_RCPTS recipients),
 * re-read at most every ADMIN_SAMPLE_TTL_MS when asked for (or with
 * ?refresh=1); the reply
 * says whether the sample covered the whole queue. Loop thread.
 */
#include "api/admin_internal.h"

#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "core/core.h"

#define ADMIN_SAMPLE_MSGS   1000
#define ADMIN_SAMPLE_RCPTS  20000
#define ADMIN_SAMPLE_TTL_MS 10000
#define ADMIN_TOP_N         10

struct admin_sample {
	uint64_t taken_ms;   /* mono */
	size_t msgs, rcpts;
	int complete;        /* the whole queue was read */
	json_t *domains;     /* domain -> {recipients, oldest_ms, last_code} */
	json_t *tenants;     /* tenant -> {recipients, messages, oldest_ms} */
};

void
admin_sample_free(struct admin_sample *s)
{
	if (s == NULL)
		return;
	json_decref(s->domains);
	json_decref(s->tenants);
	free(s);
}

/* bump - add one to key's entry of tab (created on first use) */
static json_t *
bump(json_t *tab, const char *key, const char *field, uint64_t submit_ms)
{
	json_t *e = json_object_get(tab, key);
	json_t *old;

	if (e == NULL) {
		e = json_pack("{s:I, s:I}", "recipients", (json_int_t)0,
		              "oldest_ms", (json_int_t)submit_ms);
		json_object_set_new(tab, key, e);
	}
	old = json_object_get(e, field);
	json_object_set_new(e, field, json_integer(old ? json_integer_value(old) + 1 : 1));
	if ((json_int_t)submit_ms < json_integer_value(json_object_get(e, "oldest_ms")))
		json_object_set_new(e, "oldest_ms", json_integer((json_int_t)submit_ms));
	return e;
}

/* sample_msg - count one message's recipients by domain and its tenant */
static void
sample_msg(struct admin *a, struct admin_sample *s, const struct queue_envelope *env)
{
	struct queue_rcpt *r;
	int n = queue_msg_rcpts(a->q, env->id, &r);
	const char *tenant = env->tenant ? env->tenant : "";

	for (int i = 0; i < n; i++) {
		json_t *e = bump(s->domains, r[i].domain, "recipients", env->submit_ms);

		if (r[i].last_code)
			json_object_set_new(e, "last_code", json_integer(r[i].last_code));
		bump(s->tenants, tenant, "recipients", env->submit_ms);
	}
	if (n > 0) {
		bump(s->tenants, tenant, "messages", env->submit_ms);
		s->rcpts += (size_t)n;
	}
	queue_rcpts_free(r, n > 0 ? (size_t)n : 0);
	s->msgs++;
}

static struct admin_sample *
sample_take(struct admin *a)
{
	struct admin_sample *s = xcalloc(1, sizeof(*s));
	struct queue_envelope *page[100];
	queue_msgid after = 0;
	int n = 0;

	s->domains = json_object();
	s->tenants = json_object();
	s->complete = 1;
	while (s->msgs < ADMIN_SAMPLE_MSGS && s->rcpts < ADMIN_SAMPLE_RCPTS &&
	       (n = queue_msg_list(a->q, after, NULL, 100, page)) > 0) {
		for (int i = 0; i < n; i++) {
			if (s->msgs < ADMIN_SAMPLE_MSGS && s->rcpts < ADMIN_SAMPLE_RCPTS)
				sample_msg(a, s, page[i]);
			else
				s->complete = 0;
			after = page[i]->id;
			queue_envelope_free(page[i]);
		}
	}
	if (n > 0)
		s->complete = 0;
	s->taken_ms = mono_ms();
	return s;
}

/* sample_get - the sample, re-read when older than its TTL */
static struct admin_sample *
sample_get(struct admin *a)
{
	if (a->sample && mono_ms() - a->sample->taken_ms < ADMIN_SAMPLE_TTL_MS)
		return a->sample;
	admin_sample_free(a->sample);
	a->sample = sample_take(a);
	return a->sample;
}

static const char *
reply_class(json_int_t code)
{
	return code >= 500 ? "5xx" : code >= 400 ? "4xx" : code >= 200 ? "2xx" : NULL;
}

/* top_of - the n entries of tab with the most recipients, as an array */
static json_t *
top_of(json_t *tab, const char *keyname, uint64_t now)
{
	json_t *out = json_array(), *e;
	const char *k;

	json_object_foreach(tab, k, e) {
		json_int_t oldest = json_integer_value(json_object_get(e, "oldest_ms"));
		json_t *row = json_pack("{s:s, s:O, s:I}", keyname, k, "recipients",
		                        json_object_get(e, "recipients"), "oldest_age_ms",
		                        (json_int_t)(now - (uint64_t)oldest));
		json_t *m = json_object_get(e, "messages");
		json_t *lc = json_object_get(e, "last_code");

		if (m)
			json_object_set(row, "messages", m);
		if (lc && reply_class(json_integer_value(lc)))
			json_object_set_new(row, "last_reply_class",
			                    json_string(reply_class(json_integer_value(lc))));
		json_array_append_new(out, row);
	}
	return out;
}

static int
by_field_desc(const void *x, const void *y, const char *f)
{
	json_int_t a = json_integer_value(json_object_get(*(json_t *const *)x, f));
	json_int_t b = json_integer_value(json_object_get(*(json_t *const *)y, f));

	return a < b ? 1 : a > b ? -1 : 0;
}

static int
by_recipients(const void *x, const void *y)
{
	return by_field_desc(x, y, "recipients");
}

static int
by_ready(const void *x, const void *y)
{
	return by_field_desc(x, y, "ready_recipients");
}

/* sorted_top - sort arr by cmp, keep ADMIN_TOP_N; steals arr */
static json_t *
sorted_top(json_t *arr, int (*cmp)(const void *, const void *))
{
	size_t n = json_array_size(arr), i;
	json_t **v = xcalloc(n + 1, sizeof(*v));
	json_t *out = json_array();

	for (i = 0; i < n; i++)
		v[i] = json_array_get(arr, i);
	qsort(v, n, sizeof(*v), cmp);
	for (i = 0; i < n && i < ADMIN_TOP_N; i++)
		json_array_append(out, v[i]);
	free(v);
	json_decref(arr);
	return out;
}

/* sites_top - top sites and providers by ready recipients (scheduler) */
static void
sites_top(struct admin *a, json_t *o)
{
	json_t *sites, *prov = json_object(), *s, *p;
	const char *name;
	size_t i;

	if (a->ops == NULL || a->ops->sites == NULL ||
	    (sites = a->ops->sites(a->ops->ctx)) == NULL) {
		json_decref(prov);
		return;
	}
	json_array_foreach(sites, i, s) {
		json_t *pn = json_object_get(s, "provider");
		json_int_t ready = json_integer_value(json_object_get(s, "ready_recipients"));

		if (!json_is_string(pn))
			continue;
		p = json_object_get(prov, json_string_value(pn));
		if (p == NULL) {
			p = json_pack("{s:O, s:I, s:I}", "provider", pn, "ready_recipients",
			              (json_int_t)0, "sites", (json_int_t)0);
			json_object_set_new(prov, json_string_value(pn), p);
		}
		json_object_set_new(p, "ready_recipients", json_integer(ready +
		    json_integer_value(json_object_get(p, "ready_recipients"))));
		json_object_set_new(p, "sites", json_integer(1 +
		    json_integer_value(json_object_get(p, "sites"))));
	}
	json_object_set_new(o, "top_sites", sorted_top(json_deep_copy(sites), by_ready));
	s = json_array();
	json_object_foreach(prov, name, p)
		json_array_append(s, p);
	json_object_set_new(o, "top_providers", sorted_top(s, by_ready));
	json_decref(prov);
	json_decref(sites);
}

json_t *
admin_queue_counters_json(struct admin *a)
{
	struct queue_counters c;

	queue_counters_get(a->q, &c);
	return json_pack(
	    "{s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I}, s:{s:I, s:I, s:I, s:I, s:I}}",
	    "messages", (json_int_t)c.messages, "bytes", (json_int_t)c.bytes,
	    "recipients", "total", (json_int_t)c.rcpts,
	    "queued", (json_int_t)c.rcpts_queued,
	    "ready", (json_int_t)(c.rcpts_queued - c.rcpts_deferred),
	    "deferred", (json_int_t)c.rcpts_deferred,
	    "inflight", (json_int_t)c.rcpts_inflight, "held", (json_int_t)c.rcpts_held,
	    "totals", "messages", (json_int_t)c.total_messages,
	    "delivered", (json_int_t)c.total_delivered,
	    "bounced", (json_int_t)c.total_bounced,
	    "expired", (json_int_t)c.total_expired,
	    "deleted", (json_int_t)c.total_deleted);
}

/* oldest_json - the oldest stored message: one seek */
static json_t *
oldest_json(struct admin *a)
{
	struct queue_envelope *env[1];
	char idt[QUEUE_ID_TEXT_LEN];
	json_t *o;

	if (queue_msg_list(a->q, 0, NULL, 1, env) != 1)
		return json_null();
	queue_id_to_text(env[0]->id, idt);
	o = json_pack("{s:s, s:I}", "id", idt, "age_ms",
	              (json_int_t)(now_ms() - env[0]->submit_ms));
	queue_envelope_free(env[0]);
	return o;
}

void
admin_queue_get(struct admin_req *r)
{
	struct admin *a = r->a;
	struct admin_sample *s;
	json_t *o;
	uint64_t now = now_ms();

	if (r->method != EVHTTP_REQ_GET) {
		admin_reply_error(r->req, 405, "method_not_allowed", "GET /v1/queue");
		return;
	}
	o = admin_queue_counters_json(a);
	json_object_set_new(o, "oldest", oldest_json(a));
	if (admin_query(r, "refresh") && strcmp(admin_query(r, "refresh"), "0")) {
		admin_sample_free(a->sample); /* ?refresh=1: re-read the sample now */
		a->sample = NULL;
	}
	s = sample_get(a);
	json_object_set_new(o, "top_domains",
	                    sorted_top(top_of(s->domains, "domain", now), by_recipients));
	json_object_set_new(o, "top_tenants",
	                    sorted_top(top_of(s->tenants, "tenant", now), by_recipients));
	json_object_set_new(o, "sample", json_pack(
	    "{s:I, s:I, s:b, s:I}", "messages", (json_int_t)s->msgs,
	    "recipients", (json_int_t)s->rcpts, "complete", s->complete,
	    "age_ms", (json_int_t)(mono_ms() - s->taken_ms)));
	sites_top(a, o);
	admin_reply_json(r->req, 200, o);
}
