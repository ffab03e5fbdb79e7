package Memsess::Fill;

# Sessions written straight into memcached where php-memcached puts them,
# many at once, and read back: for the scenarios that need thousands of
# sessions (a sync's cost, a sync under faults).  Where is the sync's own
# placement (t/unit/test_sync.bin --place), which t/28_rejoin_sync.t checks
# against PHP.
#
#   my $where = placement([qw(MEMC_A MEMC_B MEMC_C)], @ids);  # id => [names]
#   memc_fill($name, [[key, value], ...]);
#   my ($ok, $where, $want, @ids) = fill_sessions(\@names, 'tag', $n);
#   my ($lost, $stale, $detail) = audit($where, {id => value});

use strict;
use warnings FATAL => 'all';

use Exporter 'import';
use File::Basename qw(dirname);
use File::Spec::Functions qw(catfile);
use IO::Socket::IP;
use Apache::Test ();
use Memsess::Test qw(addr addrs memc_cmd session_key);

our @EXPORT = qw(placement memc_fill fill_sessions memc_multi_get audit);

use Digest::MD5 qw(md5_hex);

my $PLACE = catfile(dirname(Apache::Test::vars('t_dir')), 't', 'unit', 'test_sync.bin');

# Where php-memcached puts each id under the list of $names (replicas 1,
# modulo: the defaults): id => [names], the first where PHP reads it.
sub placement {
    my ($names, @ids) = @_;
    my %by_addr = map { addr($_) => $_ } @$names;
    my $list = addrs(@$names);
    my %where;
    while (my @chunk = splice @ids, 0, 1000) {
        my $out = `"$PLACE" --place "$list" 1 0 @chunk 2>&1`;
        for (split /\n/, $out) {
            my ($id, $w) = split ' ';
            $where{$id} = [map { $by_addr{$_} // "?$_" } split /,/, $w // ''];
        }
    }
    return \%where;
}

# Writes key => value on a server, pipelined (noreply), then waits for a
# reply to one last command: everything before it was applied.
sub memc_fill {
    my ($name, $pairs) = @_;
    my ($host, $port) = Memsess::Test::host_port($name);
    my $s = IO::Socket::IP->new(PeerHost => $host, PeerPort => $port, Proto => 'tcp')
        or die "connect $name: $!";
    $s->autoflush(1);
    my $buf = '';
    for my $kv (@$pairs) {
        $buf .= sprintf "set %s 0 3600 %d noreply\r\n%s\r\n", $kv->[0], length $kv->[1], $kv->[1];
        if (length $buf > 65536) {
            print $s $buf;
            $buf = '';
        }
    }
    print $s $buf, "version\r\n";
    my $line = <$s>;
    close $s;
    return defined $line && $line =~ /^VERSION/;
}

# $n sessions (ids from $tag), each "n|i:5;", written where php-memcached
# puts them under the list of $names: whether every server took them, the
# placement, id => value, and the ids.
sub fill_sessions {
    my ($names, $tag, $n) = @_;
    my @ids = map { md5_hex("memsess-$tag-$_") } 1 .. $n;
    my $where = placement($names, @ids);
    my %want = map { $_ => 'n|i:5;' } @ids;
    my %fill;
    for my $id (@ids) {
        push @{ $fill{$_} }, [session_key($id), $want{$id}] for @{ $where->{$id} };
    }
    my $ok = (grep { memc_fill($_, $fill{$_}) } sort keys %fill) == keys %fill;
    return ($ok, $where, \%want, @ids);
}

# key => value for the keys a server holds (text "get k1 k2 ...").
sub memc_multi_get {
    my ($name, @keys) = @_;
    my %got;
    while (my @chunk = splice @keys, 0, 100) {
        my $r = memc_cmd($name, 'get ' . join(' ', @chunk), 5);
        die "no reply from $name\n" unless defined $r;
        while ($r =~ /\GVALUE (\S+) \d+ (\d+)\r\n/gc) {
            my ($k, $len) = ($1, $2);
            $got{$k} = substr($r, pos($r), $len);
            pos($r) += $len + 2;
        }
    }
    return %got;
}

# Every session read where PHP reads it (the first server of its placement
# under the full list): [lost, stale, details].
sub audit {
    my ($where, $want) = @_;
    my ($lost, $stale, @detail) = (0, 0);
    my %by_server;
    push @{ $by_server{ $where->{$_}[0] } }, $_ for keys %$want;
    for my $name (sort keys %by_server) {
        my %got = memc_multi_get($name, map { session_key($_) } @{ $by_server{$name} });
        for my $id (@{ $by_server{$name} }) {
            my $g = $got{ session_key($id) };
            my $w = $want->{$id};
            next if defined $w && defined $g && $g eq $w;
            next if !defined $w && !defined $g;
            if (defined $w && !defined $g) {
                $lost++;
                push @detail, "lost $id on $name";
            }
            else {
                $stale++;
                push @detail, "stale $id on $name: " . ($g // 'none') . ' for ' . ($w // 'none');
            }
        }
    }
    return ($lost, $stale, \@detail);
}

1;
