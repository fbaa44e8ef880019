#!/bin/sh
# tests/parallel/pp_run.sh — runs tests/parallel/test_pp (the process grid and pipeline-
# parallel training against the single-process run) under mpirun with 2 and 4 ranks
# (oversubscribed on small machines), one OpenMP thread each; fails if any rank fails.
set -eu
prog=${PARLM_BUILDDIR:-.}/tests/parallel/test_pp
mpirun=${MPIRUN:-mpirun}
root=""
[ "$(id -u)" -ne 0 ] || root="--allow-run-as-root"
# sanitizer builds: Open MPI leaks from plugins it has already unloaded (see dp_run.sh)
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
export ASAN_OPTIONS
for np in 2 4; do
    echo "== $np ranks"
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 timeout 600 "$mpirun" $root --oversubscribe -np "$np" \
        --mca btl self,vader --mca btl_vader_single_copy_mechanism none "$prog"
done
