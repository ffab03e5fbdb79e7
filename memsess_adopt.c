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

/* What a start finds in force, where the previous generation's table
 * cannot say (memsess_rebalance.c plans from it):
 *
 * - The state file (MemsessStateDir/state): the placement in force of
 *   every pool, written by the parent at every start and graceful and by
 *   the checker at every rebalance's flip, so that a stop and start (a
 *   reboot, a crash of the parent) with a changed pool rebalances exactly
 *   as a graceful does.  The directory is the children's user's, mode
 *   0755 (nothing in it is secret); the file is replaced whole (a
 *   temporary file, then rename).
 * - PHP's own placement, for a pool nothing recorded (the module's first
 *   start, a new vhost): php.ini's memcached.sess_number_of_replicas and
 *   sess_consistent_hash, read from mod_php once it has read php.ini (our
 *   post_config runs after its), php-memcached's defaults otherwise
 *   (php-fpm's php.ini is another process's: MemsessAdopt names it). */

#include <dlfcn.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "apr_strings.h"
#include "apr_file_io.h"

#include "httpd.h"
#include "http_log.h"
#include "unixd.h"

#include "memsess_adopt.h"
#include "memsess_listing.h"
#include "memsess_state.h"
#include "memsess_view.h"

APLOG_USE_MODULE(memsess);

#define STATE_FILE "state"
#define STATE_MAX  (1024 * 1024)   /* a bigger file is not ours */

/* php_ini.c's PHPAPI cfg_get_long and cfg_get_string (zend_long is a long
 * on every LP64 platform PHP builds for). */
typedef int (*cfg_get_long_f)(const char *name, long *result);
typedef int (*cfg_get_string_f)(const char *name, char **result);

void memsess_php_placement(int *replicas, int *ketama, const char **from)
{
    cfg_get_long_f get = (cfg_get_long_f)dlsym(RTLD_DEFAULT, "cfg_get_long");
    long n;

    *replicas = 0;   /* php-memcached 3's defaults */
    *ketama = 1;
    if (from) {
        *from = get ? "mod_php's php.ini (php-memcached's defaults where it "
                      "sets none)"
                    : "php-memcached's defaults (mod_php is not loaded)";
    }
    if (!get) {
        return;
    }
    if (get("memcached.sess_number_of_replicas", &n) == 0 && n >= 0
        && n <= MEMSESS_MAX_SERVERS) {
        *replicas = (int)n;
    }
    if (get("memcached.sess_consistent_hash", &n) == 0) {
        *ketama = n != 0;
    }
}

const char *memsess_php_prefix(apr_pool_t *p, const char **from)
{
    cfg_get_string_f get = (cfg_get_string_f)dlsym(RTLD_DEFAULT,
                                                   "cfg_get_string");
    char *value = NULL;

    if (get && get("memcached.sess_prefix", &value) == 0 && value
        && !memsess_namespace_invalid(value, 0)) {
        *from = "php.ini's memcached.sess_prefix";
        return apr_pstrdup(p, value);
    }
    *from = "php-memcached's default";
    return MEMSESS_SESS_PREFIX;
}

const char *memsess_php_placement_odd(apr_pool_t *p)
{
    cfg_get_string_f get = (cfg_get_string_f)dlsym(RTLD_DEFAULT,
                                                   "cfg_get_string");
    char *value = NULL;

    if (!get) {
        return NULL;
    }
    if (get("memcached.sess_prefix", &value) == 0 && value
        && memsess_namespace_invalid(value, 0)) {
        return apr_psprintf(p, "memcached.sess_prefix \"%s\" (%s: "
                            "\"%s\" is injected instead; set "
                            "MemsessNamespace)", value,
                            memsess_namespace_invalid(value, 0),
                            MEMSESS_SESS_PREFIX);
    }
    value = NULL;
    if (get("memcached.sess_consistent_hash_type", &value) == 0 && value
        && strcmp(value, "ketama")) {
        return apr_psprintf(p, "memcached.sess_consistent_hash_type \"%s\" "
                            "(this module injects \"ketama\")", value);
    }
    return NULL;
}

static const char *state_path(apr_pool_t *p, const memsess_runtime_t *rt)
{
    return rt->g.state_dir ? apr_pstrcat(p, rt->g.state_dir, "/" STATE_FILE,
                                         NULL)
                           : NULL;
}

int memsess_state_prepare(apr_pool_t *ptemp, const memsess_runtime_t *rt)
{
    const char *dir = rt->g.state_dir;
    apr_status_t rv;

    if (!dir) {
        return 0;
    }
    /* nothing in it is secret: readable, so that tools (and a test
     * harness running as another user) can walk it */
    rv = apr_dir_make_recursive(dir, APR_FPROT_UREAD | APR_FPROT_UWRITE
                                     | APR_FPROT_UEXECUTE | APR_FPROT_GREAD
                                     | APR_FPROT_GEXECUTE | APR_FPROT_WREAD
                                     | APR_FPROT_WEXECUTE, ptemp);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, rt->main, "MEMSESS0144: "
                     "MemsessStateDir %s cannot be made: the placement in "
                     "force is not kept across a stop and start (then "
                     "every pool is taken over as MemsessAdopt says)", dir);
        return 0;
    }
    /* the checker (the children's user) replaces the file at a flip */
    if (geteuid() == 0
        && chown(dir, ap_unixd_config.user_id, ap_unixd_config.group_id)) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, errno, rt->main,
                     "MEMSESS0145: MemsessStateDir %s cannot be given to "
                     "user %s: only the parent keeps the placement in "
                     "force there", dir, ap_unixd_config.user_name);
    }
    return 1;
}

apr_array_header_t *memsess_state_load(apr_pool_t *p,
                                       const memsess_runtime_t *rt)
{
    const char *path = state_path(p, rt), *why;
    apr_array_header_t *placed;
    apr_file_t *f;
    apr_finfo_t fi;
    apr_size_t len;
    apr_status_t rv;
    char *text;
    int bad;

    if (!path) {
        return NULL;
    }
    rv = apr_file_open(&f, path, APR_FOPEN_READ, 0, p);
    if (APR_STATUS_IS_ENOENT(rv)) {
        return NULL;
    }
    if (rv == APR_SUCCESS) {
        rv = apr_file_info_get(&fi, APR_FINFO_SIZE, f);
    }
    if (rv == APR_SUCCESS && (fi.size < 0 || fi.size > STATE_MAX)) {
        rv = APR_EGENERAL;
    }
    if (rv == APR_SUCCESS) {
        len = (apr_size_t)fi.size;
        text = apr_palloc(p, len + 1);
        rv = apr_file_read_full(f, text, len, &len);
        text[len] = '\0';
        apr_file_close(f);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, rt->main, "MEMSESS0146: "
                     "the state file %s cannot be read (or is over %d "
                     "bytes): the placements it keeps are not used", path,
                     STATE_MAX);
        return NULL;
    }
    placed = apr_array_make(p, 8, sizeof(memsess_placed_t));
    why = memsess_state_parse(p, text, len, placed, &bad);
    if (why || bad) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, rt->main, "MEMSESS0147: "
                     "the state file %s: %s: %s", path,
                     why ? why : apr_psprintf(p, "%d line(s) do not read "
                                              "back", bad),
                     why ? "it is not used" : "the pools of those lines "
                     "are taken over as MemsessAdopt says");
    }
    return why ? NULL : placed;
}

apr_status_t memsess_state_save(apr_pool_t *p, const memsess_runtime_t *rt)
{
    const char *path = state_path(p, rt), *tmp;
    memsess_placed_t *placed;
    apr_file_t *f;
    apr_size_t len;
    apr_status_t rv;
    char *text;
    int v, n = rt->confs->nelts;

    if (!path) {
        return APR_SUCCESS;
    }
    placed = apr_pcalloc(p, n * sizeof(*placed));
    for (v = 0; v < n; v++) {
        const memsess_view_t *in_force = memsess_view_in_force(rt, v);

        placed[v].name = rt->views[v].name;
        placed[v].served = memsess_served_text(p, in_force->pool);
        placed[v].replicas = in_force->replicas;
        placed[v].failover = (int)in_force->failover;
        placed[v].ketama = in_force->ketama;
        placed[v].format = (int)in_force->format;
        placed[v].prefix = in_force->sess_prefix;
    }
    text = memsess_state_format(p, placed, n);
    len = strlen(text);
    tmp = apr_psprintf(p, "%s.%" APR_PID_T_FMT, path, getpid());
    rv = apr_file_open(&f, tmp, APR_FOPEN_WRITE | APR_FOPEN_CREATE
                       | APR_FOPEN_TRUNCATE, APR_FPROT_UREAD
                       | APR_FPROT_UWRITE | APR_FPROT_GREAD
                       | APR_FPROT_WREAD, p);
    if (rv == APR_SUCCESS) {
        rv = apr_file_write_full(f, text, len, NULL);
        if (rv == APR_SUCCESS) {
            rv = apr_file_sync(f);
        }
        apr_file_close(f);
        if (rv == APR_SUCCESS) {
            rv = apr_file_rename(tmp, path, p);
        }
        if (rv != APR_SUCCESS) {
            apr_file_remove(tmp, p);
        }
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, rt->main, "MEMSESS0148: "
                     "the state file %s cannot be written: a stop and start "
                     "would not know the placement in force", path);
    }
    return rv;
}
