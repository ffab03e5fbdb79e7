# MemsessFormat memcache: pecl-memcache's syntax (save_handler memcache,
# tcp://host:port?weight=w URLs), and sessions work through it.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Memsess::Test;

plan tests => 9;

my $V = 'memsess_format_memcache';
my @C = qw(C1 C2);
memc_start(@C);
ok t_cmp(defined wait_live($V, '2/2', 10) ? 1 : 0, 1, 'both servers live');

my $i = info($V) || {};
ok t_cmp($i->{save_handler}, 'memcache', 'session.save_handler = memcache');
ok t_cmp($i->{env}{MEMSESS_SAVE_HANDLER}, 'memcache', 'MEMSESS_SAVE_HANDLER = memcache');
my @urls = split /\s*,\s*/, $i->{save_path} // '';
ok t_cmp(join(' | ', map { s/\?.*//r } @urls), join(' | ', map { 'tcp://' . addr($_) } @C),
         'session.save_path: tcp:// URLs in config order');
ok t_cmp($urls[1] // '', qr/\?(.*&)?weight=3(&|$)/, 'the configured weight is ?weight=3');
ok t_cmp($urls[0] // '', qr/^tcp:\/\/[^?]*(\?(?!.*weight=(?!1\b)).*)?$/,
         'no weight, or weight=1, where the config wrote none');
ok t_cmp($i->{env}{MEMSESS_SAVE_PATH}, $i->{save_path}, 'MEMSESS_SAVE_PATH is the same');

my $ua = new_ua();
my ($d1) = get_json($ua, $V, '/memsess/session.php');
my ($d2) = get_json($ua, $V, '/memsess/session.php');
ok t_cmp(($d1 ? $d1->{n} : 'x') . ($d2 ? $d2->{n} : 'x'), '12',
         'pecl-memcache accepts the path: a session persists');
my $id = $d1 ? $d1->{session_id} : 'none';
my @in = (memc_holders($id, @C), memc_holders(session_key($id), @C));
ok t_cmp(scalar(@in) >= 1 ? 1 : 0, 1, "the session is stored in the pool (@in)");

memc_stop(@C);
