"""bench/rejoin.sh: what a rejoin sync (MemsessRejoin sync) of a server that
holds 100,000 sessions costs, and what users see meanwhile.

Three memcached servers hold --sessions PHP sessions of --size bytes each,
written beforehand exactly where php-memcached puts them (lib/populate.php),
with one replica each (the defaults: MemsessReplicas 1, MemsessFailover
successor).  Apache + mod_php + mod_memsess with nothing but MemsessServers
(every other setting at its default); 30 users with a counter in their
session keep making requests.  Two cycles on the middle server:

  freeze  SIGSTOP, until it is marked down, --outage seconds, SIGCONT: it
          comes back holding its old copies
  kill    SIGKILL, until it is marked down, --outage seconds, restarted
          empty: it comes back with nothing

For each: how long the server stayed `syncing` (first status poll showing
it to the first showing it up), the sync's own figures from the status page
and the log, and the requests served while it synced (count, p50, p99,
failed, no session, lost, stale), against the healthy phase before.
"""

import argparse
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (RESULTS, WORK, Load, Runner, StatusWatch, log,
                      load_average, machine_line, ms, now, summarize,
                      write_csv)

MEMC_PORTS = (31021, 31022, 31023)
APACHE_PORT = 31030
LIB = os.path.dirname(os.path.abspath(__file__))


def populate(memcs, count, size):
    t = now()
    out = subprocess.run(
        ['php', os.path.join(LIB, 'populate.php'),
         ','.join(m.addr for m in memcs), str(count), str(size), '1', '0'],
        capture_output=True, text=True, check=True).stdout.strip()
    log('populated %s sessions of %d bytes in %.1f s' % (out, size, now() - t))
    return int(out or 0)


def items(m):
    return int(m.stats().get('curr_items', 0))


def sync_lines(apache, since):
    """The module's NOTICE lines about syncs, from byte offset since."""
    with open(apache.errlog, errors='replace') as f:
        f.seek(since)
        return [l.rstrip() for l in f if 'sync' in l.lower()]


def first_seen(watch, addr, state, since):
    """Time of the first status poll after since that showed addr in
    state, or None."""
    with watch.cv:
        for t, states in watch.states_history:
            if t >= since and states.get(addr) == state:
                return t
    return None


def cycle(R, apache, watch, load, t0, memc, kind, args):
    rel = lambda: now() - t0
    res = {'kind': kind}
    off = os.path.getsize(apache.errlog)
    res['items_before'] = items(memc)
    ev = {'start': rel()}
    if kind == 'freeze':
        memc.freeze()
    else:
        memc.kill()
    ev['down'] = watch.wait(memc.addr, 'down', 15) or rel()
    time.sleep(args.outage)
    ev['back'] = rel()
    if kind == 'freeze':
        memc.thaw()
    else:
        memc.start()
    ev['up'] = watch.wait(memc.addr, 'up', args.sync_deadline)
    if ev['up'] is None:
        ev['up'] = rel()
        res['timed_out'] = True
    ev['syncing'] = first_seen(watch, memc.addr, 'syncing', ev['back'])
    res['server'] = watch.server(memc.addr)
    time.sleep(args.after)
    ev['end'] = rel()
    res['ev'] = ev
    res['items_after'] = items(memc)
    res['log'] = sync_lines(apache, off)
    return res


def run(args):
    started = time.strftime('%Y-%m-%d %H:%M')
    with Runner() as R:
        memcs = [R.memcached(p, mem=args.mem) for p in MEMC_PORTS]
        addrs = [m.addr for m in memcs]
        body = 'MemsessServers %s' % ' '.join(addrs)
        apache = R.apache('rejoin', APACHE_PORT, body, workers=60,
                          start_servers=60).start()
        t0 = now()
        watch = StatusWatch(apache, every=0.02, t0=t0).start()
        if not watch.all_up(addrs, 15):
            raise RuntimeError('the servers did not come up: %s' % watch.current)
        written = populate(memcs, args.sessions, args.size)
        load = Load(APACHE_PORT, users=args.users, think=args.think,
                    timeout=15.0, t0=t0).start()
        time.sleep(args.warmup)
        healthy = (now() - t0, None)
        time.sleep(args.phase)
        healthy = (healthy[0], now() - t0)
        cycles = []
        for kind in args.cycles.split(','):
            cycles.append(cycle(R, apache, watch, load, t0, memcs[1], kind,
                                args))
        load.stop()
        watch.stop()
        records = load.snapshot()
        write_csv(os.path.join(WORK, 'rejoin.csv'), records)
    return report(args, started, written, records, healthy, cycles)


def row(name, s):
    return ('| %s | %d | %.0f/s | %s | %s | %s | %d | %d | %d | %d |' % (
        name, s['requests'], s['rps'], ms(s['p50']), ms(s['p99']),
        ms(s['max']), s['failed'], s['nosess'], s['lost'], s['stale']))


def report(args, started, written, records, healthy, cycles):
    out = ['# Rejoin sync of a server holding %d sessions' % args.sessions, '',
           'Run %s; `bench/rejoin.sh` (load average at the end: %s).'
           % (started, load_average()), machine_line(), '',
           '%d sessions of %d bytes written over three memcached with one '
           'replica each (%d written); Apache with nothing but '
           '`MemsessServers` (defaults: Replicas 1, successor, Rejoin sync); '
           '%d users with a counter in their session, %.0f ms think time.'
           % (args.sessions, args.size, written, args.users,
              args.think * 1000), '',
           '| cycle | held before | held after | down → back | syncing '
           '(first poll → up) | sync figures (status page) |',
           '|---|---|---|---|---|---|']
    for c in cycles:
        ev = c['ev']
        sync_t = (ev['up'] - ev['syncing']) if ev['syncing'] is not None \
            else float('nan')
        srv = c['server']
        figs = ', '.join('%s %s' % (k, v) for k, v in sorted(srv.items())
                         if k.startswith('sync'))
        out.append('| %s | %d | %d | %s | %s%s | %s |' % (
            c['kind'], c['items_before'], c['items_after'],
            ms(ev['back'] - ev['down']), ms(sync_t),
            ' (**did not end**)' if c.get('timed_out') else '',
            figs or '–'))
    out += ['', '| phase | requests | served | p50 | p99 | slowest | failed '
            '| no session | lost | stale |',
            '|---|---|---|---|---|---|---|---|---|---|',
            row('healthy', summarize(records, *healthy))]
    for c in cycles:
        ev = c['ev']
        out.append(row('%s: down' % c['kind'],
                       summarize(records, ev['down'], ev['back'])))
        if ev['syncing'] is not None:
            out.append(row('%s: syncing' % c['kind'],
                           summarize(records, ev['syncing'], ev['up'])))
        out.append(row('%s: after' % c['kind'],
                       summarize(records, ev['up'], ev['end'])))
    out += ['', 'The module\'s log lines about the syncs:', '', '```']
    for c in cycles:
        out += c['log'][-6:]
    out += ['```', '']
    text = '\n'.join(out)
    with open(os.path.join(RESULTS, 'rejoin.md'), 'w') as f:
        f.write(text)
    print(text)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--sessions', type=int, default=100000)
    ap.add_argument('--size', type=int, default=1024)
    ap.add_argument('--users', type=int, default=30)
    ap.add_argument('--think', type=float, default=0.1)
    ap.add_argument('--mem', type=int, default=512, help='MB per memcached')
    ap.add_argument('--cycles', default='freeze,kill')
    ap.add_argument('--warmup', type=float, default=3.0)
    ap.add_argument('--phase', type=float, default=10.0)
    ap.add_argument('--outage', type=float, default=5.0)
    ap.add_argument('--after', type=float, default=5.0)
    ap.add_argument('--sync-deadline', type=float, default=180.0)
    return run(ap.parse_args())


if __name__ == '__main__':
    sys.exit(main())
