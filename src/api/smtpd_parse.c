/*
 * smtpd_parse.c - command lines and RFC 5321 paths for the submission server.
 *
 * Pure functions (no I/O, no state), called on the loop thread by the
 * session code and directly by the unit tests. Paths follow RFC 5321 4.1.2
 * strictly (angle brackets required, quoted local parts allowed, source
 * routes accepted and dropped); UTF-8 only under SMTPUTF8 (RFC 6531);
 * domains are lowercased and IDNs turned into A-labels with libidn2.
 */
#include "api/smtpd_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <idn2.h>

static const struct {
	const char *name;
	enum smtpd_cmd cmd;
} verbs[] = {
	{ "HELO", CMD_HELO }, { "EHLO", CMD_EHLO }, { "MAIL", CMD_MAIL },
	{ "RCPT", CMD_RCPT }, { "DATA", CMD_DATA }, { "BDAT", CMD_BDAT },
	{ "RSET", CMD_RSET }, { "NOOP", CMD_NOOP }, { "QUIT", CMD_QUIT },
	{ "VRFY", CMD_VRFY }, { "EXPN", CMD_EXPN }, { "HELP", CMD_HELP },
	{ "STARTTLS", CMD_STARTTLS }, { "AUTH", CMD_AUTH },
};

const char *
smtpd_line_check(const char *line, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (line[i] == '\0')
			return "500 5.5.2 NUL character in command refused";
		if (line[i] == '\r' || line[i] == '\n')
			return "500 5.5.2 Bare CR or LF in command refused; "
			       "lines end with CRLF";
	}
	return NULL;
}

enum smtpd_cmd
smtpd_cmd_parse(const char *line, const char **arg)
{
	size_t i, n;

	*arg = "";
	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		n = strlen(verbs[i].name);
		if (strncasecmp(line, verbs[i].name, n) != 0)
			continue;
		if (line[n] == '\0')
			return verbs[i].cmd;
		if (line[n] == ' ') {
			*arg = line + n + 1;
			return verbs[i].cmd;
		}
	}
	return CMD_UNKNOWN;
}

const char *
smtpd_cmd_name(enum smtpd_cmd cmd)
{
	size_t i;

	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (verbs[i].cmd == cmd)
			return verbs[i].name;
	return "UNKNOWN";
}

size_t
smtpd_utf8_len(const unsigned char *p, size_t n)
{
	size_t len, i;
	uint32_t cp;

	if (n == 0)
		return 0;
	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2, cp = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3, cp = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4, cp = p[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0; /* overlong, out of range or a surrogate */
	return len;
}

/* is_atext - RFC 5321 atext (ASCII part) */
static int
is_atext(unsigned char c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* scan_local - the local part at s: dot-string or quoted-string. Returns
 * its length, 0 on bad syntax; *has_utf8 if it holds non-ASCII. */
static size_t
scan_local(const char *s, int utf8_ok, int *has_utf8)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, u;
	int need_atom = 1;

	if (p[0] == '"') {
		for (i = 1; p[i] != '"'; ) {
			if (p[i] == '\\' && p[i + 1] >= 32 && p[i + 1] <= 126) {
				i += 2;
			} else if (p[i] >= 32 && p[i] <= 126 && p[i] != '\\') {
				i++;
			} else if (p[i] >= 0x80 && (u = smtpd_utf8_len(p + i, strlen(s + i)))) {
				*has_utf8 = 1;
				i += u;
			} else {
				return 0;
			}
		}
		return i == 1 ? 0 : i + 1; /* empty quoted string refused */
	}
	for (;;) {
		if (is_atext(p[i])) {
			i++;
			need_atom = 0;
		} else if (p[i] >= 0x80 && (u = smtpd_utf8_len(p + i, strlen(s + i)))) {
			*has_utf8 = 1;
			i += u;
			need_atom = 0;
		} else if (p[i] == '.' && !need_atom) {
			i++;
			need_atom = 1;
		} else {
			break;
		}
	}
	(void)utf8_ok;
	return need_atom ? 0 : i;
}

/* addr_literal - "[1.2.3.4]" or "[IPv6:...]" of n bytes into out */
static enum smtpd_path_rc
addr_literal(const char *d, size_t n, char *out)
{
	char buf[64];
	unsigned char bin[16];

	if (n < 3 || n >= sizeof(buf) || d[n - 1] != ']')
		return PATH_SYNTAX;
	memcpy(buf, d + 1, n - 2);
	buf[n - 2] = '\0';
	if (strncasecmp(buf, "IPv6:", 5) == 0) {
		if (inet_pton(AF_INET6, buf + 5, bin) != 1)
			return PATH_SYNTAX;
	} else if (inet_pton(AF_INET, buf, bin) != 1) {
		return PATH_SYNTAX;
	}
	memcpy(out, d, n);
	out[n] = '\0';
	return PATH_OK;
}

/* ascii_domain - RFC 5321 Domain: sub-domain *("." sub-domain) */
static enum smtpd_path_rc
ascii_domain(const char *d, size_t n, char *out)
{
	size_t i, label = 0;

	if (n == 0 || n > SMTPD_DOMAIN_MAX)
		return n ? PATH_TOO_LONG : PATH_SYNTAX;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)d[i];
		if (c == '.') {
			if (label == 0 || d[i - 1] == '-')
				return PATH_SYNTAX;
			label = 0;
		} else if (isalnum(c) || (c == '-' && label > 0)) {
			if (++label > 63)
				return PATH_SYNTAX;
		} else {
			return PATH_SYNTAX;
		}
		out[i] = (char)tolower(c);
	}
	if (label == 0 || d[n - 1] == '-')
		return PATH_SYNTAX;
	out[n] = '\0';
	return PATH_OK;
}

enum smtpd_path_rc
smtpd_domain_norm(const char *d, size_t n, int utf8_ok, char *out)
{
	char buf[SMTPD_DOMAIN_MAX * 4 + 1];
	uint8_t *alabel = NULL;
	enum smtpd_path_rc rc;
	size_t i;
	int ascii = 1;

	if (n > 0 && d[0] == '[')
		return addr_literal(d, n, out);
	for (i = 0; i < n; i++)
		if ((unsigned char)d[i] >= 0x80)
			ascii = 0;
	if (ascii)
		return ascii_domain(d, n, out);
	if (!utf8_ok)
		return PATH_NEED_UTF8;
	if (n >= sizeof(buf))
		return PATH_TOO_LONG;
	memcpy(buf, d, n);
	buf[n] = '\0';
	if (idn2_lookup_u8((const uint8_t *)buf, &alabel,
	                   IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) != IDN2_OK)
		return PATH_BAD_IDN;
	rc = ascii_domain((char *)alabel, strlen((char *)alabel), out);
	idn2_free(alabel);
	return rc == PATH_OK ? PATH_OK : PATH_BAD_IDN;
}

/* skip_route - RFC 5321 A-d-l ("@a,@b:"), accepted and ignored */
static const char *
skip_route(const char *p)
{
	if (*p != '@')
		return p;
	for (;;) {
		p++; /* '@' */
		while (isalnum((unsigned char)*p) || *p == '-' || *p == '.')
			p++;
		if (*p == ',' && p[1] == '@') {
			p++;
			continue;
		}
		return *p == ':' ? p + 1 : NULL;
	}
}

/* mailbox - "local@domain" of n bytes into out (normalised) */
static enum smtpd_path_rc
mailbox(const char *s, size_t n, int flags, char *out, int *utf8)
{
	char local[SMTPD_PATH_MAX + 1], dom[SMTPD_DOMAIN_MAX + 1];
	size_t ln;
	enum smtpd_path_rc rc;

	if (n > SMTPD_PATH_MAX - 2)
		return PATH_TOO_LONG;
	memcpy(local, s, n);
	local[n] = '\0';
	*utf8 = 0;
	ln = scan_local(local, flags & PATH_UTF8_OK, utf8);
	if (ln == 0 || local[ln] != '@')
		return PATH_SYNTAX;
	if (*utf8 && !(flags & PATH_UTF8_OK))
		return PATH_NEED_UTF8;
	if (ln > SMTPD_LOCAL_MAX)
		return PATH_TOO_LONG;
	/* the domain on its own first: an IDN's A-labels can be longer than
	 * its UTF-8, so only the normalised length says whether it fits */
	rc = smtpd_domain_norm(local + ln + 1, n - ln - 1, flags & PATH_UTF8_OK,
	                       dom);
	if (rc != PATH_OK)
		return rc;
	if (ln + 1 + strlen(dom) > SMTPD_PATH_MAX - 2)
		return PATH_TOO_LONG;
	memcpy(out, local, ln + 1);
	strcpy(out + ln + 1, dom);
	return PATH_OK;
}

/* path_end - the '>' closing the path at p, honouring quoted strings */
static const char *
path_end(const char *p)
{
	int quoted = 0;

	for (; *p; p++) {
		if (quoted && *p == '\\' && p[1])
			p++;
		else if (*p == '"')
			quoted = !quoted;
		else if (!quoted && *p == '>')
			return p;
	}
	return NULL;
}

enum smtpd_path_rc
smtpd_path_parse(const char **s, int flags, char *out, int *utf8)
{
	const char *p = *s, *end;
	enum smtpd_path_rc rc;

	*utf8 = 0;
	out[0] = '\0';
	if (*p++ != '<')
		return PATH_SYNTAX;
	if (*p == '>') {
		*s = p + 1;
		return (flags & PATH_NULL_OK) ? PATH_OK : PATH_NULL;
	}
	if ((p = skip_route(p)) == NULL || (end = path_end(p)) == NULL)
		return PATH_SYNTAX;
	if ((size_t)(end - *s) + 1 > SMTPD_PATH_MAX * 2)
		return PATH_TOO_LONG;
	rc = mailbox(p, (size_t)(end - p), flags, out, utf8);
	if (rc == PATH_OK)
		*s = end + 1;
	else
		out[0] = '\0';
	return rc;
}
