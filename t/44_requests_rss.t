# 100,000 requests (ab -c 4 -k) to a PHP page with the module injecting:
# the children's RSS stays flat between 20,000 and 100,000 requests.
# mod_php children grow a little on their own, so the same run without a
# pool (the module loaded, nothing to inject) is the baseline.  Under ASan
# (MEMSESS_TEST_SANITIZED=1) the allocator's quarantine makes RSS
# meaningless: the requests run (fewer), the comparison does not.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use List::Util qw(max sum);
use Memsess::Test;
use Memsess::Instance;

my $ASAN = $ENV{MEMSESS_TEST_SANITIZED} ? 1 : 0;
my $WARM = $ASAN ? 2_000 : 20_000;
my $TOTAL = $ASAN ? 10_000 : 100_000;
my $SLACK_KB = 256;

plan tests => 7;

memc_start('L1');

# four children for four keep-alive connections: each child serves one
# connection in both parts, so each is warm when it is first measured
my $MPM = <<'EOF';
StartServers 4
MinSpareServers 1
MaxSpareServers 4
MaxRequestWorkers 4
ServerLimit 4
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 10
EOF

sub ab {
    my ($in, $n) = @_;
    my $out = `ab -k -c 4 -n $n "${\ $in->url('/memsess/tiny.php')}" 2>&1`;
    my ($done) = $out =~ /^Complete requests:\s+(\d+)/m;
    my ($failed) = $out =~ /^Failed requests:\s+(\d+)/m;
    my ($non2xx) = $out =~ /^Non-2xx responses:\s+(\d+)/m;
    my ($rps) = $out =~ /^Requests per second:\s+([\d.]+)/m;
    return { done => $done // 0, failed => $failed // -1, non2xx => $non2xx // 0, rps => $rps // 0 };
}

sub rss_of { my $in = shift; return { map { $_ => Memsess::Instance::rss_kb($_) // 0 } $in->children } }

# RSS growth of the children alive at both samples: (max, list)
sub growth {
    my ($a, $b) = @_;
    my @g = map { $b->{$_} - $a->{$_} } grep { exists $b->{$_} } keys %$a;
    return (@g ? max(@g) : 0, @g);
}

# One run: ($requests_ok, $max_growth_kb, the page's body, children sampled twice)
sub run {
    my ($name, $pool) = @_;
    my $in = Memsess::Instance->new(name => $name, php => 1,
                                    conf => $MPM . ($pool ? "MemsessServers \${MEMC_L1}\n" : ''));
    $in->start;
    my $body = $in->get('/memsess/tiny.php')->decoded_content // '';
    my $r1 = ab($in, $WARM);
    my $s1 = rss_of($in);
    my $r2 = ab($in, $TOTAL - $WARM);
    my $s2 = rss_of($in);
    $in->stop;
    my ($max, @g) = growth($s1, $s2);
    my $ok = $r1->{done} + $r2->{done} == $TOTAL && !$r1->{failed} && !$r2->{failed}
             && !$r1->{non2xx} && !$r2->{non2xx};
    diag sprintf '%s: %d requests at %.0f/s, %d failed; child RSS after %d: %s kB; growth to %d: %s kB',
        $name, $r1->{done} + $r2->{done}, $r2->{rps}, $r1->{failed} + $r2->{failed}, $WARM,
        join(' ', map { $s1->{$_} } sort keys %$s1), $TOTAL, join(' ', @g);
    return ($ok, $max, $body, scalar @g);
}

my ($ok, $grow, $body, $sampled) = run('rss_module', 1);
ok t_cmp($body, qr/^\Q${\ addr('L1')}\E\s*$/, 'the page gets the pool from the module');
ok t_cmp($ok ? 1 : 0, 1, "$TOTAL requests with the module, none failed");

SKIP: {
    # (Apache::Test's skip() is Test.pm's: one test each, then leave the block)
    if ($ASAN) {
        skip('RSS under ASan: its quarantine holds freed memory') for 1 .. 5;
        last SKIP;
    }
    my ($ok0, $grow0, $body0) = run('rss_baseline', 0);
    ok t_cmp(index($body0, addr('L1')) < 0 ? 1 : 0, 1,
             "baseline: the module loaded without a pool injects nothing ($body0)");
    ok t_cmp($ok0 ? 1 : 0, 1, "baseline: $TOTAL requests, none failed");
    diag sprintf 'largest child growth from %d to %d requests: %d kB with the module, %d kB without',
        $WARM, $TOTAL, $grow, $grow0;
    ok t_cmp($grow <= $grow0 + $SLACK_KB ? 1 : 0, 1,
             sprintf('child RSS flat: grew %d kB at most, %d kB without a pool (slack %d kB)',
                     $grow, $grow0, $SLACK_KB));
    ok t_cmp($sampled >= 4 ? 1 : 0, 1, "the same children served both parts ($sampled sampled twice)");
    ok t_cmp($grow <= 4 * $SLACK_KB ? 1 : 0, 1, 'and grew less than ' . 4 * $SLACK_KB . ' kB in absolute terms');
}

memc_stop('L1');
