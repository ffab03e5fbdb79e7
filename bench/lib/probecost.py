"""bench/probecost.sh: what the checker costs at its defaults, and how fast
it detects.

(a) Cost: one Apache (prefork, 4 children, no load) checking 3, 256 and 1024
    distinct memcached servers for --seconds each: probes per second (the
    status page's `checks`), CPU of the Apache processes (the checker's
    child and the 100 ms tick of the others), CPU of the memcached
    processes, and the TIME_WAIT sockets to them at the end.  Servers beyond
    3 listen on loopback addresses of their own (127.0.x.y), one port.
    With --old SO, the same for another build (the one before issue 10,
    which opened a new connection for every probe), at the same interval.
(b) Detection: three memcached, one of them frozen (SIGSTOP) or killed
    (SIGKILL) --faults times each; the time from the signal to the first
    poll (every 10 ms) of the status page that shows it down.

Writes bench/results/probecost.md.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (HOST, RESULTS, Memcached, Runner, log, machine_line,  # noqa: E402
                      load_average, now, poll_until)

APACHE_PORT = 31890
MC_BASE = 31900           # memcached ports 31900-31902


def ticks(pid):
    """utime + stime of a process, in clock ticks."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            f = f.read().rsplit(')', 1)[1].split()
        return int(f[11]) + int(f[12])
    except (OSError, IndexError):
        return 0


def apache_pids(parent):
    out = subprocess.run(['ps', '-o', 'pid=', '--ppid', str(parent)],
                         capture_output=True, text=True).stdout.split()
    return [parent] + [int(p) for p in out]


def time_wait(ports):
    out = subprocess.run(['ss', '-Htan', 'state', 'time-wait'],
                         capture_output=True, text=True).stdout
    n = 0
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 4 and f[-1].rsplit(':', 1)[-1].isdigit() \
                and int(f[-1].rsplit(':', 1)[-1]) in ports:
            n += 1
    return n


class MultiMemcached(Memcached):
    """One memcached on one port, listening on several loopback addresses."""

    def __init__(self, runner, port, addrs):
        super().__init__(runner, port, mem=8)
        self.addrs = addrs

    def start(self, wait=True):
        cmd = ['memcached', '-l', ','.join(self.addrs), '-p', str(self.port),
               '-U', '0', '-m', '8', '-t', '1', '-c', '256']
        if os.geteuid() == 0:
            cmd += ['-u', 'nobody']
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        return self


def servers_for(n, run):
    """[(port, [addr])] giving n distinct servers, one memcached each: 3 on
    127.0.0.1, more on their own loopback addresses (127.0.x.y), one port.
    Each run has ports of its own: its TIME_WAIT sockets are its own."""
    if n <= 3:
        return [(MC_BASE + 10 * run + i, ['127.0.0.1']) for i in range(n)]
    return [(MC_BASE + 10 * run, ['127.0.%d.%d' % (1 + x // 200, 1 + x % 200)])
            for x in range(n)]


def cost(R, n, so, seconds, label, run, interval=None):
    procs, addrs = [], []
    for port, ips in servers_for(n, run):
        m = MultiMemcached(R, port, ips).start(wait=False)
        R.memcacheds.append(m)
        procs.append(m)
        addrs += ['%s:%d' % (ip, port) for ip in ips]
    time.sleep(0.5 + n / 500)
    # what the memcached processes burn by themselves, before any probe
    mcb0, tb0 = sum(ticks(m.pid) for m in procs), now()
    time.sleep(3.0)
    mc_idle = (sum(ticks(m.pid) for m in procs) - mcb0) / (now() - tb0)
    # the old build's defaults were 1s / 250ms: give it today's
    body = ('MemsessCheckInterval 200ms\nMemsessCheckTimeout 100ms\n'
            if so else '')
    if interval:
        body = 'MemsessCheckInterval %dms\n' % interval
    for v in range(0, len(addrs), 64):
        body += ('<VirtualHost %s:%d>\n    ServerName c%d.bench\n'
                 '    MemsessServers %s\n</VirtualHost>\n'
                 % (HOST, APACHE_PORT, v, ' '.join(addrs[v:v + 64])))
    a = R.apache('probecost-%s-%d' % (label, n), APACHE_PORT, body,
                 workers=4, start_servers=4)
    if so:
        # benchlib reads MEMSESS_SO at import: point this conf at it
        with open(a.conf) as f:
            conf = f.read()
        conf = re.sub(r'LoadModule memsess_module "[^"]*"',
                      'LoadModule memsess_module "%s"' % so, conf)
        with open(a.conf, 'w') as f:
            f.write(conf)
    a.start()
    time.sleep(2.0)     # every server probed, children settled
    st0 = a.status()
    c0 = sum(s['checks'] for s in st0['servers'])
    ap0 = sum(ticks(p) for p in apache_pids(a.pid))
    mc0 = sum(ticks(m.pid) for m in procs)
    t0 = now()
    time.sleep(seconds)
    dt = now() - t0
    ap1 = sum(ticks(p) for p in apache_pids(a.pid))
    mc1 = sum(ticks(m.pid) for m in procs)
    st1 = a.status()
    c1 = sum(s['checks'] for s in st1['servers'])
    down = sum(1 for s in st1['servers'] if s['state'] == 'down')
    up = sum(1 for s in st1['servers'] if s['state'] == 'up')
    tw = time_wait({p for p, _ in servers_for(n, run)})
    hz = os.sysconf('SC_CLK_TCK')
    a.stop()
    R.apaches.remove(a)
    for m in procs:
        m.stop()
        R.memcacheds.remove(m)
    time.sleep(0.5)
    return {'label': label + (' (interval %dms)' % interval if interval else ''),
            'servers': n, 'up': up, 'down_at_end': down,
            'probes_s': (c1 - c0) / dt,
            'apache_cpu': (ap1 - ap0) / hz / dt * 100,
            'memcached_cpu': ((mc1 - mc0) / dt - mc_idle) / hz * 100,
            'memcached_idle': mc_idle / hz * 100,
            'time_wait': tw}


def detection(R, faults):
    ms_ = [R.memcached(MC_BASE + i) for i in range(3)]
    body = ('<VirtualHost %s:%d>\n    ServerName d.bench\n'
            '    MemsessServers %s\n</VirtualHost>\n'
            % (HOST, APACHE_PORT, ' '.join(m.addr for m in ms_)))
    a = R.apache('probecost-detect', APACHE_PORT, body, workers=4,
                 start_servers=4).start()
    out = {'hung': [], 'dead': []}
    victim = ms_[1]

    def wait_state(state, deadline=10.0):
        # from right after the signal
        return poll_until(lambda: a.states().get(victim.addr) == state,
                          deadline, 0.01)[1]

    wait_state('up')
    for i in range(faults):
        for kind in ('hung', 'dead'):
            time.sleep(0.3 + (i * 0.037) % 0.2)   # spread over the interval
            if kind == 'hung':
                victim.freeze()
            else:
                victim.kill()
            d = wait_state('down')
            out[kind].append(d)
            if kind == 'hung':
                victim.thaw()
            else:
                victim.start()
            wait_state('up')
    a.stop()
    R.apaches.remove(a)
    for m in ms_:
        m.stop()
        R.memcacheds.remove(m)
    return out


def fmt_ms(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return 'never'
    xs.sort()
    return '%d / %d / %d ms' % (xs[0] * 1000, statistics.median(xs) * 1000,
                                xs[-1] * 1000)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seconds', type=float, default=10.0)
    ap.add_argument('--sizes', default='3,256,1024,1024@1000',
                    help='N or N@INTERVAL_MS, comma-separated')
    ap.add_argument('--old', default='', help='another build to compare')
    ap.add_argument('--faults', type=int, default=10)
    ap.add_argument('--commit', default='')
    args = ap.parse_args()
    started = time.strftime('%Y-%m-%d %H:%M')
    la0 = load_average()
    rows, det = [], None
    with Runner() as R:
        run = 0
        for size in [x for x in args.sizes.split(',') if x]:
            # "1024@1000": 1024 servers, MemsessCheckInterval 1000ms
            n, _, iv = size.partition('@')
            n, iv = int(n), int(iv) if iv else None
            log('cost: %d servers%s' % (n, ', interval %d ms' % iv if iv else ''))
            rows.append(cost(R, n, None, args.seconds, 'this', run, iv))
            run += 1
            if iv:
                continue
            if args.old:
                log('cost: %d servers, old build' % n)
                rows.append(cost(R, n, args.old, args.seconds, 'old', run))
                run += 1
        if args.faults:
            log('detection: %d faults of each kind' % args.faults)
            det = detection(R, args.faults)
    la1 = load_average()
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, 'probecost.md')
    with open(path, 'w') as f:
        w = lambda s='': f.write(s + '\n')  # noqa: E731
        w('# What the checker costs, and how fast it detects')
        w()
        w('Generated by `bench/probecost.sh` on %s (load average (1 min) at '
          'start %s, at the end %s; the machine is shared).' % (started, la0, la1))
        w(machine_line())
        w()
        w('Defaults: `MemsessCheckInterval 200ms`, `MemsessCheckTimeout 100ms`, '
          'thresholds 2.  One Apache, prefork, 4 children, no requests; '
          '%g s per size.  *Apache CPU* is every process of that Apache '
          '(the checker child with its probe threads, and the 100 ms tick of '
          'the others), in %% of one core; *memcached CPU* likewise for all '
          'the memcached processes, less what they burnt by themselves in '
          '3 s before the Apache started (*idle*); *TIME_WAIT*: sockets to '
          'them in that state at the end (each run has ports of its own).  '
          'The memcached servers run on the same 2 cores as the Apache (and '
          'as whatever else the machine runs): with 1024 of them the machine '
          'is saturated, and probes that wait for a CPU time out.'
          % args.seconds)
        if args.old:
            w('*old*: the build before issue 10 (`%s`), same interval: a new '
              'connection for every probe.' % args.old)
        w()
        w('| build | servers | probes/s | Apache CPU | memcached CPU (idle) | TIME_WAIT | up / down at the end |')
        w('|---|---|---|---|---|---|---|')
        for r in rows:
            w('| %s | %d | %.0f | %.1f %% | %.1f %% (%.1f %%) | %d | %d / %d |' % (
                r['label'], r['servers'], r['probes_s'], r['apache_cpu'],
                r['memcached_cpu'], r['memcached_idle'], r['time_wait'],
                r['up'], r['down_at_end']))
        if det:
            w()
            w('Detection at the defaults, three memcached, %d faults of each '
              'kind (min / median / max, from the signal to the status page '
              'showing `down`, polled every 10 ms):' % args.faults)
            w()
            w('| fault | detected |')
            w('|---|---|')
            w('| hung (SIGSTOP) | %s |' % fmt_ms(det['hung']))
            w('| dead (SIGKILL, refused) | %s |' % fmt_ms(det['dead']))
            w()
            w('All: hung %s; dead %s.' % (
                ' '.join('%d' % (x * 1000) if x is not None else 'never' for x in det['hung']),
                ' '.join('%d' % (x * 1000) if x is not None else 'never' for x in det['dead'])))
    log('wrote %s' % path)
    print(open(path).read())


if __name__ == '__main__':
    main()
