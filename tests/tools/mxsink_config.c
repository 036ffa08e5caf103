/*
 * mxsink_config.c - the sink's JSON behaviour file, read at start and on
 * SIGHUP (main loop). Top-level keys apply to every listener; the "listen"
 * object holds per-address overrides keyed "IP" or "IP:PORT" (merged one
 * level deep over the top level, IP:PORT last); the "peers" object (at the
 * top level or in a "listen" entry) holds per-client overrides keyed by
 * the client's address, merged last, so a sink can answer one source
 * address differently from the others. Unknown keys and bad types
 * are errors, so a typo in a test never silently means "default". A failed
 * reload keeps the previous behaviour. Format: docs/testing.md.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/core.h"
#include "mxsink_internal.h"

static const char *phase_names[PH_COUNT] = {
	"greeting", "ehlo", "helo", "mail", "rcpt", "data", "dot", "bdat",
	"rset", "noop", "quit", "starttls", "other"
};

const char *phase_name(enum phase ph)
{
	return phase_names[ph];
}

static int phase_parse(const char *s)
{
	for (int i = 0; i < PH_COUNT; i++)
		if (strcasecmp(s, phase_names[i]) == 0)
			return i;
	return -1;
}

/* fail - format an error into err, return -1 */
static int fail(char *err, size_t errlen, const char *fmt, const char *a,
                const char *b)
{
	snprintf(err, errlen, fmt, a, b ? b : "");
	return -1;
}

static int get_str(json_t *v, const char *key, char **out, char *err,
                   size_t errlen)
{
	if (!json_is_string(v))
		return fail(err, errlen, "\"%s\": expected a string%s", key, NULL);
	free(*out);
	*out = xstrdup(json_string_value(v));
	return 0;
}

static int get_uint(json_t *v, const char *key, unsigned *out, char *err,
                    size_t errlen)
{
	if (json_is_boolean(v)) {
		*out = json_is_true(v);
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > 0x7fffffff)
		return fail(err, errlen, "\"%s\": expected a number >= 0%s", key,
		            NULL);
	*out = (unsigned)json_integer_value(v);
	return 0;
}

static int get_bool(json_t *v, const char *key, int *out, char *err,
                    size_t errlen)
{
	if (!json_is_boolean(v))
		return fail(err, errlen, "\"%s\": expected true or false%s", key,
		            NULL);
	*out = json_is_true(v);
	return 0;
}

static int get_phase(json_t *v, const char *key, int *out, char *err,
                     size_t errlen)
{
	if (json_is_null(v)) {
		*out = -1;
		return 0;
	}
	if (!json_is_string(v) || (*out = phase_parse(json_string_value(v))) < 0)
		return fail(err, errlen, "\"%s\": expected a phase name%s", key,
		            NULL);
	return 0;
}

/* parse_replies - "replies": {"phase": "NNN text", ...} */
static int parse_replies(struct behaviour *b, json_t *obj, char *err,
                         size_t errlen)
{
	const char *k;
	json_t *v;
	int ph;

	if (!json_is_object(obj))
		return fail(err, errlen, "\"replies\": expected an object%s%s", "",
		            NULL);
	json_object_foreach(obj, k, v) {
		if ((ph = phase_parse(k)) < 0)
			return fail(err, errlen, "\"replies\": unknown phase \"%s\"%s",
			            k, NULL);
		if (!json_is_string(v) || strlen(json_string_value(v)) < 3 ||
		    !isdigit((unsigned char)json_string_value(v)[0]))
			return fail(err, errlen, "\"replies\".\"%s\": expected a "
			            "string starting with a reply code%s", k, NULL);
		free(b->replies[ph]);
		b->replies[ph] = xstrdup(json_string_value(v));
	}
	return 0;
}

/* parse_delays - "delay_ms": N (every reply) or {"phase": N, "all": N} */
static int parse_delays(struct behaviour *b, json_t *v, char *err,
                        size_t errlen)
{
	const char *k;
	json_t *d;
	int ph;

	if (!json_is_object(v))
		return get_uint(v, "delay_ms", &b->delay_all, err, errlen);
	json_object_foreach(v, k, d) {
		if (strcmp(k, "all") == 0)
			ph = -1;
		else if ((ph = phase_parse(k)) < 0)
			return fail(err, errlen, "\"delay_ms\": unknown phase \"%s\"%s",
			            k, NULL);
		if (get_uint(d, "delay_ms", ph < 0 ? &b->delay_all :
		             &b->delay_ms[ph], err, errlen) < 0)
			return -1;
	}
	return 0;
}

/* parse_rule - one {"match"|"regex": ..., "reply": ...} of rcpt_rules */
static int parse_rule(struct rcpt_rule *r, json_t *o, char *err,
                      size_t errlen)
{
	json_t *m = json_object_get(o, "match"), *re = json_object_get(o, "regex");
	json_t *rep = json_object_get(o, "reply");
	char msg[128];
	int rc;

	if (!json_is_object(o) || !json_is_string(rep) ||
	    json_is_string(m) == json_is_string(re) || json_object_size(o) != 2)
		return fail(err, errlen, "\"rcpt_rules\": each rule is "
		            "{\"match\" or \"regex\": ..., \"reply\": ...}%s%s", "",
		            NULL);
	r->reply = xstrdup(json_string_value(rep));
	if (m) {
		r->substr = xstrdup(json_string_value(m));
		return 0;
	}
	rc = regcomp(&r->re, json_string_value(re),
	             REG_EXTENDED | REG_ICASE | REG_NOSUB);
	if (rc != 0) {
		regerror(rc, &r->re, msg, sizeof(msg));
		free(r->reply);
		r->reply = NULL;
		return fail(err, errlen, "\"rcpt_rules\": bad regex: %s%s", msg,
		            NULL);
	}
	return 0;
}

static int parse_rules(struct behaviour *b, json_t *arr, char *err,
                       size_t errlen)
{
	size_t i;
	json_t *o;

	if (!json_is_array(arr))
		return fail(err, errlen, "\"rcpt_rules\": expected a list%s%s", "",
		            NULL);
	b->rules = xcalloc(json_array_size(arr) + 1, sizeof(*b->rules));
	json_array_foreach(arr, i, o) {
		if (parse_rule(&b->rules[i], o, err, errlen) < 0)
			return -1;
		b->n_rules = i + 1;
	}
	return 0;
}

/* parse_ehlo - "ehlo": {"pipelining": bool, "size": N|false, ...} */
static int parse_ehlo(struct behaviour *b, json_t *obj, char *err,
                      size_t errlen)
{
	const struct { const char *k; int *p; } flags[] = {
		{"pipelining", &b->pipelining}, {"8bitmime", &b->eightbitmime},
		{"smtputf8", &b->smtputf8}, {"chunking", &b->chunking},
		{"dsn", &b->dsn}, {"starttls", &b->starttls},
		{"enhancedstatuscodes", &b->enhancedstatuscodes},
	};
	const char *k;
	json_t *v;
	unsigned size;
	size_t i;

	if (!json_is_object(obj))
		return fail(err, errlen, "\"ehlo\": expected an object%s%s", "",
		            NULL);
	json_object_foreach(obj, k, v) {
		if (strcmp(k, "size") == 0) {
			if (get_uint(v, "ehlo.size", &size, err, errlen) < 0)
				return -1;
			b->size = json_is_true(v) ? 52428800 : size;
			continue;
		}
		for (i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
			if (strcmp(k, flags[i].k) == 0)
				break;
		if (i == sizeof(flags) / sizeof(flags[0]))
			return fail(err, errlen, "\"ehlo\": unknown extension "
			            "\"%s\"%s", k, NULL);
		if (get_bool(v, k, flags[i].p, err, errlen) < 0)
			return -1;
	}
	return 0;
}

/* get_tempfail_at - "tempfail_at": "greeting" | "mail" | "rcpt" | "dot" */
static int get_tempfail_at(struct behaviour *b, json_t *v, char *err,
                           size_t errlen)
{
	if (get_phase(v, "tempfail_at", &b->tempfail_at, err, errlen) < 0)
		return -1;
	if (b->tempfail_at == PH_GREETING || b->tempfail_at == PH_MAIL ||
	    b->tempfail_at == PH_RCPT || b->tempfail_at == PH_DOT)
		return 0;
	return fail(err, errlen, "\"%s\": expected greeting, mail, rcpt or "
	            "dot%s",
	            "tempfail_at", NULL);
}

enum kind { K_STR, K_UINT, K_BOOL, K_PHASE, K_TEMPFAIL_AT, K_REPLIES,
	    K_DELAYS, K_RULES, K_EHLO };

/* Every top-level key of the config and where it goes */
static const struct key {
	const char *name;
	enum kind kind;
	size_t off;
} keys[] = {
	{"hostname", K_STR, offsetof(struct behaviour, hostname)},
	{"replies", K_REPLIES, 0},
	{"delay_ms", K_DELAYS, 0},
	{"drop_at", K_PHASE, offsetof(struct behaviour, drop_at)},
	{"hang_at", K_PHASE, offsetof(struct behaviour, hang_at)},
	{"rcpt_rules", K_RULES, 0},
	{"max_rcpts", K_UINT, offsetof(struct behaviour, max_rcpts)},
	{"max_rcpts_reply", K_STR, offsetof(struct behaviour, max_rcpts_reply)},
	{"one_domain", K_BOOL, offsetof(struct behaviour, one_domain)},
	{"one_domain_reply", K_STR,
	 offsetof(struct behaviour, one_domain_reply)},
	{"max_messages", K_UINT, offsetof(struct behaviour, max_messages)},
	{"max_messages_reply", K_STR,
	 offsetof(struct behaviour, max_messages_reply)},
	{"tempfail_every", K_UINT, offsetof(struct behaviour, tempfail_every)},
	{"tempfail_at", K_TEMPFAIL_AT, offsetof(struct behaviour, tempfail_at)},
	{"tempfail_reply", K_STR, offsetof(struct behaviour, tempfail_reply)},
	{"require_tls", K_BOOL, offsetof(struct behaviour, require_tls)},
	{"strict", K_BOOL, offsetof(struct behaviour, strict)},
	{"ehlo", K_EHLO, 0},
};

/* parse_key - apply one top-level key to b */
static int parse_key(struct behaviour *b, const char *k, json_t *v,
                     char *err, size_t errlen)
{
	const struct key *key = NULL;
	char *field;

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(k, keys[i].name) == 0)
			key = &keys[i];
	if (key == NULL)
		return fail(err, errlen, "unknown key \"%s\"%s", k, NULL);
	field = (char *)b + key->off;
	switch (key->kind) {
	case K_STR: return get_str(v, k, (char **)field, err, errlen);
	case K_UINT: return get_uint(v, k, (unsigned *)field, err, errlen);
	case K_BOOL: return get_bool(v, k, (int *)field, err, errlen);
	case K_PHASE: return get_phase(v, k, (int *)field, err, errlen);
	case K_TEMPFAIL_AT: return get_tempfail_at(b, v, err, errlen);
	case K_REPLIES: return parse_replies(b, v, err, errlen);
	case K_DELAYS: return parse_delays(b, v, err, errlen);
	case K_RULES: return parse_rules(b, v, err, errlen);
	case K_EHLO: return parse_ehlo(b, v, err, errlen);
	}
	return -1;
}

static struct behaviour *behaviour_new(void)
{
	struct behaviour *b = xcalloc(1, sizeof(*b));

	b->hostname = xstrdup("mxsink.test");
	b->drop_at = b->hang_at = -1;
	b->max_rcpts_reply = xstrdup("452 4.5.3 Too many recipients");
	b->one_domain_reply = xstrdup("451 4.3.0 Multiple destination domains "
	                              "per transaction is unsupported.  Please "
	                              "try again.");
	b->max_messages_reply = xstrdup("421 4.7.0 [TSS04] Messages "
	                                "temporarily deferred due to unexpected "
	                                "volume");
	b->tempfail_at = PH_DOT;
	b->tempfail_reply = xstrdup("421 4.7.0 Rate limited, try again later");
	b->strict = 1;
	b->pipelining = b->eightbitmime = b->smtputf8 = b->chunking = 1;
	b->dsn = b->starttls = b->enhancedstatuscodes = 1;
	b->size = 52428800;
	return b;
}

void behaviour_free(struct behaviour *b)
{
	if (b == NULL)
		return;
	for (size_t i = 0; i < b->n_rules; i++) {
		if (b->rules[i].substr == NULL)
			regfree(&b->rules[i].re);
		free(b->rules[i].substr);
		free(b->rules[i].reply);
	}
	free(b->rules);
	for (int i = 0; i < PH_COUNT; i++)
		free(b->replies[i]);
	free(b->hostname);
	free(b->max_rcpts_reply);
	free(b->one_domain_reply);
	free(b->max_messages_reply);
	free(b->tempfail_reply);
	for (size_t i = 0; i < b->n_peers; i++) {
		free(b->peers[i].ip);
		behaviour_free(b->peers[i].beh);
	}
	free(b->peers);
	free(b);
}

/* merge - lay the keys of over onto eff, objects merged one level deep */
static void merge(json_t *eff, json_t *over)
{
	const char *k;
	json_t *v, *cur;

	json_object_foreach(over, k, v) {
		cur = json_object_get(eff, k);
		if (json_is_object(cur) && json_is_object(v))
			json_object_update(cur, v);
		else
			json_object_set(eff, k, v);
	}
}

/* behaviour_parse - the keys of eff (no "listen", no "peers") */
static struct behaviour *behaviour_parse(json_t *eff, char *err, size_t errlen)
{
	struct behaviour *b = behaviour_new();
	const char *k;
	json_t *v;

	json_object_foreach(eff, k, v) {
		if (parse_key(b, k, v, err, errlen) < 0) {
			behaviour_free(b);
			return NULL;
		}
	}
	return b;
}

/* peers_parse - one behaviour per "peers" entry: eff with its overrides */
static int peers_parse(struct behaviour *b, json_t *eff, json_t *peers,
                       char *err, size_t errlen)
{
	const char *ip;
	json_t *over, *one;

	if (!json_is_object(peers))
		return fail(err, errlen, "\"peers\": expected an object%s%s", "", NULL);
	b->peers = xcalloc(json_object_size(peers) + 1, sizeof(*b->peers));
	json_object_foreach(peers, ip, over) {
		if (!json_is_object(over))
			return fail(err, errlen, "\"peers\".\"%s\": expected an "
			            "object%s", ip, NULL);
		one = json_deep_copy(eff);
		merge(one, over);
		b->peers[b->n_peers].beh = behaviour_parse(one, err, errlen);
		json_decref(one);
		if (b->peers[b->n_peers].beh == NULL)
			return -1;
		b->peers[b->n_peers++].ip = xstrdup(ip);
	}
	return 0;
}

/* behaviour_for - the behaviour of listener l under config root */
static struct behaviour *behaviour_for(json_t *root, struct listener *l,
                                       char *err, size_t errlen)
{
	json_t *eff = json_deep_copy(root), *over, *lst, *peers;
	struct behaviour *b;

	lst = json_object_get(root, "listen");
	json_object_del(eff, "listen");
	if ((over = json_object_get(lst, l->ip)) && json_is_object(over))
		merge(eff, over);
	if ((over = json_object_get(lst, l->addr)) && json_is_object(over))
		merge(eff, over);
	peers = json_incref(json_object_get(eff, "peers"));
	json_object_del(eff, "peers");
	b = behaviour_parse(eff, err, errlen);
	if (b && peers && peers_parse(b, eff, peers, err, errlen) < 0) {
		behaviour_free(b);
		b = NULL;
	}
	json_decref(peers);
	json_decref(eff);
	return b;
}

/* check_listen - the "listen" key must map addresses to objects */
static int check_listen(json_t *lst, char *err, size_t errlen)
{
	const char *k;
	json_t *v;

	if (lst == NULL)
		return 0;
	if (!json_is_object(lst))
		return fail(err, errlen, "\"listen\": expected an object%s%s", "",
		            NULL);
	json_object_foreach(lst, k, v)
		if (!json_is_object(v))
			return fail(err, errlen, "\"listen\".\"%s\": expected an "
			            "object%s", k, NULL);
	return 0;
}

/* config_load_file - (re)build every listener's behaviour; all or nothing */
int config_load_file(struct sink *sk, char *err, size_t errlen)
{
	struct behaviour **fresh = xcalloc(sk->n_listeners, sizeof(*fresh));
	json_t *root = NULL;
	json_error_t jerr;
	int rc = -1;
	char sub[400];
	size_t i;

	if (sk->config_path == NULL)
		root = json_object();
	else if ((root = json_load_file(sk->config_path, 0, &jerr)) == NULL) {
		snprintf(err, errlen, "%s:%d:%d: %s", sk->config_path, jerr.line,
		         jerr.column, jerr.text);
		goto out;
	}
	if (!json_is_object(root)) {
		snprintf(err, errlen, "%s: expected a JSON object", sk->config_path);
		goto out;
	}
	if (check_listen(json_object_get(root, "listen"), sub, sizeof(sub)) < 0) {
		snprintf(err, errlen, "%s: %s", sk->config_path, sub);
		goto out;
	}
	for (i = 0; i < sk->n_listeners; i++) {
		fresh[i] = behaviour_for(root, &sk->listeners[i], sub, sizeof(sub));
		if (fresh[i] == NULL) {
			snprintf(err, errlen, "%s: %s (for %s)", sk->config_path, sub,
			         sk->listeners[i].addr);
			goto out;
		}
	}
	for (i = 0; i < sk->n_listeners; i++) {
		behaviour_free(sk->listeners[i].beh);
		sk->listeners[i].beh = fresh[i];
		sk->listeners[i].tempfail_count = 0; /* count from the new config */
		fresh[i] = NULL;
	}
	rc = 0;
out:
	for (i = 0; i < sk->n_listeners; i++)
		behaviour_free(fresh[i]);
	free(fresh);
	json_decref(root);
	return rc;
}
