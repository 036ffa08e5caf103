/*
 * mxsink.c - the test MX server of the integration tests and benchmarks.
 *
 *   mxsink --listen IP:PORT [--listen ...] --log FILE [--config FILE]
 *          [--save-bodies DIR] [--tls-cert FILE --tls-key FILE]
 *          [--idle-timeout SECONDS]
 *
 * One single-threaded libevent process accepts SMTP on every --listen
 * address, records each transaction and connection as a JSON line in the
 * log, and behaves as the JSON --config says (re-read on SIGHUP): reply
 * codes per phase or recipient, limits, delays, drops, hangs, STARTTLS,
 * advertised extensions. SIGTERM/SIGINT stop it. This file only wires the
 * parts together; the protocol is in mxsink_session.c and mxsink_cmd.c.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>

#include "core/core.h"
#include "mxsink_internal.h"

static void usage(FILE *out)
{
	fprintf(out,
	    "usage: mxsink --listen IP:PORT [--listen IP:PORT ...] --log FILE\n"
	    "              [--config FILE] [--save-bodies DIR]\n"
	    "              [--tls-cert FILE --tls-key FILE] "
	    "[--idle-timeout SECONDS]\n"
	    "Test MX server: logs every transaction and connection as JSON\n"
	    "lines; behaviour from the JSON config, re-read on SIGHUP.\n"
	    "See docs/testing.md.\n");
}

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg)
{
	(void)evl;
	(void)salen;
	session_accept(arg, fd, sa);
}

static void on_accept_error(struct evconnlistener *evl, void *arg)
{
	struct listener *l = arg;

	(void)evl;
	fprintf(stderr, "mxsink: accept on %s: %s\n", l->addr,
	        evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

/* listener_open - bind "IP:PORT" (IPv6 as "[::1]:PORT"); -1 on error */
static int listener_open(struct sink *sk, struct listener *l, const char *a)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	int port = 0;

	memset(&ss, 0, sizeof(ss));
	if (parse_hostport(a, l->ip, sizeof(l->ip), &port, 25) < 0 || port <= 0) {
		fprintf(stderr, "mxsink: bad --listen address \"%s\"\n", a);
		return -1;
	}
	if (inet_pton(AF_INET, l->ip, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		snprintf(l->addr, sizeof(l->addr), "%s:%d", l->ip, port);
	} else if (inet_pton(AF_INET6, l->ip, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		snprintf(l->addr, sizeof(l->addr), "[%s]:%d", l->ip, port);
	} else {
		fprintf(stderr, "mxsink: --listen needs an IP address: \"%s\"\n", a);
		return -1;
	}
	l->sink = sk;
	l->evl = evconnlistener_new_bind(sk->base, on_accept, l,
	                                 LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE,
	                                 1024, (struct sockaddr *)&ss, sizeof(ss));
	if (l->evl == NULL) {
		fprintf(stderr, "mxsink: cannot listen on %s: %s\n", l->addr,
		        strerror(errno));
		return -1;
	}
	evconnlistener_set_error_cb(l->evl, on_accept_error);
	return 0;
}

/* tls_open - the server context for STARTTLS; -1 on error */
static int tls_open(struct sink *sk, const char *cert, const char *key)
{
	if (cert == NULL && key == NULL)
		return 0;
	if (cert == NULL || key == NULL) {
		fprintf(stderr, "mxsink: --tls-cert and --tls-key go together\n");
		return -1;
	}
	sk->tls = SSL_CTX_new(TLS_server_method());
	if (sk->tls == NULL ||
	    SSL_CTX_use_certificate_chain_file(sk->tls, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(sk->tls, key, SSL_FILETYPE_PEM) != 1) {
		fprintf(stderr, "mxsink: cannot load TLS certificate %s / key %s: "
		        "%s\n", cert, key, ERR_error_string(ERR_get_error(), NULL));
		return -1;
	}
	return 0;
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
	struct sink *sk = arg;
	char err[600];
	int ok;

	(void)sig;
	(void)what;
	ok = config_load_file(sk, err, sizeof(err)) == 0;
	sk->generation++;
	log_event(sk, json_pack("{s:s, s:i, s:b, s:s}", "type", "config",
	                        "generation", (int)sk->generation, "ok", ok,
	                        "error", ok ? "" : err));
	if (!ok)
		fprintf(stderr, "mxsink: config not reloaded: %s\n", err);
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
	struct sink *sk = arg;

	(void)sig;
	(void)what;
	log_event(sk, json_pack("{s:s}", "type", "stop"));
	event_base_loopbreak(sk->base);
}

static void log_ready(struct sink *sk)
{
	json_t *addrs = json_array();

	for (size_t i = 0; i < sk->n_listeners; i++)
		json_array_append_new(addrs, json_string(sk->listeners[i].addr));
	log_event(sk, json_pack("{s:s, s:i, s:o, s:i, s:b}", "type", "ready",
	                        "pid", (int)getpid(), "listen", addrs,
	                        "generation", 0, "tls", sk->tls != NULL));
}

struct opts {
	const char *listen[64];
	size_t n_listen;
	const char *log, *cert, *key;
};

/* parse_args - fill sk and o from argv; -1 (message printed) on error */
static int parse_args(int argc, char **argv, struct sink *sk, struct opts *o)
{
	static const struct option lo[] = {
		{"listen", 1, NULL, 'l'}, {"log", 1, NULL, 'o'},
		{"config", 1, NULL, 'c'}, {"save-bodies", 1, NULL, 's'},
		{"tls-cert", 1, NULL, 'C'}, {"tls-key", 1, NULL, 'K'},
		{"idle-timeout", 1, NULL, 't'}, {"help", 0, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	int c;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (o->n_listen == 64)
				return -1;
			o->listen[o->n_listen++] = optarg;
			break;
		case 'o': o->log = optarg; break;
		case 'c': sk->config_path = optarg; break;
		case 's': sk->save_dir = optarg; break;
		case 'C': o->cert = optarg; break;
		case 'K': o->key = optarg; break;
		case 't': sk->idle_timeout_s = (unsigned)atoi(optarg); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind != argc || o->n_listen == 0 || o->log == NULL ||
	    sk->idle_timeout_s == 0) {
		usage(stderr);
		return -1;
	}
	return 0;
}

/* sink_open - everything but the loop; -1 (message printed) on error */
static int sink_open(struct sink *sk, struct opts *o)
{
	char err[600];

	if ((sk->log = fopen(o->log, "a")) == NULL) {
		fprintf(stderr, "mxsink: cannot open log %s: %s\n", o->log,
		        strerror(errno));
		return -1;
	}
	setvbuf(sk->log, NULL, _IOFBF, 1 << 16);
	if (tls_open(sk, o->cert, o->key) < 0)
		return -1;
	sk->listeners = xcalloc(o->n_listen, sizeof(*sk->listeners));
	for (size_t i = 0; i < o->n_listen; i++) {
		if (listener_open(sk, &sk->listeners[i], o->listen[i]) < 0)
			return -1;
		sk->n_listeners = i + 1;
	}
	if (config_load_file(sk, err, sizeof(err)) < 0) {
		fprintf(stderr, "mxsink: %s\n", err);
		return -1;
	}
	return 0;
}

static void sink_close(struct sink *sk)
{
	for (size_t i = 0; i < sk->n_listeners; i++) {
		evconnlistener_free(sk->listeners[i].evl);
		behaviour_free(sk->listeners[i].beh);
	}
	free(sk->listeners);
	if (sk->tls != NULL)
		SSL_CTX_free(sk->tls);
	if (sk->log != NULL)
		fclose(sk->log);
}

int main(int argc, char **argv)
{
	struct sink sk = { .idle_timeout_s = 300 };
	struct opts o = { .n_listen = 0 };
	struct event *ev_hup = NULL, *ev_term = NULL, *ev_int = NULL;
	int rc = 2;

	signal(SIGPIPE, SIG_IGN);
	if ((sk.base = event_base_new()) == NULL)
		return 2;
	if (parse_args(argc, argv, &sk, &o) < 0 || sink_open(&sk, &o) < 0)
		goto out;
	ev_hup = evsignal_new(sk.base, SIGHUP, on_hup, &sk);
	ev_term = evsignal_new(sk.base, SIGTERM, on_stop, &sk);
	ev_int = evsignal_new(sk.base, SIGINT, on_stop, &sk);
	evsignal_add(ev_hup, NULL);
	evsignal_add(ev_term, NULL);
	evsignal_add(ev_int, NULL);
	log_ready(&sk);
	event_base_dispatch(sk.base);
	session_close_all(&sk);
	rc = 0;
out:
	if (ev_hup) event_free(ev_hup);
	if (ev_term) event_free(ev_term);
	if (ev_int) event_free(ev_int);
	sink_close(&sk);
	event_base_free(sk.base);
	return rc;
}
