# Issue 4: a probe is a real round trip: it stores a nonce under
# memsess:probe:HOST:PID:N and reads it back.  Servers that accept the
# connection but do not speak memcached properly are marked down, each with
# its reason (control characters replaced by spaces): one that answers
# garbage, binary, an endless line, closes mid-answer, or answers later than
# MemsessCheckTimeout; and a name that does not resolve.  Meanwhile a real
# server in the same pool stays up and injected, requests to the vhost stay
# fast, and the checker's thread count does not grow.
#
# The fakes (t/lib/Memsess/FakeMemcached.pm) start healthy, so that each
# server is up first and its fault brings it down.  The binary one answers
# control characters and bytes that are not UTF-8: the status page must
# stay valid JSON all the same (checked once, explicitly; the other checks
# read the page leniently, so that one fault does not hide the others).
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use List::Util qw(max);
use Time::HiRes qw(time sleep);
use JSON::PP ();
use LWP::UserAgent ();
use Memsess::Test;

my $V = 'memsess_probe';
my $BAD_NAME = 'nonexistent.invalid:11211';
# fake => [mode, what last_error must say]
my %FAULT = (
    FAKE_GARBAGE => ['garbage', qr/UNKNOWN READ FAILURE.*HELLO THERE/],
    FAKE_BINARY  => ['binary',  qr/^UNKNOWN READ FAILURE,  \[31mBIN ARY /],
    FAKE_ENDLESS => ['endless', qr/PROTOCOL ERROR/],
    FAKE_CLOSE   => ['close',   qr/CONNECTION FAILURE/],
    # gave up at the 100 ms timeout (plus scheduling), not at the answer
    # (600 ms); or, on a machine short of CPU (the ASan pass), at the
    # patient probe's 400 ms that confirms a timeout while the checker was
    # late (an answer within it would pass: hence the fake answers later)
    FAKE_SLOW    => ['slow',    qr/^(?:timeout after 1\d\dms: |no answer after 1\d\dms|no answer within a patient 4\d\dms either: )/],
);
my @FAKES = sort keys %FAULT;

plan tests => 6 + 5 * @FAKES + 12;

# /memsess-status?json, decoded as UTF-8 or, failing that, byte by byte.
my $SUA = LWP::UserAgent->new(timeout => 5);
sub raw_status { my $r = $SUA->get(vhost_url('default', '/memsess-status?json')); $r->is_success ? $r->content : undef }
sub st {
    my $raw = raw_status() // return undef;
    return eval { JSON::PP->new->utf8->decode($raw) } // eval { JSON::PP->new->decode($raw) };
}

memc_start('Q1');
fake_start('FAKE_OK', 'ok');
fake_start($_, $FAULT{$_}[0], 600, 1) for @FAKES;

my $dt = wait_states(10, 'up', 'Q1', 'FAKE_OK', @FAKES);
ok t_cmp(defined $dt ? 1 : 0, 1, 'the real server, the good fake and the healthy fakes are up');
# They were down before the test started them: each came back through the
# rejoin, and a fake cannot list its keys (no lru_crawler, like a memcached
# older than 1.4.31): emptied instead of synced.
# (The first of the pool back is published at once: nothing to sync from.)
my $emptied = grep { my $a = quotemeta addr($_); log_since(0) =~ /MEMSESS0036: memcached server $a cannot be synced \(.*cannot list its keys: ERROR\): emptied instead/ } 'FAKE_OK', @FAKES;
ok t_cmp($emptied >= 1 ? 1 : 0, 1,
         "a server that cannot list its keys is emptied instead of synced (MEMSESS0036): $emptied");

# --- the probe itself ---------------------------------------------------------------

my @sets = grep { /^set memsess:probe:/ } fake_commands('FAKE_OK');
my ($key) = ($sets[-1] // '') =~ /^set (\S+) /;
ok t_cmp($key // '', qr/^memsess:probe:[A-Za-z0-9._-]+:\d+:\d+$/,
         'the probe sets memsess:probe:HOST:PID:N (N: the server)');
my ($checker) = ($key // '') =~ /:(\d+):\d+$/;
$checker //= 0;
my $gets = grep { $_ eq "get $key" } fake_commands('FAKE_OK');
ok t_cmp($gets > 0 ? 1 : 0, 1, 'and gets the same key back');
my $parent = do { local (@ARGV, $/) = Apache::Test::vars('t_pid_file'); <> } // '';
chomp $parent;
ok t_cmp(ppid_of($checker), $parent, "PID ($checker) is a child of the Apache parent ($parent)");
# the real server's own key: the same but for N
my ($qval) = grep { defined } map { memc_get('Q1', ($key // 'none') =~ s/:\d+$/:$_/r) } 0 .. 200;
ok t_cmp($qval // '', qr/^\S+$/,
         'the real server holds a value under its key');

sub ppid_of {
    my $pid = shift or return -1;
    open my $fh, '<', "/proc/$pid/stat" or return -1;
    my $st = <$fh>;
    close $fh;
    return $st =~ /\)\s+\S+\s+(\d+)/ ? $1 : -1;
}

sub threads_of {
    my $pid = shift;
    open my $fh, '<', "/proc/$pid/status" or return -1;
    my ($n) = map { /^Threads:\s+(\d+)/ ? $1 : () } <$fh>;
    close $fh;
    return $n // -1;
}

# --- the faults ----------------------------------------------------------------------

my $mark = log_mark();
my $t0 = time;
fake_toggle(@FAKES);

# Requests go on while the checker meets the faults.
my @lat;
my $ua = new_ua(timeout => 10);
$dt = wait_for(fail_deadline(), sub {
    my (undef, undef, $t) = get_json($ua, $V, '/memsess/info.php');
    push @lat, $t;
    my $st = st() or return 0;
    for my $f (@FAKES) {
        return 0 unless (server_state($f, $st) // '') eq 'down';
    }
    return 1;
}, 0.02);
diag sprintf 'the five faulty servers were down after %s ms (deadline %d ms)',
    defined $dt ? int($dt * 1000) : 'never', fail_deadline() * 1000;
my $st = st() || {};
for my $f (@FAKES) {
    my ($mode, $re) = @{ $FAULT{$f} };
    my $s = status_server($st, addr($f)) || {};
    my $err = $s->{last_error} // '';
    diag "$mode: last_error '" . ($err =~ s/([^\x20-\x7e])/sprintf '\\x%02x', ord $1/ger) . "'";
    ok t_cmp($s->{state} // 'missing', 'down', "$mode: down within the deadline");
    ok t_cmp($err, $re, "$mode: last_error says why");
    ok t_cmp($err =~ /[\x00-\x1f\x7f]/ ? 'control characters' : 'clean', 'clean',
             "$mode: last_error has no control characters");
    my $line = log_wait(2, $mark, state_log_re($f, 'down')) // '';
    # (the error log writes a byte above 0x7e as \xNN)
    (my $logged = $err) =~ s/([^\x00-\x7e])/sprintf '\\x%02x', ord $1/ge;
    # a slow server fails by either clock (the probe's own or the round's
    # overdue verdict), and a later failure may have replaced last_error
    my $want = $mode eq 'slow'
        ? qr/MEMSESS0010: .*(?:timeout after 1\d\dms: |no answer after 1\d\dms|no answer within a patient 4\d\dms either: )/
        : qr/MEMSESS0010: .*\Q$logged\E/;
    ok t_cmp($line, $want, "$mode: a NOTICE line gives the same reason");
    ok t_cmp($line =~ /[\x00-\x08\x0b-\x1f\x7f]/ ? 'control characters' : 'clean', 'clean',
             "$mode: the log line has no control characters");
}

# The server's bytes are in last_error: the JSON document is still UTF-8.
{
    my $raw = raw_status() // '';
    my $copy = $raw;
    my $utf8 = utf8::decode($copy) ? 'valid UTF-8' : 'not UTF-8';
    my $json = eval { JSON::PP->new->utf8->decode($raw); 1 } ? 'valid JSON' : 'invalid JSON';
    my ($shown) = $raw =~ /("last_error": "UNKNOWN READ FAILURE[^"]*")/;
    ($shown //= '') =~ s/([^\x20-\x7e])/sprintf '\\x%02x', ord $1/ge;
    ok t_cmp("$utf8, $json", 'valid UTF-8, valid JSON',
             "?json stays valid when a server answered bytes that are not UTF-8 ($shown)");
}

# the name that does not resolve: down since the start
{
    my $s = status_server($st, $BAD_NAME) || {};
    ok t_cmp($s->{state} // 'missing', 'down', "$BAD_NAME is down");
    ok t_cmp($s->{last_error} // '', qr/HOSTNAME LOOKUP FAILURE/, "$BAD_NAME: last_error says why");
}

ok t_cmp(server_state('Q1', $st) // 'missing', 'up', 'the real server in the same pool stays up');
ok t_cmp(server_state('FAKE_OK', $st) // 'missing', 'up', 'and so does the good fake');

my $i = info($V) || {};
ok t_cmp($i->{save_path}, addr('Q1'), 'session.save_path is the real server alone');
ok t_cmp($i->{env}{MEMSESS_LIVE}, '1/7', 'MEMSESS_LIVE is 1/7');

# Sessions of new users, on the real server.
{
    my @n;
    for (1 .. 8) {
        my $u = new_ua(timeout => 10);
        my ($d1, undef, $t1) = get_json($u, $V, '/memsess/session.php');
        my ($d2, undef, $t2) = get_json($u, $V, '/memsess/session.php');
        push @lat, $t1, $t2;
        push @n, ($d1 ? $d1->{n} : 'x') . ($d2 ? $d2->{n} : 'x');
    }
    ok t_cmp(join(' ', @n), join(' ', ('12') x 8), 'users keep their sessions');
}
my $worst = max(@lat);
diag sprintf '%d requests while the faults were met and after: worst %d ms',
    scalar @lat, $worst * 1000;
ok t_cmp($worst < 1 ? 1 : 0, 1, sprintf('every request was fast (worst %.3f s < 1 s)', $worst));

# --- several rounds with the faults: no thread piles up -------------------------------

{
    my @sets_now = grep { /^set memsess:probe:/ } fake_commands('FAKE_OK');
    my ($now) = ($sets_now[-1] // '') =~ /:(\d+) /;
    $checker = $now if $now;
    my @n;
    my $rounds = 15;
    for (1 .. $rounds) {
        push @n, threads_of($checker);
        sleep check_interval();
    }
    my @s = grep { ($_->{state} // '') eq 'down' } map { status_server(st(), addr($_)) || {} } @FAKES;
    diag "threads of the checker ($checker) over $rounds rounds: @n";
    ok t_cmp(scalar(grep { $_ < 0 } @n), 0, 'the checker lived through the rounds');
    ok t_cmp(max(@n[5 .. $#n]) <= $n[4] ? 1 : 0, 1,
             "its thread count does not grow ($n[4] after 5 rounds, "
             . max(@n[5 .. $#n]) . " at most later)");
    ok t_cmp(scalar @s, scalar @FAKES, 'the faulty servers are still down');
}

memc_stop('Q1', 'FAKE_OK', @FAKES);
