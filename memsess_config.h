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

/* memsess_config.h: the configuration's accessors (memsess_config.c). */

#ifndef MEMSESS_CONFIG_H
#define MEMSESS_CONFIG_H

#include "memsess_common.h"

/* A server's directives as parsed. */
memsess_srv_conf *memsess_srv_config(const server_rec *s);

/* The runtime of the running generation; NULL when no pool is configured.
 * mod_memsess.c sets it at post_config. */
memsess_runtime_t *memsess_runtime(void);
void memsess_runtime_set(memsess_runtime_t *rt);

/* Seconds a shared line (a verdict, a sync's job) holds unless refreshed:
 * three missed rounds. */
apr_int64_t memsess_share_ttl(const memsess_runtime_t *rt);

#endif /* MEMSESS_CONFIG_H */
