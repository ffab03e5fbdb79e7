# Issue 3: with MemsessReplicas 1 a session survives the loss of the server
# it lived on: users log in on a three-server pool, the server holding the
# most sessions is killed, and once it is down every user still has the
# session (n keeps counting).  The server comes back (empty), and the same
# again for the server then holding the most sessions.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Memsess::Test;

my $USERS = 12;

plan tests => 16;

my $V = 'memsess_replicas';
my @R = qw(R1 R2 R3);

memc_start(@R);
ok t_cmp(defined wait_states(10, 'up', @R) ? 1 : 0, 1, 'status: the three servers are up');

my $i = info($V) || {};
ok t_cmp($i->{save_path}, addrs(@R), 'session.save_path lists the pool');
ok t_cmp($i->{replicas}, '1', 'memcached.sess_number_of_replicas = 1');
ok t_cmp($i->{binary_protocol}, '1', 'memcached.sess_binary_protocol = 1');
ok t_cmp($i->{consistent_hash}, '1', 'memcached.sess_consistent_hash = 1');

# The replica settings belong to this vhost only, request by request, even
# when one child serves both vhosts in turn.
{
    my @seen;
    for (1 .. 4) {
        my $pa = info('memsess_pool_a') || {};
        my $r = info($V) || {};
        push @seen, ($pa->{replicas} // 'x') . '/' . ($r->{replicas} // 'x');
    }
    ok t_cmp(join(' ', @seen), join(' ', ('0/1') x 4),
             'replicas: 0 in pool_a, 1 in the replicas vhost, on every request');
}

# Log in.
my @users = map { { ua => new_ua(), n => 0 } } 1 .. $USERS;
sub visit_all {
    my @bad;
    for my $u (@users) {
        my ($d, $res) = get_json($u->{ua}, $V, '/memsess/session.php');
        my $want = $u->{n} + 1;
        if ($d && $d->{n} == $want && $d->{written}) {
            $u->{n} = $want;
            $u->{id} = $d->{session_id};
        }
        else {
            push @bad, $d ? "n=$d->{n} (wanted $want)" : $res->status_line;
            $u->{n} = $d ? $d->{n} : 0;
        }
    }
    return @bad;
}
my @bad = visit_all();
ok t_cmp("@bad", '', "$USERS users log in");

my %on;    # server => sessions it holds
my $copies = 0;
for my $u (@users) {
    my @h = memc_holders(session_key($u->{id} // 'none'), @R);
    $copies += @h;
    $on{$_}++ for @h;
}
diag "copies of $USERS sessions: $copies; per server: " .
    join(', ', map { "$_=" . ($on{"MEMC_$_"} // 0) } @R);
ok t_cmp($copies, 2 * $USERS, 'every session is stored twice (primary and one replica)');

for my $round (1, 2) {
    # the live server holding the most sessions
    my ($victim) = sort { ($on{$b} // 0) <=> ($on{$a} // 0) || $a cmp $b }
                   grep { memc_alive($_) } map { "MEMC_$_" } @R;
    my $held = $on{$victim} // 0;
    memc_kill($victim);
    my $dt = wait_states(fail_deadline(), 'down', $victim);
    ok t_cmp(defined $dt ? 1 : 0, 1, "round $round: $victim (held $held sessions) killed and marked down");
    my @live = grep { $_ ne $victim } map { "MEMC_$_" } @R;
    $i = info($V) || {};
    ok t_cmp($i->{save_path}, addrs(@live), "round $round: it is gone from session.save_path");

    @bad = visit_all();
    ok t_cmp("@bad", '', "round $round: every user still has the session after its server died");

    # bring it back empty, as a restarted memcached is
    memc_start($victim);
    $dt = wait_states(pass_deadline(), 'up', $victim);
    ok t_cmp(defined $dt ? 1 : 0, 1, "round $round: $victim restarted empty and up again");
    # Not part of the contract: php-memcached reads a key from its primary
    # only, so sessions whose primary is the empty newcomer start afresh.
    @bad = visit_all();
    diag sprintf 'round %d: %d of %d sessions restarted when %s came back empty',
        $round, scalar @bad, $USERS, $victim;

    %on = ();
    for my $u (@users) {
        $on{$_}++ for memc_holders(session_key($u->{id} // 'none'), @R);
    }
}

memc_stop(@R);
