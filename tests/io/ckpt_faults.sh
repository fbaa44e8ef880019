#!/bin/sh
# tests/ckpt_faults.sh — fault injection on parlm-train's checkpoints, as a careless or hostile
# user would: kill -9 at random points, two trainers on one directory, SIGTERM in the middle of
# a long step, every checkpoint corrupt, a flipped bit, a different --model, bad paths, a full
# disk (a small tmpfs when this machine lets us mount one, else /dev/full for the log). Each
# case checks the exit code, the message, and that no checkpoint was lost.
set -eu
bin=${PARLM_BUILDDIR:-.}/apps
work=$(mktemp -d)
mnt=
cleanup() {
    [ -n "$mnt" ] && umount "$mnt" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
# sanitizer builds: a memory or UB error exits 99, never the 0, 1 or 2 a case expects; memory
# still held at an error exit is the process ending, not a leak to report
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0:exitcode=99"
UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}exitcode=99:print_stacktrace=1"
export ASAN_OPTIONS UBSAN_OPTIONS
# the tokenized corpus of each run goes here (a killed run's stays until the next run)
mkdir "$work/tmp" && TMPDIR="$work/tmp" && export TMPDIR
seq 1 6000 | awk '{ print "line " $1 " says " ($1 * 7) % 13 "." }' > "$work/corpus.txt"
fail() { echo "FAIL: $*"; for f in "$work"/*.out; do echo "--- $f"; cat "$f"; done; exit 1; }
train() { # train OUT ARGS...: runs parlm-train, sets $rc
    out=$1; shift
    set +e
    "$bin/parlm-train" --data "$work/corpus.txt" -b 2 -t 32 --model tiny --threads 2 \
        --val-every 0 --sample-every 0 --quiet "$@" > "$work/$out" 2>&1
    rc=$?
    set -e
}
expect() { # expect RC OUT PATTERN: the last run exited RC and printed PATTERN
    [ "$rc" -eq "$1" ] || fail "exit $rc, expected $1 ($2)"
    grep -q -e "$3" "$work/$2" || fail "no '$3' in $2"
}
gen() { "$bin/parlm-generate" --ckpt "$1" --max-tokens 4 > "$work/gen.out" 2>&1 ||
        fail "parlm-generate --ckpt $1"; }
wait_for() { # wait_for FILE PATTERN: up to 30 s
    i=0
    while ! grep -q "$2" "$1" 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 300 ] || fail "timeout waiting for '$2' in $1"; sleep 0.1
    done
}
rnd() { od -An -N2 -tu2 /dev/urandom | tr -d ' '; }
sums() { (cd "$1" && cksum ckpt_*.bin*) 2>/dev/null || true; }

# 1. kill -9 at random points of a run checkpointing every step; each time the printed
# checkpoint exists and loads, generation works, the lock of the dead run is taken over
# and its temp files removed, and --resume goes on. (--steps is far more than 2 s of
# steps, so every run is still running when it is killed.)
d="$work/killed"
for it in 1 2 3 4; do
    ms=$(( $(rnd) % 1500 + 500 ))
    "$bin/parlm-train" --data "$work/corpus.txt" -b 2 -t 32 --model tiny --threads 2 \
        --val-every 0 --sample-every 0 --quiet --steps 100000 --ckpt-every 1 --ckpt-dir "$d" \
        --resume > "$work/kill$it.out" 2>&1 &
    pid=$!
    # the random point is counted from the run's first checkpoint: start-up (tokenizing, the
    # peak measurement) takes seconds in sanitizer builds (at most 60 s of waiting)
    t=0
    while ! grep -q "^checkpoint: " "$work/kill$it.out" && [ "$t" -lt 600 ] &&
          kill -0 "$pid" 2>/dev/null; do
        sleep 0.1; t=$((t + 1))
    done
    sleep "$(echo "$ms" | awk '{ print $1 / 1000 }')"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" || true
    if [ "$it" -gt 1 ]; then
        grep -q "took over the lock of [0-9]*@" "$work/kill$it.out" || fail "stale lock not named"
    fi
    last=$(grep "^checkpoint: " "$work/kill$it.out" | tail -1 | sed 's/^checkpoint: //')
    if [ -n "$last" ]; then
        [ -f "$last" ] || fail "kill $it after ${ms} ms: printed $last is gone"
        gen "$last"
    fi
    if ls "$d"/ckpt_*.bin > /dev/null 2>&1; then gen "$d"; fi
    echo "kill -9 after ${ms} ms: last printed ${last:-none}; generation ok"
done
n=$(ls "$d" | sed -n 's/^ckpt_0*\([0-9][0-9]*\)\.bin$/\1/p' | sort -n | tail -1)
[ -n "$n" ] || fail "no checkpoint after 4 runs of at least 0.5 s"
# a dead writer's temp file (named as one of a newer step): never read, removed at start
head -c 1000 "$d/ckpt_$(printf %08d "$n").bin" > "$d/ckpt_99999999.bin.tmp.4242"
gen "$d"
train final.out --steps 100000 --ckpt-every 1 --ckpt-dir "$d" --resume --stop-at $((n + 2))
expect 0 final.out "resume: .*step $n)"
grep -q "removed [1-9][0-9]* unfinished temp file" "$work/final.out" || fail "temp file not removed"
ls "$d" | grep -q 'tmp' && fail "temp files left in $d: $(ls "$d")"
# the killed runs' tokenized corpora are gone too, the final run's removed at its exit
[ -z "$(ls -A "$work/tmp")" ] || fail "tokenized text of killed runs left: $(ls "$work/tmp")"
gen "$d"
echo "kill -9: resumed at step $n and trained on; no temp file left"

# 2. two trainers on one directory: the second stops at once naming the first; the first
# goes on, then stops on SIGTERM with a checkpoint and exit 130
d="$work/shared"
"$bin/parlm-train" --data "$work/corpus.txt" -b 2 -t 32 --model tiny --threads 1 \
    --val-every 0 --sample-every 0 --quiet --steps 100000 --ckpt-every 5 --ckpt-dir "$d" \
    > "$work/first.out" 2>&1 &
first=$!
wait_for "$work/first.out" "^checkpoint: "
train second.out --steps 10 --ckpt-every 1 --ckpt-dir "$d" --resume
expect 1 second.out "in use by pid $first@"
grep -q "^compute:" "$work/second.out" && fail "the second trainer computed before stopping"
before=$(grep -c "^checkpoint: " "$work/first.out")
i=0
while [ "$(grep -c "^checkpoint: " "$work/first.out")" -le "$before" ]; do
    i=$((i + 1)); [ $i -lt 300 ] || fail "the first trainer stopped checkpointing"; sleep 0.1
done
kill -TERM "$first"
set +e; wait "$first"; rc=$?; set -e
expect 130 first.out "interrupted at step"
last=$(grep "^checkpoint: " "$work/first.out" | tail -1 | sed 's/^checkpoint: //')
gen "$last"
train second.out --steps 100000 --ckpt-dir "$d" --resume --stop-at 1
expect 0 second.out "resume: " # past --stop-at: nothing to train, but the lock is free
echo "two trainers: the second stopped naming pid $first; the first ran on and checkpointed"

# 3. SIGTERM in the middle of one long step: the run stops within a layer, not at the end
# of the step, and checkpoints the last completed step (0)
d="$work/long"
"$bin/parlm-train" --data "$work/corpus.txt" -b 1 -t 16384 --model tiny --threads 2 \
    --val-every 0 --sample-every 0 --quiet --steps 3 --ckpt-dir "$d" > "$work/long.out" 2>&1 &
pid=$!
wait_for "$work/long.out" "^compute:"
sleep 0.5
kill -TERM "$pid"
set +e; wait "$pid"; rc=$?; set -e
expect 130 long.out "interrupted at step 0"
grep -q "checkpoint: .*ckpt_00000000.bin" "$work/long.out" || fail "no step-0 checkpoint"
echo "SIGTERM during a long step: stopped at step 0 with its checkpoint"

# 4. every checkpoint corrupt: --resume refuses naming each, and keeps them; a fresh run
# needs --overwrite
d="$work/corrupt"
train c.out --steps 4 --ckpt-every 2 --ckpt-dir "$d"
expect 0 c.out "checkpoint: "
for f in "$d"/ckpt_*.bin; do printf 'X' | dd of="$f" bs=1 seek=700 conv=notrunc 2>/dev/null; done
s0=$(sums "$d")
train c.out --steps 6 --ckpt-every 2 --ckpt-dir "$d" --resume
expect 1 c.out "none of the 2 checkpoint(s)"
grep -q "cannot use .*ckpt_00000004.bin (kept): .*checksum" "$work/c.out" || fail "file 4 not named"
grep -q "cannot use .*ckpt_00000002.bin (kept): .*checksum" "$work/c.out" || fail "file 2 not named"
[ "$(sums "$d")" = "$s0" ] || fail "corrupt checkpoints changed"
train c.out --steps 6 --ckpt-dir "$d"
expect 2 c.out "already holds checkpoints"
[ "$(sums "$d")" = "$s0" ] || fail "checkpoints changed by a refused run"
train c.out --steps 2 --ckpt-every 1 --ckpt-dir "$d" --overwrite
expect 0 c.out "removed 2 checkpoint(s)"
echo "all corrupt: --resume refused and kept them; --overwrite replaced them"

# 5. a flipped bit in the newest checkpoint's step: refused (checksum), the older one
# resumes, and the unreadable file is moved aside, not overwritten, when its step comes
d="$work/flip"
train f.out --steps 4 --ckpt-every 2 --ckpt-dir "$d"
printf '\001' | dd of="$d/ckpt_00000004.bin" bs=1 seek=80 conv=notrunc 2>/dev/null
gen "$d" # the newest is refused, named, and the older one generates
grep -q "ckpt_00000004.bin: checksum mismatch.*trying an older" "$work/gen.out" || fail "generate"
train f.out --steps 6 --ckpt-every 2 --ckpt-dir "$d" --resume
expect 0 f.out "resume: .*ckpt_00000002.bin (step 2)"
grep -q "cannot use .*ckpt_00000004.bin (kept): .*checksum" "$work/f.out" || fail "flip not caught"
[ -f "$d/ckpt_00000004.bin.unreadable" ] || fail "the unreadable file was not kept"
echo "flipped step bit: refused by the checksum, kept aside, resumed from the older one"

# 6. --resume with another --model than the checkpoint's
train m.out --steps 8 --ckpt-dir "$d" --resume --model small
expect 2 m.out "model of L2 NH2 C64, but --model small is L4 NH4 C256"

# 7. bad paths fail at start, before any compute
touch "$work/afile"
train p.out --steps 2 --ckpt-dir "$work/afile"
expect 1 p.out "not a directory"
train p.out --steps 2 --ckpt-dir "$work/afile/sub"
expect 1 p.out "not a directory"
train p.out --steps 2 --log "$work"
expect 1 p.out "--log .*Is a directory"
grep -q "^compute:" "$work/p.out" && fail "a bad --log was found only after compute"
train p.out --steps 2 --ckpt-dir "$work/new/deep/dir"
expect 0 p.out "checkpoint: .*new/deep/dir/ckpt_00000002.bin"
mkdir "$work/tmponly" && echo partial > "$work/tmponly/ckpt_00000003.bin.tmp.77"
train p.out --steps 2 --ckpt-dir "$work/tmponly"
expect 0 p.out "checkpoint: .*ckpt_00000002.bin"
# a writable lock file in a directory that is not: refused at start, not at the first write
# (root writes anywhere, so as root this runs as nobody when setpriv exists)
mkdir "$work/rodir" && : > "$work/rodir/lock" && chmod 666 "$work/rodir/lock"
chmod 555 "$work/rodir" && chmod 755 "$work"
as=
[ "$(id -u)" -ne 0 ] || as="setpriv --reuid=65534 --regid=65534 --clear-groups"
if [ "$(id -u)" -ne 0 ] || command -v setpriv > /dev/null; then
    set +e
    $as "$bin/parlm-train" --data "$work/corpus.txt" -b 2 -t 32 --model tiny --threads 2 \
        --val-every 0 --sample-every 0 --quiet --steps 4 --ckpt-every 2 \
        --ckpt-dir "$work/rodir" > "$work/ro.out" 2>&1
    rc=$?
    set -e
    expect 1 ro.out "rodir: cannot create a file in the directory: Permission denied"
    grep -q "^compute:" "$work/ro.out" && fail "a read-only --ckpt-dir was found only after compute"
else
    echo "SKIP read-only --ckpt-dir: running as root without setpriv"
fi
chmod 755 "$work/rodir"
echo "bad --ckpt-dir and --log: refused at start; a missing --ckpt-dir is created"

# 8. a full disk: checkpoints and the log
if mkdir "$work/fs" && mount -t tmpfs -o size=2m tmpfs "$work/fs" 2>/dev/null; then
    mnt="$work/fs"
    # one 1.4 MB checkpoint fits, a second (written beside the first) does not
    train full.out --steps 4 --ckpt-every 1 --ckpt-dir "$mnt/run"
    expect 1 full.out "checkpoint of step 2 failed (earlier checkpoints are kept): .*No space"
    ls "$mnt/run" | grep -q tmp && fail "temp file left on the full disk"
    gen "$mnt/run/ckpt_00000001.bin"
    rm -rf "$mnt/run"
    dd if=/dev/zero of="$mnt/fill" bs=64k 2>/dev/null || true
    train full.out --steps 4 --log "$mnt/log.csv"
    expect 1 full.out "log .*log.csv.*No space"
    umount "$mnt"; mnt=
    echo "full tmpfs: checkpoint and log write errors are loud, the earlier checkpoint kept"
else
    echo "SKIP full tmpfs: cannot mount here (needs root); using /dev/full for the log"
fi
train full.out --steps 4 --log /dev/full
expect 1 full.out "log /dev/full: write failed: No space"
# 9. under mpirun only rank 0 locks and logs, but when it cannot, every rank stops (no hang)
build=${PARLM_BUILDDIR:-.}
if grep -q "define PARLM_HAVE_MPI 1" "$build/config.h" 2>/dev/null && command -v mpirun > /dev/null; then
    root=""
    [ "$(id -u)" -ne 0 ] || root="--allow-run-as-root"
    mpi() { # mpi OUT ARGS...: two ranks, sets $rc
        out=$1; shift
        set +e
        # shellcheck disable=SC2086
        OMP_NUM_THREADS=1 ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
            timeout 120 mpirun $root --oversubscribe --mca btl self,vader \
            --mca btl_vader_single_copy_mechanism none -np 2 "$bin/parlm-train" \
            --data "$work/corpus.txt" -b 2 -t 32 --model tiny --threads 1 --val-every 0 \
            --sample-every 0 --quiet "$@" > "$work/$out" 2>&1
        rc=$?
        set -e
    }
    d="$work/mpi"
    "$bin/parlm-train" --data "$work/corpus.txt" -b 2 -t 32 --model tiny --threads 1 \
        --val-every 0 --sample-every 0 --quiet --steps 100000 --ckpt-every 1000 \
        --ckpt-dir "$d" > "$work/holder.out" 2>&1 &
    holder=$!
    wait_for "$work/holder.out" "^compute:"
    mpi mpi.out --steps 4 --ckpt-dir "$d"
    kill -TERM "$holder"; wait "$holder" || true
    [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "2 ranks on a locked directory: exit $rc"
    grep -q "in use by pid $holder@" "$work/mpi.out" || fail "the holder is not named"
    mpi mpi.out --steps 4 --log /dev/full
    [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "2 ranks, log on a full disk: exit $rc"
    grep -q "write failed: No space" "$work/mpi.out" || fail "no log write error under MPI"
    echo "mpirun -np 2: a locked --ckpt-dir and a failing --log stop every rank"
else
    echo "SKIP mpirun cases: no MPI build or no mpirun"
fi
echo "ckpt_faults: all cases passed"
