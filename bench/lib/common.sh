# Sourced by bench/*.sh: root check, packages, the module, a work dir.
# Everything the benchmarks start lives under bench/work/ (git-ignored) and
# listens on 127.0.0.1 ports 31000-31999 only.

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOP=$(dirname "$BENCH")
WORK=$BENCH/work
RESULTS=$BENCH/results

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run it as root (it installs packages and starts Apache as User nobody)"

# Installs the Debian packages in "$@" that are missing (tools/setup.sh:
# services are never started, the benchmarks start their own processes).
need_packages() {
    bash "$TOP/tools/setup.sh" "$@"
}

BASE_PACKAGES=(make gcc apache2 apache2-dev apache2-utils libmemcached-dev
               memcached libapache2-mod-php php-memcached python3 iproute2
               procps)

# Builds the module (a no-op when it is up to date) and takes a private copy,
# so that a rebuild by someone else during the run cannot swap it under us.
build_module() {
    mkdir -p "$WORK" "$RESULTS"
    chmod 755 "$WORK"
    if ! make -s -C "$TOP" -f Makefile.apxs >"$WORK/build.log" 2>&1; then
        if [ -f "$TOP/.libs/mod_memsess.so" ]; then
            echo "== warning: the build failed (see $WORK/build.log); using the existing .libs/mod_memsess.so"
        else
            cat "$WORK/build.log" >&2
            die "cannot build the module"
        fi
    fi
    cp "$TOP/.libs/mod_memsess.so" "$WORK/mod_memsess.so"
}

# Ports the benchmarks use must be free (other engineers use other ranges):
# check_ports_free [FIRST LAST], 31000-31999 unless told.
check_ports_free() {
    local first=${1:-31000} last=${2:-31999} busy
    busy=$(ss -Hltn | awk '{print $4}' | sed -n 's/^.*:\([0-9][0-9]*\)$/\1/p' |
           awk -v a="$first" -v b="$last" '$1 >= a && $1 <= b' | sort -nu | tr '\n' ' ')
    [ -z "$busy" ] || die "ports already in use in $first-$last: $busy (another benchmark running?)"
}

# bench_user NAME: a system user for a process that must be told apart by
# its uid (an iptables owner rule), created if missing (group nogroup, no
# home, no shell).  The users stay, as tools/demo.sh's do.
bench_user() {
    id -u "$1" >/dev/null 2>&1 ||
        useradd --system --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin --gid nogroup "$1"
}

# remove_rules TAG: every iptables OUTPUT rule carrying the comment TAG (a
# benchmark's cuts; other rules are left alone).
remove_rules() {
    local line
    command -v iptables >/dev/null 2>&1 || return 0
    while read -r line; do
        # shellcheck disable=SC2086
        [ -n "$line" ] && iptables ${line/-A/-D} || true
    done < <(iptables -S OUTPUT 2>/dev/null | grep -- "--comment $1 " || true)
}

# One benchmark at a time: they share ports.
take_lock() {
    exec 9>"$WORK/.lock"
    flock -n 9 || die "another bench/ script is running"
}

# bench_prepare [--ports FIRST LAST] [PACKAGE...]: what every benchmark does
# before its driver runs: the base packages and PACKAGEs installed, the work
# dir, the lock, its ports checked free (31000-31999 unless told), the
# module built and copied.
bench_prepare() {
    local ports=()
    if [ "${1:-}" = --ports ]; then
        ports=("$2" "$3")
        shift 3
    fi
    need_packages "${BASE_PACKAGES[@]}" "$@"
    mkdir -p "$WORK"
    take_lock
    check_ports_free "${ports[@]}"
    build_module
}

# run_driver SECONDS DRIVER [ARG...]: replaces this shell with the Python
# driver bench/lib/DRIVER, bounded by a timeout of SECONDS (SIGTERM, SIGKILL
# 20 s later).  The driver owns the processes and stops them (try/finally,
# signals).
run_driver() {
    local secs=$1 driver=$2
    shift 2
    export PYTHONDONTWRITEBYTECODE=1
    exec timeout --signal=TERM --kill-after=20 "$secs" python3 "$BENCH/lib/$driver" "$@"
}
