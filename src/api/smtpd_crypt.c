/*
 * smtpd_crypt.c - password checks off the event loop. crypt(3) with
 * yescrypt or SHA-512 takes milliseconds on purpose; run on the loop it
 * would stall every session. AUTH hands the check to one worker thread
 * (a job: password and hash copied), the worker runs crypt_r, and the
 * result comes back to the loop through an eventfd, where
 * smtpd_auth_on_checked() finishes the exchange.
 *
 * Threads: smtpd_crypt_new/submit/cancel/free and the completion callback
 * run on the loop thread; the worker only reads a job's pass and hash and
 * writes its ok flag, under the mutex for the two lists. A job's session
 * pointer belongs to the loop: a session freed meanwhile sets it to NULL
 * (smtpd_crypt_cancel) and the result is dropped.
 */
#include "api/smtpd_internal.h"

#include <crypt.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/crypto.h>

#include "core/core.h"

#define CRYPT_QUEUE_MAX 256 /* checks waiting at most; more get 454 */

struct smtpd_crypt_job {
	struct smtpd_crypt_job *next;
	struct smtpd_session *s;  /* loop side; NULL once cancelled */
	char *pass, *hash;        /* worker side: read only */
	char user[256];
	int ok;                   /* worker's answer */
};

struct smtpd_crypt {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct smtpd_crypt_job *todo, **todo_tail, *done;
	size_t pending;           /* submitted, not yet delivered */
	int efd, stop, started;
	struct event *ev;
};

static void
job_free(struct smtpd_crypt_job *j)
{
	if (j == NULL)
		return;
	if (j->pass) {
		OPENSSL_cleanse(j->pass, strlen(j->pass));
		free(j->pass);
	}
	free(j->hash);
	free(j);
}

/* worker - take a job, crypt it, hand it back, wake the loop */
static void *
worker(void *arg)
{
	struct smtpd_crypt *c = arg;
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	struct smtpd_crypt_job *j;
	uint64_t one = 1;

	pthread_mutex_lock(&c->lock);
	while (!c->stop) {
		if ((j = c->todo) == NULL) {
			pthread_cond_wait(&c->cond, &c->lock);
			continue;
		}
		if ((c->todo = j->next) == NULL)
			c->todo_tail = &c->todo;
		pthread_mutex_unlock(&c->lock);
		j->ok = accounts_hash_check(j->hash, j->pass, cd);
		pthread_mutex_lock(&c->lock);
		j->next = c->done;
		c->done = j;
		if (write(c->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_warn("-", "password check: cannot wake the loop");
	}
	pthread_mutex_unlock(&c->lock);
	OPENSSL_cleanse(cd, sizeof(*cd));
	free(cd);
	return NULL;
}

/* on_done - results back on the loop, in submission order */
static void
on_done(evutil_socket_t fd, short what, void *arg)
{
	struct smtpd_crypt *c = arg;
	struct smtpd_crypt_job *list, *rev = NULL, *j;
	uint64_t n;

	(void)what;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_warn("-", "password check: eventfd read");
	pthread_mutex_lock(&c->lock);
	list = c->done;
	c->done = NULL;
	pthread_mutex_unlock(&c->lock);
	while ((j = list) != NULL) { /* the list is newest first */
		list = j->next;
		j->next = rev;
		rev = j;
	}
	while ((j = rev) != NULL) {
		rev = j->next;
		c->pending--;
		if (j->s) {
			j->s->auth_job = NULL;
			smtpd_auth_on_checked(j->s, j->user, j->hash, j->pass, j->ok);
		}
		job_free(j);
	}
}

struct smtpd_crypt *
smtpd_crypt_new(struct event_base *base)
{
	struct smtpd_crypt *c = xcalloc(1, sizeof(*c));

	c->todo_tail = &c->todo;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->efd < 0 ||
	    (c->ev = event_new(base, c->efd, EV_READ | EV_PERSIST, on_done, c)) == NULL ||
	    event_add(c->ev, NULL) < 0 ||
	    pthread_create(&c->thread, NULL, worker, c) != 0) {
		log_warn("-", "cannot start the password check thread");
		smtpd_crypt_free(c);
		return NULL;
	}
	c->started = 1;
	return c;
}

int
smtpd_crypt_submit(struct smtpd_crypt *c, struct smtpd_session *s,
                   const char *user, const char *pass, const char *hash)
{
	struct smtpd_crypt_job *j;

	if (c == NULL || c->pending >= CRYPT_QUEUE_MAX)
		return -1;
	j = xcalloc(1, sizeof(*j));
	j->s = s;
	snprintf(j->user, sizeof(j->user), "%s", user);
	j->pass = xstrdup(pass);
	j->hash = xstrdup(hash);
	s->auth_job = j;
	c->pending++;
	pthread_mutex_lock(&c->lock);
	*c->todo_tail = j;
	c->todo_tail = &j->next;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

void
smtpd_crypt_cancel(struct smtpd_session *s)
{
	if (s->auth_job) {
		s->auth_job->s = NULL;
		s->auth_job = NULL;
	}
}

/* free_list - jobs never delivered (the thread is gone) */
static void
free_list(struct smtpd_crypt_job *j)
{
	struct smtpd_crypt_job *next;

	for (; j; j = next) {
		next = j->next;
		if (j->s)
			j->s->auth_job = NULL;
		job_free(j);
	}
}

void
smtpd_crypt_free(struct smtpd_crypt *c)
{
	if (c == NULL)
		return;
	if (c->started) {
		pthread_mutex_lock(&c->lock);
		c->stop = 1;
		pthread_cond_signal(&c->cond);
		pthread_mutex_unlock(&c->lock);
		pthread_join(c->thread, NULL);
	}
	free_list(c->todo);
	free_list(c->done);
	if (c->ev)
		event_free(c->ev);
	if (c->efd >= 0)
		close(c->efd);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	free(c);
}
