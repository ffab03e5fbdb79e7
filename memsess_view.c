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

/* What a view publishes from and gives: its pool or, while a rebalance is
 * pending, the one before; the save_path it gives with one server counted
 * live or not; the fingerprint of every view's pool; the NOTICE when none
 * of its servers is live.  The checker, the exchange, the rejoin syncs,
 * the rebalance and persistence all use these: none of them calls another
 * for it. */

#include "apr_strings.h"

#include "httpd.h"
#include "http_log.h"

#include "memsess_view.h"
#include "memsess_pool.h"
#include "memsess_table.h"
#include "memsess_verdicts.h"

APLOG_USE_MODULE(memsess);

/* The list in force as a table records it: every server, config order,
 * memcached syntax. */
const char *memsess_served_text(apr_pool_t *p, const memsess_pool_t *pool)
{
    apr_size_t len = memsess_path_build(NULL, 0, pool, NULL,
                                        MEMSESS_FORMAT_MEMCACHED,
                                        MEMSESS_FAILOVER_DROP);
    char *buf = apr_palloc(p, len + 1);

    memsess_path_build(buf, len + 1, pool, NULL, MEMSESS_FORMAT_MEMCACHED,
                       MEMSESS_FAILOVER_DROP);
    return buf;
}

/* What view v publishes from: its pool, or the one before while a
 * rebalance is pending.  The caller holds the checker's mutex. */
const memsess_view_t *memsess_view_in_force(const memsess_runtime_t *rt,
                                            int v)
{
    const memsess_view_t *view = &rt->views[v];

    return view->before && memsess_table_view_slot(rt->table, v)->rebalance
           ? view->before : view;
}

const char *memsess_prefix_in_force(const memsess_runtime_t *rt,
                                    const int *only)
{
    int v;

    for (v = 0; v < rt->confs->nelts; v++) {
        const memsess_view_t *view = memsess_view_in_force(rt, v);

        if ((!only || only[v])
            && strcmp(view->sess_prefix, rt->g.sess_prefix)) {
            return view->sess_prefix;
        }
    }
    return rt->g.sess_prefix;
}

apr_uint64_t memsess_pools_fingerprint(apr_pool_t *p,
                                       const memsess_runtime_t *rt,
                                       int in_force)
{
    apr_uint64_t h = MEMSESS_FNV1A_INIT;
    int v;

    for (v = 0; v < rt->confs->nelts; v++) {
        const memsess_view_t *view = in_force ? memsess_view_in_force(rt, v)
                                              : &rt->views[v];

        h = memsess_fnv1a_more(h, apr_psprintf(p, "%s/%d/%d/%d/%d;",
                               memsess_served_text(p, view->pool),
                               view->replicas, (int)view->failover,
                               view->ketama, (int)view->format));
        /* the namespace places nothing, but instances that inject
         * different ones do not share sessions: told apart as pools are
         * (the default left out, so that a group upgraded one instance at
         * a time agrees) */
        if (view->sess_prefix
            && strcmp(view->sess_prefix, MEMSESS_SESS_PREFIX)) {
            h = memsess_fnv1a_more(h, apr_pstrcat(p, "ns=",
                                                  view->sess_prefix, NULL));
        }
    }
    return h;
}

/* The save_path a view (a definition: in force or not) gives, with slot i
 * counted live or not (i < 0: none): what memsess_table_publish writes.
 * The caller holds the checker's mutex. */
const char *memsess_view_path(apr_pool_t *p, const memsess_runtime_t *rt,
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
                  : MEMSESS_SLOT_LIVE(memsess_table_slot(rt->table, s));
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

/* A vhost's pool went into (or out of) the state where none is live. */
void memsess_view_log_all_down(const memsess_runtime_t *rt,
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
