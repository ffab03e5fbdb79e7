# Scale: 1000 vhosts, each with a pool of 3 servers drawn from 256 distinct
# addresses (closed loopback ports: they refuse at once), start in under
# 2 s (from the start command to the first answer), the status page lists
# 1001 pools and 256 servers, a vhost's request gets its own pool.  The
# main server, with a ServerName without a port, is named by its first
# Listen.  More than 1024 distinct servers are refused (MEMSESS0002).  A
# MemsessServers line of 70 servers is taken whole or refused, never cut
# (httpd hands a TAKE_ARGV directive at most 64 arguments).
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Memsess::Test;
use Memsess::Instance;
use Memsess::Ports ();

plan tests => 10;

my @HOSTS = map { "127.0.0.$_" } 2 .. 5;

# $n ports closed on every one of @HOSTS
sub closed_ports {
    my $n = shift;
    my (%seen, @p);
    while (@p < $n) {
        my $port = 33000 + int rand 7000;
        next if $seen{$port}++;
        push @p, $port unless grep { !Memsess::Ports::port_is_free($port, $_) } @HOSTS;
    }
    return @p;
}

my @ports = closed_ports(64);
my @addr = map { my $h = $_; map { "$h:$_" } @ports } @HOSTS;    # 256
my $VHOSTS = 1000;

my $in = Memsess::Instance->new(name => 'scale', ports => 2, modules => ['include'],
                                servername => 'scale.test', conf => '',
                                globals => "MemsessCheckInterval 1s\nMemsessCheckTimeout 250ms\n");
my $p1 = $in->port(0);
my $conf = "MemsessServers @addr[0 .. 2]\n"
    . "<Directory \"" . Apache::Test::vars('t_dir') . "/htdocs/memsess\">\n"
    . "    Options +Includes\n    AddType text/html .shtml\n    AddOutputFilter INCLUDES .shtml\n"
    . "</Directory>\n";
for my $i (0 .. $VHOSTS - 1) {
    my @s = map { $addr[(3 * $i + $_) % @addr] } 0 .. 2;
    $conf .= sprintf "<VirtualHost *:%d>\n    ServerName v%04d.test\n    MemsessServers %s\n</VirtualHost>\n",
        $p1, $i, "@s";
}
$in->{conf} = $conf;
$in->write_conf;

my $took = $in->start;
diag sprintf '%d vhosts x 3 servers (%d distinct): first answer %d ms after the start command',
    $VHOSTS, scalar @addr, $took * 1000;
ok t_cmp($took < 2 ? 1 : 0, 1, sprintf('starts in under 2 s (%.3f s)', $took));
my $line = $in->log_wait(2, 0, qr/MEMSESS0005/) // '';
ok t_cmp($line, qr/MEMSESS0005: 256 memcached servers in 1001 distinct pools of 1001 vhosts/,
         'MEMSESS0005 counts 256 servers in 1001 pools');

my $st = $in->status || {};
ok t_cmp(scalar @{ $st->{pools} || [] }, $VHOSTS + 1, 'the status page lists 1001 pools');
ok t_cmp(scalar @{ $st->{servers} || [] }, 256, 'and 256 servers');
my %pool = map { ($_->{vhost} // '') => $_ } @{ $st->{pools} || [] };
ok t_cmp(join(',', @{ ($pool{"scale.test:$p1"} || {})->{configured} || [] }), join(',', @addr[0 .. 2]),
         "the main server (ServerName without a port) is named by its first Listen: scale.test:$p1");
ok t_cmp(join(',', @{ ($pool{"v0500.test:$p1"} || {})->{configured} || [] }),
         join(',', map { $addr[(1500 + $_) % @addr] } 0 .. 2), 'a vhost is listed with its pool');

# (the closed ports settled down first: a request during the first round
# found one of them not probed yet, and got it in place of the other two,
# as successor failover does, under ASan once)
wait_for(15, sub { my $s = $in->status || {};
                   my @sv = @{ $s->{servers} || [] };
                   @sv == 256 && !grep { ($_->{state} // '') ne 'down' } @sv }, 0.2);
my $res = LWP::UserAgent->new(timeout => 10)->get($in->url('/memsess/env.shtml'), Host => 'v0500.test');
ok t_cmp($res->decoded_content // '', qr/^\Q${\ join(',', map { $addr[(1500 + $_) % @addr] } 0 .. 2)}\E\|/,
         "a request to v0500.test gets that vhost's pool");
$in->stop;

# 1025 distinct servers (205 vhosts of 5): refused.
{
    my @many = map { my $h = $_; map { "127.0.0.$h:" . (41000 + $_) } 0 .. 204 } 2 .. 6;
    my $conf = '';
    for my $i (0 .. 204) {
        $conf .= sprintf "<VirtualHost *:%d>\n    ServerName w%03d.test\n    MemsessServers %s\n</VirtualHost>\n",
            $p1, $i, "@many[5 * $i .. 5 * $i + 4]";
    }
    my $big = Memsess::Instance->new(name => 'scale_1025', conf => $conf);
    my ($rc, $out) = $big->syntax;
    ok t_cmp($rc ? 'refused' : 'accepted', 'refused', scalar(@many) . ' distinct servers: httpd -t refuses them');
    ok t_cmp($out, qr/MEMSESS0002: .*1025/, 'with MEMSESS0002 and the count');
}

# 70 servers on one line: all 70 checked, or a refusal; not 64.
{
    my @seventy = map { "127.0.0.2:" . (42000 + $_) } 0 .. 69;
    my $long = Memsess::Instance->new(name => 'scale_line', conf => "MemsessServers @seventy\n");
    my ($rc, $out) = $long->syntax;
    my $got;
    if ($rc) {
        ($got = $out) =~ s/\s+$//;
        $got = "refused: $got";
    }
    else {
        $long->start;
        my $line = $long->log_wait(2, 0, qr/MEMSESS0005/) // '';
        $got = $line =~ /MEMSESS0005: (\d+) memcached servers/ ? "$1 servers checked" : 'no MEMSESS0005';
        $long->stop;
    }
    ok t_cmp($got, qr/^(?:70 servers checked|refused: .*MemsessServers)/,
             'MemsessServers with 70 servers on one line: all of them, or refused');
}
