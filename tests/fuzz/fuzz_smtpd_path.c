/*
 * fuzz_smtpd_path - RFC 5321 paths and domains (src/api/smtpd_parse.c):
 * smtpd_path_parse with each flag combination and smtpd_domain_norm.
 * Properties: on success the cursor moved forward inside the input, the
 * address fits SMTPD_PATH_MAX, holds no control characters, has exactly
 * one '@' outside quotes unless empty, and a lowercase domain (address
 * literals keep their "IPv6:" tag as written).
 */
#include "api/smtpd_internal.h"
#include "fuzz_util.h"

static void
check_addr(const char *out)
{
	const char *at;

	FZ_CHECK(fz_clean(out, SMTPD_PATH_MAX));
	if (out[0] == '\0')
		return;
	at = strrchr(out, '@');
	FZ_CHECK(at != NULL && at != out && at[1] != '\0');
	for (const char *d = at + 1; at[1] != '[' && *d; d++)
		FZ_CHECK(!(*d >= 'A' && *d <= 'Z'));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char out[SMTPD_PATH_MAX + 1], dom[SMTPD_DOMAIN_MAX + 1];
	char *s;
	int utf8;

	if (size > 4096)
		return 0;
	s = fz_strndup(data, size);
	for (int flags = 0; flags < 4; flags++) {
		const char *p = s;
		enum smtpd_path_rc rc = smtpd_path_parse(&p, flags, out, &utf8);
		if (rc == PATH_OK) {
			FZ_CHECK(p > s && p <= s + strlen(s));
			check_addr(out);
			FZ_CHECK(out[0] != '\0' || (flags & PATH_NULL_OK));
		} else if (rc != PATH_NULL) { /* "<>" where no null path is allowed
		                                * moves past it, by contract */
			FZ_CHECK(p == s);
		}
	}
	for (int u = 0; u < 2; u++)
		if (smtpd_domain_norm(s, strlen(s), u, dom) == PATH_OK)
			FZ_CHECK(fz_clean(dom, SMTPD_DOMAIN_MAX) && dom[0] != '\0');
	free(s);
	return 0;
}
