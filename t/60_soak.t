# Issue 21: a randomized fault soak (t/lib/Memsess/Soak.pm).  Three Apache
# instances, each as a user of its own, behind nginx round robin, three
# memcached at the defaults; 30 users with counters alternate between the
# instances and some log out, while a seeded schedule kills and restarts
# memcached servers empty, freezes them, cuts one instance off from one of
# them (reject or drop), adds a server to the pool and removes it, and
# gracefuls, restarts, kills the checker's child and saturates the CPU.
# At most one memcached fault at a time; the Apache ones overlap anything.
# The instances name their group (MemsessGroup memsess-soak): with the group
# derived from the pool (the default), the pool fault splits them
# (MEMSESS_SOAK_DERIVED_GROUP=1 shows it: seed 7022, every kind of
# violation during the rolling graceful).
#
# Two schedules of 30 s: a fixed seed and a random one (printed first).
# MEMSESS_SOAK_SEED=S runs only that seed (a failure's seed, to see it
# again); MEMSESS_SOAK_SECONDS=N makes each schedule N s long (bench/soak.sh:
# 1800); MEMSESS_SOAK_OUT=DIR writes the run's files there (default
# t/logs/soak): DIR/soak-SEED/ schedule.txt, requests.log, faults.json,
# resources.log, violations.txt, summary.json, and with a violation each
# instance's error log (webN.error_log.gz).
#
# Asserted for each seed: 0 sessions lost, 0 stale, 0 logouts undone
# (resurrected), every fault over (every instance sees every server up
# again), no child crashed, and the resources bounded (fds and RSS of every
# Apache child and memcached, the parent's shared memory, TIME_WAIT).
#
# Needs root for the users, the rules and the checker's child: tools/test.sh
# provides tools/root-helper.sh through sudo ($ENV{MEMSESS_ROOT_HELPER}).
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use File::Spec::Functions qw(catfile);
use Memsess::Test;
use Memsess::Instance;
use Memsess::Soak;

my $HELPER = $ENV{MEMSESS_ROOT_HELPER};
my $FIXED = 7022;    # eight kinds of fault in its first 30 s (a clock step among them)
my $SECS = $ENV{MEMSESS_SOAK_SECONDS} // 30;
my @seeds = defined $ENV{MEMSESS_SOAK_SEED} && $ENV{MEMSESS_SOAK_SEED} =~ /^(\d+)$/
    ? ($1) : ($FIXED, Memsess::Soak::random_seed());
my $OUT = $ENV{MEMSESS_SOAK_OUT} // catfile(Apache::Test::vars()->{t_logs}, 'soak');
my @kinds = split /[\s,]+/, $ENV{MEMSESS_SOAK_KINDS} // '';

# Out of the whole suite until the violations it finds are fixed (issue
# 21's notes: sessions created during a sync lost at its flip, logouts
# undone): a command that fails every run would hide every other result.
# Asked for by name (MEMSESS_TEST_FILES), with a seed, MEMSESS_TEST_SOAK=1
# or bench/soak.sh, it runs.
my $ASKED = $ENV{MEMSESS_TEST_SOAK} || defined $ENV{MEMSESS_SOAK_SEED}
    || ($ENV{MEMSESS_TEST_FILES} // '') =~ /60_soak/;

# the seeds first, before anything can fail
diag "soak seeds: @seeds ($SECS s each)";

plan tests => 8 * @seeds, need {
    'asked for (MEMSESS_TEST_SOAK=1, MEMSESS_SOAK_SEED, MEMSESS_TEST_FILES=t/60_soak.t, '
        . 'bench/soak.sh): its known violations are not fixed yet' => $ASKED,
    'root: tools/root-helper.sh through sudo (tools/test.sh)' => $HELPER && -x $HELPER
        && !system("sudo -n '$HELPER' heal memsess-web1 1024 >/dev/null 2>&1"),
    'nginx' => -x '/usr/sbin/nginx',
    'stress-ng' => !system('command -v stress-ng >/dev/null 2>&1'),
};

my $farm = Memsess::Soak::farm_start();
END { Memsess::Soak::farm_stop($farm) if $farm }

for my $seed (@seeds) {
    my $r = eval { Memsess::Soak::run_phase($farm, seed => $seed, seconds => $SECS, out => $OUT,
                                            kinds => \@kinds) };
    if (!$r) {
        my $err = $@ || 'no summary';
        diag "seed $seed: the phase died: $err";
        ok t_cmp($err, '', "seed $seed: the phase ran") for 1 .. 8;
        next;
    }
    my $tag = "seed $seed";
    ok t_cmp($r->{requests} > 10 * $SECS ? 1 : 0, 1,
             "$tag: the load ran ($r->{requests} requests, $r->{failed} failed, $r->{faults} faults)");
    ok t_cmp($r->{lost}, 0, "$tag: no session lost");
    ok t_cmp($r->{stale}, 0, "$tag: no session stale");
    ok t_cmp($r->{resurrected}, 0, "$tag: no logout undone ($r->{logouts} logouts)");
    ok t_cmp($r->{unsettled}, 0, "$tag: every fault over in time (every instance sees every server up)");
    ok t_cmp($r->{crashes}, 0, "$tag: no child crashed");
    my @bad = grep { !$_->[3] } @{ $r->{resources} };
    ok t_cmp(join('; ', map { "$_->[0] $_->[1] > $_->[2]" } @bad), '',
             "$tag: resources bounded (" . scalar(@{ $r->{resources} }) . ' measures)');
    ok t_cmp(all_answer() ? 1 : 0, 1, "$tag: the three instances still answer");
}

sub all_answer { !grep { !$_->answers(2) } @{ $farm->{web} } }

Memsess::Soak::farm_stop($farm);
undef $farm;
