#!/bin/bash
# bench/sync.sh: the sync engine alone at scale, side by side in one run:
# this tree, a baseline commit's engine, and the limit (the same keys
# copied raw).  Three memcached; N sessions of 1 KB where php-memcached
# puts them (replicas 1, successor); optionally M small keys of another
# application on server 3 (its listings carry them).  For each engine
# (t/unit/test_sync.bin --bench): the delta sync of server 2 as the same
# process, the full sync of it keeping its keys, the full sync of it
# emptied (a restart: every key copied), each audited afterwards (lost,
# stale); then the raw copy of those keys (multi-gets of 1000, writes
# without replies).  Writes bench/results/sync.md.  Run as root.
#
#   bash bench/sync.sh [--sessions N] [--noise M] [--old REV]
#
#   --sessions N   sessions in the pool (100000)
#   --noise M      other keys on server 3 (0)
#   --old REV      the baseline's memsess_sync.c (default 9ccf660, the last
#                  commit that copied one key at a time); "none": this tree
#                  only
# MemsessSyncRate plays no part (the engine runs unbounded): what is
# measured is what the engine can do.  Ports 31061-31063.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

N=100000
NOISE=0
OLD=9ccf660
while [ $# -gt 0 ]; do
    case $1 in
        --sessions) N=$2; shift 2 ;;
        --noise) NOISE=$2; shift 2 ;;
        --old) OLD=$2; shift 2 ;;
        *) die "unknown argument $1" ;;
    esac
done
case "$N$NOISE" in
    *[!0-9]*) die "--sessions and --noise take whole numbers" ;;
esac

need_packages "${BASE_PACKAGES[@]}"
mkdir -p "$WORK" "$RESULTS"
take_lock
check_ports_free 31061 31063
PORTS=(31061 31062 31063)
commit=$(git -C "$TOP" rev-parse --short HEAD)
TMP=$(mktemp -d /tmp/memsess-syncbench.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# build NAME REV: t/unit/test_sync.bin of this tree, with REV's engine
build() {
    local dir=$TMP/$1
    mkdir -p "$dir"
    git -C "$TOP" archive HEAD | tar -x -C "$dir"
    [ "$2" = HEAD ] || git -C "$TOP" show "$2:memsess_sync.c" > "$dir/memsess_sync.c"
    make -s -C "$dir" -f Makefile.apxs t/unit/test_sync.bin >"$WORK/sync-build-$1.log" 2>&1 ||
        die "cannot build the engine $1 (see $WORK/sync-build-$1.log)"
}
build new HEAD
[ "$OLD" = none ] || build old "$OLD"

# each server: its share of the sessions (two copies of each), and all of
# the other keys (they are on server 3), with room to spare: an eviction
# would count as a session lost
mem=$(( N * 2 * 1400 / 3 / 1048576 + NOISE * 160 / 1048576 + 256 ))
for p in "${PORTS[@]}"; do
    memcached -p "$p" -l 127.0.0.1 -U 0 -u nobody -m "$mem" -c 4096 &
    PIDS+=($!)
done
sleep 0.5

run() {   # run NAME: its engine's bench, the output in $TMP/NAME.out
    echo "== bench/sync.sh: $1, $N sessions, $NOISE other keys"
    /usr/bin/time -f 'peak RSS %M KB' "$TMP/$1/t/unit/test_sync.bin" --bench 127.0.0.1 "${PORTS[@]}" "$N" "$NOISE" \
        > "$TMP/$1.out" 2> "$TMP/$1.err" || die "the $1 engine failed: $(cat "$TMP/$1.err")"
    cat "$TMP/$1.out" "$TMP/$1.err"
}
run new
[ "$OLD" = none ] || run old

field() {   # field NAME RUN: "MS|examined|copied|same|KB"
    sed -n "s/^$2: done in \([0-9]*\) ms .* \([0-9]*\) examined, \([0-9]*\) copied, [0-9]* deleted, \([0-9]*\) compared equal\(, \([0-9]*\) KB held at most\)*.*/\1|\2|\3|\4|\6/p" "$TMP/$1.out"
}
audit() { sed -n "s/^$2: after it, \(.*\) where PHP reads them/\1/p" "$TMP/$1.out"; }
raw=$(sed -n 's/^raw: \([0-9]*\) keys copied in \([0-9]*\) ms.*/\2|\1/p' "$TMP/new.out")
raw_ms=${raw%%|*}

{
    echo "# The sync engine with $N sessions (bench/sync.sh)"
    echo
    echo "$(date -u +%Y-%m-%d), mod_memsess at $commit; $(nproc) cores, memcached $(memcached -V | cut -d' ' -f2), libmemcached $(dpkg-query -W -f '${Version}' libmemcached11t64 2>/dev/null || dpkg-query -W -f '${Version}' libmemcached11 2>/dev/null)."
    echo "Three memcached on 127.0.0.1; $N sessions of 1 KB where php-memcached puts them (replicas 1, successor);"
    echo "$NOISE other keys on server 3. The engine (t/unit/test_sync.bin --bench) at an unbounded rate."
    echo
    echo "| engine | run | time | examined | copied | compared equal | tables held | lost / stale after |"
    echo "|---|---|---|---|---|---|---|---|"
    for e in new old; do
        [ -f "$TMP/$e.out" ] || continue
        name=$commit
        [ "$e" = new ] || name=$OLD
        for r in delta full empty; do
            IFS='|' read -r ms ex cp same kb <<<"$(field "$e" "$r")"
            [ "$e" = new ] || kb="(not measured)"
            [ "$kb" = "(not measured)" ] || kb="${kb:--} KB"
            echo "| $name | $r | ${ms} ms | $ex | $cp | $same | $kb | $(audit "$e" "$r") |"
        done
    done
    echo
    echo "The limit: the keys of the empty run copied raw (multi-gets of 1000, writes without replies): ${raw#*|} keys in ${raw_ms} ms."
    new_empty=$(field new empty | cut -d'|' -f1)
    echo "The restart's sync against the limit: ${new_empty} ms ÷ ${raw_ms} ms = $(awk -v a="$new_empty" -v b="$raw_ms" 'BEGIN { printf "%.1f", a / (b ? b : 1) }')x."
    if [ -f "$TMP/old.out" ]; then
        old_empty=$(field old empty | cut -d'|' -f1)
        echo "Against $OLD's engine (one key at a time): ${old_empty} ms ÷ ${new_empty} ms = $(awk -v a="$old_empty" -v b="$new_empty" 'BEGIN { printf "%.1f", a / (b ? b : 1) }')x faster."
    fi
    echo
    echo "Peak RSS of the whole bench process (the audit and the setup included): $(cat "$TMP/new.err" | sed -n 's/peak RSS //p') (this tree)$( [ -f "$TMP/old.err" ] && echo ", $(sed -n 's/peak RSS //p' "$TMP/old.err") ($OLD)")."
} > "$RESULTS/sync.md"
cat "$RESULTS/sync.md"
