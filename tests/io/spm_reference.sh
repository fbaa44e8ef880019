#!/usr/bin/env bash
# tests/io/spm_reference.sh — an independent check of the "llama" tokenizer: Google's
# SentencePiece (Debian's python3-sentencepiece) trains a small BPE vocabulary with byte
# fallback, encodes and decodes seeded random texts, and parlm, given the same vocabulary
# through a GGUF file, must produce the same ids and the same text. Installs the package
# with apt-get when run as root; otherwise, or offline, the test is skipped.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
B=${PARLM_BUILDDIR:-$(pwd)}
# Debian's package is for Debian's python3, which need not be the first on PATH
find_py() {
    for p in python3 /usr/bin/python3; do
        if command -v "$p" >/dev/null && "$p" -c 'import sentencepiece' 2>/dev/null; then
            echo "$p"; return 0
        fi
    done
    return 1
}
if ! py=$(find_py); then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends \
            python3-sentencepiece >/dev/null 2>&1 || true
    fi
    if ! py=$(find_py); then
        echo "spm_reference: SKIP: no python3 sentencepiece (apt-get install python3-sentencepiece)"
        exit 77
    fi
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/parlm-spm.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$py" "$here/spm_reference.py" "$tmp"
"$B/tests/io/spm_tool" "$tmp"
