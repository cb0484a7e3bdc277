#!/usr/bin/env bash
# tests/cli/test_kvr_profile.sh BINDIR -- kvr-profile as a user meets it: help, exit codes and
# messages for bad input (2 usage, 1 runtime), tiny-preset profiles (table, JSON, resume of a
# complete or unknown run), transfers over threads, and over MPI when mpirun is installed.
set -u
. "$(dirname "$0")/lib.sh"
P="$1/kvr-profile"; D="$1/kvr-db"
TINY=(--model tiny --chunks 8:32 --max-context 64 --iters 2:4 --warmup 1)
check help 0 "--time-budget" -- "$P" --help
check unknown_flag 2 "unknown option '--bogus'" -- "$P" --bogus
check missing_value 2 "option --db needs a value" -- "$P" --db
check bad_grid 2 "unknown grid 'huge'" -- "$P" --grid huge
check bad_ops 2 "unknown op 'mlp'" -- "$P" --ops pre,mlp
check bad_chunks 2 "--chunks: 'a:b' is not" -- "$P" --model tiny --chunks a:b --db "$tmp/x.db"
check chunks_beyond 2 "largest chunk 256 exceeds --max-context 64" -- "$P" --model tiny --chunks 8:256 --max-context 64 --db "$tmp/x.db"
check bad_budget 2 "--time-budget: '-1'" -- "$P" --time-budget -1
check bad_iters 2 "--iters: '5:2'" -- "$P" --iters 5:2
check bad_tol 2 "--tol: '2' is not a fraction" -- "$P" --tol 2
check ranks_needs_comm 2 "apply to --comm" -- "$P" --ranks 4
check bad_ranks 2 "--ranks: 1 is out of range" -- "$P" --comm --ranks 1
check bad_transport 2 "unknown transport 'tcp'" -- "$P" --comm --transport tcp
# device transports: a GPU machine sweeps device<->device transfers; elsewhere a clear message,
# exit 1, and no run made
out=$("$P" --model tiny --comm --transport same-device --ops none --bytes 4K:8K --db "$tmp/sd.db" 2>&1); rc=$?
if [ $rc = 0 ] || { [ $rc = 1 ] && grep -qE "same-device: .*(no CUDA device|built without CUDA)" <<<"$out" && [ ! -e "$tmp/sd.db" ]; }; then
  echo "ok   same_device"; passes=$((passes+1))
else
  echo "FAIL same_device: rc=$rc:"; echo "$out" | head -5; fails=$((fails+1))
fi
check bad_bytes 2 "--bytes: '4K' is not LO:HI" -- "$P" --comm --bytes 4K
check nothing_to_do 2 "nothing to profile" -- "$P" --model tiny --ops none --db "$tmp/x.db"
check resume_plus_grid 2 "--resume runs with the run's own parameters" -- "$P" --resume 1 --grid quick
check bad_backend 2 "unknown backend 'tpu'" -- "$P" --backend tpu
# cuda: not built, or built and no device here (with a device, profiling on it is gpu-check's)
if "$1/kvr-run" --model tiny --context 8 --backend cuda -N >/dev/null 2>&1; then
  ok "cuda (a device is present: not profiled here)"
else
  check cuda 1 "--backend cuda: (not available: this kvr was built without the CUDA backend|no CUDA device: .+)" -- "$P" --backend cuda
fi
check backend_cpu 0 "^head +1 +1\.\.1 " -- "$P" --backend cpu --model tiny --ops head --max-context 64 --iters 2 --db "$tmp/b.db" -q
check backend_stored 0 "backend +cpu, dtype f32" -- "$D" --db "$tmp/b.db" show 1
check no_model 1 "no-such.gguf" -- "$P" --model /nonexistent/no-such.gguf --db "$tmp/x.db"
check no_db_dir 1 "directory /nonexistent-kvr does not exist" -- "$P" --model tiny --db /nonexistent-kvr/k.db
check resume_no_db 1 "no such database file" -- "$P" --resume 1 --db "$tmp/none.db"
check run 0 "# run 1 complete: [0-9]+ points \([0-9]+ measured, 0 already stored\)" -- "$P" "${TINY[@]}" --db "$tmp/a.db" -q
check table 0 "^attn +[0-9]+ +8\.\.32 +56 " -- "$P" "${TINY[@]}" --db "$tmp/a.db" -q
check header 0 "^# kvr-profile .*: run 3, model tiny \(4 layers\), .*grid custom, ops embed,pre,attn,post,head" -- "$P" "${TINY[@]}" --db "$tmp/a.db"
check progress_plain 0 "^# kvr-profile ops: 100% \([0-9]+/[0-9]+\)" -- "$P" "${TINY[@]}" --db "$tmp/a.db"
check json 0 '^\{"run_id":5,"status":"complete",.*"ops":\[\{"op":"embed","points":[0-9]+,"c_min":8,"c_max":32.*"predicted_single_ttft_ms":\{"4":[0-9.]+,"8":[0-9.]+,"16":[0-9.]+,"32":[0-9.]+\}\}' -- "$P" "${TINY[@]}" --db "$tmp/a.db" --json
check explicit_lists 0 '"ops":\[\{"op":"attn","points":4,"c_min":8,"c_max":24,"prefix_max":40' -- "$P" --model tiny --ops attn --chunks 8,24 --prefixes 0,40 --max-context 64 --refine 0 --iters 2 --db "$tmp/a.db" --json
check resume_complete 1 "run 1: the run is already complete|already complete" -- "$P" --resume 1 --db "$tmp/a.db"
check resume_unknown 1 "run 99 not found" -- "$P" --resume 99 --db "$tmp/a.db"
check comm_threads 0 "^p2p +18 +1024\.\.4096 " -- "$P" --model tiny --ops none --comm --ranks 3 --bytes 1K:4K --max-context 128 --iters 2:4 --db "$tmp/c.db" -q
check comm_busbw_note 0 "busbw = algbw x factor" -- "$P" --model tiny --ops none --comm --bytes 1K:2K --max-context 64 --iters 2 --db "$tmp/c.db" -q
check show_provenance 0 "blas +OpenBLAS.*|grid +custom; ops embed,pre,attn,post,head" -- "$D" --db "$tmp/a.db" show 1
if "$P" --transport mpi --model tiny --db "$tmp/probe.db" 2>&1 | grep -q "built without MPI"; then
  echo "skip mpi: kvr built without MPI"
elif command -v mpirun >/dev/null; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
  check mpi_transfers 0 "^p2p +4 +1024\.\.2048 " -- timeout 120 mpirun -np 2 "$P" --transport mpi --model tiny --bytes 1K:2K --max-context 128 --iters 2:4 --db "$tmp/m.db" -q
  check mpi_provenance 0 "transport mpi" -- "$D" --db "$tmp/m.db" show 1
  check mpi_with_ops 2 "--transport mpi profiles transfers only" -- "$P" --transport mpi --ops pre
  check mpi_resume_complete 1 "already complete" -- timeout 120 mpirun -np 2 "$P" --transport mpi --resume 1 --db "$tmp/m.db"
else
  echo "skip mpi: mpirun not found"
fi
# the overheads step (issue 16 item 1): on by default after all layer ops, 8 rows (4 schedules x
# the model's 4 layers and 1); --no-overheads skips it
check overheads_table 0 "^# kvr: run [0-9.]+ us \+ [0-9.]+ us per layer step" -- "$P" "${TINY[@]}" --db "$tmp/o.db" -q
check overheads_phase 0 "^# kvr-profile overheads: 100% \(1[02]/1[02]\)" -- "$P" "${TINY[@]}" --db "$tmp/o.db"
check overheads_json 0 '"overheads":\[\{"schedule":"single","layers":1,"ranks":1,"excess_median_us":-?[0-9.]+,.*\{"schedule":"ring","layers":4,"ranks":2,' -- "$P" "${TINY[@]}" --db "$tmp/o.db" --json
check overheads_off 0 '"overheads":\[\],' -- "$P" "${TINY[@]}" --no-overheads --db "$tmp/o.db" --json
check overheads_exported 0 "ovh_tsp" -- "$D" --db "$tmp/o.db" export 1 --format csv
# ... then the end-to-end check (issue 16 item 3): single and kvr on the whole model, repeated
check e2e_table 0 "^tsp +[0-9]+ +2 +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +15$" -- "$P" "${TINY[@]}" --db "$tmp/o.db" -q
check e2e_exported 0 "e2e_single" -- "$D" --db "$tmp/o.db" export 1 --format csv
check e2e_off 0 '"e2e":\[\],' -- "$P" "${TINY[@]}" --no-overheads --db "$tmp/o.db" --json
summary "kvr-profile cli"
