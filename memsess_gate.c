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

/* A flip's gate.
 *
 * When a sync publishes a server (or a rebalance its new placement), a
 * request that got the previous list just before writes its session at
 * the old place as it ends, and its user's next request reads the new
 * one.  So the views whose list changes are published gated: a request
 * that reads a gated list waits (memsess_inject.c) until the sync has
 * waited out every request that began before the flip (memsess_flight.c)
 * and brought over what they wrote, then opens the gate.  The wait is
 * bounded (MEMSESS_GATE_MAX): past it, requests go on as they would
 * without the gate, and the guard on php-memcached's locks still stands.
 *
 * The caller (the checker's rejoin and rebalance jobs) closes the gate in
 * the table write that publishes the flip, then hands the gate to the
 * engine's after-flip guard (memsess_sync_flipped), which asks whether it
 * is settled and opens it. */

#include <errno.h>
#include <signal.h>
#include <sys/types.h>

#include "apr_strings.h"

#include "memsess_gate.h"
#include "memsess_clocks.h"
#include "memsess_flight.h"
#include "memsess_table.h"

void memsess_gate_close(memsess_gate_t *g, memsess_runtime_t *rt,
                        apr_thread_mutex_t *mutex, const int *gated,
                        apr_time_t since, apr_time_t not_before,
                        volatile apr_uint32_t *stop)
{
    apr_time_t now = memsess_mono_now();
    int v;

    g->rt = rt;
    g->mutex = mutex;
    g->gated = gated;
    g->stop = stop;
    g->closed = now;
    g->until = now + MEMSESS_GATE_MAX;
    g->not_before = not_before;
    g->since = since;
    g->waited_for = 0;
    g->epoch = 0;
    g->open = 0;
    for (v = 0; v < rt->confs->nelts; v++) {
        if (gated[v]) {
            memsess_table_view_slot(rt->table, v)->gate = g->until;
        }
    }
}

void memsess_gate_flipped(memsess_gate_t *g)
{
    g->epoch = memsess_flight_flip(g->rt->flight);
    g->waited_for = memsess_flight_before(g->rt->flight, g->epoch, NULL);
}

/* Whether a process still exists (a crashed child's entry is not waited
 * for). */
static int alive(apr_uint32_t pid)
{
    return pid && (kill((pid_t)pid, 0) == 0 || errno != ESRCH);
}

int memsess_gate_settled(void *baton)
{
    memsess_gate_t *g = baton;
    apr_time_t now = memsess_mono_now();

    if (now < g->not_before && !*g->stop) {
        return 0;
    }
    return !g->rt->flight || *g->stop || now >= g->until
           || !memsess_flight_before(g->rt->flight, g->epoch, alive);
}

void memsess_gate_open(void *baton)
{
    memsess_gate_t *g = baton;
    memsess_runtime_t *rt = g->rt;
    int v;

    if (g->open) {
        return;
    }
    apr_thread_mutex_lock(g->mutex);
    memsess_table_write_begin(rt->table);
    for (v = 0; v < rt->confs->nelts; v++) {
        memsess_view_slot_t *vs = memsess_table_view_slot(rt->table, v);

        if (g->gated[v] && vs->gate == g->until) {
            vs->gate = 0;
        }
    }
    memsess_table_write_end(rt->table);
    apr_thread_mutex_unlock(g->mutex);
    g->open = memsess_mono_now();
}

const char *memsess_gate_text(apr_pool_t *p, const memsess_gate_t *g,
                              int brought, int late)
{
    if (!g->rt || !g->rt->flight) {
        return "its requests not kept (MEMSESS0026): not waited for";
    }
    return apr_psprintf(p, "its requests waited %" APR_TIME_T_FMT "ms at "
                        "the flip for the %d that had the old list%s, and "
                        "%d sessions they used were brought over (missed "
                        "by the listings, or left older at the new place), "
                        "and %d that requests running at the flip left", g->open > g->closed
                        ? apr_time_as_msec(g->open - g->closed) : 0,
                        g->waited_for, g->open >= g->until
                        ? " (no longer: the most it waits)" : "", brought,
                        late);
}

void memsess_gate_recent(void *baton,
                         void (*each)(void *ctx, const char *id,
                                      apr_size_t len),
                         void *ctx)
{
    memsess_gate_t *g = baton;

    /* a margin: a request noted as the sync began may predate its lists */
    memsess_flight_recent(g->rt->flight, g->since - apr_time_from_sec(1),
                          each, ctx);
}

void memsess_gate_inflight(void *baton,
                           void (*each)(void *ctx, const char *id,
                                        apr_size_t len, int worker,
                                        apr_uint64_t token),
                           void *ctx)
{
    memsess_gate_t *g = baton;

    memsess_flight_inflight(g->rt->flight, g->epoch, each, ctx);
}

int memsess_gate_still(void *baton, int worker, apr_uint64_t token)
{
    return memsess_flight_still(((memsess_gate_t *)baton)->rt->flight,
                                worker, token);
}

void memsess_gate_wait(memsess_gate_t *g, memsess_flip_wait_t *wait)
{
    wait->settled = memsess_gate_settled;
    wait->open = memsess_gate_open;
    wait->recent = memsess_gate_recent;
    wait->inflight = memsess_gate_inflight;
    wait->still = memsess_gate_still;
    wait->baton = g;
    wait->until = g->until;
}

int memsess_gate_follow(memsess_gate_t *g, const memsess_sync_spec_t *spec,
                        apr_pool_t *p, int *late)
{
    memsess_flip_wait_t wait;
    memsess_sync_t *sync;
    char err[256];
    int brought;

    /* no guards, no passes: the engine's wait at the flip, and its rule
     * for a session the new place lacks (added, never overwritten) */
    sync = memsess_sync_create(p, spec, err, sizeof(err));
    if (sync) {
        memsess_gate_wait(g, &wait);
        (void)memsess_sync_flipped(sync, &wait, err, sizeof(err));
    }
    memsess_gate_open(g);   /* (a failure there, or no engine) */
    brought = memsess_sync_recent_brought(sync);
    *late = memsess_sync_late_brought(sync);
    memsess_sync_destroy(sync);
    return brought;
}
