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

/* memsess_exchange.h: the checker's verdict exchange with the group
 * (memsess_exchange.c). */

#ifndef MEMSESS_EXCHANGE_H
#define MEMSESS_EXCHANGE_H

#include "memsess_common.h"

/* memsess_exchange.c: the checker's verdict exchange, on a thread of its
 * own.  start returns NULL when MemsessShareVerdicts is Off (then it
 * clears the other instances' verdicts left in the table) or the thread
 * could not start; round and stop accept NULL. */
typedef struct memsess_exchange memsess_exchange_t;
memsess_exchange_t *memsess_exchange_start(memsess_runtime_t *rt,
                                           apr_pool_t *pool,
                                           apr_thread_mutex_t *table_mutex,
                                           const memsess_syncs_t *syncs);
/* Starts a round unless the last one is still out. */
void memsess_exchange_round(memsess_exchange_t *x);
/* Starts a round (after the one still out, if any) and waits until one
 * begun after the call has ended (its lines applied), or until deadline
 * (by memsess_mono_now(); 0: does not wait).  Returns whether one did. */
int memsess_exchange_fresh(memsess_exchange_t *x, apr_time_t deadline);
/* Whether this instance shares with the group: not when it found a twin
 * (another instance of its name: MEMSESS0099), for good. */
int memsess_exchange_sharing(memsess_exchange_t *x);
/* Whether every other instance of the group (its member line not lapsed)
 * has its pools, as configured or as in force, with fingerprint fp; the
 * names of those that do not in who.  1 when x is NULL (sharing Off); 0
 * until the exchange has read a whole round (every instance refreshes its
 * line all the time: one round reads them all). */
int memsess_exchange_agree(memsess_exchange_t *x, int in_force,
                           apr_uint64_t fp, char *who, apr_size_t whosize);
/* How long requests wait when a server goes out here while other
 * instances of the group may still read it (an asymmetric cut): at a
 * verdict of ours, for the others to take it (our line goes out at once,
 * each of them reads it within a round of its own); at another's verdict,
 * for the rest of the group to take it too (each at its own next round,
 * up to an interval after us). */
#define MEMSESS_FOLLOW_WAIT(rt) (2 * (rt)->g.interval)
/* Gates the views that hold slot i, whose server just went out here while
 * other instances of the group may still read it, until
 * MEMSESS_FOLLOW_WAIT from now (a later gate of the slot stands); the
 * slot's follow_gate says until when.  Returns the longest a request waits
 * for it in ms (the gate's cap counted), 0 when no view holds the server.
 * Inside the table write that publishes the change. */
apr_int64_t memsess_exchange_follow_gate(memsess_runtime_t *rt, int i);

/* How many other instances of the group were heard in the last round (0
 * before a whole round was read, and when x is NULL). */
int memsess_exchange_others(memsess_exchange_t *x);
void memsess_exchange_stop(memsess_exchange_t *x);

#endif /* MEMSESS_EXCHANGE_H */
