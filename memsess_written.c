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

/* What a sync wrote, per key and target: linear probing over a power of
 * two entries, doubled when 3/4 full; a deletion shifts the entries after
 * it back (no tombstones), so a lookup stops at the first free entry.
 * APR only. */

#include <stdlib.h>
#include <string.h>

#include "memsess_written.h"

#define FIRST_CAP (4096)

struct memsess_written_set {
    memsess_written_t *e;
    apr_size_t         cap, n;
    apr_uint64_t       seed;
};

memsess_written_set_t *memsess_written_create(apr_uint64_t seed)
{
    memsess_written_set_t *w = calloc(1, sizeof(*w));

    if (w) {
        w->seed = seed;
    }
    return w;
}

void memsess_written_destroy(memsess_written_set_t *w)
{
    if (w) {
        free(w->e);
        free(w);
    }
}

/* FNV-1a from the seed, then the target, then a finalizer that spreads
 * every bit of it into the low ones (which pick the entry). */
apr_uint64_t memsess_written_digest(const memsess_written_set_t *w,
                                    const char *key, apr_size_t len, int t)
{
    apr_uint64_t h = w->seed ^ APR_UINT64_C(0xcbf29ce484222325);
    apr_size_t i;

    for (i = 0; i < len; i++) {
        h = (h ^ (unsigned char)key[i]) * APR_UINT64_C(0x100000001b3);
    }
    h ^= (apr_uint64_t)(unsigned)t * APR_UINT64_C(0x9e3779b97f4a7c15);
    h ^= h >> 33;
    h *= APR_UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h *= APR_UINT64_C(0xc4ceb9fe1a85ec53);
    h ^= h >> 33;
    return h ? h : 1;
}

static apr_size_t home(const memsess_written_set_t *w, apr_uint64_t digest)
{
    return (apr_size_t)digest & (w->cap - 1);
}

/* The entry of digest, or the free one it would take. */
static memsess_written_t *slot(const memsess_written_set_t *w,
                               apr_uint64_t digest)
{
    apr_size_t i = home(w, digest);

    while (w->e[i].digest && w->e[i].digest != digest) {
        i = (i + 1) & (w->cap - 1);
    }
    return &w->e[i];
}

memsess_written_t *memsess_written_get(const memsess_written_set_t *w,
                                       apr_uint64_t digest)
{
    memsess_written_t *e;

    if (!w->cap) {
        return NULL;
    }
    e = slot(w, digest);
    return e->digest ? e : NULL;
}

static int grow(memsess_written_set_t *w)
{
    memsess_written_set_t bigger = *w;
    apr_size_t i;

    bigger.cap = w->cap ? 2 * w->cap : FIRST_CAP;
    bigger.e = calloc(bigger.cap, sizeof(*bigger.e));
    if (!bigger.e) {
        return -1;
    }
    for (i = 0; i < w->cap; i++) {
        if (w->e[i].digest) {
            *slot(&bigger, w->e[i].digest) = w->e[i];
        }
    }
    free(w->e);
    w->e = bigger.e;
    w->cap = bigger.cap;
    return 0;
}

memsess_written_t *memsess_written_put(memsess_written_set_t *w,
                                       apr_uint64_t digest)
{
    memsess_written_t *e;

    if (4 * (w->n + 1) > 3 * w->cap && grow(w) < 0) {
        return NULL;
    }
    e = slot(w, digest);
    if (!e->digest) {
        e->digest = digest;
        e->s = e->authority = 0;
        w->n++;
    }
    return e;
}

void memsess_written_del(memsess_written_set_t *w, apr_uint64_t digest)
{
    memsess_written_t *e = w->cap ? slot(w, digest) : NULL;
    apr_size_t i, j, mask = w->cap - 1;

    if (!e || !e->digest) {
        return;
    }
    i = (apr_size_t)(e - w->e);
    w->n--;
    /* the entries after it that probed past it move back into the hole */
    for (j = (i + 1) & mask; w->e[j].digest; j = (j + 1) & mask) {
        apr_size_t k = home(w, w->e[j].digest);

        if (((j - k) & mask) >= ((j - i) & mask)) {
            w->e[i] = w->e[j];
            i = j;
        }
    }
    memset(&w->e[i], 0, sizeof(w->e[i]));
}

apr_size_t memsess_written_count(const memsess_written_set_t *w)
{
    return w->n;
}

apr_size_t memsess_written_bytes(const memsess_written_set_t *w)
{
    return w->cap * sizeof(*w->e);
}
