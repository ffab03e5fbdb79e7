/* Unit tests of memsess_verdicts.c: the verdict records Apache instances
 * share through the pool's memcached servers.  Everything read back is
 * untrusted: bad records are refused whole, lapsed and future lines are
 * dropped, and a record is never longer than its bound. */
#include "apr_general.h"
#include "apr_strings.h"

#include "memsess_clocks.h"
#include "memsess_verdicts.h"
#include "tap.h"

#define NOW 1800000000

static const char *parse(const char *text, memsess_verdicts_t *vs)
{
    return memsess_verdicts_parse(text, strlen(text), NOW, vs);
}

static void refused(const char *text, const char *why)
{
    memsess_verdicts_t vs;
    const char *err = parse(text, &vs);

    ok(err != NULL && vs.n == 0, "refused: %s (%s)", why,
       err ? err : "accepted");
}

int main(void)
{
    memsess_verdicts_t vs, back;
    char buf[MEMSESS_VERDICT_RECORD_MAX], who[MEMSESS_REPORTERS_MAX];
    char key[MEMSESS_VERDICT_KEY_MAX + 1], longaddr[300];
    const char *err;
    apr_size_t len;
    int i;

    apr_initialize();

    /* keys */
    memsess_record_key(key, sizeof(key), "shop", "down", "127.0.0.1:11211");
    is_str(key, "memsess:v1:shop:down:127.0.0.1:11211", "the key of a server");
    memset(longaddr, 'a', sizeof(longaddr) - 1);
    longaddr[sizeof(longaddr) - 1] = '\0';
    len = memsess_record_key(key, sizeof(key), "shop", "down", longaddr);
    ok(len <= MEMSESS_VERDICT_KEY_MAX && !strncmp(key, "memsess:v1:shop:"
       "down:#", 21), "a long address is hashed into the key (%s)", key);

    /* names */
    ok(memsess_instance_name_valid("web1.example:80", MEMSESS_INSTANCE_MAX),
       "web1.example:80 is an instance name");
    ok(memsess_instance_name_valid("[::1]:8080", MEMSESS_INSTANCE_MAX),
       "[::1]:8080 is one");
    ok(!memsess_instance_name_valid("", MEMSESS_INSTANCE_MAX),
       "the empty name is not");
    ok(!memsess_instance_name_valid("web 1", MEMSESS_INSTANCE_MAX),
       "a space is not allowed");
    ok(!memsess_instance_name_valid("web\n1", MEMSESS_INSTANCE_MAX),
       "a newline is not allowed");
    ok(!memsess_instance_name_valid("abcdef", 6), "bounded by maxlen");
    ok(memsess_instance_name_valid("abcde", 6), "maxlen - 1 fits");

    /* a good record */
    err = parse("memsess-verdicts 1\nweb2:80 1800000000 1800000004\n"
                "web3:80 1799999999 1800000003\n", &vs);
    ok(!err && vs.n == 2, "two lines read (%s)", err ? err : "ok");
    is_str(vs.v[0].name, "web2:80", "first instance");
    ok(vs.v[0].reported == NOW && vs.v[0].expires == NOW + 4, "its times");
    err = parse("memsess-verdicts 1\n", &vs);
    ok(!err && vs.n == 0, "a record with no line is empty, not bad");

    /* lapsed and future lines */
    err = parse("memsess-verdicts 1\nold:80 1799999950 1799999959\n"
                "web2:80 1800000000 1800000004\n", &vs);
    ok(!err && vs.n == 1 && !strcmp(vs.v[0].name, "web2:80"),
       "a line lapsed long ago (beyond any skew allowed) is dropped, the "
       "rest kept");
    err = parse("memsess-verdicts 1\nbehind:80 1799999995 1799999997\n",
                &vs);
    ok(!err && vs.n == 1, "a line lapsed by our clock only is kept: its "
       "writer's clock may be behind (memsess_lapse_note judges it)");
    err = parse("memsess-verdicts 1\nfuture:80 1800000100 1800000104\n"
                "web2:80 1800000000 1800000004\n", &vs);
    ok(!err && vs.n == 1 && vs.future == 1,
       "a line reported from the future is dropped and counted");
    err = parse("memsess-verdicts 1\nforever:80 1800000000 2800000000\n",
                &vs);
    ok(!err && vs.n == 0 && vs.future == 1,
       "a line that would hold for years is dropped");
    ok(parse("memsess-verdicts 1\nfar:80 1800000000 1800003600\n", &vs)
       == NULL && vs.n == 1, "an hour ahead is within bounds");
    err = parse("memsess-verdicts 1\nlong:80 1700000000 1800000010\n", &vs);
    ok(!err && vs.n == 0 && vs.future == 1,
       "a line meant to hold for years, written long ago, is dropped");

    /* bad records */
    refused("", "empty");
    refused("garbage", "garbage");
    refused("memsess-verdicts 2\nweb2:80 1800000000 1800000004\n",
            "another version");
    refused("memsess-verdicts 1", "no newline after the header");
    refused("memsess-verdicts x\n", "no version number");
    refused("memsess-verdicts 01\n", "a version with a leading zero");
    refused("memsess-verdicts 1\nweb2:80 01800000000 1800000004\n",
            "a time with a leading zero");
    refused("memsess-verdicts 1\nweb2:80 1800000000 1800000004",
            "a last line without its newline");
    refused("memsess-verdicts 1\nweb2:80 1800000000\n", "a missing time");
    refused("memsess-verdicts 1\nweb2:80 18000000001234 1\n",
            "a number too long");
    refused("memsess-verdicts 1\nweb2:80 -5 1800000004\n", "a negative time");
    refused("memsess-verdicts 1\n 1800000000 1800000004\n", "no name");
    refused("memsess-verdicts 1\nweb<2> 1800000000 1800000004\n",
            "a name with markup");
    refused("memsess-verdicts 1\nweb2:80 1800000004 1800000000\n",
            "expires before it was written");
    refused("memsess-verdicts 1\nweb2:80 1800000000 1800000004 x\n",
            "something after the times");
    {
        char nul[] = "memsess-verdicts 1\nweb\0:80 1800000000 1800000004\n";
        memsess_verdicts_t v2;

        ok(memsess_verdicts_parse(nul, sizeof(nul) - 1, NOW, &v2) != NULL,
           "refused: a NUL inside a name");
    }
    {
        char *big = buf;

        len = apr_snprintf(big, sizeof(buf), "memsess-verdicts 1\n");
        for (i = 0; i < MEMSESS_VERDICTS_MAX + 1; i++) {
            len += apr_snprintf(big + len, sizeof(buf) - len,
                                "w%d:80 1800000000 1800000004\n", i);
        }
        ok(memsess_verdicts_parse(big, len, NOW, &vs) != NULL && vs.n == 0,
           "refused: more lines than a record holds");
    }
    {
        static char huge[MEMSESS_VERDICT_RECORD_MAX + 10];

        memset(huge, 'x', sizeof(huge));
        memcpy(huge, "memsess-verdicts 1\n", 19);
        ok(memsess_verdicts_parse(huge, sizeof(huge), NOW, &vs) != NULL,
           "refused: longer than a record can be");
    }

    /* put, format, parse back */
    parse("memsess-verdicts 1\nweb2:80 1800000000 1800000004\n", &vs);
    ok(memsess_verdicts_put(&vs, "web1:80", 1, NOW, NOW + 4) && vs.n == 2,
       "our line goes in");
    ok(memsess_verdicts_put(&vs, "web1:80", 1, NOW + 1, NOW + 5)
       && vs.n == 2 && vs.v[1].expires == NOW + 5, "refreshed, once");
    len = memsess_verdicts_format(buf, sizeof(buf), &vs);
    is_str(buf, "memsess-verdicts 1\nweb2:80 1800000000 1800000004\n"
           "web1:80 1800000001 1800000005\n", "formatted");
    ok(len == strlen(buf), "its length");
    ok(!memsess_verdicts_parse(buf, len, NOW, &back) && back.n == 2,
       "what we write we read back");
    ok(memsess_verdicts_put(&vs, "web1:80", 0, NOW, 0) && vs.n == 1
       && !strcmp(vs.v[0].name, "web2:80"), "our line comes out");
    ok(!memsess_verdicts_put(&vs, "web1:80", 0, NOW, 0),
       "nothing to take out: no write");

    parse("memsess-verdicts 1\nweb1:80 1800000000 1800000004\n"
          "web2:80 1800000000 1800000004\nweb1:80 1800000000 1800000004\n",
          &vs);
    ok(memsess_verdicts_put(&vs, "web1:80", 0, NOW, 0) && vs.n == 1
       && !strcmp(vs.v[0].name, "web2:80"),
       "a name written twice: every line of ours comes out (found by fuzzing)");
    parse("memsess-verdicts 1\nweb1:80 1800000000 1800000004\n"
          "web1:80 1800000000 1800000004\n", &vs);
    ok(memsess_verdicts_put(&vs, "web1:80", 1, NOW, NOW + 4) && vs.n == 1,
       "... and goes back in once");

    /* a full record makes room */
    vs.n = 0;
    for (i = 0; i < MEMSESS_VERDICTS_MAX; i++) {
        char name[16];

        apr_snprintf(name, sizeof(name), "w%d:80", i);
        memsess_verdicts_put(&vs, name, 1, NOW, NOW + 10 + (i == 7 ? -5 : i));
    }
    ok(vs.n == MEMSESS_VERDICTS_MAX, "a full record");
    memsess_verdicts_put(&vs, "web1:80", 1, NOW, NOW + 4);
    ok(vs.n == MEMSESS_VERDICTS_MAX
       && !strcmp(vs.v[7].name, "web1:80"),
       "the line lapsing first made room for ours");
    len = memsess_verdicts_format(buf, sizeof(buf), &vs);
    ok(len < sizeof(buf) && !memsess_verdicts_parse(buf, len, NOW, &back)
       && back.n == MEMSESS_VERDICTS_MAX, "a full record fits its bound");
    {
        /* the longest names too */
        memsess_verdicts_t full;
        char name[MEMSESS_INSTANCE_MAX];

        full.n = 0;
        for (i = 0; i < MEMSESS_VERDICTS_MAX; i++) {
            memset(name, 'a' + i % 26, sizeof(name) - 1);
            name[sizeof(name) - 1] = '\0';
            name[0] = (char)('0' + i / 26);
            memsess_verdicts_put(&full, name, 1, 999999999999LL - 10,
                                 999999999999LL);
        }
        len = memsess_verdicts_format(buf, sizeof(buf), &full);
        ok(len < sizeof(buf) && strlen(buf) == len,
           "a record of the longest lines fits (%d bytes)", (int)len);
        ok(memsess_verdicts_format(buf, 10, &full) == 10
           && strlen(buf) == 9, "a small buffer: cut, NUL-terminated");
    }

    /* who reports it */
    parse("memsess-verdicts 1\nweb2:80 1800000000 1800000004\n"
          "web1:80 1800000000 1800000004\nweb3:80 1800000000 1800000004\n",
          &vs);
    who[0] = '\0';
    ok(memsess_verdicts_others(&vs, "web1:80", NOW, who, sizeof(who), NULL) == 2,
       "two others see it down");
    is_str(who, "web2:80, web3:80", "named, without ourselves");
    parse("memsess-verdicts 1\nweb3:80 1800000000 1800000004\n"
          "web22:80 1800000000 1800000004\n", &vs);
    memsess_verdicts_others(&vs, "web1:80", NOW, who, sizeof(who), NULL);
    is_str(who, "web2:80, web3:80, web22:80",
           "another copy adds names once");
    who[0] = '\0';
    {
        apr_int64_t newest = 0;

        ok(memsess_verdicts_others(&vs, "web1:80",
                                   NOW + 5 + MEMSESS_VERDICT_SKEW_MAX, who,
                                   sizeof(who), &newest)
           == 0 && !who[0] && newest == 0,
           "lines lapsed long ago do not count, nor their refresh");
    }
    {
        char small[12] = "";

        memsess_verdicts_others(&vs, "x", NOW, small, sizeof(small), NULL);
        is_str(small, "web3:80", "a name that does not fit is left out");
    }
    {
        apr_int64_t newest = 0;

        parse("memsess-verdicts 1\nweb2:80 1800000001 1800000004\n"
              "web1:80 1800000003 1800000004\nweb3:80 1800000002 1800000004\n",
              &vs);
        memsess_verdicts_others(&vs, "web1:80", NOW, who, sizeof(who),
                                &newest);
        ok(newest == 1800000002, "the newest refresh of the others (ours "
           "left out): %" APR_INT64_T_FMT, newest);
    }

    /* the default group */
    {
        apr_pool_t *p;
        const char *a[] = { "server 127.0.0.1:1", "vhost shop", "server b:2" };
        const char *b[] = { "server b:2", "server 127.0.0.1:1", "vhost shop",
                            "vhost shop" };
        const char *c[] = { "server 127.0.0.1:1", "vhost blog", "server b:2" };
        const char *g1, *g2, *g3;

        apr_pool_create(&p, NULL);
        g1 = memsess_group_derive(p, a, 3);
        g2 = memsess_group_derive(p, b, 4);
        g3 = memsess_group_derive(p, c, 3);
        is_str(g1, g2, "the derived group: whatever the order, repeats once");
        ok(strcmp(g1, g3) != 0, "another vhost name, another group");
        ok(strlen(g1) == 17 && g1[0] == 'h'
           && memsess_instance_name_valid(g1, MEMSESS_GROUP_MAX),
           "a valid group name (%s)", g1);
        apr_pool_destroy(p);
    }

    apr_terminate();
    /* members records: each instance's pools, two fingerprints a line */
    err = parse("memsess-members 1\nweb2:80 1800000000 1800000004 "
                "0123456789abcdef fedcba9876543210\n", &vs);
    ok(!err && vs.members && vs.n == 1
       && vs.v[0].configured == APR_UINT64_C(0x0123456789abcdef)
       && vs.v[0].in_force == APR_UINT64_C(0xfedcba9876543210),
       "a members record is read with its fingerprints (%s)", err ? err : "ok");
    memsess_members_put(&vs, "web1:80", NOW, NOW + 4, 1, 2, APR_UINT64_C(0xabc),
                        (apr_int64_t)NOW * 1000 + 250,
                        (apr_int64_t)NOW * 1000 - 123456);
    len = memsess_verdicts_format(buf, sizeof(buf), &vs);
    ok(!memsess_verdicts_parse(buf, len, NOW, &back) && back.members
       && back.n == 2 && back.v[1].configured == 1 && back.v[1].in_force == 2
       && back.v[1].nonce == APR_UINT64_C(0xabc) && back.v[0].nonce == 0
       && back.v[1].wrote_ms == (apr_int64_t)NOW * 1000 + 250
       && back.v[1].offset_ms == (apr_int64_t)NOW * 1000 - 123456
       && back.v[0].wrote_ms == 0 && back.v[0].offset_ms == 0,
       "our member line in, formatted, read back with its start's nonce, "
       "its write time and its clock's offset (a line of an earlier version "
       "has none of them)");
    ok(!parse("memsess-members 1\nweb2:80 1800000000 1800000004 "
               "0123456789abcdef fedcba9876543210 0000000000000abc "
               "1800000000250\n", &back)
       && back.n == 1 && back.v[0].wrote_ms == APR_INT64_C(1800000000250)
       && back.v[0].offset_ms == 0,
       "a member line with its write time and no offset (the version "
       "before) is read");
    refused("memsess-members 1\nweb2:80 1800000000 1800000004 "
            "0123456789abcdef fedcba9876543210 0000000000000abc 12x\n",
            "a bad write time");
    refused("memsess-members 1\nweb2:80 1800000000 1800000004 "
            "0123456789abcdef fedcba9876543210 0000000000000abc 12 3x\n",
            "a bad clock offset");
    refused("memsess-members 1\nweb2:80 1800000000 1800000004 "
            "0123456789abcdef fedcba9876543210 0000000000000abc 12 3 4\n",
            "a member line with a field too many");
    memsess_members_put(&back, "web1:80", NOW + 1, NOW + 5, 3, 3, APR_UINT64_C(0xabc), 0,
                        0);
    ok(back.n == 2 && back.v[1].configured == 3 && back.v[1].reported == NOW + 1,
       "refreshed in place");
    refused("memsess-members 1\nweb2:80 1800000000 1800000004\n",
            "a member line without its fingerprints");
    refused("memsess-members 1\nweb2:80 1800000000 1800000004 0123 4567\n",
            "short fingerprints");
    refused("memsess-members 1\nweb2:80 1800000000 1800000004 "
            "0123456789abcdef fedcba9876543210 12\n", "a short nonce");
    refused("memsess-members 1\nweb2:80 1800000000 1800000004 "
            "0123456789abcdef fedcba9876543210 0123456789abcdef x\n",
            "something after the nonce");
    refused("memsess-verdicts 1\nweb2:80 1800000000 1800000004 "
            "0123456789abcdef fedcba9876543210\n",
            "fingerprints in a verdict record");
    return done_testing();
}
