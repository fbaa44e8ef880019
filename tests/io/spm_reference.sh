#!/usr/bin/env bash
# tests/io/spm_reference.sh — an independent check of the "llama" tokenizer: Google's
# SentencePiece (Debian's python3-sentencepiece) trains a small BPE vocabulary with byte
# fallback, encodes and decodes seeded random texts, and parlm, given the same vocabulary
# through a GGUF file, must produce the same ids and the same text. Installs the package
# with apt-get when run as root; otherwise, or offline, the test is skipped.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
B=${PARLM_BUILDDIR:-$(pwd)}
. "$here/../py_module.sh"
py_module sentencepiece python3-sentencepiece spm_reference
tmp=$(mktemp -d "${TMPDIR:-/tmp}/parlm-spm.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$py" "$here/spm_reference.py" "$tmp"
"$B/tests/io/spm_tool" "$tmp"
