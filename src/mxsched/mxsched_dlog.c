/*
 * mxsched_dlog.c - the scheduler's delivery-log lines (Delivery,
 * TransientFailure, Bounce, Expiration, Suspended), rendered here and
 * appended to the shared log (core dlog) once the outcome is durable.
 * The format is documented in docs/delivery-log.md.
 */
#include "mxsched/mxsched_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void
set_str(json_t *o, const char *k, const char *v)
{
	if (v && *v)
		json_object_set_new(o, k, json_string(v));
}

void
dlog_write(FILE *f, const char *event, const struct qmsg *m,
           const struct rcpt *r, const struct sched_reply *rp,
           const char *category, uint64_t next_ms)
{
	const struct site *site = rp->site;
	const struct queue_envelope *env = m->env;
	json_t *o = json_object();
	uint64_t now = now_ms();
	char *line;

	json_object_set_new(o, "time", json_real((double)now / 1000.0));
	json_object_set_new(o, "event", json_string(event));
	json_object_set_new(o, "id", json_string(m->idtext));
	set_str(o, "sender", env->sender);
	json_object_set_new(o, "recipient", json_string(r->address));
	set_str(o, "tenant", env->tenant);
	set_str(o, "envid", env->envid);
	if (site)
		json_object_set_new(o, "site", json_string(site->key));
	set_str(o, "mx", rp->mx_host);
	set_str(o, "mx_addr", rp->mx_addr);
	set_str(o, "tls", rp->tls);
	if (rp->code)
		json_object_set_new(o, "code", json_integer(rp->code));
	set_str(o, "enhanced", rp->enhanced);
	set_str(o, "reply", rp->text);
	set_str(o, "category", category);
	set_str(o, "by", rp->by);
	if (strcmp(event, "AdminAction") == 0) { /* an operator's delete */
		json_object_set_new(o, "action", json_string("delete"));
		json_object_set_new(o, "terminal", json_true());
	}
	json_object_set_new(o, "attempt", json_integer(r->attempts + 1));
	json_object_set_new(o, "queue_time_ms",
	                    json_integer((json_int_t)(now - env->submit_ms)));
	json_object_set_new(o, "size", json_integer((json_int_t)env->size));
	if (next_ms)
		json_object_set_new(o, "next_attempt", json_real((double)next_ms / 1000.0));
	line = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
	if (line) {
		fputs(line, f);
		fputc('\n', f);
		free(line);
	}
	json_decref(o);
}
