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

/* The job record that lets one Apache instance of a group run a rejoin
 * sync for all of them (memsess_rejoin.c does the I/O).  Pure: no httpd,
 * no network, no allocation; what comes back from memcached is untrusted
 * and bounded here.
 *
 * Key, on the returning server X itself (every instance that could sync X
 * reaches it; memsess_record_key, kind "job"):
 *     memsess:v1:<group>:job:<X's address>
 * Value, one line:
 *     memsess-job 1 <holder> <syncing|done> <since> <expires> <lists> <flip>\n
 * holder is the instance that runs (or ran) the sync, since and expires
 * unix seconds, lists a 16-hex-digit fingerprint of the lists it synced
 * between: an instance publishes X with the holder only when it would
 * have synced the same lists; flip, once done, the unix time in
 * milliseconds at which every instance publishes it (the holder too), so
 * that all take it at once (0 while syncing).  The holder refreshes
 * expires while it works; a record whose expires has passed is the job of
 * an instance that died or was cut off, and is taken over.
 */

#include <stdio.h>
#include <string.h>

#include "apr_strings.h"

#include "memsess_job.h"
#include "memsess_verdicts.h"

#define HEADER      "memsess-job "
#define HEADER_LEN  (sizeof(HEADER) - 1)
#define MAX_DIGITS  (12)

static const char *word(const char *p, const char *end, const char **w,
                        apr_size_t *len)
{
    *w = p;
    while (p < end && *p != ' ' && *p != '\n') {
        p++;
    }
    *len = (apr_size_t)(p - *w);
    return *len && p < end ? p : NULL;
}

/* A decimal number of 1..15 digits without leading zeros. */
static int number(const char *w, apr_size_t len, apr_int64_t *out)
{
    apr_int64_t n = 0;
    apr_size_t i;

    if (!len || len > 15 || (len > 1 && w[0] == '0')) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (w[i] < '0' || w[i] > '9') {
            return 0;
        }
        n = n * 10 + (w[i] - '0');
    }
    *out = n;
    return 1;
}

static int hex64(const char *w, apr_size_t len, apr_uint64_t *out)
{
    apr_uint64_t n = 0;
    apr_size_t i;

    if (len != 16) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        char c = w[i];
        int d = c >= '0' && c <= '9' ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;

        if (d < 0) {
            return 0;
        }
        n = (n << 4) | (apr_uint64_t)d;
    }
    *out = n;
    return 1;
}

const char *memsess_job_parse(const char *buf, apr_size_t len,
                              apr_int64_t now, memsess_job_t *out)
{
    const char *p = buf, *end = buf + len, *w;
    apr_size_t wl;
    apr_int64_t version;

    memset(out, 0, sizeof(*out));
    if (len > MEMSESS_JOB_RECORD_MAX) {
        return "longer than a job record can be";
    }
    if (len < HEADER_LEN || memcmp(p, HEADER, HEADER_LEN)) {
        return "not a job record";
    }
    p += HEADER_LEN;
    if (!(p = word(p, end, &w, &wl)) || *p != ' ' || !number(w, wl, &version)) {
        return "not a job record";
    }
    if (version != MEMSESS_VERDICTS_VERSION) {
        return "a job record of another version";
    }
    if (!(p = word(p + 1, end, &w, &wl)) || *p != ' '
        || wl >= MEMSESS_INSTANCE_MAX) {
        return "a job record without a holder";
    }
    memcpy(out->holder, w, wl);
    out->holder[wl] = '\0';
    if (strlen(out->holder) != wl
        || !memsess_instance_name_valid(out->holder, MEMSESS_INSTANCE_MAX)) {
        return "a job record whose holder has characters no instance has";
    }
    if (!(p = word(p + 1, end, &w, &wl)) || *p != ' ') {
        return "a job record without a state";
    }
    if (wl == 7 && !memcmp(w, "syncing", 7)) {
        out->done = 0;
    }
    else if (wl == 4 && !memcmp(w, "done", 4)) {
        out->done = 1;
    }
    else {
        return "a job record with an unknown state";
    }
    if (!(p = word(p + 1, end, &w, &wl)) || *p != ' '
        || wl > MAX_DIGITS || !number(w, wl, &out->since)
        || !(p = word(p + 1, end, &w, &wl)) || *p != ' '
        || wl > MAX_DIGITS || !number(w, wl, &out->expires)) {
        return "a job record without its two times";
    }
    if (!(p = word(p + 1, end, &w, &wl)) || *p != ' '
        || !hex64(w, wl, &out->lists)) {
        return "a job record without its lists";
    }
    if (!(p = word(p + 1, end, &w, &wl)) || *p != '\n' || p + 1 != end
        || wl > 15 || !number(w, wl, &out->flip_ms)) {
        return "a job record without its flip time";
    }
    if (out->expires < out->since) {
        return "a job record that expires before it began";
    }
    if (out->since > now + MEMSESS_VERDICT_SKEW_MAX
        || out->expires > now + MEMSESS_VERDICT_SKEW_MAX
                          + MEMSESS_VERDICT_TTL_MAX
        || out->flip_ms / 1000 > now + MEMSESS_VERDICT_SKEW_MAX) {
        return "a job record from the future";
    }
    return NULL;
}

apr_size_t memsess_job_format(char *buf, apr_size_t size,
                              const memsess_job_t *job)
{
    int n = snprintf(buf, size, HEADER "%d %s %s %" APR_INT64_T_FMT " %"
                     APR_INT64_T_FMT " %016" APR_UINT64_T_HEX_FMT " %"
                     APR_INT64_T_FMT "\n", MEMSESS_VERDICTS_VERSION,
                     job->holder, job->done ? "done" : "syncing",
                     job->since, job->expires, job->lists, job->flip_ms);

    return n < 0 ? 0 : (apr_size_t)n < size ? (apr_size_t)n : size;
}

memsess_job_step_e memsess_job_next(const memsess_job_t *rec, int exists,
                                    const char *self, apr_uint64_t lists,
                                    apr_int64_t now, apr_int64_t not_before,
                                    apr_int64_t out_ms,
                                    apr_int64_t unchanged_ms,
                                    apr_int64_t ttl_ms)
{
    if (!exists) {
        return MEMSESS_JOB_TAKE;
    }
    if (!rec) {
        return MEMSESS_JOB_REPLACE;       /* unreadable: never trusted */
    }
    if (rec->done) {
        /* the sync was done and published: followed, whoever ran it (a
         * previous checker of ours too: a new one adopts the result
         * rather than sync a published server again), even when its
         * holder has stopped since, and when it was done for other lists
         * (they differ only while the states of other servers travel
         * between instances): syncing again after the holder published
         * the server could delete what was written to it since (drop: no
         * copy at its old authority); unless it was another outage's */
        return rec->since < not_before    /* begun before this one */
               || (out_ms && rec->flip_ms && rec->flip_ms <= out_ms)
                                          /* published, then out again */
               || (!not_before && !out_ms && rec->expires < now)
                                          /* nothing to tell: lapsed */
               ? MEMSESS_JOB_REPLACE : MEMSESS_JOB_FOLLOW;
    }
    if (!strcmp(rec->holder, self)        /* a previous checker of ours */
        || unchanged_ms >= ttl_ms) {      /* its holder stopped */
        /* not renewed for its time to live by our own clock: a holder
         * renews it several times a lease; its expires, in the holder's
         * clock, would hand a live job to an instance whose clock is
         * ahead (memcached drops the record at 2 leases and more, by its
         * own clock, so a record found dead costs a lease at most) */
        return MEMSESS_JOB_REPLACE;
    }
    (void)lists;   /* (the caller says when they differ) */
    return MEMSESS_JOB_WAIT;
}

apr_int64_t memsess_flip_follow(apr_int64_t flip_ms, apr_int64_t skew,
                                apr_int64_t error, apr_int64_t asked_ms,
                                apr_int64_t seen_ms, apr_int64_t delay_ms)
{
    /* by the clocks: the holder's time less its clock's lead, +- error */
    apr_int64_t lo = flip_ms - skew - error, hi = flip_ms - skew + error;
    /* by what we saw: done when seen, so written before, its flip time
     * set delay_ms ahead of its writing: never later than this, whatever
     * the clocks (a holder's clock ahead and its skew not known yet, by a
     * checker just started: read as ours, its flip looked seconds away,
     * was not waited for, and the follower published 165 ms before it, in
     * the soak, seed 424242) */
    apr_int64_t hi_seen = seen_ms + delay_ms;

    if (error < 0) {
        /* the holder's clock not known (a checker just restarted, no
         * measure within the flip's tolerance): its flip time read as ours
         * could be seconds in the past when its clock is behind, and the
         * follower published at once, 230 ms before the holder (the soak,
         * seed 424242: a session created there on the server not synced
         * yet, lost); at the latest the record allows, never early */
        return hi_seen;
    }

    if (asked_ms && asked_ms <= seen_ms && asked_ms + delay_ms > lo) {
        lo = asked_ms + delay_ms;   /* turned done between our two reads */
    }
    if (hi_seen < hi) {
        hi = hi_seen;
    }
    /* in the middle of what is known: late, its users read the old places
     * after the others wrote the new ones (the latest it could be, a
     * follower that came to a job already done, as after a graceful or a
     * checker restarted, published 85-276 ms after the holder: the soak,
     * seed 31337077); early, the active sessions' locks under the new list
     * are still the holder's.  The clocks and what was seen disagreeing (a
     * clock stepped since it was measured), what was seen */
    return lo <= hi ? lo + (hi - lo) / 2 : hi_seen;
}
