#!/bin/sh
# run.sh - install what is needed, build, and run every test: unit and
# integration tests on the normal build, each libFuzzer target for a short
# fixed time (MXB_FUZZ_SECONDS, default 10), then the unit and integration
# tests again on the ASan/UBSan build.
# Ends with a summary; exits non-zero if anything failed.
set -u
cd "$(dirname "$0")/.."
contrib/install-deps.sh || exit 1
jobs=$(nproc)
status=0
summary_file=$(mktemp)
trap 'rm -f "$summary_file"' EXIT

run_suite() { # name builddir cmake-args...
	name=$1; dir=$2; shift 2
	mkdir -p "$dir"
	echo "== $name: build ($dir)"
	if ! { cmake -S . -B "$dir" "$@" && cmake --build "$dir" -j"$jobs"; } >"$dir/build.log" 2>&1; then
		tail -n 60 "$dir/build.log"
		echo "$name: BUILD FAILED" >>"$summary_file"
		status=1
		return
	fi
	echo "== $name: tests"
	(cd "$dir" && ctest --output-on-failure -j"$jobs" --timeout 900) 2>&1 | tee "$dir/ctest.log"
	result=$(grep -E 'tests passed|tests failed' "$dir/ctest.log" | tail -n 1)
	case "$result" in
	"100% tests passed"*) ;;
	*) status=1 ;;
	esac
	echo "$name: ${result:-no test result}" >>"$summary_file"
}

run_suite release build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMXB_SANITIZE=OFF
echo "== fuzz: libFuzzer, ${MXB_FUZZ_SECONDS:-10} s per target"
# a fixed seed: the gate replays the corpus and explores the same inputs on
# every run; contrib/fuzz.sh is where new ground is searched
if MXB_FUZZ_SEED=${MXB_FUZZ_SEED:-1} tests/fuzz/run.sh "${MXB_FUZZ_SECONDS:-10}"; then
	echo "fuzz: every target ran clean" >>"$summary_file"
else
	echo "fuzz: FAILED" >>"$summary_file"
	status=1
fi
(
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
	run_suite sanitizer build-asan -DCMAKE_BUILD_TYPE=Debug -DMXB_SANITIZE=ON
	exit $status
) || status=1

echo "== summary"
cat "$summary_file"
if [ $status -eq 0 ]; then echo "ALL TESTS PASSED"; else echo "SOME TESTS FAILED"; fi
exit $status
