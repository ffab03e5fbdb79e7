#!/bin/bash
# bench/grow.sh: a pool holding 100,000 sessions of 1 KB grown from 3 to 4
# memcached servers at `apache2 -k graceful`, under 30 users with sessions
# (the rebalance of issue 12).  Only MemsessServers written (replicas 1,
# successor), the SPEC check settings.  Writes bench/results/grow.md: how
# long until the new list was published, what the rebalance did, the
# requests served meanwhile and their latency, sessions lost or stale.
# About 2 minutes.  Run as root.  Options: --sessions N (100000),
# --size BYTES (1024), --users N (30).
#
# Everything runs on 127.0.0.1 ports 31061-31070; every process it starts
# is stopped by its pid when it ends, fails or is interrupted.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

bench_prepare php-cli
run_driver 900 grow.py "$@"
