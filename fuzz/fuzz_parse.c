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

/* libFuzzer harness of memsess_pool.c: the MemsessServers parser and the
 * save_path builder, fed hostile configuration text.
 *
 * Input: the text of a MemsessServers line, split into tokens on
 * whitespace (or, when it holds a 0x1f byte, at every 0x1f, so a token may
 * hold spaces the way a quoted httpd argument does, and be empty as "" is),
 * at most MAX_TOKENS.
 * Bytes after the first NUL, if any, are live masks for the save_path
 * builder (bit i of the mask = server i is live).
 *
 * Every token lives in a malloc'd block of its exact size and every output
 * buffer has exactly the size the code is told, so ASan sees any byte read
 * or written past them.  APR pool memory is not instrumented: an overflow
 * inside a pool block would go unseen, which is why the harness checks
 * every string it gets back against a model of its own.
 *
 * What it checks (abort() on any difference, libFuzzer saves the input):
 *   - each token is accepted exactly when an independent model of
 *     host[:port[:weight]] / [v6]:port[:weight] accepts it, with the same
 *     host, port, weight and addr;
 *   - an accepted server's addr fits MEMSESS_ADDR_MAX, holds no character
 *     that would split a save_path, and parses back to itself;
 *   - the pool is accepted exactly when every token is and no two give the
 *     same addr; a pool never accepts a server it already holds; the list
 *     split over two lines (the second appending) gives the same pool;
 *   - the tokens written as one line of quoted words, as httpd hands it
 *     over, give memsess_pool_parse_line the same verdict and pool: an
 *     empty word ("") is refused, never the end of the list;
 *   - each token, read as a time, is accepted by memsess_time_parse exactly
 *     when it is digits and then nothing, ms, s, m or h, with the model's
 *     value (saturated at APR_INT64_MAX);
 *   - memsess_path_build, in both formats and both failover modes, for
 *     many live masks, returns the length of the model's save_path, never
 *     writes past size, always NUL-terminates, and writes a prefix of the
 *     model's text.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "apr_general.h"
#include "apr_strings.h"

#include "memsess_pool.h"

#define FUZZ_NAME "fuzz_parse"
#include "fuzz.h"

#define MAX_TOKENS   (64)
#define MAX_MASKS    (12)

static apr_pool_t *root;


int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    root = fuzz_root();
    return 0;
}

/* ------------------------------------------------------------------ */
/* The model: what the header promises, written without looking at     */
/* how memsess_pool.c does it.                                         */

typedef struct {
    char host[300];
    char addr[320];
    long port;
    long weight;
    int ipv6;
} model_srv_t;

/* 1 to 9 decimal digits, nothing else; -1 otherwise. */
static long model_number(const char *s, size_t len)
{
    long n = 0;
    size_t i;

    if (len < 1 || len > 9) {
        return -1;
    }
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        n = n * 10 + (s[i] - '0');
    }
    return n;
}

/* Labels of 1-63 characters between the dots, none starting or ending
 * with '-'; a name the C library reads as an IPv4 address only when it is
 * the canonical dotted quad. */
static int model_host_ok(const char *host)
{
    char copy[300], *label, *save = NULL;
    size_t len = strlen(host);
    struct in_addr a;

    if (len >= sizeof(copy) || host[0] == '.' || host[len - 1] == '.'
        || strstr(host, "..")) {
        return 0;
    }
    memcpy(copy, host, len + 1);
    for (label = strtok_r(copy, ".", &save); label;
         label = strtok_r(NULL, ".", &save)) {
        size_t l = strlen(label);

        if (l > 63 || label[0] == '-' || label[l - 1] == '-') {
            return 0;
        }
    }
    if (inet_aton(host, &a) != 0 && inet_pton(AF_INET, host, &a) != 1) {
        return 0;
    }
    /* digits and dots only: a dotted quad, each part 0-255 without a
     * leading zero, or nothing */
    if (strspn(host, "0123456789.") == len) {
        int parts = 0;
        const char *c = host;

        while (*c) {
            long v = 0;
            size_t nd = 0;

            while (c[nd] >= '0' && c[nd] <= '9' && nd < 4) {
                v = v * 10 + (c[nd] - '0');
                nd++;
            }
            if (!nd || nd > 3 || v > 255 || (nd > 1 && c[0] == '0')) {
                return 0;
            }
            c += nd;
            parts++;
            if (*c == '.') {
                c++;
                if (!*c) {
                    return 0;
                }
            }
            else if (*c) {
                return 0;
            }
        }
        return parts == 4;
    }
    return 1;
}

/* Fills m and returns 1 when tok is a valid server, 0 when not. */
static int model_parse(const char *tok, model_srv_t *m)
{
    const char *rest;
    size_t i;

    memset(m, 0, sizeof(*m));
    m->port = MEMSESS_DEFAULT_PORT;
    if (tok[0] == '[') {
        const char *close = strchr(tok, ']');
        size_t hlen;
        struct in6_addr a;
        char inner[300];

        if (!close) {
            return 0;
        }
        hlen = (size_t)(close - tok - 1);
        if (hlen < 1 || hlen >= sizeof(inner)) {
            return 0;
        }
        memcpy(inner, tok + 1, hlen);
        inner[hlen] = '\0';
        if (strchr(inner, '%') || inet_pton(AF_INET6, inner, &a) != 1
            || !inet_ntop(AF_INET6, &a, m->host, sizeof(m->host))) {
            return 0;
        }
        m->ipv6 = 1;
        {
            static const unsigned char mapped[12] = {
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

            if (!memcmp(a.s6_addr, mapped, sizeof(mapped))) {
                snprintf(m->host, sizeof(m->host), "%u.%u.%u.%u",
                         a.s6_addr[12], a.s6_addr[13], a.s6_addr[14],
                         a.s6_addr[15]);
                m->ipv6 = 0;
            }
        }
        rest = close + 1;
    }
    else {
        size_t hlen = strcspn(tok, ":");

        if (hlen < 1 || hlen > 253) {
            return 0;
        }
        for (i = 0; i < hlen; i++) {
            char c = tok[i];

            if (c >= 'A' && c <= 'Z') {
                c = (char)(c - 'A' + 'a');
            }
            else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                       || c == '.' || c == '-' || c == '_')) {
                return 0;
            }
            m->host[i] = c;
        }
        m->host[hlen] = '\0';
        if (!model_host_ok(m->host)) {
            return 0;
        }
        rest = tok + hlen;
    }

    if (*rest) {
        const char *p, *colon;

        if (*rest != ':') {
            return 0;
        }
        p = rest + 1;
        colon = strchr(p, ':');
        m->port = model_number(p, colon ? (size_t)(colon - p) : strlen(p));
        if (m->port < 1 || m->port > 65535) {
            return 0;
        }
        if (colon) {
            m->weight = model_number(colon + 1, strlen(colon + 1));
            if (m->weight < 1) {
                return 0;
            }
        }
    }
    snprintf(m->addr, sizeof(m->addr), m->ipv6 ? "[%s]:%ld" : "%s:%ld",
             m->host, m->port);
    return 1;
}

/* The model's save_path: all servers when live is NULL; otherwise the
 * live ones, a down one left out (DROP) or standing as the first live one
 * after it, wrapping around (SUCCESSOR), none when none is live. */
static char *model_path(apr_pool_t *p, const memsess_pool_t *pool,
                        const unsigned char *live, memsess_format_e format,
                        memsess_failover_e failover)
{
    int n = pool->servers->nelts, i, k, first = 1;
    char *out = "";

    for (i = 0; i < n; i++) {
        const memsess_server_t *s =
            &APR_ARRAY_IDX(pool->servers, i, memsess_server_t);
        char w[32] = "";

        if (live && !live[i]) {
            if (failover != MEMSESS_FAILOVER_SUCCESSOR) {
                continue;
            }
            for (k = 1; k < n && !live[(i + k) % n]; k++) {
            }
            if (k == n) {
                continue;
            }
            s = &APR_ARRAY_IDX(pool->servers, (i + k) % n, memsess_server_t);
        }
        if (s->weight) {
            snprintf(w, sizeof(w), format == MEMSESS_FORMAT_MEMCACHE
                     ? "?weight=%d" : ":%d", s->weight);
        }
        out = apr_pstrcat(p, out,
                          first ? "" : (format == MEMSESS_FORMAT_MEMCACHE
                                        ? ", " : ","),
                          format == MEMSESS_FORMAT_MEMCACHE ? "tcp://" : "",
                          s->addr, w, NULL);
        first = 0;
    }
    return out;
}

/* ------------------------------------------------------------------ */
/* Checks                                                              */

static void check_server(apr_pool_t *p, const char *tok,
                         const memsess_server_t *srv)
{
    const char *c, *err;
    memsess_server_t again;

    if (!srv->addr || !srv->host) {
        fail("\"%s\": accepted without host or addr", tok);
    }
    if (srv->port < 1) {
        fail("\"%s\": port %u", tok, srv->port);
    }
    if (srv->weight < 0) {
        fail("\"%s\": weight %d", tok, srv->weight);
    }
    if (srv->slot != -1) {
        fail("\"%s\": slot %d before post_config", tok, srv->slot);
    }
    /* The shared table keeps addr in a fixed field: it must fit whole,
     * or take_over and the status page would see another name. */
    if (strlen(srv->addr) >= MEMSESS_ADDR_MAX) {
        fail("\"%s\": addr of %zu bytes does not fit MEMSESS_ADDR_MAX",
             tok, strlen(srv->addr));
    }
    /* Nothing in addr may split or extend a save_path. */
    for (c = srv->addr; *c; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9')
              || *c == '.' || *c == '-' || *c == '_' || *c == ':'
              || *c == '[' || *c == ']')) {
            fail("\"%s\": addr \"%s\" holds byte 0x%02x", tok, srv->addr,
                 (unsigned char)*c);
        }
    }

    /* addr parses back to the same server, with no weight. */
    err = memsess_server_parse(p, srv->addr, &again);
    if (err) {
        fail("\"%s\": its addr \"%s\" does not parse: %s", tok, srv->addr,
             err);
    }
    if (strcmp(again.addr, srv->addr) || strcmp(again.host, srv->host)
        || again.port != srv->port || again.ipv6 != srv->ipv6
        || again.weight != 0) {
        fail("\"%s\": addr \"%s\" parses back as \"%s\" (host \"%s\" "
             "port %u ipv6 %d weight %d)", tok, srv->addr, again.addr,
             again.host, again.port, again.ipv6, again.weight);
    }
    /* ... and with its weight, to the same weight. */
    if (srv->weight) {
        const char *tw = apr_psprintf(p, "%s:%d", srv->addr, srv->weight);

        err = memsess_server_parse(p, tw, &again);
        if (err || strcmp(again.addr, srv->addr)
            || again.weight != srv->weight) {
            fail("\"%s\": \"%s\" does not parse back: %s", tok, tw,
                 err ? err : again.addr);
        }
    }
}

/* One memsess_path_build call into a malloc'd block of exactly size bytes
 * (none when size is 0, as mod_memsess.c's sizing call does). */
static void check_build(const memsess_pool_t *pool, const unsigned char *live,
                        memsess_format_e format, memsess_failover_e failover,
                        const char *want, apr_size_t size)
{
    apr_size_t wlen = strlen(want), got, end;
    char *buf = size ? malloc(size) : NULL;

    if (size && !buf) {
        abort();
    }
    if (buf) {
        memset(buf, 0x5a, size);
    }
    got = memsess_path_build(buf, size, pool, live, format, failover);
    if (got > memsess_path_max(pool, format, failover)) {
        fail("path_build gives %zu, beyond memsess_path_max's %zu (format "
             "%d, failover %d)", (size_t)got,
             (size_t)memsess_path_max(pool, format, failover), (int)format,
             (int)failover);
    }
    if (got != wlen) {
        fail("path_build(size %zu, format %d, failover %d) says %zu, model "
             "\"%s\" is %zu", (size_t)size, (int)format, (int)failover,
             (size_t)got, want, wlen);
    }
    if (size) {
        end = wlen < size ? wlen : size - 1;
        if (buf[end] != '\0') {
            fail("path_build(size %zu) not NUL-terminated at %zu",
                 (size_t)size, (size_t)end);
        }
        if (memcmp(buf, want, end)) {
            fail("path_build(size %zu) wrote \"%.*s\", model \"%s\"",
                 (size_t)size, (int)end, buf, want);
        }
    }
    free(buf);
}

static void check_path(apr_pool_t *p, const memsess_pool_t *pool,
                       const unsigned char *mask, memsess_format_e format,
                       memsess_failover_e failover, uint32_t *rng)
{
    int n = pool->servers->nelts;
    unsigned char *live = NULL;
    const char *want;
    apr_size_t wlen, sizes[8];
    int k;

    if (mask) {
        /* exactly n bytes: reading live[n] is a heap overflow */
        live = malloc((size_t)n);
        if (!live) {
            abort();
        }
        memcpy(live, mask, (size_t)n);
    }
    want = model_path(p, pool, live, format, failover);
    wlen = strlen(want);

    sizes[0] = 0;
    sizes[1] = 1;
    sizes[2] = wlen;
    sizes[3] = wlen + 1;
    sizes[4] = wlen + 2;
    for (k = 5; k < 8; k++) {
        *rng = *rng * 1103515245u + 12345u;
        sizes[k] = (*rng >> 8) % (wlen + 2);
    }
    for (k = 0; k < 8; k++) {
        check_build(pool, live, format, failover, want, sizes[k]);
    }
    free(live);
}

/* The model of memsess_time_parse: decimal digits, then nothing, "ms",
 * "s", "m" or "h"; seconds when nothing; saturated at APR_INT64_MAX. */
static int model_time(const char *s, apr_interval_time_t *t)
{
    static const char *units[] = { "", "ms", "s", "m", "h" };
    static const unsigned __int128 usec[] = {
        1000000, 1000, 1000000, 60000000, 3600000000u };
    unsigned __int128 n = 0, cap = (unsigned __int128)APR_INT64_MAX + 1;
    size_t nd = 0, u;

    while (s[nd] >= '0' && s[nd] <= '9') {
        n = n * 10 + (unsigned)(s[nd] - '0');
        if (n > cap) {
            n = cap;
        }
        nd++;
    }
    if (!nd) {
        return 0;
    }
    for (u = 0; u < 5; u++) {
        if (!strcmp(s + nd, units[u])) {
            n *= usec[u];
            *t = n > APR_INT64_MAX ? APR_INT64_MAX : (apr_interval_time_t)n;
            return 1;
        }
    }
    return 0;
}

static void check_time(const char *tok)
{
    apr_interval_time_t got = -7, want = -7;
    int ok = memsess_time_parse(tok, &got) == APR_SUCCESS;

    if (ok != model_time(tok, &want)) {
        fail("time \"%s\": %s, the model %s it", tok,
             ok ? "accepted" : "refused", ok ? "refuses" : "accepts");
    }
    if (ok && got != want) {
        fail("time \"%s\": %" APR_TIME_T_FMT "us, the model says %"
             APR_TIME_T_FMT, tok, got, want);
    }
    if (!ok && got != -7) {
        fail("time \"%s\": refused but wrote %" APR_TIME_T_FMT, tok, got);
    }
}

/* httpd's ap_getword_conf for the words check_line writes: a quoted word
 * (maybe empty), and the blanks after it. */
static char *getword(apr_pool_t *p, const char **line)
{
    const char *s = *line, *end;
    char *w;

    while (*s == ' ') {
        s++;
    }
    if (*s != '"') {
        fail("check_line: a word that does not start with a quote: %s", s);
    }
    end = strchr(s + 1, '"');
    if (!end) {
        fail("check_line: a word without its closing quote: %s", s);
    }
    w = apr_pstrmemdup(p, s + 1, (apr_size_t)(end - s - 1));
    for (s = end + 1; *s == ' '; s++) {
    }
    *line = s;
    return w;
}

/* The tokens as one line of quoted words: memsess_pool_parse_line gives
 * the verdict memsess_pool_parse gave (err), and the same servers. */
static void check_line(apr_pool_t *p, int argc, char **argv,
                       const char *err, const memsess_pool_t *pool)
{
    memsess_pool_t *from_line = NULL;
    const char *line = "", *e;
    int i;

    for (i = 0; i < argc; i++) {
        if (strchr(argv[i], '"')) {
            return;   /* not a word this getword can quote */
        }
        line = apr_pstrcat(p, line, i ? " \"" : "\"", argv[i], "\"", NULL);
    }
    e = memsess_pool_parse_line(p, line, getword, &from_line);
    if ((e == NULL) != (err == NULL)) {
        fail("line '%s': %s; as %d tokens: %s", line, e ? e : "accepted",
             argc, err ? err : "accepted");
    }
    if (!e && from_line->servers->nelts != pool->servers->nelts) {
        fail("line '%s': %d servers; as tokens %d", line,
             from_line->servers->nelts, pool->servers->nelts);
    }
    for (i = 0; !e && i < argc; i++) {
        if (strcmp(APR_ARRAY_IDX(from_line->servers, i,
                                 memsess_server_t).addr,
                   APR_ARRAY_IDX(pool->servers, i, memsess_server_t).addr)) {
            fail("line '%s': server %d differs", line, i);
        }
    }
}

static int is_sep(uint8_t c, int us)
{
    return us ? c == 0x1f
              : c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v'
                || c == '\f';
}

/* Splits data into tokens, each in a malloc'd block of its exact size. */
static int split(const uint8_t *data, size_t size, char **argv)
{
    int argc = 0, us = memchr(data, 0x1f, size) != NULL;
    size_t i = 0;

    while (i < size && argc < MAX_TOKENS) {
        size_t start, len;

        if (us) {
            /* one word per 0x1f-separated piece: "a\x1f\x1fb" has an empty
             * one in the middle, as `a "" b` has */
            if (argc) {
                i++;   /* the separator after the previous word */
            }
        }
        else {
            while (i < size && is_sep(data[i], us)) {
                i++;
            }
        }
        start = i;
        while (i < size && !is_sep(data[i], us)) {
            i++;
        }
        len = i - start;
        if (!len && !us) {
            break;
        }
        argv[argc] = malloc(len + 1);
        if (!argv[argc]) {
            abort();
        }
        memcpy(argv[argc], data + start, len);
        argv[argc][len] = '\0';
        argc++;
    }
    return argc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t tlen = nul ? (size_t)(nul - data) : size;
    const uint8_t *masks = nul ? nul + 1 : NULL;
    size_t nmask = nul ? size - tlen - 1 : 0;
    char *argv[MAX_TOKENS + 2];
    model_srv_t models[MAX_TOKENS];
    memsess_server_t srvs[MAX_TOKENS];
    memsess_pool_t *pool = NULL;
    const char *err;
    int argc, i, j, all_ok = 1, dup = 0;
    uint32_t rng = 2166136261u;
    apr_pool_t *p;

    if (apr_pool_create(&p, root) != APR_SUCCESS) {
        abort();
    }
    for (i = 0; (size_t)i < size; i++) {
        rng = (rng ^ data[i]) * 16777619u;
    }
    argc = split(data, tlen, argv);

    /* Each token alone, against the model; and as a time. */
    for (i = 0; i < argc; i++) {
        int want = model_parse(argv[i], &models[i]);

        check_time(argv[i]);
        err = memsess_server_parse(p, argv[i], &srvs[i]);
        if ((err == NULL) != want) {
            fail("\"%s\": %s but the model %s it", argv[i],
                 err ? err : "accepted", want ? "accepts" : "refuses");
        }
        if (err) {
            all_ok = 0;
            if (!*err) {
                fail("\"%s\": empty error message", argv[i]);
            }
            continue;
        }
        check_server(p, argv[i], &srvs[i]);
        if (strcmp(srvs[i].addr, models[i].addr)
            || strcmp(srvs[i].host, models[i].host)
            || srvs[i].port != models[i].port
            || srvs[i].weight != models[i].weight
            || srvs[i].ipv6 != models[i].ipv6) {
            fail("\"%s\": parsed as %s (host \"%s\" weight %d ipv6 %d), "
                 "the model says %s (host \"%s\" weight %ld ipv6 %d)",
                 argv[i], srvs[i].addr, srvs[i].host, srvs[i].weight,
                 srvs[i].ipv6, models[i].addr, models[i].host,
                 models[i].weight, models[i].ipv6);
        }
    }
    for (i = 0; i < argc && all_ok; i++) {
        for (j = 0; j < i; j++) {
            dup |= !strcmp(srvs[i].addr, srvs[j].addr);
        }
    }

    /* The whole list. */
    err = memsess_pool_parse(p, argc, argv, &pool);
    if ((err == NULL) != (argc > 0 && all_ok && !dup)) {
        fail("pool of %d tokens: %s, expected %s", argc,
             err ? err : "accepted",
             argc == 0 ? "an error (no server)"
             : !all_ok ? "an error (bad token)"
             : dup ? "an error (duplicate)" : "success");
    }
    check_line(p, argc, argv, err, pool);

    /* The same list over two MemsessServers lines: the second appends to
     * the pool of the first, with the same verdict and the same servers. */
    if (argc >= 2) {
        memsess_pool_t *two = NULL;
        int k = 1 + (int)(rng % (uint32_t)(argc - 1));
        const char *e = memsess_pool_parse(p, k, argv, &two);

        if (!e) {
            e = memsess_pool_parse(p, argc - k, argv + k, &two);
        }
        if ((e == NULL) != (err == NULL)) {
            fail("%d tokens as %d + %d on two lines: %s; on one: %s", argc,
                 k, argc - k, e ? e : "accepted", err ? err : "accepted");
        }
        for (i = 0; !e && i < argc; i++) {
            const memsess_server_t *a =
                &APR_ARRAY_IDX(pool->servers, i, memsess_server_t);
            const memsess_server_t *b =
                &APR_ARRAY_IDX(two->servers, i, memsess_server_t);

            if (two->servers->nelts != argc || strcmp(a->addr, b->addr)
                || a->weight != b->weight) {
                fail("%d tokens as %d + %d on two lines: server %d is %s, "
                     "on one line %s", argc, k, argc - k, i, b->addr,
                     a->addr);
            }
        }
    }
    if (err) {
        goto done;
    }
    if (pool->servers->nelts != argc) {
        fail("pool of %d tokens holds %d servers", argc,
             pool->servers->nelts);
    }
    for (i = 0; i < argc; i++) {
        const memsess_server_t *s =
            &APR_ARRAY_IDX(pool->servers, i, memsess_server_t);

        if (strcmp(s->addr, srvs[i].addr) || s->weight != srvs[i].weight
            || s->slot != -1) {
            fail("pool server %d is %s, alone it parses as %s", i, s->addr,
                 srvs[i].addr);
        }
    }

    /* A server already listed, written as its addr, is refused. */
    if (argc < MAX_TOKENS + 1) {
        memsess_pool_t *again = NULL;

        i = (int)(rng % (uint32_t)argc);
        argv[argc] = (char *)srvs[i].addr;
        if (!memsess_pool_parse(p, argc + 1, argv, &again)) {
            fail("pool accepts %s twice", srvs[i].addr);
        }
    }

    /* save_paths: all live, none live, each alone, masks from the input
     * and from a generator seeded with it, in both formats. */
    {
        int n = argc, m, f;
        unsigned char *mask = apr_pcalloc(p, (apr_size_t)n);
        const char *joined = "";

        for (i = 0; i < n; i++) {
            joined = apr_pstrcat(p, joined, i ? "," : "", srvs[i].addr,
                                 srvs[i].weight
                                 ? apr_psprintf(p, ":%d", srvs[i].weight)
                                 : "", NULL);
        }
        {
            apr_size_t len = memsess_path_build(NULL, 0, pool, NULL,
                                                MEMSESS_FORMAT_MEMCACHED,
                                                MEMSESS_FAILOVER_DROP);
            char *all = malloc(len + 1);

            memsess_path_build(all, len + 1, pool, NULL,
                               MEMSESS_FORMAT_MEMCACHED,
                               MEMSESS_FAILOVER_DROP);
            if (strcmp(all, joined)) {
                fail("full path \"%s\", the addrs joined \"%s\"", all,
                     joined);
            }
            free(all);
        }

        for (f = 0; f < 4; f++) {
            memsess_format_e format = f & 1 ? MEMSESS_FORMAT_MEMCACHE
                                            : MEMSESS_FORMAT_MEMCACHED;
            memsess_failover_e failover = f & 2 ? MEMSESS_FAILOVER_SUCCESSOR
                                                : MEMSESS_FAILOVER_DROP;

            check_path(p, pool, NULL, format, failover, &rng);
            memset(mask, 0, (size_t)n);
            check_path(p, pool, mask, format, failover, &rng);
            for (m = 0; m < MAX_MASKS; m++) {
                for (i = 0; i < n; i++) {
                    if (m < 2 && nmask) {
                        size_t bit = (size_t)(m * n + i);

                        mask[i] = (masks[(bit / 8) % nmask] >> (bit % 8)) & 1;
                    }
                    else if (m < 4 && n) {
                        mask[i] = (i == (m + (int)rng) % n);
                    }
                    else {
                        rng = rng * 1103515245u + 12345u;
                        mask[i] = (rng >> 16) & 1;
                    }
                }
                check_path(p, pool, mask, format, failover, &rng);
            }
        }
    }

done:
    for (i = 0; i < argc; i++) {
        free(argv[i]);
    }
    apr_pool_destroy(p);
    return 0;
}
