/*
 * mxsched_abounce.c - an operator bounces or deletes a message (admin API:
 * DELETE /v1/messages/{id}[?bounce=1], POST /v1/bounce). Every
 * non-terminal recipient of the message (of the given domains, if any)
 * fails with 5.0.0 "deleted by administrator": one Bounce line each in the
 * delivery log (with who did it), and one DSN to the sender for all of
 * them (NOTIFY respected, never to the null sender), written in the same
 * store batch as their outcomes. A delete is the same job without the
 * DSN: one terminal AdminAction line per recipient.
 *
 * Recipients are wherever the scheduler left them: only on disk (queued,
 * held), claimed and waiting for DNS or in a site's ready queue, or in a
 * transaction being sent. The job takes the ones it can reach at once out
 * of the scheduler (into `held`), catches the ones that come back from a
 * transaction, a pending store write or a claim (sched_take and
 * sched_outcome ask abounce_catch), and waits (polling every POLL_MS)
 * until no recipient of the message is in a transaction or a write. Then
 * it bounces them all in one round. A transaction that delivers a
 * recipient meanwhile wins: that recipient is delivered, not bounced (one
 * terminal line either way). After the bounce, a recipient claimed before
 * the store applied it is dropped (the store has forgotten it).
 * Loop thread.
 */
#include "mxsched/mxsched_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#define POLL_MS 100

struct abounce {
	struct mxsched *s;
	struct qmsg *msg;            /* held until the job ends */
	char *domain;                /* only these recipients' domains (a
	                              * comma-separated list); NULL = all */
	char *who;
	int dsn;                     /* bounce (a DSN); 0: delete */
	struct rcpt_list held;       /* taken out of the scheduler */
	size_t n_held;
	size_t bounced;
	int finished;                /* bounced; waiting for the write */
	struct event *timer;
	mxsched_bounce_cb done;
	void *arg;
};

/* ab_domain_match - domain is one of the job's domains (or it has none) */
static int
ab_domain_match(const struct abounce *ab, const char *domain)
{
	return ab->domain == NULL || list_has(ab->domain, domain);
}

static int
ab_match(const struct abounce *ab, const struct rcpt *r)
{
	return ab_domain_match(ab, r->domain ? r->domain : "");
}

static void
ab_hold(struct abounce *ab, struct rcpt *r)
{
	TAILQ_INSERT_TAIL(&ab->held, r, link);
	ab->n_held++;
}

static int
ab_holds(const struct abounce *ab, uint32_t idx)
{
	const struct rcpt *r;

	TAILQ_FOREACH(r, &ab->held, link)
		if (r->idx == idx)
			return 1;
	return 0;
}

/* ab_take_waits - its recipients waiting for DNS */
static void
ab_take_wait(void *val, void *arg)
{
	struct domwait *w = val;
	struct abounce *ab = arg;
	struct rcpt *r, *next;

	for (r = TAILQ_FIRST(&w->rcpts); r; r = next) {
		next = TAILQ_NEXT(r, link);
		if (r->msg != ab->msg || !ab_match(ab, r))
			continue;
		TAILQ_REMOVE(&w->rcpts, r, link);
		w->n--;
		r->msg->resolving--;
		ab_hold(ab, r);
	}
}

struct ab_scan {
	struct abounce *ab;
	size_t busy;
};

/* ab_take_site - its ready recipients at a site; count those in flight */
static void
ab_take_site(void *val, void *arg)
{
	struct ab_scan *sc = arg;
	struct rcpt_list l;
	struct rcpt *r;

	TAILQ_INIT(&l);
	site_msg_take(val, sc->ab->msg, sc->ab->domain, &l);
	while ((r = TAILQ_FIRST(&l)) != NULL) {
		TAILQ_REMOVE(&l, r, link);
		ab_hold(sc->ab, r);
	}
	sc->busy += site_msg_busy(val, sc->ab->msg, sc->ab->domain);
}

/* ab_collect - the recipients only on disk join `held`; -1 while one is
 * in a store write not applied yet (its outcome decides) */
static int
ab_collect(struct abounce *ab, struct rcpt_list *disk)
{
	struct queue_rcpt *qr;
	int n = queue_msg_rcpts(ab->s->q, ab->msg->id, &qr), rc = 0;

	for (int i = 0; i < n && rc == 0; i++) {
		if (!ab_domain_match(ab, qr[i].domain ? qr[i].domain : ""))
			continue;
		if (ab_holds(ab, qr[i].idx))
			continue;
		if (qr[i].state == QUEUE_RCPT_INFLIGHT) {
			rc = -1; /* an outcome on its way to the store */
		} else {
			/* only on disk: in memory for its outcome */
			struct rcpt *r = sched_rcpt_new(ab->s, ab->msg, &qr[i]);

			TAILQ_INSERT_TAIL(disk, r, link);
		}
	}
	queue_rcpts_free(qr, n > 0 ? (size_t)n : 0);
	return n < 0 ? -1 : rc;
}

static void ab_free(struct abounce *ab, int unmap);

/* ab_on_written - the bounce (and the DSN) are durable, or failed */
static void
ab_on_written(void *arg, enum queue_status st)
{
	struct abounce *ab = arg;
	struct mxsched *s = ab->s;

	if (sched_callback_done(s)) {
		if (ab->done)
			ab->done(ab->arg, QUEUE_ECLOSED, ab->bounced);
		event_free(ab->timer);
		free(ab->domain);
		free(ab->who);
		free(ab);
		return;
	}
	if (ab->done)
		ab->done(ab->arg, st, ab->bounced);
	ab_free(ab, 1);
}

/* ab_finish - bounce every recipient in one round (one DSN) */
static void
ab_finish(struct abounce *ab, struct rcpt_list *disk)
{
	struct mxsched *s = ab->s;
	char text[300];
	struct rcpt *r;

	TAILQ_CONCAT(&ab->held, disk, link);
	snprintf(text, sizeof(text), "deleted by administrator (%s)", ab->who);
	while ((r = TAILQ_FIRST(&ab->held)) != NULL) {
		TAILQ_REMOVE(&ab->held, r, link);
		ab->bounced++;
		s->bounced += ab->dsn;
		sched_outcome(s, r, ab->dsn ? QUEUE_OUT_BOUNCED : QUEUE_OUT_DELETED, 0,
		              SREPLY(.enhanced = "5.0.0", .text = text,
		                     .category = "admin", .by = ab->who));
	}
	ab->n_held = 0;
	ab->finished = 1;
	log_info(ab->msg->idtext, "%zu recipient(s) %s by %s", ab->bounced,
	         ab->dsn ? "bounced" : "deleted", ab->who);
	sched_flush(s);
	/* ops complete in order: this empty write is durable after them */
	s->busy_writes++;
	queue_outcomes(s->q, NULL, 0, ab_on_written, ab);
}

/* ab_run - take what can be taken; finish once nothing is in flight */
static void
ab_run(struct abounce *ab)
{
	struct ab_scan sc = { ab, 0 };
	struct rcpt_list disk;
	struct timeval tv = { 0, POLL_MS * 1000 };
	struct rcpt *r;

	smap_each(&ab->s->waits, ab_take_wait, ab);
	smap_each(&ab->s->sites, ab_take_site, &sc);
	TAILQ_INIT(&disk);
	if (sc.busy == 0 && ab_collect(ab, &disk) == 0) {
		ab_finish(ab, &disk);
		return;
	}
	while ((r = TAILQ_FIRST(&disk)) != NULL) {
		TAILQ_REMOVE(&disk, r, link);
		sched_rcpt_free(ab->s, r);
	}
	evtimer_add(ab->timer, &tv);
}

static void
ab_on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	ab_run(arg);
}

/* ab_free - the job ends (its recipients are gone or handed back) */
static void
ab_free(struct abounce *ab, int unmap)
{
	struct mxsched *s = ab->s;
	struct rcpt *r;

	if (unmap)
		smap_del(&s->abounces, ab->msg->idtext);
	while ((r = TAILQ_FIRST(&ab->held)) != NULL) {
		TAILQ_REMOVE(&ab->held, r, link);
		sched_rcpt_free(s, r); /* in flight in the store: due at start */
	}
	event_free(ab->timer);
	sched_msg_unref(s, ab->msg);
	free(ab->domain);
	free(ab->who);
	free(ab);
}

/* ab_start - a bounce (dsn) or a delete of message id */
static int
ab_start(struct mxsched *s, uint64_t id, const char *domain, const char *who,
         int dsn, mxsched_bounce_cb done, void *arg)
{
	char idtext[QUEUE_ID_TEXT_LEN];
	struct abounce *ab;
	struct qmsg *m;

	queue_id_to_text(id, idtext);
	if (smap_get(&s->abounces, idtext))
		return -2;
	if ((m = sched_msg_get(s, id)) == NULL)
		return -1;
	ab = xcalloc(1, sizeof(*ab));
	ab->s = s;
	ab->msg = m;
	m->refs++; /* a message loaded just now had none */
	ab->domain = domain && *domain ? xstrdup(domain) : NULL;
	ab->who = xstrdup(who && *who ? who : "admin");
	ab->dsn = dsn;
	TAILQ_INIT(&ab->held);
	ab->timer = evtimer_new(s->base, ab_on_timer, ab);
	ab->done = done;
	ab->arg = arg;
	smap_put(&s->abounces, idtext, ab);
	ab_run(ab);
	return 0;
}

int
mxsched_msg_bounce(struct mxsched *s, uint64_t id, const char *domain,
                   const char *who, mxsched_bounce_cb done, void *arg)
{
	return ab_start(s, id, domain, who, 1, done, arg);
}

int
mxsched_msg_delete(struct mxsched *s, uint64_t id, const char *domain,
                   const char *who, mxsched_bounce_cb done, void *arg)
{
	return ab_start(s, id, domain, who, 0, done, arg);
}

int
abounce_catch(struct mxsched *s, struct rcpt *r, int claimed)
{
	struct abounce *ab;

	if (s->abounces.n == 0 ||
	    (ab = smap_get(&s->abounces, r->msg->idtext)) == NULL || !ab_match(ab, r))
		return 0;
	if (ab->finished) {
		/* claimed before the bounce was applied: the store forgets it */
		if (!claimed)
			return 0;
		sched_rcpt_free(s, r);
		return 1;
	}
	ab_hold(ab, r);
	return 1;
}

static void
ab_drop(void *val)
{
	struct abounce *ab = val;

	if (ab->finished)
		return; /* its write callback frees it */
	if (ab->done)
		ab->done(ab->arg, QUEUE_ECLOSED, 0);
	ab->done = NULL;
	ab_free(ab, 0); /* the map is being cleared */
}

void
abounces_drop(struct mxsched *s)
{
	smap_clear(&s->abounces, ab_drop);
}
