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

/* memsess_table.h: the shared health table: layout, seqlock, the up/down
 * state machine, what each view publishes (memsess_table.c: APR only). */

#ifndef MEMSESS_TABLE_H
#define MEMSESS_TABLE_H

#include "apr_thread_mutex.h"

#include "memsess_common.h"

typedef enum {
    MEMSESS_UNKNOWN = 0,   /* no verdict yet: counts as live */
    MEMSESS_UP      = 1,
    MEMSESS_DOWN    = 2,
    MEMSESS_SYNCING = 3    /* passed its probes after being down; not live
                            * until the rejoin sync has brought its keys
                            * where the new list places them */
} memsess_state_e;

const char *memsess_state_name(apr_uint32_t state);

/* One distinct server.  Written only by the checker (and by the parent
 * while it fills a new table at startup), always inside the seqlock. */
typedef struct {
    char         addr[MEMSESS_ADDR_MAX];
    apr_uint32_t state;
    apr_uint32_t consecutive_fails;
    apr_uint32_t consecutive_passes;
    apr_uint32_t peer_down;        /* another instance of the group sees it
                                    * down (memsess_exchange.c) */
    apr_int64_t  follow_gate;      /* our verdict down, not the group's yet:
                                    * the gate of the views that hold it
                                    * (memsess_mono_now(); 0: none) */
    apr_uint64_t checks;
    apr_uint64_t failures;
    apr_uint64_t state_changes;
    apr_int64_t  last_change;      /* unix seconds, 0 = never */
    apr_uint64_t latency_us;       /* of the last probe */
    apr_uint64_t duration_us_sum;  /* of all probes, for the metrics */
    char         last_error[MEMSESS_ERROR_MAX];
    char         reported_by[MEMSESS_REPORTERS_MAX];  /* while peer_down:
                                    * those instances, ", "-separated */
    /* the rejoin sync running or last run (MEMSESS_SYNCING) */
    apr_int64_t  sync_started;     /* unix seconds, 0 = never */
    apr_uint64_t sync_examined;    /* keys looked at */
    apr_uint64_t sync_copied;      /* copies written to the server */
    apr_uint64_t sync_deleted;     /* keys removed (stale, locks, moved) */
    apr_uint64_t sync_memory;      /* bytes its tables held, at most */
    apr_uint64_t sync_listed;      /* metadump lines read */
    apr_uint64_t sync_expected;    /* lines its first pass lists, 0 = not
                                    * known (memsess_sync_stats_t) */
    apr_uint64_t syncs;            /* completed */
    char         sync_by[MEMSESS_INSTANCE_MAX];  /* the instance of the
                                    * group whose sync of it this one waits
                                    * for or published it with; "" when
                                    * this instance syncs it itself */
    apr_uint32_t sync_waits;       /* syncing, but another instance syncs
                                    * it (or that is being checked): this
                                    * one puts no verdict line in for it */
    /* The memcached process behind the address, from its "stats" (pid, and
     * its start by its own clock: time - uptime), read by the checker on
     * each new probe connection; 0 = not known.  down_*: the process it
     * was when its outage began, and when that was (apr_time_t of the
     * outage's first failed probe): a server that comes back as the same
     * process kept its keys, and its rejoin examines only what changed
     * since (memsess_rejoin.c). */
    apr_int64_t  proc_pid;
    apr_int64_t  proc_started;
    apr_int64_t  down_pid;
    apr_int64_t  down_started;
    apr_int64_t  down_since;
    apr_int64_t  out_since;        /* apr_time_t this instance last stopped
                                    * publishing it (its own verdict, or
                                    * another's line); 0 = never */
    apr_int64_t  down_off_ms;      /* memsess_clock_offset_ms() as
                                    * down_since and out_since were set:
                                    * the clock they are in (0: not
                                    * known) */
    apr_int64_t  out_off_ms;
    apr_uint32_t sync_mode;        /* of its last published sync:
                                    * MEMSESS_SYNC_* */
    /* A sync of it that began and was not published (stopped by a
     * graceful, a killed checker, a failure): when it began (apr_time_t,
     * 0: none), and the memcached process it wrote to.  That process
     * holds nothing older, so the next sync of it, while the same process
     * answers, examines only what changed since (memsess_rejoin.c) */
    apr_int64_t  resume_since;
    apr_int64_t  resume_pid;
    apr_int64_t  resume_started;
} memsess_slot_t;

/* memsess_slot_t.sync_mode */
#define MEMSESS_SYNC_NONE  (0)   /* never synced */
#define MEMSESS_SYNC_FULL  (1)   /* every key listed was examined */
#define MEMSESS_SYNC_DELTA (2)   /* it came back as the same memcached
                                  * process: only what changed meanwhile */

/* Where a view's pool change stands (MemsessServers changed at graceful). */
typedef enum {
    MEMSESS_REBALANCE_NONE    = 0,   /* the configured list is published */
    MEMSESS_REBALANCE_WAITING = 1,   /* the list served before is: waiting
                                      * for verdicts on the new servers, or
                                      * to retry */
    MEMSESS_REBALANCE_RUNNING = 2    /* ... and the rebalance runs */
} memsess_rebalance_e;

const char *memsess_rebalance_name(apr_uint32_t state);

#define MEMSESS_VIEW_NAME_MAX (256)

/* One published save_path: what a vhost's requests get, and the pool it
 * is built from (the next generation reads it to see whether the pool
 * changed). */
typedef struct {
    apr_uint32_t offset;    /* of the text, from the start of the table */
    apr_uint32_t capacity;  /* bytes reserved there, NUL included */
    apr_uint32_t len;       /* of the current text */
    apr_uint32_t nlive;     /* servers in it that are live; 0 = fail open */
    /* the list in force: every server, config order, memcached syntax */
    apr_uint32_t served_offset;
    apr_uint32_t served_capacity;
    apr_uint32_t served_len;
    apr_uint32_t served_replicas;
    apr_uint32_t served_failover;   /* memsess_failover_e */
    apr_uint32_t served_ketama;     /* sess_consistent_hash */
    apr_uint32_t served_format;     /* memsess_format_e */
    char         served_prefix[MEMSESS_NAMESPACE_MAX + 1];   /* the
                                     * namespace in force ("": none
                                     * recorded) */
    apr_uint32_t rebalance;         /* memsess_rebalance_e */
    apr_int64_t  gate;              /* a flip's: requests that read the
                                     * list wait until then
                                     * (memsess_mono_now(); 0: open) */
    /* A flip prepared as its time became known (memsess_table_prepare_flip):
     * the text after it, beside the one in force, that readers take from
     * next_at on, whether or not the checker that prepared it lives to
     * publish it; the next publish of the view replaces both. */
    apr_uint32_t next_offset;       /* capacity bytes, as the text's */
    apr_uint32_t next_len;
    apr_uint32_t next_nlive;
    apr_uint32_t next_rebalance;
    apr_int64_t  next_at;           /* memsess_mono_now(); 0: none */
    apr_uint32_t rebalance_runs;    /* started, failed ones included */
    apr_int64_t  rebalance_started; /* unix seconds of the last, 0 = never */
    apr_uint64_t rebalance_examined;
    apr_uint64_t rebalance_copied;
    apr_uint64_t rebalance_deleted;
    apr_uint64_t rebalance_listed;    /* as a slot's sync_listed */
    apr_uint64_t rebalance_expected;  /* as a slot's sync_expected */
    char         rebalance_error[MEMSESS_ERROR_MAX];   /* why the last
                                                        * stopped */
    char         name[MEMSESS_VIEW_NAME_MAX];   /* its vhost's */
    /* MemsessPersist (memsess_persist_db.c; the checker writes) */
    apr_uint32_t persist_role;      /* MEMSESS_PERSIST_ROLE_* */
    apr_int64_t  persist_interval_ms;   /* the window */
    apr_int64_t  persist_last_write;    /* unix seconds of the last whole
                                         * round written, 0 = never */
    apr_uint64_t persist_stored;    /* sessions stored, as far as known */
    apr_uint64_t persist_pending;   /* changed, left for the next round */
    apr_uint64_t persist_written;   /* rows written, this generation */
    apr_uint64_t persist_deleted;   /* rows deleted (logouts, expiries) */
    apr_uint64_t persist_restores;  /* servers refilled from the database */
    apr_uint64_t persist_restored;  /* sessions restored */
    char         persist_error[MEMSESS_ERROR_MAX];   /* the last failure */
} memsess_view_slot_t;

#define MEMSESS_PERSIST_ROLE_OFF     (0)
#define MEMSESS_PERSIST_ROLE_WRITER  (1)   /* this instance writes */
#define MEMSESS_PERSIST_ROLE_STANDBY (2)   /* another instance of the group
                                            * does */
#define MEMSESS_PERSIST_ROLE_FAILING (3)   /* the database or the pool
                                            * cannot be reached */

/* Bytes a table needs for nslots servers and the given text capacities. */
apr_size_t memsess_table_size(int nslots, int nviews,
                              const apr_uint32_t *capacities);

/* Lays out an empty table over base (size bytes, zeroed by the caller is
 * not required).  Returns NULL when size is too small. */
memsess_table_t *memsess_table_init(void *base, apr_size_t size, int nslots,
                                    int nviews,
                                    const apr_uint32_t *capacities);

/* Checks that base holds a table of this version; NULL if not. */
memsess_table_t *memsess_table_attach(void *base, apr_size_t size);

int memsess_table_nslots(const memsess_table_t *t);
int memsess_table_nviews(const memsess_table_t *t);
apr_uint64_t memsess_table_generation(const memsess_table_t *t);
apr_uint64_t memsess_table_state_changes(const memsess_table_t *t);

/* Readers: no lock, no system call.  Each copies a consistent snapshot and
 * returns APR_SUCCESS, or APR_EBUSY when the writer stayed inside its
 * critical section for the whole bounded retry (a writer that died there).
 */
apr_status_t memsess_table_read_slot(const memsess_table_t *t, int i,
                                     memsess_slot_t *copy);
/* A view's published save_path, how many of its servers are live and,
 * unless rebalance is NULL, the view's memsess_rebalance_e in the same
 * snapshot (not NONE: the text is built from the view's `before`); from
 * a prepared flip's time on, the text after it (memsess_table_prepare_flip).
 */
apr_status_t memsess_table_read_view(const memsess_table_t *t, int v,
                                     char *buf, apr_size_t size,
                                     apr_uint32_t *len, apr_uint32_t *nlive,
                                     apr_uint32_t *rebalance,
                                     apr_time_t *gate);
/* A view's fields (not its texts); name made a string. */
apr_status_t memsess_table_read_view_slot(const memsess_table_t *t, int v,
                                          memsess_view_slot_t *copy);
/* The list in force, into buf (NUL-terminated, cut to size). */
apr_status_t memsess_table_read_served(const memsess_table_t *t, int v,
                                       char *buf, apr_size_t size);

/* The writer.  One at a time: the checker serialises its threads. */
void memsess_table_write_begin(memsess_table_t *t);
void memsess_table_write_end(memsess_table_t *t);
/* Repairs the seqlock after a writer died inside it (new checker only). */
void memsess_table_recover(memsess_table_t *t);
memsess_slot_t *memsess_table_slot(memsess_table_t *t, int i);
memsess_view_slot_t *memsess_table_view_slot(memsess_table_t *t, int v);
/* Gives view v its name and the list in force (the writer; the parent
 * when it fills a new table): the last served_capacity bytes of the
 * view's capacity hold that list.  Returns APR_ENOSPC when it does not
 * fit. */
apr_status_t memsess_table_set_served(memsess_table_t *t, int v,
                                      const char *name,
                                      apr_uint32_t served_capacity,
                                      const char *served, int replicas,
                                      int failover, int ketama, int format,
                                      const char *prefix);
void memsess_table_bump_generation(memsess_table_t *t, apr_uint64_t changes);
/* The checker found a twin (memsess_exchange.c): the status says so.  The
 * writer sets it; a new generation's table starts without. */
void memsess_table_set_twin(memsess_table_t *t, int twin);
int memsess_table_twin(const memsess_table_t *t);

/* The other instances of the group as the exchange last heard them, with
 * their clocks (memsess_clocks.c), for the status page and the group's
 * flips and leases.  The writer sets them all at once (in its write). */
#define MEMSESS_PEERS_SHOWN (32)
typedef struct {
    char         name[MEMSESS_INSTANCE_MAX];
    apr_int64_t  skew_ms;    /* its clock minus ours */
    apr_int64_t  error_ms;   /* +- that; -1: not measured yet */
    apr_int64_t  seen;       /* unix seconds (ours) its line was last read */
    apr_int64_t  offset_ms;  /* our memsess_clock_offset_ms() then (0: not
                              * known) */
    apr_int64_t  at_ms;      /* our clock when the measure last narrowed */
    apr_int64_t  peer_offset_ms;   /* the skew's: its own offset (its
                                    * member line's; 0: not known) */
} memsess_peer_clock_t;
void memsess_table_set_peers(memsess_table_t *t,
                             const memsess_peer_clock_t *peers, int n);
/* Copies up to max of them into out; returns how many (0 when a copy
 * cannot be had).  A new checker starts from them (memsess_exchange.c),
 * and a new generation's table keeps them (mod_memsess.c). */
int memsess_table_peers(const memsess_table_t *t, memsess_peer_clock_t *out,
                        int max);
/* Its clock minus ours in ms (and *error, +- that), when measured to
 * within error_max ms; else 0 (and *error -1: not known).  offset_ms: our
 * memsess_clock_offset_ms() now (0: not known): a step of our clock since
 * the measure is taken off. */
apr_int64_t memsess_table_peer_skew(const memsess_table_t *t,
                                    const char *name, apr_int64_t error_max,
                                    apr_int64_t offset_ms, apr_int64_t *error);
void memsess_table_set_generation(memsess_table_t *t, apr_uint64_t gen,
                                  apr_uint64_t changes);

/* The checker's lease: which process checks, and when it last started a
 * round.  A process becomes the checker by a compare-and-swap from the
 * owner it saw (0, or one that is gone or stale); nothing is ever locked,
 * so an owner that dies holds nothing up. */
void memsess_table_owner(const memsess_table_t *t, apr_uint32_t *pid,
                         apr_time_t *heartbeat);
int memsess_table_claim(memsess_table_t *t, apr_uint32_t seen,
                        apr_uint32_t pid, apr_time_t now);
void memsess_table_heartbeat(memsess_table_t *t, apr_time_t now);
/* Whether this process holds the lease: every writer of the table checks
 * it first (a checker that was stalled and lost it writes nothing). */
int memsess_table_leased(const memsess_table_t *t);
/* The writers on threads of their own (the rejoin syncs, the rebalance):
 * locks mutex, the checker's (which serialises the writers), and returns
 * memsess_table_leased(); the caller writes only when it is set, and
 * unlocks mutex either way. */
int memsess_table_lease_lock(memsess_table_t *t, apr_thread_mutex_t *mutex);

/* The checker process (memsess_check_process.c): the parent sets its pid
 * and when it forked it (0: there is none), and the process beats at every
 * tick (*beat 0 until its first); the children leave the lease to it while
 * it beats. */
void memsess_table_set_process(memsess_table_t *t, apr_uint32_t pid,
                               apr_time_t forked);
void memsess_table_process_beat(memsess_table_t *t, apr_time_t now);
void memsess_table_process(const memsess_table_t *t, apr_uint32_t *pid,
                           apr_time_t *forked, apr_time_t *beat);

/* The up/down state machine: records one probe result in slot (counters
 * included) and returns non-zero when the state changed. */
int memsess_slot_record(memsess_slot_t *slot, int ok, const char *error,
                        apr_uint64_t latency_us, apr_int64_t now,
                        int fail_threshold, int pass_threshold);

/* Makes text from outside (what a memcached server sent) one clean line
 * of ASCII, in place: control characters become spaces, bytes outside
 * ASCII '?'. */
void memsess_text_one_line(char *s);
/* A down server whose good probes would bring it back enters SYNCING
 * instead (MemsessRejoin sync); memsess_slot_record() sends it back DOWN on
 * any failed probe, and keeps it SYNCING on good ones. */
void memsess_slot_sync_begin(memsess_slot_t *slot, apr_int64_t now);
/* The sync ended: UP (published) when ok, else DOWN, retried once the
 * server passes its probes again.  Returns non-zero (a state change). */
int memsess_slot_sync_end(memsess_slot_t *slot, int ok, const char *error,
                          apr_int64_t now);
/* A checker that starts finds a slot SYNCING only when the process that
 * ran its sync died.  Without a sync to start (MemsessRejoin other than
 * sync) it goes DOWN, and its next good probes bring it back.  Returns how
 * many slots it changed.  The caller is the writer. */
int memsess_table_reset_syncing(memsess_table_t *t);

/* Whether a state counts as live for injection. */
#define MEMSESS_IS_LIVE(state) \
    ((state) != MEMSESS_DOWN && (state) != MEMSESS_SYNCING)

/* Whether a server gets sessions: live by our own probes, and seen down by
 * no other instance of the group.  What is published and shown. */
#define MEMSESS_SLOT_LIVE(sl) (MEMSESS_IS_LIVE((sl)->state) && !(sl)->peer_down)

/* Gates every view whose pool holds slot until `until` (a later gate
 * already there stands): requests that read one wait (memsess_inject.c),
 * MEMSESS_GATE_MAX at most.  Returns how many.  Inside the table write that
 * publishes the change. */
int memsess_table_gate_holders(memsess_table_t *t, const memsess_view_t *vdefs,
                               int nviews, int slot, apr_time_t until);
/* Gates view v until `until`, as memsess_table_gate_holders() does. */
void memsess_table_gate_view(memsess_table_t *t, int v, apr_time_t until);
/* Prepares a flip whose time is known, at `at` (memsess_mono_now()): the
 * server of slot (>= 0) live then, or (slot < 0) the configured pools of
 * the views in moving[] in force then.  Each view it changes is gated
 * until `at` (a later gate stands): a request that comes in between waits
 * for the flip and takes the list after it, rather than write a session
 * under the old list that no listing had and no lock covers, where a
 * request of the new list at another instance would not find it (the
 * soak's seed 918273: a session born at the holder after its last
 * listing, written there 40 ms before the flip, read as new at another
 * instance 30 ms after it).  Each view it changes gets the text
 * after it beside the one in force; readers take it from `at` on, even if
 * the checker that prepared it dies before it publishes the flip (its
 * holder's checker process killed between `done` and the flip kept the
 * old list 330 ms after the others: the soak, seed 31337077).  Any publish
 * of the view, the flip's own included, replaces it; so does
 * memsess_table_cancel_flips().  Returns how many views.  The writer. */
int memsess_table_prepare_flip(memsess_table_t *t, const memsess_view_t *vdefs,
                               int nviews, int slot, const int *moving,
                               apr_time_t at);
/* Cancels the flips prepared for the views of slot (>= 0), or of
 * moving[], and their gates: a flip that will not be published (a dead
 * checker's included). */
void memsess_table_cancel_flips(memsess_table_t *t, const memsess_view_t *vdefs,
                                int nviews, int slot, const int *moving);
/* Publishes every view, as memsess_table_publish(-1), but a flip prepared
 * by a checker that died stands: the new checker adopts its job (done)
 * and publishes it; until then requests keep to it rather than go back
 * to the list of before for the while. */
void memsess_table_republish(memsess_table_t *t, const memsess_view_t *vdefs,
                             int nviews);
/* Opens the gate of the views that memsess_table_gate_holders() set to
 * until (a gate set since, by another flip, stands). */
void memsess_table_ungate(memsess_table_t *t, int nviews, apr_time_t until);
/* Rebuilds the published save_path of every view that holds slot (of all
 * views when slot < 0) from the slots' states: from the view's pool, or
 * while a rebalance is pending (the view slot's rebalance) from the pool
 * served before (memsess_view_t.before).  A view none of whose
 * servers is live publishes its full list with nlive 0 (fail open).
 * Returns how many views went into or out of that all-down state, and
 * lists them in flipped (nviews entries) unless it is NULL.
 * The caller is the writer, inside write_begin/_end. */
int memsess_table_publish(memsess_table_t *t, const memsess_view_t *views,
                          int nviews, int slot, int *flipped);

#endif /* MEMSESS_TABLE_H */
