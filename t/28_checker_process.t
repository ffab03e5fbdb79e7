# Issue 22: a long job lives where the MPM cannot end it.  The checker,
# and with it every rejoin sync and rebalance, runs in a process of its own
# (memsess_check_process.c), forked by the parent, not in a child that the
# MPM reaps when the load falls or ends at MaxConnectionsPerChild.
#
# Under prefork, worker and event in turn, with a load that comes and goes
# and children that end every 20 connections: three servers hold 10,000
# sessions; CP3 is killed and restarted empty, and its sync
# (MemsessSyncRate 2000: seconds long) runs while the MPM ends child after
# child.  It runs once, to its end, never cut short (MEMSESS0032) or
# stopped (MEMSESS0033), the checker never moves, and every session is
# where PHP reads it.  Before, the checker lived in a child: the MPM ended
# it mid-sync and the next checker started the sync over from zero.
# MEMSESS_CHECKER_PROCESS=Off runs the same with the checker in a child,
# to see that (it fails).
#
# Then, under prefork: SIGKILL of the checker process (a child takes over
# at once, the parent forks a new process, the child hands checking back
# to it; or the new process resumes first, when the parent forked it
# before a child's tick), a graceful (a new process for the new configuration, the old one
# ended), and MemsessCheckerProcess Off (no process: a child checks).
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);
use Memsess::Test;
use Memsess::Instance;
use Memsess::Fill;

# (the sanitizer pass: prefork, whose idle reaping the process is for,
# and event; worker's threads run under event too.  The suite's time.)
my @MPMS = $ENV{MEMSESS_TEST_SANITIZED} ? qw(prefork event) : qw(prefork worker event);
plan tests => 5 * @MPMS + 13;

my @CP = qw(MEMC_CP1 MEMC_CP2 MEMC_CP3);
my $N = $ENV{MEMSESS_CHECKER_SESSIONS} // 10000;   # (a sync of 5 s)
my $PROCESS = $ENV{MEMSESS_CHECKER_PROCESS} // 'On';

my %MPM_CONF = (
    prefork => <<'EOF',
StartServers 2
MinSpareServers 1
MaxSpareServers 2
MaxRequestWorkers 8
MaxConnectionsPerChild 20
EOF
    worker => <<'EOF',
StartServers 2
ServerLimit 4
ThreadsPerChild 2
MinSpareThreads 1
MaxSpareThreads 4
MaxRequestWorkers 8
MaxConnectionsPerChild 20
EOF
);
$MPM_CONF{event} = $MPM_CONF{worker};

# The checker now: the pid of the last MEMSESS0013.
sub checker_of {
    my $in = shift;
    my @p = $in->log_since(0) =~ /MEMSESS0013: checker started in process (\d+)/g;
    return $p[-1];
}

# Whether a process has ended (a zombie its parent has not reaped yet
# counts).
sub ended {
    my $pid = shift;
    return 1 unless kill 0, $pid;
    open my $fh, '<', "/proc/$pid/stat" or return 1;
    my $s = <$fh> // '';
    return $s =~ /\) [ZX] / ? 1 : 0;
}

sub comm_of {
    my $pid = shift;
    open my $fh, '<', "/proc/$pid/comm" or return '';
    my $c = <$fh> // '';
    chomp $c;
    return $c;
}

# Clients that come and go: each sends requests on new connections for
# 0.4 s, then rests 0.4 s, out of step with the others.
sub load_start {
    my ($port, $n) = @_;
    my @pids;
    for my $i (1 .. $n) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            sleep 0.4 * ($i - 1) / $n;
            while (1) {
                my $end = time + 0.4;
                while (time < $end) {
                    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 2)
                        or next;
                    print $s "GET /memsess/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
                    1 while <$s>;
                    close $s;
                }
                sleep 0.4;
            }
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    return @pids;
}

sub load_stop {
    kill 'KILL', @_;
    waitpid $_, 0 for @_;
}

for my $mpm (@MPMS) {
    memc_stop(@CP);
    memc_start(@CP);
    my $in = Memsess::Instance->new(name => "checker_$mpm", mpm => $mpm, conf => <<"EOF");
$MPM_CONF{$mpm}
MemsessServers \${MEMC_CP1} \${MEMC_CP2} \${MEMC_CP3}
MemsessSyncRate 2000
MemsessCheckerProcess $PROCESS
EOF
    $in->start;
    my $up = wait_for(10, sub { 3 == grep { $in->server_state($_) eq 'up' } @CP });
    my ($filled, $where, $want) = fill_sessions(\@CP, "checker-$mpm", $N);
    my $checker = checker_of($in);
    ok t_cmp(defined $up && $filled && $checker && comm_of($checker) eq 'memsess-check'
             && $in->log_since(0) =~ /MEMSESS0192: the checker process \(pid \Q$checker\E\)/ ? 1 : 0, 1,
             "$mpm: the checker runs in the checker process ($checker: "
             . comm_of($checker // 0) . "); $N sessions written");

    memc_kill('MEMC_CP3');
    wait_for(10, sub { $in->server_state('MEMC_CP3') eq 'down' });
    my $mark = $in->log_mark;
    my @load = load_start($in->port, 3);
    memc_start('MEMC_CP3');
    my (%seen, $done, @ends);
    my ($expected, $listed) = (0, 0);
    my $a3 = addr('MEMC_CP3');
    my $t0 = time;
    while (time - $t0 < 90) {
        $seen{$_} = 1 for $in->children;
        my $st = $in->status || {};
        my ($s) = grep { $_->{address} eq $a3 } @{ $st->{servers} || [] };
        $s ||= {};
        last if $done = ($s->{state} // '') eq 'up';
        if (($s->{state} // '') eq 'syncing') {
            $expected = $s->{sync_expected} if ($s->{sync_expected} // 0) > $expected;
            $listed = $s->{sync_listed} if ($s->{sync_listed} // 0) > $listed;
            push @ends, [time, $s->{sync_end}] if $s->{sync_end};
        }
        sleep 0.05;
    }
    my $took = time - $t0;
    load_stop(@load);
    my $ended = grep { ended($_) } keys %seen;
    my $log = $in->log_since($mark);
    my ($synced) = grep { /MEMSESS0031: .*\Q$a3\E/ } split /\n/, $log;
    diag sprintf '%s: the sync ran %.1f s, %d children ended meanwhile; %s', $mpm, $took, $ended,
        $synced // 'no MEMSESS0031';
    diag $_ for grep { /MEMSESS003[23]|MEMSESS0013/ } split /\n/, $log;
    ok t_cmp($done && $ended >= 2 ? 1 : 0, 1,
             "$mpm: CP3 synced and up again while the MPM ended $ended children");
    ok t_cmp(join(' ', scalar(() = $log =~ /MEMSESS0031: .*\Q$a3\E/g),
                  scalar(() = $log =~ /MEMSESS003[23]:/g)), '1 0',
             "$mpm: one sync, to its end: never cut short (MEMSESS0032) or stopped (MEMSESS0033)");
    ok t_cmp(scalar(() = $log =~ /MEMSESS0013:/g), 0,
             "$mpm: the checker never moved (no MEMSESS0013 since)");
    if ($mpm eq 'prefork') {
        # the status page's progress: what the first pass lists (the
        # servers' keys: CP1 and CP2 hold 2/3 of the sessions each, with
        # a replica each; CP3 is empty), how much
        # of it was read, and when it should end, ahead of now while it
        # runs, and not wildly off the end seen
        my ($first, $last) = @ends[0, -1];
        diag sprintf 'prefork: expected %d lines, listed %d; first end seen %s s ahead, %d estimates',
            $expected, $listed, $first ? $first->[1] - $first->[0] : '?', scalar @ends;
        ok t_cmp($expected >= 1.2 * $N && $expected <= 1.5 * $N && $listed >= 0.9 * $expected
                 && @ends >= 3 && (grep { $_->[1] >= int($_->[0]) - 1 } @ends) == @ends
                 && $first->[1] <= $t0 + $took + 30 ? 1 : 0, 1,
                 "prefork: the status page shows the sync's progress and expected end "
                 . "(sync_expected $expected, sync_listed $listed)");
    }
    my ($lost, $stale, $detail) = audit($where, $want);
    diag($_) for @{$detail}[0 .. ($#$detail < 4 ? $#$detail : 4)];
    ok t_cmp("$lost $stale", '0 0', "$mpm: every one of the $N sessions where PHP reads it");

    if ($mpm eq 'prefork') {
        # --- SIGKILL of the checker process ---------------------------------
        my $pid = checker_of($in);
        my $m = $in->log_mark;
        kill 'KILL', $pid;
        my $resumed = $in->log_wait(3, $m, qr/MEMSESS0023: checking resumed in process \d+: process \Q$pid\E stopped/);
        my ($child) = ($resumed // '') =~ /resumed in process (\d+)/;
        my $restarted = $in->log_wait(5, $m, qr/MEMSESS0194: the checker process died \(signal 9\): restarted as pid (\d+)/);
        my ($new) = ($restarted // '') =~ /as pid (\d+)/;
        # (a child at its next tick, or the new process when the parent
        # forked it first: both seen)
        my $by = !$child ? 'nobody'
               : $new && $child == $new ? "the new checker process ($child)" : "a child ($child)";
        ok t_cmp($child && (($new && $child == $new) || comm_of($child) ne 'memsess-check') ? 1 : 0, 1,
                 "SIGKILL of the checker process $pid: checking resumes at once, in $by");
        ok t_cmp($new && $new != $pid ? 1 : 0, 1, "the parent forks a new checker process ($new)");
        # (or the child that took over ended meanwhile: the MPM ends
        # children under this load)
        my $back = wait_for(5, sub { my $c = checker_of($in); $new && $c && $c == $new });
        my $handed = $in->log_since($m) =~ /MEMSESS0190: process \Q$child\E hands checking back to the checker process \Q$new\E/;
        my $itself = $child && $new && $child == $new;
        ok t_cmp(defined $back && ($handed || $itself || ended($child)) ? 1 : 0, 1,
                 'checking goes back to it: the child hands it back (MEMSESS0190) '
                 . ($handed ? '' : $itself ? '(it had resumed there)' : '(the child had ended)'));
        my $c0 = (($in->status || {})->{servers} || [{}])->[0]{checks} // 0;
        ok t_cmp(defined(wait_for(3, sub { ((($in->status || {})->{servers} || [{}])->[0]{checks} // 0) > $c0 + 2 })) ? 1 : 0, 1,
                 'and it checks (the checks counter moves)');

        # --- a graceful --------------------------------------------------------
        $pid = checker_of($in);
        $m = $in->log_mark;
        $in->graceful;
        my $forked = $in->log_wait(5, $m, qr/MEMSESS0192: the checker process \(pid (\d+)\)/);
        my ($g) = ($forked // '') =~ /pid (\d+)/;
        my $gone = wait_for(5, sub { !kill 0, $pid });
        my $checks = wait_for(5, sub { my $c = checker_of($in); $g && $c && $c == $g });
        ok t_cmp($g && $g != $pid && defined $gone && defined $checks ? 1 : 0, 1,
                 "graceful: the old checker process ($pid) ended, the new one ($g) checks");
        ok t_cmp(scalar(() = $in->log_since($m) =~ /MEMSESS003[23]:|exit signal/g), 0,
                 'graceful: nothing was cut short, nothing crashed');

        # --- a graceful in the middle of a sync: the next one resumes -------
        # CP3 killed and restarted empty again; its sync (MemsessSyncRate
        # 2000: seconds) is stopped by a graceful 1.5 s in.  The new
        # checker process resumes it: what the stopped sync copied is kept
        # (a delta sync: what changed since the outage began, and what the
        # server lacks), not looked at again (a full sync looks up every
        # key at the server: 5 times as many here, at MemsessSyncRate)
        memc_kill('MEMC_CP3');
        wait_for(10, sub { $in->server_state('MEMC_CP3') eq 'down' });
        $m = $in->log_mark;
        memc_start('MEMC_CP3');
        my $began = $in->log_wait(15, $m, qr/MEMSESS0030: .*\Q$a3\E/);
        sleep 1.5;
        $in->graceful;
        my $back3 = wait_for(60, sub { $in->server_state('MEMC_CP3') eq 'up' });
        my $glog = $in->log_since($m);
        my @syncs = grep { /MEMSESS0(?:03[13]|205): .*\Q$a3\E/ } split /\n/, $glog;
        diag $_ for @syncs;
        # (stopped with its checker: the server stays out, MEMSESS0205)
        my ($first) = grep { /MEMSESS0205:/ } @syncs;
        my ($then) = grep { /MEMSESS0031:/ } @syncs;
        my ($examined) = ($then // '') =~ /: (\d+) keys examined/;
        my ($full) = ($synced // '') =~ /: (\d+) keys examined/;
        ok t_cmp($began && $first && $back3 && ($then // '') =~ /; resumed: / ? 1 : 0, 1,
                 'a sync stopped by a graceful is resumed by the next checker process (MEMSESS0031 "resumed")');
        ok t_cmp(defined $examined && $full && $examined < 0.5 * $full ? 1 : 0, 1,
                 'what the stopped sync copied is not looked at again ('
                 . ($examined // '?') . ' keys examined, where the full sync of the same server examined '
                 . ($full // '?') . ')');
        my ($lost3, $stale3, $detail3) = audit($where, $want);
        diag($_) for @{$detail3}[0 .. ($#$detail3 < 4 ? $#$detail3 : 4)];
        ok t_cmp("$lost3 $stale3", '0 0', "after the resumed sync, every one of the $N sessions where PHP reads it");
    }
    $in->stop;
}

# --- MemsessCheckerProcess Off ------------------------------------------------
{
    memc_stop(@CP);
    memc_start(@CP);
    my $in = Memsess::Instance->new(name => 'checker_off', conf => <<'EOF');
MemsessServers ${MEMC_CP1} ${MEMC_CP2}
MemsessCheckerProcess Off
EOF
    $in->start;
    wait_for(5, sub { checker_of($in) });
    my $pid = checker_of($in);
    ok t_cmp($in->log_since(0) =~ /MEMSESS0195: no checker process \(MemsessCheckerProcess Off\)/ ? 1 : 0, 1,
             'Off: no checker process (MEMSESS0195)');
    ok t_cmp($pid && comm_of($pid) ne 'memsess-check'
             && (grep { $_ == $pid } $in->children)
             && !(grep { comm_of($_) eq 'memsess-check' } $in->children) ? 1 : 0, 1,
             "Off: a child checks ($pid)");
    ok t_cmp(defined(wait_for(5, sub { 2 == grep { $in->server_state($_) eq 'up' } @CP[0, 1] })) ? 1 : 0, 1,
             'Off: the servers are up');
    $in->stop;
}
memc_stop(@CP);
