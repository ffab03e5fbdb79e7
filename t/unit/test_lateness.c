/* Unit tests of memsess_lateness.c: the kernel's counters as read, and
 * the judgement of a probe's window (was the checker itself late?). */
#include <sched.h>
#include <time.h>

#include "apr_general.h"
#include "apr_strings.h"

#include "memsess_lateness.h"
#include "tap.h"

#define PSI "some avg10=5.28 avg60=3.52 avg300=1.08 total=3991834\n" \
            "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"

static int psi(const char *text, apr_int64_t *v)
{
    return memsess_late_parse_psi(text, strlen(text), v);
}

static int sched(const char *text, apr_int64_t *v)
{
    return memsess_late_parse_schedstat(text, strlen(text), v);
}

static memsess_late_sample_t at(apr_time_t t, apr_int64_t stall,
                                apr_int64_t wait)
{
    memsess_late_sample_t s;

    s.at = t;
    s.stall_us = stall;
    s.wait_us = wait;
    return s;
}

int main(void)
{
    apr_int64_t v = 0;
    memsess_late_sample_t a, b, s1, s2;
    char why[64];
    volatile unsigned long spin = 0;
    apr_time_t until;

    apr_initialize();

    ok(psi(PSI, &v) && v == 3991834, "PSI: the some line's total (%"
       APR_INT64_T_FMT ")", v);
    ok(psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=0", &v) && v == 0,
       "PSI: a last line without its newline");
    ok(!psi("full avg10=0.00 avg60=0.00 avg300=0.00 total=7\n", &v),
       "PSI: the full line is not the some line");
    ok(!psi("some avg10=0.00 avg60=0.00 avg300=0.00\nfull total=5\n", &v),
       "PSI: a total on the next line is not this line's");
    ok(!psi("some total=\n", &v), "PSI: an empty total is refused");
    ok(!psi("some total=12x\n", &v), "PSI: a total with a letter is refused");
    ok(!psi("some total=1234567890123456789\n", &v),
       "PSI: 19 digits are refused");
    ok(!psi("", &v), "PSI: empty");
    ok(!memsess_late_parse_psi("some total=5\n", 8, &v),
       "PSI: never reads past the length");

    ok(sched("3976036 3098644 2\n", &v) && v == 3098, "schedstat: the wait, "
       "ns to us (%" APR_INT64_T_FMT ")", v);
    ok(!sched("3976036\n", &v), "schedstat: one field is refused");
    ok(!sched(" 1 2 3\n", &v), "schedstat: a leading blank is refused");
    ok(!sched("1 x 3\n", &v), "schedstat: a wait that is no number");

    a = at(1000000, 500, 100);
    b = at(1100000, 500 + 24999, 100);
    ok(!memsess_late_judge(&a, &b, why, sizeof(why)),
       "a window with tasks waiting under a quarter of it is not late");
    b.stall_us = 500 + 25000;
    ok(memsess_late_judge(&a, &b, why, sizeof(why)),
       "a quarter of it is late: %s", why);
    b = at(1100000, 500, 100 + 30000);
    ok(memsess_late_judge(&a, &b, why, sizeof(why)),
       "the probe thread itself waiting a quarter of it is late: %s", why);
    b = at(1100000, -1, -1);
    ok(!memsess_late_judge(&a, &b, why, sizeof(why)),
       "unknown counters judge nothing");
    a = at(1000000, -1, -1);
    b = at(1100000, 90000, 90000);
    ok(!memsess_late_judge(&a, &b, why, sizeof(why)),
       "... at either end");
    a = at(1000000, 90000, 90000);
    b = at(1100000, 100, 100);
    ok(!memsess_late_judge(&a, &b, why, sizeof(why)),
       "a counter that went back says nothing");
    b = at(1000000, 900000, 900000);
    ok(!memsess_late_judge(&a, &b, why, sizeof(why)),
       "an empty window is never late");

    /* the real counters of this machine, if it has them */
    memsess_late_sample(&s1);
    until = apr_time_now() + apr_time_from_msec(20);
    while (apr_time_now() < until) {
        spin++;
    }
    memsess_late_sample(&s2);
    ok(s2.at > s1.at, "samples are stamped");
    ok(s1.stall_us < 0 || s2.stall_us >= s1.stall_us,
       "this machine's PSI total does not go back");
    ok(s1.wait_us < 0 || s2.wait_us >= s1.wait_us,
       "this thread's wait does not go back");
    printf("# this machine: %s\n", memsess_late_sources()
           ? memsess_late_sources() : "no counters");
    return done_testing();
}
