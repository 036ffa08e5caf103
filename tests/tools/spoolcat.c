/*
 * spoolcat - print what a spool holds, one JSON object per message, so
 * integration tests can see what the submission server queued.
 *
 *   spoolcat [--body] SPOOL_DIR
 *
 * Run it on a spool no daemon holds (after mxbatchd stopped or was
 * killed): opening runs the store's recovery. Each line:
 *   {"id":..., "sender":..., "listener":..., "tenant":..., "envid":...,
 *    "ret":"FULL"|"HDRS"|null, "smtputf8":bool, "8bitmime":bool,
 *    "size":n, "sha256":"hex", "rcpts":[{"address","notify","orcpt"}],
 *    "body_b64": "..." (with --body)}
 * Exit 0, or 1 with a message on stderr when the spool cannot be opened.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "core/core.h"
#include "queue/queue.h"

/* body_json - sha256 (and base64 with want_body) of a message body */
static void
body_json(struct queue *q, queue_msgid id, int want_body, json_t *o)
{
	struct queue_body *b = queue_body_open(q, id);
	unsigned char buf[65536], md[32];
	char hex[65];
	unsigned mdlen = 32, i;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	char *all = NULL;
	size_t alln = 0;
	long n;

	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	while (b && (n = queue_body_read(b, buf, sizeof(buf))) > 0) {
		EVP_DigestUpdate(ctx, buf, (size_t)n);
		if (want_body) {
			all = xrealloc(all, alln + (size_t)n);
			memcpy(all + alln, buf, (size_t)n);
			alln += (size_t)n;
		}
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	for (i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", md[i]);
	json_object_set_new(o, "sha256", json_string(hex));
	if (want_body) {
		char *enc = xmalloc(4 * ((alln + 2) / 3) + 1);
		EVP_EncodeBlock((unsigned char *)enc, (unsigned char *)all, (int)alln);
		json_object_set_new(o, "body_b64", json_string(enc));
		free(enc);
	}
	free(all);
	queue_body_close(b);
}

static json_t *
str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *
rcpts_json(struct queue *q, queue_msgid id)
{
	struct queue_rcpt *r = NULL;
	json_t *a = json_array();
	int n = queue_msg_rcpts(q, id, &r), i;

	for (i = 0; i < n; i++)
		json_array_append_new(a, json_pack("{s:o, s:i, s:o}",
		                      "address", str_or_null(r[i].address),
		                      "notify", (int)r[i].notify,
		                      "orcpt", str_or_null(r[i].orcpt)));
	queue_rcpts_free(r, n > 0 ? (size_t)n : 0);
	return a;
}

static void
print_message(struct queue *q, const struct queue_envelope *e, int want_body)
{
	char id[QUEUE_ID_TEXT_LEN];
	json_t *o = json_object();
	char *text;

	queue_id_to_text(e->id, id);
	json_object_set_new(o, "id", json_string(id));
	json_object_set_new(o, "sender", str_or_null(e->sender));
	json_object_set_new(o, "listener", str_or_null(e->listener));
	json_object_set_new(o, "tenant", str_or_null(e->tenant));
	json_object_set_new(o, "envid", str_or_null(e->envid));
	json_object_set_new(o, "ret", e->ret == QUEUE_RET_FULL ? json_string("FULL")
	                    : e->ret == QUEUE_RET_HDRS ? json_string("HDRS") : json_null());
	json_object_set_new(o, "smtputf8", json_boolean(e->flags & QUEUE_MSG_SMTPUTF8));
	json_object_set_new(o, "8bitmime", json_boolean(e->flags & QUEUE_MSG_8BITMIME));
	json_object_set_new(o, "size", json_integer((json_int_t)e->size));
	json_object_set_new(o, "rcpts", rcpts_json(q, e->id));
	body_json(q, e->id, want_body, o);
	text = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
	puts(text);
	free(text);
	json_decref(o);
}

int
main(int argc, char **argv)
{
	struct queue_opts opts = { 0 };
	struct event_base *base;
	struct queue *q;
	struct queue_envelope **page = NULL;
	queue_msgid after = 0;
	char err[1024] = "";
	int want_body = 0, n, i;

	if (argc > 1 && strcmp(argv[1], "--body") == 0)
		want_body = 1, argc--, argv++;
	if (argc != 2) {
		fprintf(stderr, "usage: spoolcat [--body] SPOOL_DIR\n");
		return 2;
	}
	log_init("spoolcat", 1, LOG_LVL_WARN);
	base = event_base_new();
	opts.path = argv[1];
	if ((q = queue_open(base, &opts, err, sizeof(err))) == NULL) {
		fprintf(stderr, "spoolcat: %s\n", err);
		return 1;
	}
	page = xcalloc(256, sizeof(*page));
	while ((n = queue_msg_list(q, after, NULL, 256, page)) > 0) {
		for (i = 0; i < n; i++) {
			print_message(q, page[i], want_body);
			after = page[i]->id;
			queue_envelope_free(page[i]);
		}
	}
	free(page);
	queue_close(q);
	event_base_free(base);
	return n < 0 ? 1 : 0;
}
