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

/* libFuzzer harness of memsess_lateness.c's parsers: the text of
 * /proc/pressure/cpu and of /proc/thread-self/schedstat, as the checker
 * reads them, hostile.  The input is copied into a block of its exact
 * size (ASan sees any read past it).  What it checks (abort() on any
 * difference):
 *   - a PSI total is taken only from a first line that starts "some ",
 *     from its " total=" field, and equals an independent reading of the
 *     digits there (at most 18, ended by a blank, a newline or the end);
 *   - a schedstat wait is the second field's nanoseconds / 1000, taken only
 *     when the first field is digits followed by one blank;
 *   - a judgement of two samples built from those values never calls a
 *     window late unless a counter grew by a quarter of it. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memsess_lateness.h"

#define FUZZ_NAME "fuzz_lateness"
#include "fuzz.h"

/* The model: digits at s[0..], at most 18, then a blank, newline or end. */
static int model_counter(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    int64_t n = 0;

    while (i < len && s[i] >= '0' && s[i] <= '9') {
        if (i == 18) {
            return 0;
        }
        n = n * 10 + (s[i++] - '0');
    }
    if (!i || (i < len && s[i] != ' ' && s[i] != '\n')) {
        return 0;
    }
    *out = n;
    return 1;
}

static int model_psi(const char *s, size_t len, int64_t *out)
{
    const char *nl = memchr(s, '\n', len), *t;
    size_t end = nl ? (size_t)(nl - s) : len, i;

    if (len < 5 || memcmp(s, "some ", 5)) {
        return 0;
    }
    for (i = 0; i + 7 <= end; i++) {
        t = s + i;
        if (!memcmp(t, " total=", 7)) {
            return model_counter(t + 7, end - i - 7, out);
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1);
    apr_int64_t got = -7, first = -1;
    int64_t want = -9;
    int ok, mok;
    size_t i = 0;
    memsess_late_sample_t a, b;
    char why[64];

    if (!in) {
        return 0;
    }
    (void)fuzz_root();   /* apr_initialize, once */
    memcpy(in, data, size);

    ok = memsess_late_parse_psi(in, size, &got);
    mok = model_psi(in, size, &want);
    if (ok != mok || (ok && got != want)) {
        fail("PSI: got %d/%lld, the model %d/%lld", ok, (long long)got, mok,
             (long long)want);
    }

    got = -7;
    ok = memsess_late_parse_schedstat(in, size, &got);
    while (i < size && in[i] >= '0' && in[i] <= '9') {
        i++;
    }
    mok = i > 0 && i < size && in[i] == ' '
          && model_counter(in + i + 1, size - i - 1, &want);
    if (ok != mok || (ok && got != want / 1000)) {
        fail("schedstat: got %d/%lld, the model %d/%lld", ok, (long long)got,
             mok, (long long)want);
    }

    /* two samples from whatever the input's first 32 bytes say */
    if (size >= 32) {
        memcpy(&a.at, in, 8);
        memcpy(&a.stall_us, in + 8, 8);
        memcpy(&b.stall_us, in + 16, 8);
        memcpy(&first, in + 24, 8);
        a.wait_us = b.wait_us = -1;
        a.at = a.at < 0 ? -(a.at / 2) : a.at / 2;   /* no overflow below */
        b.at = a.at + (first & 0xffffff);
        if (memsess_late_judge(&a, &b, why, sizeof(why))
            && !(a.stall_us >= 0 && b.stall_us >= a.stall_us
                 && b.stall_us - a.stall_us >= (b.at - a.at + 3) / 4
                 && b.at > a.at)) {
            fail("a window judged late without a counter grown by a quarter");
        }
    }
    free(in);
    return 0;
}
