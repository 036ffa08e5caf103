/*
 * fuzz_bounce_dsn - the DSN writer (src/bounce/bounce_dsn.c) with hostile
 * field values: sender, ENVID, recipient, ORCPT, remote MTA, enhanced code
 * and reply text all come from the input (fields split at NUL bytes), as
 * a remote server's reply text and a customer's envelope would. The
 * original message is a fixed clean one, or the rest of the input (mode
 * byte). Properties with the clean original: CRLF line ends only, no NUL,
 * no line over 998 octets, and no header line the input injected.
 */
#include <strings.h>

#include "bounce/bounce.h"
#include "fuzz_util.h"

struct src { const char *p; size_t n, off; };

static long
read_orig(void *arg, void *buf, size_t len)
{
	struct src *s = arg;
	size_t k = s->n - s->off < len ? s->n - s->off : len;

	memcpy(buf, s->p + s->off, k);
	s->off += k;
	return (long)k;
}

/* track_part - is the line at off inside the human-readable text/plain
 * part's body? Wrapped prose may start a line with any word, "Zz-Injected:"
 * included, without it being a header: only header blocks and the
 * delivery-status fields are checked for injected lines. */
static void
track_part(const struct bounce_buf *b, size_t off, int *in_text, int *pending)
{
	const char *l = b->data + off;
	size_t left = b->len - off;

	if (left >= 2 && l[0] == '-' && l[1] == '-') {
		*in_text = 0; /* a boundary line: a new part's headers follow */
		*pending = 0;
	} else if (left >= 24 && strncasecmp(l, "Content-Type: text/plain", 24) == 0) {
		*pending = 1;
	} else if (left >= 2 && l[0] == '\r' && l[1] == '\n' && *pending) {
		*in_text = 1; /* the blank line before the text part's body */
		*pending = 0;
	}
}

static void
check_output(const struct bounce_buf *b)
{
	size_t col = 0;
	int in_text = 0, text_pending = 0;

	for (size_t i = 0; i < b->len; i++) {
		char c = b->data[i];
		FZ_CHECK(c != '\0');
		if (c == '\n')
			FZ_CHECK(i > 0 && b->data[i - 1] == '\r');
		if (c == '\r')
			FZ_CHECK(i + 1 < b->len && b->data[i + 1] == '\n');
		if (c == '\r' || c == '\n') {
			col = 0;
			if (c == '\n')
				track_part(b, i + 1, &in_text, &text_pending);
			if (c == '\n' && !in_text &&
			    strncmp(b->data + i + 1, "Zz-Injected:", 12) == 0)
				FZ_CHECK(!"header injected");
			continue;
		}
		FZ_CHECK(++col <= 998);
	}
	FZ_CHECK(b->len >= 2 && memcmp(b->data + b->len - 2, "\r\n", 2) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char clean[] = "Subject: hello\r\nFrom: a@b.test\r\n"
	                            "Message-ID: <x@b.test>\r\n\r\nbody\r\n";
	const char *f[9] = { 0 };
	char *copy;
	size_t nf = 0, pos = 0;
	struct bounce_dsn_rcpt r = { 0 };
	struct bounce_dsn d = { 0 };
	struct bounce_buf b = { 0 };
	struct src orig;
	int mode;

	if (size < 1 || size > 8192)
		return 0;
	mode = data[0];
	copy = malloc(size);
	memcpy(copy, data + 1, size - 1);
	copy[size - 1] = '\0';
	while (nf < 8 && pos < size - 1) { /* NUL-separated fields */
		f[nf++] = copy + pos;
		pos += strlen(copy + pos) + 1;
	}
	orig.p = (mode & 1) && pos < size - 1 ? copy + pos : clean;
	orig.n = (mode & 1) && pos < size - 1 ? size - 1 - pos : sizeof(clean) - 1;
	orig.off = 0;
	r.address = f[0] && *f[0] ? f[0] : "rcpt@example.test";
	r.orcpt = f[1];
	r.action = (enum bounce_action)((mode >> 1) % 5);
	r.remote_mta = f[2];
	r.code = (mode >> 4) % 2 ? 550 : 0;
	r.enhanced = f[3];
	r.text = f[4];
	r.last_attempt_ms = 1700000000000ull;
	r.retry_until_ms = (mode & 0x40) ? 1700000100000ull : 0;
	d.reporting_mta = "mxbatch.test";
	d.sender = f[5] && *f[5] ? f[5] : "sender@example.test";
	d.envid = f[6];
	d.ret = (enum bounce_ret)((mode >> 5) % 3);
	d.arrival_ms = 1699999999000ull;
	d.queue_id = f[7] ? f[7] : "q1";
	d.rcpts = &r;
	d.n_rcpts = 1;
	d.read = read_orig;
	d.read_arg = &orig;
	d.original_size = orig.n;
	d.max_return = 4096;
	d.date_ms = 1700000000000ull;
	d.message_id = "<dsn@mxbatch.test>";
	if (bounce_dsn_write(&d, bounce_buf_write, &b, NULL) == BOUNCE_DSN_OK &&
	    !(mode & 1))
		check_output(&b);
	bounce_buf_release(&b);
	free(copy);
	return 0;
}
