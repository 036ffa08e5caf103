/*
 * smtpc_body.c - the body encoder: turns the stored body into its wire form
 * in chunks, so a body of any size streams through a fixed buffer.
 *
 * Every bare CR and bare LF becomes CRLF (we never transmit a lone CR or
 * LF), a line longer than 998 octets is broken with CRLF SPACE (RFC 5322
 * 2.1.1 limit; the least damage to MIME, Postfix smtp_line_length_limit),
 * the text ends with CRLF, and for DATA a leading "." of a line is
 * doubled and ".\r\n" ends the data (RFC 5321 4.5.2). For BDAT the same
 * line-end fixing applies without dot-stuffing. The pump below moves the
 * body of the transaction in flight into the session's output buffer,
 * at most SMTPC_OUT_HIGH at a time, refilled from the write callback
 * (bounded memory whatever the body size). Delivery loop thread.
 */
#include "smtpclient/smtpc_internal.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include <stdio.h>

void
smtpc_dot_init(struct smtpc_dot *d, int dotstuff)
{
	d->col = 0;
	d->bol = 1;
	d->cr = 0;
	d->dotstuff = dotstuff;
}

/* put_crlf - end the wire line */
static size_t
put_crlf(struct smtpc_dot *d, char *out)
{
	out[0] = '\r';
	out[1] = '\n';
	d->bol = 1;
	d->col = 0;
	return 2;
}

size_t
smtpc_dot_encode(struct smtpc_dot *d, const char *in, size_t len, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		char ch = in[i];
		if (d->cr) {          /* CR seen: CRLF either way */
			o += put_crlf(d, out + o);
			d->cr = 0;
			if (ch == '\n')
				continue;
		}
		if (ch == '\r') {
			d->cr = 1;
			continue;
		}
		if (ch == '\n') {
			o += put_crlf(d, out + o);
			continue;
		}
		if (d->col >= SMTPC_BODY_LINE_MAX) {   /* fold: CRLF SPACE */
			o += put_crlf(d, out + o);
			out[o++] = ' ';
			d->col = 1;
			d->bol = 0;
		}
		if (ch == '.' && d->bol && d->dotstuff) {
			out[o++] = '.';
			d->col++;
		}
		out[o++] = ch;
		d->col++;
		d->bol = 0;
	}
	return o;
}

size_t
smtpc_dot_finish(struct smtpc_dot *d, char *out)
{
	size_t o = 0;

	if (d->cr || !d->bol)
		o += put_crlf(d, out + o);
	d->cr = 0;
	if (d->dotstuff) {
		out[o++] = '.';
		out[o++] = '\r';
		out[o++] = '\n';
	}
	return o;
}

/* ---- the pump ---- */

/* smtpc_txn_bdat_inline - small body as one "BDAT n LAST" in the group;
 * 0 done, -1 body read error */
int
smtpc_txn_bdat_inline(struct smtpc_conn *c, struct smtpc_txn *t)
{
	struct evbuffer *out = smtpc_session_output(c);
	struct evbuffer *tmp = evbuffer_new();
	ssize_t n;
	size_t m;

	while ((n = t->batch->body->read(t->batch->body_ctx, c->rbuf,
	                                 SMTPC_CHUNK)) > 0) {
		m = smtpc_dot_encode(&t->dot, c->rbuf, (size_t)n, c->sbuf);
		evbuffer_add(tmp, c->sbuf, m);
	}
	m = smtpc_dot_finish(&t->dot, c->sbuf);
	evbuffer_add(tmp, c->sbuf, m);
	if (n < 0) {
		evbuffer_free(tmp);
		return -1;
	}
	evbuffer_add_printf(out, "BDAT %zu LAST\r\n", evbuffer_get_length(tmp));
	evbuffer_add_buffer(out, tmp);
	evbuffer_free(tmp);
	c->expect++;
	t->bdat_inline = t->last_sent = 1;
	return 0;
}

/* pump_data - one DATA chunk (dot-stuffed); 1 = end reached */
static int
pump_data(struct smtpc_conn *c, struct smtpc_txn *t, ssize_t n)
{
	struct evbuffer *out = smtpc_session_output(c);
	struct evbuffer_iovec v;
	size_t m;

	if (evbuffer_reserve_space(out, 2 * (size_t)n + 16, &v, 1) < 1)
		return -1;
	if (n == 0) {
		v.iov_len = smtpc_dot_finish(&t->dot, v.iov_base);
		evbuffer_commit_space(out, &v, 1);
		return 1;
	}
	m = smtpc_dot_encode(&t->dot, c->rbuf, (size_t)n, v.iov_base);
	v.iov_len = m;
	evbuffer_commit_space(out, &v, 1);
	return 0;
}

/* pump_bdat - one BDAT chunk; the last one (seen by reading one chunk
 * ahead once size() bytes were read) says LAST. 1 = end, -1 error */
static int
pump_bdat(struct smtpc_conn *c, struct smtpc_txn *t, ssize_t n)
{
	const struct smtpc_batch *b = t->batch;
	size_t m = smtpc_dot_encode(&t->dot, c->rbuf, (size_t)n, c->sbuf);
	ssize_t k = 1;

	t->body_read += (uint64_t)n;
	t->rbuf_have = 0;
	if (n == 0 || t->body_read >= t->body_size) {
		k = n == 0 ? 0 : b->body->read(b->body_ctx, c->rbuf, SMTPC_CHUNK);
		if (k < 0)
			return -1;
		if (k == 0)
			m += smtpc_dot_finish(&t->dot, c->sbuf + m);
		t->rbuf_have = (size_t)k;
	}
	evbuffer_add_printf(smtpc_session_output(c), "BDAT %zu%s\r\n", m,
	                    k == 0 ? " LAST" : "");
	evbuffer_add(smtpc_session_output(c), c->sbuf, m);
	c->expect++;
	if (k != 0)
		t->bdat_outstanding++;
	return k == 0;
}

void
smtpc_txn_pump(struct smtpc_conn *c)
{
	struct smtpc_txn *t = c->txn;
	const struct smtpc_batch *b = t->batch;
	struct evbuffer *out = smtpc_session_output(c);
	ssize_t n;
	int rv = 0;

	while (rv == 0 && evbuffer_get_length(out) < SMTPC_OUT_HIGH) {
		if (t->bdat && !c->pipelining && t->bdat_outstanding > 0)
			break;             /* one chunk at a time */
		n = t->rbuf_have ? (ssize_t)t->rbuf_have :
		    b->body->read(b->body_ctx, c->rbuf, SMTPC_CHUNK);
		if (n < 0)
			rv = -1;
		else
			rv = t->bdat ? pump_bdat(c, t, n) : pump_data(c, t, n);
		if (rv == 1 && !t->bdat)
			c->expect++;       /* the reply to the final dot */
	}
	if (rv < 0) {
		smtpc_session_fail(c, SMTPC_ERR_BODY, "cannot read the message body");
		return;
	}
	if (rv == 1) {
		t->last_sent = 1;
		smtpc_enter_state(c, SMTPC_S_EOM);
		return;
	}
	smtpc_session_arm(c, c->opts.timeouts.data_block ?
	                  c->opts.timeouts.data_block : 180000);
}
