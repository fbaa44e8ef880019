#!/bin/sh
# tests/mpi_agree.sh — MPMD launches of parlm-train where one rank differs in one setting
# that changes the computation (an option, the model, the bytes of the data): every rank
# must stop (mpirun fails, no hang) with a message naming the field and the rank. And a
# rank killed by mpirun (another failed) leaves no temporary corpus behind.
set -u
train=${PARLM_BUILDDIR:-.}/apps/parlm-train
prepare=${PARLM_BUILDDIR:-.}/apps/parlm-prepare
. "$(dirname "$0")/../mpi.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0 passes=0
seq 1 4000 | awk '{ print "line " $1 }' > "$work/corpus.txt"
# same size, one byte different (in the training part of both the shards and the text)
sed 's/^line 2000$/line 2001/' "$work/corpus.txt" > "$work/corpus2.txt"
for k in 1 2; do
    src="$work/corpus.txt"
    [ "$k" -eq 1 ] || src="$work/corpus2.txt"
    "$prepare" --out "$work/d$k" --val-tokens 2000 "$src" > /dev/null 2>&1 || exit 1
done
cmp -s "$work/d1/corpus_train_000000.bin" "$work/d2/corpus_train_000000.bin" && exit 1
common="-t 32 --steps 3 --sample-every 0 --val-every 0 --threads 1"

# differ TEXT... -- ARGS0 -- ARGS1: rank 0 runs ARGS0, rank 1 ARGS1; the job must fail
# (not time out) and its output contain each TEXT
differ() {
    texts=""
    while [ "$1" != "--" ]; do texts="$texts
$1"; shift; done
    shift
    a0=""
    while [ "$1" != "--" ]; do a0="$a0 $1"; shift; done
    shift
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 timeout 120 $MPI -np 1 "$train" $common $a0 : \
        -np 1 "$train" $common "$@" > "$work/out.txt" 2>&1
    rc=$?
    ok=1
    [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || ok=0
    echo "$texts" | while IFS= read -r t; do
        [ -z "$t" ] || grep -qF -- "$t" "$work/out.txt" || exit 1
    done || ok=0
    if [ "$ok" -eq 1 ]; then
        passes=$((passes + 1)); echo "ok: rank 1 with $*"
    else
        fails=$((fails + 1)); echo "FAIL: rank 0 [$a0], rank 1 [$*]: exit $rc"
        echo "    wanted:$texts" | head -3; sed 's/^/    /' "$work/out.txt"
    fi
}
d1="--data $work/d1/corpus_train_*.bin --model tiny"
differ "disagree on option -b" "rank 1 has -b 4" -- $d1 -b 2 -- $d1 -b 4
differ "disagree on option --lr" "rank 1 has --lr 0.002" -- $d1 -b 2 -- $d1 -b 2 --lr 0.002
differ "disagree on option --warmup" "rank 1 has --warmup 7" -- $d1 -b 2 -- $d1 -b 2 --warmup 7
differ "disagree on option --grad-clip" "rank 1 has --grad-clip 0.5" -- $d1 -b 2 -- $d1 -b 2 --grad-clip 0.5
differ "disagree on option --weight-decay" "rank 1 has --weight-decay 0.1 (" -- $d1 -b 2 -- $d1 -b 2 \
    --weight-decay 0.1
differ "disagree on option --beta2" "rank 1 has --beta2 0.999 (" -- $d1 -b 2 -- $d1 -b 2 --beta2 0.999
differ "disagree on option --seed" "rank 1 has --seed 5" -- $d1 -b 2 -- $d1 -b 2 --seed 5
differ "disagree on option --bf16" "rank 1 has --bf16 on" -- $d1 -b 2 -- $d1 -b 2 --bf16
differ "disagree on option --dp" "rank 1 has --dp zero1" -- $d1 -b 2 -- $d1 -b 2 --dp zero1
differ "disagree on option --model" "rank 1 has --model small" -- \
    --data "$work/d1/corpus_train_*.bin" --model tiny -b 2 -- \
    --data "$work/d1/corpus_train_*.bin" --model small -b 2
# data: a same-size shard with one byte changed, as shards and as text
differ "training data: shard 0" "checksum" "rank 1" -- $d1 -b 2 -- \
    --data "$work/d2/corpus_train_*.bin" --model tiny -b 2
differ "training data: shard 0" "checksum" "rank 1" -- --data "$work/corpus.txt" --model tiny -b 2 -- \
    --data "$work/corpus2.txt" --model tiny -b 2
# the model's weights: --init from two different files (same config)
for s in 1 2; do
    # shellcheck disable=SC2086
    "$train" $d1 -b 2 $common --steps 1 --seed $s --ckpt-dir "$work/init$s" > /dev/null 2>&1 || exit 1
done
differ "model parameters" "rank 1" -- $d1 -b 2 --init "$work/init1/ckpt_00000001.bin" -- \
    $d1 -b 2 --init "$work/init2/ckpt_00000001.bin"
# a rank that fails alone: mpirun kills the others, which must still remove their
# tokenized corpus (TMPDIR/parlm-train-*)
mkdir "$work/tmp"
# shellcheck disable=SC2086
OMP_NUM_THREADS=1 timeout 120 $MPI -np 1 env TMPDIR="$work/tmp" "$train" $common \
    --data "$work/corpus.txt" --model tiny -b 2 : -np 1 "$train" $common --model tiny -b 2 \
    --data "$work/none.txt" > "$work/out.txt" 2>&1
rc=$?
if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || [ -n "$(ls -A "$work/tmp")" ]; then
    fails=$((fails + 1)); echo "FAIL: killed rank: exit $rc, left: $(ls -A "$work/tmp")"
    sed 's/^/    /' "$work/out.txt"
else
    passes=$((passes + 1)); echo "ok: a rank killed by mpirun removed its temporary corpus"
fi
echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
