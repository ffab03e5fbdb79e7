# Issue 14: MemsessCredentials.  Real memcached -S servers with a sasldb the
# test makes: the probes authenticate (up with the right password, down with
# a reason with a wrong one, with none, or against a server without SASL),
# PHP gets the credentials through mod_php and php-fpm and its sessions
# work, the password is nowhere it must not be (status in every format,
# MEMSESS_* variables, the error log at LogLevel memsess:trace8), a
# graceful restart picks up a changed password file, and a SASL pool
# changed at graceful is published at once (memcached -S lists no keys, so
# nothing can be rebalanced), with a WARN, not retried for good.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Digest::SHA qw(sha1_hex);
use Time::HiRes qw(time);
use File::Spec::Functions qw(catfile);
use LWP::UserAgent ();
use Memsess::Test;
use Memsess::Instance;
use Memsess::Sasl;
use JSON::PP ();

plan tests => 52;

my $GOOD = $Memsess::Sasl::GOOD;
my $LEAK = $Memsess::Sasl::LEAK;
my ($R1, $R2) = ('Zq9reload-one', 'Zq9reload-two');
my $t_dir = Apache::Test::vars('t_dir');
my $sasl = Memsess::Sasl::sasl_setup(catfile(Apache::Test::vars('t_logs'), 'memc', 'sasl'),
                                     memsess => $GOOD, reload => $R1);

memc_sasl($sasl, qw(SA1 SA2 SW1 SN1 SG1));
memc_start(qw(SA1 SA2 SW1 SN1 SP1));
fpm_start('FPM_3');

# --- the probes -------------------------------------------------------------

ok t_cmp(defined wait_states(10, 'up', qw(SA1 SA2)) ? 1 : 0, 1,
         'memcached -S with the right password: probes pass, both up');
ok t_cmp(defined wait_states(10, 'down', qw(SW1 SN1 SP1)) ? 1 : 0, 1,
         'wrong password, no credentials, no SASL: all three down');
my $st = status();
my %why = map { $_ => (status_server($st, addr($_)) || {})->{last_error} // '' } qw(SW1 SN1 SP1);
ok t_cmp($why{SW1}, qr/^SASL authentication failed for user "memsess": wrong user name or password$/,
         'a wrong password: the reason says authentication failed');
ok t_cmp($why{SN1}, qr/^the server asks for SASL authentication \(memcached -S\) but its pool has no MemsessCredentials$/,
         'a SASL server without credentials: the reason says so');
ok t_cmp($why{SP1}, qr/^the server does not speak SASL \(memcached without -S\?\) but MemsessCredentials gives user "memsess"$/,
         'credentials for a server without SASL: the reason says so');

# --- PHP: mod_php and php-fpm ---------------------------------------------

# The value stored under $key on a SASL server (php-memcached, authenticated),
# or "MISSING".
sub sasl_get {
    my ($name, $key, $user, $password) = @_;
    my ($host, $port) = host_port($name);
    local $ENV{SASL_TEST_PW} = $password;
    my $code = q{$m = new Memcached(); $m->setOption(Memcached::OPT_BINARY_PROTOCOL, true);}
             . q{$m->setSaslAuthData($argv[3], getenv('SASL_TEST_PW'));}
             . q{$m->addServer($argv[1], (int)$argv[2]); $v = $m->get($argv[4]);}
             . q{echo $v === false ? 'MISSING ' . $m->getResultMessage() : 'VALUE ' . $v;};
    open my $p, '-|', 'php', '-r', $code, '--', $host, $port, $user, $key or die "php: $!";
    my $out = do { local $/; <$p> } // '';
    close $p;
    return $out =~ /^VALUE (.*)$/s ? $1 : $out;
}

for my $c (['memsess_sasl', 'mod_php', qr/^(apache2handler|handler)/],
           ['memsess_sasl_fpm', 'php-fpm', qr/^fpm-fcgi$/]) {
    my ($v, $what, $sapi) = @$c;
    my $ua = new_ua();
    my ($d1) = get_json($ua, $v, '/memsess/session.php');
    my ($d2) = get_json($ua, $v, '/memsess/session.php');
    $d1 ||= {}; $d2 ||= {};
    ok t_cmp($d2->{sapi} // '', $sapi, "$what: the vhost runs PHP there");
    ok t_cmp(($d1->{n} // 'x') . ($d2->{n} // 'x'), '12', "$what: a session persists in SASL memcached");
    ok t_cmp(join(' | ', @{ $d2->{errors} || [] }), '', "$what: no session warning");
    ok t_cmp($d2->{save_path} // '', addrs(qw(SA1 SA2)), "$what: the pool is the save_path");
    ok t_cmp($d2->{sasl_username} // '', 'memsess', "$what: memcached.sess_sasl_username");
    ok t_cmp($d2->{sasl_password_sha1} // '', sha1_hex($GOOD),
             "$what: memcached.sess_sasl_password is the file's, byte for byte");
    my $key = session_key($d2->{session_id} // 'none');
    my @held = grep { sasl_get($_, $key, 'memsess', $GOOD) =~ /n\|i:2;/ } qw(SA1 SA2);
    ok t_cmp(scalar @held, qr/^[12]$/, "$what: the session is in the SASL servers (@held)");
}

# --- where the password must not be ---------------------------------------

my $sua = LWP::UserAgent->new(timeout => 10);
for my $path ('/memsess-status', '/memsess-status?auto', '/memsess-status?json',
              '/memsess-status?metrics', '/server-status', '/server-status?auto') {
    my $res = $sua->get(vhost_url('default', $path));
    ok t_cmp($res->is_success && index($res->decoded_content, $LEAK) < 0 ? 'clean' : 'leak or error '
             . $res->code, 'clean', "$path: no password");
}
ok t_cmp($sua->get(vhost_url('default', '/memsess-status'))->decoded_content,
         qr/SASL authentication failed for user &quot;memsess&quot;/,
         'the HTML status shows why (escaped)');

for my $v (qw(memsess_sasl memsess_sasl_fpm)) {
    my $env = (info($v) || {})->{env} || {};
    my @bad = grep { index($env->{$_} // '', $LEAK) >= 0 } keys %$env;
    ok t_cmp(keys(%$env) && !@bad ? 'clean' : "leak in @bad", 'clean', "$v: no password in MEMSESS_*");
}
my $cgi = LWP::UserAgent->new(timeout => 10)->get(vhost_url('memsess_sasl', '/memsess/cgi/env.pl'));
ok t_cmp($cgi->is_success && $cgi->decoded_content =~ /MEMSESS_SAVE_PATH/
         && index($cgi->decoded_content, $LEAK) < 0 ? 'clean' : 'leak or error', 'clean',
         'a CGI: MEMSESS_* without the password');
ok t_cmp(index(log_since(0), $LEAK), -1, 'the error log holds no password');

# --- at LogLevel memsess:trace8, and a graceful with a new password ---------

memc_start('SG1');
my $in = Memsess::Instance->new(name => 'sasl', php => 1, ports => 2, conf => '');
my $pwfile = catfile($in->dir, 'reload-password');
Memsess::Sasl::write_file($pwfile, "$R1\n");
my $wrong = Memsess::Sasl::password_file($t_dir, 'wrong-password');
my $port2 = $in->port(1);
$in->{conf} = <<"EOF";
LogLevel notice memsess:trace8
MemsessServers \${MEMC_SG1}
MemsessCredentials reload "$pwfile"
<VirtualHost 127.0.0.1:$port2>
    MemsessServers \${MEMC_SW1}
    MemsessCredentials memsess "$wrong"
</VirtualHost>
EOF
$in->write_conf;
$in->start;

sub inst_state {
    my ($name) = @_;
    my $s = status_server($in->status, addr($name)) or return ('missing', '');
    return ($s->{state}, $s->{last_error} // '');
}
sub inst_wait {
    my ($timeout, $name, $state) = @_;
    return wait_for($timeout, sub { (inst_state($name))[0] eq $state }, 0.05);
}

ok t_cmp(defined inst_wait(10, 'SG1', 'up') ? 1 : 0, 1, 'instance: up with the first password');
ok t_cmp(defined inst_wait(10, 'SW1', 'down') ? 1 : 0, 1, 'instance: the wrong password is down there too');
my $down = qr/\[memsess:notice\].*MEMSESS0010: memcached server \Q@{[addr('SW1')]}\E is down/;
ok t_cmp($in->log_wait(5, 0, $down) // '', qr/is down \(SASL authentication failed for user "memsess": wrong user name or password, \d+ consecutive failures\)/,
         'the NOTICE of its state change gives the reason');
my $i1 = eval { JSON::PP->new->decode($in->get('/memsess/info.php')->decoded_content) } || {};
ok t_cmp($i1->{sasl_password_sha1} // '', sha1_hex($R1), 'instance: PHP has the first password');

Memsess::Sasl::sasl_user($sasl, 'reload', $R2);
ok t_cmp(defined inst_wait(fail_deadline() + 5, 'SG1', 'down') ? 1 : 0, 1,
         'the password changed on the server: down');
ok t_cmp((inst_state('SG1'))[1], qr/^SASL authentication failed for user "reload"/,
         'because authentication fails');

Memsess::Sasl::write_file($pwfile, "$R2\n");
$in->graceful;
my $dt = inst_wait(pass_deadline() + 5, 'SG1', 'up');
ok t_cmp(defined $dt ? 1 : 0, 1, sprintf 'graceful with the new password file: up again (%.2f s)', $dt // -1);
my $i2 = eval { JSON::PP->new->decode($in->get('/memsess/info.php')->decoded_content) } || {};
ok t_cmp($i2->{sasl_password_sha1} // '', sha1_hex($R2), 'PHP has the new password');
my $ilog = $in->log_since(0);
ok t_cmp($ilog, qr/\[memsess:trace1\].*probe passed/, 'the instance logged at trace level');
ok t_cmp(index($ilog, $LEAK), -1, 'its error log at memsess:trace8 holds no password');
my $st2 = $in->get('/memsess-status?json')->decoded_content . $in->get('/memsess-status?auto')->decoded_content;
ok t_cmp(index($st2, $LEAK), -1, "the instance's status holds no password");

$in->stop;

# --- a SASL pool grown at graceful ------------------------------------------

# The decoded JSON of a GET with this client's cookies, or undef.
sub get_json_url {
    my ($ua, $url) = @_;
    my $res = $ua->get($url);
    return $res->is_success ? eval { JSON::PP->new->decode($res->decoded_content) } : undef;
}

memc_sasl($sasl, qw(PE7 PE8));
memc_start(qw(PE7 PE8));
my $pwgood = Memsess::Sasl::password_file($t_dir, 'password');
my $gin = Memsess::Instance->new(name => 'sasl_grow', php => 1,
                                 conf => "MemsessServers \${MEMC_PE7}\n"
                                       . "MemsessCredentials memsess \"$pwgood\"\n");
$gin->start;
sub gin_pool { my $st = $gin->status or return {}; return $st->{pools} ? $st->{pools}[0] : {} }
wait_for(10, sub { (gin_pool()->{published} // '') eq addrs('PE7') });
my $gua = new_ua();
get_json_url($gua, $gin->url('/memsess/session.php')) for 1 .. 2;
my $gmark = $gin->log_mark;
$gin->{conf} =~ s/^MemsessServers .*$/MemsessServers \${MEMC_PE7} \${MEMC_PE8}/m;
$gin->write_conf;
my $g0 = time;
$gin->graceful;
my $gt = wait_for(20, sub { my $p = gin_pool(); ($p->{published} // '') eq addrs(qw(PE7 PE8))
                                && ($p->{rebalance}{state} // '') eq 'none' }, 0.05);
ok t_cmp(defined $gt ? 1 : 0, 1, sprintf 'SASL pool grown 1 -> 2: the new list is published (%.1f s after graceful)',
                                         time - $g0);
my $gtext = $gin->log_since($gmark);
ok t_cmp((grep { /MEMSESS0142: / } split /\n/, $gtext)[0] // '',
         qr/\[memsess:warn\].*MemsessCredentials.*memcached -S lists no keys.*published at once.*logged out/,
         'SASL pool: a WARN says the sessions cannot be moved, and who is logged out');
ok t_cmp($gtext =~ /MEMSESS0138: / ? 1 : 0, 0, 'SASL pool: not retried (no MEMSESS0138)');
ok t_cmp((gin_pool()->{rebalance} || {})->{runs} // 0, 1, 'SASL pool: one run');
my $gd = get_json_url($gua, $gin->url('/memsess/session.php')) || {};
ok t_cmp(($gd->{n} // 0) >= 1 && !@{ $gd->{errors} || ['x'] } ? 1 : 0, 1,
         'SASL pool: sessions work on the new list (n=' . ($gd->{n} // '-') . ')');

# --- a SASL server that comes back (its keys cannot be listed) -------------

# Another site's key, written with php-memcached (authenticated): "ok" or
# why not.
sub sasl_set {
    my ($name, $key, $value) = @_;
    my ($host, $port) = host_port($name);
    local $ENV{SASL_TEST_PW} = $GOOD;
    my $code = q{$m = new Memcached(); $m->setOption(Memcached::OPT_BINARY_PROTOCOL, true);}
             . q{$m->setSaslAuthData('memsess', getenv('SASL_TEST_PW'));}
             . q{$m->addServer($argv[1], (int)$argv[2]);}
             . q{echo $m->set($argv[3], $argv[4], 3600) ? 'ok' : $m->getResultMessage();};
    open my $p, '-|', 'php', '-r', $code, '--', $host, $port, $key, $value or die "php: $!";
    my $out = do { local $/; <$p> } // '';
    close $p;
    return $out;
}
sub gin_state { (status_server($gin->status, addr($_[0])) || {})->{state} // 'missing' }
# (a) killed and restarted: another, empty process, taken back as it is:
# what another site wrote to it since is not flushed
memc_kill('PE8');
wait_for(fail_deadline() + 5, sub { gin_state('PE8') eq 'down' }, 0.05);
my $bmark = $gin->log_mark;
memc_start('PE8');
my $nset = sasl_set('PE8', 'othersite:after-restart', 'theirs');
my $bt = wait_for(pass_deadline() + 5, sub { gin_state('PE8') eq 'up' }, 0.05);
my $btext = $gin->log_since($bmark);
ok t_cmp(defined $bt && $btext =~ /\[memsess:notice\].*MEMSESS0048: memcached server \Q@{[addr('PE8')]}\E cannot be synced .*another memcached process.*nothing emptied/
         && $btext !~ /MEMSESS0036: / ? 1 : 0, 1,
         'SASL: a server restarted empty is taken back as it is, not flushed (MEMSESS0048, no MEMSESS0036)');
ok t_cmp($nset eq 'ok' ? sasl_get('PE8', 'othersite:after-restart', 'memsess', $GOOD) : "not written: $nset",
         'theirs', "SASL: another site's key written since its restart is still there");
# (b) frozen and thawed: the same process, with what it held: refused
# (an ERROR, once), never flushed, until it is restarted
sasl_set('PE8', 'othersite:before-freeze', 'theirs');
memc_freeze('PE8');
wait_for(fail_deadline() + 5, sub { gin_state('PE8') eq 'down' }, 0.05);
my $fmark = $gin->log_mark;
memc_thaw('PE8');
my $refused = $gin->log_wait(pass_deadline() + 5, $fmark, qr/MEMSESS0047: /);
sleep 2;   # more good probes: still out, and said once
my $ftext = $gin->log_since($fmark);
ok t_cmp(($refused // '') =~ /\[memsess:error\].*MEMSESS0047: memcached server \Q@{[addr('PE8')]}\E is not taken back: .*came back with what it held.*cannot be listed.*MemsessRejoin flush/
         ? scalar(() = $ftext =~ /MEMSESS0047: /g) : 0, 1,
         'SASL: a server that kept its keys is refused, with one ERROR (MEMSESS0047)');
ok t_cmp(gin_state('PE8') ne 'up' && $ftext !~ /MEMSESS0036: |MEMSESS0033: / ? 1 : 0, 1,
         'SASL: it stays out, not flushed, no stopped-sync NOTICEs (state ' . gin_state('PE8') . ')');
ok t_cmp(sasl_get('PE8', 'othersite:before-freeze', 'memsess', $GOOD), 'theirs',
         "SASL: another site's key on it is still there");
memc_restart('PE8');
ok t_cmp(defined wait_for(pass_deadline() + 5, sub { gin_state('PE8') eq 'up' }, 0.05) ? 1 : 0, 1,
         'SASL: restarted, it is taken back');
$gin->stop;

memc_stop(qw(SA1 SA2 SW1 SN1 SP1 SG1 PE7 PE8 FPM_3));
