# Issue 2: every vhost gets its own pool, in config order, injected into
# mod_php and the request environment; sessions land in that pool only; a
# vhost without MemsessServers gets the main server's pool.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Memsess::Test;

plan tests => 44;

my @A = qw(A1 A2);
my @B = qw(B1 B2);
my @ALL = (@A, @B, 'M1');
memc_start(@ALL);

for ([memsess_pool_a => '2/2'], [memsess_pool_b => '2/2'],
     [memsess_inherit => '1/1'], [default => '1/1']) {
    my ($vhost, $live) = @$_;
    my $t = wait_live($vhost, $live, 10);
    ok t_cmp(defined $t ? 1 : 0, 1, "$vhost: every server of its pool is live ($live)");
}

# --- what PHP and the environment get, per vhost ---------------------------

my %expect = (
    memsess_pool_a  => addrs(qw(A1 A2)),
    memsess_pool_b  => addrs('B2') . ',' . addr('B1') . ':3',
    memsess_inherit => addrs('M1'),
    default         => addrs('M1'),
);
for my $vhost (qw(memsess_pool_a memsess_pool_b memsess_inherit default)) {
    my $i = info($vhost) || {};
    ok t_cmp($i->{save_handler}, 'memcached', "$vhost: session.save_handler");
    ok t_cmp($i->{save_path}, $expect{$vhost},
             "$vhost: session.save_path lists its pool in config order");
    ok t_cmp($i->{env}{MEMSESS_SAVE_PATH}, $expect{$vhost},
             "$vhost: MEMSESS_SAVE_PATH in the environment (getenv)");
    ok t_cmp($i->{env}{MEMSESS_SAVE_HANDLER}, 'memcached',
             "$vhost: MEMSESS_SAVE_HANDLER in the environment");
}

{
    my $i = info('memsess_pool_a') || {};
    ok t_cmp($i->{env}{_SERVER_MEMSESS_SAVE_PATH}, addrs(@A),
             'pool_a: MEMSESS_SAVE_PATH in $_SERVER');
    ok t_cmp($i->{env}{MEMSESS_LIVE}, '2/2', 'pool_a: MEMSESS_LIVE live/configured');
    ok t_cmp($i->{replicas}, '1',
             'pool_a: no MemsessReplicas, two servers: 1 replica (the default)');
}

# A CGI sees the same environment.
{
    my ($env, $res) = get_json(new_ua(), 'memsess_pool_b', '/memsess/cgi/env.pl');
    ok t_cmp($env && $env->{MEMSESS_SAVE_PATH}, $expect{memsess_pool_b},
             'a CGI gets MEMSESS_SAVE_PATH: ' . $res->status_line);
    ok t_cmp($env && $env->{MEMSESS_LIVE}, '2/2', 'a CGI gets MEMSESS_LIVE');
}

# --- sessions persist, in their own pool only --------------------------------

sub login {
    my ($vhost, $pool, $other) = @_;
    my $ua = new_ua();
    my @seen;
    for my $n (1 .. 3) {
        my ($d, $res) = get_json($ua, $vhost, '/memsess/session.php');
        push @seen, $d || { error => $res->status_line };
    }
    my $id = $seen[0]{session_id} // '';
    ok t_cmp(join(',', map { $_->{n} // 'x' } @seen), '1,2,3',
             "$vhost: a session persists over three requests (cookie jar)");
    ok t_cmp(scalar(grep { ($_->{session_id} // '') eq $id } @seen), 3,
             "$vhost: the session id stays the same");
    ok t_cmp(join(',', map { $_->{written} ? 1 : 0 } @seen), '1,1,1',
             "$vhost: session_write_close() succeeded every time");
    my $key = session_key($id, $seen[0]{sess_prefix});
    my @in = memc_holders($key, @$pool);
    # the default: one replica in a pool of two or more servers
    my $copies = @$pool >= 2 ? 2 : 1;
    ok t_cmp(scalar @in, $copies, "$vhost: the key $key is on $copies server(s) of its pool");
    my @wrong = memc_holders($key, @$other);
    ok t_cmp("@wrong", '', "$vhost: and on no server of any other pool");
    return $id;
}

login('memsess_pool_a', \@A, [@B, 'M1']);
login('memsess_pool_b', \@B, [@A, 'M1']);
login('memsess_inherit', ['M1'], [@A, @B]);

# --- static files are left alone ------------------------------------------------

{
    my $file = Apache::Test::vars('documentroot') . '/memsess/static.txt';
    open my $fh, '<', $file or die "$file: $!";
    my $body = do { local $/; <$fh> };
    close $fh;
    my $res = new_ua()->get(vhost_url('memsess_pool_a', '/memsess/static.txt'));
    ok t_cmp($res->code, 200, 'a static file in a vhost with a pool is served');
    ok t_cmp($res->content, $body, 'its body is unchanged');
    ok t_cmp(scalar $res->header('Content-Type'), qr{^text/plain}, 'its type is unchanged');
    ok t_cmp(scalar $res->header('Set-Cookie'), undef, 'no session cookie on a static file');
}

memc_stop(@ALL);
