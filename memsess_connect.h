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

/* memsess_connect.h: the checker's libmemcached handles
 * (memsess_connect.c). */

#ifndef MEMSESS_CONNECT_H
#define MEMSESS_CONNECT_H

#include "memsess_common.h"

/* memsess_connect.c: a libmemcached handle to server slot as the
 * checker's own connections are (waits bounded by timeout, cas on, marked
 * for the release, MemsessCredentials); NULL when it cannot be made.
 * Connects on first use. */
struct memcached_st;
struct memcached_st *memsess_connect(const memsess_runtime_t *rt, int slot,
                                     apr_interval_time_t timeout);
/* Frees it (NULL accepted). */
void memsess_disconnect(struct memcached_st *mc);

#endif /* MEMSESS_CONNECT_H */
