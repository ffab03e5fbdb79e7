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

/* memsess_listing.h: a memcached server's listing: metadump lines parsed (pure), a
 * whole listing read, what a listed key is (memsess_listing.c). */

#ifndef MEMSESS_LISTING_H
#define MEMSESS_LISTING_H

#include "memsess_common.h"

/* php-memcached's memcached.sess_prefix (its default, which nothing here
 * changes): libmemcached's namespace, not hashed (HASH_WITH_PREFIX_KEY
 * stays off).  Its lock of session <id> is the key "lock.<id>". */
#define MEMSESS_SESS_PREFIX "memc.sess.key."
#define MEMSESS_LOCK_PREFIX "lock."
#define MEMSESS_KEY_MAX     (250)   /* memcached's longest key */
/* One line of memcached's "lru_crawler metadump", parsed. */
typedef struct {
    char         key[MEMSESS_KEY_MAX + 1];  /* %-decoded, NUL-terminated */
    apr_size_t   keylen;
    apr_int64_t  exp;    /* unix seconds; -1 = never expires */
    apr_int64_t  la;     /* last access (writes, and reads now and then) */
    apr_uint64_t cas;    /* 0 when the line gives none */
} memsess_dump_item_t;

/* Parses one line (without its line end) from a metadump: returns 1 and
 * fills item, 0 for the closing "END", -1 for anything else (the caller
 * skips it).  Never reads beyond len. */
int memsess_dump_parse(const char *line, apr_size_t len,
                       memsess_dump_item_t *item);

typedef enum {
    MEMSESS_KEY_OTHER   = 0,   /* not a PHP session key */
    MEMSESS_KEY_SESSION = 1,
    MEMSESS_KEY_LOCK    = 2
} memsess_key_kind_e;

/* What a stored key is; *id gets what php-memcached hands libmemcached
 * (the key without the prefix: "<id>" or "lock.<id>"). */
memsess_key_kind_e memsess_key_kind(const char *key, apr_size_t len,
                                    const char **id, apr_size_t *idlen);

/* A whole listing of one server ("lru_crawler metadump all"), a line at
 * a time through memsess_dump_parse(): each item to each (which returns 0
 * to stop).  APR_SUCCESS once the listing came to its end; APR_ENOTIMPL
 * when the server refuses to list; else an error, in err. */
apr_status_t memsess_dump_list(apr_pool_t *p, const char *host,
                               apr_port_t port, apr_interval_time_t timeout,
                               volatile apr_uint32_t *stop,
                               int (*each)(void *baton,
                                           const memsess_dump_item_t *it),
                               void *baton, char *err, apr_size_t errlen);

/* Reading a listing a line at a time, for a reader of its own (the sync
 * engine's passes).  open connects to host:port (name: "host:port", for
 * messages) and asks for the listing; line gives the next line, without
 * its end: 1, or 0 at the end of the stream, -1 on an error (in err);
 * lines longer than 4 KB come back as "".  refused: whether a line that is
 * not a key is memcached refusing the listing: APR_SUCCESS when it is not
 * (a line skipped); else why, in err: a crawler at work elsewhere (BUSY)
 * is worth another try (APR_EGENERAL), a memcached that refuses the
 * command never lists (APR_ENOTIMPL).  A listing that begins "BUSY" is
 * tried again (100 ms later) at most MEMSESS_DUMP_BUSY_TRIES times. */
#define MEMSESS_DUMP_BUSY_TRIES (100)
typedef struct {
    apr_socket_t *sock;
    char         *buf;
    apr_size_t    start, end;
    int           skipping;   /* inside a line too long to be an item */
} memsess_dump_t;
apr_status_t memsess_dump_open(const char *host, apr_port_t port,
                               const char *name, apr_interval_time_t t,
                               apr_pool_t *p, memsess_dump_t *d, char *err,
                               apr_size_t errlen);
int memsess_dump_line(const char *name, memsess_dump_t *d, char **line,
                      apr_size_t *len, char *err, apr_size_t errlen);
apr_status_t memsess_dump_refused(const char *line, apr_size_t len,
                                  const char *name, char *err,
                                  apr_size_t errlen);

#endif /* MEMSESS_LISTING_H */
