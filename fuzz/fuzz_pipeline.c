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

/* libFuzzer harness of memsess_pipeline.c's wire: a stream of answers to a
 * batch of writes, hostile, as a memcached server (or anything listening
 * in its place) may send it.  The first byte says how many writes (1 to
 * 16) and which carry a cas; the rest is the stream, copied into a block
 * of its exact size (ASan sees any read past it); with bit 0x20, every
 * third write is a delete.  What it checks (abort()
 * on any difference with an independent reading of the header):
 *   - an answer is taken whole only when its magic is 0x81, its body at
 *     most MEMSESS_PUT_BODY_MAX and no shorter than its key and extras,
 *     and all of its bytes are there; more is asked for only when they
 *     are not; the length given is the header's and the body's;
 *   - an answer applies only to the write expected next (its opaque, its
 *     opcode: DELETE, SET with a cas, ADD without), and a write is stored
 *     only with status 0, no body and a cas (a delete: no cas needed);
 *     statuses 1, 2 and 5 leave it to
 *     the newer copy, every other one is a refusal;
 *   - each write, encoded, reads back as the same fields. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memsess_pipeline.h"

#define FUZZ_NAME "fuzz_pipeline"
#include "fuzz.h"

static uint32_t be(const unsigned char *p, int n)
{
    uint32_t v = 0;
    int i;

    for (i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* -1 no answer, 0 more needed, else its length: the model. */
static long model_parse(const unsigned char *b, size_t len)
{
    uint32_t body;

    if (!len) {
        return 0;
    }
    if (b[0] != 0x81) {
        return -1;
    }
    if (len < 24) {
        return 0;
    }
    body = be(b + 8, 4);
    if (body > MEMSESS_PUT_BODY_MAX || be(b + 2, 2) + b[4] > body) {
        return -1;
    }
    return len < 24 + (size_t)body ? 0 : (long)(24 + body);
}

static int op_of(const memsess_put_t *put)
{
    return put->del ? 0x04 : put->cas ? 0x01 : 0x02;
}

static void check_encode(const memsess_put_t *put, uint32_t opaque)
{
    size_t size = memsess_put_size(put);
    unsigned char *b = malloc(size);

    if (!b) {
        abort();
    }
    memsess_put_encode(b, put, opaque);
    if (put->del) {
        if (size != 24 + put->keylen || b[0] != 0x80 || b[1] != 0x04
            || be(b + 2, 2) != put->keylen || b[4] != 0
            || be(b + 8, 4) != put->keylen || be(b + 12, 4) != opaque
            || be(b + 16, 4) || be(b + 20, 4)
            || memcmp(b + 24, put->key, put->keylen)) {
            fail("delete %u encoded differently", (unsigned)opaque);
        }
        free(b);
        return;
    }
    if (b[0] != 0x80 || b[1] != (put->cas ? 0x01 : 0x02)
        || be(b + 2, 2) != put->keylen || b[4] != 8
        || be(b + 8, 4) != 8 + put->keylen + put->vlen
        || be(b + 12, 4) != opaque
        || ((uint64_t)be(b + 16, 4) << 32 | be(b + 20, 4)) != put->cas
        || be(b + 24, 4) != put->flags || be(b + 28, 4) != put->exp
        || memcmp(b + 32, put->key, put->keylen)
        || (put->vlen && memcmp(b + 32 + put->keylen, put->value,
                                put->vlen))) {
        fail("write %u encoded differently", (unsigned)opaque);
    }
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    memsess_put_t puts[16];
    unsigned char *buf;
    size_t len, at = 0;
    int n, k, next = 0;

    (void)fuzz_root();   /* APR, as the module has it */
    if (size < 1) {
        return 0;
    }
    n = 1 + (data[0] & 0x0f);
    memset(puts, 0, sizeof(puts));
    for (k = 0; k < n; k++) {
        puts[k].key = (const char *)data;
        puts[k].keylen = size < 250 ? size : 250;
        puts[k].value = (const char *)data + (size > 1);
        puts[k].vlen = size - (size > 1);
        puts[k].flags = 0x9e3779b9u * (uint32_t)k;
        puts[k].exp = (uint32_t)size * 7919u;
        puts[k].cas = (data[0] & 0x10) && (k & 1) ? 0x1122334455667788ULL
                                                 + (uint64_t)k : 0;
        puts[k].del = (data[0] & 0x20) && k % 3 == 2;
        check_encode(&puts[k], (uint32_t)k);
    }
    len = size - 1;
    buf = malloc(len ? len : 1);
    if (!buf) {
        abort();
    }
    memcpy(buf, data + 1, len);
    while (next < n) {
        memsess_put_reply_t r;
        int used = memsess_put_reply_parse(buf + at, len - at, &r);
        long want = model_parse(buf + at, len - at);
        int applied, st;

        if (used != want) {
            fail("parse: %d, the model %ld", used, want);
        }
        if (used <= 0) {
            break;
        }
        applied = memsess_put_reply_apply(puts, n, next, &r);
        if ((applied == 0)
            != (r.opaque == (uint32_t)next && r.opcode == op_of(&puts[next])
                && (r.status != 0
                    || (!r.body && (r.cas || puts[next].del))))) {
            fail("answer %d applied: %d", next, applied);
        }
        if (applied < 0) {
            break;
        }
        st = r.status;
        if ((puts[next].result == MEMSESS_PUT_STORED) != (st == 0)
            || (puts[next].result == MEMSESS_PUT_NEWER)
               != (st == 1 || st == 2 || st == 5)
            || (puts[next].result == MEMSESS_PUT_STORED
                && puts[next].new_cas != r.cas)) {
            fail("answer %d: result %d for status %d", next,
                 (int)puts[next].result, st);
        }
        at += (size_t)used;
        next++;
    }
    free(buf);
    return 0;
}
