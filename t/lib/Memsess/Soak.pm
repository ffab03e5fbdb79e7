package Memsess::Soak;

# A randomized fault soak (issue 21): the article's topology (three Apache
# instances, each as a user of its own, behind nginx round robin, three
# memcached at the defaults), users with counters alternating between the
# instances, some of them logging out, and a seeded schedule of faults:
#
#   memcached track (one at a time: MemsessReplicas 1 tolerates one)
#     kill      SIGKILL, restarted empty after a while
#     freeze    SIGSTOP, SIGCONT after a while
#     cut       one instance's TCP to one memcached rejected (RST), healed
#     cut_drop  the same, packets dropped
#     pool      a fourth memcached added to the pool by configuration on the
#               three instances (a graceful each), removed again later
#   Apache track (overlapping anything)
#     graceful      apachectl graceful of one instance
#     restart       apachectl restart of one instance
#     checker_kill  SIGKILL of the child running one instance's checker
#     cpu           stress-ng on every core for a few seconds
#
# Every request is judged: no session lost (the counter back to 1), none
# stale (an older counter), no logout undone (resurrected); failed requests
# are counted with the faults active at the time.  Resources are sampled
# every two seconds: fds and RSS of every Apache process and memcached,
# sockets in TIME_WAIT.
#
# The schedule is a function of the seed alone (a private generator: the
# rest of the harness may call rand()): the seed is printed first and taken
# back from MEMSESS_SOAK_SEED.  Steps run at their time in the schedule,
# later only when a memcached fault must wait for the previous one to be
# over (every instance sees every server up again): the wait is logged.
#
#   my $farm = Memsess::Soak::farm_start();
#   my $r = Memsess::Soak::run_phase($farm, seed => 42, seconds => 30, out => $dir);
#   Memsess::Soak::farm_stop($farm);
#
# What a phase writes to OUT/soak-SEED/: schedule.txt (planned, then every
# step as it ran), requests.log (t0 t1 user kind n ok errors pid), faults.json,
# resources.log, violations.txt, summary.json (bench/lib/soak.py reads them).

use strict;
use warnings FATAL => 'all';

use Time::HiRes qw(time sleep);
use POSIX ();
use Digest::MD5 ();
use File::Path qw(make_path);
use File::Spec::Functions qw(catfile);
use JSON::PP ();
use Memsess::Test qw(addr port memc_start memc_stop memc_kill memc_freeze memc_thaw
                     memc_pid new_ua wait_for log_time diag);
use Memsess::Instance;

my $JSON = JSON::PP->new->utf8->canonical;
my $PARENT = $$;
my %KIDS;    # pid => what: the load's processes and stress-ng, stopped at END
my $NGINX = '/usr/sbin/nginx';
our @MEMC = qw(MEMC_SK1 MEMC_SK2 MEMC_SK3);
our $EXTRA = 'MEMC_SK4';      # the server the pool fault adds

# ------------------------------------------------------------------------
# the seeded generator: Park-Miller (48271), the same on every machine

sub new_rng {
    my $seed = shift;
    # nearby seeds would start alike: the state is a hash of the seed
    my $s = unpack('N', Digest::MD5::md5("memsess-soak $seed")) % 2147483646 + 1;
    return sub {
        $s = ($s * 48271) % 2147483647;
        return ($s - 1) / 2147483646;
    };
}

sub random_seed {
    my $s;
    if (open my $fh, '<', '/dev/urandom') {
        read $fh, my $b, 4;
        close $fh;
        $s = unpack 'N', $b;
    }
    $s //= int(time * 1000) ^ $$;
    return 1 + $s % 2147483646;
}

sub _pick {
    my ($r, @kinds) = @_;    # [name, weight]...
    my $sum = 0;
    $sum += $_->[1] for @kinds;
    my $x = $r->() * $sum;
    for my $k (@kinds) {
        return $k->[0] if ($x -= $k->[1]) < 0;
    }
    return $kinds[-1][0];
}

our @MEMC_KINDS = ([kill => 3], [freeze => 3], [cut => 2], [cut_drop => 2], [pool => 1]);
our @WEB_KINDS  = ([graceful => 3], [restart => 2], [checker_kill => 3], [cpu => 2],
                   [clock => 2]);

# The faults of a run of $secs seconds: [{ id, kind, track, server (1-3),
# web (1-3), at, dur }], in the order they start.  %o: kinds => [names]
# keeps only those kinds.
sub schedule {
    my ($seed, $secs, %o) = @_;
    my %only = map { $_ => 1 } @{ $o{kinds} || [] };
    my $keep = sub { !%only || $only{ $_[0] } };
    my @mk = grep { $keep->($_->[0]) } @MEMC_KINDS;
    my @wk = grep { $keep->($_->[0]) } @WEB_KINDS;
    my $r = new_rng($seed);
    my @f;
    my $t = 2 + 2 * $r->();
    while (@mk && $t < $secs - 6) {
        my ($kind, $srv, $web) = (_pick($r, @mk), 1 + int(3 * $r->()), 1 + int(3 * $r->()));
        my $dur = 1.5 + 5 * $r->();
        $dur = 4 + 4 * $r->() if $kind eq 'pool';
        $dur = $secs - 3 - $t if $t + $dur > $secs - 3;
        push @f, { kind => $kind, track => 'memc', server => $srv, web => $web,
                   at => $t, dur => $dur };
        $t += $dur + 3 + 4 * $r->();
    }
    $t = 1.5 + 3 * $r->();
    while (@wk && $t < $secs - 4) {
        my ($kind, $web) = (_pick($r, @wk), 1 + int(3 * $r->()));
        my $dur = $kind eq 'cpu' ? 2 + 4 * $r->() : $kind eq 'clock' ? 3 + 5 * $r->() : 0;
        my %more = $kind eq 'clock' ? (step => ($r->() < 0.5 ? -1 : 1) * (2 + int(4 * $r->()))) : ();
        push @f, { kind => $kind, track => 'web', web => $web, at => $t, dur => $dur, %more };
        $t += 2 + 6 * $r->();
    }
    @f = sort { $a->{at} <=> $b->{at} } @f;
    $f[$_]{id} = $_ + 1 for 0 .. $#f;
    return \@f;
}

sub describe {
    my $f = shift;
    my $k = $f->{kind};
    my $n = "N" . ($f->{server} // "?");
    my $w = "web$f->{web}";
    return sprintf('kill %s, restarted empty after %.1f s', $n, $f->{dur}) if $k eq 'kill';
    return sprintf('freeze %s for %.1f s', $n, $f->{dur}) if $k eq 'freeze';
    return sprintf('cut %s from %s (reject) for %.1f s', $w, $n, $f->{dur}) if $k eq 'cut';
    return sprintf('cut %s from %s (drop) for %.1f s', $w, $n, $f->{dur}) if $k eq 'cut_drop';
    return sprintf('pool: N4 added (gracefuls), removed after %.1f s', $f->{dur}) if $k eq 'pool';
    return sprintf('stress-ng on every core for %.1f s', $f->{dur}) if $k eq 'cpu';
    return sprintf('clock of %s stepped %+d s for %.1f s', $w, $f->{step}, $f->{dur}) if $k eq 'clock';
    return "$k $w";
}

# The steps of a schedule: [{ at, fault, op => start|end }], by time.
sub steps {
    my $faults = shift;
    my @s;
    for my $f (@$faults) {
        push @s, { at => $f->{at}, fault => $f, op => 'start' };
        push @s, { at => $f->{at} + $f->{dur}, fault => $f, op => 'end' } if $f->{dur} > 0;
    }
    return [ sort { $a->{at} <=> $b->{at} || $a->{fault}{id} <=> $b->{fault}{id} } @s ];
}

# ------------------------------------------------------------------------
# the farm: three memcached, three instances as memsess-web1..3, nginx

sub pool_conf {
    my @names = @_;
    return 'MemsessServers ' . join(' ', map { addr($_) } @names) . "\n";
}

# The file an instance's clock offset is read from (libfaketime).
our $FAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1';
sub clock_file { catfile($_[0]->dir, 'faketime.rc') }

sub farm_start {
    my %o = @_;
    my $vars = Apache::Test::vars();
    chmod 01777, $vars->{t_logs};
    memc_start(@MEMC);
    my @web;
    for my $i (1 .. 3) {
        push @web, Memsess::Instance->new(
            name => "soak$i", php => 1, user => "memsess-web$i",
            # the defaults (MemsessReplicas 1, MemsessFailover successor ...)
            conf => pool_conf(@MEMC));
        # A group named in the configuration: with the group derived from
        # the pool (the default), a pool changed one instance at a time
        # splits the instances into two groups that rebalance alone and
        # publish different lists (found by this soak, seed 7022: 51 lost,
        # 183 stale, 32 resurrected).  MEMSESS_SOAK_DERIVED_GROUP=1 runs the
        # default.
        $web[-1]{conf} .= "MemsessGroup memsess-soak\n" unless $ENV{MEMSESS_SOAK_DERIVED_GROUP};
        $web[-1]->write_conf;
        # its wall clock as the file says (libfaketime, read every second;
        # its monotonic clock left alone): the clock fault steps it (not
        # under ASan: with both runtimes httpd hangs as it starts)
        if (-f $FAKETIME && !$ENV{MEMSESS_TEST_SANITIZED}) {
            open my $fh, '>', clock_file($web[-1]) or die clock_file($web[-1]) . ": $!";
            print $fh "+0\n";
            close $fh;
            $web[-1]{skew} = '@' . clock_file($web[-1]);
        }
    }
    chmod 0755, $_->dir for @web;
    $_->start for @web;
    my $farm = { web => \@web, memc => [@MEMC] };
    nginx_start($farm, catfile($vars->{t_logs}, 'inst', 'soak-nginx'));
    return $farm;
}

sub nginx_start {
    my ($farm, $ndir) = @_;
    make_path("$ndir/tmp");
    my ($port) = Memsess::Instance::free_ports(1);
    my $up = join '', map { "        server 127.0.0.1:" . $_->port . " max_fails=0;\n" }
        @{ $farm->{web} };
    open my $fh, '>', "$ndir/nginx.conf" or die "$ndir/nginx.conf: $!";
    print $fh <<"EOF";
worker_processes 1;
daemon on;
pid $ndir/nginx.pid;
error_log $ndir/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $ndir/tmp/client;
    proxy_temp_path $ndir/tmp/proxy;
    fastcgi_temp_path $ndir/tmp/fastcgi;
    uwsgi_temp_path $ndir/tmp/uwsgi;
    scgi_temp_path $ndir/tmp/scgi;
    upstream web {
$up    }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://web;
            proxy_next_upstream error;
        }
    }
}
EOF
    close $fh;
    system($NGINX, '-p', $ndir, '-e', "$ndir/error.log", '-c', "$ndir/nginx.conf") == 0
        or die "nginx does not start";
    $farm->{nginx_dir} = $ndir;
    $farm->{nginx_port} = $port;
    wait_for(5, sub { -s "$ndir/nginx.pid" });
    $farm->{nginx_pid} = _read_pid("$ndir/nginx.pid");
    return $port;
}

sub _read_pid {
    open my $fh, '<', shift or return undef;
    my $p = <$fh>;
    close $fh;
    return $p && $p =~ /^(\d+)/ ? $1 : undef;
}

sub farm_stop {
    my $farm = shift;
    return unless $farm;
    _cpu_stop($farm);
    for my $u (keys %{ $farm->{cuts} || {} }) {
        Memsess::Instance::root_helper('heal', split / /, $u);
    }
    if (my $p = $farm->{nginx_pid}) {
        kill 'TERM', $p;
        wait_for(5, sub { !kill 0, $p });
        delete $farm->{nginx_pid};
    }
    $_->stop for @{ $farm->{web} };
    memc_stop(grep { memc_pid($_) } @MEMC, $EXTRA);
}

# ------------------------------------------------------------------------
# the load: users through nginx, a counter each, some log out

# Forks $procs processes of $per users each; every request is a line of
# OUT/requests.N: "t0 t1 user kind n ok errors pid" (kind s: the counter
# page, n its counter or -1; kind o: a logout, ok = destroyed).  A user
# logs out with probability 1 % per request, 5 % while $flag exists (a
# fault is active), once it has counted to 3.
sub load_start {
    my ($farm, $dir, %o) = @_;
    my ($procs, $per, $seed) = ($o{procs} // 6, $o{users} // 5, $o{seed} // 1);
    my $stop = "$dir/stop";
    unlink $stop;
    my $base = "http://127.0.0.1:$farm->{nginx_port}/memsess";
    my @pids;
    for my $p (1 .. $procs) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            # no END blocks here: they would stop the farm
            $SIG{TERM} = $SIG{INT} = sub { POSIX::_exit(0) };
            srand($seed * 31 + $p);
            open my $out, '>>', "$dir/requests.$p" or POSIX::_exit(1);
            $out->autoflush(1);
            my @users = map { { name => "u$p.$_", ua => new_ua(timeout => 15), n => 0 } } 1 .. $per;
            until (-e $stop) {
                for my $u (@users) {
                    my $logout = $u->{n} >= 3 && rand() < (-e $o{flag} ? 0.05 : 0.01);
                    my $t0 = time;
                    # (a POST, as a form that changes the session is: nginx
                    # passes it to another instance when one refuses the
                    # connection, never once it was sent, as it does a GET:
                    # a request an instance killed by a restart had run
                    # was run again, and its user read a counter 2 ahead)
                    my $res = $u->{ua}->post("$base/" . ($logout ? 'logout.php' : 'session.php'));
                    my $t1 = time;
                    my $d = $res->is_success ? eval { $JSON->decode($res->decoded_content) } : undef;
                    my $errs = $d ? join('|', @{ $d->{errors} || [] }) : $res->status_line;
                    $errs =~ s/\s+/_/g;
                    $errs = '-' if $errs eq '';
                    my ($n, $ok);
                    if ($logout) {
                        ($n, $ok) = (-1, $d && $d->{started} && $d->{destroyed} ? 1 : 0);
                        $u->{n} = 0 if $ok;
                    }
                    else {
                        $n = $d && defined $d->{n} ? $d->{n} : -1;
                        $ok = $d && $d->{written} && $d->{started} && $errs eq '-' ? 1 : 0;
                        $u->{n} = $n if $ok;
                    }
                    printf $out "%.3f %.3f %s %s %d %d %s %s\n", $t0, $t1, $u->{name},
                        $logout ? 'o' : 's', $n, $ok, $errs, $d ? $d->{pid} // '-' : '-';
                }
            }
            close $out;
            POSIX::_exit(0);
        }
        push @pids, $pid;
        $KIDS{$pid} = 'load';
    }
    return { pids => \@pids, stop => $stop };
}

sub load_stop {
    my $l = shift;
    open my $fh, '>', $l->{stop} or die "$l->{stop}: $!";
    close $fh;
    my $end = time + 30;
    for my $p (@{ $l->{pids} }) {
        sleep 0.05 while waitpid($p, POSIX::WNOHANG()) == 0 && time < $end;
        if (kill 0, $p) {
            kill 'KILL', $p;
            waitpid $p, 0;
        }
        delete $KIDS{$p};
    }
}

# ------------------------------------------------------------------------
# faults

sub _web { $_[0]{web}[ $_[1] - 1 ] }

# Every instance says every server of @names is up (undef: no answer).
sub all_up {
    my ($farm, @names) = @_;
    @names = @{ $farm->{memc} } unless @names;
    for my $w (@{ $farm->{web} }) {
        my $st = $w->status or return 0;
        my %s = map { $_->{address} => $_->{state} } @{ $st->{servers} || [] };
        for my $n (@names) {
            return 0 unless ($s{ addr($n) } // '') eq 'up';
        }
    }
    return 1;
}

# Every instance is configured with the servers of $farm->{memc}, sees
# them up, and publishes N4 if and only if it is one of them (a pool
# change is over).
sub settled {
    my $farm = shift;
    my @want = @{ $farm->{memc} };
    my $with4 = grep { $_ eq $EXTRA } @want;
    my $a4 = addr($EXTRA);
    for my $w (@{ $farm->{web} }) {
        my $st = $w->status or return 0;
        my %s = map { $_->{address} => $_->{state} } @{ $st->{servers} || [] };
        for my $n (@want) {
            return 0 unless ($s{ addr($n) } // '') eq 'up';
        }
        my ($pool) = @{ $st->{pools} || [] };
        return 0 unless $pool && join(',', @{ $pool->{configured} || [] })
            eq join(',', map { addr($_) } @want);
        if (defined $pool->{published}) {
            my $has = $pool->{published} =~ /\Q$a4\E(?!\d)/ ? 1 : 0;
            return 0 if $has != ($with4 ? 1 : 0);
        }
    }
    return 1;
}

# The pid of the child running instance $w's checker (the last MEMSESS0013
# of its log, if it is still one of its children).
sub checker_pid {
    my $w = shift;
    my @p = $w->log_since(0) =~ /MEMSESS0013: checker started in process (\d+)/g;
    return undef unless @p;
    my %kids = map { $_ => 1 } $w->children;
    return $kids{ $p[-1] } ? $p[-1] : undef;
}

sub _cpu_start {
    my ($farm, $secs) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        POSIX::setsid();
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', '/dev/null';
        open STDERR, '>&', \*STDOUT;
        exec 'stress-ng', '--cpu', '0', '--timeout', int($secs + 5) . 's', '--quiet'
            or POSIX::_exit(127);
    }
    $farm->{cpu} = $pid;
    $KIDS{$pid} = 'cpu';
    return $pid;
}

sub _cpu_stop {
    my $farm = shift;
    my $pid = delete $farm->{cpu} or return;
    delete $KIDS{$pid};
    kill 'TERM', -$pid;    # its process group: stress-ng and its workers
    kill 'TERM', $pid;
    my $end = time + 5;
    sleep 0.02 while waitpid($pid, POSIX::WNOHANG()) == 0 && time < $end;
    if (kill 0, $pid) {
        kill 'KILL', -$pid;
        kill 'KILL', $pid;
        waitpid $pid, 0;
    }
}

# Runs one step; returns a note for the step log.
sub act {
    my ($farm, $step) = @_;
    my $f = $step->{fault};
    my ($k, $op) = ($f->{kind}, $step->{op});
    my $srv = defined $f->{server} ? $farm->{memc}[ $f->{server} - 1 ] : undef;
    my $w = _web($farm, $f->{web});
    my $user = "memsess-web$f->{web}";
    if ($k eq 'kill') {
        if ($op eq 'start') { memc_kill($srv); return 'SIGKILL' }
        memc_start($srv);
        return 'started empty';
    }
    if ($k eq 'freeze') {
        if ($op eq 'start') { memc_freeze($srv); return 'SIGSTOP' }
        memc_thaw($srv);
        return 'SIGCONT';
    }
    if ($k eq 'cut' || $k eq 'cut_drop') {
        my $key = "$user " . port($srv);
        if ($op eq 'start') {
            my ($rc, $out) = Memsess::Instance::root_helper('cut', $key, $k eq 'cut_drop' ? 'drop' : ());
            die "cut $key: $out" if $rc;
            $farm->{cuts}{$key} = 1;
            return 'iptables rule added';
        }
        my ($rc, $out) = Memsess::Instance::root_helper('heal', $key);
        die "heal $key: $out" if $rc;
        delete $farm->{cuts}{$key};
        return 'iptables rule removed';
    }
    if ($k eq 'pool') {
        my @names = $op eq 'start' ? (@MEMC, $EXTRA) : @MEMC;
        memc_start($EXTRA) if $op eq 'start';
        my @took;
        for my $x (@{ $farm->{web} }) {
            $x->{conf} = pool_conf(@names)
                . ($ENV{MEMSESS_SOAK_DERIVED_GROUP} ? '' : "MemsessGroup memsess-soak\n");
            $x->write_conf;
            push @took, sprintf '%.2f', $x->graceful;
        }
        $farm->{memc} = [@names];
        return ($op eq 'start' ? 'N4 added' : 'N4 removed') . ", gracefuls took @took s";
    }
    if ($k eq 'graceful' || $k eq 'restart') {
        my $took = eval { $w->graceful(hard => $k eq 'restart') };
        return defined $took ? sprintf('new generation answers after %.2f s', $took) : "FAILED: $@";
    }
    if ($k eq 'checker_kill') {
        my $pid = checker_pid($w) or return 'no checker found: skipped';
        my ($rc, $out) = Memsess::Instance::root_helper('killchild', $w->dir, $pid);
        return $rc ? "SIGKILL of $pid failed: $out" : "SIGKILL of checker child $pid";
    }
    if ($k eq 'clock') {
        return 'no libfaketime under this httpd (the ASan pass): skipped' unless $w->{skew};
        my $to = $op eq 'start' ? sprintf('%+d', $f->{step}) : '+0';
        open my $fh, '>', clock_file($w) or return "cannot write " . clock_file($w) . ": $!";
        print $fh "$to\n";
        close $fh;
        return "its clock set to $to s (libfaketime reads it within a second)";
    }
    if ($k eq 'cpu') {
        return 'stress-ng pid ' . _cpu_start($farm, $f->{dur}) if $op eq 'start';
        _cpu_stop($farm);
        return 'stress-ng stopped';
    }
    die "unknown fault $k";
}

# ------------------------------------------------------------------------
# resources

# TIME_WAIT sockets to or from any of @ports.
sub time_wait {
    my %ports = map { $_ => 1 } @_;
    my $n = 0;
    open my $fh, '-|', 'ss', '-Htan', 'state', 'time-wait' or return -1;
    while (<$fh>) {
        my @c = split;
        # Recv-Q Send-Q Local:Port Peer:Port
        my ($l, $p) = @c[-2, -1];
        $n++ if ($l =~ /:(\d+)$/ && $ports{$1}) || ($p =~ /:(\d+)$/ && $ports{$1});
    }
    close $fh;
    return $n;
}

sub _fds { my $p = shift; opendir my $d, "/proc/$p/fd" or return -1; my $n = () = readdir $d; return $n - 2 }

sub _status_kb {
    my ($pid, $field) = @_;
    open my $fh, '<', "/proc/$pid/status" or return undef;
    my ($kb) = map { /^\Q$field\E:\s+(\d+)/ ? $1 : () } <$fh>;
    return $kb;
}

# One sample: { t, web => [{ parent_fds, child_fds (max), child_rss (max kB),
# children, shm (parent RssShmem kB) }], memc => { name => [fds, rss] }, tw }.
sub sample {
    my $farm = shift;
    my %s = (t => time, web => [], memc => {});
    for my $w (@{ $farm->{web} }) {
        my ($rc, $out) = Memsess::Instance::root_helper('fds', $w->dir);
        my %fds = $rc ? () : map { /^(\d+) (\d+)$/ ? ($1 => $2) : () } split /\n/, $out;
        my $ppid = $w->pid // 0;
        my @kids = grep { $_ != $ppid } keys %fds;
        my ($cf, $cr) = (0, 0);
        for my $k (@kids) {
            $cf = $fds{$k} if $fds{$k} > $cf;
            my $r = _status_kb($k, 'VmRSS') // 0;
            $cr = $r if $r > $cr;
        }
        push @{ $s{web} }, { parent_fds => $fds{$ppid} // -1, child_fds => $cf, child_rss => $cr,
                             children => scalar @kids, shm => _status_kb($ppid, 'RssShmem') // -1 };
    }
    for my $n (@MEMC, $EXTRA) {
        my $p = memc_pid($n) or next;
        $s{memc}{$n} = [ _fds($p), _status_kb($p, 'VmRSS') // -1 ];
    }
    my @ports = ((map { port($_) } @MEMC, $EXTRA), (map { $_->port } @{ $farm->{web} }),
                 $farm->{nginx_port});
    $s{tw} = time_wait(@ports);
    return \%s;
}

# A process of its own samples every 2 s (the driver's steps never wait
# for it), one JSON line each to $file, until $stop exists.
sub sampler_start {
    my ($farm, $file, $stop) = @_;
    unlink $file, $stop;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        $SIG{TERM} = $SIG{INT} = sub { POSIX::_exit(0) };
        open my $out, '>>', $file or POSIX::_exit(1);
        $out->autoflush(1);
        until (-e $stop) {
            my $t = time;
            my $s = eval { sample($farm) };
            if ($s) {
                $s->{took} = time - $t;
                print $out $JSON->encode($s), "\n";
            }
            my $left = $t + 2 - time;
            sleep $left if $left > 0;
        }
        POSIX::_exit(0);
    }
    $KIDS{$pid} = 'sampler';
    return { pid => $pid, file => $file, stop => $stop };
}

sub sampler_stop {
    my $sp = shift;
    open my $fh, '>', $sp->{stop} or die "$sp->{stop}: $!";
    close $fh;
    my $end = time + 20;
    sleep 0.05 while waitpid($sp->{pid}, POSIX::WNOHANG()) == 0 && time < $end;
    if (kill 0, $sp->{pid}) {
        kill 'KILL', $sp->{pid};
        waitpid $sp->{pid}, 0;
    }
    delete $KIDS{ $sp->{pid} };
    open my $in, '<', $sp->{file} or return ();
    return map { eval { $JSON->decode($_) } || () } <$in>;
}

# Bounds on the samples (after the first, taken before the first fault):
# [name, value, bound, ok].
sub judge_resources {
    my ($samples, $rate) = @_;
    return [] unless @$samples >= 2;
    # each instance's baseline: its first sample that measured a child (a
    # graceful at the start leaves one with children but none measured)
    my @out;
    for my $i (0 .. $#{ $samples->[0]{web} }) {
        my ($fs) = grep { $_->{web}[$i]{children} && $_->{web}[$i]{child_fds} } @$samples;
        my $f = ($fs // $samples->[0])->{web}[$i];
        my ($mf, $mr, $pf, $shm) = (0, 0, 0, 0);
        for my $s (@$samples) {
            my $x = $s->{web}[$i];
            $mf = $x->{child_fds} if $x->{child_fds} > $mf;
            $mr = $x->{child_rss} if $x->{child_rss} > $mr;
            $pf = $x->{parent_fds} if $x->{parent_fds} > $pf;
            $shm = $x->{shm} if $x->{shm} > $shm;
        }
        my $w = 'web' . ($i + 1);
        push @out, ["$w child fds (max)", $mf, $f->{child_fds} + 32];
        push @out, ["$w parent fds (max)", $pf, $f->{parent_fds} + 16];
        push @out, ["$w child RSS kB (max)", $mr, $f->{child_rss} + 16384];
        push @out, ["$w parent RssShmem kB (max)", $shm, $f->{shm} + 4096];
    }
    for my $n (@MEMC) {
        my ($mf, $mr) = (0, 0);
        for my $s (@$samples) {
            my $m = $s->{memc}{$n} or next;
            $mf = $m->[0] if $m->[0] > $mf;
            $mr = $m->[1] if $m->[1] > $mr;
        }
        (my $short = $n) =~ s/^MEMC_SK/N/;
        push @out, ["$short memcached fds (max)", $mf, 200];
        push @out, ["$short memcached RSS kB (max)", $mr, 65536];
    }
    my $tw = 0;
    $tw = $_->{tw} > $tw ? $_->{tw} : $tw for @$samples;
    # every request opens about four connections (client, nginx, two
    # memcached), each in TIME_WAIT for 60 s on one side
    push @out, ['TIME_WAIT sockets (max)', $tw, int(8 * $rate * 60 + 2000)];
    $_->[3] = $_->[1] <= $_->[2] ? 1 : 0 for @out;
    return \@out;
}

# ------------------------------------------------------------------------
# the judge

# Reads OUT/requests.*: counts, per-fault failures, violations, per-second
# buckets.  $faults: the faults as run ({ id, kind, t_start, t_until }).
sub judge {
    my ($dir, $faults) = @_;
    my %by;
    for my $file (glob "$dir/requests.*") {
        open my $fh, '<', $file or next;
        while (<$fh>) {
            my ($user) = /^\S+ \S+ (\S+) / or next;
            push @{ $by{$user} }, $_;
        }
    }
    my %c = (requests => 0, ok => 0, failed => 0, lost => 0, stale => 0, resurrected => 0,
             logouts => 0, logouts_failed => 0, per_kind => {}, violations => [], secs => {});
    my $active = sub {
        my ($t0, $t1) = @_;
        return grep { $t0 < $_->{t_until} && $t1 > $_->{t_start} } @$faults;
    };
    for my $user (sort keys %by) {
        my @ev = sort { $a->[0] <=> $b->[0] } grep { @$_ >= 8 } map { [split] } @{ $by{$user} };
        delete $by{$user};
        my ($last, $slack, $after, $old) = (undef, 0, '', undef);
        my @hist;
        for my $e (@ev) {
            my ($t0, $t1, undef, $kind, $n, $ok, $errs, $pid) = @$e;
            push @hist, $e;
            shift @hist if @hist > 6;
            $c{requests}++;
            my $sec = int $t0;
            my $b = $c{secs}{$sec} ||= { req => 0, ok => 0, failed => 0, bad => 0 };
            $b->{req}++;
            my @act = $active->($t0, $t1);
            my @kinds = @act ? do { my %u = map { $_->{kind} => 1 } @act; sort keys %u } : ('none');
            $c{per_kind}{$_}{requests}++ for @kinds;
            if ($kind eq 'o') {
                $c{logouts}++;
                if ($ok) {
                    ($after, $old, $slack) = ('out', $last, 0);
                }
                else {
                    $c{logouts_failed}++;
                    $c{per_kind}{$_}{failed}++ for @kinds;
                    $b->{failed}++;
                    $after = 'maybe';
                    $old //= $last;
                    $slack++;
                }
                next;
            }
            if (!$ok) {
                $c{failed}++;
                $c{per_kind}{$_}{failed}++ for @kinds;
                $b->{failed}++;
                $slack++;
                next;
            }
            my $verdict;
            if ($after eq 'out' || !defined $last) {
                $verdict = $n <= 1 + $slack ? 'ok' : $after eq 'out' ? 'resurrected' : 'stale';
            }
            elsif ($after eq 'maybe') {
                $verdict = ($n <= 1 + $slack || ($n >= $last + 1 && $n <= $last + 1 + $slack))
                    ? 'ok' : 'stale';
            }
            elsif ($n >= $last + 1 && $n <= $last + 1 + $slack) {
                $verdict = 'ok';
            }
            elsif ($n == 1) {
                $verdict = 'lost';
            }
            elsif ($n > $last + 1 + $slack && defined $old && $n <= $old + 1 + $slack) {
                $verdict = 'resurrected';    # a jump back to the counter before a logout
            }
            else {
                $verdict = 'stale';
            }
            if ($verdict eq 'ok') {
                $c{ok}++;
                $b->{ok}++;
            }
            else {
                $c{$verdict}++;
                $b->{bad}++;
                $c{per_kind}{$_}{$verdict}++ for @kinds;
                push @{ $c{violations} }, {
                    what => $verdict, user => $user, t0 => $t0, t1 => $t1, n => $n,
                    expected => ($after eq 'out' ? '1 (after a logout)' : defined $last
                                 ? ($last + 1) . ($slack ? '..' . ($last + 1 + $slack) : '') : 1),
                    pid => $pid, faults => [ map { $_->{id} } @act ],
                    history => [ map { join ' ', @$_ } @hist ],
                };
            }
            ($last, $slack) = ($n, 0);
            if ($after eq 'out' || $after eq 'maybe') {
                $after = '';
                # $old stays: a later jump back to it is a resurrection
            }
        }
    }
    return \%c;
}

# The worst $len-second window: the most failed and bad requests.
sub worst_window {
    my ($secs, $len) = @_;
    my @t = sort { $a <=> $b } keys %$secs;
    return undef unless @t;
    my ($best, $bt) = (-1, $t[0]);
    for my $s (@t) {
        my $sum = 0;
        $sum += ($secs->{$_} ? $secs->{$_}{failed} + $secs->{$_}{bad} : 0) for $s .. $s + $len - 1;
        ($best, $bt) = ($sum, $s) if $sum > $best;
    }
    my %w = (from => $bt, to => $bt + $len, failed => 0, bad => 0, req => 0, ok => 0);
    for my $s ($bt .. $bt + $len - 1) {
        my $x = $secs->{$s} or next;
        $w{$_} += $x->{$_} for qw(failed bad req ok);
    }
    return \%w;
}

# Lines of the instances' logs from $t0 - $before to $t1 + $after that say
# something about memcached servers, the checker, or children, placed by
# the soak's clock.  An instance whose clock a fault stepped stamps its
# lines off by the step, from when libfaketime read it (within a second)
# until it read the end; its log is written in the order things happened,
# so each line is taken at the earliest of its candidate times (as
# stamped, or less the step of a clock fault of that instance around then)
# that does not go back before the line above it.  (By the faults' times
# alone, lines logged just before libfaketime read a step were taken for
# stepped; by the steps the checker logged, a step that a new checker
# started under was missed.)  $ran: the faults as run.
sub log_lines_around {
    my ($farm, $ran, $t0, $t1, $before, $after, $max) = @_;
    my @out;
    for my $i (0 .. $#{ $farm->{web} }) {
        my $w = $farm->{web}[$i];
        my @clocks = grep { $_->{kind} eq 'clock' && $_->{web} == $i + 1 && defined $_->{t_start} } @$ran;
        my $prev = 0;
        open my $fh, '<', $w->error_log or next;
        while (my $l = <$fh>) {
            my $stamp = log_time($l) // next;
            my ($t, $step) = ($stamp, 0);
            my @cand = sort { $a->[0] <=> $b->[0] }
                       [$stamp, 0],
                       map { [$stamp - $_->{step}, $_->{step}] }
                       grep { $stamp - $_->{step} >= $_->{t_start} - 0.5
                              && $stamp - $_->{step} <= ($_->{t_end} // $t1) + 2 } @clocks;
            my ($pick) = grep { $_->[0] >= $prev - 0.05 } @cand;
            ($t, $step) = @$pick if $pick;
            $prev = $t if $t > $prev;
            next unless $l =~ /MEMSESS|AH000(?:52|94|90)|memsess:(?:warn|error|crit)/;
            next if $t < $t0 - $before || $t > $t1 + $after;
            chomp $l;
            push @out, [$t, "web" . ($i + 1) . ($step ? sprintf(' (its clock %+d s)', $step) : '') . ": $l"];
        }
    }
    @out = sort { $a->[0] <=> $b->[0] } @out;
    splice @out, 0, @out - $max if @out > $max;
    return map { $_->[1] } @out;
}

# ------------------------------------------------------------------------
# one phase

sub _say {
    my ($fh, $line) = @_;
    print $fh "$line\n";
    diag $line;
}

# run_phase($farm, seed => S, seconds => N, out => DIR, users => 30,
# kinds => [...]): the schedule of S run against the farm; returns a
# summary (also in DIR/soak-S/summary.json).
sub run_phase {
    my ($farm, %o) = @_;
    my ($seed, $secs) = ($o{seed}, $o{seconds});
    my $dir = catfile($o{out}, "soak-$seed");
    make_path($dir);
    unlink glob "$dir/requests.*";
    diag "soak seed: $seed ($secs s); again: MEMSESS_SOAK_SEED=$seed MEMSESS_SOAK_SECONDS=$secs";
    my $faults = schedule($seed, $secs, kinds => $o{kinds});
    my $steps = steps($faults);
    open my $sf, '>', "$dir/schedule.txt" or die "$dir/schedule.txt: $!";
    $sf->autoflush(1);
    _say($sf, "seed $seed, $secs s, " . scalar(@$faults) . " faults");
    _say($sf, sprintf('  fault %2d at +%5.1f s: %s', $_->{id}, $_->{at}, describe($_))) for @$faults;
    _say($sf, 'steps as run:');

    my $settled = wait_for(60, sub { all_up($farm) }, 0.2);
    die "soak: the servers are not all up before the phase" unless defined $settled;
    my $flag = "$dir/fault-active";
    unlink $flag;
    my @marks = map { $_->log_mark } @{ $farm->{web} };
    my $sampler = sampler_start($farm, "$dir/resources.log", "$dir/stop-sampler");
    my $load = load_start($farm, $dir, flag => $flag, seed => $seed,
                          procs => $o{procs} // 6, users => $o{users_per} // 5);
    my $t0 = time;
    my %run;
    my ($memc_busy, $unsettled, $lag) = (undef, 0, 0);
    my @pending = @$steps;
    my $set_flag = sub {
        my $n = grep { !defined $_->{t_until} } values %run;
        if ($n) { open my $fh, '>', $flag; close $fh } else { unlink $flag }
    };
    while (1) {
        my $now = time;
        # a memcached fault is over once every instance sees every server up
        # a memcached fault is over once every instance has seen every
        # server up for 2 s on end (a verdict may come after a short cut
        # was healed: the next fault waits for its rejoin)
        if ($memc_busy && $memc_busy->{t_end}) {
            if (!settled($farm)) {
                delete $memc_busy->{up_since};
            }
            else {
                $memc_busy->{up_since} //= time;
            }
        }
        if ($memc_busy && $memc_busy->{up_since} && time - $memc_busy->{up_since} >= 2) {
            $memc_busy->{t_until} = time;
            if ($memc_busy->{kind} eq 'pool') {
                # N4 is out of every published list: it may go
                sleep 1;
                memc_stop($EXTRA);
            }
            _say($sf, sprintf('  +%6.2f s  fault %2d settled: every instance has seen every server up for 2 s (%.2f s after its end)',
                              time - $t0, $memc_busy->{id}, time - $memc_busy->{t_end}));
            $memc_busy = undef;
            $set_flag->();
        }
        for my $r (values %run) {
            # an Apache fault counts until 1 s after its action returned
            next if defined $r->{t_until} || $r->{track} ne 'web' || !defined $r->{t_end};
            if (time >= $r->{t_end} + 1) {
                $r->{t_until} = $r->{t_end} + 1;
                $set_flag->();
            }
        }
        if (!@pending) {
            last unless grep { !defined $_->{t_until} } values %run;
            if (time - $t0 > $secs + 60) {
                _say($sf, '  NOT SETTLED 60 s after the schedule ended');
                $unsettled++;
                $_->{t_until} //= time for values %run;
                last;
            }
            sleep 0.1;
            next;
        }
        my $s = $pending[0];
        # a fault started late lasts its whole duration all the same
        my $due = $t0 + $s->{at} + $lag;
        if ($s->{op} eq 'end' && $run{ $s->{fault}{id} }) {
            my $d = $run{ $s->{fault}{id} }{t_start} + $s->{fault}{dur};
            $due = $d if $d > $due;
        }
        if ($now < $due) {
            sleep 0.05;
            next;
        }
        my $f = $s->{fault};
        if ($s->{op} eq 'start' && $f->{track} eq 'memc' && $memc_busy) {
            if ($now - ($t0 + $s->{at} + $lag) > 0.1) {
                $lag = $now - ($t0 + $s->{at});
            }
            if (!$memc_busy->{waited_from}) {
                $memc_busy->{waited_from} = $now;
            }
            elsif ($now - $memc_busy->{waited_from} > 45) {
                _say($sf, sprintf('  +%6.2f s  fault %2d NOT SETTLED after 45 s: fault %d starts anyway',
                                  $now - $t0, $memc_busy->{id}, $f->{id}));
                $unsettled++;
                $memc_busy->{t_until} = $now;
                $memc_busy = undef;
            }
            sleep 0.1;
            next;
        }
        shift @pending;
        my $ta = time;
        if ($s->{op} eq 'start') {
            $run{ $f->{id} } = my $r = { %$f, t_start => $ta };
            $memc_busy = $r if $f->{track} eq 'memc';
            $set_flag->();
        }
        my $note = eval { act($farm, $s) } // "FAILED: $@";
        my $tb = time;
        my $r = $run{ $f->{id} };
        if ($s->{op} eq 'end' || $f->{dur} == 0) {
            $r->{t_end} = $tb;
        }
        chomp $note;
        _say($sf, sprintf('  +%6.2f s  fault %2d %-5s %s: %s (%.2f s%s)', $ta - $t0, $f->{id}, $s->{op},
                          describe($f), $note, $tb - $ta,
                          $ta - ($t0 + $s->{at}) > 0.3 ? sprintf(', %.1f s late', $ta - ($t0 + $s->{at})) : ''));
    }
    # a few seconds of calm to judge the last answers
    my $calm = time + 3;
    while (time < $calm) {
        sleep 0.5;
    }
    load_stop($load);
    my @samples = sampler_stop($sampler);
    my $t_end = time;
    _say($sf, sprintf('  +%6.2f s  load stopped', $t_end - $t0));
    close $sf;

    my @ran = sort { $a->{id} <=> $b->{id} } values %run;
    open my $ff, '>', "$dir/faults.json" or die $!;
    print $ff $JSON->encode([ map { { id => $_->{id}, kind => $_->{kind}, track => $_->{track},
                                      what => describe($_), t_start => $_->{t_start},
                                      t_end => $_->{t_end}, t_until => $_->{t_until} } } @ran ]);
    close $ff;

    my $c = judge($dir, \@ran);
    my $rate = $c->{requests} / (($t_end - $t0) || 1);
    my $res = judge_resources(\@samples, $rate);
    my $crashes = 0;
    my @errors;
    for my $i (0 .. $#{ $farm->{web} }) {
        my $w = $farm->{web}[$i];
        for (split /\n/, $w->log_since($marks[$i])) {
            $crashes++ if /AH00052|Segmentation|AddressSanitizer|runtime error/;
            push @errors, 'web' . ($i + 1) . ": $_" if /:(?:error|crit|alert|emerg)\]/;
        }
    }
    my %by_kind;
    $by_kind{ $_->{kind} }++ for @ran;
    my $summary = {
        seed => $seed, seconds => $secs, t0 => $t0, t_end => $t_end,
        faults => scalar @ran, faults_by_kind => \%by_kind,
        requests => $c->{requests}, ok => $c->{ok}, failed => $c->{failed},
        lost => $c->{lost}, stale => $c->{stale}, resurrected => $c->{resurrected},
        logouts => $c->{logouts}, logouts_failed => $c->{logouts_failed},
        per_kind => $c->{per_kind}, unsettled => $unsettled, crashes => $crashes,
        error_lines => scalar @errors,
        rate => $rate, resources => $res,
        worst_window => worst_window($c->{secs}, 10),
        violations => scalar @{ $c->{violations} },
        secs => $c->{secs},
    };
    # every violation, with the steps and log lines around it
    open my $vf, '>', "$dir/violations.txt" or die $!;
    my $shown = 0;
    for my $v (@{ $c->{violations} }) {
        my @near = grep { $v->{t0} < ($_->{t_until} // $t_end) + 3 && $v->{t1} > $_->{t_start} - 1 } @ran;
        my $head = sprintf('%s: %s at +%.2f s (request %.3f-%.3f, pid %s): n=%d, expected %s; faults active: %s',
                           uc $v->{what}, $v->{user}, $v->{t0} - $t0, $v->{t0}, $v->{t1}, $v->{pid},
                           $v->{n}, $v->{expected},
                           join(', ', map { "$_->{id} (" . describe($_) . ')' } @near) || 'none');
        my @lines = ($head, '  requests of this user (t0 t1 user kind n ok errors pid):',
                     map({ "    $_" } @{ $v->{history} }),
                     '  log lines from 2 s before to 0.5 s after:',
                     map { "    $_" } log_lines_around($farm, \@ran, $v->{t0}, $v->{t1}, 2, 0.5, 25));
        print $vf join("\n", @lines), "\n\n";
        diag join "\n", @lines if $shown++ < ($o{show} // 3);
    }
    print $vf "(none)\n" unless @{ $c->{violations} };
    close $vf;
    # with a violation, each instance's whole error log beside it (the
    # lines around one are seldom all of its story), compressed
    if (@{ $c->{violations} }) {
        for my $i (0 .. $#{ $farm->{web} }) {
            my $from = $farm->{web}[$i]->error_log;
            my $to = "$dir/web" . ($i + 1) . '.error_log.gz';
            system("gzip -c '$from' > '$to'") if -f $from;
        }
    }
    open my $ef, '>', "$dir/errors.txt" or die $!;
    print $ef "$_\n" for @errors;
    close $ef;
    open my $jf, '>', "$dir/summary.json" or die $!;
    print $jf $JSON->encode($summary);
    close $jf;
    diag sprintf('seed %d: %d requests (%.0f/s), %d ok, %d failed, %d lost, %d stale, %d resurrected, %d logouts; %d faults: %s',
                 $seed, $c->{requests}, $rate, $c->{ok}, $c->{failed}, $c->{lost}, $c->{stale},
                 $c->{resurrected}, $c->{logouts}, scalar @ran,
                 join(', ', map { "$_ $by_kind{$_}" } sort keys %by_kind));
    diag '  failed per fault kind: ' . join(', ', map {
        my $k = $c->{per_kind}{$_};
        sprintf '%s %d/%d', $_, $k->{failed} // 0, $k->{requests} // 0 } sort keys %{ $c->{per_kind} });
    diag sprintf('  %s %s (bound %s)', $_->[3] ? 'ok ' : 'BAD', $_->[0], $_->[1] . ' / ' . $_->[2]) for @$res;
    return $summary;
}

# Whatever a phase that died left running: the load's processes, stress-ng
# (its process group), each by its pid.
END {
    if ($$ == $PARENT) {
        for my $p (keys %KIDS) {
            kill 'KILL', ($KIDS{$p} eq 'cpu' ? -$p : ()), $p;
            waitpid $p, 0;
        }
    }
}

1;
