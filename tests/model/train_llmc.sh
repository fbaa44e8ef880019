#!/bin/sh
# tests/train_llmc.sh — parlm-train from an llm.c model file and token shard with llm.c's
# hyperparameters (--beta1 0.9 --beta2 0.999 --eps 1e-8, weight decay 0, lr 1e-4 fixed,
# no clipping) follows llm.c's AdamW step by step (tests/llmc_update.c checks each step's
# parameters, moments and logged loss against the rule computed in double); other
# --beta1/--beta2/--eps values are followed too. Also: --log and --ckpt-dir in
# directories that do not exist yet are created; a malformed peak cache is replaced; a run
# started from --init resumes without repeating its shape in --model.
set -eu
bin=${PARLM_BUILDDIR:-.}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# run DIR STEPS B1 B2 EPS: STEPS runs of one step each, resuming, keeping every checkpoint
run() {
    dir=$1 n=$2
    cp "$work/model.bin" "$work/train.bin" "$dir/"
    k=1
    while [ "$k" -le "$n" ]; do
        resume=
        [ "$k" -gt 1 ] && resume=--resume
        "$bin/apps/parlm-train" --init "$dir/model.bin" --data "$dir/train.bin" -b 2 -t 16 \
            --steps "$n" --stop-at "$k" --lr 1e-4 --warmup 0 --lr-min-frac 1 --weight-decay 0 \
            --grad-clip 0 --beta1 "$3" --beta2 "$4" --eps "$5" --threads 2 --quiet \
            --sample-every 0 --ckpt-dir "$dir/runs/ckpt" --log "$dir/runs/logs/log.csv" $resume \
            > "$work/out.txt" 2>&1 || { cat "$work/out.txt"; exit 1; }
        cp "$(printf '%s/runs/ckpt/ckpt_%08d.bin' "$dir" "$k")" "$dir/step_$k.bin"
        k=$((k + 1))
    done
}
# the peak cache: a malformed file is ignored and replaced by well-formed lines
PARLM_PEAK_CACHE="$work/peak"
export PARLM_PEAK_CACHE
printf 'garbage\nno|bar|x\n|\n' > "$PARLM_PEAK_CACHE"
"$bin/tests/model/llmc_update" prepare "$work"
mkdir "$work/llmc" "$work/other"
run "$work/llmc" 4 0.9 0.999 1e-8
"$bin/tests/model/llmc_update" check "$work/llmc" 4 1e-4 0.9 0.999 1e-8 0 "$work/llmc/runs/logs/log.csv"
echo "llm.c hyperparameters: 4 steps follow gpt2_update"
run "$work/other" 2 0.5 0.9 1e-3
"$bin/tests/model/llmc_update" check "$work/other" 2 1e-4 0.5 0.9 1e-3 0 "$work/other/runs/logs/log.csv"
echo "--beta1 0.5 --beta2 0.9 --eps 1e-3: 2 steps follow the rule"
# the rule with parlm's former hard-coded beta2 must NOT match a 0.999 run: the check can fail
if "$bin/tests/model/llmc_update" check "$work/llmc" 1 1e-4 0.9 0.95 1e-8 0 \
    "$work/llmc/runs/logs/log.csv" > /dev/null 2>&1; then
    echo "the check accepted beta2 0.95 for a run with --beta2 0.999"; exit 1
fi
# bad values are refused
for args in "--beta1 1" "--beta2 -0.1" "--eps 0"; do
    # shellcheck disable=SC2086
    if "$bin/apps/parlm-train" $args > "$work/out.txt" 2>&1; then
        echo "parlm-train $args was accepted"; exit 1
    fi
    grep -q -e "--beta" -e "--eps" "$work/out.txt"
done
if grep -qv '^[a-z0-9]* [0-9]*t .*|[0-9.e+]*$' "$PARLM_PEAK_CACHE"; then
    echo "peak cache not rewritten cleanly:"; cat "$PARLM_PEAK_CACHE"; exit 1
fi
echo "4 passed, 0 failed"
