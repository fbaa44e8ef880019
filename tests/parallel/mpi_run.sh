#!/bin/sh
# tests/mpi_run.sh — runs the MPI Check program (tests/test_allreduce) under mpirun with
# 2 ranks and with 4 ranks (oversubscribed on small machines). Each rank runs the whole
# suite; mpirun fails if any rank fails, and so does this script. Rank 0 prints the
# summary. mpirun's settings: tests/mpi.sh.
set -u
bin=${PARLM_BUILDDIR:-.}/tests/parallel/test_allreduce
. "$(dirname "$0")/../mpi.sh"
run() {
    echo "== mpirun -np $* =="
    # timeout: a hung collective must fail the test, not the CI job
    # shellcheck disable=SC2086
    timeout 300 $MPI_BOUND -np "$@" "$bin"
    rc=$?
    if [ $rc -ne 0 ]; then echo "mpi_run.sh: mpirun -np $* failed (exit $rc)"; exit 1; fi
}
run 2
run 4 --oversubscribe
# ranks left unbound, so that 2 ranks x 2 OpenMP threads float over the cores: the
# crowded-node case (issue 8) as a user meets it. The case checks that the library sees
# the node as crowded and stays right; how fast it is there is measured by parlm-bench
# allreduce (see the case's comment), never asserted here.
run 2 --bind-to none -x CK_RUN_CASE=crowded_node
