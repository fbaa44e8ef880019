#!/bin/sh
# tests/plan/calibrate_run.sh — `parlm-bench calibrate` end to end at --quick: its profile
# loads in parlm-plan and plans. MPI builds: 2 ranks measure the shm link (fit printed),
# then one rank copies it with --links; otherwise one rank without links plans 1 rank only.
set -eu
bin=${PARLM_BUILDDIR:-.}/apps
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/cluster.json" <<JSON
{"nodes": 1, "sockets": 1, "cores_per_socket": 2, "memory_per_node": 4e9,
 "intra_link": "shm", "inter_link": "shm"}
JSON
plan="$bin/parlm-plan --cluster $work/cluster.json --model tiny --vocab 256 --global-batch 4 --seq 64"
if grep -q '^#define PARLM_HAVE_MPI 1' "${PARLM_BUILDDIR:-.}/config.h"; then
    . "$(dirname "$0")/../mpi.sh"
    $MPI -np 2 "$bin/parlm-bench" calibrate --quick --time 0.01 --out "$work/m2.json" \
        > "$work/c2.txt" 2>&1 || { cat "$work/c2.txt"; exit 1; }
    grep -q "^link shm: p2p alpha .*fit rel. RMS error" "$work/c2.txt" || { cat "$work/c2.txt"; exit 1; }
    grep -q '"name": "shm"' "$work/m2.json"
    $plan --profile "$work/m2.json" --ranks 2 > "$work/p2.txt" 2>&1 || { cat "$work/p2.txt"; exit 1; }
    grep -Eq '^ +2 +1 +1 ' "$work/p2.txt" || { cat "$work/p2.txt"; exit 1; }
    $plan --profile "$work/m2.json" --layout 1,1,2 --micro-batches 4 --schedule gpipe \
        --json "$work/one.json" > "$work/l2.txt"
    grep -q "pp-bubble" "$work/l2.txt" && grep -q '"step_s"' "$work/one.json"
    "$bin/parlm-bench" calibrate --quick --time 0.01 --links "$work/m2.json" \
        --out "$work/m1.json" > "$work/c1.txt" 2>&1 || { cat "$work/c1.txt"; exit 1; }
    grep -q "links: copied from --links" "$work/c1.txt"
    $plan --profile "$work/m1.json" --ranks 2 > /dev/null
else
    "$bin/parlm-bench" calibrate --quick --time 0.01 --out "$work/m1.json" > "$work/c1.txt" 2>&1 ||
        { cat "$work/c1.txt"; exit 1; }
    grep -q "links: none" "$work/c1.txt"
    $plan --profile "$work/m1.json" --layout 1,1,1 > /dev/null
    if $plan --profile "$work/m1.json" --ranks 2 > "$work/err.txt" 2>&1; then exit 1; fi
    grep -q "links" "$work/err.txt"
fi
# the profile's rates are measured, positive numbers (Llama's elementwise ops too)
for f in fma_peak_f32 fma_peak_bf16 attention_flops stream_bandwidth rmsnorm rope swiglu; do
    grep -Eq "\"$f\": [1-9]" "$work/m1.json" || { echo "$f"; cat "$work/m1.json"; exit 1; }
done
echo ok
