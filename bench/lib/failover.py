"""bench/failover.sh: what users of a mod_memsess pool see when one of its
three memcached servers dies (SIGKILL) and when one hangs (SIGSTOP).

30 simulated users, each with its own session (one login, then follow-ups
that increment a counter in the session), against Apache + mod_php +
php-memcached + mod_memsess with the SPEC defaults (interval 1s, timeout
250ms, thresholds 2).  One run per setting of --runs (default r0,r1,r1s,r1sf):

  r0     MemsessReplicas 0
  r1     MemsessReplicas 1 (MemsessFailover drop, the default)
  r1s    MemsessReplicas 1, MemsessFailover successor
  r1sf   MemsessReplicas 1, MemsessFailover successor, MemsessRejoin flush

(rN[s][f] in general: N replicas, s = successor, f = flush.)  Phases of
each run:

  healthy            all three up
  kill: detecting    server 3 SIGKILLed, until the status page says down
  kill: detected     until memcached is restarted (empty)
  restart: rejoining until the status page says up
  restart: rejoined
  freeze: detecting  server 2 SIGSTOPped, until the status page says down
  freeze: detected   until SIGCONT
  thaw: rejoining    SIGCONT, until the status page says up
  thaw: rejoined

Detection time: from the signal to the first poll of /memsess-status?json
(every 20 ms) that shows the server down.
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (HOST, RESULTS, WORK, Load, QueueWatch, Runner,
                      bench_parser, bench_start, log, report_start, ms, now,
                      pct, save_report, sleep_until, summarize, watch_up,
                      write_csv)
import plot

MEMC_PORTS = (31001, 31002, 31003)
APACHE_PORT = 31010

INTERVAL, TIMEOUT, FAILS, PASSES = 1.0, 0.25, 2, 2
TARGET_DETECT = INTERVAL * FAILS + TIMEOUT + 0.1
GUARD = 0.1


def parse_run(key):
    """'r1sf' -> {'key', 'replicas': 1, 'successor': True, 'flush': True};
    'defaults' -> nothing but MemsessServers (the module's own defaults)"""
    if key == 'defaults':
        return {'key': key, 'replicas': 1, 'successor': True, 'flush': False,
                'defaults': True}
    m = re.match(r'^r(\d+)(s?)(f?)$', key)
    if not m:
        raise SystemExit('--runs: %r is not rN[s][f] (e.g. r0, r1, r1s, r1sf)'
                         % key)
    return {'key': key, 'replicas': int(m.group(1)),
            'successor': bool(m.group(2)), 'flush': bool(m.group(3))}


def run_title(spec):
    if spec.get('defaults'):
        return ('nothing but MemsessServers: the defaults (interval 200ms, '
                'timeout 100ms, Replicas 1, successor, Rejoin sync)')
    t = 'MemsessReplicas %d' % spec['replicas']
    t += ', MemsessFailover %s' % ('successor' if spec['successor'] else 'drop')
    t += ', MemsessRejoin %s' % ('flush' if spec['flush'] else 'keep')
    return t


def run(R, memcs, spec, idx, args):
    replicas, key = spec['replicas'], spec['key']
    port = APACHE_PORT + idx
    addrs = [m.addr for m in memcs]
    for m in memcs:
        m.flush()
    lines = [
        'MemsessServers %s' % ' '.join(addrs),
        'MemsessCheckInterval %dms' % (INTERVAL * 1000),
        'MemsessCheckTimeout %dms' % (TIMEOUT * 1000),
        'MemsessFailThreshold %d' % FAILS,
        'MemsessPassThreshold %d' % PASSES,
        'MemsessReplicas %d' % replicas,
    ]
    # every mode written out: the defaults changed (successor, sync)
    lines.append('MemsessFailover %s' % ('successor' if spec['successor']
                                         else 'drop'))
    lines.append('MemsessRejoin %s' % ('flush' if spec['flush'] else 'keep'))
    if spec.get('defaults'):
        lines = lines[:1]
    body = '\n'.join(lines)
    # every worker started up front: requests stuck on a hung server must
    # not make the others wait for prefork to spawn children
    # server-side begin and duration of every request: a PHP request that
    # hangs on a frozen server goes on after its client gave up
    accesslog = os.path.join(WORK, 'failover-' + key, 'access.log')
    if os.path.exists(accesslog):
        os.unlink(accesslog)
    body += ('\nCustomLog "%s" "%%{begin:sec}t.%%{begin:usec_frac}t %%D %%>s %%U"\n'
             % accesslog)
    apache = R.apache('failover-' + key, port, body, workers=120,
                      start_servers=120).start()
    t0 = now()
    wall0 = time.time() - (now() - t0)
    watch = watch_up(apache, addrs, t0, 10)
    load = Load(port, users=args.users, followups=0, think=args.think,
                timeout=15.0, t0=t0).start()
    time.sleep(args.warmup)
    ev = {}
    rel = lambda: now() - t0

    frozen, killed = memcs[1], memcs[2]

    def outage(server, fault, verb, hold, back, back_with):
        """server.FAULT(), until the status page shows it down and hold
        seconds more; back_with(), until it shows it up and args.after
        seconds more: the times in ev[FAULT], ev[FAULT_down], ev[BACK],
        ev[BACK_up]."""
        ev[fault] = rel()
        getattr(server, fault)()
        log('%s: %s %s' % (key, verb, server.addr))
        ev[fault + '_down'] = watch.reached(server.addr, 'down', 15, key)
        sleep_until(t0, ev[fault + '_down'] + hold)
        ev[back] = rel()
        back_with()
        ev[back + '_up'] = watch.reached(server.addr, 'up', 15)
        sleep_until(t0, ev[back + '_up'] + args.after)

    # -- healthy
    ev['healthy'] = rel()
    time.sleep(args.phase)

    # -- one server dies, then comes back empty
    outage(killed, 'kill', 'killed', args.phase, 'restart', killed.start)

    # -- one server hangs, then resumes (with what it held and was sent)
    qw = QueueWatch(frozen.port, t0)

    def thaw():
        qw.stop()
        frozen.thaw()
    outage(frozen, 'freeze', 'froze', args.hold, 'thaw', thaw)
    ev['end'] = rel()

    left = load.stop()
    watch.stop()
    R.stop(apache)
    records = load.snapshot()
    write_csv(os.path.join(WORK, 'failover-%s.csv' % key), records)
    server_side = []      # (begin, end) relative to t0
    with open(accesslog) as f:
        for line in f:
            fl = line.split()
            if len(fl) >= 2 and fl[-1] == '/session.php':
                b = float(fl[0]) - wall0
                server_side.append((b, b + int(fl[1]) / 1e6))
    res = analyse(spec, records, ev, watch, qw, frozen, killed, left,
                  server_side)
    res['rejoin_log'] = rejoin_lines(apache.errlog)
    return res


def rejoin_lines(errlog):
    """The module's 'is up' NOTICEs (MEMSESS0011), to show whether a
    rejoining server was emptied first (MemsessRejoin flush)."""
    out = []
    try:
        with open(errlog) as f:
            for line in f:
                if 'MEMSESS0011' in line:
                    out.append(line.strip())
    except OSError:
        pass
    return out


def analyse(spec, records, ev, watch, qw, frozen, killed, left,
            server_side):
    replicas = spec['replicas']
    phases = [
        ('healthy', ev['healthy'], ev['kill']),
        ('kill: detecting', ev['kill'], ev['kill_down']),
        ('kill: detected', ev['kill_down'], ev['restart']),
        ('restart: rejoining', ev['restart'], ev['restart_up']),
        ('restart: rejoined', ev['restart_up'], ev['freeze']),
        ('freeze: detecting', ev['freeze'], ev['freeze_down']),
        ('freeze: detected', ev['freeze_down'], ev['thaw']),
        ('thaw: rejoining', ev['thaw'], ev['thaw_up']),
        ('thaw: rejoined', ev['thaw_up'], ev['end']),
    ]
    # a request that starts just before a fault meets it: count it there
    guard = lambda t: t - GUARD if t in (ev['kill'], ev['freeze']) else t
    rows = [(name, summarize(records, guard(a), guard(b)))
            for name, a, b in phases]
    res = {'replicas': replicas, 'key': spec['key'], 'spec': spec,
           'title': run_title(spec), 'rows': rows, 'ev': ev, 'left': left,
           'records': records}
    # the SPEC's "sessions lost when one of three servers dies": the kill
    # phases, while server 3 is dead (not its restart, empty)
    res['dead'] = summarize(records, ev['kill'] - GUARD, ev['restart'])
    res['restart_s'] = summarize(records, ev['restart'], ev['freeze'] - GUARD)
    res['thaw_s'] = summarize(records, ev['thaw'], ev['end'])
    res['detect_freeze'] = ev['freeze_down'] - ev['freeze']
    res['detect_kill'] = ev['kill_down'] - ev['kill']
    res['healthy_p99'] = rows[0][1]['p99']

    # After detection: what reached the down server?
    for key, srv, a, b in (('kill', killed, ev['kill_down'], ev['restart']),
                           ('freeze', frozen, ev['freeze_down'], ev['thaw'])):
        after = [r for r in records if a <= r.t < b]
        res[key + '_path_hits'] = sum(1 for r in after
                                      if r.path and srv.addr in r.path.split(','))
        res[key + '_no_path'] = sum(1 for r in after if not r.path)
        res[key + '_slow'] = sum(1 for r in after if r.lat > TIMEOUT)
        res[key + '_after_p99'] = pct([r.lat for r in after], 99)
        res[key + '_after_n'] = len(after)

    # The frozen server's accept queue: every connection made to it stays
    # there.  Count from the moment every request that started before the
    # verdict has ended on the server side (php-memcached goes on for up to
    # 30 s after its client gave up at 15 s), minus the checker's probes.
    before = [e for b, e in server_side if b < ev['freeze_down']]
    before += [r.t + r.lat for r in records if r.t < ev['freeze_down']]
    ws = max([ev['freeze_down']] + before) + 0.2
    res['server_side_max'] = max([e - b for b, e in server_side] or [0])
    we = ev['thaw'] - 0.06
    res['queue_window'] = (ws, we)
    if we - ws > 1.0:
        q0, q1 = qw.at(ws), qw.at(we)
        c0, c1 = (watch.checks_at(frozen.addr, ws),
                  watch.checks_at(frozen.addr, we))
        if None not in (q0, q1, c0, c1):
            res['queue'] = (q1 - q0, c1 - c0)
    return res


def fmt_row(name, s):
    return '| %s | %.1f s | %d | %.0f | %s | %s | %s | %d | %d | %d (%d users) | %d |' % (
        name, s['duration'], s['requests'], s['rps'], ms(s['p50']),
        ms(s['p99']), ms(s['max']), s['failed'], s['nosess'], s['lost'],
        s['users_lost'], s['stale'])


def report(results, args, started):
    out, w = report_start('Failover: one of three memcached servers dies, then one hangs',
                          'failover.sh', started)
    w('Workload: %d users, each with its own cookie: one login (creates the '
      'session, counter 1), then follow-ups that increment the counter, '
      '%.0f ms think time (uniform 0.5-1.5x), client timeout 15 s, '
      'keep-alive.  Apache prefork + mod_php + php-memcached (its defaults) '
      '+ mod_memsess: `MemsessCheckInterval 1s`, `MemsessCheckTimeout 250ms`, '
      '`MemsessFailThreshold 2`, `MemsessPassThreshold 2` (the SPEC '
      'defaults).  Server 3 is killed with SIGKILL and later restarted '
      '(empty); then server 2 is frozen with SIGSTOP and later resumed with '
      'SIGCONT.  Apache prefork with all 120 workers started up front.  '
      'Requests are counted in the phase in which they *started* (those that '
      'started less than 100 ms before a signal count in its phase).'
      % (args.users, args.think * 1000))
    w('')
    w('Columns: *failed* = HTTP error or client timeout; *no session* = '
      'HTTP 200 but session_start() failed (the user is shown the login page '
      'for that request; the session may be back on the next one); *lost* = '
      'a follow-up that found a new, empty session (counter reset: the '
      'session is gone); *stale* = a follow-up whose counter went backwards '
      'or did not advance (an older copy, or a write that was lost).')
    w('')
    w('Runs: %s.' % '; '.join('**%s** = %s' % (res['key'], res['title'])
                              for res in results))
    w('')
    w('## Summary')
    w('')
    w('The SPEC target "sessions lost when one of three servers dies, '
      '`MemsessReplicas 1`: 0" is judged on the follow-ups that found an '
      'empty session while server 3 was dead (from the SIGKILL to its '
      'restart, detection window included).  A restarted memcached is empty, '
      'and a thawed one holds what it had before the freeze: those are the '
      'last columns, not the target.')
    w('')
    w('| run | lost while server 3 dead (users) | no session / stale while '
      'dead | target (Replicas 1: 0 lost) | lost after server 3 restarted '
      'empty | after the thaw (SIGCONT to end, %.0f s after up): no session / '
      'lost / stale, p99 | detection dead / hung |' % args.after)
    w('|---|---|---|---|---|---|---|')
    for res in results:
        d, rs, th = res['dead'], res['restart_s'], res['thaw_s']
        if res['replicas'] == 1:
            verdict = 'met' if d['lost'] == 0 else '**missed**'
        else:
            verdict = '– (Replicas %d)' % res['replicas']
        w('| %s | %d (%d) | %d / %d | %s | %d (%d users) | %d / %d / %d, %s '
          '| %.2f s / %.2f s |' % (
              res['key'], d['lost'], d['users_lost'], d['nosess'], d['stale'],
              verdict, rs['lost'], rs['users_lost'], th['nosess'], th['lost'],
              th['stale'], ms(th['p99']), res['detect_kill'],
              res['detect_freeze']))
    w('')
    for res in results:
        r = res['replicas']
        w('## %s: %s' % (res['key'], res['title']))
        w('')
        w('| phase | duration | requests | req/s | p50 | p99 | max | failed '
          '| no session | lost | stale |')
        w('|---|---|---|---|---|---|---|---|---|---|---|')
        for name, s in res['rows']:
            w(fmt_row(name, s))
        w('')
        hp = res['healthy_p99']
        w('- Detection: dead server %.2f s, hung server %.2f s (target ≤ '
          '%.2f s = interval × FailThreshold + timeout + 100 ms): %s.'
          % (res['detect_kill'], res['detect_freeze'], TARGET_DETECT,
             'met' if max(res['detect_freeze'], res['detect_kill'])
             <= TARGET_DETECT else '**missed**'))
        for key, what in (('kill', 'dead'), ('freeze', 'hung')):
            ratio = res[key + '_after_p99'] / hp if hp else float('nan')
            w('- After detection (%s server): %d requests, %d with the down '
              'server in their save_path, %d slower than the probe timeout '
              '(250 ms); p99 %s = %.2f × healthy p99 (%s) (target ≤ 2): %s.'
              % (what, res[key + '_after_n'], res[key + '_path_hits'],
                 res[key + '_slow'], ms(res[key + '_after_p99']), ratio,
                 ms(hp), 'met' if ratio <= 2 and res[key + '_path_hits'] == 0
                 else '**missed**'))
        if 'queue' in res:
            dq, dc = res['queue']
            ws, we = res['queue_window']
            w('- Connections that reached the frozen server after detection '
              '(its accept queue, from %.1f s after the freeze, when the last '
              'request that started before the verdict had ended on the '
              'server side, to the '
              'SIGCONT, %.1f s): %d new connections, %d of them the checker\'s '
              'probes → %d from requests (±1 for a probe in flight at either '
              'end).' % (ws - res['ev']['freeze'], we - ws, dq, dc, dq - dc))
        else:
            w('- Connections to the frozen server after detection: not '
              'measured (the requests that started before the verdict were '
              'still running on the server side when it was resumed).')
        w('- Longest request on the server side (access log %%D): %.1f s.'
          % res['server_side_max'])
        kill = res['dead']
        w('- While server 3 was dead (kill phases, not its restart): %d '
          'requests without a session, %d stale.' % (kill['nosess'],
                                                     kill['stale']))
        w('- Sessions lost (counter reset) while server 3 was dead: %d '
          'follow-ups of %d users%s.' % (
              kill['lost'], kill['users_lost'],
              ' (target with MemsessReplicas 1: 0): %s' % (
                  'met' if kill['lost'] == 0 else '**missed**')
              if r == 1 else ''))
        th = res['thaw_s']
        w('- After the thaw (SIGCONT to the end of the run): %d requests '
          'without a session, %d lost, %d stale; p99 %s.'
          % (th['nosess'], th['lost'], th['stale'], ms(th['p99'])))
        if res.get('rejoin_log'):
            msg = res['rejoin_log'][-1]
            msg = msg[msg.find('MEMSESS0011'):]
            w('- The module\'s log when server 2 came back: `%s`' % msg)
        if res['left']:
            w('- %d users still had a request out when the run ended.'
              % res['left'])
        w('')
    w('Per-request data: `bench/work/failover-<run>.csv`; latency over time: '
      '`failover-timeline.png`.')
    w('')
    return '\n'.join(out)


def main():
    ap = bench_parser(__doc__, users=30, think=0.1)
    ap.add_argument('--phase', type=float, default=6.0,
                    help='seconds of healthy and after-detection phases')
    ap.add_argument('--hold', type=float, default=34.0,
                    help='seconds the frozen server stays frozen after it is '
                         'detected (long enough for the requests that hang '
                         'on it before detection, up to 30 s on the server '
                         'side, to end, and the connections after that to be '
                         'counted)')
    ap.add_argument('--after', type=float, default=5.0,
                    help='seconds after a server rejoined')
    ap.add_argument('--warmup', type=float, default=2.0)
    ap.add_argument('--runs', default='r0,r1,r1s,r1sf,defaults',
                    help='comma-separated rN[s][f]: N = MemsessReplicas, '
                         's = MemsessFailover successor (else drop), f = '
                         'MemsessRejoin flush (else keep); or defaults: '
                         'nothing but MemsessServers (default '
                         'r0,r1,r1s,r1sf,defaults)')
    ap.add_argument('--out', default='failover',
                    help='results/OUT.md and results/OUT-timeline.png '
                         '(default failover)')
    ap.add_argument('--replicas', default=None,
                    help='old form: comma-separated MemsessReplicas values, '
                         'MemsessFailover drop (e.g. 0,1 = --runs r0,r1)')
    args, started = bench_start(ap)
    if args.replicas:
        args.runs = ','.join('r%d' % int(x) for x in args.replicas.split(','))
    specs = [parse_run(k) for k in args.runs.split(',')]
    for spec in specs:
        if spec['successor'] and spec['replicas'] < 1:
            raise SystemExit('--runs %s: MemsessFailover successor needs '
                             'MemsessReplicas >= 1' % spec['key'])
    results = []
    with Runner() as R:
        memcs = [R.memcached(p) for p in MEMC_PORTS]
        for idx, spec in enumerate(specs):
            log('run %s: %s' % (spec['key'], run_title(spec)))
            # a fresh start for every run: server 3 may be a restarted one
            results.append(run(R, memcs, spec, idx, args))
    text = report(results, args, started)
    save_report(args.out, text)
    plot.failover_timeline(results, os.path.join(RESULTS,
                                                 args.out + '-timeline.png'))
    print(text)


if __name__ == '__main__':
    main()
