/*
 * admin_internal.h - structures shared by the admin HTTP API files
 * (admin_*.c) of src/api. No other folder includes this file.
 *
 * admin_http.c     listener, authentication, routing, JSON replies
 * admin_token.c    the bearer token file (create, permission check, compare)
 * admin_queue.c    GET /v1/queue and the bounded domain/tenant sample
 * admin_msg.c      /v1/messages: list, one message, hold/release/retry/delete
 * admin_sites.c    /v1/sites through the scheduler ops table
 * admin_events.c   GET /v1/events: the delivery log as a resumable stream
 * admin_metrics.c  GET /metrics (Prometheus text format)
 *
 * Everything runs on the daemon's loop thread.
 */
#ifndef MXB_API_ADMIN_INTERNAL_H
#define MXB_API_ADMIN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "api/api.h"
#include "queue/queue.h"

struct evhttp;
struct evhttp_request;
struct evhttp_bound_socket;
struct event;
struct evbuffer;
struct evkeyvalq;

#define ADMIN_MAX_BODY     (64 * 1024)  /* request body bytes */
#define ADMIN_MAX_HEADERS  (16 * 1024)
#define ADMIN_MAX_URI      4096
#define ADMIN_MAX_QUERY    2048
#define ADMIN_MAX_SEGS     8
#define ADMIN_MAX_WAITERS  64           /* long-polls of /v1/events at once */
#define ADMIN_MAX_TOKENS   16

struct admin_token {
	char *name;
	char *secret;
};

struct admin_sample; /* admin_queue.c */
struct admin_waiter; /* admin_events.c */
struct admin_op;     /* admin_msg.c */

struct admin {
	struct event_base *base;
	const struct config *cfg;
	struct queue *q;
	const struct admin_sched_ops *ops;
	const struct smtpd *smtpd;    /* submission counters, or NULL */
	struct evhttp *http;
	struct evhttp_bound_socket *sock;
	struct admin_token tokens[ADMIN_MAX_TOKENS];
	size_t n_tokens;
	uint64_t started_ms;
	/* requests served, by outcome (metrics) */
	uint64_t n_requests, n_unauthorized, n_client_errors, n_server_errors;
	uint64_t n_actions;
	struct admin_sample *sample;
	struct admin_waiter *waiters; /* pending long-polls, linked */
	size_t n_waiters;
	struct event *ev_poll;        /* re-checks the delivery log for waiters */
	struct admin_op *ops_pending; /* store actions awaiting their callback */
};

/* One parsed request, handed to the endpoint handlers. */
struct admin_req {
	struct admin *a;
	struct evhttp_request *req;
	int method;                  /* EVHTTP_REQ_GET, ... */
	const char *who;             /* token name */
	char *seg[ADMIN_MAX_SEGS];   /* decoded path segments */
	size_t n_seg;
	struct evkeyvalq *query;     /* parsed query string */
	json_t *body;                /* parsed JSON body, or NULL */
};

/* ---- admin_http.c ---- */
void admin_reply_json(struct evhttp_request *req, int code, json_t *o); /* steals o */
void admin_reply_error(struct evhttp_request *req, int code, const char *error,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void admin_reply_text(struct evhttp_request *req, int code, const char *ctype,
                      struct evbuffer *buf);
const char *admin_query(const struct admin_req *r, const char *key);
/* admin_query_u64 - 0 absent (def kept), 1 set, -1 bad (400 already sent) */
int admin_query_u64(const struct admin_req *r, const char *key, uint64_t max,
                    uint64_t *out);
void admin_audit(struct admin *a, const char *who, const char *id,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* ---- admin_token.c ---- */
int admin_token_load(struct admin *a, const char *path, char *err, size_t errlen);
void admin_tokens_free(struct admin *a);
/* admin_token_check - the token's name for "Bearer X", NULL if none matches */
const char *admin_token_check(const struct admin *a, const char *authz);

/* ---- endpoints ---- */
void admin_queue_get(struct admin_req *r);
void admin_sample_free(struct admin_sample *s);
json_t *admin_queue_counters_json(struct admin *a);

void admin_msg_route(struct admin_req *r);
void admin_msg_bounce(struct admin_req *r);
/* is domain served by site, as the scheduler last resolved it (a pool's
 * twin "SITE@POOL" counts as SITE)? ops->domain_site must be set */
int admin_domain_at_site(const struct admin_sched_ops *ops, const char *site,
                         const char *domain);
/* does the scheduler know site? */
int admin_site_known(const struct admin_sched_ops *ops, const char *site);
void admin_ops_detach(struct admin *a);

void admin_sites_route(struct admin_req *r);
void admin_blocklists_route(struct admin_req *r);
void admin_suppressions_route(struct admin_req *r);

void admin_events_get(struct admin_req *r);
void admin_events_stop(struct admin *a);

void admin_metrics_get(struct admin_req *r);

#endif
