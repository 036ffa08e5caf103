#!/bin/sh
# quickstart.sh - install what is needed, build, and run mxbatchd in the
# foreground on its built-in defaults: spool under ./var/spool, submission
# on the Unix socket ./var/mxbatch.sock, admin API on 127.0.0.1:8025.
set -eu
cd "$(dirname "$0")/.."
contrib/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target mxbatchd
exec build/mxbatchd --foreground "$@"
