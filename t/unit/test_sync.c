/* Unit tests of memsess_sync.c's pure parts: metadump lines, key kinds,
 * placement (libmemcached, no network), what the sync does with a key,
 * and with an active session at the flip; whether a returning server gets
 * a delta sync (the same memcached process) or a full one.
 *
 *   test_sync.bin                          the TAP tests
 *   test_sync.bin --place PATH R KETAMA ID...
 *       prints "ID server,server" per id: where php-memcached puts session
 *       ID for that save_path (R replicas, KETAMA 1/0).  t/28_rejoin_sync.t
 *       compares it with where PHP actually put its sessions.
 *   test_sync.bin --bench HOST PORT1 PORT2 PORT3 N [OTHER]
 *       the rejoin of PORT2 as the same process, against three memcached
 *       servers it empties (flush_all): N sessions of 1 KB where
 *       php-memcached puts them (replicas 1, successor), then its outage:
 *       10 of its sessions written and 10 deleted where requests read them
 *       meanwhile, a write and a lock landing on it as it thaws; then the
 *       delta sync, and on the same state the full sync, and the full
 *       sync of PORT2 emptied (a restart: every key copied); prints what
 *       each examined, how long it took, and what is lost or stale after
 *       it; then the limit: the same keys copied raw (bench_raw).  OTHER:
 *       that many small keys of another application on PORT3 too.  With
 *       MEMSESS_TEST_DUPS=1 the engine lists through proxies that list
 *       every key twice (see --dups).
 *   test_sync.bin --copy HOST SRC DST
 *       the limit a sync through Apache is measured against
 *       (bench/scale.sh): every session key SRC holds, listed
 *       (lru_crawler metadump) and copied raw to DST (multi-gets of 1000,
 *       writes without replies); prints "copy: N keys in M ms".
 *   test_sync.bin --rename HOST PORT1 PORT2 PORT3 N
 *       a rebalance into another namespace (memc.sess.key. to shop/) on
 *       three memcached servers it empties: N sessions where php-memcached
 *       puts them (replicas 1, successor), another site's sessions under
 *       memc.sess.key. that the list does not place where they are, and
 *       locks; as it runs, 10 users log out and 10 write; prints what the
 *       engine did and "rename: lost L stale S old-deleted D
 *       other-deleted O" (stale: a value not the last written, or a
 *       logout undone; t/54_neighbours.t checks it).
 *   test_sync.bin --fence HOST PORT1 PORT2 PORT3 N ALLOW
 *       the same rename of N sessions, its lease lost: the fence answers
 *       yes ALLOW times, then no; prints "fence: stopped|done (why),
 *       copied C, new-namespace keys K": a fenced engine stops at the
 *       first write or delete after, and K == C (t/54_neighbours.t).
 *   test_sync.bin --feed|--feed-grow HOST PORT1 PORT2 PORT3 N OTHER CAP
 *       the rejoin of PORT2 restarted empty (--feed-grow: the pool grown
 *       from PORT1, PORT3 to all three), N sessions where php-memcached
 *       puts them (replicas 1, successor), OTHER keys of another
 *       application on PORT3, 300 users writing their sessions where
 *       requests read them all through the sync's passes, and 300 others
 *       logging out now and then through the first; the engine takes
 *       what was written meanwhile from its authorities' logs of writes
 *       (memsess_feed.c), keeping at most CAP keys between two passes (0:
 *       it lists every pass); then the first pass after the flip, the users
 *       stopped; prints "feed: fed F lost L lines N other O stale S
 *       missing M undone U" (t/54_neighbours.t: with a feed, the other
 *       application's keys are listed once; every session as last
 *       written, either way).
 *   test_sync.bin --dups HOST PORT1 PORT2 PORT3 N
 *       memcached's crawler may list a key twice (an item moved between
 *       its LRUs while it crawls: 2 lines in 600,000 measured under
 *       load).  N sessions placed with no replica, then rebalanced to one
 *       replica through proxies that list every key twice; prints "dups:
 *       missing M deleted D of C copies": no copy may go for a duplicate
 *       line; then the rejoin of PORT2 restarted empty (a full sync)
 *       through them, "dups rejoin: ..." the same (t/54_neighbours.t).
 *   test_sync.bin --leftover HOST PORT1 PORT2 PORT3 N
 *       a pool shrunk from the three servers to the first two (no
 *       replica): of N sessions, those the third held get an old copy
 *       where the two-server list places them (left there by an earlier
 *       change), and every other one of them logs out; after the
 *       rebalance's passes before the flip prints "leftover: done, undone
 *       U stale S of L old copies" (undone: a logged-out session's old
 *       copy still where the new list reads it; t/54_neighbours.t). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>
#include <pthread.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include <libmemcached/memcached.h>

#include "apr_general.h"
#include "apr_strings.h"

#include "memsess_listing.h"
#include "memsess_feed.h"
#include "memsess_place.h"
#include "memsess_sync.h"
#include "memsess_table.h"
#include "tap.h"

static apr_pool_t *p;

static int parse(const char *line, memsess_dump_item_t *it)
{
    return memsess_dump_parse(line, strlen(line), it);
}

/* memcached's log of writes and its meta get answers (memsess_feed.c). */
static void test_feed_parse(void)
{
    memsess_dump_item_t it;
    const char *l;

    l = "ts=1796604951.484050 gid=2 type=item_store key=memc.sess.key.abc "
        "status=stored cmd=set ttl=100 clsid=1 cfd=25 size=3";
    ok(memsess_feed_parse(l, strlen(l), &it) == 1
       && !strcmp(it.key, "memc.sess.key.abc"), "a store in the log: its key");
    l = "ts=1.0 gid=3 type=item_store key=shop%2Fab status=stored cmd=add "
        "ttl=0 clsid=1 cfd=25 size=1";
    ok(memsess_feed_parse(l, strlen(l), &it) == 1 && !strcmp(it.key, "shop/ab"),
       "its key %%-decoded");
    l = "ts=1.0 gid=4 type=item_store key=memc.sess.key.abc status=exists "
        "cmd=cas ttl=0 clsid=1 cfd=25 size=1";
    ok(memsess_feed_parse(l, strlen(l), &it) == 0,
       "a store that did not take (a cas that lost): nothing changed");
    l = "ts=1.0 gid=5 type=item_get key=memc.sess.key.abc status=found";
    ok(memsess_feed_parse(l, strlen(l), &it) == 0, "a read: nothing changed");
    l = "skipped=12";
    ok(memsess_feed_parse(l, strlen(l), &it) == -1,
       "memcached says it skipped lines: the feed lost some");
    l = "ts=1.0 type=item_store status=stored key=a%20b";
    ok(memsess_feed_parse(l, strlen(l), &it) == 0, "a key no key may be");
    l = "HD t98 c17 l2 h0 kmemc.sess.key.a";
    ok(memsess_feed_meta(l, strlen(l), 1000, &it) == 1 && it.exp == 1098
       && it.la == 998 && it.cas == 17 && !strcmp(it.key, "memc.sess.key.a"),
       "a meta get's answer: expiry and last access on our clock, cas, key");
    l = "HD t-1 c2 l0 kk2";
    ok(memsess_feed_meta(l, strlen(l), 1000, &it) == 1 && it.exp == -1,
       "t-1: never expires");
    l = "HD c2 l0 kk2";
    ok(memsess_feed_meta(l, strlen(l), 1000, &it) == -1,
       "an answer without its time to live: refused");
    l = "HD t-2 c2 l0 kk2";
    ok(memsess_feed_meta(l, strlen(l), 1000, &it) == -1,
       "a time to live below -1: refused");
    l = "HD t1 c2 l1234567890123456789 kk2";
    ok(memsess_feed_meta(l, strlen(l), 1000, &it) == -1,
       "19 digits: refused");
    ok(memsess_feed_meta("MN", 2, 1000, &it) == 0, "MN ends a batch");
    ok(memsess_feed_meta("EN", 2, 1000, &it) == -1
       && memsess_feed_meta("SERVER_ERROR out of memory", 26, 1000, &it)
          == -1, "anything else is no answer");
    l = "key=k exp=1 la=1 cas=3 fetch=no cls=12 size=90";
    ok(memsess_dump_parse(l, strlen(l), &it) == 1 && it.cls == 12,
       "a listing line's slab class");
    l = "key=k exp=1 la=1 cas=3 fetch=no cls=64 size=90";
    ok(memsess_dump_parse(l, strlen(l), &it) == 1 && it.cls == 0,
       "a slab class memcached has not: unknown (0)");
}

static void test_dump_parse(void)
{
    memsess_dump_item_t it;
    char long_line[1200];
    int i;

    ok(parse("key=memc.sess.key.abc exp=1700000000 la=1699999000 cas=12 "
             "fetch=yes cls=1 size=123", &it) == 1
       && !strcmp(it.key, "memc.sess.key.abc") && it.keylen == 17
       && it.exp == 1700000000 && it.la == 1699999000 && it.cas == 12,
       "a metadump line: key, exp, la, cas");
    ok(parse("key=k exp=1 la=1 cas=x", &it) == 1 && it.cas == 0,
       "a cas that is no number: unknown (0), the line still taken");
    ok(parse("key=a%20b exp=-1 la=5", &it) == -1,
       "%%20 decodes to a space, which no key may hold: refused");
    ok(parse("key=a%2Fc exp=-1 la=5", &it) == 1 && !strcmp(it.key, "a/c")
       && it.exp == -1, "%%-encoded keys are decoded; exp=-1 = never");
    ok(parse("END", &it) == 0, "END ends the listing");
    ok(parse("", &it) == -1, "an empty line is skipped");
    ok(parse("BUSY currently processing crawler request", &it) == -1,
       "BUSY is not an item");
    ok(parse("key=abc exp=1 la=1 key=def", &it) == -1, "two keys: refused");
    ok(parse("key=abc la=1", &it) == -1, "no exp: refused");
    ok(parse("key=abc exp=-2 la=1", &it) == -1, "exp below -1: refused");
    ok(parse("key=abc exp=12a la=1", &it) == -1, "a bad number: refused");
    ok(parse("key=abc exp=1234567890123456789 la=1", &it) == -1,
       "19 digits: refused");
    ok(parse("key=ab%4 exp=1 la=1", &it) == -1, "a cut %%-escape: refused");
    ok(parse("key=ab% exp=1 la=1", &it) == -1, "a bare %%: refused");
    ok(parse("key= exp=1 la=1", &it) == -1, "an empty key: refused");
    ok(parse("key=a%00b exp=1 la=1", &it) == -1, "a NUL in a key: refused");
    memcpy(long_line, "key=", 4);
    for (i = 4; i < 4 + 251; i++) {
        long_line[i] = 'k';
    }
    strcpy(long_line + i, " exp=1 la=1");
    ok(parse(long_line, &it) == -1, "a key of 251 bytes: refused");
    long_line[4 + 250] = ' ';
    strcpy(long_line + 4 + 250, " exp=1 la=1");
    ok(parse(long_line, &it) == 1 && it.keylen == 250,
       "a key of 250 bytes: taken");
    ok(parse("key=abc exp=1 la=1 junk", &it) == -1,
       "a field without '=': refused");
    ok(memsess_dump_parse("key=abc exp=1 la=12", 18, &it) == 1 && it.la == 1,
       "never reads past len");
}

static void test_key_kind(void)
{
    const char *id;
    apr_size_t len;

    ok(memsess_key_kind(NULL, "memc.sess.key.abc", 17, &id, &len)
       == MEMSESS_KEY_SESSION && len == 3 && !memcmp(id, "abc", 3),
       "a session key; its id is what libmemcached hashes");
    ok(memsess_key_kind(NULL, "memc.sess.key.lock.abc", 22, &id, &len)
       == MEMSESS_KEY_LOCK && len == 8 && !memcmp(id, "lock.abc", 8),
       "a lock key; hashed as lock.<id>");
    ok(memsess_key_kind(NULL, "memc.sess.key.", 14, &id, &len)
       == MEMSESS_KEY_OTHER, "the bare prefix is no key of ours");
    ok(memsess_key_kind(NULL, "memsess:probe:h:1", 17, &id, &len)
       == MEMSESS_KEY_OTHER, "a probe key is not ours to move");
    /* MemsessNamespace: nothing outside it is ours */
    ok(memsess_key_kind("shop/", "shop/Ab9,-z", 11, &id, &len)
       == MEMSESS_KEY_SESSION && len == 6,
       "a session of the namespace (ids of 6 bits a character)");
    ok(memsess_key_kind("shop/", "memc.sess.key.abc", 17, &id, &len)
       == MEMSESS_KEY_OTHER,
       "a neighbour's session under php-memcached's default is not ours");
    ok(memsess_key_kind("shop/", "shop/eu/abc", 11, &id, &len)
       == MEMSESS_KEY_OTHER,
       "a longer namespace that begins with ours is another site's");
    ok(memsess_key_kind(NULL, "memc.sess.key.shop/abc", 22, &id, &len)
       == MEMSESS_KEY_OTHER,
       "and the default namespace does not take a longer one's keys");
    ok(memsess_key_kind("shop/", "shop/lock.abc", 13, &id, &len)
       == MEMSESS_KEY_LOCK, "a lock of the namespace");
    ok(memsess_key_kind("shop/", "shop/lock.a.b", 13, &id, &len)
       == MEMSESS_KEY_OTHER, "lock. before no session id: not ours");
    ok(!memsess_namespace_invalid("shop-example/", 1)
       && !memsess_namespace_invalid(MEMSESS_SESS_PREFIX, 1)
       && !memsess_namespace_invalid("shop_", 1),
       "namespaces: letters, digits, . _ : / -, a separator last");
    ok(memsess_namespace_invalid("", 0) && memsess_namespace_invalid("a b", 0)
       && memsess_namespace_invalid("a;b", 0)
       && memsess_namespace_invalid("a\"", 0)
       && memsess_namespace_invalid("0123456789012345678901234567890123456789"
                                    "01234567890123456789012345", 0),
       "refused: empty, a space, what an INI line reads, over 64");
    ok(memsess_namespace_invalid("shop", 1)
       && memsess_namespace_invalid("shop/lock.", 1)
       && !memsess_namespace_invalid("shop", 0),
       "chosen: refused without a separator last (\"shop\" would take "
       "\"shopXYZ\" for session XYZ) or ending in lock.; php.ini's taken");
}

/* "a,b" for the servers of id under path. */
static const char *where(memsess_place_t *pl, const char *id)
{
    int w[8], n = memsess_place_key(pl, id, strlen(id), w, 8), i;
    char *out = "";

    for (i = 0; i < n; i++) {
        out = apr_pstrcat(p, out, i ? "," : "", memsess_place_server(pl, w[i]),
                          NULL);
    }
    return out;
}

static void test_place(void)
{
    memsess_place_t *full = memsess_place_create(p, "10.0.0.1:11211,"
                                                 "10.0.0.2:11211,"
                                                 "10.0.0.3:11211", 1, 0);
    memsess_place_t *succ = memsess_place_create(p, "10.0.0.1:11211,"
                                                 "10.0.0.3:11211,"
                                                 "10.0.0.3:11211", 1, 0);
    memsess_place_t *k3 = memsess_place_create(p, "10.0.0.1:11211,"
                                               "10.0.0.2:11211,"
                                               "10.0.0.3:11211", 0, 1);
    memsess_place_t *k2 = memsess_place_create(p, "10.0.0.1:11211,"
                                               "10.0.0.3:11211", 0, 1);
    int i, on2 = 0, succ_ok = 1, kept = 1, two = 1;

    ok(full && succ && k3 && k2, "libmemcached takes the lists");
    if (!full || !succ || !k3 || !k2) {
        return;
    }
    ok(memsess_place_nservers(succ) == 2, "a successor list has 2 distinct "
       "servers of 3 entries");
    for (i = 0; i < 300; i++) {
        const char *id = apr_psprintf(p, "sess%04d", i);
        const char *f = where(full, id), *s = where(succ, id);
        const char *a = where(k3, id), *b = where(k2, id);

        two &= strchr(f, ',') != NULL;
        if (!strncmp(f, "10.0.0.2:11211", 14)) {
            on2++;
            /* its stand-in holds it first, with the next as replica */
            succ_ok &= !strcmp(s, "10.0.0.3:11211");
        }
        else {
            succ_ok &= !strcmp(s, f) || strstr(f, "10.0.0.2") != NULL;
        }
        /* ketama: a key not on the dropped server stays where it was */
        if (strcmp(a, "10.0.0.2:11211")) {
            kept &= !strcmp(a, b);
        }
    }
    ok(two, "replicas 1: every key on two distinct servers");
    ok(on2 > 50 && on2 < 150, "modula spreads keys (%d of 300 on the 2nd)",
       on2);
    ok(succ_ok, "successor: the 2nd's keys go to its stand-in, the others "
       "stay where they were");
    ok(kept, "ketama: dropping a server moves only its own keys");
    ok(strcmp(where(full, "lock.abc"), where(full, "abc"))
       || strcmp(where(full, "lock.abd"), where(full, "abd"))
       || strcmp(where(full, "lock.abe"), where(full, "abe")),
       "a lock key is placed by its own name");
    ok(memsess_view_ketama(1, MEMSESS_FAILOVER_SUCCESSOR) == 0
       && memsess_view_ketama(1, MEMSESS_FAILOVER_DROP) == 1
       && memsess_view_ketama(0, MEMSESS_FAILOVER_DROP) == 1,
       "modula only with replicas and successor, as injected");
}

/* Servers 0, 1, 2; 1 returns.  Placements: "T" = {2} now, {1, 2} next;
 * "P" = {0, 2} now, {0, 1} next; "O" = {0, 2} next (not on S); "S" = {1}
 * now (S its own authority). */
static const int now_t[] = { 2 }, now_p[] = { 0, 2 }, now_s[] = { 1 };
static const int next_s[] = { 1, 2 }, next_p[] = { 0, 1 }, next_o[] = { 0, 2 };

static const struct {
    memsess_key_kind_e    kind;
    int                   here;
    const int            *now, *next;
    int                   nnow;
    memsess_sync_action_e want;
    const char           *what;
} decisions[] = {
    { MEMSESS_KEY_SESSION, 2, now_t, next_s, 1, MEMSESS_SYNC_COPY,
      "at its authority, placed on S: copied" },
    { MEMSESS_KEY_SESSION, 0, now_p, next_p, 2, MEMSESS_SYNC_COPY,
      "primary elsewhere, S its new replica: copied" },
    { MEMSESS_KEY_SESSION, 2, now_p, next_p, 2, MEMSESS_SYNC_SKIP,
      "a replica is no authority" },
    { MEMSESS_KEY_SESSION, 0, now_p, next_o, 2, MEMSESS_SYNC_SKIP,
      "not placed on S: nothing to do" },
    { MEMSESS_KEY_SESSION, 1, now_t, next_s, 1, MEMSESS_SYNC_VERIFY,
      "on S, placed there: checked at its authority" },
    { MEMSESS_KEY_SESSION, 1, now_p, next_o, 2, MEMSESS_SYNC_DROP,
      "on S, not placed there: deleted" },
    { MEMSESS_KEY_LOCK, 1, now_t, next_s, 1, MEMSESS_SYNC_DROP,
      "a lock on S: deleted" },
    { MEMSESS_KEY_LOCK, 2, now_t, next_s, 1, MEMSESS_SYNC_SKIP,
      "a lock elsewhere: never copied" },
    { MEMSESS_KEY_OTHER, 1, now_t, next_s, 1, MEMSESS_SYNC_SKIP,
      "not a session key: left alone, even on S" },
    { MEMSESS_KEY_SESSION, 1, now_s, next_s, 1, MEMSESS_SYNC_SKIP,
      "S its own authority (fail open): kept" },
};

static void test_decide(void)
{
    apr_size_t i;

    for (i = 0; i < sizeof(decisions) / sizeof(decisions[0]); i++) {
        ok(memsess_sync_decide(decisions[i].kind, decisions[i].here, 1,
                               decisions[i].now, decisions[i].nnow,
                               decisions[i].next, 2) == decisions[i].want,
           "%s", decisions[i].what);
    }
}

/* At the flip: what the guard of one active session does at a look. */
static const struct {
    int            held, taken, seen, checked, settled, last;
    memsess_flip_e want;
    const char    *what;
} flip_steps[] = {
    { 1, 0, 0, 0, 0, 0, MEMSESS_FLIP_WAIT,
      "held: kept while requests with the old list may still take theirs" },
    { 1, 1, 1, 0, 1, 0, MEMSESS_FLIP_WAIT,
      "held: kept while a request with the old list is at the session" },
    { 1, 0, 1, 0, 1, 0, MEMSESS_FLIP_COPY,
      "held, the old list's lock free after the settle: brought over" },
    { 1, 0, 0, 0, 0, 1, MEMSESS_FLIP_COPY,
      "held, time up, the old list's lock free: brought over anyway" },
    { 1, 1, 1, 0, 1, 1, MEMSESS_FLIP_DONE,
      "held, time up, a request still at it: let go (the watch goes on)" },
    { 0, 0, 0, 0, 0, 0, MEMSESS_FLIP_TAKE,
      "one lock for both lists: taken at once after the flip" },
    { 0, 1, 1, 1, 0, 0, MEMSESS_FLIP_WAIT,
      "one lock for both lists, a request at it: wait for it" },
    { 0, 0, 1, 1, 1, 0, MEMSESS_FLIP_TAKE,
      "a request let go since the last copy: taken before the next one" },
    { 0, 0, 0, 1, 1, 0, MEMSESS_FLIP_WAIT,
      "nothing since the last copy: watched" },
    { 0, 0, 0, 1, 1, 1, MEMSESS_FLIP_DONE,
      "nothing since the last copy, time up: done" },
    { 0, 0, 1, 1, 1, 1, MEMSESS_FLIP_TAKE,
      "time up, a write since the last copy: brought over once more" },
};

static void test_flip_step(void)
{
    apr_size_t i;

    for (i = 0; i < sizeof(flip_steps) / sizeof(flip_steps[0]); i++) {
        ok(memsess_sync_flip_step(flip_steps[i].held, flip_steps[i].taken,
                                  flip_steps[i].seen, flip_steps[i].checked,
                                  flip_steps[i].settled, flip_steps[i].last)
           == flip_steps[i].want, "%s", flip_steps[i].what);
    }
}

/* The table's side: a syncing server is not live; a failed probe ends
 * its sync; a dead checker's sync is reset. */
static void test_slot(void)
{
    memsess_slot_t s;

    memset(&s, 0, sizeof(s));
    s.state = MEMSESS_DOWN;
    memsess_slot_sync_begin(&s, 100);
    ok(s.state == MEMSESS_SYNCING && !MEMSESS_IS_LIVE(s.state),
       "syncing is not live");
    ok(!memsess_slot_record(&s, 1, NULL, 10, 101, 2, 2)
       && s.state == MEMSESS_SYNCING, "good probes keep it syncing");
    ok(memsess_slot_record(&s, 0, "refused", 10, 102, 2, 2)
       && s.state == MEMSESS_DOWN, "one failed probe: down");
    ok(!memsess_slot_sync_end(&s, 1, NULL, 103) && s.state == MEMSESS_DOWN,
       "a sync that ends after that publishes nothing");
    memsess_slot_sync_begin(&s, 104);
    ok(memsess_slot_sync_end(&s, 1, NULL, 105) && s.state == MEMSESS_UP
       && s.syncs == 1, "a sync that completes: up");
    ok(!strcmp(memsess_state_name(MEMSESS_SYNCING), "syncing"),
       "its name in the status formats");
}

/* A checker that died mid-sync leaves the slot SYNCING in shared memory:
 * the next one sets it down. */
static void test_reset(void)
{
    apr_uint32_t caps[1] = { 64 };
    apr_size_t size = memsess_table_size(3, 1, caps);
    void *mem = malloc(size);
    memsess_table_t *t = memsess_table_init(mem, size, 3, 1, caps);

    memsess_table_slot(t, 0)->state = MEMSESS_UP;
    memsess_slot_sync_begin(memsess_table_slot(t, 1), 5);
    memsess_table_slot(t, 2)->state = MEMSESS_DOWN;
    ok(memsess_table_reset_syncing(t) == 1
       && memsess_table_slot(t, 0)->state == MEMSESS_UP
       && memsess_table_slot(t, 1)->state == MEMSESS_DOWN
       && memsess_table_slot(t, 2)->state == MEMSESS_DOWN
       && memsess_table_slot(t, 1)->consecutive_passes == 0,
       "a sync cut short by a dead checker: down, passes counted anew");
    ok(memsess_table_reset_syncing(t) == 0, "nothing else to reset");
    free(mem);
}

/* A returning server: a delta sync only when it is the memcached process
 * that went down and nothing is uncertain.  Times in seconds before now;
 * the facts are a same-process return but for what each row changes. */
#define D_PID     (4242)
#define D_STARTED (1799990000)
static const struct {
    apr_int64_t down_pid, down_started, proc_pid, proc_started;
    int         down_since, last_live, unfinished;   /* s ago; -1: 0 */
    int         delta;
    int         from;   /* s ago that since is, before the margin */
    const char *what;
} deltas[] = {
    { D_PID, D_STARTED, D_PID, D_STARTED, 20, 21, 0, 1, 21,
      "same pid, same start: a delta sync, from the earlier of its last "
      "sight live and its first failed probe, less the margin" },
    { D_PID, D_STARTED, D_PID, D_STARTED, 20, 19, 0, 1, 20,
      "seen live after its first failed probe (the threshold): from that "
      "probe" },
    { D_PID, D_STARTED, D_PID, D_STARTED + 1, 20, 21, 0, 1, 21,
      "a start one second apart (time and uptime read a tick apart): the "
      "same process" },
    { D_PID, D_STARTED, D_PID + 1, D_STARTED, 20, 21, 0, 0, 0,
      "another pid (killed, restarted): a full sync" },
    { D_PID, D_STARTED, D_PID, D_STARTED + 30, 20, 21, 0, 0, 0,
      "the same pid, started later (a container's pid 1): a full sync" },
    { D_PID, D_STARTED, D_PID, D_STARTED - 2, 20, 21, 0, 0, 0,
      "the same pid, started earlier by 2 s: a full sync" },
    { 0, D_STARTED, D_PID, D_STARTED, 20, 21, 0, 0, 0,
      "which process went down unknown: a full sync" },
    { D_PID, D_STARTED, 0, 0, 20, 21, 0, 0, 0,
      "which process answers unknown: a full sync" },
    { 0, D_STARTED, 0, D_STARTED, 20, 21, 0, 0, 0,
      "both unknown (0 == 0 is no identity): a full sync" },
    { D_PID, D_STARTED, D_PID, D_STARTED, 20, 21, 1, 0, 0,
      "an earlier sync of it did not finish: a full sync" },
    { D_PID, D_STARTED, D_PID, D_STARTED, 20, -1, 0, 0, 0,
      "never seen live by this checker (it started meanwhile): a full "
      "sync" },
    { D_PID, D_STARTED, D_PID, D_STARTED, -1, 21, 0, 0, 0,
      "when the outage began unknown: a full sync" },
    { D_PID, D_STARTED, D_PID, D_STARTED, -2, 21, 0, 0, 0,
      "an outage that begins in the future (2 s ahead): a full sync" },
};

static apr_time_t ago(apr_time_t now, int secs)
{
    return secs == -1 ? 0 : now - apr_time_from_sec(secs);
}

static void test_delta(void)
{
    const apr_time_t now = apr_time_from_sec(1800000000);
    const apr_interval_time_t margin = apr_time_from_sec(5);
    apr_size_t i;

    for (i = 0; i < sizeof(deltas) / sizeof(deltas[0]); i++) {
        memsess_rejoin_facts_t f;
        apr_time_t since = 0;
        const char *why;

        memset(&f, 0, sizeof(f));
        f.down_pid = deltas[i].down_pid;
        f.down_started = deltas[i].down_started;
        f.proc_pid = deltas[i].proc_pid;
        f.proc_started = deltas[i].proc_started;
        f.down_since = ago(now, deltas[i].down_since);
        f.last_live = ago(now, deltas[i].last_live);
        f.unfinished = deltas[i].unfinished;
        why = memsess_sync_delta_since(&f, margin, now, &since);
        ok(deltas[i].delta ? !why && since == ago(now, deltas[i].from)
                                               - margin
                           : why != NULL, "%s", deltas[i].what);
    }

    /* a sync stopped before it published (a graceful), resumed */
    {
        memsess_rejoin_facts_t f;
        apr_time_t since = 0;
        const char *why;

        memset(&f, 0, sizeof(f));
        f.down_pid = 100;              /* the process that went down */
        f.down_started = 1700000000;
        f.proc_pid = 200;              /* restarted empty */
        f.proc_started = 1799999000;
        f.down_since = ago(now, 60);
        f.last_live = ago(now, 61);
        f.resume_since = ago(now, 20);   /* a sync of 200 began */
        f.resume_pid = 200;
        f.resume_started = 1799999001;
        why = memsess_sync_delta_since(&f, margin, now, &since);
        ok(!why && f.resumed && since == ago(now, 60) - margin,
           "restarted empty, a sync of it stopped (a graceful): resumed, "
           "what changed since the outage began (and what it lacks)");
        f.resume_pid = 201;
        why = memsess_sync_delta_since(&f, margin, now, &since);
        ok(why && !f.resumed,
           "that sync wrote to another process (restarted again): full");
        f.resume_pid = 200;
        f.resume_since = now + apr_time_from_sec(2);
        why = memsess_sync_delta_since(&f, margin, now, &since);
        ok(why && !f.resumed, "a start in the future: full");
        /* the same process as went down (a freeze): what it kept is older
         * than the stopped sync; the delta goes back to the outage */
        f.proc_pid = f.resume_pid = 100;
        f.proc_started = f.resume_started = 1700000000;
        f.resume_since = ago(now, 20);
        why = memsess_sync_delta_since(&f, margin, now, &since);
        ok(!why && !f.resumed && since == ago(now, 61) - margin,
           "the same process as went down: a delta from the outage, not "
           "from the stopped sync");
        f.resume_since = ago(now, 90);
        why = memsess_sync_delta_since(&f, margin, now, &since);
        ok(!why && since == ago(now, 90) - margin,
           "... from the stopped sync when that began earlier (what it "
           "copied is only as new as then)");
    }

    /* our time on their clock */
    ok(memsess_sync_their_secs(now - apr_time_from_sec(10), now,
                               1700000100) == 1700000090,
       "10 s ago on a clock that reads 1700000100: 1700000090");
    ok(memsess_sync_their_secs(now - apr_time_from_msec(10500), now,
                               1700000100) == 1700000089,
       "10.5 s ago: rounded to 11 s (never later than it was)");
    ok(memsess_sync_their_secs(now + apr_time_from_sec(3), now,
                               1700000100) == 1700000100,
       "a time ahead of ours: their now");
}

static int place_cli(int argc, char **argv)
{
    memsess_place_t *pl;
    int i;

    if (argc < 5) {
        fprintf(stderr, "usage: %s --place PATH REPLICAS KETAMA ID...\n",
                argv[0]);
        return 2;
    }
    pl = memsess_place_create(p, argv[2], atoi(argv[3]), atoi(argv[4]));
    if (!pl) {
        fprintf(stderr, "libmemcached refused %s\n", argv[2]);
        return 1;
    }
    for (i = 5; i < argc; i++) {
        printf("%s %s\n", argv[i], where(pl, argv[i]));
    }
    return 0;
}

/* --bench (see the top): one server's handle, requests buffered. */
/* A proxy in front of one memcached that lists every key twice: bytes
 * pass as they are, except the answer to "lru_crawler metadump", whose
 * key= lines are each sent twice. */
typedef struct {
    int listen_fd;
    int upstream_port;
} dup_proxy_t;

typedef struct {
    int client, upstream;
} dup_conn_t;

static int write_all(int fd, const char *buf, size_t n)
{
    while (n) {
        ssize_t w = write(fd, buf, n);

        if (w <= 0) {
            return -1;
        }
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *dup_conn_run(void *arg)
{
    dup_conn_t *c = arg;
    char buf[65536], line[4096];
    size_t nline = 0;
    int dump = -1;   /* not known yet; 0: bytes as they are; 1: doubled */
    struct pollfd pf[2];

    pf[0].fd = c->client;
    pf[0].events = POLLIN;
    pf[1].fd = c->upstream;
    pf[1].events = POLLIN;
    for (;;) {
        ssize_t n;
        int k;

        if (poll(pf, 2, 10000) <= 0) {
            break;
        }
        if (pf[0].revents) {
            if ((n = read(c->client, buf, sizeof(buf))) <= 0) {
                break;
            }
            if (dump < 0) {
                dump = n >= 11 && !memcmp(buf, "lru_crawler", 11);
            }
            if (write_all(c->upstream, buf, (size_t)n) < 0) {
                break;
            }
        }
        if (pf[1].revents) {
            if ((n = read(c->upstream, buf, sizeof(buf))) <= 0) {
                break;
            }
            if (dump != 1) {
                if (write_all(c->client, buf, (size_t)n) < 0) {
                    break;
                }
                continue;
            }
            for (k = 0; k < n; k++) {
                if (nline < sizeof(line)) {
                    line[nline++] = buf[k];
                }
                if (buf[k] == '\n') {
                    if (write_all(c->client, line, nline) < 0
                        || (nline > 4 && !memcmp(line, "key=", 4)
                            && write_all(c->client, line, nline) < 0)) {
                        goto out;
                    }
                    nline = 0;
                }
            }
        }
    }
out:
    close(c->client);
    close(c->upstream);
    free(c);
    return NULL;
}

static void *dup_proxy_run(void *arg)
{
    dup_proxy_t *px = arg;

    for (;;) {
        struct sockaddr_in up;
        dup_conn_t *c;
        pthread_t t;
        int fd = accept(px->listen_fd, NULL, NULL);

        if (fd < 0) {
            return NULL;
        }
        c = calloc(1, sizeof(*c));
        c->client = fd;
        c->upstream = socket(AF_INET, SOCK_STREAM, 0);
        memset(&up, 0, sizeof(up));
        up.sin_family = AF_INET;
        up.sin_port = htons((unsigned short)px->upstream_port);
        up.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(c->upstream, (struct sockaddr *)&up, sizeof(up)) < 0
            || pthread_create(&t, NULL, dup_conn_run, c)) {
            close(c->client);
            close(c->upstream);
            free(c);
            continue;
        }
        pthread_detach(t);
    }
}

/* A proxy for upstream_port on 127.0.0.1; its own port. */
static int dup_proxy_start(dup_proxy_t *px, int upstream_port)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    pthread_t t;

    px->upstream_port = upstream_port;
    px->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(px->listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0
        || listen(px->listen_fd, 64) < 0
        || getsockname(px->listen_fd, (struct sockaddr *)&a, &len) < 0
        || pthread_create(&t, NULL, dup_proxy_run, px)) {
        return -1;
    }
    pthread_detach(t);
    return ntohs(a.sin_port);
}

static memcached_st *bench_conn(const char *host, int port)
{
    memcached_st *mc = memcached_create(NULL);

    memcached_server_add(mc, host, (in_port_t)port);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
    return mc;
}

#define BENCH_CHANGED (10)

/* The sessions of the outage, written (or not) where requests read them:
 * the first 2 * BENCH_CHANGED whose reads move to S (sid[]), and the
 * value every session should have at the end (want[], NULL: gone). */
static int bench_noise;   /* other keys on the third server */

static void bench_state(memcached_st **mc, memsess_place_t *full,
                        memsess_place_t *now, const char **ids, int n,
                        const char *value, const char **want, int s)
{
    int i, k, w[4], nw, moved = 0;
    char key[128];
    size_t vlen = strlen(value);

    for (k = 0; k < 3; k++) {
        memcached_flush(mc[k], 0);
        memcached_behavior_set(mc[k], MEMCACHED_BEHAVIOR_NOREPLY, 1);
        memcached_behavior_set(mc[k], MEMCACHED_BEHAVIOR_BUFFER_REQUESTS, 1);
    }
    for (i = 0; i < bench_noise; i++) {
        apr_snprintf(key, sizeof(key), "app:cache:%d", i);
        memcached_set(mc[2], key, strlen(key), "xxxxxxxx", 8, 0, 0);
    }
    for (i = 0; i < n; i++) {
        apr_snprintf(key, sizeof(key), "%s%s", MEMSESS_SESS_PREFIX, ids[i]);
        nw = memsess_place_key(full, ids[i], strlen(ids[i]), w, 4);
        for (k = 0; k < nw; k++) {
            memcached_set(mc[w[k]], key, strlen(key), value, vlen, 3600, 0);
        }
        want[i] = value;
    }
    for (k = 0; k < 3; k++) {
        memcached_flush_buffers(mc[k]);
        memcached_behavior_set(mc[k], MEMCACHED_BEHAVIOR_BUFFER_REQUESTS, 0);
        memcached_behavior_set(mc[k], MEMCACHED_BEHAVIOR_NOREPLY, 0);
        /* a round trip: every write before it has landed */
        memcached_exist(mc[k], "memsess-bench", 13);
    }
    /* older than the sync's margin when the outage begins */
    apr_sleep(apr_time_from_sec(5));
    for (i = 0; i < n && moved < 2 * BENCH_CHANGED + 2; i++) {
        memsess_place_key(full, ids[i], strlen(ids[i]), w, 4);
        if (w[0] != s) {
            continue;
        }
        apr_snprintf(key, sizeof(key), "%s%s", MEMSESS_SESS_PREFIX, ids[i]);
        if (moved < BENCH_CHANGED) {
            int wn[4], nn = memsess_place_key(now, ids[i], strlen(ids[i]),
                                              wn, 4);

            for (k = 0; k < nn; k++) {
                /* "now" names servers 1 and 3 as its 0 and 1 */
                memcached_set(mc[wn[k] ? 2 : 0], key, strlen(key),
                              "n|i:6;", 6, 3600, 0);
            }
            want[i] = "n|i:6;";
        }
        else if (moved < 2 * BENCH_CHANGED) {
            int wn[4], nn = memsess_place_key(now, ids[i], strlen(ids[i]),
                                              wn, 4);

            for (k = 0; k < nn; k++) {
                memcached_delete(mc[wn[k] ? 2 : 0], key, strlen(key), 0);
            }
            want[i] = NULL;
        }
        else if (moved == 2 * BENCH_CHANGED) {
            /* queued on S while it was frozen: the authority is right */
            memcached_set(mc[s], key, strlen(key), "n|i:99;", 7, 3600, 0);
        }
        else {
            apr_snprintf(key, sizeof(key), "%s%s%s", MEMSESS_SESS_PREFIX,
                         MEMSESS_LOCK_PREFIX, ids[i]);
            memcached_set(mc[s], key, strlen(key), "1", 1, 3600, 0);
        }
        moved++;
    }
}

static void bench_run(memcached_st **mc, memsess_place_t *full,
                      const char **ids, int n, const char **want,
                      memsess_sync_spec_t *spec, const char *what)
{
    memsess_sync_t *y;
    const memsess_sync_stats_t *st;
    char err[256] = "", key[128];
    apr_time_t t0 = apr_time_now();
    apr_status_t rv;
    int i, w[4], lost = 0, stale = 0;

    y = memsess_sync_create(p, spec, err, sizeof(err));
    rv = y ? memsess_sync_before(y, err, sizeof(err)) : APR_EGENERAL;
    if (!y) {
        printf("%s: %s\n", what, err);
        return;
    }
    st = memsess_sync_stats(y);
    printf("%s: %s in %" APR_TIME_T_FMT " ms (%s%s), %" APR_UINT64_T_FMT
           " keys listed, %" APR_UINT64_T_FMT " examined, %" APR_UINT64_T_FMT
           " copied, %" APR_UINT64_T_FMT " deleted, %" APR_UINT64_T_FMT
           " compared equal, %" APR_UINT64_T_FMT " KB held at most\n", what,
           rv == APR_SUCCESS ? "done" : err,
           apr_time_as_msec(apr_time_now() - t0),
           memsess_sync_delta(y) ? "delta" : "full",
           memsess_sync_mode(y) ? apr_pstrcat(p, ": ", memsess_sync_mode(y),
                                              NULL) : "",
           st->listed, st->examined, st->copied, st->deleted, st->same,
           (st->memory + 1023) / 1024);
    memsess_sync_destroy(y);
    for (i = 0; i < n; i++) {
        size_t len;
        uint32_t flags;
        memcached_return_t rc;
        char *v;

        apr_snprintf(key, sizeof(key), "%s%s", MEMSESS_SESS_PREFIX, ids[i]);
        memsess_place_key(full, ids[i], strlen(ids[i]), w, 4);
        v = memcached_get(mc[w[0]], key, strlen(key), &len, &flags, &rc);
        if (want[i] && !v) {
            lost++;
        }
        else if (!want[i] != !v
                 || (v && (len != strlen(want[i]) || memcmp(v, want[i], len)))) {
            stale++;
        }
        free(v);
    }
    printf("%s: after it, %d sessions lost, %d stale where PHP reads them\n",
           what, lost, stale);
}

/* The limit a sync is measured against: the keys the full list places on
 * S (1) copied there raw from where the list in force reads them, in
 * multi-gets of 1000 and writes without replies, buffered: no compare, no
 * cas, no listing. */
static void bench_raw(memcached_st **mc, memsess_place_t *full,
                      memsess_place_t *now, const char **ids, int n)
{
    const char **keys = apr_palloc(p, 1000 * sizeof(*keys));
    size_t *lens = apr_palloc(p, 1000 * sizeof(*lens));
    apr_time_t t0;
    int a, i, k, m, w[4], wn[4], nw, copied = 0;

    memcached_flush(mc[1], 0);
    memcached_behavior_set(mc[1], MEMCACHED_BEHAVIOR_NOREPLY, 1);
    memcached_behavior_set(mc[1], MEMCACHED_BEHAVIOR_BUFFER_REQUESTS, 1);
    t0 = apr_time_now();
    for (a = 0; a < 3; a += 2) {
        for (i = 0, m = 0; i <= n; i++) {
            if (i < n) {
                int on_s = 0;

                nw = memsess_place_key(full, ids[i], strlen(ids[i]), w, 4);
                for (k = 0; k < nw; k++) {
                    on_s |= w[k] == 1;
                }
                memsess_place_key(now, ids[i], strlen(ids[i]), wn, 4);
                if (on_s && (wn[0] ? 2 : 0) == a) {
                    keys[m] = apr_pstrcat(p, MEMSESS_SESS_PREFIX, ids[i],
                                          NULL);
                    lens[m] = strlen(keys[m]);
                    m++;
                }
            }
            if (m && (m == 1000 || i == n)) {
                memcached_result_st *res;
                memcached_return_t rc;

                memcached_mget(mc[a], keys, lens, (size_t)m);
                while ((res = memcached_fetch_result(mc[a], NULL, &rc))) {
                    memcached_set(mc[1], memcached_result_key_value(res),
                                  memcached_result_key_length(res),
                                  memcached_result_value(res),
                                  memcached_result_length(res), 3600,
                                  memcached_result_flags(res));
                    copied++;
                    memcached_result_free(res);
                }
                m = 0;
            }
        }
    }
    memcached_flush_buffers(mc[1]);
    memcached_behavior_set(mc[1], MEMCACHED_BEHAVIOR_BUFFER_REQUESTS, 0);
    memcached_behavior_set(mc[1], MEMCACHED_BEHAVIOR_NOREPLY, 0);
    memcached_exist(mc[1], "memsess-bench", 13);   /* all landed */
    printf("raw: %d keys copied in %" APR_TIME_T_FMT " ms (multi-gets of "
           "1000, writes without replies: the limit)\n", copied,
           apr_time_as_msec(apr_time_now() - t0));
}

static int bench_cli(int argc, char **argv)
{
    const char *host;
    const char **ids, **want;
    char value[1024];
    memcached_st *mc[3];
    memsess_place_t *full, *now;
    memsess_sync_spec_t spec;
    memsess_sync_list_t l;
    memcached_stat_st *st;
    memcached_return_t rc;
    const char *eport[3];
    int i, n;

    if (argc < 7 || (n = atoi(argv[6])) < 100) {
        fprintf(stderr, "usage: %s --bench HOST PORT1 PORT2 PORT3 N [OTHER] "
                "(N >= 100; OTHER: keys of another application on PORT3)\n",
                argv[0]);
        return 2;
    }
    bench_noise = argc > 7 ? atoi(argv[7]) : 0;
    host = argv[2];
    for (i = 0; i < 3; i++) {
        mc[i] = bench_conn(host, atoi(argv[3 + i]));
        /* MEMSESS_TEST_DUPS: the engine reads through proxies that list
         * every key twice (see --dups) */
        eport[i] = argv[3 + i];
        if (getenv("MEMSESS_TEST_DUPS")) {
            static dup_proxy_t px[3];
            int pp = dup_proxy_start(&px[i], atoi(argv[3 + i]));

            eport[i] = pp > 0 ? apr_itoa(p, pp) : eport[i];
        }
    }
    memset(&l, 0, sizeof(l));
    l.path_next = apr_psprintf(p, "%s:%s,%s:%s,%s:%s", host, eport[0], host,
                               eport[1], host, eport[2]);
    l.path_now = apr_psprintf(p, "%s:%s,%s:%s,%s:%s", host, eport[0], host,
                              eport[2], host, eport[2]);
    l.replicas = 1;
    l.ketama = 0;
    full = memsess_place_create(p, l.path_next, 1, 0);
    now = memsess_place_create(p, l.path_now, 1, 0);
    ids = apr_palloc(p, n * sizeof(*ids));
    want = apr_palloc(p, n * sizeof(*want));
    /* ids of this run only: memcached bumps the last access of an item
     * read twice (an earlier run's sync) when its LRU maintainer gets to
     * it, seconds later, and that of the item replacing it too */
    for (i = 0; i < n; i++) {
        ids[i] = apr_psprintf(p, "b%010" APR_UINT64_T_FMT "%021d",
                              (apr_uint64_t)(apr_time_now() % APR_INT64_C(10000000000)),
                              i);
    }
    memset(value, 'x', sizeof(value) - 1);
    memcpy(value, "n|i:5;s:1:\"x\";", 14);
    value[sizeof(value) - 1] = '\0';
    memset(&spec, 0, sizeof(spec));
    spec.returning = apr_psprintf(p, "%s:%s", host, eport[1]);
    spec.lists = &l;
    spec.nlists = 1;
    spec.timeout = apr_time_from_msec(500);
    /* MEMSESS_TEST_FEED=0: every pass lists every server */
    spec.feed = getenv("MEMSESS_TEST_FEED") ? (apr_size_t)atoi(getenv(
                    "MEMSESS_TEST_FEED")) : MEMSESS_SYNC_FEED;
    spec.feed_min = MEMSESS_SYNC_FEED_MIN;

    bench_state(mc, full, now, ids, n, value, want, 1);
    st = memcached_stat(mc[1], NULL, &rc);
    if (!st) {
        fprintf(stderr, "no stats from %s\n", spec.returning);
        return 1;
    }
    spec.pid = st->pid;
    spec.started = (apr_int64_t)(st->time - st->uptime);
    memcached_stat_free(NULL, st);
    /* the outage's writes were made in the last milliseconds; the
     * sessions were written 5 s before: the outage began in between */
    spec.since = apr_time_now() - apr_time_from_sec(2);
    bench_run(mc, full, ids, n, want, &spec, "delta");

    bench_state(mc, full, now, ids, n, value, want, 1);
    spec.since = 0;
    bench_run(mc, full, ids, n, want, &spec, "full");

    /* restarted empty: everything S gets is copied */
    bench_state(mc, full, now, ids, n, value, want, 1);
    memcached_flush(mc[1], 0);
    bench_run(mc, full, ids, n, want, &spec, "empty");
    bench_raw(mc, full, now, ids, n);
    for (i = 0; i < 3; i++) {
        memcached_free(mc[i]);
    }
    return 0;
}

/* --copy: the session keys of one listing, copied in multi-gets of 1000
 * as they come. */
typedef struct {
    memcached_st *src, *dst;
    const char  **keys;
    size_t       *lens;
    int           m, copied;
    apr_pool_t   *batch;
} raw_copy_t;

static void raw_flush(raw_copy_t *rc)
{
    memcached_result_st *res;
    memcached_return_t r;

    if (!rc->m) {
        return;
    }
    memcached_mget(rc->src, rc->keys, rc->lens, (size_t)rc->m);
    while ((res = memcached_fetch_result(rc->src, NULL, &r))) {
        memcached_set(rc->dst, memcached_result_key_value(res),
                      memcached_result_key_length(res),
                      memcached_result_value(res),
                      memcached_result_length(res), 3600,
                      memcached_result_flags(res));
        rc->copied++;
        memcached_result_free(res);
    }
    rc->m = 0;
    apr_pool_clear(rc->batch);
}

static apr_status_t raw_item(void *baton, const memsess_dump_item_t *it,
                             char *err, apr_size_t errlen)
{
    raw_copy_t *rc = baton;

    (void)err;
    (void)errlen;
    if (strncmp(it->key, MEMSESS_SESS_PREFIX, strlen(MEMSESS_SESS_PREFIX))) {
        return APR_SUCCESS;
    }
    rc->keys[rc->m] = apr_pstrmemdup(rc->batch, it->key, it->keylen);
    rc->lens[rc->m] = it->keylen;
    if (++rc->m == 1000) {
        raw_flush(rc);
    }
    return APR_SUCCESS;
}

static int copy_cli(int argc, char **argv)
{
    raw_copy_t rc;
    char err[256];
    apr_time_t t0;
    apr_status_t rv;

    if (argc != 5) {
        fprintf(stderr, "usage: %s --copy HOST SRC DST\n", argv[0]);
        return 2;
    }
    memset(&rc, 0, sizeof(rc));
    rc.src = bench_conn(argv[2], atoi(argv[3]));
    rc.dst = bench_conn(argv[2], atoi(argv[4]));
    rc.keys = apr_palloc(p, 1000 * sizeof(*rc.keys));
    rc.lens = apr_palloc(p, 1000 * sizeof(*rc.lens));
    apr_pool_create(&rc.batch, p);
    memcached_behavior_set(rc.dst, MEMCACHED_BEHAVIOR_NOREPLY, 1);
    memcached_behavior_set(rc.dst, MEMCACHED_BEHAVIOR_BUFFER_REQUESTS, 1);
    t0 = apr_time_now();
    rv = memsess_dump_each(p, argv[2], (apr_port_t)atoi(argv[3]), argv[3],
                           apr_time_from_sec(10), NULL, raw_item, &rc, err,
                           sizeof(err));
    raw_flush(&rc);
    memcached_flush_buffers(rc.dst);
    memcached_behavior_set(rc.dst, MEMCACHED_BEHAVIOR_BUFFER_REQUESTS, 0);
    memcached_behavior_set(rc.dst, MEMCACHED_BEHAVIOR_NOREPLY, 0);
    memcached_exist(rc.dst, "memsess-bench", 13);   /* all landed */
    if (rv != APR_SUCCESS) {
        fprintf(stderr, "cannot list %s:%s: %s\n", argv[2], argv[3], err);
        return 1;
    }
    printf("copy: %d keys in %" APR_TIME_T_FMT " ms (listed, multi-gets of "
           "1000, writes without replies: the limit)\n", rc.copied,
           apr_time_as_msec(apr_time_now() - t0));
    memcached_free(rc.src);
    memcached_free(rc.dst);
    return 0;
}

/* --rename: what users do while the rename runs, at its first progress
 * report: the first RENAME_LOGOUTS sessions are logged out (deleted where
 * php-memcached has them), the next RENAME_WRITES written again. */
#define RENAME_LOGOUTS (10)
#define RENAME_WRITES  (10)

typedef struct {
    memcached_st   **mc;
    memsess_place_t *pl;
    int              done;
} rename_users_t;

static void rename_users(void *baton, const memsess_sync_stats_t *st)
{
    rename_users_t *u = baton;
    char key[64];
    int i, k, w[4], nw;

    (void)st;
    if (u->done++) {
        return;
    }
    for (i = 0; i < RENAME_LOGOUTS + RENAME_WRITES; i++) {
        apr_snprintf(key, sizeof(key), "%srn%08d", MEMSESS_SESS_PREFIX, i);
        nw = memsess_place_key(u->pl, key + 14, strlen(key + 14), w, 4);
        for (k = 0; k < nw; k++) {
            if (i < RENAME_LOGOUTS) {
                memcached_delete(u->mc[w[k]], key, strlen(key), 0);
            }
            else {
                memcached_set(u->mc[w[k]], key, strlen(key), "n|i:6;", 6,
                              3600, 0);
            }
        }
    }
}

/* The three memcached servers of HOST PORT1 PORT2 PORT3 (argv[2..5]),
 * emptied, into mc; l one list of them with `replicas`; where it places. */
static memsess_place_t *three_emptied(char **argv, memcached_st **mc,
                                      memsess_sync_list_t *l, int replicas)
{
    int i;

    for (i = 0; i < 3; i++) {
        mc[i] = bench_conn(argv[2], atoi(argv[3 + i]));
        memcached_flush(mc[i], 0);
    }
    memset(l, 0, sizeof(*l));
    l->path_now = l->path_next = apr_psprintf(p, "%s:%s,%s:%s,%s:%s",
                                              argv[2], argv[3], argv[2],
                                              argv[4], argv[2], argv[5]);
    l->replicas = replicas;
    return memsess_place_create(p, l->path_now, replicas, 0);
}

/* n sessions TAGnnnnnnnn (under php-memcached's prefix) of value, written
 * where pl places them, except on server `skip` (-1: none). */
static void seed_sessions(memsess_place_t *pl, memcached_st **mc,
                          const char *tag, int n, const char *value,
                          int skip)
{
    char key[128];
    int i, k, w[4], nw;

    for (i = 0; i < n; i++) {
        apr_snprintf(key, sizeof(key), "%s%s%08d", MEMSESS_SESS_PREFIX, tag,
                     i);
        nw = memsess_place_key(pl, key + 14, strlen(key + 14), w, 4);
        for (k = 0; k < nw; k++) {
            if (w[k] != skip) {
                memcached_set(mc[w[k]], key, strlen(key), value,
                              strlen(value), 3600, 0);
            }
        }
    }
}

/* --rename (see the top). */
static int rename_cli(int argc, char **argv)
{
    rename_users_t users;
    memcached_st *mc[3];
    memsess_place_t *pl;
    memsess_sync_spec_t spec;
    memsess_sync_list_t l;
    memsess_sync_t *y;
    const memsess_sync_stats_t *st;
    char err[256] = "", key[128];
    const char *value = "n|i:5;s:1:\"x\";";
    int i, k, n, w[4], nw, guarded, lost = 0, stale = 0, old_gone = 0,
        other = 0, other_gone = 0;
    apr_status_t rv;

    if (argc < 7 || (n = atoi(argv[6])) < 1) {
        fprintf(stderr, "usage: %s --rename HOST PORT1 PORT2 PORT3 N\n",
                argv[0]);
        return 2;
    }
    pl = three_emptied(argv, mc, &l, 1);
    seed_sessions(pl, mc, "rn", n, value, -1);
    for (i = 0; i < n; i++) {
        apr_snprintf(key, sizeof(key), "%srn%08d", MEMSESS_SESS_PREFIX, i);
        nw = memsess_place_key(pl, key + 14, strlen(key + 14), w, 4);
        if (i % 10 == 0) {   /* its lock, as a request holds it */
            apr_snprintf(key, sizeof(key), "%slock.rn%08d",
                         MEMSESS_SESS_PREFIX, i);
            memcached_set(mc[w[0]], key, strlen(key), "1", 1, 3600, 0);
        }
        /* another site's session, where this list does not place it */
        apr_snprintf(key, sizeof(key), "%snb%08d", MEMSESS_SESS_PREFIX, i);
        memsess_place_key(pl, key + 14, strlen(key + 14), w, 4);
        memcached_set(mc[(w[0] + 2) % 3], key, strlen(key), "n|i:7;", 6,
                      3600, 0);
        other++;
    }
    memset(&spec, 0, sizeof(spec));
    spec.lists = &l;
    spec.nlists = 1;
    spec.timeout = apr_time_from_msec(500);
    spec.prefix = MEMSESS_SESS_PREFIX;
    spec.next_prefix = "shop/";
    users.mc = mc;
    users.pl = pl;
    users.done = 0;
    spec.progress = rename_users;
    spec.baton = &users;
    y = memsess_sync_create(p, &spec, err, sizeof(err));
    rv = y ? memsess_sync_before(y, err, sizeof(err)) : APR_EGENERAL;
    if (rv == APR_SUCCESS) {
        memsess_sync_hold_hot(y, &guarded);
        rv = memsess_sync_flipped(y, NULL, err, sizeof(err));
    }
    if (rv == APR_SUCCESS) {
        rv = memsess_sync_after(y, 0, err, sizeof(err));
    }
    if (rv == APR_SUCCESS) {
        rv = memsess_sync_after(y, 1, err, sizeof(err));
    }
    if (!y) {
        printf("rename: %s\n", err);
        return 1;
    }
    st = memsess_sync_stats(y);
    printf("rename: %s, %" APR_UINT64_T_FMT " keys listed, %"
           APR_UINT64_T_FMT " copied, %" APR_UINT64_T_FMT " deleted\n",
           rv == APR_SUCCESS ? "done" : err, st->listed, st->copied,
           st->deleted);
    memsess_sync_destroy(y);
    for (i = 0; i < n; i++) {
        char *v;
        size_t len;
        uint32_t flags;
        memcached_return_t rc;
        char id[32];

        apr_snprintf(id, sizeof(id), "rn%08d", i);
        nw = memsess_place_key(pl, id, strlen(id), w, 4);
        for (k = 0; k < nw; k++) {
            const char *want = i < RENAME_LOGOUTS ? NULL
                               : i < RENAME_LOGOUTS + RENAME_WRITES
                                 ? "n|i:6;" : value;

            apr_snprintf(key, sizeof(key), "shop/%s", id);
            v = memcached_get(mc[w[k]], key, strlen(key), &len, &flags, &rc);
            lost += want && !v;
            stale += v && (!want || len != strlen(want)
                           || memcmp(v, want, len));   /* or undone */
            free(v);
            apr_snprintf(key, sizeof(key), "%s%s", MEMSESS_SESS_PREFIX, id);
            v = memcached_get(mc[w[k]], key, strlen(key), &len, &flags, &rc);
            old_gone += want && !v;
            free(v);
        }
        apr_snprintf(key, sizeof(key), "%snb%08d", MEMSESS_SESS_PREFIX, i);
        memsess_place_key(pl, key + 14, strlen(key + 14), w, 4);
        v = memcached_get(mc[(w[0] + 2) % 3], key, strlen(key), &len, &flags,
                          &rc);
        other_gone += !v;
        free(v);
    }
    printf("rename: lost %d stale %d old-deleted %d other-deleted %d "
           "(of %d sessions, %d of another site)\n", lost, stale, old_gone,
           other_gone, n, other);
    for (i = 0; i < 3; i++) {
        memcached_free(mc[i]);
    }
    return rv == APR_SUCCESS && !lost && !stale && !old_gone && !other_gone
           ? 0 : 1;
}

/* The sync of spec, before its flip: its status (err), and how many keys
 * it deleted. */
static apr_status_t sync_before_only(const memsess_sync_spec_t *spec,
                                     char *err, apr_size_t errlen,
                                     apr_uint64_t *deleted)
{
    memsess_sync_t *y = memsess_sync_create(p, spec, err, errlen);
    apr_status_t rv = y ? memsess_sync_before(y, err, errlen) : APR_EGENERAL;

    *deleted = y ? memsess_sync_stats(y)->deleted : 0;
    memsess_sync_destroy(y);
    return rv;
}

/* Of the copies of sessions TAGnnnnnnnn where pl places them (on server
 * `only`; -1: every one), how many are missing; *copies: how many looked
 * for. */
static int count_missing(memsess_place_t *pl, memcached_st **mc,
                         const char *tag, int n, int only, int *copies)
{
    char key[128];
    int i, k, w[4], nw, missing = 0;

    *copies = 0;
    for (i = 0; i < n; i++) {
        apr_snprintf(key, sizeof(key), "%s%s%08d", MEMSESS_SESS_PREFIX, tag,
                     i);
        nw = memsess_place_key(pl, key + 14, strlen(key + 14), w, 4);
        for (k = 0; k < nw; k++) {
            size_t len;
            uint32_t flags;
            memcached_return_t rc;
            char *v;

            if (only >= 0 && w[k] != only) {
                continue;
            }
            v = memcached_get(mc[w[k]], key, strlen(key), &len, &flags, &rc);
            (*copies)++;
            missing += !v;
            free(v);
        }
    }
    return missing;
}

/* --leftover (see the top). */
static int leftover_cli(int argc, char **argv)
{
    memcached_st *mc[3];
    memsess_place_t *now, *next;
    memsess_sync_spec_t spec;
    memsess_sync_list_t l;
    char err[256] = "", key[128];
    const char *value = "n|i:9;", *old = "n|i:1;";
    int i, n, w[4], nw, t, left = 0, undone = 0, stale = 0;
    apr_uint64_t deleted;
    apr_status_t rv;

    if (argc < 7 || (n = atoi(argv[6])) < 1) {
        fprintf(stderr, "usage: %s --leftover HOST PORT1 PORT2 PORT3 N\n",
                argv[0]);
        return 2;
    }
    three_emptied(argv, mc, &l, 0);
    l.path_next = apr_psprintf(p, "%s:%s,%s:%s", argv[2], argv[3], argv[2],
                               argv[4]);
    l.ketama = 1;
    l.next_own = 1;
    l.next_ketama = 1;
    now = memsess_place_create(p, l.path_now, 0, 1);
    next = memsess_place_create(p, l.path_next, 0, 1);
    seed_sessions(now, mc, "lo", n, value, -1);
    for (i = 0; i < n; i++) {
        apr_snprintf(key, sizeof(key), "%slo%08d", MEMSESS_SESS_PREFIX, i);
        nw = memsess_place_key(now, key + 14, strlen(key + 14), w, 4);
        if (nw < 1 || w[0] != 2) {
            continue;   /* it stays where it is */
        }
        /* the third server's: an old copy where the next list places it,
         * left there by an earlier change; every other user logs out */
        memsess_place_key(next, key + 14, strlen(key + 14), &t, 1);
        memcached_set(mc[t], key, strlen(key), old, strlen(old), 3600, 0);
        left++;
        if (i % 2) {
            memcached_delete(mc[2], key, strlen(key), 0);
        }
    }
    memset(&spec, 0, sizeof(spec));
    spec.lists = &l;
    spec.nlists = 1;
    spec.timeout = apr_time_from_msec(500);
    rv = sync_before_only(&spec, err, sizeof(err), &deleted);
    for (i = 0; i < n; i++) {
        char *v;
        size_t len;
        uint32_t flags;
        memcached_return_t rc;

        apr_snprintf(key, sizeof(key), "%slo%08d", MEMSESS_SESS_PREFIX, i);
        nw = memsess_place_key(now, key + 14, strlen(key + 14), w, 4);
        if (nw < 1 || w[0] != 2) {
            continue;
        }
        memsess_place_key(next, key + 14, strlen(key + 14), &t, 1);
        v = memcached_get(mc[t], key, strlen(key), &len, &flags, &rc);
        if (i % 2) {
            undone += v != NULL;
        }
        else {
            stale += !v || len != strlen(value) || memcmp(v, value, len);
        }
        free(v);
    }
    printf("leftover: %s, undone %d stale %d of %d old copies\n",
           rv == APR_SUCCESS ? "done" : err, undone, stale, left);
    for (i = 0; i < 3; i++) {
        memcached_free(mc[i]);
    }
    return rv == APR_SUCCESS && left && !undone && !stale ? 0 : 1;
}

/* --dups (see the top). */
static int dups_cli(int argc, char **argv)
{
    static dup_proxy_t px[3];
    memcached_st *mc[3];
    memsess_place_t *now, *next, *full;
    memsess_sync_spec_t spec;
    memsess_sync_list_t l;
    char err[256] = "";
    int i, n, proxy[3], missing, copies;
    apr_status_t rv;
    apr_uint64_t deleted;

    if (argc < 7 || (n = atoi(argv[6])) < 1) {
        fprintf(stderr, "usage: %s --dups HOST PORT1 PORT2 PORT3 N\n",
                argv[0]);
        return 2;
    }
    for (i = 0; i < 3; i++) {
        mc[i] = bench_conn(argv[2], atoi(argv[3 + i]));
        memcached_flush(mc[i], 0);
        if ((proxy[i] = dup_proxy_start(&px[i], atoi(argv[3 + i]))) < 0) {
            printf("dups: no proxy\n");
            return 1;
        }
    }
    /* a rebalance from no replica to one */
    memset(&l, 0, sizeof(l));
    l.path_now = l.path_next = apr_psprintf(p, "127.0.0.1:%d,127.0.0.1:%d,"
                                            "127.0.0.1:%d", proxy[0],
                                            proxy[1], proxy[2]);
    l.replicas = 0;
    l.ketama = 1;
    l.next_own = 1;
    l.next_replicas = 1;
    l.next_ketama = 1;
    now = memsess_place_create(p, l.path_now, 0, 1);
    next = memsess_place_create(p, l.path_next, 1, 1);
    seed_sessions(now, mc, "dp", n, "n|i:5;", -1);
    memset(&spec, 0, sizeof(spec));
    spec.lists = &l;
    spec.nlists = 1;
    spec.timeout = apr_time_from_msec(500);
    rv = sync_before_only(&spec, err, sizeof(err), &deleted);
    missing = count_missing(next, mc, "dp", n, -1, &copies);
    printf("dups: %s, missing %d deleted %" APR_UINT64_T_FMT " of %d "
           "copies\n", rv == APR_SUCCESS ? "done" : err, missing, deleted,
           copies);

    /* the rejoin of the second server, restarted empty: a full sync */
    for (i = 0; i < 3; i++) {
        memcached_flush(mc[i], 0);
    }
    memset(&l, 0, sizeof(l));
    l.path_next = apr_psprintf(p, "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d",
                               proxy[0], proxy[1], proxy[2]);
    l.path_now = apr_psprintf(p, "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d",
                              proxy[0], proxy[2], proxy[2]);
    l.replicas = 1;
    full = memsess_place_create(p, l.path_next, 1, 0);
    seed_sessions(full, mc, "dr", n, "n|i:5;", 1);
    spec.returning = apr_psprintf(p, "127.0.0.1:%d", proxy[1]);
    rv = sync_before_only(&spec, err, sizeof(err), &deleted);
    missing = count_missing(full, mc, "dr", n, 1, &copies);
    printf("dups rejoin: %s, missing %d deleted %" APR_UINT64_T_FMT " of %d "
           "copies\n", rv == APR_SUCCESS ? "done" : err, missing, deleted,
           copies);
    for (i = 0; i < 3; i++) {
        memcached_free(mc[i]);
    }
    return 0;
}

static int fence_allow;

static int fence_left(void *baton)
{
    (void)baton;
    return fence_allow-- > 0;
}

static apr_status_t fence_count(void *baton, const memsess_dump_item_t *it,
                                char *err, apr_size_t errlen)
{
    (void)err;
    (void)errlen;
    *(int *)baton += it->keylen > 5 && !memcmp(it->key, "shop/", 5);
    return APR_SUCCESS;
}

/* --fence (see the top). */
static int fence_cli(int argc, char **argv)
{
    memcached_st *mc[3];
    memsess_place_t *pl;
    memsess_sync_spec_t spec;
    memsess_sync_list_t l;
    memsess_sync_t *y;
    char err[256] = "", key[128];
    int i, n, found = 0;
    apr_status_t rv;
    apr_uint64_t copied;

    if (argc < 8 || (n = atoi(argv[6])) < 1) {
        fprintf(stderr, "usage: %s --fence HOST PORT1 PORT2 PORT3 N ALLOW\n",
                argv[0]);
        return 2;
    }
    fence_allow = atoi(argv[7]);
    pl = three_emptied(argv, mc, &l, 1);
    seed_sessions(pl, mc, "fn", n, "n|i:5;", -1);
    memset(&spec, 0, sizeof(spec));
    spec.lists = &l;
    spec.nlists = 1;
    spec.timeout = apr_time_from_msec(500);
    spec.prefix = MEMSESS_SESS_PREFIX;
    spec.next_prefix = "shop/";
    spec.fence = fence_left;
    y = memsess_sync_create(p, &spec, err, sizeof(err));
    rv = y ? memsess_sync_before(y, err, sizeof(err)) : APR_EGENERAL;
    copied = y ? memsess_sync_stats(y)->copied : 0;
    memsess_sync_destroy(y);
    for (i = 0; i < 3; i++) {
        memsess_dump_each(p, argv[2], (apr_port_t)atoi(argv[3 + i]), "x",
                          apr_time_from_sec(2), NULL, fence_count, &found,
                          key, sizeof(key));
        memcached_free(mc[i]);
    }
    printf("fence: %s (%s), copied %" APR_UINT64_T_FMT ", new-namespace "
           "keys %d\n", rv == APR_SUCCESS ? "done" : "stopped",
           rv == APR_SUCCESS ? "-" : err, copied, found);
    return 0;
}

/* --feed (see the top). */
#define FEED_VALUE (1000)   /* a session's size: its own slab class */

static void feed_value(char *buf, unsigned seq)
{
    int n = apr_snprintf(buf, FEED_VALUE, "n|i:%u;s:1:\"", seq);

    memset(buf + n, 'x', FEED_VALUE - 1 - n);
    buf[FEED_VALUE - 1] = '\0';
}

typedef struct {
    memcached_st    *mc[3];
    memsess_place_t *now;        /* servers 1 and 3 */
    int              users;
    apr_uint32_t     seq[300];   /* the last value written, per user */
    volatile int     stop;
    int              writes;
    /* sessions 300-599 log out now and then during the first pass */
    volatile int     logouts_on;
    apr_uint64_t     first_lines;   /* what the first pass lists */
    unsigned char    gone[300];
    int              logouts;
} feed_users_t;

/* The engine's progress: no more logouts near the end of its first pass
 * (the later passes must find those: a logout after them is the flip's
 * business, not this test's). */
static void feed_progress(void *baton, const memsess_sync_stats_t *st)
{
    feed_users_t *u = baton;

    if (st->lines >= u->first_lines) {
        u->logouts_on = 0;
    }
}

static void *feed_write(void *data)
{
    feed_users_t *u = data;
    char key[128], value[FEED_VALUE];
    unsigned r = 12345;

    while (!u->stop) {
        int i, k, w[4], nw;

        r = r * 1103515245u + 12345u;
        i = (int)((r >> 8) % (unsigned)u->users);
        apr_snprintf(key, sizeof(key), "%sfd%08d", MEMSESS_SESS_PREFIX, i);
        feed_value(value, u->seq[i] + 1);
        nw = memsess_place_key(u->now, key + 14, strlen(key + 14), w, 4);
        for (k = 0; k < nw; k++) {
            memcached_set(u->mc[w[k] ? 2 : 0], key, strlen(key), value,
                          strlen(value), 3600, 0);
        }
        u->seq[i]++;
        u->writes++;
        if (u->logouts_on && !(u->writes % 20)) {
            int j = 300 + (int)((r >> 4) % 300u);

            apr_snprintf(key, sizeof(key), "%sfd%08d", MEMSESS_SESS_PREFIX,
                         j);
            nw = memsess_place_key(u->now, key + 14, strlen(key + 14), w, 4);
            for (k = 0; k < nw; k++) {
                memcached_delete(u->mc[w[k] ? 2 : 0], key, strlen(key), 0);
            }
            u->logouts += !u->gone[j - 300];
            u->gone[j - 300] = 1;
        }
        usleep(200);
    }
    return NULL;
}

static int feed_cli(int argc, char **argv)
{
    memcached_st *mc[3];
    memsess_place_t *full, *now;
    memsess_sync_spec_t spec;
    memsess_sync_list_t l;
    memsess_sync_t *y;
    const memsess_sync_stats_t *st;
    feed_users_t u;
    pthread_t th;
    char err[256] = "", key[128], first[FEED_VALUE];
    int i, k, n, other, stale = 0, missing = 0;
    apr_status_t rv;

    int grow = !strcmp(argv[1], "--feed-grow"), undone = 0;

    if (argc < 9 || (n = atoi(argv[6])) < 600) {
        fprintf(stderr, "usage: %s --feed|--feed-grow HOST PORT1 PORT2 PORT3 "
                "N OTHER CAP (N >= 600)\n", argv[0]);
        return 2;
    }
    other = atoi(argv[7]);
    full = three_emptied(argv, mc, &l, 1);
    l.path_now = apr_psprintf(p, "%s:%s,%s:%s", argv[2], argv[3], argv[2],
                              argv[5]);
    now = memsess_place_create(p, l.path_now, 1, 0);
    memcached_behavior_set(mc[2], MEMCACHED_BEHAVIOR_NOREPLY, 1);
    memcached_behavior_set(mc[2], MEMCACHED_BEHAVIOR_BUFFER_REQUESTS, 1);
    for (i = 0; i < other; i++) {
        apr_snprintf(key, sizeof(key), "app:cache:%d", i);
        memcached_set(mc[2], key, strlen(key), "xxxxxxxx", 8, 0, 0);
    }
    memcached_flush_buffers(mc[2]);
    memcached_behavior_set(mc[2], MEMCACHED_BEHAVIOR_BUFFER_REQUESTS, 0);
    memcached_behavior_set(mc[2], MEMCACHED_BEHAVIOR_NOREPLY, 0);
    /* the outage: every session where the list without PORT2 puts it */
    feed_value(first, 0);
    for (i = 0; i < n; i++) {
        int w[4], nw;

        apr_snprintf(key, sizeof(key), "%sfd%08d", MEMSESS_SESS_PREFIX, i);
        nw = memsess_place_key(now, key + 14, strlen(key + 14), w, 4);
        for (k = 0; k < nw; k++) {
            memcached_set(mc[w[k] ? 2 : 0], key, strlen(key), first,
                          strlen(first), 3600, 0);
        }
    }
    memset(&u, 0, sizeof(u));
    u.now = now;
    u.users = 300;
    for (i = 0; i < 3; i++) {
        u.mc[i] = bench_conn(argv[2], atoi(argv[3 + i]));
    }
    memset(&spec, 0, sizeof(spec));
    /* a rejoin of PORT2, or the pool grown from PORT1, PORT3 to all three */
    spec.returning = grow ? NULL : apr_psprintf(p, "%s:%s", argv[2], argv[4]);
    spec.lists = &l;
    spec.nlists = 1;
    spec.timeout = apr_time_from_msec(500);
    spec.feed = (apr_size_t)atoi(argv[8]);
    spec.feed_min = MEMSESS_SYNC_FEED_MIN;
    spec.progress = feed_progress;
    spec.baton = &u;
    u.logouts_on = 1;
    u.first_lines = (apr_uint64_t)(other + 2 * n) * 9 / 10;
    pthread_create(&th, NULL, feed_write, &u);
    y = memsess_sync_create(p, &spec, err, sizeof(err));
    rv = y ? memsess_sync_before(y, err, sizeof(err)) : APR_EGENERAL;
    u.stop = 1;
    pthread_join(th, NULL);
    if (rv == APR_SUCCESS) {
        rv = memsess_sync_after(y, 0, err, sizeof(err));
    }
    if (rv != APR_SUCCESS) {
        printf("feed: failed: %s\n", err);
        memsess_sync_destroy(y);
        return 1;
    }
    /* every session on PORT2 as last written */
    for (i = 0; i < n; i++) {
        int w[4];
        size_t len;
        uint32_t flags;
        memcached_return_t rc;
        char want[FEED_VALUE], *v;

        apr_snprintf(key, sizeof(key), "%sfd%08d", MEMSESS_SESS_PREFIX, i);
        if (memsess_place_key(full, key + 14, strlen(key + 14), w, 4) < 1
            || (w[0] != 1 && !grow)) {
            continue;
        }
        feed_value(want, i < u.users ? u.seq[i] : 0);
        v = memcached_get(mc[w[0]], key, strlen(key), &len, &flags, &rc);
        if (i >= 300 && i < 600 && u.gone[i - 300]) {
            undone += v != NULL;
        }
        else if (!v) {
            missing++;
        }
        else if (len != strlen(want) || memcmp(v, want, len)) {
            stale++;
        }
        free(v);
    }
    st = memsess_sync_stats(y);
    printf("%s: fed %" APR_UINT64_T_FMT " lost %" APR_UINT64_T_FMT
           " lines %" APR_UINT64_T_FMT " other %d stale %d missing %d "
           "undone %d (%d writes, %d logouts, %" APR_UINT64_T_FMT
           " copied, %" APR_UINT64_T_FMT " deleted)\n", argv[1] + 2,
           st->fed, st->feed_lost, st->lines, other, stale, missing, undone,
           u.writes, u.logouts, st->copied, st->deleted);
    memsess_sync_destroy(y);
    for (i = 0; i < 3; i++) {
        memcached_free(mc[i]);
        memcached_free(u.mc[i]);
    }
    return 0;
}

int main(int argc, char **argv)
{
    int rc;

    apr_initialize();
    apr_pool_create(&p, NULL);
    if (argc > 1 && !strcmp(argv[1], "--place")) {
        rc = place_cli(argc, argv);
    }
    else if (argc > 1 && !strcmp(argv[1], "--bench")) {
        rc = bench_cli(argc, argv);
    }
    else if (argc > 1 && !strcmp(argv[1], "--copy")) {
        rc = copy_cli(argc, argv);
    }
    else if (argc > 1 && !strcmp(argv[1], "--rename")) {
        rc = rename_cli(argc, argv);
    }
    else if (argc > 1 && !strcmp(argv[1], "--fence")) {
        rc = fence_cli(argc, argv);
    }
    else if (argc > 1 && !strcmp(argv[1], "--dups")) {
        rc = dups_cli(argc, argv);
    }
    else if (argc > 1 && !strcmp(argv[1], "--leftover")) {
        rc = leftover_cli(argc, argv);
    }
    else if (argc > 1 && (!strcmp(argv[1], "--feed")
                          || !strcmp(argv[1], "--feed-grow"))) {
        rc = feed_cli(argc, argv);
    }
    else {
        test_dump_parse();
        test_feed_parse();
        test_key_kind();
        test_place();
        test_decide();
        test_flip_step();
        test_slot();
        test_reset();
        test_delta();
        rc = done_testing();
    }
    apr_pool_destroy(p);
    apr_terminate();
    return rc;
}
