#!/bin/bash
# bench/soak.sh: the long randomized fault soak of issue 21.  Runs
# t/60_soak.t (t/lib/Memsess/Soak.pm: three Apache instances as users of
# their own behind nginx round robin, three memcached at the defaults, 30
# users with counters, some logging out, and a seeded schedule of memcached
# kills, freezes, cuts, pool changes, gracefuls, restarts, checker kills and
# CPU saturation) through tools/test.sh, plain build, and writes
# bench/results/soak-SEED.md and soak-SEED.png: faults by kind, requests,
# every invariant's count, failures per fault kind, resources, the worst
# window, and a chart of throughput and failures over time with the faults
# marked.  Run as root.
#
#   bash bench/soak.sh [--seconds N] [--seed S]...
#
#   --seconds N   length of each schedule (MEMSESS_SOAK_SECONDS, default 1800)
#   --seed S      a seed to run (repeatable; default: one random seed,
#                 drawn here and printed first)
#
# Everything the scenario starts is stopped by its pid and every iptables
# rule removed by the scenario and tools/test.sh.  The scenario's files stay
# in bench/work/soak-SEED/ (requests.log, schedule.txt, violations.txt ...).
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$BENCH")
SECS=${MEMSESS_SOAK_SECONDS:-1800}
SEEDS=()
while [ $# -gt 0 ]; do
    case $1 in
        --seconds) SECS=$2; shift 2 ;;
        --seed) SEEDS+=("$2"); shift 2 ;;
        *) echo "bench/soak.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$SECS${SEEDS[*]:-}" in
    *[!0-9\ ]*) echo "bench/soak.sh: --seconds and --seed take whole numbers" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "bench/soak.sh: run it as root" >&2; exit 1; }
[ ${#SEEDS[@]} -gt 0 ] || SEEDS=($(( $(od -An -N4 -tu4 /dev/urandom) % 2147483646 + 1 )))
echo "== bench/soak.sh: seeds ${SEEDS[*]}, $SECS s each"

WORK=$BENCH/work
mkdir -p "$WORK" "$BENCH/results"
bash "$TOP/tools/setup.sh" gnuplot-nox >/dev/null
rc=0
for seed in "${SEEDS[@]}"; do
    out=$WORK/soak-run-$seed
    rm -rf "$out"
    mkdir -p "$out"
    chown memsess-test "$out" 2>/dev/null || chmod 1777 "$out"
    log=$WORK/soak-$seed.log
    echo "== bench/soak.sh: seed $seed, log in $log"
    # (the scenario's own limit: tools/test.sh kills a run after
    # MEMSESS_TEST_TIMEOUT seconds)
    (cd "$TOP" && MEMSESS_TEST_FILES=t/60_soak.t MEMSESS_TEST_DEB=0 MEMSESS_TEST_SANITIZE=0 \
        MEMSESS_TEST_TIMEOUT=$((SECS + 900)) APACHE_TEST_PORT=select \
        MEMSESS_SOAK_SEED=$seed MEMSESS_SOAK_SECONDS=$SECS MEMSESS_SOAK_OUT=$out \
        bash tools/test.sh) > "$log" 2>&1 || rc=1
    grep -E '^(ok|not ok) |^# (seed|soak)' "$log" || true
    rm -rf "$WORK/soak-$seed"
    if [ -d "$out/soak-$seed" ]; then
        mv "$out/soak-$seed" "$WORK/soak-$seed"
        rmdir "$out" 2>/dev/null || true
        python3 "$BENCH/lib/soak.py" "$WORK/soak-$seed" "$log" \
            "$BENCH/results/soak-$seed.md" "$BENCH/results/soak-$seed.png" || rc=1
        echo "== bench/soak.sh: bench/results/soak-$seed.md"
    else
        echo "== bench/soak.sh: seed $seed wrote nothing (see $log)"
        rc=1
    fi
done
exit "$rc"
