#!/bin/bash
# Fuzzes the pure logic of mod_memsess with libFuzzer, ASan and UBSan.
#
#   bash fuzz/run.sh [SECONDS]     (default 20: the whole run, split evenly)
#
# First builds and runs each fuzz/crashes-fixed/*.c: a small program that
# reproduces a bug found here and exits 0 once it is fixed.  Then builds
# each harness fuzz/NAME.c with the pure logic (memsess_pool.c,
# memsess_table.c, memsess_verdicts.c, memsess_job.c, memsess_sync.c,
# memsess_listing.c, memsess_place.c and the others PURE_SRC lists, and
# libmemcached) into
# fuzz/NAME.bin, copies its seeds (fuzz/seeds/NAME/) and the inputs of bugs
# already fixed (fuzz/crashes-fixed/NAME/) into fuzz/corpus-run/NAME/, and
# runs it for its share of SECONDS.  Every seed is run first, so a fixed
# bug that comes back fails at once.  Prints one line per program and
# harness and a closing "fuzz: N passed, M failed"; exits non-zero when any
# crashed, found a difference with its model, or did not build.
#
# Needs clang with libFuzzer (Debian: clang, libclang-rt-14-dev), APR and
# the httpd headers (apache2-dev).  Runs as any user: when fuzz/ is not
# writable it works in a temporary directory instead.  Environment:
#   FUZZ_WORK=DIR     where the binaries, corpora and crash inputs go
#   CC=clang-14       the compiler
set -uo pipefail

cd "$(dirname "$0")/.."
TOP=$(pwd)
TOTAL=${1:-20}
CC=${CC:-clang}
HARNESSES=(fuzz_parse fuzz_table fuzz_verdicts fuzz_job fuzz_sync fuzz_lateness fuzz_release_helper fuzz_persist
           fuzz_state fuzz_pipeline)
TEMP_WORK=0

case "$TOTAL" in
    ''|*[!0-9]*) echo "fuzz/run.sh: SECONDS must be a whole number" >&2; exit 2 ;;
esac

if [ -n "${FUZZ_WORK:-}" ]; then
    WORK=$FUZZ_WORK
elif [ -w "$TOP/fuzz" ]; then
    WORK=$TOP/fuzz
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/memsess-fuzz.XXXXXX") || exit 1
    TEMP_WORK=1
    echo "fuzz: $TOP/fuzz is not writable, working in $WORK"
fi
RUN=$WORK/corpus-run
mkdir -p "$RUN" || exit 1

if ! command -v "$CC" >/dev/null 2>&1; then
    echo "fuzz: $CC not found (install clang and libclang-rt-14-dev)" >&2
    echo "fuzz: 0 passed, ${#HARNESSES[@]} failed"
    exit 1
fi
if command -v apxs >/dev/null 2>&1; then
    HTTPD_INC=$(apxs -q INCLUDEDIR)
else
    HTTPD_INC=/usr/include/apache2
fi
APR_CONFIG=$(command -v apr-1-config || true)
if [ -z "$APR_CONFIG" ]; then
    echo "fuzz: apr-1-config not found (install apache2-dev)" >&2
    echo "fuzz: 0 passed, ${#HARNESSES[@]} failed"
    exit 1
fi
# shellcheck disable=SC2207
APR_CFLAGS=($("$APR_CONFIG" --cflags --cppflags --includes))
# shellcheck disable=SC2207
APR_LIBS=($("$APR_CONFIG" --link-ld --libs))
# The regression programs get ASan+UBSan, the harnesses libFuzzer as well.
CFLAGS=(-g -O1 -Wall -Wextra -Werror -Wno-unused-parameter
        -fsanitize=address,undefined -fno-sanitize-recover=undefined
        -fno-omit-frame-pointer -DMEMSESS_NO_HTTPD -I"$TOP" -I"$HTTPD_INC")

# Each harness gets an even share; at least one second.
SHARE=$(( TOTAL / ${#HARNESSES[@]} ))
[ "$SHARE" -ge 1 ] || SHARE=1

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# the pure logic every program links
PURE_SRC=("$TOP/memsess_pool.c" "$TOP/memsess_table.c" "$TOP/memsess_verdicts.c"
          "$TOP/memsess_job.c" "$TOP/memsess_sync.c" "$TOP/memsess_lateness.c"
          "$TOP/memsess_release_helper.c" "$TOP/memsess_state.c" "$TOP/memsess_persist.c"
          "$TOP/memsess_peer.c" "$TOP/memsess_listing.c" "$TOP/memsess_feed.c"
          "$TOP/memsess_place.c"
          "$TOP/memsess_pipeline.c" "$TOP/memsess_written.c" "$TOP/memsess_clocks.c")
passed=0
failed=0
for src in "$TOP"/fuzz/crashes-fixed/*.c; do
    [ -e "$src" ] || continue
    name=$(basename "$src" .c)
    bin=$WORK/regress-$name.bin
    log=$RUN/regress-$name.log
    if ! "$CC" "${CFLAGS[@]}" "${APR_CFLAGS[@]}" -o "$bin" "$src" \
            "${PURE_SRC[@]}" "${APR_LIBS[@]}" -lmemcached >"$log" 2>&1; then
        echo "regress $name: FAILED to build:"
        sed 's/^/    /' "$log"
        failed=$((failed + 1))
    elif ( "$bin" >"$log" 2>&1; exit $? ) 2>/dev/null; then
        echo "regress $name: passed"
        passed=$((passed + 1))
    else
        echo "regress $name: FAILED ($(basename "$src") still reproduces its bug):"
        grep -E '^[a-z-]+: |ERROR: |SUMMARY: |runtime error' "$log" \
            | head -n 5 | sed 's/^/    /'
        echo "    (full log: $log)"
        failed=$((failed + 1))
    fi
done
# The pure logic is compiled once, with libFuzzer's instrumentation, as
# many files at once as there are cores; then every harness is compiled and
# linked with those objects, as many at once (the builds take longer than
# the fuzzing on a 2-core machine).  Each harness leaves $RUN/NAME.build: 0
# when built.
JOBS=$(nproc 2>/dev/null || echo 2)
OBJ=$WORK/obj
mkdir -p "$OBJ"
build_object() {
    local src=$1 o
    o=$OBJ/$(basename "$src" .c).o
    "$CC" -fsanitize=fuzzer-no-link "${CFLAGS[@]}" "${APR_CFLAGS[@]}" -c -o "$o" "$src" \
        >"$RUN/obj-$(basename "$src" .c).log" 2>&1 || echo "$src" >>"$OBJ/failed"
}
rm -f "$OBJ/failed"
for src in "${PURE_SRC[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do
        wait -n
    done
    build_object "$src" &
done
wait
OBJS=()
for src in "${PURE_SRC[@]}"; do
    OBJS+=("$OBJ/$(basename "$src" .c).o")
done
build_harness() {
    local h=$1
    if [ -e "$OBJ/failed" ]; then
        cat "$RUN"/obj-*.log >"$RUN/$h.log"
        echo 1 >"$RUN/$h.build"
        return
    fi
    "$CC" -fsanitize=fuzzer "${CFLAGS[@]}" "${APR_CFLAGS[@]}" -o "$WORK/$h.bin" \
        "$TOP/fuzz/$h.c" "${OBJS[@]}" "${APR_LIBS[@]}" -lmemcached \
        >"$RUN/$h.log" 2>&1
    echo $? >"$RUN/$h.build"
}
for h in "${HARNESSES[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do
        wait -n
    done
    build_harness "$h" &
done
wait

for h in "${HARNESSES[@]}"; do
    bin=$WORK/$h.bin
    log=$RUN/$h.log
    corpus=$RUN/$h
    art=$RUN/$h-crashes
    rm -rf "$art"   # only this run's inputs are shown
    mkdir -p "$corpus" "$art"

    if [ "$(cat "$RUN/$h.build" 2>/dev/null)" != 0 ]; then
        echo "$h: FAILED to build:"
        sed 's/^/    /' "$log"
        failed=$((failed + 1))
        continue
    fi
    for d in "$TOP/fuzz/seeds/$h" "$TOP/fuzz/crashes-fixed/$h"; do
        [ -d "$d" ] && cp -f "$d"/* "$corpus"/ 2>/dev/null
    done
    dict=()
    [ -f "$TOP/fuzz/$h.dict" ] && dict=(-dict="$TOP/fuzz/$h.dict")

    # a MemsessServers line of up to 64 tokens; up to ~1000 probe results
    case $h in
        fuzz_table) maxlen=1024 ;;
        fuzz_verdicts) maxlen=9000 ;;   # past MEMSESS_VERDICT_RECORD_MAX
        *)          maxlen=4096 ;;
    esac
    start=$(date +%s)
    "$bin" "${dict[@]}" -max_total_time="$SHARE" -timeout=10 \
        -rss_limit_mb=2048 -max_len="$maxlen" -print_final_stats=1 \
        -artifact_prefix="$art/" "$corpus" >"$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    ninputs=$(find "$corpus" -type f | wc -l)
    if [ "$rc" -eq 0 ]; then
        echo "$h: passed, ${execs:-?} runs in ${secs}s, corpus of $ninputs inputs"
        passed=$((passed + 1))
    else
        echo "$h: FAILED (exit $rc) after ${execs:-?} runs in ${secs}s; inputs in $art:"
        ls "$art" | sed 's/^/    /'
        grep -E '^fuzz_[a-z_]+: |ERROR: |SUMMARY: |runtime error' "$log" \
            | head -n 20 | sed 's/^/    /'
        # the inputs themselves, so that a run elsewhere (CI) can be redone
        for f in "$art"/*; do
            [ -f "$f" ] || continue
            echo "    $(basename "$f") (base64):"
            head -c 4096 "$f" | base64 -w 76 | sed 's/^/      /'
        done
        echo "    (full log: $log; rerun one input: $bin INPUT)"
        failed=$((failed + 1))
    fi
done

echo "fuzz: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
    exit 1
fi
# a temporary directory is kept only when it holds something to look at
[ "$TEMP_WORK" -eq 1 ] && rm -rf "$WORK"
exit 0
