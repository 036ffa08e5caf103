/*
 * ctl.h - shared declarations of mxbatchctl, the admin CLI (src/cli).
 * mxbatchctl talks to the daemon only through the admin HTTP API.
 */
#ifndef MXB_CTL_H
#define MXB_CTL_H

#include <stddef.h>

#include <jansson.h>

/* exit codes */
#define CTL_OK    0
#define CTL_ERR   1
#define CTL_USAGE 2

struct ctl {
	char host[256];
	int port;
	char *token;
	int json;         /* --json: print the API's JSON */
	int timeout_s;    /* socket timeout */
};

/* ---- ctl_http.c ---- */
/* ctl_request - one HTTP/1.1 request; *status and *body (parsed JSON, or
 * a JSON string holding a non-JSON body). 0 ok (any status), -1 when the
 * daemon could not be reached (message on stderr). */
int ctl_request(const struct ctl *c, const char *method, const char *path,
                json_t *body, int *status, json_t **out);
/* ctl_get_text - GET path, the body as text (for /metrics). */
int ctl_get_text(const struct ctl *c, const char *path, int *status, char **out);
/* ctl_urlencode - percent-encode s for one path segment or query value */
char *ctl_urlencode(const char *s);

/* ---- ctl_print.c ---- */
void ctl_print_json(json_t *o);
void ctl_print_queue(json_t *o);
void ctl_print_sites(json_t *o);
void ctl_print_site(json_t *o);  /* one site with its last hour */
void ctl_print_kv(json_t *o, int indent);
void ctl_print_messages(json_t *o);
void ctl_print_message(json_t *o);
void ctl_print_event(json_t *ev);
void ctl_print_blocklists(json_t *o); /* addresses, domains, blocks */
/* ctl_age - "3d4h", "12m", "40s" for a number of ms */
const char *ctl_age(long long ms, char *buf, size_t len);

#endif
