#!/bin/sh
# tests/parallel/tp_run.sh — runs tests/parallel/test_tp (tensor-parallel shards against the
# single-process model) under mpirun with 2, 3 and 4 ranks (oversubscribed on small
# machines): tp = 2 on 2 and 4 ranks (two groups), tp = 3 on 3, tp = 4 on 4. Fails if
# any rank fails. One OpenMP thread per rank, except in the test of decode with 2 and 3
# threads per rank: waiting threads sleep (OMP_WAIT_POLICY=passive), as spinning ones
# would starve the others on an oversubscribed machine.
set -eu
OMP_WAIT_POLICY=passive
export OMP_WAIT_POLICY
prog=${PARLM_BUILDDIR:-.}/tests/parallel/test_tp
. "$(dirname "$0")/../mpi.sh"
for np in 2 3 4; do
    echo "== $np ranks"
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 timeout 300 $MPI -np "$np" -x OMP_WAIT_POLICY "$prog"
done
# the group's collectives give every rank the same bits whatever the algorithm
# (3 ranks: recursive doubling's non-power-of-two case)
for algo in ring rd mpi; do
    echo "== 3 ranks, PARLM_ALLREDUCE=$algo"
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 PARLM_ALLREDUCE=$algo CK_RUN_CASE=collectives timeout 300 $MPI \
        -np 3 -x PARLM_ALLREDUCE -x CK_RUN_CASE "$prog"
done
