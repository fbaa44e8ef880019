#!/bin/sh
# tests/serve/openai_npm.sh — an existing client works unchanged: OpenAI's Node library
# (npm `openai`, v4) talks to parlm-serve (tests/serve/openai_npm.mjs). The package is
# installed into $PARLM_NPM_DIR (default: build/npm-openai), outside the source tree;
# without node/npm or network the test is skipped.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
B=${PARLM_BUILDDIR:-$(pwd)}
npmdir=${PARLM_NPM_DIR:-$B/npm-openai}
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "openai_npm: SKIP: node/npm not installed"; exit 77
fi
if [ ! -d "$npmdir/node_modules/openai" ]; then
    mkdir -p "$npmdir"
    if ! timeout 300 npm install --silent --no-audit --no-fund --prefix "$npmdir" "openai@^4" \
            > "$npmdir/install.log" 2>&1; then
        echo "openai_npm: SKIP: npm could not install openai (offline?):"
        tail -3 "$npmdir/install.log"; exit 77
    fi
fi
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"' EXIT
seq 1 3000 | awk '{ print "line " $1 " says hello to number " ($1 * 7) % 13 "." }' > "$work/corpus.txt"
"$B/apps/parlm-train" --data "$work/corpus.txt" -b 2 -t 64 --model tiny --steps 10 \
    --ckpt-dir "$work/ck" --threads 2 --quiet --sample-every 0 > "$work/train.log" 2>&1 ||
    { cat "$work/train.log"; exit 1; }
: > "$work/srv.log"
"$B/apps/parlm-serve" --model "$work/ck" --model-name tiny --port 0 --threads 2 --kv-mb 8 \
    > "$work/srv.log" 2>&1 &
pid=$!
port=""
for _ in $(seq 1 200); do
    port=$(sed -n 's|.*on http://127.0.0.1:\([0-9]*\).*|\1|p' "$work/srv.log")
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || { cat "$work/srv.log"; exit 1; }
cp "$here/openai_npm.mjs" "$npmdir/openai_npm.mjs" # resolves the package from $npmdir
node "$npmdir/openai_npm.mjs" "http://127.0.0.1:$port/v1" || { cat "$work/srv.log"; exit 1; }
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
pid=""
[ "$rc" = 0 ] || { echo "openai_npm: parlm-serve exited $rc"; exit 1; }
