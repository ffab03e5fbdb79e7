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

/* memsess_rejoin.h: the checker's rejoin syncs, a thread each
 * (memsess_rejoin.c). */

#ifndef MEMSESS_REJOIN_H
#define MEMSESS_REJOIN_H

#include "memsess_common.h"
#include "memsess_exchange.h"

/* memsess_rejoin.c: the checker's rejoin syncs, a thread each.  mutex is
 * the checker's (held by every writer of the table); start, busy and
 * cancel and kick are called with it held, reap and stop_all without. */
typedef struct memsess_rejoin memsess_rejoin_t;
struct apr_thread_mutex_t;
memsess_rejoin_t *memsess_rejoin_create(apr_pool_t *p, memsess_runtime_t *rt,
                                        struct apr_thread_mutex_t *mutex);
/* Starts the sync of slot i, just marked SYNCING (inside no write), or
 * queues it while another server of one of its pools syncs before its
 * flip. */
void memsess_rejoin_start(memsess_rejoin_t *r, int i);
/* Starts the queued syncs whose pools are free now (at most every 10 ms;
 * after every verdict and every round). */
void memsess_rejoin_kick(memsess_rejoin_t *r);
/* Whether the last sync of slot i still runs, or is queued (its server
 * stays down). */
int memsess_rejoin_busy(memsess_rejoin_t *r, int i);
/* The verdict exchange: with it, a server's sync runs once for the group
 * (memsess_joblock.c), and all publish it at one flip time. */
void memsess_rejoin_share(memsess_rejoin_t *r, memsess_exchange_t *x);
/* The gate its jobs' first readings of the group's record open (or replace
 * by the flip's): the views holding a server whose sync a previous
 * checker, or generation, was in the middle of (memsess_check.c). */
void memsess_rejoin_gated(memsess_rejoin_t *r, apr_time_t until);
/* Its server failed a probe: the sync stops at its next key. */
void memsess_rejoin_cancel(memsess_rejoin_t *r, int i);
/* Joins the syncs that ended (each round). */
void memsess_rejoin_reap(memsess_rejoin_t *r);
/* The checker stops: every sync stops, and is joined. */
void memsess_rejoin_stop_all(memsess_rejoin_t *r);

#endif /* MEMSESS_REJOIN_H */
