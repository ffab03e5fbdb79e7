#!/bin/bash
# What a Debian administrator does with the package, on Debian's own layout,
# in a throwaway root.  Prints TAP.  As root, from the checkout:
#
#   bash t/debian/admin.sh        (tools/test.sh runs it through prove)
#
#  1. make -f Makefile.apxs deb builds libapache2-mod-memsess; lintian has
#     no error; the package's version is the module's MEMSESS_VERSION;
#  2. debootstrap puts a minimal Debian (the machine's own release, from its
#     own mirror) into a temporary folder; there apt-get installs apache2 and
#     memcached, then `apt-get install ./libapache2-mod-memsess_*.deb` (which
#     must bring its own dependencies from the mirror), then mod_php, php-fpm
#     and php-memcached;
#  3. in that root, in a network namespace of its own (so Debian's ports 80
#     and 11211 are used as shipped, next to anything the machine runs):
#     a2enmod, a site in sites-available with MemsessServers, mod_php with
#     the prefork MPM, apache2ctl -t / start, sessions in the real memcached,
#     apache2ctl graceful keeping the health state and the sessions; then
#     php-fpm through Debian's php8.2-fpm conf with the event MPM, the same;
#     a2dismod memsess; apt-get purge leaving nothing behind.
#
# Issue 24, a newcomer's path: the commands and the site are README.md's own,
# read from it, not copies: the ```sh block and the ```apache block under
# "### The Debian package".  Each command of the ```sh block is one this
# script knows (the list in readme_kind, each with where it runs and what it
# changes, stated at its call); a block that is not found, a line that is not
# in that list, a command the script never got to run, or one out of the
# README's order, is a `not ok` naming README.md's line.  What a test must
# change, and nothing else:
#   make -f Makefile.apxs deb      + DEB_OUT=<this run's folder> (the checkout
#                                  is left as it is)
#   apt-get install ./dist/X.deb   -> cd /root && apt-get install -y ./X.deb
#                                  (where the script copied the .deb into the
#                                  root; -y: nobody answers apt's question)
#   systemctl reload apache2       -> apache2ctl graceful (systemd does not
#                                  run in the chroot; Debian's apache2.service
#                                  reloads with `apachectl graceful`)
#   the site's MemsessServers      -> 127.0.0.1:11211, the root's memcached
# Its ServerName and DocumentRoot are used as they are: the script serves its
# PHP page from that DocumentRoot and asks for that ServerName.  An
# administrator's Apache runs before the module is installed: here it is
# started (apache2ctl start) where systemd would have, so the README's reload
# is a real graceful restart that loads the module into a running Apache.
#
# The machine itself is not changed: the root and everything mounted into it
# live in a mount and PID namespace of this script, which is removed at the
# end (every process started in it dies with it).
#
# Environment:
#   MEMSESS_DEB_MIRROR   Debian mirror (default: the machine's apt source)
#   MEMSESS_DEB_KEEP=1   keep the temporary folder (root, logs) afterwards
set -uo pipefail

if [ "${1:-}" != --inside ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "1..0 # SKIP needs root (debootstrap, chroot, namespaces)"
        exit 0
    fi
    TOP=$(cd "$(dirname "$0")/../.." && pwd)
    W=$(mktemp -d /tmp/memsess-deb.XXXXXX)
    chmod 755 "$W"
    # private mounts, and every process started inside dies with it
    unshare --mount --propagation private --pid --fork --kill-child \
        bash "$0" --inside "$TOP" "$W" &
    child=$!
    # unshare blocks SIGINT/SIGTERM, and the namespace's first process only
    # gets signals it has a handler for (run after the command at hand):
    # on a signal, SIGKILL that process, which ends the whole namespace
    trap 'kill -KILL $(pgrep -P "$child") 2>/dev/null' INT TERM
    wait "$child"
    st=$?
    # (a signal ends the first wait early: wait for the namespace to go)
    while kill -0 "$child" 2>/dev/null; do wait "$child"; st=$?; done
    # the namespace is gone, and with it every mount into the root
    if [ -n "${MEMSESS_DEB_KEEP:-}" ]; then
        echo "# kept $W"
    else
        rm -rf --one-file-system "$W"
    fi
    exit "$st"
fi

TOP=$2
W=$3
R=$W/root                 # the throwaway Debian
NS=                       # its network namespace (/proc/PID/ns/net)
LOGS=$W/logs
# this PID namespace's own /proc (only in this mount namespace)
mount -t proc proc /proc
mkdir -p "$LOGS"
cd "$TOP" || exit 1

N=0
FAILED=0
STEP=0
ok()   { N=$((N + 1)); echo "ok $N - $1"; }
fail() {
    N=$((N + 1)); FAILED=$((FAILED + 1))
    echo "not ok $N - $1"
    shift
    for f in "$@"; do
        [ -s "$f" ] && tail -n 25 "$f" | sed 's/^/#   /'
    done
    return 0
}
diag() { echo "# $*"; }
# check "what it proves" cmd...: ok if the command succeeds (output logged)
check() {
    local what=$1
    shift
    STEP=$((STEP + 1))
    local log=$LOGS/$STEP.log st=0
    "$@" >"$log" 2>&1 || st=$?
    if [ "$st" -eq 0 ]; then ok "$what"; return 0; fi
    fail "$what (exit $st)" "$log"
    return 1
}
# is "what" GOT EXPECTED
is() {
    if [ "$2" = "$3" ]; then ok "$1"; else
        fail "$1"; diag "  got:      '$2'"; diag "  expected: '$3'"; fi
}
# like "what" GOT REGEX
like() {
    if [[ "$2" =~ $3 ]]; then ok "$1"; else
        fail "$1"; diag "  got:      '${2:0:600}'"; diag "  expected: /$3/"; fi
}
# unlike "what" GOT REGEX
unlike() {
    if ! [[ "$2" =~ $3 ]]; then ok "$1"; else
        fail "$1"; diag "  got:      '${2:0:600}'"; diag "  expected no /$3/"; fi
}
bail() { echo "Bail out! $*"; finish; }

ROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# a command in the root (with the machine's network: apt needs the mirror)
in_root_net() {
    chroot "$R" env -i PATH=$ROOT_PATH LANG=C.UTF-8 HOME=/root \
        DEBIAN_FRONTEND=noninteractive ${http_proxy:+http_proxy=$http_proxy} "$@"
}
# a command in the root, in its own network namespace
in_root() {
    nsenter --net="$NS" chroot "$R" env -i PATH=$ROOT_PATH LANG=C.UTF-8 \
        HOME=/root DEBIAN_FRONTEND=noninteractive "$@"
}
# a command of the machine (curl, the memcached client) in that namespace
on_net() { nsenter --net="$NS" "$@"; }

started=0
finish() {
    if [ "$started" = 1 ]; then
        in_root apache2ctl stop >/dev/null 2>&1
        in_root service php8.2-fpm stop >/dev/null 2>&1
        in_root service memcached stop >/dev/null 2>&1
    fi
    [ -n "${NS_HOLDER:-}" ] && kill "$NS_HOLDER" 2>/dev/null
    echo "1..$N"
    [ "$FAILED" -eq 0 ] && [ "$N" -gt 0 ]
    exit $?
}

# wait_for SECONDS cmd...: polls the command until it succeeds
wait_for() {
    local deadline=$(( $(date +%s) + $1 ))
    shift
    while ! "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -ge "$deadline" ] && return 1
        sleep 0.2
    done
}

# memcached's text protocol, from the machine, in the root's network
memc() {
    on_net timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/11211 || exit 1
        printf "%s\r\nquit\r\n" "$1" >&3; cat <&3' memc "$1"
}

# GET on the site as a browser would: curl JAR PATH
get() {
    on_net curl -s -m 10 -c "$W/$1" -b "$W/$1" -H "Host: $SITE_HOST" \
        "http://127.0.0.1$2" 2>&1
}
field() { sed -n "s/^$1=//p" <<<"$2"; }
status_field() {
    on_net curl -s -m 5 "http://127.0.0.1/memsess-status?auto" |
        sed -n "s/^MemsessServer\[0\]$1: //p"
}
status_up() { [ "$(status_field State)" = up ]; }
apache_up() { on_net curl -s -m 2 -o /dev/null http://127.0.0.1/; }
# how many lines of the root's Apache error log match
error_log_has() {
    local n
    n=$(grep -c "$1" "$R/var/log/apache2/error.log" 2>/dev/null)
    echo "${n:-0}"
}
# log_grew PATTERN N: more than N lines match
log_grew() { [ "$(error_log_has "$1")" -gt "$2" ]; }
READY='resuming normal operations'
# every module named is in apache2ctl -M
modules_are() {
    local what=$1 mods missing=
    shift
    mods=$(in_root apache2ctl -M 2>&1)
    for m in "$@"; do
        grep -q "^ *${m}_module " <<<"$mods" || missing="$missing $m"
    done
    is "$what" "${missing:-none missing}" "none missing"
}

# ---- README.md's commands and site ----------------------------------------

README=$TOP/README.md
# readme_block HEADING LANG: the first ```LANG block of the section whose
# heading line is exactly HEADING (up to the next heading), as
# "LINENO<TAB>text" lines; nothing if there is none or it is not closed
readme_block() {
    awk -v h="$1" -v l="$2" '
        !sec { if ($0 == h) sec = 1; next }
        fence == "" && /^#+ / { exit }
        fence == "" && /^```/ { fence = $0; want = ($0 == "```" l); n = 0; next }
        fence != "" && $0 == "```" {
            if (want) { for (i = 1; i <= n; i++) print buf[i]; exit }
            fence = ""; next
        }
        want { buf[++n] = NR "\t" $0 }
    ' "$README"
}
# readme_kind CMD: which of the commands this script knows how to run CMD
# is (nothing: it does not know it)
readme_kind() {
    case "$1" in
        "make -f Makefile.apxs deb") echo build-deb ;;
        "a2enmod memsess") echo a2enmod ;;
        "apache2ctl -t") echo configtest ;;
        "systemctl reload apache2") echo reload ;;
        *) [[ "$1" =~ ^apt-get\ install\ \./dist/libapache2-mod-memsess_[^\ /]+\.deb$ ]] &&
            echo install-deb ;;
    esac
}
# readme_parse HEADING: the section's ```sh block into the queue RQ_* of
# commands (a line's `&&` gives several, run while they succeed; a `# ...`
# comment is dropped); not ok for a missing block or a command not known
RQ_LINE=() RQ_CMD=() RQ_KIND=() RQ_DONE=()
readme_parse() {
    local block ln text cmd kind n=0
    RQ_WHERE=$1
    block=$(readme_block "$1" sh)
    if [ -z "$block" ]; then
        fail "README.md: a \`\`\`sh block under '$1' (not found)"
        return 1
    fi
    while IFS=$'\t' read -r ln text; do
        text=$(sed -e 's/^[[:space:]]*#.*//' -e 's/[[:space:]]#.*$//' <<<"$text")
        while [ -n "$text" ]; do
            if [[ "$text" == *" && "* ]]; then
                cmd=${text%%" && "*}; text=${text#*" && "}
            else
                cmd=$text; text=
            fi
            cmd=$(sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' <<<"$cmd")
            [ -n "$cmd" ] || continue
            kind=$(readme_kind "$cmd")
            if [ -z "$kind" ]; then
                fail "README.md:$ln: '$cmd' under '$1' is not a command this test knows how to run"
                continue
            fi
            RQ_LINE+=("$ln"); RQ_CMD+=("$cmd"); RQ_KIND+=("$kind"); RQ_DONE+=(0)
            n=$((n + 1))
        done
    done <<<"$block"
    ok "README.md: the \`\`\`sh block under '$1' is found ($n commands, lines $(head -n 1 <<<"$block" | cut -f1)-$(tail -n 1 <<<"$block" | cut -f1))"
}
# readme_step KIND: takes the README's next command of that kind: RL its
# line, RC its text; not ok if there is none, or if one before it in the
# README has not been run yet (the README's order changed)
readme_step() {
    local kind=$1 i first=
    for i in "${!RQ_KIND[@]}"; do
        [ "${RQ_DONE[$i]}" = 1 ] && continue
        [ -z "$first" ] && first=$i
        [ "${RQ_KIND[$i]}" = "$kind" ] || continue
        [ "$first" = "$i" ] ||
            fail "README.md:${RQ_LINE[$first]}: '${RQ_CMD[$first]}' comes before '${RQ_CMD[$i]}' (line ${RQ_LINE[$i]}), where this test does not run it"
        RQ_DONE[$i]=1; RL=${RQ_LINE[$i]}; RC=${RQ_CMD[$i]}
        return 0
    done
    fail "README.md: no command of kind $kind left in the block under '$RQ_WHERE' (the README changed?)"
    RL=; RC=
    return 1
}
# readme_run AS [RUNNER...]: runs the README's command RC (line RL) as AS,
# RC with the substitutions stated at the call, through sh -c, by RUNNER
# (in_root, in_root_net, nothing: on the machine, in the checkout); a command
# after a failed one of the same line (`&&`) is not run, and not ok
RL_FAILED=
readme_run() {
    local as=$1 what
    shift
    [ -n "$RC" ] || return 1
    what="README.md:$RL: $RC"
    [ "$as" != "$RC" ] && what="$what (run as: $as)"
    if [ "$RL_FAILED" = "$RL" ]; then
        fail "$what: not run, the command before it on that line failed"
        return 1
    fi
    check "$what" "$@" sh -c "$as" && return 0
    RL_FAILED=$RL
    return 1
}
# readme_all_run: every command of the block has been run
readme_all_run() {
    local i left=
    for i in "${!RQ_KIND[@]}"; do
        [ "${RQ_DONE[$i]}" = 1 ] || left="$left README.md:${RQ_LINE[$i]}: '${RQ_CMD[$i]}';"
    done
    is "every command of README.md's block under '$RQ_WHERE' was run" "${left:-all run}" "all run"
}

# ---- 1. the package --------------------------------------------------------

readme_parse "### The Debian package"
# the site of sites-available the README shows under the same heading; the
# script serves its PHP page from its DocumentRoot and asks for its
# ServerName; its MemsessServers are the root's memcached instead
SITE_BLOCK=$(readme_block "### The Debian package" apache | cut -f2-)
SITE_HOST=$(awk '$1 == "ServerName" { gsub(/"/, "", $2); print $2; exit }' <<<"$SITE_BLOCK")
SITE_ROOT=$(awk '$1 == "DocumentRoot" { gsub(/"/, "", $2); print $2; exit }' <<<"$SITE_BLOCK")
[[ "$SITE_ROOT" == /?* ]] || SITE_ROOT=
SITE=$(sed -E 's/^([[:space:]]*MemsessServers[[:space:]]+).*$/\1127.0.0.1:11211/' <<<"$SITE_BLOCK")
is "README.md: the \`\`\`apache site under '### The Debian package' is found, with one MemsessServers, a ServerName and a DocumentRoot" \
    "$(grep -c '^[[:space:]]*MemsessServers[[:space:]]' <<<"$SITE_BLOCK") ${SITE_HOST:+ServerName} ${SITE_ROOT:+DocumentRoot}" \
    "1 ServerName DocumentRoot"
SITE_HOST=${SITE_HOST:-shop.example}
SITE_ROOT=${SITE_ROOT:-/var/www/shop}
diag "the README's site, as this test enables it:"
while IFS= read -r line; do diag "  $line"; done <<<"$SITE"

t0=$(date +%s)
DIST=$W/dist
# the .deb and lintian's report into this run's folder (DEB_OUT), not the
# checkout's dist/
readme_step build-deb
readme_run "$RC DEB_OUT=\"$DIST\"" || bail "no package"
DEB=$(ls "$DIST"/libapache2-mod-memsess_*.deb 2>/dev/null | head -n 1)
[ -n "$DEB" ] || bail "no .deb in $DIST"
diag "built $(basename "$DEB") in $(( $(date +%s) - t0 )) s"

is "lintian reports no error" "$(grep -c '^E: ' "$DIST/lintian.txt")" 0
while read -r line; do diag "lintian: $line"; done < <(grep -E '^[EW]: ' "$DIST/lintian.txt")

module_version=$(sed -n 's/^#define MEMSESS_VERSION "\(.*\)"/\1/p' mod_memsess.h)
changelog_version=$(dpkg-parsechangelog -S Version)
deb_version=$(dpkg-deb -f "$DEB" Version)
like "mod_memsess.h has a MEMSESS_VERSION" "$module_version" '^[0-9]+\.[0-9]+\.[0-9]+$'
is "debian/changelog's upstream version is MEMSESS_VERSION" "${changelog_version%-*}" "$module_version"
is "the .deb's version is the changelog's" "$deb_version" "$changelog_version"
depends=$(dpkg-deb -f "$DEB" Depends)
like "the .deb depends on Apache's module API and libmemcached" "$depends" \
    'apache2-api-20120211.*libmemcached11'
contents=$(dpkg-deb -c "$DEB" | awk '{print $6}' | sed 's,^\./,/,' | grep -v '/$' | sort | tr '\n' ' ')
doc=/usr/share/doc/libapache2-mod-memsess
is "the .deb holds the module, memsess.load, memsess.conf, the README and docs/" "$contents" \
    "/etc/apache2/mods-available/memsess.conf /etc/apache2/mods-available/memsess.load /usr/lib/apache2/modules/mod_memsess.so $doc/README.md.gz $doc/changelog.Debian.gz $doc/copyright $doc/docs/benchmarks.md.gz $doc/docs/design.md.gz $doc/docs/directives.md.gz $doc/docs/operations.md.gz $doc/docs/testing.md.gz "

# ---- 2. a throwaway Debian, and the packages an administrator installs -----

. /etc/os-release
suite=${VERSION_CODENAME:-bookworm}
mirror=${MEMSESS_DEB_MIRROR:-}
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
    mirror=$(awk -v RS= -v s="$suite" '$0 ~ "Suites:[^\n]* " s "( |\n|$)" {
        for (i = 1; i <= NF; i++) if ($i == "URIs:") { print $(i + 1); exit } }' \
        /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(awk -v s="$suite" '$1 == "deb" && $3 == s { print $2; exit }' /etc/apt/sources.list)
fi
mirror=${mirror:-http://deb.debian.org/debian}

t0=$(date +%s)
check "debootstrap --variant=minbase $suite from $mirror" \
    debootstrap --variant=minbase "$suite" "$R" "$mirror" || bail "no root"
diag "debootstrap took $(( $(date +%s) - t0 )) s"

# the machine's own apt sources (updates, security), so the root runs the
# same Apache as the one the package was built against
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    cp /etc/apt/sources.list.d/debian.sources "$R/etc/apt/sources.list.d/"
    rm -f "$R/etc/apt/sources.list"
fi
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
# as in any chroot: the packages' scripts start no service while we install
printf '#!/bin/sh\nexit 101\n' > "$R/usr/sbin/policy-rc.d"
chmod 755 "$R/usr/sbin/policy-rc.d"

t0=$(date +%s)
check "apt-get install apache2 memcached" \
    in_root_net sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends apache2 memcached' ||
    bail "no apache2"
diag "apt-get update + install of apache2, memcached took $(( $(date +%s) - t0 )) s"

cp "$DEB" "$R/root/"
debname=$(basename "$DEB")
# the README's apt-get install, in /root where the .deb was copied (its
# ./dist/ is the checkout's), with -y (nobody answers "Do you want to
# continue?")
readme_step install-deb
is "README.md:$RL names the .deb make deb built" "${RC##*/}" "$debname"
as=${RC/.\/dist\//.\/}
readme_run "cd /root && ${as/apt-get install /apt-get install -y }" in_root_net
install_log=$LOGS/$STEP.log
like "its dependencies came from the mirror (libmemcached11 was not installed)" \
    "$(sed -n '/NEW packages/,/upgraded/p' "$install_log" | tr '\n' ' ')" 'libmemcached11'
is "the package is installed" \
    "$(in_root_net dpkg-query -W -f='${Status} ${Version}' libapache2-mod-memsess 2>&1)" \
    "install ok installed $deb_version"
is "its postinst enabled the module (dh_apache2's maintainer script)" \
    "$(readlink "$R/etc/apache2/mods-enabled/memsess.load")" "../mods-available/memsess.load"
in_root_net dpkg -L libapache2-mod-memsess > "$W/package-files" 2>&1

t0=$(date +%s)
check "apt-get install libapache2-mod-php php-fpm php-memcached" \
    in_root_net apt-get install -y -q --no-install-recommends libapache2-mod-php php-fpm php-memcached ||
    bail "no PHP"
diag "apt-get install of PHP took $(( $(date +%s) - t0 )) s"
# from here on the root is an administrator's machine: services may start
rm -f "$R/usr/sbin/policy-rc.d"

# ---- 3. the administrator's work, in the root's own network ---------------

# held by a process of its own (a bind-mounted namespace file is not
# supported everywhere)
unshare --net sleep 86400 &
NS_HOLDER=$!
NS=/proc/$NS_HOLDER/ns/net
wait_for 5 sh -c "[ \"\$(readlink $NS)\" != \"\$(readlink /proc/self/ns/net)\" ]" ||
    bail "no network namespace"
on_net ip link set lo up
started=1

# what systemd does after apt-get install on an administrator's machine
# (policy-rc.d kept the packages' scripts from it here): memcached and
# Apache run
check "service memcached start (Debian's /etc/memcached.conf, 127.0.0.1:11211)" \
    in_root service memcached start
memc_up() { memc version | grep -q '^VERSION'; }
wait_for 10 memc_up && ok "memcached answers" ||
    fail "memcached answers"

check "a2dismod memsess: the administrator turns it off" in_root a2dismod memsess
is "mods-enabled has no memsess.load" "$(ls "$R/etc/apache2/mods-enabled" | grep -c memsess)" 0
check "apache2ctl start (without the module)" in_root apache2ctl start
wait_for 15 apache_up && ok "Apache answers on port 80" || fail "Apache answers on port 80"

# the README's a2enmod: and on again
readme_step a2enmod
readme_run "$RC" in_root
is "mods-enabled/memsess.load points into mods-available" \
    "$(readlink "$R/etc/apache2/mods-enabled/memsess.load")" "../mods-available/memsess.load"
readme_step configtest
readme_run "$RC" in_root
# systemd does not run in the chroot: its reload, as Debian's apache2.service
# does it (ExecReload=/usr/sbin/apachectl graceful)
before_graceful=$(error_log_has "$READY")
readme_step reload
readme_run "apache2ctl graceful" in_root
wait_for 15 log_grew "$READY" "$before_graceful" &&
    ok "the README's reload restarted Apache gracefully (error.log)" ||
    fail "the README's reload restarted Apache gracefully (error.log)" "$R/var/log/apache2/error.log"
wait_for 15 apache_up
status_code() { on_net curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1/memsess-status?auto"; }
is "after it, the running Apache has the module: /memsess-status (memsess.conf's Location) answers" \
    "$(status_code)" 200
readme_all_run

mkdir -p "$R$SITE_ROOT"
cat > "$R$SITE_ROOT/session.php" <<'EOF'
<?php
session_start();
$_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
header('Content-Type: text/plain');
echo "n=", $_SESSION['n'], "\n";
echo "id=", session_id(), "\n";
echo "handler=", session_module_name(), "\n";
echo "path=", session_save_path(), "\n";
echo "sapi=", PHP_SAPI, "\n";
EOF
printf '%s\n' "$SITE" > "$R/etc/apache2/sites-available/shop.conf"
check "a2ensite shop (README.md's site, MemsessServers 127.0.0.1:11211)" in_root a2ensite shop

modules_are "mod_php with prefork: apache2ctl -M lists mpm_prefork, php and memsess" \
    mpm_prefork php memsess
check "apache2ctl -t" in_root apache2ctl -t
# the reload after a change of sites-available (systemctl reload apache2)
before_graceful=$(error_log_has "$READY")
check "apache2ctl graceful: the site is on" in_root apache2ctl graceful
wait_for 15 log_grew "$READY" "$before_graceful" || diag "no graceful restart in error.log"
wait_for 15 apache_up && ok "Apache answers on port 80" || fail "Apache answers on port 80"
wait_for 15 status_up && ok "/memsess-status (memsess.conf's Location): 127.0.0.1:11211 is up" ||
    fail "/memsess-status: 127.0.0.1:11211 is up" "$R/var/log/apache2/error.log"

# pid of the parent, to tell a graceful restart from a full one (the root's
# /var/run is an absolute link to /run: read it from the machine as /run)
PIDFILE=$R/run/apache2/apache2.pid
apache_pid() { cat "$PIDFILE" 2>/dev/null; }
# the parent has exited (apache2ctl stop only signals it)
apache_gone() {
    local pid
    pid=$(apache_pid)
    [ -z "$pid" ] && return 0
    ! [ -d "/proc/$pid" ] || grep -q '^State:.*zombie' "/proc/$pid/status" 2>/dev/null
}

# a session's life through a graceful restart, under the current PHP setup
# session_run LABEL JAR SAPI
session_run() {
    local label=$1 jar=$2 sapi=$3 r1 r2 id
    r1=$(get "$jar" /session.php)
    is "$label: first request, n=1" "$(field n "$r1")" 1
    is "$label: PHP runs as $sapi" "$(field sapi "$r1")" "$sapi"
    is "$label: session.save_handler injected" "$(field handler "$r1")" memcached
    is "$label: session.save_path injected" "$(field path "$r1")" 127.0.0.1:11211
    id=$(field id "$r1")
    r2=$(get "$jar" /session.php)
    is "$label: second request, same session, n=2" "$(field id "$r2") $(field n "$r2")" "$id 2"
    like "$label: the session is in memcached" \
        "$(memc 'lru_crawler metadump all' | tr '\n' ' ')" "key=[^ ]*$id"
    is "$label: and not in PHP's files directory" \
        "$(ls "$R/var/lib/php/sessions" 2>/dev/null | grep -c "$id")" 0

    local pid before_change before_checks before_graceful
    pid=$(apache_pid)
    before_change=$(status_field LastChange)
    before_checks=$(status_field Checks)
    before_graceful=$(error_log_has "$READY")
    check "$label: apache2ctl graceful" in_root apache2ctl graceful
    wait_for 15 log_grew "$READY" "$before_graceful" &&
        ok "$label: the graceful restart happened (error.log)" ||
        fail "$label: the graceful restart happened (error.log)" "$R/var/log/apache2/error.log"
    wait_for 15 apache_up
    like "$label: same parent process ($pid)" "$(apache_pid)" "^${pid:-none}\$"
    is "$label: the server's state was kept (up, LastChange)" \
        "$(status_field State) $(status_field LastChange)" "up $before_change"
    local after_checks
    after_checks=$(status_field Checks)
    [ "${after_checks:-0}" -ge "${before_checks:-1}" ] &&
        ok "$label: its check counter went on ($before_checks -> $after_checks)" ||
        fail "$label: its check counter went on ($before_checks -> $after_checks)"
    local r3
    r3=$(get "$jar" /session.php)
    is "$label: after graceful, the same session, n=3" "$(field id "$r3") $(field n "$r3")" "$id 3"
}

session_run "mod_php, prefork" php.jar apache2handler

# ---- php-fpm through Debian's php8.2-fpm conf, event MPM ------------------

check "switch to php-fpm: a2dismod php8.2 mpm_prefork; a2enmod mpm_event proxy_fcgi setenvif; a2enconf php8.2-fpm" \
    in_root sh -c 'a2dismod php8.2 && a2dismod mpm_prefork && a2enmod mpm_event proxy_fcgi setenvif && a2enconf php8.2-fpm'
check "service php8.2-fpm start" in_root service php8.2-fpm start
wait_for 10 test -S "$R/run/php/php8.2-fpm.sock" && ok "php-fpm listens on /run/php/php8.2-fpm.sock" ||
    fail "php-fpm listens on /run/php/php8.2-fpm.sock"
modules_are "apache2ctl -M lists mpm_event, proxy_fcgi and memsess" \
    mpm_event proxy_fcgi memsess
unlike "and no mod_php" "$(in_root apache2ctl -M 2>&1 | tr '\n' ' ')" 'php_module'
check "apache2ctl -t" in_root apache2ctl -t
# a new MPM needs a full restart (as php8.2-fpm's notice says)
check "apache2ctl stop" in_root apache2ctl stop
wait_for 30 apache_gone && ok "Apache has stopped" || fail "Apache has stopped"
check "apache2ctl start" in_root apache2ctl start
wait_for 15 apache_up && ok "Apache answers on port 80 (event)" || fail "Apache answers on port 80 (event)"
wait_for 15 status_up && ok "/memsess-status: 127.0.0.1:11211 is up" || fail "/memsess-status: 127.0.0.1:11211 is up"

session_run "php-fpm, event" fpm.jar fpm-fcgi

r=$(get php.jar /session.php)
is "the session mod_php started goes on under php-fpm (n=4): it lives in memcached" \
    "$(field n "$r") $(field sapi "$r")" "4 fpm-fcgi"

# ---- the administrator turns it off, then removes it ----------------------

check "a2dismod memsess" in_root a2dismod memsess
check "apache2ctl -t without it" in_root apache2ctl -t
before_graceful=$(error_log_has "$READY")
check "apache2ctl graceful" in_root apache2ctl graceful
wait_for 15 log_grew "$READY" "$before_graceful" || diag "no graceful restart in error.log"
wait_for 15 apache_up
unlike "apache2ctl -M no longer lists memsess" "$(in_root apache2ctl -M 2>&1 | tr '\n' ' ')" memsess_module
# php-fpm keeps ini values a request's PHP_ADMIN_VALUE set in the worker
# that served it, for its later requests: restart it, as after any change
# of the PHP settings
r=$(get off.jar /session.php)
diag "before php-fpm's restart, its workers still had session.save_handler=$(field handler "$r")"
check "service php8.2-fpm restart" in_root service php8.2-fpm restart
wait_for 10 test -S "$R/run/php/php8.2-fpm.sock"
r=$(get off.jar /session.php)
is "without it, PHP is back to its own files handler" "$(field handler "$r")" files

check "apache2ctl stop" in_root apache2ctl stop
wait_for 30 apache_gone && ok "Apache has stopped" || fail "Apache has stopped"
check "service php8.2-fpm stop" in_root service php8.2-fpm stop
check "service memcached stop" in_root service memcached stop
started=0
check "a2dissite shop" in_root a2dissite shop
rm -rf "$R/etc/apache2/sites-available/shop.conf" "$R$SITE_ROOT" "$R/root/$debname"

check "apt-get purge libapache2-mod-memsess" in_root apt-get purge -y -q libapache2-mod-memsess
is "the package is gone from dpkg" \
    "$(in_root dpkg-query -W -f='${Status}' libapache2-mod-memsess 2>/dev/null)" ""
left=$(while read -r f; do [ -f "$R$f" ] || [ -L "$R$f" ] && echo "$f"; done < "$W/package-files")
is "none of its files is left" "$left" ""
left=$(cd "$R" && find etc usr var -xdev -name '*memsess*' 2>/dev/null | sort | tr '\n' ' ')
is "nothing named memsess is left under /etc, /usr, /var (a2dismod's state purged too)" "$left" ""
check "apache2ctl -t after the purge" in_root apache2ctl -t

finish
