/*
 * bounce.h - the one public header of src/bounce: what a remote reply
 * means (classification into bounce categories and a site signal), RFC
 * 3464 delivery status notifications, and the pure policy decisions
 * around them (who gets a DSN, which bounces suppress an address).
 *
 * Everything here is pure: no I/O except bounce_rules_load /
 * bounce_rules_add_file (start-up and reload), no event loop, no store.
 * The caller (the scheduler) owns the store and feeds these functions
 * plain values; the input structs below are this module's own, so bounce
 * depends on src/core only. A loaded rule set is read-only and may be
 * shared by threads; swap it on reload and free the old one.
 */
#ifndef MXB_BOUNCE_H
#define MXB_BOUNCE_H

#include <stddef.h>
#include <stdint.h>

/* ======================= classification ======================= */

/* Bounce categories: PowerMTA's 17, plus blocklisted and throttled.
 * Values are stable (they may be stored or counted by index). */
enum bounce_category {
	BOUNCE_CAT_OTHER = 0,
	BOUNCE_CAT_BAD_MAILBOX,
	BOUNCE_CAT_BAD_DOMAIN,
	BOUNCE_CAT_INACTIVE_MAILBOX,
	BOUNCE_CAT_QUOTA_ISSUES,
	BOUNCE_CAT_SPAM_RELATED,
	BOUNCE_CAT_POLICY_RELATED,
	BOUNCE_CAT_CONTENT_RELATED,
	BOUNCE_CAT_VIRUS_RELATED,
	BOUNCE_CAT_INVALID_SENDER,
	BOUNCE_CAT_RELAYING_ISSUES,
	BOUNCE_CAT_ROUTING_ERRORS,
	BOUNCE_CAT_PROTOCOL_ERRORS,
	BOUNCE_CAT_BAD_CONNECTION,
	BOUNCE_CAT_NO_ANSWER_FROM_HOST,
	BOUNCE_CAT_BAD_CONFIGURATION,
	BOUNCE_CAT_MESSAGE_EXPIRED,
	BOUNCE_CAT_BLOCKLISTED,
	BOUNCE_CAT_THROTTLED,
	BOUNCE_CAT_COUNT
};

/* What a reply means for the *site* (not only the recipient). */
enum bounce_signal {
	BOUNCE_SIG_NONE = 0,    /* recipient-level: defer/bounce this one only */
	BOUNCE_SIG_CONNECTION,  /* connection pressure: fewer connections */
	BOUNCE_SIG_REPUTATION,  /* rate / reputation / listing: suspend site */
	BOUNCE_SIG_COUNT
};

/* Where in the SMTP dialogue (or before it) the reply came. */
enum bounce_phase {
	BOUNCE_PHASE_ANY = 0,   /* unknown */
	BOUNCE_PHASE_DNS,       /* MX/address resolution (our own reason) */
	BOUNCE_PHASE_CONNECT,   /* TCP connect / TLS handshake, no reply */
	BOUNCE_PHASE_GREETING,  /* the 220 banner */
	BOUNCE_PHASE_EHLO,      /* EHLO / HELO */
	BOUNCE_PHASE_STARTTLS,
	BOUNCE_PHASE_MAIL,
	BOUNCE_PHASE_RCPT,
	BOUNCE_PHASE_DATA,      /* DATA -> 354 (or BDAT start) */
	BOUNCE_PHASE_EOM,       /* after the final dot / BDAT LAST */
	BOUNCE_PHASE_LOCAL,     /* our own decision: expiry, admin, loop */
	BOUNCE_PHASE_COUNT
};

struct bounce_reply {
	enum bounce_phase phase;
	int code;               /* 250, 450, 550...; 0 = no reply (our reason) */
	const char *enhanced;   /* "5.1.1" or NULL/""; if absent, a leading
	                         * "x.y.z " in text is used */
	const char *text;       /* reply text (lines joined), or NULL */
	const char *mx_host;    /* MX host name that answered, or NULL */
};

struct bounce_class {
	enum bounce_category cat;
	enum bounce_signal sig;
	int permanent;          /* 1: 5xx (bounce); 0: 4xx / no reply (retry) */
	int rule;               /* index of the rule that matched, -1 = none */
};

struct bounce_rules;

/* An empty rule set (everything classifies as "other"). */
struct bounce_rules *bounce_rules_new(void);
/* Append one rule line (syntax: docs/bounces.md). Blank lines and
 * comments are accepted and ignored. origin/lineno name the line in
 * errors ("origin:lineno: ..."); origin may be NULL. 0 ok, -1 + err. */
int bounce_rules_add_line(struct bounce_rules *r, const char *line,
                          const char *origin, unsigned lineno,
                          char *err, size_t errlen);
/* Append every rule of a file; nothing is appended on error. */
int bounce_rules_add_file(struct bounce_rules *r, const char *path,
                          char *err, size_t errlen);
/* Append the shipped rules (contrib/bounce-rules.conf, compiled in). */
void bounce_rules_add_builtin(struct bounce_rules *r);
/* new + add_file; NULL + "file:line: what" in err on error. */
struct bounce_rules *bounce_rules_load(const char *path, char *err,
                                       size_t errlen);
/* new + add_builtin. */
struct bounce_rules *bounce_rules_builtin(void);
size_t bounce_rules_count(const struct bounce_rules *r);
/* "file:line" of rule i, for logs ("" if out of range). */
const char *bounce_rules_origin(const struct bounce_rules *r, int i);
void bounce_rules_free(struct bounce_rules *r); /* NULL: no-op */

/* First matching rule wins; with no match: "other", signal none.
 * permanent follows the basic code (5xx), else the enhanced class. */
struct bounce_class bounce_classify(const struct bounce_rules *r,
                                    const struct bounce_reply *reply);

/* Names as in the rules file and logs ("bad-mailbox", "reputation",
 * "rcpt"); parse returns 0 ok, -1 unknown. */
const char *bounce_category_name(enum bounce_category c);
int bounce_category_parse(const char *s, enum bounce_category *out);
const char *bounce_signal_name(enum bounce_signal s);
int bounce_signal_parse(const char *s, enum bounce_signal *out);
const char *bounce_phase_name(enum bounce_phase p);
int bounce_phase_parse(const char *s, enum bounce_phase *out);

/* ======================= DSN policy ======================= */

/* RFC 3461 NOTIFY bits: the same values as the store's QUEUE_NOTIFY_*;
 * 0 = NOTIFY not given. */
#define BOUNCE_NOTIFY_NEVER   0x1u
#define BOUNCE_NOTIFY_SUCCESS 0x2u
#define BOUNCE_NOTIFY_FAILURE 0x4u
#define BOUNCE_NOTIFY_DELAY   0x8u

/* RFC 3464 Action values. */
enum bounce_action {
	BOUNCE_ACTION_FAILED = 0,
	BOUNCE_ACTION_DELAYED,
	BOUNCE_ACTION_DELIVERED,
	BOUNCE_ACTION_RELAYED,
	BOUNCE_ACTION_EXPANDED
};
const char *bounce_action_name(enum bounce_action a);

/* RFC 3461 RET: the same values as the store's QUEUE_RET_*. */
enum bounce_ret { BOUNCE_RET_UNSET = 0, BOUNCE_RET_FULL, BOUNCE_RET_HDRS };

/* Does this recipient's outcome earn a DSN to the sender? Never to the
 * null sender ("" or NULL or "<>"); NOTIFY=NEVER: never; NOTIFY given:
 * only for the conditions it names (delivered/relayed/expanded need
 * SUCCESS); NOTIFY not given: failures yes, delays if delay_by_default,
 * successes no. 1 = yes, 0 = no. */
int bounce_should_dsn(const char *sender, unsigned notify,
                      enum bounce_action action, int delay_by_default);

/* Delay warnings: is a "delayed" DSN due now for a recipient queued since
 * submit_ms and last warned at last_warn_ms (0 = never)? First warning
 * at submit + delay_ms, then at most once per interval_ms (0 = only
 * once). delay_ms == 0 means warnings are off. 1 = due. */
int bounce_delay_warning_due(uint64_t submit_ms, uint64_t last_warn_ms,
                             uint64_t now_ms, uint64_t delay_ms,
                             uint64_t interval_ms);

/* ======================= DSN composition ======================= */

struct bounce_dsn_rcpt {
	const char *address;      /* final recipient (RCPT TO), required */
	const char *orcpt;        /* ORCPT "rfc822;x@y" as received, or NULL */
	enum bounce_action action;
	const char *status;       /* "5.1.1"; NULL = from enhanced/code/action */
	const char *remote_mta;   /* MX host that answered, or NULL */
	int code;                 /* remote reply code; 0 = our own reason */
	const char *enhanced;     /* remote enhanced code, or NULL */
	const char *text;         /* reply text or our reason, or NULL */
	uint64_t last_attempt_ms; /* 0 = no attempt (field omitted) */
	uint64_t retry_until_ms;  /* delayed: Will-Retry-Until; 0 = omit */
};

/* Reads the original message (as stored: header, blank line, body).
 * Returns bytes read (> 0), 0 at the end, -1 on error. */
typedef long (*bounce_read_fn)(void *arg, void *buf, size_t len);
/* Receives the DSN bytes in order. 0 ok, -1 stops composition. */
typedef int (*bounce_write_fn)(void *arg, const void *buf, size_t len);

struct bounce_dsn {
	const char *reporting_mta; /* our host name (From, Reporting-MTA) */
	const char *sender;        /* original envelope sender = DSN's To */
	const char *envid;         /* ENVID, or NULL */
	enum bounce_ret ret;       /* UNSET acts as HDRS */
	uint64_t arrival_ms;       /* when we accepted the original */
	const char *queue_id;      /* original's id (text, X-Mxbatch-Queue-Id) */
	const struct bounce_dsn_rcpt *rcpts;
	size_t n_rcpts;            /* >= 1 */
	/* The original message; read may be NULL (nothing is returned). */
	bounce_read_fn read;
	void *read_arg;
	uint64_t original_size;    /* bytes read will return */
	uint64_t max_return;       /* RET=FULL limit; 0 = 1 MiB default */
	/* Fixed values for reproducible output; 0/NULL = now / generated. */
	uint64_t date_ms;
	const char *message_id;    /* "<...>" of the DSN itself */
};

enum bounce_dsn_status {
	BOUNCE_DSN_OK = 0,
	BOUNCE_DSN_EINVAL,         /* no recipient, no sender, no host */
	BOUNCE_DSN_EREAD,          /* read callback failed */
	BOUNCE_DSN_EWRITE          /* write callback failed */
};

struct bounce_dsn_info {
	uint64_t size;             /* bytes written */
	int returned;              /* 0 none, 1 headers, 2 full message */
	int truncated;             /* RET=FULL asked, limit hit: headers */
};

/* Write the DSN message (header + multipart/report body, CRLF lines,
 * no line over 998 octets of ours) to write(). The original is streamed
 * through d->read, never held whole. The DSN's envelope is MAIL FROM:<>
 * and RCPT TO:<d->sender>; if the original was 8-bit, so is this.
 * info may be NULL. */
enum bounce_dsn_status bounce_dsn_write(const struct bounce_dsn *d,
                                        bounce_write_fn write, void *warg,
                                        struct bounce_dsn_info *info);
const char *bounce_dsn_status_text(enum bounce_dsn_status st);

/* A growable buffer usable as a bounce_write_fn (tests, small DSNs). */
struct bounce_buf {
	char *data;                /* NUL-terminated after each write */
	size_t len, cap;
};
int bounce_buf_write(void *buf, const void *p, size_t len);
void bounce_buf_release(struct bounce_buf *b); /* frees data, zeroes */

/* ======================= suppression ======================= */

/* How long each kind of hard bounce suppresses the address; 0 = never. */
struct bounce_suppress_policy {
	uint64_t bad_mailbox_ms;
	uint64_t bad_domain_ms;
	uint64_t inactive_mailbox_ms;
};
/* Defaults: bad-mailbox 30 days, bad-domain 3 days, inactive 30 days. */
void bounce_suppress_defaults(struct bounce_suppress_policy *p);
/* For how long a classified outcome suppresses its recipient (ms), 0 =
 * not at all. Only permanent, recipient-level categories suppress. */
uint64_t bounce_suppress_for(const struct bounce_suppress_policy *p,
                             const struct bounce_class *c);
/* The suppression-list key of an address: trimmed, angle brackets
 * removed, ASCII-lowercased. 0 ok, -1 no '@' / empty / too long. */
int bounce_suppress_key(const char *address, char *out, size_t outlen);

#endif
