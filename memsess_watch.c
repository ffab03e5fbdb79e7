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

/* The watch: a dead server noticed as it dies, not at the next round.
 *
 * A memcached that exits (killed, crashed, restarted) has its connections
 * closed by the kernel at once.  The checker keeps one idle TCP connection
 * to every live server, on a thread of its own that only waits in poll():
 * when one is closed or reset, the server is probed at once (the probe and
 * its immediate repeat decide; a restarted server passes and stays up).
 * A hang, a lost host or a cut network close nothing: the rounds find
 * those.  The connections carry the probes' mark, so the release
 * (memsess_release.c) leaves them alone; nothing is ever sent on them. */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "apr_atomic.h"
#include "apr_strings.h"
#include "apr_thread_proc.h"

#include "httpd.h"
#include "http_log.h"

#include "memsess_watch.h"
#include "memsess_release_helper.h"
#include "memsess_table.h"

APLOG_USE_MODULE(memsess);

/* How long poll() waits before it looks at the stop flag and reconnects. */
#define WAIT_MS       (100)
/* A connection that failed is tried again after this long. */
#define RETRY         apr_time_from_sec(1)

typedef enum { IDLE, CONNECTING, OPEN } conn_e;

typedef struct {
    int        fd;
    conn_e     state;
    apr_time_t next_try;
} conn_t;

struct memsess_watch {
    memsess_runtime_t   *rt;
    apr_pool_t          *pool;
    apr_thread_t        *thread;
    volatile apr_uint32_t stop;
    memsess_suspect_fn  *suspect;
    void                *ctx;
    conn_t              *conns;     /* [nslots] */
    struct pollfd       *fds;       /* [nslots] */
    int                 *slot_of;   /* [nslots]: fds[k] is conns[slot_of[k]] */
};

static void hang_up(conn_t *cn, apr_time_t now)
{
    if (cn->fd >= 0) {
        close(cn->fd);   /* our own socket */
    }
    cn->fd = -1;
    cn->state = IDLE;
    cn->next_try = now + RETRY;
}

/* Starts a non-blocking connect to a live server. */
static void dial(memsess_watch_t *w, int i, apr_time_t now)
{
    conn_t *cn = &w->conns[i];
    const memsess_server_t *srv = APR_ARRAY_IDX(w->rt->targets, i,
                                                memsess_server_t *);
    const memsess_slot_t *slot = memsess_table_slot(w->rt->table, i);
    int idle = MEMSESS_PROBE_KEEPIDLE, fd;
    apr_sockaddr_t *sa;
    apr_pool_t *p;

    if (slot->state == MEMSESS_DOWN || now < cn->next_try) {
        return;   /* a down server has nothing to lose; the rounds watch it */
    }
    cn->next_try = now + RETRY;
    apr_pool_create(&p, w->pool);
    if (apr_sockaddr_info_get(&sa, srv->host, APR_UNSPEC, srv->port, 0, p)
        != APR_SUCCESS
        || (fd = socket(sa->family, SOCK_STREAM | SOCK_NONBLOCK
                                    | SOCK_CLOEXEC, 0)) < 0) {
        apr_pool_destroy(p);
        return;
    }
    /* the probes' mark: the release leaves it alone */
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    if (connect(fd, (struct sockaddr *)&sa->sa, sa->salen) == 0) {
        cn->state = OPEN;
    }
    else if (errno == EINPROGRESS) {
        cn->state = CONNECTING;
    }
    else {
        close(fd);
        apr_pool_destroy(p);
        return;
    }
    cn->fd = fd;
    apr_pool_destroy(p);
}

/* What poll() said of one connection; returns non-zero when the server
 * closed or reset it, or refused it. */
static int closed(memsess_watch_t *w, int i, short revents, apr_time_t now)
{
    conn_t *cn = &w->conns[i];
    int err = 0;
    socklen_t len = sizeof(err);
    char c;

    if (cn->state == CONNECTING) {
        if (!(revents & (POLLOUT | POLLERR | POLLHUP))) {
            return 0;
        }
        getsockopt(cn->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err == 0) {
            cn->state = OPEN;
            return 0;
        }
        hang_up(cn, now);
        return err == ECONNREFUSED || err == ECONNRESET;
    }
    if (!(revents & (POLLIN | POLLRDHUP | POLLERR | POLLHUP))) {
        return 0;
    }
    if (recv(cn->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
        /* it never sends unasked: something odd; start over quietly */
        hang_up(cn, now);
        return 0;
    }
    hang_up(cn, now);
    return 1;
}

static void *APR_THREAD_FUNC watch(apr_thread_t *thread, void *data)
{
    memsess_watch_t *w = data;
    int i, n = w->rt->targets->nelts;

    while (!apr_atomic_read32(&w->stop)) {
        apr_time_t now = apr_time_now();
        int k = 0, j;

        for (i = 0; i < n; i++) {
            conn_t *cn = &w->conns[i];

            if (cn->state == IDLE) {
                dial(w, i, now);
            }
            if (cn->state != IDLE) {
                w->fds[k].fd = cn->fd;
                w->fds[k].events = cn->state == CONNECTING
                                   ? POLLOUT : POLLIN | POLLRDHUP;
                w->fds[k].revents = 0;
                w->slot_of[k++] = i;
            }
        }
        if (poll(w->fds, k, WAIT_MS) <= 0) {
            continue;
        }
        now = apr_time_now();
        for (j = 0; j < k; j++) {
            if (w->fds[j].revents
                && closed(w, w->slot_of[j], w->fds[j].revents, now)) {
                w->suspect(w->ctx, w->slot_of[j]);
            }
        }
    }
    for (i = 0; i < n; i++) {
        if (w->conns[i].fd >= 0) {
            close(w->conns[i].fd);
        }
    }
    /* a plain return, not apr_thread_exit(): pthread_exit's forced unwind
     * leaves ASan reporting a stack-use-after-scope in a thread it no
     * longer knows (T-1) as the checker stops (as in memsess_exchange.c) */
    (void)thread;
    return NULL;
}

memsess_watch_t *memsess_watch_start(apr_pool_t *p, memsess_runtime_t *rt,
                                     memsess_suspect_fn *suspect, void *ctx)
{
    memsess_watch_t *w = apr_pcalloc(p, sizeof(*w));
    int i, n = rt->targets->nelts;
    apr_status_t rv;

    w->rt = rt;
    w->pool = p;
    w->suspect = suspect;
    w->ctx = ctx;
    w->conns = apr_pcalloc(p, n * sizeof(conn_t));
    w->fds = apr_pcalloc(p, n * sizeof(struct pollfd));
    w->slot_of = apr_pcalloc(p, n * sizeof(int));
    for (i = 0; i < n; i++) {
        w->conns[i].fd = -1;
    }
    rv = apr_thread_create(&w->thread, NULL, watch, w, p);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, rt->main, "MEMSESS0052: "
                     "cannot start the thread that watches for dead "
                     "servers: they are found by the rounds only");
        return NULL;
    }
    return w;
}

void memsess_watch_stop(memsess_watch_t *w)
{
    apr_status_t rv;

    if (w) {
        apr_atomic_set32(&w->stop, 1);
        apr_thread_join(&rv, w->thread);   /* within WAIT_MS */
    }
}
