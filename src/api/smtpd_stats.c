/*
 * smtpd_stats.c - what the submission server counts for /metrics:
 * messages and recipients accepted, and every 4xx/5xx reply it sends by
 * reason. The reason comes from the reply's code and enhanced status
 * code (RFC 3463), which already classify it, so a new refusal anywhere
 * in the server is counted without touching this file. Sessions open
 * and total come from the listeners' own counters.
 * Loop thread.
 */
#include <string.h>

#include <event2/buffer.h>

#include "api/api.h"
#include "api/smtpd_internal.h"

const char *const smtpd_reject_names[SMTPD_REJECT_REASONS] = {
	"connections", "auth_failed", "auth_unavailable", "auth_required",
	"tls_required", "rate_limited", "relay_denied", "sender_denied",
	"suppressed", "too_many_recipients", "size", "bad_data", "storage",
	"sequence", "syntax", "timeout", "too_many_errors", "shutdown", "other"
};

/* reply prefix -> reason; the first match wins, so specific first */
static const struct {
	const char *prefix;
	enum smtpd_reject reason;
} reject_map[] = {
	{ "535", SMTPD_REJ_AUTH_FAILED },
	{ "454 4.7.0", SMTPD_REJ_AUTH_UNAVAILABLE },
	{ "530", SMTPD_REJ_AUTH_REQUIRED },
	{ "538", SMTPD_REJ_TLS_REQUIRED },
	{ "451 4.7.1", SMTPD_REJ_RATE_LIMITED },
	{ "550 5.7.1", SMTPD_REJ_RELAY_DENIED },
	{ "553 5.7.1", SMTPD_REJ_SENDER_DENIED },
	{ "550 5.1.1", SMTPD_REJ_SUPPRESSED },
	{ "452 4.5.3", SMTPD_REJ_TOO_MANY_RCPTS },
	{ "552", SMTPD_REJ_SIZE },
	{ "554 5.6.", SMTPD_REJ_BAD_DATA },
	{ "451 4.3.", SMTPD_REJ_STORAGE },
	{ "452 4.3.", SMTPD_REJ_STORAGE },
	{ "503", SMTPD_REJ_SEQUENCE },
	{ "554 5.5.1", SMTPD_REJ_SEQUENCE },
	{ "421 4.4.2", SMTPD_REJ_TIMEOUT },
	{ "421 4.7.0", SMTPD_REJ_TOO_MANY_ERRORS },
	{ "421 4.3.2", SMTPD_REJ_SHUTDOWN },
	{ "5", SMTPD_REJ_SYNTAX },
};

enum smtpd_reject
smtpd_reject_of(const char *reply, size_t len)
{
	size_t i, n;

	for (i = 0; i < sizeof(reject_map) / sizeof(reject_map[0]); i++) {
		n = strlen(reject_map[i].prefix);
		if (len >= n && memcmp(reply, reject_map[i].prefix, n) == 0)
			return reject_map[i].reason;
	}
	return SMTPD_REJ_OTHER;
}

void
smtpd_stats_reply(struct smtpd *sd, struct evbuffer *out, size_t off)
{
	struct evbuffer_ptr p;
	char head[12];
	ev_ssize_t n;

	if (sd == NULL || evbuffer_ptr_set(out, &p, off, EVBUFFER_PTR_SET) < 0 ||
	    (n = evbuffer_copyout_from(out, &p, head, sizeof(head))) < 1 ||
	    (head[0] != '4' && head[0] != '5'))
		return;
	sd->stats.rejected[smtpd_reject_of(head, (size_t)n)]++;
}

void
smtpd_stats_get(const struct smtpd *sd, struct smtpd_stats *out)
{
	*out = sd->stats;
	out->sessions_total = sd->next_sid;
	out->sessions_open = 0;
	for (size_t i = 0; i < sd->nls; i++)
		out->sessions_open += sd->ls[i].nconn;
}
