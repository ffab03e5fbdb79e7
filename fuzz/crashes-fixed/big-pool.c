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

/* Regression: a pool of more than MEMSESS_MAX_SERVERS servers.
 *
 * memsess_table_publish keeps its live flags in a stack array of
 * MEMSESS_MAX_SERVERS bytes and fills only that many, but
 * memsess_path_build reads live[i] for every server of the pool: a stack
 * overflow read (ASan: stack-buffer-overflow in memsess_path_build).
 * httpd never got there because post_config refuses more than
 * MEMSESS_MAX_SERVERS distinct servers; the APR-only layer must not rely on
 * a check in another file.  Passes when memsess_pool_parse refuses such a
 * pool, or when publishing it stays in bounds and publishes every server.
 *
 * Built and run by fuzz/run.sh with ASan and UBSan; exits 0 when fixed. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apr_general.h"
#include "apr_strings.h"

#include "memsess_pool.h"
#include "memsess_table.h"

int main(void)
{
    int n = MEMSESS_MAX_SERVERS + 8, i;
    apr_pool_t *p;
    char **argv;
    memsess_pool_t *pool = NULL;
    memsess_view_t view;
    memsess_table_t *t;
    apr_uint32_t cap, len, nlive;
    apr_size_t size;
    char *full, *got;
    void *base;
    int rc = 0;

    apr_initialize();
    apr_pool_create(&p, NULL);
    argv = apr_palloc(p, n * sizeof(*argv));
    for (i = 0; i < n; i++) {
        argv[i] = apr_psprintf(p, "h%d", i);
    }
    if (memsess_pool_parse(p, n, argv, &pool)) {
        printf("big-pool: a pool of %d servers is refused\n", n);
        apr_pool_destroy(p);
        apr_terminate();
        return 0;
    }
    for (i = 0; i < n; i++) {
        APR_ARRAY_IDX(pool->servers, i, memsess_server_t).slot = 0;
    }
    view.pool = pool;
    view.format = MEMSESS_FORMAT_MEMCACHED;
    view.failover = MEMSESS_FAILOVER_DROP;
    cap = (apr_uint32_t)memsess_path_build(NULL, 0, pool, NULL, view.format,
                                           view.failover) + 1;
    full = malloc(cap);
    got = malloc(cap);
    memsess_path_build(full, cap, pool, NULL, view.format, view.failover);
    size = memsess_table_size(1, 1, &cap);
    base = malloc(size);
    t = memsess_table_init(base, size, 1, 1, &cap);
    memsess_table_publish(t, &view, 1, -1, NULL);
    if (memsess_table_read_view(t, 0, got, cap, &len, &nlive, NULL, NULL)
        != APR_SUCCESS
        || strcmp(got, full)) {
        printf("big-pool: a pool of %d live servers does not publish "
               "them all\n", n);
        rc = 1;
    }
    else {
        printf("big-pool: a pool of %d servers publishes them all\n", n);
    }
    free(base);
    free(got);
    free(full);
    apr_pool_destroy(p);
    apr_terminate();
    return rc;
}
