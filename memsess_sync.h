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

/* memsess_sync.h: the sync engine: a rejoin sync or a rebalance, given
 * targets (memsess_sync.c: APR and libmemcached only). */

#ifndef MEMSESS_SYNC_H
#define MEMSESS_SYNC_H

#include "memsess_common.h"
#include "memsess_listing.h"

/* A sync that lists this many keys and no session warns (MEMSESS0045):
 * PHP places its sessions elsewhere, or under another prefix. */
#define MEMSESS_NO_SESSION_LINES (10000)

/* Keys written meanwhile that a later pass takes from a server's log of
 * writes (memsess_feed.c), at most: more, and it lists that server whole
 * again (~80 bytes a key: 5 MB). */
#define MEMSESS_SYNC_FEED (65536)
#define MEMSESS_SYNC_FEED_MIN (100000)



/* What the sync does with one key found on one server (pure; ids of
 * servers in any common numbering). */
typedef enum {
    MEMSESS_SYNC_SKIP   = 0,  /* nothing: not ours to move */
    MEMSESS_SYNC_COPY   = 1,  /* here is its authority, the new list
                               * places it on the returning server too */
    MEMSESS_SYNC_VERIFY = 2,  /* on the returning server, placed there: it
                               * stays only if its authority has it */
    MEMSESS_SYNC_DROP   = 3   /* on the returning server: a lock, or not
                               * placed there: deleted */
} memsess_sync_action_e;

memsess_sync_action_e memsess_sync_decide(memsess_key_kind_e kind,
                                          int here, int returning,
                                          const int *now, int nnow,
                                          const int *next, int nnext);

typedef struct {
    apr_uint64_t examined;   /* metadump lines looked at */
    apr_uint64_t copied;     /* values written to the returning server */
    apr_uint64_t deleted;    /* keys removed (stale, locks, moved back) */
    apr_uint64_t same;       /* already equal there */
    apr_uint64_t newer;      /* changed meanwhile: left alone (cas) */
    apr_uint64_t watched;    /* active sessions watched around the flip */
    apr_uint64_t listed;     /* metadump lines of ours read: examined
                              * counts them all in a full sync, only what
                              * changed in a delta sync (spec.since) */
    apr_uint64_t lines;      /* every metadump line read, ours or not */
    apr_uint64_t retried;    /* reads tried again after a timeout */
    apr_uint64_t expected;   /* metadump lines its first pass lists: what
                              * its servers held as it began (their
                              * curr_items); 0: not known */
    apr_uint64_t feeds;      /* servers whose log of writes it watched
                              * (memsess_feed.c) */
    apr_uint64_t fed;        /* keys that log gave a pass (not listed) */
    apr_uint64_t feed_lost;  /* passes that listed a server after all: its
                              * log may have lost a key */
    apr_uint64_t memory;     /* bytes its tables held, at most: what it
                              * wrote (memsess_written.c), the returning
                              * server's keys (a delta), the active
                              * sessions, a batch of copies */
} memsess_sync_stats_t;

/* One list to sync: a view's session.save_path published now, the one
 * about to be published (the same with the returning server live), and
 * how php-memcached places keys on it.  The next list places keys as the
 * one now unless next_own is set (a pool whose MemsessReplicas or
 * MemsessFailover changed at graceful): then with next_replicas and
 * next_ketama. */
typedef struct {
    const char *path_now;
    const char *path_next;
    int         replicas;
    int         ketama;
    int         next_own;
    int         next_replicas;
    int         next_ketama;
} memsess_sync_list_t;

/* One sync: every list holding the returning server, at once (servers
 * shared by pools with other placements hold keys of every pool, and a
 * key is only deleted when no list wants it there).
 *
 * The same engine rebalances a pool whose list changed (returning NULL):
 * every server of a new list is then a target, each key is copied from
 * its authority to every target the new list places it on, and a target
 * no list reads now is cleaned as a returning server is.  After the flip
 * the last pass removes every session copy that no new list places where
 * it is: lists must then be every list of the instance (unchanged ones
 * with path_now == path_next), or another pool's keys would go. */
typedef struct {
    const char                *returning;   /* "host:port", or NULL: a
                                             * rebalance */
    const memsess_sync_list_t *lists;
    int                        nlists;
    apr_interval_time_t        timeout;     /* of one operation */
    int                        rate;        /* keys copied or looked for
                                             * a second (MemsessSyncRate);
                                             * 0: unbounded */
    volatile apr_uint32_t     *stop;        /* set: stop before next key */
    void (*progress)(void *baton, const memsess_sync_stats_t *stats);
    /* the job's lease (memsess_joblock_fence()), asked before every copy
     * and delete: 0 stops the job before it writes ("its lease ...").
     * NULL: not fenced */
    int  (*fence)(void *baton);
    void                      *baton;
    /* A delta sync (a rejoin only): the returning server is the memcached
     * process that went down (pid, and started: time - uptime by its own
     * clock), so it kept what it held; only what changed since `since`
     * (our clock, margins included) is examined.  0: a full sync.  The
     * engine checks the process again, and reads every server's clock
     * ("stats" time) to compare its last-access times with `since`; when
     * it cannot, it runs the full sync (memsess_sync_mode() says why). */
    apr_time_t                 since;
    apr_int64_t                pid;
    apr_int64_t                started;
    /* the sessions' namespace (MemsessNamespace, as injected): keys under
     * any other are never read, copied or deleted.  NULL: php-memcached's
     * default.  A rebalance may move them to another (next_prefix, NULL:
     * the same): each session is then copied from its authority to every
     * server the new list places it on, itself included, under its new
     * name; nothing under the old namespace is ever deleted (another site
     * may share it: those copies expire) */
    const char                *prefix;
    const char                *next_prefix;
    /* Keys a server's log of writes (memsess_feed.c) may give one later
     * pass instead of listing that server whole again
     * (MEMSESS_SYNC_FEED); 0: every pass lists every server whole.  Only
     * a server holding feed_min keys or more is watched
     * (MEMSESS_SYNC_FEED_MIN): a smaller one is listed again, for less
     * than a watch costs (a thread, two connections) */
    apr_size_t                 feed;
    apr_int64_t                feed_min;
} memsess_sync_spec_t;

typedef struct memsess_sync memsess_sync_t;

/* Connects nothing yet; NULL and err filled when a list is refused. */
memsess_sync_t *memsess_sync_create(apr_pool_t *p,
                                    const memsess_sync_spec_t *spec,
                                    char *err, apr_size_t errlen);
/* Before the flip: the full pass, then a delta pass over what changed
 * since it began.  APR_SUCCESS, or an error described in err (the
 * returning server or an authority failed, or stop was set). */
apr_status_t memsess_sync_before(memsess_sync_t *sync, char *err,
                                 apr_size_t errlen);
/* After the flip: what requests that still had the old list wrote at the
 * old authority since it was copied is brought over with cas (S keeps
 * anything a new request wrote).  Run at once, then again (final) after a
 * grace, which also removes copies the new list places nowhere; each run
 * looks at the keys written since the previous one began, so it may be
 * run as often as wanted in between. */
apr_status_t memsess_sync_after(memsess_sync_t *sync, int final, char *err,
                                apr_size_t errlen);
/* After the flip, at once and as often as wanted: the keys the last delta
 * pass found being written (the users active around the flip) are read
 * at their old authority and brought over, without listing any server:
 * a request that had the old list and ends just after the flip has its
 * write where its user's next request reads it within a round trip or
 * two, not a listing. */
apr_status_t memsess_sync_after_hot(memsess_sync_t *sync, char *err,
                                    apr_size_t errlen);
/* At the flip (after memsess_sync_before() succeeded): the active
 * sessions whose reads move to another server are guarded by
 * php-memcached's own lock.  Just before the flip, their lock is taken
 * where the new list places it, if that is not where the old one does (no
 * request looks for it there yet), and where the old list places it (the
 * requests that have it wait for the flip: what they would write there in
 * between only this process brings over, and it may die first; one a
 * request has is taken as it lets go, within 50 ms, and what it wrote
 * brought over; let go at memsess_sync_flipped(), or by memcached 2 s
 * after a death); returns how many new-list locks were taken, and how
 * many sessions are guarded in *guarded.
 * memsess_sync_unhold() lets them go when the flip does not happen (so
 * does memsess_sync_destroy()). */
int memsess_sync_hold_hot(memsess_sync_t *sync, int *guarded);
void memsess_sync_unhold(memsess_sync_t *sync);
/* What the caller knows of the requests that had the old list: settled,
 * whether every one of them has ended (then it stays so); open, called
 * once after the first look that came after that, when what they wrote
 * was brought over (the caller's gate, memsess_gate.c).  Without it, the
 * requests are taken to be done 50 ms after the flip. */
typedef struct {
    int  (*settled)(void *baton);
    void (*open)(void *baton);
    /* every session requests used since the sync began, given to each
     * (may be NULL): brought over before open */
    void (*recent)(void *baton,
                   void (*each)(void *ctx, const char *id, apr_size_t len),
                   void *ctx);
    /* the requests of this instance that began before the flip and still
     * run, each with the session its Cookie names and a token (may be
     * NULL); still: whether that request still runs.  What such a request
     * leaves at the old authority is the session's latest: right at the
     * flip, the new place's copy is read (its cas), and as the request
     * ends (5 s at most), if it is unchanged (neither the holder's guard nor a request of the new
     * list wrote it since), the old authority's is brought over, under the
     * session's lock in the new list; gone there (a logout), gone at the
     * new place too.  The holder's guard does as much for the active
     * sessions, but dies with its process */
    void (*inflight)(void *baton,
                     void (*each)(void *ctx, const char *id, apr_size_t len,
                                  int worker, apr_uint64_t token),
                     void *ctx);
    int  (*still)(void *baton, int worker, apr_uint64_t token);
    void  *baton;
    /* when requests stop waiting whatever the gate (memsess_mono_now();
     * 0: never): past it, a request of the new list may have deleted a
     * session (a logout), and what recent() gives is no longer added */
    apr_time_t until;
} memsess_flip_wait_t;
/* Right after the flip: a held lock is kept until the requests that got
 * the old list are done with the session (settled, their lock free), what
 * they wrote is brought over (cas) and the lock let go; the user's next
 * request waits on it (php-memcached tries again 150 ms later) instead of
 * reading the copy from before that write.  Then, and for a session whose
 * lock both lists place on one server, it is brought over under its lock
 * each time a request lets that go.  A lock is let go within 250 ms of
 * memsess_sync_hold_hot() (or of settling, when later); the old places are
 * watched until 600 ms after the flip (the other instances of a group
 * publish up to 250 ms after it).  wait may be NULL. */
apr_status_t memsess_sync_flipped(memsess_sync_t *sync,
                                  const memsess_flip_wait_t *wait, char *err,
                                  apr_size_t errlen);
/* What memsess_sync_flipped() does with one guarded session at a look
 * (pure): held, ours at the new place; taken, its lock at the old place
 * (a request is at it); seen, taken there or the session written at its
 * old authority since the last copy; checked, copied once; settled, the
 * requests that had the old list have their lock by now; last, time is
 * up. */
typedef enum {
    MEMSESS_FLIP_WAIT = 0,  /* look again */
    MEMSESS_FLIP_COPY,      /* bring it over, let our lock go */
    MEMSESS_FLIP_TAKE,      /* take the lock, bring it over, let it go */
    MEMSESS_FLIP_DONE       /* nothing more: let go of ours if held */
} memsess_flip_e;

memsess_flip_e memsess_sync_flip_step(int held, int taken, int seen,
                                      int checked, int settled, int last);
const memsess_sync_stats_t *memsess_sync_stats(const memsess_sync_t *sync);
/* For a NOTICE: "; N keys written meanwhile read from the logs of writes
 * of M servers (L passes listed instead)", or "" when no log was read. */
const char *memsess_sync_feed_text(apr_pool_t *p,
                                   const memsess_sync_stats_t *st);
void memsess_sync_destroy(memsess_sync_t *sync);
/* Whether memsess_sync_before() ran a delta sync, and why not when it was
 * asked for one (NULL: a delta ran, or none was asked for). */
int memsess_sync_delta(const memsess_sync_t *sync);
const char *memsess_sync_mode(const memsess_sync_t *sync);

/* What a rejoin knows of a returning server's outage (memsess_rejoin.c
 * gathers it from the health table and its own rounds). */
typedef struct {
    apr_int64_t down_pid, down_started;  /* the process that went down */
    apr_int64_t proc_pid, proc_started;  /* the one probes reach now */
    apr_time_t  down_since;  /* the outage's first failed probe */
    apr_time_t  last_live;   /* this checker last saw it published: 0 never */
    int         unfinished;  /* an earlier sync of it was not published */
    /* a sync of it stopped before it was published (slot resume_*): when
     * it began (0: none) and the process it wrote to */
    apr_time_t  resume_since;
    apr_int64_t resume_pid, resume_started;
    int         resumed;     /* out: the delta resumes that sync */
} memsess_rejoin_facts_t;

/* Whether two memcached processes named by their "stats" pid and start
 * (time - uptime, read a tick apart: a second either way) are one (pure). */
int memsess_sync_same_process(apr_int64_t pid, apr_int64_t started,
                              apr_int64_t pid2, apr_int64_t started2);

/* A delta sync or a full one (pure): NULL and *since (our clock: the
 * outage's start, less margin) when the server returns as the same
 * process with nothing uncertain, or (f->resumed set) as another process
 * that a sync of it began to fill and did not publish (restarted empty, a
 * sync stopped by a graceful: it holds nothing from before the outage,
 * and what it lacks is copied); else why it gets a full sync. */
const char *memsess_sync_delta_since(memsess_rejoin_facts_t *f,
                                     apr_interval_time_t margin,
                                     apr_time_t now, apr_time_t *since);
/* `since` (our clock) on a server's clock, in its seconds: their_now is
 * its "stats" time read at our_now (pure). */
apr_int64_t memsess_sync_their_secs(apr_time_t since, apr_time_t our_now,
                                    apr_int64_t their_now);

/* How many sessions the engine brought over at the gate from requests'
 * own record (memsess_gate_recent). */
int memsess_sync_recent_brought(const memsess_sync_t *sync);
/* How many the requests running at the flip left were brought over. */
int memsess_sync_late_brought(const memsess_sync_t *sync);

#endif /* MEMSESS_SYNC_H */
