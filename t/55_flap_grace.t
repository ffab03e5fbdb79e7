# Issue 20: a server that goes again while the passes after its last
# sync's flip still run (the grace: a watch of the active sessions, a
# second, a last pass; the job record stays `done` through it).
#
# Three memcached at the defaults, users with counters requesting without
# pause.  Each round: FG2 is frozen and thawed (a sync, a flip); the moment
# it is published (MEMSESS0031), before its passes after the flip end
# (MEMSESS0035), it goes again:
#   (a) frozen again, thawed: the same process, which missed what was
#       written meanwhile;
#   (b) killed and restarted empty.
# The second outage gets a sync of its own (a second MEMSESS0031; the
# first job's `done` record is never followed for it), and no user loses
# a session or reads a stale one.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use File::Spec::Functions qw(catfile);
use Time::HiRes qw(time sleep);
use Memsess::Test;
use Memsess::Instance;
use Memsess::Load;

plan tests => 2 * 5 + 3;

my @FG = qw(MEMC_FG1 MEMC_FG2 MEMC_FG3);

sub wait_state {
    my ($in, $name, $want, $secs) = @_;
    return wait_for($secs, sub { $in->server_state($name) eq $want }, 0.02);
}

memc_start(@FG);
my $in = Memsess::Instance->new(name => 'flap_grace', php => 1,
    conf => 'MemsessServers ' . join(' ', map { "\${$_}" } @FG) . "\n");
$in->start;
ok t_cmp(defined(wait_for(10, sub { 3 == grep { $in->server_state($_) eq 'up' } @FG })) ? 1 : 0, 1,
         'the three servers are up');
my $log  = catfile($in->dir, 'load');
my $stop = catfile($in->dir, 'load.stop');
my @pids = start_load($in, $log, $stop);
my $t_load = time;
sleep 2;

my $fg2 = quotemeta addr('MEMC_FG2');
for my $round (['(a) frozen again', 'freeze'], ['(b) killed and restarted empty', 'kill']) {
    my ($label, $how) = @$round;
    memc_freeze('MEMC_FG2');
    ok t_cmp(defined(wait_state($in, 'MEMC_FG2', 'down', 10)) ? 1 : 0, 1, "$label: first outage: down");
    sleep 1;
    my $mark = $in->log_mark;
    memc_thaw('MEMC_FG2');
    my $first = $in->log_wait(30, $mark, qr/MEMSESS0031: memcached server $fg2 /);
    # at once: its passes after the flip still run
    if ($how eq 'freeze') {
        memc_freeze('MEMC_FG2');
    }
    else {
        memc_kill('MEMC_FG2');
    }
    my $grace = $in->log_since($mark) !~ /MEMSESS0035: memcached server $fg2/;
    ok t_cmp(defined($first) && $grace ? 1 : 0, 1,
             "$label: published, then out again before its passes after the flip ended");
    ok t_cmp(defined(wait_state($in, 'MEMC_FG2', 'down', 10)) ? 1 : 0, 1, "$label: down again");
    sleep 1;
    my $mark2 = $in->log_mark;
    if ($how eq 'freeze') {
        memc_thaw('MEMC_FG2');
    }
    else {
        memc_start('MEMC_FG2');
    }
    my $second = $in->log_wait(30, $mark2, qr/MEMSESS0031: memcached server $fg2 /);
    diag("$label: $_") for grep { defined } $first, $second;
    ok t_cmp(defined($second) ? 1 : 0, 1, "$label: the second outage got a sync of its own");
    ok t_cmp(defined(wait_state($in, 'MEMC_FG2', 'up', 30)) ? 1 : 0, 1, "$label: up again");
    sleep 2;
}

stop_load($stop, @pids);
my $c = judge($log, $t_load);
diag(sprintf 'users: %d requests, %d ok, %d lost, %d stale, %d failed',
     @$c{qw(requests ok lost stale failed)});
diag($_) for @{ $c->{detail} }[0 .. ($#{ $c->{detail} } < 9 ? $#{ $c->{detail} } : 9)];
ok t_cmp($c->{lost}, 0, 'no user lost a session');
ok t_cmp($c->{stale}, 0, 'none read a stale one');
$in->stop;
memc_stop(@FG);
