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

/* memsess_job.h: the record of a job run once for the group (memsess_job.c:
 * pure). */

#ifndef MEMSESS_JOB_H
#define MEMSESS_JOB_H

#include "memsess_common.h"

/* The rejoin sync's job record (memsess_job.c: pure; memsess_rejoin.c
 * does the I/O): one instance of a group syncs a returning server for
 * all. */
#define MEMSESS_JOB_RECORD_MAX (256)

typedef struct {
    char         holder[MEMSESS_INSTANCE_MAX];
    int          done;       /* 0: syncing; 1: synced and published */
    apr_int64_t  since;      /* unix seconds */
    apr_int64_t  expires;    /* unix seconds: taken over after that */
    apr_uint64_t lists;      /* fingerprint of the lists synced */
    apr_int64_t  flip_ms;    /* done: when all publish it (unix ms) */
} memsess_job_t;

/* Parses a record read from memcached (len bytes).  Returns NULL, or why
 * it is refused (not a record, another version, from the future). */
const char *memsess_job_parse(const char *buf, apr_size_t len,
                              apr_int64_t now, memsess_job_t *out);

/* Formats job into buf; returns its length. */
apr_size_t memsess_job_format(char *buf, apr_size_t size,
                              const memsess_job_t *job);

typedef enum {
    MEMSESS_JOB_TAKE,      /* no record: add ours */
    MEMSESS_JOB_REPLACE,   /* one we may replace (unreadable, ours from a
                            * previous checker, or lapsed): cas ours over
                            * it */
    MEMSESS_JOB_WAIT,      /* another instance syncs: wait for it */
    MEMSESS_JOB_FOLLOW     /* another instance synced it: publish the
                            * server with it */
} memsess_job_step_e;

/* When a follower publishes a job done at flip_ms (the holder's clock,
 * ms), in its own clock: within what the holder's clock's lead (skew, +-
 * error, ms) allows and within what its own reads saw (the record not done
 * when asked at asked_ms, done when seen at seen_ms: it was written between,
 * flip_ms then set delay_ms ahead; asked_ms 0: never seen not done), in the
 * middle of what both allow, and never after seen_ms + delay_ms (done when
 * seen); what was seen when the two disagree (a clock stepped).  error < 0:
 * the holder's clock not known: seen_ms + delay_ms. */
apr_int64_t memsess_flip_follow(apr_int64_t flip_ms, apr_int64_t skew,
                                apr_int64_t error, apr_int64_t asked_ms,
                                apr_int64_t seen_ms, apr_int64_t delay_ms);

/* What self does next, given the record read (rec NULL when unreadable;
 * exists 0 when there is none) and the fingerprint of its own lists.  A
 * job done that began before not_before (unix seconds, by our clock: the
 * outage or the change this job is for, less a margin) was another
 * outage's or change's: taken over, never followed (otherwise one done is
 * followed, whoever ran it, a previous checker of ours too, and however
 * long ago its holder stopped, unless nothing tells: not_before and out_ms
 * 0, and its lease lapsed).  So is one done whose
 * flip is not after out_ms, the moment self stopped publishing the server
 * (in the holder's clock, at the latest it can be; 0: not known): the
 * server went out again after that flip (another instance's verdict, a
 * restart), and what requests wrote meanwhile went elsewhere.  A job
 * another instance syncs lapses when self has seen its record unchanged
 * (unchanged_ms: by self's monotonic clock, 0 when it just changed or was
 * just read) for its time to live (ttl_ms): never by the clocks. */
memsess_job_step_e memsess_job_next(const memsess_job_t *rec, int exists,
                                    const char *self, apr_uint64_t lists,
                                    apr_int64_t now, apr_int64_t not_before,
                                    apr_int64_t out_ms,
                                    apr_int64_t unchanged_ms,
                                    apr_int64_t ttl_ms);
/* The margin of not_before: what two clocks of one group may differ by
 * without an earlier job's record passing for this one's. */
#define MEMSESS_JOB_SKEW (2)

#endif /* MEMSESS_JOB_H */
