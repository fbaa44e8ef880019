#!/usr/bin/env bash
# tests/io/gguf_npm.sh — an independent reader checks parlm's GGUF files: @huggingface/gguf
# (npm) parses files parlm wrote (a GPT-2 model with its tokenizer when the vocabulary is
# at hand, and a file with a key of every type and a tensor of every type), and its view of
# the header, every metadata value, tensor names, shapes, types and offsets must equal
# parlm's, line for line. The package is installed into $PARLM_NPM_DIR (default:
# build/npm-gguf), outside the source tree; without npm or network the test is skipped.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
B=${PARLM_BUILDDIR:-$(pwd)}
tool=$B/tests/io/gguf_tool
npmdir=${PARLM_NPM_DIR:-$B/npm-gguf}
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "gguf_npm: SKIP: node/npm not installed (apt-get install nodejs npm)"; exit 77
fi
if [ ! -d "$npmdir/node_modules/@huggingface/gguf" ]; then
    mkdir -p "$npmdir"
    if ! timeout 300 npm install --silent --no-audit --no-fund --prefix "$npmdir" \
            "@huggingface/gguf@^0.4" >"$npmdir/install.log" 2>&1; then
        echo "gguf_npm: SKIP: npm could not install @huggingface/gguf (offline?):"
        tail -3 "$npmdir/install.log"; exit 77
    fi
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/parlm-gguf-npm.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp "$here/gguf_npm.mjs" "$npmdir/gguf_npm.mjs" # resolves the package from $npmdir

vocab=()
sd=${PARLM_SHARED_DATA:-}
if [ -n "$sd" ] && [ -f "$sd/gpt2/encoder.json" ]; then
    vocab=("$sd/gpt2/encoder.json" "$sd/gpt2/vocab.bpe")
else
    echo "gguf_npm: no GPT-2 vocabulary (PARLM_SHARED_DATA): model file without a tokenizer"
fi
"$tool" write "$tmp/m.gguf" "${vocab[@]}"
for f in "$tmp/m.gguf" "$tmp/m.gguf.llama.gguf" "$tmp/m.gguf.types.gguf"; do
    "$tool" dump "$f" > "$tmp/parlm.txt"
    node "$npmdir/gguf_npm.mjs" "$f" > "$tmp/npm.txt"
    if ! diff "$tmp/parlm.txt" "$tmp/npm.txt" > "$tmp/diff.txt"; then
        echo "gguf_npm: FAIL: @huggingface/gguf reads $(basename "$f") differently (< parlm, > npm):"
        cut -c1-200 "$tmp/diff.txt" | head -20
        exit 1
    fi
    echo "gguf_npm: $(basename "$f"): $(grep -c '^kv ' "$tmp/parlm.txt") keys, $(grep -c '^tensor ' "$tmp/parlm.txt") tensors read alike by parlm and @huggingface/gguf"
done
