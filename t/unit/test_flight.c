/* Unit tests of memsess_flight.c: which requests began before a flip.
 * The last part races a "sync" that publishes a list and waits for the
 * requests that began before it against "requests" that read the list:
 * a request the sync did not wait for never read the old list. */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "apr_general.h"

#include "memsess_flight.h"
#include "tap.h"

#define WORKERS 4

static int seen_n;
static char seen_last[MEMSESS_SESSION_ID_MAX + 1];

static void seen(void *baton, const char *id, apr_size_t len)
{
    (void)baton;
    memcpy(seen_last, id, len);
    seen_last[len] = '\0';
    seen_n++;
}

static int dead_pid(apr_uint32_t pid)
{
    return pid != 4242;   /* 4242 crashed */
}

/* The race: one published word stands for the table; drained, the last
 * list the "sync" stopped waiting for. */
static memsess_flight_t *rf;
static volatile apr_uint64_t published, drained;
static volatile int stop_race;
static volatile long missed, requests;

static void *request_thread(void *data)
{
    int w = (int)(long)data;

    while (!stop_race) {
        apr_uint64_t v = memsess_flight_enter(rf, w, 1);
        apr_uint64_t mine = __atomic_load_n(&published, __ATOMIC_SEQ_CST);

        /* still in flight: a sync done with a later list did not wait */
        if (__atomic_load_n(&drained, __ATOMIC_SEQ_CST) > mine) {
            __atomic_add_fetch(&missed, 1, __ATOMIC_SEQ_CST);
        }
        __atomic_add_fetch(&requests, 1, __ATOMIC_RELAXED);
        memsess_flight_leave(rf, w, v);
    }
    return NULL;
}

static int inflight_n, inflight_worker;
static apr_uint64_t inflight_value;
static char inflight_last[MEMSESS_SESSION_ID_MAX + 1];

static void inflight(void *baton, const char *id, apr_size_t len, int worker,
                     apr_uint64_t value)
{
    (void)baton;
    memcpy(inflight_last, id, len);
    inflight_last[len] = '\0';
    inflight_worker = worker;
    inflight_value = value;
    inflight_n++;
}

int main(void)
{
    apr_size_t bsize = memsess_flight_size(4);
    char *block = calloc(1, bsize);
    memsess_flight_t *f;
    apr_uint64_t e, a, b;
    pthread_t th[4];
    int i, flips = 0;
    apr_time_t until;

    apr_initialize();

    ok(memsess_flight_size(4) > memsess_flight_size(1),
       "the size grows with the workers");
    ok(!memsess_flight_init(block, 8, 4), "too small a block is refused");
    ok(!memsess_flight_init(block, bsize, 0), "no workers: refused");
    f = memsess_flight_init(block, bsize, 4);
    ok(f && memsess_flight_nworkers(f) == 4, "four workers");
    ok(memsess_flight_attach(block, bsize) == f,
       "attached again (a graceful)");
    ok(!memsess_flight_attach(block, 16), "a short segment is refused");

    ok(memsess_flight_before(f, memsess_flight_flip(f), NULL) == 0,
       "no request: nothing to wait for");
    a = memsess_flight_enter(f, 0, 100);
    b = memsess_flight_enter(f, 1, 101);
    ok(a && b && a != b, "two requests, two entries of their own");
    ok(!memsess_flight_enter(f, 4, 1) && !memsess_flight_enter(f, -1, 1),
       "a worker out of bounds is not counted");
    e = memsess_flight_flip(f);
    ok(memsess_flight_before(f, e, NULL) == 2,
       "after a flip: both began before it");
    memsess_flight_leave(f, 0, memsess_flight_enter(f, 2, 102));
    ok(memsess_flight_before(f, e, NULL) == 2,
       "one that began after it is not waited for");
    memsess_flight_leave(f, 0, a);
    ok(memsess_flight_before(f, e, NULL) == 1, "one ended: one left");
    memsess_flight_leave(f, 1, a);
    ok(memsess_flight_before(f, e, NULL) == 1,
       "another request's value does not clear an entry");
    memsess_flight_leave(f, 1, b);
    ok(memsess_flight_before(f, e, NULL) == 0, "both ended");

    a = memsess_flight_enter(f, 3, 4242);
    b = memsess_flight_enter(f, 2, 77);
    e = memsess_flight_flip(f);
    ok(memsess_flight_before(f, e, dead_pid) == 1,
       "a crashed process's request is not waited for");
    memsess_flight_leave(f, 3, a);
    memsess_flight_leave(f, 2, b);

    a = memsess_flight_enter(f, 0, 5);
    e = memsess_flight_flip(f);
    b = memsess_flight_enter(f, 0, 5);   /* the next request, same worker */
    memsess_flight_leave(f, 0, a);       /* the first ends late */
    ok(memsess_flight_before(f, e, NULL) == 0
       && memsess_flight_before(f, memsess_flight_flip(f), NULL) == 1,
       "a request ending late leaves the next one's entry alone");
    memsess_flight_leave(f, 0, b);

    /* the ring of recent sessions */
    {
        apr_time_t t0 = apr_time_now();
        seen_n = 0;
        memsess_flight_note(f, "abc", 3);
        memsess_flight_note(f, "", 0);
        memsess_flight_note(f, "x", MEMSESS_SESSION_ID_MAX + 1);
        ok(memsess_flight_recent(f, t0, seen, NULL) == 1 && seen_n == 1
           && !strcmp(seen_last, "abc"),
           "a session noted is given back; an empty or too long id is not");
        ok(memsess_flight_recent(f, apr_time_now() + 1, seen, NULL) == 0,
           "none noted since a later time");
        for (i = 0; i < MEMSESS_RECENT_MAX + 10; i++) {
            char id[16];

            memsess_flight_note(f, id, (apr_size_t)sprintf(id, "s%d", i));
        }
        seen_n = 0;
        ok(memsess_flight_recent(f, t0, seen, NULL) == MEMSESS_RECENT_MAX,
           "the ring keeps the last %d", MEMSESS_RECENT_MAX);
    }

    /* the session each running request names, for a flip's snapshot */
    {
        apr_uint64_t c;

        inflight_n = 0;
        a = memsess_flight_enter(f, 0, 10);
        memsess_flight_session(f, 0, a, "sessA", 5);
        b = memsess_flight_enter(f, 1, 11);   /* no cookie: no session */
        c = memsess_flight_enter(f, 2, 12);
        memsess_flight_session(f, 2, a, "wrong", 5);   /* not its value */
        e = memsess_flight_flip(f);
        memsess_flight_session(f, 3, memsess_flight_enter(f, 3, 13), "late",
                               4);   /* began after the flip */
        ok(memsess_flight_inflight(f, e, inflight, NULL) == 1
           && inflight_n == 1 && !strcmp(inflight_last, "sessA")
           && inflight_worker == 0 && inflight_value == a,
           "the requests running at a flip: only those that name a session "
           "of their own, begun before it");
        ok(memsess_flight_still(f, 0, a) && !memsess_flight_still(f, 0, b)
           && !memsess_flight_still(f, 9, a) && !memsess_flight_still(f, 0, 0),
           "still running: by its own value");
        memsess_flight_leave(f, 0, a);
        ok(!memsess_flight_still(f, 0, a), "ended: no longer running");
        a = memsess_flight_enter(f, 0, 10);   /* the worker's next request */
        inflight_n = 0;
        ok(memsess_flight_inflight(f, memsess_flight_flip(f), inflight, NULL)
           == 1 && inflight_worker == 3,
           "the worker's next request does not name the last one's session");
        memsess_flight_leave(f, 0, a);
        memsess_flight_leave(f, 1, b);
        memsess_flight_leave(f, 2, c);
        memsess_flight_leave(f, 3, memsess_flight_enter(f, 3, 13));
    }

    /* the race: after each publication and flip, a request that was not
     * waited for must have read the new list */
    rf = f;
    published = 1;
    for (i = 0; i < WORKERS; i++) {
        pthread_create(&th[i], NULL, request_thread, (void *)(long)i);
    }
    /* the requests first running (valgrind runs one thread at a time) */
    until = apr_time_now() + apr_time_from_sec(10);
    while (__atomic_load_n(&requests, __ATOMIC_SEQ_CST) < 1000
           && apr_time_now() < until) {
        sched_yield();
    }
    for (flips = 0; (flips < 20000 || requests < 200000)
                    && apr_time_now() < until; flips++) {
        apr_uint64_t list = flips + 2;

        __atomic_store_n(&published, list, __ATOMIC_SEQ_CST);
        e = memsess_flight_flip(f);
        while (memsess_flight_before(f, e, NULL)) {
            ;
        }
        __atomic_store_n(&drained, list, __ATOMIC_SEQ_CST);
    }
    stop_race = 1;
    for (i = 0; i < WORKERS; i++) {
        pthread_join(th[i], NULL);
    }
    ok(missed == 0 && requests > 0 && flips > 0, "%d flips raced by %ld requests on %d "
       "workers: none with an old list outlived a sync's wait (%ld did)",
       flips, requests, WORKERS, missed);
    free(block);
    return done_testing();
}
