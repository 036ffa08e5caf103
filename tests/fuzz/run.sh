#!/bin/sh
# run.sh SECONDS [TARGET...] - build the libFuzzer targets (standalone CMake
# configuration of tests/fuzz, clang) and run each for SECONDS with its
# seed corpus (tests/fuzz/corpus/<target>, read only; new inputs go to a
# scratch dir). Any crash, leak, sanitizer report or property violation
# fails the run; the input is left in $MXB_FUZZ_OUT (default
# build-fuzz/artifacts) and the last lines of the report are printed.
# Prints per target: executions, seconds, coverage; exits non-zero if any
# target failed. Env: MXB_FUZZ_BUILD (build dir, default build-fuzz),
# CC (default clang-14, else clang), MXB_FUZZ_KEEP=1 (keep new inputs in
# build-fuzz/corpus-<target> across runs), MXB_FUZZ_SEED (libFuzzer -seed).
set -u
secs=${1:-20}
[ $# -gt 0 ] && shift
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${MXB_FUZZ_BUILD:-$root/build-fuzz}
out=${MXB_FUZZ_OUT:-$build/artifacts}
cc=${CC:-}
if [ -z "$cc" ]; then
	if command -v clang-14 >/dev/null 2>&1; then cc=clang-14; else cc=clang; fi
fi
if ! command -v "$cc" >/dev/null 2>&1; then
	echo "fuzz: $cc not found (apt-get install clang-14 libclang-rt-14-dev)" >&2
	exit 1
fi
mkdir -p "$build" "$out"
if ! { CC=$cc cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
       cmake --build "$build" -j"$(nproc)"; } >"$build/build.log" 2>&1; then
	tail -n 40 "$build/build.log"
	echo "fuzz: BUILD FAILED"
	exit 1
fi
targets=$*
[ -z "$targets" ] && targets=$(cd "$build" && ls fuzz_* | grep -v '\.' )
status=0
total=0
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:suppressions=$here/ubsan-open-bugs.supp}
for t in $targets; do
	if [ -n "${MXB_FUZZ_KEEP:-}" ]; then
		scratch=$build/corpus-$t; mkdir -p "$scratch"
	else
		scratch=$(mktemp -d)
	fi
	log=$out/$t.log
	corpus=$here/corpus/$t
	mkdir -p "$corpus"
	# MXB_FUZZ_SEED fixes libFuzzer's random choices (the test command sets
	# it, so a run explores the same inputs each time); unset: random
	"$build/$t" ${MXB_FUZZ_SEED:+-seed="$MXB_FUZZ_SEED"} \
		-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-max_len=8192 -print_final_stats=1 -artifact_prefix="$out/$t-" \
		"$scratch" "$corpus" >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
	total=$((total + ${execs:-0}))
	if [ $rc -ne 0 ]; then
		status=1
		echo "fuzz: $t FAILED (exit $rc) - report $log, input $out/$t-*"
		grep -E 'ERROR|SUMMARY|property violated|runtime error' "$log" | head -n 5
	else
		printf 'fuzz: %-18s ok  %10s execs in %ss, %s\n' "$t" "${execs:-?}" "$secs" "$cov"
	fi
	[ -z "${MXB_FUZZ_KEEP:-}" ] && rm -rf "$scratch"
done
echo "fuzz: total $total executions"
exit $status
