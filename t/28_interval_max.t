# Issue 15: the largest interval the configuration accepts (1h) runs
# without an overflow anywhere (this scenario also runs against the
# ASan+UBSan build, where a signed overflow is a report and an abort), and
# the takeover of a dead checker does not wait for the interval: with
# `MemsessCheckInterval 1h` a SIGKILL of the checker is followed by another
# child checking within seconds (before, the others waited for the interval
# since the last round: an hour).  And the checker does not probe more
# often than the interval (the overflow made it probe every 100 ms).
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use File::Spec::Functions qw(catfile);
use Time::HiRes qw(time sleep);
use Memsess::Test;
use Memsess::Instance;

plan tests => 8;

sub checks_in {
    my ($st, $name) = @_;
    return ((status_server($st, addr($name)) || {})->{checks}) // -1;
}

my $STARTED = qr/MEMSESS0013: checker started in process (\d+): \d+ servers every (\d+)ms/;

my $in = Memsess::Instance->new(name => 'interval_max',
                                globals => "MemsessCheckInterval 1h\nMemsessCheckTimeout 3599s\n",
                                conf => <<'EOF');
StartServers 3
MinSpareServers 3
MaxSpareServers 6
MemsessServers ${MEMC_Z1}
EOF
memc_start('Z1');
$in->start;
my $checks = sub { checks_in($in->status, 'Z1') };

my $up = wait_for(10, sub { (server_state('Z1', $in->status) // '') eq 'up' });
ok t_cmp(defined $up ? 1 : 0, 1, 'interval 1h: the first round runs at once, Z1 is up');
my ($pid, $every) = $in->log_since(0) =~ $STARTED;
ok t_cmp($every // 0, 3600000, 'the checker runs every 3600000ms');

# Only one round in the first seconds: no probe every tick.
sleep 1.5;
ok t_cmp($checks->(), 1, 'one probe in 1.5 s: the next round is an hour away');

# SIGKILL of the checker: another child checks within seconds.
my $others = wait_for(5, sub { 2 <= grep { $_ != $pid } $in->children }, 0.05);
sleep 0.3;    # their watchdogs tick
my $mark = $in->log_mark();
my $t0 = time;
kill 'KILL', $pid;
my $line = $in->log_wait(5, $mark, qr/MEMSESS0023: checking resumed in process \d+: process \Q$pid\E stopped/);
my $took = defined $line ? time - $t0 : undef;
diag sprintf 'checking resumed %s after SIGKILL of %d (interval 1h)',
    defined $took ? sprintf('%.2f s', $took) : 'never (5 s)', $pid;
ok t_cmp(defined $others && defined $line ? 1 : 0, 1,
         'SIGKILL of the checker: another child resumes within 5 s, not an hour');
my $dt = wait_for(5, sub { $checks->() >= 2 });
ok t_cmp(defined $dt ? 1 : 0, 1, 'and probes at once (checks 2)');
sleep 1;
ok t_cmp($checks->(), 2, 'and then waits for the interval');

$in->stop;
memc_stop('Z1');

my $log = $in->log_since(0);
ok t_cmp(scalar(() = $log =~ /runtime error|AddressSanitizer|Segmentation/g), 0,
         'no sanitizer report and no crash in the instance log');
my @reports = glob catfile(Apache::Test::vars('t_logs'), 'ubsan.*');
ok t_cmp("@reports", '', 'no UBSan report file (ASan+UBSan run)');
