/*
 * dsnspec.c - the DSN test-case format: "key: value" lines, '#' comments.
 *   reporting-mta, sender, envid, queue-id, message-id: strings
 *   ret: full | hdrs | unset        arrival, date: seconds since the epoch
 *   max-return: bytes               original: file (relative to the case)
 *   rcpt: address|orcpt|action|status|remote-mta|code|enhanced|
 *         last-attempt|retry-until|text     ('-' = none; text may hold '|')
 * Values may use \r \n \t \\ and \xHH escapes (to feed hostile bytes).
 */
#include "dsnspec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static char *
keep(struct dsnspec *s, const char *v, size_t len)
{
	char *o = malloc(len + 1), *p = o;

	if (o == NULL)
		abort();
	for (size_t i = 0; i < len; i++) {
		if (v[i] != '\\' || i + 1 >= len) {
			*p++ = v[i];
			continue;
		}
		i++;
		if (v[i] == 'r') *p++ = '\r';
		else if (v[i] == 'n') *p++ = '\n';
		else if (v[i] == 't') *p++ = '\t';
		else if (v[i] == 'x' && i + 2 < len) {
			char hex[3] = { v[i + 1], v[i + 2], 0 };
			*p++ = (char)strtol(hex, NULL, 16);
			i += 2;
		} else *p++ = v[i];
	}
	*p = '\0';
	if (s->n_strings < sizeof(s->strings) / sizeof(s->strings[0]))
		s->strings[s->n_strings++] = o;
	return o;
}

static const char *
opt(struct dsnspec *s, const char *v, size_t len)
{
	if (len == 1 && v[0] == '-')
		return NULL;
	return keep(s, v, len);
}

static int
parse_action(const char *v, enum bounce_action *a)
{
	static const char *const names[] = { "failed", "delayed", "delivered",
	                                     "relayed", "expanded" };
	for (int i = 0; i < 5; i++)
		if (strcmp(v, names[i]) == 0) {
			*a = (enum bounce_action)i;
			return 0;
		}
	return -1;
}

/* parse_rcpt - the ten '|'-separated fields; the text keeps any '|' */
static int
parse_rcpt(struct dsnspec *s, const char *v)
{
	const char *f[10];
	size_t l[10];
	struct bounce_dsn_rcpt *r;
	char act[32];

	if (s->dsn.n_rcpts >= DSNSPEC_MAX_RCPTS)
		return -1;
	for (int i = 0; i < 10; i++) {
		const char *bar = i < 9 ? strchr(v, '|') : NULL;
		if (i < 9 && bar == NULL)
			return -1;
		f[i] = v;
		l[i] = bar ? (size_t)(bar - v) : strlen(v);
		v = bar ? bar + 1 : v;
	}
	r = &s->rcpts[s->dsn.n_rcpts++];
	r->address = keep(s, f[0], l[0]);
	r->orcpt = opt(s, f[1], l[1]);
	snprintf(act, sizeof(act), "%.*s", (int)l[2], f[2]);
	if (parse_action(act, &r->action) != 0)
		return -1;
	r->status = opt(s, f[3], l[3]);
	r->remote_mta = opt(s, f[4], l[4]);
	r->code = atoi(f[5]);
	r->enhanced = opt(s, f[6], l[6]);
	r->last_attempt_ms = strtoull(f[7], NULL, 10) * 1000;
	r->retry_until_ms = strtoull(f[8], NULL, 10) * 1000;
	r->text = opt(s, f[9], l[9]);
	return 0;
}

static int
parse_kv(struct dsnspec *s, const char *k, const char *v, const char *dir)
{
	struct bounce_dsn *d = &s->dsn;

	if (strcmp(k, "reporting-mta") == 0) d->reporting_mta = keep(s, v, strlen(v));
	else if (strcmp(k, "sender") == 0) d->sender = keep(s, v, strlen(v));
	else if (strcmp(k, "envid") == 0) d->envid = keep(s, v, strlen(v));
	else if (strcmp(k, "queue-id") == 0) d->queue_id = keep(s, v, strlen(v));
	else if (strcmp(k, "message-id") == 0) d->message_id = keep(s, v, strlen(v));
	else if (strcmp(k, "arrival") == 0) d->arrival_ms = strtoull(v, NULL, 10) * 1000;
	else if (strcmp(k, "date") == 0) d->date_ms = strtoull(v, NULL, 10) * 1000;
	else if (strcmp(k, "max-return") == 0) d->max_return = strtoull(v, NULL, 10);
	else if (strcmp(k, "fail-read-at") == 0) s->fail_read_at = atoi(v);
	else if (strcmp(k, "ret") == 0)
		d->ret = strcmp(v, "full") == 0 ? BOUNCE_RET_FULL :
		         strcmp(v, "hdrs") == 0 ? BOUNCE_RET_HDRS : BOUNCE_RET_UNSET;
	else if (strcmp(k, "original") == 0) {
		int n = snprintf(s->original, sizeof(s->original), "%s/%s", dir, v);
		if (n < 0 || (size_t)n >= sizeof(s->original))
			return -1;
	} else if (strcmp(k, "rcpt") == 0)
		return parse_rcpt(s, v);
	else
		return -1;
	return 0;
}

int
dsnspec_load(struct dsnspec *s, const char *path, char *err, size_t errlen)
{
	char line[8192], dir[1024];
	const char *slash = strrchr(path, '/');
	unsigned lineno = 0;
	FILE *f = fopen(path, "r");

	memset(s, 0, sizeof(*s));
	s->fail_read_at = -1;
	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) : 1,
	         slash ? path : ".");
	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		char *colon, *v;
		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		colon = strchr(line, ':');
		if (colon == NULL)
			goto bad;
		*colon = '\0';
		for (v = colon + 1; *v == ' '; v++)
			;
		if (parse_kv(s, line, v, dir) != 0)
			goto bad;
	}
	fclose(f);
	s->dsn.rcpts = s->rcpts;
	return 0;
bad:
	snprintf(err, errlen, "%s:%u: bad line", path, lineno);
	fclose(f);
	return -1;
}

static long
spec_read(void *arg, void *buf, size_t len)
{
	struct dsnspec *s = arg;
	size_t n;

	if (s->fail_read_at >= 0 && s->read_total >= s->fail_read_at)
		return -1;
	n = fread(buf, 1, len < 7 ? len : 7 + (len - 7) / 3, s->orig);
	if (n == 0 && ferror(s->orig))
		return -1;
	s->read_total += (long)n;
	return (long)n; /* odd chunk sizes on purpose */
}

int
dsnspec_open(struct dsnspec *s)
{
	long size;

	if (s->original[0] == '\0')
		return 0;
	s->orig = fopen(s->original, "rb");
	if (s->orig == NULL)
		return -1;
	fseek(s->orig, 0, SEEK_END);
	size = ftell(s->orig);
	fseek(s->orig, 0, SEEK_SET);
	s->dsn.original_size = size > 0 ? (uint64_t)size : 0;
	s->dsn.read = spec_read;
	s->dsn.read_arg = s;
	return 0;
}

void
dsnspec_free(struct dsnspec *s)
{
	for (size_t i = 0; i < s->n_strings; i++)
		free(s->strings[i]);
	s->n_strings = 0;
	if (s->orig)
		fclose(s->orig);
	s->orig = NULL;
}
