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

/* memsess_peer.h: a socket's peer or a server's address, matched
 * (memsess_peer.c: pure). */

#ifndef MEMSESS_PEER_H
#define MEMSESS_PEER_H

#include "memsess_common.h"

/* A socket's peer or a server's address: IPv4 or IPv6, and a port. */
typedef struct {
    int            family;     /* AF_INET or AF_INET6; 0 = none */
    unsigned char  addr[16];   /* 4 bytes for AF_INET */
    apr_port_t     port;
    apr_uint32_t   scope;      /* IPv6 scope id, 0 = any */
} memsess_peer_t;

/* Fills peer from a struct sockaddr of salen bytes; returns 0 (and an
 * empty peer) unless it is IPv4 or IPv6.  An IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d) becomes the IPv4 one. */
int memsess_peer_from_sockaddr(memsess_peer_t *peer, const void *sa,
                               apr_size_t salen);
/* Same family, address and port (an IPv6 scope only when both give one). */
int memsess_peer_equal(const memsess_peer_t *a, const memsess_peer_t *b);
/* The index of the first of n peers in set equal to peer, or -1. */
int memsess_peer_find(const memsess_peer_t *peer, const memsess_peer_t *set,
                      int n);

/* One line of /proc/net/tcp or tcp6: the remote address, the state (2:
 * SYN_SENT) and the socket's inode.  Returns 1, or 0 for the header or a
 * line it cannot read.  A socket still connecting has no peer for
 * getpeername(): its destination is read there. */
int memsess_proc_tcp_line(const char *line, apr_size_t len,
                          memsess_peer_t *remote, int *state,
                          apr_uint64_t *inode);

#endif /* MEMSESS_PEER_H */
