/*
 * mxsched.c - the scheduler's spine: claim due recipients from the store in
 * bounded pages, resolve their domains, hand them to their sites, and
 * record every outcome durably (batched) and in the delivery log.
 * Runs on the daemon's event loop; never blocks on a sync or on DNS.
 */
#include "mxsched/mxsched_internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#define CLAIM_PAGE 1000          /* recipients per claim call */
#define CLAIM_PAGES_PER_TICK 8   /* bound on the work of one tick */
#define TICK_MS 100

/* outcomes collected during one callback, written in one store round; the
 * delivery-log lines go out once the round is durable */
struct pending_out {
	struct mxsched *s;
	struct queue_outcome *o;
	size_t n, cap;
	char **strs;                /* strings the outcomes point to */
	size_t nstr, capstr;
	char *log;                  /* delivery log lines */
	size_t loglen, logcap;
};

uint32_t
sched_random(struct mxsched *s)
{
	/* xorshift32: jitter and shuffles, not security */
	uint32_t x = s->rng;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return s->rng = x;
}

struct pending_out *
sched_out_new(struct mxsched *s)
{
	struct pending_out *p = xcalloc(1, sizeof(*p));

	p->s = s;
	return p;
}

static struct pending_out *
out_get(struct mxsched *s)
{
	if (s->out == NULL)
		s->out = sched_out_new(s);
	return s->out;
}

const char *
sched_out_str(struct pending_out *p, const char *v)
{
	if (v == NULL)
		return NULL;
	if (p->nstr == p->capstr) {
		p->capstr = p->capstr ? p->capstr * 2 : 64;
		p->strs = xrealloc(p->strs, p->capstr * sizeof(char *));
	}
	return p->strs[p->nstr++] = xstrdup(v);
}

void
sched_out_free(struct pending_out *p)
{
	size_t i;

	for (i = 0; i < p->nstr; i++)
		free(p->strs[i]);
	free(p->strs);
	free(p->o);
	free(p->log);
	free(p);
}

void
sched_msg_unref(struct mxsched *s, struct qmsg *m)
{
	if (--m->refs > 0)
		return;
	if (!s->dead)
		smap_del(&s->msgs, m->idtext);
	queue_envelope_free(m->env);
	free(m->sites);
	free(m);
}

struct rcpt *
sched_rcpt_new(struct mxsched *s, struct qmsg *m, const struct queue_rcpt *qr)
{
	struct rcpt *r = xcalloc(1, sizeof(*r));

	r->msg = m;
	m->refs++;
	s->in_memory++;
	r->idx = qr->idx;
	r->address = xstrdup(qr->address);
	r->domain = xstrdup(qr->domain ? qr->domain : "");
	r->orcpt = qr->orcpt ? xstrdup(qr->orcpt) : NULL;
	r->notify = qr->notify;
	r->attempts = qr->attempts;
	r->first_ms = qr->first_attempt_ms;
	r->warned_ms = qr->warned_ms;
	return r;
}

void
sched_rcpt_free(struct mxsched *s, struct rcpt *r)
{
	sched_msg_unref(s, r->msg);
	free(r->address);
	free(r->domain);
	free(r->orcpt);
	free(r);
	s->in_memory--;
}

static const char *const kind_event[] = {
	[QUEUE_OUT_DELIVERED] = "Delivery",
	[QUEUE_OUT_DEFERRED] = "TransientFailure",
	[QUEUE_OUT_BOUNCED] = "Bounce",
	[QUEUE_OUT_EXPIRED] = "Expiration",
	[QUEUE_OUT_DELETED] = "AdminAction",
	[QUEUE_OUT_RELEASE] = NULL,
	[QUEUE_OUT_REDEFER] = "Suspended",
};

/* log_line - render one delivery-log line into the pending round */
static void
log_line(struct pending_out *p, const char *event, struct rcpt *r,
         const struct sched_reply *rp, const char *category, uint64_t next_ms)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	dlog_write(f, event, r->msg, r, rp, category, next_ms);
	fclose(f);
	if (p->loglen + len + 1 > p->logcap) {
		p->logcap = (p->loglen + len + 1) * 2;
		p->log = xrealloc(p->log, p->logcap);
	}
	memcpy(p->log + p->loglen, buf, len);
	p->loglen += len;
	p->log[p->loglen] = '\0';
	free(buf);
}

struct bounce_class
sched_classify(const struct mxsched *s, enum bounce_phase ph, int code,
               const char *enhanced, const char *text, const char *mx)
{
	struct bounce_reply br = { ph, code, enhanced && *enhanced ? enhanced : NULL,
	                           text, mx };

	return bounce_classify(s->rules, &br);
}

/* sched_out_add - one outcome (and its log line) into a pending round */
void
sched_out_add(struct pending_out *p, struct rcpt *r, enum queue_outcome_kind kind,
              uint64_t next_ms, const struct sched_reply *rp, const char *category)
{
	struct queue_outcome *o;

	if (p->n == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 64;
		p->o = xrealloc(p->o, p->cap * sizeof(*p->o));
	}
	o = &p->o[p->n++];
	memset(o, 0, sizeof(*o));
	o->msgid = r->msg->id;
	o->idx = r->idx;
	o->kind = kind;
	o->next_ms = next_ms;
	o->reply.code = rp->code;
	o->reply.enhanced = sched_out_str(p, rp->enhanced && *rp->enhanced ? rp->enhanced : NULL);
	o->reply.text = sched_out_str(p, rp->text);
	o->reply.mx = sched_out_str(p, rp->mx_host);
	if (kind == QUEUE_OUT_DELETED)
		o->by = sched_out_str(p, rp->by);
	if (kind_event[kind] && !rp->quiet)
		log_line(p, kind_event[kind], r, rp, category, next_ms);
}

/* sched_suppress - a hard bounce that says the address (or its domain)
 * does not exist keeps new mail from it for a while */
static void
sched_suppress(struct mxsched *s, const struct rcpt *r, const char *category,
               const char *text)
{
	uint64_t d = 0;

	if (category == NULL)
		return;
	if (!strcmp(category, "bad-mailbox") || !strcmp(category, "inactive-mailbox"))
		d = s->cfg->suppress_bad_mailbox_ms;
	else if (!strcmp(category, "bad-domain"))
		d = s->cfg->suppress_bad_domain_ms;
	if (d == 0 || (r->msg->env->flags & QUEUE_MSG_DSN))
		return;
	queue_suppress_add(s->q, r->address, now_ms() + d, category, text, NULL, NULL);
	s->suppress_any = 1;
}

/* sched_report - the DSN this outcome earns, if any (a failure, a delay
 * warning, or "relayed" for NOTIFY=SUCCESS at a server without DSN): the
 * pending round its outcome joins, or NULL. *warned: a delay warning's
 * time, kept in the recipient's record. */
static struct pending_out *
sched_report(struct mxsched *s, struct rcpt *r, enum queue_outcome_kind kind,
             const struct sched_reply *rp, uint64_t *warned)
{
	const struct config *c = s->cfg;
	struct pending_out *p;
	uint64_t now;

	switch (kind) {
	case QUEUE_OUT_BOUNCED:
	case QUEUE_OUT_EXPIRED:
		return dsn_job_add(s, r, BOUNCE_ACTION_FAILED, kind, rp);
	case QUEUE_OUT_DELIVERED:
		if (!rp->no_remote_dsn)
			return NULL; /* NOTIFY was passed on: theirs to report */
		return dsn_job_add(s, r, BOUNCE_ACTION_RELAYED, kind, rp);
	case QUEUE_OUT_DEFERRED:
	case QUEUE_OUT_REDEFER:
		now = now_ms();
		if (!bounce_delay_warning_due(r->msg->env->submit_ms, r->warned_ms,
		    now, c->delay_warning_ms, c->delay_warning_interval_ms))
			return NULL;
		if ((p = dsn_job_add(s, r, BOUNCE_ACTION_DELAYED, kind, rp)) != NULL)
			*warned = now;
		return p;
	default:
		return NULL;
	}
}

void
sched_outcome(struct mxsched *s, struct rcpt *r, enum queue_outcome_kind kind,
              uint64_t next_ms, const struct sched_reply *rp)
{
	const char *category = rp->category;
	struct pending_out *p = NULL;
	uint64_t warned = 0;

	if ((kind == QUEUE_OUT_DEFERRED || kind == QUEUE_OUT_REDEFER ||
	     kind == QUEUE_OUT_RELEASE) && abounce_catch(s, r, 0))
		return; /* not written: its message is being bounced */

	if (kind == QUEUE_OUT_EXPIRED)
		category = "message-expired";
	else if (category == NULL && (kind == QUEUE_OUT_BOUNCED ||
	         kind == QUEUE_OUT_DEFERRED) && rp->code)
		category = bounce_category_name(sched_classify(s, BOUNCE_PHASE_ANY,
		    rp->code, rp->enhanced, rp->text, rp->mx_host).cat);
	if (kind == QUEUE_OUT_BOUNCED)
		sched_suppress(s, r, category, rp->text);
	p = sched_report(s, r, kind, rp, &warned);
	if (p == NULL)
		p = out_get(s);
	sched_out_add(p, r, kind, next_ms, rp, category);
	p->o[p->n - 1].warned_ms = warned;
	sched_rcpt_free(s, r);
}

void
sched_defer(struct mxsched *s, struct rcpt *r, const struct sched_reply *rp)
{
	const struct queue_envelope *env = r->msg->env;
	uint64_t now = now_ms();
	uint64_t next = mxsched_retry_next(&s->retry, r->attempts + 1, now,
	                                   env->submit_ms, s->cfg->queue_lifetime_ms,
	                                   sched_random(s));

	sched_outcome(s, r, next ? QUEUE_OUT_DEFERRED : QUEUE_OUT_EXPIRED, next, rp);
}

/* sched_on_written - a round of outcomes is durable: log it */
static void
sched_on_written(void *arg, enum queue_status st)
{
	struct pending_out *p = arg;
	struct mxsched *s = p->s;

	if (sched_callback_done(s)) {
		sched_out_free(p);
		return;
	}
	if (st != QUEUE_OK) {
		/* the recipients stay in flight in the store and are retried
		 * after a restart; say so rather than log outcomes not kept */
		log_warnx("-", "store: %zu outcomes not written (%s); their recipients "
		          "will be retried", p->n, queue_status_to_text(st));
	} else if (p->loglen) {
		dlog_append(p->log, p->loglen);
	}
	sched_out_free(p);
}

int
sched_callback_done(struct mxsched *s)
{
	s->busy_writes--;
	if (!s->dead)
		return 0;
	if (s->busy_writes == 0)
		free(s);
	return 1;
}

/* sched_out_submit - write a pending round to the store (frees it) */
void
sched_out_submit(struct pending_out *p)
{
	if (p->n == 0) {
		sched_out_free(p);
		return;
	}
	p->s->busy_writes++;
	queue_outcomes(p->s->q, p->o, p->n, sched_on_written, p);
}

const struct queue_outcome *
sched_out_list(const struct pending_out *p, size_t *n)
{
	*n = p->n;
	return p->o;
}

void
sched_out_unwarn(struct pending_out *p)
{
	for (size_t i = 0; i < p->n; i++)
		p->o[i].warned_ms = 0;
}

void
sched_out_written(struct pending_out *p)
{
	if (p->loglen)
		dlog_append(p->log, p->loglen);
	sched_out_free(p);
}

void
sched_flush(struct mxsched *s)
{
	struct pending_out *p = s->out;

	s->out = NULL;
	if (p != NULL)
		sched_out_submit(p);
	dsn_jobs_run(s);
}

/* ---- claiming and resolving ---- */

static void sched_on_resolved(void *arg, const struct resolve_result *res);

/* msg_get - the in-memory message of a claimed recipient, or NULL if it
 * vanished (deleted by an admin meanwhile) */
struct qmsg *
sched_msg_get(struct mxsched *s, queue_msgid id)
{
	char idtext[QUEUE_ID_TEXT_LEN];
	struct qmsg *m;

	queue_id_to_text(id, idtext);
	if ((m = smap_get(&s->msgs, idtext)) != NULL)
		return m;
	m = xcalloc(1, sizeof(*m));
	m->id = id;
	memcpy(m->idtext, idtext, sizeof(idtext));
	if ((m->env = queue_envelope_get(s->q, id)) == NULL) {
		free(m);
		return NULL;
	}
	smap_put(&s->msgs, idtext, m);
	return m;
}

/* sched_take_suppressed - bounce a recipient on the suppression list
 * (accepted by a listener with suppressed = accept, or queued before the
 * address hard-bounced) */
static int
sched_take_suppressed(struct mxsched *s, struct rcpt *r)
{
	struct queue_suppression sup;
	char text[512];

	if (queue_suppress_check(s->q, r->address, now_ms(), &sup) != 1)
		return 0;
	snprintf(text, sizeof(text), "recipient suppressed after a hard bounce (%s): %s",
	         sup.category, sup.reason);
	queue_suppression_clear(&sup);
	sched_outcome(s, r, QUEUE_OUT_BOUNCED, 0, SREPLY(.code = 550, .enhanced = "5.1.1",
	              .text = text, .category = "suppressed"));
	return 1;
}

/* sched_take_held - the sending domain is on a domain block list and its
 * mail is held: back to the store without spending an attempt */
static int
sched_take_held(struct mxsched *s, struct rcpt *r, uint64_t now)
{
	char why[400];
	uint64_t until;

	if (!dnsbl_sender_held(s->rep->bl, r->msg->env->sender, now, &until, why,
	                       sizeof(why)))
		return 0;
	sched_outcome(s, r, QUEUE_OUT_REDEFER, until, SREPLY(.text = why,
	              .category = "blocklisted"));
	return 1;
}

/* sched_take - one claimed recipient: expire it, or wait for its domain */
static void
sched_take(struct mxsched *s, struct queue_rcpt *qr, uint64_t now)
{
	struct qmsg *m = sched_msg_get(s, qr->msgid);
	struct domwait *w;
	struct rcpt *r;

	if (m == NULL)
		return;
	r = sched_rcpt_new(s, m, qr);
	if (abounce_catch(s, r, 1))
		return; /* its message is being bounced by an operator */
	if (s->suppress_any && sched_take_suppressed(s, r))
		return;
	if (now >= m->env->submit_ms + s->cfg->queue_lifetime_ms) {
		sched_outcome(s, r, QUEUE_OUT_EXPIRED, 0, SREPLY(.code = qr->last_code,
		              .enhanced = qr->last_enhanced, .text = qr->last_text ?
		              qr->last_text : "queue lifetime exceeded",
		              .mx_host = qr->last_mx));
		return;
	}
	if (s->rep->bl && sched_take_held(s, r, now))
		return;
	if ((w = smap_get(&s->waits, r->domain)) == NULL) {
		w = xcalloc(1, sizeof(*w));
		w->domain = xstrdup(r->domain);
		w->s = s;
		TAILQ_INIT(&w->rcpts);
		smap_put(&s->waits, w->domain, w);
		w->req = resolve_domain(s->res, w->domain, sched_on_resolved, w);
	}
	TAILQ_INSERT_TAIL(&w->rcpts, r, link);
	w->n++;
	m->resolving++;
}

/* sched_claim - pull due recipients while memory allows */
static void
sched_claim(struct mxsched *s)
{
	uint64_t cap = s->cfg->max_inflight_rcpts, now = now_ms();
	struct queue_rcpt *qr;
	int pages, n, i;

	if (s->stopping || s->cfg->paused)
		return;
	for (pages = 0; pages < CLAIM_PAGES_PER_TICK && s->in_memory < cap; pages++) {
		size_t want = cap - s->in_memory < CLAIM_PAGE ? cap - s->in_memory : CLAIM_PAGE;
		if ((n = queue_due_claim(s->q, now, want, &qr)) <= 0) {
			if (n < 0)
				log_warnx("-", "store: cannot read the due index");
			break;
		}
		for (i = 0; i < n; i++)
			sched_take(s, &qr[i], now);
		queue_rcpts_free(qr, (size_t)n);
		if ((size_t)n < want)
			break;
	}
	sched_flush(s);
}

/* sched_ready_full - the site has max_ready recipients ready: this one
 * waits on disk (no attempt spent, no log line; its last reply says why)
 * and its in-memory slot goes to other sites' mail */
static void
sched_ready_full(struct mxsched *s, struct site *site, struct rcpt *r, uint64_t now)
{
	char why[160];

	snprintf(why, sizeof(why), "site busy: %u recipients ready, more wait on "
	         "disk ([site] max_ready)", site->max_ready);
	site->ready_full++;
	sched_outcome(s, r, QUEUE_OUT_REDEFER, now + s->cfg->ready_full_delay_ms,
	              SREPLY(.text = why, .site = site, .quiet = 1));
}

/* sched_resolved_ok - hand the domain's recipients to its site, or to
 * the site's twin of the pool their message chooses (mail from different
 * pools never shares a connection) */
static void
sched_resolved_ok(struct mxsched *s, struct rcpt_list *rl,
                  const struct resolve_result *res)
{
	struct site *base = site_get(s, res), *site, *seen[8];
	struct pool *pool, *seen_pool[8];
	size_t n_seen = 0, i;
	uint64_t now = now_ms();
	struct rcpt *r;

	while ((r = TAILQ_FIRST(rl)) != NULL) {
		TAILQ_REMOVE(rl, r, link);
		site = base;
		if ((pool = rep_msg_pool(s, r->msg->env)) != NULL && pool != base->pool) {
			/* the twin's exchangers are refreshed once per answer */
			for (i = 0; i < n_seen && seen_pool[i] != pool; i++)
				;
			site = i < n_seen ? seen[i] : site_for_pool(base, res, pool);
			if (i == n_seen && n_seen < 8) {
				seen_pool[n_seen] = pool;
				seen[n_seen++] = site;
			}
		}
		if (site_suspended(site, now))
			sched_outcome(s, r, QUEUE_OUT_REDEFER, site->suspended_until,
			              SREPLY(.text = site->reason, .site = site));
		else if (site->n_ready >= site->max_ready)
			sched_ready_full(s, site, r, now);
		else
			site_enqueue(site, r);
	}
}

/* sched_resolved_fail - the domain cannot be resolved: bounce or defer */
static void
sched_resolved_fail(struct mxsched *s, struct rcpt_list *rl,
                    const struct resolve_result *res)
{
	struct rcpt *r;

	while ((r = TAILQ_FIRST(rl)) != NULL) {
		TAILQ_REMOVE(rl, r, link);
		const struct sched_reply *rp = SREPLY(.code = res->code,
		    .enhanced = res->enhanced, .text = res->reason,
		    .category = res->status == RESOLVE_PERM ? "bad-domain" : "routing-errors");
		if (res->status == RESOLVE_PERM)
			sched_outcome(s, r, QUEUE_OUT_BOUNCED, 0, rp);
		else
			sched_defer(s, r, rp);
	}
}

/* sched_on_resolved - a domain's answer. A message's recipients are cut
 * into batches only once all its domains are resolved, so a site that
 * allows mixed domains gets full batches, not one per domain. */
static void
sched_on_resolved(void *arg, const struct resolve_result *res)
{
	struct domwait *w = arg;
	struct mxsched *s = w->s;
	struct qmsg **done = xcalloc(w->n, sizeof(*done));
	size_t n_done = 0, i, j;
	struct rcpt *r;

	smap_del(&s->waits, w->domain);
	TAILQ_FOREACH(r, &w->rcpts, link) {
		if (--r->msg->resolving == 0) {
			r->msg->refs++; /* hold it until its sites are pumped */
			done[n_done++] = r->msg;
		}
	}
	if (res->status == RESOLVE_OK)
		sched_resolved_ok(s, &w->rcpts, res);
	else
		sched_resolved_fail(s, &w->rcpts, res);
	for (i = 0; i < n_done; i++) {
		for (j = 0; j < done[i]->n_sites; j++)
			site_pump(done[i]->sites[j]);
		sched_msg_unref(s, done[i]);
	}
	free(done);
	free(w->domain);
	free(w);
	sched_flush(s);
}

static void
sched_on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	sched_claim(arg);
}

void
mxsched_kick(struct mxsched *s)
{
	sched_claim(s);
}

/* ---- lifecycle ---- */

static int
sched_setup_parts(struct mxsched *s, char *err, size_t errlen)
{
	const struct config *c = s->cfg;
	struct dns_options dopt = { .servers = c->dns_servers,
	                            .timeout_ms = c->dns_timeout_ms,
	                            .tries = (int)c->dns_tries,
	                            .max_inflight = (unsigned)c->dns_max_inflight };
	struct resolve_options ropt = { .min_ttl_ms = c->dns_min_ttl_ms,
	                                .max_ttl_ms = c->dns_max_ttl_ms,
	                                .negative_ttl_ms = c->dns_negative_ttl_ms,
	                                .temp_ttl_ms = c->dns_error_ttl_ms,
	                                .max_entries = (size_t)c->dns_cache_size,
	                                .no_ipv6 = !c->dns_ipv6 };
	char why[512];

	if ((s->dns = dns_new(s->base, &dopt, err, errlen)) == NULL)
		return -1;
	s->res = resolver_new(s->base, s->dns, &ropt);
	s->rules = bounce_rules_new();
	if (c->bounce_rules_file &&
	    bounce_rules_add_file(s->rules, c->bounce_rules_file, err, errlen) != 0)
		return -1;
	bounce_rules_add_builtin(s->rules);
	if (mxsched_retry_parse(c->retry_schedule, &s->retry) < 0) {
		snprintf(err, errlen, "[delivery] retry_schedule: bad value");
		return -1;
	}
	if (smtpc_netlist_parse(c->allow_private_destinations, &s->allow_private,
	                        why, sizeof(why)) < 0) {
		snprintf(err, errlen, "[delivery] allow_private_destinations: %s", why);
		return -1;
	}
	if ((s->tls = smtpc_tls_new(c->tls_ca_file, why, sizeof(why))) == NULL) {
		snprintf(err, errlen, "TLS client context: %s", why);
		return -1;
	}
	if (c->providers_file && access(c->providers_file, R_OK) == 0) {
		s->providers = provider_table_load(c->providers_file, err, errlen);
		if (s->providers == NULL)
			return -1;
	} else {
		log_warnx("-", "provider table %s not readable: no provider shapes",
		          c->providers_file ? c->providers_file : "(none)");
	}
	return 0;
}

struct mxsched *
mxsched_new(struct event_base *base, const struct config *cfg, struct queue *q,
            char *err, size_t errlen)
{
	struct mxsched *s = xcalloc(1, sizeof(*s));
	struct timeval tv = { 0, TICK_MS * 1000 };

	s->base = base;
	s->cfg = cfg;
	s->q = q;
	s->rng = (uint32_t)(now_ms() ^ (uint64_t)getpid()) | 1u;
	smap_init(&s->msgs);
	smap_init(&s->waits);
	smap_init(&s->sites);
	smap_init(&s->msets);
	smap_init(&s->dsn_jobs);
	smap_init(&s->abounces);
	if (cfg->hostname)
		snprintf(s->ehlo, sizeof(s->ehlo), "%s", cfg->hostname);
	else if (gethostname(s->ehlo, sizeof(s->ehlo)) < 0 || s->ehlo[0] == '\0')
		snprintf(s->ehlo, sizeof(s->ehlo), "localhost");
	if (sched_setup_parts(s, err, errlen) < 0)
		goto fail;
	if (rep_new(s, err, errlen) < 0) /* reputation: pools, DNSBL monitor (mxsched_pool.c) */
		goto fail;
	s->tick = event_new(base, -1, EV_PERSIST, sched_on_tick, s);
	event_add(s->tick, &tv);
	if (cfg->paused)
		log_info("-", "delivery paused ([delivery] paused = yes)");
	{
		struct queue_suppression *sup = NULL;
		int n = queue_suppress_list(q, "", 1, &sup);
		s->suppress_any = n != 0; /* on a read error, check each time */
		queue_suppressions_free(sup, n > 0 ? (size_t)n : 0);
	}
	return s;
fail:
	mxsched_free(s);
	return NULL;
}

static void
site_stop_cb(void *val, void *arg)
{
	(void)arg;
	site_stop(val);
}

void
mxsched_stop(struct mxsched *s)
{
	if (s == NULL)
		return;
	s->stopping = 1;
	smap_each(&s->sites, site_stop_cb, NULL);
}

static void
site_busy_cb(void *val, void *arg)
{
	if (site_busy(val))
		*(int *)arg = 1;
}

int
mxsched_busy(const struct mxsched *s)
{
	int busy = s->busy_writes > 0;

	smap_each(&s->sites, site_busy_cb, &busy);
	return busy;
}

static void
wait_free(void *val)
{
	struct domwait *w = val;
	struct rcpt *r;

	resolve_cancel(w->req);
	while ((r = TAILQ_FIRST(&w->rcpts)) != NULL) {
		TAILQ_REMOVE(&w->rcpts, r, link);
		sched_rcpt_free(w->s, r);
	}
	free(w->domain);
	free(w);
}

static void
site_free_cb(void *val)
{
	site_free(val);
}

void
mxsched_free(struct mxsched *s)
{
	if (s == NULL)
		return;
	if (s->tick)
		event_free(s->tick);
	/* recipients still held are in flight in the store: due again at the
	 * next start; nothing to write for them now */
	smap_clear(&s->waits, wait_free);
	smap_clear(&s->sites, site_free_cb);
	smap_clear(&s->msets, NULL);
	/* outcomes and DSNs not yet written: their recipients are in flight
	 * in the store and due again at the next start */
	dsn_jobs_drop(s);
	abounces_drop(s);
	bounce_rules_free(s->rules);
	if (s->out)
		sched_out_free(s->out);
	smap_clear(&s->msgs, NULL);
	rep_free(s); /* reputation: after the sites, before the DNS channel */
	resolver_free(s->res);
	dns_free(s->dns);
	provider_table_free(s->providers);
	smtpc_tls_free(s->tls);
	smtpc_netlist_free(s->allow_private);
	mxsched_retry_free(&s->retry);
	s->dead = 1;
	if (s->busy_writes == 0)
		free(s);
	/* else the last store callback frees it */
}

