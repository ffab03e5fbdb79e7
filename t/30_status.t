# The status page in every format: ?json, ?auto, ?metrics, HTML, and the
# section in mod_status.  S1 runs, S2 never does.  Issue 15: the methods
# (GET and HEAD; OPTIONS says so; the rest 405 with the right Allow), the
# documentation's examples of every format (docs/operations.md, "Status")
# and of the state-change log lines (docs/design.md, "Health checking")
# against the real output, the metrics its example alert rules use, and a
# main server and a vhost of the same name told apart.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use LWP::UserAgent ();
use HTTP::Request ();
use JSON::PP ();
use File::Spec::Functions qw(catfile);
use Memsess::Instance;
use Time::HiRes qw(time sleep);
use Memsess::Test;

plan tests => 48 + 10 + 8 + 4 + 4 + 2;

memc_start('S1');
ok t_cmp(defined wait_states(10, 'up', 'S1') ? 1 : 0, 1, 'S1 (running) is up');
ok t_cmp(defined wait_states(10, 'down', 'S2') ? 1 : 0, 1, 'S2 (never started) is down');
my ($s1, $s2) = (addr('S1'), addr('S2'));

my $ua = LWP::UserAgent->new(timeout => 10);
sub fetch {
    my $res = $ua->get(vhost_url('default', shift));
    return ($res->decoded_content // '', scalar($res->header('Content-Type')) // '', $res->code);
}

# --- ?json ------------------------------------------------------------------------

my ($raw, $type, $code) = fetch('/memsess-status?json');
ok t_cmp($code, 200, '?json answers 200');
ok t_cmp($type, qr{^application/json}, '?json is application/json');
my $st = eval { JSON::PP->new->decode($raw) };
ok t_cmp(ref $st, 'HASH', '?json is valid JSON: ' . ($@ || 'ok'));
$st ||= {};
ok t_cmp($raw, qr/"generation"\s*:\s*\d+/, 'generation is a number');
ok t_cmp(ref $st->{servers}, 'ARRAY', 'servers is a list');
ok t_cmp(ref $st->{pools}, 'ARRAY', 'pools is a list');

my $j1 = status_server($st, $s1) || {};
my $j2 = status_server($st, $s2) || {};
my @fields = qw(address state checks failures consecutive_fails consecutive_passes
                last_change last_error latency_us);
ok t_cmp(join(',', grep { !exists $j1->{$_} } @fields), '', 'every server has every field');
ok t_cmp(join(',', map { $_ => (($j1->{$_} // '') =~ /^\d+$/ ? 'n' : 'x') }
                   qw(checks failures consecutive_fails consecutive_passes last_change latency_us)),
         join(',', map { $_ => 'n' }
                   qw(checks failures consecutive_fails consecutive_passes last_change latency_us)),
         'the counters are integers');
ok t_cmp($j1->{state}, 'up', "$s1 up");
ok t_cmp(($j1->{consecutive_passes} // 0) >= 2 ? 1 : 0, 1, "$s1 consecutive_passes >= 2");
ok t_cmp(abs(($j1->{last_change} // 0) - time) < 120 ? 1 : 0, 1, "$s1 last_change is a recent unix time");
ok t_cmp($j2->{state}, 'down', "$s2 down");
ok t_cmp(($j2->{failures} // 0) >= 2 ? 1 : 0, 1, "$s2 failures >= 2");
ok t_cmp(length($j2->{last_error} // ''), qr/^[1-9]/, "$s2 has a last_error");

my $pool = pool_of($st, 'memsess_status_pool') || {};
ok t_cmp($pool->{vhost} // '', qr/^[^\s:]+:\d+$/, 'a pool is named name:port');
ok t_cmp(join(',', @{ $pool->{configured} || [] }), "$s1,$s2", 'pool: configured servers in order');
ok t_cmp(join(',', @{ $pool->{live} || [] }), $s1, 'pool: live servers');

# Every server is probed every interval.
{
    my $c0 = $j1->{checks} // 0;
    my $t0 = time;
    sleep 1;    # a rate, not a state change: count the checks in one second
    my $j = status_server(status(), $s1) || {};
    my $rate = (($j->{checks} // 0) - $c0) / (time - $t0);
    diag sprintf 'checks per second: %.1f (interval %d ms)', $rate, check_interval() * 1000;
    ok t_cmp($rate >= 0.6 / check_interval() && $rate <= 1.5 / check_interval() ? 1 : 0, 1,
             sprintf('one probe per interval (%.1f/s)', $rate));
}

# --- ?auto --------------------------------------------------------------------------

($raw, $type) = fetch('/memsess-status?auto');
ok t_cmp($type, qr{^text/plain}, '?auto is text/plain');
my %auto = $raw =~ /^([^:\n]+):[ \t]*(.*?)\s*$/mg;
my ($i1) = map { /^MemsessServer\[(\d+)\]Address$/ ? $1 : () } grep { $auto{$_} eq $s1 } keys %auto;
my ($i2) = map { /^MemsessServer\[(\d+)\]Address$/ ? $1 : () } grep { $auto{$_} eq $s2 } keys %auto;
ok t_cmp(defined $i1 && defined $i2 ? 1 : 0, 1, '?auto: MemsessServer[i]Address for both');
$i1 //= -1; $i2 //= -1;
ok t_cmp($auto{"MemsessServer[$i1]State"}, 'up', "?auto: $s1 State up");
ok t_cmp($auto{"MemsessServer[$i2]State"}, 'down', "?auto: $s2 State down");
ok t_cmp(join(',', grep { !defined $auto{"MemsessServer[$i1]$_"} }
                   qw(Failures Checks LastChange LastError)), '',
         '?auto: Failures, Checks, LastChange, LastError');
ok t_cmp($auto{"MemsessServer[$i1]Checks"} // '', qr/^\d+$/, '?auto: Checks is a number');
ok t_cmp($auto{MemsessGeneration} // '', qr/^\d+$/, '?auto: MemsessGeneration');

# --- ?metrics ----------------------------------------------------------------------

($raw, $type) = fetch('/memsess-status?metrics');
ok t_cmp($type, qr{^text/plain}, '?metrics is text/plain');
# the first line of the body matching a pattern (not the whole body: verbose
# output stays readable)
sub line_of { my ($body, $re) = @_; my ($l) = grep { $_ =~ $re } split /\n/, $body; $l // 'missing' }

ok t_cmp(line_of($raw, qr/^memsess_server_up\{server="\Q$s1\E"\}/), qr/ 1$/, "?metrics: $s1 up 1");
ok t_cmp(line_of($raw, qr/^memsess_server_up\{server="\Q$s2\E"\}/), qr/ 0$/, "?metrics: $s2 up 0");
ok t_cmp(line_of($raw, qr/^memsess_checks_total\{[^}]*server="\Q$s1\E"/), qr/\} \d+$/,
         '?metrics: memsess_checks_total');
ok t_cmp(line_of($raw, qr/^memsess_check_failures_total\{[^}]*server="\Q$s2\E"/), qr/\} [1-9]\d*$/,
         '?metrics: memsess_check_failures_total');
ok t_cmp(line_of($raw, qr/^memsess_state_changes_total/), qr/ \d+$/, '?metrics: memsess_state_changes_total');
ok t_cmp(line_of($raw, qr/^memsess_check_duration_seconds/), qr/ [\d.e+-]+$/,
         '?metrics: memsess_check_duration_seconds');
ok t_cmp(line_of($raw, qr/^# TYPE memsess_server_up /), '# TYPE memsess_server_up gauge', '?metrics: TYPE lines');

# --- HTML, mod_status ----------------------------------------------------------------

($raw, $type) = fetch('/memsess-status');
ok t_cmp($type, qr{^text/html}, 'HTML by default');
ok t_cmp(line_of($raw, qr/\Q$s1\E/), qr/\bup\b/, "HTML: $s1 is up");
ok t_cmp(line_of($raw, qr/\Q$s2\E/), qr/\bdown\b/, "HTML: $s2 is down");

($raw) = fetch('/server-status');
ok t_cmp(line_of($raw, qr/\Q$s1\E/), qr/\Q$s1\E/, 'mod_status has a section with our servers');

# --- methods (issue 15) ----------------------------------------------------------------

# httpd builds Allow from the handler's allowed methods: GET (and so HEAD)
# and OPTIONS; TRACE is httpd's own (TraceEnable).
{
    my $url = vhost_url('default', '/memsess-status');
    my $allow = sub {
        join ',', sort grep { $_ ne 'TRACE' } split /\s*,\s*/, shift // '';
    };
    for my $m (qw(GET HEAD OPTIONS)) {
        my $res = $ua->request(HTTP::Request->new($m => $url));
        ok t_cmp($res->code, 200, "$m answers 200");
    }
    my $head = $ua->request(HTTP::Request->new(HEAD => "$url?json"));
    ok t_cmp(length($head->content // ''), 0, 'HEAD: no body');
    my $opt = $ua->request(HTTP::Request->new(OPTIONS => $url));
    ok t_cmp($allow->(scalar $opt->header('Allow')), 'GET,HEAD,OPTIONS',
             'OPTIONS: Allow: GET, HEAD, OPTIONS (' . ($opt->header('Allow') // 'none') . ')');
    for my $m (qw(POST PUT DELETE PATCH FROBNICATE)) {
        my $res = $ua->request(HTTP::Request->new($m => $url, ['Content-Length' => 0]));
        ok t_cmp($res->code . ' ' . $allow->(scalar $res->header('Allow')),
                 '405 GET,HEAD,OPTIONS',
                 "$m: 405, Allow: GET, HEAD, OPTIONS (" . ($res->header('Allow') // 'none') . ')');
    }
}

# --- the documentation's examples against the real output (issues 15, 24) ------------

# The examples live in docs/ since issue 24: the status formats in
# docs/operations.md, the log lines in docs/design.md.
my %doc;
sub doc {
    my $name = shift;
    return $doc{$name} //= do {
        my $file = catfile(Apache::Test::vars('t_dir'), '..', 'docs', $name);
        open my $fh, '<', $file or die "$file: $!";
        local $/;
        <$fh>;
    };
}
# The text of a "## " (or "### ") section of a file of docs/: "file.md ## Title".
sub readme_section {
    my ($name, $title) = shift =~ /^(\S+) (.*)$/;
    my ($text) = doc($name) =~ /^\Q$title\E\n(.*?)(?=^##+ |\z)/ms;
    return $text // '';
}
# The fenced block after the first line of a section that matches $re,
# unindented.
sub readme_block {
    my ($section, $re) = @_;
    my $text = readme_section($section);
    $text =~ /$re[^\n]*\n\s*```[a-z]*\n(.*?)^\s*```/ms or return '';
    return join "\n", map { s/^\s+//r } split /\n/, $1;
}
# What a value is: a number, a state, "n/m", or text.
sub kind {
    my $v = shift // '';
    return $v =~ /^-?\d+(\.\d+)?$/ ? 'number' : $v =~ /^(up|down|unknown)$/ ? 'state'
         : $v =~ m{^\d+/\d+$} ? 'n/m' : 'text';
}

{
    my $ex = readme_block('operations.md ## Status', qr/`\?auto`/);
    my @want = map { /^([^:]+):\s*(.*)$/ ? [$1, kind($2)] : () } grep { $_ ne '...' } split /\n/, $ex;
    my ($real) = fetch('/memsess-status?auto');
    my %real = $real =~ /^([^:\n]+):[ \t]*(.*?)\s*$/mg;
    my @real = grep { !/\[/ || /\[0\]/ } map { /^([^:]+):/ ? $1 : () } split /\n/, $real;
    ok t_cmp(join(' ', @real), join(' ', map { $_->[0] } @want),
             'docs ?auto example: the keys (index 0) and their order');
    my @bad = map { $_->[0] } grep { $_->[1] ne 'text' && kind($real{ $_->[0] }) ne $_->[1] } @want;
    ok t_cmp("@bad", '', 'docs ?auto example: numbers, states, n/m where it shows them');
}
{
    my $ex = readme_block('operations.md ## Status', qr/`\?json`/);
    my $want = eval { JSON::PP->new->decode($ex) };
    ok t_cmp(ref $want, 'HASH', 'docs ?json example is valid JSON ' . ($@ || ''));
    $want ||= {};
    my $real = status() || {};
    my $keys = sub { join ',', sort keys %{ $_[0] || {} } };
    ok t_cmp($keys->($real), $keys->($want), 'docs ?json example: the top-level keys');
    ok t_cmp($keys->($real->{servers}[0]), $keys->($want->{servers}[0]),
             'docs ?json example: the keys of a server');
    ok t_cmp($keys->($real->{pools}[0]), $keys->($want->{pools}[0]),
             'docs ?json example: the keys of a pool');
    my $types = sub {
        my $h = shift || {};
        join ',', map { "$_=" . (ref $h->{$_} || (kind($h->{$_}) eq 'number' ? 'number' : 'text')) }
                  sort keys %$h;
    };
    ok t_cmp($types->($real->{servers}[0]), $types->($want->{servers}[0]),
             "docs ?json example: the types of a server's values");
}
{
    my $ex = readme_block('operations.md ## Status', qr/`\?metrics`/);
    my $shape = sub {
        my %s;
        for (split /\n/, shift) {
            next if /^#/ || !/\S/;
            my ($name, $labels, $v) = /^(\w+)(?:\{(.*)\})? (\S+)$/ or do { $s{"bad: $_"} = 1; next };
            my $ln = join ',', map { /^(\w+)=/ ? $1 : '?' } split /,(?=\w+=)/, $labels // '';
            $s{"$name\{$ln\}" . (kind($v) eq 'number' ? '' : " $v")} = 1;
        }
        return join ' ', sort keys %s;
    };
    my ($real) = fetch('/memsess-status?metrics');
    ok t_cmp($shape->($real), $shape->($ex),
             'docs ?metrics example: the same metrics, labels and numbers');
}

# The example alert rules of docs/operations.md use only metrics the page
# serves: here, or (persistence, peers' clocks: not in this configuration)
# named in its "Status" section.
{
    my ($rules) = readme_section('operations.md ## Alerts') =~ /^```yaml\n(.*?)^```/ms;
    my %used = map { $_ => 1 } ($rules // '') =~ /\b(memsess_\w+)\b/g;
    ok t_cmp(scalar(keys %used) >= 5 ? 1 : 0, 1,
             'docs/operations.md: the alert rules are found (' . join(' ', sort keys %used) . ')');
    my ($real) = fetch('/memsess-status?metrics');
    my %served = map { $_ => 1 } $real =~ /^(?:# (?:HELP|TYPE) )?(memsess_\w+)/mg;
    my $status = readme_section('operations.md ## Status');
    my @unknown = grep { !$served{$_} && $status !~ /`\Q$_\E[`{]/ } sort keys %used;
    ok t_cmp("@unknown", '', 'docs/operations.md: every metric of the alert rules is one the status page serves');
}

# --- one pool per server and vhost, named by its own port ----------------------------

$st = status() || {};
for my $c ([default => 'M1'], [memsess_pool_a => 'A1,A2'], [memsess_inherit => 'M1'],
           [memsess_status_pool => 'S1,S2']) {
    my ($vhost, $names) = @$c;
    my $p = pool_of($st, $vhost) || {};
    ok t_cmp(join(',', @{ $p->{configured} || [] }), addrs(split /,/, $names),
             "pools: $vhost (port " . vhost_port($vhost) . ") is listed with its own pool");
}
my %names;
$names{ $_->{vhost} // '' }++ for @{ $st->{pools} || [] };
ok t_cmp(join(',', grep { $names{$_} > 1 } sort keys %names), '', 'pools: no name twice');

# Every vhost is listed under its own "host:port", those that share the
# main server's configuration (no directive of their own) included; the
# main server under its ServerName (localhost:PORT here).
{
    my $cfg = Apache::Test::config();
    my @vhosts = sort keys %{ $cfg->{vhosts} };
    my @want = ("$cfg->{vars}{servername}:$cfg->{vars}{port}",
                map { $cfg->{vhosts}{$_}{hostport} } @vhosts);
    my @missing = grep { !$names{$_} } @want;
    ok t_cmp("@missing", '', 'pools: every vhost of the configuration is listed by its own name');
    ok t_cmp(scalar keys %names, scalar @want, 'pools: one per vhost and the main server (' . scalar(@want) . ')');
    my ($main) = grep { ($_->{vhost} // '') eq $want[0] } @{ $st->{pools} || [] };
    ok t_cmp(join(',', @{ ($main || {})->{configured} || [] }), addr('M1'),
             "pools: the main server is $want[0] (its ServerName) with its pool");
    my $inh = pool_of($st, 'memsess_inherit') || {};
    ok t_cmp($inh->{vhost} // '', $cfg->{vhosts}{memsess_inherit}{hostport},
             'pools: a vhost without directives of its own is listed under its own name');
}

# --- the log lines of state changes in docs/design.md (issues 15, 24) -------------------

# Each example line of its "## Health checking" as a pattern: addresses and
# numbers stand for any (and "...", should one be written).  S2 went down (refused) above; S1 is
# frozen (timeout), then thawed (up).
{
    my @ex = grep { /MEMSESS\d{4}:/ } map { s/^\s+//r } split /\n/, readme_section('design.md ## Health checking');
    ok t_cmp(scalar @ex, 3, 'docs/design.md: three log examples of state changes');
    memc_freeze('S1');
    wait_states(fail_deadline() + 2, 'down', 'S1');
    memc_thaw('S1');
    wait_states(pass_deadline() + 2, 'up', 'S1');
    my @log = split /\n/, log_since(0);
    for my $ex (@ex) {
        my $re = join '', map {
            /^\s*\.\.\.$/ ? '.*' : /^\d+$/ ? '\d+' : /^[\d.]+:\d+$/ ? '\S+' : quotemeta
        } split /(\s*\.\.\.|[\d.]+:\d+|\d+)/, $ex;
        my $found = grep { /$re/ } @log;
        # On a machine short of CPU the checker finds itself late and
        # confirms the freeze's timeout with a patient probe, which logs the
        # other form docs/design.md gives ("no answer within a patient
        # 400ms either"): that form, as documented, stands in for this one.
        if (!$found && $ex =~ /is down \(timeout after /
            && readme_section('design.md ## Health checking') =~ /`no answer within a patient \d+ms either`/) {
            $found = grep { /MEMSESS0010: memcached server \S+ is down \(no answer within a patient \d+ms either: A TIMEOUT OCCURRED, time out, \d+ consecutive failures\)/ } @log;
            diag "the checker was late: the freeze was confirmed by a patient probe" if $found;
        }
        ok t_cmp($found ? 1 : 0, 1, "docs/design.md log example in the real log: $ex");
    }
}

# --- the main server and a vhost of the same name (issue 15) ---------------------------

{
    my $in = Memsess::Instance->new(name => 'same_name', conf => 'MemsessServers ${MEMC_S1}');
    my $port = $in->port;
    $in->{conf} .= "\n<VirtualHost 127.0.0.1:$port>\n    ServerName 127.0.0.1\n"
                 . "    MemsessServers \${MEMC_S2}\n</VirtualHost>\n";
    $in->write_conf;
    $in->start;
    my $st = $in->status || {};
    my @names = map { $_->{vhost} // '' } @{ $st->{pools} || [] };
    diag "pools of the main server and its namesake: @names";
    ok t_cmp(scalar(@names) == 2 && $names[0] ne $names[1] ? 1 : 0, 1,
             "?json: two pools, two names (@names)");
    my $auto = $in->get('/memsess-status?auto')->decoded_content // '';
    my @auto = $auto =~ /^MemsessPool\[\d+\]Vhost: (.*)$/mg;
    ok t_cmp(scalar(@auto) == 2 && $auto[0] ne $auto[1] ? 1 : 0, 1, "?auto: two names (@auto)");
    my $html = $in->get('/memsess-status')->decoded_content // '';
    my $both = grep { index($html, $_) >= 0 } map { s/&/&amp;/gr =~ s/</&lt;/gr =~ s/>/&gt;/gr } @auto;
    ok t_cmp($both, 2, 'HTML: both names');
    ok t_cmp($names[0] // '', qr/^127\.0\.0\.1:\Q$port\E \(main server\)$/,
             'the main server is named so');
    $in->stop;
}

memc_stop('S1');
