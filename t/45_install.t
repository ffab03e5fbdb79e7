# `make -f Makefile.apxs install DESTDIR=...`, unprivileged, puts the module
# in LIBEXECDIR and memsess.load + memsess.conf in mods-available under
# DESTDIR; memsess.load names where the module went, and a tiny httpd
# config that includes both installed files passes `httpd -t`.
# Issue 24, a newcomer's path: the README's minimal configuration (the
# ```apache block under "## A minimal configuration", read from README.md,
# not a copy) in an Apache with the installed memsess.load and memsess.conf
# and mod_php: a PHP page gets the pool as its session.save_path, keeps its
# session in memcached, and the status page lists the pool.
# And the README's install from source (the ```sh block under "### From
# source", read from README.md, not a copy): its commands run as it shows
# them, with only what this unprivileged test must add, said at each: the
# build flavour of the module under test (SANITIZE=1 in the sanitized run),
# DESTDIR (the machine's Apache is left alone), and for a2enmod and apachectl
# Debian's own variables for another configuration directory: APACHE_CONFDIR
# (DESTDIR's /etc/apache2, with an envvars of this test's directories) and
# for apachectl APACHE_HTTPD (the suite's httpd) and APACHE_ARGUMENTS (-f:
# the Apache of this test, which includes mods-enabled as Debian's
# apache2.conf does, with the README's minimal configuration).  A line of the
# block this test does not know how to run, or one left unrun, fails naming
# README.md's line.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use File::Path qw(make_path remove_tree);
use File::Spec::Functions qw(catfile);
use File::Basename qw(dirname);
use Memsess::Instance;
use Memsess::Test;

plan tests => 2 + 1 + 7 + 9;

my $vars = Apache::Test::vars();
my $top = dirname($vars->{t_dir});
my $dest = catfile($vars->{t_logs}, 'install');
remove_tree($dest);
make_path($dest);

sub apxs_q { my $v = `apxs -q $_[0] 2>/dev/null` // ''; chomp $v; return $v }
my $libexec = apxs_q('LIBEXECDIR');
my $sysconf = apxs_q('SYSCONFDIR');

my $readme = do { local (@ARGV, $/) = catfile($top, 'README.md'); <> } // '';

# --- the README's install from source -------------------------------------------------

# The ```sh block under "### From source" as [line, command] (a line's `&&`
# gives several, its `# comment` is dropped), and the lines of commands this
# test does not know.
my %KNOWN = ('make -f Makefile.apxs' => 'build', 'make -f Makefile.apxs install' => 'install',
             'a2enmod memsess' => 'a2enmod', 'apachectl -t' => 'configtest',
             'apachectl graceful' => 'graceful');
my (@source, @unknown, $source_found);
{
    my ($start, $block) = (0, undef);
    my @lines = split /\n/, $readme, -1;
    for my $i (0 .. $#lines) {
        next unless $lines[$i] eq '### From source';
        for my $j ($i + 1 .. $#lines) {
            last if $lines[$j] =~ /^#+ /;
            next unless $lines[$j] eq '```sh';
            for my $k ($j + 1 .. $#lines) {
                if ($lines[$k] eq '```') { $source_found = 1; last }
                (my $text = $lines[$k]) =~ s/(?:^|\s)#.*$//;
                for my $cmd (split /\s+&&\s+/, $text) {
                    $cmd =~ s/^\s+|\s+$//g;
                    next if $cmd eq '';
                    if ($KNOWN{$cmd}) { push @source, [$k + 1, $cmd] }
                    else { push @unknown, "README.md:" . ($k + 1) . ": '$cmd' is not a command this test knows how to run" }
                }
            }
            last;
        }
        last;
    }
}
ok t_cmp($source_found && @source ? 1 : 0, 1, "README.md: the ```sh block under '### From source' is found ("
         . join('; ', map { "$_->[0]: $_->[1]" } @source) . ')');
ok t_cmp(join("\n", @unknown), '', 'every command of that block is one this test knows');

# source_step KIND: the block's next command, [line, command], if of that
# kind (undef, and a diagnostic, if not: the README's order changed)
my %failed_line;
sub source_step {
    my $kind = shift;
    my $next = shift @source;
    return $next if $next && $KNOWN{ $next->[1] } eq $kind;
    t_debug("README.md: expected a command of kind $kind next in '### From source', found "
            . ($next ? "line $next->[0]: '$next->[1]'" : 'none'));
    unshift @source, $next if $next;
    return undef;
}
# source_run KIND, AS: runs the README's next command (of that kind) as AS
# (it with this test's additions), in the checkout: (exit status, what to
# say); not run after a failed one of the same line
sub source_run {
    my ($kind, $as) = @_;
    my $step = source_step($kind) or return (-1, "no '$kind' command next in README.md's block");
    my ($line, $cmd) = @$step;
    $as = $as->($cmd) if ref $as;
    my $what = "README.md:$line: $cmd" . ($as ne $cmd ? " (run as: $as)" : '');
    return (-1, "$what: not run, the command before it on that line failed") if $failed_line{$line};
    my $out = `cd "$top" && PATH=/usr/sbin:/sbin:\$PATH; $as 2>&1`;
    my $rc = $? >> 8;
    $failed_line{$line} = 1 if $rc;
    (my $shown = $out) =~ s/\s+$//;
    return ($rc, "$what ($shown)");
}

# the same build flavour as the module under test, should make rebuild
my $san = $ENV{MEMSESS_TEST_SANITIZED} ? 'SANITIZE=1' : '';
my ($rc, $what) = source_run('build', sub { join ' ', grep { length } $_[0], $san });
ok t_cmp($rc, 0, $what);
# into DESTDIR, unprivileged
($rc, $what) = source_run('install', sub { join ' ', grep { length } $_[0], qq{DESTDIR="$dest"}, $san });
ok t_cmp($rc, 0, "$what, as user " . getpwuid($>));

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
# DESTDIR's /etc/apache2 as the README's a2enmod and apachectl see it: its
# mods-enabled included as Debian's apache2.conf does, its memsess.load
# loading the module from DESTDIR (where install put this build)
my $confdir = "$dest$sysconf";
make_path("$confdir/mods-enabled", $in->dir . '/run', $in->dir . '/lock');
(my $me) = getpwuid($>);
my $group = getgrgid((split ' ', $))[0]) // $me;
open $fh, '>', "$avail/memsess.load" or die $!;
print $fh $load_here;
close $fh;
# Debian's envvars, for this test's directories and user
open $fh, '>', "$confdir/envvars" or die $!;
print $fh "export APACHE_RUN_USER=$me\nexport APACHE_RUN_GROUP=$group\n",
          "export APACHE_RUN_DIR=" . $in->dir . "/run\nexport APACHE_LOCK_DIR=" . $in->dir . "/lock\n",
          "export APACHE_LOG_DIR=" . $in->dir . "\n";
close $fh;
$in->{conf} = qq{IncludeOptional "$confdir/mods-enabled/*.load"\nIncludeOptional "$confdir/mods-enabled/*.conf"\n}
            . qq{MemsessStateDir "} . $in->dir . qq{/state"\n} . $conf;
$in->write_conf;
my $env = qq{APACHE_CONFDIR="$confdir"};
my $ctl = qq{$env APACHE_HTTPD="$vars->{httpd}" APACHE_ARGUMENTS="-f } . $in->file . '"';
($rc, $what) = source_run('a2enmod', sub { "$env APACHE_STATE_DIRECTORY=\"$dest/var/lib/apache2\" $_[0]" });
ok t_cmp($rc . ' ' . (readlink("$confdir/mods-enabled/memsess.load") // 'no link'),
         '0 ../mods-available/memsess.load', "$what: mods-enabled/memsess.load links to mods-available");
($rc, $what) = source_run('configtest', sub { "$ctl $_[0]" });
ok t_cmp($rc, 0, "$what, with the README's minimal configuration");
($rc, $what) = source_run('graceful', sub { "$ctl $_[0]" });
my $started = $rc == 0 && eval {
    my $end = time + 20;
    select(undef, undef, undef, 0.05) until $in->answers(1) || time > $end;
    $in->answers(1);
};
ok t_cmp($started ? 'started' : "not started (exit $rc)", 'started',
         "$what: Apache starts with it (not running, apachectl graceful starts it)");
ok t_cmp(join(' ', map { "README.md:$_->[0]: $_->[1]" } @source), '',
         "every command of README.md's block under '### From source' was run");

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
$in->stop;    # (apachectl graceful may have started it without its answering)
memc_stop(@in);
