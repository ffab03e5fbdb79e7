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

/* The verdict records Apache instances share through the pool's memcached
 * servers (memsess_exchange.c does the I/O).  Pure: no httpd, no network,
 * no allocation; what comes back from memcached is untrusted and bounded
 * here.
 *
 * Key, one per memcached server X and group (memsess_record_key, kind
 * "down"):
 *     memsess:v1:<group>:down:<X's address>
 * Value: a header line, then one line per instance that sees X down:
 *     memsess-verdicts 1\n
 *     <instance> <reported> <expires>\n
 * reported and expires are unix seconds.  An instance refreshes its line
 * every round while it sees X down and takes it out when it sees X up; a
 * line whose expires has passed is ignored and dropped at the next write,
 * so the verdict of an instance that died or was cut off lapses.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apr_strings.h"

#include "memsess_verdicts.h"

#define HEADER      "memsess-verdicts "
#define HEADER_LEN  (sizeof(HEADER) - 1)
#define MEMBERS     "memsess-members "
#define MEMBERS_LEN (sizeof(MEMBERS) - 1)
#define MAX_DIGITS  (15)   /* unix ms too */

/* Whether the len bytes at name are all characters of a name. */
static int name_chars(const char *name, apr_size_t len)
{
    apr_size_t n;

    for (n = 0; n < len; n++) {
        char c = name[n];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '.' || c == '-'
              || c == '_' || c == ':' || c == '[' || c == ']')) {
            return 0;
        }
    }
    return len > 0;
}

int memsess_instance_name_valid(const char *name, apr_size_t maxlen)
{
    apr_size_t len = name ? strnlen(name, maxlen) : 0;

    return len < maxlen && name_chars(name, len);
}

apr_uint64_t memsess_fnv1a_more(apr_uint64_t h, const char *s)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= APR_UINT64_C(1099511628211);
    }
    return h;
}

apr_uint64_t memsess_fnv1a(const char *s)
{
    return memsess_fnv1a_more(MEMSESS_FNV1A_INIT, s);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char *memsess_group_derive(apr_pool_t *p, const char *const *names,
                                 int n)
{
    const char **sorted = apr_pmemdup(p, names, (apr_size_t)(n > 0 ? n : 1)
                                                * sizeof(*names));
    apr_uint64_t h = MEMSESS_FNV1A_INIT;
    int i;

    qsort(sorted, (size_t)(n > 0 ? n : 0), sizeof(*sorted), by_name);
    for (i = 0; i < n; i++) {
        const char *c;

        if (i && !strcmp(sorted[i], sorted[i - 1])) {
            continue;
        }
        for (c = sorted[i]; ; c++) {   /* the NUL separates the names */
            h ^= (unsigned char)*c;
            h *= APR_UINT64_C(1099511628211);
            if (!*c) {
                break;
            }
        }
    }
    return apr_psprintf(p, "h%016" APR_UINT64_T_HEX_FMT, h);
}

apr_size_t memsess_record_key(char *buf, apr_size_t size, const char *group,
                              const char *kind, const char *addr)
{
    int len = snprintf(buf, size, "memsess:v%d:%s:%s:%s",
                       MEMSESS_VERDICTS_VERSION, group, kind, addr);

    if (len < 0 || (apr_size_t)len >= size
        || len > MEMSESS_VERDICT_KEY_MAX) {
        len = snprintf(buf, size, "memsess:v%d:%s:%s:#%016"
                       APR_UINT64_T_HEX_FMT, MEMSESS_VERDICTS_VERSION, group,
                       kind, memsess_fnv1a(addr));
    }
    return len < 0 ? 0 : (apr_size_t)len < size ? (apr_size_t)len : size;
}

/* Reads a decimal number of 1..MAX_DIGITS digits, without leading zeros
 * (as we write it); returns the position after it, or NULL. */
static const char *number(const char *p, const char *end, apr_int64_t *out)
{
    apr_int64_t n = 0;
    int digits = 0;

    if (end - p > 1 && p[0] == '0' && p[1] >= '0' && p[1] <= '9') {
        return NULL;
    }
    while (p < end && *p >= '0' && *p <= '9') {
        if (++digits > MAX_DIGITS) {
            return NULL;
        }
        n = n * 10 + (*p++ - '0');
    }
    if (!digits) {
        return NULL;
    }
    *out = n;
    return p;
}

/* Reads 16 lower-case hex digits; returns the position after them. */
static const char *hex64(const char *p, const char *end, apr_uint64_t *out)
{
    apr_uint64_t n = 0;
    int i;

    for (i = 0; i < 16; i++, p++) {
        int d = p < end && *p >= '0' && *p <= '9' ? *p - '0'
                : p < end && *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;

        if (d < 0) {
            return NULL;
        }
        n = (n << 4) | (apr_uint64_t)d;
    }
    *out = n;
    return p;
}

const char *memsess_verdicts_parse(const char *buf, apr_size_t len,
                                   apr_int64_t now, memsess_verdicts_t *out)
{
    const char *p = buf, *end = buf + len;
    apr_int64_t version;

    out->n = 0;
    out->future = 0;
    out->members = 0;
    if (len > MEMSESS_VERDICT_RECORD_MAX) {
        return "longer than a verdict record can be";
    }
    if (len >= MEMBERS_LEN && !memcmp(p, MEMBERS, MEMBERS_LEN)) {
        out->members = 1;
        p += MEMBERS_LEN;
    }
    else if (len < HEADER_LEN || memcmp(p, HEADER, HEADER_LEN)) {
        return "not a verdict record";
    }
    else {
        p += HEADER_LEN;
    }
    if (!(p = number(p, end, &version)) || p == end || *p != '\n') {
        return "not a verdict record";
    }
    if (version != MEMSESS_VERDICTS_VERSION) {
        return "a verdict record of another version";
    }
    p++;
    while (p < end) {
        const char *name = p;
        apr_size_t namelen;
        apr_int64_t reported, expires;
        apr_uint64_t configured = 0, in_force = 0, nonce = 0;
        apr_int64_t wrote_ms = 0, offset_ms = 0;
        memsess_verdict_t *v;

        while (p < end && *p != ' ' && *p != '\n') {
            p++;
        }
        namelen = (apr_size_t)(p - name);
        if (p == end || *p != ' ' || !namelen
            || namelen >= MEMSESS_INSTANCE_MAX) {
            out->n = 0;
            return "a line without an instance name";
        }
        if (!(p = number(p + 1, end, &reported)) || p == end || *p != ' '
            || !(p = number(p + 1, end, &expires)) || p == end
            || *p != (out->members ? ' ' : '\n')) {
            out->n = 0;
            return "a line without its two times";
        }
        if (out->members
            && (!(p = hex64(p + 1, end, &configured)) || p == end
                || *p != ' ' || !(p = hex64(p + 1, end, &in_force))
                || p == end || (*p != '\n' && *p != ' '))) {
            out->n = 0;
            return "a member line without its two lists";
        }
        /* its start's nonce: a line of an earlier version has none */
        if (out->members && *p == ' '
            && (!(p = hex64(p + 1, end, &nonce)) || p == end
                || (*p != '\n' && *p != ' '))) {
            out->n = 0;
            return "a member line with a bad nonce";
        }
        /* its clock as it wrote it, ms: none from an earlier version */
        if (out->members && *p == ' '
            && (!(p = number(p + 1, end, &wrote_ms)) || p == end
                || (*p != '\n' && *p != ' '))) {
            out->n = 0;
            return "a member line with a bad write time";
        }
        /* that clock's offset from its monotonic one: none from an
         * earlier version */
        if (out->members && *p == ' '
            && (!(p = number(p + 1, end, &offset_ms)) || p == end
                || *p != '\n')) {
            out->n = 0;
            return "a member line with a bad clock offset";
        }
        p++;
        if (out->n >= MEMSESS_VERDICTS_MAX) {
            out->n = 0;
            return "more lines than a verdict record holds";
        }
        if (!name_chars(name, namelen)) {
            out->n = 0;
            return "an instance name with characters no instance has";
        }
        if (expires < reported) {
            out->n = 0;
            return "a line that expires before it was written";
        }
        if (reported > now + MEMSESS_VERDICT_SKEW_MAX
            || expires > now + MEMSESS_VERDICT_SKEW_MAX
                         + MEMSESS_VERDICT_TTL_MAX
            || expires - reported > MEMSESS_VERDICT_TTL_MAX) {
            out->future++;   /* a clock far ahead, or a forgery: not used */
            continue;
        }
        if (expires < now - MEMSESS_VERDICT_SKEW_MAX) {
            continue;        /* lapsed long ago, whatever the clocks */
        }
        v = &out->v[out->n++];
        memcpy(v->name, name, namelen);
        v->name[namelen] = '\0';
        v->reported = reported;
        v->expires = expires;
        v->configured = configured;
        v->in_force = in_force;
        v->nonce = nonce;
        v->wrote_ms = wrote_ms;
        v->offset_ms = offset_ms;
    }
    return NULL;
}

int memsess_verdicts_put(memsess_verdicts_t *vs, const char *self, int down,
                         apr_int64_t now, apr_int64_t expires)
{
    int i, k, removed = 0, soonest;

    /* every line of ours out (a record may hold it twice: written by hand,
     * or by an instance that has our name), then one back in when down */
    for (i = k = 0; i < vs->n; i++) {
        if (strcmp(vs->v[i].name, self)) {
            if (k != i) {
                vs->v[k] = vs->v[i];
            }
            k++;
        }
    }
    removed = vs->n - k;
    vs->n = k;
    if (!down) {
        return removed > 0;
    }
    if (vs->n < MEMSESS_VERDICTS_MAX) {
        i = vs->n++;
    }
    else {
        /* full: the line that would lapse first makes room */
        for (soonest = 0, k = 1; k < vs->n; k++) {
            if (vs->v[k].expires < vs->v[soonest].expires) {
                soonest = k;
            }
        }
        i = soonest;
    }
    apr_cpystrn(vs->v[i].name, self, sizeof(vs->v[i].name));
    vs->v[i].reported = now;
    vs->v[i].expires = expires;
    vs->v[i].configured = vs->v[i].in_force = vs->v[i].nonce = 0;
    vs->v[i].wrote_ms = vs->v[i].offset_ms = 0;
    return 1;
}

void memsess_members_put(memsess_verdicts_t *vs, const char *self,
                         apr_int64_t now, apr_int64_t expires,
                         apr_uint64_t configured, apr_uint64_t in_force,
                         apr_uint64_t nonce, apr_int64_t wrote_ms,
                         apr_int64_t offset_ms)
{
    int i;

    vs->members = 1;
    memsess_verdicts_put(vs, self, 1, now, expires);
    for (i = 0; i < vs->n; i++) {
        if (!strcmp(vs->v[i].name, self)) {
            vs->v[i].configured = configured;
            vs->v[i].in_force = in_force;
            vs->v[i].nonce = nonce;
            vs->v[i].wrote_ms = wrote_ms;
            vs->v[i].offset_ms = offset_ms;
        }
    }
}

/* A member line's optional write time and clock offset: " <ms> <ms>",
 * " <ms>", or nothing. */
static const char *wrote_text(char *buf, apr_size_t size, apr_int64_t ms,
                              apr_int64_t offset_ms)
{
    if (ms <= 0) {
        return "";
    }
    if (offset_ms > 0) {
        snprintf(buf, size, " %" APR_INT64_T_FMT " %" APR_INT64_T_FMT, ms,
                 offset_ms);
    }
    else {
        snprintf(buf, size, " %" APR_INT64_T_FMT, ms);
    }
    return buf;
}

apr_size_t memsess_verdicts_format(char *buf, apr_size_t size,
                                   const memsess_verdicts_t *vs)
{
    char wrote[48];
    apr_size_t len;
    int i, n;

    if (!size) {
        return 0;
    }
    n = snprintf(buf, size, "%s%d\n", vs->members ? MEMBERS : HEADER,
                 MEMSESS_VERDICTS_VERSION);
    len = n > 0 ? (apr_size_t)n : 0;
    for (i = 0; i < vs->n && len < size; i++) {
        n = vs->members
            ? snprintf(buf + len, size - len, "%s %" APR_INT64_T_FMT " %"
                       APR_INT64_T_FMT " %016" APR_UINT64_T_HEX_FMT " %016"
                       APR_UINT64_T_HEX_FMT " %016" APR_UINT64_T_HEX_FMT
                       "%s\n", vs->v[i].name, vs->v[i].reported,
                       vs->v[i].expires, vs->v[i].configured,
                       vs->v[i].in_force, vs->v[i].nonce,
                       wrote_text(wrote, sizeof(wrote), vs->v[i].wrote_ms,
                                  vs->v[i].offset_ms))
            : snprintf(buf + len, size - len, "%s %" APR_INT64_T_FMT " %"
                       APR_INT64_T_FMT "\n", vs->v[i].name,
                       vs->v[i].reported, vs->v[i].expires);
        len += n > 0 ? (apr_size_t)n : 0;
    }
    return len < size ? len : size;
}

int memsess_verdicts_others(const memsess_verdicts_t *vs, const char *self,
                            apr_int64_t now, char *who, apr_size_t whosize,
                            apr_int64_t *newest)
{
    apr_size_t len = strlen(who);
    int i, n = 0;

    for (i = 0; i < vs->n; i++) {
        const char *name = vs->v[i].name;
        apr_size_t nl = strlen(name);
        const char *at;
        int listed = 0;

        if (!strcmp(name, self)
            || vs->v[i].expires < now - MEMSESS_VERDICT_SKEW_MAX) {
            continue;
        }
        n++;
        if (newest && vs->v[i].reported > *newest) {
            *newest = vs->v[i].reported;
        }
        /* listed already (from another server's copy of the record)? */
        for (at = who; (at = strstr(at, name)) != NULL; at += nl) {
            if ((at == who || at[-1] == ' ')
                && (at[nl] == ',' || at[nl] == '\0')) {
                listed = 1;
                break;
            }
        }
        if (listed || len + (len ? 2 : 0) + nl + 1 > whosize) {
            continue;   /* a name that does not fit is left out */
        }
        len += (apr_size_t)snprintf(who + len, whosize - len, "%s%s",
                                    len ? ", " : "", name);
    }
    return n;
}
