# Issue 20: a job's lease holds however long the work goes between two
# progress calls.  A memcached that holds the group's sessions beside
# 8,000,000 keys of an application cache: the rejoin sync of another server
# lists them all (session keys are a small share of them: some 5 s of
# listing here without one, where the lease lapses after 2 to 3 s) while the other instance of the group
# waits.  (Without the lease's own thread the other instance takes the job
# over, MEMSESS0040: measured with the thread disabled.)  The holder renews its record from a thread
# of its own every 0.5 s, so nobody takes the job over (no MEMSESS0040),
# nobody syncs it twice, and both publish it.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);
use Memsess::Test;
use Memsess::Instance;
use Memsess::Load ();

# The plain pass only: filling memcached takes memcached itself some 25 s,
# and the lease's thread runs under ASan in every group sync of
# t/50_peers.t and t/19_adopt.t all the same.
plan tests => 5, need {
    'the plain pass (the sanitizer pass runs the lease\'s thread in t/50_peers.t)'
        => !$ENV{MEMSESS_TEST_SANITIZED},
};

my @ls = qw(MEMC_LS1 MEMC_LS2 MEMC_LS3);
memc_opts(['-m', '2048'], @ls);
memc_start(@ls);

# keys of 60 bytes: pipelined, replies unread; keys $from .. $n (a child
# each half: memcached handles each connection on a worker thread of its
# own, so two fill twice as fast on two cores)
sub fill {
    my ($name, $n, $from) = @_;
    $from //= 1;
    my ($host, $port) = host_port($name);
    my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port) or die "$name: $!";
    my $v = 'x' x 60;
    my $buf = '';
    for my $i ($from .. $n) {
        $buf .= "set app:cache:item:$i 0 0 60 noreply\r\n$v\r\n";
        if (length $buf > 1 << 20) {
            print $s $buf;
            $buf = '';
        }
    }
    print $s $buf, "mn\r\n";
    my $line = <$s>;   # "MN": every set before it was read
    close $s;
    return defined $line && $line =~ /^MN/;
}
my $t0 = time;
my $half = fork // die "fork: $!";
if (!$half) {
    POSIX::_exit(fill('MEMC_LS1', 4_000_000) ? 0 : 1);
}
my $filled = fill('MEMC_LS1', 8_000_000, 4_000_001);
waitpid $half, 0;
$filled &&= $? == 0;
diag(sprintf 'filled a server with 8,000,000 keys in %.1f s', time - $t0);
ok t_cmp($filled ? 1 : 0, 1, 'a server holds 8,000,000 application keys');

my $pool = 'MemsessServers ' . join(' ', map { "\${$_}" } @ls) . "\nMemsessGroup lease\n";
my @web = map { Memsess::Instance->new(name => "lease$_", php => 1,
                                       conf => $pool . "MemsessInstance lease$_\n") } 1, 2;
$_->start for @web;
sleep 2;
for my $i (1 .. 60) {
    my $ua = new_ua();
    Memsess::Load::session_req($web[$i % 2], $ua, 'session.php');
}

sub state_of {
    my ($in, $name) = @_;
    my $st = $in->status or return '';
    my ($s) = grep { $_->{address} eq addr($name) } @{ $st->{servers} || [] };
    return $s ? $s->{state} : '';
}
my @mark = map { $_->log_mark } @web;
memc_kill('MEMC_LS3');
wait_for(10, sub { !grep { state_of($_, 'MEMC_LS3') ne 'down' } @web });
memc_start('MEMC_LS3');
my $up = wait_for(120, sub { !grep { state_of($_, 'MEMC_LS3') ne 'up' } @web }, 0.1);
ok t_cmp(defined $up ? 1 : 0, 1, 'the returning server is synced and up on both instances');
my @text = map { $web[$_]->log_since($mark[$_]) } 0, 1;
my @synced = grep { /MEMSESS0031: / } map { split /\n/ } @text;
diag($_) for @synced;
ok t_cmp(scalar @synced, 1, 'one instance synced it (MEMSESS0031 once)');
ok t_cmp(scalar(grep { /MEMSESS0040: / } @text), 0, 'nobody took the job over (no MEMSESS0040)');
my ($ms) = ($synced[0] // '') =~ /after (\d+)ms/;
diag("the sync took " . ($ms // '?') . " ms");
ok t_cmp(scalar(grep { /MEMSESS0033: / } @text), 0, 'the sync never stopped to start again (no MEMSESS0033)');
$_->stop for @web;
memc_stop(@ls);
