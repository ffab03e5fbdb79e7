"""bench/persist.sh: the cost of MemsessPersist dbd (issue 23) with 100,000
sessions stored, and the time to restore them.

Two Apaches side by side in the same run, each with three memcached of its
own holding the same number of sessions of 1 KB (written as php-memcached
writes them): "off" without persistence, "dbd" with `MemsessPersist dbd` on
SQLite (mod_dbd, `MemsessPersistInterval 2s`, `MemsessPersistRate` the
default 5000 a second unless --rate says otherwise; 0: unbounded).  The check settings are the SPEC's.

Figures:
- the first write-behind of every session (nothing stored yet): its time
  and the CPU of the whole Apache (parent, children, the checker's thread,
  SQLite in-process) from the fill to `stored` = every session, per 1,000
  sessions;
- a round with nothing changed (the listing of 100,000 sessions and the
  comparison): the CPU over 20 s, per round;
- throughput, 30 users with a counter and no think time, the two Apaches in
  turn (phases of 10 s, alternated 3 times), the ratio dbd / off;
- restore: the dbd pool's three memcached killed at once and restarted
  empty; the time until all three are published again (or what is still
  not after --restore-wait seconds), MEMSESS0178's figures, the syncs that
  stopped meanwhile (MEMSESS0033), the rows written behind again after the
  restore, the sessions held afterwards.
"""

import os
import pwd
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (POOL_OPTIONS, write_report, IS_ROOT, WORK, Load, Runner, bench_parser,
                      bench_start, children_of, error_log_lines,
                      fill_sessions, log, now, poll_until, report_head,
                      spec_body, summarize, task_cpu, watch_up)

MEMC_OFF = (31801, 31802, 31803)
MEMC_DBD = (31804, 31805, 31806)
PORT_OFF, PORT_DBD = 31810, 31811
INTERVAL = 2


def apache_cpu(apache):
    """CPU seconds of an Apache: the parent and its children, their threads
    (children that exit in between are not counted: MaxConnectionsPerChild
    0 keeps them)."""
    total = 0.0
    for pid in [apache.pid] + children_of(apache.pid):
        try:
            total += task_cpu(pid)[0]
        except OSError:
            pass
    return total


def persist_of(apache):
    return apache.status()['pools'][0].get('persist', {})


def wait_persist(apache, cond, deadline):
    """Polls the status page until cond(persist) holds: the time it took,
    or None."""
    return poll_until(lambda: cond(persist_of(apache)), deadline)[1]


def main():
    args, started = bench_start(bench_parser(
        __doc__, **POOL_OPTIONS, phase=10.0, rounds=3, rate=5000,
        restore_wait=240.0))
    n = args.sessions

    dbdir = os.path.join(WORK, 'persist-db')
    os.makedirs(dbdir, exist_ok=True)
    for f in os.listdir(dbdir):
        os.unlink(os.path.join(dbdir, f))
    if IS_ROOT:   # the children run as nobody: they make the file
        os.chown(dbdir, pwd.getpwnam('nobody').pw_uid, -1)
    db = os.path.join(dbdir, 'sessions.db')

    with Runner() as R:
        m_off = [R.memcached(p, mem=512) for p in MEMC_OFF]
        m_dbd = [R.memcached(p, mem=512) for p in MEMC_DBD]
        off = R.apache('persist-off', PORT_OFF,
                       spec_body([m.addr for m in m_off]),
                       workers=40, start_servers=40).start()
        dbd = R.apache('persist-dbd', PORT_DBD, spec_body(
            [m.addr for m in m_dbd], 'DBDriver sqlite3', 'DBDParams "%s"' % db,
            'MemsessPersist dbd', 'MemsessPersistInterval %ds' % INTERVAL,
            'MemsessPersistRate %d' % args.rate),
            workers=40, start_servers=40, modules=('dbd',)).start()
        w_off = watch_up(off, [m.addr for m in m_off], None, 15, every=0.05)
        w_dbd = watch_up(dbd, [m.addr for m in m_dbd], None, 15, every=0.05)
        if wait_persist(dbd, lambda p: p.get('role') == 'writer', 30) is None:
            raise RuntimeError('the dbd Apache does not write: %s' % persist_of(dbd))

        # the first write-behind of every session
        fill_sessions([m.addr for m in m_off], n, args.size)
        # dbd's Apache CPU from before its fill (its rounds run meanwhile)
        # to every session stored: the write-behind's (and the checker's
        # background, a few ms a second); the fill itself is PHP's
        c0, t0 = apache_cpu(dbd), now()
        fill_sessions([m.addr for m in m_dbd], n, args.size)
        fill_s = now() - t0
        took = wait_persist(dbd, lambda p: p.get('stored', 0) >= n
                            and p.get('pending', 1) == 0, 600)
        if took is None:
            raise RuntimeError('not every session written behind: %s' % persist_of(dbd))
        first_s, first_cpu = now() - t0, apache_cpu(dbd) - c0
        log('first write-behind: %d sessions (filled in %.1f s) stored %.1f s '
            'after the fill began, %.2f s CPU' % (n, fill_s, first_s, first_cpu))

        # rounds with nothing changed
        time.sleep(INTERVAL)
        c0, t0 = apache_cpu(dbd), now()
        time.sleep(10 * INTERVAL)
        idle_cpu, idle_s = apache_cpu(dbd) - c0, now() - t0
        c0 = apache_cpu(off)
        time.sleep(2 * INTERVAL)
        # (off's own background over the same time, for comparison)
        off_cpu = (apache_cpu(off) - c0) * idle_s / (2 * INTERVAL)
        log('idle rounds: %.2f s CPU in %.1f s (off: %.2f s)' % (idle_cpu, idle_s, off_cpu))

        # throughput, in turn
        phases = []
        written0 = persist_of(dbd).get('written', 0)
        for r in range(args.rounds):
            for name, a in (('off', off), ('dbd', dbd)) if r % 2 == 0 else (('dbd', dbd), ('off', off)):
                load = Load(a.port, users=args.users, followups=0, think=0,
                            timeout=15.0).start()
                time.sleep(1)
                f = now() - load.t0   # the records' clock
                time.sleep(args.phase)
                t = now() - load.t0
                load.stop()
                s = summarize(load.snapshot(), f, t)
                s['name'] = name
                phases.append(s)
                log('%s: %.0f/s, p50 %.1f ms, p99 %.1f ms, lost %d, stale %d'
                    % (name, s['rps'], s['p50'] * 1000, s['p99'] * 1000,
                       s['lost'], s['stale']))
        written = persist_of(dbd).get('written', 0) - written0
        if wait_persist(dbd, lambda p: p.get('pending', 1) == 0
                        and p.get('lag', 99) <= INTERVAL + 1, 60) is None:
            raise RuntimeError('the writes do not catch up: %s' % persist_of(dbd))
        stored = persist_of(dbd).get('stored', 0)

        # restore: every memcached of the dbd pool killed, restarted empty
        mark = len(error_log_lines(dbd.errlog, ('MEMSESS0178',)))
        mark33 = len(error_log_lines(dbd.errlog, ('MEMSESS0033',)))
        written_before = persist_of(dbd).get('written', 0)
        for m in m_dbd:
            m.kill()
        for m in m_dbd:
            w_dbd.wait(m.addr, 'down', 15)
        t0 = now()
        for m in m_dbd:
            m.start()
        end = t0 + args.restore_wait
        for m in m_dbd:
            w_dbd.wait(m.addr, 'up', max(0.0, end - now()))
        up = sum(w_dbd.current.get(m.addr) == 'up' for m in m_dbd)
        restore_s = now() - t0
        time.sleep(3 * INTERVAL)
        rewritten = persist_of(dbd).get('written', 0) - written_before
        try:
            held = sum(m.items() for m in m_dbd)
        except OSError:
            held = -1   # a memcached that does not answer (reported as such)
        restored = error_log_lines(dbd.errlog, ('MEMSESS0178',))[mark:]
        stops = len(error_log_lines(dbd.errlog, ('MEMSESS0033',))[mark33:])
        log('restore: %d of 3 up after %.1f s, %d items held, %d syncs stopped; %s'
            % (up, restore_s, held, stops, restored))
        w_off.stop()
        w_dbd.stop()
        p = persist_of(dbd)
        R.stop(off)
        R.stop(dbd)

    def ratio(key):
        a = [s[key] for s in phases if s['name'] == 'dbd']
        b = [s[key] for s in phases if s['name'] == 'off']
        return sum(a) / len(a), sum(b) / len(b)

    rps_dbd, rps_off = ratio('rps')
    p99_dbd, p99_off = ratio('p99')
    p50_dbd, p50_off = ratio('p50')
    lost = sum(s['lost'] + s['stale'] for s in phases)
    ms_in = [int(x) for l in restored for x in re.findall(r'in (\d+)ms', l)]
    lines = report_head('Persistence: its cost and its restore, %d sessions (bench/persist.sh)' % n,
                        'persist.sh', started) + [
        'Two Apaches (prefork, 40 workers) side by side, three memcached each, '
        'each pool filled with %d sessions of %d bytes as php-memcached writes '
        'them; "dbd" has `MemsessPersist dbd` on SQLite (mod_dbd, '
        '`MemsessPersistInterval %ds`, `MemsessPersistRate %d`), "off" has none. '
        'CPU: the whole Apache (parent, children and their threads; SQLite runs '
        'in the checker\'s thread), from /proc/PID/task/*/schedstat.'
        % (n, args.size, INTERVAL, args.rate),
        '',
        '| what | figure |',
        '|---|---|',
        '| first write-behind of %d sessions (nothing stored yet): every one stored, from the fill\'s start (the fill took %.1f s) | %.1f s, %.2f s Apache CPU |' % (n, fill_s, first_s, first_cpu),
        '| per 1,000 sessions written behind | %.0f ms, %.1f ms Apache CPU |' % (first_s * 1000000 / n, first_cpu * 1000000 / n),
        '| rounds with nothing changed, %d sessions stored | %.2f s CPU in %.1f s: %.0f ms CPU a round of %d s (off: %.0f ms of background in the same time) |' % (
            n, idle_cpu, idle_s, idle_cpu * 1000 * INTERVAL / idle_s, INTERVAL, off_cpu * 1000 * INTERVAL / idle_s),
        '| throughput, %d users, no think time: dbd / off | %.0f/s / %.0f/s = %.2f |' % (args.users, rps_dbd, rps_off, rps_dbd / max(rps_off, 1e-9)),
        '| p50, p99: dbd / off | %.1f, %.1f ms / %.1f, %.1f ms |' % (p50_dbd * 1000, p99_dbd * 1000, p50_off * 1000, p99_off * 1000),
        '| sessions changed while measured, written behind | %d rows (%d stored afterwards) |' % (written, stored),
        '| lost + stale in the throughput phases | %d |' % lost,
        '| restore: every memcached restarted empty, to all three published | %s |' % (
            '%.1f s' % restore_s if up == 3 else 'not converged: %d of 3 published after %.0f s' % (up, restore_s)),
        '| rejoin syncs stopped meanwhile (MEMSESS0033) | %d |' % stops,
        '| rows written behind again after the restore (restored sessions have a new cas) | %d |' % rewritten,
        '| restore: MEMSESS0178 (per server restored) | %s |' % ('; '.join('%d ms' % x for x in ms_in) or 'none'),
        '| items held afterwards (sessions and the module\'s records) / sessions stored before | %d / %d |' % (held, stored),
        '| restores on the status page | %s, %s sessions |' % (p.get('restores'), p.get('restored')),
        '',
        'The phases, in turn:',
        '',
        '| Apache | requests/s | p50 | p99 | lost + stale |',
        '|---|---|---|---|---|',
    ] + ['| %s | %.0f | %.1f ms | %.1f ms | %d |' % (s['name'], s['rps'], s['p50'] * 1000, s['p99'] * 1000,
                                                   s['lost'] + s['stale']) for s in phases] + [
        '',
    ]
    write_report('persist', lines, restored, title='The NOTICEs of the restore:')


if __name__ == '__main__':
    main()
