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

/* The state file's text (pure, APR only): the placement in force of every
 * pool, kept where a cold start finds it (memsess_adopt.c reads and writes
 * the file).
 *
 *   memsess-state 1
 *   <pool name> TAB <servers> TAB <replicas> TAB <failover> TAB <ketama>
 *       TAB <format> [TAB <namespace>]
 *
 * one line per pool: its (first vhost's) name, every server in config
 * order as "host:port:weight" joined by commas, then
 * sess_number_of_replicas, memsess_failover_e, sess_consistent_hash (0/1)
 * and memsess_format_e as decimal numbers, then the sessions' namespace
 * (sess_prefix: absent in a file of an earlier version, whose pools had
 * php.ini's; names and servers hold no control character).  Nothing in it is secret.  A
 * line that does not read back is skipped (and counted), never guessed. */

#include <string.h>

#include "apr_strings.h"

#include "memsess_state.h"
#include "memsess_table.h"

/* A name or a server list the file can hold: not empty, no control
 * character (a tab ends a field, a line end a line). */
static int clean(const char *s, apr_size_t len)
{
    apr_size_t i;

    for (i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            return 0;
        }
    }
    return len > 0;
}

/* A namespace the file can hold: as a name, and no longer than one. */
static int namespace_ok(const char *s, apr_size_t len)
{
    apr_size_t i;

    for (i = 0; i < len; i++) {
        if (s[i] == ' ') {
            return 0;
        }
    }
    return clean(s, len) && len <= MEMSESS_NAMESPACE_MAX;
}

char *memsess_state_format(apr_pool_t *p, const memsess_placed_t *placed,
                           int n)
{
    char *text = apr_pstrcat(p, MEMSESS_STATE_MAGIC, "\n", NULL);
    int i;

    for (i = 0; i < n; i++) {
        const memsess_placed_t *pl = &placed[i];

        if (!clean(pl->name, strlen(pl->name))
            || !clean(pl->served, strlen(pl->served))) {
            continue;   /* would not read back: the pool is left out */
        }
        text = apr_psprintf(p, "%s%s\t%s\t%d\t%d\t%d\t%d%s%s\n", text,
                            pl->name, pl->served, pl->replicas, pl->failover,
                            pl->ketama, pl->format, pl->prefix ? "\t" : "",
                            pl->prefix && namespace_ok(pl->prefix,
                                                       strlen(pl->prefix))
                            ? pl->prefix : "");
    }
    return text;
}

/* A small decimal number, all of field: 1, or 0. */
static int small_number(const char *field, apr_size_t len, int max, int *out)
{
    apr_size_t i;
    int n = 0;

    if (!len || len > 4) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (field[i] < '0' || field[i] > '9') {
            return 0;
        }
        n = n * 10 + (field[i] - '0');
    }
    if (n > max) {
        return 0;
    }
    *out = n;
    return 1;
}

/* One line (without its end): 1 and *pl filled, or 0. */
static int parse_line(apr_pool_t *p, const char *line, apr_size_t len,
                      memsess_placed_t *pl)
{
    const char *field[7];
    apr_size_t flen[7];
    apr_size_t i, start = 0;
    int f = 0;

    for (i = 0; i <= len; i++) {
        if (i < len && line[i] != '\t') {
            continue;
        }
        if (f == 7) {
            return 0;   /* an eighth field */
        }
        field[f] = line + start;
        flen[f++] = i - start;
        start = i + 1;
    }
    if (f < 6 || (f == 7 && !namespace_ok(field[6], flen[6]))
        || !clean(field[0], flen[0]) || !clean(field[1], flen[1])
        || flen[0] >= MEMSESS_VIEW_NAME_MAX
        || !small_number(field[2], flen[2], MEMSESS_MAX_SERVERS,
                         &pl->replicas)
        || !small_number(field[3], flen[3], MEMSESS_FAILOVER_SUCCESSOR,
                         &pl->failover)
        || !small_number(field[4], flen[4], 1, &pl->ketama)
        || !small_number(field[5], flen[5], MEMSESS_FORMAT_MEMCACHE,
                         &pl->format)) {
        return 0;
    }
    pl->name = apr_pstrmemdup(p, field[0], flen[0]);
    pl->served = apr_pstrmemdup(p, field[1], flen[1]);
    pl->prefix = f == 7 ? apr_pstrmemdup(p, field[6], flen[6]) : NULL;
    return 1;
}

const char *memsess_state_parse(apr_pool_t *p, const char *text,
                                apr_size_t len, apr_array_header_t *out,
                                int *bad)
{
    apr_size_t magic = sizeof(MEMSESS_STATE_MAGIC) - 1, at, end;

    *bad = 0;
    if (len < magic + 1 || memcmp(text, MEMSESS_STATE_MAGIC, magic)
        || text[magic] != '\n') {
        return "it does not begin with \"" MEMSESS_STATE_MAGIC "\"";
    }
    for (at = magic + 1; at < len; at = end + 1) {
        memsess_placed_t pl;
        int i;

        for (end = at; end < len && text[end] != '\n'; end++) {
        }
        if (end == len) {
            (*bad)++;   /* cut short: a line without its end */
            break;
        }
        if (!parse_line(p, text + at, end - at, &pl)) {
            (*bad)++;
            continue;
        }
        for (i = 0; i < out->nelts; i++) {
            if (!strcmp(APR_ARRAY_IDX(out, i, memsess_placed_t).name,
                        pl.name)) {
                break;
            }
        }
        if (i < out->nelts) {
            (*bad)++;   /* a name twice: neither is trusted more */
            continue;
        }
        APR_ARRAY_PUSH(out, memsess_placed_t) = pl;
    }
    return NULL;
}
