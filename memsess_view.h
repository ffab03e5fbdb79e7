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

/* memsess_view.h: what a view publishes from and gives: in force, its path,
 * the pools' fingerprint, the all-down NOTICE (memsess_view.c). */

#ifndef MEMSESS_VIEW_H
#define MEMSESS_VIEW_H

#include "memsess_common.h"

/* The list in force as a table records it: every server, config order,
 * memcached syntax. */
const char *memsess_served_text(apr_pool_t *p, const memsess_pool_t *pool);

/* What view v publishes from: its pool, or `before` while a rebalance
 * is pending; and the save_path a view gives with slot i counted live or
 * not (i < 0: none), as memsess_table_publish writes it.  The caller
 * holds the checker's mutex. */
/* A fingerprint of every view's pool (servers, replicas, failover,
 * format) as configured, or as in force (the caller holds the checker's
 * mutex): instances of a group rebalance a pool change once all have the
 * same configuration (memsess_exchange.c: their member lines). */
apr_uint64_t memsess_pools_fingerprint(apr_pool_t *p,
                                       const memsess_runtime_t *rt,
                                       int in_force);

const memsess_view_t *memsess_view_in_force(const memsess_runtime_t *rt,
                                            int v);
/* The namespace the sessions are under now: MemsessNamespace's (or its
 * default), unless the placement in force of a view (of those only[v]
 * marks; NULL: any) is still under another (a rebalance into the new one
 * pending): that one.  The caller holds the checker's mutex. */
const char *memsess_prefix_in_force(const memsess_runtime_t *rt,
                                    const int *only);
const char *memsess_view_path(apr_pool_t *p, const memsess_runtime_t *rt,
                              const memsess_view_t *view, int i, int i_live,
                              int *nlive_out);

/* Logs a vhost's pool going into (or out of) the state where none is live
 * (the NOTICEs MEMSESS0016-0018). */
void memsess_view_log_all_down(const memsess_runtime_t *rt,
                               const memsess_view_t *view, int all_down);

#endif /* MEMSESS_VIEW_H */
