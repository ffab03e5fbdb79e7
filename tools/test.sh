#!/bin/bash
# The test command: bash tools/test.sh (as root, from the checkout).
#
#  1. tools/setup.sh installs what is missing;
#  2. make -f Makefile.apxs builds the module and the unit binaries; the
#     Makefile's `unit`, `valgrind` and `fuzz` targets run, each if the
#     Makefile has it, beside the plain scenarios (step 3) at the lowest
#     CPU priority, as do the ASan module's build and the Debian package's
#     scenario; their results are shown after the plain scenarios;
#  3. the Apache::Test scenarios (t/*.t) run against a real Apache, mod_php,
#     php-memcached and memcached processes.  Apache::Test refuses root, so
#     they run as the unprivileged user memsess-test in a copy of the
#     checkout under a temporary directory.  Some scenarios also start
#     Apache instances of their own (t/lib/Memsess/Instance.pm: other MPMs,
#     restarts by the hundred, 1000 vhosts, make install), from generated
#     configs under t/logs/inst/, and stop them;
#  4. the scenarios run a second time against an ASan+UBSan build of the
#     module (make SANITIZE=1 in another copy, httpd through a wrapper that
#     preloads the runtime); any sanitizer report fails the run.  There the
#     scenarios see MEMSESS_TEST_SANITIZED=1 and skip their RSS comparisons
#     (ASan's quarantine holds freed memory).
#
# Everything runs to the end; the exit status is non-zero if anything failed,
# and the last line counts the checks: "summary: N passed, N failed".
#
# Environment:
#   MEMSESS_TEST_FILES="t/a.t t/b.t"   run only these scenario files
#   MEMSESS_TEST_SANITIZE=0   skip the ASan+UBSan run of the scenarios
#   MEMSESS_TEST_UNIT=0       skip the unit tests, valgrind and the fuzzers
#                             (with MEMSESS_TEST_FILES: a scenario alone)
#   MEMSESS_TEST_MARGIN_MS    slack on top of the contract's detection times
#                             (default 500)
#   MEMSESS_TEST_VERBOSE=1    every check with what it expected and what it
#                             got (default: a line per scenario file; the
#                             failed checks in full at the end; the logs
#                             always hold every check)
#   MEMSESS_TEST_KEEP=1       keep the temporary copies (logs) afterwards
#   MEMSESS_TEST_TIMEOUT      seconds for one run of the scenarios (default 1200)
#
# Root, for the one scenario that needs it (t/50_peers.t: Apache instances
# running as users of their own, an iptables rule cutting one of them off
# from one memcached): the users memsess-web1..3 are created, and the test
# user may run tools/root-helper.sh, copied to a root-owned place in the
# work directory, through sudo (/etc/sudoers.d/memsess-test-XXXXXX, removed
# at the end with every iptables rule the helper added).
set -euo pipefail

cd "$(dirname "$0")/.."
TOP=$(pwd)
TEST_USER=memsess-test
LIMIT=${MEMSESS_TEST_TIMEOUT:-1200}     # seconds for one Apache::Test run

log() { echo "== test.sh [$(date +%T)]: $*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "tools/test.sh: run it as root (it installs packages and drops to $TEST_USER)" >&2
    exit 1
fi

WORK=$(mktemp -d /tmp/memsess-test.XXXXXX)
chmod 755 "$WORK"
FAILED_STEPS=()     # what failed, for the last lines
STEP_PASS=0         # steps without TAP output (valgrind, fuzz, sanitizer
STEP_FAIL=0         # reports) count as one check each
SUITES=()           # the copies a suite ran in (for cleanup)

SUITE_ENV=()        # more environment for the scenarios of one run

ROOT_HELPER=$WORK/root/root-helper.sh
# one per run (sudo skips a name with a dot): runs side by side keep theirs
SUDOERS=/etc/sudoers.d/$(basename "$WORK" | tr . -)

as_test() {
    runuser -u "$TEST_USER" -- env HOME="$WORK/home" \
        PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HARNESS_TIMER=1 \
        MEMSESS_ROOT_HELPER="$ROOT_HELPER" "${SUITE_ENV[@]}" "$@"
}

# "passed failed" from a Test::Harness/prove log; "0 1" if it has no summary.
counts() {
    perl -ne '
        $t = $1 if /^Files=\d+, Tests=(\d+)/;
        ($fp, $fs) = ($1, $2) if /^Failed (\d+)\/\d+ test programs?\. (\d+)\/\d+ subtests failed/;
        END {
            if (!defined $t) { print "0 1\n"; exit }
            $fp //= 0; $fs //= 0;
            print $t - $fs, " ", ($fs > $fp ? $fs : $fp), "\n";
        }' "$1" 2>/dev/null || echo "0 1"
}

# The checks that failed in a Test::Harness/prove log, each with its file and
# what it expected and got (the last lines of a run are what CI shows).
failures() {
    perl -ne '
        if (/^(?:\[[\d:]+\] )?(t\/\S+\.t|t\/debian\/\S+) \.\./) { $file = $1; @ctx = () }
        push @ctx, $_ if /^# (testing|expected|received)\s*:/;
        @ctx = () if /^ok \d/;
        if (/^not ok \d+/) { print "  $file: $_"; print "    $_" for @ctx; @ctx = () }
        print "  $_" if /^(t\/\S+\.t) +\(Wstat|^  Failed tests?:|^  Non-zero (exit|wait)/;
    ' "$1" 2>/dev/null
}

# A scenario run's output on its way to the screen: one line per scenario
# file, its place, its verdict and its time ("[12/40] t/23_many.t .. ok
# 28.1 s"), and the harness's summary; the log keeps every check.
progress() {
    NFILES=$1 perl -MTime::HiRes=time -ne '
        BEGIN { $| = 1; $i = 0; $t0 = time }
        # (the harness shows a file once it is done: its time is the time
        # since the last one was done, unless the harness says it)
        sub done {
            printf "[%d/%s] %s .. %s %.1f s\n", $i, $ENV{NFILES}, $file, $_[0],
                $_[1] // time - $t0 if defined $file;
            undef $file;
            $t0 = time;
        }
        if (/^(?:\[[\d:]+\] )?(t\/\S+\.t) \.+ ?(.*)$/) {
            $file = $1;
            $i++;
            done("skipped: $1") if $2 =~ /^skipped:?\s*(.*)/;
            next;
        }
        if (defined $file) {
            if (/^ok\s+(\d+) ms/) { done("ok", $1 / 1000) }
            elsif (/^Failed (\d+)\/(\d+) subtests/) { done("FAILED $1 of $2 checks") }
            elsif (/^No subtests run/) { done("FAILED: no check ran") }
            elsif (/^All (\d+) subtests passed/) { done("FAILED: its $1 checks passed, it exited non-zero") }
        }
        print if /^(All tests successful|Files=\d|Result:|Test Summary Report|t\/\S+\.t +\(Wstat|  Failed tests?:|  Non-zero )/;
    '
}

# Stops what a suite left running: httpd, and memcached from the pid files.
stop_suite() {
    local src=$1
    if [ -x "$src/t/TEST" ]; then
        (cd "$src" && as_test timeout 60 perl t/TEST -stop >/dev/null 2>&1)
    fi
    for f in "$src"/t/logs/memc/*.pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        if [ -n "$pid" ] && [ "$(stat -c %U /proc/"$pid" 2>/dev/null)" = "$TEST_USER" ]; then
            # each runs in a process group of its own (php-fpm has workers)
            kill -CONT "$pid" 2>/dev/null || true
            kill -KILL -- "-$pid" 2>/dev/null || true
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$f"
    done
    # separate Apache instances a scenario started (t/lib/Memsess/Instance.pm)
    for f in "$src"/t/logs/inst/*/httpd.pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        if [ -n "$pid" ] && [ "$(stat -c %U /proc/"$pid" 2>/dev/null)" = "$TEST_USER" ]; then
            kids=$(pgrep -P "$pid" || true)
            # shellcheck disable=SC2086
            [ -n "$kids" ] && kill -CONT $kids 2>/dev/null || true
            kill -TERM "$pid" 2>/dev/null || true
            for _ in 1 2 3 4 5 6 7 8 9 10; do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.5
            done
            # shellcheck disable=SC2086
            kill -KILL "$pid" $kids 2>/dev/null || true
        fi
        rm -f "$f"
    done
    # instances run as users of their own, iptables rules (t/50_peers.t)
    [ -x "$ROOT_HELPER" ] && "$ROOT_HELPER" cleanup "$src" || true
}

cleanup() {
    rc=$?
    set +e
    # what runs in the background ends by itself (it may hold mounts)
    [ -n "${deb_pid:-}" ] && wait "$deb_pid" 2>/dev/null
    [ -n "${asan_pid:-}" ] && wait "$asan_pid" 2>/dev/null
    [ -n "${unit_pid:-}" ] && wait "$unit_pid" 2>/dev/null
    for src in "${SUITES[@]}"; do
        stop_suite "$src"
    done
    [ -x "$ROOT_HELPER" ] && "$ROOT_HELPER" cleanup
    rm -f "$SUDOERS"
    passed=0 failed=0
    for f in "$WORK"/*.log; do
        [ -f "$f" ] || continue
        case $(basename "$f") in
            unit.log|suite*.log) ;;
            *) continue ;;
        esac
        read -r p n < <(counts "$f")
        passed=$((passed + p)) failed=$((failed + n))
    done
    passed=$((passed + STEP_PASS)) failed=$((failed + STEP_FAIL))
    [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1
    if [ -n "${MEMSESS_TEST_KEEP:-}" ]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    echo "summary: $passed passed, $failed failed"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs a Makefile target if the Makefile has it; a failure is recorded.
# Counts a Makefile target's exit status $2 (unit's checks count as TAP).
step_result() {
    if [ "$2" -ne 0 ]; then
        FAILED_STEPS+=("make $1 (exit $2)")
        [ "$1" = unit ] || STEP_FAIL=$((STEP_FAIL + 1))
    else
        [ "$1" = unit ] || STEP_PASS=$((STEP_PASS + 1))
    fi
}

# Copies the checkout to $1 for the test user.
copy_checkout() {
    local dst=$1
    shift
    # (exit 24: a file vanished while copying, e.g. a fuzzer at work beside
    # us; its working files are not copied: one it was writing failed the
    # read, exit 23, in a run of bench/soak.sh)
    rsync -a --exclude .git --exclude t/logs --exclude t/TEST \
        --exclude fuzz/corpus-run --exclude fuzz/obj --exclude bench/work \
        --exclude 't/conf/*.conf' --exclude t/conf/apache_test_config.pm \
        "$@" "$TOP"/ "$dst"/ || [ $? -eq 24 ]
}

# run_suite NAME SRC [t/TEST options...]: the Apache::Test scenarios in SRC.
run_suite() {
    local name=$1 src=$2
    shift 2
    SUITES+=("$src")
    chown -R "$TEST_USER:$TEST_USER" "$src"
    (cd "$src" && as_test perl -MApache::TestMM -e \
        'Apache::TestMM::filter_args(); Apache::TestMM::generate_script("t/TEST")' >/dev/null)
    local nfiles show=(progress)   # or every check as it comes (cat)
    # shellcheck disable=SC2086
    nfiles=$(cd "$src" && if [ -n "${MEMSESS_TEST_FILES:-}" ]; then
                 echo ${MEMSESS_TEST_FILES} | wc -w; else ls t/*.t | wc -l; fi)
    [ "${MEMSESS_TEST_VERBOSE:-0}" = 1 ] && show=(cat)
    log "Apache::Test scenarios ($name): $nfiles files (every check in $WORK/suite-$name.log)"
    set +e
    # shellcheck disable=SC2086
    (cd "$src" && as_test timeout --kill-after=30 "$LIMIT" \
        perl t/TEST -verbose "$@" ${MEMSESS_TEST_FILES:-}) 2>&1 |
        tee "$WORK/suite-$name.log" | if [ "${show[0]}" = cat ]; then cat; else progress "$nfiles"; fi
    local st=${PIPESTATUS[0]}
    stop_suite "$src"
    set -e
    [ "$st" -eq 124 ] && log "the $name scenarios ran out of time (MEMSESS_TEST_TIMEOUT, $LIMIT s)"
    if [ "$st" -ne 0 ]; then
        FAILED_STEPS+=("scenarios $name (exit $st)")
        if [ -f "$src/t/logs/error_log" ]; then
            log "warnings and errors in $name's t/logs/error_log (last 40)"
            grep -E '\[[a-z_0-9]+:(warn|error|crit|alert|emerg)\]|AH00052|Segmentation|AddressSanitizer|runtime error' \
                "$src/t/logs/error_log" | tail -n 40 || true
        fi
    fi
}

log "setup"
bash tools/setup.sh

if ! id -u "$TEST_USER" >/dev/null 2>&1; then
    log "creating user $TEST_USER"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$TEST_USER"
fi
mkdir -p "$WORK/home"
chown "$TEST_USER:$TEST_USER" "$WORK/home"

for u in memsess-web1 memsess-web2 memsess-web3; do
    id -u "$u" >/dev/null 2>&1 ||
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$u"
done
install -d -m 755 -o root -g root "$WORK/root"
install -m 755 -o root -g root tools/root-helper.sh "$ROOT_HELPER"
echo "$TEST_USER ALL=(root) NOPASSWD: $ROOT_HELPER" > "$SUDOERS.tmp"
chmod 440 "$SUDOERS.tmp"
if visudo -cqf "$SUDOERS.tmp"; then
    mv "$SUDOERS.tmp" "$SUDOERS"
else
    rm -f "$SUDOERS.tmp"
    log "sudoers entry refused: t/50_peers.t will be skipped"
fi

log "build (make -f Makefile.apxs; its output in $WORK/build.log)"
make -j"$(nproc)" -f Makefile.apxs >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log"; exit 1; }

# The Debian package as an administrator uses it, in a throwaway root
# (t/debian/admin.sh: make deb, lintian, debootstrap, apt-get install,
# a2enmod, mod_php and php-fpm, graceful, purge; as root, 2-4 min alone).
# It runs with the whole suite; MEMSESS_TEST_DEB=1 runs it with
# MEMSESS_TEST_FILES too, MEMSESS_TEST_DEB=0 skips it.  Nothing in it is
# timed: it runs beside everything else at the lowest CPU and I/O priority
# (nice 19, ionice idle), so that it takes only what the timed scenarios
# leave idle; its output is shown at the end.
deb_default=1
[ -n "${MEMSESS_TEST_FILES:-}" ] && deb_default=0
deb_pid=
if [ "${MEMSESS_TEST_DEB:-$deb_default}" = 1 ]; then
    log "Debian package scenario (t/debian/admin.sh), in the background"
    (exec nice -n 19 ionice -c 3 prove -v -e bash t/debian/admin.sh \
        >"$WORK/suite-debian.log" 2>&1) &
    deb_pid=$!
fi

asan_pid=
if [ "${MEMSESS_TEST_SANITIZE:-1}" = 1 ]; then
    # built beside the unit tests, valgrind and the fuzzers (one core
    # each, mostly) at the lowest priority, so that it is done before the
    # timed scenarios begin
    ASAN=$WORK/asan
    log "ASan+UBSan build in $ASAN, in the background"
    copy_checkout "$ASAN" --exclude .libs --exclude '*.lo' --exclude '*.slo' \
        --exclude '*.la' --exclude '*.o'
    (cd "$ASAN" && exec nice -n 19 make -j"$(nproc)" -f Makefile.apxs SANITIZE=1 \
        >"$WORK/build-asan.log" 2>&1) &
    asan_pid=$!
fi
# the unit binaries the scenarios run (t/unit/test_sync.bin --place),
# before the checkout is copied for them
unit_bins=$(make -f Makefile.apxs -pn 2>/dev/null | sed -n 's/^UNIT_TESTS *:\{0,1\}= *//p' | head -1)
# shellcheck disable=SC2086
make -j"$(nproc)" -f Makefile.apxs $unit_bins >"$WORK/build-unit.log" 2>&1 ||
    { cat "$WORK/build-unit.log"; exit 1; }
unit_pid=
if [ "${MEMSESS_TEST_UNIT:-1}" = 1 ]; then
    # The unit tests, valgrind and the fuzzers run beside the plain
    # scenarios, as the Debian package's does, at the lowest CPU priority
    # (nice 19: a timed scenario that wants a core gets it); their results
    # are shown once the plain scenarios are done.  Each target's exit
    # status goes to $WORK/TARGET.st.
    log "make -f Makefile.apxs unit, valgrind and fuzz, beside the plain scenarios (their output in $WORK/{unit,valgrind,fuzz}.log)"
    step() {   # step TARGET: runs it if the Makefile has it
        make -f Makefile.apxs -n "$1" >/dev/null 2>&1 || return 0
        local st=0
        nice -n 19 make -j"$(nproc)" -f Makefile.apxs "$1" >"$WORK/$1.log" 2>&1 || st=$?
        echo "$st" >"$WORK/$1.st"
    }
    # (the fuzzers, a core mostly, beside the unit tests, then valgrind)
    ( step fuzz & step unit; step valgrind; wait ) &
    unit_pid=$!
else
    log "unit tests, valgrind and fuzzers skipped (MEMSESS_TEST_UNIT=0)"
fi

# The results of the unit tests, valgrind and the fuzzers, once they are
# done: each log's lines but its passed checks (all with
# MEMSESS_TEST_VERBOSE=1), and its exit status counted.
unit_results() {
    [ -n "$unit_pid" ] || return 0
    wait "$unit_pid" || true
    local target st
    for target in unit valgrind fuzz; do
        if [ ! -f "$WORK/$target.log" ]; then
            log "no '$target' target in Makefile.apxs: skipped"
            continue
        fi
        st=$(cat "$WORK/$target.st" 2>/dev/null || echo 1)
        log "make -f Makefile.apxs $target: exit $st"
        if [ "${MEMSESS_TEST_VERBOSE:-0}" = 1 ]; then cat "$WORK/$target.log"
        else grep -v '^ok [0-9]' "$WORK/$target.log" || true; fi
        step_result "$target" "$st"
    done
}

# the unit binaries the scenarios run, built above: the ASan copy was made
# before them
if [ -n "$asan_pid" ]; then
    cp -p t/unit/*.bin "$ASAN/t/unit/" 2>/dev/null || true
fi

copy_checkout "$WORK/src"
run_suite plain "$WORK/src"
unit_results

if [ "${MEMSESS_TEST_SANITIZE:-1}" = 1 ]; then
    wait "$asan_pid" || { cat "$WORK/build-asan.log"; exit 1; }
    # The no-DEEPBIND shim must come before the runtime, whose own dlopen
    # interceptor would otherwise be found first (hence no link order check).
    preload=$(gcc -print-file-name=libasan.so)
    if [ -f "$ASAN/t/asan/nodeepbind.c" ]; then
        gcc -shared -fPIC -O1 -o "$ASAN/t/asan/nodeepbind.so" "$ASAN/t/asan/nodeepbind.c" -ldl
        preload="$ASAN/t/asan/nodeepbind.so:$preload"
    fi
    mkdir -p "$ASAN/t/logs"
    # httpd through a wrapper that preloads the sanitizer runtime: Debian's
    # apache2 is not built with it, our module is.
    cat > "$WORK/httpd-asan" <<EOF
#!/bin/sh
export LD_PRELOAD="$preload"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:verify_asan_link_order=0:log_path=$ASAN/t/logs/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$ASAN/t/logs/ubsan"
exec /usr/sbin/apache2 "\$@"
EOF
    chmod 755 "$WORK/httpd-asan"
    # (the scenarios that measure RSS skip that part: ASan's quarantine)
    # (and t/23_starved.t saturates the CPU for 8 s, not 15: what ASan
    # checks is the code each path runs, not how long)
    SUITE_ENV=(MEMSESS_TEST_SANITIZED=1 MEMSESS_STARVE_SECONDS=8)
    run_suite asan "$ASAN" -httpd "$WORK/httpd-asan"
    SUITE_ENV=()
    reports=$(ls "$ASAN"/t/logs/asan.* "$ASAN"/t/logs/ubsan.* 2>/dev/null || true)
    if [ -n "$reports" ]; then
        log "sanitizer reports:"
        for f in $reports; do
            echo "--- $f"
            head -n 60 "$f"
        done
        FAILED_STEPS+=("sanitizer reports")
        STEP_FAIL=$((STEP_FAIL + 1))
    else
        STEP_PASS=$((STEP_PASS + 1))
    fi
fi

if [ -n "$deb_pid" ]; then
    set +e
    wait "$deb_pid"
    st=$?
    set -e
    log "Debian package scenario (t/debian/admin.sh): its output"
    cat "$WORK/suite-debian.log"
    [ "$st" -eq 0 ] || FAILED_STEPS+=("Debian package scenario (exit $st)")
fi

if [ ${#FAILED_STEPS[@]} -ne 0 ]; then
    for f in "$WORK"/unit.log "$WORK"/suite-*.log; do
        [ -f "$f" ] || continue
        out=$(failures "$f")
        [ -n "$out" ] && { log "failed in $(basename "$f" .log):"; echo "$out"; }
    done
    log "FAILED: ${FAILED_STEPS[*]}"
    exit 1
fi
log "all tests passed"
