#!/usr/bin/env python3
"""bench/serve.py - the load generator behind bench/serve (run that: it picks the python).

Two OpenAI-compatible servers, one after the other in the same run, on the same
GGUF with the same thread count and the same load:
  llama.cpp   --peer llama-server (the default): llama.cpp's own C++ llama-server as
              bench/peers builds it (the llama.cpp vendored in llama-cpp-python
              0.3.36's sdist):
                llama-server -m MODEL --host H --port P -t T -c (N_CTX * NP) --no-repack
                             -np NP -fa on|off
              NP slots (--np, default 16: kvlm serve's --parallel) of N_CTX positions
              each (--n-ctx, default 4096: kvlm serve's -c), continuous batching (its
              default), its prompt cache and defaults otherwise; --no-repack is
              `bench/peers --repack-args llama-server` (on a CPU that reports AMX).
              Flash attention (--llama-fa): probe (the default) starts it once with
              -fa off and once with -fa on, each for one warm-up and one round of
              max(C) streams of --probe-tokens tokens, and runs the tests with the
              setting of the higher aggregate decode tok/s (both figures are saved and
              printed); both runs the tests with each; on / off with that one.
              --peer llama-cpp-python: llama-cpp-python's server (`python -m
              llama_cpp.server`, one request at a time), started through --llama-launch
              below so its weights stay in plain CPU buffers (use_extra_bufts = false,
              as bench/compare's worker does: this VM reports AMX and ggml's AMX buffer
              type faults on the first tile instruction); --llama-fa defaults to on.
  kvlm        KVLM_CMD (or --kvlm-cmd), if build/kvlm has a `serve` subcommand.
Each server listens on 127.0.0.1 on a free port; we wait for GET /v1/models, run
one untimed warm-up request, then the two tests, then stop it (SIGTERM, by pid).

Test 1, concurrency. For C in --concurrency (1, 4, 16), --rounds rounds of C
streamed /v1/completions sent at once (temperature 0, --max-tokens each, a
distinct prompt per request: it starts with a fresh random hex nonce, so two
prompts share at most a leading token or two, less than one 16-token block).
Per stream: TTFT = first content token - request sent; the completion tokens n
(usage.completion_tokens from the final chunk when the server sends one
[stream_options.include_usage], else the number of content chunks); its
inter-token latency ITL = (last token - first token) / (n - 1).
Per round: aggregate decode tok/s = sum(n - 1) / (last token of any stream -
first token of any stream): the first token of each stream is prefill's, the rest
are decode steps, and the window is the wall-clock span in which any stream was
decoding. end-to-end tok/s = sum(n) / (last token - requests sent). steady tok/s
= tokens arriving while all C streams were between their first and last token,
over that window's length (null when the streams never overlap, as on a server
that runs one request at a time). Reported: the median over rounds of each rate,
and the mean over every stream of every round of TTFT and ITL.

Test 2, TTFT cold vs cached. A ~--prefix-tokens prefix (the start of GPL-3,
whose length in tokens is found with llama.cpp's tokenizer: a llama-server's
/tokenize, or llama-cpp-python's vocab_only model with that peer) goes in
the system message behind a fresh nonce; request A asks question 1 (cold: no
earlier prompt starts with that nonce), request B, right after, asks question 2
with the same system message (its prefix can be cached). Both streamed,
--ttft-max-tokens tokens; TTFT as above. Repeated --ttft-reps times with a new
nonce each time; the medians are reported, with usage.prompt_tokens_details.
cached_tokens of each request when the server reports it and, for llama.cpp, the
prompt tokens it evaluated (from its log: llama_perf "prompt eval ... / N tokens").
The prompt length is usage.prompt_tokens of a final non-streamed copy of B.

Writes bench/results/serve_<git short hash>.json (or --save FILE) and prints
Markdown tables. Exit codes: 0 ok, 1 runtime error, 2 usage.
"""
import argparse
import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

from benchutil import git_commit, positive
import peers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The kvlm server's command line; {model} {host} {port} {threads} {root} are filled in.
KVLM_CMD = "{root}/build/kvlm serve -m {model} --host {host} --port {port} -t {threads}"
HOST = "127.0.0.1"
TEXT = "/usr/share/common-licenses/GPL-3"
QUESTIONS = ("What is the name of this license? Answer in one sentence.",
             "May I sell copies of a program under it? Answer in one sentence.")
# Story openings for the concurrency test: raw completions that run on for a while.
STARTERS = ("Chapter one. The rain had not stopped for three days when the old lighthouse keeper",
            "The history of the small mountain village begins in the year 1723, when",
            "Dear diary, today was the strangest day of my life. It started when",
            "In the following essay I will explain, step by step, why the ocean",
            "The recipe my grandmother left me is long, and it begins like this:",
            "Captain's log, day forty. The ship's engine failed again this morning and",
            "Once upon a time, in a kingdom at the edge of a great desert, there lived",
            "The lecture began with a simple question about how computers store numbers:")


# ---- the llama.cpp server launcher (runs under the venv's python) ------------------------
def llama_launch(argv):
    """python -m llama_cpp.server ARGV, with use_extra_bufts = false on the model (as
    tests/ref/ref_llama_cpp.py load() does: Llama.__init__ reads the default params
    through the module attribute we wrap)."""
    import runpy
    import llama_cpp.llama_cpp as lc
    orig = lc.llama_model_default_params

    def no_extra_bufts():
        mp = orig()
        mp.use_extra_bufts = False
        return mp
    lc.llama_model_default_params = no_extra_bufts
    sys.argv = ["llama_cpp.server"] + argv
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


# ---- servers -------------------------------------------------------------------------------
def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """One server process we start and stop (by its pid); its output goes to log."""

    def __init__(self, name, cmd, log_path):
        self.name, self.cmd, self.log_path = name, cmd, log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def wait_ready(self, base, timeout):
        """Poll GET base/models until it answers 200; returns the JSON."""
        t_end = time.time() + timeout
        while time.time() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(base + "/models", timeout=2) as r:
                    if r.status == 200:
                        return json.load(r)
            except OSError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} server not ready after {timeout} s:\n{self.log_tail()}")

    def log_size(self):
        self.log.flush()
        return os.path.getsize(self.log_path)

    def log_since(self, pos):
        with open(self.log_path, "rb") as f:
            f.seek(pos)
            return f.read().decode(errors="replace")

    def log_tail(self, n=30):
        with open(self.log_path, "rb") as f:
            return "\n".join(f.read().decode(errors="replace").splitlines()[-n:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def llama_command(a, port, fa):
    """--peer llama-cpp-python: its server, through --llama-launch."""
    cmd = [sys.executable, os.path.abspath(__file__), "--llama-launch",
           "--model", a.model, "--host", HOST, "--port", str(port),
           "--n_threads", str(a.threads), "--n_threads_batch", str(a.threads),
           "--n_ctx", str(a.n_ctx), "--n_batch", "512", "--n_ubatch", "512",
           "--flash_attn", str(fa == "on"),
           # logits of the last token only (the default True computes the 49,152-wide
           # output row for every prompt token: slower prefill, needed only for echo logprobs)
           "--logits_all", "False",
           # queue concurrent requests instead of cutting the running stream short
           # (the default True ends a stream with [DONE] as soon as another request waits)
           "--interrupt_requests", "False",
           "--verbose", "True"]   # its per-request llama_perf lines tell the prompt tokens evaluated
    return cmd + shlex.split(a.llama_args)


def llama_server_command(a, port, fa):
    """--peer llama-server: -np slots of --n-ctx positions each (llama-server splits -c
    among its slots: no unified KV cache when -np is given), continuous batching."""
    return peers.server_cmd(a.llama_server, a.model, HOST, port, a.threads, a.n_ctx * a.np,
                            ["-np", str(a.np), "-fa", fa]) + shlex.split(a.llama_args)


def kvlm_command(a, port):
    return shlex.split(a.kvlm_cmd.format(root=ROOT, model=shlex.quote(a.model), host=HOST,
                                         port=port, threads=a.threads))


def kvlm_skip_reason(a):
    """None if the kvlm command can run, else why not."""
    cmd = kvlm_command(a, 0)
    exe = cmd[0]
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        return f"no kvlm binary at {exe} (make, or --kvlm-cmd)"
    if "serve" in cmd[1:2]:
        try:
            p = subprocess.run([exe, "serve", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=10)
        except subprocess.TimeoutExpired:
            return f"`{exe} serve --help` did not return within 10 s"
        if p.returncode != 0:
            return f"{exe} has no `serve` subcommand (`{exe} serve --help` exited {p.returncode})"
    return None


# ---- requests ------------------------------------------------------------------------------
def nonce(used):
    """A random 8-hex-digit tag whose first character no earlier tag of this set had, so
    two prompts never share their first tokens (at most 16 per set)."""
    while True:
        t = uuid.uuid4().hex[:8]
        if t[0] not in used or len(used) >= 16:
            used.add(t[0])
            return t


async def stream(client, model, a, *, prompt=None, messages=None, max_tokens):
    """One streamed request. Returns times (perf_counter) of the request and of every
    chunk with content, the token count and the final usage (a dict, or None)."""
    kw = dict(model=model, max_tokens=max_tokens, temperature=0, stream=True,
              stream_options={"include_usage": True})
    t0 = time.perf_counter()
    if messages is not None:
        s = await client.chat.completions.create(messages=messages, **kw)
    else:
        s = await client.completions.create(prompt=prompt, **kw)
    times, usage, text = [], None, []
    async for ch in s:
        now = time.perf_counter()
        if ch.usage is not None:
            usage = ch.usage.model_dump()
        if not ch.choices:
            continue
        c = ch.choices[0]
        piece = c.delta.content if messages is not None else c.text
        if piece:
            times.append(now)
            text.append(piece)
    n = usage["completion_tokens"] if usage and usage.get("completion_tokens") else len(times)
    return {"t0": t0, "times": times, "n": n, "chunks": len(times), "usage": usage, "text": "".join(text)}


def cached_tokens(usage):
    d = (usage or {}).get("prompt_tokens_details") or {}
    return d.get("cached_tokens")


def round_stats(res):
    """The rates of one round of concurrent streams (see the module comment)."""
    empty = sum(1 for r in res if not r["times"])
    res = [r for r in res if r["times"]]
    if not res:
        raise RuntimeError("no stream of the round returned any content")
    t0 = min(r["t0"] for r in res)
    first = [r["times"][0] for r in res]
    last = [r["times"][-1] for r in res]
    n = [r["n"] for r in res]
    window = max(last) - min(first)
    out = {"streams": len(res), "empty_streams": empty, "tokens": sum(n), "tokens_per_stream": n,
           "decode_tps": sum(k - 1 for k in n) / window if window > 0 else None,
           "e2e_tps": sum(n) / (max(last) - t0),
           "ttft_s": [f - r["t0"] for f, r in zip(first, res)],
           "itl_s": [(r["times"][-1] - r["times"][0]) / (r["n"] - 1) for r in res if r["n"] > 1],
           "steady_tps": None}
    lo, hi = max(first), min(last)
    if hi > lo:
        # each chunk stands for n/chunks tokens (a server may send several tokens a chunk)
        k = sum(sum(1 for t in r["times"] if lo < t <= hi) * r["n"] / r["chunks"] for r in res)
        out["steady_tps"] = k / (hi - lo)
    return out


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def mean(xs):
    return sum(xs) / len(xs) if xs else None


async def concurrency_test(client, model, a):
    rows = []
    for c in a.concurrency:
        rounds = []
        for r in range(a.rounds):
            used = set()   # 16 hex digits: up to 16 prompts start differently
            prompts = [f"{nonce(used)} {STARTERS[(r * c + i) % len(STARTERS)]}" for i in range(c)]
            jobs = [stream(client, model, a, prompt=p, max_tokens=a.max_tokens) for p in prompts]
            res = await asyncio.wait_for(asyncio.gather(*jobs), timeout=a.timeout + 10)
            st = round_stats(res)
            rounds.append(st)
            sys.stderr.write(f"    C={c:<2} round {r + 1}/{a.rounds}: {st['tokens']} tokens, decode "
                             f"{fmt(st['decode_tps'])} tok/s, mean TTFT {1e3 * mean(st['ttft_s']):.0f} ms\n")
        ttft = [x for st in rounds for x in st["ttft_s"]]
        itl = [x for st in rounds for x in st["itl_s"]]
        rows.append({"concurrency": c, "rounds": a.rounds, "max_tokens": a.max_tokens,
                     "decode_tps": median(st["decode_tps"] for st in rounds),
                     "e2e_tps": median(st["e2e_tps"] for st in rounds),
                     "steady_tps": median(st["steady_tps"] for st in rounds),
                     "mean_ttft_ms": 1e3 * mean(ttft), "median_ttft_ms": 1e3 * median(ttft),
                     "max_ttft_ms": 1e3 * max(ttft), "mean_itl_ms": 1e3 * mean(itl) if itl else None,
                     "mean_tokens_per_stream": mean([st["tokens"] / st["streams"] for st in rounds]),
                     "per_round": [{k: st[k] for k in ("streams", "empty_streams", "tokens", "tokens_per_stream",
                                                       "decode_tps", "e2e_tps", "steady_tps")}
                                   | {"mean_ttft_ms": 1e3 * mean(st["ttft_s"])} for st in rounds]})
    return rows


def make_prefix(a, count_tokens):
    """The start of GPL-3, cut at a word so that it is about a.prefix_tokens tokens long,
    counted by count_tokens(text) (llama.cpp's tokenizer of the same GGUF); None: GPL-3
    runs at about 4.3 characters a token."""
    words = open(TEXT).read().split()

    def count(k):
        text = " ".join(words[:k])
        return count_tokens(text) if count_tokens else len(text) / 4.3
    lo, hi = 1, len(words)
    while lo < hi:   # the fewest words with at least prefix_tokens tokens
        mid = (lo + hi) // 2
        if count(mid) < a.prefix_tokens:
            lo = mid + 1
        else:
            hi = mid
    return " ".join(words[:lo]), int(count(lo))


def vocab_counter(a):
    """llama-cpp-python's tokenizer of a.model (vocab only), or None without the module."""
    try:
        from llama_cpp import Llama
        saved = os.dup(2)   # llama.cpp logs from C while loading, even with verbose=False
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        try:
            tok = Llama(model_path=a.model, vocab_only=True, verbose=False)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(null)
    except Exception:
        return None
    return lambda text: len(tok.tokenize(text.encode(), add_bos=False))


def prefix_by_llama_server(a, logdir):
    """make_prefix, counted by the /tokenize of a llama-server (one slot, one thread)
    started for it and stopped."""
    port = free_port()
    srv = Server("tokenizer", peers.server_cmd(a.llama_server, a.model, HOST, port, 1, 512, ["-np", "1"]),
                 os.path.join(logdir, "tokenizer.log"))
    try:
        srv.wait_ready(f"http://{HOST}:{port}/v1", a.start_timeout)

        def count(text):
            req = urllib.request.Request(f"http://{HOST}:{port}/tokenize",
                                         json.dumps({"content": text, "add_special": False}).encode(),
                                         {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=a.timeout) as r:
                return len(json.load(r)["tokens"])
        return make_prefix(a, count)
    finally:
        srv.stop()


PERF_RE = re.compile(r"prompt eval time =\s*[\d.]+ ms /\s*(\d+) tokens")


async def ttft_test(client, model, a, server, prefix, used):
    reps = []
    for rep in range(a.ttft_reps):
        system = f"{nonce(used)}\n{prefix}"
        one = {}
        for label, q in (("cold", QUESTIONS[0]), ("cached", QUESTIONS[1])):
            msgs = [{"role": "system", "content": system}, {"role": "user", "content": q}]
            pos = server.log_size()
            r = await asyncio.wait_for(stream(client, model, a, messages=msgs, max_tokens=a.ttft_max_tokens),
                                       timeout=a.timeout + 10)
            await asyncio.sleep(0.3)   # let the server write its per-request log lines
            ev = [int(x) for x in PERF_RE.findall(server.log_since(pos))]
            one[label] = {"ttft_ms": 1e3 * (r["times"][0] - r["t0"]) if r["times"] else None,
                          "prompt_tokens": (r["usage"] or {}).get("prompt_tokens"),
                          "cached_tokens": cached_tokens(r["usage"]),
                          "evaluated_tokens_log": ev[-1] if ev else None,
                          "completion_tokens": r["n"]}
        reps.append(one)
        sys.stderr.write(f"    TTFT rep {rep + 1}/{a.ttft_reps}: cold {fmt(one['cold']['ttft_ms'], '.0f')} ms, "
                         f"cached {fmt(one['cached']['ttft_ms'], '.0f')} ms (cached_tokens "
                         f"{one['cold']['cached_tokens']}/{one['cached']['cached_tokens']}, evaluated per log "
                         f"{one['cold']['evaluated_tokens_log']}/{one['cached']['evaluated_tokens_log']})\n")
    # the prompt length as the server counts it: a non-streamed copy of the last B
    resp = await asyncio.wait_for(client.chat.completions.create(
        model=model, messages=msgs, max_tokens=1, temperature=0), timeout=a.timeout)
    out = {"reps": reps, "prefix_tokens_local": a.prefix_tokens_local,
           "prompt_tokens": resp.usage.prompt_tokens if resp.usage else None}
    for label in ("cold", "cached"):
        out[label] = {k: median(r[label][k] for r in reps)
                      for k in ("ttft_ms", "cached_tokens", "evaluated_tokens_log", "prompt_tokens")}
    return out


async def bench_server(name, a, server, base, models):
    from openai import AsyncOpenAI
    model = models["data"][0]["id"]
    client = AsyncOpenAI(base_url=base, api_key="none", timeout=a.timeout, max_retries=0)
    try:
        await asyncio.wait_for(stream(client, model, a, prompt="Hello", max_tokens=8), timeout=a.timeout)
        used = set()
        res = {"server": name, "model_id": model}
        if a.ttft_reps:
            sys.stderr.write(f"  {name}: TTFT, ~{a.prefix_tokens}-token prefix cold vs cached\n")
            res["ttft"] = await ttft_test(client, model, a, server, a.prefix_text, used)
        sys.stderr.write(f"  {name}: concurrency {','.join(map(str, a.concurrency))}\n")
        res["concurrency"] = await concurrency_test(client, model, a)
        return res
    finally:
        await client.close()


def run_server(name, cmd, a, port, logdir):
    log = os.path.join(logdir, re.sub(r"[^\w.-]+", "_", name) + ".log")
    sys.stderr.write(f"  {name}: {shlex.join(cmd)}\n")
    srv = Server(name, cmd, log)
    try:
        base = f"http://{HOST}:{port}/v1"
        t = time.time()
        models = srv.wait_ready(base, a.start_timeout)
        sys.stderr.write(f"  {name}: ready in {time.time() - t:.1f} s on port {port}\n")
        res = asyncio.run(bench_server(name, a, srv, base, models))
        res["command"] = shlex.join(cmd)
        return res
    except Exception as e:
        why = f"{type(e).__name__}: {e}"
        if isinstance(e, TimeoutError):
            why = (f"a request or a round took longer than --timeout {a.timeout:.0f} s (load average "
                   f"{os.getloadavg()[0]:.2f}: is something else using the CPUs?)")
        sys.stderr.write(f"bench/serve: {name}: {why}\n--- the end of {log} ---\n{srv.log_tail(12)}\n")
        raise
    finally:
        srv.stop()


def probe_fa(a, mk, logdir):
    """--llama-fa probe: a fresh llama.cpp server per flash-attention setting, one warm-up
    and one round of max(C) streams of --probe-tokens tokens (no TTFT test); returns the
    setting of the higher aggregate decode tok/s and both rounds."""
    short = argparse.Namespace(**{**vars(a), "rounds": 1, "concurrency": [max(a.concurrency)],
                                  "max_tokens": a.probe_tokens, "ttft_reps": 0})
    out = {}
    for fa in ("off", "on"):
        port = free_port()
        r = run_server(f"{a.peer} -fa {fa} (probe)", mk(a, port, fa), short, port, logdir)
        c = r["concurrency"][0]
        out[fa] = {"concurrency": c["concurrency"], "max_tokens": c["max_tokens"], "decode_tps": c["decode_tps"],
                   "mean_ttft_ms": c["mean_ttft_ms"], "command": r["command"]}
    best = max(out, key=lambda f: out[f]["decode_tps"] or 0.0)
    sys.stderr.write(f"bench/serve: flash attention probe at C={out[best]['concurrency']}, {a.probe_tokens} tokens: "
                     f"off {fmt(out['off']['decode_tps'])}, on {fmt(out['on']['decode_tps'])} tok/s: -fa {best}\n")
    return best, out


# ---- the tables -----------------------------------------------------------------------------
def fmt(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


def print_tables(sm):
    l0, l1 = sm["loadavg_start"], sm["loadavg_end"]
    ncpu = sm.get("cpus", 1)
    print(f"model      {sm['model']}")
    print(f"threads    {sm['threads']}; max_tokens {sm['max_tokens']}, temperature 0, rounds {sm['rounds']}; "
          f"commit {sm['commit']}")
    print(f"load avg   {l0[0]:.2f} {l0[1]:.2f} {l0[2]:.2f} at the start, {l1[0]:.2f} {l1[1]:.2f} {l1[2]:.2f} at the end "
          f"({ncpu} CPUs)" + ("  -- the machine was busy: numbers are noisy" if max(l0[0], l1[0]) > 0.5 * ncpu else ""))
    if sm.get("peer") == "llama-server":
        pr = sm.get("fa_probe")
        probe = (f", the better of a probe: off {fmt(pr['off']['decode_tps'])}, on {fmt(pr['on']['decode_tps'])} "
                 f"aggregate decode tok/s at C={pr['on']['concurrency']}, {sm['probe_tokens']} tokens") if pr else ""
        print(f"llama.cpp  llama-server of {sm['llama_cpp']} (bench/peers): -np {sm['np_llama']}, "
              f"-c {sm['np_llama'] * sm['n_ctx_llama']} ({sm['n_ctx_llama']} a slot), continuous batching, "
              f"{sm['repack_args'] or 'repacking on'}; flash attention "
              f"{' and '.join(sm.get('llama_fa_used') or []) or '-'}{probe}")
    else:
        print(f"llama.cpp  llama-cpp-python {(sm.get('versions') or {}).get('llama_cpp_python')}'s server "
              f"(one request at a time), flash attention {sm.get('llama_flash_attn')}")
    for s in sm.get("skipped", []):
        print(f"skipped    {s}")
    print()
    print("| server | C | aggregate decode tok/s | end-to-end tok/s | steady tok/s | mean TTFT ms | "
          "max TTFT ms | mean ITL ms | tokens/stream |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in sm["results"]:
        for c in r["concurrency"]:
            print(f"| {r['server']} | {c['concurrency']} | {fmt(c['decode_tps'])} | {fmt(c['e2e_tps'])} | "
                  f"{fmt(c['steady_tps'])} | {fmt(c['mean_ttft_ms'], '.0f')} | {fmt(c['max_ttft_ms'], '.0f')} | "
                  f"{fmt(c['mean_itl_ms'], '.2f')} | {fmt(c['mean_tokens_per_stream'], '.0f')} |")
    print()
    if not any(r.get("ttft") for r in sm["results"]):
        print(f"time       {sm['seconds']:.0f} s")
        return
    print("| server | prompt tokens | TTFT cold ms | TTFT cached ms | cold / cached | cached_tokens cold, cached | "
          "evaluated (log) cold, cached |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in sm["results"]:
        t = r.get("ttft")
        if not t:
            continue
        c, w = t["cold"], t["cached"]
        ratio = c["ttft_ms"] / w["ttft_ms"] if c["ttft_ms"] and w["ttft_ms"] else None
        print(f"| {r['server']} | {fmt(t['prompt_tokens'], 'd')} | {fmt(c['ttft_ms'], '.0f')} | "
              f"{fmt(w['ttft_ms'], '.0f')} | {fmt(ratio, '.1f')}x | "
              f"{fmt(c['cached_tokens'], '.0f')}, {fmt(w['cached_tokens'], '.0f')} | "
              f"{fmt(c['evaluated_tokens_log'], '.0f')}, {fmt(w['evaluated_tokens_log'], '.0f')} |")
    print()
    print(f"time       {sm['seconds']:.0f} s; medians over {sm['ttft_reps']} TTFT repetitions; "
          "'-' = not reported by that server")


# ---- the driver -----------------------------------------------------------------------------
def int_list(s):
    try:
        v = [int(x) for x in s.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad list '{s}'")
    if not v or min(v) < 1:
        raise argparse.ArgumentTypeError(f"bad list '{s}'")
    return v


def versions():
    import importlib.metadata as m
    out = {}
    for p in ("llama_cpp_python", "openai", "fastapi", "uvicorn", "sse-starlette"):
        try:
            out[p] = m.version(p)
        except m.PackageNotFoundError:
            out[p] = None
    return out


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--llama-launch":
        return llama_launch(sys.argv[2:])
    ap = argparse.ArgumentParser(
        prog="bench/serve",
        description="kvlm serve vs llama.cpp's llama-server (or llama-cpp-python's server), same GGUF, "
                    "threads and load, one run: "
                    "aggregate decode tok/s, TTFT and ITL at 1/4/16 concurrent streams, and TTFT of a "
                    "~2,000-token prefix cold vs cached.")
    ap.add_argument("--only", choices=["llama", "kvlm"], help="run one server only")
    ap.add_argument("-t", "--threads", type=positive, default=2)
    ap.add_argument("-r", "--rounds", type=positive, default=3, help="rounds per concurrency (default 3)")
    ap.add_argument("-c", "--concurrency", type=int_list, default=[1, 4, 16], help="default 1,4,16")
    ap.add_argument("-n", "--max-tokens", type=positive, default=128)
    ap.add_argument("-m", "--model", help="GGUF (default: scripts/fetch-model.sh, the cached SmolLM2-135M Q4_1)")
    ap.add_argument("--kvlm-cmd", default=KVLM_CMD,
                    help="kvlm server command; {root} {model} {host} {port} {threads} are filled in "
                         f"(default: '{KVLM_CMD}')")
    ap.add_argument("--peer", choices=["llama-server", "llama-cpp-python"], default="llama-server",
                    help="llama.cpp's server: its own llama-server from bench/peers (default), or "
                         "llama-cpp-python's (the fallback; bench/serve then uses its venv)")
    ap.add_argument("--n-ctx", type=positive, default=4096,
                    help="llama.cpp's context per sequence (default 4096, kvlm serve's -c); llama-server gets "
                         "-c N_CTX*NP")
    ap.add_argument("--np", type=positive, default=16,
                    help="llama-server's slots, -np (default 16, kvlm serve's --parallel)")
    ap.add_argument("--llama-fa", "--llama-flash-attn", dest="llama_fa", choices=["probe", "both", "on", "off"],
                    help="llama.cpp flash attention: probe = the better of off/on in a short run first "
                         "(default with llama-server), both = the whole run with each, on (default with "
                         "llama-cpp-python), off")
    ap.add_argument("--probe-tokens", type=positive, default=32,
                    help="max_tokens of the probe's round of max(C) streams (default 32)")
    ap.add_argument("--llama-args", default="",
                    help="more options for llama.cpp's server, e.g. '-kvu' (llama-server) or '--cache True'")
    ap.add_argument("--prefix-tokens", type=positive, default=2000)
    ap.add_argument("--ttft-reps", type=int, default=3, help="cold/cached pairs (0 = skip the test)")
    ap.add_argument("--ttft-max-tokens", type=positive, default=8)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    ap.add_argument("--start-timeout", type=float, default=90.0, help="seconds for a server to come up")
    ap.add_argument("--save", metavar="FILE", help="results JSON (default bench/results/serve_HASH.json)")
    ap.add_argument("--logs", metavar="DIR", help="keep the servers' logs in DIR")
    ap.add_argument("--show", metavar="FILE", help="print the tables of a saved run, and exit")
    a = ap.parse_args()
    if a.show:
        with open(a.show) as f:
            print_tables(json.load(f))
        return 0
    if not a.model:
        a.model = subprocess.run([os.path.join(ROOT, "scripts", "fetch-model.sh")], stdout=subprocess.PIPE,
                                 text=True, check=True).stdout.strip()
    a.model = os.path.abspath(a.model)
    if not os.path.exists(a.model):
        sys.exit(f"bench/serve: no model at {a.model}")
    try:
        import openai  # noqa: F401
    except ImportError:
        sys.exit("bench/serve: no `openai` module: run bench/serve (the wrapper installs it), not bench/serve.py")

    commit, dirty = git_commit()
    save = a.save or os.path.join(ROOT, "bench", "results", f"serve_{commit}.json")
    a.llama_fa = a.llama_fa or ("probe" if a.peer == "llama-server" else "on")
    repack = []
    if a.peer == "llama-server":
        try:
            a.llama_server = peers.tool_path("llama-server")
            repack = peers.repack_args("llama-server", quiet=False)
        except peers.PeersError as e:
            sys.exit(f"bench/serve: {e}\n(--peer llama-cpp-python runs llama-cpp-python's server instead)")
        mk_llama = llama_server_command
        sys.stderr.write(f"bench/serve: peer llama-server {a.llama_server} ({peers.build_pin(a.llama_server)}), "
                         f"-np {a.np}, -c {a.n_ctx * a.np}, {' '.join(repack) or 'repacking on'}, "
                         f"flash attention {a.llama_fa}\n")
    else:
        mk_llama = llama_command
        sys.stderr.write(f"bench/serve: peer llama-cpp-python ({sys.executable} -m llama_cpp.server), "
                         f"flash attention {a.llama_fa}\n")
    servers, skipped = [], []
    logdir = a.logs or tempfile.mkdtemp(prefix="kvlm-serve-bench.")
    os.makedirs(logdir, exist_ok=True)
    load0, t_start = os.getloadavg(), time.time()
    fa_probe = None
    if a.only in (None, "llama"):
        fas = {"both": ["off", "on"], "on": ["on"], "off": ["off"], "probe": []}[a.llama_fa]
        if a.llama_fa == "probe":
            try:
                best, fa_probe = probe_fa(a, mk_llama, logdir)
            except Exception:
                sys.stderr.write(f"bench/serve: logs kept in {logdir}\n")
                return 1
            fas = [best]
        a.llama_fa_used = fas
        for fa in fas:
            servers.append((f"{a.peer} -fa {fa}", lambda a, port, fa=fa: mk_llama(a, port, fa)))
    if a.only in (None, "kvlm"):
        why = kvlm_skip_reason(a)
        if why:
            skipped.append(f"kvlm: {why}")
            sys.stderr.write(f"bench/serve: skipping kvlm: {why}\n")
        else:
            servers.append(("kvlm", kvlm_command))
    if not servers:
        sys.stderr.write("bench/serve: no server to run\n")
        return 1

    a.prefix_text, a.prefix_tokens_local = "", 0
    if a.ttft_reps:
        a.prefix_text, a.prefix_tokens_local = (prefix_by_llama_server(a, logdir) if a.peer == "llama-server"
                                                else make_prefix(a, vocab_counter(a)))
    results = []
    for name, mk in servers:
        port = free_port()
        try:
            results.append(run_server(name, mk(a, port), a, port, logdir))
        except Exception:
            sys.stderr.write(f"bench/serve: logs kept in {logdir}\n")
            return 1
    load1 = os.getloadavg()
    summary = {"commit": commit, "dirty": dirty, "model": a.model, "threads": a.threads, "rounds": a.rounds,
               "max_tokens": a.max_tokens, "concurrency": a.concurrency, "prefix_tokens": a.prefix_tokens,
               "ttft_reps": a.ttft_reps, "ttft_max_tokens": a.ttft_max_tokens, "n_ctx_llama": a.n_ctx,
               "peer": a.peer, "llama_flash_attn": a.llama_fa, "fa_probe": fa_probe, "probe_tokens": a.probe_tokens,
               "llama_fa_used": getattr(a, "llama_fa_used", []),
               "llama_server": getattr(a, "llama_server", None),
               "llama_cpp": peers.build_pin(a.llama_server) if a.peer == "llama-server" else None,
               "np_llama": a.np if a.peer == "llama-server" else None, "repack_args": " ".join(repack),
               "cpus": os.cpu_count(), "loadavg_start": load0,
               "loadavg_end": load1, "seconds": time.time() - t_start, "versions": versions(),
               "command": shlex.join(["bench/serve"] + sys.argv[1:]), "skipped": skipped, "results": results}
    os.makedirs(os.path.dirname(os.path.abspath(save)), exist_ok=True)
    with open(save, "w") as f:
        json.dump(summary, f, indent=2)
    print_tables(summary)
    print(f"saved      {os.path.relpath(save, os.getcwd())}")
    if not a.logs:
        shutil.rmtree(logdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
