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

/* libFuzzer harness of memsess_job.c: the rejoin sync's job record, as it
 * comes back from memcached (written by another instance, or by anybody
 * who can write to the server).
 *
 * Input: the value of a record, in a malloc'd block of its exact size, so
 * ASan sees any byte read past it.
 *
 * What it checks (abort() on any difference, libFuzzer saves the input):
 *   - an accepted record has a valid holder, expires no earlier than it
 *     began, is not from the future, and starts with the version-1 header;
 *   - formatted again it is the very bytes it was read from (the format
 *     has one spelling per record), within MEMSESS_JOB_RECORD_MAX;
 *   - what comes next never trusts it more than it says: an unreadable
 *     record is replaced, a lapsed one too, a syncing one of another
 *     instance is waited for until seen unchanged for its time to live,
 *     only a done one is followed (one of a previous checker of ours
 *     too), and its flip is followed no later than the record allows.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apr_general.h"

#include "memsess_job.h"
#include "memsess_verdicts.h"

#define FUZZ_NAME "fuzz_job"
#include "fuzz.h"

#define NOW  ((apr_int64_t)1800000000)
#define SELF "web1.example:80"
#define TTL_MS 2000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static memsess_job_t job;
    char *in = malloc(size ? size : 1), buf[MEMSESS_JOB_RECORD_MAX + 1];
    const char *why;
    memsess_job_step_e step;
    apr_size_t len;

    if (!in) {
        return 0;
    }
    (void)fuzz_root();   /* apr_initialize, once */
    memcpy(in, data, size);
    why = memsess_job_parse(in, size, NOW, &job);
    if (why) {
        if (memsess_job_next(NULL, 1, SELF, 1, NOW, 0, 0, 0, TTL_MS) != MEMSESS_JOB_REPLACE) {
            fail("an unreadable record is not replaced");
        }
        free(in);
        return 0;
    }
    if (size > MEMSESS_JOB_RECORD_MAX
        || size < 14 || memcmp(in, "memsess-job 1 ", 14)) {
        fail("accepted a record without the header or past the bound");
    }
    if (!memsess_instance_name_valid(job.holder, MEMSESS_INSTANCE_MAX)
        || job.expires < job.since
        || job.since > NOW + MEMSESS_VERDICT_SKEW_MAX
        || job.expires > NOW + MEMSESS_VERDICT_SKEW_MAX
                         + MEMSESS_VERDICT_TTL_MAX
        || job.flip_ms < 0
        || job.flip_ms / 1000 > NOW + MEMSESS_VERDICT_SKEW_MAX) {
        fail("accepted a record it should have refused");
    }
    len = memsess_job_format(buf, sizeof(buf), &job);
    if (len != size || memcmp(buf, in, size)) {
        fail("formatted again, the record differs (%zu bytes of %zu)",
             (size_t)len, size);
    }
    free(in);

    step = memsess_job_next(&job, 1, SELF, job.lists, NOW, 0, 0, 0, TTL_MS);
    if (job.done) {
        /* done and published: followed whoever ran it (a previous
         * checker of ours too), unless it lapsed with nothing to tell */
        if (step != (job.expires < NOW ? MEMSESS_JOB_REPLACE
                                       : MEMSESS_JOB_FOLLOW)) {
            fail("a done record is not %s",
                 job.expires < NOW ? "replaced once lapsed" : "followed");
        }
    }
    else if (!strcmp(job.holder, SELF)) {
        if (step != MEMSESS_JOB_REPLACE) {
            fail("ours, yet not replaced");
        }
    }
    else if (step != MEMSESS_JOB_WAIT) {
        /* whatever its times say against our clock: just seen */
        fail("a sync of another instance just renewed is not waited for");
    }
    else if (memsess_job_next(&job, 1, SELF, job.lists, NOW, 0, 0, TTL_MS,
                              TTL_MS) != MEMSESS_JOB_REPLACE) {
        fail("a sync not renewed for its time to live is not taken over");
    }
    step = memsess_job_next(&job, 1, SELF, job.lists ^ 1, NOW, 0, 0, 0, TTL_MS);
    if (step == MEMSESS_JOB_FOLLOW && !job.done) {
        fail("followed a sync not done");
    }
    /* a follower never publishes after it could have: done when seen,
     * so flipped by the time seen plus the delay, whatever its time says */
    if (job.done
        && memsess_flip_follow(job.flip_ms, 0, 0, 0, NOW * 1000, 250)
           > NOW * 1000 + 250) {
        fail("a follower's flip later than the record allows");
    }
    /* ... and, the holder's clock not known, at exactly that: never early */
    if (job.done
        && memsess_flip_follow(job.flip_ms, 0, -1, 0, NOW * 1000, 250)
           != NOW * 1000 + 250) {
        fail("a follower's flip, the holder's clock not known, not at the "
             "latest the record allows");
    }
    /* a job done that began before this outage is never followed */
    step = memsess_job_next(&job, 1, SELF, job.lists, NOW, job.since + 1, 0, 0,
                            TTL_MS);
    if (step == MEMSESS_JOB_FOLLOW) {
        fail("followed a job done before the outage began");
    }
    return 0;
}
