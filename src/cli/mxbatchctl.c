/*
 * mxbatchctl.c - the admin CLI: command line, configuration and token,
 * one function per command, each a request or two to the admin HTTP API.
 *
 *   mxbatchctl [-c CONFIG] [--url URL] [--token-file F] [--json] COMMAND ...
 *
 * The API address and token file come from the daemon's configuration
 * ([admin] listen, token_file), -c CONFIG, or the built-in defaults;
 * --url / --token-file override them. Exit: 0 ok, 1 error, 2 usage.
 */
#include "cli/ctl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"


struct opts {
	const char *domain, *sender, *tenant, *state, *site, *after, *limit;
	const char *dur, *reason, *since, *envid, *event;
	int follow, terminal, bounce, del;
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: mxbatchctl [-c CONFIG] [--url http://HOST:PORT] [--token-file FILE]\n"
	    "                  [--json] [--timeout SECONDS] COMMAND [ARGS]\n"
	    "commands:\n"
	    "  queue                          totals by state, top sites/domains/tenants\n"
	    "  sites                          every site the scheduler knows\n"
	    "  site SITE                      one site: state, domains, last hour, replies\n"
	    "  messages [--domain D] [--sender S] [--tenant T] [--site SITE]\n"
	    "           [--state queued|deferred|inflight|held] [--limit N] [--after ID]\n"
	    "  message ID                     envelope, recipients, headers\n"
	    "  hold|release|retry|delete ID   act on one message (delete --bounce: DSNs)\n"
	    "  suspend SITE [--for 10m] [--reason TEXT]\n"
	    "  resume SITE | retry-site SITE\n"
	    "  bounce --domain D|--site SITE|--tenant T|--sender S [--delete]\n"
	    "  suppressions\n"
	    "  blocklists                     sending addresses/domains: listings, blocks\n"
	    "  unblock ADDRESS|DOMAIN [--site SITE] | unblock --site SITE\n"
	    "                                 release a listing or a reply-driven block\n"
	    "  events [--follow] [--since CURSOR] [--envid E] [--tenant T] [--terminal]\n"
	    "  health | metrics\n");
}

/* fail - print an API error; CTL_ERR */
static int
fail(int status, json_t *o)
{
	fprintf(stderr, "mxbatchctl: %d %s: %s\n", status,
	        json_string_value(json_object_get(o, "error")) ?
	        json_string_value(json_object_get(o, "error")) : "error",
	        json_string_value(json_object_get(o, "detail")) ?
	        json_string_value(json_object_get(o, "detail")) : "");
	return CTL_ERR;
}

/* call - one request; prints the result with show (or JSON); exit code */
static int
call(const struct ctl *c, const char *method, const char *path, json_t *body,
     void (*show)(json_t *))
{
	json_t *o = NULL;
	int status = 0, rc;

	if (ctl_request(c, method, path, body, &status, &o) < 0)
		return CTL_ERR;
	if (status / 100 != 2)
		rc = fail(status, o);
	else {
		rc = CTL_OK;
		if (c->json || show == NULL)
			ctl_print_json(o);
		else
			show(o);
	}
	json_decref(o);
	return rc;
}

static void
show_kv(json_t *o)
{
	ctl_print_kv(o, 0);
}

static void
show_done(json_t *o)
{
	const char *id = json_string_value(json_object_get(o, "id"));
	const char *site = json_string_value(json_object_get(o, "site"));

	printf("%s: %s", json_string_value(json_object_get(o, "action")),
	       id ? id : site ? site : "");
	if (json_object_get(o, "recipients"))
		printf(" (%lld recipients)",
		       (long long)json_integer_value(json_object_get(o, "recipients")));
	printf("\n");
}

/* qadd - append "&key=value" (value url-encoded) when value is set */
static void
qadd(char *buf, size_t len, const char *key, const char *value)
{
	char *e;

	if (value == NULL)
		return;
	e = ctl_urlencode(value);
	snprintf(buf + strlen(buf), len - strlen(buf), "%s%s=%s",
	         strchr(buf, '?') ? "&" : "?", key, e);
	free(e);
}

static int
cmd_messages(const struct ctl *c, const struct opts *o)
{
	char path[4096] = "/v1/messages";

	qadd(path, sizeof(path), "domain", o->domain);
	qadd(path, sizeof(path), "sender", o->sender);
	qadd(path, sizeof(path), "tenant", o->tenant);
	qadd(path, sizeof(path), "state", o->state);
	qadd(path, sizeof(path), "site", o->site);
	qadd(path, sizeof(path), "after", o->after);
	qadd(path, sizeof(path), "limit", o->limit);
	return call(c, "GET", path, NULL, ctl_print_messages);
}

/* cmd_msg_action - hold / release / retry / delete ID */
static int
cmd_msg_action(const struct ctl *c, const char *cmd, const char *id, int bounce)
{
	char path[256], *e = ctl_urlencode(id);
	int rc;

	if (strcmp(cmd, "delete") == 0)
		snprintf(path, sizeof(path), "/v1/messages/%s%s", e, bounce ? "?bounce=1" : "");
	else
		snprintf(path, sizeof(path), "/v1/messages/%s/%s", e,
		         strcmp(cmd, "retry") == 0 ? "retry-now" : cmd);
	rc = call(c, strcmp(cmd, "delete") == 0 ? "DELETE" : "POST", path, NULL, show_done);
	free(e);
	return rc;
}

static int
cmd_site(const struct ctl *c, const char *action, const char *site,
         const struct opts *o)
{
	char path[4096], *e = ctl_urlencode(site);
	json_t *body = NULL;
	int rc;

	if (action == NULL) {
		snprintf(path, sizeof(path), "/v1/sites/%s", e);
		free(e);
		return call(c, "GET", path, NULL, ctl_print_site);
	}
	snprintf(path, sizeof(path), "/v1/sites/%s/%s", e, action);
	if (strcmp(action, "suspend") == 0) {
		body = json_object();
		if (o->dur)
			json_object_set_new(body, "duration", json_string(o->dur));
		if (o->reason)
			json_object_set_new(body, "reason", json_string(o->reason));
	}
	rc = call(c, "POST", path, body, show_done);
	json_decref(body);
	free(e);
	return rc;
}

/* cmd_bounce - POST /v1/bounce until the whole queue was looked at */
static int
cmd_bounce(const struct ctl *c, const struct opts *o)
{
	json_t *body, *res = NULL;
	long long msgs = 0, rcpts = 0;
	int status, rc = CTL_OK;
	char *next = NULL;

	do {
		body = json_pack("{s:s}", "action", o->del ? "delete" : "bounce");
		if (o->domain) json_object_set_new(body, "domain", json_string(o->domain));
		if (o->tenant) json_object_set_new(body, "tenant", json_string(o->tenant));
		if (o->sender) json_object_set_new(body, "sender", json_string(o->sender));
		if (o->site) json_object_set_new(body, "site", json_string(o->site));
		if (next) json_object_set_new(body, "after", json_string(next));
		free(next);
		next = NULL;
		if (ctl_request(c, "POST", "/v1/bounce", body, &status, &res) < 0)
			rc = CTL_ERR;
		else if (status / 100 != 2)
			rc = fail(status, res);
		else {
			msgs += json_integer_value(json_object_get(res, "messages"));
			rcpts += json_integer_value(json_object_get(res, "recipients"));
			if (json_is_string(json_object_get(res, "next")))
				next = strdup(json_string_value(json_object_get(res, "next")));
		}
		json_decref(body);
		json_decref(res);
		res = NULL;
	} while (rc == CTL_OK && next);
	if (rc == CTL_OK && c->json)
		printf("{\"action\": \"%s\", \"messages\": %lld, \"recipients\": %lld}\n",
		       o->del ? "delete" : "bounce", msgs, rcpts);
	else if (rc == CTL_OK)
		printf("%s: %lld recipients of %lld messages\n",
		       o->del ? "deleted" : "bounced", rcpts, msgs);
	return rc;
}

static void
show_released(json_t *o)
{
	printf("%s\n", json_string_value(json_object_get(o, "status")) ?
	       json_string_value(json_object_get(o, "status")) : "done");
}

/* cmd_unblock - POST /v1/blocklists/release for an address or domain,
 * one site, or both */
static int
cmd_unblock(const struct ctl *c, const char *what, const struct opts *o)
{
	json_t *body = json_object();
	int rc;

	if (what)
		json_object_set_new(body, "address", json_string(what));
	if (o->site)
		json_object_set_new(body, "site", json_string(o->site));
	rc = call(c, "POST", "/v1/blocklists/release", body, show_released);
	json_decref(body);
	return rc;
}

/* events_once - one long-poll; prints events; updates cursor; -1 error */
static int
events_once(const struct ctl *c, const struct opts *o, char **cursor, size_t *n)
{
	char path[4096];
	json_t *res = NULL, *ev;
	int status;
	size_t i;

	snprintf(path, sizeof(path), "/v1/events?limit=1000&timeout=%d", o->follow ? 25 : 0);
	qadd(path, sizeof(path), "since", *cursor);
	qadd(path, sizeof(path), "envid", o->envid);
	qadd(path, sizeof(path), "tenant", o->tenant);
	qadd(path, sizeof(path), "event", o->event);
	if (o->terminal)
		qadd(path, sizeof(path), "terminal", "1");
	if (ctl_request(c, "GET", path, NULL, &status, &res) < 0)
		return -1;
	if (status != 200) {
		fail(status, res);
		json_decref(res);
		return -1;
	}
	*n = json_array_size(json_object_get(res, "events"));
	json_array_foreach(json_object_get(res, "events"), i, ev) {
		if (c->json) {
			char *s = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
			puts(s ? s : "{}");
			free(s);
		} else {
			ctl_print_event(ev);
		}
	}
	fflush(stdout);
	free(*cursor);
	*cursor = strdup(json_string_value(json_object_get(res, "cursor")) ?
	                 json_string_value(json_object_get(res, "cursor")) : "");
	json_decref(res);
	return 0;
}

static int
cmd_events(struct ctl *c, const struct opts *o)
{
	char *cursor = o->since ? strdup(o->since) : NULL;
	size_t n = 0;
	int rc = CTL_OK;

	if (o->follow)
		c->timeout_s = 60;
	do {
		if (events_once(c, o, &cursor, &n) < 0) {
			rc = CTL_ERR;
			break;
		}
	} while (o->follow || n == 1000);
	if (cursor)
		fprintf(stderr, "cursor %s\n", cursor);
	free(cursor);
	return rc;
}

static int
cmd_metrics(const struct ctl *c)
{
	char *text = NULL;
	int status;

	if (ctl_get_text(c, "/metrics", &status, &text) < 0)
		return CTL_ERR;
	fputs(text, status == 200 ? stdout : stderr);
	free(text);
	return status == 200 ? CTL_OK : CTL_ERR;
}

/* dispatch - run cmd with its positional argument arg (may be NULL) */
static int
dispatch(struct ctl *c, const char *cmd, const char *arg, int nargs,
         const struct opts *o)
{
	int need = !strcmp(cmd, "site") || !strcmp(cmd, "message") || !strcmp(cmd, "hold") ||
	           !strcmp(cmd, "release") || !strcmp(cmd, "retry") || !strcmp(cmd, "delete") ||
	           !strcmp(cmd, "suspend") || !strcmp(cmd, "resume") ||
	           !strcmp(cmd, "retry-site");

	if (!strcmp(cmd, "unblock")) {
		if (nargs > 1 || (nargs == 0 && !o->site))
			goto usage;
		return cmd_unblock(c, arg, o);
	}
	if (nargs != need)
		goto usage;
	if (!strcmp(cmd, "queue"))
		return call(c, "GET", "/v1/queue", NULL, ctl_print_queue);
	if (!strcmp(cmd, "sites"))
		return call(c, "GET", "/v1/sites", NULL, ctl_print_sites);
	if (!strcmp(cmd, "health"))
		return call(c, "GET", "/v1/health", NULL, show_kv);
	if (!strcmp(cmd, "suppressions"))
		return call(c, "GET", "/v1/suppressions", NULL, show_kv);
	if (!strcmp(cmd, "metrics"))
		return cmd_metrics(c);
	if (!strcmp(cmd, "blocklists"))
		return call(c, "GET", "/v1/blocklists", NULL, ctl_print_blocklists);
	if (!strcmp(cmd, "messages"))
		return cmd_messages(c, o);
	if (!strcmp(cmd, "events"))
		return cmd_events(c, o);
	if (!strcmp(cmd, "bounce")) {
		if (!o->domain && !o->tenant && !o->sender && !o->site)
			goto usage;
		return cmd_bounce(c, o);
	}
	if (!strcmp(cmd, "site"))
		return cmd_site(c, NULL, arg, o);
	if (!strcmp(cmd, "suspend") || !strcmp(cmd, "resume"))
		return cmd_site(c, cmd, arg, o);
	if (!strcmp(cmd, "retry-site"))
		return cmd_site(c, "retry-now", arg, o);
	if (!strcmp(cmd, "message")) {
		char path[256], *e = ctl_urlencode(arg);
		snprintf(path, sizeof(path), "/v1/messages/%s", e);
		free(e);
		return call(c, "GET", path, NULL, ctl_print_message);
	}
	if (need)
		return cmd_msg_action(c, cmd, arg, o->bounce);
	fprintf(stderr, "mxbatchctl: unknown command '%s'\n", cmd);
usage:
	usage(stderr);
	return CTL_USAGE;
}

int ctl_setup(struct ctl *c, const char *config, const char *url,
              const char *token_file);

static const struct option long_opts[] = {
	{ "config", required_argument, NULL, 'c' }, { "url", required_argument, NULL, 'u' },
	{ "token-file", required_argument, NULL, 'T' }, { "json", no_argument, NULL, 'j' },
	{ "timeout", required_argument, NULL, 't' }, { "help", no_argument, NULL, 'h' },
	{ "domain", required_argument, NULL, 'd' }, { "sender", required_argument, NULL, 's' },
	{ "tenant", required_argument, NULL, 'n' }, { "state", required_argument, NULL, 'S' },
	{ "site", required_argument, NULL, 'i' }, { "after", required_argument, NULL, 'a' },
	{ "limit", required_argument, NULL, 'l' }, { "for", required_argument, NULL, 'f' },
	{ "reason", required_argument, NULL, 'r' }, { "since", required_argument, NULL, 'C' },
	{ "envid", required_argument, NULL, 'e' }, { "event", required_argument, NULL, 'E' },
	{ "follow", no_argument, NULL, 'F' }, { "terminal", no_argument, NULL, 'x' },
	{ "bounce", no_argument, NULL, 'b' }, { "delete", no_argument, NULL, 'D' },
	{ NULL, 0, NULL, 0 }
};

/* parse_opt - one option into c/o; -1 on a usage error */
static int
parse_opt(int ch, struct ctl *c, struct opts *o, const char **cfg,
          const char **url, const char **tf)
{
	switch (ch) {
	case 'c': *cfg = optarg; break;
	case 'u': *url = optarg; break;
	case 'T': *tf = optarg; break;
	case 'j': c->json = 1; break;
	case 't': c->timeout_s = atoi(optarg) > 0 ? atoi(optarg) : 30; break;
	case 'd': o->domain = optarg; break;
	case 's': o->sender = optarg; break;
	case 'n': o->tenant = optarg; break;
	case 'S': o->state = optarg; break;
	case 'i': o->site = optarg; break;
	case 'a': o->after = optarg; break;
	case 'l': o->limit = optarg; break;
	case 'f': o->dur = optarg; break;
	case 'r': o->reason = optarg; break;
	case 'C': o->since = optarg; break;
	case 'e': o->envid = optarg; break;
	case 'E': o->event = optarg; break;
	case 'F': o->follow = 1; break;
	case 'x': o->terminal = 1; break;
	case 'b': o->bounce = 1; break;
	case 'D': o->del = 1; break;
	default: return -1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	struct ctl c = { .timeout_s = 30 };
	struct opts o = { 0 };
	const char *cfg = NULL, *url = NULL, *tf = NULL, *pos[3];
	int ch, npos = 0, rc;

	while ((ch = getopt_long(argc, argv, "c:jh", long_opts, NULL)) != -1) {
		if (ch == 'h') {
			usage(stdout);
			return CTL_OK;
		}
		if (parse_opt(ch, &c, &o, &cfg, &url, &tf) < 0)
			goto usage;
	}
	for (; optind < argc; optind++) {
		if (npos == 3)
			goto usage;
		pos[npos++] = argv[optind];
	}
	if (npos == 0)
		goto usage;
	if (ctl_setup(&c, cfg, url, tf) < 0)
		return CTL_ERR;
	rc = dispatch(&c, pos[0], npos > 1 ? pos[1] : NULL, npos - 1, &o);
	free(c.token);
	return rc;
usage:
	usage(stderr);
	return CTL_USAGE;
}
