/*
 * queue_diskfull.c - disk-full test of the message store (src/queue).
 *
 * The spool lives on a small filesystem that runs out of space: a 32 MiB
 * tmpfs mounted in a private mount namespace of a child process (so the
 * mount disappears with the child, whatever happens to it), where the
 * store's free-space check (min_free_bytes = 8 MiB) refuses new messages
 * before RocksDB meets ENOSPC; or a file-size limit (RLIMIT_FSIZE, EFBIG:
 * with --rlimit, or when not root), where RocksDB's write itself fails and
 * the store reopens it. The child submits 100 KiB messages until a round
 * fails and checks that:
 *   - the failing submissions get QUEUE_EDISKFULL (the SMTP server answers
 *     452 4.3.1), not a hang and not a crash;
 *   - nothing of the failed messages is visible, every acknowledged one is
 *     intact (body bytes and recipients);
 *   - once space returns (a ballast file is removed, or the limit raised),
 *     submissions succeed again without reopening the queue;
 *   - after close and reopen everything acknowledged is there and the
 *     counters match a scan.
 * Exit 0 = passed.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <event2/event.h>

#include "core/core.h"
#include "queue/queue.h"

#define MSG_SIZE (100 * 1024)
#define MAX_MSGS 4000

struct t {
	char dir[256], spool[300], ballast[300];
	int use_rlimit;
	struct event_base *base;
	struct queue *q;
	int pending;
	enum queue_status st;
	queue_msgid id;
	queue_msgid acked[MAX_MSGS];
	int n_acked, failures;
};

#define CHECK(t, cond, ...) do { if (!(cond)) { \
	fprintf(stderr, "FAIL: " __VA_ARGS__); fputc('\n', stderr); \
	(t)->failures++; } } while (0)

static void
on_commit(void *arg, enum queue_status st, queue_msgid id)
{
	struct t *t = arg;

	t->pending--;
	t->st = st;
	t->id = id;
}

/* body_fill - incompressible bytes, so compression frees no space */
static void
body_fill(queue_msgid id, char *buf)
{
	uint64_t x = id | 1;

	for (size_t i = 0; i < MSG_SIZE; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (char)(x >> 24);
	}
}

/* submit - one message, wait for its completion; its status */
static enum queue_status
submit(struct t *t, queue_msgid *id_out)
{
	struct queue_envelope env = { .sender = "full@test" };
	struct queue_rcpt_in r = { .address = "a@full.test" };
	struct queue_writer *w = queue_msg_begin(t->q, &env);
	static char buf[MSG_SIZE];

	*id_out = queue_msg_id(w);
	body_fill(*id_out, buf);
	queue_msg_write(w, buf, sizeof(buf));
	queue_msg_add_rcpt(w, &r);
	t->pending++;
	queue_msg_commit(w, on_commit, t);
	while (t->pending > 0)
		event_base_loop(t->base, EVLOOP_ONCE);
	return t->st;
}

static int
body_ok(struct t *t, queue_msgid id)
{
	static char want[MSG_SIZE], got[MSG_SIZE];
	struct queue_body *r = queue_body_open(t->q, id);
	size_t off = 0;
	long n;

	if (r == NULL)
		return 0;
	body_fill(id, want);
	while ((n = queue_body_read(r, got + off, MSG_SIZE - off)) > 0)
		off += (size_t)n;
	queue_body_close(r);
	return off == MSG_SIZE && memcmp(got, want, MSG_SIZE) == 0;
}

static void
check_all(struct t *t, const char *when)
{
	int bad = 0;

	for (int i = 0; i < t->n_acked; i++)
		bad += !body_ok(t, t->acked[i]);
	CHECK(t, bad == 0, "%s: %d acknowledged messages damaged", when, bad);
	CHECK(t, queue_check(t->q, 0, NULL) == 0, "%s: counters differ", when);
}

static struct queue *
open_q(struct t *t)
{
	struct queue_opts o = { .path = t->spool, .cache_bytes = 4 << 20,
	                        .memtable_bytes = 8 << 20,
	                        .min_free_bytes = 8 << 20 };
	char err[512];
	struct queue *q = queue_open(t->base, &o, err, sizeof(err));

	if (q == NULL)
		fprintf(stderr, "open: %s\n", err);
	return q;
}

/* fill_until_full - submit until a round fails; the failed status */
static enum queue_status
fill_until_full(struct t *t)
{
	enum queue_status st = QUEUE_OK;
	queue_msgid id;

	while (t->n_acked < MAX_MSGS) {
		st = submit(t, &id);
		if (st != QUEUE_OK)
			break;
		t->acked[t->n_acked++] = id;
	}
	printf("diskfull: %d messages of 100 KiB acknowledged, then: %s\n",
	    t->n_acked, queue_status_to_text(st));
	CHECK(t, st == QUEUE_EDISKFULL, "expected disk full, got %s",
	    queue_status_to_text(st));
	CHECK(t, queue_envelope_get(t->q, id) == NULL,
	    "the failed message is visible");
	return st;
}

/* stay_full - the store keeps answering while full (every submission is
 * acknowledged or refused as disk full, none hangs), until 3 failures in
 * a row */
static void
stay_full(struct t *t)
{
	int fails = 0, tries = 0;
	queue_msgid id;

	for (; fails < 3 && tries < 200 && t->n_acked < MAX_MSGS; tries++) {
		enum queue_status st = submit(t, &id);

		if (st == QUEUE_OK) {
			t->acked[t->n_acked++] = id;
			fails = 0;
		} else {
			CHECK(t, st == QUEUE_EDISKFULL, "while full: %s",
			    queue_status_to_text(st));
			CHECK(t, queue_envelope_get(t->q, id) == NULL,
			    "a failed message is visible");
			fails++;
		}
	}
	printf("diskfull: %d more attempts, %d acknowledged in all, %d "
	    "failures in a row at the end\n", tries, t->n_acked, fails);
	/* with RLIMIT_FSIZE each reopen starts an empty WAL, so some writes
	 * succeed again: only a full filesystem must stay full */
	if (!t->use_rlimit)
		CHECK(t, fails == 3, "the disk never stayed full");
}

/* make_room - space returns */
static void
make_room(struct t *t)
{
	if (t->use_rlimit) {
		struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };

		setrlimit(RLIMIT_FSIZE, &rl);
	} else {
		unlink(t->ballast);
	}
}

/* resume - submissions work again (after the store's reopen) */
static void
resume(struct t *t)
{
	enum queue_status st = QUEUE_EDISKFULL;
	queue_msgid id;
	int tries = 0;

	for (; tries < 50 && st != QUEUE_OK; tries++) {
		st = submit(t, &id);
		if (st != QUEUE_OK)
			usleep(100 * 1000);
	}
	printf("diskfull: space back; a submission succeeded after %d "
	    "attempt(s)\n", tries);
	CHECK(t, st == QUEUE_OK, "no recovery once space returned: %s",
	    queue_status_to_text(st));
	if (st == QUEUE_OK)
		t->acked[t->n_acked++] = id;
	for (int i = 0; i < 5 && st == QUEUE_OK; i++) {
		st = submit(t, &id);
		CHECK(t, st == QUEUE_OK, "submission %d after recovery: %s", i,
		    queue_status_to_text(st));
		t->acked[t->n_acked++] = id;
	}
}

static int
child_run(struct t *t)
{
	t->base = event_base_new();
	t->q = open_q(t);
	if (t->q == NULL)
		return 1;
	fill_until_full(t);
	check_all(t, "when full");
	stay_full(t);
	make_room(t);
	resume(t);
	check_all(t, "after recovery");
	queue_close(t->q);
	t->q = open_q(t);
	CHECK(t, t->q != NULL, "reopen failed");
	if (t->q) {
		check_all(t, "after reopen");
		queue_close(t->q);
	}
	event_base_free(t->base);
	printf("diskfull (%s): %s\n", t->use_rlimit ? "RLIMIT_FSIZE" : "tmpfs",
	    t->failures ? "FAILED" : "ok");
	return t->failures ? 1 : 0;
}

/* setup_tmpfs - private namespace + 32 MiB tmpfs + 8 MiB ballast */
static int
setup_tmpfs(struct t *t)
{
	char buf[65536] = { 0 };
	int fd;

	if (geteuid() != 0 || unshare(CLONE_NEWNS) < 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", t->dir, "tmpfs", 0, "size=32m,mode=0700") < 0)
		return -1;
	snprintf(t->ballast, sizeof(t->ballast), "%s/ballast", t->dir);
	fd = open(t->ballast, O_WRONLY | O_CREAT, 0600);
	for (int i = 0; fd >= 0 && i < 128; i++)
		if (write(fd, buf, sizeof(buf)) < 0)
			break;
	if (fd >= 0)
		close(fd);
	return 0;
}

static void
setup_rlimit(struct t *t)
{
	struct rlimit rl = { 1 << 20, RLIM_INFINITY };

	t->use_rlimit = 1;
	signal(SIGXFSZ, SIG_IGN);
	setrlimit(RLIMIT_FSIZE, &rl);
}

int
main(int argc, char **argv)
{
	static struct t t;
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	int force_rlimit = argc > 1 && strcmp(argv[1], "--rlimit") == 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	int status = 0;
	pid_t pid;
	char cmd[600];

	log_init("queue_diskfull", 1, LOG_LVL_WARN);
	snprintf(t.dir, sizeof(t.dir), "%s/mxbfull.XXXXXX", tmp);
	if (mkdtemp(t.dir) == NULL)
		return 2;
	snprintf(t.spool, sizeof(t.spool), "%s/spool", t.dir);
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		alarm(120);
		if (force_rlimit || setup_tmpfs(&t) < 0)
			setup_rlimit(&t);
		_exit(child_run(&t));
	}
	waitpid(pid, &status, 0);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t.dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", t.dir);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "queue_diskfull: FAILED (status %d)\n", status);
		return 1;
	}
	return 0;
}
