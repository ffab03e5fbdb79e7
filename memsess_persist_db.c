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
 * MemsessPersist dbd: the pool's sessions written behind to a database
 * through mod_dbd (apr_dbd: the DBDriver and DBDParams of the view's
 * server), on a thread of the checker, never on a request's path; and the
 * restore a rejoin runs before it publishes a server that came back empty.
 *
 * Each MemsessPersistInterval, the writer of the group (a lease in the
 * database itself, memsess_writers, which outlives memcached: a token a
 * take raises and every write transaction is fenced by; taken over when
 * it has not moved for a lease's time by our own clock: memsess_lease_next)
 * lists every server of the list published now (lru_crawler
 * metadump, memsess_dump_list), and for each session at its authority:
 * written (upsert) when its cas or expiry changed since it was
 * (memsess_track_*), at most MemsessPersistRate a second; a stored one no
 * longer listed, once its authority confirms it gone, is deleted (a
 * logout, an expiry).  A listing that fails leaves every deletion to the
 * next round.
 *
 * One table, memsess_sessions (pool, skey, val, flags, exp, cas): val is
 * the value in base64, exp memcached's absolute expiry (0 never), cas the
 * one written.  Nothing of a session's content is logged.
 */

#include <string.h>

#include <libmemcached/memcached.h>

#include "apr_strings.h"
#include "apr_atomic.h"
#include "apr_dbd.h"
#include "apr_optional.h"
#include "apr_file_info.h"
#include "apr_thread_proc.h"
#include "apr_thread_mutex.h"

#include "httpd.h"
#include "http_log.h"
#include "mod_dbd.h"

#include "memsess_persist_db.h"
#include "memsess_clocks.h"
#include "memsess_connect.h"
#include "memsess_listing.h"
#include "memsess_persist.h"
#include "memsess_place.h"
#include "memsess_table.h"
#include "memsess_verdicts.h"
#include "memsess_view.h"

APLOG_USE_MODULE(memsess);

#define PAGE       (1000)        /* rows read at once */
#define BATCH      (256)         /* keys of one mget, rows of one commit */
#define LEASE_MIN  (30)          /* seconds: the least a lease holds */
#define WARN_EVERY apr_time_from_sec(60)
#define OP_TIMEOUT apr_time_from_msec(500)

static APR_OPTIONAL_FN_TYPE(ap_dbd_open) *dbd_open;
static APR_OPTIONAL_FN_TYPE(ap_dbd_close) *dbd_close;

int memsess_persist_available(void)
{
    dbd_open = APR_RETRIEVE_OPTIONAL_FN(ap_dbd_open);
    dbd_close = APR_RETRIEVE_OPTIONAL_FN(ap_dbd_close);
    return dbd_open && dbd_close;
}

/* ------------------------------------------------------------------ */
/* The database                                                        */

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS memsess_sessions ("
    "pool VARCHAR(255) NOT NULL, skey VARCHAR(250) NOT NULL, "
    "val TEXT NOT NULL, flags BIGINT NOT NULL, exp BIGINT NOT NULL, "
    "cas VARCHAR(20) NOT NULL, PRIMARY KEY (pool, skey))";

/* The writer's lease of each pool (memsess_lease_next): holder, the
 * grant's token, a beat each renewal. */
static const char schema_writers[] =
    "CREATE TABLE IF NOT EXISTS memsess_writers ("
    "pool VARCHAR(255) NOT NULL PRIMARY KEY, holder VARCHAR(255) NOT NULL, "
    "token BIGINT NOT NULL, beat BIGINT NOT NULL)";

typedef struct {
    ap_dbd_t            *dbd;
    server_rec          *s;
    const apr_dbd_driver_t *drv;
    apr_dbd_t           *h;
    apr_dbd_prepared_t  *upsert, *del, *purge, *page_meta, *page_all;
    apr_dbd_prepared_t  *lease_get, *lease_claim, *lease_beat, *lease_take;
    int                  rolled_back;  /* a write of this round undone */
    const char          *prefix;       /* the sessions' namespace */
} db_t;

static const char *db_error(apr_pool_t *p, db_t *db, int rc)
{
    const char *e = apr_dbd_error(db->drv, db->h, rc);
    char *out = apr_pstrdup(p, e ? e : "error");

    memsess_text_one_line(out);
    return out;
}

/* SQLite: the file is made 0600 (session data at rest is as sensitive as
 * a password file), and written ahead (the restore reads while the
 * writer writes). */
static void sqlite_secure(apr_pool_t *p, db_t *db)
{
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;
    int nrows;

    if (strcmp(apr_dbd_name(db->drv), "sqlite3")) {
        return;
    }
    apr_dbd_query(db->drv, db->h, &nrows, "PRAGMA journal_mode=WAL");
    if (apr_dbd_select(db->drv, p, db->h, &res, "PRAGMA database_list", 0)
        == 0) {
        while (apr_dbd_get_row(db->drv, p, res, &row, -1) == 0) {
            const char *name = apr_dbd_get_entry(db->drv, row, 1);
            const char *file = apr_dbd_get_entry(db->drv, row, 2);

            if (name && !strcmp(name, "main") && file && *file) {
                apr_file_perms_set(file, APR_FPROT_UREAD | APR_FPROT_UWRITE);
                apr_file_perms_set(apr_pstrcat(p, file, "-wal", NULL),
                                   APR_FPROT_UREAD | APR_FPROT_UWRITE);
                apr_file_perms_set(apr_pstrcat(p, file, "-shm", NULL),
                                   APR_FPROT_UREAD | APR_FPROT_UWRITE);
            }
        }
    }
}

static void db_close(db_t *db)
{
    if (db->dbd) {
        dbd_close(db->s, db->dbd);
        db->dbd = NULL;
    }
}

static const char *db_open(apr_pool_t *p, const memsess_view_t *view,
                           db_t *db)
{
    int nrows, rc;

    memset(db, 0, sizeof(*db));
    db->s = (server_rec *)view->dbd_server;
    db->prefix = view->sess_prefix;
    if (!dbd_open || !(db->dbd = dbd_open(p, db->s))) {
        return "cannot connect to the database (mod_dbd: DBDriver, "
               "DBDParams; its own error is in the log)";
    }
    db->drv = db->dbd->driver;
    db->h = db->dbd->handle;
    if (strcmp(apr_dbd_name(db->drv), "sqlite3")
        && strcmp(apr_dbd_name(db->drv), "pgsql")) {
        /* the statements are SQLite's and PostgreSQL's (INSERT ... ON
         * CONFLICT): MySQL and the others are neither spoken nor tested */
        const char *e = apr_psprintf(p, "DBDriver %s is not supported "
                                     "(sqlite3 or pgsql)",
                                     apr_dbd_name(db->drv));

        db_close(db);
        return e;
    }
    sqlite_secure(p, db);
    rc = apr_dbd_query(db->drv, db->h, &nrows, schema);
    if (!rc) {
        rc = apr_dbd_query(db->drv, db->h, &nrows, schema_writers);
    }
    if (rc) {
        /* two instances may race to create them: the statements tell */
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, db->s, "MEMSESS0172: "
                     "creating memsess_sessions, memsess_writers: %s",
                     db_error(p, db, rc));
    }
    if ((rc = apr_dbd_prepare(db->drv, p, db->h,
            "INSERT INTO memsess_sessions (pool, skey, val, flags, exp, cas) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (pool, skey) DO "
            "UPDATE SET val = excluded.val, flags = excluded.flags, "
            "exp = excluded.exp, cas = excluded.cas", NULL, &db->upsert))
        || (rc = apr_dbd_prepare(db->drv, p, db->h,
            "DELETE FROM memsess_sessions WHERE pool = %s AND skey = %s",
            NULL, &db->del))
        || (rc = apr_dbd_prepare(db->drv, p, db->h,
            "DELETE FROM memsess_sessions WHERE pool = %s AND exp > 0 AND "
            "exp < %s", NULL, &db->purge))
        || (rc = apr_dbd_prepare(db->drv, p, db->h,
            "SELECT skey, flags, exp, cas FROM memsess_sessions WHERE "
            "pool = %s AND skey > %s ORDER BY skey LIMIT 1000", NULL,
            &db->page_meta))
        || (rc = apr_dbd_prepare(db->drv, p, db->h,
            "SELECT skey, flags, exp, cas, val FROM memsess_sessions WHERE "
            "pool = %s AND skey > %s ORDER BY skey LIMIT 1000", NULL,
            &db->page_all))
        || (rc = apr_dbd_prepare(db->drv, p, db->h,
            "SELECT holder, token, beat FROM memsess_writers WHERE "
            "pool = %s", NULL, &db->lease_get))
        || (rc = apr_dbd_prepare(db->drv, p, db->h,
            "INSERT INTO memsess_writers (pool, holder, token, beat) "
            "VALUES (%s, %s, 1, 0) ON CONFLICT (pool) DO NOTHING", NULL,
            &db->lease_claim))
        || (rc = apr_dbd_prepare(db->drv, p, db->h,
            "UPDATE memsess_writers SET beat = beat + 1 WHERE pool = %s "
            "AND token = %s", NULL, &db->lease_beat))
        || (rc = apr_dbd_prepare(db->drv, p, db->h,
            "UPDATE memsess_writers SET holder = %s, token = token + 1, "
            "beat = beat + 1 WHERE pool = %s AND token = %s AND beat = %s",
            NULL, &db->lease_take))) {
        const char *e = apr_pstrcat(p, "the database refuses the "
                                    "statements: ", db_error(p, db, rc),
                                    NULL);

        db_close(db);
        return e;
    }
    return NULL;
}

/* Every row of pool, a page at a time, to each (val only with all); each
 * returns non-zero to stop.  NULL, or what failed. */
static const char *db_rows(apr_pool_t *p, db_t *db, const char *pool,
                           int all,
                           int (*each)(void *baton, const memsess_row_t *row,
                                       const char *val),
                           void *baton)
{
    char *after = "";

    for (;;) {
        apr_pool_t *page;
        apr_dbd_results_t *res = NULL;
        apr_dbd_row_t *row = NULL;
        int rc, n = 0, stop = 0;

        apr_pool_create(&page, p);
        rc = apr_dbd_pvselect(db->drv, page, db->h, &res,
                              all ? db->page_all : db->page_meta, 0, pool,
                              after, NULL);
        if (rc) {
            const char *e = db_error(p, db, rc);

            apr_pool_destroy(page);
            return e;
        }
        while (apr_dbd_get_row(db->drv, page, res, &row, -1) == 0) {
            memsess_row_t r;
            const char *key = apr_dbd_get_entry(db->drv, row, 0);

            n++;
            if (stop) {
                continue;   /* read to the end: the driver wants it */
            }
            if (key) {
                after = apr_pstrdup(p, key);
            }
            if (memsess_row_parse(db->prefix, key, apr_dbd_get_entry(db->drv, row, 1),
                                  apr_dbd_get_entry(db->drv, row, 2),
                                  apr_dbd_get_entry(db->drv, row, 3), &r)) {
                continue;   /* not a row of ours: left alone */
            }
            stop = each(baton, &r,
                        all ? apr_dbd_get_entry(db->drv, row, 4) : NULL);
        }
        apr_pool_destroy(page);
        if (stop || n < PAGE) {
            return NULL;
        }
    }
}

/* ------------------------------------------------------------------ */
/* The writer                                                          */

typedef struct {
    const memsess_view_t *view;
    int                   v;
    memsess_track_t      *track;
    int                   loaded;
    int                   holder;
    memsess_lease_t       lease;         /* the writer's, in the database */
    apr_time_t            next;          /* the next round */
    apr_time_t            warned;
    int                   failing;
    apr_int64_t           last_ok;       /* unix seconds */
    apr_uint64_t          written, deleted;
    apr_uint64_t          unchanged;     /* new cas, same value: not written */
} pview_t;

struct memsess_persist {
    memsess_runtime_t     *rt;
    apr_pool_t            *pool;
    apr_thread_mutex_t    *mutex;
    apr_thread_t          *thread;
    volatile apr_uint32_t  stop;
    pview_t               *pv;
    int                    n;
};

/* The slot of a server as libmemcached names it ("host:port"), or -1. */
static int slot_of(const memsess_runtime_t *rt, const char *name)
{
    int i;

    for (i = 0; i < rt->targets->nelts; i++) {
        if (!strcmp(APR_ARRAY_IDX(rt->targets, i, memsess_server_t *)->addr,
                    name)) {
            return i;
        }
    }
    return -1;
}

/* A fingerprint of the memcached process behind slot (0: unknown). */
static apr_uint64_t process_of(const memsess_runtime_t *rt, int slot)
{
    memsess_slot_t sl;

    if (slot < 0 || memsess_table_read_slot(rt->table, slot, &sl)
        != APR_SUCCESS || !sl.proc_pid) {
        return 0;
    }
    {
        char buf[64];

        apr_snprintf(buf, sizeof(buf), "%" APR_INT64_T_FMT ".%"
                     APR_INT64_T_FMT, sl.proc_pid, sl.proc_started);
        return memsess_fnv1a_more(MEMSESS_FNV1A_INIT, buf) | 1;
    }
}

static void status_note(memsess_persist_t *ps, pview_t *pv, apr_uint32_t role,
                        const char *error)
{
    memsess_view_slot_t *vs;

    apr_thread_mutex_lock(ps->mutex);
    memsess_table_write_begin(ps->rt->table);
    vs = memsess_table_view_slot(ps->rt->table, pv->v);
    vs->persist_role = role;
    vs->persist_interval_ms = apr_time_as_msec(pv->view->persist_interval);
    vs->persist_last_write = pv->last_ok;
    vs->persist_stored = pv->track ? memsess_track_stored_count(pv->track)
                                   : 0;
    vs->persist_pending = pv->track ? memsess_track_pending(pv->track) : 0;
    vs->persist_written = pv->written;
    vs->persist_deleted = pv->deleted;
    if (error) {
        apr_cpystrn(vs->persist_error, error, sizeof(vs->persist_error));
        memsess_text_one_line(vs->persist_error);
    }
    memsess_table_write_end(ps->rt->table);
    apr_thread_mutex_unlock(ps->mutex);
}

static void warn(memsess_persist_t *ps, pview_t *pv, const char *what)
{
    apr_time_t now = apr_time_now();

    if (!pv->failing || now - pv->warned >= WARN_EVERY) {
        char ago[64] = "never";

        if (pv->last_ok) {
            apr_snprintf(ago, sizeof(ago), "%" APR_INT64_T_FMT "s ago",
                         apr_time_sec(now) - pv->last_ok);
        }
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ps->rt->main,
                     "MEMSESS0173: sessions of %s are not written behind: "
                     "%s (sessions are still served from memcached; the "
                     "last whole round was %s)", pv->view->name, what, ago);
        pv->warned = now;
    }
    pv->failing = 1;
    status_note(ps, pv, MEMSESS_PERSIST_ROLE_FAILING, what);
}

/* This instance does not hold the lease of pv: its status says standby
 * (when it loses the lease, before the log says it stops writing), and a
 * failure of its rounds as the writer is no longer its own. */
static void stand_by(memsess_persist_t *ps, pview_t *pv)
{
    pv->failing = 0;
    status_note(ps, pv, MEMSESS_PERSIST_ROLE_STANDBY, NULL);
}

/* A round that ends before the lease is read (the published list cannot
 * be written from): the writer's failure, or standing by as before. */
static void early_failure(memsess_persist_t *ps, pview_t *pv,
                          const char *what)
{
    if (pv->holder) {
        warn(ps, pv, what);
    }
    else {
        stand_by(ps, pv);
    }
}

/* The group's lease on writing view pv (memsess_lease_next), read and
 * renewed or taken in the database: pv->holder says whether it is held.
 * NULL, or what failed. */
static const char *lease(memsess_persist_t *ps, pview_t *pv, db_t *db,
                         apr_pool_t *p)
{
    memsess_runtime_t *rt = ps->rt;
    const char *pool = pv->view->name, *me = rt->g.instance;
    const char *holder = NULL;
    apr_time_t ttl = 3 * pv->view->persist_interval;
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;
    apr_int64_t token = 0, beat = 0;
    int nrows = 0, rc, found = 0, was = pv->holder;

    if (ttl < apr_time_from_sec(LEASE_MIN)) {
        ttl = apr_time_from_sec(LEASE_MIN);
    }
    pv->holder = 0;
    if ((rc = apr_dbd_pvselect(db->drv, p, db->h, &res, db->lease_get, 0,
                               pool, NULL))) {
        return apr_pstrcat(p, "reading the writer's lease: ",
                           db_error(p, db, rc), NULL);
    }
    while (apr_dbd_get_row(db->drv, p, res, &row, -1) == 0) {
        const char *h = apr_dbd_get_entry(db->drv, row, 0);
        const char *t = apr_dbd_get_entry(db->drv, row, 1);
        const char *b = apr_dbd_get_entry(db->drv, row, 2);
        char *end1 = NULL, *end2 = NULL;

        if (found++ || !h || !t || !b) {
            continue;   /* read to the end: the driver wants it */
        }
        holder = apr_pstrdup(p, h);
        token = apr_strtoi64(t, &end1, 10);
        beat = apr_strtoi64(b, &end2, 10);
        if (!*t || *end1 || !*b || *end2) {
            holder = NULL;
        }
    }
    if (found && !holder) {
        return "the writer's lease in memsess_writers does not read";
    }
    switch (memsess_lease_next(&pv->lease, found, holder, token, beat, me,
                               memsess_mono_now(), ttl)) {
    case MEMSESS_LEASE_CLAIM:
        rc = apr_dbd_pvquery(db->drv, p, db->h, &nrows, db->lease_claim,
                             pool, me, NULL);
        pv->lease.token = !rc && nrows == 1 ? 1 : 0;
        break;
    case MEMSESS_LEASE_RENEW:
        rc = apr_dbd_pvquery(db->drv, p, db->h, &nrows, db->lease_beat,
                             pool, apr_psprintf(p, "%" APR_INT64_T_FMT,
                                                token), NULL);
        pv->lease.token = !rc && nrows == 1 ? token : 0;
        break;
    case MEMSESS_LEASE_TAKE:
        rc = apr_dbd_pvquery(db->drv, p, db->h, &nrows, db->lease_take,
                             me, pool,
                             apr_psprintf(p, "%" APR_INT64_T_FMT, token),
                             apr_psprintf(p, "%" APR_INT64_T_FMT, beat),
                             NULL);
        pv->lease.token = !rc && nrows == 1 ? token + 1 : 0;
        if (pv->lease.token && strcmp(holder, me)) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                         "MEMSESS0174: sessions of %s: the writer's lease "
                         "(held by %s) was not renewed for %" APR_TIME_T_FMT
                         "s: this instance writes them now", pool, holder,
                         apr_time_sec(ttl));
        }
        break;
    default:
        rc = 0;
        break;
    }
    if (rc) {
        return apr_pstrcat(p, "taking the writer's lease: ",
                           db_error(p, db, rc), NULL);
    }
    pv->holder = pv->lease.token != 0;
    if (was && !pv->holder) {
        stand_by(ps, pv);
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                     "MEMSESS0179: sessions of %s: the writer's lease is "
                     "held by %s now: this instance stops writing them",
                     pool, holder ? holder : "no one");
    }
    if (pv->holder && !was) {
        pv->loaded = 0;   /* another wrote meanwhile: read what it did */
    }
    return NULL;
}

/* A transaction of the holder, fenced by its grant: started, and the
 * lease renewed under its token first.  NULL, or what failed; the lease
 * lost to another instance meanwhile says so (MEMSESS0180) and drops it:
 * nothing of this transaction is written. */
static const char *fenced_begin(memsess_persist_t *ps, pview_t *pv,
                                db_t *db, apr_pool_t *p,
                                apr_dbd_transaction_t **txn)
{
    int nrows = 0, rc;

    *txn = NULL;
    if (apr_dbd_transaction_start(db->drv, p, db->h, txn)) {
        *txn = NULL;
        return "cannot start a transaction";
    }
    rc = apr_dbd_pvquery(db->drv, p, db->h, &nrows, db->lease_beat,
                         pv->view->name,
                         apr_psprintf(p, "%" APR_INT64_T_FMT,
                                      pv->lease.token), NULL);
    if (rc) {
        return apr_pstrcat(p, "renewing the writer's lease: ",
                           db_error(p, db, rc), NULL);
    }
    if (nrows != 1) {
        pv->lease.token = 0;
        pv->holder = 0;
        stand_by(ps, pv);
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, ps->rt->main,
                     "MEMSESS0180: sessions of %s: another instance took "
                     "the writer's lease over: this instance stops writing "
                     "them", pv->view->name);
        return "the writer's lease was taken over";
    }
    return NULL;
}

/* Ends what fenced_begin started: committed, or rolled back after err. */
static const char *fenced_end(db_t *db, apr_pool_t *p,
                              apr_dbd_transaction_t *txn, const char *err)
{
    if (!txn) {
        return err;
    }
    if (err) {
        apr_dbd_transaction_mode_set(db->drv, txn,
                                     APR_DBD_TRANSACTION_ROLLBACK);
        db->rolled_back = 1;
    }
    if (apr_dbd_transaction_end(db->drv, p, txn) && !err) {
        db->rolled_back = 1;
        return "cannot commit";
    }
    return err;
}

typedef struct {
    memsess_persist_t   *ps;
    pview_t             *pv;
    apr_pool_t          *p;
    memsess_place_t     *place;
    int                  i;            /* the server being listed */
    apr_uint64_t         process;
    apr_array_header_t  *dirty;        /* of dirty_t */
} listing_t;

typedef struct {
    const char  *key;
    apr_size_t   len;
    apr_int64_t  exp;
    int          at;                   /* place index of its authority */
} dirty_t;

static int listed(void *baton, const memsess_dump_item_t *it)
{
    listing_t *l = baton;
    const char *id;
    apr_size_t idlen;
    int where[16], n;

    if (memsess_key_kind(l->pv->view->sess_prefix, it->key, it->keylen, &id,
                         &idlen) != MEMSESS_KEY_SESSION) {
        return 1;
    }
    n = memsess_place_key(l->place, id, idlen, where, 16);
    if (n < 1 || where[0] != l->i) {
        return 1;   /* a replica: its authority's copy is the one */
    }
    if (memsess_track_seen(l->pv->track, it->key, it->keylen, it->cas,
                           it->exp, l->process)) {
        dirty_t *d = apr_array_push(l->dirty);

        d->key = apr_pstrmemdup(l->p, it->key, it->keylen);
        d->len = it->keylen;
        d->exp = it->exp < 0 ? 0 : it->exp;
        d->at = l->i;
    }
    return !l->ps->stop;
}

static int load_each(void *baton, const memsess_row_t *row, const char *val)
{
    pview_t *pv = baton;

    /* read without their values (val NULL): digests unknown until the
     * next write */
    memsess_track_stored(pv->track, row->key, row->keylen, row->cas,
                         row->exp, 0,
                         val ? memsess_persist_digest(val, row->flags) : 0);
    return 0;
}

/* Writes the dirty sessions of one authority (a batch): read there with
 * their cas, upserted in one transaction. */
static const char *write_batch(memsess_persist_t *ps, pview_t *pv, db_t *db,
                               apr_pool_t *p, memcached_st *mc,
                               apr_uint64_t process, dirty_t *d, int n,
                               apr_int64_t *left)
{
    const char **keys = apr_palloc(p, n * sizeof(*keys));
    size_t *lens = apr_palloc(p, n * sizeof(*lens));
    apr_hash_t *exp = apr_hash_make(p);
    memcached_result_st *res;
    memcached_return_t rc;
    apr_dbd_transaction_t *txn = NULL;
    const char *err = NULL;
    int k, nrows;

    for (k = 0; k < n; k++) {
        keys[k] = d[k].key;
        lens[k] = d[k].len;
        apr_hash_set(exp, d[k].key, d[k].len, &d[k].exp);
    }
    rc = memcached_mget(mc, keys, lens, n);
    if (rc != MEMCACHED_SUCCESS) {
        return apr_pstrcat(p, "reading sessions: ",
                           memcached_strerror(mc, rc), NULL);
    }
    err = fenced_begin(ps, pv, db, p, &txn);
    while ((res = memcached_fetch_result(mc, NULL, &rc))) {
        const char *key = memcached_result_key_value(res);
        size_t klen = memcached_result_key_length(res);
        size_t vlen = memcached_result_length(res);
        apr_int64_t *e = apr_hash_get(exp, key, klen);

        if (!err && e && vlen <= MEMSESS_PERSIST_VALUE_MAX && *left > 0) {
            char *val = apr_palloc(p, memsess_b64_len(vlen) + 1);
            const char *skey = apr_pstrmemdup(p, key, klen);
            uint64_t cas = memcached_result_cas(res);
            uint32_t flags = memcached_result_flags(res);
            apr_uint64_t digest;
            int rv;

            memsess_b64_encode(val, (const unsigned char *)
                               memcached_result_value(res), vlen);
            digest = memsess_persist_digest(val, flags);
            if (memsess_track_unchanged(pv->track, skey, klen, digest, *e)) {
                /* a new cas for the same value (a restore's add, a sync's
                 * copy): nothing to write */
                memsess_track_stored(pv->track, skey, klen, cas, *e,
                                     process, digest);
                pv->unchanged++;
                memcached_result_free(res);
                continue;
            }
            rv = apr_dbd_pvquery(db->drv, p, db->h, &nrows, db->upsert,
                    pv->view->name, skey, val,
                    apr_psprintf(p, "%u", (unsigned)flags),
                    apr_psprintf(p, "%" APR_INT64_T_FMT, *e),
                    apr_psprintf(p, "%" APR_UINT64_T_FMT,
                                 (apr_uint64_t)cas), NULL);
            if (rv) {
                err = apr_pstrcat(p, "writing: ", db_error(p, db, rv), NULL);
            }
            else {
                memsess_track_stored(pv->track, skey, klen, cas, *e,
                                     process, digest);
                pv->written++;
                (*left)--;
            }
        }
        memcached_result_free(res);
    }
    return fenced_end(db, p, txn, err);
}

typedef struct {
    memsess_persist_t *ps;
    pview_t           *pv;
    db_t              *db;
    apr_pool_t        *p;
    memsess_place_t   *place;
    memcached_st     **mc;             /* [place servers] */
    apr_uint64_t      *process;        /* [place servers] */
    const char        *err;
} sweep_t;

/* A stored session not listed this round: deleted when its authority
 * confirms it gone (a logout, an expiry), and that authority is the
 * process that listed it (a restart the checker did not see may have lost
 * it: the row stays, for the restore, until it expires). */
static int unseen(void *baton, const char *key, apr_size_t len,
                  apr_uint64_t process)
{
    sweep_t *w = baton;
    const char *id;
    apr_size_t idlen;
    int where[16], n, nrows, rv;
    memcached_return_t rc;
    size_t vlen;
    uint32_t flags;
    char *val;

    if (w->err || w->ps->stop
        || memsess_key_kind(w->pv->view->sess_prefix, key, len, &id, &idlen)
           != MEMSESS_KEY_SESSION
        || (n = memsess_place_key(w->place, id, idlen, where, 16)) < 1
        || !w->mc[where[0]]) {
        return 0;
    }
    if (process && w->process[where[0]] != process) {
        return 1;   /* forgotten, not deleted */
    }
    val = memcached_get(w->mc[where[0]], key, len, &vlen, &flags, &rc);
    if (val) {
        free(val);
        return 0;   /* the crawler passed it by: still there */
    }
    if (rc != MEMCACHED_NOTFOUND) {
        return 0;
    }
    rv = apr_dbd_pvquery(w->db->drv, w->p, w->db->h, &nrows, w->db->del,
                         w->pv->view->name, apr_pstrmemdup(w->p, key, len),
                         NULL);
    if (rv) {
        w->err = apr_pstrcat(w->p, "deleting: ", db_error(w->p, w->db, rv),
                             NULL);
        return 0;
    }
    w->pv->deleted++;
    return 1;
}

static void round_view(memsess_persist_t *ps, pview_t *pv)
{
    memsess_runtime_t *rt = ps->rt;
    const memsess_view_t *inforce;
    apr_pool_t *p;
    char *path, err[256] = "";
    apr_uint32_t len, nlive, rebalance;
    apr_time_t gate;
    memsess_place_t *place;
    memcached_st **mc;
    apr_uint64_t *process;
    int *slots, nserv, i, complete = 1, named = 0, replicas, ketama;
    const char *e;
    db_t db;
    listing_t l;
    sweep_t w;
    apr_int64_t left;

    apr_pool_create(&p, ps->pool);
    path = apr_palloc(p, pv->view->capacity + 1);
    if (memsess_table_read_view(rt->table, pv->v, path,
                                pv->view->capacity + 1, &len, &nlive,
                                &rebalance, &gate) != APR_SUCCESS
        || !nlive) {
        /* no live server: nothing to list, nothing to write (lag grows);
         * a failure of the writer's, not of an instance standing by (its
         * status said failing until its next round: t/70_persist.t read
         * it just after every memcached came back) */
        early_failure(ps, pv, "no server of the pool is live");
        apr_pool_destroy(p);
        return;
    }
    apr_thread_mutex_lock(ps->mutex);
    inforce = memsess_view_in_force(rt, pv->v);
    replicas = inforce->replicas;
    ketama = inforce->ketama;
    apr_thread_mutex_unlock(ps->mutex);
    place = memsess_place_create(p, path, replicas, ketama);
    if (!place) {
        early_failure(ps, pv, "libmemcached refuses the published list");
        apr_pool_destroy(p);
        return;
    }
    nserv = memsess_place_nservers(place);
    slots = apr_pcalloc(p, nserv * sizeof(int));
    mc = apr_pcalloc(p, nserv * sizeof(*mc));
    process = apr_pcalloc(p, nserv * sizeof(*process));
    for (i = 0; i < nserv; i++) {
        slots[i] = slot_of(rt, memsess_place_server(place, i));
        process[i] = process_of(rt, slots[i]);
        named |= slots[i] >= 0;
    }
    if (!named) {
        early_failure(ps, pv, "the published list names no server of the "
                      "pool");
        apr_pool_destroy(p);
        return;
    }
    if ((e = db_open(p, pv->view, &db)) || (e = lease(ps, pv, &db, p))) {
        db_close(&db);
        warn(ps, pv, e);
        apr_pool_destroy(p);
        return;
    }
    if (!pv->holder) {
        db_close(&db);
        stand_by(ps, pv);
        apr_pool_destroy(p);
        return;
    }
    if (!pv->loaded) {
        memsess_track_destroy(pv->track);
        pv->track = memsess_track_create();
        if ((e = db_rows(p, &db, pv->view->name, 0, load_each, pv))) {
            db_close(&db);
            warn(ps, pv, apr_pstrcat(p, "reading what is stored: ", e,
                                     NULL));
            apr_pool_destroy(p);
            return;
        }
        pv->loaded = 1;
    }
    memsess_track_round(pv->track);
    l.ps = ps;
    l.pv = pv;
    l.p = p;
    l.place = place;
    l.dirty = apr_array_make(p, 64, sizeof(dirty_t));
    for (i = 0; i < nserv && !ps->stop; i++) {
        char host[256];
        const char *name = memsess_place_server(place, i);
        const char *colon = strrchr(name, ':');
        apr_status_t rv;

        if (!colon || slots[i] < 0) {
            complete = 0;
            continue;
        }
        apr_cpystrn(host, name, (apr_size_t)(colon - name) + 1 < sizeof(host)
                    ? (apr_size_t)(colon - name) + 1 : sizeof(host));
        if (host[0] == '[') {
            memmove(host, host + 1, strlen(host));
            host[strlen(host) - 1] = '\0';
        }
        l.i = i;
        l.process = process[i];
        rv = memsess_dump_list(p, host, (apr_port_t)atoi(colon + 1),
                               apr_time_from_sec(2), &ps->stop, listed, &l,
                               err, sizeof(err));
        if (rv != APR_SUCCESS) {
            complete = 0;
        }
        mc[i] = memsess_connect(rt, slots[i], OP_TIMEOUT);
    }
    /* write what changed, a batch per authority, within the rate */
    left = memsess_persist_budget(pv->view->persist_rate,
                                  pv->view->persist_interval);
    e = NULL;
    for (i = 0; i < nserv && !e && left > 0 && !ps->stop; i++) {
        dirty_t *batch = apr_palloc(p, BATCH * sizeof(dirty_t));
        int k, nb = 0;

        /* (never more than BATCH in it: a batch goes out full, or is
         * dropped when its authority cannot be reached; the rest waits
         * for the next round once the rate's budget is spent) */
        for (k = 0; k <= l.dirty->nelts && !e && left > 0; k++) {
            if (k < l.dirty->nelts
                && APR_ARRAY_IDX(l.dirty, k, dirty_t).at == i) {
                batch[nb++] = APR_ARRAY_IDX(l.dirty, k, dirty_t);
            }
            if (nb && (nb == BATCH || k == l.dirty->nelts)) {
                apr_pool_t *bp;

                if (mc[i]) {
                    apr_pool_create(&bp, p);
                    e = write_batch(ps, pv, &db, bp, mc[i], process[i],
                                    batch, nb, &left);
                    e = e ? apr_pstrdup(p, e) : NULL;
                    apr_pool_destroy(bp);
                }
                nb = 0;
            }
        }
    }
    if (!e && complete && !ps->stop) {
        w.ps = ps;
        w.pv = pv;
        w.db = &db;
        w.p = p;
        w.place = place;
        w.mc = mc;
        w.process = process;
        w.err = NULL;
        {
            apr_dbd_transaction_t *txn;

            w.err = fenced_begin(ps, pv, &db, p, &txn);
            if (!w.err) {
                memsess_track_unseen(pv->track, unseen, &w);
            }
            e = fenced_end(&db, p, txn, w.err);
        }
    }
    memsess_track_prune(pv->track);
    if (!e) {
        int nrows;

        apr_dbd_pvquery(db.drv, p, db.h, &nrows, db.purge, pv->view->name,
                        apr_psprintf(p, "%" APR_INT64_T_FMT,
                                     apr_time_sec(apr_time_now())), NULL);
    }
    db_close(&db);
    for (i = 0; i < nserv; i++) {
        memsess_disconnect(mc[i]);
    }
    if (e) {
        if (db.rolled_back) {
            pv->loaded = 0;   /* what is stored is not what we know */
        }
        if (pv->holder) {
            warn(ps, pv, e);
        }
        else {
            /* the lease went to another (MEMSESS0180): it writes */
            stand_by(ps, pv);
        }
    }
    else if (!complete) {
        warn(ps, pv, err[0] ? err : "a server could not be listed");
    }
    else {
        if (pv->failing) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                         "MEMSESS0175: sessions of %s are written behind "
                         "again", pv->view->name);
        }
        pv->failing = 0;
        if (!memsess_track_pending(pv->track)) {
            pv->last_ok = apr_time_sec(apr_time_now());
        }
        status_note(ps, pv, MEMSESS_PERSIST_ROLE_WRITER, "");
    }
    apr_pool_destroy(p);
}

static void *APR_THREAD_FUNC persist_thread(apr_thread_t *thread, void *data)
{
    memsess_persist_t *ps = data;

    (void)thread;
    while (!ps->stop) {
        apr_time_t now = apr_time_now();
        int k;

        for (k = 0; k < ps->n && !ps->stop; k++) {
            pview_t *pv = &ps->pv[k];

            if (now >= pv->next) {
                pv->next = now + pv->view->persist_interval;
                round_view(ps, pv);
            }
        }
        apr_sleep(apr_time_from_msec(100));
    }
    return NULL;
}

memsess_persist_t *memsess_persist_start(memsess_runtime_t *rt,
                                         apr_pool_t *pool,
                                         apr_thread_mutex_t *mutex)
{
    memsess_persist_t *ps = apr_pcalloc(pool, sizeof(*ps));
    apr_threadattr_t *attr;
    int v;

    ps->rt = rt;
    ps->pool = pool;
    ps->mutex = mutex;
    ps->pv = apr_pcalloc(pool, rt->confs->nelts * sizeof(pview_t));
    for (v = 0; v < rt->confs->nelts; v++) {
        if (rt->views[v].persist == MEMSESS_PERSIST_DBD) {
            pview_t *pv = &ps->pv[ps->n++];

            pv->view = &rt->views[v];
            pv->v = v;
            pv->track = memsess_track_create();
            /* the first round once the probes have had their say */
            pv->next = apr_time_now() + 4 * rt->g.interval;
        }
    }
    if (!ps->n) {
        return NULL;
    }
    apr_threadattr_create(&attr, pool);
    if (apr_thread_create(&ps->thread, attr, persist_thread, ps, pool)
        != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, rt->main, "MEMSESS0176: "
                     "cannot start the thread that writes sessions behind");
        return NULL;
    }
    return ps;
}

void memsess_persist_stop(memsess_persist_t *ps)
{
    apr_status_t rv;
    int k;

    if (!ps) {
        return;
    }
    apr_atomic_set32(&ps->stop, 1);
    apr_thread_join(&rv, ps->thread);
    for (k = 0; k < ps->n; k++) {
        memsess_track_destroy(ps->pv[k].track);
        ps->pv[k].track = NULL;
    }
}

/* ------------------------------------------------------------------ */
/* The restore                                                         */

typedef struct {
    memsess_runtime_t   *rt;
    const memsess_view_t *view;
    memsess_place_t     *place;
    int                 *slots;        /* place index -> slot */
    int                  slot;
    const unsigned char *survivor;
    memcached_st        *mc;
    apr_pool_t          *p;
    apr_int64_t          now;
    apr_uint64_t         stored, restored, kept;
    const char          *err;
    unsigned char       *buf;
} restore_t;

static int restore_each(void *baton, const memsess_row_t *row,
                        const char *val)
{
    restore_t *x = baton;
    int where[16], ids[16], n, k;
    apr_int64_t exp = memsess_persist_restore_exp(row->exp, x->now);
    apr_size_t vlen;
    memcached_return_t rc;

    x->stored++;
    if (exp < 0 || !val) {
        return 0;
    }
    n = memsess_place_key(x->place, row->id, row->idlen, where, 16);
    for (k = 0; k < n; k++) {
        ids[k] = x->slots[where[k]];
    }
    if (!memsess_persist_restore_decide(ids, n, x->slot, x->survivor)) {
        return 0;
    }
    if (!memsess_b64_decode(val, strlen(val), x->buf,
                            MEMSESS_PERSIST_VALUE_MAX, &vlen)) {
        return 0;
    }
    rc = memcached_add(x->mc, row->key, row->keylen, (const char *)x->buf,
                       vlen, (time_t)exp, row->flags);
    if (rc == MEMCACHED_SUCCESS) {
        x->restored++;
    }
    else if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS) {
        x->kept++;   /* memcached has one: it wins */
    }
    else {
        x->err = apr_pstrcat(x->p, "restoring onto it: ",
                             memcached_strerror(x->mc, rc), NULL);
        return 1;
    }
    return 0;
}

apr_status_t memsess_persist_restore(memsess_runtime_t *rt,
                                     apr_thread_mutex_t *mutex, int v,
                                     int slot, const char *path_next,
                                     const unsigned char *survivor,
                                     apr_pool_t *pool, char *err,
                                     apr_size_t errlen)
{
    const memsess_view_t *view = &rt->views[v];
    const memsess_server_t *srv = APR_ARRAY_IDX(rt->targets, slot,
                                                memsess_server_t *);
    apr_time_t start = apr_time_now();
    restore_t x;
    db_t db;
    const char *e;
    apr_pool_t *p;
    int i, replicas, ketama;

    apr_pool_create(&p, pool);
    memset(&x, 0, sizeof(x));
    x.rt = rt;
    x.view = view;
    x.slot = slot;
    x.survivor = survivor;
    x.p = p;
    x.now = apr_time_sec(start);
    apr_thread_mutex_lock(mutex);
    replicas = memsess_view_in_force(rt, v)->replicas;
    ketama = memsess_view_in_force(rt, v)->ketama;
    apr_thread_mutex_unlock(mutex);
    x.place = memsess_place_create(p, path_next, replicas, ketama);
    if (!x.place) {
        apr_pool_destroy(p);
        return APR_SUCCESS;
    }
    x.slots = apr_palloc(p, memsess_place_nservers(x.place) * sizeof(int));
    for (i = 0; i < memsess_place_nservers(x.place); i++) {
        x.slots[i] = slot_of(rt, memsess_place_server(x.place, i));
    }
    if ((e = db_open(p, view, &db))) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, rt->main, "MEMSESS0177: "
                     "memcached server %s came back empty, but the sessions "
                     "of %s cannot be restored: %s", srv->addr, view->name,
                     e);
        apr_pool_destroy(p);
        return APR_SUCCESS;
    }
    x.mc = memsess_connect(rt, slot, OP_TIMEOUT);
    x.buf = apr_palloc(p, MEMSESS_PERSIST_VALUE_MAX);
    if (!x.mc) {
        db_close(&db);
        apr_snprintf(err, errlen, "cannot connect to %s to restore",
                     srv->addr);
        apr_pool_destroy(p);
        return APR_EGENERAL;
    }
    e = db_rows(p, &db, view->name, 1, restore_each, &x);
    db_close(&db);
    memsess_disconnect(x.mc);
    if (x.err) {
        apr_cpystrn(err, x.err, errlen);
        apr_pool_destroy(p);
        return APR_EGENERAL;
    }
    if (e) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, rt->main, "MEMSESS0177: "
                     "memcached server %s came back empty, but the sessions "
                     "of %s cannot be restored: %s", srv->addr, view->name,
                     e);
    }
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0178: "
                 "memcached server %s came back empty: %" APR_UINT64_T_FMT
                 " sessions of %s restored from the database before it is "
                 "published, %" APR_UINT64_T_FMT " already in memcached "
                 "(kept), %" APR_UINT64_T_FMT " stored in all, in %"
                 APR_TIME_T_FMT "ms", srv->addr, x.restored, view->name,
                 x.kept, x.stored, apr_time_as_msec(apr_time_now() - start));
    apr_thread_mutex_lock(mutex);
    memsess_table_write_begin(rt->table);
    {
        memsess_view_slot_t *vs = memsess_table_view_slot(rt->table, v);

        vs->persist_restores++;
        vs->persist_restored += x.restored;
    }
    memsess_table_write_end(rt->table);
    apr_thread_mutex_unlock(mutex);
    apr_pool_destroy(p);
    return APR_SUCCESS;
}
