# Issue 24: docs/directives.md has one block per directive of the module,
# and only those.  The module's own list is what the real httpd says of the
# built module (`httpd -L`, filtered to mod_memsess.c), checked against the
# AP_INIT_* names of the command table in the sources: a directive without a
# block fails, and so does a block for no directive.  Each block has the six
# fields of Apache's manual (Description, Syntax, Default, Context, Status:
# Extension, Module: mod_memsess) and an example; its Context is what httpd
# accepts: a directive without "virtual host" is refused inside a
# <VirtualHost>, one with it is not; likewise "directory" and <Location>.
# (The examples themselves pass `httpd -t` in t/13_bad_config.t.)
# And the log tags: every MEMSESSnnnn the README and docs/ name is a tag of
# the sources, and each row of docs/operations.md's "Log tags" table gives
# the level its call site logs at.  And docs/design.md's Layout table
# names every C file and header of the tree, and only files that exist.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use File::Path qw(make_path);
use File::Spec::Functions qw(catfile);
use File::Basename qw(dirname);
use Memsess::Ports ();

my $vars = Apache::Test::vars();
my $httpd = $vars->{httpd};
my $t_dir = $vars->{t_dir};
my $top = dirname($t_dir);
my $module = Memsess::Ports::read_defines($t_dir)->{MEMSESS_MODULE};
my $out_dir = catfile($vars->{t_logs}, 'directives');
make_path($out_dir);

my @load;
{
    my $base = catfile($t_dir, 'conf', 'memsess_base.conf');
    open my $fh, '<', $base or die "$base: $!";
    @load = grep { /^LoadModule (mpm_prefork|authz_core)_module / } <$fh>;
    close $fh;
}

# httpd with a tiny config that loads the module and holds $body.
sub httpd_with {
    my ($name, $flag, $body) = @_;
    my $conf = catfile($out_dir, "$name.conf");
    open my $fh, '>', $conf or die "$conf: $!";
    print $fh qq{ServerRoot "$out_dir"\n}, qq{ServerName localhost\n},
              qq{PidFile "$out_dir/$name.pid"\n}, qq{ErrorLog "$out_dir/$name.error_log"\n},
              @load, qq{LoadModule memsess_module "$module"\n}, $body // '', "\n";
    close $fh;
    return scalar `"$httpd" $flag -f "$conf" 2>&1`;
}

# The module's directives as httpd lists them: name => "Allowed in" line.
my %real;
{
    my @l = split /\n/, httpd_with('list', '-L');
    for my $i (0 .. $#l) {
        next unless $l[$i] =~ /^(\S+) \((?:\S*\/)?mod_memsess\.c\)$/;
        my ($allowed) = grep { /^\s*Allowed in / } @l[$i + 1 .. ($i + 2 > $#l ? $#l : $i + 2)];
        $real{$1} = $allowed // '';
    }
}

# The command table's names in the sources (wherever the table lives).
my %table;
{
    my @src = grep { !m{/(t|fuzz|bench|tools|debian|demo)/} }
              (glob(catfile($top, '*.c')), glob(catfile($top, '*', '*.c')));
    for my $f (@src) {
        open my $fh, '<', $f or next;
        my $text = do { local $/; <$fh> };
        $table{$1} = 1 while $text =~ /AP_INIT_\w+\(\s*"(\w+)"/g;
    }
}

# The blocks of docs/directives.md: "## Name" up to the next "## ".
my (%block, @order);
{
    my $file = catfile($top, 'docs', 'directives.md');
    open my $fh, '<', $file or die "$file: $!";
    my $text = do { local $/; <$fh> };
    close $fh;
    while ($text =~ /^## (Memsess\w+)[ \t]*\n(.*?)(?=^## |\z)/msg) {
        push @order, $1;
        $block{$1} = $2;
    }
}

# The log tags of the sources, each with the level of its call site (the
# APLOG_ level within the four lines before the tag).
my %level;
{
    my @src = grep { !m{/(t|fuzz|bench|tools|debian|demo)/} }
              (glob(catfile($top, '*.c')), glob(catfile($top, '*', '*.c')));
    for my $f (@src) {
        open my $fh, '<', $f or next;
        my @l = <$fh>;
        for my $i (0 .. $#l) {
            for my $tag ($l[$i] =~ /MEMSESS(\d{4})/g) {
                my $ctx = join '', @l[($i > 4 ? $i - 4 : 0) .. $i];
                my @lv = $ctx =~ /APLOG_(EMERG|ALERT|CRIT|ERR|WARNING|NOTICE|INFO|DEBUG|TRACE\d)\b/g;
                $level{$tag} ||= {};
                $level{$tag}{ $lv[-1] } = 1 if @lv;
            }
        }
    }
}
my ($docs_text, $tag_rows) = ('', '');
for my $f ('README.md', map { s{.*/}{docs/}r } sort glob catfile($top, 'docs', '*.md')) {
    open my $fh, '<', catfile($top, $f) or die "$f: $!";
    my $t = do { local $/; <$fh> };
    $docs_text .= $t;
    ($tag_rows) = $t =~ /^## Log tags\n(.*?)(?=^## |\z)/ms if $f eq 'docs/operations.md';
}
my %named = map { $_ => 1 } $docs_text =~ /MEMSESS(\d{4})/g;
my @rows = grep { /^\| `MEMSESS/ } split /\n/, $tag_rows // '';

my @fields = qw(Description Syntax Default Context Status Module);
my @all = sort keys %{ { %real, %block } };
plan tests => 3 + @all + 4 * scalar(keys %block) + 3 + 2;

ok t_cmp(scalar(keys %real) >= 20 ? 1 : 0, 1,
         'httpd -L lists the directives of mod_memsess.c (' . scalar(keys %real) . ')');
ok t_cmp(join(' ', sort keys %table), join(' ', sort keys %real),
         'the AP_INIT_* names of the sources are the directives httpd -L lists');
ok t_cmp(join(' ', @order), join(' ', sort @order),
         'docs/directives.md: the blocks in alphabetical order, each once');

for my $d (@all) {
    my $got = !exists $real{$d} ? 'a block for no directive of the module'
            : !defined $block{$d} ? 'no block in docs/directives.md'
            : 'a block for a directive';
    ok t_cmp($got, 'a block for a directive', "$d: a directive of the module with a block in docs/directives.md");
}

for my $d (sort keys %block) {
    my $b = $block{$d};
    my %f = $b =~ /^\|\s*(\w+):\s*\|\s*(.*?)\s*\|[ \t]*$/mg;
    my @missing = grep { !defined $f{$_} || $f{$_} eq '' } @fields;
    ok t_cmp("@missing", '', "$d: the six fields (@fields)");
    my @wrong;
    push @wrong, "Syntax: $f{Syntax}" unless ($f{Syntax} // '') =~ /^`\Q$d\E\b/;
    push @wrong, "Status: $f{Status}" unless ($f{Status} // '') eq 'Extension';
    push @wrong, "Module: $f{Module}" unless ($f{Module} // '') eq 'mod_memsess';
    my @ctx = split /\s*,\s*/, $f{Context} // '';
    my @bad = grep { !/^(server config|virtual host|directory|\.htaccess)$/ } @ctx;
    push @wrong, "Context: $f{Context}" if @bad || !grep { $_ eq 'server config' } @ctx;
    ok t_cmp("@wrong", '', "$d: Syntax names it, Status Extension, Module mod_memsess, a Context of Apache's words");

    # its example: a ```apache block with a line of the directive
    my ($line) = map { /^\s*(\Q$d\E\b.*)$/m ? $1 : () } $b =~ /^```apache\n(.*?)^```/msg;
    ok t_cmp(defined $line ? 1 : 0, 1, "$d: an example (```apache) that uses it");
    $line //= $d;

    # the context as httpd enforces it
    my %has = map { $_ => 1 } @ctx;
    my $vh = httpd_with("vhost-$d", '-t', "<VirtualHost *:80>\n    $line\n</VirtualHost>");
    my $loc = httpd_with("location-$d", '-t', "<Location \"/doc\">\n    $line\n</Location>");
    my $in_vh = $vh =~ /cannot occur within <VirtualHost> section/ ? 0 : 1;
    my $in_loc = $loc =~ /not allowed (?:in <Location> context|here)/ ? 0 : 1;
    ok t_cmp("virtual host $in_vh, directory $in_loc",
             'virtual host ' . ($has{'virtual host'} ? 1 : 0) . ', directory ' . ($has{directory} ? 1 : 0),
             "$d: httpd takes it in <VirtualHost> and <Location> exactly as Context says ($f{Context})");
}

# --- the log tags the documentation names ------------------------------------------

my @unknown = grep { !$level{$_} } sort keys %named;
# (a tag of the sources: one with a call site, whatever its level)
ok t_cmp("@unknown", '', 'every MEMSESSnnnn of the README and docs/ is a tag of the sources (' . scalar(keys %named) . ')');
ok t_cmp(scalar @rows >= 40 ? 1 : 0, 1, 'docs/operations.md: the table of log tags is found (' . scalar(@rows) . ' rows)');
{
    my %word = (EMERG => 'EMERG', ALERT => 'ALERT', CRIT => 'CRIT', ERROR => 'ERR',
                WARN => 'WARNING', NOTICE => 'NOTICE', INFO => 'INFO', DEBUG => 'DEBUG');
    my @bad;
    for my $row (@rows) {
        my (undef, $tags, $lv) = split /\s*\|\s*/, $row;
        my @t = $tags =~ /(\d{4})/g;
        my @l = map { $word{$_} // "?$_" } split /\s*,\s*/, $lv;
        @l = (@l) x @t if @l == 1;
        for my $k (0 .. $#t) {
            push @bad, "MEMSESS$t[$k] $lv" unless $level{ $t[$k] } && $l[$k] && $level{ $t[$k] }{ $l[$k] };
        }
    }
    ok t_cmp("@bad", '', "docs/operations.md's log tags: each row's level is its call site's");
}

# --- docs/design.md's Layout table and the tree --------------------------------------

{
    open my $fh, '<', catfile($top, 'docs', 'design.md') or die "docs/design.md: $!";
    my $design = do { local $/; <$fh> };
    my ($layout) = $design =~ /^## Layout\n(.*?)(?=^## |\z)/ms;
    my @named = map { /^\|\s*`([^`]+)`\s*\|/ ? $1 : () } split /\n/, $layout // '';
    my %named = map { $_ => 1 } @named;
    my @tree = map { s{^\Q$top\E/}{}r }
               grep { !m{/(t|fuzz|bench|tools|debian|demo|build-asan|dist)/} }
               (glob(catfile($top, '*.[ch]')), glob(catfile($top, '*', '*.[ch]')));
    # (a part's own header, memsess_NAME.h beside a listed memsess_NAME.c,
    # is named by the sentence above the table)
    my @unlisted = grep { !$named{$_} && !(/^(.*)\.h$/ && $named{"$1.c"} && -e catfile($top, "$1.c")) }
                   sort @tree;
    ok t_cmp("@unlisted", '', 'docs/design.md Layout: every C file and header of the tree is listed (' . scalar(@tree) . ')');
    my @gone = grep { !-e catfile($top, $_) } @named;
    ok t_cmp("@gone", '', 'docs/design.md Layout: every file it lists exists (' . scalar(@named) . ')');
}
