# Issue 3: a hung memcached (SIGSTOP: the kernel completes the TCP handshake,
# nothing ever answers) is marked down within interval x FailThreshold +
# timeout; after that no request waits for it.  SIGCONT brings it back up,
# in its config position.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use List::Util qw(max);
use Memsess::Test;

plan tests => 16;

my $V = 'memsess_hang';
my @F = qw(F1 F2 F3);

memc_start(@F);
ok t_cmp(defined wait_states(10, 'up', @F) ? 1 : 0, 1, 'status: the three servers are up');

# Freeze the first one: it is first in the save_path, so before detection a
# third of the sessions would hash to it.
my $mark = log_mark();
memc_freeze('F1');
my $dt = wait_states(fail_deadline(), 'down', 'F1');
diag sprintf 'hung server marked down after %s ms (deadline %d ms)',
    defined $dt ? int($dt * 1000) : 'never', fail_deadline() * 1000;
ok t_cmp(defined $dt ? 'down' : (server_state('F1') // 'missing'), 'down',
         'status: the hung server is down within the deadline');

my $st = status() || {};
ok t_cmp(join(',', map { server_state($_, $st) // 'missing' } qw(F2 F3)), 'up,up',
         'status: the other servers stay up');
my $s = status_server($st, addr('F1')) || {};
ok t_cmp(length($s->{last_error} // ''), qr/^[1-9]/,
         "status: last_error says why: '" . ($s->{last_error} // '') . "'");

my $line = log_wait(2, $mark, state_log_re('F1', 'down'));
ok t_cmp(defined $line ? 1 : 0, 1, 'error log: a NOTICE line says the server is down');
diag "log: $line" if defined $line;

my $i = info($V) || {};
# the defaults (replicas 1, successor): its place goes to the next live one
ok t_cmp($i->{save_path}, addrs(qw(F2 F2 F3)), 'session.save_path: the hung server\'s place goes to its successor');
ok t_cmp($i->{env}{MEMSESS_LIVE}, '2/3', 'MEMSESS_LIVE is 2/3');

# Twelve new users log in and come back: nobody waits for the hung server.
{
    my (@lat, @n, @holders);
    for (1 .. 12) {
        my $ua = new_ua(timeout => 10);
        my ($d1, $r1, $t1) = get_json($ua, $V, '/memsess/session.php');
        my ($d2, $r2, $t2) = get_json($ua, $V, '/memsess/session.php');
        push @lat, $t1, $t2;
        push @n, ($d1 ? $d1->{n} : 'x') . ($d2 ? $d2->{n} : 'x');
        push @holders, 1 if $d1 && memc_holders(session_key($d1->{session_id}), qw(F2 F3));
    }
    my $worst = max(@lat);
    diag sprintf 'session requests with a hung server: worst %d ms', $worst * 1000;
    ok t_cmp($worst < 1 ? 1 : 0, 1, sprintf('every session request completes fast (worst %.3f s < 1 s)', $worst));
    ok t_cmp(join(' ', @n), join(' ', ('12') x 12), 'every user keeps the session');
    ok t_cmp(scalar @holders, 12, 'every session is stored on a live server');
}

# The hung server stays down while frozen (probes keep failing).
ok t_cmp(server_state('F1') // 'missing', 'down', 'status: still down while frozen');

# --- thaw ------------------------------------------------------------------------

$mark = log_mark();
memc_thaw('F1');
my ($passed, $up) = wait_back('F1');
back_diag('thawed server', $passed, $up);
ok t_cmp(back_verdict($passed, $up), 'up',
         'status: the thawed server passes within the deadline, up once synced');
$line = log_wait(2, $mark, state_log_re('F1', 'up'));
ok t_cmp(defined $line ? 1 : 0, 1, 'error log: a NOTICE line says the server is up');
$i = info($V) || {};
ok t_cmp($i->{save_path}, addrs(@F), 'session.save_path has it back, first as configured');
ok t_cmp($i->{env}{MEMSESS_LIVE}, '3/3', 'MEMSESS_LIVE is 3/3');

# A session through all three again.
{
    my $ua = new_ua();
    my ($d1) = get_json($ua, $V, '/memsess/session.php');
    my ($d2) = get_json($ua, $V, '/memsess/session.php');
    ok t_cmp(($d1 ? $d1->{n} : 'x') . ($d2 ? $d2->{n} : 'x'), '12', 'sessions work after recovery');
}

memc_stop(@F);
