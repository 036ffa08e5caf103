/*
 * mxsched_dnsbl.c - the DNSBL monitor: watches our own sending addresses
 * (every address of every [pool]) on the [blocklists] zones, with c-ares
 * on the scheduler's event loop (s->dns), one timer for all checks.
 *
 * Each (address, zone) is looked up as the reversed address under the
 * zone every [blocklists] interval, every quarter of it (at least 1 s)
 * while listed. An A answer in 127.0.0.0/8 means listed (the TXT record
 * gives the reason), NXDOMAIN or NODATA clean; 127.255.255.0/24 (the
 * zone refusing us: a public resolver, a typo, a query limit) or any other
 * answer means the monitor is misconfigured - reported, never a listing.
 * A DNS error keeps the previous state. Every change of state is logged
 * and counted; with action = suspend a listed address is suspended for
 * every site (mxsched_pool.c moves them to other addresses) until it is
 * delisted, released by hand, or [blocklists] release_after passes.
 *
 * The same monitor watches our sending domains ([blocklists] domains) on
 * the domain block lists (domain_zones, e.g. dbl.spamhaus.org): the query
 * is DOMAIN.ZONE, the answers read the same way (and 127.0.1.255, "IP
 * queries prohibited" at Spamhaus DBL, is a monitor problem too). A listed
 * domain is logged, counted and shown; with domain_action = suspend the
 * mail whose envelope sender is in that domain (or below it) is held: its
 * recipients wait in the store without spending attempts, looked at again
 * every quarter interval, until the domain is delisted, released by hand or
 * release_after passes.
 */
#include "mxsched/mxsched_internal.h"
#include "mxsched/dns.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

enum bl_state { BL_UNKNOWN, BL_CLEAN, BL_LISTED, BL_MISCONFIGURED, BL_ERROR };
static const char *const bl_state_names[] = {
	"unknown", "clean", "listed", "misconfigured", "error" };

struct bl_entry {
	struct dnsbl *bl;
	struct srcaddr *a;          /* an address of a pool, or */
	struct sdomain *d;          /* a sending domain */
	size_t zone;                /* in bl->zones (a) or bl->dzones (d) */
	enum bl_state state;
	char answer[64];            /* the A answer, or the DNS status */
	char reason[256];           /* TXT of a listing, or what went wrong */
	char pending[64];           /* A answer of a listing awaiting its TXT */
	uint64_t first_seen_ms, last_checked_ms, last_change_ms, next_ms;
	uint64_t changes;
	struct dns_query *q, *tq;
};

struct sdomain {                /* one of [blocklists] domains */
	char *name;
	struct bl_entry *bl;        /* one per domain zone */
	unsigned listed;            /* domain zones listing it now */
	uint64_t listed_since;
	int suspended;              /* its mail held (domain_action = suspend) */
	int released;               /* by hand or release_after, until delisted */
	uint64_t held;              /* recipients held so far */
	char reason[256];
};

struct dnsbl {
	struct mxsched *s;
	char **zones, **dzones;     /* address zones, domain zones */
	size_t n_zones, n_dzones;
	uint64_t interval_ms, listed_ms;
	int dom_suspend;            /* domain_action = suspend */
	struct event *timer;
	struct srcaddr **addrs;
	size_t n_addrs;
	struct sdomain *doms;
	size_t n_doms;
	struct bl_entry **ents;     /* every (address|domain, zone) */
	size_t n_ents;
};

/* ent_id - the address or domain, for logs */
static const char *
ent_id(const struct bl_entry *e)
{
	return e->a ? e->a->ip : e->d->name;
}

static const char *
ent_zone(const struct bl_entry *e)
{
	return e->a ? e->bl->zones[e->zone] : e->bl->dzones[e->zone];
}

/* ent_qname - the name looked up: reversed address or domain under the
 * zone; -1 if too long */
static int
ent_qname(const struct bl_entry *e, char *name, size_t len)
{
	int n;

	if (e->a)
		return dns_reverse_name(e->a->family, e->a->bin, ent_zone(e), name, len);
	n = snprintf(name, len, "%s.%s", e->d->name, ent_zone(e));
	return n < 0 || (size_t)n >= len || n > 253 ? -1 : 0;
}

static void bl_arm(struct dnsbl *bl);

/* ---- state ---- */

/* addr_update - the address's listing count after a change of a zone */
static void
addr_update(struct dnsbl *bl, struct srcaddr *a)
{
	struct rep *rep = bl->s->rep;
	unsigned n = 0;
	size_t z;

	for (z = 0; z < bl->n_zones; z++)
		if (a->bl[z].state == BL_LISTED) {
			if (n++ == 0)
				snprintf(a->reason, sizeof(a->reason), "listed at %.60s: %.180s",
				         bl->zones[z], a->bl[z].reason);
		}
	if (n > 0 && a->listed == 0) {
		a->listed = n;
		a->listed_since = now_ms();
		if (rep->act_suspend) {
			a->suspended = 1;
			a->released = 0;
			log_warnx(a->ip, "suspended for every site: %s", a->reason);
			rep_addr_changed(bl->s, a);
		} else {
			log_warnx(a->ip, "alert only ([blocklists] action): %s", a->reason);
		}
	} else if (n == 0 && a->listed > 0) {
		a->listed = 0;
		a->reason[0] = '\0';
		if (a->suspended) {
			a->suspended = 0;
			a->released = 0;
			log_info(a->ip, "delisted everywhere: used again");
			rep_addr_changed(bl->s, a);
		}
	} else {
		a->listed = n;
	}
}

/* dom_update - the domain's listing count after a change of a zone */
static void
dom_update(struct dnsbl *bl, struct sdomain *d)
{
	unsigned n = 0;
	size_t z;

	for (z = 0; z < bl->n_dzones; z++)
		if (d->bl[z].state == BL_LISTED && n++ == 0)
			snprintf(d->reason, sizeof(d->reason), "listed at %.60s: %.180s",
			         bl->dzones[z], d->bl[z].reason);
	if (n > 0 && d->listed == 0) {
		d->listed = n;
		d->listed_since = now_ms();
		d->suspended = bl->dom_suspend;
		d->released = 0;
		log_warnx(d->name, "sending domain %s: %s", d->suspended ?
		          "held (its mail waits)" : "alert only ([blocklists] domain_action)",
		          d->reason);
	} else if (n == 0 && d->listed > 0) {
		d->listed = 0;
		d->reason[0] = '\0';
		if (d->suspended)
			log_info(d->name, "sending domain delisted everywhere: its mail goes again");
		d->suspended = d->released = 0;
	} else {
		d->listed = n;
	}
}

/* bl_set - one (address, zone) reached state st: log, count, act */
static void
bl_set(struct bl_entry *e, enum bl_state st, const char *answer, const char *reason)
{
	struct dnsbl *bl = e->bl;
	struct rep_stats *rs = &bl->s->rep->st;
	enum bl_state was = e->state;

	snprintf(e->answer, sizeof(e->answer), "%s", answer);
	snprintf(e->reason, sizeof(e->reason), "%s", reason ? reason : "");
	if (st == was)
		return;
	e->state = st;
	e->changes++;
	e->last_change_ms = e->last_checked_ms;
	if (st == BL_LISTED) {
		e->first_seen_ms = e->last_checked_ms;
		/* watch it closely from now on (bl_arm after the callback) */
		e->next_ms = e->last_checked_ms + bl->listed_ms;
		if (e->a)
			rs->listings++;
		else
			rs->domain_listings++;
		log_warnx(ent_id(e), "listed at %s (%s): %s", ent_zone(e), answer,
		          e->reason);
	} else if (st == BL_MISCONFIGURED) {
		rs->monitor_problems++;
		log_warnx(ent_id(e), "block list %s refuses our queries (%s): monitor "
		          "misconfigured, not a listing", ent_zone(e), answer);
	} else {
		if (was == BL_LISTED && e->a)
			rs->delistings++;
		else if (was == BL_LISTED)
			rs->domain_delistings++;
		log_info(ent_id(e), "%s at %s (%s)", bl_state_names[st], ent_zone(e),
		         answer);
	}
	if ((st == BL_LISTED || was == BL_LISTED) && e->a)
		addr_update(bl, e->a);
	else if (st == BL_LISTED || was == BL_LISTED)
		dom_update(bl, e->d);
}

/* ---- queries ---- */

static void
bl_on_txt(void *arg, const struct dns_answer *ans)
{
	struct bl_entry *e = arg;
	char reason[256];

	e->tq = NULL;
	if (ans->status == DNS_OK && ans->n > 0)
		snprintf(reason, sizeof(reason), "%s", ans->txt[0].text);
	else
		snprintf(reason, sizeof(reason), "listed (no TXT reason: %s)",
		         dns_status_str(ans->status));
	bl_set(e, BL_LISTED, e->pending, reason);
	bl_arm(e->bl);
}

/* bl_listed_answer - a listing seen; a new one fetches its reason */
static void
bl_listed_answer(struct bl_entry *e, const char *text)
{
	char name[512];

	if (e->state == BL_LISTED) {
		snprintf(e->answer, sizeof(e->answer), "%s", text);
		return;
	}
	snprintf(e->pending, sizeof(e->pending), "%s", text);
	ent_qname(e, name, sizeof(name));
	e->tq = dns_lookup_txt(e->bl->s->dns, name, bl_on_txt, e);
}

static void
bl_on_a(void *arg, const struct dns_answer *ans)
{
	struct bl_entry *e = arg;
	char text[64];
	uint32_t ip;

	e->q = NULL;
	e->last_checked_ms = now_ms();
	e->bl->s->rep->st.checks++;
	if (ans->status == DNS_NXDOMAIN || ans->status == DNS_NODATA) {
		bl_set(e, BL_CLEAN, dns_status_str(ans->status), NULL);
		return;
	}
	if (ans->status != DNS_OK || ans->n == 0 || ans->addr[0].family != AF_INET) {
		/* no verdict: keep what we knew, say why */
		e->bl->s->rep->st.check_errors++;
		snprintf(e->answer, sizeof(e->answer), "%s", dns_status_str(ans->status));
		if (e->state == BL_UNKNOWN || e->state == BL_ERROR)
			bl_set(e, BL_ERROR, e->answer, "no answer from the block list");
		return;
	}
	inet_ntop(AF_INET, &ans->addr[0].u.v4, text, sizeof(text));
	ip = ntohl(ans->addr[0].u.v4.s_addr);
	if ((ip >> 8) == 0x7fffffu)
		bl_set(e, BL_MISCONFIGURED, text, "the zone refuses our queries "
		       "(public resolver, typo in the zone name, or query limit)");
	else if (e->d && ip == 0x7f0001ffu)
		bl_set(e, BL_MISCONFIGURED, text, "the zone refuses IP queries: "
		       "an address zone listed as a domain zone?");
	else if ((ip >> 24) != 127 || ip == 0x7f000001u)
		bl_set(e, BL_MISCONFIGURED, text, "unexpected answer: not a listing code");
	else
		bl_listed_answer(e, text);
}

static void
bl_check(struct bl_entry *e, uint64_t now)
{
	char name[512];

	e->next_ms = now + (e->state == BL_LISTED ? e->bl->listed_ms : e->bl->interval_ms);
	if (ent_qname(e, name, sizeof(name)) < 0) {
		bl_set(e, BL_MISCONFIGURED, "-", "query name too long");
		return;
	}
	e->q = dns_lookup_a(e->bl->s->dns, name, bl_on_a, e);
}

static void
bl_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct dnsbl *bl = arg;
	uint64_t now = now_ms();
	size_t i;

	(void)fd;
	(void)what;
	for (i = 0; i < bl->n_ents; i++) {
		struct bl_entry *e = bl->ents[i];
		if (e->q == NULL && e->tq == NULL && now >= e->next_ms)
			bl_check(e, now);
	}
	bl_arm(bl);
}

/* bl_arm - wake up for the next check due */
static void
bl_arm(struct dnsbl *bl)
{
	uint64_t now = now_ms(), next = now + bl->interval_ms, d;
	struct timeval tv;
	size_t i;

	for (i = 0; i < bl->n_ents; i++)
		if (bl->ents[i]->next_ms < next)
			next = bl->ents[i]->next_ms;
	d = next > now + 100 ? next - now : 100;
	tv.tv_sec = (time_t)(d / 1000);
	tv.tv_usec = (suseconds_t)(d % 1000) * 1000;
	event_add(bl->timer, &tv);
}

/* ---- lifecycle ---- */

/* names_parse - "a.example, b.example" into a list of lowercased DNS
 * names; -1 with "[blocklists] KEY: ..." in err on a bad one */
static int
names_parse(const char *key, const char *spec, char ***out, size_t *n,
            char *err, size_t errlen)
{
	char *copy = xstrdup(spec ? spec : ""), *save = NULL, *z;
	int rc = 0;

	for (z = strtok_r(copy, ", \t", &save); z; z = strtok_r(NULL, ", \t", &save)) {
		size_t len = strlen(z);
		if (len > 200 || strspn(z, "abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") != len || z[0] == '.' ||
		    z[len - 1] == '.' || strstr(z, "..") != NULL) {
			snprintf(err, errlen, "[blocklists] %s: bad name \"%.64s\"", key, z);
			rc = -1;
			break;
		}
		for (size_t i = 0; i < len; i++)
			z[i] = (char)tolower((unsigned char)z[i]);
		*out = xrealloc(*out, (*n + 1) * sizeof(char *));
		(*out)[(*n)++] = xstrdup(z);
	}
	free(copy);
	return rc;
}

static void
add_ent(struct dnsbl *bl, struct bl_entry *e)
{
	e->bl = bl;
	bl->ents = xrealloc(bl->ents, (bl->n_ents + 1) * sizeof(*bl->ents));
	bl->ents[bl->n_ents++] = e;
}

/* collect_domains - the sending domains, one entry per domain zone */
static int
collect_domains(struct dnsbl *bl, const struct config *c, char *err, size_t errlen)
{
	char **names = NULL;
	size_t n = 0, i, z;
	int rc = names_parse("domains", c->bl_domains, &names, &n, err, errlen);

	if (rc == 0 && n > 0 && bl->n_dzones == 0)
		log_warnx("-", "[blocklists] domains set but no domain_zones: not checked");
	if (rc == 0 && n == 0 && bl->n_dzones > 0)
		log_warnx("-", "[blocklists] domain_zones set but no domains to watch");
	if (rc == 0 && n > 0 && bl->n_dzones > 0) {
		bl->doms = xcalloc(n, sizeof(*bl->doms));
		for (i = 0; i < n; i++) {
			struct sdomain *d = &bl->doms[bl->n_doms++];
			d->name = names[i];
			names[i] = NULL;
			d->bl = xcalloc(bl->n_dzones, sizeof(*d->bl));
			for (z = 0; z < bl->n_dzones; z++) {
				d->bl[z].d = d;
				d->bl[z].zone = z;
				add_ent(bl, &d->bl[z]);
			}
		}
	}
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

static void
collect_addr(void *val, void *arg)
{
	struct dnsbl *bl = arg;
	struct srcaddr *a = val;
	size_t z;

	if (bl->n_zones == 0)
		return;
	a->bl = xcalloc(bl->n_zones, sizeof(*a->bl));
	for (z = 0; z < bl->n_zones; z++) {
		a->bl[z].a = a;
		a->bl[z].zone = z;
		add_ent(bl, &a->bl[z]);
	}
	bl->addrs = xrealloc(bl->addrs, (bl->n_addrs + 1) * sizeof(*bl->addrs));
	bl->addrs[bl->n_addrs++] = a;
}

struct dnsbl *
dnsbl_new(struct mxsched *s, char *err, size_t errlen)
{
	struct dnsbl *bl = xcalloc(1, sizeof(*bl));
	const struct config *c = s->cfg;

	bl->s = s;
	bl->interval_ms = c->bl_interval_ms;
	bl->listed_ms = c->bl_interval_ms / 4 > 1000 ? c->bl_interval_ms / 4 : 1000;
	bl->dom_suspend = c->bl_domain_action && strcasecmp(c->bl_domain_action, "suspend") == 0;
	bl->timer = event_new(s->base, -1, 0, bl_on_timer, bl);
	if (names_parse("zones", c->bl_zones, &bl->zones, &bl->n_zones, err, errlen) < 0 ||
	    names_parse("domain_zones", c->bl_domain_zones, &bl->dzones, &bl->n_dzones,
	                err, errlen) < 0 || collect_domains(bl, c, err, errlen) < 0) {
		dnsbl_free(bl);
		return NULL;
	}
	smap_each(&s->rep->addrs, collect_addr, bl);
	if (bl->n_doms > 0)
		log_info("-", "block list monitor: %zu sending domain%s x %zu domain zone%s",
		         bl->n_doms, bl->n_doms == 1 ? "" : "s", bl->n_dzones,
		         bl->n_dzones == 1 ? "" : "s");
	if (bl->n_zones == 0)
		;
	else if (bl->n_addrs == 0)
		log_warnx("-", "[blocklists] zones set but no [pool] address to watch");
	else
		log_info("-", "block list monitor: %zu address%s x %zu zone%s every %llu s",
		         bl->n_addrs, bl->n_addrs == 1 ? "" : "es", bl->n_zones,
		         bl->n_zones == 1 ? "" : "s", (unsigned long long)(bl->interval_ms / 1000));
	bl_arm(bl); /* every next_ms is 0: the first round at once */
	return bl;
}

void
dnsbl_free(struct dnsbl *bl)
{
	size_t i;

	if (bl == NULL)
		return;
	for (i = 0; i < bl->n_ents; i++) {
		dns_cancel(bl->ents[i]->q);
		dns_cancel(bl->ents[i]->tq);
	}
	if (bl->timer)
		event_free(bl->timer);
	for (i = 0; i < bl->n_zones; i++)
		free(bl->zones[i]);
	for (i = 0; i < bl->n_dzones; i++)
		free(bl->dzones[i]);
	for (i = 0; i < bl->n_doms; i++) {
		free(bl->doms[i].name);
		free(bl->doms[i].bl);
	}
	free(bl->doms);
	free(bl->zones);
	free(bl->dzones);
	free(bl->addrs);
	free(bl->ents);
	free(bl);
}

/* ---- holding the mail of a listed sending domain ---- */

/* dom_match - dom is name or below it */
static int
dom_match(const char *dom, const char *name)
{
	size_t a = strlen(dom), b = strlen(name);

	return a >= b && strcasecmp(dom + a - b, name) == 0 &&
	       (a == b || dom[a - b - 1] == '.');
}

int
dnsbl_sender_held(struct dnsbl *bl, const char *sender, uint64_t now,
                  uint64_t *until, char *why, size_t whylen)
{
	const char *at = sender ? strrchr(sender, '@') : NULL;
	uint64_t after = bl ? bl->s->cfg->bl_release_after_ms : 0, t;
	size_t i;

	for (i = 0; at && bl && i < bl->n_doms; i++) {
		struct sdomain *d = &bl->doms[i];
		if (!d->suspended || d->released || !dom_match(at + 1, d->name))
			continue;
		if (after && now >= d->listed_since + after) {
			d->released = 1;
			bl->s->rep->st.releases++;
			log_warnx(d->name, "sending domain still listed after release_after: "
			          "its mail goes again");
			continue;
		}
		t = now + bl->listed_ms; /* looked at again after the next check */
		*until = after && d->listed_since + after < t ? d->listed_since + after : t;
		snprintf(why, whylen, "sending domain %s %s: held", d->name, d->reason);
		d->held++;
		bl->s->rep->st.held++;
		return 1;
	}
	return 0;
}

int
dnsbl_domain_release(struct dnsbl *bl, const char *name)
{
	size_t i;

	for (i = 0; bl && name && i < bl->n_doms; i++) {
		struct sdomain *d = &bl->doms[i];
		if (strcasecmp(d->name, name) != 0)
			continue;
		if (d->suspended && !d->released) {
			d->released = 1;
			bl->s->rep->st.releases++;
			log_info(d->name, "sending domain released by the operator");
		}
		return 0;
	}
	return -1;
}

/* ---- the postmasters' view ---- */

/* ents_json - one object per zone of an address or a domain */
static json_t *
ents_json(const struct bl_entry *ents, char *const *zones, size_t n)
{
	json_t *arr = json_array();
	size_t z;

	for (z = 0; ents && z < n; z++) {
		const struct bl_entry *e = &ents[z];
		json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I}", "zone", zones[z],
		    "state", bl_state_names[e->state], "answer", e->answer,
		    "reason", e->reason, "changes", (json_int_t)e->changes);
		json_object_set_new(o, "first_seen_ms", e->first_seen_ms ?
		    json_integer((json_int_t)e->first_seen_ms) : json_null());
		json_object_set_new(o, "last_checked_ms", e->last_checked_ms ?
		    json_integer((json_int_t)e->last_checked_ms) : json_null());
		json_object_set_new(o, "last_change_ms", e->last_change_ms ?
		    json_integer((json_int_t)e->last_change_ms) : json_null());
		json_array_append_new(arr, o);
	}
	return arr;
}

struct json_t *
dnsbl_json(const struct dnsbl *bl, const struct srcaddr *a)
{
	return bl ? ents_json(a->bl, bl->zones, bl->n_zones) : json_array();
}

static json_t *
names_json(char *const *names, size_t n)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, json_string(names[i]));
	return arr;
}

void
dnsbl_domains_json(const struct dnsbl *bl, struct json_t *o)
{
	json_t *arr = json_array();
	size_t i;

	for (i = 0; bl && i < bl->n_doms; i++) {
		const struct sdomain *d = &bl->doms[i];
		json_t *x = json_pack("{s:s, s:b, s:b, s:b, s:I, s:o}", "domain", d->name,
		    "listed", d->listed > 0, "suspended", d->suspended && !d->released,
		    "released", d->released, "held_recipients", (json_int_t)d->held,
		    "zones", ents_json(d->bl, bl->dzones, bl->n_dzones));
		if (d->listed) {
			json_object_set_new(x, "listed_since_ms", json_integer((json_int_t)d->listed_since));
			json_object_set_new(x, "reason", json_string(d->reason));
		}
		json_array_append_new(arr, x);
	}
	json_object_set_new(o, "domain_zones", bl ? names_json(bl->dzones, bl->n_dzones)
	                                          : json_array());
	json_object_set_new(o, "domain_action", json_string(bl && bl->dom_suspend ?
	                                                    "suspend" : "alert"));
	json_object_set_new(o, "domains", arr);
}

struct json_t *
dnsbl_zones_json(const struct dnsbl *bl)
{
	return bl ? names_json(bl->zones, bl->n_zones) : json_array();
}
