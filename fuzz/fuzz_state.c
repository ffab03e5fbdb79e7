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

/* libFuzzer harness of memsess_state.c: a state file's text, hostile (a
 * file anyone with the directory could have written, cut by a crash).  The
 * input is copied into a block of its exact size (ASan sees any read past
 * it).  What it checks (abort() on any difference):
 *   - every pool kept has a name and servers free of tabs and line ends,
 *     numbers in range, and no name twice;
 *   - the text written from what was kept reads back to the same pools,
 *     with no bad line;
 *   - a text without the magic line is refused whole. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memsess_state.h"

#define FUZZ_NAME "fuzz_state"
#include "fuzz.h"

static void check_kept(const apr_array_header_t *out)
{
    int i, j;

    for (i = 0; i < out->nelts; i++) {
        const memsess_placed_t *pl = &APR_ARRAY_IDX(out, i, memsess_placed_t);

        if (!pl->name[0] || !pl->served[0]
            || strpbrk(pl->name, "\t\n") || strpbrk(pl->served, "\t\n")) {
            fail("pool %d kept with an empty field or a tab/line end", i);
        }
        if (pl->replicas < 0 || pl->replicas > MEMSESS_MAX_SERVERS
            || pl->failover < 0 || pl->failover > MEMSESS_FAILOVER_SUCCESSOR
            || pl->ketama < 0 || pl->ketama > 1 || pl->format < 0
            || pl->format > MEMSESS_FORMAT_MEMCACHE) {
            fail("pool %d kept with a number out of range", i);
        }
        for (j = 0; j < i; j++) {
            if (!strcmp(pl->name,
                        APR_ARRAY_IDX(out, j, memsess_placed_t).name)) {
                fail("name \"%s\" kept twice", pl->name);
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    char *text = malloc(size ? size : 1);
    apr_array_header_t *out, *again;
    size_t magic = sizeof(MEMSESS_STATE_MAGIC) - 1;
    const char *why, *written;
    int bad, bad2, i;

    apr_pool_create(&p, fuzz_root());
    out = apr_array_make(p, 4, sizeof(memsess_placed_t));
    again = apr_array_make(p, 4, sizeof(memsess_placed_t));
    memcpy(text, data, size);
    why = memsess_state_parse(p, text, size, out, &bad);
    if ((size < magic + 1 || memcmp(data, MEMSESS_STATE_MAGIC, magic)
         || data[magic] != '\n') != (why != NULL)) {
        fail("the magic line judged wrongly (%s)", why ? why : "accepted");
    }
    if (why && out->nelts) {
        fail("a refused text kept %d pools", out->nelts);
    }
    check_kept(out);
    written = memsess_state_format(p, (const memsess_placed_t *)out->elts,
                                   out->nelts);
    if (memsess_state_parse(p, written, strlen(written), again, &bad2)
        || bad2 || again->nelts != out->nelts) {
        fail("what was kept does not read back (%d of %d, %d bad)",
             again->nelts, out->nelts, bad2);
    }
    for (i = 0; i < out->nelts; i++) {
        const memsess_placed_t *a = &APR_ARRAY_IDX(out, i, memsess_placed_t);
        const memsess_placed_t *b = &APR_ARRAY_IDX(again, i,
                                                   memsess_placed_t);

        if (strcmp(a->name, b->name) || strcmp(a->served, b->served)
            || a->replicas != b->replicas || a->failover != b->failover
            || a->ketama != b->ketama || a->format != b->format) {
            fail("pool %d changed on its way back", i);
        }
    }
    free(text);
    apr_pool_destroy(p);
    return 0;
}
