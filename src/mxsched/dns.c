/*
 * dns.c - c-ares on libevent: MX, A, AAAA and TXT queries with parsed
 * answers, for the resolver (resolve.c) and the block-list monitor.
 *
 * Shaped like PgBouncer's dnslookup.c: the c-ares socket-state callback
 * keeps one persistent libevent event per c-ares socket, whose callback
 * calls ares_process_fd() (Debian's c-ares 1.18 has no ares_process_fds),
 * and one timer is re-armed from ares_timeout() after every c-ares call.
 *
 * Owns: the c-ares channel, one struct dns_sock per c-ares socket and one
 * struct dns_query per query (freed when its c-ares callback has run, even
 * if the owner cancelled it earlier). Runs on the loop of the event base
 * given to dns_new(); nothing here blocks.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ares.h>
#include <event2/event.h>

#include "core/core.h"
#include "mxsched/dns.h"

#define DNS_MAX_ADDRS 128

struct dns_sock {
	struct dns *dns;
	ares_socket_t fd;
	struct event *ev;
	struct dns_sock *next;
};

struct dns_query {
	struct dns *dns;
	enum dns_type type;
	char *name;
	dns_cb cb;
	void *arg;
	int cancelled;
	int queued;            /* waiting for a free in-flight slot */
	int starting;          /* inside ares_query() */
	int sync_done;         /* c-ares answered inside ares_query() */
	int sync_status;
	struct event *defer;   /* delivers a sync_done answer from the loop */
	struct dns_query *prev, *next;
	struct dns_query *wnext;  /* FIFO of queued queries */
};

struct dns {
	struct event_base *base;
	ares_channel ch;
	struct event *timer;
	struct dns_sock *socks;
	struct dns_query *queries;
	struct dns_query *wait_head, *wait_tail;
	unsigned inflight, max_inflight;
	int destroying;
	struct dns_stats stats;
};

static const int qtypes[] = { 1 /* A */, 28 /* AAAA */, 15 /* MX */,
	16 /* TXT */ };

const char *
dns_type_str(enum dns_type t)
{
	static const char *names[] = { "A", "AAAA", "MX", "TXT" };

	return (unsigned)t < 4 ? names[t] : "?";
}

const char *
dns_status_str(enum dns_status st)
{
	static const char *names[] = { "OK", "NODATA", "NXDOMAIN", "BADNAME",
		"SERVFAIL", "TIMEOUT", "MALFORMED", "ERROR" };

	return (unsigned)st <= DNS_ERROR ? names[st] : "?";
}

int
dns_status_is_temp(enum dns_status st)
{
	return st >= DNS_SERVFAIL;
}

/* ---- libevent glue ---- */

/* dns_arm_timer - re-arm the one timer from c-ares' next deadline */
static void
dns_arm_timer(struct dns *dns)
{
	struct timeval tv, *tvp;

	if (dns->destroying)
		return;
	tvp = ares_timeout(dns->ch, NULL, &tv);
	if (tvp != NULL)
		evtimer_add(dns->timer, tvp);
	else
		evtimer_del(dns->timer);
}

static void
dns_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct dns *dns = arg;

	(void)fd;
	(void)what;
	ares_process_fd(dns->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_arm_timer(dns);
}

static void
dns_on_fd(evutil_socket_t fd, short what, void *arg)
{
	struct dns *dns = ((struct dns_sock *)arg)->dns;

	/* the sock may be freed by the state callback inside this call */
	ares_process_fd(dns->ch, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
	                (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	dns_arm_timer(dns);
}

/* dns_sock_state - c-ares opens, watches or closes one of its sockets */
static void
dns_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns *dns = data;
	struct dns_sock **pp, *s;
	short flags = (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);

	for (pp = &dns->socks; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->fd == fd)
			break;
	s = *pp;
	if (flags == 0) {
		if (s != NULL) {
			*pp = s->next;
			event_free(s->ev);
			free(s);
		}
		return;
	}
	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		s->dns = dns;
		s->fd = fd;
		s->ev = event_new(dns->base, fd, flags | EV_PERSIST,
		                  dns_on_fd, s);
		s->next = dns->socks;
		dns->socks = s;
	} else {
		event_del(s->ev);
		event_assign(s->ev, dns->base, fd, flags | EV_PERSIST,
		             dns_on_fd, s);
	}
	if (s->ev == NULL || event_add(s->ev, NULL) != 0)
		log_warnx("-", "dns: cannot watch c-ares socket %d", (int)fd);
}

/* ---- channel ---- */

/* dns_servers_csv - "a[:p], b" (IPs only) to c-ares' "a:p,b:53" form */
static int
dns_servers_csv(const char *servers, char *out, size_t outlen,
                char *err, size_t errlen)
{
	char *copy = xstrdup(servers), *tok, *save = NULL;
	char host[INET6_ADDRSTRLEN + 8];
	unsigned char buf[sizeof(struct in6_addr)];
	size_t used = 0;
	int port, n = 0, rc = -1, v6;

	for (tok = strtok_r(copy, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		while (isspace((unsigned char)*tok))
			tok++;
		for (char *e = tok + strlen(tok); e > tok &&
		     isspace((unsigned char)e[-1]); )
			*--e = '\0';
		if (*tok == '\0')
			continue;
		if (parse_hostport(tok, host, sizeof(host), &port, 53) != 0 ||
		    port <= 0 || port > 65535) {
			snprintf(err, errlen, "bad DNS server \"%s\"", tok);
			goto done;
		}
		v6 = inet_pton(AF_INET6, host, buf) == 1;
		if (!v6 && inet_pton(AF_INET, host, buf) != 1) {
			snprintf(err, errlen, "DNS server \"%s\" is not an IP "
			         "address", tok);
			goto done;
		}
		used += (size_t)snprintf(out + used, outlen - used,
		                         v6 ? "%s[%s]:%d" : "%s%s:%d",
		                         n ? "," : "", host, port);
		if (used >= outlen) {
			snprintf(err, errlen, "DNS server list too long");
			goto done;
		}
		n++;
	}
	if (n == 0) {
		snprintf(err, errlen, "empty DNS server list");
		goto done;
	}
	rc = 0;
done:
	free(copy);
	return rc;
}

static int
dns_channel_init(struct dns *dns, const struct dns_options *opt,
                 char *err, size_t errlen)
{
	struct ares_options ao;
	int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES,
	    rc;
	char csv[2048];

	memset(&ao, 0, sizeof(ao));
	ao.sock_state_cb = dns_sock_state;
	ao.sock_state_cb_data = dns;
	ao.timeout = opt && opt->timeout_ms ? (int)opt->timeout_ms : 2000;
	ao.tries = opt && opt->tries > 0 ? opt->tries : 2;
	rc = ares_init_options(&dns->ch, &ao, mask);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares init: %s", ares_strerror(rc));
		dns->ch = NULL;
		return -1;
	}
	if (opt == NULL || opt->servers == NULL || *opt->servers == '\0')
		return 0;
	if (dns_servers_csv(opt->servers, csv, sizeof(csv), err, errlen) != 0)
		return -1;
	rc = ares_set_servers_ports_csv(dns->ch, csv);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "DNS servers \"%s\": %s", opt->servers,
		         ares_strerror(rc));
		return -1;
	}
	return 0;
}

struct dns *
dns_new(struct event_base *base, const struct dns_options *opt,
        char *err, size_t errlen)
{
	struct dns *dns = xcalloc(1, sizeof(*dns));
	int rc;

	rc = ares_library_init(ARES_LIB_INIT_ALL);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
		free(dns);
		return NULL;
	}
	dns->base = base;
	dns->max_inflight = opt && opt->max_inflight ? opt->max_inflight : 64;
	dns->timer = evtimer_new(base, dns_on_timer, dns);
	if (dns_channel_init(dns, opt, err, errlen) != 0) {
		dns_free(dns);
		return NULL;
	}
	return dns;
}

static void dns_query_free(struct dns_query *q);
static void dns_on_answer(void *arg, int status, int timeouts,
                          unsigned char *abuf, int alen);

void
dns_free(struct dns *dns)
{
	struct dns_sock *s;

	if (dns == NULL)
		return;
	dns->destroying = 1;
	if (dns->ch != NULL)
		ares_destroy(dns->ch); /* runs callbacks: EDESTRUCTION */
	while (dns->queries != NULL)  /* those with a deferred delivery */
		dns_query_free(dns->queries);
	while ((s = dns->socks) != NULL) {
		dns->socks = s->next;
		event_free(s->ev);
		free(s);
	}
	if (dns->timer != NULL)
		event_free(dns->timer);
	ares_library_cleanup();
	free(dns);
}

void
dns_get_stats(const struct dns *dns, struct dns_stats *out)
{
	*out = dns->stats;
	out->inflight = dns->inflight;
}

/* ---- answers ---- */

static enum dns_status
dns_status_from_ares(int st)
{
	switch (st) {
	case ARES_SUCCESS:   return DNS_OK;
	case ARES_ENODATA:   return DNS_NODATA;
	case ARES_ENOTFOUND: return DNS_NXDOMAIN;
	case ARES_EBADNAME:  return DNS_BADNAME;
	case ARES_ESERVFAIL: case ARES_EREFUSED: case ARES_ENOTIMP:
	case ARES_EFORMERR:  return DNS_SERVFAIL;
	/* c-ares 1.18 retries SERVFAIL/REFUSED answers on every server and
	 * then reports ECONNREFUSED, as for a port nobody listens on */
	case ARES_ECONNREFUSED: return DNS_SERVFAIL;
	case ARES_ETIMEOUT:  return DNS_TIMEOUT;
	case ARES_EBADRESP:  return DNS_MALFORMED;
	default:             return DNS_ERROR;
	}
}

/* dns_min_ttl - smallest TTL over the answer section; -1 if malformed */
static int
dns_min_ttl(const unsigned char *abuf, int alen, uint32_t *ttl)
{
	const unsigned char *p = abuf + 12;
	unsigned qd, an, i;
	char *name;
	long len;
	uint32_t t, min = UINT32_MAX;

	if (alen < 12)
		return -1;
	qd = (unsigned)abuf[4] << 8 | abuf[5];
	an = (unsigned)abuf[6] << 8 | abuf[7];
	for (i = 0; i < qd + an; i++) {
		if (ares_expand_name(p, abuf, alen, &name, &len) != ARES_SUCCESS)
			return -1;
		ares_free_string(name);
		p += len;
		if (p + (i < qd ? 4 : 10) > abuf + alen)
			return -1;
		if (i < qd) {
			p += 4;
			continue;
		}
		t = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 |
		    (uint32_t)p[6] << 8 | p[7];
		if (t & 0x80000000u)   /* RFC 2181 8: treat as zero */
			t = 0;
		min = t < min ? t : min;
		p += 10 + ((unsigned)p[8] << 8 | p[9]);
		if (p > abuf + alen)
			return -1;
	}
	*ttl = min == UINT32_MAX ? 0 : min;
	return 0;
}

/* dns_host_norm - lowercase, drop the trailing dot, into a new string */
static char *
dns_host_norm(const char *h)
{
	char *s = xstrdup(h);
	size_t n = strlen(s);

	if (n > 0 && s[n - 1] == '.')
		s[--n] = '\0';
	for (size_t i = 0; i < n; i++)
		s[i] = (char)tolower((unsigned char)s[i]);
	return s;
}

static enum dns_status
dns_parse_mx(const unsigned char *abuf, int alen, struct dns_answer *ans)
{
	struct ares_mx_reply *head = NULL, *r;
	struct dns_mx *mx;
	size_t n = 0;
	int rc;

	rc = ares_parse_mx_reply(abuf, alen, &head);
	if (rc != ARES_SUCCESS)
		return rc == ARES_ENODATA ? DNS_NODATA : DNS_MALFORMED;
	for (r = head; r != NULL; r = r->next)
		n++;
	if (n == 0) {
		/* c-ares 1.18 says success for an answer of only a CNAME and
		 * records of other types: there is no MX (RFC 5321 5.1 then
		 * falls back to the domain's own address) */
		ares_free_data(head);
		return DNS_NODATA;
	}
	mx = xcalloc(n, sizeof(*mx));
	n = 0;
	for (r = head; r != NULL; r = r->next, n++) {
		mx[n].pref = r->priority;
		mx[n].host = dns_host_norm(r->host ? r->host : "");
	}
	ares_free_data(head);
	ans->mx = mx;
	ans->n = n;
	return DNS_OK;
}

static enum dns_status
dns_parse_addr(const unsigned char *abuf, int alen, struct dns_answer *ans)
{
	struct ares_addrttl a4[DNS_MAX_ADDRS];
	struct ares_addr6ttl a6[DNS_MAX_ADDRS];
	struct dns_addr *out;
	int n = DNS_MAX_ADDRS, rc, i;
	int v6 = ans->type == DNS_T_AAAA;

	rc = v6 ? ares_parse_aaaa_reply(abuf, alen, NULL, a6, &n)
	        : ares_parse_a_reply(abuf, alen, NULL, a4, &n);
	if (rc != ARES_SUCCESS)
		return rc == ARES_ENODATA ? DNS_NODATA : DNS_MALFORMED;
	if (n <= 0)
		return DNS_NODATA;
	out = xcalloc((size_t)n, sizeof(*out));
	for (i = 0; i < n; i++) {
		out[i].family = v6 ? AF_INET6 : AF_INET;
		if (v6)
			memcpy(&out[i].u.v6, &a6[i].ip6addr, 16);
		else
			out[i].u.v4 = a4[i].ipaddr;
		out[i].ttl = (uint32_t)((v6 ? a6[i].ttl : a4[i].ttl) < 0 ? 0 :
		             (v6 ? a6[i].ttl : a4[i].ttl));
	}
	ans->addr = out;
	ans->n = (size_t)n;
	return DNS_OK;
}

static enum dns_status
dns_parse_txt(const unsigned char *abuf, int alen, struct dns_answer *ans)
{
	struct ares_txt_ext *head = NULL, *r;
	struct dns_txt *txt;
	size_t n = 0, k = 0;
	int rc;

	rc = ares_parse_txt_reply_ext(abuf, alen, &head);
	if (rc != ARES_SUCCESS)
		return rc == ARES_ENODATA ? DNS_NODATA : DNS_MALFORMED;
	for (r = head; r != NULL; r = r->next)
		n += (r->record_start || r == head) ? 1 : 0;
	txt = xcalloc(n, sizeof(*txt));
	for (r = head; r != NULL; r = r->next) {
		struct dns_txt *t;
		char *s;

		if (r->record_start || k == 0)
			k++;
		t = &txt[k - 1];
		s = xrealloc((char *)t->text, t->len + r->length + 1);
		memcpy(s + t->len, r->txt, r->length);
		t->len += r->length;
		s[t->len] = '\0';
		t->text = s;
	}
	ares_free_data(head);
	ans->txt = txt;
	ans->n = k;
	return k ? DNS_OK : DNS_NODATA;
}

/* dns_answer_parse - turn a successful c-ares answer into ans */
static void
dns_answer_parse(const unsigned char *abuf, int alen, struct dns_answer *ans)
{
	if (abuf == NULL || dns_min_ttl(abuf, alen, &ans->ttl) != 0) {
		ans->status = DNS_MALFORMED;
		return;
	}
	switch (ans->type) {
	case DNS_T_MX:
		ans->status = dns_parse_mx(abuf, alen, ans);
		break;
	case DNS_T_A:
	case DNS_T_AAAA:
		ans->status = dns_parse_addr(abuf, alen, ans);
		break;
	case DNS_T_TXT:
		ans->status = dns_parse_txt(abuf, alen, ans);
		break;
	}
}

static void
dns_answer_clear(struct dns_answer *ans)
{
	for (size_t i = 0; ans->mx != NULL && i < ans->n; i++)
		free((char *)ans->mx[i].host);
	for (size_t i = 0; ans->txt != NULL && i < ans->n; i++)
		free((char *)ans->txt[i].text);
	free((void *)ans->mx);
	free((void *)ans->addr);
	free((void *)ans->txt);
}

/* ---- queries ---- */

static void
dns_query_free(struct dns_query *q)
{
	struct dns *dns = q->dns;

	if (q->prev != NULL)
		q->prev->next = q->next;
	else
		dns->queries = q->next;
	if (q->next != NULL)
		q->next->prev = q->prev;
	if (q->defer != NULL)
		event_free(q->defer);
	dns->stats.pending--;
	free(q->name);
	free(q);
}

/* dns_query_finish - deliver one query's outcome to its owner, free it */
static void
dns_query_finish(struct dns_query *q, int status, const unsigned char *abuf,
                 int alen)
{
	struct dns_answer ans;

	if (q->cancelled || status == ARES_EDESTRUCTION ||
	    status == ARES_ECANCELLED) {
		dns_query_free(q);
		return;
	}
	memset(&ans, 0, sizeof(ans));
	ans.type = q->type;
	ans.name = q->name;
	ans.status = dns_status_from_ares(status);
	if (ans.status == DNS_OK)
		dns_answer_parse(abuf, alen, &ans);
	q->dns->stats.answers[ans.status]++;
	log_debug("-", "dns: %s %s: %s (%zu records, ttl %u)",
	          dns_type_str(q->type), q->name, dns_status_str(ans.status),
	          ans.n, ans.ttl);
	q->cb(q->arg, &ans);
	dns_answer_clear(&ans);
	dns_query_free(q);
}

static void
dns_on_defer(evutil_socket_t fd, short what, void *arg)
{
	struct dns_query *q = arg;

	(void)fd;
	(void)what;
	dns_query_finish(q, q->sync_status, NULL, 0);
}

/* dns_start - hand one query to c-ares */
static void
dns_start(struct dns_query *q)
{
	struct dns *dns = q->dns;

	dns->inflight++;
	dns->stats.sent[q->type]++;
	q->starting = 1;
	ares_query(dns->ch, q->name, 1 /* C_IN */, qtypes[q->type],
	           dns_on_answer, q);
	q->starting = 0;
}

/* dns_pump - start queued queries while in-flight slots are free */
static void
dns_pump(struct dns *dns)
{
	struct dns_query *q;

	while (dns->inflight < dns->max_inflight &&
	       (q = dns->wait_head) != NULL) {
		dns->wait_head = q->wnext;
		if (dns->wait_head == NULL)
			dns->wait_tail = NULL;
		q->queued = 0;
		if (q->cancelled)
			dns_query_free(q);
		else
			dns_start(q);
	}
	dns_arm_timer(dns);
}

/* dns_on_answer - c-ares callback; answers from inside ares_query() are
 * deferred so that no owner callback runs inside dns_query() */
static void
dns_on_answer(void *arg, int status, int timeouts, unsigned char *abuf,
              int alen)
{
	struct dns_query *q = arg;
	struct dns *dns = q->dns;
	struct timeval zero = { 0, 0 };

	(void)timeouts;
	dns->inflight--;
	if (q->starting && status != ARES_EDESTRUCTION) {
		q->sync_done = 1;
		q->sync_status = status == ARES_SUCCESS ? ARES_EBADRESP : status;
		q->defer = evtimer_new(q->dns->base, dns_on_defer, q);
		evtimer_add(q->defer, &zero);
		return;   /* dns_pump() goes on with the next one */
	}
	dns_query_finish(q, status, abuf, alen);
	if (!dns->destroying)
		dns_pump(dns);
}

struct dns_query *
dns_query(struct dns *dns, enum dns_type type, const char *name, dns_cb cb,
          void *arg)
{
	struct dns_query *q;

	if (name == NULL || cb == NULL || (unsigned)type > DNS_T_TXT)
		return NULL;
	q = xcalloc(1, sizeof(*q));
	q->dns = dns;
	q->type = type;
	q->name = xstrdup(name);
	q->cb = cb;
	q->arg = arg;
	q->next = dns->queries;
	if (q->next != NULL)
		q->next->prev = q;
	dns->queries = q;
	dns->stats.pending++;
	q->queued = 1;
	if (dns->wait_tail != NULL)
		dns->wait_tail->wnext = q;
	else
		dns->wait_head = q;
	dns->wait_tail = q;
	dns_pump(dns);
	return q;
}

struct dns_query *
dns_lookup_mx(struct dns *dns, const char *name, dns_cb cb, void *arg)
{
	return dns_query(dns, DNS_T_MX, name, cb, arg);
}

struct dns_query *
dns_lookup_a(struct dns *dns, const char *name, dns_cb cb, void *arg)
{
	return dns_query(dns, DNS_T_A, name, cb, arg);
}

struct dns_query *
dns_lookup_aaaa(struct dns *dns, const char *name, dns_cb cb, void *arg)
{
	return dns_query(dns, DNS_T_AAAA, name, cb, arg);
}

struct dns_query *
dns_lookup_txt(struct dns *dns, const char *name, dns_cb cb, void *arg)
{
	return dns_query(dns, DNS_T_TXT, name, cb, arg);
}

void
dns_cancel(struct dns_query *q)
{
	if (q == NULL || q->cancelled)
		return;
	q->cancelled = 1;
	q->cb = NULL;
	q->dns->stats.cancelled++;
}

int
dns_reverse_name(int family, const void *addr, const char *zone, char *out,
                 size_t outlen)
{
	const unsigned char *b = addr;
	size_t used = 0;
	int i, n;

	if (family == AF_INET) {
		n = snprintf(out, outlen, "%u.%u.%u.%u.%s", b[3], b[2], b[1],
		             b[0], zone);
		return n < 0 || (size_t)n >= outlen ? -1 : 0;
	}
	if (family != AF_INET6)
		return -1;
	for (i = 15; i >= 0; i--) {
		n = snprintf(out + used, outlen - used, "%x.%x.", b[i] & 0xf,
		             b[i] >> 4);
		if (n < 0 || (used += (size_t)n) >= outlen)
			return -1;
	}
	n = snprintf(out + used, outlen - used, "%s", zone);
	return n < 0 || used + (size_t)n >= outlen ? -1 : 0;
}
