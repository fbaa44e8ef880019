#!/usr/bin/env bash
# tests/io/gguf_run.sh — a GGUF file runs with no other file: parlm-generate MODEL.gguf
# takes the model and its tokenizer from the file (GPT-2 byte-level BPE written by
# parlm-convert --encoder/--vocab; Llama SentencePiece with BOS) and prints the same greedy
# text as parlm-generate on the equivalent checkpoint with separate tokenizer files, in f32
# and in Q8_0 / Q4_0, which a quantized file decodes on by default (--type overrides).
# Errors: a truncated file, a file without tokenizer keys (named, with the options that
# give a tokenizer; a byte-level one runs on bytes), a bad --type.
set -euo pipefail
B=${PARLM_BUILDDIR:-$(pwd)}
gen=$B/apps/parlm-generate
cv=$B/apps/parlm-convert
tool=$B/tests/io/gguf_run_tool
tmp=$(mktemp -d "${TMPDIR:-/tmp}/parlm-ggufrun.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
fail() { echo "gguf_run: FAIL: $*"; [ -f err.txt ] && cat err.txt; exit 1; }

"$tool" write .
"$cv" gpt2.ckpt gpt2.gguf --encoder encoder.json --vocab vocab.bpe | grep -q "GPT-2 tokenizer" ||
    fail "parlm-convert --encoder/--vocab"
for t in q8_0 q4_0; do
    "$cv" gpt2.ckpt "gpt2_$t.gguf" --type "$t" --encoder encoder.json --vocab vocab.bpe >/dev/null
    "$cv" "gpt2_$t.gguf" "gpt2_$t.ckpt" >/dev/null      # the file's (dequantized) weights
    "$cv" "llama_$t.gguf" "llama_$t.ckpt" >/dev/null
done

# parlm-convert --tokenizer stores a GGUF file's Llama tokenizer: the same file as the
# library call writes
"$cv" llama.ckpt conv_q8_0.gguf --type q8_0 --tokenizer llama.gguf | grep -q "Llama L2 NH4 NKV2 C64 .*Llama tokenizer" ||
    fail "parlm-convert --tokenizer"
cmp -s conv_q8_0.gguf llama_q8_0.gguf || fail "parlm-convert --tokenizer wrote another file"

prompt="hello the world"
# run ARGS...: the greedy text (stdout), the summary line in err.txt
run() { "$gen" --threads 2 "$@" --prompt "$prompt" --max-tokens 24 --temperature 0 2>err.txt; }
same() { # same WHAT "ARGS A" "ARGS B" TYPE: both print the same text, A on TYPE weights
    local a b
    a=$(run $2) || fail "$1: parlm-generate $2"
    grep -q "($4 weights" err.txt || fail "$1: parlm-generate $2 did not run on $4 weights"
    b=$(run $3) || fail "$1: parlm-generate $3"
    [ "$a" = "$b" ] || fail "$1: '$a' (parlm-generate $2) != '$b' (parlm-generate $3)"
    [ "${#a}" -gt "$((${#prompt} + 4))" ] || fail "$1: hardly any text generated: '$a'"
}
gpt2_tok="--encoder encoder.json --vocab vocab.bpe"
same "gpt2 f32" "gpt2.gguf" "--ckpt gpt2.ckpt $gpt2_tok" f32
same "llama f32" "llama.gguf" "--ckpt llama.ckpt --tokenizer llama.gguf" f32
for t in q8_0 q4_0; do
    # --type t loads a copy: its decode runs on the file's blocks, as its weights in a
    # checkpoint decoded as t
    same "gpt2 $t" "gpt2_$t.gguf --type $t" "gpt2_$t.ckpt $gpt2_tok --type $t" "$t"
    same "llama $t" "llama_$t.gguf --type $t" "llama_$t.ckpt --tokenizer llama.gguf --type $t" "$t"
    # by default the file runs in place (mapped: prompts too on the blocks, with 8-bit
    # activations), the same text on 1 and 2 threads
    for m in gpt2 llama; do
        a=$(run "${m}_$t.gguf") || fail "$m $t in place"
        grep -q "${m}_$t.gguf runs in place: its $t matrices are mapped, not copied" err.txt ||
            fail "$m $t: not run in place: $(cat err.txt)"
        grep -q "($t weights" err.txt || fail "$m $t in place: not on $t weights"
        b=$(run "${m}_$t.gguf" --threads 1) || fail "$m $t in place, 1 thread"
        grep -q "1 thread" err.txt || fail "$m $t: --threads 1 not taken: $(cat err.txt)"
        [ "$a" = "$b" ] || fail "$m $t in place: '$a' (2 threads) != '$b' (1 thread)"
        [ "${#a}" -gt "$((${#prompt} + 4))" ] || fail "$m $t in place: hardly any text: '$a'"
    done
    # --type overrides the file's
    same "llama $t --type f32" "llama_$t.gguf --type f32" "llama_$t.ckpt --tokenizer llama.gguf" f32
done
same "llama bf16" "llama.gguf --type bf16" "llama.ckpt --tokenizer llama.gguf --bf16" bf16
# a file of bf16 matrices runs in bf16 by default
"$cv" llama.ckpt llama_bf16.gguf --type bf16 --tokenizer llama.gguf >/dev/null
"$cv" llama_bf16.gguf llama_bf16.ckpt >/dev/null
same "llama bf16 file" "llama_bf16.gguf" "llama_bf16.ckpt --tokenizer llama.gguf --bf16" bf16

# the Llama prompt starts with BOS: a prompt of only "<s>"-free text still gives text
run llama.gguf --max-tokens 4 > /dev/null || fail "llama with no prompt"

expect_error() { # expect_error PATTERN ARGS...: exit status != 0 and the message
    local pat=$1; shift
    if "$gen" "$@" --max-tokens 2 > out.txt 2>&1; then fail "parlm-generate $* succeeded"; fi
    grep -q -- "$pat" out.txt || { cat out.txt; fail "parlm-generate $*: no '$pat'"; }
}
head -c 3000 llama.gguf > cut.gguf
expect_error "cut.gguf" cut.gguf
"$cv" gpt2.ckpt notok.gguf >/dev/null                   # no tokenizer keys
expect_error "notok.gguf holds no tokenizer: metadata key tokenizer.ggml.model is missing" notok.gguf
expect_error "--tokenizer FILE.gguf" notok.gguf
expect_error "notok.gguf holds no tokenizer" --ckpt llama.ckpt --tokenizer notok.gguf
# ... and with the tokenizer given instead, it runs as the file that has one
same "gpt2 tokenizer given" "notok.gguf $gpt2_tok" "gpt2.gguf" f32
# a byte-level model (vocabulary <= 256) without tokenizer keys runs on bytes, as its
# checkpoint does
"$cv" bytes.ckpt bytes.gguf --type q8_0 >/dev/null
"$gen" bytes.gguf --max-tokens 3 > out.txt 2>&1 || { cat out.txt; fail "a byte-level GGUF"; }
grep -q "(q8_0 weights" out.txt || { cat out.txt; fail "a byte-level GGUF's q8_0"; }
expect_error "is not f32, bf16, q8_0 or q4_0" llama.gguf --type q5_k
expect_error "give one of --type" llama.gguf --type q8_0 --bf16
expect_error "give one tokenizer" llama.gguf --tokenizer llama.gguf $gpt2_tok
expect_error "give one MODEL" llama.gguf --ckpt llama.ckpt
"$gen" --help | grep -q "usage: parlm-generate MODEL" || fail "--help"
echo "gguf_run: ok"
