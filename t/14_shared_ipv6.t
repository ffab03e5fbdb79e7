# The same servers in two pools are checked once and each pool keeps its
# own order; IPv6 servers are injected as [addr]:port(:weight) and work.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Memsess::Test;

plan tests => 16;

# --- one server, two pools ------------------------------------------------------

my @A = qw(A1 A2);
memc_start(@A);
ok t_cmp(defined wait_live('memsess_shared', '2/2', 10) ? 1 : 0, 1, 'shared: both servers live');
ok t_cmp((info('memsess_shared') || {})->{save_path}, addrs(qw(A2 A1)),
         'shared: its own config order (A2,A1)');
ok t_cmp((info('memsess_pool_a') || {})->{save_path}, addrs(qw(A1 A2)),
         'pool_a: its own config order (A1,A2) with the same servers');

my $st = status() || {};
my %count;
$count{ $_->{address} // '' }++ for @{ $st->{servers} || [] };
ok t_cmp(join(',', map { $count{ addr($_) } // 0 } @A), '1,1',
         'status: a server in two pools is listed (and checked) once');
ok t_cmp(join(',', grep { $count{$_} > 1 } sort keys %count), '',
         'status: no server is listed twice');

{
    my $ua = new_ua();
    my ($d1) = get_json($ua, 'memsess_shared', '/memsess/session.php');
    my ($d2) = get_json($ua, 'memsess_shared', '/memsess/session.php');
    ok t_cmp(($d1 ? $d1->{n} : 'x') . ($d2 ? $d2->{n} : 'x'), '12', 'shared: a session persists');
    ok t_cmp(scalar memc_holders(session_key($d1 ? $d1->{session_id} : 'none'), @A), 1,
             'shared: it is stored in the pool');
}
memc_stop(@A);

# --- IPv6 --------------------------------------------------------------------------

SKIP: {
    # (Apache::Test's skip() is Test.pm's: one test each, then leave the block)
    if (!have_ipv6()) {
        skip('no IPv6 on loopback') for 1 .. 9;
        last SKIP;
    }

    memc_start(qw(V6 S1));
    my $v6 = addr('V6');
    ok t_cmp($v6, qr/^\[::1\]:\d+$/, 'the IPv6 server is [::1]:port');
    ok t_cmp(defined wait_states(10, 'up', qw(V6 S1)) ? 1 : 0, 1,
             "status: $v6 is up (address written [addr]:port)");

    my $i = info('memsess_ipv6') || {};
    ok t_cmp($i->{save_path}, "$v6:5," . addr('S1'), 'session.save_path: [::1]:port:weight, then IPv4');
    ok t_cmp($i->{env}{MEMSESS_LIVE}, '2/2', 'MEMSESS_LIVE 2/2');

    my $ua = new_ua();
    my ($d1) = get_json($ua, 'memsess_ipv6', '/memsess/session.php');
    my ($d2) = get_json($ua, 'memsess_ipv6', '/memsess/session.php');
    ok t_cmp(($d1 ? $d1->{n} : 'x') . ($d2 ? $d2->{n} : 'x'), '12',
             'php-memcached accepts the injected IPv6 save_path: a session persists');
    ok t_cmp(join(' ', @{ ($d1 || {})->{errors} || [] }), '', 'no PHP warning');
    ok t_cmp(scalar memc_holders(session_key($d1 ? $d1->{session_id} : 'none'), qw(V6 S1)), 1,
             'the session is stored in the pool');

    memc_kill('V6');
    ok t_cmp(defined wait_states(fail_deadline(), 'down', 'V6') ? 1 : 0, 1, "status: $v6 down once killed");
    ok t_cmp((info('memsess_ipv6') || {})->{save_path}, addr('S1'), 'session.save_path drops it');
    memc_stop(qw(S1));
}
