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

import argparse
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (write_report, RESULTS, Load, Runner, StatusWatch,
                      error_log_lines, fill_sessions, log,
                      machine_line, now, summarize)

MEMC_PORTS = (31041, 31042, 31043)
APACHE_PORT = 31050


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--sessions', type=int, default=100000)
    ap.add_argument('--size', type=int, default=1024)
    ap.add_argument('--users', type=int, default=30)
    args = ap.parse_args()
    os.makedirs(RESULTS, exist_ok=True)

    with Runner() as R:
        memcs = [R.memcached(p, mem=512) for p in MEMC_PORTS]
        addrs = [m.addr for m in memcs]
        body = '\n'.join([
            'MemsessServers %s' % ' '.join(addrs),
            'MemsessCheckInterval 1s',
            'MemsessCheckTimeout 250ms',
            'LogLevel notice',
        ])
        apache = R.apache('rejoin', APACHE_PORT, body, workers=60,
                          start_servers=60).start()
        t0 = now()
        watch = StatusWatch(apache, every=0.02, t0=t0).start()
        if not watch.all_up(addrs, 15):
            raise RuntimeError('the servers did not come up')

        tf = now()
        fill_sessions(addrs, args.sessions, args.size)
        log('filled %d sessions of %d bytes in %.1f s; items per server: %s'
            % (args.sessions, args.size, now() - tf,
               ', '.join(str(m.items()) for m in memcs)))

        load = Load(APACHE_PORT, users=args.users, followups=0, think=0.1,
                    timeout=15.0, t0=t0).start()
        time.sleep(3)
        ev = {'healthy': now() - t0}
        time.sleep(5)
        victim = memcs[2]
        others = [m.addr for m in memcs if m is not victim]
        ev['kill'] = now() - t0
        victim.kill()
        ev['down'] = watch.wait(victim.addr, 'down', 15) or (now() - t0)
        time.sleep(5)
        ev['restart'] = now() - t0
        victim.start()
        ev['syncing'] = watch.wait(victim.addr, 'syncing', 30)
        ev['up'] = watch.wait(victim.addr, 'up', 300) or (now() - t0)
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
    lines = [
        '# Rejoin sync of a server holding %d sessions (bench/rejoin.sh)' % args.sessions,
        '',
        machine_line(),
        '',
        'Three memcached, only `MemsessServers` written (replicas 1, successor, '
        '`MemsessRejoin sync`), interval 1s, timeout 250ms; %d sessions of %d '
        'bytes written as php-memcached writes them, %d users with a counter '
        'throughout. Server 3 killed, down, restarted empty: the sync refills it.'
        % (args.sessions, args.size, args.users),
        '',
        '| what | figure |',
        '|---|---|',
        '| sync duration (MEMSESS0030 to the flip) | %s |' % (
            '%s ms' % took.group(1) if took else 'n/a'),
        '| syncing seen on the status page for | %.1f s |' % (ev['up'] - sync_from),
        '| keys held by the restarted server afterwards | %d |' % held,
        '| requests served while it synced | %d (%.0f/s), p50 %.1f ms, p99 %.1f ms |' % (
            during['requests'], during['rps'], during['p50'] * 1000,
            during['p99'] * 1000),
        '| healthy, for comparison | %.0f/s, p50 %.1f ms, p99 %.1f ms |' % (
            healthy['rps'], healthy['p50'] * 1000, healthy['p99'] * 1000),
        '| sessions lost / stale from detection to the end (outage, sync, return) | %d / %d (failed %d, no session %d, of %d) |' % (
            after['lost'], after['stale'], after['failed'], after['nosess'],
            after['requests']),
        '| the same in the detection window (kill to down, %.2f s: not the sync\'s) | %d / %d (failed %d, no session %d, of %d) |' % (
            ev['down'] - ev['kill'], window['lost'], window['stale'],
            window['failed'], window['nosess'], window['requests']),
        '| probes of the other servers during the sync | %s |' % '; '.join(probes),
        '| when the lost / stale after detection happened | %s |' % (when or 'none'),
        '',
    ]
    write_report('rejoin', lines, log_lines)


if __name__ == '__main__':
    main()
