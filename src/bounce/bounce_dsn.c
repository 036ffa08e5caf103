/*
 * bounce_dsn.c - compose RFC 3464 delivery status notifications:
 * multipart/report; report-type=delivery-status with a human-readable
 * part, a message/delivery-status part, and the original message
 * (message/rfc822) or its header (text/rfc822-headers).
 *
 * Pure: bytes go to the caller's write callback, the original comes from
 * its read callback (bounce_dsn_copy.c), so nothing is held whole. Every
 * value that came from outside (reply text, addresses, ENVID) is cleaned
 * of control characters and CR/LF; our lines stay under 998 octets.
 * Any thread; no shared state.
 */
#include "bounce/bounce_dsn_internal.h"
#include "core/core.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FOLD_AT   78      /* fold header fields at this column */
#define HARD_MAX  990     /* never more on one line */
#define DIAG_MAX  2000    /* reply text kept in a DSN */
#define ADDR_MAX  1024
#define DEFAULT_MAX_RETURN (1024 * 1024)

const char *
bounce_action_name(enum bounce_action a)
{
	switch (a) {
	case BOUNCE_ACTION_FAILED: return "failed";
	case BOUNCE_ACTION_DELAYED: return "delayed";
	case BOUNCE_ACTION_DELIVERED: return "delivered";
	case BOUNCE_ACTION_RELAYED: return "relayed";
	case BOUNCE_ACTION_EXPANDED: return "expanded";
	}
	return "failed";
}

const char *
bounce_dsn_status_text(enum bounce_dsn_status st)
{
	switch (st) {
	case BOUNCE_DSN_OK: return "ok";
	case BOUNCE_DSN_EINVAL: return "invalid DSN input";
	case BOUNCE_DSN_EREAD: return "reading the original message failed";
	case BOUNCE_DSN_EWRITE: return "writing the DSN failed";
	}
	return "unknown";
}

/* ---- output ---- */

void
dsn_put(struct dsn_out *o, const void *p, size_t len)
{
	if (o->err || len == 0)
		return;
	if (o->fn(o->arg, p, len) != 0) {
		o->err = 1;
		return;
	}
	o->size += len;
}

void
dsn_puts(struct dsn_out *o, const char *s)
{
	dsn_put(o, s, strlen(s));
}

static void __attribute__((format(printf, 2, 3)))
dsn_printf(struct dsn_out *o, const char *fmt, ...)
{
	char buf[HARD_MAX + 1];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	dsn_put(o, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

/* dsn_words - write clean text word by word, breaking lines before
 * `width` with `brk` ("\r\n " for header folding, "\r\n    " for the
 * human part); a word longer than a line is cut. col is the current
 * column and is updated. */
static void
dsn_words(struct dsn_out *o, const char *text, size_t *col, size_t width,
          const char *brk)
{
	size_t indent = strlen(brk) - 2;
	int sep = 0;

	for (const char *p = text; *p; ) {
		size_t wl = strcspn(p, " ");
		if (wl == 0) {
			p++;
			continue;
		}
		if (sep && *col + 1 + wl > width) {
			dsn_puts(o, brk);
			*col = indent;
		} else if (sep) {
			dsn_puts(o, " ");
			(*col)++;
		}
		while (wl > 0) {
			size_t take = wl < HARD_MAX - *col ? wl : HARD_MAX - *col;
			dsn_put(o, p, take);
			*col += take, p += take, wl -= take;
			if (wl > 0) {
				dsn_puts(o, brk);
				*col = indent;
			}
		}
		sep = 1;
	}
}

/* dsn_field - "Name: value" folded; value must be clean (one line) */
static void
dsn_field(struct dsn_out *o, const char *name, const char *value)
{
	size_t col = strlen(name) + 2;

	dsn_puts(o, name);
	dsn_puts(o, ": ");
	dsn_words(o, value, &col, FOLD_AT, "\r\n ");
	dsn_puts(o, "\r\n");
}

static void
dsn_field_date(struct dsn_out *o, const char *name, uint64_t ms)
{
	char date[64];

	bounce_text_date(ms, date, sizeof(date));
	dsn_field(o, name, date);
}

/* ---- values ---- */

/* utf8_next - decode one character at *pp; -1 for an invalid sequence */
static long
utf8_next(const unsigned char **pp)
{
	const unsigned char *p = *pp;
	unsigned n = 0;
	long cp = *p++;

	if (cp >= 0xf0 && cp < 0xf8)
		cp &= 0x07, n = 3;
	else if (cp >= 0xe0 && cp < 0xf0)
		cp &= 0x0f, n = 2;
	else if (cp >= 0xc2 && cp < 0xe0)
		cp &= 0x1f, n = 1;
	else if (cp >= 0x80)
		cp = -1;
	for (; n > 0; n--, p++) {
		if ((*p & 0xc0) != 0x80) {
			cp = -1;
			break;
		}
		cp = (cp << 6) | (*p & 0x3f);
	}
	*pp = p;
	return cp;
}

/* addr_typed - "rfc822; a@b", or for a non-ASCII address the RFC 6533
 * "utf-8; " form with \x{HEX} for each non-ASCII character */
static void
addr_typed(const char *addr, char *out, size_t outlen)
{
	const unsigned char *p = (const unsigned char *)(addr ? addr : "");
	int ascii = 1;
	size_t o;

	for (const unsigned char *q = p; *q; q++)
		if (*q >= 0x80)
			ascii = 0;
	o = (size_t)snprintf(out, outlen, "%s; ", ascii ? "rfc822" : "utf-8");
	while (*p && o + 12 < outlen) {
		long cp = utf8_next(&p);
		if (cp >= 0x80)
			o += (size_t)snprintf(out + o, outlen - o, "\\x{%lX}", cp);
		else
			out[o++] = (cp > 0x20 && cp < 0x7f) ? (char)cp : '?';
	}
	out[o] = '\0';
}

/* xtext - RFC 3461 xtext of an ENVID (decoded as stored) */
static void
xtext(const char *s, char *out, size_t outlen)
{
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)s;
	     *p && o + 4 < outlen; p++) {
		if (*p < 0x21 || *p > 0x7e || *p == '+' || *p == '=')
			o += (size_t)snprintf(out + o, outlen - o, "+%02X", *p);
		else
			out[o++] = (char)*p;
	}
	out[o] = '\0';
}

/* rcpt_status - the Status value: given, else the enhanced code (class
 * from the basic code), else from the code class, else from the action */
static void
rcpt_status(const struct bounce_dsn_rcpt *r, char *out, size_t outlen)
{
	struct bounce_reply rp = { 0, r->code, r->enhanced, NULL, NULL };
	struct bounce_status st;
	int cls;

	if (r->status && bounce_status_scan(r->status, st.st) &&
	    strlen(r->status) == bounce_status_scan(r->status, st.st) &&
	    (st.st[0] == 2 || st.st[0] == 4 || st.st[0] == 5)) {
		snprintf(out, outlen, "%d.%d.%d", st.st[0], st.st[1], st.st[2]);
		return;
	}
	bounce_status_of(&rp, &st);
	if (st.valid) {
		snprintf(out, outlen, "%d.%d.%d", st.st[0], st.st[1], st.st[2]);
		return;
	}
	cls = r->code / 100;
	if (cls != 2 && cls != 4 && cls != 5)
		cls = r->action == BOUNCE_ACTION_FAILED ? 5 :
		      r->action == BOUNCE_ACTION_DELAYED ? 4 : 2;
	snprintf(out, outlen, "%d.0.0", cls);
}

/* rcpt_diag - "550 5.1.1 text" (clean), or our reason alone */
static void
rcpt_diag(const struct bounce_dsn_rcpt *r, char *out, size_t outlen)
{
	char text[DIAG_MAX], enh[32];
	int n = 0;

	bounce_text_clean(r->text, text, sizeof(text));
	bounce_text_clean(r->enhanced, enh, sizeof(enh));
	if (r->code > 0 && r->code < 1000)
		n = snprintf(out, outlen, "%d ", r->code);
	if (n >= 0 && (size_t)n < outlen && enh[0] && r->code > 0)
		n += snprintf(out + n, outlen - (size_t)n, "%s ", enh);
	if (n >= 0 && (size_t)n < outlen)
		snprintf(out + n, outlen - (size_t)n, "%s", text);
	bounce_text_clean(out, out, outlen); /* trims a trailing space */
}

/* ---- the parts ---- */

struct dsn_ctx {
	const struct bounce_dsn *d;
	struct dsn_out o;
	char host[256], sender[ADDR_MAX], boundary[80], msgid[512];
	uint64_t date_ms;
	size_t n_failed, n_delayed;
	int ret_mode;     /* 0 none, 1 headers, 2 full */
	int truncated;
};

static uint64_t
fnv1a(uint64_t h, const char *s)
{
	for (; s && *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return h;
}

/* dsn_ids - date, Message-ID and a boundary no text of ours contains */
static void
dsn_ids(struct dsn_ctx *c)
{
	static _Atomic unsigned seq; /* any thread may compose */
	char qid[128];
	uint64_t h;

	c->date_ms = c->d->date_ms ? c->d->date_ms : now_ms();
	bounce_text_clean(c->d->queue_id ? c->d->queue_id : "dsn", qid,
	                  sizeof(qid));
	if (c->d->message_id)
		bounce_text_clean(c->d->message_id, c->msgid, sizeof(c->msgid));
	else
		snprintf(c->msgid, sizeof(c->msgid), "<%llu.%u.%s@%s>",
		         (unsigned long long)c->date_ms, atomic_fetch_add(&seq, 1) + 1,
		         qid, c->host);
	h = fnv1a(0xcbf29ce484222325ULL, c->msgid);
	snprintf(c->boundary, sizeof(c->boundary), "=_mxb_%016llx_%llu_=",
	         (unsigned long long)fnv1a(h, c->sender),
	         (unsigned long long)c->date_ms);
}

static const char *
dsn_subject(const struct dsn_ctx *c)
{
	if (c->n_failed)
		return "Undelivered Mail Returned to Sender";
	if (c->n_delayed)
		return "Delayed Mail (still being retried)";
	return "Successful Mail Delivery Report";
}

static void
dsn_headers(struct dsn_ctx *c)
{
	char buf[ADDR_MAX + 64];

	snprintf(buf, sizeof(buf), "Mail Delivery System <MAILER-DAEMON@%s>",
	         c->host);
	dsn_field(&c->o, "From", buf);
	snprintf(buf, sizeof(buf), "<%s>", c->sender);
	dsn_field(&c->o, "To", buf);
	dsn_field(&c->o, "Subject", dsn_subject(c));
	dsn_field_date(&c->o, "Date", c->date_ms);
	dsn_field(&c->o, "Message-ID", c->msgid);
	dsn_field(&c->o, "Auto-Submitted", "auto-replied");
	dsn_field(&c->o, "MIME-Version", "1.0");
	dsn_printf(&c->o, "Content-Type: multipart/report; "
	           "report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n",
	           c->boundary);
	dsn_puts(&c->o, "\r\nThis is a MIME-encapsulated message.\r\n\r\n");
}

static void
dsn_part(struct dsn_ctx *c, const char *descr, const char *type)
{
	dsn_printf(&c->o, "--%s\r\nContent-Description: %s\r\n"
	           "Content-Type: %s\r\n\r\n", c->boundary, descr, type);
}

/* dsn_para - a paragraph of the human part, wrapped at 72 columns */
static void
dsn_para(struct dsn_out *o, const char *text)
{
	size_t col = 0;

	dsn_words(o, text, &col, 72, "\r\n");
	dsn_puts(o, "\r\n\r\n");
}

static void
dsn_intro(struct dsn_ctx *c)
{
	char buf[1024], date[64], qid[128];

	snprintf(buf, sizeof(buf), "This is the mail system at host %s.",
	         c->host);
	dsn_para(&c->o, buf);
	if (c->n_failed)
		dsn_para(&c->o, "Your message could not be delivered to one or "
		         "more recipients. It has been returned below with the "
		         "reasons. Delivery to these recipients will not be "
		         "tried again.");
	else if (c->n_delayed)
		dsn_para(&c->o, "Your message has not been delivered yet to the "
		         "recipients below. The mail system will keep trying; "
		         "you do not need to send it again. You will be told "
		         "if it finally fails.");
	else
		dsn_para(&c->o, "Your message was delivered, or passed on to a "
		         "system that sends no delivery notifications, for the "
		         "recipients below, as you asked.");
	bounce_text_date(c->d->arrival_ms, date, sizeof(date));
	bounce_text_clean(c->d->queue_id ? c->d->queue_id : "-", qid,
	                  sizeof(qid));
	snprintf(buf, sizeof(buf), "Queue ID %s, received %s.", qid, date);
	dsn_para(&c->o, buf);
}

static void
dsn_human_rcpt(struct dsn_ctx *c, const struct bounce_dsn_rcpt *r)
{
	char addr[ADDR_MAX], diag[DIAG_MAX + 64], mta[256];
	size_t col = 4;

	bounce_text_clean(r->address, addr, sizeof(addr));
	dsn_printf(&c->o, "<%s>: %s", addr, bounce_action_name(r->action));
	dsn_puts(&c->o, "\r\n");
	rcpt_diag(r, diag, sizeof(diag));
	bounce_text_clean(r->remote_mta, mta, sizeof(mta));
	if (mta[0]) {
		dsn_puts(&c->o, "    Remote host: ");
		col = 17;
		dsn_words(&c->o, mta, &col, 72, "\r\n      ");
		dsn_puts(&c->o, "\r\n");
	}
	if (diag[0]) {
		dsn_puts(&c->o, "    Reason: ");
		col = 12;
		dsn_words(&c->o, diag, &col, 72, "\r\n      ");
		dsn_puts(&c->o, "\r\n");
	}
	if (r->action == BOUNCE_ACTION_DELAYED && r->retry_until_ms) {
		char date[64];
		bounce_text_date(r->retry_until_ms, date, sizeof(date));
		dsn_printf(&c->o, "    Will be retried until: %s\r\n", date);
	}
	dsn_puts(&c->o, "\r\n");
}

static void
dsn_human(struct dsn_ctx *c)
{
	char buf[256];

	dsn_part(c, "Notification", "text/plain; charset=us-ascii");
	dsn_intro(c);
	for (size_t i = 0; i < c->d->n_rcpts; i++)
		dsn_human_rcpt(c, &c->d->rcpts[i]);
	if (c->truncated) {
		snprintf(buf, sizeof(buf), "The original message was larger "
		         "than %llu bytes, so only its headers are returned.",
		         (unsigned long long)c->d->max_return);
		dsn_para(&c->o, buf);
	}
}

static void
dsn_report_rcpt(struct dsn_ctx *c, const struct bounce_dsn_rcpt *r)
{
	char buf[DIAG_MAX + 128], val[DIAG_MAX + 64];

	dsn_puts(&c->o, "\r\n");
	addr_typed(r->address, buf, sizeof(buf));
	dsn_field(&c->o, "Final-Recipient", buf);
	if (r->orcpt && *r->orcpt) {
		bounce_text_clean(r->orcpt, val, ADDR_MAX);
		snprintf(buf, sizeof(buf), "%s%s",
		         strchr(val, ';') ? "" : "rfc822; ", val);
		dsn_field(&c->o, "Original-Recipient", buf);
	}
	dsn_field(&c->o, "Action", bounce_action_name(r->action));
	rcpt_status(r, buf, sizeof(buf));
	dsn_field(&c->o, "Status", buf);
	bounce_text_clean(r->remote_mta, val, 256);
	if (val[0]) {
		snprintf(buf, sizeof(buf), "dns; %s", val);
		dsn_field(&c->o, "Remote-MTA", buf);
	}
	rcpt_diag(r, val, sizeof(val));
	if (val[0]) {
		snprintf(buf, sizeof(buf), "%s; %s",
		         r->code > 0 ? "smtp" : "X-mxbatch", val);
		dsn_field(&c->o, "Diagnostic-Code", buf);
	}
	if (r->last_attempt_ms)
		dsn_field_date(&c->o, "Last-Attempt-Date", r->last_attempt_ms);
	if (r->action == BOUNCE_ACTION_DELAYED && r->retry_until_ms)
		dsn_field_date(&c->o, "Will-Retry-Until", r->retry_until_ms);
}

static void
dsn_report(struct dsn_ctx *c)
{
	char buf[1024], val[512];

	dsn_part(c, "Delivery report", "message/delivery-status");
	snprintf(buf, sizeof(buf), "dns; %s", c->host);
	dsn_field(&c->o, "Reporting-MTA", buf);
	if (c->d->queue_id) {
		bounce_text_clean(c->d->queue_id, val, sizeof(val));
		dsn_field(&c->o, "X-Mxbatch-Queue-ID", val);
	}
	if (c->d->envid && *c->d->envid) {
		xtext(c->d->envid, val, sizeof(val));
		dsn_field(&c->o, "Original-Envelope-Id", val);
	}
	if (c->d->arrival_ms)
		dsn_field_date(&c->o, "Arrival-Date", c->d->arrival_ms);
	for (size_t i = 0; i < c->d->n_rcpts; i++)
		dsn_report_rcpt(c, &c->d->rcpts[i]);
	dsn_puts(&c->o, "\r\n");
}

/* dsn_plan - count actions; decide what of the original goes back */
static void
dsn_plan(struct dsn_ctx *c)
{
	const struct bounce_dsn *d = c->d;
	uint64_t limit = d->max_return ? d->max_return : DEFAULT_MAX_RETURN;

	for (size_t i = 0; i < d->n_rcpts; i++) {
		c->n_failed += d->rcpts[i].action == BOUNCE_ACTION_FAILED;
		c->n_delayed += d->rcpts[i].action == BOUNCE_ACTION_DELAYED;
	}
	c->ret_mode = d->read == NULL ? 0 : 1;
	/* RFC 3461 4.3: the full content only for failures, if asked */
	if (c->ret_mode && d->ret == BOUNCE_RET_FULL && c->n_failed) {
		if (d->original_size <= limit)
			c->ret_mode = 2;
		else
			c->truncated = 1;
	}
}

static enum bounce_dsn_status
dsn_original(struct dsn_ctx *c)
{
	const struct bounce_dsn *d = c->d;
	uint64_t limit = d->max_return ? d->max_return : DEFAULT_MAX_RETURN;

	if (c->ret_mode == 0)
		return BOUNCE_DSN_OK;
	if (c->ret_mode == 2)
		dsn_part(c, "Undelivered Message", "message/rfc822");
	else
		dsn_part(c, "Undelivered Message Headers", "text/rfc822-headers");
	if (dsn_copy_original(&c->o, d->read, d->read_arg, c->ret_mode == 1,
	                      limit) != 0)
		return BOUNCE_DSN_EREAD;
	dsn_puts(&c->o, "\r\n");
	return BOUNCE_DSN_OK;
}

enum bounce_dsn_status
bounce_dsn_write(const struct bounce_dsn *d, bounce_write_fn write,
                 void *warg, struct bounce_dsn_info *info)
{
	struct dsn_ctx *c = NULL;
	enum bounce_dsn_status st = BOUNCE_DSN_EINVAL;

	if (d == NULL || write == NULL || d->n_rcpts == 0 || d->rcpts == NULL ||
	    bounce_null_sender(d->sender) || d->reporting_mta == NULL)
		goto done;
	c = xcalloc(1, sizeof(*c));
	c->d = d;
	c->o.fn = write;
	c->o.arg = warg;
	bounce_text_clean(d->reporting_mta, c->host, sizeof(c->host));
	bounce_text_clean(d->sender, c->sender, sizeof(c->sender));
	if (c->host[0] == '\0')
		goto done;
	dsn_ids(c);
	dsn_plan(c);
	dsn_headers(c);
	dsn_human(c);
	dsn_report(c);
	st = dsn_original(c);
	dsn_printf(&c->o, "--%s--\r\n", c->boundary);
	if (st == BOUNCE_DSN_OK && c->o.err)
		st = BOUNCE_DSN_EWRITE;
done:
	if (info) {
		memset(info, 0, sizeof(*info));
		if (c) {
			info->size = c->o.size;
			info->returned = c->ret_mode;
			info->truncated = c->truncated;
		}
	}
	free(c);
	return st;
}
