#!/bin/sh
# tests/serve/serve_run.sh — parlm-serve end to end over HTTP with curl: completions,
# streaming (SSE, [DONE], usage), stop strings, seeds, /health, /v1/models, /metrics, every
# class of bad request, a client killed mid-stream (its request is cancelled, KV back to 0),
# 32 concurrent requests each equal to its answer alone, SIGTERM (the running request
# finishes, exit 0), admission (429) and a flood of idle and slowloris connections from one
# address (tests/serve/flood.py). The model: parlm-train's tiny preset on bytes, a few steps.
set -eu
bin=${PARLM_BUILDDIR:-.}/apps
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 77; }
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; [ -f "$work/srv.log" ] && cat "$work/srv.log"; exit 1; }

seq 1 3000 | awk '{ print "line " $1 " says hello to number " ($1 * 7) % 13 "." }' > "$work/corpus.txt"
"$bin/parlm-train" --data "$work/corpus.txt" -b 2 -t 256 --model tiny --steps 30 \
    --ckpt-dir "$work/ck" --threads 2 --quiet --sample-every 0 > "$work/train.log" 2>&1 ||
    { cat "$work/train.log"; exit 1; }

start() { # extra options
    : > "$work/srv.log"
    "$bin/parlm-serve" --model "$work/ck" --model-name tiny --port 0 --threads 2 \
        --kv-mb 8 --max-batch 32 --chunk 32 --max-body-kb 4 --shutdown-timeout 20 "$@" \
        > "$work/srv.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 200); do
        port=$(sed -n 's|.*on http://127.0.0.1:\([0-9]*\).*|\1|p' "$work/srv.log")
        [ -n "$port" ] && break
        kill -0 "$pid" 2>/dev/null || fail "parlm-serve did not start"
        sleep 0.05
    done
    [ -n "$port" ] || fail "parlm-serve did not report its port"
    url=http://127.0.0.1:$port
}
start

# post BODY -> $work/out (body), prints the status code
post() { curl -s -o "$work/out" -w '%{http_code}' "$url/v1/completions" -H 'Content-Type: application/json' --data-binary "$1"; }
text() { sed -n 's/.*"text":"\([^"]*\)".*/\1/p' "$1"; }
metric() { curl -s "$url/metrics" | sed -n "s/^$1 //p"; }

[ "$(curl -s "$url/health")" = '{"status":"ok"}' ] || fail "/health"
curl -s "$url/v1/models" | grep -q '"object":"list","data":\[{"id":"tiny","object":"model"' || fail "/v1/models"

# a greedy completion
[ "$(post '{"model":"tiny","prompt":"line 12 says","max_tokens":24,"temperature":0}')" = 200 ] || fail "completion: $(cat "$work/out")"
grep -q '"object":"text_completion"' "$work/out" || fail "completion shape"
grep -q '"finish_reason":"length"' "$work/out" || fail "finish_reason"
grep -q '"usage":{"prompt_tokens":12,"completion_tokens":24,"total_tokens":36}' "$work/out" || fail "usage: $(cat "$work/out")"
greedy=$(text "$work/out")
[ -n "$greedy" ] || fail "no text"
# token ids as the prompt: bytes of "line 12 says" give the same answer
ids=$(printf 'line 12 says' | od -An -tu1 | tr -s ' \n' ',,' | sed 's/^,//; s/,$//')
post "{\"prompt\":[$ids],\"max_tokens\":24,\"temperature\":0}" > /dev/null
[ "$(text "$work/out")" = "$greedy" ] || fail "token-id prompt: $(cat "$work/out")"

# streaming: SSE chunks that add up to the same text, usage, then [DONE]
curl -sN "$url/v1/completions" -d '{"prompt":"line 12 says","max_tokens":24,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}' > "$work/sse"
[ "$(tail -n 2 "$work/sse" | head -n 1)" = "data: [DONE]" ] || fail "stream end: $(tail -3 "$work/sse")"
grep -q '"choices":\[\],"usage":{"prompt_tokens":12,"completion_tokens":24' "$work/sse" || fail "stream usage"
streamed=$(grep '^data: {' "$work/sse" | sed -n 's/.*"text":"\([^"]*\)".*/\1/p' | tr -d '\n')
[ "$streamed" = "$greedy" ] || fail "streamed '$streamed' != '$greedy'"

# stop strings: cut before the first occurrence, finish_reason stop, streamed alike
stop=$(printf '%s' "$greedy" | cut -c 4-5)
post "{\"prompt\":\"line 12 says\",\"max_tokens\":24,\"temperature\":0,\"stop\":[\"zzz\",\"$stop\"]}" > /dev/null
cut=$(text "$work/out")
grep -q '"finish_reason":"stop"' "$work/out" || fail "stop: $(cat "$work/out")"
case "$greedy" in "$cut$stop"*) ;; *) fail "stop '$stop': '$cut' is not the text before it in '$greedy'" ;; esac
case "$cut" in *"$stop"*) fail "stop string inside '$cut'" ;; esac
curl -sN "$url/v1/completions" -d "{\"prompt\":\"line 12 says\",\"max_tokens\":24,\"temperature\":0,\"stop\":\"$stop\",\"stream\":true}" > "$work/sse"
[ "$(grep '^data: {' "$work/sse" | sed -n 's/.*"text":"\([^"]*\)".*/\1/p' | tr -d '\n')" = "$cut" ] || fail "streamed stop"

# seeds: the same seed samples the same text
sampled() { post "{\"prompt\":\"line 7\",\"max_tokens\":30,\"temperature\":1.0,\"top_p\":0.95,\"top_k\":50,\"seed\":$1}" > /dev/null; text "$work/out"; }
a=$(sampled 5); b=$(sampled 5)
[ "$a" = "$b" ] || fail "seed 5 gave '$a' then '$b'"

# bad requests: status and OpenAI's error shape
expect() { # status body [grep pattern]
    code=$(post "$2")
    [ "$code" = "$1" ] || fail "$2: got $code, want $1: $(cat "$work/out")"
    grep -q '^{"error":{"message":"[^"]' "$work/out" || fail "$2: error shape: $(cat "$work/out")"
    grep -q '"type":' "$work/out" && grep -q '"param":' "$work/out" && grep -q '"code":' "$work/out" || fail "$2: fields"
    [ -z "${3:-}" ] || grep -q "$3" "$work/out" || fail "$2: no $3 in $(cat "$work/out")"
}
expect 400 '{"prompt":"x",' "malformed JSON"
expect 400 '{"prompt":"x","max_tokens":"5"}' '"param":"max_tokens"'
expect 400 '{"prompt":"x","frobnicate":1}' "Unrecognized request argument supplied: frobnicate"
expect 400 '{"max_tokens":5}' '"param":"prompt"'
expect 400 '{"prompt":""}' '"param":"prompt"'
long=$(seq 1 300 | tr -d '\n')
expect 400 "{\"prompt\":\"$long\"}" '"code":"context_length_exceeded"'
expect 400 '{"prompt":"x","max_tokens":0}' '"param":"max_tokens"'
expect 400 '{"prompt":"x","max_tokens":100000000}' '"code":"context_length_exceeded"'
expect 400 '{"prompt":"x","temperature":-1}' '"param":"temperature"'
expect 400 '{"prompt":"x","top_p":0}' '"param":"top_p"'
expect 400 '{"prompt":"x","top_p":1.5}' '"param":"top_p"'
expect 400 '{"prompt":"x","n":3}' '"param":"n"'
expect 400 "$(printf '{"prompt":"\377\376"}')" "UTF-8"
expect 413 "{\"prompt\":\"$(head -c 5000 /dev/zero | tr '\0' a)\"}" "larger than"
code=$(curl -s -o "$work/out" -w '%{http_code}' "$url/v1/completions")
[ "$code" = 405 ] || fail "GET /v1/completions: $code"
code=$(curl -s -o "$work/out" -w '%{http_code}' "$url/v2/nothing")
[ "$code" = 404 ] && grep -q '"error"' "$work/out" || fail "unknown path: $code"
[ "$(curl -s "$url/health")" = '{"status":"ok"}' ] || fail "still serving after bad requests"

# a client killed mid-stream: its request is cancelled and its KV blocks freed
curl -sN "$url/v1/completions" -d '{"prompt":"line","max_tokens":250,"temperature":0.8,"seed":1,"stream":true}' > "$work/cancel.sse" &
cpid=$!
for _ in $(seq 1 500); do [ "$(grep -c '^data: {' "$work/cancel.sse")" -ge 3 ] && break; sleep 0.01; done
kill -9 "$cpid"; wait "$cpid" 2>/dev/null || true
grep -q '\[DONE\]' "$work/cancel.sse" && fail "the stream ended before the client was killed"
for _ in $(seq 1 100); do [ "$(metric 'parlm_requests_finished_total{reason="cancelled"}')" = 1 ] && break; sleep 0.05; done
[ "$(metric 'parlm_requests_finished_total{reason="cancelled"}')" = 1 ] || fail "no cancellation: $(curl -s "$url/metrics")"
[ "$(metric parlm_kv_blocks_used)" = 0 ] || fail "KV blocks still held after the cancel"

# 32 concurrent requests (different prompts and seeds): each the same as alone
one() { curl -s "$url/v1/completions" -d "{\"prompt\":\"line $1 says\",\"max_tokens\":$((8 + $1 % 9)),\"temperature\":0.9,\"seed\":$1}" | sed 's/"id":"[^"]*","object":"text_completion","created":[0-9]*,//'; }
for i in $(seq 1 32); do one "$i" > "$work/alone.$i"; done
jobs=""
for i in $(seq 1 32); do one "$i" > "$work/batch.$i" & jobs="$jobs $!"; done
for j in $jobs; do wait "$j"; done
for i in $(seq 1 32); do
    grep -q '"finish_reason"' "$work/batch.$i" || fail "request $i: $(cat "$work/batch.$i")"
    cmp -s "$work/alone.$i" "$work/batch.$i" || fail "request $i differs in a batch: $(cat "$work/alone.$i") vs $(cat "$work/batch.$i")"
done
[ "$(metric parlm_kv_blocks_used)" = 0 ] || fail "KV blocks held after the batch"
[ "$(metric parlm_running_requests)" = 0 ] || fail "requests still running"

# metrics in Prometheus' text format
curl -s "$url/metrics" > "$work/metrics"
for m in 'parlm_requests_total{code="200"}' 'parlm_requests_total{code="400"}' \
         'parlm_requests_total{code="413"}' parlm_generation_tokens_total parlm_queue_depth \
         'parlm_time_to_first_token_seconds_bucket{le="+Inf"}' parlm_inter_token_latency_seconds_count \
         parlm_kv_blocks_total; do
    grep -q "^$m [0-9]" "$work/metrics" || fail "metric $m missing"
done
grep -q '^# TYPE parlm_time_to_first_token_seconds histogram' "$work/metrics" || fail "histogram type"

# SIGTERM: the running request finishes, new connections are refused, exit 0
curl -sN "$url/v1/completions" -d '{"prompt":"line","max_tokens":200,"temperature":0,"stream":true}' > "$work/term.sse" &
cpid=$!
for _ in $(seq 1 500); do [ "$(grep -c '^data: {' "$work/term.sse")" -ge 2 ] && break; sleep 0.01; done
kill -TERM "$pid"
crc=0; wait "$cpid" || crc=$?
[ "$crc" = 0 ] || fail "the streaming client failed during shutdown (curl exit $crc): $(tail -c 600 "$work/term.sse")"
grep -q '"finish_reason":"length"' "$work/term.sse" && tail -n 2 "$work/term.sse" | grep -q '\[DONE\]' || fail "the running request did not finish: $(tail -3 "$work/term.sse")"
rc=0; wait "$pid" || rc=$?
pid=""
[ "$rc" = 0 ] || fail "parlm-serve exited $rc after SIGTERM"
grep -q "draining" "$work/srv.log" || fail "no drain message"
curl -s -m 5 "$url/health" > /dev/null 2>&1 && fail "still accepting after shutdown"

# admission control: one running request and no queue -> the next one is a 429 with Retry-After
start --max-batch 1 --max-queue 0
curl -sN "$url/v1/completions" -d '{"prompt":"line","max_tokens":200,"temperature":0,"stream":true}' > "$work/busy.sse" &
cpid=$!
for _ in $(seq 1 500); do [ "$(grep -c '^data: {' "$work/busy.sse")" -ge 1 ] && break; sleep 0.01; done
code=$(curl -s -D "$work/headers" -o "$work/out" -w '%{http_code}' "$url/v1/completions" -d '{"prompt":"x","max_tokens":2}')
if grep -q '\[DONE\]' "$work/busy.sse"; then
    echo "note: the first request ended before the second arrived: admission not exercised"
else
    [ "$code" = 429 ] || fail "a full server answered $code: $(cat "$work/out")"
    grep -qi '^Retry-After: [0-9]' "$work/headers" || fail "429 without Retry-After"
    grep -q '"error":{"message"' "$work/out" || fail "429 body"
fi
wait "$cpid" || true
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
pid=""
[ "$rc" = 0 ] || fail "parlm-serve exited $rc"
# a flood from one address (idle and trickling connections) against the default limits:
# the rest are still served
command -v python3 >/dev/null || fail "python3 is needed for the flood test"
start --idle-timeout 2
python3 "$(dirname "$0")/flood.py" "$port" 2 || fail "flood"
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
pid=""
[ "$rc" = 0 ] || fail "parlm-serve exited $rc after the flood"
echo "serve: completions, streaming, stops, seeds, errors, cancellation, 32 concurrent, shutdown, 429, flood"
