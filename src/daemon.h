/* daemon.h - the daemon's lifecycle (src/daemon.c), used by main() only. */
#ifndef MXB_DAEMON_H
#define MXB_DAEMON_H

#include "core/core.h"

/* Run the daemon on cfg until SIGTERM/SIGINT; returns the exit status. */
int daemon_run(const struct config *cfg, int foreground);

#endif
