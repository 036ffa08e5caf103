/*
 * mxsched_site.c - sites: the shape in force, the ready queue of one mset
 * per message, batch cutting, the connection pool, and what replies do to
 * the site (learned recipient limit, multi_domain verdict, connection
 * pressure, suspension with exponential backoff), and where reputation
 * meets the pool: each connection is bound to the site's source address
 * in use (mxsched_pool.c), batches wait for the adaptive rate's token
 * bucket, and throttling / block-list replies go to mxsched_pool.c.
 *
 * A batch is one message x one site x up to the site's recipient limit,
 * and by default one recipient domain (multi_domain = deny); it references
 * the stored body, which streams from the store to the socket.
 */
#include "mxsched/mxsched_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>


struct batch {
	struct site *site;
	struct qmsg *msg;
	struct rcpt **r;
	struct smtpc_rcpt *sr;
	size_t n;
	struct smtpc_batch sb;
	struct queue_body *body;
	uint64_t start_ms;          /* handed to the connection */
};

static void site_conn_open(struct site *site);
static void conn_release(struct sconn *sc);

/* what one transaction's replies said about us (not the recipients) */
struct rep_verdict {
	int throttled, blocked, other;
	const char *why;            /* the first such reply's text */
	size_t *held;               /* indexes of the recipients it concerns */
	size_t n_held;
};

/* ---- the body, streamed from the store ---- */

static ssize_t
body_read(void *ctx, char *buf, size_t len)
{
	return (ssize_t)queue_body_read(ctx, buf, len);
}

static int
body_rewind(void *ctx)
{
	queue_body_rewind(ctx);
	return 0;
}

static uint64_t
body_size(void *ctx)
{
	return queue_body_size(ctx);
}

static const struct smtpc_body_ops body_ops = { body_read, body_rewind, body_size };

/* ---- shape ---- */

static enum md_mode
md_parse(const char *v)
{
	if (v && strcasecmp(v, "deny") == 0)
		return MD_DENY;
	if (v && strcasecmp(v, "allow") == 0)
		return MD_ALLOW;
	return MD_LEARN;
}

/* site_shape - [site] pattern or provider entry; provider overrides apply
 * where the operator's config only has the "default" shape */
static const char *
site_shape(struct site *site, const struct resolve_result *res,
           const struct provider *prov)
{
	const struct config_site *cs;
	const char *names[64], *v, *pool;
	size_t i, n = res->n_mx < 64 ? res->n_mx : 64;
	unsigned long u;

	for (i = 0; i < n; i++)
		names[i] = res->mx[i].name;
	cs = config_site_for(site->s->cfg, names, n, site->provider);
	site->max_conns = (unsigned)cs->connections;
	site->msgs_per_conn = (unsigned)cs->messages_per_connection;
	site->max_rcpt = (unsigned)cs->recipients_per_transaction;
	site->conn_age_ms = cs->connection_age_ms;
	site->idle_ms = cs->idle_ms;
	site->max_ready = cs->max_ready ? (unsigned)cs->max_ready : 20000;
	site->md = md_parse(cs->multi_domain);
	site->max_rate = (double)cs->recipients_per_hour / 60.0;
	pool = cs->pool;
	if (smtpc_tls_policy_parse(cs->tls, &site->tls) < 0)
		site->tls = SMTPC_TLS_MAY;
	if (prov && strcasecmp(cs->pattern, "default") == 0) {
		if ((v = provider_option(prov, "multi_domain")) != NULL)
			site->md = md_parse(v);
		if ((v = provider_option(prov, "messages_per_connection")) && (u = strtoul(v, NULL, 10)))
			site->msgs_per_conn = (unsigned)u;
		if ((v = provider_option(prov, "connections")) && (u = strtoul(v, NULL, 10)))
			site->max_conns = (unsigned)u;
		if ((v = provider_option(prov, "recipients_per_transaction")) && (u = strtoul(v, NULL, 10)))
			site->max_rcpt = (unsigned)u;
		if ((v = provider_option(prov, "recipients_per_hour")) && (u = strtoul(v, NULL, 10)))
			site->max_rate = (double)u / 60.0;
		if ((v = provider_option(prov, "pool")) != NULL)
			pool = v;
	}
	site->conn_limit = site->max_conns;
	site->rcpt_limit = site->max_rcpt;
	return pool;
}

static void
site_mx_free(struct site *site)
{
	size_t i, j;

	for (i = 0; i < site->n_mx; i++) {
		for (j = 0; j < site->mx[i].n_addrs; j++)
			free((char *)site->mx[i].addrs[j]);
		free((char **)site->mx[i].addrs);
		free((char *)site->mx[i].name);
	}
	free(site->mx);
	site->mx = NULL;
	site->n_mx = 0;
}

/* site_set_dest - remember where the site's exchangers are now */
static void
site_set_dest(struct site *site, const struct resolve_result *res)
{
	size_t i, j;

	site_mx_free(site);
	site->mx = xcalloc(res->n_mx ? res->n_mx : 1, sizeof(*site->mx));
	for (i = 0; i < res->n_mx; i++) {
		const struct resolve_mx *rm = &res->mx[i];
		char **addrs = xcalloc(rm->n_addrs ? rm->n_addrs : 1, sizeof(char *));
		for (j = 0; j < rm->n_addrs; j++)
			addrs[j] = xstrdup(rm->addrs[j].text);
		site->mx[i].name = xstrdup(rm->name);
		site->mx[i].addrs = (const char *const *)addrs;
		site->mx[i].n_addrs = rm->n_addrs;
	}
	site->n_mx = res->n_mx;
}

static void
site_on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct site *site = arg;

	(void)fd;
	(void)what;
	site->suspended_until = 0;
	site->src_wait = 0;
	log_info(site->key, "suspension over: probing with one connection");
}

static void
site_on_rate(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	site_pump(arg);
}

/* site_count_sent - recipients handed to transactions, for the observed
 * rate (10 s windows) an adaptive cut starts from when no rate is set */
static void
site_count_sent(struct site *site, size_t n, uint64_t now)
{
	if (site->rate_win_start == 0 || now >= site->rate_win_start + 10000) {
		site->rate_prev_n = site->rate_win_start && now < site->rate_win_start + 20000 ?
		                    site->rate_win_n : 0;
		site->rate_win_start = now;
		site->rate_win_n = 0;
	}
	site->rate_win_n += n;
}

double
site_observed_rate(const struct site *site, uint64_t now)
{
	uint64_t el;
	double cur, prev;

	if (site->rate_win_start == 0 || now < site->rate_win_start)
		return 0;
	el = now - site->rate_win_start;
	cur = (double)site->rate_win_n * 60000.0 / (double)(el > 1000 ? el : 1000);
	prev = el < 20000 ? (double)site->rate_prev_n * 6.0 : 0;
	return cur > prev ? cur : prev;
}

/* site_rate - recipients per minute allowed now (0: no limit) */
static double
site_rate(const struct site *site)
{
	return site->cur_src >= 0 ? site->src[site->cur_src].aimd.rate : site->max_rate;
}

/* site_new - a site keyed key for res's exchangers; pool_name (the
 * message's choice) overrides the pool of the site's shape */
static struct site *
site_new(struct mxsched *s, const struct resolve_result *res, const char *key,
         const char *pool_name)
{
	struct site *site = xcalloc(1, sizeof(*site));
	const struct provider *prov;
	const char *pool;

	site->s = s;
	site->key = xstrdup(key);
	prov = s->providers ? provider_for_mx(s->providers, res->mx, res->n_mx) : NULL;
	site->provider = prov ? xstrdup(provider_name(prov)) : NULL;
	TAILQ_INIT(&site->ready);
	TAILQ_INIT(&site->conns);
	pool = site_shape(site, res, prov);
	site->resume_timer = event_new(s->base, -1, 0, site_on_resume, site);
	site->rate_timer = event_new(s->base, -1, 0, site_on_rate, site);
	rep_site_init(site, pool_name ? pool_name : pool);
	smap_put(&s->sites, site->key, site);
	log_info(site->key, "new site%s%s: connections %u, recipients %u, "
	         "messages/connection %u, multi_domain %s, pool %s",
	         site->provider ? " of provider " : "",
	         site->provider ? site->provider : "", site->max_conns,
	         site->max_rcpt, site->msgs_per_conn,
	         site->md == MD_DENY ? "deny" : site->md == MD_ALLOW ? "allow" : "learn",
	         site->pool ? site->pool->name : "(none)");
	return site;
}

struct site *
site_get(struct mxsched *s, const struct resolve_result *res)
{
	struct site *site = smap_get(&s->sites, res->site_key);

	if (site == NULL)
		site = site_new(s, res, res->site_key, NULL);
	site_set_dest(site, res);
	site_note_domain(site, res->domain);
	return site;
}

struct site *
site_for_pool(struct site *base, const struct resolve_result *res, struct pool *p)
{
	char key[1024];
	struct site *site;

	if (p == NULL || p == base->pool)
		return base;
	snprintf(key, sizeof(key), "%s@%s", base->key, p->name);
	if ((site = smap_get(&base->s->sites, key)) == NULL)
		site = site_new(base->s, res, key, p->name);
	site_set_dest(site, res);
	site_note_domain(site, res->domain);
	return site;
}

int
site_suspended(const struct site *site, uint64_t now)
{
	return site->suspended_until != 0 && now < site->suspended_until;
}

/* ---- the ready queue ---- */

static void
mset_key(const struct site *site, const struct qmsg *m, char *buf, size_t len)
{
	snprintf(buf, len, "%s\n%s", site->key, m->idtext);
}

/* msg_add_site - remember that the message has ready recipients here */
static void
msg_add_site(struct qmsg *m, struct site *site)
{
	size_t i;

	for (i = 0; i < m->n_sites; i++)
		if (m->sites[i] == site)
			return;
	m->sites = xrealloc(m->sites, (m->n_sites + 1) * sizeof(*m->sites));
	m->sites[m->n_sites++] = site;
}

/* mset_eligible - a batch may be cut once none of the message's
 * recipients waits for DNS */
static struct mset *
mset_eligible(const struct site *site)
{
	struct mset *ms;

	TAILQ_FOREACH(ms, &site->ready, link)
		if (ms->msg->resolving == 0)
			return ms;
	return NULL;
}

void
site_enqueue(struct site *site, struct rcpt *r)
{
	struct mxsched *s = site->s;
	char key[1200];
	struct mset *ms;

	mset_key(site, r->msg, key, sizeof(key));
	if ((ms = smap_get(&s->msets, key)) == NULL) {
		ms = xcalloc(1, sizeof(*ms));
		ms->msg = r->msg;
		TAILQ_INIT(&ms->rcpts);
		ms->mapkey = xstrdup(key);
		smap_put(&s->msets, key, ms);
		TAILQ_INSERT_TAIL(&site->ready, ms, link);
		site->n_msets++;
	}
	TAILQ_INSERT_TAIL(&ms->rcpts, r, link);
	ms->n++;
	site->n_ready++;
	msg_add_site(r->msg, site);
}

/* mset_free - an emptied mset leaves the ready queue (the message stays
 * referenced by the recipients that were taken from it) */
static void
mset_free(struct site *site, struct mset *ms)
{
	smap_del(&site->s->msets, ms->mapkey);
	TAILQ_REMOVE(&site->ready, ms, link);
	site->n_msets--;
	free(ms->mapkey);
	free(ms);
}

size_t
site_msg_take(struct site *site, struct qmsg *m, const char *domain,
              struct rcpt_list *out)
{
	char key[1200];
	struct mset *ms;
	struct rcpt *r, *next;
	size_t n = 0;

	mset_key(site, m, key, sizeof(key));
	if ((ms = smap_get(&site->s->msets, key)) == NULL)
		return 0;
	for (r = TAILQ_FIRST(&ms->rcpts); r; r = next) {
		next = TAILQ_NEXT(r, link);
		if (domain && strcasecmp(domain, r->domain))
			continue;
		TAILQ_REMOVE(&ms->rcpts, r, link);
		TAILQ_INSERT_TAIL(out, r, link);
		n++;
	}
	ms->n -= n;
	site->n_ready -= n;
	if (ms->n == 0)
		mset_free(site, ms);
	return n;
}

size_t
site_msg_busy(const struct site *site, const struct qmsg *m, const char *domain)
{
	const struct sconn *sc;
	size_t n = 0;

	TAILQ_FOREACH(sc, &site->conns, link) {
		if (sc->b == NULL || sc->b->msg != m)
			continue;
		for (size_t i = 0; i < sc->b->n; i++)
			n += domain == NULL || strcasecmp(domain, sc->b->r[i]->domain) == 0;
	}
	return n;
}

/* batch_take - cut the next batch from the oldest mset: up to the site's
 * recipient limit, the first recipient's domain only unless the site
 * allows (or is still learning about) mixed domains. The mset then moves
 * to the tail, so messages (and so senders) take turns at the site. */
static struct batch *
batch_take(struct site *site)
{
	struct mset *ms = mset_eligible(site);
	struct rcpt *r, *next;
	struct batch *b;
	const char *dom;
	size_t cap;

	if (ms == NULL)
		return NULL;
	cap = site->rcpt_limit < ms->n ? site->rcpt_limit : ms->n;
	b = xcalloc(1, sizeof(*b));
	b->site = site;
	b->msg = ms->msg;
	b->r = xcalloc(cap, sizeof(*b->r));
	dom = TAILQ_FIRST(&ms->rcpts)->domain;
	/* same-domain recipients first, so a mixed batch leads with one domain */
	for (r = TAILQ_FIRST(&ms->rcpts); r && b->n < cap; r = next) {
		next = TAILQ_NEXT(r, link);
		if (strcmp(r->domain, dom) != 0)
			continue;
		TAILQ_REMOVE(&ms->rcpts, r, link);
		b->r[b->n++] = r;
	}
	for (r = TAILQ_FIRST(&ms->rcpts); site->md != MD_DENY && r && b->n < cap; r = next) {
		next = TAILQ_NEXT(r, link);
		TAILQ_REMOVE(&ms->rcpts, r, link);
		b->r[b->n++] = r;
	}
	ms->n -= b->n;
	site->n_ready -= b->n;
	if (ms->n == 0) {
		mset_free(site, ms);
	} else {
		TAILQ_REMOVE(&site->ready, ms, link);
		TAILQ_INSERT_TAIL(&site->ready, ms, link);
	}
	return b;
}

static void
batch_free(struct batch *b)
{
	if (b->body)
		queue_body_close(b->body);
	free(b->sr);
	free(b->r);
	free(b);
}

/* batch_prepare - the smtpc view of a batch; -1 if its message vanished */
static int
batch_prepare(struct batch *b)
{
	struct mxsched *s = b->site->s;
	const struct queue_envelope *env = b->msg->env;
	size_t i;

	if ((b->body = queue_body_open(s->q, b->msg->id)) == NULL)
		return -1;
	b->sr = xcalloc(b->n, sizeof(*b->sr));
	for (i = 0; i < b->n; i++) {
		b->sr[i].addr = b->r[i]->address;
		b->sr[i].notify = b->r[i]->notify; /* same bit values */
		b->sr[i].orcpt = b->r[i]->orcpt;
	}
	b->sb.id = b->msg->idtext;
	b->sb.sender = env->sender ? env->sender : "";
	b->sb.ret = env->ret == QUEUE_RET_FULL ? SMTPC_RET_FULL :
	            env->ret == QUEUE_RET_HDRS ? SMTPC_RET_HDRS : SMTPC_RET_NONE;
	b->sb.envid = env->envid;
	b->sb.need_smtputf8 = (env->flags & QUEUE_MSG_SMTPUTF8) != 0;
	b->sb.body_8bit = (env->flags & QUEUE_MSG_8BITMIME) != 0;
	b->sb.rcpts = b->sr;
	b->sb.n_rcpts = b->n;
	b->sb.body = &body_ops;
	b->sb.body_ctx = b->body;
	return 0;
}

/* batch_requeue - recipients go back to the head of the site's queue */
static void
batch_requeue(struct site *site, struct rcpt **rs, size_t n)
{
	struct mxsched *s = site->s;
	struct mset *ms;
	char key[1200];
	size_t i;

	for (i = 0; i < n; i++) {
		site_enqueue(site, rs[i]);
		mset_key(site, rs[i]->msg, key, sizeof(key));
		ms = smap_get(&s->msets, key);
		if (ms != TAILQ_FIRST(&site->ready)) {
			TAILQ_REMOVE(&site->ready, ms, link);
			TAILQ_INSERT_HEAD(&site->ready, ms, link);
		}
	}
}

/* ---- suspension ---- */

/* site_release_ready - every ready recipient back to the store, due when
 * the suspension ends, without spending an attempt */
static void
site_release_ready(struct site *site)
{
	struct mset *ms;
	struct rcpt *r;

	while ((ms = TAILQ_FIRST(&site->ready)) != NULL) {
		while ((r = TAILQ_FIRST(&ms->rcpts)) != NULL) {
			TAILQ_REMOVE(&ms->rcpts, r, link);
			ms->n--;
			site->n_ready--;
			sched_outcome(site->s, r, QUEUE_OUT_REDEFER, site->suspended_until,
			              SREPLY(.text = site->reason, .site = site));
		}
		mset_free(site, ms);
	}
}

/* site_suspend_for - suspend the site for d ms (admin or backoff) */
void
site_suspend_for(struct site *site, uint64_t d, const char *why)
{
	struct timeval tv;

	site->suspended_until = now_ms() + d;
	snprintf(site->reason, sizeof(site->reason), "site suspended: %s", why);
	site->conn_limit = 1; /* the first connection after it is the probe */
	if (site->cur_src >= 0)
		site->src[site->cur_src].aimd.conns = 1;
	log_warnx(site->key, "suspended for %llu s (level %u): %s",
	          (unsigned long long)(d / 1000), site->backoff_level, why);
	tv.tv_sec = (time_t)(d / 1000);
	tv.tv_usec = (suseconds_t)(d % 1000) * 1000;
	event_add(site->resume_timer, &tv);
	site_release_ready(site);
	/* the caller pumps the site next, which closes its idle connections */
}

/* site_suspend - stop sending to the site for an exponentially growing
 * time; its recipients wait on disk without spending retries */
static void
site_suspend(struct site *site, const char *why)
{
	const struct config *c = site->s->cfg;

	if (site_suspended(site, now_ms()))
		return;
	site->backoff_level++;
	site->s->suspensions++;
	site_suspend_for(site, mxsched_backoff_delay(c->site_backoff_ms,
	                 c->site_backoff_max_ms, site->backoff_level), why);
}

/* site_resume - end a suspension now (admin) */
void
site_resume(struct site *site)
{
	event_del(site->resume_timer);
	site->suspended_until = 0;
	site->backoff_level = 0;
	site->reason[0] = '\0';
	site->src_wait = 0;
	for (size_t i = 0; i < site->n_src; i++)
		aimd_init(&site->src[i].aimd, site->max_conns, site->max_rate,
		          (double)site->s->cfg->throttle_min_rate);
	rep_site_pick(site);
	log_info(site->key, "resumed by the operator");
}

/* site_recovered - a clean transaction: the backoff unwinds, and the
 * source's limits grow back by one step towards the shape */
static void
site_recovered(struct site *site, int src, uint64_t start_ms)
{
	site->backoff_level = 0;
	rep_clean(site, src, start_ms);
}

/* ---- results ---- */

/* rcpt_result - one recipient's fate from its transaction */
static void
rcpt_result(struct site *site, struct rcpt *r, const struct smtpc_rcpt_result *rr,
            const struct smtpc_result *res, const char *tls,
            struct rcpt **again, size_t *n_again, struct rep_verdict *v, size_t idx)
{
	struct mxsched *s = site->s;
	struct sched_reply rp = { rr->code, rr->enhanced, rr->text, site,
	                          res->mx_host, res->mx_addr, tls, NULL, 0, NULL, 0 };
	struct bounce_class c;

	switch (rr->status) {
	case SMTPC_RCPT_DELIVERED:
		site->delivered++;
		s->delivered++;
		site_hist_outcome(site, SITE_DELIVERED, &rp);
		rp.no_remote_dsn = !res->dsn;
		sched_outcome(s, r, QUEUE_OUT_DELIVERED, 0, &rp);
		return;
	case SMTPC_RCPT_RETRY_NOW:
		again[(*n_again)++] = r;
		return;
	case SMTPC_RCPT_POSSIBLY_DELIVERED:
		site->possibly_delivered++;
		break;
	default:
		break;
	}
	c = sched_classify(s, BOUNCE_PHASE_ANY, rr->code, rr->enhanced, rr->text,
	                   res->mx_host);
	rp.category = bounce_category_name(c.cat);
	if (c.sig == BOUNCE_SIG_REPUTATION || c.cat == BOUNCE_CAT_THROTTLED ||
	    c.cat == BOUNCE_CAT_BLOCKLISTED) {
		/* a block or rate limit is about us, not the address: the
		 * recipient keeps its attempts, even on a 5xx; what the site
		 * does is decided once for the transaction (rep_apply) */
		site->defer_reputation++;
		if (c.cat == BOUNCE_CAT_BLOCKLISTED)
			v->blocked = 1;
		else if (c.cat == BOUNCE_CAT_THROTTLED)
			v->throttled = 1;
		else
			v->other = 1;
		if (v->why == NULL)
			v->why = rr->text;
		v->held[v->n_held++] = idx;
		site_hist_outcome(site, SITE_DEFERRED, &rp);
		return;
	}
	if (rr->status == SMTPC_RCPT_PERMFAIL) {
		site->bounced++;
		s->bounced++;
		site_hist_outcome(site, SITE_FAILED, &rp);
		sched_outcome(s, r, QUEUE_OUT_BOUNCED, 0, &rp);
		return;
	}
	if (c.sig == BOUNCE_SIG_CONNECTION)
		site->defer_connection++;
	else
		site->defer_recipient++;
	site->deferred++;
	s->deferred++;
	site_hist_outcome(site, SITE_DEFERRED, &rp);
	sched_defer(s, r, &rp);
}

/* site_learn - what the transaction taught the site */
static void
site_learn(struct site *site, const struct smtpc_result *res, size_t n_md)
{
	if (res->learned_limit > 0 && res->learned_limit < site->rcpt_limit) {
		site->splits_452++;
		site->rcpt_limit = res->learned_limit;
		log_info(site->key, "452 after %u recipients: limit now %u",
		         res->learned_limit, site->rcpt_limit);
	}
	if (n_md > 0) {
		site->splits_md++;
		if (site->md == MD_LEARN) {
			site->md = MD_DENY;
			site->md_learned = 1;
			log_info(site->key, "multi_domain learned: deny (%s)",
			         res->rcpts[0].text[0] ? "refused a second domain" : "");
		}
	}
}

/* rep_apply - what the transaction's throttling / block replies do:
 * a block moves the site off that source (or suspends the site when it
 * has no other, or the policy is alert); a rate limit cuts the source's
 * adaptive limits (and suspends the site only when they are at their
 * floor already); any other reputation reply suspends the site. The
 * recipients concerned wait in memory for the next try, or on disk
 * without spending an attempt while the site is suspended. */
static void
rep_apply(struct site *site, struct sconn *sc, struct batch *b,
          const struct smtpc_result *res, const char *tls,
          struct rep_verdict *v, struct rcpt **again, size_t *n_again)
{
	struct mxsched *s = site->s;
	size_t i;

	if (v->blocked) {
		if (!rep_blocked(site, sc->src, v->why))
			site_suspend(site, v->why);
	} else if (v->throttled) {
		if (rep_throttled(site, sc->src, v->why))
			site_suspend(site, v->why);
	} else {
		site_suspend(site, v->why);
	}
	for (i = 0; i < v->n_held; i++) {
		const struct smtpc_rcpt_result *rr = &res->rcpts[v->held[i]];
		struct sched_reply rp = { rr->code, rr->enhanced, rr->text, site,
		                          res->mx_host, res->mx_addr, tls,
		                          v->blocked ? "blocklisted" : v->throttled ?
		                          "throttled" : NULL, 0, NULL, 0 };
		if (site_suspended(site, now_ms()))
			sched_outcome(s, b->r[v->held[i]], QUEUE_OUT_REDEFER,
			              site->suspended_until, &rp);
		else
			again[(*n_again)++] = b->r[v->held[i]];
	}
}

static void
conn_on_done(struct smtpc_conn *c, const struct smtpc_result *res, void *arg)
{
	struct sconn *sc = arg;
	struct site *site = sc->site;
	struct batch *b = sc->b;
	const char *tls = res->tls_proto && *res->tls_proto ? res->tls_proto : NULL;
	struct rcpt **again = xcalloc(b->n, sizeof(*again));
	struct rep_verdict v = { .held = xcalloc(b->n, sizeof(size_t)) };
	size_t i, n_again = 0, n_md = 0;

	(void)c;
	sc->b = NULL;
	site->txns++;
	sched_count_txn(site->s, site, b->n);
	for (i = 0; i < b->n; i++) {
		if (res->rcpts[i].status == SMTPC_RCPT_RETRY_NOW && res->rcpts[i].multi_domain)
			n_md++;
		rcpt_result(site, b->r[i], &res->rcpts[i], res, tls, again, &n_again, &v, i);
	}
	site_learn(site, res, n_md);
	if (v.n_held > 0)
		rep_apply(site, sc, b, res, tls, &v, again, &n_again);
	else if (res->n_delivered > 0)
		site_recovered(site, sc->src, b->start_ms);
	batch_requeue(site, again, n_again);
	free(v.held);
	free(again);
	batch_free(b);
	sched_flush(site->s);
	if (res->conn_usable && !sc->closing &&
	    (smtpc_conn_txn_count(sc->c) >= site->msgs_per_conn ||
	     smtpc_conn_age_ms(sc->c) >= site->conn_age_ms)) {
		sc->closing = 1;
		smtpc_conn_close(sc->c);
	}
	site_pump(site);
}

/* site_rate_wait - 1 if the adaptive rate holds batches back now; the
 * site is pumped again when a recipient may go */
static int
site_rate_wait(struct site *site, uint64_t now)
{
	uint64_t wait = tbucket_wait(&site->bucket, site_rate(site), now);
	struct timeval tv;

	if (wait == 0)
		return 0;
	if (!evtimer_pending(site->rate_timer, NULL)) {
		tv.tv_sec = (time_t)(wait / 1000);
		tv.tv_usec = (suseconds_t)(wait % 1000) * 1000;
		event_add(site->rate_timer, &tv);
	}
	return 1;
}

/* conn_send - the next batch on an idle connection; 0 if none was sent */
static int
conn_send(struct sconn *sc)
{
	struct site *site = sc->site;
	uint64_t now = now_ms();
	struct batch *b;

	if (site_rate_wait(site, now))
		return 0;
	while ((b = batch_take(site)) != NULL) {
		if (batch_prepare(b) == 0)
			break;
		/* the body cannot be read: deleted meanwhile (the store then
		 * ignores these outcomes) or a read error (try again later) */
		log_warnx(b->msg->idtext, "cannot open the body; deferring its batch");
		for (size_t i = 0; i < b->n; i++)
			sched_outcome(site->s, b->r[i], QUEUE_OUT_REDEFER, now_ms() + 60000,
			              SREPLY(.text = "message body unreadable", .site = site));
		batch_free(b);
	}
	if (b == NULL)
		return 0;
	tbucket_take(&site->bucket, site_rate(site), b->n, now);
	b->start_ms = now;
	site_count_sent(site, b->n, now);
	sc->b = b;
	if (smtpc_conn_send(sc->c, &b->sb, conn_on_done, sc) < 0) {
		sc->b = NULL;
		batch_requeue(site, b->r, b->n);
		b->n = 0;
		batch_free(b);
		return 0;
	}
	event_del(sc->idle_timer);
	return 1;
}

static void
conn_on_idle(evutil_socket_t fd, short what, void *arg)
{
	struct sconn *sc = arg;

	(void)fd;
	(void)what;
	if (sc->b == NULL && !sc->closing) {
		sc->closing = 1;
		smtpc_conn_close(sc->c);
	}
}

static void
conn_on_ready(struct smtpc_conn *c, void *arg)
{
	struct sconn *sc = arg;
	const struct smtpc_conn_info *info = smtpc_conn_info(c);

	sc->ready = 1;
	sc->site->n_connecting--;
	log_debug(sc->site->key, "connected to %s [%s]%s%s", info->mx_host,
	          info->mx_addr, info->tls_proto[0] ? " with " : "",
	          info->tls_proto);
	site_pump(sc->site);
}

/* conn_failed - a connection that never became ready: a refusing
 * greeting may be a throttle (fewer connections from that source) or a
 * block of the source (another source of the pool takes over) */
static void
conn_failed(struct site *site, int src, const struct smtpc_conn_info *info)
{
	const char *why = info->reason && *info->reason ? info->reason :
	                  smtpc_error_name(info->error);
	struct bounce_class bc = { 0 };

	site_hist_conn(site, why, info->mx_host);
	if (info->error == SMTPC_ERR_GREETING)
		bc = sched_classify(site->s, BOUNCE_PHASE_GREETING, 421, NULL, why,
		                    info->mx_host);
	if (info->error == SMTPC_ERR_GREETING && bc.cat == BOUNCE_CAT_BLOCKLISTED &&
	    rep_blocked(site, src, why))
		return; /* moved to another source, or waiting for one */
	if (info->error == SMTPC_ERR_GREETING && (bc.sig == BOUNCE_SIG_CONNECTION ||
	    bc.cat == BOUNCE_CAT_THROTTLED))
		rep_throttled(site, src, why);
	if (site->n_conns == 0)
		site_suspend(site, why); /* nothing reaches it: wait, then probe */
}

static void
conn_on_closed(struct smtpc_conn *c, void *arg)
{
	struct sconn *sc = arg;
	struct site *site = sc->site;
	const struct smtpc_conn_info *info = smtpc_conn_info(c);
	int was_ready = sc->ready;

	if (!was_ready)
		site->n_connecting--;
	else
		site_count_conn(site, smtpc_conn_txn_count(c));
	site->n_conns--;
	TAILQ_REMOVE(&site->conns, sc, link);
	if (!was_ready && !site->s->stopping && sc->src < (int)site->n_src)
		conn_failed(site, sc->src, info);
	conn_release(sc);
	sched_flush(site->s);
	site_pump(site);
}

static void
conn_release(struct sconn *sc)
{
	event_free(sc->idle_timer);
	smtpc_conn_free(sc->c);
	free(sc);
}

static void
site_conn_open(struct site *site)
{
	struct mxsched *s = site->s;
	struct smtpc_opts o = { 0 };
	struct smtpc_dest d = { .site = site->key, .mx = site->mx, .n_mx = site->n_mx };
	static const struct smtpc_conn_cbs cbs = { conn_on_ready, conn_on_closed };
	struct sconn *sc = xcalloc(1, sizeof(*sc));
	const struct srcaddr *a = site->src[site->cur_src].a;

	o.ehlo_name = a && a->ehlo ? a->ehlo : s->ehlo;
	o.source_addr = a ? a->ip : NULL;
	sc->src = site->cur_src;
	o.port = (int)s->cfg->smtp_port;
	o.tls = site->tls;
	o.tls_ctx = s->tls;
	o.timeouts.connect = s->cfg->connect_timeout_ms;
	o.timeouts.greeting = s->cfg->greeting_timeout_ms;
	o.timeouts.helo = o.timeouts.starttls = o.timeouts.mail = o.timeouts.rcpt =
		o.timeouts.rset = o.timeouts.quit = s->cfg->command_timeout_ms;
	o.timeouts.data_init = o.timeouts.data_block = s->cfg->data_timeout_ms;
	o.timeouts.data_done = s->cfg->final_timeout_ms;
	o.max_addresses = (unsigned)s->cfg->max_mx_addresses;
	o.allow_private = s->allow_private;
	sc->site = site;
	sc->idle_timer = event_new(s->base, -1, 0, conn_on_idle, sc);
	TAILQ_INSERT_TAIL(&site->conns, sc, link);
	site->n_conns++;
	site->n_connecting++;
	site->conns_opened++;
	s->conns_opened++;
	sc->c = smtpc_conn_new(s->base, &o, &d, &cbs, sc);
}

/* batches_ready - a lower bound on the batches that could be cut now */
static size_t
batches_ready(const struct site *site)
{
	size_t per = site->rcpt_limit ? site->rcpt_limit : 1, n = 0;
	const struct mset *ms;

	TAILQ_FOREACH(ms, &site->ready, link)
		if (ms->msg->resolving == 0)
			n += (ms->n + per - 1) / per;
	return n;
}

/* site_idle_close - whether an idle ready connection should go now */
static int
site_idle_close(const struct site *site, const struct sconn *sc, int suspended,
                unsigned *excess)
{
	if (site->s->stopping || suspended || site->idle_ms == 0 ||
	    sc->src != site->cur_src)
		return 1;
	if (*excess > 0) {          /* above an adaptive limit just cut */
		(*excess)--;
		return 1;
	}
	return 0;
}

/* site_pump - send ready batches on idle connections of the source in
 * use; open connections on demand, never more than batches waiting nor
 * than the adaptive limit, and only while the rate lets a batch go */
void
site_pump(struct site *site)
{
	struct sconn *sc;
	struct timeval tv;
	unsigned busy = 0, excess;
	int suspended = site_suspended(site, now_ms());

	if (!suspended && site->n_ready > 0 && rep_site_pick(site) < 0) {
		rep_site_none(site); /* every source blocked: the site waits */
		suspended = site_suspended(site, now_ms());
	}
	TAILQ_FOREACH(sc, &site->conns, link)
		busy += sc->b != NULL;
	TAILQ_FOREACH(sc, &site->conns, link) {
		if (site->n_ready == 0 || busy >= site->conn_limit)
			break;
		if (sc->ready && !sc->closing && sc->b == NULL && sc->src == site->cur_src)
			busy += conn_send(sc);
	}
	while (site->n_ready > 0 && !site->s->stopping && !suspended &&
	       site->cur_src >= 0 && site->n_conns < site->conn_limit &&
	       site->n_connecting < batches_ready(site) &&
	       !site_rate_wait(site, now_ms()))
		site_conn_open(site);
	excess = site->n_conns > site->conn_limit ? site->n_conns - site->conn_limit : 0;
	TAILQ_FOREACH(sc, &site->conns, link) {
		if (sc->ready && !sc->closing && sc->b == NULL &&
		    (!evtimer_pending(sc->idle_timer, NULL) || sc->src != site->cur_src ||
		     excess > 0)) {
			if (site_idle_close(site, sc, suspended, &excess)) {
				sc->closing = 1;
				smtpc_conn_close(sc->c);
				continue;
			}
			if (evtimer_pending(sc->idle_timer, NULL))
				continue;
			tv.tv_sec = (time_t)(site->idle_ms / 1000);
			tv.tv_usec = (suseconds_t)(site->idle_ms % 1000) * 1000;
			event_add(sc->idle_timer, &tv);
		}
	}
}

int
site_busy(const struct site *site)
{
	const struct sconn *sc;

	TAILQ_FOREACH(sc, &site->conns, link)
		if (sc->b != NULL)
			return 1;
	return 0;
}

void
site_stop(struct site *site)
{
	struct sconn *sc;

	TAILQ_FOREACH(sc, &site->conns, link)
		if (!sc->closing && sc->b == NULL && sc->ready) {
			sc->closing = 1;
			smtpc_conn_close(sc->c);
		}
}

void
site_free(struct site *site)
{
	struct sconn *sc;
	struct mset *ms;
	struct rcpt *r;

	while ((sc = TAILQ_FIRST(&site->conns)) != NULL) {
		TAILQ_REMOVE(&site->conns, sc, link);
		if (sc->b) {
			for (size_t i = 0; i < sc->b->n; i++)
				sched_rcpt_free(site->s, sc->b->r[i]);
			batch_free(sc->b);
		}
		conn_release(sc);
	}
	while ((ms = TAILQ_FIRST(&site->ready)) != NULL) {
		while ((r = TAILQ_FIRST(&ms->rcpts)) != NULL) {
			TAILQ_REMOVE(&ms->rcpts, r, link);
			sched_rcpt_free(site->s, r);
		}
		mset_free(site, ms);
	}
	event_free(site->resume_timer);
	event_free(site->rate_timer);
	rep_site_free(site);
	site_hist_free(site);
	site_mx_free(site);
	free(site->provider);
	free(site->key);
	free(site);
}
