# Health state survives a graceful restart (SIGUSR1) and a restart (SIGHUP):
# a server that was down is still down afterwards, with no window where a
# request is sent to it.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Time::HiRes qw(time sleep);
use Memsess::Test;

plan tests => 11;

my $V = 'memsess_health';
my @H = qw(H1 H2 H3);

memc_start(@H);
ok t_cmp(defined wait_states(10, 'up', @H) ? 1 : 0, 1, 'three servers up');
memc_kill('H2');
ok t_cmp(defined wait_states(fail_deadline(), 'down', 'H2') ? 1 : 0, 1, 'H2 killed and down');

my $pidfile = Apache::Test::vars('t_pid_file');
sub parent_pid {
    open my $fh, '<', $pidfile or return undef;
    my $p = <$fh>;
    close $fh;
    chomp $p if defined $p;
    return $p;
}

for my $case (['USR1', 'graceful restart'], ['HUP', 'restart']) {
    my ($sig, $what) = @$case;
    my $parent = parent_pid();
    kill $sig, $parent or die "kill $sig $parent: $!";
    # Poll right through the restart: every answer must leave H2 out.
    my (@paths, @states);
    # three seconds at least, and at least 11 answers: a loaded machine
    # answers slower, not differently
    my $end = time + 3;
    my $hard_end = time + 15;
    while (time < $end || (@paths <= 10 && time < $hard_end)) {
        my $i = info($V);
        push @paths, $i->{save_path} if $i && defined $i->{save_path};
        my $s = server_state('H2');
        push @states, $s if defined $s;
        sleep 0.02;
    }
    # the defaults (successor): H3 stands in for H2
    my @wrong = grep { $_ ne addrs(qw(H1 H3 H3)) } @paths;
    diag sprintf '%s: %d answers, %d with H2', $what, scalar @paths, scalar @wrong;
    ok t_cmp(scalar(@paths) > 10 ? 1 : 0, 1, "$what: requests are served through it");
    ok t_cmp(scalar @wrong, 0, "$what: no request is sent to the down server");
    my %seen = map { $_ => 1 } @states;
    ok t_cmp(join(',', sort keys %seen), 'down', "$what: the status says down all along");
    ok t_cmp(parent_pid(), $parent, "$what: the same parent serves on");
}

memc_start('H2');
ok t_cmp(defined wait_states(up_deadline(), 'up', 'H2') ? 1 : 0, 1,
         'after both restarts the checker still brings H2 back up');
memc_stop(@H);
