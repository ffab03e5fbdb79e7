# The checker: the checker process and every child run a tick; a lease in
# shared memory makes one of them the checker, the checker process while
# it runs (memsess_check_process.c).  When the checker stops, a child
# takes over at once (and hands checking back to the checker process once
# the parent has forked it again: each case below starts from there):
#   - SIGKILL of the checker process: checking resumes within two intervals
#     (three times), the new checker logs MEMSESS0023 naming the dead one,
#     and it detects and logs state changes;
#   - the same while the killed checker stays a zombie (its parent stopped);
#   - SIGSTOP of the checker: another child takes over once the lease is
#     stale (two intervals + timeout); on SIGCONT the old one steps down
#     (MEMSESS0019) and exactly one checker goes on (one check per interval);
#   - SIGKILL of every child at once: the children Apache starts anew resume.
# The last three run on a separate instance with one Listen: prefork children
# with several listeners share an accept mutex, and a frozen child holding
# it would stop the whole server from answering.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Time::HiRes qw(time sleep);
use Memsess::Test;
use Memsess::Instance;

use constant TICK => 0.100;    # the watchdog's
my $KILLS = 3;

plan tests => 3 + 3 * $KILLS + 3 + 2 + 6 + 2;

sub checks_in {
    my ($st, $name) = @_;
    return ((status_server($st, addr($name)) || {})->{checks}) // -1;
}
sub checks { checks_in(status(), 'S1') }
sub log_pid { my $l = shift // ''; $l =~ /\[pid (\d+)/ ? $1 : undef }

# The state letter of a process (R, S, T, Z ...), or 'gone'.
sub proc_state {
    my $pid = shift;
    open my $fh, '<', "/proc/$pid/stat" or return 'gone';
    my $st = <$fh> // '';
    close $fh;
    return $st =~ /\)\s+(\S)/ ? $1 : 'gone';
}

my $STARTED = qr/MEMSESS0013: checker started in process (\d+)/;

# The checker now: the process of the last "checker started" line.
sub current_checker {
    my $text = shift;
    my @pids = $text =~ /$STARTED/g;
    return $pids[-1];
}

# The checker once it is back in the checker process (a child checks only
# until the parent has forked a new one): its pid, or undef after 5 s.
sub settled_checker {
    my $text_of = shift;
    my $pid;
    wait_for(5, sub {
        $pid = current_checker($text_of->());
        return 0 unless $pid && kill 0, $pid;
        open my $fh, '<', "/proc/$pid/comm" or return 0;
        my $comm = <$fh> // '';
        return $comm =~ /^memsess-check/;
    }, 0.05);
    return $pid;
}

memc_start('S1');
ok t_cmp(defined wait_states(10, 'up', 'S1') ? 1 : 0, 1, 'S1 is up');

my $parent = do { local (@ARGV, $/) = Apache::Test::vars('t_pid_file'); <> } // '';
chomp $parent;
my $pid = current_checker(log_since(0));
ok t_cmp(defined $pid && kill(0, $pid) ? 1 : 0, 1,
         'the log names the running checker (' . ($pid // 'none') . ')');
ok t_cmp(defined $pid && $pid ne $parent ? 1 : 0, 1, 'the checker is not the parent process');

# --- SIGKILL of the checker -----------------------------------------------------------

# Another child must be there to take over: the parent replaces a killed
# child only at its next maintenance, once a second.
sub wait_other_child {
    my $checker = shift;
    my $ok = wait_for(5, sub {
        2 <= grep { $_ != $checker } Memsess::Instance::children_of($parent);
    }, 0.05);
    sleep 2 * TICK;    # their watchdogs tick
    return $ok;
}

for my $k (1 .. $KILLS) {
    $pid = settled_checker(sub { log_since(0) }) // $pid;
    wait_other_child($pid);
    my $mark = log_mark();
    my $c0 = checks();
    my $t0 = time;
    kill 'KILL', $pid;
    my $line = log_wait(2 * check_interval() + Memsess::Test::margin(), $mark,
                        qr/MEMSESS0023: checking resumed in process \d+: process \Q$pid\E stopped/);
    my $took = defined $line ? log_time($line) - $t0 : undef;
    diag sprintf 'kill %d: checking resumed %s ms after SIGKILL of %d (log time)', $k,
        defined $took ? int($took * 1000) : 'never', $pid;
    ok t_cmp(defined $took && $took <= 2 * check_interval() ? 1 : 0, 1,
             "kill $k: another child resumes checking within two intervals");
    my $dt = wait_for(2 * check_interval() + Memsess::Test::margin(), sub { checks() > $c0 + 1 });
    ok t_cmp(defined $dt ? 1 : 0, 1, "kill $k: the checks counter moves again");
    my $new = current_checker(log_since($mark)) // 0;
    ok t_cmp($new && $new != $pid && kill(0, $new) ? 1 : 0, 1,
             "kill $k: the new checker ($new) is another, living process");
    $pid = $new;
}

# The new checker does the work: detection and logging.
{
    my $mark = log_mark();
    memc_kill('S1');
    my $dt = wait_states(fail_deadline(), 'down', 'S1');
    ok t_cmp(defined $dt ? 1 : 0, 1, 'the new checker marks a killed server down in time');
    my $line = log_wait(2, $mark, state_log_re('S1', 'down'));
    ok t_cmp(defined $line ? 1 : 0, 1, 'and logs it');
    ok t_cmp(log_pid($line) // 0, $pid, "from its own process ($pid)");
}
memc_stop('S1');

# --- SIGSTOP of the checker, on an instance with one listener ------------------------------

my $in = Memsess::Instance->new(name => 'checker', conf => <<'EOF');
StartServers 3
MinSpareServers 3
MaxSpareServers 6
MemsessServers ${MEMC_Z1}
EOF
memc_start('Z1');
$in->start;
my $istatus = sub { checks_in($in->status, 'Z1') };
my $up = wait_for(10, sub { (server_state('Z1', $in->status) // '') eq 'up' });
my $frozen = settled_checker(sub { $in->log_since(0) });
ok t_cmp(defined $up && $frozen && kill(0, $frozen) ? 1 : 0, 1,
         'instance: Z1 up, the checker is ' . ($frozen // 'none'));

# A killed checker that stays a zombie (its parent, stopped, cannot reap
# it) is gone all the same: another child resumes within two intervals.
{
    my $victim = $frozen;
    my $ppid = $in->pid;
    my $others = wait_for(5, sub { 2 <= grep { $_ != $victim } $in->children }, 0.05);
    sleep 2 * TICK;
    my $mark = $in->log_mark();
    kill 'STOP', $ppid;
    my $t0 = time;
    kill 'KILL', $victim;
    my $line = $in->log_wait(2 * check_interval() + Memsess::Test::margin(), $mark,
                             qr/MEMSESS0023: checking resumed in process \d+: process \Q$victim\E stopped/);
    my $zombie = proc_state($victim);
    kill 'CONT', $ppid;
    my $took = defined $line ? log_time($line) - $t0 : undef;
    diag sprintf 'zombie checker: checking resumed %s ms after SIGKILL (log time), the old one %s',
        defined $took ? int($took * 1000) : 'never', $zombie eq 'Z' ? 'still a zombie' : "in state $zombie";
    ok t_cmp(defined $others && defined $took && $took <= 2 * check_interval() ? 1 : 0, 1,
             'zombie checker: another child resumes within two intervals');
    ok t_cmp($zombie, 'Z', 'while the old checker was still a zombie');
}

{
    $frozen = settled_checker(sub { $in->log_since(0) }) // 0;
    wait_for(5, sub { 2 <= grep { $_ != $frozen } $in->children }, 0.05);
    sleep 2 * TICK;
    my $mark = $in->log_mark();
    my $t0 = time;
    kill 'STOP', $frozen;
    # stale when no round started for two intervals + timeout + a tick,
    # seen at the next tick of another child (+ 100 ms of scheduling)
    my $bound = 2 * check_interval() + Memsess::Test::CHECK_TIMEOUT + 2 * TICK + 0.1;
    my $line = $in->log_wait($bound + Memsess::Test::margin() + 1, $mark,
                             qr/MEMSESS0023: checking resumed in process \d+: process \Q$frozen\E stopped/);
    my $took = defined $line ? log_time($line) - $t0 : undef;
    diag sprintf 'SIGSTOP: another child took over after %s ms (log time; bound %d ms)',
        defined $took ? int($took * 1000) : 'never', $bound * 1000;
    ok t_cmp(defined $took && $took <= $bound ? 1 : 0, 1,
             'SIGSTOP: another child takes over once the lease is stale');
    my $taker = log_pid($line) // 0;

    my $c0 = $istatus->();
    my $dt = wait_for(2 * check_interval() + Memsess::Test::margin(), sub { $istatus->() > $c0 + 1 });
    ok t_cmp(defined $dt ? 1 : 0, 1, 'SIGSTOP: the checks counter moves while the old checker is frozen');

    $mark = $in->log_mark();
    kill 'CONT', $frozen;
    $line = $in->log_wait(1 + Memsess::Test::margin(), $mark,
                          qr/MEMSESS0019: process \d+ took over checking from process \Q$frozen\E/);
    ok t_cmp(log_pid($line) // 'no line', $frozen,
             'SIGCONT: the old checker sees the new one and steps down (MEMSESS0019)');

    # exactly one checker: one probe per interval, not two
    sleep 2 * check_interval();
    my ($n0, $t1) = ($istatus->(), time);
    sleep 10 * check_interval();
    my ($n1, $t2) = ($istatus->(), time);
    my $per = ($n1 - $n0) / (($t2 - $t1) / check_interval());
    diag sprintf 'after SIGCONT: %.2f checks of Z1 per interval', $per;
    ok t_cmp($per >= 0.6 && $per <= 1.4 ? 1 : 0, 1,
             sprintf('after SIGCONT: one check per interval (%.2f), not two', $per));
    my $since = $in->log_since($mark);
    ok t_cmp(scalar(() = $since =~ /MEMSESS0023/g), 0, 'and nobody took over again');
}

# --- every child killed at once ------------------------------------------------------------

{
    my @kids = $in->children;
    my $t0 = time;
    kill 'KILL', @kids;
    my $dt = wait_for(3 + Memsess::Test::margin(), sub {
        my $st = $in->status or return 0;
        return 0 if grep { kill 0, $_ } @kids;
        my $c = checks_in($st, 'Z1');
        # a count that moves, seen from the new children
        sleep check_interval() + 0.05;
        return checks_in($in->status, 'Z1') > $c;
    }, 0.05);
    diag sprintf 'all %d children killed: checking resumed after %s ms',
        scalar @kids, defined $dt ? int($dt * 1000) : 'never';
    ok t_cmp(defined $dt ? 1 : 0, 1, 'every child killed: the new children resume checking');
    my $new = current_checker($in->log_since(0)) // 0;
    ok t_cmp(($new && !grep { $_ == $new } @kids) ? 1 : 0, 1,
             "in a new process ($new)");
}

$in->stop;
memc_stop('Z1');
