/*
 * smtpc_body.c - the body encoder: turns the stored body into its wire form
 * in chunks, so a body of any size streams through a fixed buffer.
 *
 * Every bare CR and bare LF becomes CRLF (we never transmit a lone CR or
 * LF), a line longer than 998 octets is broken with CRLF SPACE (RFC 5322
 * 2.1.1 limit; the least damage to MIME, Postfix smtp_line_length_limit),
 * the text ends with CRLF, and for DATA a leading "." of a line is
 * doubled and ".\r\n" ends the data (RFC 5321 4.5.2). For BDAT the same
 * line-end fixing applies without dot-stuffing. Pure code, no I/O.
 */
#include "smtpclient/smtpc_internal.h"

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
