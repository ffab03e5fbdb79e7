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

/* memsess_persist.h: persistence, the pure part: base64, rows, what was
 * written (memsess_persist.c). */

#ifndef MEMSESS_PERSIST_H
#define MEMSESS_PERSIST_H

#include "memsess_common.h"

const char *memsess_persist_role_name(apr_uint32_t role);

#define MEMSESS_PERSIST_INTERVAL_DEFAULT apr_time_from_sec(10)
#define MEMSESS_PERSIST_RATE_DEFAULT     (5000)   /* sessions a second */
#define MEMSESS_PERSIST_RATE_MAX         (1000000)
/* The longest value stored: memcached's default item size. */
#define MEMSESS_PERSIST_VALUE_MAX        (1024 * 1024)

/* A value as stored: base64 (RFC 4648, padded).  The text length for len
 * bytes, without the NUL. */
apr_size_t memsess_b64_len(apr_size_t len);
/* Writes the text and its NUL into out (memsess_b64_len(len) + 1 bytes). */
void memsess_b64_encode(char *out, const unsigned char *in, apr_size_t len);
/* Decodes len characters of in into out (at most outsize bytes): 1 and
 * *outlen, or 0 for anything that is not padded base64 of at most
 * outsize bytes.  Never reads beyond len. */
int memsess_b64_decode(const char *in, apr_size_t len, unsigned char *out,
                       apr_size_t outsize, apr_size_t *outlen);

/* One stored session, read back from the database (untrusted): its
 * memcached key (a php-memcached session key: the namespace, prefix, and
 * an id), flags, expiry (unix seconds, 0 = never) and cas, each a
 * column's text. */
typedef struct {
    const char   *key;
    apr_size_t    keylen;
    const char   *id;       /* in key, after the prefix */
    apr_size_t    idlen;
    apr_uint32_t  flags;
    apr_int64_t   exp;
    apr_uint64_t  cas;
} memsess_row_t;

/* NULL, or why the row is refused (no value of it in the text). */
const char *memsess_row_parse(const char *prefix, const char *key,
                              const char *flags, const char *exp,
                              const char *cas, memsess_row_t *row);

/* The expiry to restore a row with: exp when some of it is left (more than
 * a second), 0 when it never expires, -1 when it has expired. */
apr_int64_t memsess_persist_restore_exp(apr_int64_t exp, apr_int64_t now);

/* Whether a stored session is restored onto the returning server (pure):
 * where[0..n) are the servers the list about to be published places it
 * on (ids in any numbering), returning is that server's id and survivor
 * (indexed by id) says which servers kept their memory through this
 * outage and are live: a session one of them is placed on was not lost
 * with the others (it is there, or it was logged out there).  1 when the
 * returning server is one of its places and none of the others is a
 * survivor. */
int memsess_persist_restore_decide(const int *where, int n, int returning,
                                   const unsigned char *survivor);

/* The writer's lease, a row of the database (memsess_writers: pool,
 * holder, token, beat) that outlives memcached.  A grant is a token: each
 * take raises it, and every write of the holder is fenced by it (a
 * transaction that first renews "WHERE token = mine" and finds no row
 * rolls back).  Nothing rests on another instance's clock: a row is taken
 * over when its (token, beat) has not moved for ttl by the reader's own
 * clock. */
typedef struct {
    apr_int64_t token;          /* the grant held, 0: none */
    apr_int64_t seen_token;     /* another's row, as last read */
    apr_int64_t seen_beat;
    apr_time_t  seen_at;        /* when it last moved, by our clock (0:
                                   never read) */
} memsess_lease_t;

typedef enum {
    MEMSESS_LEASE_WAIT,         /* another holds it: stand by */
    MEMSESS_LEASE_CLAIM,        /* no row: insert ours (token 1) */
    MEMSESS_LEASE_RENEW,        /* ours: beat, fenced by our token */
    MEMSESS_LEASE_TAKE          /* lapsed, or a previous thread of ours:
                                   token + 1, fenced by what was read */
} memsess_lease_step_e;

/* What to do with the row read for instance me (found 0: there is none). */
memsess_lease_step_e memsess_lease_next(memsess_lease_t *l, int found,
                                        const char *holder, apr_int64_t token,
                                        apr_int64_t beat, const char *me,
                                        apr_time_t now, apr_time_t ttl);

/* Sessions written in one interval at rate a second (0: unbounded). */
apr_int64_t memsess_persist_budget(int rate, apr_interval_time_t interval);

/* What was written, by key: whether a session listed now must be written
 * again (its cas or expiry changed since it was), and which stored ones
 * were not listed in a round (logged out, expired).  Memory of its own
 * (malloc), freed by destroy. */
typedef struct memsess_track memsess_track_t;

memsess_track_t *memsess_track_create(void);
void memsess_track_destroy(memsess_track_t *t);
/* A new round of listings begins. */
void memsess_track_round(memsess_track_t *t);
/* A session listed at its authority (process: a fingerprint of that
 * memcached process): 1 when it must be written. */
int memsess_track_seen(memsess_track_t *t, const char *key, apr_size_t len,
                       apr_uint64_t cas, apr_int64_t exp,
                       apr_uint64_t process);
/* It is stored now with cas and exp (written, or read from the database
 * at start: process 0, unknown), its value's digest (memsess_persist_digest;
 * 0: unknown). */
void memsess_track_stored(memsess_track_t *t, const char *key,
                          apr_size_t len, apr_uint64_t cas, apr_int64_t exp,
                          apr_uint64_t process, apr_uint64_t digest);
/* Whether it is stored with this value (digest) and expiry already: a new
 * cas with nothing else new (a restore's add, a sync's copy) needs no
 * write, only memsess_track_stored with its cas. */
int memsess_track_unchanged(const memsess_track_t *t, const char *key,
                            apr_size_t len, apr_uint64_t digest,
                            apr_int64_t exp);
/* A stored value's digest: of its base64 text (NUL-terminated) and its
 * flags (never 0). */
apr_uint64_t memsess_persist_digest(const char *b64, apr_uint32_t flags);
/* Calls each for every stored session not listed this round, with the
 * process it was listed on; each returns 1 to forget it. */
void memsess_track_unseen(memsess_track_t *t,
                          int (*each)(void *baton, const char *key,
                                      apr_size_t len, apr_uint64_t process),
                          void *baton);
/* Forgets every session not stored (listed but left for the next round,
 * or never written) that was not listed this round. */
void memsess_track_prune(memsess_track_t *t);
/* Stored sessions. */
apr_size_t memsess_track_stored_count(const memsess_track_t *t);
/* Listed this round and not yet stored as listed. */
apr_size_t memsess_track_pending(const memsess_track_t *t);

#endif /* MEMSESS_PERSIST_H */
