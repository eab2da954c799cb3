#!/usr/bin/env python3
"""bench/tiers.py - the measurements of issue 14 part 7 (run bench/tiers: it finds the venv).

The K/V tiers below RAM (`--cache-dir`, `--cache-redis`, `--cache-compress`) of
`kvlm serve`, measured through its OpenAI API with the official `openai` client.
The bench starts everything it uses and stops it (by pid) however it ends: one
redis-server (/usr/bin/redis-server on a private unix socket in a temporary
directory, --port 0 --save "" --appendonly no; FLUSHALL between runs) and the kvlm
servers (--port 0 --port-file, 127.0.0.1).

1. TTFT of a ~--prefix-tokens prefix (the start of GPL-3 behind a fresh random nonce
   per repetition, in the system message; the user message is a short question;
   streamed, temperature 0, --max-tokens; TTFT = first content token - request
   sent). Instance A: --cache-dir D --cache-redis R; B and C: --cache-redis R only
   (C with --kv-mem 64M, its pool filled with other blocks before the first
   repetition). Every instance gets one short warm-up request after it starts. Per
   repetition, each row its own question:
     cold           A, nothing of the prefix anywhere
     RAM hit        A again
     disk hit       A stopped with SIGTERM, started again on D (its RAM is empty),
                    warmed up, then the request
     disk, no page cache   the same once more, with D's files dropped from the page
                    cache (posix_fadvise DONTNEED) right before the request
     Redis hit (B)  B never saw the prefix; its new blocks are pool memory never
                    touched before (the first touch is what a fresh process pays)
     Redis hit (C)  C never saw the prefix; its new blocks come from evicting cached
                    ones (memory touched before: a server that has been running)
   Per row: the median TTFT over the repetitions, the speed-up (median cold / median
   row), cached_tokens / prompt_tokens, and the blocks each tier answered (from
   /metrics deltas around the request) with the summed lookup time of the tier's
   loader. Goal (issue 14): disk and Redis hits >= 20x faster than cold.
2. Two instances (-t 1 each, the same -c and --parallel) behind a round-robin client
   (request g goes to instance g % 2), the same load on RAM only and on one shared
   Redis: --load-rounds rounds of --load-clients streamed chat requests sent together
   (--load-stagger s apart, default 0), each one of --load-prefixes ~--load-prefix-
   tokens system messages (GPL-3 sections behind nonces; a seeded random draw, the
   same in every run) plus a question of its own. Two starts (--load-starts): cold
   (the rounds on empty caches) and primed (first one request per prefix, alone, to
   A, B, A, B..., as when a document arrives before its readers). Per run: aggregate
   output tok/s (completion tokens / first request sent .. last token), and per
   instance the prompt tokens computed (sum of prompt_tokens - cached_tokens) and how
   many of them were shared-prefix tokens: sum of max(0, S_p - cached_tokens), where
   S_p is the cacheable (whole-block) length of prefix p, measured after the load by
   a probe per prefix and instance whose user text starts with a word no request's
   starts with (so it shares exactly the prefix). A computed shared prefix is
   classified by what the requests with that prefix sent before it had done when it
   was sent: none (first), one still running (race: its blocks may not be below
   yet), all finished with one on this instance (after_here) or only on the other
   (after_elsewhere). Goal: with the shared tier no instance computes a shared prefix
   computed before, races apart.
3. --cache-compress: the runs of 1 for each K/V type of --types (f16, q8) with and
   without compression, on the same prompts (a fresh D and a flushed Redis per run):
   D's total bytes, the bytes of the values Redis holds (C's filler left out), the
   ratios compressed / raw, and the TTFT rows.

Writes bench/results/tiers_<git short hash>.json (or --save FILE) and prints Markdown
tables. Exit codes: 0 ok (goals missed included: they are reported), 1 runtime
error, 2 usage.
"""
import argparse
import asyncio
import glob
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

from benchutil import git_commit, positive, stop_proc, wait_ready

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"
TEXT = "/usr/share/common-licenses/GPL-3"
REDIS = "/usr/bin/redis-server"
ROWS = ("cold", "ram", "disk", "disk_nocache", "redis", "redis_full")
ROW_NAMES = {"cold": "cold (A)", "ram": "RAM hit (A again)", "disk": "disk hit (A restarted)",
             "disk_nocache": "disk hit, files out of page cache", "redis": "Redis hit (B, fresh pool)",
             "redis_full": "Redis hit (C, full pool)"}
QUESTIONS = {"cold": "What is the name of this license? Answer in one sentence.",
             "ram": "May I sell copies of a program under it? Answer in one sentence.",
             "disk": "Who publishes this license? Answer in one sentence.",
             "disk_nocache": "Does it say anything about patents? Answer in one sentence.",
             "redis": "Can I keep my changes to myself? Answer in one sentence.",
             "redis_full": "Is there a warranty? Answer in one sentence."}
FULL_KV_MEM = "64M"   # instance C's pool, filled before the first repetition
LOAD_QUESTIONS = ("Summarize this part in one sentence.", "Which rights does it grant?",
                  "Name one duty it sets.", "Who is it addressed to?", "Is anything forbidden here?",
                  "What term does it define?", "Give a title for this part.", "What happens on a breach?")
PRIMER_QUESTION = "Opening question: what is this part about?"
PROBE_WORDS = ("Zebra", "Walrus")   # the load's questions start with "Question"
GOAL = 20.0
LIVE = []   # processes started and not yet stopped: stopped however we end


# ---- processes ------------------------------------------------------------------------------
class Redis:
    """A private redis-server on a unix socket, and a minimal RESP client to it."""

    def __init__(self, workdir, logdir):
        self.sock_path = os.path.join(workdir, "redis.sock")
        self.log = open(os.path.join(logdir, "redis.log"), "wb")
        self.proc = subprocess.Popen([REDIS, "--port", "0", "--unixsocket", self.sock_path, "--unixsocketperm",
                                      "700", "--save", "", "--appendonly", "no", "--dir", workdir],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        LIVE.append(self)
        self.url = "unix://" + self.sock_path
        t_end = time.time() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode} (log: {self.log.name})")
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(self.sock_path)
                self.f = self.s.makefile("rb")
                if self.cmd("PING") == "PONG":
                    break
            except OSError:
                if time.time() > t_end:
                    raise RuntimeError("redis-server did not answer PING within 10 s")
                time.sleep(0.05)
        self.version = re.search(r"redis_version:(\S+)", self.cmd("INFO", "server")).group(1)

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for x in args:
            x = x if isinstance(x, bytes) else str(x).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(x), x))
        self.s.sendall(b"".join(out))

    def reply(self):
        line = self.f.readline()
        if not line:
            raise RuntimeError("redis: connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError("redis: " + rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise RuntimeError(f"redis: unexpected reply {line!r}")

    def cmd(self, *args):
        self.send(*args)
        return self.reply()

    def keys(self):
        keys, cursor = [], "0"
        while True:
            cursor, batch = self.cmd("SCAN", cursor, "COUNT", 1000)
            keys += batch
            if cursor == "0":
                return keys

    def settled_keys(self, quiet=0.3, limit=10.0):
        """The keys, once their number has not changed for quiet s. A response should end
        only when its blocks are below, but at d6467be it can end a few ms before its last
        ones are (kv_tiers.c pop_ready fires every pending callback at the next write):
        without this wait C's last filler blocks were counted with the measured prompts."""
        keys, t_same, t_end = self.keys(), time.time(), time.time() + limit
        while time.time() - t_same < quiet and time.time() < t_end:
            time.sleep(0.02)
            k = self.keys()
            if len(k) != len(keys):
                keys, t_same = k, time.time()
        return set(keys)

    def stored(self, exclude=()):
        """(keys, bytes of their values) but those in exclude: STRLEN of each, pipelined."""
        keys = [k for k in self.keys() if k not in exclude]
        for k in keys:
            self.send("STRLEN", k)
        return len(keys), sum(self.reply() for _ in keys)

    def stop(self):
        if self in LIVE:
            LIVE.remove(self)
        try:
            self.s.close()
        except (OSError, AttributeError):
            pass
        stop_proc(self.proc)
        self.log.close()


class Kvlm:
    """One `kvlm serve` we start (--port 0 --port-file) and stop with SIGTERM."""
    n_started = 0

    def __init__(self, a, name, args, logdir):
        Kvlm.n_started += 1
        self.name, self.args = name, list(args)
        tag = f"{Kvlm.n_started:02d}-{name}"
        self.port_file = os.path.join(logdir, tag + ".port")
        self.log_path = os.path.join(logdir, tag + ".log")
        self.cmd = [a.kvlm, "serve"] + (["-m", a.model] if a.model else []) + \
            ["--host", HOST, "--port", "0", "--port-file", self.port_file] + self.args
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        LIVE.append(self)
        wait_ready(self.proc, self.ready, a.start_timeout, f"{name}: kvlm serve", self.log_tail)

    def ready(self):
        try:
            port = int(open(self.port_file).read().strip())
            self.base = f"http://{HOST}:{port}"
            with urllib.request.urlopen(self.base + "/v1/models", timeout=2) as r:
                self.model_id = json.load(r)["data"][0]["id"]
            return True
        except (OSError, ValueError):
            return False

    def log_tail(self, n=15):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return "\n".join(f.read().decode(errors="replace").splitlines()[-n:])

    def metrics(self):
        """GET /metrics as {'name{labels}': value}."""
        with urllib.request.urlopen(self.base + "/metrics", timeout=10) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k] = float(v)
        return out

    def stop(self):
        """SIGTERM; returns the exit code (0 expected: pending tier writes are flushed first)."""
        if self in LIVE:
            LIVE.remove(self)
        rc = stop_proc(self.proc)
        self.log.close()
        return rc


def stop_all():
    for p in list(reversed(LIVE)):
        try:
            p.stop()
        except Exception:   # cleanup goes on whatever one process did
            pass


# ---- requests -------------------------------------------------------------------------------
def chat_kw(model, system, question, max_tokens):
    return dict(model=model, messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
                max_tokens=max_tokens, temperature=0, stream=True, stream_options={"include_usage": True})


def usage_fields(u):
    d = (u or {}).get("prompt_tokens_details") or {}
    return {"prompt_tokens": (u or {}).get("prompt_tokens"), "cached_tokens": d.get("cached_tokens"),
            "completion_tokens": (u or {}).get("completion_tokens")}


def stream_sync(client, kw):
    """One streamed chat request: times (perf_counter) of send, first and last content, usage, text."""
    t0 = time.perf_counter()
    first = last = None
    usage, text = None, []
    for ch in client.chat.completions.create(**kw):
        now = time.perf_counter()
        if ch.usage is not None:
            usage = ch.usage.model_dump()
        if ch.choices and ch.choices[0].delta.content:
            first = first or now
            last = now
            text.append(ch.choices[0].delta.content)
    return {"t0": t0, "first": first, "last": last, "end": time.perf_counter(), "text": "".join(text),
            **usage_fields(usage)}


async def stream_async(client, kw):
    t0 = time.perf_counter()
    first = last = None
    usage, text = None, []
    s = await client.chat.completions.create(**kw)
    async for ch in s:
        now = time.perf_counter()
        if ch.usage is not None:
            usage = ch.usage.model_dump()
        if ch.choices and ch.choices[0].delta.content:
            first = first or now
            last = now
            text.append(ch.choices[0].delta.content)
    return {"t0": t0, "first": first, "last": last, "end": time.perf_counter(), "text": "".join(text),
            **usage_fields(usage)}


def client_for(a, srv):
    from openai import OpenAI
    return OpenAI(base_url=srv.base + "/v1", api_key="none", timeout=a.timeout, max_retries=0)


def warm_up(a, srv, k):
    """One short untimed request (the first one of a process pays page faults of the weights)."""
    c = client_for(a, srv)
    stream_sync(c, chat_kw(srv.model_id, "You answer briefly.", f"Warm-up number {k}: say OK.", 2))
    c.close()


def count_tokens(client, model, text):
    """Prompt tokens of text as a raw completion (BOS included if the model adds one)."""
    r = client.completions.create(model=model, prompt=text, max_tokens=1, temperature=0)
    return r.usage.prompt_tokens


def cut(words, start, n_tokens, ratio):
    """The words from start whose text is about n_tokens tokens at ratio tokens per word."""
    return " ".join(words[start:start + max(1, round(n_tokens / ratio))])


def calibrate(a, logdir):
    """The prefixes: GPL-3 cut at a word so that each is about its target length in tokens,
    counted by the server itself (one tier-less instance)."""
    words = open(TEXT).read().split()
    srv = Kvlm(a, "calibrate", ["-t", str(a.threads)], logdir)
    try:
        c = client_for(a, srv)
        sample = 600
        ratio = count_tokens(c, srv.model_id, " ".join(words[:sample])) / sample
        prefix = cut(words, 0, a.prefix_tokens, ratio)
        n = count_tokens(c, srv.model_id, prefix)
        if abs(n - a.prefix_tokens) > 0.02 * a.prefix_tokens:
            ratio *= n / a.prefix_tokens
            prefix = cut(words, 0, a.prefix_tokens, ratio)
            n = count_tokens(c, srv.model_id, prefix)
        load = []
        n_words = round(a.load_prefix_tokens / ratio)
        if n_words * a.load_prefixes > len(words):
            raise SystemExit(f"bench/tiers: GPL-3 has {len(words)} words: too few for {a.load_prefixes} "
                             f"prefixes of {a.load_prefix_tokens} tokens")
        for k in range(a.load_prefixes if not a.skip_load else 0):
            t = cut(words, k * len(words) // a.load_prefixes, a.load_prefix_tokens, ratio)
            load.append({"text": t, "tokens": count_tokens(c, srv.model_id, t)})
        c.close()
        return {"tokens_per_word": ratio, "prefix": prefix, "prefix_tokens": n, "load": load, "words": words,
                "model_id": srv.model_id}
    finally:
        srv.stop()


# ---- test 1 and 3: TTFT by tier -------------------------------------------------------------
def tier_delta(m0, m1):
    """What the tiers did between two /metrics snapshots."""
    def d(k):
        return m1.get(k, 0) - m0.get(k, 0)
    out = {"blocks_loaded": int(d("kvlm_tier_blocks_loaded_total"))}
    for t in ("disk", "redis"):
        if f'kvlm_tier_hits_total{{tier="{t}"}}' not in m1:
            continue
        out[t] = {"hits": int(d(f'kvlm_tier_hits_total{{tier="{t}"}}')),
                  "misses": int(d(f'kvlm_tier_misses_total{{tier="{t}"}}')),
                  "invalid": int(d(f'kvlm_tier_invalid_total{{tier="{t}"}}')),
                  "errors": int(d(f'kvlm_tier_errors_total{{tier="{t}"}}')),
                  "puts": int(d(f'kvlm_tier_puts_total{{tier="{t}"}}')),
                  "read_bytes": int(d(f'kvlm_tier_read_bytes_total{{tier="{t}"}}')),
                  "written_bytes": int(d(f'kvlm_tier_written_bytes_total{{tier="{t}"}}')),
                  "load_ms": 1e3 * d(f'kvlm_tier_load_seconds_sum{{tier="{t}"}}')}
    return out


def timed(a, srv, system, question):
    c = client_for(a, srv)
    m0 = srv.metrics()
    r = stream_sync(c, chat_kw(srv.model_id, system, question, a.max_tokens))
    m1 = srv.metrics()
    c.close()
    if r["first"] is None:
        raise RuntimeError(f"{srv.name}: no content in the answer")
    return {"ttft_ms": 1e3 * (r["first"] - r["t0"]), "e2e_ms": 1e3 * (r["end"] - r["t0"]),
            "prompt_tokens": r["prompt_tokens"], "cached_tokens": r["cached_tokens"],
            "completion_tokens": r["completion_tokens"], "text": r["text"], "tiers": tier_delta(m0, m1)}


def drop_page_cache(d):
    """Drops the (clean, fsynced) pages of every file in d from the page cache."""
    n = 0
    for p in glob.glob(os.path.join(d, "**"), recursive=True):
        if os.path.isfile(p):
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                n += 1
            finally:
                os.close(fd)
    return n


def fill_pool(a, srv, words, ratio):
    """Fills srv's pool with cached blocks of other text (raw completions of ~1,500-token
    GPL-3 pieces behind fixed tags, so every run stores the same), until no block is free:
    from then on a new block comes from evicting a cached one, whose memory is touched."""
    c = client_for(a, srv)
    n_words = round(1500 / ratio)   # 94 blocks: fits any pool of FULL_KV_MEM
    for i in range(32):
        m = srv.metrics()
        free = m["kvlm_kv_blocks_total"] - m["kvlm_kv_blocks_cached"] - m["kvlm_kv_blocks_in_use"]
        if free <= 2:
            break
        start = (i * n_words // 3) % max(1, len(words) - n_words)
        c.completions.create(model=srv.model_id, prompt=f"Filler {i}: " + " ".join(words[start:start + n_words]),
                             max_tokens=1, temperature=0)
    c.close()
    return {"blocks_total": int(m["kvlm_kv_blocks_total"]), "free_after": int(free), "requests": i}


def dir_bytes(d):
    files = [p for p in glob.glob(os.path.join(d, "**"), recursive=True) if os.path.isfile(p)]
    return len(files), sum(os.path.getsize(p) for p in files)


def ttft_run(a, redis, kv_type, compress, cal, nonces, logdir):
    """Test 1 for one K/V type and compression setting; see the module comment."""
    tag = kv_type + ("+zstd" if compress else "")
    sys.stderr.write(f"  TTFT by tier, {tag}\n")
    meter = CpuMeter()
    redis.cmd("FLUSHALL")
    disk = tempfile.mkdtemp(prefix=f"disk-{tag}.", dir=a.workdir)
    common = ["-t", str(a.threads), "--cache-type", kv_type, "--cache-redis", redis.url] + \
        (["--cache-compress"] if compress else [])
    a_args = common + ["--cache-dir", disk]
    n_warm, exits = 0, []
    A = Kvlm(a, f"A-{tag}", a_args, logdir)
    B = Kvlm(a, f"B-{tag}", common, logdir)
    C = Kvlm(a, f"C-{tag}", common + ["--kv-mem", FULL_KV_MEM], logdir)
    try:
        for s in (A, B, C):
            warm_up(a, s, n_warm)
            n_warm += 1
        fill = fill_pool(a, C, cal["words"], cal["tokens_per_word"])
        fill_keys = redis.settled_keys()   # C's filler: left out of the bytes below
        reps = []
        for rep, nonce in enumerate(nonces):
            system = f"Session {nonce}.\n{cal['prefix']}"
            row = {"nonce": nonce}
            row["cold"] = timed(a, A, system, QUESTIONS["cold"])
            row["ram"] = timed(a, A, system, QUESTIONS["ram"])
            for name in ("disk", "disk_nocache") if a.page_cache_row else ("disk",):
                exits.append(A.stop())
                A = Kvlm(a, f"A-{tag}", a_args, logdir)
                warm_up(a, A, n_warm)
                n_warm += 1
                if name == "disk_nocache":
                    drop_page_cache(disk)
                row[name] = timed(a, A, system, QUESTIONS[name])
            row["redis"] = timed(a, B, system, QUESTIONS["redis"])
            row["redis_full"] = timed(a, C, system, QUESTIONS["redis_full"])
            reps.append(row)
            sys.stderr.write("    rep %d/%d: %s\n" % (rep + 1, len(nonces), ", ".join(
                f"{k} {row[k]['ttft_ms']:.0f} ms ({row[k]['cached_tokens']}/{row[k]['prompt_tokens']})"
                for k in ROWS if k in row)))
        n_files, disk_b = dir_bytes(disk)
        n_keys, redis_b = redis.stored(exclude=fill_keys)
        mA = A.metrics()
    finally:
        exits += [A.stop(), B.stop(), C.stop()]
        shutil.rmtree(disk, ignore_errors=True)
    rows = {}
    for k in ROWS:
        xs = [r[k] for r in reps if k in r]
        if not xs:
            continue
        rows[k] = {"ttft_ms": statistics.median(x["ttft_ms"] for x in xs),
                   "ttft_min_ms": min(x["ttft_ms"] for x in xs), "ttft_max_ms": max(x["ttft_ms"] for x in xs),
                   "prompt_tokens": statistics.median(x["prompt_tokens"] for x in xs),
                   "cached_tokens": statistics.median(x["cached_tokens"] for x in xs),
                   "blocks_loaded": statistics.median(x["tiers"]["blocks_loaded"] for x in xs),
                   "from": {t: statistics.median(x["tiers"][t]["hits"] for x in xs)
                            for t in ("disk", "redis") if t in xs[0]["tiers"]},
                   "tier_load_ms": statistics.median(sum(x["tiers"][t]["load_ms"] for t in ("disk", "redis")
                                                         if t in x["tiers"]) for x in xs)}
    for k in rows:
        rows[k]["speedup"] = rows["cold"]["ttft_ms"] / rows[k]["ttft_ms"]
    return {"kv_type": kv_type, "compress": compress, "tag": tag, "reps": reps, "rows": rows,
            "foreign_cores": meter.foreign_cores(),
            "exit_codes_after_sigterm": exits,
            "disk": {"files": n_files, "bytes": disk_b,
                     "stored_bytes_metric": mA.get('kvlm_tier_stored_bytes{tier="disk"}')},
            "redis": {"keys": n_keys, "bytes": redis_b, "filler_keys_left_out": len(fill_keys)},
            "pool_fill_C": fill, "commands": {"A": shlex.join(A.cmd), "B": shlex.join(B.cmd), "C": shlex.join(C.cmd)}}


# ---- test 2: two instances, one load --------------------------------------------------------
async def load_rounds(a, servers, systems, plan, primed):
    """The primer (if primed: one request per prefix, alone, to instance p % 2), then the
    rounds. Returns (primer records, round records)."""
    from openai import AsyncOpenAI
    clients = [AsyncOpenAI(base_url=s.base + "/v1", api_key="none", timeout=a.timeout, max_retries=0)
               for s in servers]
    n = a.load_clients
    primer, recs = [], []

    async def one(g, inst, p, q, delay=0.0):
        await asyncio.sleep(delay)
        r = await stream_async(clients[inst], chat_kw(servers[inst].model_id, systems[p], q, a.load_max_tokens))
        r.update(g=g, round=g // n if g >= 0 else -1, instance=inst, prefix=p)
        return r
    try:
        for p in range(len(systems) if primed else 0):
            primer.append(await asyncio.wait_for(one(-1 - p, p % len(servers), p, PRIMER_QUESTION), a.timeout + 10))
        for rnd in range(a.load_rounds):
            jobs = []
            for j in range(n):
                g = rnd * n + j
                q = f"Question {g + 1}: {LOAD_QUESTIONS[g % len(LOAD_QUESTIONS)]}"
                jobs.append(one(g, g % len(servers), plan[g], q, j * a.load_stagger))
            res = await asyncio.wait_for(asyncio.gather(*jobs), timeout=a.timeout + n * a.load_stagger + 10)
            recs += res
            toks = sum(r["completion_tokens"] or 0 for r in res)
            sys.stderr.write(f"    round {rnd + 1}/{a.load_rounds}: {toks} tokens in "
                             f"{max(r['end'] for r in res) - min(r['t0'] for r in res):.1f} s, cached_tokens "
                             f"{sum(r['cached_tokens'] for r in res)} of {sum(r['prompt_tokens'] for r in res)}\n")
    finally:
        for c in clients:
            await c.close()
    return primer, recs


CLASSES = ("first", "race", "after_here", "after_elsewhere")


def classify(recs, r):
    """What the requests with r's prefix sent before r had done when r was sent: none
    (first), one still running (race: its blocks may not be below yet), all finished,
    one of them on r's instance (after_here: its blocks were in that RAM) or only on
    the other one (after_elsewhere: in the shared tier, if there is one)."""
    before = [o for o in recs if o["prefix"] == r["prefix"] and o["t0"] < r["t0"] and o is not r]
    if not before:
        return "first"
    if any(o["end"] > r["t0"] for o in before):
        return "race"
    return "after_here" if any(o["instance"] == r["instance"] for o in before) else "after_elsewhere"


def peak_in_flight(recs):
    events = sorted([(r["t0"], 1) for r in recs] + [(r["end"], -1) for r in recs])
    inflight = peak = 0
    for _, d in events:
        inflight += d
        peak = max(peak, inflight)
    return peak


def load_run(a, redis, shared, primed, systems, plan, logdir):
    mode = "shared Redis" if shared else "RAM only"
    start = "primed" if primed else "cold"
    sys.stderr.write(f"  two instances, {mode}, {start} start\n")
    meter = CpuMeter()
    args = ["-t", "1", "-c", str(a.load_ctx), "--parallel", str(a.load_parallel)]
    if shared:
        redis.cmd("FLUSHALL")
        args += ["--cache-redis", redis.url]
    servers = []
    try:
        for i in range(2):
            servers.append(Kvlm(a, f"load{i}-{'redis' if shared else 'ram'}-{start}", args, logdir))
        for i, s in enumerate(servers):
            warm_up(a, s, 100 + i)
        primer, recs = asyncio.run(load_rounds(a, servers, systems, plan, primed))
        # S_p: the whole blocks of prefix p (system message and template up to the user's
        # text) a later request can take from the cache. Each probe's text starts with a
        # word no other request starts with, so it shares exactly that part.
        probes = [[None] * len(systems) for _ in servers]
        for i, s in enumerate(servers):
            c = client_for(a, s)
            for p in range(len(systems)):
                kw = chat_kw(s.model_id, systems[p], f"{PROBE_WORDS[i]} check: which part is this?", 1)
                probes[i][p] = stream_sync(c, kw)["cached_tokens"]
            c.close()
        tiers = [tier_delta({}, s.metrics()) for s in servers]
    finally:
        exits = [s.stop() for s in servers]
    shared_len = [max(probes[i][p] for i in range(len(servers))) for p in range(len(systems))]
    for r in primer + recs:
        r["computed"] = r["prompt_tokens"] - r["cached_tokens"]
        r["shared_computed"] = max(0, shared_len[r["prefix"]] - r["cached_tokens"])
        r["class"] = classify(primer + recs, r) if r["shared_computed"] > 0 else None
    t0 = min(r["t0"] for r in recs)
    t1 = max(r["last"] for r in recs if r["last"])
    inst = []
    for i in range(len(servers)):
        mine = [r for r in recs if r["instance"] == i]
        inst.append({"requests": len(mine), "prompt_tokens": sum(r["prompt_tokens"] for r in mine),
                     "cached_tokens": sum(r["cached_tokens"] for r in mine),
                     "computed": sum(r["computed"] for r in mine),
                     "shared_computed": sum(r["shared_computed"] for r in mine),
                     "shared_computed_by_class": {c: sum(r["shared_computed"] for r in mine if r["class"] == c)
                                                  for c in CLASSES},
                     "prefixes_computed_by_class": {c: sum(1 for r in mine if r["class"] == c) for c in CLASSES},
                     "primer_computed": sum(r["computed"] for r in primer if r["instance"] == i),
                     "tiers_whole_run": tiers[i], "probe_cached_tokens": probes[i]})
    toks = sum(r["completion_tokens"] or 0 for r in recs)

    def rec(r):
        return {k: r[k] for k in ("g", "round", "instance", "prefix", "prompt_tokens", "cached_tokens",
                                  "completion_tokens", "computed", "shared_computed", "class")} | \
            {"sent_s": r["t0"] - t0, "ttft_ms": 1e3 * (r["first"] - r["t0"]) if r["first"] else None,
             "end_s": r["end"] - t0}
    return {"shared": shared, "mode": mode, "primed": primed, "start": start, "stagger_s": a.load_stagger,
            "foreign_cores": meter.foreign_cores(),
            "rounds": a.load_rounds, "clients": a.load_clients, "wall_s": t1 - t0, "completion_tokens": toks,
            "aggregate_tps": toks / (t1 - t0),
            "mean_ttft_ms": 1e3 * statistics.mean(r["first"] - r["t0"] for r in recs if r["first"]),
            "max_in_flight": peak_in_flight(recs), "shared_prefix_tokens": shared_len, "instances": inst,
            "exit_codes_after_sigterm": exits, "command": shlex.join(servers[0].cmd),
            "primer": [rec(r) for r in primer], "requests": [rec(r) for r in recs]}


# ---- the tables -----------------------------------------------------------------------------
def fmt(x, spec=".0f"):
    return "-" if x is None else format(x, spec)


def goal_line(run):
    r = run["rows"]
    short = {"disk": "disk", "disk_nocache": "disk (no page cache)", "redis": "Redis (B, fresh pool)",
             "redis_full": "Redis (C, full pool)"}
    return (f"goal ({run['tag']}): disk and Redis hits >= {GOAL:.0f}x faster than cold: "
            + ", ".join(f"{short[k]} {r[k]['speedup']:.1f}x {'met' if r[k]['speedup'] >= GOAL else 'NOT met'}"
                        for k in short if k in r))


def print_tables(sm):
    la = sm["loadavg"]
    print(f"bench/tiers  commit {sm['commit']}{' (dirty tree)' if sm['dirty'] else ''}, {sm['date']}")
    print(f"cpu          {sm['cpu']} ({sm['cpus']} CPUs)")
    print(f"redis        {sm['redis_version']}; model {sm['model_id']}; threads {sm['threads']} (test 1), 1 per instance (test 2)")
    print(f"load avg     {la['start'][0]:.2f} at the start, {la['end'][0]:.2f} at the end, max {la['max_1min']:.2f} "
          f"(1-min, sampled every 5 s; the run's own 2-3 busy threads count)")
    fc = [f"{r['tag']} {r['foreign_cores']:.2f}" for r in sm.get("ttft", [])] + \
        [f"{r['start']}/{r['mode']} {r['foreign_cores']:.2f}" for r in sm.get("load", [])]
    print(f"others' CPU  {sm['foreign_cores']:.2f} of {sm['cpus']} cores on average over the run (busy time in "
          f"/proc/stat not ours); per run: {', '.join(fc)}"
          + ("  -- other work ran: numbers are noisy" if sm["foreign_cores"] > 0.1 * sm["cpus"] else ""))
    runs = sm.get("ttft", [])
    if runs:
        print(f"\nTTFT of a {sm['prefix_tokens']}-token prefix (system message) + a question, streamed, "
              f"max_tokens {sm['max_tokens']}; median of {sm['reps']} repetitions\n")
        print("| K/V | row | TTFT ms | min-max | speed-up vs cold | cached / prompt tokens | blocks from disk, Redis | "
              "tier lookups ms |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for run in runs:
            for k, r in run["rows"].items():
                fr = r["from"]
                print(f"| {run['tag']} | {ROW_NAMES[k]} | {r['ttft_ms']:.0f} | {r['ttft_min_ms']:.0f}-"
                      f"{r['ttft_max_ms']:.0f} | {'' if k == 'cold' else format(r['speedup'], '.1f') + 'x'} | "
                      f"{r['cached_tokens']:.0f} / {r['prompt_tokens']:.0f} | {fmt(fr.get('disk'))}, "
                      f"{fmt(fr.get('redis'))} | {r['tier_load_ms']:.0f} |")
        print()
        for run in runs:
            print(goal_line(run))
            if any(e != 0 for e in run["exit_codes_after_sigterm"]):
                print(f"  exit codes after SIGTERM: {run['exit_codes_after_sigterm']} (0 expected)")
        comp = sm.get("compression", [])
        if comp:
            print("\n--cache-compress (zstd level 1): the same prompts with and without; bytes after the run\n")
            print("| K/V | disk bytes raw | disk bytes zstd | ratio | Redis bytes raw | Redis bytes zstd | ratio | "
                  "cold ms raw, zstd | disk hit ms raw, zstd | no page cache ms raw, zstd | Redis (B) ms raw, zstd | "
                  "Redis (C) ms raw, zstd |")
            print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for c in comp:
                def pair(k):
                    return f"{fmt(c['ttft_ms'][k][0])}, {fmt(c['ttft_ms'][k][1])}"
                print(f"| {c['kv_type']} | {c['disk_bytes'][0]:,} | {c['disk_bytes'][1]:,} | {c['disk_ratio']:.3f} | "
                      f"{c['redis_bytes'][0]:,} | {c['redis_bytes'][1]:,} | {c['redis_ratio']:.3f} | {pair('cold')} | "
                      f"{pair('disk')} | {pair('disk_nocache')} | {pair('redis')} | {pair('redis_full')} |")
    loads = sm.get("load", [])
    if loads:
        l0 = loads[0]
        print(f"\ntwo instances (-t 1 each), round-robin client: {l0['rounds']} rounds of {l0['clients']} streamed "
              f"requests, {len(l0['shared_prefix_tokens'])} shared prefixes (cacheable tokens "
              f"{', '.join(map(str, l0['shared_prefix_tokens']))}) + a question each, max_tokens "
              f"{sm['load_max_tokens']}\n")
        print("| start | tier | aggregate tok/s | mean TTFT ms | max in flight | instance | prompt tokens computed | "
              "of which shared prefix | first | race | after, here | after, elsewhere |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for run in loads:
            for i, x in enumerate(run["instances"]):
                c, n = x["shared_computed_by_class"], x["prefixes_computed_by_class"]
                head = (f"| {run['start']} | {run['mode']} | {run['aggregate_tps']:.1f} | "
                        f"{run['mean_ttft_ms']:.0f} | {run['max_in_flight']} |") if i == 0 else "| | | | | |"
                print(f"{head} {'AB'[i]} | {x['computed']:,} | {x['shared_computed']:,} | "
                      + " | ".join(f"{c[k]:,} ({n[k]})" for k in CLASSES) + " |")
        primed = [r for r in loads if r["primed"]]
        print("\nThe rounds only. Shared-prefix tokens computed, by what the earlier requests with that prefix "
              "had done when the request was sent (requests in parentheses): none (first), one still running "
              "(race), all finished with one here (after, here) or only on the other instance (after, elsewhere)."
              + (" primed: before the rounds, one request per prefix, alone, to A, B, A, B... (computed: "
                 + ", ".join(f"{r['mode']} " + "/".join(f"{x['primer_computed']:,}" for x in r["instances"])
                             for r in primed) + " tokens on A/B, not in the table)." if primed else "") + "\n")
        for run in loads:
            if run["shared"]:
                tot = {k: sum(x["shared_computed_by_class"][k] for x in run["instances"]) for k in CLASSES}
                after = tot["after_here"] + tot["after_elsewhere"]
                print(f"goal ({run['start']} start): with the shared tier no instance recomputes a shared prefix "
                      f"computed before: {tot['race'] + after} shared tokens recomputed, {tot['race']} of them in "
                      f"races, {after} after the prefix was below -> "
                      + ("met" if after == 0 and tot["race"] == 0 else "met apart from races" if after == 0
                         else "NOT met"))
    print(f"\ntime         {sm['seconds']:.0f} s")


# ---- the driver -----------------------------------------------------------------------------
def cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        m = re.search(r"^Model name:\s*(.+)$", out, re.M)
        if m:
            return m.group(1).strip()
    except OSError:
        pass
    return "unknown"


class CpuMeter:
    """CPU time of other processes (all busy time in /proc/stat minus ours and our
    reaped children's) over a span, in cores on average: what disturbed the run."""

    def __init__(self):
        self.t0, self.busy0, self.ours0 = time.time(), self.busy(), self.ours()

    @staticmethod
    def busy():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]   # user nice system idle iowait irq softirq steal
        return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def ours():
        """Our CPU seconds: this process, its reaped children, and the live ones (LIVE)."""
        t = os.times()
        s = t.user + t.system + t.children_user + t.children_system
        for p in LIVE:
            try:
                with open(f"/proc/{p.proc.pid}/stat") as f:
                    v = f.read().rsplit(")", 1)[1].split()   # fields after "(comm)": state is v[0]
                s += (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")   # utime, stime
            except (OSError, IndexError, ValueError):
                pass
        return s

    def foreign_cores(self):
        wall = time.time() - self.t0
        return max(0.0, (self.busy() - self.busy0) - (self.ours() - self.ours0)) / wall if wall > 0 else 0.0


class LoadSampler(threading.Thread):
    """The 1-minute load average every 5 s: the run's own processes count too."""

    def __init__(self):
        super().__init__(daemon=True)
        self.max = os.getloadavg()[0]
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.wait(5):
            self.max = max(self.max, os.getloadavg()[0])


def compression_summary(runs):
    out = []
    by = {(r["kv_type"], r["compress"]): r for r in runs}
    for t in dict.fromkeys(r["kv_type"] for r in runs):
        raw, z = by.get((t, False)), by.get((t, True))
        if not raw or not z:
            continue
        out.append({"kv_type": t, "disk_bytes": [raw["disk"]["bytes"], z["disk"]["bytes"]],
                    "disk_files": [raw["disk"]["files"], z["disk"]["files"]],
                    "disk_ratio": z["disk"]["bytes"] / raw["disk"]["bytes"],
                    "redis_bytes": [raw["redis"]["bytes"], z["redis"]["bytes"]],
                    "redis_keys": [raw["redis"]["keys"], z["redis"]["keys"]],
                    "redis_ratio": z["redis"]["bytes"] / raw["redis"]["bytes"],
                    "ttft_ms": {k: [raw["rows"].get(k, {}).get("ttft_ms"), z["rows"].get(k, {}).get("ttft_ms")]
                                for k in ROWS}})
    return out


def main():
    ap = argparse.ArgumentParser(prog="bench/tiers", description=__doc__.split("\n\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-r", "--reps", type=positive, default=3, help="TTFT repetitions per run (default 3)")
    ap.add_argument("-t", "--threads", type=positive, default=2, help="threads of the TTFT instances (default 2)")
    ap.add_argument("--prefix-tokens", type=positive, default=2000)
    ap.add_argument("-n", "--max-tokens", type=positive, default=8, help="tokens per TTFT request (default 8)")
    ap.add_argument("--types", default="f16,q8", help="K/V types for the TTFT/compression runs (default f16,q8; "
                    "the first is test 1's)")
    ap.add_argument("--no-compress", action="store_true", help="skip the --cache-compress runs")
    ap.add_argument("--no-page-cache-row", dest="page_cache_row", action="store_false",
                    help="skip the disk-hit row with the files dropped from the page cache")
    ap.add_argument("--skip-ttft", action="store_true", help="tests 2 only")
    ap.add_argument("--skip-load", action="store_true", help="tests 1 and 3 only")
    ap.add_argument("--load-rounds", type=positive, default=3)
    ap.add_argument("--load-clients", type=positive, default=16)
    ap.add_argument("--load-prefixes", type=positive, default=4)
    ap.add_argument("--load-prefix-tokens", type=positive, default=500)
    ap.add_argument("--load-max-tokens", type=positive, default=32)
    ap.add_argument("--load-stagger", type=float, default=0.0,
                    help="seconds between the requests of a round (default 0: all at once)")
    ap.add_argument("--load-starts", default="cold,primed",
                    help="cold: the rounds on empty caches; primed: one request per prefix first, alone, to "
                         "A, B, A, B...; one pair of runs (RAM only, shared Redis) each (default cold,primed)")
    ap.add_argument("--load-ctx", type=positive, default=2048, help="-c of the two instances (default 2048)")
    ap.add_argument("--load-parallel", type=positive, default=16, help="--parallel of the two instances (default 16)")
    ap.add_argument("--seed", type=int, default=14, help="the load's prefix draw (default 14)")
    ap.add_argument("--kvlm", default=os.path.join(ROOT, "build", "kvlm"))
    ap.add_argument("-m", "--model", help="GGUF (default: kvlm's, the cached SmolLM2-135M-Instruct)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    ap.add_argument("--start-timeout", type=float, default=60.0)
    ap.add_argument("--save", metavar="FILE", help="results JSON (default bench/results/tiers_HASH.json)")
    ap.add_argument("--logs", metavar="DIR", help="keep the servers' logs in DIR")
    ap.add_argument("--show", metavar="FILE", help="print the tables of a saved run, and exit")
    a = ap.parse_args()
    if a.show:
        with open(a.show) as f:
            print_tables(json.load(f))
        return 0
    types = [t for t in a.types.split(",") if t]
    if not types or any(t not in ("f16", "f32", "bf16", "q8", "q4", "kivi4", "kivi2") for t in types):
        ap.error(f"--types: unknown K/V type in '{a.types}'")
    starts = [x for x in a.load_starts.split(",") if x]
    if not starts or any(x not in ("cold", "primed") for x in starts):
        ap.error(f"--load-starts: cold and/or primed, not '{a.load_starts}'")
    if a.load_stagger < 0:
        ap.error("--load-stagger must be >= 0")
    if not (os.path.isfile(a.kvlm) and os.access(a.kvlm, os.X_OK)):
        sys.stderr.write(f"bench/tiers: no kvlm binary at {a.kvlm} (make, or --kvlm PATH)\n")
        return 1
    if not os.access(REDIS, os.X_OK):
        sys.stderr.write(f"bench/tiers: no {REDIS} (scripts/setup-deps.sh installs redis-server)\n")
        return 1
    if a.model:
        a.model = os.path.abspath(a.model)
    try:
        import openai
    except ImportError:
        sys.stderr.write("bench/tiers: no `openai` module: run bench/tiers (it uses scripts/serve-venv.sh)\n")
        return 1

    commit, dirty = git_commit()
    save = a.save or os.path.join(ROOT, "bench", "results", f"tiers_{commit}.json")
    a.workdir = tempfile.mkdtemp(prefix="kvlm-tiers.")
    logdir = a.logs or a.workdir
    os.makedirs(logdir, exist_ok=True)
    load0, t_start, meter = os.getloadavg(), time.time(), CpuMeter()
    sampler = LoadSampler()
    sampler.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))   # through the finally below
    ok = False
    try:
        sys.stderr.write(f"bench/tiers: commit {commit}, cpu {cpu_name()}, load {load0[0]:.2f}; work in {a.workdir}\n")
        cal = calibrate(a, logdir)
        sys.stderr.write(f"  prefix {cal['prefix_tokens']} tokens; load prefixes "
                         f"{[p['tokens'] for p in cal['load']]} tokens\n")
        redis = Redis(a.workdir, logdir)
        ttft = []
        if not a.skip_ttft:
            nonces = [uuid.uuid4().hex[:8] for _ in range(a.reps)]
            for t in types:
                for z in (False, True) if not a.no_compress else (False,):
                    ttft.append(ttft_run(a, redis, t, z, cal, nonces, logdir))
        load = []
        if not a.skip_load:
            rng = random.Random(a.seed)
            plan = [rng.randrange(a.load_prefixes) for _ in range(a.load_rounds * a.load_clients)]
            systems = [f"[{uuid.uuid4().hex[:8]}] Part {k + 1} of a license.\n{p['text']}"
                       for k, p in enumerate(cal["load"])]
            for start in starts:
                for shared in (False, True):
                    load.append(load_run(a, redis, shared, start == "primed", systems, plan, logdir))
        ok = True
    except KeyboardInterrupt:
        sys.stderr.write("bench/tiers: interrupted\n")
        return 1
    except (RuntimeError, OSError, asyncio.TimeoutError, openai.OpenAIError) as e:
        sys.stderr.write(f"bench/tiers: {type(e).__name__}: {e}\nbench/tiers: logs in {logdir}\n")
        return 1
    finally:
        stop_all()
        sampler.stopped.set()
        if ok and not a.logs:
            shutil.rmtree(a.workdir, ignore_errors=True)
    summary = {"commit": commit, "dirty": dirty, "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_name(),
               "cpus": os.cpu_count(), "model_id": cal["model_id"], "redis_version": redis.version,
               "loadavg": {"start": load0, "end": os.getloadavg(), "max_1min": sampler.max},
               "foreign_cores": meter.foreign_cores(),
               "seconds": time.time() - t_start, "command": shlex.join(["bench/tiers"] + sys.argv[1:]),
               "openai": openai.__version__, "threads": a.threads, "reps": a.reps,
               "prefix_tokens": cal["prefix_tokens"], "max_tokens": a.max_tokens,
               "tokens_per_word": cal["tokens_per_word"], "load_max_tokens": a.load_max_tokens, "load_stagger_s": a.load_stagger,
               "load_prefix_tokens": [p["tokens"] for p in cal["load"]], "load_ctx": a.load_ctx,
               "load_parallel": a.load_parallel, "seed": a.seed,
               "ttft": ttft, "compression": compression_summary(ttft), "load": load}
    os.makedirs(os.path.dirname(os.path.abspath(save)), exist_ok=True)
    with open(save, "w") as f:
        json.dump(summary, f, indent=2)
    print_tables(summary)
    print(f"saved        {os.path.relpath(save, os.getcwd())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
