/*
 * bounce_dsn_internal.h - what the DSN composer's files share.
 */
#ifndef MXB_BOUNCE_DSN_INTERNAL_H
#define MXB_BOUNCE_DSN_INTERNAL_H

#include "bounce/bounce_internal.h"

/* The output: the caller's write callback, counted; err sticks. */
struct dsn_out {
	bounce_write_fn fn;
	void *arg;
	uint64_t size;
	int err;
};
void dsn_put(struct dsn_out *o, const void *p, size_t len);
void dsn_puts(struct dsn_out *o, const char *s);

/* Copy the original through read (CRLF line ends), the header block only
 * or everything up to limit bytes of input; ends with CRLF.
 * 0 ok, -1 read error (o->err tells a write error). */
int dsn_copy_original(struct dsn_out *o, bounce_read_fn read, void *arg,
                      int headers_only, uint64_t limit);

#endif
