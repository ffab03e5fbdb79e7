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

/* memsess_common.h: the types every part needs: sizes, a pool and its
 * servers, a view (what one vhost publishes), the module-wide settings, and
 * (httpd builds) the configuration and the runtime of a generation. */

#ifndef MEMSESS_COMMON_H
#define MEMSESS_COMMON_H

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

/* The longest interval and timeout: every sum of times the checker forms
 * stays far from overflowing, and a round runs at least once an hour. */
#define MEMSESS_TIME_MAX    apr_time_from_sec(3600)

/* What becomes of a down server in the injected list. */
typedef enum {
    MEMSESS_FAILOVER_DROP      = 0,  /* left out (consistent hashing) */
    MEMSESS_FAILOVER_SUCCESSOR = 1   /* its place goes to the next live
                                      * server: positions are kept */
} memsess_failover_e;

/* ------------------------------------------------------------------ */
/* SASL credentials (memsess_credentials.c): the type views hold      */

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

/* Opaque parts the runtime points to: memsess_table.h, memsess_flight.h. */
typedef struct memsess_table memsess_table_t;
typedef struct memsess_flight_t memsess_flight_t;

/* php-memcached's memcached.sess_prefix by default: libmemcached's
 * namespace, not hashed (HASH_WITH_PREFIX_KEY stays off), so a namespace
 * never moves a key to another server.  MemsessNamespace replaces it
 * (injected); its lock of session <id> is the key "<prefix>lock.<id>". */
#define MEMSESS_SESS_PREFIX "memc.sess.key."
#define MEMSESS_NAMESPACE_MAX (64)    /* libmemcached takes 127 */

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
    const char *prefix;    /* sess_prefix, the namespace; NULL: not
                            * recorded (a file or table of an earlier
                            * version: php.ini's was in force) */
} memsess_placed_t;

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
    const char           *sess_prefix;   /* memcached.sess_prefix: the
                                          * sessions' namespace
                                          * (MemsessNamespace) */
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

/* What a down server that comes back gets before it takes traffic. */
typedef enum {
    MEMSESS_REJOIN_KEEP  = 0,   /* used as it is */
    MEMSESS_REJOIN_FLUSH = 1,   /* emptied by the probe that brings it back */
    MEMSESS_REJOIN_SYNC  = 2    /* synced before it is published (the
                                 * default): memsess_sync.c */
} memsess_rejoin_e;

#define MEMSESS_SYNC_RATE_DEFAULT (50000)     /* keys a second */
#define MEMSESS_SYNC_RATE_MAX     (10000000)

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
    int                 check_process;    /* MemsessCheckerProcess: 0, 1 */
    const char         *state_dir;  /* MemsessStateDir; NULL: none */
    int                 sync_rate;  /* MemsessSyncRate: keys a second a
                                     * sync or rebalance copies or looks
                                     * for; 0 unbounded */
    const char         *sess_prefix;  /* MemsessNamespace, else php.ini's
                                       * memcached.sess_prefix, else
                                       * php-memcached's default */
    const char         *sess_prefix_from;   /* which, for the log */
    const char         *php_prefix;   /* php.ini's memcached.sess_prefix,
                                       * else php-memcached's default:
                                       * where PHP put the sessions when
                                       * no placement records it */
} memsess_global_t;

/* MemsessAdopt: where a pool's sessions are when nothing recorded it. */
typedef enum {
    MEMSESS_ADOPT_NONE = 0,   /* nowhere: published at once */
    MEMSESS_ADOPT_PHP  = 1,   /* where PHP put them over the same servers,
                               * with php.ini's memcached.sess_* */
    MEMSESS_ADOPT_LIST = 2    /* where PHP put them over the list given */
} memsess_adopt_e;

/* The rejoin syncs (memsess_rejoin.c) as the parts beside them see them:
 * the checker hands this to the exchange and the rebalance, so that they
 * never call the rejoin themselves.  busy: whether the sync of slot still
 * runs or is queued; start: starts the sync of slot, just marked SYNCING
 * (inside no write; the checker's mutex held). */
typedef struct {
    int  (*busy)(void *baton, int slot);
    void (*start)(void *baton, int slot);
    void  *baton;
} memsess_syncs_t;

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
    int                  check_process;  /* MemsessCheckerProcess */
    const char          *instance;       /* MemsessInstance */
    const char          *group;          /* MemsessGroup */
    const char          *state_dir;      /* MemsessStateDir ("" = none) */
    int                  sync_rate;      /* MemsessSyncRate (-1 unset) */
    const char          *sess_prefix;    /* MemsessNamespace (NULL unset) */
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
    apr_int64_t          generation_off_ms;   /* ... in the clock of this
                                               * offset (memsess_clocks.c) */
    apr_time_t           resumed_gate;   /* the gate of the views whose
                                          * pool change was under way in
                                          * the previous generation too
                                          * (memsess_mono_now(); 0: none),
                                          * until the checker has read the
                                          * group's job */
    apr_time_t           resumed_sync_gate;   /* ... of the views holding a
                                          * server whose sync was under
                                          * way (1 us before the other:
                                          * each job opens its own) */
} memsess_runtime_t;

extern module AP_MODULE_DECLARE_DATA memsess_module;

#endif /* MEMSESS_NO_HTTPD */

#endif /* MEMSESS_COMMON_H */
