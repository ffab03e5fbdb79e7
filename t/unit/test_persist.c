/* Unit tests of memsess_persist.c: what the write-behind writes (only what
 * changed, by cas and expiry), what it deletes (stored and no longer
 * listed), a stored row read back (untrusted), the value's encoding, and
 * which stored sessions a returning server gets back. */
#include <string.h>

#include "apr_general.h"
#include "apr_strings.h"

#include "memsess_listing.h"
#include "memsess_persist.h"
#include "memsess_table.h"
#include "tap.h"

#define K1 MEMSESS_SESS_PREFIX "abc"
#define K2 MEMSESS_SESS_PREFIX "def"

static int gone_count;

static int gone(void *baton, const char *key, apr_size_t len,
                apr_uint64_t process)
{
    (void)process;
    gone_count++;
    is_str(apr_pstrmemdup(baton, key, len), K2, "the logged out one is unseen");
    return 1;
}

static int roundtrip(const unsigned char *in, apr_size_t len)
{
    char text[64];
    unsigned char back[64];
    apr_size_t blen = 0;

    memsess_b64_encode(text, in, len);
    return strlen(text) == memsess_b64_len(len)
           && memsess_b64_decode(text, strlen(text), back, sizeof(back),
                                 &blen)
           && blen == len && !memcmp(back, in, len);
}

int main(void)
{
    apr_pool_t *p;
    memsess_track_t *t;
    memsess_row_t row;
    unsigned char out[8];
    apr_size_t olen;
    char enc[16];
    int where[3];
    unsigned char survivor[4] = { 0, 0, 0, 0 };
    apr_size_t n;

    apr_initialize();
    apr_pool_create(&p, NULL);

    /* change tracking */
    t = memsess_track_create();
    memsess_track_round(t);
    ok(memsess_track_seen(t, K1, strlen(K1), 7, 100, 1),
       "a session never written is written");
    ok(memsess_track_pending(t) == 1, "and pending until it is");
    memsess_track_stored(t, K1, strlen(K1), 7, 100, 1, 0);
    ok(memsess_track_pending(t) == 0, "stored: nothing pending");
    ok(!memsess_track_seen(t, K1, strlen(K1), 7, 100, 1),
       "the same cas and expiry: not written again");
    ok(memsess_track_seen(t, K1, strlen(K1), 8, 100, 1),
       "a new cas (a write): written");
    memsess_track_stored(t, K1, strlen(K1), 8, 100, 1, 0);
    ok(memsess_track_seen(t, K1, strlen(K1), 8, 160, 1),
       "a new expiry (a touch): written");
    memsess_track_stored(t, K1, strlen(K1), 8, 160, 1, 0);
    memsess_track_stored(t, K2, strlen(K2), 3, 100, 0, 0);
    ok(memsess_track_stored_count(t) == 2, "two stored");
    memsess_track_round(t);
    memsess_track_seen(t, K1, strlen(K1), 8, 160, 1);
    gone_count = 0;
    memsess_track_unseen(t, gone, p);
    ok(gone_count == 1, "one stored session not listed this round");
    ok(memsess_track_stored_count(t) == 1, "it is forgotten once deleted");
    memsess_track_round(t);
    memsess_track_seen(t, K2, strlen(K2), 9, 100, 1);
    memsess_track_round(t);
    memsess_track_prune(t);
    ok(memsess_track_stored_count(t) == 1, "pruning keeps what is stored");
    memsess_track_destroy(t);

    /* a new cas for the same value (a restore's add): no write */
    t = memsess_track_create();
    memsess_track_round(t);
    {
        apr_uint64_t d1 = memsess_persist_digest("aGk=", 0);
        apr_uint64_t d2 = memsess_persist_digest("aGl=", 0);

        ok(d1 && d2 && d1 != d2, "digests: never 0, apart for other values");
        ok(memsess_persist_digest("aGk=", 1) != d1,
           "digests: the flags count");
        ok(!memsess_track_unchanged(t, K1, strlen(K1), d1, 100),
           "never stored: changed");
        memsess_track_stored(t, K1, strlen(K1), 7, 100, 1, d1);
        ok(memsess_track_unchanged(t, K1, strlen(K1), d1, 100),
           "stored with that value and expiry: unchanged");
        ok(!memsess_track_unchanged(t, K1, strlen(K1), d2, 100),
           "another value: changed");
        ok(!memsess_track_unchanged(t, K1, strlen(K1), d1, 160),
           "another expiry: changed");
        memsess_track_stored(t, K2, strlen(K2), 3, 100, 0, 0);
        ok(!memsess_track_unchanged(t, K2, strlen(K2), d1, 100),
           "read back without its value (digest unknown): changed");
        memsess_track_stored(t, K1, strlen(K1), 9, 100, 1, 0);
        ok(memsess_track_unchanged(t, K1, strlen(K1), d1, 100),
           "a new cas noted without a value keeps the digest");
    }
    memsess_track_destroy(t);

    /* base64 */
    ok(roundtrip((const unsigned char *)"", 0), "base64: empty");
    ok(roundtrip((const unsigned char *)"a", 1), "base64: one byte");
    ok(roundtrip((const unsigned char *)"ab", 2), "base64: two bytes");
    ok(roundtrip((const unsigned char *)"a|s:1:\"x\";\0\377", 12),
       "base64: a session with a NUL and 0xff");
    memsess_b64_encode(enc, (const unsigned char *)"hi", 2);
    is_str(enc, "aGk=", "base64 as RFC 4648 spells it");
    ok(!memsess_b64_decode("aGk", 3, out, sizeof(out), &olen),
       "refused: not a multiple of 4");
    ok(!memsess_b64_decode("aG=k", 4, out, sizeof(out), &olen),
       "refused: a character after the padding");
    ok(!memsess_b64_decode("aGl=", 4, out, sizeof(out), &olen),
       "refused: padding bits not zero (two texts for one value)");
    ok(!memsess_b64_decode("aGk*", 4, out, sizeof(out), &olen),
       "refused: not base64");
    ok(!memsess_b64_decode("aGVsbG8gd29ybGQ=", 16, out, 4, &olen),
       "refused: longer than the room for it");

    /* rows */
    ok(!memsess_row_parse(NULL, K1, "0", "1800000000", "42", &row)
       && row.exp == 1800000000 && row.cas == 42 && row.idlen == 3,
       "a row of ours reads back");
    ok(memsess_row_parse(NULL, "other:key", "0", "0", "1", &row) != NULL,
       "refused: not a PHP session's key");
    ok(memsess_row_parse(NULL, K1, "-1", "0", "1", &row) != NULL,
       "refused: negative flags");
    ok(memsess_row_parse(NULL, K1, "4294967296", "0", "1", &row) != NULL,
       "refused: flags beyond 32 bits");
    ok(memsess_row_parse(NULL, K1, "0", "99999999999999999999", "1", &row) != NULL,
       "refused: an expiry beyond 64 bits");
    ok(memsess_row_parse(NULL, K1, "0", "1", "", &row) != NULL,
       "refused: an empty cas");
    ok(memsess_row_parse(NULL, MEMSESS_SESS_PREFIX "a b", "0", "1", "1", &row)
       != NULL, "refused: a key memcached would refuse");
    ok(memsess_row_parse(NULL, NULL, "0", "1", "1", &row) != NULL,
       "refused: no key (a NULL column)");

    /* lifetime */
    ok(memsess_persist_restore_exp(0, 1000) == 0, "never expires: 0");
    ok(memsess_persist_restore_exp(1500, 1000) == 1500,
       "what is left of its lifetime");
    ok(memsess_persist_restore_exp(1001, 1000) == -1,
       "expired (a second or less left): not restored");

    /* the decision: servers 0..3, 2 returning */
    where[0] = 2; where[1] = 3;
    ok(memsess_persist_restore_decide(where, 2, 2, survivor),
       "placed on it, no survivor holds it: restored");
    survivor[3] = 1;
    ok(!memsess_persist_restore_decide(where, 2, 2, survivor),
       "its replica's server kept its memory: not restored (it is there, "
       "or it was logged out there)");
    where[0] = 0; where[1] = 1;
    ok(!memsess_persist_restore_decide(where, 2, 2, survivor),
       "not placed on the returning server: not restored there");

    /* the rate */
    n = (apr_size_t)memsess_persist_budget(5000, apr_time_from_sec(10));
    ok(n == 50000, "5000 a second for 10s: 50,000 a round");
    ok(memsess_persist_budget(0, apr_time_from_sec(10)) == APR_INT64_MAX,
       "0: unbounded");
    ok(memsess_persist_budget(1, apr_time_from_msec(100)) == 1,
       "at least one a round");
    is_str(memsess_persist_role_name(MEMSESS_PERSIST_ROLE_STANDBY), "standby",
           "roles are named");

    /* the writer's lease (memsess_writers), by our own clock only */
    {
        memsess_lease_t l;
        apr_time_t s = apr_time_from_sec(1), ttl = apr_time_from_sec(30);

        memset(&l, 0, sizeof(l));
        ok(memsess_lease_next(&l, 0, NULL, 0, 0, "web1", s, ttl)
           == MEMSESS_LEASE_CLAIM, "no row: claimed");
        l.token = 1;
        ok(memsess_lease_next(&l, 1, "web1", 1, 5, "web1", s, ttl)
           == MEMSESS_LEASE_RENEW, "ours under our token: renewed");
        ok(memsess_lease_next(&l, 1, "web1", 2, 0, "web1", s, ttl)
           == MEMSESS_LEASE_TAKE,
           "ours under another token (a thread of ours before this one): "
           "taken anew, fencing that one off");
        l.token = 4;
        ok(memsess_lease_next(&l, 1, "web2", 5, 0, "web1", s, ttl)
           == MEMSESS_LEASE_WAIT && l.token == 0,
           "another's: we hold nothing, we wait");
        ok(memsess_lease_next(&l, 1, "web2", 5, 0, "web1", s + ttl, ttl)
           == MEMSESS_LEASE_WAIT, "unmoved for just the ttl: still waiting");
        ok(memsess_lease_next(&l, 1, "web2", 5, 1, "web1", s + ttl + 1, ttl)
           == MEMSESS_LEASE_WAIT, "its beat moved: the wait starts again");
        ok(memsess_lease_next(&l, 1, "web2", 5, 1, "web1", s + 2 * ttl, ttl)
           == MEMSESS_LEASE_WAIT, "unmoved for just the ttl since");
        ok(memsess_lease_next(&l, 1, "web2", 5, 1, "web1",
                              s + 2 * ttl + 2, ttl) == MEMSESS_LEASE_TAKE,
           "unmoved for longer than the ttl, by our clock: taken over");
        ok(memsess_lease_next(&l, 1, "web3", 6, 0, "web1",
                              s + 2 * ttl + 3, ttl) == MEMSESS_LEASE_WAIT,
           "taken by a third first (a new token): we wait again");
        ok(memsess_lease_next(&l, 1, "web3", 6, 0, "web1",
                              s - apr_time_from_sec(3600), ttl)
           == MEMSESS_LEASE_WAIT,
           "a time before the row was first seen: no take");
    }

    apr_pool_destroy(p);
    apr_terminate();
    return done_testing();
}
