/* test_common.c -- status strings, error formatting and integer parsing. */
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

static void test_clock_monotonic(void) {
    double a = kvr_time_us(), b = kvr_time_us();
    KVR_CHECK(b >= a);
    KVR_CHECK(a > 0);
}

static const kvr_test_case cases[] = {
    {"status_strings", test_status_strings},
    {"error_set_and_prefix", test_error_set_and_prefix},
    {"parse_i64", test_parse_i64},
    {"clock_monotonic", test_clock_monotonic},
};
KVR_TEST_MAIN(cases)
