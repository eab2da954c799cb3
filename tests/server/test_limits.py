#!/usr/bin/env python3
"""tests/server/test_limits.py - back-pressure of a live `kvlm serve --parallel 1
--queue 1 --max-body 4096`: a body over the limit gets 413, more requests than
one running plus one queued get 429 with Retry-After (OpenAI-style error
objects), raw bodies with malformed JSON, invalid UTF-8 or max_tokens out of
range get 400, a client that hangs up before its whole answer frees its sequence at
once, and the server keeps serving afterwards. Raw HTTP, so nothing retries.

    python3 tests/server/test_limits.py --url http://127.0.0.1:PORT/v1
"""
import argparse
import concurrent.futures
import json
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def post(url, body, timeout=120):
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"{}")


def metrics(base):
    out = {}
    with urllib.request.urlopen(base.rsplit("/v1", 1)[0] + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#") and "{" not in line:
                k, v = line.split()
                out[k] = float(v)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    a = ap.parse_args()
    with urllib.request.urlopen(a.url + "/models", timeout=30) as r:
        model = json.loads(r.read())["data"][0]["id"]
    results = []

    def check(name, ok, detail=""):
        results.append(ok)
        print(f"{'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"))

    big = json.dumps({"model": model, "prompt": "x" * 5000, "max_tokens": 1}).encode()
    st, _, body = post(a.url + "/completions", big)
    check("413 for a body over --max-body", st == 413 and body.get("error", {}).get("type") == "invalid_request_error",
          f"{st} {body}")

    req = json.dumps({"model": model, "prompt": "Count slowly:", "max_tokens": 48, "temperature": 0}).encode()
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        got = list(ex.map(lambda _: post(a.url + "/completions", req), range(8)))
    codes = sorted(g[0] for g in got)
    limited = [g for g in got if g[0] == 429]
    check("429 when one runs and one waits", codes.count(200) >= 2 and len(limited) >= 1, f"codes {codes}")
    check("429 carries Retry-After and an error object",
          all(g[1].get("Retry-After") and g[2].get("error", {}).get("code") == "rate_limit_exceeded" for g in limited),
          f"{limited[:1]}")
    # raw bad bodies the openai client would never send: each gets 400 and an error object
    for name, raw in [("malformed JSON", b'{"model": "m", "prompt": "hi",'),
                      ("invalid UTF-8", b'{"model": "' + model.encode() + b'", "prompt": "caf\xc3\x28", "max_tokens": 1}'),
                      ("max_tokens out of range", json.dumps({"model": model, "prompt": "hi",
                                                              "max_tokens": 10 ** 12}).encode())]:
        st, _, body = post(a.url + "/completions", raw)
        check(f"400 and an error object for {name}",
              st == 400 and body.get("error", {}).get("type") == "invalid_request_error", f"{st} {body}")

    # a client that hangs up while waiting for a whole (non-streamed) answer: its
    # sequence goes at once, and the one running slot serves the next request
    host, port = urllib.parse.urlsplit(a.url).hostname, urllib.parse.urlsplit(a.url).port
    path = urllib.parse.urlsplit(a.url).path + "/chat/completions"
    long_req = json.dumps({"model": model, "max_tokens": 3000,
                           "messages": [{"role": "user", "content": "Tell a very long story."}]}).encode()
    sock = socket.create_connection((host, port), timeout=30)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(long_req)}\r\n\r\n".encode() + long_req)
    busy = None
    t0 = time.time()
    while time.time() - t0 < 60 and busy is None:
        m = metrics(a.url)
        if m.get("kvlm_running_sequences", 0) > 0 and m.get("kvlm_kv_blocks_in_use", 0) > 0:
            busy = m
        time.sleep(0.05)
    sock.close()
    t_hang, idle = time.time(), None
    while time.time() - t_hang < 2.0:
        m = metrics(a.url)
        if m.get("kvlm_running_sequences", -1) == 0 and m.get("kvlm_kv_blocks_in_use", -1) == 0:
            idle = time.time() - t_hang
            break
        time.sleep(0.02)
    check("a client that hangs up before a whole answer frees its sequence within 2 s",
          busy is not None and idle is not None, f"busy {busy is not None}, idle after {idle}")

    st, _, body = post(a.url + "/completions", req)
    check("still serving afterwards", st == 200 and body["usage"]["completion_tokens"] > 0, f"{st} {body}")
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
