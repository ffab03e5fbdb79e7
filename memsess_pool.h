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

/* memsess_pool.h: parsing and formatting a pool: "host[:port[:weight]]",
 * times, the save_path (memsess_pool.c: APR only). */

#ifndef MEMSESS_POOL_H
#define MEMSESS_POOL_H

#include "memsess_common.h"

/* Parses one "host[:port[:weight]]" token.  Returns NULL, or an error
 * message naming the token (without the directive name). */
const char *memsess_server_parse(apr_pool_t *p, const char *token,
                                 memsess_server_t *srv);

/* Parses a list of tokens into *pool: a new pool when *pool is NULL, else
 * appended to it (a list may span several directives).  Returns NULL, or
 * an error message (without the directive name). */
const char *memsess_pool_parse(apr_pool_t *p, int argc, char *const argv[],
                               memsess_pool_t **pool);

/* Splits one MemsessServers line into words with getword (httpd's
 * ap_getword_conf has this type), every one to the end of the line, and
 * parses them as memsess_pool_parse does. */
typedef char *(*memsess_getword_f)(apr_pool_t *p, const char **line);
const char *memsess_pool_parse_line(apr_pool_t *p, const char *line,
                                    memsess_getword_f getword,
                                    memsess_pool_t **pool);

/* Parses a time: exactly N, Nms, Ns, Nm or Nh (a bare number is seconds),
 * N decimal digits.  APR_SUCCESS, or APR_EINVAL for anything else.  A time
 * too long for apr_interval_time_t reads as APR_INT64_MAX, so that every
 * upper bound refuses it and no caller's arithmetic overflows. */
apr_status_t memsess_time_parse(const char *arg, apr_interval_time_t *t);

/* Writes the save_path of pool, NUL-terminated, into buf of size bytes: in
 * config order, every server when live is NULL, otherwise those whose
 * live[i] is non-zero, a down one left out or, with SUCCESSOR, replaced by
 * the next live server after it (cyclically; live must then have one).
 * Returns the length it needs without the NUL: when that is >= size the
 * output was cut. */
apr_size_t memsess_path_build(char *buf, apr_size_t size,
                              const memsess_pool_t *pool,
                              const unsigned char *live,
                              memsess_format_e format,
                              memsess_failover_e failover);

/* The longest save_path memsess_path_build can give for pool, whatever is
 * live, without the NUL. */
apr_size_t memsess_path_max(const memsess_pool_t *pool,
                            memsess_format_e format,
                            memsess_failover_e failover);

/* The defaults that depend on others (SPEC.md): replicas on the pool's
 * size, failover on replicas and format.  -1 = not configured. */
int memsess_default_replicas(int replicas, int nservers);
memsess_failover_e memsess_default_failover(int failover, int replicas,
                                            memsess_format_e format);

#endif /* MEMSESS_POOL_H */
