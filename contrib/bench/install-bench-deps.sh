#!/bin/sh
# install-bench-deps.sh - what contrib/bench/run needs beyond
# contrib/install-deps.sh: Postfix (the engine compared against, and its
# smtp-source load generator), dnsmasq, util-linux (unshare), valgrind for
# profiles. Run as root on Debian 12.
#
# Installing the postfix package may start the SYSTEM Postfix, which listens
# on port 25 of every address and would take the benchmark sinks'
# 127.0.1.N:25 away: it is stopped and disabled at once. The benchmark never
# uses the system instance; it runs a private one (contrib/bench/postfix/).
set -eu

export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" |
	debconf-set-selections
apt-get install -y --no-install-recommends postfix dnsmasq-base \
	util-linux valgrind procps iproute2

# stop the system instance if the package started it (no systemd in a
# container: plain `postfix stop`, which signals /etc/postfix's master)
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemctl disable --now postfix >/dev/null 2>&1 || true
fi
if [ -f /etc/postfix/main.cf ]; then
	postfix stop >/dev/null 2>&1 || true
fi
# nothing may listen on *:25 (the benchmark's sinks use 127.x.y.z:25)
if ss -ltnH 'sport = :25' | grep -Eq '(0\.0\.0\.0|\*|\[::\]):25'; then
	echo "install-bench-deps: something still listens on *:25:" >&2
	ss -ltnp 'sport = :25' >&2
	exit 1
fi
echo "install-bench-deps: ok (no listener on *:25)"
