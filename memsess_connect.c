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

/* A libmemcached handle to one server of the table, as the checker's own
 * connections are made (the verdict exchange, the rejoin's job record and
 * its flush): every wait bounded, cas on, marked as the checker's so the
 * release of a server marked down (memsess_release.c) leaves it alone,
 * authenticated as the probes are (MemsessCredentials). */

#include <libmemcached/memcached.h>

#include "memsess_connect.h"
#include "memsess_release_helper.h"

memcached_st *memsess_connect(const memsess_runtime_t *rt, int slot,
                              apr_interval_time_t timeout)
{
    const memsess_server_t *srv = APR_ARRAY_IDX(rt->targets, slot,
                                                memsess_server_t *);
    const memsess_credentials_t *cred = rt->credentials[slot];
    memcached_st *mc = memcached_create(NULL);
    apr_int64_t ms = apr_time_as_msec(timeout);
    memcached_return_t rc = MEMCACHED_SUCCESS;

    if (!mc) {
        return NULL;
    }
    ms = ms > 0 ? ms : 1;
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, ms);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, ms);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_RCV_TIMEOUT, ms * 1000);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_SND_TIMEOUT, ms * 1000);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 0);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_TCP_KEEPIDLE,
                           MEMSESS_PROBE_KEEPIDLE);
    if (cred) {
        /* (switches to the binary protocol) */
        rc = memcached_set_sasl_auth_data(mc, cred->username,
                                          cred->password);
    }
    if (memcached_success(rc)) {
        rc = memcached_server_add(mc, srv->host, srv->port);
    }
    if (!memcached_success(rc)) {
        memsess_disconnect(mc);
        return NULL;
    }
    return mc;
}

void memsess_disconnect(memcached_st *mc)
{
    if (mc) {
        memcached_destroy_sasl_auth_data(mc);
        memcached_free(mc);
    }
}
