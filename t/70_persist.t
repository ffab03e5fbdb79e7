# Issue 23: persistence, as the article advises (MemsessPersist dbd).
# Users with counters in their sessions; the sessions are written behind
# to a database through mod_dbd; then every memcached is killed at once and
# restarted empty:
#   - no user whose session was written more than one interval before is
#     logged out: their counters go on from where they were;
#   - a logout older than one interval is not undone;
#   - the SQLite file is 0600, and no session content is in the error log;
#   - with PostgreSQL (a server this test starts as the test user, on a
#     port of its own, stopped by its pid): the same; and with the
#     database stopped, sessions are still served from memcached, the lag
#     shows on the status page, a WARN is logged, no request is slowed;
#   - the HTML status page shows each persisted pool's persistence (role,
#     window, stored, last write, lag, restores; the last error escaped);
#   - three instances of one site sharing that PostgreSQL: one writer, the
#     others standby; every memcached killed and restarted empty, the same
#     result, and the same writer (its lease is a row of the database,
#     memsess_writers); the lease taken by another, the writer stops
#     (MEMSESS0179) and nothing is written until it is claimed again; the
#     writer stopped: another takes the lease (MEMSESS0174) and writes;
#   - while every memcached is down, requests get a 503 (MemsessAllDown's
#     default with persistence), not an empty session written to the
#     first server back before its restore;
#   - the rate (MemsessPersistRate): 15,000 sessions written behind a
#     budget a round at a time, never more a round, all of them in the
#     end, no child crashing on the way (a batch went on filling past its
#     end once the budget was spent: the checker's child died every few
#     seconds in bench/persist.sh).
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use File::Path qw(make_path remove_tree);
use File::Spec::Functions qw(catfile);
use Time::HiRes qw(time sleep);
use Memsess::Test;
use Memsess::Instance;
use Memsess::Load;
use Memsess::Fill;

my $PGBIN = '/usr/lib/postgresql/15/bin';
plan tests => 73, need {
    'mod_dbd and its sqlite3 and pgsql drivers, PostgreSQL 15 (tools/setup.sh installs them)'
        => -e Memsess::Instance::libexec() . '/mod_dbd.so' && -x "$PGBIN/initdb"
           && scalar(grep { -e } glob '/usr/lib/*/apr-util-1/apr_dbd_sqlite3*.so')
           && scalar(grep { -e } glob '/usr/lib/*/apr-util-1/apr_dbd_pgsql*.so'),
};

my $logs = Apache::Test::vars('t_logs');
my $INTERVAL = 1;     # MemsessPersistInterval, seconds

# One request of a user: $in is an instance, or a list of them taken in
# turn (each user's requests go to every instance of a group).
my $turn = 0;
sub req {
    my ($in, $ua, $page) = @_;
    $in = $in->[ $turn++ % @$in ] if ref $in eq 'ARRAY';
    return session_req($in, $ua, $page);
}

# count users, each with a session and `times` requests (counter n = times).
sub users {
    my ($in, $count, $times) = @_;
    my @u;
    for (1 .. $count) {
        my $u = { ua => new_ua(timeout => 10) };
        for (1 .. $times) {
            my ($d) = req($in, $u->{ua}, 'session.php');
            $u->{n} = $d->{n} if $d;
        }
        push @u, $u;
    }
    return @u;
}

# How many users' next request finds their counter where it was (n + 1).
sub kept {
    my ($in, @u) = @_;
    my $k = 0;
    for my $u (@u) {
        my ($d) = req($in, $u->{ua}, 'session.php');
        $k++ if $d && defined $u->{n} && $d->{n} == $u->{n} + 1;
        $u->{n} = $d->{n} if $d;
    }
    return $k;
}

# How many logged-out users start a new session (n == 1).
sub still_out {
    my ($in, @u) = @_;
    my $k = 0;
    for my $u (@u) {
        my ($d) = req($in, $u->{ua}, 'session.php');
        $k++ if $d && $d->{n} == 1;
    }
    return $k;
}

sub persist_of {
    my ($in) = @_;
    my $st = $in->status || {};
    return ($st->{pools} || [])->[0]{persist} || {};
}

# The instance of @$ins that writes (undef: none), and what they all say.
sub writer { my ($ins) = @_; (grep { (persist_of($_)->{role} // '') eq 'writer' } @$ins)[0] }
# (a failing instance says what fails)
sub roles  {
    my ($ins) = @_;
    join ' ', sort map { my $q = persist_of($_);
                         ($q->{role} // 'none')
                         . (($q->{role} // '') eq 'failing' ? " ($q->{last_error})" : '') } @$ins
}
sub one_writer { my ($ins) = @_; join ' ', sort 'writer', ('standby') x (@$ins - 1) }

# Every instance of @$ins finds every server of @M $state.
sub all_seen {
    my ($ins, $state, @M) = @_;
    return !grep { my $in = $_; grep { $in->server_state($_) ne $state } @M } @$ins;
}

# The drill: users, logouts, every memcached killed and restarted empty.
# $ins: the instances (one, or a group sharing one database).
sub drill {
    my ($ins, $what, @M) = @_;
    ok t_cmp(defined(wait_for(10, sub { all_seen($ins, 'up', @M) })) ? 1 : 0, 1,
             "$what: the three servers are up");
    my @old = users($ins, 20, 3);
    my @out = users($ins, 6, 2);
    my $outs = 0;
    for my $u (@out) {
        my ($d) = req($ins, $u->{ua}, 'logout.php');
        $outs++ if $d && $d->{destroyed};
    }
    ok t_cmp($outs, 6, "$what: six users log out");
    # more than one interval: every write and logout is behind
    sleep 2 * $INTERVAL;
    my $ok = wait_for(20, sub { my $w = writer($ins) or return;
                                my $p = persist_of($w);
                                ($p->{stored} // 0) == 20 && ($p->{pending} // 1) == 0
                                    && ($p->{lag} // 99) <= $INTERVAL + 1 });
    my $w = writer($ins);
    my $p = $w ? persist_of($w) : {};
    diag("$what: before the drill: " . join ', ', map { "$_ " . ($p->{$_} // '') } sort keys %$p);
    ok t_cmp(defined $ok ? 1 : 0, 1, "$what: the sessions are written behind, the logouts deleted (stored "
             . ($p->{stored} // 'none') . ")");
    ok t_cmp(roles($ins), one_writer($ins), @$ins > 1 ? "$what: one writer, the others standby"
                                                      : "$what: this instance is the writer");

    my @mark = map { $_->log_mark } @$ins;
    memc_kill($_) for @M;
    ok t_cmp(defined(wait_for(10, sub { all_seen($ins, 'down', @M) })) ? 1 : 0, 1,
             "$what: every memcached killed: all down");
    # fail closed with persistence (MemsessAllDown's default): given the
    # full list, PHP would write empty sessions to the first server back,
    # before the restore, and the restore never overwrites
    ok t_cmp($ins->[0]->get('/memsess/session.php')->code, 503,
             "$what: a request while all are down gets a 503, not an empty session");
    memc_start(@M);
    my $t = wait_for(30, sub { all_seen($ins, 'up', @M) });
    ok t_cmp(defined $t ? 1 : 0, 1, "$what: restarted empty, all up again");
    my @restored = map { my $i = $_; grep { /MEMSESS0178: / } split /\n/, $ins->[$i]->log_since($mark[$i]) }
                   0 .. $#$ins;
    diag("$what: $_") for @restored;
    ok t_cmp(scalar(@restored) >= 1 ? 1 : 0, 1, "$what: sessions restored before publishing (MEMSESS0178)");
    # one restore a server for the group, whoever runs it (a sync that
    # starts over restores again): before, every instance restored the
    # first server back on its own (17 restores for 3 servers here)
    ok t_cmp(scalar(@restored) <= 2 * @M ? 1 : 0, 1,
             "$what: a server restored once for all, not by each instance ("
             . scalar(@restored) . ' restores for ' . scalar(@M) . ' servers)');
    ok t_cmp(kept($ins, @old), 20, "$what: no user whose session is older than an interval is logged out");
    ok t_cmp(still_out($ins, @out), 6, "$what: no logout older than an interval is undone");
    my ($restores, $restored) = (0, 0);
    for (@$ins) {
        $p = persist_of($_);
        $restores += $p->{restores} // 0;
        $restored += $p->{restored} // 0;
    }
    ok t_cmp($restores >= 1 && $restored >= 20 ? 1 : 0, 1,
             "$what: status shows the restores ($restores, $restored sessions)");
    # the writer may not have written a whole round yet
    my $stored;
    # (a stored session the restart made it forget, listed again, counts
    # again: until the count is back)
    wait_for(20, sub { for my $i (@$ins) {
                           ($stored) = html_persist($i) =~ m{^<tr><td>[^<]+</td><td>writer</td><td>1\.000 s</td><td>(\d+)</td><td>\d+</td>(?!<td>never)<td>[^<]+</td><td>\d+ s</td>};
                           return 1 if defined $stored && $stored >= 20;
                       }
                       return }, 0.2);
    ok t_cmp(($stored // 0) >= 20 ? 1 : 0, 1, "$what: the HTML status page shows the role, window, stored ("
             . ($stored // 'none') . "), last write and lag");
    my ($hres, $hrestored) = (0, 0);
    for (@$ins) {
        my ($a, $b) = html_persist($_) =~ m{<td>(\d+)</td><td>(\d+)</td><td>[^<]*</td></tr>};
        $hres += $a // 0;
        $hrestored += $b // 0;
    }
    ok t_cmp("$hres $hrestored", "$restores $restored", "$what: the HTML status page shows the restores");
    return @old;
}

# The persistence row of the HTML status page (no query string).
sub html_persist {
    my ($in) = @_;
    my $page = $in->get('/memsess-status')->decoded_content // '';
    my ($row) = $page =~ m{<th>Persistence</th>.*?</tr>\n(<tr>.*?</tr>)}s;
    return $row // '';
}

# As ap_escape_html2(s, 1) writes it.
sub html_escaped {
    my ($s) = @_;
    $s =~ s/&/&amp;/g; $s =~ s/</&lt;/g; $s =~ s/>/&gt;/g; $s =~ s/"/&quot;/g;
    $s =~ s/([^\x00-\x7f])/sprintf('&#%d;', ord $1)/ge;
    return $s;
}

# --- SQLite ---------------------------------------------------------------------

my @S = qw(MEMC_PS1 MEMC_PS2 MEMC_PS3);
my $dbdir = catfile($logs, 'persist');
my $db = catfile($dbdir, 'sessions.db');
remove_tree($dbdir);
make_path($dbdir);
memc_start(@S);
my $in = Memsess::Instance->new(name => 'persist_sqlite', php => 1, modules => ['dbd'], conf => <<EOF);
DBDriver sqlite3
DBDParams "$db"
MemsessServers \${MEMC_PS1} \${MEMC_PS2} \${MEMC_PS3}
MemsessPersist dbd
MemsessPersistInterval ${INTERVAL}s
EOF
$in->start;
my @old = drill([$in], 'sqlite', @S);
ok t_cmp(sprintf('%04o', (stat $db)[2] & 07777), '0600', 'sqlite: the database file is 0600');
my $secret;
{
    open my $fh, '<', $in->error_log or die $!;
    local $/;
    my $log = <$fh>;
    $secret = () = $log =~ /n\|i:\d/g;   # a PHP session's serialised text
}
ok t_cmp($secret, 0, 'sqlite: nothing of a session in the error log');
my $auto = $in->get('/memsess-status?auto')->decoded_content;
ok t_cmp($auto, qr/MemsessPool\[0\]PersistLag: \d+/, 'status ?auto: the lag');
my $metrics = $in->get('/memsess-status?metrics')->decoded_content;
ok t_cmp($metrics, qr/memsess_persist_window_seconds\{vhost="[^"]+"\} 1\.000/,
         'status ?metrics: the window');
$in->stop;
memc_stop(@S);

# --- the rate: many sessions, a budget a round ------------------------------------

{
    my $N = 15000;
    my $RATE = 5000;      # a second: 5,000 rows a round of 1 s
    my $rdb = catfile($dbdir, 'rate.db');
    memc_start(@S);
    my $r = Memsess::Instance->new(name => 'persist_rate', modules => ['dbd'], conf => <<EOF);
DBDriver sqlite3
DBDParams "$rdb"
MemsessServers \${MEMC_PS1} \${MEMC_PS2} \${MEMC_PS3}
MemsessPersist dbd
MemsessPersistInterval ${INTERVAL}s
MemsessPersistRate $RATE
EOF
    $r->start;
    wait_for(10, sub { all_seen([$r], 'up', @S) });
    my ($filled) = fill_sessions(\@S, 'persist-rate', $N);
    my $mark = $r->log_mark;
    my ($last, $most, @seen) = (0, 0);
    my $done = wait_for(90, sub {
        my $stored = persist_of($r)->{stored} // 0;
        if ($stored != $last) {
            push @seen, $stored;
            $most = $stored - $last if $stored - $last > $most;
            $last = $stored;
        }
        $stored >= $N }, 0.1);
    diag("rate: stored as it grew: @seen");
    ok t_cmp($filled && defined $done ? 1 : 0, 1, "rate: all $N sessions written behind (stored $last)");
    # two rounds may fall between two looks: at most twice the budget
    ok t_cmp($most <= 2 * $RATE * $INTERVAL ? 1 : 0, 1,
             "rate: never much more than the budget a round (most between two looks: $most)");
    ok t_cmp(scalar(@seen) >= $N / (2 * $RATE * $INTERVAL) ? 1 : 0, 1,
             'rate: written over several rounds (' . scalar(@seen) . ')');
    my $log = $r->log_since($mark);
    my $crashed = () = $log =~ /exit signal|MEMSESS0023: /g;
    ok t_cmp($crashed, 0, 'rate: no child crashed, the checker never moved (no AH00052, no MEMSESS0023)');
    $r->stop;
    memc_stop(@S);
}

# --- PostgreSQL -----------------------------------------------------------------

my $pgdir = catfile($logs, 'pg');
my $pgsock = catfile($logs, 'pgsock');
remove_tree($pgdir, $pgsock);
make_path($pgsock);
my $pgport = port('PG_1');
my $init = `"$PGBIN/initdb" -D "$pgdir" -U memsess --auth=trust -E UTF8 2>&1`;
ok t_cmp($?, 0, 'postgresql: a cluster of our own (initdb)') or diag($init);

sub pg_start {
    my $out = `"$PGBIN/pg_ctl" -D "$pgdir" -l "$pgdir.log" -w -o "-p $pgport -k $pgsock -c listen_addresses=''" start 2>&1`;
    diag($out) if $?;
    return $? == 0;
}
sub pg_stop {
    open my $fh, '<', catfile($pgdir, 'postmaster.pid') or return;
    my $pid = <$fh>;
    chomp $pid;
    return unless $pid =~ /^\d+$/;
    kill 'INT', $pid;    # fast shutdown: mod_dbd's connections are cut
    for (1 .. 100) { last unless kill 0, $pid; sleep 0.1 }
}
END { pg_stop() if $pgdir }
ok t_cmp(pg_start() ? 1 : 0, 1, 'postgresql: started as the test user');

my @P = qw(MEMC_PG1 MEMC_PG2 MEMC_PG3);
memc_start(@P);
$in = Memsess::Instance->new(name => 'persist_pg', php => 1, modules => ['dbd'], conf => <<EOF);
DBDriver pgsql
DBDParams "host=$pgsock port=$pgport user=memsess dbname=postgres"
MemsessServers \${MEMC_PG1} \${MEMC_PG2} \${MEMC_PG3}
MemsessPersist dbd
MemsessPersistInterval ${INTERVAL}s
EOF
$in->start;
@old = drill([$in], 'postgresql', @P);

# the database unreachable
my $mark = $in->log_mark;
pg_stop();
my @took;
my $t0 = time;
my $served = 0;
while (time - $t0 < 4 * $INTERVAL + 2) {
    for my $u (@old[0 .. 4]) {
        my ($d, $res, $a, $b) = req($in, $u->{ua}, 'session.php');
        $served++ if $d && $d->{n} == $u->{n} + 1;
        $u->{n} = $d->{n} if $d;
        push @took, $b - $a;
    }
}
my ($slowest) = sort { $b <=> $a } @took;
ok t_cmp($served, scalar @took, 'database stopped: sessions still served from memcached');
ok t_cmp($slowest < 0.5 ? 1 : 0, 1, sprintf('database stopped: no request slowed (slowest %.3f s of %d)',
                                            $slowest, scalar @took));
ok t_cmp(scalar(grep { /MEMSESS0173: / } split /\n/, $in->log_since($mark)) >= 1 ? 1 : 0, 1,
         'database stopped: a WARN (MEMSESS0173)');
my $p = persist_of($in);
ok t_cmp(($p->{lag} // 0) >= 2 * $INTERVAL ? 1 : 0, 1, 'database stopped: the lag shows (' . ($p->{lag} // 'none') . ' s)');
ok t_cmp($p->{role} // '', 'failing', 'database stopped: the status says so');
my $row = html_persist($in);
ok t_cmp($row, qr{<td>failing</td>}, 'database stopped: the HTML status page says so');
# the same error in ?json and, escaped, in the HTML (a newer one may come
# between the two requests: until they agree)
my $err;
ok t_cmp(defined(wait_for(5, sub { $row = html_persist($in); $err = persist_of($in)->{last_error} // '';
                                   length $err && index($row, '<td>' . html_escaped($err) . '</td></tr>') >= 0 }))
         ? 1 : 0, 1, "database stopped: the HTML status page shows the last error, escaped ($err)");
ok t_cmp(pg_start() ? 1 : 0, 1, 'postgresql: started again');
ok t_cmp(defined(wait_for(30, sub { my $q = persist_of($in);
                                    ($q->{role} // '') eq 'writer' && ($q->{lag} // 99) <= $INTERVAL + 1 })) ? 1 : 0, 1,
         'database back: written behind again, the lag back within the window');
$in->stop;
memc_stop(@P);

# --- three instances sharing one PostgreSQL ---------------------------------------
# (the plain pass only, for the suite's time: the writer's lease runs under
# ASan in every section above, its takeover only here)
if ($ENV{MEMSESS_TEST_SANITIZED}) {
    skip('the plain pass only (the suite\'s time)', 1, 1) for 1 .. 26;
    memc_stop(@P);
    pg_stop();
    exit 0;
}
# Three web servers of one site (one ServerName, a MemsessInstance each,
# one group: the pool's), every one with MemsessPersist dbd on the same
# database: one writes at a time (the lease in the database), the others stand
# by.  Each user's requests go to the three in turn.

my $GDB = 'memsess_group';
sub psql {
    my ($sql, $db) = @_;
    my $out = `"$PGBIN/psql" -h "$pgsock" -p $pgport -U memsess -d $db -tAqc "$sql" 2>&1`;
    diag($out) if $?;
    chomp $out;
    return $? ? undef : $out;
}
ok t_cmp(defined psql("CREATE DATABASE $GDB", 'postgres') ? 1 : 0, 1, 'group: a database of its own');
memc_start(@P);
my @web = map {
    Memsess::Instance->new(name => "persist_web$_", php => 1, modules => ['dbd'],
                           servername => 'persist-group.test:80',
                           globals => "MemsessCheckInterval 200ms\nMemsessCheckTimeout 100ms\n"
                                    . "MemsessInstance web$_\n", conf => <<EOF) } 1 .. 3;
DBDriver pgsql
DBDParams "host=$pgsock port=$pgport user=memsess dbname=$GDB"
MemsessServers \${MEMC_PG1} \${MEMC_PG2} \${MEMC_PG3}
MemsessPersist dbd
MemsessPersistInterval ${INTERVAL}s
EOF
$_->start for @web;
ok t_cmp(defined(wait_for(20, sub { roles(\@web) eq one_writer(\@web) })) ? 1 : 0, 1,
         'group: one writer, two standby (' . roles(\@web) . ')');
sub name_of { my ($in) = @_; my ($i) = grep { $web[$_] == $in } 0 .. $#web; defined $i ? 'web' . ($i + 1) : 'none' }
my $first = writer(\@web);
ok t_cmp(psql('SELECT holder FROM memsess_writers', $GDB) // '', name_of($first),
         'group: the writer holds the lease in the database (memsess_writers)');
drill(\@web, 'group', @P);
# the lease lives in the database, not in memcached: the restart of every
# memcached does not hand it around (before, its record went with them and
# whoever came first took it, two at once while their lists differed)
ok t_cmp(name_of(writer(\@web) // 0), name_of($first),
         'group: the same instance writes after every memcached restarted empty');

# a writer fenced by its grant: the lease taken by another (by hand here:
# a holder that never writes) stops it at its next round, the holder's
# change said (MEMSESS0179); nothing more is written while the other holds
# it; the row gone, an instance claims it again and writes
{
    my $w0 = writer(\@web) // $web[0];
    my $m0 = $w0->log_mark;
    psql("UPDATE memsess_writers SET holder = 'intruder', token = token + 1", $GDB);
    ok t_cmp(defined(wait_for(10, sub { $w0->log_since($m0) =~ /MEMSESS01(79|80): / })) ? 1 : 0, 1,
             'group: the lease taken by another, the writer says it stops (MEMSESS0179)');
    ok t_cmp(roles(\@web), join(' ', ('standby') x @web), 'group: no instance writes while another holds the lease');
    my $rows0 = psql('SELECT count(*) FROM memsess_sessions', $GDB) // 0;
    users(\@web, 4, 2);
    sleep 3 * $INTERVAL;
    ok t_cmp(psql('SELECT count(*) FROM memsess_sessions', $GDB) // -1, $rows0,
             'group: nothing written meanwhile (4 new users, 3 intervals)');
    psql('DELETE FROM memsess_writers', $GDB);
    my $rows;
    ok t_cmp(defined(wait_for(15, sub { roles(\@web) eq one_writer(\@web)
                                        && ($rows = psql('SELECT count(*) FROM memsess_sessions', $GDB) // 0) >= $rows0 + 4 },
                              0.5)) ? 1 : 0, 1,
             'group: the row gone, one instance claims the lease and writes (rows ' . ($rows // 'none') . ')');
}

# the writer stopped: another takes the lease over (three intervals, at
# least 30 s, without a renewal) and writes
my $w = writer(\@web);
my @rest = grep { $_ != $w } @web;
my @mark = map { $_->log_mark } @rest;
wait_for(20, sub { my $q = persist_of($w); ($q->{pending} // 1) == 0 && ($q->{lag} // 99) <= $INTERVAL }, 0.2);
my $before = psql('SELECT count(*) FROM memsess_sessions', $GDB) // 0;
$w->stop;
my $took = wait_for(90, sub { writer(\@rest) }, 0.5);
ok t_cmp(defined $took ? 1 : 0, 1, sprintf('group: the writer stopped, another takes the lease (in %.1f s)',
                                           $took // -1));
my $nw = writer(\@rest) // $rest[0];
my ($i) = grep { $rest[$_] == $nw } 0 .. $#rest;
ok t_cmp(scalar(grep { /MEMSESS0174: / } split /\n/, $nw->log_since($mark[$i // 0])), 1,
         'group: it says so (MEMSESS0174)');
ok t_cmp(roles(\@rest), one_writer(\@rest), 'group: still one writer (' . roles(\@rest) . ')');
users(\@rest, 5, 2);
my $after;
ok t_cmp(defined(wait_for(20, sub { $after = psql('SELECT count(*) FROM memsess_sessions', $GDB) // 0;
                                    $after >= $before + 5 }, 0.5)) ? 1 : 0, 1,
         "group: the new writer writes (rows $before, then $after with 5 new users)");
$_->stop for @rest;
memc_stop(@P);
pg_stop();
