#!/bin/bash
# bench/failover.sh: one of three memcached servers hangs (SIGSTOP), then one
# dies (SIGKILL), under 30 users with sessions, with mod_memsess at the SPEC
# defaults; MemsessReplicas 0 and 1.  Writes bench/results/failover.md and
# bench/results/failover-timeline.png.  About 2 minutes.  Run as root.
#
# Everything runs on 127.0.0.1 ports 31001-31011; every process it starts
# is stopped by its pid when it ends, fails or is interrupted.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

need_packages "${BASE_PACKAGES[@]}" gnuplot-nox
mkdir -p "$WORK"
take_lock
check_ports_free
build_module
export PYTHONDONTWRITEBYTECODE=1
# the Python driver owns the processes and stops them (try/finally, signals)
exec timeout --signal=TERM --kill-after=20 240 python3 "$BENCH/lib/failover.py" "$@"
