# tests/cli/lib.sh -- the harness every tests/cli/test_*.sh sources: pass/fail counters, $tmp (a
# temporary directory removed on exit; a script with more to clean sets its own EXIT trap), and
#   check NAME WANT_RC PATTERN -- command...  the command exits WANT_RC and its stdout+stderr
#                                             match PATTERN (grep -E); a successful command given
#                                             --json must print strict JSON (json_strict.sh)
#   same NAME A B / same_file NAME FILE_A FILE_B   two strings / two files are equal
#   ok NAME / bad NAME [LINE...]             a pass / a failure (each LINE indented under it)
#   damage_db FILE                           64 bytes overwritten in every other 4 KiB page from
#                                            the third on: a damaged SQLite file
#   summary TITLE                            the closing "TITLE: N passed, N failed" line CI
#                                            reads; its status (0 when none failed) is the script's
. "$(dirname "${BASH_SOURCE[0]}")/json_strict.sh"
fails=0; passes=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ok() { echo "ok   $1"; passes=$((passes+1)); }
bad() {
  echo "FAIL $1"; shift
  local l; for l in "$@"; do echo "  $l"; done
  fails=$((fails+1))
}
check() {
  local name=$1 want=$2 pat=$3; shift 4
  local out rc
  local ef jbad; ef=$(mktemp)
  out=$("$@" 2>"$ef"); rc=$?; jbad=$(json_strict "$rc" "$out" "$@") # stdout alone: --json checked
  local e; e=$(cat "$ef"); rm -f "$ef"
  [ -n "$e" ] && out="${out:+$out$'\n'}$e"; [ -n "$jbad" ] && out="${out:+$out$'\n'}$jbad"
  if [ "$rc" != "$want" ] || [ -n "$jbad" ] || ! grep -qE -- "$pat" <<<"$out"; then
    echo "FAIL $name: rc=$rc (want $want), output:"; echo "$out" | head -8; fails=$((fails+1))
  else
    ok "$name"
  fi
}
same() { if [ "$2" == "$3" ]; then ok "$1"; else bad "$1: '$2' != '$3'"; fi; }
same_file() { if cmp -s "$2" "$3"; then ok "$1"; else bad "$1: $2 and $3 differ"; fi; }
damage_db() {
  python3 - "$1" <<'PY'
import os, sys
p = sys.argv[1]; n = os.path.getsize(p) // 4096
with open(p, "r+b") as f:
    for pg in range(2, n, 2):
        f.seek(4096 * pg); f.write(b"\xa5" * 64)
PY
}
summary() { echo "$1: $passes passed, $fails failed"; [ "$fails" -eq 0 ]; }
