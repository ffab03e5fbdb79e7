# Graceful restart under load: ab -c 4 (no keep-alive) on a PHP session
# page while the instance gets five `apache2 -k graceful`: no request
# fails.  One server is down before the first graceful; a page polled all
# along (MEMSESS_LIVE, session.save_path) never shows it injected, a user
# polling a session page keeps the session, and the server is still down
# after the last graceful.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Time::HiRes qw(time sleep);
use JSON::PP ();
use POSIX qw(WNOHANG);
use Memsess::Test;
use Memsess::Instance;

my $GRACEFULS = 5;
my $EVERY = 1.0;     # seconds between them

plan tests => 11;

my @G = map { "MEMC_$_" } qw(G1 G2 G3);
memc_start(@G);
my $in = Memsess::Instance->new(name => 'graceful_load', php => 1, conf => <<'EOF');
StartServers 4
MinSpareServers 4
MaxSpareServers 8
MaxRequestWorkers 16
MemsessServers ${MEMC_G1} ${MEMC_G2} ${MEMC_G3}
# drop, no replica: the lists this scenario checks (not the defaults)
MemsessReplicas 0
EOF
$in->start;
my $st_ok = wait_for(10, sub { 3 == grep { (server_state($_, $in->status) // '') eq 'up' } @G });
ok t_cmp(defined $st_ok ? 1 : 0, 1, 'the three servers are up');
memc_kill('MEMC_G2');
my $down = wait_for(fail_deadline(), sub { (server_state('G2', $in->status) // '') eq 'down' });
ok t_cmp(defined $down ? 1 : 0, 1, 'G2 killed and down before the first graceful');

# the load
my $ab_out = $in->dir . '/ab.out';
my $duration = $GRACEFULS * $EVERY + 2;
my $ab = fork;
die "fork: $!" unless defined $ab;
if (!$ab) {
    open STDOUT, '>', $ab_out or POSIX::_exit(127);
    open STDERR, '>&', \*STDOUT;
    exec 'ab', '-r', '-l', '-c', '4', '-t', int($duration), '-n', '10000000',
        $in->url('/memsess/session.php') or POSIX::_exit(127);
}

# graceful restarts on a schedule; a page and the status polled throughout
my $live = addrs(qw(G1 G3));
my (@polls, @wrong, @down_states, @sess);
my $ua = LWP::UserAgent->new(timeout => 10, keep_alive => 0);
my $user = new_ua();
my $json = JSON::PP->new;
my $gen0 = $in->log_count(qr/MEMSESS0005/);
my $t0 = time;
my $done = 0;
while (time - $t0 < $GRACEFULS * $EVERY + 1) {
    if ($done < $GRACEFULS && time - $t0 >= 0.5 + $done * $EVERY) {
        my ($rc, $out) = $in->_run('-k', 'graceful');
        die "graceful: $out" if $rc;
        $done++;
    }
    my $res = $ua->get($in->url('/memsess/info.php'));
    my $i = $res->is_success ? eval { $json->decode($res->decoded_content) } : undef;
    push @polls, $i ? 1 : 0;
    push @wrong, ($i->{save_path} // 'none') . ' ' . ($i->{env}{MEMSESS_LIVE} // 'none')
        if !$i || ($i->{save_path} // '') ne $live || ($i->{env}{MEMSESS_LIVE} // '') ne '2/3';
    my ($d) = $user->get($in->url('/memsess/session.php'));
    my $sd = $d->is_success ? eval { $json->decode($d->decoded_content) } : undef;
    push @sess, $sd ? $sd->{n} : 0;
    if (@polls % 5 == 0) {
        my $s = server_state('G2', $in->status);
        push @down_states, $s // 'no answer';
    }
    sleep 0.02;
}
waitpid $ab, 0;
my $ab_rc = $? >> 8;
my $report = do { local (@ARGV, $/) = $ab_out; <> } // '';
my ($complete) = $report =~ /^Complete requests:\s+(\d+)/m;
my ($failed) = $report =~ /^Failed requests:\s+(\d+)/m;
my ($non2xx) = $report =~ /^Non-2xx responses:\s+(\d+)/m;
$non2xx //= 0;
my ($rps) = $report =~ /^Requests per second:\s+([\d.]+)/m;
diag sprintf 'ab -c 4: %s requests (%s/s), %s failed, %d non-2xx; %d polls during %d graceful restarts',
    $complete // '?', $rps // '?', $failed // '?', $non2xx, scalar @polls, $done;

ok t_cmp($ab_rc, 0, 'ab ran to the end');
ok t_cmp(($complete // 0) > 100 ? 1 : 0, 1, 'under load (' . ($complete // 0) . ' requests)');
ok t_cmp($failed // -1, 0, 'no request failed');
ok t_cmp($non2xx, 0, 'no request got an error status');
my $gens = $in->log_count(qr/MEMSESS0005: .* 3 states kept/);
ok t_cmp($in->log_count(qr/MEMSESS0005/) - $gen0, $GRACEFULS,
         "$GRACEFULS new generations, each keeping the 3 states ($gens)");
ok t_cmp(scalar(grep { !$_ } @polls) . ' failed polls, ' . scalar(@wrong) . ' with G2 or a wrong count',
         '0 failed polls, 0 with G2 or a wrong count',
         'a page polled throughout never had G2 injected (' . scalar(@polls) . ' polls)');
diag "wrong: @wrong[0 .. ($#wrong < 4 ? $#wrong : 4)]" if @wrong;
my @broken = grep { $sess[$_] != $_ + 1 } 0 .. $#sess;
ok t_cmp(scalar @broken, 0, 'a user on the session page throughout kept the session ('
         . scalar(@sess) . ' requests, n = ' . ($sess[-1] // 0) . ')');
my %seen = map { $_ => 1 } @down_states;
ok t_cmp(join(',', sort keys %seen), 'down', 'the status said G2 down all along');
ok t_cmp(server_state('G2', $in->status) // 'missing', 'down', 'and still does after the last graceful');

$in->stop;
memc_stop(@G);
