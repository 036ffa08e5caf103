/*
 * mxbatchd - the daemon: wires the modules together and runs the loop.
 *
 * main() only parses the command line, loads the configuration, opens
 * the spool, starts the doors (submission, admin API) and the scheduler,
 * drops privileges, and runs libevent until SIGTERM/SIGINT. Shutdown is
 * graceful and bounded: stop accepting, let in-flight work finish for up
 * to [server] shutdown_timeout, close the spool.
 */
#include "core/core.h"
#include "daemon.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MXB_VERSION "0.1.0"

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: mxbatchd [--config FILE] [--foreground]\n"
	    "       mxbatchd --check-config FILE\n"
	    "  -c, --config FILE     configuration file (default: built-in defaults)\n"
	    "  -f, --foreground      stay in the foreground, log to stderr\n"
	    "      --check-config F  validate F, print the effective configuration\n"
	    "  -V, --version         print the version\n");
}

/* check_config - --check-config: 0 and the effective config, or 1 and errors */
static int
check_config(const char *path)
{
	char err[8192];
	struct config *cfg = config_load(path, err, sizeof(err));

	if (cfg == NULL) {
		fputs(err, stderr);
		return 1;
	}
	config_dump(cfg, stdout);
	config_free(cfg);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "check-config", required_argument, NULL, 'C' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	char err[8192];
	struct config *cfg;
	int ch, foreground = 0, rc;

	while ((ch = getopt_long(argc, argv, "c:fVh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'f': foreground = 1; break;
		case 'C': return check_config(optarg);
		case 'V': printf("mxbatchd %s\n", MXB_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if ((cfg = config_load(path, err, sizeof(err))) == NULL) {
		fputs(err, stderr);
		fprintf(stderr, "mxbatchd: configuration refused, not starting\n");
		return 1;
	}
	rc = daemon_run(cfg, foreground);
	config_free(cfg);
	return rc;
}
