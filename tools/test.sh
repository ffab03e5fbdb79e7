#!/bin/bash
# The test command: bash tools/test.sh (as root, from the checkout).
#
#  1. tools/setup.sh installs what is missing;
#  2. make -f Makefile.apxs builds the module, `make -f Makefile.apxs unit`
#     runs the C unit tests;
#  3. the Apache::Test scenarios (t/*.t) run against a real Apache, mod_php,
#     php-memcached and memcached processes.  Apache::Test refuses root, so
#     they run as the unprivileged user memsess-test in a copy of the
#     checkout under a temporary directory.
#
# Exits non-zero on any failure.  Environment:
#   MEMSESS_TEST_KEEP=1       keep the temporary copy (logs) afterwards
#   MEMSESS_TEST_MARGIN_MS    slack on top of the contract's detection times
#   MEMSESS_TEST_FILES="t/a.t t/b.t"   run only these scenario files
#   MEMSESS_TEST_VERBOSE=0    only the harness summary (default: every check
#                             with what it expected and what it got)
set -euo pipefail

cd "$(dirname "$0")/.."
TOP=$(pwd)
TEST_USER=memsess-test
LIMIT=${MEMSESS_TEST_TIMEOUT:-720}     # seconds for the whole Apache::Test run

log() { echo "== test.sh: $*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "tools/test.sh: run it as root (it installs packages and drops to $TEST_USER)" >&2
    exit 1
fi

WORK=$(mktemp -d /tmp/memsess-test.XXXXXX)
chmod 755 "$WORK"
SRC=$WORK/src
as_test() { runuser -u "$TEST_USER" -- env HOME="$WORK/home" PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin "$@"; }

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

cleanup() {
    rc=$?
    set +e
    if [ -x "$SRC/t/TEST" ] && id -u "$TEST_USER" >/dev/null 2>&1; then
        (cd "$SRC" && as_test timeout 60 perl t/TEST -stop >/dev/null 2>&1)
    fi
    # memcached a crashed test left behind (each writes t/logs/memc/NAME.pid)
    for f in "$SRC"/t/logs/memc/*.pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        if [ -n "$pid" ] && [ "$(stat -c %U /proc/"$pid" 2>/dev/null)" = "$TEST_USER" ]; then
            kill -CONT "$pid" 2>/dev/null
            kill -KILL "$pid" 2>/dev/null
        fi
        rm -f "$f"
    done
    if [ "$rc" -ne 0 ] && [ -f "$SRC/t/logs/error_log" ]; then
        log "warnings and errors in t/logs/error_log (last 40)"
        grep -E '\[[a-z_0-9]+:(warn|error|crit|alert|emerg)\]|AH00052|Segmentation|AddressSanitizer|runtime error' \
            "$SRC/t/logs/error_log" | tail -n 40
    fi
    passed=0 failed=0
    for f in "$WORK/unit.log" "$WORK/suite.log"; do
        [ -f "$f" ] || continue
        read -r p n < <(counts "$f")
        passed=$((passed + p)) failed=$((failed + n))
    done
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

log "setup"
bash tools/setup.sh

log "build"
make -f Makefile.apxs
UNIT_RC=0
if make -f Makefile.apxs -n unit >/dev/null 2>&1; then
    log "C unit tests"
    set +e
    make -f Makefile.apxs unit 2>&1 | tee "$WORK/unit.log"
    UNIT_RC=${PIPESTATUS[0]}
    set -e
else
    log "no 'unit' target in Makefile.apxs: C unit tests skipped"
fi

if ! id -u "$TEST_USER" >/dev/null 2>&1; then
    log "creating user $TEST_USER"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$TEST_USER"
fi


log "copying the checkout to $SRC"
# (exit 24: a file vanished while copying, e.g. a fuzzer at work beside us)
rsync -a --exclude .git --exclude t/logs --exclude t/TEST \
    --exclude 't/conf/*.conf' --exclude t/conf/apache_test_config.pm \
    "$TOP"/ "$SRC"/ || [ $? -eq 24 ]
mkdir -p "$WORK/home"
chown -R "$TEST_USER:$TEST_USER" "$SRC" "$WORK/home"

cd "$SRC"
as_test perl -MApache::TestMM -e 'Apache::TestMM::filter_args(); Apache::TestMM::generate_script("t/TEST")' >/dev/null

log "Apache::Test scenarios"
set +e
# shellcheck disable=SC2086
VERBOSE=-verbose
[ "${MEMSESS_TEST_VERBOSE:-1}" = 0 ] && VERBOSE=
as_test timeout --kill-after=30 "$LIMIT" perl t/TEST $VERBOSE ${MEMSESS_TEST_FILES:-} 2>&1 | tee "$WORK/suite.log"
SUITE_RC=${PIPESTATUS[0]}
set -e
if [ "$UNIT_RC" -ne 0 ] || [ "$SUITE_RC" -ne 0 ]; then
    log "FAILED (unit: exit $UNIT_RC, scenarios: exit $SUITE_RC)"
    exit 1
fi
log "all tests passed"
