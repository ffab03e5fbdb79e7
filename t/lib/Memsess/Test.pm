package Memsess::Test;

# What the mod_memsess scenarios share: real memcached processes (start,
# stop, SIGKILL, SIGSTOP/SIGCONT, restart on the same port), the raw
# memcached text protocol, the status page, the error log, HTTP clients with
# their own cookie jars, and wait_for() to poll with a deadline.
#
# Servers are named as in t/conf/memc_ports.conf (MEMC_A1 ...); a test may
# write them without the MEMC_ prefix.  Every memcached a test starts is its
# child, with a pid file in t/logs/memc/; the END block stops whatever is
# still running (thawing it first), and tools/test.sh kills what a crashed
# test left behind from those pid files.

use strict;
use warnings FATAL => 'all';

use File::Temp ();

use Exporter 'import';
use Time::HiRes qw(time sleep);
use POSIX qw(WNOHANG);
use IO::Socket::IP ();
use File::Path qw(make_path);
use File::Spec::Functions qw(catfile);
use JSON::PP ();
use LWP::UserAgent ();
use HTTP::Cookies ();

use Apache::Test ();
use Apache::TestRequest ();
use Memsess::Ports ();

our @EXPORT = qw(
    addr port host_port memc_names have_ipv6
    memc_start memc_sasl memc_opts memc_stop memc_kill memc_freeze memc_thaw memc_restart fpm_start
    fake_start fake_toggle fake_commands
    memc_pid memc_alive memc_cmd memc_get memc_holders session_key
    vhost_url vhost_port new_ua get_json info wait_live addrs
    status status_server pool_of live_of server_state states_of wait_states
    wait_for wait_down log_mark log_since log_wait log_file state_log_re log_time
    check_interval fail_deadline pass_deadline up_deadline wait_back back_verdict back_diag diag
    bg_run bg_join
);

# mod_memsess's defaults (t/conf/extra.conf.in sets none of these).
use constant CHECK_INTERVAL => 0.200;
use constant CHECK_TIMEOUT  => 0.100;
use constant FAIL_THRESHOLD => 2;
use constant PASS_THRESHOLD => 2;

# Slack for a busy 2-core machine (or an ASan build) on top of what the
# contract promises; MEMSESS_TEST_MARGIN_MS overrides it.
sub margin { ($ENV{MEMSESS_TEST_MARGIN_MS} // 500) / 1000 }

sub check_interval { CHECK_INTERVAL }

# The contract: a dead or hung server is detected within one interval
# (until the next round) and FailThreshold timeouts (a failed probe is
# repeated at once), +100 ms.
sub fail_deadline {
    CHECK_INTERVAL + FAIL_THRESHOLD * CHECK_TIMEOUT + 0.100 + margin();
}

sub pass_deadline {
    CHECK_INTERVAL * PASS_THRESHOLD + CHECK_TIMEOUT + 0.100 + margin();
}

# A returning server is synced before it is published (SPEC: PassThreshold
# good probes, "then the rejoin runs before it takes traffic"): it passes
# within pass_deadline() (state syncing, or up), and is up once the sync of
# the scenario's few sessions is done, listing every server included:
# 0.1-0.7 s measured, more on a busy machine under ASan.
use constant SYNC_SLACK => 2;
sub up_deadline { pass_deadline() + SYNC_SLACK }

# A comment line on stderr: the harness shows it, verbose or not.
sub diag {
    my $msg = join '', @_;
    $msg =~ s/^/# /mg;
    print STDERR "$msg\n";
}

# ------------------------------------------------------------------------
# configuration

my $vars = Apache::Test::vars();
my $T_DIR = $vars->{t_dir};
my $T_LOGS = $vars->{t_logs};
my $MEMC_DIR = catfile($T_LOGS, 'memc');
my $DEFINES;

sub defines { $DEFINES ||= Memsess::Ports::read_defines($T_DIR) }

sub _name {
    my $n = shift;
    $n = "MEMC_$n" unless exists defines()->{$n};
    die "unknown server '$n'" unless exists defines()->{$n};
    return $n;
}

sub addr { defines()->{ _name(shift) } }

# host (IPv6 without brackets) and port of a server
sub host_port {
    my $ad = addr(shift);
    return ($1, $2) if $ad =~ /^\[([^\]]+)\]:(\d+)$/;
    return $ad =~ /^(.*):(\d+)$/;
}

sub port { (host_port(shift))[1] }

sub have_ipv6 { Memsess::Ports::have_ipv6() }

# The save_path the contract expects for these servers: "h:p,h:p".
sub addrs { join ',', map { addr($_) } @_ }

# The names matching a pattern, in order: memc_names(qr/^MEMC_X/).
sub memc_names {
    my $re = shift;
    return grep { $_ =~ $re } @Memsess::Ports::NAMES;
}

# ------------------------------------------------------------------------
# memcached processes

my %RUN;    # name => { pid, frozen }
my %SASL;   # name => SASL_CONF_PATH: started as memcached -S (memc_sasl)
my %OPTS;   # name => [more memcached options] (memc_opts)

sub _pidfile { catfile($MEMC_DIR, "$_[0].pid") }

sub memc_pid { my $r = $RUN{ _name(shift) }; $r ? $r->{pid} : undef }

sub memc_alive {
    my $pid = memc_pid(shift) or return 0;
    return kill(0, $pid) ? 1 : 0;
}

# Forks @cmd as the server `name` in a session of its own (so that a
# leftover can be killed with its children as one process group).
sub _spawn_cmd {
    my ($name, @cmd) = @_;
    make_path($MEMC_DIR);
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        POSIX::setsid();
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', catfile($MEMC_DIR, "$name.log");
        open STDERR, '>&', \*STDOUT;
        exec @cmd or POSIX::_exit(127);
    }
    $RUN{$name} = { pid => $pid, frozen => 0 };
    open my $fh, '>', _pidfile($name) or die "pid file: $!";
    print $fh "$pid\n";
    close $fh;
    return $pid;
}

sub _spawn {
    my $name = shift;
    my ($host, $port) = host_port($name);
    my @cmd = ('memcached', '-l', $host, '-p', $port, '-U', '0',
               '-t', '1', '-m', '8', '-c', '256');
    push @cmd, '-u', 'nobody' if $> == 0;
    push @cmd, '-S' if $SASL{$name};
    push @cmd, @{ $OPTS{$name} || [] };
    local $ENV{SASL_CONF_PATH} = $SASL{$name} if $SASL{$name};
    return _spawn_cmd($name, @cmd);
}

# The named servers start as memcached -S, with the SASL configuration in
# $dir (Memsess::Sasl::sasl_setup).  They speak the binary protocol only:
# memc_cmd and memc_get cannot talk to them.
sub memc_sasl {
    my ($dir, @names) = @_;
    $SASL{ _name($_) } = $dir for @names;
}

# The named servers start with these memcached options too:
# memc_opts(['-o', 'no_lru_crawler'], 'PE6').
sub memc_opts {
    my ($opts, @names) = @_;
    $OPTS{ _name($_) } = [@$opts] for @names;
}

sub _answers {
    my $name = shift;
    my $r = eval { memc_cmd($name, 'version', 0.5) };
    return defined $r && $r =~ /^VERSION /;
}

# Starts the named servers (all at once) and waits until each answers.
sub memc_start {
    my @names = map { _name($_) } @_;
    for my $n (@names) {
        die "$n is already running" if $RUN{$n};
        _spawn($n);
    }
    for my $n (@names) {
        if ($SASL{$n}) {
            _wait_listening($n, 'memcached -S', 5, "$MEMC_DIR/$n.log");
            next;
        }
        my $ok = wait_for(5, sub {
            my $pid = $RUN{$n}{pid};
            die "memcached $n exited at start (see $MEMC_DIR/$n.log)"
                if waitpid($pid, WNOHANG) == $pid;
            _answers($n);
        });
        die "memcached $n (port " . port($n) . ") does not answer" unless defined $ok;
    }
    return scalar @names;
}

sub _reap {
    my ($name, $deadline) = @_;
    my $pid = $RUN{$name}{pid};
    my $end = time + $deadline;
    while (time < $end) {
        my $w = waitpid($pid, WNOHANG);
        last if $w == $pid || $w == -1;
        sleep 0.01;
    }
    return waitpid($pid, WNOHANG) != 0 || !kill(0, $pid);
}

sub _forget {
    my $name = shift;
    delete $RUN{$name};
    unlink _pidfile($name);
}

# SIGTERM (after a SIGCONT if frozen), SIGKILL if it lingers.
sub memc_stop {
    for my $n (map { _name($_) } @_) {
        my $r = $RUN{$n} or next;
        kill 'CONT', $r->{pid} if $r->{frozen};
        kill 'TERM', $r->{pid};
        unless (_reap($n, 3)) {
            kill 'KILL', $r->{pid};
            _reap($n, 3);
        }
        _forget($n);
    }
}

# SIGKILL: the server vanishes, connections are refused.
sub memc_kill {
    for my $n (map { _name($_) } @_) {
        my $r = $RUN{$n} or die "$n is not running";
        kill 'KILL', $r->{pid};
        _reap($n, 3) or die "memcached $n (pid $r->{pid}) survived SIGKILL";
        _forget($n);
    }
}

# SIGSTOP: the kernel still completes TCP handshakes, nothing answers.
sub memc_freeze {
    for my $n (map { _name($_) } @_) {
        my $r = $RUN{$n} or die "$n is not running";
        kill 'STOP', $r->{pid} or die "SIGSTOP $n: $!";
        $r->{frozen} = 1;
    }
}

sub memc_thaw {
    for my $n (map { _name($_) } @_) {
        my $r = $RUN{$n} or die "$n is not running";
        kill 'CONT', $r->{pid} or die "SIGCONT $n: $!";
        $r->{frozen} = 0;
    }
}

# Stops what runs, then starts a fresh, empty server on the same port.
sub memc_restart {
    my @names = map { _name($_) } @_;
    memc_stop(grep { $RUN{$_} } @names);
    # the port may take a moment to be free again (no SO_REUSEADDR races)
    memc_start(@names);
}

# php-fpm, one static pool listening on the named port; stop it like a
# memcached (memc_stop).
sub fpm_start {
    my $name = _name(shift);
    my ($host, $port) = host_port($name);
    my ($bin) = grep { -x } sort glob('/usr/sbin/php-fpm*');
    die "no php-fpm installed" unless $bin;
    make_path($MEMC_DIR);
    my $conf = catfile($MEMC_DIR, "$name.conf");
    open my $fh, '>', $conf or die "$conf: $!";
    print $fh "[global]\n",
              "pid = $MEMC_DIR/$name.fpm.pid\n",
              "error_log = $MEMC_DIR/$name.fpm.log\n",
              "daemonize = no\n",
              "[memsess]\n",
              "listen = $host:$port\n",
              "pm = static\n",
              "pm.max_children = 2\n",
              "clear_env = no\n";
    close $fh;
    _spawn_cmd($name, $bin, '-F', '-y', $conf);
    _wait_listening($name, 'php-fpm', 10, "$MEMC_DIR/$name.fpm.log");
}

# Waits until what runs as `name` accepts connections; dies if it exits or
# does not listen in time.
sub _wait_listening {
    my ($name, $what, $timeout, $log) = @_;
    my ($host, $port) = host_port($name);
    my $ok = wait_for($timeout, sub {
        my $pid = $RUN{$name}{pid};
        die "$what $name exited at start (see $log)" if waitpid($pid, WNOHANG) == $pid;
        my $s = IO::Socket::IP->new(PeerHost => $host, PeerPort => $port, Timeout => 1);
        return $s ? 1 : 0;
    }, 0.05);
    die "$what $name does not listen on $host:$port" unless defined $ok;
}

# A fake memcached (t/lib/Memsess/FakeMemcached.pm) in one of its modes,
# as the server `name`; stop it like a memcached.  With $healthy it starts
# as a correct memcached and takes on its mode at fake_toggle().  What it
# was sent is in t/logs/memc/NAME.log ("cmd: ..." lines).
sub fake_start {
    my ($name, $mode, $delay_ms, $healthy) = @_;
    $name = _name($name);
    my ($host, $port) = host_port($name);
    _spawn_cmd($name, $^X, '-I' . catfile($T_DIR, 'lib'), '-MMemsess::FakeMemcached',
               '-e', 'Memsess::FakeMemcached::main', $mode, $host, $port,
               $delay_ms // 300, $healthy ? 1 : 0);
    _wait_listening($name, 'fake memcached', 5, "$MEMC_DIR/$name.log");
}

# Healthy <-> its mode.
sub fake_toggle {
    for my $n (map { _name($_) } @_) {
        my $r = $RUN{$n} or die "$n is not running";
        kill 'USR1', $r->{pid} or die "SIGUSR1 $n: $!";
    }
}

# What a server was sent: the "cmd: ..." lines of its log.
sub fake_commands {
    my $name = _name(shift);
    open my $fh, '<', catfile($MEMC_DIR, "$name.log") or return ();
    return map { /^cmd: (.*?)\r?$/ ? $1 : () } <$fh>;
}

END {
    my $rc = $?;
    for my $n (keys %RUN) {
        eval { memc_stop($n) };
    }
    $? = $rc;
}

$SIG{INT} = $SIG{TERM} = sub { exit 1 };

# ------------------------------------------------------------------------
# the memcached text protocol

my $TERMINAL = qr/(?:^|\r\n)(?:END|STORED|NOT_STORED|EXISTS|NOT_FOUND|DELETED|OK|ERROR|(?:CLIENT|SERVER)_ERROR[^\r\n]*|VERSION [^\r\n]*)\r\n\z/;

# Sends one command line, returns the whole reply (undef on timeout).
sub memc_cmd {
    my ($name, $cmd, $timeout) = @_;
    $timeout //= 2;
    my ($host, $port) = host_port($name);
    my $s = IO::Socket::IP->new(PeerHost => $host, PeerPort => $port,
                                Proto => 'tcp', Timeout => $timeout)
        or die "connect $name: $!\n";
    $s->autoflush(1);
    print $s "$cmd\r\n";
    my $buf = '';
    my $end = time + $timeout;
    my $rin = '';
    vec($rin, fileno($s), 1) = 1;
    while (time < $end) {
        my $left = $end - time;
        last if $left <= 0;
        my $n = select(my $rout = $rin, undef, undef, $left);
        last unless $n > 0;
        my $got = sysread($s, $buf, 65536, length $buf);
        last unless $got;
        last if $buf =~ $TERMINAL;
    }
    close $s;
    return $buf =~ $TERMINAL ? $buf : undef;
}

# The value stored under key, or undef.
sub memc_get {
    my ($name, $key) = @_;
    my $r = memc_cmd($name, "get $key");
    die "no reply from $name to get $key\n" unless defined $r;
    return undef unless $r =~ /^VALUE \S+ \d+ (\d+)\r\n/;
    my $len = $1;
    return substr($r, length($&), $len);
}

sub session_key {
    my ($id, $prefix) = @_;
    return ($prefix || 'memc.sess.key.') . $id;
}

# Which of the named (running) servers hold key.
sub memc_holders {
    my ($key, @names) = @_;
    return grep { defined memc_get($_, $key) } map { _name($_) } @names;
}

# ------------------------------------------------------------------------
# HTTP

sub vhost_hostport {
    my $vhost = shift;
    my $cfg = Apache::Test::config();
    my $v = $cfg->{vars};
    return "$v->{servername}:$v->{port}" if !defined $vhost || $vhost eq 'default';
    my $hp = $cfg->{vhosts}{$vhost}{hostport}
        or die "no vhost '$vhost' in extra.conf";
    return $hp;
}

sub vhost_port { (split /:/, vhost_hostport(shift))[-1] }

sub vhost_url {
    my ($vhost, $path) = @_;
    $path =~ s{^/}{};
    return 'http://' . vhost_hostport($vhost) . "/$path";
}

# A client of its own: one cookie jar = one user.
sub new_ua {
    my %o = @_;
    return LWP::UserAgent->new(
        timeout    => $o{timeout} // 15,
        keep_alive => 0,
        cookie_jar => HTTP::Cookies->new,
        agent      => 'memsess-test',
    );
}

my $JSON = JSON::PP->new->utf8->canonical;

# GET a JSON page: (data or undef, response, seconds).
sub get_json {
    my ($ua, $vhost, $path) = @_;
    my $t0 = time;
    my $res = $ua->get(vhost_url($vhost, $path));
    my $dt = time - $t0;
    my $data = $res->is_success ? eval { $JSON->decode($res->decoded_content) } : undef;
    return ($data, $res, $dt);
}

my $INFO_UA;

# What PHP was told in a vhost (t/htdocs/memsess/info.php), or undef.
sub info {
    my ($vhost, $path) = @_;
    $INFO_UA ||= new_ua(timeout => 10);
    my ($data) = get_json($INFO_UA, $vhost, $path || '/memsess/info.php');
    return $data;
}

# Waits until the vhost's requests see MEMSESS_LIVE eq $live ("2/2");
# seconds it took, or undef.  Needs no status page.
sub wait_live {
    my ($vhost, $live, $timeout) = @_;
    return wait_for($timeout, sub {
        my $i = info($vhost) or return 0;
        my $l = $i->{env}{MEMSESS_LIVE};
        return defined $l && $l eq $live;
    }, 0.05);
}

# ------------------------------------------------------------------------
# the status page

my $STATUS_UA;

# The decoded /memsess-status?json of the main server (undef if it fails).
sub status {
    $STATUS_UA ||= LWP::UserAgent->new(timeout => 5, keep_alive => 1);
    my $res = $STATUS_UA->get(vhost_url('default', '/memsess-status?json'));
    return undef unless $res->is_success;
    return eval { $JSON->decode($res->decoded_content) };
}

sub status_server {
    my ($st, $addr) = @_;
    return undef unless $st && ref $st->{servers} eq 'ARRAY';
    for my $s (@{ $st->{servers} }) {
        return $s if defined $s->{address} && $s->{address} eq $addr;
    }
    return undef;
}

# The pool entry of a vhost (matched by its port).
sub pool_of {
    my ($st, $vhost) = @_;
    return undef unless $st && ref $st->{pools} eq 'ARRAY';
    my $port = vhost_port($vhost);
    for my $p (@{ $st->{pools} }) {
        return $p if defined $p->{vhost} && $p->{vhost} =~ /:\Q$port\E$/;
    }
    return undef;
}

sub live_of {
    my ($st, $vhost) = @_;
    my $p = pool_of($st, $vhost) or return undef;
    return join ',', @{ $p->{live} || [] };
}

sub server_state {
    my ($name, $st) = @_;
    $st ||= status();
    my $s = status_server($st, addr($name)) or return undef;
    return $s->{state};
}

# { name => state } for the named servers, from one status snapshot.
sub states_of {
    my ($st, @names) = @_;
    return { map { $_ => (server_state($_, $st) // 'missing') } map { _name($_) } @names };
}

# Waits until every named server is in state; seconds it took, or undef.
# wait_back(@names): (seconds until every one of @names has passed its
# probes: no longer down; seconds until every one is up), each undef when it
# did not happen within up_deadline().
sub wait_back {
    my (@names) = @_;
    my $t0 = time;
    my $passed;
    my $up = wait_for(up_deadline(), sub {
        my $st = status() or return 0;
        my @s = map { server_state($_, $st) // 'missing' } @names;
        $passed //= time - $t0 unless grep { $_ eq 'down' || $_ eq 'missing' } @s;
        return !grep { $_ ne 'up' } @s;
    });
    return ($passed, $up);
}

# back_verdict(passed, up), from wait_back: 'up' when the servers passed
# within pass_deadline() and were up (synced) within up_deadline(); else what
# went wrong, for the check's "received".
sub back_verdict {
    my ($passed, $up) = @_;
    return 'still down' unless defined $passed;
    return sprintf('passed after %d ms', $passed * 1000) if $passed > pass_deadline();
    return 'passed, not up (synced) in time' unless defined $up;
    return 'up';
}

# back_diag(what, passed, up): the comment line with both times.
sub back_diag {
    my ($what, $passed, $up) = @_;
    my $ms = sub { defined $_[0] ? int($_[0] * 1000) : 'never' };
    diag sprintf '%s passed its probes after %s ms (deadline %d ms), up (synced) after %s ms (deadline %d ms)',
        $what, $ms->($passed), pass_deadline() * 1000, $ms->($up), up_deadline() * 1000;
}

sub wait_states {
    my ($timeout, $state, @names) = @_;
    return wait_for($timeout, sub {
        my $st = status() or return 0;
        for my $n (@names) {
            my $s = server_state($n, $st);
            return 0 unless defined $s && $s eq $state;
        }
        return 1;
    });
}

# ------------------------------------------------------------------------
# polling and the error log

# Polls the status page from $t0 (a time) until every server of @$down is
# down or $timeout passes; at every look each server of @$up must be up.
# Returns ({ name => seconds from $t0 to its first look down }, [ "name=state"
# of every look that found one of @$up not up ]).
sub wait_down {
    my ($timeout, $t0, $down, $up) = @_;
    my (%down_at, @not_up);
    wait_for($timeout, sub {
        my $st = status() or return 0;
        my $now = time - $t0;
        for my $n (@$down) {
            $down_at{$n} //= $now if (server_state($n, $st) // '') eq 'down';
        }
        for my $n (@$up) {
            my $s = server_state($n, $st) // 'missing';
            push @not_up, "$n=$s" if $s ne 'up';
        }
        return keys(%down_at) == @$down;
    });
    return (\%down_at, \@not_up);
}

# Calls $cond every $every seconds until it returns true or $timeout
# passes.  Returns the seconds it took (0 if true at once), or undef.
sub wait_for {
    my ($timeout, $cond, $every) = @_;
    $every //= 0.02;
    my $t0 = time;
    my $end = $t0 + $timeout;
    while (1) {
        return time - $t0 if $cond->();
        last if time >= $end;
        sleep $every;
    }
    return undef;
}

# A NOTICE line that says the server went into state.
sub state_log_re {
    my ($name, $state) = @_;
    my $ad = addr($name);
    return qr/\[[^\]]*:notice\].*MEMSESS\d{4}:.*\Q$ad\E(?!\d).*\b\Q$state\E\b/;
}

sub log_file { catfile($T_LOGS, 'error_log') }

sub log_mark { -s log_file() || 0 }

# What the error log got since a mark.
sub log_since {
    my $mark = shift // 0;
    open my $fh, '<', log_file() or return '';
    seek $fh, $mark, 0;
    local $/;
    my $s = <$fh>;
    close $fh;
    return $s // '';
}

# The time of an error log line ("[Tue Nov 24 01:33:48.346998 2026] ..."),
# in epoch seconds with microseconds, or undef.
my %MON = (Jan => 0, Feb => 1, Mar => 2, Apr => 3, May => 4, Jun => 5,
           Jul => 6, Aug => 7, Sep => 8, Oct => 9, Nov => 10, Dec => 11);
sub log_time {
    my $line = shift // return undef;
    my ($mon, $d, $h, $mi, $s, $us, $y) =
        $line =~ /^\[\w+ (\w+) +(\d+) (\d+):(\d+):(\d+)\.(\d+) (\d+)\]/ or return undef;
    return POSIX::mktime($s, $mi, $h, $d, $MON{$mon}, $y - 1900, 0, 0, -1) + $us / 1e6;
}

# Waits for a line matching $re after $mark; returns the line or undef.
sub log_wait {
    my ($timeout, $mark, $re) = @_;
    my $line;
    wait_for($timeout, sub {
        for (split /\n/, log_since($mark)) {
            if ($_ =~ $re) { $line = $_; return 1 }
        }
        return 0;
    }, 0.05);
    return $line;
}

# ------------------------------------------------------------------------
# Work in a child process (a request that blocks): bg_run(sub { ... })
# returns a handle; bg_join($h, $timeout) what the sub returned (a hash
# reference, through JSON), or {} when it did not end in time (killed).

sub bg_run {
    my ($code) = @_;
    my ($fh, $file) = File::Temp::tempfile(UNLINK => 1);
    my $t0 = time;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        my $r = $code->();
        open my $out, '>', $file or POSIX::_exit(1);
        print $out $JSON->encode($r || {});
        close $out;
        POSIX::_exit(0);
    }
    return { pid => $pid, file => $file, t0 => $t0 };
}

sub bg_join {
    my ($h, $timeout) = @_;
    my $done = wait_for($timeout, sub { waitpid($h->{pid}, POSIX::WNOHANG()) == $h->{pid} }, 0.05);
    if (!defined $done) {
        kill 'KILL', $h->{pid};
        waitpid $h->{pid}, 0;
        return {};
    }
    open my $in, '<', $h->{file} or return {};
    local $/;
    return eval { $JSON->decode(<$in>) } || {};
}

1;
