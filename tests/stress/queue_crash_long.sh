#!/bin/sh
# queue_crash_long.sh - the 1,000-kill crash test of the message store.
# Same program as the CTest "queue_crash" (25 kills), run for longer:
#   tests/stress/queue_crash_long.sh [BUILD_DIR] [KILLS]
# BUILD_DIR defaults to $MXB_BUILD_DIR, then ./build. Takes ~10 minutes.
set -eu
build=${1:-${MXB_BUILD_DIR:-build}}
kills=${2:-1000}
bin=$build/tests/unit/queue/queue_crash
if [ ! -x "$bin" ]; then
	echo "build it first: cmake --build $build --target queue_crash" >&2
	exit 2
fi
exec "$bin" -k "$kills"
