/* kvr_test.h -- the tiny test harness: checks that print FAIL file:line expr, and a case table
 * so `./test_x name` runs one case. Tests are compiled with assertions independent of NDEBUG. */
#ifndef KVR_TEST_H
#define KVR_TEST_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
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
/* Scratch files: kvr_test_tmp_path(name) is name inside a directory made under /tmp on first
 * use, kvr_test_tmpdir (the last four paths returned stay valid); kvr_test_rm_db removes an
 * SQLite file with its -wal and -shm; kvr_test_tmp_cleanup(rc) removes the directory and all in
 * it, and returns rc, or 1 when that failed. */
static char kvr_test_tmpdir[256];
static inline const char *kvr_test_tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    if (!kvr_test_tmpdir[0]) {
        snprintf(kvr_test_tmpdir, sizeof kvr_test_tmpdir, "/tmp/kvr_test_XXXXXX");
        if (!mkdtemp(kvr_test_tmpdir)) abort();
    }
    snprintf(buf[k], sizeof buf[k], "%s/%s", kvr_test_tmpdir, name);
    return buf[k];
}
static inline void kvr_test_rm_db(const char *path) {
    char b[600];
    unlink(path);
    snprintf(b, sizeof b, "%s-wal", path);
    unlink(b);
    snprintf(b, sizeof b, "%s-shm", path);
    unlink(b);
}
static inline int kvr_test_tmp_cleanup(int rc) {
    if (!kvr_test_tmpdir[0]) return rc;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", kvr_test_tmpdir);
    if (system(cmd) == 0) return rc;
    fprintf(stderr, "could not remove %s\n", kvr_test_tmpdir);
    return rc ? rc : 1;
}

#define KVR_TEST_MAIN(cases)                                                                       \
    int main(int argc, char **argv) {                                                              \
        return kvr_test_main(cases, (int)(sizeof(cases) / sizeof(cases[0])), argc, argv);         \
    }
#endif
