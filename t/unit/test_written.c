/* Unit tests of memsess_written.c: the sync's table of what it wrote,
 * against a plain model: entries found until deleted, deletions inside
 * clusters of one home entry (wrapping round the table's end) leave every
 * other entry findable, growth keeps them all, memory per key bounded. */
#include <stdlib.h>

#include "apr_general.h"

#include "memsess_written.h"
#include "tap.h"

#define N (100000)

static apr_uint64_t rnd(apr_uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

int main(void)
{
    memsess_written_set_t *w = memsess_written_create(42);
    apr_uint64_t *d = malloc(N * sizeof(*d)), x = 88172645463325252ULL;
    char *live = calloc(N, 1);
    memsess_written_t *e;
    int i, bad = 0, n = 0;

    apr_initialize();
    ok(w && d && live, "an empty set");
    ok(!memsess_written_get(w, 7), "nothing found in it");
    memsess_written_del(w, 7);
    ok(memsess_written_count(w) == 0, "deleting from it: nothing");

    for (i = 0; i < N; i++) {
        d[i] = rnd(&x) | 1;
        e = memsess_written_put(w, d[i]);
        if (!e || e->s || e->authority) {
            bad++;
            continue;
        }
        e->s = (apr_uint64_t)i;
        e->authority = (apr_uint64_t)i * 3;
        live[i] = 1;
    }
    ok(!bad && memsess_written_count(w) == N, "%d entries made, each empty at first", N);
    for (i = 0; i < N; i += 2) {
        memsess_written_del(w, d[i]);
        live[i] = 0;
    }
    for (i = 0, bad = 0; i < N; i++) {
        e = memsess_written_get(w, d[i]);
        bad += live[i] ? !e || e->s != (apr_uint64_t)i || e->authority != (apr_uint64_t)i * 3 : !!e;
    }
    ok(!bad && memsess_written_count(w) == N / 2,
       "half deleted: the others found with their values, the deleted ones not");
    ok(memsess_written_bytes(w) <= 64 * (apr_size_t)N / 2 * 2 + 4096 * 24
       && memsess_written_bytes(w) >= 24 * (apr_size_t)N * 4 / 3,
       "memory: %lu bytes for %d keys (24 bytes an entry, at most 3/4 full)",
       (unsigned long)memsess_written_bytes(w), N);
    e = memsess_written_put(w, d[1]);
    ok(e && e->s == 1, "put of a key already there: its entry, as it was");
    memsess_written_destroy(w);

    /* clusters: every digest with the same low bits (one home entry in a
     * table of 4096), some homed at its last entries (the probe wraps) */
    w = memsess_written_create(1);
    for (i = 0; i < 40; i++) {
        d[i] = ((apr_uint64_t)(i + 1) << 32) | (i < 20 ? 5 : 4094);
        memsess_written_put(w, d[i])->s = (apr_uint64_t)i + 1;
        live[i] = 1;
    }
    for (i = 0; i < 40; i += 3) {
        memsess_written_del(w, d[i]);
        live[i] = 0;
        memsess_written_del(w, d[i]);   /* twice: nothing more */
    }
    for (i = 0, bad = 0; i < 40; i++) {
        e = memsess_written_get(w, d[i]);
        bad += live[i] ? !e || e->s != (apr_uint64_t)i + 1 : !!e;
        n += live[i];
    }
    ok(!bad && memsess_written_count(w) == (apr_size_t)n,
       "deletions inside clusters, one wrapping round the end: the rest found");
    for (i = 0; i < 40; i++) {
        memsess_written_del(w, d[i]);
    }
    ok(memsess_written_count(w) == 0 && !memsess_written_get(w, d[39]), "all deleted: empty");
    memsess_written_destroy(w);

    w = memsess_written_create(9);
    ok(memsess_written_digest(w, "memc.sess.key.a", 15, 0)
       != memsess_written_digest(w, "memc.sess.key.a", 15, 1),
       "one key at two targets: two digests");
    {
        memsess_written_set_t *w2 = memsess_written_create(10);

        ok(memsess_written_digest(w, "memc.sess.key.a", 15, 0)
           != memsess_written_digest(w2, "memc.sess.key.a", 15, 0),
           "another seed: another digest");
        memsess_written_destroy(w2);
    }
    ok(memsess_written_digest(w, "", 0, 0) != 0, "never 0 (a free entry)");
    memsess_written_destroy(w);
    free(d);
    free(live);
    i = done_testing();
    apr_terminate();
    return i;
}
