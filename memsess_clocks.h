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

/* memsess_clocks.h: other instances' clocks: lapses and skews
 * (memsess_clocks.c: pure). */

#ifndef MEMSESS_CLOCKS_H
#define MEMSESS_CLOCKS_H

#include "memsess_common.h"

/* Other instances' clocks (memsess_clocks.c: pure).  A line of another
 * instance lapses when none of its copies (one a server) has changed for
 * its time to live by our monotonic clock; its skew (its clock minus ours)
 * is bounded by the times of the reads between which its member line
 * changed. */
typedef struct {
    apr_int64_t reported;   /* what the copy said, last read (its seconds) */
    apr_time_t  changed;    /* our monotonic time it last changed; 0:
                             * unseen */
} memsess_lapse_t;

/* Our monotonic clock (CLOCK_MONOTONIC): what lapses by our own time,
 * whatever the wall clock says or does (a step, a faked time). */
apr_time_t memsess_mono_now(void);

/* Notes copy c of a line (its copies, one a server: copies[0 .. n)) read
 * at our monotonic time mono; its writer meant it to hold ttl seconds.
 * Returns whether the line is live: some copy of it changed within ttl
 * + 1 s. */
int memsess_lapse_note(memsess_lapse_t *copies, int n, int c,
                       apr_int64_t reported, apr_int64_t ttl,
                       apr_time_t mono);

/* Each time of ours below is kept with the offset of our clock it was
 * read in (memsess_clock_offset_ms(); 0: not known): a step of our clock
 * since is taken off before it is used, once, however the step falls
 * between reads. */
typedef struct {
    apr_int64_t wrote_ms;   /* what the copy on one server said, last read */
    apr_int64_t read_ms;    /* our clock at that read */
    apr_int64_t off_ms;     /* ... in our clock of that offset */
    apr_int64_t peer_off_ms;   /* wrote_ms: in its clock of that offset
                                * (0: not known) */
} memsess_skew_seen_t;

typedef struct {
    apr_int64_t lo, hi;     /* its clock minus ours lies in [lo, hi] ms */
    apr_int64_t at_ms;      /* our clock when last narrowed */
    apr_int64_t off_ms;     /* lo, hi and at_ms: ours of this offset */
    apr_uint32_t steps;     /* readings outside what was known */
    int          known;
    apr_int64_t  peer_off_ms;  /* lo, hi: its clock of that offset (0: not
                                * known) */
} memsess_skew_t;

/* Notes a member line's wrote_ms read on one server (s: that server's
 * last reading) at our clock read_ms, of offset off_ms. */
void memsess_skew_note(memsess_skew_t *k, memsess_skew_seen_t *s,
                       apr_int64_t wrote_ms, apr_int64_t read_ms,
                       apr_int64_t off_ms);
/* What k and s know, moved to the other instance's clock of offset
 * peer_off_ms (its wall clock minus its monotonic clock, as its member
 * line says; 0: not said): a step of its clock moves its skew by as much,
 * at once and as precisely as it was known, instead of a reading outside
 * what is known starting the measure over (its job records were read
 * with no skew for the second that took: a done job looked older than
 * the outage, and another synced the server again).  Moves of less than
 * MEMSESS_CLOCK_STEP_MS add up until they reach it.  Only a copy written
 * since our last reading of it moves what is known (a stale copy on a
 * server its writer cannot reach says the offset of before).  Called
 * before memsess_skew_note() with the same line. */
void memsess_skew_peer_offset(memsess_skew_t *k, memsess_skew_seen_t *s,
                              apr_int64_t wrote_ms, apr_int64_t peer_off_ms);
/* The middle of what is known (0 when nothing is), and half its width
 * (-1 when nothing is). */
apr_int64_t memsess_skew_ms(const memsess_skew_t *k);
apr_int64_t memsess_skew_error_ms(const memsess_skew_t *k);

/* Our wall clock minus our monotonic clock, ms: it moves when our wall
 * clock is stepped (NTP, a suspended VM, by hand), not as time passes. */
apr_int64_t memsess_clock_offset_ms(void);
/* A move of that offset beyond this between two looks is a step of ours. */
#define MEMSESS_CLOCK_STEP_MS (50)

/* k as a previous checker of ours knew it (the table keeps it): lo and hi
 * skew_ms -+ error_ms, narrowed last at at_ms, all in our clock of offset
 * off_ms, its clock of offset peer_off_ms (0: not known).  A new checker
 * (a graceful, a checker process restarted) starts from it, not from
 * nothing: a follower whose holder's clock was not known published a
 * flip 250 ms after it saw it, 276 ms after the holder (the soak, seed
 * 31337077).  Nothing when error_ms < 0. */
void memsess_skew_seed(memsess_skew_t *k, apr_int64_t skew_ms,
                       apr_int64_t error_ms, apr_int64_t at_ms,
                       apr_int64_t off_ms, apr_int64_t peer_off_ms);

/* A time of ours, t_ms, read in our clock of offset then_ms, in our clock
 * of offset now_ms: moved by the step between; as it was when either is
 * not known (0) or t_ms is 0 (none). */
apr_int64_t memsess_clock_moved_ms(apr_int64_t t_ms, apr_int64_t then_ms,
                                   apr_int64_t now_ms);

/* What k knows, in our clock of offset off_ms: moved by the step between
 * (another instance's clock minus ours changes by as much as ours
 * stepped, the other way); nothing when either offset is not known. */
void memsess_skew_rebase(memsess_skew_t *k, apr_int64_t off_ms);

#endif /* MEMSESS_CLOCKS_H */
