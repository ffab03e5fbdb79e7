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

/* libFuzzer harness of memsess_verdicts.c: the verdict records other Apache
 * instances (or anybody who can write to a memcached server) leave in the
 * pool, fed as they come back from memcached.
 *
 * Input: the value of a record, in a malloc'd block of its exact size, so
 * ASan sees any byte read past it.
 *
 * What it checks (abort() on any difference, libFuzzer saves the input):
 *   - a refused record leaves no line; an accepted one holds at most
 *     MEMSESS_VERDICTS_MAX lines, each a valid instance name, reported no
 *     later than the skew allows, not lapsed, expiring no earlier than it
 *     was reported;
 *   - the input is refused when it is longer than a record can be, or does
 *     not start with the version-1 header of verdicts or of members (whose
 *     lines carry two fingerprints, kept exactly);
 *   - what is accepted, formatted again, fits MEMSESS_VERDICT_RECORD_MAX
 *     and parses back to the same lines;
 *   - putting our line in, refreshing it and taking it out keeps all that,
 *     and the record then holds our line exactly when it should;
 *   - the list of other instances never overflows its buffer, never names
 *     us, and is always NUL-terminated, even in a tiny buffer.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apr_general.h"
#include "apr_strings.h"

#include "memsess_verdicts.h"

#define FUZZ_NAME "fuzz_verdicts"
#include "fuzz.h"

#define NOW  ((apr_int64_t)1800000000)
#define SELF "web1.example:80"

static void check_lines(const memsess_verdicts_t *vs, apr_int64_t now,
                        const char *what)
{
    int i;

    if (vs->n < 0 || vs->n > MEMSESS_VERDICTS_MAX) {
        fail("%s: %d lines", what, vs->n);
    }
    for (i = 0; i < vs->n; i++) {
        const memsess_verdict_t *v = &vs->v[i];

        if (!memsess_instance_name_valid(v->name, MEMSESS_INSTANCE_MAX)) {
            fail("%s: line %d has a bad name", what, i);
        }
        if (v->expires < now - MEMSESS_VERDICT_SKEW_MAX
            || v->expires < v->reported
            || v->expires - v->reported > MEMSESS_VERDICT_TTL_MAX
            || v->reported > now + MEMSESS_VERDICT_SKEW_MAX
            || v->expires > now + MEMSESS_VERDICT_SKEW_MAX
                            + MEMSESS_VERDICT_TTL_MAX) {
            fail("%s: line %d (%s %lld %lld) should have been dropped", what,
                 i, v->name, (long long)v->reported, (long long)v->expires);
        }
    }
}

static int has(const memsess_verdicts_t *vs, const char *name)
{
    int i;

    for (i = 0; i < vs->n; i++) {
        if (!strcmp(vs->v[i].name, name)) {
            return 1;
        }
    }
    return 0;
}

/* Formats vs, parses it back, compares. */
static void round_trip(const memsess_verdicts_t *vs, const char *what)
{
    static char buf[MEMSESS_VERDICT_RECORD_MAX];
    static memsess_verdicts_t back;
    apr_size_t len = memsess_verdicts_format(buf, sizeof(buf), vs);
    const char *why;
    int i;

    if (len >= sizeof(buf) || strlen(buf) != len) {
        fail("%s: formatted to %zu bytes", what, (size_t)len);
    }
    why = memsess_verdicts_parse(buf, len, NOW, &back);
    if (why) {
        fail("%s: our own record is refused: %s", what, why);
    }
    if (back.n != vs->n || back.future || back.members != vs->members) {
        fail("%s: %d lines read back of %d", what, back.n, vs->n);
    }
    for (i = 0; i < vs->n; i++) {
        if (strcmp(back.v[i].name, vs->v[i].name)
            || back.v[i].reported != vs->v[i].reported
            || back.v[i].expires != vs->v[i].expires
            || back.v[i].configured != vs->v[i].configured
            || back.v[i].in_force != vs->v[i].in_force
            || back.v[i].nonce != vs->v[i].nonce
            || back.v[i].wrote_ms != (vs->members && vs->v[i].wrote_ms > 0
                                      ? vs->v[i].wrote_ms : 0)) {
            fail("%s: line %d differs when read back", what, i);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static memsess_verdicts_t vs;
    char *in = malloc(size ? size : 1);
    char who[MEMSESS_REPORTERS_MAX], tiny[9];
    const char *why;
    size_t hl = strlen("memsess-verdicts 1\n");
    size_t ml = strlen("memsess-members 1\n");

    if (!in) {
        return 0;
    }
    (void)fuzz_root();   /* apr_initialize, once */
    memcpy(in, data, size);
    why = memsess_verdicts_parse(in, size, NOW, &vs);
    if (why && vs.n) {
        fail("refused (%s) with %d lines left", why, vs.n);
    }
    if (!why && (size > MEMSESS_VERDICT_RECORD_MAX
                 || (vs.members ? size < ml || memcmp(in, "memsess-members 1\n", ml)
                                : size < hl || memcmp(in, "memsess-verdicts 1\n",
                                                      hl)))) {
        fail("accepted a record without its header or past the bound");
    }
    free(in);
    if (why) {
        return 0;
    }
    check_lines(&vs, NOW, "parsed");
    round_trip(&vs, "parsed");

    who[0] = '\0';
    memsess_verdicts_others(&vs, SELF, NOW, who, sizeof(who), NULL);
    if (strlen(who) >= sizeof(who)) {
        fail("the list of others overflows");
    }
    {
        char *tok, *last;

        for (tok = apr_strtok(who, ", ", &last); tok;
             tok = apr_strtok(NULL, ", ", &last)) {
            if (!strcmp(tok, SELF) || !has(&vs, tok)) {
                fail("the list of others names %s", tok);
            }
        }
    }
    tiny[0] = '\0';
    memsess_verdicts_others(&vs, SELF, NOW, tiny, sizeof(tiny), NULL);
    if (strlen(tiny) >= sizeof(tiny)) {
        fail("the list of others overflows a tiny buffer");
    }

    if (vs.members) {
        memsess_members_put(&vs, SELF, NOW, NOW + 4, 7, 9, 11,
                            (apr_int64_t)NOW * 1000,
                            (apr_int64_t)NOW * 1000 - 5000);
        if (!has(&vs, SELF)) {
            fail("our member line is not in after put");
        }
        round_trip(&vs, "our member line");
        return 0;
    }
    memsess_verdicts_put(&vs, SELF, 1, NOW, NOW + 4);
    if (!has(&vs, SELF)) {
        fail("our line is not in after put");
    }
    check_lines(&vs, NOW, "ours in");
    round_trip(&vs, "ours in");
    memsess_verdicts_put(&vs, SELF, 1, NOW + 1, NOW + 5);
    round_trip(&vs, "refreshed");
    memsess_verdicts_put(&vs, SELF, 0, NOW, 0);
    if (has(&vs, SELF)) {
        fail("our line is still in after taking it out");
    }
    round_trip(&vs, "ours out");
    return 0;
}
