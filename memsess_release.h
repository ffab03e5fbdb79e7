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

/* memsess_release.h: every child shuts down its sockets to a server marked
 * down (memsess_release.c). */

#ifndef MEMSESS_RELEASE_H
#define MEMSESS_RELEASE_H

#include "memsess_common.h"

/* memsess_release.c: child_init; a request that got a pool (before it
 * reads the table); every child's watchdog tick */
void memsess_release_child_init(apr_pool_t *p, memsess_runtime_t *rt);
void memsess_release_track(request_rec *r);
void memsess_release_tick(memsess_runtime_t *rt);

#endif /* MEMSESS_RELEASE_H */
