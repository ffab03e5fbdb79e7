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

/* memsess_check.h: the mod_watchdog checker, which runs every other part of
 * a round (memsess_check.c). */

#ifndef MEMSESS_CHECK_H
#define MEMSESS_CHECK_H

#include "memsess_common.h"

/* memsess_check.c */
apr_status_t memsess_check_post_config(apr_pool_t *pconf, server_rec *s,
                                       memsess_runtime_t *rt);
/* The checker process's tick (every 100 ms, memsess_check_process.c): the
 * same as a child's, but it beats, and keeps the lease it claims; and its
 * end, which hands the lease over. */
void memsess_check_process_tick(memsess_runtime_t *rt);
void memsess_check_process_stop(memsess_runtime_t *rt);

#endif /* MEMSESS_CHECK_H */
