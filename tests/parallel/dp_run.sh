#!/bin/sh
# tests/dp_run.sh — runs tests/parallel/test_dp (data-parallel training vs the single-process
# reference) under mpirun with 2 and 4 ranks (oversubscribed on small machines); fails
# if any rank fails. Root needs --allow-run-as-root; one OpenMP thread per rank.
set -eu
prog=${PARLM_BUILDDIR:-.}/tests/parallel/test_dp
. "$(dirname "$0")/../mpi.sh"
for np in 2 4; do
    echo "== $np ranks"
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 timeout 600 $MPI -np "$np" "$prog"
done

# parlm-train under mpirun: ranks that disagree stop together with a message naming the
# field and rank; a rank that dies takes the job down (mpirun aborts the others) instead
# of leaving them hanging. Both must end within the timeout.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seq 1 4000 | awk '{ print "line " $1 }' > "$work/corpus.txt"
train=${PARLM_BUILDDIR:-.}/apps/parlm-train
common="--data $work/corpus.txt -t 32 --model tiny --steps 3 --sample-every 0 --val-every 0 --threads 1"
# shellcheck disable=SC2086
if OMP_NUM_THREADS=1 timeout 120 $MPI -np 1 "$train" $common -b 2 : \
    -np 1 "$train" $common -b 4 > "$work/out.txt" 2>&1; then
    echo "ranks with different -b were accepted"; cat "$work/out.txt"; exit 1
fi
grep -q "disagree on option -b" "$work/out.txt" || { echo "no disagreement message"; cat "$work/out.txt"; exit 1; }
grep -q "rank 1" "$work/out.txt" || { echo "the message does not name rank 1"; cat "$work/out.txt"; exit 1; }
echo "mismatch: every rank stopped, naming the field and rank"
set +e
# shellcheck disable=SC2086
OMP_NUM_THREADS=1 timeout 120 $MPI -np 1 "$train" $common -b 2 : \
    -np 1 "$train" $common -b 2 --data /nonexistent.txt > "$work/out.txt" 2>&1
rc=$?
set -e
case $rc in
    0) echo "a job with a failing rank succeeded"; exit 1 ;;
    124) echo "a job with a failing rank hung"; exit 1 ;;
esac
echo "a dead rank ends the job"
# a short data-parallel run (2 ranks, ZeRO-1) checkpoints and resumes
# shellcheck disable=SC2086
OMP_NUM_THREADS=1 timeout 120 $MPI -np 2 "$train" $common -b 2 --dp zero1 \
    --ckpt-dir "$work/ck" --stop-at 2 > "$work/out.txt" 2>&1 || { cat "$work/out.txt"; exit 1; }
# shellcheck disable=SC2086
OMP_NUM_THREADS=1 timeout 120 $MPI -np 2 "$train" $common -b 2 --dp zero1 \
    --ckpt-dir "$work/ck" --resume > "$work/out.txt" 2>&1 || { cat "$work/out.txt"; exit 1; }
grep -q "resume: .*step 2" "$work/out.txt" && test -f "$work/ck/ckpt_00000003.bin"
echo "2 passed, 0 failed"
