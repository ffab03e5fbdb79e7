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

/* memsess_joblock.h: a job run once for the group, through its record on a
 * server: take, wait, follow, take over, hold the lease
 * (memsess_joblock.c). */

#ifndef MEMSESS_JOBLOCK_H
#define MEMSESS_JOBLOCK_H

#include "memsess_common.h"
#include "memsess_verdicts.h"

/* memsess_joblock.c: a job (a rejoin sync, a rebalance) run once for the
 * group, through its record (memsess_job.c) on one server.  Fill subject,
 * job, fingerprint, stop, note and baton, then open; claim tells whether
 * this instance holds the job (holding 0: a server that refuses the record,
 * where each instance works alone), or follows its holder (who, in holder),
 * once that one is done; the holder refreshes the record while it works
 * (done once it has published) and releases it when finished. */
typedef enum {
    MEMSESS_CLAIM_HOLD,
    MEMSESS_CLAIM_FOLLOW,
    MEMSESS_CLAIM_FAILED
} memsess_claim_e;

typedef struct memsess_joblock {
    /* given */
    const char               *subject;   /* "memcached server X", for logs */
    const char               *job;       /* "its sync", for logs */
    apr_uint64_t              fingerprint;   /* of what the job does (a
                                              * sync's lists, a change):
                                              * followed only when equal */
    volatile apr_uint32_t    *stop;      /* set: stop waiting; set on loss */
    apr_int64_t               not_before;  /* memsess_job_next's */
    apr_time_t                out_since;   /* when this instance last
                                            * stopped publishing the
                                            * server (0: not known): a
                                            * job done whose flip came
                                            * before is not followed */
    apr_int64_t               not_before_off_ms;   /* the clock offsets
                                            * (memsess_clock_offset_ms())
                                            * those two were read in (0:
                                            * not known): moved by a step
                                            * of ours since */
    apr_int64_t               out_off_ms;
    apr_time_t                ungate;    /* a gate opened in the write
                                          * that prepares the flip (a new
                                          * generation's, waiting for the
                                          * record: memsess_rebalance_gate_
                                          * resumed); 0: none */
    void                    (*note)(void *baton, const char *holder);
    void                     *baton;     /* note: whom we wait for or
                                          * follow, "" when we hold it */
    /* kept */
    memsess_runtime_t        *rt;
    struct memcached_st      *mc;
    char                      key[MEMSESS_VERDICT_KEY_MAX + 1];
    size_t                    keylen;
    apr_int64_t               since;
    apr_time_t                refreshed;   /* the last write tried
                                            * (memsess_mono_now) */
    apr_time_t                held_at;     /* ... the last that took */
    apr_time_t                fence_read;  /* the record, read to fence */
    int                       holding;
    volatile apr_uint32_t     lost;      /* another took it over */
    char                      holder[MEMSESS_INSTANCE_MAX];  /* followed */
    apr_int64_t               flip_ms;   /* done: when all publish */
    apr_time_t                flip_mono; /* ... by our monotonic clock,
                                          * as it was set: waited for by
                                          * it (a wall clock stepped 3 s
                                          * back while a follower waited
                                          * held it 3 s past the flip:
                                          * the soak, seed 31337077) */
    int                       done;      /* marked done: stays done */
    int                       rc;        /* the last libmemcached answer */
    /* the lease is renewed on a timer by a thread of its own (its own
     * connection), however slow the work between two progress calls */
    int                       slot;
    apr_interval_time_t       timeout;
    apr_pool_t               *pool;
    struct apr_thread_mutex_t *mutex;    /* the record's fields, j->mc */
    struct apr_thread_t      *keeper;
    volatile apr_uint32_t     keeper_stop;
} memsess_joblock_t;

/* The record memsess_record_key(group, "job", name) on server slot; pool
 * (the caller's thread's) holds the lease's thread and mutex. */
apr_status_t memsess_joblock_open(memsess_joblock_t *j, memsess_runtime_t *rt,
                                  int slot, const char *name,
                                  apr_interval_time_t timeout,
                                  apr_pool_t *pool);
memsess_claim_e memsess_joblock_claim(memsess_joblock_t *j, char *err,
                                      apr_size_t errlen);
/* The holder: its record again, with a new expiry (at most every 0.5 s
 * unless forced), done once done was given (a record marked done is never
 * marked syncing again); marks the job lost (and sets stop) when another
 * instance took it over.  The lease's thread calls it every 0.5 s too. */
void memsess_joblock_refresh(memsess_joblock_t *j, int done, int force);
/* The holder, its work done: marks the record done with a flip time a
 * little ahead (MEMSESS_FLIP_DELAY: every waiter reads the record within
 * that), at which the holder and every follower publish (at once when
 * alone: no other instance of the group was heard); returns it. */
#define MEMSESS_FLIP_DELAY apr_time_from_msec(250)
apr_int64_t memsess_joblock_done(memsess_joblock_t *j, int alone);
/* Whether the job publishes at its flip time even when told to stop (a
 * graceful stops the checker process): its flip time is set (the holder's
 * record says done, or a follower read it) and nobody took the job over.
 * The others publish at that time whatever happens here; publishing with
 * them leaves no window, which the next checker's catching up would. */
int memsess_joblock_flips(const memsess_joblock_t *j);
/* The flip's guard after a flip made with the group runs its course even
 * when the checker is told to stop (a graceful): *stop is cleared for it
 * (memsess_joblock_guard_begin returns whether it was set) and set again
 * after (memsess_joblock_guard_end), or when the job was taken over
 * meanwhile. */
int memsess_joblock_guard_begin(const memsess_joblock_t *j,
                                volatile apr_uint32_t *stop);
void memsess_joblock_guard_end(const memsess_joblock_t *j,
                               volatile apr_uint32_t *stop, int stopping);
/* Logs that the job published at its flip time though told to stop. */
void memsess_joblock_flipped_stopping(const memsess_joblock_t *j);
/* Sleeps until the flip time of the job (its own, or the holder's read by
 * a follower); at once when it has passed or is far off, or when told to
 * stop unless it flips all the same (memsess_joblock_flips). */
void memsess_joblock_wait_flip(memsess_joblock_t *j);
/* The flip, once its time is known (done, or followed), prepared in the
 * table (memsess_table_prepare_flip: slot >= 0 a rejoin's server, else the
 * views in moving[]): this instance's requests take the new list at the
 * flip time even if this checker dies before it publishes the flip.  And
 * cancelled, when the flip will not be published.  mutex: the table
 * writers'. */
void memsess_joblock_prepare_flip(memsess_joblock_t *j,
                                  apr_thread_mutex_t *mutex, int slot,
                                  const int *moving);
/* Opens the gate that j->ungate names (a table write under mutex, the
 * lease held): the job is over, whatever became of its claim. */
void memsess_joblock_ungate(memsess_joblock_t *j, apr_thread_mutex_t *mutex);
void memsess_joblock_cancel_flip(memsess_joblock_t *j,
                                 apr_thread_mutex_t *mutex, int slot,
                                 const int *moving);
/* The holder: its record written anew (the server was emptied). */
void memsess_joblock_rewrite(memsess_joblock_t *j);
/* The holder, before each write or delete of its job (the fence): 1 while
 * the lease surely holds: written within its time to live less a margin,
 * by this process's monotonic clock (a process frozen past it, or whose
 * record cannot be renewed, stops), and the record, read again at most
 * every 100 ms, still ours (taken over: stop).  0: lost (stop is set).
 * Holding no record (a server that refuses it): 1. */
int memsess_joblock_fence(memsess_joblock_t *j);
/* The holder is finished: its record goes, unless another's replaced it;
 * one that says done stays done when the holder was told to stop (it
 * skipped its after-flip work: memsess_joblock_abandon). */
void memsess_joblock_release(memsess_joblock_t *j);
/* The holder failed or stopped before its own flip: released, unless its
 * record says done already (the others publish at its flip time): then it
 * stays done, kept past the next checker's start and a retry, which follow
 * it rather than run the job again. */
void memsess_joblock_abandon(memsess_joblock_t *j);
void memsess_joblock_close(memsess_joblock_t *j);

#endif /* MEMSESS_JOBLOCK_H */
