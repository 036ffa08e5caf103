/*
 * bounce_policy.c - the pure decisions around bounces: who gets a DSN
 * (RFC 3461 NOTIFY, never the null sender), when a delay warning is due,
 * and which hard bounces suppress an address for how long.
 *
 * No state, no I/O; any thread.
 */
#include "bounce/bounce_internal.h"

#include <ctype.h>
#include <string.h>

#define DAY_MS (24ULL * 3600 * 1000)

int
bounce_null_sender(const char *s)
{
	if (s == NULL)
		return 1;
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '<' && s[1] == '>')
		s += 2;
	while (*s == ' ' || *s == '\t')
		s++;
	return *s == '\0';
}

int
bounce_should_dsn(const char *sender, unsigned notify,
                  enum bounce_action action, int delay_by_default)
{
	if (bounce_null_sender(sender))
		return 0; /* no bounce loops: never a DSN about a DSN */
	if (notify & BOUNCE_NOTIFY_NEVER)
		return 0;
	switch (action) {
	case BOUNCE_ACTION_FAILED:
		return notify == 0 || (notify & BOUNCE_NOTIFY_FAILURE) != 0;
	case BOUNCE_ACTION_DELAYED:
		if (notify == 0)
			return delay_by_default != 0;
		return (notify & BOUNCE_NOTIFY_DELAY) != 0;
	case BOUNCE_ACTION_DELIVERED:
	case BOUNCE_ACTION_RELAYED:
	case BOUNCE_ACTION_EXPANDED:
		return (notify & BOUNCE_NOTIFY_SUCCESS) != 0;
	}
	return 0;
}

int
bounce_delay_warning_due(uint64_t submit_ms, uint64_t last_warn_ms,
                         uint64_t now_ms, uint64_t delay_ms,
                         uint64_t interval_ms)
{
	if (delay_ms == 0)
		return 0; /* warnings off */
	if (now_ms < submit_ms || now_ms - submit_ms < delay_ms)
		return 0;
	if (last_warn_ms == 0)
		return 1;
	if (interval_ms == 0 || now_ms < last_warn_ms)
		return 0;
	return now_ms - last_warn_ms >= interval_ms;
}

void
bounce_suppress_defaults(struct bounce_suppress_policy *p)
{
	p->bad_mailbox_ms = 30 * DAY_MS;
	p->bad_domain_ms = 3 * DAY_MS;
	p->inactive_mailbox_ms = 30 * DAY_MS;
}

uint64_t
bounce_suppress_for(const struct bounce_suppress_policy *p,
                    const struct bounce_class *c)
{
	if (p == NULL || c == NULL || !c->permanent)
		return 0;
	switch (c->cat) {
	case BOUNCE_CAT_BAD_MAILBOX:
		return p->bad_mailbox_ms;
	case BOUNCE_CAT_BAD_DOMAIN:
		return p->bad_domain_ms;
	case BOUNCE_CAT_INACTIVE_MAILBOX:
		return p->inactive_mailbox_ms;
	default:
		return 0; /* sender-, site- or content-level: not the address */
	}
}

int
bounce_suppress_key(const char *address, char *out, size_t outlen)
{
	const char *s = address, *e;
	size_t len, i;

	if (s == NULL || outlen == 0)
		return -1;
	while (*s == ' ' || *s == '\t' || *s == '<')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '>'))
		e--;
	len = (size_t)(e - s);
	if (len == 0 || len >= outlen || memchr(s, '@', len) == NULL ||
	    s[0] == '@' || e[-1] == '@')
		return -1;
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x21 || ch == 0x7f)
			return -1; /* controls or spaces: not an address */
		out[i] = (char)tolower(ch);
	}
	out[len] = '\0';
	return 0;
}
