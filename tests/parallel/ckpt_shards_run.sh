#!/bin/sh
# tests/parallel/ckpt_shards_run.sh — sharded checkpoints across ranks: test_ckpt_shards_mpi
# under mpirun with 2 and 4 ranks (each rank one pipeline stage of a 4-layer model).
set -u
bin=${PARLM_BUILDDIR:-.}/tests/parallel/test_ckpt_shards_mpi
mpirun=${MPIRUN:-mpirun}
if ! command -v "$mpirun" > /dev/null 2>&1; then
    echo "ckpt_shards_run.sh: mpirun not found (apt-get install openmpi-bin)"; exit 1
fi
root=
test "$(id -u)" -eq 0 && root=--allow-run-as-root
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
export ASAN_OPTIONS
for np in 2 4; do
    echo "== mpirun -np $np =="
    # timeout: a rank left waiting in a collective must fail the test, not hang CI
    OMP_NUM_THREADS=1 timeout 300 "$mpirun" $root --oversubscribe --mca btl self,vader \
        --mca btl_vader_single_copy_mechanism none -np "$np" "$bin"
    rc=$?
    if [ $rc -ne 0 ]; then echo "ckpt_shards_run.sh: mpirun -np $np failed (exit $rc)"; exit 1; fi
done
