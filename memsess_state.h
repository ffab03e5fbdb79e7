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

/* memsess_state.h: the state file's text (memsess_state.c: pure). */

#ifndef MEMSESS_STATE_H
#define MEMSESS_STATE_H

#include "memsess_common.h"

#define MEMSESS_STATE_MAGIC "memsess-state 1"

/* The file's text: the magic line, then one line per pool (pools whose
 * name or servers hold a tab or a line end are left out). */
char *memsess_state_format(apr_pool_t *p, const memsess_placed_t *placed,
                           int n);
/* Pushes every pool that reads back onto out (memsess_placed_t; its
 * servers not yet parsed) and counts the lines that do not in *bad (a
 * name twice counts, and the second is left out).  Returns NULL, or why
 * the text is no state file at all. */
const char *memsess_state_parse(apr_pool_t *p, const char *text,
                                apr_size_t len, apr_array_header_t *out,
                                int *bad);

#endif /* MEMSESS_STATE_H */
