#!/bin/sh
# tests/mpi_run.sh — runs the MPI Check program (tests/test_allreduce) under mpirun with
# 2 ranks and with 4 ranks (oversubscribed on small machines). Each rank runs the whole
# suite; mpirun fails if any rank fails, and so does this script. Rank 0 prints the
# summary. MCA settings: shared memory (vader) only; its single-copy mechanism off,
# since containers often forbid the ptrace-style access CMA needs.
set -u
bin=${PARLM_BUILDDIR:-.}/tests/parallel/test_allreduce
mpirun=${MPIRUN:-mpirun}
if ! command -v "$mpirun" > /dev/null 2>&1; then
    echo "mpi_run.sh: mpirun not found (apt-get install openmpi-bin)"; exit 1
fi
root=
test "$(id -u)" -eq 0 && root=--allow-run-as-root
# sanitizer builds: Open MPI itself leaks at exit (its MCA plugins are unloaded before
# LeakSanitizer looks, so no suppression file can name them): leak checking is off for
# these runs; AddressSanitizer and UBSan still check every access.
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
export ASAN_OPTIONS
run() {
    echo "== mpirun -np $* =="
    # timeout: a hung collective must fail the test, not the CI job
    timeout 300 "$mpirun" $root --mca btl self,vader --mca btl_vader_single_copy_mechanism none \
        -np "$@" "$bin"
    rc=$?
    if [ $rc -ne 0 ]; then echo "mpi_run.sh: mpirun -np $* failed (exit $rc)"; exit 1; fi
}
run 2
run 4 --oversubscribe
# ranks left unbound, so that 2 ranks x 2 OpenMP threads float over the cores: the
# crowded-node case (issue 8), which mpirun's default one-core-per-rank binding hides
run 2 --bind-to none -x CK_RUN_CASE=crowded_node
