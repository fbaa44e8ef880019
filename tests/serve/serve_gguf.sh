#!/bin/sh
# tests/serve/serve_gguf.sh — parlm-serve --model MODEL.gguf needs no other file: a Llama
# GGUF (SentencePiece tokenizer in the file, BOS before a text prompt) and a GPT-2 GGUF
# (byte-level BPE in the file) answer a greedy completion, plain and streamed, with
# parlm-generate's greedy text for the same file; Q8_0 / Q4_0 files generate on their
# blocks by default, as parlm-generate decodes them, and 8 requests at once each get
# their answer alone (--type f32: both on the dequantized weights); a GGUF without
# tokenizer keys is refused with the key named. Models and tokenizers:
# tests/io/gguf_run_tool.
set -eu
B=${PARLM_BUILDDIR:-.}
bin=$B/apps
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; [ -f "$work/srv.log" ] && cat "$work/srv.log"; exit 1; }

cd "$work"
"$B/tests/io/gguf_run_tool" write .
"$bin/parlm-convert" gpt2.ckpt gpt2.gguf --encoder encoder.json --vocab vocab.bpe >/dev/null
"$bin/parlm-convert" gpt2.ckpt notok.gguf >/dev/null

start() { # MODEL extra options
    : > srv.log
    "$bin/parlm-serve" --model "$@" --port 0 --threads 2 --kv-mb 8 > srv.log 2>&1 &
    pid=$!
    port=""
    for _ in $(seq 1 200); do
        port=$(sed -n 's|.*on http://127.0.0.1:\([0-9]*\).*|\1|p' srv.log)
        [ -n "$port" ] && break
        kill -0 "$pid" 2>/dev/null || fail "parlm-serve $* did not start"
        sleep 0.05
    done
    [ -n "$port" ] || fail "parlm-serve did not report its port"
    url=http://127.0.0.1:$port
}
stop() {
    kill -TERM "$pid"
    rc=0; wait "$pid" || rc=$?
    pid=""
    [ "$rc" = 0 ] || fail "parlm-serve exited $rc"
}
# greedy MODEL [options]: parlm-generate's continuation of "hello the world" (without the
# prompt it echoes and the newline it ends with) into gen.txt
prompt="hello the world"
greedy() {
    m=$1; shift
    "$bin/parlm-generate" "$m" "$@" --prompt "$prompt" --max-tokens 20 --temperature 0 \
        --threads 2 > gen.raw 2>/dev/null || fail "parlm-generate $m $*"
    python3 -c 'import sys; b = open("gen.raw", "rb").read(); p = sys.argv[1].encode()
assert b.startswith(p) and b.endswith(b"\n"), b
open("gen.txt", "wb").write(b[len(p):-1])' "$prompt"
}
# complete BODY: the completion's text into srv.txt (and the response in out.json)
complete() {
    curl -s "$url/v1/completions" -H 'Content-Type: application/json' --data-binary "$1" \
        > out.json
    python3 -c 'import json; r = json.load(open("out.json"))
open("srv.txt", "wb").write(r["choices"][0]["text"].encode())' || fail "response: $(cat out.json)"
}
# stream BODY: the streamed pieces joined into srv.txt
stream() {
    curl -sN "$url/v1/completions" --data-binary "$1" > out.sse
    python3 -c 'import json
t = "".join(json.loads(l[6:])["choices"][0]["text"] for l in open("out.sse")
            if l.startswith("data: {") and json.loads(l[6:])["choices"])
open("srv.txt", "wb").write(t.encode())' || fail "stream: $(cat out.sse)"
}

# Llama, f32: text prompt (BOS added: 1 + 6 tokens), plain and streamed
greedy llama.gguf
[ -s gen.txt ] || fail "parlm-generate wrote no text"
start llama.gguf
grep -q "Llama L2 C64, context 64, f32 weights" srv.log || fail "banner"
body="{\"prompt\":\"$prompt\",\"max_tokens\":20,\"temperature\":0}"
complete "$body"
cmp -s gen.txt srv.txt || fail "llama: served '$(cat srv.txt)', parlm-generate '$(cat gen.txt)'"
grep -q '"prompt_tokens":7,' out.json || fail "llama prompt without BOS? $(cat out.json)"
stream "{\"prompt\":\"$prompt\",\"max_tokens\":20,\"temperature\":0,\"stream\":true}"
cmp -s gen.txt srv.txt || fail "llama stream: '$(cat srv.txt)' != '$(cat gen.txt)'"
# the same prompt as token ids, BOS first
complete "{\"prompt\":$("$B/tests/io/gguf_run_tool" prompt llama.gguf "$prompt"),\"max_tokens\":20,\"temperature\":0}"
cmp -s gen.txt srv.txt || fail "llama ids: '$(cat srv.txt)' != '$(cat gen.txt)'"
stop

# Llama, Q8_0 and Q4_0 files: run in place (mapped), prompts and generated tokens on the
# file's blocks, as parlm-generate runs the file; with --type f32 on the dequantized weights
for t in q8_0 q4_0; do
    greedy "llama_$t.gguf"
    start "llama_$t.gguf"
    grep -q "$t weights, mapped from the file as stored" srv.log || fail "$t banner"
    complete "$body"
    cmp -s gen.txt srv.txt || fail "llama $t: '$(cat srv.txt)' != '$(cat gen.txt)'"
    stream "{\"prompt\":\"$prompt\",\"max_tokens\":20,\"temperature\":0,\"stream\":true}"
    cmp -s gen.txt srv.txt || fail "llama $t stream: '$(cat srv.txt)' != '$(cat gen.txt)'"
    # 8 at once (prompts and seeds differ): each the same as alone
    one() { curl -s "$url/v1/completions" -d "{\"prompt\":\"hello $1 the\",\"max_tokens\":$((6 + $1)),\"temperature\":0.9,\"seed\":$1}" |
            sed 's/"id":"[^"]*","object":"text_completion","created":[0-9]*,//'; }
    for i in 1 2 3 4 5 6 7 8; do one "$i" > "alone.$i"; done
    cpids=""
    for i in 1 2 3 4 5 6 7 8; do one "$i" > "many.$i" & cpids="$cpids $!"; done
    for c in $cpids; do wait "$c"; done
    for i in 1 2 3 4 5 6 7 8; do
        grep -q '"text"' "alone.$i" && cmp -s "alone.$i" "many.$i" ||
            fail "llama $t: request $i alone '$(cat "alone.$i")', among 8 '$(cat "many.$i")'"
    done
    stop
done
greedy llama_q8_0.gguf --type f32
start llama_q8_0.gguf --type f32
grep -q "f32 weights from the file's q8_0" srv.log || fail "q8_0 --type f32 banner"
complete "$body"
cmp -s gen.txt srv.txt || fail "llama q8_0 --type f32: '$(cat srv.txt)' != '$(cat gen.txt)'"
stop

# GPT-2: the prompt as parlm-generate starts it (end-of-text, then the text's ids)
greedy gpt2.gguf
start gpt2.gguf
ids=$("$B/tests/io/gguf_run_tool" prompt gpt2.gguf "$prompt")
complete "{\"prompt\":$ids,\"max_tokens\":20,\"temperature\":0}"
cmp -s gen.txt srv.txt || fail "gpt2: served '$(cat srv.txt)', parlm-generate '$(cat gen.txt)'"
stop

# no tokenizer in the file: refused, naming the key; with --tokenizer it serves
if "$bin/parlm-serve" --model notok.gguf --port 0 > srv.log 2>&1; then fail "notok.gguf served"; fi
grep -q "notok.gguf holds no tokenizer: metadata key tokenizer.ggml.model is missing" srv.log ||
    fail "no-tokenizer message"
start notok.gguf --tokenizer gpt2.gguf
complete "{\"prompt\":$ids,\"max_tokens\":20,\"temperature\":0}"
cmp -s gen.txt srv.txt || fail "notok.gguf --tokenizer gpt2.gguf: '$(cat srv.txt)'"
stop
if "$bin/parlm-serve" --model llama.gguf --type f16 --port 0 > srv.log 2>&1; then
    fail "--type f16 served"
fi
grep -q "is not f32, bf16, q8_0 or q4_0" srv.log || fail "--type f16 message"
echo "serve_gguf: Llama (f32, q8_0, q4_0 files) and GPT-2 GGUF files alone, plain and streamed"
