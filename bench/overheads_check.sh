#!/usr/bin/env bash
# bench/overheads_check.sh -- prediction error before and after the schedules' fixed overheads
# (issue 16 item 1) on the tiny preset path of the issue, in one run:
#   kvr-profile --model tiny --grid quick (its overheads step included), kvr-fit --run latest,
#   then N interleaved pairs of kvr-run --model tiny --context C --ranks 2 --mode M (kvr:
#   --partition even): one on the store as fitted ("after": the overhead terms in the model), one
#   on a copy whose overhead rows were deleted before fitting ("before": the same op fits, every
#   overhead 0). Each row's errors are against the same measured run (the "after" one), so only
#   the prediction differs; the "before" run's own TTFT is printed too, as a second sample of
#   the noise. The spread of the measured TTFTs (min..max, and (max - min) / median) is the
#   noise floor this machine had during the run.
# A benchmark, not a test: it prints figures and never fails on them (the machine is shared).
#
#   bench/overheads_check.sh [BINDIR] [--runs N] [--context C] [--mode kvr|tsp|ring|single]
#                            [--keep DIR]
#   BINDIR defaults to build/tools.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/build/tools"
RUNS=5
CTX=1000
MODE=kvr
KEEP=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --context) CTX=$2; shift 2 ;;
    --mode) MODE=$2; shift 2 ;;
    --keep) KEEP=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "overheads_check: unknown option $1" >&2; exit 2 ;;
    *) BIN=$1; shift ;;
  esac
done
for t in kvr-profile kvr-fit kvr-run; do
  [ -x "$BIN/$t" ] || { echo "overheads_check: $BIN/$t not found (build first)" >&2; exit 1; }
done
RANKS=2
[ "$MODE" = single ] && RANKS=1
if [ -n "$KEEP" ]; then mkdir -p "$KEEP"; W=$KEEP; else W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; fi
cd "$W"
rm -f after.db before.db
echo "# overheads_check: tiny preset, context $CTX, mode $MODE, ranks $RANKS, $RUNS runs; $(date -u +%FT%TZ); load $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(date +%s.%N)
"$BIN/kvr-profile" --model tiny --grid quick --db after.db -q > profile.txt
t1=$(date +%s.%N)
echo "# kvr-profile --model tiny --grid quick: $(python3 -c "print(f'{$t1 - $t0:.1f}')") s; its overheads rows:"
sed -n '/^overhead/,/^# predicted/p' profile.txt | grep -v '^# predicted' | sed 's/^/#   /'
cp after.db before.db
python3 -c "
import sqlite3
h = sqlite3.connect('before.db')
h.execute(\"DELETE FROM layer_samples WHERE op LIKE 'ovh_%'\")
h.commit()"
"$BIN/kvr-fit" --db after.db --run latest > fit_after.txt
"$BIN/kvr-fit" --db before.db --run latest > fit_before.txt
grep '^# fixed overheads' fit_after.txt | sed 's/^# /# after:  /'
grep '^# fixed overheads' fit_before.txt | sed 's/^# /# before: /'
RUN=(--model tiny --context "$CTX" --ranks "$RANKS" --mode "$MODE" --json)
[ "$MODE" = kvr ] && RUN+=(--partition even)
[ "$MODE" = single ] && RUN=(--model tiny --context "$CTX" --mode single --json)
: > rows.txt
for i in $(seq 1 "$RUNS"); do
  a=$("$BIN/kvr-run" "${RUN[@]}" --db after.db)
  b=$("$BIN/kvr-run" "${RUN[@]}" --db before.db)
  python3 -c "
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
def num(d, k):
    v = d.get(k)
    return float(v) if v is not None else float('nan')
print(num(a, 'ttft_ms'), num(a, 'predicted_raw_ms'), num(b, 'predicted_raw_ms'), num(b, 'ttft_ms'))
" "$a" "$b" >> rows.txt
done
python3 - "$RUNS" <<'PY'
import statistics as st, sys
rows = [tuple(map(float, l.split())) for l in open('rows.txt')]
print(f"{'run':>4} {'measured':>10} {'pred before':>12} {'err before':>11} {'pred after':>11} {'err after':>10} {'(2nd meas.)':>12}")
print(f"{'':>4} {'(ms)':>10} {'(ms)':>12} {'(%)':>11} {'(ms)':>11} {'(%)':>10} {'(ms)':>12}")
eb, ea = [], []
for i, (m, pa, pb, m2) in enumerate(rows, 1):
    e_b, e_a = (pb / m - 1) * 100, (pa / m - 1) * 100
    eb.append(e_b); ea.append(e_a)
    print(f"{i:>4} {m:>10.3f} {pb:>12.3f} {e_b:>+11.1f} {pa:>11.3f} {e_a:>+10.1f} {m2:>12.3f}")
meas = [r[0] for r in rows] + [r[3] for r in rows]
med = st.median(meas)
print(f"# measured TTFT over all {len(meas)} runs: median {med:.3f} ms, min {min(meas):.3f}, max {max(meas):.3f}, spread (max - min) / median {100 * (max(meas) - min(meas)) / med:.1f} %")
mm = st.median([r[0] for r in rows])
print(f"# error of the median of the {len(rows)} measured runs: before {100 * (rows[0][2] / mm - 1):+.1f} %, after {100 * (rows[0][1] / mm - 1):+.1f} % (predictions are the same every run)")
print(f"# median |error| per run: before {st.median(map(abs, eb)):.1f} %, after {st.median(map(abs, ea)):.1f} %")
PY
