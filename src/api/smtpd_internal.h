/*
 * smtpd_internal.h - private to src/api: the submission server's parsers,
 * accounts, listeners and sessions. No other folder includes this file.
 *
 * Part 1, parsers (smtpd_parse.c) - pure functions, no I/O, no state:
 * command verbs, RFC 5321 paths, ESMTP parameters (SIZE, BODY, SMTPUTF8,
 * RET, ENVID, NOTIFY, ORCPT, AUTH), xtext, base64 and SASL PLAIN, CIDR lists.
 * Private to src/api; unit-tested by tests/unit/api.
 *
 * Parsers that can refuse return NULL on success or a complete reply line
 * ("553 5.1.3 ...", a static string without CRLF) on error, so a session
 * sends exactly what the parser decided.
 */
#ifndef MXB_SMTPD_INTERNAL_H
#define MXB_SMTPD_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "api/api.h"

/* A command line is at most this long including CRLF: RFC 5321's 512 plus
 * the extensions' allowances (SIZE 26, DSN 100/500, AUTH= 500) rounded up. */
#define SMTPD_LINE_MAX 2048
/* RFC 5321 4.5.3.1: path 256 octets with brackets, local part 64 */
#define SMTPD_PATH_MAX 256
#define SMTPD_LOCAL_MAX 64
#define SMTPD_DOMAIN_MAX 255
#define SMTPD_ENVID_MAX 100 /* RFC 3461 4.4 */
#define SMTPD_ORCPT_MAX 500 /* RFC 3461 4.2 */

enum smtpd_cmd {
	CMD_UNKNOWN = 0, CMD_HELO, CMD_EHLO, CMD_MAIL, CMD_RCPT, CMD_DATA,
	CMD_BDAT, CMD_RSET, CMD_NOOP, CMD_QUIT, CMD_VRFY, CMD_EXPN, CMD_HELP,
	CMD_STARTTLS, CMD_AUTH
};

/* smtpd_line_check - a command line's bytes (CRLF stripped) hold no NUL,
 * CR or LF. NULL or a refusal reply. */
const char *smtpd_line_check(const char *line, size_t len);

/* smtpd_cmd_parse - verb (case-insensitive) and the argument after one
 * space ("" if none). line is NUL-terminated without CRLF. */
enum smtpd_cmd smtpd_cmd_parse(const char *line, const char **arg);
const char *smtpd_cmd_name(enum smtpd_cmd cmd);

/* Flags of smtpd_path_parse */
#define PATH_NULL_OK 0x1 /* "<>" allowed (reverse path) */
#define PATH_UTF8_OK 0x2 /* SMTPUTF8 in effect */

enum smtpd_path_rc {
	PATH_OK = 0, PATH_SYNTAX, PATH_TOO_LONG, PATH_NEED_UTF8, PATH_BAD_IDN,
	PATH_NULL
};

/* smtpd_path_parse - "<[@a,@b:]local@domain>" at *s; on success *s points
 * past '>' and out (SMTPD_PATH_MAX + 1 bytes) holds "local@domain" (domain
 * lowercased, IDN as A-label, source route dropped) or "" for <>.
 * *utf8 is set if the local part is UTF-8. */
enum smtpd_path_rc smtpd_path_parse(const char **s, int flags, char *out,
                                    int *utf8);

/* smtpd_domain_norm - validate a domain or address literal of n bytes into
 * out (SMTPD_DOMAIN_MAX + 1 bytes): lowercase, U-labels as A-labels. */
enum smtpd_path_rc smtpd_domain_norm(const char *d, size_t n, int utf8_ok,
                                     char *out);

/* xtext (RFC 3461 4): validate; decoded (may be NULL) receives the decoded
 * text NUL-terminated. Decoded text must be printable ASCII, or also valid
 * UTF-8 when utf8_ok; never a control character. 0 ok, -1 bad. */
int smtpd_xtext_decode(const char *s, size_t n, int utf8_ok, char *decoded,
                       size_t declen);
/* smtpd_utf8_len - length of the valid UTF-8 sequence at p (0: invalid) */
size_t smtpd_utf8_len(const unsigned char *p, size_t n);

#define RET_NONE 0
#define RET_FULL 1
#define RET_HDRS 2
#define NOTIFY_NEVER   0x1
#define NOTIFY_SUCCESS 0x2
#define NOTIFY_FAILURE 0x4
#define NOTIFY_DELAY   0x8

struct smtpd_mail_args {
	uint64_t size;      /* SIZE=, 0 if not given */
	int body_8bit;      /* BODY=8BITMIME */
	int smtputf8;       /* SMTPUTF8 */
	int ret;            /* RET_* */
	char envid[SMTPD_ENVID_MAX + 1]; /* as given (xtext), "" if none */
};

struct smtpd_rcpt_args {
	unsigned notify;    /* NOTIFY_* bits, 0 if not given */
	char orcpt[SMTPD_ORCPT_MAX + 1]; /* "type;xtext" as given, "" if none */
};

/* smtpd_mail_parse - the argument of MAIL ("FROM:<path> params").
 * dsn/utf8 say which extensions are offered. */
const char *smtpd_mail_parse(const char *arg, int dsn, char *from,
                             int *from_utf8, struct smtpd_mail_args *a);
/* smtpd_rcpt_parse - the argument of RCPT ("TO:<path> params") */
const char *smtpd_rcpt_parse(const char *arg, int dsn, int utf8, char *to,
                             int *to_utf8, struct smtpd_rcpt_args *a);
/* smtpd_bdat_parse - "n [LAST]"; 0 ok, -1 bad */
int smtpd_bdat_parse(const char *arg, uint64_t *size, int *last);

/* base64 (RFC 4648, strict: padding required, no whitespace). Returns the
 * decoded length or -1. */
long smtpd_b64_decode(const char *in, size_t n, unsigned char *out,
                      size_t outcap);
/* smtpd_auth_plain - "authzid\0authcid\0passwd" into user/pass. An authzid
 * other than empty or the authcid is refused (no proxy auth). 0 / -1. */
int smtpd_auth_plain(const unsigned char *buf, size_t n, char *user,
                     size_t userlen, char *pass, size_t passlen);

/* CIDR lists: "10.0.0.0/8, ::1, 192.0.2.7" */
struct smtpd_cidrs;
struct smtpd_cidrs *smtpd_cidrs_parse(const char *list, char *err,
                                      size_t errlen);
int smtpd_cidrs_match(const struct smtpd_cidrs *c, const struct sockaddr *sa);
void smtpd_cidrs_free(struct smtpd_cidrs *c);

/* ---- Part 2, accounts (accounts.c) ---- */
struct account {
	char *user, *hash, *tenant;
	char **senders;           /* "example.com", "bob@example.com", "*" */
	size_t n_senders;
	uint64_t msgs_per_hour, rcpts_per_hour, rcpts_per_msg; /* 0 = no limit */
	uint64_t window_ms, msgs_used, rcpts_used; /* current hour's usage */
	unsigned char ok_digest[32]; /* salted SHA-256 of the last good password */
	int have_ok;
};
struct accounts;

/* accounts_load - read path; old (may be NULL) lends its hourly usage.
 * NULL with "FILE:LINE: why" in err on failure. */
struct accounts *accounts_load(const char *path, const struct accounts *old,
                               char *err, size_t errlen);
void accounts_free(struct accounts *as);
size_t accounts_count(const struct accounts *as);
struct account *accounts_find(struct accounts *as, const char *user);
/* accounts_verify - the account if user exists and pass matches, else NULL
 * (runs crypt on the calling thread: the server uses the calls below) */
struct account *accounts_verify(struct accounts *as, const char *user,
                                const char *pass);
/* accounts_verify_cached - the account if pass is its last good password
 * (no crypt) */
struct account *accounts_verify_cached(struct accounts *as, const char *user,
                                       const char *pass);
/* accounts_check_hash - the hash to check user's password against: the
 * account's, or for an unknown user a real account's (same cost); NULL
 * without accounts */
const char *accounts_check_hash(const struct accounts *as, const char *user);
/* accounts_hash_check - 1 if crypt(pass) matches hash. Any thread. */
struct crypt_data;
int accounts_hash_check(const char *hash, const char *pass,
                        struct crypt_data *cd);
/* accounts_remember - after a good check against hash: the account, with
 * pass remembered, or NULL if the user is gone or its hash changed */
struct account *accounts_remember(struct accounts *as, const char *user,
                                  const char *hash, const char *pass);
int account_sender_ok(const struct account *a, const char *sender);
int account_msg_allowed(struct account *a, uint64_t now);
int account_rcpt_allowed(struct account *a, uint64_t now, uint64_t pending);
void account_charge(struct account *a, uint64_t now, uint64_t rcpts);

/* ---- Part 3, server and sessions (smtpd*.c) ---- */
struct event_base;
struct event;
struct bufferevent;
struct evbuffer;
struct evconnlistener;
struct config;
struct config_listen;
struct queue;
struct queue_writer;
struct smtpd_crypt;
struct smtpd_crypt_job;

#define SMTPD_JUNK_MAX 100        /* NOOP/VRFY/HELP/... before they count as errors */
#define SMTPD_AUTH_FAIL_MAX 5      /* failed AUTH per client IP ... */
#define SMTPD_AUTH_FAIL_WINDOW_MS (10 * 60 * 1000ull) /* ... per 10 minutes */
#define SMTPD_HDR_MAX (64 * 1024)  /* header bytes scanned for Message-ID/Date */
#define SMTPD_READ_HIGH (256 * 1024) /* input buffered per session at most */
#define SMTPD_WRITE_HIGH (256 * 1024) /* replies the client left unread, at most */
#define SMTPD_BACKLOG_MAX (64ull << 20) /* store backlog that pauses message input */
#define SMTPD_THROTTLE_MS 10       /* re-check of a paused session */
#define SMTPD_RATE_WINDOW_MS 60000ull /* max_connections_per_ip_per_minute */
#define SMTPD_GREETED_TTL_MS (24 * 3600 * 1000ull) /* greet_wait pass kept */
#define SMTPD_GREETED_MAX 65536    /* addresses remembered as greeted */
#define SMTPD_SWEEP_MS 60000       /* expired per-address entries dropped */

/* Per client address counters (connections; failed AUTH) */
struct smtpd_ipent {
	struct smtpd_ipent *next;
	uint64_t count;
	uint64_t since_ms;
	char ip[48];
};
struct smtpd_iptab {
	struct smtpd_ipent *b[512];
	size_t n;
};
struct smtpd_ipent *smtpd_ip_get(struct smtpd_iptab *t, const char *ip,
                                 int create);
void smtpd_ip_put(struct smtpd_iptab *t, struct smtpd_ipent *e); /* count 0: gone */
void smtpd_ip_clear(struct smtpd_iptab *t);

struct smtpd_listener {
	struct smtpd *sd;
	const struct config_listen *cfg;
	struct evconnlistener *lev;
	struct smtpd_cidrs *trusted;
	SSL_CTX *tls;             /* NULL: no STARTTLS */
	struct accounts *accounts; /* NULL: no AUTH */
	char *bound;              /* "unix:PATH" or "HOST:PORT" for logs */
	int is_unix;
	int auth_required;
	uint64_t nconn;
	struct smtpd_iptab rate;  /* new connections per client IP, this minute */
};

struct smtpd {
	struct event_base *base;
	const struct config *cfg;
	struct queue *q;
	struct smtpd_listener *ls;
	size_t nls;
	struct smtpd_session *sessions; /* doubly linked */
	struct smtpd_iptab conns;     /* connections per client IP */
	struct smtpd_iptab authfail;  /* failed AUTH per client IP */
	struct smtpd_crypt *crypt;    /* password checks (NULL: no accounts) */
	struct smtpd_iptab greeted;   /* addresses that waited for a greeting */
	struct event *sweep;          /* drops expired per-address entries */
	char hostname[256];
	uint64_t next_sid;
	int stopping;
	struct smtpd_stats stats;     /* smtpd_stats.c */
};

enum smtpd_state {
	SS_CMD = 0,     /* reading command lines */
	SS_AUTH,        /* reading an AUTH continuation line */
	SS_DATA,        /* DATA body until CRLF.CRLF */
	SS_BDAT,        /* a BDAT chunk of known size */
	SS_COMMIT,      /* end of message sent to the store; input paused */
	SS_TLS_WAIT,    /* 220 to STARTTLS being flushed; input paused */
	SS_CLOSING,     /* last reply being flushed */
	SS_AUTH_WAIT,   /* password being checked off the loop; input paused */
	SS_GREET        /* greet_wait: no greeting yet; any input is refused */
};

/* Scanner states of message data (smtpd_data.c) */
enum smtpd_dstate { D_BOL = 0, D_MID, D_CR, D_DOT, D_DOTCR };

struct smtpd_rcpt {
	char *addr;
	unsigned notify;
	char *orcpt;             /* NULL if none */
};

struct smtpd_session {
	struct smtpd_session *prev, *next;
	struct smtpd *sd;        /* NULL once orphaned by smtpd_free */
	struct smtpd_listener *l;
	char id[24];
	int fd;
	struct bufferevent *bev; /* TLS only; NULL on a plain socket */
	struct event *rev, *wev; /* plain socket only */
	struct evbuffer *in;     /* client input (own, or the TLS bev's) */
	struct evbuffer *out;    /* replies not yet handed to the socket */
	int own_in, reading;
	int bev_owns_fd;         /* TLS bufferevent closes fd on free */
	struct event *timer;
	struct sockaddr_storage peer;
	char ip[48];             /* "" on Unix sockets */
	struct smtpd_ipent *ipent;
	enum smtpd_state state;
	/* session */
	char helo[256];
	int esmtp, trusted, tls, skipping;
	char tls_info[128];
	char *user;              /* authenticated account, or NULL */
	int auth_mech;           /* 1 PLAIN, 2 LOGIN (while SS_AUTH) */
	struct smtpd_crypt_job *auth_job; /* check in flight (SS_AUTH_WAIT) */
	char auth_user[256];
	unsigned errors, junk, msgs;
	uint64_t last_ms, cmd_start_ms;
	uint64_t greet_ms;       /* SS_GREET: when the greeting is due */
	uint64_t commit_start_us;
	/* transaction */
	int in_mail, txn_failed, used_bdat, used_data;
	char sender[SMTPD_PATH_MAX + 1];
	struct smtpd_mail_args margs;
	int utf8;                /* some address needed SMTPUTF8 */
	struct smtpd_rcpt *rcpts;
	size_t n_rcpts, cap_rcpts;
	struct queue_writer *w;
	/* message data */
	enum smtpd_dstate ds;
	const char *data_err;    /* first reason the data is refused */
	char data_err_buf[128];
	uint64_t data_bytes;
	uint64_t bdat_left;
	int bdat_last;
	int bdat_discard;        /* chunk read and dropped (no transaction) */
	char *hdr;               /* header section being scanned */
	size_t hdr_len;
	int hdr_done;
	/* lifecycle */
	int commit_pending, gone, stop_after, freeing;
	int throttled;           /* message input paused: store backlog */
};

/* smtpd_stats.c: count the reply just added to out at off */
void smtpd_stats_reply(struct smtpd *sd, struct evbuffer *out, size_t off);
/* smtpd.c */
void smtpd_session_unlink(struct smtpd_session *s);
int smtpd_conn_trusted(struct smtpd_listener *l, const struct sockaddr *sa);
/* greet_wait: does s wait for its greeting (not yet passed, not exempt)? */
int smtpd_greet_wait(struct smtpd_session *s);
void smtpd_greet_passed(struct smtpd_session *s); /* remember its address */
/* smtpd_tls.c */
SSL_CTX *smtpd_tls_ctx(const char *cert, const char *key, char *err,
                       size_t errlen);
/* smtpd_session.c */
void smtpd_session_new(struct smtpd_listener *l, int fd,
                       const struct sockaddr *sa, int salen);
void smtpd_session_reply(struct smtpd_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void smtpd_session_close(struct smtpd_session *s, const char *reply);
void smtpd_session_shutdown(struct smtpd_session *s);
void smtpd_session_free(struct smtpd_session *s);
void smtpd_session_error(struct smtpd_session *s);
void smtpd_session_process(struct smtpd_session *s);
void smtpd_session_finish(struct smtpd_session *s); /* free or re-arm */
void smtpd_session_on_input(struct smtpd_session *s);
void smtpd_session_on_drained(struct smtpd_session *s);
void smtpd_session_on_lost(struct smtpd_session *s, int error);
void smtpd_session_on_tls(struct smtpd_session *s);
/* smtpd_io.c */
int smtpd_io_plain(struct smtpd_session *s);
int smtpd_io_tls(struct smtpd_session *s);
void smtpd_io_reading(struct smtpd_session *s, int on);
int smtpd_io_flush(struct smtpd_session *s);
int smtpd_io_idle(struct smtpd_session *s);
int smtpd_io_input_waiting(struct smtpd_session *s); /* unread bytes on the socket */
size_t smtpd_io_pending(struct smtpd_session *s); /* output bytes not yet sent */
const char *smtpd_io_tls_info(struct smtpd_session *s, char *buf, size_t len);
void smtpd_io_free(struct smtpd_session *s);
void smtpd_txn_reset(struct smtpd_session *s);
struct account *smtpd_session_account(struct smtpd_session *s);
/* smtpd_cmd.c */
void smtpd_cmd_dispatch(struct smtpd_session *s, char *line);
/* smtpd_auth.c */
void smtpd_auth_start(struct smtpd_session *s, const char *arg);
void smtpd_auth_line(struct smtpd_session *s, const char *line);
/* the password thread's answer for s (loop thread) */
void smtpd_auth_on_checked(struct smtpd_session *s, const char *user,
                           const char *hash, const char *pass, int ok);
/* smtpd_crypt.c */
struct smtpd_crypt *smtpd_crypt_new(struct event_base *base);
void smtpd_crypt_free(struct smtpd_crypt *c);
/* queue a check of pass against hash for s; -1 if too many are waiting */
int smtpd_crypt_submit(struct smtpd_crypt *c, struct smtpd_session *s,
                       const char *user, const char *pass, const char *hash);
void smtpd_crypt_cancel(struct smtpd_session *s); /* s is going away */
/* smtpd_data.c */
void smtpd_data_start(struct smtpd_session *s);
void smtpd_bdat_start(struct smtpd_session *s, uint64_t size, int last);
/* consume message input; 0 need more input, 1 phase over */
int smtpd_data_consume(struct smtpd_session *s);
void smtpd_data_abort(struct smtpd_session *s);

#endif
