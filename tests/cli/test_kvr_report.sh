#!/usr/bin/env bash
# tests/cli/test_kvr_report.sh BINDIR -- kvr-report end to end: a tiny profile is fitted, KVR-P
# built, runs measured and recorded; kvr-report draws the page with the real gnuplot; headless
# Chromium renders it to PNG; the PNG (decoded here with zlib, no imaging library) must not be
# blank and must show every plot: as many figure frames as the HTML has <svg> elements, each
# frame with drawn content. Also: usage errors, a missing store, a missing gnuplot, an empty
# store; a store of serving runs (kvr-serve --db) gives the serving section and its plot files.
# Skips (77) only when gnuplot or chromium is not installed (scripts/deps installs both).
set -u
. "$(dirname "$0")/lib.sh"
A100="$(cd "$(dirname "$0")/../.." && pwd)/docs/examples/llama7b_a100.json"
BIN="$1"; F="$BIN/kvr-fit"; R="$BIN/kvr-run"; P="$BIN/kvr-profile"; REP="$BIN/kvr-report"
CHROME=$(command -v chromium || command -v chromium-browser || true)
command -v gnuplot >/dev/null || { echo "skip: gnuplot not installed (scripts/deps: gnuplot-nox)"; exit 77; }
[ -n "$CHROME" ] || { echo "skip: chromium not installed (scripts/deps: chromium)"; exit 77; }
cd "$tmp"
DB="$tmp/r.db"
check help 0 "--output FILE" -- "$REP" --help
check unknown 2 "unknown option '--bogus'" -- "$REP" --bogus
check md_and_no_md 2 "not both" -- "$REP" --md x.md --no-md
check no_store 1 "--db .*none.db" -- "$REP" --db "$tmp/none.db"

# the store: profile (layers + links), fit, KVR-P, measured runs of every strategy
"$P" --model tiny --chunks 8:128 --max-context 512 --iters 2:4 --warmup 1 --time-budget 0.05 --db "$DB" -q >/dev/null 2>&1 &&
"$P" --model tiny --ops none --comm --ranks 2 --bytes 1K:64K --max-context 512 --iters 2:4 --db "$DB" -q >/dev/null 2>&1 &&
"$F" --db "$DB" --run 1 --kvrp --ranks 2 --context 64:512:32 >/dev/null 2>&1 || { echo "FAIL setup"; exit 1; }
for c in 128 256 384 512; do
  for args in "--mode single" "--ranks 2" "--ranks 2 --partition auto" "--ranks 2 --mode tsp"; do
    # shellcheck disable=SC2086
    "$R" --model tiny --context $c $args --db "$DB" >/dev/null 2>&1 || { echo "FAIL setup: kvr-run $args"; exit 1; }
  done
done
"$P" --model tiny --chunks 8:64 --max-context 64 --iters 2 --db "$tmp/e.db" -q --ops pre >/dev/null 2>&1

# issue 17: no output may overwrite the store (-o, --md; by device+inode, so also via a link)
cp "$DB" "$tmp/d.db"; ln -s d.db "$tmp/link.db"
check same_file_output 2 "--output .*d.db is the same file as --db .*d.db" -- "$REP" --db "$tmp/d.db" -o "$tmp/d.db"
check same_file_md 2 "--md .*link.db is the same file as --db .*d.db" -- "$REP" --db "$tmp/d.db" --md "$tmp/link.db"
check same_file_store_intact 0 "^ok$" -- sqlite3 "$tmp/d.db" "pragma integrity_check"
check same_file_store_bytes 0 "" -- cmp "$DB" "$tmp/d.db"
# the renderer: a runaway one is stopped (output cap, timeout), killed with kvr-report, and the
# scratch directory always goes
mkdir "$tmp/scratch"
printf '#!/bin/sh\nexec sleep 3141\n' >"$tmp/slowplot"; chmod +x "$tmp/slowplot"
t0=$(date +%s)
check gnuplot_yes 1 "/usr/bin/yes wrote more than 64 MiB for .*fits.gp \(killed\)" -- env TMPDIR="$tmp/scratch" "$REP" --db "$DB" -o "$tmp/y.html" --gnuplot /usr/bin/yes --gnuplot-timeout 20
check gnuplot_timeout 1 "slowplot did not finish .*fits.gp within 2 s \(killed; --gnuplot-timeout\)" -- env TMPDIR="$tmp/scratch" "$REP" --db "$DB" -o "$tmp/y.html" --gnuplot "$tmp/slowplot" --gnuplot-timeout 2
check gnuplot_timeout_bounded 0 "" -- test $(( $(date +%s) - t0 )) -lt 15
check gnuplot_timeout_child_gone 1 "" -- pgrep -f "sleep 3141"
for sig in TERM KILL; do # TERM: the handler kills the group; KILL: PR_SET_PDEATHSIG does
  [ "$sig" = KILL ] && mkdir "$tmp/scratch_kill"
  TMPDIR="$tmp/scratch$([ "$sig" = KILL ] && echo _kill)" "$REP" --db "$DB" -o "$tmp/y.html" --gnuplot "$tmp/slowplot" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 50); do pgrep -f "sleep 3141" >/dev/null && break; sleep 0.1; done
  kill -"$sig" "$pid"; wait "$pid" 2>/dev/null
  for _ in $(seq 20); do pgrep -f "sleep 3141" >/dev/null || break; sleep 0.1; done
  check "gnuplot_killed_with_parent_$sig" 1 "" -- pgrep -f "sleep 3141"
done
check scratch_removed 0 "^$" -- ls -A "$tmp/scratch"
check missing_gnuplot 1 "cannot run /nonexistent/gnuplot.*gnuplot-nox" -- "$REP" --db "$DB" --gnuplot /nonexistent/gnuplot -o "$tmp/x.html"
check empty_store 0 ": 0 plots" -- "$REP" --db "$tmp/e.db" -o "$tmp/empty.html"
check report 0 "report.html \+ .*report.md: 8 plots; 1 cost model\(s\), 1 partition table\(s\), 1 predictor\(s\), 16 measured run\(s\) \(16 with a prediction" -- "$REP" --db "$DB" -o "$tmp/report.html" --keep-scripts "$tmp/plots"
check report_json 0 '"plots":8,' -- "$REP" --db "$DB" -o "$tmp/report2.html" --no-md --json
check md 0 "^## 2. Predicted vs measured TTFT" -- cat "$tmp/report.md"
check md_accuracy 0 "^\| kvr-p \| threads \| 2 \| 4 \|" -- cat "$tmp/report.md"
check scripts_kept 0 "timeline_tsp.gp" -- ls "$tmp/plots"

# render and look: not blank, every plot drawn
"$CHROME" --headless --no-sandbox --disable-gpu --hide-scrollbars --screenshot="$tmp/report.png" \
  --window-size=1200,9000 "file://$tmp/report.html" >"$tmp/chrome.log" 2>&1
[ -s "$tmp/report.png" ] || { echo "FAIL chromium wrote no PNG:"; tail -5 "$tmp/chrome.log"; exit 1; }
out=$(python3 - "$tmp/report.html" "$tmp/report.png" <<'PY'
import re, struct, sys, zlib
html = open(sys.argv[1], encoding="utf-8").read()
n_svg = len(re.findall(r"<svg\b", html))
ids = re.findall(r'<figure id="plot-([a-z_]+)"', html)
png = sys.argv[2]
try:  # Pillow when present (scripts/deps installs it: fast); else decode the PNG with zlib
    from PIL import Image
    im = Image.open(png).convert("RGB")
    w, h = im.size
    raw = im.tobytes()
    rgb = [raw[y * 3 * w:(y + 1) * 3 * w] for y in range(h)]
    how = "pillow"
except ImportError:
    data = open(png, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        n, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if typ == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), f"PNG depth {depth} colour type {ctype}"
            bpp = 3 if ctype == 2 else 4
        elif typ == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    rgb, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for x in range(bpp, stride): line[x] = (line[x] + line[x - bpp]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif f == 3:
            for x in range(stride):
                line[x] = (line[x] + (((line[x - bpp] if x >= bpp else 0) + prev[x]) >> 1)) & 255
        elif f == 4:
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                b, c = prev[x], (prev[x - bpp] if x >= bpp else 0)
                p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rgb.append(bytes(line) if bpp == 3 else bytes(b for i, b in enumerate(line) if i % 4 != 3))
        prev = line
    how = "zlib"
red = [r[0::3] for r in rgb]
# measured on the red channel: white is 0xff, the figure frames are #dddddd
nonwhite = sum(w - r.count(0xff) for r in red) / (w * h)
frame = [y for y, r in enumerate(red) if r.count(0xdd) > 0.6 * w]
edges = [y for i, y in enumerate(frame) if i == 0 or y != frame[i - 1] + 1]
boxes = len(edges) // 2
def colored(y):  # pixels of a row that are clearly not grey (plot lines, points, bars)
    r = rgb[y]
    return sum(1 for a, b, c in zip(r[0::6], r[1::6], r[2::6]) if abs(a - b) > 40 or abs(b - c) > 40)
# a drawn plot has coloured marks; a frame with only its caption (an empty or broken SVG) has none
empty = sum(1 for k in range(boxes)
            if sum(colored(y) for y in range(edges[2 * k] + 2, edges[2 * k + 1] - 1, 2)) < 300)
print(f"svg={n_svg} figures={len(ids)} png={w}x{h} nonwhite={nonwhite:.4f} boxes={boxes} "
      f"empty_boxes={empty} decoder={how}")
PY
)
echo "# $out"
grep -qE "svg=8 figures=8 " <<<"$out" && { ok html_has_8_plots; } || bad "html_has_8_plots: $out"
frac=$(sed -E 's/.*nonwhite=([0-9.]+).*/\1/' <<<"$out")
python3 -c "import sys; sys.exit(0 if $frac > 0.02 else 1)" && { ok png_not_blank; } || bad "png_not_blank: $out"
grep -qE "boxes=8 empty_boxes=0" <<<"$out" && { ok png_every_plot_drawn; } || bad "png_every_plot_drawn: $out"
[ -n "${KVR_REPORT_KEEP:-}" ] && cp "$tmp/report.png" "$tmp/report.html" "$KVR_REPORT_KEEP"/

# issue 14: recorded ring runs (kvr-run --mode ring) appear beside the simulated ring curves, in
# the accuracy table, and as the measured TTFT in a ring timeline (drawn once ring runs exist)
cp "$DB" "$tmp/ring.db"
for c in 256 512; do
  "$R" --model tiny --context $c --ranks 2 --mode ring --db "$tmp/ring.db" >/dev/null 2>&1 || bad "kvr-run --mode ring --context $c"
done
check ring_report 0 "9 plots; .* 18 measured run\(s\)" -- "$REP" --db "$tmp/ring.db" -o "$tmp/ring.html" --keep-scripts "$tmp/rplots"
check ring_measured_points 0 '\$me5 using 1:2 with points .* title .ring \(measured\).' -- cat "$tmp/rplots/ttft_vs_context.gp"
check ring_simulated_curve 0 "title 'ring, 2 ranks \(simulated\)'" -- cat "$tmp/rplots/ttft_vs_context.gp"
check ring_timeline 0 "title 'measured TTFT \(1 run\)'" -- cat "$tmp/rplots/timeline_ring.gp"
check ring_timeline_merges 0 "title 'merge'" -- cat "$tmp/rplots/timeline_ring.gp"
check ring_md_runs 0 "^\| [0-9]+ \| ring \| " -- cat "$tmp/ring.md"
check ring_md_accuracy 0 "^\| ring \| threads \| 2 \| 2 \|" -- cat "$tmp/ring.md"

# issue 12: serving runs (kvr-serve --simulate --db) give section 5 and its plot files: per trace
# TTFT and TPOT CDFs, queue time vs prompt length, pool occupancy; TTFT vs rate for the family
S="$BIN/kvr-serve"; TG="$BIN/kvr-trace"
for r in 1 3; do
  "$TG" gen --rate $r --count 150 --prompt-tokens lognormal:1024,0.8 --output-tokens uniform:1,64 --seed 5 -o "$tmp/srv_r$r.csv" >/dev/null &&
  "$S" --simulate --trace "$tmp/srv_r$r.csv" --costs "$A100" --pool-gb 2 --policy vllm,chunked --db "$tmp/srv.db" >/dev/null ||
    bad "kvr-serve --db (rate $r)"
done
check serving_report 0 "9 plots; .* 4 serving run\(s\) of 2 trace\(s\)" -- "$REP" --db "$tmp/srv.db" -o "$tmp/srv.html" --keep-scripts "$tmp/splots"
check serving_section 0 "<h2>5. Serving</h2>" -- cat "$tmp/srv.html"
missing=""
for t in 1 2; do for p in ttft_cdf tpot_cdf queue occupancy; do
  f="$tmp/splots/serving_${p}_$t"
  { [ -s "$f.gp" ] && grep -q "<svg" "$f.svg" && grep -q "<path" "$f.svg"; } || missing="$missing ${p}_$t"
done; done
{ [ -s "$tmp/splots/serving_ttft_vs_rate.gp" ] && grep -q "<svg" "$tmp/splots/serving_ttft_vs_rate.svg"; } || missing="$missing ttft_vs_rate"
same serving_plot_files "$missing" ""
check serving_rate_family 0 "'srv_r#.csv, chunked, simulated: p90'" -- cat "$tmp/splots/serving_ttft_vs_rate.gp"
check serving_md 0 "^\| 4 \| simulated \| .*srv_r3.csv \| chunked \| 150 \|" -- cat "$tmp/srv.md"
summary "kvr-report cli"
