# 100 graceful restarts of a small instance: no new /dev/shm entries and
# no new SysV shared memory or semaphores (ipcs), the parent's RSS and its
# shared mappings flat after warm-up (after 20 and after 100), every
# generation keeps the servers' states (MEMSESS0005 "N states kept"), and
# a server that was down before is still down after.  Under ASan
# (MEMSESS_TEST_SANITIZED=1) the RSS comparison is skipped: its quarantine.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Time::HiRes qw(time);
use Memsess::Test;
use Memsess::Instance;

my $RESTARTS = 100;
my $WARMUP = 20;
my $RSS_SLACK_KB = 256;

plan tests => 9;

sub shm_entries {
    opendir my $d, '/dev/shm' or return ();
    my @e = sort grep { !/^\.\.?$/ } readdir $d;
    closedir $d;
    return @e;
}

# "m:ID" and "s:ID" of the SysV segments and semaphore arrays
sub ipc_ids {
    my @ids;
    for my $kind (qw(m s)) {
        for (`ipcs -$kind 2>/dev/null`) {
            push @ids, "$kind:$1" if /^0x[0-9a-f]+\s+(\d+)\s/;
        }
    }
    return sort @ids;
}

# The parent's shared mappings (APR's anonymous shared memory among them).
sub shared_maps {
    my $pid = shift;
    open my $fh, '<', "/proc/$pid/maps" or return -1;
    my $n = grep { /^\S+ \S\S\Ss / } <$fh>;
    close $fh;
    return $n;
}

sub diff { my %b = map { $_ => 1 } @{ $_[0] }; return grep { !$b{$_} } @{ $_[1] } }

memc_start('K1');
my $in = Memsess::Instance->new(name => 'graceful_many', conf => <<'EOF');
StartServers 2
MinSpareServers 1
MaxSpareServers 3
MemsessServers ${MEMC_K1} ${MEMC_K2}
EOF
my @shm0 = shm_entries();
my @ipc0 = ipc_ids();
$in->start;
my $up = wait_for(10, sub {
    my $st = $in->status or return 0;
    return (server_state('K1', $st) // '') eq 'up' && (server_state('K2', $st) // '') eq 'down';
});
ok t_cmp(defined $up ? 1 : 0, 1, 'K1 up, K2 (never started) down');
my $fail0 = (status_server($in->status, addr('K2')) || {})->{failures} // 0;
my $parent = $in->pid;

my ($rss20, $maps20);
my $t0 = time;
for my $i (1 .. $RESTARTS) {
    $in->graceful;
    if ($i == $WARMUP) {
        $rss20 = Memsess::Instance::rss_kb($parent);
        $maps20 = shared_maps($parent);
    }
}
my $took = time - $t0;
my $rss100 = Memsess::Instance::rss_kb($parent) // -1;
my $maps100 = shared_maps($parent);
diag sprintf '%d graceful restarts in %.1f s; parent RSS %d kB after %d, %d kB after %d; '
    . 'shared mappings %d and %d', $RESTARTS, $took, $rss20 // -1, $WARMUP, $rss100, $RESTARTS,
    $maps20 // -1, $maps100;

ok t_cmp($in->pid, $parent, 'the same parent served all along');
my @kept = $in->log_since(0) =~ /MEMSESS0005: .* (\d+) states kept/g;
ok t_cmp(scalar(grep { $_ == 2 } @kept), $RESTARTS, "every new generation kept the 2 states ($RESTARTS times)");
my $st = $in->status || {};
ok t_cmp(join(',', map { server_state($_, $st) // 'missing' } qw(K1 K2)), 'up,down',
         'K1 is still up and K2 still down');
ok t_cmp(((status_server($st, addr('K2')) || {})->{failures} // 0) >= $fail0 ? 1 : 0, 1,
         "K2's failure count was carried over ($fail0 before)");

my @new_shm = diff(\@shm0, [shm_entries()]);
ok t_cmp("@new_shm", '', 'no new entry in /dev/shm');
my @new_ipc = diff(\@ipc0, [ipc_ids()]);
ok t_cmp("@new_ipc", '', 'no new SysV shared memory segment or semaphore array');
ok t_cmp($maps100, $maps20 // -1, "the parent's shared mappings stay as many");
if ($ENV{MEMSESS_TEST_SANITIZED}) {
    skip("the parent's RSS under ASan: its quarantine holds freed memory");
}
else {
    ok t_cmp(defined $rss20 && $rss100 - $rss20 <= $RSS_SLACK_KB ? 1 : 0, 1,
             sprintf("the parent's RSS stays flat (%+d kB from restart %d to %d, slack %d kB)",
                     $rss100 - ($rss20 // 0), $WARMUP, $RESTARTS, $RSS_SLACK_KB));
}

$in->stop;
memc_stop('K1');
