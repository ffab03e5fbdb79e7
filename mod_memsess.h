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

/*
 * mod_memsess: memcached session pools for PHP, health-checked once per
 * Apache instance and injected per request.
 *
 * Who owns what:
 *   memsess_pool.c    parse "host[:port[:weight]]" lines and times, build
 *                     a save_path (APR only)
 *   memsess_table.c   the shared health table: layout, seqlock, state machine
 *                     (APR only, works on any memory block)
 *   memsess_check.c   the mod_watchdog checker and its libmemcached probes
 *   memsess_verdicts.c the verdict records instances share: key, parse,
 *                     merge, format (pure)
 *   memsess_exchange.c sharing verdicts with the other Apache instances of
 *                     the group through the pool's servers (libmemcached)
 *   memsess_rejoin.c  the checker's rejoin syncs: a thread each, the flip
 *   memsess_rebalance_job.c  the checker's rebalance of changed pools: its
 *                     thread, the flip, the retry
 *   memsess_sync.c    the rejoin sync and the rebalance (one engine, given
 *                     targets): where php-memcached places a key
 *                     (libmemcached), metadump lines, the copy passes
 *                     (APR and libmemcached only)
 *   memsess_rebalance.c  pool changes at graceful: which lists or
 *                     placements changed, what is published and injected
 *                     until the rebalance has run
 *   memsess_state.c   the state file's text: the placement in force of
 *                     every pool (pure)
 *   memsess_adopt.c   what a start finds in force: the state file, PHP's
 *                     own placement (php.ini through mod_php)
 *   memsess_inject.c  what a request gets: mod_php settings, php-fpm, env
 *   memsess_credentials.c  MemsessCredentials: the password file, quoting
 *                     for php-fpm (APR only)
 *   memsess_status.c  the memsess-status handler
 *   memsess_release.c every child shuts down its sockets to a server marked
 *                     down (matching of addresses: pure)
 *   memsess_watch.c   the checker notices a server's death as it happens
 *   memsess_job.c     the record of a job run once for the group (pure)
 *   memsess_joblock.c that record on a server: take, wait, follow, take over
 *   memsess_connect.c the checker's libmemcached handles
 *   memsess_lateness.c whether the checker itself was late (CPU pressure,
 *                     its own run-queue wait): pure judgement, /proc reads
 *   memsess_release_helper.c  the process that keeps CAP_NET_ADMIN only
 *                     and destroys every process's sockets to a server
 *                     marked down (sock_diag); its requests (pure)
 *   memsess_flight.c  requests in flight: which began before a flip (any
 *                     memory block)
 *   mod_memsess.c     directives, configuration, hooks, shared memory life
 *
 * Log tags: MEMSESSnnnn, one per call site, never reused.
 * The next free number is MEMSESS0027.  Ranges reserved by capability:
 * MEMSESS0170-0189 persistence (memsess_persist_db.c, mod_memsess.c:
 * 0170-0180 used),
 * MEMSESS0030-0049 the rejoin sync (0030-0036 one instance, 0037-0042 one
 * sync for the group, 0043-0044 the flip's guard, 0045-0046 no session
 * found among many keys), 0050-0069 the failure
 * window (memsess_release.c: 0050, 0051; memsess_watch.c: 0052;
 * memsess_release_helper.c: 0053-0062), 0070-0089
 * credentials, 0090-0099 and 0150-0159 shared verdicts and what the group
 * does once (0150-0159 used: 0158, 0159 an instance that takes a pool over
 * in a group), 0130-0149 pool changes (the rebalance,
 * 0130-0142; taking a pool over and the state file, 0143-0149: all used),
 * 0160-0169 the group's clocks (memsess_exchange.c: 0160 used).
 */

#ifndef MOD_MEMSESS_H
#define MOD_MEMSESS_H

/* The module's version; debian/changelog must agree (debian/rules checks). */
#define MEMSESS_VERSION "0.1.0"

#include "apr.h"
#include "apr_pools.h"
#include "apr_tables.h"
#include "apr_time.h"
#include "apr_network_io.h"

/* Sizes of fixed fields in the shared table. */
#define MEMSESS_ADDR_MAX    (272)   /* "[" 255-char host "]:" 5-digit port */
#define MEMSESS_ERROR_MAX   (128)

/* The most distinct servers one Apache instance checks.  A larger
 * configuration is refused at startup. */
#define MEMSESS_MAX_SERVERS (1024)

/* Probes run on at most this many threads at once: that many servers may
 * hang in one round without delaying the verdict on any other. */
#define MEMSESS_PROBE_THREADS_MAX (64)

#define MEMSESS_DEFAULT_PORT (11211)

/* An instance's name ("web1.example:80"), NUL included, and the list of
 * other instances that see a server down, as the status page shows it. */
#define MEMSESS_INSTANCE_MAX  (128)
#define MEMSESS_REPORTERS_MAX (256)

/* ------------------------------------------------------------------ */
/* Pools (memsess_pool.c)                                             */

typedef enum {
    MEMSESS_FORMAT_MEMCACHED = 0,  /* php-memcached: "h:p[:w],h:p"     */
    MEMSESS_FORMAT_MEMCACHE  = 1   /* pecl-memcache: "tcp://h:p?weight=w" */
} memsess_format_e;

typedef struct {
    const char *host;     /* as written, without IPv6 brackets */
    apr_port_t  port;
    int         weight;   /* 0 when the configuration gave none */
    int         ipv6;     /* host is an IPv6 literal */
    const char *addr;     /* "host:port" or "[v6]:port": the key everywhere */
    int         slot;     /* index in the shared table, set at post_config */
} memsess_server_t;

typedef struct {
    apr_array_header_t *servers;  /* of memsess_server_t, in config order */
} memsess_pool_t;

/* Parses one "host[:port[:weight]]" token.  Returns NULL, or an error
 * message naming the token (without the directive name). */
const char *memsess_server_parse(apr_pool_t *p, const char *token,
                                 memsess_server_t *srv);

/* Parses a list of tokens into *pool: a new pool when *pool is NULL, else
 * appended to it (a list may span several directives).  Returns NULL, or
 * an error message (without the directive name). */
const char *memsess_pool_parse(apr_pool_t *p, int argc, char *const argv[],
                               memsess_pool_t **pool);

/* Splits one MemsessServers line into words with getword (httpd's
 * ap_getword_conf has this type), every one to the end of the line, and
 * parses them as memsess_pool_parse does. */
typedef char *(*memsess_getword_f)(apr_pool_t *p, const char **line);
const char *memsess_pool_parse_line(apr_pool_t *p, const char *line,
                                    memsess_getword_f getword,
                                    memsess_pool_t **pool);

/* Parses a time: exactly N, Nms, Ns, Nm or Nh (a bare number is seconds),
 * N decimal digits.  APR_SUCCESS, or APR_EINVAL for anything else.  A time
 * too long for apr_interval_time_t reads as APR_INT64_MAX, so that every
 * upper bound refuses it and no caller's arithmetic overflows. */
apr_status_t memsess_time_parse(const char *arg, apr_interval_time_t *t);

/* The longest interval and timeout: every sum of times the checker forms
 * stays far from overflowing, and a round runs at least once an hour. */
#define MEMSESS_TIME_MAX    apr_time_from_sec(3600)

/* What becomes of a down server in the injected list. */
typedef enum {
    MEMSESS_FAILOVER_DROP      = 0,  /* left out (consistent hashing) */
    MEMSESS_FAILOVER_SUCCESSOR = 1   /* its place goes to the next live
                                      * server: positions are kept */
} memsess_failover_e;

/* Writes the save_path of pool, NUL-terminated, into buf of size bytes: in
 * config order, every server when live is NULL, otherwise those whose
 * live[i] is non-zero, a down one left out or, with SUCCESSOR, replaced by
 * the next live server after it (cyclically; live must then have one).
 * Returns the length it needs without the NUL: when that is >= size the
 * output was cut. */
apr_size_t memsess_path_build(char *buf, apr_size_t size,
                              const memsess_pool_t *pool,
                              const unsigned char *live,
                              memsess_format_e format,
                              memsess_failover_e failover);

/* The longest save_path memsess_path_build can give for pool, whatever is
 * live, without the NUL. */
apr_size_t memsess_path_max(const memsess_pool_t *pool,
                            memsess_format_e format,
                            memsess_failover_e failover);

/* ------------------------------------------------------------------ */
/* SASL credentials (memsess_credentials.c)                           */

#define MEMSESS_USERNAME_MAX 255
#define MEMSESS_PASSWORD_MAX 1024

/* A pool's MemsessCredentials, read at every configuration read by the
 * parent (as root) and read-only afterwards.  The password goes to the
 * probes and to PHP only: never into a log line, a status page or a
 * MEMSESS_* variable.  The pool it lives in wipes it when it goes. */
typedef struct {
    const char *username;
    const char *password;
    const char *file;           /* the password's file, for messages */
    const char *username_ini;   /* both double-quoted and escaped for    */
    const char *password_ini;   /* php-fpm's INI parser (PHP_ADMIN_VALUE) */
} memsess_credentials_t;

/* Checks a SASL user name: 1 to MEMSESS_USERNAME_MAX bytes, no control
 * character.  NULL, or an error message naming it. */
const char *memsess_username_check(apr_pool_t *p, const char *username);

/* The password in a password file's bytes: one line, its newline (\n or
 * \r\n) optional, 1 to MEMSESS_PASSWORD_MAX bytes, no control character
 * but tab.  Sets *pwlen and returns NULL, or returns what is wrong with
 * the file (never any of its bytes). */
const char *memsess_password_parse(const char *buf, apr_size_t len,
                                   apr_size_t *pwlen);

/* Reads username's password from file into a new *cred allocated from p.
 * NULL, or an error message naming the file (without the directive). */
const char *memsess_credentials_read(apr_pool_t *p, const char *username,
                                     const char *file,
                                     memsess_credentials_t **cred);

/* s in double quotes with \, " and $ escaped: what PHP's INI parser (as
 * php-fpm runs it on PHP_ADMIN_VALUE) reads back as exactly s. */
char *memsess_ini_quote(apr_pool_t *p, const char *s);

/* Whether two pools authenticate the same way (NULL: no credentials). */
int memsess_credentials_same(const memsess_credentials_t *a,
                             const memsess_credentials_t *b);

/* "user \"u\" (password from FILE)" or "no MemsessCredentials", for
 * messages. */
const char *memsess_credentials_describe(apr_pool_t *p,
                                         const memsess_credentials_t *c);

/* ------------------------------------------------------------------ */
/* The checker's own lateness (memsess_lateness.c)                    */

/* Two kernel counters at one moment; -1: unknown on this machine. */
typedef struct {
    apr_time_t  at;
    apr_int64_t stall_us;   /* /proc/pressure/cpu "some total" */
    apr_int64_t wait_us;    /* this thread's run-queue wait */
} memsess_late_sample_t;

/* Samples both counters (and the time) for the calling thread. */
void memsess_late_sample(memsess_late_sample_t *s);
/* Whether the window between two samples of one thread was late: the
 * machine's tasks, or the thread itself, waited for a CPU a quarter of it
 * or more.  When it was, why says so in a few words. */
int memsess_late_judge(const memsess_late_sample_t *before,
                       const memsess_late_sample_t *after, char *why,
                       apr_size_t whylen);
/* Which counters this machine has, in words; NULL for none. */
const char *memsess_late_sources(void);
/* The parsers (pure, fuzzed): 1 and the counter, or 0. */
int memsess_late_parse_psi(const char *buf, apr_size_t len,
                           apr_int64_t *total_us);
int memsess_late_parse_schedstat(const char *buf, apr_size_t len,
                                 apr_int64_t *wait_us);

/* ------------------------------------------------------------------ */
/* Requests in flight (memsess_flight.c)                              */

/* Which requests read the lists before a flip: one entry per Apache
 * worker with the flip epoch its request began in, in a shared segment
 * that outlives gracefuls.  Works on any memory block. */
typedef struct memsess_flight_t memsess_flight_t;

apr_size_t memsess_flight_size(int nworkers);
memsess_flight_t *memsess_flight_init(void *base, apr_size_t size,
                                      int nworkers);
/* A segment of this version, or NULL. */
memsess_flight_t *memsess_flight_attach(void *base, apr_size_t size);
int memsess_flight_nworkers(const memsess_flight_t *f);
/* A request begins on worker i, before it reads the table: what to give
 * back to memsess_flight_leave() as it ends (0: not counted). */
apr_uint64_t memsess_flight_enter(memsess_flight_t *f, int i,
                                  apr_uint32_t pid);
void memsess_flight_leave(memsess_flight_t *f, int i, apr_uint64_t value);
/* The sessions requests used, as they ended: the last MEMSESS_RECENT_MAX
 * ids, each with the time it was noted.  A sync brings over, before its
 * flip's gate opens, those noted since it began (a session born after its
 * last listing is in no list of it).  memsess_flight_recent() calls each
 * for every one noted at `since` or later; how many. */
#define MEMSESS_RECENT_MAX     (4096)
#define MEMSESS_SESSION_ID_MAX (128)   /* PHP's are 26-256 characters;
                                        * longer ones are not noted */
void memsess_flight_note(memsess_flight_t *f, const char *id,
                         apr_size_t len);
int memsess_flight_recent(const memsess_flight_t *f, apr_time_t since,
                          void (*each)(void *baton, const char *id,
                                       apr_size_t len),
                          void *baton);
/* The cookie of PHP's session id (session.name, its default). */
#define MEMSESS_SESSION_COOKIE "PHPSESSID"

/* A request that meets a flip's gate waits this long at most, looking
 * again every MEMSESS_GATE_POLL (memsess_inject.c). */
#define MEMSESS_GATE_MAX  apr_time_from_msec(400)
#define MEMSESS_GATE_POLL apr_time_from_msec(1)
/* After a flip was published: the epoch it opens. */
apr_uint64_t memsess_flight_flip(memsess_flight_t *f);
/* How many requests that began before that epoch still run; alive (may
 * be NULL) says whether a process still exists. */
int memsess_flight_before(const memsess_flight_t *f, apr_uint64_t epoch,
                          int (*alive)(apr_uint32_t pid));

/* ------------------------------------------------------------------ */
/* The shared health table (memsess_table.c)                          */

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
                                    * (apr_time_t; 0: none) */
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
    apr_uint32_t sync_mode;        /* of its last published sync:
                                    * MEMSESS_SYNC_* */
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
    apr_uint32_t rebalance;         /* memsess_rebalance_e */
    apr_int64_t  gate;              /* a flip's: requests that read the
                                     * list wait until then (apr_time_t;
                                     * 0: open) */
    apr_uint32_t rebalance_runs;    /* started, failed ones included */
    apr_int64_t  rebalance_started; /* unix seconds of the last, 0 = never */
    apr_uint64_t rebalance_examined;
    apr_uint64_t rebalance_copied;
    apr_uint64_t rebalance_deleted;
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
const char *memsess_persist_role_name(apr_uint32_t role);

typedef struct memsess_table memsess_table_t;

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
 * snapshot (not NONE: the text is built from the view's `before`). */
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
                                      int failover, int ketama, int format);
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
} memsess_peer_clock_t;
void memsess_table_set_peers(memsess_table_t *t,
                             const memsess_peer_clock_t *peers, int n);
/* Copies up to max of them into out; returns how many (0 when a copy
 * cannot be had). */
int memsess_table_peers(const memsess_table_t *t, memsess_peer_clock_t *out,
                        int max);
/* Its clock minus ours in ms (and *error, +- that), when measured to
 * within error_max ms; else 0 (and *error 0). */
apr_int64_t memsess_table_peer_skew(const memsess_table_t *t,
                                    const char *name, apr_int64_t error_max,
                                    apr_int64_t *error);
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
 * ran its sync died: it goes DOWN, and its next good probes restart it.
 * Returns how many slots it changed.  The caller is the writer. */
int memsess_table_reset_syncing(memsess_table_t *t);

/* Whether a state counts as live for injection. */
#define MEMSESS_IS_LIVE(state) \
    ((state) != MEMSESS_DOWN && (state) != MEMSESS_SYNCING)

/* Whether a server gets sessions: live by our own probes, and seen down by
 * no other instance of the group.  What is published and shown. */
#define MEMSESS_SLOT_LIVE(sl) (MEMSESS_IS_LIVE((sl)->state) && !(sl)->peer_down)

/* ------------------------------------------------------------------ */
/* Verdict records shared by the instances of a group                 */
/* (memsess_verdicts.c: pure; memsess_exchange.c does the I/O)        */

#define MEMSESS_VERDICTS_VERSION   (1)
#define MEMSESS_VERDICTS_MAX       (128)   /* lines in one record: the
                                           * instances of a group */
#define MEMSESS_VERDICT_RECORD_MAX (32768) /* bytes of a record: a full one
                                           * of members needs under 26,000 */
#define MEMSESS_VERDICT_KEY_MAX    (250)   /* memcached's limit */
#define MEMSESS_GROUP_MAX          (64)    /* MemsessGroup, NUL included */
/* A line reported more than SKEW_MAX ahead of our clock, or expiring more
 * than that plus TTL_MAX ahead, or meant to hold longer than TTL_MAX, is
 * from the future (or forged): dropped. */
#define MEMSESS_VERDICT_SKEW_MAX   (30)
#define MEMSESS_VERDICT_TTL_MAX    (3600)

typedef struct {
    char         name[MEMSESS_INSTANCE_MAX];
    apr_int64_t  reported;   /* unix seconds: its last refresh */
    apr_int64_t  expires;    /* unix seconds: ignored after that */
    apr_uint64_t configured; /* members: fingerprint of its pools as
                              * configured (memsess_pools_fingerprint) */
    apr_uint64_t in_force;   /* members: ... as its requests get them */
    apr_uint64_t nonce;      /* members: its start's (0: none given) */
    apr_int64_t  wrote_ms;   /* members: its clock as it wrote this copy,
                              * unix ms (0: not given): its skew
                              * (memsess_clocks.c) */
} memsess_verdict_t;

/* A record of lines: verdicts ("memsess-verdicts 1", one per instance that
 * sees a server down) or members ("memsess-members 1", one per instance
 * of the group, with the fingerprints of its pools: pool changes are
 * rebalanced once every instance has the same). */
typedef struct {
    int               n;
    int               future;   /* lines dropped as from the future */
    int               members;  /* a members record */
    memsess_verdict_t v[MEMSESS_VERDICTS_MAX];
} memsess_verdicts_t;

/* Whether name is 1..maxlen-1 characters of [A-Za-z0-9._:[]-]: an
 * instance name (MemsessInstance) or, with MEMSESS_GROUP_MAX, a group. */
int memsess_instance_name_valid(const char *name, apr_size_t maxlen);

/* The key of server addr's record of a kind ("down": verdicts, "job": the
 * rejoin sync's job) in group: "memsess:v1:GROUP:KIND:ADDR", the address
 * hashed when the key would pass MEMSESS_VERDICT_KEY_MAX.  Returns its
 * length; size must be more than MEMSESS_VERDICT_KEY_MAX. */
apr_size_t memsess_record_key(char *buf, apr_size_t size, const char *group,
                              const char *kind, const char *addr);

/* FNV-1a, 64 bits, of a string; _more goes on from h (start with
 * MEMSESS_FNV1A_INIT): names records, groups and lists. */
#define MEMSESS_FNV1A_INIT APR_UINT64_C(14695981039346656037)
apr_uint64_t memsess_fnv1a(const char *s);
apr_uint64_t memsess_fnv1a_more(apr_uint64_t h, const char *s);

/* Parses a record read from memcached (len bytes, not NUL-terminated).
 * Lines that lapsed before now by more than any clock apart we allow for
 * (MEMSESS_VERDICT_SKEW_MAX) are left out, lines from the future too
 * (counted in out->future); whether the rest has lapsed is judged by our
 * own clock (memsess_lapse_note).  Returns NULL, or why the whole record is
 * refused (out->n is then 0). */
const char *memsess_verdicts_parse(const char *buf, apr_size_t len,
                                   apr_int64_t now, memsess_verdicts_t *out);

/* Puts self's line (reported now, expiring then) in when down, last, and
 * takes every line of that name out when not.  A full record makes room by
 * dropping the line that lapses first.  Returns whether the record changed
 * (always, when down). */
int memsess_verdicts_put(memsess_verdicts_t *vs, const char *self, int down,
                         apr_int64_t now, apr_int64_t expires);

/* Puts self's member line in (a members record): as put, with its two
 * fingerprints and the nonce of its start (a line of that name with
 * another nonce is a twin's, or of a start of ours before). */
void memsess_members_put(memsess_verdicts_t *vs, const char *self,
                         apr_int64_t now, apr_int64_t expires,
                         apr_uint64_t configured, apr_uint64_t in_force,
                         apr_uint64_t nonce, apr_int64_t wrote_ms);

/* Other instances' clocks (memsess_clocks.c: pure).  A line of another
 * instance lapses when its `reported` has not grown for its time to live
 * by our monotonic clock; its skew (its clock minus ours) is bounded by
 * the times of the reads between which its member line changed. */
typedef struct {
    apr_int64_t reported;   /* the newest read (its seconds) */
    apr_time_t  grew;       /* our monotonic time it last grew; 0: unseen */
} memsess_lapse_t;

/* Our monotonic clock (CLOCK_MONOTONIC): what lapses by our own time,
 * whatever the wall clock says or does (a step, a faked time). */
apr_time_t memsess_mono_now(void);

/* Notes a copy of a line read at our monotonic time mono; its writer
 * meant it to hold ttl seconds.  Returns whether it is live. */
int memsess_lapse_note(memsess_lapse_t *l, apr_int64_t reported,
                       apr_int64_t ttl, apr_time_t mono);

typedef struct {
    apr_int64_t wrote_ms;   /* what the copy on one server said, last read */
    apr_int64_t read_ms;    /* our clock at that read */
} memsess_skew_seen_t;

typedef struct {
    apr_int64_t lo, hi;     /* its clock minus ours lies in [lo, hi] ms */
    apr_int64_t at_ms;      /* our clock when last narrowed */
    apr_uint32_t steps;     /* readings outside what was known */
    int          known;
} memsess_skew_t;

/* Notes a member line's wrote_ms read on one server (s: that server's
 * last reading) at our clock read_ms. */
void memsess_skew_note(memsess_skew_t *k, memsess_skew_seen_t *s,
                       apr_int64_t wrote_ms, apr_int64_t read_ms);
/* The middle of what is known (0 when nothing is), and half its width
 * (-1 when nothing is). */
apr_int64_t memsess_skew_ms(const memsess_skew_t *k);
apr_int64_t memsess_skew_error_ms(const memsess_skew_t *k);

/* The rejoin sync's job record (memsess_job.c: pure; memsess_rejoin.c
 * does the I/O): one instance of a group syncs a returning server for
 * all. */
#define MEMSESS_JOB_RECORD_MAX (256)

typedef struct {
    char         holder[MEMSESS_INSTANCE_MAX];
    int          done;       /* 0: syncing; 1: synced and published */
    apr_int64_t  since;      /* unix seconds */
    apr_int64_t  expires;    /* unix seconds: taken over after that */
    apr_uint64_t lists;      /* fingerprint of the lists synced */
    apr_int64_t  flip_ms;    /* done: when all publish it (unix ms) */
} memsess_job_t;

/* Parses a record read from memcached (len bytes).  Returns NULL, or why
 * it is refused (not a record, another version, from the future). */
const char *memsess_job_parse(const char *buf, apr_size_t len,
                              apr_int64_t now, memsess_job_t *out);

/* Formats job into buf; returns its length. */
apr_size_t memsess_job_format(char *buf, apr_size_t size,
                              const memsess_job_t *job);

typedef enum {
    MEMSESS_JOB_TAKE,      /* no record: add ours */
    MEMSESS_JOB_REPLACE,   /* one we may replace (unreadable, ours from a
                            * previous checker, or lapsed): cas ours over
                            * it */
    MEMSESS_JOB_WAIT,      /* another instance syncs: wait for it */
    MEMSESS_JOB_FOLLOW     /* another instance synced it: publish the
                            * server with it */
} memsess_job_step_e;

/* When a follower publishes a job done at flip_ms (the holder's clock,
 * ms), in its own clock: within what the holder's clock's lead (skew, +-
 * error, ms) allows and within what its own reads saw (the record not done
 * when asked at asked_ms, done when seen at seen_ms: it was written between,
 * flip_ms then set delay_ms ahead; asked_ms 0: never seen not done), at the
 * latest of both; what was seen when the two disagree (a clock stepped). */
apr_int64_t memsess_flip_follow(apr_int64_t flip_ms, apr_int64_t skew,
                                apr_int64_t error, apr_int64_t asked_ms,
                                apr_int64_t seen_ms, apr_int64_t delay_ms);

/* What self does next, given the record read (rec NULL when unreadable;
 * exists 0 when there is none) and the fingerprint of its own lists.  A
 * job done that began before not_before (unix seconds, by our clock: the
 * outage or the change this job is for, less a margin) was another
 * outage's or change's: taken over, never followed. */
memsess_job_step_e memsess_job_next(const memsess_job_t *rec, int exists,
                                    const char *self, apr_uint64_t lists,
                                    apr_int64_t now, apr_int64_t not_before);
/* The margin of not_before: what two clocks of one group may differ by
 * without an earlier job's record passing for this one's. */
#define MEMSESS_JOB_SKEW (2)

/* The group instances join when no MemsessGroup is given: "h" and a hash
 * of the distinct names (mod_memsess.c: the pools' servers and the vhosts
 * that have one), whatever their order. */
const char *memsess_group_derive(apr_pool_t *p, const char *const *names,
                                 int n);

/* Writes the record, NUL-terminated, into buf; returns its length (size
 * when it did not fit: a full record needs MEMSESS_VERDICT_RECORD_MAX). */
apr_size_t memsess_verdicts_format(char *buf, apr_size_t size,
                                   const memsess_verdicts_t *vs);

/* Counts the lines of instances other than self (the caller has taken out
 * those that lapsed by its clock; those lapsed long ago by any are left
 * out here too), and appends their names to who (a NUL-terminated ", "-separated list, each
 * name once, names that do not fit left out). */
int memsess_verdicts_others(const memsess_verdicts_t *vs, const char *self,
                            apr_int64_t now, char *who, apr_size_t whosize);

/* The state file (memsess_state.c: its text, pure; memsess_adopt.c: the
 * file).  One pool's placement in force: what a new generation compares
 * its configuration with, kept where a cold start finds it. */
typedef struct {
    const char *name;      /* the pool's (its first vhost's) name */
    const char *served;    /* every server, config order, "h:p:w,h:p" */
    int         replicas;  /* sess_number_of_replicas */
    int         failover;  /* memsess_failover_e */
    int         ketama;    /* sess_consistent_hash */
    int         format;    /* memsess_format_e */
} memsess_placed_t;

#define MEMSESS_STATE_MAGIC "memsess-state 1"

/* The file's text: the magic line, then one line per pool (pools whose
 * name or servers hold a tab or a line end are left out). */
char *memsess_state_format(apr_pool_t *p, const memsess_placed_t *placed,
                           int n);
/* Pushes every pool that reads back onto out (memsess_placed_t; its
 * servers not yet parsed) and counts the lines that do not in *bad (a
 * name twice counts, and the second is left out).  Returns NULL, or why
 * the text is no state file at all. */
const char *memsess_state_parse(apr_pool_t *p, const char *text,
                                apr_size_t len, apr_array_header_t *out,
                                int *bad);

/* MemsessPersist (memsess_persist.c, memsess_persist_db.c) */
typedef enum {
    MEMSESS_PERSIST_OFF = 0,
    MEMSESS_PERSIST_DBD = 1    /* written behind through mod_dbd */
} memsess_persist_e;

typedef enum {
    MEMSESS_ALLDOWN_OPEN  = 0,   /* inject the full configured list */
    MEMSESS_ALLDOWN_503   = 1,   /* answer 503 with Retry-After */
    MEMSESS_ALLDOWN_FILES = 2    /* PHP's files handler in a local dir */
} memsess_alldown_e;

/* What one vhost publishes and injects (several vhosts share one when they
 * share a configuration).  Every setting is resolved, defaults included,
 * once at post_config (mod_memsess.c); read-only afterwards. */
typedef struct memsess_view {
    const memsess_pool_t *pool;
    memsess_format_e      format;
    memsess_failover_e    failover;
    int                   replicas;      /* sess_number_of_replicas */
    memsess_alldown_e     alldown;
    const char           *alldown_dir;   /* MEMSESS_ALLDOWN_FILES: the dir */
    const char           *name;          /* "host:port" of its first vhost */
    apr_uint32_t          capacity;      /* of its longest path, NUL too */
    const char           *full_path;     /* every server, in config order */
    const char          **live_text;     /* [k] = "k/n", for MEMSESS_LIVE */
    const memsess_credentials_t *credentials;  /* NULL: none */
    int                   ketama;        /* sess_consistent_hash */
    /* where the pool's sessions are when nothing recorded its placement
     * (a first start): MemsessAdopt resolved (NULL: MemsessAdopt none;
     * replicas and ketama -1: php.ini's, read at post_config) */
    const memsess_placed_t *adopt;
    /* a before: what its placement was read from, for the log; cold: not
     * from a generation that ran until now (the state file of a stop and
     * start, or PHP's placement taken over: MemsessAdopt), so a group may
     * have moved on meanwhile */
    const char           *source;
    int                   cold;
    /* MemsessServers changed at graceful: the pool the previous
     * generation served, published until the rebalance has moved every
     * session where this one places them (NULL: none) */
    const struct memsess_view *before;
    /* MemsessPersist, resolved: off, or written behind through mod_dbd of
     * dbd_server (the server_rec of its first vhost: its DBDriver and
     * DBDParams) every persist_interval, at most persist_rate sessions a
     * second (0: unbounded) */
    memsess_persist_e     persist;
    apr_interval_time_t   persist_interval;
    int                   persist_rate;
    const void           *dbd_server;
} memsess_view_t;

/* The defaults that depend on others (SPEC.md): replicas on the pool's
 * size, failover on replicas and format.  -1 = not configured. */
int memsess_default_replicas(int replicas, int nservers);
memsess_failover_e memsess_default_failover(int failover, int replicas,
                                            memsess_format_e format);

/* What a down server that comes back gets before it takes traffic. */
typedef enum {
    MEMSESS_REJOIN_KEEP  = 0,   /* used as it is */
    MEMSESS_REJOIN_FLUSH = 1,   /* emptied by the probe that brings it back */
    MEMSESS_REJOIN_SYNC  = 2    /* synced before it is published (the
                                 * default): memsess_sync.c */
} memsess_rejoin_e;

/* The module-wide settings, resolved at post_config (the main server's
 * directives or their defaults); read-only afterwards. */
typedef struct {
    apr_interval_time_t interval;
    apr_interval_time_t timeout;
    int                 fail_threshold;
    int                 pass_threshold;
    memsess_rejoin_e    rejoin;
    /* shared verdicts (memsess_exchange.c) */
    int                 share;      /* MemsessShareVerdicts: 0 Off, 1 On */
    const char         *instance;   /* MemsessInstance, or hostname:port */
    const char         *group;      /* MemsessGroup, or derived from the
                                     * pools and the vhost names */
    int                 group_derived;
    int                 release_helper;   /* MemsessReleaseHelper: 0, 1 */
    const char         *state_dir;  /* MemsessStateDir; NULL: none */
} memsess_global_t;

/* MemsessAdopt: where a pool's sessions are when nothing recorded it. */
typedef enum {
    MEMSESS_ADOPT_NONE = 0,   /* nowhere: published at once */
    MEMSESS_ADOPT_PHP  = 1,   /* where PHP put them over the same servers,
                               * with php.ini's memcached.sess_* */
    MEMSESS_ADOPT_LIST = 2    /* where PHP put them over the list given */
} memsess_adopt_e;

/* Gates every view whose pool holds slot until `until` (a later gate
 * already there stands): requests that read one wait (memsess_inject.c),
 * MEMSESS_GATE_MAX at most.  Returns how many.  Inside the table write that
 * publishes the change. */
int memsess_table_gate_holders(memsess_table_t *t, const memsess_view_t *vdefs,
                               int nviews, int slot, apr_time_t until);
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

/* ------------------------------------------------------------------ */
/* Releasing what is caught on a down server (memsess_release.c)      */

/* A socket's peer or a server's address: IPv4 or IPv6, and a port. */
typedef struct {
    int            family;     /* AF_INET or AF_INET6; 0 = none */
    unsigned char  addr[16];   /* 4 bytes for AF_INET */
    apr_port_t     port;
    apr_uint32_t   scope;      /* IPv6 scope id, 0 = any */
} memsess_peer_t;

/* Fills peer from a struct sockaddr of salen bytes; returns 0 (and an
 * empty peer) unless it is IPv4 or IPv6.  An IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d) becomes the IPv4 one. */
int memsess_peer_from_sockaddr(memsess_peer_t *peer, const void *sa,
                               apr_size_t salen);
/* Same family, address and port (an IPv6 scope only when both give one). */
int memsess_peer_equal(const memsess_peer_t *a, const memsess_peer_t *b);
/* The index of the first of n peers in set equal to peer, or -1. */
int memsess_peer_find(const memsess_peer_t *peer, const memsess_peer_t *set,
                      int n);

/* One line of /proc/net/tcp or tcp6: the remote address, the state (2:
 * SYN_SENT) and the socket's inode.  Returns 1, or 0 for the header or a
 * line it cannot read.  A socket still connecting has no peer for
 * getpeername(): its destination is read there. */
int memsess_proc_tcp_line(const char *line, apr_size_t len,
                          memsess_peer_t *remote, int *state,
                          apr_uint64_t *inode);

/* A request to the release helper, "release <slot>[ keep <inode>...]"
 * (pure): the slot (below nslots), its keep list (at most *nkeep, set to
 * how many), or -1. */
int memsess_rh_parse(const char *msg, apr_size_t len, int nslots,
                     apr_uint64_t *keep, int *nkeep);
/* Asks the kernel (sock_diag) for the TCP sockets of family (AF_INET or
 * AF_INET6) in states (a mask of 1 << TCP_*) whose destination is exactly
 * peer, with the extensions ext (bits of INET_DIAG_*); each answer goes to
 * each until it returns 0.  Returns 0, or -1 (errno set).  (httpd builds
 * only; the release helper and every child's release use it.) */
struct nlmsghdr;
struct inet_diag_msg;
int memsess_diag_dump(int nl, const memsess_peer_t *peer, int family,
                      unsigned states, unsigned ext,
                      int (*each)(void *baton, const struct nlmsghdr *h,
                                  const struct inet_diag_msg *m),
                      void *baton);
/* The sock_diag filter for sockets whose destination is exactly peer
 * (address and port): its length in buf, or 0. */
apr_size_t memsess_rh_filter(const memsess_peer_t *peer, void *buf,
                             apr_size_t size);

/* The checker marks its probe sockets with this TCP_KEEPIDLE (seconds), so
 * that the release leaves them alone. */
#define MEMSESS_PROBE_KEEPIDLE (7213)
/* ... and, once the release helper's checker has seen them, with this
 * SO_PRIORITY (the pfifo_fast band of priority 0), which the kernel shows
 * the helper (memsess_release_helper.c). */
#define MEMSESS_PROBE_PRIORITY (4)
/* The rejoin sync (memsess_sync.c)                                   */

/* php-memcached's memcached.sess_prefix (its default, which nothing here
 * changes): libmemcached's namespace, not hashed (HASH_WITH_PREFIX_KEY
 * stays off).  Its lock of session <id> is the key "lock.<id>". */
#define MEMSESS_SESS_PREFIX "memc.sess.key."
#define MEMSESS_LOCK_PREFIX "lock."
#define MEMSESS_KEY_MAX     (250)   /* memcached's longest key */
/* A sync that lists this many keys and no session warns (MEMSESS0045):
 * PHP places its sessions elsewhere, or under another prefix. */
#define MEMSESS_NO_SESSION_LINES (10000)

/* One line of memcached's "lru_crawler metadump", parsed. */
typedef struct {
    char         key[MEMSESS_KEY_MAX + 1];  /* %-decoded, NUL-terminated */
    apr_size_t   keylen;
    apr_int64_t  exp;    /* unix seconds; -1 = never expires */
    apr_int64_t  la;     /* last access (writes, and reads now and then) */
    apr_uint64_t cas;    /* 0 when the line gives none */
} memsess_dump_item_t;

/* Parses one line (without its line end) from a metadump: returns 1 and
 * fills item, 0 for the closing "END", -1 for anything else (the caller
 * skips it).  Never reads beyond len. */
int memsess_dump_parse(const char *line, apr_size_t len,
                       memsess_dump_item_t *item);

typedef enum {
    MEMSESS_KEY_OTHER   = 0,   /* not a PHP session key */
    MEMSESS_KEY_SESSION = 1,
    MEMSESS_KEY_LOCK    = 2
} memsess_key_kind_e;

/* What a stored key is; *id gets what php-memcached hands libmemcached
 * (the key without the prefix: "<id>" or "lock.<id>"). */
memsess_key_kind_e memsess_key_kind(const char *key, apr_size_t len,
                                    const char **id, apr_size_t *idlen);

/* Where php-memcached 3.x puts keys for one session.save_path: a
 * memcached_st built as its session handler builds one (servers from
 * memcached_servers_parse, binary protocol, ketama or modula, replicas,
 * the prefix as namespace), asked with memcached_generate_hash(); the
 * replicas are the next servers in list order, as libmemcached writes
 * them. */
typedef struct memsess_place memsess_place_t;

/* NULL when libmemcached refuses the list.  Freed with pool p. */
memsess_place_t *memsess_place_create(apr_pool_t *p, const char *save_path,
                                      int replicas, int ketama);
/* Distinct servers of the list, "host:port" as libmemcached parsed them. */
int memsess_place_nservers(const memsess_place_t *pl);
const char *memsess_place_server(const memsess_place_t *pl, int i);
/* The servers (indexes above) that hold id: where reads go first, then
 * the replicas, each once.  Returns how many (at most max). */
int memsess_place_key(const memsess_place_t *pl, const char *id,
                      apr_size_t idlen, int *where, int max);

/* Which consistent hashing php-memcached uses for a view: ketama unless
 * mod_memsess injects sess_consistent_hash=0 (replicas with successor). */
int memsess_view_ketama(int replicas, memsess_failover_e failover);


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
    volatile apr_uint32_t     *stop;        /* set: stop before next key */
    void (*progress)(void *baton, const memsess_sync_stats_t *stats);
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
 * request looks for it there yet); returns how many were taken, and how
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
    void  *baton;
} memsess_flip_wait_t;
/* Right after the flip: a held lock is kept until the requests that got
 * the old list are done with the session (settled, their lock free), what
 * they wrote is brought over (cas) and the lock let go; the user's next
 * request waits on it (php-memcached tries again 150 ms later) instead of
 * reading the copy from before that write.  Then, and for a session whose
 * lock both lists place on one server, it is brought over under its lock
 * each time a request lets that go.  Returns within 250 ms of
 * memsess_sync_hold_hot() (or of settling, when later), every lock let
 * go.  wait may be NULL. */
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
} memsess_rejoin_facts_t;

/* A delta sync or a full one (pure): NULL and *since (our clock: the
 * outage's start, less margin) when the server returns as the same
 * process with nothing uncertain; else why it gets a full sync. */
const char *memsess_sync_delta_since(const memsess_rejoin_facts_t *f,
                                     apr_interval_time_t margin,
                                     apr_time_t now, apr_time_t *since);
/* `since` (our clock) on a server's clock, in its seconds: their_now is
 * its "stats" time read at our_now (pure). */
apr_int64_t memsess_sync_their_secs(apr_time_t since, apr_time_t our_now,
                                    apr_int64_t their_now);

/* A whole listing of one server ("lru_crawler metadump all"), a line at
 * a time through memsess_dump_parse(): each item to each (which returns 0
 * to stop).  APR_SUCCESS once the listing came to its end; APR_ENOTIMPL
 * when the server refuses to list; else an error, in err. */
apr_status_t memsess_dump_list(apr_pool_t *p, const char *host,
                               apr_port_t port, apr_interval_time_t timeout,
                               volatile apr_uint32_t *stop,
                               int (*each)(void *baton,
                                           const memsess_dump_item_t *it),
                               void *baton, char *err, apr_size_t errlen);

/* ------------------------------------------------------------------ */
/* Persistence (memsess_persist.c: pure; memsess_persist_db.c: mod_dbd) */

#define MEMSESS_PERSIST_INTERVAL_DEFAULT apr_time_from_sec(10)
#define MEMSESS_PERSIST_RATE_DEFAULT     (5000)   /* sessions a second */
#define MEMSESS_PERSIST_RATE_MAX         (1000000)
/* The longest value stored: memcached's default item size. */
#define MEMSESS_PERSIST_VALUE_MAX        (1024 * 1024)

/* A value as stored: base64 (RFC 4648, padded).  The text length for len
 * bytes, without the NUL. */
apr_size_t memsess_b64_len(apr_size_t len);
/* Writes the text and its NUL into out (memsess_b64_len(len) + 1 bytes). */
void memsess_b64_encode(char *out, const unsigned char *in, apr_size_t len);
/* Decodes len characters of in into out (at most outsize bytes): 1 and
 * *outlen, or 0 for anything that is not padded base64 of at most
 * outsize bytes.  Never reads beyond len. */
int memsess_b64_decode(const char *in, apr_size_t len, unsigned char *out,
                       apr_size_t outsize, apr_size_t *outlen);

/* One stored session, read back from the database (untrusted): its
 * memcached key (a php-memcached session key: MEMSESS_SESS_PREFIX and an
 * id), flags, expiry (unix seconds, 0 = never) and cas, each a column's
 * text. */
typedef struct {
    const char   *key;
    apr_size_t    keylen;
    const char   *id;       /* in key, after the prefix */
    apr_size_t    idlen;
    apr_uint32_t  flags;
    apr_int64_t   exp;
    apr_uint64_t  cas;
} memsess_row_t;

/* NULL, or why the row is refused (no value of it in the text). */
const char *memsess_row_parse(const char *key, const char *flags,
                              const char *exp, const char *cas,
                              memsess_row_t *row);

/* The expiry to restore a row with: exp when some of it is left (more than
 * a second), 0 when it never expires, -1 when it has expired. */
apr_int64_t memsess_persist_restore_exp(apr_int64_t exp, apr_int64_t now);

/* Whether a stored session is restored onto the returning server (pure):
 * where[0..n) are the servers the list about to be published places it
 * on (ids in any numbering), returning is that server's id and survivor
 * (indexed by id) says which servers kept their memory through this
 * outage and are live: a session one of them is placed on was not lost
 * with the others (it is there, or it was logged out there).  1 when the
 * returning server is one of its places and none of the others is a
 * survivor. */
int memsess_persist_restore_decide(const int *where, int n, int returning,
                                   const unsigned char *survivor);

/* The writer's lease, a row of the database (memsess_writers: pool,
 * holder, token, beat) that outlives memcached.  A grant is a token: each
 * take raises it, and every write of the holder is fenced by it (a
 * transaction that first renews "WHERE token = mine" and finds no row
 * rolls back).  Nothing rests on another instance's clock: a row is taken
 * over when its (token, beat) has not moved for ttl by the reader's own
 * clock. */
typedef struct {
    apr_int64_t token;          /* the grant held, 0: none */
    apr_int64_t seen_token;     /* another's row, as last read */
    apr_int64_t seen_beat;
    apr_time_t  seen_at;        /* when it last moved, by our clock (0:
                                   never read) */
} memsess_lease_t;

typedef enum {
    MEMSESS_LEASE_WAIT,         /* another holds it: stand by */
    MEMSESS_LEASE_CLAIM,        /* no row: insert ours (token 1) */
    MEMSESS_LEASE_RENEW,        /* ours: beat, fenced by our token */
    MEMSESS_LEASE_TAKE          /* lapsed, or a previous thread of ours:
                                   token + 1, fenced by what was read */
} memsess_lease_step_e;

/* What to do with the row read for instance me (found 0: there is none). */
memsess_lease_step_e memsess_lease_next(memsess_lease_t *l, int found,
                                        const char *holder, apr_int64_t token,
                                        apr_int64_t beat, const char *me,
                                        apr_time_t now, apr_time_t ttl);

/* Sessions written in one interval at rate a second (0: unbounded). */
apr_int64_t memsess_persist_budget(int rate, apr_interval_time_t interval);

/* What was written, by key: whether a session listed now must be written
 * again (its cas or expiry changed since it was), and which stored ones
 * were not listed in a round (logged out, expired).  Memory of its own
 * (malloc), freed by destroy. */
typedef struct memsess_track memsess_track_t;

memsess_track_t *memsess_track_create(void);
void memsess_track_destroy(memsess_track_t *t);
/* A new round of listings begins. */
void memsess_track_round(memsess_track_t *t);
/* A session listed at its authority (process: a fingerprint of that
 * memcached process): 1 when it must be written. */
int memsess_track_seen(memsess_track_t *t, const char *key, apr_size_t len,
                       apr_uint64_t cas, apr_int64_t exp,
                       apr_uint64_t process);
/* It is stored now with cas and exp (written, or read from the database
 * at start: process 0, unknown), its value's digest (memsess_persist_digest;
 * 0: unknown). */
void memsess_track_stored(memsess_track_t *t, const char *key,
                          apr_size_t len, apr_uint64_t cas, apr_int64_t exp,
                          apr_uint64_t process, apr_uint64_t digest);
/* Whether it is stored with this value (digest) and expiry already: a new
 * cas with nothing else new (a restore's add, a sync's copy) needs no
 * write, only memsess_track_stored with its cas. */
int memsess_track_unchanged(const memsess_track_t *t, const char *key,
                            apr_size_t len, apr_uint64_t digest,
                            apr_int64_t exp);
/* A stored value's digest: of its base64 text (NUL-terminated) and its
 * flags (never 0). */
apr_uint64_t memsess_persist_digest(const char *b64, apr_uint32_t flags);
/* Calls each for every stored session not listed this round, with the
 * process it was listed on; each returns 1 to forget it. */
void memsess_track_unseen(memsess_track_t *t,
                          int (*each)(void *baton, const char *key,
                                      apr_size_t len, apr_uint64_t process),
                          void *baton);
/* Forgets every session not stored (listed but left for the next round,
 * or never written) that was not listed this round. */
void memsess_track_prune(memsess_track_t *t);
/* Stored sessions. */
apr_size_t memsess_track_stored_count(const memsess_track_t *t);
/* Listed this round and not yet stored as listed. */
apr_size_t memsess_track_pending(const memsess_track_t *t);

/* ------------------------------------------------------------------ */
/* httpd glue: everything below needs httpd's headers.                */

#ifndef MEMSESS_NO_HTTPD

#include "apr_thread_mutex.h"

#include "httpd.h"
#include "http_config.h"

/* The directives as parsed: unset values are -1 / NULL and inherit from
 * the main server.  Nothing reads a setting here after post_config: the
 * resolved ones are in memsess_view_t and memsess_global_t. */
typedef struct {
    server_rec          *s;
    memsess_pool_t      *pool;
    int                  replicas;
    int                  format;
    int                  alldown;
    const char          *alldown_dir;
    int                  failover;
    memsess_credentials_t *credentials;
    /* server config only: the main server's values are the ones used */
    apr_interval_time_t  interval;
    apr_interval_time_t  timeout;
    const char          *interval_arg;   /* as written, for messages */
    const char          *timeout_arg;
    int                  fail_threshold;
    int                  pass_threshold;
    int                  rejoin;         /* memsess_rejoin_e */
    int                  share;          /* MemsessShareVerdicts */
    int                  release_helper; /* MemsessReleaseHelper */
    const char          *instance;       /* MemsessInstance */
    const char          *group;          /* MemsessGroup */
    const char          *state_dir;      /* MemsessStateDir ("" = none) */
    /* MemsessAdopt: -1 unset, else memsess_adopt_e; with a list, its
     * servers, and sess_consistent_hash / sess_number_of_replicas as
     * given (-1: php.ini's) */
    int                  adopt;
    memsess_pool_t      *adopt_pool;
    int                  adopt_ketama;
    int                  adopt_replicas;
    /* set at post_config: the index of this config's view in the runtime
     * (-1: no pool).  A vhost that uses none of our directives shares the
     * main server's struct, and so its view. */
    int                  view;
    /* MemsessPersist (-1 unset, else memsess_persist_e),
     * MemsessPersistInterval (-1 unset), MemsessPersistRate (-1 unset) */
    int                  persist;
    apr_interval_time_t  persist_interval;
    int                  persist_rate;
} memsess_srv_conf;

/* A vhost with a pool, as the status page lists it. */
typedef struct {
    const char             *name;    /* "host:port" */
    const memsess_srv_conf *conf;
} memsess_vhost_t;

typedef struct {
    int inject;   /* -1 unset, 0 Off, 1 On */
} memsess_dir_conf;

/* What this generation of the configuration runs with.  Built by the
 * parent at post_config, read-only afterwards, inherited by the children. */
typedef struct {
    server_rec          *main;
    memsess_global_t     g;           /* module-wide settings */
    apr_array_header_t  *targets;     /* memsess_server_t *, index = slot */
    const memsess_credentials_t **credentials;  /* [slot]: its probes' */
    const char          *conflict;    /* two pools, one server, different
                                       * credentials: why that is refused */
    apr_array_header_t  *confs;       /* memsess_srv_conf *, index = view */
    apr_array_header_t  *vhosts;      /* memsess_vhost_t, in server order */
    memsess_view_t      *views;       /* [confs->nelts] */
    memsess_table_t     *table;
    memsess_flight_t    *flight;      /* the requests in flight (may be
                                       * NULL: then nobody waits for them) */
    apr_uint64_t         nonce;       /* this start's, kept across
                                       * gracefuls: tells twins apart */
    apr_int64_t          started;     /* unix seconds it was drawn */
    apr_int64_t          generation_started;  /* this post_config's */
} memsess_runtime_t;

extern module AP_MODULE_DECLARE_DATA memsess_module;

memsess_srv_conf *memsess_srv_config(const server_rec *s);

/* The runtime of the running generation; NULL when no pool is configured. */
memsess_runtime_t *memsess_runtime(void);

/* memsess_check.c */
apr_status_t memsess_check_post_config(apr_pool_t *pconf, server_rec *s,
                                       memsess_runtime_t *rt);
/* Logs a vhost's pool going into (or out of) the state where none is live. */
void memsess_check_log_all_down(const memsess_runtime_t *rt,
                                const memsess_view_t *view, int all_down);

/* memsess_connect.c: a libmemcached handle to server slot as the
 * checker's own connections are (waits bounded by timeout, cas on, marked
 * for the release, MemsessCredentials); NULL when it cannot be made.
 * Connects on first use. */
struct memcached_st;
struct memcached_st *memsess_connect(const memsess_runtime_t *rt, int slot,
                                     apr_interval_time_t timeout);
/* Frees it (NULL accepted). */
void memsess_disconnect(struct memcached_st *mc);

/* memsess_joblock.c: a job (a rejoin sync, a rebalance) run once for the
 * group, through its record (memsess_job.c) on one server.  Fill subject,
 * job, stop, note and baton, then open; claim tells whether this instance
 * holds the job (holding 0: a server that refuses the record, where each
 * instance works alone), or follows its holder (who, in holder), once
 * that one is done; the holder refreshes the record while it works (done once it has
 * published) and releases it when finished. */
typedef enum {
    MEMSESS_CLAIM_HOLD,
    MEMSESS_CLAIM_FOLLOW,
    MEMSESS_CLAIM_FAILED
} memsess_claim_e;

typedef struct memsess_joblock {
    /* given */
    const char               *subject;   /* "memcached server X", for logs */
    const char               *job;       /* "its sync", for logs */
    volatile apr_uint32_t    *stop;      /* set: stop waiting; set on loss */
    apr_int64_t               not_before;  /* memsess_job_next's */
    void                    (*note)(void *baton, const char *holder);
    void                     *baton;     /* note: whom we wait for or
                                          * follow, "" when we hold it */
    /* kept */
    memsess_runtime_t        *rt;
    struct memcached_st      *mc;
    char                      key[MEMSESS_VERDICT_KEY_MAX + 1];
    size_t                    keylen;
    apr_uint64_t              fingerprint;
    apr_int64_t               since;
    apr_time_t                refreshed;
    int                       holding;
    volatile apr_uint32_t     lost;      /* another took it over */
    char                      holder[MEMSESS_INSTANCE_MAX];  /* followed */
    apr_int64_t               flip_ms;   /* done: when all publish */
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
                                  apr_uint64_t fingerprint,
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
/* Sleeps until the flip time of the job (its own, or the holder's read by
 * a follower); at once when it has passed or is far off. */
void memsess_joblock_wait_flip(memsess_joblock_t *j);
/* The holder: its record written anew (the server was emptied). */
void memsess_joblock_rewrite(memsess_joblock_t *j);
/* The holder is finished: its record goes, unless another's replaced it. */
void memsess_joblock_release(memsess_joblock_t *j);
void memsess_joblock_close(memsess_joblock_t *j);

/* memsess_exchange.c: the checker's verdict exchange, on a thread of its
 * own.  start returns NULL when MemsessShareVerdicts is Off (then it
 * clears the other instances' verdicts left in the table) or the thread
 * could not start; round and stop accept NULL. */
typedef struct memsess_exchange memsess_exchange_t;
struct memsess_rejoin;
memsess_exchange_t *memsess_exchange_start(memsess_runtime_t *rt,
                                           apr_pool_t *pool,
                                           apr_thread_mutex_t *table_mutex,
                                           struct memsess_rejoin *rejoin);
/* Starts a round unless the last one is still out. */
void memsess_exchange_round(memsess_exchange_t *x);
/* Starts a round (after the one still out, if any) and waits until one
 * begun after the call has ended (its lines applied), or until deadline
 * (0: does not wait).  Returns whether one did. */
int memsess_exchange_fresh(memsess_exchange_t *x, apr_time_t deadline);
/* Whether this instance shares with the group: not when it found a twin
 * (another instance of its name: MEMSESS0099), for good. */
int memsess_exchange_sharing(memsess_exchange_t *x);
/* Whether every other instance of the group (its member line not lapsed)
 * has its pools, as configured or as in force, with fingerprint fp; the
 * names of those that do not in who.  1 when x is NULL (sharing Off); 0
 * until the exchange has read a whole round (every instance refreshes its
 * line all the time: one round reads them all). */
int memsess_exchange_agree(memsess_exchange_t *x, int in_force,
                           apr_uint64_t fp, char *who, apr_size_t whosize);
/* How many other instances of the group were heard in the last round (0
 * before a whole round was read, and when x is NULL). */
int memsess_exchange_others(memsess_exchange_t *x);
/* Seconds a shared line (a verdict, a sync's job) holds unless refreshed:
 * three missed rounds. */
apr_int64_t memsess_share_ttl(const memsess_runtime_t *rt);
void memsess_exchange_stop(memsess_exchange_t *x);

/* memsess_rejoin.c: the checker's rejoin syncs, a thread each.  mutex is
 * the checker's (held by every writer of the table); start, busy and
 * cancel and kick are called with it held, reap and stop_all without. */
typedef struct memsess_rejoin memsess_rejoin_t;
struct apr_thread_mutex_t;
memsess_rejoin_t *memsess_rejoin_create(apr_pool_t *p, memsess_runtime_t *rt,
                                        struct apr_thread_mutex_t *mutex);
/* Starts the sync of slot i, just marked SYNCING (inside no write), or
 * queues it while another server of one of its pools syncs before its
 * flip. */
void memsess_rejoin_start(memsess_rejoin_t *r, int i);
/* Starts the queued syncs whose pools are free now (at most every 10 ms;
 * after every verdict and every round). */
void memsess_rejoin_kick(memsess_rejoin_t *r);
/* Whether the last sync of slot i still runs, or is queued (its server
 * stays down). */
int memsess_rejoin_busy(memsess_rejoin_t *r, int i);
/* The verdict exchange: with it, a server's sync runs once for the group
 * (memsess_joblock.c), and all publish it at one flip time. */
void memsess_rejoin_share(memsess_rejoin_t *r, memsess_exchange_t *x);
/* Its server failed a probe: the sync stops at its next key. */
void memsess_rejoin_cancel(memsess_rejoin_t *r, int i);
/* Joins the syncs that ended (each round). */
void memsess_rejoin_reap(memsess_rejoin_t *r);
/* The checker stops: every sync stops, and is joined. */
void memsess_rejoin_stop_all(memsess_rejoin_t *r);

/* memsess_rebalance.c: pool changes across generations */
/* The list in force as a table records it: every server, config order,
 * memcached syntax. */
const char *memsess_served_text(apr_pool_t *p, const memsess_pool_t *pool);
/* Gives every view whose list or placement differs from the one in force
 * before that one as its `before`, its servers slots (appended to
 * rt->targets).  In force before: what the previous generation's table
 * (old) records, else what the state file kept (state, may be NULL), else
 * (when adopt is set: the module did not run in this process before)
 * where PHP put the sessions (view->adopt).  Returns how many. */
int memsess_rebalance_plan(apr_pool_t *p, apr_pool_t *ptemp,
                           memsess_runtime_t *rt, const memsess_table_t *old,
                           apr_array_header_t *state, int adopt);
/* The text bytes view v needs in the table: its longest path, before's
 * too, and the list in force. */
apr_uint32_t memsess_rebalance_capacity(apr_pool_t *ptemp,
                                        const memsess_view_t *view);
apr_uint32_t memsess_rebalance_served_capacity(apr_pool_t *ptemp,
                                               const memsess_view_t *view);
/* Records in the new table each view's name and list in force, and
 * which wait for a rebalance. */
apr_status_t memsess_rebalance_fill(memsess_runtime_t *rt,
                                    apr_pool_t *ptemp);
/* What view v publishes from: its pool, or `before` while a rebalance
 * is pending; and the save_path a view gives with slot i counted live or
 * not (i < 0: none), as memsess_table_publish writes it.  The caller
 * holds the checker's mutex. */
/* A fingerprint of every view's pool (servers, replicas, failover,
 * format) as configured, or as in force (the caller holds the checker's
 * mutex): instances of a group rebalance a pool change once all have the
 * same configuration (memsess_exchange.c: their member lines). */
apr_uint64_t memsess_pools_fingerprint(apr_pool_t *p,
                                       const memsess_runtime_t *rt,
                                       int in_force);

const memsess_view_t *memsess_view_in_force(const memsess_runtime_t *rt,
                                            int v);
const char *memsess_view_path(apr_pool_t *p, const memsess_runtime_t *rt,
                              const memsess_view_t *view, int i, int i_live,
                              int *nlive_out);

/* memsess_adopt.c: what a start finds in force */
/* php.ini's memcached.sess_number_of_replicas and sess_consistent_hash as
 * mod_php read them (post_config, after mod_php's), else php-memcached's
 * defaults (0, On); *from (may be NULL) says which. */
void memsess_php_placement(int *replicas, int *ketama, const char **from);
/* A php.ini setting the syncs do not follow (a sess_prefix of its own, a
 * hash type other than ketama), described; NULL: none. */
const char *memsess_php_placement_odd(apr_pool_t *p);
/* post_config: MemsessStateDir made, the children's user's.  1 when the
 * state file can be kept there. */
int memsess_state_prepare(apr_pool_t *ptemp, const memsess_runtime_t *rt);
/* The placements the state file keeps (memsess_placed_t), or NULL: no
 * file, or one that does not read back (logged). */
apr_array_header_t *memsess_state_load(apr_pool_t *p,
                                       const memsess_runtime_t *rt);
/* Writes every view's placement in force (the parent at post_config, the
 * checker at a flip, holding its mutex); logs a failure. */
apr_status_t memsess_state_save(apr_pool_t *p, const memsess_runtime_t *rt);

/* memsess_rebalance_job.c: the checker's rebalance, one thread at a time.
 * mutex is the checker's; the rejoin syncs are waited for. */
typedef struct memsess_rebalancer memsess_rebalancer_t;
memsess_rebalancer_t *memsess_rebalancer_create(apr_pool_t *p,
                                                memsess_runtime_t *rt,
                                                apr_thread_mutex_t *mutex,
                                                memsess_rejoin_t *rejoin);
/* Each round: joins a rebalance that ended, starts one when a view waits
 * and is ready. */
void memsess_rebalancer_round(memsess_rebalancer_t *r);
/* The verdict exchange: with it, a pool change is rebalanced once every
 * instance of the group has it, by one of them for all. */
void memsess_rebalancer_share(memsess_rebalancer_t *r,
                              memsess_exchange_t *x);
/* The checker stops: the rebalance stops at its next key, and is joined. */
void memsess_rebalancer_stop(memsess_rebalancer_t *r);

/* memsess_gate.c: a flip's gate.  The caller closes it in the table
 * write that publishes the flip (gated[v]: the views whose list changes;
 * the table's writer held), calls memsess_gate_flipped() right after that
 * write, and hands memsess_gate_settled() and memsess_gate_open() to
 * memsess_sync_flipped() (memsess_flip_wait_t).  Requests are not taken to
 * be done before not_before (others of the group take their locks by
 * then); the gate opens MEMSESS_GATE_MAX after the flip at the latest. */
typedef struct {
    memsess_runtime_t      *rt;
    apr_thread_mutex_t     *mutex;       /* the table writer's */
    const int              *gated;       /* [views]: non-zero, gated */
    volatile apr_uint32_t  *stop;
    apr_time_t              until, not_before;
    apr_time_t              since;       /* the sync's start */
    apr_uint64_t            epoch;
    int                     waited_for;  /* requests that began before */
    apr_time_t              open;        /* when it opened; 0: not yet */
} memsess_gate_t;
void memsess_gate_close(memsess_gate_t *g, memsess_runtime_t *rt,
                        apr_thread_mutex_t *mutex, const int *gated,
                        apr_time_t since, apr_time_t not_before,
                        volatile apr_uint32_t *stop);
void memsess_gate_flipped(memsess_gate_t *g);
int memsess_gate_settled(void *gate);
void memsess_gate_open(void *gate);
void memsess_gate_recent(void *gate,
                         void (*each)(void *ctx, const char *id,
                                      apr_size_t len),
                         void *ctx);
/* How many sessions the engine brought over at the gate from requests'
 * own record (memsess_gate_recent). */
int memsess_sync_recent_brought(const memsess_sync_t *sync);
/* For the flip's NOTICE: how long requests waited, for how many. */
const char *memsess_gate_text(apr_pool_t *p, const memsess_gate_t *g,
                              apr_time_t flipped_at, int brought);

/* memsess_inject.c */
void memsess_inject_post_config(apr_pool_t *pconf, server_rec *s);
int memsess_inject_fixups(request_rec *r);

/* memsess_watch.c: in the checker, one idle connection to every live
 * server; suspect(ctx, slot) is called when the server closes, resets or
 * refuses it (the checker probes it at once).  NULL: no thread. */
typedef struct memsess_watch memsess_watch_t;
typedef void memsess_suspect_fn(void *ctx, int slot);
memsess_watch_t *memsess_watch_start(apr_pool_t *p, memsess_runtime_t *rt,
                                     memsess_suspect_fn *suspect, void *ctx);
void memsess_watch_stop(memsess_watch_t *w);

/* memsess_release.c: child_init; a request that got a pool (before it
 * reads the table); every child's watchdog tick */
void memsess_release_child_init(apr_pool_t *p, memsess_runtime_t *rt);
void memsess_release_track(request_rec *r);
void memsess_release_tick(memsess_runtime_t *rt);

/* memsess_release_helper.c: the parent forks the helper at post_config
 * (when it may: root, MemsessReleaseHelper On); the checker asks it at a
 * down verdict and each round while the server is out (6 s). */
void memsess_rh_post_config(apr_pool_t *pconf, server_rec *s,
                            memsess_runtime_t *rt);
void memsess_rh_ask(memsess_runtime_t *rt, int slot);
void memsess_rh_round(memsess_runtime_t *rt, apr_time_t now);

/* memsess_persist_db.c: MemsessPersist through mod_dbd.  available: the
 * functions of mod_dbd are there.  start runs the write-behind on a
 * thread of the checker (NULL when no view persists); mutex is the
 * table writer's. */
int memsess_persist_available(void);
typedef struct memsess_persist memsess_persist_t;
memsess_persist_t *memsess_persist_start(memsess_runtime_t *rt,
                                         apr_pool_t *pool,
                                         apr_thread_mutex_t *mutex);
void memsess_persist_stop(memsess_persist_t *ps);
/* The rejoin of server slot, which came back as a new process (its memory
 * lost): before it is published, view v's stored sessions that path_next
 * places on it and on no survivor (live servers that kept their memory,
 * by slot) are added to it, with what is left of their lifetime (add:
 * anything memcached has wins).  A database that cannot be read is a
 * WARN, not a failure (the server is published without them): APR_SUCCESS
 * but when the server itself fails.  The counts go to the view's slot
 * (mutex held for that). */
apr_status_t memsess_persist_restore(memsess_runtime_t *rt,
                                     apr_thread_mutex_t *mutex, int v,
                                     int slot, const char *path_next,
                                     const unsigned char *survivor,
                                     apr_pool_t *pool, char *err,
                                     apr_size_t errlen);

/* memsess_status.c */
int memsess_status_handler(request_rec *r);
void memsess_status_register(void);

#endif /* MEMSESS_NO_HTTPD */

#endif /* MOD_MEMSESS_H */
