package Memsess::Load;

# Users with a counter in their session, requesting without pause against a
# Memsess::Instance, and the verdict on their answers (lost: the counter
# went back to 1; stale: it went back or jumped).  The same load and
# judgement as t/28_rejoin_sync.t, for the scenarios that change a pool.
#
#   my @pids = start_load($in, $file, $stop, procs => 6, users => 4);
#   (hold => [40, 160]: every other request of a user keeps its session
#   open that many ms, chosen at random, before writing it)
#   ...;  stop_load($stop, @pids);  my $c = judge($file, $from_t);

use strict;
use warnings FATAL => 'all';

use Exporter 'import';
use JSON::PP ();
use POSIX qw(_exit);
use Time::HiRes qw(time);
use Memsess::Test qw(new_ua);

our @EXPORT = qw(session_req start_load stop_load judge);

my $JSON = JSON::PP->new->utf8;

sub session_req {
    my ($in, $ua, $page) = @_;
    my $t0 = time;
    my $res = $ua->get($in->url("/memsess/$page"));
    my $d = $res->is_success ? eval { $JSON->decode($res->decoded_content) } : undef;
    return ($d, $res, $t0, time);
}

# Forks the load: procs processes of users users each, every user's
# requests logged as "start end user n written errors".
sub start_load {
    my ($in, $file, $stop, %o) = @_;
    my ($procs, $per, $hold) = ($o{procs} // 6, $o{users} // 4, $o{hold});
    unlink $stop, glob "$file.*";
    my @pids;
    for my $p (1 .. $procs) {
        my $pid = fork;
        die "fork: $!" unless defined $pid;
        if (!$pid) {
            open my $out, '>>', "$file.$p" or _exit(1);
            $out->autoflush(1);
            my @users = map { { name => "u$p.$_", ua => new_ua(timeout => 10) } } 1 .. $per;
            my $i = 0;
            until (-e $stop) {
                my $page = 'session.php';
                $page .= '?hold=' . ($hold->[0] + int(rand($hold->[1] - $hold->[0] + 1)))
                    if $hold && $i++ % 2 == 0;
                for my $u (@users) {
                    my ($d, $res, $t0, $t1) = session_req($in, $u->{ua}, $page);
                    my $errs = $d ? join('|', @{ $d->{errors} || [] }) : $res->status_line;
                    $errs =~ s/\s+/_/g;
                    printf $out "%.3f %.3f %s %s %d %s\n", $t0, $t1, $u->{name},
                        $d ? $d->{n} : -1, $d && $d->{written} && $d->{started} ? 1 : 0,
                        $errs eq '' ? '-' : $errs;
                }
            }
            close $out;
            _exit(0);
        }
        push @pids, $pid;
    }
    return @pids;
}

sub stop_load {
    my ($stop, @pids) = @_;
    open my $fh, '>', $stop or die "$stop: $!";
    close $fh;
    waitpid $_, 0 for @pids;
}

# Reads the load's log: counts per user, each answer judged against the
# user's previous one.  Only answers of requests that started after $from_t
# are judged; those that overlap one of @windows ([from, to]: a fault not
# yet detected) are counted apart (in_window).
sub judge {
    my ($file, $from_t, @windows) = @_;
    my (@lines, %last, %uncertain);
    for my $f (glob "$file.*") {
        open my $fh, '<', $f or next;
        push @lines, map { [split ' '] } <$fh>;
    }
    @lines = sort { $a->[0] <=> $b->[0] } @lines;
    my %c = (requests => 0, ok => 0, lost => 0, stale => 0, failed => 0,
             in_window => 0, detail => []);
    for my $l (@lines) {
        my ($t0, $t1, $user, $n, $written, $errs) = @$l;
        my $windowed = grep { $t0 < $_->[1] && $t1 > $_->[0] } @windows;
        $c{requests}++;
        my $judged = $t0 >= ($from_t // 0) && !$windowed;
        $c{in_window}++ if $windowed;
        if ($n < 0 || !$written || $errs ne '-') {
            $c{failed}++ if $judged;
            push @{ $c{detail} }, "failed $user at $t0: $errs" if $judged;
            $uncertain{$user}++;
            next;
        }
        my $prev = $last{$user};
        if (defined $prev && $judged) {
            my $slack = $uncertain{$user} // 0;
            if ($n >= $prev + 1 && $n <= $prev + 1 + $slack) {
                $c{ok}++;
            }
            elsif ($n == 1) {
                $c{lost}++;
                push @{ $c{detail} }, "lost $user at $t0: n=1 after $prev";
            }
            else {
                $c{stale}++;
                push @{ $c{detail} }, "stale $user at $t0: n=$n after $prev";
            }
        }
        $last{$user} = $n;
        $uncertain{$user} = 0;
    }
    return \%c;
}

1;
