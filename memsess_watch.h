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

/* memsess_watch.h: the checker notices a server's death as it happens
 * (memsess_watch.c). */

#ifndef MEMSESS_WATCH_H
#define MEMSESS_WATCH_H

#include "memsess_common.h"

/* memsess_watch.c: in the checker, one idle connection to every live
 * server; suspect(ctx, slot) is called when the server closes, resets or
 * refuses it (the checker probes it at once).  NULL: no thread. */
typedef struct memsess_watch memsess_watch_t;
typedef void memsess_suspect_fn(void *ctx, int slot);
memsess_watch_t *memsess_watch_start(apr_pool_t *p, memsess_runtime_t *rt,
                                     memsess_suspect_fn *suspect, void *ctx);
void memsess_watch_stop(memsess_watch_t *w);

#endif /* MEMSESS_WATCH_H */
