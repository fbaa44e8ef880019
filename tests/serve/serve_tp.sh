#!/bin/sh
# tests/serve/serve_tp.sh — tensor-parallel parlm-serve (mpirun -np N parlm-serve --tp N)
# against the one-process server on the same checkpoint: greedy and seeded completions,
# streamed too, and concurrent requests give the same text. The one tolerance: TP adds the
# row-parallel products' parts in another order (last-bit differences), so the check is
# equal text: greedy and seeded on a byte model whose 4 training steps leave clear margins. Then SIGTERM to rank 0 ends both ranks (exit 0),
# and wrong layouts are refused. With GPT-2's tokenizer files: 3 ranks on a 6-head model,
# greedy only: its one training step leaves 50257 near-equal probabilities, where a seeded
# sample lands on another token as soon as the sums differ in the last bits.
set -eu
bin=${PARLM_BUILDDIR:-.}/apps
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 77; }
. "$(dirname "$0")/../mpi.sh"
OMP_WAIT_POLICY=passive # ranks share 2 cores: waiting threads must not spin
export OMP_WAIT_POLICY
work=$(mktemp -d)
pids=""
# (TERM: timeout passes it on to mpirun, which takes its ranks down)
trap 'for p in $pids; do kill "$p" 2>/dev/null || :; done; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; for f in "$work"/*.log; do echo "== $f"; cat "$f"; done; exit 1; }

seq 1 3000 | awk '{ print "line " $1 " says hello to number " ($1 * 7) % 13 "." }' > "$work/corpus.txt"
"$bin/parlm-train" --data "$work/corpus.txt" -b 2 -t 96 --model small --steps 4 \
    --ckpt-dir "$work/ck" --threads 2 --quiet --sample-every 0 > "$work/train.log" 2>&1 ||
    fail "parlm-train"

# start LOG CMD...: runs it in the background, sets $url and $pid (of CMD)
start() {
    log=$work/$1.log
    shift
    : > "$log" # before the background job opens it: the port is read from it below
    "$@" --port 0 --kv-mb 8 --max-batch 16 --chunk 32 --shutdown-timeout 20 > "$log" 2>&1 &
    pid=$!
    pids="$pids $pid"
    port=""
    for _ in $(seq 1 400); do
        port=$(sed -n 's|.*on http://127.0.0.1:\([0-9]*\).*|\1|p' "$log")
        [ -n "$port" ] && break
        kill -0 "$pid" 2>/dev/null || fail "$* did not start"
        sleep 0.05
    done
    [ -n "$port" ] || fail "$* did not report its port"
    url=http://127.0.0.1:$port
}
# ask URL BODY: the completion's text (or the streamed chunks' texts joined)
ask() {
    curl -sN "$1/v1/completions" -H 'Content-Type: application/json' --data-binary "$2" |
        sed -n 's/.*"text":"\(\([^"\\]\|\\.\)*\)".*/\1/p' | tr -d '\n'
}
# stop PID LOG: SIGTERM to rank 0, then every rank must have exited 0
stop_tp() {
    r0=$(sed -n 's/.*(rank 0: pid \([0-9]*\)).*/\1/p' "$2")
    [ -n "$r0" ] || fail "no rank 0 pid in $2"
    kill -TERM "$r0"
    rc=0
    wait "$1" || rc=$?
    [ "$rc" = 0 ] || fail "mpirun exited $rc after SIGTERM to rank 0"
    grep -q "parlm-serve: stopped" "$2" || fail "rank 0 did not stop cleanly"
}
mpi="timeout 120 $MPI -x OMP_WAIT_POLICY -x ASAN_OPTIONS"

start one "$bin/parlm-serve" --model "$work/ck" --threads 2
url1=$url
pid1=$pid
# shellcheck disable=SC2086
start tp2 $mpi -np 2 "$bin/parlm-serve" --model "$work/ck" --tp 2 --threads 1
url2=$url
pid2=$pid
grep -q "tensor-parallel over 2 ranks" "$work/tp2.log" || fail "no TP start line"
[ "$(curl -s "$url2/health")" = '{"status":"ok"}' ] || fail "/health"
curl -s "$url2/v1/models" | grep -q '"object":"list"' || fail "/v1/models"

n=0
for body in \
    '{"prompt":"line 12 says","max_tokens":40,"temperature":0}' \
    '{"prompt":"line 2999","max_tokens":30,"temperature":0}' \
    '{"prompt":"hello","max_tokens":40,"temperature":0.9,"seed":7}' \
    '{"prompt":"number 5","max_tokens":40,"temperature":1.2,"top_k":0,"seed":123}' \
    '{"prompt":"line 12 says","max_tokens":40,"temperature":0,"stream":true}' \
    '{"prompt":"line 7","max_tokens":40,"temperature":0.7,"seed":9,"stream":true}'; do
    a=$(ask "$url1" "$body")
    b=$(ask "$url2" "$body")
    [ -n "$a" ] || fail "no text from the one-process server for $body"
    [ "$a" = "$b" ] || fail "tp 2 differs for $body: one '$a', tp '$b'"
    n=$((n + 1))
done
echo "tp 2: $n completions equal to the one-process server's"

# concurrent requests (batched together on the TP server) each equal the one-process answer
for s in "one $url1" "tp $url2"; do
    set -- $s
    cp=""
    for i in 1 2 3 4 5 6 7 8; do
        ask "$2" "{\"prompt\":\"line $i$i says\",\"max_tokens\":32,\"temperature\":0.8,\"seed\":$i}" \
            > "$work/$1.$i" &
        cp="$cp $!"
    done
    # shellcheck disable=SC2086
    wait $cp
done
for i in 1 2 3 4 5 6 7 8; do
    [ -s "$work/one.$i" ] || fail "concurrent request $i: no text"
    cmp -s "$work/one.$i" "$work/tp.$i" || fail "concurrent request $i differs"
done
echo "tp 2: 8 concurrent requests equal"

stop_tp "$pid2" "$work/tp2.log"
kill -TERM "$pid1"
wait "$pid1" || fail "the one-process server exited $?"
pids=""
echo "tp 2: SIGTERM to rank 0 ends both ranks, exit 0"

# a rank that dies takes the job down (mpirun aborts it) instead of leaving rank 0 hanging
# shellcheck disable=SC2086
start tp2k $mpi -np 2 "$bin/parlm-serve" --model "$work/ck" --tp 2 --threads 1
r0=$(sed -n 's/.*(rank 0: pid \([0-9]*\)).*/\1/p' "$work/tp2k.log")
mp=$(ps -o pid= --ppid "$pid" | tr -d ' ')
r1=$(ps -o pid= --ppid "$mp" | tr -d ' ' | grep -v "^$r0\$" | head -n 1)
[ -n "$r1" ] || fail "no rank 1 under mpirun $mp"
kill -9 "$r1"
rc=0
wait "$pid" || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "rank 1 killed: mpirun exited $rc (124: it hung)"
pids=""
echo "tp 2: a killed rank ends the job (mpirun exit $rc)"

# layouts refused with a message: --tp without its ranks, heads that do not divide
rc=0
# shellcheck disable=SC2086
$mpi -np 1 "$bin/parlm-serve" --model "$work/ck" --tp 2 > "$work/bad1.log" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q -- "--tp 2 needs 2 ranks" "$work/bad1.log" || fail "--tp 2 on 1 rank: $rc"
rc=0
# shellcheck disable=SC2086
$mpi -np 3 "$bin/parlm-serve" --model "$work/ck" --tp 3 --port 0 > "$work/bad3.log" 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -q -- "--tp 3:" "$work/bad3.log" || fail "--tp 3 on 4 heads: $rc"
rc=0
# shellcheck disable=SC2086
$mpi -np 2 "$bin/parlm-serve" --model "$work/ck" > "$work/bad2.log" 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -q -- "give --tp 2" "$work/bad2.log" || fail "2 ranks without --tp: $rc"
echo "bad layouts refused"

# 3 ranks: a 6-head model (d6) on GPT-2's vocabulary (50304 padded rows divide by 3)
gpt2=${PARLM_SHARED_DATA:-}/gpt2
if [ -z "${PARLM_SHARED_DATA:-}" ] || [ ! -f "$gpt2/vocab.bpe" ]; then
    echo "tp 3: skipped (no GPT-2 tokenizer files in PARLM_SHARED_DATA)"
    exit 0
fi
tk="--encoder $gpt2/encoder.json --vocab $gpt2/vocab.bpe"
# shellcheck disable=SC2086
"$bin/parlm-train" --data "$work/corpus.txt" $tk -b 1 -t 64 --model d6 --steps 1 \
    --ckpt-dir "$work/ck6" --threads 2 --quiet --sample-every 0 > "$work/train6.log" 2>&1 ||
    fail "parlm-train d6"
rm -f "$work"/ck/*.bin # room: the d6 checkpoint is 360 MB
# shellcheck disable=SC2086
start one6 "$bin/parlm-serve" --model "$work/ck6" $tk --threads 2
url1=$url
pid1=$pid
# shellcheck disable=SC2086
start tp3 $mpi -np 3 "$bin/parlm-serve" --model "$work/ck6" $tk --tp 3 --threads 1
url3=$url
pid3=$pid
for body in \
    '{"prompt":"Hello, my name is","max_tokens":20,"temperature":0}' \
    '{"prompt":"line 12 says","max_tokens":20,"temperature":0,"stream":true}'; do
    a=$(ask "$url1" "$body")
    b=$(ask "$url3" "$body")
    [ -n "$a" ] || fail "d6: no text for $body"
    [ "$a" = "$b" ] || fail "tp 3 differs for $body: one '$a', tp '$b'"
done
echo "tp 3: completions equal to the one-process server's"
stop_tp "$pid3" "$work/tp3.log"
kill -TERM "$pid1"
wait "$pid1" || fail "the one-process d6 server exited $?"
pids=""
echo "tp 3: SIGTERM to rank 0 ends the three ranks, exit 0"
