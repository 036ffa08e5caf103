/*
 * mxsink_log.c - the sink's JSON-lines log (--log FILE): one object per
 * transaction (built while the transaction runs), one per accepted and
 * one per closed connection, plus "ready", "config" and "stop" events. Each object is
 * flushed when written, so a test that saw a reply can read its record.
 * Field list: docs/testing.md. Main loop only.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent_ssl.h>

#include "core/core.h"
#include "mxsink_internal.h"

/* log_str - a JSON string; bytes that are not UTF-8 become \xNN text */
json_t *log_str(const char *s)
{
	json_t *j;
	char *esc, *o;

	if (s == NULL)
		return json_null();
	if ((j = json_string(s)) != NULL)
		return j;
	o = esc = xmalloc(strlen(s) * 4 + 1);
	for (; *s; s++) {
		if ((unsigned char)*s < 0x80)
			*o++ = *s;
		else
			o += sprintf(o, "\\x%02x", (unsigned char)*s);
	}
	*o = '\0';
	j = json_string(esc);
	free(esc);
	return j;
}

void log_event(struct sink *sk, json_t *rec)
{
	json_dumpf(rec, sk->log, JSON_COMPACT);
	fputc('\n', sk->log);
	fflush(sk->log);
	json_decref(rec);
}

/* session_fields - what transaction and connection records share */
static json_t *session_fields(struct session *s, const char *type)
{
	SSL *ssl = s->tls ? bufferevent_openssl_get_ssl(s->bev) : NULL;

	return json_pack("{s:s, s:I, s:s, s:s, s:i, s:o, s:o, s:b, s:o, s:o}",
	                 "type", type, "conn", (json_int_t)s->id,
	                 "listen", s->lst->addr, "peer", s->peer,
	                 "peer_port", s->peer_port, "helo", log_str(s->helo),
	                 "helo_cmd", log_str(s->helo_cmd), "tls", s->tls,
	                 "tls_version", ssl ? json_string(SSL_get_version(ssl))
	                                    : json_null(),
	                 "tls_cipher", ssl ? json_string(SSL_get_cipher_name(ssl))
	                                   : json_null());
}

void txn_new(struct session *s)
{
	struct txn *t = xcalloc(1, sizeof(*t));

	t->n = ++s->transactions;
	t->rec = session_fields(s, "transaction");
	json_object_set_new(t->rec, "txn", json_integer(t->n));
	json_object_set_new(t->rec, "time_ms",
	                    json_integer((json_int_t)now_ms()));
	t->rcpts = json_array();
	json_object_set_new(t->rec, "rcpts", t->rcpts); /* rec owns it */
	s->tx = t;
}

/* txn_end - finish the open transaction's record and write it */
void txn_end(struct session *s, const char *status)
{
	struct txn *t = s->tx;

	if (t == NULL)
		return;
	s->tx = NULL;
	json_object_set_new(t->rec, "accepted", json_integer(t->accepted));
	json_object_set_new(t->rec, "status", json_string(status));
	if (t->chunks > 0)
		json_object_set_new(t->rec, "bdat_chunks", json_integer(t->chunks));
	if (json_object_get(t->rec, "method") == NULL)
		json_object_set_new(t->rec, "method", json_null());
	log_event(s->sink, t->rec);
	if (t->md != NULL)
		EVP_MD_CTX_free(t->md);
	if (t->save != NULL)
		fclose(t->save);
	free(t);
}

/* log_connect - a connection was accepted (before its greeting) */
void log_connect(struct session *s)
{
	log_event(s->sink, json_pack("{s:s, s:I, s:s, s:s, s:i, s:I}",
	                             "type", "connect", "conn", (json_int_t)s->id,
	                             "listen", s->lst->addr, "peer", s->peer,
	                             "peer_port", s->peer_port, "time_ms",
	                             (json_int_t)s->start_ms));
}

void log_connection(struct session *s)
{
	json_t *rec = session_fields(s, "connection");

	json_object_set_new(rec, "transactions", json_integer(s->transactions));
	json_object_set_new(rec, "messages", json_integer(s->messages));
	json_object_set_new(rec, "commands", json_integer(s->commands));
	json_object_set_new(rec, "greeting", log_str(s->greeting));
	json_object_set_new(rec, "close", json_string(s->close_reason));
	json_object_set_new(rec, "start_ms",
	                    json_integer((json_int_t)s->start_ms));
	json_object_set_new(rec, "end_ms",
	                    json_integer((json_int_t)now_ms()));
	log_event(s->sink, rec);
}
