/*
 * util.c - memory, clocks and the parsing of operator values.
 *
 * Out-of-memory aborts: the daemon cannot keep its promises without memory,
 * and a half-handled allocation failure is worse than a clean restart.
 * Durations and sizes are parsed here and nowhere else.
 */
#include "core/core.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static void
oom(size_t n)
{
	log_errx("-", "out of memory allocating %zu bytes", n);
	abort();
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		oom(n);
	return p;
}

void *
xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
	if (p == NULL)
		oom(nmemb * size);
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL)
		oom(n);
	return q;
}

int
list_has(const char *list, const char *item)
{
	size_t n = strlen(item);
	const char *e;

	for (; list && *list; list = *e ? e + 1 : e) {
		e = strchr(list, ',');
		e = e ? e : list + strlen(list);
		if ((size_t)(e - list) == n && strncasecmp(list, item, n) == 0)
			return 1;
	}
	return 0;
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	char *d = xmalloc(n + 1);
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

static uint64_t
clock_ms(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t now_ms(void) { return clock_ms(CLOCK_REALTIME); }
uint64_t mono_ms(void) { return clock_ms(CLOCK_MONOTONIC); }

/* parse_number - a non-negative decimal with an optional suffix left in *end */
static int
parse_number(const char *s, uint64_t *out, const char **end)
{
	char *e;
	unsigned long long v;

	while (isspace((unsigned char)*s))
		s++;
	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &e, 10);
	if (errno == ERANGE)
		return -1;
	*out = v;
	*end = e;
	return 0;
}

static int
only_space(const char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	return *s == '\0';
}

/* mul_ok - v * m without overflow */
static int
mul_ok(uint64_t v, uint64_t m, uint64_t *out)
{
	if (m != 0 && v > UINT64_MAX / m)
		return -1;
	*out = v * m;
	return 0;
}

int
parse_duration_ms(const char *s, uint64_t *out_ms)
{
	static const struct { const char *sfx; uint64_t ms; } units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
		{ "d", 86400000 }, { "w", 604800000 }, { "", 1000 },
	};
	const char *end;
	uint64_t v;
	size_t i, n;

	if (s == NULL || parse_number(s, &v, &end) < 0)
		return -1;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		n = strlen(units[i].sfx);
		if (strncasecmp(end, units[i].sfx, n) == 0 && only_space(end + n))
			return mul_ok(v, units[i].ms, out_ms);
	}
	return -1;
}

int
parse_size(const char *s, uint64_t *out_bytes)
{
	const char *end;
	uint64_t v, m = 1;

	if (s == NULL || parse_number(s, &v, &end) < 0)
		return -1;
	switch (toupper((unsigned char)*end)) {
	case 'K': m = 1024ull; end++; break;
	case 'M': m = 1024ull * 1024; end++; break;
	case 'G': m = 1024ull * 1024 * 1024; end++; break;
	case 'T': m = 1024ull * 1024 * 1024 * 1024; end++; break;
	default: break;
	}
	if (m > 1 && toupper((unsigned char)*end) == 'B')
		end++;
	if (!only_space(end))
		return -1;
	return mul_ok(v, m, out_bytes);
}

int
parse_bool(const char *s, int *out)
{
	static const char *yes[] = { "yes", "true", "on", "1" };
	static const char *no[] = { "no", "false", "off", "0" };
	size_t i;

	if (s == NULL)
		return -1;
	for (i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) { *out = 1; return 0; }
		if (strcasecmp(s, no[i]) == 0) { *out = 0; return 0; }
	}
	return -1;
}

int
parse_hostport(const char *s, char *host, size_t hostlen, int *port,
               int default_port)
{
	const char *p, *hend, *colon;
	char *e;
	long v;
	size_t n;

	if (s == NULL || *s == '\0')
		return -1;
	if (*s == '[') {
		hend = strchr(s, ']');
		if (hend == NULL)
			return -1;
		p = s + 1;
		colon = hend[1] == ':' ? hend + 1 : NULL;
		if (hend[1] != '\0' && colon == NULL)
			return -1;
	} else {
		p = s;
		colon = strrchr(s, ':');
		if (colon != NULL && strchr(s, ':') != colon)
			colon = NULL; /* bare IPv6 literal, no port */
		hend = colon ? colon : s + strlen(s);
	}
	n = (size_t)(hend - p);
	if (n == 0 || n >= hostlen)
		return -1;
	memcpy(host, p, n);
	host[n] = '\0';
	*port = default_port;
	if (colon != NULL) {
		errno = 0;
		v = strtol(colon + 1, &e, 10);
		if (errno || *e != '\0' || e == colon + 1 || v < 0 || v > 65535)
			return -1;
		*port = (int)v;
	}
	return 0;
}
