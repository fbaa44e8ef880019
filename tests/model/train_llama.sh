#!/bin/sh
# tests/train_llama.sh — parlm-train --model llama-15m end to end on a generated text corpus
# (byte tokens: the vocabulary comes from the data, as for GPT-2): the loss falls, 4 steps
# in one run equal 2 + --resume 2 byte for byte (the version 3 checkpoint carries the Llama
# config), parlm-generate runs the checkpoint (f32, bf16, Q8_0 and Q4_0 decode), a GGUF
# round trip and a sharded safetensors one generate the same text, and parlm-serve answers
# parlm-generate's greedy text.
set -eu
bin=${PARLM_BUILDDIR:-.}/apps
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seq 1 6000 | awk '{ print "line " $1 " says " ($1 * 7) % 13 "." }' > "$work/corpus.txt"
run() {
    "$bin/parlm-train" --data "$work/corpus.txt" -b 4 -t 32 --model llama-15m \
        --val-every 0 --sample-every 0 --threads 2 --lr 3e-3 "$@" > "$work/out.txt" 2>&1 ||
        { cat "$work/out.txt"; exit 1; }
}
# the loss falls: from ~ln 256 = 5.5 at the first step to below 3.5 after 40 steps
run --steps 40 --ckpt-dir "$work/l" --ckpt-every 40
grep -q "llama: 2 KV heads, SwiGLU 768, tied head" "$work/out.txt" || { cat "$work/out.txt"; exit 1; }
first=$(grep "^step " "$work/out.txt" | head -1 | sed 's/.*| loss \([0-9.]*\) .*/\1/')
last=$(grep "^step " "$work/out.txt" | tail -1 | sed 's/.*| loss \([0-9.]*\) .*/\1/')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(a > 5.0 && b < 3.5) }' ||
    { echo "llama-15m loss $first -> $last"; cat "$work/out.txt"; exit 1; }
echo "llama-15m trains: loss $first -> $last in 40 steps"
# 4 steps == 2 + resume 2, byte for byte
run --steps 4 --ckpt-dir "$work/a" --ckpt-every 2 --quiet
run --steps 4 --ckpt-dir "$work/b" --ckpt-every 2 --quiet --stop-at 2
run --steps 4 --ckpt-dir "$work/b" --ckpt-every 2 --quiet --resume
grep -q "resume: .*step 2" "$work/out.txt"
cmp "$work/a/ckpt_00000004.bin" "$work/b/ckpt_00000004.bin"
echo "resume: byte-identical Llama checkpoints after 2 + 2 and 4 steps"
# generation from the checkpoint, f32 and bf16
for extra in "" "--bf16"; do
    # shellcheck disable=SC2086
    "$bin/parlm-generate" --ckpt "$work/l" --prompt "line 1" --max-tokens 20 $extra \
        > "$work/gen.txt" 2>&1 || { cat "$work/gen.txt"; exit 1; }
    grep -q "decode: " "$work/gen.txt" || { cat "$work/gen.txt"; exit 1; }
done
# and on 8- and 4-bit copies of the weights (the decode line names them)
for t in q8_0 q4_0; do
    "$bin/parlm-generate" --ckpt "$work/l" --prompt "line 1" --max-tokens 20 --decode-type $t \
        > "$work/gen.txt" 2>&1 || { cat "$work/gen.txt"; exit 1; }
    grep -q "tokens/s ($t weights" "$work/gen.txt" || { cat "$work/gen.txt"; exit 1; }
done
# GGUF (llama.cpp's "llama" layout) and back: the same weights, so the same greedy text
"$bin/parlm-convert" "$work/l/ckpt_00000040.bin" "$work/l.gguf" > "$work/conv.txt" 2>&1 ||
    { cat "$work/conv.txt"; exit 1; }
"$bin/parlm-convert" "$work/l.gguf" "$work/back.ckpt" > "$work/conv.txt" 2>&1 ||
    { cat "$work/conv.txt"; exit 1; }
# Hugging Face safetensors in 20 MB shards and back
"$bin/parlm-convert" "$work/l/ckpt_00000040.bin" "$work/hf" --shard-size 20MB > "$work/conv.txt" 2>&1 ||
    { cat "$work/conv.txt"; exit 1; }
"$bin/parlm-convert" "$work/hf" "$work/back_st.ckpt" > "$work/conv.txt" 2>&1 ||
    { cat "$work/conv.txt"; exit 1; }
for ck in "$work/l/ckpt_00000040.bin" "$work/back.ckpt" "$work/back_st.ckpt"; do
    "$bin/parlm-generate" --ckpt "$ck" --prompt "line 1" --max-tokens 24 --temperature 0 \
        2>/dev/null > "$ck.txt" || { echo "generate from $ck failed"; exit 1; }
done
cmp "$work/l/ckpt_00000040.bin.txt" "$work/back.ckpt.txt" ||
    { echo "a Llama checkpoint and its GGUF round trip generate different text"; exit 1; }
cmp "$work/l/ckpt_00000040.bin.txt" "$work/back_st.ckpt.txt" ||
    { echo "a Llama checkpoint and its sharded safetensors round trip generate different text"; exit 1; }
echo "GGUF, safetensors: a Llama checkpoint through either and back generates the same text"
# the batched server runs the trained Llama too: a greedy completion equal to
# parlm-generate's (the prompt as the ids parlm-generate starts from: a newline, then
# the bytes of "line 1")
if [ -x "$bin/parlm-serve" ] && command -v curl >/dev/null && command -v python3 >/dev/null; then
    "$bin/parlm-generate" --ckpt "$work/l" --prompt "line 1" --max-tokens 24 --temperature 0 \
        --threads 2 2>/dev/null > "$work/gen.txt"
    "$bin/parlm-serve" --model "$work/l" --port 0 --threads 2 --kv-mb 8 > "$work/serve.txt" 2>&1 &
    spid=$!
    port=""
    for _ in $(seq 1 200); do
        port=$(sed -n 's|.*on http://127.0.0.1:\([0-9]*\).*|\1|p' "$work/serve.txt")
        [ -n "$port" ] && break
        sleep 0.05
    done
    [ -n "$port" ] || { echo "parlm-serve of a Llama checkpoint did not start"; cat "$work/serve.txt"; kill -9 $spid; exit 1; }
    curl -s "http://127.0.0.1:$port/v1/completions" \
        -d '{"prompt":[10,108,105,110,101,32,49],"max_tokens":24,"temperature":0}' > "$work/resp.json"
    kill -TERM $spid
    wait $spid
    python3 - "$work/gen.txt" "$work/resp.json" <<'PY' || { cat "$work/serve.txt"; exit 1; }
import json, sys
gen = open(sys.argv[1], "rb").read()
text = json.load(open(sys.argv[2]))["choices"][0]["text"].encode()
assert gen == b"line 1" + text + b"\n", (gen, text)
PY
    echo "serve: a Llama checkpoint's greedy completion equals parlm-generate's"
    echo "5 passed, 0 failed"
else
    echo "4 passed, 0 failed (no parlm-serve, curl or python3: the server not run)"
fi
