"""Shared parts of the mod_memsess benchmarks (bench/*.sh).

Processes: memcached, Apache (its own small httpd.conf, prefork unless
told, -f), php-fpm and nutcracker, all on 127.0.0.1 ports 31000-31999, each
started here and stopped here by its own pid (never by name).  A Runner owns them and stops
them on exit, on an exception and on SIGINT/SIGTERM/SIGHUP.

Load: N simulated users, one thread and one cookie each, against
bench/htdocs/session.php.  Every request is recorded with its start time
(monotonic, same clock as the fault injection), its latency and what it
found (counter, new session, save_path), so that every phase can be cut out
of one run afterwards.

Running one: what the drivers do alike is here too, so that one piece of
code serves them all: their options (bench_parser, bench_start,
POOL_OPTIONS), the pool and its Apache at the SPEC check settings
(spec_body, spec_pool), waiting (poll_until, watch_up,
StatusWatch.reached), the load's phases (healthy_load, run_phases) and
the report (report_start, figures_head, rate_cell, loss_cell,
phase_cells, still_out, save_report, write_report).
"""

import argparse
import http.client
import json
import os
import pwd
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP = os.path.dirname(BENCH)
WORK = os.path.join(BENCH, 'work')
RESULTS = os.path.join(BENCH, 'results')
HTDOCS = os.path.join(BENCH, 'htdocs')
MODDIR = '/usr/lib/apache2/modules'
MODULE_SO = os.environ.get('MEMSESS_SO') or os.path.join(WORK, 'mod_memsess.so')  # copied by lib/common.sh
HOST = '127.0.0.1'

IS_ROOT = os.geteuid() == 0
now = time.monotonic


def error_log_lines(errlog, tags):
    """The lines of an error log that hold any of tags (MEMSESSnnnn),
    stripped; none when the log is not there (yet)."""
    out = []
    try:
        with open(errlog) as f:
            for line in f:
                if any(t in line for t in tags):
                    out.append(line.strip())
    except OSError:
        pass
    return out


def fresh_memcached(memcs, victim=1):
    """Before a setup: the faulted server running and thawed, every server
    empty (what compare.py and fpm.py each did)."""
    m = memcs[victim]
    if m.proc is None or m.proc.poll() is not None:
        m.start()
    if m.frozen:
        m.thaw()
    for m in memcs:
        m.flush()


FILL_PHP = r'''<?php
[$prog, $servers, $count, $size] = $argv;
$m = new Memcached();
$m->setOption(Memcached::OPT_BINARY_PROTOCOL, true);
$m->setOption(Memcached::OPT_NUMBER_OF_REPLICAS, 1);
$m->setOption(Memcached::OPT_PREFIX_KEY, 'memc.sess.key.');
$m->setOption(Memcached::OPT_SERIALIZER, Memcached::SERIALIZER_PHP);
foreach (explode(',', $servers) as $s) {
    [$h, $p] = explode(':', $s);
    $m->addServer($h, (int)$p);
}
$pad = str_repeat('x', max(0, (int)$size - 40));
$batch = [];
for ($i = 0; $i < (int)$count; $i++) {
    $batch[sprintf('bench%021d', $i)] = 'n|i:1;pad|s:' . strlen($pad) . ':"' . $pad . '";';
    if (count($batch) == 500) {
        $m->setMulti($batch, 3600);
        $batch = [];
    }
}
if ($batch) {
    $m->setMulti($batch, 3600);
}
echo $m->getResultCode() == Memcached::RES_SUCCESS ? "ok\n" : $m->getResultMessage() . "\n";
'''


def fill_sessions(addrs, count, size):
    """count sessions of size bytes written into the servers addrs the way
    php-memcached's session handler writes them (a PHP CLI script, the
    Memcached class set up like the handler: binary protocol, modulo
    distribution, one replica, the memc.sess.key. prefix; an hour's
    lifetime)."""
    fill = os.path.join(WORK, 'fill-sessions.php')
    with open(fill, 'w') as f:
        f.write(FILL_PHP)
    r = subprocess.run(['php', fill, ','.join(addrs), str(count), str(size)],
                       capture_output=True, text=True)
    if r.stdout.strip() != 'ok':
        raise RuntimeError('fill: %s %s' % (r.stdout, r.stderr))


def log(*args):
    print('[%s]' % time.strftime('%H:%M:%S'), *args, flush=True)


def sleep_until(t0, t):
    """Sleeps until t seconds after t0 (on the monotonic clock)."""
    d = t - (now() - t0)
    if d > 0:
        time.sleep(d)


def port_open(port, host=HOST):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_port(port, deadline=10.0):
    end = now() + deadline
    while now() < end:
        if port_open(port):
            return True
        time.sleep(0.02)
    raise RuntimeError('nothing listens on port %d after %.0fs' % (port, deadline))


def http_get(port, path, host_header=None, timeout=5.0):
    """One GET on a fresh connection: (status, body)."""
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request('GET', path, headers={'Host': host_header} if host_header else {})
        r = c.getresponse()
        return r.status, r.read().decode('utf-8', 'replace')
    finally:
        c.close()


def wait_http(port, path='/', deadline=15.0, host_header=None):
    end = now() + deadline
    last = None
    while now() < end:
        try:
            st, _ = http_get(port, path, host_header, timeout=2)
            if st == 200:
                return
            last = 'HTTP %d' % st
        except OSError as e:
            last = str(e)
        time.sleep(0.02)
    raise RuntimeError('http://%s:%d%s did not answer 200 (%s)' % (HOST, port, path, last))


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop_child(proc, grace):
    """SIGTERM to a child of ours (a Popen), SIGKILL after grace seconds."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def accept_queue(port):
    """Connections waiting in the accept queue of the listener on
    127.0.0.1:port (a frozen memcached never accepts: every connection made
    to it stays there).  /proc/net/tcp shows it as rx_queue of the LISTEN
    socket."""
    want = '0100007F:%04X' % port
    with open('/proc/net/tcp') as f:
        next(f)
        for line in f:
            fl = line.split()
            if fl[1] == want and fl[3] == '0A':
                return int(fl[4].split(':')[1], 16)
    return None


class QueueWatch:
    """Samples accept_queue(port) every `every` seconds: [(t, n)]."""

    def __init__(self, port, t0, every=0.05):
        self.port, self.t0, self.every = port, t0, every
        self.samples = []
        self.stop_evt = threading.Event()
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        while not self.stop_evt.is_set():
            q = accept_queue(self.port)
            if q is not None:
                self.samples.append((now() - self.t0, q))
            self.stop_evt.wait(self.every)

    def at(self, t):
        """The last sample at or before t."""
        best = None
        for ts, q in self.samples:
            if ts <= t:
                best = q
            else:
                break
        return best

    def stop(self):
        self.stop_evt.set()
        self.th.join(2)


# ---------------------------------------------------------------------------
# Processes

class Memcached:
    def __init__(self, runner, port, mem=64, extra=()):
        self.runner, self.port, self.mem, self.extra = runner, port, mem, list(extra)
        self.proc = None
        self.frozen = False

    @property
    def addr(self):
        return '%s:%d' % (HOST, self.port)

    def start(self, wait=True):
        if port_open(self.port):
            raise RuntimeError('port %d is already taken' % self.port)
        cmd = ['memcached', '-l', HOST, '-p', str(self.port), '-U', '0',
               '-m', str(self.mem), '-t', '1', '-c', '4096'] + self.extra
        if IS_ROOT:
            cmd += ['-u', 'nobody']
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.frozen = False
        if wait:
            wait_port(self.port)
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def freeze(self):
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self):
        os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    def kill(self):
        """SIGKILL: the port refuses at once."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.frozen = False

    def stop(self):
        """SIGKILL: these servers hold nothing worth a graceful exit (which
        takes memcached 1.6 a second)."""
        self.kill()

    def command(self, line, timeout=2.0, tries=3):
        """One text-protocol command, answer up to END/OK.  Tried again on
        a connection that the module's release helper shut down (it
        destroys every process's sockets to a server the checker marks
        down: ECONNABORTED) or that was reset."""
        for n in range(tries):
            try:
                return self._command(line, timeout)
            except (ConnectionAbortedError, ConnectionResetError):
                if n == tries - 1:
                    raise
                time.sleep(0.2)

    def _command(self, line, timeout):
        with socket.create_connection((HOST, self.port), timeout=timeout) as s:
            s.sendall(line.encode() + b'\r\n')
            buf = b''
            while not (buf.endswith(b'END\r\n') or buf.endswith(b'OK\r\n')
                       or buf.endswith(b'ERROR\r\n')):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            return buf.decode('utf-8', 'replace')

    def stats(self):
        out = {}
        for line in self.command('stats').splitlines():
            f = line.split()
            if len(f) == 3 and f[0] == 'STAT':
                out[f[1]] = int(f[2]) if f[2].isdigit() else f[2]
        return out

    def items(self):
        """How many items it holds (stats curr_items)."""
        return int(self.stats().get('curr_items', 0))

    def flush(self):
        self.command('flush_all')


class Apache:
    """An Apache of its own: ServerRoot bench/work/<name>, prefork, mod_php,
    optionally mod_memsess, started with apache2 -f conf -k start; its
    children run as `user` (root only: nobody unless told)."""

    def __init__(self, runner, name, port, body='', memsess=True, php=True,
                 workers=100, start_servers=None, loglevel='notice',
                 listen_extra=(), keepalive=True, modules=(), user='nobody',
                 group='nogroup', mpm='prefork', mpm_defaults=False):
        self.runner, self.name, self.port = runner, name, port
        self.dir = os.path.join(WORK, name)
        self.conf = os.path.join(self.dir, 'httpd.conf')
        self.pidfile = os.path.join(self.dir, 'httpd.pid')
        self.errlog = os.path.join(self.dir, 'error.log')
        os.makedirs(os.path.join(self.dir, 'run'), exist_ok=True)
        if os.path.exists(self.errlog):
            os.unlink(self.errlog)
        # the part every Apache of its own has: tools/httpd-conf.sh
        args = ['bash', os.path.join(TOP, 'tools', 'httpd-conf.sh'),
                '--comment', 'generated by bench/lib/benchlib.py',
                '--root', self.dir, '--name', HOST,
                '--listen', '%s:%d' % (HOST, port)]
        for l in listen_extra:
            args += ['--listen', l]
        args += ['--pidfile', self.pidfile,
                 '--runtime-dir', os.path.join(self.dir, 'run'),
                 '--errorlog', self.errlog,
                 '--errorlog-format', '[%{cu}t] [%-m:%l] [pid %P] %M',
                 '--loglevel', loglevel, '--mpm', mpm,
                 '--module', 'authz_host',
                 '--docroot', HTDOCS]
        for m in modules:
            args += ['--module', m]
        if php:
            args.append('--php')
        if memsess:
            args += ['--memsess', MODULE_SO, '--status-require', 'ip 127.0.0.1']
        if IS_ROOT:
            args += ['--user', user, '--group', group]
        if mpm_defaults:
            # the MPM at Apache's own defaults (prefork: 5 started, 5 to 10
            # spare, idle children reaped, 150 at most)
            lines = []
        elif mpm == 'prefork':
            ss = start_servers if start_servers is not None else min(workers, 40)
            lines = [
                'StartServers %d' % ss,
                'MinSpareServers %d' % min(ss, 10),
                'MaxSpareServers %d' % workers,
                'ServerLimit %d' % workers,
                'MaxRequestWorkers %d' % workers,
            ]
        else:
            # worker/event: every thread started up front (start_servers
            # is ignored), up to 64 threads a child
            threads = min(workers, 64)
            procs = -(-workers // threads)
            lines = [
                'StartServers %d' % procs,
                'ServerLimit %d' % procs,
                'ThreadLimit %d' % threads,
                'ThreadsPerChild %d' % threads,
                'MaxRequestWorkers %d' % (procs * threads),
                'MinSpareThreads %d' % threads,
                'MaxSpareThreads %d' % (procs * threads),
            ]
        lines += [
            'MaxConnectionsPerChild 0',
            'KeepAlive %s' % ('On' if keepalive else 'Off'),
            'MaxKeepAliveRequests 0',
            'KeepAliveTimeout 20',
            'Timeout 60',
            body,
        ]
        with open(self.conf, 'w') as f:
            subprocess.run(args, input='\n'.join(lines) + '\n', text=True,
                           stdout=f, check=True)
        self.pid = None

    def start(self, wait_path='/static.txt', deadline=30.0):
        if port_open(self.port):
            raise RuntimeError('port %d is already taken' % self.port)
        if os.path.exists(self.pidfile):
            os.unlink(self.pidfile)
        t0 = now()
        r = subprocess.run(['apache2', '-f', self.conf, '-k', 'start'],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError('apache2 %s did not start: %s%s' % (
                self.name, r.stdout, r.stderr))
        end = now() + 5
        while not os.path.exists(self.pidfile) and now() < end:
            time.sleep(0.01)
        with open(self.pidfile) as f:
            self.pid = int(f.read().strip())
        self.runner.apaches.append(self)
        if wait_path:
            wait_http(self.port, wait_path, deadline)
        self.started_in = now() - t0
        return self

    def stop(self):
        if not self.pid:
            return
        pid, self.pid = self.pid, None
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        end = now() + 15
        while pid_alive(pid) and now() < end:
            time.sleep(0.05)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        # the children go with their parent; wait for the port to be free
        end = now() + 10
        while port_open(self.port) and now() < end:
            time.sleep(0.05)

    def status(self, timeout=2.0):
        st, body = http_get(self.port, '/memsess-status?json', timeout=timeout)
        if st != 200:
            raise RuntimeError('status page: HTTP %d' % st)
        return json.loads(body)

    def states(self):
        return {s['address']: s['state'] for s in self.status()['servers']}


class Nutcracker:
    """twemproxy: ketama over `servers`, auto_eject_hosts; as `user` when
    given (root only), so that a rule matching that user's uid hits it."""

    def __init__(self, runner, name, port, stats_port, servers,
                 failure_limit=1, retry_timeout=2000, timeout=200, user=None):
        self.runner, self.port, self.stats_port = runner, port, stats_port
        self.user = user if IS_ROOT else None
        self.dir = os.path.join(WORK, name)
        os.makedirs(self.dir, exist_ok=True)
        if self.user:
            os.chown(self.dir, pwd.getpwnam(self.user).pw_uid, -1)
            if os.path.exists(os.path.join(self.dir, 'nutcracker.log')):
                os.unlink(os.path.join(self.dir, 'nutcracker.log'))
        self.conf = os.path.join(self.dir, 'nutcracker.yml')
        self.log = os.path.join(self.dir, 'nutcracker.log')
        with open(self.conf, 'w') as f:
            f.write('memsess:\n'
                    '  listen: %s:%d\n'
                    '  hash: fnv1a_64\n'
                    '  distribution: ketama\n'
                    '  auto_eject_hosts: true\n'
                    '  server_failure_limit: %d\n'
                    '  server_retry_timeout: %d\n'
                    '  timeout: %d\n'
                    '  preconnect: false\n'
                    '  servers:\n' % (HOST, port, failure_limit,
                                      retry_timeout, timeout))
            for i, s in enumerate(servers):
                f.write('   - %s:1 m%d\n' % (s, i + 1))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ['nutcracker', '-c', self.conf, '-a', HOST, '-s',
             str(self.stats_port), '-i', '100', '-o', self.log],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, user=self.user,
            group='nogroup' if self.user else None,
            extra_groups=[] if self.user else None)
        self.runner.others.append(self)
        wait_port(self.port)
        wait_port(self.stats_port)
        return self

    def stats(self):
        with socket.create_connection((HOST, self.stats_port), timeout=1) as s:
            buf = b''
            while True:
                c = s.recv(65536)
                if not c:
                    break
                buf += c
        return json.loads(buf)

    def stop(self):
        stop_child(self.proc, 5)


class Nginx:
    """nginx round robin over Apaches on 127.0.0.1:`upstreams`, non-sticky,
    no balancer health checks (max_fails=0): the topology of tools/demo.sh.
    Runs in the foreground (daemon off) as our child, stopped by its pid."""

    def __init__(self, runner, name, port, upstreams):
        self.runner, self.port = runner, port
        self.dir = os.path.join(WORK, name)
        os.makedirs(os.path.join(self.dir, 'tmp'), exist_ok=True)
        self.conf = os.path.join(self.dir, 'nginx.conf')
        self.errlog = os.path.join(self.dir, 'error.log')
        servers = ''.join('        server %s:%d max_fails=0;\n' % (HOST, p)
                          for p in upstreams)
        temp = ''.join('    %s_temp_path %s/tmp/%s;\n' % (k, self.dir, k)
                       for k in ('client_body', 'proxy', 'fastcgi', 'uwsgi',
                                 'scgi'))
        with open(self.conf, 'w') as f:
            f.write('# generated by bench/lib/benchlib.py\n'
                    '%s'
                    'worker_processes 1;\n'
                    'daemon off;\n'
                    'pid %s/nginx.pid;\n'
                    'error_log %s;\n'
                    'events { worker_connections 1024; }\n'
                    'http {\n'
                    '    access_log off;\n'
                    '%s'
                    '    upstream web {\n%s    }\n'
                    '    server {\n'
                    '        listen %s:%d;\n'
                    '        location / {\n'
                    '            proxy_pass http://web;\n'
                    '            proxy_next_upstream error;\n'
                    '            proxy_read_timeout 30s;\n'
                    '        }\n'
                    '    }\n'
                    '}\n' % ('user nobody nogroup;\n' if IS_ROOT else '',
                              self.dir, self.errlog, temp, servers, HOST,
                              port))
        self.proc = None

    def start(self):
        if port_open(self.port):
            raise RuntimeError('port %d is already taken' % self.port)
        self.proc = subprocess.Popen(
            ['nginx', '-p', self.dir, '-e', self.errlog, '-c', self.conf],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        self.runner.others.append(self)
        wait_port(self.port)
        return self

    def stop(self):
        stop_child(self.proc, 10)


class PhpFpm:
    """A php-fpm pool of its own (Debian's php-fpm8.x binary with its
    php.ini and conf.d, as php8.x-fpm.service runs it) on 127.0.0.1:port,
    `pm = static` with `children` workers, its workers as `user` (root
    only); in the foreground (-F) as our child, stopped by its pid.  Apache
    reaches it with `SetHandler "proxy:fcgi://127.0.0.1:port"` (handler())."""

    def __init__(self, runner, name, port, children=40, user='www-data',
                 group='www-data'):
        self.runner, self.port = runner, port
        bins = sorted(b for b in os.listdir('/usr/sbin')
                      if re.match(r'php-fpm[0-9.]*$', b))
        if not bins:
            raise RuntimeError('no /usr/sbin/php-fpm* (package php-fpm)')
        self.bin = os.path.join('/usr/sbin', bins[-1])
        self.dir = os.path.join(WORK, name)
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, 'php-fpm.conf')
        self.log = os.path.join(self.dir, 'php-fpm.log')
        if os.path.exists(self.log):
            os.unlink(self.log)
        with open(self.conf, 'w') as f:
            f.write('; generated by bench/lib/benchlib.py\n'
                    '[global]\n'
                    'pid = %s/php-fpm.pid\n'
                    'error_log = %s\n'
                    'daemonize = no\n'
                    '[bench]\n'
                    '%s'
                    'listen = %s:%d\n'
                    'listen.backlog = 511\n'
                    'pm = static\n'
                    'pm.max_children = %d\n'
                    'clear_env = no\n'
                    % (self.dir, self.log,
                       'user = %s\ngroup = %s\n' % (user, group) if IS_ROOT
                       else '', HOST, port, children))
        self.proc = None

    def handler(self):
        """The Apache lines that send .php files to this pool."""
        return ('<FilesMatch "\\.php$">\n'
                '    SetHandler "proxy:fcgi://%s:%d"\n'
                '</FilesMatch>\n' % (HOST, self.port))

    def start(self):
        if port_open(self.port):
            raise RuntimeError('port %d is already taken' % self.port)
        self.proc = subprocess.Popen([self.bin, '-F', '-y', self.conf],
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.runner.others.append(self)
        end = now() + 15
        while not port_open(self.port):
            if self.proc.poll() is not None or now() > end:
                raise RuntimeError('php-fpm did not start (see %s)' % self.log)
            time.sleep(0.05)
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def stop(self):
        # SIGTERM: php-fpm's fast shutdown, its workers with it
        stop_child(self.proc, 10)


# ---------------------------------------------------------------------------
# Looking at processes and logs

def proc_stats():
    """(pid, the fields of /proc/PID/stat after the command's name: state,
    ppid, ...) of every process there is."""
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % d) as f:
                st = f.read()
        except OSError:
            continue
        yield int(d), st.rsplit(')', 1)[1].split()


def children_of(pid):
    """The pids whose parent is pid."""
    return [p for p, fields in proc_stats() if int(fields[1]) == pid]


def proc_status(pid, field):
    """One field of /proc/PID/status (its text), or None."""
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith(field + ':'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return None


def checker_process_pid(apache):
    """mod_memsess's checker process of an Apache: the parent's child named
    memsess-check, or None (MemsessCheckerProcess Off, or not started)."""
    for c in children_of(apache.pid):
        try:
            with open('/proc/%d/comm' % c) as f:
                if f.read().strip() == 'memsess-check':
                    return c
        except OSError:
            continue
    return None


def published(apache):
    """The first pool's save_path published now and its rebalance (the
    status page's), or ('', {}) when the page does not answer."""
    try:
        pools = apache.status(timeout=2.0).get('pools') or [{}]
        return pools[0].get('published', ''), (pools[0].get('rebalance') or {})
    except Exception:
        return '', {}


def release_helper_pid(apache):
    """mod_memsess's release helper of an Apache started as root: the
    parent's child that keeps CAP_NET_ADMIN alone (CapEff 0x1000), or
    None (MemsessReleaseHelper Off, not root)."""
    for c in children_of(apache.pid):
        if proc_status(c, 'CapEff') == '0000000000001000':
            return c
    return None


def task_cpu(pid):
    """(CPU time in seconds on the scheduler's clock (ns resolution, from
    /proc/PID/schedstat, its threads summed), voluntary context switches,
    involuntary ones) of a process.  A process that waits in one blocking
    call between requests makes one voluntary switch per request."""
    cpu, vol, invol = 0, 0, 0
    for t in os.listdir('/proc/%d/task' % pid):
        with open('/proc/%d/task/%s/schedstat' % (pid, t)) as f:
            cpu += int(f.read().split()[0])
        with open('/proc/%d/task/%s/status' % (pid, t)) as f:
            for line in f:
                if line.startswith('voluntary_ctxt_switches:'):
                    vol += int(line.split()[1])
                elif line.startswith('nonvoluntary_ctxt_switches:'):
                    invol += int(line.split()[1])
    return cpu / 1e9, vol, invol


def sockstat():
    """The TCP line of /proc/net/sockstat as a dict (inuse, orphan, tw,
    alloc, mem): the sockets of this network namespace."""
    with open('/proc/net/sockstat') as f:
        for line in f:
            if line.startswith('TCP:'):
                fl = line.split()[1:]
                return {fl[i]: int(fl[i + 1]) for i in range(0, len(fl) - 1, 2)}
    return {}


LOG_STAMP_RE = re.compile(r'^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(\.\d+)?')


def write_report(name, lines, notices, title='The NOTICEs:', width=None):
    """Writes RESULTS/NAME.md: lines, then the log lines notices (their
    timestamps cut, each at most width characters) as a fenced block under
    title; prints it too."""
    lines = lines + [title, '', '```'] + [
        re.sub(r'^\[[^]]*\] ', '', l)[:width] for l in notices] + ['```', '']
    out = os.path.join(RESULTS, name + '.md')
    with open(out, 'w') as f:
        f.write('\n'.join(lines))
    print('\n'.join(lines))
    log('wrote %s' % out)


def log_stamped(errlog, tags, since=0.0):
    """[(epoch seconds, line)] of the error-log lines that hold any of tags,
    at or after `since` (epoch), read from the microsecond timestamps the
    benchmarks' ErrorLogFormat ("[%{cu}t] ...") writes."""
    out = []
    for line in error_log_lines(errlog, tags):
        m = LOG_STAMP_RE.match(line)
        if not m:
            continue
        t = time.mktime(time.strptime(m.group(1), '%Y-%m-%d %H:%M:%S')) \
            + float(m.group(2) or 0)
        if t >= since:
            out.append((t, line))
    return out


class Runner:
    """Owns every process a benchmark starts and stops them all, by pid."""

    def __init__(self):
        self.memcacheds, self.apaches, self.others = [], [], []
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame):
        raise SystemExit('stopped by signal %d' % signum)

    def memcached(self, port, **kw):
        m = Memcached(self, port, **kw).start()
        self.memcacheds.append(m)
        return m

    def apache(self, name, port, body='', **kw):
        return Apache(self, name, port, body, **kw)

    def nutcracker(self, *a, **kw):
        return Nutcracker(self, *a, **kw).start()

    def nginx(self, *a, **kw):
        return Nginx(self, *a, **kw).start()

    def fpm(self, *a, **kw):
        return PhpFpm(self, *a, **kw).start()

    def stop(self, proc):
        """Stops one process started by this runner and forgets it."""
        proc.stop()
        for lst in (self.apaches, self.others, self.memcacheds):
            if proc in lst:
                lst.remove(proc)

    def cleanup(self):
        for a in self.apaches:
            try:
                a.stop()
            except Exception as e:  # keep going: stop everything we can
                log('stopping apache %s: %s' % (a.name, e))
        for o in self.others:
            o.stop()
        for m in self.memcacheds:
            m.stop()
        self.apaches, self.others, self.memcacheds = [], [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False


# ---------------------------------------------------------------------------
# The load: simulated users

OK, FAILED, NOSESS, LOST, STALE = 'ok', 'failed', 'nosess', 'lost', 'stale'

BODY_RE = re.compile(r'n=(\d+) new=(\d) w=(\d) path=(.*)')


class Record:
    __slots__ = ('t', 'lat', 'uid', 'login', 'status', 'n', 'outcome', 'path')

    def __init__(self, t, lat, uid, login, status, n, outcome, path):
        self.t, self.lat, self.uid, self.login = t, lat, uid, login
        self.status, self.n, self.outcome, self.path = status, n, outcome, path


class Load:
    """users threads; each logs in (a request without cookie creates the
    session, counter 1) and then follows up (counter + 1).  followups=0:
    one session for the whole run; followups=k: after k follow-ups the user
    logs out (drops the cookie) and logs in again.

    Outcomes of a request:
      failed  HTTP error, connection error or client timeout
      nosess  HTTP 200 but session_start() failed: no session at all in
              this request (the user sees an error or the login page; the
              session may still be there for the next request)
      lost    a follow-up that found a new, empty session: counter reset
      stale   a follow-up whose counter went backwards or did not advance
              (an older copy of the session, or a write that was lost), or
              jumped ahead (the previous follow-up read an older copy: the
              write it made is lost; several web servers, or replicas)
      ok      everything else
    """

    def __init__(self, port, users=30, followups=0, think=0.1, timeout=15.0,
                 path='/session.php', t0=None):
        self.port, self.users, self.followups = port, users, followups
        self.think, self.timeout, self.path = think, timeout, path
        self.t0 = t0 if t0 is not None else now()
        self.records = []
        self.lock = threading.Lock()
        self.stop_evt = threading.Event()
        self.threads = []
        self.paths = {}

    def _path_id(self, p):
        with self.lock:
            return self.paths.setdefault(p, p)

    def start(self):
        for uid in range(self.users):
            th = threading.Thread(target=self._user, args=(uid,), daemon=True)
            th.start()
            self.threads.append(th)
            time.sleep(self.think / self.users)   # spread the users out
        return self

    def stop(self, drain=None):
        """Stops the users; waits for requests still out (up to drain s)."""
        self.stop_evt.set()
        end = now() + (self.timeout + 2 if drain is None else drain)
        for th in self.threads:
            th.join(max(0.0, end - now()))
        return sum(th.is_alive() for th in self.threads)

    def _user(self, uid):
        rnd = random.Random(uid)
        conn = None
        cookie = None
        expected = 0
        follows = 0
        while not self.stop_evt.is_set():
            login = cookie is None
            headers = {'Cookie': cookie} if cookie else {}
            t = now()
            status, n, path = 0, None, None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, self.port,
                                                      timeout=self.timeout)
                conn.request('GET', self.path, headers=headers)
                resp = conn.getresponse()
                body = resp.read().decode('utf-8', 'replace')
                status = resp.status
                setc = resp.getheader('Set-Cookie')
                if setc and login:
                    cookie = setc.split(';', 1)[0]
                if resp.will_close:
                    conn.close()
                    conn = None
                m = BODY_RE.match(body)
                if m:
                    n = int(m.group(1))
                    path = self._path_id(m.group(4).strip())
            except (socket.timeout, TimeoutError):
                status = 0
            except (OSError, http.client.HTTPException):
                status = -1
            lat = now() - t
            if status in (0, -1) and conn is not None:
                conn.close()
                conn = None

            if status != 200 or n is None:
                outcome = FAILED
                if login:
                    cookie = None
            elif n == 0:
                outcome = NOSESS          # session_start() failed
                if login:
                    cookie = None
                else:
                    follows += 1
            elif login:
                outcome, expected, follows = OK, n, 0
            else:
                follows += 1
                if n == expected + 1:
                    outcome, expected = OK, n
                elif n == 1:
                    outcome, expected = LOST, 1
                else:
                    outcome, expected = STALE, n
            rec = Record(t - self.t0, lat, uid, login, status, n, outcome, path)
            with self.lock:
                self.records.append(rec)
            if self.followups and not login and follows >= self.followups:
                cookie = None           # log out: the next request logs in
            self.stop_evt.wait(self.think * rnd.uniform(0.5, 1.5))
        if conn is not None:
            conn.close()

    def snapshot(self):
        with self.lock:
            return list(self.records)


def pct(values, p):
    if not values:
        return float('nan')
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(v) - 1)
    return v[f] + (v[c] - v[f]) * (k - f)


def summarize(records, t_from, t_to):
    """Figures of the requests that started in [t_from, t_to)."""
    rs = [r for r in records if t_from <= r.t < t_to]
    lats = [r.lat for r in rs]
    done = [r for r in rs if r.outcome != FAILED]
    dur = max(t_to - t_from, 1e-9)
    follow = [r for r in rs if not r.login]
    return {
        'from': t_from, 'to': t_to, 'duration': t_to - t_from,
        'requests': len(rs),
        'rps': len(done) / dur,
        'p50': pct(lats, 50), 'p99': pct(lats, 99),
        'max': max(lats) if lats else float('nan'),
        'failed': sum(r.outcome == FAILED for r in rs),
        'nosess': sum(r.outcome == NOSESS for r in rs),
        'timeouts': sum(r.status == 0 for r in rs),
        'followups': len(follow),
        'lost': sum(r.outcome == LOST for r in rs),
        'stale': sum(r.outcome == STALE for r in rs),
        'users_lost': len({r.uid for r in rs if r.outcome == LOST}),
    }


def write_csv(path, records, t_shift=0.0):
    with open(path, 'w') as f:
        f.write('t_start_s,latency_ms,user,login,status,counter,outcome\n')
        for r in sorted(records, key=lambda r: r.t):
            f.write('%.4f,%.2f,%d,%d,%d,%s,%s\n' % (
                r.t - t_shift, r.lat * 1000, r.uid, r.login, r.status,
                '' if r.n is None else r.n, r.outcome))


# ---------------------------------------------------------------------------
# Watching the module's status page

class StatusWatch:
    """Polls /memsess-status?json every `every` seconds and keeps, per
    server, the first time each state was seen after mark()."""

    def __init__(self, apache, every=0.02, t0=None):
        self.apache, self.every = apache, every
        self.t0 = t0 if t0 is not None else now()
        self.cv = threading.Condition()
        self.current = {}
        self.raw = {}
        self.history = []         # [(t, {addr: checks})]
        self.states_history = []  # [(t, {addr: state})]
        self.errors = 0
        self.stop_evt = threading.Event()
        self.th = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.th.start()
        return self

    def stop(self):
        self.stop_evt.set()
        self.th.join(5)

    def _run(self):
        conn = None
        while not self.stop_evt.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, self.apache.port,
                                                      timeout=2)
                conn.request('GET', '/memsess-status?json')
                r = conn.getresponse()
                body = r.read()
                t = now() - self.t0
                doc = json.loads(body)
                with self.cv:
                    self.current = {s['address']: s['state'] for s in doc['servers']}
                    self.raw = {s['address']: s for s in doc['servers']}
                    self.seen_at = t
                    self.history.append((t, {s['address']: s['checks']
                                             for s in doc['servers']}))
                    self.states_history.append((t, dict(self.current)))
                    self.cv.notify_all()
            except Exception:
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
            self.stop_evt.wait(self.every)
        if conn is not None:
            conn.close()

    def wait(self, addr, state, deadline=15.0):
        """Time (relative to t0) of the first poll showing addr in state;
        None after deadline."""
        end = now() + deadline
        with self.cv:
            while now() < end:
                if self.current.get(addr) == state:
                    return self.seen_at
                self.cv.wait(end - now())
        return None

    def reached(self, addr, state, deadline=15.0, label=None):
        """wait(), but the time now (relative to t0) after deadline, logged
        as "LABEL: ADDR was not marked STATE within N s" when label is
        given."""
        t = self.wait(addr, state, deadline)
        if t is None:
            t = now() - self.t0
            if label:
                log('%s: %s was not marked %s within %.0f s'
                    % (label, addr, state, deadline))
        return t

    def first_after(self, addr, state, t):
        """Time of the first poll at or after t that showed addr in state,
        or None."""
        with self.cv:
            for ts, st in self.states_history:
                if ts >= t and st.get(addr) == state:
                    return ts
        return None

    def checks_at(self, addr, t):
        """Probes of addr counted by the last poll at or before t."""
        best = None
        with self.cv:
            for ts, checks in self.history:
                if ts > t:
                    break
                best = checks.get(addr)
        return best

    def server(self, addr):
        with self.cv:
            return dict(self.raw.get(addr, {}))

    def all_up(self, addrs, deadline=15.0):
        end = now() + deadline
        with self.cv:
            while now() < end:
                if all(self.current.get(a) == 'up' for a in addrs):
                    return True
                self.cv.wait(max(0.0, end - now()))
        return False


class ProxyWatch:
    """Polls a nutcracker's stats port every 50 ms and keeps the times
    (relative to t0) at which a server of `names` (one name or several)
    showed a new server_ejected_at: ejections [t], events [(t, name)]."""

    def __init__(self, proxy, names, t0):
        self.proxy, self.t0 = proxy, t0
        self.names = [names] if isinstance(names, str) else list(names)
        self.ejections, self.events = [], []
        self.last = {}
        self.stop_evt = threading.Event()
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        while not self.stop_evt.is_set():
            try:
                st = self.proxy.stats()
                for n in self.names:
                    v = st['memsess'][n].get('server_ejected_at', 0)
                    if n in self.last and v != self.last[n] and v:
                        self.ejections.append(now() - self.t0)
                        self.events.append((now() - self.t0, n))
                    self.last[n] = v
            except Exception:
                pass
            self.stop_evt.wait(0.05)

    def first_after(self, t):
        for e in self.ejections:
            if e >= t:
                return e
        return None

    def between(self, a, b, name=None):
        """Ejections in [a, b) (of server `name` only, when given)."""
        return [t for t, n in self.events
                if a <= t < b and (name is None or n == name)]

    def stop(self):
        self.stop_evt.set()
        self.th.join(2)


# ---------------------------------------------------------------------------
# Reporting helpers

def ms(x):
    if x != x:   # nan
        return '–'
    v = x * 1000
    if v >= 1000:
        return '%.1f s' % (v / 1000)
    if v >= 10:
        return '%.0f ms' % v
    return '%.1f ms' % v


def versions():
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True,
                                  text=True, timeout=10).stdout.strip()
        except Exception:
            return '?'

    def deb(pkg):
        return sh("dpkg-query -W -f='${Version}' %s 2>/dev/null" % pkg) or '?'

    return {
        'cpu': sh("nproc") + ' cores (' + sh(
            "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'") + ')',
        'os': sh(". /etc/os-release && echo $PRETTY_NAME"),
        'kernel': sh('uname -r'),
        'apache': sh("apache2 -v | sed -n 's/^Server version: //p'"),
        'php': deb('libapache2-mod-php8.2'),
        'php-memcached': deb('php8.2-memcached'),
        'libmemcached': deb('libmemcached11'),
        'memcached': deb('memcached'),
        'nutcracker': deb('nutcracker'),
        'module': sh('cd %s && git rev-parse --short HEAD' % TOP)
                  + (' + uncommitted changes' if sh(
                      'cd %s && git status --porcelain -- "*.c" "*.h"' % TOP)
                     else ''),
    }


def machine_line():
    v = versions()
    return ('Machine: %s, %s, kernel %s. %s, mod_php %s, php-memcached %s, '
            'libmemcached %s, memcached %s, nutcracker %s; mod_memsess at %s.'
            % (v['cpu'], v['os'], v['kernel'], v['apache'], v['php'],
               v['php-memcached'], v['libmemcached'], v['memcached'],
               v['nutcracker'], v['module']))


def report_head(title, script, started):
    """The first lines of a results file: its title, when and at which load
    it ran (started: the load average at its start), the machine line."""
    return ['# ' + title, '',
            'Generated by `bench/%s` on %s (load average (1 min) at start '
            '%s, at the end %s; the machine is shared).'
            % (script, time.strftime('%Y-%m-%d %H:%M'), started,
               load_average()),
            machine_line(), '']


def load_average():
    with open('/proc/loadavg') as f:
        return f.read().split()[0]


# ---------------------------------------------------------------------------
# What every benchmark's main() and run do alike

def bench_parser(doc, **options):
    """The argument parser of a benchmark: its description the first
    paragraph of doc (the script's docstring), then an option --NAME for
    each keyword (in order; _ spelled -) of its default's type.  The
    script adds its other options to it."""
    ap = argparse.ArgumentParser(description=doc.split('\n\n')[0])
    for name, default in options.items():
        ap.add_argument('--' + name.replace('_', '-'), type=type(default),
                        default=default)
    return ap


def bench_start(ap):
    """Parses the command line with ap and makes RESULTS: (args, the load
    average at the start, for report_head)."""
    args = ap.parse_args()
    os.makedirs(RESULTS, exist_ok=True)
    return args, load_average()


def report_start(title, script, started):
    """A report being written: (its lines, so far report_head's, and their
    append)."""
    out = report_head(title, script, started)
    return out, out.append


def save_report(name, text):
    """Writes text as RESULTS/NAME.md."""
    with open(os.path.join(RESULTS, name + '.md'), 'w') as f:
        f.write(text)


def poll_until(probe, deadline, every=0.05):
    """Calls probe() every `every` seconds until it returns something true
    or deadline seconds passed; a probe that raises counts as not yet.
    (what it returned, the seconds it took), or (None, None)."""
    t0 = now()
    while now() - t0 < deadline:
        try:
            got = probe()
        except Exception:
            got = None
        if got:
            return got, now() - t0
        time.sleep(every)
    return None, None


def spec_body(servers, *more):
    """An Apache body with only MemsessServers written and the SPEC check
    settings (interval 1s, timeout 250ms), at LogLevel notice; more lines
    after them."""
    return '\n'.join(['MemsessServers %s' % ' '.join(servers),
                      'MemsessCheckInterval 1s',
                      'MemsessCheckTimeout 250ms',
                      'LogLevel notice'] + list(more))


def watch_up(apache, addrs, t0=None, deadline=10.0, label=None, every=0.02):
    """A StatusWatch of apache (every `every` seconds, times from t0), once
    it shows every server of addrs up; RuntimeError after deadline
    seconds."""
    watch = StatusWatch(apache, every=every, t0=t0).start()
    if not watch.all_up(addrs, deadline):
        raise RuntimeError('%s: %s' % (
            label + ': servers not up' if label else
            'the servers did not come up', watch.current))
    return watch


def run_phases(t0, phases, ev=None, end='end'):
    """Runs phases [(name, action or None, seconds)] one after another: the
    time of each (seconds from t0) in ev[name], action() then, and the
    phase's seconds waited; the time after the last in ev[end].  ev."""
    ev = {} if ev is None else ev
    for name, action, seconds in phases:
        ev[name] = now() - t0
        if action:
            action()
        time.sleep(seconds)
    if end:
        ev[end] = now() - t0
    return ev


def rate_cell(s, count=True):
    """A phase's throughput and latency for a report's table: "N (R/s),
    p50 …, p99 …" (without "N (…)" when count is false)."""
    rate = '%.0f/s' % s['rps']
    if count:
        rate = '%d (%s)' % (s['requests'], rate)
    return '%s, p50 %.1f ms, p99 %.1f ms' % (rate, s['p50'] * 1000,
                                             s['p99'] * 1000)


def loss_cell(s):
    """A phase's sessions lost and stale for a report's table."""
    return '%d / %d (failed %d, no session %d, of %d)' % (
        s['lost'], s['stale'], s['failed'], s['nosess'], s['requests'])


def figures_head(title, intro):
    """The first lines of a report of one table of figures (grow, rejoin):
    its title, the machine line, the setup told in intro, the table's
    head."""
    return ['# ' + title, '', machine_line(), '', intro, '',
            '| what | figure |', '|---|---|']


def log_filled(verb, sessions, size, since, memcs):
    """Logs what a fill of the pool did (since: when it began): the
    sessions, their size, its seconds, the items each of memcs holds."""
    log('%s %d sessions of %d bytes in %.1f s; items per server: %s'
        % (verb, sessions, size, now() - since,
           ', '.join(str(m.items()) for m in memcs)))


def healthy_load(port, users, t0):
    """users with one session each for the whole run (100 ms think time,
    15 s client timeout) started, 3 s to settle, 5 s of a healthy phase:
    (the Load, {'healthy': the phase's start}).  grow and rejoin begin so."""
    load = Load(port, users=users, followups=0, think=0.1, timeout=15.0,
                t0=t0).start()
    time.sleep(3)
    ev = {'healthy': now() - t0}
    time.sleep(5)
    return load, ev


def still_out(results, key):
    """The report's lines on the users that still had a request out when a
    run ended (results' 'left', each named by its `key`), if any."""
    left = ['%s: %d' % (r[key], r['left']) for r in results if r['left']]
    if not left:
        return []
    return ['Users with a request still out at the end (not counted): %s.'
            % ', '.join(left), '']


def phase_cells(s):
    """A phase's requests, throughput, p50, p99, slowest, failed, no
    session, lost and stale as cells of a report's row (compare, fpm)."""
    return '%d | %.0f | %s | %s | %s | %d | %d | %d | %d' % (
        s['requests'], s['rps'], ms(s['p50']), ms(s['p99']), ms(s['max']),
        s['failed'], s['nosess'], s['lost'], s['stale'])


# The options of the benchmarks that fill a pool (grow, rejoin, persist):
# sessions of size bytes written before the load, users during it.
POOL_OPTIONS = {'sessions': 100000, 'size': 1024, 'users': 30}


def spec_pool(R, name, memc_ports, port, listed=None):
    """memcached servers (512 MB each) on memc_ports, and an Apache `name`
    on port (60 prefork workers, all started up front) with spec_body() of
    the first `listed` of them (all unless told), started: (memcs, their
    addresses, the Apache)."""
    memcs = [R.memcached(p, mem=512) for p in memc_ports]
    addrs = [m.addr for m in memcs]
    apache = R.apache(name, port, spec_body(addrs[:listed]), workers=60,
                      start_servers=60).start()
    return memcs, addrs, apache
