#!/usr/bin/env python3
# bench/serve_load.py — load generator for parlm-serve: N concurrent clients, each sending
# streaming /v1/completions requests back to back for a bounded time; reports aggregate
# output tokens/s, p50/p99 time-to-first-token and inter-token latency, and requests lost.
# Each client is a thread with its own HTTP/1.1 connection; latencies are taken when an SSE
# chunk arrives, so they include the server's HTTP path, as a real client sees it.
#   python3 bench/serve_load.py --url http://127.0.0.1:8080 --clients 1 4 16 --seconds 30
import argparse
import http.client
import json
import threading
import time
import urllib.parse


def percentile(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def client(url, body, deadline, out, lock):
    u = urllib.parse.urlparse(url)
    ttft, itl, tokens, done, lost = [], [], 0, 0, 0
    conn = None
    while time.monotonic() < deadline:
        try:
            if conn is None:
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
            t0 = time.monotonic()
            conn.request("POST", "/v1/completions", body=body,
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            if r.status != 200:
                r.read()
                lost += 1
                continue
            last, ok = None, False
            while True:
                line = r.readline()
                if not line:
                    break
                line = line.strip()
                if not line.startswith(b"data: "):
                    continue
                data = line[6:]
                if data == b"[DONE]":
                    ok = True
                    continue
                j = json.loads(data)
                now = time.monotonic()
                if j.get("usage"):
                    tokens += j["usage"]["completion_tokens"]
                    continue
                if last is None:
                    ttft.append(now - t0)
                else:
                    itl.append(now - last)
                last = now
            r.read()
            if ok:
                done += 1
            else:
                lost += 1
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException, ValueError):
            lost += 1
            if conn:
                conn.close()
            conn = None
    if conn:
        conn.close()
    with lock:
        out["ttft"] += ttft
        out["itl"] += itl
        out["tokens"] += tokens
        out["done"] += done
        out["lost"] += lost


def run(url, n, seconds, max_tokens, prompt):
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.8,
                       "stream": True, "stream_options": {"include_usage": True}})
    out = {"ttft": [], "itl": [], "tokens": 0, "done": 0, "lost": 0}
    lock = threading.Lock()
    t0 = time.monotonic()
    deadline = t0 + seconds
    ts = [threading.Thread(target=client, args=(url, body, deadline, out, lock)) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.monotonic() - t0
    return {"clients": n, "seconds": round(wall, 2), "requests": out["done"], "lost": out["lost"],
            "output_tokens": out["tokens"], "tokens_per_s": round(out["tokens"] / wall, 2),
            "ttft_p50_ms": round(1e3 * percentile(out["ttft"], 50), 1),
            "ttft_p99_ms": round(1e3 * percentile(out["ttft"], 99), 1),
            "itl_p50_ms": round(1e3 * percentile(out["itl"], 50), 1),
            "itl_p99_ms": round(1e3 * percentile(out["itl"], 99), 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prompt", default="The history of the city begins with")
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    a = ap.parse_args()
    base = None
    for n in a.clients:
        r = run(a.url, n, a.seconds, a.max_tokens, a.prompt)
        if base is None:
            base = r
        r["speedup_vs_first"] = round(r["tokens_per_s"] / base["tokens_per_s"], 2) \
            if base["tokens_per_s"] else None
        if a.json:
            print(json.dumps(r), flush=True)
        else:
            print("N=%(clients)3d  %(tokens_per_s)8.1f tok/s (x%(speedup_vs_first)s)  "
                  "TTFT p50 %(ttft_p50_ms)7.1f p99 %(ttft_p99_ms)7.1f ms  "
                  "ITL p50 %(itl_p50_ms)6.1f p99 %(itl_p99_ms)6.1f ms  "
                  "requests %(requests)d lost %(lost)d" % r, flush=True)


if __name__ == "__main__":
    main()
