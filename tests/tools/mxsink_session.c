/*
 * mxsink_session.c - one SMTP server connection of the test sink: buffered
 * input processed in order (so pipelined commands work), replies that may
 * be delayed, dropped or never sent, STARTTLS through a libevent OpenSSL
 * filter, and closing only after the last reply has left. Main loop only.
 *
 * A session is never freed inside its own callbacks: session_close() marks
 * it CLOSING and the free runs from a separate event once output drained.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>

#include "core/core.h"
#include "mxsink_internal.h"

#define MAX_LINE 4096
#define INPUT_HIGH_WATER (4 * 1024 * 1024)

static void session_process(struct session *s);

int reply_is(const char *text, char digit)
{
	return text != NULL && text[0] == digit;
}

const char *session_default(struct session *s, enum phase ph,
                            const char *builtin)
{
	const char *o = session_beh(s)->replies[ph];

	return o ? o : builtin;
}

/* session_sent_text - the reply as the client will see it (null when the
 * behaviour drops the connection or hangs at that phase instead) */
json_t *session_sent_text(struct session *s, enum phase ph, const char *text)
{
	const struct behaviour *b = session_beh(s);

	if (b->drop_at == (int)ph || b->hang_at == (int)ph)
		return json_null();
	return log_str(text);
}

/* session_tempfail_hit - count one event of phase ph for "tempfail_every";
 * 1 if this one must get the tempfail reply (counted per listener) */
int session_tempfail_hit(struct session *s, enum phase ph)
{
	const struct behaviour *b = session_beh(s);

	if (b->tempfail_every == 0 || b->tempfail_at != (int)ph)
		return 0;
	return ++s->lst->tempfail_count % b->tempfail_every == 0;
}

/* reply_wire - "250 a\n250 b" -> "250-a\r\n250 b\r\n" into the output */
static void reply_wire(struct evbuffer *out, const char *text)
{
	const char *p = text, *nl;
	size_t n;

	while ((nl = strchr(p, '\n')) != NULL) {
		n = (size_t)(nl - p);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n >= 4 && p[3] == ' ')
			evbuffer_add_printf(out, "%.3s-%.*s\r\n", p, (int)(n - 4),
			                    p + 4);
		else
			evbuffer_add_printf(out, "%.*s\r\n", (int)n, p);
		p = nl + 1;
	}
	evbuffer_add_printf(out, "%s\r\n", p);
}

static void on_under_drain(struct evbuffer *b,
                           const struct evbuffer_cb_info *info, void *arg);

static void session_free(struct session *s)
{
	struct bufferevent *under;

	if (s->tx != NULL)
		txn_end(s, "aborted");
	if (s->prev != NULL)
		s->prev->next = s->next;
	else if (s->sink->sessions == s)
		s->sink->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	if (s->bev != NULL) {
		if ((under = bufferevent_get_underlying(s->bev)) != NULL)
			evbuffer_remove_cb(bufferevent_get_output(under),
			                   on_under_drain, s);
		bufferevent_free(s->bev);
	}
	if (s->timer != NULL)
		event_free(s->timer);
	if (s->free_ev != NULL)
		event_free(s->free_ev);
	free(s->pending);
	free(s);
}

static void on_free(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	session_free(arg);
}

/* output_empty - nothing left to send, TLS filter included */
static int output_empty(struct session *s)
{
	struct bufferevent *under = bufferevent_get_underlying(s->bev);

	if (evbuffer_get_length(bufferevent_get_output(s->bev)) > 0)
		return 0;
	return under == NULL ||
	       evbuffer_get_length(bufferevent_get_output(under)) == 0;
}

static void close_check(struct session *s)
{
	if (s->state == ST_CLOSING && output_empty(s))
		event_active(s->free_ev, EV_TIMEOUT, 1);
}

static void on_under_drain(struct evbuffer *b,
                           const struct evbuffer_cb_info *info, void *arg)
{
	(void)b;
	(void)info;
	close_check(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	(void)bev;
	close_check(arg);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;

	(void)bev;
	if (what & BEV_EVENT_CONNECTED)
		return; /* TLS handshake done */
	if (s->state == ST_CLOSING) {
		event_active(s->free_ev, EV_TIMEOUT, 1);
		return;
	}
	if (what & BEV_EVENT_EOF)
		session_close(s, "peer");
	else if (what & BEV_EVENT_TIMEOUT)
		session_close(s, "timeout");
	else
		session_close(s, "error");
	event_active(s->free_ev, EV_TIMEOUT, 1); /* peer is gone: don't wait */
}

/* session_close - log the connection, then free once output has left */
void session_close(struct session *s, const char *reason)
{
	struct bufferevent *under;

	if (s->state == ST_CLOSING)
		return;
	if (s->tx != NULL)
		txn_end(s, "aborted");
	s->close_reason = reason;
	s->state = ST_CLOSING;
	log_connection(s);
	bufferevent_disable(s->bev, EV_READ);
	bufferevent_setcb(s->bev, NULL, on_write, on_event, s);
	if ((under = bufferevent_get_underlying(s->bev)) != NULL)
		evbuffer_add_cb(bufferevent_get_output(under), on_under_drain, s);
	close_check(s);
}

static void on_tls_read(struct bufferevent *bev, void *arg);

/* session_start_tls - wrap the connection after "220 Ready to start TLS" */
static void session_start_tls(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	SSL *ssl = SSL_new(s->sink->tls);
	struct bufferevent *f;

	evbuffer_drain(in, evbuffer_get_length(in)); /* no plaintext injection */
	f = bufferevent_openssl_filter_new(s->sink->base, s->bev, ssl,
	                                   BUFFEREVENT_SSL_ACCEPTING,
	                                   BEV_OPT_CLOSE_ON_FREE);
	if (f == NULL) {
		SSL_free(ssl);
		session_close(s, "error");
		return;
	}
	s->bev = f;
	s->tls = 1;
	s->esmtp = 0;
	s->helo[0] = '\0';
	s->helo_cmd = NULL;
	bufferevent_setcb(f, on_tls_read, on_write, on_event, s);
	bufferevent_setwatermark(f, EV_READ, 0, INPUT_HIGH_WATER);
	bufferevent_set_timeouts(f, &(struct timeval){ s->sink->idle_timeout_s, 0 },
	                         NULL);
	bufferevent_enable(f, EV_READ | EV_WRITE);
}

/* session_send - put a reply on the wire and run what follows it */
static void session_send(struct session *s, const char *text,
                         enum after after)
{
	reply_wire(bufferevent_get_output(s->bev), text);
	if (after == AFTER_CLOSE)
		session_close(s, reply_is(text, '2') ? "quit" : "421");
	else if (after == AFTER_TLS)
		session_start_tls(s);
}

static void on_delay(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	char *text = s->pending;

	(void)fd;
	(void)what;
	s->pending = NULL;
	s->paused = 0;
	session_send(s, text, s->pending_after);
	free(text);
	if (s->state != ST_CLOSING)
		session_process(s);
}

/* session_reply - give text as the reply of phase ph, unless the behaviour
 * says to drop the connection or hang there; delay it if asked. Any 421
 * closes the connection after it is sent. */
void session_reply(struct session *s, enum phase ph, const char *text,
                   enum after after)
{
	const struct behaviour *b = session_beh(s);
	unsigned delay = b->delay_ms[ph] ? b->delay_ms[ph] : b->delay_all;
	struct timeval tv = { delay / 1000, (delay % 1000) * 1000 };

	if (b->drop_at == (int)ph) {
		session_close(s, "drop");
		return;
	}
	if (b->hang_at == (int)ph) {
		s->state = ST_HANG;
		return;
	}
	if (strncmp(text, "421", 3) == 0)
		after = AFTER_CLOSE;
	if (delay == 0) {
		session_send(s, text, after);
		return;
	}
	s->pending = xstrdup(text);
	s->pending_after = after;
	s->paused = 1;
	evtimer_add(s->timer, &tv);
}

/* session_line - one command line, or 0 when none is complete yet */
static int session_line(struct session *s, struct evbuffer *in)
{
	size_t n;
	char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);

	if (line == NULL) {
		if (evbuffer_get_length(in) > MAX_LINE) {
			session_reply(s, PH_OTHER, "500 5.5.2 Line too long",
			              AFTER_NONE);
			session_close(s, "line_too_long");
		}
		return 0;
	}
	s->commands++;
	if (n > MAX_LINE || strlen(line) != n)
		session_reply(s, PH_OTHER, "500 5.5.2 Line too long or NUL byte",
		              AFTER_NONE);
	else
		cmd_dispatch(s, line);
	free(line);
	return 1;
}

/* session_process - handle buffered input in order until paused */
static void session_process(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);

	while (!s->paused) {
		switch (s->state) {
		case ST_CLOSING:
			return;
		case ST_HANG:
			evbuffer_drain(in, evbuffer_get_length(in));
			return;
		case ST_DATA:
			if (!body_data_feed(s))
				return;
			body_end(s);
			break;
		case ST_BDAT:
			if (!body_bdat_feed(s))
				return;
			body_chunk_end(s);
			break;
		case ST_CMD:
			if (!session_line(s, in))
				return;
			break;
		}
	}
}

static void on_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	session_process(arg);
}

static void on_tls_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	session_process(arg);
}

const struct behaviour *session_beh(const struct session *s)
{
	const struct behaviour *b = s->lst->beh;

	for (size_t i = 0; i < b->n_peers; i++)
		if (strcmp(b->peers[i].ip, s->peer) == 0)
			return b->peers[i].beh;
	return b;
}

static void peer_text(struct session *s, struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &a6->sin6_addr, s->peer, sizeof(s->peer));
		s->peer_port = ntohs(a6->sin6_port);
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &a4->sin_addr, s->peer, sizeof(s->peer));
		s->peer_port = ntohs(a4->sin_port);
	}
}

/* session_accept - a new connection on listener l: greet it */
void session_accept(struct listener *l, int fd, struct sockaddr *sa)
{
	struct session *s = xcalloc(1, sizeof(*s));
	struct event_base *base = l->sink->base;

	s->sink = l->sink;
	s->lst = l;
	if ((s->next = l->sink->sessions) != NULL)
		s->next->prev = s;
	l->sink->sessions = s;
	s->id = ++l->sink->next_conn;
	s->start_ms = now_ms();
	peer_text(s, sa);
	s->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	s->timer = evtimer_new(base, on_delay, s);
	s->free_ev = event_new(base, -1, 0, on_free, s);
	if (s->bev == NULL || s->timer == NULL || s->free_ev == NULL) {
		if (s->bev == NULL)
			evutil_closesocket(fd);
		session_free(s);
		return;
	}
	bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, INPUT_HIGH_WATER);
	bufferevent_set_timeouts(s->bev,
	                         &(struct timeval){ l->sink->idle_timeout_s, 0 },
	                         NULL);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	log_connect(s);
	cmd_greet(s);
}

/* session_close_all - at shutdown: log and free every open session */
void session_close_all(struct sink *sk)
{
	while (sk->sessions != NULL) {
		session_close(sk->sessions, "shutdown");
		session_free(sk->sessions);
	}
}
