#!/bin/sh
# tests/plan/plan_cli.sh — parlm-plan end to end on the example profile and cluster: a
# table sorted by step time, the JSON result, Llama models (a table, one layout's ops, a
# broken tensor-parallel rule), and a bad file failing with the field named.
set -eu
bin=${PARLM_BUILDDIR:-.}/apps
ex=$(cd "$(dirname "$0")/../../apps/plan" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin/parlm-plan" --profile "$ex/example-profile.json" --cluster "$ex/example-cluster.json" \
    --model d12 --global-batch 64 --seq 1024 --ranks 16 --top 1000 --json "$work/out.json" \
    > "$work/out.txt"
# the step_ms column (9th) of the table rows is non-decreasing
awk '/^ *[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ (gpipe|1f1b)/ { n++; if ($9 + 0 < prev) bad = 1; prev = $9 + 0 }
     END { exit (n < 10 || bad) }' "$work/out.txt" || { cat "$work/out.txt"; exit 1; }
grep -q "^excluded:" "$work/out.txt"
grep -q '"bottleneck"' "$work/out.json"
# a GPT-2 plan's file lists GPT-2's ops only (as before Llama)
! grep -q '"rmsnorm"' "$work/out.json" || { echo "GPT-2 plan lists Llama ops"; exit 1; }
# Llama 7B on 16 ranks (the example profile has no Llama rates: the planner's stand-ins):
# sorted, and replicas of the whole model (16 bytes a parameter) excluded for memory
"$bin/parlm-plan" --profile "$ex/example-profile.json" --cluster "$ex/example-cluster.json" \
    --model llama-7b --global-batch 64 --seq 2048 --ranks 16 --top 1000 --json "$work/7b.json" \
    > "$work/7b.txt"
awk '/^ *[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ (gpipe|1f1b)/ { n++; if ($9 + 0 < prev) bad = 1; prev = $9 + 0 }
     END { exit (n < 10 || bad) }' "$work/7b.txt" || { cat "$work/7b.txt"; exit 1; }
grep -q "^llama-7b, B 64, T 2048, 16 ranks" "$work/7b.txt" || { cat "$work/7b.txt"; exit 1; }
grep -q "dp 16 tp 1 pp 1 .*GiB a rank" "$work/7b.txt" || { cat "$work/7b.txt"; exit 1; }
grep -q '"arch": "llama"' "$work/7b.json" && grep -q '"swiglu"' "$work/7b.json"
# one layout term by term: Llama's ops, not GPT-2's; tp 8 > TinyLlama's 4 KV heads: refused
"$bin/parlm-plan" --profile "$ex/example-profile.json" --cluster "$ex/example-cluster.json" \
    --model tinyllama-1.1b --global-batch 16 --seq 2048 --layout 4,4,1 > "$work/tl.txt"
grep -q "^    rmsnorm " "$work/tl.txt" && grep -q "^    rope " "$work/tl.txt" &&
    grep -q "^    swiglu " "$work/tl.txt" && ! grep -q "^    gelu " "$work/tl.txt" ||
    { cat "$work/tl.txt"; exit 1; }
if "$bin/parlm-plan" --profile "$ex/example-profile.json" --cluster "$ex/example-cluster.json" \
    --model tinyllama-1.1b --global-batch 16 --seq 2048 --layout 2,8,1 > "$work/err.txt" 2>&1; then
    echo "tp 8 over 4 KV heads was accepted"; exit 1
fi
grep -q "4 KV heads" "$work/err.txt" || { cat "$work/err.txt"; exit 1; }
# a negative bandwidth: exit != 0 and the message names the field
sed 's/"stream_bandwidth": 200e9/"stream_bandwidth": -1/' "$ex/example-profile.json" > "$work/bad.json"
if "$bin/parlm-plan" --profile "$work/bad.json" --cluster "$ex/example-cluster.json" \
    --ranks 16 > "$work/err.txt" 2>&1; then
    echo "a bad profile was accepted"; exit 1
fi
grep -q "stream_bandwidth" "$work/err.txt" || { cat "$work/err.txt"; exit 1; }
# no profile: refused (no library function measures the peak to derive one)
if "$bin/parlm-plan" --cluster "$ex/example-cluster.json" > /dev/null 2>&1; then exit 1; fi
echo ok
