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

/* The memsess-status handler: one snapshot of the shared table, then one
 * small function per format (HTML, ?auto, ?json, ?metrics), and a section
 * in mod_status's server-status. */

#include "apr_strings.h"

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mod_core.h"
#include "util_script.h"
#include "mod_status.h"

#include "memsess_status.h"
#include "memsess_config.h"
#include "memsess_persist.h"
#include "memsess_table.h"

APLOG_USE_MODULE(memsess);

typedef struct {
    memsess_runtime_t *rt;
    memsess_slot_t    *slots;
    int                nslots;
    apr_uint64_t       generation;
    apr_uint64_t       changes;
    memsess_view_slot_t *views;    /* [nviews]: pool changes */
    const char         **published;   /* [nviews]: their save_paths */
    int                 twin;      /* another instance has our name */
    memsess_peer_clock_t peers[MEMSESS_PEERS_SHOWN];   /* the others */
    int                 npeers;
} snapshot_t;

static void take_snapshot(apr_pool_t *p, memsess_runtime_t *rt,
                          snapshot_t *snap)
{
    int i, n;

    snap->rt = rt;
    snap->nslots = rt ? memsess_table_nslots(rt->table) : 0;
    snap->slots = apr_pcalloc(p, (snap->nslots + 1) * sizeof(memsess_slot_t));
    snap->generation = rt ? memsess_table_generation(rt->table) : 0;
    snap->changes = rt ? memsess_table_state_changes(rt->table) : 0;
    snap->twin = rt ? memsess_table_twin(rt->table) : 0;
    snap->npeers = rt ? memsess_table_peers(rt->table, snap->peers,
                                            MEMSESS_PEERS_SHOWN) : 0;
    for (i = 0; i < snap->nslots; i++) {
        memsess_table_read_slot(rt->table, i, &snap->slots[i]);
    }
    n = rt ? memsess_table_nviews(rt->table) : 0;
    snap->views = apr_pcalloc(p, (n + 1) * sizeof(memsess_view_slot_t));
    snap->published = apr_pcalloc(p, (n + 1) * sizeof(char *));
    for (i = 0; i < n; i++) {
        apr_uint32_t len, nlive;
        char *buf;

        memsess_table_read_view_slot(rt->table, i, &snap->views[i]);
        buf = apr_palloc(p, snap->views[i].capacity + 1);
        memsess_table_read_view(rt->table, i, buf,
                                snap->views[i].capacity + 1, &len, &nlive,
                                NULL, NULL);
        snap->published[i] = buf;
    }
}

/* The pool change of pool i's view (NULL when it has none). */
static const memsess_view_slot_t *pool_change(const snapshot_t *snap,
                                              const memsess_srv_conf *conf)
{
    return conf->view >= 0 && conf->view < memsess_table_nviews(
               snap->rt->table) ? &snap->views[conf->view] : NULL;
}

/* "rebalancing", "waiting" or "none"; progress in the others. */
static const char *rebalance_state(const snapshot_t *snap,
                                   const memsess_srv_conf *conf)
{
    const memsess_view_slot_t *vs = pool_change(snap, conf);

    return memsess_rebalance_name(vs ? vs->rebalance : 0);
}

/* Persistence of pool i's view: NULL when it does not persist. */
static const memsess_view_slot_t *persisted(const snapshot_t *snap,
                                            const memsess_srv_conf *conf)
{
    const memsess_view_slot_t *vs = pool_change(snap, conf);

    return vs && snap->rt->views[conf->view].persist == MEMSESS_PERSIST_DBD
           ? vs : NULL;
}

/* Seconds since the last whole round was written (-1: never). */
static apr_int64_t persist_lag(const memsess_view_slot_t *vs)
{
    return vs->persist_last_write
           ? apr_time_sec(apr_time_now()) - vs->persist_last_write : -1;
}

/* The pools are listed by vhost: a vhost that shares the main server's
 * configuration is listed too, under its own name. */
static int npools(const snapshot_t *snap)
{
    return snap->rt ? snap->rt->vhosts->nelts : 0;
}

static const memsess_vhost_t *pool_vhost(const snapshot_t *snap, int i)
{
    return &APR_ARRAY_IDX(snap->rt->vhosts, i, memsess_vhost_t);
}

static const memsess_server_t *member(const memsess_srv_conf *conf, int i)
{
    return &APR_ARRAY_IDX(conf->pool->servers, i, memsess_server_t);
}

static int member_live(const snapshot_t *snap, const memsess_server_t *srv)
{
    return MEMSESS_SLOT_LIVE(&snap->slots[srv->slot]);
}

/* Which sync last published the server: "full", "delta" or "" (never). */
static const char *sync_mode_name(const memsess_slot_t *sl)
{
    return sl->sync_mode == MEMSESS_SYNC_DELTA ? "delta"
           : sl->sync_mode == MEMSESS_SYNC_FULL ? "full" : "";
}

/* The state a server is in for this instance: down when another instance
 * of the group sees it down, whatever our own probes say, unless we sync
 * it (or wait for its sync). */
static const char *state_name(const memsess_slot_t *sl)
{
    return memsess_state_name(MEMSESS_SLOT_LIVE(sl) || !sl->peer_down
                              || sl->state == MEMSESS_SYNCING
                              ? sl->state : MEMSESS_DOWN);
}

/* A running sync's copies a second since it began; 0 when none runs. */
static apr_uint64_t sync_rate(const memsess_slot_t *sl)
{
    apr_int64_t secs = apr_time_sec(apr_time_now()) - sl->sync_started;

    if (sl->state != MEMSESS_SYNCING || !sl->sync_started) {
        return 0;
    }
    return sl->sync_copied / (apr_uint64_t)(secs > 0 ? secs : 1);
}

/* When a running job's first pass over every key should end (unix
 * seconds), from how much of it was listed in how long; 0 when not known
 * (nothing runs, nothing listed or expected yet, or that pass is over:
 * the passes after it look only at what changed meanwhile). */
static apr_int64_t expected_end(int running, apr_int64_t started,
                                apr_uint64_t listed, apr_uint64_t expected)
{
    apr_time_t now = apr_time_now();
    apr_time_t elapsed = now - apr_time_from_sec(started);

    if (!running || !started || !listed || !expected || listed >= expected
        || elapsed < 0) {
        return 0;
    }
    return apr_time_sec(now)
           + (apr_int64_t)((double)elapsed / APR_USEC_PER_SEC
                           * (double)(expected - listed) / (double)listed
                           + 0.5);
}

static apr_int64_t sync_end(const memsess_slot_t *sl)
{
    return expected_end(sl->state == MEMSESS_SYNCING, sl->sync_started,
                        sl->sync_listed, sl->sync_expected);
}

static apr_int64_t rebalance_end(const memsess_view_slot_t *vs)
{
    return expected_end(vs->rebalance == MEMSESS_REBALANCE_RUNNING,
                        vs->rebalance_started, vs->rebalance_listed,
                        vs->rebalance_expected);
}

/* Who sees it down: this instance (by its own probes) first, then the
 * others of the group; "" when nobody does. */
static const char *reported_by(const snapshot_t *snap,
                               const memsess_slot_t *sl, apr_pool_t *p)
{
    const char *self = sl->state == MEMSESS_DOWN ? snap->rt->g.instance : "";
    const char *others = sl->peer_down ? sl->reported_by : "";

    return apr_pstrcat(p, self, *self && *others ? ", " : "", others, NULL);
}

/* How many servers of a pool are live; of the whole table when conf is
 * NULL. */
static int count_live(const snapshot_t *snap, const memsess_srv_conf *conf)
{
    int n = conf ? conf->pool->servers->nelts : snap->nslots, i, live = 0;

    for (i = 0; i < n; i++) {
        live += MEMSESS_SLOT_LIVE(&snap->slots[conf ? member(conf, i)->slot
                                                    : i]);
    }
    return live;
}

/* Sets the type; whether a body follows (not for HEAD). */
static int begin(request_rec *r, const char *type)
{
    ap_set_content_type(r, type);
    return !r->header_only;
}

/* ------------------------------------------------------------------ */
/* ?json                                                              */

static const char *json_str(apr_pool_t *p, const char *s)
{
    apr_size_t len = strlen(s), i;
    char *out = apr_palloc(p, len * 6 + 3), *o = out;

    *o++ = '"';
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        }
        else if (c < 0x20 || c >= 0x7f) {
            /* control characters, and bytes that may not be UTF-8 */
            o += apr_snprintf(o, 7, "\\u%04x", c);
        }
        else {
            *o++ = (char)c;
        }
    }
    *o++ = '"';
    *o = '\0';
    return out;
}

static void json_addr_list(request_rec *r, const snapshot_t *snap,
                           const memsess_srv_conf *conf, int live_only)
{
    int i, first = 1;

    ap_rputs("[", r);
    for (i = 0; i < conf->pool->servers->nelts; i++) {
        const memsess_server_t *srv = member(conf, i);

        if (live_only && !member_live(snap, srv)) {
            continue;
        }
        ap_rvputs(r, first ? "" : ", ", json_str(r->pool, srv->addr), NULL);
        first = 0;
    }
    ap_rputs("]", r);
}

static void show_json(request_rec *r, const snapshot_t *snap)
{
    int i;

    if (!begin(r, "application/json")) {
        return;
    }
    ap_rprintf(r, "{\"generation\": %" APR_UINT64_T_FMT ",\n"
               " \"instance\": %s, \"group\": %s, \"namespace\": %s,\n"
               " \"share_verdicts\": %s, \"twin\": %s,\n \"peers\": [",
               snap->generation,
               json_str(r->pool, snap->rt ? snap->rt->g.instance : ""),
               json_str(r->pool, snap->rt ? snap->rt->g.group : ""),
               json_str(r->pool, snap->rt ? snap->rt->g.sess_prefix : ""),
               snap->rt && snap->rt->g.share ? "true" : "false",
               snap->twin ? "true" : "false");
    for (i = 0; i < snap->npeers; i++) {
        const memsess_peer_clock_t *pc = &snap->peers[i];

        ap_rprintf(r, "%s\n  {\"instance\": %s, \"clock_skew_ms\": %s, "
                   "\"clock_skew_error_ms\": %s, \"seen\": %"
                   APR_INT64_T_FMT "}", i ? "," : "",
                   json_str(r->pool, pc->name),
                   pc->error_ms < 0 ? "null"
                   : apr_psprintf(r->pool, "%" APR_INT64_T_FMT, pc->skew_ms),
                   pc->error_ms < 0 ? "null"
                   : apr_psprintf(r->pool, "%" APR_INT64_T_FMT, pc->error_ms),
                   pc->seen);
    }
    ap_rputs("],\n \"servers\": [", r);
    for (i = 0; i < snap->nslots; i++) {
        const memsess_slot_t *sl = &snap->slots[i];
        const char *who = reported_by(snap, sl, r->pool), *w, *comma;

        ap_rprintf(r, "%s\n  {\"address\": %s, \"state\": \"%s\", "
                   "\"checks\": %" APR_UINT64_T_FMT ", \"failures\": %"
                   APR_UINT64_T_FMT ", \"consecutive_fails\": %u, "
                   "\"consecutive_passes\": %u, \"last_change\": %"
                   APR_INT64_T_FMT ", \"last_error\": %s, \"latency_us\": %"
                   APR_UINT64_T_FMT ", \"local_state\": \"%s\", "
                   "\"sync_started\": %" APR_INT64_T_FMT
                   ", \"sync_examined\": %" APR_UINT64_T_FMT
                   ", \"sync_copied\": %" APR_UINT64_T_FMT
                   ", \"sync_deleted\": %" APR_UINT64_T_FMT
                   ", \"sync_memory\": %" APR_UINT64_T_FMT
                   ", \"sync_rate\": %" APR_UINT64_T_FMT
                   ", \"sync_listed\": %" APR_UINT64_T_FMT
                   ", \"sync_expected\": %" APR_UINT64_T_FMT
                   ", \"sync_end\": %" APR_INT64_T_FMT
                   ", \"syncs\": %" APR_UINT64_T_FMT ", \"sync_by\": %s, "
                   "\"sync_mode\": \"%s\", \"reported_by\": [", i ? "," : "",
                   json_str(r->pool, sl->addr), state_name(sl),
                   sl->checks, sl->failures, sl->consecutive_fails,
                   sl->consecutive_passes, sl->last_change,
                   json_str(r->pool, sl->last_error), sl->latency_us,
                   memsess_state_name(sl->state), sl->sync_started,
                   sl->sync_examined, sl->sync_copied, sl->sync_deleted,
                   sl->sync_memory, sync_rate(sl), sl->sync_listed,
                   sl->sync_expected, sync_end(sl),
                   sl->syncs, json_str(r->pool, sl->sync_by),
                   sync_mode_name(sl));
        for (w = who; *w; w = *comma ? comma + 2 : comma) {
            comma = strchr(w, ',');
            if (!comma) {
                comma = w + strlen(w);
            }
            ap_rvputs(r, w == who ? "" : ", ", json_str(r->pool,
                      apr_pstrmemdup(r->pool, w, comma - w)), NULL);
        }
        ap_rputs("]}", r);
    }
    ap_rputs("],\n \"pools\": [", r);
    for (i = 0; i < npools(snap); i++) {
        const memsess_srv_conf *conf = pool_vhost(snap, i)->conf;

        ap_rvputs(r, i ? "," : "", "\n  {\"vhost\": ",
                  json_str(r->pool, pool_vhost(snap, i)->name),
                  ", \"configured\": ", NULL);
        json_addr_list(r, snap, conf, 0);
        ap_rputs(", \"live\": ", r);
        json_addr_list(r, snap, conf, 1);
        if (pool_change(snap, conf)) {
            const memsess_view_slot_t *vs = pool_change(snap, conf);

            ap_rprintf(r, ", \"published\": %s, \"rebalance\": "
                       "{\"state\": \"%s\", \"runs\": %u, \"started\": %"
                       APR_INT64_T_FMT ", \"examined\": %" APR_UINT64_T_FMT
                       ", \"copied\": %" APR_UINT64_T_FMT ", \"deleted\": %"
                       APR_UINT64_T_FMT ", \"listed\": %" APR_UINT64_T_FMT
                       ", \"expected\": %" APR_UINT64_T_FMT ", \"end\": %"
                       APR_INT64_T_FMT ", \"last_error\": %s}",
                       json_str(r->pool, snap->published[conf->view]),
                       rebalance_state(snap, conf), vs->rebalance_runs,
                       vs->rebalance_started, vs->rebalance_examined,
                       vs->rebalance_copied, vs->rebalance_deleted,
                       vs->rebalance_listed, vs->rebalance_expected,
                       rebalance_end(vs),
                       json_str(r->pool, vs->rebalance_error));
        }
        if (persisted(snap, conf)) {
            const memsess_view_slot_t *vs = persisted(snap, conf);

            ap_rprintf(r, ", \"persist\": {\"role\": \"%s\", \"window_ms\": %"
                       APR_INT64_T_FMT ", \"stored\": %" APR_UINT64_T_FMT
                       ", \"pending\": %" APR_UINT64_T_FMT ", \"last_write\": %"
                       APR_INT64_T_FMT ", \"lag\": %" APR_INT64_T_FMT
                       ", \"written\": %" APR_UINT64_T_FMT ", \"deleted\": %"
                       APR_UINT64_T_FMT ", \"restores\": %" APR_UINT64_T_FMT
                       ", \"restored\": %" APR_UINT64_T_FMT
                       ", \"last_error\": %s}",
                       memsess_persist_role_name(vs->persist_role),
                       vs->persist_interval_ms, vs->persist_stored,
                       vs->persist_pending, vs->persist_last_write,
                       persist_lag(vs), vs->persist_written,
                       vs->persist_deleted, vs->persist_restores,
                       vs->persist_restored,
                       json_str(r->pool, vs->persist_error));
        }
        ap_rputs("}", r);
    }
    ap_rputs("]}\n", r);
}

/* ------------------------------------------------------------------ */
/* ?auto                                                              */

/* Keeps a value on its line. */
static const char *one_line(apr_pool_t *p, const char *s)
{
    char *out = apr_pstrdup(p, s);

    memsess_text_one_line(out);
    return out;
}

static void show_auto(request_rec *r, const snapshot_t *snap)
{
    int i;

    if (!begin(r, "text/plain; charset=ISO-8859-1")) {
        return;
    }
    ap_rprintf(r, "MemsessGeneration: %" APR_UINT64_T_FMT "\n"
               "MemsessStateChanges: %" APR_UINT64_T_FMT "\n"
               "MemsessServers: %d\nMemsessPools: %d\n", snap->generation,
               snap->changes, snap->nslots, npools(snap));
    if (snap->rt) {
        ap_rprintf(r, "MemsessInstance: %s\nMemsessGroup: %s\n"
                   "MemsessNamespace: %s\n"
                   "MemsessShareVerdicts: %s\nMemsessTwin: %d\n",
                   one_line(r->pool, snap->rt->g.instance),
                   one_line(r->pool, snap->rt->g.group),
                   one_line(r->pool, snap->rt->g.sess_prefix),
                   snap->rt->g.share ? "On" : "Off", snap->twin);
        ap_rprintf(r, "MemsessPeers: %d\n", snap->npeers);
        for (i = 0; i < snap->npeers; i++) {
            const memsess_peer_clock_t *pc = &snap->peers[i];

            ap_rprintf(r, "MemsessPeer[%d]Instance: %s\n", i,
                       one_line(r->pool, pc->name));
            if (pc->error_ms >= 0) {
                ap_rprintf(r, "MemsessPeer[%d]ClockSkewMs: %" APR_INT64_T_FMT
                           "\nMemsessPeer[%d]ClockSkewErrorMs: %"
                           APR_INT64_T_FMT "\n", i, pc->skew_ms, i,
                           pc->error_ms);
            }
        }
    }
    for (i = 0; i < snap->nslots; i++) {
        const memsess_slot_t *sl = &snap->slots[i];

        ap_rprintf(r, "MemsessServer[%d]Address: %s\n"
                   "MemsessServer[%d]State: %s\n"
                   "MemsessServer[%d]Checks: %" APR_UINT64_T_FMT "\n"
                   "MemsessServer[%d]Failures: %" APR_UINT64_T_FMT "\n"
                   "MemsessServer[%d]ConsecutiveFails: %u\n"
                   "MemsessServer[%d]ConsecutivePasses: %u\n"
                   "MemsessServer[%d]LastChange: %" APR_INT64_T_FMT "\n"
                   "MemsessServer[%d]LatencyUs: %" APR_UINT64_T_FMT "\n"
                   "MemsessServer[%d]LastError: %s\n"
                   "MemsessServer[%d]LocalState: %s\n"
                   "MemsessServer[%d]ReportedBy: %s\n"
                   "MemsessServer[%d]SyncExamined: %" APR_UINT64_T_FMT "\n"
                   "MemsessServer[%d]SyncCopied: %" APR_UINT64_T_FMT "\n"
                   "MemsessServer[%d]SyncDeleted: %" APR_UINT64_T_FMT "\n"
                   "MemsessServer[%d]SyncMemory: %" APR_UINT64_T_FMT "\n"
                   "MemsessServer[%d]SyncRate: %" APR_UINT64_T_FMT "\n"
                   "MemsessServer[%d]SyncListed: %" APR_UINT64_T_FMT "\n"
                   "MemsessServer[%d]SyncExpected: %" APR_UINT64_T_FMT "\n"
                   "MemsessServer[%d]SyncEnd: %" APR_INT64_T_FMT "\n"
                   "MemsessServer[%d]Syncs: %" APR_UINT64_T_FMT "\n"
                   "MemsessServer[%d]SyncBy: %s\n"
                   "MemsessServer[%d]SyncMode: %s\n",
                   i, one_line(r->pool, sl->addr), i,
                   state_name(sl), i, sl->checks, i,
                   sl->failures, i, sl->consecutive_fails, i,
                   sl->consecutive_passes, i, sl->last_change, i,
                   sl->latency_us, i, one_line(r->pool, sl->last_error), i,
                   memsess_state_name(sl->state), i,
                   one_line(r->pool, reported_by(snap, sl, r->pool)),
                   i, sl->sync_examined, i, sl->sync_copied, i,
                   sl->sync_deleted, i, sl->sync_memory, i, sync_rate(sl), i,
                   sl->sync_listed, i, sl->sync_expected, i, sync_end(sl), i,
                   sl->syncs, i,
                   one_line(r->pool, sl->sync_by), i, sync_mode_name(sl));
    }
    for (i = 0; i < npools(snap); i++) {
        const memsess_srv_conf *conf = pool_vhost(snap, i)->conf;

        const memsess_view_slot_t *vs = pool_change(snap, conf);

        ap_rprintf(r, "MemsessPool[%d]Vhost: %s\nMemsessPool[%d]Live: %d/%d\n",
                   i, one_line(r->pool, pool_vhost(snap, i)->name), i,
                   count_live(snap, conf), conf->pool->servers->nelts);
        if (vs) {
            ap_rprintf(r, "MemsessPool[%d]Rebalance: %s\n"
                       "MemsessPool[%d]RebalanceExamined: %" APR_UINT64_T_FMT
                       "\nMemsessPool[%d]RebalanceCopied: %" APR_UINT64_T_FMT
                       "\nMemsessPool[%d]RebalanceDeleted: %" APR_UINT64_T_FMT
                       "\nMemsessPool[%d]RebalanceListed: %" APR_UINT64_T_FMT
                       "\nMemsessPool[%d]RebalanceExpected: %" APR_UINT64_T_FMT
                       "\nMemsessPool[%d]RebalanceEnd: %" APR_INT64_T_FMT
                       "\n", i, rebalance_state(snap, conf), i,
                       vs->rebalance_examined, i, vs->rebalance_copied, i,
                       vs->rebalance_deleted, i, vs->rebalance_listed, i,
                       vs->rebalance_expected, i, rebalance_end(vs));
        }
        if (persisted(snap, conf)) {
            vs = persisted(snap, conf);
            ap_rprintf(r, "MemsessPool[%d]Persist: %s\n"
                       "MemsessPool[%d]PersistWindowMs: %" APR_INT64_T_FMT "\n"
                       "MemsessPool[%d]PersistStored: %" APR_UINT64_T_FMT "\n"
                       "MemsessPool[%d]PersistLastWrite: %" APR_INT64_T_FMT "\n"
                       "MemsessPool[%d]PersistLag: %" APR_INT64_T_FMT "\n"
                       "MemsessPool[%d]PersistRestores: %" APR_UINT64_T_FMT "\n"
                       "MemsessPool[%d]PersistRestored: %" APR_UINT64_T_FMT "\n"
                       "MemsessPool[%d]PersistLastError: %s\n",
                       i, memsess_persist_role_name(vs->persist_role),
                       i, vs->persist_interval_ms, i, vs->persist_stored,
                       i, vs->persist_last_write, i, persist_lag(vs),
                       i, vs->persist_restores, i, vs->persist_restored,
                       i, one_line(r->pool, vs->persist_error));
        }
    }
}

/* ------------------------------------------------------------------ */
/* ?metrics: Prometheus text exposition                               */

static const char *prom_label(apr_pool_t *p, const char *s)
{
    apr_size_t len = strlen(s), i;
    char *out = apr_palloc(p, len * 2 + 1), *o = out;

    for (i = 0; i < len; i++) {
        if (s[i] == '\\' || s[i] == '"') {
            *o++ = '\\';
            *o++ = s[i];
        }
        else if (s[i] == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        }
        else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

static void show_metrics(request_rec *r, const snapshot_t *snap)
{
    static const struct {
        const char *name, *type, *help;
    } m[] = {
        { "memsess_server_up", "gauge",
          "1 when the server gets sessions (up or unknown), 0 when down or syncing" },
        { "memsess_checks_total", "counter", "probes sent to the server" },
        { "memsess_check_failures_total", "counter", "probes that failed" },
        { "memsess_state_changes_total", "counter",
          "changes of the server's state" },
        { "memsess_check_duration_seconds", "gauge",
          "how long the last probe took" },
        { "memsess_server_peer_down", "gauge",
          "1 when another instance of the group sees the server down" },
        { "memsess_server_syncing", "gauge",
          "1 while the server's rejoin sync runs (it gets no sessions)" },
        { "memsess_sync_keys_examined", "gauge",
          "keys the server's last (or running) rejoin sync looked at" },
        { "memsess_sync_keys_copied", "gauge",
          "keys that sync copied to the server" },
        { "memsess_sync_keys_deleted", "gauge",
          "keys that sync deleted from the server" },
        { "memsess_syncs_total", "counter",
          "rejoin syncs of the server that completed" },
        { "memsess_sync_memory_bytes", "gauge",
          "bytes the tables of that sync held, at most" },
        { "memsess_sync_keys_listed", "gauge",
          "metadump lines that sync read" },
        { "memsess_sync_keys_expected", "gauge",
          "lines its first pass lists (the servers' keys as it began)" },
        { "memsess_sync_expected_end_seconds", "gauge",
          "when the first pass of the running sync should end (unix "
          "time; 0: not known)" },
    };
    int k, i;

    if (!begin(r, "text/plain; version=0.0.4; charset=utf-8")) {
        return;
    }
    for (k = 0; k < (int)(sizeof(m) / sizeof(m[0])); k++) {
        ap_rprintf(r, "# HELP %s %s\n# TYPE %s %s\n", m[k].name, m[k].help,
                   m[k].name, m[k].type);
        for (i = 0; i < snap->nslots; i++) {
            const memsess_slot_t *sl = &snap->slots[i];
            const char *label = prom_label(r->pool, sl->addr);

            switch (k) {
            case 0:
                ap_rprintf(r, "%s{server=\"%s\"} %d\n", m[k].name, label,
                           MEMSESS_SLOT_LIVE(sl));
                break;
            case 5:
                ap_rprintf(r, "%s{server=\"%s\"} %d\n", m[k].name, label,
                           sl->peer_down ? 1 : 0);
                break;
            case 1:
            case 2:
            case 3:
                ap_rprintf(r, "%s{server=\"%s\"} %" APR_UINT64_T_FMT "\n",
                           m[k].name, label, k == 1 ? sl->checks
                           : k == 2 ? sl->failures : sl->state_changes);
                break;
            case 4:
                ap_rprintf(r, "%s{server=\"%s\"} %.6f\n", m[k].name, label,
                           sl->latency_us / 1e6);
                break;
            case 6:
                ap_rprintf(r, "%s{server=\"%s\"} %d\n", m[k].name, label,
                           sl->state == MEMSESS_SYNCING);
                break;
            default:
                ap_rprintf(r, "%s{server=\"%s\"} %" APR_UINT64_T_FMT "\n",
                           m[k].name, label, k == 7 ? sl->sync_examined
                           : k == 8 ? sl->sync_copied
                           : k == 9 ? sl->sync_deleted
                           : k == 11 ? sl->sync_memory
                           : k == 12 ? sl->sync_listed
                           : k == 13 ? sl->sync_expected
                           : k == 14 ? (apr_uint64_t)sync_end(sl)
                           : sl->syncs);
            }
        }
    }
    ap_rputs("# HELP memsess_pool_rebalancing 1 while the pool's list "
             "changed at graceful and the previous one is still published\n"
             "# TYPE memsess_pool_rebalancing gauge\n", r);
    for (i = 0; i < npools(snap); i++) {
        const memsess_srv_conf *conf = pool_vhost(snap, i)->conf;
        const memsess_view_slot_t *vs = pool_change(snap, conf);

        ap_rprintf(r, "memsess_pool_rebalancing{vhost=\"%s\"} %d\n",
                   prom_label(r->pool, pool_vhost(snap, i)->name),
                   vs && vs->rebalance ? 1 : 0);
    }
    ap_rputs("# HELP memsess_rebalance_keys_copied keys the pool's last (or "
             "running) rebalance copied\n"
             "# TYPE memsess_rebalance_keys_copied gauge\n", r);
    for (i = 0; i < npools(snap); i++) {
        const memsess_view_slot_t *vs = pool_change(snap,
                                                    pool_vhost(snap, i)->conf);

        ap_rprintf(r, "memsess_rebalance_keys_copied{vhost=\"%s\"} %"
                   APR_UINT64_T_FMT "\n",
                   prom_label(r->pool, pool_vhost(snap, i)->name),
                   vs ? vs->rebalance_copied : 0);
    }
    for (i = 0; i < npools(snap); i++) {
        const memsess_view_slot_t *vs = persisted(snap,
                                                  pool_vhost(snap, i)->conf);
        const char *l = prom_label(r->pool, pool_vhost(snap, i)->name);

        if (!vs) {
            continue;
        }
        ap_rprintf(r, "memsess_persist_sessions_stored{vhost=\"%s\"} %"
                   APR_UINT64_T_FMT "\nmemsess_persist_lag_seconds{vhost="
                   "\"%s\"} %" APR_INT64_T_FMT "\nmemsess_persist_window_"
                   "seconds{vhost=\"%s\"} %.3f\nmemsess_persist_last_write_"
                   "seconds{vhost=\"%s\"} %" APR_INT64_T_FMT "\nmemsess_"
                   "persist_writer{vhost=\"%s\"} %d\nmemsess_persist_"
                   "restores_total{vhost=\"%s\"} %" APR_UINT64_T_FMT
                   "\nmemsess_persist_sessions_restored_total{vhost=\"%s\"} %"
                   APR_UINT64_T_FMT "\n", l, vs->persist_stored, l,
                   persist_lag(vs), l, vs->persist_interval_ms / 1000.0, l,
                   vs->persist_last_write, l,
                   vs->persist_role == MEMSESS_PERSIST_ROLE_WRITER, l,
                   vs->persist_restores, l, vs->persist_restored);
    }
    ap_rprintf(r, "# HELP memsess_generation bumped on every state change\n"
               "# TYPE memsess_generation gauge\nmemsess_generation %"
               APR_UINT64_T_FMT "\n", snap->generation);
    if (snap->rt) {
        ap_rprintf(r, "# HELP memsess_instance_info this instance's name and "
                   "group in shared verdicts\n# TYPE memsess_instance_info "
                   "gauge\nmemsess_instance_info{instance=\"%s\",group="
                   "\"%s\"} 1\n", prom_label(r->pool, snap->rt->g.instance),
                   prom_label(r->pool, snap->rt->g.group));
        ap_rprintf(r, "# HELP memsess_instance_twin 1 when another instance "
                   "of the group runs with this one's name (MEMSESS0099): "
                   "this one then shares nothing\n# TYPE "
                   "memsess_instance_twin gauge\nmemsess_instance_twin %d\n",
                   snap->twin);
        ap_rputs("# HELP memsess_peer_clock_skew_seconds another instance "
                 "of the group: its clock minus this one's, as measured "
                 "from its member lines (absent until measured)\n# TYPE "
                 "memsess_peer_clock_skew_seconds gauge\n", r);
        for (i = 0; i < snap->npeers; i++) {
            const memsess_peer_clock_t *pc = &snap->peers[i];

            if (pc->error_ms >= 0) {
                ap_rprintf(r, "memsess_peer_clock_skew_seconds{instance="
                           "\"%s\"} %.3f\n", prom_label(r->pool, pc->name),
                           (double)pc->skew_ms / 1000);
            }
        }
    }
}

/* ------------------------------------------------------------------ */
/* HTML                                                               */

static const char *esc(request_rec *r, const char *s)
{
    return ap_escape_html2(r->pool, s, 1);
}

/* One row per persisted pool (MemsessPersist dbd); no table when none
 * persists.  The window is what a loss of every copy costs: a session
 * that much older, a logout of that much time undone. */
static void html_persist(request_rec *r, const snapshot_t *snap)
{
    int i, shown = 0;

    for (i = 0; i < npools(snap); i++) {
        const memsess_srv_conf *conf = pool_vhost(snap, i)->conf;
        const memsess_view_slot_t *vs = persisted(snap, conf);
        char when[APR_CTIME_LEN] = "never";

        if (!vs) {
            continue;
        }
        if (!shown++) {
            ap_rputs("<table border=\"1\"><tr><th>Virtual host</th>"
                     "<th>Persistence</th><th>Window</th><th>Stored</th>"
                     "<th>Pending</th><th>Last write</th><th>Lag</th>"
                     "<th>Written</th><th>Deleted</th><th>Restores</th>"
                     "<th>Restored</th><th>Last error</th></tr>\n", r);
        }
        if (vs->persist_last_write) {
            apr_ctime(when, apr_time_from_sec(vs->persist_last_write));
        }
        ap_rprintf(r, "<tr><td>%s</td><td>%s</td><td>%.3f s</td><td>%"
                   APR_UINT64_T_FMT "</td><td>%" APR_UINT64_T_FMT "</td>"
                   "<td>%s</td><td>%s</td><td>%" APR_UINT64_T_FMT "</td><td>%"
                   APR_UINT64_T_FMT "</td><td>%" APR_UINT64_T_FMT "</td><td>%"
                   APR_UINT64_T_FMT "</td><td>%s</td></tr>\n",
                   esc(r, pool_vhost(snap, i)->name),
                   memsess_persist_role_name(vs->persist_role),
                   vs->persist_interval_ms / 1000.0, vs->persist_stored,
                   vs->persist_pending, when,
                   persist_lag(vs) < 0 ? "-" : apr_psprintf(r->pool, "%"
                       APR_INT64_T_FMT " s", persist_lag(vs)),
                   vs->persist_written, vs->persist_deleted,
                   vs->persist_restores, vs->persist_restored,
                   esc(r, vs->persist_error));
    }
    if (shown) {
        ap_rputs("</table>\n", r);
    }
}

static void html_tables(request_rec *r, const snapshot_t *snap)
{
    int i, j;

    ap_rputs("<table border=\"1\"><tr><th>Server</th><th>State</th>"
             "<th>Checks</th><th>Failures</th><th>Consecutive</th>"
             "<th>Last change</th><th>Latency</th><th>Last error</th></tr>\n",
             r);
    for (i = 0; i < snap->nslots; i++) {
        const memsess_slot_t *sl = &snap->slots[i];
        char when[APR_CTIME_LEN] = "-";

        if (sl->last_change) {
            apr_ctime(when, apr_time_from_sec(sl->last_change));
        }
        const char *who = reported_by(snap, sl, r->pool);

        ap_rprintf(r, "<tr><td>%s</td><td>%s%s%s%s</td><td>%"
                   APR_UINT64_T_FMT "</td><td>%" APR_UINT64_T_FMT "</td><td>"
                   "%u fail, %u pass</td><td>%s</td><td>%" APR_UINT64_T_FMT
                   " us</td><td>%s</td></tr>\n", esc(r, sl->addr),
                   state_name(sl), *who ? ", reported by " : "", esc(r, who),
                   sl->sync_started ? apr_psprintf(r->pool, " (sync: %"
                       APR_UINT64_T_FMT " keys examined, %" APR_UINT64_T_FMT
                       " copied%s, %" APR_UINT64_T_FMT " deleted, %"
                       APR_UINT64_T_FMT " KB held%s%s%s)",
                       sl->sync_examined, sl->sync_copied,
                       sync_rate(sl) ? apr_psprintf(r->pool, " (%"
                           APR_UINT64_T_FMT " a second)", sync_rate(sl))
                       : "", sl->sync_deleted, (sl->sync_memory + 1023) / 1024,
                       sync_end(sl) ? apr_psprintf(r->pool, "; %"
                           APR_UINT64_T_FMT " of ~%" APR_UINT64_T_FMT
                           " keys listed, its first pass ends in ~%"
                           APR_INT64_T_FMT " s", sl->sync_listed,
                           sl->sync_expected, sync_end(sl)
                           - apr_time_sec(apr_time_now())) : "",
                       *sl->sync_by ? "; by " : "", esc(r, sl->sync_by))
                   : "", sl->checks, sl->failures,
                   sl->consecutive_fails, sl->consecutive_passes, when,
                   sl->latency_us, esc(r, sl->last_error));
    }
    ap_rputs("</table>\n<table border=\"1\"><tr><th>Virtual host</th>"
             "<th>Live</th><th>Servers (config order)</th>"
             "<th>Pool change</th></tr>\n", r);
    for (i = 0; i < npools(snap); i++) {
        const memsess_srv_conf *conf = pool_vhost(snap, i)->conf;

        ap_rprintf(r, "<tr><td>%s</td><td>%d/%d</td><td>",
                   esc(r, pool_vhost(snap, i)->name),
                   count_live(snap, conf), conf->pool->servers->nelts);
        for (j = 0; j < conf->pool->servers->nelts; j++) {
            const memsess_server_t *srv = member(conf, j);

            ap_rprintf(r, "%s%s%s%s", j ? ", " : "",
                       member_live(snap, srv) ? "" : "<del>",
                       esc(r, srv->addr),
                       member_live(snap, srv) ? "" : "</del>");
        }
        if (pool_change(snap, conf) && pool_change(snap, conf)->rebalance) {
            const memsess_view_slot_t *vs = pool_change(snap, conf);

            ap_rprintf(r, "</td><td>%s: %" APR_UINT64_T_FMT " keys examined, %"
                       APR_UINT64_T_FMT " copied, %" APR_UINT64_T_FMT
                       " deleted; published meanwhile: %s%s%s</td></tr>\n",
                       rebalance_state(snap, conf), vs->rebalance_examined,
                       vs->rebalance_copied, vs->rebalance_deleted,
                       esc(r, snap->published[conf->view]),
                       vs->rebalance_error[0] ? "; last stop: " : "",
                       esc(r, vs->rebalance_error));
            continue;
        }
        ap_rputs("</td><td>-</td></tr>\n", r);
    }
    ap_rputs("</table>\n", r);
    html_persist(r, snap);
}

static void show_html(request_rec *r, const snapshot_t *snap)
{
    int i;

    if (!begin(r, "text/html; charset=ISO-8859-1")) {
        return;
    }
    ap_rputs(DOCTYPE_HTML_4_01 "<html><head><title>mod_memsess status"
             "</title></head><body>\n<h1>mod_memsess status</h1>\n", r);
    ap_rprintf(r, "<p>Generation %" APR_UINT64_T_FMT ", %" APR_UINT64_T_FMT
               " state changes. Formats: <a href=\"?auto\">auto</a>, "
               "<a href=\"?json\">json</a>, <a href=\"?metrics\">metrics</a>"
               ".</p>\n", snap->generation, snap->changes);
    if (snap->rt) {
        ap_rprintf(r, "<p>This instance: %s, group %s, verdicts %s; "
                   "sessions under <code>%s</code> (%s).</p>\n",
                   esc(r, snap->rt->g.instance), esc(r, snap->rt->g.group),
                   snap->rt->g.share ? "shared" : "not shared",
                   esc(r, snap->rt->g.sess_prefix),
                   esc(r, snap->rt->g.sess_prefix_from));
        if (snap->twin) {
            ap_rprintf(r, "<p><strong>ERROR: another instance of the group "
                       "runs with the name %s: this one shares nothing "
                       "(MEMSESS0099). Give each a MemsessInstance of its "
                       "own.</strong></p>\n", esc(r, snap->rt->g.instance));
        }
        for (i = 0; i < snap->npeers; i++) {
            const memsess_peer_clock_t *pc = &snap->peers[i];

            ap_rprintf(r, "%s%s%s", i ? ", " : "<p>Other instances heard "
                       "(their clock minus this one's): ", esc(r, pc->name),
                       pc->error_ms < 0 ? " (not measured yet)"
                       : apr_psprintf(r->pool, " %+" APR_INT64_T_FMT " ms "
                                      "(&plusmn;%" APR_INT64_T_FMT ")",
                                      pc->skew_ms, pc->error_ms));
        }
        if (snap->npeers) {
            ap_rputs(".</p>\n", r);
        }
    }
    html_tables(r, snap);
    ap_rputs("</body></html>\n", r);
}

/* ------------------------------------------------------------------ */

int memsess_status_handler(request_rec *r)
{
    snapshot_t snap;

    if (!r->handler || strcmp(r->handler, "memsess-status")) {
        return DECLINED;
    }
    /* httpd builds Allow (of a 405 and of OPTIONS) from allowed_methods;
     * GET stands for HEAD too */
    r->allowed = (AP_METHOD_BIT << M_GET) | (AP_METHOD_BIT << M_OPTIONS);
    ap_allow_standard_methods(r, REPLACE_ALLOW, M_GET, M_OPTIONS, -1);
    if (r->method_number == M_OPTIONS) {
        return ap_send_http_options(r);
    }
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    take_snapshot(r->pool, memsess_runtime(), &snap);
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    if (r->args && !strcmp(r->args, "json")) {
        show_json(r, &snap);
    }
    else if (r->args && !strcmp(r->args, "auto")) {
        show_auto(r, &snap);
    }
    else if (r->args && !strcmp(r->args, "metrics")) {
        show_metrics(r, &snap);
    }
    else {
        show_html(r, &snap);
    }
    return OK;
}

/* A section in mod_status's server-status. */
static int status_section(request_rec *r, int flags)
{
    snapshot_t snap;

    if (!memsess_runtime()) {
        return OK;
    }
    take_snapshot(r->pool, memsess_runtime(), &snap);
    if (flags & AP_STATUS_SHORT) {
        int v, rebalancing = 0;

        for (v = 0; v < memsess_table_nviews(snap.rt->table); v++) {
            rebalancing += snap.views[v].rebalance != MEMSESS_REBALANCE_NONE;
        }
        ap_rprintf(r, "MemsessGeneration: %" APR_UINT64_T_FMT "\n"
                   "MemsessServersLive: %d/%d\n"
                   "MemsessPoolsRebalancing: %d\n", snap.generation,
                   count_live(&snap, NULL), snap.nslots, rebalancing);
    }
    else {
        ap_rputs("<hr />\n<h2>mod_memsess</h2>\n", r);
        html_tables(r, &snap);
    }
    return OK;
}

void memsess_status_register(void)
{
    APR_OPTIONAL_HOOK(ap, status_hook, status_section, NULL, NULL,
                      APR_HOOK_MIDDLE);
}
