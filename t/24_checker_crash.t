# If the child running the checker dies, checking resumes in another child
# within two intervals, and state changes are still detected and logged.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Time::HiRes qw(time);
use Memsess::Test;

plan tests => 7;

sub checks { ((status_server(status(), addr('S1')) || {})->{checks}) // -1 }
sub log_pid { my $l = shift // ''; $l =~ /\[pid (\d+)/ ? $1 : undef }

memc_start('S1');
ok t_cmp(defined wait_states(10, 'up', 'S1') ? 1 : 0, 1, 'S1 is up');

# Who runs the checker: the pid on its NOTICE line.
my $mark = log_mark();
memc_kill('S1');
wait_states(fail_deadline(), 'down', 'S1');
my $pid = log_pid(log_wait(2, $mark, state_log_re('S1', 'down')));
ok t_cmp(defined $pid ? 1 : 0, 1, 'the checker logs its verdicts (pid ' . ($pid // 'none') . ')');
memc_start('S1');
wait_states(pass_deadline(), 'up', 'S1');

SKIP: {
    skip 'no checker pid to kill', 5 unless $pid;
    my $parent = do { local (@ARGV, $/) = Apache::Test::vars('t_pid_file'); <> } // '';
    chomp $parent;
    ok t_cmp($pid ne $parent ? 1 : 0, 1, 'the checker is not the parent process');

    my $c0 = checks();
    my $t0 = time;
    kill 'KILL', $pid;
    my $dt = wait_for(2 * check_interval() + Memsess::Test::margin(), sub { checks() > $c0 + 1 });
    diag sprintf 'checking resumed %s ms after the checker was killed',
        defined $dt ? int($dt * 1000) : 'never';
    ok t_cmp(defined $dt ? 1 : 0, 1, 'checks resume within two intervals after the checker dies');

    $mark = log_mark();
    memc_kill('S1');
    $dt = wait_states(fail_deadline(), 'down', 'S1');
    ok t_cmp(defined $dt ? 1 : 0, 1, 'the new checker marks a killed server down in time');
    my $line = log_wait(2, $mark, state_log_re('S1', 'down'));
    ok t_cmp(defined $line ? 1 : 0, 1, 'and logs it');
    my $new = log_pid($line);
    ok t_cmp(defined $new && $new != $pid ? 1 : 0, 1,
             'from another process (' . ($new // 'none') . ')');
}
memc_stop('S1');
