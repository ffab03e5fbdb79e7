/* Unit tests of memsess_pool.c: the MemsessServers parser and the
 * save_path builder. */
#include "apr_general.h"
#include "apr_strings.h"

#include "mod_memsess.h"
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
    refuses("[fe80::1%eth0]:11211", "invalid IPv6");
    refuses("::1:11211", "[addr]:port");
    refuses("bad host:1", "invalid host");
    refuses("", "invalid host");
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
    err = parse("a A:11211", &pool);
    ok(err && strstr(err, "listed twice"), "host names compare without case");
    pool = NULL;
    err = memsess_pool_parse(p, 0, NULL, &pool);
    ok(err && strstr(err, "at least one"), "refuses an empty list");

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

    apr_pool_destroy(p);
    apr_terminate();
    return done_testing();
}
