#!/usr/bin/env bash
# bench/strategy_check.sh -- every strategy the planner compares, simulated against measured on
# this machine (issue 14, item 2): single, KVR-E, KVR-S, TSP and ring pass-KV (zigzag) on the
# real small model (CPU runtime), p = 2, over the threads transport and over MPI.
#
#   1. profile once: the layer ops up to the largest context and the threads transfers
#      (kvr-profile --grid quick --comm --ranks 2), and the MPI transfers (mpirun -np 2
#      kvr-profile --comm --transport mpi --ops none);
#   2. search: kvr-search --db --run (threads links) and --link-run (MPI links) -- the simulated
#      TTFT of every strategy and the KVR-S partition per context and transport;
#   3. measure every (strategy, transport, context) with kvr-run --json, --rounds times, the
#      rounds interleaved (every other round in reverse order) so a slow spell of the host hits
#      every case alike; before every run wait until other processes are quiet; a speed probe
#      (the model at 256 tokens, single rank) at the start of every round;
#   4. print per case simulated, measured (median over the rounds), simulated / measured and
#      the spread of the rounds (slowest / fastest - 1: the machine's own run-to-run noise,
#      measured in the same run), then per strategy and transport the ratios against the target
#      |simulated / measured - 1| <= 10 %.
# A benchmark, not a test: it prints figures and never fails on them (exit 0 unless a command
# fails). Every run is recorded in the store (OUT/strategy.db), so `kvr-report --db
# OUT/strategy.db` draws the measured points beside the simulated curves.
#
#   bench/strategy_check.sh [--contexts "512 1024 2048 4096"] [--rounds N] [--bindir DIR]
#                           [--out DIR] [--no-mpi] [--wait-quiet S] [--reuse]
#   --contexts LIST  prompt lengths (default "512 1024 2048 4096"; the issue's range adds 8192,
#                    which alone takes ~8 minutes a round on 2 cores)
#   --rounds N       measure every case N times, interleaved (default 2; >= 2 gives a spread)
#   --out DIR        the store, the search tables, runs.jsonl, report.txt (build/strategy_check)
#   --no-mpi         threads transport only
#   --wait-quiet S   before the profile and before each run wait, up to S s (default 120),
#                    until other processes use < 0.15 cores over 2 s
#   --reuse          keep OUT's profile and searches; only measure again
#   --analyze-only   print the report of OUT's runs again
# At the defaults about 12-15 minutes on 2 idle cores (profile ~1.5 min, then ~5 min a round).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/build/tools"
CTX="512 1024 2048 4096"
ROUNDS=2
OUT="$ROOT/build/strategy_check"
MPI=1
WAIT=120
REUSE=0
ANALYZE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --contexts) CTX=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --bindir) BIN=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --no-mpi) MPI=0; shift ;;
    --wait-quiet) WAIT=$2; shift 2 ;;
    --reuse) REUSE=1; shift ;;
    --analyze-only) ANALYZE=1; shift ;;
    -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
    *) echo "strategy_check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "strategy_check.sh: --rounds $ROUNDS: need a count >= 1" >&2; exit 2; }
for c in $CTX; do
  [[ "$c" =~ ^[0-9]+$ ]] && [ "$c" -ge 64 ] || { echo "strategy_check.sh: --contexts: '$c' is not a token count >= 64" >&2; exit 2; }
done
for t in kvr-profile kvr-search kvr-run; do
  [ -x "$BIN/$t" ] || { echo "strategy_check.sh: $BIN/$t missing: run scripts/build first" >&2; exit 1; }
done
MODEL=${KVR_MODEL:-$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -e "$MODEL" ] || [[ "$MODEL" != */* ]] || { echo "strategy_check.sh: no model at $MODEL (run scripts/fetch-model)" >&2; exit 1; }
if [ "$MPI" = 1 ] && ! command -v mpirun >/dev/null; then echo "# no mpirun: threads only"; MPI=0; fi
mkdir -p "$OUT"
exec python3 - "$BIN" "$MODEL" "$OUT" "$CTX" "$ROUNDS" "$MPI" "$WAIT" "$REUSE" "$ANALYZE" <<'PY'
import json, os, resource, statistics as stt, subprocess, sys, time
BIN, MODEL, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
CTX = [int(c) for c in sys.argv[4].split()]
ROUNDS, MPI, WAIT = int(sys.argv[5]), sys.argv[6] == "1", float(sys.argv[7])
REUSE, ANALYZE = sys.argv[8] == "1", sys.argv[9] == "1"
DB = os.path.join(OUT, "strategy.db")
RUNS = os.path.join(OUT, "runs.jsonl")
HZ = os.sysconf("SC_CLK_TCK")
MPIRUN = ["mpirun", "--oversubscribe", "-np", "2"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
TRANSPORTS = ["threads", "mpi"] if MPI else ["threads"]
STRATS = ["single", "kvr-e", "kvr-s", "tsp", "ring"]

def busy():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return f[0] + f[1] + f[2] + f[5] + f[6]

def others_now(window=2.0):
    """Cores used by other processes over the next window seconds (ours is idle then)."""
    b0 = busy(); r0 = resource.getrusage(resource.RUSAGE_SELF); time.sleep(window); b1 = busy()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    own = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return max(0.0, (b1 - b0) / HZ - own) / window

waited = 0.0
def wait_quiet():
    global waited
    t0 = time.time()
    while True:
        o = others_now()
        if o < 0.15 or time.time() - t0 > WAIT:
            waited += time.time() - t0
            return o
        time.sleep(3)

def phase(args):
    """Run a command; return (stdout, wall s, others' cores meanwhile)."""
    b0 = busy(); r0 = resource.getrusage(resource.RUSAGE_CHILDREN); t0 = time.time()
    p = subprocess.run(args, capture_output=True, text=True, cwd=OUT)
    t1 = time.time(); r1 = resource.getrusage(resource.RUSAGE_CHILDREN); b1 = busy()
    if p.returncode != 0:
        sys.stderr.write(f"strategy_check.sh: {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-2000:]}\n")
        sys.exit(1)
    own = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return p.stdout, t1 - t0, max(0.0, (b1 - b0) / HZ - own) / (t1 - t0)

def last_json(out):
    return json.loads([l for l in out.strip().splitlines() if l.startswith("{")][-1])

PROBE = [f"{BIN}/kvr-run", "--model", MODEL, "--no-db", "--json", "--context", "256"]
def probe():
    return last_json(phase(PROBE)[0])["ttft_ms"]

load = lambda: " ".join(open("/proc/loadavg").read().split()[:3])
sims = os.path.join(OUT, "search.json")
if not ANALYZE:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"# strategy_check.sh: {os.path.basename(MODEL)}, {os.cpu_count()} cpus ({cpu}), contexts "
          f"{CTX}, {ROUNDS} rounds, transports {'+'.join(TRANSPORTS)}; {time.strftime('%FT%TZ', time.gmtime())}; "
          f"load {load()}", flush=True)
    if not REUSE:
        for f in (DB, DB + "-wal", DB + "-shm", RUNS):
            if os.path.exists(f): os.remove(f)
        cmax = max(CTX)
        K = [f"{BIN}/kvr-profile", "--model", MODEL, "--db", DB, "--json", "--quiet"]
        o = wait_quiet()
        out, wall, oth = phase(K + ["--grid", "quick", "--chunks", f"16:{cmax}", "--max-context",
                                    str(cmax), "--comm", "--ranks", "2"])
        lay = last_json(out)
        print(f"# profile: layer ops + threads transfers, run {lay['run_id']}, {wall:.0f} s "
              f"(others {o:.2f} cores before, {oth:.2f} during)", flush=True)
        runs = {"threads": lay["run_id"]}
        if MPI:
            out, wall, oth = phase(MPIRUN + K + ["--comm", "--transport", "mpi", "--ops", "none",
                                                 "--ranks", "2"])
            runs["mpi"] = last_json(out)["run_id"]
            print(f"# profile: MPI transfers, run {runs['mpi']}, {wall:.0f} s", flush=True)
        table = {}
        for tr in TRANSPORTS:
            args = [f"{BIN}/kvr-search", "--db", DB, "--run", str(runs["threads"]), "--ranks", "2",
                    "--context", ",".join(map(str, CTX)), "--json"]
            if tr == "mpi":
                args += ["--link-run", str(runs["mpi"])]
            t = json.loads(phase(args)[0])
            table[tr] = {str(r["context"]): {"partition": r["partition"],
                                             "sim": {k: v.get("ttft_ms") for k, v in r["strategies"].items()}}
                         for r in t["results"]}
            print(f"# search ({tr} links): " + "; ".join(
                f"{C}: kvr-s {','.join(map(str, table[tr][str(C)]['partition']))}" for C in CTX), flush=True)
        json.dump({"runs": runs, "table": table}, open(sims, "w"))
    S = json.load(open(sims))
    table = S["table"]

    RUN = [f"{BIN}/kvr-run", "--model", MODEL, "--db", DB, "--json"]
    cases = []  # (strategy, transport, context, argv)
    for C in CTX:
        cases.append(("single", "threads", C, RUN + ["--context", str(C), "--mode", "single"]))
        for tr in TRANSPORTS:
            part = ",".join(map(str, table[tr][str(C)]["partition"]))
            for st, extra in (("kvr-e", ["--mode", "kvr", "--partition", "even"]),
                              ("kvr-s", ["--mode", "kvr", "--partition", part]),
                              ("tsp", ["--mode", "tsp"]), ("ring", ["--mode", "ring"])):
                if tr == "mpi":
                    cmd = MPIRUN + RUN + ["--transport", "mpi", "--context", str(C)] + extra
                else:
                    cmd = RUN + ["--ranks", "2", "--context", str(C)] + extra
                cases.append((st, tr, C, cmd))
    print(f"{'round':>5} {'strategy':<7} {'transport':<9} {'context':>7} {'measured':>10} "
          f"{'simulated':>10} {'sim/meas':>8} {'others':>7}", flush=True)
    with open(RUNS, "a") as f:
        for rnd in range(ROUNDS):
            wait_quiet()
            pr = sorted(probe() for _ in range(3))[1]
            f.write(json.dumps({"probe_ms": pr, "round": rnd + 1}) + "\n")
            print(f"# round {rnd + 1}/{ROUNDS}: speed probe {pr:.1f} ms; load {load()}; "
                  f"{time.strftime('%T', time.gmtime())}", flush=True)
            order = list(range(len(cases)))
            if rnd % 2:
                order.reverse()
            for i in order:
                st, tr, C, cmd = cases[i]
                o = wait_quiet()
                out, wall, oth = phase(cmd)
                r = last_json(out)
                sim = table[tr][str(C)]["sim"].get(st)
                rec = {"round": rnd + 1, "strategy": st, "transport": tr, "context": C,
                       "ttft_ms": r["ttft_ms"], "partition": r["partition"], "sim_ms": sim,
                       "others_before": o, "others": oth, "git_commit": r.get("git_commit")}
                f.write(json.dumps(rec) + "\n"); f.flush()
                print(f"{rnd + 1:>5} {st:<7} {tr:<9} {C:>7} {r['ttft_ms']:>10.1f} "
                      f"{sim if sim else float('nan'):>10.1f} {sim / r['ttft_ms'] if sim else float('nan'):>8.3f} "
                      f"{oth:>7.2f}{'  (busy)' if oth > 0.2 else ''}", flush=True)
    print(f"# waited {waited:.0f} s in all for other processes to go quiet; load after {load()}")

# ---------------------------------------------------------------------------- report
recs = [json.loads(l) for l in open(RUNS) if l.strip()]
probes = [x["probe_ms"] for x in recs if "probe_ms" in x]
runs = [x for x in recs if "strategy" in x]
by = {}
for x in runs:
    by.setdefault((x["strategy"], x["transport"], x["context"]), []).append(x)
lines = []
def out(s=""):
    lines.append(s); print(s)
out(f"\n# per case: measured = median of {max(len(v) for v in by.values())} round(s); spread = slowest / fastest - 1")
out(f"{'strategy':<7} {'transport':<9} {'context':>7} {'partition':<11} {'measured':>10} {'simulated':>10} "
    f"{'sim/meas':>8} {'spread':>7}")
ratios, spreads = {}, []
ctxs = sorted({k[2] for k in by})
for st in STRATS:
    for tr in ("threads", "mpi"):
        for C in ctxs:
            v = by.get((st, tr, C))
            if not v:
                continue
            m = [x["ttft_ms"] for x in v]
            med = stt.median(m)
            sim = v[0]["sim_ms"]
            sp = max(m) / min(m) - 1
            if len(m) > 1:
                spreads.append(sp)
            ratio = sim / med if sim else None
            if ratio:
                ratios.setdefault((st, tr), []).append((C, ratio))
            out(f"{st:<7} {tr:<9} {C:>7} {','.join(map(str, v[0]['partition'])):<11} {med:>10.1f} "
                f"{sim if sim else float('nan'):>10.1f} {ratio if ratio else float('nan'):>8.3f} {100 * sp:>6.1f}%")
out(f"\n# simulated / measured per strategy and transport (target: within 10 %, i.e. 0.90 .. 1.10)")
out(f"{'strategy':<7} {'transport':<9} " + " ".join(f"{C:>7}" for C in ctxs) + f" {'worst':>7}  verdict")
for (st, tr), v in ratios.items():
    d = dict(v)
    worst = max(abs(r - 1) for _, r in v)
    out(f"{st:<7} {tr:<9} " + " ".join(f"{d[C]:>7.3f}" if C in d else f"{'-':>7}" for C in ctxs)
        + f" {100 * worst:>6.1f}%  {'ok' if worst <= 0.10 else 'MISSED'}")
if spreads:
    out(f"# the machine's run-to-run spread (slowest / fastest round - 1, over {len(spreads)} cases): "
        f"median {100 * stt.median(spreads):.1f} %, max {100 * max(spreads):.1f} %")
if len(probes) > 1:
    out(f"# speed probe per round (256 tokens, single rank): "
        + ", ".join(f"{p:.1f}" for p in probes) + f" ms (max / min - 1 = {100 * (max(probes) / min(probes) - 1):.1f} %)")
busy_runs = sum(1 for x in runs if x["others"] > 0.2)
out(f"# {busy_runs} of {len(runs)} runs had other processes using > 0.2 cores; commit "
    f"{runs[0].get('git_commit') if runs else '?'}")
open(os.path.join(OUT, "report.txt"), "w").write("\n".join(lines) + "\n")
print(f"# files: {OUT} (strategy.db: kvr-report --db {DB}; search.json, runs.jsonl, report.txt)")
PY
