#!/usr/bin/env bash
# tests/cli/test_kvr_trace.sh BINDIR -- kvr-trace as a user meets it: help and usage errors
# (exit 2), gen (reproducible with a seed, to a file or stdout, resampled lengths), stats (table
# and strict JSON), import of Azure and BurstGPT layouts (fixtures written here) with filters,
# limits and time scaling, bad rows with file:line:column (exit 1), outputs that never overwrite
# an input and never leave half a file.
set -u
. "$(dirname "$0")/lib.sh"
T="$1/kvr-trace"

check help 0 "kvr-trace import --format azure\|burstgpt FILE" -- "$T" --help
check no_command 2 "no command \(gen, import, stats\)" -- "$T"
check unknown_command 2 "unknown command 'frob'" -- "$T" frob
check unknown_option 2 "unknown option '--bogus'" -- "$T" gen --bogus
check missing_value 2 "option --rate needs a value" -- "$T" gen --rate
check gen_no_rate 2 "gen: --rate is required" -- "$T" gen --count 5
check gen_no_limit 2 "gen: give --count N or --duration S" -- "$T" gen --rate 1
check gen_bad_rate 2 "--rate: 0 is not in \(0, 1e\+09\]" -- "$T" gen --rate 0 --count 5
check gen_bad_rate_text 2 "--rate: 'fast' is not a number" -- "$T" gen --rate fast --count 5
check gen_bad_count 2 "--count: " -- "$T" gen --rate 1 --count 0
check gen_gamma_no_cv 2 "--arrivals gamma needs --cv" -- "$T" gen --rate 1 --count 5 --arrivals gamma
check gen_cv_poisson 2 "--cv applies to --arrivals gamma" -- "$T" gen --rate 1 --count 5 --cv 2
check gen_bad_cv 2 "--cv: 11 is not in \(0, 10\]" -- "$T" gen --rate 1 --count 5 --arrivals gamma --cv 11
check gen_bad_arrivals 2 "unknown arrival process 'weibull' \(poisson, gamma\)" -- "$T" gen --rate 1 --count 5 --arrivals weibull
check gen_bad_prompt 2 "--prompt-tokens: length 'uniform:9,3': uniform:A,B takes whole numbers" -- "$T" gen --rate 1 --count 5 --prompt-tokens uniform:9,3
check gen_bad_output 2 "--output-tokens: length 'normal:5,1': not N" -- "$T" gen --rate 1 --count 5 --output-tokens normal:5,1
check gen_extra_arg 2 "gen: unexpected argument 'x.csv'" -- "$T" gen --rate 1 --count 5 x.csv
check option_other_cmd 2 "--format applies to import" -- "$T" gen --rate 1 --count 5 --format azure
check json_other_cmd 2 "--json applies to stats" -- "$T" gen --rate 1 --count 5 --json
check stats_output 2 "--output applies to gen and import" -- "$T" stats x.csv -o y.csv
check stats_no_file 2 "stats: needs one FILE" -- "$T" stats
check import_no_format 2 "import: --format azure\|burstgpt is required" -- "$T" import x.csv
check import_bad_format 2 "unknown trace format 'vllm' \(azure, burstgpt\)" -- "$T" import --format vllm x.csv
check import_model_azure 2 "--model and --log-type apply to --format burstgpt" -- "$T" import --format azure --model GPT-4 x.csv
check import_bad_scale 2 "--time-scale: -1 is not in" -- "$T" import --format azure --time-scale -1 x.csv

# gen: a file, its provenance, reproducibility, stdout
check gen_file 0 "^# generated 500 requests over [0-9.]+ s, [0-9.]+ requests/s.* -> $tmp/a.csv" -- "$T" gen --rate 5 --count 500 --prompt-tokens lognormal:1024,0.8 --output-tokens uniform:16,256 --seed 3 -o "$tmp/a.csv"
check gen_header 0 "^arrival_s,prompt_tokens,output_tokens$" -- grep -v '^#' "$tmp/a.csv"
check gen_provenance 0 "^# kvr-trace gen --arrivals poisson --rate 5 --prompt-tokens lognormal:1024,0.8 --output-tokens uniform:16,256 --count 500 --seed 3$" -- head -1 "$tmp/a.csv"
same rows_count 501 "$(grep -vc '^#' "$tmp/a.csv")"
"$T" gen --rate 5 --count 500 --prompt-tokens lognormal:1024,0.8 --output-tokens uniform:16,256 --seed 3 -o "$tmp/b.csv" >/dev/null
same_file gen_reproducible "$tmp/a.csv" "$tmp/b.csv"
"$T" gen --rate 5 --count 500 --prompt-tokens lognormal:1024,0.8 --output-tokens uniform:16,256 --seed 4 -o "$tmp/c.csv" >/dev/null
if cmp -s "$tmp/a.csv" "$tmp/c.csv"; then bad "gen_seed_changes: seeds 3 and 4 gave the same trace"; else ok gen_seed_changes; fi
"$T" gen --rate 5 --count 500 --prompt-tokens lognormal:1024,0.8 --output-tokens uniform:16,256 --seed 3 >"$tmp/d.csv" 2>"$tmp/d.err"
same_file gen_stdout "$tmp/a.csv" "$tmp/d.csv"
check gen_stdout_message 0 "-> \(stdout\)" -- cat "$tmp/d.err"
check gen_duration 0 "over [0-9.]+ s" -- "$T" gen --rate 20 --duration 10 --arrivals gamma --cv 3 -o "$tmp/g.csv"
check gen_duration_bound 0 "^ok$" -- python3 -c "
import csv,sys
rows=[r for r in csv.DictReader(l for l in open('$tmp/g.csv') if not l.startswith('#'))]
t=[float(r['arrival_s']) for r in rows]
print('ok' if t[0]==0 and all(a<=b for a,b in zip(t,t[1:])) and t[-1]<10 and 100<len(t)<400 else 'bad %d %g' % (len(t), t[-1]))"

# stats: table and JSON; mean rate near the asked one
check stats_table 0 "^requests +500$" -- "$T" stats "$tmp/a.csv"
check stats_rows 0 "^prompt +[0-9.]+ +[0-9]+ " -- "$T" stats "$tmp/a.csv"
check stats_json 0 '^\{"file":".*a.csv","n_requests":500,"n_with_prompt":0,"first_s":0,.*"prompt_tokens":\{"mean":[0-9.]+,"min":' -- "$T" stats --json "$tmp/a.csv"
check stats_rate 0 "^ok$" -- python3 -c "
import json,subprocess
s=json.loads(subprocess.check_output(['$T','stats','--json','$tmp/a.csv']))
print('ok' if 4<s['rate_per_s']<6 and 0.8<s['gap_cv']<1.2 and 16<=s['output_tokens']['min'] and s['output_tokens']['max']<=256 else s)"
check stats_stdin 0 "^requests +500$" -- bash -c "'$T' stats - <'$tmp/a.csv'"
check stats_missing 1 "stats: $tmp/none.csv: No such file" -- "$T" stats "$tmp/none.csv"
check stats_dir 1 "is a directory" -- "$T" stats "$tmp"

# resampled lengths: from a trace with three (prompt, output) pairs, drawn together
printf 'arrival_s,prompt_tokens,output_tokens,prompt\n0,10,1,"a, b"\n1,20,2,\n2,30,3,"x ""y"""\n' >"$tmp/src.csv"
check gen_resample 0 "generated 300 requests" -- "$T" gen --rate 10 --count 300 --prompt-tokens file:"$tmp/src.csv" --output-tokens file:"$tmp/src.csv" -o "$tmp/r.csv"
check gen_resample_pairs 0 "^ok$" -- python3 -c "
import csv
rows=[r for r in csv.DictReader(l for l in open('$tmp/r.csv') if not l.startswith('#'))]
print('ok' if len(rows)==300 and all(int(r['prompt_tokens'])==10*int(r['output_tokens']) for r in rows) and len({r['output_tokens'] for r in rows})==3 else 'bad')"
check gen_resample_missing 1 "--prompt-tokens: $tmp/none.csv: No such file" -- "$T" gen --rate 1 --count 5 --prompt-tokens file:"$tmp/none.csv"
check gen_resample_is_output 2 "--output $tmp/src.csv is the same file as --prompt-tokens file: $tmp/src.csv" -- "$T" gen --rate 1 --count 5 --prompt-tokens file:"$tmp/src.csv" -o "$tmp/src.csv"
check gen_unwritable 1 "cannot write /nonexistent-kvr/t.csv" -- "$T" gen --rate 1 --count 5 -o /nonexistent-kvr/t.csv

# import: Azure layout (7-digit fractions), one failed row, one with no prompt tokens
cat >"$tmp/azure.csv" <<'CSV'
TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,4808,10
2023-11-16 18:15:46.7325900,3180,8
2023-11-16 18:15:47.0000000,110,0
2023-11-16 18:16:00.1000000,0,5
2023-11-16 18:15:50.6805901,7433,14
CSV
check import_azure 0 "5 rows read: 3 kept, 0 filtered out, 1 failed \(0 output tokens; skipped\), 1 with 0 prompt tokens skipped, 0 out of time order" -- "$T" import --format azure "$tmp/azure.csv" -o "$tmp/az.csv"
check import_azure_rows 0 "^0,4808,10 0.052,3180,8 4.0000001,7433,14 $" -- bash -c "grep -v '^#' '$tmp/az.csv' | tail -n +2 | tr '\n' ' '"
check import_azure_provenance 0 "^# kvr-trace import --format azure .*azure.csv --time-scale 1$" -- head -1 "$tmp/az.csv"
check import_azure_keep 0 "4 kept, .*1 failed \(0 output tokens; kept as 1 token\)" -- "$T" import --format azure --keep-failed "$tmp/azure.csv" -o "$tmp/az2.csv"
check import_azure_scale 0 "^0,4808,10 0.026,3180,8 $" -- bash -c "'$T' import --format azure --limit 2 --time-scale 0.5 '$tmp/azure.csv' 2>/dev/null | grep -v '^#' | tail -n +2 | tr '\n' ' '"
check import_roundtrip_stats 0 "^requests +3$" -- "$T" stats "$tmp/az.csv"
printf 'TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,4808,10\n2023-11-16 18:15:46.7,12x,5\n' >"$tmp/az_bad.csv"
check import_azure_bad_row 1 "kvr-trace: import: $tmp/az_bad.csv:3: column 'ContextTokens': '12x' is not a whole number" -- "$T" import --format azure "$tmp/az_bad.csv" -o "$tmp/out.csv"
printf 'TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,4808,10\n\n2023-02-30 18:15:46.7,12,5\n' >"$tmp/az_bad2.csv"
check import_azure_bad_date 1 "az_bad2.csv:4: column 'TIMESTAMP': '2023-02-30 18:15:46.7' has a day that is not in its month" -- "$T" import --format azure "$tmp/az_bad2.csv" -o "$tmp/out.csv"
check import_bad_no_output 0 "^gone$" -- bash -c "[ -e '$tmp/out.csv' ] && echo there || echo gone"
printf 'Timestamp,Request tokens,Response tokens\n1,2,3\n' >"$tmp/wrong_layout.csv"
check import_wrong_layout 1 "wrong_layout.csv:1: no column 'TIMESTAMP' in the header \(found 'Timestamp', 'Request tokens', 'Response tokens'\)|wrong_layout.csv:1: no column 'ContextTokens'" -- "$T" import --format azure "$tmp/wrong_layout.csv"
check import_same_file 2 "--output $tmp/azure.csv is the same file as import FILE $tmp/azure.csv: refusing to overwrite an input" -- "$T" import --format azure "$tmp/azure.csv" -o "$tmp/azure.csv"
check import_missing 1 "import: $tmp/nope.csv: No such file" -- "$T" import --format azure "$tmp/nope.csv"

# import: BurstGPT layout, filters, failed responses, an out-of-order row
cat >"$tmp/burst.csv" <<'CSV'
Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type
5,ChatGPT,472,18,490,Conversation log
45,ChatGPT,1087,0,1087,Conversation log
118,GPT-4,417,276,693,Conversation log
130,ChatGPT,1360,64,1424,API log
120.5,GPT-4,100,50,150,API log
CSV
check import_burst 0 "5 rows read: 4 kept, 0 filtered out, 1 failed .* 1 out of time order \(sorted\)" -- "$T" import --format burstgpt "$tmp/burst.csv" -o "$tmp/b1.csv"
check import_burst_rows 0 "^0,472,18 113,417,276 115.5,100,50 125,1360,64 $" -- bash -c "grep -v '^#' '$tmp/b1.csv' | tail -n +2 | tr '\n' ' '"
check import_burst_model 0 "2 kept, 3 filtered out" -- "$T" import --format burstgpt --model GPT-4 "$tmp/burst.csv" -o "$tmp/b2.csv"
check import_burst_logtype 0 "2 kept, 2 filtered out, 1 failed" -- "$T" import --format burstgpt --log-type "conversation log" "$tmp/burst.csv" -o "$tmp/b3.csv"
check import_burst_none 1 "no requests kept \(5 rows read: 0 kept, 5 filtered out" -- "$T" import --format burstgpt --model Llama "$tmp/burst.csv" -o "$tmp/b4.csv"
printf 'Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,ChatGPT,472,18,490,Conversation log\n6,ChatGPT,472,-3,490,Conversation log\n' >"$tmp/burst_bad.csv"
check import_burst_bad_row 1 "burst_bad.csv:3: column 'Response tokens': -3 is out of range" -- "$T" import --format burstgpt "$tmp/burst_bad.csv"

# kvr trace files with bad rows: file:line: column, exit 1
printf 'arrival_s,prompt_tokens,output_tokens\n0,1,1\n2,1,1\n1,1,1\n' >"$tmp/unsorted.csv"
check stats_unsorted 1 "unsorted.csv:4: column 'arrival_s': 1 is earlier than the previous request's 2 \(rows must be in arrival order\)" -- "$T" stats "$tmp/unsorted.csv"
printf 'arrival_s,prompt_tokens,output_tokens,prompt\n0,1,1,"never closed\n\n' >"$tmp/quote.csv"
check stats_quote 1 "quote.csv:2: field 4: the quote opened on line 2 is never closed" -- "$T" stats "$tmp/quote.csv"
printf 'arrival_s,prompt_tokens,output_tokens,prompt\n0,1,1,"\xff"\n' >"$tmp/utf8.csv"
check stats_utf8 1 "utf8.csv:2: column 'prompt': not valid UTF-8" -- "$T" stats "$tmp/utf8.csv"
check no_temp_left 0 "^$" -- bash -c "ls -A '$tmp' | grep '^\\.' || true"

summary cli_kvr_trace
