#!/usr/bin/env bash
# bench/ab_prefill.sh -- single-rank prefill TTFT of two builds measured side by side in one run:
# bench_prefill from build A and from build B, alternated A B B A ... so that drift of a shared
# machine falls on both. Prints every run, the median of each and the ratio B/A with the spread of
# the per-pair ratios. Asserts nothing. When both take --ttft-only (bench_prefill since the
# benchmark against llama.cpp) each call runs only its warmed-up timed prefills; else the full
# table (sgemm rates and an attention-share prefill besides, the same for both). --cpu compares
# the prefills' process CPU time instead of their TTFT (--ttft-only builds): steadier than the
# wall clock while other jobs share the cores.
#
#   bench/ab_prefill.sh OLD/bench_prefill NEW/bench_prefill [--context 2048] [--rounds 6]
#                       [--threads 1] [--reps 3] [--model PATH|PRESET] [--cpu]
# Example (before/after a change): build the old commit in a worktree, then
#   bench/ab_prefill.sh /tmp/old/build/bench/bench_prefill build/bench/bench_prefill
set -euo pipefail
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
[ "${1:-}" = --help ] && { usage; exit 0; }
[ $# -ge 2 ] || { usage >&2; exit 2; }
A=$1 B=$2; shift 2
C=2048 R=6 T=1 N=3 M=() F=2 W=TTFT
while [ $# -gt 0 ]; do
  case $1 in
    --context) C=$2; shift 2 ;;
    --rounds) R=$2; shift 2 ;;
    --threads) T=$2; shift 2 ;;
    --reps) N=$2; shift 2 ;;
    --model) M=(--model "$2"); shift 2 ;;
    --cpu) F=5 W="process CPU time"; shift ;;
    *) echo "ab_prefill.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
for x in "$A" "$B"; do [ -x "$x" ] || { echo "ab_prefill.sh: '$x' is not an executable" >&2; exit 2; }; done
X=(--sweep-context 0)
"$A" --help | grep -q -- --ttft-only && "$B" --help | grep -q -- --ttft-only && X=(--ttft-only)
[ $F = 2 ] || [ "${X[0]}" = --ttft-only ] ||
  { echo "ab_prefill.sh: --cpu needs two bench_prefill builds that take --ttft-only" >&2; exit 2; }
run() { # prints the median TTFT (or CPU time) in ms of one bench_prefill call at context C
  "$1" "${M[@]}" --contexts "$C" --threads "$T" --reps "$N" "${X[@]}" |
    awk -v c="$C" -v f=$F '$1 == c { print $f }'
}
echo "# ab_prefill: A=$A"
echo "#             B=$B"
echo "# single rank, $C tokens, $T thread(s), each value the median of $N prefills; $R rounds (A B B A ...); ${X[*]}; compared: $W"
printf '%6s %10s %10s %8s\n' round A_ms B_ms B/A
ta=() tb=() rs=()
for ((i = 0; i < R; i++)); do
  if ((i % 2 == 0)); then a=$(run "$A"); b=$(run "$B"); else b=$(run "$B"); a=$(run "$A"); fi
  [ -n "$a" ] && [ -n "$b" ] || { echo "ab_prefill.sh: a run printed no TTFT for context $C" >&2; exit 1; }
  r=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.4f", b / a }')
  printf '%6d %10s %10s %8s\n' "$i" "$a" "$b" "$r"
  ta+=("$a") tb+=("$b") rs+=("$r")
done
med() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ma=$(med "${ta[@]}") mb=$(med "${tb[@]}") mr=$(med "${rs[@]}")
lo=$(printf '%s\n' "${rs[@]}" | sort -g | head -1) hi=$(printf '%s\n' "${rs[@]}" | sort -g | tail -1)
echo "# median A $ma ms, B $mb ms; B/A: median of pair ratios $mr (range $lo..$hi), ratio of medians $(awk -v a="$ma" -v b="$mb" 'BEGIN { printf "%.4f", b / a }')"
