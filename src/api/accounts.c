/*
 * accounts.c - hosting-customer accounts of the relay listeners: the
 * accounts file (one account per line, see docs/submission.md), password
 * check with libcrypt (yescrypt, SHA-512, ... whatever crypt(3) knows),
 * allowed senders, and hourly message/recipient budgets.
 *
 * Loaded at start and on SIGHUP (smtpd_reload); a reload keeps the hourly
 * usage of accounts that still exist. Loop thread only, except
 * accounts_hash_check(), which the password thread runs (smtpd_crypt.c):
 * crypt(3) is slow on purpose. A successful check is remembered as a salted
 * SHA-256 of the password: the next AUTH with the same password costs no
 * crypt.
 */
#include "api/smtpd_internal.h"

#include <crypt.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "core/core.h"

#define HOUR_MS 3600000ull

struct accounts {
	struct account *v; /* sorted by user */
	size_t n;
	unsigned char salt[16];
};

/* digest - salted SHA-256 of a password (the verified-password cache) */
static void
digest(const struct accounts *as, const char *pass, unsigned char out[32])
{
	unsigned int len = 32;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	EVP_DigestUpdate(ctx, as->salt, sizeof(as->salt));
	EVP_DigestUpdate(ctx, pass, strlen(pass));
	EVP_DigestFinal_ex(ctx, out, &len);
	EVP_MD_CTX_free(ctx);
}

static void
account_clear(struct account *a)
{
	size_t i;

	free(a->user);
	free(a->hash);
	free(a->tenant);
	for (i = 0; i < a->n_senders; i++)
		free(a->senders[i]);
	free(a->senders);
}

/* set_limit - "key=number" into *out; 0 ok, -1 bad number */
static int
set_limit(const char *v, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(v, &end, 10);
	return (!isdigit((unsigned char)*v) || *end || errno) ? -1 : 0;
}

/* add_senders - "example.com,@example.org,bob@x.y,*" */
static void
add_senders(struct account *a, const char *v)
{
	char *copy = xstrdup(v), *tok, *save = NULL;

	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *s = xstrdup(tok[0] == '@' ? tok + 1 : tok);
		char *p;
		for (p = strchr(s, '@') ? strchr(s, '@') : s; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		a->senders = xrealloc(a->senders, (a->n_senders + 1) * sizeof(char *));
		a->senders[a->n_senders++] = s;
	}
	free(copy);
}

/* parse_option - one "key=value" of an account line */
static const char *
parse_option(struct account *a, char *opt)
{
	char *eq = strchr(opt, '=');

	if (eq == NULL)
		return "option without '='";
	*eq++ = '\0';
	if (strcmp(opt, "tenant") == 0) {
		free(a->tenant);
		a->tenant = xstrdup(eq);
	} else if (strcmp(opt, "senders") == 0) {
		add_senders(a, eq);
	} else if (strcmp(opt, "messages_per_hour") == 0) {
		return set_limit(eq, &a->msgs_per_hour) ? "bad number" : NULL;
	} else if (strcmp(opt, "recipients_per_hour") == 0) {
		return set_limit(eq, &a->rcpts_per_hour) ? "bad number" : NULL;
	} else if (strcmp(opt, "recipients_per_message") == 0) {
		return set_limit(eq, &a->rcpts_per_msg) ? "bad number" : NULL;
	} else {
		return "unknown option (tenant, senders, messages_per_hour, "
		       "recipients_per_hour, recipients_per_message)";
	}
	return NULL;
}

/* parse_line - "user hash [key=value ...]"; NULL ok, or why not */
static const char *
parse_line(char *line, struct account *a)
{
	char *tok, *save = NULL;
	const char *why;

	memset(a, 0, sizeof(*a));
	a->user = xstrdup(strtok_r(line, " \t", &save));
	if ((tok = strtok_r(NULL, " \t", &save)) == NULL)
		return "missing password hash";
	if (tok[0] != '$')
		return "password hash is not a crypt(3) string ($y$..., $6$...)";
	a->hash = xstrdup(tok);
	while ((tok = strtok_r(NULL, " \t", &save)) != NULL)
		if ((why = parse_option(a, tok)) != NULL)
			return why;
	if (a->tenant == NULL)
		a->tenant = xstrdup(a->user);
	return NULL;
}

static int
account_cmp(const void *x, const void *y)
{
	return strcmp(((const struct account *)x)->user,
	              ((const struct account *)y)->user);
}

/* read_file - every account line of fp into as; 0 ok, -1 with err */
static int
read_file(FILE *fp, const char *path, struct accounts *as, char *err,
          size_t errlen)
{
	char line[4096];
	const char *why;
	int lineno = 0;

	while (fgets(line, sizeof(line), fp)) {
		char *p = line;
		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '\0' || *p == '#')
			continue;
		as->v = xrealloc(as->v, (as->n + 1) * sizeof(*as->v));
		if ((why = parse_line(p, &as->v[as->n])) != NULL) {
			snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
			account_clear(&as->v[as->n]);
			return -1;
		}
		as->n++;
	}
	return 0;
}

struct accounts *
accounts_load(const char *path, const struct accounts *old, char *err,
              size_t errlen)
{
	struct accounts *as = xcalloc(1, sizeof(*as));
	FILE *fp;
	size_t i;

	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "cannot open accounts file %s: %s", path,
		         strerror(errno));
		free(as);
		return NULL;
	}
	if (read_file(fp, path, as, err, errlen) < 0) {
		fclose(fp);
		accounts_free(as);
		return NULL;
	}
	fclose(fp);
	qsort(as->v, as->n, sizeof(*as->v), account_cmp);
	for (i = 0; i + 1 < as->n; i++)
		if (strcmp(as->v[i].user, as->v[i + 1].user) == 0) {
			snprintf(err, errlen, "%s: account '%s' listed twice", path, as->v[i].user);
			accounts_free(as);
			return NULL;
		}
	if (RAND_bytes(as->salt, sizeof(as->salt)) != 1)
		memcpy(as->salt, &as, sizeof(as) < 16 ? sizeof(as) : 16);
	for (i = 0; old && i < as->n; i++) { /* keep the hour's usage */
		const struct account *o = accounts_find((struct accounts *)old, as->v[i].user);
		if (o) {
			as->v[i].window_ms = o->window_ms;
			as->v[i].msgs_used = o->msgs_used;
			as->v[i].rcpts_used = o->rcpts_used;
		}
	}
	return as;
}

void
accounts_free(struct accounts *as)
{
	size_t i;

	if (as == NULL)
		return;
	for (i = 0; i < as->n; i++)
		account_clear(&as->v[i]);
	free(as->v);
	OPENSSL_cleanse(as->salt, sizeof(as->salt));
	free(as);
}

size_t
accounts_count(const struct accounts *as)
{
	return as ? as->n : 0;
}

struct account *
accounts_find(struct accounts *as, const char *user)
{
	struct account key;

	if (as == NULL || user == NULL)
		return NULL;
	key.user = (char *)user;
	return bsearch(&key, as->v, as->n, sizeof(*as->v), account_cmp);
}

int
accounts_hash_check(const char *hash, const char *pass, struct crypt_data *cd)
{
	const char *h = crypt_r(pass, hash, cd);

	return h && h[0] != '*' && strlen(h) == strlen(hash) &&
	       CRYPTO_memcmp(h, hash, strlen(h)) == 0;
}

struct account *
accounts_verify_cached(struct accounts *as, const char *user, const char *pass)
{
	struct account *a = accounts_find(as, user);
	unsigned char d[32];

	if (a == NULL || !a->have_ok)
		return NULL;
	digest(as, pass, d);
	return CRYPTO_memcmp(d, a->ok_digest, 32) == 0 ? a : NULL;
}

const char *
accounts_check_hash(const struct accounts *as, const char *user)
{
	struct account *a = accounts_find((struct accounts *)as, user);

	if (a)
		return a->hash;
	/* an unknown user costs one crypt of a real account's hash, so that
	 * timing does not tell which user names exist */
	return as && as->n ? as->v[0].hash : NULL;
}

struct account *
accounts_remember(struct accounts *as, const char *user, const char *hash,
                  const char *pass)
{
	struct account *a = accounts_find(as, user);

	if (a == NULL || strcmp(a->hash, hash) != 0)
		return NULL; /* reloaded meanwhile: the user or the password changed */
	digest(as, pass, a->ok_digest);
	a->have_ok = 1;
	return a;
}

struct account *
accounts_verify(struct accounts *as, const char *user, const char *pass)
{
	struct account *a = accounts_verify_cached(as, user, pass);
	struct crypt_data *cd;
	int ok;

	if (a != NULL || (a = accounts_find(as, user)) == NULL)
		return a;
	cd = xcalloc(1, sizeof(*cd));
	ok = accounts_hash_check(a->hash, pass, cd);
	OPENSSL_cleanse(cd, sizeof(*cd));
	free(cd);
	return ok ? accounts_remember(as, user, a->hash, pass) : NULL;
}

int
account_sender_ok(const struct account *a, const char *sender)
{
	const char *at = strrchr(sender, '@');
	size_t i;

	for (i = 0; i < a->n_senders; i++) {
		const char *s = a->senders[i];
		if (strcmp(s, "*") == 0)
			return 1;
		if (strchr(s, '@') ? strcasecmp(s, sender) == 0
		                   : (at && strcmp(s, at + 1) == 0))
			return 1;
	}
	return 0;
}

/* roll - start a new hourly window when the old one is over */
static void
roll(struct account *a, uint64_t now)
{
	if (now - a->window_ms >= HOUR_MS || now < a->window_ms) {
		a->window_ms = now;
		a->msgs_used = a->rcpts_used = 0;
	}
}

int
account_msg_allowed(struct account *a, uint64_t now)
{
	roll(a, now);
	return a->msgs_per_hour == 0 || a->msgs_used < a->msgs_per_hour;
}

int
account_rcpt_allowed(struct account *a, uint64_t now, uint64_t pending)
{
	roll(a, now);
	return a->rcpts_per_hour == 0 || a->rcpts_used + pending < a->rcpts_per_hour;
}

void
account_charge(struct account *a, uint64_t now, uint64_t rcpts)
{
	roll(a, now);
	a->msgs_used++;
	a->rcpts_used += rcpts;
}
