#!/usr/bin/env bash
# tests/cli/test_profile_robust.sh BINDIR -- what happens to the store when things go wrong:
#   - SIGKILL mid-profile: the file stays readable, the run shows incomplete, --resume finishes
#     it without re-measuring the stored points;
#   - SIGINT: the profile stops after the current point, exit 130, run incomplete, resumable;
#   - two kvr-profile processes writing one new database at once: both succeed;
#   - a non-SQLite file, a damaged database, a read-only location, a full disk: a clear error,
#     exit 1, and the existing data intact.
# The read-only and full-disk cases use a small tmpfs when mount works (root), else a
# non-root user (runuser) or `ulimit -f`; a case that has no way to run here says "skip".
# KVR_TEST_NO_MOUNT=1 forces those fallbacks.
set -u
. "$(dirname "$0")/lib.sh"
P="$1/kvr-profile"; D="$1/kvr-db"
chmod 755 "$tmp"
mounts=()
cleanup() { for m in "${mounts[@]}"; do umount "$m" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT
samples() { "$D" --db "$1" --json list 2>/dev/null | grep -o "\"id\":${2:-1},[^}]*" | grep -o '"layer_samples":[0-9]*' | cut -d: -f2; }
status() { "$D" --db "$1" --json list 2>/dev/null | grep -o "\"id\":${2:-1},[^}]*" | grep -o '"status":"[a-z]*"' | cut -d'"' -f4; }
wait_samples() { # wait_samples DB N: until run 1 has >= N samples (10 s at most)
  local i n
  for i in $(seq 200); do n=$(samples "$1"); [ "${n:-0}" -ge "$2" ] && return 0; sleep 0.05; done
  return 1
}
json_field() { grep -o "\"$2\":[0-9]*" <<<"$1" | head -1 | cut -d: -f2; }
# slow enough to be interrupted (a few seconds), refinement off so the point set is fixed
SLOW=(--model tiny --chunks 8:64 --max-context 128 --iters 1500:1500 --warmup 0 --refine 0)
TINY=(--model tiny --chunks 8:32 --max-context 64 --iters 2:4 --warmup 1 --refine 0)

# ---------------------------------------------------------------- SIGKILL, then --resume
db="$tmp/kill.db"
"$P" "${SLOW[@]}" --db "$db" -q >/dev/null 2>&1 & pid=$!
if wait_samples "$db" 3; then
  kill -9 "$pid"; wait "$pid" 2>/dev/null
  n_kill=$(samples "$db")
  st=$(status "$db")
  [ "$st" = incomplete ] && ok "sigkill_marks_incomplete" || bad "sigkill_marks_incomplete: status '$st'"
  check sigkill_db_readable 0 ": ok \(schema version [0-9]+, 1 runs, 1 incomplete\)" -- "$D" --db "$db" check
  check sigkill_note 0 "note +writer process [0-9]+ ended without finishing" -- "$D" --db "$db" show 1
  out=$("$P" --db "$db" --resume 1 --json 2>&1); rc=$?
  pts=$(json_field "$out" points); skipped=$(json_field "$out" skipped); measured=$(json_field "$out" measured)
  if [ "$rc" = 0 ] && grep -q '"status":"complete"' <<<"$out" && [ "$skipped" = "$n_kill" ] &&
     [ $((skipped + measured)) = "$pts" ] && [ "$(samples "$db")" = "$pts" ]; then
    ok "sigkill_resume_finishes_without_redoing ($n_kill kept, $measured measured, $pts total)"
  else
    bad "sigkill_resume: rc=$rc n_kill=$n_kill points=$pts skipped=$skipped measured=$measured" "$out"
  fi
  [ "$(status "$db")" = complete ] && ok "sigkill_resumed_complete" || bad "sigkill_resumed_complete"
else
  kill -9 "$pid" 2>/dev/null; bad "sigkill: the profile wrote no samples in 10 s"
fi

# ---------------------------------------------------------------- SIGINT
db="$tmp/int.db"
"$P" "${SLOW[@]}" --db "$db" >"$tmp/int.out" 2>&1 & pid=$!
if wait_samples "$db" 2; then
  kill -INT "$pid"; wait "$pid"; rc=$?
  n_int=$(samples "$db")
  if [ "$rc" = 130 ] && grep -q "interrupted: run 1 is incomplete; finish it with kvr-profile --db .* --resume 1" "$tmp/int.out"; then
    ok "sigint_exit_130"
  else
    bad "sigint_exit_130: rc=$rc" "$(tail -3 "$tmp/int.out")"
  fi
  grep -q "^# run 1 incomplete: " "$tmp/int.out" && ok "sigint_summary" || bad "sigint_summary" "$(tail -3 "$tmp/int.out")"
  check sigint_status 0 "run 1 \(profile\): incomplete" -- "$D" --db "$db" show 1
  check sigint_note 0 "note +interrupted after [0-9]+ points" -- "$D" --db "$db" show 1
  out=$("$P" --db "$db" --resume 1 --json 2>&1); rc=$?
  [ "$rc" = 0 ] && [ "$(json_field "$out" skipped)" = "$n_int" ] && ok "sigint_resume" || bad "sigint_resume: rc=$rc n_int=$n_int" "$out"
else
  kill -9 "$pid" 2>/dev/null; bad "sigint: the profile wrote no samples in 10 s"
fi

# ---------------------------------------------------------------- two writers at once
db="$tmp/two.db"
CONC=(--model tiny --chunks 8:64 --max-context 128 --iters 30:30 --refine 0)
"$P" "${CONC[@]}" --db "$db" -q >"$tmp/w1.out" 2>&1 & p1=$!
"$P" "${CONC[@]}" --db "$db" -q >"$tmp/w2.out" 2>&1 & p2=$!
wait "$p1"; r1=$?; wait "$p2"; r2=$?
n1=$(samples "$db" 1); n2=$(samples "$db" 2)
if [ "$r1" = 0 ] && [ "$r2" = 0 ] && [ "$(status "$db" 1)" = complete ] && [ "$(status "$db" 2)" = complete ] &&
   [ -n "$n1" ] && [ "$n1" -gt 0 ] && [ "$n1" = "$n2" ]; then
  ok "two_writers_both_succeed ($n1 samples each)"
else
  bad "two_writers: rc $r1/$r2, samples $n1/$n2" "$(cat "$tmp/w1.out" "$tmp/w2.out" | tail -4)"
fi
check two_writers_check 0 ": ok \(schema version [0-9]+, 2 runs, 0 incomplete\)" -- "$D" --db "$db" check

# ---------------------------------------------------------------- foreign and damaged files
printf 'a text file that happens to be called kvr.db\n' >"$tmp/text.db"; cp "$tmp/text.db" "$tmp/text.orig"
check not_sqlite 1 "not a kvr database \(not an SQLite file\); left untouched" -- "$P" "${TINY[@]}" --db "$tmp/text.db"
cmp -s "$tmp/text.db" "$tmp/text.orig" && ok "not_sqlite_untouched" || bad "not_sqlite_untouched"
cp "$tmp/two.db" "$tmp/damaged.db"
damage_db "$tmp/damaged.db"
cp "$tmp/damaged.db" "$tmp/damaged.orig"
check damaged 1 "damaged|malformed" -- "$P" "${TINY[@]}" --db "$tmp/damaged.db"
cmp -s "$tmp/damaged.db" "$tmp/damaged.orig" && ok "damaged_untouched" || bad "damaged_untouched"

# ---------------------------------------------------------------- read-only location
mnt_ok=false
if [ -z "${KVR_TEST_NO_MOUNT:-}" ] && [ "$(id -u)" = 0 ] && mkdir -p "$tmp/ro" && mount -t tmpfs -o size=8m tmpfs "$tmp/ro" 2>/dev/null; then
  mounts+=("$tmp/ro"); mnt_ok=true
fi
if $mnt_ok; then
  "$P" "${TINY[@]}" --db "$tmp/ro/a.db" -q >/dev/null
  "$D" --db "$tmp/ro/a.db" export 1 >"$tmp/ro_before.csv"
  mount -o remount,ro "$tmp/ro"
  check ro_existing 1 "not writable \(a read-only file or location\); nothing was changed" -- "$P" "${TINY[@]}" --db "$tmp/ro/a.db"
  check ro_new 1 "cannot create: directory .* is not writable" -- "$P" "${TINY[@]}" --db "$tmp/ro/new.db"
  check ro_list_still_works 0 "^ +1 profile +complete" -- "$D" --db "$tmp/ro/a.db" list
  "$D" --db "$tmp/ro/a.db" export 1 >"$tmp/ro_after.csv"
  cmp -s "$tmp/ro_before.csv" "$tmp/ro_after.csv" && ok "ro_data_intact" || bad "ro_data_intact"
elif [ "$(id -u)" = 0 ] && command -v runuser >/dev/null; then
  mkdir -p "$tmp/ro"; "$P" "${TINY[@]}" --db "$tmp/ro/a.db" -q >/dev/null
  "$D" --db "$tmp/ro/a.db" export 1 >"$tmp/ro_before.csv"
  chmod 555 "$tmp/ro"; chmod 444 "$tmp/ro/a.db"
  check ro_existing 1 "not writable|readonly|read-only" -- runuser -u nobody -- "$P" "${TINY[@]}" --db "$tmp/ro/a.db"
  check ro_new 1 "is not writable" -- runuser -u nobody -- "$P" "${TINY[@]}" --db "$tmp/ro/new.db"
  runuser -u nobody -- "$D" --db "$tmp/ro/a.db" export 1 >"$tmp/ro_after.csv"
  cmp -s "$tmp/ro_before.csv" "$tmp/ro_after.csv" && ok "ro_data_intact" || bad "ro_data_intact"
  chmod 755 "$tmp/ro"
elif [ "$(id -u)" != 0 ]; then
  mkdir -p "$tmp/ro"; "$P" "${TINY[@]}" --db "$tmp/ro/a.db" -q >/dev/null
  "$D" --db "$tmp/ro/a.db" export 1 >"$tmp/ro_before.csv"
  chmod 555 "$tmp/ro"; chmod 444 "$tmp/ro/a.db"
  check ro_existing 1 "not writable|readonly|read-only" -- "$P" "${TINY[@]}" --db "$tmp/ro/a.db"
  check ro_new 1 "is not writable" -- "$P" "${TINY[@]}" --db "$tmp/ro/new.db"
  "$D" --db "$tmp/ro/a.db" export 1 >"$tmp/ro_after.csv"
  cmp -s "$tmp/ro_before.csv" "$tmp/ro_after.csv" && ok "ro_data_intact" || bad "ro_data_intact"
  chmod 755 "$tmp/ro"
else
  echo "skip read-only location: root, and neither mount nor runuser works here"
fi

# ---------------------------------------------------------------- full disk
full_ok=false
if [ -z "${KVR_TEST_NO_MOUNT:-}" ] && [ "$(id -u)" = 0 ] && mkdir -p "$tmp/full" && mount -t tmpfs -o size=4m tmpfs "$tmp/full" 2>/dev/null; then
  mounts+=("$tmp/full"); full_ok=true
fi
db="$tmp/full/a.db"
if $full_ok; then
  "$P" "${TINY[@]}" --db "$db" -q >/dev/null
  "$D" --db "$db" export 1 >"$tmp/full_before.csv"
  dd if=/dev/zero of="$tmp/full/fill" bs=4k 2>/dev/null
  truncate -s -96K "$tmp/full/fill"   # a little room: the next profile fills it mid-run
  check full_disk 1 "disk is full|no space left" -- "$P" --model tiny --chunks 8:64 --max-context 128 --iters 20 --db "$db"
  dd if=/dev/zero of="$tmp/full/fill2" bs=4k 2>/dev/null
  check full_disk_import 1 "disk is full|no space left" -- "$D" --db "$db" import "$tmp/full_before.csv"
  rm -f "$tmp/full/fill" "$tmp/full/fill2"
  check full_disk_check 0 ": ok \(schema version [0-9]+, 2 runs, 1 incomplete\)" -- "$D" --db "$db" check
  "$D" --db "$db" export 1 >"$tmp/full_after.csv"
  cmp -s "$tmp/full_before.csv" "$tmp/full_after.csv" && ok "full_disk_data_intact" || bad "full_disk_data_intact"
else
  db="$tmp/fsize.db"
  "$P" "${TINY[@]}" --db "$db" -q >/dev/null
  "$D" --db "$db" export 1 >"$tmp/full_before.csv"
  kb=$(( $(stat -c %s "$db") / 1024 + 8 ))
  check full_disk_ulimit 1 "disk I/O error|disk is full|File too large" -- bash -c "ulimit -f $kb; trap '' XFSZ; exec '$P' --model tiny --chunks 8:64 --max-context 128 --iters 20 --db '$db'"
  check full_disk_check 0 ": ok \(schema version [0-9]+" -- "$D" --db "$db" check
  "$D" --db "$db" export 1 >"$tmp/full_after.csv"
  cmp -s "$tmp/full_before.csv" "$tmp/full_after.csv" && ok "full_disk_data_intact" || bad "full_disk_data_intact"
fi
summary "profile robustness"
