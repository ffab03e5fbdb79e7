/* A minimal TAP producer for the C unit tests (run by prove). */
#ifndef MEMSESS_TAP_H
#define MEMSESS_TAP_H

#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

#define ok(cond, ...) do {                                          \
        int ok_ = !!(cond);                                         \
        printf("%sok %d - ", ok_ ? "" : "not ", ++tap_n);           \
        printf(__VA_ARGS__);                                        \
        printf("\n");                                               \
        if (!ok_) {                                                 \
            tap_failed++;                                           \
            printf("#   failed at %s line %d\n", __FILE__, __LINE__); \
        }                                                           \
    } while (0)

#define is_str(got, want, ...) do {                                 \
        const char *g_ = (got), *w_ = (want);                       \
        ok(g_ && w_ && !strcmp(g_, w_), __VA_ARGS__);               \
        if (!(g_ && w_ && !strcmp(g_, w_))) {                       \
            printf("#   got:      '%s'\n#   expected: '%s'\n",      \
                   g_ ? g_ : "(null)", w_ ? w_ : "(null)");         \
        }                                                           \
    } while (0)

#define done_testing() (printf("1..%d\n", tap_n), tap_failed ? 1 : 0)

#endif
