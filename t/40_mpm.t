# The worker and event MPMs: a separate instance per MPM (Debian's mod_php
# cannot load under a threaded MPM), with an SSI page that prints
# MEMSESS_SAVE_PATH and MEMSESS_LIVE.  The checker runs, a killed server is
# dropped from the environment within the detection bound, and the status
# page works.  Under event, php-fpm gets the pool too.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Memsess::Test;
use Memsess::Instance;

my @MPMS = (
    [worker => [qw(W1 W2)], ''],
    [event  => [qw(E1 E2)], 'FPM_2'],
);

plan tests => 2 * 7 + 3;

my $THREADS = <<'EOF_MPM';
StartServers 2
ServerLimit 2
ThreadsPerChild 4
MinSpareThreads 2
MaxSpareThreads 8
MaxRequestWorkers 8
<Directory "@T@/htdocs/memsess">
    Options +Includes
    AddType text/html .shtml
    AddOutputFilter INCLUDES .shtml
</Directory>
EOF_MPM

for my $m (@MPMS) {
    my ($mpm, $names, $fpm) = @$m;
    my @S = map { "MEMC_$_" } @$names;
    memc_start(@S);
    fpm_start($fpm) if $fpm;
    (my $conf = $THREADS) =~ s/\@T\@/Apache::Test::vars('t_dir')/e;
    $conf .= "MemsessServers " . join(' ', map { "\${$_}" } @S) . "\n";
    # drop, no replica: the lists this scenario checks (not the defaults)
    $conf .= "MemsessReplicas 0\n";
    $conf .= qq{<FilesMatch "\\.php\$">\n    SetHandler "proxy:fcgi://\${$fpm}"\n</FilesMatch>\n}
        if $fpm;
    my $in = Memsess::Instance->new(name => "mpm_$mpm", mpm => $mpm, conf => $conf,
        modules => ['include', ($fpm ? ('proxy', 'proxy_fcgi') : ())]);
    $in->start;
    my $line = $in->log_wait(2, 0, qr/configured -- resuming normal operations/) // '';
    ok t_cmp($line, qr/\[mpm_$mpm:notice\]/, "$mpm: the instance runs under mpm_$mpm");

    my $page = sub { my $r = $in->get('/memsess/env.shtml'); $r->is_success ? $r->decoded_content : '' };
    ok t_cmp($page->(), qr/^\Q${\ addrs(@S)}\E\|2\/2\s*$/, "$mpm: SSI sees MEMSESS_SAVE_PATH and MEMSESS_LIVE");

    my $up = wait_for(10, sub {
        my $st = $in->status or return 0;
        return 2 == grep { ($_->{state} // '') eq 'up' } @{ $st->{servers} || [] };
    });
    ok t_cmp(defined $up ? 1 : 0, 1, "$mpm: the status page shows both servers up");
    my $c0 = (($in->status || {})->{servers} || [{}])->[0]{checks} // 0;
    my $moving = wait_for(2, sub { ((($in->status || {})->{servers} || [{}])->[0]{checks} // 0) > $c0 + 2 });
    ok t_cmp(defined $moving ? 1 : 0, 1, "$mpm: the checker runs (checks counted)");

    memc_kill($S[1]);
    my $dt = wait_for(fail_deadline(), sub { $page->() =~ /^\Q${\ addr($S[0])}\E\|1\/2\s*$/ });
    diag sprintf '%s: killed server dropped from the environment after %s ms (deadline %d ms)',
        $mpm, defined $dt ? int($dt * 1000) : 'never', fail_deadline() * 1000;
    ok t_cmp(defined $dt ? 1 : 0, 1, "$mpm: a killed server is dropped from the environment in time");
    my $st = $in->status || {};
    my ($dead) = grep { ($_->{address} // '') eq addr($S[1]) } @{ $st->{servers} || [] };
    ok t_cmp(($dead || {})->{state} // 'missing', 'down', "$mpm: and the status says down");
    ok t_cmp(join(',', @{ (($st->{pools} || [])->[0] || {})->{live} || [] }), addr($S[0]),
             "$mpm: the pool lists the live server");

    if ($fpm) {
        my $r = $in->get('/memsess/info.php');
        my $i = $r->is_success ? eval { JSON::PP->new->decode($r->decoded_content) } : undef;
        $i ||= {};
        ok t_cmp($i->{sapi} // '', 'fpm-fcgi', "$mpm: PHP runs in php-fpm");
        ok t_cmp($i->{save_path} // '', addr($S[0]), "$mpm: php-fpm gets the live server as session.save_path");
        ok t_cmp($i->{env}{MEMSESS_LIVE} // '', '1/2', "$mpm: php-fpm sees MEMSESS_LIVE");
    }
    $in->stop;
    memc_stop(@S, $fpm ? $fpm : ());
}
