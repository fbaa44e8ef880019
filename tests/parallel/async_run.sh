#!/bin/sh
# tests/parallel/async_run.sh — bounded-staleness data parallelism under mpirun: the Check
# program tests/parallel/test_async with 2 and 4 ranks (oversubscribed on small machines),
# then parlm-train --dp async: a slowed rank, a checkpoint, a resume, and the refusal of
# --dp async with --tp. One OpenMP thread per rank; root needs --allow-run-as-root.
set -eu
prog=${PARLM_BUILDDIR:-.}/tests/parallel/test_async
. "$(dirname "$0")/../mpi.sh"
for np in 2 4; do
    echo "== $np ranks"
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 timeout 600 $MPI -np "$np" "$prog"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seq 1 4000 | awk '{ print "line " $1 }' > "$work/corpus.txt"
train=${PARLM_BUILDDIR:-.}/apps/parlm-train
common="--data $work/corpus.txt -t 32 -b 2 --model tiny --steps 6 --sample-every 0 --val-every 0 --threads 1"
# S = 2 with rank 1 slowed: 3 steps and a checkpoint, then a resume to the end
# shellcheck disable=SC2086
OMP_NUM_THREADS=1 timeout 120 $MPI -np 2 "$train" $common --dp async --staleness 2 \
    --slow-rank 1 --slow-ms 5 --ckpt-dir "$work/ck" --stop-at 3 > "$work/out.txt" 2>&1 ||
    { cat "$work/out.txt"; exit 1; }
test -f "$work/ck/ckpt_00000003.bin" || { echo "no checkpoint of step 3"; cat "$work/out.txt"; exit 1; }
# shellcheck disable=SC2086
OMP_NUM_THREADS=1 timeout 120 $MPI -np 2 "$train" $common --dp async --staleness 2 \
    --slow-rank rotate --slow-ms 5 --ckpt-dir "$work/ck" --resume > "$work/out.txt" 2>&1 ||
    { cat "$work/out.txt"; exit 1; }
grep -q "resume: .*step 3" "$work/out.txt" && test -f "$work/ck/ckpt_00000006.bin" ||
    { echo "the resumed run did not reach step 6"; cat "$work/out.txt"; exit 1; }
echo "checkpoint and resume: ok"
# the RMA store (forced on one node by the MPI algorithm): a short run with a straggler
# shellcheck disable=SC2086
OMP_NUM_THREADS=1 PARLM_ALLREDUCE=mpi timeout 120 $MPI -np 2 "$train" $common --dp async \
    --staleness 1 --slow-rank 0 --slow-ms 5 --stop-at 3 > "$work/out.txt" 2>&1 ||
    { cat "$work/out.txt"; exit 1; }
grep -q "async: staleness 1, parameters and gradients in MPI RMA" "$work/out.txt" ||
    { echo "the RMA store was not used"; cat "$work/out.txt"; exit 1; }
echo "RMA store: ok"
# shellcheck disable=SC2086
if OMP_NUM_THREADS=1 timeout 120 $MPI -np 2 "$train" $common --dp async --tp 2 \
    > "$work/out.txt" 2>&1; then
    echo "--dp async --tp 2 was accepted"; cat "$work/out.txt"; exit 1
fi
grep -q "dp async" "$work/out.txt" || { echo "no message for --dp async --tp 2"; cat "$work/out.txt"; exit 1; }
# shellcheck disable=SC2086
if OMP_NUM_THREADS=1 timeout 60 "$train" $common --slow-rank x --slow-ms 1 > "$work/out.txt" 2>&1; then
    echo "--slow-rank x was accepted"; exit 1
fi
grep -q "slow-rank" "$work/out.txt" || { echo "no message for --slow-rank x"; cat "$work/out.txt"; exit 1; }
echo "refusals: ok"
