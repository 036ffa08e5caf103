/*
 * smtpd_session.c - one SMTP session: strict CRLF line reading with a hard
 * length limit over its transport (smtpd_io.c: plain, STARTTLS or implicit
 * TLS), the
 * idle and whole-command deadlines, error counting, replies, and the
 * session's lifecycle. Commands are in smtpd_cmd.c, AUTH in smtpd_auth.c,
 * message data in smtpd_data.c. Loop thread only.
 *
 * A session is never freed inside a call chain that still uses it: code
 * sets `gone` or `freeing` and the top-level callback ends in
 * session_finish(), which frees. A session waiting for the store's commit
 * callback is only freed by that callback.
 */
#include "api/smtpd_internal.h"

#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "core/core.h"
#include "queue/queue.h"

static const char *
state_name(enum smtpd_state st)
{
	static const char *names[] = { "command", "auth", "data", "bdat", "commit",
	                               "starttls", "closing", "auth-check",
	                               "greet-wait" };
	return names[st];
}

void
smtpd_session_reply(struct smtpd_session *s, const char *fmt, ...)
{
	struct evbuffer *out;
	size_t off;
	va_list ap;

	if (s->fd < 0 || s->state == SS_CLOSING)
		return;
	out = s->out;
	off = evbuffer_get_length(out);
	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
	smtpd_stats_reply(s->sd, out, off);
	if (log_get_level() >= LOG_LVL_DEBUG) {
		char line[256];
		va_start(ap, fmt);
		vsnprintf(line, sizeof(line), fmt, ap);
		va_end(ap);
		log_debug(s->id, "<<< %s", line);
	}
}

void
smtpd_session_close(struct smtpd_session *s, const char *reply)
{
	if (s->state == SS_CLOSING)
		return;
	if (reply)
		smtpd_session_reply(s, "%s", reply);
	s->state = SS_CLOSING; /* freed once the output is out */
	s->throttled = 0;
	if (s->fd < 0)
		s->freeing = 1;
}

void
smtpd_session_error(struct smtpd_session *s)
{
	if (++s->errors < s->l->cfg->max_errors)
		return;
	log_warnx(s->id, "%u errors: closing the session", s->errors);
	smtpd_data_abort(s);
	smtpd_session_close(s, "421 4.7.0 Too many errors, closing connection");
}

struct account *
smtpd_session_account(struct smtpd_session *s)
{
	return s->user ? accounts_find(s->l->accounts, s->user) : NULL;
}

/* arm_timer - the next deadline: idle since the last read, or the start of
 * the command / data phase plus command_timeout, whichever comes first */
static void
arm_timer(struct smtpd_session *s)
{
	const struct config_listen *c = s->l->cfg;
	uint64_t now = mono_ms(), dl;
	struct timeval tv;

	if (s->state == SS_COMMIT || s->state == SS_AUTH_WAIT) {
		evtimer_del(s->timer); /* the store or crypt, not the client, is slow */
		return;
	}
	dl = s->last_ms + c->idle_timeout_ms;
	if (s->state == SS_GREET)
		dl = s->greet_ms;
	else if (s->throttled)
		dl = now + SMTPD_THROTTLE_MS;
	else if (s->state == SS_CLOSING && now + 10000 < dl)
		dl = now + 10000;
	else if (s->cmd_start_ms && s->cmd_start_ms + c->command_timeout_ms < dl)
		dl = s->cmd_start_ms + c->command_timeout_ms;
	dl = dl > now ? dl - now : 0;
	tv.tv_sec = (time_t)(dl / 1000);
	tv.tv_usec = (suseconds_t)(dl % 1000) * 1000;
	evtimer_add(s->timer, &tv);
}

static void tls_switch(struct smtpd_session *s);

/* flush_out - send this callback's replies; then act on an empty output:
 * close, or switch to TLS after the 220 to STARTTLS */
static void
flush_out(struct smtpd_session *s)
{
	if (s->fd < 0 || s->gone)
		return;
	if (smtpd_io_flush(s) < 0) {
		s->gone = 1;
		return;
	}
	if (!smtpd_io_idle(s))
		return;
	if (s->state == SS_CLOSING)
		s->freeing = 1;
	else if (s->state == SS_TLS_WAIT)
		tls_switch(s);
}

/* want_input - read from the client now? Not in paused states, and not
 * while its unread input or our unread replies are at their bounds */
static int
want_input(struct smtpd_session *s)
{
	return s->state != SS_CLOSING && s->state != SS_TLS_WAIT &&
	       s->state != SS_AUTH_WAIT && !s->throttled &&
	       s->in && evbuffer_get_length(s->in) < SMTPD_READ_HIGH &&
	       smtpd_io_pending(s) < SMTPD_WRITE_HIGH;
}

/* session_finish - end of every top-level callback: flush, free or re-arm */
void
smtpd_session_finish(struct smtpd_session *s)
{
	flush_out(s);
	if ((s->gone || s->freeing) && !s->commit_pending) {
		smtpd_session_free(s);
		return;
	}
	if (s->gone)
		return;
	smtpd_io_reading(s, want_input(s));
	arm_timer(s);
}

/* too_long - a line over the limit: refuse it, skip to its end */
static int
too_long(struct smtpd_session *s, struct evbuffer *in, size_t drain)
{
	evbuffer_drain(in, drain);
	smtpd_session_reply(s, "500 5.5.2 Line too long (limit %d octets with CRLF)",
	                    SMTPD_LINE_MAX);
	smtpd_session_error(s);
	return 1;
}

/* read_line - handle one complete command line; 0 when more input is needed */
static int
read_line(struct smtpd_session *s)
{
	struct evbuffer *in = s->in;
	size_t len = evbuffer_get_length(in);
	struct evbuffer_ptr p;
	char buf[SMTPD_LINE_MAX + 1];
	const char *r;
	size_t n;

	if (len == 0)
		return 0;
	p = evbuffer_search(in, "\n", 1, NULL);
	if (p.pos < 0) {
		if (s->skipping)
			evbuffer_drain(in, len);
		else if (len >= SMTPD_LINE_MAX)
			return s->skipping = 1, too_long(s, in, len);
		else if (s->cmd_start_ms == 0)
			s->cmd_start_ms = mono_ms();
		return 0;
	}
	n = (size_t)p.pos;
	s->cmd_start_ms = 0;
	if (s->skipping) {
		evbuffer_drain(in, n + 1);
		s->skipping = 0;
		return 1;
	}
	if (n + 1 > SMTPD_LINE_MAX)
		return too_long(s, in, n + 1);
	evbuffer_remove(in, buf, n + 1);
	if (n == 0 || buf[n - 1] != '\r') {
		/* the line goes on to the next LF: refuse all of it, so nothing
		 * after a bare LF runs as a command of its own (smuggling) */
		smtpd_session_reply(s, "500 5.5.2 Bare LF in command refused; lines end with CRLF");
		smtpd_session_error(s);
		s->skipping = 1;
		return 1;
	}
	buf[n - 1] = '\0';
	if ((r = smtpd_line_check(buf, n - 1)) != NULL) {
		smtpd_session_reply(s, "%s", r);
		smtpd_session_error(s);
		return 1;
	}
	if (s->state == SS_AUTH)
		smtpd_auth_line(s, buf);
	else
		smtpd_cmd_dispatch(s, buf);
	return 1;
}

/* greet - the 220 that opens the session */
static void
greet(struct smtpd_session *s)
{
	s->state = SS_CMD;
	smtpd_session_reply(s, "220 %s ESMTP mxbatch", s->sd->hostname);
}

/* early_talker - input before the greeting (greet_wait): a client that
 * does not wait for the server is not speaking SMTP; refuse it */
static void
early_talker(struct smtpd_session *s)
{
	log_info(s->id, "early talker: input before the greeting, refused");
	evbuffer_drain(s->in, evbuffer_get_length(s->in));
	s->state = SS_CMD;
	smtpd_session_close(s, "554 5.5.1 Protocol error: input sent before the greeting");
}

/* greet_due - greet_wait is over: greet, unless input is waiting */
static void
greet_due(struct smtpd_session *s)
{
	if (evbuffer_get_length(s->in) > 0 || smtpd_io_input_waiting(s)) {
		early_talker(s);
		return;
	}
	smtpd_greet_passed(s);
	greet(s);
}

void
smtpd_session_process(struct smtpd_session *s)
{
	while (!s->gone && !s->freeing && s->in) {
		switch (s->state) {
		case SS_GREET:
			if (evbuffer_get_length(s->in) > 0)
				early_talker(s);
			return;
		case SS_CMD:
		case SS_AUTH:
			if (!read_line(s))
				return;
			break;
		case SS_DATA:
		case SS_BDAT:
			if (!smtpd_data_consume(s))
				return;
			break;
		default:
			return;
		}
	}
}

/* tls_switch - the 220 to STARTTLS is out: forget the plain session
 * (RFC 3207 4.2) and handshake on the same socket */
static void
tls_switch(struct smtpd_session *s)
{
	smtpd_txn_reset(s);
	s->helo[0] = '\0';
	s->esmtp = 0;
	s->state = SS_CMD;
	if (smtpd_io_tls(s) < 0) {
		log_warnx(s->id, "cannot start TLS");
		s->gone = 1;
	}
}

void
smtpd_session_on_tls(struct smtpd_session *s)
{
	if (smtpd_io_tls_info(s, s->tls_info, sizeof(s->tls_info)) != NULL) {
		s->tls = 1;
		log_info(s->id, "TLS established: %s", s->tls_info);
	}
	smtpd_session_finish(s);
}

void
smtpd_session_on_input(struct smtpd_session *s)
{
	s->last_ms = mono_ms();
	smtpd_session_process(s);
	smtpd_session_finish(s);
}

void
smtpd_session_on_drained(struct smtpd_session *s)
{
	smtpd_session_finish(s); /* output drained: close or STARTTLS */
}

void
smtpd_session_on_lost(struct smtpd_session *s, int error)
{
	if (s->state == SS_DATA || s->state == SS_BDAT || s->w)
		log_warnx(s->id, "client gone during message data: nothing queued");
	else if (error && s->state != SS_CLOSING)
		log_info(s->id, "connection error in state %s", state_name(s->state));
	smtpd_data_abort(s);
	s->gone = 1;
	smtpd_session_finish(s);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct smtpd_session *s = arg;
	char reply[320];

	(void)fd;
	(void)what;
	if (s->throttled) { /* see whether the store caught up */
		s->throttled = 0;
		s->last_ms = mono_ms();
		smtpd_session_process(s);
	} else if (s->state == SS_CLOSING) {
		s->freeing = 1;
	} else if (s->state == SS_GREET) {
		greet_due(s);
	} else {
		log_info(s->id, "timeout in state %s: closing", state_name(s->state));
		smtpd_data_abort(s);
		snprintf(reply, sizeof(reply), "421 4.4.2 %s Error: timeout exceeded",
		         s->sd->hostname);
		smtpd_session_close(s, reply);
	}
	smtpd_session_finish(s);
}

void
smtpd_session_new(struct smtpd_listener *l, int fd, const struct sockaddr *sa,
                  int salen)
{
	struct smtpd_session *s = xcalloc(1, sizeof(*s));
	struct smtpd *sd = l->sd;

	s->out = evbuffer_new();
	s->sd = sd;
	s->l = l;
	s->fd = fd;
	memcpy(&s->peer, sa, (size_t)salen < sizeof(s->peer) ? (size_t)salen : sizeof(s->peer));
	snprintf(s->id, sizeof(s->id), "s%llx", (unsigned long long)++sd->next_sid);
	if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
		char host[sizeof(s->ip)] = "";
		getnameinfo(sa, (socklen_t)salen, host, sizeof(host), NULL, 0, NI_NUMERICHOST);
		snprintf(s->ip, sizeof(s->ip), "%s", host);
		s->ipent = smtpd_ip_get(&sd->conns, s->ip, 1);
		s->ipent->count++;
	}
	s->trusted = smtpd_conn_trusted(l, sa);
	l->nconn++;
	s->next = sd->sessions;
	if (sd->sessions)
		sd->sessions->prev = s;
	sd->sessions = s;
	s->timer = evtimer_new(sd->base, on_timer, s);
	s->last_ms = mono_ms();
	log_info(s->id, "connect from %s on %s%s", s->ip[0] ? s->ip : "unix socket",
	         l->cfg->name, s->trusted ? " (trusted)" : "");
	if ((l->cfg->implicit_tls ? smtpd_io_tls(s) : smtpd_io_plain(s)) < 0) {
		log_warnx(s->id, "cannot set up the connection");
		smtpd_session_free(s);
		return;
	}
	if (smtpd_greet_wait(s)) {
		s->state = SS_GREET;
		s->greet_ms = s->last_ms + l->cfg->greet_wait_ms;
	} else {
		greet(s);
	}
	smtpd_session_finish(s);
}

/* release - give back everything but the struct (idempotent) */
static void
release(struct smtpd_session *s)
{
	size_t i;

	smtpd_data_abort(s);
	smtpd_crypt_cancel(s);
	for (i = 0; i < s->n_rcpts; i++) {
		free(s->rcpts[i].addr);
		free(s->rcpts[i].orcpt);
	}
	free(s->rcpts);
	s->rcpts = NULL;
	s->n_rcpts = s->cap_rcpts = 0;
	free(s->hdr);
	s->hdr = NULL;
	free(s->user);
	s->user = NULL;
	if (s->out)
		evbuffer_free(s->out);
	s->out = NULL;
	if (s->timer)
		event_free(s->timer);
	s->timer = NULL;
	smtpd_io_free(s);
}

void
smtpd_session_free(struct smtpd_session *s)
{
	if (s->sd) {
		log_info(s->id, "disconnect (%u message(s), %u error(s))", s->msgs, s->errors);
		if (s->ipent) {
			s->ipent->count--;
			smtpd_ip_put(&s->sd->conns, s->ipent);
			s->ipent = NULL;
		}
		s->l->nconn--;
		smtpd_session_unlink(s);
	}
	release(s);
	s->gone = 1;
	if (s->commit_pending) { /* the store's callback frees it */
		s->sd = NULL;
		return;
	}
	free(s);
}

void
smtpd_session_shutdown(struct smtpd_session *s)
{
	if (s->state == SS_DATA || s->state == SS_BDAT || s->state == SS_COMMIT ||
	    (s->in_mail && s->used_bdat)) {
		s->stop_after = 1;
		return;
	}
	smtpd_session_close(s, "421 4.3.2 Service shutting down, try again later");
	smtpd_session_finish(s);
}
