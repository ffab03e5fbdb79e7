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

/*
 * Persistence, the pure part (APR only; memsess_persist_db.c does the
 * I/O): what changed since it was written (by cas and expiry), a stored
 * row's text read back (untrusted: another program may write the table),
 * the value's encoding, and which stored sessions a returning server gets
 * back.
 */

#include <stdlib.h>
#include <string.h>

#include "apr_hash.h"
#include "apr_strings.h"

#include "memsess_persist.h"
#include "memsess_listing.h"
#include "memsess_table.h"
#include "memsess_verdicts.h"

/* ------------------------------------------------------------------ */
/* The value: base64                                                   */

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

apr_size_t memsess_b64_len(apr_size_t len)
{
    return (len + 2) / 3 * 4;
}

void memsess_b64_encode(char *out, const unsigned char *in, apr_size_t len)
{
    apr_size_t i;

    for (i = 0; i + 2 < len; i += 3) {
        *out++ = b64[in[i] >> 2];
        *out++ = b64[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
        *out++ = b64[((in[i + 1] & 15) << 2) | (in[i + 2] >> 6)];
        *out++ = b64[in[i + 2] & 63];
    }
    if (i < len) {
        *out++ = b64[in[i] >> 2];
        if (i + 1 < len) {
            *out++ = b64[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
            *out++ = b64[(in[i + 1] & 15) << 2];
        }
        else {
            *out++ = b64[(in[i] & 3) << 4];
            *out++ = '=';
        }
        *out++ = '=';
    }
    *out = '\0';
}

static int b64_val(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

int memsess_b64_decode(const char *in, apr_size_t len, unsigned char *out,
                       apr_size_t outsize, apr_size_t *outlen)
{
    apr_size_t i, n = 0;

    if (len % 4) {
        return 0;
    }
    for (i = 0; i < len; i += 4) {
        int v[4], k, pad = 0;

        for (k = 0; k < 4; k++) {
            if (in[i + k] == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
            }
            else if (pad || (v[k] = b64_val(in[i + k])) < 0) {
                return 0;   /* a character after '=', or not base64 */
            }
        }
        if (n + 3 - pad > outsize) {
            return 0;
        }
        /* the bits padding leaves over must be zero (one text per value) */
        if ((pad == 1 && (v[2] & 3)) || (pad == 2 && (v[1] & 15))) {
            return 0;
        }
        out[n++] = (unsigned char)((v[0] << 2) | (v[1] >> 4));
        if (pad < 2) {
            out[n++] = (unsigned char)(((v[1] & 15) << 4) | (v[2] >> 2));
        }
        if (!pad) {
            out[n++] = (unsigned char)(((v[2] & 3) << 6) | v[3]);
        }
    }
    *outlen = n;
    return 1;
}

/* ------------------------------------------------------------------ */
/* A row read back                                                     */

/* Decimal digits only, at most 20, into *out (bounded by max). */
static int parse_u64(const char *s, apr_uint64_t max, apr_uint64_t *out)
{
    apr_uint64_t n = 0;
    int digits = 0;

    if (!s) {
        return 0;
    }
    for (; *s; s++, digits++) {
        if (*s < '0' || *s > '9' || digits >= 20) {
            return 0;
        }
        if (n > (max - (apr_uint64_t)(*s - '0')) / 10) {
            return 0;
        }
        n = n * 10 + (apr_uint64_t)(*s - '0');
    }
    if (!digits) {
        return 0;
    }
    *out = n;
    return 1;
}

const char *memsess_row_parse(const char *prefix, const char *key,
                              const char *flags, const char *exp,
                              const char *cas, memsess_row_t *row)
{
    apr_uint64_t n;
    apr_size_t i;

    memset(row, 0, sizeof(*row));
    if (!key || !*key) {
        return "no key";
    }
    row->keylen = strlen(key);
    if (row->keylen > MEMSESS_KEY_MAX) {
        return "a key longer than memcached's";
    }
    for (i = 0; i < row->keylen; i++) {
        if ((unsigned char)key[i] <= ' ' || (unsigned char)key[i] >= 127) {
            return "a key memcached would refuse";
        }
    }
    row->key = key;
    if (memsess_key_kind(prefix, key, row->keylen, &row->id, &row->idlen)
        != MEMSESS_KEY_SESSION || !row->idlen) {
        return "not a PHP session's key";
    }
    if (!parse_u64(flags, APR_UINT32_MAX, &n)) {
        return "bad flags";
    }
    row->flags = (apr_uint32_t)n;
    if (!parse_u64(exp, APR_INT64_MAX, &n)) {
        return "bad expiry";
    }
    row->exp = (apr_int64_t)n;
    if (!parse_u64(cas, APR_UINT64_MAX, &row->cas)) {
        return "bad cas";
    }
    return NULL;
}

apr_int64_t memsess_persist_restore_exp(apr_int64_t exp, apr_int64_t now)
{
    if (exp <= 0) {
        return 0;
    }
    return exp > now + 1 ? exp : -1;
}

int memsess_persist_restore_decide(const int *where, int n, int returning,
                                   const unsigned char *survivor)
{
    int k, placed = 0;

    for (k = 0; k < n; k++) {
        if (where[k] == returning) {
            placed = 1;
        }
        else if (where[k] >= 0 && survivor[where[k]]) {
            return 0;
        }
    }
    return placed;
}

memsess_lease_step_e memsess_lease_next(memsess_lease_t *l, int found,
                                        const char *holder, apr_int64_t token,
                                        apr_int64_t beat, const char *me,
                                        apr_time_t now, apr_time_t ttl)
{
    if (!found) {
        return MEMSESS_LEASE_CLAIM;
    }
    if (!strcmp(holder, me)) {
        /* ours: renewed under our grant, or a grant of a thread of ours
         * before this one (a restart) taken anew, fencing that one off */
        return l->token && l->token == token ? MEMSESS_LEASE_RENEW
                                             : MEMSESS_LEASE_TAKE;
    }
    l->token = 0;
    if (!l->seen_at || token != l->seen_token || beat != l->seen_beat) {
        l->seen_token = token;
        l->seen_beat = beat;
        l->seen_at = now;
        return MEMSESS_LEASE_WAIT;
    }
    return now - l->seen_at > ttl ? MEMSESS_LEASE_TAKE : MEMSESS_LEASE_WAIT;
}

apr_int64_t memsess_persist_budget(int rate, apr_interval_time_t interval)
{
    apr_int64_t b;

    if (rate <= 0) {
        return APR_INT64_MAX;
    }
    b = (apr_int64_t)rate * (apr_int64_t)(interval / 1000) / 1000;
    return b > 0 ? b : 1;
}

/* ------------------------------------------------------------------ */
/* What was written                                                    */

typedef struct {
    apr_uint64_t cas;        /* as stored (0: not stored) */
    apr_int64_t  exp;
    apr_uint64_t process;    /* of the authority it was listed on */
    apr_uint64_t digest;     /* of the value stored (0: unknown) */
    apr_uint32_t round;      /* last listed in */
    int          stored;
    int          dirty;      /* listed this round, not stored as listed */
    apr_size_t   len;
    char         key[1];
} track_entry_t;

struct memsess_track {
    apr_pool_t   *pool;      /* the hash's own (its nodes are reused) */
    apr_hash_t   *hash;
    apr_uint32_t  round;
    apr_size_t    stored;
    apr_size_t    pending;
};

memsess_track_t *memsess_track_create(void)
{
    memsess_track_t *t = calloc(1, sizeof(*t));

    if (!t) {
        return NULL;
    }
    if (apr_pool_create(&t->pool, NULL) != APR_SUCCESS) {
        free(t);
        return NULL;
    }
    t->hash = apr_hash_make(t->pool);
    return t;
}

void memsess_track_destroy(memsess_track_t *t)
{
    apr_hash_index_t *hi;

    if (!t) {
        return;
    }
    for (hi = apr_hash_first(NULL, t->hash); hi; hi = apr_hash_next(hi)) {
        free(apr_hash_this_val(hi));
    }
    apr_pool_destroy(t->pool);
    free(t);
}

void memsess_track_round(memsess_track_t *t)
{
    t->round++;
    t->pending = 0;
}

static track_entry_t *entry(memsess_track_t *t, const char *key,
                            apr_size_t len, int make)
{
    track_entry_t *e = apr_hash_get(t->hash, key, (apr_ssize_t)len);

    if (!e && make) {
        e = calloc(1, sizeof(*e) + len);
        if (!e) {
            return NULL;
        }
        memcpy(e->key, key, len);
        e->len = len;
        e->round = t->round - 1;
        apr_hash_set(t->hash, e->key, (apr_ssize_t)len, e);
    }
    return e;
}

int memsess_track_seen(memsess_track_t *t, const char *key, apr_size_t len,
                       apr_uint64_t cas, apr_int64_t exp,
                       apr_uint64_t process)
{
    track_entry_t *e = entry(t, key, len, 1);
    int changed;

    if (!e) {
        return 1;
    }
    changed = !e->stored || e->cas != cas || e->exp != exp;
    if (e->round != t->round) {
        e->round = t->round;
        e->dirty = changed;
        t->pending += changed;
    }
    e->process = process;
    return changed;
}

void memsess_track_stored(memsess_track_t *t, const char *key,
                          apr_size_t len, apr_uint64_t cas, apr_int64_t exp,
                          apr_uint64_t process, apr_uint64_t digest)
{
    track_entry_t *e = entry(t, key, len, 1);

    if (!e) {
        return;
    }
    if (!e->stored) {
        e->stored = 1;
        t->stored++;
    }
    if (e->dirty && e->round == t->round) {
        e->dirty = 0;
        t->pending--;
    }
    e->cas = cas;
    e->exp = exp;
    if (process) {
        e->process = process;
    }
    if (digest) {
        e->digest = digest;
    }
}

int memsess_track_unchanged(const memsess_track_t *t, const char *key,
                            apr_size_t len, apr_uint64_t digest,
                            apr_int64_t exp)
{
    const track_entry_t *e = apr_hash_get(t->hash, key, (apr_ssize_t)len);

    return e && e->stored && e->digest && e->digest == digest
           && e->exp == exp;
}

apr_uint64_t memsess_persist_digest(const char *b64, apr_uint32_t flags)
{
    apr_uint64_t h = memsess_fnv1a(b64);
    int k;

    for (k = 0; k < 4; k++) {
        h ^= (flags >> (8 * k)) & 0xff;
        h *= APR_UINT64_C(1099511628211);
    }
    return h ? h : 1;
}

static void forget(memsess_track_t *t, track_entry_t *e)
{
    if (e->stored) {
        t->stored--;
    }
    if (e->dirty && e->round == t->round) {
        t->pending--;
    }
    apr_hash_set(t->hash, e->key, (apr_ssize_t)e->len, NULL);
    free(e);
}

void memsess_track_unseen(memsess_track_t *t,
                          int (*each)(void *baton, const char *key,
                                      apr_size_t len, apr_uint64_t process),
                          void *baton)
{
    apr_hash_index_t *hi;

    /* removing the entry just returned is safe in an APR hash walk */
    for (hi = apr_hash_first(NULL, t->hash); hi; ) {
        track_entry_t *e = apr_hash_this_val(hi);

        hi = apr_hash_next(hi);
        if (e->stored && e->round != t->round
            && each(baton, e->key, e->len, e->process)) {
            forget(t, e);
        }
    }
}

void memsess_track_prune(memsess_track_t *t)
{
    apr_hash_index_t *hi;

    for (hi = apr_hash_first(NULL, t->hash); hi; ) {
        track_entry_t *e = apr_hash_this_val(hi);

        hi = apr_hash_next(hi);
        if (!e->stored && e->round != t->round) {
            forget(t, e);
        }
    }
}

apr_size_t memsess_track_stored_count(const memsess_track_t *t)
{
    return t->stored;
}

apr_size_t memsess_track_pending(const memsess_track_t *t)
{
    return t->pending;
}

const char *memsess_persist_role_name(apr_uint32_t role)
{
    switch (role) {
    case MEMSESS_PERSIST_ROLE_WRITER:  return "writer";
    case MEMSESS_PERSIST_ROLE_STANDBY: return "standby";
    case MEMSESS_PERSIST_ROLE_FAILING: return "failing";
    default:                           return "off";
    }
}
