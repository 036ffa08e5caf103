/*
 * smtpd.c - the submission server: owns the listeners of every [listen]
 * section (Unix socket with mode/group, TCP with optional implicit TLS),
 * the accept path with connection caps (per listener and per client IP),
 * the per-IP tables, reload of accounts files, graceful stop and free.
 * Sessions themselves live in smtpd_session.c. Loop thread only.
 */
#include "api/api.h"
#include "api/smtpd_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "core/core.h"
#include "queue/queue.h"

/* ---- per client address table ---- */

static unsigned
ip_hash(const char *ip)
{
	unsigned h = 5381;

	while (*ip)
		h = h * 33 + (unsigned char)*ip++;
	return h % 512;
}

struct smtpd_ipent *
smtpd_ip_get(struct smtpd_iptab *t, const char *ip, int create)
{
	unsigned h = ip_hash(ip);
	struct smtpd_ipent *e;

	for (e = t->b[h]; e; e = e->next)
		if (strcmp(e->ip, ip) == 0)
			return e;
	if (!create)
		return NULL;
	e = xcalloc(1, sizeof(*e));
	snprintf(e->ip, sizeof(e->ip), "%s", ip);
	e->next = t->b[h];
	t->b[h] = e;
	t->n++;
	return e;
}

void
smtpd_ip_put(struct smtpd_iptab *t, struct smtpd_ipent *e)
{
	struct smtpd_ipent **pp;

	if (e == NULL || e->count > 0)
		return;
	for (pp = &t->b[ip_hash(e->ip)]; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			t->n--;
			free(e);
			return;
		}
}

/* ip_sweep - drop the entries whose window started max_age or more ago
 * (tables of rates, greet passes and AUTH failures; not of connections) */
static void
ip_sweep(struct smtpd_iptab *t, uint64_t now, uint64_t max_age)
{
	struct smtpd_ipent **pp, *e;
	size_t i;

	for (i = 0; i < 512; i++)
		for (pp = &t->b[i]; (e = *pp) != NULL; ) {
			if (now - e->since_ms >= max_age) {
				*pp = e->next;
				t->n--;
				free(e);
			} else {
				pp = &e->next;
			}
		}
}

void
smtpd_ip_clear(struct smtpd_iptab *t)
{
	struct smtpd_ipent *e, *next;
	size_t i;

	for (i = 0; i < 512; i++)
		for (e = t->b[i]; e; e = next) {
			next = e->next;
			free(e);
		}
	memset(t, 0, sizeof(*t));
}

/* ---- accept ---- */

/* rate_exceeded - count a new connection from ip against the listener's
 * per-minute budget; 1 if over it (the refused one is not counted) */
static int
rate_exceeded(struct smtpd_listener *l, const char *ip)
{
	struct smtpd_ipent *e = smtpd_ip_get(&l->rate, ip, 1);
	uint64_t now = mono_ms();

	if (e->count == 0 || now - e->since_ms >= SMTPD_RATE_WINDOW_MS) {
		e->count = 0;
		e->since_ms = now;
	}
	if (e->count >= l->cfg->max_connections_per_ip_per_minute)
		return 1;
	e->count++;
	return 0;
}

int
smtpd_greet_wait(struct smtpd_session *s)
{
	const struct config_listen *c = s->l->cfg;
	struct smtpd_ipent *e;

	if (c->greet_wait_ms == 0 || s->l->is_unix || c->implicit_tls ||
	    s->trusted || s->ip[0] == '\0')
		return 0;
	e = smtpd_ip_get(&s->sd->greeted, s->ip, 0);
	return e == NULL || mono_ms() - e->since_ms >= SMTPD_GREETED_TTL_MS;
}

void
smtpd_greet_passed(struct smtpd_session *s)
{
	struct smtpd_ipent *e = smtpd_ip_get(&s->sd->greeted, s->ip, 0);

	if (e == NULL && s->sd->greeted.n < SMTPD_GREETED_MAX)
		e = smtpd_ip_get(&s->sd->greeted, s->ip, 1);
	if (e)
		e->since_ms = mono_ms();
}

/* on_sweep - once a minute: forget expired rate windows, greet passes and
 * AUTH failure windows, so the tables hold only recent addresses */
static void
on_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct smtpd *sd = arg;
	uint64_t now = mono_ms();
	size_t i;

	(void)fd;
	(void)what;
	for (i = 0; i < sd->nls; i++)
		ip_sweep(&sd->ls[i].rate, now, SMTPD_RATE_WINDOW_MS);
	ip_sweep(&sd->greeted, now, SMTPD_GREETED_TTL_MS);
	ip_sweep(&sd->authfail, now, SMTPD_AUTH_FAIL_WINDOW_MS);
}

int
smtpd_conn_trusted(struct smtpd_listener *l, const struct sockaddr *sa)
{
	return l->is_unix || smtpd_cidrs_match(l->trusted, sa);
}

/* refuse - answer 421 at once and close, without a session */
static void
refuse(int fd, const char *why, struct smtpd_listener *l, const char *ip)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf), "421 4.7.0 %s, try again later\r\n", why);

	if (send(fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_debug("-", "421 to %s not sent", ip);
	log_warnx("-", "listener %s: refused %s: %s", l->cfg->name, ip[0] ? ip : "client", why);
	l->sd->stats.rejected[SMTPD_REJ_CONNECTIONS]++;
	close(fd);
}

static void
on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
          int salen, void *arg)
{
	struct smtpd_listener *l = arg;
	char ip[48] = "";
	struct smtpd_ipent *e;
	int one = 1;

	(void)lev;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, ip, sizeof(ip));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof(ip));
	if (l->nconn >= l->cfg->max_connections) {
		refuse(fd, "Too many connections", l, ip);
		return;
	}
	if (ip[0] && (e = smtpd_ip_get(&l->sd->conns, ip, 0)) != NULL &&
	    e->count >= l->cfg->max_connections_per_ip) {
		refuse(fd, "Too many connections from your address", l, ip);
		return;
	}
	if (ip[0] && l->cfg->max_connections_per_ip_per_minute &&
	    !smtpd_conn_trusted(l, sa) && rate_exceeded(l, ip)) {
		char why[128];
		snprintf(why, sizeof(why), "Too many connections from your address "
		         "(limit %llu per minute)",
		         (unsigned long long)l->cfg->max_connections_per_ip_per_minute);
		refuse(fd, why, l, ip);
		return;
	}
	if (!l->is_unix) /* replies are whole; never hold one back (Nagle) */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	smtpd_session_new(l, fd, sa, salen);
}

static void
on_accept_error(struct evconnlistener *lev, void *arg)
{
	struct smtpd_listener *l = arg;

	(void)lev;
	log_warn("-", "listener %s: accept failed", l->cfg->name);
}

/* ---- binding ---- */

/* bind_unix - the routing tier's socket, with mode and group */
static int
bind_unix(struct smtpd *sd, struct smtpd_listener *l, char *err, size_t errlen)
{
	const struct config_listen *c = l->cfg;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	struct group *gr = NULL;
	mode_t old;
	int fd;

	if (strlen(c->socket) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "[listen \"%s\"] socket path too long: %s", c->name, c->socket);
		return -1;
	}
	if (c->group && (gr = getgrnam(c->group)) == NULL) {
		snprintf(err, errlen, "[listen \"%s\"] group: no such group '%s'", c->name, c->group);
		return -1;
	}
	strcpy(sun.sun_path, c->socket);
	if (lstat(c->socket, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(c->socket); /* stale: the pid file lock keeps us alone */
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
		goto fail;
	old = umask(0177);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		umask(old);
		goto fail;
	}
	umask(old);
	if (chmod(c->socket, c->mode) < 0 ||
	    (gr && chown(c->socket, (uid_t)-1, gr->gr_gid) < 0))
		goto fail;
	l->lev = evconnlistener_new(sd->base, on_accept, l,
	                            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 511, fd);
	if (l->lev == NULL)
		goto fail;
	l->bound = xmalloc(strlen(c->socket) + 6);
	sprintf(l->bound, "unix:%s", c->socket);
	return 0;
fail:
	snprintf(err, errlen, "[listen \"%s\"] cannot listen on %s: %s", c->name,
	         c->socket, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/* bound_name - "host:port" of the bound socket (port 0 resolved) */
static char *
bound_name(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[64] = "?", buf[96];
	int port = 0;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET) {
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
			port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
			port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		}
	}
	snprintf(buf, sizeof(buf), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
	return xstrdup(buf);
}

/* bind_tcp - a TCP listener on host:port (numeric or resolvable host) */
static int
bind_tcp(struct smtpd *sd, struct smtpd_listener *l, char *err, size_t errlen)
{
	const struct config_listen *c = l->cfg;
	struct evutil_addrinfo hints = { 0 }, *ai = NULL;
	char host[256], port_s[16];
	int port, rc;

	if (parse_hostport(c->address, host, sizeof(host), &port, 587) < 0) {
		snprintf(err, errlen, "[listen \"%s\"] address: bad host:port '%s'", c->name, c->address);
		return -1;
	}
	snprintf(port_s, sizeof(port_s), "%d", port);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_ADDRCONFIG;
	if ((rc = evutil_getaddrinfo(host[0] ? host : NULL, port_s, &hints, &ai)) != 0) {
		snprintf(err, errlen, "[listen \"%s\"] address %s: %s", c->name, c->address,
		         evutil_gai_strerror(rc));
		return -1;
	}
	l->lev = evconnlistener_new_bind(sd->base, on_accept, l,
	                                 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
	                                 LEV_OPT_REUSEABLE, 511, ai->ai_addr,
	                                 (int)ai->ai_addrlen);
	evutil_freeaddrinfo(ai);
	if (l->lev == NULL) {
		snprintf(err, errlen, "[listen \"%s\"] cannot listen on %s: %s", c->name,
		         c->address, strerror(errno));
		return -1;
	}
	l->bound = bound_name(evconnlistener_get_fd(l->lev));
	return 0;
}

/* listener_setup - policy objects of one listener (TLS, accounts, CIDRs) */
static int
listener_setup(struct smtpd_listener *l, char *err, size_t errlen)
{
	const struct config_listen *c = l->cfg;
	char why[512];

	l->is_unix = c->socket != NULL;
	l->auth_required = c->auth && strcasecmp(c->auth, "required") == 0;
	if (c->trusted_networks &&
	    (l->trusted = smtpd_cidrs_parse(c->trusted_networks, why, sizeof(why))) == NULL) {
		snprintf(err, errlen, "[listen \"%s\"] trusted_networks: %s", c->name, why);
		return -1;
	}
	if (c->tls_cert && (l->tls = smtpd_tls_ctx(c->tls_cert, c->tls_key, why, sizeof(why))) == NULL) {
		snprintf(err, errlen, "[listen \"%s\"] %s", c->name, why);
		return -1;
	}
	if (c->accounts && (l->accounts = accounts_load(c->accounts, NULL, why, sizeof(why))) == NULL) {
		snprintf(err, errlen, "[listen \"%s\"] accounts: %s", c->name, why);
		return -1;
	}
	if (l->accounts && !l->tls && !l->is_unix) {
		snprintf(err, errlen, "[listen \"%s\"] accounts need tls_cert and tls_key "
		         "(AUTH is offered only after TLS)", c->name);
		return -1;
	}
	if (!l->is_unix && !l->accounts && !l->trusted)
		log_warnx("-", "listener %s: no accounts and no trusted_networks: "
		          "every recipient will be refused", c->name);
	return 0;
}

static void
listener_clear(struct smtpd_listener *l)
{
	if (l->lev) {
		evconnlistener_free(l->lev);
		l->lev = NULL;
		if (l->is_unix)
			unlink(l->cfg->socket);
	}
	smtpd_cidrs_free(l->trusted);
	l->trusted = NULL;
	if (l->tls)
		SSL_CTX_free(l->tls);
	l->tls = NULL;
	accounts_free(l->accounts);
	l->accounts = NULL;
	smtpd_ip_clear(&l->rate);
	free(l->bound);
	l->bound = NULL;
}

struct smtpd *
smtpd_start(struct event_base *base, const struct config *cfg, struct queue *q,
            char *err, size_t errlen)
{
	struct smtpd *sd = xcalloc(1, sizeof(*sd));
	size_t i;

	sd->base = base;
	sd->cfg = cfg;
	sd->q = q;
	if (cfg->hostname)
		snprintf(sd->hostname, sizeof(sd->hostname), "%s", cfg->hostname);
	else if (gethostname(sd->hostname, sizeof(sd->hostname) - 1) < 0)
		strcpy(sd->hostname, "localhost");
	sd->ls = xcalloc(cfg->n_listens ? cfg->n_listens : 1, sizeof(*sd->ls));
	for (i = 0; i < cfg->n_listens; i++) {
		struct smtpd_listener *l = &sd->ls[sd->nls++];
		l->sd = sd;
		l->cfg = &cfg->listens[i];
		if (listener_setup(l, err, errlen) < 0 ||
		    (l->is_unix ? bind_unix(sd, l, err, errlen) : bind_tcp(sd, l, err, errlen)) < 0) {
			smtpd_free(sd);
			return NULL;
		}
		evconnlistener_set_error_cb(l->lev, on_accept_error);
	}
	sd->sweep = event_new(base, -1, EV_PERSIST, on_sweep, sd);
	if (sd->sweep)
		event_add(sd->sweep, &(struct timeval){ SMTPD_SWEEP_MS / 1000, 0 });
	for (i = 0; i < sd->nls && sd->crypt == NULL; i++)
		if (sd->ls[i].accounts && (sd->crypt = smtpd_crypt_new(base)) == NULL) {
			snprintf(err, errlen, "cannot start the password check thread");
			smtpd_free(sd);
			return NULL;
		}
	for (i = 0; i < sd->nls; i++)
		log_info("-", "listening on %s (listener %s%s%s%s)", sd->ls[i].bound,
		         sd->ls[i].cfg->name, sd->ls[i].tls ? ", STARTTLS" : "",
		         sd->ls[i].cfg->implicit_tls ? ", implicit TLS" : "",
		         sd->ls[i].accounts ? ", AUTH" : "");
	return sd;
}

void
smtpd_session_unlink(struct smtpd_session *s)
{
	if (s->sd == NULL)
		return;
	if (s->prev)
		s->prev->next = s->next;
	else
		s->sd->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
}

void
smtpd_stop_accepting(struct smtpd *sd)
{
	struct smtpd_session *s, *next;
	size_t i;

	if (sd == NULL || sd->stopping)
		return;
	sd->stopping = 1;
	for (i = 0; i < sd->nls; i++)
		if (sd->ls[i].lev) {
			evconnlistener_free(sd->ls[i].lev);
			sd->ls[i].lev = NULL;
			if (sd->ls[i].is_unix)
				unlink(sd->ls[i].cfg->socket);
		}
	for (s = sd->sessions; s; s = next) {
		next = s->next;
		smtpd_session_shutdown(s);
	}
	log_info("-", "submission: listeners closed, %zu session(s) finishing",
	         smtpd_busy(sd));
}

size_t
smtpd_busy(const struct smtpd *sd)
{
	const struct smtpd_session *s;
	size_t n = 0;

	for (s = sd ? sd->sessions : NULL; s; s = s->next)
		if (s->state == SS_DATA || s->state == SS_BDAT || s->state == SS_COMMIT ||
		    (s->in_mail && s->used_bdat))
			n++;
	return n;
}

void
smtpd_reload(struct smtpd *sd)
{
	struct accounts *as;
	char err[512];
	size_t i;

	for (i = 0; sd && i < sd->nls; i++) {
		struct smtpd_listener *l = &sd->ls[i];
		if (l->cfg->accounts == NULL)
			continue;
		if ((as = accounts_load(l->cfg->accounts, l->accounts, err, sizeof(err))) == NULL) {
			log_warnx("-", "listener %s: accounts not reloaded, keeping %zu: %s",
			          l->cfg->name, accounts_count(l->accounts), err);
			continue;
		}
		accounts_free(l->accounts);
		l->accounts = as;
		log_info("-", "listener %s: %zu account(s) loaded from %s", l->cfg->name,
		         accounts_count(as), l->cfg->accounts);
	}
}

void
smtpd_free(struct smtpd *sd)
{
	size_t i;

	if (sd == NULL)
		return;
	while (sd->sessions)
		smtpd_session_free(sd->sessions);
	smtpd_crypt_free(sd->crypt);
	for (i = 0; i < sd->nls; i++)
		listener_clear(&sd->ls[i]);
	smtpd_ip_clear(&sd->conns);
	smtpd_ip_clear(&sd->authfail);
	smtpd_ip_clear(&sd->greeted);
	if (sd->sweep)
		event_free(sd->sweep);
	free(sd->ls);
	free(sd);
}
