/* Unit tests of memsess_table.c: layout, the up/down state machine, the
 * published save_paths and the seqlock readers, over malloc'd memory. */
#include <stdlib.h>
#include <pthread.h>
#include <sched.h>

#include "apr_general.h"
#include "apr_strings.h"

#include "memsess_pool.h"
#include "memsess_table.h"
#include "memsess_clocks.h"
#include "tap.h"

static apr_pool_t *p;

static memsess_pool_t *pool_of(const char *a, const char *b, const char *c,
                               int s0, int s1, int s2)
{
    char *argv[3];
    memsess_pool_t *pool = NULL;

    argv[0] = (char *)a; argv[1] = (char *)b; argv[2] = (char *)c;
    memsess_pool_parse(p, 3, argv, &pool);
    APR_ARRAY_IDX(pool->servers, 0, memsess_server_t).slot = s0;
    APR_ARRAY_IDX(pool->servers, 1, memsess_server_t).slot = s1;
    APR_ARRAY_IDX(pool->servers, 2, memsess_server_t).slot = s2;
    return pool;
}

static const char *view(memsess_table_t *t, int v, apr_uint32_t *nlive)
{
    char *buf = apr_palloc(p, 256);
    apr_uint32_t len;

    if (memsess_table_read_view(t, v, buf, 256, &len, nlive, NULL, NULL)) {
        return "(busy)";
    }
    return buf;
}

static void record(memsess_table_t *t, memsess_view_t *views, int i, int ok_)
{
    memsess_slot_t *slot = memsess_table_slot(t, i);

    memsess_table_write_begin(t);
    if (memsess_slot_record(slot, ok_, ok_ ? NULL : "refused", 100, 1000,
                            2, 2)) {
        memsess_table_bump_generation(t, 1);
        memsess_table_publish(t, views, 2, i, NULL);
    }
    memsess_table_write_end(t);
}

/* A writer thread flipping a view between two strings while readers
 * check they never see anything else. */
static memsess_table_t *race_table;
static memsess_view_t race_views[2];
static volatile int race_stop;

static void *race_writer(void *arg)
{
    int n = 0;

    (void)arg;
    while (!race_stop) {
        memsess_slot_t *slot = memsess_table_slot(race_table, 1);

        memsess_table_write_begin(race_table);
        slot->state = (n++ & 1) ? MEMSESS_DOWN : MEMSESS_UP;
        memsess_table_publish(race_table, race_views, 2, 1, NULL);
        memsess_table_write_end(race_table);
        sched_yield();   /* a real checker writes now and then */
    }
    return NULL;
}

int main(void)
{
    apr_uint32_t caps[2], nlive;
    memsess_view_t views[2] = {{0}};
    memsess_table_t *t, *t2;
    memsess_slot_t slot, copy;
    apr_size_t size;
    void *mem, *mem2;
    int i, changed, torn = 0, busy = 0, reads = 0;
    pthread_t writer;

    apr_initialize();
    apr_pool_create(&p, NULL);

    /* --- the state machine --- */
    memset(&slot, 0, sizeof(slot));
    ok(slot.state == MEMSESS_UNKNOWN && MEMSESS_IS_LIVE(slot.state),
       "a new server is unknown, and unknown counts as live");
    changed = memsess_slot_record(&slot, 0, "refused", 5, 10, 2, 2);
    ok(!changed && slot.state == MEMSESS_UNKNOWN,
       "one failure below the threshold changes nothing");
    changed = memsess_slot_record(&slot, 0, "timeout", 5, 11, 2, 2);
    ok(changed && slot.state == MEMSESS_DOWN, "FailThreshold failures: down");
    ok(slot.last_change == 11 && slot.state_changes == 1,
       "the change is stamped and counted");
    is_str(slot.last_error, "timeout", "the last error is kept");
    changed = memsess_slot_record(&slot, 1, NULL, 5, 12, 2, 2);
    ok(!changed && slot.state == MEMSESS_DOWN,
       "one pass below PassThreshold keeps it down");
    changed = memsess_slot_record(&slot, 0, "refused", 5, 13, 2, 2);
    ok(!changed && slot.consecutive_passes == 0 && slot.consecutive_fails == 1,
       "a failure resets the passes");
    memsess_slot_record(&slot, 1, NULL, 5, 14, 2, 2);
    changed = memsess_slot_record(&slot, 1, NULL, 7, 15, 2, 2);
    ok(changed && slot.state == MEMSESS_UP, "PassThreshold passes: up");
    ok(slot.checks == 6 && slot.failures == 3, "checks and failures counted");
    ok(slot.latency_us == 7 && slot.duration_us_sum == 32,
       "latency of the last probe and the sum of all");
    memset(&slot, 0, sizeof(slot));
    changed = memsess_slot_record(&slot, 1, NULL, 5, 10, 2, 3);
    ok(changed && slot.state == MEMSESS_UP,
       "unknown becomes up on its first good probe");
    memset(&slot, 0, sizeof(slot));
    changed = memsess_slot_record(&slot, 0, "x", 5, 10, 1, 1);
    ok(changed && slot.state == MEMSESS_DOWN, "FailThreshold 1: one failure");
    is_str(memsess_state_name(MEMSESS_DOWN), "down", "state names");

    /* --- layout --- */
    views[0].pool = pool_of("a:1", "b:2", "c:3", 0, 1, 2);
    views[0].format = MEMSESS_FORMAT_MEMCACHED;
    views[1].pool = pool_of("c:3", "d:4", "b:2", 2, 3, 1);
    views[1].format = MEMSESS_FORMAT_MEMCACHE;
    caps[0] = memsess_path_build(NULL, 0, views[0].pool, NULL, 0, 0) + 1;
    caps[1] = memsess_path_build(NULL, 0, views[1].pool, NULL, 1, 0) + 1;
    size = memsess_table_size(4, 2, caps);
    mem = malloc(size);
    ok(memsess_table_init(mem, size - 1, 4, 2, caps) == NULL,
       "refuses memory smaller than the layout");
    t = memsess_table_init(mem, size, 4, 2, caps);
    ok(t != NULL && memsess_table_nslots(t) == 4
       && memsess_table_nviews(t) == 2, "lays out 4 servers and 2 views");
    ok(memsess_table_attach(mem, size) == t, "attaches to its own layout");
    ((char *)mem)[0] ^= 1;
    ok(memsess_table_attach(mem, size) == NULL, "refuses a foreign segment");
    ((char *)mem)[0] ^= 1;

    memsess_table_write_begin(t);
    memsess_table_publish(t, views, 2, -1, NULL);
    memsess_table_write_end(t);
    is_str(view(t, 0, &nlive), "a:1,b:2,c:3", "all unknown: all published");
    ok(nlive == 3, "nlive 3");
    is_str(view(t, 1, &nlive), "tcp://c:3, tcp://d:4, tcp://b:2",
           "the second view in its own format");

    record(t, views, 1, 0);
    record(t, views, 1, 0);
    is_str(view(t, 0, &nlive), "a:1,c:3", "b down: dropped from view 0");
    ok(nlive == 2, "nlive 2");
    is_str(view(t, 1, &nlive), "tcp://c:3, tcp://d:4",
           "and from view 1, which shares it");
    ok(memsess_table_generation(t) == 1, "the generation moved once");

    for (i = 0; i < 4; i++) {
        record(t, views, i, 0);
        record(t, views, i, 0);
    }
    is_str(view(t, 0, &nlive), "a:1,b:2,c:3", "all down: fail open");
    ok(nlive == 0, "with nlive 0");
    record(t, views, 2, 1);
    record(t, views, 2, 1);
    is_str(view(t, 0, &nlive), "c:3", "c back: only c");
    ok(nlive == 1, "nlive 1");
    ok(memsess_table_state_changes(t) == memsess_table_generation(t),
       "every change counted");

    ok(memsess_table_read_slot(t, 2, &copy) == APR_SUCCESS
       && copy.state == MEMSESS_UP && copy.checks == 4,
       "a slot reads back consistently");

    /* a flip prepared as its time became known: a to come back (slot 0),
     * read from its time on, whether or not the checker lives to publish
     * it */
    {
        apr_time_t now = memsess_mono_now();

        memsess_table_write_begin(t);
        ok(memsess_table_prepare_flip(t, views, 2, 0, NULL,
                                      now + apr_time_from_sec(60)) == 1,
           "a flip of a prepared: one view holds it");
        memsess_table_write_end(t);
        is_str(view(t, 0, &nlive), "c:3", "before its time: as in force");
        {
            memsess_view_slot_t vs0, vs1;

            memsess_table_read_view_slot(t, 0, &vs0);
            memsess_table_read_view_slot(t, 1, &vs1);
            ok(vs0.gate == now + apr_time_from_sec(60) && vs1.gate == 0,
               "the view it changes is gated until the flip, no other");
            memsess_table_write_begin(t);
            memsess_table_cancel_flips(t, views, 2, 0, NULL);
            memsess_table_write_end(t);
            memsess_table_read_view_slot(t, 0, &vs0);
            ok(vs0.gate == 0 && vs0.next_at == 0,
               "a cancelled flip opens its gate");
            memsess_table_write_begin(t);
            memsess_table_view_slot(t, 0)->gate = now + apr_time_from_sec(90);
            memsess_table_prepare_flip(t, views, 2, 0, NULL,
                                       now + apr_time_from_sec(60));
            memsess_table_cancel_flips(t, views, 2, 0, NULL);
            memsess_table_write_end(t);
            memsess_table_read_view_slot(t, 0, &vs0);
            ok(vs0.gate == now + apr_time_from_sec(90),
               "a later gate stands, through the flip and its cancel");
            memsess_table_write_begin(t);
            memsess_table_view_slot(t, 0)->gate = 0;
            memsess_table_write_end(t);
        }
        memsess_table_write_begin(t);
        memsess_table_prepare_flip(t, views, 2, 0, NULL, now);
        memsess_table_write_end(t);
        is_str(view(t, 0, &nlive), "a:1,c:3",
               "from its time on: the text after it, a live");
        ok(nlive == 2, "with its nlive");
        is_str(view(t, 1, &nlive), "tcp://c:3",
               "a view that does not hold a: as it was");
        /* a new checker republishes all: the flip stands */
        memsess_table_write_begin(t);
        memsess_table_republish(t, views, 2);
        memsess_table_write_end(t);
        is_str(view(t, 0, &nlive), "a:1,c:3",
               "a new checker's republishing keeps a prepared flip");
        memsess_table_write_begin(t);
        memsess_table_cancel_flips(t, views, 2, 0, NULL);
        memsess_table_write_end(t);
        is_str(view(t, 0, &nlive), "c:3", "cancelled: as in force again");
        memsess_table_write_begin(t);
        memsess_table_prepare_flip(t, views, 2, 0, NULL, now);
        memsess_table_publish(t, views, 2, 2, NULL);
        memsess_table_write_end(t);
        is_str(view(t, 0, &nlive), "c:3",
               "a publish of the view replaces it (what is published "
               "stands)");
        /* a rebalance's: the configured pool in force then */
        {
            int moving[2] = { 0, 1 };

            memsess_table_write_begin(t);
            ok(memsess_table_prepare_flip(t, views, 2, -1, moving, now) == 1,
               "a rebalance's flip: the views it moves");
            memsess_table_write_end(t);
            is_str(view(t, 1, &nlive), "tcp://c:3",
                   "the configured pool, its live servers");
            memsess_table_write_begin(t);
            memsess_table_publish(t, views, 2, -1, NULL);
            memsess_table_write_end(t);
        }
    }

    /* a writer that died inside the seqlock */
    memsess_table_write_begin(t);
    ok(memsess_table_read_slot(t, 0, &copy) == APR_EBUSY,
       "a reader gives up on a writer that never leaves");
    ok(!strcmp(view(t, 0, &nlive), "(busy)"), "and so does a view reader");
    memsess_table_recover(t);
    is_str(view(t, 0, &nlive), "c:3", "recover() lets readers in again");

    /* carrying states over to a bigger table, as a restart does */
    size = memsess_table_size(5, 2, caps);
    mem2 = malloc(size);
    t2 = memsess_table_init(mem2, size, 5, 2, caps);
    ok(t2 != NULL, "a second table");
    free(mem2);

    /* --- readers against a running writer --- */
    race_views[0].pool = pool_of("a:1", "b:2", "c:3", 0, 1, 2);
    race_views[0].format = MEMSESS_FORMAT_MEMCACHED;
    race_views[1] = race_views[0];
    race_table = t;
    memsess_table_write_begin(t);
    for (i = 0; i < 4; i++) {
        memsess_table_slot(t, i)->state = MEMSESS_UP;
    }
    memsess_table_publish(t, race_views, 2, -1, NULL);
    memsess_table_write_end(t);
    pthread_create(&writer, NULL, race_writer, NULL);
    for (i = 0; i < 200000; i++) {
        const char *s = view(t, 0, &nlive);

        reads++;
        if (!strcmp(s, "(busy)")) {
            busy++;
        }
        else if (strcmp(s, "a:1,b:2,c:3") && strcmp(s, "a:1,c:3")) {
            if (torn < 3) printf("# torn text '%s' nlive %u\n", s, nlive);
            torn++;
        }
        else if ((nlive == 3) != !strcmp(s, "a:1,b:2,c:3")) {
            if (torn < 3) printf("# torn nlive '%s' nlive %u\n", s, nlive);
            torn++;
        }
    }
    race_stop = 1;
    pthread_join(writer, NULL);
    ok(torn == 0, "%d reads under a busy writer: %d torn", reads, torn);
    ok(busy == 0, "and none gave up (%d)", busy);

    /* --- a pool change: the list in force, published from before --- */
    {
        memsess_view_t pv[1] = {{0}}, before = {0};
        memsess_view_slot_t vs;
        apr_uint32_t cap[1];
        char served[64];
        void *m;
        memsess_table_t *pt;

        pv[0].pool = pool_of("a:1", "b:2", "c:3", 0, 1, 2);
        before.pool = pool_of("a:1", "b:2", "d:4", 0, 1, 3);
        pv[0].before = &before;
        cap[0] = 64 + 32;
        m = malloc(memsess_table_size(4, 1, cap));
        pt = memsess_table_init(m, memsess_table_size(4, 1, cap), 4, 1, cap);
        ok(memsess_table_set_served(pt, 0, "shop:80", 96, "x", 0, 0, 1, 0, NULL)
           == APR_ENOSPC, "the list in force cannot take every byte");
        ok(memsess_table_set_served(pt, 0, "shop:80", 32, "a:1,b:2,d:4", 1,
                                    1, 0, 0, "shop/") == APR_SUCCESS,
           "the list in force takes the last bytes of the view");
        memsess_table_read_view_slot(pt, 0, &vs);
        ok(vs.capacity == 64 && vs.served_capacity == 32
           && vs.served_replicas == 1 && vs.served_failover == 1
           && vs.served_ketama == 0 && !strcmp(vs.served_prefix, "shop/"),
           "the text keeps the rest; replicas, failover, hashing, namespace "
           "recorded");
        is_str(vs.name, "shop:80", "the vhost's name, to match generations");
        memsess_table_read_served(pt, 0, served, sizeof(served));
        is_str(served, "a:1,b:2,d:4", "the list in force reads back");
        memsess_table_view_slot(pt, 0)->rebalance = MEMSESS_REBALANCE_WAITING;
        memsess_table_write_begin(pt);
        memsess_table_publish(pt, pv, 1, -1, NULL);
        memsess_table_write_end(pt);
        is_str(view(pt, 0, &nlive), "a:1,b:2,d:4",
               "a rebalance pending: the pool before is published");
        record(pt, pv, 3, 0);
        record(pt, pv, 3, 0);
        is_str(view(pt, 0, &nlive), "a:1,b:2",
               "a server of the pool before goes down: dropped from it");
        memsess_table_view_slot(pt, 0)->rebalance = MEMSESS_REBALANCE_NONE;
        ok(memsess_table_set_served(pt, 0, NULL, 0, "a:1,b:2,c:3", 1, 1, 0, 0,
                                    NULL)
           == APR_SUCCESS, "the flip: the new list in force");
        memsess_table_write_begin(pt);
        memsess_table_publish(pt, pv, 1, -1, NULL);
        memsess_table_write_end(pt);
        is_str(view(pt, 0, &nlive), "a:1,b:2,c:3",
               "after the flip: the configured pool is published");
        ok(memsess_table_set_served(pt, 0, NULL, 0,
                                    "a-much-longer-list:1,b:2,c:3,d:4", 1, 1,
                                    0, 0, NULL) == APR_ENOSPC,
           "a list longer than its bytes is refused");
        is_str(memsess_rebalance_name(MEMSESS_REBALANCE_RUNNING),
               "rebalancing", "the status name of a running rebalance");
        free(m);
    }

    {
        char text[] = "a\r\nb\tc\x7f\x80\xff d";

        memsess_text_one_line(text);
        is_str(text, "a  b c ?? d", "one line of ASCII: controls become "
               "spaces, bytes beyond ASCII '?'");
    }

    {
        /* the lease and the checker process (memsess_check_process.c) */
        apr_uint32_t owner, pid;
        apr_time_t hb, forked, beat;
        apr_size_t lsize = memsess_table_size(1, 2, caps);
        void *lmem = malloc(lsize);
        memsess_table_t *l = memsess_table_init(lmem, lsize, 1, 2, caps);

        memsess_table_owner(l, &owner, &hb);
        ok(owner == 0 && hb == 0, "a new table: nobody checks");
        ok(memsess_table_claim(l, 0, 100, 5) && !memsess_table_claim(l, 0, 200, 6),
           "the lease: a claim from what was seen, never from another");
        ok(memsess_table_claim(l, 100, 0, 5), "its holder hands it back");
        memsess_table_owner(l, &owner, &hb);
        ok(owner == 0 && hb == 5, "keeping the time of its last round");
        memsess_table_process(l, &pid, &forked, &beat);
        ok(pid == 0 && forked == 0 && beat == 0, "a new table: no checker process");
        memsess_table_set_process(l, 4242, 1000);
        memsess_table_process(l, &pid, &forked, &beat);
        ok(pid == 4242 && forked == 1000 && beat == 0,
           "forked: its pid and when, no tick yet");
        memsess_table_process_beat(l, 1100);
        memsess_table_process(l, &pid, &forked, &beat);
        ok(beat == 1100 && forked == 1000, "its tick");
        memsess_table_set_process(l, 4343, 2000);
        memsess_table_process(l, &pid, &forked, &beat);
        ok(pid == 4343 && forked == 2000 && beat == 0,
           "forked again: the last one's tick is forgotten");
        {
            memsess_peer_clock_t pc[2];
            apr_int64_t err;

            memset(pc, 0, sizeof(pc));
            strcpy(pc[0].name, "web2");
            pc[0].skew_ms = 3000;
            pc[0].error_ms = 50;
            pc[0].offset_ms = 1000;
            strcpy(pc[1].name, "web3");
            pc[1].skew_ms = 800;
            pc[1].error_ms = 400;
            memsess_table_write_begin(l);
            memsess_table_set_peers(l, pc, 2);
            memsess_table_write_end(l);
            ok(memsess_table_peer_skew(l, "web2", 250, 1000, &err) == 3000
               && err == 50, "a peer's skew, measured within the bound");
            ok(memsess_table_peer_skew(l, "web2", 250, 6000, &err) == -2000
               && err == 50, "our clock stepped 5 s ahead since: 5 s less, "
               "at once");
            ok(memsess_table_peer_skew(l, "web2", 250, 0, &err) == 3000,
               "our offset not known: as measured");
            ok(memsess_table_peer_skew(l, "web3", 250, 6000, &err) == 0
               && err == -1, "measured too loosely: not known");
            ok(memsess_table_peer_skew(l, "web4", 250, 6000, &err) == 0
               && err == -1, "not heard: not known");
        }
        free(lmem);
    }

    free(mem);
    apr_pool_destroy(p);
    apr_terminate();
    return done_testing();
}
