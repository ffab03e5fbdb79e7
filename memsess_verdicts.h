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

/* memsess_verdicts.h: the verdict and member records instances share: key,
 * parse, merge, format (memsess_verdicts.c: pure). */

#ifndef MEMSESS_VERDICTS_H
#define MEMSESS_VERDICTS_H

#include "memsess_common.h"

#define MEMSESS_VERDICTS_VERSION   (1)
#define MEMSESS_VERDICTS_MAX       (128)   /* lines in one record: the
                                           * instances of a group */
#define MEMSESS_VERDICT_RECORD_MAX (32768) /* bytes of a record: a full one
                                           * of members needs under 26,000 */
#define MEMSESS_VERDICT_KEY_MAX    (250)   /* memcached's limit */
#define MEMSESS_GROUP_MAX          (64)    /* MemsessGroup, NUL included */
/* A line reported more than SKEW_MAX ahead of our clock, or expiring more
 * than that plus TTL_MAX ahead, or meant to hold longer than TTL_MAX, is
 * from the future (or forged): dropped. */
#define MEMSESS_VERDICT_SKEW_MAX   (30)
#define MEMSESS_VERDICT_TTL_MAX    (3600)

typedef struct {
    char         name[MEMSESS_INSTANCE_MAX];
    apr_int64_t  reported;   /* unix seconds: its last refresh */
    apr_int64_t  expires;    /* unix seconds: ignored after that */
    apr_uint64_t configured; /* members: fingerprint of its pools as
                              * configured (memsess_pools_fingerprint) */
    apr_uint64_t in_force;   /* members: ... as its requests get them */
    apr_uint64_t nonce;      /* members: its start's (0: none given) */
    apr_int64_t  wrote_ms;   /* members: its clock as it wrote this copy,
                              * unix ms (0: not given): its skew
                              * (memsess_clocks.c) */
    apr_int64_t  offset_ms;  /* members: its wall clock minus its
                              * monotonic clock as it wrote, ms (0: not
                              * given): a step of its clock, known to the
                              * others as it happens (memsess_clocks.c) */
} memsess_verdict_t;

/* A record of lines: verdicts ("memsess-verdicts 1", one per instance that
 * sees a server down) or members ("memsess-members 1", one per instance
 * of the group, with the fingerprints of its pools: pool changes are
 * rebalanced once every instance has the same). */
typedef struct {
    int               n;
    int               future;   /* lines dropped as from the future */
    int               members;  /* a members record */
    memsess_verdict_t v[MEMSESS_VERDICTS_MAX];
} memsess_verdicts_t;

/* Whether name is 1..maxlen-1 characters of [A-Za-z0-9._:[]-]: an
 * instance name (MemsessInstance) or, with MEMSESS_GROUP_MAX, a group. */
int memsess_instance_name_valid(const char *name, apr_size_t maxlen);

/* The key of server addr's record of a kind ("down": verdicts, "job": the
 * rejoin sync's job) in group: "memsess:v1:GROUP:KIND:ADDR", the address
 * hashed when the key would pass MEMSESS_VERDICT_KEY_MAX.  Returns its
 * length; size must be more than MEMSESS_VERDICT_KEY_MAX. */
apr_size_t memsess_record_key(char *buf, apr_size_t size, const char *group,
                              const char *kind, const char *addr);

/* FNV-1a, 64 bits, of a string; _more goes on from h (start with
 * MEMSESS_FNV1A_INIT): names records, groups and lists. */
#define MEMSESS_FNV1A_INIT APR_UINT64_C(14695981039346656037)
apr_uint64_t memsess_fnv1a(const char *s);
apr_uint64_t memsess_fnv1a_more(apr_uint64_t h, const char *s);

/* Parses a record read from memcached (len bytes, not NUL-terminated).
 * Lines that lapsed before now by more than any clock apart we allow for
 * (MEMSESS_VERDICT_SKEW_MAX) are left out, lines from the future too
 * (counted in out->future); whether the rest has lapsed is judged by our
 * own clock (memsess_lapse_note).  Returns NULL, or why the whole record is
 * refused (out->n is then 0). */
const char *memsess_verdicts_parse(const char *buf, apr_size_t len,
                                   apr_int64_t now, memsess_verdicts_t *out);

/* Puts self's line (reported now, expiring then) in when down, last, and
 * takes every line of that name out when not.  A full record makes room by
 * dropping the line that lapses first.  Returns whether the record changed
 * (always, when down). */
int memsess_verdicts_put(memsess_verdicts_t *vs, const char *self, int down,
                         apr_int64_t now, apr_int64_t expires);

/* Puts self's member line in (a members record): as put, with its two
 * fingerprints, the nonce of its start (a line of that name with another
 * nonce is a twin's, or of a start of ours before), its clock as it writes
 * and that clock's offset from its monotonic clock. */
void memsess_members_put(memsess_verdicts_t *vs, const char *self,
                         apr_int64_t now, apr_int64_t expires,
                         apr_uint64_t configured, apr_uint64_t in_force,
                         apr_uint64_t nonce, apr_int64_t wrote_ms,
                         apr_int64_t offset_ms);

/* The group instances join when no MemsessGroup is given: "h" and a hash
 * of the distinct names (mod_memsess.c: the pools' servers and the vhosts
 * that have one), whatever their order. */
const char *memsess_group_derive(apr_pool_t *p, const char *const *names,
                                 int n);

/* Writes the record, NUL-terminated, into buf; returns its length (size
 * when it did not fit: a full record needs MEMSESS_VERDICT_RECORD_MAX). */
apr_size_t memsess_verdicts_format(char *buf, apr_size_t size,
                                   const memsess_verdicts_t *vs);

/* Counts the lines of instances other than self (the caller has taken out
 * those that lapsed by its clock; those lapsed long ago by any are left
 * out here too), and appends their names to who (a NUL-terminated
 * ", "-separated list, each name once, names that do not fit left out).
 * Raises *newest (unless NULL) to the latest `reported` of those lines. */
int memsess_verdicts_others(const memsess_verdicts_t *vs, const char *self,
                            apr_int64_t now, char *who, apr_size_t whosize,
                            apr_int64_t *newest);

#endif /* MEMSESS_VERDICTS_H */
