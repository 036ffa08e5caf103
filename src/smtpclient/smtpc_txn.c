/*
 * smtpc_txn.c - one SMTP transaction on a ready session: RSET (after a
 * failed one), MAIL, the RCPTs, DATA or BDAT with the streamed body, and
 * the mapping of every reply onto the batch's per-recipient result array,
 * which is the single source of truth handed to the done() callback.
 *
 * With PIPELINING, MAIL, every RCPT and DATA (or BDAT LAST with a small
 * body) go out in one write; "sent" (rcpt_next) and "answered" (rcpt_ans)
 * cursors match replies to recipients (RFC 2920). A recipient is delivered
 * only when the transaction's final reply is 2xx; a connection lost after
 * the final dot leaves the accepted ones "possibly delivered".
 * Runs on the delivery loop thread, inside the session's callbacks.
 */
#include "smtpclient/smtpc_internal.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void txn_finish(struct smtpc_conn *c);

int
smtpc_addr_valid(const char *addr, int utf8_ok)
{
	size_t len = strlen(addr);

	if (len > 320)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)addr[i];
		if (ch < 0x20 || ch == 0x7f || ch == '<' || ch == '>')
			return 0;
		if (ch == ' ' && addr[0] != '"')
			return 0;
		if (ch >= 0x80 && !utf8_ok)
			return 0;
	}
	return 1;
}

/* xtext_ok - may s go on the wire as an ENVID/ORCPT value? */
static int
xtext_ok(const char *s)
{
	if (s == NULL || *s == '\0' || strlen(s) > 500)
		return 0;
	for (; *s; s++)
		if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
			return 0;
	return 1;
}

static const char *
domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at ? at + 1 : "";
}

/* set_rcpt - record a final result for recipient i */
static void
set_rcpt(struct smtpc_txn *t, size_t i, enum smtpc_rcpt_status st, int code,
         const char *enh, const char *text)
{
	struct smtpc_rcpt_result *rr = &t->res.rcpts[i];
	size_t n = 0;

	rr->status = st;
	rr->code = code;
	snprintf(rr->enhanced, sizeof(rr->enhanced), "%s", enh ? enh : "");
	rr->text[0] = '\0';
	smtpc_text_append(rr->text, sizeof(rr->text), &n, text, strlen(text));
	t->rs[i] = SMTPC_RS_DONE;
}

/* class_status - 4xx temporary, 5xx permanent, anything else temporary */
static enum smtpc_rcpt_status
class_status(int code)
{
	return code / 100 == 5 ? SMTPC_RCPT_PERMFAIL : SMTPC_RCPT_TEMPFAIL;
}

/* fill - every recipient in rs state `which` gets the reply r */
static void
fill(struct smtpc_txn *t, int which, enum smtpc_rcpt_status st,
     const struct smtpc_reply *r)
{
	for (size_t i = 0; i < t->res.n_rcpts; i++)
		if (t->rs[i] == which || (which < 0 && t->rs[i] != SMTPC_RS_DONE))
			set_rcpt(t, i, st, r->code, r->enhanced, r->text);
}

/* ---- starting ---- */

/* precheck - decide what can be decided before sending; 1 = all decided */
static int
precheck(struct smtpc_conn *c, struct smtpc_txn *t)
{
	const struct smtpc_batch *b = t->batch;
	size_t left = 0;
	char txt[160];

	if (b->need_smtputf8 && !c->caps.smtputf8) {
		for (size_t i = 0; i < b->n_rcpts; i++)
			set_rcpt(t, i, SMTPC_RCPT_PERMFAIL, 0, "5.6.7",
			         "SMTPUTF8 is required, but was not offered by the host");
		return 1;
	}
	if (c->caps.size > 0 && t->body_size > c->caps.size) {
		snprintf(txt, sizeof(txt), "message size %llu exceeds size limit "
		         "%llu of the host", (unsigned long long)t->body_size,
		         (unsigned long long)c->caps.size);
		for (size_t i = 0; i < b->n_rcpts; i++)
			set_rcpt(t, i, SMTPC_RCPT_PERMFAIL, 0, "5.3.4", txt);
		return 1;
	}
	if (!smtpc_addr_valid(b->sender, b->need_smtputf8)) {
		for (size_t i = 0; i < b->n_rcpts; i++)
			set_rcpt(t, i, SMTPC_RCPT_PERMFAIL, 0, "5.1.7",
			         "invalid envelope sender address");
		return 1;
	}
	for (size_t i = 0; i < b->n_rcpts; i++) {
		const char *a = b->rcpts[i].addr;
		if (a == NULL || *a == '\0' || !smtpc_addr_valid(a, b->need_smtputf8))
			set_rcpt(t, i, SMTPC_RCPT_PERMFAIL, 0, "5.1.3",
			         "invalid recipient address");
		else if (left++ == 0)
			t->first_domain = domain_of(a);
	}
	return left == 0;
}

static struct smtpc_txn *
txn_new(struct smtpc_conn *c, const struct smtpc_batch *b, smtpc_done_cb done,
        void *arg)
{
	struct smtpc_txn *t = xcalloc(1, sizeof(*t));

	t->batch = b;
	t->done = done;
	t->arg = arg;
	t->res.batch = b;
	t->res.n_rcpts = b->n_rcpts;
	t->res.rcpts = xcalloc(b->n_rcpts, sizeof(*t->res.rcpts));
	t->rs = xcalloc(b->n_rcpts, 1);
	t->res.reason = "";
	t->body_size = b->body->size(b->body_ctx);
	if (c->rbuf == NULL) {
		c->rbuf = xmalloc(SMTPC_CHUNK);
		c->sbuf = xmalloc(2 * SMTPC_CHUNK + 16);
	}
	return t;
}

void
smtpc_txn_free(struct smtpc_txn *t)
{
	if (t == NULL)
		return;
	free(t->res.rcpts);
	free(t->rs);
	free(t);
}

int
smtpc_conn_send(struct smtpc_conn *c, const struct smtpc_batch *b,
                smtpc_done_cb done, void *arg)
{
	struct smtpc_txn *t;

	if (c == NULL || b == NULL || !smtpc_conn_is_idle(c) ||
	    b->n_rcpts == 0 || b->rcpts == NULL || b->sender == NULL ||
	    b->body == NULL || b->body->read == NULL ||
	    b->body->rewind == NULL || b->body->size == NULL)
		return -1;
	t = txn_new(c, b, done, arg);
	c->txn = t;
	if (b->body->rewind(b->body_ctx) < 0) {
		for (size_t i = 0; i < b->n_rcpts; i++)
			set_rcpt(t, i, SMTPC_RCPT_TEMPFAIL, 0, "4.3.0",
			         "cannot read the message body");
		t->finished = 1;
	} else
		t->finished = precheck(c, t);
	if (t->finished) {
		smtpc_session_defer(c);   /* done() from the loop, never from here */
		return 0;
	}
	smtpc_dot_init(&t->dot, !c->chunking);
	t->bdat = c->chunking;
	smtpc_enter_state(c, c->need_rset ? SMTPC_S_RSET : SMTPC_S_MAIL);
	return 0;
}

void
smtpc_txn_on_deferred(struct smtpc_conn *c)
{
	if (c->txn->finished && c->state == SMTPC_S_READY)
		txn_finish(c);
}

/* ---- sending ---- */

static void
send_mail(struct smtpc_conn *c, struct smtpc_txn *t)
{
	const struct smtpc_batch *b = t->batch;
	struct evbuffer *out = smtpc_session_output(c);

	evbuffer_add_printf(out, "MAIL FROM:<%s>", b->sender);
	if (c->caps.size > 0)
		evbuffer_add_printf(out, " SIZE=%llu",
		                    (unsigned long long)t->body_size);
	if (b->body_8bit && c->caps.eightbitmime)
		evbuffer_add_printf(out, " BODY=8BITMIME");
	if (b->need_smtputf8)
		evbuffer_add_printf(out, " SMTPUTF8");
	if (c->caps.dsn && b->ret != SMTPC_RET_NONE)
		evbuffer_add_printf(out, " RET=%s",
		                    b->ret == SMTPC_RET_FULL ? "FULL" : "HDRS");
	if (c->caps.dsn && xtext_ok(b->envid))
		evbuffer_add_printf(out, " ENVID=%s", b->envid);
	smtpc_session_write(c, "\r\n");
	t->mail_sent = 1;
}

/* notify_text - NOTIFY bits as "SUCCESS,FAILURE" (NEVER alone) */
static const char *
notify_text(unsigned n, char *buf)
{
	buf[0] = '\0';
	if (n & SMTPC_NOTIFY_NEVER)
		return strcpy(buf, "NEVER");
	if (n & SMTPC_NOTIFY_SUCCESS)
		strcat(buf, "SUCCESS,");
	if (n & SMTPC_NOTIFY_FAILURE)
		strcat(buf, "FAILURE,");
	if (n & SMTPC_NOTIFY_DELAY)
		strcat(buf, "DELAY,");
	if (buf[0] == '\0')
		return strcpy(buf, "NEVER");
	buf[strlen(buf) - 1] = '\0';
	return buf;
}

/* send_rcpt - send the next unsent recipient; 0 when none is left */
static int
send_rcpt(struct smtpc_conn *c, struct smtpc_txn *t)
{
	struct evbuffer *out = smtpc_session_output(c);
	const struct smtpc_rcpt *r;
	size_t i = t->rcpt_next;

	while (i < t->res.n_rcpts && t->rs[i] != SMTPC_RS_UNSENT)
		i++;
	if (i >= t->res.n_rcpts)
		return 0;
	r = &t->batch->rcpts[i];
	evbuffer_add_printf(out, "RCPT TO:<%s>", r->addr);
	if (c->caps.dsn && r->notify != 0) {
		char nb[40];
		evbuffer_add_printf(out, " NOTIFY=%s", notify_text(r->notify, nb));
	}
	if (c->caps.dsn && xtext_ok(r->orcpt))
		evbuffer_add_printf(out, " ORCPT=%s", r->orcpt);
	smtpc_session_write(c, "\r\n");
	t->rs[i] = SMTPC_RS_SENT;
	t->n_sent++;
	t->rcpt_next = i + 1;
	return 1;
}

/* send_group - MAIL, then with PIPELINING every RCPT and DATA/BDAT */
static void
send_group(struct smtpc_conn *c, struct smtpc_txn *t)
{
	send_mail(c, t);
	if (!c->pipelining)
		return;
	while (send_rcpt(c, t))
		;
	if (!t->bdat) {
		smtpc_session_write(c, "DATA\r\n");
		t->data_sent = 1;
	} else if (t->body_size <= SMTPC_BDAT_INLINE_MAX &&
	           smtpc_txn_bdat_inline(c, t) < 0)
		smtpc_session_fail(c, SMTPC_ERR_BODY, "cannot read the message body");
}

void
smtpc_txn_send_state(struct smtpc_conn *c)
{
	struct smtpc_txn *t = c->txn;

	switch (c->state) {
	case SMTPC_S_RSET:
		smtpc_session_write(c, "RSET\r\n");
		t->rset_sent = 1;
		if (c->pipelining)
			send_group(c, t);
		break;
	case SMTPC_S_MAIL:
		if (!t->mail_sent)
			send_group(c, t);
		break;
	case SMTPC_S_RCPT:
		if (!c->pipelining && t->n_sent == t->n_answered)
			send_rcpt(c, t);
		break;
	case SMTPC_S_DATA:
		if (!t->data_sent) {
			smtpc_session_write(c, "DATA\r\n");
			t->data_sent = 1;
		}
		break;
	case SMTPC_S_BODY:
		smtpc_txn_pump(c);
		break;
	default:
		break;
	}
}

/* ---- replies ---- */

/* is_452 - "too many recipients": 452 (unless its enhanced code says
 * something else, e.g. 4.2.2 mailbox full), or 552 with 5.5.3 or the word */
static int
is_452(const struct smtpc_reply *r)
{
	if (r->code == 452)
		return r->enhanced[0] == '\0' || strcmp(r->enhanced, "4.5.3") == 0 ||
		       strcasestr(r->text, "recipients") != NULL;
	return r->code == 552 && (strcmp(r->enhanced, "5.5.3") == 0 ||
	                          strcasestr(r->text, "recipients") != NULL);
}

/* after_rcpts - every RCPT reply is in: what comes next */
static void
after_rcpts(struct smtpc_conn *c, struct smtpc_txn *t)
{
	if (t->data_sent)
		smtpc_enter_state(c, SMTPC_S_DATA);
	else if (t->bdat_inline)
		smtpc_enter_state(c, SMTPC_S_EOM);
	else if (t->mail_failed || t->n_accepted == 0) {
		c->need_rset = 1;
		txn_finish(c);
	} else
		smtpc_enter_state(c, t->bdat ? SMTPC_S_BODY : SMTPC_S_DATA);
}

/* rcpt_refused - map a non-2xx RCPT reply for recipient i */
static void
rcpt_refused(struct smtpc_conn *c, struct smtpc_txn *t, size_t i,
             const struct smtpc_reply *r)
{
	const char *dom = domain_of(t->batch->rcpts[i].addr);

	if (is_452(r) && t->n_accepted > 0) {
		if (t->res.learned_limit == 0)
			t->res.learned_limit = (unsigned)t->n_accepted;
		set_rcpt(t, i, SMTPC_RCPT_RETRY_NOW, r->code, r->enhanced, r->text);
		if (!c->pipelining)        /* the rest would get the same */
			for (size_t j = i + 1; j < t->res.n_rcpts; j++)
				if (t->rs[j] == SMTPC_RS_UNSENT)
					set_rcpt(t, j, SMTPC_RCPT_RETRY_NOW, r->code,
					         r->enhanced, r->text);
	} else if ((r->code / 100 == 4 || r->code / 100 == 5) &&
	           (strcasecmp(dom, t->first_domain) != 0 ||
	            (t->acc_domain && strcasecmp(dom, t->acc_domain) != 0))) {
		/* an extra domain's refusal is never final: alone it may pass */
		set_rcpt(t, i, SMTPC_RCPT_RETRY_NOW, r->code, r->enhanced, r->text);
		t->res.rcpts[i].multi_domain = 1;
	} else
		set_rcpt(t, i, is_452(r) ? SMTPC_RCPT_TEMPFAIL : class_status(r->code),
		         r->code, r->enhanced, r->text);
}

static void
on_rcpt_reply(struct smtpc_conn *c, struct smtpc_txn *t,
              const struct smtpc_reply *r)
{
	size_t i = t->rcpt_ans;

	while (i < t->res.n_rcpts && t->rs[i] != SMTPC_RS_SENT)
		i++;
	if (i >= t->res.n_rcpts) {
		smtpc_session_fail(c, SMTPC_ERR_PROTOCOL, "reply without RCPT");
		return;
	}
	t->rcpt_ans = i + 1;
	t->n_answered++;
	if (t->mail_failed)
		set_rcpt(t, i, class_status(t->fail_code), t->fail_code,
		         t->fail_enh, t->fail_text);
	else if (r->code / 100 == 2) {
		t->rs[i] = SMTPC_RS_ACCEPTED;
		if (t->n_accepted++ == 0)
			t->acc_domain = domain_of(t->batch->rcpts[i].addr);
	} else
		rcpt_refused(c, t, i, r);
	if (t->n_answered < t->n_sent)
		smtpc_enter_state(c, SMTPC_S_RCPT);     /* pipelined: more due */
	else if (!c->pipelining && !t->mail_failed && t->rcpt_next < t->res.n_rcpts &&
	         memchr(t->rs + t->rcpt_next, SMTPC_RS_UNSENT,
	                t->res.n_rcpts - t->rcpt_next) != NULL)
		smtpc_enter_state(c, SMTPC_S_RCPT);     /* sends the next one */
	else
		after_rcpts(c, t);
}

static void
on_mail_reply(struct smtpc_conn *c, struct smtpc_txn *t,
              const struct smtpc_reply *r)
{
	if (r->code / 100 != 2) {
		t->mail_failed = 1;
		t->fail_code = r->code;
		memcpy(t->fail_enh, r->enhanced, sizeof(t->fail_enh));
		memcpy(t->fail_text, r->text, sizeof(t->fail_text));
		for (size_t i = 0; i < t->res.n_rcpts; i++)
			if (t->rs[i] == SMTPC_RS_UNSENT)
				set_rcpt(t, i, class_status(r->code), r->code,
				         r->enhanced, r->text);
	}
	if (t->n_sent > 0)
		smtpc_enter_state(c, SMTPC_S_RCPT);
	else if (t->mail_failed && !t->data_sent && !t->bdat_inline) {
		c->need_rset = 1;
		txn_finish(c);
	} else
		smtpc_enter_state(c, SMTPC_S_RCPT);
}

static void
on_data_reply(struct smtpc_conn *c, struct smtpc_txn *t,
              const struct smtpc_reply *r)
{
	if (r->code == 354 && (t->mail_failed || t->n_accepted == 0)) {
		smtpc_session_write(c, ".\r\n");   /* RFC 2920: end it empty */
		t->dummy_dot = 1;
		smtpc_enter_state(c, SMTPC_S_EOM);
	} else if (r->code == 354)
		smtpc_enter_state(c, SMTPC_S_BODY);
	else if (r->code / 100 == 2 && t->n_accepted > 0) {
		fill(t, SMTPC_RS_ACCEPTED, SMTPC_RCPT_TEMPFAIL, r);
		smtpc_session_fail(c, SMTPC_ERR_PROTOCOL,
		                   "DATA answered with %d instead of 354", r->code);
	} else {
		if (!t->mail_failed)
			fill(t, SMTPC_RS_ACCEPTED, class_status(r->code), r);
		c->need_rset = 1;
		txn_finish(c);
	}
}

/* on_final_reply - reply to the final dot / BDAT LAST */
static void
on_final_reply(struct smtpc_conn *c, struct smtpc_txn *t,
               const struct smtpc_reply *r)
{
	if (r->code / 100 == 2)
		fill(t, SMTPC_RS_ACCEPTED, SMTPC_RCPT_DELIVERED, r);
	else {
		fill(t, SMTPC_RS_ACCEPTED, class_status(r->code), r);
		c->need_rset = 1;
	}
	txn_finish(c);
}

/* on_body_reply - a reply while the body streams: a BDAT chunk's, or an
 * early DATA refusal */
static void
on_body_reply(struct smtpc_conn *c, struct smtpc_txn *t,
              const struct smtpc_reply *r)
{
	if (t->bdat && t->bdat_outstanding > 0 && r->code / 100 == 2) {
		t->bdat_outstanding--;
		if (c->state == SMTPC_S_BODY)
			smtpc_txn_pump(c);
		return;
	}
	fill(t, SMTPC_RS_ACCEPTED, r->code / 100 == 5 ? SMTPC_RCPT_PERMFAIL :
	     SMTPC_RCPT_TEMPFAIL, r);
	smtpc_session_fail(c, SMTPC_ERR_PROTOCOL, "%d reply %s",
	                   r->code, t->bdat ? "to a BDAT chunk" :
	                   "before the end of the data");
}

void
smtpc_txn_on_reply(struct smtpc_conn *c, const struct smtpc_reply *r)
{
	struct smtpc_txn *t = c->txn;

	if (r->code == 421) {              /* the server is going away */
		fill(t, -1, SMTPC_RCPT_TEMPFAIL, r);
		smtpc_session_fail(c, SMTPC_ERR_SHUTDOWN, "server closing: %d %s %s",
		                   r->code, r->enhanced, r->text);
		return;
	}
	switch (c->state) {
	case SMTPC_S_RSET:
		if (r->code / 100 != 2) {
			smtpc_session_fail(c, SMTPC_ERR_PROTOCOL, "RSET refused: %d %s",
			                   r->code, r->text);
			return;
		}
		c->need_rset = 0;
		smtpc_enter_state(c, SMTPC_S_MAIL);
		break;
	case SMTPC_S_MAIL: on_mail_reply(c, t, r); break;
	case SMTPC_S_RCPT: on_rcpt_reply(c, t, r); break;
	case SMTPC_S_DATA: on_data_reply(c, t, r); break;
	case SMTPC_S_BODY: on_body_reply(c, t, r); break;
	case SMTPC_S_EOM:
		if (t->bdat_outstanding > 0)     /* an earlier chunk's reply */
			on_body_reply(c, t, r);
		else if (t->dummy_dot || t->mail_failed || t->n_accepted == 0) {
			c->need_rset = 1;
			txn_finish(c);
		} else
			on_final_reply(c, t, r);
		break;
	default:
		break;
	}
}

/* ---- the end of a transaction ---- */

/* settle - count results; anything undecided becomes st with reason */
static void
settle(struct smtpc_conn *c, struct smtpc_txn *t, const char *reason)
{
	struct smtpc_result *res = &t->res;
	int flushed = c->bev == NULL ||
	              evbuffer_get_length(smtpc_session_output(c)) == 0;

	for (size_t i = 0; i < res->n_rcpts; i++) {
		if (t->rs[i] == SMTPC_RS_ACCEPTED && c->state == SMTPC_S_EOM &&
		    !t->dummy_dot && t->last_sent && flushed) {
			char txt[SMTPC_TEXT_MAX];
			snprintf(txt, sizeof(txt), "connection lost after the end of "
			         "data, may have been delivered: %s", reason);
			set_rcpt(t, i, SMTPC_RCPT_POSSIBLY_DELIVERED, 0, "4.4.2", txt);
		} else if (t->rs[i] != SMTPC_RS_DONE)
			set_rcpt(t, i, SMTPC_RCPT_TEMPFAIL, 0, "4.4.2", reason);
		switch (res->rcpts[i].status) {
		case SMTPC_RCPT_DELIVERED: res->n_delivered++; break;
		case SMTPC_RCPT_PERMFAIL: res->n_permfail++; break;
		case SMTPC_RCPT_POSSIBLY_DELIVERED: res->n_possibly++; break;
		case SMTPC_RCPT_RETRY_NOW: res->n_retry_now++; break;
		default: res->n_tempfail++; break;
		}
	}
	res->mx_host = c->cur_mx ? c->cur_mx : "";
	res->mx_addr = c->cur_addr;
	res->tls_proto = c->tls_proto;
	res->tls_cipher = c->tls_cipher;
	res->dsn = c->caps.dsn;
}

/* deliver_result - log, hand the result to the owner, free */
static void
deliver_result(struct smtpc_conn *c, struct smtpc_txn *t)
{
	const struct smtpc_result *res = &t->res;

	log_debug(c->sid, "%s[%s]: %s: %zu delivered, %zu temp, %zu perm, "
	          "%zu possibly delivered, %zu retry-now%s%s",
	          res->mx_host, res->mx_addr, t->batch->id ? t->batch->id : "-",
	          res->n_delivered, res->n_tempfail, res->n_permfail,
	          res->n_possibly, res->n_retry_now, res->reason[0] ? ": " : "",
	          res->reason);
	if (t->done)
		t->done(c, res, t->arg);
	smtpc_txn_free(t);
}

/* txn_finish - the transaction ended and the session goes on */
static void
txn_finish(struct smtpc_conn *c)
{
	struct smtpc_txn *t = c->txn;

	settle(c, t, "not attempted");
	t->res.conn_usable = 1;
	c->txn = NULL;
	c->txn_count++;
	smtpc_session_idle(c);
	deliver_result(c, t);
}

void
smtpc_txn_abort(struct smtpc_conn *c, enum smtpc_error err,
                const char *reason, const struct smtpc_reply *r)
{
	struct smtpc_txn *t = c->txn;

	(void)r;
	settle(c, t, reason);
	t->res.error = err;
	t->res.reason = reason;
	t->res.conn_usable = 0;
	c->txn = NULL;
	c->txn_count++;
	deliver_result(c, t);
}
