#!/usr/bin/env bash
# tests/cli/test_kvr_run.sh BINDIR -- kvr-run as a user meets it: help, JSON fields, exit codes
# and messages for bad input (exit 2 for usage, 1 for runtime failures, never a crash).
set -u
. "$(dirname "$0")/lib.sh"
BIN="$1/kvr-run"
check help 0 "--partition" -- "$BIN" --help
check unknown_flag 2 "unknown option '--bogus'" -- "$BIN" --bogus
check missing_value 2 "needs a value" -- "$BIN" --model tiny --ranks
check bad_ranks 2 "--ranks: 'x' is not an integer" -- "$BIN" --model tiny --ranks x
check zero_ranks 2 "--ranks: 0 is out of range" -- "$BIN" --model tiny --ranks 0
check bad_mode 2 "unknown mode 'fast'" -- "$BIN" --model tiny --mode fast
check bad_transport 2 "unknown transport 'tcp'" -- "$BIN" --model tiny --transport tcp
check prompt_and_context 2 "not both" -- "$BIN" --model tiny --prompt hi --context 5
check nccl_host_backend 1 "--transport nccl moves device buffers; --backend cpu keeps K/V in host memory" -- "$BIN" --model tiny --context 16 --ranks 2 --transport nccl
# same-device: runs on a GPU machine (host K/V of the cpu backend go through it too); elsewhere
# a clear message and exit 1
out=$("$BIN" --model tiny --context 16 --ranks 2 --transport same-device 2>&1); rc=$?
if [ $rc = 0 ] && grep -q "transport same-device" <<<"$out" ||
   { [ $rc = 1 ] && grep -qE "same-device: .*(no CUDA device|built without CUDA)" <<<"$out"; }; then
  ok same_device
else
  bad "same_device: rc=$rc, output:"; echo "$out" | head -8
fi
check partition_sum 2 "sums to 9 tokens but the context has 10" -- "$BIN" --model tiny --context 10 --ranks 2 --partition 5,4
check partition_zero 2 "chunk 1 has 0 tokens" -- "$BIN" --model tiny --context 10 --ranks 2 --partition 10,0
check partition_count 2 "has more than 2 chunks" -- "$BIN" --model tiny --context 10 --ranks 2 --partition 4,3,3
check partition_tsp 2 "applies to --mode kvr" -- "$BIN" --model tiny --context 10 --ranks 2 --mode tsp --partition 5,5
check single_many 2 "one rank" -- "$BIN" --model tiny --context 10 --ranks 2 --mode single
check more_ranks_than_tokens 2 "more ranks than the 3 prompt tokens" -- "$BIN" --model tiny --context 3 --ranks 4
check no_model 1 "no-such.gguf: no such file" -- "$BIN" --model /nonexistent/no-such.gguf
check no_tokenizer 1 "has no supported tokenizer" -- "$BIN" --model tiny --prompt "hello"
check dump_unwritable 1 "cannot write" -- "$BIN" --model tiny --context 8 --dump-logits /nonexistent/dir/x.bin
check json_fields 0 '"first_token":[0-9]+.*"ttft_ms":[0-9.]+.*"per_rank":\[\{"rank":0.*"compute_ms".*"wait_ms".*"comm_ms"' -- "$BIN" --model tiny --context 64 --ranks 3 --partition 30,20,14 --json
check json_partition 0 '"mode":"kvr","ranks":3.*"context":64,"partition":\[30,20,14\]' -- "$BIN" --model tiny --context 64 --ranks 3 --partition 30,20,14 --json
check table 0 "^kvr +2 +64 +32,32" -- "$BIN" --model tiny --context 64 --ranks 2
# ranks as threads bound to CPUs of their own when they fit (docs/runtime.md), else the OS's
if [ "$(nproc)" -ge 2 ]; then
  check bind_header 0 "1 thread\(s\) per rank; ranks bound to CPUs [0-9]+ \| [0-9]+," -- "$BIN" --model tiny --context 64 --ranks 2 -N
  check bind_json 0 '"rank":1,.*"cpus":\[[0-9]+,1\]' -- "$BIN" --model tiny --context 64 --ranks 2 --json -N
fi
check bind_too_many 0 "ranks placed by the OS \(64 rank\(s\) x 1 thread\(s\) do not fit" -- "$BIN" --model tiny --context 64 --ranks 64 -N
check no_bind 0 "ranks placed by the OS \(--no-bind\)" -- "$BIN" --model tiny --context 64 --ranks 2 --no-bind -N
check bind_one_rank 0 '"rank":0,.*"cpus":null' -- "$BIN" --model tiny --context 64 --json -N
check bad_backend 2 "--backend: unknown backend 'tpu' \(cpu, cuda\)" -- "$BIN" --model tiny --context 8 --backend tpu
# cuda: not built, or built and no device here (on a GPU machine it runs: test_cuda covers it)
if "$BIN" --model tiny --context 8 --backend cuda -N >/dev/null 2>&1; then
  ok "cuda (a device is present: runs)"
else
  check cuda 1 "--backend cuda: (not available: this kvr was built without the CUDA backend|no CUDA device: .+)" -- "$BIN" --model tiny --context 8 --backend cuda
fi
check backend_cpu 0 "^kvr +2 +64 +32,32" -- "$BIN" --model tiny --context 64 --ranks 2 --backend cpu
# issue 17: bad command lines exit 2; outputs never overwrite inputs; the memory a run needs
# is estimated first; long prompts come from a file or standard input
check context_space 2 "--context: ' 12' is not an integer" -- "$BIN" --model tiny --context " 12"
check prompt_empty 2 "--prompt: empty text" -- "$BIN" --model tiny --prompt ''
check model_empty 2 "--model: empty path" -- "$BIN" --model '' --context 8
check prompt_file_and_prompt 2 "give one of --prompt-file, --prompt and --context" -- "$BIN" --prompt-file x --prompt hi
check prompt_file_missing 1 "--prompt-file $tmp/none.txt: No such file" -- "$BIN" --model tiny --prompt-file "$tmp/none.txt"
check prompt_file_dir 1 "--prompt-file $tmp: is a directory" -- "$BIN" --model tiny --prompt-file "$tmp"
: >"$tmp/empty.txt"
check prompt_file_empty 2 "--prompt-file .*empty.txt: empty file" -- "$BIN" --model tiny --prompt-file "$tmp/empty.txt"
"$BIN" --model tiny --context 8 --db "$tmp/d.db" >/dev/null 2>&1; cp "$tmp/d.db" "$tmp/d.orig"
check dump_same_db 2 "--dump-logits .*d.db is the same file as --db .*d.db: refusing to overwrite an input" -- "$BIN" --model tiny --context 8 --db "$tmp/d.db" --dump-logits "$tmp/d.db"
check dump_same_db_intact 0 "^ok$" -- sqlite3 "$tmp/d.db" "pragma integrity_check"
check dump_same_db_bytes 0 "" -- cmp "$tmp/d.db" "$tmp/d.orig"
check dump_atomic 0 "" -- "$BIN" --model tiny --context 8 --no-db --dump-logits "$tmp/l.bin"
check dump_no_temp_left 0 "^l.bin$" -- bash -c "ls -A '$tmp' | grep 'l.bin'"
check memory_refused 1 "not enough memory: 100000 tokens on 2 rank\(s\) here need about [0-9.]+ GiB \(workspaces [0-9.]+ GiB, KV cache [0-9.]+ GiB; the weights, [0-9.]+ GiB, are loaded\) but 0.00 GiB are available .*--force" -- env KVR_MEM_AVAILABLE=1000000 "$BIN" --model tiny --context 100000 --ranks 2 --no-db
check memory_forced 0 "^kvr +2 +1000 " -- env KVR_MEM_AVAILABLE=1000 "$BIN" --model tiny --context 1000 --ranks 2 --no-db --force
check prefill_progress 1 "^# kvr-run: prefill of 16384 tokens on 1 rank\(s\), mode single" -- env KVR_MEM_AVAILABLE=1 "$BIN" --model tiny --context 16384 --no-db
# issue 12: decode after prefill (--n-predict), sampling flags
check n_predict_negative 2 "--n-predict -1: need 0..16777216" -- "$BIN" --model tiny --context 8 --n-predict -1
check n_predict_huge 2 "--n-predict 2000000000: need 0..16777216" -- "$BIN" --model tiny --context 8 --n-predict 2000000000
check n_predict_text 2 "--n-predict: 'x' is not an integer" -- "$BIN" --model tiny --context 8 --n-predict x
check top_p_zero 2 "--top-p 0: need a value in \(0, 1\]" -- "$BIN" --model tiny --context 8 --n-predict 2 --top-p 0
check top_p_big 2 "--top-p 1.5: need a value in \(0, 1\]" -- "$BIN" --model tiny --context 8 --n-predict 2 --top-p 1.5
check top_p_text 2 "--top-p: 'most' is not a number" -- "$BIN" --model tiny --context 8 --n-predict 2 --top-p most
check temp_negative 2 "--temp -0.5: need a finite temperature >= 0" -- "$BIN" --model tiny --context 8 --n-predict 2 --temp -0.5
check temp_nan 2 "--temp nan: need a finite temperature" -- "$BIN" --model tiny --context 8 --n-predict 2 --temp nan
check top_k_negative 2 "--top-k -3: need >= 0" -- "$BIN" --model tiny --context 8 --n-predict 2 --top-k -3
check sampling_without_decode 2 "apply to decode: give --n-predict N" -- "$BIN" --model tiny --context 8 --temp 0.7
check decode_json 0 '"n_predict":5,"generated":\[[0-9]+(,[0-9]+){4}\],"generated_text":null,"stop":"max","decode_steps":4,"decode_ms":[0-9.]+,"tpot_ms":[0-9.]+,"tpot_ms_p50":[0-9.]+,"tpot_ms_p90":[0-9.]+,"sampling":\{"temp":0,"top_k":0,"top_p":1,"seed":1234\}' -- "$BIN" --model tiny --context 16 --ranks 2 --n-predict 5 --json --no-db
check decode_table 0 "^# decode: 5 token\(s\) on rank 1, stop max; TTFT [0-9.]+ ms, TPOT [0-9.]+ ms \(mean of 4 step\(s\); p50" -- "$BIN" --model tiny --context 16 --ranks 2 --n-predict 5 --no-db
check decode_ring 0 "^# decode: 3 token\(s\) on rank 0, stop max" -- "$BIN" --model tiny --context 16 --ranks 2 --mode ring --n-predict 3 --no-db
"$BIN" --model tiny --context 16 --no-db --dump-logits "$tmp/l1.bin" >/dev/null 2>&1
"$BIN" --model tiny --context 16 --no-db --n-predict 3 --dump-logits "$tmp/l3.bin" >/dev/null 2>&1
same decode_dump_logits_rows "$(( $(stat -c %s "$tmp/l1.bin") * 3 ))" "$(stat -c %s "$tmp/l3.bin" 2>/dev/null)"
# --n-predict 0 is the prefill alone: no decode fields or lines
out=$("$BIN" --model tiny --context 16 --n-predict 0 --json --no-db 2>&1)
if grep -q '"first_token"' <<<"$out" && ! grep -q 'n_predict\|generated\|tpot' <<<"$out"; then ok n_predict_zero_json; else bad n_predict_zero_json "$out"; fi
out=$("$BIN" --model tiny --context 16 --n-predict 0 --no-db 2>&1)
if grep -q '^single ' <<<"$out" && ! grep -q 'decode' <<<"$out"; then ok n_predict_zero_table; else bad n_predict_zero_table "$out"; fi
# kvr-tokenize reads the same files: the OS reason, a directory, --prompt-file as kvr-run names it
TOK="$1/kvr-tokenize"
check tokenize_file_missing 1 "--file $tmp/none.txt: No such file or directory" -- "$TOK" --file "$tmp/none.txt"
check tokenize_file_dir 1 "--file $tmp: is a directory" -- "$TOK" --prompt-file "$tmp"
check tokenize_model_empty 2 "--model: empty path" -- "$TOK" --model '' hi
MODEL=$(cd "$1/../.." && pwd)/models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$MODEL" ]; then
  sz=$(stat -L -c %s "$MODEL"); ln -s "$MODEL" "$tmp/link.gguf"
  check dump_same_model 2 "--dump-logits .*link.gguf is the same file as --model" -- "$BIN" --no-db --model "$MODEL" --context 8 --dump-logits "$tmp/link.gguf"
  check dump_same_model_intact 0 "^$sz$" -- stat -L -c %s "$MODEL"
  printf 'The capital of France is' >"$tmp/p.txt"
  check prompt_file 0 '"context":5,.*"first_token_text":" Paris"' -- "$BIN" --no-db --model "$MODEL" --prompt-file "$tmp/p.txt" --json
  check prompt_stdin 0 '"context":5,.*"first_token_text":" Paris"' -- bash -c "'$BIN' --no-db --model '$MODEL' --prompt-file - --json <'$tmp/p.txt'"
  python3 -c "import sys; open(sys.argv[1],'w').write('word ' * 14000)" "$tmp/long.txt"
  check tokenize_prompt_file 0 "^504 3575 282 4649 314$" -- "$TOK" --model "$MODEL" --prompt-file "$tmp/p.txt"
  # the notice comes before tokenizing; the (fake) memory limit then stops the run
  check decode_context_limit 2 "--n-predict 5: the prompt's 8190 tokens and 5 generated ones make 8195, more than the model's context length of 8192 tokens: generate at most 2" -- "$BIN" --no-db --model "$MODEL" --context 8190 --n-predict 5
  check decode_stream 0 "^ Paris\.\$" -- "$BIN" --no-db --model "$MODEL" --prompt-file "$tmp/p.txt" --n-predict 2
  a=$("$BIN" --no-db --model "$MODEL" --prompt-file "$tmp/p.txt" --n-predict 12 --temp 0.9 --top-p 0.95 --seed 7 --json | grep -o '"generated":\[[0-9,]*\]')
  b=$("$BIN" --no-db --model "$MODEL" --prompt-file "$tmp/p.txt" --n-predict 12 --temp 0.9 --top-p 0.95 --seed 7 --json | grep -o '"generated":\[[0-9,]*\]')
  same decode_seeded_repeats "$a" "$b"
  g=$("$BIN" --no-db --model "$MODEL" --prompt-file "$tmp/p.txt" --n-predict 12 --json | grep -o '"generated":\[[0-9,]*\]')
  k=$("$BIN" --no-db --model "$MODEL" --prompt-file "$tmp/p.txt" --n-predict 12 --temp 1.3 --top-k 1 --json | grep -o '"generated":\[[0-9,]*\]')
  same decode_top_k1_greedy "$g" "$k"
  if [ -n "$g" ] && [ "$a" != "$g" ]; then ok decode_sampled_differs; else bad decode_sampled_differs "$a" "$g"; fi
  check prompt_long_progress 1 "^# kvr-run: tokenizing 70000 bytes of prompt" -- env KVR_MEM_AVAILABLE=1 "$BIN" --no-db --model "$MODEL" --prompt-file "$tmp/long.txt"
else
  echo "skip: $MODEL not fetched (scripts/fetch-model): the real-model checks"
fi
summary "kvr-run cli"
