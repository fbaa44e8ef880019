#!/usr/bin/env bash
# tests/convert_run.sh — parlm-convert end to end: GGUF -> llm.c -> checkpoint -> GGUF
# in f32 gives back the same bytes; bf16 through llm.c equals bf16 written directly; the
# quantized types and the tokenizer are written; bad requests fail with a message.
set -euo pipefail
B=${PARLM_BUILDDIR:-$(pwd)}
cv=$B/apps/parlm-convert
tmp=$(mktemp -d "${TMPDIR:-/tmp}/parlm-convert.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
fail() { echo "convert_run: FAIL: $*"; exit 1; }

"$B/tests/gguf_tool" write m.gguf                       # Q8_0 matrices
"$cv" m.gguf a.gguf | grep -q "wrote a.gguf: gguf, GPT-2 L1 NH2 C32 maxT8 V16" || fail "gguf -> gguf"
"$cv" a.gguf a.bin >/dev/null
"$cv" a.bin a.ckpt >/dev/null
"$cv" a.ckpt b.gguf >/dev/null
cmp -s a.gguf b.gguf || fail "f32 through llm.c and a checkpoint changed the GGUF bytes"
"$cv" a.gguf c.bin --type bf16 >/dev/null
"$cv" c.bin d.gguf --type bf16 >/dev/null
"$cv" a.gguf e.gguf --type bf16 >/dev/null
cmp -s d.gguf e.gguf || fail "bf16 through llm.c differs from bf16 written directly"
for t in f16 q8_0 q4_0; do
    "$cv" a.gguf "$t.gguf" --type "$t" | grep -q "$t weights" || fail "--type $t"
    "$cv" "$t.gguf" "$t.bin" >/dev/null || fail "reading back $t"
done
[ "$(stat -c %s q4_0.gguf)" -lt "$(stat -c %s q8_0.gguf)" ] || fail "q4_0 not smaller than q8_0"
"$cv" a.gguf x.gguf --format llmc >/dev/null
"$cv" x.gguf y.gguf >/dev/null && cmp -s a.gguf y.gguf || fail "--format llmc"

expect_error() { # expect_error PATTERN ARGS...: exit status != 0 and the message
    local pat=$1; shift
    if "$cv" "$@" > out.txt 2>&1; then fail "parlm-convert $* succeeded"; fi
    grep -q -- "$pat" out.txt || { cat out.txt; fail "parlm-convert $*: no '$pat'"; }
}
expect_error "holds f32 or bf16" a.gguf z.bin --type q8_0
expect_error "checkpoint holds f32" a.gguf z.ckpt --type q4_0
expect_error "cannot open" missing.gguf z.gguf
head -c 100 m.gguf > cut.gguf
expect_error "cut.gguf" cut.gguf z.gguf
expect_error "go together" a.gguf z.gguf --encoder a.gguf
expect_error "type" a.gguf z.gguf --type q5_k
[ ! -e z.gguf ] && [ ! -e z.bin ] || fail "a failed conversion left a file"
sd=${PARLM_SHARED_DATA:-}
if [ -n "$sd" ] && [ -f "$sd/gpt2/encoder.json" ]; then
    expect_error "50257 tokens" a.gguf z.gguf --encoder "$sd/gpt2/encoder.json" --vocab "$sd/gpt2/vocab.bpe"
fi
"$cv" --help | grep -q "usage: parlm-convert" || fail "--help"
echo "convert_run: ok"
