# Issue 9: a server's return is invisible to users (MemsessRejoin sync).
# Users in parallel, each with a counter in its session, request without
# pause while one server is frozen then thawed, and another is killed then
# restarted empty:
#   (a) the defaults (only MemsessServers written: replicas 1, successor,
#       sync): no session lost or stale, no failed request once the fault
#       is detected, and users who logged out during the outage are still
#       logged out after the return;
#   (b) MemsessReplicas 0 (drop): what was written during the outage is
#       not lost on the return.
# And the sync's placement (libmemcached, t/unit/test_sync.bin --place)
# agrees with where PHP actually put the sessions, for both lists.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use File::Basename qw(dirname);
use File::Spec::Functions qw(catfile);
use JSON::PP;
use Time::HiRes qw(time sleep);
use Memsess::Test;
use Memsess::Instance;
use Memsess::Load;
use Memsess::Fill qw(memc_fill);

plan tests => 28;

my $JSON  = JSON::PP->new->utf8;
my $TOP   = dirname(Apache::Test::vars('t_dir'));
my $PLACE = catfile($TOP, 't', 'unit', 'test_sync.bin');

# --- helpers ------------------------------------------------------------------


# Polls until the server is in state; returns the time or undef.  Notes
# whether it was seen syncing on the way.
sub wait_state {
    my ($in, $name, $want, $secs, $seen) = @_;
    my $end = time + $secs;
    while (time < $end) {
        my $s = $in->server_state($name);
        $$seen = 1 if $seen && $s eq 'syncing';
        return time if $s eq $want;
        sleep 0.02;
    }
    return undef;
}

# Where PHP put sessions vs where the sync's placement says they are.
sub placement_agrees {
    my ($servers, $replicas, $ketama, @ids) = @_;
    my $path = addrs(@$servers);
    my $out = `"$PLACE" --place "$path" $replicas $ketama @ids 2>&1`;
    my %engine = map { my ($id, $w) = split ' '; ($id => join ',', sort split /,/, $w // '') }
                 split /\n/, $out;
    my @bad;
    for my $id (@ids) {
        my $php = join ',', sort map { addr($_) } memc_holders(session_key($id), @$servers);
        push @bad, "$id: php $php, engine " . ($engine{$id} // 'none')
            unless ($engine{$id} // '') eq $php;
    }
    diag(scalar(@ids) . " sessions, " . scalar(@bad) . " placed elsewhere");
    diag("placement: $_") for @bad > 5 ? @bad[0 .. 4] : @bad;
    return @ids && !@bad;
}

# Logs every user in once; returns their session ids.
sub fresh_sessions {
    my ($in, $count) = @_;
    my @ids;
    for (1 .. $count) {
        my ($d) = session_req($in, new_ua(timeout => 10), 'session.php');
        push @ids, $d->{session_id} if $d && $d->{written};
    }
    return @ids;
}

# --- (a) the defaults ---------------------------------------------------------

my @Y = qw(MEMC_Y1 MEMC_Y2 MEMC_Y3);
memc_opts(['-m', '64'], @Y);   # Y1 takes 120,000 keys of another application
memc_start(@Y);
my $in = Memsess::Instance->new(name => 'rejoin_sync', php => 1, conf => <<'EOF');
MemsessServers ${MEMC_Y1} ${MEMC_Y2} ${MEMC_Y3}
EOF
$in->start;
ok t_cmp(defined(wait_for(10, sub { 3 == grep { $in->server_state($_) eq 'up' } @Y })) ? 1 : 0, 1,
         'defaults: the three servers are up');
{
    my ($i) = session_req($in, new_ua(), 'info.php');
    ok t_cmp(join('/', map { $_ // 'x' } @{$i || {}}{qw(replicas consistent_hash)}), '1/0',
             'defaults: only MemsessServers written gives replicas 1 and successor (modula)');
}
ok t_cmp(placement_agrees(\@Y, 1, 0, fresh_sessions($in, 40)) ? 1 : 0, 1,
         'successor + replicas 1: the sync places every session where PHP put it');

# users who log out while Y2 is out: two requests each before
my @out_users = map { { ua => new_ua(timeout => 10) } } 1 .. 12;
for my $u (@out_users) {
    session_req($in, $u->{ua}, 'session.php') for 1 .. 2;
}

my $log = catfile($in->dir, 'load');
my $stop = catfile($in->dir, 'load.stop');
my @pids = start_load($in, $log, $stop);
sleep 1;

# freeze -> thaw
my $t_freeze = time;
memc_freeze('MEMC_Y2');
my $t_down = wait_state($in, 'MEMC_Y2', 'down', 10);
ok t_cmp(defined $t_down ? 1 : 0, 1, 'the frozen server goes down');
my $outs = 0;
for my $u (@out_users) {
    my ($d) = session_req($in, $u->{ua}, 'logout.php');
    $outs++ if $d && $d->{destroyed};
}
ok t_cmp($outs, scalar @out_users, 'users log out during the outage');
sleep 1;
my $mark = $in->log_mark;
memc_thaw('MEMC_Y2');
my $seen_syncing = 0;
my $t_up = wait_state($in, 'MEMC_Y2', 'up', 60, \$seen_syncing);
ok t_cmp(defined $t_up ? 1 : 0, 1, 'thawed, it comes back up');
ok t_cmp(scalar(grep { /MEMSESS0030: .*\Q${\ addr('MEMC_Y2')}\E/ } split /\n/, $in->log_since($mark)), 1,
         'it was held as syncing before it took traffic (NOTICE)');
my $synced = (grep { /MEMSESS0031: .*\Q${\ addr('MEMC_Y2')}\E/ } split /\n/, $in->log_since($mark))[0] // '';
ok t_cmp($synced, qr/synced and up after \d+ms: \d+ keys examined/, 'its sync NOTICE says what it did');
diag("thaw: $synced");
sleep 1;
my $still_out = 0;
for my $u (@out_users) {
    my ($d) = session_req($in, $u->{ua}, 'session.php');
    $still_out++ if $d && $d->{n} == 1;
}
ok t_cmp($still_out, scalar @out_users, 'a logout during the outage stays a logout after the return');

# kill -> restart empty, with 120,000 keys of another application on Y1:
# the sync watches Y1's log of writes (a server of 100,000 keys or more)
# and reads what the users write meanwhile from it, not a listing
ok t_cmp(memc_fill('MEMC_Y1', [ map { ["app:cache:$_", 'x' x 10] } 1 .. 120000 ]) ? 1 : 0, 1,
         '120,000 keys of another application on Y1');
my $t_kill = time;
memc_kill('MEMC_Y3');
my $t_down3 = wait_state($in, 'MEMC_Y3', 'down', 10);
ok t_cmp(defined $t_down3 ? 1 : 0, 1, 'the killed server goes down');
sleep 1;
$mark = $in->log_mark;
memc_start('MEMC_Y3');
my $t_up3 = wait_state($in, 'MEMC_Y3', 'up', 60, \$seen_syncing);
ok t_cmp(defined $t_up3 ? 1 : 0, 1, 'restarted empty, it comes back up');
$synced = (grep { /MEMSESS0031: .*\Q${\ addr('MEMC_Y3')}\E/ } split /\n/, $in->log_since($mark))[0] // '';
ok t_cmp($synced, qr/ copied to it/, 'the empty server was refilled');
diag("restart: $synced");
ok t_cmp($synced, qr/; \d+ keys written meanwhile read from the logs of writes of 1 servers \(0 passes listed instead\)/,
         'the sync read what was written meanwhile from the log of writes of Y1 (its 120,000 other keys not listed again)');
sleep 1.5;
stop_load($stop, @pids);

my $c = judge($log, 0, [$t_freeze, ($t_down // time) + 0.3], [$t_kill, ($t_down3 // time) + 0.3]);
diag(sprintf "defaults: %d requests, %d judged ok, %d lost, %d stale, %d failed after detection, %d in the detection windows",
             @{$c}{qw(requests ok lost stale failed in_window)});
diag($_) for grep { defined } @{ $c->{detail} }[0 .. 9];
ok t_cmp($c->{requests} > 200 ? 1 : 0, 1, "under load ($c->{requests} requests)");
ok t_cmp($c->{lost}, 0, 'defaults: no session lost through freeze/thaw and kill/restart');
ok t_cmp($c->{stale}, 0, 'defaults: no stale session');
ok t_cmp($c->{failed}, 0, 'defaults: no failed request (lock or other) once a fault is detected');
my $st = $in->status || {};
my ($y2) = grep { $_->{address} eq addr('MEMC_Y2') } @{ $st->{servers} || [] };
ok t_cmp(($y2->{syncs} // 0) >= 1 && defined $y2->{sync_examined} ? 1 : 0, 1,
         'status ?json: syncs and sync_examined of the server');
my $auto = $in->get('/memsess-status?auto');
ok t_cmp($auto->decoded_content, qr/MemsessServer\[\d+\]SyncCopied: \d+/, 'status ?auto: SyncCopied');
my $metrics = $in->get('/memsess-status?metrics');
ok t_cmp($metrics->decoded_content, qr/memsess_sync_keys_copied\{server="[^"]+"\} \d+/,
         'status ?metrics: memsess_sync_keys_copied');
$in->stop;
memc_stop(@Y);

# --- (b) MemsessReplicas 0: drop ----------------------------------------------

my @N = qw(MEMC_U1 MEMC_U2 MEMC_U3);
memc_start(@N);
$in = Memsess::Instance->new(name => 'rejoin_sync_r0', php => 1, conf => <<'EOF');
MemsessServers ${MEMC_U1} ${MEMC_U2} ${MEMC_U3}
MemsessReplicas 0
EOF
$in->start;
ok t_cmp(defined(wait_for(10, sub { 3 == grep { $in->server_state($_) eq 'up' } @N })) ? 1 : 0, 1,
         'replicas 0: the three servers are up');
ok t_cmp(placement_agrees(\@N, 0, 1, fresh_sessions($in, 40)) ? 1 : 0, 1,
         'drop, replicas 0 (ketama): the sync places every session where PHP put it');

$log = catfile($in->dir, 'load');
$stop = catfile($in->dir, 'load.stop');
@pids = start_load($in, $log, $stop);
sleep 1;
memc_freeze('MEMC_U2');
ok t_cmp(defined(wait_state($in, 'MEMC_U2', 'down', 10)) ? 1 : 0, 1, 'replicas 0: frozen, down');
sleep 1;
memc_thaw('MEMC_U2');
my $t_back = wait_state($in, 'MEMC_U2', 'up', 60);
ok t_cmp(defined $t_back ? 1 : 0, 1, 'replicas 0: thawed, up');
sleep 1;
my $t_kill_n3 = time;
memc_kill('MEMC_U3');
my $t_down_n3 = wait_state($in, 'MEMC_U3', 'down', 10);
sleep 1;
memc_start('MEMC_U3');
my $t_back3 = wait_state($in, 'MEMC_U3', 'up', 60);
ok t_cmp(defined $t_down_n3 && defined $t_back3 ? 1 : 0, 1, 'replicas 0: killed, down, restarted, up');
sleep 1.5;
stop_load($stop, @pids);

# what was written during each outage must survive its return
diag(sprintf "replicas 0: thawed up at %.3f, U3 down at %.3f, up at %.3f", $t_back // 0, $t_down_n3 // 0, $t_back3 // 0);
my $c1 = judge($log, $t_back // time, [$t_kill_n3, $t_kill_n3 + 1e6]);
my $c2 = judge($log, $t_back3 // time);
diag(sprintf "replicas 0, after the thaw: %d ok, %d lost, %d stale; after the restart: %d ok, %d lost, %d stale",
             @{$c1}{qw(ok lost stale)}, @{$c2}{qw(ok lost stale)});
diag($_) for grep { defined } (@{ $c1->{detail} }, @{ $c2->{detail} })[0 .. 9];
ok t_cmp($c1->{lost} + $c1->{stale}, 0, 'replicas 0: nothing written during the freeze is lost or stale after the thaw');
ok t_cmp($c2->{lost} + $c2->{stale}, 0, 'replicas 0: nothing written during the kill is lost or stale after the restart');
$in->stop;
memc_stop(@N);
