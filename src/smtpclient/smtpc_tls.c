/*
 * smtpc_tls.c - STARTTLS for the SMTP client: the shared client SSL_CTX
 * (CA store), and turning a plaintext session into a TLS one by stacking a
 * libevent OpenSSL filter bufferevent on the socket bufferevent.
 *
 * Policy (smtpc.h): "may" and "encrypt" do not check the certificate,
 * "verify" checks the chain against the CA store and the MX name.
 * Runs on the delivery loop thread.
 */
#include "smtpclient/smtpc_internal.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct smtpc_tls {
	SSL_CTX *ctx;
};

struct smtpc_tls *
smtpc_tls_new(const char *ca_file, char *err, size_t errlen)
{
	struct smtpc_tls *t = xcalloc(1, sizeof(*t));
	int ok;

	t->ctx = SSL_CTX_new(TLS_client_method());
	if (t->ctx == NULL) {
		snprintf(err, errlen, "SSL_CTX_new failed");
		goto fail;
	}
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_VERSION);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);
	ok = ca_file ? SSL_CTX_load_verify_locations(t->ctx, ca_file, NULL) :
	               SSL_CTX_set_default_verify_paths(t->ctx);
	if (ok != 1) {
		snprintf(err, errlen, "cannot load CA file %s: %s",
		         ca_file ? ca_file : "(system)",
		         ERR_reason_error_string(ERR_get_error()));
		goto fail;
	}
	return t;
fail:
	smtpc_tls_free(t);
	return NULL;
}

void
smtpc_tls_free(struct smtpc_tls *t)
{
	if (t == NULL)
		return;
	SSL_CTX_free(t->ctx);
	free(t);
}

SSL_CTX *
smtpc_tls_ctx(struct smtpc_tls *t)
{
	return t->ctx;
}

/* conn_tls - the TLS context this connection uses (made on first use) */
static struct smtpc_tls *
conn_tls(struct smtpc_conn *c)
{
	char err[256];

	if (c->opts.tls_ctx != NULL)
		return c->opts.tls_ctx;
	if (c->own_tls == NULL && (c->own_tls = smtpc_tls_new(NULL, err,
	                                                      sizeof(err))) == NULL)
		log_warnx(c->sid, "%s", err);
	return c->own_tls;
}

/* is_ip - is the MX name an address literal (no SNI then) */
static int
is_ip(const char *name)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, name, buf) == 1 ||
	       inet_pton(AF_INET6, name, buf) == 1;
}

/* new_ssl - an SSL object set up for this MX and policy */
static SSL *
new_ssl(struct smtpc_conn *c, struct smtpc_tls *t)
{
	SSL *ssl = SSL_new(t->ctx);
	const char *name = c->cur_mx ? c->cur_mx : "";

	if (ssl == NULL)
		return NULL;
	if (name[0] != '\0' && !is_ip(name))
		SSL_set_tlsext_host_name(ssl, name);
	if (c->opts.tls == SMTPC_TLS_VERIFY) {
		SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (name[0] == '\0' || SSL_set1_host(ssl, name) != 1) {
			SSL_free(ssl);
			return NULL;
		}
	} else
		SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
	return ssl;
}

/* Hooks for smtpc_session.c, which owns the callbacks: it passes them in
 * through the current bufferevent's callbacks, so we copy them over. */
int
smtpc_tls_start(struct smtpc_conn *c)
{
	struct smtpc_tls *t = conn_tls(c);
	struct bufferevent *bev;
	bufferevent_data_cb rcb, wcb;
	bufferevent_event_cb ecb;
	void *arg;
	SSL *ssl;

	if (t == NULL || (ssl = new_ssl(c, t)) == NULL)
		return -1;
	bufferevent_getcb(c->bev, &rcb, &wcb, &ecb, &arg);
	bev = bufferevent_openssl_filter_new(c->base, c->bev, ssl,
	                                     BUFFEREVENT_SSL_CONNECTING,
	                                     BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		SSL_free(ssl);
		return -1;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	bufferevent_setcb(bev, rcb, wcb, ecb, arg);
	bufferevent_setwatermark(bev, EV_WRITE, SMTPC_OUT_LOW, 0);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	c->bev = bev;                  /* owns the plaintext one now */
	c->expect = 0;
	return 0;
}

void
smtpc_tls_record(struct smtpc_conn *c)
{
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

	c->tls_on = 1;
	snprintf(c->tls_proto, sizeof(c->tls_proto), "%s",
	         ssl ? SSL_get_version(ssl) : "?");
	snprintf(c->tls_cipher, sizeof(c->tls_cipher), "%s",
	         ssl ? SSL_get_cipher_name(ssl) : "?");
	log_info(c->sid, "%s[%s]: TLS established: %s %s%s", c->cur_mx,
	         c->cur_addr, c->tls_proto, c->tls_cipher,
	         c->opts.tls == SMTPC_TLS_VERIFY ? " (verified)" : "");
}

const char *
smtpc_tls_error(struct smtpc_conn *c, char *buf, size_t len)
{
	SSL *ssl = c->bev ? bufferevent_openssl_get_ssl(c->bev) : NULL;
	unsigned long e = c->bev ? bufferevent_get_openssl_error(c->bev) : 0;
	long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;

	if (vr != X509_V_OK && c->opts.tls == SMTPC_TLS_VERIFY)
		snprintf(buf, len, "certificate verification failed: %s",
		         X509_verify_cert_error_string(vr));
	else if (e != 0)
		ERR_error_string_n(e, buf, len);
	else
		snprintf(buf, len, "connection closed during handshake");
	return buf;
}
