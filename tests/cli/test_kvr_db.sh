#!/usr/bin/env bash
# tests/cli/test_kvr_db.sh BINDIR -- kvr-db as a user meets it: help and usage errors (exit 2),
# list/show (table and JSON), export as CSV and JSON, export -> import round trip, imports from
# another harness (minimal CSV, --set overrides, stdin) and their error messages with line
# numbers, predicted TTFT, delete, check; foreign, damaged and newer-schema files refused with
# the file left untouched.
set -u
. "$(dirname "$0")/lib.sh"
P="$1/kvr-profile"; D="$1/kvr-db"
db="$tmp/a.db"
"$P" --model tiny --chunks 8:32 --max-context 64 --iters 2:4 --db "$db" -q >/dev/null || { echo "FAIL: profile setup"; exit 1; }
"$P" --model tiny --ops none --comm --bytes 1K:2K --max-context 64 --iters 2 --db "$db" -q >/dev/null || { echo "FAIL: comm setup"; exit 1; }

check help 0 "import FILE" -- "$D" --help
check no_command 2 "no command" -- "$D" --db "$db"
check unknown_command 2 "unknown command 'frob'" -- "$D" --db "$db" frob
check show_no_arg 2 "show: needs one RUN id" -- "$D" --db "$db" show
check bad_run 2 "RUN: 'x' is not an integer" -- "$D" --db "$db" show x
check bad_format 2 "unknown format 'xml'" -- "$D" --db "$db" --format xml export 1
check set_not_import 2 "--set applies to import" -- "$D" --db "$db" --set a=b list
check bad_set 2 "--set: 'model' is not KEY=VALUE" -- "$D" --db "$db" --set model import x.csv
check missing_db 1 "no such database file" -- "$D" --db "$tmp/none.db" list
check list 0 "^ +1 profile +complete +[0-9T:-]+Z +tiny " -- "$D" --db "$db" list
check list_json 0 '^\[\{"id":1,"kind":"profile","status":"complete",.*"layer_samples":[1-9][0-9]*,"transfer_samples":0' -- "$D" --db "$db" --json list
check show 0 "model +tiny: 4 layers, d 64, 4/2 heads x 16" -- "$D" --db "$db" show 1
check show_missing 1 "run 9 not found" -- "$D" --db "$db" show 9
check show_json 0 '"kvr_db_export":1,"run":\{"backend":"cpu"' -- "$D" --db "$db" --json show 1
check export_csv 0 "^kind,op,c,prefix,pattern,src,dst,n_ranks,size_bytes" -- "$D" --db "$db" export 1
check export_json 0 '"layer_samples":\[\{"op":"embed","c":8,"prefix":0,"n_warmup":[0-9]' -- "$D" --db "$db" --format json export 1
check export_transfers 0 "^transfer,,,,p2p,0,1,2,1024," -- "$D" --db "$db" export 2
check export_unwritable 1 "cannot write /nonexistent-kvr/x.csv" -- "$D" --db "$db" export 1 -o /nonexistent-kvr/x.csv
# issue 17: export -o never overwrites the store (also through a symbolic link or a hard link)
cp "$db" "$tmp/d.db"; ln -s d.db "$tmp/dlink.db"; ln "$tmp/d.db" "$tmp/dhard.db"
check export_same_file 2 "--output .*d.db is the same file as --db .*d.db: refusing to overwrite an input" -- "$D" --db "$tmp/d.db" export 1 -o "$tmp/d.db"
check export_same_symlink 2 "--output .*dlink.db is the same file as --db" -- "$D" --db "$tmp/d.db" export 1 -o "$tmp/dlink.db"
check export_same_hardlink 2 "--output .*dhard.db is the same file as --db" -- "$D" --db "$tmp/d.db" --format json export 1 -o "$tmp/dhard.db"
check export_same_intact 0 "^ok$" -- sqlite3 "$tmp/d.db" "pragma integrity_check"
same_file export_same_bytes "$db" "$tmp/d.db"
check export_dir 2 "--output $tmp: is a directory" -- "$D" --db "$db" export 1 -o "$tmp"
check export_no_temp_left 0 "^$" -- bash -c "ls -A '$tmp' | grep '^\\.' || true"
# export -> import -> export: the same samples
"$D" --db "$db" export 1 -o "$tmp/r1.csv"
check import_roundtrip 0 "imported run 3: [0-9]+ layer and 0 transfer samples of tiny" -- "$D" --db "$db" import "$tmp/r1.csv"
"$D" --db "$db" export 3 | grep -v '^#' >"$tmp/r3.rows"; grep -v '^#' "$tmp/r1.csv" >"$tmp/r1.rows"
same_file roundtrip_rows "$tmp/r1.rows" "$tmp/r3.rows"
check import_kind 0 "^ +3 import +complete" -- "$D" --db "$db" list
# a file from another harness (e.g. PyTorch / vLLM timings): minimal columns
cat >"$tmp/min.csv" <<'CSV'
# model.name: Llama-2-7b
# model.n_layers: 32
# device.name: NVIDIA A100-SXM4-80GB
# run.backend: cuda
# run.dtype: f16
# run.source: vllm-harness 0.4
kind,op,c,prefix,median_us
layer,pre,512,0,310.5
layer,attn,512,1024,401.0
layer,post,512,0,820
layer,head,,,180
CSV
check import_minimal 0 "imported run 4: 4 layer and 0 transfer samples of Llama-2-7b" -- "$D" --db "$db" import "$tmp/min.csv"
check import_shown 0 "backend +cuda, dtype f16" -- "$D" --db "$db" show 4
grep -v "model.name" "$tmp/min.csv" >"$tmp/noname.csv"
check import_needs_name 1 "noname.csv: no model name: add a line '# model.name: NAME'" -- "$D" --db "$db" import "$tmp/noname.csv"
check import_set 0 "imported run 5: .* of Mistral-7B" -- "$D" --db "$db" import "$tmp/noname.csv" --set model.name=Mistral-7B --set model.n_layers=32
check import_set_override 0 "imported run 6: .* of Other" -- "$D" --db "$db" --set model.name=Other import "$tmp/min.csv"
check import_stdin 0 "imported run 7: .* from -" -- bash -c "'$D' --db '$db' import - <'$tmp/min.csv'"
printf '# model.name: m\n# model.n_layers: 2\nkind,op,c,bogus\n' >"$tmp/bad.csv"
check import_bad_column 1 "bad.csv:3: unknown column 'bogus'" -- "$D" --db "$db" import "$tmp/bad.csv"
printf '# model.name: m\n# model.n_layers: 2\nkind,op,c,median_us\nlayer,pre,16,5\nlayer,pre,16,x\n' >"$tmp/bad2.csv"
check import_bad_number 1 "bad2.csv:5: median_us: 'x' is not a finite number" -- "$D" --db "$db" import "$tmp/bad2.csv"
check import_missing_file 1 "nofile.csv: No such file" -- "$D" --db "$db" import "$tmp/nofile.csv"
check import_creates_db 0 "imported run 1" -- "$D" --db "$tmp/new.db" import "$tmp/min.csv"
# issue 17 item 6: bytes that are not UTF-8 in a header become '?' at import; a store that
# already holds some (written before) still gives valid JSON (\ufffd); json_strict checks both
printf '# model.name: bad\xff\xfename\n# model.n_layers: 2\n# run.note: caf\xc3\xa9 \xe2\x82\n' >"$tmp/utf8.csv"
printf 'kind,op,c,prefix,median_us\nlayer,pre,16,0,5\n' >>"$tmp/utf8.csv"
check import_not_utf8 0 "imported run 1: .* of bad\?\?name" -- "$D" --db "$tmp/u.db" import "$tmp/utf8.csv"
check show_json_utf8 0 '"name":"bad\?\?name"' -- "$D" --db "$tmp/u.db" --json show 1
check list_json_utf8 0 '"model":"bad\?\?name"' -- "$D" --db "$tmp/u.db" --json list
python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('update models set name=CAST(? AS TEXT)', (b'old\xff\xfe',)); c.commit()" "$tmp/u.db"
check show_json_old_bytes 0 '"name":"old\\ufffd\\ufffd"' -- "$D" --db "$tmp/u.db" --json show 1
check list_json_old_bytes 0 '"model":"old\\ufffd\\ufffd"' -- "$D" --db "$tmp/u.db" --json list
# issue 17 item 8: a directory, an unknown --set key, a quoted line break
check import_dir 1 "import: $tmp: is a directory" -- "$D" --db "$tmp/u.db" import "$tmp"
check set_unknown_key 2 "--set: unknown key 'zz.yy' \(model.\*, device.\* or run.\*" -- "$D" --db "$tmp/u.db" import "$tmp/min.csv" --set zz.yy=1
printf '# model.name: m\n# model.n_layers: 2\nkind,op,c,prefix,median_us\nlayer,"pre\n",16,0,5\n' >"$tmp/qnl.csv"
check import_quoted_newline 1 "qnl.csv:4: field 2: unterminated quote \(a quoted field cannot hold a line break" -- "$D" --db "$tmp/u.db" import "$tmp/qnl.csv"
# reading a store leaves no -wal/-shm behind (also a store without write permission)
mkdir "$tmp/ro"; cp "$db" "$tmp/ro/s.db"; chmod 444 "$tmp/ro/s.db"
"$D" --db "$tmp/ro/s.db" list >/dev/null 2>&1; "$D" --db "$tmp/ro/s.db" --json show 1 >/dev/null 2>&1
check read_leaves_no_wal 0 "^s.db$" -- ls -A "$tmp/ro"
check ttft 0 "^ +32 +[0-9]+\.[0-9]+$" -- "$D" --db "$db" ttft 1 16 32
check ttft_json 0 '^\{"run_id":1,"n_layers":4,"ttft_ms":\{"16":[0-9.]+,"32":[0-9.]+\}\}' -- "$D" --db "$db" --json ttft 1 16 32
check ttft_incomplete_profile 1 "no embed samples" -- "$D" --db "$db" ttft 4 512
check ttft_bad_context 2 "context 'x'" -- "$D" --db "$db" ttft 1 x
check delete 0 "deleted run 6" -- "$D" --db "$db" delete 6
check delete_again 1 "run 6 not found" -- "$D" --db "$db" delete 6
check check_ok 0 ": ok \(schema version [0-9]+, 6 runs, 0 incomplete\)" -- "$D" --db "$db" check
# files that are not kvr databases stay untouched
printf 'just some text, not a database at all\n' >"$tmp/text.db"; cp "$tmp/text.db" "$tmp/text.orig"
check not_sqlite 1 "not a kvr database \(not an SQLite file\); left untouched" -- "$D" --db "$tmp/text.db" list
same_file not_sqlite_untouched "$tmp/text.db" "$tmp/text.orig"
if command -v python3 >/dev/null; then
  cp "$db" "$tmp/newer.db"
  python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA user_version=9'); c.commit(); c.close()" "$tmp/newer.db"
  cp "$tmp/newer.db" "$tmp/newer.orig"
  check newer_schema 1 "schema version 9 was written by a newer kvr .* upgrade kvr" -- "$D" --db "$tmp/newer.db" list
  check newer_schema_same_version 1 "written by a newer kvr \(a build of [0-9.]+ with a newer schema\); this kvr [0-9.]+ \(commit " -- "$D" --db "$tmp/newer.db" list
  cp "$db" "$tmp/neg.db"
  python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA user_version=-1'); c.commit(); c.close()" "$tmp/neg.db"
  cp "$tmp/neg.db" "$tmp/neg.orig"
  check negative_schema 1 "schema version -1 is not one kvr ever wrote .*left untouched" -- "$D" --db "$tmp/neg.db" list
  same_file negative_untouched "$tmp/neg.db" "$tmp/neg.orig"
  same_file newer_untouched "$tmp/newer.db" "$tmp/newer.orig"
  python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('CREATE TABLE t(x)'); c.commit(); c.close()" "$tmp/other.db"
  check foreign_sqlite 1 "an SQLite database but not a kvr one" -- "$D" --db "$tmp/other.db" list
  cp "$db" "$tmp/damaged.db"
  damage_db "$tmp/damaged.db"
  cp "$tmp/damaged.db" "$tmp/damaged.orig"
  check damaged 1 "damaged|malformed" -- "$D" --db "$tmp/damaged.db" check
  check damaged_import 1 "damaged|malformed" -- "$D" --db "$tmp/damaged.db" import "$tmp/min.csv"
  same_file damaged_untouched "$tmp/damaged.db" "$tmp/damaged.orig"
fi
summary "kvr-db cli"
