/*
 * fuzz_smtpc_reply - what a hostile remote MX says, through the SMTP
 * client's reply parser (src/smtpclient/smtpc_reply.c): the input is cut
 * into lines at LF (a trailing CR dropped, as the session does) and fed to
 * smtpc_reply_feed; EHLO capability lines go to smtpc_caps_parse_line.
 * Properties: a finished reply has a code 200..559, its kept text is
 * NUL-terminated, bounded and free of control characters; the enhanced
 * code is "x.y.z" of the reply's class; bounds on lines/bytes hold.
 */
#include "smtpclient/smtpc_internal.h"
#include "fuzz_util.h"

static void
check_done(const struct smtpc_reply *r)
{
	FZ_CHECK(r->code >= 200 && r->code <= 559);
	FZ_CHECK(r->textlen == strlen(r->text) && r->textlen < sizeof(r->text));
	FZ_CHECK(fz_clean(r->text, sizeof(r->text) - 1));
	FZ_CHECK(fz_clean(r->enhanced, sizeof(r->enhanced) - 1));
	if (r->enhanced[0] != '\0')
		FZ_CHECK(r->enhanced[0] - '0' == r->code / 100);
	FZ_CHECK(r->nlines >= 1 && r->nlines <= SMTPC_REPLY_MAX_LINES);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtpc_reply r;
	struct smtpc_caps caps;
	const char *p = (const char *)data, *end = p + size, *nl;
	char enh[16], dst[64];
	size_t dlen = 0;

	smtpc_reply_reset(&r);
	memset(&caps, 0, sizeof(caps));
	while (p < end) {
		const char *text = NULL;
		size_t len, tlen = 0;
		nl = memchr(p, '\n', (size_t)(end - p));
		len = (size_t)((nl ? nl : end) - p);
		if (len > 0 && p[len - 1] == '\r')
			len--;
		if (len >= SMTPC_LINE_MAX)
			break; /* the session refuses the line before parsing */
		switch (smtpc_reply_feed(&r, p, len, &text, &tlen)) {
		case SMTPC_REPLY_DONE:
			check_done(&r);
			smtpc_reply_reset(&r);
			break;
		case SMTPC_REPLY_BAD:
			FZ_CHECK(r.error != NULL);
			smtpc_reply_reset(&r);
			break;
		case SMTPC_REPLY_MORE:
			FZ_CHECK(r.nbytes <= SMTPC_REPLY_MAX_BYTES + SMTPC_LINE_MAX);
			break;
		}
		if (text != NULL) {
			FZ_CHECK(text >= p && text + tlen <= p + len);
			smtpc_caps_parse_line(&caps, text, tlen);
		}
		(void)smtpc_enhanced_parse(size % 6 * 100, p, len, enh, sizeof(enh));
		FZ_CHECK(strnlen(enh, sizeof(enh)) < sizeof(enh));
		smtpc_text_append(dst, sizeof(dst), &dlen, p, len);
		FZ_CHECK(dlen == strlen(dst) && dlen < sizeof(dst));
		FZ_CHECK(fz_clean(dst, sizeof(dst) - 1));
		p = nl ? nl + 1 : end;
	}
	return 0;
}
