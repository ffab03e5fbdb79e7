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
#include <arpa/inet.h>
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

#include "memsess_check.h"
#include "memsess_clocks.h"
#include "memsess_exchange.h"
#include "memsess_flight.h"   /* MEMSESS_GATE_MAX */
#include "memsess_lateness.h"
#include "memsess_persist_db.h"
#include "memsess_rebalance_job.h"
#include "memsess_rejoin.h"
#include "memsess_release.h"
#include "memsess_release_helper.h"
#include "memsess_table.h"
#include "memsess_view.h"
#include "memsess_watch.h"

APLOG_USE_MODULE(memsess);

#define WATCHDOG_NAME "_memsess_"
#define TICK          apr_time_from_msec(100)

static APR_OPTIONAL_FN_TYPE(ap_watchdog_get_instance) *wd_get_instance;
static APR_OPTIONAL_FN_TYPE(ap_watchdog_register_callback) *wd_register;

typedef struct checker_t checker_t;

/* One server's probe, as the thread pool gets it. */
typedef struct {
    checker_t    *c;
    int           slot;
    int           in_flight;   /* handed to the thread pool, not back yet */
    int           overdue;     /* its failure is recorded: drop its result */
    apr_time_t    dispatched;
    apr_interval_time_t limit; /* the timeout of the attempt out now */
    apr_time_t    streak;      /* when the first failed (or unsure) attempt
                                * of the failures since the last pass began;
                                * 0 while it passes */
    memcached_st *mc;          /* kept between rounds (see probe_handle);
                                * used by the thread of the probe only */
    apr_time_t    connected;   /* when mc was made */
    uint64_t      ms;          /* its timeouts now */
    int           started;     /* the attempt out now has begun (it is not
                                * waiting for a thread of the pool) */
    memsess_late_sample_t begun;   /* the counters as it began */
    int           fresh;       /* mc is new: read who answers on it */
    int           identified;  /* proc_* read since the last verdict */
    apr_int64_t   proc_pid;    /* the memcached process it reached last */
    apr_int64_t   proc_started;
} probe_t;

/* The checker of this process, alive from STARTING to STOPPING. */
struct checker_t {
    memsess_runtime_t  *rt;
    apr_pool_t         *pool;
    apr_thread_pool_t  *threads;
    apr_thread_mutex_t *mutex;     /* serialises writers of the table */
    probe_t            *probes;    /* [nslots] */
    memsess_rejoin_t   *rejoin;    /* the rejoin syncs in flight */
    memsess_syncs_t     syncs;     /* them, for the exchange and the
                                    * rebalance */
    memsess_rebalancer_t *rebalance;   /* the pool changes' rebalance */
    int                *flipped;   /* [nviews]: scratch for publish */
    apr_time_t          next_round;
    memsess_exchange_t *exchange;  /* shared verdicts; NULL: decides alone */
    memsess_watch_t    *watch;     /* dead servers, as they die */
    memsess_persist_t  *persist;   /* write-behind; NULL: none persists */
};

static checker_t *checker;

/* The rejoin syncs as the exchange and the rebalance ask about them
 * (memsess_syncs_t): they do not call memsess_rejoin.c themselves. */
static int syncs_busy(void *baton, int slot)
{
    return memsess_rejoin_busy(baton, slot);
}

static void syncs_start(void *baton, int slot)
{
    memsess_rejoin_start(baton, slot);
}

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

static void probe_hangup(probe_t *pr)
{
    if (pr->mc) {
        memcached_destroy_sasl_auth_data(pr->mc);
        memcached_free(pr->mc);
        pr->mc = NULL;
    }
}

/* The timeouts of a probe's handle: ms for every wait. */
static void probe_timeouts(probe_t *pr, uint64_t ms)
{
    pr->ms = ms;
    memcached_behavior_set(pr->mc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, ms);
    memcached_behavior_set(pr->mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, ms);
    memcached_behavior_set(pr->mc, MEMCACHED_BEHAVIOR_RCV_TIMEOUT, ms * 1000);
    memcached_behavior_set(pr->mc, MEMCACHED_BEHAVIOR_SND_TIMEOUT, ms * 1000);
}

/* The libmemcached handle of a probe.  It is kept between rounds: a new
 * TCP connection every round would leave a socket in TIME_WAIT each time
 * (at 5 rounds a second and 1024 servers, 300,000 of them).  A kept
 * connection still sees a freeze (the request it sends goes unanswered)
 * and a death (the kernel resets it); after any failure the next attempt
 * connects anew.  A server given by name is connected anew every second,
 * so a changed DNS record is followed, and so is one probed with
 * MemsessCredentials: an authenticated connection outlives a password
 * changed on the server, which PHP's new connections would fail. */
static memcached_st *probe_handle(probe_t *pr, const memsess_server_t *srv,
                                  const memsess_credentials_t *cred,
                                  apr_interval_time_t timeout)
{
    uint64_t ms = apr_time_as_msec(timeout) > 0 ? apr_time_as_msec(timeout)
                                                : 1;
    apr_time_t now = apr_time_now();
    struct in_addr v4;

    if (pr->mc && now - pr->connected > apr_time_from_sec(1)
        && (cred || (!srv->ipv6
                     && inet_pton(AF_INET, srv->host, &v4) != 1))) {
        probe_hangup(pr);
    }
    if (pr->mc) {
        if (pr->ms != ms) {
            /* a patient probe's handle, kept: quick again (or patient) */
            probe_timeouts(pr, ms);
        }
        return pr->mc;
    }
    if (!(pr->mc = memcached_create(NULL))) {
        return NULL;
    }
    pr->connected = now;
    pr->fresh = 1;
    probe_timeouts(pr, ms);
    memcached_behavior_set(pr->mc, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 0);
    /* a mark, so that the release (memsess_release.c) leaves it alone */
    memcached_behavior_set(pr->mc, MEMCACHED_BEHAVIOR_TCP_KEEPIDLE,
                           MEMSESS_PROBE_KEEPIDLE);
    /* (switches to the binary protocol) */
    if ((cred && !memcached_success(memcached_set_sasl_auth_data(pr->mc,
                                        cred->username, cred->password)))
        || !memcached_success(memcached_server_add(pr->mc, srv->host,
                                                   srv->port))) {
        probe_hangup(pr);
    }
    return pr->mc;
}

/* One probe: connect, store a fresh value under our key, read it back and
 * compare.  A connect alone proves nothing (a frozen server still completes
 * the TCP handshake), and neither does a plain "get": a server that answers
 * garbage can pass for one that has no such key.  Only a server that
 * speaks the protocol and stores what it is given echoes the value. */
static int probe(probe_t *pr, const memsess_server_t *srv,
                 const memsess_credentials_t *cred,
                 apr_interval_time_t timeout, int flush, char *err,
                 apr_size_t errlen)
{
    static apr_uint32_t counter;
    memcached_st *mc = probe_handle(pr, srv, cred, timeout);
    memcached_return_t rc;
    char nonce[64];
    uint32_t flags;
    char key[160];
    size_t len = 0, keylen, noncelen;
    char *value = NULL;
    apr_time_t start = apr_time_now();
    int ok;

    if (!mc) {
        apr_cpystrn(err, "cannot make a libmemcached handle", errlen);
        return 0;
    }
    /* one key per server: two addresses of one memcached (a name and its
     * address, say) must not read back each other's value */
    keylen = apr_snprintf(key, sizeof(key), "%s:%d", probe_key, pr->slot);
    noncelen = apr_snprintf(nonce, sizeof(nonce), "%" APR_TIME_T_FMT "-%u",
                            apr_time_now(),
                            apr_atomic_inc32(&counter));
    rc = memcached_set(mc, key, keylen, nonce, noncelen, 60, 0);
    if (rc == MEMCACHED_SUCCESS) {
        value = memcached_get(mc, key, keylen, &len, &flags, &rc);
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
    probe_hangup(pr);   /* the next attempt starts from a new connection */
    return 0;
}

/* Which memcached process answers on a new probe connection: its pid and
 * its start by its own clock, from "stats" (one more round trip, once per
 * connection, after the probe's verdict).  A server that comes back as
 * the process it was kept its keys (memsess_rejoin.c).  What it says is
 * bounded: a pid outside (0, 2^22], or a start before 2000 or after its
 * own time, is not believed. */
static void read_identity(probe_t *pr)
{
    memcached_return_t rc;
    memcached_stat_st *st;

    pr->fresh = 0;
    pr->identified = 1;   /* (0 and 0 when it cannot be told: unknown) */
    pr->proc_pid = pr->proc_started = 0;
    if (!pr->mc || !(st = memcached_stat(pr->mc, NULL, &rc))) {
        return;
    }
    if (memcached_success(rc) && st->pid > 0 && st->pid <= (1 << 22)
        && st->time >= 946684800UL && st->uptime <= st->time - 946684800UL) {
        pr->proc_pid = st->pid;
        pr->proc_started = (apr_int64_t)(st->time - st->uptime);
    }
    memcached_stat_free(NULL, st);
}

/* Records one verdict; the caller holds the mutex.  fail_threshold: the
 * configured one, or 1 for a failure that was confirmed already (a
 * patient probe after a timeout while the checker was late). */
static void record_locked(checker_t *c, int i, int ok, const char *error,
                          apr_interval_time_t took, int fail_threshold)
{
    probe_t *pr = &c->probes[i];
    memsess_runtime_t *rt = c->rt;
    memsess_table_t *t = rt->table;
    memsess_slot_t *slot = memsess_table_slot(t, i), after;
    int changed, nflipped = 0, k, was_live;
    apr_uint32_t before;
    apr_int64_t wait_ms = 0;

    if (!memsess_table_leased(t)) {
        return;   /* we were stalled and lost the lease: not ours to write */
    }
    before = slot->state;
    was_live = MEMSESS_SLOT_LIVE(slot);
    memsess_table_write_begin(t);
    /* while the last sync of this server winds down, it stays down */
    if (ok && pr->identified) {
        slot->proc_pid = pr->proc_pid;
        slot->proc_started = pr->proc_started;
        pr->identified = 0;
    }
    changed = memsess_slot_record(slot, ok, error, (apr_uint64_t)took,
                                  apr_time_sec(apr_time_now()),
                                  fail_threshold,
                                  memsess_rejoin_busy(c->rejoin, i)
                                  ? INT_MAX : rt->g.pass_threshold);
    if (was_live && !MEMSESS_SLOT_LIVE(slot)) {
        slot->out_since = apr_time_now();   /* (memsess_joblock.c) */
        slot->out_off_ms = memsess_clock_offset_ms();
    }
    if (changed && slot->state == MEMSESS_DOWN) {
        /* the process it was, for its return (memsess_rejoin.c) */
        slot->down_pid = slot->proc_pid;
        slot->down_started = slot->proc_started;
        slot->down_since = pr->streak ? pr->streak : apr_time_now();
        slot->down_off_ms = memsess_clock_offset_ms();
        /* every process's sockets to it (memsess_release_helper.c) */
        memsess_rh_ask(rt, i);
        /* the after-flip passes of its last sync bring writes to it and
         * tidy where it was missed: moot now, and while they wind down
         * it could not come back (a frozen server's listing waits out
         * every timeout) */
        memsess_rejoin_cancel(c->rejoin, i);
    }
    if (changed && before == MEMSESS_DOWN && slot->state == MEMSESS_UP
        && rt->g.rejoin == MEMSESS_REJOIN_SYNC) {
        memsess_slot_sync_begin(slot, apr_time_sec(apr_time_now()));
    }
    if (changed && before == MEMSESS_SYNCING) {
        memsess_rejoin_cancel(c->rejoin, i);   /* it failed a probe */
    }
    if (changed) {
        memsess_table_bump_generation(t, 1);
        nflipped = memsess_table_publish(t, rt->views, rt->confs->nelts, i,
                                         c->flipped);
        if (slot->state == MEMSESS_DOWN && !slot->peer_down
            && memsess_exchange_others(c->exchange)) {
            /* the others of the group still read it (an asymmetric cut):
             * until they have our verdict, within a round of theirs, our
             * requests wait rather than write its sessions where the
             * others do not read them yet */
            wait_ms = memsess_exchange_follow_gate(rt, i);
        }
    }
    memcpy(&after, slot, sizeof(after));
    memsess_table_write_end(t);
    if (wait_ms) {
        memsess_exchange_round(c->exchange);   /* our line out at once */
    }

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
        memsess_rejoin_start(c->rejoin, i);
    }
    else if (after.state == MEMSESS_DOWN) {
        char follows[96] = "";

        if (wait_ms) {
            apr_snprintf(follows, sizeof(follows), "; the group still reads "
                         "it: requests here wait up to %" APR_INT64_T_FMT "ms "
                         "for it to follow", wait_ms);
        }
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0010: "
                     "memcached server %s is down (%s, %u consecutive "
                     "failures)%s", after.addr, error, after.consecutive_fails,
                     follows);
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
        memsess_view_log_all_down(rt, &rt->views[c->flipped[k]],
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

/* Whether a failed probe is repeated at once, not at the next interval:
 * until the server is marked down, FailThreshold attempts in all.  A hung
 * server is then down after FailThreshold timeouts, a refusing one within
 * a millisecond.  The caller holds the mutex. */
static int repeat_now(const checker_t *c, int i, int attempts)
{
    const memsess_slot_t *slot = memsess_table_slot(c->rt->table, i);

    return attempts < c->rt->g.fail_threshold
           && slot->state != MEMSESS_DOWN
           && memsess_table_leased(c->rt->table);
}

/* The timeout of a probe that confirms one which timed out while the
 * checker was late: four times the configured one, at most a second. */
static apr_interval_time_t patient(apr_interval_time_t timeout)
{
    if (timeout >= apr_time_from_sec(1)) {
        return timeout;
    }
    return 4 * timeout < apr_time_from_sec(1) ? 4 * timeout
                                              : apr_time_from_sec(1);
}

/* One server's probe, repeated at once while it fails and the server is
 * not down yet (repeat_now).
 *
 * A timeout, or an answer later than the timeout, in a window where the
 * checker itself was late (memsess_lateness.c: the machine's tasks or the
 * probe's thread waited for a CPU a quarter of it) proves nothing about
 * the server: it is not recorded, and one patient probe (patient()) is
 * made at once to confirm it.  Its verdict is final: a server that does
 * not answer within it either is down at once (it had the quick timeout
 * and the patient one), one that answers passes.  A refused or reset
 * connection, or a wrong answer, is never excused.  So a frozen server is
 * down after FailThreshold timeouts on a machine with CPUs to spare, and
 * after one timeout and one patient probe on a saturated one (100 + 400
 * ms at the defaults); a healthy one on a saturated machine stays up. */
static void *APR_THREAD_FUNC probe_task(apr_thread_t *thread, void *data)
{
    probe_t *pr = data;
    checker_t *c = pr->c;
    int i = pr->slot, attempts = 0, again, confirming = 0;
    const memsess_server_t *srv = APR_ARRAY_IDX(c->rt->targets, i,
                                                memsess_server_t *);
    apr_interval_time_t quick = c->rt->g.timeout, timeout = quick, took;
    char error[MEMSESS_ERROR_MAX], late[MEMSESS_ERROR_MAX / 2];

    (void)thread;
    do {
        memsess_late_sample_t before, after;
        int ok, was_late, threshold = c->rt->g.fail_threshold, unsure = 0;

        memsess_late_sample(&before);
        apr_thread_mutex_lock(c->mutex);
        pr->started = 1;
        pr->begun = before;
        apr_thread_mutex_unlock(c->mutex);
        ok = probe(pr, srv, c->rt->credentials[i], timeout, rejoining(c, i),
                   error, sizeof(error));
        memsess_late_sample(&after);
        took = after.at - before.at;
        attempts++;
        was_late = took >= quick
                   && memsess_late_judge(&before, &after, late, sizeof(late));
        if (ok && took > timeout && !was_late) {
            ok = 0;
            apr_snprintf(error, sizeof(error), "answered after %"
                         APR_TIME_T_FMT "ms, beyond the %" APR_TIME_T_FMT
                         "ms timeout", apr_time_as_msec(took),
                         apr_time_as_msec(timeout));
        }
        else if (!ok && took >= timeout) {
            char cause[MEMSESS_ERROR_MAX];

            apr_cpystrn(cause, error, sizeof(cause));
            if (confirming) {
                apr_snprintf(error, sizeof(error), "no answer within a "
                             "patient %" APR_TIME_T_FMT "ms either: %s",
                             apr_time_as_msec(took), cause);
                threshold = 1;
            }
            else {
                apr_snprintf(error, sizeof(error), "timeout after %"
                             APR_TIME_T_FMT "ms: %s", apr_time_as_msec(took),
                             cause);
                unsure = was_late;
            }
        }
        if (ok && pr->fresh) {
            read_identity(pr);
        }

        apr_thread_mutex_lock(c->mutex);
        if (!ok && !pr->streak) {
            pr->streak = before.at;
        }
        if (pr->overdue) {
            pr->overdue = 0;   /* its failure is on record already */
        }
        else if (unsure) {
            /* (the log says so at DEBUG: at TRACE1 every probe is there) */
            ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, c->rt->main,
                         "memcached server %s: %s while the checker was late "
                         "(%s): confirming with a %" APR_TIME_T_FMT "ms probe",
                         srv->addr, error, late,
                         apr_time_as_msec(patient(quick)));
        }
        else {
            if (ok && took > timeout) {
                ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, c->rt->main,
                             "memcached server %s answered after %"
                             APR_TIME_T_FMT "ms while the checker was late "
                             "(%s): it passes", srv->addr,
                             apr_time_as_msec(took), late);
            }
            record_locked(c, i, ok, error, took, threshold);
        }
        memsess_rejoin_kick(c->rejoin);
        if (ok) {
            pr->streak = 0;
        }
        confirming = unsure;
        timeout = unsure ? patient(quick) : quick;
        again = unsure || (!ok && repeat_now(c, i, attempts));
        pr->in_flight = again;
        pr->started = 0;
        pr->limit = timeout;
        pr->dispatched = apr_time_now();
        apr_thread_mutex_unlock(c->mutex);
    } while (again);
    return NULL;
}

/* Whether an attempt out too long is excused: the machine's CPU pressure
 * since it began (only that counter: the other is its own thread's) says
 * the checker was late.  The caller holds the mutex. */
static int overdue_excused(const probe_t *pr, apr_time_t now)
{
    memsess_late_sample_t begun = pr->begun, late;
    char why[MEMSESS_ERROR_MAX / 2];

    memsess_late_sample(&late);
    late.at = now;
    begun.wait_us = late.wait_us = -1;
    return memsess_late_judge(&begun, &late, why, sizeof(why));
}

/* Hands every server whose last probe is back to the thread pool.  One
 * still out after the timeout counts as a failure now, once per round. */
static void dispatch_round(checker_t *c)
{
    int i, n = c->rt->targets->nelts;
    apr_time_t now = apr_time_now();

    memsess_rejoin_reap(c->rejoin);
    memsess_rebalancer_round(c->rebalance);
    memsess_rh_round(c->rt, now);

    for (i = 0; i < n; i++) {
        probe_t *pr = &c->probes[i];
        apr_status_t rv;

        apr_thread_mutex_lock(c->mutex);
        if (pr->in_flight) {
            /* Out beyond its timeout and one of grace (the probe's own
             * ends it first): a wait libmemcached does not bound.  Not
             * while it waits for a thread of the pool, nor when the
             * machine was short of CPU meanwhile (the checker was late,
             * not the server). */
            if (pr->started && now - pr->begun.at > pr->limit
                                                   + c->rt->g.timeout
                && !overdue_excused(pr, now)) {
                char error[MEMSESS_ERROR_MAX];

                apr_snprintf(error, sizeof(error), "no answer after %"
                             APR_TIME_T_FMT "ms", apr_time_as_msec(
                                 now - pr->begun.at));
                pr->overdue = 1;
                record_locked(c, i, 0, error, now - pr->begun.at,
                              c->rt->g.fail_threshold);
            }
            apr_thread_mutex_unlock(c->mutex);
            continue;
        }
        pr->in_flight = 1;
        pr->overdue = 0;
        pr->dispatched = now;
        pr->limit = c->rt->g.timeout;
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
            record_locked(c, i, 0, error, 0, c->rt->g.fail_threshold);
            apr_thread_mutex_unlock(c->mutex);
        }
    }
}

/* The watch saw a live server close or refuse its connection: probe it
 * now rather than at the next round (memsess_watch.c). */
static void suspect(void *ctx, int i)
{
    checker_t *c = ctx;
    probe_t *pr = &c->probes[i];

    apr_thread_mutex_lock(c->mutex);
    if (pr->in_flight) {
        apr_thread_mutex_unlock(c->mutex);
        return;
    }
    pr->in_flight = 1;
    pr->overdue = 0;
    pr->dispatched = apr_time_now();
    pr->limit = c->rt->g.timeout;
    apr_thread_mutex_unlock(c->mutex);
    ap_log_error(APLOG_MARK, APLOG_TRACE1, 0, c->rt->main, "memcached server "
                 "%s closed our idle connection: probing it now",
                 APR_ARRAY_IDX(c->rt->targets, i, memsess_server_t *)->addr);
    if (apr_thread_pool_push(c->threads, probe_task, pr,
                             APR_THREAD_TASK_PRIORITY_HIGHEST, NULL)
        != APR_SUCCESS) {
        apr_thread_mutex_lock(c->mutex);
        pr->in_flight = 0;   /* the next round probes it */
        apr_thread_mutex_unlock(c->mutex);
    }
}

static apr_status_t checker_start(memsess_runtime_t *rt, int took_over)
{
    apr_size_t nthreads = rt->targets->nelts;
    apr_pool_t *pool;
    checker_t *c;
    apr_status_t rv;
    int i, cut, resumed = 0, resumed_syncs = 0;
    apr_time_t gate;

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
    c->rejoin = memsess_rejoin_create(pool, rt, c->mutex);
    c->syncs.busy = syncs_busy;
    c->syncs.start = syncs_start;
    c->syncs.baton = c->rejoin;
    c->rebalance = memsess_rebalancer_create(pool, rt, c->mutex, &c->syncs);
    make_probe_key();
    /* A checker that died inside the table left it mid-write: perhaps
     * between a state change and its publication, or halfway through a
     * view's text.  Repair the seqlock, then republish every view. */
    memsess_table_recover(rt->table);
    c->exchange = memsess_exchange_start(rt, pool, c->mutex, &c->syncs);
    memsess_rebalancer_share(c->rebalance, c->exchange);
    memsess_rejoin_share(c->rejoin, c->exchange);
    memsess_table_write_begin(rt->table);
    /* A server SYNCING now was being synced (or waited for another
     * instance's sync) in the process of the last checker, which died or
     * was ended.  Its sync starts again at once, as it was (below): the
     * group's job followed, or ours taken over; its line to the group
     * stays what it was.  It went down here until its next good probes
     * before: a new verdict of ours that held it out for the whole group
     * at their flip (the soak's seed 6060606: a follower's checker killed
     * just before the flip, the holder's users writing the old place while
     * another instance read the new one).  Without MemsessRejoin sync
     * there is no sync to start: it goes down. */
    cut = rt->g.rejoin == MEMSESS_REJOIN_SYNC
          ? 0 : memsess_table_reset_syncing(rt->table);
    /* A pool change or a sync under way when the last checker of this
     * generation stopped, in a group: the others may flip before this
     * checker has read the job's record (a follower's checker killed
     * while it waited for the holder: its next, in a child, read `done`
     * 210 ms after the group's flip, its requests taking the old list
     * meanwhile: the soak, seed 271828, 7 stale reads).  Their views wait
     * until it has (memsess_rebalancer_gated, memsess_rejoin_gated), 800
     * ms at most.  (A generation's first checker: its parent gated what
     * the previous generation had under way, memsess_rebalance_gate_
     * resumed.) */
    gate = memsess_mono_now() + 2 * MEMSESS_GATE_MAX;
    for (i = 0; i < rt->confs->nelts; i++) {
        memsess_view_slot_t *vs = memsess_table_view_slot(rt->table, i);

        if (vs->rebalance == MEMSESS_REBALANCE_RUNNING) {
            vs->rebalance = MEMSESS_REBALANCE_WAITING;   /* run again */
        }
        if (vs->rebalance && took_over && rt->g.share && !vs->next_at) {
            /* (a flip the last checker prepared stands, its time known:
             * its gate holds requests until then, and they take the list
             * after it, whoever publishes) */
            memsess_table_gate_view(rt->table, i, gate);
            resumed++;
        }
    }
    for (i = 0; rt->g.share && rt->g.rejoin == MEMSESS_REJOIN_SYNC
                && i < rt->targets->nelts; i++) {
        if (memsess_table_slot(rt->table, i)->state == MEMSESS_SYNCING
            && memsess_table_gate_holders(rt->table, rt->views,
                                          rt->confs->nelts, i, gate - 1)) {
            resumed_syncs++;
        }
    }
    if (resumed) {
        memsess_rebalancer_gated(c->rebalance, gate);
    }
    if (resumed_syncs) {
        memsess_rejoin_gated(c->rejoin, gate - 1);
    }
    if (cut) {
        memsess_table_bump_generation(rt->table, (apr_uint64_t)cut);
    }
    /* (a flip the dead checker prepared stands: this one adopts it) */
    memsess_table_republish(rt->table, rt->views, rt->confs->nelts);
    memsess_table_write_end(rt->table);
    if (resumed || resumed_syncs) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, rt->main, "MEMSESS0204: %d "
                     "pool changes and %d syncs were under way when the last "
                     "checker stopped: their requests wait for this "
                     "checker's reading of the group's job (%" APR_TIME_T_FMT
                     "ms each at most)", resumed, resumed_syncs,
                     apr_time_as_msec(MEMSESS_GATE_MAX));
    }
    if (cut) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0032: "
                     "%d rejoin sync(s) were cut short when the last checker "
                     "stopped: those servers are down until their next good "
                     "probes start the sync again", cut);
    }
    if (rt->g.rejoin == MEMSESS_REJOIN_SYNC) {
        apr_thread_mutex_lock(c->mutex);
        for (i = 0; i < rt->targets->nelts; i++) {
            if (memsess_table_slot(rt->table, i)->state == MEMSESS_SYNCING) {
                ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                             "MEMSESS0202: memcached server %s: its sync "
                             "was cut short when the last checker stopped: "
                             "it starts again here, the server still out",
                             memsess_table_slot(rt->table, i)->addr);
                memsess_rejoin_start(c->rejoin, i);
            }
        }
        apr_thread_mutex_unlock(c->mutex);
    }
    checker = c;
    c->watch = memsess_watch_start(pool, rt, suspect, c);
    c->persist = memsess_persist_start(rt, pool, c->mutex);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, rt->main, "MEMSESS0013: checker "
                 "started in process %" APR_PID_T_FMT ": %d servers every %"
                 APR_TIME_T_FMT "ms, timeout %" APR_TIME_T_FMT "ms",
                 getpid(), rt->targets->nelts, apr_time_as_msec(rt->g.interval),
                 apr_time_as_msec(rt->g.timeout));
    if (!memsess_late_sources()) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, rt->main, "MEMSESS0025: "
                     "this kernel shows neither CPU pressure "
                     "(/proc/pressure/cpu) nor a thread's run-queue wait "
                     "(/proc/thread-self/schedstat): a probe that times out "
                     "while the machine is saturated counts against its "
                     "server");
    }
    return APR_SUCCESS;
}

static void checker_stop(void)
{
    checker_t *c = checker;
    int i;

    if (c) {
        checker = NULL;
        memsess_persist_stop(c->persist);
        memsess_exchange_stop(c->exchange);
        memsess_watch_stop(c->watch);
        /* waits for the probes still out: each ends by its timeout */
        apr_thread_pool_destroy(c->threads);
        for (i = 0; i < c->rt->targets->nelts; i++) {
            probe_hangup(&c->probes[i]);
        }
        memsess_rejoin_stop_all(c->rejoin);
        memsess_rebalancer_stop(c->rebalance);
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

/* In the checker process (memsess_check_process.c): it beats at every
 * tick and keeps the lease; the children leave it to the process. */
static int in_process;

/* How long the checker process may go without a tick before the children
 * stop leaving a free lease to it. */
#define PROCESS_STALE apr_time_from_sec(3)
/* ... and how fresh its last tick must be for a checking child to hand the
 * lease back to it. */
#define PROCESS_FRESH apr_time_from_msec(500)

/* Whether the checker process is there to check: forked, ticking within
 * fresh (its fork's time counts until its first tick), not ended. */
static int process_there(const memsess_runtime_t *rt, apr_time_t now,
                         apr_interval_time_t fresh, int ticked)
{
    apr_uint32_t pid;
    apr_time_t forked, beat, last;

    memsess_table_process(rt->table, &pid, &forked, &beat);
    last = beat ? beat : forked;
    if (!pid || (ticked && !beat) || (last <= now && now - last > fresh)) {
        return 0;
    }
    return !process_gone((pid_t)pid);
}

/* Whether this child's checker runs no job that a handover would cut
 * short: no rejoin sync, no rebalance. */
static int checker_idle(const checker_t *c)
{
    int i;

    for (i = 0; i < c->rt->targets->nelts; i++) {
        if (memsess_rejoin_busy(c->rejoin, i)) {
            return 0;
        }
    }
    for (i = 0; i < c->rt->confs->nelts; i++) {
        if (memsess_table_view_slot(c->rt->table, i)->rebalance
            != MEMSESS_REBALANCE_NONE) {
            return 0;
        }
    }
    return 1;
}

static void tick(memsess_runtime_t *rt)
{
    apr_uint32_t me = (apr_uint32_t)getpid(), owner, process;
    /* the lease's times, the process's ticks, the rounds' grid: by the
     * monotonic clock, one for every process of the machine; a step of
     * the wall clock ahead made a child take the checker over from a
     * process that ticked on time (the soak, a clock stepped +3 s) */
    apr_time_t now = memsess_mono_now(), heartbeat, forked, beat;

    if (in_process) {
        memsess_table_process_beat(rt->table, now);
    }
    memsess_table_owner(rt->table, &owner, &heartbeat);
    if (checker && owner != me) {
        /* we stalled and another child took over: it checks now */
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0019: "
                     "process %" APR_PID_T_FMT " took over checking from "
                     "process %u", (pid_t)owner, me);
        checker_stop();
        return;
    }
    if (checker && !in_process && checker_idle(checker)
        && process_there(rt, now, PROCESS_FRESH, 1)) {
        /* the checker process is back (it died, or was late at the
         * start): it checks, no job of ours is cut short */
        memsess_table_process(rt->table, &process, &forked, &beat);
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, rt->main, "MEMSESS0190: "
                     "process %u hands checking back to the checker process "
                     "%u", me, process);
        checker_stop();
        /* with the time of our last round: the process's first is an
         * interval after it, not at once */
        memsess_table_claim(rt->table, me, 0, heartbeat);
        return;
    }
    if (!checker) {
        memsess_table_process(rt->table, &process, &forked, &beat);
        if (!lease_free(rt, owner, heartbeat, now)
            || (!in_process && owner != process
                && process_there(rt, now, PROCESS_STALE, 0))
            || !memsess_table_claim(rt->table, owner, me, now)
            || checker_start(rt, owner || heartbeat) != APR_SUCCESS) {
            return;
        }
        if (owner) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                         "MEMSESS0023: checking resumed in process %u: "
                         "process %u stopped checking", me, owner);
        }
        /* new servers are probed at once; after a hand-back (no owner,
         * the last round's time kept) an interval after that round */
        checker->next_round = now;
        if (!owner && heartbeat && heartbeat <= now
            && now - heartbeat < rt->g.interval) {
            checker->next_round = heartbeat + rt->g.interval;
        }
    }
    /* (a round further away than an interval: the clock went back) */
    if (now >= checker->next_round
        || checker->next_round - now > rt->g.interval) {
        memsess_table_heartbeat(rt->table, now);
        dispatch_round(checker);
        memsess_exchange_round(checker->exchange);
        /* on the interval's grid, unless we fell behind it */
        checker->next_round += rt->g.interval;
        if (checker->next_round <= now
            || checker->next_round - now > rt->g.interval) {
            checker->next_round = now + rt->g.interval;
        }
    }
}

void memsess_check_process_tick(memsess_runtime_t *rt)
{
    in_process = 1;
    tick(rt);
}

void memsess_check_process_stop(memsess_runtime_t *rt)
{
    if (checker) {
        checker_stop();
        /* hand over at once: the next tick of a child claims */
        memsess_table_claim(rt->table, (apr_uint32_t)getpid(), 0, 0);
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
        memsess_release_tick(rt);
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
