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

/* Requests in flight: which of them read the lists before a flip.
 *
 * A request reads its list once, as it begins, and writes its session with
 * that list as it ends.  A sync that publishes a server (or a new
 * placement) must know when every request that may hold the previous list
 * has ended: only then is every write of the old list where it can be
 * brought over.  As RCU waits out a grace period: every Apache worker
 * (scoreboard child x thread) has an entry holding the flip epoch its
 * request began in (0: no request); a flip, once published, moves the
 * epoch on, and the requests that began before it are those whose entry
 * holds an older one.
 *
 * Ordering (every access sequentially consistent): a request stores its
 * entry, then reads the table; the sync publishes, then moves the epoch,
 * then looks at the entries.  If the look missed an entry, that store came
 * after the look, so the request's read came after the publication: it has
 * the new list.  A request's entry also holds a tag of its own, so that a
 * request ending late on another thread (the event MPM's write completion)
 * never clears the entry of the next one.  An entry whose process died
 * (a crash) is not waited for.
 *
 * The segment outlives gracefuls (a child of the old generation uses the
 * same entries); it works on any memory block (unit-tested).
 *
 *   +--------------------------------------------+
 *   | magic, version, nworkers, epoch, tags      |
 *   +--------------------------------------------+
 *   | entry[0]: value (epoch << 24 | tag), pid,  |
 *   |   the session id its Cookie names          |
 *   | ...  nworkers entries                      |
 *   +--------------------------------------------+
 *
 * Writers: each request its own entry (a worker runs one request at a
 * time); the sync, the epoch.  Readers: the sync. */

#include <string.h>

#include "memsess_flight.h"

#define FLIGHT_MAGIC   (0x4d534647u)   /* "MSFG" */
#define FLIGHT_VERSION (3u)   /* 2: the ring of recent sessions; 3: each
                               * entry's session */
#define TAG_BITS       (24)
#define TAG_MASK       ((APR_UINT64_C(1) << TAG_BITS) - 1)

typedef struct {
    apr_uint64_t value;   /* epoch << TAG_BITS | tag; 0: none */
    apr_uint32_t pid;
    apr_uint32_t len;     /* of id; 0: none (yet) */
    char         id[MEMSESS_SESSION_ID_MAX];   /* the session its Cookie
                                                * names */
} entry_t;

/* A session a request used, as it ended. */
typedef struct {
    apr_uint64_t stamp;    /* apr_time_t; 0 while written */
    apr_uint32_t len;
    char         id[MEMSESS_SESSION_ID_MAX];
} recent_t;

struct memsess_flight_t {
    apr_uint32_t magic;
    apr_uint32_t version;
    apr_uint32_t nworkers;
    apr_uint32_t tags;      /* the last tag given */
    apr_uint64_t epoch;     /* starts at 1 */
    apr_uint64_t size;
    apr_uint64_t noted;     /* sessions noted so far (the ring's next) */
};

#define HEAD_SIZE APR_ALIGN_DEFAULT(sizeof(memsess_flight_t))

static entry_t *entries(const memsess_flight_t *f)
{
    return (entry_t *)((char *)f + HEAD_SIZE);
}

static recent_t *ring(const memsess_flight_t *f)
{
    return (recent_t *)((char *)f + HEAD_SIZE
                        + APR_ALIGN_DEFAULT((apr_size_t)f->nworkers
                                            * sizeof(entry_t)));
}

apr_size_t memsess_flight_size(int nworkers)
{
    return HEAD_SIZE + APR_ALIGN_DEFAULT((apr_size_t)(nworkers > 0
                                                      ? nworkers : 0)
                                         * sizeof(entry_t))
           + MEMSESS_RECENT_MAX * sizeof(recent_t);
}

memsess_flight_t *memsess_flight_init(void *base, apr_size_t size,
                                      int nworkers)
{
    memsess_flight_t *f = base;

    if (!base || nworkers <= 0 || size < memsess_flight_size(nworkers)) {
        return NULL;
    }
    memset(base, 0, memsess_flight_size(nworkers));
    f->magic = FLIGHT_MAGIC;
    f->version = FLIGHT_VERSION;
    f->nworkers = (apr_uint32_t)nworkers;
    f->epoch = 1;
    f->size = memsess_flight_size(nworkers);
    return f;
}

memsess_flight_t *memsess_flight_attach(void *base, apr_size_t size)
{
    memsess_flight_t *f = base;

    if (!base || size < HEAD_SIZE || f->magic != FLIGHT_MAGIC
        || f->version != FLIGHT_VERSION || f->size > size
        || memsess_flight_size((int)f->nworkers) != f->size) {
        return NULL;
    }
    return f;
}

int memsess_flight_nworkers(const memsess_flight_t *f)
{
    return f ? (int)f->nworkers : 0;
}

apr_uint64_t memsess_flight_enter(memsess_flight_t *f, int i,
                                  apr_uint32_t pid)
{
    entry_t *e;
    apr_uint64_t tag, value;

    if (!f || i < 0 || i >= (int)f->nworkers) {
        return 0;
    }
    e = &entries(f)[i];
    do {
        tag = __atomic_add_fetch(&f->tags, 1, __ATOMIC_RELAXED) & TAG_MASK;
    } while (!tag);
    __atomic_store_n(&e->pid, pid, __ATOMIC_SEQ_CST);
    __atomic_store_n(&e->len, 0, __ATOMIC_SEQ_CST);   /* (not the last's) */
    value = __atomic_load_n(&f->epoch, __ATOMIC_SEQ_CST) << TAG_BITS | tag;
    __atomic_store_n(&e->value, value, __ATOMIC_SEQ_CST);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);   /* before the table's read */
    return value;
}

void memsess_flight_session(memsess_flight_t *f, int i, apr_uint64_t value,
                            const char *id, apr_size_t len)
{
    entry_t *e;

    if (!f || !value || i < 0 || i >= (int)f->nworkers || !len
        || len > MEMSESS_SESSION_ID_MAX) {
        return;
    }
    e = &entries(f)[i];
    if (__atomic_load_n(&e->value, __ATOMIC_SEQ_CST) != value) {
        return;   /* not ours any more */
    }
    __atomic_store_n(&e->len, 0, __ATOMIC_SEQ_CST);
    memcpy(e->id, id, len);
    __atomic_store_n(&e->len, (apr_uint32_t)len, __ATOMIC_SEQ_CST);
}

int memsess_flight_inflight(const memsess_flight_t *f, apr_uint64_t epoch,
                            void (*each)(void *baton, const char *id,
                                         apr_size_t len, int worker,
                                         apr_uint64_t value),
                            void *baton)
{
    int i, n = 0;

    for (i = 0; f && i < (int)f->nworkers; i++) {
        const entry_t *e = &entries(f)[i];
        char id[MEMSESS_SESSION_ID_MAX];
        apr_uint64_t value = __atomic_load_n(&e->value, __ATOMIC_SEQ_CST);
        apr_uint32_t len;

        if (!value || value >> TAG_BITS >= epoch
            || !(len = __atomic_load_n(&e->len, __ATOMIC_SEQ_CST))
            || len > MEMSESS_SESSION_ID_MAX) {
            continue;
        }
        memcpy(id, e->id, len);
        /* the same request, its id whole: else it ended meanwhile */
        if (__atomic_load_n(&e->value, __ATOMIC_SEQ_CST) != value
            || __atomic_load_n(&e->len, __ATOMIC_SEQ_CST) != len) {
            continue;
        }
        each(baton, id, len, i, value);
        n++;
    }
    return n;
}

int memsess_flight_still(const memsess_flight_t *f, int i, apr_uint64_t value)
{
    return f && i >= 0 && i < (int)f->nworkers && value
           && __atomic_load_n(&entries(f)[i].value, __ATOMIC_SEQ_CST) == value;
}

void memsess_flight_leave(memsess_flight_t *f, int i, apr_uint64_t value)
{
    apr_uint64_t expected = value;

    if (!f || !value || i < 0 || i >= (int)f->nworkers) {
        return;
    }
    /* only our own: the worker may have begun its next request */
    __atomic_compare_exchange_n(&entries(f)[i].value, &expected, 0, 0,
                                __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

apr_uint64_t memsess_flight_flip(memsess_flight_t *f)
{
    if (!f) {
        return 0;
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST);   /* after the publication */
    return __atomic_add_fetch(&f->epoch, 1, __ATOMIC_SEQ_CST);
}

int memsess_flight_before(const memsess_flight_t *f, apr_uint64_t epoch,
                          int (*alive)(apr_uint32_t pid))
{
    int i, n = 0;

    if (!f) {
        return 0;
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    for (i = 0; i < (int)f->nworkers; i++) {
        const entry_t *e = &entries(f)[i];
        apr_uint64_t value = __atomic_load_n(&e->value, __ATOMIC_SEQ_CST);
        apr_uint64_t began = value >> TAG_BITS;

        if (value && began < epoch
            && (!alive || alive(__atomic_load_n(&e->pid, __ATOMIC_SEQ_CST)))) {
            n++;
        }
    }
    return n;
}

void memsess_flight_note(memsess_flight_t *f, const char *id, apr_size_t len)
{
    recent_t *r;
    apr_uint64_t k;

    if (!f || !len || len > MEMSESS_SESSION_ID_MAX) {
        return;
    }
    k = __atomic_fetch_add(&f->noted, 1, __ATOMIC_RELAXED);
    r = &ring(f)[k % MEMSESS_RECENT_MAX];
    __atomic_store_n(&r->stamp, 0, __ATOMIC_SEQ_CST);
    memcpy(r->id, id, len);
    r->len = (apr_uint32_t)len;
    __atomic_store_n(&r->stamp, (apr_uint64_t)apr_time_now(),
                     __ATOMIC_SEQ_CST);
}

int memsess_flight_recent(const memsess_flight_t *f, apr_time_t since,
                          void (*each)(void *baton, const char *id,
                                       apr_size_t len),
                          void *baton)
{
    int k, n = 0;

    for (k = 0; f && k < MEMSESS_RECENT_MAX; k++) {
        const recent_t *r = &ring(f)[k];
        char id[MEMSESS_SESSION_ID_MAX];
        apr_uint64_t stamp = __atomic_load_n(&r->stamp, __ATOMIC_SEQ_CST);
        apr_uint32_t len = r->len;

        if (!stamp || (apr_time_t)stamp < since || !len
            || len > MEMSESS_SESSION_ID_MAX) {
            continue;
        }
        memcpy(id, r->id, len);
        /* a writer that came meanwhile: its entry is newer, seen as such */
        if (__atomic_load_n(&r->stamp, __ATOMIC_SEQ_CST) != stamp) {
            continue;
        }
        each(baton, id, len);
        n++;
    }
    return n;
}
