#!/usr/bin/env bash
# tests/cli/test_kvr_search.sh BINDIR SRCDIR -- kvr-search as a user meets it: help, outputs and
# exports, exit codes and messages for bad input (2 usage / bad input file, 1 runtime failure).
set -u
. "$(dirname "$0")/lib.sh"
BIN="$1/kvr-search"
EX="$2/docs/examples"
A100="$EX/llama7b_a100.json"
HEAD='"layers": 2, "kv_bytes_per_token": 1000, "embed_us": 1, "head_us": 2, "pre": {"k_us": 1, "per_token_us": 0.5}, "post": {"k_us": 3, "per_token_us": 1}'
ATTN='"attn": {"k_us": 2, "per_token_us": 0.25, "per_prefix_us": 0.125, "per_area_us": 0.01}'
echo "{$HEAD, $ATTN, \"link\": {\"alpha_us\": 1, \"gbps\": 10}" > "$tmp/truncated.json"
echo "{$HEAD, \"attn\": {\"k_us\": -2, \"per_token_us\": 0.25, \"per_prefix_us\": 0.1, \"per_area_us\": 0.01}, \"link\": {\"alpha_us\": 1, \"gbps\": 10}}" > "$tmp/negative.json"
echo "{$HEAD, \"attn\": {\"k_us\": 2, \"per_token_us\": 0.25, \"per_prefix_us\": 0.1}, \"link\": {\"alpha_us\": 1, \"gbps\": 10}}" > "$tmp/missing.json"
echo "{$HEAD, $ATTN, \"link\": {\"alpha_us\": \"fast\", \"gbps\": 10}}" > "$tmp/nonnumeric.json"
echo "{$HEAD, $ATTN, \"links\": [{\"src\":0,\"dst\":1,\"alpha_us\":1,\"gbps\":1}, {\"src\":0,\"dst\":1,\"alpha_us\":1,\"gbps\":2}]}" > "$tmp/duplicate.json"
echo "{$HEAD, $ATTN, \"links\": [{\"src\":0,\"dst\":1,\"alpha_us\":1,\"gbps\":1}, {\"src\":2,\"dst\":3,\"alpha_us\":1,\"gbps\":2}]}" > "$tmp/gap.json"
echo "{$HEAD, $ATTN, \"links\": [{\"src\":0,\"dst\":1,\"alpha_us\":1,\"gbps\":1}, {\"src\":1,\"dst\":2,\"alpha_us\":1,\"gbps\":2}]}" > "$tmp/three.json"
echo '[{"src":0,"dst":1,"alpha_us":1,"gbps":1},{"src":1,"dst":2,"gbps":1}]' > "$tmp/links_bad.json"

check help 0 "--costs FILE" -- "$BIN" --help
check unknown_flag 2 "unknown option --bogus" -- "$BIN" --bogus
check missing_value 2 "--ranks needs a value" -- "$BIN" --costs "$A100" --ranks
check extra_arg 2 "unexpected argument \"foo\"" -- "$BIN" --costs "$A100" foo
check no_costs 2 "a cost source is required: --costs FILE.json" -- "$BIN" --ranks 2
check db_no_source 2 "a cost source is required: --costs FILE.json, or --run ID" -- "$BIN" --db kvr.db
check costs_and_run 2 "--costs and --run are two cost sources" -- "$BIN" --costs "$A100" --run 7
check costs_missing 2 "--costs: $tmp/nope.json: cannot open" -- "$BIN" --costs "$tmp/nope.json"
check costs_truncated 2 "truncated.json: not valid JSON \(error near line 1, column [0-9]+" -- "$BIN" --costs "$tmp/truncated.json"
check costs_negative 2 "negative.json: field \"attn.k_us\" must be >= 0 \(costs cannot be negative\)" -- "$BIN" --costs "$tmp/negative.json"
check costs_missing_field 2 "missing.json: field \"attn.per_area_us\" is missing" -- "$BIN" --costs "$tmp/missing.json"
check costs_nonnumeric 2 "nonnumeric.json: field \"link.alpha_us\" must be a number, got a string" -- "$BIN" --costs "$tmp/nonnumeric.json"
check links_duplicate 2 "duplicate.json: links\[1\]: duplicate link 0->1" -- "$BIN" --costs "$tmp/duplicate.json"
check links_gap 2 "gap.json: links: chain link 1->2 is missing" -- "$BIN" --costs "$tmp/gap.json"
check links_too_few 2 "--ranks 4: the links of .*three.json cover only 3 devices" -- "$BIN" --costs "$tmp/three.json" --ranks 2,4 --context 256
check links_file_bad 2 "--links: .*links_bad.json: field \"links\[1\].alpha_us\" is missing" -- "$BIN" --costs "$A100" --links "$tmp/links_bad.json"
check links_and_override 2 "do not combine it with --link-gbps" -- "$BIN" --costs "$A100" --links "$EX/links_pcie_8.json" --link-gbps 10
check bad_gbps 2 "--link-gbps: \"-3\" is not a non-negative number" -- "$BIN" --costs "$A100" --link-gbps -3
check ranks_word 2 "--ranks: \"x\" is not a whole number" -- "$BIN" --costs "$A100" --ranks 2,x
check ranks_zero 2 "--ranks: 0 is out of range" -- "$BIN" --costs "$A100" --ranks 0
check ranks_twice 2 "--ranks: 4 is listed twice" -- "$BIN" --costs "$A100" --ranks 4,2,4
check strategy_unknown 2 "unknown strategy \"fast\"" -- "$BIN" --costs "$A100" --strategies kvr-s,fast
check context_small 2 "--context 100 is smaller than ranks x granularity \(8 x 16 = 128\)" -- "$BIN" --costs "$A100" --ranks 2,8 --context 100
check context_range 2 "FROM 9000 is larger than TO 4096" -- "$BIN" --costs "$A100" --context 9000:4096:16
check context_spec 2 "neither N nor FROM:TO:STEP" -- "$BIN" --costs "$A100" --context 1:2
check granularity_zero 2 "--granularity: 0 is out of range" -- "$BIN" --costs "$A100" --granularity 0
# issue 17: --export never overwrites an input (--costs, --links; --db in test_kvr_search_db.sh)
cp "$A100" "$tmp/c.json"; cp "$tmp/c.json" "$tmp/c.orig"; ln -s c.json "$tmp/clink.json"
check export_same_costs 2 "--export .*clink.json is the same file as --costs .*c.json: refusing to overwrite an input" -- "$BIN" --costs "$tmp/c.json" --ranks 2 --context 1K --export "$tmp/clink.json"
check export_same_links 2 "--export .*links_bad.json is the same file as --links" -- "$BIN" --costs "$tmp/c.json" --links "$tmp/links_bad.json" --ranks 2 --context 1K --export "$tmp/links_bad.json"
check export_same_intact 0 "" -- cmp "$tmp/c.json" "$tmp/c.orig"
# issue 17 item 2: costs that overflow are refused at load, naming the field; nothing stored
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); d['pre']['per_token_us']=1e308; d['post']['per_token_us']=1e308; json.dump(d, open(sys.argv[2],'w'))" "$A100" "$tmp/huge.json"
check costs_overflow 2 "field \"pre.per_token_us\" is 1e\+308, larger than 1e\+12" -- "$BIN" --costs "$tmp/huge.json" --ranks 2,4 --context 2K --db "$tmp/huge.db"
check costs_overflow_nothing_stored 0 "^0$" -- sqlite3 "$tmp/huge.db" "select count(*) from ptables"
# issue 17 item 8: a directory, a duplicate key
check costs_dir 2 "--costs: $tmp: is a directory" -- "$BIN" --costs "$tmp"
printf '{"layers": 2, "layers": 4}' >"$tmp/dupkey.json"
check costs_duplicate_key 2 "duplicate field \"layers\"" -- "$BIN" --costs "$tmp/dupkey.json"
# issue 17 item 3: the largest context is enforced with a clear message; long tables show progress
check context_too_large 2 "--context: 33554432 is out of range \[1, 16777216\] \(16M = 16777216 tokens is the largest context kvr-search plans" -- "$BIN" --costs "$A100" --ranks 2 --context 32M
check context_2_40 2 "largest context kvr-search plans" -- "$BIN" --costs "$A100" --ranks 2 --context 1099511627776
check context_progress 0 "^# kvr-search: 100% \(1/1\)" -- "$BIN" --costs "$A100" --ranks 2 --context 8M --strategies kvr-e
check format_unknown 2 "unknown format \"xml\"" -- "$BIN" --costs "$A100" --format xml --export x
check format_alone 2 "--format applies to --export FILE or --timeline" -- "$BIN" --costs "$A100" --format csv
check timeline_json 2 "--timeline cannot be combined with --json" -- "$BIN" --costs "$A100" --timeline --json
check export_unwritable 1 "--export /nonexistent/dir/t.json" -- "$BIN" --costs "$A100" --ranks 2 --context 1K --export /nonexistent/dir/t.json

check table 0 "^ +8 +16384 +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ kvr-s" -- "$BIN" --costs "$A100" --ranks 2,8 --context 16K
check table_units 0 "^ +\(-\) +\(tokens\) +\(ms\)" -- "$BIN" --costs "$A100" --ranks 2 --context 4K
check table_header 0 "^# kvr-search [0-9.]+ \(commit " -- "$BIN" --costs "$A100" --ranks 2 --context 4K
check recommend 0 "# recommended for context 4096: kvr-s on 8 ranks" -- "$BIN" --costs "$A100" --ranks 2,4,8 --context 4K
check recommend_single 0 "# recommended for context 1024: single on 1 rank" -- "$BIN" --costs "$A100" --ranks 2,4 --context 1K --link-gbps 0.1 --link-us 2000
check strategies_subset 0 "^ranks +context +kvr-s +tsp +best" -- "$BIN" --costs "$A100" --ranks 2 --context 4K --strategies kvr-s,tsp
check ring_link_missing 0 "# n/a: ring at 2 ranks, context 1024: ring with 2 ranks needs link 1->0" -- "$BIN" --costs "$tmp/three.json" --ranks 2 --context 1K
check uneven_links 0 "^ +8 +16384 " -- "$BIN" --costs "$EX/llama7b_a100_2nodes.json" --ranks 4,8 --context 16K
check links_file 0 "links: default 12 us \+ 22 GB/s; 2 listed links" -- "$BIN" --costs "$A100" --links "$EX/links_pcie_8.json" --ranks 8 --context 8K
"$BIN" --costs "$A100" --ranks 2,4 --context 1K,4K --json > "$tmp/t.json" 2>&1
check json_fields 0 "ok 4" -- python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))
assert t["schema"] == "kvr-search-table/1" and t["kvr"]["version"] and t["kvr"]["commit"]
assert t["granularity"] == 16 and t["costs"]["layers"] == 32 and "link" in t["costs"]
n = 0
for r in t["results"]:
    assert sum(r["partition"]) == r["context"] and len(r["partition"]) == r["ranks"]
    for s in ("kvr-s", "kvr-e", "tsp", "ring", "single"):
        assert r["strategies"][s]["ttft_ms"] > 0
    assert r["best"] in r["strategies"] and r["search_ms"] >= 0
    n += 1
assert len(t["recommendations"]) == 2
print("ok", n)' "$tmp/t.json"
check export_csv 0 "^ranks,context,kvr_s_ms,kvr_e_ms,tsp_ms,ring_ms,single_ms,best,best_ms,search_ms,partition" -- bash -c "'$BIN' --costs '$A100' --ranks 4 --context 4K --export '$tmp/t.csv' --format csv >/dev/null && cat '$tmp/t.csv'"
check export_vllm 0 "^VLLM_PCP_RUNAHEAD_LOAD_WEIGHTS=0\.[0-9]{6},0\.[0-9]{6},0\.[0-9]{6},0\.[0-9]{6}$" -- bash -c "'$BIN' --costs '$A100' --ranks 4 --context 4K --export '$tmp/t.env' --format vllm-env >/dev/null && cat '$tmp/t.env'"
check timeline_text 0 "^# timeline kvr-s: 4 ranks, context 4096, 32 layers" -- "$BIN" --costs "$A100" --ranks 4 --context 4K --strategies kvr-s --timeline
check timeline_csv 0 "^kvr-s,4,4096,3,31,post," -- "$BIN" --costs "$A100" --ranks 4 --context 4K --strategies kvr-s --timeline --format csv
# runnable marks (issue 14 item 4): a strategy the runtime cannot run on --backend/--transport is
# marked and never recommended unless --include-unrunnable (kvr_strategy_runnable; the marking
# itself: test_search's table_unrunnable). Both backends run ring today: recommended on cuda too.
check backend_unknown 2 "--backend: unknown backend \"tpu\"" -- "$BIN" --costs "$A100" --backend tpu
check transport_unknown 2 "--transport: unknown transport \"carrier-pigeon\"" -- "$BIN" --costs "$A100" --transport carrier-pigeon
check ring_runnable_cpu 0 "# recommended for context 16384: ring on 2 ranks" -- "$BIN" --costs "$A100" --ranks 2 --context 16K --strategies ring,single
check ring_runnable_cuda 0 "# recommended for context 16384: ring on 2 ranks" -- "$BIN" --costs "$A100" --ranks 2 --context 16K --strategies ring,single --backend cuda --transport nccl
check ring_runnable_json 0 "ok" -- bash -c "'$BIN' --costs '$A100' --ranks 2 --context 16K --strategies ring,single --backend cuda --json | python3 -c '
import json, sys
t = json.load(sys.stdin)
assert t[\"unrunnable\"] == [] and t[\"recommendations\"][0][\"strategy\"] == \"ring\"
print(\"ok\")'"
check vllm_recommended 0 "^# recommended context=4096 strategy=[a-z-]+ ranks=[0-9]+ ttft_ms=[0-9.]+$" -- bash -c "'$BIN' --costs '$A100' --ranks 4 --context 4K --export '$tmp/r.env' --format vllm-env >/dev/null && cat '$tmp/r.env'"
# fixed overheads in a cost file (issue 16 item 1): the header names them, single's TTFT moves by
# run_us + layers x layer_us = 100 + 2 x 50 = 200 us
echo "{$HEAD, $ATTN, \"link\": {\"alpha_us\": 1, \"gbps\": 10}}" > "$tmp/plain.json"
echo "{$HEAD, $ATTN, \"link\": {\"alpha_us\": 1, \"gbps\": 10}, \"overheads\": {\"single\": {\"run_us\": 100, \"layer_us\": 50}}}" > "$tmp/ovh.json"
echo "{$HEAD, $ATTN, \"link\": {\"alpha_us\": 1, \"gbps\": 10}, \"overheads\": {\"kvr\": {\"run_us\": -1}}}" > "$tmp/ovh_bad.json"
check overheads_header 0 "^# fixed overheads \(us, per run \+ per layer step\): single 100 \+ 50; kvr 0 \+ 0" -- "$BIN" --costs "$tmp/ovh.json" --ranks 2 --context 64
check overheads_bad 2 "ovh_bad.json: field \"overheads.kvr.run_us\" must be >= 0" -- "$BIN" --costs "$tmp/ovh_bad.json"
"$BIN" --costs "$tmp/plain.json" --ranks 2 --context 64 --export "$tmp/plain_t.json" >/dev/null 2>&1 || bad "setup: plain export"
"$BIN" --costs "$tmp/ovh.json" --ranks 2 --context 64 --export "$tmp/ovh_t.json" >/dev/null 2>&1 || bad "setup: overheads export"
check overheads_single 0 "ok" -- python3 -c "
import json
a, b = (json.load(open(f))['results'][0]['strategies'] for f in ('$tmp/plain_t.json', '$tmp/ovh_t.json'))
assert abs(b['single']['ttft_ms'] - a['single']['ttft_ms'] - 0.2) < 1e-9, (a, b)
assert all(a[k]['ttft_ms'] == b[k]['ttft_ms'] for k in ('kvr-s', 'kvr-e', 'tsp', 'ring')), (a, b)
o = json.load(open('$tmp/ovh_t.json'))['costs']['overheads']
assert o['single'] == {'run_us': 100, 'layer_us': 50} and o['source'] == 'cost file', o
assert json.load(open('$tmp/plain_t.json'))['costs']['overheads'] is None
print('ok')"
summary "kvr-search cli"
