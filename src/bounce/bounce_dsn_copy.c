/*
 * bounce_dsn_copy.c - stream the original message into a DSN: the whole
 * message (up to a limit) or its header block only, with bare LF line
 * ends turned into CRLF. Memory use is two fixed buffers, whatever the
 * size of the message. Any thread.
 */
#include "bounce/bounce_dsn_internal.h"
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

#define IN_CHUNK  8192
#define OUT_CHUNK 16384

struct copy {
	struct dsn_out *o;
	char out[OUT_CHUNK];
	size_t n;
	size_t line_len;      /* bytes on the current line, pending CR not
	                       * counted */
	int pending_cr;       /* a CR whose LF may follow */
	int headers_only, done;
};

static void
copy_flush(struct copy *c)
{
	dsn_put(c->o, c->out, c->n);
	c->n = 0;
}

static void
copy_emit(struct copy *c, const char *p, size_t len)
{
	if (c->n + len > sizeof(c->out))
		copy_flush(c);
	memcpy(c->out + c->n, p, len);
	c->n += len;
}

/* copy_byte - one input byte through the line-end state machine */
static void
copy_byte(struct copy *c, char ch)
{
	if (ch == '\r') {
		if (c->pending_cr) {
			copy_emit(c, "\r", 1);
			c->line_len++;
		}
		c->pending_cr = 1;
		return;
	}
	if (ch == '\n') {
		if (c->headers_only && c->line_len == 0) {
			c->done = 1; /* the blank line ending the header */
			return;
		}
		copy_emit(c, "\r\n", 2);
		c->pending_cr = 0;
		c->line_len = 0;
		return;
	}
	if (c->pending_cr) {
		copy_emit(c, "\r", 1);
		c->line_len++;
		c->pending_cr = 0;
	}
	copy_emit(c, &ch, 1);
	c->line_len++;
}

int
dsn_copy_original(struct dsn_out *o, bounce_read_fn read, void *arg,
                  int headers_only, uint64_t limit)
{
	struct copy *c = xcalloc(1, sizeof(*c));
	char in[IN_CHUNK];
	uint64_t total = 0;
	int rc = -1;

	c->o = o;
	c->headers_only = headers_only;
	while (!c->done && !o->err && total < limit) {
		size_t want = limit - total < sizeof(in) ?
		              (size_t)(limit - total) : sizeof(in);
		long n = read(arg, in, want);
		if (n < 0)
			goto done;
		if (n == 0)
			break;
		total += (uint64_t)n;
		for (long i = 0; i < n && !c->done; i++)
			copy_byte(c, in[i]);
	}
	if (c->pending_cr && !c->done)
		copy_emit(c, "\r", 1), c->line_len++;
	if (c->line_len > 0 && !c->done)
		copy_emit(c, "\r\n", 2); /* the last line had no line end */
	copy_flush(c);
	rc = 0;
done:
	free(c);
	return rc;
}
