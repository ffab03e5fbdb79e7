#!/bin/bash
# bench/rejoin.sh: the rejoin sync of a memcached server holding 100,000
# sessions of 1 KB, frozen then thawed and killed then restarted empty,
# under 30 users; Apache with nothing but MemsessServers (the defaults).
# Writes bench/results/rejoin.md.  About 2 minutes.  Run as root.
#
# Everything runs on 127.0.0.1 ports 31021-31030; every process it starts
# is stopped by its pid when it ends, fails or is interrupted.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

need_packages "${BASE_PACKAGES[@]}" php-cli
mkdir -p "$WORK"
take_lock
check_ports_free
build_module
export PYTHONDONTWRITEBYTECODE=1
exec timeout --signal=TERM --kill-after=20 600 python3 "$BENCH/lib/rejoin.py" "$@"
