# Issue 3: a killed memcached (SIGKILL: connections refused) is marked down
# within interval x FailThreshold + timeout, logged at NOTICE, and dropped
# from what requests get; restarted on the same port it comes back up, in
# its config position.  With every server down the pool fails open.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Time::HiRes qw(time);
use Memsess::Test;

plan tests => 30;

my $V = 'memsess_health';
my @H = qw(H1 H2 H3);

memc_start(@H);
my $t_up = wait_states(10, 'up', @H);
ok t_cmp(defined $t_up ? 'up' : 'not up', 'up', 'status: the three servers are up');
my $st0 = status() || {};
my $gen0 = $st0->{generation} // -1;
ok t_cmp(live_of($st0, $V), addrs(@H), 'status: the pool of the vhost lists all three as live');

# --- kill one -------------------------------------------------------------------

my $mark = log_mark();
my $t0 = time;
memc_kill('H2');
my $dt = wait_states(fail_deadline(), 'down', 'H2');
diag sprintf 'killed server marked down after %s ms (deadline %d ms)',
    defined $dt ? int($dt * 1000) : 'never', fail_deadline() * 1000;
ok t_cmp(defined $dt ? 'down' : (server_state('H2') // 'missing'), 'down',
         'status: the killed server is down within the deadline');

my $st = status() || {};
my $s = status_server($st, addr('H2')) || {};
ok t_cmp(($s->{consecutive_fails} // 0) >= 2 ? 1 : 0, 1, 'status: consecutive_fails >= FailThreshold');
ok t_cmp(($s->{failures} // 0) >= 2 ? 1 : 0, 1, 'status: failures counted');
ok t_cmp($s->{consecutive_passes} // -1, 0, 'status: consecutive_passes reset');
ok t_cmp(length($s->{last_error} // ''), qr/^[1-9]/, "status: last_error says why: '" . ($s->{last_error} // '') . "'");
ok t_cmp(abs(($s->{last_change} // 0) - $t0) <= 2 ? 1 : 0, 1, 'status: last_change is the time of the change');
ok t_cmp(($st->{generation} // -1) > $gen0 ? 1 : 0, 1, 'status: generation bumped');
ok t_cmp(join(',', map { server_state($_, $st) // 'missing' } qw(H1 H3)), 'up,up',
         'status: the other servers stay up');
ok t_cmp(live_of($st, $V), addrs(qw(H1 H3)), 'status: the pool lists only the live servers');

my $line = log_wait(2, $mark, state_log_re('H2', 'down'));
ok t_cmp(defined $line ? 1 : 0, 1, 'error log: a NOTICE line says the server is down');
diag "log: $line" if defined $line;

my $i = info($V) || {};
# the defaults (replicas 1, successor): its place goes to the next live one
ok t_cmp($i->{save_path}, addrs(qw(H1 H3 H3)), 'session.save_path: the dead server\'s place goes to its successor');
ok t_cmp($i->{env}{MEMSESS_SAVE_PATH}, addrs(qw(H1 H3 H3)), 'MEMSESS_SAVE_PATH too');
ok t_cmp($i->{env}{MEMSESS_LIVE}, '2/3', 'MEMSESS_LIVE is 2/3');

# Sessions work and never touch the dead server.
{
    my @ok;
    my @where;
    for (1 .. 6) {
        my $ua = new_ua();
        my ($d1) = get_json($ua, $V, '/memsess/session.php');
        my ($d2) = get_json($ua, $V, '/memsess/session.php');
        push @ok, ($d1 && $d2 && $d1->{n} == 1 && $d2->{n} == 2 && $d2->{written}) ? 1 : 0;
        push @where, 1 if $d1 && memc_holders(session_key($d1->{session_id} // 'none'), qw(H1 H3));
    }
    ok t_cmp(join('', @ok), '111111', 'six users log in and keep their session with one server dead');
    ok t_cmp(scalar @where, 6, 'every session is stored on a live server');
}

# --- restart it on the same port ------------------------------------------------

$mark = log_mark();
memc_start('H2');
my ($passed, $up) = wait_back('H2');
back_diag('restarted server', $passed, $up);
ok t_cmp(back_verdict($passed, $up), 'up',
         'status: the restarted server passes within the deadline, up once synced');
$s = status_server(status(), addr('H2')) || {};
ok t_cmp(($s->{consecutive_passes} // 0) >= 2 ? 1 : 0, 1, 'status: consecutive_passes >= PassThreshold');
ok t_cmp($s->{consecutive_fails} // -1, 0, 'status: consecutive_fails reset');
$line = log_wait(2, $mark, state_log_re('H2', 'up'));
ok t_cmp(defined $line ? 1 : 0, 1, 'error log: a NOTICE line says the server is up');
$i = info($V) || {};
ok t_cmp($i->{save_path}, addrs(@H), 'session.save_path has it back in its config position');
ok t_cmp($i->{env}{MEMSESS_LIVE}, '3/3', 'MEMSESS_LIVE is 3/3');

# --- every server down: fail open ---------------------------------------------

memc_kill(@H);
$dt = wait_states(fail_deadline(), 'down', @H);
ok t_cmp(defined $dt ? 1 : 0, 1, 'status: all three down');
$i = info($V) || {};
ok t_cmp($i->{save_path}, addrs(@H), 'none live: session.save_path is the full list (fail open)');
ok t_cmp($i->{env}{MEMSESS_SAVE_PATH}, addrs(@H), 'none live: MEMSESS_SAVE_PATH is the full list');
ok t_cmp($i->{env}{MEMSESS_LIVE}, '0/3', 'none live: MEMSESS_LIVE is 0/3');
ok t_cmp(live_of(status(), $V) // 'missing', '', 'none live: status lists no live server');

memc_start(@H);
$dt = wait_states(up_deadline(), 'up', @H);
ok t_cmp(defined $dt ? 1 : 0, 1, 'all three up again');
$i = info($V) || {};
ok t_cmp($i->{save_path}, addrs(@H), 'and back in config order');

memc_stop(@H);
