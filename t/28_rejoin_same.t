# Issue 18: a server that was down briefly and returns as the same
# memcached process (same pid, same start) costs a sync proportional to
# what changed during the outage, not to everything it holds.
#
# Three servers at the defaults (replicas 1, successor), a few thousand
# sessions written directly where php-memcached puts them (the sync's own
# placement, t/unit/test_sync.bin --place, which t/28_rejoin_sync.t checks
# against PHP), a few users through PHP:
#   (a) RS2 frozen (SIGSTOP), some of its users write or log out
#       meanwhile, thawed: a delta sync (MEMSESS0031 says so) examines
#       about what changed, not thousands; every session is where PHP
#       reads it, as it was last written; a logout stays a logout;
#   (b) RS3 killed and restarted (a new pid): the full sync as before,
#       every session refilled;
#   (c) the whole pool frozen, then thawed one server at a time: the
#       first has nothing to sync from, and the next ones, whose only
#       live peers came back unsynced themselves, are published as they
#       are (what the first lacks is no logout): no session lost.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use JSON::PP;
use Time::HiRes qw(time sleep);
use Memsess::Test;
use Memsess::Instance;
use Memsess::Fill;

plan tests => 26;

my $JSON   = JSON::PP->new->utf8;
my @RS     = qw(MEMC_RS1 MEMC_RS2 MEMC_RS3);
my $N      = $ENV{MEMSESS_SAME_SESSIONS} // 3000;
my $CHANGE = 10;    # users of RS2 who write during its outage
my $LOGOUT = 10;    # and who log out

# --- helpers ------------------------------------------------------------------

sub wait_state {
    my ($in, $name, $want, $secs) = @_;
    return wait_for($secs, sub { $in->server_state($name) eq $want });
}



# A request of the user whose session id is $id (no cookie jar: the id is
# the user).
sub as_user {
    my ($in, $id, $page) = @_;
    my $ua = LWP::UserAgent->new(timeout => 10, keep_alive => 0, agent => 'memsess-test');
    my $res = $ua->get($in->url("/memsess/$page"), Cookie => "PHPSESSID=$id");
    return $res->is_success ? eval { $JSON->decode($res->decoded_content) } : undef;
}



sub sync_line {
    my ($in, $mark, $name) = @_;
    my $a = addr($name);
    return (grep { /MEMSESS0031: .*\Q$a\E/ } split /\n/, $in->log_since($mark))[0] // '';
}

sub figures {
    my $line = shift;
    my %f;
    @f{qw(ms examined copied deleted)} =
        $line =~ /after (\d+)ms: (\d+) keys examined, (\d+) copied to it, (\d+) deleted/;
    ($f{listed}) = $line =~ /of (\d+) keys listed/;
    return \%f;
}

# --- the pool and its sessions ---------------------------------------------------

memc_start(@RS);
my $in = Memsess::Instance->new(name => 'rejoin_same', php => 1, conf => <<'EOF');
MemsessServers ${MEMC_RS1} ${MEMC_RS2} ${MEMC_RS3}
EOF
$in->start;
ok t_cmp(defined(wait_for(10, sub { 3 == grep { $in->server_state($_) eq 'up' } @RS })) ? 1 : 0, 1,
         'the three servers are up');

my ($filled, $where, $wanted, @ids) = fill_sessions(\@RS, 'rejoin-same', $N);
my %want = %$wanted;
ok t_cmp(scalar(grep { @{ $where->{$_} || [] } == 2 } @ids), $N,
         "$N sessions placed (a server and its replica each)");
ok t_cmp($filled ? 1 : 0, 1, 'the sessions written where php-memcached puts them');
{
    my $d = as_user($in, $ids[0], 'session.php');
    ok t_cmp($d && $d->{n}, 6, 'PHP reads a session written that way');
    $want{ $ids[0] } = 'n|i:6;';
}

# RS2's users (it is the first server of theirs) who act during its outage
my @on_rs2 = grep { $where->{$_}[0] eq 'MEMC_RS2' } @ids[1 .. $#ids];
my @changers = @on_rs2[0 .. $CHANGE - 1];
my @leavers = @on_rs2[$CHANGE .. $CHANGE + $LOGOUT - 1];
diag(scalar(@on_rs2) . " sessions on MEMC_RS2");

# older than what the delta sync looks back to when RS2 goes: its margin
# (an interval, a timeout and 3 s) and up to 2 s more as our time is put
# on each server's clock in whole seconds; a session written within that
# counts as written during the outage, and is examined
sleep 10;

# --- (a) frozen, thawed: the same process ------------------------------------------

my $pid_rs2 = memc_pid('MEMC_RS2');
memc_freeze('MEMC_RS2');
ok t_cmp(defined(wait_state($in, 'MEMC_RS2', 'down', 10)) ? 1 : 0, 1, 'frozen: down');
my ($wrote, $left) = (0, 0);
for my $id (@changers) {
    my $d = as_user($in, $id, 'session.php');
    $wrote++ if $d && $d->{n} == 6 && $d->{written};
    $want{$id} = 'n|i:6;';
}
for my $id (@leavers) {
    my $d = as_user($in, $id, 'logout.php');
    $left++ if $d && $d->{destroyed};
    $want{$id} = undef;
}
ok t_cmp("$wrote/$left", "$CHANGE/$LOGOUT", 'during the outage: users write, others log out');
sleep 1;
my $mark = $in->log_mark;
memc_thaw('MEMC_RS2');
ok t_cmp(defined(wait_state($in, 'MEMC_RS2', 'up', 60)) ? 1 : 0, 1, 'thawed: up again');
ok t_cmp(memc_pid('MEMC_RS2'), $pid_rs2, 'the same memcached process');
# the status page's word for the sync that last published a server
sub sync_mode {
    my ($in, $name) = @_;
    my $st = $in->status or return '';
    my ($s) = grep { $_->{address} eq addr($name) } @{ $st->{servers} || [] };
    return $s ? $s->{sync_mode} // '(none)' : '';
}
my $delta = sync_line($in, $mark, 'MEMC_RS2');
diag("thaw: $delta");
my $fd = figures($delta);
ok t_cmp($delta, qr/delta sync: the same memcached process/, 'MEMSESS0031: a delta sync ran');
ok t_cmp(sync_mode($in, 'MEMC_RS2'), 'delta', 'status json: sync_mode delta');
ok t_cmp(($fd->{listed} // 0) >= $N ? 1 : 0, 1, "every server was listed ($fd->{listed} keys)");
# what changed: the writers' sessions (copied), the leavers' (deleted from
# RS2), their locks; a few more where a listing missed a key
ok t_cmp(defined $fd->{examined} && $fd->{examined} <= 4 * ($CHANGE + $LOGOUT) + 20 ? 1 : 0, 1,
         "it examined about what changed ($fd->{examined} keys), not the $N sessions");
ok t_cmp(($fd->{copied} // 0) >= $CHANGE ? 1 : 0, 1, "the writes of the outage copied to it ($fd->{copied})");
my ($lost, $stale, $detail) = audit($where, \%want);
diag($_) for @$detail[0 .. ($#$detail > 9 ? 9 : $#$detail)];
ok t_cmp("$lost/$stale", '0/0', 'after the delta sync: no session lost or stale where PHP reads it');
my $still_out = 0;
for my $id (@leavers) {
    my $d = as_user($in, $id, 'session.php');
    $still_out++ if $d && $d->{n} == 1;
    # a new session, under that id unless PHP's strict mode gave another
    $want{$id} = $d && $d->{session_id} eq $id ? 'n|i:1;' : undef;
}
ok t_cmp($still_out, $LOGOUT, 'a logout during the outage stays a logout');
my $count_on = grep { my $d = as_user($in, $_, 'session.php'); $d && $d->{n} == 7 } @changers;
ok t_cmp($count_on, $CHANGE, 'a write during the outage is what PHP reads after it');
$want{$_} = 'n|i:7;' for @changers;

# --- (b) killed, restarted: a new process --------------------------------------------

memc_kill('MEMC_RS3');
ok t_cmp(defined(wait_state($in, 'MEMC_RS3', 'down', 10)) ? 1 : 0, 1, 'killed: down');
sleep 1;
$mark = $in->log_mark;
memc_start('MEMC_RS3');
ok t_cmp(defined(wait_state($in, 'MEMC_RS3', 'up', 60)) ? 1 : 0, 1, 'restarted: up again');
my $full = sync_line($in, $mark, 'MEMC_RS3');
diag("restart: $full");
my $ff = figures($full);
ok t_cmp($full, qr/full sync: /, 'MEMSESS0031: a restarted server gets the full sync');
ok t_cmp(sync_mode($in, 'MEMC_RS3'), 'full', 'status json: sync_mode full');
ok t_cmp(($ff->{examined} // 0) >= $N && ($ff->{copied} // 0) >= $N / 4 ? 1 : 0, 1,
         "it examined every key ($ff->{examined}) and refilled the server ($ff->{copied} copied)");
($lost, $stale, $detail) = audit($where, \%want);
diag($_) for @$detail[0 .. ($#$detail > 9 ? 9 : $#$detail)];
ok t_cmp("$lost/$stale", '0/0', 'after the full sync: no session lost or stale');
diag(sprintf "figures, %d sessions: delta %s ms, %s examined of %s listed, %s copied, %s deleted; "
             . "full %s ms, %s examined, %s copied", $N,
             map { $_ // '?' } @{$fd}{qw(ms examined listed copied deleted)}, @{$ff}{qw(ms examined copied)});

# --- (c) the whole pool down, back one at a time: the same processes ------------------
# The first back has nothing to sync from and is published as it is; the
# next ones must not take what it lacks for logouts (before, the second's
# sync deleted every session the first did not hold: 6,736 of 20,000 in
# t/28_sync_retry.t once): each is published as it is too, and every
# session is where it was.

memc_freeze(@RS);
ok t_cmp(defined(wait_for(15, sub { 3 == grep { $in->server_state($_) eq 'down' } @RS })) ? 1 : 0, 1,
         'the whole pool frozen: all down');
$mark = $in->log_mark;
for my $name (@RS) {
    memc_thaw($name);
    wait_state($in, $name, 'up', 30);
}
ok t_cmp(scalar(grep { $in->server_state($_) eq 'up' } @RS), 3, 'thawed one at a time: all up again');
my $later = sync_line($in, $mark, 'MEMC_RS2') . ' ' . sync_line($in, $mark, 'MEMC_RS3');
diag("one at a time: $later");
ok t_cmp($later, qr/nothing to sync from: every other live server .*nothing to sync from: every other live server/,
         'MEMSESS0031: the ones after the first are published as they are (no witness to a logout)');
($lost, $stale, $detail) = audit($where, \%want);
diag($_) for @$detail[0 .. ($#$detail > 9 ? 9 : $#$detail)];
ok t_cmp("$lost/$stale", '0/0', 'after the whole pool came back one at a time: no session lost or stale');

$in->stop;
memc_stop(@RS);
