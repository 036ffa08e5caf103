/*
 * admin_http.c - the admin HTTP API server: evhttp listener on
 * [admin] listen, bearer-token authentication, request limits, path
 * decoding and routing to the endpoint files, JSON replies and the audit
 * log of admin actions. Owns struct admin. Runs on the loop thread.
 *
 * Every path is split on '/' and each segment percent-decoded once; a
 * segment that is empty, "." or "..", or that decodes to something with
 * '/', '\\' or a control byte, is refused with 400 before routing, so no
 * request can name anything but the endpoints below.
 */
#include "api/admin_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "core/core.h"

#define ADMIN_HARD_BODY (1024 * 1024) /* evhttp drops bodies above this */

/* ---- replies ---- */

void
admin_reply_text(struct evhttp_request *req, int code, const char *ctype,
                 struct evbuffer *buf)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Type", ctype);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_send_reply(req, code, NULL, buf);
}

void
admin_reply_json(struct evhttp_request *req, int code, json_t *o)
{
	struct evbuffer *buf = evbuffer_new();
	char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);

	if (s) {
		evbuffer_add(buf, s, strlen(s));
		evbuffer_add(buf, "\n", 1);
		free(s);
	}
	json_decref(o);
	admin_reply_text(req, code, "application/json", buf);
	evbuffer_free(buf);
}

void
admin_reply_error(struct evhttp_request *req, int code, const char *error,
                  const char *fmt, ...)
{
	char detail[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	admin_reply_json(req, code, json_pack("{s:s, s:s}", "error", error,
	                                      "detail", detail));
}

void
admin_audit(struct admin *a, const char *who, const char *id,
            const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	a->n_actions++;
	log_info(id ? id : "-", "admin action by %s: %s", who ? who : "?", what);
}

/* ---- query strings ---- */

const char *
admin_query(const struct admin_req *r, const char *key)
{
	const char *v = evhttp_find_header(r->query, key);

	return v && *v ? v : NULL;
}

int
admin_query_u64(const struct admin_req *r, const char *key, uint64_t max,
                uint64_t *out)
{
	const char *v = admin_query(r, key);
	char *end;
	unsigned long long n;

	if (v == NULL)
		return 0;
	if (*v < '0' || *v > '9')
		goto bad;
	n = strtoull(v, &end, 10);
	if (*end != '\0' || n > max)
		goto bad;
	*out = n;
	return 1;
bad:
	admin_reply_error(r->req, 400, "bad_parameter",
	                  "%s: expected a number from 0 to %llu", key,
	                  (unsigned long long)max);
	return -1;
}

/* ---- request parsing ---- */

/* seg_ok - a decoded path segment that names nothing but itself */
static int
seg_ok(const char *s, size_t len)
{
	if (len == 0 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f || c == '/' || c == '\\')
			return 0;
	}
	return strlen(s) == len; /* no %00 */
}

/* split_path - raw path -> decoded segments; -1 on a bad path */
static int
split_path(struct admin_req *r, const char *path)
{
	const char *p = path;

	if (*p != '/')
		return -1;
	while (*p == '/' && p[1] != '\0') {
		const char *e = strchr(p + 1, '/');
		size_t n = e ? (size_t)(e - p - 1) : strlen(p + 1);
		char *raw = xstrndup(p + 1, n);
		size_t dlen = 0;
		char *dec = evhttp_uridecode(raw, 0, &dlen);

		free(raw);
		if (dec == NULL || r->n_seg == ADMIN_MAX_SEGS || !seg_ok(dec, dlen)) {
			free(dec);
			return -1;
		}
		r->seg[r->n_seg++] = dec;
		p += n + 1;
	}
	return *p == '\0' || (*p == '/' && p[1] == '\0' && r->n_seg > 0) ? 0 : -1;
}

/* read_body - parse a JSON body if there is one; -1 when a reply was sent */
static int
read_body(struct admin_req *r)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
	size_t len = evbuffer_get_length(in);
	json_error_t jerr;

	if (len == 0)
		return 0;
	if (len > ADMIN_MAX_BODY) {
		admin_reply_error(r->req, 413, "body_too_large",
		                  "request body over %d bytes", ADMIN_MAX_BODY);
		return -1;
	}
	r->body = json_loadb((const char *)evbuffer_pullup(in, -1), len,
	                     JSON_REJECT_DUPLICATES, &jerr);
	if (r->body == NULL || !json_is_object(r->body)) {
		admin_reply_error(r->req, 400, "bad_json",
		                  "request body: %s", r->body ? "expected an object"
		                                              : jerr.text);
		return -1;
	}
	return 0;
}

static void
admin_req_clear(struct admin_req *r)
{
	for (size_t i = 0; i < r->n_seg; i++)
		free(r->seg[i]);
	if (r->query) {
		evhttp_clear_headers(r->query);
		free(r->query);
	}
	json_decref(r->body);
}

/* ---- routing ---- */

static int
seg_is(const struct admin_req *r, size_t i, const char *s)
{
	return i < r->n_seg && strcmp(r->seg[i], s) == 0;
}

static void
admin_health_get(struct admin_req *r)
{
	struct queue_counters c;

	if (r->n_seg != 2 || r->method != EVHTTP_REQ_GET) {
		admin_reply_error(r->req, r->n_seg != 2 ? 404 : 405, r->n_seg != 2 ?
		                  "not_found" : "method_not_allowed", "GET /v1/health");
		return;
	}
	queue_counters_get(r->a->q, &c);
	admin_reply_json(r->req, 200, json_pack(
	    "{s:s, s:I, s:b, s:I, s:I}", "status", "ok",
	    "uptime_ms", (json_int_t)(mono_ms() - r->a->started_ms),
	    "scheduler", r->a->ops != NULL,
	    "messages", (json_int_t)c.messages, "recipients", (json_int_t)c.rcpts));
}

/* route_v1 - dispatch /v1/<what>/... */
static void
route_v1(struct admin_req *r)
{
	if (seg_is(r, 1, "health"))
		admin_health_get(r);
	else if (seg_is(r, 1, "queue") && r->n_seg == 2)
		admin_queue_get(r);
	else if (seg_is(r, 1, "sites"))
		admin_sites_route(r);
	else if (seg_is(r, 1, "blocklists") && r->n_seg <= 3)
		admin_blocklists_route(r);
	else if (seg_is(r, 1, "messages"))
		admin_msg_route(r);
	else if (seg_is(r, 1, "bounce") && r->n_seg == 2)
		admin_msg_bounce(r);
	else if (seg_is(r, 1, "suppressions") && r->n_seg <= 3)
		admin_suppressions_route(r);
	else if (seg_is(r, 1, "events") && r->n_seg == 2)
		admin_events_get(r);
	else
		admin_reply_error(r->req, 404, "not_found", "no such endpoint");
}

static void
admin_route(struct admin_req *r)
{
	if (seg_is(r, 0, "metrics") && r->n_seg == 1)
		admin_metrics_get(r);
	else if (seg_is(r, 0, "v1") && r->n_seg >= 2)
		route_v1(r);
	else
		admin_reply_error(r->req, 404, "not_found",
		                  "no such endpoint (the API lives under /v1/)");
}

/* admin_parse - limits, authentication, path and query; -1 if answered */
static int
admin_parse(struct admin_req *r)
{
	struct evhttp_request *req = r->req;
	const char *uri = evhttp_request_get_uri(req);
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
	const char *q = u ? evhttp_uri_get_query(u) : NULL;

	if (strlen(uri) > ADMIN_MAX_URI || (q && strlen(q) > ADMIN_MAX_QUERY)) {
		admin_reply_error(req, 414, "uri_too_long", "request target over %d bytes",
		                  q ? ADMIN_MAX_QUERY : ADMIN_MAX_URI);
		return -1;
	}
	r->who = admin_token_check(r->a, evhttp_find_header(
	    evhttp_request_get_input_headers(req), "Authorization"));
	if (r->who == NULL) {
		r->a->n_unauthorized++;
		evhttp_add_header(evhttp_request_get_output_headers(req),
		                  "WWW-Authenticate", "Bearer realm=\"mxbatch\"");
		admin_reply_error(req, 401, "unauthorized",
		                  "missing or wrong bearer token");
		return -1;
	}
	r->query = xcalloc(1, sizeof(*r->query));
	TAILQ_INIT(r->query);
	if (u == NULL || split_path(r, evhttp_uri_get_path(u)) < 0 ||
	    (q && evhttp_parse_query_str(q, r->query) < 0)) {
		admin_reply_error(req, 400, "bad_path",
		                  "malformed path or query string");
		return -1;
	}
	return read_body(r);
}

static void
admin_on_request(struct evhttp_request *req, void *arg)
{
	struct admin_req r = { .a = arg, .req = req };

	r.a->n_requests++;
	r.method = (int)evhttp_request_get_command(req);
	if (admin_parse(&r) == 0)
		admin_route(&r);
	admin_req_clear(&r);
}

/* ---- lifecycle ---- */

static int
admin_listen(struct admin *a, char *err, size_t errlen)
{
	char host[256];
	int port;

	if (a->cfg->admin_listen == NULL ||
	    parse_hostport(a->cfg->admin_listen, host, sizeof(host), &port, 8025) < 0) {
		snprintf(err, errlen, "[admin] listen: bad address '%s'",
		         a->cfg->admin_listen ? a->cfg->admin_listen : "");
		return -1;
	}
	a->http = evhttp_new(a->base);
	evhttp_set_max_body_size(a->http, ADMIN_HARD_BODY);
	evhttp_set_max_headers_size(a->http, ADMIN_MAX_HEADERS);
	evhttp_set_timeout(a->http, 120);
	evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	                           EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD |
	                           EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH |
	                           EVHTTP_REQ_OPTIONS);
	evhttp_set_default_content_type(a->http, "application/json");
	evhttp_set_gencb(a->http, admin_on_request, a);
	errno = 0;
	a->sock = evhttp_bind_socket_with_handle(a->http, host, (ev_uint16_t)port);
	if (a->sock == NULL) {
		snprintf(err, errlen, "[admin] listen: cannot bind %s: %s",
		         a->cfg->admin_listen, errno ? strerror(errno) : "unknown error");
		return -1;
	}
	log_info("-", "admin API listening on %s", a->cfg->admin_listen);
	return 0;
}

struct admin *
admin_start(struct event_base *base, const struct config *cfg,
            struct queue *q, const struct admin_sched_ops *ops, char *err,
            size_t errlen)
{
	struct admin *a = xcalloc(1, sizeof(*a));

	a->base = base;
	a->cfg = cfg;
	a->q = q;
	a->ops = ops;
	a->started_ms = mono_ms();
	if (admin_token_load(a, cfg->admin_token_file, err, errlen) < 0 ||
	    admin_listen(a, err, errlen) < 0) {
		admin_free(a);
		return NULL;
	}
	return a;
}

void
admin_set_smtpd(struct admin *a, const struct smtpd *sd)
{
	if (a)
		a->smtpd = sd;
}

void
admin_stop(struct admin *a)
{
	if (a == NULL)
		return;
	admin_events_stop(a);
	if (a->sock) {
		evhttp_del_accept_socket(a->http, a->sock);
		a->sock = NULL;
		log_info("-", "admin API stopped listening");
	}
}

void
admin_free(struct admin *a)
{
	if (a == NULL)
		return;
	admin_stop(a);
	admin_ops_detach(a);
	if (a->http)
		evhttp_free(a->http);
	admin_sample_free(a->sample);
	admin_tokens_free(a);
	free(a);
}
