/* test_common.c -- status strings, error formatting, integer, size and size-list parsing,
 * partitions (even, check, parse, format, granularity rounding), op, mode and strategy names,
 * whole-file reads and maps, strdup and the text buffer, output files (same-file check,
 * atomic writer), UTF-8 checks and the JSON string writer. */
#include "kvr_test.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

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
    KVR_CHECK(kvr_parse_i64(" 12", 0, 100, &v, &e) == KVR_ERR_INVALID_ARG); /* issue 17 */
    KVR_CHECK(strcmp(e.msg, "' 12' is not an integer") == 0);
    KVR_CHECK(kvr_parse_i64("\t12", 0, 100, &v, &e) == KVR_ERR_INVALID_ARG);
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

static void test_partition_even(void) {
    kvr_error e;
    int64_t p[KVR_MAX_RANKS];
    KVR_CHECK_OK(kvr_partition_even(10, 3, p, &e), &e);
    KVR_CHECK(p[0] == 4 && p[1] == 3 && p[2] == 3);
    for (int i = 0; i < 3; i++) KVR_CHECK_EQ_INT(kvr_partition_even_chunk(10, 3, i), p[i]);
    KVR_CHECK_OK(kvr_partition_even(KVR_MAX_RANKS, KVR_MAX_RANKS, p, &e), &e);
    KVR_CHECK(p[0] == 1 && p[KVR_MAX_RANKS - 1] == 1);
    KVR_CHECK(kvr_partition_even(3, 4, p, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "4 ranks for 3 tokens: every rank needs at least one token") == 0);
    KVR_CHECK(kvr_partition_even(1000, KVR_MAX_RANKS + 1, p, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "257 ranks (need 1..256)") == 0);
    KVR_CHECK(kvr_partition_even(10, 0, p, &e) == KVR_ERR_INVALID_ARG);
}

static void test_partition_check(void) {
    kvr_error e;
    const int64_t ok[3] = {5, 3, 2}, zero[2] = {10, 0}, short_[3] = {5, 3, 1};
    KVR_CHECK_OK(kvr_partition_check(ok, 3, 10, &e), &e);
    KVR_CHECK(kvr_partition_check(zero, 2, 10, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "partition: chunk 1 has 0 tokens; every chunk needs >= 1") == 0);
    KVR_CHECK(kvr_partition_check(short_, 3, 10, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "partition sums to 9 tokens but the context has 10") == 0);
    KVR_CHECK(kvr_partition_check(ok, 0, 10, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "0 ranks (need 1..256)") == 0);
}

static void test_partition_parse(void) {
    kvr_error e;
    int64_t p[4];
    KVR_CHECK_OK(kvr_partition_parse("even", 3, 10, p, &e), &e);
    KVR_CHECK(p[0] == 4 && p[1] == 3 && p[2] == 3);
    KVR_CHECK_OK(kvr_partition_parse("5,3,2", 3, 10, p, &e), &e);
    KVR_CHECK(p[0] == 5 && p[1] == 3 && p[2] == 2);
    KVR_CHECK(kvr_partition_parse("5,3,1", 3, 10, p, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "sums to 9") != NULL);
    KVR_CHECK(kvr_partition_parse("10,0", 2, 10, p, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "chunk 1") != NULL);
    KVR_CHECK(kvr_partition_parse("5,5", 3, 10, p, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "partition '5,5' has 2 chunks for 3 ranks") == 0);
    KVR_CHECK(kvr_partition_parse("4,3,2,1", 3, 10, p, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "partition '4,3,2,1' has more than 3 chunks (one per rank)") == 0);
    KVR_CHECK(kvr_partition_parse("5,", 2, 10, p, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "partition '5,': trailing comma") == 0);
    KVR_CHECK(kvr_partition_parse(",5", 2, 10, p, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "partition ',5': bad chunk size") == 0);
    KVR_CHECK(kvr_partition_parse("5,x", 2, 10, p, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "partition '5,x': 'x' is not an integer") == 0);
    KVR_CHECK(kvr_partition_parse("-1,11", 2, 10, p, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(kvr_partition_parse("6,5", 2, 10, p, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "partition sums to 11 tokens but the context has 10") == 0);
}

static void test_partition_format(void) {
    kvr_error e;
    const int64_t p[3] = {512, 1024, 7};
    char buf[64];
    KVR_CHECK_OK(kvr_partition_format(p, 3, buf, sizeof buf, &e), &e);
    KVR_CHECK(strcmp(buf, "512,1024,7") == 0);
    KVR_CHECK_OK(kvr_partition_format(p, 3, buf, 11, &e), &e); /* exactly fits */
    KVR_CHECK(strcmp(buf, "512,1024,7") == 0);
    KVR_CHECK(kvr_partition_format(p, 3, buf, 10, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "a partition of 3 chunks does not fit in 10 bytes of text") == 0);
    KVR_CHECK(buf[0] == 0);
    /* round trip through the parser */
    int64_t q[3];
    KVR_CHECK_OK(kvr_partition_format(p, 3, buf, sizeof buf, &e), &e);
    KVR_CHECK_OK(kvr_partition_parse(buf, 3, 1543, q, &e), &e);
    for (int i = 0; i < 3; i++) KVR_CHECK_EQ_INT(q[i], p[i]);
}

static void test_partition_round(void) {
    kvr_error e;
    int64_t out[64];
    /* 3 ranks, C = 100, g = 10: units 3.4, 3.3, 3.3 (+ nothing) -> 4, 3, 3 units */
    const double a[3] = {3.4, 3.3, 3.3};
    KVR_CHECK_OK(kvr_partition_round(a, 3, 100, 10, out, &e), &e);
    KVR_CHECK(out[0] == 40 && out[1] == 30 && out[2] == 30);
    /* the remainder C mod g stays on the last chunk: C = 105, units sum to 10.5 */
    const double b[3] = {2.2, 3.6, 4.7};
    KVR_CHECK_OK(kvr_partition_round(b, 3, 105, 10, out, &e), &e);
    KVR_CHECK(out[0] == 20 && out[1] == 40 && out[2] == 45);
    /* chunks below one unit are raised to one; the excess comes off a chunk above one unit */
    const double c[3] = {0.5, 0.5, 9.0};
    KVR_CHECK_OK(kvr_partition_round(c, 3, 100, 10, out, &e), &e);
    KVR_CHECK(out[0] == 10 && out[1] == 10 && out[2] == 80);
    /* ties go to the first index */
    const double d[2] = {2.5, 2.5};
    KVR_CHECK_OK(kvr_partition_round(d, 2, 50, 10, out, &e), &e);
    KVR_CHECK(out[0] == 30 && out[1] == 20);
    /* many ranks (the histogram path): sum and grid kept, every chunk >= g */
    double m[64];
    for (int i = 0; i < 64; i++) m[i] = 1000.0 / 64 * (0.5 + (double)i / 63);
    m[63] += 0.5; /* C = 16008 with g = 16: 1000 units + 8 tokens */
    KVR_CHECK_OK(kvr_partition_round(m, 64, 16008, 16, out, &e), &e);
    int64_t sum = 0;
    for (int i = 0; i < 64; i++) {
        KVR_CHECK(out[i] >= 16);
        KVR_CHECK_EQ_INT(i < 63 ? out[i] % 16 : (out[i] - 8) % 16, 0);
        KVR_CHECK(fabs((double)out[i] / 16 - (m[i] - (i == 63 ? 0.5 : 0))) < 1);
        sum += out[i];
    }
    KVR_CHECK_EQ_INT(sum, 16008);
    /* one boundary at a time: nearest unit, clamped to leave every chunk a unit */
    KVR_CHECK_EQ_INT(kvr_partition_round_bound(3.5, 0, 3, 0, 10), 4); /* half away from 0 */
    KVR_CHECK_EQ_INT(kvr_partition_round_bound(3.4, 0, 3, 0, 10), 3);
    KVR_CHECK_EQ_INT(kvr_partition_round_bound(0.2, 0, 3, 0, 10), 1);  /* chunk 0 >= 1 */
    KVR_CHECK_EQ_INT(kvr_partition_round_bound(9.8, 1, 3, 4, 10), 9);  /* chunk 2 >= 1 */
    KVR_CHECK_EQ_INT(kvr_partition_round_bound(4.2, 1, 3, 4, 10), 5);  /* chunk 1 >= 1 */
    KVR_CHECK_EQ_INT(kvr_partition_round_bound(NAN, 1, 3, 0, 10), 6);  /* even: 10 x 2 / 3 */
    KVR_CHECK(kvr_partition_round(a, 3, 29, 10, out, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "context 29 is smaller than ranks x granularity (3 x 10)") == 0);
    KVR_CHECK(kvr_partition_round(a, 3, 100, 0, out, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "granularity must be >= 1, got 0") == 0);
}

static void test_op_names(void) {
    kvr_error e;
    const char *want[KVR_OP_COUNT] = {"embed", "pre", "attn", "post", "head", "link"};
    for (int i = 0; i < KVR_OP_COUNT; i++) {
        KVR_CHECK(strcmp(kvr_op_name((kvr_op)i), want[i]) == 0); /* the stored strings */
        kvr_op op = KVR_OP_COUNT;
        KVR_CHECK_OK(kvr_op_parse(want[i], &op, &e), &e);
        KVR_CHECK_EQ_INT(op, i);
    }
    KVR_CHECK_EQ_INT(KVR_OP_LAYER_COUNT, 5);
    KVR_CHECK_EQ_INT(kvr_name_index(want, KVR_OP_COUNT, "post"), KVR_OP_POST);
    KVR_CHECK_EQ_INT(kvr_name_index(want, KVR_OP_COUNT, "Post"), -1);
    KVR_CHECK_EQ_INT(kvr_name_index(want, KVR_OP_COUNT, NULL), -1);
    KVR_CHECK(strcmp(kvr_op_name(KVR_OP_COUNT), "unknown") == 0);
    kvr_op op = KVR_OP_PRE;
    KVR_CHECK(kvr_op_parse("mlp", &op, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "unknown op \"mlp\" (embed, pre, attn, post, head or link)") == 0);
    KVR_CHECK_EQ_INT(op, KVR_OP_PRE); /* untouched on failure */
    KVR_CHECK(kvr_op_parse(NULL, &op, &e) == KVR_ERR_INVALID_ARG);
}

static void test_modes_and_strategies(void) {
    kvr_error e;
    const char *modes[KVR_MODE_COUNT] = {"single", "kvr", "tsp", "ring"};
    for (int i = 0; i < KVR_MODE_COUNT; i++) {
        KVR_CHECK(strcmp(kvr_mode_name((kvr_mode)i), modes[i]) == 0);
        kvr_mode m = KVR_MODE_COUNT;
        KVR_CHECK_OK(kvr_mode_parse(modes[i], &m, &e), &e);
        KVR_CHECK_EQ_INT(m, i);
    }
    kvr_mode m = KVR_MODE_TSP;
    KVR_CHECK(kvr_mode_parse("zigzag", &m, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "unknown mode 'zigzag' (single, kvr, tsp, ring)") == 0);
    KVR_CHECK_EQ_INT(m, KVR_MODE_TSP);
    const char *strats[KVR_STRATEGY_COUNT] = {"kvr-s", "kvr-e", "tsp", "ring", "single"};
    for (int i = 0; i < KVR_STRATEGY_COUNT; i++) {
        KVR_CHECK(strcmp(kvr_strategy_name((kvr_strategy)i), strats[i]) == 0);
        kvr_strategy s = KVR_STRATEGY_COUNT;
        KVR_CHECK_OK(kvr_strategy_parse(strats[i], &s, &e), &e);
        KVR_CHECK_EQ_INT(s, i);
    }
    kvr_strategy s;
    KVR_CHECK(kvr_strategy_parse("kvr", &s, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strcmp(e.msg, "unknown strategy \"kvr\" (expected kvr-s, kvr-e, tsp, ring or "
                            "single)") == 0);
    KVR_CHECK(strcmp(kvr_strategy_name(KVR_STRATEGY_COUNT), "?") == 0);
    /* mode <-> strategy */
    KVR_CHECK_EQ_INT(kvr_mode_strategy(KVR_MODE_SINGLE, true), KVR_STRATEGY_SINGLE);
    KVR_CHECK_EQ_INT(kvr_mode_strategy(KVR_MODE_TSP, false), KVR_STRATEGY_TSP);
    KVR_CHECK_EQ_INT(kvr_mode_strategy(KVR_MODE_KVR, true), KVR_STRATEGY_KVR_E);
    KVR_CHECK_EQ_INT(kvr_mode_strategy(KVR_MODE_KVR, false), KVR_STRATEGY_KVR_S);
    KVR_CHECK_EQ_INT(kvr_strategy_mode(KVR_STRATEGY_KVR_S), KVR_MODE_KVR);
    KVR_CHECK_EQ_INT(kvr_strategy_mode(KVR_STRATEGY_KVR_E), KVR_MODE_KVR);
    KVR_CHECK_EQ_INT(kvr_strategy_mode(KVR_STRATEGY_TSP), KVR_MODE_TSP);
    KVR_CHECK_EQ_INT(kvr_strategy_mode(KVR_STRATEGY_SINGLE), KVR_MODE_SINGLE);
    KVR_CHECK_EQ_INT(kvr_strategy_mode(KVR_STRATEGY_RING), KVR_MODE_RING);
    KVR_CHECK_EQ_INT(kvr_mode_strategy(KVR_MODE_RING, true), KVR_STRATEGY_RING);
    KVR_CHECK(kvr_strategy_runnable(KVR_STRATEGY_RING, "cpu", "mpi"));
    KVR_CHECK(kvr_strategy_runnable(KVR_STRATEGY_RING, NULL, NULL));
    KVR_CHECK(kvr_strategy_runnable(KVR_STRATEGY_RING, "cuda", "threads"));
    KVR_CHECK(kvr_strategy_runnable(KVR_STRATEGY_KVR_E, "cuda", "nccl"));
}

static void test_read_file(void) {
    kvr_error e;
    char dir[] = "/tmp/kvr_test_read_XXXXXX";
    KVR_CHECK(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/f.txt", dir);
    /* 200000 bytes with a NUL inside: several buffer growths, the data kept as is */
    FILE *f = fopen(path, "wb");
    KVR_CHECK(f != NULL);
    for (int i = 0; i < 200000; i++) fputc(i == 7 ? 0 : 'a' + i % 26, f);
    fclose(f);
    char *buf = NULL;
    size_t len = 0;
    KVR_CHECK_OK(kvr_read_file(path, 0, &buf, &len, &e), &e);
    KVR_CHECK_EQ_INT(len, 200000);
    KVR_CHECK(buf[7] == 0 && buf[8] == 'i' && buf[199999] == 'a' + 199999 % 26 && buf[len] == 0);
    free(buf);
    buf = NULL;
    KVR_CHECK(kvr_read_file(path, 1000, &buf, &len, &e) == KVR_ERR_FORMAT);
    char want[256];
    snprintf(want, sizeof want, "%s: larger than 1000 bytes", path);
    KVR_CHECK(strcmp(e.msg, want) == 0);
    KVR_CHECK(buf == NULL);
    f = fopen(path, "wb"); /* empty: "" */
    fclose(f);
    KVR_CHECK_OK(kvr_read_file(path, 0, &buf, &len, &e), &e);
    KVR_CHECK(len == 0 && buf && buf[0] == 0);
    free(buf);
    f = fopen(path, "rb"); /* a stream opened by the caller stays open */
    KVR_CHECK_OK(kvr_read_stream(f, "x", 0, &buf, &len, &e), &e);
    KVR_CHECK(fclose(f) == 0);
    free(buf);
    /* the same bytes mapped and read onto the heap; a limit; an empty file has no data */
    f = fopen(path, "wb");
    fputs("gguf-ish", f);
    fclose(f);
    for (int heap = 0; heap < 2; heap++) {
        kvr_file_map m;
        KVR_CHECK_OK(kvr_file_map_open(path, heap, 0, &m, &e), &e);
        KVR_CHECK(m.len == 8 && memcmp(m.p, "gguf-ish", 8) == 0);
        KVR_CHECK(heap ? m.heap != NULL : m.map != NULL);
        kvr_file_map_close(&m);
        KVR_CHECK(m.p == NULL && m.len == 0);
    }
    kvr_file_map m;
    KVR_CHECK(kvr_file_map_open(path, true, 4, &m, &e) == KVR_ERR_FORMAT);
    snprintf(want, sizeof want, "%s: file too large", path);
    KVR_CHECK(strcmp(e.msg, want) == 0);
    KVR_CHECK(kvr_file_map_open(dir, false, 0, &m, &e) == KVR_ERR_IO);
    KVR_CHECK(strstr(e.msg, ": is a directory") != NULL);
    KVR_CHECK(kvr_read_file(dir, 0, &buf, &len, &e) == KVR_ERR_IO);
    snprintf(want, sizeof want, "%s: is a directory", dir);
    KVR_CHECK(strcmp(e.msg, want) == 0);
    remove(path);
    KVR_CHECK(kvr_read_file(path, 0, &buf, &len, &e) == KVR_ERR_IO);
    snprintf(want, sizeof want, "%s: No such file or directory", path);
    KVR_CHECK(strcmp(e.msg, want) == 0);
    KVR_CHECK(kvr_file_map_open(path, false, 0, &m, &e) == KVR_ERR_NOT_FOUND);
    rmdir(dir);
}

static void test_strdup_and_text(void) {
    char *d = kvr_strdup("abc");
    KVR_CHECK(d && strcmp(d, "abc") == 0);
    free(d);
    d = kvr_strdup(NULL);
    KVR_CHECK(d && d[0] == 0);
    free(d);
    kvr_error e;
    kvr_text t = {0};
    char *out = NULL;
    KVR_CHECK_OK(kvr_text_take(&t, &out, "test", &e), &e); /* nothing appended: "" */
    KVR_CHECK(out && out[0] == 0);
    free(out);
    for (int i = 0; i < 3000; i++) KVR_CHECK_EQ_INT(kvr_text_printf(&t, "%d,", i % 10), KVR_OK);
    KVR_CHECK_EQ_INT(kvr_text_append(&t, "xyz", 2), KVR_OK);
    KVR_CHECK_EQ_INT(t.len, 6002);
    KVR_CHECK_OK(kvr_text_take(&t, &out, "test", &e), &e);
    KVR_CHECK(strncmp(out, "0,1,2,", 6) == 0 && strcmp(out + 5998, "9,xy") == 0);
    KVR_CHECK(t.s == NULL && t.len == 0); /* emptied */
    free(out);
    t.nomem = true; /* after a failed allocation: appends refused, take reports it once */
    KVR_CHECK_EQ_INT(kvr_text_printf(&t, "x"), KVR_ERR_NOMEM);
    KVR_CHECK(kvr_text_take(&t, &out, "export", &e) == KVR_ERR_NOMEM);
    KVR_CHECK(strcmp(e.msg, "out of memory (export)") == 0);
    KVR_CHECK(!t.nomem && t.s == NULL);
}

static void test_clock_monotonic(void) {
    double a = kvr_time_us(), b = kvr_time_us();
    KVR_CHECK(b >= a);
    KVR_CHECK(a > 0);
}


// ----------------------------------------------------------------------------
// output files

static char tdir[256];

static const char *tpath(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", tdir, name);
    return buf;
}

static void put(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    KVR_CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void make_dir(void) {
    const char *t = getenv("TMPDIR");
    snprintf(tdir, sizeof tdir, "%s/kvr-test-XXXXXX", t && *t ? t : "/tmp");
    KVR_CHECK(mkdtemp(tdir) != NULL);
}

static void remove_dir(void) {
    const char *names[] = {"a.db", "b.db", "hard.db", "soft.db", "new.txt"};
    char x[300];
    for (int i = 0; i < 5; i++) unlink(tpath(x, sizeof x, names[i]));
    KVR_CHECK(rmdir(tdir) == 0);
}

static bool has(const char *path, const char *text) {
    char buf[256] = "";
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strcmp(buf, text) == 0;
}

/* files in tdir whose name starts with '.' (the writer's temporaries) */
static int n_hidden(void) {
    DIR *d = opendir(tdir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d) closedir(d);
    return n;
}

static void test_same_file(void) {
    char a[300], b[300], l[300], s[300], dd[300], x[300];
    make_dir();
    put(tpath(a, sizeof a, "a.db"), "store");
    put(tpath(b, sizeof b, "b.db"), "store");
    KVR_CHECK(link(a, tpath(l, sizeof l, "hard.db")) == 0);
    KVR_CHECK(symlink(a, tpath(s, sizeof s, "soft.db")) == 0);
    snprintf(dd, sizeof dd, "%s/../%s/a.db", tdir, strrchr(tdir, '/') + 1);
    KVR_CHECK(kvr_path_same_file(a, a));
    KVR_CHECK(kvr_path_same_file(a, l));  /* hard link */
    KVR_CHECK(kvr_path_same_file(s, a));  /* symbolic link */
    KVR_CHECK(kvr_path_same_file(dd, a)); /* another spelling */
    KVR_CHECK(!kvr_path_same_file(a, b)); /* same content, another file */
    KVR_CHECK(!kvr_path_same_file(tpath(x, sizeof x, "none"), a));
    KVR_CHECK(!kvr_path_same_file(x, x)); /* a nonexistent output is never the same */
    KVR_CHECK(!kvr_path_same_file(NULL, a));
    KVR_CHECK(!kvr_path_same_file("", ""));

    kvr_error e;
    const kvr_path_role in[] = {{"--model", NULL}, {"--costs", b}, {"--db", a}};
    KVR_CHECK_OK(kvr_output_check("--export", x, in, 3, &e), &e);
    KVR_CHECK_OK(kvr_output_check("--export", "-", in, 3, &e), &e);
    KVR_CHECK_OK(kvr_output_check("--export", NULL, in, 3, &e), &e);
    KVR_CHECK(kvr_output_check("--export", s, in, 3, &e) == KVR_ERR_INVALID_ARG);
    char want[900];
    snprintf(want, sizeof want,
             "--export %s is the same file as --db %s: refusing to overwrite an input", s, a);
    KVR_CHECK(strcmp(e.msg, want) == 0);
    KVR_CHECK(kvr_output_check("-o", tdir, in, 3, &e) == KVR_ERR_INVALID_ARG);
    KVR_CHECK(strstr(e.msg, "is a directory") != NULL);
    KVR_CHECK(has(a, "store") && has(b, "store"));
    remove_dir();
}

static void test_atomic_write(void) {
    char a[300], s[300], x[300], nd[300];
    make_dir();
    put(tpath(a, sizeof a, "a.db"), "store");
    KVR_CHECK(symlink(a, tpath(s, sizeof s, "soft.db")) == 0);
    kvr_error e;
    /* a new file: content, mode from the umask, no temporary left */
    KVR_CHECK_OK(kvr_write_file_atomic(tpath(x, sizeof x, "new.txt"), "hello", 5, &e), &e);
    KVR_CHECK(has(x, "hello"));
    struct stat st;
    mode_t um = umask(022);
    umask(um);
    KVR_CHECK(stat(x, &st) == 0 && (st.st_mode & 0777) == (0666 & ~um));
    KVR_CHECK_EQ_INT(n_hidden(), 0);
    /* replacing a file keeps its mode */
    KVR_CHECK(chmod(x, 0640) == 0);
    KVR_CHECK_OK(kvr_write_file_atomic(x, "again", 5, &e), &e);
    KVR_CHECK(has(x, "again"));
    KVR_CHECK(stat(x, &st) == 0 && (st.st_mode & 0777) == 0640);
    /* through a symbolic link: the target changes, the link stays a link */
    KVR_CHECK_OK(kvr_write_file_atomic(s, "linked", 6, &e), &e);
    KVR_CHECK(has(a, "linked"));
    KVR_CHECK(lstat(s, &st) == 0 && S_ISLNK(st.st_mode));
    /* an abort leaves the old file and no temporary; the half-written text is never seen */
    kvr_atomic_file af;
    KVR_CHECK_OK(kvr_atomic_open(&af, x, &e), &e);
    fputs("half", af.f);
    fflush(af.f);
    KVR_CHECK(has(x, "again"));
    KVR_CHECK_EQ_INT(n_hidden(), 1);
    kvr_atomic_abort(&af);
    KVR_CHECK(has(x, "again"));
    KVR_CHECK_EQ_INT(n_hidden(), 0);
    /* a device is written directly (never renamed onto) */
    KVR_CHECK_OK(kvr_write_file_atomic("/dev/null", "x", 1, &e), &e);
    KVR_CHECK(stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode));
    /* errors name the path and the OS reason */
    snprintf(nd, sizeof nd, "%s/no/such/dir/f", tdir);
    KVR_CHECK(kvr_write_file_atomic(nd, "x", 1, &e) == KVR_ERR_IO);
    KVR_CHECK(strstr(e.msg, nd) && strstr(e.msg, strerror(ENOENT)));
    KVR_CHECK(kvr_write_file_atomic(tdir, "x", 1, &e) == KVR_ERR_IO);
    KVR_CHECK(strstr(e.msg, "is a directory") != NULL);
    remove_dir();
}


static void test_utf8(void) {
    KVR_CHECK_EQ_INT(kvr_utf8_seq_len("a"), 1);
    KVR_CHECK_EQ_INT(kvr_utf8_seq_len(""), 0);
    KVR_CHECK_EQ_INT(kvr_utf8_seq_len("\xc3\xa9"), 2);         /* e acute */
    KVR_CHECK_EQ_INT(kvr_utf8_seq_len("\xe2\x82\xac"), 3);     /* euro */
    KVR_CHECK_EQ_INT(kvr_utf8_seq_len("\xf0\x9f\x98\x80"), 4); /* emoji */
    KVR_CHECK_EQ_INT(kvr_utf8_seq_len("\xff"), 0);
    KVR_CHECK_EQ_INT(kvr_utf8_seq_len("\x80"), 0);             /* stray continuation */
    KVR_CHECK_EQ_INT(kvr_utf8_seq_len("\xc0\xaf"), 0);         /* overlong '/' */
    KVR_CHECK_EQ_INT(kvr_utf8_seq_len("\xe0\x80\xaf"), 0);     /* overlong */
    KVR_CHECK_EQ_INT(kvr_utf8_seq_len("\xed\xa0\x80"), 0);     /* surrogate D800 */
    KVR_CHECK_EQ_INT(kvr_utf8_seq_len("\xf4\x90\x80\x80"), 0); /* above U+10FFFF */
    KVR_CHECK_EQ_INT(kvr_utf8_seq_len("\xe2\x82"), 0);         /* truncated by the NUL */
    char s[] = "bad\xff\xfename caf\xc3\xa9 \xe2\x82";
    KVR_CHECK_EQ_INT(kvr_utf8_sanitize(s), 4);
    KVR_CHECK(strcmp(s, "bad??name caf\xc3\xa9 ??") == 0);
    /* the JSON writer: escapes, UTF-8 kept, other bytes as U+FFFD */
    char buf[256] = "";
    FILE *f = tmpfile();
    KVR_CHECK(f != NULL);
    if (!f) return;
    kvr_json_write_str(f, "q\"b\\\n\x01\x7f caf\xc3\xa9 \xff");
    kvr_json_write_str(f, NULL);
    rewind(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    KVR_CHECK(strcmp(buf, "\"q\\\"b\\\\\\u000a\\u0001\\u007f caf\xc3\xa9 \\ufffd\"\"\"") == 0);
}

static const kvr_test_case cases[] = {
    {"status_strings", test_status_strings},
    {"error_set_and_prefix", test_error_set_and_prefix},
    {"parse_i64", test_parse_i64},
    {"parse_size", test_parse_size},
    {"parse_size_list", test_parse_size_list},
    {"partition_even", test_partition_even},
    {"partition_check", test_partition_check},
    {"partition_parse", test_partition_parse},
    {"partition_format", test_partition_format},
    {"partition_round", test_partition_round},
    {"op_names", test_op_names},
    {"modes_and_strategies", test_modes_and_strategies},
    {"read_file", test_read_file},
    {"strdup_and_text", test_strdup_and_text},
    {"clock_monotonic", test_clock_monotonic},
    {"same_file", test_same_file},
    {"atomic_write", test_atomic_write},
    {"utf8", test_utf8},
};
KVR_TEST_MAIN(cases)
