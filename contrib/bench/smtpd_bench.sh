#!/bin/sh
# smtpd_bench.sh - messages/s accepted over TCP by mxbatchd and by a private
# Postfix instance, side by side in one run, with Postfix's smtp-source as
# the load (SESSIONS parallel sessions reusing their connections, SIZE-byte
# messages, 1 and 10 recipients per message).
#
#   contrib/bench/smtpd_bench.sh [BUILD_DIR]        (default: build)
#   env: MSGS=30000 SESSIONS=20 SIZE=4096 RCPTS="1 10" SPOOL_DIR=<temp dir>
#
# Both servers keep their spool under SPOOL_DIR (the same file system), with
# their default durability: mxbatchd answers 250 after its WAL fsync (group
# commit), Postfix after cleanup fsynced the queue file. Neither delivers:
# mxbatchd runs with [delivery] paused = yes, Postfix puts every message on
# hold (smtpd_data_restrictions = static:HOLD) so its qmgr stays idle.
# While each load runs, smtpd_probe.py times end-of-data -> 250 from one
# extra session (client view); for mxbatchd the server view comes from the
# commit_us field of its log.
#
# Needs smtp-source and postfix (Debian package "postfix"; install it with
# the system instance kept from starting, e.g. with a policy-rc.d that
# exits 101, and disable it: the benchmark runs its own instance only).
# Everything it starts is stopped by PID (and `postfix -c DIR stop`).
set -eu

BUILD=${1:-build}
MSGS=${MSGS:-30000}
SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-4096}
RCPTS=${RCPTS:-"1 10"}
HERE=$(cd "$(dirname "$0")" && pwd)
MXBATCHD=$(cd "$BUILD" && pwd)/mxbatchd

for t in smtp-source postfix python3 "$MXBATCHD"; do
	command -v "$t" >/dev/null 2>&1 || { echo "smtpd_bench: $t not found" >&2; exit 1; }
done
DIR=$(mktemp -d "${SPOOL_DIR:-${TMPDIR:-/tmp}}/mxb-smtpd-bench.XXXXXX")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
chmod 755 "$DIR" # the postfix user walks into its queue here
MXPORT=$(free_port)
PFPORT=$(free_port)
ADMINPORT=$(free_port)
MXPID=
cleanup() {
	set +e
	if [ -n "$MXPID" ]; then kill "$MXPID" 2>/dev/null; wait "$MXPID" 2>/dev/null; fi
	if [ -d "$DIR/postfix/etc" ]; then
		postfix -c "$DIR/postfix/etc" stop >/dev/null 2>&1
	fi
	[ "${KEEP:-0}" = 1 ] || rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

start_mxbatchd() {
	mkdir -p "$DIR/mx"
	cat > "$DIR/mx/mx.conf" <<EOF
[server]
hostname = mxbatch.bench
pid_file = $DIR/mx/mxbatchd.pid
[spool]
path = $DIR/mx/spool
[delivery]
paused = yes
[log]
level = info
delivery_log = $DIR/mx/delivery.jsonl
[admin]
listen = 127.0.0.1:$ADMINPORT
token_file = $DIR/mx/admin.token
[listen "bench"]
address = 127.0.0.1:$MXPORT
trusted_networks = 127.0.0.0/8
max_connections_per_ip = 1000
EOF
	"$MXBATCHD" --foreground --config "$DIR/mx/mx.conf" > "$DIR/mx/log" 2>&1 &
	MXPID=$!
	for _ in $(seq 100); do grep -q "mxbatchd started" "$DIR/mx/log" && return 0; sleep 0.1; done
	echo "smtpd_bench: mxbatchd did not start:" >&2; cat "$DIR/mx/log" >&2; exit 1
}

start_postfix() {
	P=$DIR/postfix
	mkdir -p "$P/etc" "$P/queue" "$P/data"
	chown postfix "$P/data"
	cat > "$P/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $P/queue
data_directory = $P/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_data_restrictions = check_client_access static:HOLD
smtpd_client_connection_count_limit = 0
default_process_limit = 100
maillog_file_prefixes = $DIR
maillog_file = $P/maillog
alias_maps =
alias_database =
local_recipient_maps =
biff = no
EOF
	sed "s/^smtp      inet .*smtpd\$/127.0.0.1:$PFPORT inet n - n - - smtpd/" \
		/etc/postfix/master.cf > "$P/etc/master.cf"
	postfix -c "$P/etc" start >/dev/null 2>&1 || { cat "$P/maillog" >&2; exit 1; }
	for _ in $(seq 100); do
		python3 -c "import socket; socket.create_connection(('127.0.0.1', $PFPORT)).close()" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "smtpd_bench: postfix did not start:" >&2; cat "$P/maillog" >&2; exit 1
}

# run NAME PORT RCPTS - one load; prints a result line
run() {
	name=$1 port=$2 r=$3
	stop=$DIR/stop.$name.$r
	python3 "$HERE/smtpd_probe.py" 127.0.0.1 "$port" "$stop" > "$DIR/probe.$name.$r" &
	probe=$!
	t0=$(date +%s.%N)
	smtp-source -s "$SESSIONS" -m "$MSGS" -l "$SIZE" -r "$r" -d \
		-f bench@example.com -t rcpt@example.net 127.0.0.1:"$port"
	t1=$(date +%s.%N)
	touch "$stop"
	wait "$probe"
	python3 - "$name" "$r" "$t0" "$t1" "$MSGS" "$DIR/probe.$name.$r" <<'EOF'
import json, sys
name, r, t0, t1, n, probe = sys.argv[1:]
p = json.load(open(probe))
rate = int(n) / (float(t1) - float(t0))
ms = lambda v: "n/a" if v is None else "%.2f ms" % v
print("%-9s rcpts=%-3s %8.0f msg/s  %9.0f rcpt/s  client end-of-data->250: p50 %s, p99 %s (n=%d)"
      % (name, r, rate, rate * int(r), ms(p["p50_ms"]), ms(p["p99_ms"]), p["n"]))
EOF
}

mx_server_p99() {
	grep -o 'commit_us=[0-9]*' "$DIR/mx/log" | cut -d= -f2 | sort -n | awk '
		{ a[NR] = $1 } END { if (NR) printf "mxbatchd server-side end-of-data->durable over %d messages: p50 %.2f ms, p99 %.2f ms\n", NR, a[int(NR*0.5)]/1000, a[int(NR*0.99)]/1000 }'
}

echo "# $(date -u +%FT%TZ) $(nproc) CPUs, $SESSIONS sessions, $MSGS messages of $SIZE bytes, spool in $DIR"
start_mxbatchd
start_postfix
for r in $RCPTS; do
	run mxbatchd "$MXPORT" "$r"
	run postfix "$PFPORT" "$r"
done
mx_server_p99
