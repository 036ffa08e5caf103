/*
 * smtpc.h - the outbound SMTP client: one connection to one exchanger of a
 * site, carrying any number of transactions ("batches"), a result for every
 * recipient.
 *
 * Runs on the caller's libevent loop (one thread). It never touches the
 * message store: a batch brings its body as a small read/rewind/size ops
 * table, and the caller records the per-recipient results it gets back.
 *
 * Life of a connection:
 *   conn = smtpc_conn_new(base, &opts, &dest, &cbs, arg);
 *       connects (MX fallback over dest's addresses), greeting, EHLO (HELO
 *       fallback), STARTTLS per opts.tls, EHLO again; then cbs.ready().
 *   smtpc_conn_send(conn, &batch, done, arg)    only when smtpc_conn_is_idle()
 *       one transaction; done() gets the result array; repeat at will.
 *   smtpc_conn_close(conn)                      QUIT, then cbs.closed()
 *   cbs.closed() fires exactly once when the connection is gone for any
 *       reason (open failed, died while idle, after QUIT); a transaction in
 *       flight gets its done() first. smtpc_conn_free() may be called at any
 *       time, also from inside any callback (then no further callbacks).
 *
 * Everything passed in (opts, dest) is copied, except the shared
 * opts.tls_ctx and opts.allow_private, which must outlive the connection;
 * a batch and everything it points to must stay valid until its done().
 *
 * Results: each RCPT reply maps to its recipient; the final reply (DATA
 * dot or BDAT LAST) maps to every accepted one, so a recipient is
 * DELIVERED only after a 2xx final reply. 452 (4.5.3) after at least one
 * accepted recipient: the rest is RETRY_NOW and learned_limit says how
 * many were accepted. A refusal of a recipient whose domain is not the
 * transaction's first (or first accepted) one is RETRY_NOW with
 * multi_domain set: send it again alone, it is never a bounce. A session
 * that ends mid-transaction makes the undecided recipients TEMPFAIL (with
 * res->error and reason), or POSSIBLY_DELIVERED when the final dot was
 * sent and its reply never came.
 */
#ifndef MXB_SMTPC_H
#define MXB_SMTPC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>

struct event_base;
struct smtpc_conn;
struct smtpc_netlist;
struct smtpc_tls;

/* ---- per-recipient outcome: a type, not a string ---- */
enum smtpc_rcpt_status {
	SMTPC_RCPT_PENDING = 0,     /* not decided (never seen in done()) */
	SMTPC_RCPT_DELIVERED,       /* the transaction's final reply was 2xx */
	SMTPC_RCPT_TEMPFAIL,        /* 4xx, or connection-level trouble: retry later */
	SMTPC_RCPT_PERMFAIL,        /* 5xx or our own permanent refusal: bounce */
	SMTPC_RCPT_POSSIBLY_DELIVERED, /* lost after the final dot: defer, count */
	SMTPC_RCPT_RETRY_NOW,       /* 452 split or multi-domain refusal: send
	                               again at once in a new transaction */
};
const char *smtpc_rcpt_status_name(enum smtpc_rcpt_status s);

/* Why a session ended, or why a batch failed as a whole. */
enum smtpc_error {
	SMTPC_ERR_NONE = 0,
	SMTPC_ERR_CONNECT,       /* no address could be connected to */
	SMTPC_ERR_GREETING,      /* greeting / EHLO / HELO refused */
	SMTPC_ERR_TLS,           /* TLS required and not possible / failed */
	SMTPC_ERR_UNSAFE_DEST,   /* every address refused by destination safety */
	SMTPC_ERR_TIMEOUT,       /* the server did not answer in time */
	SMTPC_ERR_LOST,          /* the server closed the connection */
	SMTPC_ERR_PROTOCOL,      /* invalid, oversized or unsolicited reply */
	SMTPC_ERR_SHUTDOWN,      /* 421: the server is closing the session */
	SMTPC_ERR_BODY,          /* the body source failed to read */
	SMTPC_ERR_CLOSED,        /* closed by us (QUIT / free) */
};
const char *smtpc_error_name(enum smtpc_error e);

enum smtpc_tls_policy {
	SMTPC_TLS_NONE = 0,  /* never STARTTLS */
	SMTPC_TLS_MAY,       /* when offered; handshake failure: plaintext reconnect */
	SMTPC_TLS_ENCRYPT,   /* required, certificate not checked */
	SMTPC_TLS_VERIFY,    /* required, chain and MX name checked */
};
/* "none" | "may" | "encrypt" | "verify" -> 0, else -1 */
int smtpc_tls_policy_parse(const char *s, enum smtpc_tls_policy *out);

/* DSN NOTIFY bits (RFC 3461 4.1); 0 = no NOTIFY parameter */
#define SMTPC_NOTIFY_NEVER   0x1u
#define SMTPC_NOTIFY_SUCCESS 0x2u
#define SMTPC_NOTIFY_FAILURE 0x4u
#define SMTPC_NOTIFY_DELAY   0x8u

enum smtpc_ret { SMTPC_RET_NONE = 0, SMTPC_RET_FULL, SMTPC_RET_HDRS };

#define SMTPC_TEXT_MAX 256      /* sanitized reply text kept per recipient */

/* ---- input: the batch (one SMTP transaction) ---- */

/* The body source. read() returns bytes read, 0 at the end, -1 on error;
 * rewind() goes back to the start (0/-1); size() is the body size in bytes
 * (for SIZE=; the wire form may differ slightly after CRLF fixing). The body
 * is sent with bare CR / LF turned into CRLF, dot-stuffed for DATA. */
struct smtpc_body_ops {
	ssize_t (*read)(void *ctx, char *buf, size_t len);
	int (*rewind)(void *ctx);
	uint64_t (*size)(void *ctx);
};

struct smtpc_rcpt {
	const char *addr;       /* "user@domain", no brackets */
	unsigned notify;        /* SMTPC_NOTIFY_* bits, 0 = none */
	const char *orcpt;      /* "rfc822;user@domain" in xtext, or NULL */
};

struct smtpc_batch {
	const char *id;         /* for logs: the message id, or NULL */
	const char *sender;     /* "" = null sender <> */
	enum smtpc_ret ret;     /* DSN RET */
	const char *envid;      /* DSN ENVID (xtext), or NULL */
	int need_smtputf8;      /* addresses or headers need SMTPUTF8 */
	int body_8bit;          /* BODY=8BITMIME */
	const struct smtpc_rcpt *rcpts;
	size_t n_rcpts;
	const struct smtpc_body_ops *body;
	void *body_ctx;
};

/* ---- input: where to connect, and how ---- */

struct smtpc_mx {
	const char *name;            /* MX host name (TLS verify, logs) */
	const char *const *addrs;    /* numeric IPv4/IPv6 strings, in order */
	size_t n_addrs;
};

struct smtpc_dest {
	const char *site;            /* for logs, or NULL */
	const struct smtpc_mx *mx;   /* in preference order, ties shuffled */
	size_t n_mx;
};

/* Timeouts in ms; 0 = the default (RFC 5321 4.5.3.2 / Postfix). */
struct smtpc_timeouts {
	uint64_t connect;       /* 30 s */
	uint64_t greeting;      /* 300 s */
	uint64_t helo;          /* EHLO/HELO, 300 s */
	uint64_t starttls;      /* STARTTLS reply + handshake, 300 s */
	uint64_t mail;          /* 300 s */
	uint64_t rcpt;          /* 300 s */
	uint64_t data_init;     /* DATA -> 354, 120 s */
	uint64_t data_block;    /* each body write progress, 180 s */
	uint64_t data_done;     /* final dot / BDAT LAST reply, 600 s */
	uint64_t rset;          /* 300 s */
	uint64_t quit;          /* 300 s */
};

struct smtpc_opts {
	const char *ehlo_name;       /* required */
	int port;                    /* 0 = 25 */
	const char *source_addr;     /* numeric address to bind, or NULL */
	enum smtpc_tls_policy tls;
	struct smtpc_tls *tls_ctx;   /* shared; NULL = per-connection default */
	struct smtpc_timeouts timeouts;
	unsigned max_addresses;      /* addresses tried per open; 0 = 5 (min 2) */
	int no_pipelining;           /* do not use PIPELINING even if offered */
	int no_chunking;             /* do not use BDAT even if offered */
	/* destinations allowed although loopback/private/link-local/
	 * unspecified; NULL = none allowed */
	const struct smtpc_netlist *allow_private;
};

/* ---- output ---- */

struct smtpc_rcpt_result {
	enum smtpc_rcpt_status status;
	int code;                    /* reply code, 0 = none (our own decision) */
	char enhanced[16];           /* "4.5.3", or "" */
	char text[SMTPC_TEXT_MAX];   /* sanitized reply text or our reason */
	int multi_domain;            /* refused as an extra domain (retry alone) */
};

struct smtpc_result {
	const struct smtpc_batch *batch;
	struct smtpc_rcpt_result *rcpts;   /* batch->n_rcpts entries */
	size_t n_rcpts;
	/* counts by status */
	size_t n_delivered, n_tempfail, n_permfail, n_possibly, n_retry_now;
	enum smtpc_error error;       /* NONE, or the batch-wide trouble */
	const char *reason;           /* text for error, "" if none */
	unsigned learned_limit;       /* accepted count before a 452, 0 = none */
	int conn_usable;              /* the connection is idle and reusable */
	const char *mx_host, *mx_addr;
	const char *tls_proto, *tls_cipher;   /* "" without TLS */
	int dsn;                      /* the server offered DSN: NOTIFY, ORCPT,
	                               * RET and ENVID were passed on */
};

/* What the connection learned; valid while the connection exists. */
struct smtpc_conn_info {
	const char *session_id;
	const char *mx_host, *mx_addr;
	const char *tls_proto, *tls_cipher;   /* "" without TLS */
	int tls_fallback;             /* "may": handshake failed, plaintext now */
	int esmtp;                    /* EHLO accepted (not HELO) */
	int pipelining, chunking, dsn, smtputf8, eightbitmime, starttls;
	uint64_t size_limit;          /* SIZE n, 0 = none */
	enum smtpc_error error;       /* once closed */
	const char *reason;           /* once closed: text of the cause */
};

struct smtpc_conn_cbs {
	void (*ready)(struct smtpc_conn *conn, void *arg);
	void (*closed)(struct smtpc_conn *conn, void *arg);
};

typedef void (*smtpc_done_cb)(struct smtpc_conn *conn,
                              const struct smtpc_result *res, void *arg);

/* ---- the connection ---- */
/* NULL only on bad arguments (no base/opts/dest, missing or invalid
 * ehlo_name); every later failure comes through cbs.closed(). */
struct smtpc_conn *smtpc_conn_new(struct event_base *base,
                                  const struct smtpc_opts *opts,
                                  const struct smtpc_dest *dest,
                                  const struct smtpc_conn_cbs *cbs, void *arg);
/* 0 = started; -1 = not idle or bad batch (nothing happens). */
int smtpc_conn_send(struct smtpc_conn *conn, const struct smtpc_batch *batch,
                    smtpc_done_cb done, void *arg);
int smtpc_conn_is_idle(const struct smtpc_conn *conn);
unsigned smtpc_conn_txn_count(const struct smtpc_conn *conn);
uint64_t smtpc_conn_age_ms(const struct smtpc_conn *conn);
uint64_t smtpc_conn_idle_ms(const struct smtpc_conn *conn);
const struct smtpc_conn_info *smtpc_conn_info(const struct smtpc_conn *conn);
/* QUIT when idle (or after the transaction in flight), then closed(). */
void smtpc_conn_close(struct smtpc_conn *conn);
void smtpc_conn_free(struct smtpc_conn *conn);

/* ---- TLS client context, shareable by many connections ---- */
/* ca_file NULL = the system CA store. NULL on error (text in err). */
struct smtpc_tls *smtpc_tls_new(const char *ca_file, char *err, size_t errlen);
void smtpc_tls_free(struct smtpc_tls *tls);

/* ---- destination safety ([delivery] allow_private_destinations) ---- */
enum smtpc_addr_class {
	SMTPC_ADDR_PUBLIC = 0,
	SMTPC_ADDR_LOOPBACK,
	SMTPC_ADDR_PRIVATE,
	SMTPC_ADDR_LINK_LOCAL,
	SMTPC_ADDR_UNSPECIFIED,
	SMTPC_ADDR_OTHER_RESERVED,   /* multicast, broadcast, reserved */
};
const char *smtpc_addr_class_name(enum smtpc_addr_class c);
enum smtpc_addr_class smtpc_addr_classify(const struct sockaddr *sa);
/* "no" (or NULL/"") -> NULL list; "yes" -> everything; else a comma list of
 * CIDRs ("127.0.0.0/8, ::1/128, 10.1.2.3"). 0 ok, -1 bad (err says why). */
int smtpc_netlist_parse(const char *spec, struct smtpc_netlist **out,
                        char *err, size_t errlen);
void smtpc_netlist_free(struct smtpc_netlist *nl);
int smtpc_netlist_match(const struct smtpc_netlist *nl,
                        const struct sockaddr *sa);
/* 1 when sa may be connected to under allow (NULL = no exceptions). */
int smtpc_dest_allowed(const struct smtpc_netlist *allow,
                       const struct sockaddr *sa);

#endif
