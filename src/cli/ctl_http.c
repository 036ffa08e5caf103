/*
 * ctl_http.c - mxbatchctl's HTTP/1.1 client: one request per TCP
 * connection ("Connection: close"), bearer token, JSON in and out.
 * Blocking sockets with a timeout; responses are read to the end (the
 * admin API sends a Content-Length, and we also accept chunked bodies).
 */
#include "cli/ctl.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/core.h"

#define CTL_MAX_RESPONSE (256u * 1024 * 1024)

char *
ctl_urlencode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = xmalloc(strlen(s) * 3 + 1), *o = out;

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~') {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = '\0';
	return out;
}

/* ctl_connect - a connected TCP socket to the API, or -1 */
static int
ctl_connect(const struct ctl *c)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	struct timeval tv = { c->timeout_s, 0 };
	char port[16];
	int fd = -1, rc;

	snprintf(port, sizeof(port), "%d", c->port);
	if ((rc = getaddrinfo(c->host, port, &hints, &res)) != 0) {
		fprintf(stderr, "mxbatchctl: %s: %s\n", c->host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0)
		fprintf(stderr, "mxbatchctl: cannot connect to the admin API at %s:%d: %s\n",
		        c->host, c->port, strerror(errno));
	return fd;
}

static int
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* read_all - the whole response into a NUL-terminated buffer */
static char *
read_all(int fd, size_t *len)
{
	size_t cap = 64 * 1024, n = 0;
	char *buf = xmalloc(cap + 1);
	ssize_t r;

	for (;;) {
		if (n == cap) {
			if (cap >= CTL_MAX_RESPONSE)
				break;
			buf = xrealloc(buf, (cap *= 2) + 1);
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(buf);
			return NULL;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* dechunk - decode a chunked body in place; its new length */
static size_t
dechunk(char *b, size_t len)
{
	size_t in = 0, out = 0;

	while (in < len) {
		char *end;
		unsigned long n = strtoul(b + in, &end, 16);
		char *crlf = strstr(b + in, "\r\n");

		if (crlf == NULL || n == 0 || (size_t)(crlf - b) + 2 + n > len)
			break;
		(void)end;
		in = (size_t)(crlf - b) + 2;
		memmove(b + out, b + in, n);
		out += n;
		in += n + 2;
	}
	b[out] = '\0';
	return out;
}

/* ctl_exchange - send one request, return the raw response body */
static int
ctl_exchange(const struct ctl *c, const char *method, const char *path,
             const char *body, int *status, char **out, size_t *outlen)
{
	char *req = NULL, *resp = NULL, *hdr_end;
	size_t blen = body ? strlen(body) : 0, rlen;
	int fd, rc = -1;

	if ((fd = ctl_connect(c)) < 0)
		return -1;
	if (asprintf(&req, "%s %s HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
	             "User-Agent: mxbatchctl\r\nAccept: application/json\r\n"
	             "Connection: close\r\nContent-Type: application/json\r\n"
	             "Content-Length: %zu\r\n\r\n%s", method, path, c->host, c->port,
	             c->token, blen, body ? body : "") < 0)
		goto done;
	if (write_all(fd, req, strlen(req)) < 0 || (resp = read_all(fd, &rlen)) == NULL ||
	    sscanf(resp, "HTTP/1.%*d %d", status) != 1 ||
	    (hdr_end = strstr(resp, "\r\n\r\n")) == NULL) {
		fprintf(stderr, "mxbatchctl: no valid answer from %s:%d: %s\n", c->host,
		        c->port, errno ? strerror(errno) : "malformed response");
		goto done;
	}
	*hdr_end = '\0';
	hdr_end += 4;
	*outlen = rlen - (size_t)(hdr_end - resp);
	if (strcasestr(resp, "\r\nTransfer-Encoding: chunked"))
		*outlen = dechunk(hdr_end, *outlen);
	*out = xstrndup(hdr_end, *outlen);
	rc = 0;
done:
	free(req);
	free(resp);
	close(fd);
	return rc;
}

int
ctl_request(const struct ctl *c, const char *method, const char *path,
            json_t *body, int *status, json_t **out)
{
	char *b = body ? json_dumps(body, JSON_COMPACT) : NULL, *resp = NULL;
	size_t len = 0;
	int rc = ctl_exchange(c, method, path, b, status, &resp, &len);

	free(b);
	if (rc < 0)
		return -1;
	*out = json_loadb(resp, len, 0, NULL);
	if (*out == NULL)
		*out = json_pack("{s:s, s:s%}", "error", "not_json", "detail", resp, len);
	if (*out == NULL)
		*out = json_pack("{s:s}", "error", "not_json");
	free(resp);
	return 0;
}

int
ctl_get_text(const struct ctl *c, const char *path, int *status, char **out)
{
	size_t len;

	return ctl_exchange(c, "GET", path, NULL, status, out, &len);
}
