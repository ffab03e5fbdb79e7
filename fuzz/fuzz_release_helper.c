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

/* libFuzzer harness of memsess_release_helper.c's parser: a request to
 * the release helper ("release <slot>[ keep <inode>...]"), hostile.  The
 * input is copied into a block of its exact size (ASan sees any read past
 * it).  What it checks (abort() on any difference):
 *   - a request is taken only when it is exactly the grammar (one optional
 *     newline at the end), the slot below nslots (the first input byte),
 *     at most 4 slot digits and 20 per inode, at most KEEP inodes;
 *   - the slot and inodes taken equal an independent reading. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memsess_release_helper.h"

#define FUZZ_NAME "fuzz_release_helper"
#include "fuzz.h"

#define KEEP 4

/* digits at s[*i..]: at most maxd, then not a digit */
static int model_num(const char *s, size_t len, size_t *i, int maxd,
                     uint64_t *v)
{
    int n = 0;

    *v = 0;
    while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
        if (++n > maxd) {
            return 0;
        }
        *v = *v * 10 + (uint64_t)(s[(*i)++] - '0');
    }
    return n > 0;
}

static int model(const char *s, size_t len, int nslots, uint64_t *keep,
                 int *nkeep)
{
    size_t i = 8;
    uint64_t slot, ino;

    *nkeep = 0;
    if (len && s[len - 1] == '\n') {
        len--;
    }
    if (len < 8 || memcmp(s, "release ", 8)
        || !model_num(s, len, &i, 4, &slot) || slot >= (uint64_t)nslots) {
        return -1;
    }
    if (i == len) {
        return (int)slot;
    }
    if (len - i < 5 || memcmp(s + i, " keep", 5)) {
        return -1;
    }
    i += 5;
    while (i < len) {
        if (s[i] != ' ' || *nkeep >= KEEP) {
            return -1;
        }
        i++;
        if (!model_num(s, len, &i, 20, &ino)) {
            return -1;
        }
        keep[(*nkeep)++] = ino;
    }
    return *nkeep ? (int)slot : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_uint64_t keep[KEEP];
    uint64_t want[KEEP];
    int nkeep = KEEP, nwant = 0, got, exp, k, nslots;
    char *in;

    if (!size) {
        return 0;
    }
    (void)fuzz_root();
    nslots = data[0];
    in = malloc(size - 1 ? size - 1 : 1);
    if (!in) {
        return 0;
    }
    memcpy(in, data + 1, size - 1);
    got = memsess_rh_parse(in, size - 1, nslots, keep, &nkeep);
    exp = model(in, size - 1, nslots, want, &nwant);
    if (got != exp) {
        fail("slot %d, the model %d", got, exp);
    }
    if (got >= 0) {
        if (nkeep != nwant) {
            fail("%d inodes, the model %d", nkeep, nwant);
        }
        for (k = 0; k < nkeep; k++) {
            if (keep[k] != want[k]) {
                fail("inode %d differs", k);
            }
        }
    }
    free(in);
    return 0;
}
