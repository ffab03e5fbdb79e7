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

/* memsess_feed.h: what a memcached server stored while a sync ran, from
 * the server's own log of its writes ("watch mutations"), so that the
 * sync's later passes look at those keys instead of listing the server
 * again (memsess_feed.c: APR only). */

#ifndef MEMSESS_FEED_H
#define MEMSESS_FEED_H

#include "memsess_common.h"
#include "memsess_listing.h"

typedef struct memsess_feed memsess_feed_t;

/* Starts watching host:port (name "host:port", for messages): from its
 * return on, every key the server stores and keep(baton, key, len) wants
 * is collected, at most cap of them between two takes.  keep runs on the
 * feed's own thread (one a feed, and two connections).  NULL, with why in
 * err, when the server holds fewer than min_items keys (listing it again
 * costs less), or has no such log (a memcached before 1.5, SASL: no text
 * protocol). */
memsess_feed_t *memsess_feed_open(apr_pool_t *p, const char *host,
                                  apr_port_t port, const char *name,
                                  apr_interval_time_t timeout,
                                  apr_size_t cap, apr_int64_t min_items,
                                  int (*keep)(void *baton, const char *key,
                                              apr_size_t len),
                                  void *baton, char *err, apr_size_t errlen);

/* Every key kept that the server stored before this call and since the
 * previous take (or the open), each once, in *keys (allocated in p).
 * Memcached delivers its log late and from one buffer per worker thread:
 * two marks written one after the other on one connection, both seen,
 * prove everything logged before the first has come.  APR_SUCCESS; else
 * (APR_EINCOMPLETE) the feed may have lost a key (over cap, memcached
 * dropped or skipped lines of its log, the stream ended, a mark did not
 * come back in time), err says which: the caller lists the server. */
apr_status_t memsess_feed_take(memsess_feed_t *f, apr_pool_t *p,
                               apr_array_header_t **keys, char *err,
                               apr_size_t errlen);

/* Looks keys up on the server (meta get, pipelined): each one found goes
 * to each as a listing would give it (its expiry and last access on our
 * clock, its cas).  APR_SUCCESS, each's error, or a read error in err. */
apr_status_t memsess_feed_items(memsess_feed_t *f,
                                const apr_array_header_t *keys,
                                apr_status_t (*each)(void *baton,
                                                     const memsess_dump_item_t
                                                     *it, char *err,
                                                     apr_size_t errlen),
                                void *baton, char *err, apr_size_t errlen);

/* Stops the watch: its thread ends, its connections close. */
void memsess_feed_close(memsess_feed_t *f);

/* One line of the watch stream (pure; no line end): 1 and the key in
 * it->key for a store that took, 0 for a line that says nothing of ours,
 * -1 when memcached says it skipped lines. */
int memsess_feed_parse(const char *line, apr_size_t len,
                       memsess_dump_item_t *it);

/* One answer to "mg <key> t c l k" (pure; no line end), read at `now`
 * (unix seconds, ours): 1 and it filled, 0 for "MN" (the batch's end),
 * -1 for anything else. */
int memsess_feed_meta(const char *line, apr_size_t len, apr_int64_t now,
                      memsess_dump_item_t *it);

#endif /* MEMSESS_FEED_H */
