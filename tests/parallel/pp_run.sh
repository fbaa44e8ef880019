#!/bin/sh
# tests/parallel/pp_run.sh — runs tests/parallel/test_pp (the process grid and pipeline-
# parallel training against the single-process run) under mpirun with 2 and 4 ranks
# (oversubscribed on small machines), one OpenMP thread each; fails if any rank fails.
set -eu
prog=${PARLM_BUILDDIR:-.}/tests/parallel/test_pp
. "$(dirname "$0")/../mpi.sh"
for np in 2 4; do
    echo "== $np ranks"
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 timeout 600 $MPI -np "$np" "$prog"
done
