# Issue 20: two instances of one name (a farm cloned from one image, with one
# MemsessInstance) find each other: each member line carries its start's
# nonce; both log the ERROR MEMSESS0099, show it on the status page and in
# the metrics, and stop sharing rather than erase each other's verdicts and
# hold the same job.  An instance stopped and started again under its own
# name is not a twin of its former self; instances named by default (the
# host name and their ports) are not twins of each other.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Time::HiRes qw(time sleep);
use Memsess::Test;
use Memsess::Instance;

plan tests => 8;

my @tw = qw(MEMC_TW1 MEMC_TW2);
memc_start(@tw);
my $pool = 'MemsessServers ' . join(' ', map { "\${$_}" } @tw) . "\nMemsessGroup twins\n";

# one that restarts: never a twin of its former self; meanwhile two named
# by default (host name and port differ by port) beside it
my $solo = Memsess::Instance->new(name => 'twin_solo', php => 1,
                                  conf => $pool . "MemsessInstance solo\n");
my @dflt = map { Memsess::Instance->new(name => "twin_default$_", php => 1, conf => $pool) } 1, 2;
$solo->start;
$_->start for @dflt;
sleep 3;
$solo->stop;
$solo->start;
sleep 6;
ok t_cmp($solo->log_since(0) =~ /MEMSESS0099: / ? 1 : 0, 0,
         'an instance stopped and started again is not its own twin');
ok t_cmp(scalar(grep { $_->log_since(0) =~ /MEMSESS0099: / } @dflt, $solo), 0,
         'instances named by default (host name:port) are no twins');
$_->stop for @dflt;

# two of one name
my @twin = map { Memsess::Instance->new(name => "twin_$_", php => 1,
                                        conf => $pool . "MemsessInstance web\n") } 1, 2;
$twin[0]->start;
sleep 1;
$twin[1]->start;
my @found = map { my $in = $_; $in->log_wait(15, 0, qr/MEMSESS0099: /) } @twin;
diag("twins: " . ($found[0] // 'web (1) found nothing'));
ok t_cmp(defined $found[0] ? 1 : 0, 1, 'the first of two instances named "web" finds its twin (MEMSESS0099)');
ok t_cmp(defined $found[1] ? 1 : 0, 1, 'the second finds it too');
my @st = map { $_->status || {} } @twin;
ok t_cmp(join(' ', map { $_->{twin} ? 'true' : 'false' } @st), 'true true',
         'status ?json: "twin": true on both');
my $metrics = $twin[0]->get('/memsess-status?metrics')->decoded_content;
ok t_cmp(($metrics // '') =~ /^memsess_instance_twin 1$/m ? 1 : 0, 1,
         'status ?metrics: memsess_instance_twin 1');
my $auto = $twin[1]->get('/memsess-status?auto')->decoded_content;
ok t_cmp(($auto // '') =~ /^MemsessTwin: 1$/m ? 1 : 0, 1, 'status ?auto: MemsessTwin: 1');

# they decide alone now: a server one of them is cut from is not left out
# by the other on its word (no peer verdict survives)
ok t_cmp(join(' ', map { scalar(grep { @{ $_->{reported_by} || [] } } @{ $_->{servers} || [] }) } @st),
         '0 0', 'no other instance\'s verdict counts on either');
$_->stop for @twin, $solo;
memc_stop(@tw);
