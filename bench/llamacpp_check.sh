#!/usr/bin/env bash
# bench/llamacpp_check.sh — by hand: a parlm GPT-2 model exported to GGUF, run by llama.cpp
# and by parlm on the same text, perplexity side by side (f32, Q8_0, Q4_0; parlm decoding a
# token at a time and running the file in place, a chunk at once), and a greedy
# continuation of a prompt from both. Needs a llama.cpp build (not a Debian package):
#   LLAMA_CPP=/path/to/llama.cpp/build/bin bench/llamacpp_check.sh MODEL TEXT [CTX]
# MODEL: a parlm checkpoint or llm.c file with GPT-2's vocabulary; TEXT: any text file;
# CTX (default 128): at most the model's context. GPT-2's encoder.json and vocab.bpe come
# from $GPT2_DIR (default ../shared/data/gpt2). QUANTIZER=llama.cpp quantizes with llama.cpp's
# llama-quantize (--pure) instead of parlm-convert: parlm then runs llama.cpp's own blocks.
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1 text=$2 ctx=${3:-128}
L=${LLAMA_CPP:?set LLAMA_CPP to the build/bin directory of llama.cpp}
D=${GPT2_DIR:-../shared/data/gpt2}
B=build/apps
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gcc -O2 -fopenmp -Iinclude -Ibuild/include bench/llamacpp_ppl.c -o "$tmp/ppl" \
    -Lbuild/lib/.libs -lparlm -lm -Wl,-rpath,"$PWD/build/lib/.libs"
for t in f32 q8_0 q4_0; do
    if [ "${QUANTIZER:-parlm}" = llama.cpp ] && [ $t != f32 ]; then
        "$L/llama-quantize" --pure "$tmp/m-f32.gguf" "$tmp/m-$t.gguf" "${t^^}" >/dev/null 2>&1
    else
        $B/parlm-convert "$model" "$tmp/m-$t.gguf" --type $t --encoder "$D/encoder.json" \
            --vocab "$D/vocab.bpe" >/dev/null
    fi
    # parlm scores the GGUF's own (de)quantized weights: the file read back, decoded as $t
    $B/parlm-convert "$tmp/m-$t.gguf" "$tmp/m-$t.ckpt" >/dev/null
    echo "== $t"
    "$L/llama-perplexity" -m "$tmp/m-$t.gguf" -f "$text" -c "$ctx" -b "$ctx" 2>&1 |
        grep "Final estimate" | sed 's/^/llama.cpp: /'
    "$tmp/ppl" "$tmp/m-$t.ckpt" "$D/encoder.json" "$D/vocab.bpe" "$text" "$ctx" $t
    # the file run in place: a chunk a batched forward, as llama-perplexity evaluates it
    "$tmp/ppl" "$tmp/m-$t.gguf" "$D/encoder.json" "$D/vocab.bpe" "$text" "$ctx" mapped
done
prompt=${PROMPT:-The meaning of life is}
# parlm-generate starts a GPT-2 prompt with <|endoftext|> (the document separator it was
# trained on, as llm.c does); llama.cpp's gpt2 vocabulary adds no BOS, so it is given the
# token as text (llama-simple parses special tokens) and its echo is cut off again
"$L/llama-simple" -m "$tmp/m-f32.gguf" -n 24 "<|endoftext|>$prompt" 2>/dev/null |
    sed '1s/^<|endoftext|>//' >"$tmp/llama.txt"
$B/parlm-generate --ckpt "$tmp/m-f32.ckpt" --encoder "$D/encoder.json" --vocab "$D/vocab.bpe" \
    --prompt "$prompt" --temperature 0 --max-tokens 24 2>/dev/null >"$tmp/parlm.txt"
if cmp -s "$tmp/llama.txt" "$tmp/parlm.txt"; then
    echo "greedy, 24 tokens after '$prompt': the same text"
else
    echo "greedy, 24 tokens after '$prompt': the texts differ"
    diff "$tmp/llama.txt" "$tmp/parlm.txt" || true
fi
