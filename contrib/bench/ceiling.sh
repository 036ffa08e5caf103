#!/bin/sh
# ceiling.sh - machine ceilings, not a test: the most this machine allows
# for the two throughput goals measured on it (issue 3, the store; issue
# 4, submission), with no mxbatch code in the way.
#
#   contrib/bench/ceiling.sh
#   env: MSGS=60000 (per smtp-source run)  ROCKSDB_MSGS=100000
#        SINK=127.0.5.9:2525
#
# 1. RocksDB alone: contrib/bench/rocksdb_ceiling.c, compiled here with cc
#    and pkg-config (not by CMake), one writer, WriteBatches with the WAL
#    synced: messages/s with 1 message per batch (a single synced 4 KiB
#    put) and with 64 per batch at 1, 4, 13 and 22 keys per message (22:
#    the store's layout for 10 recipients; 13 with one due key per
#    submission).
#    Bounds the store.
# 2. smtp-source -> smtp-sink over loopback, nothing written to disk:
#    smtp-source -s 20 -l 4096 -d -N, 1 and 10 recipients, msgs/s and
#    CPU-us per message of each side (smtp-sink from /proc/PID/stat,
#    smtp-source from `times`). Bounds any SMTP server measured with this
#    load generator on this machine.
#
# Needs cc, pkg-config and librocksdb-dev (contrib/install-deps.sh),
# smtp-source and smtp-sink (contrib/bench/install-bench-deps.sh). Run as
# root: smtp-sink drops to nobody. The binary and the RocksDB spool go to a
# temporary directory under ${TMPDIR:-/tmp} (the spool's file system is
# printed: fsync costs what that disk costs), removed at exit; smtp-sink is
# stopped by PID. The load is printed before and after: the figures mean
# little on a busy machine.
set -eu

MSGS=${MSGS:-60000}
ROCKSDB_MSGS=${ROCKSDB_MSGS:-100000}
SINK=${SINK:-127.0.5.9:2525}
HERE=$(cd "$(dirname "$0")" && pwd)

for t in cc pkg-config smtp-source smtp-sink; do
	if ! command -v "$t" >/dev/null 2>&1; then
		echo "ceiling: $t not found" >&2
		case $t in
		smtp-*) echo "ceiling: run contrib/bench/install-bench-deps.sh (as root)" >&2 ;;
		*) echo "ceiling: run contrib/install-deps.sh (as root)" >&2 ;;
		esac
		exit 1
	fi
done
if [ "$(id -u)" != 0 ]; then
	echo "ceiling: run as root (smtp-sink -u nobody)" >&2
	exit 1
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/mxb-ceiling.XXXXXX")
sinkpid=
cleanup() {
	set +e
	if [ -n "$sinkpid" ]; then
		kill "$sinkpid" 2>/dev/null
		wait "$sinkpid" 2>/dev/null
	fi
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

hz=$(getconf CLK_TCK)
ncpu=$(nproc)
now() { date +%s.%N; }
# ticks PID - utime + stime of a live process, in clock ticks
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

echo "# $(date -u +%FT%TZ) $ncpu CPUs, load before: $(cat /proc/loadavg)"

# --- 1. RocksDB --------------------------------------------------------
cc -std=c11 -O2 -Wall -Wextra -o "$dir/rocksdb_ceiling" \
	"$HERE/rocksdb_ceiling.c" $(pkg-config --cflags --libs rocksdb)
fs=$(df -PT "$dir" 2>/dev/null | awk 'NR == 2 { print $2 " on " $1 }') || fs=unknown
echo "# rocksdb: single writer, sync=1 WriteBatches, default options, spool on $fs"
"$dir/rocksdb_ceiling" "$dir/rocksdb" "$ROCKSDB_MSGS"
rm -rf "$dir/rocksdb"

# --- 2. smtp-source -> smtp-sink -----------------------------------------
smtp-sink -u nobody -c "$SINK" 1000 >/dev/null 2>"$dir/sink.err" &
sinkpid=$!
i=0
until smtp-source -m 1 -f bench@src.test -t rcpt@b1.test \
    -M inject.bench.test "$SINK" >/dev/null 2>&1; do
	i=$((i + 1))
	if [ "$i" -ge 50 ] || ! kill -0 "$sinkpid" 2>/dev/null; then
		echo "ceiling: smtp-sink on $SINK did not start:" >&2
		cat "$dir/sink.err" >&2
		exit 1
	fi
	sleep 0.1
done
if ! kill -0 "$sinkpid" 2>/dev/null; then # someone else answered
	echo "ceiling: smtp-sink on $SINK exited (address in use?):" >&2
	cat "$dir/sink.err" >&2
	exit 1
fi

echo "# smtp-source -s 20 -l 4096 -m $MSGS -d -N -> smtp-sink $SINK (loopback, no disk)"
for r in 1 10; do
	s0=$(ticks "$sinkpid")
	t0=$(now)
	(
		smtp-source -s 20 -l 4096 -m "$MSGS" -r "$r" -d -N \
			-f bench@src.test -t rcpt@b1.test \
			-M inject.bench.test "$SINK"
		times >"$dir/times"
	)
	t1=$(now)
	s1=$(ticks "$sinkpid")
	# `times`, 2nd line: the subshell's children, i.e. smtp-source
	src=$(awk 'NR == 2 {
		for (i = 1; i <= 2; i++) {
			split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2]
		}
		print t }' "$dir/times")
	awk -v r="$r" -v n="$MSGS" -v t0="$t0" -v t1="$t1" -v s0="$s0" \
	    -v s1="$s1" -v hz="$hz" -v src="$src" -v ncpu="$ncpu" 'BEGIN {
		dt = t1 - t0
		sink = (s1 - s0) / hz * 1e6 / n
		source = src * 1e6 / n
		printf "smtp: %2d rcpt%s: %7.0f msgs/s  (%d msgs in %.2f s); " \
		    "CPU-us/msg smtp-sink %.0f, smtp-source %.0f: " \
		    "%d CPUs at 100 %% would allow %.0f msgs/s\n",
		    r, r == 1 ? " " : "s", n / dt, n, dt, sink, source,
		    ncpu, ncpu * 1e6 / (sink + source)
	}'
done

echo "# load after: $(cat /proc/loadavg)"
