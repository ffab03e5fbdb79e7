#!/bin/bash
# bench/probecost.sh: what the checker costs at its defaults (probes per
# second, CPU of Apache and of memcached, TIME_WAIT sockets) for 3, 256 and
# 1024 servers, and how fast it detects a hung and a dead server.  Writes
# bench/results/probecost.md.  About 2 minutes (4 with --old SO).  Run as
# root.  127.0.0.1 ports 31890-31960; with more than 3 servers, one
# memcached per loopback address 127.0.1-6.x.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

bench_prepare
ulimit -n 65536 2>/dev/null || true
commit=$(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo unknown)
run_driver 900 probecost.py --commit "$commit" "$@"
