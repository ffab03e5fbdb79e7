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

/* Where php-memcached 3.x places a session's keys, asked of libmemcached
 * (the same library PHP uses): a memcached_st built as its session
 * handler builds one.  Pure but for libmemcached; unit-tested. */

#include <string.h>

#include <libmemcached/memcached.h>

#include "apr_strings.h"

#include "memsess_place.h"
#include "memsess_listing.h"

/* ------------------------------------------------------------------ */
/* Placement                                                          */

struct memsess_place {
    memcached_st *mc;
    int           nentries;   /* servers in the list, repeats included */
    int          *server;     /* [nentries]: index among the distinct */
    int           nservers;
    const char  **names;      /* [nservers] "host:port" */
    int           replicas;
};

static apr_status_t place_cleanup(void *data)
{
    memsess_place_t *pl = data;

    memcached_free(pl->mc);
    return APR_SUCCESS;
}

int memsess_view_ketama(int replicas, memsess_failover_e failover)
{
    /* memsess_inject.c: sess_consistent_hash=0 only with replicas and
     * successor; otherwise php-memcached's default (On, ketama) */
    return !(replicas > 0 && failover == MEMSESS_FAILOVER_SUCCESSOR);
}

memsess_place_t *memsess_place_create(apr_pool_t *p, const char *save_path,
                                      int replicas, int ketama)
{
    memcached_server_st *servers = memcached_servers_parse(save_path);
    memsess_place_t *pl;
    int i, j;

    if (!servers) {
        return NULL;
    }
    pl = apr_pcalloc(p, sizeof(*pl));
    pl->mc = memcached_create(NULL);
    if (!pl->mc) {
        memcached_server_list_free(servers);
        return NULL;
    }
    apr_pool_cleanup_register(p, pl, place_cleanup, apr_pool_cleanup_null);
    /* as php-memcached 3.x s_init_mod_data + s_configure_from_ini_values:
     * push, VERIFY_KEY, BINARY_PROTOCOL (+TCP_NODELAY), the consistent
     * hash type, the replicas, the prefix as namespace */
    if (memcached_server_push(pl->mc, servers) != MEMCACHED_SUCCESS) {
        memcached_server_list_free(servers);
        return NULL;
    }
    memcached_server_list_free(servers);
    memcached_behavior_set(pl->mc, MEMCACHED_BEHAVIOR_VERIFY_KEY, 1);
    memcached_behavior_set(pl->mc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
    memcached_behavior_set(pl->mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    if (ketama) {
        memcached_behavior_set(pl->mc, MEMCACHED_BEHAVIOR_KETAMA, 1);
    }
    if (replicas > 0) {
        memcached_behavior_set(pl->mc, MEMCACHED_BEHAVIOR_NUMBER_OF_REPLICAS,
                               (uint64_t)replicas);
    }
    memcached_callback_set(pl->mc, MEMCACHED_CALLBACK_NAMESPACE,
                           MEMSESS_SESS_PREFIX);
    pl->replicas = replicas;
    pl->nentries = (int)memcached_server_count(pl->mc);
    if (pl->nentries < 1) {
        return NULL;
    }
    pl->server = apr_pcalloc(p, pl->nentries * sizeof(int));
    pl->names = apr_pcalloc(p, pl->nentries * sizeof(char *));
    for (i = 0; i < pl->nentries; i++) {
        const memcached_instance_st *in =
            memcached_server_instance_by_position(pl->mc, (uint32_t)i);
        const char *name = apr_psprintf(p, "%s:%u", memcached_server_name(in),
                                        (unsigned)memcached_server_port(in));

        for (j = 0; j < pl->nservers && strcmp(pl->names[j], name); j++) {
        }
        if (j == pl->nservers) {
            pl->names[pl->nservers++] = name;
        }
        pl->server[i] = j;
    }
    return pl;
}

int memsess_place_nservers(const memsess_place_t *pl)
{
    return pl->nservers;
}

const char *memsess_place_server(const memsess_place_t *pl, int i)
{
    return i >= 0 && i < pl->nservers ? pl->names[i] : NULL;
}

int memsess_place_key(const memsess_place_t *pl, const char *id,
                      apr_size_t idlen, int *where, int max)
{
    uint32_t first = memcached_generate_hash(pl->mc, id, idlen);
    int r, k, n = 0;

    if (first >= (uint32_t)pl->nentries) {
        return 0;
    }
    /* libmemcached writes replica r to the entry first + r (binary
     * protocol), wrapping around the list */
    for (r = 0; r <= pl->replicas && r < pl->nentries; r++) {
        int s = pl->server[(first + (uint32_t)r) % (uint32_t)pl->nentries];

        for (k = 0; k < n && where[k] != s; k++) {
        }
        if (k == n && n < max) {
            where[n++] = s;
        }
    }
    return n;
}
