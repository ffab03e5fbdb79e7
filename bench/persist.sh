#!/bin/bash
# bench/persist.sh: the cost of MemsessPersist dbd (issue 23) with 100,000
# sessions of 1 KB stored, side by side with the same Apache without it in
# the same run (throughput ratio), the cost per 1,000 sessions written
# behind (time and CPU), and the time to restore 100,000 sessions after
# every memcached restarted empty.  SQLite through mod_dbd.  Writes
# bench/results/persist.md.  About 3 minutes.  Run as root.  Options:
# --sessions N (100000), --size BYTES (1024), --users N (30), --phase S
# (10), --rounds N (3), --rate N (MemsessPersistRate, 5000), --restore-wait S
# (240: reported as not converged after that).
#
# Everything runs on 127.0.0.1 ports 31801-31811; every process it starts
# is stopped by its pid when it ends, fails or is interrupted.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

bench_prepare php-cli libaprutil1-dbd-sqlite3
run_driver 900 persist.py "$@"
