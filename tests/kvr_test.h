/* kvr_test.h -- the tiny test harness: checks that print FAIL file:line expr, and a case table
 * so `./test_x name` runs one case. Tests are compiled with assertions independent of NDEBUG. */
#ifndef KVR_TEST_H
#define KVR_TEST_H
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "kvr_common.h"

static int kvr_test_fails, kvr_test_checks;

#define KVR_CHECK(c)                                                                               \
    do {                                                                                           \
        kvr_test_checks++;                                                                         \
        if (!(c)) {                                                                                \
            kvr_test_fails++;                                                                      \
            fprintf(stderr, "FAIL %s:%d %s\n", __FILE__, __LINE__, #c);                            \
        }                                                                                          \
    } while (0)
#define KVR_CHECK_EQ_INT(a, b)                                                                     \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        kvr_test_checks++;                                                                         \
        if (a_ != b_) {                                                                            \
            kvr_test_fails++;                                                                      \
            fprintf(stderr, "FAIL %s:%d %s == %s (%lld vs %lld)\n", __FILE__, __LINE__, #a, #b,    \
                    a_, b_);                                                                       \
        }                                                                                          \
    } while (0)
#define KVR_CHECK_NEAR(a, b, atol, rtol)                                                           \
    do {                                                                                           \
        double a_ = (double)(a), b_ = (double)(b);                                                 \
        kvr_test_checks++;                                                                         \
        if (!(fabs(a_ - b_) <= (atol) + (rtol)*fabs(b_))) {                                        \
            kvr_test_fails++;                                                                      \
            fprintf(stderr, "FAIL %s:%d %s ~ %s (%.9g vs %.9g)\n", __FILE__, __LINE__, #a, #b, a_, \
                    b_);                                                                           \
        }                                                                                          \
    } while (0)
#define KVR_CHECK_OK(expr, errp)                                                                   \
    do {                                                                                           \
        kvr_status s_ = (expr);                                                                    \
        kvr_test_checks++;                                                                         \
        if (s_ != KVR_OK) {                                                                        \
            kvr_test_fails++;                                                                      \
            fprintf(stderr, "FAIL %s:%d %s -> %s: %s\n", __FILE__, __LINE__, #expr,                \
                    kvr_status_str(s_), (errp)->msg);                                              \
        }                                                                                          \
    } while (0)

typedef struct kvr_test_case {
    const char *name;
    void (*fn)(void);
} kvr_test_case;

/* Run all cases, or only those named on the command line. Returns the process exit code. */
static inline int kvr_test_main(const kvr_test_case *cases, int n, int argc, char **argv) {
    int ran = 0;
    for (int i = 0; i < n; i++) {
        int want = argc <= 1;
        for (int a = 1; a < argc; a++)
            if (strcmp(argv[a], cases[i].name) == 0) want = 1;
        if (!want) continue;
        int before = kvr_test_fails;
        cases[i].fn();
        ran++;
        printf("%s %s\n", kvr_test_fails == before ? "ok  " : "FAIL", cases[i].name);
    }
    printf("%d cases, %d checks, %d failed\n", ran, kvr_test_checks, kvr_test_fails);
    if (ran == 0) {
        fprintf(stderr, "no test case matched\n");
        return 1;
    }
    return kvr_test_fails ? 1 : 0;
}
#define KVR_TEST_MAIN(cases)                                                                       \
    int main(int argc, char **argv) {                                                              \
        return kvr_test_main(cases, (int)(sizeof(cases) / sizeof(cases[0])), argc, argv);         \
    }
#endif
