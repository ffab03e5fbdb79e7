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

/* Shared verdicts: the Apache instances of a group (MemsessGroup) tell each
 * other which memcached servers they see down, through those servers
 * themselves, so a server one instance cannot reach is left out by all and
 * a user whose requests alternate between web servers reads one copy.
 *
 * Nothing new to deploy and nothing to list: the instances that share a
 * pool already share its servers.  For every server X, a record under
 * memsess_record_key(group, "down", X) lists the instances that see X down
 * (memsess_verdicts.c).  Every round, on its own thread, the checker's
 * exchange
 *   - reads the records of every server with one multi-get from every
 *     server it does not see down itself (a cut-off instance writes where
 *     it can, everyone reads everywhere, so the copies meet);
 *   - puts its own line in (gets, merge, cas; retried when another instance
 *     wrote in between) on those servers while it sees X down or syncs X
 *     itself (memsess_rejoin.c), refreshed every round, and takes it out
 *     once it has published X;
 *   - marks X down in the shared table (peer_down, reported_by) while any
 *     other instance's line has not lapsed; when the last one goes, X is
 *     synced here (or published with the sync another instance has just
 *     done) before it takes traffic: writes went elsewhere meanwhile.
 * A line lapses a few intervals after its last refresh, and the record's
 * memcached expiry follows its latest line: a dead, frozen or cut-off
 * instance holds nothing down for long.
 *
 * A hung server costs the exchange one timeout per round and never delays
 * a probe: the exchange has its own thread, and a round that is still
 * running when the next is due is skipped.
 */

#include <unistd.h>
#include <time.h>

#include <libmemcached/memcached.h>

#include "apr_strings.h"
#include "apr_atomic.h"
#include "apr_hash.h"
#include "apr_thread_proc.h"
#include "apr_thread_mutex.h"
#include "apr_thread_cond.h"

#include "httpd.h"
#include "http_log.h"

#include "memsess_exchange.h"
#include "memsess_clocks.h"
#include "memsess_config.h"
#include "memsess_connect.h"
#include "memsess_flight.h"
#include "memsess_job.h"
#include "memsess_joblock.h"
#include "memsess_table.h"
#include "memsess_verdicts.h"
#include "memsess_view.h"

APLOG_USE_MODULE(memsess);

/* Tries of gets + cas for one record before this round gives up on it. */
#define CAS_TRIES      (3)
/* A bad record is logged at most once per server in this time. */
#define LOG_EVERY      apr_time_from_sec(60)

/* Other instances whose lines and clocks are followed (memsess_clocks.c);
 * beyond that many at once, a line of another is judged by its own clock,
 * as before. */
#define PEERS_TRACKED  (64)
/* A peer not read for this long gives its place to a new one. */
#define PEER_FORGET    apr_time_from_sec(60)
/* Its skew is logged when more than this (and again when it moved by
 * more than SKEW_MOVED since): the group's flips and leases are corrected
 * by it from then on. */
#define SKEW_WARN      (100)
#define SKEW_MOVED     (1000)

typedef struct {
    char                 name[MEMSESS_INSTANCE_MAX];   /* "": free */
    memsess_lapse_t     *lapse;    /* [n + 1][n] its line in each record,
                                    * each server's copy */
    memsess_skew_seen_t *seen;     /* [n] its member line on each server */
    memsess_skew_t       skew;
    apr_time_t           read;     /* our monotonic time of the last read */
    apr_int64_t          seen_at;  /* unix seconds (ours), for the status */
    apr_int64_t          logged;   /* the skew last logged (SKEW_WARN) */
    int                  warned;
} peer_t;

/* One record found by the multi-get, kept until the answer is read. */
typedef struct {
    int       x;
    uint64_t  cas;
    char     *value;
    size_t    len;
} found_t;

struct memsess_exchange {
    memsess_runtime_t  *rt;
    memsess_syncs_t     syncs;         /* syncs a server others let go */
    apr_thread_mutex_t *table_mutex;   /* the checker's: one table writer */
    apr_thread_mutex_t *mutex;         /* wake, stop, busy */
    apr_thread_cond_t  *cond;
    apr_thread_cond_t  *ended_cond;    /* a round ended */
    apr_thread_t       *thread;
    int                 wake, stop, busy;
    apr_int64_t         offset_ms;     /* memsess_clock_offset_ms() at
                                        * the last round (0: none yet) */
    int                 fast;          /* a server out here by others'
                                        * lines alone: rounds FAST_ROUND
                                        * apart, not the checker's */
    apr_uint64_t        begun, ended;  /* rounds, by number */
    int                 n;             /* servers */
    const char        **keys;          /* [n] their records' keys */
    size_t             *keylens;
    apr_hash_t         *bykey;         /* key -> &index[x] */
    int                *index;
    unsigned char      *down;          /* [n] our own verdicts, this round:
                                        * down or syncing */
    unsigned char      *unreachable;   /* [n] down: not read or written */
    unsigned char      *peer;          /* [n] another instance's, this round */
    unsigned char      *job;           /* [n] another instance syncs it */
    char              (*jobdone)[MEMSESS_INSTANCE_MAX];  /* [n] ... or is
                                        * done with it (its holder) */
    apr_int64_t        *jobflip;       /* [n] ... its flip time (unix
                                        * seconds, by its holder's clock) */
    apr_int64_t        *newest;        /* [n] the last refresh of another
                                        * instance's line, this round (unix
                                        * seconds, by its own clock) */
    uint64_t           *job_cas;       /* [n] its job record, last read */
    apr_time_t         *job_changed;   /* [n] our monotonic time it last
                                        * changed (its holder renews it
                                        * every 0.5 s); 0: never seen */
    char              (*who)[MEMSESS_REPORTERS_MAX];
    apr_time_t         *bad_logged;    /* [n + 1] last bad record logged */
    int                *flipped;       /* [nviews] scratch for publish */
    apr_int64_t         ttl;           /* seconds a line holds */
    /* the group's members record (key n): this instance's pools, the
     * other instances' lines read this round, and the last whole round's
     * (under mutex, for memsess_exchange_agree) */
    apr_uint64_t        configured, in_force;
    memsess_verdict_t  *mem;           /* [MEMSESS_VERDICTS_MAX] */
    int                 nmem;
    memsess_verdict_t  *snap;          /* [MEMSESS_VERDICTS_MAX] */
    int                 nsnap;
    int                 listened;      /* a whole round read */
    volatile apr_uint32_t twin;        /* another instance of our name:
                                        * nothing shared any more */
    peer_t             *peers;         /* [PEERS_TRACKED], the exchange
                                        * thread's alone */
    memcached_st      **conns;         /* [n] kept from round to round (no
                                        * handshake, no TIME_WAIT each);
                                        * the exchange thread's alone */
    int                 conn_failed;   /* this round's server failed a write */
};

/* The peer of that name, followed from now on when new; NULL when
 * PEERS_TRACKED others are followed and were all read lately. */
static peer_t *peer_of(memsess_exchange_t *x, const char *name,
                       apr_time_t mono)
{
    peer_t *free_one = NULL;
    int i;

    for (i = 0; i < PEERS_TRACKED; i++) {
        peer_t *pe = &x->peers[i];

        if (!strcmp(pe->name, name)) {
            return pe;
        }
        if (!free_one && (!pe->name[0] || mono - pe->read > PEER_FORGET)) {
            free_one = pe;
        }
    }
    if (free_one) {
        memsess_lapse_t *lapse = free_one->lapse;
        memsess_skew_seen_t *seen = free_one->seen;

        memset(lapse, 0, (apr_size_t)((x->n + 1) * (x->n ? x->n : 1))
                         * sizeof(*lapse));
        memset(seen, 0, (apr_size_t)x->n * sizeof(*seen));
        memset(free_one, 0, sizeof(*free_one));
        free_one->lapse = lapse;
        free_one->seen = seen;
        apr_cpystrn(free_one->name, name, sizeof(free_one->name));
    }
    return free_one;
}

/* What a previous checker of ours measured of the others' clocks (the
 * table keeps it, across a graceful too): their flip times and leases read
 * in this checker's first rounds are read in their clocks, not taken as
 * ours or waited out as not known. */
static void seed_peers(memsess_exchange_t *x)
{
    memsess_peer_clock_t known[MEMSESS_PEERS_SHOWN];
    int i, n = memsess_table_peers(x->rt->table, known, MEMSESS_PEERS_SHOWN);
    apr_time_t mono = memsess_mono_now();

    for (i = 0; i < n; i++) {
        peer_t *pe;

        if (known[i].error_ms < 0 || !known[i].name[0]
            || !strcmp(known[i].name, x->rt->g.instance)) {
            continue;
        }
        if (!(pe = peer_of(x, known[i].name, mono))) {
            break;
        }
        memsess_skew_seed(&pe->skew, known[i].skew_ms, known[i].error_ms,
                          known[i].at_ms, known[i].offset_ms,
                          known[i].peer_offset_ms);
        pe->read = mono;
        pe->seen_at = known[i].seen;
    }
}

/* The lines of rec (record xi, read on server y) that have not lapsed by
 * our clock are kept, the others taken out (dropped from the record when
 * we write it); member lines tell their writers' clocks. */
static void judge(memsess_exchange_t *x, int xi, int y,
                  memsess_verdicts_t *rec)
{
    apr_time_t mono = memsess_mono_now(), now = apr_time_now();
    /* (memsess_clock_offset_ms() of this very pair: the offset the
     * reading below is taken in, whatever steps a moment later) */
    apr_int64_t off = apr_time_as_msec(now) - apr_time_as_msec(mono);
    int i, k;

    for (i = k = 0; i < rec->n; i++) {
        const memsess_verdict_t *v = &rec->v[i];
        peer_t *pe;
        int live = 1;

        if (strcmp(v->name, x->rt->g.instance)) {
            pe = peer_of(x, v->name, mono);
            if (!pe) {
                live = v->expires >= apr_time_sec(now);   /* its clock's */
            }
            else {
                live = memsess_lapse_note(pe->lapse + xi * x->n, x->n,
                                          y < x->n ? y : 0, v->reported,
                                          v->expires - v->reported, mono);
                pe->read = mono;
                if (rec->members && y < x->n) {
                    memsess_skew_peer_offset(&pe->skew, &pe->seen[y],
                                             v->wrote_ms, v->offset_ms);
                    memsess_skew_note(&pe->skew, &pe->seen[y], v->wrote_ms,
                                      apr_time_as_msec(now), off);
                    pe->seen_at = apr_time_sec(now);
                }
            }
        }
        if (live) {
            rec->v[k++] = *v;
        }
    }
    rec->n = k;
}

/* Another instance's clock minus ours in ms, when known within the flip's
 * tolerance; else 0. */
static apr_int64_t skew_of(memsess_exchange_t *x, const char *name)
{
    int i;

    for (i = 0; i < PEERS_TRACKED; i++) {
        if (!strcmp(x->peers[i].name, name)) {
            return memsess_skew_error_ms(&x->peers[i].skew) >= 0
                   && memsess_skew_error_ms(&x->peers[i].skew)
                      <= apr_time_as_msec(MEMSESS_FLIP_DELAY)
                   ? memsess_skew_ms(&x->peers[i].skew) : 0;
        }
    }
    return 0;
}

static const memsess_server_t *target(const memsess_exchange_t *x, int i)
{
    return APR_ARRAY_IDX(x->rt->targets, i, memsess_server_t *);
}

/* Which record key xi names, for the log. */
static const char *record_name(const memsess_exchange_t *x, int xi,
                               char *buf, apr_size_t size)
{
    if (xi == x->n) {
        return "the members record of the group";
    }
    apr_snprintf(buf, size, "the verdict record of memcached server %s",
                 target(x, xi)->addr);
    return buf;
}

/* Logs, at most once a minute per record, a record we do not use. */
static void log_bad(memsess_exchange_t *x, int xi, int y, const char *why,
                    int tag_future)
{
    apr_time_t now = apr_time_now();
    char name[MEMSESS_ADDR_MAX + 64];

    if (x->bad_logged[xi] && now - x->bad_logged[xi] < LOG_EVERY) {
        return;
    }
    x->bad_logged[xi] = now;
    if (tag_future) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, x->rt->main,
                     "MEMSESS0093: %s on %s has lines from the future (a "
                     "clock far ahead, or not written by mod_memsess): those "
                     "are ignored", record_name(x, xi, name, sizeof(name)),
                     target(x, y)->addr);
        return;
    }
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, x->rt->main, "MEMSESS0092: "
                 "ignored %s on %s: %s", record_name(x, xi, name,
                                                     sizeof(name)),
                 target(x, y)->addr, why);
}

/* Parses what was read; a bad record counts as an empty one (ours to
 * overwrite when we must write), never as a verdict. */
static void read_record(memsess_exchange_t *x, int xi, int y,
                        const char *value, size_t len, apr_int64_t now,
                        memsess_verdicts_t *rec)
{
    const char *why = memsess_verdicts_parse(value, len, now, rec);

    if (!why && rec->members != (xi == x->n)) {
        why = rec->members ? "a members record" : "a verdict record";
        rec->n = 0;
    }
    rec->members = xi == x->n;
    if (!why) {
        judge(x, xi, y, rec);
    }
    if (why) {
        log_bad(x, xi, y, why, 0);
    }
    else if (rec->future) {
        log_bad(x, xi, y, NULL, 1);
    }
}

/* Writes rec as the new value of X's record on mc: cas over the value read
 * (cas != 0), else add.  Returns the libmemcached result. */
static memcached_return_t write_record(const memsess_exchange_t *x, int xi,
                                       memcached_st *mc,
                                       const memsess_verdicts_t *rec,
                                       uint64_t cas, apr_int64_t now)
{
    char buf[MEMSESS_VERDICT_RECORD_MAX];
    apr_size_t len = memsess_verdicts_format(buf, sizeof(buf), rec);
    apr_int64_t last = now;
    time_t expiry;
    int i;

    for (i = 0; i < rec->n; i++) {
        if (rec->v[i].expires > last) {
            last = rec->v[i].expires;
        }
    }
    /* the record lives as long as its latest line; an empty one goes */
    expiry = (time_t)(last - now + 1);
    if (cas) {
        return memcached_cas(mc, x->keys[xi], x->keylens[xi], buf, len,
                             expiry, 0, cas);
    }
    return memcached_add(mc, x->keys[xi], x->keylens[xi], buf, len, expiry,
                         0);
}

/* Reads X's record again on its own, for a retry after a lost race.
 * Returns 0 when the server did not answer. */
static int reread(memsess_exchange_t *x, int xi, int y, memcached_st *mc,
                  apr_int64_t now, memsess_verdicts_t *rec, uint64_t *cas)
{
    const char *key = x->keys[xi];
    size_t keylen = x->keylens[xi];
    memcached_result_st *res;
    memcached_return_t rc;
    int answered;

    rec->n = 0;
    *cas = 0;
    if (!memcached_success(memcached_mget(mc, &key, &keylen, 1))) {
        return 0;
    }
    while ((res = memcached_fetch_result(mc, NULL, &rc)) != NULL) {
        read_record(x, xi, y, memcached_result_value(res),
                    memcached_result_length(res), now, rec);
        *cas = memcached_result_cas(res);
        memcached_result_free(res);
    }
    answered = rc == MEMCACHED_END || rc == MEMCACHED_NOTFOUND
               || rc == MEMCACHED_SUCCESS;
    return answered;
}

/* Our line in X's record on server y: in while we see X down, out once we
 * see it up.  rec and cas are what the multi-get read (cas 0: none). */
static void put_line(memsess_exchange_t *x, int xi, int y, memcached_st *mc,
                     memsess_verdicts_t *rec, uint64_t cas, apr_int64_t now)
{
    const char *self = x->rt->g.instance;
    memcached_return_t rc = MEMCACHED_SUCCESS;
    int tries;

    for (tries = 0; tries < CAS_TRIES; tries++) {
        if (!memsess_verdicts_put(rec, self, x->down[xi], now,
                                  now + x->ttl)) {
            return;   /* nothing of ours to change */
        }
        rc = write_record(x, xi, mc, rec, cas, now);
        if (rc == MEMCACHED_SUCCESS) {
            return;
        }
        if (rc != MEMCACHED_DATA_EXISTS && rc != MEMCACHED_NOTSTORED
            && rc != MEMCACHED_NOTFOUND) {
            x->conn_failed = 1;
            break;   /* not a lost race: the server failed */
        }
        /* another instance wrote in between: merge into what it wrote */
        if (!reread(x, xi, y, mc, now, rec, &cas)) {
            x->conn_failed = 1;
            break;
        }
    }
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, x->rt->main, "MEMSESS0094: "
                 "could not update the verdict record of memcached server "
                 "%s on %s: %s", target(x, xi)->addr, target(x, y)->addr,
                 memcached_strerror(mc, rc));
}

/* The other instances' member lines, merged over the servers read. */
static void note_members(memsess_exchange_t *x, const memsess_verdicts_t *rec)
{
    int i, k;

    for (i = 0; i < rec->n; i++) {
        const memsess_verdict_t *v = &rec->v[i];

        if (!strcmp(v->name, x->rt->g.instance)) {
            continue;
        }
        for (k = 0; k < x->nmem && strcmp(x->mem[k].name, v->name); k++) {
        }
        if (k == x->nmem) {
            if (x->nmem == MEMSESS_VERDICTS_MAX) {
                continue;
            }
            x->nmem++;
        }
        else if (x->mem[k].reported > v->reported) {
            continue;   /* another server's copy is fresher */
        }
        x->mem[k] = *v;
    }
}

/* No other instance's verdict counts here any more: every slot's peer
 * verdict and reporters cleared.  The caller is the table's writer. */
static void forget_peers(memsess_runtime_t *rt)
{
    int i;

    for (i = 0; i < rt->targets->nelts; i++) {
        memsess_slot_t *sl = memsess_table_slot(rt->table, i);

        sl->peer_down = 0;
        sl->reported_by[0] = '\0';
    }
}

/* Another instance runs with our name (a line of it with another start's
 * nonce, refreshed since we started): each would erase the other's
 * verdicts, take the other's jobs for its own, and both would hold the
 * same job.  We stop sharing, for good (until a restart with a name of
 * its own), and say so in the log, on the status page and in the
 * metrics; the twin does the same when it reads our line. */
static void twin_found(memsess_exchange_t *x, int y,
                       const memsess_verdict_t *v)
{
    memsess_runtime_t *rt = x->rt;

    if (apr_atomic_cas32(&x->twin, 1, 0)) {
        return;
    }
    ap_log_error(APLOG_MARK, APLOG_ERR, 0, rt->main, "MEMSESS0099: another "
                 "instance of group %s runs with this one's name, %s (the "
                 "members record on %s holds a line of another start, "
                 "refreshed at %" APR_INT64_T_FMT ", after this one started "
                 "at %" APR_INT64_T_FMT "): two instances of one name "
                 "would erase each other's verdicts and both hold one job; "
                 "this instance stops sharing verdicts and jobs and decides "
                 "alone: give each web server a MemsessInstance of its own "
                 "and restart it", rt->g.group, rt->g.instance,
                 target(x, y)->addr, v->reported, rt->started);
    apr_thread_mutex_lock(x->table_mutex);
    memsess_table_write_begin(rt->table);
    memsess_table_set_twin(rt->table, 1);
    forget_peers(rt);
    memsess_table_bump_generation(rt->table, 1);
    memsess_table_publish(rt->table, rt->views, rt->confs->nelts, -1,
                          NULL);
    memsess_table_write_end(rt->table);
    apr_thread_mutex_unlock(x->table_mutex);
}

int memsess_exchange_sharing(memsess_exchange_t *x)
{
    return x && !apr_atomic_read32(&x->twin);
}

/* Our member line in the group's record on server y, refreshed when its
 * fingerprints changed or half its time has gone. */
static void put_member(memsess_exchange_t *x, int y, memcached_st *mc,
                       memsess_verdicts_t *rec, uint64_t cas,
                       apr_int64_t now)
{
    memcached_return_t rc = MEMCACHED_SUCCESS;
    apr_int64_t off = memsess_clock_offset_ms();
    int tries, i, twin = 0;

    for (tries = 0; tries < CAS_TRIES; tries++) {
        for (i = 0; i < rec->n; i++) {
            const memsess_verdict_t *v = &rec->v[i];

            /* a start of ours before this one stopped refreshing its line
             * before we started (a second of margin: a stop and start
             * within one) */
            if (!strcmp(v->name, x->rt->g.instance) && v->nonce
                && v->nonce != x->rt->nonce
                && v->reported > x->rt->started + 1) {
                twin_found(x, y, v);
                twin = 1;   /* our line once more: the twin finds us too */
            }
        }
        for (i = 0; !twin && i < rec->n; i++) {
            const memsess_verdict_t *v = &rec->v[i];

            if (!strcmp(v->name, x->rt->g.instance)
                && v->nonce == x->rt->nonce
                && v->configured == x->configured
                && v->in_force == x->in_force
                && v->expires - now > x->ttl / 2
                && (!v->offset_ms
                    || (v->offset_ms - off < MEMSESS_CLOCK_STEP_MS
                        && off - v->offset_ms < MEMSESS_CLOCK_STEP_MS))) {
                return;   /* fresh enough (our clock has not stepped since:
                           * the others learn of a step at once) */
            }
        }
        memsess_members_put(rec, x->rt->g.instance, now, now + x->ttl,
                            x->configured, x->in_force, x->rt->nonce,
                            apr_time_as_msec(apr_time_now()), off);
        rc = write_record(x, x->n, mc, rec, cas, now);
        if (rc == MEMCACHED_SUCCESS || twin) {
            return;
        }
        if (rc != MEMCACHED_DATA_EXISTS && rc != MEMCACHED_NOTSTORED
            && rc != MEMCACHED_NOTFOUND) {
            x->conn_failed = 1;
            break;
        }
        if (!reread(x, x->n, y, mc, now, rec, &cas)) {
            x->conn_failed = 1;
            break;
        }
        note_members(x, rec);
    }
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, x->rt->main, "MEMSESS0150: "
                 "could not update the members record on %s: %s",
                 target(x, y)->addr, memcached_strerror(mc, rc));
}

/* Server y's sync job, read on y: another instance syncs it (then we
 * wait for that sync to publish it with the others), or is done with it
 * (then its line, which it takes out at its next round after its flip, no
 * longer holds the server out here). */
static void read_job(memsess_exchange_t *x, int y, const char *value,
                     size_t len, uint64_t cas, apr_int64_t now)
{
    memsess_job_t job;
    apr_int64_t skew;
    apr_time_t mono = memsess_mono_now();
    int first = !x->job_changed[y];

    if (cas != x->job_cas[y] || first) {
        x->job_cas[y] = cas;
        x->job_changed[y] = mono;
    }
    if (memsess_job_parse(value, len, now, &job)
        || !strcmp(job.holder, x->rt->g.instance)) {
        return;   /* not ours to use (a bad one is the claim's to log) */
    }
    /* its times are its holder's clock's */
    skew = skew_of(x, job.holder);
    /* lapsed: not renewed for a time to live by our own clock (as the
     * claim judges it, memsess_joblock.c); its expires, read with a skew
     * measured before its holder's clock stepped, would drop a live job
     * (a follower then held the server out again for the holder's line
     * and synced it a second time: t/53_clocks.t, a step of 4 s), so it
     * is read only the first time the record is seen */
    if (mono - x->job_changed[y] >= apr_time_from_sec(x->ttl)
        || (first && job.expires < now + skew / 1000)) {
        return;
    }
    x->job[y] = !job.done
                || apr_time_as_msec(apr_time_now()) + skew < job.flip_ms;
    if (job.done) {
        /* its line is on its way out from the moment it is done, not from
         * its flip time as our clocks read it: a follower that published
         * at the flip it saw (memsess_flip_follow), a few ms before that
         * reading, took the server out again for the holder's line, and
         * synced it a second time (t/52_lease.t, once) */
        apr_cpystrn(x->jobdone[y], job.holder, sizeof(x->jobdone[y]));
        x->jobflip[y] = job.flip_ms / 1000;
    }
}

/* Server y's kept connection closed (it failed, or y is down). */
static void drop_conn(memsess_exchange_t *x, int y)
{
    if (x->conns[y]) {
        memsess_disconnect(x->conns[y]);
        x->conns[y] = NULL;
    }
}

/* One server's part of a round: read every record it holds, note the
 * other instances' verdicts, put our lines in or out.  Returns whether it
 * answered. */
static int exchange_with(memsess_exchange_t *x, int y, apr_pool_t *p,
                         apr_int64_t now)
{
    x->conn_failed = 0;
    memcached_st *mc = x->conns[y] ? x->conns[y]
                       : (x->conns[y] = memsess_connect(x->rt, y,
                                                        x->rt->g.timeout));
    apr_array_header_t *found;
    memcached_result_st *res;
    memcached_return_t rc;
    unsigned char *seen;
    memsess_verdicts_t *rec;
    int i;

    if (!mc) {
        return 0;
    }
    rc = memcached_mget(mc, x->keys, x->keylens, (size_t)(2 * x->n + 1));
    if (!memcached_success(rc)) {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, x->rt->main, "MEMSESS0096: "
                     "could not read the verdict records on %s: %s",
                     target(x, y)->addr, memcached_strerror(mc, rc));
        drop_conn(x, y);
        return 0;
    }
    found = apr_array_make(p, 4, sizeof(found_t));
    while ((res = memcached_fetch_result(mc, NULL, &rc)) != NULL) {
        int *xi = apr_hash_get(x->bykey, memcached_result_key_value(res),
                               (apr_ssize_t)memcached_result_key_length(res));

        if (xi) {
            found_t *f = apr_array_push(found);

            f->x = *xi;
            f->cas = memcached_result_cas(res);
            f->len = memcached_result_length(res);
            f->value = apr_palloc(p, f->len + 1);
            memcpy(f->value, memcached_result_value(res), f->len);
            f->value[f->len] = '\0';
        }
        memcached_result_free(res);
    }
    if (rc != MEMCACHED_END && rc != MEMCACHED_NOTFOUND
        && rc != MEMCACHED_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, x->rt->main, "MEMSESS0097: "
                     "could not read the verdict records on %s: %s",
                     target(x, y)->addr, memcached_strerror(mc, rc));
        drop_conn(x, y);
        return 0;
    }

    seen = apr_pcalloc(p, (apr_size_t)x->n + 1);
    rec = apr_palloc(p, sizeof(*rec));
    for (i = 0; i < found->nelts; i++) {
        found_t *f = &APR_ARRAY_IDX(found, i, found_t);

        if (f->x > x->n) {
            if (f->x == x->n + 1 + y && !x->down[y]) {
                read_job(x, y, f->value, f->len, f->cas, now);
            }
            continue;
        }
        seen[f->x] = 1;
        if (apr_atomic_read32(&x->twin) && f->x != x->n) {
            continue;   /* shares nothing: verdicts neither read nor put */
        }
        read_record(x, f->x, y, f->value, f->len, now, rec);
        if (f->x == x->n) {
            note_members(x, rec);
            put_member(x, y, mc, rec, f->cas, now);
            continue;
        }
        if (memsess_verdicts_others(rec, x->rt->g.instance, now,
                                    x->who[f->x], MEMSESS_REPORTERS_MAX,
                                    &x->newest[f->x])) {
            x->peer[f->x] = 1;
        }
        put_line(x, f->x, y, mc, rec, f->cas, now);
    }
    for (i = 0; !apr_atomic_read32(&x->twin) && i < x->n; i++) {
        if (!seen[i] && x->down[i]) {
            rec->n = 0;
            rec->members = 0;
            put_line(x, i, y, mc, rec, 0, now);
        }
    }
    if (!seen[x->n]) {
        rec->n = 0;
        rec->members = 1;
        put_member(x, y, mc, rec, 0, now);
    }
    if (x->conn_failed) {
        drop_conn(x, y);   /* a fresh one next round */
    }
    return 1;
}

/* How many instances a reporters list (", "-separated) names. */
static int reporters(const char *who)
{
    int n = *who ? 1 : 0;

    for (; *who; who++) {
        n += *who == ',';
    }
    return n;
}

/* Publishes what the round learned; the caller holds the table mutex. */
static void apply_locked(memsess_exchange_t *x)
{
    memsess_runtime_t *rt = x->rt;
    memsess_table_t *t = rt->table;
    apr_int64_t now = apr_time_sec(apr_time_now());
    int i, k;

    if (!memsess_table_leased(t)) {
        return;   /* we lost the lease: not ours to write */
    }
    for (i = 0; i < x->n; i++) {
        memsess_slot_t *sl = memsess_table_slot(t, i);
        int was, is, nflipped = 0, sync = 0, follow;
        apr_int64_t wait_ms = 0;
        char addr[MEMSESS_ADDR_MAX];

        if (sl->follow_gate
            && ((sl->state != MEMSESS_DOWN && !x->peer[i])
                || reporters(x->who[i]) >= x->nmem
                || memsess_mono_now() >= (apr_time_t)sl->follow_gate)) {
            /* it is back, or every other instance sees it down too, or
             * they have all had the time to follow: our requests go on */
            memsess_table_write_begin(t);
            memsess_table_ungate(t, rt->confs->nelts,
                                 (apr_time_t)sl->follow_gate);
            sl->follow_gate = 0;
            memsess_table_write_end(t);
        }

        follow = x->job[i] && sl->peer_down && x->peer[i]
                 && MEMSESS_IS_LIVE(sl->state)
                 && rt->g.rejoin == MEMSESS_REJOIN_SYNC
                 && !x->syncs.busy(x->syncs.baton, i);
        if (sl->peer_down == x->peer[i]
            && !strcmp(sl->reported_by, x->who[i]) && !follow) {
            continue;
        }
        was = MEMSESS_SLOT_LIVE(sl);
        memsess_table_write_begin(t);
        sl->peer_down = x->peer[i];
        apr_cpystrn(sl->reported_by, x->who[i], sizeof(sl->reported_by));
        is = MEMSESS_SLOT_LIVE(sl);
        if (follow || (!was && is && rt->g.rejoin == MEMSESS_REJOIN_SYNC
                       && !x->syncs.busy(x->syncs.baton, i))) {
            /* no instance holds it out any more, and none is publishing
             * it after a sync of its own (its job would be running here):
             * whoever held it out may have died or been cut off from all.
             * Writes went elsewhere meanwhile: it is synced (or published
             * with the sync another instance has just done) first. */
            memsess_slot_sync_begin(sl, now);
            sl->sync_waits = 1;
            is = 0;
            sync = 1;
        }
        if (was != is) {
            if (was) {
                sl->out_since = apr_time_now();   /* (memsess_joblock.c) */
                sl->out_off_ms = memsess_clock_offset_ms();
            }
            sl->state_changes++;
            sl->last_change = now;
            memsess_table_bump_generation(t, 1);
            nflipped = memsess_table_publish(t, rt->views, rt->confs->nelts,
                                             i, x->flipped);
            if (was && MEMSESS_IS_LIVE(sl->state)
                && reporters(x->who[i]) < x->nmem) {
                /* out on another's word while we reach it (an asymmetric
                 * cut): the others who reach it too take it out at their
                 * own next round, up to an interval after us.  Until they
                 * have, our requests wait rather than write its sessions
                 * where those still read the old copies (the soak's seed
                 * 271828: two instances 110 ms apart, stale reads
                 * between) */
                wait_ms = memsess_exchange_follow_gate(rt, i);
            }
        }
        apr_cpystrn(addr, sl->addr, sizeof(addr));
        memsess_table_write_end(t);

        if (sync && follow) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                         "MEMSESS0155: memcached server %s: another "
                         "instance of the group syncs it: this one waits to "
                         "publish it with the others", addr);
        }
        else if (sync) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                         "MEMSESS0042: memcached server %s: no other "
                         "instance holds it out any more: syncing it (or "
                         "publishing it with the sync another instance has "
                         "just done) before it takes traffic here", addr);
        }
        if (sync) {
            x->syncs.start(x->syncs.baton, i);
            continue;
        }
        if (was == is) {
            continue;
        }
        if (!is) {
            char follows[96] = "";

            if (wait_ms) {
                apr_snprintf(follows, sizeof(follows), "; requests here wait "
                             "up to %" APR_INT64_T_FMT "ms for the rest of "
                             "the group to follow", wait_ms);
            }
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                         "MEMSESS0090: memcached server %s is down, reported "
                         "by %s (this instance, %s, still reaches it)%s",
                         addr, x->who[i], rt->g.instance, follows);
        }
        else {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                         "MEMSESS0091: memcached server %s is up: no other "
                         "instance reports it down any more", addr);
        }
        for (k = 0; k < nflipped; k++) {
            memsess_view_log_all_down(rt, &rt->views[x->flipped[k]], !is);
        }
    }
}

apr_int64_t memsess_exchange_follow_gate(memsess_runtime_t *rt, int i)
{
    memsess_slot_t *sl = memsess_table_slot(rt->table, i);
    apr_interval_time_t wait = MEMSESS_FOLLOW_WAIT(rt);
    apr_time_t until = memsess_mono_now() + wait;

    if (sl->follow_gate < until) {
        sl->follow_gate = until;
    }
    if (!memsess_table_gate_holders(rt->table, rt->views, rt->confs->nelts,
                                    i, sl->follow_gate)) {
        return 0;
    }
    return apr_time_as_msec(wait < MEMSESS_GATE_MAX ? wait : MEMSESS_GATE_MAX);
}

/* The other instances heard this round, with their clocks, into the
 * table (the status page; the flips and leases of memsess_joblock.c).  The
 * caller holds the table mutex. */
static void publish_peers_locked(memsess_exchange_t *x)
{
    memsess_peer_clock_t out[MEMSESS_PEERS_SHOWN];
    int i, k, n = 0;

    for (i = 0; i < x->nmem && n < MEMSESS_PEERS_SHOWN; i++) {
        memsess_peer_clock_t *o = &out[n++];

        memset(o, 0, sizeof(*o));
        apr_cpystrn(o->name, x->mem[i].name, sizeof(o->name));
        o->error_ms = -1;
        for (k = 0; k < PEERS_TRACKED; k++) {
            const peer_t *pe = &x->peers[k];

            if (!strcmp(pe->name, o->name)) {
                o->skew_ms = memsess_skew_ms(&pe->skew);
                o->error_ms = memsess_skew_error_ms(&pe->skew);
                o->seen = pe->seen_at;
                o->offset_ms = pe->skew.off_ms;
                o->at_ms = pe->skew.at_ms;
                o->peer_offset_ms = pe->skew.peer_off_ms;
                break;
            }
        }
    }
    memsess_table_write_begin(x->rt->table);
    memsess_table_set_peers(x->rt->table, out, n);
    memsess_table_write_end(x->rt->table);
}

/* A clock apart by more than SKEW_WARN is logged, once, and again when
 * it moved by SKEW_MOVED since. */
static void warn_skews(memsess_exchange_t *x)
{
    int i;

    for (i = 0; i < PEERS_TRACKED; i++) {
        peer_t *pe = &x->peers[i];
        apr_int64_t skew = memsess_skew_ms(&pe->skew);
        apr_int64_t err = memsess_skew_error_ms(&pe->skew);
        apr_int64_t away = skew < 0 ? -skew : skew;

        if (!pe->name[0] || err < 0 || away - err <= SKEW_WARN
            || (pe->warned && (skew > pe->logged ? skew - pe->logged
                                                 : pe->logged - skew)
                              < SKEW_MOVED)) {
            continue;
        }
        pe->warned = 1;
        pe->logged = skew;
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, x->rt->main,
                     "MEMSESS0160: the clock of instance %s is %"
                     APR_INT64_T_FMT "ms %s this one's (+-%" APR_INT64_T_FMT
                     "ms, measured from its member lines): its lines lapse "
                     "by this instance's clock, and the group's flip times "
                     "and job leases are read in its clock%s; check NTP on "
                     "both machines", pe->name, away,
                     skew > 0 ? "ahead of" : "behind", err,
                     err <= apr_time_as_msec(MEMSESS_FLIP_DELAY) ? ""
                     : " once it is measured closer (not yet: flips it "
                       "holds are published here when read)");
    }
}

/* While this instance reaches a server that others' lines hold out, its
 * rounds come this often: when those lines go (a heal, a sync another
 * instance ran and published), it follows within this, not within an
 * interval of the checker's (the soak's seed 7022: an instance that missed
 * the running sync published 345 ms after the others, under stress-ng). */
#define FAST_ROUND apr_time_from_msec(50)

/* A step of our own clock since the last round: what is known of the
 * others' clocks in our clock as it is now (memsess_clocks.c), and said. */
static void own_step(memsess_exchange_t *x)
{
    apr_int64_t off = memsess_clock_offset_ms();
    apr_int64_t d = x->offset_ms ? off - x->offset_ms : 0;
    int i;

    x->offset_ms = off;
    for (i = 0; i < PEERS_TRACKED; i++) {
        if (x->peers[i].name[0]) {
            memsess_skew_rebase(&x->peers[i].skew, off);
        }
    }
    if (d <= MEMSESS_CLOCK_STEP_MS && d >= -MEMSESS_CLOCK_STEP_MS) {
        return;   /* (a slew: followed round by round) */
    }
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, x->rt->main,
                 "MEMSESS0161: this instance's clock stepped %" APR_INT64_T_FMT
                 "ms %s: the other instances' clocks as measured are moved "
                 "by as much, and their job records and flip times read "
                 "with it", d < 0 ? -d : d, d < 0 ? "back" : "ahead");
}

static void exchange_round(memsess_exchange_t *x, apr_pool_t *p)
{
    apr_int64_t now = apr_time_sec(apr_time_now());
    int i, answered = 0, fast;

    own_step(x);

    apr_thread_mutex_lock(x->table_mutex);
    x->in_force = x->configured;
    for (i = 0; i < x->rt->confs->nelts; i++) {
        if (x->rt->views[i].before
            && memsess_table_view_slot(x->rt->table, i)->rebalance) {
            x->in_force = memsess_pools_fingerprint(p, x->rt, 1);
            break;
        }
    }
    for (i = 0; i < x->n; i++) {
        /* a server we sync is not ready for anyone: our line keeps it out
         * for all until we publish it (not while another instance syncs
         * it for us: memsess_rejoin.c) */
        apr_uint32_t state = memsess_table_slot(x->rt->table, i)->state;

        x->down[i] = state == MEMSESS_DOWN
                     || (state == MEMSESS_SYNCING
                         && !memsess_table_slot(x->rt->table, i)->sync_waits);
        x->unreachable[i] = state == MEMSESS_DOWN;
    }
    apr_thread_mutex_unlock(x->table_mutex);
    memset(x->peer, 0, (apr_size_t)x->n);
    memset(x->job, 0, (apr_size_t)x->n);
    for (i = 0; i < x->n; i++) {
        x->jobdone[i][0] = '\0';
        x->newest[i] = 0;
    }
    for (i = 0; i < x->n; i++) {
        x->who[i][0] = '\0';
    }
    x->nmem = 0;
    for (i = 0; i < x->n; i++) {
        if (x->unreachable[i]) {
            drop_conn(x, i);   /* down here: not read, not kept */
        }
        else {
            answered += exchange_with(x, i, p, now);
        }
    }
    fast = 0;
    for (i = 0; i < x->n; i++) {
        /* the holder of a sync it has published is the only one to hold
         * it out: its line is on its way out, unless refreshed in a second
         * after its flip's (a new verdict of its own: the record says done
         * for a second or two more, up to 30 s after a stop, while the
         * server was held in by all) */
        if (x->peer[i] && *x->jobdone[i] && !strcmp(x->who[i], x->jobdone[i])
            && x->newest[i] <= x->jobflip[i]) {
            x->peer[i] = 0;
            x->who[i][0] = '\0';
        }
        fast |= x->peer[i] && !x->unreachable[i];
    }
    apr_thread_mutex_lock(x->mutex);
    x->fast = fast;
    apr_thread_mutex_unlock(x->mutex);
    if (answered && !apr_atomic_read32(&x->twin)) {
        apr_thread_mutex_lock(x->table_mutex);
        apply_locked(x);
        publish_peers_locked(x);
        apr_thread_mutex_unlock(x->table_mutex);
        warn_skews(x);
        apr_thread_mutex_lock(x->mutex);
        memcpy(x->snap, x->mem, (apr_size_t)x->nmem * sizeof(*x->mem));
        x->nsnap = x->nmem;
        x->listened = 1;   /* every instance's line is in already */
        apr_thread_mutex_unlock(x->mutex);
    }
}

int memsess_exchange_others(memsess_exchange_t *x)
{
    int n;

    if (!x) {
        return 0;
    }
    apr_thread_mutex_lock(x->mutex);
    /* nobody heard, or a twin found: as alone */
    n = x->listened && !apr_atomic_read32(&x->twin) ? x->nsnap : 0;
    apr_thread_mutex_unlock(x->mutex);
    return n;
}

int memsess_exchange_agree(memsess_exchange_t *x, int in_force,
                           apr_uint64_t fp, char *who, apr_size_t whosize)
{
    apr_size_t len = 0;
    int i, agree;

    who[0] = '\0';
    if (!memsess_exchange_sharing(x)) {
        return 1;   /* alone, or as alone (a twin found) */
    }
    apr_thread_mutex_lock(x->mutex);
    agree = x->listened;
    if (!agree) {
        apr_cpystrn(who, "(still listening for the other instances)",
                    whosize);
    }
    for (i = 0; x->listened && i < x->nsnap; i++) {
        const memsess_verdict_t *v = &x->snap[i];

        if ((in_force ? v->in_force : v->configured) == fp) {
            continue;
        }
        agree = 0;
        if (len + strlen(v->name) + 3 < whosize) {
            len += (apr_size_t)apr_snprintf(who + len, whosize - len, "%s%s",
                                            len ? ", " : "", v->name);
        }
    }
    apr_thread_mutex_unlock(x->mutex);
    return agree;
}

static void *APR_THREAD_FUNC exchange_thread(apr_thread_t *thread,
                                             void *data)
{
    memsess_exchange_t *x = data;
    apr_pool_t *p;
    apr_uint64_t round;
    int i;

    apr_pool_create(&p, NULL);   /* this thread's own */
    apr_thread_mutex_lock(x->mutex);
    for (;;) {
        while (!x->wake && !x->stop) {
            if (!x->fast) {
                apr_thread_cond_wait(x->cond, x->mutex);
            }
            else if (apr_thread_cond_timedwait(x->cond, x->mutex, FAST_ROUND)
                     == APR_TIMEUP) {
                x->wake = 1;
            }
        }
        if (x->stop) {
            break;
        }
        x->wake = 0;
        x->busy = 1;
        round = ++x->begun;
        apr_thread_mutex_unlock(x->mutex);
        exchange_round(x, p);
        apr_pool_clear(p);
        apr_thread_mutex_lock(x->mutex);
        x->busy = 0;
        x->ended = round;
        apr_thread_cond_broadcast(x->ended_cond);
    }
    apr_thread_mutex_unlock(x->mutex);
    apr_pool_destroy(p);
    for (i = 0; i < x->n; i++) {
        drop_conn(x, i);
    }
    /* a plain return, not apr_thread_exit(): pthread_exit's forced unwind
     * left ASan reporting a stack-buffer-underflow in a thread it no
     * longer knew (T-1) when the checker stopped */
    (void)thread;
    return NULL;
}

memsess_exchange_t *memsess_exchange_start(memsess_runtime_t *rt,
                                           apr_pool_t *pool,
                                           apr_thread_mutex_t *table_mutex,
                                           const memsess_syncs_t *syncs)
{
    memsess_exchange_t *x;
    apr_status_t rv;
    int i, n = rt->targets->nelts;

    if (!rt->g.share) {
        /* a previous generation's verdicts of others no longer apply */
        memsess_table_write_begin(rt->table);
        forget_peers(rt);
        memsess_table_write_end(rt->table);
        return NULL;
    }
    x = apr_pcalloc(pool, sizeof(*x));
    x->rt = rt;
    x->syncs = *syncs;
    x->table_mutex = table_mutex;
    x->n = n;
    /* keys: [0, n) the verdicts, n the members, n + 1 + i server i's sync
     * job (read on server i only) */
    x->keys = apr_palloc(pool, (2 * n + 1) * sizeof(*x->keys));
    x->keylens = apr_palloc(pool, (2 * n + 1) * sizeof(*x->keylens));
    x->index = apr_palloc(pool, (2 * n + 1) * sizeof(*x->index));
    x->mem = apr_palloc(pool, MEMSESS_VERDICTS_MAX * sizeof(*x->mem));
    x->snap = apr_palloc(pool, MEMSESS_VERDICTS_MAX * sizeof(*x->snap));
    x->peers = apr_pcalloc(pool, PEERS_TRACKED * sizeof(*x->peers));
    x->conns = apr_pcalloc(pool, (apr_size_t)(n ? n : 1) * sizeof(*x->conns));
    for (i = 0; i < PEERS_TRACKED; i++) {
        x->peers[i].lapse = apr_pcalloc(pool, (apr_size_t)((n + 1)
                                                           * (n ? n : 1))
                                              * sizeof(memsess_lapse_t));
        x->peers[i].seen = apr_pcalloc(pool, (apr_size_t)(n ? n : 1)
                                             * sizeof(memsess_skew_seen_t));
    }
    seed_peers(x);
    x->configured = x->in_force = memsess_pools_fingerprint(pool, rt, 0);
    x->bykey = apr_hash_make(pool);
    x->down = apr_pcalloc(pool, n);
    x->unreachable = apr_pcalloc(pool, n);
    x->peer = apr_pcalloc(pool, n);
    x->job = apr_pcalloc(pool, n);
    x->jobdone = apr_pcalloc(pool, n * sizeof(*x->jobdone));
    x->jobflip = apr_pcalloc(pool, n * sizeof(*x->jobflip));
    x->newest = apr_pcalloc(pool, n * sizeof(*x->newest));
    x->job_cas = apr_pcalloc(pool, n * sizeof(*x->job_cas));
    x->job_changed = apr_pcalloc(pool, n * sizeof(*x->job_changed));
    x->who = apr_pcalloc(pool, n * sizeof(*x->who));
    x->bad_logged = apr_pcalloc(pool, (n + 1) * sizeof(*x->bad_logged));
    x->flipped = apr_pcalloc(pool, rt->confs->nelts * sizeof(int));
    for (i = 0; i < n; i++) {
        char *key = apr_palloc(pool, MEMSESS_VERDICT_KEY_MAX + 1), *job;

        x->keylens[i] = memsess_record_key(key, MEMSESS_VERDICT_KEY_MAX + 1,
                                            rt->g.group, "down",
                                            target(x, i)->addr);
        x->keys[i] = key;
        x->index[i] = i;
        job = apr_palloc(pool, MEMSESS_VERDICT_KEY_MAX + 1);
        x->keylens[n + 1 + i] = memsess_record_key(job,
                                                   MEMSESS_VERDICT_KEY_MAX + 1,
                                                   rt->g.group, "job",
                                                   target(x, i)->addr);
        x->keys[n + 1 + i] = job;
        x->index[n + 1 + i] = n + 1 + i;
        apr_hash_set(x->bykey, job, (apr_ssize_t)x->keylens[n + 1 + i],
                     &x->index[n + 1 + i]);
        apr_hash_set(x->bykey, key, (apr_ssize_t)x->keylens[i],
                     &x->index[i]);
    }
    {
        char *key = apr_palloc(pool, MEMSESS_VERDICT_KEY_MAX + 1);

        x->keylens[n] = memsess_record_key(key, MEMSESS_VERDICT_KEY_MAX + 1,
                                           rt->g.group, "members", "all");
        x->keys[n] = key;
        x->index[n] = n;
        apr_hash_set(x->bykey, key, (apr_ssize_t)x->keylens[n],
                     &x->index[n]);
    }
    x->ttl = memsess_share_ttl(rt);
    if ((rv = apr_thread_mutex_create(&x->mutex, APR_THREAD_MUTEX_DEFAULT,
                                      pool)) != APR_SUCCESS
        || (rv = apr_thread_cond_create(&x->cond, pool)) != APR_SUCCESS
        || (rv = apr_thread_cond_create(&x->ended_cond, pool))
           != APR_SUCCESS
        || (rv = apr_thread_create(&x->thread, NULL, exchange_thread, x,
                                   pool)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, rt->main, "MEMSESS0098: "
                     "cannot start the verdict exchange: this instance "
                     "decides alone");
        return NULL;
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, rt->main, "MEMSESS0095: sharing "
                 "verdicts as instance %s in group %s (lines hold %"
                 APR_INT64_T_FMT "s)", rt->g.instance, rt->g.group, x->ttl);
    return x;
}

void memsess_exchange_round(memsess_exchange_t *x)
{
    /* a twin found: only our member line goes on, so that the twin finds
     * us too (nothing of the round is applied) */
    if (!x) {
        return;
    }
    apr_thread_mutex_lock(x->mutex);
    if (!x->busy) {
        x->wake = 1;   /* else the last round is still out: skip this one */
        apr_thread_cond_signal(x->cond);
    }
    apr_thread_mutex_unlock(x->mutex);
}

int memsess_exchange_fresh(memsess_exchange_t *x, apr_time_t deadline)
{
    apr_uint64_t want;
    apr_time_t now;

    if (!x) {
        return 0;
    }
    apr_thread_mutex_lock(x->mutex);
    want = x->begun + 1;   /* the next to begin: one out read too early */
    x->wake = 1;
    apr_thread_cond_signal(x->cond);
    while (x->ended < want && !x->stop
           && (now = memsess_mono_now()) < deadline) {
        apr_thread_cond_timedwait(x->ended_cond, x->mutex, deadline - now);
    }
    want = x->ended >= want;
    apr_thread_mutex_unlock(x->mutex);
    return (int)want;
}

void memsess_exchange_stop(memsess_exchange_t *x)
{
    apr_status_t rv;

    if (!x) {
        return;
    }
    apr_thread_mutex_lock(x->mutex);
    x->stop = 1;
    apr_thread_cond_signal(x->cond);
    apr_thread_cond_broadcast(x->ended_cond);
    apr_thread_mutex_unlock(x->mutex);
    /* a round still out ends within its timeouts */
    apr_thread_join(&rv, x->thread);
}
