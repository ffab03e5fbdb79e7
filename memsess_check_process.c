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

/* The checker process: the checker and its long jobs in a process of its
 * own, out of the MPM's reach.
 *
 * In a child, the checker shares the child's fate: prefork reaps an idle
 * child when the load falls, every MPM ends a child at
 * MaxConnectionsPerChild, and a rejoin sync or a rebalance running in it
 * was cut short and started over from zero in the next checker (a large
 * server could be cut every ten seconds and never come back).  So, as
 * mod_cgid's daemon and mod_fcgid's process manager are:
 *   - the parent (root) forks it once every module's post_config has run
 *     (MemsessCheckerProcess On, the default), and again when it dies
 *     (apr_proc_other_child_*), unless it was told to stop (it exits 0 on
 *     SIGTERM or SIGHUP) or Apache stops; a graceful or a restart stops it
 *     with the configuration and forks a new one;
 *   - it runs as Apache's User (ap_unixd_setup_child, as a child does),
 *     closes the listeners, ends with the parent (PR_SET_PDEATHSIG), and
 *     does no network work before it has dropped root;
 *   - of the other modules, it initialises mod_dbd alone (its child_init
 *     hook, which gives MemsessPersist dbd its connections);
 *   - every 100 ms it runs the checker's tick (memsess_check.c), which
 *     beats in the shared table and claims the lease as a child would.
 * The children still tick: while the process beats they leave a free lease
 * to it; when it dies or stops ticking one of them takes over at once, as
 * before, and hands the lease back once the process beats again and no
 * job of its own would be cut short.  With MemsessCheckerProcess Off (or
 * httpd -X) there is no process and the children check alone. */

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "apr_thread_proc.h"

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_main.h"
#include "http_core.h"
#include "ap_listen.h"
#include "ap_mpm.h"
#include "mod_unixd.h"

#include "memsess_check_process.h"
#include "memsess_check.h"
#include "memsess_clocks.h"
#include "memsess_table.h"

APLOG_USE_MODULE(memsess);

#define TICK        apr_time_from_msec(100)
#define EXIT_NOUSER (3)            /* it could not become Apache's User */
#define STOP_WAIT   apr_time_from_sec(2)

/* In the parent: the process of this configuration. */
static struct {
    memsess_runtime_t *rt;
    server_rec        *s;
    apr_pool_t        *pool;      /* pconf */
    apr_proc_t         proc;
    pid_t              parent;
    int                running;
    apr_time_t         forked;
    int                quick;     /* deaths in a row soon after the fork */
} cp;

/* In the process: set by SIGTERM (a stop) and SIGHUP (a restart). */
static volatile sig_atomic_t stopping;

static void on_stop(int sig)
{
    (void)sig;
    stopping = 1;
}

/* mod_dbd's child_init, as a child runs it: MemsessPersist dbd opens its
 * connections through mod_dbd's pool of them. */
static void init_dbd(apr_pool_t *p, server_rec *s)
{
    apr_array_header_t *hooks = ap_hook_get_child_init();
    ap_LINK_child_init_t *h;
    int i;

    if (!hooks) {
        return;
    }
    h = (ap_LINK_child_init_t *)hooks->elts;
    for (i = 0; i < hooks->nelts; i++) {
        if (h[i].szName && strcmp(h[i].szName, "mod_dbd.c") == 0) {
            h[i].pFunc(p, s);
        }
    }
}

static void process_main(memsess_runtime_t *rt, server_rec *s)
{
    struct sigaction sa;
    apr_pool_t *p;
    pid_t parent = cp.parent;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGUSR1, &sa, NULL);    /* graceful: the parent stops us */
    sigaction(SIGWINCH, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    ap_close_listeners();
    if (ap_unixd_setup_child() != 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, errno, s, "MEMSESS0191: the "
                     "checker process stops: it cannot become Apache's User; "
                     "the children check");
        _exit(EXIT_NOUSER);
    }
    /* gone with the parent (cleared by the change of user: set now) */
    prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
    prctl(PR_SET_NAME, "memsess-check", 0, 0, 0);
    if (getppid() != parent) {
        _exit(0);
    }
    apr_pool_create(&p, NULL);
    apr_pool_tag(p, "memsess_check_process");
    init_dbd(p, s);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, "MEMSESS0192: the checker "
                 "process (pid %" APR_PID_T_FMT ") runs as uid %u",
                 getpid(), (unsigned)getuid());
    while (!stopping && getppid() == parent) {
        /* by the monotonic clock: a wall clock stepped back (NTP, a
         * suspended VM) would hold the next tick back as long */
        apr_time_t next = memsess_mono_now() + TICK, now;

        memsess_check_process_tick(rt);
        while (!stopping && (now = memsess_mono_now()) < next) {
            apr_sleep(next - now);   /* a signal cuts it short */
        }
    }
    memsess_check_process_stop(rt);
    apr_pool_destroy(p);   /* mod_dbd's connections */
    _exit(0);
}

static apr_status_t spawn(void)
{
    apr_status_t rv = apr_proc_fork(&cp.proc, cp.pool);

    if (rv == APR_INCHILD) {
        process_main(cp.rt, cp.s);
        _exit(0);
    }
    if (rv != APR_INPARENT) {
        memsess_table_set_process(cp.rt->table, 0, 0);
        return rv;
    }
    cp.running = 1;
    cp.forked = memsess_mono_now();   /* (against the children's ticks) */
    memsess_table_set_process(cp.rt->table, (apr_uint32_t)cp.proc.pid,
                              cp.forked);
    return APR_SUCCESS;
}

static void maintenance(int reason, void *data, apr_wait_t status)
{
    int state;

    (void)data;
    switch (reason) {
    case APR_OC_REASON_DEATH:
    case APR_OC_REASON_LOST:
        cp.running = 0;
        memsess_table_set_process(cp.rt->table, 0, 0);
        apr_proc_other_child_unregister(&cp);
        if (reason == APR_OC_REASON_DEATH && WIFEXITED(status)
            && WEXITSTATUS(status) == EXIT_NOUSER) {
            return;   /* logged: the children check */
        }
        if ((reason == APR_OC_REASON_DEATH && WIFEXITED(status)
             && WEXITSTATUS(status) == 0)
            || (ap_mpm_query(AP_MPMQ_MPM_STATE, &state) == APR_SUCCESS
                && state == AP_MPMQ_STOPPING)) {
            /* it was told to stop (Apache stops or restarts: the process
             * group's SIGTERM or SIGHUP; or an administrator's SIGTERM):
             * the children check until the next start forks it */
            return;
        }
        /* a process that dies at once, again and again, is given up
         * after ten: the children check meanwhile */
        cp.quick = memsess_mono_now() - cp.forked < apr_time_from_sec(10)
                   ? cp.quick + 1 : 0;
        if (cp.quick > 10) {
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, cp.s, "MEMSESS0193: the "
                         "checker process died ten times within seconds of "
                         "its start: not restarted until the next restart "
                         "of Apache; the children check");
            return;
        }
        if (spawn() == APR_SUCCESS) {
            apr_proc_other_child_register(&cp.proc, maintenance, &cp, NULL,
                                          cp.pool);
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, cp.s, "MEMSESS0194: "
                         "the checker process died (%s %d): restarted as "
                         "pid %" APR_PID_T_FMT,
                         WIFSIGNALED(status) ? "signal" : "exit",
                         WIFSIGNALED(status) ? WTERMSIG(status)
                                             : WEXITSTATUS(status),
                         cp.proc.pid);
        }
        break;
    case APR_OC_REASON_RESTART:
    case APR_OC_REASON_UNREGISTER:
        break;
    }
}

/* With the configuration: a graceful or a restart waits for it (2 s at
 * most, then SIGKILL) and forks a new one; a stop only signals it. */
static apr_status_t process_stop(void *data)
{
    apr_time_t end = apr_time_now() + STOP_WAIT;

    (void)data;
    /* (its other-child record went with the pool, before this cleanup) */
    if (!cp.running || getpid() != cp.parent) {
        return APR_SUCCESS;
    }
    kill(cp.proc.pid, SIGTERM);
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_EXITING) {
        /* Apache stops: the process ends on its own (init reaps it), and
         * the parent lets go of its listeners at once, not after the
         * checker's stop */
        cp.running = 0;
        return APR_SUCCESS;
    }
    while (waitpid(cp.proc.pid, NULL, WNOHANG) == 0) {
        if (apr_time_now() >= end) {
            kill(cp.proc.pid, SIGKILL);
            waitpid(cp.proc.pid, NULL, 0);
            break;
        }
        apr_sleep(apr_time_from_msec(10));
    }
    cp.running = 0;
    return APR_SUCCESS;
}

void memsess_check_process_start(apr_pool_t *pconf, server_rec *s,
                                 memsess_runtime_t *rt)
{
    memset(&cp, 0, sizeof(cp));
    if (!rt->g.check_process || ap_exists_config_define("ONE_PROCESS")) {
        memsess_table_set_process(rt->table, 0, 0);
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, "MEMSESS0195: no checker "
                     "process (%s): a child checks, and a job it runs ends "
                     "with it", rt->g.check_process ? "httpd -X"
                     : "MemsessCheckerProcess Off");
        return;
    }
    cp.rt = rt;
    cp.s = s;
    cp.pool = pconf;
    cp.parent = getpid();
    apr_pool_cleanup_register(pconf, NULL, process_stop,
                              apr_pool_cleanup_null);
    if (spawn() != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "MEMSESS0196: cannot "
                     "fork the checker process: a child checks");
        return;
    }
    apr_proc_other_child_register(&cp.proc, maintenance, &cp, NULL, pconf);
}
