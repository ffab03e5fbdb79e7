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

/* Pools: parsing "host[:port[:weight]]" and building a save_path; and
 * the other words of the configuration a hostile or careless administrator
 * may get wrong: the list itself and times.  APR only, so the unit tests
 * and the fuzzer drive it without a server. */

#include <string.h>
#include <arpa/inet.h>

#include "apr_strings.h"
#include "apr_lib.h"
#include "apr_network_io.h"

#include "memsess_pool.h"

/* Parses a decimal number of at most 9 digits; -1 when s is not one. */
static long parse_number(const char *s, apr_size_t len)
{
    long n = 0;
    apr_size_t i;

    if (len == 0 || len > 9) {
        return -1;
    }
    for (i = 0; i < len; i++) {
        if (!apr_isdigit(s[i])) {
            return -1;
        }
        n = n * 10 + (s[i] - '0');
    }
    return n;
}

/* A host name, label by label (letters, digits, '-' and '_', 1 to 63 of
 * them, no '-' at either end), or an IPv4 address as a plain dotted quad.
 * Returns NULL, or what is wrong. */
static const char *check_hostname(const char *host)
{
    const char *label = host, *c;
    struct in_addr ip4;

    if (!*host || strlen(host) > 253) {
        return "invalid host";
    }
    /* only digits and dots: an address, never a name (256.0.0.1 is not
     * a host called that) */
    if (strspn(host, "0123456789.") == strlen(host)
        && strpbrk(host, "0123456789")) {
        return inet_pton(AF_INET, host, &ip4) == 1
               ? NULL : "invalid IPv4 address (a.b.c.d, each 0 to 255)";
    }
    for (c = host; ; c++) {
        if (*c == '.' || !*c) {
            apr_size_t len = (apr_size_t)(c - label);

            if (len < 1 || len > 63 || label[0] == '-' || c[-1] == '-') {
                return "invalid host";
            }
            if (!*c) {
                break;
            }
            label = c + 1;
        }
        else if (!apr_isalnum(*c) && *c != '-' && *c != '_') {
            return "invalid host";
        }
    }
    /* 127.1, 2130706433 or 0177.0.0.1 reach 127.0.0.1 too, and would be
     * probed and hashed as another server */
    if (inet_aton(host, &ip4) && inet_pton(AF_INET, host, &ip4) != 1) {
        return "IPv4 address must be written as a.b.c.d";
    }
    return NULL;
}

static int count_colons(const char *s)
{
    int n = 0;

    for (; *s; s++) {
        n += *s == ':';
    }
    return n;
}

const char *memsess_server_parse(apr_pool_t *p, const char *token,
                                 memsess_server_t *srv)
{
    const char *host_end, *rest, *colon;
    const char *port_str = NULL, *weight_str = NULL;
    apr_size_t port_len = 0, weight_len = 0;
    char *host, *addr, *scope = NULL;
    apr_port_t parsed_port = 0;
    long port = MEMSESS_DEFAULT_PORT, weight = 0;

    memset(srv, 0, sizeof(*srv));
    srv->slot = -1;

    if (!*token) {
        return "an empty word (\"\") is not a server";
    }

    if (token[0] != '[' && (strstr(token, "::")
                            || count_colons(token) >= 3)) {
        /* ::1, fe80::1, ::1:11211: the colons of an address cannot be
         * told from the port's */
        return apr_psprintf(p, "IPv6 address must be written as "
                            "[addr]:port in \"%s\"", token);
    }
    if (token[0] == '[') {
        host_end = strchr(token, ']');
        if (!host_end || host_end == token + 1) {
            return apr_psprintf(p, "invalid IPv6 address in \"%s\"", token);
        }
        host = apr_pstrmemdup(p, token + 1, host_end - token - 1);
        rest = host_end + 1;
        if (*rest && *rest != ':') {
            return apr_psprintf(p, "invalid IPv6 address in \"%s\"", token);
        }
        srv->ipv6 = 1;
    }
    else {
        host_end = strchr(token, ':');
        if (!host_end) {
            host_end = token + strlen(token);
        }
        host = apr_pstrmemdup(p, token, host_end - token);
        rest = host_end;
    }

    if (*rest == ':') {
        port_str = rest + 1;
        colon = strchr(port_str, ':');
        if (colon) {
            port_len = colon - port_str;
            weight_str = colon + 1;
            weight_len = strlen(weight_str);
        }
        else {
            port_len = strlen(port_str);
        }
        port = parse_number(port_str, port_len);
        if (port < 1 || port > 65535) {
            return apr_psprintf(p, "invalid port in \"%s\"", token);
        }
        if (weight_str) {
            weight = parse_number(weight_str, weight_len);
            if (weight < 1) {
                return apr_psprintf(p, "invalid weight in \"%s\" "
                                    "(a positive integer)", token);
            }
        }
    }

    if (srv->ipv6) {
        struct in6_addr ip6;
        char canon[64];

        if (strchr(host, '%')) {
            /* refused on purpose: a zone names an interface of this
             * machine, and the address is not passed on to PHP with it */
            return apr_psprintf(p, "IPv6 zone index \"%s\" in \"%s\" is "
                                "not supported (use a global or unique "
                                "local address)", strchr(host, '%'), token);
        }
        if (inet_pton(AF_INET6, host, &ip6) != 1
            || !inet_ntop(AF_INET6, &ip6, canon, sizeof(canon))) {
            return apr_psprintf(p, "invalid IPv6 address in \"%s\"", token);
        }
        if (IN6_IS_ADDR_V4MAPPED(&ip6)) {
            /* ::ffff:a.b.c.d is a.b.c.d: one server, one name */
            inet_ntop(AF_INET, &ip6.s6_addr[12], canon, sizeof(canon));
            srv->ipv6 = 0;
        }
        host = apr_pstrdup(p, canon);
        addr = apr_psprintf(p, srv->ipv6 ? "[%s]:%ld" : "%s:%ld", host,
                            port);
    }
    else {
        const char *bad = check_hostname(host);

        if (bad) {
            return apr_psprintf(p, "%s in \"%s\"", bad, token);
        }
        for (scope = host; *scope; scope++) {
            *scope = apr_tolower(*scope);
        }
        scope = NULL;
        addr = apr_psprintf(p, "%s:%ld", host, port);
    }

    /* APR has the last word on what a host and port are. */
    if (apr_parse_addr_port(&host, &scope, &parsed_port, addr, p)
        != APR_SUCCESS || !host || scope || parsed_port != port) {
        return apr_psprintf(p, "invalid address in \"%s\"", token);
    }

    srv->host = host;
    srv->port = (apr_port_t)port;
    srv->weight = (int)weight;
    srv->addr = addr;
    return NULL;
}

const char *memsess_pool_parse_line(apr_pool_t *p, const char *line,
                                    memsess_getword_f getword,
                                    memsess_pool_t **pool)
{
    apr_array_header_t *words = apr_array_make(p, 16, sizeof(char *));

    /* every word to the end of the line: an empty one ("") is a word too,
     * and refused, not the end of the list */
    for (;;) {
        const char *before;

        while (apr_isspace(*line)) {
            line++;
        }
        if (!*line) {
            break;
        }
        before = line;
        APR_ARRAY_PUSH(words, char *) = getword(p, &line);
        if (line == before) {
            return apr_psprintf(p, "cannot split \"%s\" into words", line);
        }
    }
    return memsess_pool_parse(p, words->nelts, (char *const *)words->elts,
                              pool);
}

const char *memsess_pool_parse(apr_pool_t *p, int argc, char *const argv[],
                               memsess_pool_t **pool)
{
    memsess_pool_t *pl;
    int i, j;

    if (argc < 1) {
        return "needs at least one server (host[:port[:weight]])";
    }
    pl = *pool;
    if (!pl) {
        pl = apr_pcalloc(p, sizeof(*pl));
        pl->servers = apr_array_make(p, argc, sizeof(memsess_server_t));
    }
    for (i = 0; i < argc; i++) {
        memsess_server_t srv;
        const char *err = memsess_server_parse(p, argv[i], &srv);

        if (err) {
            return err;
        }
        for (j = 0; j < pl->servers->nelts; j++) {
            const memsess_server_t *seen =
                &APR_ARRAY_IDX(pl->servers, j, memsess_server_t);
            if (!strcmp(seen->addr, srv.addr)) {
                return apr_psprintf(p, "\"%s\" is listed twice (as %s)",
                                    argv[i], srv.addr);
            }
        }
        APR_ARRAY_PUSH(pl->servers, memsess_server_t) = srv;
    }
    *pool = pl;
    return NULL;
}

apr_status_t memsess_time_parse(const char *arg, apr_interval_time_t *t)
{
    static const struct {
        const char  *unit;
        apr_int64_t  usec;
    } units[] = {
        { "",   APR_USEC_PER_SEC },    /* a bare number is seconds */
        { "ms", APR_TIME_C(1000) },
        { "s",  APR_USEC_PER_SEC },
        { "m",  APR_TIME_C(60) * APR_USEC_PER_SEC },
        { "h",  APR_TIME_C(3600) * APR_USEC_PER_SEC },
    };
    apr_int64_t n = 0;
    int huge = 0;
    apr_size_t i;

    if (!apr_isdigit(*arg)) {
        return APR_EINVAL;
    }
    for (; apr_isdigit(*arg); arg++) {
        int d = *arg - '0';

        if (n > (APR_INT64_MAX - d) / 10) {
            huge = 1;
        }
        else {
            n = n * 10 + d;
        }
    }
    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (!strcmp(arg, units[i].unit)) {
            *t = huge || n > APR_INT64_MAX / units[i].usec
                 ? APR_INT64_MAX : n * units[i].usec;
            return APR_SUCCESS;
        }
    }
    return APR_EINVAL;
}

/* Appends s to buf as far as it fits; *need counts everything. */
static void append(char *buf, apr_size_t size, apr_size_t *need,
                   const char *s)
{
    apr_size_t len = strlen(s);

    if (*need < size) {
        apr_size_t room = size - *need - 1;
        memcpy(buf + *need, s, len < room ? len : room);
    }
    *need += len;
}

/* The entry of one server: "h:p[:w]" or "tcp://h:p[?weight=w]". */
static void append_server(char *buf, apr_size_t size, apr_size_t *need,
                          const memsess_server_t *srv,
                          memsess_format_e format)
{
    char weight[32];

    if (format == MEMSESS_FORMAT_MEMCACHE) {
        append(buf, size, need, "tcp://");
    }
    append(buf, size, need, srv->addr);
    if (srv->weight) {
        apr_snprintf(weight, sizeof(weight),
                     format == MEMSESS_FORMAT_MEMCACHE ? "?weight=%d" : ":%d",
                     srv->weight);
        append(buf, size, need, weight);
    }
}

apr_size_t memsess_path_build(char *buf, apr_size_t size,
                              const memsess_pool_t *pool,
                              const unsigned char *live,
                              memsess_format_e format,
                              memsess_failover_e failover)
{
    int n = pool->servers->nelts, i, j, first = 1;
    apr_size_t need = 0;

    for (i = 0; i < n; i++) {
        j = i;
        if (live && !live[i]) {
            if (failover != MEMSESS_FAILOVER_SUCCESSOR) {
                continue;
            }
            /* the next live one holds this server's first replica */
            for (j = (i + 1) % n; j != i && !live[j]; j = (j + 1) % n) {
            }
            if (j == i) {
                continue;   /* none is live: nothing to stand in */
            }
        }
        if (!first) {
            append(buf, size, &need,
                   format == MEMSESS_FORMAT_MEMCACHE ? ", " : ",");
        }
        first = 0;
        append_server(buf, size, &need,
                      &APR_ARRAY_IDX(pool->servers, j, memsess_server_t),
                      format);
    }
    if (size) {
        buf[need < size ? need : size - 1] = '\0';
    }
    return need;
}

apr_size_t memsess_path_max(const memsess_pool_t *pool,
                            memsess_format_e format,
                            memsess_failover_e failover)
{
    int n = pool->servers->nelts, i;
    apr_size_t longest = 0;

    if (failover != MEMSESS_FAILOVER_SUCCESSOR || !n) {
        /* a subset of the full list is never longer than the list */
        return memsess_path_build(NULL, 0, pool, NULL, format, failover);
    }
    /* every place may hold the longest entry */
    for (i = 0; i < n; i++) {
        apr_size_t need = 0;

        append_server(NULL, 0, &need,
                      &APR_ARRAY_IDX(pool->servers, i, memsess_server_t),
                      format);
        if (need > longest) {
            longest = need;
        }
    }
    return n * longest + (n - 1) * (format == MEMSESS_FORMAT_MEMCACHE ? 2 : 1);
}

/* A user who writes only MemsessServers loses no session when a server
 * fails: every session is kept on two servers ... */
int memsess_default_replicas(int replicas, int nservers)
{
    if (replicas >= 0) {
        return replicas;
    }
    return nservers >= 2 ? 1 : 0;
}

/* ... and the down server's place goes to the next live one, which holds
 * its replicas (php-memcached only: pecl-memcache has no replicas). */
memsess_failover_e memsess_default_failover(int failover, int replicas,
                                            memsess_format_e format)
{
    if (failover >= 0) {
        return (memsess_failover_e)failover;
    }
    return replicas > 0 && format == MEMSESS_FORMAT_MEMCACHED
           ? MEMSESS_FAILOVER_SUCCESSOR : MEMSESS_FAILOVER_DROP;
}
