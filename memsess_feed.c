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

/* The change feed.  A sync lists every server in its first pass, then
 * looks again at what was written meanwhile.  Listing again costs what the
 * first listing cost, whatever little changed: a server that also holds
 * ten million keys of another application takes ~20 s a listing here.
 * memcached logs every store to whoever asked ("watch mutations", 1.5 and
 * later, text protocol): a feed opened before the first listing collects
 * the keys of ours stored from then on, and a later pass reads just those
 * (a pipelined meta get gives what a listing line would: cas, time to
 * live, last access).
 *
 * The log is no guarantee by itself, and a feed never pretends it is:
 *   - memcached hands its log over late (its logger thread sleeps up to a
 *     second when idle) and from one buffer per worker thread, in no
 *     global order.  A take writes a mark, waits for it, writes a second
 *     on the same connection (the same worker), waits for that: the
 *     logger had then read every worker's buffer after the first mark was
 *     written, so everything logged before it has come;
 *   - memcached drops lines when a worker's buffer or ours is full (its
 *     "log_worker_dropped" and "log_watcher_skipped" counters, and a
 *     "skipped=" line in the stream): a take that sees either counter
 *     move, more keys than its cap, the stream closed, or a mark late,
 *     says so, and the pass lists the server as before;
 *   - deletions are not logged (1.6.18): the feed only ever adds keys to
 *     look at; the sync finds logouts from the returning server's own
 *     listing, as before.
 * Memory: the keys kept between two takes, at most cap (~80 bytes each). */

#include <string.h>
#include <stdlib.h>

#include "apr_strings.h"
#include "apr_hash.h"
#include "apr_thread_proc.h"
#include "apr_thread_mutex.h"
#include "apr_thread_cond.h"
#include "apr_network_io.h"

#include "memsess_feed.h"

#define LINE_MAX_LEN  (4096)       /* the longest line looked at */
#define MARK_WAIT     apr_time_from_sec(3)
#define META_BATCH    (200)        /* keys of one pipelined meta get */
#define POLL_US       apr_time_from_msec(100)

/* ------------------------------------------------------------------ */
/* Lines (pure)                                                       */

/* The value of field `name` in a line of name=value fields, or NULL. */
static const char *field(const char *line, apr_size_t len, const char *name,
                         apr_size_t *vlen)
{
    apr_size_t n = strlen(name), i = 0;

    while (i < len) {
        apr_size_t start = i, end;

        while (i < len && line[i] != ' ') {
            i++;
        }
        end = i;
        while (i < len && line[i] == ' ') {
            i++;
        }
        if (end - start > n && line[start + n] == '='
            && !memcmp(line + start, name, n)) {
            *vlen = end - start - n - 1;
            return line + start + n + 1;
        }
    }
    return NULL;
}

static int is(const char *v, apr_size_t vlen, const char *want)
{
    return v && vlen == strlen(want) && !memcmp(v, want, vlen);
}

int memsess_feed_parse(const char *line, apr_size_t len,
                       memsess_dump_item_t *it)
{
    const char *v;
    apr_size_t vlen;

    if (len >= 8 && !memcmp(line, "skipped=", 8)) {
        return -1;
    }
    v = field(line, len, "type", &vlen);
    if (!is(v, vlen, "item_store")) {
        return 0;
    }
    v = field(line, len, "status", &vlen);
    if (!is(v, vlen, "stored")) {
        return 0;   /* not stored (add, cas that lost): nothing changed */
    }
    memset(it, 0, sizeof(*it));
    v = field(line, len, "key", &vlen);
    return v && memsess_dump_key(v, vlen, it) ? 1 : 0;
}

int memsess_feed_meta(const char *line, apr_size_t len, apr_int64_t now,
                      memsess_dump_item_t *it)
{
    apr_size_t i = 3;
    apr_int64_t ttl = 0, la = 0, cas = 0;
    int have = 0, seen = 0, bit;

    if (len == 2 && !memcmp(line, "MN", 2)) {
        return 0;
    }
    if (len < 3 || memcmp(line, "HD ", 3)) {
        return -1;
    }
    memset(it, 0, sizeof(*it));
    while (i < len) {
        apr_size_t start = i, n;

        while (i < len && line[i] != ' ') {
            i++;
        }
        n = i - start;
        while (i < len && line[i] == ' ') {
            i++;
        }
        if (n < 2) {
            return -1;
        }
        bit = line[start] == 't' ? 1 : line[start] == 'c' ? 2
              : line[start] == 'l' ? 4 : line[start] == 'k' ? 8 : 0;
        if (seen & bit) {
            return -1;   /* a flag twice: memcached never answers so (a
                          * second one, bad, left the first's value
                          * half overwritten: fuzz_sync) */
        }
        seen |= bit;
        switch (line[start]) {
        case 't':
            have |= memsess_dump_int(line + start + 1, n - 1, &ttl) ? 1 : 0;
            break;
        case 'c':
            have |= memsess_dump_int(line + start + 1, n - 1, &cas)
                    && cas >= 0 ? 2 : 0;
            break;
        case 'l':
            have |= memsess_dump_int(line + start + 1, n - 1, &la)
                    && la >= 0 ? 4 : 0;
            break;
        case 'k':
            have |= memsess_dump_key(line + start + 1, n - 1, it) ? 8 : 0;
            break;
        default:
            break;   /* a flag not asked for */
        }
    }
    if (have != 15 || ttl < -1) {
        return -1;
    }
    it->exp = ttl == -1 ? -1 : now + ttl;
    it->la = now - la;
    it->cas = (apr_uint64_t)cas;
    return 1;
}

/* ------------------------------------------------------------------ */
/* A connection read a line at a time                                 */

typedef struct {
    apr_socket_t    *sock;
    char             buf[LINE_MAX_LEN * 2];
    memsess_lines_t  lines;   /* cut from buf */
} conn_t;

static apr_status_t conn_open(conn_t *c, apr_pool_t *p, const char *host,
                              apr_port_t port, apr_interval_time_t timeout)
{
    apr_sockaddr_t *sa;
    apr_status_t rv;

    memset(c, 0, sizeof(*c));
    c->lines.buf = c->buf;
    c->lines.size = sizeof(c->buf);
    c->lines.max = LINE_MAX_LEN;
    if ((rv = apr_sockaddr_info_get(&sa, host, APR_UNSPEC, port, 0, p))
            == APR_SUCCESS
        && (rv = apr_socket_create(&c->sock, sa->family, SOCK_STREAM,
                                   APR_PROTO_TCP, p)) == APR_SUCCESS
        && (rv = apr_socket_timeout_set(c->sock, timeout)) == APR_SUCCESS) {
        rv = apr_socket_connect(c->sock, sa);
    }
    return rv;
}

static apr_status_t conn_send(conn_t *c, const char *s, apr_size_t len)
{
    while (len) {
        apr_size_t n = len;
        apr_status_t rv = apr_socket_send(c->sock, s, &n);

        if (rv != APR_SUCCESS) {
            return rv;
        }
        s += n;
        len -= n;
    }
    return APR_SUCCESS;
}

/* The next line, without its end, into *line and *len: APR_SUCCESS, or what
 * the socket said (APR_TIMEUP with nothing lost: call again). */
static apr_status_t conn_line(conn_t *c, const char **line, apr_size_t *len)
{
    char *l, *room;
    apr_size_t got;

    while (!memsess_lines_next(&c->lines, &l, len, &room, &got)) {
        apr_status_t rv = apr_socket_recv(c->sock, room, &got);

        c->lines.end += got;
        if (rv == APR_SUCCESS && !got) {
            return APR_EOF;
        }
        if (rv != APR_SUCCESS && !got) {
            return rv;
        }
    }
    *line = l;
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* The feed                                                           */

struct memsess_feed {
    apr_pool_t         *pool;
    const char         *name;
    apr_size_t          cap;
    int               (*keep)(void *baton, const char *key, apr_size_t len);
    void               *baton;
    conn_t             *watch;    /* the log: its thread's */
    conn_t             *ctl;      /* marks, stats, meta gets: the caller's */
    apr_thread_t       *thread;
    apr_thread_mutex_t *mu;       /* guards what follows */
    apr_thread_cond_t  *cond;
    int                 closing;
    const char         *lost;     /* why the set may miss a key, or NULL */
    int                 ended;    /* the stream ended: for good */
    apr_pool_t         *set_pool;
    apr_hash_t         *set;      /* the keys since the last take */
    char                mark[64]; /* awaited, "" none */
    int                 mark_seen;
    /* the caller's */
    apr_int64_t         dropped, skipped;   /* memcached's, at last take */
    unsigned            marks;
    apr_uint64_t        nonce;
};

static void *APR_THREAD_FUNC feed_run(apr_thread_t *th, void *data)
{
    memsess_feed_t *f = data;

    for (;;) {
        const char *line;
        apr_size_t len;
        memsess_dump_item_t it;
        apr_status_t rv = conn_line(f->watch, &line, &len);
        int r;

        apr_thread_mutex_lock(f->mu);
        if (f->closing) {
            apr_thread_mutex_unlock(f->mu);
            break;
        }
        if (rv == APR_TIMEUP || APR_STATUS_IS_EAGAIN(rv)) {
            apr_thread_mutex_unlock(f->mu);
            continue;
        }
        if (rv != APR_SUCCESS) {
            f->ended = 1;
            f->lost = "its log's stream ended";
            apr_thread_cond_broadcast(f->cond);
            apr_thread_mutex_unlock(f->mu);
            break;
        }
        r = memsess_feed_parse(line, len, &it);
        if (r < 0) {
            f->lost = "memcached skipped lines of its log";
        }
        else if (r > 0 && f->mark[0] && !strcmp(it.key, f->mark)) {
            f->mark_seen = 1;
            apr_thread_cond_broadcast(f->cond);
        }
        else if (r > 0 && !f->lost && f->keep(f->baton, it.key, it.keylen)
                 && !apr_hash_get(f->set, it.key, (apr_ssize_t)it.keylen)) {
            if (apr_hash_count(f->set) >= f->cap) {
                f->lost = "more keys were written than it keeps";
            }
            else {
                char *k = apr_pstrmemdup(f->set_pool, it.key, it.keylen);

                apr_hash_set(f->set, k, (apr_ssize_t)it.keylen, k);
            }
        }
        apr_thread_mutex_unlock(f->mu);
    }
    /* a plain return, not apr_thread_exit(): pthread_exit's forced unwind
     * leaves this frame's stack poisoned under ASan (as in
     * memsess_exchange.c) */
    (void)th;
    return NULL;
}

/* memcached's counters of lines its log lost, into *dropped and
 * *skipped, and how many keys it holds into *items (may be NULL):
 * APR_SUCCESS, or why not. */
static apr_status_t lost_counts(memsess_feed_t *f, apr_int64_t *dropped,
                                apr_int64_t *skipped, apr_int64_t *items)
{
    apr_int64_t ignored;
    static const char cmd[] = "stats\r\n";
    apr_status_t rv = conn_send(f->ctl, cmd, sizeof(cmd) - 1);
    int have = 0;

    while (rv == APR_SUCCESS) {
        const char *line;
        apr_size_t len;

        if ((rv = conn_line(f->ctl, &line, &len)) != APR_SUCCESS) {
            break;
        }
        if (len == 3 && !memcmp(line, "END", 3)) {
            return have == 3 ? APR_SUCCESS : APR_ENOTIMPL;
        }
        if (len > 16 && !memcmp(line, "STAT curr_items ", 16)) {
            memsess_dump_int(line + 16, len - 16, items ? items : &ignored);
        }
        else if (len > 24
                 && !memcmp(line, "STAT log_worker_dropped ", 24)) {
            have |= memsess_dump_int(line + 24, len - 24, dropped) ? 1 : 0;
        }
        else if (len > 25 && !memcmp(line, "STAT log_watcher_skipped ", 25)) {
            have |= memsess_dump_int(line + 25, len - 25, skipped) ? 2 : 0;
        }
        else if (len < 5 || memcmp(line, "STAT ", 5)) {
            return APR_EGENERAL;
        }
    }
    return rv;
}

memsess_feed_t *memsess_feed_open(apr_pool_t *p, const char *host,
                                  apr_port_t port, const char *name,
                                  apr_interval_time_t timeout,
                                  apr_size_t cap, apr_int64_t min_items,
                                  int (*keep)(void *baton, const char *key,
                                              apr_size_t len),
                                  void *baton, char *err, apr_size_t errlen)
{
    static const char cmd[] = "watch mutations\r\n";
    memsess_feed_t *f;
    apr_pool_t *sub;
    const char *line = "";
    apr_size_t len = 0;
    apr_int64_t items = 0;
    apr_status_t rv;

    apr_pool_create(&sub, p);
    f = apr_pcalloc(sub, sizeof(*f));
    f->pool = sub;
    f->name = apr_pstrdup(sub, name);
    f->cap = cap ? cap : 1;
    f->keep = keep;
    f->baton = baton;
    f->watch = apr_pcalloc(sub, sizeof(*f->watch));
    f->ctl = apr_pcalloc(sub, sizeof(*f->ctl));
    if (apr_generate_random_bytes((unsigned char *)&f->nonce,
                                  sizeof(f->nonce)) != APR_SUCCESS) {
        f->nonce = (apr_uint64_t)apr_time_now();
    }
    apr_pool_create(&f->set_pool, sub);
    f->set = apr_hash_make(f->set_pool);
    if ((rv = conn_open(f->ctl, sub, host, port, timeout)) != APR_SUCCESS
        || (rv = lost_counts(f, &f->dropped, &f->skipped, &items))
           != APR_SUCCESS
        || (rv = items < min_items ? APR_EAGAIN : APR_SUCCESS)
           != APR_SUCCESS
        || (rv = conn_open(f->watch, sub, host, port, timeout))
           != APR_SUCCESS
        || (rv = conn_send(f->watch, cmd, sizeof(cmd) - 1)) != APR_SUCCESS
        || (rv = conn_line(f->watch, &line, &len)) != APR_SUCCESS
        || (rv = (len == 2 && !memcmp(line, "OK", 2)) ? APR_SUCCESS
                                                      : APR_ENOTIMPL)
           != APR_SUCCESS
        || (rv = apr_socket_timeout_set(f->watch->sock, POLL_US))
           != APR_SUCCESS
        || (rv = apr_thread_mutex_create(&f->mu, APR_THREAD_MUTEX_DEFAULT,
                                         sub)) != APR_SUCCESS
        || (rv = apr_thread_cond_create(&f->cond, sub)) != APR_SUCCESS
        || (rv = apr_thread_create(&f->thread, NULL, feed_run, f, sub))
           != APR_SUCCESS) {
        char reason[120];

        if (rv == APR_ENOTIMPL) {
            apr_cpystrn(reason, "no log to watch", sizeof(reason));
        }
        else if (rv == APR_EAGAIN) {
            apr_snprintf(reason, sizeof(reason), "it holds %" APR_INT64_T_FMT
                         " keys: listed again, that costs less", items);
        }
        else {
            apr_strerror(rv, reason, sizeof(reason));
        }
        apr_snprintf(err, errlen, "cannot watch the writes of %s: %s", name,
                     reason);
        if (f->watch->sock) {
            apr_socket_close(f->watch->sock);
        }
        if (f->ctl->sock) {
            apr_socket_close(f->ctl->sock);
        }
        apr_pool_destroy(sub);
        return NULL;
    }
    return f;
}

/* Writes a mark and waits for the log to bring it: 1, or 0 (f->lost or
 * why in *why). */
static int mark(memsess_feed_t *f, const char **why)
{
    char cmd[128];
    const char *line;
    apr_size_t len;
    apr_time_t until = apr_time_now() + MARK_WAIT;
    int seen;

    apr_thread_mutex_lock(f->mu);
    apr_snprintf(f->mark, sizeof(f->mark),
                 "memsess.feed.%016" APR_UINT64_T_HEX_FMT ".%u", f->nonce,
                 ++f->marks);
    f->mark_seen = 0;
    apr_thread_mutex_unlock(f->mu);
    apr_snprintf(cmd, sizeof(cmd), "set %s 0 10 1\r\nm\r\n", f->mark);
    if (conn_send(f->ctl, cmd, strlen(cmd)) != APR_SUCCESS
        || conn_line(f->ctl, &line, &len) != APR_SUCCESS
        || len != 6 || memcmp(line, "STORED", 6)) {
        *why = "its mark could not be written";
        return 0;
    }
    apr_thread_mutex_lock(f->mu);
    while (!f->mark_seen && !f->ended && apr_time_now() < until) {
        apr_thread_cond_timedwait(f->cond, f->mu, until - apr_time_now());
    }
    seen = f->mark_seen;
    f->mark[0] = '\0';
    apr_thread_mutex_unlock(f->mu);
    if (!seen) {
        *why = "its mark did not come back in time";
    }
    return seen;
}

apr_status_t memsess_feed_take(memsess_feed_t *f, apr_pool_t *p,
                               apr_array_header_t **keys, char *err,
                               apr_size_t errlen)
{
    const char *why = NULL, *lost;
    apr_int64_t dropped = 0, skipped = 0;
    apr_hash_index_t *hi;
    apr_array_header_t *a;
    int counted;

    if (mark(f, &why)) {
        mark(f, &why);
    }
    counted = lost_counts(f, &dropped, &skipped, NULL) == APR_SUCCESS;
    a = apr_array_make(p, 16, sizeof(const char *));
    apr_thread_mutex_lock(f->mu);
    lost = f->lost;
    for (hi = apr_hash_first(p, f->set); hi; hi = apr_hash_next(hi)) {
        const void *k;

        apr_hash_this(hi, &k, NULL, NULL);
        *(const char **)apr_array_push(a) = apr_pstrdup(p, k);
    }
    apr_pool_clear(f->set_pool);
    f->set = apr_hash_make(f->set_pool);
    if (!f->ended) {
        f->lost = NULL;   /* what comes next is whole again */
    }
    apr_thread_mutex_unlock(f->mu);
    if (!why && !counted) {
        why = "its log's counters could not be read";
    }
    if (!why && (dropped != f->dropped || skipped != f->skipped)) {
        why = "memcached dropped lines of its log";
    }
    if (counted) {
        f->dropped = dropped;
        f->skipped = skipped;
    }
    if (!why) {
        why = lost;
    }
    if (why) {
        apr_snprintf(err, errlen, "the writes of %s since the last pass "
                     "are not all known: %s", f->name, why);
        return APR_EINCOMPLETE;
    }
    *keys = a;
    return APR_SUCCESS;
}

apr_status_t memsess_feed_items(memsess_feed_t *f,
                                const apr_array_header_t *keys,
                                apr_status_t (*each)(void *baton,
                                                     const memsess_dump_item_t
                                                     *it, char *err,
                                                     apr_size_t errlen),
                                void *baton, char *err, apr_size_t errlen)
{
    apr_size_t cap = META_BATCH * (MEMSESS_KEY_MAX + 24) + 8;
    char *cmd = malloc(cap);
    int i = 0;

    if (!cmd) {
        apr_cpystrn(err, "out of memory", errlen);
        return APR_ENOMEM;
    }
    while (i < keys->nelts) {
        apr_size_t n = 0;
        apr_int64_t now = apr_time_sec(apr_time_now());
        apr_status_t rv;
        int j;

        for (j = 0; j < META_BATCH && i < keys->nelts; j++, i++) {
            const char *k = APR_ARRAY_IDX(keys, i, const char *);

            n += (apr_size_t)apr_snprintf(cmd + n, cap - n,
                                          "mg %s t c l k q\r\n", k);
        }
        memcpy(cmd + n, "mn\r\n", 4);
        n += 4;
        rv = conn_send(f->ctl, cmd, n);
        while (rv == APR_SUCCESS) {
            memsess_dump_item_t it;
            const char *line;
            apr_size_t len;
            int r;

            if ((rv = conn_line(f->ctl, &line, &len)) != APR_SUCCESS) {
                break;
            }
            r = memsess_feed_meta(line, len, now, &it);
            if (r == 0) {
                break;
            }
            if (r < 0) {
                apr_snprintf(err, errlen, "%s answered a meta get with "
                             "\"%.*s\"", f->name, (int)(len > 80 ? 80 : len),
                             line);
                free(cmd);
                return APR_EGENERAL;
            }
            if ((rv = each(baton, &it, err, errlen)) != APR_SUCCESS) {
                free(cmd);
                return rv;
            }
        }
        if (rv != APR_SUCCESS) {
            char reason[120];

            apr_strerror(rv, reason, sizeof(reason));
            apr_snprintf(err, errlen, "cannot read the keys written on %s: "
                         "%s", f->name, reason);
            free(cmd);
            return rv;
        }
    }
    free(cmd);
    return APR_SUCCESS;
}

void memsess_feed_close(memsess_feed_t *f)
{
    apr_status_t ignored;

    if (!f) {
        return;
    }
    apr_thread_mutex_lock(f->mu);
    f->closing = 1;
    apr_thread_mutex_unlock(f->mu);
    apr_thread_join(&ignored, f->thread);
    apr_socket_close(f->watch->sock);
    apr_socket_close(f->ctl->sock);
    apr_pool_destroy(f->pool);
}
