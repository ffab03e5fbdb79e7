#!/bin/bash
# The mod_memsess demo: the article's topology on one machine.
#
#   bash tools/demo.sh            set up, build, start everything, print the URL,
#                                 stay in the foreground until Ctrl-C, stop all
#   bash tools/demo.sh drill [N]  simulated users through a frozen memcached N
#                                 (1-3, default 2); starts the demo for the drill
#                                 and stops it afterwards if it was not running
#   bash tools/demo.sh drill restart   the same users through every memcached
#                                 killed at once and started again empty: the
#                                 sessions come back from PostgreSQL
#                                 (MemsessPersist dbd)
#   bash tools/demo.sh stop       stop a demo running in another terminal
#   bash tools/demo.sh status     what is running
#   bash tools/demo.sh freeze N | thaw N    SIGSTOP / SIGCONT memcached N
#   bash tools/demo.sh kill N   | revive N  stop / start memcached N again
#   bash tools/demo.sh restart-all    every memcached killed, started again empty
#   bash tools/demo.sh cut W N  | heal      Apache web W loses memcached N (an
#                                 iptables rule matching web W's user) /
#                                 every cut removed: the other two leave N out
#                                 too (shared verdicts), see their status
#
#          browser / curl / demo/drill.py
#                       |
#            nginx 127.0.0.1:8080 (round robin)
#          /            |             \
#   Apache web1:8081  web2:8082  web3:8083   prefork + mod_php + mod_memsess
#          \            |             /      (each its own checker, verdicts
#                                             shared through the memcached)
#   memcached 11211    11212        11213
#          \            |             /
#   PostgreSQL (a cluster of the demo's own, a unix socket only): the
#   sessions written behind every 2 s by one of the Apaches (MemsessPersist)
#
# Run as root on Debian 12 from the checkout.  Everything lives in a work
# directory (MEMSESS_DEMO_DIR, default /tmp/memsess-demo): configs, logs, pid
# files.  Apart from installing packages and creating the system users
# memsess-demo-web1..3 (each Apache runs as its own, so that `cut` can tell
# their connections apart), nothing under /etc is changed and no system
# service is started; `stop` removes every iptables rule `cut` added.
#
# Environment:
#   MEMSESS_DEMO_DIR        work directory (default /tmp/memsess-demo)
#   MEMSESS_DEMO_PORT_BASE  nginx port; the Apaches take the next three
#                           (default 8080: 8080, 8081-8083)
#   MEMSESS_DEMO_MEMC_BASE  first memcached port (default 11211: 11211-11213)
#   MEMSESS_DEMO_SKIP_SETUP=1   do not run tools/setup.sh (packages present)
#   MEMSESS_DEMO_REPLICAS   MemsessReplicas of the three Apaches (default 1)
#   MEMSESS_DEMO_FAILOVER   MemsessFailover: successor (default) or drop
#   MEMSESS_DEMO_REJOIN     MemsessRejoin: sync (default), flush or keep
#   MEMSESS_DEMO_PERSIST    pgsql (default: MemsessPersist dbd, a PostgreSQL
#                           cluster in the work directory, run as postgres)
#                           or off
#   MEMSESS_DRILL_USERS (20), MEMSESS_DRILL_THINK_MS (100): the drill's users
set -euo pipefail

cd "$(dirname "$0")/.."
TOP=$(pwd)
PROG="bash tools/demo.sh"
DIR=${MEMSESS_DEMO_DIR:-/tmp/memsess-demo}
RUN=$DIR/run
NAMES=(web1 web2 web3)
NMEMC=3

say()  { printf 'demo: %s\n' "$*"; }
warn() { printf 'demo: %s\n' "$*" >&2; }
die()  { printf 'demo.sh: %s\n' "$*" >&2; exit 1; }

# Ports: from the running demo's state file when there is one (so that
# `stop`, `drill`, `freeze` find it whatever this shell's environment says),
# else from the environment.
load_ports() {
    PORT_BASE=${MEMSESS_DEMO_PORT_BASE:-8080}
    MEMC_BASE=${MEMSESS_DEMO_MEMC_BASE:-11211}
    if [ -r "$RUN/ports" ]; then
        # shellcheck disable=SC1091
        . "$RUN/ports"
    fi
    case "$PORT_BASE$MEMC_BASE" in *[!0-9]*) die "port bases must be numbers";; esac
    NGINX_PORT=$PORT_BASE
    WEB_PORTS=("$((PORT_BASE + 1))" "$((PORT_BASE + 2))" "$((PORT_BASE + 3))")
    MEMC_PORTS=("$MEMC_BASE" "$((MEMC_BASE + 1))" "$((MEMC_BASE + 2))")
    PG_PORT=$((MEMC_BASE + 3))   # its socket's name only: no TCP port
    local p
    for p in "$NGINX_PORT" "${WEB_PORTS[@]}" "${MEMC_PORTS[@]}"; do
        if [ "$p" -lt 1 ] || [ "$p" -gt 65535 ]; then die "port $p out of range"; fi
    done
}

# ---------------------------------------------------------------- processes

# alive PIDFILE NAME: the process in PIDFILE runs and is NAME (not a recycled pid)
alive() {
    local pid
    [ -r "$1" ] || return 1
    pid=$(cat "$1" 2>/dev/null) || return 1
    case "$pid" in ''|*[!0-9]*) return 1;; esac
    kill -0 "$pid" 2>/dev/null || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

pid_of() { cat "$1" 2>/dev/null || true; }

# stop_pid PIDFILE NAME SIGNAL: signal the process, wait up to 15 s, then KILL
stop_pid() {
    local f=$1 name=$2 sig=$3 pid i
    if ! alive "$f" "$name"; then
        rm -f "$f"
        return 0
    fi
    pid=$(pid_of "$f")
    kill -CONT "$pid" 2>/dev/null || true     # a frozen memcached cannot exit
    kill "-$sig" "$pid" 2>/dev/null || true
    for i in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || break
        # a zombie child of ours counts as gone
        [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
        warn "$name (pid $pid) did not stop in 15 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    rm -f "$f"
}

memc_pidfile()  { echo "$RUN/memcached$1.pid"; }
pg_pidfile()    { echo "$DIR/pg/data/postmaster.pid"; }   # its first line
httpd_pidfile() { echo "$DIR/${NAMES[$1]}/run/httpd.pid"; }
nginx_pidfile() { echo "$RUN/nginx.pid"; }

any_running() {
    local i
    alive "$(nginx_pidfile)" nginx && return 0
    for i in 0 1 2; do
        alive "$(httpd_pidfile "$i")" apache2 && return 0
        alive "$(memc_pidfile $((i + 1)))" memcached && return 0
    done
    pg_running && return 0
    return 1
}

all_running() {
    local i
    alive "$(nginx_pidfile)" nginx || return 1
    for i in 0 1 2; do
        alive "$(httpd_pidfile "$i")" apache2 || return 1
    done
    return 0
}

stop_all() {
    set +e
    local i stopped=0
    if alive "$(nginx_pidfile)" nginx; then
        say "stopping nginx (pid $(pid_of "$(nginx_pidfile)"))"
        stop_pid "$(nginx_pidfile)" nginx TERM; stopped=1
    fi
    for i in 0 1 2; do
        if alive "$(httpd_pidfile "$i")" apache2; then
            say "stopping Apache ${NAMES[$i]} (pid $(pid_of "$(httpd_pidfile "$i")"))"
            stop_pid "$(httpd_pidfile "$i")" apache2 TERM; stopped=1
        fi
    done
    for i in 1 2 3; do
        if alive "$(memc_pidfile "$i")" memcached; then
            say "stopping memcached $i (pid $(pid_of "$(memc_pidfile "$i")"))"
            stop_pid "$(memc_pidfile "$i")" memcached TERM; stopped=1
        fi
        rm -f "$(memc_pidfile "$i")"
    done
    if pg_running; then
        say "stopping PostgreSQL (pid $(head -1 "$(pg_pidfile)"))"
        pg_ctl stop -m fast >/dev/null; stopped=1
    fi
    rm -f "$RUN/ports"
    remove_cuts
    [ "$stopped" = 1 ] && say "everything stopped"
    set -e
    return 0
}

# ------------------------------------------------------------- PostgreSQL

persist_on() { [ "${MEMSESS_DEMO_PERSIST:-pgsql}" = pgsql ]; }

pg_bin() {   # the newest PostgreSQL's binaries
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -x "$d/pg_ctl" ] || die "PostgreSQL missing: run bash tools/setup.sh (or MEMSESS_DEMO_PERSIST=off)"
    echo "$d"
}

# pg_ctl ARGS...: as postgres, on the demo's cluster
pg_ctl() {
    runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$DIR/pg/data" "$@"
}

pg_running() {
    local pid
    [ -r "$(pg_pidfile)" ] || return 1
    pid=$(head -1 "$(pg_pidfile)" 2>/dev/null)
    case "$pid" in ''|*[!0-9]*) return 1;; esac
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ]
}

# A cluster of the demo's own, listening on a unix socket in $DIR/pg only
# (no TCP port): the role memsess, trusted on that socket.
start_pg() {
    id -u postgres >/dev/null 2>&1 || die "no postgres user: run bash tools/setup.sh"
    install -d -m 755 -o postgres -g postgres "$DIR/pg"
    if [ ! -s "$DIR/pg/data/PG_VERSION" ]; then
        rm -rf "$DIR/pg/data"
        runuser -u postgres -- "$(pg_bin)/initdb" -D "$DIR/pg/data" -U memsess \
            --auth=trust -E UTF8 >"$DIR/logs/postgresql-initdb.log" 2>&1 \
            || { cat "$DIR/logs/postgresql-initdb.log" >&2; die "initdb failed"; }
    fi
    touch "$DIR/logs/postgresql.log"
    chown postgres "$DIR/logs/postgresql.log"
    pg_ctl -l "$DIR/logs/postgresql.log" -w -t 30 \
        -o "-p $PG_PORT -k $DIR/pg -c listen_addresses=''" start >/dev/null \
        || die "PostgreSQL did not start (see $DIR/logs/postgresql.log)"
}

# ------------------------------------------------------------------- checks

need_root() {
    [ "$(id -u)" -eq 0 ] || die "run it as root (it installs packages and starts servers as www-data / memcache)"
}

# port_busy PORT: something accepts connections there (or listens on it)
port_busy() {
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        return 0
    fi
    if command -v ss >/dev/null 2>&1 && [ -n "$(ss -ltnH "sport = :$1" 2>/dev/null)" ]; then
        return 0
    fi
    return 1
}

check_ports() {
    local p bad=0 who
    for p in "$NGINX_PORT" "${WEB_PORTS[@]}" "${MEMC_PORTS[@]}"; do
        if port_busy "$p"; then
            who=$(ss -ltnpH "sport = :$p" 2>/dev/null | grep -o 'users:(([^)]*' | head -1 | sed 's/users:((//')
            warn "port $p is already in use${who:+ by $who}"
            bad=1
        fi
    done
    if [ "$bad" = 1 ]; then
        cat >&2 <<EOF
demo.sh: the demo needs 127.0.0.1 ports $NGINX_PORT (nginx), ${WEB_PORTS[*]} (Apache)
         and ${MEMC_PORTS[*]} (memcached).  Stop what holds them (a Debian
         memcached service: systemctl stop memcached), or move the demo, e.g.
           MEMSESS_DEMO_PORT_BASE=9080 MEMSESS_DEMO_MEMC_BASE=21211 $PROG
EOF
        exit 1
    fi
}

# --------------------------------------------------------------- setup/build

setup_and_build() {
    need_root
    if [ "${MEMSESS_DEMO_SKIP_SETUP:-0}" != 1 ]; then
        say "setup: bash tools/setup.sh"
        bash tools/setup.sh
    fi
    say "build: make -f Makefile.apxs"
    make -f Makefile.apxs >"$DIR.build.log" 2>&1 || { cat "$DIR.build.log" >&2; die "build failed"; }
    rm -f "$DIR.build.log"
    [ -f "$TOP/.libs/mod_memsess.so" ] || die "build produced no .libs/mod_memsess.so"
    local b
    for b in /usr/sbin/apache2 /usr/sbin/nginx /usr/bin/memcached; do
        [ -x "$b" ] || die "$b missing: run bash tools/setup.sh"
    done
    python_bin >/dev/null || die "python3 missing: apt-get install python3"
}

# Debian's python3 first (stdlib only), else whatever python3 is on PATH.
python_bin() {
    if [ -x /usr/bin/python3 ]; then echo /usr/bin/python3; else command -v python3; fi
}

# ------------------------------------------------------------------ configs

run_user() {   # user the servers run as
    if id -u "$1" >/dev/null 2>&1; then echo "$1"; else echo nobody; fi
}

web_user() {   # the user Apache web N (1-3) runs as, created if missing
    local u=memsess-demo-web$1
    id -u "$u" >/dev/null 2>&1 ||
        useradd --system --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin --gid "$WEB_GROUP" "$u"
    echo "$u"
}

# Persistence: every Apache points at the one PostgreSQL; one of them
# writes (a lease in memcached), every 2 s.  The three name the site alike
# (ServerName memsess-demo:80, whatever port each listens on): its sessions
# are one site's in the database, written by one and restored for all.
persist_conf() {
    if ! persist_on; then
        echo "MemsessPersist off"
        return
    fi
    cat <<EOF

# Sessions written behind to PostgreSQL (mod_dbd), restored when every copy
# in memcached is gone: bash tools/demo.sh drill restart
LoadModule dbd_module /usr/lib/apache2/modules/mod_dbd.so
DBDriver pgsql
DBDParams "host=$DIR/pg port=$PG_PORT user=memsess dbname=postgres"
MemsessPersist dbd
MemsessPersistInterval 2s
EOF
}

write_configs() {
    local i name port root php memc_list="" users user
    WEB_USER=$(run_user www-data)
    WEB_GROUP=$(id -gn "$WEB_USER")
    MEMC_USER=$(run_user memcache)
    php=$(find /usr/lib/apache2/modules -name 'libphp*.so' 2>/dev/null | sort | head -1)
    [ -n "$php" ] || die "mod_php (libapache2-mod-php) is not installed"
    for port in "${MEMC_PORTS[@]}"; do memc_list="$memc_list 127.0.0.1:$port"; done
    memc_list=${memc_list# }

    mkdir -p "$DIR" "$RUN" "$DIR/logs" "$DIR/htdocs"
    chmod 755 "$DIR" "$DIR/htdocs"
    rm -f "$DIR"/htdocs/*.php
    install -m 644 "$TOP"/demo/app/*.php "$DIR/htdocs/"
    printf 'PORT_BASE=%s\nMEMC_BASE=%s\n' "$PORT_BASE" "$MEMC_BASE" > "$RUN/ports"

    for i in 0 1 2; do
        name=${NAMES[$i]}
        port=${WEB_PORTS[$i]}
        user=$(web_user $((i + 1)))
        root=$DIR/$name
        mkdir -p "$root/conf" "$root/logs" "$root/run"
        touch "$root/logs/php.log"
        chown "$user" "$root/logs/php.log"    # PHP writes it from the children
        bash "$TOP/tools/httpd-conf.sh" \
            --comment "Apache $name of the mod_memsess demo (written by tools/demo.sh)." \
            --root "$root" --name "memsess-demo:80" --listen "127.0.0.1:$port" \
            --pidfile "$root/run/httpd.pid" --runtime-dir "$root/run" \
            --errorlog "$root/logs/error.log" --user "$user" --group "$WEB_GROUP" \
            --module authz_host --module mime --module dir --module env --php \
            --memsess "$TOP/.libs/mod_memsess.so" --status-require local \
            --docroot "$DIR/htdocs" > "$root/conf/httpd.conf" <<EOF
# mod_watchdog is built into Debian's apache2.

StartServers          8
MinSpareServers       5
MaxSpareServers      20
MaxRequestWorkers    60
KeepAlive On

LogFormat "%h %t \"%r\" %>s %b %Dus \"%{MEMSESS_LIVE}e\"" demo
CustomLog logs/access.log demo
TypesConfig /etc/mime.types

DirectoryIndex index.php
<Directory />
    AllowOverride None
    Require all denied
</Directory>
php_admin_flag display_errors off
php_admin_flag log_errors on
php_admin_value error_log "$root/logs/php.log"

# What the page shows about where it runs.
SetEnv DEMO_INSTANCE $name
SetEnv DEMO_PORT $port
SetEnv DEMO_MEMCACHED "$memc_list"
SetEnv DEMO_INSTANCES "${NAMES[*]}"

# mod_memsess: the session pool, checked every 200 ms (the defaults).  Only
# the live servers reach PHP's session.save_path; no php_admin_value for
# sessions here.
MemsessServers $memc_list
# Each Apache a name of its own in the group (they share ServerName
# memsess-demo:80, which the default name would be made of).
MemsessInstance $name
MemsessReplicas ${MEMSESS_DEMO_REPLICAS:-1}
MemsessFailover ${MEMSESS_DEMO_FAILOVER:-successor}
MemsessRejoin ${MEMSESS_DEMO_REJOIN:-sync}
MemsessCheckInterval 200ms
MemsessCheckTimeout 100ms
MemsessFailThreshold 2
MemsessPassThreshold 2
$(persist_conf)
EOF
    done

    mkdir -p "$DIR/nginx/tmp"
    chown "$WEB_USER" "$DIR/nginx/tmp"
    users=""
    for port in "${WEB_PORTS[@]}"; do users="$users        server 127.0.0.1:$port;
"; done
    {
        cat <<EOF
# nginx of the mod_memsess demo (written by tools/demo.sh): round robin
# over the three Apaches, as in the article.
user $WEB_USER $WEB_GROUP;
worker_processes 1;
pid $RUN/nginx.pid;
error_log $DIR/logs/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log $DIR/logs/nginx-access.log;
    client_body_temp_path $DIR/nginx/tmp/client;
    proxy_temp_path $DIR/nginx/tmp/proxy;
    fastcgi_temp_path $DIR/nginx/tmp/fastcgi;
    uwsgi_temp_path $DIR/nginx/tmp/uwsgi;
    scgi_temp_path $DIR/nginx/tmp/scgi;
    upstream apaches {
$users    }
    proxy_set_header Host \$http_host;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_read_timeout 30s;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://apaches;
        }
EOF
        for i in 0 1 2; do
            cat <<EOF
        # ${NAMES[$i]}'s health checker, as seen by that Apache
        location = /status/${NAMES[$i]} {
            proxy_pass http://127.0.0.1:${WEB_PORTS[$i]}/memsess-status;
        }
EOF
        done
        printf '    }\n}\n'
    } > "$DIR/nginx/nginx.conf"
}

# ------------------------------------------------------------------ start

start_memcached() {   # N (1-3)
    local n=$1 port=${MEMC_PORTS[$(($1 - 1))]} f
    f=$(memc_pidfile "$n")
    alive "$f" memcached && return 0
    setsid /usr/bin/memcached -u "$MEMC_USER" -l 127.0.0.1 -p "$port" -U 0 -m 64 -c 1024 \
        </dev/null >>"$DIR/logs/memcached$n.log" 2>&1 &
    echo $! > "$f"
}

wait_port() {   # PORT WHAT SECONDS
    local i
    for i in $(seq $(($3 * 10))); do
        port_busy "$1" && return 0
        sleep 0.1
    done
    die "$2 did not open port $1 in $3 s (see $DIR/logs)"
}

start_apache() {   # index 0-2
    local i=$1 root=$DIR/${NAMES[$1]}
    /usr/sbin/apache2 -d "$root" -f "$root/conf/httpd.conf" -t >/dev/null 2>"$root/logs/configtest.log" \
        || { cat "$root/logs/configtest.log" >&2; die "Apache ${NAMES[$i]}: bad configuration ($root/conf/httpd.conf)"; }
    /usr/sbin/apache2 -d "$root" -f "$root/conf/httpd.conf" -k start \
        || die "Apache ${NAMES[$i]} did not start (see $root/logs/error.log)"
}

start_nginx() {
    /usr/sbin/nginx -p "$DIR/nginx" -e "$DIR/logs/nginx-error.log" -c "$DIR/nginx/nginx.conf" -t >/dev/null 2>"$DIR/logs/nginx-configtest.log" \
        || { cat "$DIR/logs/nginx-configtest.log" >&2; die "nginx: bad configuration ($DIR/nginx/nginx.conf)"; }
    /usr/sbin/nginx -p "$DIR/nginx" -e "$DIR/logs/nginx-error.log" -c "$DIR/nginx/nginx.conf" || die "nginx did not start (see $DIR/logs/nginx-error.log)"
}

# http_get PORT PATH: the response (headers and body), or nothing
http_get() {
    timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n" "$2" "$1" >&3
        cat <&3' _ "$1" "$2" 2>/dev/null || true
}

# Waits until each Apache's checker has seen every memcached up.
wait_checkers() {
    local i ups
    for i in 0 1 2; do
        for _ in $(seq 50); do
            ups=$(http_get "${WEB_PORTS[$i]}" "/memsess-status?json" | grep -o '"state": *"up"' | wc -l)
            [ "$ups" -ge "$NMEMC" ] && break
            sleep 0.1
        done
        [ "$ups" -ge "$NMEMC" ] || die "Apache ${NAMES[$i]}: its checker does not see the three memcached up (see $DIR/${NAMES[$i]}/logs/error.log)"
    done
}

start_all() {
    local i
    load_ports
    if any_running; then
        if alive "$RUN/demo.pid" bash; then
            die "a demo is already running (pid $(pid_of "$RUN/demo.pid")): $PROG stop"
        fi
        say "processes left over from an earlier demo: stopping them"
        stop_all
    fi
    load_ports
    check_ports
    write_configs
    say "starting 3 memcached on 127.0.0.1:${MEMC_PORTS[0]}-${MEMC_PORTS[2]} (user $MEMC_USER)"
    STARTED=1
    for i in 1 2 3; do start_memcached "$i"; done
    for i in 0 1 2; do wait_port "${MEMC_PORTS[$i]}" "memcached $((i + 1))" 5; done
    if persist_on; then
        say "starting PostgreSQL (user postgres, socket in $DIR/pg, its data in $DIR/pg/data)"
        start_pg
    fi
    say "starting 3 Apache (prefork, mod_php, mod_memsess) on 127.0.0.1:${WEB_PORTS[0]}-${WEB_PORTS[2]}"
    for i in 0 1 2; do start_apache "$i"; done
    for i in 0 1 2; do wait_port "${WEB_PORTS[$i]}" "Apache ${NAMES[$i]}" 10; done
    say "starting nginx on 127.0.0.1:$NGINX_PORT"
    start_nginx
    wait_port "$NGINX_PORT" nginx 5
    wait_checkers
    http_get "$NGINX_PORT" / | grep -q 'mod_memsess demo' \
        || die "the page through nginx does not answer (see $DIR/logs, $DIR/web*/logs)"
}

# --------------------------------------------------------------- foreground

banner() {
    local u="http://127.0.0.1:$NGINX_PORT/"
    cat <<EOF

  ================================================================
   mod_memsess demo is running:   $u
  ================================================================
   nginx 127.0.0.1:$NGINX_PORT  round robin over
     Apache web1 :${WEB_PORTS[0]}   web2 :${WEB_PORTS[1]}   web3 :${WEB_PORTS[2]}   (prefork + mod_php + mod_memsess)
   sessions in memcached 127.0.0.1:${MEMC_PORTS[0]} :${MEMC_PORTS[1]} :${MEMC_PORTS[2]}   (MemsessReplicas ${MEMSESS_DEMO_REPLICAS:-1}, MemsessFailover ${MEMSESS_DEMO_FAILOVER:-successor}, MemsessRejoin ${MEMSESS_DEMO_REJOIN:-sync})

   Try:
   1. Open $u, log in, reload: the counter goes on
      while web1, web2, web3 take turns.  Or with curl:
        curl -s -c /tmp/jar -d user=alice '${u}login.php?text'
        for i in 1 2 3 4 5 6; do curl -s -b /tmp/jar '${u}?text'; done
   2. Hang one memcached (it still accepts TCP, never answers):
        $PROG freeze 2        ... and later: $PROG thaw 2
      Within about a second every Apache leaves it out: pages are fast again.
      (kill 2 / revive 2 for a server that is gone instead of hung)
   3. Watch the checkers: ${u}status/web1  (?json ?auto ?metrics)
   4. The whole story in 40 s, with 20 simulated users and a live table:
        $PROG drill
   5. Every memcached lost at once (a power cut): the sessions come back
      from PostgreSQL, at most 2 s behind (MemsessPersistInterval):
        $PROG drill restart      (or by hand: $PROG restart-all)

   Logs: $DIR/logs, $DIR/web*/logs     Stop: Ctrl-C (or $PROG stop)
  ================================================================

EOF
}

# Prints the checkers' state changes (MEMSESS0010/0011/...) as they happen,
# and notices a server process that died.
follow() {
    local i f size off=() last_warn=""
    for i in 0 1 2; do
        f=$DIR/${NAMES[$i]}/logs/error.log
        off[$i]=$(stat -c %s "$f" 2>/dev/null || echo 0)
    done
    while :; do
        for i in 0 1 2; do
            f=$DIR/${NAMES[$i]}/logs/error.log
            size=$(stat -c %s "$f" 2>/dev/null || echo 0)
            if [ "$size" -gt "${off[$i]}" ]; then
                tail -c "+$((off[$i] + 1))" "$f" | head -c "$((size - off[$i]))" \
                    | grep -o 'MEMSESS00[0-9]*: .*' \
                    | while IFS= read -r line; do
                        printf '%s  %s  %s\n' "$(date +%T)" "${NAMES[$i]}" "$line"
                      done || true
                off[$i]=$size
            elif [ "$size" -lt "${off[$i]}" ]; then
                off[$i]=$size
            fi
        done
        if ! all_running; then
            local msg="nginx or an Apache stopped; $PROG status"
            [ "$msg" != "$last_warn" ] && warn "$msg"
            last_warn=$msg
        fi
        sleep 0.5 &
        wait $! || true
    done
}

on_signal() {
    trap - INT TERM
    echo
    say "stopping"
    stop_all
    rm -f "$RUN/demo.pid"
    exit 0
}

cmd_run() {
    need_root
    mkdir -p "$DIR" "$RUN"
    load_ports
    if alive "$RUN/demo.pid" bash; then
        die "a demo is already running (pid $(pid_of "$RUN/demo.pid")): $PROG stop"
    fi
    STARTED=0
    trap 'set +e; if [ "$STARTED" = 1 ]; then stop_all; fi; rm -f "$RUN/demo.pid"' EXIT
    trap on_signal INT TERM
    echo $$ > "$RUN/demo.pid"
    any_running || check_ports      # fail fast, before installing anything
    setup_and_build
    start_all
    banner
    say "state changes of the memcached servers, as the Apaches see them, appear below"
    follow
}

# ------------------------------------------------------------ other commands

cmd_stop() {
    local pid i
    load_ports
    local asked=0
    if alive "$RUN/demo.pid" bash; then
        pid=$(pid_of "$RUN/demo.pid")
        say "asking the demo (pid $pid) to stop"
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 300); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        asked=1
    fi
    if alive "$RUN/drill.pid" bash; then
        pid=$(pid_of "$RUN/drill.pid")
        say "stopping the drill (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 300); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    if any_running; then
        stop_all
    elif [ "$asked" = 1 ]; then
        say "the demo stopped"
    else
        say "no demo running (work dir $DIR)"
    fi
    rm -f "$RUN/demo.pid" "$RUN/drill.pid"
}

cmd_status() {
    local i f
    load_ports
    printf '%-10s %-8s %-6s %s\n' what port pid state
    f=$(nginx_pidfile)
    printf '%-10s %-8s %-6s %s\n' nginx "$NGINX_PORT" "$(pid_of "$f")" "$(alive "$f" nginx && echo running || echo stopped)"
    for i in 0 1 2; do
        f=$(httpd_pidfile "$i")
        printf '%-10s %-8s %-6s %s\n' "${NAMES[$i]}" "${WEB_PORTS[$i]}" "$(pid_of "$f")" \
            "$(alive "$f" apache2 && echo running || echo stopped)"
    done
    for i in 1 2 3; do
        f=$(memc_pidfile "$i")
        printf '%-10s %-8s %-6s %s\n' "memcached$i" "${MEMC_PORTS[$((i - 1))]}" "$(pid_of "$f")" \
            "$(if alive "$f" memcached; then
                   [ "$(awk '{print $3}' "/proc/$(pid_of "$f")/stat")" = T ] && echo frozen || echo running
               else echo stopped; fi)"
    done
    if persist_on; then
        printf '%-10s %-8s %-6s %s\n' postgresql "socket" "$(head -1 "$(pg_pidfile)" 2>/dev/null)" \
            "$(pg_running && echo running || echo stopped)"
    fi
    if alive "$(httpd_pidfile 0)" apache2; then
        echo
        echo "web1's checker (http://127.0.0.1:${WEB_PORTS[0]}/memsess-status?auto):"
        http_get "${WEB_PORTS[0]}" "/memsess-status?auto" | grep -E 'Address|State|ReportedBy' | sed 's/^/  /'
    fi
}

memc_arg() {   # validates N
    case "${1:-}" in 1|2|3) ;; *) die "which memcached? 1, 2 or 3";; esac
}

cmd_memc() {   # freeze|thaw|kill|revive N
    local what=$1 n=${2:-} f pid
    need_root
    memc_arg "$n"
    load_ports
    all_running || die "no demo running: start it with $PROG"
    f=$(memc_pidfile "$n")
    pid=$(pid_of "$f")
    case "$what" in
        freeze)
            alive "$f" memcached || die "memcached $n is not running ($PROG revive $n)"
            kill -STOP "$pid"
            say "memcached $n (127.0.0.1:${MEMC_PORTS[$((n - 1))]}, pid $pid) frozen: it accepts connections and never answers.  $PROG thaw $n";;
        thaw)
            alive "$f" memcached || die "memcached $n is not running ($PROG revive $n)"
            kill -CONT "$pid"
            say "memcached $n (127.0.0.1:${MEMC_PORTS[$((n - 1))]}, pid $pid) thawed";;
        kill)
            alive "$f" memcached || die "memcached $n is not running"
            stop_pid "$f" memcached TERM
            say "memcached $n (127.0.0.1:${MEMC_PORTS[$((n - 1))]}) stopped: connections are refused.  $PROG revive $n";;
        revive)
            alive "$f" memcached && die "memcached $n is running"
            MEMC_USER=$(run_user memcache)
            start_memcached "$n"
            wait_port "${MEMC_PORTS[$((n - 1))]}" "memcached $n" 5
            say "memcached $n (127.0.0.1:${MEMC_PORTS[$((n - 1))]}, pid $(pid_of "$f")) started again, empty";;
    esac
}

# Every memcached killed (SIGKILL: as a power cut would) and started again
# empty after PAUSE seconds: every copy of every session is gone.
cmd_restart_all() {
    local pause=${1:-2} i f
    need_root
    load_ports
    all_running || die "no demo running: start it with $PROG"
    case "$pause" in ''|*[!0-9.]*) die "restart-all [SECONDS]: a number";; esac
    for i in 1 2 3; do
        f=$(memc_pidfile "$i")
        if alive "$f" memcached; then
            kill -CONT "$(pid_of "$f")" 2>/dev/null || true
            kill -KILL "$(pid_of "$f")" 2>/dev/null || true
        fi
    done
    for i in 1 2 3; do
        f=$(memc_pidfile "$i")
        for _ in $(seq 50); do alive "$f" memcached || break; sleep 0.1; done
        rm -f "$f"
    done
    say "every memcached killed: no copy of any session is left"
    sleep "$pause"
    MEMC_USER=$(run_user memcache)
    for i in 1 2 3; do start_memcached "$i"; done
    for i in 0 1 2; do wait_port "${MEMC_PORTS[$i]}" "memcached $((i + 1))" 5; done
    say "every memcached started again, empty$(persist_on && echo ": the sessions come back from PostgreSQL before each is used")"
}

# ----------------------------------------------------- cut: one Apache alone

CUT_TAG=memsess-demo

remove_cuts() {   # every rule `cut` added
    local line
    command -v iptables >/dev/null 2>&1 || return 0
    while read -r line; do
        # shellcheck disable=SC2086
        [ -n "$line" ] && iptables ${line/-A/-D}
    done < <(iptables -S OUTPUT 2>/dev/null | grep -- "--comment $CUT_TAG" || true)
}

cmd_cut() {   # cut W N: Apache web W can no longer reach memcached N
    local w=${1:-} n=${2:-} user port
    need_root
    case "$w" in 1|2|3) ;; *) die "which Apache? cut W N, W and N in 1-3";; esac
    memc_arg "$n"
    load_ports
    all_running || die "no demo running: start it with $PROG"
    command -v iptables >/dev/null 2>&1 || die "iptables missing: apt-get install iptables"
    user=memsess-demo-web$w
    port=${MEMC_PORTS[$((n - 1))]}
    iptables -A OUTPUT -o lo -p tcp -d 127.0.0.1 --dport "$port" \
        -m owner --uid-owner "$user" -m comment --comment "$CUT_TAG" \
        -j REJECT --reject-with tcp-reset
    say "web$w (user $user) can no longer reach memcached $n (127.0.0.1:$port); the others still can."
    say "in a second or two every Apache leaves it out: curl -s http://127.0.0.1:${WEB_PORTS[1]}/memsess-status?auto | grep -E 'State|ReportedBy'"
    say "undo with: $PROG heal"
}

cmd_heal() {
    need_root
    remove_cuts
    say "every cut removed: each Apache takes the memcached back once it answers again"
}

cmd_drill() {
    local n=${1:-2} rc=0 fault
    if [ "$n" = restart ]; then
        persist_on || die "drill restart needs persistence (MEMSESS_DEMO_PERSIST=pgsql, the default)"
    else
        memc_arg "$n"
    fi
    need_root
    mkdir -p "$DIR" "$RUN"
    load_ports
    if alive "$RUN/drill.pid" bash; then
        die "a drill is already running (pid $(pid_of "$RUN/drill.pid"))"
    fi
    STARTED=0
    trap drill_cleanup EXIT
    trap 'exit 130' INT TERM
    if ! all_running; then
        say "no demo running: starting one for the drill (stopped afterwards)"
        echo $$ > "$RUN/drill.pid"
        any_running || check_ports
        setup_and_build
        start_all
    else
        echo $$ > "$RUN/drill.pid"
        python_bin >/dev/null || die "python3 missing: apt-get install python3"
    fi
    if [ "$n" = restart ]; then
        fault=(--restart-cmd "bash $TOP/tools/demo.sh restart-all 2")
    else
        alive "$(memc_pidfile "$n")" memcached || die "memcached $n is not running ($PROG revive $n)"
        fault=(--freeze "$n" --freeze-pid "$(pid_of "$(memc_pidfile "$n")")")
    fi
    "$(python_bin)" "$TOP/demo/drill.py" \
        --url "http://127.0.0.1:$NGINX_PORT/" \
        --status "http://127.0.0.1:${WEB_PORTS[0]}/memsess-status?json" \
        --memcached "127.0.0.1:${MEMC_PORTS[0]},127.0.0.1:${MEMC_PORTS[1]},127.0.0.1:${MEMC_PORTS[2]}" \
        "${fault[@]}" \
        --users "${MEMSESS_DRILL_USERS:-20}" --think-ms "${MEMSESS_DRILL_THINK_MS:-100}" &
    DRILL_PY=$!
    wait "$DRILL_PY" || rc=$?
    DRILL_PY=
    return "$rc"
}

# On the drill's way out, however it ends: no memcached left frozen, and the
# demo stopped if the drill started it.
drill_cleanup() {
    local i
    set +e
    if [ -n "${DRILL_PY:-}" ] && kill -0 "$DRILL_PY" 2>/dev/null; then
        kill -TERM "$DRILL_PY" 2>/dev/null
        wait "$DRILL_PY" 2>/dev/null
    fi
    for i in 1 2 3; do
        if alive "$(memc_pidfile "$i")" memcached; then
            kill -CONT "$(pid_of "$(memc_pidfile "$i")")" 2>/dev/null
        fi
    done
    if [ "$STARTED" = 1 ]; then
        say "stopping the demo the drill started"
        stop_all
    fi
    rm -f "$RUN/drill.pid"
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

case "${1:-run}" in
    run|start)  cmd_run ;;
    stop)       cmd_stop ;;
    status)     cmd_status ;;
    drill)      cmd_drill "${2:-2}" ;;
    freeze|thaw|kill|revive) cmd_memc "$1" "${2:-}" ;;
    restart-all) cmd_restart_all "${2:-2}" ;;
    cut)        cmd_cut "${2:-}" "${3:-}" ;;
    heal)       cmd_heal ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
esac
