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

/* memsess_listing.h: a memcached server's listing: metadump lines parsed
 * (pure), a whole listing read, what a listed key is (memsess_listing.c). */

#ifndef MEMSESS_LISTING_H
#define MEMSESS_LISTING_H

#include "memsess_common.h"

#define MEMSESS_LOCK_PREFIX "lock."
#define MEMSESS_KEY_MAX     (250)   /* memcached's longest key */
/* One line of memcached's "lru_crawler metadump", parsed. */
typedef struct {
    char         key[MEMSESS_KEY_MAX + 1];  /* %-decoded, NUL-terminated */
    apr_size_t   keylen;
    apr_int64_t  exp;    /* unix seconds; -1 = never expires */
    apr_int64_t  la;     /* last access (writes, and reads now and then) */
    apr_uint64_t cas;    /* 0 when the line gives none */
    int          cls;    /* its slab class; 0 when the line gives none */
} memsess_dump_item_t;

/* Lines cut from what a memcached connection or a listing's file gave
 * (buf of size bytes, [start, end) read and not yet cut); a line longer
 * than max is dropped to its end. */
typedef struct {
    char       *buf;
    apr_size_t  size, start, end, max;
    int         skipping;   /* inside a line too long to look at */
} memsess_lines_t;

/* The next whole line, without its end: 1, *line and *len; else 0, and
 * the next bytes go to *room (at most *roomlen of them), lb->end moved
 * past what was read there.  A line too long comes back as "". */
int memsess_lines_next(memsess_lines_t *lb, char **line, apr_size_t *len,
                       char **room, apr_size_t *roomlen);

/* memcached's slab classes are numbered 1 to this, less one */
#define MEMSESS_DUMP_CLASSES (64)

/* Parses one line (without its line end) from a metadump: returns 1 and
 * fills item, 0 for the closing "END", -1 for anything else (the caller
 * skips it).  Never reads beyond len. */
int memsess_dump_parse(const char *line, apr_size_t len,
                       memsess_dump_item_t *item);
/* A key as memcached's own lines write it (metadump, its log:
 * %-encoded, uriencode) into it->key: 1, or 0 when it cannot be a key (1
 * to 250 bytes of anything but space and control characters). */
int memsess_dump_key(const char *s, apr_size_t len, memsess_dump_item_t *it);
/* A decimal integer in memcached's lines, optionally negative, of at most
 * 18 digits (no overflow): 1 and *out, else 0. */
int memsess_dump_int(const char *s, apr_size_t len, apr_int64_t *out);

typedef enum {
    MEMSESS_KEY_OTHER   = 0,   /* not a PHP session key */
    MEMSESS_KEY_SESSION = 1,
    MEMSESS_KEY_LOCK    = 2
} memsess_key_kind_e;

/* What a stored key is under namespace prefix (NULL: php-memcached's
 * default); *id gets what php-memcached hands libmemcached (the key
 * without the prefix: "<id>" or "lock.<id>").  Only a session id as PHP
 * makes them ([A-Za-z0-9,-]) counts: a key of a longer namespace that
 * begins with this one ("<prefix>eu.<id>") is another site's. */
memsess_key_kind_e memsess_key_kind(const char *prefix, const char *key,
                                    apr_size_t len, const char **id,
                                    apr_size_t *idlen);
/* NULL when ns can be a namespace: 1 to MEMSESS_NAMESPACE_MAX of A-Z a-z
 * 0-9 . _ : / - (php-fpm reads it in an INI line unquoted); else why not.
 * chosen (MemsessNamespace, not php.ini's): it also ends with one of
 * . _ : / and not with "lock.", so that no key of a namespace that begins
 * with it (a neighbour's "shop/eu/<id>" beside "shop/") reads as one of
 * its sessions or locks. */
const char *memsess_namespace_invalid(const char *ns, int chosen);

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

/* The same for a reader of its own (the sync engine's passes): name is
 * "host:port", for messages; each item goes to item, which returns
 * APR_SUCCESS to go on, or an error (its own in err) that ends the
 * listing with it.  stop, when set, ends it (APR_EINTR, "stopped"). */
apr_status_t memsess_dump_each(apr_pool_t *p, const char *host,
                               apr_port_t port, const char *name,
                               apr_interval_time_t timeout,
                               volatile apr_uint32_t *stop,
                               apr_status_t (*item)(void *baton,
                                                    const memsess_dump_item_t
                                                    *it, char *err,
                                                    apr_size_t errlen),
                               void *baton, char *err, apr_size_t errlen);

/* The same, of the slab classes listed in classes only ("3,5,12";
 * NULL: all of them). */
apr_status_t memsess_dump_classes(apr_pool_t *p, const char *host,
                                  apr_port_t port, const char *name,
                                  const char *classes,
                                  apr_interval_time_t timeout,
                                  volatile apr_uint32_t *stop,
                                  apr_status_t (*item)(void *baton,
                                                       const
                                                       memsess_dump_item_t
                                                       *it, char *err,
                                                       apr_size_t errlen),
                                  void *baton, char *err, apr_size_t errlen);

#endif /* MEMSESS_LISTING_H */
