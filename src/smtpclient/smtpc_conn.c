/*
 * smtpc_conn.c - the public connection object of the SMTP client: create,
 * free (deferred while inside its own callbacks), close, accessors, and
 * the names of states, errors and recipient results for logs and JSON.
 * Runs on the caller's libevent loop.
 */
#include "smtpclient/smtpc_internal.h"

#include <event2/event.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *state_names[] = {
	"INIT", "CONNECT", "BANNER", "EHLO", "HELO", "STARTTLS", "TLS",
	"READY", "RSET", "MAIL", "RCPT", "DATA", "BODY", "EOM", "QUIT",
	"CLOSED",
};

const char *
smtpc_state_name(enum smtpc_state s)
{
	return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ?
	       state_names[s] : "?";
}

const char *
smtpc_error_name(enum smtpc_error e)
{
	static const char *names[] = {
		"none", "connect", "greeting", "tls", "unsafe-destination",
		"timeout", "lost", "protocol", "shutdown", "body", "closed",
	};
	return (unsigned)e < sizeof(names) / sizeof(names[0]) ? names[e] : "?";
}

const char *
smtpc_rcpt_status_name(enum smtpc_rcpt_status s)
{
	static const char *names[] = {
		"pending", "delivered", "tempfail", "permfail",
		"possibly-delivered", "retry-now",
	};
	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

int
smtpc_tls_policy_parse(const char *s, enum smtpc_tls_policy *out)
{
	static const char *names[] = { "none", "may", "encrypt", "verify" };

	for (unsigned i = 0; s != NULL && i < 4; i++)
		if (strcmp(s, names[i]) == 0) {
			*out = (enum smtpc_tls_policy)i;
			return 0;
		}
	return -1;
}

/* ---- callback bracketing: deferred free ---- */

void
smtpc_conn_enter(struct smtpc_conn *c)
{
	c->in_cb++;
}

static void conn_destroy(struct smtpc_conn *c);

/* smtpc_conn_leave - 1 when the conn was destroyed on the way out */
int
smtpc_conn_leave(struct smtpc_conn *c)
{
	if (--c->in_cb == 0 && c->free_pending) {
		conn_destroy(c);
		return 1;
	}
	return 0;
}

/* ---- public: the connection object ---- */

/* copy_dest - flatten dest into mx_names + targets (owned copies) */
static void
copy_dest(struct smtpc_conn *c, const struct smtpc_dest *dest)
{
	size_t n = 0;

	for (size_t i = 0; i < dest->n_mx; i++)
		n += dest->mx[i].n_addrs;
	c->mx_names = xcalloc(dest->n_mx ? dest->n_mx : 1, sizeof(char *));
	c->targets = xcalloc(n ? n : 1, sizeof(*c->targets));
	c->n_mx = dest->n_mx;
	for (size_t i = 0; i < dest->n_mx; i++) {
		const struct smtpc_mx *mx = &dest->mx[i];
		c->mx_names[i] = xstrdup(mx->name ? mx->name : "");
		for (size_t j = 0; j < mx->n_addrs; j++) {
			c->targets[c->n_targets].mx = i;
			c->targets[c->n_targets++].addr = xstrdup(mx->addrs[j]);
		}
	}
	c->site = xstrdup(dest->site ? dest->site : "-");
}

struct smtpc_conn *
smtpc_conn_new(struct event_base *base, const struct smtpc_opts *opts,
               const struct smtpc_dest *dest, const struct smtpc_conn_cbs *cbs,
               void *arg)
{
	static unsigned counter;
	struct smtpc_conn *c;

	if (base == NULL || opts == NULL || dest == NULL ||
	    opts->ehlo_name == NULL || !smtpc_addr_valid(opts->ehlo_name, 0))
		return NULL;
	if (counter == 0)
		counter = (unsigned)getpid() * 7919u + (unsigned)mono_ms();
	c = xcalloc(1, sizeof(*c));
	c->base = base;
	c->opts = *opts;
	c->opts.port = opts->port > 0 && opts->port < 65536 ? opts->port : 25;
	c->ehlo_name = xstrdup(opts->ehlo_name);
	c->source_addr = opts->source_addr ? xstrdup(opts->source_addr) : NULL;
	if (cbs != NULL)
		c->cbs = *cbs;
	c->arg = arg;
	snprintf(c->sid, sizeof(c->sid), "s%05x", (++counter) & 0xfffff);
	copy_dest(c, dest);
	c->timer = evtimer_new(base, smtpc_session_on_timer, c);
	c->deferred = event_new(base, -1, 0, smtpc_session_on_deferred, c);
	c->info.session_id = c->sid;
	c->info.reason = c->reason;
	smtpc_reply_reset(&c->reply);
	smtpc_session_defer(c);        /* connect from the loop, not from here */
	return c;
}

static void
conn_destroy(struct smtpc_conn *c)
{
	smtpc_session_drop(c);
	if (c->txn != NULL)
		smtpc_txn_free(c->txn);
	event_free(c->timer);
	event_free(c->deferred);
	for (size_t i = 0; i < c->n_mx; i++)
		free(c->mx_names[i]);
	for (size_t i = 0; i < c->n_targets; i++)
		free(c->targets[i].addr);
	free(c->mx_names);
	free(c->targets);
	free(c->site);
	free(c->ehlo_name);
	free(c->source_addr);
	free(c->rbuf);
	free(c->sbuf);
	smtpc_tls_free(c->own_tls);
	free(c);
}

void
smtpc_conn_free(struct smtpc_conn *c)
{
	if (c == NULL)
		return;
	if (c->in_cb > 0) {            /* inside our own callback chain */
		c->free_pending = 1;
		c->cbs.ready = NULL;
		c->cbs.closed = NULL;
		if (c->txn != NULL)
			c->txn->done = NULL;
		return;
	}
	conn_destroy(c);
}

void
smtpc_conn_close(struct smtpc_conn *c)
{
	if (c == NULL || c->state == SMTPC_S_CLOSED)
		return;
	c->close_pending = 1;
	if (c->state == SMTPC_S_READY && c->txn == NULL)
		smtpc_enter_state(c, SMTPC_S_QUIT);
}

int
smtpc_conn_is_idle(const struct smtpc_conn *c)
{
	return c->state == SMTPC_S_READY && c->txn == NULL && !c->close_pending;
}

unsigned
smtpc_conn_txn_count(const struct smtpc_conn *c)
{
	return c->txn_count;
}

uint64_t
smtpc_conn_age_ms(const struct smtpc_conn *c)
{
	return c->t_connected ? mono_ms() - c->t_connected : 0;
}

uint64_t
smtpc_conn_idle_ms(const struct smtpc_conn *c)
{
	return smtpc_conn_is_idle(c) ? mono_ms() - c->t_last : 0;
}

const struct smtpc_conn_info *
smtpc_conn_info(const struct smtpc_conn *c)
{
	struct smtpc_conn_info *i = (struct smtpc_conn_info *)&c->info;

	i->mx_host = c->cur_mx ? c->cur_mx : "";
	i->mx_addr = c->cur_addr;
	i->tls_proto = c->tls_proto;
	i->tls_cipher = c->tls_cipher;
	i->tls_fallback = c->tls_fallback;
	return i;
}
