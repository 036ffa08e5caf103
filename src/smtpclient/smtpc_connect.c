/*
 * smtpc_connect.c - opening a session: the exchangers' addresses tried in
 * order (connect failure, greeting refusal or required TLS failing moves
 * to the next, up to max_addresses), destination safety, source address
 * binding; and the end of a session, which settles the transaction in
 * flight and tells the owner once. Runs on the caller's libevent loop.
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
#include <string.h>
#include <unistd.h>

/* smtpc_session_drop - free the connection's bufferevent (and socket) */
void
smtpc_session_drop(struct smtpc_conn *c)
{
	if (c->bev != NULL) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	evtimer_del(c->timer);
	c->expect = 0;
	smtpc_reply_reset(&c->reply);
	c->tls_on = 0;
	c->tls_proto[0] = c->tls_cipher[0] = '\0';
}

/* target_sockaddr - the next target as a sockaddr; 0 ok, -1 unusable */
static int
target_sockaddr(struct smtpc_conn *c, const struct smtpc_target *t,
                struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, t->addr, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)c->opts.port);
		*len = sizeof(*s4);
		return 0;
	}
	if (inet_pton(AF_INET6, t->addr, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)c->opts.port);
		*len = sizeof(*s6);
		return 0;
	}
	return -1;
}

/* open_socket - non-blocking socket of family, bound to the source */
static evutil_socket_t
open_socket(struct smtpc_conn *c, int family, char *why, size_t wlen)
{
	struct sockaddr_storage src;
	struct smtpc_target st = { 0, c->source_addr };
	socklen_t slen = 0;
	evutil_socket_t fd;
	int one = 1;

	if (c->source_addr != NULL &&
	    (target_sockaddr(c, &st, &src, &slen) < 0 || src.ss_family != family)) {
		snprintf(why, wlen, "source address %s unusable for this family",
		         c->source_addr);
		return -1;
	}
	if ((fd = socket(family, SOCK_STREAM, 0)) < 0) {
		snprintf(why, wlen, "socket: %s", strerror(errno));
		return -1;
	}
	evutil_make_socket_nonblocking(fd);
	evutil_make_socket_closeonexec(fd);
	/* we write whole command groups; Nagle would only delay the last one */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (c->source_addr != NULL) {
		((struct sockaddr_in *)&src)->sin_port = 0;
		if (bind(fd, (struct sockaddr *)&src, slen) < 0) {
			snprintf(why, wlen, "bind %s: %s", c->source_addr,
			         strerror(errno));
			close(fd);
			return -1;
		}
	}
	return fd;
}

/* try_target - start connecting to target t; 0 started, -1 skipped */
static int
try_target(struct smtpc_conn *c, const struct smtpc_target *t, char *why,
           size_t wlen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	evutil_socket_t fd;

	c->cur_mx = c->mx_names[t->mx];
	snprintf(c->cur_addr, sizeof(c->cur_addr), "%s", t->addr);
	if (target_sockaddr(c, t, &ss, &len) < 0) {
		snprintf(why, wlen, "not a numeric address: %s", t->addr);
		return -1;
	}
	if (!smtpc_dest_allowed(c->opts.allow_private, (struct sockaddr *)&ss)) {
		snprintf(why, wlen, "refusing %s destination %s[%s]",
		         smtpc_addr_class_name(smtpc_addr_classify(
		             (struct sockaddr *)&ss)), c->cur_mx, t->addr);
		c->unsafe_skipped++;
		return -1;
	}
	if ((fd = open_socket(c, ss.ss_family, why, wlen)) < 0)
		return -1;
	c->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
	smtpc_session_setcb(c, c->bev);
	bufferevent_setwatermark(c->bev, EV_WRITE, SMTPC_OUT_LOW, 0);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->attempts++;
	smtpc_enter_state(c, SMTPC_S_CONNECT);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss,
	                               (int)len) < 0) {
		snprintf(why, wlen, "connect: %s", strerror(errno));
		smtpc_session_drop(c);
		return -1;
	}
	return 0;
}

/* smtpc_session_next_target - this address failed (why = fmt); try the next */
void
smtpc_session_next_target(struct smtpc_conn *c, enum smtpc_error err,
                    const char *fmt, ...)
{
	char why[384];
	unsigned max = c->opts.max_addresses ? c->opts.max_addresses : 5;
	va_list ap;

	if (max < 2)
		max = 2;                  /* RFC 5321 5.1: at least two */
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	smtpc_session_drop(c);
	for (;;) {
		if (err != SMTPC_ERR_NONE && why[0] != '\0') {
			log_info(c->sid, "%s[%s]: %s", c->cur_mx ? c->cur_mx : "-",
			         c->cur_addr, why);
			snprintf(c->reason, sizeof(c->reason), "%s[%s]: %s",
			         c->cur_mx ? c->cur_mx : "-", c->cur_addr, why);
			c->err = err;
		}
		if (c->next_target >= c->n_targets || c->attempts >= max)
			break;
		why[0] = '\0';
		err = SMTPC_ERR_CONNECT;
		if (try_target(c, &c->targets[c->next_target++], why,
		               sizeof(why)) == 0)
			return;
		if (c->unsafe_skipped > 0 && strncmp(why, "refusing", 8) == 0)
			err = SMTPC_ERR_UNSAFE_DEST;
	}
	if (c->err == SMTPC_ERR_NONE) {
		c->err = SMTPC_ERR_CONNECT;
		snprintf(c->reason, sizeof(c->reason), "no address to connect to");
	}
	smtpc_session_end(c, c->err, c->reason, NULL);
}

void
smtpc_session_fail(struct smtpc_conn *c, enum smtpc_error err,
                   const char *fmt, ...)
{
	char why[384];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	snprintf(c->reason, sizeof(c->reason), "%s[%s]: %s",
	         c->cur_mx ? c->cur_mx : "-", c->cur_addr, why);
	log_info(c->sid, "%s", c->reason);
	smtpc_session_end(c, err, c->reason, NULL);
}

/* smtpc_session_end - settle the transaction in flight, close, tell the owner */
void
smtpc_session_end(struct smtpc_conn *c, enum smtpc_error err, const char *reason,
            const struct smtpc_reply *r)
{
	if (c->state == SMTPC_S_CLOSED)
		return;
	c->err = err;
	if (reason != c->reason)
		snprintf(c->reason, sizeof(c->reason), "%s", reason);
	c->info.error = err;
	c->info.reason = c->reason;
	if (c->txn != NULL)
		smtpc_txn_abort(c, err, c->reason, r);
	smtpc_session_drop(c);
	c->state = SMTPC_S_CLOSED;
	if (c->free_pending || c->closed_sent)
		return;
	c->closed_sent = 1;
	log_debug(c->sid, "session closed: %s (%s)", smtpc_error_name(err),
	          c->reason);
	if (c->cbs.closed)
		c->cbs.closed(c, c->arg);
}

