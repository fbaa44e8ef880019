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
. "$here/../py_module.sh"
py_module numpy python3-numpy st_numpy
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
