"""bench/scale.sh: a pool of a million sessions through Apache, side by side
in one run: the rejoin sync of a server restarted empty, the same with a
graceful in the middle of it, the pool grown from 3 to 4 servers, and the
limit (the same keys listed and copied raw).

Three memcached in the pool (a fourth for the grow and the raw copy), 1,000,000
sessions of 1 KB written where php-memcached puts them (replicas 1,
successor); server 1 also holds 10,000,000 small keys of another
application (its listings carry them).  Apache with only MemsessServers
written and the SPEC check settings, prefork at Apache's own defaults (5
children started, 5 to 10 spare: idle children are reaped as the load
moves), MemsessSyncRate at its default; 30 users with a counter in their
session throughout.

  A. server 3 killed, restarted empty: its rejoin sync;
  B. the same, with `apache2 -k graceful` once its first pass has listed
     half of what it expects (a graceful stops the checker process: the
     sync is cut and starts over in the new one);
  C. server 4 added to MemsessServers, graceful: the rebalance.
The limit: after A, the session keys server 3 holds listed and copied raw
to the empty server 4 (t/unit/test_sync.bin --copy).

Figures: each phase's time, the requests served meanwhile against the
healthy phase, the checker process's memory (VmHWM against its VmRSS at the
phase's start), sessions lost or stale (the users' and every one of the
million, read where PHP reads it after B and after C).
"""

import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (HOST, POOL_OPTIONS, Runner, bench_parser, bench_start,
                      checker_process_pid, error_log_lines, figures_head,
                      fill_sessions, healthy_load, log, log_filled,
                      loss_cell, now, poll_until, proc_status, published,
                      rate_cell, spec_body, summarize, watch_up,
                      write_report)

MEMC_PORTS = (31081, 31082, 31083, 31084)
APACHE_PORT = 31090
POPULATE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        'populate.php')


def fill_noise(port, n):
    """n small keys of another application on one server, pipelined
    without replies, then one command answered: all landed."""
    with socket.create_connection((HOST, port), timeout=60) as s:
        step = 100000
        for i in range(0, n, step):
            s.sendall(b''.join(b'set app:%010d 0 0 10 noreply\r\n0123456789\r\n' % k
                               for k in range(i, min(i + step, n))))
        s.sendall(b'version\r\n')
        buf = b''
        while not buf.endswith(b'\r\n'):
            buf += s.recv(100)


def mem_kb(pid, field):
    """A /proc/PID/status field in kB (VmRSS, VmHWM), or None."""
    v = proc_status(pid, field) if pid else None
    return int(v.split()[0]) if v else None


def server_of(apache, addr):
    try:
        for s in apache.status(timeout=2.0).get('servers', []):
            if s['address'] == addr:
                return s
    except Exception:
        pass
    return {}


def audit(addrs, sessions, size):
    r = subprocess.run(['php', POPULATE, ','.join(addrs), str(sessions),
                        str(size), '0', '0', 'audit'],
                       capture_output=True, text=True)
    f = r.stdout.split()
    if len(f) != 2:
        raise RuntimeError('audit: %s %s' % (r.stdout, r.stderr))
    return int(f[0]), int(f[1])


def graceful(apache):
    r = subprocess.run(['apache2', '-f', apache.conf, '-k', 'graceful'],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError('graceful: %s%s' % (r.stdout, r.stderr))


def main():
    opts = dict(POOL_OPTIONS, sessions=1000000)
    ap = bench_parser(__doc__, **opts)
    ap.add_argument('--noise', type=int, default=10000000,
                    help='keys of another application on server 1')
    args, _ = bench_start(ap)
    copy_bin = os.environ['MEMSESS_SYNC_BIN']
    per = args.sessions * 2 * (args.size + 200) // 3 // 1048576
    mems = [per + args.noise * 120 // 1048576 + 256, per + 256, per + 256,
            per * 2 + 256]

    with Runner() as R:
        memcs = [R.memcached(p, mem=m) for p, m in zip(MEMC_PORTS, mems)]
        addrs = [m.addr for m in memcs]
        apache = R.apache('scale', APACHE_PORT, spec_body(addrs[:3]),
                          mpm_defaults=True).start()
        t0 = now()
        watch = watch_up(apache, addrs[:3], t0, 15, every=0.1)

        tf = now()
        fill_sessions(addrs[:3], args.sessions, args.size)
        log_filled('filled', args.sessions, args.size, tf, memcs)
        tf = now()
        fill_noise(MEMC_PORTS[0], args.noise)
        log('%d other keys on server 1 in %.1f s' % (args.noise, now() - tf))

        load, ev = healthy_load(APACHE_PORT, args.users, t0)
        victim = memcs[2]
        fig = {}

        # --- A: the rejoin sync of server 3 restarted empty ----------------
        pid = checker_process_pid(apache)
        rss0 = mem_kb(pid, 'VmRSS')
        marks = len(error_log_lines(apache.errlog, ('MEMSESS0031',)))
        after_mark = len(error_log_lines(apache.errlog, ('MEMSESS0035',)))
        victim.kill()
        watch.reached(victim.addr, 'down', 15)
        time.sleep(2)
        ev['a_restart'] = now() - t0
        victim.start()
        ev['a_syncing'] = watch.wait(victim.addr, 'syncing', 30) or ev['a_restart']
        ev['a_up'] = watch.reached(victim.addr, 'up', 600)
        fig['a_hwm'] = mem_kb(pid, 'VmHWM')
        fig['a_rss0'] = rss0
        fig['a_pid_same'] = checker_process_pid(apache) == pid
        done = error_log_lines(apache.errlog, ('MEMSESS0031',))[marks:]
        fig['a_line'] = done[0] if done else ''
        # its passes after the flip (MEMSESS0035), before anything else
        poll_until(lambda: error_log_lines(apache.errlog, ('MEMSESS0035',))
                   [after_mark:], 300, 0.2)
        ev['a_after'] = now() - t0
        time.sleep(2)

        # the limit: what server 3 now holds, listed and copied raw to the
        # empty server 4
        r = subprocess.run([copy_bin, '--copy', HOST, str(MEMC_PORTS[2]),
                            str(MEMC_PORTS[3])], capture_output=True, text=True)
        m = re.search(r'copy: (\d+) keys in (\d+) ms', r.stdout)
        fig['raw'] = (int(m.group(1)), int(m.group(2))) if m else None
        memcs[3].flush()
        time.sleep(2)

        # --- B: the same, a graceful once half of it is listed ---------------
        marks = {t: len(error_log_lines(apache.errlog, (t,)))
                 for t in ('MEMSESS0030', 'MEMSESS0031', 'MEMSESS0032',
                           'MEMSESS0033')}
        victim.kill()
        watch.reached(victim.addr, 'down', 15)
        time.sleep(2)
        ev['b_restart'] = now() - t0
        victim.start()
        watch.wait(victim.addr, 'syncing', 30)

        def half():
            s = server_of(apache, victim.addr)
            return (s.get('state') == 'syncing' and s.get('sync_expected')
                    and s.get('sync_listed', 0) >= s['sync_expected'] / 2)
        poll_until(half, 300, 0.1)
        ev['b_graceful'] = now() - t0
        fig['b_at'] = server_of(apache, victim.addr)
        graceful(apache)
        ev['b_up'] = watch.reached(victim.addr, 'up', 600)
        fig['b_counts'] = {t: len(error_log_lines(apache.errlog, (t,))) - marks[t]
                           for t in marks}
        time.sleep(3)
        fig['audit_b'] = audit(addrs[:3], args.sessions, args.size)

        # --- C: grown from 3 to 4 servers ----------------------------------
        pid = checker_process_pid(apache)
        fig['c_rss0'] = mem_kb(pid, 'VmRSS')
        with open(apache.conf) as f:
            conf = f.read()
        with open(apache.conf, 'w') as f:
            f.write(conf.replace('MemsessServers %s' % ' '.join(addrs[:3]),
                                 'MemsessServers %s' % ' '.join(addrs)))
        marks = {t: len(error_log_lines(apache.errlog, (t,)))
                 for t in ('MEMSESS0136', 'MEMSESS0137')}
        ev['c_graceful'] = now() - t0
        graceful(apache)

        def grown():
            text, rb = published(apache)
            return text == ','.join(addrs) and rb.get('state') == 'none'
        poll_until(grown, 900, 0.2)
        ev['c_published'] = now() - t0
        pid = checker_process_pid(apache)
        fig['c_hwm'] = mem_kb(pid, 'VmHWM')
        poll_until(lambda: error_log_lines(apache.errlog, ('MEMSESS0137',))
                   [marks['MEMSESS0137']:], 300, 0.2)
        ev['c_cleaned'] = now() - t0
        time.sleep(3)
        ev['end'] = now() - t0
        load.stop()
        watch.stop()
        fig['audit_c'] = audit(addrs, args.sessions, args.size)
        fig['c_line'] = (error_log_lines(apache.errlog, ('MEMSESS0136',))
                         [marks['MEMSESS0136']:] or [''])[0]
        log_lines = error_log_lines(apache.errlog, (
            'MEMSESS0030', 'MEMSESS0031', 'MEMSESS0032', 'MEMSESS0033',
            'MEMSESS0035', 'MEMSESS0135', 'MEMSESS0136', 'MEMSESS0137',
            'MEMSESS0190', 'MEMSESS0194'))
        R.stop(apache)

    recs = load.snapshot()
    marks_at = ('a_restart', 'a_up', 'b_restart', 'b_graceful', 'b_up',
                'c_graceful', 'c_published')
    healthy = summarize(recs, ev['healthy'], ev['a_restart'])
    during_a = summarize(recs, ev['a_syncing'], ev['a_up'])
    during_b = summarize(recs, ev['b_restart'], ev['b_up'])
    during_c = summarize(recs, ev['c_graceful'], ev['c_published'])
    cycle = summarize(recs, ev['healthy'], ev['end'])
    took = re.search(r'after (\d+)ms: (\d+) keys examined, (\d+) copied',
                     fig['a_line'])
    sync_ms = int(took.group(1)) if took else None
    grow = re.search(r'after (\d+)ms', fig['c_line'])
    raw = fig['raw']

    def kb(v):
        return '%d MB' % (v // 1024) if v is not None else 'n/a'

    def share(s):
        return '%.0f%%' % (100.0 * s['rps'] / healthy['rps']) if healthy['rps'] else 'n/a'

    lines = figures_head(
        'A million sessions through Apache (bench/scale.sh)',
        'Three memcached, only `MemsessServers` written (replicas 1, successor, '
        '`MemsessRejoin sync`, `MemsessSyncRate` at its default 50,000 keys a '
        'second), interval 1s, timeout 250ms, prefork at Apache\'s defaults '
        '(idle children reaped); %d sessions of %d bytes written where '
        'php-memcached puts them, %d other keys on server 1, %d users with a '
        'counter throughout.' % (args.sessions, args.size, args.noise, args.users)) + [
        '| A. rejoin of server 3 restarted empty (MEMSESS0030 to the flip) | %s |' % (
            '%.1f s: %s keys examined, %s copied' % (
                sync_ms / 1000.0, took.group(2), took.group(3)) if took else 'n/a'),
        '| the limit: what server 3 then held, listed and copied raw | %s |' % (
            '%.1f s for %d keys' % (raw[1] / 1000.0, raw[0]) if raw else 'n/a'),
        '| the sync against the limit | %s |' % (
            '%.1fx' % (sync_ms / float(raw[1])) if raw and sync_ms else 'n/a'),
        '| A: the flip to the end of its passes after it (MEMSESS0035) | %.1f s |' % (
            ev['a_after'] - ev['a_up']),
        '| requests served during A (to the flip) | %s (%s of healthy) |' % (
            rate_cell(during_a), share(during_a)),
        '| healthy, for comparison | %s |' % rate_cell(healthy, count=False),
        '| the checker process during A: RSS at its start, peak | %s, %s (the same process throughout: %s) |' % (
            kb(fig['a_rss0']), kb(fig['a_hwm']), 'yes' if fig['a_pid_same'] else 'no'),
        '| B. the same with a graceful at %s of %s keys listed: restart to up | %.1f s |' % (
            fig['b_at'].get('sync_listed', '?'), fig['b_at'].get('sync_expected', '?'),
            ev['b_up'] - ev['b_restart']),
        '| B: syncs started, stopped or cut short, finished | %d, %d, %d |' % (
            fig['b_counts']['MEMSESS0030'], fig['b_counts']['MEMSESS0032']
            + fig['b_counts']['MEMSESS0033'], fig['b_counts']['MEMSESS0031']),
        '| requests served during B | %s (%s of healthy) |' % (
            rate_cell(during_b), share(during_b)),
        '| every session read where PHP reads it after B: missing, differing | %d, %d |' % fig['audit_b'],
        '| C. grown 3 to 4: graceful to the new list published | %.1f s (the rebalance itself %s) |' % (
            ev['c_published'] - ev['c_graceful'],
            '%.1f s' % (int(grow.group(1)) / 1000.0) if grow else 'n/a'),
        '| C: the flip to the end of its last after pass | %.1f s |' % (
            ev['c_cleaned'] - ev['c_published']),
        '| requests served during C | %s (%s of healthy) |' % (
            rate_cell(during_c), share(during_c)),
        '| the checker process during C: RSS at its start, peak | %s, %s |' % (
            kb(fig['c_rss0']), kb(fig['c_hwm'])),
        '| every session read where PHP reads it after C: missing, differing | %d, %d |' % fig['audit_c'],
        '| the users\' sessions lost / stale through it all | %s |' % loss_cell(cycle),
        '| ... during A, B, C (each from its fault or graceful to its flip) | %s; %s; %s |' % (
            loss_cell(during_a), loss_cell(during_b), loss_cell(during_c)),
        '',
        'Stale or lost answers, seconds from the nearest event (user, counter): %s' % (
            ', '.join('%+.3f from %s (%d, %s)' % (
                r.t - ev[k], k, r.uid, r.n) for r, k in (
                    (r, min(marks_at, key=lambda k: abs(r.t - ev[k])))
                    for r in recs if r.outcome in ('stale', 'lost')
                    and ev['healthy'] <= r.t < ev['end'])) or 'none'),
        '',
    ]
    write_report('scale', lines, log_lines, width=400)


if __name__ == '__main__':
    main()
