package Memsess::FakeMemcached;

# A memcached that misbehaves on purpose, for t/26_probe_faults.t.  It
# speaks enough of the text protocol (set, add, replace, get, gets, delete,
# touch, version) for the module's probe and, in mode "ok", for a
# php-memcached session; every other mode breaks the answer one way:
#
#   ok       a correct (tiny) memcached
#   garbage  answers every command with "HELLO THERE"
#   binary   answers with bytes that are not text: ESC, BEL, DEL, 0xff, NUL ...
#   endless  answers with one line that never ends (until the client leaves)
#   close    starts the answer and closes the connection in its middle
#   slow     a correct memcached whose answers leave DELAY ms late
#
# Run: perl -It/lib -MMemsess::FakeMemcached -e Memsess::FakeMemcached::main \
#          MODE HOST PORT [DELAY_MS [HEALTHY]]
# With HEALTHY=1 it starts as a correct memcached and takes on its mode at
# SIGUSR1 (and back at the next).  It logs the first line of every command
# it gets on stdout ("cmd: ...").

use strict;
use warnings FATAL => 'all';

use IO::Socket::IP ();
use IO::Select ();
use Time::HiRes qw(time);
use POSIX qw(EAGAIN EWOULDBLOCK EINTR);

our %MODES = map { $_ => 1 } qw(ok garbage binary endless close slow);

sub main {
    my ($bad, $host, $port, $delay_ms, $healthy) = @ARGV;
    die "usage: MODE HOST PORT [DELAY_MS [HEALTHY]]\n" unless $bad && $MODES{$bad} && $port;
    my $mode = $healthy ? 'ok' : $bad;
    $SIG{USR1} = sub {
        $mode = $mode eq 'ok' ? $bad : 'ok';
        print "mode: $mode\n";
    };
    $| = 1;
    my $delay = ($delay_ms // 300) / 1000;
    my $l = IO::Socket::IP->new(LocalHost => $host, LocalPort => $port,
                                Proto => 'tcp', Listen => 64, ReuseAddr => 1)
        or die "listen $host:$port: $!\n";
    $l->blocking(0);
    $SIG{PIPE} = 'IGNORE';
    my %store;    # key => [flags, data]
    my %c;        # fileno => { sock, in, out => [[due, bytes, close_after]], endless }
    print "fake memcached ($mode) on $host:$port\n";

    while (1) {
        my $rs = IO::Select->new($l, map { $_->{sock} } values %c);
        my $ws = IO::Select->new(map { $_->{sock} }
            grep { $_->{endless} || (@{ $_->{out} } && $_->{out}[0][0] <= time) } values %c);
        my $next = 1;
        for my $x (values %c) {
            next unless @{ $x->{out} };
            my $left = $x->{out}[0][0] - time;
            $next = $left if $left < $next;
        }
        $next = 0 if $next < 0;
        my ($r, $w) = IO::Select->select($rs, $ws, undef, $next);
        for my $s (@{ $r || [] }) {
            if ($s == $l) {
                while (my $n = $l->accept) {
                    $n->blocking(0);
                    $c{ fileno $n } = { sock => $n, in => '', out => [] };
                }
                next;
            }
            my $x = $c{ fileno $s } or next;
            my $got = sysread($s, $x->{in}, 65536, length $x->{in});
            if (!defined $got && ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR)) {
                next;
            }
            if (!$got) {
                _drop(\%c, $x);
                next;
            }
            _serve($mode, $delay, \%store, $x);
        }
        for my $x (values %c) {
            next unless $c{ fileno $x->{sock} // -1 };
            _flush(\%c, $x);
        }
    }
}

sub _drop {
    my ($c, $x) = @_;
    delete $c->{ fileno $x->{sock} };
    close $x->{sock};
}

# Writes what is due; an endless answer gets more of itself.
sub _flush {
    my ($c, $x) = @_;
    if ($x->{endless}) {
        my $n = syswrite($x->{sock}, 'x' x 8192);
        _drop($c, $x) if !defined $n && $! != EAGAIN && $! != EWOULDBLOCK && $! != EINTR;
        return;
    }
    while (@{ $x->{out} } && $x->{out}[0][0] <= time) {
        my $o = $x->{out}[0];
        my $n = syswrite($x->{sock}, $o->[1]);
        if (!defined $n) {
            return if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
            return _drop($c, $x);
        }
        substr($o->[1], 0, $n, '');
        return if length $o->[1];
        shift @{ $x->{out} };
        return _drop($c, $x) if $o->[2];
    }
}

# Parses the complete commands in the input buffer and queues the answers.
sub _serve {
    my ($mode, $delay, $store, $x) = @_;
    while ($x->{in} =~ /\r\n/) {
        my $eol = index($x->{in}, "\r\n");
        my $line = substr($x->{in}, 0, $eol);
        my ($cmd, @a) = split ' ', $line;
        $cmd = lc($cmd // '');
        my $data;
        if ($cmd =~ /^(?:set|add|replace)$/) {
            my $bytes = $a[3] // 0;
            last if length($x->{in}) < $eol + 2 + $bytes + 2;   # data not in yet
            $data = substr($x->{in}, $eol + 2, $bytes);
            substr($x->{in}, 0, $eol + 2 + $bytes + 2, '');
        }
        else {
            substr($x->{in}, 0, $eol + 2, '');
        }
        print "cmd: $line\n";
        my $due = time + ($mode eq 'slow' ? $delay : 0);
        if ($mode eq 'garbage') {
            push @{ $x->{out} }, [$due, "HELLO THERE\r\n"];
        }
        elsif ($mode eq 'binary') {
            push @{ $x->{out} }, [$due, "\x1b[31mBIN\x07ARY\x7f\xff\xfe\x08\x00\x01\r\n"];
        }
        elsif ($mode eq 'endless') {
            $x->{endless} = 1;
        }
        elsif ($mode eq 'close') {
            # half of what a real server would say, then the connection ends
            my $full = _answer($store, $cmd, \@a, $data);
            push @{ $x->{out} }, [$due, substr($full, 0, int(length($full) / 2)) || 'S', 1];
            return;
        }
        else {
            push @{ $x->{out} }, [$due, _answer($store, $cmd, \@a, $data)];
        }
    }
}

# What a real memcached answers.
sub _answer {
    my ($store, $cmd, $a, $data) = @_;
    if ($cmd eq 'set' || $cmd eq 'add' || $cmd eq 'replace') {
        my ($key, $flags) = @$a;
        return "NOT_STORED\r\n" if $cmd eq 'add' && $store->{$key};
        return "NOT_STORED\r\n" if $cmd eq 'replace' && !$store->{$key};
        $store->{$key} = [$flags // 0, $data];
        return "STORED\r\n";
    }
    if ($cmd eq 'get' || $cmd eq 'gets') {
        my $out = '';
        for my $key (@$a) {
            my $v = $store->{$key} or next;
            $out .= "VALUE $key $v->[0] " . length($v->[1])
                  . ($cmd eq 'gets' ? ' 1' : '') . "\r\n$v->[1]\r\n";
        }
        return "${out}END\r\n";
    }
    if ($cmd eq 'delete') {
        return delete $store->{ $a->[0] // '' } ? "DELETED\r\n" : "NOT_FOUND\r\n";
    }
    if ($cmd eq 'touch') {
        return $store->{ $a->[0] // '' } ? "TOUCHED\r\n" : "NOT_FOUND\r\n";
    }
    return "VERSION 1.6.0-fake\r\n" if $cmd eq 'version';
    if ($cmd eq 'flush_all') {
        %$store = ();
        return "OK\r\n";
    }
    # lru_crawler among the rest: like a memcached older than 1.4.31
    return "ERROR\r\n";
}

1;
