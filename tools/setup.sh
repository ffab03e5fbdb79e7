#!/bin/bash
# Install everything mod_memsess needs to build, test and benchmark on Debian 12.
#
#   bash tools/setup.sh              every package below
#   bash tools/setup.sh PACKAGE...   only these (bench/lib/common.sh)
#
# The one place that installs packages: the tests, the demo and the benchmarks
# all come here.  Idempotent: when every package is already installed it does
# nothing (fast reruns), otherwise it runs `apt-get update` once and installs
# what is missing.  Run as root. Services are never started: a policy-rc.d
# keeps the packages' postinst scripts from starting apache2, memcached,
# php-fpm or nginx; the tests, the demo and the benchmarks start their own
# processes on loopback ports.
set -euo pipefail

PACKAGES=(
    # build
    make gcc clang libclang-rt-14-dev valgrind
    apache2 apache2-dev apache2-utils
    libmemcached-dev
    # runtime under test
    memcached
    libapache2-mod-php php-cli php-fpm php-memcached php-memcache
    # SASL memcached (memcached -S) for MemsessCredentials: saslpasswd2, and
    # the PLAIN mechanism and sasldb for both ends
    sasl2-bin libsasl2-modules libsasl2-modules-db
    # Apache::Test (shipped with mod_perl in Debian 12) and its client side
    libapache2-mod-perl2 libjson-pp-perl libwww-perl
    # test driver helpers (iptables, sudo: t/50_peers.t)
    rsync procps iproute2 iptables sudo
    # the Debian package (make deb) and its scenario in a throwaway root
    dpkg-dev debhelper fakeroot lintian debootstrap
    # benchmarks
    wrk nutcracker gnuplot-nox
    # a saturated machine (t/23_starved.t, bench/starved.sh)
    stress-ng
    # one instance's clock set apart (t/53_clocks.t, the soak's clock step)
    faketime
    # MemsessPersist dbd: mod_dbd's drivers, SQLite's shell, and a
    # PostgreSQL server that t/70_persist.t starts as the test user
    libaprutil1-dbd-sqlite3 libaprutil1-dbd-pgsql sqlite3 postgresql
    # the demo: the load balancer, its simulated users, the printed examples
    nginx python3 curl
)

if [ $# -gt 0 ]; then
    PACKAGES=("$@")
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: must run as root (apt-get)" >&2
    exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = "installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "setup.sh: all ${#PACKAGES[@]} packages already installed"
    exit 0
fi

echo "setup.sh: installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive

policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    own_policy=1
fi
cleanup() { [ "$own_policy" -eq 1 ] && rm -f "$policy"; return 0; }
trap cleanup EXIT

apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
echo "setup.sh: done"
