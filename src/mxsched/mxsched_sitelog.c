/*
 * mxsched_sitelog.c - what a site did lately, for postmasters
 * (GET /v1/sites/{site}): recipients delivered, failed (bounced) and
 * deferred per minute over the last SITE_MINUTES minutes, the last
 * SITE_REPLIES replies it gave (time, exchanger, code, enhanced code,
 * text, category; a reply repeated back to back is one entry with a
 * count), and the recipient domains routed to it (at most
 * SITE_DOMAINS_MAX, each checked against the resolver cache when shown).
 * Bounded per site whatever the traffic: two fixed rings and a capped
 * set, allocated on first use. Loop thread.
 */
#include "mxsched/mxsched_internal.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define SITE_TEXT_MAX 256           /* reply text kept per entry */

struct site_minute {
	uint64_t minute;                /* wall ms / 60000 */
	uint32_t n[SITE_HIST_KINDS];
};

struct site_reply {
	uint64_t first_ms, last_ms;
	uint64_t count;
	int code;
	char enhanced[16];
	char *mx, *text;
	const char *category;           /* static string, or NULL */
	enum site_hist_kind kind;
};

static const char *const kind_names[SITE_HIST_KINDS] = {
	"delivered", "failed", "deferred"
};

struct site_hist {
	struct site_minute min[SITE_MINUTES];
	struct site_reply rep[SITE_REPLIES];
	unsigned n_rep, next_rep;       /* entries used, slot of the next one */
};

static struct site_hist *
hist_of(struct site *site)
{
	if (site->hist == NULL)
		site->hist = xcalloc(1, sizeof(*site->hist));
	return site->hist;
}

void
site_hist_count(struct site *site, enum site_hist_kind kind)
{
	uint64_t m = now_ms() / 60000;
	struct site_minute *sm = &hist_of(site)->min[m % SITE_MINUTES];

	if (sm->minute != m) {
		memset(sm, 0, sizeof(*sm));
		sm->minute = m;
	}
	sm->n[kind]++;
}

/* same_reply - does a reply repeat entry e? Deliveries compare without
 * their text (it names the remote queue id), so a run of them is one
 * entry showing the latest text */
static int
same_reply(const struct site_reply *e, int code, const char *enh,
           const char *text, const char *mx, enum site_hist_kind kind)
{
	return e->code == code && e->kind == kind &&
	       strncmp(e->enhanced, enh ? enh : "", sizeof(e->enhanced)) == 0 &&
	       (kind == SITE_DELIVERED ||
	        strncmp(e->text, text ? text : "", SITE_TEXT_MAX) == 0) &&
	       strcmp(e->mx, mx ? mx : "") == 0;
}

void
site_hist_reply(struct site *site, enum site_hist_kind kind, int code,
                const char *enhanced, const char *text, const char *mx,
                const char *category)
{
	struct site_hist *h = hist_of(site);
	unsigned last = (h->next_rep + SITE_REPLIES - 1) % SITE_REPLIES;
	struct site_reply *e;
	uint64_t now = now_ms();

	if (h->n_rep > 0 && same_reply(&h->rep[last], code, enhanced, text, mx, kind)) {
		e = &h->rep[last];
		e->count++;
		e->last_ms = now;
		if (kind == SITE_DELIVERED && strncmp(e->text, text ? text : "",
		                                      SITE_TEXT_MAX) != 0) {
			free(e->text);
			e->text = xstrndup(text ? text : "", SITE_TEXT_MAX);
		}
		return;
	}
	e = &h->rep[h->next_rep];
	free(e->mx);
	free(e->text);
	memset(e, 0, sizeof(*e));
	e->first_ms = e->last_ms = now;
	e->count = 1;
	e->code = code;
	e->kind = kind;
	snprintf(e->enhanced, sizeof(e->enhanced), "%s", enhanced ? enhanced : "");
	e->mx = xstrdup(mx ? mx : "");
	e->text = xstrndup(text ? text : "", SITE_TEXT_MAX);
	e->category = category;
	h->next_rep = (h->next_rep + 1) % SITE_REPLIES;
	if (h->n_rep < SITE_REPLIES)
		h->n_rep++;
}

/* site_hist_outcome - one recipient's fate from a transaction's reply */
void
site_hist_outcome(struct site *site, enum site_hist_kind kind,
                  const struct sched_reply *rp)
{
	site_hist_count(site, kind);
	site_hist_reply(site, kind, rp->code, rp->enhanced, rp->text, rp->mx_host,
	                rp->category);
}

/* site_hist_conn - a connection that failed before a transaction: its
 * reason as a reply ("421 4.7.0 ..." keeps its code) */
void
site_hist_conn(struct site *site, const char *why, const char *mx)
{
	int code = 0;
	char enh[16] = "";
	const char *t = why ? why : "";

	if (isdigit((unsigned char)t[0]) && isdigit((unsigned char)t[1]) &&
	    isdigit((unsigned char)t[2]) && (t[3] == ' ' || t[3] == '\0')) {
		code = (t[0] - '0') * 100 + (t[1] - '0') * 10 + (t[2] - '0');
		t += t[3] ? 4 : 3;
		if (isdigit((unsigned char)t[0]) && t[1] == '.' &&
		    sscanf(t, "%15[0-9.]", enh) == 1 && t[strlen(enh)] == ' ')
			t += strlen(enh) + 1;
		else
			enh[0] = '\0';
	}
	site_hist_reply(site, SITE_DEFERRED, code, enh, t, mx, "connection");
}

/* site_note_domain - remember that domain is routed to site */
void
site_note_domain(struct site *site, const char *domain)
{
	if (site->domains.b == NULL)
		smap_init(&site->domains);
	if (domain == NULL || smap_get(&site->domains, domain) != NULL)
		return;
	if (site->domains.n >= SITE_DOMAINS_MAX) {
		site->domains_more = 1;
		return;
	}
	smap_put(&site->domains, domain, site);
}

static json_t *
minutes_json(const struct site_hist *h)
{
	uint64_t now = now_ms() / 60000, m;
	json_t *a = json_array();

	for (m = now - (SITE_MINUTES - 1); m <= now; m++) {
		const struct site_minute *sm = h ? &h->min[m % SITE_MINUTES] : NULL;
		int live = sm && sm->minute == m;

		json_array_append_new(a, json_pack("{s:I, s:I, s:I, s:I}",
		    "minute_ms", (json_int_t)(m * 60000),
		    "delivered", (json_int_t)(live ? sm->n[SITE_DELIVERED] : 0),
		    "failed", (json_int_t)(live ? sm->n[SITE_FAILED] : 0),
		    "deferred", (json_int_t)(live ? sm->n[SITE_DEFERRED] : 0)));
	}
	return a;
}

static json_t *
replies_json(const struct site_hist *h)
{
	json_t *a = json_array();

	for (unsigned i = 1; h && i <= h->n_rep; i++) {   /* newest first */
		const struct site_reply *e =
		    &h->rep[(h->next_rep + SITE_REPLIES - i) % SITE_REPLIES];

		json_array_append_new(a, json_pack(
		    "{s:I, s:I, s:I, s:s, s:o, s:i, s:o, s:s, s:o}",
		    "time_ms", (json_int_t)e->last_ms, "first_ms", (json_int_t)e->first_ms,
		    "count", (json_int_t)e->count, "outcome", kind_names[e->kind],
		    "mx", e->mx[0] ? json_string(e->mx) : json_null(), "code", e->code,
		    "enhanced", e->enhanced[0] ? json_string(e->enhanced) : json_null(),
		    "text", e->text,
		    "category", e->category ? json_string(e->category) : json_null()));
	}
	return a;
}

static int
by_str(const void *x, const void *y)
{
	return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* same_site - is key (from the resolver) site's key, or the key of the
 * site a pool twin "KEY@POOL" stands beside? */
static int
same_site(const char *key, const struct site *site)
{
	size_t n = strlen(key);

	return strncmp(key, site->key, n) == 0 &&
	       (site->key[n] == '\0' || site->key[n] == '@');
}

/* domains_json - the domains routed here that the resolver still routes
 * here, sorted */
static json_t *
domains_json(struct site *site)
{
	json_t *a = json_array();
	const char **v = xcalloc(site->domains.n + 1, sizeof(*v));
	size_t n = 0, i;
	struct smap_ent *e;

	for (i = 0; i < site->domains.nb; i++)
		for (e = site->domains.b[i]; e; e = e->next)
			v[n++] = e->key;
	qsort(v, n, sizeof(*v), by_str);
	for (i = 0; i < n; i++) {
		char *k = resolver_site_of(site->s->res, v[i]);

		if (k && same_site(k, site))
			json_array_append_new(a, json_string(v[i]));
		free(k);
	}
	free(v);
	return a;
}

void
site_hist_json(struct site *site, json_t *o)
{
	json_object_set_new(o, "domains", domains_json(site));
	json_object_set_new(o, "domains_complete", json_boolean(!site->domains_more));
	json_object_set_new(o, "per_minute", minutes_json(site->hist));
	json_object_set_new(o, "last_replies", replies_json(site->hist));
}

void
site_hist_free(struct site *site)
{
	if (site->hist)
		for (unsigned i = 0; i < SITE_REPLIES; i++) {
			free(site->hist->rep[i].mx);
			free(site->hist->rep[i].text);
		}
	free(site->hist);
	site->hist = NULL;
	smap_clear(&site->domains, NULL);
}
