#!/bin/bash
# bench/overhead.sh: what mod_memsess costs when nothing fails: (a) PHP
# session page, module vs static php_admin_value; (b) static file, module
# loaded vs not; (c) instructions of the request hook for pools of 1, 3 and
# 64 servers (callgrind); (d) 1000 vhosts: start time and per-request cost,
# and a probe round of 256 memcached with 26 frozen.  Writes
# bench/results/overhead.md.  About 5 minutes.  Run as root.
#
# Everything runs on 127.0.0.1 ports 31001-31955 (31400-31655 must stay
# closed: the scale test points vhosts at them); every process it starts is
# stopped by its pid when it ends, fails or is interrupted.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

bench_prepare wrk valgrind
ulimit -n 65536 2>/dev/null || true
run_driver 600 overhead.py "$@"
