/*
 * daemon.c - lifecycle of mxbatchd: directories, pid file, privileges,
 * module start and stop, signals. Runs on the main (loop) thread.
 *
 * Start order: directories → pid file (locked: one daemon per spool) →
 * spool opened as the run user → doors bound (as root if started so) →
 * privileges dropped for good → scheduler → loop. Stop order is the
 * reverse, bounded by [server] shutdown_timeout.
 * Modules are wired in when their library is part of the build
 * (MXB_HAVE_<MODULE>, set by CMakeLists.txt).
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#ifdef MXB_HAVE_QUEUE
#include "queue/queue.h"
#endif
#ifdef MXB_HAVE_API
#include "api/api.h"
#endif
#ifdef MXB_HAVE_MXSCHED
#include "mxsched/mxsched.h"
#endif

struct daemon {
	const struct config *cfg;
	struct event_base *base;
	struct event *ev_term, *ev_int, *ev_hup, *ev_tick;
	uint64_t stop_deadline;
	int stopping;
	int pid_fd;
	uid_t uid;
	gid_t gid;
	int drop; /* started as root with [server] user */
#ifdef MXB_HAVE_QUEUE
	struct queue *queue;
#endif
#ifdef MXB_HAVE_API
	struct smtpd *smtpd;
	struct admin *admin;
	struct admin_sched_ops admin_ops;
#endif
#ifdef MXB_HAVE_MXSCHED
	struct mxsched *sched;
#endif
};

/* make_parent_dirs - mkdir -p of the directory part of path */
static int
make_parent_dirs(const char *path, int include_last, mode_t mode)
{
	char buf[PATH_MAX];
	size_t i, n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, path, n + 1);
	for (i = 1; i <= n; i++) {
		if (buf[i] != '/' && !(i == n && include_last))
			continue;
		buf[i] = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST) {
			log_err("-", "cannot create directory %s", buf);
			return -1;
		}
		buf[i] = i == n ? '\0' : '/';
	}
	return 0;
}

static int
prepare_dirs(struct daemon *d)
{
	const struct config *c = d->cfg;
	size_t i;

	if (make_parent_dirs(c->spool_path, 1, 0700) < 0 ||
	    (c->pid_file && make_parent_dirs(c->pid_file, 0, 0755) < 0) ||
	    (c->delivery_log && make_parent_dirs(c->delivery_log, 0, 0755) < 0))
		return -1;
	for (i = 0; i < c->n_listens; i++)
		if (c->listens[i].socket &&
		    make_parent_dirs(c->listens[i].socket, 0, 0755) < 0)
			return -1;
	if (chmod(c->spool_path, 0700) < 0) {
		log_err("-", "cannot chmod spool %s", c->spool_path);
		return -1;
	}
	if (d->drop && chown(c->spool_path, d->uid, d->gid) < 0) {
		log_err("-", "cannot chown spool %s", c->spool_path);
		return -1;
	}
	return 0;
}

/* pid_file_take - write our pid into a locked pid file */
static int
pid_file_take(struct daemon *d)
{
	char buf[32];
	int fd, n;

	d->pid_fd = -1;
	if (d->cfg->pid_file == NULL)
		return 0;
	fd = open(d->cfg->pid_file, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		log_err("-", "cannot open pid file %s", d->cfg->pid_file);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		n = (int)read(fd, buf, sizeof(buf) - 1);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		log_errx("-", "another mxbatchd (pid %s) holds %s", buf,
		         d->cfg->pid_file);
		close(fd);
		return -1;
	}
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
		log_err("-", "cannot write pid file %s", d->cfg->pid_file);
		close(fd);
		return -1;
	}
	d->pid_fd = fd;
	return 0;
}

static void
pid_file_release(struct daemon *d)
{
	if (d->pid_fd >= 0) {
		unlink(d->cfg->pid_file);
		close(d->pid_fd);
		d->pid_fd = -1;
	}
}

/* lookup_user - resolve [server] user when started as root */
static int
lookup_user(struct daemon *d)
{
	struct passwd *pw;

	d->drop = 0;
	if (geteuid() != 0 || d->cfg->user == NULL) {
		if (geteuid() == 0)
			log_warnx("-", "running as root: set [server] user to drop privileges");
		return 0;
	}
	if ((pw = getpwnam(d->cfg->user)) == NULL) {
		log_errx("-", "[server] user: no such user '%s'", d->cfg->user);
		return -1;
	}
	if (pw->pw_uid == 0) {
		log_errx("-", "[server] user: '%s' is root; name an unprivileged user",
		         d->cfg->user);
		return -1;
	}
	d->uid = pw->pw_uid;
	d->gid = pw->pw_gid;
	d->drop = 1;
	return 0;
}

static int as_user(struct daemon *d, int on) __attribute__((unused));

/* as_user - switch the effective ids to the run user (1) or back (0) */
static int
as_user(struct daemon *d, int on)
{
	if (!d->drop)
		return 0;
	if (on) {
		if (setegid(d->gid) < 0 || seteuid(d->uid) < 0)
			return -1;
	} else if (seteuid(0) < 0 || setegid(0) < 0) {
		return -1;
	}
	return 0;
}

/* drop_privileges - for good; refuse to go on if root can be regained */
static int
drop_privileges(struct daemon *d)
{
	if (!d->drop)
		return 0;
	if (setgroups(1, &d->gid) < 0 || setgid(d->gid) < 0 || setuid(d->uid) < 0) {
		log_err("-", "cannot drop privileges to %s", d->cfg->user);
		return -1;
	}
	if (setuid(0) == 0 || geteuid() == 0) {
		log_errx("-", "privileges could be regained after dropping them");
		return -1;
	}
	log_info("-", "running as user %s", d->cfg->user);
	return 0;
}

#if defined(MXB_HAVE_API) && defined(MXB_HAVE_MXSCHED)
/* ---- the scheduler's side of the admin API (src/api never includes
 * mxsched.h: these adapters are the only bridge) ---- */
static struct json_t *ops_sites(void *c) { return mxsched_sites_json(c); }
static struct json_t *ops_site(void *c, const char *k) { return mxsched_site_json(c, k); }
static int ops_suspend(void *c, const char *k, uint64_t ms, const char *why)
{
	return mxsched_site_suspend(c, k, ms, why);
}
static int ops_resume(void *c, const char *k) { return mxsched_site_resume(c, k); }
static int ops_retry(void *c, const char *k) { return mxsched_site_retry_now(c, k); }
static struct json_t *ops_metrics(void *c) { return mxsched_metrics_json(c); }
static struct json_t *ops_blocklists(void *c) { return mxsched_blocklists_json(c); }
static int ops_bl_release(void *c, const char *addr, const char *site)
{
	return mxsched_blocklist_release(c, addr, site);
}
static int ops_bounce(void *c, uint64_t id, const char *domain, const char *who,
                      void (*done)(void *, int, size_t), void *arg)
{
	return mxsched_msg_bounce(c, id, domain, who, done, arg);
}
static int ops_delete(void *c, uint64_t id, const char *domain, const char *who,
                      void (*done)(void *, int, size_t), void *arg)
{
	return mxsched_msg_delete(c, id, domain, who, done, arg);
}

static int ops_domain_site(void *c, const char *dom, char *out, size_t len)
{
	return mxsched_domain_site(c, dom, out, len);
}
static const struct admin_sched_ops *
admin_ops(struct daemon *d)
{
	d->admin_ops = (struct admin_sched_ops){ NULL, ops_sites, ops_site, ops_suspend,
	                                        ops_resume, ops_retry, ops_metrics,
	                                        ops_blocklists, ops_bl_release,
	                                        ops_domain_site, ops_bounce, ops_delete };
	return &d->admin_ops; /* ctx is set once the scheduler exists */
}
#elif defined(MXB_HAVE_API)
static const struct admin_sched_ops *admin_ops(struct daemon *d) { (void)d; return NULL; }
#endif

static int
modules_start(struct daemon *d)
{
	char err[1024] = "";

	(void)err;
#ifdef MXB_HAVE_QUEUE
	if (as_user(d, 1) < 0)
		return -1;
	d->queue = queue_open_config(d->base, d->cfg, err, sizeof(err));
	if (as_user(d, 0) < 0 || d->queue == NULL) {
		log_errx("-", "spool: %s", err);
		return -1;
	}
	log_info("-", "spool open at %s", d->cfg->spool_path);
#endif
#ifdef MXB_HAVE_API
	d->smtpd = smtpd_start(d->base, d->cfg, d->queue, err, sizeof(err));
	if (d->smtpd == NULL) {
		log_errx("-", "submission: %s", err);
		return -1;
	}
	/* bound before privileges go; no request is served before the loop
	 * runs, by when the scheduler behind the ops exists */
	d->admin = admin_start(d->base, d->cfg, d->queue, admin_ops(d), err, sizeof(err));
	if (d->admin == NULL) {
		log_errx("-", "admin API: %s", err);
		return -1;
	}
	admin_set_smtpd(d->admin, d->smtpd);
#endif
	if (drop_privileges(d) < 0)
		return -1;
#ifdef MXB_HAVE_MXSCHED
	d->sched = mxsched_new(d->base, d->cfg, d->queue, err, sizeof(err));
	if (d->sched == NULL) {
		log_errx("-", "scheduler: %s", err);
		return -1;
	}
#ifdef MXB_HAVE_API
	d->admin_ops.ctx = d->sched;
#endif
#endif
	return 0;
}

/* modules_busy - is in-flight work left that a graceful stop waits for? */
static int
modules_busy(struct daemon *d)
{
	(void)d;
#ifdef MXB_HAVE_API
	if (d->smtpd && smtpd_busy(d->smtpd))
		return 1; /* sessions in DATA may finish and get their 250 */
#endif
#ifdef MXB_HAVE_MXSCHED
	if (d->sched && mxsched_busy(d->sched))
		return 1;
#endif
	return 0;
}

static void
modules_stop_accepting(struct daemon *d)
{
	(void)d;
#ifdef MXB_HAVE_API
	if (d->smtpd)
		smtpd_stop_accepting(d->smtpd);
	if (d->admin)
		admin_stop(d->admin);
#endif
#ifdef MXB_HAVE_MXSCHED
	if (d->sched)
		mxsched_stop(d->sched);
#endif
}

static void
modules_free(struct daemon *d)
{
	(void)d;
#ifdef MXB_HAVE_API
	admin_free(d->admin);
#endif
#ifdef MXB_HAVE_MXSCHED
	mxsched_free(d->sched);
#endif
#ifdef MXB_HAVE_API
	smtpd_free(d->smtpd);
#endif
#ifdef MXB_HAVE_QUEUE
	queue_close(d->queue);
#endif
}

static void
modules_reload(struct daemon *d)
{
	(void)d;
#ifdef MXB_HAVE_API
	if (d->smtpd)
		smtpd_reload(d->smtpd);
#endif
	dlog_reopen();
}

/* daemon_on_tick - while stopping: leave the loop once idle or late */
static void
daemon_on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;

	(void)fd;
	(void)what;
	if (!modules_busy(d) || mono_ms() >= d->stop_deadline) {
		if (modules_busy(d))
			log_warnx("-", "shutdown timeout: abandoning in-flight work "
			          "(it will be retried after restart)");
		event_base_loopexit(d->base, NULL);
	}
}

static void
daemon_on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	struct timeval tick = { 0, 50000 };

	(void)what;
	if (sig == SIGHUP) {
		log_info("-", "SIGHUP: reopening logs and reloading accounts");
		log_reopen();
		modules_reload(d);
		return;
	}
	if (d->stopping) {
		log_warnx("-", "second stop signal: exiting now");
		event_base_loopexit(d->base, NULL);
		return;
	}
	d->stopping = 1;
	log_info("-", "%s: stopping (grace %llu ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
	         (unsigned long long)d->cfg->shutdown_timeout_ms);
	d->stop_deadline = mono_ms() + d->cfg->shutdown_timeout_ms;
	modules_stop_accepting(d);
	d->ev_tick = event_new(d->base, -1, EV_PERSIST, daemon_on_tick, d);
	event_add(d->ev_tick, &tick);
}

static int
signals_setup(struct daemon *d)
{
	signal(SIGPIPE, SIG_IGN);
	d->ev_term = evsignal_new(d->base, SIGTERM, daemon_on_signal, d);
	d->ev_int = evsignal_new(d->base, SIGINT, daemon_on_signal, d);
	d->ev_hup = evsignal_new(d->base, SIGHUP, daemon_on_signal, d);
	if (!d->ev_term || !d->ev_int || !d->ev_hup || event_add(d->ev_term, NULL) ||
	    event_add(d->ev_int, NULL) || event_add(d->ev_hup, NULL))
		return -1;
	return 0;
}

static void
daemon_free(struct daemon *d)
{
	modules_free(d);
	if (d->ev_term) event_free(d->ev_term);
	if (d->ev_int) event_free(d->ev_int);
	if (d->ev_hup) event_free(d->ev_hup);
	if (d->ev_tick) event_free(d->ev_tick);
	pid_file_release(d);
	if (d->base)
		event_base_free(d->base);
}

int
daemon_run(const struct config *cfg, int foreground)
{
	struct daemon d = { .cfg = cfg, .pid_fd = -1 };
	enum log_level lvl = LOG_LVL_INFO;
	int rc = 1;

	log_level_parse(cfg->log_level, &lvl);
	log_init("mxbatchd", foreground, lvl);
	if (!foreground && daemon(1, 0) < 0) {
		log_err("-", "cannot detach");
		return 1;
	}
	evthread_use_pthreads();
	if (lookup_user(&d) < 0 || prepare_dirs(&d) < 0 || pid_file_take(&d) < 0)
		goto done;
	if ((d.base = event_base_new()) == NULL || signals_setup(&d) < 0) {
		log_errx("-", "cannot set up the event loop");
		goto done;
	}
	if (cfg->delivery_log && dlog_open(cfg->delivery_log) < 0) {
		log_err("-", "cannot open delivery log %s", cfg->delivery_log);
		goto done;
	}
	if (modules_start(&d) < 0)
		goto done;
	log_info("-", "mxbatchd started (pid %ld, config %s)", (long)getpid(),
	         cfg->path ? cfg->path : "built-in defaults");
	event_base_dispatch(d.base);
	log_info("-", "mxbatchd stopped");
	rc = 0;
done:
	daemon_free(&d);
	dlog_close();
	return rc;
}
