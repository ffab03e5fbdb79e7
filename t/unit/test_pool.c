/* Unit tests of memsess_pool.c: the MemsessServers parser and the
 * save_path builder. */
#include "apr_general.h"
#include "apr_strings.h"
#include "apr_lib.h"

#include "memsess_pool.h"
#include "tap.h"

static apr_pool_t *p;

/* Parses a space-separated list; returns the error or NULL. */
static const char *parse(const char *list, memsess_pool_t **pool)
{
    *pool = NULL;
    char *copy = apr_pstrdup(p, list), *last, *tok;
    char *argv[64];
    int argc = 0;

    for (tok = apr_strtok(copy, " ", &last); tok && argc < 64;
         tok = apr_strtok(NULL, " ", &last)) {
        argv[argc++] = tok;
    }
    return memsess_pool_parse(p, argc, argv, pool);
}

static const char *path_with(const char *list, const unsigned char *live,
                             memsess_format_e format,
                             memsess_failover_e failover)
{
    memsess_pool_t *pool = NULL;
    const char *err = parse(list, &pool);
    apr_size_t len;
    char *buf;

    if (err) {
        return err;
    }
    len = memsess_path_build(NULL, 0, pool, live, format, failover);
    buf = apr_palloc(p, len + 1);
    memsess_path_build(buf, len + 1, pool, live, format, failover);
    return buf;
}

static const char *path_of(const char *list, const unsigned char *live,
                           memsess_format_e format)
{
    return path_with(list, live, format, MEMSESS_FAILOVER_DROP);
}

static void accepts(const char *token, const char *host, int port,
                    int weight, const char *addr)
{
    memsess_server_t srv;
    const char *err = memsess_server_parse(p, token, &srv);

    ok(!err, "accepts %s%s%s", token, err ? ": " : "", err ? err : "");
    if (!err) {
        is_str(srv.host, host, "%s: host", token);
        ok(srv.port == port, "%s: port %d (got %d)", token, port, srv.port);
        ok(srv.weight == weight, "%s: weight %d (got %d)", token, weight,
           srv.weight);
        is_str(srv.addr, addr, "%s: address", token);
    }
}

static void refuses(const char *token, const char *words)
{
    memsess_server_t srv;
    const char *err = memsess_server_parse(p, token, &srv);
    char *quoted = apr_psprintf(p, "\"%s\"", token);

    ok(err && strstr(err, words) && strstr(err, quoted),
       "refuses %s with '%s' naming the token (%s)", token, words,
       err ? err : "accepted");
}

/* Like httpd's ap_getword_conf: a word, or a quoted string that may be
 * empty, and the blanks after it. */
static char *getword(apr_pool_t *pool, const char **line)
{
    const char *s = *line, *end;
    char *w;

    while (apr_isspace(*s)) {
        s++;
    }
    if (*s == '"') {
        end = strchr(s + 1, '"');
        end = end ? end : s + strlen(s);
        w = apr_pstrmemdup(pool, s + 1, end - s - 1);
        s = *end ? end + 1 : end;
    }
    else {
        for (end = s; *end && !apr_isspace(*end); end++) {
        }
        w = apr_pstrmemdup(pool, s, end - s);
        s = end;
    }
    while (apr_isspace(*s)) {
        s++;
    }
    *line = s;
    return w;
}

/* memsess_time_parse: the microseconds, or -1 when refused. */
static apr_interval_time_t time_of(const char *arg)
{
    apr_interval_time_t t = -2;

    return memsess_time_parse(arg, &t) == APR_SUCCESS ? t : -1;
}

static void times(void)
{
    static const char *bad[] = {
        "", "s", "ms", "-1s", "+1s", " 1s", "1s ", "1 s", "1sfoo", "2seconds",
        "1hour", "5min", "1msx", "1S", "1MS", "1us", "1d", "1.5s", "0x10",
        "1e3", "1m s", "1hh", "1sm", NULL
    };
    int i;

    ok(time_of("2") == apr_time_from_sec(2), "a bare number is seconds");
    ok(time_of("500ms") == apr_time_from_msec(500), "500ms");
    ok(time_of("3s") == apr_time_from_sec(3), "3s");
    ok(time_of("2m") == apr_time_from_sec(120), "2m is minutes");
    ok(time_of("1h") == apr_time_from_sec(3600), "1h");
    ok(time_of("0") == 0 && time_of("0ms") == 0, "0 parses (bounds are the "
       "directive's)");
    ok(time_of("0100ms") == apr_time_from_msec(100), "leading zeros");
    for (i = 0; bad[i]; i++) {
        ok(time_of(bad[i]) == -1, "refuses \"%s\"", bad[i]);
    }
    /* too long for 64 bits: saturates, and every bound refuses it */
    ok(time_of("9223372036854s") == APR_TIME_C(9223372036854000000),
       "9223372036854s (issue 15) is read exactly: the bound refuses it");
    ok(time_of("9223372036855s") == APR_INT64_MAX,
       "9223372036855s saturates (%" APR_TIME_T_FMT ")",
       time_of("9223372036855s"));
    ok(time_of("99999999999999999999999999h") == APR_INT64_MAX,
       "any number of digits saturates");
    ok(time_of("2562047789h") == APR_INT64_MAX,
       "a product beyond 64 bits saturates");
    ok(time_of("2562047788h") == APR_TIME_C(2562047788) * 3600 * 1000000,
       "the largest hours that fit do not");
    ok(time_of("9223372036854775807ms") == APR_INT64_MAX, "so do ms");
}

int main(void)
{
    memsess_pool_t *pool;
    const char *err;
    unsigned char live[4];
    char small[8];
    apr_size_t need;

    apr_initialize();
    apr_pool_create(&p, NULL);

    accepts("cache1", "cache1", 11211, 0, "cache1:11211");
    accepts("cache1:11212", "cache1", 11212, 0, "cache1:11212");
    accepts("cache1:11212:3", "cache1", 11212, 3, "cache1:11212");
    accepts("Cache-1.Example.COM:1", "cache-1.example.com", 1, 0,
            "cache-1.example.com:1");
    accepts("127.0.0.1:65535", "127.0.0.1", 65535, 0, "127.0.0.1:65535");
    accepts("[::1]:11211", "::1", 11211, 0, "[::1]:11211");
    accepts("[::1]", "::1", 11211, 0, "[::1]:11211");
    accepts("[0:0::1]:5:2", "::1", 5, 2, "[::1]:5");
    accepts("[2001:DB8::A]:11211", "2001:db8::a", 11211, 0,
            "[2001:db8::a]:11211");

    refuses("cache1:99999", "invalid port");
    refuses("cache1:0", "invalid port");
    refuses("cache1:65536", "invalid port");
    refuses("cache1:abc", "invalid port");
    refuses("cache1:", "invalid port");
    refuses("cache1:-1", "invalid port");
    refuses("cache1:11211:0", "invalid weight");
    refuses("cache1:11211:x", "invalid weight");
    refuses("cache1:11211:-2", "invalid weight");
    refuses("cache1:11211:", "invalid weight");
    refuses("[::1:11211", "invalid IPv6");
    refuses("[]:11211", "invalid IPv6");
    refuses("[::1]x:11211", "invalid IPv6");
    refuses("[not-v6]:11211", "invalid IPv6");
    refuses("[fe80::1%eth0]:11211", "zone index \"%eth0\"");
    refuses("::1:11211", "[addr]:port");
    refuses("bad host:1", "invalid host");
    refuses("", "empty word");
    refuses(":11211", "invalid host");
    refuses("a/b:1", "invalid host");
    refuses(".:1", "invalid host");
    refuses("-:1", "invalid host");
    refuses("a..b:1", "invalid host");
    refuses("localhost.:1", "invalid host");
    refuses("-cache:1", "invalid host");
    refuses("cache-.example:1", "invalid host");
    refuses("127.1:11211", "a.b.c.d");
    refuses("2130706433:11211", "a.b.c.d");
    refuses("0177.0.0.1:11211", "a.b.c.d");
    refuses("0x7f.0.0.1:11211", "a.b.c.d");
    accepts("memcache_1.internal:11211", "memcache_1.internal", 11211, 0,
            "memcache_1.internal:11211");

    /* issue 15: digits and dots are a dotted quad or nothing */
    refuses("256.0.0.1:11211", "invalid IPv4");
    refuses("999.1.1.1", "invalid IPv4");
    refuses("1.2.3.4.5", "invalid IPv4");
    refuses("1.2.3.", "invalid IPv4");
    refuses("01.2.3.4", "invalid IPv4");
    refuses("12345", "invalid IPv4");
    accepts("255.255.255.255:1", "255.255.255.255", 1, 0,
            "255.255.255.255:1");
    accepts("1.2.3.4a", "1.2.3.4a", 11211, 0, "1.2.3.4a:11211");
    /* an IPv4-mapped IPv6 address is its IPv4 address */
    accepts("[::ffff:127.0.0.1]:11211", "127.0.0.1", 11211, 0,
            "127.0.0.1:11211");
    accepts("[::FFFF:7f00:1]:5:2", "127.0.0.1", 5, 2, "127.0.0.1:5");
    accepts("[::127.0.0.1]", "::127.0.0.1", 11211, 0, "[::127.0.0.1]:11211");
    /* an IPv6 address without brackets gets the hint */
    refuses("::1", "[addr]:port");
    refuses("fe80::1", "[addr]:port");
    refuses("2001:db8::7:11211", "[addr]:port");
    refuses("1:2:3:4", "[addr]:port");
    accepts("10.0.0.255", "10.0.0.255", 11211, 0, "10.0.0.255:11211");

    err = parse("a:1 b:2 a:1", &pool);
    ok(err && strstr(err, "listed twice") && strstr(err, "\"a:1\""),
       "refuses the same server twice (%s)", err ? err : "accepted");
    err = parse("a a:11211", &pool);
    ok(err && strstr(err, "listed twice"),
       "a and a:11211 are the same server (default port): %s",
       err ? err : "accepted");
    err = parse("a:1 a:2 b:1", &pool);
    ok(!err, "the same host on other ports is another server");
    {
        char *more[2] = { "c:1", "d:1" }, *again[1] = { "b:1" };

        ok(!memsess_pool_parse(p, 2, more, &pool)
           && pool->servers->nelts == 5
           && !strcmp(APR_ARRAY_IDX(pool->servers, 4, memsess_server_t).addr,
                      "d:1"), "a second list appends, in order");
        err = memsess_pool_parse(p, 1, again, &pool);
        ok(err && strstr(err, "listed twice"),
           "a server of an earlier line is a duplicate too");
    }
    err = parse("127.0.0.1:11211 [::ffff:127.0.0.1]:11211", &pool);
    ok(err && strstr(err, "listed twice"),
       "an IPv4-mapped address is the same server as its IPv4 address: %s",
       err ? err : "accepted");
    err = parse("a A:11211", &pool);
    ok(err && strstr(err, "listed twice"), "host names compare without case");
    pool = NULL;
    err = memsess_pool_parse(p, 0, NULL, &pool);
    ok(err && strstr(err, "at least one"), "refuses an empty list");

    /* the whole line, httpd's way: an empty word is refused, not the end
     * of the list (issue 15) */
    pool = NULL;
    err = memsess_pool_parse_line(p, "a:1 \"\" b:2 bad!!host", getword,
                                  &pool);
    ok(err && strstr(err, "empty word") && !pool,
       "an empty word in the middle is refused: %s", err ? err : "accepted");
    pool = NULL;
    err = memsess_pool_parse_line(p, "a:1 \"\"", getword, &pool);
    ok(err && strstr(err, "empty word"), "... at the end too: %s",
       err ? err : "accepted");
    pool = NULL;
    err = memsess_pool_parse_line(p, "a:1 \"b:2\" c:3 bad!!host", getword,
                                  &pool);
    ok(err && strstr(err, "bad!!host"),
       "every word is read, to the last: %s", err ? err : "accepted");
    pool = NULL;
    err = memsess_pool_parse_line(p, "  a:1\tb:2  ", getword, &pool);
    ok(!err && pool && pool->servers->nelts == 2,
       "blanks around the words are no words: %s", err ? err : "2 servers");
    pool = NULL;
    err = memsess_pool_parse_line(p, "", getword, &pool);
    ok(err && strstr(err, "at least one"), "an empty line is refused");

    is_str(path_of("a:1 b:2:5 [::1]:3", NULL, MEMSESS_FORMAT_MEMCACHED),
           "a:1,b:2:5,[::1]:3", "memcached path keeps config order, weights");
    is_str(path_of("a:1 b:2:5 [::1]:3", NULL, MEMSESS_FORMAT_MEMCACHE),
           "tcp://a:1, tcp://b:2?weight=5, tcp://[::1]:3",
           "memcache path: tcp:// URLs with ?weight=");
    live[0] = 1; live[1] = 0; live[2] = 1;
    is_str(path_of("a:1 b:2 c:3", live, MEMSESS_FORMAT_MEMCACHED), "a:1,c:3",
           "only live servers, in config order");
    live[0] = 0; live[1] = 1; live[2] = 0;
    is_str(path_of("a:1 b:2 c:3", live, MEMSESS_FORMAT_MEMCACHED), "b:2",
           "a single live server has no separator");
    live[0] = 0; live[1] = 0; live[2] = 0;
    is_str(path_of("a:1 b:2 c:3", live, MEMSESS_FORMAT_MEMCACHED), "",
           "no live server: empty");

    /* successor: a down server's place goes to the next live one */
    live[0] = 1; live[1] = 0; live[2] = 1;
    is_str(path_with("a:1 b:2 c:3", live, MEMSESS_FORMAT_MEMCACHED,
                     MEMSESS_FAILOVER_SUCCESSOR), "a:1,c:3,c:3",
           "successor: b's place goes to c, positions kept");
    live[0] = 1; live[1] = 1; live[2] = 0;
    is_str(path_with("a:1 b:2:4 c:3", live, MEMSESS_FORMAT_MEMCACHED,
                     MEMSESS_FAILOVER_SUCCESSOR), "a:1,b:2:4,a:1",
           "successor wraps around to the first");
    live[0] = 0; live[1] = 0; live[2] = 1;
    is_str(path_with("a:1 b:2 c:3", live, MEMSESS_FORMAT_MEMCACHED,
                     MEMSESS_FAILOVER_SUCCESSOR), "c:3,c:3,c:3",
           "two down in a row: both go to the next live one");
    live[0] = 0; live[1] = 0; live[2] = 0;
    is_str(path_with("a:1 b:2 c:3", live, MEMSESS_FORMAT_MEMCACHED,
                     MEMSESS_FAILOVER_SUCCESSOR), "",
           "successor with none live: empty (the table publishes all)");
    live[0] = 1; live[1] = 0; live[2] = 1;
    is_str(path_with("a:1 b:2 c:3", live, MEMSESS_FORMAT_MEMCACHED,
                     MEMSESS_FAILOVER_DROP), "a:1,c:3", "drop leaves it out");
    parse("a:1 bbbbbbbb:2:10 c:3", &pool);
    ok(memsess_path_max(pool, MEMSESS_FORMAT_MEMCACHED,
                        MEMSESS_FAILOVER_SUCCESSOR) == 3 * 13 + 2,
       "successor: room for the longest entry in every place");
    ok(memsess_path_max(pool, MEMSESS_FORMAT_MEMCACHE,
                        MEMSESS_FAILOVER_SUCCESSOR) == 3 * 26 + 4,
       "successor, memcache format: tcp:// and ?weight= counted");
    ok(memsess_path_max(pool, MEMSESS_FORMAT_MEMCACHED, MEMSESS_FAILOVER_DROP)
       == strlen("a:1,bbbbbbbb:2:10,c:3"), "drop: the full list");
    live[0] = 0; live[1] = 1; live[2] = 0;
    ok(strlen(path_with("a:1 bbbbbbbb:2:10 c:3", live,
                        MEMSESS_FORMAT_MEMCACHED, MEMSESS_FAILOVER_SUCCESSOR))
       == 3 * 13 + 2, "which the worst case fills exactly");

    parse("aaaa:1 bbbb:2", &pool);
    need = memsess_path_build(small, sizeof(small), pool, NULL,
                              MEMSESS_FORMAT_MEMCACHED, MEMSESS_FAILOVER_DROP);
    ok(need == strlen("aaaa:1,bbbb:2"), "reports the length it needs");
    is_str(small, "aaaa:1,", "cuts to the buffer, NUL-terminated");
    need = memsess_path_build(NULL, 0, pool, NULL, MEMSESS_FORMAT_MEMCACHE,
                              MEMSESS_FAILOVER_DROP);
    ok(need == strlen("tcp://aaaa:1, tcp://bbbb:2"),
       "measures without a buffer");

    times();

    apr_pool_destroy(p);
    apr_terminate();
    return done_testing();
}
