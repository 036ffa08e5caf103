/*
 * smtpc_internal.h - structures shared by the files of src/smtpclient only.
 * No other folder includes this header.
 */
#ifndef MXB_SMTPC_INTERNAL_H
#define MXB_SMTPC_INTERNAL_H

#include "core/core.h"
#include "smtpclient/smtpc.h"

#include <sys/socket.h>

struct bufferevent;
struct event;
struct evbuffer;
typedef struct ssl_ctx_st SSL_CTX;

/* Bounds against hostile servers (RFC 5321 4.5.3.1.5 says 512 for reply
 * lines; real servers exceed it a little, so we allow the text-line limit
 * of 1000 and stop there). */
#define SMTPC_LINE_MAX        1000    /* one reply line, CRLF included */
#define SMTPC_REPLY_MAX_LINES 100     /* lines of one multi-line reply */
#define SMTPC_REPLY_MAX_BYTES 32768   /* bytes of one multi-line reply */

/* Body streaming: read chunk, and output buffer water marks. */
#define SMTPC_CHUNK           16384
#define SMTPC_OUT_HIGH        (128 * 1024)
#define SMTPC_OUT_LOW         (32 * 1024)
/* BDAT bodies up to this size ride in the pipelined MAIL/RCPT group. */
#define SMTPC_BDAT_INLINE_MAX 65536

/* ---- smtpc_reply.c ---- */
struct smtpc_reply {
	int code;
	int nlines;
	size_t nbytes;
	char enhanced[16];
	char text[SMTPC_TEXT_MAX];
	size_t textlen;
	const char *error;           /* static text when BAD */
};
enum smtpc_reply_rv { SMTPC_REPLY_MORE, SMTPC_REPLY_DONE, SMTPC_REPLY_BAD };

void smtpc_reply_reset(struct smtpc_reply *r);
/* Feed one line (without CRLF). textp/textlenp (may be NULL) get the raw
 * text after "ddd-"/"ddd " for capability parsing. */
enum smtpc_reply_rv smtpc_reply_feed(struct smtpc_reply *r, const char *line,
                                     size_t len, const char **textp,
                                     size_t *textlenp);
/* Enhanced code ("x.y.z") at the start of text whose class agrees with
 * code: copied to out; returns how many chars to skip (code + space) or 0. */
size_t smtpc_enhanced_parse(int code, const char *text, size_t len, char *out,
                            size_t outsz);
/* Append src to dst (NUL-terminated, *dlen its length): control and
 * non-ASCII bytes become '?', tab a space; truncated text ends in "...". */
void smtpc_text_append(char *dst, size_t dstsz, size_t *dlen, const char *src,
                       size_t len);

struct smtpc_caps {
	int pipelining, chunking, dsn, smtputf8, eightbitmime, starttls;
	uint64_t size;
};
/* One EHLO reply line after the first ("PIPELINING", "SIZE 1000"). */
void smtpc_caps_parse_line(struct smtpc_caps *c, const char *text, size_t len);

/* ---- smtpc_body.c ---- */
#define SMTPC_BODY_LINE_MAX 998     /* RFC 5322 2.1.1, CRLF excluded */

struct smtpc_dot {
	unsigned col;   /* octets on the current wire line */
	int bol;        /* at the beginning of a line */
	int cr;         /* a CR is pending (may start CRLF) */
	int dotstuff;   /* DATA (1) or BDAT (0) */
};
void smtpc_dot_init(struct smtpc_dot *d, int dotstuff);
/* out must hold 2 * len + 8 bytes; returns bytes written. Lines longer
 * than SMTPC_BODY_LINE_MAX are broken with CRLF SPACE (as Postfix does). */
size_t smtpc_dot_encode(struct smtpc_dot *d, const char *in, size_t len,
                        char *out);
/* final CRLF if needed, then ".\r\n" for DATA; out holds 8 bytes */
size_t smtpc_dot_finish(struct smtpc_dot *d, char *out);

/* ---- smtpc_tls.c ---- */
SSL_CTX *smtpc_tls_ctx(struct smtpc_tls *tls);

/* ---- smtpc_addr / validation (smtpc_txn.c) ---- */
/* 1 when addr can go into MAIL FROM:<>/RCPT TO:<> as is */
int smtpc_addr_valid(const char *addr, int utf8_ok);


/* ---- the session (smtpc_session.c) and its transaction (smtpc_txn.c) ---- */
enum smtpc_state {
	SMTPC_S_INIT = 0,
	SMTPC_S_CONNECT,
	SMTPC_S_BANNER,
	SMTPC_S_EHLO,
	SMTPC_S_HELO,
	SMTPC_S_STARTTLS,
	SMTPC_S_TLS,            /* handshake in progress */
	SMTPC_S_READY,          /* idle, between transactions */
	SMTPC_S_RSET,
	SMTPC_S_MAIL,
	SMTPC_S_RCPT,
	SMTPC_S_DATA,
	SMTPC_S_BODY,           /* streaming the body, no reply due yet */
	SMTPC_S_EOM,            /* final dot / BDAT LAST sent, reply due */
	SMTPC_S_QUIT,
	SMTPC_S_CLOSED,
};
const char *smtpc_state_name(enum smtpc_state s);

/* per recipient progress inside a transaction */
enum { SMTPC_RS_UNSENT = 0, SMTPC_RS_SENT, SMTPC_RS_ACCEPTED, SMTPC_RS_DONE };

struct smtpc_txn {
	const struct smtpc_batch *batch;
	smtpc_done_cb done;
	void *arg;
	struct smtpc_result res;
	unsigned char *rs;            /* SMTPC_RS_* per recipient */
	size_t rcpt_next;             /* "sent up to" cursor */
	size_t rcpt_ans;              /* "answered up to" cursor */
	size_t n_sent, n_answered, n_accepted;
	int rset_sent, mail_sent, mail_failed, data_sent, bdat, bdat_inline;
	int last_sent, dummy_dot, finished;
	unsigned bdat_outstanding;
	int fail_code;                /* MAIL refusal applied to every RCPT */
	char fail_enh[16], fail_text[SMTPC_TEXT_MAX];
	const char *first_domain;     /* of the first recipient */
	const char *acc_domain;       /* of the first accepted one */
	struct smtpc_dot dot;
	uint64_t body_size, body_read;
	size_t rbuf_have;
	char reason[256];
};

struct smtpc_target {
	size_t mx;                    /* index into mx_names */
	char *addr;
};

struct smtpc_conn {
	struct event_base *base;
	struct smtpc_opts opts;       /* strings copied below */
	char *ehlo_name, *source_addr, *site;
	struct smtpc_conn_cbs cbs;
	void *arg;
	char sid[16];
	char **mx_names;
	size_t n_mx;
	struct smtpc_target *targets;
	size_t n_targets, next_target;
	unsigned attempts, unsafe_skipped;
	enum smtpc_state state;
	struct bufferevent *bev;
	struct event *timer, *deferred;
	struct smtpc_reply reply;
	unsigned expect;              /* replies owed by the server */
	struct smtpc_caps caps;
	int pipelining, chunking;     /* offered and enabled */
	int tls_on, tls_fallback, no_tls;
	struct smtpc_tls *own_tls;
	char tls_proto[32], tls_cipher[96];
	const char *cur_mx;
	char cur_addr[64];
	struct smtpc_conn_info info;
	struct smtpc_txn *txn;
	int need_rset, close_pending, ready_sent, closed_sent;
	int in_cb, free_pending;
	unsigned txn_count;
	uint64_t t_connected, t_last;
	enum smtpc_error err;
	char reason[512];
	char *rbuf, *sbuf;            /* body read / encode buffers */
};

/* smtpc_session.c, for smtpc_txn.c */
void smtpc_enter_state(struct smtpc_conn *c, enum smtpc_state st);
void smtpc_session_fail(struct smtpc_conn *c, enum smtpc_error err,
                        const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void smtpc_session_write(struct smtpc_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
struct evbuffer *smtpc_session_output(struct smtpc_conn *c);
void smtpc_session_arm(struct smtpc_conn *c, uint64_t ms);
void smtpc_session_defer(struct smtpc_conn *c);
void smtpc_session_idle(struct smtpc_conn *c);
void smtpc_conn_enter(struct smtpc_conn *c);
int smtpc_conn_leave(struct smtpc_conn *c);
void smtpc_session_on_timer(int fd, short what, void *arg);
void smtpc_session_on_deferred(int fd, short what, void *arg);
void smtpc_session_setcb(struct smtpc_conn *c, struct bufferevent *bev);

/* smtpc_connect.c */
void smtpc_session_drop(struct smtpc_conn *c);
void smtpc_session_next_target(struct smtpc_conn *c, enum smtpc_error err,
                               const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void smtpc_session_end(struct smtpc_conn *c, enum smtpc_error err,
                       const char *reason, const struct smtpc_reply *r);

/* smtpc_txn.c, for smtpc_session.c */
void smtpc_txn_send_state(struct smtpc_conn *c);   /* enter_state of RSET..EOM */
void smtpc_txn_on_reply(struct smtpc_conn *c, const struct smtpc_reply *r);
void smtpc_txn_pump(struct smtpc_conn *c);          /* output drained */
/* small body as one "BDAT n LAST" in the pipelined group; -1 read error */
int smtpc_txn_bdat_inline(struct smtpc_conn *c, struct smtpc_txn *t);
void smtpc_txn_on_deferred(struct smtpc_conn *c);
/* the session is going away: settle every recipient, call done() */
void smtpc_txn_abort(struct smtpc_conn *c, enum smtpc_error err,
                     const char *reason, const struct smtpc_reply *r);
void smtpc_txn_free(struct smtpc_txn *t);

/* smtpc_tls.c, for smtpc_session.c */
int smtpc_tls_start(struct smtpc_conn *c);          /* 0 ok, -1 failed */
void smtpc_tls_record(struct smtpc_conn *c);        /* after the handshake */
const char *smtpc_tls_error(struct smtpc_conn *c, char *buf, size_t len);

#endif
