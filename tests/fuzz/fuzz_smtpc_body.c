/*
 * fuzz_smtpc_body - the SMTP client's body encoder (src/smtpclient/
 * smtpc_body.c), fed a customer's message in random slices. This is the
 * outbound smuggling guard: whatever bytes were submitted, the wire must
 * show only CRLF line ends (no bare CR or LF), no line over 998 octets
 * plus CRLF, and in DATA mode no line that is a lone "." before the end.
 */
#include "smtpclient/smtpc_internal.h"
#include "fuzz_util.h"

static void
check_wire(const char *w, size_t n, int dotstuff)
{
	size_t col = 0;

	for (size_t i = 0; i < n; i++) {
		if (w[i] == '\r') {
			FZ_CHECK(i + 1 < n && w[i + 1] == '\n');
			if (dotstuff && col == 1 && w[i - 1] == '.')
				FZ_CHECK(i + 2 == n); /* only the final dot */
			FZ_CHECK(col <= SMTPC_BODY_LINE_MAX + 1);
			col = 0;
			i++;
			continue;
		}
		FZ_CHECK(w[i] != '\n');
		col++;
	}
	FZ_CHECK(col == 0); /* ends with CRLF */
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtpc_dot d;
	char *out;
	size_t o = 0, i = 0;
	int dotstuff;

	if (size < 2 || size > 65536)
		return 0;
	dotstuff = data[0] & 1;
	size_t slice = (size_t)data[1] + 1;
	data += 2, size -= 2;
	out = malloc(2 * size + 8 + 8);
	if (out == NULL)
		abort();
	smtpc_dot_init(&d, dotstuff);
	while (i < size) {
		size_t n = size - i < slice ? size - i : slice;
		o += smtpc_dot_encode(&d, (const char *)data + i, n, out + o);
		i += n;
	}
	FZ_CHECK(o <= 2 * size + 8);
	o += smtpc_dot_finish(&d, out + o);
	if (o > 0)
		check_wire(out, o, dotstuff);
	free(out);
	return 0;
}
