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

/* libFuzzer harness of memsess_persist.c: a stored row as it comes back
 * from the database (MemsessPersist dbd; any program that can write the
 * table can put anything there).
 *
 * Input: the row's columns (key, flags, exp, cas, val), separated by
 * newlines; each is copied into a malloc'd block of its exact size (and
 * its NUL) so ASan sees any byte read past it.
 *
 * What it checks (fail() on any difference):
 *   - an accepted row has a PHP session key of at most 250 bytes, its id
 *     inside it, and its expiry not negative;
 *   - a value that decodes is at most the room given, and encoded again
 *     it is the very text it was read from (one spelling per value).
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "apr_general.h"

#include "memsess_listing.h"
#include "memsess_persist.h"

#define FUZZ_NAME "fuzz_persist"
#include "fuzz.h"

#define ROOM (4096)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *col[5] = { NULL, NULL, NULL, NULL, NULL };
    size_t start = 0, i;
    int k = 0;
    memsess_row_t row;
    static unsigned char out[ROOM];
    apr_size_t olen;

    (void)fuzz_root();
    for (i = 0; i <= size && k < 5; i++) {
        if (i == size || data[i] == '\n') {
            col[k] = malloc(i - start + 1);
            if (!col[k]) {
                goto done;
            }
            memcpy(col[k], data + start, i - start);
            col[k][i - start] = '\0';
            k++;
            start = i + 1;
        }
    }
    if (!memsess_row_parse(NULL, col[0], col[1], col[2], col[3], &row)) {
        if (row.keylen > MEMSESS_KEY_MAX || row.keylen != strlen(col[0])
            || row.id < row.key || row.id + row.idlen > row.key + row.keylen
            || row.exp < 0) {
            fail("an accepted row: key of %zu bytes, id outside it, or "
                 "expiry %lld", (size_t)row.keylen, (long long)row.exp);
        }
    }
    if (col[4] && memsess_b64_decode(col[4], strlen(col[4]), out, ROOM,
                                     &olen)) {
        char *again = malloc(memsess_b64_len(olen) + 1);

        if (olen > ROOM) {
            fail("decoded %zu bytes into a room of %d", (size_t)olen, ROOM);
        }
        if (!again) {
            goto done;
        }
        memsess_b64_encode(again, out, olen);
        if (strcmp(again, col[4])) {
            fail("a value read back is spelt another way when encoded again");
        }
        free(again);
    }
done:
    for (k = 0; k < 5; k++) {
        free(col[k]);
    }
    return 0;
}
