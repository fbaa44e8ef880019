#!/bin/sh
# tests/plan/train_plan.sh — parlm-train --plan: `auto` (from a profile) and a parlm-plan
# --json file pick a layout, print it with its predicted step time and train 2 steps on 2
# ranks; flags that disagree with the choice, a plan for another run, a bad plan file and
# --plan auto without --profile are refused with messages naming them. Builds without MPI
# check the one-process paths.
set -eu
bin=${PARLM_BUILDDIR:-.}/apps
export OMP_NUM_THREADS=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seq 1 3000 | awk '{ print "line " $1 }' > "$work/corpus.txt"
# a made-up profile (the choice need not be this machine's best, only what the planner says)
cat > "$work/prof.json" <<JSON
{"fma_peak_f32": 5e10, "fma_peak_bf16": 5e10, "attention_flops": 1e10, "stream_bandwidth": 1e10,
 "gemm": [{"m": 64, "n": 256, "k": 64, "flops": 1e10}, {"m": 1024, "n": 3072, "k": 768, "flops": 4e10}],
 "elementwise": {"layernorm": 1e9, "gelu": 5e8, "residual": 2e9, "bias": 2e9, "crossentropy": 1e9, "adamw": 3e8},
 "links": [{"name": "shm", "p2p_alpha": 1e-6, "p2p_beta": 1e-10, "allreduce_alpha": 2e-6, "allreduce_beta": 2e-10}]}
JSON
common="--data $work/corpus.txt --model tiny --steps 2 --sample-every 0 --val-every 0 --threads 1 --seed 3"
fails() { # expected text, command...: exit != 0 and the text on stderr/stdout
    want=$1
    shift
    if "$@" > "$work/err.txt" 2>&1; then echo "accepted: $*"; exit 1; fi
    grep -qF -- "$want" "$work/err.txt" || { echo "no '$want' in:"; cat "$work/err.txt"; exit 1; }
}
# shellcheck disable=SC2086
fails "--plan auto needs --profile" "$bin/parlm-train" $common -b 4 -t 32 --plan auto
if grep -q '^#define PARLM_HAVE_MPI 1' "${PARLM_BUILDDIR:-.}/config.h"; then
    . "$(dirname "$0")/../mpi.sh"
    np=2 launch="timeout 120 $MPI -np 2"
else
    np=1 launch="timeout 120"
fi
# auto: the choice and its prediction, then the run, and the prediction next to the measure
# shellcheck disable=SC2086
$launch "$bin/parlm-train" $common -b 4 -t 32 --plan auto --profile "$work/prof.json" \
    > "$work/auto.txt" 2>&1 || { cat "$work/auto.txt"; exit 1; }
grep -Eq "^plan: auto chose dp [0-9]+ x tp [0-9]+ x pp [0-9]+, .*predicted [0-9.]+ ms a step" \
    "$work/auto.txt" || { cat "$work/auto.txt"; exit 1; }
grep -q "^step     2/2" "$work/auto.txt" && grep -q "the plan predicted" "$work/auto.txt" ||
    { cat "$work/auto.txt"; exit 1; }
tp=$(sed -n 's/^plan: auto chose dp [0-9]* x tp \([0-9]*\) x .*/\1/p' "$work/auto.txt")
# the planner's own file for the same run: the same choice. Cores as parlm-train counts
# them: --threads 1 on each of the np ranks (not the machine's cores: on one rank, planning
# all of them predicted another step time)
cores=$np
cat > "$work/cluster.json" <<JSON
{"nodes": 1, "sockets": 1, "cores_per_socket": $cores, "memory_per_node": 4e9,
 "intra_link": "shm", "inter_link": "shm"}
JSON
"$bin/parlm-plan" --profile "$work/prof.json" --cluster "$work/cluster.json" --model tiny \
    --vocab 256 --global-batch 4 --seq 32 --ranks $np --json "$work/plan.json" > /dev/null
# shellcheck disable=SC2086
$launch "$bin/parlm-train" $common -b 4 -t 32 --plan "$work/plan.json" > "$work/file.txt" 2>&1 ||
    { cat "$work/file.txt"; exit 1; }
grep -q "^step     2/2" "$work/file.txt" || { cat "$work/file.txt"; exit 1; }
grep "^plan:" "$work/file.txt" | sed "s|$work/plan.json|auto|" > "$work/c1.txt"
grep "^plan:" "$work/auto.txt" > "$work/c2.txt"
cmp -s "$work/c1.txt" "$work/c2.txt" || { cat "$work/c1.txt" "$work/c2.txt"; exit 1; }
if [ "$np" -eq 2 ]; then
    # a --tp the choice does not have: both named
    other=$((tp == 1 ? 2 : 1))
    # shellcheck disable=SC2086
    fails "chose tp $tp, but --tp $other was given" $launch "$bin/parlm-train" $common -b 4 -t 32 \
        --plan auto --profile "$work/prof.json" --tp $other
fi
# a plan for another sequence length; a field of the wrong type: the file and field named
# shellcheck disable=SC2086
fails "$work/plan.json: field seq_len is 32, but -t gives 64" "$bin/parlm-train" $common \
    -b 4 -t 64 --plan "$work/plan.json"
sed '0,/"tp": [0-9]*/s//"tp": "two"/' "$work/plan.json" > "$work/bad.json"
# shellcheck disable=SC2086
fails "$work/bad.json: field layouts[0].tp" "$bin/parlm-train" $common -b 4 -t 32 --plan "$work/bad.json"
# shellcheck disable=SC2086
fails "$work/none.json" "$bin/parlm-train" $common -b 4 -t 32 --plan "$work/none.json"
echo ok
