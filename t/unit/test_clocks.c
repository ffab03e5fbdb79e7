/* Unit tests of memsess_clocks.c: other instances' lines lapse by our own
 * monotonic clock, whatever theirs says; their skew is bounded by the reads
 * between which their member line changed. */
#include "apr_general.h"
#include "apr_time.h"

#include "memsess_clocks.h"
#include "tap.h"

#define SEC(s) apr_time_from_sec(s)
#define MS(m)  apr_time_from_msec(m)

int main(void)
{
    memsess_lapse_t l[2] = { { 0, 0 }, { 0, 0 } };
    memsess_skew_t k;
    memsess_skew_seen_t s1, s2;
    apr_time_t mono = SEC(1000);
    apr_int64_t r, t;
    int i, live;

    apr_initialize();

    /* lapse: a writer 3 s behind us (its line "expired" by our clock at
     * once) stays live while it refreshes; its line has a copy on two
     * servers (l[0], l[1]) */
    live = 1;
    for (i = 0, r = 500; i < 50; i++, mono += MS(200)) {
        if (i % 5 == 0) {
            r++;   /* its seconds grow once a second */
        }
        live &= memsess_lapse_note(l, 2, i % 2, r, 2, mono);
    }
    ok(live, "a line refreshed every round stays live (10 s, ttl 2 s)");
    mono = l[0].changed > l[1].changed ? l[0].changed : l[1].changed;
    ok(memsess_lapse_note(l, 2, 0, r, 2, mono + SEC(3)),
       "unchanged for ttl + 1 s: still live");
    ok(!memsess_lapse_note(l, 2, 1, r, 2, mono + SEC(3) + MS(100)),
       "unchanged for longer: lapsed, by our clock alone");
    ok(memsess_lapse_note(l, 2, 1, r + 1, 2, mono + SEC(4)),
       "changed again (its writer came back): live");
    ok(memsess_lapse_note(l, 2, 0, r, 2, mono + SEC(5)),
       "a copy that stays as it was (a server its writer no longer "
       "reaches) does not make it lapse while another changed within its "
       "time");
    ok(!memsess_lapse_note(l, 2, 0, r, 2, mono + SEC(8)),
       "... nor keeps it live");
    ok(memsess_lapse_note(l, 2, 1, r - 3, 2, mono + SEC(9))
       && memsess_lapse_note(l, 2, 1, r - 3, 2, mono + SEC(11))
       && memsess_lapse_note(l, 2, 1, r - 2, 2, mono + SEC(12))
       && memsess_lapse_note(l, 2, 1, r - 1, 2, mono + SEC(13)),
       "its clock stepped back 4 s (less than twice its time to live) "
       "while it refreshes: live throughout (it lapsed before: soak seed "
       "424242)");
    ok(!memsess_lapse_note(l, 2, 0, r, 2, mono + SEC(13))
       || l[1].changed == mono + SEC(13),
       "the copy that stays as it was plays no part");
    {
        memsess_lapse_t n[1] = { { 0, 0 } };

        ok(memsess_lapse_note(n, 1, 0, 42, 0, MS(1)) && n[0].reported == 42,
           "first seen: live (a ttl below 1 s counts as 1 s)");
    }

    /* skew: a writer 3,000 ms ahead, writing every 1 s at a phase of its
     * own, read every 200 ms; reads at our t ms, writes at our w ms */
    memset(&k, 0, sizeof(k));
    memset(&s1, 0, sizeof(s1));
    memset(&s2, 0, sizeof(s2));
    ok(memsess_skew_error_ms(&k) == -1 && memsess_skew_ms(&k) == 0,
       "nothing known at first");
    for (t = 100000; t < 110000; t += 200) {
        /* its write of second w landed at our w*1000 + 37 ms; what a read
         * at t sees is the last write before it */
        apr_int64_t w = (t - 37) / 1000 * 1000 + 37;

        memsess_skew_note(&k, &s1, w + 3000, t, 0);
        memsess_skew_note(&k, &s2, w + 3000, t + 5, 0);   /* another server */
    }
    ok(k.known && k.lo <= 3000 && k.hi >= 3000,
       "its skew lies within what is known [%lld, %lld]", (long long)k.lo,
       (long long)k.hi);
    ok(memsess_skew_error_ms(&k) <= 100,
       "known within a round's width (+-%lld ms)",
       (long long)memsess_skew_error_ms(&k));
    ok(memsess_skew_ms(&k) > 2850 && memsess_skew_ms(&k) < 3150,
       "about 3000 ms ahead (%lld)", (long long)memsess_skew_ms(&k));
    ok(k.steps == 0, "no step seen");

    /* its clock steps back 5 s: the next change falls outside */
    for (; t < 114000; t += 200) {
        apr_int64_t w = (t - 37) / 1000 * 1000 + 37;

        memsess_skew_note(&k, &s1, w - 2000, t, 0);
    }
    ok(k.steps >= 1 && memsess_skew_ms(&k) < -1850
       && memsess_skew_ms(&k) > -2150,
       "a step is seen and followed: now %lld ms",
       (long long)memsess_skew_ms(&k));

    /* our own clock steps 5 s ahead (the writer's stays): every time of
     * ours carries the offset it was read in (wall minus monotonic, here
     * 100000 before the step): the skew read at once in the new clock is
     * 5 s less, and the readings after the step agree with it (no step
     * seen, the width kept), whether the step is noticed before the next
     * reading or not */
    {
        memsess_skew_t o, q;
        memsess_skew_seen_t os, qs;
        apr_uint32_t steps;
        apr_int64_t width;

        memset(&o, 0, sizeof(o));
        memset(&os, 0, sizeof(os));
        for (t = 200000; t < 210000; t += 200) {
            apr_int64_t w = (t - 37) / 1000 * 1000 + 37;

            memsess_skew_note(&o, &os, w + 3000, t, 100000);
        }
        steps = o.steps;
        width = o.hi - o.lo;
        q = o;
        qs = os;
        memsess_skew_rebase(&q, 105000);
        ok(memsess_skew_ms(&q) > -2150 && memsess_skew_ms(&q) < -1850
           && q.hi - q.lo == width,
           "our clock stepped 5 s ahead: its skew now about -2000 ms (%lld), "
           "as narrow as before", (long long)memsess_skew_ms(&q));
        memsess_skew_rebase(&q, 105000);
        ok(memsess_skew_ms(&q) > -2150 && memsess_skew_ms(&q) < -1850,
           "noticed twice: moved once (%lld)", (long long)memsess_skew_ms(&q));
        for (; t < 214000; t += 200) {
            /* its writes at its own times; our reads in our new clock */
            apr_int64_t w = (t - 37) / 1000 * 1000 + 37;

            memsess_skew_note(&o, &os, w + 3000, t + 5000, 105000);
            memsess_skew_note(&q, &qs, w + 3000, t + 5000, 105000);
        }
        ok(o.steps == steps && memsess_skew_ms(&o) > -2150
           && memsess_skew_ms(&o) < -1850 && o.hi - o.lo <= width,
           "read on after the step, not noticed before: no step seen, "
           "%lld ms", (long long)memsess_skew_ms(&o));
        ok(q.steps == steps && memsess_skew_ms(&q) > -2150
           && memsess_skew_ms(&q) < -1850,
           "noticed before: the same, %lld ms", (long long)memsess_skew_ms(&q));
        memset(&q, 0, sizeof(q));
        memsess_skew_rebase(&q, 105000);
        ok(!q.known && q.off_ms == 105000, "nothing known: nothing made up");
        q = o;
        memsess_skew_rebase(&q, 0);
        ok(q.lo == o.lo && q.hi == o.hi, "an offset not known: not moved");
    }

    /* the writer's clock steps 5 s back and its member lines say its
     * offset (wall minus monotonic, 900000 before the step, 895000 after):
     * its skew moves by as much at once, as narrow as it was, with no step
     * seen, read on the same server and on another; a line that does not
     * say its offset is read as before; moves under 50 ms add up */
    {
        memsess_skew_t o, p, keep, stale;
        memsess_skew_seen_t os, ps, os2, os2keep, stales;
        apr_int64_t width;
        apr_uint32_t steps;

        memset(&o, 0, sizeof(o));
        memset(&os, 0, sizeof(os));
        memset(&os2, 0, sizeof(os2));
        for (t = 300000; t < 310000; t += 200) {
            apr_int64_t w = (t - 37) / 1000 * 1000 + 37;

            memsess_skew_peer_offset(&o, &os, w + 3000, 900000);
            memsess_skew_note(&o, &os, w + 3000, t, 0);
            memsess_skew_peer_offset(&o, &os2, w + 3000, 900000);
            memsess_skew_note(&o, &os2, w + 3000, t + 5, 0);
        }
        width = o.hi - o.lo;
        steps = o.steps;
        keep = o;
        p = o;
        ps = os;
        os2keep = os2;
        /* its first line after the step: its next write, read at the
         * first round after it */
        {
            apr_int64_t w0 = (t - 37) / 1000 * 1000 + 37, w = w0;

            while (w == w0) {
                t += 200;
                w = (t - 37) / 1000 * 1000 + 37;
            }
            memsess_skew_peer_offset(&o, &os, w - 2000, 895000);
            memsess_skew_note(&o, &os, w - 2000, t, 0);
        }
        ok(memsess_skew_ms(&o) > -2150 && memsess_skew_ms(&o) < -1850
           && o.hi - o.lo <= width && o.steps == steps,
           "its clock stepped 5 s back, its offset said: its skew now about "
           "-2000 ms at its first line (%lld), as narrow (+-%lld), no step "
           "seen", (long long)memsess_skew_ms(&o),
           (long long)memsess_skew_error_ms(&o));
        stale = o;
        stales = os;
        for (t += 200; t < 314000; t += 200) {
            apr_int64_t w = (t - 37) / 1000 * 1000 + 37;

            memsess_skew_peer_offset(&o, &os, w - 2000, 895000);
            memsess_skew_note(&o, &os, w - 2000, t, 0);
            memsess_skew_peer_offset(&o, &os2, w - 2000, 895000);
            memsess_skew_note(&o, &os2, w - 2000, t + 5, 0);
            /* the other server's copy, never written again (its writer
             * cut off from it): the same line, the offset of before */
            memsess_skew_peer_offset(&stale, &stales, w - 2000, 895000);
            memsess_skew_note(&stale, &stales, w - 2000, t, 0);
            memsess_skew_peer_offset(&stale, &os2keep, os2keep.wrote_ms,
                                     900000);
            memsess_skew_note(&stale, &os2keep, os2keep.wrote_ms, t + 5, 0);
        }
        ok(o.steps == steps && memsess_skew_ms(&o) > -2150
           && memsess_skew_ms(&o) < -1850,
           "read on, on both servers: still no step seen, %lld ms",
           (long long)memsess_skew_ms(&o));
        ok(stale.steps == steps && memsess_skew_ms(&stale) > -2150
           && memsess_skew_ms(&stale) < -1850,
           "a stale copy that says the offset of before, read after the "
           "fresh one every round, moves nothing back (%lld ms)",
           (long long)memsess_skew_ms(&stale));
        /* the same step, not said (a version before) */
        {
            apr_int64_t w = (t - 37) / 1000 * 1000 + 37;

            memsess_skew_peer_offset(&p, &ps, w - 2000, 0);
            memsess_skew_note(&p, &ps, w - 2000, t, 0);
        }
        ok(p.steps == steps + 1, "not said: a step seen, measured anew");
        /* 30 ms, then 30 ms more, in lines written since: moved once, by
         * 60 */
        p = keep;
        memsess_skew_peer_offset(&p, &ps, ps.wrote_ms + 1000, 900030);
        ok(p.lo == keep.lo && p.hi == keep.hi, "30 ms: not moved yet");
        memsess_skew_peer_offset(&p, &ps, ps.wrote_ms + 2000, 900060);
        ok(p.lo == keep.lo + 60 && p.hi == keep.hi + 60,
           "60 ms in all: moved by 60");

        /* a new checker (a graceful, a checker process restarted) starts
         * from what the previous one knew after the step (the table keeps
         * it): known at once; the stale copy, never read by this checker
         * before, says the offset of before the step and moves nothing
         * (it moved the skew 5 s back at its first reading); the fresh
         * copy's next line keeps it where it was, no step seen */
        {
            memsess_skew_t n;
            memsess_skew_seen_t s1, s2;
            apr_int64_t w;

            memset(&n, 0, sizeof(n));
            memset(&s1, 0, sizeof(s1));
            memset(&s2, 0, sizeof(s2));
            memsess_skew_seed(&n, memsess_skew_ms(&o),
                              memsess_skew_error_ms(&o), o.at_ms, 0,
                              o.peer_off_ms);
            ok(n.known && memsess_skew_ms(&n) > -2150
               && memsess_skew_ms(&n) < -1850,
               "seeded from what a previous checker knew: known at once "
               "(%lld ms)", (long long)memsess_skew_ms(&n));
            memsess_skew_peer_offset(&n, &s1, os2keep.wrote_ms, 900000);
            memsess_skew_note(&n, &s1, os2keep.wrote_ms, t, 0);
            ok(memsess_skew_ms(&n) > -2150 && memsess_skew_ms(&n) < -1850,
               "a stale copy's first reading, the offset of before the "
               "step: not moved (%lld ms)", (long long)memsess_skew_ms(&n));
            for (w = 0; w < 2; w++, t += 1000) {
                apr_int64_t wr = (t - 37) / 1000 * 1000 + 37 - 2000;

                memsess_skew_peer_offset(&n, &s2, wr, 895000);
                memsess_skew_note(&n, &s2, wr, t, 0);
            }
            ok(n.steps == 0 && memsess_skew_ms(&n) > -2150
               && memsess_skew_ms(&n) < -1850,
               "the fresh copy's lines: where it was, no step seen (%lld "
               "ms)", (long long)memsess_skew_ms(&n));
            memset(&n, 0, sizeof(n));
            memsess_skew_seed(&n, 100, -1, 0, 0, 0);
            ok(!n.known, "nothing known before: nothing seeded");
        }
    }

    /* a time of ours taken before a step of our clock, read after it */
    ok(memsess_clock_moved_ms(10000, 900000, 895000) == 5000,
       "a time taken before our clock stepped 5 s back: 5 s earlier in "
       "the clock as it is now");
    ok(memsess_clock_moved_ms(10000, 900000, 903000) == 13000,
       "... 3 s ahead: 3 s later");
    ok(memsess_clock_moved_ms(10000, 0, 895000) == 10000
       && memsess_clock_moved_ms(10000, 900000, 0) == 10000
       && memsess_clock_moved_ms(0, 900000, 895000) == 0,
       "an offset not known, or no time: as it was");

    /* a line without a write time, or the same one again: nothing learnt */
    {
        memsess_skew_t z;
        memsess_skew_seen_t zs;

        memset(&z, 0, sizeof(z));
        memset(&zs, 0, sizeof(zs));
        memsess_skew_note(&z, &zs, 0, 1000, 0);
        memsess_skew_note(&z, &zs, 5000, 1200, 0);
        memsess_skew_note(&z, &zs, 5000, 1400, 0);
        ok(!z.known, "one value only: nothing known yet");
        memsess_skew_note(&z, &zs, 6000, 1600, 0);
        ok(z.known && z.lo == 6000 - 1600 && z.hi == 6000 - 1400,
           "one change: between the two reads");
    }

    apr_terminate();
    return done_testing();
}
