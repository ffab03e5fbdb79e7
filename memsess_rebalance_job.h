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

/* memsess_rebalance_job.h: the checker's rebalance, one thread at a time
 * (memsess_rebalance_job.c). */

#ifndef MEMSESS_REBALANCE_JOB_H
#define MEMSESS_REBALANCE_JOB_H

#include "memsess_common.h"
#include "memsess_exchange.h"

/* memsess_rebalance_job.c: the checker's rebalance, one thread at a time.
 * mutex is the checker's; the rejoin syncs (syncs: only busy is asked)
 * are waited for. */
typedef struct memsess_rebalancer memsess_rebalancer_t;
memsess_rebalancer_t *memsess_rebalancer_create(apr_pool_t *p,
                                                memsess_runtime_t *rt,
                                                apr_thread_mutex_t *mutex,
                                                const memsess_syncs_t *syncs);
/* Each round: joins a rebalance that ended, starts one when a view waits
 * and is ready. */
void memsess_rebalancer_round(memsess_rebalancer_t *r);
/* The verdict exchange: with it, a pool change is rebalanced once every
 * instance of the group has it, by one of them for all. */
void memsess_rebalancer_share(memsess_rebalancer_t *r,
                              memsess_exchange_t *x);
/* The gate its next job's first reading of the group's record opens (or
 * replaces by the flip's, in the write that prepares it): the views whose
 * pool change a previous checker was in the middle of (memsess_check.c),
 * or that a previous generation had under way (memsess_rebalance_gate_
 * resumed, the default). */
void memsess_rebalancer_gated(memsess_rebalancer_t *r, apr_time_t until);
/* The checker stops: the rebalance stops at its next key, and is joined. */
void memsess_rebalancer_stop(memsess_rebalancer_t *r);

#endif /* MEMSESS_REBALANCE_JOB_H */
