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

/* memsess_persist_db.h: MemsessPersist through mod_dbd
 * (memsess_persist_db.c). */

#ifndef MEMSESS_PERSIST_DB_H
#define MEMSESS_PERSIST_DB_H

#include "memsess_common.h"

/* memsess_persist_db.c: MemsessPersist through mod_dbd.  available: the
 * functions of mod_dbd are there.  start runs the write-behind on a
 * thread of the checker (NULL when no view persists); mutex is the
 * table writer's. */
int memsess_persist_available(void);
typedef struct memsess_persist memsess_persist_t;
memsess_persist_t *memsess_persist_start(memsess_runtime_t *rt,
                                         apr_pool_t *pool,
                                         apr_thread_mutex_t *mutex);
void memsess_persist_stop(memsess_persist_t *ps);
/* The rejoin of server slot, which came back as a new process (its memory
 * lost): before it is published, view v's stored sessions that path_next
 * places on it and on no survivor (live servers that kept their memory,
 * by slot) are added to it, with what is left of their lifetime (add:
 * anything memcached has wins).  A database that cannot be read is a
 * WARN, not a failure (the server is published without them): APR_SUCCESS
 * but when the server itself fails.  The counts go to the view's slot
 * (mutex held for that). */
apr_status_t memsess_persist_restore(memsess_runtime_t *rt,
                                     apr_thread_mutex_t *mutex, int v,
                                     int slot, const char *path_next,
                                     const unsigned char *survivor,
                                     apr_pool_t *pool, char *err,
                                     apr_size_t errlen);

#endif /* MEMSESS_PERSIST_DB_H */
