/*
 * smtpc_addr.c - destination safety: which exchanger addresses an outbound
 * relay may connect to.
 *
 * By default loopback, private (RFC 1918, CGNAT, ULA), link-local,
 * unspecified and reserved/multicast addresses are refused, so a DNS record
 * cannot steer the relay into the local network. The operator's
 * [delivery] allow_private_destinations ("yes" or a CIDR list) opens them
 * (tests, benchmarks, internal relays). Pure code, any thread.
 */
#include "smtpclient/smtpc_internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct smtpc_net {
	int family;                 /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned prefix;
};

struct smtpc_netlist {
	int all;                    /* "yes" */
	struct smtpc_net *nets;
	size_t n;
};

const char *
smtpc_addr_class_name(enum smtpc_addr_class c)
{
	switch (c) {
	case SMTPC_ADDR_PUBLIC: return "public";
	case SMTPC_ADDR_LOOPBACK: return "loopback";
	case SMTPC_ADDR_PRIVATE: return "private";
	case SMTPC_ADDR_LINK_LOCAL: return "link-local";
	case SMTPC_ADDR_UNSPECIFIED: return "unspecified";
	case SMTPC_ADDR_OTHER_RESERVED: return "reserved";
	}
	return "?";
}

/* classify_v4 - class of an IPv4 address given as 4 bytes */
static enum smtpc_addr_class
classify_v4(const unsigned char *a)
{
	if (a[0] == 0)
		return SMTPC_ADDR_UNSPECIFIED;
	if (a[0] == 127)
		return SMTPC_ADDR_LOOPBACK;
	if (a[0] == 10 || (a[0] == 172 && (a[1] & 0xf0) == 16) ||
	    (a[0] == 192 && a[1] == 168) || (a[0] == 100 && (a[1] & 0xc0) == 64))
		return SMTPC_ADDR_PRIVATE;
	if (a[0] == 169 && a[1] == 254)
		return SMTPC_ADDR_LINK_LOCAL;
	if (a[0] >= 224 || (a[0] == 198 && (a[1] & 0xfe) == 18) ||
	    (a[0] == 192 && a[1] == 0 && a[2] == 0))
		return SMTPC_ADDR_OTHER_RESERVED;
	return SMTPC_ADDR_PUBLIC;
}

/* classify_v6 - class of an IPv6 address (16 bytes) */
static enum smtpc_addr_class
classify_v6(const unsigned char *a)
{
	static const unsigned char mapped[12] = {0,0,0,0,0,0,0,0,0,0,0xff,0xff};
	static const unsigned char nat64[12] = {0,0x64,0xff,0x9b,0,0,0,0,0,0,0,0};
	static const unsigned char zero[15];

	if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0)
		return classify_v4(a + 12);
	if (memcmp(a, zero, 15) == 0)
		return a[15] == 1 ? SMTPC_ADDR_LOOPBACK :
		       a[15] == 0 ? SMTPC_ADDR_UNSPECIFIED :
		                    SMTPC_ADDR_OTHER_RESERVED;
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return SMTPC_ADDR_LINK_LOCAL;
	if ((a[0] & 0xfe) == 0xfc || (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0))
		return SMTPC_ADDR_PRIVATE;
	if (a[0] == 0xff)
		return SMTPC_ADDR_OTHER_RESERVED;
	return SMTPC_ADDR_PUBLIC;
}

enum smtpc_addr_class
smtpc_addr_classify(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		return classify_v4((const unsigned char *)&s4->sin_addr);
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		return classify_v6(s6->sin6_addr.s6_addr);
	}
	return SMTPC_ADDR_OTHER_RESERVED;
}

/* net_parse - one "addr[/prefix]" item into n; 0 ok, -1 bad */
static int
net_parse(const char *item, struct smtpc_net *n)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash, *end;
	unsigned long pfx;

	if (strlen(item) >= sizeof(buf))
		return -1;
	strcpy(buf, item);
	if ((slash = strchr(buf, '/')) != NULL)
		*slash = '\0';
	memset(n, 0, sizeof(*n));
	if (inet_pton(AF_INET, buf, n->addr) == 1)
		n->family = AF_INET, n->prefix = 32;
	else if (inet_pton(AF_INET6, buf, n->addr) == 1)
		n->family = AF_INET6, n->prefix = 128;
	else
		return -1;
	if (slash != NULL) {
		if (slash[1] == '\0')
			return -1;
		pfx = strtoul(slash + 1, &end, 10);
		if (*end != '\0' || pfx > n->prefix)
			return -1;
		n->prefix = (unsigned)pfx;
	}
	return 0;
}

/* netlist_add_item - trim and parse one comma-separated element */
static int
netlist_add_item(struct smtpc_netlist *nl, char *item, char *err,
                 size_t errlen)
{
	char *end;

	while (*item == ' ' || *item == '\t')
		item++;
	end = item + strlen(item);
	while (end > item && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	if (*item == '\0')
		return 0;
	nl->nets = xrealloc(nl->nets, (nl->n + 1) * sizeof(*nl->nets));
	if (net_parse(item, &nl->nets[nl->n]) < 0) {
		snprintf(err, errlen, "not an address or CIDR: \"%s\"", item);
		return -1;
	}
	nl->n++;
	return 0;
}

int
smtpc_netlist_parse(const char *spec, struct smtpc_netlist **out, char *err,
                    size_t errlen)
{
	struct smtpc_netlist *nl = NULL;
	char *copy = NULL, *save = NULL, *item;
	int yes = 0, rv = -1;

	*out = NULL;
	if (spec == NULL || *spec == '\0' || strcasecmp(spec, "no") == 0)
		return 0;
	nl = xcalloc(1, sizeof(*nl));
	if (parse_bool(spec, &yes) == 0) {
		nl->all = yes;
		if (!yes)
			goto done_empty;
		*out = nl;
		return 0;
	}
	copy = xstrdup(spec);
	for (item = strtok_r(copy, ",", &save); item != NULL;
	     item = strtok_r(NULL, ",", &save))
		if (netlist_add_item(nl, item, err, errlen) < 0)
			goto done;
	*out = nl;
	nl = NULL;
	rv = 0;
done:
	free(copy);
	smtpc_netlist_free(nl);
	return rv;
done_empty:
	smtpc_netlist_free(nl);
	return 0;
}

void
smtpc_netlist_free(struct smtpc_netlist *nl)
{
	if (nl == NULL)
		return;
	free(nl->nets);
	free(nl);
}

/* prefix_eq - do the first bits of a and b agree? */
static int
prefix_eq(const unsigned char *a, const unsigned char *b, unsigned bits)
{
	unsigned bytes = bits / 8, rest = bits % 8;

	if (memcmp(a, b, bytes) != 0)
		return 0;
	if (rest == 0)
		return 1;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (a[bytes] & mask) == (b[bytes] & mask);
}

int
smtpc_netlist_match(const struct smtpc_netlist *nl, const struct sockaddr *sa)
{
	static const unsigned char mapped[12] = {0,0,0,0,0,0,0,0,0,0,0xff,0xff};
	const unsigned char *a4 = NULL, *a6 = NULL;

	if (nl == NULL)
		return 0;
	if (nl->all)
		return 1;
	if (sa->sa_family == AF_INET)
		a4 = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
	else if (sa->sa_family == AF_INET6) {
		a6 = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		if (memcmp(a6, mapped, 12) == 0)
			a4 = a6 + 12;
	}
	for (size_t i = 0; i < nl->n; i++) {
		const struct smtpc_net *n = &nl->nets[i];
		if (n->family == AF_INET && a4 && prefix_eq(n->addr, a4, n->prefix))
			return 1;
		if (n->family == AF_INET6 && a6 && prefix_eq(n->addr, a6, n->prefix))
			return 1;
	}
	return 0;
}

int
smtpc_dest_allowed(const struct smtpc_netlist *allow, const struct sockaddr *sa)
{
	if (smtpc_addr_classify(sa) == SMTPC_ADDR_PUBLIC)
		return 1;
	return smtpc_netlist_match(allow, sa);
}
