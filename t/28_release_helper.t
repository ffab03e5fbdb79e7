# Issue 25: the release helper.  Apache (event MPM, started as root, run as
# memsess-web1) in front of a php-fpm pool that runs as another user; two
# memcached, no replica.  The parent forks a helper that keeps
# CAP_NET_ADMIN alone (as Apache's User, no new privileges); when a server
# is marked down, the helper destroys every process's TCP sockets to it
# (the kernel's sock_diag, whatever their owner): the php-fpm worker
# blocked on a frozen server returns soon after the verdict, not after
# php-memcached's timeouts.  A php-fpm worker's socket to the live server,
# and the test's own socket to it, are untouched; the test's own socket to
# the frozen one is released too (anything on the machine).  A helper that
# dies is restarted by the parent.
#
# Needs root for the instance (tools/root-helper.sh through sudo).
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Time::HiRes qw(time sleep);

use IO::Socket::IP ();
use JSON::PP ();
use Memsess::Test;
use Memsess::Instance;

my $HELPER = $ENV{MEMSESS_ROOT_HELPER};
plan tests => 13, need {
    'root: tools/root-helper.sh through sudo (tools/test.sh)' => $HELPER && -x $HELPER
        && !system("sudo -n '$HELPER' heal memsess-web1 1024 >/dev/null 2>&1"),
    'php-fpm' => scalar(grep { -x } glob('/usr/sbin/php-fpm*')),
};

my $JSON = JSON::PP->new->utf8;
my @N = qw(MEMC_RH1 MEMC_RH2);
my $vars = Apache::Test::vars();
chmod 01777, $vars->{t_logs};   # the children's sanitizer reports

memc_start(@N);
fpm_start('FPM_RH');
my $in = Memsess::Instance->new(
    name => 'release_helper', user => 'memsess-web1', release_helper => 1,
    mpm => 'event', modules => ['proxy', 'proxy_fcgi'],
    conf => "MemsessServers \${MEMC_RH1} \${MEMC_RH2}\nMemsessReplicas 0\n"
          . qq{<FilesMatch "\\.php\$">\n    SetHandler "proxy:fcgi://\${FPM_RH}"\n</FilesMatch>\n});
chmod 0755, $in->dir;
$in->start;
ok t_cmp(defined(wait_for(10, sub { 2 == grep { $in->server_state($_) eq 'up' } @N })) ? 1 : 0, 1,
         'both servers up');

# --- the helper: who it is, what it may do ---------------------------------

my $line = $in->log_wait(10, 0, qr/MEMSESS0056: /) // '';
my ($hpid) = $line =~ /release helper \(pid (\d+)\)/;
my %st;
if ($hpid && open my $fh, '<', "/proc/$hpid/status") {
    while (<$fh>) { $st{$1} = $2 if /^(\w+):\s*(.*?)\s*$/ }
}
my $uid = getpwnam('memsess-web1');
diag("helper: $line");
ok t_cmp((split /\s+/, $st{Uid} // '')[1] // -1, $uid, "the helper runs as Apache's User (uid $uid)");
ok t_cmp(join(' ', map { $st{$_} // '?' } qw(CapEff CapPrm CapBnd CapInh NoNewPrivs)),
         '0000000000001000 0000000000001000 0000000000001000 0000000000000000 1',
         'it keeps CAP_NET_ADMIN alone (effective, permitted, bounding), no new privileges');

# --- a php-fpm worker caught on a frozen server ----------------------------

# A user whose session lives on RH1 (no replica), and one on RH2.
sub req {
    my ($ua, $path) = @_;
    my $t0 = time;
    my $res = $ua->get($in->url($path));
    my $d = $res->is_success ? eval { $JSON->decode($res->decoded_content) } : undef;
    return ($d, $res, time - $t0);
}

# A request in the background: a handle for bg_join.
sub bg_req {
    my ($ua, $path) = @_;
    return bg_run(sub {
        my ($d, $res, $dt) = req($ua, $path);
        return { data => $d, code => $res->code, secs => $dt, end => time };
    });
}

my (%ua);
for (1 .. 60) {
    my $u = new_ua(timeout => 30);
    my ($d) = req($u, '/memsess/session.php');
    next unless $d && $d->{session_id} && $d->{sapi} eq 'fpm-fcgi';
    my @h = memc_holders(session_key($d->{session_id}), @N);
    next unless @h == 1 && !$ua{ $h[0] };
    if ($h[0] eq 'MEMC_RH2') {
        # its lock too (php-memcached places "lock.<id>" as a key of its
        # own): seen there while a request holds the session
        my $b = bg_req($u, '/memsess/session.php?hold=400');
        my $where = wait_for(2, sub { memc_holders(session_key("lock.$d->{session_id}"), @N) }, 0.02)
            ? join(',', memc_holders(session_key("lock.$d->{session_id}"), @N)) : '';
        bg_join($b, 10);
        next unless $where eq 'MEMC_RH2';
    }
    $ua{ $h[0] } = $u;
    last if $ua{MEMC_RH1} && $ua{MEMC_RH2};
}
ok t_cmp(($ua{MEMC_RH1} && $ua{MEMC_RH2}) ? 1 : 0, 1,
         'users of php-fpm with a session on each server (the one on RH2 with its lock there)');

# the test's own sockets: one to each server
my %own = map { my ($h, $p) = host_port($_);
                ($_ => IO::Socket::IP->new(PeerHost => $h, PeerPort => $p, Timeout => 2)) } @N;

my $mark = $in->log_mark;
my $live = bg_req($ua{MEMC_RH2}, '/memsess/session.php?hold=1500');
sleep 0.3;
memc_freeze('MEMC_RH1');
my $t_freeze = time;
my $stuck = bg_req($ua{MEMC_RH1}, '/memsess/session.php');
my $down = wait_for(fail_deadline() + 2, sub { $in->server_state('MEMC_RH1') eq 'down' }, 0.01);
my $t_down = time;
my $r = bg_join($stuck, 40);
my $after = defined $r->{end} ? $r->{end} - $t_down : undef;
diag(sprintf 'the request caught on the frozen server: HTTP %s after %.2f s, %.2f s after the verdict '
    . '(%.2f s after the freeze); errors: %s', $r->{code} // '?', $r->{secs} // -1, $after // -1,
    $t_down - $t_freeze, join(' | ', @{ ($r->{data} || {})->{errors} || [] }));
ok t_cmp(defined $down ? 1 : 0, 1, 'the frozen server is marked down');
ok t_cmp(defined $after && $after < 2 ? 1 : 0, 1,
         sprintf 'the php-fpm worker caught on it returns soon after the verdict (%.2f s; '
         . "php-memcached's timeouts would take 5 s or more)", $after // -1);
my $rel = $in->log_wait(5, $mark, qr/MEMSESS0053: .*\Q${\ addr('MEMC_RH1')}\E/) // '';
diag("release: $rel");
my $fpm_uid = $<;
ok t_cmp($rel =~ /released (\d+) sockets .*\(uid ([\d,]+)\)/ && $1 >= 1
         && grep({ $_ == $fpm_uid } split /,/, $2) ? 1 : 0, 1,
         "the helper says it released sockets of other processes (php-fpm's uid $fpm_uid)");

my $l = bg_join($live, 20);
my $ld = $l->{data} || {};
ok t_cmp(($ld->{written} && $ld->{started} && !@{ $ld->{errors} || [] }) ? 1 : 0, 1,
         sprintf 'a php-fpm worker on the live server is untouched: its session written (%.2f s)',
         $l->{secs} // -1);

# the test's own sockets: the one to the live server still answers; the
# one to the frozen server was released (any process on the machine)
my $s2 = $own{MEMC_RH2};
my $reply = '';
if ($s2) {
    $s2->autoflush(1);
    print $s2 "version\r\n";
    $reply = <$s2> // '';
}
ok t_cmp($reply, qr/^VERSION /, 'a socket of another process to the live server still answers');
local $SIG{PIPE} = 'IGNORE';
my $s1 = $own{MEMC_RH1};
my $gone = $s1 ? !defined(syswrite($s1, "version\r\n")) || !defined(sysread($s1, my $buf, 64)) : 0;
ok t_cmp($gone ? 1 : 0, 1, "a socket of another process to the down server was released ($!)");
memc_thaw('MEMC_RH1');

# --- a helper that dies is restarted ----------------------------------------

$mark = $in->log_mark;
Memsess::Instance::root_helper('killchild', $in->dir, $hpid) if $hpid;
my $again = $in->log_wait(10, $mark, qr/MEMSESS0056: /) // '';
my ($hpid2) = $again =~ /release helper \(pid (\d+)\)/;
ok t_cmp(($hpid2 && $hpid && $hpid2 != $hpid && $in->log_since($mark) =~ /MEMSESS0059: /) ? 1 : 0, 1,
         'the helper killed: the parent starts another (MEMSESS0059)');
ok t_cmp(defined(wait_for(20, sub { $in->server_state('MEMC_RH1') eq 'up' })) ? 1 : 0, 1,
         'thawed, the server comes back up');

$in->stop;
ok t_cmp($hpid2 && -e "/proc/$hpid2" ? 0 : 1, 1, 'the helper stops with Apache');
memc_stop(@N, 'FPM_RH');
