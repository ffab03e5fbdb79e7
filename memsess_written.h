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

/* memsess_written.h: what a sync wrote or checked, per key and target, in
 * bounded memory (memsess_written.c, pure): an open-addressing table of
 * seeded 64-bit digests of (key, target), each with two cas.  24 bytes an
 * entry, at most 3/4 full: 32 to 64 bytes a key copied, where a hash of
 * the key's text took about 120.  Two keys of one digest count as one:
 * with the seed drawn at random, for 667,000 keys (a rejoin's share of a
 * million sessions with a replica each) about one sync in 80 million. */

#ifndef MEMSESS_WRITTEN_H
#define MEMSESS_WRITTEN_H

#include "memsess_common.h"

/* One key at one target: what the sync left there. */
typedef struct {
    apr_uint64_t digest;      /* 0: a free entry */
    apr_uint64_t s;           /* the target's cas after the sync wrote or
                               * compared it */
    apr_uint64_t authority;   /* the authority's cas it copied from */
} memsess_written_t;

typedef struct memsess_written_set memsess_written_set_t;

/* An empty set (malloc'd; NULL when out of memory). */
memsess_written_set_t *memsess_written_create(apr_uint64_t seed);
void memsess_written_destroy(memsess_written_set_t *w);

/* The digest of key at target t (never 0). */
apr_uint64_t memsess_written_digest(const memsess_written_set_t *w,
                                    const char *key, apr_size_t len, int t);

/* Its entry, or NULL. */
memsess_written_t *memsess_written_get(const memsess_written_set_t *w,
                                       apr_uint64_t digest);

/* Its entry, made (s and authority 0) when there was none; NULL when out
 * of memory. */
memsess_written_t *memsess_written_put(memsess_written_set_t *w,
                                       apr_uint64_t digest);

/* Forgets it (no entry is left behind: the table does not fill with
 * what was deleted). */
void memsess_written_del(memsess_written_set_t *w, apr_uint64_t digest);

apr_size_t memsess_written_count(const memsess_written_set_t *w);
apr_size_t memsess_written_bytes(const memsess_written_set_t *w);

#endif /* MEMSESS_WRITTEN_H */
