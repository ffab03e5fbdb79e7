# `make -f Makefile.apxs install DESTDIR=...`, unprivileged, puts the module
# in LIBEXECDIR and memsess.load + memsess.conf in mods-available under
# DESTDIR; memsess.load names where the module went, and a tiny httpd
# config that includes both installed files passes `httpd -t`.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use File::Path qw(make_path remove_tree);
use File::Spec::Functions qw(catfile);
use File::Basename qw(dirname);
use Memsess::Instance;

plan tests => 7;

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
