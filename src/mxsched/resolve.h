/*
 * resolve.h - recipient domain -> ordered exchangers with addresses
 * (RFC 5321 section 5, RFC 7505), cached and coalesced. Module-internal
 * header of src/mxsched: the scheduler includes it.
 *
 * resolve_domain() answers through its callback, always later from the
 * event loop (never inside the call), exactly once unless cancelled with
 * resolve_cancel() before the callback starts. The result and all it
 * points to are valid only during the callback: copy what you keep.
 * Every call gets its own shuffle of equal-preference exchangers.
 *
 * Concurrent calls for one domain share one resolution (one MX query, one
 * A and one AAAA query per exchanger); exchanger addresses are cached per
 * host name and shared by every domain using that host. resolver_free()
 * drops pending requests without calling them; never call it from inside
 * a callback. resolve_cancel() of the request being answered, from inside
 * its own callback, is a no-op; after the callback returns, the handle is
 * gone.
 */
#ifndef MXB_MXSCHED_RESOLVE_H
#define MXB_MXSCHED_RESOLVE_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "mxsched/dns.h"

struct event_base;
struct resolver;
struct resolve_req;

enum resolve_status {
	RESOLVE_OK = 0,  /* at least one exchanger has an address */
	RESOLVE_TEMP,    /* try later: SERVFAIL, timeout, no addresses */
	RESOLVE_PERM     /* bounce: NXDOMAIN, null MX, invalid name */
};

struct resolve_addr {
	struct sockaddr_storage ss; /* AF_INET or AF_INET6, port 0 */
	socklen_t len;
	char text[INET6_ADDRSTRLEN];
};

struct resolve_mx {
	const char *name;           /* lowercased exchanger host name */
	unsigned pref;              /* 0 for the implicit MX */
	const struct resolve_addr *addrs; /* IPv4 first, then IPv6 */
	size_t n_addrs;             /* 0: this exchanger is unusable now */
	const char *error;          /* why n_addrs is 0, else NULL */
};

struct resolve_result {
	const char *domain;         /* normalized (lowercase, A-labels) */
	enum resolve_status status;
	int code;                   /* SMTP reply code for TEMP/PERM, else 0 */
	const char *enhanced;       /* "5.1.10", "4.4.3", ... or NULL */
	const char *reason;         /* "556 5.1.10 ..." style text, or NULL */
	int implicit_mx;            /* no MX records: the domain itself */
	int null_mx;                /* RFC 7505 null MX */
	const char *site_key;       /* sitekey.h format; NULL unless OK */
	const struct resolve_mx *mx;/* preference order, ties shuffled */
	size_t n_mx;                /* every exchanger (at most the 10 most
	                             * preferred), with or without addresses;
	                             * 0 unless OK */
	uint64_t ttl_ms;            /* how long this answer stays valid */
};

typedef void (*resolve_cb)(void *arg, const struct resolve_result *res);

struct resolve_options {
	uint64_t min_ttl_ms;        /* floor of positive TTLs (0: none) */
	uint64_t max_ttl_ms;        /* ceiling; 0 = 1d */
	uint64_t negative_ttl_ms;   /* NXDOMAIN/NODATA; 0 = 5m */
	uint64_t temp_ttl_ms;       /* SERVFAIL/timeout; 0 = 15s */
	size_t max_entries;         /* cache bound (records); 0 = 65536 */
	int no_ipv6;                /* skip AAAA queries */
	uint64_t seed;              /* shuffle seed; 0 = random */
};

struct resolve_stats {
	uint64_t requests;          /* resolve_domain() calls */
	uint64_t coalesced;         /* ... that joined a resolution in flight */
	uint64_t cache_hits;        /* record lookups answered by the cache */
	uint64_t cache_misses;      /* record lookups that sent a query */
	uint64_t cache_joins;       /* record lookups that joined a query */
	uint64_t queries_sent;      /* DNS queries started by the resolver */
	uint64_t evictions;         /* records dropped to stay in bounds */
	uint64_t entries;           /* records cached now */
	uint64_t ok, temp, perm;    /* callbacks by status */
};

/* opt may be NULL: the defaults above and min_ttl 60s. dns stays owned
 * by the caller and must outlive the resolver. */
struct resolver *resolver_new(struct event_base *base, struct dns *dns,
                              const struct resolve_options *opt);
void resolver_free(struct resolver *r);

/* Resolve domain (any case, optional trailing dot, UTF-8 or A-labels, or
 * an address literal "[192.0.2.1]" / "[IPv6:2001:db8::1]"). Never NULL. */
struct resolve_req *resolve_domain(struct resolver *r, const char *domain,
                                   resolve_cb cb, void *arg);
void resolve_cancel(struct resolve_req *req); /* NULL: no-op */

void resolver_get_stats(const struct resolver *r, struct resolve_stats *out);
/* The site key domain had at its last resolution, from the cache alone:
 * no query, the LRU order untouched, expired records still count (the
 * last known answer). Malloc'd (free()); NULL when the cache cannot say
 * (never resolved, evicted, being refreshed, failed, null MX). */
char *resolver_site_of(const struct resolver *r, const char *domain);
/* Drop every cached record (tests, admin "flush DNS"). */
void resolver_flush(struct resolver *r);

/* ---- pure helpers (exposed for the scheduler and unit tests) ---- */

/* Normalize a domain: lowercase, strip one trailing dot, UTF-8 to
 * A-labels; reject empty labels, labels > 63, names > 253, characters
 * outside [a-z0-9-_], labels starting or ending with '-' and all-numeric
 * last labels. 0 ok, -1 invalid. */
int resolve_name_normalize(const char *in, char *out, size_t outlen);
/* TTL (seconds) to a cache lifetime clamped to [min_ms, max_ms]. */
uint64_t resolve_ttl_clamp(uint32_t ttl_s, uint64_t min_ms, uint64_t max_ms);
/* RFC 7505: exactly one MX record, target "" (the root). */
int resolve_mx_is_null(const struct dns_mx *mx, size_t n);
/* Order exchangers by preference, shuffling runs of equal preference with
 * the xorshift state *rng (in place). */
void resolve_mx_order(struct resolve_mx *mx, size_t n, uint64_t *rng);

#endif
