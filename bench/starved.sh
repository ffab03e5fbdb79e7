#!/bin/bash
# bench/starved.sh: the checker on a saturated machine, this tree against a
# baseline build side by side in one run.  Runs t/23_starved.t (50 servers
# beside stress-ng CPU burners for --seconds, then ten frozen, one killed)
# through tools/test.sh, plain and ASan+UBSan, once for each build, and
# writes bench/results/starved.md: false downs, detection of the hung and
# the killed servers, CPU pressure.  About 4 minutes per build at the
# default 60 s.  Run as root.
#
#   bash bench/starved.sh [--seconds N] [--per-core N] [--old REV]
#
#   --seconds N    how long the 50 healthy servers run beside the burners (60)
#   --per-core N   CPU burners per core (2)
#   --old REV      the baseline: a commit of this repository (default
#                  420527a, the last before the checker judged its own
#                  lateness); "none" runs this tree only
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_=60
PER_CORE=2
OLD=420527a
while [ $# -gt 0 ]; do
    case $1 in
        --seconds) SECONDS_=$2; shift 2 ;;
        --per-core) PER_CORE=$2; shift 2 ;;
        --old) OLD=$2; shift 2 ;;
        *) echo "bench/starved.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$SECONDS_$PER_CORE" in
    *[!0-9]*) echo "bench/starved.sh: --seconds and --per-core take whole numbers" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "bench/starved.sh: run it as root" >&2; exit 1; }

# the checkouts under a temporary directory, the logs kept in bench/work/
TMP=$(mktemp -d /tmp/memsess-starved.XXXXXX)
chmod 755 "$TMP"
trap 'rm -rf "$TMP"' EXIT
WORK=$TOP/bench/work
mkdir -p "$WORK"
OUT=$TOP/bench/results/starved.md
commit=$(git -C "$TOP" rev-parse --short HEAD)

# run_one NAME DIR: the scenario in DIR (a checkout), its log in
# bench/work/starved-NAME.log
run_one() {
    local name=$1 dir=$2
    echo "== bench/starved.sh: $name ($dir)"
    (cd "$dir" && MEMSESS_TEST_FILES=t/23_starved.t MEMSESS_TEST_DEB=0 \
        MEMSESS_STARVE_SECONDS=$SECONDS_ MEMSESS_STARVE_PER_CORE=$PER_CORE \
        timeout 1800 bash tools/test.sh) > "$WORK/starved-$name.log" 2>&1 || true
}

# rows NAME: one table row per pass (plain, asan) from the scenario's log
rows() {
    local name=$1
    perl -ne '
        BEGIN { $pass = "plain" }
        $pass = "asan" if /Apache::Test scenarios \(asan\)/;
        $p{$pass}{press} = $1 if /tasks waited for a CPU (\S+) of the time/;
        $p{$pass}{hung} = "$1 / $2 ms" if /saturated, 10 hung of 50: first down after (\S+) ms, last after (\S+) ms/;
        $p{$pass}{patient} = $1 if /found down by a patient probe .*: (\d+) of 10/;
        $p{$pass}{killed} = "$1 ms" if /saturated, a killed server: down after (\S+) ms/;
        if (/^# received: \x27(MEMC_\S+=\S+.*)\x27/ && !defined $p{$pass}{notup}) {
            my %s; $s{$1}++ while /(MEMC_X\d+)=/g; $p{$pass}{notup} = scalar keys %s;
        }
        $p{$pass}{fail}++ if /^not ok/;
        $p{$pass}{ok}++ if /^ok \d+$/;
        END {
            for my $q (qw(plain asan)) {
                my $r = $p{$q} or next;
                printf "| %s | %s | %s | %s | %s | %s | %s | %d passed, %d failed |\n",
                    $ARGV_NAME, $q, $r->{press} // "?", $r->{notup} // 0,
                    $r->{hung} // "never", $r->{patient} // "?", $r->{killed} // "never",
                    $r->{ok} // 0, $r->{fail} // 0;
            }
        }
        BEGIN { $ARGV_NAME = shift @ARGV }
    ' "$name" "$WORK/starved-$name.log"
}

git clone -q "$TOP" "$TMP/new"
git -C "$TMP/new" checkout -q "$(git -C "$TOP" rev-parse HEAD)"
# uncommitted changes of the tree are not in the clone: say so
dirty=$(git -C "$TOP" status --porcelain -- '*.c' '*.h' t/23_starved.t | wc -l)
run_one "$commit" "$TMP/new"
if [ "$OLD" != none ]; then
    git clone -q "$TOP" "$TMP/old"
    git -C "$TMP/old" checkout -q "$OLD"
    # the same scenario, with the test library it uses
    cp "$TOP/t/23_starved.t" "$TMP/old/t/"
    cp "$TOP/t/lib/Memsess/Test.pm" "$TMP/old/t/lib/Memsess/"
    run_one "$OLD" "$TMP/old"
fi

{
    echo "# The checker on a saturated machine (\`bench/starved.sh\`)"
    echo
    echo "$(date -u +%Y-%m-%d), commit $commit$( [ "$dirty" -gt 0 ] && echo " (+ $dirty uncommitted files not measured)"),"
    echo "$(nproc) cores; 50 memcached at the defaults (interval 200 ms, timeout 100 ms,"
    echo "thresholds 2) beside $PER_CORE \`stress-ng --cpu\` burner(s) per core for $SECONDS_ s,"
    echo "then ten frozen (SIGSTOP) and one killed, still saturated; each build plain and"
    echo "ASan+UBSan (\`t/23_starved.t\` through \`tools/test.sh\`)."
    echo
    echo "| build | pass | CPU pressure | healthy servers seen not up | hung: first / last down | of them by a patient probe | killed: down after | checks |"
    echo "|---|---|---|---|---|---|---|---|"
    rows "$commit"
    [ "$OLD" != none ] && rows "$OLD"
} > "$OUT"
cat "$OUT"
