/*
 * admin_suppress.c - /v1/suppressions: the store's suppression list.
 * GET /v1/suppressions[?after=ADDRESS&limit=N] lists entries in address
 * order (expired ones included, with "active": false); DELETE
 * /v1/suppressions/{address} removes one (applied by the store's next
 * group-commit round, milliseconds later). Loop thread.
 */
#include "api/admin_internal.h"

#include <string.h>

#include <event2/http.h>

#include "core/core.h"
#include "queue/queue.h"

#define SUP_LIST_DEFAULT 100
#define SUP_LIST_MAX 1000

static json_t *
sup_json(const struct queue_suppression *s, uint64_t now)
{
	return json_pack("{s:s, s:s, s:s, s:I, s:I, s:b}", "address", s->address,
	    "category", s->category, "reason", s->reason,
	    "added_ms", (json_int_t)s->added_ms, "until_ms", (json_int_t)s->until_ms,
	    "active", s->until_ms > now);
}

static void
sup_list(struct admin_req *r)
{
	const char *after = admin_query(r, "after");
	uint64_t limit = SUP_LIST_DEFAULT, now = now_ms();
	struct queue_suppression *v = NULL;
	json_t *arr;
	int n, i;

	if (admin_query_u64(r, "limit", SUP_LIST_MAX, &limit) < 0)
		return;
	if ((n = queue_suppress_list(r->a->q, after ? after : "", (size_t)limit, &v)) < 0) {
		admin_reply_error(r->req, 500, "store_error", "cannot read the suppression list");
		return;
	}
	arr = json_array();
	for (i = 0; i < n; i++)
		json_array_append_new(arr, sup_json(&v[i], now));
	admin_reply_json(r->req, 200, json_pack("{s:o, s:o}", "suppressions", arr,
	    "next", n == (int)limit && n > 0 ? json_string(v[n - 1].address) : json_null()));
	queue_suppressions_free(v, (size_t)n);
}

static void
sup_delete(struct admin_req *r, const char *address)
{
	struct queue_suppression s;

	if (strlen(address) > 512 || strchr(address, '@') == NULL) {
		admin_reply_error(r->req, 400, "bad_address", "not an email address");
		return;
	}
	/* until_ms > 0: any stored entry, expired or not */
	if (queue_suppress_check(r->a->q, address, 0, &s) != 1) {
		admin_reply_error(r->req, 404, "not_found", "'%s' is not suppressed", address);
		return;
	}
	queue_suppress_delete(r->a->q, address, NULL, NULL);
	admin_audit(r->a, r->who, address, "remove suppression (%s)", s.category);
	admin_reply_json(r->req, 200, json_pack("{s:s, s:s}", "address", s.address,
	                 "status", "removed"));
	queue_suppression_clear(&s);
}

void
admin_suppressions_route(struct admin_req *r)
{
	if (r->n_seg == 2 && r->method == EVHTTP_REQ_GET)
		sup_list(r);
	else if (r->n_seg == 3 && r->method == EVHTTP_REQ_DELETE)
		sup_delete(r, r->seg[2]);
	else
		admin_reply_error(r->req, 405, "method_not_allowed",
		                  "GET /v1/suppressions, DELETE /v1/suppressions/ADDRESS");
}
