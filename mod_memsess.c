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

/* mod_memsess: the module, its directives, its configuration and the life
 * of its shared memory.  The work is done in memsess_*.c. */

#include "apr_strings.h"
#include "apr_hash.h"
#include "apr_shm.h"

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_mpm.h"
#include "ap_listen.h"
#include "unixd.h"

#include "mod_memsess.h"


/* Chosen by measurement (docs/design.md, "The failure window"): a hung server is
 * marked down within interval + 2 x timeout (a failed probe is repeated at
 * once), 0.4 s; a dead one within an interval, 0.2 s. */
#define MEMSESS_DEFAULT_INTERVAL        apr_time_from_msec(200)
#define MEMSESS_DEFAULT_TIMEOUT         apr_time_from_msec(100)
#define MEMSESS_DEFAULT_FAILS  2
#define MEMSESS_DEFAULT_PASSES  2
#define MIN_INTERVAL            apr_time_from_msec(100)
#define MAX_THRESHOLD           1000
#define MAX_REPLICAS            16
/* Where the placement in force is kept (MemsessStateDir's default): where
 * Debian keeps Apache's state that must survive a reboot. */
#ifndef MEMSESS_STATE_DIR
#define MEMSESS_STATE_DIR       "/var/lib/apache2/memsess"
#endif

/* Kept by httpd across restarts: the shared table of the running
 * generation, so the next one can take over its servers' states. */
#define RETAINED_KEY "mod_memsess-retained"
typedef struct {
    apr_pool_t *pool;   /* owns shm; a child of the process pool */
    apr_shm_t  *shm;
    apr_pool_t *flight_pool;   /* owns flight_shm, kept across gracefuls */
    apr_shm_t  *flight_shm;
    /* this start's nonce (tells two instances of one name apart), kept
     * across gracefuls: drawn when the parent first runs post_config */
    apr_uint64_t nonce;
    apr_int64_t  started;
} memsess_retained_t;

/* ------------------------------------------------------------------ */
/* Configuration                                                      */

static void *create_srv_config(apr_pool_t *p, server_rec *s)
{
    memsess_srv_conf *conf = apr_pcalloc(p, sizeof(*conf));

    conf->s = s;
    conf->replicas = -1;
    conf->format = -1;
    conf->alldown = -1;
    conf->failover = -1;
    conf->interval = -1;
    conf->timeout = -1;
    conf->fail_threshold = -1;
    conf->pass_threshold = -1;
    conf->rejoin = -1;
    conf->share = -1;
    conf->release_helper = -1;
    conf->check_process = -1;
    conf->sync_rate = -1;
    conf->adopt = -1;
    conf->adopt_ketama = -1;
    conf->adopt_replicas = -1;
    conf->view = -1;
    conf->persist = -1;
    conf->persist_interval = -1;
    conf->persist_rate = -1;
    return conf;
}

#define MERGE(field, unset) (add->field != (unset) ? add->field : base->field)

static void *merge_srv_config(apr_pool_t *p, void *basev, void *addv)
{
    memsess_srv_conf *base = basev, *add = addv;
    memsess_srv_conf *conf = apr_pcalloc(p, sizeof(*conf));

    conf->s = add->s;
    conf->pool = MERGE(pool, NULL);
    conf->replicas = MERGE(replicas, -1);
    conf->format = MERGE(format, -1);
    conf->alldown = MERGE(alldown, -1);
    conf->alldown_dir = add->alldown != -1 ? add->alldown_dir
                                           : base->alldown_dir;
    conf->failover = MERGE(failover, -1);
    conf->credentials = MERGE(credentials, NULL);
    if (add->adopt != -1) {
        conf->adopt = add->adopt;
        conf->adopt_pool = add->adopt_pool;
        conf->adopt_ketama = add->adopt_ketama;
        conf->adopt_replicas = add->adopt_replicas;
    }
    else {
        conf->adopt = base->adopt;
        conf->adopt_pool = base->adopt_pool;
        conf->adopt_ketama = base->adopt_ketama;
        conf->adopt_replicas = base->adopt_replicas;
    }
    /* server config only: a vhost never sets them */
    conf->interval = base->interval;
    conf->timeout = base->timeout;
    conf->fail_threshold = base->fail_threshold;
    conf->pass_threshold = base->pass_threshold;
    conf->rejoin = base->rejoin;
    conf->share = base->share;
    conf->release_helper = base->release_helper;
    conf->check_process = base->check_process;
    conf->sync_rate = base->sync_rate;
    conf->sess_prefix = base->sess_prefix;
    conf->instance = base->instance;
    conf->group = base->group;
    conf->state_dir = base->state_dir;
    conf->view = -1;
    conf->persist = MERGE(persist, -1);
    conf->persist_interval = MERGE(persist_interval, -1);
    conf->persist_rate = MERGE(persist_rate, -1);
    return conf;
}

static void *create_dir_config(apr_pool_t *p, char *dir)
{
    memsess_dir_conf *conf = apr_pcalloc(p, sizeof(*conf));

    (void)dir;
    conf->inject = -1;
    return conf;
}

static void *merge_dir_config(apr_pool_t *p, void *basev, void *addv)
{
    memsess_dir_conf *base = basev, *add = addv;
    memsess_dir_conf *conf = apr_pcalloc(p, sizeof(*conf));

    conf->inject = MERGE(inject, -1);
    return conf;
}

static memsess_srv_conf *cmd_conf(cmd_parms *cmd)
{
    return memsess_srv_config(cmd->server);
}

static const char *cmd_error(cmd_parms *cmd, const char *msg)
{
    return apr_psprintf(cmd->pool, "%s: %s", cmd->cmd->name, msg);
}

/* Parses a whole number in [min, max]; -1 when arg is not one. */
static int parse_int(const char *arg, int min, int max)
{
    apr_int64_t n;
    char *end;

    if (!*arg) {
        return -1;
    }
    n = apr_strtoi64(arg, &end, 10);
    if (*end || errno == ERANGE || n < min || n > max) {
        return -1;
    }
    return (int)n;
}

/* A time in [min, MEMSESS_TIME_MAX], in the grammar of memsess_time_parse
 * (httpd's ap_timeout_parameter_parse reads only the first letters of the
 * unit: it takes "2seconds" and "1sfoo"). */
static const char *parse_time(cmd_parms *cmd, const char *arg,
                              apr_interval_time_t min, const char *min_text,
                              apr_interval_time_t *t)
{
    if (memsess_time_parse(arg, t) != APR_SUCCESS) {
        return cmd_error(cmd, apr_psprintf(cmd->pool, "invalid time in "
                                           "\"%s\" (N, Nms, Ns, Nm or Nh: "
                                           "2s, 500ms; N alone is seconds)",
                                           arg));
    }
    if (*t < min) {
        return cmd_error(cmd, apr_psprintf(cmd->pool, "\"%s\" is below the "
                                           "minimum of %s", arg, min_text));
    }
    if (*t > MEMSESS_TIME_MAX) {
        return cmd_error(cmd, apr_psprintf(cmd->pool, "\"%s\" is above the "
                                           "maximum of 1h", arg));
    }
    return NULL;
}

/* RAW_ARGS, not TAKE_ARGV: httpd hands TAKE_ARGV at most 64 arguments and
 * drops the rest without a word. */
static const char *set_servers(cmd_parms *cmd, void *dummy, const char *args)
{
    memsess_srv_conf *conf = cmd_conf(cmd);
    const char *err;

    (void)dummy;
    /* a second line in the same context adds to the list */
    err = memsess_pool_parse_line(cmd->pool, args, ap_getword_conf,
                                  &conf->pool);
    return err ? cmd_error(cmd, err) : NULL;
}

static const char *set_check_interval(cmd_parms *cmd, void *dummy,
                                      const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    apr_interval_time_t t;

    (void)dummy;
    if (err || (err = parse_time(cmd, arg, MIN_INTERVAL, "100ms", &t))) {
        return err;
    }
    cmd_conf(cmd)->interval = t;
    cmd_conf(cmd)->interval_arg = arg;
    return NULL;
}

static const char *set_check_timeout(cmd_parms *cmd, void *dummy,
                                     const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    apr_interval_time_t t;

    (void)dummy;
    if (err || (err = parse_time(cmd, arg, apr_time_from_msec(1), "1ms",
                                 &t))) {
        return err;
    }
    cmd_conf(cmd)->timeout = t;
    cmd_conf(cmd)->timeout_arg = arg;
    return NULL;
}

static const char *set_persist(cmd_parms *cmd, void *dummy, const char *arg)
{
    (void)dummy;
    if (!strcasecmp(arg, "off")) {
        cmd_conf(cmd)->persist = MEMSESS_PERSIST_OFF;
    }
    else if (!strcasecmp(arg, "dbd")) {
        cmd_conf(cmd)->persist = MEMSESS_PERSIST_DBD;
    }
    else {
        return cmd_error(cmd, apr_psprintf(cmd->pool, "unknown mode \"%s\" "
                                           "(off or dbd)", arg));
    }
    return NULL;
}

static const char *set_persist_interval(cmd_parms *cmd, void *dummy,
                                        const char *arg)
{
    apr_interval_time_t t;
    const char *err;

    (void)dummy;
    if ((err = parse_time(cmd, arg, apr_time_from_sec(1), "1s", &t))) {
        return err;
    }
    cmd_conf(cmd)->persist_interval = t;
    return NULL;
}

static const char *set_persist_rate(cmd_parms *cmd, void *dummy,
                                    const char *arg)
{
    int n = parse_int(arg, 0, MEMSESS_PERSIST_RATE_MAX);

    (void)dummy;
    if (n < 0) {
        return cmd_error(cmd, apr_psprintf(cmd->pool, "invalid rate \"%s\" "
                                           "(sessions a second: 0, "
                                           "unbounded, to %d)", arg,
                                           MEMSESS_PERSIST_RATE_MAX));
    }
    cmd_conf(cmd)->persist_rate = n;
    return NULL;
}

static const char *set_sync_rate(cmd_parms *cmd, void *dummy,
                                 const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    int n = parse_int(arg, 0, MEMSESS_SYNC_RATE_MAX);

    (void)dummy;
    if (err) {
        return err;
    }
    if (n < 0) {
        return cmd_error(cmd, apr_psprintf(cmd->pool, "invalid rate \"%s\" "
                                           "(keys a second: 0, unbounded, "
                                           "to %d)", arg,
                                           MEMSESS_SYNC_RATE_MAX));
    }
    cmd_conf(cmd)->sync_rate = n;
    return NULL;
}

static const char *set_threshold(cmd_parms *cmd, void *dummy,
                                 const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    int n = parse_int(arg, 1, MAX_THRESHOLD);

    (void)dummy;
    if (err) {
        return err;
    }
    if (n < 0) {
        return cmd_error(cmd, apr_psprintf(cmd->pool, "invalid count "
                                           "\"%s\" (1 to %d)", arg,
                                           MAX_THRESHOLD));
    }
    if (cmd->info) {
        cmd_conf(cmd)->pass_threshold = n;
    }
    else {
        cmd_conf(cmd)->fail_threshold = n;
    }
    return NULL;
}

static const char *set_replicas(cmd_parms *cmd, void *dummy, const char *arg)
{
    int n = parse_int(arg, 0, MAX_REPLICAS);

    (void)dummy;
    if (n < 0) {
        return cmd_error(cmd, apr_psprintf(cmd->pool, "invalid count "
                                           "\"%s\" (0 to %d)", arg,
                                           MAX_REPLICAS));
    }
    cmd_conf(cmd)->replicas = n;
    return NULL;
}

/* The directives that take one of two words: each word's index is the
 * enum value that goes in the field.  (Not const: httpd's cmd_data is a
 * plain void *.) */
typedef struct {
    const char *words[4];
    const char *what;
    apr_size_t  field;        /* offset in memsess_srv_conf */
    int         global_only;
} choice_t;

static choice_t format_choice = {
    { "memcached", "memcache", NULL }, "format",
    APR_OFFSETOF(memsess_srv_conf, format), 0 };
static choice_t failover_choice = {
    { "drop", "successor", NULL }, "mode",
    APR_OFFSETOF(memsess_srv_conf, failover), 0 };
static choice_t rejoin_choice = {
    { "keep", "flush", "sync", NULL }, "mode",
    APR_OFFSETOF(memsess_srv_conf, rejoin), 1 };

static choice_t share_choice = {
    { "off", "on", NULL }, "value",
    APR_OFFSETOF(memsess_srv_conf, share), 1 };
static choice_t release_helper_choice = {
    { "off", "on", NULL }, "value",
    APR_OFFSETOF(memsess_srv_conf, release_helper), 1 };
static choice_t check_process_choice = {
    { "off", "on", NULL }, "value",
    APR_OFFSETOF(memsess_srv_conf, check_process), 1 };

static const char *set_choice(cmd_parms *cmd, void *dummy, const char *arg)
{
    const choice_t *choice = cmd->info;
    const char *err;
    int i;

    (void)dummy;
    if (choice->global_only
        && (err = ap_check_cmd_context(cmd, GLOBAL_ONLY)) != NULL) {
        return err;
    }
    for (i = 0; choice->words[i]; i++) {
        if (!strcasecmp(arg, choice->words[i])) {
            *(int *)((char *)cmd_conf(cmd) + choice->field) = i;
            return NULL;
        }
    }
    {
        const char *list = choice->words[0];

        for (i = 1; choice->words[i]; i++) {
            list = apr_pstrcat(cmd->pool, list,
                               choice->words[i + 1] ? ", " : " or ",
                               choice->words[i], NULL);
        }
        return cmd_error(cmd, apr_psprintf(cmd->pool, "unknown %s \"%s\" "
                                           "(%s)", choice->what, arg, list));
    }
}

static const char *set_all_down(cmd_parms *cmd, void *dummy,
                                const char *policy, const char *dir)
{
    memsess_srv_conf *conf = cmd_conf(cmd);

    (void)dummy;
    if (!strcasecmp(policy, "open") && !dir) {
        conf->alldown = MEMSESS_ALLDOWN_OPEN;
    }
    else if (!strcmp(policy, "503") && !dir) {
        conf->alldown = MEMSESS_ALLDOWN_503;
    }
    else if (!strcasecmp(policy, "files")) {
        conf->alldown = MEMSESS_ALLDOWN_FILES;
        conf->alldown_dir = dir ? ap_server_root_relative(cmd->pool, dir)
                                : NULL;
        if (dir && !conf->alldown_dir) {
            return cmd_error(cmd, apr_psprintf(cmd->pool, "invalid "
                                               "directory \"%s\"", dir));
        }
    }
    else {
        return cmd_error(cmd, apr_psprintf(cmd->pool, "unknown policy "
                                           "\"%s%s%s\" (open, 503 or files "
                                           "[dir])", policy, dir ? " " : "",
                                           dir ? dir : ""));
    }
    return NULL;
}

/* MemsessInstance NAME and MemsessGroup NAME: words that go into the
 * verdict records as they are. */
static const char *set_name(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    int group = cmd->info != NULL;
    apr_size_t max = group ? MEMSESS_GROUP_MAX : MEMSESS_INSTANCE_MAX;

    (void)dummy;
    if (err) {
        return err;
    }
    if (!memsess_instance_name_valid(arg, max)) {
        return cmd_error(cmd, apr_psprintf(cmd->pool, "invalid name \"%s\" "
                                           "(1 to %d of A-Z a-z 0-9 . - _ : "
                                           "[ ])", arg, (int)max - 1));
    }
    if (group) {
        cmd_conf(cmd)->group = arg;
    }
    else {
        cmd_conf(cmd)->instance = arg;
    }
    return NULL;
}

/* "MemsessCredentials none": set, to no credentials (a vhost that must not
 * inherit the main server's). */
static memsess_credentials_t no_credentials;

static const memsess_credentials_t *credentials_of(const memsess_srv_conf *c)
{
    return c->credentials == &no_credentials ? NULL : c->credentials;
}

/* The password is read here, by the parent as root, at every read of the
 * configuration (apachectl -t and graceful too): a changed file is picked
 * up by the next graceful restart. */
static const char *set_credentials(cmd_parms *cmd, void *dummy,
                                   const char *username, const char *file)
{
    const char *path;
    const char *err;

    (void)dummy;
    if (!file) {
        if (strcasecmp(username, "none")) {
            return cmd_error(cmd, apr_psprintf(cmd->pool, "user name \"%s\" "
                                               "without a password file (or "
                                               "none)", username));
        }
        cmd_conf(cmd)->credentials = &no_credentials;
        return NULL;
    }
    path = ap_server_root_relative(cmd->pool, file);
    if (!path) {
        return cmd_error(cmd, apr_psprintf(cmd->pool, "invalid file name "
                                           "\"%s\"", file));
    }
    err = memsess_credentials_read(cmd->pool, username, path,
                                   &cmd_conf(cmd)->credentials);
    return err ? cmd_error(cmd, err) : NULL;
}

/* MemsessNamespace PREFIX: the sessions' memcached.sess_prefix. */
static const char *set_namespace(cmd_parms *cmd, void *dummy,
                                 const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    const char *why;

    (void)dummy;
    if (err) {
        return err;
    }
    if ((why = memsess_namespace_invalid(arg, 1)) != NULL) {
        return cmd_error(cmd, apr_psprintf(cmd->pool, "invalid namespace "
                                           "\"%s\" (%s)", arg, why));
    }
    cmd_conf(cmd)->sess_prefix = arg;
    return NULL;
}

/* MemsessStateDir DIR|none (relative: to ServerRoot). */
static const char *set_state_dir(cmd_parms *cmd, void *dummy,
                                 const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    (void)dummy;
    if (err) {
        return err;
    }
    if (!strcasecmp(arg, "none")) {
        cmd_conf(cmd)->state_dir = "";
        return NULL;
    }
    cmd_conf(cmd)->state_dir = ap_server_root_relative(cmd->pool, arg);
    if (!cmd_conf(cmd)->state_dir || !*arg) {
        return cmd_error(cmd, apr_psprintf(cmd->pool, "invalid directory "
                                           "\"%s\"", arg));
    }
    return NULL;
}

/* MemsessAdopt php|none|SAVE_PATH [consistent_hash=On|Off] [replicas=N] */
static const char *set_adopt(cmd_parms *cmd, void *dummy, int argc,
                             char *const argv[])
{
    memsess_srv_conf *conf = cmd_conf(cmd);
    int i;

    (void)dummy;
    if (argc < 1) {
        return cmd_error(cmd, "php, none, or a session.save_path");
    }
    conf->adopt_pool = NULL;
    conf->adopt_ketama = conf->adopt_replicas = -1;
    if (!strcasecmp(argv[0], "php")) {
        conf->adopt = MEMSESS_ADOPT_PHP;
    }
    else if (!strcasecmp(argv[0], "none")) {
        conf->adopt = MEMSESS_ADOPT_NONE;
        if (argc > 1) {
            return cmd_error(cmd, apr_psprintf(cmd->pool, "\"none\" takes "
                                               "nothing after it (\"%s\")",
                                               argv[1]));
        }
    }
    else {
        /* php-memcached's syntax: servers joined by commas */
        apr_array_header_t *words = apr_array_make(cmd->pool, 8,
                                                   sizeof(char *));
        char *copy = apr_pstrdup(cmd->pool, argv[0]), *last, *tok;
        const char *err;

        for (tok = apr_strtok(copy, ", ", &last); tok;
             tok = apr_strtok(NULL, ", ", &last)) {
            APR_ARRAY_PUSH(words, char *) = tok;
        }
        if (!words->nelts) {
            return cmd_error(cmd, apr_psprintf(cmd->pool, "no server in "
                                               "\"%s\"", argv[0]));
        }
        err = memsess_pool_parse(cmd->pool, words->nelts,
                                 (char *const *)words->elts,
                                 &conf->adopt_pool);
        if (err) {
            return cmd_error(cmd, err);
        }
        conf->adopt = MEMSESS_ADOPT_LIST;
    }
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (!strncasecmp(a, "consistent_hash=", 16)
            && (!strcasecmp(a + 16, "on") || !strcmp(a + 16, "1"))) {
            conf->adopt_ketama = 1;
        }
        else if (!strncasecmp(a, "consistent_hash=", 16)
                 && (!strcasecmp(a + 16, "off") || !strcmp(a + 16, "0"))) {
            conf->adopt_ketama = 0;
        }
        else if (!strncasecmp(a, "replicas=", 9)
                 && parse_int(a + 9, 0, MAX_REPLICAS) >= 0) {
            conf->adopt_replicas = parse_int(a + 9, 0, MAX_REPLICAS);
        }
        else {
            return cmd_error(cmd, apr_psprintf(cmd->pool, "unknown option "
                                               "\"%s\" (consistent_hash=On|"
                                               "Off, replicas=0 to %d)", a,
                                               MAX_REPLICAS));
        }
    }
    return NULL;
}

static const char *set_inject(cmd_parms *cmd, void *dconf, int flag)
{
    (void)cmd;
    ((memsess_dir_conf *)dconf)->inject = flag;
    return NULL;
}

static const command_rec memsess_cmds[] = {
    AP_INIT_RAW_ARGS("MemsessServers", set_servers, NULL, RSRC_CONF,
        "memcached servers of this server's session pool: "
        "host[:port[:weight]] ..."),
    AP_INIT_TAKE1("MemsessCheckInterval", set_check_interval, NULL,
        RSRC_CONF, "how often every server is probed (default 200ms)"),
    AP_INIT_TAKE1("MemsessCheckTimeout", set_check_timeout, NULL,
        RSRC_CONF, "when a probe that has not answered fails (100ms)"),
    AP_INIT_TAKE1("MemsessSyncRate", set_sync_rate, NULL, RSRC_CONF,
        "keys a second a sync or rebalance copies or looks for "
        "(50000; 0: unbounded)"),
    AP_INIT_TAKE1("MemsessFailThreshold", set_threshold, NULL, RSRC_CONF,
        "consecutive failed probes that mark a server down (2)"),
    AP_INIT_TAKE1("MemsessPassThreshold", set_threshold, (void *)1,
        RSRC_CONF, "consecutive good probes that mark a server up (2)"),
    AP_INIT_TAKE1("MemsessReplicas", set_replicas, NULL, RSRC_CONF,
        "memcached.sess_number_of_replicas to inject (default 1 for a pool "
        "of two or more servers, else 0)"),
    AP_INIT_TAKE1("MemsessFormat", set_choice, &format_choice, RSRC_CONF,
        "memcached (php-memcached) or memcache (pecl-memcache)"),
    AP_INIT_TAKE12("MemsessAllDown", set_all_down, NULL, RSRC_CONF,
        "when no server is live: open, 503 or files [dir]"),
    AP_INIT_TAKE1("MemsessFailover", set_choice, &failover_choice,
        RSRC_CONF,
        "what takes a down server's place: drop or successor (default "
        "when replicas > 0)"),
    AP_INIT_TAKE1("MemsessRejoin", set_choice, &rejoin_choice, RSRC_CONF,
        "what a server that comes back gets before it takes traffic: sync "
        "(default), flush or keep"),
    AP_INIT_TAKE1("MemsessShareVerdicts", set_choice, &share_choice,
        RSRC_CONF, "On (default) to share verdicts with the other Apache "
        "instances of the group through the pool's servers"),
    AP_INIT_TAKE1("MemsessReleaseHelper", set_choice, &release_helper_choice,
        RSRC_CONF, "On (default) to release the sockets of every process "
        "on this machine to a server marked down (a helper that keeps "
        "CAP_NET_ADMIN only; Apache started as root)"),
    AP_INIT_TAKE1("MemsessCheckerProcess", set_choice, &check_process_choice,
        RSRC_CONF, "On (default) to run the checker and its syncs in a "
        "process of its own, out of the MPM's reach (Off: in a child)"),
    AP_INIT_TAKE1("MemsessInstance", set_name, NULL, RSRC_CONF,
        "this instance's name in shared verdicts (default: this machine's host "
        "name and the main server's port)"),
    AP_INIT_TAKE1("MemsessGroup", set_name, (void *)1, RSRC_CONF,
        "the instances that share verdicts (default: derived from the "
        "pools' servers and the virtual hosts' names)"),
    AP_INIT_TAKE12("MemsessCredentials", set_credentials, NULL, RSRC_CONF,
        "SASL user name and the file holding its password (one line), for "
        "the pool's probes and for PHP; or none"),
    AP_INIT_TAKE1("MemsessNamespace", set_namespace, NULL, RSRC_CONF,
        "the sessions' key prefix, injected as memcached.sess_prefix: keys "
        "under any other are never touched (default: php.ini's, else "
        MEMSESS_SESS_PREFIX ")"),
    AP_INIT_TAKE1("MemsessStateDir", set_state_dir, NULL, RSRC_CONF,
        "where the placement in force of every pool is kept across "
        "restarts and reboots (default " MEMSESS_STATE_DIR "), or none"),
    AP_INIT_TAKE_ARGV("MemsessAdopt", set_adopt, NULL, RSRC_CONF,
        "where the pool's sessions are when nothing recorded it (a first "
        "start): php (default: where PHP put them over the same servers, "
        "with php.ini's settings), none, or a session.save_path "
        "[consistent_hash=On|Off] [replicas=N]"),
    AP_INIT_TAKE1("MemsessPersist", set_persist, NULL, RSRC_CONF,
        "off (default) or dbd: write the pool's sessions behind to the "
        "database of mod_dbd (DBDriver, DBDParams) and restore them when "
        "every copy in memcached is gone"),
    AP_INIT_TAKE1("MemsessPersistInterval", set_persist_interval, NULL,
        RSRC_CONF, "how often changed sessions and logouts are written "
        "behind (default 10s): the most a restore can be behind"),
    AP_INIT_TAKE1("MemsessPersistRate", set_persist_rate, NULL, RSRC_CONF,
        "the most sessions written behind a second (default 5000; 0: "
        "unbounded)"),
    AP_INIT_FLAG("MemsessInject", set_inject, NULL, RSRC_CONF | ACCESS_CONF,
        "On to inject the session settings below this path (default On)"),
    { NULL }
};

/* ------------------------------------------------------------------ */
/* Startup                                                            */

static apr_interval_time_t or_default(apr_interval_time_t t,
                                      apr_interval_time_t dflt)
{
    return t >= 0 ? t : dflt;
}

/* MemsessAllDown files DIR: DIR must be a directory the children's user
 * can write, or PHP would fail every session when it is needed most. */
static int check_files_dir(apr_pool_t *ptemp, server_rec *s, const char *dir)
{
    apr_finfo_t fi;
    apr_status_t rv;
    int writable;

    if (!dir) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MEMSESS0003: "
                     "MemsessAllDown: \"files\" needs a directory");
        return !OK;
    }
    rv = apr_stat(&fi, dir, APR_FINFO_TYPE | APR_FINFO_PROT
                            | APR_FINFO_OWNER, ptemp);
    if (rv != APR_SUCCESS || fi.filetype != APR_DIR) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, "MEMSESS0006: "
                     "MemsessAllDown: \"%s\" is not a directory", dir);
        return !OK;
    }
    if (ap_unixd_config.user_id == 0) {
        writable = 1;
    }
    else if (fi.user == ap_unixd_config.user_id) {
        writable = (fi.protection & APR_UWRITE) != 0;
    }
    else if (fi.group == ap_unixd_config.group_id) {
        writable = (fi.protection & APR_GWRITE) != 0;
    }
    else {
        writable = (fi.protection & APR_WWRITE) != 0;
    }
    if (!writable) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MEMSESS0007: "
                     "MemsessAllDown: \"%s\" is not writable by user %s",
                     dir, ap_unixd_config.user_name);
        return !OK;
    }
    return OK;
}

/* The port a vhost answers on, for the status page. */
static apr_port_t vhost_port(const server_rec *s)
{
    if (s->port) {
        return s->port;
    }
    if (s->addrs && s->addrs->host_port && !s->is_virtual) {
        return s->addrs->host_port;
    }
    if (!s->is_virtual && ap_listeners) {
        /* the main server: its first Listen, the list's last element */
        ap_listen_rec *lr = ap_listeners;

        while (lr->next) {
            lr = lr->next;
        }
        return lr->bind_addr->port;
    }
    return s->addrs ? s->addrs->host_port : 0;
}

/* "host:port": how the status page and the log name a vhost. */
static const char *vhost_name(apr_pool_t *p, const server_rec *s)
{
    return apr_psprintf(p, "%s:%u", s->server_hostname ? s->server_hostname
                                                      : "*", vhost_port(s));
}

/* The module-wide settings: the main server's directives or defaults. */
/* (php_ready: mod_php has read php.ini: post_config, after its own; at
 * check_config its configuration is not there yet) */
static void resolve_global(apr_pool_t *p, memsess_global_t *g,
                           const memsess_srv_conf *conf, int php_ready)
{
    g->interval = or_default(conf->interval, MEMSESS_DEFAULT_INTERVAL);
    g->timeout = or_default(conf->timeout, MEMSESS_DEFAULT_TIMEOUT);
    g->fail_threshold = conf->fail_threshold > 0 ? conf->fail_threshold
                                                 : MEMSESS_DEFAULT_FAILS;
    g->pass_threshold = conf->pass_threshold > 0 ? conf->pass_threshold
                                                 : MEMSESS_DEFAULT_PASSES;
    g->rejoin = conf->rejoin >= 0 ? (memsess_rejoin_e)conf->rejoin
                                  : MEMSESS_REJOIN_SYNC;
    g->share = conf->share != 0;
    g->release_helper = conf->release_helper != 0;
    g->check_process = conf->check_process != 0;
    g->sync_rate = conf->sync_rate >= 0 ? conf->sync_rate
                                        : MEMSESS_SYNC_RATE_DEFAULT;
    g->state_dir = !conf->state_dir ? MEMSESS_STATE_DIR
                   : *conf->state_dir ? conf->state_dir : NULL;
    if (php_ready) {
        g->php_prefix = memsess_php_prefix(p, &g->sess_prefix_from);
    }
    else {
        g->php_prefix = MEMSESS_SESS_PREFIX;
        g->sess_prefix_from = "php-memcached's default";
    }
    g->sess_prefix = g->php_prefix;
    if (conf->sess_prefix) {
        g->sess_prefix = conf->sess_prefix;
        g->sess_prefix_from = "MemsessNamespace";
    }
}

/* Who this instance is in shared verdicts, and which group it is in:
 * MemsessInstance, else this machine's host name and the main server's
 * port (a character a name cannot hold becomes '_'); MemsessGroup, else a hash of the servers
 * of its pools and of the names of its virtual hosts that have one.  The
 * web servers of one site share both; two unrelated sites serve different
 * names.  The main server's name is left out: it is usually the host's
 * own, and would keep the web servers of one site apart. */
static void resolve_identity(apr_pool_t *p, memsess_runtime_t *rt,
                             const memsess_srv_conf *conf, server_rec *s)
{
    memsess_global_t *g = &rt->g;
    apr_array_header_t *names;
    char *name, *c, one[2] = { 0, 0 };
    int i, named;

    if (conf->instance) {
        g->instance = conf->instance;
    }
    else {
        /* the machine's name, not ServerName: the web servers of one farm
         * often share a configuration, ServerName included */
        char host[APRMAXHOSTLEN + 1];

        if (apr_gethostname(host, sizeof(host), p) != APR_SUCCESS
            || !host[0]) {
            apr_cpystrn(host, s->server_hostname ? s->server_hostname
                                                 : "localhost",
                        sizeof(host));
        }
        name = apr_psprintf(p, "%s:%u", host, vhost_port(s));
        if (strlen(name) >= MEMSESS_INSTANCE_MAX) {
            name[MEMSESS_INSTANCE_MAX - 1] = '\0';
        }
        for (c = name; *c; c++) {
            one[0] = *c;
            if (!memsess_instance_name_valid(one, sizeof(one))) {
                *c = '_';
            }
        }
        g->instance = name;
    }
    g->group_derived = !conf->group;
    if (conf->group) {
        g->group = conf->group;
        return;
    }
    /* the names of the site: its pools may change (a server added) and
     * its instances must stay one group through that; its servers only
     * when every pool is the main server's */
    names = apr_array_make(p, 16, sizeof(const char *));
    for (i = 0; i < rt->vhosts->nelts; i++) {
        const memsess_vhost_t *vh = &APR_ARRAY_IDX(rt->vhosts, i,
                                                   memsess_vhost_t);
        const char *colon = strrchr(vh->name, ':');

        if (vh->conf->s->is_virtual) {
            APR_ARRAY_PUSH(names, const char *) = apr_pstrcat(p, "vhost ",
                colon ? apr_pstrmemdup(p, vh->name, colon - vh->name)
                      : vh->name, NULL);
        }
    }
    for (i = 0, named = names->nelts; !named && i < rt->targets->nelts;
         i++) {
        APR_ARRAY_PUSH(names, const char *) = apr_pstrcat(p, "server ",
            APR_ARRAY_IDX(rt->targets, i, memsess_server_t *)->addr, NULL);
    }
    g->group = memsess_group_derive(p, (const char *const *)names->elts,
                                    names->nelts);
}

/* MemsessAdopt resolved: where PHP put the pool's sessions before the
 * module (php.ini's settings, where the directive names none, are read at
 * post_config: replicas and ketama -1 until then). */
static const memsess_placed_t *adopt_of(apr_pool_t *p,
                                        const memsess_view_t *view,
                                        const memsess_srv_conf *conf)
{
    memsess_placed_t *pl;

    if (conf->adopt == MEMSESS_ADOPT_NONE) {
        return NULL;
    }
    pl = apr_pcalloc(p, sizeof(*pl));
    pl->name = view->name;
    pl->served = memsess_served_text(p, conf->adopt == MEMSESS_ADOPT_LIST
                                        ? conf->adopt_pool : conf->pool);
    /* -1: php.ini's, read once PHP has started (memsess_adopt.c) */
    pl->replicas = conf->adopt_replicas;
    pl->ketama = conf->adopt_ketama;
    pl->failover = MEMSESS_FAILOVER_DROP;
    pl->format = view->format;
    return pl;
}

/* One view's settings, every default resolved, and the strings its
 * requests copy. */
static void resolve_view(apr_pool_t *p, memsess_view_t *view,
                         const memsess_srv_conf *conf, const char *name,
                         const char *sess_prefix)
{
    int n = conf->pool->servers->nelts, k;
    apr_size_t len;
    char *full;

    view->pool = conf->pool;
    view->name = name;
    view->format = conf->format > 0 ? (memsess_format_e)conf->format
                                    : MEMSESS_FORMAT_MEMCACHED;
    view->replicas = memsess_default_replicas(conf->replicas, n);
    view->failover = memsess_default_failover(conf->failover, view->replicas,
                                              view->format);
    view->persist = conf->persist > 0 ? MEMSESS_PERSIST_DBD
                                      : MEMSESS_PERSIST_OFF;
    /* fail open, unless the sessions come back from a database: a
     * request given the full list while every server is down writes an
     * empty session to the first one that comes back, before the restore,
     * and the restore never overwrites (the user is logged out) */
    view->alldown = conf->alldown >= 0 ? (memsess_alldown_e)conf->alldown
                    : view->persist == MEMSESS_PERSIST_DBD
                      ? MEMSESS_ALLDOWN_503 : MEMSESS_ALLDOWN_OPEN;
    view->alldown_dir = conf->alldown_dir;
    view->credentials = credentials_of(conf);
    view->ketama = memsess_view_ketama(view->replicas, view->failover);
    view->sess_prefix = sess_prefix;
    view->adopt = adopt_of(p, view, conf);
    view->persist_interval = conf->persist_interval > 0
                             ? conf->persist_interval
                             : MEMSESS_PERSIST_INTERVAL_DEFAULT;
    view->persist_rate = conf->persist_rate >= 0
                         ? conf->persist_rate : MEMSESS_PERSIST_RATE_DEFAULT;
    view->dbd_server = conf->s;

    len = memsess_path_build(NULL, 0, conf->pool, NULL, view->format,
                             MEMSESS_FAILOVER_DROP);
    full = apr_palloc(p, len + 1);
    memsess_path_build(full, len + 1, conf->pool, NULL, view->format,
                       MEMSESS_FAILOVER_DROP);
    view->full_path = full;
    view->capacity = (apr_uint32_t)memsess_path_max(conf->pool, view->format,
                                                    view->failover) + 1;
    view->live_text = apr_palloc(p, (n + 1) * sizeof(const char *));
    for (k = 0; k <= n; k++) {
        view->live_text[k] = apr_psprintf(p, "%d/%d", k, n);
    }
}

/* One server, two pools that authenticate differently.  Refused rather
 * than checked both ways: a server has one state, and memcached's SASL
 * gives every user the same keys, so two sets of credentials for one
 * server protect nothing from each other. */
static const char *conflict(apr_pool_t *p, const char *addr,
                            const char *name1,
                            const memsess_credentials_t *c1,
                            const char *name2,
                            const memsess_credentials_t *c2)
{
    return apr_psprintf(p, "MemsessCredentials: memcached server %s is in "
                        "the pool of %s (%s) and of %s (%s), but a server is "
                        "checked once, with one set of credentials, and "
                        "memcached's SASL gives every user the same keys: "
                        "give every pool that uses it the same "
                        "MemsessCredentials", addr, name1,
                        memsess_credentials_describe(p, c1), name2,
                        memsess_credentials_describe(p, c2));
}

/* Gives every distinct server a slot and every vhost with a pool a view,
 * and resolves every setting (php_ready: as resolve_global). */
static memsess_runtime_t *build_runtime(apr_pool_t *p, apr_pool_t *ptemp,
                                        server_rec *s,
                                        int php_ready)
{
    memsess_runtime_t *rt = apr_pcalloc(p, sizeof(*rt));
    apr_array_header_t *names = apr_array_make(ptemp, 16,
                                               sizeof(const char *));
    /* per slot: the credentials its probes use, and whose they are */
    apr_array_header_t *creds = apr_array_make(p, 16,
                                    sizeof(const memsess_credentials_t *));
    apr_array_header_t *owners = apr_array_make(ptemp, 16,
                                                sizeof(const char *));
    apr_hash_t *slots = apr_hash_make(ptemp);
    apr_hash_t *seen = apr_hash_make(ptemp);   /* vhost name -> how often */
    server_rec *vs;
    int v;

    rt->main = s;
    resolve_global(p, &rt->g, memsess_srv_config(s), php_ready);
    rt->targets = apr_array_make(p, 16, sizeof(memsess_server_t *));
    rt->confs = apr_array_make(p, 16, sizeof(memsess_srv_conf *));
    rt->vhosts = apr_array_make(p, 16, sizeof(memsess_vhost_t));

    for (vs = s; vs; vs = vs->next) {
        memsess_srv_config(vs)->view = -1;
        if (memsess_srv_config(vs)->pool) {
            const char *name = vhost_name(ptemp, vs);

            apr_hash_set(seen, name, APR_HASH_KEY_STRING,
                         apr_hash_get(seen, name, APR_HASH_KEY_STRING)
                         ? "twice" : "once");
        }
    }
    for (vs = s; vs; vs = vs->next) {
        memsess_srv_conf *conf = memsess_srv_config(vs);
        memsess_vhost_t *vh;
        const char *count;
        int i;

        if (!conf->pool) {
            continue;
        }
        vh = apr_array_push(rt->vhosts);
        vh->name = vhost_name(p, vs);
        count = apr_hash_get(seen, vh->name, APR_HASH_KEY_STRING);
        if (count && !strcmp(count, "twice")) {
            /* the main server and a vhost of its ServerName, say: told
             * apart by where they are defined */
            vh->name = vs->is_virtual && vs->defn_name
                       ? apr_psprintf(p, "%s (%s:%u)", vh->name,
                                      vs->defn_name, vs->defn_line_number)
                       : apr_psprintf(p, "%s (main server)", vh->name);
        }
        vh->conf = conf;
        if (conf->view >= 0) {
            continue;   /* shares its config, and so its view, with one seen */
        }
        for (i = 0; i < conf->pool->servers->nelts; i++) {
            memsess_server_t *srv = &APR_ARRAY_IDX(conf->pool->servers, i,
                                                   memsess_server_t);
            memsess_server_t *first = apr_hash_get(slots, srv->addr,
                                                   APR_HASH_KEY_STRING);
            if (!first) {
                srv->slot = rt->targets->nelts;
                APR_ARRAY_PUSH(rt->targets, memsess_server_t *) = srv;
                APR_ARRAY_PUSH(creds, const memsess_credentials_t *)
                    = credentials_of(conf);
                APR_ARRAY_PUSH(owners, const char *) = vh->name;
                apr_hash_set(slots, srv->addr, APR_HASH_KEY_STRING, srv);
                continue;
            }
            srv->slot = first->slot;
            if (!rt->conflict && !memsess_credentials_same(
                    credentials_of(conf), APR_ARRAY_IDX(creds, srv->slot,
                                          const memsess_credentials_t *))) {
                rt->conflict = conflict(p, srv->addr,
                    APR_ARRAY_IDX(owners, srv->slot, const char *),
                    APR_ARRAY_IDX(creds, srv->slot,
                                  const memsess_credentials_t *),
                    vh->name, credentials_of(conf));
            }
        }
        conf->view = rt->confs->nelts;
        APR_ARRAY_PUSH(rt->confs, memsess_srv_conf *) = conf;
        APR_ARRAY_PUSH(names, const char *) = vh->name;
    }
    if (!rt->confs->nelts) {
        return NULL;
    }
    rt->credentials = (const memsess_credentials_t **)creds->elts;

    resolve_identity(p, rt, memsess_srv_config(s), s);
    rt->views = apr_pcalloc(p, rt->confs->nelts * sizeof(memsess_view_t));
    for (v = 0; v < rt->confs->nelts; v++) {
        resolve_view(p, &rt->views[v],
                     APR_ARRAY_IDX(rt->confs, v, memsess_srv_conf *),
                     APR_ARRAY_IDX(names, v, const char *),
                     rt->g.sess_prefix);
    }
    return rt;
}

/* Everything that needs the whole configuration, checked before
 * "Syntax OK" so that apachectl -t refuses it too. */
static int memsess_check_config(apr_pool_t *pconf, apr_pool_t *plog,
                                apr_pool_t *ptemp, server_rec *s)
{
    memsess_srv_conf *g = memsess_srv_config(s);
    memsess_global_t global;
    memsess_runtime_t *rt;
    int v;

    (void)pconf; (void)plog;
    resolve_global(ptemp, &global, g, 0);
    if (global.timeout >= global.interval) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MEMSESS0001: "
                     "MemsessCheckTimeout: \"%s\" must be less than "
                     "MemsessCheckInterval (\"%s\")",
                     g->timeout_arg ? g->timeout_arg : "100ms",
                     g->interval_arg ? g->interval_arg : "200ms");
        return !OK;
    }
    /* a trial run of what post_config builds, thrown away with ptemp */
    rt = build_runtime(ptemp, ptemp, s, 0);
    if (!rt) {
        return OK;
    }
    if (rt->targets->nelts > MEMSESS_MAX_SERVERS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MEMSESS0002: "
                     "MemsessServers: %d distinct memcached servers in the "
                     "configuration, more than the %d one Apache instance "
                     "checks", rt->targets->nelts, MEMSESS_MAX_SERVERS);
        return !OK;
    }
    if (rt->conflict) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MEMSESS0070: %s",
                     rt->conflict);
        return !OK;
    }
    for (v = 0; v < rt->confs->nelts; v++) {
        const memsess_view_t *view = &rt->views[v];
        const memsess_srv_conf *conf = APR_ARRAY_IDX(rt->confs, v,
                                                     memsess_srv_conf *);

        if (view->credentials && view->format == MEMSESS_FORMAT_MEMCACHE) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, conf->s, "MEMSESS0071: "
                         "MemsessCredentials in %s needs MemsessFormat "
                         "memcached: pecl-memcache has no SASL", view->name);
            return !OK;
        }
        if (view->persist == MEMSESS_PERSIST_DBD
            && view->format != MEMSESS_FORMAT_MEMCACHED) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, conf->s, "MEMSESS0170: "
                         "MemsessPersist: \"dbd\" in %s needs MemsessFormat "
                         "memcached (pecl-memcache places keys its own way)",
                         view->name);
            return !OK;
        }
        if (view->persist == MEMSESS_PERSIST_DBD
            && !memsess_persist_available()) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, conf->s, "MEMSESS0171: "
                         "MemsessPersist: \"dbd\" in %s needs mod_dbd "
                         "(LoadModule dbd_module, DBDriver, DBDParams)",
                         view->name);
            return !OK;
        }
        if (view->alldown == MEMSESS_ALLDOWN_FILES
            && check_files_dir(ptemp, conf->s, view->alldown_dir) != OK) {
            return !OK;
        }
        if (view->failover == MEMSESS_FAILOVER_SUCCESSOR
            && (view->replicas < 1
                || view->format == MEMSESS_FORMAT_MEMCACHE)) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, conf->s, "MEMSESS0024: "
                         "MemsessFailover: \"successor\" in %s needs "
                         "MemsessReplicas 1 or more and MemsessFormat "
                         "memcached: the successor stands in for a server by "
                         "holding its replica", view->name);
            return !OK;
        }
    }
    return OK;
}

/* Carries every still-configured server's state over from the table of
 * the previous generation, matched by address. */
static int take_over(memsess_table_t *t, const memsess_table_t *old,
                     apr_pool_t *ptemp)
{
    apr_hash_t *byaddr = apr_hash_make(ptemp);
    memsess_peer_clock_t *peers = apr_palloc(ptemp, MEMSESS_PEERS_SHOWN
                                                    * sizeof(*peers));
    int i, kept = 0;

    for (i = 0; i < memsess_table_nslots(old); i++) {
        memsess_slot_t *copy = apr_palloc(ptemp, sizeof(*copy));

        memsess_table_read_slot(old, i, copy);
        apr_hash_set(byaddr, copy->addr, APR_HASH_KEY_STRING, copy);
    }
    for (i = 0; i < memsess_table_nslots(t); i++) {
        memsess_slot_t *slot = memsess_table_slot(t, i);
        memsess_slot_t *prev = apr_hash_get(byaddr, slot->addr,
                                            APR_HASH_KEY_STRING);
        if (prev) {
            memcpy(slot, prev, sizeof(*slot));
            kept++;
        }
    }
    /* the other instances' clocks as measured: a new checker starts from
     * them, not from nothing (memsess_exchange.c) */
    memsess_table_set_peers(t, peers, memsess_table_peers(old, peers,
                                                          MEMSESS_PEERS_SHOWN));
    memsess_table_set_generation(t, memsess_table_generation(old) + 1,
                                 memsess_table_state_changes(old));
    return kept;
}

static apr_status_t create_table(memsess_runtime_t *rt, apr_pool_t *pconf,
                                 apr_pool_t *ptemp, server_rec *s,
                                 memsess_retained_t *ret)
{
    int nslots, nviews = rt->confs->nelts, i, kept = 0, changed = 0;
    int resumed, resumed_syncs = 0;
    apr_time_t gate;
    apr_uint32_t *caps = apr_palloc(ptemp, nviews * sizeof(*caps));
    const memsess_table_t *old = NULL;
    apr_pool_t *pool;
    apr_shm_t *shm;
    apr_size_t size;
    apr_status_t rv;

    if (ret->shm) {
        old = memsess_table_attach(apr_shm_baseaddr_get(ret->shm),
                                   apr_shm_size_get(ret->shm));
    }
    /* a pool whose list changed keeps the one in force, and its servers:
     * as the previous generation had it, else as the state file kept it
     * (a cold start), else (the module never ran in this process: a
     * table of another version says it did) where PHP put the sessions */
    changed = memsess_rebalance_plan(pconf, ptemp, rt, old,
                                     old ? NULL : memsess_state_load(ptemp,
                                                                     rt),
                                     !ret->shm);
    nslots = rt->targets->nelts;
    for (i = 0; i < nviews; i++) {
        caps[i] = memsess_rebalance_capacity(ptemp, &rt->views[i]);
    }
    size = memsess_table_size(nslots, nviews, caps);
    apr_pool_create(&pool, s->process->pool);
    apr_pool_tag(pool, "memsess_shm");
    rv = apr_shm_create(&shm, size, NULL, pool);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, "MEMSESS0004: cannot "
                     "create %" APR_SIZE_T_FMT " bytes of shared memory",
                     size);
        apr_pool_destroy(pool);
        return rv;
    }
    rt->table = memsess_table_init(apr_shm_baseaddr_get(shm), size, nslots,
                                   nviews, caps);
    for (i = 0; i < nslots; i++) {
        apr_cpystrn(memsess_table_slot(rt->table, i)->addr,
                    APR_ARRAY_IDX(rt->targets, i, memsess_server_t *)->addr,
                    MEMSESS_ADDR_MAX);
    }
    if (old) {
        kept = take_over(rt->table, old, ptemp);
    }
    if ((rv = memsess_rebalance_fill(rt, ptemp)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, "MEMSESS0134: cannot "
                     "record the lists in force in shared memory");
        apr_pool_destroy(pool);
        return rv;
    }
    /* a change under way before: its requests wait for the checker's
     * reading of the group's job (twice a request's own wait: the
     * checker's first exchange round comes first) */
    gate = memsess_mono_now() + 2 * MEMSESS_GATE_MAX;
    if ((resumed = memsess_rebalance_gate_resumed(rt, old, gate)) > 0) {
        rt->resumed_gate = gate;
    }
    /* and so does a sync under way, the server still out here: its next
     * checker starts it again at once (memsess_check.c, MEMSESS0202) */
    for (i = 0; old && rt->g.share && rt->g.rejoin == MEMSESS_REJOIN_SYNC
                && i < nslots; i++) {
        if (memsess_table_slot(rt->table, i)->state == MEMSESS_SYNCING
            && memsess_table_gate_holders(rt->table, rt->views, nviews, i,
                                          gate - 1) > 0) {
            rt->resumed_sync_gate = gate - 1;
            resumed_syncs++;
        }
    }
    memsess_table_publish(rt->table, rt->views, nviews, -1, NULL);
    memsess_state_save(ptemp, rt);

    /* The old generation's children keep their own mapping until they
     * exit; the parent lets go of it now. */
    if (ret->pool) {
        apr_pool_destroy(ret->pool);
    }
    ret->pool = pool;
    ret->shm = shm;
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, "MEMSESS0005: %d memcached "
                 "servers in %d distinct pools of %d vhosts, %d states kept "
                 "from the previous generation, %d pools to rebalance, %"
                 APR_SIZE_T_FMT " bytes of shared memory", nslots, nviews,
                 rt->vhosts->nelts, kept, changed, size);
    if (resumed || resumed_syncs) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, "MEMSESS0203: %d pool "
                     "changes and %d syncs were under way in the previous "
                     "generation: their requests wait for this checker's "
                     "reading of the group's job (%" APR_TIME_T_FMT "ms "
                     "each at most)", resumed, resumed_syncs,
                     apr_time_as_msec(MEMSESS_GATE_MAX));
    }
    return APR_SUCCESS;
}

/* The requests in flight: one entry per worker the scoreboard can hold,
 * in a segment kept across gracefuls (the old generation's children
 * count in it too); made anew only when that number changed. */
static void create_flight(memsess_runtime_t *rt, server_rec *s,
                          memsess_retained_t *ret)
{
    int daemons = 0, threads = 0, n;
    apr_size_t size;

    if (ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &daemons) != APR_SUCCESS
        || ap_mpm_query(AP_MPMQ_HARD_LIMIT_THREADS, &threads) != APR_SUCCESS
        || daemons <= 0 || threads <= 0) {
        daemons = threads = 0;
    }
    n = daemons * (threads ? threads : 1);
    if (ret->flight_shm) {
        rt->flight = memsess_flight_attach(
            apr_shm_baseaddr_get(ret->flight_shm),
            apr_shm_size_get(ret->flight_shm));
        if (rt->flight && memsess_flight_nworkers(rt->flight) == n) {
            return;
        }
        apr_pool_destroy(ret->flight_pool);
        ret->flight_pool = NULL;
        ret->flight_shm = NULL;
        rt->flight = NULL;
    }
    size = memsess_flight_size(n);
    apr_pool_create(&ret->flight_pool, s->process->pool);
    apr_pool_tag(ret->flight_pool, "memsess_flight");
    if (n <= 0 || apr_shm_create(&ret->flight_shm, size, NULL,
                                 ret->flight_pool) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "MEMSESS0026: cannot "
                     "keep the requests in flight (%d workers): a flip does "
                     "not wait for the requests that had the list before",
                     n);
        apr_pool_destroy(ret->flight_pool);
        ret->flight_pool = NULL;
        ret->flight_shm = NULL;
        return;
    }
    rt->flight = memsess_flight_init(apr_shm_baseaddr_get(ret->flight_shm),
                                     size, n);
}

static int memsess_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                               apr_pool_t *ptemp, server_rec *s)
{
    memsess_retained_t *ret;
    memsess_runtime_t *runtime;
    const char *odd;

    (void)plog;
    memsess_runtime_set(NULL);
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;   /* the dry run: nothing to start */
    }
    ret = ap_retained_data_get(RETAINED_KEY);
    if (!ret) {
        ret = ap_retained_data_create(RETAINED_KEY, sizeof(*ret));
    }

    if (!ret->nonce) {
        if (apr_generate_random_bytes((unsigned char *)&ret->nonce,
                                      sizeof(ret->nonce)) != APR_SUCCESS
            || !ret->nonce) {
            ret->nonce = ((apr_uint64_t)getpid() << 32)
                         ^ (apr_uint64_t)apr_time_now();
        }
        ret->started = apr_time_sec(apr_time_now());
    }
    runtime = build_runtime(pconf, ptemp, s, 1);
    memsess_runtime_set(runtime);
    if (runtime) {
        runtime->nonce = ret->nonce;
        runtime->started = ret->started;
        runtime->generation_started = apr_time_sec(apr_time_now());
        runtime->generation_off_ms = memsess_clock_offset_ms();
    }
    if (!runtime) {
        if (ret->pool) {
            apr_pool_destroy(ret->pool);
            ret->pool = NULL;
            ret->shm = NULL;
        }
        return OK;
    }
    create_flight(runtime, s, ret);
    memsess_state_prepare(ptemp, runtime);
    if (runtime->confs->nelts
        && !strcmp(runtime->g.sess_prefix, MEMSESS_SESS_PREFIX)) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, "MEMSESS0201: the "
                     "sessions are under php-memcached's default namespace "
                     "\"%s\" (%s), which every PHP site shares: if another "
                     "site, vhost or job keeps sessions on these memcached "
                     "servers, a sync cannot tell them apart: set "
                     "MemsessNamespace", runtime->g.sess_prefix,
                     runtime->g.sess_prefix_from);
    }
    if ((odd = memsess_php_placement_odd(ptemp)) != NULL) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "MEMSESS0149: "
                     "php.ini sets %s: sessions placed that way are not "
                     "moved by a rejoin or a rebalance", odd);
    }
    if (create_table(runtime, pconf, ptemp, s, ret) != APR_SUCCESS
        || memsess_check_post_config(pconf, s, runtime) != APR_SUCCESS) {
        memsess_runtime_set(NULL);
        return !OK;
    }
    memsess_inject_post_config(pconf, s);
    memsess_rh_post_config(pconf, s, runtime);
    return OK;
}

/* Once every module's post_config has run (mod_dbd's, mod_watchdog's):
 * the checker process starts from what they set up. */
static int memsess_post_config_last(apr_pool_t *pconf, apr_pool_t *plog,
                                    apr_pool_t *ptemp, server_rec *s)
{
    memsess_runtime_t *runtime = memsess_runtime();

    (void)plog;
    (void)ptemp;
    if (runtime
        && ap_state_query(AP_SQ_MAIN_STATE) != AP_SQ_MS_CREATE_PRE_CONFIG) {
        memsess_check_process_start(pconf, s, runtime);
    }
    return OK;
}

static void memsess_child_init(apr_pool_t *pchild, server_rec *s)
{
    memsess_runtime_t *runtime = memsess_runtime();

    (void)s;
    if (runtime) {
        memsess_release_child_init(pchild, runtime);
    }
}

static void register_hooks(apr_pool_t *p)
{
    /* mod_watchdog starts only the watchdogs registered before its own
     * post_config has run */
    static const char *const before_watchdog[] = { "mod_watchdog.c", NULL };
    /* PHP has read php.ini by then (MemsessAdopt php) */
    static const char *const after_php[] = { "mod_php.c", "mod_php8.c",
                                             "mod_php7.c", NULL };

    (void)p;
    ap_hook_check_config(memsess_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(memsess_post_config, after_php, before_watchdog,
                        APR_HOOK_MIDDLE);
    ap_hook_post_config(memsess_post_config_last, NULL, NULL,
                        APR_HOOK_REALLY_LAST);
    /* before mod_watchdog starts the thread that calls the release */
    ap_hook_child_init(memsess_child_init, NULL, before_watchdog,
                       APR_HOOK_MIDDLE);
    /* last: after mod_env has set what we append to */
    ap_hook_fixups(memsess_inject_fixups, NULL, NULL, APR_HOOK_LAST);
    ap_hook_handler(memsess_status_handler, NULL, NULL, APR_HOOK_MIDDLE);
    memsess_status_register();
}

AP_DECLARE_MODULE(memsess) = {
    STANDARD20_MODULE_STUFF,
    create_dir_config,
    merge_dir_config,
    create_srv_config,
    merge_srv_config,
    memsess_cmds,
    register_hooks
};
