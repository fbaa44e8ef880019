#!/bin/sh
# tests/plan/plan_cli.sh — parlm-plan end to end on the example profile and cluster: a
# table sorted by step time, the JSON result, and a bad file failing with the field named.
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
