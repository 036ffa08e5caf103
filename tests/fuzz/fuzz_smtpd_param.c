/*
 * fuzz_smtpd_param - the byte-level decoders of the submission server
 * (src/api/smtpd_param.c, smtpd_parse.c, smtpd_cidr.c): xtext (ENVID,
 * ORCPT), UTF-8 length, base64 and SASL PLAIN, CIDR lists. Properties:
 * decoded xtext never holds a control character (CR/LF/NUL injection into
 * the store or a DSN), output never exceeds the given capacity.
 */
#include "api/smtpd_internal.h"
#include "fuzz_util.h"

#include <netinet/in.h>

static void
fuzz_xtext(const char *s, size_t n)
{
	char dec[SMTPD_ORCPT_MAX * 4 + 2];

	for (int u = 0; u < 2; u++) {
		if (smtpd_xtext_decode(s, n, u, dec, sizeof(dec)) == 0)
			FZ_CHECK(fz_clean(dec, sizeof(dec) - 1));
		(void)smtpd_xtext_decode(s, n, u, NULL, 0);
		/* a small output buffer must be refused, not overrun */
		char small[8];
		if (smtpd_xtext_decode(s, n, u, small, sizeof(small)) == 0)
			FZ_CHECK(strlen(small) < sizeof(small));
	}
}

static void
fuzz_b64(const char *s, size_t n)
{
	unsigned char out[64];
	char user[16], pass[16];
	long k = smtpd_b64_decode(s, n, out, sizeof(out));

	FZ_CHECK(k <= (long)sizeof(out));
	if (k > 0 && smtpd_auth_plain(out, (size_t)k, user, sizeof(user), pass,
	                              sizeof(pass)) == 0)
		FZ_CHECK(strlen(user) < sizeof(user) && strlen(pass) < sizeof(pass));
}

static void
fuzz_cidr(const char *s)
{
	char err[256];
	struct smtpd_cidrs *c = smtpd_cidrs_parse(s, err, sizeof(err));
	struct sockaddr_in a4 = { .sin_family = AF_INET };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6 };

	if (c == NULL) {
		FZ_CHECK(strnlen(err, sizeof(err)) < sizeof(err));
		return;
	}
	a4.sin_addr.s_addr = htonl(0x7f000001);
	(void)smtpd_cidrs_match(c, (struct sockaddr *)&a4);
	a6.sin6_addr.s6_addr[15] = 1;
	(void)smtpd_cidrs_match(c, (struct sockaddr *)&a6);
	smtpd_cidrs_free(c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if (size < 1 || size > 4096)
		return 0;
	s = fz_strndup(data + 1, size - 1);
	switch (data[0] % 4) {
	case 0:
		fuzz_xtext((const char *)data + 1, size - 1);
		break;
	case 1:
		fuzz_b64((const char *)data + 1, size - 1);
		break;
	case 2:
		fuzz_cidr(s);
		break;
	default:
		for (size_t i = 0; i + 1 < size; ) {
			size_t u = smtpd_utf8_len(data + 1 + i, size - 1 - i);
			FZ_CHECK(u <= 4 && u <= size - 1 - i);
			i += u ? u : 1;
		}
		break;
	}
	free(s);
	return 0;
}
