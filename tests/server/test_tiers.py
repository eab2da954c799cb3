#!/usr/bin/env python3
"""tests/server/test_tiers.py - the KV cache tiers of `kvlm serve` end to end (issue 14):
real server processes, a real redis-server, the official openai client, /metrics.

    python3 tests/server/test_tiers.py --kvlm build/kvlm --work DIR [--redis-server PATH] [--quick]

Unlike the other scripts here, this one starts its own processes: the scenarios
restart servers, kill them with SIGKILL mid-spill and kill, restart and freeze
Redis, so only the script knows when. It starts one redis-server (--port 0: a
unix socket in DIR only, --save "" --appendonly no) and every `kvlm serve` on an
ephemeral port, each child set to die with this process (PR_SET_PDEATHSIG) and
all of them killed at exit (atexit, also on SIGTERM/SIGINT). Without a
redis-server the Redis parts print a "skip" line each.

Every answer is greedy (temperature 0) and compared with the answer of a server
without tiers ("ref", which never sees a tier), so "identical" means bitwise the
tokens a cold computation gives. Scenarios:

  1 disk restart   serve --cache-dir D answers, SIGTERM (exit 0), restart on D:
                   cached_tokens >= 80% of the prompt, same text (plain and
                   streamed); --cache-write evict writes its blocks at SIGTERM
  2 Redis shared   A answers (--cache-compress, --cache-redis-ttl), B (another
                   process that never saw the prompt) hits it from Redis
  3 Redis killed   kill -9 of redis-server during a 16-client streamed load:
                   0 failed requests, the same text; Redis restarted on the same
                   socket: the breaker's probe reconnects, a new prefix A computes
                   is a hit for a fresh B; kvlm_tier_errors_total{tier="redis"} > 0
  4 corruption     one byte flipped in a Redis value, a disk file truncated: the
                   next instance loads up to that block, recomputes from it, the
                   same text, kvlm_tier_invalid_total > 0, the block rewritten
                   with the original bytes
  5 kill -9        a server killed while it spills a long prompt to disk; the
                   restart removes stale temporaries (a planted one too), no final
                   file fails verification, the answer equals the cold one
  6 two writers    two instances on one directory (then one Redis) get the same
                   prompt at once: same text; a third instance hits it
  7 frozen Redis   SIGSTOP of redis-server: a running stream keeps its pace
                   (inter-token gaps well below 1 s) and a new request whose
                   lookup goes to the frozen Redis completes, computed
  8 Gemma 3        layer groups (a full and five sliding-window block tables):
                   serve -m gemma3 --cache-dir D answers a ~1,500-token completion,
                   SIGTERM, restart on D: cached_tokens >= 1,400 and the same greedy
                   text; the block files name all six tables (format version 2); a
                   prompt leaving it more than a window before its end hits its
                   windows from disk and answers as a server without tiers does
                   (skipped without the model in the cache)

--quick (the ASan build, ~10x slower): shorter prompts (8 keeps its 1,500 tokens); 3 (the load) and 7 (timing)
are skipped. Output: one line per check (ok / FAIL / skip), then "N passed, N
failed"; exit 1 on any failure.
"""
import argparse
import asyncio
import atexit
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
import uuid

from openai import AsyncOpenAI, OpenAI

TIMEOUT = float(os.environ.get("KVLM_TEST_TIMEOUT", "60"))   # seconds per request (the ASan build: more)
TEXT = "/usr/share/common-licenses/GPL-3"
BLOCK = 16                                                    # positions per KV block
HDR_BYTES = 158                                               # kv_block_io.h: the header of a block image (v2)
SANITIZER = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error")

results = []
children = []                                                 # every Popen: killed at exit


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"), flush=True)
    return ok


def skip(name, why):
    print(f"skip {name}: {why}", flush=True)


def _kill_children():
    for p in children:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGCONT)                # a frozen redis-server too
                p.kill()
                p.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass


_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_us():
    _libc.prctl(1, signal.SIGKILL)                            # PR_SET_PDEATHSIG: no orphan outlives the test


def spawn(argv, log):
    """Starts argv with stdout and stderr to the file log (from the main thread only:
    PR_SET_PDEATHSIG follows the thread that forked)."""
    assert threading.current_thread() is threading.main_thread()
    with open(log, "ab") as f:
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             preexec_fn=_die_with_us)
    children.append(p)
    return p


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return " | ".join(f.read().splitlines()[-n:])
    except OSError as e:
        return str(e)


# ---- prompts -------------------------------------------------------------------------
WORDS = open(TEXT).read().split()


def doc(offset, n_words):
    """A fresh tag (no other prompt shares a block with it, in RAM or in any tier),
    then n_words of the GPL from offset, then a question."""
    w = (WORDS * 3)[offset:offset + n_words]
    return f"[{uuid.uuid4().hex[:12]}] " + " ".join(w) + "\n\nSummarize the text above in one sentence."


class Answer:
    def __init__(self, text, prompt_tokens, cached, finish):
        self.text, self.prompt_tokens, self.cached, self.finish = text, prompt_tokens, cached, finish

    def __repr__(self):
        return f"cached {self.cached} of {self.prompt_tokens}, {self.text!r}"


def msgs(content, system=None):
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]


# ---- processes -----------------------------------------------------------------------
class Server:
    """One `kvlm serve --port 0` with its own log; .chat(), .metrics(), .stop()."""

    def __init__(self, cfg, name, args, threads=2):
        self.name, self.log = name, os.path.join(cfg.work, name + ".log")
        port_file = os.path.join(cfg.work, name + ".port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        self.p = spawn([cfg.kvlm, "serve", "--port", "0", "--port-file", port_file, "-t", str(threads), *args],
                       self.log)
        t0 = time.time()
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if self.p.poll() is not None or time.time() - t0 > 120:
                raise RuntimeError(f"server {name} did not start: {tail(self.log)}")
            time.sleep(0.05)
        self.base = f"http://127.0.0.1:{open(port_file).read().strip()}"
        self.client = OpenAI(base_url=self.base + "/v1", api_key="none", timeout=TIMEOUT, max_retries=0)
        self.model = self.client.models.list().data[0].id

    @property
    def pid(self):
        return self.p.pid

    def chat(self, content, system=None, max_tokens=16, stream=False):
        m = msgs(content, system)
        if not stream:
            r = self.client.chat.completions.create(model=self.model, messages=m, max_tokens=max_tokens,
                                                    temperature=0)
            return Answer(r.choices[0].message.content, r.usage.prompt_tokens,
                          r.usage.prompt_tokens_details.cached_tokens, r.choices[0].finish_reason)
        text, usage, finish = [], None, None
        for ch in self.client.chat.completions.create(model=self.model, messages=m, max_tokens=max_tokens,
                                                       temperature=0, stream=True,
                                                       stream_options={"include_usage": True}):
            if ch.choices:
                text.append(ch.choices[0].delta.content or "")
                finish = ch.choices[0].finish_reason or finish
            if ch.usage:
                usage = ch.usage
        if usage is None:
            raise RuntimeError("a stream without usage")
        return Answer("".join(text), usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens, finish)

    def metrics(self):
        """{'name{labels}': value} of GET /metrics."""
        out = {}
        with urllib.request.urlopen(self.base + "/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line and not line.startswith("#"):
                    k, v = line.rsplit(" ", 1)
                    out[k] = float(v)
        return out

    def tier(self, family, tier):
        return self.metrics().get(f'kvlm_tier_{family}_total{{tier="{tier}"}}', 0)

    def stop(self):
        """SIGTERM; '' when it exited 0 within 30 s with no sanitizer report, else why not."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            rc = self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            return f"server {self.name} ignored SIGTERM for 30 s"
        with open(self.log, errors="replace") as f:
            bad = SANITIZER.search(f.read())
        if rc != 0 or bad:
            return f"server {self.name} exited with {rc}{' (sanitizer report)' if bad else ''}: {tail(self.log)}"
        return ""

    def kill9(self):
        self.p.kill()
        self.p.wait()


def stop_all(label, servers):
    why = [w for w in (s.stop() for s in servers if s) if w]
    check(f"{label}: every server exits 0 on SIGTERM", not why, "; ".join(why))


class RedisError(Exception):
    pass


class Redis:
    """A private redis-server on a unix socket (no TCP, no persistence), and a tiny
    RESP client for looking at and damaging what kvlm stored."""

    def __init__(self, binary, work):
        self.binary, self.dir = binary, os.path.join(work, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.sock = os.path.join(self.dir, "redis.sock")
        self.url = "unix://" + self.sock
        self.p = None

    def start(self):
        self.p = spawn([self.binary, "--port", "0", "--unixsocket", self.sock, "--unixsocketperm", "700",
                        "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", self.dir],
                       os.path.join(self.dir, "redis.log"))
        t0 = time.time()
        while True:
            try:
                if self.cmd("PING") == "PONG":
                    return
            except (OSError, RedisError):
                pass
            if self.p.poll() is not None or time.time() - t0 > 20:
                raise RuntimeError(f"redis-server did not start: {tail(os.path.join(self.dir, 'redis.log'))}")
            time.sleep(0.02)

    def kill9(self):
        self.p.kill()
        self.p.wait()

    def cmd(self, *args, timeout=5):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.sock)
            req = [b"*%d\r\n" % len(args)]
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                req += [b"$%d\r\n" % len(a), a, b"\r\n"]
            s.sendall(b"".join(req))
            return self._reply(s.makefile("rb"))

    def _reply(self, f):
        line = f.readline()
        if not line.endswith(b"\r\n"):
            raise RedisError(f"short reply {line!r}")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else f.read(n + 2)[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply(f) for _ in range(n)]
        raise RedisError(f"unknown reply {line!r}")

    def keys(self):
        out, cur = set(), "0"
        while True:
            cur, batch = self.cmd("SCAN", cur, "MATCH", "kvlm:*", "COUNT", 1000)
            out.update(batch)
            cur = cur.decode()
            if cur == "0":
                return out


def hdr_links(head):
    """(key, parent key) from the first bytes of a block image (kv_block_io.h: magic
    "KVLMBLK1", chain key at offset 62, parent key at 70, little-endian), or None."""
    if len(head) < HDR_BYTES or head[:8] != b"KVLMBLK1":
        return None
    return int.from_bytes(head[62:70], "little"), int.from_bytes(head[70:78], "little")


def depth(parents, key):
    """Blocks before key in its chain: parent links followed to the root (parent 0)."""
    d = 0
    while parents.get(key, 0) != 0:
        key = parents[key]
        d += 1
    return d


def disk_files(d):
    names = os.listdir(d) if os.path.isdir(d) else []
    return sorted(n for n in names if n.endswith(".kvb") and not n.startswith(".")), \
        sorted(n for n in names if n.startswith(".tmp-"))


def hit_ok(a, ref):
    return a.cached >= 0.8 * a.prompt_tokens and a.text == ref


# ---- scenarios -----------------------------------------------------------------------
class T:
    """What every scenario gets: the options, the reference server, Redis."""

    def __init__(self, cfg):
        self.cfg, self.quick, self.work = cfg, cfg.quick, cfg.work
        self.ref = Server(cfg, "ref", [])
        self.redis = None
        self.n = 220 if cfg.quick else 780                   # words of a ~1,000-token prompt (~300 quick)

    def server(self, name, args, threads=2):
        return Server(self.cfg, name, args, threads)

    def cold(self, content, system=None, max_tokens=16):
        return self.ref.chat(content, system, max_tokens).text

    def dir(self, name):
        return os.path.join(self.work, name)


def s1_disk_restart(t):
    d = t.dir("disk1")
    p_plain, p_stream = doc(0, t.n), doc(900, t.n)
    ref_plain, ref_stream = t.cold(p_plain), t.cold(p_stream)
    a = t.server("disk1-a", ["--cache-dir", d])
    a1, a2 = a.chat(p_plain), a.chat(p_stream, stream=True)
    check("1 disk: the first instance's answers equal the no-tier ones (plain, streamed)",
          a1.text == ref_plain and a2.text == ref_stream, f"{a1} / {a2} vs {ref_plain!r} / {ref_stream!r}")
    why = a.stop()
    files, _ = disk_files(d)
    check(f"1 disk: SIGTERM exits 0, {len(files)} block files in --cache-dir", not why and len(files) > 0, why)
    b = t.server("disk1-b", ["--cache-dir", d])
    h1 = b.chat(p_plain)
    check(f"1 disk restart, plain: cached_tokens {h1.cached} of {h1.prompt_tokens} (>= 80%), identical text",
          hit_ok(h1, ref_plain), f"{h1} vs {ref_plain!r}")
    h2 = b.chat(p_stream, stream=True)
    check(f"1 disk restart, streamed: cached_tokens {h2.cached} of {h2.prompt_tokens} (>= 80%), identical text",
          hit_ok(h2, ref_stream), f"{h2} vs {ref_stream!r}")
    m = b.metrics()
    loaded, hits = m.get("kvlm_tier_blocks_loaded_total", 0), m.get('kvlm_tier_hits_total{tier="disk"}', 0)
    check(f"1 disk restart: /metrics kvlm_tier_hits_total{{tier=\"disk\"}} {hits:.0f}, blocks loaded {loaded:.0f}",
          hits > 0 and loaded >= h1.cached // BLOCK,   # the second shares its first block (RAM)
          str({k: v for k, v in m.items() if "tier" in k}))
    stop_all("1 disk restart", [b])

    # --cache-write evict: nothing goes below while RAM keeps it; SIGTERM writes what RAM holds
    d = t.dir("disk1-evict")
    p = doc(1800, t.n // 2)
    ref = t.cold(p)
    a = t.server("disk1-evict-a", ["--cache-dir", d, "--cache-write", "evict"])
    a1 = a.chat(p)
    before, _ = disk_files(d)
    why = a.stop()
    after, _ = disk_files(d)
    check(f"1 --cache-write evict: {len(before)} files while serving, {len(after)} after SIGTERM",
          a1.text == ref and not before and after and not why, f"{a1} vs {ref!r}; {why}")
    b = t.server("disk1-evict-b", ["--cache-dir", d, "--cache-write", "evict"])
    h = b.chat(p)
    check(f"1 --cache-write evict restart: cached_tokens {h.cached} of {h.prompt_tokens}, identical text",
          hit_ok(h, ref), f"{h} vs {ref!r}")
    stop_all("1 --cache-write evict", [b])


def s2_redis_shared(t):
    p = doc(2700, t.n)
    ref = t.cold(p)
    keys0 = t.redis.keys()
    opts = ["--cache-redis", t.redis.url, "--cache-compress", "--cache-redis-ttl", "3600"]
    a = t.server("redis2-a", opts)
    b = t.server("redis2-b", opts)
    a1 = a.chat(p)
    new = sorted(t.redis.keys() - keys0)
    check(f"2 Redis: instance A answers as without tiers, {len(new)} keys written", a1.text == ref and new,
          f"{a1} vs {ref!r}")
    ttl = [t.redis.cmd("TTL", k) for k in new[:4]]
    heads = [t.redis.cmd("GETRANGE", k, 0, 7) for k in new[:4]]
    check(f"2 Redis: values zstd-wrapped (--cache-compress), TTL {ttl} (--cache-redis-ttl 3600)",
          heads and all(h == b"KVLMZST1" for h in heads) and all(0 < x <= 3600 for x in ttl), f"{heads}")
    h = b.chat(p)
    check(f"2 Redis: instance B (never saw it) gets cached_tokens {h.cached} of {h.prompt_tokens} (>= 80%), "
          "identical text", hit_ok(h, ref), f"{h} vs {ref!r}")
    hits = b.tier("hits", "redis")
    check(f"2 Redis: B's /metrics kvlm_tier_hits_total{{tier=\"redis\"}} {hits:.0f}",
          hits >= h.cached // BLOCK > 0, str(hits))
    stop_all("2 Redis", [a, b])


def s3_redis_killed(t):
    system = "[%s] You answer questions about the GNU GPL. " % uuid.uuid4().hex[:12] + " ".join(WORDS[3600:3760])
    same_q = "What does the license say about warranty? One sentence."
    jobs = [(system, same_q)] * 8 + \
           [(system, f"Question {i}: what does section {i} cover? One sentence.") for i in range(4)] + \
           [(None, f"[{uuid.uuid4().hex[:8]}] Name {i + 2} rivers of country #{i}.") for i in range(4)]
    refs = [t.cold(u, s) for s, u in jobs]
    a = t.server("redis3-a", ["--cache-redis", t.redis.url])
    out = [None] * len(jobs)
    errors, streaming = [], []

    async def one(client, i):
        s, u = jobs[i]
        try:
            text, usage, finish = [], None, None
            stream = await client.chat.completions.create(model=a.model, messages=msgs(u, s), max_tokens=16,
                                                          temperature=0, stream=True,
                                                          stream_options={"include_usage": True})
            async for ch in stream:
                if ch.choices:
                    text.append(ch.choices[0].delta.content or "")
                    finish = ch.choices[0].finish_reason or finish
                    if i not in streaming and text[-1]:
                        streaming.append(i)
                if ch.usage:
                    usage = ch.usage
            if usage is None or finish is None:
                raise RuntimeError(f"stream ended without usage or finish_reason ({finish})")
            out[i] = "".join(text)
        except Exception as e:  # noqa: BLE001 - every failure is counted and shown
            errors.append(f"request {i}: {type(e).__name__}: {e}")

    async def load():
        client = AsyncOpenAI(base_url=a.base + "/v1", api_key="none", timeout=TIMEOUT, max_retries=0)
        await asyncio.gather(*(one(client, i) for i in range(len(jobs))))
        await client.close()

    th = threading.Thread(target=lambda: asyncio.run(load()))
    th.start()
    t0 = time.time()
    while (a.tier("puts", "redis") < 1 or not streaming) and th.is_alive() and time.time() - t0 < TIMEOUT:
        time.sleep(0.01)                                      # writes to Redis under way, tokens flowing
    running = sum(1 for x in out if x is None)
    n_streaming = len(streaming)
    t.redis.kill9()
    th.join()
    check(f"3 Redis kill -9 during a 16-client load ({n_streaming} streaming, {running} of 16 unfinished): "
          "0 failed",
          not errors and running > 0, "; ".join(errors[:4]) or "the load was over before the kill")
    bad = [i for i in range(len(jobs)) if out[i] != refs[i]]
    check("3 Redis killed: every answer equals the no-tier one (8 on one shared prompt)",
          not bad and len(set(out[:8])) == 1, f"differ: {[(i, out[i], refs[i]) for i in bad[:3]]}")
    m = a.metrics()
    errs = m.get('kvlm_tier_errors_total{tier="redis"}', 0)
    check(f"3 Redis killed: /metrics kvlm_tier_errors_total{{tier=\"redis\"}} {errs:.0f} > 0", errs > 0,
          str({k: v for k, v in m.items() if "redis" in k}))

    # back on the same socket: A's breaker probes again (back-off 100 ms doubling, the
    # interval it reached during the outage at most) and its writes land again
    t.redis.start()
    b = t.server("redis3-b", ["--cache-redis", t.redis.url])
    t_up, back, tries = time.time(), None, 0
    while time.time() - t_up < 12 and back is None:
        tries += 1
        p = doc(4000 + 37 * tries, 120)
        a.chat(p, max_tokens=1)
        h = b.chat(p, max_tokens=1)
        if h.prompt_tokens and h.cached >= 0.8 * h.prompt_tokens:
            back = time.time() - t_up
        else:
            time.sleep(0.3)
    check(f"3 Redis restarted: A's new prefixes reach it again ({tries} tries, "
          f"{'%.1f s' % back if back is not None else 'never'}), a hit for a fresh instance B", back is not None,
          f"last: {h}; A's log: {tail(a.log, 5)}")
    stop_all("3 Redis killed", [a, b])


def s4_corruption(t):
    # Redis: a value with one byte flipped (its checksum no longer matches)
    p = doc(4500, t.n // 2)
    ref = t.cold(p)
    t.redis.cmd("FLUSHALL")                                   # only this prompt's blocks, none zstd-wrapped
    a = t.server("redis4-a", ["--cache-redis", t.redis.url])
    a.chat(p, max_tokens=1)                                   # only prompt blocks are published
    stop_all("4 Redis corruption, writer", [a])
    parents = {}
    for k in t.redis.keys():
        links = hdr_links(t.redis.cmd("GETRANGE", k, 0, HDR_BYTES - 1) or b"")
        if links:
            parents[links[0]] = links[1]
    chain = sorted((depth(parents, int(k.decode()[-16:], 16)), k) for k in t.redis.keys())
    k_depth, victim = chain[len(chain) // 2]
    orig = t.redis.cmd("GET", victim)
    bad = bytearray(orig)
    bad[len(bad) // 2] ^= 0x40
    t.redis.cmd("SET", victim, bytes(bad))
    b = t.server("redis4-b", ["--cache-redis", t.redis.url])
    h = b.chat(p)
    inv = b.tier("invalid", "redis")
    check(f"4 Redis: a flipped byte in block {k_depth} of {len(chain)}: loads up to it "
          f"(cached_tokens {h.cached} = {BLOCK * k_depth}), recomputes, identical text, invalid {inv:.0f}",
          h.text == ref and h.cached == BLOCK * k_depth and inv >= 1, f"{h} vs {ref!r}, invalid {inv}")
    check("4 Redis: the bad value is replaced by the recomputed block, bitwise the original",
          t.redis.cmd("GET", victim) == orig, "different bytes (or none) under the key")
    stop_all("4 Redis corruption", [b])

    # disk: a block file cut to half its size
    d = t.dir("disk4")
    p = doc(5000, t.n // 2)
    ref = t.cold(p)
    c = t.server("disk4-a", ["--cache-dir", d])
    c.chat(p, max_tokens=1)
    stop_all("4 disk truncation, writer", [c])
    files, _ = disk_files(d)
    parents = {}
    for n in files:
        with open(os.path.join(d, n), "rb") as f:
            links = hdr_links(f.read(HDR_BYTES))
        if links:
            parents[links[0]] = links[1]
    chain = sorted((depth(parents, int(n[:16], 16)), n) for n in files)
    k_depth, victim = chain[len(chain) // 2]
    path = os.path.join(d, victim)
    with open(path, "rb") as f:
        orig = f.read()
    os.truncate(path, len(orig) // 2)
    c2 = t.server("disk4-b", ["--cache-dir", d])
    h = c2.chat(p)
    inv = c2.tier("invalid", "disk")
    check(f"4 disk: block {k_depth} of {len(chain)} truncated: loads up to it (cached_tokens {h.cached} = "
          f"{BLOCK * k_depth}), recomputes, identical text, invalid {inv:.0f}",
          h.text == ref and h.cached == BLOCK * k_depth and inv >= 1, f"{h} vs {ref!r}, invalid {inv}")
    now = open(path, "rb").read() if os.path.exists(path) else b""
    check("4 disk: the truncated file is replaced by the recomputed block, bitwise the original", now == orig,
          f"{len(now)} bytes, want {len(orig)}")
    stop_all("4 disk truncation", [c2])


def interrupt_spill(t, name, d, p, how):
    """A server on --cache-dir d streams p; once >= 4 of its blocks are files, how(server)
    ends it. Returns (the server, block files written by then, what the client got)."""
    a = t.server(name, ["--cache-dir", d])
    got = []

    def run():
        try:
            got.append(a.chat(p, stream=True))
        except Exception as e:  # noqa: BLE001 - the end of the server ends it: expected
            got.append(e)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    t0 = time.time()
    while a.tier("puts", "disk") < 4 and th.is_alive() and time.time() - t0 < TIMEOUT:
        time.sleep(0.005)
    spilled = a.tier("puts", "disk")
    unfinished = th.is_alive()
    how(a)
    th.join(TIMEOUT)
    return a, spilled, got if unfinished else []


def s5_kill_during_spill(t):
    d = t.dir("disk5")
    p = doc(2000, 330 if t.quick else t.n)                     # long enough to be cut in its prefill
    ref = t.cold(p)
    a, spilled, got = interrupt_spill(t, "disk5-a", d, p, Server.kill9)
    files, tmps = disk_files(d)
    check(f"5 kill -9 during the spill (after {spilled:.0f} block files, request unfinished): "
          f"{len(files)} files, {len(tmps)} temporaries left",
          spilled >= 4 and got and isinstance(got[0], Exception), f"the request finished first: {got}")
    # a planted half file under a dead writer's temporary name: never read, removed at start
    planted = f".tmp-{a.pid}-999-0123abcd.kvb"
    with open(os.path.join(d, planted), "wb") as f:
        f.write(b"KVLMBLK1" + b"\0" * 1000)
    b = t.server("disk5-b", ["--cache-dir", d])
    _, tmps2 = disk_files(d)
    check(f"5 restart: the start-up scan removed the stale temporaries ({len(tmps) + 1} incl. a planted one)",
          not tmps2, f"left: {tmps2}")
    h = b.chat(p)
    inv = b.tier("invalid", "disk")
    check(f"5 restart: the answer equals the cold one (cached_tokens {h.cached} of {h.prompt_tokens} from "
          f"what the kill left), no block file fails verification (invalid {inv:.0f})",
          h.text == ref and inv == 0, f"{h} vs {ref!r}")
    stop_all("5 kill -9 during a spill", [b])

    # SIGTERM instead: the request ends (503), what it computed is drained to disk, exit 0
    d = t.dir("disk5-term")
    why = []
    a, spilled, got = interrupt_spill(t, "disk5-term-a", d, p, lambda s: why.append(s.stop()))
    files, tmps = disk_files(d)
    check(f"5 SIGTERM during the spill (after {spilled:.0f} block files): exit 0, "
          f"{len(files)} files, no temporary left", got and not why[0] and len(files) >= spilled and not tmps,
          f"{why[0]}; {tmps}; the client got {got}")
    b = t.server("disk5-term-b", ["--cache-dir", d])
    h = b.chat(p)
    inv = b.tier("invalid", "disk")
    check(f"5 SIGTERM restart: cached_tokens {h.cached} >= {BLOCK * spilled:.0f}, identical text, invalid {inv:.0f}",
          h.text == ref and h.cached >= BLOCK * spilled and inv == 0, f"{h} vs {ref!r}")
    stop_all("5 SIGTERM during a spill", [b])


def s6_two_writers(t, redis):
    where = "Redis" if redis else "disk"
    opts = ["--cache-redis", t.redis.url] if redis else ["--cache-dir", t.dir("disk6")]
    p = doc(3000 if redis else 3300, t.n * 2 // 3)
    ref = t.cold(p)
    a, b = t.server(f"{where}6-a", opts, threads=1), t.server(f"{where}6-b", opts, threads=1)
    got = {}
    go = threading.Barrier(2)

    def run(s):
        try:
            go.wait()
            got[s.name] = s.chat(p)
        except Exception as e:  # noqa: BLE001 - shown below
            got[s.name] = e

    ths = [threading.Thread(target=run, args=(s,)) for s in (a, b)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    ga, gb = got.get(a.name), got.get(b.name)
    check(f"6 {where}: two instances given the same prompt at once answer identically",
          isinstance(ga, Answer) and isinstance(gb, Answer) and ga.text == gb.text == ref,
          f"{ga} / {gb} vs {ref!r}")
    stop_all(f"6 {where}, two writers", [a, b])
    c = t.server(f"{where}6-c", opts)
    h = c.chat(p)
    inv = c.tier("invalid", where.lower())
    tmps = [] if redis else disk_files(t.dir("disk6"))[1]
    check(f"6 {where}: a third instance gets cached_tokens {h.cached} of {h.prompt_tokens} (>= 80%), identical "
          f"text, invalid {inv:.0f}" + ("" if redis else f", {len(tmps)} temporaries left"),
          hit_ok(h, ref) and inv == 0 and not tmps, f"{h} vs {ref!r}")
    stop_all(f"6 {where}, reader", [c])


def s7_frozen_redis(t):
    p = doc(5300, 300)
    ref = t.cold(p)
    # small steps: a step is ~0.1 s, so a stall of one 200 ms Redis timeout would show
    a = t.server("redis7-a", ["--cache-redis", t.redis.url, "--step-tokens", "64"])
    stamps, failed, stop = [], [], threading.Event()

    def stream():
        try:
            s = a.client.completions.create(model=a.model, prompt="1, 2, 3, 4, 5, 6, 7, 8, 9, 10,",
                                            max_tokens=1500, temperature=0, stream=True)
            for _ in s:
                stamps.append(time.time())
                if stop.is_set():
                    break
            s.close()
        except Exception as e:  # noqa: BLE001 - shown by the check
            failed.append(f"{type(e).__name__}: {e}")

    th = threading.Thread(target=stream, daemon=True)
    th.start()
    t0 = time.time()
    while len(stamps) < 20 and time.time() - t0 < TIMEOUT:
        time.sleep(0.01)
    os.kill(t.redis.p.pid, signal.SIGSTOP)
    try:
        t_stop = time.time()
        h = a.chat(p)
        t_done = time.time()
        n_before_end = len(stamps)
        time.sleep(0.3)
    finally:
        os.kill(t.redis.p.pid, signal.SIGCONT)
    stop.set()
    th.join(TIMEOUT)
    window = [x for x in stamps if t_stop <= x <= t_done + 0.3]
    gaps = [y - x for x, y in zip(window, window[1:])]
    worst = max(gaps) if gaps else float("inf")
    check(f"7 frozen Redis: a running stream kept going ({len(window)} tokens during the new request, "
          f"longest gap {worst * 1e3:.0f} ms < 500 ms)", len(window) > 5 and worst < 0.5 and n_before_end > 20,
          f"longest gaps {sorted(gaps)[-5:]}, {n_before_end} tokens in all {failed}")
    errs = a.tier("errors", "redis")
    check(f"7 frozen Redis: the new request completed in {t_done - t_stop:.1f} s, computed (cached {h.cached}), "
          f"identical text; Redis errors counted {errs:.0f}",
          h.text == ref and h.cached == 0 and t_done - t_stop < 10 and errs > 0, f"{h} vs {ref!r}")
    stop_all("7 frozen Redis", [a])


GEMMA = "gemma-3-270m-q4_k_m.gguf"


def gemma_cached():
    cache = os.environ.get("KVLM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kvlm")
    return os.path.isfile(os.path.join(cache, GEMMA))


def complete(srv, prompt, max_tokens=16):
    r = srv.client.completions.create(model=srv.model, prompt=prompt, max_tokens=max_tokens, temperature=0)
    return Answer(r.choices[0].text, r.usage.prompt_tokens, r.usage.prompt_tokens_details.cached_tokens,
                  r.choices[0].finish_reason)


def s8_gemma_restart(t):
    if not gemma_cached():
        skip("8 Gemma 3", f"no {GEMMA} in the model cache (scripts/fetch-model.sh gemma3)")
        return
    d = t.dir("gemma")
    n_words = 1250                                            # ~1,500 Gemma tokens (--quick too: ~20 s)
    tag = f"[{uuid.uuid4().hex[:12]}] "
    p_a = tag + " ".join(WORDS[:n_words])
    shared = n_words - 480                                    # B leaves A ~700 tokens (> 512) before its end
    p_b = tag + " ".join(WORDS[:shared] + WORDS[3000:3000 + 150])
    a = t.server("gemma-a", ["-m", "gemma3", "--cache-dir", d])
    a1 = complete(a, p_a)
    check(f"8 Gemma: a {a1.prompt_tokens}-token completion computed (cached {a1.cached})",
          a1.cached == 0 and a1.prompt_tokens >= 1400, repr(a1))
    why = a.stop()
    files, _ = disk_files(d)
    tabs, versions = {}, set()
    for f in files:
        with open(os.path.join(d, f), "rb") as fh:
            h = fh.read(HDR_BYTES)
        versions.add(int.from_bytes(h[8:12], "little"))
        tab, n_tab = int.from_bytes(h[142:146], "little"), int.from_bytes(h[146:150], "little")
        window = int.from_bytes(h[154:158], "little")
        tabs[tab] = tabs.get(tab, 0) + 1
        if n_tab != 6 or window != (0 if tab == 0 else 512):
            versions.add(-1)
    check(f"8 Gemma: SIGTERM exits 0, {len(files)} block files of format {sorted(versions)}, "
          f"tables {sorted(tabs)}", not why and versions == {2} and sorted(tabs) == list(range(6))
          and len(set(tabs.values())) == 1, f"{why} {tabs}")
    b = t.server("gemma-b", ["-m", "gemma3", "--cache-dir", d])
    h1 = complete(b, p_a)
    check(f"8 Gemma restart: cached_tokens {h1.cached} of {h1.prompt_tokens} (>= 1400), identical text",
          h1.cached >= 1400 and h1.text == a1.text, f"{h1} vs {a1.text!r}")
    ref = t.server("gemma-ref", ["-m", "gemma3"])
    cold_b = complete(ref, p_b)
    stop_all("8 Gemma, reference", [ref])
    c = t.server("gemma-c", ["-m", "gemma3", "--cache-dir", d])   # a fresh pool: B's chain and windows from disk
    h2 = complete(c, p_b)
    check(f"8 Gemma: B (leaves A > 512 tokens before its end) cached_tokens {h2.cached} of {h2.prompt_tokens}, "
          f"text as without tiers", h2.cached >= h2.prompt_tokens - 300 and h2.cached > 512 and
          h2.text == cold_b.text, f"{h2} vs {cold_b.text!r}")
    stop_all("8 Gemma restart", [b, c])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kvlm", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--redis-server", default="/usr/bin/redis-server")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("-k", default="", help="run only scenarios whose name contains this")
    cfg = ap.parse_args()
    cfg.kvlm = os.path.abspath(cfg.kvlm)
    os.makedirs(cfg.work, exist_ok=True)
    atexit.register(_kill_children)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(1))
    t = T(cfg)
    have_redis = os.access(cfg.redis_server, os.X_OK)
    if have_redis:
        t.redis = Redis(cfg.redis_server, cfg.work)
        t.redis.start()
    scenarios = [
        ("s1_disk_restart", lambda: s1_disk_restart(t), False, False),
        ("s2_redis_shared", lambda: s2_redis_shared(t), True, False),
        ("s3_redis_killed", lambda: s3_redis_killed(t), True, True),
        ("s4_corruption", lambda: s4_corruption(t), True, False),
        ("s5_kill_during_spill", lambda: s5_kill_during_spill(t), False, False),
        ("s6_two_writers_disk", lambda: s6_two_writers(t, False), False, False),
        ("s6_two_writers_redis", lambda: s6_two_writers(t, True), True, False),
        ("s7_frozen_redis", lambda: s7_frozen_redis(t), True, True),
        ("s8_gemma_restart", lambda: s8_gemma_restart(t), False, False),
    ]
    for name, fn, needs_redis, slow in scenarios:
        if cfg.k not in name:
            continue
        if needs_redis and not have_redis:
            skip(name, f"no {cfg.redis_server} (the set-up installs redis-server)")
            continue
        if slow and cfg.quick:
            skip(name, "--quick (the sanitizer build: no load or timing test)")
            continue
        t0 = time.time()
        try:
            if needs_redis and t.redis.p.poll() is not None:
                t.redis.start()
            fn()
        except Exception as e:  # noqa: BLE001 - a scenario that breaks is one failure, the others still run
            check(f"{name} ran to the end", False, f"{type(e).__name__}: {e} "
                  f"{traceback.format_exc().splitlines()[-3:-1]}")
        print(f"     ({name}: {time.time() - t0:.1f} s)", flush=True)
    stop_all("reference", [t.ref])
    if t.redis:
        t.redis.kill9()
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
