#!/usr/bin/env bash
# tests/cli/test_kvr_search_db.sh BINDIR SRCDIR -- kvr-search from a profile run in the store
# (--db/--run/--link-run/--allow-incomplete): the table is printed, stored ("# stored as table
# N", read back by kvr-db table) and exported; usage errors exit 2; a missing database or run,
# an incomplete run, a run without attention samples, a transfers-only run and a run without
# links exit 1 with a message saying what to do.
set -u
. "$(dirname "$0")/lib.sh"
bin=$(cd "$1" && pwd)
S="$bin/kvr-search"; P="$bin/kvr-profile"; D="$bin/kvr-db"
A100="$2/docs/examples/llama7b_a100.json"
db="$tmp/a.db"
prof() { "$P" --model tiny --chunks 8:64 --max-context 128 --iters 2:3 --db "$db" -q "$@" >/dev/null || { echo "FAIL: profile setup $*"; exit 1; }; }
prof --comm --ranks 2 --bytes 1K:8K      # run 1: layers and transfers
prof --ops none --comm --ranks 2 --bytes 1K:8K   # run 2: transfers only
prof                                     # run 3: layers only
prof --ops pre,post,head,embed           # run 4: no attention

check table 0 "^ +2 +128 +[0-9.]+ .* kvr-s|^ +2 +128 " -- "$S" --db "$db" --run 1 --ranks 2,4 --context 64,128 -g 8
check stored 0 "^# stored as table 2 in .*a.db" -- "$S" --db "$db" --run 1 --ranks 2 --context 128 -g 8
check profile_note 0 "^# profile: .*a.db run 1: [0-9]+ pre, [0-9]+ attn" -- "$S" --db "$db" --run 1 --ranks 2 --context 128 -g 8
check profile_links 0 "^# profile links: from [0-9]+ p2p samples: 2 pairs measured" -- "$S" --db "$db" --run 1 --ranks 2 --context 128 -g 8
check extrapolated 0 "^# note: contexts above 128 tokens lie beyond the profiled grid" -- "$S" --db "$db" --run 1 --ranks 2 --context 512 -g 8
check costs_header 0 "^# costs: .*a.db run 1: interpolated" -- "$S" --db "$db" --run 1 --ranks 2 --context 128 -g 8
check kvr_db_tables 0 "^ +1 +1 .* +8 +4 " -- "$D" --db "$db" tables
check kvr_db_table 0 "^ +4 +128 +[0-9.]+ " -- "$D" --db "$db" table 1
check kvr_db_show_made 0 "made from it +0 fits, [1-9][0-9]* partition tables, 0 predictors" -- "$D" --db "$db" show 1
check kvr_db_table_json 0 '"schema":[[:space:]]*"kvr-search-table/1"' -- "$D" --db "$db" --json table 1
# JSON on stdout stays JSON (no '#' lines); the stored copy is the same document
"$S" --db "$db" --run 1 --ranks 2 --context 128 -g 8 --json >"$tmp/t.json" 2>"$tmp/t.err"
check json_stored_note 0 "^# stored as table [0-9]+" -- cat "$tmp/t.err"
check json_valid 0 "^profile 1$" -- python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['costs']['kind'], len(d['results']))" "$tmp/t.json"
check export_csv 0 "^# exported csv" -- "$S" --db "$db" --run 1 --ranks 2 --context 128 -g 8 --export "$tmp/t.csv" --format csv
check export_csv_rows 0 "^2,128," -- cat "$tmp/t.csv"
# issue 17: --export never overwrites the store (--run, or --costs with --db)
cp "$db" "$tmp/d.db"
check export_same_db 2 "--export .*d.db is the same file as --db .*d.db: refusing to overwrite an input" -- "$S" --db "$tmp/d.db" --run 1 --ranks 2 --context 128 -g 8 --export "$tmp/d.db"
check export_same_db_costs 2 "--export .*d.db is the same file as --db" -- "$S" --costs "$A100" --db "$tmp/d.db" --ranks 2 --context 2K --export "$tmp/d.db"
check export_same_db_intact 0 "^ok$" -- sqlite3 "$tmp/d.db" "pragma integrity_check"
check export_same_db_bytes 0 "" -- cmp "$db" "$tmp/d.db"
check link_run 0 "^# profile links: .*p2p samples" -- "$S" --db "$db" --run 3 --link-run 2 --ranks 2 --context 128 -g 8
check link_options 0 "^# stored as table" -- "$S" --db "$db" --run 3 --link-gbps 10 --link-us 5 --ranks 2 --context 128 -g 8
check default_db 0 "^# stored as table [0-9]+ in kvr.db" -- bash -c "cd '$tmp' && '$S' --db a.db --run 1 --export t.json --ranks 2 --context 128 -g 8 >/dev/null && mkdir d && cd d && '$P' --model tiny --chunks 8:64 --max-context 128 --iters 2 --comm --ranks 2 --bytes 1K:2K -q >/dev/null && '$S' --run 1 --ranks 2 --context 128 -g 8"
check costs_file_stored 0 "^# stored as table 1 in .*new.db" -- "$S" --costs "$A100" --db "$tmp/new.db" --ranks 2 --context 4096
check costs_file_run0 0 "^ +1 +0 " -- "$D" --db "$tmp/new.db" tables

# usage errors: 2
check run_bad 2 "--run: 'x' is not an integer" -- "$S" --db "$db" --run x
check two_sources 2 "--costs and --run are two cost sources" -- "$S" --db "$db" --run 1 --costs "$A100"
check no_source 2 "a cost source is required" -- "$S" --db "$db"
check link_run_alone 2 "--link-run applies to --run" -- "$S" --costs "$A100" --link-run 2
check link_run_and_gbps 2 "do not combine it with --links, --link-gbps" -- "$S" --db "$db" --run 3 --link-run 2 --link-gbps 3
check incomplete_flag_alone 2 "--allow-incomplete applies to --run" -- "$S" --costs "$A100" --allow-incomplete
# bad data: 1, saying what to do
check missing_db 1 "no such database file" -- "$S" --db "$tmp/none.db" --run 1 --context 128 -g 8
check missing_run 1 "--run 9: run 9 not found in .*kvr-db list" -- "$S" --db "$db" --run 9 --context 128 -g 8
check missing_link_run 1 "links: run 8 not found" -- "$S" --db "$db" --run 3 --link-run 8 --context 128 -g 8
check no_attn 1 "run 4 .*has no attn samples: the search needs pre, attn, post and head \(kvr-profile --ops all\)" -- "$S" --db "$db" --run 4 --link-run 2 --context 128 -g 8
check transfers_only 1 "run 2 has no layer samples" -- "$S" --db "$db" --run 2 --context 128 -g 8
check no_links 1 "run 3 has no transfer samples, so the links are unknown: give --link-run RUN" -- "$S" --db "$db" --run 3 --ranks 2 --context 128 -g 8
python3 - "$db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("UPDATE runs SET status='incomplete', note='interrupted by SIGINT' WHERE id=1")
c.commit()
PY
check incomplete 1 "run 1 is incomplete \(interrupted by SIGINT\): finish it with kvr-profile --resume 1, or use what it has with --allow-incomplete" -- "$S" --db "$db" --run 1 --ranks 2 --context 128 -g 8
check incomplete_allowed 0 "^# stored as table" -- "$S" --db "$db" --run 1 --allow-incomplete --ranks 2 --context 128 -g 8
if [ "$(id -u)" != 0 ]; then
  cp "$db" "$tmp/ro.db"; rm -f "$tmp/ro.db-wal"; chmod 444 "$tmp/ro.db"
  check read_only 1 "kvr-search stores its table there" -- "$S" --db "$tmp/ro.db" --run 3 --link-run 2 --ranks 2 --context 128 -g 8
fi
summary "kvr-search db cli"
