#!/usr/bin/env python3
"""The mod_memsess drill: simulated users through a frozen memcached.

With --restart-cmd instead of --freeze, the fault is every memcached killed
at once and started again empty (the command does both, `bash tools/demo.sh
restart-all`): with MemsessPersist the sessions come back from the
database, as they were up to one MemsessPersistInterval before; a counter
that went back then is counted as "restored older", not as stale.

Run by `bash tools/demo.sh drill [N]`, which passes the demo's addresses.
Python 3 standard library only.

Each simulated user logs in through nginx (a name into its PHP session), then
keeps requesting the page, which counts visits in the session.  The user
checks every answer:

  error   the request failed (no answer, timeout, HTTP status other than 200)
  lost    the page says "not logged in": the session is gone
  stale   the counter went backwards: an older copy of the session was read

Meanwhile the drill freezes one memcached (SIGSTOP: it still accepts TCP
connections and never answers, the worst kind of failure), thaws it later
(SIGCONT), and once a second prints a row: requests, errors, sessions lost,
p99 latency of that second, and each memcached's state as one Apache's
health checker sees it (its /memsess-status?json).  It stops by itself.
"""

import argparse
import http.cookiejar
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

REQUEST_TIMEOUT = 10.0   # seconds a simulated user waits for an answer

# The app's 503 reasons (demo/app/common.php), shortened for the table.
SHORT = {
    "could not read the session": "session_start failed",
    "could not save the session": "session write failed",
    "could not renew the session id": "session id renewal failed",
}


def percentile(values, p):
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.done = []          # (t_start, t_end, latency_s, kind, why); kind: ok/error/lost/stale
        self.in_flight = {}     # user -> monotonic start
        self.instances = {}

    def add(self, t_start, t_end, kind, instance=None, why=None):
        with self.lock:
            self.done.append((t_start, t_end, t_end - t_start, kind, why))
            if instance:
                self.instances[instance] = self.instances.get(instance, 0) + 1


class Drill:
    def __init__(self, a):
        self.a = a
        self.t0 = time.monotonic()
        self.stop_users = threading.Event()
        self.stop_all = threading.Event()
        self.stats = Stats()
        self.memcached = a.memcached.split(",")
        self.restart = a.restart_cmd is not None
        self.frozen_addr = "every memcached" if self.restart else self.memcached[a.freeze - 1]
        self.restart_proc = None
        self.rolled_back = []   # visits a restored session was behind
        self.frozen = False
        self.freeze_t = self.thaw_t = None
        self.down_t = self.up_t = None
        self.states = {m: "?" for m in self.memcached}
        self.state_lock = threading.Lock()
        self.events = []        # printed before the next row

    def now(self):
        return time.monotonic() - self.t0

    def event(self, msg):
        with self.state_lock:
            self.events.append("  %5.2f  >> %s" % (self.now(), msg))

    # ---------------------------------------------------------- a user
    def request(self, opener, path, data=None):
        url = urllib.parse.urljoin(self.a.url, path)
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(url, data=body, headers={"Accept": "application/json"})
        with opener.open(req, timeout=REQUEST_TIMEOUT) as r:
            return json.loads(r.read().decode("utf-8", "replace"))

    def user(self, i):
        name = "user%02d" % i
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        expected = None          # the visits count the next page must show
        logged_in = False
        think = self.a.think_ms / 1000.0
        # spread the logins over the first half second
        time.sleep(i * 0.5 / max(1, self.a.users))
        while not self.stop_users.is_set():
            t = self.now()
            with self.stats.lock:
                self.stats.in_flight[name] = t
            kind, why, inst = "ok", None, None
            try:
                if not logged_in:
                    d = self.request(opener, "login.php", {"user": name, "json": "1"})
                    inst = d.get("instance")
                    if d.get("user") == name and d.get("visits") == 0:
                        logged_in, expected = True, 1
                    else:
                        kind, why = "error", "login refused"
                else:
                    d = self.request(opener, "?json")
                    inst = d.get("instance")
                    if d.get("user") != name and self.outage(t):
                        # every copy gone, not restored yet: the user
                        # keeps the cookie and tries again, as a browser
                        # would; lost only if it stays so once all is up
                        kind, why = "error", "no session reachable"
                    elif d.get("user") != name:
                        kind = "lost"            # logged out: log in again
                        logged_in = False
                    else:
                        v = d.get("visits")
                        if expected is not None and isinstance(v, int) and v < expected:
                            kind = "stale"
                            if self.restart and self.freeze_t is not None and t >= self.freeze_t:
                                kind = "restored"   # as the database had it
                                with self.stats.lock:
                                    self.rolled_back.append(expected - v)
                        expected = v + 1 if isinstance(v, int) else None
            except urllib.error.HTTPError as e:
                kind, why = "error", "HTTP %d" % e.code
                try:
                    body = json.loads(e.read().decode("utf-8", "replace"))
                    inst = body.get("instance")
                    if body.get("error"):
                        why = "%d %s" % (e.code, SHORT.get(body["error"].split(":")[0], body["error"].split(":")[0]))
                except Exception:
                    pass
                expected = None          # the session may or may not have been saved
            except Exception as e:       # timeout, refused, reset
                r = getattr(e, "reason", e)
                why = "timeout %d s" % REQUEST_TIMEOUT if "timed out" in str(r) else type(r).__name__
                kind = "error"
                expected = None
            end = self.now()
            with self.stats.lock:
                self.stats.in_flight.pop(name, None)
            self.stats.add(t, end, kind, inst, why)
            self.stop_users.wait(think)

    def outage(self, t):
        """The restart drill, from the kill until every server is up."""
        return self.restart and self.freeze_t is not None and t >= self.freeze_t \
            and (self.up_t is None or t < self.up_t)

    # -------------------------------------------- the checker's view
    def poll_status(self):
        while not self.stop_all.is_set():
            try:
                with urllib.request.urlopen(self.a.status, timeout=1.0) as r:
                    doc = json.loads(r.read().decode())
                seen = {s.get("address"): s.get("state") for s in doc.get("servers", [])}
                with self.state_lock:
                    for m in self.memcached:
                        self.states[m] = seen.get(m, "?")
                if self.restart:
                    mine = [seen.get(m) for m in self.memcached]
                    st = ("down" if all(x == "down" for x in mine)
                          else "up" if all(x == "up" for x in mine) else "partial")
                else:
                    st = seen.get(self.frozen_addr)
                t = self.now()
                if self.freeze_t is not None and self.down_t is None and st == "down":
                    self.down_t = t
                    self.event("web1's checker marks %s DOWN, %.2f s after the freeze: "
                               "from now on no request uses it" % (self.frozen_addr, t - self.freeze_t))
                if self.thaw_t is not None and self.up_t is None and st == "up":
                    self.up_t = t
                    self.event("web1's checker marks %s UP again, %.2f s after the thaw" % (
                        self.frozen_addr, t - self.thaw_t))
            except Exception:
                with self.state_lock:
                    for m in self.memcached:
                        self.states[m] = "?"
            self.stop_all.wait(0.05)

    # ------------------------------------------------ freeze / thaw
    def freeze(self):
        if self.restart:
            # kills every memcached, waits, starts them again empty
            self.restart_proc = subprocess.Popen(self.a.restart_cmd, shell=True,
                                                 stdout=subprocess.DEVNULL)
            self.frozen = True
            self.freeze_t = self.now()
            self.event("every memcached killed (SIGKILL), to be started again empty in 2 s: "
                       "no copy of any session is left in memcached")
            return
        os.kill(self.a.freeze_pid, signal.SIGSTOP)
        self.frozen = True
        self.freeze_t = self.now()
        self.event("SIGSTOP memcached %s (pid %d): frozen, it accepts connections and never answers"
                   % (self.frozen_addr, self.a.freeze_pid))

    def thaw(self):
        if self.restart:
            if self.frozen and self.restart_proc and self.restart_proc.poll() is not None:
                self.frozen = False
                self.thaw_t = self.now()
                self.event("every memcached started again, empty (exit %d)" % self.restart_proc.returncode)
            return
        if self.frozen:
            os.kill(self.a.freeze_pid, signal.SIGCONT)
            self.frozen = False
            self.thaw_t = self.now()
            self.event("SIGCONT memcached %s: thawed" % self.frozen_addr)

    # ------------------------------------------------------ the table
    def header(self):
        cols = "".join("%-7s" % (":" + m.rsplit(":", 1)[1]) for m in self.memcached)
        print("  %5s  %-10s %5s %7s %6s %5s %5s | %-21s| %s" % (
            "time", "phase", "req/s", "p99 ms", "failed", "lost", "stale", "memcached (web1 sees)", "in this second"))
        print("  %5s  %-10s %5s %7s %6s %5s %5s | %-21s|" % ("", "", "", "", "total", "total", "total", cols.rstrip()))
        sys.stdout.flush()

    def phase(self):
        if self.freeze_t is None:
            return "normal"
        if self.restart:
            if self.frozen:
                return "KILLED" if self.down_t is None else "KILLED,out"
            if self.up_t is None:
                return "restarted"
            return "draining" if self.stop_users.is_set() else "back"
        if self.frozen:
            return "FROZEN" if self.down_t is None else "FROZEN,out"
        if self.up_t is None:
            return "thawed"
        if self.stop_users.is_set():
            return "draining"
        return "back"

    def row(self, t, last_t):
        now_m = self.now()
        with self.stats.lock:
            recent = [d for d in self.stats.done if last_t < d[1] <= t]
            tot = {"error": 0, "lost": 0, "stale": 0}
            for d in self.stats.done:
                if d[3] in tot:
                    tot[d[3]] += 1
            stuck = sum(1 for s in self.stats.in_flight.values() if now_m - s > 1.0)
        with self.state_lock:
            events, self.events = self.events, []
            states = dict(self.states)
        for e in events:
            print(e)
        p99 = percentile([d[2] for d in recent], 99)
        cols = "".join("%-7s" % (states[m] if states[m] != "down" else "DOWN") for m in self.memcached)
        notes = []
        if stuck:
            notes.append("%d user%s waiting > 1 s" % (stuck, "" if stuck == 1 else "s"))
        bad = {}
        for d in recent:
            if d[3] != "ok":
                k = {"error": "failed: %s" % d[4], "lost": "lost", "stale": "stale",
                     "restored": "restored older"}[d[3]]
                bad[k] = bad.get(k, 0) + 1
        notes += ["%d %s" % (n, k) for k, n in sorted(bad.items())]
        print("  %5.1f  %-10s %5d %7s %6d %5d %5d | %-21s| %s" % (
            t, self.phase(), len(recent), "-" if p99 is None else "%d" % round(p99 * 1000),
            tot["error"], tot["lost"], tot["stale"], cols.rstrip(), ", ".join(notes)))
        sys.stdout.flush()

    # ------------------------------------------------------------ run
    def run(self):
        a = self.a
        print("drill: %d simulated users log in through nginx (%s) and keep reloading the page."
              % (a.users, a.url))
        if self.restart:
            print("       At %gs every memcached is killed (SIGKILL) and 2 s later started again empty;"
                  " at %gs the users stop." % (a.freeze_at, a.duration))
            print("       restored = the counter went back to what the database held (MemsessPersist:"
                  " at most one interval behind).")
        else:
            print("       At %gs memcached %s is frozen (SIGSTOP), at %gs thawed (SIGCONT); at %gs the users stop."
                  % (a.freeze_at, self.frozen_addr, a.thaw_at, a.duration))
        print("       failed = request failed or timed out, lost = user found logged out,")
        print("       stale = visit counter went backwards (an older copy of the session was read).")
        print()
        threads = [threading.Thread(target=self.poll_status, daemon=True)]
        threads += [threading.Thread(target=self.user, args=(i + 1,), daemon=True) for i in range(a.users)]
        for th in threads:
            th.start()
        self.header()
        last = 0.0
        tick = 1.0
        hard_end = a.duration + REQUEST_TIMEOUT + 2
        try:
            while True:
                while self.now() < tick:
                    time.sleep(min(0.02, max(0.0, tick - self.now())))
                    if self.freeze_t is None and self.now() >= a.freeze_at:
                        self.freeze()
                    if self.thaw_t is None and self.frozen and (
                            self.restart or self.now() >= a.thaw_at):
                        self.thaw()
                if tick >= a.duration:
                    self.stop_users.set()
                self.row(tick, last)
                last = tick
                tick += 1.0
                if self.stop_users.is_set():
                    with self.stats.lock:
                        busy = len(self.stats.in_flight)
                    if busy == 0 or tick > hard_end:
                        break
        finally:
            if self.restart_proc:
                self.restart_proc.wait()
            self.thaw()
            self.stop_users.set()
            self.stop_all.set()
        with self.state_lock:
            for e in self.events:
                print(e)
            self.events = []
        return self.summary()

    def summary(self):
        a = self.a
        with self.stats.lock:
            done = list(self.stats.done)
            inst = dict(self.stats.instances)
        far = 1e9
        ft = self.freeze_t if self.freeze_t is not None else far
        dt = self.down_t if self.down_t is not None else (self.thaw_t if self.thaw_t is not None else far)
        tt = self.thaw_t if self.thaw_t is not None else far
        ut = self.up_t if self.up_t is not None else far
        labels = (("before the kill", "killed, not yet all down", "killed, all marked down",
                   "started again, not all up", "all up again") if self.restart else
                  ("before the freeze", "frozen, not yet detected", "frozen, marked down",
                   "thawed, not yet up", "thawed, marked up"))
        windows = list(zip(labels, (0, ft, dt, tt, ut), (ft, dt, tt, ut, far)))
        print()
        print("Summary: %d users, %d requests in %.0f s, answered by %s" % (
            a.users, len(done), self.now(), ", ".join("%s %d" % kv for kv in sorted(inst.items())) or "nobody"))
        print()
        print("  %-29s %8s %6s %5s %5s %8s %8s %8s" % (
            "requests that started when", "requests", "failed", "lost", "stale", "p50 ms", "p99 ms", "max ms"))
        for label, lo, hi in windows:
            sel = [d for d in done if lo <= d[0] < hi]
            if not sel and lo >= far:
                continue
            lat = [d[2] for d in sel]
            c = {k: sum(1 for d in sel if d[3] == k) for k in ("error", "lost", "stale")}
            c["stale"] += sum(1 for d in sel if d[3] == "restored")
            ms = lambda v: "-" if v is None else "%d" % round(v * 1000)
            print("  %-29s %8d %6d %5d %5d %8s %8s %8s" % (
                label, len(sel), c["error"], c["lost"], c["stale"], ms(percentile(lat, 50)),
                ms(percentile(lat, 99)), ms(max(lat) if lat else None)))
        why = {}
        for d in done:
            if d[3] == "error":
                why[d[4]] = why.get(d[4], 0) + 1
        if why:
            print("  failures: " + ", ".join("%d %s" % (n, w) for w, n in sorted(why.items())))
        print()
        tot = {k: sum(1 for d in done if d[3] == k) for k in ("error", "lost", "stale", "restored")}
        if self.restart:
            return self.restart_summary(done, tot)
        if self.freeze_t is not None:
            if self.down_t is not None:
                print("  detection: %s marked down %.2f s after it froze" % (self.frozen_addr, self.down_t - self.freeze_t))
            else:
                print("  detection: %s was NEVER marked down" % self.frozen_addr)
        if self.thaw_t is not None:
            if self.up_t is not None:
                print("  recovery:  marked up again %.2f s after the thaw" % (self.up_t - self.thaw_t))
            else:
                print("  recovery:  NOT marked up again before the end")
        print("  sessions lost: %d, stale sessions: %d, failed requests: %d of %d" % (
            tot["lost"], tot["stale"], tot["error"], len(done)))
        out = [d for d in done if d[0] < windows[3][1] and d[3] == "lost"]
        print("  lost while the server was out: %d; after it came back: %d" % (
            len(out), tot["lost"] - len(out)))
        self.explain(done, windows, tot, len(out))
        ok = (self.down_t is not None and (self.thaw_t is None or self.up_t is not None)
              and not out)
        return 0 if ok else 1

    def restart_summary(self, done, tot):
        """The restart drill's verdict: who was logged out, how far back."""
        if self.down_t is not None:
            print("  detection: web1 saw every memcached down %.2f s after the kill"
                  % (self.down_t - self.freeze_t))
        else:
            print("  detection: web1 NEVER saw every memcached down")
        if self.up_t is not None and self.thaw_t is not None:
            print("  recovery:  all up again (sessions restored first) %.2f s after they were started again"
                  % (self.up_t - self.thaw_t))
        else:
            print("  recovery:  NOT all up again before the end")
        with self.stats.lock:
            back = list(self.rolled_back)
        print("  sessions lost (users logged out): %d; sessions restored older: %d (by %s visits);"
              " stale: %d; failed requests: %d of %d" % (
                  tot["lost"], tot["restored"],
                  "-" if not back else "%d-%d" % (min(back), max(back)),
                  tot["stale"], tot["error"], len(done)))
        unreachable = sum(1 for d in done if d[3] == "error" and d[4] == "no session reachable")
        print("  during the outage: %d requests found no session reachable (the users kept their cookie)"
              % unreachable)
        print()
        print("What it shows:")
        if tot["lost"]:
            print("  - %d users were logged out once every server was back: their sessions were not"
                  % tot["lost"])
            print("    restored (see MEMSESS0178 and MEMSESS0177 in the Apaches' error logs).")
        print("  - Every copy of every session was gone from memcached.  Before each server took")
        print("    sessions again, mod_memsess put back from PostgreSQL every session it places there")
        print("    (MEMSESS0178 in the Apaches' error logs), as written behind at most")
        print("    MemsessPersistInterval (2 s here) before the loss: nobody logs in again; a")
        print("    counter may go back by what the last interval wrote (\"restored older\").")
        print("  - While every server was down, requests failed: there was nowhere to keep a session.")
        ok = self.down_t is not None and self.up_t is not None and tot["lost"] == 0 and tot["stale"] == 0
        return 0 if ok else 1

    def explain(self, done, windows, tot, lost_out):
        """A few sentences on what the numbers mean, from the numbers."""
        def sel(i):
            lo, hi = windows[i][1], windows[i][2]
            return [d for d in done if lo <= d[0] < hi]
        lines = []
        if self.down_t is not None:
            lines.append("mod_memsess took the frozen server out of every request %.2f s after it froze "
                         "(a probe every 200 ms; a failed probe is repeated at once, 2 failures mark it "
                         "down)." % (self.down_t - self.freeze_t))
            after = sel(2)
            if after:
                lat = [d[2] for d in after]
                nf = sum(1 for d in after if d[3] == "error")
                lines.append("Requests that started after that: p99 %d ms, %d failed: nobody waits for it any more."
                             % (round(percentile(lat, 99) * 1000), nf))
            win = sel(1)
            if win:
                nf = sum(1 for d in win if d[3] == "error")
                lines.append("Of the %d requests that started in the %.2f s before that, those that reached "
                             "it were released when it was marked down (every Apache child shuts down its "
                             "own connections to it) instead of waiting for php-memcached's 5 s timeouts: "
                             "the slowest took %d ms. %d failed: php-memcached cannot finish a session "
                             "read cut off midway, so that request gets no session; the session itself is "
                             "kept, on its replica."
                             % (len(win), self.down_t - self.freeze_t,
                                round(max(d[2] for d in win) * 1000), nf))
        if lost_out:
            lines.append("Sessions lost while the server was out: php-memcached reads a session from the "
                         "first server of its replica set only; with MemsessFailover drop the live list "
                         "shrinks and a session may move to a server without a copy. MemsessFailover "
                         "successor (this demo's default) keeps every place.")
        elif self.down_t is not None:
            lines.append("No session was lost while the server was out: with MemsessReplicas 1 and "
                         "MemsessFailover successor, the next server holds a copy of each of its sessions "
                         "and takes its place in the list.")
        if tot["lost"] > lost_out:
            lines.append("Sessions lost after the thaw: MemsessRejoin flush emptied the server before it "
                         "came back, and the copies written meanwhile are on the server that stood in for "
                         "it: %d users log in again. MemsessRejoin keep would hand them the session as it "
                         "was before the outage instead (stale), with its old locks." % (tot["lost"] - lost_out))
        if tot["stale"]:
            lines.append("Stale sessions: after the thaw, the server again holds sessions it kept from before "
                         "it froze, older than the copies written while it was out.")
        back = sel(4)
        if any(d[3] == "error" and d[4] and "session_start" in d[4] for d in back):
            lines.append("Failures after the thaw: lock records that requests sent to the frozen server were "
                         "executed when it thawed; PHP cannot lock those sessions until the records expire "
                         "(max_execution_time + 1 s).")
        if not lines:
            return
        print()
        print("What it shows:")
        for ln in lines:
            words, cur = ln.split(), "  -"
            for w in words:
                if len(cur) + 1 + len(w) > 100:
                    print(cur)
                    cur = "   "
                cur += " " + w
            print(cur)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True, help="the demo through nginx, e.g. http://127.0.0.1:8080/")
    p.add_argument("--status", required=True, help="one Apache's /memsess-status?json")
    p.add_argument("--memcached", required=True, help="the three addresses, comma separated")
    p.add_argument("--freeze", type=int, default=2, help="which memcached to freeze (1-based)")
    p.add_argument("--freeze-pid", type=int, help="its process id")
    p.add_argument("--restart-cmd", help="instead of a freeze: a shell command that kills every memcached "
                   "and starts them again empty")
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--think-ms", type=int, default=100, help="pause between a user's requests")
    p.add_argument("--freeze-at", type=float, default=6)
    p.add_argument("--thaw-at", type=float, default=21)
    p.add_argument("--duration", type=float, default=30, help="seconds until the users stop (at most 45)")
    a = p.parse_args()
    a.duration = min(a.duration, 45)
    if not 1 <= a.freeze <= len(a.memcached.split(",")):
        p.error("--freeze out of range")
    if a.restart_cmd is None:
        if a.freeze_pid is None:
            p.error("--freeze-pid or --restart-cmd")
        try:
            with open("/proc/%d/comm" % a.freeze_pid) as f:
                if f.read().strip() != "memcached":
                    p.error("pid %d is not a memcached" % a.freeze_pid)
        except OSError:
            p.error("no process %d" % a.freeze_pid)
    a.users = max(1, min(a.users, 200))

    d = Drill(a)

    def on_term(signum, frame):
        d.thaw()
        raise SystemExit(130)
    signal.signal(signal.SIGTERM, on_term)
    try:
        return d.run()
    except KeyboardInterrupt:
        d.thaw()
        print("\ndrill: interrupted; memcached thawed")
        return 130
    finally:
        d.thaw()


if __name__ == "__main__":
    sys.exit(main())
