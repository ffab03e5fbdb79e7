# The test bench itself: Apache serves files, PHP runs, and the memcached
# helpers really start, freeze, kill and restart servers.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Memsess::Test;

plan tests => 12;

my $ua = new_ua();

my ($res) = $ua->get(vhost_url('default', '/memsess/static.txt'));
ok t_cmp($res->code, 200, 'Apache serves a static file');

my ($info, $r2) = get_json($ua, 'default', '/memsess/info.php');
ok t_cmp(ref $info, 'HASH', 'PHP runs and answers JSON: ' . $r2->status_line);
ok t_cmp($info && $info->{sess_prefix}, 'memc.sess.key.',
         'php-memcached is loaded into mod_php');

memc_start('A1');
ok t_cmp(memc_cmd('A1', 'version'), qr/^VERSION /, 'a memcached we started answers');
ok t_cmp(memc_cmd('A1', "set memsess.probe 0 0 2\r\nhi"), "STORED\r\n", 'set');
ok t_cmp(memc_get('A1', 'memsess.probe'), 'hi', 'get returns what set stored');

memc_freeze('A1');
ok t_cmp(scalar eval { memc_cmd('A1', 'version', 0.3) }, undef,
         'a frozen memcached accepts the connection but never answers');
memc_thaw('A1');
ok t_cmp(memc_cmd('A1', 'version'), qr/^VERSION /, 'it answers again after SIGCONT');

memc_kill('A1');
ok t_cmp(scalar eval { memc_cmd('A1', 'version', 0.3) }, undef,
         'a killed memcached refuses connections');

memc_restart('A1');
ok t_cmp(memc_get('A1', 'memsess.probe'), undef,
         'a restarted memcached answers on the same port, empty');

my $t = wait_for(1, sub { 0 });
ok t_cmp($t, undef, 'wait_for gives up at its deadline');
memc_stop('A1');
ok t_cmp(memc_alive('A1'), 0, 'memc_stop stopped it');
