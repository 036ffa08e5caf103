/*
 * smtpd_cidr.c - client network lists ([listen] trusted_networks): parse
 * "10.0.0.0/8, 192.0.2.7, ::1/128" once at start, match a peer address
 * (IPv4-mapped IPv6 peers match IPv4 entries). Loop thread; no state.
 */
#include "api/smtpd_internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

struct cidr {
	int family;              /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned bits;
};

struct smtpd_cidrs {
	struct cidr *v;
	size_t n;
};

/* cidr_parse - one "addr[/bits]" entry; 0 ok, -1 bad */
static int
cidr_parse(const char *s, struct cidr *c)
{
	char buf[64], *slash, *end;
	unsigned long bits;
	unsigned max, i;

	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	if ((slash = strchr(buf, '/')) != NULL)
		*slash++ = '\0';
	memset(c, 0, sizeof(*c));
	if (inet_pton(AF_INET, buf, c->addr) == 1)
		c->family = AF_INET, max = 32;
	else if (inet_pton(AF_INET6, buf, c->addr) == 1)
		c->family = AF_INET6, max = 128;
	else
		return -1;
	bits = max;
	if (slash) {
		bits = strtoul(slash, &end, 10);
		if (*slash == '\0' || *end != '\0' || bits > max)
			return -1;
	}
	c->bits = (unsigned)bits;
	for (i = c->bits; i < max; i++) /* clear host bits */
		c->addr[i / 8] &= (unsigned char)~(0x80u >> (i % 8));
	return 0;
}

struct smtpd_cidrs *
smtpd_cidrs_parse(const char *list, char *err, size_t errlen)
{
	struct smtpd_cidrs *c = xcalloc(1, sizeof(*c));
	char *copy = xstrdup(list ? list : ""), *tok, *save = NULL;

	for (tok = strtok_r(copy, ", \t", &save); tok;
	     tok = strtok_r(NULL, ", \t", &save)) {
		c->v = xrealloc(c->v, (c->n + 1) * sizeof(*c->v));
		if (cidr_parse(tok, &c->v[c->n]) < 0) {
			snprintf(err, errlen, "bad network '%s' (want addr or addr/bits)", tok);
			smtpd_cidrs_free(c);
			c = NULL;
			break;
		}
		c->n++;
	}
	free(copy);
	return c;
}

/* prefix_eq - do the first bits of a and b agree? */
static int
prefix_eq(const unsigned char *a, const unsigned char *b, unsigned bits)
{
	unsigned full = bits / 8, rest = bits % 8;
	unsigned char mask;

	if (memcmp(a, b, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	mask = (unsigned char)(0xffu << (8 - rest));
	return (a[full] & mask) == (b[full] & mask);
}

int
smtpd_cidrs_match(const struct smtpd_cidrs *c, const struct sockaddr *sa)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	const unsigned char *a4 = NULL, *a6 = NULL;
	size_t i;

	if (c == NULL || sa == NULL)
		return 0;
	if (sa->sa_family == AF_INET) {
		a4 = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
	} else if (sa->sa_family == AF_INET6) {
		a6 = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		if (memcmp(a6, mapped, 12) == 0)
			a4 = a6 + 12;
	}
	for (i = 0; i < c->n; i++) {
		const struct cidr *e = &c->v[i];
		if (e->family == AF_INET && a4 && prefix_eq(a4, e->addr, e->bits))
			return 1;
		if (e->family == AF_INET6 && a6 && prefix_eq(a6, e->addr, e->bits))
			return 1;
	}
	return 0;
}

void
smtpd_cidrs_free(struct smtpd_cidrs *c)
{
	if (c == NULL)
		return;
	free(c->v);
	free(c);
}
