#!/usr/bin/env bash
# tests/cli/test_kvr_db_results.sh BINDIR -- kvr-db's listings of what the later stages store
# (schema v3): partition tables and their rows, fits, predictors, measured runs; empty stores,
# usage errors (exit 2) and missing records (exit 1); the schema version.
# Populated tables are checked in test_kvr_search_db.sh.
set -u
. "$(dirname "$0")/lib.sh"
P="$1/kvr-profile"; D="$1/kvr-db"
db="$tmp/a.db"
"$P" --model tiny --chunks 8:16 --max-context 32 --iters 2 --db "$db" -q >/dev/null || { echo "FAIL: profile setup"; exit 1; }

check help 0 "tables +KVR-S partition tables" -- "$D" --help
check tables_empty 0 "^ +id +run +created" -- "$D" --db "$db" tables
check tables_json_empty 0 '^\[\]$' -- "$D" --db "$db" --json tables
check fits_empty 0 "^ +id +run +target +form" -- "$D" --db "$db" fits
check fits_run_empty 0 "^ +id +run +target" -- "$D" --db "$db" fits 1
check predictors_empty 0 '^\[\]$' -- "$D" --db "$db" --json predictors
check measured_empty 0 "^ +id +time" -- "$D" --db "$db" measured
check table_missing 1 "partition table 7 not found in .*kvr-db tables" -- "$D" --db "$db" table 7
check table_no_arg 2 "table: needs one RUN id|table: needs" -- "$D" --db "$db" table
check table_bad_id 2 "'x' is not an integer" -- "$D" --db "$db" table x
check fits_two_args 2 "fits: takes at most one RUN id" -- "$D" --db "$db" fits 1 2
check schema_latest 0 "schema version 7" -- "$D" --db "$db" check
summary "kvr-db results cli"
