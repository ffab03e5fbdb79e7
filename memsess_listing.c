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

/* A memcached server's listing: "lru_crawler metadump all" read a line at
 * a time (never the whole listing in memory), each line untrusted input
 * for memsess_dump_parse(); what a listed key is to PHP.  The sync engine
 * (memsess_sync.c) and the persistence's write-behind
 * (memsess_persist_db.c, through memsess_dump_list) read listings with
 * these.  APR only. */

#include <string.h>

#include "apr_strings.h"
#include "apr_lib.h"
#include "apr_network_io.h"
#include "apr_file_io.h"
#include "apr_time.h"

#include "memsess_listing.h"

#define DUMP_LINE_MAX     (4096)
#define DUMP_BUF     (65536)
#define BUSY_TRIES   (100)         /* "BUSY": another crawl is running */

/* ------------------------------------------------------------------ */
/* Metadump lines                                                     */

int memsess_dump_int(const char *s, apr_size_t len, apr_int64_t *out)
{
    apr_int64_t n = 0;
    apr_size_t i = 0;
    int neg = 0;

    if (len && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == len || len - i > 18) {
        return 0;
    }
    for (; i < len; i++) {
        if (!apr_isdigit(s[i])) {
            return 0;
        }
        n = n * 10 + (s[i] - '0');
    }
    *out = neg ? -n : n;
    return 1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = (char)apr_tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int memsess_dump_key(const char *s, apr_size_t len, memsess_dump_item_t *it)
{
    char key[MEMSESS_KEY_MAX + 1];   /* it->key untouched unless it reads */
    apr_size_t i, n = 0;

    for (i = 0; i < len; i++) {
        int c = (unsigned char)s[i];

        if (c == '%') {
            int hi, lo;

            if (i + 2 >= len) {
                return 0;
            }
            hi = hexval(s[i + 1]);
            lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0) {
                return 0;
            }
            c = hi * 16 + lo;
            i += 2;
        }
        if (c <= 0x20 || c == 0x7f || n >= MEMSESS_KEY_MAX) {
            return 0;
        }
        key[n++] = (char)c;
    }
    if (!n) {
        return 0;
    }
    memcpy(it->key, key, n);
    it->key[n] = '\0';
    it->keylen = n;
    return 1;
}

int memsess_dump_parse(const char *line, apr_size_t len,
                       memsess_dump_item_t *item)
{
    apr_size_t i = 0;
    int have_key = 0, have_exp = 0, have_la = 0;

    if (len == 3 && !memcmp(line, "END", 3)) {
        return 0;
    }
    memset(item, 0, sizeof(*item));
    while (i < len && line[i] == ' ') {
        i++;
    }
    while (i < len) {
        apr_size_t start = i, eq, end;

        while (i < len && line[i] != ' ') {
            i++;
        }
        end = i;
        while (i < len && line[i] == ' ') {
            i++;
        }
        for (eq = start; eq < end && line[eq] != '='; eq++) {
        }
        if (eq == end) {
            return -1;   /* every field is name=value */
        }
        if (eq - start == 3 && !memcmp(line + start, "key", 3)) {
            if (have_key
                || !memsess_dump_key(line + eq + 1, end - eq - 1, item)) {
                return -1;
            }
            have_key = 1;
        }
        else if (eq - start == 3 && !memcmp(line + start, "exp", 3)) {
            if (have_exp || !memsess_dump_int(line + eq + 1, end - eq - 1,
                                       &item->exp) || item->exp < -1) {
                return -1;
            }
            have_exp = 1;
        }
        else if (eq - start == 3 && !memcmp(line + start, "cas", 3)) {
            apr_int64_t cas;

            /* optional: 0 when absent or beyond 18 digits (unknown) */
            if (memsess_dump_int(line + eq + 1, end - eq - 1, &cas)
                && cas > 0) {
                item->cas = (apr_uint64_t)cas;
            }
        }
        else if (eq - start == 3 && !memcmp(line + start, "cls", 3)) {
            apr_int64_t cls;

            /* optional: 0 when absent or not a slab class */
            if (memsess_dump_int(line + eq + 1, end - eq - 1, &cls) && cls > 0
                && cls < MEMSESS_DUMP_CLASSES) {
                item->cls = (int)cls;
            }
        }
        else if (eq - start == 2 && !memcmp(line + start, "la", 2)) {
            if (have_la || !memsess_dump_int(line + eq + 1, end - eq - 1,
                                      &item->la) || item->la < 0) {
                return -1;
            }
            have_la = 1;
        }
        /* other fields (fetch, size, ...): not needed */
    }
    return have_key && have_exp && have_la ? 1 : -1;
}

/* Whether s[0 .. len) is a session id as PHP 8 makes and accepts them. */
static int session_id(const char *s, apr_size_t len)
{
    apr_size_t i;

    for (i = 0; i < len; i++) {
        if (!apr_isalnum(s[i]) && s[i] != ',' && s[i] != '-') {
            return 0;
        }
    }
    return len > 0;
}

memsess_key_kind_e memsess_key_kind(const char *prefix, const char *key,
                                    apr_size_t len, const char **id,
                                    apr_size_t *idlen)
{
    apr_size_t plen, llen = sizeof(MEMSESS_LOCK_PREFIX) - 1;

    if (!prefix) {
        prefix = MEMSESS_SESS_PREFIX;
    }
    plen = strlen(prefix);
    if (len <= plen || memcmp(key, prefix, plen)) {
        return MEMSESS_KEY_OTHER;
    }
    *id = key + plen;
    *idlen = len - plen;
    if (*idlen > llen && !memcmp(*id, MEMSESS_LOCK_PREFIX, llen)
        && session_id(*id + llen, *idlen - llen)) {
        return MEMSESS_KEY_LOCK;
    }
    return session_id(*id, *idlen) ? MEMSESS_KEY_SESSION : MEMSESS_KEY_OTHER;
}

const char *memsess_namespace_invalid(const char *ns, int chosen)
{
    apr_size_t i, len = strlen(ns), ll = sizeof(MEMSESS_LOCK_PREFIX) - 1;

    if (len < 1 || len > MEMSESS_NAMESPACE_MAX) {
        return "1 to 64 characters";
    }
    for (i = 0; i < len; i++) {
        if (!apr_isalnum(ns[i]) && !strchr("._:/-", ns[i])) {
            return "letters, digits and . _ : / - only";
        }
    }
    if (chosen && (!strchr("._:/", ns[len - 1])
                   || (len >= ll
                       && !memcmp(ns + len - ll, MEMSESS_LOCK_PREFIX, ll)))) {
        return "ending with . _ : or / and not with lock.";
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Listing a server: lru_crawler metadump, a line at a time            */

/* Whether a line that is not a key is memcached refusing the listing:
 * APR_SUCCESS when it is not (a line skipped); else why, in err: a
 * crawler at work elsewhere (BUSY) is worth another try (APR_EGENERAL), a
 * memcached that refuses the command never lists (APR_ENOTIMPL). */
static apr_status_t dump_refused(const char *line, apr_size_t len,
                                 const char *name, char *err,
                                 apr_size_t errlen)
{
    if (len < 5 || (memcmp(line, "ERROR", 5) && memcmp(line, "BUSY ", 5)
                    && memcmp(line, "CLIENT_", 7 <= len ? 7 : len))) {
        return APR_SUCCESS;
    }
    apr_snprintf(err, errlen, "%s cannot list its keys: %.*s", name,
                 (int)(len > 80 ? 80 : len), line);
    return memcmp(line, "BUSY ", 5) ? APR_ENOTIMPL : APR_EGENERAL;
}

/* A listing is read whole into a file of its own (unlinked: nothing is
 * left behind) before a line of it is looked at: while memcached's
 * crawler waits for a slow reader it holds a lock its worker threads need
 * (seen at 1.6.18: a worker blocked on a futex for 1.5 s, every client of
 * that thread with it, the checker's probes timing out), and the work done
 * for each key (reads, copies, on that server too) would hold the reader
 * up.  Memory stays one buffer whatever the key count; the file takes
 * about 100 bytes a key. */
typedef struct {
    apr_socket_t    *sock;
    apr_file_t      *file;
    char            *buf;     /* what the socket reads into */
    memsess_lines_t  lines;   /* what the file is read into */
} dump_t;

/* Whether the listing read so far (its last bytes in tail, n of them, the
 * stream's first line complete or not in first) is whole: memcached ends
 * it with END, or answers with one line that is not a key (BUSY, ERROR,
 * CLIENT_ERROR). */
static int dump_whole(const char *tail, apr_size_t n, const char *first,
                      apr_size_t nfirst, int first_done)
{
    if (first_done && (nfirst < 4 || memcmp(first, "key=", 4))) {
        return 1;   /* END alone, or a refusal: one line */
    }
    return n >= 6 && !memcmp(tail + n - 6, "\nEND\r\n", 6);
}

/* Reads the listing to its end into d->file, and rewinds it. */
static apr_status_t dump_spool(const char *name, apr_pool_t *p, dump_t *d,
                               char *err, apr_size_t errlen)
{
    const char *tmp;
    char *path, tail[6], first[4];
    apr_size_t ntail = 0, nfirst = 0;
    int first_done = 0;
    apr_off_t at = 0;
    apr_status_t rv;

    if ((rv = apr_temp_dir_get(&tmp, p)) != APR_SUCCESS
        || (rv = apr_file_mktemp(&d->file,
                                 path = apr_pstrcat(p, tmp, "/memsess-list-"
                                                    "XXXXXX", NULL),
                                 APR_FOPEN_CREATE | APR_FOPEN_READ
                                 | APR_FOPEN_WRITE | APR_FOPEN_EXCL
                                 | APR_FOPEN_BUFFERED, p)) != APR_SUCCESS) {
        char reason[120];

        apr_strerror(rv, reason, sizeof(reason));
        apr_snprintf(err, errlen, "cannot list the keys of %s: no file for "
                     "the listing (%s)", name, reason);
        d->file = NULL;
        return rv;
    }
    apr_file_remove(path, p);
    for (;;) {
        apr_size_t got = DUMP_BUF, k;

        rv = apr_socket_recv(d->sock, d->buf, &got);
        if (got && apr_file_write_full(d->file, d->buf, got, NULL)
                   != APR_SUCCESS) {
            apr_snprintf(err, errlen, "cannot list the keys of %s: the "
                         "listing's file cannot be written", name);
            return APR_EGENERAL;
        }
        for (k = 0; k < got; k++) {
            if (!first_done) {
                if (d->buf[k] == '\n') {
                    first_done = 1;
                }
                else if (nfirst < sizeof(first)) {
                    first[nfirst++] = d->buf[k];
                }
            }
        }
        /* the last six bytes read, across reads */
        if (got >= sizeof(tail)) {
            memcpy(tail, d->buf + got - sizeof(tail), sizeof(tail));
            ntail = sizeof(tail);
        }
        else if (got) {
            apr_size_t keep = ntail + got > sizeof(tail)
                              ? sizeof(tail) - got : ntail;

            memmove(tail, tail + ntail - keep, keep);
            memcpy(tail + keep, d->buf, got);
            ntail = keep + got;
        }
        if (dump_whole(tail, ntail, first, nfirst, first_done)) {
            return apr_file_seek(d->file, APR_SET, &at);
        }
        if (rv == APR_EOF || (rv == APR_SUCCESS && !got)) {
            apr_snprintf(err, errlen, "%s closed the listing before its "
                         "end", name);
            return APR_EGENERAL;
        }
        if (rv != APR_SUCCESS) {
            char reason[120];

            apr_strerror(rv, reason, sizeof(reason));
            apr_snprintf(err, errlen, "listing the keys of %s: %s",
                         name, reason);
            return rv;
        }
    }
}

/* Closes what dump_open opened. */
static void dump_close(dump_t *d)
{
    if (d->sock) {
        apr_socket_close(d->sock);
        d->sock = NULL;
    }
    if (d->file) {
        apr_file_close(d->file);
        d->file = NULL;
    }
}

/* Connects to host:port (name: "host:port", for messages) and asks for
 * the listing. */
static apr_status_t dump_open(const char *host, apr_port_t port,
                              const char *name, const char *classes,
                              apr_interval_time_t t, apr_pool_t *p,
                              dump_t *d, char *err, apr_size_t errlen)
{
    const char *cmd = apr_pstrcat(p, "lru_crawler metadump ",
                                  classes ? classes : "all", "\r\n", NULL);
    apr_sockaddr_t *sa;
    apr_size_t len = strlen(cmd);
    apr_status_t rv;
    char reason[120];

    memset(d, 0, sizeof(*d));
    d->buf = apr_palloc(p, DUMP_BUF);
    d->lines.buf = d->buf;   /* read from the file once it is whole */
    d->lines.size = DUMP_BUF;
    d->lines.max = DUMP_LINE_MAX;
    if (t < apr_time_from_sec(2)) {
        t = apr_time_from_sec(2);   /* the crawler may pause between items */
    }
    if ((rv = apr_sockaddr_info_get(&sa, host, APR_UNSPEC, port, 0,
                                    p)) == APR_SUCCESS
        && (rv = apr_socket_create(&d->sock, sa->family, SOCK_STREAM,
                                   APR_PROTO_TCP, p)) == APR_SUCCESS
        && (rv = apr_socket_timeout_set(d->sock, t)) == APR_SUCCESS
        && (rv = apr_socket_connect(d->sock, sa)) == APR_SUCCESS
        && (rv = apr_socket_send(d->sock, cmd, &len)) == APR_SUCCESS) {
        return dump_spool(name, p, d, err, errlen);
    }
    apr_strerror(rv, reason, sizeof(reason));
    apr_snprintf(err, errlen, "cannot list the keys of %s: %s", name,
                 reason);
    return rv;
}

int memsess_lines_next(memsess_lines_t *lb, char **line, apr_size_t *len,
                       char **room, apr_size_t *roomlen)
{
    char *nl = memchr(lb->buf + lb->start, '\n', lb->end - lb->start);

    if (nl) {
        char *l = lb->buf + lb->start;
        apr_size_t n = (apr_size_t)(nl - l);

        lb->start += n + 1;
        if (n && l[n - 1] == '\r') {
            n--;
        }
        if (lb->skipping) {
            lb->skipping = 0;
            n = 0;
        }
        *line = l;
        *len = n;
        return 1;
    }
    if (lb->end - lb->start >= lb->max) {
        lb->skipping = 1;      /* not a line to look at: dropped to its end */
        lb->start = lb->end = 0;
    }
    if (lb->start) {
        memmove(lb->buf, lb->buf + lb->start, lb->end - lb->start);
        lb->end -= lb->start;
        lb->start = 0;
    }
    *room = lb->buf + lb->end;
    *roomlen = lb->size - lb->end;
    return 0;
}

/* The next line, without its end: 1, or 0 at the end of the stream, -1
 * on an error (in err).  Lines longer than DUMP_LINE_MAX come back as "". */
static int dump_line(const char *name, dump_t *d, char **line,
                     apr_size_t *len, char *err, apr_size_t errlen)
{
    char *room;
    apr_size_t got;

    while (!memsess_lines_next(&d->lines, line, len, &room, &got)) {
        apr_status_t rv = apr_file_read(d->file, room, &got);

        d->lines.end += got;
        if (rv == APR_EOF || (rv == APR_SUCCESS && !got)) {
            apr_snprintf(err, errlen, "%s closed the listing before its "
                         "end", name);
            return -1;
        }
        if (rv != APR_SUCCESS) {
            char reason[120];

            apr_strerror(rv, reason, sizeof(reason));
            apr_snprintf(err, errlen, "listing the keys of %s: %s",
                         name, reason);
            return -1;
        }
    }
    return 1;
}

apr_status_t memsess_dump_each(apr_pool_t *p, const char *host,
                               apr_port_t port, const char *name,
                               apr_interval_time_t timeout,
                               volatile apr_uint32_t *stop,
                               apr_status_t (*item)(void *baton,
                                                    const memsess_dump_item_t
                                                    *it, char *err,
                                                    apr_size_t errlen),
                               void *baton, char *err, apr_size_t errlen)
{
    return memsess_dump_classes(p, host, port, name, NULL, timeout, stop,
                                item, baton, err, errlen);
}

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
                                  void *baton, char *err, apr_size_t errlen)
{
    apr_pool_t *sub;
    dump_t d;
    apr_status_t rv;
    int tries = 0;

    apr_pool_create(&sub, p);
    memset(&d, 0, sizeof(d));
    for (;;) {
        char *line;
        apr_size_t len;

        if ((rv = dump_open(host, port, name, classes, timeout, sub, &d,
                            err, errlen)) != APR_SUCCESS) {
            break;
        }
        if (dump_line(name, &d, &line, &len, err, errlen) < 0) {
            rv = APR_EGENERAL;
            break;
        }
        if (len >= 4 && !memcmp(line, "BUSY", 4) && ++tries < BUSY_TRIES) {
            /* another crawl runs (another view's sync): wait for it */
            dump_close(&d);
            apr_sleep(apr_time_from_msec(100));
            continue;
        }
        rv = APR_SUCCESS;
        for (;;) {
            memsess_dump_item_t it;
            int r;

            if (stop && *stop) {
                apr_cpystrn(err, "stopped", errlen);
                rv = APR_EINTR;
                break;
            }
            r = memsess_dump_parse(line, len, &it);
            if (r == 0) {
                break;   /* END */
            }
            if (r < 0
                && (rv = dump_refused(line, len, name, err, errlen))
                   != APR_SUCCESS) {
                break;
            }
            if (r > 0 && (rv = item(baton, &it, err, errlen))
                         != APR_SUCCESS) {
                break;
            }
            if (dump_line(name, &d, &line, &len, err, errlen) < 0) {
                rv = APR_EGENERAL;
                break;
            }
        }
        break;
    }
    dump_close(&d);
    apr_pool_destroy(sub);
    return rv;
}

/* memsess_dump_list's each, as memsess_dump_each's item. */
typedef struct {
    int  (*each)(void *baton, const memsess_dump_item_t *it);
    void  *baton;
} each_t;

static apr_status_t each_item(void *baton, const memsess_dump_item_t *it,
                              char *err, apr_size_t errlen)
{
    each_t *e = baton;

    if (!e->each(e->baton, it)) {
        apr_cpystrn(err, "stopped", errlen);
        return APR_EINTR;
    }
    return APR_SUCCESS;
}

/* A whole listing of one server for another owner of the lines (the
 * persistence's write-behind, memsess_persist_db.c): every item to each,
 * with the same parser, retries of a busy crawler and refusals as a
 * sync's pass. */
apr_status_t memsess_dump_list(apr_pool_t *p, const char *host,
                               apr_port_t port, apr_interval_time_t timeout,
                               volatile apr_uint32_t *stop,
                               int (*each)(void *baton,
                                           const memsess_dump_item_t *it),
                               void *baton, char *err, apr_size_t errlen)
{
    each_t e;

    e.each = each;
    e.baton = baton;
    return memsess_dump_each(p, host, port,
                             apr_psprintf(p, "%s:%d", host, (int)port),
                             timeout, stop, each_item, &e, err, errlen);
}
