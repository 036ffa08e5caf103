/*
 * api.h - the one public header of src/api: the doors into mxbatch.
 *
 * The SMTP submission server and, later, the admin HTTP API live here.
 * Everything runs on the daemon's event loop thread.
 */
#ifndef MXB_API_H
#define MXB_API_H

#include <stddef.h>

struct event_base;
struct config;
struct queue;

/* ---- SMTP submission server (smtpd*.c, accounts.c) ----
 * One listener per [listen "NAME"] of the configuration: a Unix socket
 * (trusted: the routing tier) or TCP (STARTTLS, AUTH after TLS, relay only
 * after AUTH or from trusted_networks). A 250 to DATA / BDAT LAST is sent
 * only once the queue reports the message durable. */
struct smtpd;

/* smtpd_start - bind every listener of cfg (logs "listening on ..." for
 * each) and accept on base. cfg and q must outlive the server. NULL with a
 * clear error in err (bad certificate, accounts file, address in use,
 * ...) on failure; nothing is left bound then. */
struct smtpd *smtpd_start(struct event_base *base, const struct config *cfg,
                          struct queue *q, char *err, size_t errlen);
/* smtpd_stop_accepting - graceful stop: close the listeners, close idle
 * sessions with 421; a session receiving or committing a message finishes
 * it (its client gets the real answer), then gets 421. */
void smtpd_stop_accepting(struct smtpd *sd);
/* smtpd_busy - number of sessions still receiving or committing a message
 * (a graceful stop may wait while this is non-zero). */
size_t smtpd_busy(const struct smtpd *sd);
/* smtpd_reload - re-read the accounts files (SIGHUP). A file that fails to
 * load is logged and the accounts in force are kept. */
void smtpd_reload(struct smtpd *sd);
/* smtpd_free - close everything (in-progress messages are dropped, never
 * acknowledged). NULL is a no-op. Call before queue_close(). */
void smtpd_free(struct smtpd *sd);

#endif
