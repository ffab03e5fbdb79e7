#!/bin/bash
# bench/rejoin.sh: the rejoin sync (MemsessRejoin sync, the default) of a
# memcached server that comes back empty while the pool holds 100,000
# sessions of 1 KB, under 30 users with sessions.  Three servers, only
# MemsessServers written (replicas 1, successor, sync), the SPEC check
# settings.  Writes bench/results/rejoin.md: how long the sync took, what it
# did, the requests served meanwhile and their latency, sessions lost or
# stale, and whether the other servers' probes kept their pace.
# About 2 minutes.  Run as root.  Options: --sessions N (100000),
# --size BYTES (1024), --users N (30).
#
# Everything runs on 127.0.0.1 ports 31041-31050; every process it starts
# is stopped by its pid when it ends, fails or is interrupted.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

bench_prepare php-cli
run_driver 600 rejoin.py "$@"
