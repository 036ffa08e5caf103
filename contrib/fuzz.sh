#!/bin/sh
# fuzz.sh [SECONDS] [TARGET...] - the long fuzzing campaign: every libFuzzer
# target of tests/fuzz for SECONDS each (default 600), new interesting
# inputs kept in build-fuzz/corpus-<target> between runs (merged into the
# committed seeds only by hand: libFuzzer -merge=1). Crashes are left in
# build-fuzz/artifacts; see docs/reliability.md.
set -u
secs=${1:-600}
[ $# -gt 0 ] && shift
root=$(cd "$(dirname "$0")/.." && pwd)
MXB_FUZZ_KEEP=1 exec "$root/tests/fuzz/run.sh" "$secs" "$@"
