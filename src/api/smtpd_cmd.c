/*
 * smtpd_cmd.c - the SMTP commands of a session (RFC 5321 and extensions):
 * EHLO/HELO, MAIL, RCPT, DATA, BDAT, RSET, NOOP, QUIT, VRFY, EXPN, HELP,
 * STARTTLS (AUTH is in smtpd_auth.c). Relay policy: a Unix socket or a
 * trusted network may relay; otherwise only an authenticated account, from
 * its own sender addresses, within its limits. Loop thread only.
 *
 * Every reply carries an enhanced status code (RFC 2034), except the
 * greeting, the EHLO/HELO reply and the 334/354 continuations, which the
 * RFCs keep free of them.
 */
#include "api/smtpd_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "core/core.h"
#include "queue/queue.h"

void
smtpd_txn_reset(struct smtpd_session *s)
{
	size_t i;

	smtpd_data_abort(s);
	for (i = 0; i < s->n_rcpts; i++) {
		free(s->rcpts[i].addr);
		free(s->rcpts[i].orcpt);
	}
	s->n_rcpts = 0;
	s->in_mail = s->txn_failed = s->used_bdat = s->used_data = s->utf8 = 0;
	s->sender[0] = '\0';
	memset(&s->margs, 0, sizeof(s->margs));
}

/* junk - NOOP, RSET, VRFY, ... past SMTPD_JUNK_MAX count as errors */
static void
junk(struct smtpd_session *s)
{
	if (++s->junk > SMTPD_JUNK_MAX)
		smtpd_session_error(s);
}

static int
no_args(struct smtpd_session *s, const char *arg, const char *verb)
{
	if (arg[0] == '\0')
		return 1;
	smtpd_session_reply(s, "501 5.5.4 Syntax: %s (no arguments)", verb);
	smtpd_session_error(s);
	return 0;
}

static void
ehlo_reply(struct smtpd_session *s)
{
	struct smtpd *sd = s->sd;

	smtpd_session_reply(s, "250-%s", sd->hostname);
	smtpd_session_reply(s, "250-PIPELINING");
	smtpd_session_reply(s, "250-SIZE %llu", (unsigned long long)sd->cfg->max_message_size);
	smtpd_session_reply(s, "250-8BITMIME");
	smtpd_session_reply(s, "250-SMTPUTF8");
	smtpd_session_reply(s, "250-ENHANCEDSTATUSCODES");
	smtpd_session_reply(s, "250-DSN");
	if (s->l->tls && !s->tls)
		smtpd_session_reply(s, "250-STARTTLS");
	if (s->l->accounts && s->tls && !s->user)
		smtpd_session_reply(s, "250-AUTH PLAIN LOGIN");
	smtpd_session_reply(s, "250 CHUNKING");
}

static void
cmd_helo(struct smtpd_session *s, const char *arg, int esmtp)
{
	size_t i, n = strlen(arg);

	for (i = 0; i < n; i++)
		if (arg[i] < 33 || arg[i] > 126)
			break;
	if (n == 0 || i < n || n >= sizeof(s->helo)) {
		smtpd_session_reply(s, "501 5.5.4 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
		smtpd_session_error(s);
		return;
	}
	smtpd_txn_reset(s);
	memcpy(s->helo, arg, n + 1);
	s->esmtp = esmtp;
	if (esmtp)
		ehlo_reply(s);
	else
		smtpd_session_reply(s, "250 %s", s->sd->hostname);
}

/* mail_policy - who may start a transaction from this sender */
static int
mail_policy(struct smtpd_session *s)
{
	struct account *a;

	if (s->trusted)
		return 0;
	if (s->user == NULL) {
		if (!s->l->auth_required)
			return 0; /* refused per recipient: 550 5.7.1 */
		smtpd_session_reply(s, "530 5.7.0 Authentication required%s",
		                    s->tls ? "" : " (STARTTLS first)");
		return -1;
	}
	if ((a = smtpd_session_account(s)) == NULL) {
		smtpd_session_reply(s, "454 4.7.0 Account %s no longer exists", s->user);
		return -1;
	}
	if (s->sender[0] == '\0' ? !account_sender_ok(a, "*") : !account_sender_ok(a, s->sender)) {
		smtpd_session_reply(s, "553 5.7.1 Sender address <%s> not allowed for account %s",
		                    s->sender, s->user);
		return -1;
	}
	if (!account_msg_allowed(a, now_ms())) {
		smtpd_session_reply(s, "451 4.7.1 Hourly message limit (%llu) reached for "
		                    "account %s; try again later",
		                    (unsigned long long)a->msgs_per_hour, s->user);
		return -1;
	}
	return 0;
}

static void
cmd_mail(struct smtpd_session *s, const char *arg)
{
	const char *r;
	uint64_t max = s->sd->cfg->max_message_size;

	if (s->helo[0] == '\0')
		r = "503 5.5.1 Send EHLO or HELO first";
	else if (s->in_mail)
		r = "503 5.5.1 Nested MAIL command";
	else
		r = smtpd_mail_parse(arg, s->esmtp, s->sender, &s->utf8, &s->margs);
	if (r == NULL && max && s->margs.size > max) {
		smtpd_session_reply(s, "552 5.3.4 Message size exceeds fixed limit of %llu bytes",
		                    (unsigned long long)max);
		smtpd_session_error(s);
		return;
	}
	if (r != NULL || mail_policy(s) < 0) {
		if (r)
			smtpd_session_reply(s, "%s", r);
		s->sender[0] = '\0';
		smtpd_session_error(s);
		return;
	}
	s->in_mail = 1;
	smtpd_session_reply(s, "250 2.1.0 Ok");
}

/* rcpt_policy - relay permission and recipient limits */
static int
rcpt_policy(struct smtpd_session *s)
{
	struct account *a = smtpd_session_account(s);
	uint64_t lim = s->l->cfg->max_recipients;

	if (!s->trusted && a == NULL) {
		smtpd_session_reply(s, "550 5.7.1 Relay access denied (authenticate first)");
		smtpd_session_error(s);
		return -1;
	}
	if (a && a->rcpts_per_msg && a->rcpts_per_msg < lim)
		lim = a->rcpts_per_msg;
	if (s->n_rcpts >= lim) {
		smtpd_session_reply(s, "452 4.5.3 Too many recipients (at most %llu per message)",
		                    (unsigned long long)lim);
		return -1;
	}
	if (a && !account_rcpt_allowed(a, now_ms(), s->n_rcpts)) {
		smtpd_session_reply(s, "451 4.7.1 Hourly recipient limit (%llu) reached for "
		                    "account %s; try again later",
		                    (unsigned long long)a->rcpts_per_hour, s->user);
		return -1;
	}
	return 0;
}

/* rcpt_suppressed - refuse an address that hard-bounced recently, unless
 * the listener accepts it (the scheduler then bounces it with a DSN) */
static int
rcpt_suppressed(struct smtpd_session *s, const char *to)
{
	struct queue_suppression sup;

	if (s->l->cfg->suppressed && strcmp(s->l->cfg->suppressed, "accept") == 0)
		return 0;
	if (s->sd->q == NULL || queue_suppress_check(s->sd->q, to, now_ms(), &sup) != 1)
		return 0;
	smtpd_session_reply(s, "550 5.1.1 <%s>: Recipient address suppressed after a "
	                    "hard bounce (%s)", to, sup.category);
	log_info(s->id, "RCPT <%s> refused: suppressed (%s: %.200s)", to, sup.category,
	         sup.reason);
	queue_suppression_clear(&sup);
	return -1;
}

static void
cmd_rcpt(struct smtpd_session *s, const char *arg)
{
	char to[SMTPD_PATH_MAX + 1];
	struct smtpd_rcpt_args ra;
	struct smtpd_rcpt *rc;
	const char *r = NULL;
	int utf8 = 0;

	if (!s->in_mail || s->txn_failed)
		r = "503 5.5.1 Need MAIL command first";
	else if (s->used_bdat)
		r = "503 5.5.1 RCPT after BDAT";
	else
		r = smtpd_rcpt_parse(arg, s->esmtp, s->margs.smtputf8, to, &utf8, &ra);
	if (r) {
		smtpd_session_reply(s, "%s", r);
		smtpd_session_error(s);
		return;
	}
	if (rcpt_policy(s) < 0 || rcpt_suppressed(s, to) < 0)
		return;
	if (s->n_rcpts == s->cap_rcpts) {
		s->cap_rcpts = s->cap_rcpts ? s->cap_rcpts * 2 : 16;
		s->rcpts = xrealloc(s->rcpts, s->cap_rcpts * sizeof(*s->rcpts));
	}
	rc = &s->rcpts[s->n_rcpts++];
	rc->addr = xstrdup(to);
	rc->notify = ra.notify;
	rc->orcpt = ra.orcpt[0] ? xstrdup(ra.orcpt) : NULL;
	s->utf8 |= utf8;
	smtpd_session_reply(s, "250 2.1.5 Ok");
}

static void
cmd_data(struct smtpd_session *s, const char *arg)
{
	const char *r = NULL;

	if (!no_args(s, arg, "DATA"))
		return;
	if (!s->in_mail || s->txn_failed)
		r = "503 5.5.1 Need MAIL command first";
	else if (s->used_bdat)
		r = "503 5.5.1 DATA after BDAT";
	else if (s->n_rcpts == 0)
		r = "554 5.5.1 No valid recipients";
	if (r) {
		smtpd_session_reply(s, "%s", r);
		smtpd_session_error(s);
		return;
	}
	smtpd_data_start(s);
}

static void
cmd_bdat(struct smtpd_session *s, const char *arg)
{
	uint64_t size;
	int last;

	if (smtpd_bdat_parse(arg, &size, &last) < 0) {
		/* the chunk's length is unknown: the stream cannot be resynced */
		smtpd_session_close(s, "501 5.5.4 Syntax: BDAT size [LAST]; closing");
		return;
	}
	smtpd_bdat_start(s, size, last);
}

static void
cmd_starttls(struct smtpd_session *s, const char *arg)
{
	struct evbuffer *in = s->in;
	size_t extra;

	if (!no_args(s, arg, "STARTTLS"))
		return;
	if (s->l->tls == NULL || s->tls) {
		smtpd_session_reply(s, s->tls ? "503 5.5.1 TLS already active"
		                              : "502 5.5.1 STARTTLS not available");
		smtpd_session_error(s);
		return;
	}
	smtpd_session_reply(s, "220 2.0.0 Ready to start TLS");
	if ((extra = evbuffer_get_length(in)) > 0) { /* CVE-2011-0411 class */
		log_warnx(s->id, "discarding %zu byte(s) sent after STARTTLS", extra);
		evbuffer_drain(in, extra);
	}
	s->state = SS_TLS_WAIT; /* input stops until the handshake */
}

/* cmd_simple - RSET, NOOP, QUIT, VRFY, EXPN, HELP */
static void
cmd_simple(struct smtpd_session *s, enum smtpd_cmd c, const char *arg)
{
	switch (c) {
	case CMD_RSET:
		if (no_args(s, arg, "RSET")) {
			smtpd_txn_reset(s);
			smtpd_session_reply(s, "250 2.0.0 Ok");
		}
		break;
	case CMD_NOOP:
		smtpd_session_reply(s, "250 2.0.0 Ok");
		break;
	case CMD_QUIT:
		smtpd_session_close(s, "221 2.0.0 Bye");
		return;
	case CMD_VRFY:
		smtpd_session_reply(s, "252 2.5.2 Cannot VRFY user; send mail and we will try");
		break;
	case CMD_EXPN:
		smtpd_session_reply(s, "502 5.5.1 EXPN not supported");
		break;
	default:
		smtpd_session_reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT "
		                    "RSET NOOP QUIT VRFY HELP STARTTLS AUTH");
		break;
	}
	junk(s);
}

void
smtpd_cmd_dispatch(struct smtpd_session *s, char *line)
{
	const char *arg;
	enum smtpd_cmd c = smtpd_cmd_parse(line, &arg);

	log_debug(s->id, ">>> %s", c == CMD_AUTH ? "AUTH ..." : line);
	switch (c) {
	case CMD_HELO: cmd_helo(s, arg, 0); break;
	case CMD_EHLO: cmd_helo(s, arg, 1); break;
	case CMD_MAIL: cmd_mail(s, arg); break;
	case CMD_RCPT: cmd_rcpt(s, arg); break;
	case CMD_DATA: cmd_data(s, arg); break;
	case CMD_BDAT: cmd_bdat(s, arg); break;
	case CMD_STARTTLS: cmd_starttls(s, arg); break;
	case CMD_AUTH: smtpd_auth_start(s, arg); break;
	case CMD_UNKNOWN:
		smtpd_session_reply(s, "500 5.5.2 Command unrecognized");
		smtpd_session_error(s);
		break;
	default:
		cmd_simple(s, c, arg);
		break;
	}
}
