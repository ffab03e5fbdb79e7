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

/* The checker's rejoin syncs (MemsessRejoin sync).
 *
 * A down server whose probes pass is SYNCING, not live: a thread of its
 * own (never a probe thread: other verdicts are never delayed) runs
 * memsess_sync.c for every view of the server, publishes it (UP) when the
 * lists it synced against are still the ones published, then reconciles
 * what requests with the old list wrote meanwhile.  A failed probe of the
 * server (memsess_slot_record: SYNCING -> DOWN) or an error at any server
 * stops it; the server stays down and its next good probes start over.
 *
 * Instances that share verdicts (MemsessShareVerdicts) sync a server once,
 * for all: the job is a record on the returning server itself
 * (memsess_job.c), which every instance that could sync it reaches.  The
 * first to add it holds the job and refreshes it while it works; the
 * others keep the server syncing (not live) and wait; each instance's
 * verdict line stays in while it does (memsess_exchange.c), so the server
 * is out for all until every one of them has published it.  The holder
 * publishes it and marks the job done; the others publish it with the
 * holder when they would have synced the same lists, else they sync again
 * themselves.  The holder runs its after-flip passes once the server is
 * live here, which is once no instance holds it out any more; a holder
 * that dies stops refreshing its record, and the next instance takes the
 * job over.
 */

#include <string.h>
#include <unistd.h>

#include <libmemcached/memcached.h>

#include "apr_strings.h"
#include "apr_atomic.h"
#include "apr_thread_proc.h"
#include "apr_thread_mutex.h"

#include "httpd.h"
#include "http_log.h"

#include "memsess_rejoin.h"
#include "memsess_clocks.h"
#include "memsess_config.h"
#include "memsess_connect.h"
#include "memsess_exchange.h"
#include "memsess_gate.h"
#include "memsess_job.h"
#include "memsess_joblock.h"
#include "memsess_listing.h"
#include "memsess_persist_db.h"
#include "memsess_sync.h"
#include "memsess_table.h"
#include "memsess_verdicts.h"
#include "memsess_view.h"

APLOG_USE_MODULE(memsess);

/* The checker's side: its runtime, its mutex (which serialises the
 * writers of the table: probes and syncs), one job per slot. */
struct memsess_rejoin {
    memsess_runtime_t  *rt;
    memsess_exchange_t *exchange;  /* shared verdicts, or NULL */
    apr_pool_t         *pool;
    apr_thread_mutex_t *mutex;
    struct sync_job_t **jobs;      /* [nslots] */
    int                *flipped;   /* [nviews]: scratch for publish */
    /* [nslots], under mutex: whether a delta sync may run (see
     * rejoin_facts) */
    apr_time_t         *last_live; /* the last round it was published */
    int                *unfinished;   /* a sync of it started, not
                                       * published */
    /* [nslots], under mutex: when a rejoin found it a new memcached
     * process (its memory lost; 0: never), for MemsessPersist's restore */
    apr_time_t         *renewed;
    /* [nslots], under mutex: when it was last published with nothing to
     * sync from (0: never).  Such a server holds what it held before; what
     * it lacks is no evidence of a logout for a server whose outage began
     * before (see witnessed) */
    apr_time_t         *unsynced;
    /* [nslots], under mutex: the outage (down_since) for which it was
     * refused, having kept keys that cannot be listed (logged once) */
    apr_time_t         *refused;
    /* [nslots], under mutex: SYNCING, its sync not started yet (another
     * server of one of its pools is before its flip); see
     * memsess_rejoin_start */
    int                *queued;
    int                 nqueued;
    char               *blocked;   /* scratch of memsess_rejoin_kick */
    apr_time_t          ungate;    /* memsess_rejoin_gated() */
    volatile apr_uint32_t stopping;   /* the checker stops (stop_all) */
    apr_time_t          kicked;    /* when it last looked */
};

memsess_rejoin_t *memsess_rejoin_create(apr_pool_t *p, memsess_runtime_t *rt,
                                        apr_thread_mutex_t *mutex)
{
    memsess_rejoin_t *c = apr_pcalloc(p, sizeof(*c));

    c->rt = rt;
    c->pool = p;
    c->mutex = mutex;
    c->jobs = apr_pcalloc(p, rt->targets->nelts * sizeof(*c->jobs));
    c->queued = apr_pcalloc(p, rt->targets->nelts * sizeof(int));
    c->blocked = apr_pcalloc(p, rt->targets->nelts);
    c->flipped = apr_pcalloc(p, (rt->confs->nelts + 1) * sizeof(int));
    c->last_live = apr_pcalloc(p, rt->targets->nelts * sizeof(apr_time_t));
    c->unfinished = apr_pcalloc(p, rt->targets->nelts * sizeof(int));
    c->renewed = apr_pcalloc(p, rt->targets->nelts * sizeof(apr_time_t));
    c->refused = apr_pcalloc(p, rt->targets->nelts * sizeof(apr_time_t));
    c->unsynced = apr_pcalloc(p, rt->targets->nelts * sizeof(apr_time_t));
    c->ungate = rt->resumed_sync_gate;
    return c;
}

void memsess_rejoin_gated(memsess_rejoin_t *c, apr_time_t until)
{
    c->ungate = until;
}

/* Requests that got the old list before the flip: their writes land
 * within this, and the after pass picks them up. */
#define SYNC_GRACE apr_time_from_msec(1000)

/* Shared jobs: how long the holder waits for the other instances to
 * publish the server before it leaves the after-flip passes to whoever
 * publishes it last. */
#define JOB_LIVE_WAIT apr_time_from_sec(10)

typedef struct sync_job_t {
    memsess_rejoin_t       *c;
    int                     slot;
    apr_pool_t             *pool;
    apr_thread_t           *thread;
    volatile apr_uint32_t   stop;
    volatile apr_uint32_t   done;
    memsess_sync_spec_t     spec;
    memsess_sync_list_t    *lists;
    int                    *list_view;   /* a view each list stands for */
    /* shared (MemsessShareVerdicts): the job, on the returning server */
    int                     share;
    memsess_joblock_t       lock;
    const char             *full_why;    /* why not a delta sync */
    int                     resumed;     /* the delta resumes a sync of it
                                          * that was stopped (slot
                                          * resume_*) */
    int                     unwitnessed; /* live servers, none a witness */
    int                     delta;       /* the engine runs a delta sync */
    memsess_gate_t          gate;        /* at its flip, when it syncs */
    apr_time_t              started;
    apr_time_t              down_since;  /* this outage's, by our probes */
    apr_int64_t             down_off_ms, out_off_ms;   /* their clocks'
                                          * offsets (memsess_joblock.h) */
    apr_time_t              out_since;   /* when it last stopped being
                                          * published here */
    int                    *gated;       /* [nviews]: its views */
    /* MemsessPersist: it came back as a new process (renewed), the list
     * each persisted view of it publishes next ([nviews], NULL: none), and
     * which servers kept their memory through its outage ([nslots]) */
    int                     renewed;
    /* what its probes say of the process that answers: the one that went
     * down (its memory kept), or known to be another (started since, its
     * memory empty); neither: not known */
    int                     kept_keys;
    int                     new_process;
    int                     refused;       /* MEMSESS0047 (logged once an
                                            * outage), not MEMSESS0033 */
    int                     as_is;         /* MEMSESS0048: taken back
                                            * unsynced, nothing emptied */
    const char            **persist_next;
    unsigned char          *survivor;
} sync_job_t;

void memsess_rejoin_share(memsess_rejoin_t *c, memsess_exchange_t *x)
{
    c->exchange = x;
}

int memsess_rejoin_busy(memsess_rejoin_t *c, int i)
{
    return c->jobs && (c->jobs[i] != NULL || c->queued[i]);
}

/* The save_path view v publishes (its list in force), with slot i counted
 * live or not.  The caller holds the mutex. */
static const char *view_path(memsess_rejoin_t *c, apr_pool_t *p, int v, int i,
                             int i_live, int *nlive_out)
{
    return memsess_view_path(p, c->rt, memsess_view_in_force(c->rt, v), i,
                             i_live, nlive_out);
}

/* Writes into the server's slot, while this process holds the lease and
 * the server is syncing: what the sync did (st), or whom it waits for
 * (holder, "" when it syncs the server itself). */
static void slot_note(sync_job_t *job, const memsess_sync_stats_t *st,
                      const char *holder)
{
    memsess_rejoin_t *c = job->c;
    memsess_slot_t *slot = memsess_table_slot(c->rt->table, job->slot);
    int wakes = 0;

    if (memsess_table_lease_lock(c->rt->table, c->mutex)
        && slot->state == MEMSESS_SYNCING) {
        memsess_table_write_begin(c->rt->table);
        if (holder && job->lock.ungate && !job->lock.flip_mono) {
            /* what a new generation's requests waited for: the job is
             * ours, or under way (a flip followed opens it as it is
             * prepared, memsess_joblock_prepare_flip) */
            memsess_table_ungate(c->rt->table, c->rt->confs->nelts,
                                 job->lock.ungate);
        }
        if (st) {
            slot->sync_examined = st->examined;
            slot->sync_copied = st->copied;
            slot->sync_deleted = st->deleted;
            slot->sync_memory = st->memory;
            slot->sync_listed = st->lines;
            slot->sync_expected = st->expected;
        }
        if (holder) {
            /* our verdict line goes back in when we sync it ourselves
             * (memsess_exchange.c) */
            apr_cpystrn(slot->sync_by, holder, sizeof(slot->sync_by));
            wakes = *holder && !slot->sync_waits;
            slot->sync_waits = *holder != '\0';
        }
        memsess_table_write_end(c->rt->table);
    }
    apr_thread_mutex_unlock(c->mutex);
    if (wakes) {
        /* it reaches the server and follows the holder: its line, from
         * before it did, goes out now, not at its next round, so that the
         * others' rounds before the flip no longer read it */
        memsess_exchange_fresh(c->exchange, 0);   /* asked, not waited */
    }
}

/* Each instance reads the group's lines anew just before the flip:
 * FRESH_LEAD before it, waiting up to FRESH_LATE after it.  The followers'
 * lines went out as they began to follow (slot_note); what still holds the
 * server out then (an instance that does not reach it) holds it out on
 * every instance alike, not on each until its own next round.  A round
 * out when asked is let end and the next one is read: two rounds, tens
 * of ms each under load (with a lead of 25 ms, the round read ended 26-33
 * ms after the flip on two instances of t/50_peers.t once, too late: they
 * published the server at their next round, MEMSESS0091). */
#define FRESH_LEAD apr_time_from_msec(75)
#define FRESH_LATE apr_time_from_msec(25)

static void flip_fresh(sync_job_t *job)
{
    /* by our monotonic clock (memsess_joblock.h) */
    apr_time_t at = job->lock.flip_mono;

    if (at - memsess_mono_now() > 2 * MEMSESS_FLIP_DELAY
        || !memsess_exchange_others(job->c->exchange)) {
        return;   /* a clock apart (memsess_joblock_wait_flip does not wait
                   * for it either), or alone */
    }
    while (!job->stop && memsess_mono_now() < at - FRESH_LEAD) {
        apr_sleep(apr_time_from_msec(5));
    }
    if (!job->stop) {
        memsess_exchange_fresh(job->c->exchange, at + FRESH_LATE);
    }
}

static void sync_progress(void *baton, const memsess_sync_stats_t *st)
{
    sync_job_t *job = baton;

    slot_note(job, st, NULL);
    memsess_joblock_refresh(&job->lock, 0, 0);
}

static int sync_fence(void *baton)
{
    return memsess_joblock_fence(&((sync_job_t *)baton)->lock);
}

/* Others of the group take their locks within this of the flip time. */
#define FLIP_SETTLE apr_time_from_msec(50)

/* The views whose list has the server (as in force): their list changes
 * at its flip. */
static void gated_views(sync_job_t *job)
{
    memsess_runtime_t *rt = job->c->rt;
    int v, i;

    if (!job->gated) {
        job->gated = apr_pcalloc(job->pool, rt->confs->nelts * sizeof(int));
    }
    for (v = 0; v < rt->confs->nelts; v++) {
        const apr_array_header_t *servers
            = memsess_view_in_force(rt, v)->pool->servers;

        job->gated[v] = 0;
        for (i = 0; i < servers->nelts; i++) {
            job->gated[v] |= APR_ARRAY_IDX(servers, i,
                                           memsess_server_t).slot == job->slot;
        }
    }
}

/* Publishes the server when every list it synced against is still the
 * one published.  Returns 1, or 0 with why in err. */
static int sync_flip(sync_job_t *job, const memsess_sync_stats_t *st,
                     int gate, char *err, apr_size_t errlen)
{
    memsess_rejoin_t *c = job->c;
    memsess_runtime_t *rt = c->rt;
    memsess_slot_t *slot = memsess_table_slot(rt->table, job->slot);
    apr_pool_t *p;
    int k, ok = 1, nflipped = 0;

    apr_pool_create(&p, job->pool);
    if (!memsess_table_lease_lock(rt->table, c->mutex)
        || (job->stop && !memsess_joblock_flips(&job->lock))
        || slot->state != MEMSESS_SYNCING) {
        apr_cpystrn(err, "stopped: it failed a probe, or checking moved to "
                    "another process", errlen);
        ok = 0;
    }
    for (k = 0; ok && k < job->spec.nlists; k++) {
        if (strcmp(view_path(c, p, job->list_view[k], job->slot, 0, NULL),
                   job->lists[k].path_now)) {
            apr_snprintf(err, errlen, "the list of %s changed meanwhile",
                         rt->views[job->list_view[k]].name);
            ok = 0;
        }
    }
    if (ok) {
        memsess_table_write_begin(rt->table);
        if (*job->lock.holder && slot->peer_down
            && !strcmp(slot->reported_by, job->lock.holder)) {
            /* the holder's line, taken out at its next round, holds it out
             * no longer: it is published at this very flip everywhere */
            slot->peer_down = 0;
            slot->reported_by[0] = '\0';
        }
        memsess_slot_sync_end(slot, 1, NULL, apr_time_sec(apr_time_now()));
        c->unfinished[job->slot] = 0;
        slot->resume_since = slot->resume_pid = slot->resume_started = 0;
        slot->sync_examined = st->examined;
        slot->sync_copied = st->copied;
        slot->sync_deleted = st->deleted;
        slot->sync_memory = st->memory;
        slot->sync_listed = st->lines;
        slot->sync_expected = st->expected;
        slot->sync_mode = job->delta ? MEMSESS_SYNC_DELTA : MEMSESS_SYNC_FULL;
        memsess_table_bump_generation(rt->table, 1);
        nflipped = memsess_table_publish(rt->table, rt->views,
                                         rt->confs->nelts, job->slot,
                                         c->flipped);
        if (gate) {
            /* requests of its views wait for what the old list wrote */
            gated_views(job);
            memsess_gate_close(&job->gate, rt, c->mutex, job->gated,
                               job->started,
                               job->share ? memsess_mono_now() + FLIP_SETTLE
                                          : 0,
                               &job->stop);
        }
        memsess_table_write_end(rt->table);
        if (gate) {
            memsess_gate_flipped(&job->gate);
        }
        for (k = 0; k < nflipped; k++) {
            memsess_view_log_all_down(rt, &rt->views[c->flipped[k]], 0);
        }
    }
    apr_thread_mutex_unlock(c->mutex);
    if (ok && job->stop) {
        memsess_joblock_flipped_stopping(&job->lock);
    }
    apr_pool_destroy(p);
    return ok;
}

/* The sync failed or was stopped: the server goes (or stays) down. */
static void sync_abandon(sync_job_t *job, const char *why)
{
    memsess_rejoin_t *c = job->c;
    memsess_runtime_t *rt = c->rt;
    memsess_slot_t *slot = memsess_table_slot(rt->table, job->slot);

    if (memsess_table_lease_lock(rt->table, c->mutex)) {
        memsess_table_write_begin(rt->table);
        if (memsess_slot_sync_end(slot, 0, apr_pstrcat(job->pool, "sync: ",
                                                       why, NULL),
                                  apr_time_sec(apr_time_now()))) {
            memsess_table_bump_generation(rt->table, 1);
        }
        memsess_table_write_end(rt->table);
    }
    apr_thread_mutex_unlock(c->mutex);
}

static void sync_sleep(sync_job_t *job, apr_interval_time_t t)
{
    /* a duration: by the monotonic clock (a wall clock stepped back
     * would stretch it) */
    apr_time_t until = memsess_mono_now() + t;

    while (!job->stop && memsess_mono_now() < until) {
        apr_sleep(apr_time_from_msec(20));
    }
}

/* Whether a follower gates its flip: a list of it moves, its keys can be
 * read (not memcached -S), and requests are kept (memsess_flight.c). */
static int follow_gated(const sync_job_t *job)
{
    const memsess_runtime_t *rt = job->c->rt;

    return job->spec.nlists > 0 && !rt->credentials[job->slot]
           && rt->flight != NULL;
}

/* The shared job's note (memsess_joblock.c). */
static void note_sync_by(void *baton, const char *holder)
{
    slot_note(baton, NULL, holder);
}

/* The holder, after its flip: waits until the server is live here (every
 * other instance published it: no line holds it out), keeping its record
 * (done) fresh for those still to follow.  Returns 0 when that did not
 * happen in JOB_LIVE_WAIT. */
static int job_wait_live(sync_job_t *job)
{
    memsess_rejoin_t *c = job->c;
    memsess_slot_t *slot = memsess_table_slot(c->rt->table, job->slot);
    apr_time_t until = memsess_mono_now() + JOB_LIVE_WAIT;

    while (!job->stop && memsess_mono_now() < until) {
        int live;

        apr_thread_mutex_lock(c->mutex);
        live = MEMSESS_SLOT_LIVE(slot);
        apr_thread_mutex_unlock(c->mutex);
        if (live) {
            return 1;
        }
        memsess_joblock_refresh(&job->lock, 1, 0);
        apr_sleep(apr_time_from_msec(20));
    }
    return 0;
}

/* After the flip: the active sessions guarded by their lock until the
 * requests that got the old list are done with them; what was written at
 * an authority during it, then (after a grace) what requests that got the
 * old list wrote as they finished; and copies no list places any more
 * go. */
static void sync_after(sync_job_t *job, memsess_sync_t *sync,
                       const memsess_sync_stats_t *before,
                       apr_time_t flipped_at, int nheld, int nguarded)
{
    memsess_runtime_t *rt = job->c->rt;
    const memsess_sync_stats_t *all;
    apr_uint64_t copied = memsess_sync_stats(sync)->copied;
    char err[256] = "";
    apr_status_t rv;
    memsess_flip_wait_t wait;
    int stopping;

    memsess_gate_wait(&job->gate, &wait);
    /* the job stays done (fresh) for whoever still comes to follow it */
    memsess_joblock_refresh(&job->lock, 1, 1);
    /* told to stop at a flip made with the group (a graceful): the
     * guard runs its course all the same (its locks 250 ms at most,
     * its watch 600 ms) for the late writes of the others' requests
     * that had the old list */
    stopping = memsess_joblock_guard_begin(&job->lock, &job->stop);
    rv = memsess_sync_flipped(sync, &wait, err, sizeof(err));
    memsess_joblock_guard_end(&job->lock, &job->stop, stopping);
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0043: "
                 "memcached server %s: at its flip, %d active sessions "
                 "guarded by their lock (%d held under the new list) until "
                 "the requests that had the old list were done: %"
                 APR_UINT64_T_FMT " of their writes brought over, in %"
                 APR_TIME_T_FMT "ms; %s%s%s", job->spec.returning, nguarded,
                 nheld, memsess_sync_stats(sync)->copied - copied,
                 apr_time_as_msec(apr_time_now() - flipped_at),
                 memsess_gate_text(job->pool, &job->gate,
                                   memsess_sync_recent_brought(sync),
                                   memsess_sync_late_brought(sync)),
                 rv == APR_SUCCESS ? "" : "; stopped: ",
                 rv == APR_SUCCESS ? "" : err);
    if (job->share) {
        /* requests take the new list once no instance holds it out */
        if (!job_wait_live(job)) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0041: "
                         "memcached server %s: synced and published here, "
                         "but %s: whoever publishes it last syncs it again",
                         job->spec.returning, job->stop
                         ? "this sync was stopped"
                         : "another instance still holds it out after "
                           "10 s");
            memsess_joblock_release(&job->lock);
            return;
        }
        flipped_at = apr_time_now();
    }
    rv = memsess_sync_after(sync, 0, err, sizeof(err));
    if (rv == APR_SUCCESS) {
        memsess_joblock_refresh(&job->lock, 1, 1);
        sync_sleep(job, SYNC_GRACE);
        /* the instances that follow from here on sync themselves: what
         * they wrote meanwhile comes after this last pass */
        memsess_joblock_release(&job->lock);
        rv = job->stop ? APR_EINTR
                       : memsess_sync_after(sync, 1, err, sizeof(err));
    }
    memsess_joblock_release(&job->lock);
    all = memsess_sync_stats(sync);
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0035: "
                 "memcached server %s: after its flip, %" APR_UINT64_T_FMT
                 " late writes of the old list brought over, %"
                 APR_UINT64_T_FMT " copies no list places any more "
                 "removed, in %" APR_TIME_T_FMT "ms%s%s",
                 job->spec.returning, all->copied - before->copied,
                 all->deleted - before->deleted,
                 apr_time_as_msec(apr_time_now() - flipped_at),
                 rv == APR_SUCCESS ? "" : "; stopped: ",
                 rv == APR_SUCCESS ? "" : err);
}

/* A server whose keys cannot be listed cannot be synced: its memcached
 * refuses "lru_crawler metadump" (older than 1.4.31, or the crawler off),
 * or it speaks SASL (memcached -S), where the text protocol a listing
 * needs is closed.  It is emptied instead, as MemsessRejoin flush would,
 * so it never serves what it held before its outage; its users log in
 * again.  Returns APR_SUCCESS, or why it could not be emptied either. */
static apr_status_t empty_instead(sync_job_t *job, char *err,
                                  apr_size_t errlen)
{
    memcached_st *mc;
    memcached_return_t rc;

    if (!memsess_joblock_fence(&job->lock)) {
        apr_cpystrn(err, "not emptied: the job's lease lapsed or another "
                    "instance took the job over", errlen);
        return APR_EGENERAL;
    }
    mc = memsess_connect(job->c->rt, job->slot, job->c->rt->g.timeout);
    rc = mc ? memcached_flush(mc, 0) : MEMCACHED_FAILURE;
    if (!memcached_success(rc)) {
        apr_snprintf(err, errlen, "it cannot be emptied either: %s",
                     mc ? memcached_strerror(mc, rc) : "no connection");
    }
    memsess_disconnect(mc);
    return memcached_success(rc) ? APR_SUCCESS : APR_EGENERAL;
}

/* For MEMSESS0031: the memory its sync held, what it took from its
 * authorities' logs of writes (memsess_feed.c), and the reads it had to
 * try again, if any. */
static const char *retried_text(sync_job_t *job, memsess_sync_t *sync)
{
    const memsess_sync_stats_t *st = sync ? memsess_sync_stats(sync) : NULL;

    if (!st) {
        return "";
    }
    return apr_psprintf(job->pool, "; %" APR_UINT64_T_FMT " KB held at "
                        "most%s%s", (st->memory + 1023) / 1024,
                        memsess_sync_feed_text(job->pool, st),
                        st->retried ? apr_psprintf(job->pool, "; %"
                                                   APR_UINT64_T_FMT " reads "
                                                   "timed out and were tried "
                                                   "again", st->retried)
                                    : "");
}

/* For MEMSESS0031: which sync ran, and why not a delta one. */
static const char *sync_mode_text(sync_job_t *job, memsess_sync_t *sync,
                                  const memsess_sync_stats_t *st,
                                  apr_time_t start)
{
    if (!sync) {
        if (job->unwitnessed) {
            return "; nothing to sync from: every other live server of its "
                   "pools came back after its outage began without a sync "
                   "of its own (the whole pool was down): it is published "
                   "as it is, nothing it holds deleted";
        }
        if (job->as_is) {
            return "; not synced: another memcached process, taken back as "
                   "it is (MEMSESS0048)";
        }
        return job->spec.nlists ? "" : "; nothing to sync: its pools are "
               "MemsessFormat memcache (pecl-memcache places keys its own "
               "way), or every other server of them is down";
    }
    if (!st->listed && st->lines >= MEMSESS_NO_SESSION_LINES) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, job->c->rt->main,
                     "MEMSESS0045: memcached server %s: the sync listed %"
                     APR_UINT64_T_FMT " keys and not one PHP session among "
                     "them: does PHP place its sessions as this module "
                     "thinks (memcached.sess_prefix \"%s\", the pool's "
                     "servers)?", job->spec.returning, st->lines,
                     job->spec.prefix);
    }
    if (memsess_sync_delta(sync) && job->resumed) {
        return apr_psprintf(job->pool, "; resumed: a sync of it that was "
                            "stopped before it was published wrote to the "
                            "memcached process that answers (pid %"
                            APR_INT64_T_FMT "): only what changed since "
                            "its outage began (%" APR_TIME_T_FMT "s before "
                            "this sync), and what it lacks, was examined, "
                            "of %" APR_UINT64_T_FMT " keys listed",
                            job->spec.pid,
                            apr_time_sec(start - job->spec.since
                                         + APR_USEC_PER_SEC - 1),
                            st->listed);
    }
    if (memsess_sync_delta(sync)) {
        return apr_psprintf(job->pool, "; delta sync: the same memcached "
                            "process (pid %" APR_INT64_T_FMT ") came back, "
                            "only what changed since %" APR_TIME_T_FMT "s "
                            "before this sync began was examined, of %"
                            APR_UINT64_T_FMT " keys listed", job->spec.pid,
                            apr_time_sec(start - job->spec.since
                                         + APR_USEC_PER_SEC - 1),
                            st->listed);
    }
    return apr_pstrcat(job->pool, "; full sync: ",
                       memsess_sync_mode(sync) ? memsess_sync_mode(sync)
                                               : job->full_why, NULL);
}

/* The sync begins to write to the returning server: its resume record
 * (slot resume_*, in shared memory: it outlives a graceful and the
 * checker process) names this start and the memcached process that
 * answers, unless it names that process already (an earlier start: kept).
 * A sync stopped before it is published is then resumed, not started
 * over (memsess_sync_delta_since); the flip clears it. */
static void resume_note(sync_job_t *job, apr_time_t start)
{
    memsess_rejoin_t *c = job->c;
    memsess_runtime_t *rt = c->rt;
    memsess_slot_t *slot = memsess_table_slot(rt->table, job->slot);

    if (memsess_table_lease_lock(rt->table, c->mutex)
        && (!slot->resume_since
            || !memsess_sync_same_process(slot->resume_pid,
                                          slot->resume_started,
                                          slot->proc_pid,
                                          slot->proc_started))) {
        memsess_table_write_begin(rt->table);
        slot->resume_since = start;
        slot->resume_pid = slot->proc_pid;
        slot->resume_started = slot->proc_started;
        memsess_table_write_end(rt->table);
    }
    apr_thread_mutex_unlock(c->mutex);
}

static void *APR_THREAD_FUNC sync_thread(apr_thread_t *thread, void *data)
{
    sync_job_t *job = data;
    memsess_runtime_t *rt = job->c->rt;
    apr_time_t start = apr_time_now(), flipped_at;
    memsess_sync_stats_t before;
    memsess_sync_t *sync;
    char err[256] = "";
    apr_status_t rv = APR_EGENERAL;
    memsess_claim_e claim = MEMSESS_CLAIM_HOLD;
    int nheld = 0, nguarded = 0, gated;

    (void)thread;
    job->started = start;
    memset(&before, 0, sizeof(before));
    /* a job for the group: a sync, or with nothing to sync from (every
     * other server down too) a restore from the database, which one
     * instance runs for all rather than each its own */
    if ((job->spec.nlists || (job->renewed && job->persist_next))
        && job->share) {
        job->lock.subject = apr_pstrcat(job->pool, "memcached server ",
                                        job->spec.returning, NULL);
        job->lock.job = "its sync";
        job->lock.stop = &job->stop;
        /* a sync done before this outage began is not this outage's */
        job->lock.not_before = job->down_since
                               ? apr_time_sec(job->down_since)
                                 - MEMSESS_JOB_SKEW
                               : 0;
        /* nor is one published before it last went out here (a flap
         * right after a flip: what was written meanwhile went elsewhere) */
        job->lock.out_since = job->out_since;
        job->lock.not_before_off_ms = job->down_off_ms;
        job->lock.out_off_ms = job->out_off_ms;
        job->lock.note = note_sync_by;
        job->lock.baton = job;
        job->lock.ungate = job->c->ungate;
        if (memsess_joblock_open(&job->lock, rt, job->slot,
                                 job->spec.returning,
                                 job->spec.timeout, job->pool)
            == APR_SUCCESS) {
            claim = memsess_joblock_claim(&job->lock, err, sizeof(err));
        }
        else {
            claim = MEMSESS_CLAIM_FAILED;
            apr_cpystrn(err, "cannot connect for its job record", sizeof(err));
        }
    }
    if (claim == MEMSESS_CLAIM_FAILED || claim == MEMSESS_CLAIM_FOLLOW) {
        rv = claim == MEMSESS_CLAIM_FOLLOW ? APR_SUCCESS : APR_EGENERAL;
        sync = NULL;
    }
    else if (!job->spec.nlists) {
        rv = APR_SUCCESS;   /* nothing to sync from: published at once */
        sync = NULL;
    }
    else if (rt->credentials[job->slot]) {
        rv = APR_ENOTIMPL;
        sync = NULL;
        apr_cpystrn(err, "its keys cannot be listed: it speaks SASL",
                    sizeof(err));
    }
    else if ((sync = memsess_sync_create(job->pool, &job->spec, err,
                                         sizeof(err)))) {
        resume_note(job, start);
        rv = memsess_sync_before(sync, err, sizeof(err));
        before = *memsess_sync_stats(sync);
        job->delta = memsess_sync_delta(sync);
    }
    if (rv == APR_ENOTIMPL && !job->stop
        && (job->new_process || job->kept_keys)
        && rt->g.rejoin != MEMSESS_REJOIN_FLUSH) {
        /* no listing, so no sync: never a flush where another site's keys
         * may live unless MemsessRejoin flush says so.  Another process
         * holds nothing of ours (it started empty, out of every list):
         * taken back as it is.  The process that went down kept what it
         * held, stale copies of ours among it: refused */
        memsess_sync_destroy(sync);
        sync = NULL;
        memset(&before, 0, sizeof(before));
        if (job->new_process) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                         "MEMSESS0048: memcached server %s cannot be synced "
                         "(%s): it came back as another memcached process "
                         "(pid %" APR_INT64_T_FMT "), started empty and out "
                         "of every list since: taken back as it is, nothing "
                         "emptied", job->spec.returning, err,
                         memsess_table_slot(rt->table, job->slot)->proc_pid);
            job->as_is = 1;
            rv = APR_SUCCESS;
        }
        else {
            int first;

            apr_thread_mutex_lock(job->c->mutex);
            first = job->c->refused[job->slot] != job->down_since;
            job->c->refused[job->slot] = job->down_since;
            apr_thread_mutex_unlock(job->c->mutex);
            job->refused = 1;
            if (first) {
                ap_log_error(APLOG_MARK, APLOG_ERR, 0, rt->main,
                             "MEMSESS0047: memcached server %s is not taken "
                             "back: the memcached process that went down "
                             "came back with what it held (stale sessions "
                             "of this site among it), and its keys cannot "
                             "be listed (%s), so they can be neither synced "
                             "nor told from another site's: it stays out "
                             "until it is restarted (it then comes back "
                             "empty and is taken back), or set MemsessRejoin "
                             "flush if these servers hold nothing but this "
                             "site's keys", job->spec.returning, err);
            }
            apr_cpystrn(err, "refused: it kept its keys and they cannot be "
                        "listed (MEMSESS0047)", sizeof(err));
            rv = APR_EGENERAL;
        }
    }
    if (rv == APR_ENOTIMPL && !job->stop) {
        char why[256];

        apr_cpystrn(why, err, sizeof(why));
        memsess_sync_destroy(sync);
        sync = NULL;
        memset(&before, 0, sizeof(before));
        rv = empty_instead(job, err, sizeof(err));
        if (rv == APR_SUCCESS && job->share) {
            memsess_joblock_rewrite(&job->lock);   /* the flush took it */
        }
        if (rv == APR_SUCCESS) {
            /* loud: whatever else it held went too (an application
             * cache, another site's sessions: no namespace spares them) */
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, rt->main,
                         "MEMSESS0036: memcached server %s cannot be synced "
                         "(%s): emptied instead (flush_all), as MemsessRejoin "
                         "flush would: every key it held went, this site's "
                         "sessions and anything else on it (another site's, "
                         "a cache); give such a server to this site alone, "
                         "or set MemsessRejoin keep", job->spec.returning,
                         why);
        }
        else {
            apr_cpystrn(err, apr_pstrcat(job->pool, why, "; ", err, NULL),
                        sizeof(err));
        }
    }
    if (rv == APR_SUCCESS && claim == MEMSESS_CLAIM_HOLD && job->renewed
        && job->persist_next) {
        /* it came back empty: what no survivor holds comes back from the
         * database before it is published (after the sync's passes,
         * which would take a restored session for a logout) */
        int v;

        for (v = 0; v < rt->confs->nelts && rv == APR_SUCCESS; v++) {
            if (job->persist_next[v] && !job->stop) {
                rv = memsess_persist_restore(rt, job->c->mutex, v, job->slot,
                                             job->persist_next[v],
                                             job->survivor, job->pool, err,
                                             sizeof(err));
            }
        }
        if (job->stop && rv == APR_SUCCESS) {
            rv = APR_EINTR;
            apr_cpystrn(err, "stopped", sizeof(err));
        }
    }
    if (sync && rv == APR_SUCCESS && claim != MEMSESS_CLAIM_FOLLOW) {
        /* the active sessions' locks under the new list, nobody's yet:
         * taken before the flip time is written, so that no instance of
         * the group publishes before they are held */
        nheld = memsess_sync_hold_hot(sync, &nguarded);
    }
    if (rv == APR_SUCCESS && claim != MEMSESS_CLAIM_FAILED && job->share) {
        /* all publish it at once: the holder at the flip time it writes,
         * the others at the one they read */
        if (job->lock.holding) {
            memsess_joblock_done(&job->lock,
                                 !memsess_exchange_others(job->c->exchange));
        }
        memsess_joblock_prepare_flip(&job->lock, job->c->mutex, job->slot,
                                     NULL);
        flip_fresh(job);
        memsess_joblock_wait_flip(&job->lock);
    }
    gated = claim == MEMSESS_CLAIM_FOLLOW && follow_gated(job);
    if (claim == MEMSESS_CLAIM_FOLLOW
        && sync_flip(job, &before, gated, err, sizeof(err))) {
        /* its requests wait at the flip as the holder's do, and what
         * they used that the holder's listings missed is brought over */
        int late = 0, brought = gated
                      ? memsess_gate_follow(&job->gate, &job->spec, job->pool,
                                          &late)
                      : 0;

        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0038: "
                     "memcached server %s was synced by %s for the group: "
                     "up here with it after %" APR_TIME_T_FMT "ms; %s",
                     job->spec.returning, job->lock.holder,
                     apr_time_as_msec(apr_time_now() - start),
                     gated ? memsess_gate_text(job->pool, &job->gate,
                                               brought, late)
                           : "no list of it to gate");
        /* busy until it is live here: the lines of others going do not
         * start another sync of it (memsess_exchange.c) */
        job_wait_live(job);
    }
    else if (claim != MEMSESS_CLAIM_FOLLOW && rv == APR_SUCCESS
             && sync_flip(job, &before, sync != NULL, err, sizeof(err))) {
        flipped_at = apr_time_now();
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0031: "
                     "memcached server %s synced and up after %" APR_TIME_T_FMT
                     "ms: %" APR_UINT64_T_FMT " keys examined, %"
                     APR_UINT64_T_FMT " copied to it, %" APR_UINT64_T_FMT
                     " deleted (stale, locks), %" APR_UINT64_T_FMT " already "
                     "equal, %" APR_UINT64_T_FMT " left as newer%s%s",
                     job->spec.returning, apr_time_as_msec(flipped_at - start),
                     before.examined, before.copied, before.deleted,
                     before.same, before.newer,
                     sync_mode_text(job, sync, &before, start),
                     retried_text(job, sync));
        if (sync) {
            sync_after(job, sync, &before, flipped_at, nheld, nguarded);
        }
        else if (job->lock.holding) {
            /* emptied instead: the others publish it with us, none
             * empties it again once it takes sessions */
            memsess_joblock_refresh(&job->lock, 1, 1);
            if (job_wait_live(job)) {
                sync_sleep(job, SYNC_GRACE);
            }
            memsess_joblock_release(&job->lock);
        }
    }
    else {
        memsess_joblock_cancel_flip(&job->lock, job->c->mutex, job->slot,
                                    NULL);
        memsess_sync_unhold(sync);
        if (job->lock.lost) {
            apr_cpystrn(err, "another instance took its sync over",
                        sizeof(err));
        }
        /* the next instance takes it at once; once done, it follows,
         * unless the server itself failed meanwhile (down again: it may
         * come back empty, and a new outage gets a sync of its own) */
        if (memsess_table_slot(rt->table, job->slot)->state
            == MEMSESS_SYNCING) {
            memsess_joblock_abandon(&job->lock);
        }
        else {
            memsess_joblock_release(&job->lock);
        }
        if (apr_atomic_read32(&job->c->stopping)
            && rt->g.rejoin == MEMSESS_REJOIN_SYNC
            && memsess_table_slot(rt->table, job->slot)->state
               == MEMSESS_SYNCING) {
            /* the checker stops (a graceful, a restart, checking taken
             * over): the server stays syncing, out, and the next checker
             * starts its sync again at once (memsess_check.c,
             * MEMSESS0202), its views gated until it has read the job's
             * record.  Set down instead, it waited there for two good
             * probes, and a restarted follower served the list without
             * the server after the group's flip (t/50_peers.t). */
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                         "MEMSESS0205: rejoin sync of memcached server %s "
                         "stopped after %" APR_TIME_T_FMT "ms: the checker "
                         "stops; the server stays out, and the next checker "
                         "starts its sync again at once", job->spec.returning,
                         apr_time_as_msec(apr_time_now() - start));
        }
        else {
            sync_abandon(job, err[0] ? err : "failed");
            if (!job->refused) {
                ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                             "MEMSESS0033: rejoin sync of memcached server "
                             "%s stopped after %" APR_TIME_T_FMT "ms (%s): "
                             "it stays down and is synced again after its "
                             "next good probes", job->spec.returning,
                             apr_time_as_msec(apr_time_now() - start), err);
            }
        }
    }
    memsess_sync_destroy(sync);
    memsess_joblock_close(&job->lock);
    memsess_joblock_ungate(&job->lock, job->c->mutex);
    apr_atomic_set32(&job->done, 1);
    return NULL;
}

/* Whether the server of slot i returns as the memcached process that
 * went down, with nothing uncertain: then spec asks for a delta sync
 * (spec->since) and NULL is returned, else why it gets a full one.  The
 * caller holds the mutex, which serialises the table's writers (the
 * checker fills proc_* and down_*).  What this process saw itself counts
 * too: a sync of it that started here and was not published (what it
 * holds is not what it held when it went down), and when it was last
 * published (a server held out by another instance of the group before
 * its own probes failed was out since then: the earlier of the two is
 * when its outage began).  A new checker has seen neither: full. */
static const char *rejoin_facts(memsess_rejoin_t *c, int i,
                                memsess_sync_spec_t *spec, int *resumed)
{
    const memsess_slot_t *slot = memsess_table_slot(c->rt->table, i);
    memsess_rejoin_facts_t f;
    apr_time_t since = 0;
    apr_interval_time_t margin;
    const char *why;

    f.down_pid = slot->down_pid;
    f.down_started = slot->down_started;
    f.proc_pid = slot->proc_pid;
    f.proc_started = slot->proc_started;
    /* in our clock as it is now (memsess_sync_their_secs() takes how long
     * ago it was by it) */
    f.down_since = slot->down_since
                   ? apr_time_from_msec(memsess_clock_moved_ms(
                         apr_time_as_msec(slot->down_since),
                         slot->down_off_ms, memsess_clock_offset_ms()))
                   : 0;
    f.last_live = c->last_live[i];
    f.unfinished = c->unfinished[i];
    f.resume_since = slot->resume_since;
    f.resume_pid = slot->resume_pid;
    f.resume_started = slot->resume_started;
    /* memcached's clock ticks once a second and probes are an interval
     * apart: the server may have stopped up to an interval and a timeout
     * before its first failed probe; 3 s more for the granularity of
     * the last-access times and of the clocks read.  In a group, another
     * instance may have stopped using it first, its line reaching us
     * within a line's lifetime */
    margin = c->rt->g.interval + c->rt->g.timeout + apr_time_from_sec(3);
    if (c->rt->g.share) {
        margin += apr_time_from_sec(memsess_share_ttl(c->rt));
    }
    why = memsess_sync_delta_since(&f, margin, apr_time_now(), &since);
    *resumed = f.resumed;
    if (!why) {
        spec->since = since;
        spec->pid = f.proc_pid;
        spec->started = f.proc_started;
    }
    return why;
}

/* When slot's outage began, less a margin for what probes and memcached's
 * clocks cannot tell apart. */
static apr_time_t outage_began(const memsess_runtime_t *rt,
                               const memsess_slot_t *slot)
{
    return slot->down_since - rt->g.interval - rt->g.timeout
           - apr_time_from_sec(3);
}

/* Whether slot came back as the memcached process it was (its memory
 * kept), as far as its probes know. */
static int same_process(const memsess_slot_t *slot)
{
    return slot->down_pid && slot->proc_pid
           && slot->down_pid == slot->proc_pid
           && slot->down_started == slot->proc_started;
}

/* MemsessPersist: whether slot i comes back as a new memcached process
 * (its memory lost: it is restored from the database before it is
 * published), the lists its persisted views publish next, and which live
 * servers kept their memory through its outage (not found renewed since
 * it began, less a margin).  The caller holds the mutex. */
static void persist_facts(memsess_rejoin_t *c, int i, sync_job_t *job)
{
    memsess_runtime_t *rt = c->rt;
    const memsess_slot_t *slot = memsess_table_slot(rt->table, i);
    apr_time_t now = apr_time_now();
    apr_time_t began = outage_began(rt, slot);
    int v, k, any = 0;

    for (v = 0; v < rt->confs->nelts; v++) {
        any |= rt->views[v].persist == MEMSESS_PERSIST_DBD;
    }
    if (!any) {
        return;
    }
    job->renewed = !same_process(slot);
    if (job->renewed) {
        c->renewed[i] = now;
    }
    job->persist_next = apr_pcalloc(job->pool,
                                    rt->confs->nelts * sizeof(char *));
    job->survivor = apr_pcalloc(job->pool, rt->targets->nelts);
    for (k = 0; k < rt->targets->nelts; k++) {
        const memsess_slot_t *o = memsess_table_slot(rt->table, k);

        job->survivor[k] = k != i && MEMSESS_SLOT_LIVE(o)
                           && !(c->renewed[k] && c->renewed[k] >= began);
    }
    for (v = 0; v < rt->confs->nelts; v++) {
        const memsess_view_t *view = memsess_view_in_force(rt, v);
        int holds = 0;

        if (rt->views[v].persist != MEMSESS_PERSIST_DBD
            || view->format != MEMSESS_FORMAT_MEMCACHED) {
            continue;
        }
        for (k = 0; k < view->pool->servers->nelts; k++) {
            holds |= APR_ARRAY_IDX(view->pool->servers, k,
                                   memsess_server_t).slot == i;
        }
        if (holds) {
            job->persist_next[v] = view_path(c, job->pool, v, i, 1, NULL);
        }
    }
}

/* Whether a live server of view v other than i can testify for i's
 * outage (the authority of a sync whose missing keys are logouts): one
 * that was not itself published with nothing to sync from since i's
 * outage began (the whole pool down, and back one by one: the first back
 * lacks what the others hold, and a sync from it deleted it: 6,736 of
 * 20,000 sessions once).  The caller holds the mutex. */
static int witnessed(memsess_rejoin_t *c, int v, int i)
{
    memsess_runtime_t *rt = c->rt;
    const apr_array_header_t *servers = memsess_view_in_force(rt, v)
                                        ->pool->servers;
    apr_time_t began = outage_began(rt, memsess_table_slot(rt->table, i));
    int k;

    for (k = 0; k < servers->nelts; k++) {
        int s = APR_ARRAY_IDX(servers, k, memsess_server_t).slot;

        if (s != i && MEMSESS_SLOT_LIVE(memsess_table_slot(rt->table, s))
            && !(c->unsynced[s] && c->unsynced[s] >= began)) {
            return 1;
        }
    }
    return 0;
}

/* Starts the sync of slot i, just marked SYNCING; the caller holds the
 * mutex.  One spec per distinct (list now, list next) among its views of
 * format memcached (pecl-memcache places keys its own way: its views keep
 * what the server holds). */
static void start_now(memsess_rejoin_t *c, int i)
{
    memsess_runtime_t *rt = c->rt;
    apr_pool_t *pool;
    apr_threadattr_t *attr;
    sync_job_t *job;
    apr_status_t rv;
    int v, k, kept;

    /* a root pool: a probe thread creates it, the watchdog thread destroys
     * it, neither under one lock with the checker's pool */
    apr_pool_create(&pool, NULL);
    job = apr_pcalloc(pool, sizeof(*job));
    job->c = c;
    job->slot = i;
    job->pool = pool;
    job->lists = apr_pcalloc(pool, rt->confs->nelts * sizeof(*job->lists));
    job->list_view = apr_pcalloc(pool, rt->confs->nelts * sizeof(int));
    job->spec.returning = APR_ARRAY_IDX(rt->targets, i,
                                        memsess_server_t *)->addr;
    job->spec.lists = job->lists;
    job->spec.rate = rt->g.sync_rate;
    /* the namespace in force (a rebalance into another may be pending) */
    job->spec.prefix = memsess_prefix_in_force(rt, NULL);
    job->spec.timeout = rt->g.timeout > apr_time_from_msec(500)
                        ? rt->g.timeout : apr_time_from_msec(500);
    job->spec.stop = &job->stop;
    job->spec.progress = sync_progress;
    job->spec.fence = sync_fence;
    job->spec.feed = MEMSESS_SYNC_FEED;
    job->spec.feed_min = MEMSESS_SYNC_FEED_MIN;
    job->spec.baton = job;
    /* the same memcached process came back (its memory kept): what a sync
     * could do is delete, and only a witness may say what */
    kept = same_process(memsess_table_slot(rt->table, i));
    job->kept_keys = kept;
    job->new_process = !kept && memsess_table_slot(rt->table, i)->down_pid
                       && memsess_table_slot(rt->table, i)->proc_pid;
    for (v = 0; v < rt->confs->nelts; v++) {
        const memsess_view_t *view = memsess_view_in_force(rt, v);
        const apr_array_header_t *servers = view->pool->servers;
        memsess_sync_list_t *l = &job->lists[job->spec.nlists];
        int holds = 0, nlive;

        for (k = 0; k < servers->nelts; k++) {
            holds |= APR_ARRAY_IDX(servers, k, memsess_server_t).slot == i;
        }
        if (!holds || view->format != MEMSESS_FORMAT_MEMCACHED) {
            continue;
        }
        l->path_now = view_path(c, pool, v, i, 0, &nlive);
        if (!nlive) {
            /* every other server is down: requests get the full list (fail
             * open) and there is no authority to sync from */
            continue;
        }
        if (kept && !witnessed(c, v, i)) {
            job->unwitnessed = 1;   /* none to sync from either */
            continue;
        }
        l->path_next = view_path(c, pool, v, i, 1, NULL);
        l->replicas = view->replicas;
        l->ketama = view->ketama;
        for (k = 0; k < job->spec.nlists; k++) {
            const memsess_sync_list_t *o = &job->lists[k];

            if (!strcmp(o->path_now, l->path_now)
                && !strcmp(o->path_next, l->path_next)
                && o->replicas == l->replicas && o->ketama == l->ketama) {
                break;
            }
        }
        if (k == job->spec.nlists) {
            job->list_view[job->spec.nlists++] = v;
        }
    }
    if (!job->spec.nlists) {
        c->unsynced[i] = apr_time_now();   /* published as it is */
    }
    persist_facts(c, i, job);
    job->full_why = rejoin_facts(c, i, &job->spec, &job->resumed);
    job->down_since = memsess_table_slot(rt->table, i)->down_since;
    job->out_since = memsess_table_slot(rt->table, i)->out_since;
    job->down_off_ms = memsess_table_slot(rt->table, i)->down_off_ms;
    job->out_off_ms = memsess_table_slot(rt->table, i)->out_off_ms;
    c->unfinished[i] = 1;
    job->share = rt->g.share && memsess_exchange_sharing(c->exchange);
    job->lock.fingerprint = MEMSESS_FNV1A_INIT;
    for (k = 0; k < job->spec.nlists; k++) {
        const memsess_sync_list_t *l = &job->lists[k];

        job->lock.fingerprint = memsess_fnv1a_more(
            job->lock.fingerprint,
            apr_psprintf(pool, "%s|%s|%d|%d;", l->path_now, l->path_next,
                         l->replicas, l->ketama));
    }
    apr_threadattr_create(&attr, pool);
    rv = apr_thread_create(&job->thread, attr, sync_thread, job, pool);
    if (rv != APR_SUCCESS) {
        memsess_slot_t *slot = memsess_table_slot(rt->table, i);

        memsess_table_write_begin(rt->table);
        memsess_slot_sync_end(slot, 0, "sync: cannot start its thread",
                              apr_time_sec(apr_time_now()));
        memsess_table_bump_generation(rt->table, 1);
        memsess_table_write_end(rt->table);
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, rt->main, "MEMSESS0034: "
                     "cannot start the rejoin sync of memcached server %s: "
                     "it stays down", memsess_table_slot(rt->table, i)->addr);
        apr_pool_destroy(pool);
        return;
    }
    c->jobs[i] = job;
}

/* Marks in c->blocked every server of every pool (list in force) that
 * holds slot i, or (i < 0) of every pool one of whose servers is syncing
 * before its flip.  The caller holds the mutex. */
static void block_pools(memsess_rejoin_t *c, int i)
{
    const memsess_runtime_t *rt = c->rt;
    int v, k;

    for (v = 0; v < rt->confs->nelts; v++) {
        const apr_array_header_t *servers =
            memsess_view_in_force(rt, v)->pool->servers;
        int hit = 0;

        for (k = 0; k < servers->nelts && !hit; k++) {
            int j = APR_ARRAY_IDX(servers, k, memsess_server_t).slot;

            hit = i >= 0 ? j == i
                         : c->jobs[j] && memsess_table_slot(rt->table, j)->state
                                         == MEMSESS_SYNCING;
        }
        for (k = 0; hit && k < servers->nelts; k++) {
            c->blocked[APR_ARRAY_IDX(servers, k, memsess_server_t).slot] = 1;
        }
    }
}

/* Servers of one pool that come back together are synced one after the
 * other, each against the list the one before published.  A sync checks
 * at its flip that the lists it synced against are still the ones
 * published, and starts over when not: fifty servers returning at once (a
 * rack powered back on, a checker started before its servers) each saw
 * the others' flips and started over, again and again (661 syncs started
 * for 50 empty servers in 4 s under ASan, 59 finished).  So a server one of
 * whose pools has a sync before its flip is queued (SYNCING, not live, no
 * job: memsess_rejoin_busy() says so) and memsess_rejoin_kick() starts it
 * once that flip is done.  The caller holds the mutex. */
void memsess_rejoin_start(memsess_rejoin_t *c, int i)
{
    if (c->queued[i]) {
        return;
    }
    memset(c->blocked, 0, (apr_size_t)c->rt->targets->nelts);
    block_pools(c, -1);
    if (c->blocked[i]) {
        c->queued[i] = 1;
        c->nqueued++;
        return;
    }
    start_now(c, i);
}

void memsess_rejoin_kick(memsess_rejoin_t *c)
{
    memsess_runtime_t *rt = c->rt;
    apr_time_t now;
    int i;

    if (!c->nqueued) {
        return;
    }
    /* at most every 10 ms: one look costs a pass over every pool */
    now = apr_time_now();
    if (now - c->kicked >= 0 && now - c->kicked < apr_time_from_msec(10)) {
        return;
    }
    c->kicked = now;
    if (!memsess_table_leased(rt->table)) {
        return;   /* another process checks now: not ours to start */
    }
    memset(c->blocked, 0, (apr_size_t)rt->targets->nelts);
    block_pools(c, -1);
    for (i = 0; c->nqueued && i < rt->targets->nelts; i++) {
        if (!c->queued[i]) {
            continue;
        }
        if (memsess_table_slot(rt->table, i)->state != MEMSESS_SYNCING) {
            c->queued[i] = 0;   /* it failed a probe meanwhile */
            c->nqueued--;
        }
        else if (!c->blocked[i]) {
            c->queued[i] = 0;
            c->nqueued--;
            start_now(c, i);
            block_pools(c, i);   /* its pools are busy now */
        }
    }
}

/* Joins the syncs that ended (each round), and notes which servers are
 * published (rejoin_facts). */
void memsess_rejoin_reap(memsess_rejoin_t *c)
{
    apr_time_t now = apr_time_now();
    int i;

    apr_thread_mutex_lock(c->mutex);
    for (i = 0; i < c->rt->targets->nelts; i++) {
        if (MEMSESS_SLOT_LIVE(memsess_table_slot(c->rt->table, i))) {
            c->last_live[i] = now;
        }
    }
    apr_thread_mutex_unlock(c->mutex);
    for (i = 0; i < c->rt->targets->nelts; i++) {
        sync_job_t *job = c->jobs[i];
        apr_status_t ret;

        if (job && apr_atomic_read32(&job->done)) {
            apr_thread_join(&ret, job->thread);
            apr_thread_mutex_lock(c->mutex);
            c->jobs[i] = NULL;
            apr_thread_mutex_unlock(c->mutex);
            apr_pool_destroy(job->pool);
        }
    }
    apr_thread_mutex_lock(c->mutex);
    c->kicked = 0;   /* (a round: look now) */
    memsess_rejoin_kick(c);
    apr_thread_mutex_unlock(c->mutex);
}

/* Its server failed a probe: the sync stops at its next key. */
void memsess_rejoin_cancel(memsess_rejoin_t *c, int i)
{
    if (c->queued[i]) {
        c->queued[i] = 0;
        c->nqueued--;
    }
    if (c->jobs[i]) {
        apr_atomic_set32(&c->jobs[i]->stop, 1);
    }
}

/* The checker stops: every sync stops at its next key. */
void memsess_rejoin_stop_all(memsess_rejoin_t *c)
{
    int i;

    apr_atomic_set32(&c->stopping, 1);
    for (i = 0; i < c->rt->targets->nelts; i++) {
        if (c->jobs[i]) {
            apr_atomic_set32(&c->jobs[i]->stop, 1);
        }
    }
    for (i = 0; i < c->rt->targets->nelts; i++) {
        sync_job_t *job = c->jobs[i];
        apr_status_t ret;

        if (job) {
            apr_thread_join(&ret, job->thread);
            c->jobs[i] = NULL;
            apr_pool_destroy(job->pool);
        }
    }
}

