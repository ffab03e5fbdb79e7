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

/* memsess_gate.h: a flip's gate (memsess_gate.c). */

#ifndef MEMSESS_GATE_H
#define MEMSESS_GATE_H

#include "memsess_common.h"
#include "memsess_sync.h"

/* memsess_gate.c: a flip's gate.  The caller closes it in the table
 * write that publishes the flip (gated[v]: the views whose list changes;
 * the table's writer held), calls memsess_gate_flipped() right after that
 * write, and hands memsess_gate_settled() and memsess_gate_open() to
 * memsess_sync_flipped() (memsess_flip_wait_t).  Requests are not taken to
 * be done before not_before (others of the group take their locks by
 * then); the gate opens MEMSESS_GATE_MAX after the flip at the latest.
 * Its times are memsess_mono_now()'s, as is a view's gate in the table:
 * a wall clock stepped back held requests at it for its whole cap. */
typedef struct {
    memsess_runtime_t      *rt;
    apr_thread_mutex_t     *mutex;       /* the table writer's */
    const int              *gated;       /* [views]: non-zero, gated */
    volatile apr_uint32_t  *stop;
    apr_time_t              until, not_before;
    apr_time_t              since;       /* the sync's start */
    apr_uint64_t            epoch;
    int                     waited_for;  /* requests that began before */
    apr_time_t              closed;      /* when it closed */
    apr_time_t              open;        /* when it opened; 0: not yet */
} memsess_gate_t;
void memsess_gate_close(memsess_gate_t *g, memsess_runtime_t *rt,
                        apr_thread_mutex_t *mutex, const int *gated,
                        apr_time_t since, apr_time_t not_before,
                        volatile apr_uint32_t *stop);
void memsess_gate_flipped(memsess_gate_t *g);
int memsess_gate_settled(void *gate);
void memsess_gate_open(void *gate);
void memsess_gate_recent(void *gate,
                         void (*each)(void *ctx, const char *id,
                                      apr_size_t len),
                         void *ctx);
/* The requests running at the flip, with their session
 * (memsess_flip_wait_t.inflight, .still). */
void memsess_gate_inflight(void *gate,
                           void (*each)(void *ctx, const char *id,
                                        apr_size_t len, int worker,
                                        apr_uint64_t token),
                           void *ctx);
int memsess_gate_still(void *gate, int worker, apr_uint64_t token);

/* The wait at a flip (memsess_sync_flipped): this gate's
 * memsess_gate_settled, _open, _recent, _inflight and _still. */
void memsess_gate_wait(memsess_gate_t *g, memsess_flip_wait_t *wait);

/* A follower's flip, the gate closed in its publication: its requests
 * wait, as the holder's do, for those that had the old list, then the
 * sessions its requests used since the gate's `since` that a new place
 * lacks are added there from the old one (a session born after the
 * holder's last listing, at this instance: only its requests know of it);
 * and so is what a request of its own running at the flip left at the
 * old place (memsess_flip_wait_t.inflight); the gate opens.  spec: the
 * lists of the job it followed.  *late: how many of the second kind;
 * returns how many of the first. */
int memsess_gate_follow(memsess_gate_t *g, const memsess_sync_spec_t *spec,
                        apr_pool_t *p, int *late);

/* For the flip's NOTICE: how long requests waited, for how many, and
 * how many sessions they used were brought over (born after the last
 * listing; left by a request running at the flip). */
const char *memsess_gate_text(apr_pool_t *p, const memsess_gate_t *g,
                              int brought, int late);

#endif /* MEMSESS_GATE_H */
