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

/* Pool changes at graceful or restart: which views' lists changed since
 * the previous generation, and what they publish meanwhile.
 *
 * Every view slot of the shared table records the list in force (the one
 * its published text is built from), its placement (replicas, failover,
 * format) and its vhost's name.  A new generation reads them from the
 * previous table in post_config: a view of the same name whose configured
 * list or placement (MemsessReplicas, MemsessFailover) differs from the
 * one in force gets that list and placement as its `before`
 * (memsess_view_t), whose servers are probed like any other, and publishes
 * and injects it until the checker's rebalance (memsess_rebalance_job.c,
 * memsess_sync.c) has put every session where the new one places it;
 * only then is the new one in force.  A second graceful before that
 * compares against what is still in force, so nothing is ever skipped.
 * A change of MemsessFormat, and pools of pecl-memcache, are published at
 * once (MEMSESS0130). */

#include <string.h>

#include "apr_strings.h"
#include "apr_hash.h"

#include "httpd.h"
#include "http_log.h"

#include "memsess_rebalance.h"
#include "memsess_adopt.h"
#include "memsess_pool.h"
#include "memsess_table.h"
#include "memsess_view.h"

APLOG_USE_MODULE(memsess);

/* The pool of a list in force, read back ("h:p:w,h:p", as
 * memsess_served_text wrote it). */
static const char *parse_served(apr_pool_t *p, const char *text,
                                memsess_pool_t **pool)
{
    apr_array_header_t *tokens = apr_array_make(p, 8, sizeof(char *));
    char *copy = apr_pstrdup(p, text), *last, *tok;

    for (tok = apr_strtok(copy, ",", &last); tok;
         tok = apr_strtok(NULL, ",", &last)) {
        APR_ARRAY_PUSH(tokens, char *) = tok;
    }
    if (!tokens->nelts) {
        return "empty";
    }
    *pool = NULL;
    return memsess_pool_parse(p, tokens->nelts, (char *const *)tokens->elts,
                              pool);
}

static const char *failover_name(memsess_failover_e failover)
{
    return failover == MEMSESS_FAILOVER_SUCCESSOR ? "successor" : "drop";
}

/* The slot of addr, given one (a server only the list before has, probed
 * for as long as it is published). */
static int slot_of(memsess_runtime_t *rt, apr_array_header_t *creds,
                   memsess_server_t *srv, const memsess_view_t *view)
{
    int i;

    for (i = 0; i < rt->targets->nelts; i++) {
        if (!strcmp(APR_ARRAY_IDX(rt->targets, i, memsess_server_t *)->addr,
                    srv->addr)) {
            return i;
        }
    }
    if (rt->targets->nelts >= MEMSESS_MAX_SERVERS) {
        return -1;
    }
    APR_ARRAY_PUSH(rt->targets, memsess_server_t *) = srv;
    APR_ARRAY_PUSH(creds, const memsess_credentials_t *) = view->credentials;
    return rt->targets->nelts - 1;
}

/* The placement in force of every view of the previous generation's
 * table. */
static apr_array_header_t *placed_of_table(apr_pool_t *p,
                                           const memsess_table_t *old)
{
    apr_array_header_t *placed = apr_array_make(p, 8,
                                                sizeof(memsess_placed_t));
    int o;

    for (o = 0; o < memsess_table_nviews(old); o++) {
        memsess_view_slot_t ovs;
        memsess_placed_t *pl;
        char *text;

        memsess_table_read_view_slot(old, o, &ovs);
        if (!ovs.served_capacity) {
            continue;
        }
        text = apr_palloc(p, ovs.served_capacity);
        memsess_table_read_served(old, o, text, ovs.served_capacity);
        pl = apr_array_push(placed);
        pl->name = apr_pstrdup(p, ovs.name);
        pl->served = text;
        pl->replicas = (int)ovs.served_replicas;
        pl->failover = (int)ovs.served_failover;
        pl->ketama = (int)ovs.served_ketama;
        pl->format = (int)ovs.served_format;
        pl->prefix = ovs.served_prefix[0] ? apr_pstrdup(p, ovs.served_prefix)
                                          : NULL;
    }
    return placed;
}

/* The entry of placed for view: of its name, else one with the same
 * servers (a renamed vhost; a vhost that had another pool's servers, say
 * the main server's, and now names them itself: its sessions are where
 * that pool's placement put them).  NULL: none. */
static const memsess_placed_t *placed_for(apr_array_header_t *placed,
                                          const memsess_view_t *view,
                                          const char *served)
{
    int i;

    for (i = 0; placed && i < placed->nelts; i++) {
        const memsess_placed_t *pl = &APR_ARRAY_IDX(placed, i,
                                                    memsess_placed_t);

        if (!strcmp(pl->name, view->name)) {
            return pl;
        }
    }
    for (i = 0; placed && i < placed->nelts; i++) {
        const memsess_placed_t *pl = &APR_ARRAY_IDX(placed, i,
                                                    memsess_placed_t);

        if (!strcmp(pl->served, served)) {
            return pl;
        }
    }
    return NULL;
}

/* Gives view the placement pl as its `before` when it differs from its
 * own (served: its own list as memsess_served_text writes it; cold: pl is
 * not from a generation that ran until now).  1 when it did. */
static int plan_view(apr_pool_t *p, memsess_runtime_t *rt,
                     apr_array_header_t *creds, memsess_view_t *view,
                     const char *served, const memsess_placed_t *pl,
                     const char *source, int cold, const char *php_prefix)
{
    const char *why;
    memsess_view_t *before;
    memsess_pool_t *pool;
    int n, k, ok = 1, placement, renamed;
    /* not recorded: php.ini's was in force (nothing injected another) */
    const char *prefix = pl->prefix ? pl->prefix : php_prefix;

    placement = pl->replicas != view->replicas
                || pl->failover != (int)view->failover
                || (pl->format == MEMSESS_FORMAT_MEMCACHED
                    && pl->ketama != view->ketama);
    renamed = pl->format == MEMSESS_FORMAT_MEMCACHED
              && view->format == MEMSESS_FORMAT_MEMCACHED
              && strcmp(prefix, view->sess_prefix) != 0;
    if (!pl->served[0] || (!strcmp(pl->served, served) && !placement
                           && !renamed && pl->format == (int)view->format)) {
        return 0;
    }
    if (pl->format != MEMSESS_FORMAT_MEMCACHED
        || view->format != MEMSESS_FORMAT_MEMCACHED) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                     "MEMSESS0130: %s: the pool changed %s, which a "
                     "rebalance does not follow (pecl-memcache places "
                     "keys its own way): the new list is published at "
                     "once, and sessions it places elsewhere are lost",
                     view->name,
                     pl->format != (int)view->format
                     ? "its MemsessFormat" : "with MemsessFormat memcache");
        return 0;
    }
    if (pl->failover > MEMSESS_FAILOVER_SUCCESSOR || pl->failover < 0
        || pl->replicas > MEMSESS_MAX_SERVERS || pl->replicas < 0
        || pl->ketama < 0 || pl->ketama > 1) {
        why = "its placement is out of range";
    }
    else {
        why = parse_served(p, pl->served, &pool);
    }
    if (why) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, rt->main,
                     "MEMSESS0131: %s: the list in force before (%s, read "
                     "from %s) cannot be read back (%s): the new list is "
                     "published at once", view->name, pl->served, source,
                     why);
        return 0;
    }
    n = pool->servers->nelts;
    for (k = 0; k < n; k++) {
        memsess_server_t *srv = &APR_ARRAY_IDX(pool->servers, k,
                                               memsess_server_t);

        srv->slot = slot_of(rt, creds, srv, view);
        ok &= srv->slot >= 0;
    }
    if (!ok) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, rt->main,
                     "MEMSESS0132: %s: the servers before and after the "
                     "change are more than %d: the new list is "
                     "published at once", view->name,
                     MEMSESS_MAX_SERVERS);
        return 0;
    }
    before = apr_pmemdup(p, view, sizeof(*view));
    before->pool = pool;
    before->replicas = pl->replicas;
    before->failover = (memsess_failover_e)pl->failover;
    before->ketama = pl->ketama;
    before->sess_prefix = apr_pstrdup(p, prefix);
    before->source = source;
    before->cold = cold;
    before->full_path = apr_pstrdup(p, pl->served);
    before->capacity = (apr_uint32_t)memsess_path_max(pool, view->format,
                                                      before->failover)
                       + 1;
    before->live_text = apr_palloc(p, (n + 1) * sizeof(const char *));
    for (k = 0; k <= n; k++) {
        before->live_text[k] = apr_psprintf(p, "%d/%d", k, n);
    }
    before->before = NULL;
    view->before = before;
    /* requests read the published text into this many bytes */
    if (before->capacity > view->capacity) {
        view->capacity = before->capacity;
    }
    if (strcmp(pl->served, served)) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0133: "
                     "%s: MemsessServers changed from %s (%s) to %s: the "
                     "previous list stays published until a rebalance "
                     "has moved every session where the new one places "
                     "it", view->name, pl->served, source, served);
    }
    if (renamed) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0200: "
                     "%s: the sessions' namespace changed from \"%s\" (%s) "
                     "to \"%s\": the previous one stays in force until a "
                     "rebalance has copied every session under the new "
                     "one (the old copies are left to expire)", view->name,
                     prefix, source, view->sess_prefix);
    }
    if (placement) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main, "MEMSESS0141: "
                     "%s: the placement changed from MemsessReplicas %d, "
                     "MemsessFailover %s, consistent hashing %s (%s) to "
                     "MemsessReplicas %d, MemsessFailover %s, consistent "
                     "hashing %s: the previous one stays in force "
                     "until a rebalance has moved every session where the "
                     "new one places it", view->name, before->replicas,
                     failover_name(before->failover),
                     before->ketama ? "On" : "Off", source, view->replicas,
                     failover_name(view->failover),
                     view->ketama ? "On" : "Off");
    }
    return 1;
}

int memsess_rebalance_plan(apr_pool_t *p, apr_pool_t *ptemp,
                           memsess_runtime_t *rt, const memsess_table_t *old,
                           apr_array_header_t *state, int adopt)
{
    apr_array_header_t *creds = apr_array_make(p, rt->targets->nelts + 8,
                                    sizeof(const memsess_credentials_t *));
    apr_array_header_t *placed = old ? placed_of_table(ptemp, old) : state;
    const char *source = old ? "the previous generation" : "the state file";
    int v, i, planned = 0, php_replicas = 0, php_ketama = 1;
    const char *php_from = NULL;
    const char *php_prefix = rt->g.php_prefix;

    for (i = 0; i < rt->targets->nelts; i++) {
        APR_ARRAY_PUSH(creds, const memsess_credentials_t *)
            = rt->credentials[i];
    }
    for (v = 0; v < rt->confs->nelts; v++) {
        memsess_view_t *view = &rt->views[v];
        const char *served = memsess_served_text(ptemp, view->pool);
        const memsess_placed_t *pl = placed_for(placed, view, served);
        memsess_placed_t guess;

        if (pl) {
            planned += plan_view(p, rt, creds, view, served, pl, source,
                                 !old, php_prefix);
            continue;
        }
        if (!adopt || !view->adopt
            || view->format != MEMSESS_FORMAT_MEMCACHED) {
            /* nothing before, nothing to take over, or pecl-memcache's
             * placement (which nothing here follows): at once */
            continue;
        }
        /* nothing recorded: the module takes the pool over from PHP */
        if (!php_from) {
            memsess_php_placement(&php_replicas, &php_ketama, &php_from);
        }
        guess = *view->adopt;
        if (guess.replicas < 0) {
            guess.replicas = php_replicas;
        }
        if (guess.ketama < 0) {
            guess.ketama = php_ketama;
        }
        guess.prefix = php_prefix;   /* where PHP put them: php.ini's */
        if (plan_view(p, rt, creds, view, served, &guess,
                      apr_psprintf(p, "MemsessAdopt: where PHP put the "
                                   "sessions, sess_number_of_replicas %d "
                                   "and sess_consistent_hash %s from %s",
                                   guess.replicas, guess.ketama ? "On"
                                   : "Off", view->adopt->replicas >= 0
                                   && view->adopt->ketama >= 0
                                   ? "MemsessAdopt" : php_from), 1,
                      php_prefix)) {
            planned++;
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                         "MEMSESS0143: %s: no placement of this pool is "
                         "recorded (a first start, or a new or renamed "
                         "vhost): it is taken over from %s, kept in force "
                         "until a rebalance has moved every session where "
                         "this module places it", view->name,
                         view->before->source);
        }
    }
    rt->credentials = (const memsess_credentials_t **)creds->elts;
    return planned;
}

apr_status_t memsess_rebalance_fill(memsess_runtime_t *rt, apr_pool_t *ptemp)
{
    int v;

    for (v = 0; v < rt->confs->nelts; v++) {
        const memsess_view_t *view = &rt->views[v];
        const memsess_view_t *in_force = view->before ? view->before : view;
        apr_status_t rv;

        rv = memsess_table_set_served(rt->table, v, view->name,
                                      memsess_rebalance_served_capacity(
                                          ptemp, view),
                                      memsess_served_text(ptemp,
                                                          in_force->pool),
                                      in_force->replicas, in_force->failover,
                                      in_force->ketama, in_force->format,
                                      in_force->sess_prefix);
        if (rv != APR_SUCCESS) {
            return rv;
        }
        memsess_table_view_slot(rt->table, v)->rebalance
            = view->before ? MEMSESS_REBALANCE_WAITING
                           : MEMSESS_REBALANCE_NONE;
    }
    return APR_SUCCESS;
}

apr_uint32_t memsess_rebalance_served_capacity(apr_pool_t *ptemp,
                                               const memsess_view_t *view)
{
    apr_size_t a = strlen(memsess_served_text(ptemp, view->pool));
    apr_size_t b = view->before ? strlen(view->before->full_path) : 0;

    return (apr_uint32_t)((a > b ? a : b) + 1);
}

apr_uint32_t memsess_rebalance_capacity(apr_pool_t *ptemp,
                                        const memsess_view_t *view)
{
    apr_uint32_t cap = view->capacity;

    if (view->before && view->before->capacity > cap) {
        cap = view->before->capacity;
    }
    return cap + memsess_rebalance_served_capacity(ptemp, view);
}

int memsess_rebalance_gate_resumed(memsess_runtime_t *rt,
                                   const memsess_table_t *old,
                                   apr_time_t until)
{
    int v, o, n = 0;

    if (!old || !rt->g.share) {
        return 0;
    }
    for (v = 0; v < rt->confs->nelts; v++) {
        memsess_view_slot_t *vs = memsess_table_view_slot(rt->table, v);

        if (!rt->views[v].before || !vs->rebalance) {
            continue;
        }
        for (o = 0; o < memsess_table_nviews(old); o++) {
            memsess_view_slot_t ovs;

            if (memsess_table_read_view_slot(old, o, &ovs) == APR_SUCCESS
                && ovs.rebalance && !strcmp(ovs.name, rt->views[v].name)) {
                memsess_table_gate_view(rt->table, v, until);
                n++;
                break;
            }
        }
    }
    return n;
}
