#!/bin/sh
# tests/parallel/mp_die.sh — a pipeline rank killed in the middle of training (SIGKILL, as
# the OOM killer or a failing node does it): the job ends instead of hanging with the
# other stage blocked on its activations, the newest good checkpoint survives, and
# --resume in the same layout continues to the uninterrupted run's losses (1e-4 relative,
# as in mp_train.sh).
set -eu
train=${PARLM_BUILDDIR:-.}/apps/parlm-train
. "$(dirname "$0")/../mpi.sh"
export OMP_NUM_THREADS=1
work=$(mktemp -d)
mpid=""
trap '[ -n "$mpid" ] && kill -9 "$mpid" 2>/dev/null; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; [ -f "$work/out.txt" ] && tail -20 "$work/out.txt"; exit 1; }
seq 1 6000 | awk '{ print "line " $1 " of " ($1 * 7) % 13 }' > "$work/corpus.txt"
common="--data $work/corpus.txt -t 64 -b 4 --model d6 --steps 16 --sample-every 0 --val-every 0 --threads 1 --seed 3"

# the reference: one process, uninterrupted
# shellcheck disable=SC2086
timeout 300 "$train" $common --log "$work/ref.csv" > "$work/out.txt" 2>&1 || fail "reference run"

# pp 2 with a checkpoint every 2 steps; stage 1 is killed once step 4's checkpoint exists
# shellcheck disable=SC2086
$MPI -np 2 "$train" $common --pp 2 --micro-batches 2 --ckpt-dir "$work/ck" --ckpt-every 2 \
    --log "$work/a.csv" > "$work/out.txt" 2>&1 &
mpid=$!
i=0
while [ ! -f "$work/ck/ckpt_00000004.bin" ]; do
    kill -0 "$mpid" 2>/dev/null || fail "the run ended before step 4's checkpoint"
    i=$((i + 1)); [ "$i" -lt 3000 ] || fail "no checkpoint at step 4 within 150 s"
    sleep 0.05
done
victim=$(pgrep -P "$mpid" -f parlm-train | tail -n 1)
[ -n "$victim" ] || fail "no rank process under mpirun $mpid"
kill -9 "$victim"
# the survivor must not hang: mpirun ends the job within 60 s, with a failure status
i=0
while kill -0 "$mpid" 2>/dev/null; do
    i=$((i + 1)); [ "$i" -lt 1200 ] || fail "the job hung after a rank was killed"
    sleep 0.05
done
rc=0; wait "$mpid" || rc=$?
mpid=""
[ "$rc" != 0 ] || fail "mpirun exited 0 although a rank was killed"
grep -q "step *16/16" "$work/out.txt" && fail "the run finished before the kill: the test did not test"
echo "a killed pipeline rank ended the job (mpirun exit $rc)"

# resume in the same layout from the newest good checkpoint
# shellcheck disable=SC2086
timeout 300 $MPI -np 2 "$train" $common --pp 2 --micro-batches 2 \
    --ckpt-dir "$work/ck" --ckpt-every 2 --resume --log "$work/b.csv" > "$work/out.txt" 2>&1 ||
    fail "resume after the kill"
grep -q "resume: .*step [0-9]" "$work/out.txt" || fail "no resume line"
awk -F, 'NR == FNR { if (FNR > 1) ref[$1] = $2; next }
         FNR > 1 { n++; d = $2 - ref[$1]; if (d < 0) d = -d
                   if (!($1 in ref) || d > 1e-4 * ref[$1]) { print "step " $1 ": " $2 " vs " ref[$1]; bad = 1 } }
         END { exit bad || n == 0 }' "$work/ref.csv" "$work/b.csv" ||
    fail "the resumed run's losses differ from the uninterrupted run"
echo "resumed from $(sed -n 's/.*resume: .*\(step [0-9]*\).*/\1/p' "$work/out.txt" | head -n 1): the uninterrupted run's losses"
echo "2 passed, 0 failed"
