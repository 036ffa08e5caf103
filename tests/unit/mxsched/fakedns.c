/*
 * fakedns.c - scripted DNS server for the mxsched unit tests (see
 * fakedns.h). Single-threaded, on the test's event loop; answers only
 * the one question of each query, compression only for the owner name.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/core.h"
#include "fakedns.h"

struct frec {
	char *name;
	int qtype;          /* 0 for a rule (rcode/mode) */
	char *value;
	uint32_t ttl;
	int rcode;
	enum fake_mode mode;
};

struct fquery {
	char name[256];
	int qtype;
};

struct fakedns {
	int fd, port;
	char server[32];
	struct event *ev;
	struct frec *recs;
	size_t n_recs;
	struct fquery *log;
	size_t n_log;
};

static void
add_rec(struct fakedns *f, const char *name, int qtype, const char *value,
        uint32_t ttl, int rcode, enum fake_mode mode)
{
	struct frec *r;

	f->recs = xrealloc(f->recs, (f->n_recs + 1) * sizeof(*f->recs));
	r = &f->recs[f->n_recs++];
	r->name = xstrdup(name);
	r->qtype = qtype;
	r->value = value ? xstrdup(value) : NULL;
	r->ttl = ttl;
	r->rcode = rcode;
	r->mode = mode;
}

void
fakedns_add(struct fakedns *f, const char *name, int qtype,
            const char *value, uint32_t ttl)
{
	add_rec(f, name, qtype, value, ttl, 0, FAKE_ANSWER);
}

void
fakedns_rcode(struct fakedns *f, const char *name, int rcode)
{
	add_rec(f, name, 0, NULL, 0, rcode, FAKE_ANSWER);
}

void
fakedns_mode(struct fakedns *f, const char *name, enum fake_mode m)
{
	add_rec(f, name, 0, NULL, 0, 0, m);
}

void
fakedns_clear(struct fakedns *f)
{
	for (size_t i = 0; i < f->n_recs; i++) {
		free(f->recs[i].name);
		free(f->recs[i].value);
	}
	free(f->recs);
	f->recs = NULL;
	f->n_recs = 0;
}

unsigned
fakedns_count(const struct fakedns *f, const char *name, int qtype)
{
	unsigned n = 0;

	for (size_t i = 0; i < f->n_log; i++)
		if ((name == NULL || strcasecmp(f->log[i].name, name) == 0) &&
		    (qtype == 0 || f->log[i].qtype == qtype))
			n++;
	return n;
}

/* put_name - encode a dotted name; 0 bytes on overflow */
static size_t
put_name(unsigned char *p, size_t room, const char *name)
{
	size_t n = 0;
	const char *s = name, *dot;

	while (*s) {
		dot = strchr(s, '.');
		size_t len = dot ? (size_t)(dot - s) : strlen(s);

		if (len == 0 || len > 63 || n + len + 2 > room)
			return 0;
		p[n++] = (unsigned char)len;
		memcpy(p + n, s, len);
		n += len;
		s += len + (dot ? 1 : 0);
	}
	p[n++] = 0;
	return n;
}

/* put_rdata - the record's RDATA; its length, or 0 */
static size_t
put_rdata(unsigned char *p, size_t room, const struct frec *r)
{
	unsigned pref;
	char host[256];
	size_t len;

	switch (r->qtype) {
	case 1:
		return inet_pton(AF_INET, r->value, p) == 1 ? 4 : 0;
	case 28:
		return inet_pton(AF_INET6, r->value, p) == 1 ? 16 : 0;
	case 15:
		if (sscanf(r->value, "%u %255s", &pref, host) != 2)
			return 0;
		p[0] = (unsigned char)(pref >> 8);
		p[1] = (unsigned char)pref;
		if (strcmp(host, ".") == 0) {
			p[2] = 0;
			return 3;
		}
		len = put_name(p + 2, room - 2, host);
		return len ? len + 2 : 0;
	case 16:
		len = strlen(r->value);
		if (len > 255 || len + 1 > room)
			return 0;
		p[0] = (unsigned char)len;
		memcpy(p + 1, r->value, len);
		return len + 1;
	}
	return 0;
}

/* build_answer - the reply to (name, qtype) after the copied question */
static size_t
build_answer(struct fakedns *f, unsigned char *out, size_t qend,
             const char *name, int qtype)
{
	unsigned an = 0, rcode = 3;
	size_t n = qend, len;

	for (size_t i = 0; i < f->n_recs; i++) {
		struct frec *r = &f->recs[i];

		if (strcasecmp(r->name, name) != 0)
			continue;
		if (r->qtype == 0) {
			rcode = (unsigned)r->rcode;
			an = 0;
			n = qend;
			break;
		}
		rcode = 0;
		if (r->qtype != qtype || n + 12 + 300 > 1400)
			continue;
		out[n] = 0xc0;
		out[n + 1] = 12;
		out[n + 2] = (unsigned char)(qtype >> 8);
		out[n + 3] = (unsigned char)qtype;
		out[n + 4] = 0;
		out[n + 5] = 1;
		for (int k = 0; k < 4; k++)
			out[n + 6 + k] = (unsigned char)(r->ttl >> (24 - 8 * k));
		len = put_rdata(out + n + 12, 300, r);
		out[n + 10] = (unsigned char)(len >> 8);
		out[n + 11] = (unsigned char)len;
		n += 12 + len;
		an++;
	}
	out[2] = 0x84 | (out[2] & 1);    /* QR, AA, RD copied */
	out[3] = (unsigned char)(0x80 | rcode);
	out[6] = (unsigned char)(an >> 8);
	out[7] = (unsigned char)an;
	return n;
}

static enum fake_mode
mode_of(const struct fakedns *f, const char *name)
{
	for (size_t i = 0; i < f->n_recs; i++)
		if (f->recs[i].qtype == 0 && f->recs[i].mode != FAKE_ANSWER &&
		    strcasecmp(f->recs[i].name, name) == 0)
			return f->recs[i].mode;
	return FAKE_ANSWER;
}

/* parse_question - name and type of the packet's one question */
static size_t
parse_question(const unsigned char *p, size_t len, char *name, int *qtype)
{
	size_t off = 12, n = 0;

	while (off < len && p[off] != 0) {
		size_t l = p[off];

		if (l > 63 || off + 1 + l >= len || n + l + 2 > 255)
			return 0;
		if (n)
			name[n++] = '.';
		memcpy(name + n, p + off + 1, l);
		n += l;
		off += 1 + l;
	}
	name[n] = '\0';
	if (off + 5 > len)
		return 0;
	*qtype = p[off + 1] << 8 | p[off + 2];
	return off + 5;
}

static void
on_packet(evutil_socket_t fd, short what, void *arg)
{
	struct fakedns *f = arg;
	unsigned char in[1500], out[1500];
	struct sockaddr_storage from;
	socklen_t flen = sizeof(from);
	char name[256];
	int qtype;
	ssize_t len;
	size_t qend, n;

	(void)what;
	len = recvfrom(fd, in, sizeof(in), 0, (struct sockaddr *)&from, &flen);
	if (len < 12 || (qend = parse_question(in, (size_t)len, name,
	                                       &qtype)) == 0)
		return;
	f->log = xrealloc(f->log, (f->n_log + 1) * sizeof(*f->log));
	snprintf(f->log[f->n_log].name, sizeof(f->log->name), "%s", name);
	f->log[f->n_log++].qtype = qtype;
	switch (mode_of(f, name)) {
	case FAKE_DROP:
		return;
	case FAKE_GARBAGE:               /* claims 3 answers, has none */
		memcpy(out, in, qend);
		out[2] = 0x84;
		out[3] = 0x80;
		out[7] = 3;
		n = qend + 5;
		memset(out + qend, 0xff, 5);
		break;
	default:
		memcpy(out, in, qend);
		memset(out + 6, 0, 6);
		n = build_answer(f, out, qend, name, qtype);
	}
	sendto(fd, out, n, 0, (struct sockaddr *)&from, flen);
}

struct fakedns *
fakedns_new(struct event_base *base)
{
	struct fakedns *f = xcalloc(1, sizeof(*f));
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (f->fd < 0 || bind(f->fd, (struct sockaddr *)&sin, sizeof(sin)) ||
	    getsockname(f->fd, (struct sockaddr *)&sin, &len)) {
		perror("fakedns");
		abort();
	}
	evutil_make_socket_nonblocking(f->fd);
	f->port = ntohs(sin.sin_port);
	snprintf(f->server, sizeof(f->server), "127.0.0.1:%d", f->port);
	f->ev = event_new(base, f->fd, EV_READ | EV_PERSIST, on_packet, f);
	event_add(f->ev, NULL);
	return f;
}

void
fakedns_free(struct fakedns *f)
{
	if (f == NULL)
		return;
	event_free(f->ev);
	close(f->fd);
	fakedns_clear(f);
	free(f->log);
	free(f);
}

int
fakedns_port(const struct fakedns *f)
{
	return f->port;
}

const char *
fakedns_server(const struct fakedns *f)
{
	return f->server;
}
