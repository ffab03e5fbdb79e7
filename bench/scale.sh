#!/bin/bash
# bench/scale.sh: a pool of a million sessions of 1 KB through Apache, one
# of its servers also holding 10,000,000 keys of another application, 30
# users; side by side in one run: the rejoin sync of a server restarted
# empty, the same with a graceful in the middle of it, the pool grown from
# 3 to 4 servers, and the limit (the same keys listed and copied raw).
# Prefork at Apache's own defaults, MemsessSyncRate at its default.  Writes
# bench/results/scale.md.  About 10 minutes, ~5 GB of memcached.  Run as
# root.  Options: --sessions N (1000000), --noise N (10000000), --size
# BYTES (1024), --users N (30).
#
# Everything runs on 127.0.0.1 ports 31081-31090; every process it starts
# is stopped by its pid when it ends, fails or is interrupted.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

bench_prepare php-cli
make -s -C "$TOP" -f Makefile.apxs t/unit/test_sync.bin >"$WORK/scale-build.log" 2>&1 ||
    die "cannot build t/unit/test_sync.bin (see $WORK/scale-build.log)"
export MEMSESS_SYNC_BIN=$TOP/t/unit/test_sync.bin
run_driver 3600 scale.py "$@"
