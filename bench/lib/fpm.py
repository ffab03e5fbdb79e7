"""bench/fpm.sh: a memcached server that hangs, seen by mod_php and by
php-fpm users, with and without mod_memsess's release helper (issue 25);
and what a release costs the helper when the machine holds 100,000 TCP
sockets in TIME_WAIT.

Part 1, one Apache each, one after the other, on the same three memcached
(flushed between setups), compare.sh's login workload:
  modphp        prefork + mod_php, MemsessServers a b c (the defaults)
  fpm           event + mod_proxy_fcgi -> a php-fpm pool (pm static, 40
                workers, as www-data), Apache started as root (User nobody):
                the release helper runs (MemsessReleaseHelper On, default)
  fpm-nohelper  the same with MemsessReleaseHelper Off
Phases: healthy, hung (server 2 SIGSTOPped), recovered (SIGCONT).

Part 2: one Apache (event, the helper on, no load).  Cycles: server 2
frozen, a few connections with a request out opened to it (they block as a
php-memcached read would), its verdict, the helper's release window (6 s),
then thawed; first with the machine as it is, then with ~100,000 sockets
in TIME_WAIT (lib/timewait.c).  Per cycle: verdict (MEMSESS0010) to the
release (MEMSESS0053), verdict to the blocked reads' error, and the
helper's CPU per request it served (/proc/PID/schedstat; one voluntary
context switch per request).
"""

import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (HOST, WORK, Load, Runner, bench_parser, bench_start,
                      log, log_stamped, ms, now, phase_cells,
                      release_helper_pid,
                      report_start, run_phases, save_report, sockstat,
                      still_out, summarize, watch_up,
                      task_cpu, write_csv, fresh_memcached)

MEMC_PORTS = (31701, 31702, 31703)
BASE_PORT = 31710
FPM_PORT = 31720
TW_PORT = 31790          # the TIME_WAIT generator's listener
GUARD = 0.1              # a request that starts this close before the
                         # freeze meets it: counted in the hung phase
SLOW = 1.0
TARGET_MAX, TARGET_TPUT = 1.0, 0.80


def setups(addrs, fpm_port):
    pool = 'MemsessServers %s\n' % ' '.join(addrs)
    return [
        ('modphp', 'mod_php (prefork), the defaults', 'prefork', False, pool),
        ('fpm', 'php-fpm (event + proxy_fcgi), release helper', 'event',
         True, pool),
        ('fpm-nohelper', 'php-fpm (event + proxy_fcgi), '
         '`MemsessReleaseHelper Off`', 'event', True,
         pool + 'MemsessReleaseHelper Off\n'),
    ]


def reset(memcs):
    fresh_memcached(memcs)


def start_apache(R, name, port, mpm, fpm, body):
    if fpm:
        return R.apache(name, port, body + fpm.handler(), php=False,
                        mpm='event', workers=128,
                        modules=('proxy', 'proxy_fcgi')).start()
    return R.apache(name, port, body, mpm=mpm, workers=120,
                    start_servers=120).start()


def run_setup(R, memcs, idx, key, title, mpm, use_fpm, body, args):
    port = BASE_PORT + idx
    victim = memcs[1]
    reset(memcs)
    fpm = R.fpm('fpm-pool-' + key, FPM_PORT, children=args.children) \
        if use_fpm else None
    apache = start_apache(R, 'fpm-' + key, port, mpm, fpm, body)
    helper = release_helper_pid(apache)
    t0 = now()
    watch = watch_up(apache, [m.addr for m in memcs], t0, 10, key)
    load = Load(port, users=args.users, followups=3, think=args.think,
                timeout=args.timeout, t0=t0).start()
    time.sleep(args.warmup)
    wall = {}

    def freeze():
        wall['freeze'] = time.time()
        victim.freeze()
    ev = run_phases(t0, [('healthy', None, args.healthy),
                         ('hung', freeze, args.hung),
                         ('recovered', victim.thaw, args.recovered)])
    wall_freeze = wall['freeze']
    left = load.stop(drain=args.timeout + 1)
    det = watch.first_after(victim.addr, 'down', ev['hung'])
    watch.stop()
    R.stop(apache)
    if fpm:
        R.stop(fpm)
    verdicts = [t for t, l in log_stamped(apache.errlog, ['MEMSESS0010'],
                                          wall_freeze) if victim.addr in l]
    releases = [(t, l) for t, l in log_stamped(apache.errlog, ['MEMSESS0053'],
                                               wall_freeze)
                if victim.addr in l]
    child_rel = log_stamped(apache.errlog, ['MEMSESS0050'], wall_freeze)
    records = load.snapshot()
    write_csv(os.path.join(WORK, 'fpm-%s.csv' % key), records)
    return {'key': key, 'title': title, 'ev': ev, 'det': det,
            'records': records, 'left': left, 'helper': helper,
            'verdict': verdicts[0] if verdicts else None,
            'releases': releases, 'child_releases': len(child_rel)}


# ---------------------------------------------------------------------------
# Part 2: the cost of a release

def blocked_reads(addr_port, n):
    """n connections to a frozen memcached, each with a `get` out, each
    read waiting in a thread: [[socket, time.time() of the error]]."""
    out = []

    def wait(slot):
        try:
            slot[0].recv(4096)
        except OSError:
            pass
        slot[1] = time.time()

    for _ in range(n):
        s = socket.create_connection(addr_port, timeout=30)
        s.sendall(b'get memsess-bench-fpm\r\n')
        slot = [s, None]
        threading.Thread(target=wait, args=(slot,), daemon=True).start()
        out.append(slot)
    return out


def cost_cycle(apache, watch, victim, helper, t0, args):
    for k in range(50):
        if watch.current.get(victim.addr) == 'up':
            break
        time.sleep(0.1)
    tw = sockstat().get('tw', 0)
    wall0 = time.time()
    cpu0 = task_cpu(helper)
    t_f = now() - t0
    victim.freeze()
    reads = blocked_reads((HOST, victim.port), args.blocked)
    t_down = watch.wait(victim.addr, 'down', 10)
    # the checker asks the helper again every round for 6 s (WINDOW)
    time.sleep(args.window)
    cpu1 = task_cpu(helper)
    victim.thaw()
    watch.all_up([victim.addr], 10)
    verdict = [t for t, l in log_stamped(apache.errlog, ['MEMSESS0010'], wall0)
               if victim.addr in l]
    rel = [(t, l) for t, l in log_stamped(apache.errlog, ['MEMSESS0053'], wall0)
           if victim.addr in l]
    errs = [r[1] for r in reads]
    for r in reads:
        r[0].close()
    v = verdict[0] if verdict else None
    n_rel = 0
    if rel:
        try:
            n_rel = int(rel[0][1].split('released ', 1)[1].split()[0])
        except (IndexError, ValueError):
            pass
    return {
        'tw': tw,
        'detected': (t_down - t_f) if t_down is not None else None,
        'to_release': (rel[0][0] - v) if (v and rel) else None,
        'released': n_rel,
        'reads_back': sum(e is not None for e in errs),
        'reads_last': (max(e for e in errs if e) - v)
                      if (v and any(errs)) else None,
        'cpu': cpu1[0] - cpu0[0],
        'requests': cpu1[1] - cpu0[1],
        'invol': cpu1[2] - cpu0[2],
    }


def run_cost(R, memcs, args):
    reset(memcs)
    victim = memcs[1]
    body = 'MemsessServers %s\n' % ' '.join(m.addr for m in memcs)
    apache = R.apache('fpm-cost', BASE_PORT + 5, body, php=False, mpm='event',
                      workers=64).start()
    helper = release_helper_pid(apache)
    if not helper:
        raise RuntimeError('no release helper (not root?)')
    t0 = now()
    watch = watch_up(apache, [m.addr for m in memcs], t0, 10, 'cost')
    out = {'helper': helper, 'none': [], 'tw': [], 'made': None}
    for c in range(args.cycles):
        log('cost: cycle %d, no TIME_WAIT added' % (c + 1))
        out['none'].append(cost_cycle(apache, watch, victim, helper, t0, args))
    log('cost: making %d sockets in TIME_WAIT' % args.timewait)
    r = subprocess.run([args.tw_bin, str(TW_PORT), str(args.timewait)],
                       capture_output=True, text=True, timeout=120)
    out['made'] = r.stdout.strip()
    out['tw_after_gen'] = sockstat().get('tw', 0)
    for c in range(args.cycles):
        log('cost: cycle %d, %d in TIME_WAIT' % (c + 1, sockstat().get('tw', 0)))
        out['tw'].append(cost_cycle(apache, watch, victim, helper, t0, args))
    watch.stop()
    R.stop(apache)
    return out


# ---------------------------------------------------------------------------
# Report

PHASES = [('healthy', 'hung'), ('hung', 'recovered'), ('recovered', 'end')]
LABEL = {'healthy': 'healthy', 'hung': 'one hung (SIGSTOP)',
         'recovered': 'resumed (SIGCONT)'}


def phase(res, a, b):
    ev = res['ev']
    lo = ev[a] - (GUARD if a == 'hung' else 0)
    hi = ev[b] - (GUARD if b == 'hung' else 0)
    return summarize(res['records'], lo, hi)


def med(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return float('nan')
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1]
                                                 + xs[len(xs) // 2]) / 2


def report(results, cost, args, started, cmd):
    out, w = report_start('mod_php and php-fpm when a memcached server hangs; '
                          'the release helper\'s cost', 'fpm.sh', started)
    w('Command: `%s`.' % cmd)
    w('')
    if results:
        w('## A hung server: mod_php, php-fpm with and without the release '
          'helper')
        w('')
        w('Workload (compare.sh\'s): %d users, each in a loop: log in, three '
          'follow-ups that increment a counter in the session, log out; '
          '%.0f ms think time (0.5-1.5x), client timeout %.0f s, keep-alive. '
          'Three local memcached; server 2 frozen (SIGSTOP) for %.0f s, then '
          'resumed.  Phases: healthy %.0f s, hung %.0f s, resumed %.0f s; a '
          'request counts in the phase it started in (those that started '
          '< %.0f ms before the freeze in the hung phase).  Only '
          '`MemsessServers a b c` is written (the defaults: interval 200ms, '
          'timeout 100ms, thresholds 2, no replica).  **modphp**: Apache '
          'prefork + mod_php, 120 workers up front.  **fpm**: Apache event '
          '(2 × 64 threads) + mod_proxy_fcgi (`SetHandler "proxy:fcgi://..."`) '
          '→ php-fpm (Debian\'s php-fpm8.2, its php.ini; `pm = static`, %d '
          'workers, as www-data); Apache started as root with `User nobody`, '
          'so the release helper runs.  **fpm-nohelper**: the same with '
          '`MemsessReleaseHelper Off` (each Apache child releases only its '
          'own sockets, and php-fpm\'s are not Apache\'s).'
          % (args.users, args.think * 1000, args.timeout, args.hung,
             args.healthy, args.hung, args.recovered, GUARD * 1000,
             args.children))
        w('')
        w('| setup | slowest request (hung) | p99 (hung) | throughput hung '
          '÷ healthy | no session + failed (hung) | detected | verdict → '
          'MEMSESS0053 | sockets released | target (max ≤ %.0f s, ≥ %.0f %%) |'
          % (TARGET_MAX, TARGET_TPUT * 100))
        w('|---|---|---|---|---|---|---|---|---|')
        for res in results:
            h = phase(res, 'healthy', 'hung')
            g = phase(res, 'hung', 'recovered')
            ratio = g['rps'] / h['rps'] if h['rps'] else float('nan')
            det = ('%.2f s' % (res['det'] - res['ev']['hung'])
                   if res['det'] is not None else 'never')
            if res['verdict'] and res['releases']:
                vr = '%.1f ms' % ((res['releases'][0][0] - res['verdict'])
                                  * 1000)
            else:
                vr = '–'
            nrel = 0
            for _, l in res['releases']:
                try:
                    nrel += int(l.split('released ', 1)[1].split()[0])
                except (IndexError, ValueError):
                    pass
            ok = g['max'] <= TARGET_MAX and ratio >= TARGET_TPUT
            target = 'met' if ok else 'missed'
            if res['key'] == 'fpm':
                target = '**%s**' % target
            w('| %s | %s | %s | %.0f %% (%.0f / %.0f req/s) | %d + %d | %s | '
              '%s | %s | %s |'
              % (res['key'], ms(g['max']), ms(g['p99']), ratio * 100,
                 g['rps'], h['rps'], g['nosess'], g['failed'], det, vr,
                 ('%d (%d lines)' % (nrel, len(res['releases'])))
                 if res['releases'] else
                 ('– (children: %d MEMSESS0050)' % res['child_releases']),
                 target))
        w('')
        w('*detected*: from the SIGSTOP to the first poll (every 20 ms) of '
          'the status page showing the server down.  *verdict → MEMSESS0053*: '
          'from the checker\'s `MEMSESS0010` (down) to the helper\'s first '
          '`MEMSESS0053` in the error log (microsecond timestamps).  '
          '*sockets released*: the sum of the helper\'s MEMSESS0053 lines for '
          'server 2 (the checker asks again every round for 6 s; a request '
          'with nothing to release logs nothing).')
        w('')
        w('Per phase:')
        w('')
        w('| setup | phase | requests | req/s | p50 | p99 | max | failed | '
          'no session | lost | stale | > 1 s |')
        w('|---|---|---|---|---|---|---|---|---|---|---|---|')
        for res in results:
            for a, b in PHASES:
                s = phase(res, a, b)
                ev = res['ev']
                lo = ev[a] - (GUARD if a == 'hung' else 0)
                hi = ev[b] - (GUARD if b == 'hung' else 0)
                slow = sum(1 for r in res['records']
                           if lo <= r.t < hi and r.lat > SLOW)
                w('| %s | %s | %s | %d |' % (res['key'], LABEL[a],
                                             phase_cells(s), slow))
        w('')
        out += still_out(results, 'key')
        w('Per-request data: `bench/work/fpm-<setup>.csv`.')
        w('')
    if cost:
        w('## The release\'s cost with 100,000 sockets in TIME_WAIT')
        w('')
        w('One Apache (event, `MemsessServers a b c`, the helper on, pid %d), '
          'no load.  Each cycle: server 2 frozen; %d connections opened to '
          'it, each with a `get` sent and a read waiting (what a '
          'php-memcached read caught on it does); the verdict; %.1f s (the '
          'checker asks the helper to release every round for 6 s while the '
          'server is out); thawed, until up.  %d cycles with the machine as '
          'it is, then %d after `lib/timewait.c` made %s sockets in '
          'TIME_WAIT on loopback (made/seconds: %s; `/proc/net/sockstat` tw '
          'right after: %d), all from 127.77.x.x to 127.0.0.1:%d, none to a '
          'memcached.  *helper CPU / request*: the helper\'s CPU time over '
          'the cycle (`/proc/PID/schedstat`, ns) ÷ the requests it served '
          '(its voluntary context switches: it sleeps in `recvmsg()` '
          'between requests).'
          % (cost['helper'], args.blocked, args.window, args.cycles,
             args.cycles, '{:,}'.format(args.timewait), cost['made'],
             cost['tw_after_gen'], TW_PORT))
        w('')
        w('| TIME_WAIT | cycle | tw sockets | detected | verdict → '
          'MEMSESS0053 | sockets released | verdict → last blocked read '
          'back | requests | helper CPU | helper CPU / request |')
        w('|---|---|---|---|---|---|---|---|---|---|')
        for cond in ('none', 'tw'):
            for i, c in enumerate(cost[cond]):
                w('| %s | %d | %d | %s | %s | %d | %s (%d of %d) | %d | %.2f ms '
                  '| %s |' % (
                      'added' if cond == 'tw' else 'as is', i + 1, c['tw'],
                      ms(c['detected']) if c['detected'] is not None else '–',
                      ('%.2f ms' % (c['to_release'] * 1000))
                      if c['to_release'] is not None else '–',
                      c['released'],
                      ('%.2f ms' % (c['reads_last'] * 1000))
                      if c['reads_last'] is not None else '–',
                      c['reads_back'], args.blocked, c['requests'],
                      c['cpu'] * 1000,
                      ('%.0f µs' % (c['cpu'] / c['requests'] * 1e6))
                      if c['requests'] else '–'))
        w('')

        def agg(cond):
            cs = cost[cond]
            per = [c['cpu'] / c['requests'] for c in cs if c['requests']]
            return (med([c['to_release'] for c in cs]), med(per),
                    med([c['reads_last'] for c in cs]),
                    med([c['tw'] for c in cs]))
        a0, a1 = agg('none'), agg('tw')
        w('Medians: verdict → MEMSESS0053 %.2f ms (as is, %d tw) vs %.2f ms '
          '(%d tw): ×%.2f; helper CPU per request %.0f µs vs %.0f µs: ×%.2f; '
          'verdict → last blocked read back %.2f ms vs %.2f ms: ×%.2f.'
          % (a0[0] * 1000, a0[3], a1[0] * 1000, a1[3], a1[0] / a0[0],
             a0[1] * 1e6, a1[1] * 1e6, a1[1] / a0[1], a0[2] * 1000,
             a1[2] * 1000, a1[2] / a0[2]))
        w('')
    return '\n'.join(out)


def main():
    ap = bench_parser(__doc__, users=30, think=0.1, timeout=15.0)
    ap.add_argument('--children', type=int, default=40,
                    help='php-fpm workers (pm static)')
    for name, default in (('warmup', 2.0), ('healthy', 8.0), ('hung', 8.0),
                          ('recovered', 6.0)):
        ap.add_argument('--' + name, type=float, default=default)
    ap.add_argument('--only', default='',
                    help='comma-separated setups (modphp,fpm,fpm-nohelper)')
    ap.add_argument('--parts', default='hung,cost')
    ap.add_argument('--cycles', type=int, default=4)
    ap.add_argument('--blocked', type=int, default=4,
                    help='blocked reads per cost cycle')
    ap.add_argument('--window', type=float, default=6.6)
    ap.add_argument('--timewait', type=int, default=100000)
    ap.add_argument('--tw-bin', default=os.path.join(WORK, 'timewait'))
    ap.add_argument('--out', default='fpm')
    args, started = bench_start(ap)
    cmd = 'bench/fpm.sh' + (' ' + ' '.join(sys.argv[1:]) if sys.argv[1:]
                            else '')
    parts = args.parts.split(',')
    results, cost = [], None
    with Runner() as R:
        memcs = [R.memcached(p) for p in MEMC_PORTS]
        if 'hung' in parts:
            for idx, (key, title, mpm, use_fpm, body) in enumerate(
                    setups([m.addr for m in memcs], FPM_PORT)):
                if args.only and key not in args.only.split(','):
                    continue
                log('setup %s' % key)
                results.append(run_setup(R, memcs, idx, key, title, mpm,
                                         use_fpm, body, args))
        if 'cost' in parts:
            cost = run_cost(R, memcs, args)
    text = report(results, cost, args, started, cmd)
    save_report(args.out, text)
    print(text)


if __name__ == '__main__':
    main()
