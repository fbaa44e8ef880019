# tests/serve/flood.py PORT IDLE_TIMEOUT — run by serve_run.sh: up to 2000 connections to
# parlm-serve from 127.0.0.2 (most idle, 8 trickling a request one byte at a time, slowloris
# style) while a client on 127.0.0.1 asks for /health and a completion six times each: the
# client must be served every time, and every idle connection must be closed by the server
# (at once past the per-address limit, else after the idle timeout).
import resource, socket, sys, time, urllib.request, json
port, idle_s = int(sys.argv[1]), float(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = min(2000, (hard if hard > 0 else soft) - 100)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want + 100), hard))
conns, failed = [], 0
for i in range(want):
    s = socket.socket()
    try:
        s.bind(("127.0.0.2", 0))
        s.settimeout(2)
        s.connect(("127.0.0.1", port))
        conns.append(s)
    except OSError:
        failed += 1
        s.close()
trickle = conns[:8]
for s in trickle:
    s.send(b"G")
req = b"ET /health HTTP/1.1\r\nHost: x\r\n\r\n"
t0 = time.time()
served = 0
for k in range(6):
    for s in trickle:                       # one more byte each, slowly
        try: s.send(req[k:k + 1])
        except OSError: pass
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
        served += r.status == 200
    body = json.dumps({"prompt": "line 3", "max_tokens": 4, "temperature": 0}).encode()
    rq = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", body,
                                {"Content-Type": "application/json"})
    with urllib.request.urlopen(rq, timeout=30) as r:
        served += r.status == 200 and b'"text_completion"' in r.read()
    time.sleep(0.3)
if served != 12:
    print(f"FAIL: the other client was served {served} of 12 times during the flood"); sys.exit(1)
# the server closes what it accepted once it has been idle past the timeout (the rest
# it closed at once); a closed socket reads b"" or raises
time.sleep(idle_s + 2.5 - (time.time() - t0) if idle_s + 2.5 > time.time() - t0 else 0)
open_ = 0
for s in conns[8:]:
    s.settimeout(0.01)
    try:
        if s.recv(1) == b"":
            continue
        open_ += 1
    except socket.timeout:
        open_ += 1
    except OSError:
        continue
if open_:
    print(f"FAIL: {open_} idle connections still open {idle_s} s after the idle timeout"); sys.exit(1)
print(f"flood: {len(conns)} connections from 127.0.0.2 ({failed} refused), the client on "
      f"127.0.0.1 served 12/12, every idle one closed")
