package Memsess::Ports;

# The named memcached servers the scenarios use, and the loopback ports they
# get for one run.  t/TEST.PL writes t/conf/memc_ports.conf with one Apache
# 2.4 `Define NAME 127.0.0.1:PORT` per server (extra.conf.in includes it and
# writes ${NAME}); the tests read the same file back with read_defines().

use strict;
use warnings FATAL => 'all';

use IO::Socket::IP ();
use File::Spec::Functions qw(catfile);

# One block per scenario; keep in step with t/conf/extra.conf.in.  Every
# server listens on 127.0.0.1, except those in %IPV6, on ::1.  MEMC_* are
# memcached servers; FAKE_* are t/lib/Memsess/FakeMemcached.pm; FPM_* are
# php-fpm pools.
our @NAMES = (
    'MEMC_M1',                               # main server pool (inherited)
    qw(MEMC_A1 MEMC_A2),                     # memsess_pool_a
    qw(MEMC_B1 MEMC_B2),                     # memsess_pool_b
    qw(MEMC_H1 MEMC_H2 MEMC_H3),             # memsess_health (kill, restart)
    qw(MEMC_F1 MEMC_F2 MEMC_F3),             # memsess_hang (SIGSTOP)
    qw(MEMC_R1 MEMC_R2 MEMC_R3),             # memsess_replicas
    (map { sprintf 'MEMC_X%02d', $_ } 1 .. 50),  # memsess_many
    qw(MEMC_S1 MEMC_S2),                     # memsess_status_pool
    qw(MEMC_V6),                             # memsess_ipv6
    qw(MEMC_C1 MEMC_C2),                     # memsess_format_memcache
    qw(MEMC_D1 MEMC_D2),                     # memsess_alldown_503, _files
    qw(MEMC_P1 MEMC_P2),                     # memsess_fpm
    qw(FPM_1),                               # php-fpm for memsess_fpm
    qw(MEMC_Q1),                             # memsess_probe: the real one
    qw(MEMC_SA1 MEMC_SA2),                   # memsess_sasl, _sasl_fpm (memcached -S)
    qw(MEMC_SW1 MEMC_SN1 MEMC_SP1),          # memsess_sasl_wrong, _none, _plain
    qw(FPM_3),                               # php-fpm for memsess_sasl_fpm
    qw(FAKE_OK FAKE_GARBAGE FAKE_BINARY FAKE_ENDLESS FAKE_CLOSE FAKE_SLOW),
                                             # memsess_probe: fakes (FakeMemcached.pm)
    # separate Apache instances (Memsess::Instance)
    qw(MEMC_W1 MEMC_W2 MEMC_E1 MEMC_E2 FPM_2),   # 40_mpm: worker, event
    qw(MEMC_G1 MEMC_G2 MEMC_G3),             # 41_graceful_load
    qw(MEMC_K1 MEMC_K2),                     # 42_graceful_many
    qw(MEMC_L1),                             # 44_requests_rss
    qw(MEMC_IN1 MEMC_IN2 MEMC_IN3),          # 45_install: the README's minimal configuration
    qw(MEMC_Z1),                             # 24_checker_crash (SIGSTOP)
    qw(MEMC_J1 MEMC_J2 MEMC_J3),             # 27_rejoin_static
    qw(MEMC_SG1),                            # 18_sasl: graceful, new password
    qw(MEMC_N1 MEMC_N2 MEMC_N3 MEMC_N4),     # 50_peers: three instances; N4 added
    qw(MEMC_O1 MEMC_O2 MEMC_O3),             # memsess_window (28_window)
    qw(MEMC_Y1 MEMC_Y2 MEMC_Y3),             # 28_rejoin_sync: the defaults
    qw(MEMC_U1 MEMC_U2 MEMC_U3),             # 28_rejoin_sync: replicas 0
    qw(MEMC_RS1 MEMC_RS2 MEMC_RS3),          # 28_rejoin_same
    qw(MEMC_FL1 MEMC_FL2 MEMC_FL3),          # 28_rejoin_flip
    qw(MEMC_RT1 MEMC_RT2 MEMC_RT3),          # 28_sync_retry: reads that time out
    qw(MEMC_CP1 MEMC_CP2 MEMC_CP3),          # 28_checker_process: a sync while children end
    qw(MEMC_PC1 MEMC_PC2 MEMC_PC3 MEMC_PC4 MEMC_PC5 MEMC_PC6),
                                             # 29_pool_change: the defaults
    qw(MEMC_PD1 MEMC_PD2 MEMC_PD3 MEMC_PD4 MEMC_PD5),
                                             # 29_pool_change: replicas 0
    qw(MEMC_PE1 MEMC_PE2 MEMC_PE3),          # 29_pool_change: placement changes
    qw(MEMC_PE4 MEMC_PE5 MEMC_PE6),          # 29_pool_change: a server without
                                             # lru_crawler (PE6)
    qw(MEMC_PE7 MEMC_PE8),                   # 18_sasl: a SASL pool grown at graceful
    qw(MEMC_SK1 MEMC_SK2 MEMC_SK3 MEMC_SK4), # 60_soak: three instances; SK4 added and removed
    qw(MEMC_RH1 MEMC_RH2 FPM_RH),           # 28_release_helper: php-fpm, event, root
    qw(MEMC_TW1 MEMC_TW2),                   # 51_twins
    qw(MEMC_NB1 MEMC_NB2 MEMC_NB3 MEMC_NB4), # 54_neighbours: another site on the same servers
    qw(MEMC_NR1 MEMC_NR2 MEMC_NR3),          # 54_neighbours: the engine's rename alone
    qw(MEMC_CK1 MEMC_CK2 MEMC_CK3 MEMC_CK4), # 53_clocks: three instances, clocks apart
    qw(MEMC_LS1 MEMC_LS2 MEMC_LS3),          # 52_lease: 1,000,000 application keys
    qw(MEMC_AD1 MEMC_AD2 MEMC_AD3),          # 19_adopt: the article's setup switched
    qw(MEMC_AE1 MEMC_AE2 MEMC_AE3),          # 19_adopt: ... with consistent_hash Off
    qw(MEMC_AF1 MEMC_AF2 MEMC_AF3 MEMC_AF4), # 19_adopt: stop/start with AF4 added;
                                             # a renamed vhost
    qw(MEMC_PS1 MEMC_PS2 MEMC_PS3),          # 70_persist: SQLite
    qw(MEMC_PG1 MEMC_PG2 MEMC_PG3 PG_1),     # 70_persist: PostgreSQL (PG_1: its port)
);

our %IPV6 = (MEMC_V6 => 1);

# Ports are drawn below the usual ephemeral range (32768-60999), so that an
# outgoing connection (the checker's own probes) can never sit on the port
# of a memcached that a test has killed and wants to start again.
use constant PORT_LO => 20000;
use constant PORT_HI => 32000;

sub file {
    my $t_dir = shift;
    return catfile($t_dir, 'conf', 'memc_ports.conf');
}

sub port_is_free {
    my ($port, $host) = @_;
    my $s = IO::Socket::IP->new(LocalHost => $host, LocalPort => $port,
                                Proto => 'tcp', Listen => 1, ReuseAddr => 1)
        or return 0;
    close $s;
    return 1;
}

# Whether this machine has IPv6 on loopback.
sub have_ipv6 { port_is_free(0, '::1') }

# One free port per name, all different.
sub pick_ports {
    my @names = @_;
    my (%seen, @ports);
    my $tries = 0;
    for my $name (@names) {
        my $host = $IPV6{$name} && have_ipv6() ? '::1' : '127.0.0.1';
        while (1) {
            die "cannot find free loopback ports" if ++$tries > 100 * @names;
            my $port = PORT_LO + int rand(PORT_HI - PORT_LO);
            next if $seen{$port}++;
            next unless port_is_free($port, $host);
            push @ports, $port;
            last;
        }
    }
    return @ports;
}

# Writes the Define file.  %extra: more Defines (e.g. MEMSESS_MODULE).
sub generate {
    my ($t_dir, %extra) = @_;
    my @ports = pick_ports(@NAMES);
    my $file = file($t_dir);
    open my $fh, '>', "$file.tmp" or die "open $file.tmp: $!";
    print $fh "# Generated by t/TEST.PL for one test run: the loopback port of every\n",
              "# memcached the scenarios start.  Do not edit; delete it to draw new ports.\n";
    for my $i (0 .. $#NAMES) {
        my $host = $IPV6{$NAMES[$i]} ? '[::1]' : '127.0.0.1';
        print $fh "Define $NAMES[$i] $host:$ports[$i]\n";
    }
    for my $k (sort keys %extra) {
        print $fh "Define $k \"$extra{$k}\"\n";
    }
    close $fh or die "close $file.tmp: $!";
    rename "$file.tmp", $file or die "rename $file: $!";
    return $file;
}

# Returns { NAME => value } from the Define file.
sub read_defines {
    my $t_dir = shift;
    my $file = file($t_dir);
    open my $fh, '<', $file or die "open $file: $!";
    my %d;
    while (my $line = <$fh>) {
        next unless $line =~ /^\s*Define\s+(\S+)\s+"?([^"\n]*?)"?\s*$/;
        $d{$1} = $2;
    }
    close $fh;
    return \%d;
}

1;
