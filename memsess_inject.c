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

/* What every request gets: the live servers of its vhost's pool, read from
 * the shared table (no lock, no I/O), as
 *   - mod_php settings of php_admin_value strength,
 *   - the PHP_ADMIN_VALUE FastCGI parameter for php-fpm,
 *   - MEMSESS_* environment variables for anything else.
 *
 * mod_php keeps its ini settings in a per-directory config of its own.  The
 * way in is its own php_admin_value handler: we find the module that
 * registers that directive, fill a fresh per-dir config of it in the request
 * pool through the handler, and merge that over the request's config, as a
 * <Directory> block would.  Shared configuration is never touched. */

#include <unistd.h>

#include "apr_strings.h"

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "scoreboard.h"

#include "memsess_inject.h"
#include "memsess_clocks.h"
#include "memsess_config.h"
#include "memsess_flight.h"
#include "memsess_release.h"
#include "memsess_table.h"

APLOG_USE_MODULE(memsess);

static module *php_module_rec;
static const command_rec *php_admin_cmd;

void memsess_inject_post_config(apr_pool_t *pconf, server_rec *s)
{
    module *m;
    const command_rec *cmd;

    (void)pconf;
    php_module_rec = NULL;
    php_admin_cmd = NULL;
    for (m = ap_top_module; m && !php_module_rec; m = m->next) {
        if (!m->create_dir_config || !m->merge_dir_config) {
            continue;
        }
        for (cmd = m->cmds; cmd && cmd->name; cmd++) {
            if (!strcasecmp(cmd->name, "php_admin_value")
                && cmd->args_how == TAKE2) {
                php_module_rec = m;
                php_admin_cmd = cmd;
                break;
            }
        }
    }
    if (php_module_rec) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, "MEMSESS0020: injecting "
                     "session settings into %s", php_module_rec->name);
    }
    else {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, "MEMSESS0021: no "
                     "module with php_admin_value is loaded: sessions are "
                     "passed on as MEMSESS_* environment variables and "
                     "PHP_ADMIN_VALUE only");
    }
}

/* Whether the request goes to mod_php's handler. */
static int for_php(const request_rec *r)
{
    const char *h = r->handler ? r->handler : r->content_type;

    return h && ap_strcasestr(h, "php") != NULL;
}

/* Whether anything of the request can read what we set: a handler other
 * than the default one, or a content filter (SSI, ...; mod_mime has added
 * those by now).  A plain static file gets nothing: that is most requests,
 * and they must not pay for three environment variables. */
static int has_reader(const request_rec *r)
{
    return r->handler || for_php(r)
           || (r->output_filters
               && r->output_filters->frec->ftype < AP_FTYPE_PROTOCOL);
}

/* Whether the request goes to a FastCGI server through mod_proxy. */
static int for_fcgi(const request_rec *r)
{
    return (r->handler && !strncasecmp(r->handler, "proxy:", 6))
           || r->proxyreq == PROXYREQ_REVERSE;
}

/* The most settings a request gets. */
#define MAX_INI 11

typedef struct {
    const char *name;
    const char *value;
    const char *fcgi_value;   /* as php-fpm must read it; NULL: value */
} ini_t;

/* The settings a request gets, in the order they are applied. */
static int settings(request_rec *r, const memsess_view_t *view,
                    const char *handler, const char *path, ini_t *ini)
{
    int n = 0;

    memset(ini, 0, MAX_INI * sizeof(*ini));
    ini[n].name = "session.save_handler";
    ini[n++].value = handler;
    ini[n].name = "session.save_path";
    ini[n++].value = path;
    if (!strcmp(handler, "memcached")) {
        /* the placement, every time: the syncs place keys as PHP does
         * only when PHP is told how (a php.ini of its own does not count).
         * A successor stands in by position, which only modulo hashing
         * keeps (view->ketama 0). */
        ini[n].name = "memcached.sess_number_of_replicas";
        ini[n++].value = view->replicas > 0
                         ? apr_itoa(r->pool, view->replicas) : "0";
        if (view->replicas > 0) {
            ini[n].name = "memcached.sess_binary_protocol";
            ini[n++].value = "1";
        }
        ini[n].name = "memcached.sess_consistent_hash";
        ini[n++].value = view->ketama ? "1" : "0";
        /* the namespace the syncs move and nothing outside it */
        ini[n].name = "memcached.sess_prefix";
        ini[n++].value = view->sess_prefix;   /* (the one in force) */
        /* reads at the first server of the placement, which stays put:
         * no replica read at random, no server ejected by libmemcached */
        ini[n].name = "memcached.sess_remove_failed_servers";
        ini[n++].value = "0";
        if (view->replicas > 0) {
            ini[n].name = "memcached.sess_randomize_replica_read";
            ini[n++].value = "0";
        }
        if (view->ketama) {
            ini[n].name = "memcached.sess_consistent_hash_type";
            ini[n++].value = "ketama";
        }
    }
    if (view->credentials && !strcmp(handler, "memcached")) {
        /* php-fpm parses PHP_ADMIN_VALUE as an INI file: quoted there */
        ini[n].name = "memcached.sess_sasl_username";
        ini[n].value = view->credentials->username;
        ini[n++].fcgi_value = view->credentials->username_ini;
        ini[n].name = "memcached.sess_sasl_password";
        ini[n].value = view->credentials->password;
        ini[n++].fcgi_value = view->credentials->password_ini;
    }
    return n;
}

static void inject_mod_php(request_rec *r, const ini_t *ini, int n)
{
    void *dconf = php_module_rec->create_dir_config(r->pool, NULL);
    ap_conf_vector_t *add;
    cmd_parms parms;
    int i;

    memset(&parms, 0, sizeof(parms));
    parms.pool = r->pool;
    parms.temp_pool = r->pool;
    parms.server = r->server;
    parms.cmd = php_admin_cmd;
    parms.info = php_admin_cmd->cmd_data;
    parms.override = RSRC_CONF | ACCESS_CONF;   /* not from .htaccess */
    for (i = 0; i < n; i++) {
        const char *err = php_admin_cmd->AP_TAKE2(&parms, dconf,
                                                  ini[i].name, ini[i].value);
        if (err) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "MEMSESS0022: %s "
                          "refused %s: %s", php_module_rec->name,
                          ini[i].name, err);
            return;
        }
    }
    add = ap_create_per_dir_config(r->pool);
    ap_set_module_config(add, php_module_rec, dconf);
    r->per_dir_config = ap_merge_per_dir_configs(r->pool, r->per_dir_config,
                                                 add);
}

/* php-fpm reads "name=value" lines from PHP_ADMIN_VALUE; ours go after
 * whatever the configuration set there. */
static void inject_fcgi(request_rec *r, const ini_t *ini, int n)
{
    const char *prev = apr_table_get(r->subprocess_env, "PHP_ADMIN_VALUE");
    struct iovec vec[MAX_INI * 4 + 1];
    const char *value;
    int i, nvec = 0;

    if (prev && *prev) {
        vec[nvec].iov_base = (void *)prev;
        vec[nvec++].iov_len = strlen(prev);
    }
    for (i = 0; i < n; i++) {
        if (nvec) {
            vec[nvec].iov_base = "\n";
            vec[nvec++].iov_len = 1;
        }
        vec[nvec].iov_base = (void *)ini[i].name;
        vec[nvec++].iov_len = strlen(ini[i].name);
        vec[nvec].iov_base = "=";
        vec[nvec++].iov_len = 1;
        value = ini[i].fcgi_value ? ini[i].fcgi_value : ini[i].value;
        vec[nvec].iov_base = (void *)value;
        vec[nvec++].iov_len = strlen(value);
    }
    apr_table_setn(r->subprocess_env, "PHP_ADMIN_VALUE",
                   apr_pstrcatv(r->pool, vec, nvec, NULL));
}

/* The request's entry among the requests in flight (memsess_flight.c):
 * its worker's place in the scoreboard, counted until its pool ends. */
typedef struct {
    memsess_flight_t *flight;
    int               worker;
    apr_uint64_t      value;
    request_rec      *r;        /* the main request */
} flight_entry_t;

/* The first session id a cookie header gives (Cookie: ...; PHPSESSID=x,
 * Set-Cookie: PHPSESSID=x; path=/) that looks like one of PHP's, its
 * length in *len; NULL when none.  From *from on, and *from moved past
 * it. */
static const char *cookie_session(const char **from, int set,
                                  apr_size_t *len)
{
    static const char name[] = MEMSESS_SESSION_COOKIE "=";
    const char *p = *from, *v, *e;

    while (p && *p) {
        while (*p == ' ' || *p == ';') {
            p++;
        }
        v = e = NULL;
        if (!strncmp(p, name, sizeof(name) - 1)) {
            v = p + sizeof(name) - 1;
            for (e = v; (*e >= 'a' && *e <= 'z') || (*e >= 'A' && *e <= 'Z')
                        || (*e >= '0' && *e <= '9') || *e == ',' || *e == '-';
                 e++) {
            }
        }
        p = set ? NULL : strchr(p, ';');   /* (Set-Cookie: its attributes) */
        if (v && e > v && (!*e || *e == ';' || *e == ' ')) {
            *from = p;
            *len = (apr_size_t)(e - v);
            return v;
        }
    }
    *from = NULL;
    return NULL;
}

/* Notes the session ids a cookie header gives (memsess_flight.c). */
static int note_cookie(memsess_flight_t *f, const char *header, int set)
{
    const char *id;
    apr_size_t len;

    while ((id = cookie_session(&header, set, &len))) {
        memsess_flight_note(f, id, len);
    }
    return 1;
}

static int note_set_cookie(void *f, const char *key, const char *value)
{
    (void)key;
    return note_cookie(f, value, 1);
}

static apr_status_t flight_leave(void *data)
{
    flight_entry_t *fe = data;

    if (fe->r) {
        /* the sessions it used, for a sync's flip (memsess_flight.c) */
        note_cookie(fe->flight, apr_table_get(fe->r->headers_in, "Cookie"),
                    0);
        apr_table_do(note_set_cookie, fe->flight, fe->r->headers_out,
                     "Set-Cookie", NULL);
        apr_table_do(note_set_cookie, fe->flight, fe->r->err_headers_out,
                     "Set-Cookie", NULL);
        fe->r = NULL;
    }
    memsess_flight_leave(fe->flight, fe->worker, fe->value);
    fe->value = 0;
    return APR_SUCCESS;
}

static flight_entry_t *flight_enter(request_rec *r, memsess_flight_t *f)
{
    static const char key[] = "memsess-flight";
    worker_score *ws = ap_get_scoreboard_worker(r->connection->sbh);
    worker_score *first = ap_get_scoreboard_worker_from_indexes(0, 0);
    flight_entry_t *fe = NULL;
    apr_ssize_t i;

    if (!f || !ws || !first) {
        return NULL;
    }
    /* the scoreboard's workers are one array, child after child */
    i = ws - first;
    if (i < 0 || i >= memsess_flight_nworkers(f)) {
        return NULL;
    }
    /* one entry for the whole request, subrequests and internal
     * redirects included (mod_dir passes a subrequest's settings on): its
     * first epoch, the oldest list it may use */
    while (r->main) {
        r = r->main;
    }
    apr_pool_userdata_get((void **)&fe, key, r->pool);
    if (!fe) {
        fe = apr_pcalloc(r->pool, sizeof(*fe));
        fe->flight = f;
        fe->worker = (int)i;
        apr_pool_userdata_setn(fe, key, NULL, r->pool);
        apr_pool_cleanup_register(r->pool, fe, flight_leave,
                                  apr_pool_cleanup_null);
    }
    fe->r = r;   /* an internal redirect's: the one that answers */
    if (!fe->value) {
        const char *cookie = apr_table_get(r->headers_in, "Cookie"), *id;
        apr_size_t len;

        fe->value = memsess_flight_enter(f, fe->worker,
                                         (apr_uint32_t)getpid());
        /* the session it names, for a flip that comes while it runs */
        if ((id = cookie_session(&cookie, 0, &len))) {
            memsess_flight_session(f, fe->worker, fe->value, id, len);
        }
    }
    return fe;
}

/* Reads the view's list, the request counted among those in flight
 * first.  At a flip the list may be gated: from the moment its time is
 * known, the flip is waited for; after it, the sync is bringing over what
 * requests with the previous list wrote.  The request waits (uncounted)
 * until it opens, MEMSESS_GATE_MAX at most, then reads again. */
static apr_status_t read_list(request_rec *r, memsess_runtime_t *rt, int v,
                              char *path, apr_size_t capacity,
                              apr_uint32_t *len, apr_uint32_t *nlive,
                              apr_uint32_t *rebalance)
{
    apr_time_t gate = 0, waited = 0, until = 0, now;
    flight_entry_t *fe = NULL;
    apr_status_t rv;

    for (;;) {
        fe = flight_enter(r, rt->flight);
        rv = memsess_table_read_view(rt->table, v, path, capacity, len,
                                     nlive, rebalance, &gate);
        if (rv != APR_SUCCESS || !gate) {
            break;
        }
        now = memsess_mono_now();
        if (!until && now >= gate) {
            break;   /* a gate of before: no wait, nothing to say */
        }
        if (!until) {
            /* its own cap too: a gate its checker never opens (it died)
             * holds no request longer; the gate's time is the checker's,
             * by this machine's monotonic clock, as ours */
            waited = now;
            until = waited + MEMSESS_GATE_MAX;
        }
        if (now >= gate || now >= until) {
            break;
        }
        if (fe) {
            /* not one of those the sync waits for, meanwhile */
            memsess_flight_leave(fe->flight, fe->worker, fe->value);
            fe->value = 0;
        }
        apr_sleep(MEMSESS_GATE_POLL);
    }
    if (until) {
        ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r, "waited %"
                      APR_TIME_T_FMT "us at a flip's gate",
                      memsess_mono_now() - waited);
    }
    return rv;
}

int memsess_inject_fixups(request_rec *r)
{
    memsess_runtime_t *rt = memsess_runtime();
    const memsess_srv_conf *conf;
    const memsess_view_t *view, *def;
    const memsess_dir_conf *dconf;
    const char *handler;
    apr_uint32_t len, nlive, rebalance = MEMSESS_REBALANCE_NONE;
    ini_t ini[MAX_INI];
    char *path;
    int n;

    if (!rt) {
        return DECLINED;
    }
    conf = memsess_srv_config(r->server);
    dconf = ap_get_module_config(r->per_dir_config, &memsess_module);
    if (conf->view < 0 || dconf->inject == 0 || !has_reader(r)) {
        return DECLINED;
    }
    view = &rt->views[conf->view];
    memsess_release_track(r);   /* before it reads what is live */

    path = apr_palloc(r->pool, view->capacity);
    if (read_list(r, rt, conf->view, path, view->capacity, &len, &nlive,
                  &rebalance) != APR_SUCCESS) {
        /* the checker died while writing: fail open until the next one */
        path = (char *)view->full_path;
        nlive = view->pool->servers->nelts;
        rebalance = MEMSESS_REBALANCE_NONE;
    }
    /* what the text was built from: while a pool change waits for its
     * rebalance, the list in force before, with its placement (replicas,
     * failover) */
    def = rebalance != MEMSESS_REBALANCE_NONE && view->before
          ? view->before : view;

    handler = view->format == MEMSESS_FORMAT_MEMCACHE ? "memcache"
                                                      : "memcached";
    if (!nlive && view->alldown > MEMSESS_ALLDOWN_OPEN
        && (for_fcgi(r) || for_php(r))) {
        if (view->alldown == MEMSESS_ALLDOWN_503) {
            /* by then the checker may have seen a server come back */
            apr_table_setn(r->err_headers_out, "Retry-After",
                           apr_ltoa(r->pool, (long)apr_time_sec(
                               rt->g.interval * rt->g.pass_threshold
                               + apr_time_from_sec(1) - 1)));
            return HTTP_SERVICE_UNAVAILABLE;
        }
        handler = "files";
        path = (char *)view->alldown_dir;
    }
    apr_table_setn(r->subprocess_env, "MEMSESS_SAVE_HANDLER", handler);
    apr_table_setn(r->subprocess_env, "MEMSESS_SAVE_PATH", path);
    if (nlive > (apr_uint32_t)def->pool->servers->nelts) {
        nlive = 0;   /* a torn table cannot index past the strings */
    }
    apr_table_setn(r->subprocess_env, "MEMSESS_LIVE", def->live_text[nlive]);

    if (for_fcgi(r)) {
        n = settings(r, def, handler, path, ini);
        inject_fcgi(r, ini, n);
    }
    else if (php_module_rec && for_php(r)) {
        n = settings(r, def, handler, path, ini);
        inject_mod_php(r, ini, n);
    }
    return DECLINED;
}
