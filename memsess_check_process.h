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

/* memsess_check_process.h: the checker process, out of the MPM's reach
 * (memsess_check_process.c). */

#ifndef MEMSESS_CHECK_PROCESS_H
#define MEMSESS_CHECK_PROCESS_H

#include "memsess_common.h"

/* The parent forks it once every module's post_config has run
 * (MemsessCheckerProcess On, not httpd -X), restarts it when it dies, and
 * stops it with pconf. */
void memsess_check_process_start(apr_pool_t *pconf, server_rec *s,
                                 memsess_runtime_t *rt);

#endif /* MEMSESS_CHECK_PROCESS_H */
