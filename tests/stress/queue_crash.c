/*
 * queue_crash.c - crash test of the message store (src/queue).
 *
 * A child process opens the spool and submits messages in a loop (16 at
 * a time, bodies of 1 byte to 200 KiB, 1-20 recipients, some aborted
 * mid-body), claims due recipients and re-defers some of them; it reports
 * every acknowledged message id on a pipe. The parent kills it with
 * SIGKILL at a random moment, reopens the spool and checks that:
 *   - every acknowledged message is present, with an identical body (same
 *     bytes, hence same hash) and all of its recipients;
 *   - every visible message is complete (body and recipients match what
 *     its generator seed says), acknowledged or not: nothing partial;
 *   - no body chunk exists without its message (orphans removed at open);
 *   - no recipient is left in flight, and counters match a full scan.
 * Then again, KILLS times. To bound the spool, verified messages are
 * deleted by the parent once more than 3,000 are stored.
 *
 *   queue_crash [-k KILLS] [-s SEED] [-d DIR]
 * With no -d a fresh temporary directory is used and removed on success.
 * Exit 0 = all checks passed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <event2/event.h>

#include "core/core.h"
#include "queue/queue.h"
#include "queue/queue_internal.h"

#define CONC 16
#define KEEP_MAX 3000

struct ack { uint64_t id, seed; };

/* ---- deterministic message content from a seed ---- */

static uint64_t
mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

static size_t
msg_size(uint64_t seed)
{
	uint64_t r = mix(seed ^ 0x51);

	if (r % 5 == 0)
		return 65536 + (size_t)(r >> 8) % (140 * 1024); /* multi-chunk */
	return 1 + (size_t)(r >> 8) % 8192;
}

static int
msg_nrcpt(uint64_t seed)
{
	return 1 + (int)(mix(seed ^ 0x77) % 20);
}

static void
msg_body(uint64_t seed, size_t off, char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		uint64_t p = off + i;

		buf[i] = (char)(mix(seed + (p >> 3)) >> ((p & 7) * 8));
	}
}

static void
msg_rcpt(uint64_t seed, int i, char *out, size_t len)
{
	snprintf(out, len, "r%d-%llx@dom%d.test", i, (unsigned long long)seed,
	    i % 5);
}

/* ---- the child: submit until killed ---- */

struct child {
	struct event_base *base;
	struct queue *q;
	int fd;
	uint64_t next_seed;
	long n;
};

static void child_submit(struct child *c);

static void
child_on_commit(void *arg, enum queue_status st, queue_msgid id)
{
	struct child *c = arg;
	struct ack a;
	struct queue_envelope *e;

	if (st == QUEUE_OK) {
		e = queue_envelope_get(c->q, id);
		a.id = id;
		a.seed = strtoull(e->envid, NULL, 16);
		queue_envelope_free(e);
		if (write(c->fd, &a, sizeof(a)) != (ssize_t)sizeof(a))
			_exit(3);
	}
	child_submit(c);
}

/* child_churn - claim some due recipients; re-defer or release them */
static void
child_churn(struct child *c)
{
	struct queue_rcpt *r;
	struct queue_outcome o[32];
	int n = queue_due_claim(c->q, now_ms(), 64, &r), k = 0;

	for (int i = 0; i < n; i++) {
		if (i % 3 == 0)
			continue; /* stays in flight until the crash */
		o[k] = (struct queue_outcome){ .msgid = r[i].msgid,
		    .idx = r[i].idx, .next_ms = now_ms() + 3600000,
		    .kind = i % 3 == 1 ? QUEUE_OUT_REDEFER : QUEUE_OUT_RELEASE,
		    .reply = { 451, "4.3.0", "later", "mx.test" } };
		if (++k == 32)
			break;
	}
	if (k > 0)
		queue_outcomes(c->q, o, (size_t)k, NULL, NULL);
	queue_rcpts_free(r, n > 0 ? (size_t)n : 0);
}

static void
child_submit(struct child *c)
{
	uint64_t seed = c->next_seed++;
	char envid[32], addr[96], buf[10000];
	struct queue_envelope env = { .sender = "crash@test", .envid = envid };
	struct queue_writer *w;
	size_t size = msg_size(seed);

	snprintf(envid, sizeof(envid), "%llx", (unsigned long long)seed);
	w = queue_msg_begin(c->q, &env);
	for (size_t off = 0; off < size;) {
		size_t n = 1 + (size_t)(mix(seed + off) % sizeof(buf));

		if (n > size - off)
			n = size - off;
		msg_body(seed, off, buf, n);
		queue_msg_write(w, buf, n);
		off += n;
		if (seed % 13 == 0 && off > 70000)
			break; /* will be aborted */
	}
	for (int i = 0; i < msg_nrcpt(seed); i++) {
		struct queue_rcpt_in r = { .address = addr };

		msg_rcpt(seed, i, addr, sizeof(addr));
		queue_msg_add_rcpt(w, &r);
	}
	if (++c->n % 8 == 0)
		child_churn(c);
	if (seed % 13 == 0 && size > 70000) {
		queue_msg_abort(w);
		child_submit(c);
		return;
	}
	queue_msg_commit(w, child_on_commit, c);
}

static void
child_main(const char *spool, int fd, uint64_t seed0)
{
	struct child c = { .fd = fd, .next_seed = seed0 };
	struct queue_opts o = { .path = spool, .cache_bytes = 8 << 20,
	                        .memtable_bytes = 16 << 20 };
	char err[512];

	c.base = event_base_new();
	c.q = queue_open(c.base, &o, err, sizeof(err));
	if (c.q == NULL) {
		fprintf(stderr, "child: %s\n", err);
		_exit(2);
	}
	for (int i = 0; i < CONC; i++)
		child_submit(&c);
	event_base_dispatch(c.base);
	_exit(0);
}

/* ---- the parent: verify ---- */

struct state {
	const char *spool;
	struct ack *acks;
	size_t n_acks, cap_acks;
	long checked_bodies, checked_msgs;
	int failures;
};

#define FAIL(st, ...) do { fprintf(stderr, "FAIL: " __VA_ARGS__); \
	fputc('\n', stderr); (st)->failures++; } while (0)

static void
ack_add(struct state *st, const struct ack *a)
{
	if (st->n_acks == st->cap_acks) {
		st->cap_acks = st->cap_acks ? st->cap_acks * 2 : 1024;
		st->acks = xrealloc(st->acks, st->cap_acks * sizeof(*st->acks));
	}
	st->acks[st->n_acks++] = *a;
}

/* check_body - the stored body is exactly the seed's bytes */
static int
check_body(struct queue *q, queue_msgid id, uint64_t seed)
{
	struct queue_body *r = queue_body_open(q, id);
	char got[7000], want[7000];
	size_t off = 0;
	long n;
	int ok = 1;

	if (r == NULL || queue_body_size(r) != msg_size(seed))
		ok = 0;
	while (ok && (n = queue_body_read(r, got, sizeof(got))) > 0) {
		msg_body(seed, off, want, (size_t)n);
		ok = memcmp(got, want, (size_t)n) == 0;
		off += (size_t)n;
	}
	ok = ok && off == msg_size(seed);
	queue_body_close(r);
	return ok;
}

/* check_rcpts - every recipient present, none in flight */
static int
check_rcpts(struct queue *q, queue_msgid id, uint64_t seed)
{
	struct queue_rcpt *r;
	int n = queue_msg_rcpts(q, id, &r), ok = n == msg_nrcpt(seed);
	char addr[96];

	for (int i = 0; ok && i < n; i++) {
		msg_rcpt(seed, (int)r[i].idx, addr, sizeof(addr));
		ok = (int)r[i].idx == i && strcmp(r[i].address, addr) == 0 &&
		    r[i].state != QUEUE_RCPT_INFLIGHT;
	}
	queue_rcpts_free(r, n > 0 ? (size_t)n : 0);
	return ok;
}

/* check_msg - one message complete; full = also its body bytes */
static void
check_msg(struct state *st, struct queue *q, queue_msgid id, uint64_t seed,
          int full)
{
	struct queue_envelope *e = queue_envelope_get(q, id);
	char t[QUEUE_ID_TEXT_LEN];

	queue_id_to_text(id, t);
	st->checked_msgs++;
	if (e == NULL) {
		FAIL(st, "acknowledged message %s missing", t);
		return;
	}
	if (strtoull(e->envid, NULL, 16) != seed || e->size != msg_size(seed) ||
	    e->rcpts_live != (uint32_t)msg_nrcpt(seed))
		FAIL(st, "message %s envelope differs", t);
	queue_envelope_free(e);
	if (!check_rcpts(q, id, seed))
		FAIL(st, "message %s recipients differ", t);
	if (full) {
		st->checked_bodies++;
		if (!check_body(q, id, seed))
			FAIL(st, "message %s body differs", t);
	}
}

static int
cmp_ack(const void *a, const void *b)
{
	uint64_t x = ((const struct ack *)a)->id, y = ((const struct ack *)b)->id;

	return x < y ? -1 : x > y;
}

/* check_visible - every stored message complete; chunks add up */
static uint64_t
check_visible(struct state *st, struct queue *q, uint64_t after_id)
{
	struct queue_envelope *e[256];
	queue_msgid after = 0;
	uint64_t chunks = 0, n_msgs = 0;
	int n;

	while ((n = queue_msg_list(q, after, NULL, 256, e)) > 0) {
		for (int i = 0; i < n; i++) {
			uint64_t seed = strtoull(e[i]->envid, NULL, 16);

			chunks += (e[i]->size + QUEUE_CHUNK_SIZE - 1) / QUEUE_CHUNK_SIZE;
			after = e[i]->id;
			n_msgs++;
			if (e[i]->id > after_id)
				check_msg(st, q, e[i]->id, seed, 1);
			queue_envelope_free(e[i]);
		}
	}
	return chunks;
}

static uint64_t
body_keys(struct queue *q)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(q->db, q->ropts,
	    q->cf[QCF_BODY]);
	uint64_t n = 0;

	for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
	     rocksdb_iter_next(it))
		n++;
	rocksdb_iter_destroy(it);
	return n;
}

static int done_count;
static void
on_done(void *arg, enum queue_status s)
{
	(void)arg;
	(void)s;
	done_count--;
}

/* trim - delete verified messages so the spool stays bounded */
static void
trim(struct state *st, struct event_base *base, struct queue *q)
{
	size_t keep = KEEP_MAX / 2;

	if (st->n_acks <= KEEP_MAX)
		return;
	for (size_t i = 0; i < st->n_acks - keep; i++) {
		done_count++;
		queue_msg_delete(q, st->acks[i].id, "crash-test", on_done, NULL);
	}
	while (done_count > 0)
		event_base_loop(base, EVLOOP_ONCE);
	memmove(st->acks, st->acks + st->n_acks - keep, keep * sizeof(*st->acks));
	st->n_acks = keep;
}

/* verify - reopen and check everything; full = compare every acked body */
static void
verify(struct state *st, int full, uint64_t last_checked_id)
{
	struct event_base *base = event_base_new();
	struct queue_opts o = { .path = st->spool };
	struct queue_counters c;
	struct queue *q;
	char err[512];
	uint64_t chunks;

	q = queue_open(base, &o, err, sizeof(err));
	if (q == NULL) {
		FAIL(st, "reopen: %s", err);
		event_base_free(base);
		return;
	}
	if (st->n_acks > 0)
		qsort(st->acks, st->n_acks, sizeof(*st->acks), cmp_ack);
	for (size_t i = 0; i < st->n_acks; i++)
		check_msg(st, q, st->acks[i].id, st->acks[i].seed, full);
	chunks = check_visible(st, q, last_checked_id);
	if (body_keys(q) != chunks)
		FAIL(st, "%llu body chunks stored, messages need %llu",
		    (unsigned long long)body_keys(q), (unsigned long long)chunks);
	queue_counters_get(q, &c);
	if (c.rcpts_inflight != 0)
		FAIL(st, "%llu recipients still in flight after recovery",
		    (unsigned long long)c.rcpts_inflight);
	if (queue_check(q, 0, NULL) != 0)
		FAIL(st, "counters differ from a scan");
	trim(st, base, q);
	queue_close(q);
	event_base_free(base);
}

/* run_child - fork, collect acks until the kill; 0 ok */
static int
run_child(struct state *st, uint64_t seed0, int ms)
{
	int p[2];
	pid_t pid;
	struct ack a;
	uint64_t deadline = mono_ms() + (uint64_t)ms;
	size_t have = 0;
	char buf[sizeof(struct ack) * 256];
	ssize_t n;
	int status = 0;

	if (pipe(p) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the parent */
		close(p[0]);
		child_main(st->spool, p[1], seed0);
	}
	close(p[1]);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	for (;;) {
		struct pollfd pf = { p[0], POLLIN, 0 };
		int64_t left = (int64_t)(deadline - mono_ms());

		if (left <= 0 && pid > 0) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			pid = 0;
		}
		poll(&pf, 1, left > 0 ? (int)left : 10);
		n = read(p[0], buf + have, sizeof(buf) - have);
		if (n == 0)
			break;
		if (n < 0)
			continue;
		have += (size_t)n;
		for (size_t off = 0; off + sizeof(a) <= have; off += sizeof(a)) {
			memcpy(&a, buf + off, sizeof(a));
			ack_add(st, &a);
		}
		memmove(buf, buf + have - have % sizeof(a), have % sizeof(a));
		have %= sizeof(a);
	}
	close(p[0]);
	if (pid > 0)
		waitpid(pid, &status, 0);
	if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
		return -1;
	return 0;
}

int
main(int argc, char **argv)
{
	struct state st = { 0 };
	int kills = 25, opt, rc;
	unsigned seed = (unsigned)getpid();
	char dir[256] = "", spool[300];
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	uint64_t last_id = 0;

	while ((opt = getopt(argc, argv, "k:s:d:")) != -1) {
		if (opt == 'k')
			kills = atoi(optarg);
		else if (opt == 's')
			seed = (unsigned)atoi(optarg);
		else if (opt == 'd')
			snprintf(dir, sizeof(dir), "%s", optarg);
		else
			return 2;
	}
	log_init("queue_crash", 1, LOG_LVL_WARN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (dir[0] == '\0') {
		snprintf(dir, sizeof(dir), "%s/mxbcrash.XXXXXX", tmp);
		if (mkdtemp(dir) == NULL)
			return 2;
	}
	snprintf(spool, sizeof(spool), "%s/spool", dir);
	st.spool = spool;
	srand(seed);
	printf("queue_crash: %d kills, seed %u, spool %s\n", kills, seed, spool);
	for (int k = 0; k < kills && st.failures == 0; k++) {
		rc = run_child(&st, (uint64_t)(k + 1) << 32,
		    20 + rand() % 280);
		if (rc < 0)
			FAIL(&st, "child failed to run");
		verify(&st, k + 1 == kills, last_id);
		last_id = st.n_acks ? st.acks[st.n_acks - 1].id : last_id;
		if ((k + 1) % 10 == 0 || k + 1 == kills)
			printf("kill %d: %zu acked messages kept, %ld checked, "
			    "%ld bodies compared, %d failures\n", k + 1, st.n_acks,
			    st.checked_msgs, st.checked_bodies, st.failures);
	}
	if (st.failures == 0) {
		char cmd[600];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	}
	free(st.acks);
	printf("queue_crash: %s\n", st.failures ? "FAILED" : "ok");
	return st.failures ? 1 : 0;
}
