#!/usr/bin/env bash
# tests/cli/test_kvr_run.sh BINDIR -- kvr-run as a user meets it: help, JSON fields, exit codes
# and messages for bad input (exit 2 for usage, 1 for runtime failures, never a crash).
set -u
. "$(dirname "$0")/json_strict.sh"
BIN="$1/kvr-run"
fails=0; passes=0
check() { # check NAME EXPECTED_RC PATTERN -- command...
  local name=$1 want=$2 pat=$3; shift 4
  local out rc
  local ef jbad; ef=$(mktemp)
  out=$("$@" 2>"$ef"); rc=$?; jbad=$(json_strict "$rc" "$out" "$@") # stdout alone: --json checked
  local e; e=$(cat "$ef"); rm -f "$ef"
  [ -n "$e" ] && out="${out:+$out$'\n'}$e"; [ -n "$jbad" ] && out="${out:+$out$'\n'}$jbad"
  if [ "$rc" != "$want" ] || [ -n "$jbad" ] || ! grep -qE -- "$pat" <<<"$out"; then
    echo "FAIL $name: rc=$rc (want $want), output:"; echo "$out" | head -5; fails=$((fails+1))
  else
    echo "ok   $name"; passes=$((passes+1))
  fi
}
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
  echo "ok   same_device"; passes=$((passes+1))
else
  echo "FAIL same_device: rc=$rc, output:"; echo "$out" | head -5; fails=$((fails+1))
fi
check partition_sum 2 "sums to 9 tokens but the context has 10" -- "$BIN" --model tiny --context 10 --ranks 2 --partition 5,4
check partition_zero 2 "chunk 1 has 0 tokens" -- "$BIN" --model tiny --context 10 --ranks 2 --partition 10,0
check partition_count 2 "has more than 2 chunks" -- "$BIN" --model tiny --context 10 --ranks 2 --partition 4,3,3
check partition_tsp 2 "applies to --mode kvr" -- "$BIN" --model tiny --context 10 --ranks 2 --mode tsp --partition 5,5
check single_many 2 "one rank" -- "$BIN" --model tiny --context 10 --ranks 2 --mode single
check more_ranks_than_tokens 2 "more ranks than the 3 prompt tokens" -- "$BIN" --model tiny --context 3 --ranks 4
check no_model 1 "no-such.gguf: no such file" -- "$BIN" --model /nonexistent/no-such.gguf
check no_tokenizer 1 "has no tokenizer" -- "$BIN" --model tiny --prompt "hello"
check dump_unwritable 1 "cannot write" -- "$BIN" --model tiny --context 8 --dump-logits /nonexistent/dir/x.bin
check json_fields 0 '"first_token":[0-9]+.*"ttft_ms":[0-9.]+.*"per_rank":\[\{"rank":0.*"compute_ms".*"wait_ms".*"comm_ms"' -- "$BIN" --model tiny --context 64 --ranks 3 --partition 30,20,14 --json
check json_partition 0 '"mode":"kvr","ranks":3.*"context":64,"partition":\[30,20,14\]' -- "$BIN" --model tiny --context 64 --ranks 3 --partition 30,20,14 --json
check table 0 "^kvr +2 +64 +32,32" -- "$BIN" --model tiny --context 64 --ranks 2
check bad_backend 2 "--backend: unknown backend 'tpu' \(cpu, cuda\)" -- "$BIN" --model tiny --context 8 --backend tpu
check cuda 1 "--backend cuda: not available: this kvr was built without the CUDA backend" -- "$BIN" --model tiny --context 8 --backend cuda
check backend_cpu 0 "^kvr +2 +64 +32,32" -- "$BIN" --model tiny --context 64 --ranks 2 --backend cpu
echo "kvr-run cli: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
