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

/* memsess_flight.h: requests in flight: which began before a flip
 * (memsess_flight.c: any memory block). */

#ifndef MEMSESS_FLIGHT_H
#define MEMSESS_FLIGHT_H

#include "memsess_common.h"

/* Which requests read the lists before a flip: one entry per Apache
 * worker with the flip epoch its request began in, in a shared segment
 * that outlives gracefuls.  Works on any memory block. */

apr_size_t memsess_flight_size(int nworkers);
memsess_flight_t *memsess_flight_init(void *base, apr_size_t size,
                                      int nworkers);
/* A segment of this version, or NULL. */
memsess_flight_t *memsess_flight_attach(void *base, apr_size_t size);
int memsess_flight_nworkers(const memsess_flight_t *f);
/* A request begins on worker i, before it reads the table: what to give
 * back to memsess_flight_leave() as it ends (0: not counted). */
apr_uint64_t memsess_flight_enter(memsess_flight_t *f, int i,
                                  apr_uint32_t pid);
void memsess_flight_leave(memsess_flight_t *f, int i, apr_uint64_t value);
/* The session the request of worker i (value: what memsess_flight_enter()
 * gave) names in its Cookie, kept in its entry while it runs. */
void memsess_flight_session(memsess_flight_t *f, int i, apr_uint64_t value,
                            const char *id, apr_size_t len);
/* The requests that began before epoch and still run, with the session
 * each names: each(baton, id, len, worker, value) for every one; how many.
 * memsess_flight_still() says whether that request still runs. */
int memsess_flight_inflight(const memsess_flight_t *f, apr_uint64_t epoch,
                            void (*each)(void *baton, const char *id,
                                         apr_size_t len, int worker,
                                         apr_uint64_t value),
                            void *baton);
int memsess_flight_still(const memsess_flight_t *f, int i, apr_uint64_t value);
/* The sessions requests used, as they ended: the last MEMSESS_RECENT_MAX
 * ids, each with the time it was noted.  A sync brings over, before its
 * flip's gate opens, those noted since it began (a session born after its
 * last listing is in no list of it).  memsess_flight_recent() calls each
 * for every one noted at `since` or later; how many. */
#define MEMSESS_RECENT_MAX     (4096)
#define MEMSESS_SESSION_ID_MAX (128)   /* PHP's are 26-256 characters;
                                        * longer ones are not noted */
void memsess_flight_note(memsess_flight_t *f, const char *id,
                         apr_size_t len);
int memsess_flight_recent(const memsess_flight_t *f, apr_time_t since,
                          void (*each)(void *baton, const char *id,
                                       apr_size_t len),
                          void *baton);
/* The cookie of PHP's session id (session.name, its default). */
#define MEMSESS_SESSION_COOKIE "PHPSESSID"

/* A request that meets a flip's gate waits this long at most, looking
 * again every MEMSESS_GATE_POLL (memsess_inject.c). */
#define MEMSESS_GATE_MAX  apr_time_from_msec(400)
#define MEMSESS_GATE_POLL apr_time_from_msec(1)
/* After a flip was published: the epoch it opens. */
apr_uint64_t memsess_flight_flip(memsess_flight_t *f);
/* How many requests that began before that epoch still run; alive (may
 * be NULL) says whether a process still exists. */
int memsess_flight_before(const memsess_flight_t *f, apr_uint64_t epoch,
                          int (*alive)(apr_uint32_t pid));

#endif /* MEMSESS_FLIGHT_H */
