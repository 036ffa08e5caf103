/*
 * smtpd_auth.c - SMTP AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN
 * mechanisms, offered only under TLS on listeners with an accounts file.
 * Failed attempts are counted per client address: past SMTPD_AUTH_FAIL_MAX
 * within SMTPD_AUTH_FAIL_WINDOW_MS, AUTH is refused with 454 4.7.0 before
 * any password is checked. Passwords are never logged. Loop thread only;
 * the crypt(3) check itself runs on the password thread (smtpd_crypt.c)
 * while the session waits in SS_AUTH_WAIT with its input paused.
 */
#include "api/smtpd_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "core/core.h"

#define MECH_PLAIN 1
#define MECH_LOGIN 2

/* fail_entry - the failure counter of the client, current window */
static struct smtpd_ipent *
fail_entry(struct smtpd_session *s, int create)
{
	const char *key = s->ip[0] ? s->ip : "unix";
	struct smtpd_ipent *e = smtpd_ip_get(&s->sd->authfail, key, create);
	uint64_t now = mono_ms();

	if (e && now - e->since_ms >= SMTPD_AUTH_FAIL_WINDOW_MS) {
		e->count = 0;
		e->since_ms = now;
		if (!create) {
			smtpd_ip_put(&s->sd->authfail, e);
			return NULL;
		}
	}
	if (e && e->count == 0)
		e->since_ms = now;
	return e;
}

/* printable - a client-chosen name made safe for one log line */
static const char *
printable(const char *in, char *buf, size_t len)
{
	size_t i;

	for (i = 0; in[i] && i + 1 < len; i++)
		buf[i] = (in[i] >= 32 && in[i] < 127) ? in[i] : '?';
	buf[i] = '\0';
	return buf;
}

/* auth_ok - the password matched: the session is user's */
static void
auth_ok(struct smtpd_session *s, const char *user)
{
	s->user = xstrdup(user);
	log_info(s->id, "authenticated as %s", user);
	smtpd_session_reply(s, "235 2.7.0 Authentication successful");
}

/* auth_failed - count the failure against the client's address */
static void
auth_failed(struct smtpd_session *s, const char *user)
{
	struct smtpd_ipent *e = fail_entry(s, 1);
	char safe[65];

	e->count++;
	log_warnx(s->id, "AUTH failed for user '%s' from %s (%llu in window)",
	          printable(user, safe, sizeof(safe)),
	          s->ip[0] ? s->ip : "unix socket", (unsigned long long)e->count);
	smtpd_session_reply(s, "535 5.7.8 Authentication credentials invalid");
	smtpd_session_error(s);
}

/* auth_done - the credentials are in: check them off the loop, unless the
 * password is the account's last good one */
static void
auth_done(struct smtpd_session *s, const char *user, const char *pass)
{
	const char *hash;

	s->state = SS_CMD;
	if (accounts_verify_cached(s->l->accounts, user, pass) != NULL) {
		auth_ok(s, user);
		return;
	}
	if ((hash = accounts_check_hash(s->l->accounts, user)) == NULL) {
		auth_failed(s, user);
		return;
	}
	if (smtpd_crypt_submit(s->sd->crypt, s, user, pass, hash) < 0) {
		log_warnx(s->id, "AUTH: too many password checks waiting");
		smtpd_session_reply(s, "454 4.7.0 Temporary authentication failure; "
		                    "try again later");
		return;
	}
	s->state = SS_AUTH_WAIT; /* input waits for the answer */
}

void
smtpd_auth_on_checked(struct smtpd_session *s, const char *user,
                      const char *hash, const char *pass, int ok)
{
	if (s->state != SS_AUTH_WAIT)
		return; /* closing meanwhile */
	s->state = SS_CMD;
	if (ok && accounts_remember(s->l->accounts, user, hash, pass) != NULL)
		auth_ok(s, user);
	else
		auth_failed(s, user);
	smtpd_session_process(s); /* what the client pipelined meanwhile */
	smtpd_session_finish(s);
}

/* decode - one base64 client response; -1 after replying */
static long
decode(struct smtpd_session *s, const char *in, unsigned char *out, size_t cap)
{
	long n;

	if (strcmp(in, "*") == 0) {
		s->state = SS_CMD;
		smtpd_session_reply(s, "501 5.7.0 Authentication cancelled");
		smtpd_session_error(s);
		return -1;
	}
	if (strcmp(in, "=") == 0)
		return 0;
	if ((n = smtpd_b64_decode(in, strlen(in), out, cap - 1)) < 0) {
		s->state = SS_CMD;
		smtpd_session_reply(s, "501 5.5.2 Cannot decode the response (base64)");
		smtpd_session_error(s);
		return -1;
	}
	out[n] = '\0';
	return n;
}

static void
plain_response(struct smtpd_session *s, const char *resp)
{
	unsigned char buf[SMTPD_LINE_MAX];
	char user[256], pass[512];
	long n;

	if ((n = decode(s, resp, buf, sizeof(buf))) < 0)
		return;
	if (smtpd_auth_plain(buf, (size_t)n, user, sizeof(user), pass, sizeof(pass)) < 0) {
		s->state = SS_CMD;
		smtpd_session_reply(s, "501 5.5.2 Bad PLAIN response (authzid NUL user NUL password)");
		smtpd_session_error(s);
	} else {
		auth_done(s, user, pass);
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	OPENSSL_cleanse(pass, sizeof(pass));
}

/* login_response - the username, then the password, of AUTH LOGIN */
static void
login_response(struct smtpd_session *s, const char *resp)
{
	unsigned char buf[SMTPD_LINE_MAX];
	long n;

	if ((n = decode(s, resp, buf, sizeof(buf))) < 0)
		return;
	if (memchr(buf, '\0', (size_t)n) || n == 0 ||
	    (s->auth_user[0] == '\0' && (size_t)n >= sizeof(s->auth_user))) {
		s->state = SS_CMD;
		smtpd_session_reply(s, "501 5.5.2 Bad LOGIN response");
		smtpd_session_error(s);
	} else if (s->auth_user[0] == '\0') {
		memcpy(s->auth_user, buf, (size_t)n + 1);
		s->state = SS_AUTH;
		smtpd_session_reply(s, "334 UGFzc3dvcmQ6"); /* "Password:" */
	} else {
		auth_done(s, s->auth_user, (char *)buf);
	}
	OPENSSL_cleanse(buf, sizeof(buf));
}

/* auth_refused - reasons to refuse AUTH before any exchange */
static const char *
auth_refused(struct smtpd_session *s)
{
	struct smtpd_ipent *e;

	if (s->l->accounts == NULL)
		return "503 5.5.1 AUTH not available on this listener";
	if (!s->tls)
		return "538 5.7.11 Encryption required for authentication (STARTTLS first)";
	if (s->helo[0] == '\0' || !s->esmtp)
		return "503 5.5.1 Send EHLO first";
	if (s->user)
		return "503 5.5.1 Already authenticated";
	if (s->in_mail)
		return "503 5.5.1 AUTH not allowed during a mail transaction";
	if ((e = fail_entry(s, 0)) && e->count >= SMTPD_AUTH_FAIL_MAX)
		return "454 4.7.0 Too many failed authentication attempts; try again later";
	return NULL;
}

void
smtpd_auth_start(struct smtpd_session *s, const char *arg)
{
	const char *r = auth_refused(s), *initial;
	size_t ml = strcspn(arg, " ");

	if (r) {
		smtpd_session_reply(s, "%s", r);
		smtpd_session_error(s);
		return;
	}
	initial = arg[ml] == ' ' ? arg + ml + 1 : NULL;
	s->auth_user[0] = '\0';
	if (ml == 5 && strncasecmp(arg, "PLAIN", 5) == 0) {
		s->auth_mech = MECH_PLAIN;
	} else if (ml == 5 && strncasecmp(arg, "LOGIN", 5) == 0) {
		s->auth_mech = MECH_LOGIN;
	} else {
		smtpd_session_reply(s, "504 5.5.4 Unrecognized authentication mechanism");
		smtpd_session_error(s);
		return;
	}
	s->state = SS_AUTH;
	if (initial)
		smtpd_auth_line(s, initial);
	else
		smtpd_session_reply(s, s->auth_mech == MECH_PLAIN ? "334 " : "334 VXNlcm5hbWU6");
}

void
smtpd_auth_line(struct smtpd_session *s, const char *line)
{
	s->state = SS_CMD;
	if (s->auth_mech == MECH_PLAIN)
		plain_response(s, line);
	else
		login_response(s, line);
}
