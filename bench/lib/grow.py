"""bench/grow.sh: a pool holding many sessions (100,000 of 1 KB by default)
grown from 3 to 4 memcached servers at graceful.

Four memcached, three of them in the pool; Apache with only MemsessServers
(the defaults: replicas 1, successor) and the SPEC check settings.  The
sessions are written where php-memcached puts them (lib/populate.php: the
same libmemcached, modulo distribution, one replica).  30 users with a
counter in their session run throughout.  The fourth server is added to
MemsessServers and Apache gets `-k graceful`: the new generation keeps
publishing the three-server list until the rebalance (its NOTICEs
MEMSESS0135/0136/0137) has copied every session where the four-server list
places it.

Figures: the time from graceful to the new list published, the rebalance's
own duration and counts, the requests served meanwhile and their p50/p99
against the healthy phase, and sessions lost or stale through it all.
"""

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (POOL_OPTIONS, Runner, bench_parser, bench_start,
                      error_log_lines, figures_head, healthy_load, log_filled,
                      loss_cell, now, poll_until, published, rate_cell,
                      spec_pool, summarize, write_report)

MEMC_PORTS = (31061, 31062, 31063, 31064)
APACHE_PORT = 31070


def main():
    args, _ = bench_start(bench_parser(__doc__, **POOL_OPTIONS))

    with Runner() as R:
        memcs, addrs, apache = spec_pool(R, 'grow', MEMC_PORTS, APACHE_PORT,
                                         listed=3)
        old, new = addrs[:3], addrs
        t0 = now()
        poll_until(lambda: published(apache)[0] == ','.join(old), 15, 0.1)

        tf = now()
        r = subprocess.run(['php', os.path.join(os.path.dirname(
            os.path.abspath(__file__)), 'populate.php'), ','.join(old),
            str(args.sessions), str(args.size), '1', '0'],
            capture_output=True, text=True)
        if r.stdout.strip() != str(args.sessions):
            raise RuntimeError('populate: %s %s' % (r.stdout, r.stderr))
        log_filled('wrote', args.sessions, args.size, tf, memcs)

        load, ev = healthy_load(APACHE_PORT, args.users, t0)
        with open(apache.conf) as f:
            conf = f.read()
        conf = conf.replace('MemsessServers %s' % ' '.join(old),
                            'MemsessServers %s' % ' '.join(new))
        with open(apache.conf, 'w') as f:
            f.write(conf)
        # a first start's own rebalance (the placement taken over, issue 19)
        # logs MEMSESS0136/0137 too: only what comes after the graceful
        marks = {t: len(error_log_lines(apache.errlog, (t,)))
                 for t in ('MEMSESS0136', 'MEMSESS0137')}
        ev['graceful'] = now() - t0
        r = subprocess.run(['apache2', '-f', apache.conf, '-k', 'graceful'],
                           capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError('graceful: %s%s' % (r.stdout, r.stderr))
        seen = set()

        def flipped():
            text, rb = published(apache)
            if rb.get('state'):
                seen.add(rb['state'])
            return text == ','.join(new) and rb.get('state') == 'none'
        poll_until(flipped, 600)
        ev['published'] = now() - t0
        # the last after pass (MEMSESS0137): users keep going meanwhile
        poll_until(lambda: error_log_lines(apache.errlog, ('MEMSESS0137',))
                   [marks['MEMSESS0137']:], 300, 0.2)
        ev['cleaned'] = now() - t0
        time.sleep(3)
        ev['end'] = now() - t0
        load.stop()
        held = [m.items() for m in memcs]
        log_lines = error_log_lines(apache.errlog, ('MEMSESS0133', 'MEMSESS0135',
                                            'MEMSESS0136', 'MEMSESS0137',
                                            'MEMSESS0138', 'MEMSESS0140'))
        R.stop(apache)

    recs = load.snapshot()
    healthy = summarize(recs, ev['healthy'], ev['graceful'])
    during = summarize(recs, ev['graceful'], ev['published'])
    after = summarize(recs, ev['published'], ev['end'])
    cycle = summarize(recs, ev['healthy'], ev['end'])
    done = ([l for l in log_lines if 'MEMSESS0136' in l][marks['MEMSESS0136']:]
            or [''])[0]
    took = re.search(r'after (\d+)ms', done)
    counts = re.search(r'(\d+) keys examined, (\d+) copied', done)
    lines = figures_head(
        'A pool of %d sessions grown from 3 to 4 servers (bench/grow.sh)'
        % args.sessions,
        'Four memcached, three in `MemsessServers` (replicas 1, successor), '
        'interval 1s, timeout 250ms; %d sessions of %d bytes written where '
        'php-memcached puts them, %d users with a counter throughout. The '
        'fourth server added to `MemsessServers`, `apache2 -k graceful`: the '
        'three-server list stays published until the rebalance has moved '
        'every session.' % (args.sessions, args.size, args.users)) + [
        '| graceful to the new list published | %.1f s |' % (
            ev['published'] - ev['graceful']),
        '| the rebalance itself (MEMSESS0135 to the flip) | %s |' % (
            '%.1f s' % (int(took.group(1)) / 1000.0) if took else 'n/a'),
        '| the flip to the end of the last after pass (MEMSESS0137) | %.1f s |' % (
            ev['cleaned'] - ev['published']),
        '| keys examined / copied | %s |' % (
            '%s / %s' % counts.groups() if counts else 'n/a'),
        '| states seen on the status page | %s |' % ', '.join(sorted(seen)),
        '| items per server afterwards | %s |' % ', '.join(str(h) for h in held),
        '| requests served from graceful to published | %s |' % rate_cell(during),
        '| healthy, before | %s |' % rate_cell(healthy, count=False),
        '| after, with four servers | %s |' % rate_cell(after, count=False),
        '| sessions lost / stale through it all | %s |' % loss_cell(cycle),
        '',
        'Stale or lost answers, seconds from the flip (user, counter): %s' % (
            ', '.join('%+.3f (%d, %s)' % (r.t - ev['published'], r.uid, r.n)
                      for r in recs if r.outcome in ('stale', 'lost')
                      and ev['healthy'] <= r.t < ev['end']) or 'none'),
        '',
    ]
    write_report('grow', lines, log_lines, width=400)


if __name__ == '__main__':
    main()
