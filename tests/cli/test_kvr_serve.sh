#!/usr/bin/env bash
# tests/cli/test_kvr_serve.sh BINDIR SRCDIR -- kvr-serve as a user meets it: usage
# errors (exit 2: what is not built yet, missing or conflicting sources, the pool, policies,
# decode costs), a bad trace (file:line, exit 2), the text table and strict JSON for both
# policies (every request finished or refused), the per-request CSV, a request that can never
# run refused and counted, a pool given in GB, layerkv (its flags, the SLO it needs, its line,
# JSON and store, a real replay), and the engine's time pricing visible in the
# records (a request alone on an idle engine: admitted at its arrival); --db stores every
# policy's run with its requests, kvr-db serving lists them and prints a run's requests as the
# --records CSV has them; the real replay (--trace without --simulate) on the tiny preset with
# --no-sleep prints the same table with every request finished, and with --db stores a
# 'measured' run with its requests. --http: its usage errors (exit 2), a host that is not an
# address and a port in use (exit 1, named); the server itself: tests/ref/test_http_server.py.
set -u
. "$(dirname "$0")/lib.sh"
S="$1/kvr-serve"
T="$1/kvr-trace"
A100="$2/docs/examples/llama7b_a100.json"
"$T" gen --rate 2 --count 200 --prompt-tokens lognormal:1024,0.8 --output-tokens uniform:1,64 -o "$tmp/t.csv" >/dev/null
SIM=(--simulate --trace "$tmp/t.csv" --costs "$A100")

check help 0 "usage: kvr-serve --simulate --trace FILE" -- "$S" --help
check replay_costs 2 "price the simulator: add --simulate" -- "$S" --trace "$tmp/t.csv" --costs "$A100" --pool-blocks 100
check sim_model 2 "apply to the real replay" -- "$S" --simulate --trace "$tmp/t.csv" --costs "$A100" --pool-blocks 100 --model tiny
check replay_bad_temp 2 "--temp" -- "$S" --trace "$tmp/t.csv" --model tiny --pool-blocks 100 --temp -1
check replay_bad_backend 2 "--backend: unknown backend 'tpu' \(cpu, cuda\)" -- "$S" --trace "$tmp/t.csv" --model tiny --pool-blocks 100 --backend tpu
check sim_backend 2 "--backend, --threads" -- "$S" --simulate --trace "$tmp/t.csv" --costs "$A100" --pool-blocks 100 --backend cpu
# cuda: not built, or built and no device here (with a device: bench/gpu_pool_check.sh replays on it)
if "$1/kvr-run" --model tiny --context 8 --backend cuda -N >/dev/null 2>&1; then
  ok "replay on cuda (a device is present: not replayed here)"
else
  check replay_cuda 1 "--backend cuda: (not available: this kvr was built without the CUDA backend|no CUDA device: .+)" -- "$S" --trace "$tmp/t.csv" --model tiny --pool-blocks 100 --backend cuda
fi
check no_trace 2 "--trace FILE is required" -- "$S" --simulate --costs "$A100" --pool-blocks 100
check no_costs 2 "a cost source is required" -- "$S" --simulate --trace "$tmp/t.csv" --pool-blocks 100
check two_costs 2 "--costs and --run are two cost sources" -- "$S" "${SIM[@]}" --run 1 --pool-blocks 100
check incomplete_without_run 2 "--allow-incomplete applies to --run" -- "$S" "${SIM[@]}" --allow-incomplete --pool-blocks 100
check no_pool 2 "the KV pool is required" -- "$S" "${SIM[@]}"
check two_pools 2 "give the KV pool once" -- "$S" "${SIM[@]}" --pool-blocks 100 --pool-gb 4
check bad_policy 2 "--policy: unknown policy 'sjf' \(vllm, chunked, layerkv\)" -- "$S" "${SIM[@]}" --pool-blocks 100 --policy vllm,sjf
check twice_policy 2 "--policy: 'vllm' given twice" -- "$S" "${SIM[@]}" --pool-blocks 100 --policy vllm,vllm
check bad_decode 2 "--decode-costs '1,2': need K,S,T" -- "$S" "${SIM[@]}" --pool-blocks 100 --decode-costs 1,2
check bad_watermark 2 "--watermark 1: need a fraction in \[0, 1\)" -- "$S" "${SIM[@]}" --pool-blocks 100 --watermark 1
check bad_pool 2 "--pool-blocks: " -- "$S" "${SIM[@]}" --pool-blocks 0
check tiny_pool 2 "the KV pool holds less than one block of 16 tokens" -- "$S" "${SIM[@]}" --pool-tokens 8
check unknown_option 2 "unknown option --bogus" -- "$S" "${SIM[@]}" --bogus
check missing_trace 1 "--trace: .*nothere.csv" -- "$S" --simulate --trace "$tmp/nothere.csv" --costs "$A100" --pool-blocks 100
printf 'arrival_s,prompt_tokens,output_tokens\n0,10,5\n1,x,5\n' >"$tmp/bad.csv"
check bad_trace 2 "bad.csv:3: column 'prompt_tokens'" -- "$S" --simulate --trace "$tmp/bad.csv" --costs "$A100" --pool-blocks 100
check bad_costs 2 "--costs: " -- "$S" --simulate --trace "$tmp/t.csv" --costs "$tmp/t.csv" --pool-blocks 100
check records_over_input 2 "--records .* is the same file as --trace" -- "$S" "${SIM[@]}" --pool-blocks 100 --records "$tmp/t.csv"

check table 0 "^vllm +200 +0 " -- "$S" "${SIM[@]}" --pool-gb 8 --policy vllm,chunked
check table_chunked 0 "^chunked +200 +0 " -- "$S" "${SIM[@]}" --pool-gb 8 --policy vllm,chunked
check table_decode_step 0 "# decode iterations: 10970 \+ 10 x requests \+ 0.359 x cached tokens us \(decode step: cost file" -- "$S" "${SIM[@]}" --pool-gb 8
check table_decode_note 0 "# decode iterations: from the prefill ops.*; --decode-from-ops" -- "$S" "${SIM[@]}" --pool-gb 8 --decode-from-ops
check two_decode 2 "--decode-costs and --decode-from-ops are two decode prices" -- "$S" "${SIM[@]}" --pool-gb 8 --decode-from-ops --decode-costs 1,1,1
check json_decode_source 0 '"decode_source": "decode-step"' -- "$S" "${SIM[@]}" --pool-gb 8 --json
# --run: the decode step kvr-fit fitted from the profile's decode samples; before kvr-fit, the ops
"$1/kvr-profile" --model tiny --db "$tmp/dec.db" --chunks 8:64 --max-context 128 --time-budget 0.01 \
    --iters 2 --no-overheads --decode-batch 4 --decode-contexts 2 --quiet >/dev/null
"$T" gen --rate 20 --count 20 --prompt-tokens uniform:8,40 --output-tokens uniform:2,8 -o "$tmp/d.csv" >/dev/null 2>&1
check run_no_fit 0 "from the prefill ops.*no kvr-fit cost model of run 1" -- "$S" --simulate --trace "$tmp/d.csv" --db "$tmp/dec.db" --run 1 --pool-blocks 64
"$1/kvr-fit" --db "$tmp/dec.db" --run 1 >/dev/null
check run_fitted 0 "# decode iterations: .* x cached tokens us \(decode step: kvr-fit of run 1 " -- "$S" --simulate --trace "$tmp/d.csv" --db "$tmp/dec.db" --run 1 --pool-blocks 64
check table_decode_fitted 0 "# decode iterations: 5000 \+ 100 x requests \+ 0.5 x cached tokens us" -- "$S" "${SIM[@]}" --pool-gb 8 --decode-costs 5000,100,0.5
check json 0 "ok" -- bash -c "'$S' ${SIM[*]} --pool-blocks 2000 --policy vllm,chunked --slo-ttft 500 --slo-tpot 50 --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d[\"schema\"] == \"kvr-serve-sim/1\" and d[\"requests\"] == 200 and d[\"pool_blocks\"] == 2000
assert [p[\"policy\"] for p in d[\"policies\"]] == [\"vllm\", \"chunked\"]
for p in d[\"policies\"]:
    assert p[\"finished\"] == 200 and p[\"refused\"] == 0
    assert 0 < p[\"ttft_ms\"][\"p50\"] <= p[\"ttft_ms\"][\"p90\"] <= p[\"ttft_ms\"][\"p99\"]
    assert 0 <= p[\"slo_attainment\"] <= 1 and p[\"peak_blocks\"] <= 2000
print(\"ok\")'"
# a request alone on an idle engine is admitted at its arrival; one that can never fit is refused
printf 'arrival_s,prompt_tokens,output_tokens\n0,100,4\n50,100000,4\n100,200,8\n' >"$tmp/r.csv"
check refused 0 "^vllm +2 +1 " -- "$S" --simulate --trace "$tmp/r.csv" --costs "$A100" --pool-blocks 1000 --records "$tmp/rec.csv"
check records 0 "ok" -- python3 -c "
import csv
rows = list(csv.DictReader(open('$tmp/rec.csv')))
assert [r['request'] for r in rows] == ['0', '1', '2'] and rows[1]['refused'] == '1'
for i in (0, 2):
    r = rows[i]
    assert float(r['admitted_s']) == float(r['arrival_s'])
    assert float(r['arrival_s']) < float(r['first_token_s']) < float(r['finish_s'])
    assert r['output_tokens'] == ('4' if i == 0 else '8') and r['preemptions'] == '0'
print('ok')"
# --db: every policy's run and its requests stored; kvr-db lists them and gives a run's requests
D="$1/kvr-db"
check store 0 "# stored as serving run 2 \(chunked, 200 requests" -- "$S" "${SIM[@]}" --pool-gb 8 --policy vllm,chunked --db "$tmp/s.db" --slo-ttft 500
check store_json 0 '"serving_run": 3' -- "$S" "${SIM[@]}" --pool-gb 8 --db "$tmp/s.db" --json
check db_serving 0 "^ +2 .* simulated +chunked +200 " -- "$D" --db "$tmp/s.db" serving
check db_serving_json 0 "ok" -- bash -c "'$D' --db '$tmp/s.db' serving --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert [r[\"policy\"] for r in d] == [\"vllm\", \"chunked\", \"vllm\"], d
assert all(r[\"kind\"] == \"simulated\" and r[\"n_requests\"] == 200 for r in d)
assert d[0][\"trace_hash\"] == d[2][\"trace_hash\"] and len(d[0][\"trace_hash\"]) == 16
print(\"ok\")'"
"$S" "${SIM[@]}" --pool-gb 8 --policy chunked --records "$tmp/rec2.csv" >/dev/null
"$D" --db "$tmp/s.db" serving 2 >"$tmp/run2.csv"
check db_serving_run 0 "ok" -- python3 -c "
import csv
a = list(csv.DictReader(open('$tmp/rec2.csv')))
b = list(csv.DictReader(l for l in open('$tmp/run2.csv') if not l.startswith('#')))
assert len(a) == len(b) == 200
for x, y in zip(a, b):
    assert x['request'] == y['request'] and x['prompt_tokens'] == y['prompt_tokens']
    for k in ('arrival_s', 'admitted_s', 'first_token_s', 'finish_s'):
        assert abs(float(x[k]) - float(y[k])) <= 1e-9 * max(1, abs(float(x[k]))), (k, x[k], y[k])
print('ok')"
check db_serving_missing 1 "serving run 9 not found" -- "$D" --db "$tmp/s.db" serving 9
check db_serving_args 2 "serving: takes at most one serving run id" -- "$D" --db "$tmp/s.db" serving 1 2
check db_check 0 "ok \(schema version 7" -- "$D" --db "$tmp/s.db" check
# layerkv: its flags, the SLO it needs, the table with its line, JSON, the store
LKV=(--policy vllm,layerkv --host-blocks 4096 --slo-ttft 2000 --slo-tpot 100)
check lkv_no_slo 2 "--policy layerkv admits against the SLO: give --slo-ttft MS and --slo-tpot MS" -- "$S" "${SIM[@]}" --pool-gb 1 --policy layerkv --slo-ttft 2000
check lkv_flag_policy 2 "--host-blocks, --reload, --host-gbps and --max-wait apply to --policy layerkv" -- "$S" "${SIM[@]}" --pool-gb 1 --reload stream
check lkv_bad_reload 2 "--reload: unknown reload policy 'paging' \(swap, stream\)" -- "$S" "${SIM[@]}" --pool-gb 1 "${LKV[@]}" --reload paging
check lkv_real_no_costs 2 "--policy layerkv on the real model predicts prefill times from a cost model" -- "$S" --trace "$tmp/t.csv" --model tiny --pool-blocks 32 "${LKV[@]}"
check lkv_real_decode 2 "price the simulator" -- "$S" --trace "$tmp/t.csv" --model tiny --pool-blocks 32 "${LKV[@]}" --costs "$A100" --decode-from-ops
check lkv_real_layers 2 "the cost model has 32 layers, --model tiny has 4" -- "$S" --trace "$tmp/t.csv" --model tiny --pool-blocks 32 "${LKV[@]}" --costs "$A100"
check lkv_table 0 "^layerkv +[0-9]+ +[0-9]+ " -- "$S" "${SIM[@]}" --pool-gb 1 "${LKV[@]}"
check lkv_line 0 "# layerkv: host 4096 blocks, reload stream, copy 25 GB/s: peak [1-9][0-9]* host layer blocks" -- "$S" "${SIM[@]}" --pool-gb 1 "${LKV[@]}" --reload stream
check lkv_gbps 0 "copy 3 GB/s" -- "$S" "${SIM[@]}" --pool-gb 1 "${LKV[@]}" --host-gbps 3
check lkv_json 0 "ok" -- bash -c "'$S' ${SIM[*]} --pool-gb 1 ${LKV[*]} --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
p = {x[\"policy\"]: x for x in d[\"policies\"]}
k = p[\"layerkv\"][\"layerkv\"]
assert k[\"host_gbps\"] == 25 and k[\"peak_host_layer_blocks\"] > 0 and \"layerkv\" not in p[\"vllm\"], d
assert p[\"layerkv\"][\"finished\"] + p[\"layerkv\"][\"refused\"] == 200
print(\"ok\")'"
check lkv_store 0 "# stored as serving run 2 \(layerkv, 200 requests" -- "$S" "${SIM[@]}" --pool-gb 1 "${LKV[@]}" --db "$tmp/lkv.db"
check lkv_db 0 "^ +2 .* simulated +layerkv +200 " -- "$D" --db "$tmp/lkv.db" serving

chmod a-w "$tmp/s.db"; [ -w "$tmp/s.db" ] || \
  check store_readonly 1 "--db .*s.db: .*not writable" -- "$S" "${SIM[@]}" --pool-gb 8 --db "$tmp/s.db"
chmod u+w "$tmp/s.db"

# the real replay on the tiny preset: every request finished, a measured run stored
"$T" gen --rate 1000 --count 10 --prompt-tokens uniform:4,40 --output-tokens uniform:1,8 -o "$tmp/small.csv" >/dev/null
check replay 0 "^vllm +10 +0 +0 " -- "$S" --trace "$tmp/small.csv" --model tiny --no-sleep --pool-blocks 32 --db "$tmp/m.db" --records "$tmp/mrec.csv"
# the tiny preset's costs for layerkv's predictor: the A100 file's shape at 4 layers
python3 -c "
import json, sys
c = json.load(open('$A100')); c['layers'] = 4; c['kv_bytes_per_token'] = 256; c['host_copy_gbps'] = 5
json.dump(c, open('$tmp/tiny_costs.json', 'w'))"
check replay_layerkv 0 "^layerkv +10 +0 " -- "$S" --trace "$tmp/small.csv" --model tiny --no-sleep --pool-blocks 32 --policy vllm,layerkv --host-blocks 32 --slo-ttft 1000 --slo-tpot 100 --costs "$tmp/tiny_costs.json"
check replay_layerkv_line 0 "# layerkv: host 32 blocks, reload stream, predicted with copy 5 GB/s" -- "$S" --trace "$tmp/small.csv" --model tiny --no-sleep --pool-blocks 3 --policy vllm,layerkv --host-blocks 32 --reload stream --slo-ttft 1000 --slo-tpot 100 --costs "$tmp/tiny_costs.json"
check replay_db 0 "^ +1 .* measured +vllm +10 +[0-9.]+ +10 +0 " -- "$D" --db "$tmp/m.db" serving
check replay_records 0 "ok" -- python3 -c "
import csv
rows = list(csv.DictReader(open('$tmp/mrec.csv')))
want = list(csv.DictReader(l for l in open('$tmp/small.csv') if not l.startswith('#')))
assert len(rows) == len(want) == 10
for r, w in zip(rows, want):
    assert r['refused'] == '0' and r['output_tokens'] == w['output_tokens'], (r, w)
    assert r['prompt_tokens'] == w['prompt_tokens']
    assert float(r['arrival_s']) <= float(r['admitted_s']) < float(r['first_token_s']) <= float(r['finish_s'])
print('ok')"
# all ten at once: which iteration admits what does not depend on the iterations' wall times
# (with staggered arrivals on the virtual clock it does, and the preemption came and went)
awk -F, '/^[0-9]/ {print "0," $2 "," $3; next} {print}' "$tmp/small.csv" >"$tmp/zero.csv"
check replay_preempt 0 "^chunked +10 +0 +[1-9]" -- "$S" --trace "$tmp/zero.csv" --model tiny --no-sleep --pool-blocks 7 --block-tokens 8 --policy chunked --max-batched-tokens 16

# --http: usage errors, and what the server cannot do (the server: tests/ref/test_http_server.py)
check http_trace 2 "--http serves requests: --trace" -- "$S" --http 0 --trace "$tmp/t.csv" --model tiny --pool-blocks 32
check http_temp 2 "sampling comes from each request" -- "$S" --http 0 --model tiny --pool-blocks 32 --temp 0.5
check http_two_policies 2 "the server runs one policy" -- "$S" --http 0 --model tiny --pool-blocks 32 --policy vllm,chunked
check http_port 2 "--http: " -- "$S" --http 70000 --model tiny --pool-blocks 32
check host_without_http 2 "--host, --max-body and --grace apply to --http" -- "$S" --trace "$tmp/t.csv" --model tiny --pool-blocks 32 --host 0.0.0.0
check http_bad_host 1 "host 'localhost' is not an IPv4 address" -- "$S" --http 0 --host localhost --model tiny --pool-blocks 32
python3 -c "
import socket, subprocess, sys
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)
r = subprocess.run([sys.argv[1], '--http', str(s.getsockname()[1]), '--model', 'tiny', '--pool-blocks', '32'],
                   capture_output=True, text=True, timeout=60)
sys.exit(0 if r.returncode == 1 and 'cannot listen on 127.0.0.1:' in r.stderr else 1)
" "$S"
same http_port_in_use "$?" 0
# a real replay killed with SIGKILL keeps the requests that finished: three at once, a fourth due
# in 60 s (arrivals in real time); once the three are stored the replay is killed
printf 'arrival_s,prompt_tokens,output_tokens\n0,8,3\n0,12,4\n0,6,2\n60,8,3\n' >"$tmp/late.csv"
"$S" --trace "$tmp/late.csv" --model tiny --pool-blocks 32 --db "$tmp/k.db" >/dev/null 2>&1 &
kpid=$!
for _ in $(seq 1 300); do
  n=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM serving_requests').fetchone()[0])" "$tmp/k.db" 2>/dev/null || echo 0)
  [ "$n" = 3 ] && break
  sleep 0.1
done
kill -9 "$kpid"; wait "$kpid" 2>/dev/null
check replay_killed_list 0 "^ +1 .* unended +vllm +4 " -- "$D" --db "$tmp/k.db" serving
check replay_killed_header 0 "no end time \(still running, or killed\)" -- "$D" --db "$tmp/k.db" serving 1
check replay_killed_rows 0 "^2,0,6,2,0," -- "$D" --db "$tmp/k.db" serving 1
same replay_killed_count "$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM serving_requests').fetchone()[0])" "$tmp/k.db")" 3
summary "kvr-serve cli"
