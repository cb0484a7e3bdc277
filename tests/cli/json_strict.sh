# tests/cli/json_strict.sh -- sourced by the CLI tests (issue 17): every --json output they
# produce must be strict JSON in strict UTF-8. json_strict RC STDOUT ARGS... prints why the
# stdout of a successful command given --json is not (nothing when it is, when the command
# failed, or when it was not given --json). One JSON document, or JSON Lines (one per line);
# NaN/Infinity, invalid UTF-8 and trailing text are refused.
json_strict() {
  local rc=$1 out=$2; shift 2
  [ "$rc" = 0 ] || return 0
  local a has=
  for a in "$@"; do [ "$a" = --json ] && has=1; done
  [ -n "$has" ] || return 0
  python3 -c '
import json, sys
def bad_const(c):
    raise ValueError("not JSON: " + c)
try:
    text = sys.stdin.buffer.read().decode("utf-8", errors="strict").strip()
    if not text:
        raise ValueError("empty output")
    try:
        json.loads(text, parse_constant=bad_const)
    except ValueError:
        for line in text.splitlines():
            if line.strip():
                json.loads(line, parse_constant=bad_const)
except (ValueError, UnicodeDecodeError) as e:
    print("--json output is not strict JSON / UTF-8: %s" % e)
' <<<"$out"
}
