#!/bin/sh
# tests/parallel/env_run.sh — the library reads no environment; the programs pass
# PARLM_ALLREDUCE / PARLM_RING_CHUNK / PARLM_SHM_CHUNK / PARLM_SHM_NBUF to the communicator
# (apps/cli.c). A bad value stops the program naming the variable; a forced algorithm
# reaches the collectives (mpi + --bf16-wire is refused there, auto accepts it).
set -u
train=${PARLM_BUILDDIR:-.}/apps/parlm-train
prepare=${PARLM_BUILDDIR:-.}/apps/parlm-prepare
bench=${PARLM_BUILDDIR:-.}/apps/parlm-bench
. "$(dirname "$0")/../mpi.sh"
export OMP_NUM_THREADS=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
run() { # run VAR=VALUE PROGRAM ARGS...: 2 ranks, output in $work/out, returns mpirun's status
    var=$1
    shift
    # shellcheck disable=SC2086
    env "$var" timeout 300 $MPI -x "${var%%=*}" -x OMP_NUM_THREADS -np 2 "$@" > "$work/out" 2>&1
}
expect_fail() { # expect_fail TEXT VAR=VALUE PROGRAM ARGS...
    text=$1
    shift
    if run "$@"; then
        echo "FAIL: $1 $2: succeeded"; fails=$((fails + 1))
    elif ! grep -qF "$text" "$work/out"; then
        echo "FAIL: $1 $2: no '$text' in:"; cat "$work/out"; fails=$((fails + 1))
    else
        echo "ok: $1 $(basename "$2"): $text"
    fi
}
expect_fail "PARLM_SHM_NBUF wants 2 .. 4096, got '1'" PARLM_SHM_NBUF=1 "$bench" allreduce --quick
expect_fail "PARLM_RING_CHUNK wants a chunk of 256 .. 2^26 floats, got '64k'" \
    PARLM_RING_CHUNK=64k "$bench" allreduce --quick
expect_fail "PARLM_ALLREDUCE='tree'" PARLM_ALLREDUCE=tree "$bench" dp --quick

seq 1 4000 | awk '{ print "line " $1 }' > "$work/corpus.txt"
"$prepare" --out "$work/d" --val-tokens 2000 "$work/corpus.txt" > /dev/null 2>&1 || exit 1
common="--data $work/d/corpus_train_*.bin --model tiny -t 32 --steps 2 --sample-every 0 --val-every 0
    --threads 1 --dp sync --bf16-wire"
# shellcheck disable=SC2086
expect_fail "cannot use a bf16 wire" PARLM_ALLREDUCE=mpi "$train" $common
# shellcheck disable=SC2086
if run PARLM_ALLREDUCE=auto "$train" $common; then
    echo "ok: PARLM_ALLREDUCE=auto parlm-train --bf16-wire trains"
else
    echo "FAIL: PARLM_ALLREDUCE=auto parlm-train --bf16-wire:"; cat "$work/out"; fails=$((fails + 1))
fi
exit $((fails > 0))
