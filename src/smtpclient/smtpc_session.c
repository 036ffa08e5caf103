/*
 * smtpc_session.c - one outbound SMTP session on the caller's libevent loop:
 * greeting, EHLO/HELO, STARTTLS and EHLO again, the idle state between
 * transactions and QUIT (connecting and MX fallback: smtpc_connect.c; the
 * public object: smtpc_conn.c).
 *
 * Shape: smtpc_enter_state() sends the command of a state, one read
 * callback cuts reply lines and hands complete replies to on_reply(), which
 * switches on the state. The transaction states live in smtpc_txn.c.
 * One timer per session carries the timeout of the reply being waited for.
 * The session is never freed inside its own callback chain: free requests
 * are flagged and carried out when the outermost callback unwinds.
 */
#include "smtpclient/smtpc_internal.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- small I/O helpers used by both files ---- */

struct evbuffer *
smtpc_session_output(struct smtpc_conn *c)
{
	return bufferevent_get_output(c->bev);
}

void
smtpc_session_write(struct smtpc_conn *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(c->bev), fmt, ap);
	va_end(ap);
	c->expect++;
}

void
smtpc_session_arm(struct smtpc_conn *c, uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	evtimer_add(c->timer, &tv);
}

void
smtpc_session_defer(struct smtpc_conn *c)
{
	event_active(c->deferred, 0, 0);
}

static uint64_t
tmo(uint64_t v, uint64_t def)
{
	return v ? v : def;
}

/* state_timeout - how long the reply of state st may take */
static uint64_t
state_timeout(const struct smtpc_conn *c, enum smtpc_state st)
{
	const struct smtpc_timeouts *t = &c->opts.timeouts;

	switch (st) {
	case SMTPC_S_CONNECT:  return tmo(t->connect, 30000);
	case SMTPC_S_BANNER:   return tmo(t->greeting, 300000);
	case SMTPC_S_EHLO:
	case SMTPC_S_HELO:     return tmo(t->helo, 300000);
	case SMTPC_S_STARTTLS:
	case SMTPC_S_TLS:      return tmo(t->starttls, 300000);
	case SMTPC_S_RSET:     return tmo(t->rset, 300000);
	case SMTPC_S_MAIL:     return tmo(t->mail, 300000);
	case SMTPC_S_RCPT:     return tmo(t->rcpt, 300000);
	case SMTPC_S_DATA:     return tmo(t->data_init, 120000);
	case SMTPC_S_BODY:     return tmo(t->data_block, 180000);
	case SMTPC_S_EOM:      return tmo(t->data_done, 600000);
	case SMTPC_S_QUIT:     return tmo(t->quit, 300000);
	default:               return 0;
	}
}

/* ---- the state machine ---- */

void
smtpc_enter_state(struct smtpc_conn *c, enum smtpc_state st)
{
	uint64_t ms;

	if (c->state != st)
		log_debug(c->sid, "%s[%s]: %s -> %s", c->cur_mx ? c->cur_mx : "-",
		          c->cur_addr, smtpc_state_name(c->state),
		          smtpc_state_name(st));
	c->state = st;
	if ((ms = state_timeout(c, st)) != 0)
		smtpc_session_arm(c, ms);
	else
		evtimer_del(c->timer);
	switch (st) {
	case SMTPC_S_EHLO:
		memset(&c->caps, 0, sizeof(c->caps));   /* learned anew each time */
		smtpc_session_write(c, "EHLO %s\r\n", c->ehlo_name);
		break;
	case SMTPC_S_HELO:
		smtpc_session_write(c, "HELO %s\r\n", c->ehlo_name);
		break;
	case SMTPC_S_STARTTLS:
		smtpc_session_write(c, "STARTTLS\r\n");
		break;
	case SMTPC_S_QUIT:
		smtpc_session_write(c, "QUIT\r\n");
		break;
	case SMTPC_S_RSET: case SMTPC_S_MAIL: case SMTPC_S_RCPT:
	case SMTPC_S_DATA: case SMTPC_S_BODY: case SMTPC_S_EOM:
		smtpc_txn_send_state(c);
		break;
	default:
		break;
	}
}

/* reply_brief - "421 4.3.2 text" of a reply into buf */
static const char *
reply_brief(const struct smtpc_reply *r, char *buf, size_t len)
{
	snprintf(buf, len, "%d%s%s %s", r->code, r->enhanced[0] ? " " : "",
	         r->enhanced, r->text);
	return buf;
}

/* after_ehlo - EHLO/HELO accepted: STARTTLS or ready */
static void
after_ehlo(struct smtpc_conn *c)
{
	enum smtpc_tls_policy p = c->opts.tls;

	if (!c->tls_on && !c->no_tls && p != SMTPC_TLS_NONE) {
		if (c->caps.starttls) {
			smtpc_enter_state(c, SMTPC_S_STARTTLS);
			return;
		}
		if (p >= SMTPC_TLS_ENCRYPT) {
			smtpc_session_next_target(c, SMTPC_ERR_TLS,
			                    "TLS required but STARTTLS not offered");
			return;
		}
	}
	c->pipelining = c->caps.pipelining && !c->opts.no_pipelining;
	c->chunking = c->caps.chunking && !c->opts.no_chunking;
	c->info.pipelining = c->caps.pipelining;
	c->info.chunking = c->caps.chunking;
	c->info.dsn = c->caps.dsn;
	c->info.smtputf8 = c->caps.smtputf8;
	c->info.eightbitmime = c->caps.eightbitmime;
	c->info.starttls = c->caps.starttls;
	c->info.size_limit = c->caps.size;
	log_info(c->sid, "connected to %s[%s]:%d%s%s%s%s%s", c->cur_mx,
	         c->cur_addr, c->opts.port, c->tls_on ? " TLS " : "",
	         c->tls_proto, c->tls_on ? " " : "", c->tls_cipher,
	         c->tls_fallback ? " (TLS failed, plaintext)" : "");
	c->t_connected = c->t_last = mono_ms();
	smtpc_session_idle(c);
}

/* smtpc_session_idle - enter READY; tell the owner once; QUIT if asked */
void
smtpc_session_idle(struct smtpc_conn *c)
{
	smtpc_enter_state(c, SMTPC_S_READY);
	c->t_last = mono_ms();
	if (c->close_pending) {
		smtpc_enter_state(c, SMTPC_S_QUIT);
		return;
	}
	if (!c->ready_sent) {
		c->ready_sent = 1;
		if (c->cbs.ready)
			c->cbs.ready(c, c->arg);
	}
}

/* on_opening_reply - replies of BANNER .. STARTTLS */
static void
on_opening_reply(struct smtpc_conn *c, const struct smtpc_reply *r)
{
	char b[SMTPC_TEXT_MAX + 32];
	int ok = r->code / 100 == 2;

	switch (c->state) {
	case SMTPC_S_BANNER:
		if (r->code != 220)
			smtpc_session_next_target(c, SMTPC_ERR_GREETING, "greeting: %s",
			                    reply_brief(r, b, sizeof(b)));
		else
			smtpc_enter_state(c, SMTPC_S_EHLO);
		break;
	case SMTPC_S_EHLO:
		if (ok) {
			c->info.esmtp = 1;
			after_ehlo(c);
		}
		else if (r->code / 100 == 5 && !c->tls_on)
			smtpc_enter_state(c, SMTPC_S_HELO);
		else
			smtpc_session_next_target(c, SMTPC_ERR_GREETING, "EHLO: %s",
			                    reply_brief(r, b, sizeof(b)));
		break;
	case SMTPC_S_HELO:
		if (ok) {
			memset(&c->caps, 0, sizeof(c->caps));
			c->info.esmtp = 0;
			after_ehlo(c);
		} else
			smtpc_session_next_target(c, SMTPC_ERR_GREETING, "HELO: %s",
			                    reply_brief(r, b, sizeof(b)));
		break;
	case SMTPC_S_STARTTLS:
		if (r->code == 220)
			;                          /* handled by on_starttls_220 */
		else if (c->opts.tls >= SMTPC_TLS_ENCRYPT)
			smtpc_session_next_target(c, SMTPC_ERR_TLS, "STARTTLS: %s",
			                    reply_brief(r, b, sizeof(b)));
		else {
			c->no_tls = 1;          /* "may": go on in plaintext */
			after_ehlo(c);
		}
		break;
	default:
		break;
	}
}

/* on_starttls_220 - discard what came with the 220, start the handshake */
static void
on_starttls_220(struct smtpc_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t extra = evbuffer_get_length(in);

	if (extra > 0) {     /* CVE-2011-0411 class: never read it as TLS data */
		log_warnx(c->sid, "%s[%s]: discarding %zu plaintext bytes sent "
		          "after the STARTTLS reply", c->cur_mx, c->cur_addr, extra);
		evbuffer_drain(in, extra);
	}
	if (smtpc_tls_start(c) < 0) {
		smtpc_session_next_target(c, SMTPC_ERR_TLS, "cannot start TLS");
		return;
	}
	smtpc_enter_state(c, SMTPC_S_TLS);
}

/* on_reply - a complete reply arrived for the current state */
static void
on_reply(struct smtpc_conn *c, const struct smtpc_reply *r)
{
	char b[SMTPC_TEXT_MAX + 32];

	switch (c->state) {
	case SMTPC_S_BANNER: case SMTPC_S_EHLO: case SMTPC_S_HELO:
		on_opening_reply(c, r);    /* 421 too: a refused greeting */
		break;
	case SMTPC_S_STARTTLS:
		if (r->code == 220)
			on_starttls_220(c);
		else
			on_opening_reply(c, r);
		break;
	case SMTPC_S_RSET: case SMTPC_S_MAIL: case SMTPC_S_RCPT:
	case SMTPC_S_DATA: case SMTPC_S_BODY: case SMTPC_S_EOM:
		smtpc_txn_on_reply(c, r);
		break;
	case SMTPC_S_QUIT:
		smtpc_session_end(c, SMTPC_ERR_CLOSED, "closed after QUIT", NULL);
		break;
	default:
		smtpc_session_fail(c, SMTPC_ERR_PROTOCOL, "unexpected reply in %s: %s",
		                   smtpc_state_name(c->state),
		                   reply_brief(r, b, sizeof(b)));
		break;
	}
}

/* unsolicited - input arrived while no reply was due */
static void
unsolicited(struct smtpc_conn *c, const char *line, size_t len)
{
	struct smtpc_reply r;

	smtpc_reply_reset(&r);
	if (smtpc_reply_feed(&r, line, len, NULL, NULL) == SMTPC_REPLY_DONE &&
	    r.code == 421) {
		char b[SMTPC_TEXT_MAX + 32];
		smtpc_session_fail(c, SMTPC_ERR_SHUTDOWN, "server closing: %s",
		                   reply_brief(&r, b, sizeof(b)));
		return;
	}
	smtpc_session_fail(c, SMTPC_ERR_PROTOCOL,
	                   "unsolicited input from server in state %s",
	                   smtpc_state_name(c->state));
}

/* read_line - cut one line; 1 got it, 0 need more, -1 too long */
static int
read_line(struct evbuffer *in, char *buf, size_t *len)
{
	size_t eol_len = 0;
	struct evbuffer_ptr p;

	p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
	if (p.pos < 0)
		return evbuffer_get_length(in) >= SMTPC_LINE_MAX ? -1 : 0;
	if ((size_t)p.pos + eol_len > SMTPC_LINE_MAX)
		return -1;
	evbuffer_remove(in, buf, (size_t)p.pos);
	evbuffer_drain(in, eol_len);
	buf[p.pos] = '\0';
	*len = (size_t)p.pos;
	return 1;
}

/* handle_line - one reply line; 0 go on, -1 the session ended */
static int
handle_line(struct smtpc_conn *c, const char *line, size_t len)
{
	const char *text;
	size_t tlen;
	enum smtpc_reply_rv rv;

	if (c->expect == 0 && c->state == SMTPC_S_BODY && c->reply.nlines == 0)
		c->expect = 1;          /* a reply in the middle of the body */
	if (c->expect == 0) {
		unsolicited(c, line, len);
		return -1;
	}
	rv = smtpc_reply_feed(&c->reply, line, len, &text, &tlen);
	if (rv == SMTPC_REPLY_BAD) {
		smtpc_session_fail(c, SMTPC_ERR_PROTOCOL, "%s in state %s",
		                   c->reply.error, smtpc_state_name(c->state));
		return -1;
	}
	if (c->state == SMTPC_S_EHLO && c->reply.nlines > 1)
		smtpc_caps_parse_line(&c->caps, text, tlen);
	if (rv == SMTPC_REPLY_MORE)
		return 0;
	c->expect--;
	if (c->expect == 0 &&
	    evbuffer_get_length(bufferevent_get_input(c->bev)) > 0 &&
	    c->state != SMTPC_S_STARTTLS) {
		smtpc_session_fail(c, SMTPC_ERR_PROTOCOL,
		                   "server sent more replies than commands "
		                   "(state %s)", smtpc_state_name(c->state));
		return -1;
	}
	struct smtpc_reply r = c->reply;
	smtpc_reply_reset(&c->reply);
	on_reply(c, &r);
	return 0;
}

/* quickack - ACK the server's replies at once: a server that writes its
 * pipelined replies in pieces and uses Nagle would otherwise wait for our
 * delayed ACK (40 ms) before sending the last reply of a group */
static void
quickack(struct smtpc_conn *c, struct bufferevent *bev)
{
	int one = 1;
	evutil_socket_t fd;

	if (c->bev == bev && !c->free_pending && c->state != SMTPC_S_READY &&
	    (fd = bufferevent_getfd(bev)) >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	struct smtpc_conn *c = arg;
	char line[SMTPC_LINE_MAX + 1];
	size_t len;
	int rv;

	smtpc_conn_enter(c);
	while (!c->free_pending && c->bev == bev &&
	       c->state != SMTPC_S_CLOSED && c->state != SMTPC_S_TLS) {
		rv = read_line(bufferevent_get_input(bev), line, &len);
		if (rv == 0)
			break;
		if (rv < 0) {
			smtpc_session_fail(c, SMTPC_ERR_PROTOCOL,
			                   "reply line longer than %d bytes in state %s",
			                   SMTPC_LINE_MAX, smtpc_state_name(c->state));
			break;
		}
		if (handle_line(c, line, len) < 0)
			break;
	}
	quickack(c, bev);
	smtpc_conn_leave(c);
}

static void
on_write(struct bufferevent *bev, void *arg)
{
	struct smtpc_conn *c = arg;

	(void)bev;
	smtpc_conn_enter(c);
	if (c->state == SMTPC_S_BODY)
		smtpc_txn_pump(c);
	smtpc_conn_leave(c);
}

/* on_io_error - EOF or error on the connection, by state */
static void
on_io_error(struct smtpc_conn *c, short what)
{
	char tb[256];
	int e = EVUTIL_SOCKET_ERROR();
	const char *why = (what & BEV_EVENT_EOF) ? "connection closed by server" :
	                  e ? evutil_socket_error_to_string(e) : "I/O error";

	switch (c->state) {
	case SMTPC_S_CONNECT:
		smtpc_session_next_target(c, SMTPC_ERR_CONNECT, "connect: %s", why);
		break;
	case SMTPC_S_TLS:
		if (c->opts.tls == SMTPC_TLS_MAY) {
			log_warnx(c->sid, "%s[%s]: TLS handshake failed (%s), "
			          "reconnecting without TLS", c->cur_mx, c->cur_addr,
			          smtpc_tls_error(c, tb, sizeof(tb)));
			c->no_tls = c->tls_fallback = 1;
			c->next_target--;      /* the same address again */
			c->attempts--;
			smtpc_session_next_target(c, SMTPC_ERR_TLS, "TLS handshake failed");
		} else
			smtpc_session_next_target(c, SMTPC_ERR_TLS, "TLS handshake: %s",
			                    smtpc_tls_error(c, tb, sizeof(tb)));
		break;
	case SMTPC_S_BANNER: case SMTPC_S_EHLO: case SMTPC_S_HELO:
	case SMTPC_S_STARTTLS:
		smtpc_session_next_target(c, SMTPC_ERR_LOST, "%s in state %s", why,
		                    smtpc_state_name(c->state));
		break;
	case SMTPC_S_QUIT:
		smtpc_session_end(c, SMTPC_ERR_CLOSED, "closed after QUIT", NULL);
		break;
	default:
		smtpc_session_fail(c, SMTPC_ERR_LOST, "%s in state %s", why,
		                   smtpc_state_name(c->state));
		break;
	}
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct smtpc_conn *c = arg;

	smtpc_conn_enter(c);
	if (c->bev != bev) {
		/* stale transport */
	} else if ((what & BEV_EVENT_CONNECTED) && c->state == SMTPC_S_CONNECT) {
		c->expect = 1;
		smtpc_enter_state(c, SMTPC_S_BANNER);
	} else if ((what & BEV_EVENT_CONNECTED) && c->state == SMTPC_S_TLS) {
		smtpc_tls_record(c);
		smtpc_enter_state(c, SMTPC_S_EHLO);
	} else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		/* let pending complete replies be seen before the loss */
		if (evbuffer_get_length(bufferevent_get_input(bev)) > 0 &&
		    c->state != SMTPC_S_TLS)
			on_read(bev, arg);
		if (!c->free_pending && c->bev == bev &&
		    c->state != SMTPC_S_CLOSED)
			on_io_error(c, what);
	}
	smtpc_conn_leave(c);
}

void
smtpc_session_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct smtpc_conn *c = arg;

	(void)fd;
	(void)what;
	smtpc_conn_enter(c);
	switch (c->state) {
	case SMTPC_S_CONNECT: case SMTPC_S_BANNER: case SMTPC_S_EHLO:
	case SMTPC_S_HELO: case SMTPC_S_STARTTLS: case SMTPC_S_TLS:
		smtpc_session_next_target(c, SMTPC_ERR_TIMEOUT, "timeout in state %s",
		                    smtpc_state_name(c->state));
		break;
	case SMTPC_S_QUIT:
		smtpc_session_end(c, SMTPC_ERR_CLOSED, "closed (no reply to QUIT)", NULL);
		break;
	case SMTPC_S_READY: case SMTPC_S_CLOSED: case SMTPC_S_INIT:
		break;
	default:
		smtpc_session_fail(c, SMTPC_ERR_TIMEOUT, "timeout in state %s",
		                   smtpc_state_name(c->state));
		break;
	}
	smtpc_conn_leave(c);
}

void
smtpc_session_on_deferred(evutil_socket_t fd, short what, void *arg)
{
	struct smtpc_conn *c = arg;

	(void)fd;
	(void)what;
	smtpc_conn_enter(c);
	if (c->state == SMTPC_S_INIT)
		smtpc_session_next_target(c, SMTPC_ERR_NONE, "%s", "");
	else if (c->txn != NULL)
		smtpc_txn_on_deferred(c);
	smtpc_conn_leave(c);
}

void
smtpc_session_setcb(struct smtpc_conn *c, struct bufferevent *bev)
{
	bufferevent_setcb(bev, on_read, on_write, on_event, c);
}
