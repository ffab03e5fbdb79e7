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

/* The release helper: the sockets of every process on the machine to a
 * server marked down, destroyed by the kernel.
 *
 * Each Apache child shuts down its own sockets to a server marked down
 * (memsess_release.c); a php-fpm worker, or any other PHP process, is out
 * of its reach and waits out php-memcached's timeouts.  The kernel can
 * destroy a TCP socket of any process (sock_diag's SOCK_DESTROY, what
 * `ss -K` does): the blocked call gets ECONNABORTED at once.  That needs
 * CAP_NET_ADMIN, so it lives in a small process of its own:
 *   - forked by the parent (root) at each configuration's post_config,
 *     restarted by it when it dies (apr_proc_other_child_*), stopped with
 *     the configuration;
 *   - it runs as Apache's User and keeps CAP_NET_ADMIN only (every other
 *     capability dropped, from the bounding set too; no new privileges),
 *     all descriptors closed but its socket and the error log;
 *   - it reads datagrams "release <slot>[ keep <inode>...]" from the
 *     checker only (the kernel's SCM_CREDENTIALS: the sender's pid is the
 *     table's checker), for a server of the configured pools only (a slot
 *     number, never an address: it resolves the server itself), and only
 *     while the table says the server is out;
 *   - it asks the kernel for the TCP sockets whose destination is that
 *     server (a sock_diag dump with a filter the kernel runs: no reading of
 *     /proc/net/tcp, whatever the number of sockets in TIME_WAIT),
 *     established, connecting or closing, leaves alone those the checker
 *     named (its own probes), destroys the others and logs how many, of
 *     which users.
 * Nothing else: a socket whose destination is not exactly that server's
 * address and port is never touched.  Without root (or with
 * MemsessReleaseHelper Off) there is no helper, and the release per child
 * stands alone.
 *
 * The parsing of a request and the kernel filter are pure (unit-tested,
 * fuzzed). */

#include <string.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <linux/inet_diag.h>

#include "memsess_release_helper.h"
#include "memsess_peer.h"
#include "memsess_table.h"

/* ------------------------------------------------------------------ */
/* Pure                                                               */

static const char *digits(const char *p, const char *end, apr_uint64_t *v,
                          int maxd)
{
    int n = 0;

    *v = 0;
    while (p < end && *p >= '0' && *p <= '9' && n < maxd) {
        *v = *v * 10 + (apr_uint64_t)(*p++ - '0');
        n++;
    }
    return n && (p == end || *p < '0' || *p > '9') ? p : NULL;
}

int memsess_rh_parse(const char *msg, apr_size_t len, int nslots,
                     apr_uint64_t *keep, int *nkeep)
{
    static const char verb[] = "release ", kw[] = " keep";
    const char *p = msg, *end = msg + len;
    apr_uint64_t slot;
    int max = *nkeep;

    *nkeep = 0;
    if (len && end[-1] == '\n') {
        end--;
    }
    if ((apr_size_t)(end - p) < sizeof(verb) - 1
        || memcmp(p, verb, sizeof(verb) - 1)) {
        return -1;
    }
    p += sizeof(verb) - 1;
    if (!(p = digits(p, end, &slot, 4)) || slot >= (apr_uint64_t)nslots) {
        return -1;
    }
    if (p < end) {
        if ((apr_size_t)(end - p) < sizeof(kw) - 1
            || memcmp(p, kw, sizeof(kw) - 1)) {
            return -1;
        }
        p += sizeof(kw) - 1;
        while (p < end) {
            apr_uint64_t ino;

            if (*p != ' ' || *nkeep >= max
                || !(p = digits(p + 1, end, &ino, 20))) {
                return -1;
            }
            keep[(*nkeep)++] = ino;
        }
        if (!*nkeep) {
            return -1;
        }
    }
    return (int)slot;
}

apr_size_t memsess_rh_filter(const memsess_peer_t *peer, void *buf,
                             apr_size_t size)
{
    struct inet_diag_bc_op op;
    struct inet_diag_hostcond cond;
    apr_size_t alen = peer->family == AF_INET6 ? 16 : 4;
    apr_size_t len = sizeof(op) + sizeof(cond) + alen;

    if ((peer->family != AF_INET && peer->family != AF_INET6)
        || size < len) {
        return 0;
    }
    /* one condition: destination address (all its bits) and port; yes
     * runs off the end (accepted), no 4 bytes past it (refused) */
    op.code = INET_DIAG_BC_D_COND;
    op.yes = (unsigned char)len;
    op.no = (unsigned short)(len + 4);
    memset(&cond, 0, sizeof(cond));
    cond.family = peer->family;
    cond.prefix_len = (unsigned char)(alen * 8);
    cond.port = peer->port;
    memcpy(buf, &op, sizeof(op));
    memcpy((char *)buf + sizeof(op), &cond, sizeof(cond));
    memcpy((char *)buf + sizeof(op) + sizeof(cond), peer->addr, alen);
    return len;
}

#ifndef MEMSESS_NO_HTTPD

/* ------------------------------------------------------------------ */
/* The helper                                                         */

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include <dirent.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <netinet/tcp.h>
#include <linux/capability.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/rtnetlink.h>

#include "apr_strings.h"
#include "apr_thread_proc.h"

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "mpm_common.h"
#include "unixd.h"

APLOG_USE_MODULE(memsess);

#define PEERS_MAX  (8)     /* addresses of one server name */
#define KEEP_MAX   (16)    /* the checker's own sockets named */
#define IDS_MAX    (4096)  /* sockets destroyed per family and round */
#define WINDOW     apr_time_from_sec(6)   /* asked again that long: the
                                           * requests of before reconnect */

#ifndef SOCK_DESTROY
#define SOCK_DESTROY 21
#endif

typedef struct {
    int            npeers;
    memsess_peer_t peers[PEERS_MAX];
} target_t;

/* In the parent: the helper of this configuration. */
static struct {
    memsess_runtime_t *rt;
    server_rec        *s;
    apr_pool_t        *pool;        /* pconf */
    apr_proc_t         proc;
    int                running;
    int                fd[2];       /* [0] the checker's end, [1] its */
    int                restarts;
} helper = { NULL, NULL, NULL, { 0 }, 0, { -1, -1 }, 0 };

/* In the checker: when each server went out (0: live). */
static apr_time_t *out_since;

/* Whether a server's sockets may be released: out, and not answering
 * again (no good probe since, not syncing: its sync's connections and
 * the probes that bring it back are left alone). */
static int releasable(const memsess_slot_t *slot)
{
    return !MEMSESS_SLOT_LIVE(slot) && slot->state != MEMSESS_SYNCING
           && !slot->consecutive_passes;
}

/* The addresses a server name resolves to (as the release per child). */
static void resolve(apr_pool_t *p, const memsess_server_t *srv, target_t *t)
{
    apr_sockaddr_t *sa = NULL;

    t->npeers = 0;
    if (apr_sockaddr_info_get(&sa, srv->host, APR_UNSPEC, srv->port, 0, p)
        != APR_SUCCESS) {
        return;
    }
    for (; sa && t->npeers < PEERS_MAX; sa = sa->next) {
        memsess_peer_t peer;

        if (memsess_peer_from_sockaddr(&peer, &sa->sa, sa->salen)
            && memsess_peer_find(&peer, t->peers, t->npeers) < 0) {
            t->peers[t->npeers++] = peer;
        }
    }
}

/* Keeps CAP_NET_ADMIN only, as Apache's User.  Returns 0, or why not. */
static const char *drop_privileges(void)
{
    struct __user_cap_header_struct head = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    int cap;

    for (cap = 0; cap <= 63; cap++) {
        if (cap != CAP_NET_ADMIN && prctl(PR_CAPBSET_READ, cap, 0, 0, 0) > 0
            && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
            return "cannot drop a capability from the bounding set";
        }
    }
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0
        || setgroups(0, NULL) != 0
        || setgid(ap_unixd_config.group_id) != 0
        || setuid(ap_unixd_config.user_id) != 0) {
        return "cannot become Apache's User";
    }
    memset(data, 0, sizeof(data));
    data[0].effective = data[0].permitted = 1u << CAP_NET_ADMIN;
    if (syscall(SYS_capset, &head, data) != 0
        || prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0
        || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        return "cannot keep CAP_NET_ADMIN alone";
    }
    return NULL;
}

/* Every descriptor but the ones named. */
static void close_others(int keep1, int keep2)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int fds[1024], n = 0, i;

    if (!d) {
        return;
    }
    while ((e = readdir(d)) && n < (int)(sizeof(fds) / sizeof(fds[0]))) {
        int fd = atoi(e->d_name);

        if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && fd > 2
            && fd != keep1 && fd != keep2 && fd != dirfd(d)) {
            fds[n++] = fd;
        }
    }
    closedir(d);
    for (i = 0; i < n; i++) {
        close(fds[i]);
    }
}

/* A socket's priority as the dump gives it (INET_DIAG_CLASS_ID: its
 * net_cls class, else SO_PRIORITY); -1 when absent. */
static long class_of(const struct nlmsghdr *h, const struct inet_diag_msg *m)
{
    const struct rtattr *at = (const struct rtattr *)(m + 1);
    int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*m));

    for (; RTA_OK(at, len); at = RTA_NEXT(at, len)) {
        if (at->rta_type == INET_DIAG_CLASS_ID
            && RTA_PAYLOAD(at) >= sizeof(apr_uint32_t)) {
            apr_uint32_t v;

            memcpy(&v, RTA_DATA(at), sizeof(v));
            return (long)v;
        }
    }
    return -1;
}

typedef struct {
    struct inet_diag_sockid id;
    unsigned char family;
    apr_uint32_t uid;
} found_t;

int memsess_diag_dump(int nl, const memsess_peer_t *peer, int family,
                      unsigned states, unsigned ext,
                      int (*each)(void *baton, const struct nlmsghdr *h,
                                  const struct inet_diag_msg *m),
                      void *baton)
{
    struct {
        struct nlmsghdr         nlh;
        struct inet_diag_req_v2 req;
        struct nlattr           attr;
        char                    bc[64];
    } msg;
    struct sockaddr_nl nladdr = { AF_NETLINK, 0, 0, 0 };
    apr_size_t bclen;
    char buf[16384];
    int done = 0, more = 1;

    memset(&msg, 0, sizeof(msg));
    if (!(bclen = memsess_rh_filter(peer, msg.bc, sizeof(msg.bc)))) {
        return 0;
    }
    msg.nlh.nlmsg_len = NLMSG_LENGTH(sizeof(msg.req)) + NLA_HDRLEN
                        + (unsigned)bclen;
    msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    msg.req.sdiag_family = (unsigned char)family;
    msg.req.sdiag_protocol = IPPROTO_TCP;
    msg.req.idiag_states = states;
    msg.req.idiag_ext = (unsigned char)ext;
    msg.attr.nla_len = (unsigned short)(NLA_HDRLEN + bclen);
    msg.attr.nla_type = INET_DIAG_REQ_BYTECODE;
    if (sendto(nl, &msg, msg.nlh.nlmsg_len, 0, (struct sockaddr *)&nladdr,
               sizeof(nladdr)) < 0) {
        return -1;
    }
    while (!done) {
        ssize_t got = recv(nl, buf, sizeof(buf), 0);
        struct nlmsghdr *h = (struct nlmsghdr *)buf;

        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        for (; NLMSG_OK(h, (size_t)got); h = NLMSG_NEXT(h, got)) {
            if (h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(h);

                if (e->error) {
                    errno = -e->error;
                    return -1;
                }
            }
            if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
                done = 1;
                break;
            }
            if (more) {
                more = each(baton, h, NLMSG_DATA(h));
            }
        }
    }
    return 0;
}

/* What dump() collects: the sockets to destroy, but for those of keep. */
typedef struct {
    const apr_uint64_t *keep;
    int                 nkeep;
    found_t            *out;
    int                 n, max;
} collect_t;

static int collect(void *baton, const struct nlmsghdr *h,
                   const struct inet_diag_msg *m)
{
    collect_t *c = baton;
    int k, kept;

    /* an orphan (closed, no process: inode 0) waits for nobody; the
     * checkers' own connections carry their priority */
    kept = !m->idiag_inode || class_of(h, m) == MEMSESS_PROBE_PRIORITY;
    for (k = 0; k < c->nkeep; k++) {
        kept |= c->keep[k] == m->idiag_inode;
    }
    if (!kept && c->n < c->max) {
        c->out[c->n].id = m->id;
        c->out[c->n].family = m->idiag_family;
        c->out[c->n++].uid = m->idiag_uid;
    }
    return c->n < c->max;
}

/* The sockets of one family whose destination is peer (a filter the
 * kernel runs), but for those of keep: how many, or -1. */
static int dump(int nl, const memsess_peer_t *peer, int family,
                const apr_uint64_t *keep, int nkeep, found_t *out, int max)
{
    collect_t c = { keep, nkeep, out, 0, max };

    /* established, connecting, closing: not listening, not TIME_WAIT;
     * the class id (SO_PRIORITY) comes with the traffic class */
    if (memsess_diag_dump(nl, peer, family,
                          (1u << 1) | (1u << 2) | (1u << 3) | (1u << 4)
                          | (1u << 5) | (1u << 8) | (1u << 9) | (1u << 11)
                          | (1u << 12),
                          1u << (INET_DIAG_TCLASS - 1), collect, &c) < 0) {
        return -1;
    }
    return c.n;
}

static int destroy(int nl, const found_t *f)
{
    struct {
        struct nlmsghdr         nlh;
        struct inet_diag_req_v2 req;
    } msg;
    struct sockaddr_nl nladdr = { AF_NETLINK, 0, 0, 0 };
    char buf[512];
    ssize_t got;

    memset(&msg, 0, sizeof(msg));
    msg.nlh.nlmsg_len = sizeof(msg);
    msg.nlh.nlmsg_type = SOCK_DESTROY;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    msg.req.sdiag_family = f->family;
    msg.req.sdiag_protocol = IPPROTO_TCP;
    msg.req.idiag_states = ~0u;
    msg.req.id = f->id;
    if (sendto(nl, &msg, sizeof(msg), 0, (struct sockaddr *)&nladdr,
               sizeof(nladdr)) < 0) {
        return -errno;
    }
    while ((got = recv(nl, buf, sizeof(buf), 0)) < 0 && errno == EINTR) {
    }
    if (got >= (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
        const struct nlmsghdr *h = (const struct nlmsghdr *)buf;

        if (h->nlmsg_type == NLMSG_ERROR) {
            return ((const struct nlmsgerr *)NLMSG_DATA(h))->error;
        }
    }
    return 0;
}

/* One request: destroys what it may; the count, or -1. */
static int release(const target_t *t, const apr_uint64_t *keep, int nkeep,
                   char *uids, apr_size_t ulen)
{
    static found_t found[IDS_MAX];
    int fam, k, i, n, released = 0;
    int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    static const int families[2] = { AF_INET, AF_INET6 };
    apr_size_t used = 0;

    uids[0] = '\0';
    if (nl < 0) {
        return -1;
    }
    for (k = 0; k < t->npeers; k++) {
        for (fam = 0; fam < 2; fam++) {
            /* an IPv4 server is reached from IPv6 sockets too (mapped) */
            if (t->peers[k].family == AF_INET6 && families[fam] == AF_INET) {
                continue;
            }
            n = dump(nl, &t->peers[k], families[fam], keep, nkeep, found,
                     IDS_MAX);
            if (n < 0) {
                close(nl);
                return -1;
            }
            for (i = 0; i < n; i++) {
                if (destroy(nl, &found[i]) == 0) {
                    char one[16];

                    released++;
                    apr_snprintf(one, sizeof(one), "%u", found[i].uid);
                    if (!strstr(uids, one) && used + strlen(one) + 2 < ulen) {
                        used += apr_snprintf(uids + used, ulen - used, "%s%s",
                                             used ? "," : "", one);
                    }
                }
            }
        }
    }
    close(nl);
    return released;
}

/* After a request that found sockets, the helper looks again by itself
 * every HOT_POLL, as long as it finds more, HOT_TIME at most (a request
 * of before reconnects sooner than the checker's next round: php-fpm's
 * lock attempts), with the last keep list the checker gave.  A look costs
 * the kernel a walk of its TCP hash: ~10 ms with 20,000 sockets in
 * TIME_WAIT, ~20 ms with 100,000 (bench/fpm.sh). */
#define HOT_TIME apr_time_from_sec(2)
#define HOT_POLL (40)   /* ms */

static struct hot_t {
    apr_time_t   until;
    int          nkeep;
    apr_uint64_t keep[KEEP_MAX];
} *hot;

static void log_release(server_rec *s, const char *addr, int n,
                        const char *uids)
{
    if (n > 0) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, "MEMSESS0053: "
                     "released %d sockets of processes on this machine "
                     "(uid %s) to memcached server %s, which is out",
                     n, uids, addr);
    }
    else if (n < 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, errno, s, "MEMSESS0058: "
                     "the release helper cannot ask the kernel for the "
                     "sockets to %s", addr);
    }
}

/* While a slot is hot: waits HOT_POLL for a request; on none, releases
 * the hot slots again.  Returns 1 when it did that (0: read a request). */
static int hot_poll(memsess_runtime_t *rt, const target_t *targets,
                    int nslots, int fd, server_rec *s)
{
    struct pollfd pfd = { fd, POLLIN, 0 };
    apr_time_t now = apr_time_now();
    int i, n, any = 0;

    for (i = 0; i < nslots; i++) {
        any |= hot[i].until > now;
    }
    if (!any || poll(&pfd, 1, HOT_POLL) != 0) {
        return 0;
    }
    for (i = 0; i < nslots; i++) {
        memsess_slot_t copy;
        char uids[128];

        if (hot[i].until <= now) {
            continue;
        }
        if (memsess_table_read_slot(rt->table, i, &copy) != APR_SUCCESS
            || !releasable(&copy)) {
            hot[i].until = 0;
            continue;
        }
        n = release(&targets[i], hot[i].keep, hot[i].nkeep, uids,
                    sizeof(uids));
        log_release(s, APR_ARRAY_IDX(rt->targets, i, memsess_server_t *)->addr,
                    n, uids);
        if (n <= 0) {
            hot[i].until = 0;   /* nothing more: the checker's rounds go on */
        }
    }
    return 1;
}

static void helper_main(memsess_runtime_t *rt, server_rec *s, int fd)
{
    int nslots = rt->targets->nelts, i, errfd = -1;
    apr_file_t *errlog = s->error_log;
    target_t *targets;
    apr_pool_t *p;
    const char *why;
    int on = 1;
    pid_t parent = getppid();

    apr_pool_create(&p, NULL);
    if (errlog) {
        apr_os_file_get(&errfd, errlog);
    }
    close_others(fd, errfd);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
    signal(SIGWINCH, SIG_IGN);
    targets = apr_pcalloc(p, nslots * sizeof(*targets));
    hot = apr_pcalloc(p, nslots * sizeof(*hot));
    for (i = 0; i < nslots; i++) {
        resolve(p, APR_ARRAY_IDX(rt->targets, i, memsess_server_t *),
                &targets[i]);
    }
    if ((why = drop_privileges()) != NULL) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, errno, s, "MEMSESS0055: the "
                     "release helper stops: %s", why);
        _exit(3);   /* not restarted: see memsess_rh_maintenance */
    }
    /* gone with the parent (cleared by the change of user: set now) */
    prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
    if (getppid() != parent) {
        _exit(0);
    }
    setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on));
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, "MEMSESS0056: the release "
                 "helper (pid %" APR_PID_T_FMT ") runs as uid %u with "
                 "CAP_NET_ADMIN alone", getpid(), (unsigned)getuid());
    for (;;) {
        char buf[512], cbuf[CMSG_SPACE(sizeof(struct ucred))], uids[128];
        struct iovec iov = { buf, sizeof(buf) - 1 };
        struct msghdr mh;
        struct cmsghdr *cm;
        struct ucred cred = { 0, 0, 0 };
        apr_uint64_t keep[KEEP_MAX];
        apr_uint32_t owner;
        apr_time_t heartbeat;
        memsess_slot_t copy;
        int nkeep = KEEP_MAX, slot, n;
        ssize_t got;

        if (hot_poll(rt, targets, nslots, fd, s)) {
            continue;   /* the time went to the slots still hot */
        }
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = cbuf;
        mh.msg_controllen = sizeof(cbuf);
        if ((got = recvmsg(fd, &mh, 0)) < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level == SOL_SOCKET
                && cm->cmsg_type == SCM_CREDENTIALS) {
                memcpy(&cred, CMSG_DATA(cm), sizeof(cred));
            }
        }
        memsess_table_owner(rt->table, &owner, &heartbeat);
        slot = memsess_rh_parse(buf, (apr_size_t)got, nslots, keep, &nkeep);
        if (slot < 0 || !cred.pid || (apr_uint32_t)cred.pid != owner) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "MEMSESS0057: the "
                         "release helper refused a request of pid %d (%s)",
                         (int)cred.pid, slot < 0 ? "not a release of a "
                         "server of the pools" : "not the checker");
            continue;
        }
        if (memsess_table_read_slot(rt->table, slot, &copy) != APR_SUCCESS
            || !releasable(&copy)) {
            continue;   /* back meanwhile: its sockets are good again */
        }
        n = release(&targets[slot], keep, nkeep, uids, sizeof(uids));
        if (n > 0 && hot[slot].until <= apr_time_now()) {
            hot[slot].until = apr_time_now() + HOT_TIME;
        }
        hot[slot].nkeep = nkeep;
        memcpy(hot[slot].keep, keep, nkeep * sizeof(*keep));
        log_release(s, APR_ARRAY_IDX(rt->targets, slot,
                                     memsess_server_t *)->addr, n, uids);
    }
    _exit(0);
}

static apr_status_t helper_spawn(void)
{
    apr_status_t rv = apr_proc_fork(&helper.proc, helper.pool);

    if (rv == APR_INCHILD) {
        close(helper.fd[0]);
        helper_main(helper.rt, helper.s, helper.fd[1]);
        _exit(0);
    }
    if (rv != APR_INPARENT) {
        return rv;
    }
    helper.running = 1;
    return APR_SUCCESS;
}

static void maintenance(int reason, void *data, apr_wait_t status)
{
    (void)data;
    switch (reason) {
    case APR_OC_REASON_DEATH:
    case APR_OC_REASON_LOST:
        helper.running = 0;
        apr_proc_other_child_unregister(&helper);
        if (reason == APR_OC_REASON_DEATH && WIFEXITED(status)
            && WEXITSTATUS(status) == 3) {
            return;   /* it could not drop its privileges: logged */
        }
        if (++helper.restarts <= 100 && helper_spawn() == APR_SUCCESS) {
            apr_proc_other_child_register(&helper.proc, maintenance, &helper,
                                          NULL, helper.pool);
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, helper.s, "MEMSESS0059: "
                         "the release helper died: restarted");
        }
        break;
    case APR_OC_REASON_RESTART:
    case APR_OC_REASON_UNREGISTER:
        break;
    }
}

static apr_status_t helper_stop(void *data)
{
    (void)data;
    /* its other-child record went with the pool (APR's own cleanup, run
     * before this one): unregistering again would crash */
    if (helper.running) {
        kill(helper.proc.pid, SIGTERM);
        waitpid(helper.proc.pid, NULL, 0);
        helper.running = 0;
    }
    if (helper.fd[1] >= 0) {
        close(helper.fd[1]);
    }
    if (helper.fd[0] >= 0) {
        close(helper.fd[0]);
    }
    helper.fd[0] = helper.fd[1] = -1;
    return APR_SUCCESS;
}

void memsess_rh_post_config(apr_pool_t *pconf, server_rec *s,
                            memsess_runtime_t *rt)
{
    struct __user_cap_header_struct head = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];

    helper.fd[0] = helper.fd[1] = -1;
    helper.running = 0;
    helper.restarts = 0;
    if (!rt->g.release_helper) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, "MEMSESS0060: no release "
                     "helper (MemsessReleaseHelper Off): every child releases "
                     "its own sockets only");
        return;
    }
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capget, &head, data) != 0
        || !(data[0].effective & (1u << CAP_NET_ADMIN))
        || !(data[0].effective & (1u << CAP_SETUID))) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, "MEMSESS0054: no release "
                     "helper: Apache was not started as root (it needs "
                     "CAP_NET_ADMIN): every child releases its own sockets "
                     "only, a php-fpm worker's are not released");
        return;
    }
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, helper.fd) != 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, errno, s, "MEMSESS0061: no "
                     "release helper: cannot make its socket");
        return;
    }
    helper.rt = rt;
    helper.s = s;
    helper.pool = pconf;
    /* the checker's end never blocks a probe round */
    fcntl(helper.fd[0], F_SETFL, fcntl(helper.fd[0], F_GETFL) | O_NONBLOCK);
    apr_pool_cleanup_register(pconf, NULL, helper_stop, apr_pool_cleanup_null);
    if (helper_spawn() != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "MEMSESS0062: no "
                     "release helper: cannot fork it");
        return;
    }
    apr_proc_other_child_register(&helper.proc, maintenance, &helper, NULL,
                                  pconf);
}

/* The inodes of this process's connections to the server (probes, the
 * watch, syncs: the checker names them, they are left alone), every one
 * of its connections marked with MEMSESS_PROBE_PRIORITY on the way. */
static int own_probes(const target_t *t, apr_uint64_t *keep, int max)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    if (!d) {
        return 0;
    }
    while ((e = readdir(d)) && n < max) {
        int fd = atoi(e->d_name), v = 0;
        socklen_t vlen = sizeof(v);
        struct sockaddr_storage sa;
        socklen_t salen = sizeof(sa);
        memsess_peer_t peer;
        struct stat st;

        if (e->d_name[0] < '0' || e->d_name[0] > '9'
            || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)
            || getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, &vlen) != 0
            || v != MEMSESS_PROBE_KEEPIDLE) {
            continue;
        }
        /* a mark the kernel shows the helper (libmemcached sets none) */
        v = MEMSESS_PROBE_PRIORITY;
        setsockopt(fd, SOL_SOCKET, SO_PRIORITY, &v, sizeof(v));
        if (getpeername(fd, (struct sockaddr *)&sa, &salen) != 0
            || !memsess_peer_from_sockaddr(&peer, &sa, salen)
            || memsess_peer_find(&peer, t->peers, t->npeers) < 0) {
            continue;
        }
        keep[n++] = (apr_uint64_t)st.st_ino;
    }
    closedir(d);
    return n;
}

void memsess_rh_ask(memsess_runtime_t *rt, int slot)
{
    static target_t *targets;
    static apr_pool_t *p;
    apr_uint64_t keep[KEEP_MAX];
    char msg[400];
    int n, k;
    apr_size_t len;

    if (helper.fd[0] < 0 || slot < 0 || slot >= rt->targets->nelts) {
        return;
    }
    if (!targets) {
        apr_pool_create(&p, NULL);
        targets = apr_pcalloc(p, rt->targets->nelts * sizeof(*targets));
        for (k = 0; k < rt->targets->nelts; k++) {
            resolve(p, APR_ARRAY_IDX(rt->targets, k, memsess_server_t *),
                    &targets[k]);
        }
    }
    n = own_probes(&targets[slot], keep, KEEP_MAX);
    len = (apr_size_t)apr_snprintf(msg, sizeof(msg), "release %d%s", slot,
                                   n ? " keep" : "");
    for (k = 0; k < n; k++) {
        len += apr_snprintf(msg + len, sizeof(msg) - len, " %" APR_UINT64_T_FMT,
                            keep[k]);
    }
    /* non-blocking: a helper that is behind loses a request, not a round */
    (void)send(helper.fd[0], msg, len, MSG_DONTWAIT);
}

void memsess_rh_round(memsess_runtime_t *rt, apr_time_t now)
{
    int i, n = rt->targets->nelts;

    if (helper.fd[0] < 0) {
        return;
    }
    if (!out_since) {
        out_since = calloc((size_t)n, sizeof(*out_since));
        if (!out_since) {
            return;
        }
    }
    for (i = 0; i < n; i++) {
        memsess_slot_t copy;

        if (memsess_table_read_slot(rt->table, i, &copy) != APR_SUCCESS) {
            continue;
        }
        if (MEMSESS_SLOT_LIVE(&copy)) {
            out_since[i] = 0;
            continue;
        }
        if (!releasable(&copy)) {
            continue;
        }
        if (!out_since[i]) {
            out_since[i] = now;
        }
        /* requests of before reconnect: asked again for a while */
        if (now - out_since[i] < WINDOW) {
            memsess_rh_ask(rt, i);
        }
    }
}

#endif /* MEMSESS_NO_HTTPD */
