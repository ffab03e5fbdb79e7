# Issue 20: another site on the same memcached servers loses nothing.
#
# Three memcached hold this site's sessions and 300 sessions of another PHP
# site that uses the same servers with a static save_path and
# php-memcached's defaults (prefix memc.sess.key., no replica:
# t/bin/neighbour.php, PHP's own CLI, never through mod_memsess).  This
# site starts without a namespace of its own (php-memcached's default, as
# the other site's), and its users, with counters, request without pause
# while
#   (0) MemsessNamespace "shop/" is set at graceful: a rebalance copies
#       every session under the new namespace before PHP is given it, and
#       deletes nothing under the old one (the other site's are there);
#   (a) NB2 is frozen, some users write, and it is thawed: the rejoin sync
#       (before the namespace it deleted the other site's sessions on NB2,
#       which no authority of ours held); the moment it is published, while
#       the sync's passes after the flip still run (its grace; the job
#       record stays `done` through it), it is frozen again, and thawed:
#       that outage gets a sync of its own;
#   (b) NB4 is added at graceful: the rebalance, and its last pass, which
#       removes copies no new list places where they are;
# and after each, the other site reads every one of its 300 sessions back,
# and this site's users lost nothing and read nothing stale.  Also: an
# application's own ini_set() of memcached.sess_prefix does not take its
# sessions out of the namespace, and the status page names it.
#
# MEMSESS_NEIGHBOURS_NAMESPACE=none runs it without MemsessNamespace (the
# sessions then share php-memcached's default namespace with the other
# site, (0) is left out): the hazard the namespace closes, measured by
# hand.
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

plan tests => 37;

my $JSON = JSON::PP->new->utf8;
my $NS   = $ENV{MEMSESS_NEIGHBOURS_NAMESPACE} // 'shop/';
my $N    = 300;
my @NB   = qw(MEMC_NB1 MEMC_NB2 MEMC_NB3);
my $PHP  = catfile(dirname(Apache::Test::vars('t_dir')), 't', 'bin', 'neighbour.php');

# The other site, through PHP's CLI: "kept N" and the ids it lost.
sub neighbour {
    my ($mode) = @_;
    my $out = `php "$PHP" $mode "${\ addrs(@NB)}" $N nb 2>&1`;
    my ($kept) = $out =~ /^kept (\d+)$/m;
    my @lost = $out =~ /^(?:lost|failed) (\S+)$/mg;
    return ($kept // -1, scalar(@lost), $out);
}

sub pool_status {
    my $in = shift;
    my $st = $in->status or return {};
    return $st->{pools} && $st->{pools}[0] ? $st->{pools}[0] : {};
}

sub wait_state {
    my ($in, $name, $want, $secs) = @_;
    return wait_for($secs, sub { $in->server_state($name) eq $want });
}

# the engine alone first: a rename of 2,000 sessions (t/unit/test_sync.bin)
{
    my @NR = qw(MEMC_NR1 MEMC_NR2 MEMC_NR3);
    memc_opts(['-m', '64'], @NR);   # --feed: 10,000 sessions of 1 KB, 120,000 other keys
    memc_start(@NR);
    my $bin = catfile(dirname(Apache::Test::vars('t_dir')), 't', 'unit', 'test_sync.bin');
    my $out = `"$bin" --rename 127.0.0.1 @{[ map { port($_) } @NR ]} 2000 2>&1`;
    diag($_) for split /\n/, $out;
    ok t_cmp(($out =~ /^rename: (lost \d+ stale \d+ old-deleted \d+ other-deleted \d+)/m)[0] // $out,
             'lost 0 stale 0 old-deleted 0 other-deleted 0',
             'the engine renames every session where PHP reads it and deletes nothing of the old namespace');
    # its lease lost after 3 writes (the fence answers no): nothing after
    $out = `"$bin" --fence 127.0.0.1 @{[ map { port($_) } @NR ]} 2000 3 2>&1`;
    diag($_) for split /\n/, $out;
    my ($why, $copied, $keys) = $out =~ /^fence: stopped \((.*)\), copied (\d+), new-namespace keys (\d+)/m;
    ok t_cmp(defined $why && $why =~ /lease lapsed/ && $copied == $keys && $copied < 4000 ? 1 : 0, 1,
             "a job whose lease is lost stops before its next write (the fence): $out");
    # memcached's crawler may list a key twice: no copy goes for it (a
    # rebalance lost every replica it made, a full rejoin a third of the
    # sessions, before the fix)
    $out = `"$bin" --dups 127.0.0.1 @{[ map { port($_) } @NR ]} 2000 2>&1`;
    diag($_) for split /\n/, $out;
    ok t_cmp(($out =~ /^dups: (done, missing \d+ deleted \d+)/m)[0] // $out, 'done, missing 0 deleted 0',
             'a rebalance whose listings hold every key twice deletes none of its copies');
    ok t_cmp(($out =~ /^dups rejoin: (done, missing \d+ deleted \d+)/m)[0] // $out, 'done, missing 0 deleted 0',
             'the rejoin of a server restarted empty, its listings holding every key twice, loses nothing');
    # an old copy where the new list places a session, left by an earlier
    # change: the pool shrinks, its authority has it no more (a logout),
    # the rebalance deletes it before the new list reads it there (the
    # soak's seed 918273: a session read back two logouts old; without it,
    # every such logout undone)
    $out = `"$bin" --leftover 127.0.0.1 @{[ map { port($_) } @NR ]} 3000 2>&1`;
    diag($_) for split /\n/, $out;
    ok t_cmp(($out =~ /^leftover: (done, undone \d+ stale \d+) of [1-9]/m)[0] // $out, 'done, undone 0 stale 0',
             'a rebalance deletes the old copies the new list would read where their authority has none (logouts)');
    # a rejoin takes what was written meanwhile from its authorities' logs
    # of writes: the other application's 120,000 keys listed once, not in
    # every pass; every session on the returning server as last written,
    # no logout undone, with a feed and without one (and with one that
    # overflows); so does a rebalance (the pool grown from 2 to 3 servers)
    my %feed;
    for my $run (['feed', 65536], ['feed', 0], ['feed', 2], ['feed-grow', 65536]) {
        my ($mode, $cap) = @$run;
        $out = `"$bin" --$mode 127.0.0.1 @{[ map { port($_) } @NR ]} 10000 120000 $cap 2>&1`;
        diag($_) for split /\n/, $out;
        my $f = $feed{"$mode $cap"} = [ $out =~ /^\Q$mode\E: fed (\d+) lost (\d+) lines (\d+) other \d+ stale (\d+) missing (\d+) undone (\d+)/m ];
        ok t_cmp(@$f ? "stale $f->[3] missing $f->[4] undone $f->[5]" : $out, 'stale 0 missing 0 undone 0',
                 "users writing and logging out through the $mode: every session where PHP reads it as last written (feed cap $cap)");
    }
    for my $k ('feed 65536', 'feed-grow 65536') {
        my $f = $feed{$k};
        ok t_cmp(@$f && $f->[0] > 0 && $f->[1] == 0 && $f->[2] < 2 * 120000 ? 1 : 0, 1,
                 "$k: the server holding 120,000 other keys is listed once: @$f");
    }
    ok t_cmp(@{ $feed{'feed 0'} } && $feed{'feed 0'}[2] > 3 * 120000 ? 1 : 0, 1,
             "without one, every pass lists them: @{ $feed{'feed 0'} }");
    ok t_cmp(@{ $feed{'feed 2'} } && $feed{'feed 2'}[1] > 0 ? 1 : 0, 1,
             "a feed that cannot keep what was written says so, and the pass lists instead: @{ $feed{'feed 2'} }");
    memc_stop(@NR);
}

memc_start(@NB, 'MEMC_NB4');
# what a site may have set for itself, which the module's injection beats
my $SITE = "php_value memcached.sess_prefix site.\n"
         . "php_value memcached.sess_remove_failed_servers 1\n"
         . "php_value memcached.sess_randomize_replica_read 1\n";
my $conf = 'MemsessServers ' . join(' ', map { "\${$_}" } @NB) . "\n$SITE";
my $in = Memsess::Instance->new(name => 'neighbours', php => 1, conf => $conf);
$in->start;
ok t_cmp(defined(wait_for(10, sub { 3 == grep { $in->server_state($_) eq 'up' } @NB })) ? 1 : 0, 1,
         'the three servers are up');

my ($kept, $lost, $out) = neighbour('write');
ok t_cmp($kept, $N, "the other site wrote its $N sessions") or diag($out);

my $log  = catfile($in->dir, 'load');
my $stop = catfile($in->dir, 'load.stop');
my @pids = start_load($in, $log, $stop);
my $t_load = time;
sleep 1;

# (0) the namespace set on the running site: its sessions copied under it
my $mark = $in->log_mark;
if ($NS ne 'none') {
    $in->{conf} = $conf . "MemsessNamespace $NS\n";
    $in->write_conf;
    my $t0 = time;
    $in->graceful;
    my $line = $in->log_wait(60, $mark, qr/MEMSESS0136/);
    ok t_cmp(defined($line) ? 1 : 0, 1, '(0) the rebalance into the namespace done');
    diag(sprintf '(0) %.1f s after graceful: %s', time - $t0, $line // 'none');
    ok t_cmp(scalar(grep { /MEMSESS0200/ } split /\n/, $in->log_since($mark)), 1,
             '(0) the namespace change announced (MEMSESS0200)');
    ok t_cmp(defined($in->log_wait(30, $mark, qr/MEMSESS0137/)) ? 1 : 0, 1,
             '(0) and the passes after its flip done');
    ($kept, $lost, $out) = neighbour('read');
    ok t_cmp($kept, $N, "(0) the other site reads its $N sessions after it") or diag($out);
}
else {
    ok 1 for 1 .. 4;
}

# where this site's sessions are, and what an application cannot change
{
    my $want = $NS eq 'none' ? 'memc.sess.key.' : $NS;
    my $ua = LWP::UserAgent->new(timeout => 10, keep_alive => 0, agent => 'memsess-test',
                                 cookie_jar => {});
    my $res = $ua->get($in->url('/memsess/app_prefix.php'));
    my $d = $res->is_success ? eval { $JSON->decode($res->decoded_content) } : undef;
    ok t_cmp($d && $d->{sess_prefix}, $want,
             'PHP has the namespace, whatever the application sets at run time');
    ok t_cmp(join(',', map { $d && $d->{$_} // 'none' } qw(remove_failed_servers randomize_replica_read)),
             '0,0', 'and the placement settings injected, whatever php_value and ini_set say');
    my $id = $d && $d->{session_id} // 'none';
    ok t_cmp(scalar(memc_holders(session_key($id, $want), @NB)), 2,
             'its session is under the namespace, on a server and its replica');
    ok t_cmp(scalar(memc_holders(session_key($id, 'app.'), @NB)), 0,
             'and nowhere under the prefix the application asked for');
    my $auto = $in->get('/memsess-status?auto')->decoded_content;
    ok t_cmp(($auto =~ /^MemsessNamespace: (\S+)$/m)[0] // '', $want,
             'the status page names the namespace');
}

# (a) a freeze and a thaw: the rejoin sync; and frozen again the moment
# it is published, while the sync's passes after the flip still run (its
# grace), and thawed: the second outage gets a sync of its own
my $nb2 = quotemeta addr('MEMC_NB2');
memc_freeze('MEMC_NB2');
ok t_cmp(defined(wait_state($in, 'MEMC_NB2', 'down', 10)) ? 1 : 0, 1, '(a) NB2 frozen: down');
sleep 1;
$mark = $in->log_mark;
memc_thaw('MEMC_NB2');
my $first = $in->log_wait(30, $mark, qr/MEMSESS0031: memcached server $nb2 /);
memc_freeze('MEMC_NB2');
my $grace = $in->log_since($mark) !~ /MEMSESS0035: memcached server $nb2/;
ok t_cmp(defined($first) && $grace ? 1 : 0, 1,
         '(a) thawed, synced, published, and frozen again before its passes after the flip ended');
ok t_cmp(defined(wait_state($in, 'MEMC_NB2', 'down', 10)) ? 1 : 0, 1, '(a) down again');
sleep 1;
my $mark2 = $in->log_mark;
memc_thaw('MEMC_NB2');
my $second = $in->log_wait(30, $mark2, qr/MEMSESS0031: memcached server $nb2 /);
diag("(a) $_") for grep { defined } $first, $second;
ok t_cmp(defined($second) ? 1 : 0, 1, '(a) thawed again: the second outage got a sync of its own');
ok t_cmp(defined(wait_state($in, 'MEMC_NB2', 'up', 30)) ? 1 : 0, 1, '(a) synced and up');
sleep 1;
($kept, $lost, $out) = neighbour('read');
ok t_cmp($kept, $N, "(a) the other site reads its $N sessions after the sync") or diag($out);

# (b) a server added at graceful: the rebalance and its last pass
$mark = $in->log_mark;
$in->{conf} = 'MemsessServers ' . join(' ', map { "\${$_}" } @NB, 'MEMC_NB4') . "\n$SITE"
            . ($NS eq 'none' ? '' : "MemsessNamespace $NS\n");
# (the users' sessions, under the namespace after (0): not one under the
# old name was deleted, the copies the rename left there expire)
$in->write_conf;
$in->graceful;
my $want = addrs(@NB, 'MEMC_NB4');
ok t_cmp(defined(wait_for(90, sub {
             my $p = pool_status($in);
             ($p->{published} // '') eq $want && $p->{rebalance} && $p->{rebalance}{state} eq 'none'
         }, 0.05)) ? 1 : 0, 1, '(b) NB4 added: the new list published');
ok t_cmp(defined($in->log_wait(30, $mark, qr/MEMSESS0137/)) ? 1 : 0, 1,
         '(b) and the passes after its flip done');
($kept, $lost, $out) = neighbour('read');
ok t_cmp($kept, $N, "(b) the other site reads its $N sessions after the rebalance") or diag($out);

stop_load($stop, @pids);
my $c = judge($log, $t_load);
diag(sprintf 'users: %d requests, %d ok, %d lost, %d stale, %d failed',
     @$c{qw(requests ok lost stale failed)});
diag($_) for @{ $c->{detail} }[0 .. ($#{ $c->{detail} } < 9 ? $#{ $c->{detail} } : 9)];
ok t_cmp($c->{requests} > 200 ? 1 : 0, 1, 'the users were served throughout');
ok t_cmp($c->{lost}, 0, 'none of them lost a session');
ok t_cmp($c->{stale}, 0, 'none read a stale one');
ok t_cmp(scalar(grep { /MEMSESS\d+.*(?:error|crit|alert|emerg)\]/i || /\[memsess:(?:error|crit)/ }
                split /\n/, $in->log_since(0)), 0, 'no error in the log');
$in->stop;
memc_stop(@NB, 'MEMC_NB4');
