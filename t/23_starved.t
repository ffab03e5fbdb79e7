# Issue 18: the checker on a saturated machine.  A CPU burner (stress-ng,
# two workers per core) runs beside the 50 servers of memsess_many, as PHP
# does on a busy web server: for MEMSESS_STARVE_SECONDS (8; bench/starved.sh
# runs 60) no healthy server may be marked down, syncing or anything but up.
# Then, still saturated, ten freeze: all down within a second even so (one
# quick timeout and one patient probe); one killed: down at once.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use POSIX ();
use Time::HiRes qw(time sleep);
use Memsess::Test;

my $stress = (grep { -x } map { "$_/stress-ng" } split /:/, "$ENV{PATH}:/usr/bin")[0];
plan tests => 10, need { 'stress-ng (tools/setup.sh installs it)' => defined $stress };

my $V = 'memsess_many';
my @X = memc_names(qr/^MEMC_X\d+$/);
my @frozen = @X[map { 5 * $_ - 1 } 1 .. 10];    # X05, X10, ... X50
my %is_frozen = map { $_ => 1 } @frozen;
my @others = grep { !$is_frozen{$_} } @X;
my $killed = $others[0];
# (8 s, as the sanitizer pass always had, for the suite's time: a
# healthy server marked down shows within seconds, as the bench's 60 do)
my $seconds = $ENV{MEMSESS_STARVE_SECONDS} // 8;
my $per_core = $ENV{MEMSESS_STARVE_PER_CORE} // 2;   # burners per core
my $ncpu = do { my @c = grep { /^processor\s*:/ } do { open my $f, '<', '/proc/cpuinfo'; <$f> }; @c || 1 };

memc_start(@X);
ok t_cmp(defined wait_states(30, 'up', @X) ? 1 : 0, 1, 'status: all 50 servers are up');

# the burner, in a process group of its own, stopped by its pid below
my $burner = fork // die "fork: $!";
if (!$burner) {
    POSIX::setsid();
    open STDOUT, '>', '/dev/null';
    open STDERR, '>', '/dev/null';
    # (no END blocks in this child: they would stop the servers)
    exec($stress, '--cpu', $per_core * $ncpu, '--timeout', $seconds + 60) or POSIX::_exit(127);
}
sub burner_stop {
    return unless $burner;
    kill 'KILL', -$burner;
    waitpid $burner, 0;
    $burner = 0;
}
END { burner_stop() }

sub pressure {
    open my $f, '<', '/proc/pressure/cpu' or return undef;
    my $l = <$f>;
    return $l =~ /total=(\d+)/ ? $1 : undef;
}

my $mark = log_mark();
my $p0 = pressure();
my $t0 = time;
my (%not_up, $looks);
while (time - $t0 < $seconds) {
    my $st = status();
    $looks++;
    for my $n (@X) {
        my $s = server_state($n, $st) // 'missing';
        $not_up{"$n=$s"}++ if $s ne 'up';
    }
    sleep 0.2;
}
my $p1 = pressure();
diag sprintf '%d s with %d CPU burners on %d cores: %d looks at 50 servers; '
    . 'tasks waited for a CPU %s of the time',
    $seconds, $per_core * $ncpu, $ncpu, $looks,
    defined $p0 && defined $p1 ? sprintf('%.0f%%', ($p1 - $p0) / 1e4 / (time - $t0)) : 'unknown';
ok t_cmp(join(' ', sort keys %not_up), '', 'status: every server stayed up, every look');
my $log = log_since($mark);
my @downs = grep { my $re = state_log_re($_, 'down'); $log =~ $re } @X;
ok t_cmp("@downs", '', 'error log: no server was marked down (0 false downs)');

# ten freeze, the machine still saturated
$mark = log_mark();
my $t1 = time;
memc_freeze(@frozen);
my ($down_at, $not_up) = wait_down(5, $t1, \@frozen, [grep { $_ ne $killed } @others]);
my %down_at = %$down_at;
my @others_not_up = @$not_up;
my @times = sort { $a <=> $b } values %down_at;
diag sprintf 'saturated, 10 hung of 50: first down after %s ms, last after %s ms',
    @times ? int($times[0] * 1000) : 'never',
    keys(%down_at) == @frozen ? int($times[-1] * 1000) : 'never';
ok t_cmp(scalar keys %down_at, 10, 'all ten hung servers are down');
ok t_cmp(keys(%down_at) == @frozen && $times[-1] <= 1 + Memsess::Test::margin() ? 1 : 0, 1,
         'within a second (+ the margin) even so');
ok t_cmp("@others_not_up", '', 'the forty others stayed up meanwhile');
$log = log_since($mark);
my $patient = () = $log =~ /MEMSESS\d{4}: .* is down .*within a patient/g;
diag "hung servers found down by a patient probe (the checker was late): $patient of 10";

# one killed: refused connections are conclusive at once
my $t2 = time;
memc_kill($killed);
my $took = wait_states(5, 'down', $killed);
diag sprintf 'saturated, a killed server: down after %s ms',
    defined $took ? int($took * 1000) : 'never';
ok t_cmp(defined $took && $took <= check_interval() + 0.1 + Memsess::Test::margin() ? 1 : 0, 1,
         'a killed server is down within an interval even so');

burner_stop();
memc_thaw(@frozen);
memc_start($killed);
ok t_cmp(defined wait_states(pass_deadline() + 20, 'up', @X) ? 1 : 0, 1,
         'all 50 up again once thawed and restarted');
$log = log_since($mark);
my @wrong = grep { my $re = state_log_re($_, 'down'); $log =~ $re }
            grep { $_ ne $killed } @others;
ok t_cmp("@wrong", '', 'error log: no down line for a healthy server');
my $i = info($V) || {};
ok t_cmp($i->{env}{MEMSESS_LIVE}, '50/50', 'MEMSESS_LIVE is 50/50 again');

memc_stop(@X);
