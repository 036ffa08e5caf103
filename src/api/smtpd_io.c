/*
 * smtpd_io.c - the transport under a session: a plain socket (Unix or TCP)
 * driven by two events and our own buffers, or a TLS bufferevent (implicit
 * TLS, or after STARTTLS). Plain sockets skip bufferevent on purpose: it
 * costs an ioctl(FIONREAD) per read and an epoll_ctl pair per reply, which
 * is most of a submission's system calls. Loop thread only.
 *
 * Upward calls (smtpd_session.c): smtpd_session_on_input() after bytes
 * arrived in s->in, smtpd_session_on_drained() when all output is out,
 * smtpd_session_on_lost() at EOF or error, smtpd_session_on_tls() when a
 * handshake completed. Each is a top-level callback that ends the chain.
 */
#include "api/smtpd_internal.h"

#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "core/core.h"

#define READ_CHUNK 16384

static void
on_plain_read(evutil_socket_t fd, short what, void *arg)
{
	struct smtpd_session *s = arg;
	struct evbuffer_iovec v;
	ssize_t n;

	(void)what;
	if (evbuffer_reserve_space(s->in, READ_CHUNK, &v, 1) < 1) {
		smtpd_session_on_lost(s, 1);
		return;
	}
	n = recv(fd, v.iov_base, v.iov_len, 0);
	if (n > 0) {
		v.iov_len = (size_t)n;
		evbuffer_commit_space(s->in, &v, 1);
		smtpd_session_on_input(s);
		return;
	}
	evbuffer_commit_space(s->in, NULL, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	smtpd_session_on_lost(s, n < 0);
}

/* plain_write - as much of s->out as the socket takes; -1 on error */
static int
plain_write(struct smtpd_session *s)
{
	if (evbuffer_write(s->out, s->fd) < 0 && errno != EAGAIN &&
	    errno != EWOULDBLOCK && errno != EINTR)
		return -1;
	if (evbuffer_get_length(s->out) > 0)
		event_add(s->wev, NULL);
	return 0;
}

static void
on_plain_write(evutil_socket_t fd, short what, void *arg)
{
	struct smtpd_session *s = arg;

	(void)fd;
	(void)what;
	if (plain_write(s) < 0)
		smtpd_session_on_lost(s, 1);
	else if (evbuffer_get_length(s->out) == 0)
		smtpd_session_on_drained(s);
}

int
smtpd_io_plain(struct smtpd_session *s)
{
	struct event_base *base = s->sd->base;

	s->in = evbuffer_new();
	s->own_in = 1;
	s->rev = event_new(base, s->fd, EV_READ | EV_PERSIST, on_plain_read, s);
	s->wev = event_new(base, s->fd, EV_WRITE, on_plain_write, s);
	return (s->in && s->rev && s->wev) ? 0 : -1;
}

static void
on_tls_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	smtpd_session_on_input(arg);
}

static void
on_tls_write(struct bufferevent *bev, void *arg)
{
	(void)bev;
	smtpd_session_on_drained(arg);
}

static void
on_tls_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & BEV_EVENT_CONNECTED)
		smtpd_session_on_tls(arg);
	else
		smtpd_session_on_lost(arg, (what & BEV_EVENT_ERROR) != 0);
}

/* plain_free - drop the plain transport's events and input buffer */
static void
plain_free(struct smtpd_session *s)
{
	if (s->rev)
		event_free(s->rev);
	if (s->wev)
		event_free(s->wev);
	s->rev = s->wev = NULL;
	if (s->own_in && s->in)
		evbuffer_free(s->in);
	s->in = NULL;
	s->own_in = 0;
	s->reading = 0;
}

int
smtpd_io_tls(struct smtpd_session *s)
{
	SSL *ssl = SSL_new(s->l->tls);

	plain_free(s);
	if (ssl == NULL)
		return -1;
	s->bev = bufferevent_openssl_socket_new(s->sd->base, s->fd, ssl,
	                                        BUFFEREVENT_SSL_ACCEPTING,
	                                        BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		SSL_free(ssl);
		return -1;
	}
	s->bev_owns_fd = 1;
	s->in = bufferevent_get_input(s->bev);
	bufferevent_setcb(s->bev, on_tls_read, on_tls_write, on_tls_event, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, SMTPD_READ_HIGH);
	bufferevent_enable(s->bev, EV_WRITE);
	return 0;
}

void
smtpd_io_reading(struct smtpd_session *s, int on)
{
	if (on == s->reading || s->fd < 0)
		return;
	s->reading = on;
	if (s->bev)
		(on ? bufferevent_enable : bufferevent_disable)(s->bev, EV_READ);
	else if (on)
		event_add(s->rev, NULL);
	else
		event_del(s->rev);
}

int
smtpd_io_flush(struct smtpd_session *s)
{
	if (s->fd < 0 || evbuffer_get_length(s->out) == 0)
		return 0;
	if (s->bev)
		return evbuffer_add_buffer(bufferevent_get_output(s->bev), s->out);
	if (event_pending(s->wev, EV_WRITE, NULL))
		return 0; /* on_plain_write sends it in order */
	return plain_write(s);
}

int
smtpd_io_input_waiting(struct smtpd_session *s)
{
	char c;

	if (s->bev)
		return evbuffer_get_length(s->in) > 0;
	return s->fd >= 0 && recv(s->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

size_t
smtpd_io_pending(struct smtpd_session *s)
{
	return evbuffer_get_length(s->out) +
	       (s->bev ? evbuffer_get_length(bufferevent_get_output(s->bev)) : 0);
}

int
smtpd_io_idle(struct smtpd_session *s)
{
	return smtpd_io_pending(s) == 0;
}

const char *
smtpd_io_tls_info(struct smtpd_session *s, char *buf, size_t len)
{
	SSL *ssl = s->bev ? bufferevent_openssl_get_ssl(s->bev) : NULL;

	if (ssl == NULL)
		return NULL;
	snprintf(buf, len, "version=%s cipher=%s", SSL_get_version(ssl),
	         SSL_get_cipher_name(ssl));
	return buf;
}

void
smtpd_io_free(struct smtpd_session *s)
{
	plain_free(s);
	if (s->bev) {
		bufferevent_free(s->bev); /* closes fd (BEV_OPT_CLOSE_ON_FREE) */
		s->bev = NULL;
		s->in = NULL;
	} else if (s->fd >= 0) {
		close(s->fd);
	}
	s->fd = -1;
}
