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

/* memsess_inject.h: what a request gets: mod_php settings, php-fpm, env
 * (memsess_inject.c). */

#ifndef MEMSESS_INJECT_H
#define MEMSESS_INJECT_H

#include "memsess_common.h"

/* memsess_inject.c */
void memsess_inject_post_config(apr_pool_t *pconf, server_rec *s);
int memsess_inject_fixups(request_rec *r);

#endif /* MEMSESS_INJECT_H */
