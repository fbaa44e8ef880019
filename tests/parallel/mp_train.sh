#!/bin/sh
# tests/parallel/mp_train.sh — parlm-train with model parallelism (--tp/--pp) under mpirun:
# every layout matches the single process at the same global batch, a checkpoint written
# with --tp 2 resumes with --pp 2 and as one process as if never stopped, two replicas of
# a shard average with --dp overlap and zero1 bitwise as with sync (a zero1 checkpoint
# resumes into other layouts), and bad flags or
# layouts stop every rank with a message naming them. Losses are compared within 1e-4
# relative: tensor parallelism sums a row-parallel matmul's halves and the vocab slices'
# softmax terms in another order than one GEMM does (float rounding, ~1e-7 per op, grown
# over a few AdamW steps), while a wrong data shard or micro-batch split moves the loss
# in the 2nd-3rd digit.
set -eu
train=${PARLM_BUILDDIR:-.}/apps/parlm-train
. "$(dirname "$0")/../mpi.sh"
export OMP_NUM_THREADS=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seq 1 4000 | awk '{ print "line " $1 }' > "$work/corpus.txt"
common="--data $work/corpus.txt -t 32 -b 4 --model small --steps 6 --sample-every 0 --val-every 0 --threads 1 --seed 7"
run() { # np, log, args...
    np=$1 log=$2
    shift 2
    # shellcheck disable=SC2086
    timeout 120 $MPI -np "$np" "$train" $common --log "$log" "$@" \
        > "$work/out.txt" 2>&1 || { echo "failed: -np $np $*"; cat "$work/out.txt"; exit 1; }
}
# same losses as $1 for the steps $2 holds (1e-4 relative)
same() {
    awk -F, 'NR == FNR { if (FNR > 1) ref[$1] = $2; next }
             FNR > 1 { n++; d = $2 - ref[$1]; if (d < 0) d = -d
                       if (!($1 in ref) || d > 1e-4 * ref[$1]) { print "step " $1 ": " $2 " vs " ref[$1]; bad = 1 } }
             END { exit bad || n == 0 }' "$1" "$2" || { echo "losses differ: $2"; exit 1; }
}
# (a) layouts at the same global batch (4 rows)
# shellcheck disable=SC2086
timeout 120 "$train" $common --log "$work/ref.csv" > "$work/out.txt" 2>&1 || { cat "$work/out.txt"; exit 1; }
run 2 "$work/tp2.csv" --tp 2
same "$work/ref.csv" "$work/tp2.csv"
grep -q "grid: dp 1 x tp 2 x pp 1" "$work/out.txt" || { echo "no plan"; cat "$work/out.txt"; exit 1; }
run 2 "$work/pp2.csv" --pp 2 --micro-batches 4 --schedule gpipe
same "$work/ref.csv" "$work/pp2.csv"
run 4 "$work/tp2pp2.csv" --tp 2 --pp 2
same "$work/ref.csv" "$work/tp2pp2.csv"
# two replicas of -b 2 are the same global batch of 4 rows
run 4 "$work/dp2tp2.csv" --tp 2 -b 2 --dp sync --ckpt-dir "$work/sync_tp"
same "$work/ref.csv" "$work/dp2tp2.csv"
grep -q "grid dp 2 x tp 2 x pp 1 (1f1b, 1 micro-batch(es)), dp sync" "$work/out.txt" ||
    { echo "the start line does not name the layout"; cat "$work/out.txt"; exit 1; }
run 4 "$work/dp2pp2.csv" --pp 2 -b 2 --dp sync --ckpt-dir "$work/sync_pp"
same "$work/ref.csv" "$work/dp2pp2.csv"
echo "layouts (dp,tp,pp) (1,2,1), (1,1,2), (1,2,2), (2,2,1), (2,1,2): the single process's losses"
# (b) written with --tp 2 at step 3, resumed with --pp 2 and as one process
run 2 "$work/a.csv" --tp 2 --ckpt-dir "$work/ck" --stop-at 3
cp -r "$work/ck" "$work/ck1"
run 2 "$work/b.csv" --pp 2 --ckpt-dir "$work/ck" --resume
grep -q "resume: .*step 3" "$work/out.txt" || { cat "$work/out.txt"; exit 1; }
same "$work/ref.csv" "$work/b.csv"
# shellcheck disable=SC2086
timeout 120 "$train" $common --log "$work/c.csv" --ckpt-dir "$work/ck1" --resume > "$work/out.txt" 2>&1 || { cat "$work/out.txt"; exit 1; }
same "$work/ref.csv" "$work/c.csv"
echo "tp 2 checkpoint: resumed with pp 2 and alone, the uninterrupted run's losses"
# (c) the replicas' other averaging modes. At dp 2 each gradient is the same sum of two
# floats in every mode (overlap sums buckets earlier, zero1 its block), the norm is summed
# over the same dp blocks, AdamW is elementwise: the whole checkpoint of step 6
# (parameters, AdamW state gathered from zero1's blocks, step, data position) is byte
# for byte sync's. Small buckets: overlap starts many during backward.
ck=ckpt_00000006.bin
for l in tp pp; do
    for mode in overlap zero1; do
        run 4 "$work/$l$mode.csv" --$l 2 -b 2 --dp $mode --bucket-mb 1 --ckpt-dir "$work/$l$mode"
        grep -q "dp $mode" "$work/out.txt" || { echo "no dp $mode"; cat "$work/out.txt"; exit 1; }
        cmp "$work/sync_$l/$ck" "$work/$l$mode/$ck" || { echo "--$l 2 --dp $mode is not sync"; exit 1; }
        cut -d, -f1-5 "$work/dp2${l}2.csv" > "$work/a.txt"
        cut -d, -f1-5 "$work/$l$mode.csv" > "$work/b.txt"
        cmp "$work/a.txt" "$work/b.txt" || { echo "--$l 2 --dp $mode: other losses"; exit 1; }
    done
done
# zero1 (dp 2, pp 2) stopped at step 3 (its AdamW state gathered into the file): resumed in
# zero1, bitwise the uninterrupted run; resumed with --tp 2 in overlap and as plain data
# parallelism, the single process's losses
run 4 "$work/z3.csv" --pp 2 -b 2 --dp zero1 --ckpt-dir "$work/z" --stop-at 3
cp -r "$work/z" "$work/z_tp"
cp -r "$work/z" "$work/z_dp"
run 4 "$work/z6.csv" --pp 2 -b 2 --dp zero1 --ckpt-dir "$work/z" --resume
cmp "$work/sync_pp/$ck" "$work/z/$ck" || { echo "zero1 resumed is not the uninterrupted run"; exit 1; }
run 4 "$work/ztp.csv" --tp 2 -b 2 --dp overlap --ckpt-dir "$work/z_tp" --resume
grep -q "resume: .*step 3" "$work/out.txt" || { cat "$work/out.txt"; exit 1; }
same "$work/ref.csv" "$work/ztp.csv"
run 2 "$work/zdp.csv" -b 2 --dp sync --ckpt-dir "$work/z_dp" --resume
same "$work/ref.csv" "$work/zdp.csv"
echo "(dp 2, tp 2) and (dp 2, pp 2): --dp overlap and zero1 bitwise sync; zero1 checkpoint resumed"
# (d) --dp local (data parallelism alone); a rank with other --micro-batches; a layout the
# model cannot take
set +e
# shellcheck disable=SC2086
timeout 120 $MPI -np 4 "$train" $common --pp 2 -b 2 --dp local \
    > "$work/out.txt" 2>&1
rc=$?
set -e
case $rc in 0|124) echo "--dp local with --pp 2: rc $rc"; cat "$work/out.txt"; exit 1 ;; esac
grep -q -- "--dp local" "$work/out.txt" || { echo "--dp local not named"; cat "$work/out.txt"; exit 1; }
set +e
# shellcheck disable=SC2086
timeout 120 $MPI -np 1 "$train" $common --pp 2 --micro-batches 2 : \
    -np 1 "$train" $common --pp 2 --micro-batches 4 > "$work/out.txt" 2>&1
rc=$?
set -e
case $rc in 0|124) echo "mismatched --micro-batches: rc $rc"; cat "$work/out.txt"; exit 1 ;; esac
grep -q "micro-batches 4" "$work/out.txt" || { echo "the value is not named"; cat "$work/out.txt"; exit 1; }
set +e
# shellcheck disable=SC2086
timeout 120 $MPI -np 3 "$train" $common --tp 3 > "$work/out.txt" 2>&1
rc=$?
set -e
case $rc in 0|124) echo "--tp 3 with 4 heads: rc $rc"; cat "$work/out.txt"; exit 1 ;; esac
grep -q "head" "$work/out.txt" || { echo "no layout message"; cat "$work/out.txt"; exit 1; }
if grep -q "grid: dp" "$work/out.txt"; then echo "--tp 3 got a grid"; exit 1; fi
echo "--dp local with --pp, mismatched --micro-batches and --tp 3 with 4 heads: every rank stopped, named"
echo "4 passed, 0 failed"
