# `make -f Makefile.apxs install DESTDIR=...`, unprivileged, puts the module
# in LIBEXECDIR and memsess.load + memsess.conf in mods-available under
# DESTDIR; memsess.load names where the module went, and a tiny httpd
# config that includes both installed files passes `httpd -t`.
# Issue 24, a newcomer's path: the README's minimal configuration (the
# ```apache block under "## A minimal configuration", read from README.md,
# not a copy) in an Apache with the installed memsess.load and memsess.conf
# and mod_php: a PHP page gets the pool as its session.save_path, keeps its
# session in memcached, and the status page lists the pool.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use File::Path qw(make_path remove_tree);
use File::Spec::Functions qw(catfile);
use File::Basename qw(dirname);
use Memsess::Instance;
use Memsess::Test;

plan tests => 7 + 7;

my $vars = Apache::Test::vars();
my $top = dirname($vars->{t_dir});
my $dest = catfile($vars->{t_logs}, 'install');
remove_tree($dest);
make_path($dest);

sub apxs_q { my $v = `apxs -q $_[0] 2>/dev/null` // ''; chomp $v; return $v }
my $libexec = apxs_q('LIBEXECDIR');
my $sysconf = apxs_q('SYSCONFDIR');

# the same build flavour as the module under test, should make rebuild
my $san = $ENV{MEMSESS_TEST_SANITIZED} ? 'SANITIZE=1' : '';
my $out = `cd "$top" && make -f Makefile.apxs install DESTDIR="$dest" $san 2>&1`;
my $rc = $? >> 8;
(my $shown = $out) =~ s/\s+$//;
ok t_cmp($rc, 0, "make install DESTDIR=... as user " . getpwuid($>) . " ($shown)");

my $so = "$dest$libexec/mod_memsess.so";
my $avail = "$dest$sysconf/mods-available";
ok t_cmp(-f $so ? 1 : 0, 1, "the module is in DESTDIR$libexec");
ok t_cmp(join(' ', map { -f "$avail/$_" ? $_ : "no $_" } qw(memsess.load memsess.conf)),
         'memsess.load memsess.conf', "memsess.load and memsess.conf are in DESTDIR$sysconf/mods-available");

my $load = do { local (@ARGV, $/) = "$avail/memsess.load"; <> } // '';
my ($path) = $load =~ /^\s*LoadModule\s+memsess_module\s+"?([^"\s]+)"?/m;
ok t_cmp($path // 'no LoadModule', "$libexec/mod_memsess.so",
         'memsess.load loads the module from where install put it');

# Outside DESTDIR that path does not hold this build: the included copy of
# memsess.load points into DESTDIR, memsess.conf is included as installed.
my $dir = catfile($vars->{t_logs}, 'install-conf');
remove_tree($dir);
make_path($dir);
(my $load_here = $load) =~ s/\Q$libexec\E/$dest$libexec/g;
open my $fh, '>', "$dir/memsess.load" or die $!;
print $fh $load_here;
close $fh;
my $lib = Memsess::Instance::libexec();
open $fh, '>', "$dir/httpd.conf" or die $!;
print $fh <<"EOF";
ServerRoot "$dir"
ServerName localhost
PidFile "$dir/httpd.pid"
ErrorLog "$dir/error_log"
Listen 127.0.0.1:${\ (Memsess::Instance::free_ports(1))[0]}
LoadModule mpm_prefork_module "$lib/mod_mpm_prefork.so"
LoadModule authz_core_module "$lib/mod_authz_core.so"
LoadModule authz_host_module "$lib/mod_authz_host.so"
Include "$dir/memsess.load"
Include "$avail/memsess.conf"
EOF
close $fh;
my $t = `"$vars->{httpd}" -t -f "$dir/httpd.conf" 2>&1`;
my $trc = $? >> 8;
(my $tshown = $t) =~ s/\s+$//;
ok t_cmp($trc, 0, "httpd -t with the installed memsess.load and memsess.conf ($tshown)");
ok t_cmp($t, qr/Syntax OK/, 'Syntax OK');
my $mods = `"$vars->{httpd}" -M -f "$dir/httpd.conf" 2>&1`;
ok t_cmp($mods, qr/memsess_module/, 'and the module is loaded');

# --- the README's minimal configuration, as a newcomer pastes it ----------------------

my $readme = do { local (@ARGV, $/) = catfile($top, 'README.md'); <> } // '';
my ($minimal) = $readme =~ /^## A minimal configuration\n.*?^```apache\n(.*?)^```/ms;
ok t_cmp(defined $minimal && $minimal =~ /^\s*MemsessServers /m ? 1 : 0, 1,
         "README.md: the minimal configuration's block is found");
$minimal //= '';

# What this machine changes in it: its three servers are this run's three
# memcached, its *:80 this instance's port, its status page's network
# 127.0.0.1; nothing else.  (The state directory goes in the instance's
# own directory: the test runs unprivileged, a newcomer as root.)
my @in = qw(IN1 IN2 IN3);
my ($servers) = $minimal =~ /^\s*MemsessServers\s+(.*?)\s*$/m;
my @readme_servers = split ' ', $servers // '';
ok t_cmp(scalar @readme_servers, scalar @in, "its MemsessServers names three servers (@readme_servers)");
memc_start(@in);
my $in = Memsess::Instance->new(name => 'readme_minimal', php => 1, memsess => 0, conf => '');
my $port = $in->port;
(my $conf = $minimal) =~ s/\*:80\b/*:$port/g;
$conf =~ s/^(\s*MemsessServers\s+).*$/$1 . join(' ', map { addr($_) } @in)/me;
$conf =~ s{\bRequire ip 10\.0\.0\.0/8\b}{Require ip 127.0.0.1}g;
$in->{conf} = qq{Include "$dir/memsess.load"\nInclude "$avail/memsess.conf"\n}
            . qq{MemsessStateDir "} . $in->dir . qq{/state"\n} . $conf;
$in->write_conf;
my ($syn_rc, $syn) = $in->syntax;
(my $syn_shown = $syn // '') =~ s/\s+$//;
ok t_cmp($syn_rc, 0, "httpd -t with the README's minimal configuration ($syn_shown)");
my $started = eval { $in->start; 1 };
ok t_cmp($started ? 'started' : "not started: $@", 'started', 'Apache starts with it');

my $pool = addrs(@in);
my $ua = new_ua(timeout => 10);
my $res = $ua->get($in->url('/memsess/info.php'));
my $info = $res->is_success ? eval { JSON::PP->new->decode($res->decoded_content) } : undef;
ok t_cmp(($info->{save_handler} // 'none') . ' ' . ($info->{save_path} // 'none'), "memcached $pool",
         'a PHP page of the virtual host gets session.save_handler memcached and the pool as its session.save_path');
my @n = map {
    my $r = $ua->get($in->url('/memsess/session.php'));
    my $d = $r->is_success ? eval { JSON::PP->new->decode($r->decoded_content) } : undef;
    ($d || {})->{n} // ('HTTP ' . $r->code);
} 1 .. 2;
ok t_cmp("@n", '1 2', 'two requests of one user: the session is kept (its counter 1, then 2)');
my $st = $in->status || {};
my ($p) = grep { ($_->{vhost} // '') =~ /^shop\.example\.com:/ } @{ $st->{pools} || [] };
ok t_cmp(join(',', @{ ($p || {})->{configured} || [] }), $pool,
         "the status page lists the virtual host's pool (" . join(' ', map { $_->{vhost} // '?' } @{ $st->{pools} || [] }) . ')');
$in->stop if $started;
memc_stop(@in);
