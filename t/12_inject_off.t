# MemsessInject Off below a path: PHP keeps its own settings there and the
# environment carries nothing; the rest of the vhost is still injected.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Memsess::Test;

plan tests => 5;

my $on = info('memsess_pool_a') || {};
ok t_cmp($on->{save_handler}, 'memcached', 'injected outside the MemsessInject Off location');

my $off = info('memsess_pool_a', '/memsess/noinject/info.php') || {};
ok t_cmp($off->{save_handler}, 'files', 'MemsessInject Off: PHP keeps its own save_handler');
ok t_cmp($off->{save_path}, qr{^(?!.*127\.0\.0\.1)}, 'MemsessInject Off: no pool in session.save_path');
ok t_cmp($off->{env}{MEMSESS_SAVE_PATH}, 0, 'MemsessInject Off: no MEMSESS_SAVE_PATH');
ok t_cmp($off->{env}{MEMSESS_LIVE}, 0, 'MemsessInject Off: no MEMSESS_LIVE');
