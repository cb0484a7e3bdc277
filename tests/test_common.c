/* test_common.c -- status strings, error formatting, integer, size and size-list parsing. */
#include "kvr_test.h"

static void test_status_strings(void) {
    for (int s = 0; s < KVR_STATUS_COUNT; s++) KVR_CHECK(strlen(kvr_status_str((kvr_status)s)) > 0);
    KVR_CHECK(strcmp(kvr_status_str((kvr_status)999), "unknown status") == 0);
}

static void test_error_set_and_prefix(void) {
    kvr_error e;
    KVR_CHECK_EQ_INT(kvr_error_set(&e, KVR_ERR_IO, "open %s: %s", "x.db", "denied"), KVR_ERR_IO);
    KVR_CHECK(strcmp(e.msg, "open x.db: denied") == 0);
    kvr_error_prefix(&e, "loading %d", 3);
    KVR_CHECK(strcmp(e.msg, "loading 3: open x.db: denied") == 0);
    KVR_CHECK_EQ_INT(kvr_error_set(NULL, KVR_ERR_NOMEM, "x"), KVR_ERR_NOMEM);
}

static void test_parse_i64(void) {
    kvr_error e;
    int64_t v = -1;
    KVR_CHECK_OK(kvr_parse_i64("42", 0, 100, &v, &e), &e);
    KVR_CHECK_EQ_INT(v, 42);
    KVR_CHECK(kvr_parse_i64("42x", 0, 100, &v, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(kvr_parse_i64("", 0, 100, &v, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(kvr_parse_i64("101", 0, 100, &v, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "out of range") != NULL);
    KVR_CHECK(kvr_parse_i64("99999999999999999999", 0, 100, &v, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK_EQ_INT(v, 42); /* untouched on failure */
}

static void test_parse_size(void) {
    kvr_error e;
    int64_t v = -1;
    KVR_CHECK_OK(kvr_parse_size("4K", 1, INT64_MAX, &v, &e), &e);
    KVR_CHECK_EQ_INT(v, 4096);
    KVR_CHECK_OK(kvr_parse_size("3m", 1, INT64_MAX, &v, &e), &e);
    KVR_CHECK_EQ_INT(v, 3 << 20);
    KVR_CHECK_OK(kvr_parse_size("2G", 1, INT64_MAX, &v, &e), &e);
    KVR_CHECK_EQ_INT(v, (int64_t)2 << 30);
    KVR_CHECK_OK(kvr_parse_size("17", 1, 100, &v, &e), &e);
    KVR_CHECK_EQ_INT(v, 17);
    KVR_CHECK(kvr_parse_size("x", 1, 100, &v, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "\"x\" is not a whole number (K/M/G suffixes allowed)") == 0);
    KVR_CHECK(kvr_parse_size("1K", 1, 1000, &v, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "1024 is out of range [1, 1000]") == 0);
    KVR_CHECK(kvr_parse_size("", 1, 100, &v, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(kvr_parse_size("K", 1, 100, &v, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(kvr_parse_size("-4", 1, 100, &v, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(kvr_parse_size("99999999999G", 1, INT64_MAX, &v, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK_EQ_INT(v, 17); /* untouched on failure */
}

static void test_parse_size_list(void) {
    kvr_error e;
    int64_t out[8];
    int n = -1;
    KVR_CHECK_OK(kvr_parse_size_list("1K,512:1024:256,2", 1, 1 << 20, out, 8, &n, &e), &e);
    KVR_CHECK_EQ_INT(n, 5);
    const int64_t want[5] = {1024, 512, 768, 1024, 2};
    for (int i = 0; i < 5; i++) KVR_CHECK_EQ_INT(out[i], want[i]);
    KVR_CHECK_OK(kvr_parse_size_list("1:8:1", 1, 100, out, 8, &n, &e), &e); /* exactly max */
    KVR_CHECK_EQ_INT(n, 8);
    KVR_CHECK(kvr_parse_size_list("1:9:1", 1, 100, out, 8, &n, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "more than 8 values") == 0);
    KVR_CHECK(kvr_parse_size_list("1:2", 1, 100, out, 8, &n, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "\"1:2\" is neither N nor FROM:TO:STEP") == 0);
    KVR_CHECK(kvr_parse_size_list("9:4:1", 1, 100, out, 8, &n, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "FROM 9 is larger than TO 4") == 0);
    KVR_CHECK(kvr_parse_size_list("1:x:1", 1, 100, out, 8, &n, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "TO \"x\" is not a whole number") == e.msg);
    KVR_CHECK(kvr_parse_size_list("1:4:0", 1, 100, out, 8, &n, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "STEP 0 is out of range") == e.msg);
    KVR_CHECK(kvr_parse_size_list(",", 1, 100, out, 8, &n, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "empty list \",\"") == 0);
    KVR_CHECK(kvr_parse_size_list("1:1G:1", 1, (int64_t)1 << 40, out, 8, &n, &e) ==
              KVR_ERR_INVALID_ARG); /* refused before writing 2^30 values */
    KVR_CHECK_EQ_INT(n, 8);         /* untouched on failure */
}

static void test_clock_monotonic(void) {
    double a = kvr_time_us(), b = kvr_time_us();
    KVR_CHECK(b >= a);
    KVR_CHECK(a > 0);
}

static const kvr_test_case cases[] = {
    {"status_strings", test_status_strings},
    {"error_set_and_prefix", test_error_set_and_prefix},
    {"parse_i64", test_parse_i64},
    {"parse_size", test_parse_size},
    {"parse_size_list", test_parse_size_list},
    {"clock_monotonic", test_clock_monotonic},
};
KVR_TEST_MAIN(cases)
