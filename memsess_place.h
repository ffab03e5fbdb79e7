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

/* memsess_place.h: where php-memcached places a key (memsess_place.c:
 * libmemcached). */

#ifndef MEMSESS_PLACE_H
#define MEMSESS_PLACE_H

#include "memsess_common.h"

/* Where php-memcached 3.x puts keys for one session.save_path: a
 * memcached_st built as its session handler builds one (servers from
 * memcached_servers_parse, binary protocol, ketama or modula, replicas,
 * the prefix as namespace), asked with memcached_generate_hash(); the
 * replicas are the next servers in list order, as libmemcached writes
 * them. */
typedef struct memsess_place memsess_place_t;

/* NULL when libmemcached refuses the list.  Freed with pool p. */
memsess_place_t *memsess_place_create(apr_pool_t *p, const char *save_path,
                                      int replicas, int ketama);
/* Distinct servers of the list, "host:port" as libmemcached parsed them. */
int memsess_place_nservers(const memsess_place_t *pl);
const char *memsess_place_server(const memsess_place_t *pl, int i);
/* The servers (indexes above) that hold id: where reads go first, then
 * the replicas, each once.  Returns how many (at most max). */
int memsess_place_key(const memsess_place_t *pl, const char *id,
                      apr_size_t idlen, int *where, int max);

/* Which consistent hashing php-memcached uses for a view: ketama unless
 * mod_memsess injects sess_consistent_hash=0 (replicas with successor). */
int memsess_view_ketama(int replicas, memsess_failover_e failover);

#endif /* MEMSESS_PLACE_H */
