# Three behaviours on an instance of their own:
#  - a pool written over two MemsessServers lines is one pool, in order;
#  - an SSI page (a content filter) gets the MEMSESS_* variables, a plain
#    static file gets none (seen through the access log's %{...}e);
#  - MemsessRejoin flush: a frozen server that comes back is emptied before
#    it is used again (and says so in its NOTICE).
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Memsess::Test;
use Memsess::Instance;

plan tests => 9;

my @S = qw(MEMC_J1 MEMC_J2 MEMC_J3);
memc_start(@S);
my $t = Apache::Test::vars('t_dir');
my $in;
$in = Memsess::Instance->new(name => 'rejoin_static', modules => ['include'],
                             conf => <<"EOF");
LogFormat "%U live=%{MEMSESS_LIVE}e" memsess_live
CustomLog "@{[ Memsess::Instance::vars()->{t_logs} ]}/inst/rejoin_static/env_log" memsess_live
<Directory "$t/htdocs/memsess">
    Options +Includes
    AddType text/html .shtml
    AddOutputFilter INCLUDES .shtml
</Directory>
MemsessRejoin flush
MemsessServers \${MEMC_J1} \${MEMC_J2}
MemsessServers \${MEMC_J3}
EOF
$in->start;

my $up = wait_for(10, sub {
    my $st = $in->status or return 0;
    return 3 == grep { ($_->{state} // '') eq 'up' } @{ $st->{servers} || [] };
});
ok t_cmp(defined $up ? 1 : 0, 1, 'all three servers up');
my $pool = (($in->status || {})->{pools} || [{}])->[0];
ok t_cmp(join(',', @{ $pool->{configured} || [] }), addrs(@S),
         'two MemsessServers lines make one pool, in config order');

my $ssi = $in->get('/memsess/env.shtml');
ok t_cmp($ssi->is_success ? $ssi->decoded_content : '', qr/^\Q${\ addrs(@S)}\E\|3\/3\s*$/,
         'SSI (AddOutputFilter INCLUDES) sees MEMSESS_SAVE_PATH and MEMSESS_LIVE');
my $static = $in->get('/memsess/static.txt');
ok t_cmp($static->code, 200, 'the static file is served');
my $log = "$in->{dir}/env_log";
my %live;
wait_for(3, sub {
    open my $fh, '<', $log or return 0;
    %live = map { /^(\S+) live=(\S*)/ ? ($1 => $2) : () } <$fh>;
    return exists $live{'/memsess/static.txt'};
});
ok t_cmp($live{'/memsess/env.shtml'} // 'none', '3/3',
         'access log: the SSI request had MEMSESS_LIVE');
ok t_cmp($live{'/memsess/static.txt'} // 'none', '-',
         'access log: the plain static file got no MEMSESS_LIVE');

# MemsessRejoin flush: what J2 held before its outage is gone when it is
# used again.
my $stored = memc_cmd('MEMC_J2', "set memsess-rejoin-test 0 300 5\r\nhello") // '';
my $down = $up = undef;
if ($stored =~ /STORED/) {
    memc_freeze('MEMC_J2');
    $down = wait_for(fail_deadline(), sub {
        (grep { $_->{address} eq addr('MEMC_J2') && $_->{state} eq 'down' }
              @{ ($in->status || {})->{servers} || [] }) ? 1 : 0 });
    memc_thaw('MEMC_J2');
    $up = wait_for(up_deadline(), sub {
        (grep { $_->{address} eq addr('MEMC_J2') && $_->{state} eq 'up' }
              @{ ($in->status || {})->{servers} || [] }) ? 1 : 0 });
}
ok t_cmp(defined $down && defined $up ? 1 : 0, 1,
         'the frozen server went down and, thawed, came back up');
ok t_cmp(memc_get('MEMC_J2', 'memsess-rejoin-test') // 'gone', 'gone',
         'MemsessRejoin flush: it was emptied before it came back');
ok t_cmp(scalar(grep { /MEMSESS0011: .*\Q${\ addr('MEMC_J2')}\E is up .*MemsessRejoin flush/ }
                split /\n/, $in->log_since(0)), 1,
         'its NOTICE says it was emptied first');

$in->stop;
memc_stop(@S);
