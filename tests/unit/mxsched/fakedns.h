/*
 * fakedns.h - an in-process scripted DNS server on 127.0.0.1 (UDP), run
 * by the unit tests on their own libevent loop so that the real c-ares
 * glue (dns.c) and the resolver (resolve.c) are tested without dnsmasq.
 */
#ifndef MXB_TEST_FAKEDNS_H
#define MXB_TEST_FAKEDNS_H

#include <stdint.h>

struct event_base;
struct fakedns;

enum fake_mode { FAKE_ANSWER, FAKE_DROP, FAKE_GARBAGE };

struct fakedns *fakedns_new(struct event_base *base);
void fakedns_free(struct fakedns *f);
int fakedns_port(const struct fakedns *f);
/* "127.0.0.1:PORT" */
const char *fakedns_server(const struct fakedns *f);

/* Records: qtype 1 A, 28 AAAA, 15 MX, 16 TXT. value: "1.2.3.4", "::1",
 * "10 mx.example" ("0 ." = null MX), or the TXT text. A name with any
 * record answers NODATA for other types; unknown names NXDOMAIN. */
void fakedns_add(struct fakedns *f, const char *name, int qtype,
                 const char *value, uint32_t ttl);
/* Answer every query for name with rcode (2 SERVFAIL, 5 REFUSED ...),
 * never answer (FAKE_DROP) or answer with a malformed packet. */
void fakedns_rcode(struct fakedns *f, const char *name, int rcode);
void fakedns_mode(struct fakedns *f, const char *name, enum fake_mode m);
void fakedns_clear(struct fakedns *f);
/* Queries received for name and qtype (0: any type; NULL name: all). */
unsigned fakedns_count(const struct fakedns *f, const char *name, int qtype);

#endif
