/* fuzz_db_csv.c -- libFuzzer target for the db module's CSV import parser (kvr_db_csv_parse, the
 * code path of `kvr-db import` after reading the file). Inputs that parse are stored into an
 * in-memory database, exported again as CSV, and the export must parse again with the same
 * sample counts (the documented round trip); a failure there traps. Registered from
 * tests/CMakeLists.txt (the db block), seeded with tests/fuzz/corpus_db_csv.
 *
 * Build: cmake -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DKVR_FUZZ=ON \
 *              -DKVR_SANITIZE="address;undefined" -DKVR_CUDA=OFF && ninja -C build-fuzz fuzz_db_csv
 * Run:   build-fuzz/tests/fuzz_db_csv -max_total_time=60 tests/fuzz/corpus_db_csv */
#include "kvr_db.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static kvr_db *db;
    kvr_error err;
    if (!db && kvr_db_open(":memory:", NULL, &db, &err) != KVR_OK) __builtin_trap();
    /* an exact-size copy so ASan sees any read past the end (the parser takes a length) */
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    kvr_db_csv *csv = NULL;
    if (kvr_db_csv_parse(buf, size, "fuzz.csv", &csv, &err) == KVR_OK) {
        const int64_t nl = csv->n_layers, nt = csv->n_transfers;
        int64_t id = 0;
        if (kvr_db_csv_store(db, csv, &id, &err) != KVR_OK) __builtin_trap();
        char *out = NULL;
        if (kvr_db_export_csv(db, id, &out, &err) != KVR_OK) __builtin_trap();
        kvr_db_csv *again = NULL;
        if (kvr_db_csv_parse(out, strlen(out), "export.csv", &again, &err) != KVR_OK) __builtin_trap();
        if (again->n_layers != nl || again->n_transfers != nt) __builtin_trap();
        char *js = NULL;
        if (kvr_db_export_json(db, id, &js, &err) != KVR_OK) __builtin_trap();
        kvr_db_free(js);
        kvr_db_csv_free(again);
        kvr_db_free(out);
        if (kvr_db_run_delete(db, id, &err) != KVR_OK) __builtin_trap();
    }
    kvr_db_csv_free(csv);
    free(buf);
    return 0;
}
