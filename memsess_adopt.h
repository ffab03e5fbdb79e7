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

/* memsess_adopt.h: what a start finds in force: the state file, PHP's own
 * placement (memsess_adopt.c). */

#ifndef MEMSESS_ADOPT_H
#define MEMSESS_ADOPT_H

#include "memsess_common.h"

/* memsess_adopt.c: what a start finds in force */
/* php.ini's memcached.sess_number_of_replicas and sess_consistent_hash as
 * mod_php read them (post_config, after mod_php's), else php-memcached's
 * defaults (0, On); *from (may be NULL) says which. */
void memsess_php_placement(int *replicas, int *ketama, const char **from);
/* php.ini's memcached.sess_prefix as mod_php read it, else php-memcached's
 * default (MEMSESS_SESS_PREFIX), copied into p (mod_php's own goes with
 * it at a graceful); *from says which.  A value that cannot be
 * a namespace counts as none. */
const char *memsess_php_prefix(apr_pool_t *p, const char **from);
/* A php.ini setting the syncs do not follow (a hash type other than
 * ketama, a prefix that cannot be injected), described; NULL: none. */
const char *memsess_php_placement_odd(apr_pool_t *p);
/* post_config: MemsessStateDir made, the children's user's.  1 when the
 * state file can be kept there. */
int memsess_state_prepare(apr_pool_t *ptemp, const memsess_runtime_t *rt);
/* The placements the state file keeps (memsess_placed_t), or NULL: no
 * file, or one that does not read back (logged). */
apr_array_header_t *memsess_state_load(apr_pool_t *p,
                                       const memsess_runtime_t *rt);
/* Writes every view's placement in force (the parent at post_config, the
 * checker at a flip, holding its mutex); logs a failure. */
apr_status_t memsess_state_save(apr_pool_t *p, const memsess_runtime_t *rt);

#endif /* MEMSESS_ADOPT_H */
