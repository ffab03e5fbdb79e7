# php-fpm behind mod_proxy_fcgi gets the same settings in the FastCGI
# PHP_ADMIN_VALUE parameter, after what the configuration sets there.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Memsess::Test;

plan tests => 11;

my $V = 'memsess_fpm';
my @P = qw(P1 P2);
memc_start(@P);
fpm_start('FPM_1');
ok t_cmp(defined wait_states(10, 'up', @P) ? 1 : 0, 1, 'both servers up');

my $i = info($V) || {};
ok t_cmp($i->{sapi}, 'fpm-fcgi', 'the vhost runs PHP in php-fpm');
ok t_cmp($i->{save_handler}, 'memcached', 'php-fpm: session.save_handler');
ok t_cmp($i->{save_path}, addrs(@P), 'php-fpm: session.save_path is the pool');
ok t_cmp($i->{env}{MEMSESS_SAVE_PATH}, addrs(@P), 'php-fpm: MEMSESS_SAVE_PATH');
ok t_cmp($i->{memory_limit}, '96M', "the configuration's own PHP_ADMIN_VALUE still applies");
ok t_cmp($i->{php_admin_value} // '', qr/^memory_limit=96M\n.*session\.save_path=/s,
         'PHP_ADMIN_VALUE: the configuration first, ours appended');

my ($d) = get_json(new_ua(), $V, '/memsess/ini_set.php');
ok t_cmp($d && $d->{ini_set_path} ? 'changed' : 'refused', 'refused',
         "php-fpm: ini_set('session.save_path') is refused");

my $ua = new_ua();
my ($d1) = get_json($ua, $V, '/memsess/session.php');
my ($d2) = get_json($ua, $V, '/memsess/session.php');
ok t_cmp(($d1 ? $d1->{n} : 'x') . ($d2 ? $d2->{n} : 'x'), '12', 'php-fpm: a session persists');
ok t_cmp(scalar memc_holders(session_key($d1 ? $d1->{session_id} : 'none'), @P), 2,
         'php-fpm: stored in the pool (and its replica: the default)');

memc_kill('P1');
wait_states(fail_deadline(), 'down', 'P1');
ok t_cmp((info($V) || {})->{save_path}, addrs(qw(P2 P2)),
         'php-fpm: a dead server\'s place goes to its successor (the default)');

memc_stop(@P, 'FPM_1');
