#!/usr/bin/env python3
"""tests/server/test_limits.py - back-pressure of a live `kvlm serve --parallel 1
--queue 1 --max-body 4096`: a body over the limit gets 413, more requests than
one running plus one queued get 429 with Retry-After (OpenAI-style error
objects), and the server keeps serving afterwards. Raw HTTP, so nothing retries.

    python3 tests/server/test_limits.py --url http://127.0.0.1:PORT/v1
"""
import argparse
import concurrent.futures
import json
import sys
import urllib.error
import urllib.request


def post(url, body, timeout=120):
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"{}")


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
    st, _, body = post(a.url + "/completions", req)
    check("still serving afterwards", st == 200 and body["usage"]["completion_tokens"] > 0, f"{st} {body}")
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
