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

/* memsess_lateness.h: whether the checker itself was late
 * (memsess_lateness.c). */

#ifndef MEMSESS_LATENESS_H
#define MEMSESS_LATENESS_H

#include "memsess_common.h"

/* Two kernel counters at one moment; -1: unknown on this machine. */
typedef struct {
    apr_time_t  at;
    apr_int64_t stall_us;   /* /proc/pressure/cpu "some total" */
    apr_int64_t wait_us;    /* this thread's run-queue wait */
} memsess_late_sample_t;

/* Samples both counters (and the time) for the calling thread. */
void memsess_late_sample(memsess_late_sample_t *s);
/* Whether the window between two samples of one thread was late: the
 * machine's tasks, or the thread itself, waited for a CPU a quarter of it
 * or more.  When it was, why says so in a few words. */
int memsess_late_judge(const memsess_late_sample_t *before,
                       const memsess_late_sample_t *after, char *why,
                       apr_size_t whylen);
/* Which counters this machine has, in words; NULL for none. */
const char *memsess_late_sources(void);
/* The parsers (pure, fuzzed): 1 and the counter, or 0. */
int memsess_late_parse_psi(const char *buf, apr_size_t len,
                           apr_int64_t *total_us);
int memsess_late_parse_schedstat(const char *buf, apr_size_t len,
                                 apr_int64_t *wait_us);

#endif /* MEMSESS_LATENESS_H */
