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

/* Matching addresses (pure): a socket's peer, a server's address, a line
 * of /proc/net/tcp.  The release (memsess_release.c) and the release helper
 * (memsess_release_helper.c) both match sockets with these; unit-tested. */

#include <stddef.h>
#include <string.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "memsess_peer.h"


int memsess_peer_from_sockaddr(memsess_peer_t *peer, const void *sa,
                               apr_size_t salen)
{
    static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0,
                                                0, 0, 0xff, 0xff };
    sa_family_t family;

    memset(peer, 0, sizeof(*peer));
    if (!sa || salen < sizeof(sa_family_t)) {
        return 0;
    }
    memcpy(&family, (const char *)sa + offsetof(struct sockaddr, sa_family),
           sizeof(family));
    if (family == AF_INET && salen >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in in;

        memcpy(&in, sa, sizeof(in));
        peer->family = AF_INET;
        memcpy(peer->addr, &in.sin_addr, 4);
        peer->port = ntohs(in.sin_port);
        return 1;
    }
    if (family == AF_INET6 && salen >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 in6;

        memcpy(&in6, sa, sizeof(in6));
        peer->port = ntohs(in6.sin6_port);
        if (!memcmp(in6.sin6_addr.s6_addr, v4mapped, sizeof(v4mapped))) {
            /* ::ffff:a.b.c.d is a.b.c.d, reached from a dual-stack socket */
            peer->family = AF_INET;
            memcpy(peer->addr, in6.sin6_addr.s6_addr + 12, 4);
            return 1;
        }
        peer->family = AF_INET6;
        memcpy(peer->addr, in6.sin6_addr.s6_addr, 16);
        peer->scope = in6.sin6_scope_id;
        return 1;
    }
    return 0;
}

int memsess_peer_equal(const memsess_peer_t *a, const memsess_peer_t *b)
{
    return a->family == b->family && a->port == b->port
           && !memcmp(a->addr, b->addr, a->family == AF_INET ? 4 : 16)
           /* fe80::1%eth0 and fe80::1%eth1 are two hosts */
           && (a->family == AF_INET || !a->scope || !b->scope
               || a->scope == b->scope);
}

int memsess_peer_find(const memsess_peer_t *peer, const memsess_peer_t *set,
                      int n)
{
    int i;

    if (peer->family != AF_INET && peer->family != AF_INET6) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (memsess_peer_equal(peer, &set[i])) {
            return i;
        }
    }
    return -1;
}

/* Hex digits at p (at most max), as a number; the position after them. */
static const char *hexnum(const char *p, const char *end, int max,
                          apr_uint64_t *out, int *ndigits)
{
    apr_uint64_t n = 0;
    int k = 0;

    while (p < end && k < max) {
        char c = *p;
        int d = c >= '0' && c <= '9' ? c - '0'
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;

        if (d < 0) {
            break;
        }
        n = (n << 4) | (apr_uint64_t)d;
        p++;
        k++;
    }
    *out = n;
    *ndigits = k;
    return p;
}

static const char *skip_spaces(const char *p, const char *end)
{
    while (p < end && *p == ' ') {
        p++;
    }
    return p;
}

static const char *skip_field(const char *p, const char *end)
{
    p = skip_spaces(p, end);
    while (p < end && *p != ' ' && *p != '\n') {
        p++;
    }
    return p;
}

int memsess_proc_tcp_line(const char *line, apr_size_t len,
                          memsess_peer_t *remote, int *state,
                          apr_uint64_t *inode)
{
    const char *p = line, *end = line + len;
    apr_uint64_t v;
    int nd, k, words;

    memset(remote, 0, sizeof(*remote));
    /* "sl:" */
    p = hexnum(skip_spaces(p, end), end, 16, &v, &nd);
    if (!nd || p == end || *p != ':') {
        return 0;
    }
    p = skip_field(p + 1, end);                   /* local address */
    p = skip_spaces(p, end);                      /* remote address */
    {
        const char *a = p;

        while (p < end && *p != ':') {
            p++;
        }
        words = (int)(p - a) / 8;
        if (p == end || (p - a != 8 && p - a != 32)) {
            return 0;
        }
        for (k = 0; k < words; k++) {
            apr_uint32_t w;

            hexnum(a + 8 * k, p, 8, &v, &nd);
            if (nd != 8) {
                return 0;
            }
            /* the kernel prints each 32-bit word of the address as it
             * lies in memory, read as a number of this host */
            w = (apr_uint32_t)v;
            memcpy(remote->addr + 4 * k, &w, 4);
        }
    }
    p = hexnum(p + 1, end, 4, &v, &nd);
    if (nd != 4) {
        return 0;
    }
    remote->port = (apr_port_t)v;
    remote->family = words == 1 ? AF_INET : AF_INET6;
    p = hexnum(skip_spaces(p, end), end, 2, &v, &nd);  /* st */
    if (nd != 2) {
        return 0;
    }
    *state = (int)v;
    for (k = 0; k < 5; k++) {   /* tx:rx tr:when retrnsmt uid timeout */
        p = skip_field(p, end);
    }
    p = skip_spaces(p, end);
    *inode = 0;
    for (nd = 0; p < end && *p >= '0' && *p <= '9' && nd < 20; p++, nd++) {
        *inode = *inode * 10 + (apr_uint64_t)(*p - '0');
    }
    if (!nd || (p < end && *p != ' ' && *p != '\n')) {
        return 0;
    }
    if (remote->family == AF_INET6) {
        static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0,
                                                    0, 0, 0xff, 0xff };

        if (!memcmp(remote->addr, v4mapped, sizeof(v4mapped))) {
            remote->family = AF_INET;
            memmove(remote->addr, remote->addr + 12, 4);
            memset(remote->addr + 4, 0, 12);
        }
    }
    return 1;
}
