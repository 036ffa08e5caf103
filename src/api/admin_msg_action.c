/*
 * admin_msg_action.c - the message actions of the admin API:
 * POST /v1/messages/{id}/hold|release|retry-now, DELETE /v1/messages/{id},
 * POST /v1/bounce. Each goes to the store as one durable write; the HTTP
 * reply is sent from the store's completion callback, so a 200 means the
 * action is on disk. Every action is logged with the token's name.
 * Loop thread.
 *
 * Once an action is durable it is written to the delivery log (core
 * dlog, docs/delivery-log.md) as AdminAction lines: one per recipient for
 * a delete ("terminal": true: the recipient's last line), one per message
 * for hold / release / retry-now. The recipients are read just before the
 * write is submitted.
 *
 * A pending action (struct admin_op) outlives its request if the admin
 * API is freed first: admin_ops_detach() answers the request and leaves
 * the op for the store callback to free (queue_close runs them).
 *
 * retry-now makes deferred recipients due now (no attempt spent) through
 * queue_msg_retry_now: the store picks them when it applies the write, in
 * order with the scheduler's claims, so one being delivered is left alone.
 */
#include "api/admin_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/http.h>

#include "core/core.h"

#define ADMIN_BOUNCE_SCAN     10000

struct admin_op {
	struct admin_op *next;
	struct admin *a;              /* NULL once detached */
	struct evhttp_request *req;
	char idt[QUEUE_ID_TEXT_LEN];
	char action[16];
	json_t *extra;                /* more reply fields, or NULL */
	json_t *lines;                /* AdminAction lines to log once durable */
};

int admin_msg_id_parse(struct admin_req *r, const char *s, queue_msgid *id);
void admin_msg_action(struct admin_req *r, queue_msgid id, const char *action);

/* dlog_line - one AdminAction line (time is set when written) */
static json_t *
dlog_line(const struct queue_envelope *e, const char *rcpt, const char *action,
          const char *who)
{
	char idt[QUEUE_ID_TEXT_LEN];
	json_t *o = json_object();

	queue_id_to_text(e->id, idt);
	json_object_set_new(o, "event", json_string("AdminAction"));
	json_object_set_new(o, "action", json_string(action));
	json_object_set_new(o, "by", json_string(who ? who : "admin"));
	json_object_set_new(o, "id", json_string(idt));
	if (e->sender && *e->sender)
		json_object_set_new(o, "sender", json_string(e->sender));
	if (rcpt)
		json_object_set_new(o, "recipient", json_string(rcpt));
	if (e->tenant)
		json_object_set_new(o, "tenant", json_string(e->tenant));
	if (e->envid)
		json_object_set_new(o, "envid", json_string(e->envid));
	if (strcmp(action, "delete") == 0)
		json_object_set_new(o, "terminal", json_true());
	json_object_set_new(o, "size", json_integer((json_int_t)e->size));
	json_object_set_new(o, "submit_ms", json_integer((json_int_t)e->submit_ms));
	return o;
}

/* op_log_msg - lines for one message: per live recipient for a delete */
static void
op_log_msg(struct admin_op *op, struct admin *a, const struct queue_envelope *e,
           const char *who, const char *domain)
{
	struct queue_rcpt *rc;
	int n;

	if (op->lines == NULL)
		op->lines = json_array();
	if (strcmp(op->action, "delete") != 0) {
		json_array_append_new(op->lines, dlog_line(e, NULL, op->action, who));
		return;
	}
	n = queue_msg_rcpts(a->q, e->id, &rc);
	for (int i = 0; i < n; i++)
		if (domain == NULL || strcasecmp(domain, rc[i].domain) == 0)
			json_array_append_new(op->lines,
			                      dlog_line(e, rc[i].address, op->action, who));
	queue_rcpts_free(rc, n > 0 ? (size_t)n : 0);
}

/* op_log_write - append the lines, stamped now, to the delivery log */
static void
op_log_write(struct admin_op *op)
{
	uint64_t now = now_ms();
	json_t *o;
	size_t i;

	json_array_foreach(op->lines, i, o) {
		json_int_t sub = json_integer_value(json_object_get(o, "submit_ms"));
		char *line;

		json_object_set_new(o, "time", json_real((double)now / 1000.0));
		json_object_set_new(o, "queue_time_ms", json_integer((json_int_t)now - sub));
		json_object_del(o, "submit_ms");
		line = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
		if (line) {
			size_t len = strlen(line);
			line[len] = '\n';
			dlog_append(line, len + 1);
			free(line);
		}
	}
}

static struct admin_op *
op_new(struct admin *a, struct evhttp_request *req, queue_msgid id,
       const char *action)
{
	struct admin_op *op = xcalloc(1, sizeof(*op));

	op->a = a;
	op->req = req;
	if (id)
		queue_id_to_text(id, op->idt);
	snprintf(op->action, sizeof(op->action), "%s", action);
	op->next = a->ops_pending;
	a->ops_pending = op;
	return op;
}

static void
op_unlink(struct admin_op *op)
{
	struct admin_op **pp;

	for (pp = &op->a->ops_pending; *pp; pp = &(*pp)->next)
		if (*pp == op) {
			*pp = op->next;
			break;
		}
}

/* op_on_done - the store wrote (or refused) the action: answer */
static void
op_on_done(void *arg, enum queue_status st)
{
	struct admin_op *op = arg;
	json_t *o;

	if (st == QUEUE_OK)
		op_log_write(op); /* durable: log it even if nobody waits */
	if (op->a == NULL)
		goto done;
	op_unlink(op);
	if (st == QUEUE_ENOTFOUND) {
		admin_reply_error(op->req, 404, "unknown_message", "no message %s", op->idt);
	} else if (st != QUEUE_OK) {
		admin_reply_error(op->req, 503, "store_error", "%s: %s", op->action,
		                  queue_status_to_text(st));
	} else {
		o = json_pack("{s:s, s:s}", "action", op->action, "status", "done");
		if (op->idt[0])
			json_object_set_new(o, "id", json_string(op->idt));
		if (op->extra)
			json_object_update(o, op->extra);
		admin_reply_json(op->req, 200, o);
	}
done:
	json_decref(op->extra);
	json_decref(op->lines);
	free(op);
}

void
admin_ops_detach(struct admin *a)
{
	struct admin_op *op;

	while ((op = a->ops_pending) != NULL) {
		a->ops_pending = op->next;
		admin_reply_error(op->req, 503, "shutting_down",
		                  "the daemon is stopping; the action may or may not be done");
		op->a = NULL;
		op->req = NULL;
	}
}

/* ---- bouncing: the scheduler fails the recipients and sends the DSN ---- */

/* op_free_unanswered - an op whose action never started */
static void
op_free_unanswered(struct admin_op *op)
{
	op_unlink(op);
	json_decref(op->extra);
	json_decref(op->lines);
	free(op);
}

/* op_on_bounced - the scheduler's bounce of one message is durable */
static void
op_on_bounced(void *arg, int st, size_t n)
{
	struct admin_op *op = arg;

	op->extra = json_pack("{s:I}", "recipients", (json_int_t)n);
	op_on_done(op, (enum queue_status)st);
}

/* msg_sched - DELETE /v1/messages/{id}, with ?bounce=1 (dsn) or not: the
 * scheduler takes every live recipient, lets one in a transaction finish
 * it, and writes one terminal line per recipient (Bounce, AdminAction) */
static void
msg_sched(struct admin_req *r, queue_msgid id, int dsn)
{
	const struct admin_sched_ops *ops = r->a->ops;
	struct queue_envelope *env;
	struct admin_op *op;
	int rc;

	if (dsn && (ops == NULL || ops->msg_bounce == NULL || ops->ctx == NULL)) {
		admin_reply_error(r->req, 503, "scheduler_unavailable",
		                  "bouncing needs the scheduler (DSNs)");
		return;
	}
	if ((env = queue_envelope_get(r->a->q, id)) == NULL) {
		admin_reply_error(r->req, 404, "unknown_message", "no message %s", r->seg[2]);
		return;
	}
	op = op_new(r->a, r->req, id, dsn ? "bounce" : "delete");
	if (dsn)
		op_log_msg(op, r->a, env, r->who, NULL);
	queue_envelope_free(env);
	rc = (dsn ? ops->msg_bounce : ops->msg_delete)(ops->ctx, id, NULL, r->who,
	                                              op_on_bounced, op);
	if (rc < 0) {
		op_free_unanswered(op);
		if (rc == -2)
			admin_reply_error(r->req, 409, "busy", "a bounce or delete of %s is "
			                  "in progress", r->seg[2]);
		else
			admin_reply_error(r->req, 404, "unknown_message", "no message %s",
			                  r->seg[2]);
		return;
	}
	admin_audit(r->a, r->who, op->idt, "%s message", dsn ? "bounce" : "delete");
}

/* sched_deletes - the scheduler is there to delete (in order with its
 * transactions); without it the store deletes directly */
static int
sched_deletes(const struct admin *a)
{
	return a->ops && a->ops->msg_delete && a->ops->ctx;
}

/* msg_retry_now - deferred recipients of one message become due now.
 * The store decides which (queued ones due later), in order with the
 * scheduler's claims; the count in the reply is as read just before. */
static void
msg_retry_now(struct admin_req *r, queue_msgid id, struct admin_op *op)
{
	struct queue_rcpt *rc;
	uint64_t now = now_ms();
	int n = queue_msg_rcpts(r->a->q, id, &rc);
	size_t k = 0;

	for (int i = 0; i < n; i++)
		k += rc[i].state == QUEUE_RCPT_QUEUED && rc[i].next_ms > now;
	queue_rcpts_free(rc, n > 0 ? (size_t)n : 0);
	op->extra = json_pack("{s:I}", "recipients", (json_int_t)k);
	queue_msg_retry_now(r->a->q, id, op_on_done, op);
}

void
admin_msg_action(struct admin_req *r, queue_msgid id, const char *action)
{
	struct admin *a = r->a;
	struct admin_op *op;
	struct queue_envelope *env;
	const char *b = admin_query(r, "bounce");

	if (strcmp(action, "delete") == 0 && ((b && strcmp(b, "0") != 0) ||
	    sched_deletes(a))) {
		msg_sched(r, id, b && strcmp(b, "0") != 0);
		return;
	}
	if (strcmp(action, "hold") && strcmp(action, "release") &&
	    strcmp(action, "retry-now") && strcmp(action, "delete")) {
		admin_reply_error(r->req, 404, "not_found",
		                  "message actions: hold, release, retry-now, DELETE");
		return;
	}
	if ((env = queue_envelope_get(a->q, id)) == NULL) { /* early 404 */
		admin_reply_error(r->req, 404, "unknown_message", "no message %s", r->seg[2]);
		return;
	}
	op = op_new(a, r->req, id, action);
	op_log_msg(op, a, env, r->who, NULL);
	queue_envelope_free(env);
	admin_audit(a, r->who, op->idt, "%s message", action);
	if (strcmp(action, "hold") == 0)
		queue_msg_hold(a->q, id, op_on_done, op);
	else if (strcmp(action, "release") == 0)
		queue_msg_release(a->q, id, op_on_done, op);
	else if (strcmp(action, "delete") == 0)
		queue_msg_delete(a->q, id, r->who, op_on_done, op);
	else
		msg_retry_now(r, id, op);
}

/* ---- POST /v1/bounce ---- */

struct bounce_sel {
	const char *domain, *tenant, *sender, *site;
	const char *who;
	int dsn;                      /* action=bounce */
	int sched;                    /* the scheduler removes them: ids only */
	const struct admin_sched_ops *ops;
	struct admin_op *op;
	struct queue_outcome *o;
	size_t n, cap, msgs;
	queue_msgid *ids;             /* sched: the messages */
	char **doms;                  /* sched: their domains to take, or NULL */
	size_t idcap;
	char *cur;                    /* the message being looked at: its
	                               * matching domains, comma-separated */
};

/* sel_add_id - a message for the scheduler, with its domains (or NULL) */
static void
sel_add_id(struct bounce_sel *s, queue_msgid id, char *doms)
{
	if (s->msgs == s->idcap) {
		s->idcap = s->idcap ? 2 * s->idcap : 64;
		s->ids = xrealloc(s->ids, s->idcap * sizeof(*s->ids));
		s->doms = xrealloc(s->doms, s->idcap * sizeof(*s->doms));
	}
	s->ids[s->msgs] = id;
	s->doms[s->msgs] = doms;
}

/* sel_add_domain - domain joins the current message's list (once) */
static void
sel_add_domain(struct bounce_sel *s, const char *domain)
{
	size_t n = strlen(domain), have = s->cur ? strlen(s->cur) : 0;

	if (list_has(s->cur, domain))
		return;
	s->cur = xrealloc(s->cur, have + n + 2);
	snprintf(s->cur + have, n + 2, "%s%s", have ? "," : "", domain);
}

/* sel_rcpt - does one recipient belong to the selection? */
static int
sel_rcpt(struct bounce_sel *s, const struct queue_rcpt *rc)
{
	if (s->domain && strcasecmp(s->domain, rc->domain))
		return 0;
	if (s->site && !admin_domain_at_site(s->ops, s->site, rc->domain))
		return 0;
	if (s->sched && s->site)
		sel_add_domain(s, rc->domain);
	return 1;
}

/* bounce_msg - DELETED outcomes for a message's selected recipients */
static void
bounce_msg(struct admin *a, struct bounce_sel *s, const struct queue_envelope *e)
{
	struct queue_rcpt *rc;
	int n, hit = 0;

	if ((s->tenant && (e->tenant == NULL || strcmp(s->tenant, e->tenant))) ||
	    (s->sender && strcasecmp(s->sender, e->sender)))
		return;
	n = queue_msg_rcpts(a->q, e->id, &rc);
	for (int i = 0; i < n; i++) {
		if (!sel_rcpt(s, &rc[i]))
			continue;
		hit = 1;
		if (s->sched) {
			s->n++; /* the scheduler takes them (and reports how many) */
			continue;
		}
		if (s->n == s->cap) {
			s->cap = s->cap ? 2 * s->cap : 256;
			s->o = xrealloc(s->o, s->cap * sizeof(*s->o));
		}
		memset(&s->o[s->n], 0, sizeof(*s->o));
		s->o[s->n].msgid = e->id;
		s->o[s->n].idx = rc[i].idx;
		s->o[s->n].kind = QUEUE_OUT_DELETED;
		s->o[s->n].by = s->who;
		s->n++;
	}
	if (hit && s->sched) {
		sel_add_id(s, e->id, s->cur);
		s->cur = NULL;
	}
	free(s->cur);
	s->cur = NULL;
	s->msgs += (size_t)hit;
	queue_rcpts_free(rc, n > 0 ? (size_t)n : 0);
	if (hit && (s->dsn || !s->sched)) /* the scheduler logs its deletes */
		op_log_msg(s->op, a, e, s->who, s->domain);
}

/* bounce_scan - select from at most ADMIN_BOUNCE_SCAN messages after `after` */
static queue_msgid
bounce_scan(struct admin *a, struct bounce_sel *s, queue_msgid after, int *more)
{
	struct queue_envelope *page[100];
	size_t scanned = 0;
	int n;

	*more = 0;
	while (scanned < ADMIN_BOUNCE_SCAN &&
	       (n = queue_msg_list(a->q, after, NULL, 100, page)) > 0) {
		for (int i = 0; i < n; i++) {
			if (scanned < ADMIN_BOUNCE_SCAN) {
				bounce_msg(a, s, page[i]);
				after = page[i]->id;
				scanned++;
			} else {
				*more = 1;
			}
			queue_envelope_free(page[i]);
		}
	}
	if (scanned == ADMIN_BOUNCE_SCAN && !*more)
		*more = queue_msg_list(a->q, after, NULL, 1, page) == 1 &&
		        (queue_envelope_free(page[0]), 1);
	return after;
}

static const char *
body_str(const struct admin_req *r, const char *key)
{
	const char *v = json_string_value(json_object_get(r->body, key));

	return v && *v ? v : NULL;
}

/* bounce_params - selection, action and cursor; -1 when a reply was sent */
static int
bounce_params(struct admin_req *r, struct bounce_sel *s, queue_msgid *after)
{
	const char *action = body_str(r, "action") ? body_str(r, "action") : "bounce";
	const char *after_s = body_str(r, "after");

	if (r->method != EVHTTP_REQ_POST || r->body == NULL) {
		admin_reply_error(r->req, r->method != EVHTTP_REQ_POST ? 405 : 400,
		                  "bad_request", "POST /v1/bounce with a JSON object "
		                  "{domain|tenant|sender, action: delete|bounce}");
		return -1;
	}
	s->domain = body_str(r, "domain");
	s->tenant = body_str(r, "tenant");
	s->sender = body_str(r, "sender");
	s->site = body_str(r, "site");
	s->ops = r->a->ops;
	if (!s->domain && !s->tenant && !s->sender && !s->site)
		admin_reply_error(r->req, 400, "bad_request",
		                  "name what to remove: domain, site, tenant or sender");
	else if (s->site && (s->ops == NULL || s->ops->site == NULL ||
	         s->ops->domain_site == NULL || s->ops->ctx == NULL))
		admin_reply_error(r->req, 503, "scheduler_unavailable",
		                  "selecting by site needs the scheduler");
	else if (s->site && !admin_site_known(s->ops, s->site))
		admin_reply_error(r->req, 404, "unknown_site", "no site '%.200s'", s->site);
	else if (strcmp(action, "delete") != 0 && strcmp(action, "bounce") != 0)
		admin_reply_error(r->req, 400, "bad_request", "action: delete or bounce");
	else if (strcmp(action, "bounce") == 0 && (r->a->ops == NULL ||
	         r->a->ops->msg_bounce == NULL || r->a->ops->ctx == NULL))
		admin_reply_error(r->req, 503, "scheduler_unavailable",
		                  "bouncing needs the scheduler (DSNs)");
	else {
		s->dsn = strcmp(action, "bounce") == 0;
		s->sched = s->dsn || sched_deletes(r->a);
		return after_s ? admin_msg_id_parse(r, after_s, after) : 0;
	}
	return -1;
}

/* the bounces of many messages, answered when the last is durable */
struct bounce_many {
	struct admin_op *op;
	size_t pending, rcpts;
	enum queue_status st;         /* the first failure, or OK */
};

static void
many_on_bounced(void *arg, int st, size_t n)
{
	struct bounce_many *bm = arg;

	bm->rcpts += n;
	if (st != QUEUE_OK && bm->st == QUEUE_OK)
		bm->st = (enum queue_status)st;
	if (--bm->pending > 0)
		return;
	json_object_set_new(bm->op->extra, "recipients", json_integer((json_int_t)bm->rcpts));
	op_on_done(bm->op, bm->st);
	free(bm);
}

/* bounce_many - the scheduler bounces each selected message */
static void
bounce_many(struct admin_req *r, struct bounce_sel *s)
{
	const struct admin_sched_ops *ops = r->a->ops;
	struct bounce_many *bm = xcalloc(1, sizeof(*bm));

	bm->op = s->op;
	bm->pending = 1; /* until every message is started */
	for (size_t i = 0; i < s->msgs; i++) {
		bm->pending++;
		if ((s->dsn ? ops->msg_bounce : ops->msg_delete)(ops->ctx, s->ids[i],
		    s->doms[i] ? s->doms[i] : s->domain, r->who, many_on_bounced, bm) < 0)
			bm->pending--; /* gone meanwhile, or being removed already */
		free(s->doms[i]);
	}
	many_on_bounced(bm, QUEUE_OK, 0);
}

void
admin_msg_bounce(struct admin_req *r)
{
	struct bounce_sel s = { 0 };
	queue_msgid after = 0;
	struct admin_op *op;
	char idt[QUEUE_ID_TEXT_LEN];
	int more;

	if (bounce_params(r, &s, &after) < 0)
		return;
	s.who = r->who;
	s.op = op = op_new(r->a, r->req, 0, s.dsn ? "bounce" : "delete");
	after = bounce_scan(r->a, &s, after, &more);
	queue_id_to_text(after, idt);
	op->extra = json_pack("{s:I, s:I, s:o}", "messages", (json_int_t)s.msgs,
	                      "recipients", (json_int_t)s.n,
	                      "next", more ? json_string(idt) : json_null());
	admin_audit(r->a, r->who, "-", "%s %zu recipients of %zu messages "
	            "(domain=%s site=%s tenant=%s sender=%s)", op->action, s.n, s.msgs,
	            s.domain ? s.domain : "*", s.site ? s.site : "*",
	            s.tenant ? s.tenant : "*", s.sender ? s.sender : "*");
	if (s.sched)
		bounce_many(r, &s);
	else if (s.n == 0)
		op_on_done(op, QUEUE_OK);
	else
		queue_outcomes(r->a->q, s.o, s.n, op_on_done, op);
	free(s.o);
	free(s.ids);
	free(s.doms);
}
