#!/bin/sh
# queue_bench.sh - benchmark of the message store (src/queue), not a test.
#
#   contrib/bench/queue_bench.sh [BUILD_DIR] [--big]
#
# Durable submissions/s and completion latency of 4 KiB x 10-recipient
# messages with 1, 16 and 64 concurrent submitters, and of 100 KiB
# messages (chunks in SST files vs RocksDB blob files). With --big also a
# 1,000,000-message x 10-recipient spool: RSS, time to open and recover,
# time to claim the first 1,000 due recipients (needs ~10 GB of disk and
# several minutes). The spool goes to a temporary directory under
# ${TMPDIR:-/tmp}, removed at the end. The machine load is printed first:
# the figures mean little on a busy machine.
set -eu
build=${MXB_BUILD_DIR:-build}
big=0
for a in "$@"; do
	case $a in
	--big) big=1 ;;
	*) build=$a ;;
	esac
done
bin=$build/tests/unit/queue/queue_bench
if [ ! -x "$bin" ]; then
	echo "build it first: cmake --build $build --target queue_bench" >&2
	exit 2
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/mxbbench.XXXXXX")
trap 'rm -rf "$dir"' EXIT INT TERM
echo "load: $(cat /proc/loadavg)  cpus: $(nproc)"
for c in 1 16 64; do
	rm -rf "$dir/s"
	"$bin" submit "$dir/s" 20000 "$c" 4096 10 | grep -v '^after'
done
rm -rf "$dir/s"
"$bin" submit "$dir/s" 3000 16 102400 10 | grep -v '^after'
rm -rf "$dir/s"
printf 'blob files: '
QB_BLOB=1 "$bin" submit "$dir/s" 3000 16 102400 10 | grep -v '^after'
rm -rf "$dir/s"
if [ "$big" = 1 ]; then
	echo "filling 1,000,000 x 10 recipients (4 KiB bodies, 1,024 at once)..."
	"$bin" submit "$dir/s" 1000000 1024 4096 10
	"$bin" open "$dir/s"
	du -sh "$dir/s"
	rm -rf "$dir/s"
fi
echo "load: $(cat /proc/loadavg)"
