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

/* libFuzzer harness of memsess_sync.c's pure parts: the metadump line
 * parser (what memcached sends is untrusted) and the per-key decision
 * of the rejoin sync, each against a model written another way.
 *
 * Input: a line (up to the first '\n', given to the parser in a buffer of
 * exactly its length, so ASan sees any read past it), then the decision:
 *   byte 0  kind (b % 3), byte 1 here (b % 4), byte 2 returning (b % 4),
 *   byte 3  how many servers now (b % 4) and next (b / 4 % 4),
 *   then the server ids (b % 4) of now, then of next.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apr_general.h"
#include "apr_strings.h"

#include "memsess_listing.h"
#include "memsess_sync.h"
#include "memsess_feed.h"

#define FUZZ_NAME "fuzz_sync"
#include "fuzz.h"

/* The model parser: fields split on spaces with strtok, numbers with
 * strtoll, %XX with sscanf. */
static int model_parse(const char *line, size_t len, char *key, size_t *klen,
                       long long *exp, long long *la)
{
    char *copy, *tok, *save = NULL;
    int have_key = 0, have_exp = 0, have_la = 0, bad = 0;

    if (len == 3 && !memcmp(line, "END", 3)) {
        return 0;
    }
    if (memchr(line, '\0', len)) {
        /* the real one reads NULs as bytes; the model cannot: only check
         * that it refuses or takes them consistently below */
        return -2;
    }
    copy = malloc(len + 1);
    memcpy(copy, line, len);
    copy[len] = '\0';
    for (tok = strtok_r(copy, " ", &save); tok && !bad;
         tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '='), *end;
        const char *v;

        if (!eq) {
            bad = 1;
            break;
        }
        *eq = '\0';
        v = eq + 1;
        if (!strcmp(tok, "key")) {
            size_t n = 0, i;

            if (have_key) {
                bad = 1;
            }
            for (i = 0; v[i] && !bad; i++) {
                unsigned int c = (unsigned char)v[i];

                if (c == '%') {
                    char hex[3] = { v[i + 1], v[i + 1] ? v[i + 2] : 0, 0 };

                    if (!hex[0] || !hex[1] || !strchr("0123456789abcdefABCDEF",
                                                      hex[0])
                        || !strchr("0123456789abcdefABCDEF", hex[1])) {
                        bad = 1;
                        break;
                    }
                    sscanf(hex, "%2x", &c);
                    i += 2;
                }
                if (c <= 0x20 || c == 0x7f || n >= MEMSESS_KEY_MAX) {
                    bad = 1;
                    break;
                }
                key[n++] = (char)c;
            }
            if (!n) {
                bad = 1;
            }
            key[n] = '\0';
            *klen = n;
            have_key = 1;
        }
        else if (!strcmp(tok, "exp") || !strcmp(tok, "la")) {
            int is_exp = tok[0] == 'e';
            size_t digits = strlen(v) - (v[0] == '-');
            long long n;

            if ((is_exp ? have_exp : have_la) || !*v || digits < 1
                || digits > 18 || strspn(v + (v[0] == '-'), "0123456789")
                                  != digits) {
                bad = 1;
                break;
            }
            n = strtoll(v, &end, 10);
            if (is_exp ? n < -1 : n < 0) {
                bad = 1;
                break;
            }
            if (is_exp) {
                *exp = n;
                have_exp = 1;
            }
            else {
                *la = n;
                have_la = 1;
            }
        }
    }
    free(copy);
    return !bad && have_key && have_exp && have_la ? 1 : -1;
}

static int in(const int *l, int n, int s)
{
    while (n-- > 0) {
        if (l[n] == s) {
            return 1;
        }
    }
    return 0;
}

/* The decision as a table: who is here, what the key is, where it goes. */
static memsess_sync_action_e model_decide(memsess_key_kind_e kind, int here,
                                          int s, const int *now, int nnow,
                                          const int *next, int nnext)
{
    int on_s_next = in(next, nnext, s);
    int authority = nnow ? now[0] : -1;

    switch (kind) {
    case MEMSESS_KEY_OTHER:
        return MEMSESS_SYNC_SKIP;
    case MEMSESS_KEY_LOCK:
        return here == s ? MEMSESS_SYNC_DROP : MEMSESS_SYNC_SKIP;
    default:
        break;
    }
    if (here == s) {
        if (!on_s_next) {
            return MEMSESS_SYNC_DROP;
        }
        return authority < 0 || authority == s ? MEMSESS_SYNC_SKIP
                                               : MEMSESS_SYNC_VERIFY;
    }
    return on_s_next && authority == here ? MEMSESS_SYNC_COPY
                                          : MEMSESS_SYNC_SKIP;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t len = nl ? (size_t)(nl - data) : size;
    char *line = malloc(len ? len : 1);
    memsess_dump_item_t it;
    char mkey[MEMSESS_KEY_MAX + 1];
    size_t mklen = 0;
    long long mexp = 0, mla = 0;
    int got, want;

    (void)fuzz_root();   /* APR up, as in the other harnesses */
    memcpy(line, data, len);
    got = memsess_dump_parse(line, len, &it);
    want = model_parse(line, len, mkey, &mklen, &mexp, &mla);
    if (got == 1) {
        if (it.keylen < 1 || it.keylen > MEMSESS_KEY_MAX
            || strlen(it.key) != it.keylen) {
            fail("a key of %zu bytes taken", (size_t)it.keylen);
        }
        if (strpbrk(it.key, " \r\n\t")) {
            fail("a key with white space taken");
        }
    }
    if (want != -2 && got != want) {
        fail("parse gave %d, the model %d", got, want);
    }
    if (want == 1 && (it.keylen != mklen || memcmp(it.key, mkey, mklen)
                      || it.exp != mexp || it.la != mla)) {
        fail("parse and the model read different fields");
    }
    if (got == 1 && (it.cls < 0 || it.cls >= MEMSESS_DUMP_CLASSES)) {
        fail("a slab class %d taken", it.cls);
    }
    /* the same line as a line of memcached's log of writes, and as an
     * answer to a meta get (memsess_feed.c) */
    {
        memsess_dump_item_t fi;
        int r = memsess_feed_parse(line, len, &fi);

        if (r < -1 || r > 1 || (r == 1 && (fi.keylen < 1
                                           || fi.keylen > MEMSESS_KEY_MAX
                                           || strlen(fi.key) != fi.keylen
                                           || strpbrk(fi.key, " \r\n\t")))) {
            fail("the log's line gave %d, a key of %zu bytes", r,
                 (size_t)fi.keylen);
        }
        r = memsess_feed_meta(line, len, 1800000000, &fi);
        if (r < -1 || r > 1
            || (r == 1 && (fi.keylen < 1 || fi.keylen > MEMSESS_KEY_MAX
                           || strlen(fi.key) != fi.keylen
                           || fi.la > 1800000000
                           || (fi.exp != -1 && fi.exp < 1800000000)))) {
            fail("a meta get's answer gave %d (exp %lld la %lld)", r,
                 (long long)fi.exp, (long long)fi.la);
        }
        if (r == 0 && (len != 2 || memcmp(line, "MN", 2))) {
            fail("an end of batch that is not MN");
        }
    }
    if (got == 1) {
        const char *id;
        apr_size_t idlen;
        memsess_key_kind_e k = memsess_key_kind(NULL, it.key, it.keylen,
                                                &id, &idlen);
        memsess_key_kind_e k2 = memsess_key_kind("s/", it.key, it.keylen,
                                                 &id, &idlen);

        if (k != MEMSESS_KEY_OTHER && k2 != MEMSESS_KEY_OTHER) {
            fail("one key in two namespaces");
        }
        k = memsess_key_kind(NULL, it.key, it.keylen, &id, &idlen);

        if (k != MEMSESS_KEY_OTHER
            && (idlen < 1 || id + idlen != it.key + it.keylen)) {
            fail("key_kind gave an id outside the key");
        }
    }
    free(line);

    if (nl && size - len - 1 >= 4) {
        const uint8_t *d = nl + 1;
        size_t left = size - len - 1;
        memsess_key_kind_e kind = (memsess_key_kind_e)(d[0] % 3);
        int here = d[1] % 4, s = d[2] % 4, nnow = d[3] % 4,
            nnext = d[3] / 4 % 4, now[4], next[4], i;

        if (left < 4 + (size_t)nnow + (size_t)nnext) {
            return 0;
        }
        for (i = 0; i < nnow; i++) {
            now[i] = d[4 + i] % 4;
        }
        for (i = 0; i < nnext; i++) {
            next[i] = d[4 + nnow + i] % 4;
        }
        if (memsess_sync_decide(kind, here, s, now, nnow, next, nnext)
            != model_decide(kind, here, s, now, nnow, next, nnext)) {
            fail("decide differs from the model (kind %d here %d s %d)",
                 kind, here, s);
        }
    }
    return 0;
}
