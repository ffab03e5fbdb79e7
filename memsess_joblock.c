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

/* A job run once for the instances of a group (a rejoin sync, a pool
 * change's rebalance), through its record on one memcached server
 * (memsess_job.c reads and writes the record; this does the I/O).
 *
 * claim: the first instance to add the record holds the job and refreshes
 * it while it works; the others wait, reading it every JOB_POLL, and
 * follow the holder once it is done for the same fingerprint, publishing
 * at its flip time (read against the moment the record turned done, and
 * the holder's clock as measured); a record not renewed for its time to
 * live, by the waiter's own clock (its holder died or was cut off), is
 * taken over with cas.  The record is kept in memcached past its expires,
 * so whoever takes it over sees whose it was.
 */

#include <string.h>

#include <libmemcached/memcached.h>

#include "apr_strings.h"
#include "apr_atomic.h"
#include "apr_thread_proc.h"
#include "apr_thread_mutex.h"

#include "httpd.h"
#include "http_log.h"

#include "memsess_joblock.h"
#include "memsess_clocks.h"
#include "memsess_config.h"
#include "memsess_connect.h"
#include "memsess_job.h"
#include "memsess_table.h"
#include "memsess_verdicts.h"

APLOG_USE_MODULE(memsess);

#define JOB_REFRESH   apr_time_from_msec(500)
/* (often: a waiter that sees the record done within JOB_POLL of its
 * writing knows the flip time in its own clock within that, whatever the
 * clocks; a read a waiter costs memcached nothing at 50 a second) */
#define JOB_POLL      apr_time_from_msec(20)
/* The fence: a lease is trusted for its time to live less this, from
 * just before its last renewal (the others take it over once they have
 * seen that renewal unchanged for its time to live, by their own clocks:
 * never sooner), and the record read again at most this often. */
#define JOB_FENCE_MARGIN apr_time_from_msec(500)
#define JOB_FENCE_READ   apr_time_from_msec(100)

/* A done record whose holder stopped before its own flip: kept this long
 * (seconds, memcached's expiry) past the next checker's start and a
 * rebalance's retry, so that they follow it (memsess_joblock_abandon). */
#define JOB_KEEP_DONE 30

typedef enum { JOB_ADD, JOB_CAS, JOB_SET, JOB_CAS_KEPT } job_write_e;

apr_status_t memsess_joblock_open(memsess_joblock_t *j, memsess_runtime_t *rt,
                                  int slot, const char *name,
                                  apr_interval_time_t timeout,
                                  apr_pool_t *pool)
{
    if (apr_thread_mutex_create(&j->mutex, APR_THREAD_MUTEX_DEFAULT, pool)
        != APR_SUCCESS) {
        j->mutex = NULL;
        return APR_EGENERAL;
    }
    j->pool = pool;
    j->slot = slot;
    j->timeout = timeout;
    j->rt = rt;
    j->keylen = memsess_record_key(j->key, sizeof(j->key), rt->g.group,
                                   "job", name);
    j->mc = memsess_connect(rt, slot, timeout);
    return j->mc ? APR_SUCCESS : APR_EGENERAL;
}

static void keeper_stop(memsess_joblock_t *j)
{
    apr_status_t rv;

    if (j->keeper) {
        apr_atomic_set32(&j->keeper_stop, 1);
        apr_thread_join(&rv, j->keeper);
        j->keeper = NULL;
    }
}

void memsess_joblock_close(memsess_joblock_t *j)
{
    keeper_stop(j);
    memsess_disconnect(j->mc);
    j->mc = NULL;
}

/* Whether the server answered, but refuses what a job record needs (not
 * a real memcached, or one that lacks a command): then there is no
 * record to share, and the instance works on its own. */
static int refused(memcached_return_t rc)
{
    return rc == MEMCACHED_ERROR || rc == MEMCACHED_PROTOCOL_ERROR
           || rc == MEMCACHED_CLIENT_ERROR || rc == MEMCACHED_SERVER_ERROR
           || rc == MEMCACHED_NOT_SUPPORTED;
}

/* Reads the record: returns 0 when the server did not answer (why in
 * j->rc), else 1 with *exists, and *why when it exists but is refused. */
static int job_read(memsess_joblock_t *j, memcached_st *mc,
                    memsess_job_t *rec, int *exists, const char **why,
                    uint64_t *cas)
{
    const char *key = j->key;
    size_t keylen = j->keylen;
    memcached_result_st *res;
    memcached_return_t rc;
    apr_int64_t now = apr_time_sec(apr_time_now());

    *exists = 0;
    *why = NULL;
    *cas = 0;
    if (!memcached_success(rc = memcached_mget(mc, &key, &keylen, 1))) {
        j->rc = (int)rc;
        return 0;
    }
    while ((res = memcached_fetch_result(mc, NULL, &rc)) != NULL) {
        *exists = 1;
        *why = memsess_job_parse(memcached_result_value(res),
                                 memcached_result_length(res), now, rec);
        *cas = memcached_result_cas(res);
        memcached_result_free(res);
    }
    j->rc = (int)rc;
    return rc == MEMCACHED_END || rc == MEMCACHED_NOTFOUND
           || rc == MEMCACHED_SUCCESS;
}

/* Writes our record (syncing or done), valid for the shared lines' time. */
static memcached_return_t job_write(memsess_joblock_t *j, memcached_st *mc,
                                    int done, job_write_e how, uint64_t cas)
{
    apr_int64_t ttl = memsess_share_ttl(j->rt);
    char buf[MEMSESS_JOB_RECORD_MAX];
    memsess_job_t rec;
    apr_size_t len;
    /* memcached keeps it past its expires: whoever takes a lapsed job
     * over sees whose it was */
    time_t expiry = how == JOB_CAS_KEPT ? JOB_KEEP_DONE
                                        : (time_t)(2 * ttl + 1);

    memset(&rec, 0, sizeof(rec));
    apr_cpystrn(rec.holder, j->rt->g.instance, sizeof(rec.holder));
    rec.done = done;
    rec.since = j->since;
    rec.expires = apr_time_sec(apr_time_now()) + ttl;
    if (rec.expires < rec.since + ttl) {
        /* our clock stepped back since the claim: a record that expires
         * before it began is nobody's (its holder read it back as bad,
         * took its lease for lost and synced again: the soak, seed
         * 918273); since stays in the clock it was read in, which the
         * others' skews, measured before the step, read right */
        rec.expires = rec.since + ttl;
    }
    rec.lists = j->fingerprint;
    rec.flip_ms = done ? j->flip_ms : 0;
    len = memsess_job_format(buf, sizeof(buf), &rec);
    j->refreshed = memsess_mono_now();
    switch (how) {
    case JOB_ADD:
        return memcached_add(mc, j->key, j->keylen, buf, len, expiry, 0);
    case JOB_CAS:
    case JOB_CAS_KEPT:
        return memcached_cas(mc, j->key, j->keylen, buf, len, expiry, 0,
                             cas);
    default:
        return memcached_set(mc, j->key, j->keylen, buf, len, expiry, 0);
    }
}

void memsess_joblock_rewrite(memsess_joblock_t *j)
{
    if (j->holding) {
        apr_thread_mutex_lock(j->mutex);
        if (memcached_success(job_write(j, j->mc, j->done, JOB_SET, 0))) {
            j->held_at = j->refreshed;
        }
        apr_thread_mutex_unlock(j->mutex);
    }
}

/* Whether the record read is ours: this instance's, of this claim. */
static int record_ours(const memsess_joblock_t *j, const memsess_job_t *rec,
                       int exists, const char *why)
{
    return exists && !why && !strcmp(rec->holder, j->rt->g.instance)
           && rec->since == j->since;
}

/* Another took it over, or the lease lapsed: lost for good, and stop. */
static void lease_lost(memsess_joblock_t *j)
{
    apr_atomic_set32(&j->lost, 1);
    if (j->stop) {
        apr_atomic_set32(j->stop, 1);
    }
}

/* The record again through mc, unless it was refreshed less than
 * JOB_REFRESH ago (force: whatever the time); the caller holds the
 * mutex. */
static void refresh_on(memsess_joblock_t *j, memcached_st *mc, int force)
{
    memsess_job_t rec;
    const char *why;
    uint64_t cas;
    int exists;

    if (!j->holding || j->lost
        || (!force && memsess_mono_now() - j->refreshed < JOB_REFRESH)) {
        return;
    }
    j->refreshed = memsess_mono_now();
    if (!job_read(j, mc, &rec, &exists, &why, &cas)) {
        return;   /* the engine or the probes see the server fail */
    }
    if (!record_ours(j, &rec, exists, why)
        || !memcached_success(job_write(j, mc, j->done, JOB_CAS, cas))) {
        lease_lost(j);
        return;
    }
    j->held_at = j->refreshed;
}

int memsess_joblock_fence(memsess_joblock_t *j)
{
    apr_interval_time_t lease;
    apr_time_t now = memsess_mono_now();
    int held;

    if (!j->holding || !j->mutex) {
        return 1;
    }
    lease = apr_time_from_sec(memsess_share_ttl(j->rt)) - JOB_FENCE_MARGIN;
    apr_thread_mutex_lock(j->mutex);
    held = !apr_atomic_read32(&j->lost) && now - j->held_at < lease;
    if (held && now - j->fence_read >= JOB_FENCE_READ) {
        memsess_job_t rec;
        const char *why;
        uint64_t cas;
        int exists;

        j->fence_read = now;
        if (job_read(j, j->mc, &rec, &exists, &why, &cas)) {
            held = record_ours(j, &rec, exists, why);
        }
        /* unanswered: the lease's age alone decides */
    }
    apr_thread_mutex_unlock(j->mutex);
    if (!held) {
        lease_lost(j);
    }
    return held;
}

void memsess_joblock_refresh(memsess_joblock_t *j, int done, int force)
{
    if (!j->holding || !j->mutex) {
        return;
    }
    apr_thread_mutex_lock(j->mutex);
    j->done |= done;
    refresh_on(j, j->mc, force);
    apr_thread_mutex_unlock(j->mutex);
}

/* The lease's thread: the record renewed every JOB_REFRESH through a
 * connection of its own, however long the job's own thread spends between
 * two progress calls (a crawl, a slow server, a batch of copies). */
static void *APR_THREAD_FUNC keeper(apr_thread_t *thread, void *data)
{
    memsess_joblock_t *j = data;
    memcached_st *mc = NULL;

    while (!apr_atomic_read32(&j->keeper_stop)) {
        apr_sleep(apr_time_from_msec(20));
        if (apr_atomic_read32(&j->keeper_stop)
            || memsess_mono_now() - j->refreshed < JOB_REFRESH) {
            continue;
        }
        if (!mc && !(mc = memsess_connect(j->rt, j->slot, j->timeout))) {
            continue;
        }
        apr_thread_mutex_lock(j->mutex);
        refresh_on(j, mc, 0);
        apr_thread_mutex_unlock(j->mutex);
        if (apr_atomic_read32(&j->lost)) {
            break;
        }
    }
    memsess_disconnect(mc);
    apr_thread_exit(thread, APR_SUCCESS);
    return NULL;
}

void memsess_joblock_release(memsess_joblock_t *j)
{
    memsess_job_t rec;
    const char *why;
    uint64_t cas;
    int exists;

    if (j->done && j->stop && *j->stop) {
        memsess_joblock_abandon(j);
        return;
    }
    keeper_stop(j);
    if (j->holding && !j->lost
        && job_read(j, j->mc, &rec, &exists, &why, &cas)
        && record_ours(j, &rec, exists, why)) {
        memcached_delete(j->mc, j->key, j->keylen, 0);
    }
    j->holding = 0;
}

int memsess_joblock_flips(const memsess_joblock_t *j)
{
    return j->flip_ms && !j->lost;
}

int memsess_joblock_guard_begin(const memsess_joblock_t *j,
                                volatile apr_uint32_t *stop)
{
    int stopping = apr_atomic_read32(stop) && !j->lost;

    if (stopping) {
        apr_atomic_set32(stop, 0);
    }
    return stopping;
}

void memsess_joblock_guard_end(const memsess_joblock_t *j,
                               volatile apr_uint32_t *stop, int stopping)
{
    if (stopping || j->lost) {
        apr_atomic_set32(stop, 1);
    }
}

void memsess_joblock_flipped_stopping(const memsess_joblock_t *j)
{
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, j->rt->main, "MEMSESS0162: "
                 "%s: published at its flip time though this checker stops "
                 "(a graceful or a restart): the group publishes at that "
                 "time; what follows the flip is left undone", j->subject);
}

void memsess_joblock_abandon(memsess_joblock_t *j)
{
    memsess_job_t rec;
    const char *why;
    uint64_t cas;
    int exists;

    keeper_stop(j);
    if (!j->done) {
        memsess_joblock_release(j);
        return;
    }
    /* the others publish at its flip time (they may have already): whoever
     * runs the job next follows it, not does it again over what they
     * wrote since through the new lists */
    if (j->holding && !j->lost
        && job_read(j, j->mc, &rec, &exists, &why, &cas)
        && record_ours(j, &rec, exists, why)) {
        job_write(j, j->mc, 1, JOB_CAS_KEPT, cas);
    }
    j->holding = 0;
}

apr_int64_t memsess_joblock_done(memsess_joblock_t *j, int alone)
{
    apr_thread_mutex_lock(j->mutex);
    j->flip_ms = apr_time_as_msec(apr_time_now()
                                  + (alone ? 0 : MEMSESS_FLIP_DELAY));
    j->flip_mono = memsess_mono_now() + (alone ? 0 : MEMSESS_FLIP_DELAY);
    apr_thread_mutex_unlock(j->mutex);
    memsess_joblock_refresh(j, 1, 1);
    return j->flip_ms;
}

void memsess_joblock_wait_flip(memsess_joblock_t *j)
{
    apr_time_t at = j->flip_mono, now = memsess_mono_now();

    /* a flip time far off is a clock apart: not waited for */
    while (at > now && at - now <= 2 * MEMSESS_FLIP_DELAY
           && !(j->stop && *j->stop && !memsess_joblock_flips(j))) {
        apr_sleep(at - now < apr_time_from_msec(5) ? at - now
                                                   : apr_time_from_msec(5));
        now = memsess_mono_now();
    }
}

void memsess_joblock_prepare_flip(memsess_joblock_t *j,
                                  apr_thread_mutex_t *mutex, int slot,
                                  const int *moving)
{
    memsess_runtime_t *rt = j->rt;

    if (!j->flip_mono || j->lost) {
        return;
    }
    if (memsess_table_lease_lock(rt->table, mutex)) {
        memsess_table_write_begin(rt->table);
        if (j->ungate) {
            /* replaced by the flip's own, in the same write */
            memsess_table_ungate(rt->table, rt->confs->nelts, j->ungate);
        }
        memsess_table_prepare_flip(rt->table, rt->views, rt->confs->nelts,
                                   slot, moving, j->flip_mono);
        memsess_table_write_end(rt->table);
    }
    apr_thread_mutex_unlock(mutex);
}

void memsess_joblock_ungate(memsess_joblock_t *j, apr_thread_mutex_t *mutex)
{
    memsess_runtime_t *rt = j->rt;

    if (!j->ungate || !rt) {
        return;   /* (none, or never opened: it lapses on its own) */
    }
    if (memsess_table_lease_lock(rt->table, mutex)) {
        memsess_table_write_begin(rt->table);
        memsess_table_ungate(rt->table, rt->confs->nelts, j->ungate);
        memsess_table_write_end(rt->table);
    }
    apr_thread_mutex_unlock(mutex);
}

void memsess_joblock_cancel_flip(memsess_joblock_t *j,
                                 apr_thread_mutex_t *mutex, int slot,
                                 const int *moving)
{
    memsess_runtime_t *rt = j->rt;

    if (memsess_table_lease_lock(rt->table, mutex)) {
        memsess_table_write_begin(rt->table);
        memsess_table_cancel_flips(rt->table, rt->views, rt->confs->nelts,
                                   slot, moving);
        memsess_table_write_end(rt->table);
    }
    apr_thread_mutex_unlock(mutex);
}

static void job_sleep(memsess_joblock_t *j, apr_interval_time_t t)
{
    apr_time_t until = memsess_mono_now() + t;   /* a duration */

    while (!(j->stop && *j->stop) && memsess_mono_now() < until) {
        apr_sleep(apr_time_from_msec(20));
    }
}

/* Another instance's clock minus ours, in ms (and *error, +- that): 0
 * unless measured within what a flip tolerates (*error -1: not known). */
static apr_int64_t holder_skew(const memsess_joblock_t *j, const char *holder,
                               apr_int64_t *error)
{
    *error = 0;
    if (!strcmp(holder, j->rt->g.instance)) {
        return 0;
    }
    return memsess_table_peer_skew(j->rt->table, holder,
                                   apr_time_as_msec(MEMSESS_FLIP_DELAY),
                                   memsess_clock_offset_ms(), error);
}

memsess_claim_e memsess_joblock_claim(memsess_joblock_t *j, char *err,
                                      apr_size_t errlen)
{
    memsess_runtime_t *rt = j->rt;
    const char *self = rt->g.instance;
    char waiting_for[MEMSESS_INSTANCE_MAX] = "";
    apr_time_t asked = 0, asked_before = 0;   /* reads, ours: the last
                                               * found it not done */
    /* the record as last seen changed, and since when by our own clock */
    uint64_t seen_cas = 0;
    apr_int64_t seen_expires = 0;
    apr_time_t seen_at = 0;

    for (;;) {
        memsess_job_t rec;
        memsess_job_step_e step;
        memcached_return_t rc = MEMCACHED_SUCCESS;
        const char *why;
        uint64_t cas;
        apr_int64_t skew, error = 0, bound, off, not_before, out_ms, now_ms;
        apr_time_t mono;
        apr_interval_time_t unchanged = 0;
        int exists;

        if (j->stop && *j->stop) {
            apr_cpystrn(err, "stopped", errlen);
            return MEMSESS_CLAIM_FAILED;
        }
        asked = apr_time_now();
        if (!job_read(j, j->mc, &rec, &exists, &why, &cas)) {
            if (refused((memcached_return_t)j->rc)) {
                break;
            }
            apr_snprintf(err, errlen, "its job record cannot be read: %s",
                         memcached_last_error_message(j->mc));
            return MEMSESS_CLAIM_FAILED;
        }
        if (why) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, rt->main,
                         "MEMSESS0039: %s: ignored the job record of %s "
                         "(%s): replaced by ours", j->subject, j->job, why);
        }
        if (exists && !why && seen_at && cas == seen_cas
            && rec.expires == seen_expires) {
            unchanged = memsess_mono_now() - seen_at;
        }
        else {
            seen_cas = exists && !why ? cas : 0;
            seen_expires = exists && !why ? rec.expires : 0;
            seen_at = exists && !why ? memsess_mono_now() : 0;
        }
        j->since = apr_time_sec(apr_time_now());
        /* the record's times are its holder's clock's: ours, moved by
         * its skew as measured (memsess_exchange.c), compare with them;
         * its clock at its earliest: a lease lapses, a job is earlier
         * than this outage, no sooner than it surely does or is */
        skew = exists && !why ? holder_skew(j, rec.holder, &error) : 0;
        if (!exists || why) {
            error = 0;
        }
        /* (not known: its times read as ours here; its flip time is
         * waited for at the latest the record allows) */
        bound = error > 0 ? error : 0;
        /* when this outage began and when the server last went out here,
         * in our clock as it is now: taken before a step of it, they were
         * read seconds off (a follower whose clock had stepped 5 s back
         * took a sync begun 100 ms before for older than the outage and
         * ran it again: the soak, seed 31337077) */
        off = memsess_clock_offset_ms();
        not_before = memsess_clock_moved_ms(1000 * j->not_before,
                                            j->not_before_off_ms, off);
        out_ms = memsess_clock_moved_ms(apr_time_as_msec(j->out_since),
                                        j->out_off_ms, off);
        step = memsess_job_next(why ? NULL : &rec, exists, self,
                                j->fingerprint,
                                j->since + (skew - bound) / 1000,
                                not_before
                                ? (not_before + skew - bound) / 1000 : 0,
                                out_ms ? out_ms + skew + bound : 0,
                                apr_time_as_msec(unchanged),
                                1000 * memsess_share_ttl(rt));
        switch (step) {
        case MEMSESS_JOB_TAKE:
            rc = job_write(j, j->mc, 0, JOB_ADD, 0);
            break;
        case MEMSESS_JOB_REPLACE:
            rc = job_write(j, j->mc, 0, JOB_CAS, cas);
            if (memcached_success(rc) && exists && !why
                && strcmp(rec.holder, self)) {
                ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                             "MEMSESS0040: %s: this instance takes over %s "
                             "from %s (%s)", j->subject, j->job, rec.holder,
                             "it stopped refreshing it");
            }
            break;
        case MEMSESS_JOB_WAIT:
            if (strcmp(waiting_for, rec.holder)) {
                apr_cpystrn(waiting_for, rec.holder, sizeof(waiting_for));
                if (j->note) {
                    j->note(j->baton, rec.holder);
                }
                ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                             "MEMSESS0037: %s: %s is run by %s for the group: "
                             "this instance waits for it", j->subject, j->job,
                             rec.holder);
            }
            asked_before = asked;
            job_sleep(j, JOB_POLL);
            continue;
        case MEMSESS_JOB_FOLLOW:
            apr_cpystrn(j->holder, rec.holder, sizeof(j->holder));
            now_ms = apr_time_as_msec(apr_time_now());
            mono = memsess_mono_now();
            j->flip_ms = memsess_flip_follow(rec.flip_ms, skew, error,
                    asked_before ? apr_time_as_msec(asked_before) : 0,
                    now_ms, apr_time_as_msec(MEMSESS_FLIP_DELAY));
            j->flip_mono = mono + apr_time_from_msec(j->flip_ms - now_ms);
            if (rec.lists != j->fingerprint) {
                ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                             "MEMSESS0156: %s: %s by %s was of other lists "
                             "(another server's state changed meanwhile): "
                             "followed all the same", j->subject, j->job,
                             rec.holder);
            }
            if (j->note) {
                j->note(j->baton, rec.holder);
            }
            return MEMSESS_CLAIM_FOLLOW;
        }
        if (memcached_success(rc)) {
            j->holding = 1;
            j->held_at = j->refreshed;
            apr_atomic_set32(&j->keeper_stop, 0);
            if (apr_thread_create(&j->keeper, NULL, keeper, j, j->pool)
                != APR_SUCCESS) {
                j->keeper = NULL;   /* renewed by progress alone */
            }
            if (j->note) {
                j->note(j->baton, "");
            }
            return MEMSESS_CLAIM_HOLD;
        }
        if (refused(rc)) {
            j->rc = (int)rc;
            break;
        }
        if (rc != MEMCACHED_NOTSTORED && rc != MEMCACHED_DATA_EXISTS
            && rc != MEMCACHED_NOTFOUND) {
            apr_snprintf(err, errlen, "its job record cannot be written: %s",
                         memcached_strerror(j->mc, rc));
            return MEMSESS_CLAIM_FAILED;
        }
        /* another instance wrote in between: read again */
    }
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0157: %s: "
                 "the server refuses its job record (%s): this instance does "
                 "%s on its own", j->subject,
                 memcached_strerror(j->mc, (memcached_return_t)j->rc),
                 j->job);
    return MEMSESS_CLAIM_HOLD;   /* holding nothing: no record to keep */
}
