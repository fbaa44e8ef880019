#!/bin/sh
# tests/parallel/tp_run.sh — runs tests/parallel/test_tp (tensor-parallel shards against the
# single-process model) under mpirun with 2, 3 and 4 ranks (oversubscribed on small
# machines): tp = 2 on 2 and 4 ranks (two groups), tp = 3 on 3, tp = 4 on 4. Fails if
# any rank fails. One OpenMP thread per rank.
set -eu
prog=${PARLM_BUILDDIR:-.}/tests/parallel/test_tp
mpirun=${MPIRUN:-mpirun}
root=""
[ "$(id -u)" -ne 0 ] || root="--allow-run-as-root"
# sanitizer builds: Open MPI leaks from plugins it has already unloaded (see mpi_run.sh)
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
export ASAN_OPTIONS
for np in 2 3 4; do
    echo "== $np ranks"
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 timeout 300 "$mpirun" $root --oversubscribe -np "$np" \
        --mca btl self,vader --mca btl_vader_single_copy_mechanism none "$prog"
done
