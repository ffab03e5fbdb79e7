# Issue 22: a rejoin sync's reads that time out are tried again, not the
# whole sync started over.  Three servers at the defaults, 20,000 sessions
# written where php-memcached puts them; RT3 killed and restarted empty:
# while its full sync runs, the two others (its authorities) freeze for
# 0.8 s (up to three times while it syncs), longer than the sync's 500 ms timeout on a read.  The checker does
# not mark them down meanwhile (MemsessFailThreshold 20 here), so the sync
# goes on: a read that timed out is tried again on a fresh connection; the
# sync finishes once (MEMSESS0031 counts the reads tried again, no
# MEMSESS0033), and every session is where PHP reads it.  MemsessSyncRate
# 4000 here: the ~13,000 copies take seconds, so the freezes land on the
# copies' reads (at the default the sync may be over before), and the
# sync's pace is checked against the rate.  Before, the
# first timeout stopped the sync (MEMSESS0033 "cannot read ...: A TIMEOUT
# OCCURRED") and it started over from zero.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Time::HiRes qw(time sleep);
use Memsess::Test;
use Memsess::Instance;
use Memsess::Fill;

plan tests => 9;

my @RT = qw(MEMC_RT1 MEMC_RT2 MEMC_RT3);
my $N  = $ENV{MEMSESS_RETRY_SESSIONS} // 20000;

memc_start(@RT);
my $in = Memsess::Instance->new(name => 'sync_retry', conf => <<'EOF2');
MemsessServers ${MEMC_RT1} ${MEMC_RT2} ${MEMC_RT3}
MemsessFailThreshold 20
MemsessSyncRate 4000
EOF2
$in->start;
ok t_cmp(defined(wait_for(10, sub { 3 == grep { $in->server_state($_) eq 'up' } @RT })) ? 1 : 0, 1,
         'the three servers are up');

my ($filled, $where, $want) = fill_sessions(\@RT, 'sync-retry', $N);
ok t_cmp($filled ? 1 : 0, 1, "$N sessions written where php-memcached puts them");

memc_kill('MEMC_RT3');
ok t_cmp(defined(wait_for(10, sub { $in->server_state('MEMC_RT3') eq 'down' })) ? 1 : 0, 1,
         'RT3 killed: down');
my $mark = $in->log_mark;
memc_start('MEMC_RT3');
my $syncing = wait_for(10, sub { $in->server_state('MEMC_RT3') eq 'syncing' }, 0.01);
my $frozen_at;
if (defined $syncing) {
    # a freeze that lands while the sync waits on a frozen server's key
    # listing (2 s) times no read out: up to three, 0.6 s apart, while it
    # still syncs (the probes pass between them: FailThreshold not reached)
    sleep 0.1;
    for (1 .. 3) {
        last unless $in->server_state('MEMC_RT3') eq 'syncing';
        memc_freeze('MEMC_RT1', 'MEMC_RT2');
        $frozen_at //= time;
        sleep 0.8;
        memc_thaw('MEMC_RT1', 'MEMC_RT2');
        sleep 0.6;
    }
}
my $up = wait_for(60, sub { $in->server_state('MEMC_RT3') eq 'up' });
my $log = $in->log_since($mark);
my $a3 = addr('MEMC_RT3');
my ($synced) = grep { /MEMSESS0031: .*\Q$a3\E/ } split /\n/, $log;
my @stopped = grep { /MEMSESS0033: .*\Q$a3\E/ } split /\n/, $log;
diag($synced // 'no MEMSESS0031');
diag($_) for @stopped;
ok t_cmp(defined $syncing && defined $up ? 1 : 0, 1,
         'restarted empty: synced and up again, its authorities frozen 0.8 s during the sync');
ok t_cmp(($synced // '') =~ /; (\d+) reads timed out and were tried again/ ? 1 : 0, 1,
         'the reads that timed out were tried again (MEMSESS0031 counts them)');
ok t_cmp(scalar(@stopped) . ' ' . scalar(() = $log =~ /MEMSESS0031: .*\Q$a3\E/g), '0 1',
         'one sync, never stopped and started over (no MEMSESS0033)');
{
    my ($ms, $copied) = ($synced // '') =~ /after (\d+)ms: \d+ keys examined, (\d+) copied/;
    ok t_cmp(defined $ms && $copied > 1000 && $ms >= 0.9 * 1000 * $copied / 4000 ? 1 : 0, 1,
             sprintf('MemsessSyncRate 4000: %s copies took %s ms (at least %d)', $copied // '?',
                     $ms // '?', 0.9 * 1000 * ($copied // 0) / 4000));
}
{
    # what the sync's tables held: bounded per key copied (the digest
    # table: at most 64 bytes a key), beside the fixed part (the active
    # sessions' list, 4096 at most, and a batch: 2 MB); the status page
    # says as much in bytes (its figure is the sync's whole, after the flip
    # too: at least MEMSESS0031's)
    my ($copied) = ($synced // '') =~ /keys examined, (\d+) copied/;
    my ($kb) = ($synced // '') =~ /; (\d+) KB held at most/;
    my $st = $in->status;
    my ($s) = grep { $_->{address} eq $a3 } @{ ($st && $st->{servers}) || [] };
    my $bound = 2048 + 64 * ($copied // 0) / 1024;
    ok t_cmp(defined $kb && $kb <= $bound && $s && ($s->{sync_memory} // 0) >= 1024 * ($kb - 1)
             && $s->{sync_memory} <= 1024 * $bound ? 1 : 0, 1,
             sprintf('the sync held %s KB at most for %s copies (bound %d KB); status sync_memory %s',
                     $kb // '?', $copied // '?', $bound, $s ? $s->{sync_memory} // '?' : '?'));
}
{
    my ($lost, $stale, $detail) = audit($where, $want);
    diag($_) for @{$detail}[0 .. ($#$detail < 9 ? $#$detail : 9)];
    ok t_cmp("$lost $stale", '0 0', "every one of the $N sessions where PHP reads it");
}

$in->stop;
memc_stop(@RT);
