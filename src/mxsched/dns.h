/*
 * dns.h - asynchronous DNS queries (c-ares on libevent), module-internal
 * header of src/mxsched.
 *
 * One struct dns is one c-ares channel driven by one libevent event base;
 * all calls and all callbacks happen on that base's thread.
 *
 * Contract of a query:
 *  - dns_query() (or a dns_lookup_* wrapper) returns a handle; its callback
 *    fires exactly once, always later from the event loop, never from
 *    inside dns_query() itself;
 *  - the owner may dns_cancel() the handle until its callback has started;
 *    after a cancel the callback never fires;
 *  - the answer passed to the callback (and everything it points to) is
 *    valid only during the callback: copy what you keep;
 *  - dns_free() drops every pending query without calling its callback.
 *    Do not call dns_free() from inside a dns callback.
 */
#ifndef MXB_MXSCHED_DNS_H
#define MXB_MXSCHED_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

struct event_base;
struct dns;
struct dns_query;

enum dns_type { DNS_T_A, DNS_T_AAAA, DNS_T_MX, DNS_T_TXT };

/* Outcome of one query. DNS_OK means at least one record of the asked type
 * was in the answer. Permanent answers: NXDOMAIN, NODATA. Everything from
 * DNS_SERVFAIL on is temporary (dns_status_is_temp()). */
enum dns_status {
	DNS_OK = 0,
	DNS_NODATA,     /* the name exists, no record of that type */
	DNS_NXDOMAIN,   /* the name does not exist */
	DNS_BADNAME,    /* not a valid query name; nothing was sent */
	DNS_SERVFAIL,   /* SERVFAIL, REFUSED, NOTIMP or FORMERR from every
	                 * server, or no server listening (c-ares 1.18 cannot
	                 * tell these apart after its retries) */
	DNS_TIMEOUT,    /* no answer from any server in time */
	DNS_MALFORMED,  /* an answer that could not be parsed */
	DNS_ERROR       /* anything else local: no servers, out of memory */
};

struct dns_options {
	const char *servers;  /* "addr[:port], ..." (IPs only); NULL or "" =
	                       * the system's resolvers (/etc/resolv.conf) */
	uint64_t timeout_ms;  /* first try's timeout; 0 = 2000 */
	int tries;            /* attempts per server; 0 = 2 */
	unsigned max_inflight;/* queries handed to c-ares at once; more wait
	                       * in FIFO order. A burst of a thousand lost
	                       * answers at a local dnsmasq (socket buffer)
	                       * and cost a retry timeout; 0 = 64 */
};

struct dns_mx {
	unsigned pref;
	const char *host;     /* lowercased, no trailing dot; "" for null MX */
};

struct dns_addr {
	int family;           /* AF_INET or AF_INET6 */
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} u;
	uint32_t ttl;
};

struct dns_txt {
	const char *text;     /* the record's strings concatenated, NUL-ended */
	size_t len;
};

struct dns_answer {
	enum dns_type type;
	enum dns_status status;
	const char *name;     /* the name asked */
	uint32_t ttl;         /* smallest TTL of the answer records (DNS_OK) */
	size_t n;             /* number of records in the array below */
	const struct dns_mx *mx;     /* DNS_T_MX */
	const struct dns_addr *addr; /* DNS_T_A, DNS_T_AAAA */
	const struct dns_txt *txt;   /* DNS_T_TXT */
};

typedef void (*dns_cb)(void *arg, const struct dns_answer *ans);

struct dns_stats {
	uint64_t sent[4];     /* queries started, by enum dns_type */
	uint64_t answers[DNS_ERROR + 1]; /* callbacks by enum dns_status */
	uint64_t cancelled;
	uint64_t pending;     /* queries not yet answered (queued included) */
	uint64_t inflight;    /* ... of which handed to c-ares */
};

/* New channel on base. NULL on error, with the reason in err. */
struct dns *dns_new(struct event_base *base, const struct dns_options *opt,
                    char *err, size_t errlen);
void dns_free(struct dns *dns);

/* Start a query; NULL only if name is NULL (the callback reports every
 * other failure, DNS_BADNAME included). */
struct dns_query *dns_query(struct dns *dns, enum dns_type type,
                            const char *name, dns_cb cb, void *arg);
struct dns_query *dns_lookup_mx(struct dns *dns, const char *name,
                                dns_cb cb, void *arg);
struct dns_query *dns_lookup_a(struct dns *dns, const char *name,
                               dns_cb cb, void *arg);
struct dns_query *dns_lookup_aaaa(struct dns *dns, const char *name,
                                  dns_cb cb, void *arg);
struct dns_query *dns_lookup_txt(struct dns *dns, const char *name,
                                 dns_cb cb, void *arg);
/* The callback of q will not fire; q is invalid afterwards. NULL: no-op. */
void dns_cancel(struct dns_query *q);

void dns_get_stats(const struct dns *dns, struct dns_stats *out);

const char *dns_status_str(enum dns_status st); /* "NXDOMAIN", ... */
const char *dns_type_str(enum dns_type t);      /* "MX", ... */
int dns_status_is_temp(enum dns_status st);

/* DNSBL query name: reversed IPv4 octets or IPv6 nibbles of addr (AF_INET
 * or AF_INET6 in family) under zone, e.g. "2.0.0.127.zen.spamhaus.org".
 * 0 ok, -1 bad family or out too small. */
int dns_reverse_name(int family, const void *addr, const char *zone,
                     char *out, size_t outlen);

#endif
