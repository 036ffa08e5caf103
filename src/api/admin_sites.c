/*
 * admin_sites.c - /v1/sites: the scheduler's sites, through the ops table
 * daemon.c hands to admin_start (src/api never includes mxsched.h).
 * GET /v1/sites, GET /v1/sites/{site}, POST /v1/sites/{site}/suspend
 * (JSON {"duration": "10m", "reason": "..."} or ?duration=&reason=),
 * /resume and /retry-now. Site keys arrive URL-encoded in one path
 * segment. GET /v1/blocklists and POST /v1/blocklists/release
 * ({"address": "...", "site": "..."}). Without a scheduler (ops NULL)
 * every one of these answers 503.
 * Loop thread.
 */
#include "api/admin_internal.h"

#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "core/core.h"

#define ADMIN_SITE_KEY_MAX  1024
#define ADMIN_REASON_MAX    256

static int
by_key(const void *x, const void *y)
{
	const char *a = json_string_value(json_object_get(*(json_t *const *)x, "site"));
	const char *b = json_string_value(json_object_get(*(json_t *const *)y, "site"));

	return strcmp(a ? a : "", b ? b : "");
}

static void
sites_list(struct admin_req *r)
{
	const struct admin_sched_ops *ops = r->a->ops;
	json_t *arr = ops->sites(ops->ctx), *out = json_array();
	size_t n = json_array_size(arr);
	json_t **v = xcalloc(n + 1, sizeof(*v));

	for (size_t i = 0; i < n; i++)
		v[i] = json_array_get(arr, i);
	qsort(v, n, sizeof(*v), by_key);
	for (size_t i = 0; i < n; i++)
		json_array_append(out, v[i]);
	free(v);
	json_decref(arr);
	admin_reply_json(r->req, 200, json_pack("{s:o}", "sites", out));
}

/* suspend_params - duration (ms) and reason from the body or the query */
static int
suspend_params(struct admin_req *r, uint64_t *ms, const char **reason)
{
	json_t *d = r->body ? json_object_get(r->body, "duration") : NULL;
	const char *ds = d ? json_string_value(d) : admin_query(r, "duration");
	json_t *rs = r->body ? json_object_get(r->body, "reason") : NULL;

	*ms = 0;
	*reason = rs ? json_string_value(rs) : admin_query(r, "reason");
	if (d && json_is_integer(d) && json_integer_value(d) >= 0)
		*ms = (uint64_t)json_integer_value(d) * 1000;
	else if ((d && !ds) || (ds && parse_duration_ms(ds, ms) < 0)) {
		admin_reply_error(r->req, 400, "bad_parameter",
		                  "duration: seconds, or \"30s\", \"10m\", \"4h\", \"2d\"");
		return -1;
	}
	if ((rs && !*reason) || (*reason && strlen(*reason) > ADMIN_REASON_MAX)) {
		admin_reply_error(r->req, 400, "bad_parameter",
		                  "reason: a string of at most %d bytes", ADMIN_REASON_MAX);
		return -1;
	}
	return 0;
}

/* site_action - suspend / resume / retry-now one site */
static void
site_action(struct admin_req *r, const char *key, const char *action)
{
	const struct admin_sched_ops *ops = r->a->ops;
	const char *reason = NULL;
	uint64_t ms = 0;
	json_t *st;
	int rc;

	if (strcmp(action, "suspend") == 0) {
		if (suspend_params(r, &ms, &reason) < 0)
			return;
		rc = ops->site_suspend(ops->ctx, key, ms, reason);
	} else if (strcmp(action, "resume") == 0) {
		rc = ops->site_resume(ops->ctx, key);
	} else if (strcmp(action, "retry-now") == 0) {
		rc = ops->site_retry_now(ops->ctx, key);
	} else {
		admin_reply_error(r->req, 404, "not_found",
		                  "site actions: suspend, resume, retry-now");
		return;
	}
	if (rc < 0) {
		admin_reply_error(r->req, 404, "unknown_site", "no site '%s'", key);
		return;
	}
	admin_audit(r->a, r->who, key, "%s site%s%s", action,
	            reason ? ": " : "", reason ? reason : "");
	st = ops->site(ops->ctx, key);
	admin_reply_json(r->req, 200, json_pack("{s:s, s:s, s:s, s:o}", "site", key,
	                 "action", action, "status", "done",
	                 "state", st ? st : json_null()));
}

void
admin_sites_route(struct admin_req *r)
{
	const struct admin_sched_ops *ops = r->a->ops;
	json_t *s;

	if (ops == NULL || !ops->sites || !ops->site || !ops->site_suspend ||
	    !ops->site_resume || !ops->site_retry_now) {
		admin_reply_error(r->req, 503, "scheduler_unavailable",
		                  "the scheduler is not running in this daemon");
		return;
	}
	if (r->n_seg > 4) {
		admin_reply_error(r->req, 404, "not_found", "no such endpoint");
		return;
	}
	if (r->n_seg >= 3 && strlen(r->seg[2]) > ADMIN_SITE_KEY_MAX) {
		admin_reply_error(r->req, 400, "bad_site", "site key too long");
		return;
	}
	if (r->n_seg == 4 && r->method == EVHTTP_REQ_POST) {
		site_action(r, r->seg[2], r->seg[3]);
	} else if (r->method != EVHTTP_REQ_GET || r->n_seg == 4) {
		admin_reply_error(r->req, 405, "method_not_allowed",
		                  "GET /v1/sites[/SITE], POST /v1/sites/SITE/ACTION");
	} else if (r->n_seg == 2) {
		sites_list(r);
	} else if ((s = ops->site(ops->ctx, r->seg[2])) == NULL) {
		admin_reply_error(r->req, 404, "unknown_site", "no site '%s'", r->seg[2]);
	} else {
		admin_reply_json(r->req, 200, s);
	}
}

/* blocklist_release - POST /v1/blocklists/release */
static void
blocklist_release(struct admin_req *r)
{
	const struct admin_sched_ops *ops = r->a->ops;
	json_t *ja = r->body ? json_object_get(r->body, "address") : NULL;
	json_t *js = r->body ? json_object_get(r->body, "site") : NULL;
	const char *addr = ja ? json_string_value(ja) : admin_query(r, "address");
	const char *site = js ? json_string_value(js) : admin_query(r, "site");

	if ((ja && !addr) || (js && !site) || (!addr && !site) ||
	    (addr && strlen(addr) > 64) || (site && strlen(site) > ADMIN_SITE_KEY_MAX)) {
		admin_reply_error(r->req, 400, "bad_parameter",
		                  "give \"address\" (a sending IP or domain), \"site\" (a site key), or both");
		return;
	}
	if (ops->blocklist_release(ops->ctx, addr, site) < 0) {
		admin_reply_error(r->req, 404, "not_found",
		                  "no block or listing for that address/site");
		return;
	}
	admin_audit(r->a, r->who, site ? site : addr, "release block of %s%s%s",
	            addr ? addr : "every address", site ? " at " : "", site ? site : "");
	admin_reply_json(r->req, 200, json_pack("{s:s, s:o}", "status", "released",
	                 "blocklists", ops->blocklists(ops->ctx)));
}

void
admin_blocklists_route(struct admin_req *r)
{
	const struct admin_sched_ops *ops = r->a->ops;

	if (ops == NULL || !ops->blocklists || !ops->blocklist_release) {
		admin_reply_error(r->req, 503, "scheduler_unavailable",
		                  "the scheduler is not running in this daemon");
	} else if (r->n_seg == 2 && r->method == EVHTTP_REQ_GET) {
		admin_reply_json(r->req, 200, ops->blocklists(ops->ctx));
	} else if (r->n_seg == 3 && strcmp(r->seg[2], "release") == 0 &&
	           r->method == EVHTTP_REQ_POST) {
		blocklist_release(r);
	} else {
		admin_reply_error(r->req, 404, "not_found",
		                  "GET /v1/blocklists, POST /v1/blocklists/release");
	}
}
