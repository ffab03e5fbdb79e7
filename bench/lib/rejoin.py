"""bench/rejoin.sh: the rejoin sync of a server that comes back empty while
the pool holds many sessions (100,000 of 1 KB by default).

Three memcached; Apache with only MemsessServers (the defaults: replicas 1,
successor, MemsessRejoin sync) and the SPEC check settings (interval 1s,
timeout 250ms, thresholds 2).  The sessions are written the way
php-memcached's session handler writes them (a PHP CLI script, the
Memcached class set up like the handler: binary protocol, modulo
distribution, one replica, the memc.sess.key. prefix).  30 users with a
counter in their session run throughout.  Server 3 is killed, marked down,
restarted empty after a few seconds: the sync refills it before it is
published.

Figures: the sync's duration and counts (its NOTICEs MEMSESS0030/0031/0035),
the requests served while it ran and their p50/p99 against the healthy
phase, sessions lost or stale through the whole cycle, and the probes of
the other servers during the sync (they must keep the interval).
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (POOL_OPTIONS, Runner, bench_parser, bench_start,
                      error_log_lines, figures_head, fill_sessions,
                      healthy_load, log_filled, loss_cell, now, rate_cell,
                      spec_pool, summarize, watch_up, write_report)

MEMC_PORTS = (31041, 31042, 31043)
APACHE_PORT = 31050


def main():
    args, _ = bench_start(bench_parser(__doc__, **POOL_OPTIONS))

    with Runner() as R:
        memcs, addrs, apache = spec_pool(R, 'rejoin', MEMC_PORTS, APACHE_PORT)
        t0 = now()
        watch = watch_up(apache, addrs, t0, 15)

        tf = now()
        fill_sessions(addrs, args.sessions, args.size)
        log_filled('filled', args.sessions, args.size, tf, memcs)

        load, ev = healthy_load(APACHE_PORT, args.users, t0)
        victim = memcs[2]
        others = [m.addr for m in memcs if m is not victim]
        ev['kill'] = now() - t0
        victim.kill()
        ev['down'] = watch.reached(victim.addr, 'down', 15)
        time.sleep(5)
        ev['restart'] = now() - t0
        victim.start()
        ev['syncing'] = watch.wait(victim.addr, 'syncing', 30)
        ev['up'] = watch.reached(victim.addr, 'up', 300)
        time.sleep(5)
        ev['end'] = now() - t0
        load.stop()
        watch.stop()
        held = victim.items()
        log_lines = error_log_lines(apache.errlog, ('MEMSESS0030', 'MEMSESS0031',
                                            'MEMSESS0033', 'MEMSESS0035'))
        R.stop(apache)

    recs = load.snapshot()
    sync_from = ev['syncing'] if ev['syncing'] is not None else ev['restart']
    healthy = summarize(recs, ev['healthy'], ev['kill'])
    during = summarize(recs, sync_from, ev['up'])
    cycle = summarize(recs, ev['kill'], ev['end'])
    window = summarize(recs, ev['kill'], ev['down'])
    after = summarize(recs, ev['down'], ev['end'])
    probes = []
    for a in others:
        c0, c1 = watch.checks_at(a, sync_from), watch.checks_at(a, ev['up'])
        if c0 is not None and c1 is not None:
            probes.append('%s: %d probes in %.1f s' % (a, c1 - c0,
                                                        ev['up'] - sync_from))
    odd = [r for r in recs if r.t >= ev['down'] and r.outcome in ('lost', 'stale')]
    when = ', '.join('%s at %+.2f s from %s' % (
        r.outcome, r.t - (ev['up'] if r.t >= ev['up'] else ev['down']),
        'the flip' if r.t >= ev['up'] else 'detection') for r in odd[:12])
    m031 = next((l for l in log_lines if 'MEMSESS0031' in l), '')
    took = re.search(r'after (\d+)ms', m031)
    lines = figures_head(
        'Rejoin sync of a server holding %d sessions (bench/rejoin.sh)' % args.sessions,
        'Three memcached, only `MemsessServers` written (replicas 1, successor, '
        '`MemsessRejoin sync`), interval 1s, timeout 250ms; %d sessions of %d '
        'bytes written as php-memcached writes them, %d users with a counter '
        'throughout. Server 3 killed, down, restarted empty: the sync refills it.'
        % (args.sessions, args.size, args.users)) + [
        '| sync duration (MEMSESS0030 to the flip) | %s |' % (
            '%s ms' % took.group(1) if took else 'n/a'),
        '| syncing seen on the status page for | %.1f s |' % (ev['up'] - sync_from),
        '| keys held by the restarted server afterwards | %d |' % held,
        '| requests served while it synced | %s |' % rate_cell(during),
        '| healthy, for comparison | %s |' % rate_cell(healthy, count=False),
        '| sessions lost / stale from detection to the end (outage, sync, return) | %s |' % loss_cell(after),
        '| the same in the detection window (kill to down, %.2f s: not the sync\'s) | %s |' % (
            ev['down'] - ev['kill'], loss_cell(window)),
        '| probes of the other servers during the sync | %s |' % '; '.join(probes),
        '| when the lost / stale after detection happened | %s |' % (when or 'none'),
        '',
    ]
    write_report('rejoin', lines, log_lines)


if __name__ == '__main__':
    main()
