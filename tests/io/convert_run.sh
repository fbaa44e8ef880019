#!/usr/bin/env bash
# tests/convert_run.sh — parlm-convert end to end: GGUF -> llm.c -> checkpoint ->
# safetensors -> GGUF in f32 gives back the same bytes; Python's standard library (an
# independent reader) finds the safetensors layout and HF's transposed Conv1D weights
# equal to the llm.c file's; a Llama model through safetensors, a checkpoint and
# --shard-size shards gives back the same GGUF bytes, and Python finds every tensor in
# exactly one shard, as the index says; bf16 through llm.c equals bf16 written directly; the
# quantized types and the tokenizer are written; bad requests fail with a message.
set -euo pipefail
B=${PARLM_BUILDDIR:-$(pwd)}
cv=$B/apps/parlm-convert
tmp=$(mktemp -d "${TMPDIR:-/tmp}/parlm-convert.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
fail() { echo "convert_run: FAIL: $*"; exit 1; }

"$B/tests/io/gguf_tool" write m.gguf                       # Q8_0 matrices
"$cv" m.gguf a.gguf | grep -q "wrote a.gguf: gguf, GPT-2 L1 NH2 C32 maxT8 V16" || fail "gguf -> gguf"
"$cv" a.gguf a.bin >/dev/null
"$cv" a.bin a.ckpt >/dev/null
mkdir hf
"$cv" a.ckpt hf/model.safetensors | grep -q "config.json beside it" || fail "-> safetensors"
"$cv" hf/model.safetensors b.gguf >/dev/null
cmp -s a.gguf b.gguf || fail "f32 through llm.c, a checkpoint and safetensors changed the GGUF bytes"
if command -v python3 >/dev/null; then
python3 - a.bin hf/model.safetensors hf/config.json <<'PY' || fail "python3 reads the safetensors file differently"
import json, struct, sys
llmc, st, cfg = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read(), json.load(open(sys.argv[3]))
h = struct.unpack("<256i", llmc[:1024])
T, V, L, NH, C, Vp = h[2:8]                          # llm.c: maxT, V, L, NH, C, Vp
assert (cfg["n_layer"], cfg["n_head"], cfg["n_embd"], cfg["n_positions"], cfg["vocab_size"]) == (L, NH, C, T, V), cfg
n = struct.unpack("<Q", st[:8])[0]
hdr = json.loads(st[8:8 + n]); data = st[8 + n:]
hdr.pop("__metadata__", None)
spans = sorted(tuple(e["data_offsets"]) for e in hdr.values())
assert spans[0][0] == 0 and spans[-1][1] == len(data) and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
f = lambda buf, off, cnt: struct.unpack("<%df" % cnt, buf[off:off + 4 * cnt])
# llm.c v3 order: wte (Vp,C) wpe (T,C) ln1w ln1b (L,C) qkvw (L,3C,C) ...
base = 1024 + 4 * (Vp * C + T * C + 2 * L * C)
qkv = f(llmc, base, 3 * C * C)                       # layer 0, (3C, C)
e = hdr["h.0.attn.c_attn.weight"]; assert e["shape"] == [C, 3 * C] and e["dtype"] == "F32"
hf = f(data, e["data_offsets"][0], 3 * C * C)        # (C, 3C)
assert all(hf[i * 3 * C + o] == qkv[o * C + i] for o in range(3 * C) for i in range(C))
wte = hdr["wte.weight"]; assert wte["shape"] == [V, C]
assert f(data, wte["data_offsets"][0], V * C) == f(llmc, 1024, V * C)
PY
fi
# Llama: GGUF -> safetensors -> checkpoint -> sharded safetensors -> GGUF, the same bytes
"$B/tests/io/gguf_tool" write m.gguf >/dev/null                       # also m.gguf.llama.gguf
"$cv" m.gguf.llama.gguf la.gguf | grep -q "Llama L1 NH4 NKV2 C32 F48" || fail "llama gguf -> gguf"
mkdir lhf
"$cv" la.gguf lhf/model.safetensors | grep -q "Llama .*config.json beside it" || fail "llama -> safetensors"
grep -q '"LlamaForCausalLM"' lhf/config.json || fail "llama config.json"
"$cv" lhf la.ckpt >/dev/null
"$cv" la.ckpt lsh --shard-size 4KB | grep -q "shards + model.safetensors.index.json" || fail "--shard-size"
"$cv" lsh/model.safetensors.index.json lb.gguf >/dev/null
cmp -s la.gguf lb.gguf || fail "f32 Llama through safetensors, a checkpoint and shards changed the GGUF bytes"
if command -v python3 >/dev/null; then
python3 - lsh <<'PY' || fail "python3 reads the shards and the index differently"
import json, os, struct, sys
d = sys.argv[1]
idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
seen, total = {}, 0
for f in sorted(set(idx["weight_map"].values())):
    b = open(os.path.join(d, f), "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    hdr = json.loads(b[8:8 + n]); hdr.pop("__metadata__", None)
    assert sum(e["data_offsets"][1] - e["data_offsets"][0] for e in hdr.values()) <= 4000 or len(hdr) == 1, f
    for k, e in hdr.items():
        assert k not in seen, (k, f, seen.get(k))
        seen[k] = f
        total += e["data_offsets"][1] - e["data_offsets"][0]
assert seen == idx["weight_map"], "the index and the shards disagree"
assert total == idx["metadata"]["total_size"], (total, idx["metadata"])
assert "lm_head.weight" in seen and "model.layers.0.self_attn.k_proj.weight" in seen
PY
fi
"$cv" m.gguf gsh --shard-size 20KB >/dev/null
"$cv" gsh g.gguf >/dev/null
"$cv" m.gguf g0.gguf >/dev/null
cmp -s g0.gguf g.gguf || fail "GPT-2 through shards changed the GGUF bytes"

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
expect_error "safetensors file holds" a.gguf z.safetensors --type q8_0
rm hf/config.json
expect_error "config.json" hf/model.safetensors z.gguf
expect_error "cannot open" missing.gguf z.gguf
head -c 100 m.gguf > cut.gguf
expect_error "cut.gguf" cut.gguf z.gguf
expect_error "go together" a.gguf z.gguf --encoder a.gguf
expect_error "type" a.gguf z.gguf --type q5_k
expect_error "shard-size" a.gguf zdir --shard-size 2XB
expect_error "shard-size" a.gguf zdir --shard-size 0
expect_error "writes safetensors" a.gguf zdir --shard-size 1MB --format gguf
expect_error "GPT-2 models only" la.gguf z.bin
rm lsh/model-00002-of-*.safetensors
expect_error "model-00002-of-" lsh z.gguf
[ ! -e z.gguf ] && [ ! -e z.bin ] && [ ! -e z.safetensors ] && [ ! -e zdir ] || fail "a failed conversion left a file"
sd=${PARLM_SHARED_DATA:-}
if [ -n "$sd" ] && [ -f "$sd/gpt2/encoder.json" ]; then
    expect_error "50257 tokens" a.gguf z.gguf --encoder "$sd/gpt2/encoder.json" --vocab "$sd/gpt2/vocab.bpe"
fi
"$cv" --help | grep -q "usage: parlm-convert" || fail "--help"
echo "convert_run: ok"
