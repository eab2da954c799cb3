#!/usr/bin/env python3
"""tests/server/test_openai.py - the OpenAI-compatible API of a live `kvlm serve`,
through the official `openai` Python client (what users will point at it).

    KVLM_SERVE_URL=http://127.0.0.1:8080/v1 python3 tests/server/test_openai.py --kvlm
    python3 tests/server/test_openai.py [--kvlm] [--url URL] [-k SUBSTRING] [-v] [--quick]

The server must already run (this script starts nothing); the model is the first
one GET /v1/models lists. Needs `openai` (pip install openai; bench/serve puts it
in ~/.cache/kvlm/venv). Every request has a timeout, so a hung server fails the
run instead of blocking it.

Without --kvlm only what any OpenAI-compatible server should do is checked (it
runs against llama-cpp-python's server too: see bench/README.md). --kvlm adds
what kvlm promises beyond that (issue 6): usage.prompt_tokens_details.cached_tokens
an int in every response, usage in streams (stream_options.include_usage), prefix
caching reported in 16-token blocks, n > 1, 400 for bad types and unknown
parameters, 404 for an unknown model, GET /health and /metrics.

Output: one line per check (ok / FAIL / skip), then `N passed, N failed, N skipped`.
Exit status 0 when nothing failed, 1 otherwise, 2 on a usage error.
"""
import argparse
import asyncio
import os
import sys
import time
import traceback
import urllib.error
import urllib.request
import uuid

try:
    import openai
    from openai import AsyncOpenAI, OpenAI
except ImportError:
    sys.stderr.write("test_openai: needs the `openai` package (pip install openai, or run it with "
                     "~/.cache/kvlm/venv/bin/python after bench/serve has set that venv up)\n")
    print("0 passed, 1 failed")
    sys.exit(1)

BLOCK = 16            # kvlm's KV block size: cached_tokens counts whole blocks
TIMEOUT = float(os.environ.get("KVLM_TEST_TIMEOUT", "60"))   # seconds per request (the ASan build: more)
TEXT = "/usr/share/common-licenses/GPL-3"
PROMPT = "The capital of France is"
QUESTION = "Name three primary colors."


class Check(AssertionError):
    pass


def need(cond, msg):
    if not cond:
        raise Check(msg)


class Ctx:
    """What every check gets: clients, the model id, the mode."""

    def __init__(self, url, kvlm, verbose, quick=False):
        self.url, self.kvlm, self.verbose, self.quick = url.rstrip("/"), kvlm, verbose, quick
        self.client = OpenAI(base_url=self.url, api_key="none", timeout=TIMEOUT, max_retries=0)
        self.model = None

    def aclient(self):
        return AsyncOpenAI(base_url=self.url, api_key="none", timeout=TIMEOUT, max_retries=0)

    def log(self, msg):
        if self.verbose:
            print(f"    {msg}")


def tag():
    """A fresh leading tag, so no earlier prompt shares this one's prefix."""
    return uuid.uuid4().hex[:8]


def long_text(n_words):
    return " ".join(open(TEXT).read().split()[:n_words])


def check_usage(ctx, u, what):
    """usage: ints, consistent; with --kvlm prompt_tokens_details.cached_tokens an int too."""
    need(u is not None, f"{what}: no usage")
    for k in ("prompt_tokens", "completion_tokens", "total_tokens"):
        need(isinstance(getattr(u, k, None), int), f"{what}: usage.{k} = {getattr(u, k, None)!r}, not an int")
    need(u.total_tokens == u.prompt_tokens + u.completion_tokens,
         f"{what}: total_tokens {u.total_tokens} != {u.prompt_tokens} + {u.completion_tokens}")
    need(u.prompt_tokens > 0, f"{what}: prompt_tokens = 0")
    if ctx.kvlm:
        d = u.prompt_tokens_details
        c = getattr(d, "cached_tokens", None) if d is not None else None
        need(isinstance(c, int), f"{what}: usage.prompt_tokens_details.cached_tokens = {c!r}, not an int")
        need(0 <= c <= u.prompt_tokens, f"{what}: cached_tokens {c} outside [0, prompt_tokens {u.prompt_tokens}]")
    return u


def still_serving(ctx):
    r = ctx.client.completions.create(model=ctx.model, prompt=PROMPT, max_tokens=2, temperature=0)
    need(r.choices and isinstance(r.choices[0].text, str), "the server stopped serving after the error")


def complete(ctx, prompt, **kw):
    kw.setdefault("max_tokens", 16)
    kw.setdefault("temperature", 0)
    return ctx.client.completions.create(model=ctx.model, prompt=prompt, **kw)


def chat(ctx, content, **kw):
    kw.setdefault("max_tokens", 16)
    kw.setdefault("temperature", 0)
    return ctx.client.chat.completions.create(model=ctx.model, messages=[{"role": "user", "content": content}], **kw)


def stream_text(ctx, kind, **kw):
    """Streams one request; returns (text, finish_reason, usage or None, number of chunks)."""
    kw.setdefault("temperature", 0)
    if ctx.kvlm:
        kw["stream_options"] = {"include_usage": True}
    if kind == "chat":
        s = ctx.client.chat.completions.create(model=ctx.model, stream=True, **kw)
    else:
        s = ctx.client.completions.create(model=ctx.model, stream=True, **kw)
    text, finish, usage, n = [], None, None, 0
    for ch in s:
        n += 1
        if ch.usage is not None:
            usage = ch.usage
            if ctx.kvlm:   # the usage chunk is the last one and has no choices
                need(not ch.choices, "the usage chunk has choices")
        for c in ch.choices:
            need(c.index == 0, f"choice index {c.index} in a stream of n=1")
            piece = c.delta.content if kind == "chat" else c.text
            if piece:
                text.append(piece)
            if c.finish_reason:
                finish = c.finish_reason
    return "".join(text), finish, usage, n


# ---- the checks ------------------------------------------------------------------------------
def t_models(ctx):
    m = ctx.client.models.list()
    ids = [x.id for x in m.data]
    need(ids, "GET /v1/models lists no model")
    ctx.model = ids[0]
    ctx.log(f"model {ctx.model}")


def t_completion(ctx):
    r = complete(ctx, PROMPT, max_tokens=8)
    need(r.object == "text_completion", f"object {r.object!r}")
    need(len(r.choices) == 1, f"{len(r.choices)} choices")
    c = r.choices[0]
    need(isinstance(c.text, str) and c.text, "empty text")
    need(c.finish_reason in ("stop", "length"), f"finish_reason {c.finish_reason!r}")
    u = check_usage(ctx, r.usage, "completion")
    need(u.completion_tokens <= 8, f"completion_tokens {u.completion_tokens} > max_tokens 8")
    need(c.finish_reason == "stop" or u.completion_tokens == 8, "finish_reason length before max_tokens")
    ctx.log(repr(c.text))


def t_chat(ctx):
    r = chat(ctx, QUESTION, max_tokens=24)
    need(r.object == "chat.completion", f"object {r.object!r}")
    need(len(r.choices) == 1, f"{len(r.choices)} choices")
    m = r.choices[0].message
    need(m.role == "assistant", f"role {m.role!r}")
    need(isinstance(m.content, str) and m.content.strip(), "empty content")
    need(r.choices[0].finish_reason in ("stop", "length"), f"finish_reason {r.choices[0].finish_reason!r}")
    check_usage(ctx, r.usage, "chat")
    ctx.log(repr(m.content))


def same_as_unstreamed(ctx, kind, ref, ref_text, **kw):
    """Streams the request behind ref (a non-streamed greedy response whose text is
    ref_text): same text, finish_reason and, with --kvlm, usage."""
    text, finish, usage, _ = stream_text(ctx, kind, **kw)
    need(text == ref_text, f"greedy stream {text!r} != non-stream {ref_text!r}")
    need(finish == ref.choices[0].finish_reason, f"finish_reason {finish!r} vs {ref.choices[0].finish_reason!r}")
    if ctx.kvlm:
        u = check_usage(ctx, usage, f"{kind} stream")
        need(u.completion_tokens == ref.usage.completion_tokens and u.prompt_tokens == ref.usage.prompt_tokens,
             f"stream usage {u} vs non-stream {ref.usage}")


def t_completion_stream(ctx):
    ref = complete(ctx, PROMPT, max_tokens=12)
    same_as_unstreamed(ctx, "completion", ref, ref.choices[0].text, prompt=PROMPT, max_tokens=12)


def t_chat_stream(ctx):
    ref = chat(ctx, QUESTION, max_tokens=24)
    same_as_unstreamed(ctx, "chat", ref, ref.choices[0].message.content,
                       messages=[{"role": "user", "content": QUESTION}], max_tokens=24)


def t_stop(ctx):
    base = complete(ctx, PROMPT, max_tokens=24).choices[0].text
    words = base.split()
    need(len(words) >= 3, f"too short a greedy output to pick a stop string from: {base!r}")
    stop = words[2]
    want = base[:base.index(stop)]
    r = complete(ctx, PROMPT, max_tokens=24, stop=[stop])
    got = r.choices[0].text
    need(got == want, f"stop {stop!r}: {got!r}, want {want!r}")
    need(r.choices[0].finish_reason == "stop", f"finish_reason {r.choices[0].finish_reason!r}")
    text, finish, _, _ = stream_text(ctx, "completion", prompt=PROMPT, max_tokens=24, stop=[stop])
    need(text == want, f"streamed, stop {stop!r}: {text!r}, want {want!r}")
    need(finish == "stop", f"streamed finish_reason {finish!r}")
    ctx.log(f"stop {stop!r} in {base!r}")


def t_greedy_concurrent(ctx):
    """The same greedy request gives the same text alone and among 7 others (batching
    must not change the numbers a request sees). --quick (the sanitizer build): 4
    requests of 16 tokens, the first still joining the other 3 while they run."""
    n_req, n_tok = (4, 16) if ctx.quick else (8, 40)
    t = tag()
    prompts = [f"{t} {i}: " + p for i, p in enumerate((
        "Write a short poem about the sea.", "List the planets of the solar system.",
        "Explain what a compiler does, in two sentences.", "Tell me a fact about cats.",
        "What is 12 times 12? Explain.", "Describe a sunrise over the mountains.",
        "Give three tips for learning to cook.", "Why do leaves change color in autumn?"))][:n_req]
    alone = []
    for p in prompts:
        alone.append(chat(ctx, p, max_tokens=n_tok).choices[0].message.content)

    async def together():
        ac = ctx.aclient()
        try:
            async def one(p, delay):
                await asyncio.sleep(delay)
                r = await ac.chat.completions.create(model=ctx.model, messages=[{"role": "user", "content": p}],
                                                     max_tokens=n_tok, temperature=0)
                return r.choices[0].message.content
            # the first request goes in while the others are already running
            return await asyncio.wait_for(asyncio.gather(*(one(p, 0.3 if i == 0 else 0.0)
                                                           for i, p in enumerate(prompts))), TIMEOUT * 2)
        finally:
            await ac.close()
    both = asyncio.run(together())
    bad = [i for i in range(len(prompts)) if alone[i] != both[i]]
    need(not bad, "; ".join(f"request {i}: alone {alone[i]!r}, concurrent {both[i]!r}" for i in bad))


def t_too_long(ctx):
    try:
        complete(ctx, long_text(6000) * 4, max_tokens=4)
    except openai.BadRequestError as e:
        ctx.log(f"400: {e.message[:120]}")
    else:
        raise Check("an over-long prompt was accepted")
    still_serving(ctx)


# ---- kvlm only --------------------------------------------------------------------------------
def t_stream_usage(ctx):
    for kind, kw in (("completion", {"prompt": PROMPT}), ("chat", {"messages": [{"role": "user", "content": QUESTION}]})):
        _, _, usage, _ = stream_text(ctx, kind, max_tokens=8, **kw)
        check_usage(ctx, usage, f"{kind} stream with include_usage")


def t_prefix_cache(ctx):
    prefix = f"{tag()}\n" + long_text(700)   # about 1,000 tokens
    a = ctx.client.chat.completions.create(
        model=ctx.model, max_tokens=4, temperature=0,
        messages=[{"role": "system", "content": prefix}, {"role": "user", "content": "What is this text?"}])
    ua = check_usage(ctx, a.usage, "first request")
    need(ua.prompt_tokens >= 800, f"prompt_tokens {ua.prompt_tokens}: the prefix is shorter than meant")
    need(ua.prompt_tokens_details.cached_tokens < BLOCK,
         f"cached_tokens {ua.prompt_tokens_details.cached_tokens} on a fresh prefix")
    _, _, ub, _ = stream_text(ctx, "chat", max_tokens=4, messages=[
        {"role": "system", "content": prefix}, {"role": "user", "content": "Who wrote it?"}])
    ub = check_usage(ctx, ub, "second request (stream)")
    c = ub.prompt_tokens_details.cached_tokens
    need(c > 0, "cached_tokens = 0 for a request sharing a ~1,000-token prefix with the one before")
    need(c % BLOCK == 0, f"cached_tokens {c} is not a multiple of {BLOCK}")
    need(c <= ub.prompt_tokens, f"cached_tokens {c} > prompt_tokens {ub.prompt_tokens}")
    need(c >= ua.prompt_tokens - 2 * BLOCK - 16,
         f"cached_tokens {c}: most of the {ua.prompt_tokens}-token shared prompt should be cached")
    ctx.log(f"prompt {ua.prompt_tokens} then {ub.prompt_tokens} tokens, cached {c}")


def t_n2(ctx):
    for kind in ("completion", "chat"):
        if kind == "chat":
            r = chat(ctx, QUESTION, max_tokens=8, n=2, temperature=0.8, seed=1)
        else:
            r = complete(ctx, PROMPT, max_tokens=8, n=2, temperature=0.8, seed=1)
        need(len(r.choices) == 2, f"{kind}: n=2 gave {len(r.choices)} choices")
        need(sorted(c.index for c in r.choices) == [0, 1], f"{kind}: indices {[c.index for c in r.choices]}")
        u = check_usage(ctx, r.usage, f"{kind} n=2")
        need(u.completion_tokens >= 2, f"{kind}: n=2 but completion_tokens {u.completion_tokens}")


def expect_400(ctx, cases):
    """cases: (what, fn) pairs; every fn must raise openai.BadRequestError. All cases
    run; the check fails with every case that did not, then the server must still serve."""
    bad = []
    for what, fn in cases:
        try:
            fn()
        except openai.BadRequestError as e:
            ctx.log(f"{what}: 400 {e.message[:100]}")
        except openai.APIStatusError as e:
            bad.append(f"{what}: HTTP {e.status_code}")
        else:
            bad.append(f"{what}: accepted")
    still_serving(ctx)
    need(not bad, "want 400 (BadRequestError): " + "; ".join(bad))


def t_bad_types(ctx):
    expect_400(ctx, [
        ("max_tokens a string", lambda: complete(ctx, PROMPT, extra_body={"max_tokens": "ten"})),
        ("temperature a string", lambda: complete(ctx, PROMPT, extra_body={"temperature": "hot"})),
        ("negative max_tokens", lambda: complete(ctx, PROMPT, max_tokens=-1)),
        ("messages not a list", lambda: ctx.client.chat.completions.create(
            model=ctx.model, messages="hello", max_tokens=4)),
        ("message content a number", lambda: ctx.client.chat.completions.create(
            model=ctx.model, messages=[{"role": "user", "content": 42}], max_tokens=4)),
        ("prompt missing", lambda: ctx.client.post(
            "/completions", cast_to=object, body={"model": ctx.model, "max_tokens": 4}))])


def t_unknown_param(ctx):
    expect_400(ctx, [
        ("unknown parameter", lambda: complete(ctx, PROMPT, extra_body={"frobnicate": 1})),
        ("unknown parameter (chat)", lambda: chat(ctx, QUESTION, extra_body={"frobnicate": True}))])


def t_unknown_model(ctx):
    for kind in ("completion", "chat"):
        try:
            if kind == "chat":
                ctx.client.chat.completions.create(model="no-such-model", max_tokens=4,
                                                   messages=[{"role": "user", "content": QUESTION}])
            else:
                ctx.client.completions.create(model="no-such-model", prompt=PROMPT, max_tokens=4)
        except openai.NotFoundError:
            pass
        except openai.APIStatusError as e:
            raise Check(f"{kind}: HTTP {e.status_code} for an unknown model, want 404")
        else:
            raise Check(f"{kind}: an unknown model was accepted")
    still_serving(ctx)


def t_health_metrics(ctx):
    root = ctx.url[:-3] if ctx.url.endswith("/v1") else ctx.url
    for path in ("/health", "/metrics"):
        try:
            with urllib.request.urlopen(root + path, timeout=TIMEOUT) as r:
                need(r.read(), f"GET {path}: empty body")
        except urllib.error.HTTPError as e:
            raise Check(f"GET {path}: HTTP {e.code}")


CHECKS = [  # (name, kvlm only, function); models first: it finds the model id
    ("models", False, t_models),
    ("completion", False, t_completion),
    ("chat", False, t_chat),
    ("completion_stream", False, t_completion_stream),
    ("chat_stream", False, t_chat_stream),
    ("stop_strings", False, t_stop),
    ("greedy_alone_vs_concurrent", False, t_greedy_concurrent),
    ("prompt_too_long_400", False, t_too_long),
    ("stream_usage", True, t_stream_usage),
    ("prefix_cache_cached_tokens", True, t_prefix_cache),
    ("n_2", True, t_n2),
    ("bad_types_400", True, t_bad_types),
    ("unknown_param_400", True, t_unknown_param),
    ("unknown_model_404", True, t_unknown_model),
    ("health_metrics", True, t_health_metrics),
]


def main():
    ap = argparse.ArgumentParser(description="OpenAI API checks against a live server")
    ap.add_argument("--url", default=os.environ.get("KVLM_SERVE_URL", "http://127.0.0.1:8080/v1"),
                    help="base URL (default $KVLM_SERVE_URL or http://127.0.0.1:8080/v1)")
    ap.add_argument("--kvlm", action="store_true", help="also the checks only kvlm promises")
    ap.add_argument("-k", dest="only", help="run the checks whose name contains this")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--quick", action="store_true", help="fewer concurrent requests (the sanitizer build)")
    a = ap.parse_args()
    ctx = Ctx(a.url, a.kvlm, a.verbose, a.quick)
    passed = failed = skipped = 0
    print(f"server {ctx.url}{' (kvlm checks on)' if a.kvlm else ''}")
    for name, kvlm_only, fn in CHECKS:
        if name != "models" and a.only and a.only not in name:
            continue
        if kvlm_only and not a.kvlm:
            print(f"skip {name} (kvlm only: --kvlm)")
            skipped += 1
            continue
        t0 = time.time()
        try:
            fn(ctx)
        except Check as e:
            print(f"FAIL {name}: {e}")
            failed += 1
        except openai.APIConnectionError as e:
            print(f"FAIL {name}: cannot reach {ctx.url}: {e}")
            failed += 1
            if name == "models":
                break
        except Exception as e:   # an unexpected error response or exception is a failure too
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            if a.verbose:
                traceback.print_exc()
            failed += 1
        else:
            print(f"ok   {name} ({time.time() - t0:.1f} s)")
            passed += 1
        if name == "models" and ctx.model is None:
            break
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
