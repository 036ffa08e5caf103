/*
 * bounce_text.c - text helpers of src/bounce: making remote text safe
 * for headers and DSN fields (no control characters, no CR/LF, ASCII
 * only), RFC 5322 dates, and the growable output buffer.
 *
 * Pure; any thread.
 */
#include "bounce/bounce_internal.h"
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void
bounce_text_clean(const char *src, char *dst, size_t dstlen)
{
	size_t o = 0;
	int space = 1; /* drops leading spaces and collapses runs */

	if (dstlen == 0)
		return;
	for (const unsigned char *p = (const unsigned char *)(src ? src : "");
	     *p && o + 1 < dstlen; p++) {
		unsigned char c = *p;
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			if (!space)
				dst[o++] = ' ';
			space = 1;
			continue;
		}
		if (c >= 0xc0) /* one '?' per UTF-8 sequence */
			while ((p[1] & 0xc0) == 0x80)
				p++;
		dst[o++] = (c >= 0x21 && c <= 0x7e) ? (char)c : '?';
		space = 0;
	}
	while (o > 0 && dst[o - 1] == ' ')
		o--;
	dst[o] = '\0';
}

void
bounce_text_date(uint64_t ms, char *dst, size_t dstlen)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	static const char *const wd[] = { "Sun", "Mon", "Tue", "Wed", "Thu",
	                                  "Fri", "Sat" };
	static const char *const mo[] = { "Jan", "Feb", "Mar", "Apr", "May",
	                                  "Jun", "Jul", "Aug", "Sep", "Oct",
	                                  "Nov", "Dec" };

	gmtime_r(&t, &tm); /* names by hand: the locale must not matter */
	snprintf(dst, dstlen, "%s, %02d %s %04d %02d:%02d:%02d +0000",
	         wd[tm.tm_wday], tm.tm_mday, mo[tm.tm_mon], tm.tm_year + 1900,
	         tm.tm_hour, tm.tm_min, tm.tm_sec);
}

int
bounce_buf_write(void *arg, const void *p, size_t len)
{
	struct bounce_buf *b = arg;

	if (b->len + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + len + 1)
			cap *= 2;
		b->data = xrealloc(b->data, cap);
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

void
bounce_buf_release(struct bounce_buf *b)
{
	if (b == NULL)
		return;
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}
