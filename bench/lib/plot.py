"""gnuplot figures of the benchmarks (PNG, gnuplot-nox's pngcairo or png)."""

import os
import subprocess

from benchlib import FAILED, LOST, NOSESS, OK, STALE, WORK, log


def _terminal():
    out = subprocess.run(['gnuplot', '-e', 'set terminal'], capture_output=True,
                         text=True)
    text = out.stdout + out.stderr
    if 'pngcairo' in text:
        return 'pngcairo noenhanced font "DejaVu Sans,10"'
    return 'png'


def _gnuplot(script, name):
    path = os.path.join(WORK, name + '.gp')
    with open(path, 'w') as f:
        f.write(script)
    r = subprocess.run(['gnuplot', path], capture_output=True, text=True)
    if r.returncode != 0:
        log('gnuplot %s failed: %s' % (name, r.stderr.strip()))
        return False
    return True


def _markers(events, t_shift, ymax_label):
    """set arrow/label lines for vertical event markers."""
    out = []
    for i, (t, label) in enumerate(events):
        x = t - t_shift
        out.append('set arrow from %.3f, graph 0 to %.3f, graph 1 nohead '
                   'dt 2 lc rgb "#555555"' % (x, x))
        out.append('set label "%s" at %.3f, graph %.2f rotate by 90 right '
                   'font ",8" tc rgb "#333333"' % (label, x + 0.15,
                                                   0.98 - 0.0 * i))
    return '\n'.join(out)


def failover_timeline(results, png):
    """bench/failover.sh: latency of every request over the run, one panel
    per run (MemsessReplicas / MemsessFailover / MemsessRejoin), coloured by
    outcome."""
    panels = []
    for res in results:
        r = res['key']
        files = {}
        recs_path = os.path.join(WORK, 'failover-%s.csv' % r)
        if not os.path.exists(recs_path):
            continue
        by = {OK: [], LOST: [], FAILED: [], STALE: [], NOSESS: []}
        with open(recs_path) as f:
            next(f)
            for line in f:
                t, lat, _u, _l, _st, _n, outcome = line.strip().split(',')
                by[outcome].append('%s %s' % (t, max(float(lat), 0.1)))
        for k, rows in by.items():
            p = os.path.join(WORK, 'failover-%s-%s.dat' % (r, k))
            with open(p, 'w') as f:
                f.write('\n'.join(rows) + '\n' if rows else '0 0.1\n')
            files[k] = (p, len(rows))
        ev = res['ev']
        marks = [(ev['kill'], 'SIGKILL'), (ev['kill_down'], 'down'),
                 (ev['restart'], 'restart'), (ev['restart_up'], 'up'),
                 (ev['freeze'], 'SIGSTOP'), (ev['freeze_down'], 'down'),
                 (ev['thaw'], 'SIGCONT'), (ev['thaw_up'], 'up')]
        panels.append((res['title'], files, marks))
    if not panels:
        return
    s = ['set terminal %s size 1100,%d' % (_terminal(), 300 * len(panels)),
         'set output "%s"' % png,
         'set multiplot layout %d,1' % len(panels),
         'set logscale y', 'set grid ytics',
         'set ylabel "latency (ms)"', 'set xlabel "time (s)"',
         'set key outside right top', 'set yrange [0.3:20000]']
    colours = {OK: '#9aa5b1', LOST: '#e8871e', STALE: '#3b75af',
               FAILED: '#c0392b', NOSESS: '#8e44ad'}
    for title, files, marks in panels:
        s.append('unset arrow; unset label')
        s.append('set title "mod_memsess, %s: every request by start time"'
                 % title)
        s.append(_markers(marks, 0.0, None))
        plots = []
        for k in (OK, STALE, NOSESS, LOST, FAILED):
            p, n = files[k]
            plots.append('"%s" using 1:2 with points pt 7 ps 0.35 lc rgb "%s" '
                         'title "%s (%d)"' % (p, colours[k], k, n))
        s.append('plot ' + ', '.join(plots))
    s.append('unset multiplot')
    _gnuplot('\n'.join(s) + '\n', 'failover-timeline')


PALETTE = ['#c0392b', '#e8871e', '#8e44ad', '#27ae60', '#2c7fb8', '#17becf']


def lines(series, marks, png, name, title, xlabel, ylabel, xrange,
          yrange=None, logscale=False, style='linespoints pt 7 ps 0.4 lw 1.5',
          key='outside right top'):
    """One line per (title, .dat file of "x y" rows) in series, vertical
    markers at marks [(x, label)], 1100 x 480."""
    s = ['set terminal %s size 1100,480' % _terminal(),
         'set output "%s"' % png, 'set grid',
         'set xrange [%.1f:%.1f]' % xrange,
         'set xlabel "%s"' % xlabel, 'set ylabel "%s"' % ylabel,
         'set key %s' % key, 'set title "%s"' % title]
    if logscale:
        s.append('set logscale y')
    if yrange:
        s.append('set yrange [%s:%s]' % yrange)
    s.append(_markers(marks, 0.0, None))
    plots = []
    for i, (label, path) in enumerate(series):
        plots.append('"%s" using 1:2 with %s lc rgb "%s" title "%s"'
                     % (path, style, PALETTE[i % len(PALETTE)], label))
    s.append('plot ' + ', '.join(plots))
    return _gnuplot('\n'.join(s) + '\n', name)


def compare_freeze(series, marks, png, span):
    """bench/compare.sh: per setup, the slowest request started in each
    250 ms bin, from 3 s before the freeze to `span` s after it."""
    lines(series, marks, png, 'compare-freeze',
          'Latency through a freeze, detection and recovery (SIGCONT)',
          'seconds since one of three memcached servers was frozen (SIGSTOP)',
          'slowest request started in 250 ms (ms)', (-3, span),
          yrange=('0.3', '30000'), logscale=True)


def peers_errors(series, marks, png, xrange):
    """bench/peers.sh: per mode, the follow-ups started in each second that
    were stale or lost, x in seconds since the cut over xrange (from, to)."""
    lines(series, marks, png, 'peers-errors',
          'Three web servers round robin; web1 alone cut off from memcached 2, '
          'then healed',
          'seconds since the cut (iptables DROP of web1\'s packets to '
          'memcached 2)',
          'stale + lost reads per second', xrange, yrange=('0', '*'),
          style='steps lw 1.5', key='inside right top')
