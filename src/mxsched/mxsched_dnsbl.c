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
 */
#include "mxsched/mxsched_internal.h"
#include "mxsched/dns.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

enum bl_state { BL_UNKNOWN, BL_CLEAN, BL_LISTED, BL_MISCONFIGURED, BL_ERROR };
static const char *const bl_state_names[] = {
	"unknown", "clean", "listed", "misconfigured", "error" };

struct bl_entry {
	struct dnsbl *bl;
	struct srcaddr *a;
	size_t zone;
	enum bl_state state;
	char answer[64];            /* the A answer, or the DNS status */
	char reason[256];           /* TXT of a listing, or what went wrong */
	char pending[64];           /* A answer of a listing awaiting its TXT */
	uint64_t first_seen_ms, last_checked_ms, last_change_ms, next_ms;
	uint64_t changes;
	struct dns_query *q, *tq;
};

struct dnsbl {
	struct mxsched *s;
	char **zones;
	size_t n_zones;
	uint64_t interval_ms, listed_ms;
	struct event *timer;
	struct srcaddr **addrs;
	size_t n_addrs;
};

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
		rs->listings++;
		log_warnx(e->a->ip, "listed at %s (%s): %s", bl->zones[e->zone], answer,
		          e->reason);
	} else if (st == BL_MISCONFIGURED) {
		rs->monitor_problems++;
		log_warnx(e->a->ip, "block list %s refuses our queries (%s): monitor "
		          "misconfigured, not a listing", bl->zones[e->zone], answer);
	} else {
		if (was == BL_LISTED)
			rs->delistings++;
		log_info(e->a->ip, "%s at %s (%s)", bl_state_names[st], bl->zones[e->zone],
		         answer);
	}
	if (st == BL_LISTED || was == BL_LISTED)
		addr_update(bl, e->a);
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
	dns_reverse_name(e->a->family, e->a->bin, e->bl->zones[e->zone], name,
	                 sizeof(name));
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
	if (dns_reverse_name(e->a->family, e->a->bin, e->bl->zones[e->zone], name,
	                     sizeof(name)) < 0) {
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
	size_t i, z;

	(void)fd;
	(void)what;
	for (i = 0; i < bl->n_addrs; i++)
		for (z = 0; z < bl->n_zones; z++) {
			struct bl_entry *e = &bl->addrs[i]->bl[z];
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
	size_t i, z;

	for (i = 0; i < bl->n_addrs; i++)
		for (z = 0; z < bl->n_zones; z++)
			if (bl->addrs[i]->bl[z].next_ms < next)
				next = bl->addrs[i]->bl[z].next_ms;
	d = next > now + 100 ? next - now : 100;
	tv.tv_sec = (time_t)(d / 1000);
	tv.tv_usec = (suseconds_t)(d % 1000) * 1000;
	event_add(bl->timer, &tv);
}

/* ---- lifecycle ---- */

static int
zones_parse(struct dnsbl *bl, const char *spec, char *err, size_t errlen)
{
	char *copy = xstrdup(spec), *save = NULL, *z;
	int rc = 0;

	for (z = strtok_r(copy, ", \t", &save); z; z = strtok_r(NULL, ", \t", &save)) {
		size_t len = strlen(z);
		if (len > 200 || strspn(z, "abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") != len || z[0] == '.') {
			snprintf(err, errlen, "[blocklists] zones: bad zone name \"%.64s\"", z);
			rc = -1;
			break;
		}
		bl->zones = xrealloc(bl->zones, (bl->n_zones + 1) * sizeof(char *));
		bl->zones[bl->n_zones++] = xstrdup(z);
	}
	free(copy);
	return rc;
}

static void
collect_addr(void *val, void *arg)
{
	struct dnsbl *bl = arg;
	struct srcaddr *a = val;
	size_t z;

	a->bl = xcalloc(bl->n_zones, sizeof(*a->bl));
	for (z = 0; z < bl->n_zones; z++) {
		a->bl[z].bl = bl;
		a->bl[z].a = a;
		a->bl[z].zone = z;
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
	if (zones_parse(bl, c->bl_zones, err, errlen) < 0) {
		dnsbl_free(bl);
		return NULL;
	}
	smap_each(&s->rep->addrs, collect_addr, bl);
	bl->timer = event_new(s->base, -1, 0, bl_on_timer, bl);
	if (bl->n_addrs == 0)
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
	size_t i, z;

	if (bl == NULL)
		return;
	for (i = 0; i < bl->n_addrs; i++)
		for (z = 0; z < bl->n_zones; z++) {
			dns_cancel(bl->addrs[i]->bl[z].q);
			dns_cancel(bl->addrs[i]->bl[z].tq);
		}
	if (bl->timer)
		event_free(bl->timer);
	for (z = 0; z < bl->n_zones; z++)
		free(bl->zones[z]);
	free(bl->zones);
	free(bl->addrs);
	free(bl);
}

/* ---- the postmasters' view ---- */

struct json_t *
dnsbl_json(const struct dnsbl *bl, const struct srcaddr *a)
{
	json_t *arr = json_array();
	size_t z;

	for (z = 0; bl && a->bl && z < bl->n_zones; z++) {
		const struct bl_entry *e = &a->bl[z];
		json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I}", "zone", bl->zones[z],
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
dnsbl_zones_json(const struct dnsbl *bl)
{
	json_t *arr = json_array();
	size_t z;

	for (z = 0; bl && z < bl->n_zones; z++)
		json_array_append_new(arr, json_string(bl->zones[z]));
	return arr;
}
