/*
 * mxresolve - resolve domains (or run raw queries) through mxbatch's real
 * DNS glue (src/mxsched dns.c + resolve.c + sitekey.c) and print JSON
 * lines. Used by tests/integration/test_dns*.py and by hand:
 *
 *   mxresolve --server 127.0.0.1:5353 example.test other.test
 *   mxresolve --server 127.0.0.1:5353 --repeat 1000 new.test
 *   mxresolve --server 127.0.0.1:5353 --passes 2 --pause 1s example.test
 *   mxresolve --server 127.0.0.1:5353 --query txt 2.0.0.127.bl.test
 *
 * Output: one line per domain and pass (domain mode: the first answer,
 * plus "answers" = callbacks received, "all_same" = all had its status,
 * "first_mx" = how often each exchanger came first, which shows the
 * shuffle of equal preferences) or per name (query mode), then
 * {"stats": {...}} with the resolver's and c-ares' counters.
 * Exit 0 when everything ran (whatever the DNS said), 1 on setup errors,
 * 2 on usage errors, 3 if the deadline passed with work outstanding.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <jansson.h>

#include "core/core.h"
#include "mxsched/dns.h"
#include "mxsched/resolve.h"
#include "mxsched/sitekey.h"

struct domain_run {
	const char *name;
	size_t answers;       /* callbacks received this pass */
	size_t expected;
	int printed;
	int same;             /* every answer had the first one's status */
	json_t *first;
	json_t *first_mx;     /* name of the first exchanger -> times seen */
	enum resolve_status status;
};

struct tool {
	struct event_base *base;
	struct dns *dns;
	struct resolver *res;
	struct provider_table *providers;
	struct domain_run *runs;
	size_t n_runs, outstanding;
	int pass, passes, repeat, cancel_every;
	uint64_t pause_ms;
	struct event *pause_ev, *deadline_ev;
	int timed_out;
};

static void
usage(void)
{
	fprintf(stderr,
	    "usage: mxresolve [--server ADDR[:PORT],...] [--timeout DUR] "
	    "[--tries N] [--max-inflight N]\n"
	    "         [--min-ttl DUR] [--max-ttl DUR] [--negative-ttl DUR] "
	    "[--temp-ttl DUR]\n"
	    "         [--max-entries N] [--no-ipv6] [--providers FILE] "
	    "[--seed N]\n"
	    "         [--repeat N] [--cancel-every K] [--passes N] "
	    "[--pause DUR]\n"
	    "         [--deadline DUR] [--query a|aaaa|mx|txt] NAME...\n");
	exit(2);
}

static const char *
status_name(enum resolve_status st)
{
	return st == RESOLVE_OK ? "ok" : st == RESOLVE_TEMP ? "temp" : "perm";
}

static json_t *
result_json(struct tool *t, const struct resolve_result *r)
{
	json_t *o = json_object(), *mxs = json_array();
	const struct provider *p = NULL;

	json_object_set_new(o, "domain", json_string(r->domain));
	json_object_set_new(o, "pass", json_integer(t->pass));
	json_object_set_new(o, "status", json_string(status_name(r->status)));
	json_object_set_new(o, "code", json_integer(r->code));
	json_object_set_new(o, "enhanced", r->enhanced ?
	                    json_string(r->enhanced) : json_null());
	json_object_set_new(o, "reason", r->reason ?
	                    json_string(r->reason) : json_null());
	json_object_set_new(o, "implicit_mx", json_boolean(r->implicit_mx));
	json_object_set_new(o, "null_mx", json_boolean(r->null_mx));
	json_object_set_new(o, "site_key", r->site_key ?
	                    json_string(r->site_key) : json_null());
	json_object_set_new(o, "ttl_ms", json_integer((json_int_t)r->ttl_ms));
	for (size_t i = 0; i < r->n_mx; i++) {
		json_t *m = json_object(), *a = json_array();

		json_object_set_new(m, "name", json_string(r->mx[i].name));
		json_object_set_new(m, "pref", json_integer(r->mx[i].pref));
		for (size_t j = 0; j < r->mx[i].n_addrs; j++)
			json_array_append_new(a,
			    json_string(r->mx[i].addrs[j].text));
		json_object_set_new(m, "addresses", a);
		if (r->mx[i].error)
			json_object_set_new(m, "error",
			                    json_string(r->mx[i].error));
		json_array_append_new(mxs, m);
	}
	json_object_set_new(o, "mx", mxs);
	if (t->providers != NULL && r->n_mx > 0)
		p = provider_for_mx(t->providers, r->mx, r->n_mx);
	json_object_set_new(o, "provider", p ? json_string(provider_name(p))
	                                     : json_null());
	return o;
}

static void
print_json(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);

	printf("%s\n", s);
	fflush(stdout);
	free(s);
}

static void start_pass(struct tool *t);

static void
finish_pass(struct tool *t)
{
	struct timeval tv;

	for (size_t i = 0; i < t->n_runs; i++) {
		struct domain_run *d = &t->runs[i];

		if (d->first == NULL)
			continue;
		json_object_set_new(d->first, "answers",
		                    json_integer((json_int_t)d->answers));
		json_object_set_new(d->first, "all_same", json_boolean(d->same));
		json_object_set_new(d->first, "first_mx", d->first_mx);
		d->first_mx = NULL;
		print_json(d->first);
		json_decref(d->first);
		d->first = NULL;
	}
	if (++t->pass >= t->passes) {
		event_base_loopexit(t->base, NULL);
		return;
	}
	tv.tv_sec = (time_t)(t->pause_ms / 1000);
	tv.tv_usec = (suseconds_t)(t->pause_ms % 1000) * 1000;
	evtimer_add(t->pause_ev, &tv);
}

/* The callback arg must reach both the run and the tool: a small pair. */
struct cb_arg {
	struct tool *t;
	struct domain_run *d;
};

static void
on_resolved_pair(void *arg, const struct resolve_result *r)
{
	struct cb_arg *c = arg;
	struct domain_run *d = c->d;
	struct tool *t = c->t;
	if (d->answers++ == 0) {
		d->status = r->status;
		d->first = result_json(t, r);
	}
	d->same &= d->status == r->status;
	if (r->n_mx > 0) {
		json_t *n = json_object_get(d->first_mx, r->mx[0].name);

		json_object_set_new(d->first_mx, r->mx[0].name, json_integer(
		    n ? json_integer_value(n) + 1 : 1));
	}
	if (--t->outstanding == 0)
		finish_pass(t);
}

static void
start_pass(struct tool *t)
{
	static struct cb_arg *args;
	size_t k = 0;

	if (args == NULL)
		args = xcalloc(t->n_runs ? t->n_runs : 1, sizeof(*args));
	t->outstanding = 0;
	for (size_t i = 0; i < t->n_runs; i++) {
		struct domain_run *d = &t->runs[i];

		d->answers = 0;
		d->same = 1;
		json_decref(d->first_mx);
		d->first_mx = json_object();
		d->expected = 0;
		args[k].t = t;
		args[k].d = d;
		for (int j = 0; j < t->repeat; j++) {
			struct resolve_req *q = resolve_domain(t->res, d->name,
			    on_resolved_pair, &args[k]);

			if (t->cancel_every > 0 && (j + 1) % t->cancel_every == 0) {
				resolve_cancel(q);
				continue;
			}
			d->expected++;
			t->outstanding++;
		}
		k++;
	}
	if (t->outstanding == 0)
		finish_pass(t);
}

static void
on_pause(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	start_pass(arg);
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct tool *t = arg;

	(void)fd;
	(void)what;
	t->timed_out = 1;
	fprintf(stderr, "mxresolve: deadline passed, %zu answers outstanding\n",
	        t->outstanding);
	event_base_loopexit(t->base, NULL);
}

/* ---- raw query mode ---- */

static size_t raw_outstanding;

static json_t *
answer_records(const struct dns_answer *a)
{
	json_t *arr = json_array();
	char buf[INET6_ADDRSTRLEN];

	for (size_t i = 0; a->status == DNS_OK && i < a->n; i++) {
		if (a->type == DNS_T_MX) {
			json_t *m = json_object();

			json_object_set_new(m, "pref", json_integer(a->mx[i].pref));
			json_object_set_new(m, "host", json_string(a->mx[i].host));
			json_array_append_new(arr, m);
		} else if (a->type == DNS_T_TXT) {
			json_array_append_new(arr, json_stringn(a->txt[i].text,
			                                        a->txt[i].len));
		} else {
			inet_ntop(a->addr[i].family, &a->addr[i].u, buf,
			          sizeof(buf));
			json_array_append_new(arr, json_string(buf));
		}
	}
	return arr;
}

static void
on_raw(void *arg, const struct dns_answer *a)
{
	struct event_base *base = arg;
	json_t *o = json_object();

	json_object_set_new(o, "name", json_string(a->name));
	json_object_set_new(o, "type", json_string(dns_type_str(a->type)));
	json_object_set_new(o, "status", json_string(dns_status_str(a->status)));
	json_object_set_new(o, "temporary",
	                    json_boolean(dns_status_is_temp(a->status)));
	json_object_set_new(o, "ttl", json_integer(a->ttl));
	json_object_set_new(o, "records", answer_records(a));
	print_json(o);
	json_decref(o);
	if (--raw_outstanding == 0)
		event_base_loopexit(base, NULL);
}

static int
parse_type(const char *s, enum dns_type *t)
{
	static const char *names[] = { "a", "aaaa", "mx", "txt" };

	for (int i = 0; i < 4; i++)
		if (strcasecmp(s, names[i]) == 0) {
			*t = (enum dns_type)i;
			return 0;
		}
	return -1;
}

static void
print_stats(struct tool *t)
{
	struct resolve_stats rs;
	struct dns_stats ds;
	json_t *o = json_object(), *s = json_object(), *sent = json_object();

	dns_get_stats(t->dns, &ds);
	for (int i = 0; i < 4; i++)
		json_object_set_new(sent, dns_type_str((enum dns_type)i),
		                    json_integer((json_int_t)ds.sent[i]));
	json_object_set_new(s, "dns_sent", sent);
	json_object_set_new(s, "dns_cancelled",
	                    json_integer((json_int_t)ds.cancelled));
	if (t->res != NULL) {
		resolver_get_stats(t->res, &rs);
#define ST(f) json_object_set_new(s, #f, json_integer((json_int_t)rs.f))
		ST(requests); ST(coalesced); ST(cache_hits); ST(cache_misses);
		ST(cache_joins); ST(queries_sent); ST(evictions); ST(entries);
		ST(ok); ST(temp); ST(perm);
#undef ST
	}
	json_object_set_new(o, "stats", s);
	print_json(o);
	json_decref(o);
}

static const struct option long_opts[] = {
	{ "server", required_argument, NULL, 's' },
	{ "timeout", required_argument, NULL, 't' },
	{ "tries", required_argument, NULL, 'T' },
	{ "max-inflight", required_argument, NULL, 'I' },
	{ "min-ttl", required_argument, NULL, 'm' },
	{ "max-ttl", required_argument, NULL, 'M' },
	{ "negative-ttl", required_argument, NULL, 'n' },
	{ "temp-ttl", required_argument, NULL, 'e' },
	{ "max-entries", required_argument, NULL, 'E' },
	{ "no-ipv6", no_argument, NULL, '6' },
	{ "providers", required_argument, NULL, 'p' },
	{ "seed", required_argument, NULL, 'S' },
	{ "repeat", required_argument, NULL, 'r' },
	{ "cancel-every", required_argument, NULL, 'c' },
	{ "passes", required_argument, NULL, 'P' },
	{ "pause", required_argument, NULL, 'w' },
	{ "deadline", required_argument, NULL, 'd' },
	{ "query", required_argument, NULL, 'q' },
	{ "debug", no_argument, NULL, 'D' },
	{ NULL, 0, NULL, 0 }
};

static uint64_t
dur_arg(const char *name, const char *v)
{
	uint64_t ms;

	if (parse_duration_ms(v, &ms) != 0) {
		fprintf(stderr, "mxresolve: --%s: bad duration \"%s\"\n", name, v);
		exit(2);
	}
	return ms;
}

static long
num_arg(const char *name, const char *v, long min)
{
	char *end;
	long n = strtol(v, &end, 10);

	if (*v == '\0' || *end != '\0' || n < min) {
		fprintf(stderr, "mxresolve: --%s: bad number \"%s\"\n", name, v);
		exit(2);
	}
	return n;
}

int
main(int argc, char **argv)
{
	struct tool t;
	struct dns_options dopt = { NULL, 0, 0, 0 };
	struct resolve_options ropt = { 60000, 0, 0, 0, 0, 0, 0 };
	const char *providers = NULL;
	enum dns_type qtype = DNS_T_A;
	int raw = 0, c, rc = 0;
	uint64_t deadline = 30000;
	struct timeval tv;
	char err[512];

	memset(&t, 0, sizeof(t));
	t.repeat = t.passes = 1;
	log_init("mxresolve", 1, LOG_LVL_WARN);
	while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		switch (c) {
		case 's': dopt.servers = optarg; break;
		case 't': dopt.timeout_ms = dur_arg("timeout", optarg); break;
		case 'T': dopt.tries = (int)num_arg("tries", optarg, 1); break;
		case 'I': dopt.max_inflight = (unsigned)num_arg("max-inflight",
		                                                optarg, 1); break;
		case 'm': ropt.min_ttl_ms = dur_arg("min-ttl", optarg); break;
		case 'M': ropt.max_ttl_ms = dur_arg("max-ttl", optarg); break;
		case 'n': ropt.negative_ttl_ms = dur_arg("negative-ttl", optarg);
		          break;
		case 'e': ropt.temp_ttl_ms = dur_arg("temp-ttl", optarg); break;
		case 'E': ropt.max_entries = (size_t)num_arg("max-entries",
		                                             optarg, 1); break;
		case '6': ropt.no_ipv6 = 1; break;
		case 'p': providers = optarg; break;
		case 'S': ropt.seed = (uint64_t)num_arg("seed", optarg, 1); break;
		case 'r': t.repeat = (int)num_arg("repeat", optarg, 1); break;
		case 'c': t.cancel_every = (int)num_arg("cancel-every", optarg, 1);
		          break;
		case 'P': t.passes = (int)num_arg("passes", optarg, 1); break;
		case 'w': t.pause_ms = dur_arg("pause", optarg); break;
		case 'd': deadline = dur_arg("deadline", optarg); break;
		case 'q':
			if (parse_type(optarg, &qtype) != 0)
				usage();
			raw = 1;
			break;
		case 'D': log_set_level(LOG_LVL_DEBUG); break;
		default: usage();
		}
	}
	if (optind >= argc)
		usage();
	if (providers != NULL &&
	    (t.providers = provider_table_load(providers, err, sizeof(err)))
	    == NULL) {
		fprintf(stderr, "mxresolve: %s\n", err);
		return 1;
	}
	t.base = event_base_new();
	t.dns = dns_new(t.base, &dopt, err, sizeof(err));
	if (t.dns == NULL) {
		fprintf(stderr, "mxresolve: %s\n", err);
		event_base_free(t.base);
		return 1;
	}
	t.deadline_ev = evtimer_new(t.base, on_deadline, &t);
	tv.tv_sec = (time_t)(deadline / 1000);
	tv.tv_usec = (suseconds_t)(deadline % 1000) * 1000;
	evtimer_add(t.deadline_ev, &tv);
	if (raw) {
		for (int i = optind; i < argc; i++) {
			raw_outstanding++;
			dns_query(t.dns, qtype, argv[i], on_raw, t.base);
		}
	} else {
		t.res = resolver_new(t.base, t.dns, &ropt);
		t.n_runs = (size_t)(argc - optind);
		t.runs = xcalloc(t.n_runs, sizeof(*t.runs));
		for (size_t i = 0; i < t.n_runs; i++)
			t.runs[i].name = argv[optind + (int)i];
		t.pause_ev = evtimer_new(t.base, on_pause, &t);
		start_pass(&t);
	}
	event_base_dispatch(t.base);
	print_stats(&t);
	if (t.timed_out)
		rc = 3;
	for (size_t i = 0; i < t.n_runs; i++) {
		json_decref(t.runs[i].first);
		json_decref(t.runs[i].first_mx);
	}
	resolver_free(t.res);
	dns_free(t.dns);
	if (t.pause_ev)
		event_free(t.pause_ev);
	event_free(t.deadline_ev);
	event_base_free(t.base);
	provider_table_free(t.providers);
	free(t.runs);
	return rc;
}
