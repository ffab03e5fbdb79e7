# Issue 2: bad values are configuration errors.  Each case in t/bad-config/
# goes into a tiny config that loads only an MPM and mod_memsess; `httpd -t`
# must fail and its message must name the directive and the offending token
# (or pass, for the ok-* cases).
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use File::Path qw(make_path);
use File::Spec::Functions qw(catfile);
use File::Basename qw(basename);
use Memsess::Ports ();

my $vars = Apache::Test::vars();
my $httpd = $vars->{httpd};
my $t_dir = $vars->{t_dir};
my $module = Memsess::Ports::read_defines($t_dir)->{MEMSESS_MODULE};
my $out_dir = catfile($vars->{t_logs}, 'bad-config');
make_path($out_dir);

# The MPM and authz_core lines of the base config Apache::Test inherited.
my @load;
{
    my $base = catfile($t_dir, 'conf', 'memsess_base.conf');
    open my $fh, '<', $base or die "$base: $!";
    @load = grep { /^LoadModule (mpm_prefork|authz_core)_module / } <$fh>;
    close $fh;
}

# The password files the MemsessCredentials cases name, relative to the
# ServerRoot ($out_dir): good ones, and one of each kind of bad one.
{
    my %pw = ('password' => "s3cret\n", 'password-copy' => "s3cret",
              'password-other' => "0ther\n", 'password-empty' => '',
              'password-two-lines' => "s3cret\nmore\n",
              'password-unreadable' => "s3cret\n");
    for my $f (sort keys %pw) {
        my $path = catfile($out_dir, $f);
        chmod 0600, $path if -e $path;
        open my $fh, '>', $path or die "$path: $!";
        print $fh $pw{$f};
        close $fh;
    }
    unlink catfile($out_dir, 'password-missing');
    # (the test runs unprivileged: Apache::Test refuses root)
    chmod 0000, catfile($out_dir, 'password-unreadable');
}

my @cases;
for my $file (sort glob catfile($t_dir, 'bad-config', '*.conf')) {
    open my $fh, '<', $file or die "$file: $!";
    my $body = do { local $/; <$fh> };
    close $fh;
    my ($expect) = $body =~ /^# expect:\s*(.*?)\s*$/m
        or die "$file has no '# expect:' line";
    push @cases, [basename($file, '.conf'), $body, [split ' ', $expect]];
}

my $n = 0;
$n += $_->[2][0] eq 'OK' ? 2 : 1 + @{ $_->[2] } for @cases;
plan tests => $n;

for my $c (@cases) {
    my ($name, $body, $expect) = @$c;
    my $conf = catfile($out_dir, "$name.conf");
    open my $fh, '>', $conf or die "$conf: $!";
    print $fh qq{ServerRoot "$out_dir"\n},
              qq{ServerName localhost\n},
              qq{PidFile "$out_dir/$name.pid"\n},
              qq{ErrorLog "$out_dir/$name.error_log"\n},
              @load,
              qq{LoadModule memsess_module "$module"\n},
              "# --- the case: t/bad-config/$name.conf\n",
              $body;
    close $fh;

    my $out = `"$httpd" -t -f "$conf" 2>&1`;
    my $rc = $? >> 8;
    (my $shown = $out) =~ s/\s+$//;
    if ($expect->[0] eq 'OK') {
        ok t_cmp($rc, 0, "$name: httpd -t accepts it ($shown)");
        ok t_cmp($out, qr/Syntax OK/, "$name: Syntax OK");
        next;
    }
    ok t_cmp($rc ? 'refused' : 'accepted', 'refused', "$name: httpd -t refuses it");
    for my $token (@$expect) {
        ok t_cmp($out, qr/\Q$token\E/, "$name: the message names '$token'");
    }
}
