/*
 * admin_token.c - the admin API's bearer tokens, from [admin] token_file.
 *
 * File format: one token per line, either "SECRET" (named "admin") or
 * "NAME:SECRET"; blank lines and lines starting with '#' are ignored. The
 * name is what the audit log records as "who". A missing file is created
 * with one random 256-bit token (64 hex digits), mode 0600 (given to
 * [server] user when the daemon starts as root); an existing
 * file readable or writable by group or others is refused. Tokens are
 * compared in constant time. Loop thread (start-up only for the file).
 */
#include "api/admin_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"

#define TOKEN_MIN 16
#define TOKEN_MAX 256

/* token_mkdir - create the missing directories above path, mode 0700 */
static int
token_mkdir(const char *path, char *err, size_t errlen)
{
	char *dir = xstrdup(path);
	int rc = 0;

	for (char *p = strchr(dir + 1, '/'); p && rc == 0; p = strchr(p + 1, '/')) {
		*p = '\0';
		if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
			snprintf(err, errlen, "cannot create directory %s for the token file: %s",
			         dir, strerror(errno));
			rc = -1;
		}
		*p = '/';
	}
	free(dir);
	return rc;
}

/* token_chown - a daemon started as root gives the file to [server] user,
 * who runs it (and mxbatchctl as that user) after the privilege drop */
static void
token_chown(int fd, const char *user)
{
	struct passwd *pw;

	if (geteuid() != 0 || user == NULL || (pw = getpwnam(user)) == NULL ||
	    pw->pw_uid == 0)
		return;
	if (fchown(fd, pw->pw_uid, pw->pw_gid) < 0)
		log_warn("-", "cannot give the admin token file to %s", user);
}

/* token_create - write a new random token into a new file, mode 0600 */
static int
token_create(const char *path, const char *user, char *err, size_t errlen)
{
	unsigned char rnd[32];
	char hex[sizeof(rnd) * 2 + 2];
	int fd, rc = -1;

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		snprintf(err, errlen, "token file %s: no random bytes: %s", path,
		         strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
	strcat(hex, "\n");
	if (token_mkdir(path, err, errlen) < 0)
		return -1;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create token file %s: %s", path,
		         strerror(errno));
		return -1;
	}
	token_chown(fd, user);
	if (write(fd, hex, strlen(hex)) == (ssize_t)strlen(hex) && fsync(fd) == 0)
		rc = 0;
	else
		snprintf(err, errlen, "cannot write token file %s: %s", path,
		         strerror(errno));
	close(fd);
	if (rc == 0)
		log_info("-", "created admin token file %s (mode 0600)", path);
	return rc;
}

/* token_add - one line of the file; -1 when malformed */
static int
token_add(struct admin *a, char *line)
{
	char *colon = strchr(line, ':'), *secret = colon ? colon + 1 : line;
	size_t n = strlen(secret);

	if (n < TOKEN_MIN || n > TOKEN_MAX || a->n_tokens == ADMIN_MAX_TOKENS)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (secret[i] <= ' ' || secret[i] > '~')
			return -1;
	if (colon) {
		*colon = '\0';
		if (*line == '\0' || strlen(line) > 64)
			return -1;
	}
	a->tokens[a->n_tokens].name = xstrdup(colon ? line : "admin");
	a->tokens[a->n_tokens].secret = xstrdup(secret);
	a->n_tokens++;
	return 0;
}

/* token_read - parse an open token file */
static int
token_read(struct admin *a, FILE *f, const char *path, char *err, size_t errlen)
{
	char line[512];
	int lineno = 0;

	while (fgets(line, sizeof(line), f)) {
		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0' || line[0] == '#')
			continue;
		if (token_add(a, line) < 0) {
			snprintf(err, errlen, "token file %s:%d: expected SECRET or "
			         "NAME:SECRET (%d-%d printable characters, at most %d "
			         "tokens)", path, lineno, TOKEN_MIN, TOKEN_MAX,
			         ADMIN_MAX_TOKENS);
			return -1;
		}
	}
	if (a->n_tokens == 0) {
		snprintf(err, errlen, "token file %s holds no token", path);
		return -1;
	}
	return 0;
}

int
admin_token_load(struct admin *a, const char *path, char *err, size_t errlen)
{
	struct stat st;
	FILE *f = NULL;
	int fd, rc = -1;

	if (path == NULL || *path == '\0') {
		snprintf(err, errlen, "[admin] token_file is not set");
		return -1;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT) {
		if (token_create(path, a->cfg ? a->cfg->user : NULL, err, errlen) < 0)
			return -1;
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	}
	if (fd < 0) {
		snprintf(err, errlen, "cannot open token file %s: %s", path,
		         strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "token file %s is not a regular file", path);
		goto done;
	}
	if (st.st_mode & 077) {
		snprintf(err, errlen, "token file %s is accessible by group or others "
		         "(mode %04o): chmod 600 it", path, (unsigned)(st.st_mode & 07777));
		goto done;
	}
	if ((f = fdopen(fd, "r")) == NULL) {
		snprintf(err, errlen, "cannot read token file %s", path);
		goto done;
	}
	fd = -1;
	rc = token_read(a, f, path, err, errlen);
done:
	if (f)
		fclose(f);
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		admin_tokens_free(a);
	return rc;
}

void
admin_tokens_free(struct admin *a)
{
	for (size_t i = 0; i < a->n_tokens; i++) {
		free(a->tokens[i].name);
		explicit_bzero(a->tokens[i].secret, strlen(a->tokens[i].secret));
		free(a->tokens[i].secret);
	}
	a->n_tokens = 0;
}

/* ct_equal - compare without an early exit (time depends on lengths only) */
static int
ct_equal(const char *given, size_t glen, const char *secret)
{
	size_t slen = strlen(secret);
	unsigned char diff = (unsigned char)(glen != slen);

	for (size_t i = 0; i < glen; i++)
		diff |= (unsigned char)(given[i] ^ secret[i % slen]);
	return diff == 0;
}

const char *
admin_token_check(const struct admin *a, const char *authz)
{
	const char *name = NULL;
	size_t glen;

	if (authz == NULL || strncasecmp(authz, "Bearer ", 7) != 0)
		return NULL;
	authz += 7;
	while (*authz == ' ')
		authz++;
	glen = strlen(authz);
	if (glen == 0 || glen > TOKEN_MAX)
		return NULL;
	for (size_t i = 0; i < a->n_tokens; i++)
		if (ct_equal(authz, glen, a->tokens[i].secret) && name == NULL)
			name = a->tokens[i].name;
	return name;
}
