/*
 * queue_bench.c - benchmark of the message store (src/queue).
 *
 *   queue_bench submit DIR N CONC SIZE RCPTS
 *       N durable submissions of SIZE-byte bodies with RCPTS recipients,
 *       CONC outstanding at once (CONC concurrent submitters on one loop).
 *       Prints messages/s and completion latency p50/p99/max.
 *   queue_bench open DIR
 *       opens an existing spool: time to open + recover, time to claim the
 *       first 1,000 due recipients, process RSS (VmRSS, VmHWM).
 *   queue_bench churn DIR
 *       claims 1,000 due recipients and delivers them, until none is due:
 *       claim time as deletions pile up at the head of the due index.
 *
 * Not a test: run by contrib/bench/queue_bench.sh, figures in docs/spool.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <event2/event.h>

#include "core/core.h"
#include "queue/queue.h"

struct bench {
	struct event_base *base;
	struct queue *q;
	long n, started, done, failed;
	size_t size;
	int rcpts;
	char *body;
	uint64_t *lat_us;
};

struct sub { struct bench *b; uint64_t t0; };

static uint64_t
usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void start_one(struct bench *b, struct sub *s);

static void
on_commit(void *arg, enum queue_status st, queue_msgid id)
{
	struct sub *s = arg;
	struct bench *b = s->b;

	(void)id;
	if (st != QUEUE_OK)
		b->failed++;
	b->lat_us[b->done++] = usec() - s->t0;
	if (b->started < b->n)
		start_one(b, s);
	else
		free(s);
	if (b->done == b->n)
		event_base_loopbreak(b->base);
}

static void
start_one(struct bench *b, struct sub *s)
{
	struct queue_envelope env = { .sender = "bench@example.org",
	                              .listener = "bench", .tenant = "t" };
	struct queue_writer *w;
	char addr[64];

	s->t0 = usec();
	w = queue_msg_begin(b->q, &env);
	for (size_t off = 0; off < b->size; off += 8192) {
		size_t n = b->size - off < 8192 ? b->size - off : 8192;

		queue_msg_write(w, b->body + off, n);
	}
	for (int i = 0; i < b->rcpts; i++) {
		struct queue_rcpt_in r = { .address = addr };

		snprintf(addr, sizeof(addr), "user%ld.%d@domain%d.example",
		    b->started, i, i % 7);
		queue_msg_add_rcpt(w, &r);
	}
	b->started++;
	queue_msg_commit(w, on_commit, s);
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* bench_open - the daemon's defaults (32 MiB cache, 64 MiB memtables)
 * unless QB_CACHE_MB / QB_MEMTABLE_MB say otherwise */
static struct queue *
bench_open(struct event_base *base, const char *dir)
{
	struct queue_opts o = { .path = dir, .max_message_size = 256 << 20 };
	char err[512];
	struct queue *q;

	if (getenv("QB_BLOB"))
		o.body_blob_files = 1;
	if (getenv("QB_CACHE_MB"))
		o.cache_bytes = strtoull(getenv("QB_CACHE_MB"), NULL, 10) << 20;
	if (getenv("QB_MEMTABLE_MB"))
		o.memtable_bytes = strtoull(getenv("QB_MEMTABLE_MB"), NULL, 10) << 20;
	q = queue_open(base, &o, err, sizeof(err));
	if (q == NULL)
		fprintf(stderr, "%s\n", err);
	return q;
}

static void
print_rss(const char *when)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];

	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS", 5) || !strncmp(line, "VmHWM", 5))
			printf("%s %s", when, line);
	fclose(f);
}

static int
cmd_submit(const char *dir, long n, int conc, size_t size, int rcpts)
{
	struct bench b = { .n = n, .size = size, .rcpts = rcpts };
	uint64_t t0, el;

	b.base = event_base_new();
	b.q = bench_open(b.base, dir);
	if (b.q == NULL)
		return 1;
	b.body = xmalloc(size + 1);
	for (size_t i = 0; i < size; i++)
		b.body[i] = (char)(i % 78 == 77 ? '\n' : 'a' + (char)(i % 26));
	b.lat_us = xcalloc((size_t)n, sizeof(uint64_t));
	t0 = usec();
	for (int i = 0; i < conc && b.started < n; i++) {
		struct sub *s = xcalloc(1, sizeof(*s));

		s->b = &b;
		start_one(&b, s);
	}
	event_base_dispatch(b.base);
	el = usec() - t0;
	qsort(b.lat_us, (size_t)n, sizeof(uint64_t), cmp_u64);
	printf("submit n=%ld conc=%d size=%zu rcpts=%d: %.0f msgs/s, "
	    "%.1f MB/s, latency p50 %.2f ms p99 %.2f ms max %.2f ms, "
	    "failed %ld\n", n, conc, size, rcpts, n * 1e6 / (double)el,
	    (double)n * (double)size / (double)el, b.lat_us[n / 2] / 1e3,
	    b.lat_us[(n * 99) / 100] / 1e3, b.lat_us[n - 1] / 1e3, b.failed);
	print_rss("after submit:");
	queue_close(b.q);
	event_base_free(b.base);
	free(b.body);
	free(b.lat_us);
	return b.failed != 0;
}

static int
cmd_open(const char *dir)
{
	struct event_base *base = event_base_new();
	struct queue_counters c;
	struct queue_rcpt *r;
	struct queue *q;
	uint64_t t0 = usec(), t1, t2;
	int n;

	q = bench_open(base, dir);
	if (q == NULL)
		return 1;
	t1 = usec();
	n = queue_due_claim(q, now_ms(), 1000, &r);
	t2 = usec();
	queue_counters_get(q, &c);
	printf("open+recover %.3f s; claim first %d due %.2f ms; messages %llu "
	    "rcpts %llu bytes %llu\n", (t1 - t0) / 1e6, n, (t2 - t1) / 1e3,
	    (unsigned long long)c.messages, (unsigned long long)c.rcpts,
	    (unsigned long long)c.bytes);
	print_rss("after open+claim:");
	queue_rcpts_free(r, n > 0 ? (size_t)n : 0);
	queue_close(q);
	event_base_free(base);
	return 0;
}

static int churn_pending;

static void
on_outcomes(void *arg, enum queue_status st)
{
	(void)arg;
	if (st != QUEUE_OK)
		fprintf(stderr, "outcomes: %s\n", queue_status_to_text(st));
	churn_pending--;
}

/* cmd_churn - claim 1,000 and deliver them, until the spool is empty:
 * how claim time behaves as the due index fills with deletions */
static int
cmd_churn(const char *dir)
{
	struct event_base *base = event_base_new();
	struct queue *q = bench_open(base, dir);
	struct queue_outcome *o = xcalloc(1000, sizeof(*o));
	struct queue_rcpt *r;
	uint64_t t, worst = 0, total = 0, first = 0;
	long rounds = 0, claimed = 0;
	int n;

	if (q == NULL)
		return 1;
	for (;;) {
		t = usec();
		n = queue_due_claim(q, now_ms(), 1000, &r);
		t = usec() - t;
		if (n <= 0)
			break;
		if (rounds == 0)
			first = t;
		worst = t > worst ? t : worst;
		total += t;
		rounds++;
		claimed += n;
		for (int i = 0; i < n; i++)
			o[i] = (struct queue_outcome){ .msgid = r[i].msgid,
			    .idx = r[i].idx, .kind = QUEUE_OUT_DELIVERED };
		churn_pending++;
		queue_outcomes(q, o, (size_t)n, on_outcomes, NULL);
		queue_rcpts_free(r, (size_t)n);
		while (churn_pending > 0)
			event_base_loop(base, EVLOOP_ONCE);
	}
	printf("churn: %ld recipients claimed+delivered in %ld claims of 1000: "
	    "claim first %.2f ms, mean %.2f ms, worst %.2f ms, last (empty "
	    "index) %.2f ms\n", claimed, rounds, first / 1e3,
	    rounds ? total / 1e3 / rounds : 0, worst / 1e3, t / 1e3);
	queue_close(q);
	event_base_free(base);
	free(o);
	return 0;
}

int
main(int argc, char **argv)
{
	log_init("queue_bench", 1, LOG_LVL_WARN);
	if (argc == 7 && strcmp(argv[1], "submit") == 0)
		return cmd_submit(argv[2], atol(argv[3]), atoi(argv[4]),
		    (size_t)atol(argv[5]), atoi(argv[6]));
	if (argc == 3 && strcmp(argv[1], "open") == 0)
		return cmd_open(argv[2]);
	if (argc == 3 && strcmp(argv[1], "churn") == 0)
		return cmd_churn(argv[2]);
	fprintf(stderr, "usage: queue_bench submit DIR N CONC SIZE RCPTS\n"
	    "       queue_bench open DIR\n       queue_bench churn DIR\n");
	return 2;
}
