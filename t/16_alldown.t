# MemsessAllDown: when no server of the pool is live, 503 answers with
# Retry-After, files moves PHP to its files handler in a local directory;
# static files are served either way.  (open, the default, is in
# 20_health_kill.t.)
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Memsess::Test;

plan tests => 14;

# D1 and D2 are not running: both pools are down.
ok t_cmp(defined wait_states(10, 'down', qw(D1 D2)) ? 1 : 0, 1, 'no server live in either pool');

# --- 503 --------------------------------------------------------------------------

{
    my $ua = new_ua();
    my $res = $ua->get(vhost_url('memsess_alldown_503', '/memsess/session.php'));
    ok t_cmp($res->code, 503, 'MemsessAllDown 503: a PHP request gets 503');
    ok t_cmp(scalar $res->header('Retry-After') // '', qr/^\d+$/, 'with Retry-After');
    $res = $ua->get(vhost_url('memsess_alldown_503', '/memsess/static.txt'));
    ok t_cmp($res->code, 200, 'MemsessAllDown 503: a static file is still served');

    memc_start('D1');
    ok t_cmp(defined wait_states(up_deadline(), 'up', 'D1') ? 1 : 0, 1, 'D1 up');
    my ($d) = get_json($ua, 'memsess_alldown_503', '/memsess/session.php');
    ok t_cmp($d ? $d->{n} : 'x', 1, 'with a live server the page works again');
    memc_stop('D1');
}

# --- files --------------------------------------------------------------------------

{
    my $dir = Apache::Test::vars('t_dir') . '/sessions';
    my $ua = new_ua();
    my ($d1, $r1) = get_json($ua, 'memsess_alldown_files', '/memsess/session.php');
    my ($d2) = get_json($ua, 'memsess_alldown_files', '/memsess/session.php');
    $d1 ||= { error => $r1->status_line };
    ok t_cmp($d1->{save_handler}, 'files', 'MemsessAllDown files: session.save_handler = files');
    ok t_cmp($d1->{save_path}, $dir, 'session.save_path is the directory');
    ok t_cmp($d1->{env}{MEMSESS_LIVE}, '0/1', 'MEMSESS_LIVE 0/1');
    ok t_cmp(($d1->{n} // 'x') . ($d2 ? $d2->{n} : 'x'), '12', 'sessions persist in files');
    ok t_cmp(-f "$dir/sess_" . ($d1->{session_id} // 'none') ? 1 : 0, 1, 'the session file is there');

    memc_start('D2');
    ok t_cmp(defined wait_states(up_deadline(), 'up', 'D2') ? 1 : 0, 1, 'D2 up');
    my $i = info('memsess_alldown_files') || {};
    ok t_cmp($i->{save_handler}, 'memcached', 'with a live server: memcached again');
    ok t_cmp($i->{save_path}, addr('D2'), 'and the pool');
    memc_stop('D2');
}
