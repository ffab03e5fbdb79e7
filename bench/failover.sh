#!/bin/bash
# bench/failover.sh: one of three memcached servers dies (SIGKILL), then one
# hangs (SIGSTOP), under 30 users with sessions, with mod_memsess at the SPEC
# defaults; four runs (--runs r0,r1,r1s,r1sf): MemsessReplicas 0, 1, 1 with
# MemsessFailover successor, and 1 with successor and MemsessRejoin flush.
# Writes bench/results/failover.md and bench/results/failover-timeline.png.
# About 5 minutes (70 s a run).  Run as root.
#
# Everything runs on 127.0.0.1 ports 31001-31019; every process it starts
# is stopped by its pid when it ends, fails or is interrupted.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

bench_prepare gnuplot-nox
run_driver 480 failover.py "$@"
