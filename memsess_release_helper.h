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

/* memsess_release_helper.h: the release helper: its requests, sock_diag
 * (pure), and the process (httpd) (memsess_release_helper.c). */

#ifndef MEMSESS_RELEASE_HELPER_H
#define MEMSESS_RELEASE_HELPER_H

#include "memsess_common.h"
#include "memsess_peer.h"

/* A request to the release helper, "release <slot>[ keep <inode>...]"
 * (pure): the slot (below nslots), its keep list (at most *nkeep, set to
 * how many), or -1. */
int memsess_rh_parse(const char *msg, apr_size_t len, int nslots,
                     apr_uint64_t *keep, int *nkeep);
/* Asks the kernel (sock_diag) for the TCP sockets of family (AF_INET or
 * AF_INET6) in states (a mask of 1 << TCP_*) whose destination is exactly
 * peer, with the extensions ext (bits of INET_DIAG_*); each answer goes to
 * each until it returns 0.  Returns 0, or -1 (errno set).  (httpd builds
 * only; the release helper and every child's release use it.) */
struct nlmsghdr;
struct inet_diag_msg;
int memsess_diag_dump(int nl, const memsess_peer_t *peer, int family,
                      unsigned states, unsigned ext,
                      int (*each)(void *baton, const struct nlmsghdr *h,
                                  const struct inet_diag_msg *m),
                      void *baton);
/* The sock_diag filter for sockets whose destination is exactly peer
 * (address and port): its length in buf, or 0. */
apr_size_t memsess_rh_filter(const memsess_peer_t *peer, void *buf,
                             apr_size_t size);

/* The checker marks its probe sockets with this TCP_KEEPIDLE (seconds), so
 * that the release leaves them alone. */
#define MEMSESS_PROBE_KEEPIDLE (7213)
/* ... and, once the release helper's checker has seen them, with this
 * SO_PRIORITY (the pfifo_fast band of priority 0), which the kernel shows
 * the helper (memsess_release_helper.c). */
#define MEMSESS_PROBE_PRIORITY (4)
/* The rejoin sync (memsess_sync.c)                                   */

#ifndef MEMSESS_NO_HTTPD

/* memsess_release_helper.c: the parent forks the helper at post_config
 * (when it may: root, MemsessReleaseHelper On); the checker asks it at a
 * down verdict and each round while the server is out (6 s). */
void memsess_rh_post_config(apr_pool_t *pconf, server_rec *s,
                            memsess_runtime_t *rt);
void memsess_rh_ask(memsess_runtime_t *rt, int slot);
void memsess_rh_round(memsess_runtime_t *rt, apr_time_t now);

#endif /* MEMSESS_NO_HTTPD */

#endif /* MEMSESS_RELEASE_HELPER_H */
