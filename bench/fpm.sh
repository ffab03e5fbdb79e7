#!/bin/bash
# bench/fpm.sh: one of three memcached servers hangs (SIGSTOP) under the
# login workload of compare.sh, seen by mod_php (prefork) and by php-fpm
# behind the event MPM and mod_proxy_fcgi, with mod_memsess's release
# helper (issue 25) and with `MemsessReleaseHelper Off`; then what a release
# costs the helper when the machine holds 100,000 sockets in TIME_WAIT.
# Writes bench/results/fpm.md.  About 3 minutes.  Run as root (the helper
# exists only when Apache's parent runs as root).
#
# Everything runs on 127.0.0.1 ports 31701-31790 (the TIME_WAIT sockets come
# from 127.77.x.x, ports 31100-31599); every process it starts is stopped by
# its pid when it ends, fails or is interrupted.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

bench_prepare php-fpm
gcc -O2 -Wall -o "$WORK/timewait" "$BENCH/lib/timewait.c"
run_driver 600 fpm.py "$@"
