"""bench/peers.sh: several web servers, one of them alone cut off from one
memcached server (issue 11).

The demo's topology (tools/demo.sh): nginx round robin, non-sticky, in front
of three Apache instances (prefork + mod_php + php-memcached), each running
as a user of its own (memsess-bench-web1..3), all sharing three memcached.
30 users, each with one session for the whole run and a counter in it; their
requests go through nginx, so they alternate between the web servers.

The fault is asymmetric: web1 alone loses memcached 2, with an iptables
OUTPUT rule that drops its user's packets to that port
(-m owner --uid-owner memsess-bench-web1 ... -j DROP); web2 and web3 still
reach it.  Then the rule goes (healed).  Phases: healthy, cut, healed.

Modes, one after the other on the same memcached (flushed in between):

  shared     mod_memsess, nothing but MemsessServers: the defaults
             (MemsessShareVerdicts On: a server one instance finds down is
             left out by all; Replicas 1, successor, Rejoin sync)
  alone      the same with MemsessShareVerdicts Off: each instance's checker
             decides alone
  twemproxy  each web server with its own nutcracker (ketama,
             auto_eject_hosts, as bench/compare.sh), run as that web
             server's user so that the rule hits web1's; PHP's save_path is
             the local nutcracker

Per phase and mode: requests, ok, lost (the counter back to 1), stale (the
counter went back, did not advance or jumped: an older copy was read),
failed, no session, p50/p99.  When each web server left memcached 2 out and
took it back (status pages polled every 50 ms; nutcracker's stats), and what
each Apache logged about memcached 2.  Every rule added is removed, also on
failure or a signal (and bench/peers.sh removes what a killed run left).
"""

import datetime
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (HOST, LOST, OK, RESULTS, STALE, WORK, Load, ProxyWatch,
                      Runner, bench_parser, bench_start, error_log_lines,
                      log, report_start, ms, now, save_report, sleep_until,
                      still_out, summarize, watch_up, write_csv)
import plot

# 127.0.0.1:31600-31699 only
MEMC_PORTS = (31601, 31602, 31603)
NGINX_PORT = 31610
WEB_PORTS = (31611, 31612, 31613)
PROXY_PORTS = (31621, 31622, 31623)
PROXY_STATS = (31631, 31632, 31633)
USERS = ('memsess-bench-web1', 'memsess-bench-web2', 'memsess-bench-web3')
# the comment on every rule this benchmark adds (bench/peers.sh removes
# what carries it, whatever happened)
TAG = os.environ.get('MEMSESS_BENCH_CUT_TAG', 'memsess-bench-peers')
GUARD = 0.1    # a request that starts this close before the cut or the heal
               # counts in the phase it meets
CUT = 1        # memcached 2 (index 1): web1 is cut off from it
LOG_TAGS = ('MEMSESS0010', 'MEMSESS0011', 'MEMSESS0030', 'MEMSESS0031',
            'MEMSESS0033', 'MEMSESS0035', 'MEMSESS0036', 'MEMSESS0050',
            'MEMSESS0090', 'MEMSESS0091')

MODES = {
    'shared': 'mod_memsess, the defaults (MemsessShareVerdicts On)',
    'alone': 'mod_memsess, MemsessShareVerdicts Off',
    'twemproxy': 'twemproxy: a nutcracker per web server',
}


# ---------------------------------------------------------------------------
# The cut

# what the rule does: DROP (a black hole: connections hang in SYN_SENT until
# the client's connect timeout) or, with --reject, what the project's tests
# and tools/demo.sh do (a TCP reset: connections fail at once)
TARGETS = {'drop': ['-j', 'DROP'],
           'reject': ['-j', 'REJECT', '--reject-with', 'tcp-reset']}


def rule(op, user, port, target):
    return ['iptables', op, 'OUTPUT', '-o', 'lo', '-p', 'tcp', '-d', HOST,
            '--dport', str(port), '-m', 'owner', '--uid-owner', user,
            '-m', 'comment', '--comment', TAG] + TARGETS[target]


def cut(user, port, target):
    subprocess.run(rule('-A', user, port, target), check=True)


def heal(user, port, target):
    """Removes every copy of that rule."""
    while subprocess.run(rule('-D', user, port, target),
                         stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL).returncode == 0:
        pass


def remove_rules():
    """Every OUTPUT rule carrying TAG (and no other): what a run left."""
    out = subprocess.run(['iptables', '-S', 'OUTPUT'], capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        if ('--comment %s ' % TAG) in line and line.startswith('-A '):
            subprocess.run(['iptables', '-D'] + line.split()[1:],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ---------------------------------------------------------------------------
# One mode

def apache_body(mode, i, addrs):
    if mode == 'twemproxy':
        return ('php_admin_value session.save_handler memcached\n'
                'php_admin_value session.save_path "%s:%d"\n'
                '# twemproxy speaks the ASCII protocol only\n'
                'php_admin_value memcached.sess_binary_protocol 0\n'
                % (HOST, PROXY_PORTS[i]))
    body = 'MemsessServers %s\n' % ' '.join(addrs)
    if mode == 'alone':
        body += 'MemsessShareVerdicts Off\n'
    return body


def log_events(errlog, addr, wall_cut):
    """(seconds since the cut, tag, rest) of what an Apache logged about
    addr from a second before the cut on.  The error log's timestamps are
    local wall-clock times."""
    out = []
    for line in error_log_lines(errlog, LOG_TAGS):
        m = re.match(r'\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\].*?'
                     r'(MEMSESS\d{4}): (.*)$', line)
        if not m or addr not in m.group(3):
            continue
        t = datetime.datetime.strptime(m.group(1), '%Y-%m-%d %H:%M:%S.%f')
        t = t.timestamp() - wall_cut
        if t >= -1.0:
            out.append((t, m.group(2), m.group(3)))
    return out


def run_mode(R, memcs, mode, args):
    addrs = [m.addr for m in memcs]
    victim = memcs[CUT]
    for m in memcs:
        m.flush()
    started = []
    proxies = []
    try:
        if mode == 'twemproxy':
            for i in range(3):
                proxies.append(R.nutcracker(
                    'peers-%s-nutcracker%d' % (mode, i + 1), PROXY_PORTS[i],
                    PROXY_STATS[i], addrs, failure_limit=1,
                    retry_timeout=args.retry, timeout=200, user=USERS[i]))
                started.append(proxies[-1])
        webs = []
        for i in range(3):
            a = R.apache('peers-%s-web%d' % (mode, i + 1), WEB_PORTS[i],
                         apache_body(mode, i, addrs),
                         memsess=(mode != 'twemproxy'), workers=40,
                         start_servers=40, user=USERS[i]).start()
            webs.append(a)
            started.append(a)
        lb = R.nginx('peers-nginx', NGINX_PORT, WEB_PORTS)
        started.append(lb)
        t0 = now()
        watches, pwatches = [], []
        if mode != 'twemproxy':
            watches = [watch_up(a, addrs, t0, 15, '%s: web%d' % (mode, i + 1),
                                every=0.05) for i, a in enumerate(webs)]
        else:
            pwatches = [ProxyWatch(p, ['m1', 'm2', 'm3'], t0)
                        for p in proxies]

        load = Load(NGINX_PORT, users=args.users, followups=0,
                    think=args.think, timeout=15.0, t0=t0).start()
        time.sleep(args.warmup)
        ev = {'healthy': now() - t0}
        sleep_until(t0, ev['healthy'] + args.healthy)
        try:
            ev['cut'] = now() - t0
            wall_cut = time.time()
            cut(USERS[0], victim.port, args.target)
            log('%s: web1 (%s) cut off from %s' % (mode, USERS[0], victim.addr))
            sleep_until(t0, ev['cut'] + args.cut)
        finally:
            heal(USERS[0], victim.port, args.target)
        ev['heal'] = now() - t0
        log('%s: healed' % mode)
        sleep_until(t0, ev['heal'] + args.healed)
        ev['end'] = now() - t0
        left = load.stop(drain=16)
        for w in watches + pwatches:
            w.stop()
        records = load.snapshot()
        write_csv(os.path.join(WORK, 'peers-%s.csv' % mode), records)

        seen = []   # per web server: (left out, taken back), since cut/heal
        for i in range(3):
            if watches:
                down = watches[i].first_after(victim.addr, 'down', ev['cut'])
                if down is not None and down >= ev['heal']:
                    down = None
                up = (watches[i].first_after(victim.addr, 'up', ev['heal'])
                      if down is not None else None)
                seen.append({'down': down, 'up': up, 'ejections': None})
            else:
                m = 'm%d' % (CUT + 1)
                ej = pwatches[i].between(ev['cut'], ev['heal'], m)
                seen.append({'down': ej[0] if ej else None, 'up': None,
                             'ejections': len(ej),
                             'events': list(pwatches[i].events)})
        logs = []
        if watches:
            logs = [log_events(a.errlog, victim.addr, wall_cut) for a in webs]
        return {'mode': mode, 'title': MODES[mode], 'ev': ev,
                'records': records, 'left': left, 'seen': seen, 'logs': logs}
    finally:
        for p in reversed(started):
            R.stop(p)


# ---------------------------------------------------------------------------
# Report

# (from, to, label in the table, short name)
PHASES = [('healthy', 'cut', 'healthy', 'healthy'),
          ('cut', 'heal', 'web1 cut off from memcached 2', 'cut'),
          ('heal', 'end', 'healed', 'healed')]


def phase_bounds(ev, a, b):
    lo = ev[a] - (GUARD if a != 'healthy' else 0)
    hi = ev[b] - (GUARD if b != 'end' else 0)
    return lo, hi


def secs(t, ref):
    return '%.2f s' % (t - ref) if t is not None else 'never'


def report(results, args, started):
    out, w = report_start('Several web servers: one of them cut off from one memcached',
                          'peers.sh', started)
    w('Topology (tools/demo.sh\'s): nginx round robin (non-sticky, '
      '`max_fails=0`) in front of three Apache prefork + mod_php + '
      'php-memcached instances, web1-web3, each running as a user of its own '
      '(`%s`), all sharing three memcached.  %d users, each with one session '
      'for the whole run and a counter in it, %.0f ms think time (uniform '
      '0.5-1.5x), client timeout 15 s: their requests alternate between the '
      'web servers.  Phases: healthy %.0f s; **cut** %.0f s: web1 alone '
      'loses memcached 2, `iptables -A OUTPUT -o lo -p tcp -d 127.0.0.1 '
      '--dport <memcached 2> -m owner --uid-owner %s %s` (web2 and web3 '
      'still reach it); **healed** %.0f s: the rule removed.  Requests count '
      'in the phase in which they started (those that started less than '
      '%.0f ms before the cut or the heal count in the phase they meet).'
      % (', '.join(USERS), args.users, args.think * 1000, args.healthy,
         args.cut, USERS[0], ' '.join(TARGETS[args.target]), args.healed,
         GUARD * 1000))
    w('')
    w('Modes, one after the other on the same memcached (flushed in '
      'between): **shared**: `MemsessServers a b c` and nothing else, the '
      'defaults (interval 200ms, timeout 100ms, thresholds 2, Replicas 1, '
      'successor, Rejoin sync, `MemsessShareVerdicts On`).  **alone**: the '
      'same with `MemsessShareVerdicts Off`: each instance\'s checker decides '
      'alone.  **twemproxy**: each web server with its own nutcracker (ketama, '
      '`auto_eject_hosts: true`, `server_failure_limit: 1`, '
      '`server_retry_timeout: %d`, `timeout: 200`), run as that web server\'s '
      'user (so the rule hits web1\'s), PHP\'s `session.save_path` the local '
      'nutcracker (php-memcached in ASCII mode).' % args.retry)
    w('')
    w('Columns: *ok* = a follow-up that found the counter one higher, or a '
      'login; *lost* = a follow-up that found a new, empty session (counter '
      'back to 1); *stale* = a follow-up whose counter went back, did not '
      'advance or jumped ahead (an older copy was read, and what the user '
      'wrote since is lost); *failed* = HTTP error or client timeout; *no '
      'session* = HTTP 200 but session_start() failed; *> 1 s* = requests '
      'that took longer than a second.')
    w('')
    w('| mode | phase | requests | req/s | ok | lost | stale | failed | no session | p50 | p99 | max | > 1 s |')
    w('|---|---|---|---|---|---|---|---|---|---|---|---|---|')
    for res in results:
        for a, b, label, _ in PHASES:
            lo, hi = phase_bounds(res['ev'], a, b)
            s = summarize(res['records'], lo, hi)
            rs = [r for r in res['records'] if lo <= r.t < hi]
            w('| %s | %s | %d | %.0f | %d | %d | %d | %d | %d | %s | %s | %s | %d |'
              % (res['mode'], label, s['requests'], s['rps'],
                 sum(r.outcome == OK for r in rs), s['lost'], s['stale'],
                 s['failed'], s['nosess'], ms(s['p50']), ms(s['p99']),
                 ms(s['max']), sum(r.lat > 1.0 for r in rs)))
    w('')
    w('Who left memcached 2 out, and when, counted from the cut (mod_memsess: '
      'the first poll of each instance\'s `/memsess-status?json`, every 50 ms, '
      'showing it `down`, and from the heal the first showing it `up`; '
      'twemproxy: nutcracker\'s `server_ejected_at`, polled every 50 ms, and '
      'every ejection by each web server\'s nutcracker, per phase):')
    w('')
    w('| mode | web1 | web2 | web3 | taken back after the heal (web1 / web2 / web3); twemproxy: every ejection, per phase |')
    w('|---|---|---|---|---|')
    for res in results:
        ev, seen = res['ev'], res['seen']
        if res['mode'] == 'twemproxy':
            cells = ['%s (%d ejections while cut)' % (secs(x['down'], ev['cut']),
                                                      x['ejections'])
                     if x['ejections'] else 'never' for x in seen]
            back = 'every ejection: %s' % '; '.join(
                '%s: %s' % (short, ejections(seen, *phase_bounds(ev, a, b)))
                for a, b, _, short in PHASES)
        else:
            cells = [secs(x['down'], ev['cut']) for x in seen]
            back = ' / '.join(secs(x['up'], ev['heal']) if x['down'] is not None
                              else '-' for x in seen)
        w('| %s | %s | %s | %s | %s |' % (res['mode'], cells[0], cells[1],
                                          cells[2], back))
    w('')
    for res in results:
        if not res['logs']:
            continue
        w('What each Apache logged about memcached 2, **%s** (seconds since '
          'the cut; the heal came at %.1f s):' % (res['mode'],
                                                   res['ev']['heal'] - res['ev']['cut']))
        w('')
        w('```')
        for i, lines in enumerate(res['logs']):
            for t, tag, rest in lines:
                w('web%d %+7.2f s  %s: %s' % (i + 1, t, tag, shorten(rest)))
        w('```')
        w('')
    out += still_out(results, 'mode')
    w('Stale and lost reads per second over time: `peers.png`.  Per-request '
      'data: `bench/work/peers-<mode>.csv`.')
    w('')
    return '\n'.join(out)


def ejections(seen, a, b):
    """'web1 m2 x10, web3 m1 x1' for the nutcracker ejections in [a, b)."""
    out = []
    for i, x in enumerate(seen):
        counts = {}
        for t, n in x['events']:
            if a <= t < b:
                counts[n] = counts.get(n, 0) + 1
        out += ['web%d %s x%d' % (i + 1, n, c) for n, c in sorted(counts.items())]
    return ', '.join(out) or 'none'


def shorten(text, width=150):
    return text if len(text) <= width else text[:width - 3] + '...'


def chart(results, png, args):
    series = []
    lo, hi = -int(args.healthy), int(args.cut + args.healed) + 1
    for res in results:
        t_cut = res['ev']['cut']
        bins = {}
        for r in res['records']:
            if r.outcome in (STALE, LOST):
                k = int((r.t - t_cut) // 1)
                bins[k] = bins.get(k, 0) + 1
        path = os.path.join(WORK, 'peers-%s.dat' % res['mode'])
        with open(path, 'w') as f:
            for k in range(lo, hi):
                f.write('%d %d\n' % (k, bins.get(k, 0)))
        series.append((res['title'], path))
    heals = [r['ev']['heal'] - r['ev']['cut'] for r in results]
    marks = [(0.0, 'cut'), (sum(heals) / len(heals), 'healed')]
    plot.peers_errors(series, marks, png, (lo, hi))


def main():
    ap = bench_parser(__doc__, users=30, think=0.1, warmup=2.0, healthy=15.0,
                      cut=20.0, healed=20.0)
    ap.add_argument('--reject', dest='target', action='store_const',
                    const='reject', default='drop',
                    help='cut with -j REJECT --reject-with tcp-reset (as the '
                    'tests do) instead of -j DROP')
    ap.add_argument('--retry', type=int, default=2000,
                    help="nutcracker's server_retry_timeout (ms)")
    ap.add_argument('--modes', default='shared,alone,twemproxy',
                    help='comma-separated, of: %s' % ', '.join(MODES))
    ap.add_argument('--out', default='peers',
                    help='results/OUT.md and results/OUT.png (peers)')
    args, started = bench_start(ap)
    modes = [m for m in args.modes.split(',') if m]
    for m in modes:
        if m not in MODES:
            raise SystemExit('--modes: no mode %r (%s)' % (m, ', '.join(MODES)))
    results = []
    with Runner() as R:
        remove_rules()
        try:
            memcs = [R.memcached(p) for p in MEMC_PORTS]
            for mode in modes:
                log('mode %s' % mode)
                results.append(run_mode(R, memcs, mode, args))
        finally:
            remove_rules()
    text = report(results, args, started)
    save_report(args.out, text)
    chart(results, os.path.join(RESULTS, args.out + '.png'), args)
    print(text)


if __name__ == '__main__':
    main()
