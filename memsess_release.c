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

/* Releasing the requests caught on a server as it is marked down.
 *
 * A request that began before the verdict has the old list: it may be
 * blocked on the failed server (php-memcached waits 5 s per operation, and
 * its session lock loop reconnects and waits again).  So, as HAProxy's
 * "on-marked-down shutdown-sessions" does, every Apache child shuts down
 * its own sockets whose peer is exactly that server (address and port,
 * IPv4 or IPv6): the blocked call returns at once with an error.  It does
 * so on each tick of its mod_watchdog thread, as long as one of its
 * requests that began before it saw the verdict is still running (those
 * may connect to the server again), then stops.
 *
 * shutdown(), never close(): the descriptor stays PHP's, and a number
 * closed under PHP's feet could be reused by anything.  The shutdown acts
 * on a dup() of the descriptor whose peer is checked again: between the
 * check and the shutdown the socket cannot change.  The checker's own
 * probe sockets carry a mark (MEMSESS_PROBE_KEEPIDLE) and are left alone.
 *
 * The matching of addresses is pure (memsess_peer.c): unit-tested. */

#include <stddef.h>
#include <string.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <unistd.h>
#include <netinet/tcp.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>

#include "apr_atomic.h"
#include "apr_strings.h"

#include "httpd.h"
#include "http_log.h"
#include "ap_mpm.h"

#include "memsess_release.h"
#include "memsess_peer.h"
#include "memsess_release_helper.h"
#include "memsess_table.h"

APLOG_USE_MODULE(memsess);

/* At most this many addresses of one server name are matched. */
#define PEERS_MAX (8)

/* One server, as this child sees it. */
typedef struct {
    apr_uint32_t   state;       /* as last read */
    int            releasing;   /* within its window */
    apr_time_t     since;       /* when this child saw it go down */
    int            npeers;
    memsess_peer_t peers[PEERS_MAX];
    apr_uint64_t   released;    /* sockets shut down in this window */
} seen_t;

/* Requests in flight that got a pool: the start of each, one slot per
 * request thread (0 = none).  Written by the request's own thread, read
 * by the watchdog thread. */
typedef struct {
    apr_uint64_t *starts;
    int           nstarts;
    apr_uint32_t  next;        /* slots handed out */
    apr_uint32_t  untracked;   /* in flight without a slot */
} inflight_t;

static struct {
    apr_pool_t   *pool;        /* the tick's own: an allocator of its own,
                                * never pchild's (the request thread
                                * allocates from that one meanwhile) */
    apr_time_t    started;     /* of this child */
    seen_t       *seen;        /* [nslots] */
    int           first;       /* no tick yet */
    apr_uint64_t  generation;
    int           nreleasing;
    inflight_t    inflight;
} child;

static __thread int my_slot = -1;

void memsess_release_child_init(apr_pool_t *p, memsess_runtime_t *rt)
{
    int threads = 1;

    apr_allocator_t *allocator = NULL;

    /* runs before mod_watchdog's child_init starts the tick's thread: what
     * the tick allocates from comes from here, in this thread.  Pools are
     * not thread-safe, nor is an allocator two of them share: the tick's
     * pool has an allocator of its own (apr_palloc on pchild from the
     * tick's thread raced the request thread's and corrupted the heap:
     * t/42_graceful_many, t/18_sasl). */
    child.pool = NULL;
    /* unmanaged: it lives as long as the process.  mod_watchdog stops the
     * tick's thread from a cleanup of a pool of its own, not under pchild,
     * which a child that exits never destroys: the thread runs on while
     * clean_child_exit destroys pchild (its allocator munmaps its memory,
     * APR_ALLOCATOR_USES_MMAP) and exit() runs.  Nothing the tick reads
     * may come from pchild or a subpool of it. */
    if (apr_allocator_create(&allocator) != APR_SUCCESS
        || apr_pool_create_unmanaged_ex(&child.pool, NULL, allocator)
           != APR_SUCCESS) {
        child.pool = NULL;
        return;   /* no release in this child */
    }
    apr_allocator_owner_set(allocator, child.pool);
    apr_pool_tag(child.pool, "memsess_release");
    child.seen = apr_pcalloc(child.pool, rt->targets->nelts * sizeof(seen_t));
    child.first = 1;
    child.started = apr_time_now();
    if (ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads) != APR_SUCCESS
        || threads < 1) {
        threads = 1;
    }
    /* event's async write completion ends requests on other threads */
    child.inflight.nstarts = threads * 2;
    /* the tick reads these (requests_before): from the tick's pool, not
     * pchild (read there after clean_child_exit had unmapped it, the child
     * died of SIGSEGV at an httpd -k restart during a release) */
    child.inflight.starts = apr_pcalloc(child.pool, child.inflight.nstarts
                                                    * sizeof(apr_uint64_t));
}

typedef struct {
    apr_uint64_t *slot;   /* NULL: counted in untracked */
    apr_uint64_t  start;
} tracked_t;

static apr_status_t request_ended(void *data)
{
    tracked_t *tr = data;

    if (tr->slot) {
        /* unless the thread has begun another request meanwhile */
        apr_atomic_cas64(tr->slot, 0, tr->start);
    }
    else {
        apr_atomic_dec32(&child.inflight.untracked);
    }
    return APR_SUCCESS;
}

void memsess_release_track(request_rec *r)
{
    inflight_t *in = &child.inflight;
    tracked_t *tr;

    if (!in->starts || r->main) {
        return;   /* no child_init yet; a subrequest: its main one counts */
    }
    tr = apr_palloc(r->pool, sizeof(*tr));
    tr->start = (apr_uint64_t)apr_time_now();
    if (my_slot < 0) {
        apr_uint32_t k = apr_atomic_inc32(&in->next);

        my_slot = k < (apr_uint32_t)in->nstarts ? (int)k : in->nstarts;
    }
    if (my_slot < in->nstarts) {
        tr->slot = &in->starts[my_slot];
        apr_atomic_set64(tr->slot, tr->start);
    }
    else {
        tr->slot = NULL;
        apr_atomic_inc32(&in->untracked);
    }
    apr_pool_cleanup_register(r->pool, tr, request_ended,
                              apr_pool_cleanup_null);
}

/* Whether a request of this child that began before `since` may still
 * be running. */
static int requests_before(apr_time_t since)
{
    inflight_t *in = &child.inflight;
    int i;

    if (apr_atomic_read32(&in->untracked)) {
        return 1;
    }
    for (i = 0; i < in->nstarts; i++) {
        apr_uint64_t start = apr_atomic_read64(&in->starts[i]);

        if (start && (apr_time_t)start < since) {
            return 1;
        }
    }
    return 0;
}

/* The addresses a server's sockets may have as their peer: its literal,
 * or what its name resolves to now (as PHP resolves it). */
static void resolve(seen_t *sn, const memsess_server_t *srv)
{
    apr_sockaddr_t *sa;
    apr_pool_t *p;

    sn->npeers = 0;
    apr_pool_create(&p, child.pool);
    if (apr_sockaddr_info_get(&sa, srv->host, APR_UNSPEC, srv->port, 0, p)
        == APR_SUCCESS) {
        for (; sa && sn->npeers < PEERS_MAX; sa = sa->next) {
            if (memsess_peer_from_sockaddr(&sn->peers[sn->npeers],
                                           &sa->sa, sa->salen)) {
                sn->npeers++;
            }
        }
    }
    apr_pool_destroy(p);
}

/* Whether fd is one of the checker's probe sockets. */
static int probe_socket(int fd)
{
    int v = 0;
    socklen_t len = sizeof(v);

    return getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, &len) == 0
           && v == MEMSESS_PROBE_KEEPIDLE;
}

/* The sockets still connecting to a server being released (SYN_SENT: a
 * server that drops packets never answers the handshake), looked up once
 * per release round: getpeername() has nothing for them.  The kernel is
 * asked through sock_diag for those in SYN_SENT whose destination is one
 * of those servers (a filter it runs: a few lines, however many sockets
 * the machine has in TIME_WAIT); where sock_diag cannot be had, the
 * namespace's /proc/self/net/tcp{,6} is read instead, whole. */
#define CONNECTING_MAX (4096)
static struct {
    int            read;       /* this round */
    int            n;
    apr_uint64_t   inode[CONNECTING_MAX];
    memsess_peer_t peer[CONNECTING_MAX];
} connecting;

/* One socket in SYN_SENT to the peer asked for (the baton), into
 * connecting. */
static int note_connecting(void *baton, const struct nlmsghdr *h,
                           const struct inet_diag_msg *m)
{
    (void)h;
    if (m->idiag_inode && connecting.n < CONNECTING_MAX) {
        connecting.inode[connecting.n] = m->idiag_inode;
        connecting.peer[connecting.n++] = *(const memsess_peer_t *)baton;
    }
    return connecting.n < CONNECTING_MAX;
}

/* The sockets in SYN_SENT to peer, into connecting: from IPv4 sockets,
 * and from IPv6 ones (an IPv4 server is reached from those too, mapped).
 * Returns 0, or -1 when sock_diag cannot be asked. */
static int ask_connecting(int nl, const memsess_peer_t *peer)
{
    if (peer->family == AF_INET
        && memsess_diag_dump(nl, peer, AF_INET, 1u << 2 /* SYN_SENT */, 0,
                             note_connecting, (void *)peer) < 0) {
        return -1;
    }
    return memsess_diag_dump(nl, peer, AF_INET6, 1u << 2, 0, note_connecting,
                             (void *)peer);
}

static void read_connecting(const char *file)
{
    FILE *f = fopen(file, "r");
    char line[512];

    if (!f) {
        return;
    }
    while (connecting.n < CONNECTING_MAX && fgets(line, sizeof(line), f)) {
        memsess_peer_t peer;
        apr_uint64_t inode;
        int state;

        if (memsess_proc_tcp_line(line, strlen(line), &peer, &state, &inode)
            && state == 2 && inode) {
            connecting.inode[connecting.n] = inode;
            connecting.peer[connecting.n++] = peer;
        }
    }
    fclose(f);
}

/* The connecting sockets of this round, by sock_diag (else /proc). */
static void read_all_connecting(const memsess_runtime_t *rt)
{
    int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    int i, k, ok = nl >= 0;

    connecting.read = 1;
    connecting.n = 0;
    for (i = 0; ok && i < rt->targets->nelts; i++) {
        const seen_t *sn = &child.seen[i];

        for (k = 0; ok && sn->releasing && k < sn->npeers; k++) {
            ok = ask_connecting(nl, &sn->peers[k]) == 0;
        }
    }
    if (nl >= 0) {
        close(nl);
    }
    if (!ok) {
        connecting.n = 0;
        read_connecting("/proc/self/net/tcp");
        read_connecting("/proc/self/net/tcp6");
    }
}

static int connecting_peer(const memsess_runtime_t *rt, int fd,
                           memsess_peer_t *peer)
{
    struct stat st;
    int i, v = 0, domain = 0, type = 0;
    socklen_t l = sizeof(v);

    /* a TCP socket that is neither connected nor listening */
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) != 0 || v
        || getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain,
                      (l = sizeof(domain), &l)) != 0
        || (domain != AF_INET && domain != AF_INET6)
        || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type,
                      (l = sizeof(type), &l)) != 0
        || type != SOCK_STREAM) {
        return 0;
    }
    if (!connecting.read) {
        read_all_connecting(rt);
    }
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
        return 0;
    }
    for (i = 0; i < connecting.n; i++) {
        if (connecting.inode[i] == (apr_uint64_t)st.st_ino) {
            *peer = connecting.peer[i];
            return 1;
        }
    }
    return 0;
}

/* The server (index in child.seen) fd's peer is, if it is one being
 * released; else -1. */
static int releasing_peer(const memsess_runtime_t *rt, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    memsess_peer_t peer;
    int i;

    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (!memsess_peer_from_sockaddr(&peer, &ss, len)) {
            return -1;
        }
    }
    else if (errno != ENOTCONN || !connecting_peer(rt, fd, &peer)) {
        return -1;
    }
    for (i = 0; i < rt->targets->nelts; i++) {
        seen_t *sn = &child.seen[i];

        if (sn->releasing
            && memsess_peer_find(&peer, sn->peers, sn->npeers) >= 0) {
            return i;
        }
    }
    return -1;
}

static void release_fd(const memsess_runtime_t *rt, int fd)
{
    int d, i;

    if (releasing_peer(rt, fd) < 0) {
        return;
    }
    /* pin the socket: fd may be closed and its number reused meanwhile */
    if ((d = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        return;
    }
    if ((i = releasing_peer(rt, d)) >= 0 && !probe_socket(d)
        && shutdown(d, SHUT_RDWR) == 0) {
        const memsess_server_t *srv = APR_ARRAY_IDX(rt->targets, i,
                                                    memsess_server_t *);

        if (!child.seen[i].released++) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rt->main,
                         "MEMSESS0050: process %" APR_PID_T_FMT " shut "
                         "down its connection to %s, marked down: the "
                         "request waiting on it goes on", getpid(),
                         srv->addr);
        }
        else {
            ap_log_error(APLOG_MARK, APLOG_TRACE1, 0, rt->main,
                         "process %" APR_PID_T_FMT " shut down another "
                         "connection to %s", getpid(), srv->addr);
        }
    }
    close(d);   /* our duplicate only: the socket stays PHP's */
}

/* Every socket of this process, whose peer is a server being released. */
static void release_sockets(const memsess_runtime_t *rt)
{
    DIR *dir = opendir("/proc/self/fd");
    struct dirent *de;

    connecting.read = 0;

    if (!dir) {
        int fd, max = (int)sysconf(_SC_OPEN_MAX);

        for (fd = 0; fd < max && fd < 65536; fd++) {
            release_fd(rt, fd);
        }
        return;
    }
    while ((de = readdir(dir)) != NULL) {
        char *end;
        long fd = strtol(de->d_name, &end, 10);

        if (*de->d_name && !*end && fd != dirfd(dir)) {
            release_fd(rt, (int)fd);
        }
    }
    closedir(dir);
}

/* Reads every server's state when the table's generation moved: a server
 * this child sees go down opens its window. */
static void look(const memsess_runtime_t *rt, apr_time_t now, int first)
{
    int i;

    for (i = 0; i < rt->targets->nelts; i++) {
        const memsess_server_t *srv = APR_ARRAY_IDX(rt->targets, i,
                                                    memsess_server_t *);
        seen_t *sn = &child.seen[i];
        memsess_slot_t slot;

        if (memsess_table_read_slot(rt->table, i, &slot) != APR_SUCCESS) {
            continue;   /* a writer died inside: the next checker repairs */
        }
        /* a server that went down before this child began caught nothing
         * of it; one that went down as it began may have */
        if (slot.state == MEMSESS_DOWN && sn->state != MEMSESS_DOWN
            && (!first || slot.last_change >= apr_time_sec(child.started))) {
            sn->releasing = 1;
            sn->since = now;
            sn->released = 0;
            resolve(sn, srv);
            child.nreleasing++;
        }
        else if (slot.state != MEMSESS_DOWN && sn->releasing) {
            sn->releasing = 0;
            child.nreleasing--;
        }
        sn->state = slot.state;
    }
}

void memsess_release_tick(memsess_runtime_t *rt)
{
    apr_time_t now = apr_time_now();
    apr_uint64_t generation = memsess_table_generation(rt->table);
    int i, first = child.first;

    if (!child.pool) {
        return;
    }
    child.first = 0;
    if (first || generation != child.generation) {
        child.generation = generation;
        look(rt, now, first);
    }
    if (!child.nreleasing) {
        return;   /* the usual case: one load and one compare a tick */
    }
    for (i = 0; i < rt->targets->nelts; i++) {
        seen_t *sn = &child.seen[i];

        if (sn->releasing && !requests_before(sn->since)) {
            /* what began after the verdict never had it in its list */
            sn->releasing = 0;
            child.nreleasing--;
            if (sn->released) {
                ap_log_error(APLOG_MARK, APLOG_INFO, 0, rt->main,
                             "MEMSESS0051: process %" APR_PID_T_FMT
                             " released %" APR_UINT64_T_FMT " connection(s)"
                             " to %s; its requests from before the verdict "
                             "have ended", getpid(), sn->released,
                             APR_ARRAY_IDX(rt->targets, i,
                                           memsess_server_t *)->addr);
            }
        }
    }
    if (child.nreleasing) {
        release_sockets(rt);
    }
}

