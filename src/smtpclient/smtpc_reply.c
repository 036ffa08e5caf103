/*
 * smtpc_reply.c - reading what a remote SMTP server says: reply lines into
 * replies (multi-line aware, bounded against hostile servers), enhanced
 * status codes (RFC 3463), the sanitizing of reply text before it is logged
 * or stored, and EHLO capability lines.
 *
 * Pure functions, no I/O: the session feeds lines it cut from its input
 * buffer. Used on the delivery loop thread only (no shared state).
 */
#include "smtpclient/smtpc_internal.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>
#include <stdlib.h>

void
smtpc_reply_reset(struct smtpc_reply *r)
{
	r->code = 0;
	r->nlines = 0;
	r->nbytes = 0;
	r->enhanced[0] = '\0';
	r->text[0] = '\0';
	r->textlen = 0;
	r->error = NULL;
}

/* reply_code - the 3-digit code at the start of a line, or -1 */
static int
reply_code(const char *line, size_t len)
{
	if (len < 3)
		return -1;
	if (line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' ||
	    !isdigit((unsigned char)line[2]))
		return -1;
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return -1;
	return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
}

/* digits - count of 1..max decimal digits at s (0 if none or too many) */
static size_t
digits(const char *s, size_t len, size_t max)
{
	size_t n = 0;

	while (n < len && isdigit((unsigned char)s[n]))
		n++;
	return (n >= 1 && n <= max) ? n : 0;
}

size_t
smtpc_enhanced_parse(int code, const char *text, size_t len, char *out,
                     size_t outsz)
{
	size_t a, b, c, pos;

	if (outsz > 0)
		out[0] = '\0';
	if (len < 5 || (text[0] != '2' && text[0] != '4' && text[0] != '5') ||
	    text[1] != '.')
		return 0;
	pos = 2;
	if ((a = digits(text + pos, len - pos, 3)) == 0 || pos + a >= len ||
	    text[pos + a] != '.')
		return 0;
	pos += a + 1;
	if ((b = digits(text + pos, len - pos, 3)) == 0)
		return 0;
	c = pos + b;
	if (c < len && text[c] != ' ')
		return 0;
	/* RFC 3463: the class must agree with the basic code; else ignore it */
	if (code / 100 != text[0] - '0')
		return c < len ? c + 1 : c;
	if (c < outsz) {
		memcpy(out, text, c);
		out[c] = '\0';
	}
	return c < len ? c + 1 : c;
}

void
smtpc_text_append(char *dst, size_t dstsz, size_t *dlen, const char *src,
                  size_t len)
{
	size_t n = *dlen, i;

	if (dstsz == 0)
		return;
	for (i = 0; i < len && n + 1 < dstsz; i++) {
		unsigned char ch = (unsigned char)src[i];
		if (ch < 0x20 || ch >= 0x7f)
			ch = ch == '\t' ? ' ' : '?';
		dst[n++] = (char)ch;
	}
	if (i < len && n >= 3)      /* truncated: say so */
		memcpy(dst + n - 3, "...", 3);
	dst[n] = '\0';
	*dlen = n;
}

/* reply_keep_text - add one line's text (minus enhanced code) to r->text */
static void
reply_keep_text(struct smtpc_reply *r, const char *text, size_t len)
{
	char enh[16];
	size_t skip = smtpc_enhanced_parse(r->code, text, len, enh, sizeof(enh));

	if (r->nlines == 1 && enh[0] != '\0')
		memcpy(r->enhanced, enh, sizeof(enh));
	text += skip;
	len -= skip;
	if (r->textlen > 0 && r->textlen + 1 < sizeof(r->text) && len > 0)
		smtpc_text_append(r->text, sizeof(r->text), &r->textlen, " ", 1);
	smtpc_text_append(r->text, sizeof(r->text), &r->textlen, text, len);
}

enum smtpc_reply_rv
smtpc_reply_feed(struct smtpc_reply *r, const char *line, size_t len,
                 const char **textp, size_t *textlenp)
{
	int code = reply_code(line, len);

	if (code < 0) {
		r->error = "invalid reply line";
		return SMTPC_REPLY_BAD;
	}
	if (r->nlines > 0 && code != r->code) {
		r->error = "reply code changed inside a multi-line reply";
		return SMTPC_REPLY_BAD;
	}
	r->code = code;
	r->nlines++;
	r->nbytes += len + 2;
	if (r->nlines > SMTPC_REPLY_MAX_LINES ||
	    r->nbytes > SMTPC_REPLY_MAX_BYTES) {
		r->error = "multi-line reply too long";
		return SMTPC_REPLY_BAD;
	}
	if (textp != NULL) {
		*textp = len > 4 ? line + 4 : line + len;
		*textlenp = len > 4 ? len - 4 : 0;
	}
	reply_keep_text(r, len > 4 ? line + 4 : "", len > 4 ? len - 4 : 0);
	return (len == 3 || line[3] == ' ') ? SMTPC_REPLY_DONE : SMTPC_REPLY_MORE;
}

/* kw - does the capability text start with keyword kw (then end/space)? */
static int
kw(const char *text, size_t len, const char *k, const char **rest,
   size_t *restlen)
{
	size_t kl = strlen(k);

	if (len < kl || strncasecmp(text, k, kl) != 0)
		return 0;
	if (len > kl && text[kl] != ' ' && text[kl] != '=')
		return 0;
	*rest = text + kl + (len > kl);
	*restlen = len > kl ? len - kl - 1 : 0;
	return 1;
}

void
smtpc_caps_parse_line(struct smtpc_caps *c, const char *text, size_t len)
{
	const char *rest;
	size_t rl;

	if (kw(text, len, "PIPELINING", &rest, &rl))
		c->pipelining = 1;
	else if (kw(text, len, "CHUNKING", &rest, &rl))
		c->chunking = 1;
	else if (kw(text, len, "DSN", &rest, &rl))
		c->dsn = 1;
	else if (kw(text, len, "SMTPUTF8", &rest, &rl))
		c->smtputf8 = 1;
	else if (kw(text, len, "8BITMIME", &rest, &rl))
		c->eightbitmime = 1;
	else if (kw(text, len, "STARTTLS", &rest, &rl))
		c->starttls = 1;
	else if (kw(text, len, "SIZE", &rest, &rl)) {
		char num[24];
		size_t n = digits(rest, rl, 20);
		c->size = 0;
		if (n > 0 && n < sizeof(num) && n == rl) {
			memcpy(num, rest, n);
			num[n] = '\0';
			c->size = strtoull(num, NULL, 10);
		}
	}
}
