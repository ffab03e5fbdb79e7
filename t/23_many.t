# Issue 3: 50 servers, 10 of them hung at once.  Probes run concurrently, so
# all ten are marked down within one detection deadline, and the forty
# others stay up and keep being checked meanwhile.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Time::HiRes qw(time);
use Memsess::Test;

plan tests => 12;

my $V = 'memsess_many';
my @X = memc_names(qr/^MEMC_X\d+$/);
my @frozen = @X[map { 5 * $_ - 1 } 1 .. 10];    # X05, X10, ... X50
my %is_frozen = map { $_ => 1 } @frozen;
my @others = grep { !$is_frozen{$_} } @X;

memc_start(@X);
ok t_cmp(defined wait_states(15, 'up', @X) ? 1 : 0, 1, 'status: all 50 servers are up');
my $i = info($V) || {};
ok t_cmp($i->{save_path}, addrs(@X), 'session.save_path lists all 50 in config order');

sub checks_of {
    my $st = shift;
    return { map { $_ => ((status_server($st, addr($_)) || {})->{checks} // 0) } @others };
}

my $mark = log_mark();
my $t0 = time;
memc_freeze(@frozen);

# Poll until the ten are down; at every look the forty must be up.
my ($down_at, $not_up) = wait_down(fail_deadline(), $t0, \@frozen, \@others);
my %down_at = %$down_at;
my @others_not_up = @$not_up;
my @times = sort { $a <=> $b } values %down_at;
diag sprintf '10 hung of 50: first down after %s ms, last after %s ms (deadline %d ms)',
    @times ? int($times[0] * 1000) : 'never',
    keys(%down_at) == @frozen ? int($times[-1] * 1000) : 'never',
    fail_deadline() * 1000;
ok t_cmp(scalar keys %down_at, 10, 'status: all ten hung servers are down within one deadline');
ok t_cmp("@others_not_up", '', 'status: the forty others stayed up all along');

# The forty keep being probed, round after round, while ten hang.
my $c0 = checks_of(status());
my $t1 = time;
my $waited = wait_for(5, sub {
    my $c = checks_of(status());
    return !grep { $c->{$_} < $c0->{$_} + 3 } @others;
}, 0.1);
diag sprintf 'three more rounds over the 40 healthy servers took %s ms',
    defined $waited ? int($waited * 1000) : 'more than 5000';
ok t_cmp(defined $waited && $waited < 3 * check_interval() + 1 ? 1 : 0, 1,
         'the healthy servers are still checked every interval while ten hang');

my $st = status() || {};
ok t_cmp(join(',', grep { (server_state($_, $st) // '') ne 'up' } @others), '',
         'status: the forty others are still up');
ok t_cmp(join(',', grep { (server_state($_, $st) // '') ne 'down' } @frozen), '',
         'status: the ten are still down');

my $log = log_since($mark);
my @logged = grep { my $re = state_log_re($_, 'down'); $log =~ $re } @frozen;
ok t_cmp(scalar @logged, 10, 'error log: one NOTICE down line per hung server');
my @wrong = grep { my $re = state_log_re($_, 'down'); $log =~ $re } @others;
ok t_cmp("@wrong", '', 'error log: no down line for a healthy server');

$i = info($V) || {};
ok t_cmp($i->{save_path}, addrs(@others), 'session.save_path: the forty live servers in config order');
ok t_cmp($i->{env}{MEMSESS_LIVE}, '40/50', 'MEMSESS_LIVE is 40/50');

memc_thaw(@frozen);
# up once their probes pass and their rejoin syncs (MemsessRejoin sync, the
# default: each lists the keys of all fifty servers) are done
ok t_cmp(defined wait_states(pass_deadline() + 10, 'up', @frozen) ? 1 : 0, 1,
         'status: all ten are up again after SIGCONT');

memc_stop(@X);
