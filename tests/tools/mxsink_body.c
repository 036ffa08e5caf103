/*
 * mxsink_body.c - message bodies of the sink: DATA (dot-unstuffed, ended by
 * CRLF.CRLF) and BDAT chunks (taken verbatim), hashed with SHA-256 as
 * received, optionally saved to --save-bodies DIR, and the final reply.
 * Input is consumed straight from the bufferevent's chunks (no per-line
 * copies), so benchmarks are not limited by the sink. Main loop only.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "core/core.h"
#include "mxsink_internal.h"

/* DATA parser states; the body starts at the beginning of a line */
enum { S_BOL = 0, S_MID, S_CR, S_DOT, S_DOTCR };

static void emit(struct session *s, const unsigned char *p, size_t n)
{
	struct txn *t = s->tx;
	uint64_t max = session_beh(s)->size;

	if (n == 0)
		return;
	EVP_DigestUpdate(t->md, p, n);
	t->size += n;
	if (t->save != NULL)
		fwrite(p, 1, n, t->save);
	if (max > 0 && t->size > max)
		t->too_big = 1;
}

void body_begin(struct session *s)
{
	struct txn *t = s->tx;
	char path[4096];

	t->md = EVP_MD_CTX_new();
	EVP_DigestInit_ex(t->md, EVP_sha256(), NULL);
	t->size = 0;
	t->dot_state = S_BOL;
	if (s->sink->save_dir == NULL)
		return;
	snprintf(path, sizeof(path), "%s/c%llu-t%u.eml", s->sink->save_dir,
	         (unsigned long long)s->id, t->n);
	if ((t->save = fopen(path, "wb")) != NULL)
		json_object_set_new(t->rec, "body_file", log_str(path));
}

/* unstuff - feed n bytes of DATA; 1 when CRLF.CRLF ended the body, with
 * *used the bytes consumed (the rest are the next commands) */
static int unstuff(struct session *s, const unsigned char *p, size_t n,
                   size_t *used)
{
	int st = s->tx->dot_state;
	size_t i = 0, span = 0;
	const unsigned char *cr;

	while (i < n) {
		switch (st) {
		case S_MID:
			cr = memchr(p + i, '\r', n - i);
			i = cr ? (size_t)(cr - p) + 1 : n;
			st = cr ? S_CR : S_MID;
			continue;
		case S_BOL:
			if (p[i] == '.') {
				emit(s, p + span, i - span);
				span = i + 1; /* drop the stuffed dot */
				st = S_DOT;
			} else
				st = p[i] == '\r' ? S_CR : S_MID;
			break;
		case S_CR:
			st = p[i] == '\n' ? S_BOL : p[i] == '\r' ? S_CR : S_MID;
			break;
		case S_DOT:
			if (p[i] == '\r') {
				span = i + 1; /* hold the CR: end of data? */
				st = S_DOTCR;
			} else
				st = S_MID;
			break;
		case S_DOTCR:
			if (p[i] == '\n') {
				*used = i + 1;
				s->tx->dot_state = S_BOL;
				return 1;
			}
			emit(s, (const unsigned char *)"\r", 1);
			st = p[i] == '\r' ? S_CR : S_MID;
			break;
		}
		i++;
	}
	emit(s, p + span, n - span);
	*used = n;
	s->tx->dot_state = st;
	return 0;
}

int body_data_feed(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer_iovec v;
	size_t used;
	int done;

	while (evbuffer_peek(in, -1, NULL, &v, 1) > 0 && v.iov_len > 0) {
		done = unstuff(s, v.iov_base, v.iov_len, &used);
		evbuffer_drain(in, used);
		if (done)
			return 1;
	}
	return 0;
}

int body_bdat_feed(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer_iovec v;
	size_t n;

	while (s->bdat_left > 0 && evbuffer_peek(in, -1, NULL, &v, 1) > 0 &&
	       v.iov_len > 0) {
		n = v.iov_len < s->bdat_left ? v.iov_len : (size_t)s->bdat_left;
		if (s->bdat_ok)
			emit(s, v.iov_base, n);
		evbuffer_drain(in, n);
		s->bdat_left -= n;
	}
	return s->bdat_left == 0;
}

static void digest_hex(struct txn *t, char *hex)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	EVP_DigestFinal_ex(t->md, md, &len);
	for (unsigned int i = 0; i < len; i++)
		sprintf(hex + 2 * i, "%02x", md[i]);
	hex[2 * len] = '\0';
}

/* final_reply - what the end of a message gets */
static const char *final_reply(struct session *s, char *buf, size_t len)
{
	if (s->tx->too_big)
		return "552 5.3.4 Message size exceeds fixed maximum message size";
	if (session_tempfail_hit(s, PH_DOT))
		return session_beh(s)->tempfail_reply;
	snprintf(buf, len, "250 2.0.0 Ok: queued as c%llu-t%u",
	         (unsigned long long)s->id, s->tx->n);
	return session_default(s, PH_DOT, buf);
}

/* body_end - the message is complete: log it, then reply */
void body_end(struct session *s)
{
	const struct behaviour *b = session_beh(s);
	struct txn *t = s->tx;
	char hex[2 * EVP_MAX_MD_SIZE + 1], buf[100];
	const char *text = final_reply(s, buf, sizeof(buf)), *status;

	s->state = ST_CMD;
	digest_hex(t, hex);
	json_object_set_new(t->rec, "method", json_string(t->method_bdat ?
	                                                  "BDAT" : "DATA"));
	json_object_set_new(t->rec, "body_size", json_integer((json_int_t)t->size));
	json_object_set_new(t->rec, "sha256", json_string(hex));
	json_object_set_new(t->rec, "final_reply",
	                    session_sent_text(s, PH_DOT, text));
	if (b->drop_at == PH_DOT)
		status = "dropped";
	else if (b->hang_at == PH_DOT)
		status = "hung";
	else
		status = reply_is(text, '2') ? "delivered" : "rejected";
	if (strcmp(status, "delivered") == 0)
		s->messages++;
	txn_end(s, status);
	session_reply(s, PH_DOT, text, AFTER_NONE);
}

/* body_chunk_end - a BDAT chunk was read: reply to it */
void body_chunk_end(struct session *s)
{
	char buf[100];
	const char *text;

	s->state = ST_CMD;
	if (s->tx != NULL)
		s->tx->chunks++;
	if (s->bdat_ok && s->bdat_last) {
		body_end(s);
		return;
	}
	if (!session_beh(s)->chunking && session_beh(s)->strict)
		text = "502 5.5.1 BDAT not supported";
	else if (s->tx == NULL || s->tx->method_data)
		text = "503 5.5.1 Bad sequence of commands";
	else if (s->tx->accepted == 0)
		text = "554 5.5.1 No valid recipients";
	else {
		snprintf(buf, sizeof(buf), "250 2.0.0 %llu octets received",
		         (unsigned long long)s->tx->size);
		text = session_default(s, PH_BDAT, buf);
	}
	session_reply(s, PH_BDAT, text, AFTER_NONE);
}
