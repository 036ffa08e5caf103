#!/bin/sh
# valgrind.sh [BUILD_DIR] [TEST...] - run integration tests with every
# mxbatchd under valgrind memcheck (leak check at exit), then summarise the
# reports: errors and "definitely/indirectly lost" bytes per daemon run.
# Default tests: a representative subset that stops its daemons with
# SIGTERM (a kill -9 leaves no leak report). Exit 1 if valgrind found an
# error or a definite leak.
#
# How: MXB_BUILD_DIR points at a scratch dir whose mxbatchd is a wrapper
# that execs valgrind on the real binary; tests/tools links to the build's.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-${MXB_BUILD_DIR:-$root/build}}
[ $# -gt 0 ] && shift
case $build in /*) ;; *) build=$(pwd)/$build ;; esac
tests=${*:-"test_daemon test_smtpd test_smtpd_tls test_sched test_bounce_flow test_adversarial"}
command -v valgrind >/dev/null || { echo "valgrind.sh: apt-get install valgrind" >&2; exit 1; }
[ -x "$build/mxbatchd" ] || { echo "valgrind.sh: no $build/mxbatchd" >&2; exit 1; }

scratch=$(mktemp -d /tmp/mxb-valgrind-XXXXXX)
logs=$scratch/logs
mkdir -p "$scratch/tests" "$logs"
chmod 0777 "$logs"      # daemons that drop privileges write here too
ln -s "$build/tests/tools" "$scratch/tests/tools"
cat >"$scratch/mxbatchd" <<WRAP
#!/bin/sh
exec valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect \
	--errors-for-leak-kinds=definite --track-origins=yes --num-callers=30 \
	--log-file=$logs/vg.%p.log "$build/mxbatchd" "\$@"
WRAP
chmod 0755 "$scratch/mxbatchd"

status=0
cd "$root/tests/integration" || exit 1
for t in $tests; do
	echo "== $t (under valgrind)"
	if ! MXB_BUILD_DIR=$scratch MXB_SOURCE_DIR=$root PYTHONDONTWRITEBYTECODE=1 \
	     timeout 1800 python3 -m unittest "$t" >"$logs/$t.out" 2>&1; then
		echo "   test failures (slow under valgrind?): see $logs/$t.out"
		tail -n 3 "$logs/$t.out"
	fi
done

runs=0; bad=0
for f in "$logs"/vg.*.log; do
	[ -e "$f" ] || continue
	runs=$((runs + 1))
	errs=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$f" | tail -n 1)
	def=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$f" | tail -n 1 | tr -d ,)
	ind=$(sed -n 's/.*indirectly lost: \([0-9,]*\) bytes.*/\1/p' "$f" | tail -n 1 | tr -d ,)
	if [ "${errs:-0}" != 0 ] || [ "${def:-0}" != 0 ]; then
		bad=$((bad + 1)); status=1
		echo "valgrind: $f: ${errs:-?} errors, definitely lost ${def:-0} B, indirectly ${ind:-0} B"
		grep -A 12 -E '(Invalid|uninitialised|definitely lost in)' "$f" | head -n 40
	fi
done
echo "valgrind: $runs daemon runs, $bad with errors or definite leaks; logs in $logs"
exit $status
