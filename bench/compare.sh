#!/bin/bash
# bench/compare.sh: the article's static save_path, php-memcached's failover
# ini, twemproxy and mod_memsess (MemsessReplicas 0, 1, and 1 with
# MemsessFailover successor) under the same login workload and the same
# faults on one of three memcached servers (refused, restarted, hung,
# resumed).  Writes bench/results/compare.md and
# bench/results/failover-latency.png.  About 6 minutes.  Run as root.
#
# Everything runs on 127.0.0.1 ports 31001-31035; every process it starts
# is stopped by its pid when it ends, fails or is interrupted.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

bench_prepare nutcracker gnuplot-nox
run_driver 600 compare.py "$@"
