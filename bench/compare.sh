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

need_packages "${BASE_PACKAGES[@]}" nutcracker gnuplot-nox
mkdir -p "$WORK"
take_lock
check_ports_free
build_module
export PYTHONDONTWRITEBYTECODE=1
exec timeout --signal=TERM --kill-after=20 600 python3 "$BENCH/lib/compare.py" "$@"
