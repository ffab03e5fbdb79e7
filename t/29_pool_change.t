# Issue 12: changing the pool logs nobody out.  Users in parallel, each with
# a counter in its session, request without pause while MemsessServers is
# rewritten and Apache is gracefully restarted three times: a server added
# (3 -> 4), one removed while it still runs (4 -> 3, a drain), and one
# replaced by another (same size).  Each time the new generation keeps
# publishing the list in force until the rebalance has moved every session,
# then publishes the new one:
#   (a) the defaults (replicas 1, successor): 0 lost, 0 stale, 0 failed;
#       and a server added while it is down publishes nothing new until it
#       is up;
#   (b) MemsessReplicas 0 (drop, ketama): the same.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use File::Spec::Functions qw(catfile);
use Time::HiRes qw(time sleep);
use Memsess::Test;
use Memsess::Instance;
use Memsess::Load;

plan tests => 2 * 13 + 4;

# The instance's pool is the first (only) one of its status page.
sub pool_status {
    my $in = shift;
    my $st = $in->status or return {};
    return $st->{pools} && $st->{pools}[0] ? $st->{pools}[0] : {};
}

sub set_pool {
    my ($in, $extra, @names) = @_;
    $in->{conf} = 'MemsessServers ' . join(' ', map { "\${$_}" } @names) . "\n$extra";
    $in->write_conf;
}

# Rewrites the pool, restarts gracefully, and waits until the new list is
# published.  Returns (seconds to publish or undef, states seen meanwhile,
# the log since).
sub change_pool {
    my ($in, $extra, @names) = @_;
    my $mark = $in->log_mark;
    set_pool($in, $extra, @names);
    my $t0 = time;
    $in->graceful;
    my $want = addrs(@names);
    my %seen;
    my $took = wait_for(90, sub {
        my $p = pool_status($in);
        my $state = $p->{rebalance} ? $p->{rebalance}{state} : '';
        $seen{$state}++ if $state;
        return $state eq 'none' && ($p->{published} // '') eq $want;
    }, 0.05);
    return (defined $took ? time - $t0 : undef, \%seen, $in->log_since($mark));
}

sub scenario {
    my ($label, $name, $extra, $start, $add, $remove, $replace_by) = @_;
    my @pool = @$start;
    memc_start(@pool, $add, $replace_by);
    my $in = Memsess::Instance->new(name => $name, php => 1,
        conf => 'MemsessServers ' . join(' ', map { "\${$_}" } @pool) . "\n$extra");
    $in->start;
    ok t_cmp(defined(wait_for(10, sub { (pool_status($in)->{published} // '') eq addrs(@pool) })) ? 1 : 0, 1,
             "$label: three servers published");
    my $log = catfile($in->dir, 'load');
    my $stop = catfile($in->dir, 'load.stop');
    my @pids = start_load($in, $log, $stop);
    sleep 2;
    my $t_load = time;

    my @steps = (
        [ 'grown 3 -> 4', [ @pool, $add ] ],
        [ 'shrunk 4 -> 3 (a drain)', [ grep { $_ ne $remove } @pool, $add ] ],
    );
    my @after_remove = @{ $steps[1][1] };
    push @steps, [ 'a server replaced', [ map { $_ eq $after_remove[-2] ? $replace_by : $_ } @after_remove ] ];
    for my $step (@steps) {
        my ($what, $names) = @$step;
        my ($took, $seen, $text) = change_pool($in, $extra, @$names);
        ok t_cmp(defined $took ? 1 : 0, 1, "$label: $what: the new list is published after the rebalance");
        diag(sprintf "$label: $what: published %.1f s after graceful; states seen: %s",
                     $took // -1, join(', ', map { "$_ x$seen->{$_}" } sort keys %$seen));
        my $rb = pool_status($in)->{rebalance} || {};
        ok t_cmp(($rb->{runs} // 0) >= 1 && defined $rb->{examined} ? 1 : 0, 1,
                 "$label: $what: status ?json: the pool's rebalance ran ($rb->{runs} run(s), "
                 . ($rb->{examined} // '?') . " keys examined)");
        my ($done) = grep { /MEMSESS0136: / } split /\n/, $text;
        ok t_cmp(($text =~ /MEMSESS0135: / && $done) ? 1 : 0, 1, "$label: $what: NOTICE at start and end");
        diag("$label: $what: " . ($done // 'no end NOTICE'));
        sleep 2;
    }
    stop_load($stop, @pids);
    my $c = judge($log, $t_load);
    diag(sprintf "$label: %d requests, %d ok, %d lost, %d stale, %d failed",
                 @{$c}{qw(requests ok lost stale failed)});
    diag($_) for grep { defined } @{ $c->{detail} }[0 .. 9];
    ok t_cmp($c->{requests} > 200 ? 1 : 0, 1, "$label: under load ($c->{requests} requests)");
    ok t_cmp($c->{lost}, 0, "$label: no session lost through grow, shrink and replace");
    ok t_cmp($c->{stale}, 0, "$label: no stale session");
    return $in;
}

# --- (a) the defaults: replicas 1, successor -----------------------------------

my $in = scenario('successor', 'pool_change', '',
                  [qw(MEMC_PC1 MEMC_PC2 MEMC_PC3)], 'MEMC_PC4', 'MEMC_PC2', 'MEMC_PC5');
{
    my ($i) = Memsess::Load::session_req($in, new_ua(), 'info.php');
    ok t_cmp(($i && $i->{consistent_hash} // 'x') . '', '0', 'successor: modula placement (sess_consistent_hash=0)');
}

# a server added while it is down: nothing new is published until it is up
my $now = pool_status($in)->{published};
my @names = map { my $a = $_; (grep { addr($_) eq $a } memc_names(qr/^MEMC_PC/))[0] } split /,/, $now;
my $mark = $in->log_mark;
set_pool($in, '', @names, 'MEMC_PC6');
$in->graceful;
ok t_cmp(defined($in->log_wait(15, $mark, qr/MEMSESS0140: /)) ? 1 : 0, 1,
         'a server added while down: NOTICE that the previous list stays');
ok t_cmp(pool_status($in)->{published} // '', $now, 'a server added while down: the list in force stays published');
memc_start('MEMC_PC6');
ok t_cmp(defined(wait_for(60, sub { (pool_status($in)->{published} // '') eq addrs(@names, 'MEMC_PC6') })) ? 1 : 0, 1,
         'once it is up, the rebalance runs and the new list is published');
$in->stop;
memc_stop(memc_names(qr/^MEMC_PC/));

# --- (b) MemsessReplicas 0: drop (ketama) ---------------------------------------

$in = scenario('drop', 'pool_change_r0', "MemsessReplicas 0\n",
               [qw(MEMC_PD1 MEMC_PD2 MEMC_PD3)], 'MEMC_PD4', 'MEMC_PD2', 'MEMC_PD5');
$in->stop;
memc_stop(memc_names(qr/^MEMC_PD/));
