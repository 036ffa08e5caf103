/*
 * admin_events.c - GET /v1/events: the delivery log ([log] delivery_log,
 * JSON lines) as a resumable stream, long-polled.
 *
 *   GET /v1/events?since=CURSOR&timeout=SECONDS&limit=N&envid=E&tenant=T
 *                  &event=Delivery,Bounce&terminal=1
 *   -> {"events": [...], "cursor": "NEXT", "reset": false}
 *
 * A cursor is "DEV-INO-OFFSET" (hex, hex, decimal): the identity of the
 * log file and the byte offset just after the last line returned or
 * skipped by the filters. Only complete lines are read, so a line being
 * written is never cut. Passing the returned cursor back gives every
 * later line exactly once. If the log was rotated (renamed, then reopened
 * by the daemon on SIGHUP), a cursor into the old file is served from
 * "<log>.1" until its end, then from the start of the new file (once the
 * daemon writes there). A cursor whose file is gone, or an offset beyond a
 * truncated file, restarts at the start of the current file with
 * "reset": true. No since: the start of the current file; since=end: its
 * current end. With timeout > 0 an empty answer waits (up to 60 s) for a
 * matching line: the waiters are re-checked every ADMIN_POLL_MS. Loop thread.
 */
#include "api/admin_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/http.h>

#include "core/core.h"

#define ADMIN_POLL_MS       200
#define ADMIN_EV_LIMIT      1000
#define ADMIN_EV_LIMIT_MAX  10000
#define ADMIN_EV_TIMEOUT    60      /* seconds */
#define ADMIN_EV_READ_MAX   (4 * 1024 * 1024) /* log bytes per check */
#define ADMIN_EV_LINE_MAX   (256 * 1024)

struct ev_cursor {
	uint64_t dev, ino, off;
};

struct ev_query {
	struct ev_cursor cur;
	int reset;
	uint64_t limit;
	char *envid, *tenant, *events; /* filters, or NULL */
	int terminal;
};

struct admin_waiter {
	struct admin_waiter *next;
	struct evhttp_request *req;
	struct ev_query q;
	uint64_t deadline;             /* mono ms */
};

static void
ev_query_clear(struct ev_query *q)
{
	free(q->envid);
	free(q->tenant);
	free(q->events);
}

static void
cursor_text(const struct ev_cursor *c, char *buf, size_t len)
{
	snprintf(buf, len, "%" PRIx64 "-%" PRIx64 "-%" PRIu64, c->dev, c->ino, c->off);
}

static int
cursor_parse(const char *s, struct ev_cursor *c)
{
	char tail;

	if (strlen(s) > 64 ||
	    sscanf(s, "%" SCNx64 "-%" SCNx64 "-%" SCNu64 "%c", &c->dev, &c->ino,
	           &c->off, &tail) != 3)
		return -1;
	return 0;
}

/* ev_match - does one event pass the query's filters? */
static int
ev_match(const struct ev_query *q, json_t *o)
{
	const char *ev = json_string_value(json_object_get(o, "event"));
	const char *envid = json_string_value(json_object_get(o, "envid"));
	const char *tenant = json_string_value(json_object_get(o, "tenant"));
	size_t n;

	if (q->envid && (envid == NULL || strcmp(q->envid, envid) != 0))
		return 0;
	if (q->tenant && (tenant == NULL || strcmp(q->tenant, tenant) != 0))
		return 0;
	if (q->terminal && (ev == NULL || (strcmp(ev, "Delivery") &&
	    strcmp(ev, "Bounce") && strcmp(ev, "Expiration") && strcmp(ev, "Deleted") &&
	    !(strcmp(ev, "AdminAction") == 0 &&
	      json_is_true(json_object_get(o, "terminal"))))))
		return 0;
	if (q->events == NULL)
		return 1;
	if (ev == NULL)
		return 0;
	n = strlen(ev);
	for (const char *p = q->events; (p = strstr(p, ev)) != NULL; p += n)
		if ((p == q->events || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
			return 1;
	return 0;
}

/* ev_lines - take the complete lines of buf[0..len) into out; returns the
 * bytes consumed (up to the end of the last line looked at) */
static size_t
ev_lines(struct ev_query *q, const char *buf, size_t len, json_t *out)
{
	size_t used = 0;

	while (used < len && json_array_size(out) < q->limit) {
		const char *nl = memchr(buf + used, '\n', len - used);
		json_t *o;

		if (nl == NULL)
			break;
		o = json_loadb(buf + used, (size_t)(nl - buf - used), 0, NULL);
		if (json_is_object(o) && ev_match(q, o))
			json_array_append(out, o);
		json_decref(o);
		used = (size_t)(nl - buf) + 1;
	}
	return used;
}

/* ev_read_fd - read lines from fd at q->cur.off; advance the cursor */
static void
ev_read_fd(struct ev_query *q, int fd, uint64_t size, json_t *out)
{
	size_t cap = 64 * 1024, have = 0, total = 0;
	char *buf = xmalloc(cap);
	ssize_t n;

	while (q->cur.off < size && total < ADMIN_EV_READ_MAX &&
	       json_array_size(out) < q->limit) {
		if (have == cap) {
			if (cap >= ADMIN_EV_LINE_MAX) { /* a line too long: skip it */
				q->cur.off += have;
				have = 0;
				continue;
			}
			buf = xrealloc(buf, cap *= 2);
		}
		n = pread(fd, buf + have, cap - have, (off_t)(q->cur.off + have));
		if (n <= 0)
			break;
		have += (size_t)n;
		total += (size_t)n;
		size_t used = ev_lines(q, buf, have, out);
		q->cur.off += used;
		memmove(buf, buf + used, have - used);
		have -= used;
		if (q->cur.off + have >= size)
			break;
	}
	free(buf);
}

/* ev_open - open path if it is the file c names (or any file: c NULL) */
static int
ev_open(const char *path, const struct ev_cursor *c, struct stat *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	if (fstat(fd, st) < 0 || (c && ((uint64_t)st->st_dev != c->dev ||
	                                (uint64_t)st->st_ino != c->ino))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* ev_collect - read what the cursor has not seen; 0, or -1 (no log) */
static int
ev_collect(struct admin *a, struct ev_query *q, json_t *out)
{
	const char *path = a->cfg->delivery_log;
	char rotated[4096];
	struct stat st, rst;
	int fd, rfd;

	if (path == NULL || (fd = ev_open(path, NULL, &st)) < 0)
		return -1;
	if (q->cur.ino == 0 && q->cur.dev == 0) { /* no cursor: start */
		q->cur.dev = (uint64_t)st.st_dev;
		q->cur.ino = (uint64_t)st.st_ino;
		q->cur.off = 0;
	}
	if (q->cur.dev != (uint64_t)st.st_dev || q->cur.ino != (uint64_t)st.st_ino) {
		snprintf(rotated, sizeof(rotated), "%s.1", path);
		rfd = ev_open(rotated, &q->cur, &rst);
		if (rfd >= 0)
			ev_read_fd(q, rfd, (uint64_t)rst.st_size, out);
		if (rfd >= 0 && (q->cur.off < (uint64_t)rst.st_size || st.st_size == 0 ||
		                 json_array_size(out) >= q->limit)) {
			close(rfd);
			close(fd);
			return 0; /* old file not finished, or the writer not moved */
		}
		if (rfd < 0)
			q->reset = 1;
		else
			close(rfd);
		q->cur.dev = (uint64_t)st.st_dev;
		q->cur.ino = (uint64_t)st.st_ino;
		q->cur.off = 0;
	}
	if (q->cur.off > (uint64_t)st.st_size) { /* truncated */
		q->cur.off = 0;
		q->reset = 1;
	}
	ev_read_fd(q, fd, (uint64_t)st.st_size, out);
	close(fd);
	return 0;
}

static void
ev_reply(struct evhttp_request *req, struct ev_query *q, json_t *events)
{
	char c[96];

	cursor_text(&q->cur, c, sizeof(c));
	admin_reply_json(req, 200, json_pack("{s:o, s:s, s:b}", "events", events,
	                                     "cursor", c, "reset", q->reset));
}

/* ---- long-poll waiters ---- */

static void ev_poll_arm(struct admin *a);

/* ev_poll - re-check every waiter; answer those with events or late */
static void
ev_poll(evutil_socket_t fd, short what, void *arg)
{
	struct admin *a = arg;
	struct admin_waiter **pp = &a->waiters, *w;
	uint64_t now = mono_ms();

	(void)fd;
	(void)what;
	while ((w = *pp) != NULL) {
		json_t *out = json_array();
		int rc = ev_collect(a, &w->q, out);

		(void)rc; /* no log yet: keep waiting for it */
		if (json_array_size(out) == 0 && now < w->deadline) {
			json_decref(out);
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		a->n_waiters--;
		ev_reply(w->req, &w->q, out);
		ev_query_clear(&w->q);
		free(w);
	}
	ev_poll_arm(a);
}

static void
ev_poll_arm(struct admin *a)
{
	struct timeval tv = { 0, ADMIN_POLL_MS * 1000 };

	if (a->waiters == NULL)
		return;
	if (a->ev_poll == NULL)
		a->ev_poll = evtimer_new(a->base, ev_poll, a);
	if (!evtimer_pending(a->ev_poll, NULL))
		evtimer_add(a->ev_poll, &tv);
}

void
admin_events_stop(struct admin *a)
{
	struct admin_waiter *w;

	while ((w = a->waiters) != NULL) {
		a->waiters = w->next;
		ev_reply(w->req, &w->q, json_array()); /* the cursor stays valid */
		ev_query_clear(&w->q);
		free(w);
	}
	a->n_waiters = 0;
	if (a->ev_poll) {
		event_free(a->ev_poll);
		a->ev_poll = NULL;
	}
}

/* ev_params - the query string; -1 when a reply was sent */
static int
ev_params(struct admin_req *r, struct ev_query *q, uint64_t *timeout)
{
	const char *since = admin_query(r, "since");
	const char *ev = admin_query(r, "event");

	q->limit = ADMIN_EV_LIMIT;
	*timeout = 0;
	if (admin_query_u64(r, "limit", ADMIN_EV_LIMIT_MAX, &q->limit) < 0 ||
	    admin_query_u64(r, "timeout", ADMIN_EV_TIMEOUT, timeout) < 0)
		return -1;
	if (q->limit == 0)
		q->limit = ADMIN_EV_LIMIT;
	if (since && strcmp(since, "end") != 0 && cursor_parse(since, &q->cur) < 0) {
		admin_reply_error(r->req, 400, "bad_cursor",
		                  "since: a cursor returned by this endpoint, or \"end\"");
		return -1;
	}
	q->envid = admin_query(r, "envid") ? xstrdup(admin_query(r, "envid")) : NULL;
	q->tenant = admin_query(r, "tenant") ? xstrdup(admin_query(r, "tenant")) : NULL;
	q->events = ev ? xstrdup(ev) : NULL;
	q->terminal = admin_query(r, "terminal") && strcmp(admin_query(r, "terminal"), "0");
	return 0;
}

/* ev_seek_end - since=end: the current end of the log */
static void
ev_seek_end(struct admin *a, struct ev_query *q)
{
	struct stat st;

	if (a->cfg->delivery_log && stat(a->cfg->delivery_log, &st) == 0) {
		q->cur.dev = (uint64_t)st.st_dev;
		q->cur.ino = (uint64_t)st.st_ino;
		q->cur.off = (uint64_t)st.st_size;
	}
}

void
admin_events_get(struct admin_req *r)
{
	struct ev_query q = { 0 };
	struct admin_waiter *w;
	uint64_t timeout;
	json_t *out;

	if (r->method != EVHTTP_REQ_GET) {
		admin_reply_error(r->req, 405, "method_not_allowed", "GET /v1/events");
		return;
	}
	if (ev_params(r, &q, &timeout) < 0)
		goto done;
	if (admin_query(r, "since") && strcmp(admin_query(r, "since"), "end") == 0)
		ev_seek_end(r->a, &q);
	out = json_array();
	if (ev_collect(r->a, &q, out) < 0 && !(timeout > 0 && r->a->cfg->delivery_log)) {
		json_decref(out);
		admin_reply_error(r->req, 503, "no_delivery_log", "cannot read [log] "
		                  "delivery_log: %s", strerror(errno));
		goto done;
	}
	if (json_array_size(out) > 0 || timeout == 0) {
		ev_reply(r->req, &q, out);
		goto done;
	}
	json_decref(out);
	if (r->a->n_waiters >= ADMIN_MAX_WAITERS) {
		admin_reply_error(r->req, 503, "too_many_waiters",
		                  "%d event long-polls already wait", ADMIN_MAX_WAITERS);
		goto done;
	}
	w = xcalloc(1, sizeof(*w));
	w->req = r->req;
	w->q = q;
	memset(&q, 0, sizeof(q));
	w->deadline = mono_ms() + timeout * 1000;
	w->next = r->a->waiters;
	r->a->waiters = w;
	r->a->n_waiters++;
	ev_poll_arm(r->a);
done:
	ev_query_clear(&q);
}
