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

/* The rejoin sync: given the session.save_path published now and the one
 * about to be published (the same with a returning server S), bring every
 * PHP session key to where the new list places it, from where the current
 * list reads it.  APR and libmemcached only: no httpd, so the unit tests
 * and the fuzzer drive the pure parts, and the checker runs it on a thread
 * of its own.
 *
 *   placement   memsess_place_* (memsess_place.c): a memcached_st built as
 *               php-memcached 3.x builds its session connection;
 *               libmemcached answers.
 *   listing     memcached's "lru_crawler metadump all", read a line at a
 *               time (never the whole listing in memory); each line is
 *               untrusted input for memsess_dump_parse() (memsess_listing.c).
 *   before      (S not yet published)
 *     pass 1    on S: locks, keys not placed on S, and keys whose authority
 *               (the server requests read now) no longer has them (a logout
 *               or an expiry during the outage) are deleted; on every other
 *               server: each key it is the authority of and the new list
 *               places on S is copied to S with its remaining expiry.
 *     pass 2    the same, for what changed since pass 1 began (last access
 *               at the authority; logouts: S's keys checked again).
 *     delta     instead of both, when S comes back as the memcached process
 *               that went down (it kept what it held): only what changed
 *               since its outage began is examined (pass_since() below).
 *   (the checker publishes S)
 *   after       requests that still had the old list may have written the
 *               old authority: keys it wrote since pass 2 began are
 *               compared with S and brought over; copies the new list
 *               places nowhere any more (replicas 0, keys written elsewhere
 *               while S was out) are removed.
 *
 * No copy ever replaces a newer one: a write to S is a compare-and-swap
 * against the cas S had when its copy was read (an add when S had none),
 * so anything that wrote S meanwhile (a request, another web server's
 * sync) wins. */

#include <string.h>
#include <stdlib.h>

#include <libmemcached/memcached.h>

#include "apr_general.h"
#include "apr_strings.h"
#include "apr_hash.h"
#include "apr_lib.h"
#include "apr_network_io.h"
#include "apr_time.h"
#include <pthread.h>

#include "memsess_sync.h"
#include "memsess_clocks.h"
#include "memsess_listing.h"
#include "memsess_feed.h"
#include "memsess_place.h"
#include "memsess_pipeline.h"
#include "memsess_written.h"

/* ------------------------------------------------------------------ */
/* What to do with one key                                            */

static int holds(const int *list, int n, int s)
{
    int i;

    for (i = 0; i < n; i++) {
        if (list[i] == s) {
            return 1;
        }
    }
    return 0;
}

memsess_sync_action_e memsess_sync_decide(memsess_key_kind_e kind,
                                          int here, int returning,
                                          const int *now, int nnow,
                                          const int *next, int nnext)
{
    int placed = holds(next, nnext, returning);

    if (kind == MEMSESS_KEY_OTHER) {
        return MEMSESS_SYNC_SKIP;
    }
    if (here == returning) {
        /* a lock there is from before the outage; a key the new list does
         * not read there would be a stale copy the day it does */
        if (kind == MEMSESS_KEY_LOCK || !placed) {
            return MEMSESS_SYNC_DROP;
        }
        /* the authority is the server requests read now: the first of the
         * current placement (php-memcached reads replicas only when that
         * one is unreachable, never on a miss) */
        if (nnow < 1 || now[0] == returning) {
            return MEMSESS_SYNC_SKIP;   /* it is its own authority */
        }
        return MEMSESS_SYNC_VERIFY;
    }
    if (kind == MEMSESS_KEY_SESSION && placed && nnow > 0 && now[0] == here) {
        return MEMSESS_SYNC_COPY;
    }
    return MEMSESS_SYNC_SKIP;
}

/* ------------------------------------------------------------------ */
/* The run                                                            */

#define MAX_PLACES   (16)          /* replicas + 1, capped */
#define MAX_LISTS    (64)          /* distinct lists holding one server */
#define SETTLE_US    (5000)        /* a write's replica lands meanwhile */

typedef struct {
    const char   *name;     /* "host:port" */
    char         *host;
    apr_port_t    port;
    memcached_st *mc;       /* direct, no namespace; opened when needed */
    memcached_result_st res;   /* what fetch() read there, bound to mc:
                                * libmemcached grows a value with the
                                * allocator of the result's own handle */
    int           in_now;   /* in the list published now */
    int           target;   /* copies are written to it: the returning
                             * server, or (a rebalance) every server of
                             * the new lists */
    int           fresh;    /* a target no list published now reads: its
                             * stale keys go before the flip */
    memsess_pipeline_t *pipe;  /* batched writes (copy_batch()) */
    memsess_feed_t *feed;   /* its log of writes, from before the first
                             * listing (feeds_open()), or NULL */
    apr_uint64_t *cls_lines;   /* a fed server: what its first listing */
    apr_uint64_t *cls_ours;    /* held in each slab class, of ours */
    int           netted;   /* listed again since (pass_server_fed()) */
} server_t;

/* One list, placed: its servers numbered as ours. */
typedef struct {
    memsess_place_t *now, *next;
    int             *now_id, *next_id;   /* place index -> server_t index */
} list_t;

/* Where one key is under every list. */
typedef struct {
    int now[MAX_PLACES], next[MAX_PLACES];
    int nnow, nnext;
} where_t;

/* A session written at its authority while the sync ran: a user active
 * right now, whose next request may come just after the flip. */
typedef struct hot_t {
    memsess_dump_item_t it;
    int                 here;         /* its authority */
    int                 t;            /* the target it was copied to */
    int                 list;         /* the list that copied it */
    int                 active;       /* written during a delta pass (not
                                       * only used in the seconds before) */
    uint64_t            seen;         /* its cas there, last looked at */
    uint64_t            now_cas;      /* there, at the last hot_sweep() */
    int                 lead;         /* the first of its key and here */
    struct hot_t       *next_same;    /* the next of the same key */
} hot_t;

#define HOT_MAX      (4096)        /* the busiest sessions, at most */
#define HOT_RECENT_S (10)          /* used this many seconds before: hot */
#define HOT_WATCH    apr_time_from_msec(300)
#define HOT_BATCH    (512)         /* keys of one mget */

/* The reading of stats.expected (expect_start). */
struct expect {
    apr_uint32_t refs;
    apr_uint64_t expected;     /* 0 until read */
    apr_uint64_t timeout_ms;
    int          n;
    char       **hosts;
    apr_port_t  *ports;
};

struct memsess_sync {
    apr_pool_t               *pool;
    struct expect            *expect;            /* reads stats.expected */
    const memsess_sync_spec_t *spec;
    list_t                   *lists;
    int                       nlists;
    where_t                  *where;             /* [nlists], scratch */
    server_t                 *servers;
    int                       nservers;
    int                       s;    /* the returning server, or -1 */
    apr_time_t                began;       /* pass 1 */
    apr_time_t                delta_began; /* the pass being run */
    memsess_written_set_t    *written;     /* key + target -> mine_t */
    int                       final;       /* the last after pass */
    memsess_sync_stats_t      stats;
    memcached_result_st      *res;         /* the last fetch() */
    hot_t                    *hot;         /* written during the sync */
    int                       nhot;
    apr_hash_t               *hot_index;   /* key + target -> hot_t */
    apr_hash_t               *hot_by_key;  /* key -> first hot_t */
    int                       hot_evict;   /* below: all active */
    char                     *held;        /* hold(): one value at a time */
    apr_size_t                held_size;
    struct flip_guard        *guards;      /* at the flip (below) */
    int                       nguards;
    int                       recent_brought;  /* at the gate */
    struct flip_snap         *snaps;       /* the requests running at the
                                            * flip: their sessions' new
                                            * places as they were */
    int                       nsnaps;
    int                       late_brought;
    apr_int64_t               lifetime;    /* of a session, as listed: the
                                            * longest expiry - last access */
    apr_time_t                guarded_at;  /* memsess_sync_hold_hot() */
    apr_hash_t               *guard_index; /* lock name -> guard */
    apr_hash_t               *guard_keys_index;  /* session key -> guard */
    const char              **guard_keys;  /* scratch for their mget */
    size_t                   *guard_lens;
    /* a delta sync (spec->since) */
    int                       delta;       /* running one */
    const char               *mode;        /* why not, when asked */
    apr_int64_t              *since_la;    /* [nservers]: spec->since on
                                            * each server's clock */
    apr_uint64_t             *kept;        /* S's keys, the last round */
    apr_uint64_t             *kept_cas;    /* their cas on S, as listed */
    apr_size_t                kept_cap, kept_n;
    apr_uint64_t              kept_seed;
    apr_array_header_t       *missed;      /* of missed_t */
    apr_hash_t               *missed_index;   /* key -> index + 1 */
    int                       round;
    struct batch             *batch;       /* copies queued (queue_copy) */
    apr_time_t                paced_since; /* MemsessSyncRate: keys paced */
    apr_uint64_t              paced;       /* since then */
    int                       gave_up;     /* tries of the last read that
                                            * timed out every time */
    apr_time_t                gave_up_for; /* over this long */
    /* a rebalance into another namespace: keys are ours under ns_now
     * (their authority's) and under ns_next (copies on targets) */
    const char               *ns_now, *ns_next;
    int                       fenced;      /* the lease lost: no more
                                            * writes (fence_holds) */
    int                       rename;
};

static void kept_free(memsess_sync_t *y);
static void expect_drop(memsess_sync_t *y);

/* What a key is in our namespace.  The engine holds every key by its
 * name at its authority (the namespace now); a rename (spec->next_prefix)
 * gives it another on targets: tname(). */
static memsess_key_kind_e kind_of(const memsess_sync_t *y,
                                  const memsess_dump_item_t *it,
                                  const char **id, apr_size_t *idlen)
{
    return memsess_key_kind(y->ns_now, it->key, it->keylen, id, idlen);
}

/* The name of `it` on a target, into buf (MEMSESS_KEY_MAX + 1 bytes):
 * itself, or under the next namespace.  Its length, or 0 when the name
 * would pass memcached's longest (nothing is then written there). */
static apr_size_t tname(const memsess_sync_t *y,
                        const memsess_dump_item_t *it, char *buf)
{
    apr_size_t plen = strlen(y->ns_now), nlen = strlen(y->ns_next);

    if (!y->rename) {
        memcpy(buf, it->key, it->keylen);
        buf[it->keylen] = '\0';
        return it->keylen;
    }
    if (it->keylen < plen || nlen + it->keylen - plen > MEMSESS_KEY_MAX) {
        return 0;
    }
    memcpy(buf, y->ns_next, nlen);
    memcpy(buf + nlen, it->key + plen, it->keylen - plen);
    buf[nlen + it->keylen - plen] = '\0';
    return nlen + it->keylen - plen;
}

static int server_id(memsess_sync_t *y, const char *name)
{
    int i;
    char *host;
    const char *colon;

    for (i = 0; i < y->nservers; i++) {
        if (!strcmp(y->servers[i].name, name)) {
            return i;
        }
    }
    host = apr_pstrdup(y->pool, name);
    colon = strrchr(host, ':');
    if (!colon) {
        return -1;
    }
    host[colon - host] = '\0';
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        host[strlen(host) - 1] = '\0';
        host++;
    }
    y->servers[i].name = name;
    y->servers[i].host = host;
    y->servers[i].port = (apr_port_t)atoi(colon + 1);
    return y->nservers++;
}

memsess_sync_t *memsess_sync_create(apr_pool_t *p,
                                    const memsess_sync_spec_t *spec,
                                    char *err, apr_size_t errlen)
{
    memsess_sync_t *y = apr_pcalloc(p, sizeof(*y));
    memsess_place_t *ret = spec->returning
                           ? memsess_place_create(p, spec->returning, 0, 0)
                           : NULL;
    int i, k, n = 1, placed = 0;

    y->pool = p;
    y->spec = spec;
    y->ns_now = spec->prefix ? spec->prefix : MEMSESS_SESS_PREFIX;
    y->ns_next = spec->next_prefix ? spec->next_prefix : y->ns_now;
    y->rename = strcmp(y->ns_now, y->ns_next) != 0;
    if (y->rename && spec->returning) {
        apr_cpystrn(err, "a rejoin sync keeps its namespace", errlen);
        return NULL;
    }
    if (spec->nlists < 1 || spec->nlists > MAX_LISTS) {
        apr_snprintf(err, errlen, "%d lists to sync (1 to %d)",
                     spec->nlists, MAX_LISTS);
        return NULL;
    }
    y->nlists = spec->nlists;
    y->lists = apr_pcalloc(p, (spec->nlists + 1) * sizeof(list_t));
    y->where = apr_pcalloc(p, (spec->nlists + 1) * sizeof(where_t));
    for (k = 0; k < spec->nlists; k++) {
        const memsess_sync_list_t *l = &spec->lists[k];
        list_t *L = &y->lists[k];

        L->now = memsess_place_create(p, l->path_now, l->replicas, l->ketama);
        L->next = memsess_place_create(p, l->path_next,
                                       l->next_own ? l->next_replicas
                                                   : l->replicas,
                                       l->next_own ? l->next_ketama
                                                   : l->ketama);
        if (!L->now || !L->next) {
            apr_snprintf(err, errlen, "libmemcached refused the list \"%s\" "
                         "or \"%s\"", l->path_now, l->path_next);
            return NULL;
        }
        n += memsess_place_nservers(L->now) + memsess_place_nservers(L->next);
    }
    if (spec->returning && !ret) {
        apr_snprintf(err, errlen, "libmemcached refused \"%s\"",
                     spec->returning);
        return NULL;
    }
    y->servers = apr_pcalloc(p, n * sizeof(server_t));
    y->s = ret ? server_id(y, memsess_place_server(ret, 0)) : -1;
    for (k = 0; k < y->nlists; k++) {
        list_t *L = &y->lists[k];
        int nn = memsess_place_nservers(L->now);
        int nx = memsess_place_nservers(L->next);

        L->now_id = apr_pcalloc(p, nn * sizeof(int));
        L->next_id = apr_pcalloc(p, nx * sizeof(int));
        for (i = 0; i < nn; i++) {
            L->now_id[i] = server_id(y, memsess_place_server(L->now, i));
            if (L->now_id[i] >= 0) {
                y->servers[L->now_id[i]].in_now = 1;
            }
        }
        for (i = 0; i < nx; i++) {
            L->next_id[i] = server_id(y, memsess_place_server(L->next, i));
            if (L->next_id[i] >= 0 && !spec->returning) {
                y->servers[L->next_id[i]].target = 1;
            }
        }
        placed |= !spec->returning || holds(L->next_id, nx, y->s);
    }
    if ((spec->returning && y->s < 0) || !placed) {
        apr_snprintf(err, errlen, "%s is in none of the new lists",
                     spec->returning);
        return NULL;
    }
    if (y->s >= 0) {
        y->servers[y->s].target = 1;
    }
    for (i = 0; i < y->nservers; i++) {
        y->servers[i].fresh = y->servers[i].target
                              && (i == y->s || !y->servers[i].in_now);
    }
    return y;
}

/* Server i's connection closed: the next conn() makes a fresh one. */
static void reconnect(memsess_sync_t *y, int i)
{
    memsess_pipeline_close(y->servers[i].pipe);
    y->servers[i].pipe = NULL;
    if (y->servers[i].mc) {
        memcached_result_free(&y->servers[i].res);
        memcached_free(y->servers[i].mc);
        y->servers[i].mc = NULL;
    }
}

void memsess_sync_destroy(memsess_sync_t *y)
{
    int i;

    if (!y) {
        return;
    }
    expect_drop(y);
    memsess_sync_unhold(y);
    for (i = 0; i < y->nservers; i++) {
        reconnect(y, i);
        memsess_feed_close(y->servers[i].feed);
        y->servers[i].feed = NULL;
    }

    free(y->held);
    y->held = NULL;
    y->held_size = 0;
    kept_free(y);
    memsess_written_destroy(y->written);
    y->written = NULL;
}

const char *memsess_sync_feed_text(apr_pool_t *p,
                                   const memsess_sync_stats_t *st)
{
    if (!st->feeds) {
        return "";
    }
    return apr_psprintf(p, "; %" APR_UINT64_T_FMT " keys written meanwhile "
                        "read from the logs of writes of %" APR_UINT64_T_FMT
                        " servers (%" APR_UINT64_T_FMT " passes listed "
                        "instead)", st->fed, st->feeds, st->feed_lost);
}

const memsess_sync_stats_t *memsess_sync_stats(const memsess_sync_t *y)
{
    return &y->stats;
}

int memsess_sync_delta(const memsess_sync_t *y)
{
    return y->delta;
}

const char *memsess_sync_mode(const memsess_sync_t *y)
{
    return y->delta ? NULL : y->mode;
}

int memsess_sync_same_process(apr_int64_t pid, apr_int64_t started,
                              apr_int64_t pid2, apr_int64_t started2)
{
    return pid == pid2 && started - started2 <= 1 && started2 - started <= 1;
}

/* Whether the process that answers now is the one pid/started names. */
static int same_proc(const memsess_rejoin_facts_t *f, apr_int64_t pid,
                     apr_int64_t started)
{
    return memsess_sync_same_process(pid, started, f->proc_pid,
                                     f->proc_started);
}

const char *memsess_sync_delta_since(memsess_rejoin_facts_t *f,
                                     apr_interval_time_t margin,
                                     apr_time_t now, apr_time_t *since)
{
    apr_time_t from;
    int resumable;

    f->resumed = 0;
    if (!f->proc_pid || !f->proc_started) {
        return "which memcached process answers now is not known";
    }
    /* a sync of the process that answers now began and was not
     * published */
    resumable = f->resume_since > 0 && f->resume_since <= now
                && same_proc(f, f->resume_pid, f->resume_started);
    if (resumable && !(f->down_pid && same_proc(f, f->down_pid,
                                                 f->down_started))
        && f->down_since > 0 && f->down_since <= now) {
        /* another process than went down (restarted empty, so after the
         * outage began) that a sync began to fill and did not publish:
         * all it holds was written since the outage began, by whichever
         * sync, each copy as new as its authority's then: what changed
         * since, and what it lacks, is all there is to do */
        f->resumed = 1;
        *since = f->down_since - margin;
        return NULL;
    }
    if (!f->down_pid || !f->down_started) {
        return "which memcached process went down is not known";
    }
    if (!same_proc(f, f->down_pid, f->down_started)) {
        return "it is another memcached process (restarted)";
    }
    if (f->unfinished) {
        return "an earlier sync of it did not finish";
    }
    if (f->down_since <= 0 || f->down_since > now) {
        return "when its outage began is not known";
    }
    if (f->last_live <= 0) {
        return "this checker did not see it live before its outage";
    }
    /* whichever is earlier: our last sight of it live, its first failed
     * probe, or the start of a sync of it that was not published (a
     * checker before this one's: what it copied is only as new as then);
     * then the margin (the detection delay, la's second) */
    from = f->down_since < f->last_live ? f->down_since : f->last_live;
    if (resumable && f->resume_since < from) {
        from = f->resume_since;
    }
    *since = from - margin;
    return NULL;
}

apr_int64_t memsess_sync_their_secs(apr_time_t since, apr_time_t our_now,
                                    apr_int64_t their_now)
{
    apr_time_t ago = our_now - since;

    if (ago < 0) {
        ago = 0;
    }
    /* their_now is truncated and was read before our_now: rounding the
     * interval up keeps every access at or after since at or above it */
    return their_now - (apr_int64_t)((ago + APR_USEC_PER_SEC - 1)
                                     / APR_USEC_PER_SEC);
}

/* A connection of its own to server i, with the sync's timeouts; NULL
 * when it cannot be made. */
static memcached_st *handle(const memsess_sync_t *y, int i)
{
    const server_t *sv = &y->servers[i];
    uint64_t ms = (uint64_t)apr_time_as_msec(y->spec->timeout);
    memcached_st *mc;

    if (ms < 1) {
        ms = 1;
    }
    if (!(mc = memcached_create(NULL))) {
        return NULL;
    }
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, ms);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, ms);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_RCV_TIMEOUT, ms * 1000);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_SND_TIMEOUT, ms * 1000);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 0);
    if (memcached_server_add(mc, sv->host, sv->port) != MEMCACHED_SUCCESS) {
        memcached_free(mc);
        return NULL;
    }
    return mc;
}

static memcached_st *conn(memsess_sync_t *y, int i)
{
    server_t *sv = &y->servers[i];

    if (sv->mc) {
        return sv->mc;
    }
    if ((sv->mc = handle(y, i))
        && !memcached_result_create(sv->mc, &sv->res)) {
        memcached_free(sv->mc);
        sv->mc = NULL;
    }
    return sv->mc;
}

/* Whether the job's lease still holds, before a copy or a delete (the
 * fence): 0, once for good, when it lapsed or another instance took the
 * job over (fail() then says so). */
static int fence_holds(memsess_sync_t *y)
{
    if (!y->fenced && y->spec->fence && !y->spec->fence(y->spec->baton)) {
        y->fenced = 1;
    }
    return !y->fenced;
}

static apr_status_t fail(memsess_sync_t *y, int i, const char *what,
                         memcached_return_t rc, char *err, apr_size_t errlen)
{
    if (y->fenced) {
        apr_snprintf(err, errlen, "stopped before writing to %s: the job's "
                     "lease lapsed or another instance took the job over",
                     y->servers[i].name);
        return APR_EGENERAL;
    }
    apr_snprintf(err, errlen, "%s %s: %s%s", what, y->servers[i].name,
                 y->servers[i].mc ? memcached_strerror(y->servers[i].mc, rc)
                                  : "cannot create a connection",
                 y->gave_up > 1
                 ? apr_psprintf(y->pool, " (%d tries in %" APR_TIME_T_FMT
                                " ms)", y->gave_up,
                                apr_time_as_msec(y->gave_up_for))
                 : "");
    y->gave_up = 0;
    return APR_EGENERAL;
}

/* A read that timed out or lost its connection (a server busy for a
 * moment, a CPU starved): it changes nothing, so it is tried again on a
 * fresh connection, FETCH_TRIES in all, FETCH_PAUSE apart, unless the job
 * is stopped meanwhile (a server that is gone is marked down by the
 * checker, which stops the job). */
#define FETCH_TRIES 3
#define FETCH_PAUSE apr_time_from_msec(50)

static int transient(memcached_return_t rc)
{
    return rc == MEMCACHED_TIMEOUT || rc == MEMCACHED_CONNECTION_FAILURE
           || rc == MEMCACHED_SOME_ERRORS   /* mget's word for either */
           || rc == MEMCACHED_ERRNO || rc == MEMCACHED_READ_FAILURE
           || rc == MEMCACHED_WRITE_FAILURE
           || rc == MEMCACHED_UNKNOWN_READ_FAILURE
           || rc == MEMCACHED_SERVER_TEMPORARILY_DISABLED
           || rc == MEMCACHED_SERVER_MARKED_DEAD;
}

/* Whether a read (or a batch of writes) at server i that failed `tried`
 * times of `tries` is tried once more: if so, on a fresh connection after
 * FETCH_PAUSE, counted in stats.retried. */
static int try_again(memsess_sync_t *y, int i, int tried, int tries)
{
    if (tried >= tries || (y->spec->stop && *y->spec->stop)) {
        return 0;
    }
    reconnect(y, i);
    apr_sleep(FETCH_PAUSE);
    y->stats.retried++;
    return 1;
}

static memcached_return_t fetch_once(memsess_sync_t *y, int i,
                                     const char *key, apr_size_t len);

/* Reads key at server i into y->res (value, flags, cas), valid until the
 * next fetch() from the same server.  SUCCESS, NOTFOUND or an error (after
 * FETCH_TRIES when it is a transient one). */
static memcached_return_t fetch(memsess_sync_t *y, int i, const char *key,
                                apr_size_t len)
{
    apr_time_t t0 = apr_time_now();
    memcached_return_t rc = fetch_once(y, i, key, len);
    int tries = 1;

    while (transient(rc) && try_again(y, i, tries, FETCH_TRIES)) {
        rc = fetch_once(y, i, key, len);
        tries++;
    }
    y->gave_up = transient(rc) ? tries : 0;
    y->gave_up_for = apr_time_now() - t0;
    return rc;
}

static memcached_return_t fetch_once(memsess_sync_t *y, int i,
                                     const char *key, apr_size_t len)
{
    memcached_st *mc = conn(y, i);
    const char *keys[1];
    size_t lens[1];
    memcached_return_t rc, end;
    int found = 0;

    if (!mc) {
        return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
    }
    keys[0] = key;
    lens[0] = len;
    rc = memcached_mget(mc, keys, lens, 1);
    if (rc != MEMCACHED_SUCCESS) {
        return rc;
    }
    y->res = &y->servers[i].res;
    if (memcached_fetch_result(mc, y->res, &rc)) {
        found = 1;
        /* drain the end of the answer */
        while (memcached_fetch_result(mc, NULL, &end)) {
        }
    }
    if (found) {
        return MEMCACHED_SUCCESS;
    }
    return rc == MEMCACHED_END || rc == MEMCACHED_NOTFOUND
           || rc == MEMCACHED_SUCCESS ? MEMCACHED_NOTFOUND : rc;
}

static int stopped(const memsess_sync_t *y, char *err, apr_size_t errlen)
{
    if (y->spec->stop && *y->spec->stop) {
        apr_cpystrn(err, "stopped", errlen);
        return 1;
    }
    return 0;
}

static apr_size_t batch_bytes(void);

/* What its tables hold now, into stats.memory when more than before. */
static void note_memory(memsess_sync_t *y)
{
    apr_uint64_t bytes = (y->written ? memsess_written_bytes(y->written) : 0)
                         + y->kept_cap * 2 * sizeof(apr_uint64_t)
                         + (y->hot ? HOT_MAX * sizeof(hot_t) : 0)
                         + (y->batch ? batch_bytes() : 0)
                         + y->held_size;

    if (bytes > y->stats.memory) {
        y->stats.memory = bytes;
    }
}

static void progress(memsess_sync_t *y, int always)
{
    if (y->expect) {
        y->stats.expected = __atomic_load_n(&y->expect->expected,
                                            __ATOMIC_ACQUIRE);
    }
    if (always || !(y->stats.listed % 256)) {
        note_memory(y);
    }
    if (y->spec->progress && (always || !(y->stats.listed % 256))) {
        y->spec->progress(y->spec->baton, &y->stats);
    }
}

/* Expiry to write: what is left of it, as memcached takes it (absolute
 * unix seconds; 0 = never).  -1: already expired, copy nothing. */
static time_t expiry(apr_int64_t exp)
{
    apr_int64_t now = apr_time_sec(apr_time_now());

    if (exp < 0) {
        return 0;
    }
    if (exp <= now + 1) {
        return (time_t)-1;
    }
    return (time_t)exp;
}

/* Writes value onto target t unless t's copy changed since `cas` was read
 * from it (0: t had none, so only if it still has none). */
static memcached_return_t put_t(memsess_sync_t *y, int t, const char *key,
                                apr_size_t len, const char *value,
                                apr_size_t vlen, uint32_t flags, time_t exp,
                                uint64_t cas)
{
    memcached_st *mc = conn(y, t);

    if (!mc) {
        return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
    }
    if (!fence_holds(y)) {
        return MEMCACHED_FAILURE;   /* fail() says why */
    }
    if (cas) {
        return memcached_cas(mc, key, len, value, vlen, exp, flags, cas);
    }
    return memcached_add(mc, key, len, value, vlen, exp, flags);
}

/* Keeps a copy of a value read (the next fetch reuses y->res), in one
 * buffer grown as needed: a sync of many keys allocates once. */
static char *hold(memsess_sync_t *y, const char *value, apr_size_t len)
{
    if (len + 1 > y->held_size) {
        char *bigger = realloc(y->held, len + 1);

        if (!bigger) {
            return NULL;
        }
        y->held = bigger;
        y->held_size = len + 1;
    }
    memcpy(y->held, value, len);
    return y->held;
}

/* What the sync left of a key at a target: the target's cas after it
 * wrote or checked it, and the authority's cas it copied from (a later
 * write there changes it; reads do not, unlike memcached's last-access
 * time).  In y->written: 32 to 64 bytes a key (memsess_written.c). */
typedef memsess_written_t mine_t;

/* The name of key at target t in y->hot_index: the key, a NUL, t. */
static apr_size_t written_key(char *buf, int t, const memsess_dump_item_t *it)
{
    memcpy(buf, it->key, it->keylen);
    buf[it->keylen] = '\0';
    memcpy(buf + it->keylen + 1, &t, sizeof(t));
    return it->keylen + 1 + sizeof(t);
}

static apr_uint64_t written_digest(const memsess_sync_t *y, int t,
                                   const memsess_dump_item_t *it)
{
    return memsess_written_digest(y->written, it->key, it->keylen, t);
}

static mine_t *written_at(const memsess_sync_t *y, int t,
                          const memsess_dump_item_t *it)
{
    return y->written ? memsess_written_get(y->written,
                                            written_digest(y, t, it))
                      : NULL;
}

/* Notes it (known 0: read t's cas back after a copy).  Out of memory it
 * is not noted: the next pass looks at the key again. */
static void remember(memsess_sync_t *y, int t, const memsess_dump_item_t *it,
                     uint64_t known, uint64_t authority)
{
    mine_t *m;

    if (!known) {
        char tk[MEMSESS_KEY_MAX + 1];
        apr_size_t tl = tname(y, it, tk);

        if (!tl || fetch(y, t, tk, tl) != MEMCACHED_SUCCESS) {
            return;
        }
        known = memcached_result_cas(y->res);
    }
    if (y->written
        && (m = memsess_written_put(y->written, written_digest(y, t, it)))) {
        m->s = known;
        m->authority = authority;
    }
}

/* Whether the authority's copy (as listed) changed since the sync copied
 * it to t: by its cas when the listing gives one, else by its last
 * access. */
static int changed(const memsess_sync_t *y, int t,
                   const memsess_dump_item_t *it)
{
    const mine_t *m = written_at(y, t, it);

    if (!m) {
        return 1;
    }
    if (it->cas) {
        return m->authority != it->cas;
    }
    return it->la >= apr_time_sec(y->delta_began) - 1;
}

/* Counts what put_t() did: a copy, or nothing because t changed after
 * its cas was read (what is there wins), or an error (in err). */
static apr_status_t put_done(memsess_sync_t *y, int t,
                             const memsess_dump_item_t *it,
                             uint64_t authority, memcached_return_t rc,
                             char *err, apr_size_t errlen)
{
    if (rc == MEMCACHED_SUCCESS) {
        y->stats.copied++;
        remember(y, t, it, 0, authority);
        return APR_SUCCESS;
    }
    if (rc == MEMCACHED_DATA_EXISTS || rc == MEMCACHED_NOTSTORED
        || rc == MEMCACHED_NOTFOUND) {
        y->stats.newer++;
        return APR_SUCCESS;
    }
    return fail(y, t, "cannot write", rc, err, errlen);
}

/* The authority's copy of key, which the new list places on target t
 * too, onto t.  Returns APR_SUCCESS or an error in err. */
static apr_status_t copy_key(memsess_sync_t *y, int from, int t,
                             const memsess_dump_item_t *it, char *err,
                             apr_size_t errlen)
{
    memcached_return_t rc;
    char *value;
    apr_size_t vlen;
    uint32_t flags;
    uint64_t cas_s = 0, cas_auth;
    time_t exp = expiry(it->exp);
    char tk[MEMSESS_KEY_MAX + 1];
    apr_size_t tl = tname(y, it, tk);

    if (exp == (time_t)-1 || !tl) {
        return APR_SUCCESS;
    }
    /* t first: its cas guards the write below */
    rc = fetch(y, t, tk, tl);
    if (rc == MEMCACHED_SUCCESS) {
        cas_s = memcached_result_cas(y->res);
        if (!cas_s) {
            return fail(y, t, "no cas from", rc, err, errlen);
        }
    }
    else if (rc != MEMCACHED_NOTFOUND) {
        return fail(y, t, "cannot read", rc, err, errlen);
    }
    value = NULL;
    vlen = 0;
    if (rc == MEMCACHED_SUCCESS) {
        vlen = memcached_result_length(y->res);
        value = hold(y, memcached_result_value(y->res), vlen);
        if (!value) {
            apr_cpystrn(err, "out of memory", errlen);
            return APR_ENOMEM;
        }
    }
    rc = fetch(y, from, it->key, it->keylen);
    if (rc == MEMCACHED_NOTFOUND) {
        return APR_SUCCESS;   /* gone meanwhile: pass 2 deletes it on t */
    }
    if (rc != MEMCACHED_SUCCESS) {
        return fail(y, from, "cannot read", rc, err, errlen);
    }
    flags = memcached_result_flags(y->res);
    if (cas_s && vlen == memcached_result_length(y->res)
        && !memcmp(value, memcached_result_value(y->res), vlen)) {
        y->stats.same++;
        remember(y, t, it, cas_s, memcached_result_cas(y->res));
        return APR_SUCCESS;
    }
    cas_auth = memcached_result_cas(y->res);
    rc = put_t(y, t, tk, tl, memcached_result_value(y->res),
               memcached_result_length(y->res), flags, exp, cas_s);
    return put_done(y, t, it, cas_auth, rc, err, errlen);
}

static apr_status_t delete_key(memsess_sync_t *y, int at,
                               const memsess_dump_item_t *it, char *err,
                               apr_size_t errlen)
{
    memcached_st *mc = conn(y, at);
    memcached_return_t rc;
    char tk[MEMSESS_KEY_MAX + 1];
    apr_size_t tl = tname(y, it, tk);

    if (!mc) {
        return fail(y, at, "cannot connect to", MEMCACHED_FAILURE, err,
                    errlen);
    }
    if (!tl) {
        return APR_SUCCESS;
    }
    if (!fence_holds(y)) {
        return fail(y, at, "", MEMCACHED_FAILURE, err, errlen);
    }
    rc = memcached_delete(mc, tk, tl, 0);
    if (rc == MEMCACHED_SUCCESS) {
        y->stats.deleted++;
    }
    else if (rc != MEMCACHED_NOTFOUND) {
        return fail(y, at, "cannot delete on", rc, err, errlen);
    }
    return APR_SUCCESS;
}

/* Notes an active session (key + target once).  When HOT_MAX are noted, a
 * session written during a delta pass takes the place of one that was only
 * used in the seconds before the sync: a sync that begins just after many
 * sessions were used must still watch those being written. */
static void note_hot(memsess_sync_t *y, int here, int t, int list,
                     const memsess_dump_item_t *it, int active)
{
    char buf[MEMSESS_KEY_MAX + 1 + sizeof(int)];
    apr_size_t len = written_key(buf, t, it);
    hot_t *h;

    if (!y->hot_index) {
        y->hot_index = apr_hash_make(y->pool);
        y->hot = apr_palloc(y->pool, HOT_MAX * sizeof(hot_t));
    }
    if ((h = apr_hash_get(y->hot_index, buf, len)) != NULL) {
        h->active |= active;
        return;
    }
    if (y->nhot < HOT_MAX) {
        h = &y->hot[y->nhot++];
    }
    else {
        while (active && y->hot_evict < HOT_MAX
               && y->hot[y->hot_evict].active) {
            y->hot_evict++;
        }
        if (!active || y->hot_evict == HOT_MAX) {
            return;
        }
        h = &y->hot[y->hot_evict++];
        {
            char old[MEMSESS_KEY_MAX + 1 + sizeof(int)];

            apr_hash_set(y->hot_index, old, written_key(old, h->t, &h->it),
                         NULL);
        }
    }
    memset(h, 0, sizeof(*h));
    h->it = *it;
    h->here = here;
    h->t = t;
    h->list = list;
    h->active = active;
    apr_hash_set(y->hot_index, apr_pmemdup(y->pool, buf, len), len, h);
}

typedef enum {
    PASS_FULL,     /* every key */
    PASS_DELTA,    /* keys written since delta_began; S: every key */
    PASS_AFTER,    /* after the flip */
    PASS_SINCE,    /* a delta sync: what changed since S went down */
    PASS_SETTLE    /* S again: its keys no authority listed */
} pass_e;

static apr_status_t after_key(memsess_sync_t *y, int here, int t,
                              int settle, const memsess_dump_item_t *it,
                              char *err, apr_size_t errlen);

/* What one key found on server i gets, under every list at once. */
/* Whether the key's authority has lost it (a logout, an expiry) under
 * every list whose act is VERIFY: a copy elsewhere would bring it back.
 * 1 when lost, 0 when not, -1 on an error (in err). */
static int lost_at_authority(memsess_sync_t *y,
                             const memsess_sync_action_e *act,
                             const memsess_dump_item_t *it, char *err,
                             apr_size_t errlen)
{
    memcached_return_t rc;
    int k, asked = 0;

    for (k = 0; k < y->nlists; k++) {
        int a = y->where[k].now[0];

        if (act[k] != MEMSESS_SYNC_VERIFY) {
            continue;
        }
        asked = 1;
        rc = fetch(y, a, it->key, it->keylen);   /* tried again if need be */
        if (rc == MEMCACHED_SUCCESS) {
            return 0;
        }
        if (rc != MEMCACHED_NOTFOUND) {
            fail(y, a, "cannot read", rc, err, errlen);
            return -1;
        }
    }
    return asked;
}

/* Where id is under every list, into y->where (our server numbers). */
static void place_all(memsess_sync_t *y, const char *id, apr_size_t idlen)
{
    int k, j;

    for (k = 0; k < y->nlists; k++) {
        list_t *L = &y->lists[k];
        where_t *w = &y->where[k];

        w->nnow = memsess_place_key(L->now, id, idlen, w->now, MAX_PLACES);
        w->nnext = memsess_place_key(L->next, id, idlen, w->next,
                                     MAX_PLACES);
        for (j = 0; j < w->nnow; j++) {
            w->now[j] = L->now_id[w->now[j]];
        }
        for (j = 0; j < w->nnext; j++) {
            w->next[j] = L->next_id[w->next[j]];
        }
    }
}

typedef void (*found_fn)(memsess_sync_t *y, int i, memcached_result_st *res);

/* One multi-get of n keys at server i: found() is given each value it
 * holds (in the server's result, until the next read there).  SUCCESS or
 * libmemcached's error. */
static memcached_return_t mget_once(memsess_sync_t *y, int i,
                                    const char **keys, size_t *lens,
                                    size_t n, found_fn found)
{
    memcached_result_st *res = &y->servers[i].res;
    memcached_return_t rc;
    memcached_st *mc = conn(y, i);

    if (!mc) {
        return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
    }
    rc = memcached_mget(mc, keys, lens, n);
    if (rc != MEMCACHED_SUCCESS) {
        return rc;
    }
    while (memcached_fetch_result(mc, res, &rc)) {
        found(y, i, res);
    }
    return rc == MEMCACHED_END || rc == MEMCACHED_NOTFOUND
           || rc == MEMCACHED_SUCCESS ? MEMCACHED_SUCCESS : rc;
}

/* The same, `tries` times in all while it times out (on a fresh
 * connection, FETCH_PAUSE apart, as fetch() does: found() is given a
 * value again when a try is repeated).  APR_SUCCESS, or an error in err. */
static apr_status_t mget_at(memsess_sync_t *y, int i, const char **keys,
                            size_t *lens, size_t n, found_fn found,
                            int tries, char *err, apr_size_t errlen)
{
    apr_time_t t0 = apr_time_now();
    memcached_return_t rc;
    int tried = 1;

    while ((rc = mget_once(y, i, keys, lens, n, found)) != MEMCACHED_SUCCESS
           && transient(rc) && try_again(y, i, tried, tries)) {
        tried++;
    }
    y->gave_up = transient(rc) ? tried : 0;
    y->gave_up_for = apr_time_now() - t0;
    return rc == MEMCACHED_SUCCESS ? APR_SUCCESS
                                   : fail(y, i, "cannot read", rc, err,
                                          errlen);
}

/* ------------------------------------------------------------------ */
/* Copies in batches                                                  */

/* The copies a listing asks for are queued (queue_copy) and made in
 * batches of COPY_BATCH keys, per target t: one multi-get at t (its cas
 * and value), one at the authority, then every write in one round trip
 * (memsess_pipeline.c): three round trips a batch where copy_key() takes
 * four a key.  The same guards: a write is a compare-and-swap against
 * the cas t had (an add where it had none), a copy equal to t's is only
 * noted, and a key gone from the authority meanwhile is left to the
 * passes that delete.  A read that times out is tried again, as fetch()
 * does; so is a batch of writes (a write that landed the first time finds
 * its own copy the second, is counted as newer, and is checked again by
 * the next pass).  Memory: a batch holds at most COPY_BATCH values read
 * at t and as many at the authority, in a pool cleared after each. */
#define COPY_BATCH  (128)

typedef struct {
    memsess_dump_item_t it;
    int                 t;          /* -1 once done */
    time_t              exp;
    int                 at_t;       /* t has a copy: cas_t, tval */
    uint64_t            cas_t;
    const char         *tval;
    apr_size_t          tlen;
    uint64_t            cas_auth;   /* the copy written, as read */
    int                 put;        /* its write in puts[], or -1 */
    char                tkey[MEMSESS_KEY_MAX + 1];   /* its name at t */
    apr_size_t          tlen_key;
} queued_t;

/* A key of a fresh target (its listing) to look for at its authority. */
typedef struct {
    memsess_dump_item_t it;
    int                 at;      /* the target that has it */
    int                 a;       /* its authority; -1 once done */
    int                 asked;   /* the authority it was looked for at */
    int                 found;
} verify_t;

struct batch {
    apr_pool_t    *pool;       /* values read; cleared after each batch */
    verify_t       v[COPY_BATCH];
    int            nv;
    memsess_dump_item_t d[COPY_BATCH];   /* to delete at dat (the last
                                          * pass: copies no list places
                                          * there any more) */
    char           dkey[COPY_BATCH][MEMSESS_KEY_MAX + 1];   /* their names
                                                             * there */
    int            nd, dat;
    apr_hash_t    *vindex;     /* key -> verify_t, the authority at hand */
    queued_t       q[COPY_BATCH];
    int            n, from;
    apr_hash_t    *index;      /* key -> queued_t, the target at hand */
    int            t;
    const char    *keys[COPY_BATCH];   /* at the authority */
    size_t         lens[COPY_BATCH];
    const char    *tkeys[COPY_BATCH];  /* at the target */
    size_t         tlens[COPY_BATCH];
    queued_t      *which[COPY_BATCH];
    memsess_put_t  puts[COPY_BATCH];
    int            nputs;
    const char    *error;      /* from a found callback */
};

static queued_t *queued(memsess_sync_t *y, memcached_result_st *res)
{
    return apr_hash_get(y->batch->index, memcached_result_key_value(res),
                        (apr_ssize_t)memcached_result_key_length(res));
}

/* t's copy of a queued key: its cas guards the write. */
static void batch_found_t(memsess_sync_t *y, int t, memcached_result_st *res)
{
    struct batch *b = y->batch;
    queued_t *q = queued(y, res);

    if (!q) {
        return;
    }
    q->at_t = 1;
    q->cas_t = memcached_result_cas(res);
    q->tlen = memcached_result_length(res);
    q->tval = apr_pmemdup(b->pool, memcached_result_value(res), q->tlen);
    if (!q->cas_t) {
        b->error = "no cas from";
    }
}

/* The authority's copy: equal to t's (noted), or a write for t. */
static void batch_found_from(memsess_sync_t *y, int from,
                             memcached_result_st *res)
{
    struct batch *b = y->batch;
    queued_t *q = queued(y, res);
    apr_size_t vlen = memcached_result_length(res);
    memsess_put_t *put;

    if (!q || q->put >= 0) {
        return;
    }
    q->cas_auth = memcached_result_cas(res);
    if (q->at_t && q->tlen == vlen
        && !memcmp(q->tval, memcached_result_value(res), vlen)) {
        y->stats.same++;
        remember(y, b->t, &q->it, q->cas_t, q->cas_auth);
        return;
    }
    q->put = b->nputs++;
    put = &b->puts[q->put];
    memset(put, 0, sizeof(*put));
    put->key = q->tkey;
    put->keylen = q->tlen_key;
    put->value = apr_pmemdup(b->pool, memcached_result_value(res), vlen);
    put->vlen = vlen;
    put->flags = memcached_result_flags(res);
    put->exp = (apr_uint32_t)q->exp;
    put->cas = q->at_t ? q->cas_t : 0;
    b->which[q->put] = q;
}

/* A multi-get at i of the batch's keys for the target at hand (their
 * names there: at_t). */
static apr_status_t batch_read(memsess_sync_t *y, int i, int n, int at_t,
                               found_fn found, char *err, apr_size_t errlen)
{
    struct batch *b = y->batch;
    apr_status_t rv = mget_at(y, i, at_t ? b->tkeys : b->keys,
                              at_t ? b->tlens : b->lens, (size_t)n, found,
                              FETCH_TRIES, err, errlen);

    if (rv == APR_SUCCESS && y->batch->error) {
        return fail(y, i, y->batch->error, MEMCACHED_SUCCESS, err, errlen);
    }
    return rv;
}

/* The batch's writes to t, in one round trip (tried again as reads are). */
static apr_status_t batch_write(memsess_sync_t *y, int t, char *err,
                                apr_size_t errlen)
{
    /* (b->puts[0 .. b->nputs - 1], copies or deletes) */
    struct batch *b = y->batch;
    server_t *sv = &y->servers[t];
    apr_status_t rv;
    int tries = 1;

    if (!fence_holds(y)) {
        return fail(y, t, "", MEMCACHED_FAILURE, err, errlen);
    }
    for (;;) {
        rv = sv->pipe ? APR_SUCCESS
                      : memsess_pipeline_open(y->pool, sv->host, sv->port,
                                              y->spec->timeout, &sv->pipe,
                                              err, errlen);
        if (rv == APR_SUCCESS) {
            rv = memsess_pipeline_put(sv->pipe, b->puts, b->nputs, err,
                                      errlen);
        }
        if (rv == APR_SUCCESS || !try_again(y, t, tries, FETCH_TRIES)) {
            return rv;
        }
        tries++;
    }
}

/* MemsessSyncRate: n more keys copied or looked for; waits until the
 * rate allows them (a pace that fell more than a second behind starts
 * again: no burst after a pause). */
static void pace(memsess_sync_t *y, int n)
{
    apr_time_t now = memsess_mono_now(), due;

    if (!y->spec->rate) {
        return;
    }
    if (!y->paced_since || now - apr_time_from_sec(1) > y->paced_since
        + (apr_time_t)(y->paced * APR_USEC_PER_SEC / y->spec->rate)) {
        y->paced_since = now;
        y->paced = 0;
    }
    y->paced += (apr_uint64_t)n;
    due = y->paced_since
          + (apr_time_t)(y->paced * APR_USEC_PER_SEC / y->spec->rate);
    while ((now = memsess_mono_now()) < due
           && !(y->spec->stop && *y->spec->stop)) {
        apr_sleep(due - now < apr_time_from_msec(50)
                  ? due - now : apr_time_from_msec(50));
    }
}

/* The queued keys for target t (the batch's index holds them). */
static apr_status_t batch_copy(memsess_sync_t *y, int t, int n, char *err,
                               apr_size_t errlen)
{
    struct batch *b = y->batch;
    apr_status_t rv;
    int k;

    pace(y, n);
    b->t = t;
    b->nputs = 0;
    b->error = NULL;
    if ((rv = batch_read(y, t, n, 1, batch_found_t, err, errlen))
            != APR_SUCCESS
        || (rv = batch_read(y, b->from, n, 0, batch_found_from, err,
                            errlen)) != APR_SUCCESS
        || !b->nputs
        || (rv = batch_write(y, t, err, errlen)) != APR_SUCCESS) {
        return rv;
    }
    for (k = 0; k < b->nputs; k++) {
        memsess_put_t *put = &b->puts[k];

        if (put->result == MEMSESS_PUT_STORED) {
            y->stats.copied++;
            remember(y, t, &b->which[k]->it, put->new_cas,
                     b->which[k]->cas_auth);
        }
        else if (put->result == MEMSESS_PUT_NEWER) {
            y->stats.newer++;
        }
        else {
            apr_snprintf(err, errlen, "%s refused a copy (status 0x%04x)",
                         y->servers[t].name, (unsigned)put->status);
            return APR_EGENERAL;
        }
    }
    return APR_SUCCESS;
}

static void verify_found(memsess_sync_t *y, int a, memcached_result_st *res)
{
    verify_t *v = apr_hash_get(y->batch->vindex,
                               memcached_result_key_value(res),
                               (apr_ssize_t)memcached_result_key_length(res));

    if (v) {
        v->found = 1;
    }
}

/* Looks for the keys queued at their authorities, one multi-get per
 * authority; those gone there (a logout during the sync) go from the
 * target too. */
static apr_status_t verifies_flush(memsess_sync_t *y, char *err,
                                   apr_size_t errlen)
{
    struct batch *b = y->batch;
    apr_status_t rv = APR_SUCCESS;
    int k, j;

    for (k = 0; k < b->nv && rv == APR_SUCCESS; k++) {
        int a = b->v[k].a, n = 0;

        if (a < 0) {
            continue;
        }
        b->vindex = apr_hash_make(b->pool);
        for (j = k; j < b->nv; j++) {
            verify_t *v = &b->v[j];

            if (v->a == a) {
                v->a = -1;
                v->asked = a;
                v->found = 0;
                b->keys[n] = v->it.key;
                b->lens[n++] = v->it.keylen;
                apr_hash_set(b->vindex, v->it.key, (apr_ssize_t)v->it.keylen,
                             v);
            }
        }
        pace(y, n);
        rv = mget_at(y, a, b->keys, b->lens, (size_t)n, verify_found,
                     FETCH_TRIES, err, errlen);
        for (j = k; j < b->nv && rv == APR_SUCCESS; j++) {
            verify_t *v = &b->v[j];
            /* found or not: as the entry the index holds says.  The
             * crawler may list a key twice (moved between its LRUs as it
             * crawls): the index holds the last of those, which alone the
             * answer marks found; the first one's own flag would take our
             * copy for a logout's leftover and delete it */
            const verify_t *h = apr_hash_get(b->vindex, v->it.key,
                                             (apr_ssize_t)v->it.keylen);

            if (v->asked == a && h && !h->found) {
                rv = delete_key(y, v->at, &v->it, err, errlen);
            }
        }
    }
    b->nv = 0;
    apr_pool_clear(b->pool);   /* no copy holds a value meanwhile */
    return rv;
}

/* Deletes the keys queued for it at b->dat, in one round trip. */
static apr_status_t deletes_flush(memsess_sync_t *y, char *err,
                                  apr_size_t errlen)
{
    struct batch *b = y->batch;
    apr_status_t rv;
    int k;

    pace(y, b->nd);
    for (k = 0; k < b->nd; k++) {
        memset(&b->puts[k], 0, sizeof(b->puts[k]));
        b->puts[k].del = 1;
        b->puts[k].key = b->dkey[k];
        b->puts[k].keylen = tname(y, &b->d[k], b->dkey[k]);
    }
    b->nputs = b->nd;
    b->nd = 0;
    if ((rv = batch_write(y, b->dat, err, errlen)) != APR_SUCCESS) {
        return rv;
    }
    for (k = 0; k < b->nputs; k++) {
        if (b->puts[k].result == MEMSESS_PUT_STORED) {
            y->stats.deleted++;
        }
        else if (b->puts[k].result == MEMSESS_PUT_REFUSED) {
            apr_snprintf(err, errlen, "%s refused a delete (status 0x%04x)",
                         y->servers[b->dat].name,
                         (unsigned)b->puts[k].status);
            return APR_EGENERAL;
        }
    }
    return APR_SUCCESS;
}

/* Makes the copies queued, a target at a time (the keys queued to be
 * looked for, then those to delete, first: they come from an earlier
 * listing). */
static apr_status_t copies_flush(memsess_sync_t *y, char *err,
                                 apr_size_t errlen)
{
    struct batch *b = y->batch;
    apr_status_t rv = b && b->nv ? verifies_flush(y, err, errlen)
                                 : APR_SUCCESS;
    int k, j;

    if (rv == APR_SUCCESS && b && b->nd) {
        rv = deletes_flush(y, err, errlen);
    }

    for (k = 0; b && k < b->n && rv == APR_SUCCESS; k++) {
        int t = b->q[k].t, n = 0;

        if (t < 0) {
            continue;
        }
        b->index = apr_hash_make(b->pool);
        for (j = k; j < b->n; j++) {
            queued_t *q = &b->q[j];

            if (q->t != t) {
                continue;
            }
            q->t = -1;
            q->put = -1;
            q->at_t = 0;
            if (!(q->tlen_key = tname(y, &q->it, q->tkey))) {
                continue;   /* no name there: never copied */
            }
            b->keys[n] = q->it.key;
            b->lens[n] = q->it.keylen;
            b->tkeys[n] = q->tkey;
            b->tlens[n++] = q->tlen_key;
            apr_hash_set(b->index, q->it.key, (apr_ssize_t)q->it.keylen, q);
            /* (a rename: found under either name) */
            apr_hash_set(b->index, q->tkey, (apr_ssize_t)q->tlen_key, q);
        }
        if (n) {
            rv = batch_copy(y, t, n, err, errlen);
        }
    }
    if (b) {
        b->n = b->nv = b->nd = 0;
        apr_pool_clear(b->pool);
    }
    return rv;
}

static apr_size_t batch_bytes(void)
{
    return sizeof(struct batch);
}

static struct batch *batch_of(memsess_sync_t *y)
{
    if (!y->batch) {
        y->batch = apr_pcalloc(y->pool, sizeof(*y->batch));
        apr_pool_create(&y->batch->pool, y->pool);
    }
    return y->batch;
}

/* Key `it` of target `at` (fresh, or a rebalance's copy), which list
 * act's VERIFY entries place at their authority: deleted from `at` when it
 * is gone there (a logout during the sync).  With one such list, queued (looked for in batches);
 * with several, looked for now (lost when gone from every one). */
static apr_status_t verify_key(memsess_sync_t *y, int at,
                               const memsess_sync_action_e *act,
                               const memsess_dump_item_t *it, char *err,
                               apr_size_t errlen)
{
    struct batch *b;
    int k, a = -1, n = 0, lost;

    for (k = 0; k < y->nlists; k++) {
        if (act[k] == MEMSESS_SYNC_VERIFY) {
            a = y->where[k].now[0];
            n++;
        }
    }
    if (n != 1) {
        lost = lost_at_authority(y, act, it, err, errlen);
        return lost < 0 ? APR_EGENERAL
               : lost ? delete_key(y, at, it, err, errlen) : APR_SUCCESS;
    }
    b = batch_of(y);
    b->v[b->nv].it = *it;
    b->v[b->nv].at = at;
    b->v[b->nv].a = a;
    b->v[b->nv].asked = -1;
    if (++b->nv == COPY_BATCH) {
        return verifies_flush(y, err, errlen);
    }
    return APR_SUCCESS;
}

/* What delete_key() does, queued: key `it` deleted at `at` with the next
 * batch of deletes there. */
static apr_status_t queue_delete(memsess_sync_t *y, int at,
                                 const memsess_dump_item_t *it, char *err,
                                 apr_size_t errlen)
{
    struct batch *b = batch_of(y);
    char tk[MEMSESS_KEY_MAX + 1];
    apr_status_t rv;

    if (!tname(y, it, tk)) {
        return APR_SUCCESS;   /* no such name there */
    }
    if (b->nd && b->dat != at
        && (rv = deletes_flush(y, err, errlen)) != APR_SUCCESS) {
        return rv;
    }
    b->dat = at;
    b->d[b->nd] = *it;
    if (++b->nd == COPY_BATCH) {
        return deletes_flush(y, err, errlen);
    }
    return APR_SUCCESS;
}

/* What copy_key() does, queued: the authority `from`'s copy of key to t,
 * in the next batch. */
static apr_status_t queue_copy(memsess_sync_t *y, int from, int t,
                               const memsess_dump_item_t *it, char *err,
                               apr_size_t errlen)
{
    struct batch *b;
    time_t exp = expiry(it->exp);
    apr_status_t rv;

    if (exp == (time_t)-1) {
        return APR_SUCCESS;
    }
    b = batch_of(y);
    if (b->n && b->from != from
        && (rv = copies_flush(y, err, errlen)) != APR_SUCCESS) {
        return rv;
    }
    b->from = from;
    b->q[b->n].it = *it;
    b->q[b->n].t = t;
    b->q[b->n].exp = exp;
    if (++b->n == COPY_BATCH) {
        return copies_flush(y, err, errlen);
    }
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* A delta sync: S is the process that went down                      */

/* S kept what it held.  Since its outage began, keys may have been
 * written or created at their authorities (requests read and wrote them
 * there), deleted there (logouts, expiries), and written on S itself
 * (requests queued in its socket while it was frozen land when it
 * thaws).  One round (pass_since) lists S, then every authority, and
 * examines only those:
 *   - on S, locks and keys no new list places there go, as in a full
 *     sync; every other key of S is noted (a hash, and whether it was
 *     accessed since), not read;
 *   - at each authority, a key the new list places on S is copied there
 *     (copy_key: compare, cas, never over a newer copy) when it was
 *     accessed there since the outage began (`since`, on that server's
 *     clock), or was touched on S since (on S's clock), or S lacks it;
 *     a key S has is marked as found;
 *   - a key of S found at no authority's listing was deleted there, or
 *     the crawler passed it by: those are read at their authorities in
 *     multi-gets of HOT_BATCH keys (one round trip per batch and server,
 *     not per key), those still there are compared and copied, the rest
 *     deleted from S: a logout during the outage stays a logout.
 * So a round costs a listing of every server (read a line at a time, as
 * in a full sync; the keys of S are held meanwhile as 8-byte hashes, and
 * S is listed once more when some were found at no authority) and round
 * trips only for what changed: the keys accessed or deleted during the
 * outage, and those the listings missed.  The
 * rounds repeat (MAX_DELTAS) for what changed while one ran; a key
 * already copied is looked at again only when its authority's cas
 * changed. */

/* S's keys, one round: an open-addressing table of their 62-bit hashes
 * (seeded at random: nobody can choose a session id that passes for
 * another's), two flags in the low bits; 0 is a free entry; beside it
 * their cas on S as listed.  16 bytes a key (a table at most 3/4 full):
 * 667,000 keys, S's share of a pool of a million sessions with a replica
 * each, in 16 to 32 MB.  The last round's stays until the sync ends: a
 * key the sync left alone on S (as new as at its authority) counts, after
 * the flip, as checked by the sync with that cas (kept_mine).  Two keys of one
 * hash count as one (a logout of one of them not carried over): for
 * 667,000 keys about one sync in twenty million. */
#define KEPT_FOUND   ((apr_uint64_t)1)   /* in its authority's listing */
#define KEPT_TOUCHED ((apr_uint64_t)2)   /* accessed on S since */
#define KEPT_FLAGS   (KEPT_FOUND | KEPT_TOUCHED)

static apr_uint64_t kept_hash(const memsess_sync_t *y, const char *key,
                              apr_size_t len)
{
    apr_uint64_t h = y->kept_seed;
    apr_size_t i;

    for (i = 0; i < len; i++) {
        h = (h ^ (unsigned char)key[i]) * APR_UINT64_C(0x100000001b3);
    }
    h ^= h >> 29;   /* the low bits hold flags and pick the entry */
    h &= ~KEPT_FLAGS;
    return h ? h : KEPT_FLAGS + 1;
}

/* The entry of hash h (its flags apart), or the free one it would take. */
static apr_uint64_t *kept_slot(apr_uint64_t *t, apr_size_t cap,
                               apr_uint64_t h)
{
    apr_size_t i = (apr_size_t)(h >> 2) & (cap - 1);

    while (t[i] && (t[i] & ~KEPT_FLAGS) != h) {
        i = (i + 1) & (cap - 1);
    }
    return &t[i];
}

static apr_uint64_t *kept_find(const memsess_sync_t *y,
                               const memsess_dump_item_t *it)
{
    apr_uint64_t *e;

    if (!y->kept) {
        return NULL;
    }
    e = kept_slot(y->kept, y->kept_cap, kept_hash(y, it->key, it->keylen));
    return *e ? e : NULL;
}

/* Notes a key of S (found: as if listed at its authority).  0, or -1 out
 * of memory. */
static int kept_note(memsess_sync_t *y, const memsess_dump_item_t *it,
                     int found)
{
    apr_uint64_t h = kept_hash(y, it->key, it->keylen), *e;

    if (4 * (y->kept_n + 1) > 3 * y->kept_cap) {
        apr_size_t cap = y->kept_cap ? 2 * y->kept_cap : 4096, i;
        apr_uint64_t *t = calloc(cap, sizeof(*t));
        apr_uint64_t *c = calloc(cap, sizeof(*c));

        if (!t || !c) {
            free(t);
            free(c);
            return -1;
        }
        for (i = 0; i < y->kept_cap; i++) {
            if (y->kept[i]) {
                e = kept_slot(t, cap, y->kept[i] & ~KEPT_FLAGS);
                *e = y->kept[i];
                c[e - t] = y->kept_cas[i];
            }
        }
        free(y->kept);
        free(y->kept_cas);
        y->kept = t;
        y->kept_cas = c;
        y->kept_cap = cap;
    }
    e = kept_slot(y->kept, y->kept_cap, h);
    y->kept_n += !*e;
    *e = h | (found ? KEPT_FOUND : 0)
         | (it->la >= y->since_la[y->s] ? KEPT_TOUCHED : 0);
    y->kept_cas[e - y->kept] = it->cas;
    return 0;
}

static void kept_free(memsess_sync_t *y)
{
    free(y->kept);
    free(y->kept_cas);
    y->kept = y->kept_cas = NULL;
    y->kept_cap = y->kept_n = 0;
}

/* After a delta sync, for a key it never wrote nor compared on target t:
 * its cas on S as listed, when S kept it as new as its authority's (found
 * there, untouched on both sides: else it was compared), or NULL. */
static const uint64_t *kept_mine(const memsess_sync_t *y, int t,
                                 const memsess_dump_item_t *it)
{
    const apr_uint64_t *e;

    if (!y->delta || t != y->s || !(e = kept_find(y, it))
        || !(*e & KEPT_FOUND) || !y->kept_cas[e - y->kept]) {
        return NULL;
    }
    return (const uint64_t *)&y->kept_cas[e - y->kept];
}

static void note_hot(memsess_sync_t *y, int here, int t, int list,
                     const memsess_dump_item_t *it, int active);

/* Key `it` at its authority `here`, which the new list places on S. */
static apr_status_t since_key(memsess_sync_t *y, int here, int t, int list,
                              const memsess_dump_item_t *it, char *err,
                              apr_size_t errlen)
{
    apr_uint64_t *e = t == y->s ? kept_find(y, it) : NULL;

    if (e) {
        *e |= KEPT_FOUND;
    }
    if (e && it->la < y->since_la[here] && !(*e & KEPT_TOUCHED)) {
        /* untouched on both sides since the outage; a user active in the
         * seconds before the sync is watched at the flip all the same */
        if (it->la >= apr_time_sec(y->began) - HOT_RECENT_S) {
            note_hot(y, here, t, list, it, 0);
        }
        return APR_SUCCESS;
    }
    if (written_at(y, t, it) && !changed(y, t, it)) {
        return APR_SUCCESS;   /* copied already, not written since */
    }
    y->stats.examined++;
    if (it->la >= apr_time_sec(y->began) - HOT_RECENT_S) {
        note_hot(y, here, t, list, it, y->round > 0);
    }
    return queue_copy(y, here, t, it, err, errlen);
}

/* A key of S that no authority listed (held_settle). */
typedef struct {
    memsess_dump_item_t it;   /* as S listed it */
    int                 at;   /* the authority that has it, or -1 */
} missed_t;

/* S listed again: its keys no authority listed, in y->missed. */
static void settle_note(memsess_sync_t *y, const memsess_dump_item_t *it)
{
    apr_uint64_t *e = kept_find(y, it);
    missed_t *m;

    if (!e || (*e & KEPT_FOUND)
        || apr_hash_get(y->missed_index, it->key, it->keylen)) {
        return;
    }
    m = &APR_ARRAY_PUSH(y->missed, missed_t);
    m->it = *it;
    m->at = -1;
    apr_hash_set(y->missed_index, apr_pstrmemdup(y->missed->pool, it->key,
                                                 it->keylen),
                 it->keylen, (void *)(apr_uintptr_t)y->missed->nelts);
}

static void settle_found(memsess_sync_t *y, int a, memcached_result_st *res)
{
    apr_uintptr_t k = (apr_uintptr_t)apr_hash_get(y->missed_index,
                                            memcached_result_key_value(res),
                                            memcached_result_key_length(res));

    if (k) {
        APR_ARRAY_IDX(y->missed, k - 1, missed_t).at = a;
    }
}

static apr_status_t pass_server(memsess_sync_t *y, int i, pass_e pass,
                                char *err, apr_size_t errlen);

/* The keys of S that no authority listed (see above): found by listing S
 * again, read at their authorities in multi-gets; copied when there, else
 * deleted from S. */
static apr_status_t held_settle(memsess_sync_t *y, apr_pool_t *p, char *err,
                                apr_size_t errlen)
{
    const char *keys[HOT_BATCH];
    size_t lens[HOT_BATCH];
    apr_status_t rv = APR_SUCCESS;
    apr_size_t i, unfound = 0;
    int a, k, n;

    for (i = 0; i < y->kept_cap; i++) {
        unfound += y->kept[i] && !(y->kept[i] & KEPT_FOUND);
    }
    if (!unfound) {
        return APR_SUCCESS;
    }
    y->missed = apr_array_make(p, 16, sizeof(missed_t));
    y->missed_index = apr_hash_make(p);
    if ((rv = pass_server(y, y->s, PASS_SETTLE, err, errlen))
        != APR_SUCCESS) {
        return rv;
    }
    for (a = 0; a < y->nservers; a++) {
        if (a == y->s || !y->servers[a].in_now) {
            continue;
        }
        for (k = 0; k < y->missed->nelts;) {
            for (n = 0; k < y->missed->nelts && n < HOT_BATCH; k++) {
                missed_t *m = &APR_ARRAY_IDX(y->missed, k, missed_t);
                const char *id;
                apr_size_t idlen;
                int l, asked = 0;

                if (m->at >= 0 || !kind_of(y, &m->it, &id, &idlen)) {
                    continue;
                }
                place_all(y, id, idlen);
                for (l = 0; l < y->nlists; l++) {
                    const where_t *w = &y->where[l];

                    asked |= w->nnow && w->now[0] == a
                             && holds(w->next, w->nnext, y->s);
                }
                if (asked) {
                    keys[n] = m->it.key;
                    lens[n++] = m->it.keylen;
                }
            }
            if (n && (rv = mget_at(y, a, keys, lens, (size_t)n,
                                   settle_found, FETCH_TRIES, err, errlen))
                     != APR_SUCCESS) {
                return rv;
            }
        }
    }
    for (k = 0; k < y->missed->nelts && rv == APR_SUCCESS; k++) {
        missed_t *m = &APR_ARRAY_IDX(y->missed, k, missed_t);

        y->stats.examined++;
        if (stopped(y, err, errlen)) {
            return APR_EINTR;
        }
        /* at its authority, which the crawler passed by: compared as if
         * written there (with the expiry S has); gone from every one:
         * deleted */
        m->it.cas = 0;
        rv = m->at >= 0 ? copy_key(y, m->at, y->s, &m->it, err, errlen)
                        : delete_key(y, y->s, &m->it, err, errlen);
    }
    return rv;
}

/* Whether a list now places the key y->where holds on server i (as its
 * authority or a replica: requests read and write it there, and delete
 * it there at a logout). */
static int read_here(const memsess_sync_t *y, int i)
{
    int k;

    for (k = 0; k < y->nlists; k++) {
        if (holds(y->where[k].now, y->where[k].nnow, i)) {
            return 1;
        }
    }
    return 0;
}

/* What a listed key is to one_key(): in a rename, a key under the
 * namespace now is a source (copied from its authority, never deleted),
 * one under the next a target's copy; otherwise both. */
typedef enum {
    ROLE_BOTH = 3,
    ROLE_SOURCE = 1,
    ROLE_TARGET = 2
} role_e;

static apr_status_t one_key(memsess_sync_t *y, int i, pass_e pass,
                            const memsess_dump_item_t *it,
                            memsess_key_kind_e kind, const char *id,
                            apr_size_t idlen, role_e role, char *err,
                            apr_size_t errlen)
{
    int k, j, keep = 0, verify = 0, placed_here = 0, moved = 0;
    int done[MAX_PLACES], ndone = 0;
    memsess_sync_action_e act[MAX_LISTS];
    apr_status_t rv;

    if (pass == PASS_SETTLE) {
        settle_note(y, it);
        return APR_SUCCESS;
    }
    place_all(y, id, idlen);
    for (k = 0; k < y->nlists; k++) {
        where_t *w = &y->where[k];

        placed_here |= holds(w->next, w->nnext, i);
        act[k] = memsess_sync_decide(kind, i, i, w->now, w->nnow, w->next,
                                     w->nnext);
    }
    if (role == ROLE_SOURCE && y->servers[i].fresh) {
        return APR_SUCCESS;   /* the old namespace on a new server: not
                               * read now, never ours to delete */
    }
    if (role & ROLE_TARGET && y->servers[i].fresh && pass != PASS_AFTER) {
        /* deleted unless some list keeps it there */
        for (k = 0; k < y->nlists; k++) {
            keep |= kind == MEMSESS_KEY_SESSION
                    && act[k] == MEMSESS_SYNC_SKIP;
            verify |= act[k] == MEMSESS_SYNC_VERIFY;
        }
        if (pass == PASS_SINCE && (keep || verify)) {
            /* to be found at its authority (or settled); its own
             * authority under a list: stays whatever the others hold */
            if (kept_note(y, it, keep) < 0) {
                apr_cpystrn(err, "out of memory", errlen);
                return APR_ENOMEM;
            }
            return APR_SUCCESS;
        }
        if (keep) {
            return APR_SUCCESS;
        }
        if (pass == PASS_SINCE) {
            y->stats.examined++;
        }
        if (verify) {
            return verify_key(y, i, act, it, err, errlen);
        }
        return delete_key(y, i, it, err, errlen);
    }
    if (kind != MEMSESS_KEY_SESSION) {
        return APR_SUCCESS;
    }
    if (role == ROLE_TARGET) {
        /* a copy under the next namespace: the last pass removes it where
         * no new list places it; a rebalance's delta pass looks for its
         * authority's (below) */
        if (pass == PASS_AFTER) {
            return y->final && !placed_here
                   ? queue_delete(y, i, it, err, errlen) : APR_SUCCESS;
        }
        goto target;
    }
    /* here as the authority: to every target placed, each once (itself
     * too when the copy has another name there) */
    for (k = 0; k < y->nlists; k++) {
        where_t *w = &y->where[k];

        for (j = 0; j < w->nnext; j++) {
            int t = w->next[j], d;

            if ((t == i && !y->rename) || !y->servers[t].target
                || (t == i ? w->nnow < 1 || w->now[0] != i   /* renamed */
                    : memsess_sync_decide(kind, i, t, w->now, w->nnow,
                                          w->next, w->nnext)
                      != MEMSESS_SYNC_COPY)) {
                continue;
            }
            for (d = 0; d < ndone && done[d] != t; d++) {
            }
            if (d < ndone || ndone == MAX_PLACES) {
                continue;
            }
            done[ndone++] = t;
            moved = 1;
            if (pass == PASS_AFTER && y->delta && it->la < y->since_la[i]
                && !written_at(y, t, it)) {
                /* a delta sync: untouched here since before the outage,
                 * never copied: what S kept is as new */
                rv = APR_SUCCESS;
            }
            else if (pass == PASS_AFTER) {
                y->stats.examined += y->delta;
                rv = after_key(y, i, t, 1, it, err, errlen);
            }
            else if (pass == PASS_SINCE) {
                rv = since_key(y, i, t, k, it, err, errlen);
            }
            else if (pass == PASS_FULL || changed(y, t, it)) {
                /* written while the sync ran, or used in the seconds
                 * before: an active user */
                if (pass == PASS_DELTA
                    || it->la >= apr_time_sec(y->began) - HOT_RECENT_S) {
                    note_hot(y, i, t, k, it, pass == PASS_DELTA);
                }
                rv = queue_copy(y, i, t, it, err, errlen);
            }
            else {
                rv = APR_SUCCESS;
            }
            if (rv != APR_SUCCESS) {
                return rv;
            }
        }
    }
    if (pass == PASS_AFTER) {
        /* the last pass: a copy the new lists place nowhere here goes
         * (a rebalance is given every list, so any such copy; a rejoin
         * only the copies it moved, replicas 0 / drop: left here they
         * would be stale the day the server they moved to goes); in a
         * rename, the old namespace is left as it is */
        if (y->final && !placed_here && (moved || y->s < 0)
            && role & ROLE_TARGET) {
            return queue_delete(y, i, it, err, errlen);
        }
        return APR_SUCCESS;
    }
    if (!(role & ROLE_TARGET)) {
        return APR_SUCCESS;
    }
target:
    /* a rebalance's target that lists read now: a copy the sync made or
     * checked here goes when its authority lost it since (a logout); so
     * does, in the first pass, a copy no list reads here now that the
     * sync did not make (left by an earlier change, or a write with a
     * list of before), when its authority has none: once the new list
     * reads it here, it would undo a logout (the soak's seed 918273: a session read back 4 s and two
     * logouts old, at a pool change) */
    if (y->s < 0 && placed_here
        && (pass == PASS_DELTA ? written_at(y, i, it) != NULL
                               : pass == PASS_FULL && !y->rename
                                 && !read_here(y, i)
                                 && !written_at(y, i, it))) {
        for (k = 0; k < y->nlists; k++) {
            where_t *w = &y->where[k];

            /* (a rename: its copy under the new name at its authority
             * goes too when the old name is gone there) */
            act[k] = w->nnow && (w->now[0] != i || y->rename)
                     && holds(w->next, w->nnext, i)
                     ? MEMSESS_SYNC_VERIFY : MEMSESS_SYNC_SKIP;
            if (w->nnow && w->now[0] == i && !y->rename) {
                return APR_SUCCESS;   /* its own authority */
            }
        }
        return verify_key(y, i, act, it, err, errlen);
    }
    return APR_SUCCESS;
}

/* One pass over server i's listing: each key of ours to one_key(). */
typedef struct {
    memsess_sync_t *y;
    int             i;
    pass_e          pass;
} pass_t;

static apr_status_t pass_item(void *baton, const memsess_dump_item_t *it,
                              char *err, apr_size_t errlen)
{
    pass_t *ps = baton;
    memsess_sync_t *y = ps->y;
    memsess_key_kind_e kind;
    const char *id;
    apr_size_t idlen;
    apr_status_t rv;

    role_e role = y->rename ? ROLE_SOURCE : ROLE_BOTH;
    memsess_dump_item_t named;

    y->stats.lines++;
    kind = kind_of(y, it, &id, &idlen);
    if (ps->pass == PASS_FULL && y->servers[ps->i].cls_lines && it->cls) {
        y->servers[ps->i].cls_lines[it->cls]++;
        y->servers[ps->i].cls_ours[it->cls] += kind != MEMSESS_KEY_OTHER;
    }
    if (!kind && y->rename
        && (kind = memsess_key_kind(y->ns_next, it->key, it->keylen, &id,
                                    &idlen))) {
        /* a copy under the next namespace: held by its name now */
        apr_size_t plen = strlen(y->ns_now);

        if (plen + idlen > MEMSESS_KEY_MAX) {
            return APR_SUCCESS;
        }
        named = *it;
        memcpy(named.key, y->ns_now, plen);
        memcpy(named.key + plen, id, idlen);
        named.key[plen + idlen] = '\0';
        named.keylen = plen + idlen;
        it = &named;
        id = named.key + plen;
        role = ROLE_TARGET;
    }
    if (kind) {
        if (kind == MEMSESS_KEY_SESSION && it->exp > 0 && it->la > 0
            && it->exp - it->la > y->lifetime) {
            y->lifetime = it->exp - it->la;
        }
        y->stats.listed++;
        y->stats.examined += !y->delta;
        rv = one_key(y, ps->i, ps->pass, it, kind, id, idlen, role, err,
                     errlen);
        if (rv != APR_SUCCESS) {
            return rv;
        }
        progress(y, 0);
    }
    return APR_SUCCESS;
}

/* A pass over one server ended (rv): its last batch written, or dropped
 * when it failed. */
static apr_status_t batch_end(memsess_sync_t *y, apr_status_t rv, char *err,
                              apr_size_t errlen)
{
    if (rv == APR_SUCCESS) {
        return copies_flush(y, err, errlen);
    }
    if (y->batch) {
        y->batch->n = y->batch->nv = y->batch->nd = 0;
        apr_pool_clear(y->batch->pool);
    }
    return rv;
}

/* Lists server i (its slab classes in `classes`, NULL: all) and acts on
 * each key of ours. */
static apr_status_t pass_classes(memsess_sync_t *y, int i, pass_e pass,
                                 const char *classes, char *err,
                                 apr_size_t errlen)
{
    apr_pool_t *p;
    apr_status_t rv;
    pass_t ps;

    ps.y = y;
    ps.i = i;
    ps.pass = pass;
    apr_pool_create(&p, y->pool);
    rv = memsess_dump_classes(p, y->servers[i].host, y->servers[i].port,
                              y->servers[i].name, classes, y->spec->timeout,
                              y->spec->stop, pass_item, &ps, err, errlen);
    rv = batch_end(y, rv, err, errlen);
    apr_pool_destroy(p);
    progress(y, 1);
    return rv;
}

static apr_status_t pass_server(memsess_sync_t *y, int i, pass_e pass,
                                char *err, apr_size_t errlen)
{
    return pass_classes(y, i, pass, NULL, err, errlen);
}

/* What a later pass looks at on a server is what was written there since
 * the previous one began, and, on a target, the copies the sync made
 * there (a logout at their authority takes them away).  The first is
 * what the server's own log of writes tells (memsess_feed.c), opened
 * before the first pass lists it; the second lies in the slab classes
 * that hold sessions (net_classes()).  So a later pass reads the keys its
 * log gave and lists those classes only, not a whole server of another
 * application's keys.  A server that has no such log, or a rename, is
 * listed whole in every pass. */
static int feed_keep(void *baton, const char *key, apr_size_t len)
{
    const memsess_sync_t *y = baton;
    const char *id;
    apr_size_t idlen;

    return memsess_key_kind(y->ns_now, key, len, &id, &idlen)
           == MEMSESS_KEY_SESSION;
}

static void feeds_open(memsess_sync_t *y)
{
    int i;

    if (!y->spec->feed || y->rename || y->delta) {
        return;
    }
    for (i = 0; i < y->nservers; i++) {
        server_t *sv = &y->servers[i];
        char why[256];

        if (sv->in_now && !sv->fresh && !sv->feed) {
            sv->feed = memsess_feed_open(y->pool, sv->host, sv->port,
                                         sv->name, y->spec->timeout,
                                         y->spec->feed, y->spec->feed_min,
                                         feed_keep, y, why, sizeof(why));
            y->stats.feeds += sv->feed != NULL;
        }
    }
    /* with a server watched, every server's first listing counts its
     * classes (net_classes() needs them all) */
    for (i = 0; y->stats.feeds && i < y->nservers; i++) {
        y->servers[i].cls_lines = apr_pcalloc(y->pool, MEMSESS_DUMP_CLASSES
                                                       * sizeof(apr_uint64_t));
        y->servers[i].cls_ours = apr_pcalloc(y->pool, MEMSESS_DUMP_CLASSES
                                                      * sizeof(apr_uint64_t));
    }
}

/* The slab classes of server i that a later pass lists (NULL: all).
 * memcached's crawler passes by an item that is in use or whose lock
 * another key holds as it gets there, so the first listing may have
 * missed a session nobody wrote since (not in the log of writes either):
 * an authority's are listed once more.  A target's are listed in every
 * pass: the copies made there are checked against their authorities.
 * Left out: a class where the first listing found 1,000 keys or more on
 * server i and none of ours on any server.  A copy goes to the class its
 * size makes (one holding sessions at its authority), a session written
 * since is in the log whatever its class, and a session the crawler
 * passed by there would have been the only one of its class. */
#define NET_OTHERS_MIN (1000)
static const char *net_classes(memsess_sync_t *y, int i, apr_pool_t *p)
{
    const server_t *sv = &y->servers[i];
    char *list = apr_pcalloc(p, MEMSESS_DUMP_CLASSES * 4);
    apr_size_t n = 0;
    int c, j, out = 0;

    for (c = 1; c < MEMSESS_DUMP_CLASSES; c++) {
        apr_uint64_t ours = 0;

        for (j = 0; j < y->nservers; j++) {
            ours += y->servers[j].cls_ours ? y->servers[j].cls_ours[c] : 1;
        }
        if (sv->cls_lines[c] >= NET_OTHERS_MIN && !ours) {
            out++;
            continue;
        }
        n += (apr_size_t)apr_snprintf(list + n, MEMSESS_DUMP_CLASSES * 4 - n,
                                      "%s%d", n ? "," : "", c);
    }
    return out ? list : NULL;
}

/* Server i in a delta pass or the first pass after the flip: by its log
 * of writes when that lost nothing since the previous pass, and a listing
 * of the classes that hold sessions (net_classes()); else by a whole
 * listing. */
static apr_status_t pass_server_fed(memsess_sync_t *y, int i, pass_e pass,
                                    char *err, apr_size_t errlen)
{
    server_t *sv = &y->servers[i];
    apr_array_header_t *keys;
    apr_pool_t *p;
    apr_status_t rv;
    pass_t ps;
    char why[256];

    if (!sv->feed || !(pass == PASS_DELTA || (pass == PASS_AFTER
                                              && !y->final))) {
        return pass_server(y, i, pass, err, errlen);
    }
    apr_pool_create(&p, y->pool);
    if (memsess_feed_take(sv->feed, p, &keys, why, sizeof(why))
            != APR_SUCCESS) {
        y->stats.feed_lost++;
        apr_pool_destroy(p);
        sv->netted = 1;
        return pass_server(y, i, pass, err, errlen);
    }
    if (!sv->netted || (sv->target && pass == PASS_DELTA)) {
        rv = pass_classes(y, i, pass, net_classes(y, i, p), err, errlen);
        if (rv != APR_SUCCESS) {
            apr_pool_destroy(p);
            return rv;
        }
        sv->netted = 1;
    }
    ps.y = y;
    ps.i = i;
    ps.pass = pass;
    y->stats.fed += (apr_uint64_t)keys->nelts;
    rv = stopped(y, err, errlen) ? APR_EINTR
         : memsess_feed_items(sv->feed, keys, pass_item, &ps, err, errlen);
    rv = batch_end(y, rv, err, errlen);
    apr_pool_destroy(p);
    progress(y, 1);
    return rv;
}

/* Fresh targets first (their stale keys go), then every authority. */
static apr_status_t pass_all(memsess_sync_t *y, pass_e pass, char *err,
                             apr_size_t errlen)
{
    apr_status_t rv = APR_SUCCESS;
    int i;

    for (i = 0; pass != PASS_AFTER && i < y->nservers && rv == APR_SUCCESS;
         i++) {
        if (y->servers[i].fresh) {
            rv = pass_server(y, i, pass, err, errlen);
        }
    }
    for (i = 0; i < y->nservers && rv == APR_SUCCESS; i++) {
        if (!y->servers[i].fresh && y->servers[i].in_now) {
            rv = pass_server_fed(y, i, pass, err, errlen);
        }
    }
    return rv;
}

/* Links the hot sessions of one key (watched under several targets, or
 * lists) once they are all noted, for hot_sweep(). */
static void hot_link(memsess_sync_t *y)
{
    int k;

    if (y->hot_by_key) {
        return;
    }
    y->hot_by_key = apr_hash_make(y->pool);
    for (k = y->nhot - 1; k >= 0; k--) {
        hot_t *h = &y->hot[k];

        h->next_same = apr_hash_get(y->hot_by_key, h->it.key, h->it.keylen);
        apr_hash_set(y->hot_by_key, h->it.key, h->it.keylen, h);
    }
    for (k = 0; k < y->nhot; k++) {
        hot_t *h = &y->hot[k], *o;

        h->lead = 1;
        for (o = apr_hash_get(y->hot_by_key, h->it.key, h->it.keylen); o;
             o = o->next_same) {
            h->lead &= o == h || o > h || o->here != h->here;
            h->active |= o->active;   /* a key is swept as one */
        }
    }
}

/* The cas of every hot session (all, or those written during a delta
 * pass) at its old authority now, into now_cas (0: not there): one mget
 * per server and HOT_BATCH keys, not a round trip per key, so that
 * thousands of them are looked at within milliseconds.  A read that
 * times out is tried `tries` times in all (1 after the flip, where
 * requests wait). */
static void hot_found(memsess_sync_t *y, int i, memcached_result_st *res)
{
    hot_t *h = apr_hash_get(y->hot_by_key, memcached_result_key_value(res),
                            memcached_result_key_length(res));

    for (; h; h = h->next_same) {
        if (h->here == i) {
            h->now_cas = memcached_result_cas(res);
        }
    }
}

static apr_status_t hot_sweep(memsess_sync_t *y, int all, int tries,
                              char *err, apr_size_t errlen)
{
    const char *keys[HOT_BATCH];
    size_t lens[HOT_BATCH];
    apr_status_t rv;
    int i, k, n;

    hot_link(y);
    for (k = 0; k < y->nhot; k++) {
        if (all || y->hot[k].active) {
            y->hot[k].now_cas = 0;
        }
    }
    for (i = 0; i < y->nservers; i++) {
        for (k = 0; k < y->nhot;) {
            for (n = 0; k < y->nhot && n < HOT_BATCH; k++) {
                if (y->hot[k].here == i && y->hot[k].lead
                    && (all || y->hot[k].active)) {
                    keys[n] = y->hot[k].it.key;
                    lens[n++] = y->hot[k].it.keylen;
                }
            }
            if (!n) {
                break;
            }
            if ((rv = mget_at(y, i, keys, lens, (size_t)n, hot_found,
                              tries, err, errlen)) != APR_SUCCESS) {
                return rv;
            }
        }
    }
    return APR_SUCCESS;
}

/* The cas the authority had when the sync last brought a hot session to
 * its target (0: never). */
static uint64_t hot_copied(const memsess_sync_t *y, const hot_t *h)
{
    const mine_t *m = written_at(y, h->t, &h->it);

    /* a delta sync left it alone: as its authority listed it */
    return m ? m->authority : y->delta ? h->it.cas : 0;
}

/* Delta passes until one copies nothing (or MAX_DELTAS: under load the
 * active sessions always change; the watch after the flip covers them):
 * a pass looks again only at keys whose authority's cas changed. */
#define MAX_DELTAS (2)

/* One round of a delta sync (see since_key). */
static apr_status_t pass_since(memsess_sync_t *y, char *err,
                               apr_size_t errlen)
{
    apr_status_t rv;
    apr_pool_t *p;

    kept_free(y);
    apr_pool_create(&p, y->pool);
    rv = pass_all(y, PASS_SINCE, err, errlen);
    if (rv == APR_SUCCESS) {
        rv = held_settle(y, p, err, errlen);
    }
    y->missed = NULL;
    y->missed_index = NULL;
    apr_pool_destroy(p);
    y->round++;
    return rv;
}

/* Whether S is still the process that went down, and `since` on the
 * clock of S and of every authority (their "stats" time): y->delta, or
 * y->mode says why not. */
static void clocks_read(memsess_sync_t *y)
{
    int i;

    y->since_la = apr_pcalloc(y->pool, y->nservers * sizeof(apr_int64_t));
    for (i = 0; i < y->nservers; i++) {
        memcached_stat_st *st;
        memcached_return_t rc = MEMCACHED_FAILURE;
        memcached_st *mc;
        apr_int64_t their, started;

        if (i != y->s && !y->servers[i].in_now) {
            continue;
        }
        st = (mc = conn(y, i)) ? memcached_stat(mc, NULL, &rc) : NULL;
        if (!st || !memcached_success(rc) || !st->time) {
            y->mode = apr_psprintf(y->pool, "the clock of %s is unreadable",
                                   y->servers[i].name);
            memcached_stat_free(NULL, st);
            return;
        }
        their = (apr_int64_t)st->time;
        started = their - (apr_int64_t)st->uptime;
        if (i == y->s && ((apr_int64_t)st->pid != y->spec->pid
                          || started - y->spec->started > 1
                          || y->spec->started - started > 1)) {
            y->mode = "it is no longer the memcached process that went down";
            memcached_stat_free(NULL, st);
            return;
        }
        y->since_la[i] = memsess_sync_their_secs(y->spec->since,
                                                 apr_time_now(), their);
        memcached_stat_free(NULL, st);
    }
    y->delta = 1;
}

/* What the first pass will list: the keys its servers hold now (their
 * curr_items), for the expected end the status page shows.  Read on a
 * detached thread with connections and a copy of the addresses of its
 * own: a server slow to answer "stats" (or one that does not speak it)
 * never holds the sync up, nor its end.  The sync and the thread each hold
 * a reference; the last to let go frees it. */
static void expect_release(struct expect *e)
{
    int i;

    if (__atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL)) {
        return;
    }
    for (i = 0; i < e->n; i++) {
        free(e->hosts[i]);
    }
    free(e->hosts);
    free(e->ports);
    free(e);
}

static void *expect_run(void *data)
{
    struct expect *e = data;
    apr_uint64_t n = 0;
    int i;

    for (i = 0; i < e->n; i++) {
        memcached_return_t rc = MEMCACHED_FAILURE;
        memcached_stat_st *st;
        memcached_st *mc = memcached_create(NULL);

        if (!mc) {
            continue;
        }
        memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT,
                               e->timeout_ms);
        memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT,
                               e->timeout_ms);
        memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 0);
        st = memcached_server_add(mc, e->hosts[i], e->ports[i])
                 == MEMCACHED_SUCCESS ? memcached_stat(mc, NULL, &rc) : NULL;
        if (st && memcached_success(rc)) {
            n += st->curr_items;
        }
        memcached_stat_free(NULL, st);
        memcached_free(mc);
    }
    __atomic_store_n(&e->expected, n, __ATOMIC_RELEASE);
    expect_release(e);
    return NULL;
}

/* Starts the reading for the servers the first pass lists; nothing when
 * it cannot (no expected end: nothing else changes). */
static void expect_start(memsess_sync_t *y)
{
    struct expect *e = calloc(1, sizeof(*e));
    pthread_attr_t attr;
    pthread_t th;
    int i, ok = e != NULL;

    if (ok) {
        e->refs = 2;
        e->timeout_ms = (apr_uint64_t)apr_time_as_msec(y->spec->timeout);
        e->timeout_ms += !e->timeout_ms;
        e->hosts = calloc((size_t)y->nservers, sizeof(*e->hosts));
        e->ports = calloc((size_t)y->nservers, sizeof(*e->ports));
        ok = e->hosts && e->ports;
    }
    for (i = 0; ok && i < y->nservers; i++) {
        if (y->servers[i].fresh || y->servers[i].in_now) {
            e->ports[e->n] = y->servers[i].port;
            ok = (e->hosts[e->n++] = strdup(y->servers[i].host)) != NULL;
        }
    }
    if (ok && !pthread_attr_init(&attr)) {
        ok = !pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED)
             && !pthread_create(&th, &attr, expect_run, e);
        pthread_attr_destroy(&attr);
    }
    else {
        ok = 0;
    }
    if (!ok) {
        if (e) {
            e->refs = 1;
            expect_release(e);
        }
        return;
    }
    y->expect = e;
}

static void expect_drop(memsess_sync_t *y)
{
    if (y->expect) {
        expect_release(y->expect);
        y->expect = NULL;
    }
}

apr_status_t memsess_sync_before(memsess_sync_t *y, char *err,
                                 apr_size_t errlen)
{
    apr_uint64_t seed;
    apr_status_t rv;
    int n;

    if (apr_generate_random_bytes((unsigned char *)&seed, sizeof(seed))
            != APR_SUCCESS) {
        seed = (apr_uint64_t)apr_time_now() * APR_UINT64_C(0x9e3779b97f4a7c15);
    }
    memsess_written_destroy(y->written);
    if (!(y->written = memsess_written_create(seed))) {
        apr_cpystrn(err, "out of memory", errlen);
        return APR_ENOMEM;
    }
    y->began = y->delta_began = apr_time_now();
    expect_drop(y);
    y->stats.expected = 0;
    expect_start(y);
    if (y->spec->since && y->s >= 0) {
        clocks_read(y);
    }
    if (y->delta) {
        if (apr_generate_random_bytes((unsigned char *)&y->kept_seed,
                                      sizeof(y->kept_seed)) != APR_SUCCESS) {
            y->kept_seed = (apr_uint64_t)apr_time_now();
        }
        y->kept_seed ^= APR_UINT64_C(0xcbf29ce484222325);
        rv = pass_since(y, err, errlen);
    }
    else {
        feeds_open(y);
        rv = pass_all(y, PASS_FULL, err, errlen);
    }
    for (n = 0; rv == APR_SUCCESS && n < MAX_DELTAS; n++) {
        apr_time_t began = apr_time_now();
        apr_uint64_t copied = y->stats.copied;

        rv = y->delta ? pass_since(y, err, errlen)
                      : pass_all(y, PASS_DELTA, err, errlen);
        y->delta_began = began;
        if (y->stats.copied == copied) {
            break;
        }
    }
    /* a pass over every server takes a while: the active sessions written
     * since the sync copied them, once more, just before the flip (one
     * read of their authorities finds them: the last copy is then a few
     * milliseconds old, not a pass over every key) */
    if (rv == APR_SUCCESS && y->nhot) {
        rv = hot_sweep(y, 1, FETCH_TRIES, err, errlen);
    }
    for (n = 0; rv == APR_SUCCESS && n < y->nhot; n++) {
        hot_t *h = &y->hot[n];

        if (h->now_cas != hot_copied(y, h)) {
            rv = copy_key(y, h->here, h->t, &h->it, err, errlen);
        }
    }
    y->stats.watched = (apr_uint64_t)y->nhot;
    return rv;
}

/* After the flip, key `it` at its old authority `here` (the new list
 * places it on target t, called S below).  Requests that still had the
 * old list may have written it here after the last delta pass read it.
 * A value here that differs is such a late write only while S still holds
 * what the sync wrote (its cas unchanged): once a request with the new
 * list wrote S, S is the newer, whatever here holds.  Even where the new
 * list keeps here as a replica (successor), here is no guide: libmemcached
 * sends a replica as a quiet set that waits in the request's buffer until
 * its connection is closed, after its lock is released, so here may still
 * show the value before a write S already has.  S gets it by cas.  A
 * session S lacks that the sync never wrote there was created here around
 * the flip: S gets it by add.  In the last pass, a copy the new list
 * places nowhere is removed from here. */
static apr_status_t after_key(memsess_sync_t *y, int here, int t,
                              int settle, const memsess_dump_item_t *it,
                              char *err, apr_size_t errlen)
{
    const mine_t *m = written_at(y, t, it);
    const uint64_t *mine = m ? &m->s : kept_mine(y, t, it);
    memcached_return_t rc;
    uint64_t cas_s = 0, cas_here;
    char *value = NULL;
    apr_size_t vlen = 0;
    time_t exp = expiry(it->exp);
    int newer;

    char tk[MEMSESS_KEY_MAX + 1];
    apr_size_t tl = tname(y, it, tk);

    if ((!it->cas || changed(y, t, it)) && exp != (time_t)-1 && tl) {
        rc = fetch(y, t, tk, tl);
        if (rc == MEMCACHED_SUCCESS) {
            cas_s = memcached_result_cas(y->res);
            vlen = memcached_result_length(y->res);
            value = hold(y, memcached_result_value(y->res), vlen);
            if (!value) {
                apr_cpystrn(err, "out of memory", errlen);
                return APR_ENOMEM;
            }
        }
        else if (rc != MEMCACHED_NOTFOUND) {
            return fail(y, t, "cannot read", rc, err, errlen);
        }
        rc = fetch(y, here, it->key, it->keylen);
        if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND) {
            return fail(y, here, "cannot read", rc, err, errlen);
        }
        newer = rc == MEMCACHED_SUCCESS
                && (cas_s ? vlen != memcached_result_length(y->res)
                            || memcmp(value, memcached_result_value(y->res),
                                      vlen)
                          : !mine)   /* S lacks it: created around the flip,
                                      * unless a logout deleted our copy */
                && (!cas_s || (mine && *mine == cas_s));
        if (newer) {
            cas_here = memcached_result_cas(y->res);
            /* S unchanged since the sync wrote it: whatever differs here
             * was written after that, and is newer (the cas on S lets a
             * write that reaches S first win).  S lacks it: a new
             * request's quiet replica here (a creation, a logout) may not
             * have landed yet, so it is read again a little later */
            if (settle && !(mine && cas_s && *mine == cas_s)) {
                apr_sleep(SETTLE_US);
            }
            rc = fetch(y, here, it->key, it->keylen);
            if (rc == MEMCACHED_SUCCESS
                && memcached_result_cas(y->res) == cas_here) {
                rc = put_t(y, t, tk, tl,
                           memcached_result_value(y->res),
                           memcached_result_length(y->res),
                           memcached_result_flags(y->res), exp, cas_s);
                if (put_done(y, t, it, cas_here, rc, err, errlen)
                    != APR_SUCCESS) {
                    return APR_EGENERAL;
                }
            }
            else if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND) {
                return fail(y, here, "cannot read", rc, err, errlen);
            }
        }
    }
    return APR_SUCCESS;
}

/* The first server of `name` under a placed list, as ours (-1: none). */
static int first_of(const memsess_place_t *pl, const int *ids,
                    const char *name, apr_size_t len)
{
    int w[MAX_PLACES];

    return memsess_place_key(pl, name, len, w, MAX_PLACES) ? ids[w[0]] : -1;
}

/* php-memcached's lock of session id under namespace ns,
 * "<ns>lock.<id>", into lock (MEMSESS_KEY_MAX + 8 bytes), its length in
 * *len: the server a list (pl, its servers as ours) takes it on, -1 for
 * none. */
#define LOCK_NAME_MAX (MEMSESS_KEY_MAX + 8)
static int lock_at(const char *ns, const memsess_place_t *pl, const int *ids,
                   const char *id, apr_size_t idlen, char *lock,
                   apr_size_t *len)
{
    apr_size_t nl = strlen(ns);

    *len = (apr_size_t)apr_snprintf(lock, LOCK_NAME_MAX, "%s%s%.*s", ns,
                                    MEMSESS_LOCK_PREFIX, (int)idlen, id);
    return first_of(pl, ids, lock + nl, *len - nl);
}

/* One hot session whose old authority was written: brought over under the
 * session's php-memcached lock in the new list (see watch_hot). */
static apr_status_t hot_bring(memsess_sync_t *y, hot_t *h, char *err,
                              apr_size_t errlen)
{
    list_t *L = &y->lists[h->list];
    char lock[LOCK_NAME_MAX];
    apr_size_t len = 0;
    const char *id;
    apr_size_t idlen;
    apr_status_t rv;
    int got = 0, at = -1;

    if (kind_of(y, &h->it, &id, &idlen)
        && (at = lock_at(y->ns_next, L->next, L->next_id, id, idlen, lock,
                         &len)) >= 0
        && conn(y, at)) {
        got = memcached_add(y->servers[at].mc, lock, len, "1", 1,
                            (time_t)2, 0) == MEMCACHED_SUCCESS;
    }
    h->it.la = apr_time_sec(apr_time_now());   /* always looked at */
    h->it.cas = 0;
    /* settled even under the lock when the target changed since the sync
     * wrote it (after_key decides): a request of the new list may have
     * let go of the lock with its replica write to here still on its way */
    rv = after_key(y, h->here, h->t, 1, &h->it, err, errlen);
    if (got) {
        memcached_delete(y->servers[at].mc, lock, len, 0);
    }
    return rv;
}

/* Right after the flip, the sessions written while the sync ran (their
 * users are active) are watched for HOT_WATCH: first those written at the
 * old authority since the sync copied them (a request that still had the
 * old list), then each time one is written there again.  One mget per
 * server reads them all (hot_sweep), so a write is seen within a
 * millisecond or two; those only used in the seconds before the sync
 * (thousands of 1 KB values: 6-8 ms a sweep) are read as often as reading
 * them takes, so that they take at most half the time.  Such a write is
 * brought over under the session's php-memcached lock in the new list:
 * its user's next request, which reads the new place, starts only once
 * the old one has answered, so the lock is free, and then waits for it.
 * The lock is taken on the server php-memcached checks it on, through our
 * own connection: libmemcached's answers to a handle with replicas fall
 * out of step. */
static apr_status_t watch_hot(memsess_sync_t *y, char *err, apr_size_t errlen)
{
    apr_time_t until = memsess_mono_now() + HOT_WATCH, next_all = 0;
    apr_status_t rv = APR_SUCCESS;
    int k, first = 1;

    for (k = 0; k < y->nhot; k++) {
        y->hot[k].seen = hot_copied(y, &y->hot[k]);
    }
    while (rv == APR_SUCCESS && y->nhot && (first || memsess_mono_now() < until)
           && !stopped(y, err, errlen)) {
        apr_time_t t0 = memsess_mono_now();
        int all = t0 >= next_all;

        rv = hot_sweep(y, all, 1, err, errlen);   /* at the flip: no waits */
        if (all) {
            next_all = 2 * memsess_mono_now() - t0;
        }
        for (k = 0; k < y->nhot && rv == APR_SUCCESS; k++) {
            hot_t *h = &y->hot[k];

            if (h->now_cas != h->seen) {
                h->seen = h->now_cas;
                rv = hot_bring(y, h, err, errlen);
            }
        }
        first = 0;
        apr_sleep(500);
    }
    return rv;
}

apr_status_t memsess_sync_after_hot(memsess_sync_t *y, char *err,
                                    apr_size_t errlen)
{
    y->final = 0;
    return watch_hot(y, err, errlen);
}

apr_status_t memsess_sync_after(memsess_sync_t *y, int final, char *err,
                                apr_size_t errlen)
{
    apr_status_t rv = APR_SUCCESS;

    y->final = final;
    if (!final) {
        rv = watch_hot(y, err, errlen);
    }
    return rv == APR_SUCCESS ? pass_all(y, PASS_AFTER, err, errlen) : rv;
}

/* ------------------------------------------------------------------ */
/* At the flip                                                        */

/* A request that got the old list just before the flip writes the old
 * authority as it ends, and its user's next request, with the new list,
 * reads the target: however fast the watch above, that next request can
 * come first.  So the active sessions whose reads move are guarded by
 * php-memcached's own lock ("lock.<id>", on the first server of its
 * placement; libmemcached does not replicate an add):
 *   - where the new list places the lock elsewhere than the old one, it
 *     is taken there before the group's flip time is written (no request
 *     looks for it there yet, no instance publishes before) and kept until the requests that had the old list are done
 *     with the session (FLIP_SETTLE for them to take theirs, then their
 *     lock free); the session is brought over and the lock let go.  The
 *     user's next request waits on it meanwhile (php-memcached tries again
 *     after 150 ms) instead of reading the copy from before;
 *   - where both lists lock on one server, a request of either list holds
 *     it: each time one lets it go (or a write lands at the old authority),
 *     the sync takes it at once (the user's next request starts only once
 *     that one has answered), brings the session over, and lets go; so it
 *     does with a lock it held once that is let go.
 * A lock is held FLIP_HOLD after the flip at most, well within the
 * 5 tries of php-memcached (750 ms): no request fails.  The watch of the
 * old places goes on until FLIP_WATCH after it: the other instances of a
 * group publish up to 250 ms after the holder (memsess_flip_follow), and
 * their requests of before that write the old places (seen in the soak:
 * followers 124 and 375 ms late, each of their users' next request at
 * another instance reading the copy of before).  A copy is only made
 * while the target still holds what the sync wrote (after_key). */

#define FLIP_TAKE     apr_time_from_msec(50)   /* taking locks, at most */
#define FLIP_SETTLE   apr_time_from_msec(50)   /* requests that got the old
                                                * list have their lock */
#define FLIP_HOLD     apr_time_from_msec(250)  /* the most a lock is ours */
#define FLIP_WATCH    apr_time_from_msec(600)  /* writes at the old place
                                                * watched for: the others
                                                * publish up to 250 ms after
                                                * the flip, and their
                                                * requests of before end */
#define FLIP_POLL     (200)                    /* us between looks */
#define FLIP_WATCH_POLL (2000)                 /* ... once none is held */
#define FLIP_LOCK_EXP ((time_t)2)              /* if the process dies */

typedef struct flip_guard {
    hot_t      *h;
    char        lock[LOCK_NAME_MAX];   /* <ns next>lock.<id>: ours */
    apr_size_t  len;
    char        lock_old[LOCK_NAME_MAX];   /* <ns now>lock.<id>: the
                                                  * old list's requests' */
    apr_size_t  len_old;
    int         lold, lnew;   /* the lock's server under each list */
    int         held;         /* ours at lnew (taken before the flip) */
    int         held_old;     /* ours at lold, from before `done` to the
                               * flip */
    int         want_old;     /* ... and not taken yet: a request had it */
    int         taken;        /* the last look: taken at lold */
    int         seen;         /* taken at lold, or written at the old
                               * authority, since the last copy */
    int         checked;      /* brought over at least once */
    int         done;
    int         found;        /* the last look: at the old authority */
    uint64_t    cas;          /* its cas there (0: none, or not looked) */
    int         looked;
} guard_t;

memsess_flip_e memsess_sync_flip_step(int held, int taken, int seen,
                                      int checked, int settled, int last)
{
    if (taken) {
        /* a request is at it: wait for it to let go */
        return last ? MEMSESS_FLIP_DONE : MEMSESS_FLIP_WAIT;
    }
    if (held) {
        return settled || last ? MEMSESS_FLIP_COPY : MEMSESS_FLIP_WAIT;
    }
    if (seen || !checked) {
        return MEMSESS_FLIP_TAKE;
    }
    return last ? MEMSESS_FLIP_DONE : MEMSESS_FLIP_WAIT;
}

static apr_status_t guard_copy(memsess_sync_t *y, guard_t *g, char *err,
                               apr_size_t errlen);
static void guard_release_old(memsess_sync_t *y, guard_t *g);

int memsess_sync_hold_hot(memsess_sync_t *y, int *guarded)
{
    int k, nheld = 0;

    memsess_sync_unhold(y);
    y->nguards = 0;
    y->guard_index = apr_hash_make(y->pool);
    y->guard_keys_index = apr_hash_make(y->pool);
    y->guarded_at = memsess_mono_now();
    *guarded = 0;
    if (!y->nhot) {
        return 0;
    }
    y->guards = apr_palloc(y->pool, y->nhot * sizeof(guard_t));
    y->guard_keys = apr_palloc(y->pool, 2 * y->nhot * sizeof(char *));
    y->guard_lens = apr_palloc(y->pool, 2 * y->nhot * sizeof(size_t));
    for (k = 0; k < y->nhot; k++) {
        hot_t *h = &y->hot[k];
        const list_t *L = &y->lists[h->list];
        guard_t *g = &y->guards[y->nguards];
        const char *id;
        apr_size_t idlen;

        /* only where reads move: t its first server under the new list */
        if (!kind_of(y, &h->it, &id, &idlen)
            || first_of(L->next, L->next_id, id, idlen) != h->t) {
            continue;
        }
        memset(g, 0, sizeof(*g));
        g->h = h;
        g->lnew = lock_at(y->ns_next, L->next, L->next_id, id, idlen,
                          g->lock, &g->len);
        g->lold = lock_at(y->ns_now, L->now, L->now_id, id, idlen,
                          g->lock_old, &g->len_old);
        if (g->lold < 0 || g->lnew < 0
            || apr_hash_get(y->guard_index, g->lock_old, g->len_old)) {
            continue;
        }
        apr_hash_set(y->guard_index, g->lock_old, g->len_old, g);
        apr_hash_set(y->guard_keys_index, h->it.key, h->it.keylen, g);
        /* a lock of its own under the new list (elsewhere, or under
         * another name): ours before any request looks for it there */
        if ((g->lold != g->lnew || y->rename)
            && memsess_mono_now() < y->guarded_at + FLIP_TAKE
            && conn(y, g->lnew)) {
            g->held = memcached_add(y->servers[g->lnew].mc, g->lock, g->len,
                                    "1", 1, FLIP_LOCK_EXP, 0)
                      == MEMCACHED_SUCCESS;
            nheld += g->held;
        }
        /* and its lock under the list in force (the same one, when both
         * lists place it on one server): until the flip, requests that
         * have that list wait rather than write the old place, which only
         * this process would bring over (its checker killed between
         * `done` and the flip, nobody did: 16 stale reads, the soak's seed
         * 31337077, t/50_peers.t); let go at the flip
         * (memsess_sync_flipped), or by memcached FLIP_LOCK_EXP after this
         * process died: those requests fail rather than read a copy from
         * before */
        if (memsess_mono_now() < y->guarded_at + FLIP_TAKE
            && conn(y, g->lold)) {
            g->held_old = memcached_add(y->servers[g->lold].mc, g->lock_old,
                                        g->len_old, "1", 1, FLIP_LOCK_EXP, 0)
                          == MEMCACHED_SUCCESS;
            g->want_old = !g->held_old;
        }
        y->nguards++;
    }
    /* a lock a request had: taken as it lets go (within FLIP_TAKE), and
     * what it wrote brought over under it, before `done` is written */
    for (;;) {
        int missing = 0;
        char err[256];

        for (k = 0; k < y->nguards; k++) {
            guard_t *g = &y->guards[k];

            if (!g->want_old) {
                continue;
            }
            if (memcached_add(y->servers[g->lold].mc, g->lock_old,
                              g->len_old, "1", 1, FLIP_LOCK_EXP, 0)
                != MEMCACHED_SUCCESS) {
                missing++;
                continue;
            }
            g->held_old = 1;
            g->want_old = 0;
            if (guard_copy(y, g, err, sizeof(err)) != APR_SUCCESS) {
                guard_release_old(y, g);   /* the flip's guard tries */
            }
            g->checked = g->seen = 0;   /* (the flip's guard looks anew) */
        }
        if (!missing || memsess_mono_now() >= y->guarded_at + FLIP_TAKE) {
            break;
        }
        apr_sleep(1000);
    }
    *guarded = y->nguards;
    return nheld;
}

/* The old list's lock let go: at the flip, requests that still have the
 * old list take it, and what they write there is watched for. */
static void guard_release_old(memsess_sync_t *y, guard_t *g)
{
    if (g->held_old) {
        memcached_delete(y->servers[g->lold].mc, g->lock_old, g->len_old, 0);
        g->held_old = 0;
    }
}

static void guard_release(memsess_sync_t *y, guard_t *g)
{
    if (g->held) {
        memcached_delete(y->servers[g->lnew].mc, g->lock, g->len, 0);
        g->held = 0;
    }
    guard_release_old(y, g);
}

void memsess_sync_unhold(memsess_sync_t *y)
{
    int k;

    for (k = 0; y && k < y->nguards; k++) {
        guard_release(y, &y->guards[k]);
    }
}

static void guard_found(memsess_sync_t *y, int i, memcached_result_st *res)
{
    const char *key = memcached_result_key_value(res);
    size_t len = memcached_result_key_length(res);
    guard_t *g = apr_hash_get(y->guard_index, key, len);

    if (g && g->lold == i) {
        g->taken = g->seen = 1;
    }
    g = apr_hash_get(y->guard_keys_index, key, len);
    if (g && g->h->here == i) {
        g->found = 1;
        g->seen |= g->looked && g->cas != memcached_result_cas(res);
        g->cas = memcached_result_cas(res);
        g->looked = 1;
    }
}

/* Which guarded locks are taken where requests with the old list take
 * them, and which sessions were written at their old authority since the
 * last look (their cas): one mget per server. */
static apr_status_t guards_look(memsess_sync_t *y, char *err,
                                apr_size_t errlen)
{
    int i, k;

    for (k = 0; k < y->nguards; k++) {
        y->guards[k].taken = y->guards[k].found = 0;
    }
    for (i = 0; i < y->nservers; i++) {
        apr_status_t rv;
        size_t n = 0;

        for (k = 0; k < y->nguards; k++) {
            guard_t *g = &y->guards[k];

            if (!g->done && g->lold == i) {
                y->guard_keys[n] = g->lock_old;
                y->guard_lens[n++] = g->len_old;
            }
            if (!g->done && g->h->here == i) {
                y->guard_keys[n] = g->h->it.key;
                y->guard_lens[n++] = g->h->it.keylen;
            }
        }
        if (!n) {
            continue;
        }
        if ((rv = mget_at(y, i, y->guard_keys, y->guard_lens, n,
                          guard_found, 1, err, errlen)) != APR_SUCCESS) {
            return rv;
        }
        for (k = 0; k < y->nguards; k++) {
            guard_t *g = &y->guards[k];

            if (!g->done && g->h->here == i && !g->found) {
                g->seen |= g->looked && g->cas;   /* gone: a logout */
                g->cas = 0;
                g->looked = 1;
            }
        }
    }
    return APR_SUCCESS;
}

/* The sync's copy of `it` on t is no more (deleted): what it wrote there
 * no longer decides whether a later copy is made (a session recreated at
 * its authority after a logout is brought over to a target that lacks it). */
static void forget(memsess_sync_t *y, int t, const memsess_dump_item_t *it)
{
    apr_uint64_t *e;

    if (y->written) {
        memsess_written_del(y->written, written_digest(y, t, it));
    }
    if (y->delta && t == y->s && (e = kept_find(y, it))) {
        y->kept_cas[e - y->kept] = 0;
    }
}

/* Brings one guarded session over (its lock ours: nobody writes it).  Gone
 * at its authority (a logout there, by a request of the old list, maybe
 * of another instance) while the target still holds what the sync wrote:
 * deleted there too, or the user's next request would read it back.
 * Under its lock a plain delete cannot take a newer write with it. */
static apr_status_t guard_copy(memsess_sync_t *y, guard_t *g, char *err,
                               apr_size_t errlen)
{
    memsess_dump_item_t *it = &g->h->it;
    memcached_return_t rc;

    it->la = apr_time_sec(apr_time_now());
    it->cas = 0;
    g->seen = 0;
    g->checked = 1;
    rc = fetch(y, g->h->here, it->key, it->keylen);
    if (rc == MEMCACHED_NOTFOUND) {
        const mine_t *m = written_at(y, g->h->t, it);
        const uint64_t *mine = m ? &m->s : kept_mine(y, g->h->t, it);
        char tk[MEMSESS_KEY_MAX + 1];
        apr_size_t tl = tname(y, it, tk);

        rc = tl ? fetch(y, g->h->t, tk, tl) : MEMCACHED_NOTFOUND;
        if (rc == MEMCACHED_SUCCESS && mine
            && *mine == memcached_result_cas(y->res)) {
            apr_status_t rv = delete_key(y, g->h->t, it, err, errlen);

            forget(y, g->h->t, it);
            return rv;
        }
        return rc == MEMCACHED_SUCCESS || rc == MEMCACHED_NOTFOUND
               ? APR_SUCCESS
               : fail(y, g->h->t, "cannot read", rc, err, errlen);
    }
    if (rc != MEMCACHED_SUCCESS) {
        return fail(y, g->h->here, "cannot read", rc, err, errlen);
    }
    return after_key(y, g->h->here, g->h->t, 0, it, err, errlen);
}

/* The item of session id under the namespace in force, and its name on a
 * target (0: none). */
static apr_size_t session_item(const memsess_sync_t *y, const char *id,
                               apr_size_t len, memsess_dump_item_t *it,
                               char *tk)
{
    apr_int64_t now = apr_time_sec(apr_time_now());

    memset(it, 0, sizeof(*it));
    it->keylen = (apr_size_t)apr_snprintf(it->key, sizeof(it->key), "%s%.*s",
                                          y->ns_now, (int)len, id);
    it->la = now;
    it->exp = now + (y->lifetime > 0 ? y->lifetime : 1440);
    return tname(y, it, tk);
}

/* A session requests used since the sync began, which may be in no list
 * of it (born, or written again after a logout, after its last listing):
 * brought from its authority under the old list to the new one, by the
 * same rules as after the flip (only where the target still holds what
 * the sync wrote, or nothing it wrote).  Its expiry is unknown (a get
 * does not tell): the longest a listed session had. */
typedef struct {
    memsess_sync_t *y;
    apr_status_t    rv;
    char           *err;
    apr_size_t      errlen;
    int             brought;
} bring_t;

int memsess_sync_recent_brought(const memsess_sync_t *y)
{
    return y ? y->recent_brought : 0;
}

static void bring_one(void *ctx, const char *id, apr_size_t len)
{
    bring_t *b = ctx;
    memsess_sync_t *y = b->y;
    memsess_dump_item_t it;
    char tk[MEMSESS_KEY_MAX + 1];
    apr_uint64_t before = y->stats.copied;
    int k;

    if (b->rv != APR_SUCCESS
        || strlen(y->ns_now) + len > MEMSESS_KEY_MAX) {
        return;
    }
    (void)session_item(y, id, len, &it, tk);
    place_all(y, id, len);
    for (k = 0; k < y->nlists && b->rv == APR_SUCCESS; k++) {
        const where_t *w = &y->where[k];

        if (w->nnow && w->nnext && (w->now[0] != w->next[0] || y->rename)) {
            b->rv = after_key(y, w->now[0], w->next[0], 0, &it, b->err,
                              b->errlen);
        }
    }
    b->brought += y->stats.copied > before;
}

int memsess_sync_late_brought(const memsess_sync_t *y)
{
    return y ? y->late_brought : 0;
}

/* A request running at the flip, with the old list: its session's first
 * server under each list, and the new one's copy as it was at the flip
 * (cas, 0: none). */
#define SNAP_MAX (1024)
#define SNAP_ID_MAX (256)   /* PHP's session ids: 256 characters at most */
typedef struct flip_snap {
    char         id[SNAP_ID_MAX];
    apr_size_t   len;
    int          list, here, t, worker;
    apr_uint64_t token;
    uint64_t     cas;
    int          done;
} snap_t;
/* The recent sessions are added this long before requests pass the gate
 * at its cap at the latest (a pass over them takes a few ms) */
#define BRING_MARGIN apr_time_from_msec(50)

/* A request running at the flip is waited for this long at most (its copy
 * made as it ends, wherever the gate is by then) */
#define SNAP_WAIT apr_time_from_sec(5)

typedef struct {
    memsess_sync_t            *y;
    const memsess_flip_wait_t *wait;
} snap_ctx_t;

/* A request running at the flip (worker >= 0), or a session a follower's
 * requests used under the old list (worker -1: brought over once they
 * are settled, see memsess_sync_flipped). */
static void snap_one(void *ctx, const char *id, apr_size_t len, int worker,
                     apr_uint64_t token)
{
    snap_ctx_t *c = ctx;
    memsess_sync_t *y = c->y;
    memsess_dump_item_t it;
    char tk[MEMSESS_KEY_MAX + 1];
    apr_size_t tl;
    int k;

    if (strlen(y->ns_now) + len > MEMSESS_KEY_MAX || len > SNAP_ID_MAX) {
        return;
    }
    if (!(tl = session_item(y, id, len, &it, tk))) {
        return;
    }
    place_all(y, id, len);
    for (k = 0; k < y->nlists && y->nsnaps < SNAP_MAX; k++) {
        const where_t *w = &y->where[k];
        memcached_return_t rc;
        snap_t *sn;

        if (!w->nnow || !w->nnext || (w->now[0] == w->next[0] && !y->rename)) {
            continue;
        }
        rc = fetch(y, w->next[0], tk, tl);
        if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND) {
            continue;   /* (left to the holder's guard and passes) */
        }
        /* read while the request still ran: its user's next request had
         * not begun, so nothing of theirs is in it */
        if (worker >= 0 && !c->wait->still(c->wait->baton, worker, token)) {
            return;
        }
        sn = &y->snaps[y->nsnaps++];
        memcpy(sn->id, id, len);
        sn->len = len;
        sn->list = k;
        sn->here = w->now[0];
        sn->t = w->next[0];
        sn->worker = worker;
        sn->token = token;
        sn->cas = rc == MEMCACHED_SUCCESS ? memcached_result_cas(y->res) : 0;
        sn->done = 0;
    }
}

static void snap_recent(void *ctx, const char *id, apr_size_t len)
{
    snap_one(ctx, id, len, -1, 0);
}

/* Once the request has ended: its session's copy at its old first server
 * onto the new one, if that is still as it was at the flip, under the
 * session's lock in the new list (a request of the new list at it, or the
 * holder's guard: left to them). */
static apr_status_t snap_copy(memsess_sync_t *y, const snap_t *sn, char *err,
                              apr_size_t errlen)
{
    const list_t *L = &y->lists[sn->list];
    apr_size_t lock_len, tl, vlen;
    char lock[LOCK_NAME_MAX], tk[MEMSESS_KEY_MAX + 1];
    memsess_dump_item_t it;
    memcached_return_t rc;
    apr_status_t rv = APR_SUCCESS;
    char *value = NULL;
    int at;

    if (!(tl = session_item(y, sn->id, sn->len, &it, tk))
        || (at = lock_at(y->ns_next, L->next, L->next_id, sn->id, sn->len,
                         lock, &lock_len)) < 0
        || !conn(y, at)
        || memcached_add(y->servers[at].mc, lock, lock_len, "1", 1,
                         FLIP_LOCK_EXP, 0) != MEMCACHED_SUCCESS) {
        return APR_SUCCESS;
    }
    rc = fetch(y, sn->t, tk, tl);
    vlen = rc == MEMCACHED_SUCCESS ? memcached_result_length(y->res) : 0;
    if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND) {
        rv = fail(y, sn->t, "cannot read", rc, err, errlen);
    }
    else if ((rc == MEMCACHED_SUCCESS ? memcached_result_cas(y->res) : 0)
             != sn->cas) {
        /* written since the flip: theirs */
    }
    else if (rc == MEMCACHED_SUCCESS
             && !(value = hold(y, memcached_result_value(y->res), vlen))) {
        apr_cpystrn(err, "out of memory", errlen);
        rv = APR_ENOMEM;
    }
    else if ((rc = fetch(y, sn->here, it.key, it.keylen)) == MEMCACHED_SUCCESS
             && (!sn->cas || vlen != memcached_result_length(y->res)
                 || memcmp(value, memcached_result_value(y->res), vlen))) {
        rc = put_t(y, sn->t, tk, tl, memcached_result_value(y->res),
                   memcached_result_length(y->res),
                   memcached_result_flags(y->res), expiry(it.exp), sn->cas);
        *(sn->worker >= 0 ? &y->late_brought : &y->recent_brought)
            += rc == MEMCACHED_SUCCESS;
        rv = put_done(y, sn->t, &it, memcached_result_cas(y->res), rc, err,
                      errlen);
    }
    else if (rc == MEMCACHED_NOTFOUND && sn->cas) {
        /* it logged out: its copy at the new place goes too */
        (*(sn->worker >= 0 ? &y->late_brought : &y->recent_brought))++;
        rv = delete_key(y, sn->t, &it, err, errlen);
        forget(y, sn->t, &it);
    }
    else if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND) {
        rv = fail(y, sn->here, "cannot read", rc, err, errlen);
    }
    memcached_delete(y->servers[at].mc, lock, lock_len, 0);
    return rv;
}

apr_status_t memsess_sync_flipped(memsess_sync_t *y,
                                  const memsess_flip_wait_t *wait, char *err,
                                  apr_size_t errlen)
{
    /* durations, by the monotonic clock (a wall clock stepped back would
     * hold the guarded locks as long) */
    apr_time_t settle_at = memsess_mono_now() + FLIP_SETTLE;
    apr_time_t until = memsess_mono_now() + FLIP_HOLD;   /* from the flip */
    apr_time_t watch_until = memsess_mono_now() + FLIP_WATCH;
    apr_time_t snap_until = memsess_mono_now() + SNAP_WAIT;
    apr_status_t rv = APR_SUCCESS;
    int k, pending = y->nguards, settled = 0, held;
    int opened = !wait || !wait->open;

    /* the requests running now: their sessions' new places as they are
     * (before the old list's locks go: they may wait on one) */
    y->nsnaps = 0;
    if (wait && ((wait->inflight && wait->still)
                 || (wait->recent && !y->written))) {
        snap_ctx_t c = { y, wait };

        if (!y->snaps) {
            y->snaps = apr_palloc(y->pool, SNAP_MAX * sizeof(snap_t));
        }
        if (wait->inflight && wait->still) {
            wait->inflight(wait->baton, snap_one, &c);
        }
        if (wait->recent && !y->written) {
            /* a follower's engine (no passes, no guard: the holder's):
             * the sessions its requests used under the old list, their
             * new places as the holder's passes left them.  Once those
             * requests are over, each old place's copy is brought over
             * where the new one is still as it was (no request of the
             * new list wrote it): the holder's guard does as much, but
             * dies with its process (the soak's seed 271828: a holder's
             * checker killed at its flip, a write of the old list left
             * behind) */
            wait->recent(wait->baton, snap_recent, &c);
        }
    }
    for (k = 0; k < y->nguards; k++) {
        guard_release_old(y, &y->guards[k]);   /* (memsess_sync_hold_hot) */
    }
    while ((pending || !opened) && rv == APR_SUCCESS) {
        apr_time_t now = memsess_mono_now();
        int stop = stopped(y, err, errlen);
        int last_hold = (now >= until && opened) || stop;
        int last_watch = (now >= watch_until && opened) || stop;
        int settles = !settled;

        /* settled before this look: it sees every write of the old list */
        if (!settled) {
            settled = wait && wait->settled ? wait->settled(wait->baton)
                                            : now >= settle_at;
        }
        settles = settles && settled;
        rv = guards_look(y, err, errlen);
        for (k = pending = held = 0; k < y->nguards && rv == APR_SUCCESS;
             k++) {
            guard_t *g = &y->guards[k];
            int last = g->held ? last_hold : last_watch;

            if (g->done) {
                continue;
            }
            switch (memsess_sync_flip_step(g->held, g->taken, g->seen,
                                           g->checked, settled, last)) {
            case MEMSESS_FLIP_COPY:
                rv = guard_copy(y, g, err, errlen);
                guard_release(y, g);
                break;
            case MEMSESS_FLIP_TAKE:
                if (!conn(y, g->lnew)) {
                    rv = fail(y, g->lnew, "cannot connect to",
                              MEMCACHED_FAILURE, err, errlen);
                }
                else if (memcached_add(y->servers[g->lnew].mc, g->lock,
                                       g->len, "1", 1, FLIP_LOCK_EXP, 0)
                         == MEMCACHED_SUCCESS) {
                    g->held = 1;
                    rv = guard_copy(y, g, err, errlen);
                    guard_release(y, g);
                }
                else {
                    g->seen = 1;   /* a request took it first */
                }
                break;
            case MEMSESS_FLIP_DONE:
                guard_release(y, g);
                g->done = 1;
                break;
            case MEMSESS_FLIP_WAIT:
                break;
            }
            /* (again: a lock let go just now is watched on) */
            if (g->held ? last_hold : last_watch) {
                guard_release(y, g);
                g->done = 1;
            }
            pending += !g->done;
            held += !g->done && g->held;
        }
        /* the requests running at the flip, each as it ends */
        for (k = 0; k < y->nsnaps && rv == APR_SUCCESS; k++) {
            snap_t *sn = &y->snaps[k];

            if (sn->done) {
                continue;
            }
            if (stop || now >= snap_until) {
                sn->done = 1;   /* (too long: left to the passes) */
            }
            else if (sn->worker < 0 ? settled
                     : !wait->still(wait->baton, sn->worker, sn->token)) {
                rv = snap_copy(y, sn, err, errlen);
                sn->done = 1;
            }
            pending += !sn->done;
        }
        if (!opened && settles && rv == APR_SUCCESS && wait->recent
            && (!wait->until || now + BRING_MARGIN < wait->until)) {
            /* the sessions requests used meanwhile, known to no listing
             * (added where the new place has none: not once requests
             * pass the gate at its cap, as one of the new list may
             * have deleted it there, a logout: the soak's seed 271828,
             * two logouts undone at a follower whose gate waited 448 ms) */
            bring_t b = { y, APR_SUCCESS, err, errlen, 0 };

            wait->recent(wait->baton, bring_one, &b);
            rv = b.rv;
            y->recent_brought += b.brought;
        }
        if (!opened && (settles || last_hold || rv != APR_SUCCESS)) {
            /* what they wrote is over: requests may read the new list */
            wait->open(wait->baton);
            opened = 1;
        }
        if ((pending || !opened) && rv == APR_SUCCESS) {
            apr_sleep(held || !opened || now < until ? FLIP_POLL
                                                     : FLIP_WATCH_POLL);
        }
    }
    if (!opened) {
        wait->open(wait->baton);
    }
    memsess_sync_unhold(y);
    return rv;
}
