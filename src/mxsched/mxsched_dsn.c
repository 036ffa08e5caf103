/*
 * mxsched_dsn.c - one DSN per message per round and kind of report
 * (failed; delayed: a delay warning; relayed: NOTIFY=SUCCESS delivered to
 * a server without DSN). The outcomes of one message that the sender
 * asked to hear about (src/bounce's policy: never to the null sender,
 * NOTIFY respected) are collected while
 * a round's outcomes are gathered; at the flush the DSN (RFC 3464, built
 * by src/bounce, the original streamed from the store) is queued as a new
 * message from <> in the same store batch as the recipients' outcomes
 * (queue_msg_commit_with): both are durable or neither, so a crash can
 * neither lose nor repeat a DSN. If the DSN cannot be built or is refused,
 * the outcomes are written alone (logged: the DSN is dropped).
 * Runs on the loop thread.
 */
#include "mxsched/mxsched_internal.h"

#include <stdlib.h>
#include <string.h>

struct dsn_job {
	struct mxsched *s;
	struct qmsg *msg;               /* held until the job ends */
	enum bounce_action action;      /* failed, delayed or relayed */
	struct bounce_dsn_rcpt *r;
	size_t n, cap;
	struct pending_out *out;        /* the reported recipients' outcomes */
};

static void
job_free(struct dsn_job *j)
{
	sched_msg_unref(j->s, j->msg);
	free(j->r);
	free(j);
}

/* job_get - this round's DSN job of r's message for this kind of report,
 * or NULL if none is due */
static struct dsn_job *
job_get(struct mxsched *s, struct rcpt *r, enum bounce_action action)
{
	const struct queue_envelope *env = r->msg->env;
	char key[QUEUE_ID_TEXT_LEN + 4];
	struct dsn_job *j;

	/* delay warnings are sent at all only when configured: then also
	 * to recipients that gave no NOTIFY (like Postfix) */
	if ((env->flags & QUEUE_MSG_DSN) ||
	    !bounce_should_dsn(env->sender, r->notify, action, 1))
		return NULL;
	snprintf(key, sizeof(key), "%s:%d", r->msg->idtext, (int)action);
	if ((j = smap_get(&s->dsn_jobs, key)) != NULL)
		return j;
	j = xcalloc(1, sizeof(*j));
	j->s = s;
	j->msg = r->msg;
	j->msg->refs++;
	j->action = action;
	j->out = sched_out_new(s);
	smap_put(&s->dsn_jobs, key, j);
	return j;
}

/* status_of - the RFC 3463 status a DSN reports for this outcome */
static const char *
status_of(enum bounce_action action, enum queue_outcome_kind kind,
          const struct sched_reply *rp)
{
	char want = action == BOUNCE_ACTION_FAILED ? '5' :
	            action == BOUNCE_ACTION_DELAYED ? '4' : '2';

	if (kind == QUEUE_OUT_EXPIRED)
		return "4.4.7";
	if (rp->enhanced && rp->enhanced[0] == want)
		return rp->enhanced;
	return want == '5' ? "5.0.0" : want == '4' ? "4.0.0" : "2.0.0";
}

/* text_of - the diagnostic text when the outcome has no reply text */
static const char *
text_of(enum bounce_action action, enum queue_outcome_kind kind,
        const struct sched_reply *rp)
{
	if (rp->text)
		return rp->text;
	if (kind == QUEUE_OUT_EXPIRED)
		return "queue lifetime exceeded";
	return action == BOUNCE_ACTION_DELAYED ? "delivery delayed" : NULL;
}

struct pending_out *
dsn_job_add(struct mxsched *s, struct rcpt *r, enum bounce_action action,
            enum queue_outcome_kind kind, const struct sched_reply *rp)
{
	struct dsn_job *j = job_get(s, r, action);
	struct bounce_dsn_rcpt *d;

	if (j == NULL)
		return NULL;
	if (j->n == j->cap) {
		j->cap = j->cap ? j->cap * 2 : 8;
		j->r = xrealloc(j->r, j->cap * sizeof(*j->r));
	}
	d = &j->r[j->n++];
	memset(d, 0, sizeof(*d));
	d->address = sched_out_str(j->out, r->address);
	d->orcpt = sched_out_str(j->out, r->orcpt);
	d->action = action;
	d->status = sched_out_str(j->out, status_of(action, kind, rp));
	d->remote_mta = sched_out_str(j->out, rp->mx_host);
	d->code = rp->code;
	d->enhanced = sched_out_str(j->out, rp->enhanced);
	d->text = sched_out_str(j->out, text_of(action, kind, rp));
	d->last_attempt_ms = now_ms();
	if (action == BOUNCE_ACTION_DELAYED)
		d->retry_until_ms = r->msg->env->submit_ms + s->cfg->queue_lifetime_ms;
	return j->out;
}

static long
dsn_read(void *arg, void *buf, size_t len)
{
	return queue_body_read(arg, buf, len);
}

static int
dsn_write(void *arg, const void *buf, size_t len)
{
	return queue_msg_write(arg, buf, len);
}

/* job_log - the DSN line of the delivery log */
static void
job_log(struct dsn_job *j, queue_msgid dsn_id)
{
	char idtext[QUEUE_ID_TEXT_LEN], line[1024];
	int n;

	queue_id_to_text(dsn_id, idtext);
	n = snprintf(line, sizeof(line),
	             "{\"time\":%.3f,\"event\":\"DSN\",\"id\":\"%s\",\"dsn_id\":\"%s\","
	             "\"action\":\"%s\",\"recipients\":%zu}\n", (double)now_ms() / 1000.0,
	             j->msg->idtext, idtext, bounce_action_name(j->action), j->n);
	if (n > 0 && (size_t)n < sizeof(line))
		dlog_append(line, (size_t)n);
}

/* job_alone - the DSN was dropped: its outcomes stand without it, and a
 * delay warning that was not sent is not remembered as sent */
static void
job_alone(struct dsn_job *j)
{
	sched_out_unwarn(j->out);
	sched_out_submit(j->out);
}

static void
job_on_committed(void *arg, enum queue_status st, queue_msgid id)
{
	struct dsn_job *j = arg;
	struct mxsched *s = j->s;

	if (s->dead) {
		sched_out_free(j->out);
		job_free(j);
		sched_callback_done(s);
		return;
	}
	s->busy_writes--;
	if (st == QUEUE_OK) {
		s->dsns++;
		log_info(j->msg->idtext, "DSN %016llx (%s) queued for %zu recipient(s) to <%s>",
		         (unsigned long long)id, bounce_action_name(j->action), j->n,
		         j->msg->env->sender);
		job_log(j, id); /* before its outcomes' lines: a reader that
		                 * sees an outcome sees its DSN */
		sched_out_written(j->out); /* written with the DSN */
	} else {
		log_warnx(j->msg->idtext, "DSN for %zu recipient(s) not queued: %s",
		          j->n, queue_status_to_text(st));
		job_alone(j);
	}
	job_free(j);
}

/* job_compose - write the DSN into a new message; NULL on failure */
static struct queue_writer *
job_compose(struct dsn_job *j)
{
	const struct queue_envelope *env = j->msg->env;
	struct mxsched *s = j->s;
	struct queue_envelope denv = { .sender = "", .listener = "dsn",
	    .tenant = env->tenant,
	    .flags = QUEUE_MSG_DSN | (env->flags & QUEUE_MSG_8BITMIME) };
	struct queue_body *body = queue_body_open(s->q, j->msg->id);
	struct bounce_dsn d = {
		.reporting_mta = s->ehlo, .sender = env->sender, .envid = env->envid,
		.ret = (enum bounce_ret)env->ret, .arrival_ms = env->submit_ms,
		.queue_id = j->msg->idtext, .rcpts = j->r, .n_rcpts = j->n,
		.read = dsn_read, .read_arg = body,
		.original_size = body ? queue_body_size(body) : 0,
		.max_return = s->cfg->bounce_return_limit,
	};
	struct queue_rcpt_in rin = { .address = env->sender,
	                             .notify = QUEUE_NOTIFY_NEVER };
	struct queue_writer *w = queue_msg_begin(s->q, &denv);
	enum bounce_dsn_status st;

	if (body == NULL)
		d.ret = BOUNCE_RET_UNSET; /* nothing left to return */
	st = bounce_dsn_write(&d, dsn_write, w, NULL);
	queue_body_close(body);
	if (st != BOUNCE_DSN_OK || queue_msg_add_rcpt(w, &rin) < 0) {
		log_warnx(j->msg->idtext, "cannot build the DSN: %s",
		          bounce_dsn_status_text(st));
		queue_msg_abort(w);
		return NULL;
	}
	return w;
}

static void
job_run(void *val, void *arg)
{
	struct dsn_job *j = val;
	const struct queue_outcome *o;
	struct queue_writer *w;
	size_t n;

	(void)arg;
	if ((w = job_compose(j)) == NULL) {
		job_alone(j);
		job_free(j);
		return;
	}
	o = sched_out_list(j->out, &n);
	j->s->busy_writes++;
	queue_msg_commit_with(w, o, n, job_on_committed, j);
}

static void
job_drop(void *val)
{
	struct dsn_job *j = val;

	sched_out_free(j->out);
	job_free(j);
}

void
dsn_jobs_drop(struct mxsched *s)
{
	smap_clear(&s->dsn_jobs, job_drop);
}

void
dsn_jobs_run(struct mxsched *s)
{
	if (s->dsn_jobs.n == 0)
		return;
	smap_each(&s->dsn_jobs, job_run, NULL);
	smap_clear(&s->dsn_jobs, NULL);
	smap_init(&s->dsn_jobs);
}
