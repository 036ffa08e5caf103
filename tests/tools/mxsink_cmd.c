/*
 * mxsink_cmd.c - the sink's SMTP commands, one function each. Each decides
 * its reply from the listener's behaviour (built-in reply, "replies"
 * override, recipient rules and limits), records it in the transaction log
 * record, then hands it to session_reply(). Main loop only.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/core.h"
#include "mxsink_internal.h"

void cmd_greet(struct session *s)
{
	char dflt[300];
	const char *text;

	snprintf(dflt, sizeof(dflt), "220 %s ESMTP mxsink",
	         session_beh(s)->hostname);
	if (session_tempfail_hit(s, PH_GREETING))
		text = session_beh(s)->tempfail_reply;
	else
		text = session_default(s, PH_GREETING, dflt);
	snprintf(s->greeting, sizeof(s->greeting), "%s", text);
	session_reply(s, PH_GREETING, text, AFTER_NONE);
}

/* ehlo_text - the EHLO reply with the advertised extensions */
static void ehlo_text(struct session *s, char *buf, size_t len)
{
	const struct behaviour *b = session_beh(s);
	int n = snprintf(buf, len, "250 %s", b->hostname);

#define ADD(cond, ...) \
	if ((cond) && n > 0 && (size_t)n < len) \
		n += snprintf(buf + n, len - (size_t)n, __VA_ARGS__)
	ADD(b->pipelining, "\n250 PIPELINING");
	ADD(b->size > 0, "\n250 SIZE %llu", (unsigned long long)b->size);
	ADD(b->eightbitmime, "\n250 8BITMIME");
	ADD(b->smtputf8, "\n250 SMTPUTF8");
	ADD(b->chunking, "\n250 CHUNKING");
	ADD(b->dsn, "\n250 DSN");
	ADD(b->starttls && s->sink->tls != NULL && !s->tls, "\n250 STARTTLS");
	ADD(b->enhancedstatuscodes, "\n250 ENHANCEDSTATUSCODES");
#undef ADD
}

static void set_helo(struct session *s, const char *cmd, const char *arg)
{
	if (s->tx != NULL)
		txn_end(s, "aborted");
	snprintf(s->helo, sizeof(s->helo), "%s", arg);
	s->helo_cmd = cmd;
}

static void cmd_ehlo(struct session *s, char *arg)
{
	char buf[600];
	const char *text;

	if (*arg == '\0') {
		session_reply(s, PH_EHLO, "501 5.5.4 EHLO needs a domain",
		              AFTER_NONE);
		return;
	}
	set_helo(s, "EHLO", arg);
	ehlo_text(s, buf, sizeof(buf));
	text = session_default(s, PH_EHLO, buf);
	s->esmtp = reply_is(text, '2');
	session_reply(s, PH_EHLO, text, AFTER_NONE);
}

static void cmd_helo(struct session *s, char *arg)
{
	char buf[300];

	if (*arg == '\0') {
		session_reply(s, PH_HELO, "501 5.5.4 HELO needs a domain",
		              AFTER_NONE);
		return;
	}
	set_helo(s, "HELO", arg);
	s->esmtp = 0;
	snprintf(buf, sizeof(buf), "250 %s", session_beh(s)->hostname);
	session_reply(s, PH_HELO, session_default(s, PH_HELO, buf), AFTER_NONE);
}

/* path_parse - "FROM:<a@b> P=1" -> addr "a@b", params "P=1"; -1 if bad */
static int path_parse(char *arg, const char *prefix, char **addr,
                      char **params)
{
	size_t pl = strlen(prefix);
	char *lt, *gt;

	if (strncasecmp(arg, prefix, pl) != 0)
		return -1;
	arg += pl;
	while (*arg == ' ')
		arg++;
	if (*(lt = arg) != '<' || (gt = strchr(lt, '>')) == NULL)
		return -1;
	*gt = '\0';
	*addr = lt + 1;
	for (*params = gt + 1; **params == ' '; (*params)++)
		;
	return 0;
}

/* param_ok - is this ESMTP parameter allowed by what was advertised? */
static int param_ok(struct session *s, int rcpt, const char *p, size_t n)
{
	const struct behaviour *b = session_beh(s);
#define IS(k) (n == strlen(k) && strncasecmp(p, k, n) == 0)
	if (!b->strict)
		return 1;
	if (!s->esmtp)
		return 0;
	if (rcpt)
		return b->dsn && (IS("NOTIFY") || IS("ORCPT"));
	return (IS("SIZE") && b->size > 0) || (IS("BODY") && b->eightbitmime) ||
	       (IS("SMTPUTF8") && b->smtputf8) ||
	       ((IS("RET") || IS("ENVID")) && b->dsn);
#undef IS
}

/* params_check - the first refused parameter's reply, or NULL */
static const char *params_check(struct session *s, int rcpt, const char *ps,
                                char *buf, size_t len)
{
	const char *p = ps, *end;
	size_t n;

	while (*p != '\0') {
		end = p + strcspn(p, " ");
		n = strcspn(p, "= ");
		if (!param_ok(s, rcpt, p, n)) {
			snprintf(buf, len, "555 5.5.4 Unsupported parameter %.*s",
			         (int)n, p);
			return buf;
		}
		p = end + strspn(end, " ");
	}
	return NULL;
}

/* mail_size - the SIZE= value of MAIL parameters, 0 if none */
static unsigned long long mail_size(const char *ps)
{
	const char *p = ps;

	while ((p = strcasestr(p, "SIZE=")) != NULL) {
		if (p == ps || p[-1] == ' ')
			return strtoull(p + 5, NULL, 10);
		p += 5;
	}
	return 0;
}

/* mail_reply - the reply to a syntactically valid MAIL */
static const char *mail_reply(struct session *s, const char *params,
                              char *buf, size_t len)
{
	const struct behaviour *b = session_beh(s);
	const char *r;

	if (b->require_tls && !s->tls)
		return "530 5.7.0 Must issue a STARTTLS command first";
	if ((r = params_check(s, 0, params, buf, len)) != NULL)
		return r;
	if (b->max_messages && s->messages >= b->max_messages)
		return b->max_messages_reply;
	if (session_tempfail_hit(s, PH_MAIL))
		return b->tempfail_reply;
	if (b->size > 0 && mail_size(params) > b->size)
		return "552 5.3.4 Message size exceeds fixed maximum message size";
	return session_default(s, PH_MAIL, "250 2.1.0 Ok");
}

static void cmd_mail(struct session *s, char *arg)
{
	char *addr = NULL, *params = NULL, buf[200];
	const char *text;

	if (s->tx != NULL) {
		session_reply(s, PH_MAIL, "503 5.5.1 Nested MAIL command",
		              AFTER_NONE);
		return;
	}
	if (s->helo_cmd == NULL) {
		session_reply(s, PH_MAIL, "503 5.5.1 Send EHLO or HELO first",
		              AFTER_NONE);
		return;
	}
	if (path_parse(arg, "FROM:", &addr, &params) < 0) {
		session_reply(s, PH_MAIL, "501 5.5.4 Syntax: MAIL FROM:<address>",
		              AFTER_NONE);
		return;
	}
	text = mail_reply(s, params, buf, sizeof(buf));
	txn_new(s);
	json_object_set_new(s->tx->rec, "mail_from", log_str(addr));
	json_object_set_new(s->tx->rec, "mail_params", log_str(params));
	json_object_set_new(s->tx->rec, "mail_reply",
	                    session_sent_text(s, PH_MAIL, text));
	if (!reply_is(text, '2'))
		txn_end(s, "rejected");
	session_reply(s, PH_MAIL, text, AFTER_NONE);
}

static int rule_match(const struct rcpt_rule *r, const char *addr)
{
	if (r->substr != NULL)
		return strcasestr(addr, r->substr) != NULL;
	return regexec(&r->re, addr, 0, NULL, 0) == 0;
}

/* rcpt_reply - the reply to a syntactically valid RCPT */
static const char *rcpt_reply(struct session *s, const char *addr,
                              const char *domain, const char *params,
                              char *buf, size_t len)
{
	const struct behaviour *b = session_beh(s);
	const char *r;

	if ((r = params_check(s, 1, params, buf, len)) != NULL)
		return r;
	if (session_tempfail_hit(s, PH_RCPT))
		return b->tempfail_reply;
	if (b->max_rcpts && s->tx->accepted >= b->max_rcpts)
		return b->max_rcpts_reply;
	if (b->one_domain && s->tx->first_domain[0] != '\0' &&
	    strcasecmp(domain, s->tx->first_domain) != 0)
		return b->one_domain_reply;
	for (size_t i = 0; i < b->n_rules; i++)
		if (rule_match(&b->rules[i], addr))
			return b->rules[i].reply;
	return session_default(s, PH_RCPT, "250 2.1.5 Ok");
}

static void cmd_rcpt(struct session *s, char *arg)
{
	char *addr = NULL, *params = NULL, buf[200];
	const char *text, *at, *domain;
	json_t *r;

	if (s->tx == NULL) {
		session_reply(s, PH_RCPT, "503 5.5.1 Need MAIL command", AFTER_NONE);
		return;
	}
	if (path_parse(arg, "TO:", &addr, &params) < 0 || *addr == '\0') {
		session_reply(s, PH_RCPT, "501 5.5.4 Syntax: RCPT TO:<address>",
		              AFTER_NONE);
		return;
	}
	domain = (at = strrchr(addr, '@')) ? at + 1 : "";
	text = rcpt_reply(s, addr, domain, params, buf, sizeof(buf));
	r = json_object();
	json_object_set_new(r, "to", log_str(addr));
	json_object_set_new(r, "params", log_str(params));
	json_object_set_new(r, "reply", session_sent_text(s, PH_RCPT, text));
	json_array_append_new(s->tx->rcpts, r);
	if (reply_is(text, '2')) {
		s->tx->accepted++;
		if (s->tx->first_domain[0] == '\0')
			snprintf(s->tx->first_domain, sizeof(s->tx->first_domain),
			         "%s", domain);
	}
	session_reply(s, PH_RCPT, text, AFTER_NONE);
}

static void cmd_data(struct session *s, char *arg)
{
	const char *text;

	(void)arg;
	if (s->tx == NULL || s->tx->method_bdat)
		text = "503 5.5.1 Bad sequence of commands";
	else if (s->tx->accepted == 0)
		text = "554 5.5.1 No valid recipients";
	else
		text = session_default(s, PH_DATA,
		                       "354 End data with <CR><LF>.<CR><LF>");
	if (s->tx != NULL)
		json_object_set_new(s->tx->rec, "data_reply",
		                    session_sent_text(s, PH_DATA, text));
	if (reply_is(text, '3')) {
		s->tx->method_data = 1;
		body_begin(s);
		s->state = ST_DATA;
	}
	session_reply(s, PH_DATA, text, AFTER_NONE);
}

/* cmd_bdat - "BDAT size [LAST]": the reply comes after the chunk */
static void cmd_bdat(struct session *s, char *arg)
{
	char *end = NULL;
	unsigned long long n = strtoull(arg, &end, 10);

	if (!isdigit((unsigned char)*arg) || (*end != '\0' && *end != ' ') ||
	    (*end == ' ' && strcasecmp(end + strspn(end, " "), "LAST") != 0)) {
		session_reply(s, PH_BDAT, "501 5.5.4 Syntax: BDAT size [LAST]",
		              AFTER_NONE);
		session_close(s, "error"); /* cannot find the next command */
		return;
	}
	s->bdat_left = n;
	s->bdat_last = *end == ' ';
	s->bdat_ok = s->tx != NULL && s->tx->accepted > 0 &&
	             !s->tx->method_data &&
	             (session_beh(s)->chunking || !session_beh(s)->strict);
	if (s->bdat_ok && !s->tx->method_bdat) {
		s->tx->method_bdat = 1;
		body_begin(s);
	}
	s->state = ST_BDAT;
}

static void cmd_rset(struct session *s, char *arg)
{
	(void)arg;
	if (s->tx != NULL)
		txn_end(s, "aborted");
	session_reply(s, PH_RSET, session_default(s, PH_RSET, "250 2.0.0 Ok"),
	              AFTER_NONE);
}

static void cmd_noop(struct session *s, char *arg)
{
	(void)arg;
	session_reply(s, PH_NOOP, session_default(s, PH_NOOP, "250 2.0.0 Ok"),
	              AFTER_NONE);
}

static void cmd_quit(struct session *s, char *arg)
{
	(void)arg;
	session_reply(s, PH_QUIT, session_default(s, PH_QUIT, "221 2.0.0 Bye"),
	              AFTER_CLOSE);
}

static void cmd_vrfy(struct session *s, char *arg)
{
	(void)arg;
	session_reply(s, PH_OTHER, "252 2.5.2 Cannot VRFY user", AFTER_NONE);
}

static void cmd_starttls(struct session *s, char *arg)
{
	const char *text;

	if (s->sink->tls == NULL || !session_beh(s)->starttls)
		text = "502 5.5.1 STARTTLS not available";
	else if (s->tls || s->tx != NULL || *arg != '\0')
		text = "503 5.5.1 STARTTLS not allowed now";
	else
		text = session_default(s, PH_STARTTLS,
		                       "220 2.0.0 Ready to start TLS");
	session_reply(s, PH_STARTTLS, text,
	              reply_is(text, '2') ? AFTER_TLS : AFTER_NONE);
}

static const struct {
	const char *verb;
	void (*fn)(struct session *, char *);
} commands[] = {
	{"EHLO", cmd_ehlo}, {"HELO", cmd_helo}, {"MAIL", cmd_mail},
	{"RCPT", cmd_rcpt}, {"DATA", cmd_data}, {"BDAT", cmd_bdat},
	{"RSET", cmd_rset}, {"NOOP", cmd_noop}, {"QUIT", cmd_quit},
	{"VRFY", cmd_vrfy}, {"STARTTLS", cmd_starttls},
};

/* cmd_dispatch - run one command line (CRLF already removed) */
void cmd_dispatch(struct session *s, char *line)
{
	size_t vlen = strcspn(line, " ");
	char *arg = line + vlen;

	arg += strspn(arg, " ");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (vlen == strlen(commands[i].verb) &&
		    strncasecmp(line, commands[i].verb, vlen) == 0) {
			commands[i].fn(s, arg);
			return;
		}
	}
	session_reply(s, PH_OTHER, "500 5.5.2 Command unrecognized", AFTER_NONE);
}
