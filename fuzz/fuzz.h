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

/* What the libFuzzer harnesses share.  Each defines FUZZ_NAME first. */
#ifndef MEMSESS_FUZZ_H
#define MEMSESS_FUZZ_H

#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>

#include "apr_general.h"
#include "apr_pools.h"

/* A difference with the model: says what, and aborts so that libFuzzer
 * keeps the input (fuzz/corpus-run/NAME-crashes/). */
static void fail(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static void fail(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "%s: ", FUZZ_NAME);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

/* The pool every input's own pool hangs from. */
static apr_pool_t *fuzz_root(void)
{
    static apr_pool_t *root;

    if (!root) {
        apr_initialize();
        if (apr_pool_create(&root, NULL) != APR_SUCCESS) {
            abort();
        }
    }
    return root;
}

#endif /* MEMSESS_FUZZ_H */
