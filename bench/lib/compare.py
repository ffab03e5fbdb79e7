"""bench/compare.sh: the article's setup and the usual remedies against
mod_memsess, on the same three memcached servers, the same login workload
and the same faults.

Setups (one Apache each, run one after the other):
  static      php_admin_value session.save_path "a,b,c" (the article)
  phpfail     the same plus php-memcached's own failover settings
  twemproxy   PHP -> nutcracker (auto_eject_hosts) -> a, b, c
  memsess     MemsessServers a b c (the defaults)
  memsess-r1  the same with MemsessReplicas 1
  memsess-r1s the same with MemsessReplicas 1 and MemsessFailover successor

Workload: 30 users; each logs in (new session), does three follow-ups that
increment a counter in the session, logs out and logs in again.

Scenarios, one after the other on server 2 of 3:
  healthy
  refused     SIGKILL: connections are refused at once
  rejoin      restarted, empty
  hung        SIGSTOP: connections are accepted, nothing answers
  recovered   SIGCONT: the server answers again, with what it held
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (FAILED, HOST, NOSESS, RESULTS, WORK, Load, ProxyWatch,
                      Runner, bench_parser, bench_start, log, report_start,
                      now, phase_cells, run_phases, save_report, still_out, summarize,
                      watch_up, write_csv, fresh_memcached)
import plot

MEMC_PORTS = (31001, 31002, 31003)
BASE_PORT = 31030
PROXY_PORT, PROXY_STATS = 31020, 31021
SLOW = 1.0          # a request slower than this counts as disrupted
FAULTS = ('refused', 'hung')
GUARD = 0.1         # a request that starts this close before a fault counts
                    # in the fault's phase: it meets the fault


def setups(addrs):
    path = ','.join(addrs)
    static = ('php_admin_value session.save_handler memcached\n'
              'php_admin_value session.save_path "%s"\n' % path)
    return [
        ('static', 'static save_path (the article)', static, False),
        ('phpfail', "php-memcached's failover ini", static + '\n'.join([
            'php_admin_value memcached.sess_remove_failed_servers 1',
            'php_admin_value memcached.sess_server_failure_limit 1',
            'php_admin_value memcached.sess_number_of_replicas 1',
            'php_admin_value memcached.sess_binary_protocol 1',
            'php_admin_value memcached.sess_consistent_hash 1',
            'php_admin_value memcached.sess_connect_timeout 200']) + '\n',
         False),
        ('twemproxy', 'twemproxy (nutcracker), auto_eject_hosts',
         'php_admin_value session.save_handler memcached\n'
         'php_admin_value session.save_path "%s:%d"\n'
         '# twemproxy speaks the ASCII protocol only\n'
         'php_admin_value memcached.sess_binary_protocol 0\n'
         % (HOST, PROXY_PORT), False),
        ('memsess', 'mod_memsess', 'MemsessServers %s\n' % ' '.join(addrs),
         True),
        ('memsess-r1', 'mod_memsess, MemsessReplicas 1',
         'MemsessServers %s\nMemsessReplicas 1\n' % ' '.join(addrs), True),
        ('memsess-r1s', 'mod_memsess, MemsessReplicas 1 + successor',
         'MemsessServers %s\nMemsessReplicas 1\nMemsessFailover successor\n'
         % ' '.join(addrs), True),
    ]


def run_setup(R, memcs, idx, key, title, body, memsess, args):
    port = BASE_PORT + idx
    victim = memcs[1]
    fresh_memcached(memcs)
    proxy = None
    if key == 'twemproxy':
        proxy = R.nutcracker('compare-twemproxy', PROXY_PORT, PROXY_STATS,
                             [m.addr for m in memcs], failure_limit=1,
                             retry_timeout=args.retry, timeout=200)
    # every worker started up front: requests stuck on a hung server must
    # not make the others wait for prefork to spawn children
    apache = R.apache('compare-' + key, port, body, memsess=memsess,
                      workers=120, start_servers=120).start()
    t0 = now()
    watch = watch_up(apache, [m.addr for m in memcs], t0, 10, key) \
        if memsess else None
    pwatch = ProxyWatch(proxy, 'm2', t0) if proxy else None

    load = Load(port, users=args.users, followups=3, think=args.think,
                timeout=args.timeout, t0=t0).start()
    time.sleep(args.warmup)
    ev = run_phases(t0, [('healthy', None, args.healthy),
                         ('refused', victim.kill, args.refused),
                         ('rejoin', victim.start, args.rejoin),
                         ('hung', victim.freeze, args.hung),
                         ('recovered', victim.thaw, args.recovered)])
    left = load.stop(drain=args.timeout + 1)

    # detection: the status history's first poll showing down after the
    # fault, or the proxy's first ejection after it
    det = {}
    for sc in FAULTS:
        if watch:
            det[sc] = watch.first_after(victim.addr, 'down', ev[sc])
        if pwatch:
            det[sc] = pwatch.first_after(ev[sc])
    for wt in (watch, pwatch):
        if wt:
            wt.stop()
    R.stop(apache)
    if proxy:
        R.stop(proxy)
    records = load.snapshot()
    write_csv(os.path.join(WORK, 'compare-%s.csv' % key), records)
    return {'key': key, 'title': title, 'ev': ev, 'det': det,
            'records': records, 'left': left}


SCENARIOS = [('healthy', 'refused'), ('refused', 'rejoin'),
             ('rejoin', 'hung'), ('hung', 'recovered'), ('recovered', 'end')]
LABEL = {'healthy': 'healthy', 'refused': 'one refused (SIGKILL)',
         'rejoin': 'refused one restarted (empty)',
         'hung': 'one hung (SIGSTOP)', 'recovered': 'hung one resumed (SIGCONT)'}


def disrupted(records, a, b, fault):
    """Of the requests started in [a, b) that failed, got no session or took
    longer than SLOW: (seconds from the fault to the start of the last one,
    to the end of the last one), or None."""
    bad = [r for r in records if a <= r.t < b and
           (r.outcome in (FAILED, NOSESS) or r.lat > SLOW)]
    if not bad:
        return None
    return (max(0.0, max(r.t for r in bad) - fault),
            max(0.0, max(r.t + r.lat for r in bad) - fault))


def report(results, args, started):
    out, w = report_start('mod_memsess against the usual remedies',
                          'compare.sh', started)
    w('Workload: %d users, each in a loop: log in (new session, counter 1), '
      'three follow-ups that increment the counter, log out; %.0f ms think '
      'time (uniform 0.5-1.5x); client timeout %.0f s (as in the SPEC\'s '
      'table); keep-alive.  Three local memcached servers; server 2 is '
      'killed (SIGKILL, port refuses), restarted empty, frozen (SIGSTOP, '
      'accepts but never answers) and resumed (SIGCONT).  Apache prefork with '
      'all 120 workers started up front.  Phases: healthy '
      '%.0f s, refused %.0f s, restarted %.0f s, hung %.0f s, resumed %.0f s. '
      'Requests count in the phase in which they started (those that '
      'started less than %.0f ms before a fault count in its phase).'
      % (args.users, args.think * 1000, args.timeout, args.healthy,
         args.refused, args.rejoin, args.hung, args.recovered, GUARD * 1000))
    w('')
    w('Setups: **static**: `php_admin_value session.save_path "a,b,c"` with '
      'php-memcached\'s defaults.  **phpfail**: the same plus '
      '`memcached.sess_remove_failed_servers 1`, `sess_server_failure_limit 1`, '
      '`sess_number_of_replicas 1`, `sess_binary_protocol 1`, '
      '`sess_consistent_hash 1`, `sess_connect_timeout 200`.  **twemproxy**: '
      'PHP → nutcracker (ketama, `auto_eject_hosts: true`, '
      '`server_failure_limit: 1`, `server_retry_timeout: %d`, `timeout: 200`; '
      'php-memcached in ASCII mode) → a, b, c.  **memsess**: `MemsessServers '
      'a b c`, the module\'s defaults (interval 200ms, timeout 100ms, '
      'thresholds 2).  '
      '**memsess-r1**: the same with `MemsessReplicas 1`.  **memsess-r1s**: '
      '`MemsessReplicas 1` and `MemsessFailover successor` (a down server\'s '
      'place in the list goes to the next live one; '
      '`memcached.sess_consistent_hash=0`).' % args.retry)
    w('')
    w('Columns: *req/s* = completed requests per second; *failed* = HTTP '
      'error or client timeout; *no session* = HTTP 200 but session_start() '
      'failed; *lost* = a follow-up that found a new, empty session (counter '
      'reset); *stale* = a follow-up whose counter went backwards or did not '
      'advance; *detected* = from the fault to the first poll (20 ms) of '
      'mod_memsess\'s status page showing the server down, or to nutcracker '
      'ejecting it (stats every 50 ms); *disrupted* = of the requests of the '
      'phase that failed, got no session or took > %.0f s: from the fault to '
      'the start of the last one / to the end of the last one ("whole phase" '
      'when they go on to its end).' % SLOW)
    w('')
    w('| setup | scenario | requests | req/s | p50 | p99 | max | failed '
      '| no session | lost | stale | detected | disrupted |')
    w('|---|---|---|---|---|---|---|---|---|---|---|---|---|')
    for res in results:
        ev, det = res['ev'], res['det']
        for a, b in SCENARIOS:
            lo = ev[a] - (GUARD if a in FAULTS else 0)
            hi = ev[b] - (GUARD if b in FAULTS else 0)
            s = summarize(res['records'], lo, hi)
            d = disrupted(res['records'], lo, hi, ev[a])
            span = ev[b] - ev[a]
            if a in det:
                dt = det[a]
                detected = ('%.2f s' % (dt - ev[a])) if dt is not None else 'never'
            else:
                detected = '–'
            if d is None:
                dis = 'none'
            elif d[0] > span - 1.5 and a != 'healthy':
                dis = 'whole phase'
            else:
                dis = '%.1f s / %.1f s' % d
            w('| %s | %s | %s | %s | %s |' % (res['key'], LABEL[a],
                                              phase_cells(s), detected, dis))
    w('')
    out += still_out(results, 'key')
    w('Latency through the freeze: `failover-latency.png` (the slowest '
      'request started in each 250 ms, per setup; a gap: no request started, '
      'every user of that setup was waiting).  Per-request data: '
      '`bench/work/compare-*.csv`.')
    w('')
    return '\n'.join(out)


def freeze_plot(results, png, span):
    series = []
    marks = [(0.0, 'SIGSTOP')]
    for res in results:
        t_f = res['ev']['hung']
        bins = {}
        for r in res['records']:
            x = r.t - t_f
            if -3 <= x < span:
                k = int((x + 3) // 0.25)
                bins[k] = max(bins.get(k, 0.0), r.lat)
        path = os.path.join(WORK, 'compare-freeze-%s.dat' % res['key'])
        with open(path, 'w') as f:
            for k in range(int((span + 3) / 0.25)):
                v = bins.get(k)
                f.write('%.2f %s\n' % (k * 0.25 - 3,
                                        '%.2f' % max(v * 1000, 0.3) if v else 'NaN'))
        series.append((res['title'], path))
        if res['key'] == 'memsess' and res['det'].get('hung'):
            marks.append((res['det']['hung'] - t_f, 'mod_memsess: down'))
        if res['key'] == 'memsess':
            marks.append((res['ev']['recovered'] - t_f, 'SIGCONT'))
    plot.compare_freeze(series, marks, png, span)


def main():
    ap = bench_parser(__doc__, users=30, think=0.1, timeout=15.0, warmup=2.0,
                      healthy=6.0, refused=10.0, rejoin=6.0, hung=17.0,
                      recovered=8.0)
    ap.add_argument('--retry', type=int, default=2000,
                    help="nutcracker's server_retry_timeout (ms)")
    ap.add_argument('--only', default='',
                    help='comma-separated setups (default: all)')
    args, started = bench_start(ap)
    results = []
    with Runner() as R:
        memcs = [R.memcached(p) for p in MEMC_PORTS]
        all_setups = setups([m.addr for m in memcs])
        for idx, (key, title, body, memsess) in enumerate(all_setups):
            if args.only and key not in args.only.split(','):
                continue
            log('setup %s' % key)
            results.append(run_setup(R, memcs, idx, key, title, body,
                                     memsess, args))
    text = report(results, args, started)
    save_report('compare', text)
    freeze_plot(results, os.path.join(RESULTS, 'failover-latency.png'),
                args.hung + args.recovered)
    print(text)


if __name__ == '__main__':
    main()
