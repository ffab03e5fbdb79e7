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

/* libFuzzer harness of memsess_table.c: the up/down state machine and the
 * published save_paths, driven by a sequence of probe results.
 *
 * The table serves the views of a fixed configuration (VIEWS below: four
 * vhosts sharing some servers, both formats, both failover modes, IPv6).  Slots are given the
 * way mod_memsess.c's build_runtime does, the table lives in a malloc'd
 * block of exactly memsess_table_size() bytes, and every probe result is
 * recorded the way memsess_check.c does it: write_begin, record, on a
 * change bump the generation and publish the views holding the slot,
 * write_end.
 *
 * Input:
 *   byte 0  fail threshold, 1 + b % 16
 *   byte 1  pass threshold, 1 + b % 16
 *   byte 2  flags: bit 0 = cut view capacities below what the full list
 *           needs (mod_memsess.c never does: checks that publish stays
 *           inside them); bit 1 = read views into buffers of odd sizes
 *   then one event a byte: top two bits 00 probe failed, 01 probe passed,
 *   10 probe failed with an error text taken from the next bytes,
 *   11 other: publish every view / new thresholds from the next byte /
 *   publish one slot's views / the checker dies mid-write and the next one
 *   recovers;
 *   low six bits pick the slot.
 *
 * After every event the harness compares the table with its own model:
 * every slot's state and counters, the generation, and each view's text
 * and nlive (see model_view); and the views publish says went into or out
 * of the all-down state.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apr_general.h"
#include "apr_strings.h"

#include "memsess_pool.h"
#include "memsess_table.h"
#include "memsess_clocks.h"

#define FUZZ_NAME "fuzz_table"
#include "fuzz.h"

#define NVIEWS  (4)
#define MAXSRV  (8)

static const struct {
    memsess_format_e format;
    memsess_failover_e failover;
    const char *servers[MAXSRV];
} VIEWS[NVIEWS] = {
    { MEMSESS_FORMAT_MEMCACHED, MEMSESS_FAILOVER_SUCCESSOR,
      { "MC1.example:11211:3", "10.0.0.2", "[2001:db8::1]:11212", NULL } },
    { MEMSESS_FORMAT_MEMCACHE, MEMSESS_FAILOVER_DROP,
      { "10.0.0.2:11211", "mc3.example:11213:1", "mc1.example:11211",
        NULL } },
    { MEMSESS_FORMAT_MEMCACHED, MEMSESS_FAILOVER_DROP,
      { "[::1]:11300", "mc3.example:11213", NULL } },
    { MEMSESS_FORMAT_MEMCACHE, MEMSESS_FAILOVER_DROP,
      { "mc4-long-name.sessions.example.internal:22122:100",
        "[2001:DB8:0:0::1]:11212", "10.0.0.2:11211", "mc3.example:11213",
        NULL } },
};

static apr_pool_t *root;
static memsess_pool_t *pools[NVIEWS];
static memsess_view_t views[NVIEWS];
static const char *slot_addr[NVIEWS * MAXSRV];
static int nslots;
static apr_uint32_t full_caps[NVIEWS];


int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    int v, i, j;

    (void)argc;
    (void)argv;
    root = fuzz_root();
    for (v = 0; v < NVIEWS; v++) {
        char *args[MAXSRV];
        const char *err;
        int n = 0;

        while (n < MAXSRV && VIEWS[v].servers[n]) {
            args[n] = (char *)VIEWS[v].servers[n];
            n++;
        }
        pools[v] = NULL;
        err = memsess_pool_parse(root, n, args, &pools[v]);
        if (err) {
            fail("fixed pool %d: %s", v, err);
        }
        /* one slot per distinct addr, in order of first appearance */
        for (i = 0; i < n; i++) {
            memsess_server_t *s =
                &APR_ARRAY_IDX(pools[v]->servers, i, memsess_server_t);

            for (j = 0; j < nslots && strcmp(slot_addr[j], s->addr); j++) {
            }
            if (j == nslots) {
                slot_addr[nslots++] = s->addr;
            }
            s->slot = j;
        }
        views[v].pool = pools[v];
        views[v].format = VIEWS[v].format;
        views[v].failover = VIEWS[v].failover;
        full_caps[v] = (apr_uint32_t)memsess_path_build(NULL, 0, pools[v],
                                                        NULL,
                                                        VIEWS[v].format,
                                                        VIEWS[v].failover)
                       + 1;
        if (VIEWS[v].failover == MEMSESS_FAILOVER_SUCCESSOR) {
            /* every place may hold the longest entry */
            apr_size_t longest = 0;

            for (i = 0; i < n; i++) {
                char *one[1] = { args[i] };
                memsess_pool_t *alone = NULL;
                apr_size_t len;

                memsess_pool_parse(root, 1, one, &alone);
                len = memsess_path_build(NULL, 0, alone, NULL,
                                         VIEWS[v].format, VIEWS[v].failover);
                if (len > longest) {
                    longest = len;
                }
            }
            full_caps[v] = (apr_uint32_t)(n * longest + (n - 1)
                                          * (VIEWS[v].format
                                             == MEMSESS_FORMAT_MEMCACHE
                                             ? 2 : 1) + 1);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* The model                                                           */

typedef struct {
    int down, known;            /* down: DOWN; !known: UNKNOWN */
    unsigned fails, passes;     /* current run of each */
    apr_uint64_t checks, failures, changes, latency, duration;
    apr_int64_t last_change;
    char error[MEMSESS_ERROR_MAX];
} model_slot_t;

static apr_uint32_t model_state(const model_slot_t *m)
{
    return !m->known ? MEMSESS_UNKNOWN : m->down ? MEMSESS_DOWN : MEMSESS_UP;
}

/* One probe result; returns 1 when the state changed.  The rules as the
 * header states them: unknown counts as live and one pass confirms it;
 * fail_threshold failures in a row take a live server down; a down server
 * comes back after pass_threshold passes in a row. */
static int model_record(model_slot_t *m, int ok, const char *error,
                        apr_uint64_t latency, apr_int64_t now,
                        unsigned fail_threshold, unsigned pass_threshold)
{
    apr_uint32_t before = model_state(m);

    m->checks++;
    m->latency = latency;
    m->duration += latency;
    if (ok) {
        m->fails = 0;
        m->passes++;
        if (!m->known) {
            m->known = 1;
        }
        else if (m->down && m->passes >= pass_threshold) {
            m->down = 0;
        }
    }
    else {
        m->passes = 0;
        m->fails++;
        m->failures++;
        snprintf(m->error, sizeof(m->error), "%s",
                 error ? error : "probe failed");
        if (!m->down && m->fails >= fail_threshold) {
            m->known = 1;
            m->down = 1;
        }
    }
    if (model_state(m) == before) {
        return 0;
    }
    m->changes++;
    m->last_change = now;
    return 1;
}

/* What view v must publish, cut to cap - 1 bytes; *nlive as published:
 * the live servers in config order, a down one left out (DROP) or standing
 * as the first live one after it (SUCCESSOR); every server, nlive 0, when
 * none is live. */
static char *model_view(apr_pool_t *p, const model_slot_t *ms, int v,
                        apr_uint32_t cap, apr_uint32_t *nlive)
{
    const apr_array_header_t *servers = pools[v]->servers;
    int mc = VIEWS[v].format == MEMSESS_FORMAT_MEMCACHE;
    int n = servers->nelts, i, k, first = 1, live = 0;
    char *out = "";

    for (i = 0; i < n; i++) {
        live += !ms[APR_ARRAY_IDX(servers, i, memsess_server_t).slot].down;
    }
    *nlive = (apr_uint32_t)live;
    for (i = 0; i < n; i++) {
        const memsess_server_t *s =
            &APR_ARRAY_IDX(servers, i, memsess_server_t);

        if (live && ms[s->slot].down) {
            if (VIEWS[v].failover != MEMSESS_FAILOVER_SUCCESSOR) {
                continue;
            }
            /* the first live one after it, wrapping around */
            for (k = 1; ms[APR_ARRAY_IDX(servers, (i + k) % n,
                                         memsess_server_t).slot].down; k++) {
            }
            s = &APR_ARRAY_IDX(servers, (i + k) % n, memsess_server_t);
        }
        out = apr_pstrcat(p, out, first ? "" : mc ? ", " : ",",
                          mc ? "tcp://" : "", s->addr,
                          !s->weight ? ""
                          : apr_psprintf(p, mc ? "?weight=%d" : ":%d",
                                         s->weight), NULL);
        first = 0;
    }
    if (strlen(out) >= cap) {
        out[cap - 1] = '\0';
    }
    return out;
}

/* ------------------------------------------------------------------ */
/* Checks                                                              */

static void check_slots(memsess_table_t *t, const model_slot_t *ms,
                        apr_uint64_t generation)
{
    int i;

    if (memsess_table_generation(t) != generation
        || memsess_table_state_changes(t) != generation) {
        fail("generation %llu, changes %llu, the model has %llu",
             (unsigned long long)memsess_table_generation(t),
             (unsigned long long)memsess_table_state_changes(t),
             (unsigned long long)generation);
    }
    for (i = 0; i < nslots; i++) {
        memsess_slot_t c;
        const model_slot_t *m = &ms[i];

        if (memsess_table_read_slot(t, i, &c) != APR_SUCCESS) {
            fail("read_slot(%d) busy outside a write", i);
        }
        if (strcmp(c.addr, slot_addr[i])) {
            fail("slot %d addr \"%s\", expected \"%s\"", i, c.addr,
                 slot_addr[i]);
        }
        if (c.state != model_state(m)
            || c.consecutive_fails != m->fails
            || c.consecutive_passes != m->passes
            || c.checks != m->checks || c.failures != m->failures
            || c.state_changes != m->changes
            || c.last_change != m->last_change
            || c.latency_us != m->latency
            || c.duration_us_sum != m->duration) {
            fail("slot %d: state %s fails %u passes %u checks %llu "
                 "failures %llu changes %llu last_change %lld; the model: "
                 "state %s fails %u passes %u checks %llu failures %llu "
                 "changes %llu last_change %lld", i,
                 memsess_state_name(c.state), c.consecutive_fails,
                 c.consecutive_passes, (unsigned long long)c.checks,
                 (unsigned long long)c.failures,
                 (unsigned long long)c.state_changes,
                 (long long)c.last_change,
                 memsess_state_name(model_state(m)), m->fails, m->passes,
                 (unsigned long long)m->checks,
                 (unsigned long long)m->failures,
                 (unsigned long long)m->changes,
                 (long long)m->last_change);
        }
        if (m->failures && strcmp(c.last_error, m->error)) {
            fail("slot %d last_error \"%s\", expected \"%s\"", i,
                 c.last_error, m->error);
        }
    }
}

/* Reads view v into a malloc'd block of exactly size bytes. */
static void check_read(memsess_table_t *t, int v, apr_size_t size,
                       const char *want, apr_uint32_t want_nlive)
{
    char *buf = malloc(size);
    apr_uint32_t len = 12345, nlive = 12345;
    apr_size_t wlen = strlen(want);
    apr_status_t rv;

    if (!buf) {
        abort();
    }
    memset(buf, 0x5a, size);
    rv = memsess_table_read_view(t, v, buf, size, &len, &nlive, NULL, NULL);
    if (size > wlen) {
        if (rv != APR_SUCCESS || len != wlen || strcmp(buf, want)
            || nlive != want_nlive) {
            fail("view %d read into %zu bytes: rv %d len %u nlive %u "
                 "\"%s\"; expected len %zu nlive %u \"%s\"", v,
                 (size_t)size, rv, len, nlive,
                 rv == APR_SUCCESS ? buf : "", wlen, want_nlive, want);
        }
    }
    else if (rv == APR_SUCCESS) {
        /* A buffer too small for the text: what it gets must at least be
         * a NUL-terminated prefix of the text, inside the buffer. */
        if (len >= size || buf[len] != '\0' || strncmp(buf, want, len)) {
            fail("view %d read into %zu bytes (text is %zu): len %u, "
                 "not a prefix", v, (size_t)size, wlen, len);
        }
    }
    free(buf);
}

static void check_views(apr_pool_t *p, memsess_table_t *t,
                        const model_slot_t *ms, const apr_uint32_t *caps,
                        int odd_sizes, uint32_t *rng)
{
    int v;

    for (v = 0; v < NVIEWS; v++) {
        apr_uint32_t nlive;
        const char *want = model_view(p, ms, v, caps[v], &nlive);
        apr_size_t wlen = strlen(want);

        /* what memsess_inject.c does: a buffer of the view's capacity */
        check_read(t, v, caps[v], want, nlive);
        if (odd_sizes) {
            *rng = *rng * 1103515245u + 12345u;
            check_read(t, v, wlen + 1, want, nlive);
            check_read(t, v, 1 + (*rng >> 8) % (wlen + 8), want, nlive);
        }
    }
}

/* Publishes like memsess_check.c (slot >= 0) or post_config (slot < 0)
 * and checks the views it says went into or out of the all-down state
 * against the model's previous nlive of each view. */
static void publish(apr_pool_t *p, memsess_table_t *t, const model_slot_t *ms,
                    const apr_uint32_t *caps, apr_uint32_t *pub_nlive,
                    int slot)
{
    int *flipped = malloc(NVIEWS * sizeof(int));
    int want[NVIEWS], nwant = 0, n, v, i;

    if (!flipped) {
        abort();
    }
    for (v = 0; v < NVIEWS; v++) {
        const apr_array_header_t *servers = pools[v]->servers;
        int holds = slot < 0;
        apr_uint32_t nlive;

        for (i = 0; i < servers->nelts; i++) {
            holds |= APR_ARRAY_IDX(servers, i, memsess_server_t).slot == slot;
        }
        if (!holds) {
            continue;
        }
        model_view(p, ms, v, caps[v], &nlive);
        if (slot >= 0 && !pub_nlive[v] != !nlive) {
            want[nwant++] = v;
        }
        pub_nlive[v] = nlive;
    }
    n = memsess_table_publish(t, views, NVIEWS, slot, flipped);
    if (n != nwant || memcmp(flipped, want, (size_t)n * sizeof(int))) {
        fail("publish(slot %d) says %d views flipped (first %d), the model "
             "%d (first %d)", slot, n, n > 0 ? flipped[0] : -1, nwant,
             nwant ? want[0] : -1);
    }
    if (memsess_table_publish(t, views, NVIEWS, slot, NULL) != 0) {
        fail("publish(slot %d) again, nothing changed: flips", slot);
    }
    free(flipped);
}

/* The checker dies inside the table: after write_begin, perhaps after
 * recording a state change, perhaps halfway through a view's text.
 * (That readers give up meanwhile, with APR_EBUSY, the unit tests check:
 * here each read would spin for milliseconds.)  The next checker repairs the seqlock and republishes every view (a
 * recover alone would leave the half-written text, or the view that still
 * lists the server it had just found down, in place until some server of
 * that view changes state again), and from then on the table must agree
 * with the model again. */
static void die_and_recover(apr_pool_t *p, memsess_table_t *t,
                            model_slot_t *ms, const apr_uint32_t *caps,
                            apr_uint32_t *pub_nlive, int s, apr_int64_t now,
                            unsigned pass_t, apr_uint64_t *generation)
{
    memsess_slot_t copy;

    memsess_table_write_begin(t);
    if (s % 2) {
        /* died between the state change and its publication */
        model_record(&ms[s], 0, "died", 1, now, 1, pass_t);
        if (memsess_slot_record(memsess_table_slot(t, s), 0, "died", 1, now,
                                1, (int)pass_t)) {
            memsess_table_bump_generation(t, 1);
            (*generation)++;
        }
    }
    if (s % 3 == 0 && caps[s % NVIEWS] > 1) {
        /* died while rewriting a view's text: the old len, torn bytes.
         * The texts follow the header, slots and views (see the layout in
         * memsess_table.c), one after the other. */
        static const apr_uint32_t none[NVIEWS];
        char *text = (char *)t + memsess_table_size(nslots, NVIEWS, none);
        int v;

        for (v = 0; v < s % NVIEWS; v++) {
            text += caps[v];
        }
        memset(text, 'X', caps[s % NVIEWS] - 1);
    }
    memsess_table_recover(t);
    memsess_table_recover(t);   /* a second one must not break the seqlock */
    if (memsess_table_read_slot(t, s, &copy) != APR_SUCCESS) {
        fail("read_slot still busy after recover");
    }
    /* the new checker republishes everything */
    memsess_table_write_begin(t);
    publish(p, t, ms, caps, pub_nlive, -1);
    memsess_table_write_end(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    model_slot_t ms[NVIEWS * MAXSRV];
    apr_uint32_t caps[NVIEWS], pub_nlive[NVIEWS] = { 0 };
    unsigned fail_t, pass_t;
    int flags, v, i;
    size_t pos;
    apr_size_t tsize;
    apr_uint64_t generation = 0;
    uint32_t rng = 2166136261u;
    memsess_table_t *t;
    void *base;
    apr_pool_t *p;

    if (size < 3) {
        return 0;
    }
    fail_t = 1 + data[0] % 16;
    pass_t = 1 + data[1] % 16;
    flags = data[2];
    for (pos = 0; pos < size; pos++) {
        rng = (rng ^ data[pos]) * 16777619u;
    }

    for (v = 0; v < NVIEWS; v++) {
        caps[v] = full_caps[v];
        if (flags & 1) {
            rng = rng * 1103515245u + 12345u;
            caps[v] = 1 + (rng >> 8) % full_caps[v];
        }
    }
    tsize = memsess_table_size(nslots, NVIEWS, caps);
    base = malloc(tsize);
    if (!base) {
        abort();
    }
    /* one byte short: refused, and nothing written (ASan would see it) */
    if (memsess_table_init(base, tsize - 1, nslots, NVIEWS, caps)) {
        fail("table_init accepts %zu bytes for a table of %zu",
             (size_t)tsize - 1, (size_t)tsize);
    }
    free(base);
    base = malloc(tsize);
    if (!base) {
        abort();
    }
    t = memsess_table_init(base, tsize, nslots, NVIEWS, caps);
    if (!t || memsess_table_attach(base, tsize) != t
        || memsess_table_attach(base, tsize - 1)
        || memsess_table_nslots(t) != nslots
        || memsess_table_nviews(t) != NVIEWS) {
        fail("table_init/attach over %zu bytes", (size_t)tsize);
    }
    if (apr_pool_create(&p, root) != APR_SUCCESS) {
        abort();
    }

    /* what mod_memsess.c does at post_config */
    memset(ms, 0, sizeof(ms));
    for (i = 0; i < nslots; i++) {
        apr_cpystrn(memsess_table_slot(t, i)->addr, slot_addr[i],
                    MEMSESS_ADDR_MAX);
    }
    publish(p, t, ms, caps, pub_nlive, -1);
    check_slots(t, ms, generation);
    check_views(p, t, ms, caps, flags & 2, &rng);

    for (pos = 3; pos < size; pos++) {
        int op = data[pos] >> 6, s = (data[pos] & 0x3f) % nslots;
        apr_int64_t now = 1000 + (apr_int64_t)pos;
        apr_uint64_t latency = 7 * (apr_uint64_t)pos;

        if (op == 3) {
            switch ((data[pos] & 0x3f) / nslots % 4) {
            case 0:
                memsess_table_write_begin(t);
                publish(p, t, ms, caps, pub_nlive, -1);
                memsess_table_write_end(t);
                break;
            case 1:
                if (pos + 1 < size) {
                    pos++;
                    fail_t = 1 + data[pos] % 16;
                    pass_t = 1 + data[pos] / 16;
                }
                break;
            case 2:
                /* a flip of s prepared (read from now on), then the
                 * publish of s: it replaces it (check_views, below) */
                memsess_table_write_begin(t);
                memsess_table_prepare_flip(t, views, NVIEWS, s, NULL,
                                           memsess_mono_now());
                publish(p, t, ms, caps, pub_nlive, s);
                memsess_table_write_end(t);
                break;
            default:
                die_and_recover(p, t, ms, caps, pub_nlive, s, now, pass_t,
                                &generation);
                break;
            }
        }
        else {
            int ok = op == 1, changed, want;
            char error[256];
            const char *err = ok ? NULL : "connection refused";

            if (op == 2) {
                /* next byte: length; then that many bytes of text */
                size_t n = 0;

                if (pos + 1 < size) {
                    pos++;
                    n = data[pos];
                    if (n > size - pos - 1) {
                        n = size - pos - 1;
                    }
                }
                if (n > sizeof(error) - 1) {
                    n = sizeof(error) - 1;
                }
                memcpy(error, data + pos + 1, n);
                error[n] = '\0';
                pos += n;
                err = n ? error : NULL;
            }
            /* what memsess_check.c does with one probe result */
            want = model_record(&ms[s], ok, err, latency, now, fail_t,
                                pass_t);
            memsess_table_write_begin(t);
            changed = memsess_slot_record(memsess_table_slot(t, s), ok, err,
                                          latency, now, (int)fail_t,
                                          (int)pass_t);
            if (changed) {
                memsess_table_bump_generation(t, 1);
                publish(p, t, ms, caps, pub_nlive, s);
            }
            memsess_table_write_end(t);
            if (changed != want) {
                fail("slot %d %s (thresholds %u/%u): record says %d, the "
                     "model %d", s, ok ? "passed" : "failed", fail_t, pass_t,
                     changed, want);
            }
            generation += (apr_uint64_t)changed;
        }
        check_slots(t, ms, generation);
        check_views(p, t, ms, caps, flags & 2, &rng);
    }

    apr_pool_destroy(p);
    free(base);
    return 0;
}
