#!/bin/sh
# tests/train_resume.sh — parlm-train end to end on a generated text corpus: 6 steps in
# one run, and 3 steps + --resume for the other 3, must leave byte-identical checkpoints
# (parameters, AdamW state, data position, RNG). Also: bad arguments fail cleanly.
set -eu
bin=${PARLM_BUILDDIR:-.}/apps
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seq 1 6000 | awk '{ print "line " $1 " says " ($1 * 7) % 13 "." }' > "$work/corpus.txt"
run() {
    "$bin/parlm-train" --data "$work/corpus.txt" -b 2 -t 32 --model tiny --steps 6 \
        --val-every 3 --val-steps 2 --sample-every 3 --sample-len 8 --ckpt-every 3 \
        --threads 2 --quiet "$@" > "$work/out.txt" 2>&1 || { cat "$work/out.txt"; exit 1; }
}
run --ckpt-dir "$work/a"
run --ckpt-dir "$work/b" --stop-at 3
test -f "$work/b/ckpt_00000003.bin" && ! test -f "$work/b/ckpt_00000006.bin"
run --ckpt-dir "$work/b" --resume
grep -q "resume: .*step 3" "$work/out.txt"
cmp "$work/a/ckpt_00000006.bin" "$work/b/ckpt_00000006.bin"
echo "resume: byte-identical checkpoints after 3 + 3 and 6 steps"

# a fresh run never overwrites another run's checkpoints
if "$bin/parlm-train" --data "$work/corpus.txt" -b 2 -t 32 --model tiny --steps 2 \
    --ckpt-dir "$work/a" --threads 2 > "$work/out.txt" 2>&1; then
    echo "a fresh run into a used --ckpt-dir was accepted"; exit 1
fi
grep -q "already holds checkpoints" "$work/out.txt"
cmp "$work/a/ckpt_00000006.bin" "$work/b/ckpt_00000006.bin"

# a resumed run must keep the batch geometry
if "$bin/parlm-train" --data "$work/corpus.txt" -b 3 -t 32 --model tiny --steps 9 \
    --ckpt-dir "$work/b" --resume --threads 2 > "$work/out.txt" 2>&1; then
    echo "resume with another -b was accepted"; exit 1
fi
grep -q "trained with -b 2" "$work/out.txt"
# bad values and unknown options: exit 2 with a message, not a crash
for args in "-b 0" "--lr x" "--bogus" "--model d13 --data $work/corpus.txt"; do
    set +e
    # shellcheck disable=SC2086
    "$bin/parlm-train" $args > "$work/out.txt" 2>&1
    rc=$?
    set -e
    if [ "$rc" -eq 0 ] || [ "$rc" -gt 2 ] || ! [ -s "$work/out.txt" ]; then
        echo "parlm-train $args: exit $rc"; cat "$work/out.txt"; exit 1
    fi
done
# generation from the checkpoint works and reports its speed
"$bin/parlm-generate" --ckpt "$work/a" --prompt "line 1" --max-tokens 20 > "$work/gen.txt" 2>&1
grep -q "decode: " "$work/gen.txt"
# and on 8- and 4-bit copies of the weights (the decode line names them)
for t in q8_0 q4_0; do
    "$bin/parlm-generate" --ckpt "$work/a" --prompt "line 1" --max-tokens 20 --decode-type $t \
        > "$work/gen.txt" 2>&1 || { cat "$work/gen.txt"; exit 1; }
    grep -q "tokens/s ($t weights" "$work/gen.txt" || { cat "$work/gen.txt"; exit 1; }
done
echo "2 passed, 0 failed"
