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

/* memsess_rebalance.h: pool changes across generations: the plan and the
 * table's texts at post_config (memsess_rebalance.c). */

#ifndef MEMSESS_REBALANCE_H
#define MEMSESS_REBALANCE_H

#include "memsess_common.h"

/* memsess_rebalance.c: pool changes across generations */

/* Gives every view whose list or placement differs from the one in force
 * before that one as its `before`, its servers slots (appended to
 * rt->targets).  In force before: what the previous generation's table
 * (old) records, else what the state file kept (state, may be NULL), else
 * (when adopt is set: the module did not run in this process before)
 * where PHP put the sessions (view->adopt).  Returns how many. */
int memsess_rebalance_plan(apr_pool_t *p, apr_pool_t *ptemp,
                           memsess_runtime_t *rt, const memsess_table_t *old,
                           apr_array_header_t *state, int adopt);
/* The text bytes view v needs in the table: its longest path, before's
 * too, and the list in force. */
apr_uint32_t memsess_rebalance_capacity(apr_pool_t *ptemp,
                                        const memsess_view_t *view);
apr_uint32_t memsess_rebalance_served_capacity(apr_pool_t *ptemp,
                                               const memsess_view_t *view);
/* Records in the new table each view's name and list in force, and
 * which wait for a rebalance. */
apr_status_t memsess_rebalance_fill(memsess_runtime_t *rt,
                                    apr_pool_t *ptemp);
/* Gates until `until` (memsess_mono_now()) the views of the new table
 * whose pool change the previous generation (old) had under way too: a
 * restart or a graceful in the middle of a change the group may have
 * finished meanwhile, its flip time written or past, which this
 * generation's checker learns only from the job's record.  Their requests
 * wait (MEMSESS_GATE_MAX at most each) until the checker has read it
 * (memsess_rebalance_job.c opens the gate, or prepares the flip in its
 * place), rather than take the list of before after the others' flip (the
 * soak, seed 918273: a new generation served it 130 ms after the flip,
 * until its checker followed the job done).  Only with shared verdicts:
 * alone, this instance's own checker runs the job.  Returns how many. */
int memsess_rebalance_gate_resumed(memsess_runtime_t *rt,
                                   const memsess_table_t *old,
                                   apr_time_t until);

#endif /* MEMSESS_REBALANCE_H */
