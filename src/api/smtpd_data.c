/*
 * smtpd_data.c - message data of a session: DATA (dot-stuffed, ends at
 * <CR><LF>.<CR><LF> only) and BDAT chunks (RFC 3030), streamed into a queue
 * writer as they arrive, never held whole.
 *
 * Strict: a bare CR or bare LF, or a NUL, anywhere in the data fails the
 * message (SMTP smuggling, CVE-2023-51764 class); so does passing the size
 * limit. A failed message is read to its end, answered 5xx, and nothing of
 * it is queued. The header section (up to SMTPD_HDR_MAX) is held back to
 * prepend Received: and, on relay (TCP) listeners, add Message-ID:/Date:
 * when missing. The final 250 is sent from the store's commit callback,
 * i.e. once the message is durable. Loop thread only.
 */
#include "api/smtpd_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "core/core.h"
#include "queue/queue.h"

#include <jansson.h>

/* mono_us - monotonic microseconds (commit latency in the log) */
static uint64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* set_err - first reason this message is refused (later ones ignored) */
static void
set_err(struct smtpd_session *s, const char *reply)
{
	if (s->data_err == NULL)
		s->data_err = reply;
}

/* begin_writer - open the store writer with envelope and recipients */
static int
begin_writer(struct smtpd_session *s)
{
	struct queue_envelope env = { 0 };
	struct account *a = smtpd_session_account(s);
	char envid[SMTPD_ENVID_MAX + 1];
	size_t i;

	env.sender = s->sender;
	env.listener = s->l->cfg->name;
	env.tenant = a ? a->tenant : NULL;
	if (s->margs.envid[0] &&
	    smtpd_xtext_decode(s->margs.envid, strlen(s->margs.envid), 0, envid,
	                       sizeof(envid)) == 0)
		env.envid = envid;
	env.ret = s->margs.ret == RET_FULL ? QUEUE_RET_FULL
	        : s->margs.ret == RET_HDRS ? QUEUE_RET_HDRS : QUEUE_RET_UNSET;
	env.flags = (s->margs.smtputf8 || s->utf8 ? QUEUE_MSG_SMTPUTF8 : 0) |
	            (s->margs.body_8bit ? QUEUE_MSG_8BITMIME : 0);
	if ((s->w = queue_msg_begin(s->sd->q, &env)) == NULL)
		return -1;
	for (i = 0; i < s->n_rcpts; i++) {
		struct queue_rcpt_in ri = { s->rcpts[i].addr, NULL, s->rcpts[i].notify,
		                            s->rcpts[i].orcpt };
		if (queue_msg_add_rcpt(s->w, &ri) < 0) {
			queue_msg_abort(s->w);
			s->w = NULL;
			return -1;
		}
	}
	return 0;
}

/* scan_reset - fresh scanner and header buffer for a new message */
static void
scan_reset(struct smtpd_session *s)
{
	s->ds = D_BOL;
	s->data_err = NULL;
	s->data_bytes = 0;
	s->hdr_len = 0;
	s->hdr_done = 0;
	if (s->hdr == NULL)
		s->hdr = xmalloc(SMTPD_HDR_MAX);
}

static void
put(struct smtpd_session *s, const void *p, size_t n)
{
	if (s->data_err == NULL && n && queue_msg_write(s->w, p, n) < 0)
		set_err(s, "552 5.3.4 Message too big for the spool");
}

/* received - the trace header of this hop (RFC 5321 4.4, RFC 3848) */
static void
received(struct smtpd_session *s, const char *date)
{
	char buf[2048], qid[QUEUE_ID_TEXT_LEN];
	size_t n = 0;

	queue_id_to_text(queue_msg_id(s->w), qid);
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "Received: from %s ", s->helo);
	if (s->ip[0])
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "([%s])", s->ip);
	else
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "(unix socket %s)", s->l->cfg->name);
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n\tby %s (mxbatch) with %s%s%s%s id %s",
	                      s->sd->hostname, s->margs.smtputf8 ? "UTF8" : "",
	                      s->esmtp ? "ESMTP" : "SMTP", s->tls ? "S" : "",
	                      s->user ? "A" : "", qid);
	if (s->tls)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n\t(%s)", s->tls_info);
	if (s->user)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n\t(authenticated as %s)", s->user);
	if (s->n_rcpts == 1)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n\tfor <%s>", s->rcpts[0].addr);
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, ";\r\n\t%s\r\n", date);
	put(s, buf, n < sizeof(buf) ? n : 0); /* parts are bounded: always fits */
}

/* has_field - is there a header field "name:" in hdr[0..len)? */
static int
has_field(const char *hdr, size_t len, const char *name)
{
	size_t nl = strlen(name), i;

	for (i = 0; i + nl <= len; ) {
		if (strncasecmp(hdr + i, name, nl) == 0)
			return 1;
		const char *lf = memchr(hdr + i, '\n', len - i);
		if (lf == NULL)
			break;
		i = (size_t)(lf - hdr) + 1;
	}
	return 0;
}

/* flush_headers - Received:, the held header section, added fields;
 * split = where the fields end (the blank line), or hdr_len if unknown */
static void
flush_headers(struct smtpd_session *s, size_t split)
{
	char date[64], add[512];
	time_t t = time(NULL);
	struct tm tm;
	size_t an = 0;
	char qid[QUEUE_ID_TEXT_LEN];

	s->hdr_done = 1;
	if (s->w == NULL)
		return;
	gmtime_r(&t, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	received(s, date);
	if (!s->l->is_unix) {
		queue_id_to_text(queue_msg_id(s->w), qid);
		if (!has_field(s->hdr, split, "message-id:"))
			an += (size_t)snprintf(add + an, sizeof(add) - an, "Message-ID: <%s@%s>\r\n",
			                       qid, s->sd->hostname);
		if (!has_field(s->hdr, split, "date:"))
			an += (size_t)snprintf(add + an, sizeof(add) - an, "Date: %s\r\n", date);
	}
	if (an >= sizeof(add))
		an = 0;
	if (split == s->hdr_len) { /* end unknown: add at the top */
		put(s, add, an);
		put(s, s->hdr, s->hdr_len);
	} else {
		put(s, s->hdr, split);
		put(s, add, an);
		put(s, s->hdr + split, s->hdr_len - split);
	}
}

/* sink - message bytes after unstuffing: size check, header hold, store */
static void
sink(struct smtpd_session *s, const char *p, size_t n)
{
	uint64_t max = s->sd->cfg->max_message_size;
	size_t take, from;
	char *end;

	if (s->data_err || n == 0)
		return;
	if ((s->data_bytes += n) > max && max) {
		set_err(s, "552 5.3.4 Message size exceeds fixed limit");
		return;
	}
	while (n && !s->hdr_done) {
		take = n < SMTPD_HDR_MAX - s->hdr_len ? n : SMTPD_HDR_MAX - s->hdr_len;
		from = s->hdr_len > 3 ? s->hdr_len - 3 : 0;
		memcpy(s->hdr + s->hdr_len, p, take);
		s->hdr_len += take;
		p += take;
		n -= take;
		if (s->hdr_len >= 2 && memcmp(s->hdr, "\r\n", 2) == 0)
			flush_headers(s, 0);
		else if ((end = memmem(s->hdr + from, s->hdr_len - from, "\r\n\r\n", 4)) != NULL)
			flush_headers(s, (size_t)(end - s->hdr) + 2);
		else if (s->hdr_len == SMTPD_HDR_MAX)
			flush_headers(s, s->hdr_len);
	}
	put(s, p, n);
}

/* scan - run the line-ending state machine over n bytes; returns the bytes
 * used (stops after end of data); *end set at <CR><LF>.<CR><LF> */
static size_t
scan(struct smtpd_session *s, const char *p, size_t n, int *end)
{
	int bdat = s->state == SS_BDAT;
	size_t i, start = 0;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		switch (s->ds) {
		case D_BOL:
			if (c == '.' && !bdat) {
				sink(s, p + start, i - start);
				start = i + 1; /* drop the stuffed/terminating dot */
				s->ds = D_DOT;
				break;
			}
			/* fallthrough */
		case D_MID:
		mid:
			if (c == '\r')
				s->ds = D_CR;
			else if (c == '\n')
				set_err(s, "554 5.6.0 Bare LF in message data refused; lines end with CRLF"),
				s->ds = D_MID;
			else if (c == '\0')
				set_err(s, "554 5.6.0 NUL byte in message data refused"), s->ds = D_MID;
			else
				s->ds = D_MID;
			break;
		case D_CR:
			if (c == '\n') {
				s->ds = D_BOL;
			} else {
				set_err(s, "554 5.6.0 Bare CR in message data refused; lines end with CRLF");
				goto mid;
			}
			break;
		case D_DOT:
			if (c == '\r')
				s->ds = D_DOTCR, start = i + 1;
			else
				goto mid;
			break;
		case D_DOTCR:
			if (c == '\n') {
				*end = 1;
				return i + 1;
			}
			set_err(s, "554 5.6.0 Bare CR in message data refused; lines end with CRLF");
			goto mid;
		}
	}
	sink(s, p + start, n - start);
	return n;
}

/* message_end - the whole message is in: refuse it or commit it */
static void on_commit(void *arg, enum queue_status st, queue_msgid id);

static void
message_end(struct smtpd_session *s)
{
	struct queue_writer *w;

	s->state = SS_CMD;
	s->cmd_start_ms = 0;
	if (s->data_err == NULL && !s->hdr_done)
		flush_headers(s, s->hdr_len);
	if (s->data_err || s->w == NULL) {
		smtpd_session_reply(s, "%s", s->data_err ? s->data_err
		                    : "451 4.3.0 Temporary storage failure; try again later");
		log_info(s->id, "message refused: %s", s->data_err ? s->data_err : "no writer");
		smtpd_txn_reset(s);
		smtpd_session_error(s);
		if (s->stop_after)
			smtpd_session_close(s, "421 4.3.2 Service shutting down");
		return;
	}
	w = s->w;
	s->w = NULL;
	s->state = SS_COMMIT;
	s->commit_pending = 1;
	s->commit_start_us = mono_us(); /* end of data -> durable, for the log */
	queue_msg_commit(w, on_commit, s);
}

/* log_reception - the delivery log's Reception line: the message is
 * durable and the client is being told 250 */
static void
log_reception(struct smtpd_session *s, const char *qid)
{
	struct account *a = smtpd_session_account(s);
	json_t *o = json_pack("{s:f, s:s, s:s, s:s, s:I, s:I, s:s, s:s}",
	    "time", (double)now_ms() / 1000.0, "event", "Reception", "id", qid,
	    "sender", s->sender, "recipients", (json_int_t)s->n_rcpts,
	    "size", (json_int_t)s->data_bytes, "listener", s->l->cfg->name,
	    "session", s->id);
	char *line;

	if (o == NULL)
		return;
	if (a && a->tenant)
		json_object_set_new(o, "tenant", json_string(a->tenant));
	if (s->margs.envid[0])
		json_object_set_new(o, "envid", json_string(s->margs.envid));
	if (s->ip[0])
		json_object_set_new(o, "client", json_string(s->ip));
	if (s->user)
		json_object_set_new(o, "account", json_string(s->user));
	if (s->tls)
		json_object_set_new(o, "tls", json_string(s->tls_info));
	if ((line = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII)) != NULL) {
		size_t n = strlen(line);
		line[n] = '\n';
		dlog_append(line, n + 1);
		free(line);
	}
	json_decref(o);
}

static void
commit_reply(struct smtpd_session *s, enum queue_status st, const char *qid)
{
	struct account *a = smtpd_session_account(s);

	switch (st) {
	case QUEUE_OK:
		smtpd_session_reply(s, "250 2.0.0 Ok: queued as %s", qid);
		s->msgs++;
		if (a)
			account_charge(a, now_ms(), s->n_rcpts);
		log_info(qid, "queued: from=<%s> rcpts=%zu size=%llu listener=%s%s%s "
		         "session=%s commit_us=%llu",
		         s->sender, s->n_rcpts, (unsigned long long)s->data_bytes,
		         s->l->cfg->name, s->user ? " account=" : "", s->user ? s->user : "",
		         s->id, (unsigned long long)(mono_us() - s->commit_start_us));
		log_reception(s, qid);
		return;
	case QUEUE_EDISKFULL:
		smtpd_session_reply(s, "452 4.3.1 Insufficient system storage; try again later");
		break;
	case QUEUE_ETOOBIG:
		smtpd_session_reply(s, "552 5.3.4 Message size exceeds fixed limit");
		break;
	default:
		smtpd_session_reply(s, "451 4.3.0 Temporary storage failure; try again later");
		break;
	}
	log_warnx(s->id, "message not queued: %s", queue_status_to_text(st));
}

/* on_commit - the store's answer: now, and only now, the final reply */
static void
on_commit(void *arg, enum queue_status st, queue_msgid id)
{
	struct smtpd_session *s = arg;
	char qid[QUEUE_ID_TEXT_LEN];

	s->commit_pending = 0;
	queue_id_to_text(id, qid);
	if (s->sd == NULL) { /* server freed meanwhile */
		free(s);
		return;
	}
	if (st == QUEUE_OK) {
		s->sd->stats.messages++;
		s->sd->stats.recipients += s->n_rcpts;
	}
	if (s->gone)
		log_warnx(s->id, "client left before the reply; message %s %s", qid,
		          st == QUEUE_OK ? "queued anyway" : "not queued");
	else
		commit_reply(s, st, qid);
	smtpd_txn_reset(s);
	s->state = SS_CMD;
	s->cmd_start_ms = 0;
	if (s->stop_after)
		smtpd_session_close(s, "421 4.3.2 Service shutting down");
	else
		smtpd_session_process(s);
	smtpd_session_finish(s);
}

void
smtpd_data_start(struct smtpd_session *s)
{
	if (begin_writer(s) < 0) {
		smtpd_session_reply(s, "451 4.3.0 Temporary storage failure; try again later");
		return;
	}
	scan_reset(s);
	s->used_data = 1;
	s->state = SS_DATA;
	s->cmd_start_ms = mono_ms();
	smtpd_session_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

void
smtpd_bdat_start(struct smtpd_session *s, uint64_t size, int last)
{
	const char *r = NULL;

	if (!s->in_mail)
		r = "503 5.5.1 Need MAIL command first";
	else if (s->used_data)
		r = "503 5.5.1 BDAT after DATA";
	else if (s->n_rcpts == 0)
		r = "554 5.5.1 No valid recipients";
	else if (!s->used_bdat && begin_writer(s) < 0)
		r = "451 4.3.0 Temporary storage failure; try again later";
	if (r == NULL && !s->used_bdat) {
		scan_reset(s);
		s->used_bdat = 1;
	}
	s->bdat_discard = r != NULL;
	if (r)
		s->data_err = r; /* the chunk is read and dropped */
	s->bdat_left = size;
	s->bdat_last = last;
	s->state = SS_BDAT;
	s->cmd_start_ms = mono_ms();
}

/* bdat_chunk_end - a whole chunk is in */
static void
bdat_chunk_end(struct smtpd_session *s)
{
	s->state = SS_CMD;
	s->cmd_start_ms = 0;
	if (s->bdat_discard) {
		smtpd_session_reply(s, "%s", s->data_err);
		s->bdat_discard = 0;
		s->data_err = NULL;
		smtpd_session_error(s);
		return;
	}
	if (!s->bdat_last && s->data_err == NULL) {
		smtpd_session_reply(s, "250 2.0.0 %llu octets received",
		                    (unsigned long long)s->data_bytes);
		return;
	}
	if (s->ds == D_CR)
		set_err(s, "554 5.6.0 Bare CR in message data refused; lines end with CRLF");
	if (s->ds == D_MID && s->data_bytes > 0) /* make it end with CRLF */
		sink(s, "\r\n", 2);
	message_end(s);
}

int
smtpd_data_consume(struct smtpd_session *s)
{
	struct evbuffer *in = s->in;
	size_t avail = evbuffer_get_length(in), want, used = 0, k;
	struct evbuffer_iovec v[16];
	int i, nv, end = 0;

	if (avail > 0 && queue_write_backlog(s->sd->q) > SMTPD_BACKLOG_MAX) {
		s->throttled = 1; /* the store is behind: stop reading for a while */
		return 0;
	}
	want = avail;
	if (s->state == SS_BDAT && s->bdat_left < want)
		want = (size_t)s->bdat_left;
	if (want == 0 && !(s->state == SS_BDAT && s->bdat_left == 0))
		return 0;
	nv = evbuffer_peek(in, (ev_ssize_t)want, NULL, v, 16);
	for (i = 0; i < nv && i < 16 && used < want && !end; i++) {
		k = v[i].iov_len < want - used ? v[i].iov_len : want - used;
		if (s->bdat_discard)
			used += k;
		else
			used += scan(s, v[i].iov_base, k, &end);
	}
	evbuffer_drain(in, used);
	if (s->state == SS_BDAT) {
		s->bdat_left -= used;
		if (s->bdat_left == 0)
			bdat_chunk_end(s);
		return s->bdat_left == 0 || evbuffer_get_length(in) > 0;
	}
	if (end)
		message_end(s);
	return end || evbuffer_get_length(in) > 0;
}

void
smtpd_data_abort(struct smtpd_session *s)
{
	if (s->w) {
		queue_msg_abort(s->w);
		s->w = NULL;
	}
}
