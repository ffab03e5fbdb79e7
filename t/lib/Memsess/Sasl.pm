package Memsess::Sasl;

# SASL for the scenarios (issue 14, t/18_sasl.t): the passwords, the
# password files the configuration names, and the sasldb that memcached -S
# reads.
#
# The password files must exist before httpd reads extra.conf, so t/TEST.PL
# writes them (write_password_files) next to memc_ports.conf, in
# t/conf/sasl/.  The sasldb and memcached.conf are the test's own, under
# t/logs/memc/sasl/ (sasl_setup): memcached reads the sasldb at every
# authentication, so a password changed there applies at once.
#
# Every password holds "Zq9": a test that looks for a leak looks for that.
# GOOD holds what PHP's INI parser would read otherwise (quote, dollar,
# semicolon, backslash, hash, spaces), so that php-fpm proves the quoting.

use strict;
use warnings FATAL => 'all';

use File::Path qw(make_path);
use File::Spec::Functions qw(catfile);

our $USER   = 'memsess';
our $GOOD   = q{Zq9good "a$b;c'd\\e #f};
our $WRONG  = 'Zq9wrong-password';
our $LEAK   = 'Zq9';

sub dir { catfile($_[0], 'conf', 'sasl') }

sub password_file { catfile(dir($_[0]), $_[1]) }

sub write_file {
    my ($file, $content, $mode) = @_;
    open my $fh, '>', "$file.tmp" or die "open $file.tmp: $!";
    print $fh $content;
    close $fh or die "close $file.tmp: $!";
    chmod $mode // 0600, "$file.tmp";
    rename "$file.tmp", $file or die "rename $file: $!";
}

# t/conf/sasl/password (GOOD) and wrong-password (WRONG), mode 0600.
sub write_password_files {
    my $t_dir = shift;
    make_path(dir($t_dir));
    write_file(password_file($t_dir, 'password'), "$GOOD\n");
    write_file(password_file($t_dir, 'wrong-password'), "$WRONG\n");
}

# A SASL directory for memcached -S in $dir: memcached.conf (PLAIN, the
# sasldb beside it) and the sasldb with user => password pairs.
sub sasl_setup {
    my ($dir, %users) = @_;
    make_path($dir);
    write_file(catfile($dir, 'memcached.conf'),
               "mech_list: plain\nsasldb_path: " . catfile($dir, 'sasldb2') . "\n",
               0644);
    sasl_user($dir, $_, $users{$_}) for sort keys %users;
    return $dir;
}

# Sets (creates or changes) a user's password in the sasldb of $dir.
sub sasl_user {
    my ($dir, $user, $password) = @_;
    my ($bin) = grep { -x } map { "$_/saslpasswd2" } qw(/usr/sbin /usr/bin /sbin /bin);
    die "saslpasswd2 not found (package sasl2-bin)" unless $bin;
    my $db = catfile($dir, 'sasldb2');
    open my $p, '|-', $bin, '-p', '-c', '-a', 'memcached', '-f', $db, $user
        or die "saslpasswd2: $!";
    print $p "$password\n";
    close $p or die "saslpasswd2 $user failed: $?";
}

1;
