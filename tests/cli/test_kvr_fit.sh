#!/usr/bin/env bash
# tests/cli/test_kvr_fit.sh BINDIR -- kvr-fit and kvr-run --partition auto as a user meets them:
# help and usage errors (exit 2), bad or missing data (exit 1, nothing stored), fitting a tiny
# profile and storing it, KVR-P from the fitted costs and from a stored table, --show, --export,
# then kvr-run: --partition auto from the store and from a predictor file (with --no-db), the
# predict-call cost and predicted TTFT in the output, partition_source/predicted_ttft_ms in JSON,
# every run recorded when a store is in use (and none without one), drift flagged.
set -u
. "$(dirname "$0")/lib.sh"
BIN="$1"; F="$BIN/kvr-fit"; R="$BIN/kvr-run"; P="$BIN/kvr-profile"; D="$BIN/kvr-db"
dump() { python3 - "$1" <<'PY'
import sqlite3, sys, hashlib
h = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
d = hashlib.sha256()
for (t,) in h.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"):
    for row in h.execute(f'SELECT * FROM "{t}"'):
        d.update(repr((t, row)).encode())
print(d.hexdigest())
PY
}
cd "$tmp"
DB="$tmp/k.db"
TINY=(--model tiny --chunks 8:128 --max-context 512 --iters 2:4 --warmup 1 --time-budget 0.05)

# usage errors
check help 0 "--kvrp" -- "$F" --help
check nothing 2 "nothing to do" -- "$F" --db "$DB"
check unknown 2 "unknown option '--bogus'" -- "$F" --bogus
check bad_run 2 "--run: \"x\" is not a whole number" -- "$F" --run x
check bad_ranks 2 "--ranks: 1 is out of range" -- "$F" --kvrp --ranks 1
check bad_context 2 "neither N nor FROM:TO:STEP" -- "$F" --kvrp --context 1:2
check small_context 2 "smaller than ranks x granularity" -- "$F" --kvrp --ranks 4 --context 32:512:32
check link_needs_run 2 "--link-run needs --run" -- "$F" --link-run 2 --show
check table_context 2 "uses the table's contexts" -- "$F" --kvrp --table 1 --context 64:128:64
check no_db 1 "no such|not found|does not exist" -- "$F" --db "$tmp/none.db" --show
"$P" --model tiny --ops pre --chunks 8:16 --max-context 16 --iters 2 --db "$tmp/pre.db" -q >/dev/null 2>&1
check latest_none 1 "--run latest: no profile run with pre, attn and post samples" -- "$F" --db "$tmp/pre.db" --run latest

# profiles: layers (run 1), transfers (run 2), a profile without attention (run 3)
"$P" "${TINY[@]}" --db "$DB" -q >/dev/null 2>&1 || { echo "FAIL setup: kvr-profile"; exit 1; }
"$P" --model tiny --ops none --comm --ranks 2 --bytes 1K:64K --max-context 512 --iters 2:4 --db "$DB" -q >/dev/null 2>&1 \
  || { echo "FAIL setup: kvr-profile --comm"; exit 1; }
"$P" --model tiny --ops pre,post --chunks 8:64 --max-context 128 --iters 2 --db "$DB" -q >/dev/null 2>&1 \
  || { echo "FAIL setup: kvr-profile --ops pre,post"; exit 1; }

# bad data: a clear message, exit 1, the store unchanged
before=$(dump "$DB")
check missing_ops 1 "run 3 has no attn samples \(ops profiled: pre,post\).*nothing was stored" -- "$F" --db "$DB" --run 3
check no_such_run 1 "run 99 not found" -- "$F" --db "$DB" --run 99
check link_run_no_p2p 1 "run 1 has no p2p transfer samples" -- "$F" --db "$DB" --run 1 --link-run 1
check kvrp_nothing_fitted 1 "no cost model" -- "$F" --db "$DB" --kvrp --ranks 2 --context 64:512:64
same store_unchanged "$before" "$(dump "$DB")"
check dry_run 0 "dry run: nothing stored" -- "$F" --db "$DB" --run 1 --dry-run
same dry_run_unchanged "$before" "$(dump "$DB")"

# fit and store
check fit 0 "^attn +attn +[0-9]+ " -- "$F" --db "$DB" --run 1
check fit_latest 0 "run 1 \(layers\) \+ run 2 \(links\)" -- "$F" --db "$DB" --run latest --dry-run
check fit_links 0 "run 1 \(layers\) \+ run 2 \(links\)" -- "$F" --db "$DB" --run 1
check fit_json 0 '"run_id":1,"link_run_id":2,.*"err_band":[0-9.]+.*"fits":\[\{"target":"pre","form":"hinge"' -- "$F" --db "$DB" --run 1 --json
check fit_ideal 0 "no transfer profile: links ideal" -- "$F" --db "$DB" --run 1 --link-run none
check kvrp 0 "^ +2 [a-z0-9-]+ +[0-9]+ +64\.\.512 " -- "$F" --db "$DB" --run 1 --kvrp --ranks 2,3 --context 64:512:32
check kvrp_json 0 '"kvrp":\{"table_id":[0-9]+,.*"predictors":\[\{"ranks":2,"id":[0-9]+,.*"gap_in_max":[0-9.e-]+' -- "$F" --db "$DB" --kvrp --ranks 2 --context 64:512:64 --json
check show 0 "^ +[0-9]+ +1 costs +kvr-fit-costs " -- "$F" --db "$DB" --show
check show_preds 0 "KVR-P predictors" -- "$F" --db "$DB" --show --run 1
check kvrp_table 0 "KVR-P over stored partition table 1" -- "$F" --db "$DB" --kvrp --table 1 --ranks 2
"$BIN/kvr-search" --db "$DB" --run 1 --link-run 2 --ranks 2 --context 64:512:64 >/dev/null 2>&1 || bad "setup: kvr-search --db"
t=$("$D" --db "$DB" tables --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
check kvrp_search_table 0 "KVR-P over stored partition table $t; run 2: " -- "$F" --db "$DB" --kvrp --table "$t" --ranks 2
check kvrp_search_table_json 0 '"kvrp":\{"table_id":'"$t"',.*"predictors":\[\{"ranks":2,"id":null,.*"gap_in_max":[0-9.e-]+' -- "$F" --db "$DB" --kvrp --table "$t" --ranks 2 --json --dry-run
check export 0 "predictor file .*p2.json written" -- "$F" --db "$DB" --export "$tmp/p2.json" --ranks 2
check export_json_file 0 '"schema":[[:space:]]*"kvr-predictor/1"' -- cat "$tmp/p2.json"
check export_has_costs 0 '"kvr_fit":' -- cat "$tmp/p2.json"
check export_missing 1 "no 5-rank predictor" -- "$F" --db "$DB" --export "$tmp/p5.json" --ranks 5
cp "$DB" "$tmp/same.db"; cp "$DB" "$tmp/same.orig"
check export_same_db 2 "--export .*same.db is the same file as --db .*same.db: refusing to overwrite an input" -- "$F" --db "$tmp/same.db" --export "$tmp/same.db" --ranks 2
check export_same_db_bytes 0 "" -- cmp "$tmp/same.db" "$tmp/same.orig"
check export_bad_path 1 "--export /nonexistent/x.json" -- "$F" --db "$DB" --export /nonexistent/x.json --ranks 2
check kvr_db_fits 0 "costs" -- "$D" --db "$DB" fits

# kvr-run: auto partition from the store, and from a file
check auto_db 0 "^# partition auto from predictor [0-9]+ in .*k.db in [0-9.]+ us" -- "$R" --model tiny --context 256 --ranks 2 --partition auto --db "$DB"
check auto_pred 0 "^# predicted TTFT [0-9.]+ ms \(the cost model of predictor" -- "$R" --model tiny --context 256 --ranks 2 --partition auto --db "$DB"
check auto_recorded 0 "^# recorded as measured run [0-9]+ in .*k.db \(partition auto\)" -- "$R" --model tiny --context 256 --ranks 2 --partition auto --db "$DB"
check auto_json 0 '"partition_source":"auto","predicted_ttft_ms":[0-9.]+,.*"predictor_id":[0-9]+,"predict_us":[0-9.]+' -- "$R" --model tiny --context 300 --ranks 2 --partition auto --db "$DB" --json
check even_json 0 '"partition_source":"even","predicted_ttft_ms":[0-9.]+,.*"drift":(true|false)' -- "$R" --model tiny --context 256 --ranks 2 --db "$DB" --json
check explicit_json 0 '"partition_source":"explicit"' -- "$R" --model tiny --context 256 --ranks 2 --partition 200,56 --db "$DB" --json
check tsp_json 0 '"mode":"tsp".*"partition_source":"even","predicted_ttft_ms":[0-9.]+' -- "$R" --model tiny --context 256 --ranks 2 --mode tsp --db "$DB" --json
check single_json 0 '"mode":"single".*"predicted_ttft_ms":[0-9.]+' -- "$R" --model tiny --context 256 --db "$DB" --json
check other_threads 0 '"predicted_ttft_ms":null' -- "$R" --model tiny --context 64 --threads 2 --db "$DB" --json
check auto_file 0 "^# partition auto from predictor file .*p2.json in [0-9.]+ us" -- "$R" --model tiny --context 256 --ranks 2 --partition auto --predictor "$tmp/p2.json" --no-db
check auto_file_json 0 '"partition_source":"auto","predicted_ttft_ms":[0-9.]+,.*"db":null,"measured_run_id":null' -- "$R" --model tiny --context 256 --ranks 2 --partition auto --predictor "$tmp/p2.json" --no-db --json
check file_costs_first 0 "^# predicted TTFT [0-9.]+ ms \(the cost model of predictor file .*p2.json\)" -- "$R" --model tiny --context 256 --ranks 2 --predictor "$tmp/p2.json" --db "$DB"
check auto_no_rank_fit 1 "no 4-rank KVR-P predictor for model tiny.*kvr-fit --db" -- "$R" --model tiny --context 256 --ranks 4 --partition auto --db "$DB"
check auto_no_predictor 2 "--partition auto needs a predictor" -- "$R" --model tiny --context 256 --ranks 2 --partition auto --no-db
check auto_bad_file 1 "--predictor: /nonexistent/p.json" -- "$R" --model tiny --context 256 --ranks 2 --partition auto --predictor /nonexistent/p.json
check db_and_no_db 2 "not both" -- "$R" --model tiny --db "$DB" --no-db
check other_model 1 "no 2-rank KVR-P predictor for model tiny-mqa" -- "$R" --model tiny-mqa --context 256 --ranks 2 --partition auto --db "$DB"
n=$("$D" --db "$DB" measured --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
same recorded_count 10 "$n"
# kvr-run --mode auto (issue 14 item 3): the strategy table kvr-fit stored with the predictors
# (and exported with them) picks strategy, degree <= --ranks and partition
check export_has_table 0 '"strategy_table":' -- cat "$tmp/p2.json"
check mode_auto_file 0 "^# mode auto: [a-z-]+ on [1-3] ranks? \(at most 3 offered\) from predictor file .*p2.json in [0-9.]+ us" -- "$R" --model tiny --context 256 --ranks 3 --mode auto --predictor "$tmp/p2.json" --no-db
check mode_auto_file_json 0 '"auto":\{"strategy":"[a-z-]+","ranks":[12],"max_ranks":2,"table_context":[0-9]+,"in_range":true,"table_ttft_ms":[0-9.]+,"plan_us":[0-9.]+' -- "$R" --model tiny --context 256 --ranks 2 --mode auto --predictor "$tmp/p2.json" --no-db --json
check mode_auto_db 0 "^# mode auto: [a-z-]+ on [1-4] ranks? \(at most 4 offered\) from predictor [0-9]+ in .*k.db" -- "$R" --model tiny --context 256 --ranks 4 --mode auto --db "$DB"
check mode_auto_outside 0 '"in_range":false' -- "$R" --model tiny --context 40 --ranks 2 --mode auto --db "$DB" --json
check mode_auto_one_rank 0 '"mode":"single","ranks":1,.*"auto":\{"strategy":"single","ranks":1,"max_ranks":1' -- "$R" --model tiny --context 256 --ranks 1 --mode auto --db "$DB" --json
python3 - "$tmp/p2.json" "$tmp/old.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); del d["strategy_table"]; json.dump(d, open(sys.argv[2], "w"))
PY
check mode_auto_no_table 1 "--mode auto: predictor file .*old.json has no strategy table \(it was made before kvr-fit built one\): fit again with kvr-fit --kvrp" -- "$R" --model tiny --context 256 --ranks 2 --mode auto --predictor "$tmp/old.json" --no-db
check old_file_partition_auto 0 "^# partition auto from predictor file .*old.json" -- "$R" --model tiny --context 256 --ranks 2 --partition auto --predictor "$tmp/old.json" --no-db
check mode_auto_partition 2 "--mode auto chooses the partition too" -- "$R" --model tiny --context 256 --ranks 2 --mode auto --partition 128,128 --no-db
check mode_auto_no_predictor 2 "--mode auto needs a predictor" -- "$R" --model tiny --context 256 --ranks 2 --mode auto --no-db
check mode_auto_other_model 1 "--mode auto: no KVR-P predictor of 2..2 ranks for model tiny-mqa" -- "$R" --model tiny-mqa --context 256 --ranks 2 --mode auto --db "$DB"
# ./kvr.db is the default store; --no-db and a missing ./kvr.db record nothing
mkdir -p "$tmp/cwd" && cd "$tmp/cwd"
check no_store_no_record 0 '"db":null,"measured_run_id":null' -- "$R" --model tiny --context 64 --json
[ ! -e kvr.db ] && ok no_store_created || bad no_store_created
cp "$DB" kvr.db
check default_store 0 '"db":"kvr.db","measured_run_id":[0-9]+' -- "$R" --model tiny --context 256 --ranks 2 --partition auto --json
check no_db_flag 0 '"db":null,"measured_run_id":null' -- "$R" --model tiny --context 64 --no-db --json
mkdir -p "$tmp/junk" && cd "$tmp/junk" && echo junk > kvr.db
check junk_default_store 0 "not using ./kvr.db .*not recorded" -- "$R" --model tiny --context 64
check junk_store_auto 1 "not a kvr database" -- "$R" --model tiny --context 64 --ranks 2 --partition auto
check junk_named_store 1 "--db kvr.db: .*not a kvr database" -- "$R" --model tiny --context 64 --db kvr.db
cd "$tmp"
# drift: a cost model 100x too fast for this machine flags every run
python3 - "$tmp/p2.json" "$tmp/fast.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for op, f in d["kvr_fit"]["costs"]["fits"].items():
    f["coef"] = [c / 100 for c in f["coef"]]
d["kvr_fit"]["err_band"] = 0.05
for k in ("err_band_e2e", "err_band_spread"):  # a band without its terms: the per-op one
    d["kvr_fit"].pop(k, None)
json.dump(d, open(sys.argv[2], "w"))
PY
check drift 0 "outside the error band of 5.00 % .*: DRIFT" -- "$R" --model tiny --context 256 --ranks 2 --partition auto --predictor "$tmp/fast.json" --no-db
check drift_json 0 '"drift":true' -- "$R" --model tiny --context 256 --ranks 2 --predictor "$tmp/fast.json" --no-db --json
check drift_per_op 0 "outside the error band of 5.00 % \(the per-op held-out error alone: the profile has no end-to-end check" -- "$R" --model tiny --context 256 --ranks 2 --predictor "$tmp/fast.json" --no-db
# the error band (issue 16 item 3): its two terms, from the profile's end-to-end check
python3 - "$tmp/fast.json" "$tmp/fast2.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["kvr_fit"]["err_band_e2e"], d["kvr_fit"]["err_band_spread"] = 0.03, 0.02
json.dump(d, open(sys.argv[2], "w"))
PY
check drift_terms 0 "outside the error band of 5.00 % \(held-out end-to-end error 3.00 % \+ run-to-run spread 2.00 %, of the profile's end-to-end check\): DRIFT" -- "$R" --model tiny --context 256 --ranks 2 --predictor "$tmp/fast2.json" --no-db
check drift_terms_json 0 '"band_heldout":0.030000,"band_spread":0.020000,"drift":true' -- "$R" --model tiny --context 256 --ranks 2 --predictor "$tmp/fast2.json" --no-db --json
check fit_band_e2e 0 "^# TTFT error band \(drift threshold\): [0-9.]+ % = held-out end-to-end error [0-9.]+ % \+ run-to-run spread [0-9.]+ % \(the profile's end-to-end check: 4 prompt\(s\)" -- "$F" --db "$DB" --run 1 --dry-run
check fit_scale_none 0 "^# end-to-end scale .*: none \(one prompt length per schedule: nothing to hold out\)" -- "$F" --db "$DB" --run 1 --dry-run
check fit_scale_json 0 '"scale":\{"single":\{"scale":1,"kept":false,"raw_err":null,"heldout_err":null,"spread":null,"upto":0\},"kvr":' -- "$F" --db "$DB" --run 1 --dry-run --json
check fit_band_json 0 '"band":\{"op":[0-9.e-]+,"n_e2e":4,"e2e":[0-9.e-]+,"spread":[0-9.e-]+,"scale":\{' -- "$F" --db "$DB" --run 1 --dry-run --json
check profile_e2e 0 "ok" -- bash -c "'$P' ${TINY[*]} --db e2e.db --json -q | python3 -c '
import json, sys
e = {x[\"schedule\"]: x for x in json.load(sys.stdin)[\"e2e\"]}
assert sorted(e) == [\"kvr\", \"ring\", \"single\", \"tsp\"], e
assert e[\"single\"][\"tokens\"] == 64 and e[\"single\"][\"ranks\"] == 1 and e[\"kvr\"][\"ranks\"] == 2
for x in e.values():
    assert x[\"runs\"] == 15 and 0 < x[\"min_us\"] <= x[\"p10_us\"] <= x[\"median_us\"] <= x[\"p90_us\"] <= x[\"max_us\"]
    assert abs(x[\"spread\"] - (x[\"p90_us\"] - x[\"p10_us\"]) / x[\"median_us\"]) < 1e-3
print(\"ok\")'"
# a run inside the band is not flagged: the check's repeats planted 100x apart either side
# (spread 99.99: a band no loaded machine leaves)
cp "$DB" band_wide.db
python3 -c "
import sqlite3
h = sqlite3.connect('band_wide.db')
n = h.execute(\"UPDATE layer_samples SET min_us = median_us / 100, p10_us = median_us / 100, max_us = median_us * 100, p90_us = median_us * 100 WHERE op LIKE 'e2e_%' AND run_id = 1\").rowcount
assert n == 4, n
h.commit()" || bad "setup: band_wide.db"
"$F" --db band_wide.db --run 1 >/dev/null 2>&1 || bad "setup: kvr-fit band_wide.db"
check band_inside 0 "within the error band of [0-9.]+ % \(held-out end-to-end error [0-9.]+ % \+ run-to-run spread 9999.00 %, of the profile's end-to-end check\)$" -- "$R" --model tiny --context 64 --db band_wide.db
check band_inside_json 0 "ok" -- bash -c "'$R' --model tiny --context 64 --ranks 2 --partition even --db band_wide.db --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d[\"drift\"] is False and abs(d[\"band_spread\"] - 99.99) < 1e-5, d
assert abs(d[\"err_band\"] - d[\"band_heldout\"] - d[\"band_spread\"]) < 1e-5
print(\"ok\")'"
# calibration (issue 16): kvr-run's recorded runs -> kvr-fit --calibrate -> calibrated predictions
check min_runs_alone 2 "--min-runs needs --calibrate" -- "$F" --db "$DB" --min-runs 4
check min_runs_small 2 "--min-runs: " -- "$F" --db "$DB" --calibrate --min-runs 2
check online_bad 2 "--online-refit: '1.5' is not a weight in \(0, 1\]" -- "$R" --model tiny --context 64 --online-refit 1.5
cp "$DB" cal.db  # its fits and profile, none of its recorded runs
python3 -c "import sqlite3; h = sqlite3.connect('cal.db'); h.execute('DELETE FROM measured_runs'); h.commit()"
check calibrate_none 0 "# no group of recorded runs has 5 runs with a prediction" -- "$F" --db cal.db --calibrate
for c in 128 192 256 320 384 256; do
  "$R" --model tiny --context $c --ranks 2 --partition even --db cal.db >/dev/null 2>&1 || bad "calibration run $c"
done
check calibrate_dry 0 "^ +0 kvr-e +2 +1 threads +[0-9]+ +6 " -- "$F" --db cal.db --calibrate --dry-run
check calibrate_dry_note 0 "\\(dry run: nothing stored\\)" -- "$F" --db cal.db --calibrate --dry-run
check calibrate 0 "^ +[0-9]+ kvr-e +2 +1 threads +[0-9]+ +6 " -- "$F" --db cal.db --calibrate
check calibrate_json 0 "ok" -- bash -c "'$F' --db cal.db --calibrate --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
c = [x for x in d[\"calibrations\"] if x[\"strategy\"] == \"kvr-e\"][0]
assert c[\"n_runs\"] == 6 and c[\"a\"] >= 0 and c[\"b_ms\"] >= 0 and c[\"repeat_sets\"] == 1
assert abs(c[\"band\"] - c[\"cv_q90_err\"] - c[\"spread\"]) <= 1e-4 * c[\"band\"] + 1e-9
print(\"ok\")'"
check calibrated_run 0 "raw \(cost model fit [0-9]+ \(profile run [0-9]+\)\) -> [0-9.]+ ms calibrated \(calibration [0-9]+: " -- "$R" --model tiny --context 300 --ranks 2 --partition even --db cal.db
check calibrated_json 0 "ok" -- bash -c "'$R' --model tiny --context 300 --ranks 2 --partition even --db cal.db --repeat 3 --online-refit 0.5 --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
c = d[\"calibration\"]
assert abs(d[\"predicted_ttft_ms\"] - (c[\"a\"] * d[\"predicted_raw_ms\"] + c[\"b_ms\"])) < 0.01 + 1e-3 * d[\"predicted_ttft_ms\"]
o = d[\"online\"]
assert o[\"alpha\"] == 0.5 and o[\"factor\"] > 0 and o[\"last_predicted_ms\"] > 0
print(\"ok\")'"
check calibration_recorded 0 "ok" -- python3 -c "
import sqlite3
h = sqlite3.connect('cal.db')
r = h.execute('SELECT predicted_ttft_ms, calibrated_ttft_ms, calibration_id FROM measured_runs ORDER BY id DESC LIMIT 1').fetchone()
assert r[0] > 0 and r[1] > 0 and r[2] > 0, r
print('ok')"
check uncalibrated_strategy 0 "^# predicted TTFT [0-9.]+ ms \(cost model fit [0-9]+ \(profile run [0-9]+\)\), measured" -- "$R" --model tiny --context 300 --ranks 2 --mode tsp --db cal.db
# fixed overheads (issue 16 item 1): kvr-profile's overheads step (on by default) stored 8 rows
# (4 schedules x 2 depths) in run 1; kvr-fit fits them; kvr-run's raw prediction includes them
check fit_overheads 0 "^# fixed overheads from 8 overhead samples \(per run \+ per layer step, us\): single [0-9.]+ \+ [0-9.]+" -- "$F" --db "$DB" --run 1 --dry-run
check fit_overheads_json 0 '"overheads":\{"single":\{"run_us":[0-9.e+-]+,"layer_us":[0-9.e+-]+,"clamped":(true|false)\},"kvr":.*"overhead_samples":8' -- "$F" --db "$DB" --run 1 --dry-run --json
"$P" --model tiny --chunks 8:32 --max-context 64 --iters 2 --no-overheads --db noovh.db -q >/dev/null 2>&1 || bad "setup: kvr-profile --no-overheads"
check fit_no_overheads 0 "^# fixed overheads: none" -- "$F" --db noovh.db --run 1 --dry-run
check fit_band_no_e2e 0 "chunks >= [0-9]+ \(the run has no end-to-end check" -- "$F" --db noovh.db --run 1 --dry-run
cp "$DB" ovh_a.db; cp "$DB" ovh_b.db
# the kvr schedule's excess set to 0 (a) and to 5 ms per layer step (b: 4 layers 20 ms, 1 layer 5 ms)
set_ovh() {
  python3 -c "
import sqlite3, sys
h = sqlite3.connect(sys.argv[1])
n = h.execute(\"UPDATE layer_samples SET min_us = c * ?1, p10_us = c * ?1, median_us = c * ?1, p90_us = c * ?1, max_us = c * ?1, mean_us = c * ?1 WHERE op = 'ovh_kvr' AND run_id = 1\", (float(sys.argv[2]),)).rowcount
assert n == 2, n
h.commit()" "$1" "$2" || bad "setup: $1"
}
set_ovh ovh_a.db 0
set_ovh ovh_b.db 5000
for d in ovh_a.db ovh_b.db; do "$F" --db $d --run 1 >/dev/null 2>&1 || bad "setup: kvr-fit $d"; done
check fit_overheads_planted 0 "kvr 0.0 \+ 5000.00" -- "$F" --db ovh_b.db --run 1 --dry-run
check fit_overheads_zero 0 "kvr 0.0 \+ 0.00;" -- "$F" --db ovh_a.db --run 1 --dry-run
pa=$("$R" --model tiny --context 256 --ranks 2 --partition even --db ovh_a.db --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["predicted_raw_ms"])')
pb=$("$R" --model tiny --context 256 --ranks 2 --partition even --db ovh_b.db --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["predicted_raw_ms"])')
check run_prediction_overheads 0 "ok" -- python3 -c "
a, b = float('$pa'), float('$pb')
assert b - a >= 20 - 1e-6 and b - a <= 25 + 1e-6, (a, b)
print('ok')"
summary "kvr-fit cli"
