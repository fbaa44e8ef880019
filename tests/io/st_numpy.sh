#!/usr/bin/env bash
# tests/io/st_numpy.sh — an independent check of the Llama safetensors layout (HF's q/k
# row permutation for rotate_half, GQA, linear RoPE scaling, tied and untied heads,
# sharded files): numpy (Debian's python3-numpy) runs a Llama forward the Hugging Face
# way on the files parlm writes and must find parlm's logits; and parlm, loading a model
# numpy wrote in HF's layout (two shards and an index), must find numpy's. Installs the
# package with apt-get when run as root; otherwise, or offline, the test is skipped.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
B=${PARLM_BUILDDIR:-$(pwd)}
# Debian's package is for Debian's python3, which need not be the first on PATH
find_py() {
    for p in python3 /usr/bin/python3; do
        if command -v "$p" >/dev/null && "$p" -c 'import numpy' 2>/dev/null; then
            echo "$p"; return 0
        fi
    done
    return 1
}
if ! py=$(find_py); then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends \
            python3-numpy >/dev/null 2>&1 || true
    fi
    if ! py=$(find_py); then
        echo "st_numpy: SKIP: no python3 numpy (apt-get install python3-numpy)"
        exit 77
    fi
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/parlm-stnp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tool=$B/tests/io/st_tool
# parlm writes, numpy reads: untied in one file, tied in shards of 8 KB
"$tool" write "$tmp/untied" untied 0 "$tmp/untied.txt"
"$py" "$here/st_reference.py" check "$tmp/untied" "$tmp/untied.txt"
"$tool" write "$tmp/tied" tied 8000 "$tmp/tied.txt"
[ -f "$tmp/tied/model.safetensors.index.json" ] || { echo "st_numpy: FAIL: no index"; exit 1; }
"$py" "$here/st_reference.py" check "$tmp/tied" "$tmp/tied.txt"
# numpy writes (HF's layout, one KV head, rope_scaling linear 4), parlm reads
"$py" "$here/st_reference.py" make "$tmp/hf"
"$tool" logits "$tmp/hf" "$tmp/hf.txt"
"$py" "$here/st_reference.py" check "$tmp/hf" "$tmp/hf.txt"
echo "st_numpy: ok"
