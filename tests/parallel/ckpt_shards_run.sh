#!/bin/sh
# tests/parallel/ckpt_shards_run.sh — sharded checkpoints across ranks: test_ckpt_shards_mpi
# under mpirun with 2 and 4 ranks (each rank one pipeline stage of a 4-layer model).
set -u
bin=${PARLM_BUILDDIR:-.}/tests/parallel/test_ckpt_shards_mpi
. "$(dirname "$0")/../mpi.sh"
for np in 2 4; do
    echo "== mpirun -np $np =="
    # timeout: a rank left waiting in a collective must fail the test, not hang CI
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 timeout 300 $MPI -np "$np" "$bin"
    rc=$?
    if [ $rc -ne 0 ]; then echo "ckpt_shards_run.sh: mpirun -np $np failed (exit $rc)"; exit 1; fi
done
