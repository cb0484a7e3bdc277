#!/usr/bin/env bash
# bench/gpu_pool_check.sh -- the device check of the CUDA paged KV pool and its LayerKV host tier
# (docs/gpu.md, "The paged KV pool and its LayerKV host tier"), in one short call on a GPU
# machine. Builds are assumed done. Steps, each time-boxed, each logged to RESULTS/<step>.log:
#   paged   test_cuda's paged cases: the cuda pool against the cpu pool on the same batches and
#           block tables, offload with swap and stream reload against all-resident, a round trip
#           out to the host tier and back (fences, bytes), the staging fence with the copier
#           held, the serving engine under layerkv (swap, stream) -- every request once;
#   serve   kvr-serve: a real replay of a 12-request trace on --backend cuda, --policy
#           vllm,layerkv, reload swap then stream (every request finished: the table's
#           "finished" column), when a kvr-serve is at hand (a build tree: the GPU bundle has
#           none -- kvr-serve links libmicrohttpd, which the bundle does not carry -- and the
#           paged step's engine case covers the same engine path there).
# Programs: from the GPU bundle (scripts/gpu-bundle; $KVR_BUNDLE, default build-gpu/bundle: its
# `run`) when it is there, else from a build tree ($KVR_BUILD, default build/) on a machine that
# has the libraries.
#
#   bench/gpu_pool_check.sh [RESULTS_DIR]     (default gpu_pool_check/)
#
# Exit: 0 every step passed (serve may be skipped, saying why), 1 a step failed, timed out or
# found no device although nvidia-smi lists one, 77 no GPU here. The device call, from the
# repository root with the bundle built:
#   run(command='bench/gpu_pool_check.sh "$OUT"', carry=["build-gpu/bundle"], timeout_s=300)
set -u
RES=${1:-gpu_pool_check}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUNDLE=${KVR_BUNDLE:-$ROOT/build-gpu/bundle}
BUILD=${KVR_BUILD:-$ROOT/build}
mkdir -p "$RES" || exit 2
RES=$(cd "$RES" && pwd)
STEP_S=${KVR_POOL_CHECK_SECONDS:-120} # per step

if [ -x "$BUNDLE/run" ] && grep -qx test_cuda "$BUNDLE/bin/PROGRAMS" 2>/dev/null; then
  TEST_CUDA=("$BUNDLE/run" test_cuda)
  SERVE=()
  grep -qx kvr-serve "$BUNDLE/bin/PROGRAMS" && SERVE=("$BUNDLE/run" kvr-serve)
  echo "gpu_pool_check: bundle $BUNDLE ($(head -1 "$BUNDLE/MANIFEST" 2>/dev/null))"
elif [ -x "$BUILD/tests/test_cuda" ]; then
  TEST_CUDA=("$BUILD/tests/test_cuda")
  SERVE=()
  [ -x "$BUILD/tools/kvr-serve" ] && SERVE=("$BUILD/tools/kvr-serve")
  echo "gpu_pool_check: build tree $BUILD"
else
  echo "gpu_pool_check: no test_cuda in $BUNDLE (scripts/gpu-bundle) or $BUILD (scripts/build)" >&2
  exit 1
fi
if ! nvidia-smi -L >"$RES/gpu.log" 2>&1; then
  echo "gpu_pool_check: no GPU here (nvidia-smi: $(head -1 "$RES/gpu.log"))"
  exit 77
fi
echo "gpu_pool_check: $(head -1 "$RES/gpu.log"); results in $RES"

fail=0
step() { # step NAME CMD...: run with a time box, log, one summary line
  local name=$1 rc
  shift
  timeout "$STEP_S" "$@" >"$RES/$name.log" 2>&1
  rc=$?
  case $rc in
    0) echo "ok    $name" ;;
    77) echo "FAIL  $name (skipped although nvidia-smi lists a GPU: $(head -1 "$RES/$name.log"))"
      fail=1 ;;
    124) echo "FAIL  $name (timed out after ${STEP_S}s)"; fail=1 ;;
    *) echo "FAIL  $name (exit $rc; $RES/$name.log)"; tail -5 "$RES/$name.log"; fail=1 ;;
  esac
}

step paged "${TEST_CUDA[@]}" paged_twin paged_host_tier paged_host_roundtrip paged_staging_fence \
  paged_engine
grep -E "^(paged_|ok  |FAIL)" "$RES/paged.log"

if [ ${#SERVE[@]} -eq 0 ]; then
  echo "skip  serve (no kvr-serve in the bundle; the paged step's paged_engine is the engine on" \
    "cuda)"
else
  # 12 requests arriving together (prompts 5-60 tokens, outputs 3-12) in a pool of 12 blocks of 8
  # tokens (one request's 72 at most fits; all of them do not): the layerkv runs offload; the
  # tiny preset's costs for its predictor are the A100 file's shape at 4 layers (as
  # tests/cli/test_kvr_serve.sh)
  {
    echo "arrival_s,prompt_tokens,output_tokens"
    for i in 0 1 2 3 4 5 6 7 8 9 10 11; do echo "0,$((5 + i * 5)),$((3 + i % 10))"; done
  } >"$RES/trace.csv"
  python3 -c "
import json
c = json.load(open('$ROOT/docs/examples/llama7b_a100.json'))
c['layers'] = 4; c['kv_bytes_per_token'] = 256; c['host_copy_gbps'] = 5
json.dump(c, open('$RES/tiny_costs.json', 'w'))" || echo "FAIL  serve (tiny costs)"
  for reload in swap stream; do
    step "serve_$reload" "${SERVE[@]}" --backend cuda --model tiny --trace "$RES/trace.csv" \
      --no-sleep --pool-blocks 12 --block-tokens 8 --policy vllm,layerkv --host-blocks 64 \
      --reload "$reload" --slo-ttft 1000 --slo-tpot 100 --costs "$RES/tiny_costs.json"
    # every request finished under both policies: the table's rows "<policy> 12 0 ..."
    for pol in vllm layerkv; do
      if ! grep -Eq "^$pol +12 +0 " "$RES/serve_$reload.log"; then
        echo "FAIL  serve_$reload: $pol did not finish all 12 requests"
        fail=1
      fi
    done
    lkv="^# layerkv: host .*: peak [1-9][0-9]* host layer blocks"
    if ! grep -Eq "$lkv" "$RES/serve_$reload.log"; then
      echo "FAIL  serve_$reload: layerkv offloaded nothing"
      fail=1
    fi
    grep -E "^(policy|vllm|layerkv|# layerkv)" "$RES/serve_$reload.log"
  done
fi
exit $fail
