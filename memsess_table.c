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

/* The shared health table.  It knows nothing of httpd or of shared memory:
 * it lays itself out over any block of memory, which mod_memsess.c takes
 * from apr_shm and the unit tests from malloc.
 *
 *   +------------------------------------------+ 0
 *   | header: magic, version, size, nslots,    |
 *   |   nviews, seq, generation, state_changes,|
 *   |   owner, heartbeat (the checker's lease),|
 *   |   twin, peers[32] (the group's others    |
 *   |   and their clocks)                      |
 *   +------------------------------------------+ ALIGN(sizeof header)
 *   | memsess_slot_t        slot[nslots]       |  one per distinct server
 *   +------------------------------------------+
 *   | memsess_view_slot_t   view[nviews]       |  one per vhost with a pool
 *   +------------------------------------------+
 *   | text of view 0 (capacity 0 bytes)        |  the live save_path,
 *   |   its last served_capacity bytes: the    |  then the list in force
 *   |   list in force                          |
 *   | text of view 1 ...                       |
 *   +------------------------------------------+ size
 *
 * Who writes what: the parent fills a new table in post_config before any
 * child exists; after that only the checker writes (slots, views, counters),
 * its threads serialised by a mutex of its own.  The lease (owner,
 * heartbeat) is the exception: any child may claim it, by compare-and-swap.
 * Every write happens between memsess_table_write_begin() and _end(), which
 * make seq odd, then even again.  Readers (every request, the status page)
 * take no lock: they copy what they need and retry when seq was odd or
 * moved meanwhile.
 */

#include <string.h>
#include <sched.h>
#include <unistd.h>

#include "apr_strings.h"
#include "apr_thread_mutex.h"

#include "memsess_table.h"
#include "memsess_clocks.h"
#include "memsess_pool.h"

#define MEMSESS_TABLE_MAGIC   (0x4d534553u)   /* "MSES" */
#define MEMSESS_TABLE_VERSION (19u)  /* 2: the sync's fields in a slot;
                                      * 3, 4: peer_down, reported_by;
                                      * 5: a view's list in force;
                                      * 6: sync_by; 7: proc_*, down_*;
                                      * 8: sync_mode; 9: a view's gate;
                                      * 10: served_ketama;
                                      * 11: follow_gate, peers;
                                      * 12: a view's persistence;
                                      * 13: sync_memory;
                                      * 14: the checker process,
                                      * sync_listed, sync_expected;
                                      * 15: served_prefix;
                                      * 16: out_since;
                                      * 17: resume_*;
                                      * 18: a peer's offset_ms;
                                      * 19: a peer's at_ms,
                                      * peer_offset_ms; down_off_ms,
                                      * out_off_ms; a view's next_* */

/* A reader gives up after this many tries (a writer died mid-write). */
#define READ_TRIES   (20000)
#define SPIN_TRIES   (64)

struct memsess_table {
    apr_uint32_t magic;
    apr_uint32_t version;
    apr_uint64_t size;
    apr_uint32_t nslots;
    apr_uint32_t nviews;
    apr_uint64_t seq;            /* odd while the writer is inside */
    apr_uint64_t generation;     /* bumped on every state change */
    apr_uint64_t state_changes;  /* total, kept across restarts */
    apr_uint32_t owner;          /* pid of the checker, 0 = none */
    apr_uint32_t twin;           /* another instance has our name */
    apr_int64_t  heartbeat;      /* apr_time_t of its last round */
    apr_uint32_t process;        /* pid of the checker process, 0 = none */
    apr_int64_t  process_forked; /* when the parent forked it */
    apr_int64_t  process_beat;   /* its last tick, 0 = none yet */
    apr_uint32_t npeers;
    memsess_peer_clock_t peers[MEMSESS_PEERS_SHOWN];
};

#define HEADER_SIZE  APR_ALIGN_DEFAULT(sizeof(struct memsess_table))
#define SLOTS_SIZE(n) \
    APR_ALIGN_DEFAULT((apr_size_t)(n) * sizeof(memsess_slot_t))
#define VIEWS_SIZE(n) \
    APR_ALIGN_DEFAULT((apr_size_t)(n) * sizeof(memsess_view_slot_t))

static memsess_slot_t *slots(const memsess_table_t *t)
{
    return (memsess_slot_t *)((char *)t + HEADER_SIZE);
}

static memsess_view_slot_t *views(const memsess_table_t *t)
{
    return (memsess_view_slot_t *)((char *)t + HEADER_SIZE
                                   + SLOTS_SIZE(t->nslots));
}

const char *memsess_rebalance_name(apr_uint32_t state)
{
    switch (state) {
    case MEMSESS_REBALANCE_WAITING: return "waiting";
    case MEMSESS_REBALANCE_RUNNING: return "rebalancing";
    default:                        return "none";
    }
}

const char *memsess_state_name(apr_uint32_t state)
{
    switch (state) {
    case MEMSESS_UP:   return "up";
    case MEMSESS_DOWN: return "down";
    case MEMSESS_SYNCING: return "syncing";
    default:           return "unknown";
    }
}

void memsess_text_one_line(char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (c < 0x20 || c == 0x7f) {
            *s = ' ';
        }
        else if (c >= 0x80) {
            *s = '?';   /* from the wire: not even valid UTF-8, maybe */
        }
    }
}

apr_size_t memsess_table_size(int nslots, int nviews,
                              const apr_uint32_t *capacities)
{
    apr_size_t size = HEADER_SIZE + SLOTS_SIZE(nslots) + VIEWS_SIZE(nviews);
    int v;

    for (v = 0; v < nviews; v++) {
        size += 2 * (apr_size_t)capacities[v];   /* in force, and next */
    }
    return APR_ALIGN_DEFAULT(size);
}

memsess_table_t *memsess_table_init(void *base, apr_size_t size, int nslots,
                                    int nviews,
                                    const apr_uint32_t *capacities)
{
    memsess_table_t *t = base;
    memsess_view_slot_t *vs;
    apr_size_t offset;
    int v;

    if (nslots < 0 || nviews < 0
        || size < memsess_table_size(nslots, nviews, capacities)) {
        return NULL;
    }
    memset(base, 0, size);
    t->magic = MEMSESS_TABLE_MAGIC;
    t->version = MEMSESS_TABLE_VERSION;
    t->size = size;
    t->nslots = (apr_uint32_t)nslots;
    t->nviews = (apr_uint32_t)nviews;

    vs = views(t);
    offset = HEADER_SIZE + SLOTS_SIZE(nslots) + VIEWS_SIZE(nviews);
    for (v = 0; v < nviews; v++) {
        vs[v].offset = (apr_uint32_t)offset;
        vs[v].capacity = capacities[v];
        vs[v].next_offset = (apr_uint32_t)(offset + capacities[v]);
        offset += 2 * (apr_size_t)capacities[v];
    }
    return t;
}

memsess_table_t *memsess_table_attach(void *base, apr_size_t size)
{
    memsess_table_t *t = base;

    if (!base || size < HEADER_SIZE || t->magic != MEMSESS_TABLE_MAGIC
        || t->version != MEMSESS_TABLE_VERSION || t->size > size) {
        return NULL;
    }
    return t;
}

int memsess_table_nslots(const memsess_table_t *t)
{
    return (int)t->nslots;
}

int memsess_table_nviews(const memsess_table_t *t)
{
    return (int)t->nviews;
}

apr_uint64_t memsess_table_generation(const memsess_table_t *t)
{
    return __atomic_load_n(&t->generation, __ATOMIC_RELAXED);
}

apr_uint64_t memsess_table_state_changes(const memsess_table_t *t)
{
    return __atomic_load_n(&t->state_changes, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------ */
/* Readers                                                            */

/* Waits for an even seq; returns it, or 1 (odd) after too many tries. */
static apr_uint64_t read_begin(const memsess_table_t *t, int *tries)
{
    apr_uint64_t s;

    while (*tries < READ_TRIES) {
        s = __atomic_load_n(&t->seq, __ATOMIC_ACQUIRE);
        if (!(s & 1)) {
            return s;
        }
        if (++*tries > SPIN_TRIES) {
            sched_yield();
        }
    }
    return 1;
}

static int read_retry(const memsess_table_t *t, apr_uint64_t s, int *tries)
{
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&t->seq, __ATOMIC_RELAXED) == s) {
        return 0;
    }
    ++*tries;
    return 1;
}

apr_status_t memsess_table_read_slot(const memsess_table_t *t, int i,
                                     memsess_slot_t *copy)
{
    const memsess_slot_t *slot = &slots(t)[i];
    apr_uint64_t s;
    int tries = 0;

    do {
        s = read_begin(t, &tries);
        if (s & 1) {
            memcpy(copy, slot, sizeof(*copy));
            copy->addr[MEMSESS_ADDR_MAX - 1] = '\0';
            copy->last_error[MEMSESS_ERROR_MAX - 1] = '\0';
            copy->reported_by[MEMSESS_REPORTERS_MAX - 1] = '\0';
            copy->sync_by[MEMSESS_INSTANCE_MAX - 1] = '\0';
            return APR_EBUSY;
        }
        memcpy(copy, slot, sizeof(*copy));
    } while (read_retry(t, s, &tries));
    copy->addr[MEMSESS_ADDR_MAX - 1] = '\0';
    copy->last_error[MEMSESS_ERROR_MAX - 1] = '\0';
    copy->reported_by[MEMSESS_REPORTERS_MAX - 1] = '\0';
    copy->sync_by[MEMSESS_INSTANCE_MAX - 1] = '\0';
    return APR_SUCCESS;
}

apr_status_t memsess_table_read_view(const memsess_table_t *t, int v,
                                     char *buf, apr_size_t size,
                                     apr_uint32_t *len, apr_uint32_t *nlive,
                                     apr_uint32_t *rebalance,
                                     apr_time_t *gate)
{
    const memsess_view_slot_t *vs = &views(t)[v];
    apr_uint64_t s;
    apr_uint32_t n, want;
    int tries = 0, next;

    if (!size) {
        return APR_EINVAL;
    }
    do {
        s = read_begin(t, &tries);
        if (s & 1) {
            return APR_EBUSY;
        }
        /* (the clock read only while a flip is prepared) */
        next = vs->next_at && memsess_mono_now() >= vs->next_at;
        want = n = next ? vs->next_len : vs->len;
        if (n >= size || n >= vs->capacity) {
            n = 0;   /* torn read (the retry repeats it), or buf too small */
        }
        memcpy(buf, (const char *)t + (next ? vs->next_offset : vs->offset),
               n);
        *nlive = next ? vs->next_nlive : vs->nlive;
        if (rebalance) {
            *rebalance = next ? vs->next_rebalance : vs->rebalance;
        }
        if (gate) {
            *gate = (apr_time_t)vs->gate;
        }
    } while (read_retry(t, s, &tries));
    buf[n] = '\0';
    *len = n;
    /* a consistent text that does not fit buf: never pass it off as "" */
    return n == want ? APR_SUCCESS : APR_ENOSPC;
}

apr_status_t memsess_table_read_view_slot(const memsess_table_t *t, int v,
                                          memsess_view_slot_t *copy)
{
    const memsess_view_slot_t *vs = &views(t)[v];
    apr_uint64_t s;
    int tries = 0;

    do {
        s = read_begin(t, &tries);
        memcpy(copy, vs, sizeof(*copy));
        if (s & 1) {
            break;
        }
    } while (read_retry(t, s, &tries));
    copy->name[MEMSESS_VIEW_NAME_MAX - 1] = '\0';
    copy->rebalance_error[MEMSESS_ERROR_MAX - 1] = '\0';
    return s & 1 ? APR_EBUSY : APR_SUCCESS;
}

apr_status_t memsess_table_read_served(const memsess_table_t *t, int v,
                                       char *buf, apr_size_t size)
{
    const memsess_view_slot_t *vs = &views(t)[v];
    apr_uint64_t s;
    apr_uint32_t n;
    int tries = 0;

    if (!size) {
        return APR_EINVAL;
    }
    do {
        s = read_begin(t, &tries);
        if (s & 1) {
            buf[0] = '\0';
            return APR_EBUSY;
        }
        n = vs->served_len;
        if (n >= size || n >= vs->served_capacity
            || (apr_uint64_t)vs->served_offset + vs->served_capacity
               > t->size) {
            n = 0;
        }
        memcpy(buf, (const char *)t + vs->served_offset, n);
    } while (read_retry(t, s, &tries));
    buf[n] = '\0';
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* The writer                                                         */

void memsess_table_write_begin(memsess_table_t *t)
{
    apr_uint64_t s = __atomic_load_n(&t->seq, __ATOMIC_RELAXED);

    __atomic_store_n(&t->seq, s + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

void memsess_table_write_end(memsess_table_t *t)
{
    apr_uint64_t s = __atomic_load_n(&t->seq, __ATOMIC_RELAXED);

    __atomic_store_n(&t->seq, s + 1, __ATOMIC_RELEASE);
}

void memsess_table_recover(memsess_table_t *t)
{
    apr_uint64_t s = __atomic_load_n(&t->seq, __ATOMIC_RELAXED);

    if (s & 1) {
        __atomic_store_n(&t->seq, s + 1, __ATOMIC_RELEASE);
    }
}

memsess_slot_t *memsess_table_slot(memsess_table_t *t, int i)
{
    return &slots(t)[i];
}

memsess_view_slot_t *memsess_table_view_slot(memsess_table_t *t, int v)
{
    return &views(t)[v];
}

apr_status_t memsess_table_set_served(memsess_table_t *t, int v,
                                      const char *name,
                                      apr_uint32_t served_capacity,
                                      const char *served, int replicas,
                                      int failover, int ketama, int format,
                                      const char *prefix)
{
    memsess_view_slot_t *vs = &views(t)[v];
    apr_size_t len = strlen(served);

    if (!vs->served_capacity) {   /* first time: split the view's bytes */
        if (served_capacity >= vs->capacity || len >= served_capacity) {
            return APR_ENOSPC;
        }
        vs->capacity -= served_capacity;
        vs->served_offset = vs->offset + vs->capacity;
        vs->served_capacity = served_capacity;
    }
    else if (len >= vs->served_capacity) {
        return APR_ENOSPC;
    }
    memcpy((char *)t + vs->served_offset, served, len + 1);
    vs->served_len = (apr_uint32_t)len;
    vs->served_replicas = (apr_uint32_t)replicas;
    vs->served_failover = (apr_uint32_t)failover;
    vs->served_ketama = (apr_uint32_t)ketama;
    vs->served_format = (apr_uint32_t)format;
    apr_cpystrn(vs->served_prefix, prefix ? prefix : "",
                sizeof(vs->served_prefix));
    if (name) {
        apr_cpystrn(vs->name, name, sizeof(vs->name));
    }
    return APR_SUCCESS;
}

void memsess_table_bump_generation(memsess_table_t *t, apr_uint64_t changes)
{
    __atomic_store_n(&t->generation, t->generation + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&t->state_changes, t->state_changes + changes,
                     __ATOMIC_RELAXED);
}

void memsess_table_set_generation(memsess_table_t *t, apr_uint64_t gen,
                                  apr_uint64_t changes)
{
    __atomic_store_n(&t->generation, gen, __ATOMIC_RELAXED);
    __atomic_store_n(&t->state_changes, changes, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------ */
/* The checker's lease                                                */

void memsess_table_owner(const memsess_table_t *t, apr_uint32_t *pid,
                         apr_time_t *heartbeat)
{
    *pid = __atomic_load_n(&t->owner, __ATOMIC_ACQUIRE);
    *heartbeat = __atomic_load_n(&t->heartbeat, __ATOMIC_ACQUIRE);
}

int memsess_table_leased(const memsess_table_t *t)
{
    apr_uint32_t owner;
    apr_time_t heartbeat;

    memsess_table_owner(t, &owner, &heartbeat);
    return owner == (apr_uint32_t)getpid();
}

int memsess_table_lease_lock(memsess_table_t *t, apr_thread_mutex_t *mutex)
{
    apr_thread_mutex_lock(mutex);
    return memsess_table_leased(t);
}

int memsess_table_claim(memsess_table_t *t, apr_uint32_t seen,
                        apr_uint32_t pid, apr_time_t now)
{
    if (!__atomic_compare_exchange_n(&t->owner, &seen, pid, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        return 0;
    }
    __atomic_store_n(&t->heartbeat, now, __ATOMIC_RELEASE);
    return 1;
}

void memsess_table_heartbeat(memsess_table_t *t, apr_time_t now)
{
    __atomic_store_n(&t->heartbeat, now, __ATOMIC_RELEASE);
}

void memsess_table_set_process(memsess_table_t *t, apr_uint32_t pid,
                               apr_time_t forked)
{
    __atomic_store_n(&t->process_beat, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&t->process_forked, forked, __ATOMIC_RELEASE);
    __atomic_store_n(&t->process, pid, __ATOMIC_RELEASE);
}

void memsess_table_process_beat(memsess_table_t *t, apr_time_t now)
{
    __atomic_store_n(&t->process_beat, now, __ATOMIC_RELEASE);
}

void memsess_table_process(const memsess_table_t *t, apr_uint32_t *pid,
                           apr_time_t *forked, apr_time_t *beat)
{
    *pid = __atomic_load_n(&t->process, __ATOMIC_ACQUIRE);
    *forked = __atomic_load_n(&t->process_forked, __ATOMIC_ACQUIRE);
    *beat = __atomic_load_n(&t->process_beat, __ATOMIC_ACQUIRE);
}

/* ------------------------------------------------------------------ */
/* The state machine                                                  */

int memsess_slot_record(memsess_slot_t *slot, int ok, const char *error,
                        apr_uint64_t latency_us, apr_int64_t now,
                        int fail_threshold, int pass_threshold)
{
    apr_uint32_t before = slot->state;

    slot->checks++;
    slot->latency_us = latency_us;
    slot->duration_us_sum += latency_us;
    if (ok) {
        slot->consecutive_passes++;
        slot->consecutive_fails = 0;
        /* unknown already counts as live: one good probe confirms it */
        if (slot->state == MEMSESS_UNKNOWN
            || (slot->state == MEMSESS_DOWN
                && slot->consecutive_passes >= (apr_uint32_t)pass_threshold)) {
            slot->state = MEMSESS_UP;
        }
    }
    else {
        slot->failures++;
        slot->consecutive_fails++;
        slot->consecutive_passes = 0;
        apr_cpystrn(slot->last_error, error ? error : "probe failed",
                    sizeof(slot->last_error));
        /* a syncing server takes no traffic: one failure stops its sync */
        if (slot->state == MEMSESS_SYNCING
            || (slot->state != MEMSESS_DOWN
                && slot->consecutive_fails >= (apr_uint32_t)fail_threshold)) {
            slot->state = MEMSESS_DOWN;
        }
    }
    if (slot->state == before) {
        return 0;
    }
    slot->state_changes++;
    slot->last_change = now;
    return 1;
}

void memsess_slot_sync_begin(memsess_slot_t *slot, apr_int64_t now)
{
    slot->state = MEMSESS_SYNCING;
    slot->sync_started = now;
    slot->sync_examined = slot->sync_copied = slot->sync_deleted = 0;
    slot->sync_memory = slot->sync_listed = slot->sync_expected = 0;
    slot->sync_by[0] = '\0';
    slot->sync_waits = 0;
}

int memsess_slot_sync_end(memsess_slot_t *slot, int ok, const char *error,
                          apr_int64_t now)
{
    if (slot->state != MEMSESS_SYNCING) {
        return 0;   /* a failed probe ended it first */
    }
    if (ok) {
        slot->state = MEMSESS_UP;
        slot->syncs++;
    }
    else {
        slot->state = MEMSESS_DOWN;
        slot->consecutive_passes = 0;   /* retried after its next passes */
        apr_cpystrn(slot->last_error, error ? error : "sync failed",
                    sizeof(slot->last_error));
    }
    slot->state_changes++;
    slot->last_change = now;
    return 1;
}

int memsess_table_reset_syncing(memsess_table_t *t)
{
    int i, n = 0;

    for (i = 0; i < (int)t->nslots; i++) {
        memsess_slot_t *slot = &slots(t)[i];

        if (slot->state == MEMSESS_SYNCING) {
            n += memsess_slot_sync_end(slot, 0, "its sync was cut short "
                                       "(the checker stopped)",
                                       apr_time_sec(apr_time_now()));
        }
    }
    return n;
}

/* ------------------------------------------------------------------ */
/* Publishing                                                         */

/* View v's definition whose list is published: its previous one while a
 * pool change waits or runs, else the configured one. */
static const memsess_view_t *in_force(const memsess_view_slot_t *vs,
                                      const memsess_view_t *vdefs, int v)
{
    return vs[v].rebalance && vdefs[v].before ? vdefs[v].before : &vdefs[v];
}

/* Whether def's pool holds slot. */
static int pool_holds(const memsess_view_t *def, int slot)
{
    const apr_array_header_t *servers = def->pool->servers;
    int i;

    for (i = 0; i < servers->nelts; i++) {
        if (APR_ARRAY_IDX(servers, i, memsess_server_t).slot == slot) {
            return 1;
        }
    }
    return 0;
}

/* Gates a view until `until`; a later gate already there stands. */
static void raise_gate(memsess_view_slot_t *vs, apr_time_t until)
{
    if (vs->gate < (apr_int64_t)until) {
        vs->gate = (apr_int64_t)until;
    }
}

int memsess_table_gate_holders(memsess_table_t *t, const memsess_view_t *vdefs,
                               int nviews, int slot, apr_time_t until)
{
    memsess_view_slot_t *vs = views(t);
    int v, ngated = 0;

    for (v = 0; v < nviews && v < (int)t->nviews; v++) {
        const memsess_view_t *def = in_force(vs, vdefs, v);

        if (pool_holds(def, slot) && vs[v].capacity) {
            raise_gate(&vs[v], until);
            ngated++;
        }
    }
    return ngated;
}

void memsess_table_gate_view(memsess_table_t *t, int v, apr_time_t until)
{
    if (v >= 0 && v < (int)t->nviews) {
        raise_gate(&views(t)[v], until);
    }
}

void memsess_table_ungate(memsess_table_t *t, int nviews, apr_time_t until)
{
    memsess_view_slot_t *vs = views(t);
    int v;

    for (v = 0; v < nviews && v < (int)t->nviews; v++) {
        if (vs[v].gate == (apr_int64_t)until) {
            vs[v].gate = 0;   /* only the gate that one set */
        }
    }
}

/* Builds def's text (slot `up` taken for live, when >= 0) into the
 * capacity bytes at out; *len its length, *nlive its live servers. */
static void build_text(const memsess_table_t *t, const memsess_view_t *def,
                       int up, char *out, apr_uint32_t capacity,
                       apr_uint32_t *len, int *nlive)
{
    unsigned char live[MEMSESS_MAX_SERVERS];
    const memsess_slot_t *sl = slots(t);
    const apr_array_header_t *servers = def->pool->servers;
    apr_size_t n;
    int i;

    *nlive = 0;
    for (i = 0; i < servers->nelts && i < MEMSESS_MAX_SERVERS; i++) {
        int s = APR_ARRAY_IDX(servers, i, memsess_server_t).slot;

        live[i] = s >= 0 && s < (int)t->nslots
                  && (s == up || MEMSESS_SLOT_LIVE(&sl[s]));
        *nlive += live[i];
    }
    if (servers->nelts > MEMSESS_MAX_SERVERS) {
        *nlive = 0;   /* refused at startup; here: fail open, in bounds */
    }
    n = memsess_path_build(out, capacity, def->pool, *nlive ? live : NULL,
                           def->format, def->failover);
    *len = (apr_uint32_t)(n < capacity ? n : capacity - 1);
}

/* memsess_table_publish(); keep: a prepared flip stands. */
static int publish(memsess_table_t *t, const memsess_view_t *vdefs,
                   int nviews, int slot, int *flipped, int keep)
{
    memsess_view_slot_t *vs = views(t);
    int v, nflipped = 0;

    for (v = 0; v < nviews && v < (int)t->nviews; v++) {
        const memsess_view_t *def = in_force(vs, vdefs, v);
        int nlive;

        if ((slot >= 0 && !pool_holds(def, slot)) || !vs[v].capacity) {
            continue;
        }
        build_text(t, def, -1, (char *)t + vs[v].offset, vs[v].capacity,
                   &vs[v].len, &nlive);
        if (!keep) {
            vs[v].next_at = 0;   /* what is published now stands */
        }
        if (slot >= 0 && !vs[v].nlive != !nlive) {
            if (flipped) {
                flipped[nflipped] = v;
            }
            nflipped++;
        }
        vs[v].nlive = (apr_uint32_t)nlive;
    }
    return nflipped;
}

int memsess_table_prepare_flip(memsess_table_t *t, const memsess_view_t *vdefs,
                               int nviews, int slot, const int *moving,
                               apr_time_t at)
{
    memsess_view_slot_t *vs = views(t);
    int v, n = 0;

    for (v = 0; v < nviews && v < (int)t->nviews; v++) {
        const memsess_view_t *def = in_force(vs, vdefs, v);
        int nlive;

        if (!vs[v].capacity || !at
            || (slot >= 0 ? !pool_holds(def, slot) : !moving || !moving[v])) {
            continue;
        }
        if (slot < 0) {
            def = &vdefs[v];   /* the configured pool, in force then */
        }
        build_text(t, def, slot, (char *)t + vs[v].next_offset,
                   vs[v].capacity, &vs[v].next_len, &nlive);
        vs[v].next_nlive = (apr_uint32_t)nlive;
        vs[v].next_rebalance = slot >= 0 ? vs[v].rebalance
                                         : MEMSESS_REBALANCE_NONE;
        vs[v].next_at = (apr_int64_t)at;
        raise_gate(&vs[v], at);
        n++;
    }
    return n;
}

void memsess_table_cancel_flips(memsess_table_t *t, const memsess_view_t *vdefs,
                                int nviews, int slot, const int *moving)
{
    memsess_view_slot_t *vs = views(t);
    int v;

    for (v = 0; v < nviews && v < (int)t->nviews; v++) {
        const memsess_view_t *def = in_force(vs, vdefs, v);

        if (slot >= 0 ? pool_holds(def, slot) : moving && moving[v]) {
            if (vs[v].next_at && vs[v].gate == vs[v].next_at) {
                vs[v].gate = 0;   /* the flip's own, not a later one */
            }
            vs[v].next_at = 0;
        }
    }
}

int memsess_table_publish(memsess_table_t *t, const memsess_view_t *vdefs,
                          int nviews, int slot, int *flipped)
{
    return publish(t, vdefs, nviews, slot, flipped, 0);
}

void memsess_table_republish(memsess_table_t *t, const memsess_view_t *vdefs,
                             int nviews)
{
    publish(t, vdefs, nviews, -1, NULL, 1);
}

void memsess_table_set_twin(memsess_table_t *t, int twin)
{
    t->twin = (apr_uint32_t)twin;
}

int memsess_table_twin(const memsess_table_t *t)
{
    return ((const volatile struct memsess_table *)t)->twin != 0;
}

void memsess_table_set_peers(memsess_table_t *t,
                             const memsess_peer_clock_t *peers, int n)
{
    int i;

    n = n < 0 ? 0 : n > MEMSESS_PEERS_SHOWN ? MEMSESS_PEERS_SHOWN : n;
    for (i = 0; i < n; i++) {
        t->peers[i] = peers[i];
        t->peers[i].name[MEMSESS_INSTANCE_MAX - 1] = '\0';
    }
    t->npeers = (apr_uint32_t)n;
}

int memsess_table_peers(const memsess_table_t *t, memsess_peer_clock_t *out,
                        int max)
{
    apr_uint64_t s;
    int tries = 0, n;

    do {
        s = read_begin(t, &tries);
        if (s & 1) {
            return 0;
        }
        n = (int)t->npeers;
        n = n > max ? max : n > MEMSESS_PEERS_SHOWN ? MEMSESS_PEERS_SHOWN : n;
        if (n > 0) {
            memcpy(out, t->peers, (apr_size_t)n * sizeof(*out));
        }
    } while (read_retry(t, s, &tries));
    return n > 0 ? n : 0;
}

apr_int64_t memsess_table_peer_skew(const memsess_table_t *t,
                                    const char *name, apr_int64_t error_max,
                                    apr_int64_t offset_ms, apr_int64_t *error)
{
    memsess_peer_clock_t peers[MEMSESS_PEERS_SHOWN];
    int i, n = memsess_table_peers(t, peers, MEMSESS_PEERS_SHOWN);

    *error = -1;
    for (i = 0; i < n; i++) {
        if (!strcmp(peers[i].name, name)) {
            if (peers[i].error_ms >= 0 && peers[i].error_ms <= error_max) {
                *error = peers[i].error_ms;
                /* a step of our clock since it was measured */
                return peers[i].skew_ms - (peers[i].offset_ms && offset_ms
                                           ? offset_ms - peers[i].offset_ms
                                           : 0);
            }
            break;
        }
    }
    return 0;
}
