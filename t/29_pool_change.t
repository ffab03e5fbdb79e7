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
#   (b) MemsessReplicas 0 (drop, ketama): the same;
#   (c) the placement changed, the servers the same: MemsessReplicas 1 -> 0
#       (successor, modula -> drop, ketama), 0 -> 1, and MemsessFailover
#       successor -> drop: each rebalanced as a list change is (PHP keeps
#       the placement in force until the flip), 0 lost, 0 stale;
#   (d) a server added whose memcached refuses `lru_crawler metadump`
#       (-o no_lru_crawler): the sessions cannot be moved, so the new list
#       is published at once with a WARN, not retried for good.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use File::Spec::Functions qw(catfile);
use Time::HiRes qw(time sleep);
use Memsess::Test;
use Memsess::Instance;
use Memsess::Load;

plan tests => 2 * 13 + 4 + 3 * 5 + 3 + 5;

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
    sleep 1;
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
        sleep 1;
    }
    stop_load($stop, @pids);
    load_verdict($label, $log, $t_load, 'grow, shrink and replace');
    return $in;
}

# The verdict on the load's answers since $t_load: three checks.
sub load_verdict {
    my ($label, $log, $t_load, $through) = @_;
    my $c = judge($log, $t_load);
    diag(sprintf "$label: %d requests, %d ok, %d lost, %d stale, %d failed",
                 @{$c}{qw(requests ok lost stale failed)});
    diag($_) for grep { defined } @{ $c->{detail} }[0 .. 9];
    ok t_cmp($c->{requests} > 200 ? 1 : 0, 1, "$label: under load ($c->{requests} requests)");
    ok t_cmp($c->{lost}, 0, "$label: no session lost through $through");
    ok t_cmp($c->{stale}, 0, "$label: no stale session");
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

# (the plain pass only, for the suite's time: (c) moves pools from and to
# drop under ASan too)
if ($ENV{MEMSESS_TEST_SANITIZED}) {
    skip('the plain pass only (the suite\'s time)', 1, 1) for 1 .. 13;
}
else {
    $in = scenario('drop', 'pool_change_r0', "MemsessReplicas 0\n",
                   [qw(MEMC_PD1 MEMC_PD2 MEMC_PD3)], 'MEMC_PD4', 'MEMC_PD2', 'MEMC_PD5');
    $in->stop;
    memc_stop(memc_names(qr/^MEMC_PD/));
}

# --- (c) the placement changed: MemsessReplicas, MemsessFailover -----------------

# What PHP is told about placement: "replicas/consistent_hash".
sub placement {
    my $in = shift;
    my ($i) = Memsess::Load::session_req($in, new_ua(), 'info.php');
    return $i ? ($i->{replicas} // '-') . '/' . ($i->{consistent_hash} // '-') : 'none';
}

my @pe = qw(MEMC_PE1 MEMC_PE2 MEMC_PE3);
memc_start(@pe);
$in = Memsess::Instance->new(name => 'pool_change_placement', php => 1,
    conf => 'MemsessServers ' . join(' ', map { "\${$_}" } @pe) . "\n");
$in->start;
wait_for(10, sub { (pool_status($in)->{published} // '') eq addrs(@pe) });
{
    my $log = catfile($in->dir, 'load');
    my $stop = catfile($in->dir, 'load.stop');
    my @pids = start_load($in, $log, $stop);
    sleep 1;
    my $t_load = time;
    for my $step (['MemsessReplicas 1 -> 0 (successor -> drop)', "MemsessReplicas 0\n", '0/1'],
                  ['MemsessReplicas 0 -> 1 (drop -> successor)', '', '1/0'],
                  ['MemsessFailover successor -> drop', "MemsessFailover drop\n", '1/1']) {
        my ($what, $extra, $want) = @$step;
        my $mark = $in->log_mark;
        set_pool($in, $extra, @pe);
        my $t0 = time;
        $in->graceful;
        my $done = $in->log_wait(60, $mark, qr/MEMSESS0136: /);
        my $took = wait_for(30, sub { (pool_status($in)->{rebalance}{state} // '') eq 'none' }, 0.05);
        my $text = $in->log_since($mark);
        ok t_cmp($text =~ /MEMSESS0141: .*the placement changed/ ? 1 : 0, 1,
                 "placement: $what: NOTICE that the previous placement stays in force");
        ok t_cmp(($done && defined $took) ? 1 : 0, 1, "placement: $what: rebalanced, then published");
        diag(sprintf "placement: $what: published %.1f s after graceful; %s", time - $t0, $done // 'no end NOTICE');
        ok t_cmp($text =~ /MEMSESS0130: / ? 1 : 0, 0, "placement: $what: not published at once (no MEMSESS0130)");
        ok t_cmp(pool_status($in)->{published} // '', addrs(@pe), "placement: $what: the same servers published");
        ok t_cmp(placement($in), $want, "placement: $what: PHP gets the new placement (replicas/consistent_hash)");
        sleep 1;
    }
    stop_load($stop, @pids);
    load_verdict('placement', $log, $t_load, 'replicas 1 -> 0 -> 1 and successor -> drop');
}
$in->stop;
memc_stop(@pe);

# --- (d) a server that cannot list its keys -------------------------------------

memc_opts(['-o', 'no_lru_crawler'], 'MEMC_PE6');
my @pf = qw(MEMC_PE4 MEMC_PE5);
memc_start(@pf, 'MEMC_PE6');
$in = Memsess::Instance->new(name => 'pool_change_nolist', php => 1,
    conf => 'MemsessServers ' . join(' ', map { "\${$_}" } @pf) . "\n");
$in->start;
wait_for(10, sub { (pool_status($in)->{published} // '') eq addrs(@pf) });
{
    my $ua = new_ua();
    Memsess::Load::session_req($in, $ua, 'session.php') for 1 .. 3;
    my ($took, $seen, $text) = change_pool($in, '', @pf, 'MEMC_PE6');
    ok t_cmp(defined $took && $took < 15 ? 1 : 0, 1,
             sprintf 'no lru_crawler: the new list is published (%.1f s after graceful)', $took // -1);
    my ($warn) = grep { /MEMSESS0142: / } split /\n/, $text;
    ok t_cmp($warn // '', qr/\[memsess:warn\].*cannot list its keys: CLIENT_ERROR lru crawler disabled.*published at once.*logged out/,
             'no lru_crawler: a WARN says the sessions could not be moved, and who is logged out');
    ok t_cmp($text =~ /MEMSESS0138: / ? 1 : 0, 0, 'no lru_crawler: not retried (no MEMSESS0138)');
    ok t_cmp((pool_status($in)->{rebalance} || {})->{runs} // 0, 1, 'no lru_crawler: one run');
    my ($d) = Memsess::Load::session_req($in, $ua, 'session.php');
    ok t_cmp($d && $d->{n} ? 1 : 0, 1, 'no lru_crawler: sessions work on the new list (n=' . ($d ? $d->{n} : '-') . ')');
}
$in->stop;
memc_stop(@pf, 'MEMC_PE6');
