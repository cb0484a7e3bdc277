#!/usr/bin/env bash
# bench/layerkv.sh -- LayerKV (issue 13, items 5 and 6): the paper's experiments in the serving
# simulator, for this machine (the real small model's fitted costs: a kvr-profile + kvr-fit run)
# and for a 7B model on an A100-like GPU (docs/examples/llama7b_a100.json), and with --real the
# same comparison replayed on the real model (CPU engine) against its simulation.
#
#   1. ttft-vs-prompt: TTFT p50 / p99 vs prompt length at a fixed low arrival rate, baseline
#      (vllm) vs layerkv, and the queueing share of TTFT (mean queue time / mean TTFT) -- the
#      paper's motivation figure: long prompts wait for KV blocks, not for compute;
#   2. vs-rate: a mixed trace (lognormal prompts and outputs) at increasing arrival rates: TTFT
#      p50 / p99, TPOT p50 / p99 and the SLO violation rate (1 - attainment) for vllm, chunked
#      and layerkv;
#   3. saturation: the output throughput of each policy at an arrival rate far above capacity
#      (the throughput cost of layerkv) and the reload policies (swap, stream) compared;
#   4. --real: one trace whose long prompts contend for a small pool, replayed for real
#      (kvr-serve --trace --no-sleep) under vllm and layerkv and simulated with the fitted costs:
#      simulated vs measured TTFT p50 / p90 for the layerkv run (item 6: within 15 %);
#   5. --real: experiments 1-3 replayed for real on small traces (8 requests a replay: two prompt
#      lengths at 0.25/s, the mixed trace at two rates, the saturating rate with both reloads),
#      each row real beside its simulation.
# A benchmark, not a test: it prints figures and never fails on them (exit 0 unless a command
# fails). Every run is stored in OUT/layerkv.db (kvr-db serving; kvr-report --db draws them).
#
#   bench/layerkv.sh [--out DIR] [--bindir DIR] [--threads N] [--reuse] [--quick] [--real]
#                    [--host-gbps X] [--a100-only]
#   --out DIR       the store, traces, report.txt (default build/layerkv)
#   --bindir DIR    the tools (default build/tools)
#   --threads N     threads of the ops in the profile and the real replays (default 1)
#   --reuse         keep OUT's profile and fit (profile.json)
#   --quick         small traces and a small profile (a smoke run; its figures mean nothing)
#   --real          also the real replays (about 10 minutes on 2 idle cores; --quick: ~2 min)
#   --host-gbps X   the host copy bandwidth for this machine's simulations when its cost model
#                   has none (the output says when it is used; default 4 GB/s)
#   --a100-only     only the A100 cost file (no profile of this machine; --real not allowed)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/build/tools"
OUT="$ROOT/build/layerkv"
THREADS=1
REUSE=0
QUICK=0
REAL=0
GBPS=4
A100_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --bindir) BIN=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --reuse) REUSE=1; shift ;;
    --quick) QUICK=1; shift ;;
    --real) REAL=1; shift ;;
    --host-gbps) GBPS=$2; shift 2 ;;
    --a100-only) A100_ONLY=1; shift ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    *) echo "layerkv.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || { echo "layerkv.sh: --threads $THREADS: need a count >= 1" >&2; exit 2; }
[[ "$GBPS" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "layerkv.sh: --host-gbps $GBPS: need a number > 0" >&2; exit 2; }
[ "$A100_ONLY$REAL" != 11 ] || { echo "layerkv.sh: --real needs this machine's profile: drop --a100-only" >&2; exit 2; }
for t in kvr-profile kvr-fit kvr-trace kvr-serve; do
  [ -x "$BIN/$t" ] || { echo "layerkv.sh: $BIN/$t missing: run scripts/build first" >&2; exit 1; }
done
MODEL=${KVR_MODEL:-$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf}
A100="$ROOT/docs/examples/llama7b_a100.json"
if [ "$A100_ONLY" = 0 ]; then
  [ -e "$MODEL" ] || [[ "$MODEL" != */* ]] || { echo "layerkv.sh: no model at $MODEL (run scripts/fetch-model)" >&2; exit 1; }
fi
mkdir -p "$OUT"
exec python3 - "$BIN" "$MODEL" "$OUT" "$THREADS" "$REUSE" "$QUICK" "$REAL" "$GBPS" "$A100" "$A100_ONLY" <<'PY'
import json, os, subprocess, sys, time
BIN, MODEL, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
THREADS, REUSE, QUICK, REAL = int(sys.argv[4]), sys.argv[5] == "1", sys.argv[6] == "1", sys.argv[7] == "1"
GBPS, A100, A100_ONLY = float(sys.argv[8]), sys.argv[9], sys.argv[10] == "1"
DB = os.path.join(OUT, "layerkv.db")
PROF = os.path.join(OUT, "profile.json")
lines = []
def out(s=""):
    lines.append(s); print(s, flush=True)

def run(args, what):
    p = subprocess.run(args, capture_output=True, text=True, cwd=OUT)
    if p.returncode != 0:
        sys.stderr.write(f"layerkv.sh: {what}: {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-2000:]}\n")
        sys.exit(1)
    return p.stdout

def last_json(s):
    return json.loads([l for l in s.strip().splitlines() if l.startswith("{")][-1])

def trace(name, args):
    path = os.path.join(OUT, f"{name}.csv")
    run([f"{BIN}/kvr-trace", "gen", "--seed", "1", *args, "-o", path], f"trace {name}")
    return path

out(f"# layerkv.sh{' --quick' if QUICK else ''}: {time.strftime('%FT%TZ', time.gmtime())}, "
    f"{os.cpu_count()} cpus, load {' '.join(open('/proc/loadavg').read().split()[:3])}")

# ---------------------------------------------------------------------------- cost sources
# Per source: the cost flag, the pool, the host tier, SLO targets, and the trace shapes scaled
# to the model (the 7B on an A100 prefills ~12k tokens a second; the 135M on 2 CPU cores ~500).
SOURCES = {}
SOURCES["a100-7b"] = dict(
    cost=["--costs", A100], gbps=[], pool=["--pool-tokens", "16384"], host="8192",
    slo=["--slo-ttft", "3000", "--slo-tpot", "100"],
    prompts=[1024, 2048, 4096, 8192, 12288], low_rate="0.5", out_fixed="256",
    mix=["--prompt-tokens", "lognormal:2048,1.0", "--output-tokens", "lognormal:256,0.8"],
    rates=["0.5", "1", "2", "4", "6", "8"], sat_rate="40",
    count="60" if QUICK else "400")
if not A100_ONLY:
    if not REUSE or not os.path.exists(PROF):
        for f in (DB, DB + "-wal", DB + "-shm", PROF):
            if os.path.exists(f): os.remove(f)
        K = [f"{BIN}/kvr-profile", "--model", MODEL, "--db", DB, "--json", "--quiet", "--grid", "quick",
             "--threads", str(THREADS)]
        if QUICK:
            K += ["--max-context", "1024", "--time-budget", "0.05", "--no-overheads", "--decode-batch", "4"]
        t0 = time.time()
        prun = last_json(run(K, "profile"))["run_id"]
        run([f"{BIN}/kvr-fit", "--db", DB, "--run", str(prun), "--json"], "fit")
        json.dump({"run": prun}, open(PROF, "w"))
        out(f"# profile of this machine: run {prun} in {DB} ({time.time() - t0:.0f} s, with kvr-fit)")
    prun = json.load(open(PROF))["run"]
    # the copy bandwidth: the cost model's when the profile measured it, else --host-gbps
    probe = subprocess.run([f"{BIN}/kvr-serve", "--simulate", "--trace", trace("probe", ["--rate", "1", "--count", "1"]),
                            "--run", str(prun), "--db", DB, "--pool-tokens", "4096", "--policy", "layerkv",
                            "--slo-ttft", "1000", "--slo-tpot", "100", "--json"], capture_output=True, text=True, cwd=OUT)
    gb = []
    if probe.returncode != 0 and "host copy bandwidth" in probe.stderr:
        gb = ["--host-gbps", str(GBPS)]
        out(f"# this machine's cost model has no host copy rate: --host-gbps {GBPS} (an assumption)")
    SOURCES["cpu-135m"] = dict(
        cost=["--run", str(prun), "--db", DB], gbps=gb, pool=["--pool-tokens", "2048"], host="512",
        slo=["--slo-ttft", "8000", "--slo-tpot", "400"],
        prompts=[128, 256, 512, 768, 1024], low_rate="0.05", out_fixed="32",
        mix=["--prompt-tokens", "lognormal:384,0.8", "--output-tokens", "lognormal:48,0.6"],
        rates=["0.05", "0.1", "0.2", "0.3", "0.5"], sat_rate="5",
        count="30" if QUICK else "120")

def sim(src, path, policies, extra=()):
    S = SOURCES[src]
    args = [f"{BIN}/kvr-serve", "--simulate", "--trace", path, *S["cost"], *S["pool"], *S["slo"],
            "--policy", ",".join(policies), "--json", *extra]
    if "--db" not in S["cost"]:
        args += ["--db", DB]
    if "layerkv" in policies:
        args += ["--host-blocks", S["host"], *S["gbps"]]
    return {p["policy"]: p for p in json.loads(run(args, f"simulate {src}"))["policies"]}

for src, S in SOURCES.items():
    out(f"\n## {src}: {' '.join(S['cost'])} {' '.join(S['pool'])}, layerkv host tier {S['host']} blocks "
        f"{' '.join(S['gbps'])}, SLO {' '.join(S['slo'])}")
    # 1. TTFT vs prompt length
    out(f"\n# 1. TTFT vs prompt length: {S['count']} requests at {S['low_rate']}/s, output {S['out_fixed']} tokens")
    out(f"{'prompt':>7} {'policy':<8} {'ttft_p50':>9} {'ttft_p99':>9} {'queue%':>7} {'tpot_p50':>9} {'offload':>8}")
    for P in S["prompts"]:
        path = trace(f"{src}-len{P}", ["--rate", S["low_rate"], "--count", S["count"],
                                       "--prompt-tokens", str(P), "--output-tokens", S["out_fixed"]])
        r = sim(src, path, ["vllm", "layerkv"])
        for pol, x in r.items():
            share = x["queue_ms"]["mean"] / x["ttft_ms"]["mean"] if x["ttft_ms"]["mean"] > 0 else 0
            off = x.get("layerkv", {}).get("peak_host_layer_blocks", 0)
            out(f"{P:>7} {pol:<8} {x['ttft_ms']['p50']:>9.1f} {x['ttft_ms']['p99']:>9.1f} {100 * share:>6.1f}% "
                f"{x['tpot_ms']['p50']:>9.2f} {off:>8}")
    # 2. vs arrival rate, the mixed trace
    out(f"\n# 2. mixed trace ({' '.join(S['mix'])}), {S['count']} requests: vs arrival rate")
    out(f"{'rate':>6} {'policy':<8} {'ttft_p50':>9} {'ttft_p99':>9} {'tpot_p50':>9} {'tpot_p99':>9} {'slo_viol':>8} {'tok/s':>8}")
    for rate in S["rates"]:
        path = trace(f"{src}-mix{rate}", ["--rate", rate, "--count", S["count"], *S["mix"]])
        r = sim(src, path, ["vllm", "chunked", "layerkv"])
        for pol, x in r.items():
            out(f"{rate:>6} {pol:<8} {x['ttft_ms']['p50']:>9.1f} {x['ttft_ms']['p99']:>9.1f} "
                f"{x['tpot_ms']['p50']:>9.2f} {x['tpot_ms']['p99']:>9.2f} {100 * (1 - x['slo_attainment']):>7.1f}% "
                f"{x['output_tok_per_s']:>8.1f}")
    # 3. saturation and the reload policies
    path = trace(f"{src}-sat", ["--rate", S["sat_rate"], "--count", S["count"], *S["mix"]])
    out(f"\n# 3. saturation: the mixed trace at {S['sat_rate']}/s: output throughput, layerkv reload swap vs stream")
    base = sim(src, path, ["vllm", "chunked", "layerkv"])
    stream = sim(src, path, ["layerkv"], ["--reload", "stream"])["layerkv"]
    v = base["vllm"]["output_tok_per_s"]
    for name, x in [("vllm", base["vllm"]), ("chunked", base["chunked"]), ("lkv-swap", base["layerkv"]),
                    ("lkv-stream", stream)]:
        k = x.get("layerkv", {})
        out(f"{name:<10} {x['output_tok_per_s']:>9.1f} tok/s ({100 * (x['output_tok_per_s'] / v - 1):+.1f} % vs vllm)  "
            f"ttft p50 {x['ttft_ms']['p50']:.0f} ms  tpot p50 {x['tpot_ms']['p50']:.1f} ms"
            + (f"  swap-ins {k['swap_ins']}, copy exposed {k['copy_exposed_s']:.2f} s" if k else ""))

# ---------------------------------------------------------------------------- 4. real vs simulated
if REAL:
    S = SOURCES["cpu-135m"]
    args = (["--rate", "2", "--count", "3", "--prompt-tokens", "uniform:192,256", "--output-tokens", "uniform:4,8"]
            if QUICK else
            ["--rate", "0.25", "--count", "8", "--prompt-tokens", "uniform:512,1024", "--output-tokens", "uniform:16,32"])
    pool = "512" if QUICK else "2048"
    host = "256" if QUICK else "512"
    path = trace("real", args)
    out(f"\n# 4. real vs simulated: kvr-trace gen {' '.join(args)}; pool {pool} tokens, host {host} blocks")
    sims = {}
    simargs = [f"{BIN}/kvr-serve", "--simulate", "--trace", path, *S["cost"], "--pool-tokens", pool,
               *S["slo"], "--json", "--policy", "vllm,layerkv", "--host-blocks", host, *S["gbps"]]
    for p in json.loads(run(simargs, "simulate real trace"))["policies"]:
        sims[p["policy"]] = p
    out(f"{'policy':<8} {'metric':<9} {'real ms':>9} {'sim ms':>9} {'ratio':>6} {'<=15%':>5}")
    for pol in ("vllm", "layerkv"):
        # layerkv's admission predicts with the same profile's costs
        extra = ["--host-blocks", host, "--run", str(prun)] if pol == "layerkv" else []
        t0 = time.time()
        r = json.loads(run([f"{BIN}/kvr-serve", "--trace", path, "--model", MODEL, "--no-sleep",
                            "--threads", str(THREADS), "--pool-tokens", pool, *S["slo"], "--policy", pol,
                            *extra, "--db", DB, "--json"], f"real replay {pol}"))["policies"][0]
        for q in ("p50", "p90"):
            m, s = r["ttft_ms"][q], sims[pol]["ttft_ms"][q]
            ratio = s / m if m > 0 else float("nan")
            out(f"{pol:<8} TTFT {q:<4} {m:>9.1f} {s:>9.1f} {ratio:>6.3f} {'yes' if abs(ratio - 1) <= 0.15 else 'NO':>5}"
                f"{'' if q == 'p90' else f'   ({time.time() - t0:.0f} s replay)'}")
# ---------------------------------------------------------------------------- 5. experiments 1-3 for real
# The same three experiments replayed on the real model (smaller traces: every replay is real
# compute on 2 cores), each row real beside its simulation from the same profile.
if REAL:
    S = SOURCES["cpu-135m"]
    n = "3" if QUICK else "8"
    pool, host = ("512", "256") if QUICK else ("2048", "512")
    def real(path, pol, extra=()):
        lk = ["--host-blocks", host, "--run", str(prun), *extra] if pol == "layerkv" else []
        return json.loads(run([f"{BIN}/kvr-serve", "--trace", path, "--model", MODEL, "--no-sleep",
                               "--threads", str(THREADS), "--pool-tokens", pool, *S["slo"], "--policy", pol,
                               *lk, "--db", DB, "--json"], f"real replay {pol}"))["policies"][0]
    def simr(path, pol, extra=()):
        lk = ["--host-blocks", host, *S["gbps"], *extra] if pol == "layerkv" else []
        return json.loads(run([f"{BIN}/kvr-serve", "--simulate", "--trace", path, *S["cost"], "--pool-tokens", pool,
                               *S["slo"], "--policy", pol, *lk, "--json"], f"simulate {pol}"))["policies"][0]
    def row(label, pol, r, m):
        f = lambda x, y: f"{x:>8.0f}/{y:<8.0f}"
        out(f"{label:<8} {pol:<10} {f(r['ttft_ms']['p50'], m['ttft_ms']['p50'])} {f(r['ttft_ms']['p90'], m['ttft_ms']['p90'])} "
            f"{r['tpot_ms']['p50']:>7.1f}/{m['tpot_ms']['p50']:<7.1f} {100 * (1 - r['slo_attainment']):>4.0f}/{100 * (1 - m['slo_attainment']):<4.0f} "
            f"{r['output_tok_per_s']:>6.1f}/{m['output_tok_per_s']:<6.1f}")
    out(f"\n# 5. experiments 1-3 for real ({n} requests a replay; pool {pool} tokens, host {host} blocks): real/simulated")
    out(f"{'case':<8} {'policy':<10} {'TTFT p50 ms':>17} {'TTFT p90 ms':>17} {'TPOT p50 ms':>15} {'SLO viol %':>9} {'tok/s':>13}")
    cases = []
    for P in ([256] if QUICK else [512, 1024]):
        cases.append((f"len{P}", trace(f"real-len{P}", ["--rate", "0.25", "--count", n, "--prompt-tokens", str(P),
                                                          "--output-tokens", S["out_fixed"]]), ["vllm", "layerkv"]))
    for rate in (["0.5"] if QUICK else ["0.2", "0.5"]):
        cases.append((f"mix@{rate}", trace(f"real-mix{rate}", ["--rate", rate, "--count", n, *S["mix"]]),
                      ["vllm", "chunked", "layerkv"]))
    cases.append((f"sat@{S['sat_rate']}", trace("real-sat", ["--rate", S["sat_rate"], "--count", n, *S["mix"]]),
                  ["vllm", "chunked", "layerkv", "lkv-stream"]))
    for label, path, pols in cases:
        for pol in pols:
            extra = ["--reload", "stream"] if pol == "lkv-stream" else []
            base = "layerkv" if pol == "lkv-stream" else pol
            row(label, pol, real(path, base, extra), simr(path, base, extra))
out(f"\n# files: {OUT} (layerkv.db: kvr-db --db {DB} serving; kvr-report --db {DB})")
open(os.path.join(OUT, "report.txt"), "w").write("\n".join(lines) + "\n")
PY
