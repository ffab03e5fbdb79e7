# Issue 19: a start never moves sessions away from their users.  Users in
# parallel, each with a counter in its session, request without pause while
# the site:
#   (a) switches from the article's setup (php_admin_value save_handler and
#       a static save_path of three servers, php-memcached's own placement:
#       consistent hashing, no replicas) to MemsessServers with the same
#       three servers, at graceful, at the module's defaults (replicas 1,
#       successor: modulo hashing): the module takes the pool over from
#       PHP's placement and rebalances it before it publishes its own;
#   (b) the same with a php.ini (PHPINIDir) that sets
#       memcached.sess_consistent_hash=Off and memcached.sess_prefix
#       legacy.: read from mod_php, and the module given a namespace of
#       its own (MemsessNamespace shop/): the sessions are moved to its
#       placement and under its namespace at once;
#   (c) is stopped, given a fourth server, and started again: the state
#       file says what was in force, the start rebalances as a graceful
#       does;
#   (d) has its vhost renamed (ServerName) at graceful: the pool in force
#       is found by its servers, not taken over from PHP's placement;
#   (e) a fourth web server joins a group of three with their
#       configuration and no state file: it finds the group has that
#       placement in force already and publishes it (MEMSESS0158), moving
#       nothing from PHP's placement; the users' sessions read through it.
# Each: 0 lost, 0 stale; the NOTICE says where the placement came from.
# Without the takeover (MemsessAdopt none, the state file ignored) (a)
# loses about two thirds of the sessions and (c) a quarter.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use File::Spec::Functions qw(catfile);
use File::Path qw(make_path);
use Time::HiRes qw(time sleep);
use Memsess::Test;
use Memsess::Instance;
use Memsess::Load;

plan tests => 2 * 7 + 7 + 3 + 4;

sub pool_status {
    my $in = shift;
    my $st = $in->status or return {};
    return $st->{pools} && $st->{pools}[0] ? $st->{pools}[0] : {};
}

sub servers { 'MemsessServers ' . join(' ', map { "\${$_}" } @_) . "\n" }

# Waits until the pool publishes @names with no rebalance pending.
sub settled {
    my ($in, $secs, @names) = @_;
    my $want = addrs(@names);
    return defined wait_for($secs, sub {
        my $p = pool_status($in);
        return ($p->{rebalance}{state} // '') eq 'none' && ($p->{published} // '') eq $want;
    }, 0.05);
}

sub verdict {
    my ($label, $log, $t_load) = @_;
    my $c = judge($log, $t_load);
    diag(sprintf "$label: %d requests, %d ok, %d lost, %d stale, %d failed",
                 @{$c}{qw(requests ok lost stale failed)});
    diag($_) for grep { defined } @{ $c->{detail} }[0 .. 9];
    ok t_cmp($c->{requests} > 200 ? 1 : 0, 1, "$label: under load ($c->{requests} requests)");
    ok t_cmp($c->{lost} + $c->{stale}, 0, "$label: no session lost or stale");
}

# What PHP is told about placement: "replicas/consistent_hash".
sub placement {
    my $in = shift;
    my ($i) = Memsess::Load::session_req($in, new_ua(), 'info.php');
    return $i ? ($i->{replicas} // '-') . '/' . ($i->{consistent_hash} // '-') : 'none';
}

# (a), (b): the article's setup, then the module at graceful.
sub switch {
    my ($label, $name, $phpini, $extra, @pool) = @_;
    memc_start(@pool);
    my $ini = '';
    if (defined $phpini) {
        my $dir = catfile(Apache::Test::vars()->{t_logs}, "phpini-$name");
        make_path($dir);
        open my $fh, '>', catfile($dir, 'php.ini') or die "$dir/php.ini: $!";
        print $fh $phpini;
        close $fh;
        $ini = qq{PHPINIDir "$dir"\n};
    }
    my $static = $ini . "php_admin_value session.save_handler memcached\n"
               . 'php_admin_value session.save_path "' . addrs(@pool) . "\"\n";
    my $in = Memsess::Instance->new(name => $name, php => 1, adopt => 1, conf => $static);
    $in->start;
    my $log = catfile($in->dir, 'load');
    my $stop = catfile($in->dir, 'load.stop');
    my @pids = start_load($in, $log, $stop);
    sleep 2;   # every user logged in under the article's setup
    my $t_load = time;
    my $mark = $in->log_mark;
    $in->{conf} = $ini . servers(@pool) . $extra;
    $in->write_conf;
    my $t0 = time;
    $in->graceful;
    my $done = settled($in, 60, @pool);
    my $took = time - $t0;
    sleep 1;
    stop_load($stop, @pids);
    my $text = $in->log_since($mark);
    my ($notice) = $text =~ /(MEMSESS0143: [^\n]*)/;
    diag("$label: " . ($notice // 'no MEMSESS0143'));
    ok t_cmp($notice ? 1 : 0, 1, "$label: NOTICE that the pool is taken over from PHP's placement");
    ok t_cmp($done ? 1 : 0, 1, "$label: rebalanced, then the module's placement published");
    diag(sprintf "$label: published %.1f s after graceful", $took);
    my ($end) = $text =~ /(MEMSESS0136: [^\n]*)/;
    diag("$label: " . ($end // 'no MEMSESS0136'));
    ok t_cmp($end ? 1 : 0, 1, "$label: the rebalance ran (MEMSESS0136)");
    ok t_cmp(placement($in), '1/0', "$label: PHP now gets the module's placement (replicas 1, modulo)");
    verdict($label, $log, $t_load);
    return ($in, $notice // '');
}

my ($in, $notice) = switch('article setup', 'adopt_article', undef, '', qw(MEMC_AD1 MEMC_AD2 MEMC_AD3));
ok t_cmp($notice =~ /sess_consistent_hash On/ ? 1 : 0, 1,
         'article setup: taken over as consistent hashing (php.ini sets none)');
$in->stop;
memc_stop(qw(MEMC_AD1 MEMC_AD2 MEMC_AD3));

($in, $notice) = switch('consistent_hash Off', 'adopt_modula',
                        "memcached.sess_consistent_hash=Off\nmemcached.sess_prefix=legacy.\n",
                        "MemsessNamespace shop/\n", qw(MEMC_AE1 MEMC_AE2 MEMC_AE3));
ok t_cmp($notice =~ /sess_consistent_hash Off from mod_php's php.ini/ ? 1 : 0, 1,
         'consistent_hash Off: read from mod_php\'s php.ini');
{
    my ($i) = Memsess::Load::session_req($in, new_ua(), 'info.php');
    my ($moved) = $in->log_since(0) =~ /(MEMSESS0200: [^\n]*)/;
    diag('consistent_hash Off: ' . ($moved // 'no MEMSESS0200'));
    ok t_cmp(($i && $i->{sess_prefix} // 'none') . ' ' . ($moved && $moved =~ /from "legacy\."/ ? 'from legacy.' : 'no'),
             'shop/ from legacy.', 'and its sessions moved from php.ini\'s prefix to the namespace (MEMSESS0200)');
}
$in->stop;
memc_stop(qw(MEMC_AE1 MEMC_AE2 MEMC_AE3));

# --- (c) stop, a server added, start --------------------------------------------

my @af = qw(MEMC_AF1 MEMC_AF2 MEMC_AF3);
memc_start(@af, 'MEMC_AF4');
$in = Memsess::Instance->new(name => 'adopt_cold', php => 1, adopt => 1, conf => servers(@af));
$in->start;
ok t_cmp(settled($in, 20, @af) ? 1 : 0, 1, 'cold start: three servers published');
{
    my $log = catfile($in->dir, 'load');
    my $stop = catfile($in->dir, 'load.stop');
    my @pids = start_load($in, $log, $stop);
    sleep 1.5;
    my $t_load = time;
    my $state = catfile($in->dir, 'state', 'state');
    ok t_cmp(-s $state ? 1 : 0, 1, 'cold start: the state file is kept in MemsessStateDir');
    $in->stop;
    my $mark = $in->log_mark;
    $in->{conf} = servers(@af, 'MEMC_AF4');
    $in->write_conf;
    $in->start;
    my $done = settled($in, 60, @af, 'MEMC_AF4');
    my $text = $in->log_since($mark);
    my ($changed) = $text =~ /(MEMSESS0133: [^\n]*)/;
    diag('cold start: ' . ($changed // 'no MEMSESS0133'));
    ok t_cmp(($changed // '') =~ /\(the state file\)/ ? 1 : 0, 1,
             'cold start: the list in force is read from the state file');
    ok t_cmp($done ? 1 : 0, 1, 'cold start: rebalanced, then the four servers published');
    sleep 1;
    stop_load($stop, @pids);
    verdict('stop, a server added, start', $log, $t_load);
}

# --- (d) the vhost renamed --------------------------------------------------------

{
    my $log = catfile($in->dir, 'load2');
    my $stop = catfile($in->dir, 'load2.stop');
    my @pids = start_load($in, $log, $stop);
    sleep 1;
    my $t_load = time;
    my $mark = $in->log_mark;
    $in->{servername} = 'renamed.example:' . $in->port;
    $in->write_conf;
    $in->graceful;
    my $done = settled($in, 20, @af, 'MEMC_AF4');
    my $text = $in->log_since($mark);
    ok t_cmp($text =~ /MEMSESS0143: / ? 1 : 0, 0, 'renamed vhost: not taken for a new pool');
    ok t_cmp($done ? 1 : 0, 1, 'renamed vhost: its pool stays published');
    sleep 1;
    stop_load($stop, @pids);
    my $c = judge($log, $t_load);
    diag(sprintf "renamed vhost: %d requests, %d lost, %d stale", @{$c}{qw(requests lost stale)});
    ok t_cmp($c->{lost} + $c->{stale}, 0, 'renamed vhost: no session lost or stale');
}
$in->stop;
memc_stop(@af, 'MEMC_AF4');

# --- (e) a fourth web server joins a group ------------------------------------

{
    my @ag = qw(MEMC_AD1 MEMC_AD2 MEMC_AD3);
    memc_start(@ag);
    my $conf = sub { servers(@ag) . "MemsessInstance adopt-web$_[0]\nMemsessGroup adopt-farm\n" };
    my @web = map { Memsess::Instance->new(name => "adopt_web$_", php => 1, conf => $conf->($_)) } 1 .. 3;
    $_->start for @web;
    settled($_, 20, @ag) for @web;
    sleep 1;
    my @users = map { new_ua() } 1 .. 20;
    for my $ua (@users) {
        Memsess::Load::session_req($web[$_ % 3], $ua, 'session.php') for 0 .. 2;
    }
    my $w4 = Memsess::Instance->new(name => 'adopt_web4', php => 1, adopt => 1, conf => $conf->(4));
    $w4->start;
    my $joined = $w4->log_wait(20, 0, qr/MEMSESS0158: /);
    ok t_cmp(defined $joined ? 1 : 0, 1,
             'a fourth web server: finds the group has its configuration in force (MEMSESS0158)');
    my $text = $w4->log_since(0);
    ok t_cmp($text =~ /MEMSESS0135: / ? 1 : 0, 0, 'a fourth web server: moves nothing from PHP\'s placement');
    ok t_cmp(placement($w4), '1/0', 'a fourth web server: PHP gets the group\'s placement');
    my ($lost, $n) = (0, 0);
    for my $ua (@users) {
        my ($d) = Memsess::Load::session_req($w4, $ua, 'session.php');
        $n++;
        $lost++ unless $d && ($d->{n} // 0) == 4;
    }
    diag("a fourth web server: $lost of $n users lost their session reading through it");
    ok t_cmp($lost, 0, 'a fourth web server: every user\'s session reads through it');
    $_->stop for @web, $w4;
    memc_stop(@ag);
}
