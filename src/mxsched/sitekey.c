/*
 * sitekey.c - the site key of a resolved domain (its MX host set) and
 * the provider table (MX host suffix -> provider and its default shape).
 *
 * Pure data code, no I/O except provider_table_load() (start-up and
 * reload). The key format and the matching rule are documented in
 * sitekey.h; the file format in contrib/providers.conf.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "mxsched/resolve.h"
#include "mxsched/sitekey.h"

struct provider {
	char *name;
	char **suffixes;
	size_t n_suffixes;
	char **keys, **values;
	size_t n_opts;
};

struct provider_table {
	struct provider **p;
	size_t n;
};

struct khost {
	const char *name;
	unsigned pref;
};

/* ---- site keys ---- */

static int
khost_by_name(const void *a, const void *b)
{
	const struct khost *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : (x->pref > y->pref) - (x->pref < y->pref);
}

static int
khost_by_pref(const void *a, const void *b)
{
	const struct khost *x = a, *y = b;

	if (x->pref != y->pref)
		return x->pref < y->pref ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* sitekey_build - dedupe (lowest preference wins), order, format */
static char *
sitekey_build(struct khost *h, size_t n)
{
	size_t i, k = 0, len = 1;
	char *out, *p;

	qsort(h, n, sizeof(*h), khost_by_name);
	for (i = 0; i < n; i++)
		if (k == 0 || strcmp(h[k - 1].name, h[i].name) != 0)
			h[k++] = h[i];
	qsort(h, k, sizeof(*h), khost_by_pref);
	for (i = 0; i < k; i++)
		len += strlen(h[i].name) + 13;
	p = out = xmalloc(len);
	*p = '\0';
	for (i = 0; i < k; i++) {
		if (i == 0 || h[i].pref != h[i - 1].pref)
			p += sprintf(p, "%s%u:", i ? ";" : "", h[i].pref);
		else
			*p++ = ',';
		p += sprintf(p, "%s", h[i].name);
	}
	return out;
}

char *
sitekey_make(const char *const *names, const unsigned *prefs, size_t n)
{
	struct khost *h = xcalloc(n ? n : 1, sizeof(*h));
	char *key;

	for (size_t i = 0; i < n; i++) {
		h[i].name = names[i];
		h[i].pref = prefs[i];
	}
	key = sitekey_build(h, n);
	free(h);
	return key;
}

char *
sitekey_from_mx(const struct resolve_mx *mx, size_t n)
{
	struct khost *h = xcalloc(n ? n : 1, sizeof(*h));
	char *key;

	for (size_t i = 0; i < n; i++) {
		h[i].name = mx[i].name;
		h[i].pref = mx[i].pref;
	}
	key = sitekey_build(h, n);
	free(h);
	return key;
}

uint64_t
sitekey_hash(const char *key)
{
	uint64_t h = 14695981039346656037ull;

	while (*key)
		h = (h ^ (unsigned char)*key++) * 1099511628211ull;
	return h;
}

/* ---- provider table ---- */

struct provider_table *
provider_table_new(void)
{
	return xcalloc(1, sizeof(struct provider_table));
}

static void
provider_free(struct provider *p)
{
	for (size_t i = 0; i < p->n_suffixes; i++)
		free(p->suffixes[i]);
	for (size_t i = 0; i < p->n_opts; i++) {
		free(p->keys[i]);
		free(p->values[i]);
	}
	free(p->suffixes);
	free(p->keys);
	free(p->values);
	free(p->name);
	free(p);
}

void
provider_table_free(struct provider_table *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n; i++)
		provider_free(t->p[i]);
	free(t->p);
	free(t);
}

size_t
provider_table_count(const struct provider_table *t)
{
	return t->n;
}

static struct provider *
provider_get(struct provider_table *t, const char *name)
{
	struct provider *p;

	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->p[i]->name, name) == 0)
			return t->p[i];
	p = xcalloc(1, sizeof(*p));
	p->name = xstrdup(name);
	t->p = xrealloc(t->p, (t->n + 1) * sizeof(*t->p));
	t->p[t->n++] = p;
	return p;
}

static int
valid_word(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
			return 0;
	return 1;
}

/* option_check - is value acceptable for a shape key? NULL if so, else
 * what is expected */
static const char *
option_check(const char *key, const char *value)
{
	static const char *counts[] = { "connections",
		"messages_per_connection", "recipients_per_transaction",
		"recipients_per_hour", NULL };
	uint64_t ms;
	char *end;

	for (int i = 0; counts[i]; i++)
		if (strcmp(key, counts[i]) == 0) {
			errno = 0;
			unsigned long long v = strtoull(value, &end, 10);
			return *value && !*end && !errno && (v > 0 || i == 3) &&
			       isdigit((unsigned char)*value) ? NULL :
			       "a positive whole number";
		}
	if (!strcmp(key, "connection_age") || !strcmp(key, "idle"))
		return parse_duration_ms(value, &ms) == 0 ? NULL :
		       "a duration such as 30s or 5m";
	if (!strcmp(key, "multi_domain"))
		return !strcmp(value, "deny") || !strcmp(value, "allow") ||
		       !strcmp(value, "learn") ? NULL : "deny, allow or learn";
	if (!strcmp(key, "tls"))
		return !strcmp(value, "none") || !strcmp(value, "may") ||
		       !strcmp(value, "encrypt") || !strcmp(value, "verify") ?
		       NULL : "none, may, encrypt or verify";
	if (!strcmp(key, "pool"))
		return valid_word(value) ? NULL : "a pool name";
	return "";
}

static int
provider_add_option(struct provider *p, const char *tok, char *err,
                    size_t errlen)
{
	const char *eq = strchr(tok, '='), *why;
	char *key;
	size_t i;

	if (eq == NULL || eq == tok) {
		snprintf(err, errlen, "\"%s\": expected KEY=VALUE", tok);
		return -1;
	}
	key = xstrndup(tok, (size_t)(eq - tok));
	why = option_check(key, eq + 1);
	if (why != NULL) {
		if (*why)
			snprintf(err, errlen, "%s: \"%s\" is not %s", key, eq + 1,
			         why);
		else
			snprintf(err, errlen, "unknown option \"%s\"", key);
		free(key);
		return -1;
	}
	for (i = 0; i < p->n_opts && strcmp(p->keys[i], key) != 0; i++)
		;
	if (i == p->n_opts) {
		p->keys = xrealloc(p->keys, (i + 1) * sizeof(*p->keys));
		p->values = xrealloc(p->values, (i + 1) * sizeof(*p->values));
		p->keys[i] = key;
		p->n_opts++;
	} else {
		free(key);
		free(p->values[i]);
	}
	p->values[i] = xstrdup(eq + 1);
	return 0;
}

static int
provider_add_suffixes(struct provider *p, char *list, char *err,
                      size_t errlen)
{
	char *save = NULL, *s, norm[256];

	for (s = strtok_r(list, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
		while (*s == '.')
			s++;
		if (resolve_name_normalize(s, norm, sizeof(norm)) != 0) {
			snprintf(err, errlen, "bad MX host suffix \"%s\"", s);
			return -1;
		}
		p->suffixes = xrealloc(p->suffixes, (p->n_suffixes + 1) *
		                       sizeof(*p->suffixes));
		p->suffixes[p->n_suffixes++] = xstrdup(norm);
	}
	return 0;
}

int
provider_table_add_line(struct provider_table *t, const char *line,
                        char *err, size_t errlen)
{
	char *copy = xstrdup(line), *save = NULL, *name, *tok, *hash;
	struct provider *p;
	int rc = -1;

	if ((hash = strchr(copy, '#')) != NULL)
		*hash = '\0';
	name = strtok_r(copy, " \t\r\n", &save);
	if (name == NULL) {
		rc = 0;
		goto done;
	}
	if (!valid_word(name)) {
		snprintf(err, errlen, "bad provider name \"%s\"", name);
		goto done;
	}
	if ((tok = strtok_r(NULL, " \t\r\n", &save)) == NULL ||
	    strchr(tok, '=') != NULL) {
		snprintf(err, errlen, "provider %s: MX host suffixes missing",
		         name);
		goto done;
	}
	p = provider_get(t, name);
	if (provider_add_suffixes(p, tok, err, errlen) != 0)
		goto done;
	while ((tok = strtok_r(NULL, " \t\r\n", &save)) != NULL)
		if (provider_add_option(p, tok, err, errlen) != 0)
			goto done;
	rc = 0;
done:
	free(copy);
	return rc;
}

struct provider_table *
provider_table_load(const char *path, char *err, size_t errlen)
{
	struct provider_table *t = NULL;
	FILE *f = fopen(path, "r");
	char line[4096], why[512];
	int lineno = 0;

	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	t = provider_table_new();
	while (fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			snprintf(err, errlen, "%s:%d: line too long", path, lineno);
			goto fail;
		}
		if (provider_table_add_line(t, line, why, sizeof(why)) != 0) {
			snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
			goto fail;
		}
	}
	fclose(f);
	return t;
fail:
	fclose(f);
	provider_table_free(t);
	return NULL;
}

static int
suffix_match(const char *host, const char *suffix)
{
	size_t h = strlen(host), s = strlen(suffix);

	if (h == s)
		return strcmp(host, suffix) == 0;
	return h > s && host[h - s - 1] == '.' &&
	       strcmp(host + h - s, suffix) == 0;
}

const struct provider *
provider_for_host(const struct provider_table *t, const char *host)
{
	const struct provider *best = NULL;
	size_t best_len = 0;

	for (size_t i = 0; t != NULL && i < t->n; i++)
		for (size_t j = 0; j < t->p[i]->n_suffixes; j++) {
			const char *s = t->p[i]->suffixes[j];

			if (strlen(s) > best_len && suffix_match(host, s)) {
				best = t->p[i];
				best_len = strlen(s);
			}
		}
	return best;
}

const struct provider *
provider_for_mx(const struct provider_table *t, const struct resolve_mx *mx,
                size_t n)
{
	const struct provider *p = NULL, *q;
	unsigned best = ~0u;
	size_t i;

	for (i = 0; i < n; i++)
		best = mx[i].pref < best ? mx[i].pref : best;
	for (i = 0; i < n; i++) {
		if (mx[i].pref != best)
			continue;
		q = provider_for_host(t, mx[i].name);
		if (q == NULL || (p != NULL && q != p))
			return NULL;
		p = q;
	}
	return p;
}

const char *
provider_name(const struct provider *p)
{
	return p->name;
}

const char *
provider_option(const struct provider *p, const char *key)
{
	for (size_t i = 0; i < p->n_opts; i++)
		if (strcmp(p->keys[i], key) == 0)
			return p->values[i];
	return NULL;
}

int
provider_option_at(const struct provider *p, size_t i, const char **key,
                   const char **value)
{
	if (i >= p->n_opts)
		return -1;
	*key = p->keys[i];
	*value = p->values[i];
	return 0;
}
