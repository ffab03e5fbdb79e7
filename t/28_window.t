# Issue 10: the failure window.  At the defaults, a hung server is marked
# down within half a second, and the requests already waiting on it are
# released then (every Apache child shuts down its own sockets whose peer
# is that server), not after php-memcached's 5 s timeouts.  A socket to a
# live server, to another port of the same host or to anything else is
# never touched; and once the requests from before the verdict have ended,
# nothing is shut down any more.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Time::HiRes qw(time);
use JSON::PP ();
use Memsess::Test;

plan tests => 27;

our $V = 'memsess_window';
my @N = qw(O1 O2 O3);
my $JSON = JSON::PP->new->utf8->canonical;

# The contract: detected within 0.5 s at the defaults.
my $DETECT = 0.5;

# A request run in a child process (it blocks): a handle for bg_join.
sub bg_get {
    my ($ua, $path) = @_;
    return bg_run(sub {
        my ($d, $res, $dt) = get_json($ua, $V, $path);
        return { data => $d, code => $res->code, secs => $dt,
                 body => $d ? '' : $res->decoded_content };
    });
}

memc_start(@N);
ok t_cmp(defined wait_states(10, 'up', @N) ? 1 : 0, 1, 'status: the three servers are up');

my $apache = '127.0.0.1:' . vhost_port($V);
my ($n1, $n2) = (addr('O1'), addr('O2'));

# --- a request waiting on a frozen server, with other sockets open -------

memc_freeze('O1');
my $mark = log_mark();
my $h = bg_get(new_ua(timeout => 30),
               "/memsess/hold.php?wait=$n1&rounds=3&timeout=8&keep=$n2,$apache");
my $dt = wait_states(fail_deadline(), 'down', 'O1');
diag sprintf 'hung server marked down after %s ms (target %d ms)',
    defined $dt ? int($dt * 1000) : 'never', $DETECT * 1000;
ok t_cmp(defined $dt && $dt <= $DETECT + Memsess::Test::margin() ? 1 : 0, 1,
         sprintf 'a hung server is marked down at the defaults within %.1f s (+ margin %.1f s)',
         $DETECT, Memsess::Test::margin());

my $r = bg_join($h, 30);
my $secs = time - $h->{t0};
my @w = @{ $r->{data}{waits} || [] };
diag sprintf 'the waiting request returned after %d ms: waits %s; kept %s', $secs * 1000,
    join(' ', map { "$_->{end}/$_->{ms}ms" } @w),
    join(' ', map { "$_=$r->{data}{kept}{$_}" } sort keys %{ $r->{data}{kept} || {} });
ok t_cmp($r->{code}, 200, 'the request answers');
ok t_cmp($w[0] ? $w[0]{end} : 'none', 'eof',
         'its socket to the frozen server was shut down');
ok t_cmp($w[0] && $w[0]{ms} / 1000 <= ($dt // 0) + 0.3 + Memsess::Test::margin() ? 1 : 0, 1,
         sprintf 'released soon after the verdict (waited %d ms; verdict after %d ms)',
         $w[0] ? $w[0]{ms} : -1, ($dt // 0) * 1000);
ok t_cmp(join(',', map { $_->{end} } @w[1, 2]), 'eof,eof',
         'its new connections to it are shut down too (it began before the verdict)');
ok t_cmp($secs < 5 ? 1 : 0, 1,
         sprintf 'all three waits took %.2f s, less than one of php-memcached\'s timeouts', $secs);
ok t_cmp($r->{data}{kept}{$n2}, 'open', 'a socket to a live server on the same host stays open');
ok t_cmp($r->{data}{kept}{$apache}, 'open', 'a socket to anything else stays open');

my $line = log_wait(2, $mark, qr/MEMSESS0050: process \d+ shut down its connection to \Q$n1\E,/);
ok t_cmp(defined $line ? 1 : 0, 1, 'error log: MEMSESS0050 says which process released what');

# --- after the window: a request that began after the verdict ------------

# Each child stops releasing once its requests from before the verdict
# have ended (MEMSESS0051, at LogLevel info).
$line = log_wait(5, $mark, qr/MEMSESS0051: .*\Q$n1\E/);
ok t_cmp(defined $line ? 1 : 0, 1, 'error log: MEMSESS0051 says the window closed');

$r = bg_join(bg_get(new_ua(timeout => 30), "/memsess/hold.php?wait=$n1&timeout=1.5&keep=$n2"), 20);
@w = @{ $r->{data}{waits} || [] };
diag sprintf 'a request from after the verdict: %s', join(' ', map { "$_->{end}/$_->{ms}ms" } @w);
ok t_cmp($w[0] ? $w[0]{end} : 'none', 'timeout',
         'a request that began after the verdict is left alone (its own timeout ends its wait)');
ok t_cmp($r->{data}{kept}{$n2}, 'open', 'and its socket to a live server works');

memc_thaw('O1');
ok t_cmp(defined wait_states(up_deadline(), 'up', 'O1') ? 1 : 0, 1, 'status: the thawed server is up again');

# --- a user whose session lives on the server that freezes ---------------

# With the defaults (one replica, successor), a session on O1 has its copy
# on O2.  Log users in until one's session is on O1 and O2.
my ($ua, $first);
for (1 .. 40) {
    my $u = new_ua(timeout => 30);
    my ($d) = get_json($u, $V, '/memsess/session.php');
    next unless $d && $d->{session_id};
    my @holders = memc_holders(session_key($d->{session_id}), @N);
    if (join(',', @holders) eq 'MEMC_O1,MEMC_O2') {
        ($ua, $first) = ($u, $d);
        last;
    }
}
ok t_cmp(defined $ua ? 1 : 0, 1, 'a user whose session lives on O1 (copy on O2)');

if (!$ua) {
    skip 'no session on O1' for 1 .. 7;
}
else {
    memc_freeze('O1');
    $h = bg_get($ua, '/memsess/session.php');
    $dt = wait_states(fail_deadline(), 'down', 'O1');
    $r = bg_join($h, 30);
    my $d = $r->{data} || {};
    diag sprintf 'the session request caught on the frozen server: HTTP %s after %d ms '
        . '(verdict after %d ms): n=%s started=%s written=%s errors=%s',
        $r->{code} // '?', ($r->{secs} // 0) * 1000, ($dt // 0) * 1000, $d->{n} // '?',
        $d->{started} ? 1 : 0, $d->{written} ? 1 : 0, join(' | ', @{ $d->{errors} || [] });
    ok t_cmp($r->{code}, 200, 'the caught session request answers');
    ok t_cmp(defined $r->{secs} && $r->{secs} <= ($dt // 0) + 1 + Memsess::Test::margin() ? 1 : 0, 1,
             sprintf 'within a second of the verdict (%.2f s, verdict after %.2f s)',
             $r->{secs} // -1, $dt // -1);
    # php-memcached reads a replica only when the primary cannot be
    # reached; a read cut off midway is an error.  So the caught request
    # gets no session (session_start() fails) and writes nothing.
    ok t_cmp(($d->{started} ? 1 : 0) . ($d->{written} ? 1 : 0), '00',
             'the caught request got no session and wrote nothing');

    # The next requests, with O1 down: the session goes on from its copy.
    my ($d2, $res2, $t2) = get_json($ua, $V, '/memsess/session.php');
    ok t_cmp($d2 ? $d2->{n} : 'x', 2, 'the next request has the session (n = 2): nothing lost');
    ok t_cmp($t2 < 1 ? 1 : 0, 1, sprintf 'and does not wait (%.3f s)', $t2);
    ok t_cmp($d2 ? $d2->{save_path} : '', "$n2,$n2," . addr('O3'),
             'its list has O2 in O1\'s place (successor)');
    memc_thaw('O1');
    ok t_cmp(defined wait_states(up_deadline(), 'up', 'O1') ? 1 : 0, 1, 'status: up again');
}

# --- a dead server, at the defaults ---------------------------------------

# Its process exits: the kernel closes the checker's idle connection to it
# (memsess_watch.c) and it is probed at once, not at the next round.
{
    memc_kill('O3');
    my $kdt = wait_states(fail_deadline(), 'down', 'O3');
    diag sprintf 'killed server marked down after %s ms (target %d ms)',
        defined $kdt ? int($kdt * 1000) : 'never', $DETECT * 1000;
    ok t_cmp(defined $kdt && $kdt <= $DETECT + Memsess::Test::margin() ? 1 : 0, 1,
             sprintf 'a dead server is marked down at the defaults within %.1f s (+ margin %.1f s)',
             $DETECT, Memsess::Test::margin());
    memc_start('O3');
    ok t_cmp(defined wait_states(up_deadline(), 'up', 'O3') ? 1 : 0, 1,
             'status: the restarted server is up again');
}

memc_stop(@N);

# --- php-fpm: its workers are not Apache's children ----------------------

# Detection applies to them (the next requests get the live list); the
# release per child cannot reach a socket of a php-fpm worker, and this
# Apache, not started as root, has no release helper (the helper releases
# them: t/28_release_helper.t).  What such a user gets:
ok t_cmp(log_since(0) =~ /MEMSESS0054: no release helper: Apache was not started as root/ ? 1 : 0, 1,
         'not started as root: no release helper, and the log says so (MEMSESS0054)');
{
    my $F = 'memsess_fpm';
    my @P = qw(P1 P2);
    memc_start(@P);
    fpm_start('FPM_1');
    wait_states(10, 'up', @P);
    my ($fua, $fd);
    for (1 .. 30) {
        my $u = new_ua(timeout => 30);
        my ($d) = get_json($u, $F, '/memsess/session.php');
        next unless $d && $d->{session_id};
        if (join(',', memc_holders(session_key($d->{session_id}), @P)) eq 'MEMC_P1') {
            ($fua, $fd) = ($u, $d);
            last;
        }
    }
    if ($fua) {
        memc_freeze('P1');
        local $V = $F;
        my $fh = bg_get($fua, '/memsess/session.php');
        my $fdt = wait_states(fail_deadline(), 'down', 'P1');
        my $fr = bg_join($fh, 40);
        my $fdd = $fr->{data} || {};
        diag sprintf 'php-fpm: the session request caught on the frozen server: HTTP %s after %d ms '
            . '(verdict after %d ms): n=%s started=%s errors=%s', $fr->{code} // '?',
            ($fr->{secs} // 0) * 1000, ($fdt // 0) * 1000, $fdd->{n} // '?',
            $fdd->{started} ? 1 : 0, join(' | ', @{ $fdd->{errors} || [] });
        ok t_cmp(defined $fr->{secs} && $fr->{secs} > 1 ? 1 : 0, 1,
                 sprintf 'php-fpm: a request caught in the window is not released (%.1f s): '
                 . 'it waits for php-memcached\'s timeouts', $fr->{secs} // -1);
        my ($d2, undef, $t2) = get_json($fua, $F, '/memsess/session.php');
        ok t_cmp($t2 < 1 ? 1 : 0, 1, sprintf 'php-fpm: the next request does not wait (%.3f s)', $t2);
        memc_thaw('P1');
    }
    else {
        skip 'no session on P1' for 1 .. 2;
    }
    memc_stop(@P);
}
