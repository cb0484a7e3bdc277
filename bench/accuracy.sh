#!/usr/bin/env bash
# bench/accuracy.sh -- how well the fitted cost model predicts real prefills (issue 5, item 5):
# profile the real small model on this machine (layer ops up to the largest context, and the
# transfers), fit the cost model and KVR-P (kvr-fit), then run the CPU runtime -- single on 1
# rank, KVR-E, KVR-P (--partition auto) and TSP on 2 ranks, over the threads transport and over
# MPI -- at every context, and compare each measured TTFT with the TTFT the fitted costs predict
# through the search module's simulators (kvr-run prints both and records them in the store).
# Target: median |error| <= 5 %, max <= 10 %, per strategy and over all runs.
#
# A benchmark, not a test: it prints figures and never fails on them. The machine matters: two
# ranks on two cores leave nothing for anything else, and on a shared VM the host's load changes
# this machine's speed without any process here showing it. So every phase reports how much
# CPU other processes used meanwhile ("others", in cores, from /proc/stat), runs are flagged
# when others used more than 0.2 cores, and the load average is printed before and after. Run it
# when the machine is quiet.
#
#   bench/accuracy.sh [--bindir DIR] [--contexts "512 1024 2048 4096 8192"] [--repeat N]
#                     [--db PATH] [--no-mpi] [--mpi-single] [--profile-args "..."] [--reuse]
#                     [--retry-busy N]
#   --reuse        keep the store from an earlier run (--db) and only measure
#   --mpi-single   also single-rank under mpirun -np 1
#   --retry-busy N measure a run again (after 20 s) while others used > 0.2 cores, up to N
#                  times (default 2); the last measurement is kept either way
#   --wait-quiet S before the profile and before each run, wait (up to S seconds, default
#                  600) until other processes use < 0.1 cores over 3 s
# Takes about 25 minutes at the default contexts (8192 tokens on one rank alone take ~2 min).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/build/tools"
CTX="512 1024 2048 4096 8192"
REPEAT=1
DB=""
MPI=1
MPI_SINGLE=0
REUSE=0
RETRY=2
WAIT=600
PROFILE_ARGS="--grid quick --chunks 16:8192 --max-context 8192"
while [ $# -gt 0 ]; do
  case "$1" in
    --bindir) BIN=$2; shift 2 ;;
    --contexts) CTX=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --db) DB=$2; shift 2 ;;
    --no-mpi) MPI=0; shift ;;
    --mpi-single) MPI_SINGLE=1; shift ;;
    --profile-args) PROFILE_ARGS=$2; shift 2 ;;
    --reuse) REUSE=1; shift ;;
    --retry-busy) RETRY=$2; shift 2 ;;
    --wait-quiet) WAIT=$2; shift 2 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "accuracy.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
MODEL=${KVR_MODEL:-$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -e "$MODEL" ] || { echo "accuracy.sh: no model at $MODEL (run scripts/fetch-model)"; exit 1; }
tmp=$(mktemp -d /tmp/kvr-accuracy.XXXXXX)   # kept: it holds the store for kvr-report
DB=${DB:-$tmp/accuracy.db}
if [ "$REUSE" = 0 ]; then rm -f "$DB" "$DB-wal" "$DB-shm"; fi
if [ "$MPI" = 1 ] && ! command -v mpirun >/dev/null; then echo "# no mpirun: threads only"; MPI=0; fi
exec python3 - "$BIN" "$MODEL" "$DB" "$CTX" "$REPEAT" "$MPI" "$MPI_SINGLE" "$REUSE" "$PROFILE_ARGS" "$RETRY" "$WAIT" <<'PY'
import json, os, resource, shlex, subprocess, sys, time
BIN, MODEL, DB = sys.argv[1], sys.argv[2], sys.argv[3]
CTX = [int(c) for c in sys.argv[4].split()]
REPEAT, MPI, MPI_SINGLE, REUSE = int(sys.argv[5]), sys.argv[6] == "1", sys.argv[7] == "1", sys.argv[8] == "1"
PROFILE_ARGS = shlex.split(sys.argv[9])
RETRY = int(sys.argv[10])
WAIT = float(sys.argv[11])
HZ = os.sysconf("SC_CLK_TCK")

def busy():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return f[0] + f[1] + f[2] + f[5] + f[6]

def others_now(window=3.0):
    b0 = busy(); r0 = resource.getrusage(resource.RUSAGE_SELF); time.sleep(window); b1 = busy()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    own = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return max(0.0, (b1 - b0) / HZ - own) / window

waited_total = 0.0
def wait_quiet():
    """Wait (up to WAIT s) until other processes use < 0.1 cores; return the last reading."""
    global waited_total
    t0 = time.time()
    while True:
        o = others_now()
        if o < 0.1 or time.time() - t0 > WAIT:
            waited_total += time.time() - t0
            return o
        time.sleep(12)

def phase(args, env=None):
    """Run a command; return (stdout, wall s, others' cores meanwhile)."""
    b0 = busy(); r0 = resource.getrusage(resource.RUSAGE_CHILDREN); t0 = time.time()
    p = subprocess.run(args, capture_output=True, text=True, env=env)
    t1 = time.time(); r1 = resource.getrusage(resource.RUSAGE_CHILDREN); b1 = busy()
    if p.returncode != 0:
        sys.stderr.write(f"accuracy.sh: {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-2000:]}\n")
        sys.exit(1)
    own = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    wall = t1 - t0
    return p.stdout, wall, max(0.0, (b1 - b0) / HZ - own) / wall

load = lambda: " ".join(open("/proc/loadavg").read().split()[:3])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"# accuracy.sh: {os.path.basename(MODEL)}, {os.cpu_count()} cpus ({cpu}), contexts {CTX}, "
      f"repeat {REPEAT}, mpi {'yes' if MPI else 'no'}; store {DB}")
print(f"# load average before: {load()}")

K = [f"{BIN}/kvr-profile", "--model", MODEL, "--db", DB, "--json", "--quiet"]
if not REUSE:
    for attempt in range(RETRY + 1):
        wait_quiet()
        out, wall, oth = phase(K + PROFILE_ARGS)
        if oth <= 0.2 or attempt == RETRY:
            break
        print(f"# (profile: others used {oth:.2f} cores; profiling again)", flush=True)
    lay = json.loads(out)
    print(f"# profile (layer ops): run {lay['run_id']}, {lay['points']} points in {wall:.0f} s (others {oth:.2f} cores)")
    out, wall, oth = phase(K + ["--ops", "none", "--comm", "--ranks", "2"])
    com = json.loads(out)
    print(f"# profile (transfers, threads): run {com['run_id']} in {wall:.0f} s (others {oth:.2f} cores)")
    out, wall, oth = phase([f"{BIN}/kvr-fit", "--db", DB, "--run", str(lay["run_id"]), "--link-run",
                            str(com["run_id"]), "--kvrp", "--ranks", "2", "--context",
                            f"{min(CTX)}:{max(CTX)}:256", "--json"])
    fit = json.loads(out)
    print(f"# kvr-fit: cost model {fit['costs_fit_id']}, TTFT error band {100*fit['err_band']:.2f} %; "
          f"KVR-P {fit['kvrp']['predictors'][0]['form']} (predictor {fit['kvrp']['predictors'][0]['id']}, "
          f"held-out gap in range {100*fit['kvrp']['predictors'][0]['gap_in_max']:.3f} % max)")
    for f in fit["fits"]:
        r2 = f"{f['r2']:.4f}" if f["r2"] is not None else "-"
        mc = f"{100*f['mape_cv']:.2f}" if f["mape_cv"] is not None else "-"
        mx = f"{100*f['max_err_cv']:.2f}" if f["max_err_cv"] is not None else "-"
        print(f"#   {f['target']:<6} {f['form']:<9} n={f['n_samples']:<4} r2={r2:<7} mape_cv={mc}% max_cv={mx}%")

RUN = [f"{BIN}/kvr-run", "--model", MODEL, "--db", DB, "--json", "--repeat", str(REPEAT)]
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe"]
cases = []  # (label, transport, ranks, args)
for C in CTX:
    cases.append(("single", "threads", 1, ["--context", str(C), "--mode", "single"]))
    if MPI and MPI_SINGLE:
        cases.append(("single", "mpi", 1, ["--context", str(C), "--mode", "single"]))
    for tr in (["threads", "mpi"] if MPI else ["threads"]):
        for label, extra in (("kvr-e", ["--mode", "kvr", "--partition", "even"]),
                             ("kvr-p", ["--mode", "kvr", "--partition", "auto"]),
                             ("tsp", ["--mode", "tsp"])):
            cases.append((label, tr, 2, ["--context", str(C)] + extra))
print(f"{'strategy':<8} {'transport':<9} {'ranks':>5} {'context':>8} {'partition':<12} {'measured':>10} "
      f"{'predicted':>10} {'error':>8} {'drift':>5} {'predict':>8} {'others':>7}")
print(f"{'':<8} {'':<9} {'':>5} {'(tokens)':>8} {'(tokens)':<12} {'(ms)':>10} {'(ms)':>10} {'(%)':>8} "
      f"{'':>5} {'(us)':>8} {'(cores)':>7}")
res = []
for label, tr, p, args in cases:
    if tr == "mpi":
        cmd = MPIRUN + ["-np", str(p)] + RUN + ["--transport", "mpi"] + args
    else:
        cmd = RUN + (["--ranks", str(p)] if p > 1 else []) + args
    for attempt in range(RETRY + 1):
        wait_quiet()
        out, wall, oth = phase(cmd)
        if oth <= 0.2 or attempt == RETRY:
            break
        print(f"# ({label} {tr} {args[1]}: others used {oth:.2f} cores; again in 20 s)", flush=True)
        time.sleep(20)
    r = json.loads(out.strip().splitlines()[-1])
    pred = r["predicted_ttft_ms"]
    err = r["ttft_ms"] / pred - 1 if pred else None
    res.append((label, tr, p, r["context"], r["ttft_ms"], pred, err, r["drift"], oth))
    pu = f"{r['predict_us']:.2f}" if r.get("predict_us") is not None else "-"
    print(f"{label:<8} {tr:<9} {p:>5} {r['context']:>8} {','.join(map(str, r['partition'])):<12} "
          f"{r['ttft_ms']:>10.1f} {pred if pred else float('nan'):>10.1f} "
          f"{100*err if err is not None else float('nan'):>+8.2f} {'yes' if r['drift'] else 'no':>5} "
          f"{pu:>8} {oth:>7.2f}{'  (busy)' if oth > 0.2 else ''}", flush=True)

def stats(xs):
    xs = sorted(abs(x) for x in xs)
    n = len(xs)
    return (xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])), xs[-1]
print(f"\n{'strategy':<8} {'transport':<9} {'runs':>5} {'median |err|':>13} {'max |err|':>10}   target: median <= 5 %, max <= 10 %")
groups = {}
for x in res:
    if x[6] is not None:
        groups.setdefault((x[0], x[1]), []).append(x[6])
allerr = []
for (label, tr), errs in groups.items():
    med, mx = stats(errs)
    allerr += errs
    ok = "ok" if med <= 0.05 and mx <= 0.10 else "MISSED"
    print(f"{label:<8} {tr:<9} {len(errs):>5} {100*med:>12.2f}% {100*mx:>9.2f}%   {ok}")
if allerr:
    med, mx = stats(allerr)
    print(f"{'all':<8} {'':<9} {len(allerr):>5} {100*med:>12.2f}% {100*mx:>9.2f}%   "
          f"{'ok' if med <= 0.05 and mx <= 0.10 else 'MISSED'}")
print(f"# waited {waited_total:.0f} s in all for other processes to go quiet")
busy_runs = sum(1 for x in res if x[8] > 0.2)
print(f"# {busy_runs} of {len(res)} runs had other processes using > 0.2 cores")
print(f"# load average after: {load()}")
print(f"# the store {DB} holds every run: build/tools/kvr-report --db {DB}")
PY
