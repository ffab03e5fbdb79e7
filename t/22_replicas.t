# Issue 3: sessions survive the loss of the server they lived on.  Thirty
# users log in on a pool of three servers (each session stored on
# MemsessReplicas + 1 of them), one server is killed, and once it is down
# every user comes back:
#   (a) MemsessFailover successor + MemsessReplicas 1: the dead server's
#       place in the list goes to the next live one, which holds its
#       replicas: no session is lost;
#   (b) MemsessFailover drop + MemsessReplicas 2 (every session on every
#       server): none is lost;
#   (c) drop + MemsessReplicas 1: consistent hashing moves the dead
#       server's keys where the replica may not be; how many are lost is
#       only reported (docs/operations.md, "Replicas").
# The three vhosts share the servers R1-R3; each phase starts them empty.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Memsess::Test;

my $USERS = 30;

plan tests => 33;

my @R = map { "MEMC_$_" } qw(R1 R2 R3);
my %V = (drop1 => 'memsess_replicas', successor => 'memsess_successor',
         drop2 => 'memsess_replicas2');

memc_start(@R);
ok t_cmp(defined wait_states(10, 'up', @R) ? 1 : 0, 1, 'status: the three servers are up');

# --- what each vhost injects ----------------------------------------------------

{
    my $i = info($V{drop1}) || {};
    ok t_cmp($i->{save_path}, addrs(@R), 'drop, 1 replica: session.save_path lists the pool');
    ok t_cmp($i->{replicas}, '1', 'drop, 1 replica: memcached.sess_number_of_replicas = 1');
    ok t_cmp($i->{binary_protocol}, '1', 'drop, 1 replica: memcached.sess_binary_protocol = 1');
    ok t_cmp($i->{consistent_hash}, '1', 'drop, 1 replica: memcached.sess_consistent_hash = 1');

    $i = info($V{successor}) || {};
    ok t_cmp($i->{save_path}, addrs(@R), 'successor: session.save_path lists the pool');
    ok t_cmp($i->{replicas}, '1', 'successor: memcached.sess_number_of_replicas = 1');
    ok t_cmp($i->{binary_protocol}, '1', 'successor: memcached.sess_binary_protocol = 1');
    ok t_cmp($i->{consistent_hash}, '0',
             'successor: memcached.sess_consistent_hash = 0 (positions decide)');

    $i = info($V{drop2}) || {};
    ok t_cmp($i->{replicas}, '2', 'drop, 2 replicas: memcached.sess_number_of_replicas = 2');
    ok t_cmp($i->{consistent_hash}, '1', 'drop, 2 replicas: memcached.sess_consistent_hash = 1');
}

# The replica settings belong to their vhost only, request by request, even
# when one child serves several vhosts in turn.
{
    my @seen;
    for (1 .. 4) {
        my @r = map { (info($_) || {})->{replicas} // 'x' }
                'memsess_pool_a', $V{drop1}, $V{drop2};
        push @seen, join '/', @r;
    }
    ok t_cmp(join(' ', @seen), join(' ', ('1/1/2') x 4),
             'replicas: 1 in pool_a (the default for two servers), 1 and 2 in the replica vhosts, on every request');
}

# --- helpers ------------------------------------------------------------------------

# Every user visits session.php once; returns the users whose session was
# gone (n started again).
sub visit_all {
    my ($vhost, $users) = @_;
    my @lost;
    for my $u (@$users) {
        my ($d, $res) = get_json($u->{ua}, $vhost, '/memsess/session.php');
        my $want = $u->{n} + 1;
        if ($d && $d->{n} == $want && $d->{written}) {
            $u->{id} = $d->{session_id};
        }
        else {
            push @lost, $d ? "n=$d->{n} (wanted $want)" : $res->status_line;
        }
        $u->{n} = $d ? $d->{n} : 0;
    }
    return @lost;
}

# Which servers hold each user's session: [names] per user.
# Where each user's session is, once each is on $copies servers or a
# second has passed: php-memcached's replica write is a quiet set, sent as
# its request closes the connection, which can be after the answer.
sub holders {
    my ($users, $copies) = @_;
    my @h;
    wait_for(1, sub {
        @h = map { [ memc_holders(session_key($_->{id} // 'none'), @R) ] } @$users;
        return !grep { @$_ != $copies } @h;
    });
    return @h;
}

# The list successor injects when $dead is down: every position kept, the
# dead one's taken by the next live server after it.
sub successor_list {
    my $dead = shift;
    my @out;
    for my $k (0 .. $#R) {
        my $j = $k;
        $j = ($j + 1) % @R while $R[$j] eq $dead;
        push @out, $R[$j];
    }
    return addrs(@out);
}

# Starts a phase: the servers empty and up, the vhost seeing all three;
# $USERS users logged in.  Returns the users.
sub fresh_users {
    my ($label, $vhost) = @_;
    my $mark = log_mark();
    my @restarted;
    for my $n (@R) {
        if (memc_alive($n)) {
            memc_cmd($n, 'flush_all');
        }
        else {
            memc_start($n);
            push @restarted, $n;
        }
    }
    my $ok = wait_states(pass_deadline() + 2, 'up', @R)
             && wait_live($vhost, '3/3', 2);
    die "$label: the three servers are not up again" unless $ok;
    # A restarted server's rejoin goes on for a second after its flip,
    # bringing over what requests with the list before wrote meanwhile,
    # for every vhost's placement (the three vhosts share these servers
    # and their key names): a session written in that second by one vhost
    # may get a copy where another vhost's list places it.  This scenario
    # is about where PHP puts a session: it logs in after that second.
    for my $n (@restarted) {
        my $a = addr($n);
        log_wait(pass_deadline() + 5, $mark, qr/MEMSESS0035: memcached server \Q$a\E:/)
            // die "$label: the rejoin of $n did not end";
    }
    my @users = map { { ua => new_ua(), n => 0 } } 1 .. $USERS;
    my @bad = visit_all($vhost, \@users);
    ok t_cmp("@bad", '', "$label: $USERS users log in");
    return @users;
}

# Kills $victim and waits until it is down.
sub kill_and_wait {
    my ($label, $victim, $why) = @_;
    memc_kill($victim);
    my $dt = wait_states(fail_deadline(), 'down', $victim);
    ok t_cmp(defined $dt ? 1 : 0, 1, "$label: $victim ($why) killed and marked down");
}

# --- (a) successor, one replica ------------------------------------------------------

{
    my $L = 'successor, 1 replica';
    my @users = fresh_users($L, $V{successor});
    my @h = holders(\@users, 2);
    ok t_cmp(join(',', grep { @{ $h[$_] } != 2 } 0 .. $#h), '',
             "$L: every session is on 2 servers (primary and replica)");
    # With positions kept, a session on R[k] and R[k+1] has R[k] as primary.
    my %primary;
    for my $hs (@h) {
        next unless @$hs == 2;
        my %in = map { $_ => 1 } @$hs;
        my ($p) = grep { $in{ $R[$_] } && $in{ $R[ ($_ + 1) % @R ] } } 0 .. $#R;
        $primary{ $R[$p] }++ if defined $p;
    }
    diag "$L: primary for " . join(', ', map { "$_=" . ($primary{$_} // 0) } @R);
    my ($victim) = sort { ($primary{$b} // 0) <=> ($primary{$a} // 0) || $a cmp $b } @R;
    ok t_cmp(($primary{$victim} // 0) > 0 ? 1 : 0, 1,
             "$L: $victim is the primary of " . ($primary{$victim} // 0) . " users");
    kill_and_wait($L, $victim, "primary of " . ($primary{$victim} // 0));
    my $i = info($V{successor}) || {};
    ok t_cmp($i->{save_path}, successor_list($victim),
             "$L: session.save_path has the successor in the dead server's place");
    ok t_cmp($i->{env}{MEMSESS_LIVE}, '2/3', "$L: MEMSESS_LIVE is 2/3");
    ok t_cmp($i->{consistent_hash}, '0', "$L: still modulo hashing");
    my @lost = visit_all($V{successor}, \@users);
    diag sprintf '%s: %d of %d sessions lost', $L, scalar @lost, $USERS;
    ok t_cmp(scalar @lost, 0, "$L: no session is lost when its primary dies");
    @lost = visit_all($V{successor}, \@users);
    ok t_cmp(scalar @lost, 0, "$L: and the users keep them on the next visit");
}

# --- drop: (b) two replicas, (c) one --------------------------------------------------

# Logs $USERS users in on a drop vhost with $copies copies of each session,
# kills the server holding the most and returns the users who lost theirs.
sub drop_phase {
    my ($L, $vhost, $copies) = @_;
    my @users = fresh_users($L, $vhost);
    my @h = holders(\@users, $copies);
    ok t_cmp(join(',', grep { @{ $h[$_] } != $copies } 0 .. $#h), '',
             "$L: every session is on $copies servers");
    my %on;
    $on{$_}++ for map { @$_ } @h;
    my ($victim) = sort { ($on{$b} // 0) <=> ($on{$a} // 0) || $a cmp $b } @R;
    kill_and_wait($L, $victim, 'holds ' . ($on{$victim} // 0) . ' sessions');
    my $i = info($vhost) || {};
    ok t_cmp($i->{save_path}, addrs(grep { $_ ne $victim } @R),
             "$L: the dead server is dropped from session.save_path");
    return visit_all($vhost, \@users);
}

{
    my $L = 'drop, 2 replicas';
    my @lost = drop_phase($L, $V{drop2}, 3);
    diag sprintf '%s: %d of %d sessions lost', $L, scalar @lost, $USERS;
    ok t_cmp(scalar @lost, 0, "$L: no session is lost");
}

{
    my $L = 'drop, 1 replica';
    my @lost = drop_phase($L, $V{drop1}, 2);
    diag sprintf '%s: %d of %d sessions lost (not asserted: consistent hashing '
        . 'moves keys where the replica may not be)', $L, scalar @lost, $USERS;
}

# --- a server that comes back ----------------------------------------------------------

{
    my $L = 'after the outage';
    my ($dead) = grep { !memc_alive($_) } @R;
    memc_start($dead);
    my $dt = wait_states(up_deadline(), 'up', $dead);
    ok t_cmp(defined $dt ? 1 : 0, 1, "$L: $dead restarted empty and up again");
    ok t_cmp((info($V{successor}) || {})->{save_path}, addrs(@R),
             "$L: successor: every server back in its own place");
    ok t_cmp((info($V{drop1}) || {})->{save_path}, addrs(@R),
             "$L: drop: back in config order");
}

memc_stop(@R);
