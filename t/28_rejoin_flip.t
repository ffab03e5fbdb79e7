# The flip of a rejoin (MemsessRejoin sync): a request that got the old list
# just before it writes the old place as it ends, and its user's next
# request, sent at once, reads the server that came back.  Users whose every
# other request keeps its session open 40-160 ms (some span the flip) and
# who ask again without pause, beside users of plain requests, while one
# server is frozen then thawed and another killed then restarted empty:
# the sessions guarded at the flip (MEMSESS0043) have every such write
# brought over before the next request reads them; that request waits on
# the session's lock instead, and none fails.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use File::Spec::Functions qw(catfile);
use Time::HiRes qw(time sleep);
use Memsess::Test;
use Memsess::Instance;
use Memsess::Load;

plan tests => 11;

# Polls until the server is in state; returns the time or undef.
sub wait_state {
    my ($in, $name, $want, $secs) = @_;
    return defined(wait_for($secs, sub { $in->server_state($name) eq $want }, 0.02)) ? time : undef;
}

# The NOTICEs of a return: the time of its flip (MEMSESS0031) and the
# number of sessions guarded at it (MEMSESS0043).
sub flip_of {
    my ($in, $mark, $name) = @_;
    my $ad = addr($name);
    my ($flip, $guard);
    wait_for(5, sub {
        for (split /\n/, $in->log_since($mark)) {
            $flip //= $_ if /MEMSESS0031: .*\Q$ad\E/;
            $guard //= $_ if /MEMSESS0043: .*\Q$ad\E/;
        }
        return defined $guard;
    }, 0.05);
    diag("flip: " . ($guard // 'no MEMSESS0043'));
    return (log_time($flip), $guard && $guard =~ /at its flip, (\d+) active sessions/ ? $1 : undef,
            $guard && $guard =~ /its requests waited (\d+)ms at the flip for the (\d+) that had/ ? [$1, $2] : undef);
}

# Requests of the holding users that began before a flip and ended after.
sub spanning {
    my ($file, $flip) = @_;
    my $n = 0;
    for my $f (glob "$file.*") {
        open my $fh, '<', $f or next;
        while (<$fh>) {
            my ($t0, $t1) = split;
            $n++ if defined $t1 && $t0 < $flip && $t1 > $flip;
        }
    }
    return $n;
}

my @F = qw(MEMC_FL1 MEMC_FL2 MEMC_FL3);
memc_start(@F);
my $in = Memsess::Instance->new(name => 'rejoin_flip', php => 1, conf => <<'EOF');
MemsessServers ${MEMC_FL1} ${MEMC_FL2} ${MEMC_FL3}
EOF
$in->start;
ok t_cmp(defined(wait_for(10, sub { 3 == grep { $in->server_state($_) eq 'up' } @F })) ? 1 : 0, 1,
         'the three servers are up');

my $log = catfile($in->dir, 'load');
my $hlog = catfile($in->dir, 'hold');
my $stop = catfile($in->dir, 'load.stop');
my @pids = (start_load($in, $log, $stop, procs => 3, users => 4),
            start_load($in, $hlog, $stop, procs => 6, users => 1, hold => [40, 160]));
sleep 1;

my $t_freeze = time;
memc_freeze('MEMC_FL2');
my $t_down = wait_state($in, 'MEMC_FL2', 'down', 10);
sleep 1.5;
my $mark = $in->log_mark;
memc_thaw('MEMC_FL2');
ok t_cmp(defined wait_state($in, 'MEMC_FL2', 'up', 60) ? 1 : 0, 1, 'thawed, it comes back up');
my ($flip2, $guarded2, $gate2) = flip_of($in, $mark, 'MEMC_FL2');
ok t_cmp(($guarded2 // 0) >= 1 ? 1 : 0, 1, 'its active sessions were guarded at the flip (MEMSESS0043)');
sleep 1.5;

my $t_kill = time;
memc_kill('MEMC_FL3');
my $t_down3 = wait_state($in, 'MEMC_FL3', 'down', 10);
sleep 1.5;
$mark = $in->log_mark;
memc_start('MEMC_FL3');
ok t_cmp(defined wait_state($in, 'MEMC_FL3', 'up', 60) ? 1 : 0, 1, 'restarted empty, it comes back up');
my ($flip3, $guarded3, $gate3) = flip_of($in, $mark, 'MEMC_FL3');
ok t_cmp(($guarded3 // 0) >= 1 ? 1 : 0, 1, 'refilled, its active sessions were guarded at the flip');
sleep 1.5;
stop_load($stop, @pids);

my $spans = ($flip2 ? spanning($hlog, $flip2) : 0) + ($flip3 ? spanning($hlog, $flip3) : 0);
diag("$spans requests of the holding users spanned a flip");
ok t_cmp($spans >= 1 ? 1 : 0, 1, 'requests that got the old list ended after the flip');

# the gate: at each flip, the requests that began before it were waited
# for (some were running: 9 users without pause), within its bound
my @gates = grep { defined } $gate2, $gate3;
ok t_cmp((@gates == 2 && !grep { $_->[1] < 1 || $_->[0] > 400 } @gates) ? 1 : 0, 1,
         'at each flip, requests waited for those that had the old list (' . join(', ', map { "$_->[0] ms for $_->[1]" } @gates) . ')');

my @windows = ([$t_freeze, ($t_down // time) + 0.3], [$t_kill, ($t_down3 // time) + 0.3]);
my $c = judge($log, 0, @windows);
my $h = judge($hlog, 0, @windows);
diag(sprintf "%s: %d requests, %d judged ok, %d lost, %d stale, %d failed after detection",
             @$_) for ['plain users', @{$c}{qw(requests ok lost stale failed)}],
                      ['holding users', @{$h}{qw(requests ok lost stale failed)}];
diag($_) for grep { defined } (@{ $h->{detail} }, @{ $c->{detail} })[0 .. 9];
ok t_cmp($c->{requests} > 100 && $h->{requests} > 50 ? 1 : 0, 1, 'under load');
ok t_cmp($c->{lost} + $h->{lost}, 0, 'no session lost');
ok t_cmp($c->{stale} + $h->{stale}, 0, 'no stale session: a write of the old list is read by the next request');
ok t_cmp($c->{failed} + $h->{failed}, 0, 'no failed request: none waits out its lock');
$in->stop;
memc_stop(@F);
