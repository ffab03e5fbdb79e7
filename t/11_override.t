# Issue 2: the application cannot move its sessions elsewhere: php_value in
# the server config, php_value in .htaccess and ini_set() all lose against
# the module's values (php_admin_value strength).
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Memsess::Test;

plan tests => 18;

my @A = qw(A1 A2);
memc_start(@A);
ok t_cmp(defined wait_live('memsess_pool_a', '2/2', 10) ? 1 : 0, 1,
         'pool_a: both servers live');
my $pool = addrs(@A);

for my $case (['phpvalue', 'php_value in <Directory>'],
              ['htaccess', 'php_value in .htaccess']) {
    my ($dir, $what) = @$case;
    my $ua = new_ua();
    my ($d1, $r1) = get_json($ua, 'memsess_pool_a', "/memsess/$dir/session.php");
    my ($d2) = get_json($ua, 'memsess_pool_a', "/memsess/$dir/session.php");
    $d1 ||= { error => $r1->status_line };
    $d2 ||= {};
    ok t_cmp($d1->{save_handler}, 'memcached', "$what cannot change session.save_handler");
    ok t_cmp($d1->{save_path}, $pool, "$what cannot change session.save_path");
    ok t_cmp($d1->{env}{MEMSESS_SAVE_PATH}, $pool, "$what: the environment still has the pool");
    ok t_cmp(($d1->{n} // 'x') . ',' . ($d2->{n} // 'x'), '1,2',
             "$what: the session works and persists");
    my @in = memc_holders(session_key($d1->{session_id} // 'none', $d1->{sess_prefix}), @A);
    # (on two servers: the defaults give a pool of two one replica)
    ok t_cmp(scalar @in, 2, "$what: the session is stored in the pool");
    ok t_cmp(scalar @{ $d1->{errors} || [] }, 0, "$what: no PHP warning: @{ $d1->{errors} || [] }");
}

{
    my ($d, $res) = get_json(new_ua(), 'memsess_pool_a', '/memsess/ini_set.php');
    $d ||= { error => $res->status_line };
    ok t_cmp($d->{before}, $pool, 'ini_set page: the pool is injected');
    ok t_cmp($d->{ini_set_path} ? 'changed' : 'refused', 'refused',
             "ini_set('session.save_path') is refused");
    ok t_cmp($d->{ini_set_handler} ? 'changed' : 'refused', 'refused',
             "ini_set('session.save_handler') is refused");
    ok t_cmp($d->{save_path}, $pool, 'session.save_path is unchanged after ini_set()');
    ok t_cmp($d->{save_handler}, 'memcached', 'session.save_handler is unchanged after ini_set()');
}

memc_stop(@A);
