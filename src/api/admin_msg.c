/*
 * admin_msg.c - GET /v1/messages (filtered, paged listing) and
 * GET /v1/messages/{id} (envelope, recipients, first body headers);
 * routes the message actions to admin_msg_action.c. Loop thread.
 *
 * Listing reads the id-ordered message table page by page and filters
 * here, so one request never reads more than ADMIN_LIST_SCAN messages
 * however selective the filter: the reply's "next" cursor continues the
 * scan. Filters on recipients (domain, state, site) read each scanned
 * message's recipient records; site asks the scheduler which site each
 * recipient domain was last resolved to.
 */
#include "api/admin_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/http.h>

#include "core/core.h"

#define ADMIN_LIST_DEFAULT 100
#define ADMIN_LIST_MAX     1000
#define ADMIN_LIST_SCAN    10000
#define ADMIN_HDR_MAX      (64 * 1024)

struct list_filter {
	const char *sender, *tenant, *domain, *state;
	const char *site;           /* site key, or NULL */
	const struct admin_sched_ops *ops;
	char last_dom[256];         /* the last domain looked up for site ... */
	int last_hit;               /* ... and whether it is served there */
};

int admin_msg_id_parse(struct admin_req *r, const char *s, queue_msgid *id);

int
admin_msg_id_parse(struct admin_req *r, const char *s, queue_msgid *id)
{
	if (strlen(s) != 16 || queue_id_parse(s, id) < 0) {
		admin_reply_error(r->req, 400, "bad_id",
		                  "message ids are 16 hexadecimal digits");
		return -1;
	}
	return 0;
}

static const char *
rcpt_state_name(const struct queue_rcpt *rc)
{
	if (rc->state == QUEUE_RCPT_QUEUED)
		return rc->attempts > 0 ? "deferred" : "queued";
	return queue_rcpt_state_to_text(rc->state);
}

static json_t *
opt_str(const char *s)
{
	return s ? json_string(s) : json_null();
}

/* env_json - the envelope part shared by the list and the detail */
static json_t *
env_json(const struct queue_envelope *e)
{
	char idt[QUEUE_ID_TEXT_LEN];
	static const char *const ret[] = { NULL, "FULL", "HDRS" };

	queue_id_to_text(e->id, idt);
	return json_pack("{s:s, s:s, s:o, s:o, s:o, s:o, s:I, s:I, s:I, s:I, s:I, "
	                 "s:b, s:i}",
	    "id", idt, "sender", e->sender, "tenant", opt_str(e->tenant),
	    "envid", opt_str(e->envid), "listener", opt_str(e->listener),
	    "ret", opt_str(e->ret <= QUEUE_RET_HDRS ? ret[e->ret] : NULL),
	    "size", (json_int_t)e->size, "submit_ms", (json_int_t)e->submit_ms,
	    "age_ms", (json_int_t)(now_ms() - e->submit_ms),
	    "recipients_total", (json_int_t)e->rcpts_total,
	    "recipients_live", (json_int_t)e->rcpts_live,
	    "held", (e->flags & QUEUE_MSG_HELD) != 0, "priority", e->priority);
}

static json_t *
rcpt_json(const struct queue_rcpt *rc)
{
	json_t *o = json_pack("{s:i, s:s, s:s, s:s, s:i, s:I, s:I}",
	    "index", (int)rc->idx, "address", rc->address, "domain", rc->domain,
	    "state", rcpt_state_name(rc), "attempts", (int)rc->attempts,
	    "first_attempt_ms", (json_int_t)rc->first_attempt_ms,
	    "next_attempt_ms", (json_int_t)rc->next_ms);

	if (rc->last_code || rc->last_text)
		json_object_set_new(o, "last_reply", json_pack(
		    "{s:i, s:o, s:o, s:o}", "code", rc->last_code,
		    "enhanced", opt_str(rc->last_enhanced),
		    "text", opt_str(rc->last_text), "mx", opt_str(rc->last_mx)));
	if (rc->orcpt)
		json_object_set_new(o, "orcpt", json_string(rc->orcpt));
	return o;
}

int
admin_domain_at_site(const struct admin_sched_ops *ops, const char *site,
                     const char *domain)
{
	char key[4096];

	return ops->domain_site(ops->ctx, domain, key, sizeof(key)) == 0 &&
	       strncmp(key, site, strlen(key)) == 0 &&
	       (site[strlen(key)] == '\0' || site[strlen(key)] == '@');
}

int
admin_site_known(const struct admin_sched_ops *ops, const char *site)
{
	json_t *s;

	if (strlen(site) > 1024 || (s = ops->site(ops->ctx, site)) == NULL)
		return 0;
	json_decref(s);
	return 1;
}

/* domain_at_site - admin_domain_at_site for the filter; recipients of one
 * message mostly share domains: the last answer is kept */
static int
domain_at_site(struct list_filter *f, const char *domain)
{
	if (strcmp(f->last_dom, domain) == 0)
		return f->last_hit;
	f->last_hit = admin_domain_at_site(f->ops, f->site, domain);
	if (strlen(domain) < sizeof(f->last_dom))
		memcpy(f->last_dom, domain, strlen(domain) + 1);
	return f->last_hit;
}

/* rcpt_match - does one recipient pass the recipient filters? */
static int
rcpt_match(struct list_filter *f, const struct queue_rcpt *rc)
{
	if (f->domain && strcasecmp(f->domain, rc->domain) != 0)
		return 0;
	if (f->state && strcmp(f->state, rcpt_state_name(rc)) != 0)
		return 0;
	return f->site == NULL || domain_at_site(f, rc->domain);
}

/* msg_match - does a message pass the filter? n_match gets matching rcpts */
static int
msg_match(struct admin *a, struct list_filter *f,
          const struct queue_envelope *e, int *n_match)
{
	struct queue_rcpt *r;
	int n, hits = 0;

	*n_match = -1;
	if ((f->sender && strcasecmp(f->sender, e->sender) != 0) ||
	    (f->tenant && (e->tenant == NULL || strcmp(f->tenant, e->tenant) != 0)))
		return 0;
	if (!f->domain && !f->state && !f->site)
		return 1;
	n = queue_msg_rcpts(a->q, e->id, &r);
	for (int i = 0; i < n; i++)
		hits += rcpt_match(f, &r[i]);
	queue_rcpts_free(r, n > 0 ? (size_t)n : 0);
	*n_match = hits;
	return hits > 0;
}

/* site_filter - the site must be one the scheduler knows; -1 answered */
static int
site_filter(struct admin_req *r, struct list_filter *f, const char *key)
{
	const struct admin_sched_ops *ops = r->a->ops;

	if (ops == NULL || ops->site == NULL || ops->domain_site == NULL) {
		admin_reply_error(r->req, 503, "scheduler_unavailable",
		                  "site filter needs the scheduler");
		return -1;
	}
	if (!admin_site_known(ops, key)) {
		admin_reply_error(r->req, 404, "unknown_site", "no site '%s'", key);
		return -1;
	}
	f->site = key;
	f->ops = ops;
	return 0;
}

/* list_params - filters, cursor, limit; -1 when a reply was sent */
static int
list_params(struct admin_req *r, struct list_filter *f, queue_msgid *after,
            uint64_t *limit)
{
	static const char *const states[] = { "queued", "deferred", "inflight", "held" };
	const char *c = admin_query(r, "after");
	size_t i;

	f->sender = admin_query(r, "sender");
	f->tenant = admin_query(r, "tenant");
	f->domain = admin_query(r, "domain");
	f->state = admin_query(r, "state");
	if (f->state) {
		for (i = 0; i < 4 && strcmp(f->state, states[i]) != 0; i++)
			;
		if (i == 4) {
			admin_reply_error(r->req, 400, "bad_parameter", "state: one of "
			                  "queued, deferred, inflight, held");
			return -1;
		}
	}
	*limit = ADMIN_LIST_DEFAULT;
	if (admin_query_u64(r, "limit", ADMIN_LIST_MAX, limit) < 0 ||
	    (c && admin_msg_id_parse(r, c, after) < 0))
		return -1;
	if (*limit == 0)
		*limit = ADMIN_LIST_DEFAULT;
	if (admin_query(r, "site"))
		return site_filter(r, f, admin_query(r, "site"));
	return 0;
}

/* list_scan - matching messages after *after into arr; *after = last
 * scanned id; returns 1 when stopped early (more may follow), 0 at the
 * end, -1 on a read error */
static int
list_scan(struct admin *a, struct list_filter *f, queue_msgid *after,
          uint64_t limit, json_t *arr, size_t *scanned)
{
	struct queue_envelope *page[100];
	int n, m, done = 0;

	while (!done && (n = queue_msg_list(a->q, *after, NULL, 100, page)) > 0) {
		for (int i = 0; i < n; i++) {
			if (!done && msg_match(a, f, page[i], &m)) {
				json_t *o = env_json(page[i]);

				if (m >= 0)
					json_object_set_new(o, "recipients_matching", json_integer(m));
				json_array_append_new(arr, o);
			}
			if (!done) {
				*after = page[i]->id;
				++*scanned;
				done = json_array_size(arr) == limit || *scanned == ADMIN_LIST_SCAN;
			}
			queue_envelope_free(page[i]);
		}
	}
	return n < 0 ? -1 : done;
}

static void
msg_list(struct admin_req *r)
{
	struct list_filter f = { 0 };
	char idt[QUEUE_ID_TEXT_LEN];
	queue_msgid after = 0;
	uint64_t limit;
	size_t scanned = 0;
	json_t *arr;
	int more;

	if (list_params(r, &f, &after, &limit) < 0)
		return;
	arr = json_array();
	more = list_scan(r->a, &f, &after, limit, arr, &scanned);
	if (more < 0) {
		json_decref(arr);
		admin_reply_error(r->req, 503, "store_error", "cannot read the spool");
		return;
	}
	queue_id_to_text(after, idt);
	admin_reply_json(r->req, 200, json_pack("{s:o, s:o, s:I}", "messages", arr,
	                 "next", more ? json_string(idt) : json_null(),
	                 "scanned", (json_int_t)scanned));
}

/* headers_json - the header block of the body (at most ADMIN_HDR_MAX) */
static json_t *
headers_json(struct admin *a, queue_msgid id)
{
	struct queue_body *b = queue_body_open(a->q, id);
	char *buf = xmalloc(ADMIN_HDR_MAX + 1), *end;
	size_t len = 0;
	long n = 1;
	json_t *s;

	while (b && len < ADMIN_HDR_MAX && n > 0) {
		n = queue_body_read(b, buf + len, ADMIN_HDR_MAX - len);
		len += n > 0 ? (size_t)n : 0;
		buf[len] = '\0';
		if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
			break;
	}
	queue_body_close(b);
	buf[len] = '\0';
	if ((end = strstr(buf, "\r\n\r\n")) || (end = strstr(buf, "\n\n")))
		*end = '\0';
	len = strlen(buf);
	if ((s = json_stringn(buf, len)) == NULL) { /* not UTF-8: mask bytes */
		for (size_t i = 0; i < len; i++)
			if ((unsigned char)buf[i] >= 0x80)
				buf[i] = '?';
		s = json_stringn(buf, len);
	}
	free(buf);
	return s ? s : json_null();
}

static void
msg_get(struct admin_req *r, queue_msgid id)
{
	struct queue_envelope *e = queue_envelope_get(r->a->q, id);
	struct queue_rcpt *rc;
	json_t *o, *arr;
	int n;

	if (e == NULL) {
		admin_reply_error(r->req, 404, "unknown_message", "no message %s", r->seg[2]);
		return;
	}
	o = env_json(e);
	queue_envelope_free(e);
	arr = json_array();
	n = queue_msg_rcpts(r->a->q, id, &rc);
	for (int i = 0; i < n; i++)
		json_array_append_new(arr, rcpt_json(&rc[i]));
	queue_rcpts_free(rc, n > 0 ? (size_t)n : 0);
	json_object_set_new(o, "recipients", arr);
	json_object_set_new(o, "headers", headers_json(r->a, id));
	admin_reply_json(r->req, 200, o);
}

void admin_msg_action(struct admin_req *r, queue_msgid id, const char *action);

void
admin_msg_route(struct admin_req *r)
{
	queue_msgid id;

	if (r->n_seg == 2) {
		if (r->method == EVHTTP_REQ_GET)
			msg_list(r);
		else
			admin_reply_error(r->req, 405, "method_not_allowed", "GET /v1/messages");
		return;
	}
	if (r->n_seg > 4 || admin_msg_id_parse(r, r->seg[2], &id) < 0) {
		if (r->n_seg > 4)
			admin_reply_error(r->req, 404, "not_found", "no such endpoint");
		return;
	}
	if (r->n_seg == 3 && r->method == EVHTTP_REQ_GET)
		msg_get(r, id);
	else if (r->n_seg == 3 && r->method == EVHTTP_REQ_DELETE)
		admin_msg_action(r, id, "delete");
	else if (r->n_seg == 4 && r->method == EVHTTP_REQ_POST)
		admin_msg_action(r, id, r->seg[3]);
	else if (r->n_seg == 4)
		admin_reply_error(r->req, 405, "method_not_allowed", "use POST");
	else
		admin_reply_error(r->req, 405, "method_not_allowed", "use GET or DELETE");
}
