/*
 * smtpc_send.c - driver of the SMTP client (src/smtpclient) for the
 * integration tests and benchmarks: sends messages to given exchanger
 * addresses over one or more connections and prints JSON lines.
 *
 *   smtpc_send --mx NAME=IP[,IP...] [--mx ...] --port N --rcpt ADDR ...
 *              [--body FILE | --body-size BYTES] [--messages N] ...
 *   (smtpc_send --help lists every option)
 *
 * Each message goes out in transactions of at most --max-rcpt recipients;
 * recipients handed back as "retry now" (452 split, multi-domain refusal)
 * are sent at once as the next transaction on the same connection.
 * Output, one JSON object per line on stdout: "connect", "txn" (a result
 * per recipient), "closed", and a final "summary". Exit status 0 when the
 * run completed (whatever the SMTP outcomes), 1 on usage errors.
 */
#include "core/core.h"
#include "smtpclient/smtpc.h"

#include <event2/event.h>
#include <jansson.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ROUNDS 20          /* retry-now rounds of one job */

/* a body: a file read with pread (streamed), or a memory buffer */
struct body {
	int fd;                    /* -1 = memory */
	const char *mem;
	uint64_t size;
	uint64_t off;
};

struct job {
	size_t msg;
	struct smtpc_rcpt *rcpts;
	size_t n;
	int owned;                 /* rcpts allocated for a retry */
	int round;
	struct job *next;
};

struct conn {
	struct smtpc_conn *sc;
	int idx;
	int was_ready;
	struct smtpc_batch batch;  /* the job in flight */
	struct body body;
	struct job *job;
	struct event *linger;      /* --linger: idle before QUIT */
};

struct run {
	struct event_base *base;
	struct smtpc_opts opts;
	struct smtpc_dest dest;
	struct smtpc_mx mx[16];
	const char *sender;
	struct smtpc_rcpt *rcpts;
	size_t n_rcpts;
	struct body body;
	struct job *head, *tail;
	size_t max_rcpt, messages, msgs_per_conn, n_conns, open, conns_made;
	int quiet, txn_json, failed_open;
	uint64_t linger_ms;
	struct smtpc_batch proto;  /* sender, DSN, flags */
	unsigned long long n[6], txns, unsent;
	uint64_t t0;
};

static struct run R;

static ssize_t
body_read(void *ctx, char *buf, size_t len)
{
	struct body *b = ctx;
	ssize_t n;

	if (b->off >= b->size)
		return 0;
	if (len > b->size - b->off)
		len = (size_t)(b->size - b->off);
	if (b->fd < 0) {
		memcpy(buf, b->mem + b->off, len);
		n = (ssize_t)len;
	} else if ((n = pread(b->fd, buf, len, (off_t)b->off)) < 0)
		return -1;
	b->off += (uint64_t)n;
	return n;
}

static int
body_rewind(void *ctx)
{
	((struct body *)ctx)->off = 0;
	return 0;
}

static uint64_t
body_size(void *ctx)
{
	return ((struct body *)ctx)->size;
}

static const struct smtpc_body_ops body_ops = { body_read, body_rewind,
                                                body_size };

/* ---- jobs ---- */

static void
job_push(struct job *j, int front)
{
	if (front) {
		j->next = R.head;
		R.head = j;
		if (R.tail == NULL)
			R.tail = j;
		return;
	}
	j->next = NULL;
	if (R.tail)
		R.tail->next = j;
	else
		R.head = j;
	R.tail = j;
}

static struct job *
job_pop(void)
{
	struct job *j = R.head;

	if (j != NULL && (R.head = j->next) == NULL)
		R.tail = NULL;
	return j;
}

static void
job_free(struct job *j)
{
	if (j && j->owned)
		free(j->rcpts);
	free(j);
}

static void
make_jobs(void)
{
	for (size_t m = 0; m < R.messages; m++)
		for (size_t i = 0; i < R.n_rcpts; i += R.max_rcpt) {
			struct job *j = xcalloc(1, sizeof(*j));
			j->msg = m;
			j->rcpts = R.rcpts + i;
			j->n = R.n_rcpts - i < R.max_rcpt ? R.n_rcpts - i : R.max_rcpt;
			job_push(j, 0);
		}
}

/* ---- output ---- */

static void
emit(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);

	if (s != NULL) {
		fputs(s, stdout);
		fputc('\n', stdout);
		fflush(stdout);
		free(s);
	}
	json_decref(o);
}

static void
emit_txn(struct conn *c, const struct smtpc_result *res)
{
	json_t *o = json_object(), *a = json_array();

	for (size_t i = 0; i < res->n_rcpts; i++) {
		const struct smtpc_rcpt_result *r = &res->rcpts[i];
		json_array_append_new(a, json_pack("{s:s,s:s,s:i,s:s,s:s,s:b}",
		    "addr", res->batch->rcpts[i].addr,
		    "status", smtpc_rcpt_status_name(r->status), "code", r->code,
		    "enhanced", r->enhanced, "text", r->text,
		    "multi_domain", r->multi_domain));
	}
	json_object_set_new(o, "event", json_string("txn"));
	json_object_set_new(o, "conn", json_integer(c->idx));
	json_object_set_new(o, "message", json_integer((json_int_t)c->job->msg));
	json_object_set_new(o, "round", json_integer(c->job->round));
	json_object_set_new(o, "error", json_string(smtpc_error_name(res->error)));
	json_object_set_new(o, "reason", json_string(res->reason));
	json_object_set_new(o, "learned_limit", json_integer(res->learned_limit));
	json_object_set_new(o, "conn_usable", json_boolean(res->conn_usable));
	json_object_set_new(o, "mx", json_string(res->mx_host));
	json_object_set_new(o, "addr", json_string(res->mx_addr));
	json_object_set_new(o, "tls", json_string(res->tls_proto));
	json_object_set_new(o, "cipher", json_string(res->tls_cipher));
	json_object_set_new(o, "rcpts", a);
	emit(o);
}

static void
emit_connect(struct conn *c)
{
	const struct smtpc_conn_info *i = smtpc_conn_info(c->sc);

	if (R.quiet)
		return;
	emit(json_pack("{s:s,s:i,s:s,s:s,s:s,s:s,s:s,s:b,s:b,s:{s:b,s:b,s:b,s:b,"
	               "s:b,s:b,s:I}}",
	    "event", "connect", "conn", c->idx, "session", i->session_id,
	    "mx", i->mx_host, "addr", i->mx_addr, "tls", i->tls_proto,
	    "cipher", i->tls_cipher, "tls_fallback", i->tls_fallback,
	    "esmtp", i->esmtp, "caps", "pipelining", i->pipelining,
	    "chunking", i->chunking, "dsn", i->dsn, "smtputf8", i->smtputf8,
	    "8bitmime", i->eightbitmime, "starttls", i->starttls,
	    "size", (json_int_t)i->size_limit));
}

/* ---- driving connections ---- */

static void conn_open(void);
static void conn_next(struct conn *c);

static void
count_result(const struct smtpc_result *res)
{
	for (size_t i = 0; i < res->n_rcpts; i++)
		R.n[res->rcpts[i].status]++;
	R.txns++;
}

/* retry_job - the retry-now recipients of res as a job of its own */
static struct job *
retry_job(const struct job *j, const struct smtpc_result *res)
{
	struct job *r;

	if (res->n_retry_now == 0 || j->round + 1 >= MAX_ROUNDS)
		return NULL;
	r = xcalloc(1, sizeof(*r));
	r->msg = j->msg;
	r->round = j->round + 1;
	r->owned = 1;
	r->rcpts = xcalloc(res->n_retry_now, sizeof(*r->rcpts));
	for (size_t i = 0; i < res->n_rcpts; i++)
		if (res->rcpts[i].status == SMTPC_RCPT_RETRY_NOW)
			r->rcpts[r->n++] = j->rcpts[i];
	return r;
}

static void
on_done(struct smtpc_conn *sc, const struct smtpc_result *res, void *arg)
{
	struct conn *c = arg;
	struct job *retry;

	(void)sc;
	count_result(res);
	if (R.txn_json)
		emit_txn(c, res);
	retry = retry_job(c->job, res);
	job_free(c->job);
	c->job = NULL;
	if (retry != NULL)
		job_push(retry, 1);     /* next on this same connection */
	if (res->conn_usable)
		conn_next(c);
}

static void
on_linger(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	smtpc_conn_close(c->sc);
}

/* conn_next - next job on an idle connection, or QUIT (after --linger) */
static void
conn_next(struct conn *c)
{
	struct job *j;

	if (!smtpc_conn_is_idle(c->sc))
		return;
	if (R.msgs_per_conn && smtpc_conn_txn_count(c->sc) >= R.msgs_per_conn) {
		smtpc_conn_close(c->sc);
		return;
	}
	if ((j = job_pop()) == NULL) {
		struct timeval tv = { (time_t)(R.linger_ms / 1000),
		                      (suseconds_t)(R.linger_ms % 1000) * 1000 };
		if (R.linger_ms == 0) {
			smtpc_conn_close(c->sc);
			return;
		}
		c->linger = evtimer_new(R.base, on_linger, c);
		evtimer_add(c->linger, &tv);
		return;
	}
	c->job = j;
	c->batch = R.proto;
	c->batch.rcpts = j->rcpts;
	c->batch.n_rcpts = j->n;
	c->body = R.body;
	c->batch.body_ctx = &c->body;
	if (smtpc_conn_send(c->sc, &c->batch, on_done, c) < 0) {
		fprintf(stderr, "smtpc_send: cannot send on an idle connection\n");
		job_push(j, 1);
		c->job = NULL;
		smtpc_conn_close(c->sc);
	}
}

static void
on_ready(struct smtpc_conn *sc, void *arg)
{
	struct conn *c = arg;

	(void)sc;
	c->was_ready = 1;
	emit_connect(c);
	conn_next(c);
}

static void
on_closed(struct smtpc_conn *sc, void *arg)
{
	struct conn *c = arg;
	const struct smtpc_conn_info *i = smtpc_conn_info(sc);

	if (!R.quiet || !c->was_ready)
		emit(json_pack("{s:s,s:i,s:s,s:s,s:i}", "event", "closed",
		               "conn", c->idx, "error", smtpc_error_name(i->error),
		               "reason", i->reason, "transactions",
		               (int)smtpc_conn_txn_count(sc)));
	if (!c->was_ready)
		R.failed_open = 1;
	smtpc_conn_free(sc);
	if (c->linger)
		event_free(c->linger);
	free(c);
	R.open--;
	/* replace it while work is left, unless opening itself fails */
	if (R.head != NULL && !R.failed_open)
		conn_open();
	if (R.open == 0)
		event_base_loopexit(R.base, NULL);
}

static void
conn_open(void)
{
	static const struct smtpc_conn_cbs cbs = { on_ready, on_closed };
	struct conn *c = xcalloc(1, sizeof(*c));

	c->idx = (int)R.conns_made++;
	c->sc = smtpc_conn_new(R.base, &R.opts, &R.dest, &cbs, c);
	if (c->sc == NULL) {
		fprintf(stderr, "smtpc_send: bad connection options\n");
		exit(1);
	}
	R.open++;
}

/* ---- options ---- */

static void
usage(FILE *out)
{
	fprintf(out,
	"usage: smtpc_send --mx NAME=IP[,IP...] [--mx ...] [--port N]\n"
	"         (--rcpt ADDR ... | --gen-rcpts N --gen-domain D[,D...])\n"
	"         [--from ADDR] [--body FILE | --body-size BYTES]\n"
	"         [--messages N] [--max-rcpt N] [--connections N]\n"
	"         [--msgs-per-conn N] [--ehlo NAME] [--source IP]\n"
	"         [--tls none|may|encrypt|verify] [--ca FILE]\n"
	"         [--no-pipelining] [--no-chunking] [--allow-private yes|CIDRS]\n"
	"         [--max-addresses N] [--timeout DUR] [--connect-timeout DUR]\n"
	"         [--data-done-timeout DUR] [--notify LIST] [--orcpt] \n"
	"         [--ret FULL|HDRS] [--envid X] [--smtputf8] [--8bit]\n"
	"         [--linger DUR] [--quiet] [--verbose]\n"
	"Sends --messages copies of one message to the recipients through the\n"
	"SMTP client; prints JSON lines (connect, txn, closed, summary).\n");
}

static void
die(const char *what, const char *arg)
{
	fprintf(stderr, "smtpc_send: %s: %s\n", what, arg);
	exit(1);
}

static unsigned long
num(const char *s, const char *what)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || end == s)
		die(what, s);
	return v;
}

static uint64_t
dur(const char *s, const char *what)
{
	uint64_t ms;

	if (parse_duration_ms(s, &ms) < 0 || ms == 0)
		die(what, s);
	return ms;
}

/* add_mx - "name=ip,ip" */
static void
add_mx(const char *spec)
{
	char *copy = xstrdup(spec), *eq = strchr(copy, '='), *save = NULL, *a;
	struct smtpc_mx *m;
	const char **addrs = NULL;
	size_t n = 0;

	if (eq == NULL || R.dest.n_mx >= 16)
		die("bad --mx (NAME=IP[,IP...])", spec);
	*eq = '\0';
	for (a = strtok_r(eq + 1, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
		addrs = xrealloc(addrs, (n + 1) * sizeof(*addrs));
		addrs[n++] = a;
	}
	m = &R.mx[R.dest.n_mx++];
	m->name = copy;
	m->addrs = addrs;
	m->n_addrs = n;
}

static unsigned
parse_notify(const char *s)
{
	unsigned n = 0;

	if (strcasestr(s, "NEVER")) n |= SMTPC_NOTIFY_NEVER;
	if (strcasestr(s, "SUCCESS")) n |= SMTPC_NOTIFY_SUCCESS;
	if (strcasestr(s, "FAILURE")) n |= SMTPC_NOTIFY_FAILURE;
	if (strcasestr(s, "DELAY")) n |= SMTPC_NOTIFY_DELAY;
	if (n == 0)
		die("bad --notify", s);
	return n;
}

static void
add_rcpt(const char *addr)
{
	R.rcpts = xrealloc(R.rcpts, (R.n_rcpts + 1) * sizeof(*R.rcpts));
	memset(&R.rcpts[R.n_rcpts], 0, sizeof(*R.rcpts));
	R.rcpts[R.n_rcpts++].addr = xstrdup(addr);
}

static void
gen_rcpts(unsigned long n, const char *domains)
{
	char *copy = xstrdup(domains), *save = NULL, *d, **doms = NULL;
	size_t nd = 0;
	char buf[320];

	for (d = strtok_r(copy, ",", &save); d; d = strtok_r(NULL, ",", &save)) {
		doms = xrealloc(doms, (nd + 1) * sizeof(*doms));
		doms[nd++] = d;
	}
	if (nd == 0)
		die("bad --gen-domain", domains);
	for (unsigned long i = 0; i < n; i++) {
		snprintf(buf, sizeof(buf), "user%lu@%s", i, doms[i % nd]);
		add_rcpt(buf);
	}
	free(doms);
	free(copy);
}

static void
load_body(const char *path, uint64_t gen_size)
{
	struct stat st;
	char *mem;

	R.body.fd = -1;
	if (path != NULL) {
		if ((R.body.fd = open(path, O_RDONLY)) < 0 || fstat(R.body.fd, &st) < 0)
			die(strerror(errno), path);
		R.body.size = (uint64_t)st.st_size;
		return;
	}
	mem = xmalloc(gen_size + 1);
	uint64_t o = 0;
	o += (uint64_t)snprintf(mem, gen_size + 1, "Subject: test\r\n\r\n");
	if (o > gen_size)
		o = gen_size;
	while (o < gen_size) {
		size_t l = gen_size - o > 72 ? 72 : (size_t)(gen_size - o);
		memset(mem + o, 'x', l);
		if (l >= 2)
			memcpy(mem + o + l - 2, "\r\n", 2);
		o += l;
	}
	R.body.mem = mem;
	R.body.size = gen_size;
}

static void
summary(void)
{
	struct rusage ru;
	double el = (double)(mono_ms() - R.t0) / 1000.0, cpu;
	unsigned long long deliv = R.n[SMTPC_RCPT_DELIVERED];

	getrusage(RUSAGE_SELF, &ru);
	cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	      (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	emit(json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:I}",
	    "event", "summary", "delivered", (json_int_t)deliv,
	    "tempfail", (json_int_t)R.n[SMTPC_RCPT_TEMPFAIL],
	    "permfail", (json_int_t)R.n[SMTPC_RCPT_PERMFAIL],
	    "possibly_delivered", (json_int_t)R.n[SMTPC_RCPT_POSSIBLY_DELIVERED],
	    "retry_now", (json_int_t)R.n[SMTPC_RCPT_RETRY_NOW],
	    "transactions", (json_int_t)R.txns,
	    "connections", (json_int_t)R.conns_made,
	    "unsent_jobs", (json_int_t)R.unsent,
	    "elapsed_s", el, "cpu_s", cpu,
	    "rcpt_per_s", el > 0 ? (double)deliv / el : 0.0,
	    "cpu_us_per_rcpt", deliv ? cpu * 1e6 / (double)deliv : 0.0,
	    "maxrss_kb", (json_int_t)ru.ru_maxrss));
}

enum { O_PORT = 256, O_FROM, O_BODY, O_BODYSIZE, O_MSGS, O_MAXRCPT, O_CONNS,
       O_MPC, O_EHLO, O_SOURCE, O_TLS, O_CA, O_NOPIPE, O_NOCHUNK, O_ALLOW,
       O_MAXADDR, O_TMO, O_CTMO, O_DDTMO, O_NOTIFY, O_ORCPT, O_RET, O_ENVID,
       O_UTF8, O_8BIT, O_QUIET, O_VERBOSE, O_GENR, O_GEND, O_MX, O_RCPT,
       O_LINGER };

static const struct option longopts[] = {
	{"mx", 1, 0, O_MX}, {"rcpt", 1, 0, O_RCPT}, {"port", 1, 0, O_PORT},
	{"from", 1, 0, O_FROM}, {"body", 1, 0, O_BODY},
	{"body-size", 1, 0, O_BODYSIZE}, {"messages", 1, 0, O_MSGS},
	{"max-rcpt", 1, 0, O_MAXRCPT}, {"connections", 1, 0, O_CONNS},
	{"msgs-per-conn", 1, 0, O_MPC}, {"ehlo", 1, 0, O_EHLO},
	{"source", 1, 0, O_SOURCE}, {"tls", 1, 0, O_TLS}, {"ca", 1, 0, O_CA},
	{"no-pipelining", 0, 0, O_NOPIPE}, {"no-chunking", 0, 0, O_NOCHUNK},
	{"allow-private", 1, 0, O_ALLOW}, {"max-addresses", 1, 0, O_MAXADDR},
	{"timeout", 1, 0, O_TMO}, {"connect-timeout", 1, 0, O_CTMO},
	{"data-done-timeout", 1, 0, O_DDTMO}, {"notify", 1, 0, O_NOTIFY},
	{"orcpt", 0, 0, O_ORCPT}, {"ret", 1, 0, O_RET}, {"envid", 1, 0, O_ENVID},
	{"smtputf8", 0, 0, O_UTF8}, {"8bit", 0, 0, O_8BIT},
	{"quiet", 0, 0, O_QUIET}, {"verbose", 0, 0, O_VERBOSE},
	{"gen-rcpts", 1, 0, O_GENR}, {"gen-domain", 1, 0, O_GEND},
	{"linger", 1, 0, O_LINGER}, {"help", 0, 0, 'h'}, {0, 0, 0, 0},
};

struct cli {
	const char *body, *ca, *allow, *gen_domain;
	uint64_t body_size, tmo;
	unsigned long gen_n, notify;
	int orcpt, verbose;
};

/* parse_opt - one option into R / cli */
static void
parse_opt(int o, const char *a, struct cli *cl)
{
	switch (o) {
	case O_MX: add_mx(a); break;
	case O_RCPT: add_rcpt(a); break;
	case O_PORT: R.opts.port = (int)num(a, "bad --port"); break;
	case O_FROM: R.sender = a; break;
	case O_BODY: cl->body = a; break;
	case O_BODYSIZE:
		if (parse_size(a, &cl->body_size) < 0) die("bad --body-size", a);
		break;
	case O_MSGS: R.messages = num(a, "bad --messages"); break;
	case O_MAXRCPT: R.max_rcpt = num(a, "bad --max-rcpt"); break;
	case O_CONNS: R.n_conns = num(a, "bad --connections"); break;
	case O_MPC: R.msgs_per_conn = num(a, "bad --msgs-per-conn"); break;
	case O_EHLO: R.opts.ehlo_name = a; break;
	case O_SOURCE: R.opts.source_addr = a; break;
	case O_TLS:
		if (smtpc_tls_policy_parse(a, &R.opts.tls) < 0) die("bad --tls", a);
		break;
	case O_CA: cl->ca = a; break;
	case O_NOPIPE: R.opts.no_pipelining = 1; break;
	case O_NOCHUNK: R.opts.no_chunking = 1; break;
	case O_ALLOW: cl->allow = a; break;
	case O_MAXADDR: R.opts.max_addresses = (unsigned)num(a, "bad --max-addresses"); break;
	case O_TMO: cl->tmo = dur(a, "bad --timeout"); break;
	case O_CTMO: R.opts.timeouts.connect = dur(a, "bad --connect-timeout"); break;
	case O_DDTMO: R.opts.timeouts.data_done = dur(a, "bad --data-done-timeout"); break;
	case O_NOTIFY: cl->notify = parse_notify(a); break;
	case O_ORCPT: cl->orcpt = 1; break;
	case O_RET:
		R.proto.ret = strcasecmp(a, "FULL") == 0 ? SMTPC_RET_FULL :
		              strcasecmp(a, "HDRS") == 0 ? SMTPC_RET_HDRS :
		              (die("bad --ret", a), SMTPC_RET_NONE);
		break;
	case O_ENVID: R.proto.envid = a; break;
	case O_UTF8: R.proto.need_smtputf8 = 1; break;
	case O_8BIT: R.proto.body_8bit = 1; break;
	case O_QUIET: R.quiet = 1; break;
	case O_VERBOSE: cl->verbose = 1; break;
	case O_GENR: cl->gen_n = num(a, "bad --gen-rcpts"); break;
	case O_GEND: cl->gen_domain = a; break;
	case O_LINGER: R.linger_ms = dur(a, "bad --linger"); break;
	case 'h': usage(stdout); exit(0);
	default: usage(stderr); exit(1);
	}
}

/* apply_cli - everything that needs all options first */
static void
apply_cli(struct cli *cl)
{
	char err[256];
	struct smtpc_netlist *nl = NULL;
	struct smtpc_timeouts *t = &R.opts.timeouts;

	if (cl->gen_n)
		gen_rcpts(cl->gen_n, cl->gen_domain ? cl->gen_domain : "example.com");
	if (R.dest.n_mx == 0 || R.n_rcpts == 0) {
		usage(stderr);
		exit(1);
	}
	for (size_t i = 0; i < R.n_rcpts; i++) {
		R.rcpts[i].notify = (unsigned)cl->notify;
		if (cl->orcpt) {
			char *o = xmalloc(strlen(R.rcpts[i].addr) + 8);
			sprintf(o, "rfc822;%s", R.rcpts[i].addr);
			R.rcpts[i].orcpt = o;
		}
	}
	if (cl->allow && smtpc_netlist_parse(cl->allow, &nl, err, sizeof(err)) < 0)
		die("bad --allow-private", err);
	R.opts.allow_private = nl;
	if ((cl->ca || R.opts.tls != SMTPC_TLS_NONE) &&
	    (R.opts.tls_ctx = smtpc_tls_new(cl->ca, err, sizeof(err))) == NULL)
		die("TLS", err);
	if (cl->tmo)
		t->greeting = t->helo = t->starttls = t->mail = t->rcpt =
		t->data_init = t->data_block = t->rset = t->quit = cl->tmo;
	if (cl->tmo && !t->data_done)
		t->data_done = cl->tmo;
	load_body(cl->body, cl->body_size);
	log_init("smtpc_send", 1, cl->verbose ? LOG_LVL_DEBUG : LOG_LVL_WARN);
}

int
main(int argc, char **argv)
{
	struct cli cl = { .body_size = 4096 };
	int o;

	R.opts.ehlo_name = "smtpc-send.test";
	R.opts.tls = SMTPC_TLS_NONE;
	R.sender = "sender@example.org";
	R.messages = 1;
	R.max_rcpt = 100;
	R.n_conns = 1;
	while ((o = getopt_long(argc, argv, "h", longopts, NULL)) != -1)
		parse_opt(o, optarg, &cl);
	if (optind < argc)
		die("unexpected argument", argv[optind]);
	apply_cli(&cl);
	signal(SIGPIPE, SIG_IGN);
	R.dest.mx = R.mx;
	R.dest.site = "smtpc_send";
	R.proto.sender = R.sender;
	R.proto.body = &body_ops;
	R.txn_json = !R.quiet;
	if (R.max_rcpt == 0)
		R.max_rcpt = 1;
	R.base = event_base_new();
	make_jobs();
	R.t0 = mono_ms();
	for (size_t i = 0; i < R.n_conns && R.head != NULL; i++)
		conn_open();
	if (R.open > 0)
		event_base_dispatch(R.base);
	for (struct job *j; (j = job_pop()) != NULL; job_free(j))
		R.unsent++;
	summary();
	smtpc_tls_free(R.opts.tls_ctx);
	event_base_free(R.base);
	return 0;
}
