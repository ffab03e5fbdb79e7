/* Licensed under the Apache License, Version 2.0 (the "License");
 * you may not use this file except in compliance with the License.
 * You may obtain a copy of the License at
 *
 *     http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software
 * distributed under the License is distributed on an "AS IS" BASIS,
 * WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 * See the License for the specific language governing permissions and
 * limitations under the License.
 */

/* Other instances' clocks, judged by ours alone.  Pure: no httpd, no
 * network; the exchange (memsess_exchange.c) feeds it what it reads.
 *
 * Lapse.  A line of another instance (a verdict, a member line) says when
 * its writer last refreshed it, in the writer's seconds.  Whether that is
 * long ago cannot be told from our clock, which may be seconds apart: a
 * line lapses when none of its copies has changed for its time to live,
 * timed by our monotonic clock (memsess_lapse_note).  Each server's copy
 * is followed on its own: a copy on a server the writer no longer reaches
 * stays as it was, and does not make the line lapse while another copy
 * changes, nor keep it live; a writer whose clock is stepped back writes
 * smaller seconds than before, a change all the same (a line that had to
 * grow lapsed there: seen in the soak, seed 424242, an instance's clock
 * stepped back by 4 s while its verdict held a server out).
 *
 * Skew.  A member line also carries its writer's clock, in ms, as it wrote
 * the line on that server.  We read every server's copy every round: when
 * the value read differs from the one read at our previous read of that
 * server, the write fell between the two reads, so the writer's clock
 * minus ours lies between (written - this read) and (written - previous
 * read).  Each such interval narrows what is known (their intersection);
 * what is known widens by 1 ms a second of its age (clocks drift), and an
 * interval outside it (a clock stepped) starts over from that interval
 * (memsess_skew_note).  A step of our own clock is known at once, as a
 * move of our wall clock against our monotonic one: every time of ours
 * is kept with that offset as it was read, and moved by any step since
 * before it is used (memsess_skew_rebase), and so is what the table shows
 * (an instance whose clock had just stepped 5 s ahead read the others'
 * job records 5 s off for a second and took over a published sync: seen
 * in the soak, seed 424242; moving what was known when the step was
 * noticed, at the next round, moved readings already taken in the new
 * clock a second time). */

#include <time.h>

#include "memsess_clocks.h"

/* Drift allowed for: 1 ms a second (1000 ppm, far more than a clock that
 * NTP disciplines). */
#define DRIFT_PER_SEC 1

int memsess_lapse_note(memsess_lapse_t *copies, int n, int c,
                       apr_int64_t reported, apr_int64_t ttl,
                       apr_time_t mono)
{
    memsess_lapse_t *l = &copies[c];
    int i;

    if (ttl < 1) {
        ttl = 1;
    }
    if (!l->changed || reported != l->reported) {
        l->reported = reported;
        l->changed = mono;
        return 1;
    }
    /* a second more: `reported` counts whole seconds */
    for (i = 0; i < n; i++) {
        if (copies[i].changed
            && mono - copies[i].changed <= apr_time_from_sec(ttl + 1)) {
            return 1;
        }
    }
    return 0;
}

void memsess_skew_rebase(memsess_skew_t *k, apr_int64_t off_ms)
{
    if (k->known && k->off_ms && off_ms && k->off_ms != off_ms) {
        apr_int64_t d = off_ms - k->off_ms;

        k->lo -= d;
        k->hi -= d;
        k->at_ms += d;
    }
    k->off_ms = off_ms;
}

apr_int64_t memsess_clock_moved_ms(apr_int64_t t_ms, apr_int64_t then_ms,
                                   apr_int64_t now_ms)
{
    return t_ms && then_ms && now_ms ? t_ms + (now_ms - then_ms) : t_ms;
}

void memsess_skew_seed(memsess_skew_t *k, apr_int64_t skew_ms,
                       apr_int64_t error_ms, apr_int64_t at_ms,
                       apr_int64_t off_ms, apr_int64_t peer_off_ms)
{
    if (error_ms < 0) {
        return;
    }
    k->lo = skew_ms - error_ms;
    k->hi = skew_ms + error_ms;
    k->at_ms = at_ms;
    k->off_ms = off_ms;
    k->peer_off_ms = peer_off_ms;
    k->known = 1;
}

void memsess_skew_peer_offset(memsess_skew_t *k, memsess_skew_seen_t *s,
                              apr_int64_t wrote_ms, apr_int64_t peer_off_ms)
{
    apr_int64_t d;

    if (peer_off_ms <= 0 || wrote_ms <= 0) {
        return;   /* a line that does not say */
    }
    /* this copy's last reading, in its writer's clock as it is now */
    if (!s->peer_off_ms) {
        s->peer_off_ms = peer_off_ms;
    }
    d = peer_off_ms - s->peer_off_ms;
    if (d >= MEMSESS_CLOCK_STEP_MS || d <= -MEMSESS_CLOCK_STEP_MS) {
        if (s->wrote_ms) {
            s->wrote_ms += d;   /* as its clock would have said it */
        }
        s->peer_off_ms = peer_off_ms;
    }
    /* what is known, by a copy written since our last reading of it only:
     * a copy on a server its writer no longer reaches says the offset of
     * before (read after the fresh ones each round, it moved the skew
     * back by the step: seen in the soak, seed 424242) */
    if (wrote_ms == s->wrote_ms) {
        return;
    }
    if (!s->wrote_ms && k->known) {
        /* a copy never read before: fresh or stale cannot be told yet
         * (what a previous checker knew, and a copy on a server its writer
         * no longer reaches, of before a step); its next change will */
        return;
    }
    if (!k->peer_off_ms) {
        k->peer_off_ms = peer_off_ms;
    }
    d = peer_off_ms - k->peer_off_ms;
    if (d >= MEMSESS_CLOCK_STEP_MS || d <= -MEMSESS_CLOCK_STEP_MS) {
        if (k->known) {
            k->lo += d;
            k->hi += d;
        }
        k->peer_off_ms = peer_off_ms;
    }
}

void memsess_skew_note(memsess_skew_t *k, memsess_skew_seen_t *s,
                       apr_int64_t wrote_ms, apr_int64_t read_ms,
                       apr_int64_t off_ms)
{
    if (wrote_ms <= 0) {
        return;   /* a line that does not say */
    }
    /* all in our clock as it is now */
    memsess_skew_rebase(k, off_ms);
    if (s->read_ms && s->off_ms && off_ms && s->off_ms != off_ms) {
        s->read_ms += off_ms - s->off_ms;
    }
    s->off_ms = off_ms;
    if (s->read_ms && s->wrote_ms && wrote_ms != s->wrote_ms
        && read_ms > s->read_ms) {
        apr_int64_t lo = wrote_ms - read_ms, hi = wrote_ms - s->read_ms;

        if (k->known) {
            apr_int64_t age = read_ms > k->at_ms ? read_ms - k->at_ms : 0;
            apr_int64_t slack = age / 1000 * DRIFT_PER_SEC;
            apr_int64_t klo = k->lo - slack, khi = k->hi + slack;

            if (lo <= khi && hi >= klo) {
                lo = lo > klo ? lo : klo;
                hi = hi < khi ? hi : khi;
            }
            else {
                k->steps++;   /* out of what was known: a clock stepped */
            }
        }
        k->lo = lo;
        k->hi = hi;
        k->at_ms = read_ms;
        k->known = 1;
    }
    s->wrote_ms = wrote_ms;
    s->read_ms = read_ms;
}

apr_int64_t memsess_skew_ms(const memsess_skew_t *k)
{
    return k->known ? k->lo + (k->hi - k->lo) / 2 : 0;
}

apr_int64_t memsess_skew_error_ms(const memsess_skew_t *k)
{
    return k->known ? (k->hi - k->lo + 1) / 2 : -1;
}

apr_int64_t memsess_clock_offset_ms(void)
{
    apr_time_t mono = memsess_mono_now(), wall = apr_time_now();

    return apr_time_as_msec(wall) - apr_time_as_msec(mono);
}

apr_time_t memsess_mono_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return apr_time_from_sec(ts.tv_sec) + ts.tv_nsec / 1000;
}
