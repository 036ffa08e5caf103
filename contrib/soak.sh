#!/bin/sh
# soak.sh [SECONDS] [BUILD_DIR] - 10-minute soak of mxbatchd (default 600 s):
# submission over the routing socket at ~80 % of the measured maximum rate
# with one slow site; RSS, open fds and p99 submission latency are printed
# every 10 s and summarised (start/end/max). Needs a build (default build/).
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-600}
build=${2:-${MXB_BUILD_DIR:-$root/build}}
case $build in /*) ;; *) build=$(pwd)/$build ;; esac
export MXB_BUILD_DIR=$build MXB_SOURCE_DIR=$root PYTHONDONTWRITEBYTECODE=1
exec python3 "$root/tests/stress/e2e_soak.py" "$secs"
