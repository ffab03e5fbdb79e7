#!/bin/bash
# bench/peers.sh: three web servers behind nginx round robin (the demo's
# topology), each Apache running as a user of its own, sharing three
# memcached; web1 alone is cut off from memcached 2 by an iptables rule
# matching its user (DROP), then healed.  Side by side in one run: mod_memsess
# at its defaults (MemsessShareVerdicts On), mod_memsess with
# MemsessShareVerdicts Off, and twemproxy (a nutcracker per web server, run
# as that web server's user).  Writes bench/results/peers.md and
# bench/results/peers.png.  About 4 minutes.  Run as root.
#
# Creates the system users memsess-bench-web1..3 if missing.  Everything runs
# on 127.0.0.1 ports 31600-31699; every process it starts is stopped by its
# pid, and every iptables rule it adds (comment memsess-bench-peers) is
# removed, when it ends, fails or is interrupted.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

TAG=memsess-bench-peers
bench_prepare --ports 31600 31699 nutcracker nginx iptables gnuplot-nox
for i in 1 2 3; do bench_user "memsess-bench-web$i"; done
export PYTHONDONTWRITEBYTECODE=1 MEMSESS_BENCH_CUT_TAG=$TAG

# The Python driver owns the processes and removes its rules (try/finally,
# signals); this shell removes whatever a driver killed outright left, and
# passes Ctrl-C / SIGTERM on to it.
remove_rules "$TAG"
trap 'remove_rules "$TAG"' EXIT
timeout --signal=TERM --kill-after=20 360 python3 "$BENCH/lib/peers.py" "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null || true' INT TERM HUP
rc=0
while :; do
    wait "$child" && rc=0 || rc=$?
    kill -0 "$child" 2>/dev/null || break
done
exit "$rc"
