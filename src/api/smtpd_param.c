/*
 * smtpd_param.c - MAIL/RCPT/BDAT arguments and AUTH encodings: ESMTP
 * parameters (SIZE, BODY, SMTPUTF8, RET, ENVID, AUTH, NOTIFY, ORCPT), xtext
 * (RFC 3461), base64 (RFC 4648) and SASL PLAIN (RFC 4616).
 *
 * Pure functions on the loop thread. DSN values are validated by decoding
 * them but kept exactly as the client wrote them; nothing containing CR, LF
 * or NUL ever passes (such bytes are not in the esmtp-value grammar).
 */
#include "api/smtpd_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A parameter "KEY[=value]" split out of an argument string */
struct param {
	char key[32];
	const char *val; /* NULL when no '=' */
	size_t vlen;
};

/* next_param - the next space-separated parameter at *p; 1 got one, 0 end,
 * -1 bad syntax (RFC 5321 esmtp-param; UTF-8 values only if utf8) */
static int
next_param(const char **p, int utf8, struct param *pm)
{
	const unsigned char *s = (const unsigned char *)*p;
	size_t k = 0, u;

	while (*s == ' ')
		s++;
	if (*s == '\0')
		return 0;
	while (isalnum(*s) || (k > 0 && *s == '-')) {
		if (k + 1 >= sizeof(pm->key))
			return -1;
		pm->key[k++] = (char)toupper(*s++);
	}
	pm->key[k] = '\0';
	pm->val = NULL;
	pm->vlen = 0;
	if (k == 0)
		return -1;
	if (*s == '=') {
		pm->val = (const char *)++s;
		while (*s > 32 && *s != 127 && *s != '=') {
			if (*s >= 0x80) {
				if (!utf8 || (u = smtpd_utf8_len(s, strlen((const char *)s))) == 0)
					return -1;
				s += u;
			} else {
				s++;
			}
		}
		pm->vlen = (size_t)((const char *)s - pm->val);
		if (pm->vlen == 0)
			return -1;
	}
	if (*s != ' ' && *s != '\0')
		return -1;
	*p = (const char *)s;
	return 1;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1; /* RFC 3461: hexchar is uppercase */
}

int
smtpd_xtext_decode(const char *s, size_t n, int utf8_ok, char *decoded,
                   size_t declen)
{
	unsigned char buf[SMTPD_ORCPT_MAX * 4 + 1];
	size_t i, o = 0, u;
	int hi, lo;

	if (n > SMTPD_ORCPT_MAX * 4)
		return -1;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '+') {
			if (i + 2 >= n)
				return -1;
			if ((hi = hexval(s[i + 1])) < 0 || (lo = hexval(s[i + 2])) < 0)
				return -1;
			buf[o++] = (unsigned char)(hi * 16 + lo);
			i += 2;
		} else if ((c >= 33 && c <= 126 && c != '=') || (c >= 0x80 && utf8_ok)) {
			buf[o++] = c;
		} else {
			return -1;
		}
	}
	for (i = 0; i < o; i += u) {
		if (buf[i] < 32 || buf[i] == 127)
			return -1; /* controls, CR, LF, NUL never pass */
		u = buf[i] < 0x80 ? 1 : (utf8_ok ? smtpd_utf8_len(buf + i, o - i) : 0);
		if (u == 0)
			return -1;
	}
	if (decoded) {
		if (o + 1 > declen)
			return -1;
		memcpy(decoded, buf, o);
		decoded[o] = '\0';
	}
	return 0;
}

/* parse_size - SIZE=digits */
static int
parse_size_value(const struct param *pm, uint64_t *out)
{
	char buf[24];
	char *end;
	unsigned long long v;

	if (pm->val == NULL || pm->vlen >= sizeof(buf) - 3)
		return -1;
	memcpy(buf, pm->val, pm->vlen);
	buf[pm->vlen] = '\0';
	if (!isdigit((unsigned char)buf[0]))
		return -1;
	errno = 0;
	v = strtoull(buf, &end, 10);
	if (*end != '\0' || errno)
		return -1;
	*out = v;
	return 0;
}

/* val_is - case-insensitive compare of a parameter value */
static int
val_is(const struct param *pm, const char *s)
{
	return pm->val && pm->vlen == strlen(s) &&
	       strncasecmp(pm->val, s, pm->vlen) == 0;
}

/* mail_param - one MAIL parameter into a; NULL or a reply */
static const char *
mail_param(const struct param *pm, int dsn, struct smtpd_mail_args *a,
           unsigned *seen)
{
	static const char *names[] = { "SIZE", "BODY", "SMTPUTF8", "RET", "ENVID", "AUTH" };
	unsigned i;

	for (i = 0; i < 6; i++)
		if (strcmp(pm->key, names[i]) == 0)
			break;
	if (i == 6 || (!dsn && (i == 3 || i == 4)))
		return "555 5.5.4 Unsupported MAIL parameter";
	if (*seen & (1u << i))
		return "501 5.5.4 Duplicate MAIL parameter";
	*seen |= 1u << i;
	switch (i) {
	case 0:
		return parse_size_value(pm, &a->size) ? "501 5.5.4 Bad SIZE parameter" : NULL;
	case 1:
		if (val_is(pm, "8BITMIME")) a->body_8bit = 1;
		else if (!val_is(pm, "7BIT")) return "501 5.5.4 Bad BODY parameter (7BIT or 8BITMIME)";
		return NULL;
	case 2:
		if (pm->val) return "501 5.5.4 SMTPUTF8 takes no value";
		a->smtputf8 = 1;
		return NULL;
	case 3:
		if (val_is(pm, "FULL")) a->ret = RET_FULL;
		else if (val_is(pm, "HDRS")) a->ret = RET_HDRS;
		else return "501 5.5.4 Bad RET parameter (FULL or HDRS)";
		return NULL;
	case 4:
		if (!pm->val || pm->vlen > SMTPD_ENVID_MAX ||
		    smtpd_xtext_decode(pm->val, pm->vlen, 0, NULL, 0) < 0)
			return "501 5.5.4 Bad ENVID parameter (xtext, at most 100 characters)";
		memcpy(a->envid, pm->val, pm->vlen);
		a->envid[pm->vlen] = '\0';
		return NULL;
	default: /* AUTH=<mailbox> (RFC 4954 5): validated, not trusted */
		if (!pm->val || smtpd_xtext_decode(pm->val, pm->vlen, 0, NULL, 0) < 0)
			return "501 5.5.4 Bad AUTH parameter";
		return NULL;
	}
}

static const char *
path_reply(enum smtpd_path_rc rc, int sender)
{
	switch (rc) {
	case PATH_TOO_LONG:
		return sender ? "553 5.1.7 Sender address too long"
		              : "553 5.1.3 Recipient address too long";
	case PATH_NEED_UTF8:
		return "553 5.6.7 Non-ASCII address requires the SMTPUTF8 parameter";
	case PATH_BAD_IDN:
		return sender ? "553 5.1.7 Sender domain is not a valid IDN"
		              : "553 5.1.3 Recipient domain is not a valid IDN";
	case PATH_NULL:
		return "553 5.1.3 Null recipient not allowed";
	default:
		return sender ? "553 5.1.7 Sender address syntax error"
		              : "553 5.1.3 Recipient address syntax error";
	}
}

/* utf8_declared - is SMTPUTF8 among the parameters after the path? */
static int
utf8_declared(const char *p)
{
	struct param pm;
	int r;

	while ((r = next_param(&p, 1, &pm)) == 1)
		if (strcmp(pm.key, "SMTPUTF8") == 0)
			return 1;
	return 0;
}

const char *
smtpd_mail_parse(const char *arg, int dsn, char *from, int *from_utf8,
                 struct smtpd_mail_args *a)
{
	const char *p = arg, *r;
	enum smtpd_path_rc rc;
	struct param pm;
	unsigned seen = 0;
	int n;

	memset(a, 0, sizeof(*a));
	if (strncasecmp(p, "FROM:", 5) != 0)
		return "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]";
	p += 5;
	while (*p == ' ')
		p++;
	if (*p != '<')
		return "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]";
	{
		const char *q = p, *end = strchr(p, '>');
		int utf8 = end ? utf8_declared(end + 1) : 0;
		rc = smtpd_path_parse(&q, PATH_NULL_OK | (utf8 ? PATH_UTF8_OK : 0),
		                      from, from_utf8);
		if (rc != PATH_OK)
			return path_reply(rc, 1);
		p = q;
	}
	if (*p != ' ' && *p != '\0')
		return "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]";
	while ((n = next_param(&p, 0, &pm)) == 1)
		if ((r = mail_param(&pm, dsn, a, &seen)) != NULL)
			return r;
	return n < 0 ? "501 5.5.4 Bad MAIL parameter syntax" : NULL;
}

/* notify_parse - NEVER | SUCCESS,FAILURE,DELAY */
static int
notify_parse(const struct param *pm, unsigned *out)
{
	const char *p = pm->val, *end, *c;
	unsigned bits = 0;
	size_t n;

	if (p == NULL)
		return -1;
	end = p + pm->vlen;
	while (p < end) {
		c = memchr(p, ',', (size_t)(end - p));
		n = (size_t)((c ? c : end) - p);
		if (n == 5 && strncasecmp(p, "NEVER", 5) == 0) bits |= NOTIFY_NEVER;
		else if (n == 7 && strncasecmp(p, "SUCCESS", 7) == 0) bits |= NOTIFY_SUCCESS;
		else if (n == 7 && strncasecmp(p, "FAILURE", 7) == 0) bits |= NOTIFY_FAILURE;
		else if (n == 5 && strncasecmp(p, "DELAY", 5) == 0) bits |= NOTIFY_DELAY;
		else return -1;
		if (c && c + 1 == end)
			return -1;
		p = c ? c + 1 : end;
	}
	if ((bits & NOTIFY_NEVER) && bits != NOTIFY_NEVER)
		return -1;
	*out = bits;
	return 0;
}

/* orcpt_check - "addr-type;xtext" (RFC 3461 4.2, RFC 6533 utf-8) */
static int
orcpt_check(const struct param *pm, int utf8)
{
	const char *semi;
	size_t i, tl;

	if (pm->val == NULL || pm->vlen > SMTPD_ORCPT_MAX)
		return -1;
	semi = memchr(pm->val, ';', pm->vlen);
	if (semi == NULL || semi == pm->val)
		return -1;
	tl = (size_t)(semi - pm->val);
	for (i = 0; i < tl; i++)
		if (!isalnum((unsigned char)pm->val[i]) && pm->val[i] != '-')
			return -1;
	if (pm->vlen - tl - 1 == 0)
		return -1;
	return smtpd_xtext_decode(semi + 1, pm->vlen - tl - 1, utf8, NULL, 0);
}

const char *
smtpd_rcpt_parse(const char *arg, int dsn, int utf8, char *to, int *to_utf8,
                 struct smtpd_rcpt_args *a)
{
	const char *p = arg;
	enum smtpd_path_rc rc;
	struct param pm;
	unsigned seen = 0;
	int n;

	memset(a, 0, sizeof(*a));
	if (strncasecmp(p, "TO:", 3) != 0)
		return "501 5.5.4 Syntax: RCPT TO:<address> [parameters]";
	p += 3;
	while (*p == ' ')
		p++;
	if (*p != '<')
		return "501 5.5.4 Syntax: RCPT TO:<address> [parameters]";
	if ((rc = smtpd_path_parse(&p, utf8 ? PATH_UTF8_OK : 0, to, to_utf8)) != PATH_OK)
		return path_reply(rc, 0);
	if (*p != ' ' && *p != '\0')
		return "501 5.5.4 Syntax: RCPT TO:<address> [parameters]";
	while ((n = next_param(&p, utf8, &pm)) == 1) {
		int notify = strcmp(pm.key, "NOTIFY") == 0;
		if (!dsn || (!notify && strcmp(pm.key, "ORCPT") != 0))
			return "555 5.5.4 Unsupported RCPT parameter";
		if (seen & (notify ? 1u : 2u))
			return "501 5.5.4 Duplicate RCPT parameter";
		seen |= notify ? 1u : 2u;
		if (notify && notify_parse(&pm, &a->notify) < 0)
			return "501 5.5.4 Bad NOTIFY parameter (NEVER or SUCCESS,FAILURE,DELAY)";
		if (!notify && orcpt_check(&pm, utf8) < 0)
			return "501 5.5.4 Bad ORCPT parameter (addr-type;xtext)";
		if (!notify) {
			memcpy(a->orcpt, pm.val, pm.vlen);
			a->orcpt[pm.vlen] = '\0';
		}
	}
	return n < 0 ? "501 5.5.4 Bad RCPT parameter syntax" : NULL;
}

int
smtpd_bdat_parse(const char *arg, uint64_t *size, int *last)
{
	const char *p = arg;
	uint64_t v = 0;

	*last = 0;
	if (!isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (*p == ' ' && strcasecmp(p + 1, "LAST") == 0)
		*last = 1;
	else if (*p != '\0')
		return -1;
	*size = v;
	return 0;
}

static int
b64val(int c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

long
smtpd_b64_decode(const char *in, size_t n, unsigned char *out, size_t outcap)
{
	size_t i, o = 0;
	int v[4], k, pad;

	if (n % 4 != 0)
		return -1;
	for (i = 0; i < n; i += 4) {
		pad = 0;
		for (k = 0; k < 4; k++) {
			if (in[i + k] == '=' && i + 4 == n && k >= 2) {
				pad++;
				v[k] = 0;
			} else if (pad || (v[k] = b64val((unsigned char)in[i + k])) < 0) {
				return -1; /* data after '=' or a bad character */
			}
		}
		if (o + 3 - (size_t)pad > outcap)
			return -1;
		out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (pad < 2)
			out[o++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
		if (pad < 1)
			out[o++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
	}
	return (long)o;
}

int
smtpd_auth_plain(const unsigned char *buf, size_t n, char *user,
                 size_t userlen, char *pass, size_t passlen)
{
	const unsigned char *z1, *z2;
	size_t zl, ul, pl;

	if ((z1 = memchr(buf, '\0', n)) == NULL)
		return -1;
	zl = (size_t)(z1 - buf);
	if ((z2 = memchr(z1 + 1, '\0', n - zl - 1)) == NULL)
		return -1;
	ul = (size_t)(z2 - z1 - 1);
	pl = n - zl - ul - 2;
	if (ul == 0 || ul >= userlen || pl == 0 || pl >= passlen ||
	    memchr(z2 + 1, '\0', pl) != NULL)
		return -1;
	if (zl && (zl != ul || memcmp(buf, z1 + 1, ul) != 0))
		return -1; /* acting as another identity is not supported */
	memcpy(user, z1 + 1, ul);
	user[ul] = '\0';
	memcpy(pass, z2 + 1, pl);
	pass[pl] = '\0';
	return 0;
}
