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

/* The state file's text (memsess_state.c): what it keeps reads back, and
 * what does not read back is skipped, never guessed. */

#include <string.h>

#include "apr_general.h"
#include "apr_strings.h"

#include "memsess_state.h"
#include "tap.h"

static apr_array_header_t *parse(apr_pool_t *p, const char *text, int *bad,
                                 const char **why)
{
    apr_array_header_t *out = apr_array_make(p, 4, sizeof(memsess_placed_t));

    *why = memsess_state_parse(p, text, strlen(text), out, bad);
    return out;
}

int main(void)
{
    apr_pool_t *p;
    memsess_placed_t in[3] = {
        { "shop.example:80", "10.0.0.1:11211:1,10.0.0.2:11211:1", 1,
          MEMSESS_FAILOVER_SUCCESSOR, 0, MEMSESS_FORMAT_MEMCACHED, "shop/" },
        { "blog (main server)", "[::1]:11212:3", 0, MEMSESS_FAILOVER_DROP, 1,
          MEMSESS_FORMAT_MEMCACHED },
        { "bad\tname:80", "a:1:1", 0, 0, 1, 0 }
    };
    apr_array_header_t *out;
    const memsess_placed_t *pl;
    const char *why, *text;
    int bad;

    apr_initialize();
    apr_pool_create(&p, NULL);

    text = memsess_state_format(p, in, 3);
    is_str(text, MEMSESS_STATE_MAGIC "\n"
           "shop.example:80\t10.0.0.1:11211:1,10.0.0.2:11211:1\t1\t1\t0\t0"
           "\tshop/\n"
           "blog (main server)\t[::1]:11212:3\t0\t0\t1\t0\n",
           "the text: the magic line, one line per pool; a name with a tab "
           "is left out");
    out = parse(p, text, &bad, &why);
    ok(!why && !bad && out->nelts == 2, "what it wrote reads back whole");
    pl = &APR_ARRAY_IDX(out, 0, memsess_placed_t);
    ok(!strcmp(pl->name, in[0].name) && !strcmp(pl->served, in[0].served)
       && pl->replicas == 1 && pl->failover == MEMSESS_FAILOVER_SUCCESSOR
       && pl->ketama == 0 && pl->format == MEMSESS_FORMAT_MEMCACHED
       && pl->prefix && !strcmp(pl->prefix, "shop/"),
       "every field of a pool reads back, its namespace too");
    pl = &APR_ARRAY_IDX(out, 1, memsess_placed_t);
    ok(!strcmp(pl->name, in[1].name) && pl->ketama == 1 && !pl->prefix,
       "a name with blanks and parentheses reads back; no namespace "
       "recorded: none (a file of an earlier version)");

    out = parse(p, "memsess-state 2\n", &bad, &why);
    ok(why && !out->nelts, "another version is not a state file");
    out = parse(p, "", &bad, &why);
    ok(why != NULL, "an empty file is not a state file");
    out = parse(p, MEMSESS_STATE_MAGIC, &bad, &why);
    ok(why != NULL, "the magic without its line end is not one either");

    out = parse(p, MEMSESS_STATE_MAGIC "\n"
                "a:80\ta:1:1\t1\t1\t0\t0\n"
                "b:80\tb:1:1\t1\t2\t0\t0\n"       /* failover out of range */
                "c:80\tc:1:1\t1\t1\t2\t0\n"       /* ketama not 0/1 */
                "d:80\td:1:1\t1\t1\t0\n"          /* five fields */
                "e:80\te:1:1\t1\t1\t0\t0\tx y\n"  /* a namespace with a space */
                "e2:80\te:1:1\t1\t1\t0\t0\tx\ty\n" /* eight */
                "f:80\tf:1:1\t-1\t1\t0\t0\n"      /* a sign */
                "g:80\tg:1:1\t99999\t1\t0\t0\n"   /* replicas too many */
                "\tg:1:1\t1\t1\t0\t0\n"           /* no name */
                "a:80\tz:1:1\t0\t0\t1\t0\n"       /* a name twice */
                "h:80\th:1:1\t0\t0\t1\t1\n"
                "i:80\ti:1:1\t0\t0\t1\t0",        /* cut short */
                &bad, &why);
    ok(!why && bad == 10 && out->nelts == 2,
       "bad lines are skipped and counted (%d bad, %d kept)", bad,
       out->nelts);
    ok(!strcmp(APR_ARRAY_IDX(out, 0, memsess_placed_t).served, "a:1:1"),
       "a name twice: the first stays, the second is not trusted");
    ok(APR_ARRAY_IDX(out, 1, memsess_placed_t).format
       == MEMSESS_FORMAT_MEMCACHE, "MemsessFormat memcache reads back");

    apr_pool_destroy(p);
    apr_terminate();
    return done_testing();
}
