/*
 * fuzz_smtpd_cmd - one submission command line through the same parsers
 * the session uses (src/api/smtpd_parse.c, smtpd_param.c): line check,
 * verb, then MAIL/RCPT/BDAT/AUTH arguments. The first input byte picks
 * the offered extensions (DSN, SMTPUTF8). Properties: every refusal is a
 * well-formed "ddd x.y.z text" reply; accepted addresses and DSN fields
 * fit their bounds and hold no control characters.
 */
#include "api/smtpd_internal.h"
#include "fuzz_util.h"

#include <ctype.h>

static void
check_reply(const char *r)
{
	if (r == NULL)
		return;
	FZ_CHECK(strlen(r) >= 9 && isdigit((unsigned char)r[0]) &&
	         (r[0] == '4' || r[0] == '5') && r[3] == ' ');
	FZ_CHECK(fz_clean(r, 510));
}

static void
fuzz_auth(const char *arg)
{
	unsigned char buf[1024];
	char user[256], pass[256];
	const char *sp = strchr(arg, ' ');
	const char *b = sp ? sp + 1 : arg;
	long n = smtpd_b64_decode(b, strlen(b), buf, sizeof(buf));

	FZ_CHECK(n <= (long)sizeof(buf));
	if (n >= 0 && smtpd_auth_plain(buf, (size_t)n, user, sizeof(user), pass,
	                               sizeof(pass)) == 0) {
		FZ_CHECK(strlen(user) > 0 && strlen(user) < sizeof(user));
		FZ_CHECK(strlen(pass) > 0 && strlen(pass) < sizeof(pass));
	}
}

static void
fuzz_line(const char *line, unsigned flags)
{
	int dsn = flags & 1, utf8 = (flags >> 1) & 1;
	char addr[SMTPD_PATH_MAX + 1];
	int addr_utf8 = 0, last = 0;
	uint64_t size;
	const char *arg, *r;
	struct smtpd_mail_args ma;
	struct smtpd_rcpt_args ra;

	switch (smtpd_cmd_parse(line, &arg)) {
	case CMD_MAIL:
		r = smtpd_mail_parse(arg, dsn, addr, &addr_utf8, &ma);
		check_reply(r);
		if (r == NULL) {
			FZ_CHECK(fz_clean(addr, SMTPD_PATH_MAX));
			FZ_CHECK(fz_clean(ma.envid, SMTPD_ENVID_MAX));
			FZ_CHECK(ma.ret <= RET_HDRS);
		}
		break;
	case CMD_RCPT:
		r = smtpd_rcpt_parse(arg, dsn, utf8, addr, &addr_utf8, &ra);
		check_reply(r);
		if (r == NULL) {
			FZ_CHECK(addr[0] != '\0');
			FZ_CHECK(fz_clean(addr, SMTPD_PATH_MAX));
			FZ_CHECK(fz_clean(ra.orcpt, SMTPD_ORCPT_MAX));
			FZ_CHECK((ra.notify & ~0xfu) == 0);
		}
		break;
	case CMD_BDAT:
		(void)smtpd_bdat_parse(arg, &size, &last);
		break;
	case CMD_AUTH:
		fuzz_auth(arg);
		break;
	default:
		break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line;
	unsigned flags;

	if (size < 1 || size > SMTPD_LINE_MAX + 1)
		return 0;
	flags = data[0];
	data++, size--;
	check_reply(smtpd_line_check((const char *)data, size));
	if (smtpd_line_check((const char *)data, size) != NULL)
		return 0;
	line = fz_strndup(data, size);
	fuzz_line(line, flags);
	free(line);
	return 0;
}
