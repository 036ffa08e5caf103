/*
 * log.c - operational logging: one line per event, each carrying the id of
 * what it is about. To stderr in the foreground, to syslog as a daemon.
 * Thread-safe (the store thread logs too): a line is formatted into a
 * local buffer and written with one call.
 */
#include "core/core.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static int log_foreground = 1;
static enum log_level log_level_cur = LOG_LVL_INFO;
static char log_ident[32] = "mxbatchd";

static const char *const level_names[] = { "error", "warning", "info", "debug" };
static const int level_syslog[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

void
log_init(const char *ident, int foreground, enum log_level level)
{
	snprintf(log_ident, sizeof(log_ident), "%s", ident ? ident : "mxbatchd");
	log_foreground = foreground;
	log_level_cur = level;
	if (!foreground)
		openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void log_set_level(enum log_level level) { log_level_cur = level; }
enum log_level log_get_level(void) { return log_level_cur; }

int
log_level_parse(const char *s, enum log_level *out)
{
	size_t i;

	for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	if (strcasecmp(s, "warn") == 0) {
		*out = LOG_LVL_WARN;
		return 0;
	}
	return -1;
}

void
log_reopen(void)
{
	if (!log_foreground) {
		closelog();
		openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
	}
}

void
log_msg(enum log_level lvl, int with_errno, const char *id, const char *fmt, ...)
{
	char body[2048], line[2300], ts[32];
	int saved = errno;
	struct timespec now;
	struct tm tm;
	va_list ap;

	if (lvl > log_level_cur)
		return;
	va_start(ap, fmt);
	vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	if (with_errno) {
		size_t n = strlen(body);
		snprintf(body + n, sizeof(body) - n, ": %s", strerror(saved));
	}
	if (!log_foreground) {
		syslog(level_syslog[lvl], "%s: [%s] %s", level_names[lvl],
		       id ? id : "-", body);
		errno = saved;
		return;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	int n = snprintf(line, sizeof(line), "%s.%03ldZ %s %s: [%s] %s\n", ts,
	                 now.tv_nsec / 1000000L, log_ident, level_names[lvl],
	                 id ? id : "-", body);
	if (n > (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 1;
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* nowhere left to report it */
	}
	errno = saved;
}
