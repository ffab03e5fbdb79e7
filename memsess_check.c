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

/* The checker: one per Apache instance, in one child process.
 *
 * Every child runs a mod_watchdog callback every 100ms.  The child that
 * holds the lease in the shared table is the checker: every interval it
 * hands every server to a thread pool; each probe is a libmemcached round
 * trip bounded by the timeout, and records its own verdict in the table.
 * A hung server holds up one thread, never the verdict on the others.
 *
 * The other children watch the lease: when its owner is gone (killed,
 * crashed, exited) or has not started a round for too long, the first to
 * see it takes over by compare-and-swap, within one tick.  mod_watchdog's
 * own singleton is not used: after a crash its next holder waits ten
 * seconds before it runs.
 *
 * What is in flight lives in the checker's memory only: a child that dies
 * takes it along, and the next checker starts clean. */

#include <errno.h>
#include <stdlib.h>
#include <limits.h>
#include <signal.h>
#include <unistd.h>

#include <libmemcached/memcached.h>

#include "apr_strings.h"
#include "apr_thread_pool.h"
#include "apr_thread_mutex.h"
#include "apr_file_io.h"
#include "apr_atomic.h"
#include "apr_lib.h"
#include "apr_network_io.h"

#include "httpd.h"
#include "http_log.h"
#include "mod_watchdog.h"

#include "mod_memsess.h"

APLOG_USE_MODULE(memsess);

#define WATCHDOG_NAME "_memsess_"
#define TICK          apr_time_from_msec(100)

static APR_OPTIONAL_FN_TYPE(ap_watchdog_get_instance) *wd_get_instance;
static APR_OPTIONAL_FN_TYPE(ap_watchdog_register_callback) *wd_register;

typedef struct checker_t checker_t;

/* One server's probe, as the thread pool gets it. */
typedef struct {
    checker_t *c;
    int        slot;
    int        in_flight;   /* handed to the thread pool, not back yet */
    int        overdue;     /* its failure is recorded: drop its result */
    apr_time_t dispatched;
} probe_t;

/* The checker of this process, alive from STARTING to STOPPING. */
struct checker_t {
    memsess_runtime_t  *rt;
    apr_pool_t         *pool;
    apr_thread_pool_t  *threads;
    apr_thread_mutex_t *mutex;     /* serialises writers of the table */
    probe_t            *probes;    /* [nslots] */
    struct sync_job_t **jobs;      /* [nslots]: rejoin syncs in flight */
    struct rebalance_t *rebalance; /* the pool changes' rebalance, or NULL */
    apr_time_t          rebalance_retry;  /* not before (after a failure) */
    int                 rebalance_told;   /* "new servers down" logged */
    int                *flipped;   /* [nviews]: scratch for publish */
    apr_time_t          next_round;
};

static checker_t *checker;

static int sync_busy(checker_t *c, int i);
static void sync_start(checker_t *c, int i);
static void sync_cancel(checker_t *c, int i);
static void sync_stop_all(checker_t *c);
static void rebalance_round(checker_t *c);
static void rebalance_stop(checker_t *c);

/* The key each probe writes: one per checker process (so two Apache
 * instances sharing a server never race on it), on the probe's host. */
static char probe_key[128];

static void make_probe_key(void)
{
    char host[64] = "";
    char *c;

    apr_gethostname(host, sizeof(host), NULL);
    for (c = host; *c; c++) {
        if (!apr_isalnum(*c) && *c != '-' && *c != '.') {
            *c = '_';
        }
    }
    apr_snprintf(probe_key, sizeof(probe_key), "memsess:probe:%s:%"
                 APR_PID_T_FMT, host, getpid());
}

/* Why a probe failed, in one clean line: libmemcached's name for the
 * error, and its detail without the object address it starts with, the
 * host we know already and the source location.  What the server sent
 * may be in there: control characters become spaces, other bytes outside
 * ASCII '?'. */
static void describe(memcached_st *mc, memcached_return_t rc, char *err,
                     apr_size_t errlen)
{
    const char *detail = memcached_last_error_message(mc), *end;
    char *c;

    if (!detail || memcached_last_error(mc) == MEMCACHED_SUCCESS) {
        detail = memcached_strerror(mc, rc);
    }
    if (!strncmp(detail, "(0x", 3) && strstr(detail, ") ")) {
        detail = strstr(detail, ") ") + 2;
    }
    end = strstr(detail, ",  host:");
    if (!end) {
        end = detail + strlen(detail);
    }
    apr_cpystrn(err, detail, (apr_size_t)(end - detail) + 1 < errlen
                             ? (apr_size_t)(end - detail) + 1 : errlen);
    memsess_text_one_line(err);
    c = err + strlen(err);
    /* trailing separators of a detail that was cut */
    while (c > err && (c[-1] == ' ' || c[-1] == ',')) {
        *--c = '\0';
    }
}

/* MemsessCredentials: what a failed probe says about SASL.
 *
 * A probe with credentials speaks the binary protocol (SASL has no other)
 * and authenticates on connect; one without speaks text, as PHP does by
 * default.  A refused password is named as such.  The two mismatches look
 * like any broken server from where the probe stands: memcached -S closes
 * the connection on a text command, memcached without -S answers the SASL
 * commands with an error libmemcached calls an unknown read failure.  For
 * those two failures only, one more round trip, in the binary protocol
 * without credentials and within what is left of the timeout, tells which:
 * a server that asks for SASL refuses the command (AUTH_FAILURE), one that
 * does not stores it. */
static memcached_return_t try_without_credentials(const memsess_server_t *srv,
                                                  uint64_t ms)
{
    memcached_st *mc = memcached_create(NULL);
    memcached_return_t rc;

    if (!mc) {
        return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
    }
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, ms);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, ms);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_RCV_TIMEOUT, ms * 1000);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_SND_TIMEOUT, ms * 1000);
    rc = memcached_server_add(mc, srv->host, srv->port);
    if (memcached_success(rc)) {
        rc = memcached_set(mc, probe_key, strlen(probe_key), "sasl?", 5, 60,
                           0);
    }
    memcached_free(mc);
    return rc;
}

/* Rewrites err, the description of a failed probe, when the failure is
 * about SASL.  left: what remains of the probe's timeout. */
static void explain_sasl(const memsess_server_t *srv,
                         const memsess_credentials_t *cred, memcached_st *mc,
                         memcached_return_t rc, apr_interval_time_t left,
                         char *err, apr_size_t errlen)
{
    uint64_t ms = left > 0 ? apr_time_as_msec(left / 2) : 0;
    memcached_return_t plain;

    if (cred && (rc == MEMCACHED_AUTH_FAILURE
                 || rc == MEMCACHED_AUTH_PROBLEM)) {
        char cause[MEMSESS_ERROR_MAX];

        apr_cpystrn(cause, err, sizeof(cause));
        apr_snprintf(err, errlen, "SASL authentication failed for user "
                     "\"%s\": %s", cred->username,
                     rc == MEMCACHED_AUTH_FAILURE
                     ? "wrong user name or password" : cause);
        return;
    }
    if (ms < 1 || (cred ? rc != MEMCACHED_UNKNOWN_READ_FAILURE
                        : rc != MEMCACHED_CONNECTION_FAILURE
                          || memcached_last_error_errno(mc) != 0)) {
        return;
    }
    plain = try_without_credentials(srv, ms);
    if (cred && plain == MEMCACHED_SUCCESS) {
        apr_snprintf(err, errlen, "the server does not speak SASL (memcached "
                     "without -S?) but MemsessCredentials gives user \"%s\"",
                     cred->username);
    }
    else if (!cred && (plain == MEMCACHED_AUTH_FAILURE
                       || plain == MEMCACHED_AUTH_PROBLEM)) {
        apr_cpystrn(err, "the server asks for SASL authentication (memcached "
                    "-S) but its pool has no MemsessCredentials", errlen);
    }
}

/* One probe: connect, store a fresh value under our key, read it back and
 * compare.  A connect alone proves nothing (a frozen server still completes
 * the TCP handshake), and neither does a plain "get": a server that answers
 * garbage can pass for one that has no such key.  Only a server that
 * speaks the protocol and stores what it is given echoes the value. */
static int probe(const memsess_server_t *srv,
                 const memsess_credentials_t *cred,
                 apr_interval_time_t timeout, int flush, char *err,
                 apr_size_t errlen)
{
    static apr_uint32_t counter;
    memcached_st *mc = memcached_create(NULL);
    memcached_return_t rc;
    uint64_t ms = apr_time_as_msec(timeout) > 0 ? apr_time_as_msec(timeout)
                                                : 1;
    char nonce[64];
    uint32_t flags;
    size_t len = 0, keylen = strlen(probe_key), noncelen;
    char *value = NULL;
    apr_time_t start = apr_time_now();
    int ok;

    if (!mc) {
        apr_cpystrn(err, "out of memory", errlen);
        return 0;
    }
    noncelen = apr_snprintf(nonce, sizeof(nonce), "%" APR_TIME_T_FMT "-%u",
                            apr_time_now(),
                            apr_atomic_inc32(&counter));
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, ms);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, ms);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_RCV_TIMEOUT, ms * 1000);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_SND_TIMEOUT, ms * 1000);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 0);
    /* (switches to the binary protocol) */
    rc = cred ? memcached_set_sasl_auth_data(mc, cred->username,
                                             cred->password)
              : MEMCACHED_SUCCESS;
    if (memcached_success(rc)) {
        rc = memcached_server_add(mc, srv->host, srv->port);
    }
    if (memcached_success(rc)) {
        rc = memcached_set(mc, probe_key, keylen, nonce, noncelen, 60, 0);
    }
    if (rc == MEMCACHED_SUCCESS) {
        value = memcached_get(mc, probe_key, keylen, &len, &flags, &rc);
    }
    ok = rc == MEMCACHED_SUCCESS && value && len == noncelen
         && !memcmp(value, nonce, len);
    free(value);
    if (ok && flush) {
        /* what it held is older than what was written elsewhere meanwhile */
        rc = memcached_flush(mc, 0);
        ok = rc == MEMCACHED_SUCCESS;
    }
    if (ok) {
        memcached_destroy_sasl_auth_data(mc);
        memcached_free(mc);
        return 1;
    }
    if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_NOTFOUND) {
        apr_cpystrn(err, "read back something else than the probe stored",
                    errlen);
    }
    else {
        describe(mc, rc, err, errlen);
        explain_sasl(srv, cred, mc, rc, timeout - (apr_time_now() - start),
                     err, errlen);
    }
    memcached_destroy_sasl_auth_data(mc);
    memcached_free(mc);
    return 0;
}

/* A vhost's pool went into (or out of) the state where none is live. */
static void log_all_down(const memsess_runtime_t *rt,
                         const memsess_view_t *view, int all_down)
{
    if (!all_down) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0016: "
                     "%s has a live memcached server again", view->name);
        return;
    }
    if (view->alldown == MEMSESS_ALLDOWN_FILES) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0017: no "
                     "memcached server of %s is live: its PHP requests get "
                     "PHP's files handler in %s", view->name,
                     view->alldown_dir);
        return;
    }
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0018: no "
                 "memcached server of %s is live: its PHP requests get %s",
                 view->name, view->alldown == MEMSESS_ALLDOWN_503
                             ? "503 Service Unavailable"
                             : "the full list (MemsessAllDown open)");
}

/* Records one verdict; the caller holds the mutex. */
static void record_locked(checker_t *c, int i, int ok, const char *error,
                          apr_interval_time_t took)
{
    memsess_runtime_t *rt = c->rt;
    memsess_table_t *t = rt->table;
    memsess_slot_t *slot = memsess_table_slot(t, i), after;
    int changed, nflipped = 0, k;
    apr_uint32_t owner, before;
    apr_time_t heartbeat;

    memsess_table_owner(t, &owner, &heartbeat);
    if (owner != (apr_uint32_t)getpid()) {
        return;   /* we were stalled and lost the lease: not ours to write */
    }
    before = slot->state;
    memsess_table_write_begin(t);
    /* while the last sync of this server winds down, it stays down */
    changed = memsess_slot_record(slot, ok, error, (apr_uint64_t)took,
                                  apr_time_sec(apr_time_now()),
                                  rt->g.fail_threshold,
                                  sync_busy(c, i) ? INT_MAX
                                                  : rt->g.pass_threshold);
    if (changed && before == MEMSESS_DOWN && slot->state == MEMSESS_UP
        && rt->g.rejoin == MEMSESS_REJOIN_SYNC) {
        memsess_slot_sync_begin(slot, apr_time_sec(apr_time_now()));
    }
    if (changed && before == MEMSESS_SYNCING) {
        sync_cancel(c, i);   /* it failed a probe */
    }
    if (changed) {
        memsess_table_bump_generation(t, 1);
        nflipped = memsess_table_publish(t, rt->views, rt->confs->nelts, i,
                                         c->flipped);
    }
    memcpy(&after, slot, sizeof(after));
    memsess_table_write_end(t);

    if (!changed) {
        ap_log_error(APLOG_MARK, APLOG_TRACE1, 0, rt->main,
                     "memcached server %s: probe %s in %" APR_TIME_T_FMT
                     "us%s%s", after.addr, ok ? "passed" : "failed", took,
                     ok ? "" : ": ", ok ? "" : error);
    }
    else if (after.state == MEMSESS_SYNCING) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0030: "
                     "memcached server %s passed %u consecutive probes: "
                     "syncing its sessions before it takes traffic "
                     "(MemsessRejoin sync)", after.addr,
                     after.consecutive_passes);
        sync_start(c, i);
    }
    else if (after.state == MEMSESS_DOWN) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0010: "
                     "memcached server %s is down (%s, %u consecutive "
                     "failures)", after.addr, error, after.consecutive_fails);
    }
    else {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0011: "
                     "memcached server %s is up (%u consecutive good probes, "
                     "answered in %" APR_TIME_T_FMT "us%s)", after.addr,
                     after.consecutive_passes, took,
                     rt->g.rejoin == MEMSESS_REJOIN_FLUSH
                     && before == MEMSESS_DOWN
                     ? "; emptied first: MemsessRejoin flush" : "");
    }
    for (k = 0; k < nflipped; k++) {
        log_all_down(rt, &rt->views[c->flipped[k]],
                     after.state == MEMSESS_DOWN);
    }
}

/* Whether a good probe now brings a down server back, and it must be
 * emptied first (MemsessRejoin flush).  Read as the probe starts: while it
 * is in flight nothing else writes the slot until its timeout has passed
 * (the dispatcher's overdue verdict), so the read is safe. */
static int rejoining(const checker_t *c, int i)
{
    const memsess_slot_t *slot = memsess_table_slot(c->rt->table, i);

    return c->rt->g.rejoin == MEMSESS_REJOIN_FLUSH
           && slot->state == MEMSESS_DOWN
           && slot->consecutive_passes + 1
              >= (apr_uint32_t)c->rt->g.pass_threshold;
}

static void *APR_THREAD_FUNC probe_task(apr_thread_t *thread, void *data)
{
    probe_t *pr = data;
    checker_t *c = pr->c;
    int i = pr->slot;
    const memsess_server_t *srv = APR_ARRAY_IDX(c->rt->targets, i,
                                                memsess_server_t *);
    apr_interval_time_t timeout = c->rt->g.timeout, took;
    char error[MEMSESS_ERROR_MAX];
    apr_time_t start = apr_time_now();
    int ok;

    (void)thread;
    ok = probe(srv, c->rt->credentials[i], timeout, rejoining(c, i), error,
               sizeof(error));
    took = apr_time_now() - start;
    if (ok && took > timeout) {
        ok = 0;
        apr_snprintf(error, sizeof(error), "answered after %" APR_TIME_T_FMT
                     "ms, beyond the %" APR_TIME_T_FMT "ms timeout",
                     apr_time_as_msec(took), apr_time_as_msec(timeout));
    }
    else if (!ok && took >= timeout) {
        char cause[MEMSESS_ERROR_MAX];

        apr_cpystrn(cause, error, sizeof(cause));
        apr_snprintf(error, sizeof(error), "timeout after %" APR_TIME_T_FMT
                     "ms: %s", apr_time_as_msec(took), cause);
    }

    apr_thread_mutex_lock(c->mutex);
    pr->in_flight = 0;
    if (pr->overdue) {
        pr->overdue = 0;   /* its failure is on record already */
    }
    else {
        record_locked(c, i, ok, error, took);
    }
    apr_thread_mutex_unlock(c->mutex);
    return NULL;
}

/* Hands every server whose last probe is back to the thread pool.  One
 * still out after the timeout counts as a failure now, once per round. */
static void sync_reap(checker_t *c);

static void dispatch_round(checker_t *c)
{
    int i, n = c->rt->targets->nelts;
    apr_time_t now = apr_time_now();

    sync_reap(c);
    rebalance_round(c);

    for (i = 0; i < n; i++) {
        probe_t *pr = &c->probes[i];
        apr_status_t rv;

        apr_thread_mutex_lock(c->mutex);
        if (pr->in_flight) {
            if (now - pr->dispatched > c->rt->g.timeout) {
                char error[MEMSESS_ERROR_MAX];

                apr_snprintf(error, sizeof(error), "no answer after %"
                             APR_TIME_T_FMT "ms", apr_time_as_msec(
                                 now - pr->dispatched));
                pr->overdue = 1;
                record_locked(c, i, 0, error, now - pr->dispatched);
            }
            apr_thread_mutex_unlock(c->mutex);
            continue;
        }
        pr->in_flight = 1;
        pr->overdue = 0;
        pr->dispatched = now;
        apr_thread_mutex_unlock(c->mutex);

        rv = apr_thread_pool_push(c->threads, probe_task, pr,
                                  APR_THREAD_TASK_PRIORITY_NORMAL, NULL);
        if (rv != APR_SUCCESS) {
            char cause[MEMSESS_ERROR_MAX], error[MEMSESS_ERROR_MAX];

            /* on the stack: the checker's pool lives as long as it does */
            apr_strerror(rv, cause, sizeof(cause));
            apr_snprintf(error, sizeof(error), "cannot start a probe: %s",
                         cause);
            apr_thread_mutex_lock(c->mutex);
            pr->in_flight = 0;
            record_locked(c, i, 0, error, 0);
            apr_thread_mutex_unlock(c->mutex);
        }
    }
}

/* ------------------------------------------------------------------ */
/* Rejoin syncs (MemsessRejoin sync)                                  */
/*
 * A down server whose probes pass is SYNCING, not live: a thread of its
 * own (never a probe thread: other verdicts are never delayed) runs
 * memsess_sync.c for every view of the server, publishes it (UP) when the
 * lists it synced against are still the ones published, then reconciles
 * what requests with the old list wrote meanwhile.  A failed probe of the
 * server (memsess_slot_record: SYNCING -> DOWN) or an error at any server
 * stops it; the server stays down and its next good probes start over.
 */

/* Requests that got the old list before the flip: their writes land
 * within this, and the after pass picks them up. */
#define SYNC_GRACE apr_time_from_msec(1000)

typedef struct sync_job_t {
    checker_t              *c;
    int                     slot;
    apr_pool_t             *pool;
    apr_thread_t           *thread;
    volatile apr_uint32_t   stop;
    volatile apr_uint32_t   done;
    memsess_sync_spec_t     spec;
    memsess_sync_list_t    *lists;
    int                    *list_view;   /* a view each list stands for */
} sync_job_t;

static int sync_busy(checker_t *c, int i)
{
    return c->jobs && c->jobs[i] != NULL;
}

/* What view v publishes from: its pool, or the one before while a
 * rebalance is pending.  The caller holds the mutex. */
static const memsess_view_t *in_force(checker_t *c, int v)
{
    const memsess_view_t *view = &c->rt->views[v];

    return view->before
           && memsess_table_view_slot(c->rt->table, v)->rebalance
           ? view->before : view;
}

/* The save_path view (a definition) gives, with slot i counted live or
 * not (i < 0: none): what memsess_table_publish writes.  The caller holds
 * the mutex. */
static const char *def_path(checker_t *c, apr_pool_t *p,
                            const memsess_view_t *view, int i, int i_live,
                            int *nlive_out)
{
    const apr_array_header_t *servers = view->pool->servers;
    unsigned char *live = apr_pcalloc(p, servers->nelts ? servers->nelts : 1);
    apr_size_t len;
    char *buf;
    int k, nlive = 0;

    for (k = 0; k < servers->nelts; k++) {
        int s = APR_ARRAY_IDX(servers, k, memsess_server_t).slot;

        live[k] = s == i ? i_live
                  : MEMSESS_IS_LIVE(memsess_table_slot(c->rt->table, s)->state);
        nlive += live[k];
    }
    if (nlive_out) {
        *nlive_out = nlive;
    }
    len = memsess_path_build(NULL, 0, view->pool, nlive ? live : NULL,
                             view->format, view->failover);
    buf = apr_palloc(p, len + 1);
    memsess_path_build(buf, len + 1, view->pool, nlive ? live : NULL,
                       view->format, view->failover);
    return buf;
}

/* The save_path view v publishes, with slot i counted live or not. */
static const char *view_path(checker_t *c, apr_pool_t *p, int v, int i,
                             int i_live, int *nlive_out)
{
    return def_path(c, p, in_force(c, v), i, i_live, nlive_out);
}

static void sync_progress(void *baton, const memsess_sync_stats_t *st)
{
    sync_job_t *job = baton;
    checker_t *c = job->c;
    memsess_slot_t *slot = memsess_table_slot(c->rt->table, job->slot);
    apr_uint32_t owner;
    apr_time_t heartbeat;

    apr_thread_mutex_lock(c->mutex);
    memsess_table_owner(c->rt->table, &owner, &heartbeat);
    if (owner == (apr_uint32_t)getpid()
        && slot->state == MEMSESS_SYNCING) {
        memsess_table_write_begin(c->rt->table);
        slot->sync_examined = st->examined;
        slot->sync_copied = st->copied;
        slot->sync_deleted = st->deleted;
        memsess_table_write_end(c->rt->table);
    }
    apr_thread_mutex_unlock(c->mutex);
}

/* Publishes the server when every list it synced against is still the
 * one published.  Returns 1, or 0 with why in err. */
static int sync_flip(sync_job_t *job, const memsess_sync_stats_t *st,
                     char *err, apr_size_t errlen)
{
    checker_t *c = job->c;
    memsess_runtime_t *rt = c->rt;
    memsess_slot_t *slot = memsess_table_slot(rt->table, job->slot);
    apr_uint32_t owner;
    apr_time_t heartbeat;
    apr_pool_t *p;
    int k, ok = 1, nflipped = 0;

    apr_pool_create(&p, job->pool);
    apr_thread_mutex_lock(c->mutex);
    memsess_table_owner(rt->table, &owner, &heartbeat);
    if (owner != (apr_uint32_t)getpid() || job->stop
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
        memsess_slot_sync_end(slot, 1, NULL, apr_time_sec(apr_time_now()));
        slot->sync_examined = st->examined;
        slot->sync_copied = st->copied;
        slot->sync_deleted = st->deleted;
        memsess_table_bump_generation(rt->table, 1);
        nflipped = memsess_table_publish(rt->table, rt->views,
                                         rt->confs->nelts, job->slot,
                                         c->flipped);
        memsess_table_write_end(rt->table);
        for (k = 0; k < nflipped; k++) {
            log_all_down(rt, &rt->views[c->flipped[k]], 0);
        }
    }
    apr_thread_mutex_unlock(c->mutex);
    apr_pool_destroy(p);
    return ok;
}

/* The sync failed or was stopped: the server goes (or stays) down. */
static void sync_abandon(sync_job_t *job, const char *why)
{
    checker_t *c = job->c;
    memsess_runtime_t *rt = c->rt;
    memsess_slot_t *slot = memsess_table_slot(rt->table, job->slot);
    apr_uint32_t owner;
    apr_time_t heartbeat;

    apr_thread_mutex_lock(c->mutex);
    memsess_table_owner(rt->table, &owner, &heartbeat);
    if (owner == (apr_uint32_t)getpid()) {
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
    apr_time_t until = apr_time_now() + t;

    while (!job->stop && apr_time_now() < until) {
        apr_sleep(apr_time_from_msec(20));
    }
}

/* After the flip: what was written at an authority during it, then
 * (after a grace) what requests that got the old list wrote as they
 * finished; and copies no list places any more go. */
static void sync_after(sync_job_t *job, memsess_sync_t *sync,
                       const memsess_sync_stats_t *before,
                       apr_time_t flipped_at)
{
    memsess_runtime_t *rt = job->c->rt;
    const memsess_sync_stats_t *all;
    char err[256] = "";
    apr_status_t rv;

    rv = memsess_sync_after(sync, 0, err, sizeof(err));
    if (rv == APR_SUCCESS) {
        sync_sleep(job, SYNC_GRACE);
        rv = job->stop ? APR_EINTR
                       : memsess_sync_after(sync, 1, err, sizeof(err));
    }
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

static void *APR_THREAD_FUNC sync_thread(apr_thread_t *thread, void *data)
{
    sync_job_t *job = data;
    memsess_runtime_t *rt = job->c->rt;
    apr_time_t start = apr_time_now(), flipped_at;
    memsess_sync_stats_t before;
    memsess_sync_t *sync;
    char err[256] = "";
    apr_status_t rv = APR_EGENERAL;

    (void)thread;
    memset(&before, 0, sizeof(before));
    if (!job->spec.nlists) {
        rv = APR_SUCCESS;   /* nothing to sync from: published at once */
        sync = NULL;
    }
    else if ((sync = memsess_sync_create(job->pool, &job->spec, err,
                                         sizeof(err)))) {
        rv = memsess_sync_before(sync, err, sizeof(err));
        before = *memsess_sync_stats(sync);
    }
    if (rv == APR_SUCCESS && sync_flip(job, &before, err, sizeof(err))) {
        flipped_at = apr_time_now();
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0031: "
                     "memcached server %s synced and up after %" APR_TIME_T_FMT
                     "ms: %" APR_UINT64_T_FMT " keys examined, %"
                     APR_UINT64_T_FMT " copied to it, %" APR_UINT64_T_FMT
                     " deleted (stale, locks), %" APR_UINT64_T_FMT " already "
                     "equal, %" APR_UINT64_T_FMT " left as newer",
                     job->spec.returning, apr_time_as_msec(flipped_at - start),
                     before.examined, before.copied, before.deleted,
                     before.same, before.newer);
        if (sync) {
            sync_after(job, sync, &before, flipped_at);
        }
    }
    else {
        sync_abandon(job, err[0] ? err : "failed");
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0033: "
                     "rejoin sync of memcached server %s stopped after %"
                     APR_TIME_T_FMT "ms (%s): it stays down and is synced "
                     "again after its next good probes", job->spec.returning,
                     apr_time_as_msec(apr_time_now() - start), err);
    }
    memsess_sync_destroy(sync);
    apr_atomic_set32(&job->done, 1);
    return NULL;
}

/* Starts the sync of slot i, just marked SYNCING; the caller holds the
 * mutex.  One spec per distinct (list now, list next) among its views of
 * format memcached (pecl-memcache places keys its own way: its views keep
 * what the server holds). */
static void sync_start(checker_t *c, int i)
{
    memsess_runtime_t *rt = c->rt;
    apr_pool_t *pool;
    apr_threadattr_t *attr;
    sync_job_t *job;
    apr_status_t rv;
    int v, k;

    apr_pool_create(&pool, c->pool);
    job = apr_pcalloc(pool, sizeof(*job));
    job->c = c;
    job->slot = i;
    job->pool = pool;
    job->lists = apr_pcalloc(pool, rt->confs->nelts * sizeof(*job->lists));
    job->list_view = apr_pcalloc(pool, rt->confs->nelts * sizeof(int));
    job->spec.returning = APR_ARRAY_IDX(rt->targets, i,
                                        memsess_server_t *)->addr;
    job->spec.lists = job->lists;
    job->spec.timeout = rt->g.timeout > apr_time_from_msec(500)
                        ? rt->g.timeout : apr_time_from_msec(500);
    job->spec.stop = &job->stop;
    job->spec.progress = sync_progress;
    job->spec.baton = job;
    for (v = 0; v < rt->confs->nelts; v++) {
        const memsess_view_t *view = in_force(c, v);
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
        l->path_next = view_path(c, pool, v, i, 1, NULL);
        l->replicas = view->replicas;
        l->ketama = memsess_view_ketama(view->replicas, view->failover);
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

/* Joins the syncs that ended (each round). */
static void sync_reap(checker_t *c)
{
    int i;

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
}

/* Its server failed a probe: the sync stops at its next key. */
static void sync_cancel(checker_t *c, int i)
{
    if (c->jobs[i]) {
        apr_atomic_set32(&c->jobs[i]->stop, 1);
    }
}

/* The checker stops: every sync stops at its next key. */
static void sync_stop_all(checker_t *c)
{
    int i;

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

/* ------------------------------------------------------------------ */
/* Pool changes: the rebalance                                        */
/*
 * A view whose MemsessServers changed at graceful publishes the list in
 * force before (memsess_rebalance.c) until this has run: one thread (never
 * a probe thread) runs memsess_sync.c with no returning server over every
 * list of the instance, the changed ones from what they publish now to
 * what their new pool gives, the others unchanged (so that a key another
 * pool places on a shared server is never taken for garbage).  It starts
 * once every server of the new lists has a verdict, no rejoin sync runs,
 * and (when servers were added) one of them is up; it flips the views
 * when the lists it moved keys between are still the ones published and
 * the new ones; a failure (a server died) ends it, and it is retried.
 */

#define REBALANCE_RETRY apr_time_from_sec(5)

typedef struct rebalance_t {
    checker_t              *c;
    apr_pool_t             *pool;
    apr_thread_t           *thread;
    volatile apr_uint32_t   stop;
    volatile apr_uint32_t   done;
    int                     ok;          /* flipped */
    int                    *moving;      /* [nviews]: rebalanced by it */
    const char            **next;        /* [nviews]: their new paths */
    memsess_sync_spec_t     spec;
    memsess_sync_list_t    *lists;
    int                    *list_view;   /* a view each list stands for */
} rebalance_t;

/* Whether view v's rebalance may start: 1 yes, 0 not yet, -1 not yet and
 * its added servers are all down. */
static int rebalance_ready(checker_t *c, int v)
{
    const memsess_view_t *view = &c->rt->views[v];
    const apr_array_header_t *now = view->before->pool->servers;
    const apr_array_header_t *next = view->pool->servers;
    int k, j, added = 0, added_up = 0;

    for (k = 0; k < next->nelts; k++) {
        int s = APR_ARRAY_IDX(next, k, memsess_server_t).slot;
        apr_uint32_t st = memsess_table_slot(c->rt->table, s)->state;
        int old = 0;

        if (st == MEMSESS_UNKNOWN || st == MEMSESS_SYNCING || c->jobs[s]) {
            return 0;   /* no verdict yet, or a rejoin runs */
        }
        for (j = 0; j < now->nelts; j++) {
            old |= APR_ARRAY_IDX(now, j, memsess_server_t).slot == s;
        }
        if (!old) {
            added++;
            added_up += st == MEMSESS_UP;
        }
    }
    for (k = 0; k < now->nelts; k++) {
        int s = APR_ARRAY_IDX(now, k, memsess_server_t).slot;

        if (memsess_table_slot(c->rt->table, s)->state == MEMSESS_SYNCING
            || c->jobs[s]) {
            return 0;
        }
    }
    return added && !added_up ? -1 : 1;
}

static void rebalance_progress(void *baton, const memsess_sync_stats_t *st)
{
    rebalance_t *rb = baton;
    checker_t *c = rb->c;
    apr_uint32_t owner;
    apr_time_t heartbeat;
    int v;

    apr_thread_mutex_lock(c->mutex);
    memsess_table_owner(c->rt->table, &owner, &heartbeat);
    if (owner == (apr_uint32_t)getpid()) {
        memsess_table_write_begin(c->rt->table);
        for (v = 0; v < c->rt->confs->nelts; v++) {
            memsess_view_slot_t *vs = memsess_table_view_slot(c->rt->table,
                                                              v);

            if (rb->moving[v] && vs->rebalance) {
                vs->rebalance_examined = st->examined;
                vs->rebalance_copied = st->copied;
                vs->rebalance_deleted = st->deleted;
            }
        }
        memsess_table_write_end(c->rt->table);
    }
    apr_thread_mutex_unlock(c->mutex);
}

/* Sets the state of every view the rebalance moves (and why it stopped);
 * the caller holds the mutex and the lease. */
static void rebalance_mark(rebalance_t *rb, apr_uint32_t state,
                           const char *why)
{
    checker_t *c = rb->c;
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

/* Puts the new lists in force when what is published is still what the
 * rebalance moved keys from, and the new pools still give what it moved
 * them to.  Returns 1, or 0 with why in err. */
static int rebalance_flip(rebalance_t *rb, char *err, apr_size_t errlen)
{
    checker_t *c = rb->c;
    memsess_runtime_t *rt = c->rt;
    apr_uint32_t owner;
    apr_time_t heartbeat;
    apr_pool_t *p;
    int k, v, ok = 1;

    apr_pool_create(&p, rb->pool);
    apr_thread_mutex_lock(c->mutex);
    memsess_table_owner(rt->table, &owner, &heartbeat);
    if (owner != (apr_uint32_t)getpid() || rb->stop) {
        apr_cpystrn(err, "stopped: checking moved to another process",
                    errlen);
        ok = 0;
    }
    for (k = 0; ok && k < rb->spec.nlists; k++) {
        v = rb->list_view[k];
        if (strcmp(view_path(c, p, v, -1, 0, NULL), rb->lists[k].path_now)
            || (rb->moving[v] && strcmp(def_path(c, p, &rt->views[v], -1, 0,
                                                 NULL), rb->next[v]))) {
            apr_snprintf(err, errlen, "a server of %s changed state "
                         "meanwhile", rt->views[v].name);
            ok = 0;
        }
    }
    if (ok) {
        memsess_table_write_begin(rt->table);
        for (v = 0; v < rt->confs->nelts; v++) {
            memsess_view_slot_t *vs = memsess_table_view_slot(rt->table, v);

            if (!rb->moving[v]) {
                continue;
            }
            vs->rebalance = MEMSESS_REBALANCE_NONE;
            vs->rebalance_error[0] = '\0';
            memsess_table_set_served(rt->table, v, NULL, 0,
                                     memsess_served_text(p,
                                                         rt->views[v].pool),
                                     rt->views[v].replicas,
                                     rt->views[v].failover,
                                     rt->views[v].format);
        }
        memsess_table_bump_generation(rt->table, 1);
        memsess_table_publish(rt->table, rt->views, rt->confs->nelts, -1,
                              NULL);
        memsess_table_write_end(rt->table);
    }
    apr_thread_mutex_unlock(c->mutex);
    apr_pool_destroy(p);
    return ok;
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

static void *APR_THREAD_FUNC rebalance_thread(apr_thread_t *thread,
                                              void *data)
{
    rebalance_t *rb = data;
    checker_t *c = rb->c;
    memsess_runtime_t *rt = c->rt;
    apr_time_t start = apr_time_now(), flipped_at;
    memsess_sync_stats_t before;
    memsess_sync_t *sync = NULL;
    char err[256] = "";
    apr_status_t rv = APR_SUCCESS;
    int k, moves = 0;

    (void)thread;
    memset(&before, 0, sizeof(before));
    for (k = 0; k < rb->spec.nlists; k++) {
        moves |= strcmp(rb->lists[k].path_now, rb->lists[k].path_next) != 0;
    }
    /* the same text before and after (a server removed while down): there
     * is nothing to move */
    if (moves && (sync = memsess_sync_create(rb->pool, &rb->spec, err,
                                             sizeof(err)))) {
        rv = memsess_sync_before(sync, err, sizeof(err));
        before = *memsess_sync_stats(sync);
    }
    else if (moves) {
        rv = APR_EGENERAL;
    }
    if (rv == APR_SUCCESS && rebalance_flip(rb, err, sizeof(err))) {
        flipped_at = apr_time_now();
        rb->ok = 1;
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0136: "
                     "rebalance of %s done after %" APR_TIME_T_FMT "ms: the "
                     "new list is published; %" APR_UINT64_T_FMT " keys "
                     "examined, %" APR_UINT64_T_FMT " copied, %"
                     APR_UINT64_T_FMT " deleted (stale, locks), %"
                     APR_UINT64_T_FMT " already in place, %" APR_UINT64_T_FMT
                     " left as newer", rebalance_names(rb),
                     apr_time_as_msec(flipped_at - start), before.examined,
                     before.copied, before.deleted, before.same,
                     before.newer);
        if (sync) {
            const memsess_sync_stats_t *all;
            /* requests that began before the flip write the old places as
             * they end, and their users' next requests read the new ones:
             * for the whole grace, the keys being written when the flip
             * came are compared again and again (no listing, which takes
             * seconds for 100,000 sessions: a late write is brought over
             * within a millisecond or two); then the last pass looks at
             * everything written since the rebalance began, and cleans
             * up */
            apr_time_t until = apr_time_now() + SYNC_GRACE;

            do {
                rv = memsess_sync_after_hot(sync, err, sizeof(err));
                apr_sleep(apr_time_from_msec(1));
            } while (rv == APR_SUCCESS && !rb->stop
                     && apr_time_now() < until);
            if (rv == APR_SUCCESS) {
                rv = rb->stop ? APR_EINTR
                              : memsess_sync_after(sync, 1, err, sizeof(err));
            }
            all = memsess_sync_stats(sync);
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                         "MEMSESS0137: rebalance of %s: after the flip, %"
                         APR_UINT64_T_FMT " late writes of the old list "
                         "brought over, %" APR_UINT64_T_FMT " copies the new "
                         "list places nowhere removed, in %" APR_TIME_T_FMT
                         "ms%s%s", rebalance_names(rb),
                         all->copied - before.copied,
                         all->deleted - before.deleted,
                         apr_time_as_msec(apr_time_now() - flipped_at),
                         rv == APR_SUCCESS ? "" : "; stopped: ",
                         rv == APR_SUCCESS ? "" : err);
        }
    }
    else {
        apr_uint32_t owner;
        apr_time_t heartbeat;

        apr_thread_mutex_lock(c->mutex);
        memsess_table_owner(rt->table, &owner, &heartbeat);
        if (owner == (apr_uint32_t)getpid()) {
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
    memsess_sync_destroy(sync);
    apr_atomic_set32(&rb->done, 1);
    return NULL;
}

/* Starts the rebalance of every view that waits and is ready; the caller
 * holds the mutex. */
static void rebalance_start(checker_t *c, const int *ready)
{
    memsess_runtime_t *rt = c->rt;
    apr_pool_t *pool;
    apr_threadattr_t *attr;
    rebalance_t *rb;
    apr_status_t rv;
    int v, k, n = rt->confs->nelts;

    apr_pool_create(&pool, c->pool);
    rb = apr_pcalloc(pool, sizeof(*rb));
    rb->c = c;
    rb->pool = pool;
    rb->moving = apr_pcalloc(pool, n * sizeof(int));
    rb->next = apr_pcalloc(pool, n * sizeof(char *));
    rb->lists = apr_pcalloc(pool, n * sizeof(*rb->lists));
    rb->list_view = apr_pcalloc(pool, n * sizeof(int));
    rb->spec.returning = NULL;
    rb->spec.lists = rb->lists;
    rb->spec.timeout = rt->g.timeout > apr_time_from_msec(500)
                       ? rt->g.timeout : apr_time_from_msec(500);
    rb->spec.stop = &rb->stop;
    rb->spec.progress = rebalance_progress;
    rb->spec.baton = rb;
    for (v = 0; v < n; v++) {
        const memsess_view_t *view = in_force(c, v);
        memsess_sync_list_t *l = &rb->lists[rb->spec.nlists];
        int nlive;

        rb->moving[v] = ready[v];
        if (view->format != MEMSESS_FORMAT_MEMCACHED) {
            continue;
        }
        l->path_now = view_path(c, pool, v, -1, 0, &nlive);
        l->path_next = l->path_now;
        if (ready[v]) {
            rb->next[v] = def_path(c, pool, &rt->views[v], -1, 0, NULL);
            /* every server down: requests get the full list (fail open),
             * and there is no authority to copy from */
            l->path_next = nlive ? rb->next[v] : l->path_now;
        }
        l->replicas = view->replicas;
        l->ketama = memsess_view_ketama(view->replicas, view->failover);
        for (k = 0; k < rb->spec.nlists; k++) {
            const memsess_sync_list_t *o = &rb->lists[k];

            if (!strcmp(o->path_now, l->path_now)
                && !strcmp(o->path_next, l->path_next)
                && o->replicas == l->replicas && o->ketama == l->ketama) {
                break;
            }
        }
        if (k == rb->spec.nlists) {
            rb->list_view[rb->spec.nlists++] = v;
        }
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
        c->rebalance_retry = apr_time_now() + REBALANCE_RETRY;
        apr_pool_destroy(pool);
        return;
    }
    c->rebalance = rb;
}

/* Each round: joins a rebalance that ended, and starts one when a view
 * waits and is ready. */
static void rebalance_round(checker_t *c)
{
    memsess_runtime_t *rt = c->rt;
    rebalance_t *rb = c->rebalance;
    int v, any = 0, down = 0, *ready;
    apr_uint32_t owner;
    apr_time_t heartbeat;

    if (rb) {
        apr_status_t ret;

        if (!apr_atomic_read32(&rb->done)) {
            return;
        }
        apr_thread_join(&ret, rb->thread);
        if (!rb->ok) {
            c->rebalance_retry = apr_time_now() + REBALANCE_RETRY;
        }
        c->rebalance = NULL;
        apr_pool_destroy(rb->pool);
    }
    if (apr_time_now() < c->rebalance_retry) {
        return;
    }
    ready = NULL;
    apr_thread_mutex_lock(c->mutex);
    memsess_table_owner(rt->table, &owner, &heartbeat);
    for (v = 0; owner == (apr_uint32_t)getpid() && v < rt->confs->nelts;
         v++) {
        int r;

        if (!rt->views[v].before
            || !memsess_table_view_slot(rt->table, v)->rebalance) {
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
        else if (r < 0 && !c->rebalance_told) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                         "MEMSESS0140: %s: every server added to the pool "
                         "is down: the previous list stays published until "
                         "one is up", rt->views[v].name);
            down = 1;
        }
    }
    c->rebalance_told |= down;
    if (any) {
        rebalance_start(c, ready);
    }
    apr_thread_mutex_unlock(c->mutex);
    free(ready);
}

/* The checker stops: the rebalance stops at its next key. */
static void rebalance_stop(checker_t *c)
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

static apr_status_t checker_start(memsess_runtime_t *rt)
{
    apr_size_t nthreads = rt->targets->nelts;
    apr_pool_t *pool;
    checker_t *c;
    apr_status_t rv;
    int i, cut;

    if (nthreads > MEMSESS_PROBE_THREADS_MAX) {
        nthreads = MEMSESS_PROBE_THREADS_MAX;
    }
    /* Its own pool: it outlives the callback's and goes in STOPPING. */
    apr_pool_create(&pool, NULL);
    apr_pool_tag(pool, "memsess_checker");
    c = apr_pcalloc(pool, sizeof(*c));
    c->rt = rt;
    c->pool = pool;
    c->probes = apr_pcalloc(pool, rt->targets->nelts * sizeof(probe_t));
    for (i = 0; i < rt->targets->nelts; i++) {
        c->probes[i].c = c;
        c->probes[i].slot = i;
    }
    c->flipped = apr_pcalloc(pool, rt->confs->nelts * sizeof(int));
    c->jobs = apr_pcalloc(pool, rt->targets->nelts * sizeof(*c->jobs));
    if ((rv = apr_thread_mutex_create(&c->mutex, APR_THREAD_MUTEX_DEFAULT,
                                      pool)) != APR_SUCCESS
        || (rv = apr_thread_pool_create(&c->threads, nthreads, nthreads,
                                        pool)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, rt->main, "MEMSESS0012: "
                     "cannot start the checker's threads");
        apr_pool_destroy(pool);
        return rv;
    }
    /* all threads from the start, and kept between rounds: a pool that
     * grows only when every thread is busy gave late verdicts (520 ms
     * instead of 280 ms for 256 servers, 26 of them hung) */
    apr_thread_pool_idle_max_set(c->threads, nthreads);
    make_probe_key();
    /* A checker that died inside the table left it mid-write: perhaps
     * between a state change and its publication, or halfway through a
     * view's text.  Repair the seqlock, then republish every view. */
    memsess_table_recover(rt->table);
    memsess_table_write_begin(rt->table);
    cut = memsess_table_reset_syncing(rt->table);
    for (i = 0; i < rt->confs->nelts; i++) {
        memsess_view_slot_t *vs = memsess_table_view_slot(rt->table, i);

        if (vs->rebalance == MEMSESS_REBALANCE_RUNNING) {
            vs->rebalance = MEMSESS_REBALANCE_WAITING;   /* run again */
        }
    }
    if (cut) {
        memsess_table_bump_generation(rt->table, (apr_uint64_t)cut);
    }
    memsess_table_publish(rt->table, rt->views, rt->confs->nelts, -1, NULL);
    memsess_table_write_end(rt->table);
    if (cut) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0032: "
                     "%d rejoin sync(s) were cut short when the last checker "
                     "stopped: those servers are down until their next good "
                     "probes start the sync again", cut);
    }
    checker = c;
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, rt->main, "MEMSESS0013: checker "
                 "started in process %" APR_PID_T_FMT ": %d servers every %"
                 APR_TIME_T_FMT "ms, timeout %" APR_TIME_T_FMT "ms",
                 getpid(), rt->targets->nelts, apr_time_as_msec(rt->g.interval),
                 apr_time_as_msec(rt->g.timeout));
    return APR_SUCCESS;
}

static void checker_stop(void)
{
    checker_t *c = checker;

    if (c) {
        checker = NULL;
        /* waits for the probes still out: each ends by its timeout */
        apr_thread_pool_destroy(c->threads);
        sync_stop_all(c);
        rebalance_stop(c);
        apr_pool_destroy(c->pool);
    }
}

/* Whether a process has ended.  A killed child stays a zombie until the
 * parent reaps it, which can take a second: count that as ended too. */
static int process_gone(pid_t pid)
{
    char path[64], stat[128], *paren;
    apr_file_t *f;
    apr_size_t len = sizeof(stat) - 1;
    apr_pool_t *p;
    int gone = 0;

    if (kill(pid, 0) != 0 && errno == ESRCH) {
        return 1;
    }
    apr_snprintf(path, sizeof(path), "/proc/%" APR_PID_T_FMT "/stat", pid);
    apr_pool_create(&p, NULL);
    if (apr_file_open(&f, path, APR_FOPEN_READ, 0, p) == APR_SUCCESS) {
        if (apr_file_read(f, stat, &len) == APR_SUCCESS) {
            stat[len] = '\0';
            paren = strrchr(stat, ')');
            gone = paren && (paren[2] == 'Z' || paren[2] == 'X');
        }
        apr_file_close(f);
    }
    apr_pool_destroy(p);
    return gone;
}

/* A time of the configuration brought into [TICK, MEMSESS_TIME_MAX]: the
 * takeover must work, and its sums stay in range, whatever it says. */
static apr_interval_time_t bounded(apr_interval_time_t t)
{
    return t < TICK ? TICK : t > MEMSESS_TIME_MAX ? MEMSESS_TIME_MAX : t;
}

/* Whether the lease is free for us: no owner, or its owner has started no
 * round for a while (an interval, at most a second) and has ended, or has
 * started none for two intervals and a timeout (a stuck checker).  A
 * heartbeat in the future (the clock went back) does not hold us off. */
static int lease_free(const memsess_runtime_t *rt, apr_uint32_t owner,
                      apr_time_t heartbeat, apr_time_t now)
{
    apr_interval_time_t interval = bounded(rt->g.interval);
    apr_interval_time_t look = interval < apr_time_from_sec(1)
                               ? interval : apr_time_from_sec(1);
    apr_interval_time_t age = heartbeat > now ? -1 : now - heartbeat;

    if (!owner) {
        return 1;
    }
    if (age >= 0 && age < look) {
        return 0;   /* it started a round lately: nothing to look at */
    }
    return process_gone((pid_t)owner)
           || age > 2 * interval + bounded(rt->g.timeout) + TICK;
}

static void tick(memsess_runtime_t *rt)
{
    apr_uint32_t me = (apr_uint32_t)getpid(), owner;
    apr_time_t now = apr_time_now(), heartbeat;

    memsess_table_owner(rt->table, &owner, &heartbeat);
    if (checker && owner != me) {
        /* we stalled and another child took over: it checks now */
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0019: "
                     "process %" APR_PID_T_FMT " took over checking from "
                     "process %u", (pid_t)owner, me);
        checker_stop();
        return;
    }
    if (!checker) {
        if (!lease_free(rt, owner, heartbeat, now)
            || !memsess_table_claim(rt->table, owner, me, now)
            || checker_start(rt) != APR_SUCCESS) {
            return;
        }
        if (owner) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                         "MEMSESS0023: checking resumed in process %u: "
                         "process %u stopped checking", me, owner);
        }
        checker->next_round = now;   /* new servers are probed at once */
    }
    /* (a round further away than an interval: the clock went back) */
    if (now >= checker->next_round
        || checker->next_round - now > rt->g.interval) {
        memsess_table_heartbeat(rt->table, now);
        dispatch_round(checker);
        /* on the interval's grid, unless we fell behind it */
        checker->next_round += rt->g.interval;
        if (checker->next_round <= now
            || checker->next_round - now > rt->g.interval) {
            checker->next_round = now + rt->g.interval;
        }
    }
}

static apr_status_t check_callback(int state, void *data, apr_pool_t *pool)
{
    memsess_runtime_t *rt = data;

    (void)pool;
    switch (state) {
    case AP_WATCHDOG_STATE_STARTING:
    case AP_WATCHDOG_STATE_RUNNING:
        tick(rt);
        break;
    case AP_WATCHDOG_STATE_STOPPING:
        if (checker) {
            checker_stop();
            /* hand over at once: the next tick of another child claims */
            memsess_table_claim(rt->table, (apr_uint32_t)getpid(), 0, 0);
        }
        break;
    }
    return APR_SUCCESS;
}

apr_status_t memsess_check_post_config(apr_pool_t *pconf, server_rec *s,
                                       memsess_runtime_t *rt)
{
    ap_watchdog_t *wd;
    apr_status_t rv;

    wd_get_instance = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_get_instance);
    wd_register = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_register_callback);
    if (!wd_get_instance || !wd_register) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MEMSESS0014: "
                     "mod_memsess needs mod_watchdog to check its servers: "
                     "load it (LoadModule watchdog_module "
                     "modules/mod_watchdog.so) or build httpd with it");
        return APR_EGENERAL;
    }
    /* a watchdog in every child, never in the parent; the lease makes
     * one of them the checker */
    rv = wd_get_instance(&wd, WATCHDOG_NAME, 0, 0, pconf);
    if (rv == APR_SUCCESS) {
        rv = wd_register(wd, TICK, rt, check_callback);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, "MEMSESS0015: cannot "
                     "register the checker with mod_watchdog");
    }
    return rv;
}
