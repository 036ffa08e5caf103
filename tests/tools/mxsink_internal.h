/*
 * mxsink_internal.h - shared types of the test MX sink (tests/tools/mxsink*).
 *
 * The sink is one single-threaded libevent process: listeners own the
 * behaviour (parsed from the JSON config, replaced on SIGHUP), sessions own
 * one connection and at most one open transaction. Nothing here is used
 * outside tests/tools.
 */
#ifndef MXSINK_INTERNAL_H
#define MXSINK_INTERNAL_H

#include <regex.h>
#include <stdint.h>
#include <stdio.h>

#include <event2/event.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

/* The points of a session where a reply is given. */
enum phase {
	PH_GREETING, PH_EHLO, PH_HELO, PH_MAIL, PH_RCPT, PH_DATA, PH_DOT,
	PH_BDAT, PH_RSET, PH_NOOP, PH_QUIT, PH_STARTTLS, PH_OTHER, PH_COUNT
};

struct rcpt_rule {
	char *substr;          /* substring match (case-insensitive), or NULL */
	regex_t re;            /* used when substr is NULL */
	char *reply;
};

struct peer_beh;

/* What a listener does; every field has a default (mxsink_config.c). */
struct behaviour {
	char *hostname;
	char *replies[PH_COUNT];      /* NULL = built-in reply */
	unsigned delay_ms[PH_COUNT];  /* per phase; delay_all if 0 */
	unsigned delay_all;
	int drop_at, hang_at;         /* a phase, or -1 */
	struct rcpt_rule *rules;
	size_t n_rules;
	unsigned max_rcpts;           /* 0 = unlimited */
	char *max_rcpts_reply;
	int one_domain;
	char *one_domain_reply;
	unsigned max_messages;        /* per connection, 0 = unlimited */
	char *max_messages_reply;
	unsigned tempfail_every;      /* 0 = never */
	int tempfail_at;              /* PH_GREETING, _MAIL, _RCPT or _DOT */
	char *tempfail_reply;
	int require_tls;
	int strict;                   /* refuse params of unadvertised exts */
	int pipelining, eightbitmime, smtputf8, chunking, dsn, starttls;
	int enhancedstatuscodes;
	uint64_t size;                /* 0 = SIZE not advertised/enforced */
	struct peer_beh *peers;       /* "peers": per client address */
	size_t n_peers;
};

struct peer_beh {                 /* what the listener does for one client */
	char *ip;
	struct behaviour *beh;
};

struct sink;

struct listener {
	struct sink *sink;
	char addr[80];                /* "127.0.1.5:2525" */
	char ip[64];
	struct evconnlistener *evl;
	struct behaviour *beh;
	unsigned long tempfail_count;
};

struct sink {
	struct event_base *base;
	struct listener *listeners;
	size_t n_listeners;
	const char *config_path;      /* NULL = all defaults */
	const char *save_dir;
	SSL_CTX *tls;
	FILE *log;
	unsigned generation;          /* config reloads so far */
	unsigned idle_timeout_s;
	uint64_t next_conn;
	struct session *sessions;     /* open ones, for shutdown */
};

enum sstate { ST_CMD, ST_DATA, ST_BDAT, ST_HANG, ST_CLOSING };
enum after { AFTER_NONE, AFTER_CLOSE, AFTER_TLS };

struct txn {
	unsigned n;                   /* 1-based within the connection */
	json_t *rec;                  /* the log record being built */
	json_t *rcpts;
	char first_domain[256];
	unsigned accepted;
	int method_bdat, method_data;
	EVP_MD_CTX *md;
	uint64_t size;
	FILE *save;
	int too_big;
	int dot_state;                /* DATA unstuffing state (mxsink_body.c) */
	unsigned chunks;
};

struct session {
	struct sink *sink;
	struct listener *lst;
	struct bufferevent *bev;
	struct event *timer, *free_ev;
	uint64_t id;
	char peer[64];
	int peer_port;
	char helo[256];
	const char *helo_cmd;
	int esmtp, tls;
	enum sstate state;
	int paused;
	char *pending;                /* delayed reply, wire form */
	enum after pending_after;
	unsigned transactions, messages, commands;
	struct txn *tx;
	uint64_t bdat_left;
	int bdat_last, bdat_ok;
	const char *close_reason;
	char greeting[256];
	uint64_t start_ms;
	struct session *prev, *next;  /* on sink->sessions */
};

/* mxsink_config.c */
int config_load_file(struct sink *sk, char *err, size_t errlen);
void behaviour_free(struct behaviour *b);
const char *phase_name(enum phase ph);

/* mxsink_session.c */
void session_accept(struct listener *l, int fd, struct sockaddr *sa);
/* the behaviour for this session's client (its "peers" entry, else the
 * listener's) */
const struct behaviour *session_beh(const struct session *s);
void session_reply(struct session *s, enum phase ph, const char *text,
                   enum after after);
const char *session_default(struct session *s, enum phase ph,
                            const char *builtin);
void session_close(struct session *s, const char *reason);
json_t *session_sent_text(struct session *s, enum phase ph, const char *text);
int session_tempfail_hit(struct session *s, enum phase ph);
int reply_is(const char *text, char digit);
void session_close_all(struct sink *sk);

/* mxsink_cmd.c */
void cmd_dispatch(struct session *s, char *line);
void cmd_greet(struct session *s);

/* mxsink_body.c */
void body_begin(struct session *s);
int body_data_feed(struct session *s);   /* 1 = end of DATA reached */
int body_bdat_feed(struct session *s);   /* 1 = chunk complete */
void body_end(struct session *s);        /* final reply for DATA/BDAT LAST */
void body_chunk_end(struct session *s);  /* reply to a BDAT chunk */

/* mxsink_log.c */
json_t *log_str(const char *s);
void txn_new(struct session *s);
void txn_end(struct session *s, const char *status);
void log_connection(struct session *s);
void log_connect(struct session *s);
void log_event(struct sink *sk, json_t *rec);

#endif
