#!/bin/bash
# The few things a scenario needs root for, and nothing else: tools/test.sh
# (root) copies this script to a root-owned place in its work directory and
# lets the test user run it, and only it, through sudo.  The shared-verdict
# scenario (t/50_peers.t) uses it to run Apache instances as users of their
# own (memsess-web1..9: the parent must be root to switch to them) and to
# cut one instance's path to one memcached with an iptables OUTPUT rule that
# matches that user.
#
#   root-helper.sh start USER DIR HTTPD   httpd -d DIR -f DIR/httpd.conf -k start
#   root-helper.sh start-skewed USER DIR HTTPD OFFSET   the same, its wall clock
#                                         OFFSET (+N or -N) seconds apart (libfaketime),
#                                         or as a file in DIR says (@FILE, read every second)
#   root-helper.sh stop DIR HTTPD         httpd ... -k stop, SIGKILL if it lingers
#   root-helper.sh graceful DIR HTTPD     httpd ... -k graceful
#   root-helper.sh restart DIR HTTPD      httpd ... -k restart
#   root-helper.sh usr1 DIR               SIGUSR1 to DIR's parent: a graceful
#                                         at once (no config read first)
#   root-helper.sh kill DIR               SIGKILL to the parent and its children
#                                         at once (an instance that dies)
#   root-helper.sh killchild DIR PID      SIGKILL to one child of DIR's parent
#                                         (the child running the checker)
#   root-helper.sh stopchild DIR PID      SIGSTOP to it (a checker late)
#   root-helper.sh contchild DIR PID      SIGCONT to it
#   root-helper.sh fds DIR                "PID NFDS" of the parent and each child
#   root-helper.sh cut USER PORT [drop]   reject (or drop) USER's TCP to
#                                         127.0.0.1:PORT
#   root-helper.sh heal USER PORT         remove that rule (either kind)
#   root-helper.sh cleanup [DIR...]       every rule of ours, instances under DIR
#
# Every argument is checked: USER is memsess-webN, DIR lies under the work
# directory this copy sits in (WORK/root/root-helper.sh), HTTPD is Debian's
# apache2 or the work directory's ASan wrapper.  Rules carry the comment
# memsess-test-XXXXXX (the work directory's name) so that cleanup finds
# every one of this run's, and no other's.
set -euo pipefail
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

HERE=$(cd "$(dirname "$0")" && pwd -P)
WORK=$(dirname "$HERE")
# this run's rules: runs side by side leave each other's alone
TAG=$(basename "$WORK" | tr . -)

die() { echo "root-helper: $*" >&2; exit 2; }

check_user() {
    [[ $1 =~ ^memsess-web[1-9]$ ]] || die "not a scenario user: $1"
    id -u "$1" >/dev/null 2>&1 || die "no user $1"
}

check_port() {
    [[ $1 =~ ^[0-9]{1,5}$ ]] && [ "$1" -ge 1024 ] && [ "$1" -le 65535 ] ||
        die "not a port: $1"
}

check_dir() {
    local d
    d=$(realpath -e -- "$1" 2>/dev/null) || die "no directory $1"
    case $d in
        "$WORK"/*) ;;
        *) die "$1 is not under $WORK" ;;
    esac
    [ -f "$d/httpd.conf" ] || die "no $d/httpd.conf"
    echo "$d"
}

check_httpd() {
    case $1 in
        /usr/sbin/apache2|"$WORK/httpd-asan") ;;
        *) die "not an httpd this helper runs: $1" ;;
    esac
}

rule() {   # rule -A|-D USER PORT [drop]
    local target=(-j REJECT --reject-with tcp-reset)
    [ "${4:-}" = drop ] && target=(-j DROP)
    iptables "$1" OUTPUT -o lo -p tcp -d 127.0.0.1 --dport "$3" \
        -m owner --uid-owner "$2" -m comment --comment "$TAG" "${target[@]}"
}

root_parent() {   # root_parent DIR: the pid of DIR's running parent, root's
    local pid
    pid=$(cat "$1/httpd.pid" 2>/dev/null || true)
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || die "$1: not running"
    [ "$(stat -c %U "/proc/$pid")" = root ] || die "$1: its parent is not root's"
    echo "$pid"
}

stop_dir() {   # stop_dir DIR HTTPD
    local d=$1 pid=
    [ -f "$d/httpd.pid" ] && pid=$(cat "$d/httpd.pid")
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    [ "$(stat -c %U "/proc/$pid")" = root ] || return 0
    kids=$(pgrep -P "$pid" || true)
    # shellcheck disable=SC2086
    [ -n "$kids" ] && kill -CONT $kids 2>/dev/null
    "$2" -d "$d" -f "$d/httpd.conf" -k stop >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -KILL "$pid" $kids 2>/dev/null || true
}

cmd=${1:-}
case $cmd in
    start)
        [ $# -eq 4 ] || die "usage: start USER DIR HTTPD"
        check_user "$2"
        d=$(check_dir "$3")
        check_httpd "$4"
        grep -qx "User $2" "$d/httpd.conf" || die "$d/httpd.conf has no 'User $2'"
        exec "$4" -d "$d" -f "$d/httpd.conf" -k start
        ;;
    start-skewed)
        # as start, with the instance's wall clock OFFSET seconds apart
        # (libfaketime; its monotonic clock left alone, as NTP would)
        [ $# -eq 5 ] || die "usage: start-skewed USER DIR HTTPD OFFSET"
        check_user "$2"
        d=$(check_dir "$3")
        check_httpd "$4"
        grep -qx "User $2" "$d/httpd.conf" || die "$d/httpd.conf has no 'User $2'"
        # with the ASan runtime too, httpd hangs as it starts
        [ "$4" = /usr/sbin/apache2 ] || die "start-skewed runs /usr/sbin/apache2 only"
        lib=/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1
        [ -f "$lib" ] || die "no $lib (package faketime)"
        if [[ $5 =~ ^[+-][0-9]{1,4}$ ]]; then
            export FAKETIME="$5"
        elif [[ $5 == @* ]]; then
            # @FILE: the offset read from FILE (in DIR) every second, so
            # that the instance's clock can be stepped while it runs
            f=$(realpath -e "${5#@}" 2>/dev/null) || die "no file ${5#@}"
            [[ $f == "$d"/* && -f $f ]] || die "$f is not a file in $d"
            export FAKETIME_TIMESTAMP_FILE="$f" FAKETIME_CACHE_DURATION=1
        else
            die "not an offset in seconds nor @FILE: $5"
        fi
        export FAKETIME_DONT_FAKE_MONOTONIC=1 LD_PRELOAD="$lib"
        exec "$4" -d "$d" -f "$d/httpd.conf" -k start
        ;;
    stop)
        [ $# -eq 3 ] || die "usage: stop DIR HTTPD"
        d=$(check_dir "$2")
        check_httpd "$3"
        stop_dir "$d" "$3"
        ;;
    graceful|restart)
        [ $# -eq 3 ] || die "usage: $cmd DIR HTTPD"
        d=$(check_dir "$2")
        check_httpd "$3"
        exec "$3" -d "$d" -f "$d/httpd.conf" -k "$cmd"
        ;;
    usr1)
        [ $# -eq 2 ] || die "usage: usr1 DIR"
        d=$(check_dir "$2")
        kill -USR1 "$(root_parent "$d")"
        ;;
    killchild|stopchild|contchild)
        [ $# -eq 3 ] || die "usage: $cmd DIR PID"
        d=$(check_dir "$2")
        [[ $3 =~ ^[0-9]+$ ]] || die "not a pid: $3"
        pid=$(root_parent "$d")
        [ "$(awk '{print $4}' "/proc/$3/stat" 2>/dev/null)" = "$pid" ] ||
            die "$3 is not a child of $d's parent $pid"
        sig=${cmd%child}
        kill -"${sig^^}" "$3"
        ;;
    fds)
        [ $# -eq 2 ] || die "usage: fds DIR"
        d=$(check_dir "$2")
        pid=$(root_parent "$d")
        for p in "$pid" $(pgrep -P "$pid" || true); do
            n=$(ls "/proc/$p/fd" 2>/dev/null | wc -l) || continue
            echo "$p $n"
        done
        ;;
    kill)
        [ $# -eq 2 ] || die "usage: kill DIR"
        d=$(check_dir "$2")
        pid=$(cat "$d/httpd.pid" 2>/dev/null || true)
        [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || die "$d: not running"
        [ "$(stat -c %U "/proc/$pid")" = root ] || die "$d: its parent is not root's"
        kids=$(pgrep -P "$pid" || true)
        # shellcheck disable=SC2086
        kill -KILL "$pid" $kids
        ;;
    cut|heal)
        [ $# -eq 3 ] || { [ $# -eq 4 ] && [ "$cmd" = cut ] && [ "$4" = drop ]; } ||
            die "usage: cut USER PORT [drop] | heal USER PORT"
        check_user "$2"
        check_port "$3"
        if [ "$cmd" = cut ]; then
            rule -A "$2" "$3" "${4:-}"
        else
            while rule -D "$2" "$3" 2>/dev/null; do :; done
            while rule -D "$2" "$3" drop 2>/dev/null; do :; done
        fi
        ;;
    cleanup)
        shift
        while read -r line; do
            # shellcheck disable=SC2086
            [ -n "$line" ] && iptables ${line/-A/-D} || true
        done < <(iptables -S OUTPUT | grep -- "--comment $TAG -j" || true)
        for top in "$@"; do
            for f in "$top"/t/logs/inst/*/httpd.pid; do
                [ -e "$f" ] || continue
                d=$(check_dir "$(dirname "$f")") || continue
                stop_dir "$d" /usr/sbin/apache2
            done
        done
        ;;
    *)
        die "usage: start|stop|graceful|restart|kill|killchild|fds|cut|heal|cleanup ..."
        ;;
esac
