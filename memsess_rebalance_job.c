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

/* The checker's rebalance (pool changes at graceful).
 *
 * A view whose MemsessServers, MemsessReplicas or MemsessFailover changed
 * at graceful publishes the list and placement in force before
 * (memsess_rebalance.c) until this has run: one thread (never a probe
 * thread) runs memsess_sync.c with no returning server over the changed
 * lists, from what they publish now to what their new pool gives, and
 * over every list that shares a server with them, unchanged (so that a
 * key another pool places on a shared server is never taken for garbage).
 * It starts once every server of the new lists has a verdict, no rejoin
 * sync runs (memsess_rejoin.c), and (when servers were added) one of them
 * is up; it flips the views when the lists it moved keys between are
 * still the ones published and the new ones; a failure (a server died)
 * ends it, and it is retried.  Where keys can never be listed (a pool
 * with MemsessCredentials: memcached -S; a server that refuses
 * lru_crawler metadump) the views are flipped at once instead, with a
 * WARN: retrying would keep the old list for good.
 *
 * Instances that share verdicts (MemsessShareVerdicts) change a pool
 * together: each says in its member line what it has configured and what
 * it publishes (memsess_exchange.c); a rebalance starts only once every
 * instance of the group has the same configuration (until then all keep
 * publishing the list in force, and the status says whom they wait for),
 * then runs once, by the instance that takes its job (memsess_joblock.c,
 * on the first live server of the new list), while the others wait and
 * publish the new lists when it is done.  The holder runs its after-flip
 * passes once every instance publishes them: the last one deletes what
 * the new lists place nowhere, which the old lists read.
 */

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apr_strings.h"
#include "apr_atomic.h"
#include "apr_thread_proc.h"
#include "apr_thread_mutex.h"

#include "httpd.h"
#include "http_log.h"

#include "memsess_rebalance_job.h"
#include "memsess_adopt.h"
#include "memsess_clocks.h"
#include "memsess_exchange.h"
#include "memsess_gate.h"
#include "memsess_job.h"
#include "memsess_joblock.h"
#include "memsess_listing.h"
#include "memsess_sync.h"
#include "memsess_table.h"
#include "memsess_verdicts.h"
#include "memsess_view.h"

APLOG_USE_MODULE(memsess);

/* The checker's side: its runtime, its mutex (which serialises the
 * writers of the table), the rejoin syncs (never run beside one), the
 * rebalance running. */
struct memsess_rebalancer {
    memsess_runtime_t    *rt;
    apr_pool_t           *pool;
    apr_thread_mutex_t   *mutex;
    memsess_syncs_t       syncs;
    struct rebalance_t   *rebalance;   /* running, or NULL */
    apr_time_t            retry;       /* not before (after a failure) */
    int                   told;        /* "new servers down" logged */
    int                   told_cold;   /* MEMSESS0159 logged */
    memsess_exchange_t   *exchange;    /* shared: change pools together */
    apr_uint64_t          configured;  /* our pools' fingerprint */
    char                  waiting[MEMSESS_REPORTERS_MAX];  /* logged */
    apr_time_t            ungate;      /* memsess_rebalancer_gated() */
};

void memsess_rebalancer_share(memsess_rebalancer_t *c, memsess_exchange_t *x)
{
    c->exchange = x;
    c->configured = memsess_pools_fingerprint(c->pool, c->rt, 0);
}

memsess_rebalancer_t *memsess_rebalancer_create(apr_pool_t *p,
                                                memsess_runtime_t *rt,
                                                apr_thread_mutex_t *mutex,
                                                const memsess_syncs_t *syncs)
{
    memsess_rebalancer_t *c = apr_pcalloc(p, sizeof(*c));

    c->rt = rt;
    c->pool = p;
    c->mutex = mutex;
    c->syncs = *syncs;
    c->ungate = rt->resumed_gate;
    return c;
}

void memsess_rebalancer_gated(memsess_rebalancer_t *c, apr_time_t until)
{
    c->ungate = until;
}

/* Requests that got the old list before the flip: their writes land
 * within this, and the after passes pick them up. */
#define REBALANCE_GRACE apr_time_from_msec(1000)

#define REBALANCE_RETRY apr_time_from_sec(5)

/* Shared: how long the holder waits for every instance to publish the new
 * lists before its after-flip passes (it then skips the deleting one). */
#define REBALANCE_ALL_WAIT apr_time_from_sec(10)

/* Others of the group take their locks within this of the flip time. */
#define FLIP_SETTLE apr_time_from_msec(50)

typedef struct rebalance_t {
    memsess_rebalancer_t   *c;
    apr_pool_t             *pool;
    apr_thread_t           *thread;
    volatile apr_uint32_t   stop;
    volatile apr_uint32_t   done;
    int                     ok;          /* flipped */
    const char             *at_once;     /* why nothing can be moved (its
                                          * views are flipped without), or
                                          * NULL */
    int                    *moving;      /* [nviews]: rebalanced by it */
    const char            **next;        /* [nviews]: their new paths */
    memsess_sync_spec_t     spec;
    memsess_sync_list_t    *lists;
    int                    *list_view;   /* a view each list stands for */
    int                     share;       /* once for the group */
    int                     job_slot;    /* where its job record lives */
    memsess_joblock_t       lock;
    memsess_gate_t          gate;        /* at its flip, when it moves */
    apr_time_t              started;
} rebalance_t;

/* Whether view v's rebalance may start: 1 yes, 0 not yet, -1 not yet and
 * its added servers are all down. */
static int rebalance_ready(memsess_rebalancer_t *c, int v)
{
    const memsess_view_t *view = &c->rt->views[v];
    const apr_array_header_t *now = view->before->pool->servers;
    const apr_array_header_t *next = view->pool->servers;
    int k, j, added = 0, added_up = 0;

    for (k = 0; k < next->nelts; k++) {
        int s = APR_ARRAY_IDX(next, k, memsess_server_t).slot;
        const memsess_slot_t *sl = memsess_table_slot(c->rt->table, s);
        apr_uint32_t st = sl->state;
        int old = 0;

        if (st == MEMSESS_UNKNOWN || st == MEMSESS_SYNCING
            || c->syncs.busy(c->syncs.baton, s)) {
            return 0;   /* no verdict yet, or a rejoin runs */
        }
        for (j = 0; j < now->nelts; j++) {
            old |= APR_ARRAY_IDX(now, j, memsess_server_t).slot == s;
        }
        if (!old) {
            added++;
            added_up += MEMSESS_SLOT_LIVE(sl);
        }
    }
    for (k = 0; k < now->nelts; k++) {
        int s = APR_ARRAY_IDX(now, k, memsess_server_t).slot;

        if (memsess_table_slot(c->rt->table, s)->state == MEMSESS_SYNCING
            || c->syncs.busy(c->syncs.baton, s)) {
            return 0;
        }
    }
    return added && !added_up ? -1 : 1;
}

/* Writes into every view the rebalance moves, while this process holds
 * the lease: what it did (st), or whom it waits for (holder). */
static void views_note(rebalance_t *rb, const memsess_sync_stats_t *st,
                       const char *holder)
{
    memsess_rebalancer_t *c = rb->c;
    int v;

    if (memsess_table_lease_lock(c->rt->table, c->mutex)) {
        memsess_table_write_begin(c->rt->table);
        if (holder && rb->lock.ungate && !rb->lock.flip_mono) {
            /* what a new generation's requests waited for: the job is
             * ours, or under way (a flip followed opens it as it is
             * prepared, memsess_joblock_prepare_flip) */
            memsess_table_ungate(c->rt->table, c->rt->confs->nelts,
                                 rb->lock.ungate);
        }
        for (v = 0; v < c->rt->confs->nelts; v++) {
            memsess_view_slot_t *vs = memsess_table_view_slot(c->rt->table,
                                                              v);

            if (!rb->moving[v] || !vs->rebalance) {
                continue;
            }
            if (st) {
                vs->rebalance_examined = st->examined;
                vs->rebalance_copied = st->copied;
                vs->rebalance_deleted = st->deleted;
                vs->rebalance_listed = st->lines;
                vs->rebalance_expected = st->expected;
            }
            if (holder) {
                apr_snprintf(vs->rebalance_error,
                             sizeof(vs->rebalance_error), "%s%s%s",
                             *holder ? "run by " : "", holder,
                             *holder ? " for the group" : "");
                memsess_text_one_line(vs->rebalance_error);
            }
        }
        if (holder) {
            memsess_table_bump_generation(c->rt->table, 0);
        }
        memsess_table_write_end(c->rt->table);
    }
    apr_thread_mutex_unlock(c->mutex);
}

static void rebalance_progress(void *baton, const memsess_sync_stats_t *st)
{
    rebalance_t *rb = baton;

    views_note(rb, st, NULL);
    memsess_joblock_refresh(&rb->lock, 0, 0);
}

static int rebalance_fence(void *baton)
{
    return memsess_joblock_fence(&((rebalance_t *)baton)->lock);
}

/* Sets the state of every view the rebalance moves (and why it stopped);
 * the caller holds the mutex and the lease. */
static void rebalance_mark(rebalance_t *rb, apr_uint32_t state,
                           const char *why)
{
    memsess_rebalancer_t *c = rb->c;
    int v;

    memsess_table_write_begin(c->rt->table);
    for (v = 0; v < c->rt->confs->nelts; v++) {
        memsess_view_slot_t *vs = memsess_table_view_slot(c->rt->table, v);

        if (!rb->moving[v] || !vs->rebalance) {
            continue;
        }
        vs->rebalance = state;
        if (state == MEMSESS_REBALANCE_RUNNING) {
            vs->rebalance_runs++;
            vs->rebalance_started = apr_time_sec(apr_time_now());
            vs->rebalance_examined = vs->rebalance_copied = 0;
            vs->rebalance_deleted = 0;
            vs->rebalance_listed = vs->rebalance_expected = 0;
        }
        if (why) {
            apr_cpystrn(vs->rebalance_error, why,
                        sizeof(vs->rebalance_error));
            memsess_text_one_line(vs->rebalance_error);
        }
    }
    memsess_table_bump_generation(c->rt->table, 0);
    memsess_table_write_end(c->rt->table);
}

/* View v's configured pool is in force from now on (the caller writes
 * the table). */
static void put_in_force(memsess_runtime_t *rt, apr_pool_t *p, int v)
{
    memsess_view_slot_t *vs = memsess_table_view_slot(rt->table, v);

    vs->rebalance = MEMSESS_REBALANCE_NONE;
    vs->rebalance_error[0] = '\0';
    memsess_table_set_served(rt->table, v, NULL, 0,
                             memsess_served_text(p, rt->views[v].pool),
                             rt->views[v].replicas, rt->views[v].failover,
                             rt->views[v].ketama, rt->views[v].format,
                             rt->views[v].sess_prefix);
}

/* Puts the new lists in force when what is published is still what the
 * rebalance moved keys from, and the new pools still give what it moved
 * them to.  Returns 1, or 0 with why in err. */
static int rebalance_flip(rebalance_t *rb, int gate, char *err,
                          apr_size_t errlen)
{
    memsess_rebalancer_t *c = rb->c;
    memsess_runtime_t *rt = c->rt;
    apr_pool_t *p;
    int k, v, ok = 1;

    apr_pool_create(&p, rb->pool);
    if (!memsess_table_lease_lock(rt->table, c->mutex)
        || (rb->stop && !memsess_joblock_flips(&rb->lock))) {
        apr_cpystrn(err, "stopped: checking moved to another process",
                    errlen);
        ok = 0;
    }
    for (k = 0; ok && k < rb->spec.nlists; k++) {
        const char *now, *next;

        v = rb->list_view[k];
        now = memsess_view_path(p, rt, memsess_view_in_force(rt, v), -1, 0,
                                NULL);
        next = rb->moving[v] ? memsess_view_path(p, rt, &rt->views[v], -1, 0,
                                                 NULL)
                             : NULL;
        if (strcmp(now, rb->lists[k].path_now)
            || (next && strcmp(next, rb->next[v]))) {
            apr_snprintf(err, errlen, "a server of %s changed state "
                         "meanwhile", rt->views[v].name);
            ok = 0;
        }
    }
    if (ok) {
        memsess_table_write_begin(rt->table);
        for (v = 0; v < rt->confs->nelts; v++) {
            if (rb->moving[v]) {
                put_in_force(rt, p, v);
            }
        }
        memsess_table_bump_generation(rt->table, 1);
        memsess_table_publish(rt->table, rt->views, rt->confs->nelts, -1,
                              NULL);
        if (gate) {
            /* requests of its views wait for what the old lists wrote */
            memsess_gate_close(&rb->gate, rt, c->mutex, rb->moving,
                               rb->started,
                               rb->share ? memsess_mono_now() + FLIP_SETTLE
                                         : 0,
                               &rb->stop);
        }
        memsess_table_write_end(rt->table);
        if (gate) {
            memsess_gate_flipped(&rb->gate);
        }
        /* a stop and start finds what is in force now */
        memsess_state_save(p, rt);
    }
    apr_thread_mutex_unlock(c->mutex);
    if (ok && rb->stop) {
        memsess_joblock_flipped_stopping(&rb->lock);
    }
    apr_pool_destroy(p);
    return ok;
}

/* Whether a list's keys move: another text, or another placement. */
static int list_moves(const memsess_sync_list_t *l)
{
    return strcmp(l->path_now, l->path_next)
           || (l->next_own && (l->next_replicas != l->replicas
                               || l->next_ketama != l->ketama));
}

/* The names of the views it moves, for the log. */
static const char *rebalance_names(rebalance_t *rb)
{
    const char *names = NULL;
    int v;

    for (v = 0; v < rb->c->rt->confs->nelts; v++) {
        if (rb->moving[v]) {
            names = names ? apr_pstrcat(rb->pool, names, ", ",
                                        rb->c->rt->views[v].name, NULL)
                          : rb->c->rt->views[v].name;
        }
    }
    return names ? names : "";
}

/* The shared job's note (memsess_joblock.c): the instance this one waits
 * for, on the status page. */
static void note_rebalance_by(void *baton, const char *holder)
{
    views_note(baton, NULL, holder);
}

/* The holder, after its flip: whether every other instance publishes the
 * new lists too (their member lines), within REBALANCE_ALL_WAIT; the
 * sessions in use are watched meanwhile. */
static apr_status_t rebalance_wait_all(rebalance_t *rb, memsess_sync_t *sync,
                                       int *all, char *err,
                                       apr_size_t errlen)
{
    apr_time_t until = apr_time_now() + REBALANCE_ALL_WAIT;
    apr_status_t rv = APR_SUCCESS;
    char who[MEMSESS_REPORTERS_MAX];

    while (!(*all = memsess_exchange_agree(rb->c->exchange, 1,
                                           rb->c->configured, who,
                                           sizeof(who)))
           && rv == APR_SUCCESS && !rb->stop && apr_time_now() < until) {
        memsess_joblock_refresh(&rb->lock, 1, 0);
        rv = sync ? memsess_sync_after_hot(sync, err, errlen) : APR_SUCCESS;
        apr_sleep(apr_time_from_msec(sync ? 1 : 20));
    }
    if (!*all && rv == APR_SUCCESS && !rb->stop) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rb->c->rt->main,
                     "MEMSESS0151: rebalance of %s: published here, but not "
                     "yet by %s after %" APR_TIME_T_FMT " s: the copies the "
                     "old lists read are left in place", rebalance_names(rb),
                     who, apr_time_sec(REBALANCE_ALL_WAIT));
    }
    return rv;
}

static void *APR_THREAD_FUNC rebalance_thread(apr_thread_t *thread,
                                              void *data)
{
    rebalance_t *rb = data;
    memsess_rebalancer_t *c = rb->c;
    memsess_runtime_t *rt = c->rt;
    apr_time_t start = apr_time_now(), flipped_at;
    memsess_sync_stats_t before;
    memsess_sync_t *sync = NULL;
    char err[256] = "";
    apr_status_t rv = APR_SUCCESS;
    memsess_claim_e claim = MEMSESS_CLAIM_HOLD;
    int k, moves = 0, follow_gate = 0, everyone = 1, nheld = 0;
    int nguarded = 0;

    (void)thread;
    rb->started = start;
    memset(&before, 0, sizeof(before));
    for (k = 0; !rb->at_once && k < rb->spec.nlists; k++) {
        /* (into another namespace: every session moves) */
        moves |= list_moves(&rb->lists[k]) || rb->spec.next_prefix;
    }
    if (rb->share) {
        rb->lock.subject = apr_pstrcat(rb->pool, "pool change of ",
                                       rebalance_names(rb), NULL);
        rb->lock.job = "its rebalance";
        rb->lock.stop = &rb->stop;
        /* a rebalance done before this generation began was of another
         * change, even of the same lists (A to B, back, and A to B again) */
        rb->lock.not_before = rt->generation_started - MEMSESS_JOB_SKEW;
        rb->lock.not_before_off_ms = rt->generation_off_ms;
        rb->lock.note = note_rebalance_by;
        rb->lock.baton = rb;
        rb->lock.ungate = c->ungate;
        claim = memsess_joblock_open(&rb->lock, rt, rb->job_slot,
                                     apr_psprintf(rb->pool, "rebalance-%016"
                                                  APR_UINT64_T_HEX_FMT,
                                                  rb->lock.fingerprint),
                                     rb->spec.timeout, rb->pool)
                == APR_SUCCESS
                ? memsess_joblock_claim(&rb->lock, err, sizeof(err))
                : MEMSESS_CLAIM_FAILED;
        if (claim == MEMSESS_CLAIM_FAILED) {
            rv = APR_EGENERAL;
            if (!err[0]) {
                apr_cpystrn(err, "cannot connect for its job record",
                            sizeof(err));
            }
        }
    }
    if (claim == MEMSESS_CLAIM_FOLLOW) {
        /* the holder moves them; its requests wait at the flip */
        follow_gate = moves && rt->flight;
        moves = 0;
    }
    /* the same text and placement before and after (a server removed
     * while down): there is nothing to move */
    if (rv == APR_SUCCESS && moves
        && (sync = memsess_sync_create(rb->pool, &rb->spec, err,
                                       sizeof(err)))) {
        rv = memsess_sync_before(sync, err, sizeof(err));
        before = *memsess_sync_stats(sync);
    }
    else if (rv == APR_SUCCESS && moves) {
        rv = APR_EGENERAL;
    }
    if (rv == APR_ENOTIMPL && !rb->stop) {
        /* a server that refuses to list its keys never will: retrying
         * would keep the old list for good */
        rb->at_once = apr_pstrdup(rb->pool, err);
        memsess_sync_destroy(sync);
        sync = NULL;
        memset(&before, 0, sizeof(before));
        rv = APR_SUCCESS;
        err[0] = '\0';
    }
    if (rv == APR_SUCCESS && sync && claim != MEMSESS_CLAIM_FOLLOW) {
        /* the active sessions' locks under the new list, nobody's yet:
         * taken before the flip time is written, so that no instance of
         * the group publishes before they are held */
        nheld = memsess_sync_hold_hot(sync, &nguarded);
    }
    if (rv == APR_SUCCESS && claim != MEMSESS_CLAIM_FAILED && rb->share) {
        /* all publish the new lists at once */
        if (rb->lock.holding) {
            memsess_joblock_done(&rb->lock,
                                 !memsess_exchange_others(c->exchange));
        }
        memsess_joblock_prepare_flip(&rb->lock, c->mutex, -1, rb->moving);
        memsess_joblock_wait_flip(&rb->lock);
    }
    if (claim == MEMSESS_CLAIM_FOLLOW
        && rebalance_flip(rb, follow_gate, err, sizeof(err))) {
        /* its requests wait at the flip as the holder's do, and what
         * they used that the holder's listings missed is brought over */
        int late = 0, brought = follow_gate
                      ? memsess_gate_follow(&rb->gate, &rb->spec, rb->pool,
                                          &late)
                      : 0;

        rb->ok = 1;
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0152: "
                     "rebalance of %s was done by %s for the group: the new "
                     "list is published here too, %" APR_TIME_T_FMT "ms "
                     "after this instance was ready; %s", rebalance_names(rb),
                     rb->lock.holder, apr_time_as_msec(apr_time_now()
                                                       - start),
                     follow_gate ? memsess_gate_text(rb->pool, &rb->gate,
                                                     brought, late)
                                 : "no session moves");
    }
    else if (claim != MEMSESS_CLAIM_FOLLOW && rv == APR_SUCCESS
             && rebalance_flip(rb, sync != NULL, err, sizeof(err))) {
        flipped_at = apr_time_now();
        rb->ok = 1;
        if (rb->at_once) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, rt->main,
                         "MEMSESS0142: %s: the sessions cannot be moved "
                         "(%s): the new list is published at once, without "
                         "a rebalance; users whose session it places "
                         "elsewhere are logged out", rebalance_names(rb),
                         rb->at_once);
        }
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0136: "
                     "rebalance of %s done after %" APR_TIME_T_FMT "ms: the "
                     "new list is published; %" APR_UINT64_T_FMT " keys "
                     "examined, %" APR_UINT64_T_FMT " copied, %"
                     APR_UINT64_T_FMT " deleted (stale, locks), %"
                     APR_UINT64_T_FMT " already in place, %" APR_UINT64_T_FMT
                     " left as newer%s", rebalance_names(rb),
                     apr_time_as_msec(flipped_at - start), before.examined,
                     before.copied, before.deleted, before.same,
                     before.newer, memsess_sync_feed_text(rb->pool, &before));
        if (!before.listed && before.lines >= MEMSESS_NO_SESSION_LINES) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, rt->main,
                         "MEMSESS0046: rebalance of %s: %" APR_UINT64_T_FMT
                         " keys listed and not one PHP session among them: "
                         "does PHP place its sessions as this module thinks "
                         "(memcached.sess_prefix \"%s\", the pool's "
                         "servers)?", rebalance_names(rb), before.lines,
                         rt->g.sess_prefix);
        }
        if (sync) {
            const memsess_sync_stats_t *all;
            apr_uint64_t copied = before.copied;
            apr_time_t until;
            memsess_flip_wait_t wait;
            int stopping;

            /* the active sessions, guarded by their lock until the
             * requests that got the old list are done with them */
            memsess_gate_wait(&rb->gate, &wait);
            /* told to stop at a flip made with the group (a graceful): the
             * guard runs its course all the same (its locks 250 ms at most,
             * its watch 600 ms) for the late writes of the others' requests
             * that had the old list */
            stopping = memsess_joblock_guard_begin(&rb->lock, &rb->stop);
            rv = memsess_sync_flipped(sync, &wait, err, sizeof(err));
            memsess_joblock_guard_end(&rb->lock, &rb->stop, stopping);
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                         "MEMSESS0044: rebalance of %s: at the flip, %d "
                         "active sessions guarded by their lock (%d held "
                         "under the new list) until the requests that had "
                         "the old list were done: %" APR_UINT64_T_FMT " of "
                         "their writes brought over, in %" APR_TIME_T_FMT
                         "ms; %s%s%s", rebalance_names(rb), nguarded, nheld,
                         memsess_sync_stats(sync)->copied - copied,
                         apr_time_as_msec(apr_time_now() - flipped_at),
                         memsess_gate_text(rb->pool, &rb->gate,
                                           memsess_sync_recent_brought(sync),
                                           memsess_sync_late_brought(sync)),
                         rv == APR_SUCCESS ? "" : "; stopped: ",
                         rv == APR_SUCCESS ? "" : err);
            /* requests that began before the flip write the old places as
             * they end, and their users' next requests read the new ones:
             * for the whole grace, the keys being written when the flip
             * came are compared again and again (no listing, which takes
             * seconds for 100,000 sessions: a late write is brought over
             * within a millisecond or two); then the last pass looks at
             * everything written since the rebalance began, and cleans
             * up */
            if (rb->share) {
                /* the others publish the new lists too, then the grace */
                memsess_joblock_refresh(&rb->lock, 1, 1);
                rv = rebalance_wait_all(rb, sync, &everyone, err,
                                        sizeof(err));
            }
            until = apr_time_now() + REBALANCE_GRACE;
            while (rv == APR_SUCCESS && !rb->stop
                   && apr_time_now() < until) {
                rv = memsess_sync_after_hot(sync, err, sizeof(err));
                apr_sleep(apr_time_from_msec(1));
            }
            /* those that come now rebalance on their own */
            memsess_joblock_release(&rb->lock);
            if (rv == APR_SUCCESS) {
                rv = rb->stop ? APR_EINTR
                              : memsess_sync_after(sync, everyone, err,
                                                   sizeof(err));
            }
            all = memsess_sync_stats(sync);
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                         "MEMSESS0137: rebalance of %s: after the flip, %"
                         APR_UINT64_T_FMT " late writes of the old list "
                         "brought over (%" APR_UINT64_T_FMT " active "
                         "sessions watched), %" APR_UINT64_T_FMT " copies "
                         "the new list places nowhere removed, in %"
                         APR_TIME_T_FMT "ms%s%s", rebalance_names(rb),
                         all->copied - before.copied, all->watched,
                         all->deleted - before.deleted,
                         apr_time_as_msec(apr_time_now() - flipped_at),
                         rv == APR_SUCCESS ? "" : "; stopped: ",
                         rv == APR_SUCCESS ? "" : err);
        }
    }
    else {
        memsess_joblock_cancel_flip(&rb->lock, c->mutex, -1, rb->moving);
        memsess_sync_unhold(sync);
        /* the next try takes it at once; once done, it follows */
        memsess_joblock_abandon(&rb->lock);
        if (memsess_table_lease_lock(rt->table, c->mutex)) {
            rebalance_mark(rb, MEMSESS_REBALANCE_WAITING,
                           err[0] ? err : "failed");
        }
        apr_thread_mutex_unlock(c->mutex);
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0138: "
                     "rebalance of %s stopped after %" APR_TIME_T_FMT "ms "
                     "(%s): the previous list stays published; retried in %"
                     APR_TIME_T_FMT " s", rebalance_names(rb),
                     apr_time_as_msec(apr_time_now() - start),
                     err[0] ? err : "failed",
                     apr_time_sec(REBALANCE_RETRY));
    }
    if (rb->lock.holding && rb->ok) {
        /* nothing moved (or no engine): the others still follow */
        memsess_joblock_refresh(&rb->lock, 1, 1);
        rebalance_wait_all(rb, NULL, &everyone, err, sizeof(err));
    }
    memsess_joblock_release(&rb->lock);
    memsess_joblock_close(&rb->lock);
    memsess_sync_destroy(sync);
    memsess_joblock_ungate(&rb->lock, c->mutex);
    apr_atomic_set32(&rb->done, 1);
    return NULL;
}

/* Whether view v's servers (in force, and configured when it moves) are
 * among those marked in `in` (by slot); marks them in `out` too. */
static int view_touches(const memsess_runtime_t *rt, int v, int moving,
                        const unsigned char *in, unsigned char *out)
{
    const memsess_view_t *defs[2];
    int d, k, hit = 0;

    defs[0] = memsess_view_in_force(rt, v);
    defs[1] = moving ? &rt->views[v] : defs[0];
    for (d = 0; d < 2; d++) {
        const apr_array_header_t *servers = defs[d]->pool->servers;

        for (k = 0; k < servers->nelts; k++) {
            int s = APR_ARRAY_IDX(servers, k, memsess_server_t).slot;

            hit |= in && in[s];
            if (out) {
                out[s] = 1;
            }
        }
    }
    return hit;
}

/* Which views' lists the sync is given: those that move, and every list
 * that shares a server with one given (and so on): a key of such a list
 * on a server the sync lists must be placed by its own list, or it would
 * be taken for garbage.  Lists sharing no server with them are left out:
 * nothing of theirs moves, and their servers need not be listable.
 * Fills given[nviews]. */
static void rebalance_given(const memsess_rebalancer_t *c, const int *ready,
                            int *given)
{
    const memsess_runtime_t *rt = c->rt;
    unsigned char *touched = calloc(rt->targets->nelts + 1, 1);
    int v, n = rt->confs->nelts, more = 1;

    for (v = 0; v < n; v++) {
        given[v] = ready[v] || !touched;   /* out of memory: all of them */
        if (ready[v] && touched) {
            view_touches(rt, v, 1, NULL, touched);
        }
    }
    while (touched && more) {
        more = 0;
        for (v = 0; v < n; v++) {
            if (!given[v] && view_touches(rt, v, 0, touched, NULL)) {
                view_touches(rt, v, 0, NULL, touched);
                given[v] = more = 1;
            }
        }
    }
    free(touched);
}

/* Starts the rebalance of every view that waits and is ready; the caller
 * holds the mutex.  at_once: why nothing can be moved (flipped without
 * a sync), or NULL. */
static void rebalance_start(memsess_rebalancer_t *c, const int *ready,
                            const char *at_once)
{
    memsess_runtime_t *rt = c->rt;
    apr_pool_t *pool;
    apr_threadattr_t *attr;
    rebalance_t *rb;
    apr_status_t rv;
    int v, k, n = rt->confs->nelts, *given;

    /* a root pool: the watchdog thread creates and destroys it */
    apr_pool_create(&pool, NULL);
    rb = apr_pcalloc(pool, sizeof(*rb));
    rb->c = c;
    rb->pool = pool;
    rb->at_once = at_once;
    rb->moving = apr_pcalloc(pool, n * sizeof(int));
    rb->next = apr_pcalloc(pool, n * sizeof(char *));
    rb->lists = apr_pcalloc(pool, n * sizeof(*rb->lists));
    rb->list_view = apr_pcalloc(pool, n * sizeof(int));
    given = apr_pcalloc(pool, n * sizeof(int));
    rebalance_given(c, ready, given);
    rb->spec.returning = NULL;
    rb->spec.lists = rb->lists;
    rb->spec.rate = rt->g.sync_rate;
    /* the namespace in force, and the configured one when a pool that
     * moves changes it (one namespace for every pool: MemsessNamespace) */
    rb->spec.prefix = memsess_prefix_in_force(rt, ready);
    if (strcmp(rb->spec.prefix, rt->g.sess_prefix)) {
        rb->spec.next_prefix = rt->g.sess_prefix;
    }
    rb->spec.timeout = rt->g.timeout > apr_time_from_msec(500)
                       ? rt->g.timeout : apr_time_from_msec(500);
    rb->spec.stop = &rb->stop;
    rb->spec.progress = rebalance_progress;
    rb->spec.fence = rebalance_fence;
    rb->spec.feed = MEMSESS_SYNC_FEED;
    rb->spec.feed_min = MEMSESS_SYNC_FEED_MIN;
    rb->spec.baton = rb;
    for (v = 0; v < n; v++) {
        const memsess_view_t *view = memsess_view_in_force(rt, v);
        const memsess_view_t *next = &rt->views[v];
        memsess_sync_list_t *l = &rb->lists[rb->spec.nlists];
        int nlive;

        rb->moving[v] = ready[v];
        if (ready[v]) {
            rb->next[v] = memsess_view_path(pool, rt, next, -1, 0, NULL);
        }
        if (at_once || !given[v] || view->format != MEMSESS_FORMAT_MEMCACHED
            || view->credentials) {
            continue;   /* memcached -S lists nothing: never given */
        }
        l->path_now = memsess_view_path(pool, rt, view, -1, 0, &nlive);
        l->path_next = l->path_now;
        l->replicas = view->replicas;
        l->ketama = view->ketama;
        /* every server down: requests get the full list (fail open), and
         * there is no authority to copy from */
        if (ready[v] && nlive) {
            l->path_next = rb->next[v];
            l->next_own = 1;
            l->next_replicas = next->replicas;
            l->next_ketama = next->ketama;
        }
        for (k = 0; k < rb->spec.nlists; k++) {
            const memsess_sync_list_t *o = &rb->lists[k];

            if (!strcmp(o->path_now, l->path_now)
                && !strcmp(o->path_next, l->path_next)
                && o->replicas == l->replicas && o->ketama == l->ketama
                && o->next_own == l->next_own
                && o->next_replicas == l->next_replicas
                && o->next_ketama == l->next_ketama) {
                break;
            }
        }
        if (k == rb->spec.nlists) {
            rb->list_view[rb->spec.nlists++] = v;
        }
        else {
            memset(l, 0, sizeof(*l));
        }
    }
    if (memsess_exchange_sharing(c->exchange)) {
        /* once for the group: its job on the first live server of the
         * first new list (the same for all: they agree on states) */
        const apr_array_header_t *servers = NULL;

        for (v = 0; v < n && !servers; v++) {
            servers = ready[v] ? rt->views[v].pool->servers : NULL;
        }
        rb->share = 1;
        rb->job_slot = APR_ARRAY_IDX(servers, 0, memsess_server_t).slot;
        for (k = servers->nelts - 1; k >= 0; k--) {
            int slot = APR_ARRAY_IDX(servers, k, memsess_server_t).slot;

            if (MEMSESS_SLOT_LIVE(memsess_table_slot(rt->table, slot))) {
                rb->job_slot = slot;
            }
        }
        /* the change, in force -> new: its job's fingerprint */
        rb->lock.fingerprint = memsess_fnv1a_more(memsess_fnv1a(apr_psprintf(
            pool, "%016" APR_UINT64_T_HEX_FMT,
            memsess_pools_fingerprint(pool, rt, 1))), apr_psprintf(
            pool, "%016" APR_UINT64_T_HEX_FMT, c->configured));
    }
    rebalance_mark(rb, MEMSESS_REBALANCE_RUNNING, "");
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0135: "
                 "rebalance of %s started: every session is copied where the "
                 "new list places it before that list is published",
                 rebalance_names(rb));
    apr_threadattr_create(&attr, pool);
    rv = apr_thread_create(&rb->thread, attr, rebalance_thread, rb, pool);
    if (rv != APR_SUCCESS) {
        rebalance_mark(rb, MEMSESS_REBALANCE_WAITING,
                       "cannot start its thread");
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, rt->main, "MEMSESS0139: "
                     "cannot start the rebalance of %s: retried in %"
                     APR_TIME_T_FMT " s", rebalance_names(rb),
                     apr_time_sec(REBALANCE_RETRY));
        c->retry = apr_time_now() + REBALANCE_RETRY;
        apr_pool_destroy(pool);
        return;
    }
    c->rebalance = rb;
}

/* Every pending view says why it waits (the status page), and the log
 * once; the caller holds the mutex. */
static void note_waiting(memsess_rebalancer_t *c, const char *why)
{
    memsess_runtime_t *rt = c->rt;
    int v;

    memsess_table_write_begin(rt->table);
    for (v = 0; v < rt->confs->nelts; v++) {
        memsess_view_slot_t *vs = memsess_table_view_slot(rt->table, v);

        if (rt->views[v].before && vs->rebalance) {
            apr_cpystrn(vs->rebalance_error, why,
                        sizeof(vs->rebalance_error));
            memsess_text_one_line(vs->rebalance_error);
        }
    }
    memsess_table_bump_generation(rt->table, 0);
    memsess_table_write_end(rt->table);
    if (*c->waiting != '(') {   /* not the first round's */
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0153: "
                     "pool changes wait: the previous lists stay published, "
                     "%s", why);
    }
}

/* Views whose placement before is not from a generation that ran until
 * now (a stop and start: the state file; nothing recorded: PHP's, taken
 * over) while other instances of the group run: the group may have moved
 * on meanwhile.  When they all have this instance's configured placement
 * in force, it joins them (published at once: the sessions are there
 * already); when they have another one than ours before, nothing is moved
 * from it (said once).  Returns 1 when the round must not start a
 * rebalance.  The caller holds the mutex. */
static int cold_in_group(memsess_rebalancer_t *c, apr_pool_t *p)
{
    memsess_runtime_t *rt = c->rt;
    char who[MEMSESS_REPORTERS_MAX];
    int v, cold = 0;

    for (v = 0; v < rt->confs->nelts; v++) {
        cold |= rt->views[v].before && rt->views[v].before->cold
                && memsess_table_view_slot(rt->table, v)->rebalance;
    }
    if (!cold || memsess_exchange_others(c->exchange) < 1) {
        return 0;
    }
    if (memsess_exchange_agree(c->exchange, 1, c->configured, who,
                               sizeof(who))) {
        memsess_table_write_begin(rt->table);
        for (v = 0; v < rt->confs->nelts; v++) {
            memsess_view_slot_t *vs = memsess_table_view_slot(rt->table, v);

            if (!rt->views[v].before || !vs->rebalance) {
                continue;
            }
            put_in_force(rt, p, v);
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                         "MEMSESS0158: %s: the other instances of the group "
                         "have this configuration in force already: it is "
                         "published at once, nothing is moved from %s",
                         rt->views[v].name, rt->views[v].before->source);
        }
        memsess_table_bump_generation(rt->table, 1);
        memsess_table_publish(rt->table, rt->views, rt->confs->nelts, -1,
                              NULL);
        memsess_table_write_end(rt->table);
        memsess_state_save(p, rt);
        return 1;
    }
    if (memsess_exchange_agree(c->exchange, 1,
                               memsess_pools_fingerprint(p, rt, 1), who,
                               sizeof(who))) {
        return 0;   /* the group has ours before in force too: moved
                     * together */
    }
    if (!c->told_cold) {
        c->told_cold = 1;
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, rt->main, "MEMSESS0159: "
                     "the group's instances (%s) have another placement in "
                     "force than the one this instance started with (from "
                     "the state file, or PHP's when none is recorded): "
                     "nothing is moved from it; copy the state file of an "
                     "instance of the group into MemsessStateDir and "
                     "restart, or name the placement with MemsessAdopt",
                     who);
    }
    return 1;
}

/* Each round: joins a rebalance that ended, and starts one when a view
 * waits and is ready. */
void memsess_rebalancer_round(memsess_rebalancer_t *c)
{
    memsess_runtime_t *rt = c->rt;
    rebalance_t *rb = c->rebalance;
    int v, any = 0, down = 0, sasl = 0, waits = 0, agree, *ready;
    int leased;
    char who[MEMSESS_REPORTERS_MAX];

    if (rb) {
        apr_status_t ret;

        if (!apr_atomic_read32(&rb->done)) {
            return;
        }
        apr_thread_join(&ret, rb->thread);
        if (!rb->ok) {
            c->retry = apr_time_now() + REBALANCE_RETRY;
        }
        c->rebalance = NULL;
        apr_pool_destroy(rb->pool);
    }
    if (apr_time_now() < c->retry) {
        return;
    }
    ready = NULL;
    agree = memsess_exchange_agree(c->exchange, 0, c->configured, who,
                                   sizeof(who));
    leased = memsess_table_lease_lock(rt->table, c->mutex);
    if (leased && memsess_exchange_sharing(c->exchange)) {
        apr_pool_t *p;
        int hold;

        apr_pool_create(&p, c->pool);
        hold = cold_in_group(c, p);
        apr_pool_destroy(p);
        if (hold) {
            apr_thread_mutex_unlock(c->mutex);
            return;
        }
    }
    for (v = 0; leased && v < rt->confs->nelts; v++) {
        int r;

        if (!rt->views[v].before
            || !memsess_table_view_slot(rt->table, v)->rebalance) {
            continue;
        }
        if (!agree) {
            /* the group changes its pools together */
            waits = 1;
            continue;
        }
        r = rebalance_ready(c, v);
        if (r > 0) {
            if (!ready) {
                ready = calloc(rt->confs->nelts, sizeof(int));
                if (!ready) {
                    break;
                }
            }
            ready[v] = 1;
            any = 1;
        }
        else if (r < 0 && !c->told) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                         "MEMSESS0140: %s: every server added to the pool "
                         "is down: the previous list stays published until "
                         "one is up", rt->views[v].name);
            down = 1;
        }
    }
    c->told |= down;
    if (waits && leased && strcmp(who, c->waiting)) {
        apr_cpystrn(c->waiting, who, sizeof(c->waiting));
        note_waiting(c, apr_pstrcat(c->pool, "waiting for the other "
                                    "instances of the group to have this "
                                    "configuration: ", who, NULL));
    }
    if (!waits) {
        c->waiting[0] = '\0';
    }
    for (v = 0; any && v < rt->confs->nelts; v++) {
        sasl |= ready[v] && rt->views[v].credentials;
    }
    if (sasl) {
        /* memcached -S closes the text protocol: no lru_crawler metadump.
         * Those pools first, on their own (flipped at once); the others
         * are started at the next round */
        for (v = 0; v < rt->confs->nelts; v++) {
            ready[v] = ready[v] && rt->views[v].credentials;
        }
        rebalance_start(c, ready, "the pool has MemsessCredentials: "
                        "memcached -S lists no keys");
    }
    else if (any) {
        rebalance_start(c, ready, NULL);
    }
    apr_thread_mutex_unlock(c->mutex);
    free(ready);
}

/* The checker stops: the rebalance stops at its next key. */
void memsess_rebalancer_stop(memsess_rebalancer_t *c)
{
    rebalance_t *rb = c->rebalance;
    apr_status_t ret;

    if (rb) {
        apr_atomic_set32(&rb->stop, 1);
        apr_thread_join(&ret, rb->thread);
        c->rebalance = NULL;
        apr_pool_destroy(rb->pool);
    }
}
