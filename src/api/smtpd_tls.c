/*
 * smtpd_tls.c - the server side TLS context of a listener (OpenSSL):
 * certificate chain and key from [listen] tls_cert / tls_key, TLS 1.2 or
 * newer, no compression, no renegotiation. Built once at start; sessions
 * take SSL objects from it (smtpd_session.c). Loop thread.
 */
#include "api/smtpd_internal.h"

#include <stdio.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

/* ssl_error - the last OpenSSL error as text */
static void
ssl_error(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();

	if (e)
		ERR_error_string_n(e, buf, len);
	else
		snprintf(buf, len, "unknown TLS error");
	ERR_clear_error();
}

SSL_CTX *
smtpd_tls_ctx(const char *cert, const char *key, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char why[256];

	if (ctx == NULL) {
		ssl_error(why, sizeof(why));
		snprintf(err, errlen, "cannot create TLS context: %s", why);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	                    SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		ssl_error(why, sizeof(why));
		snprintf(err, errlen, "tls_cert %s: %s", cert, why);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		ssl_error(why, sizeof(why));
		snprintf(err, errlen, "tls_key %s: %s", key, why);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ssl_error(why, sizeof(why));
		snprintf(err, errlen, "tls_key %s does not match tls_cert %s: %s", key, cert, why);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}
