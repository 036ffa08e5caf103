/*
 * ctl_config.c - where mxbatchctl finds the admin API and its token:
 * --url / --token-file, else [admin] listen / token_file of the daemon's
 * configuration (-c FILE, else $MXBATCH_CONFIG, else /etc/mxbatch/
 * mxbatch.conf if it exists, else the built-in defaults). The token is
 * the first token line of the file ("SECRET" or "NAME:SECRET");
 * $MXBATCH_TOKEN overrides the file.
 */
#include "cli/ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"

#define DEFAULT_CONFIG "/etc/mxbatch/mxbatch.conf"

int ctl_setup(struct ctl *c, const char *config, const char *url,
              const char *token_file);

/* read_token - the first token of the file */
static char *
read_token(const char *path)
{
	char line[512], *tok = NULL, *colon;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		fprintf(stderr, "mxbatchctl: cannot read token file %s: %s\n", path,
		        strerror(errno));
		return NULL;
	}
	while (tok == NULL && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0' || line[0] == '#')
			continue;
		colon = strchr(line, ':');
		tok = xstrdup(colon ? colon + 1 : line);
	}
	fclose(f);
	if (tok == NULL)
		fprintf(stderr, "mxbatchctl: token file %s holds no token\n", path);
	return tok;
}

/* set_addr - "http://host:port[/]" or "host:port" */
static int
set_addr(struct ctl *c, const char *url)
{
	char buf[300];
	size_t n;

	if (strncmp(url, "http://", 7) == 0)
		url += 7;
	snprintf(buf, sizeof(buf), "%s", url);
	n = strlen(buf);
	if (n > 0 && buf[n - 1] == '/')
		buf[n - 1] = '\0';
	if (parse_hostport(buf, c->host, sizeof(c->host), &c->port, 8025) < 0) {
		fprintf(stderr, "mxbatchctl: bad address '%s' (want http://HOST:PORT)\n", url);
		return -1;
	}
	return 0;
}

int
ctl_setup(struct ctl *c, const char *config, const char *url,
          const char *token_file)
{
	struct config *cfg;
	char err[2048] = "";
	int rc = -1;

	if (config == NULL)
		config = getenv("MXBATCH_CONFIG");
	if (config == NULL && access(DEFAULT_CONFIG, R_OK) == 0)
		config = DEFAULT_CONFIG;
	if ((cfg = config_load(config, err, sizeof(err))) == NULL) {
		fprintf(stderr, "mxbatchctl: %s", err);
		if (err[0] && err[strlen(err) - 1] != '\n')
			fputc('\n', stderr);
		return -1;
	}
	if (set_addr(c, url ? url : cfg->admin_listen) < 0)
		goto done;
	if (getenv("MXBATCH_TOKEN") && *getenv("MXBATCH_TOKEN"))
		c->token = xstrdup(getenv("MXBATCH_TOKEN"));
	else if ((c->token = read_token(token_file ? token_file
	                                           : cfg->admin_token_file)) == NULL)
		goto done;
	rc = 0;
done:
	config_free(cfg);
	return rc;
}
