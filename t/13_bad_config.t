# Issue 2: bad values are configuration errors.  Each case in t/bad-config/
# goes into a tiny config that loads only an MPM and mod_memsess; `httpd -t`
# must fail and its message must name the directive and the offending token
# (or pass, for the ok-* cases).
# Issue 15: the documentation's examples are checked the same way: every
# message docs/directives.md shows under "Bad values" is exactly what
# `httpd -t` prints for the configuration below that gives it, and every
# ```apache block with a Memsess directive of README.md and of docs/*.md
# (issue 24 moved all but the front door's there) passes `httpd -t`: the
# README's minimal configuration among them.
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

# The MPM and authz_core lines of the base config Apache::Test inherited
# (and authz_host, for the examples' `Require ip`).
my (@load, @load_readme);
{
    my $base = catfile($t_dir, 'conf', 'memsess_base.conf');
    open my $fh, '<', $base or die "$base: $!";
    my @all = <$fh>;
    close $fh;
    @load = grep { /^LoadModule (mpm_prefork|authz_core)_module / } @all;
    @load_readme = grep { /^LoadModule (mpm_prefork|authz_core|authz_host)_module / } @all;
}

# docs/directives.md's example messages, each with the configuration that
# gives it (a message there without one here fails: add it), and the
# ```apache blocks of the README and docs/.
my %README_CASE = (
    'MemsessServers: invalid port in "cache1:99999"' => 'MemsessServers cache1:99999',
    'MemsessServers: invalid weight in "a:1:0" (a positive integer)' => 'MemsessServers a:1:0',
    'MemsessServers: invalid IPv6 address in "[::1:11211"' => 'MemsessServers [::1:11211',
    'MemsessServers: IPv6 address must be written as [addr]:port in "::1:11211"'
        => 'MemsessServers ::1:11211',
    'MemsessServers: "a:1" is listed twice (as a:1)' => 'MemsessServers a:1 b:1 a:1',
    'MemsessServers: IPv6 address must be written as [addr]:port in "fe80::1"'
        => 'MemsessServers fe80::1',
    'MemsessServers: invalid IPv4 address (a.b.c.d, each 0 to 255) in "256.0.0.1:11211"'
        => 'MemsessServers 256.0.0.1:11211',
    'MemsessServers: IPv6 zone index "%eth0" in "[fe80::1%eth0]:11211" is not supported (use a global or unique local address)'
        => 'MemsessServers [fe80::1%eth0]:11211',
    'MemsessServers: an empty word ("") is not a server' => 'MemsessServers a:1 "" b:1',
    'MemsessCheckInterval: "50ms" is below the minimum of 100ms' => 'MemsessCheckInterval 50ms',
    'MemsessCheckInterval: "2h" is above the maximum of 1h' => 'MemsessCheckInterval 2h',
    'MemsessCheckInterval: invalid time in "5min" (N, Nms, Ns, Nm or Nh: 2s, 500ms; N alone is seconds)'
        => 'MemsessCheckInterval 5min',
    'MEMSESS0001: MemsessCheckTimeout: "2s" must be less than MemsessCheckInterval ("1s")'
        => "MemsessServers a\nMemsessCheckInterval 1s\nMemsessCheckTimeout 2s",
    'MemsessCredentials: cannot read password file "/etc/apache2/memcached-sessions.password": No such file or directory'
        => "MemsessServers a\nMemsessCredentials sessions /etc/apache2/memcached-sessions.password",
    'MemsessCredentials: password file "/etc/passwd" holds more than one line (the password must be its only line)'
        => "MemsessServers a\nMemsessCredentials sessions /etc/passwd",
    'MemsessInstance: invalid name "web/1" (1 to 127 of A-Z a-z 0-9 . - _ : [ ])'
        => "MemsessServers a\nMemsessInstance web/1",
    'MemsessNamespace: invalid namespace "shop;eu" (letters, digits and . _ : / - only)'
        => "MemsessServers a\nMemsessNamespace shop;eu",
    'MemsessAdopt: unknown option "hash=ketama" (consistent_hash=On|Off, replicas=0 to 16)'
        => "MemsessServers a b\nMemsessAdopt a:11211,b:11211 hash=ketama",
);
sub read_doc {
    my $file = catfile($t_dir, '..', shift);
    open my $fh, '<', $file or die "$file: $!";
    local $/;
    return scalar <$fh>;
}
# [file, block] of every ```apache block with a Memsess directive.
sub apache_blocks {
    my $f = shift;
    return map { [$f, $_] } grep { /^\s*Memsess/m } read_doc($f) =~ /^```apache\n(.*?)^```/msg;
}
my (@readme_messages, @readme_blocks, @doc_blocks, $minimal);
{
    my ($block) = read_doc('docs/directives.md') =~ /^Bad values stop `apachectl -t`.*?\n```\n(.*?)^```/ms;
    @readme_messages = grep { /\S/ } split /\n/, $block // '';
    @readme_blocks = apache_blocks('README.md');
    @doc_blocks = map { apache_blocks("docs/$_") } map { s{.*/}{}r } sort glob catfile($t_dir, '..', 'docs', '*.md');
    ($minimal) = read_doc('README.md') =~ /^## A minimal configuration\n.*?^```apache\n(.*?)^```/ms;
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
plan tests => $n + 5 + @readme_messages + @readme_blocks + @doc_blocks;

# httpd -t of a tiny config with the case's text: (exit status, output).
sub try_conf {
    my ($name, $body, @lines) = @_;
    my $conf = catfile($out_dir, "$name.conf");
    open my $fh, '>', $conf or die "$conf: $!";
    print $fh qq{ServerRoot "$out_dir"\n},
              qq{ServerName localhost\n},
              qq{PidFile "$out_dir/$name.pid"\n},
              qq{ErrorLog "$out_dir/$name.error_log"\n},
              @lines,
              qq{LoadModule memsess_module "$module"\n},
              "# --- the case (t/bad-config/$name.conf, README.md or docs/)\n",
              $body, "\n";
    close $fh;
    my $out = `"$httpd" -t -f "$conf" 2>&1`;
    return ($? >> 8, $out);
}

# The password files the MemsessCredentials cases name, relative to the
# ServerRoot ($out_dir): good ones, and one of each kind of bad one.
{
    # (memcached.password: what the examples in docs/ name)
    my %pw = ('password' => "s3cret\n", 'password-copy' => "s3cret",
              'memcached.password' => "s3cret\n",
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

ok t_cmp(scalar @readme_messages >= 8 ? 1 : 0, 1,
         'docs/directives.md: the block of example messages is found (' . scalar(@readme_messages) . ' lines)');
ok t_cmp(scalar @readme_blocks >= 3 ? 1 : 0, 1,
         'README: its ```apache blocks are found (' . scalar(@readme_blocks) . ')');
ok t_cmp(defined $minimal && $minimal =~ /^\s*MemsessServers /m
         && grep({ $_->[1] eq $minimal } @readme_blocks) ? 1 : 0, 1,
         'README: the minimal configuration is one of them');
ok t_cmp(scalar @doc_blocks >= 21 ? 1 : 0, 1,
         'docs/: their ```apache blocks are found (' . scalar(@doc_blocks) . ')');
my %per = map { $_->[0] => 1 } @doc_blocks;
ok t_cmp(join(' ', grep { !$per{$_} } qw(docs/directives.md docs/operations.md)), '',
         'docs/: directives.md and operations.md have ```apache blocks (' . join(' ', sort keys %per) . ')');
my $k = 0;
for my $msg (@readme_messages) {
    my $body = $README_CASE{$msg};
    unless (defined $body) {
        ok t_cmp('no configuration for it in t/13_bad_config.t', 'a case', "docs/directives.md message: $msg");
        next;
    }
    my ($rc, $out) = try_conf('readme-message-' . ++$k, $body, @load);
    my ($line) = grep { /(?:^|\] )\Q$msg\E$/ } split /\n/, $out;
    ok t_cmp($rc && defined $line ? $msg : $out, $msg, "docs/directives.md message is what httpd -t prints: $msg");
}
$k = 0;
for my $fb (@readme_blocks, @doc_blocks) {
    my ($file, $block) = @$fb;
    my $name = $file =~ s{^docs/}{}r =~ s/\.md$//r;
    my ($rc, $out) = try_conf("doc-block-$name-" . ++$k, $block, @load_readme);
    (my $first = $block) =~ s/\n.*//s;
    ok t_cmp($rc ? $out : 'Syntax OK', 'Syntax OK', "$file ```apache block $k ($first...) passes httpd -t");
}

for my $c (@cases) {
    my ($name, $body, $expect) = @$c;
    my ($rc, $out) = try_conf($name, $body, @load);
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
