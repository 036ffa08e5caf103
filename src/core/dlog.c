/*
 * dlog.c - the delivery log: one JSON object per line per event, in one
 * file shared by every module (Reception from submission, Delivery /
 * TransientFailure / Bounce / Expiration from the scheduler, AdminAction
 * from the admin API). Callers render whole lines; this file only appends
 * them with one write(2) each on an O_APPEND descriptor, so lines from
 * different modules never interleave. Reopened on SIGHUP (logrotate).
 * The format is documented in docs/delivery-log.md.
 */
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_mutex_t dlog_lock = PTHREAD_MUTEX_INITIALIZER;
static int dlog_fd = -1;
static char *dlog_path;

static int
dlog_open_fd(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int
dlog_open(const char *path)
{
	int fd;

	if ((fd = dlog_open_fd(path)) < 0)
		return -1;
	pthread_mutex_lock(&dlog_lock);
	if (dlog_fd >= 0)
		close(dlog_fd);
	dlog_fd = fd;
	free(dlog_path);
	dlog_path = xstrdup(path);
	pthread_mutex_unlock(&dlog_lock);
	return 0;
}

void
dlog_reopen(void)
{
	int fd;

	pthread_mutex_lock(&dlog_lock);
	if (dlog_path != NULL) {
		if ((fd = dlog_open_fd(dlog_path)) < 0) {
			log_warn("-", "cannot reopen delivery log %s", dlog_path);
		} else {
			close(dlog_fd);
			dlog_fd = fd;
		}
	}
	pthread_mutex_unlock(&dlog_lock);
}

void
dlog_close(void)
{
	pthread_mutex_lock(&dlog_lock);
	if (dlog_fd >= 0)
		close(dlog_fd);
	dlog_fd = -1;
	free(dlog_path);
	dlog_path = NULL;
	pthread_mutex_unlock(&dlog_lock);
}

int
dlog_enabled(void)
{
	return dlog_fd >= 0;
}

void
dlog_append(const char *buf, size_t len)
{
	ssize_t n;

	pthread_mutex_lock(&dlog_lock);
	while (dlog_fd >= 0 && len > 0) {
		n = write(dlog_fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_warn("-", "delivery log %s: write failed", dlog_path);
			break;
		}
		buf += n;
		len -= (size_t)n;
	}
	pthread_mutex_unlock(&dlog_lock);
}

const char *
dlog_file(void)
{
	return dlog_path;
}
