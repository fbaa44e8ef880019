#!/usr/bin/env bash
# .ci/fuzz.sh — coverage-guided fuzzing of parlm's file parsers (and of parlm-serve's
# request parser and the planner's JSON files) with libFuzzer for a
# bounded time (FUZZ_SECONDS, default 60). Builds an instrumented
# library with clang (-fsanitize=fuzzer-no-link,address,undefined) out of tree in
# build-fuzz/, seeds the corpus with valid files, and fails on any crash or report.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-60}
if ! command -v clang >/dev/null || ! dpkg -s libclang-rt-14-dev libomp-14-dev >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang-14 \
        libclang-rt-14-dev libomp-14-dev >/dev/null
fi
CLANG=$(command -v clang || command -v clang-14)
san="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
mkdir -p build-fuzz
# -O1 does not vectorize: clang would warn about every `omp simd` loop it leaves scalar
if [ ! -f build-fuzz/config.status ]; then
    (cd build-fuzz && ../configure -q CC="$CLANG" CFLAGS="-g -O1 $san -Wno-pass-failed" --disable-shared)
fi
make -C build-fuzz -j"$(nproc)" lib/libparlm_core.la lib/libparlm_serve.la apps/parlm-prepare \
    apps/parlm-plan tests/io/gguf_tool >/dev/null
hw=$(pkg-config --libs hwloc) ob=$(pkg-config --libs openblas 2>/dev/null || true) mpi=$(pkg-config --libs ompi-c) js=$(pkg-config --libs jansson)
# shellcheck disable=SC2086
"$CLANG" -g -O1 -fsanitize=fuzzer,address,undefined -fopenmp -Iinclude -Ibuild-fuzz/include \
    tests/fuzz/fuzz_files.c build-fuzz/lib/.libs/libparlm_core.a $hw $js $ob $mpi -lm \
    -o build-fuzz/fuzz_files
# shellcheck disable=SC2086
"$CLANG" -g -O1 -fsanitize=fuzzer,address,undefined -fopenmp -Iinclude -Ibuild-fuzz/include \
    tests/fuzz/fuzz_formats.c build-fuzz/lib/.libs/libparlm_core.a $hw $js $ob $mpi -lm \
    -o build-fuzz/fuzz_formats
# shellcheck disable=SC2086
"$CLANG" -g -O1 -fsanitize=fuzzer,address,undefined -fopenmp -Iinclude -Ibuild-fuzz/include \
    tests/fuzz/fuzz_request.c build-fuzz/lib/.libs/libparlm_serve.a \
    build-fuzz/lib/.libs/libparlm_core.a $hw $js $ob $mpi -lm -o build-fuzz/fuzz_request
# shellcheck disable=SC2086
"$CLANG" -g -O1 -fsanitize=fuzzer,address,undefined -fopenmp -Iinclude -Ibuild-fuzz/include \
    tests/fuzz/fuzz_plan.c build-fuzz/lib/.libs/libparlm_core.a $hw $js $ob $mpi -lm \
    -o build-fuzz/fuzz_plan

# seeds: one valid file per parser, prefixed with its selector byte
corpus=build-fuzz/corpus
rm -rf "$corpus" && mkdir -p "$corpus"
seq 1 300 | awk '{ print "word" $1 }' > build-fuzz/seed.txt
build-fuzz/apps/parlm-prepare --out build-fuzz/seedshards --val-tokens 100 build-fuzz/seed.txt >/dev/null 2>&1
{ printf '\0'; head -c 1400 build-fuzz/seedshards/corpus_val_000000.bin; } > "$corpus/shard"
python3 - "$corpus" <<'PY'
import struct, sys
d = sys.argv[1]
# llm.c tokenizer (selector 3): version 2, tokens "a", "bc", "<eot>"
toks = [b"a", b"bc", b"<eot>"]
open(d + "/llmc_tok", "wb").write(b"\3" + struct.pack("<256i", 20240328, 2, 3, 2, *[0] * 252) +
                                  b"".join(bytes([len(t)]) + t for t in toks))
# llm.c model (selector 1): L=1 NH=1 C=1 maxT=1 V=1 Vp=1 -> 29 f32 parameters
params = struct.pack("<29f", *[0.5] * 29)
open(d + "/llmc_model", "wb").write(b"\1" + struct.pack("<256i", 20240326, 3, 1, 1, 1, 1, 1, 1,
                                                        *[0] * 248) + params)
# parlm checkpoint (selector 2): 64 uint64 header slots, FNV-1a of the payload
h = 0xcbf29ce484222325
for i in range(0, len(params) - len(params) % 8, 8):
    h = ((h ^ struct.unpack("<Q", params[i:i + 8])[0]) * 0x100000001b3) & (2**64 - 1)
for b in params[len(params) - len(params) % 8:]:
    h = ((h ^ b) * 0x100000001b3) & (2**64 - 1)
slots = [0x504b43434d4c5250, 1, 1, 1, 1, 1, 1, 1, 29, 0] + [0] * 10 + [h] + [0] * 43
open(d + "/ckpt", "wb").write(b"\2" + struct.pack("<64Q", *slots) + params)
open(d + "/gpt2", "wb").write(b'\4{"a": 0, "b": 1, "ab": 2}\0#version: 0.2\na b\n')
PY

# model formats (fuzz_formats): a tiny GPT-2 GGUF and a Llama one, one with every metadata
# and tensor type, the GPT-2 as safetensors, and with its config.json
fcorpus=build-fuzz/corpus-formats
rm -rf "$fcorpus" build-fuzz/seed.gguf.st && mkdir -p "$fcorpus"
build-fuzz/tests/io/gguf_tool write build-fuzz/seed.gguf
{ printf '\0'; cat build-fuzz/seed.gguf.types.gguf; } > "$fcorpus/gguf_types"
{ printf '\1'; cat build-fuzz/seed.gguf; } > "$fcorpus/gguf_gpt2"
{ printf '\1'; cat build-fuzz/seed.gguf.llama.gguf; } > "$fcorpus/gguf_llama"
{ printf '\2'; cat build-fuzz/seed.gguf.st/model.safetensors; } > "$fcorpus/safetensors"
{ printf '\3'; cat build-fuzz/seed.gguf.st/config.json; printf '\0'; cat build-fuzz/seed.gguf.st/model.safetensors; } > "$fcorpus/st_gpt2"
# the Llama import's config.json (selector 5) and a sharded checkpoint's index (selector 6),
# for fuzz_formats' fixed tiny Llama (L1 NH2 NKV1 C16 F16 V8 maxT4, one tensor a shard)
python3 - "$fcorpus" <<'PY'
import json, sys
cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16,
       "intermediate_size": 16, "num_attention_heads": 2, "num_key_value_heads": 1,
       "num_hidden_layers": 1, "head_dim": 8, "hidden_act": "silu", "max_position_embeddings": 4,
       "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
       "rope_scaling": {"type": "linear", "rope_type": "linear", "factor": 2.0},
       "tie_word_embeddings": True, "attention_bias": False, "mlp_bias": False, "vocab_size": 8,
       "torch_dtype": "float32"}
open(sys.argv[1] + "/st_llama_config", "wb").write(b"\5" + json.dumps(cfg, indent=2).encode())
names = ["model.embed_tokens.weight"] + ["model.layers.0." + n + ".weight" for n in (
    "input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")] + ["model.norm.weight"]
wm = {n: "model-%05d-of-%05d.safetensors" % (i + 1, len(names)) for i, n in enumerate(names)}
index = {"metadata": {"total_size": 4 * (8 * 16 + 16 + 256 + 128 + 128 + 256 + 16 + 3 * 256 + 16)},
         "weight_map": wm}
open(sys.argv[1] + "/st_index", "wb").write(b"\6" + json.dumps(index, indent=2).encode())
PY
# the tokenizers of GGUF files (selector 4): a "llama" one (scores, types, byte fallback)
# and a "gpt2" one (GPT-2's byte spelling and merges)
python3 - "$fcorpus" <<'PY'
import struct, sys
def s(b): return struct.pack("<Q", len(b)) + b
def kv(key, t, v): return s(key.encode()) + struct.pack("<I", t) + v
def arr(t, items): return struct.pack("<IQ", t, len(items)) + b"".join(items)
def gguf(kvs): return b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs)
sp = "\u2581".encode()
toks = [b"<unk>", b"<s>", b"</s>"] + [b"<0x%02X>" % i for i in range(256)] + \
       [sp, b"a", b"b", b"ab", sp + b"a", b"c", b"\xc3\xb6"]
scores = [0.0] * 259 + [-1.0, -2.0, -3.0, -0.5, -4.0, -5.0, -6.0]
types = [2, 3, 3] + [6] * 256 + [1] * 7
llama = gguf([kv("tokenizer.ggml.model", 8, s(b"llama")),
              kv("tokenizer.ggml.tokens", 9, arr(8, [s(t) for t in toks])),
              kv("tokenizer.ggml.scores", 9, arr(6, [struct.pack("<f", x) for x in scores])),
              kv("tokenizer.ggml.token_type", 9, arr(5, [struct.pack("<i", x) for x in types])),
              kv("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 1)),
              kv("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 2)),
              kv("tokenizer.ggml.add_bos_token", 7, b"\1"),
              kv("tokenizer.ggml.add_space_prefix", 7, b"\1")])
open(sys.argv[1] + "/tok_llama", "wb").write(b"\4" + llama)
# GPT-2's byte spelling: printable bytes as themselves, the others from U+0100 up
printable = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or b >= 174]
cp, k = {}, 0
for b in range(256):
    if b in printable: cp[b] = b
    else: cp[b] = 256 + k; k += 1
btoks = [chr(cp[b]).encode() for b in range(256)] + [b"ab", b"abc", b"<|endoftext|>"]
gpt2 = gguf([kv("tokenizer.ggml.model", 8, s(b"gpt2")),
             kv("tokenizer.ggml.tokens", 9, arr(8, [s(t) for t in btoks])),
             kv("tokenizer.ggml.token_type", 9, arr(5, [struct.pack("<i", 3 if i == 258 else 1)
                                                        for i in range(259)])),
             kv("tokenizer.ggml.merges", 9, arr(8, [s(b"a b"), s(b"ab c")]))])
open(sys.argv[1] + "/tok_gpt2", "wb").write(b"\4" + gpt2)
PY

export ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1
build-fuzz/fuzz_formats -max_total_time="$secs" -max_len=200000 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix=build-fuzz/formats- "$fcorpus" 2> build-fuzz/fuzz-formats.log || { tail -40 build-fuzz/fuzz-formats.log; exit 1; }
echo "fuzz formats: $(sed -n 's/^stat::number_of_executed_units: *//p' build-fuzz/fuzz-formats.log) inputs in ${secs}s, no crash"
build-fuzz/fuzz_files -max_total_time="$secs" -max_len=4096 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix=build-fuzz/ "$corpus" 2> build-fuzz/fuzz.log || { tail -40 build-fuzz/fuzz.log; exit 1; }
echo "fuzz: $(sed -n 's/^stat::number_of_executed_units: *//p' build-fuzz/fuzz.log) inputs in ${secs}s, no crash"

# parlm-serve's request bodies: seeds are valid and invalid requests of each kind
rcorpus=build-fuzz/corpus-request
rm -rf "$rcorpus" && mkdir -p "$rcorpus"
i=0
for body in '{"prompt":"hello","max_tokens":5}' '{"prompt":[1,2,3],"temperature":0,"seed":7}' \
    '{"model":"m","prompt":"a b","max_tokens":8,"temperature":0.7,"top_p":0.9,"top_k":40,"stop":["x","\n"],"stream":true,"stream_options":{"include_usage":true},"n":1,"echo":false,"logprobs":null,"presence_penalty":0}' \
    '{"prompt":"\u00e9\ud83d\ude00","stop":"z"}' '{"prompt":"x","max_tokens":0}' '[1]'; do
    printf '%s' "$body" > "$rcorpus/seed$i"; i=$((i + 1))
done
build-fuzz/fuzz_request -max_total_time="$secs" -max_len=4096 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix=build-fuzz/request- "$rcorpus" 2> build-fuzz/fuzz-request.log || { tail -40 build-fuzz/fuzz-request.log; exit 1; }
echo "fuzz request: $(sed -n 's/^stat::number_of_executed_units: *//p' build-fuzz/fuzz-request.log) inputs in ${secs}s, no crash"

# the planner's JSON files: the example profile and cluster, and a plan parlm-plan wrote
pcorpus=build-fuzz/corpus-plan
rm -rf "$pcorpus" && mkdir -p "$pcorpus"
{ printf '\0'; cat apps/plan/example-profile.json; } > "$pcorpus/profile"
{ printf '\1'; cat apps/plan/example-cluster.json; } > "$pcorpus/cluster"
build-fuzz/apps/parlm-plan --profile apps/plan/example-profile.json --cluster \
    apps/plan/example-cluster.json --model tiny --global-batch 8 --seq 16 --ranks 4 \
    --json build-fuzz/seed-plan.json >/dev/null
{ printf '\2'; cat build-fuzz/seed-plan.json; } > "$pcorpus/plan"
build-fuzz/fuzz_plan -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix=build-fuzz/plan- "$pcorpus" 2> build-fuzz/fuzz-plan.log || { tail -40 build-fuzz/fuzz-plan.log; exit 1; }
echo "fuzz plan: $(sed -n 's/^stat::number_of_executed_units: *//p' build-fuzz/fuzz-plan.log) inputs in ${secs}s, no crash"
