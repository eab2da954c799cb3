#!/usr/bin/env python3
"""tests/server/test_stall.py - a streaming client that stops reading (socket
open, nothing read) against a live `kvlm serve --stream-queue 4096
--stream-stall-timeout S`: its stream fills, its sequences pause
(kvlm_streams_paused), and 3 other clients that stream meanwhile get their
tokens while it is stuck and finish normally; S seconds later it is cut off
(the connection reset, without [DONE]; kvlm_streams_stalled_total + 1), its
sequences are freed (no running sequence or block in use is left) and its
published prompt blocks stay cached (the same prompt hits them). Raw sockets
and http.client, standard library only.

    python3 tests/server/test_stall.py --url http://127.0.0.1:PORT/v1 --stall S
"""
import argparse
import http.client
import json
import os
import select
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request

# generous bounds for a loaded 2-core machine; the sanitizer build sets KVLM_TEST_TIMEOUT
SLOW = float(os.environ.get("KVLM_TEST_TIMEOUT", "0")) > 0
FILL_S = 300 if SLOW else 60        # until the deaf stream's buffers are full
SLACK_S = 10 if SLOW else 3         # the cut after the stall time, beyond it
DONE_S = 300 if SLOW else 60        # for the other clients to finish
PROMPT = "Count to 1000: " + ", ".join(str(i) for i in range(1, 13)) + ","   # 40 tokens: 2 full blocks


def metrics(base):
    out = {}
    with urllib.request.urlopen(base + "/metrics", timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#") and "{" not in line:
                k, v = line.split()
                out[k] = float(v)
    return out


def post_raw(host, port, path, body, rcvbuf=None):
    """A socket with the request sent; rcvbuf (set before connect) caps the window."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect((host, port))
    b = json.dumps(body).encode()
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(b)}\r\n\r\n".encode() + b)
    return s


def wait_reset(s, deadline):
    """When the peer reset (or closed) s, read nothing meanwhile; None at the deadline."""
    p = select.poll()
    p.register(s, select.POLLRDHUP | select.POLLERR | select.POLLHUP)   # not POLLIN: bytes wait unread
    while time.time() < deadline:
        ev = p.poll(50)
        if ev and ev[0][1] & (select.POLLRDHUP | select.POLLERR | select.POLLHUP):
            return time.time()
    return None


def drain(s, seconds=5):
    """What the socket still holds, and whether it ended (EOF or reset) within seconds."""
    s.settimeout(seconds)
    data = b""
    try:
        while True:
            r = s.recv(65536)
            if not r:
                return data, True
            data += r
    except ConnectionResetError:
        return data, True
    except socket.timeout:
        return data, False


class Other(threading.Thread):
    """A client that streams and reads everything: when its first content and [DONE] came."""

    def __init__(self, host, port, path, body):
        super().__init__(daemon=True)
        self.host, self.port, self.path, self.body = host, port, path, body
        self.t_first = self.t_done = None
        self.finish = None
        self.error = None

    def run(self):
        try:
            c = http.client.HTTPConnection(self.host, self.port, timeout=DONE_S)
            c.request("POST", self.path, json.dumps(self.body), {"Content-Type": "application/json"})
            r = c.getresponse()
            if r.status != 200:
                self.error = f"status {r.status}: {r.read()[:200]}"
                return
            for raw in r:
                line = raw.decode().strip()
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    self.t_done = time.time()
                    break
                ch = json.loads(line[6:])["choices"][0]
                if self.t_first is None and (ch.get("text") or ch.get("delta", {}).get("content")):
                    self.t_first = time.time()
                if ch.get("finish_reason"):
                    self.finish = ch["finish_reason"]
            c.close()
        except Exception as e:  # noqa: BLE001 - reported as a failure below
            self.error = repr(e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--stall", type=float, required=True, help="the server's --stream-stall-timeout")
    a = ap.parse_args()
    u = urllib.parse.urlsplit(a.url)
    host, port, v1 = u.hostname, u.port, u.path
    base = a.url.rsplit("/v1", 1)[0]
    with urllib.request.urlopen(a.url + "/models", timeout=30) as r:
        model = json.loads(r.read())["data"][0]["id"]
    results = []

    def check(name, ok, detail=""):
        results.append(bool(ok))
        print(f"{'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"))

    m0 = metrics(base)
    # the client that stops reading: 8 greedy choices of a long count; each event carries the model id,
    # so the server's long --model-id (serve_tests.sh) fills its buffers in fewer tokens
    t0 = time.time()
    deaf = post_raw(host, port, v1 + "/completions",
                    {"model": model, "prompt": PROMPT, "max_tokens": 2000, "n": 8, "temperature": 0,
                     "stream": True}, rcvbuf=4096)
    t_pause = None
    while time.time() - t0 < FILL_S:
        if metrics(base).get("kvlm_streams_paused", 0) >= 1:
            t_pause = time.time()
            break
        time.sleep(0.05)
    check("a stream whose client reads nothing fills its queue and is paused", t_pause is not None,
          f"kvlm_streams_paused stayed 0 for {FILL_S} s")
    if t_pause is None:
        print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
        sys.exit(1)

    others = [Other(host, port, v1 + "/chat/completions",
                    {"model": model, "max_tokens": 24, "stream": True,
                     "messages": [{"role": "user", "content": f"Name {k + 2} colours."}]}) for k in range(2)]
    others.append(Other(host, port, v1 + "/completions",
                        {"model": model, "prompt": "The capital of France is", "max_tokens": 24, "stream": True}))
    for o in others:
        o.start()
    t_cut = wait_reset(deaf, t_pause + a.stall + SLACK_S)
    m1 = metrics(base)
    for o in others:
        o.join(DONE_S)
    check(f"cut off within its stall time + {SLACK_S} s of the pause",
          t_cut is not None, f"still open {a.stall + SLACK_S:.1f} s after the pause")
    if t_cut is not None:
        print(f"     paused {t_pause - t0:.2f} s after the request, cut {t_cut - t_pause:.2f} s after the pause"
              f" (--stream-stall-timeout {a.stall:g})")
    check("kvlm_streams_stalled_total counts it",
          m1.get("kvlm_streams_stalled_total", 0) == m0.get("kvlm_streams_stalled_total", 0) + 1,
          f"{m0.get('kvlm_streams_stalled_total')} -> {m1.get('kvlm_streams_stalled_total')}")
    data, ended = drain(deaf)
    deaf.close()
    check("its connection ends without [DONE]", ended and b"data: [DONE]" not in data and b"data: {" in data,
          f"ended {ended}, {len(data)} bytes, tail {data[-120:]!r}")
    for k, o in enumerate(others):
        ok = o.error is None and o.t_done is not None and o.finish in ("stop", "length")
        check(f"other client {k} streams and finishes normally", ok,
              f"error {o.error}, done {o.t_done}, finish {o.finish}")
    print("     the others' first token / [DONE] after the pause: " + ", ".join(
        f"{o.t_first - t_pause:.2f} / {o.t_done - t_pause:.2f} s" if o.t_first and o.t_done else "-" for o in others))
    # while the deaf stream was stuck (before its cut), the scheduler served the others
    cut = t_cut if t_cut is not None else time.time()
    check("the others got their tokens while the deaf stream was stuck",
          all(o.t_first is not None and o.t_first < cut for o in others),
          f"first tokens {[round(o.t_first - t_pause, 2) if o.t_first else None for o in others]} s after the"
          f" pause, cut at {cut - t_pause:.2f}")

    idle = None
    t1 = time.time()
    while time.time() - t1 < 10:
        m = metrics(base)
        if m.get("kvlm_running_sequences", -1) == 0 and m.get("kvlm_kv_blocks_in_use", -1) == 0 \
                and m.get("kvlm_streams_paused", -1) == 0:
            idle = m
            break
        time.sleep(0.05)
    check("no sequence, block or paused stream left", idle is not None,
          f"{ {k: m.get(k) for k in ('kvlm_running_sequences', 'kvlm_kv_blocks_in_use', 'kvlm_streams_paused')} }")
    # its published blocks stayed cached: the same prompt hits them
    body = json.dumps({"model": model, "prompt": PROMPT, "max_tokens": 1, "temperature": 0}).encode()
    req = urllib.request.Request(a.url + "/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=DONE_S) as r:
        st, js = r.status, json.loads(r.read())
    cached = js.get("usage", {}).get("prompt_tokens_details", {}).get("cached_tokens", 0)
    check("its prompt blocks stay cached, and the server still answers", st == 200 and cached >= 16,
          f"status {st}, cached_tokens {cached} of {js.get('usage', {}).get('prompt_tokens')}")
    with urllib.request.urlopen(base + "/health", timeout=30) as r:
        check("/health is ok", r.status == 200)
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
