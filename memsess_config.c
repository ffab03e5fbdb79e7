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

/* The configuration's accessors: a server's directives as parsed, and the
 * running generation's runtime (mod_memsess.c sets it at post_config), and
 * what the settings imply for the records shared with the group.  A
 * file of their own, so that the parts that serve requests (injection,
 * the status page) read them without calling up into the module's glue. */

#include "httpd.h"
#include "http_config.h"

#include "memsess_config.h"

static memsess_runtime_t *runtime;

memsess_runtime_t *memsess_runtime(void)
{
    return runtime;
}

void memsess_runtime_set(memsess_runtime_t *rt)
{
    runtime = rt;
}

memsess_srv_conf *memsess_srv_config(const server_rec *s)
{
    return ap_get_module_config(s->module_config, &memsess_module);
}

apr_int64_t memsess_share_ttl(const memsess_runtime_t *rt)
{
    /* outlives three missed rounds, not more: whole seconds */
    apr_interval_time_t hold = 3 * rt->g.interval + rt->g.timeout;
    apr_int64_t ttl = (apr_int64_t)apr_time_sec(hold + apr_time_from_sec(1)
                                                - 1);

    return ttl < 2 ? 2 : ttl;
}
