#!/bin/sh
# install-deps.sh - install what mxbatch needs to build and test, from
# Debian 12's packages. Idempotent: does nothing when all are present.
# Run as root (or through sudo).
set -eu

PKGS="build-essential cmake pkg-config git python3 openssl ca-certificates librocksdb-dev libc-ares-dev libevent-dev libssl-dev libcmocka-dev libinih-dev libjansson-dev libidn2-dev libcrypt-dev dnsmasq-base swaks procps curl clang-14 libclang-rt-14-dev valgrind"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	SUDO=sudo
else
	SUDO=
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
