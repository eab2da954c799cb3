#!/usr/bin/env python3
"""tests/server/load_test.py - many concurrent clients against a live `kvlm serve`
(loopback only), bounded in time: zero unexpected errors, prefix hits for the
requests that share a long system prompt, clients that hang up mid-stream, and
afterwards the KV pool back to idle (no block in use, no sequence running).

    python3 tests/server/load_test.py --url http://127.0.0.1:PORT/v1 [--clients 32] [--requests 200]

Prints one line per check, then `N passed, N failed`; exit 1 on failure.
"""
import argparse
import asyncio
import random
import sys
import time
import urllib.request

from openai import AsyncOpenAI

SYSTEM = ("You are a careful assistant for a library of maps. " * 12).strip()   # ~130 tokens, shared


def metrics(base):
    url = base.rsplit("/v1", 1)[0] + "/metrics"
    out = {}
    with urllib.request.urlopen(url, timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#") and "{" not in line:
                k, v = line.split()
                out[k] = float(v)
    return out


async def one(client, model, i, rng, stats):
    shared = i % 2 == 0
    hang_up = i % 10 == 3
    msgs = ([{"role": "system", "content": SYSTEM}] if shared else []) + \
           [{"role": "user", "content": f"Request {i}: name {rng.randint(2, 9)} rivers of country #{rng.randint(0, 10**6)}."}]
    max_tokens = rng.randint(8, 32)
    try:
        if i % 3 == 0 and not hang_up:
            r = await client.chat.completions.create(model=model, messages=msgs, max_tokens=max_tokens,
                                                     temperature=0.7, seed=i)
            u = r.usage
            assert u.completion_tokens <= max_tokens and u.prompt_tokens_details.cached_tokens is not None
            if shared:
                stats["shared_cached"].append(u.prompt_tokens_details.cached_tokens)
        else:
            stream = await client.chat.completions.create(model=model, messages=msgs, max_tokens=max_tokens,
                                                          temperature=0.7, seed=i, stream=True,
                                                          stream_options={"include_usage": True})
            n = 0
            usage = None
            async for chunk in stream:
                n += 1
                if chunk.usage:
                    usage = chunk.usage
                if hang_up and n == 3:
                    await stream.close()          # the client goes away mid-stream
                    stats["hung_up"] += 1
                    return
            assert usage is not None and usage.prompt_tokens_details.cached_tokens is not None
            if shared:
                stats["shared_cached"].append(usage.prompt_tokens_details.cached_tokens)
        stats["ok"] += 1
    except Exception as e:  # noqa: BLE001 - every failure is counted and shown
        stats["errors"].append(f"request {i}: {type(e).__name__}: {e}")


async def run(args):
    client = AsyncOpenAI(base_url=args.url, api_key=args.api_key or "none", timeout=120, max_retries=0)
    model = (await client.models.list()).data[0].id
    stats = {"ok": 0, "hung_up": 0, "errors": [], "shared_cached": []}
    rng = random.Random(1)
    sem = asyncio.Semaphore(args.clients)

    async def gated(i):
        async with sem:
            await one(client, model, i, rng, stats)

    t0 = time.time()
    await asyncio.wait_for(asyncio.gather(*(gated(i) for i in range(args.requests))), timeout=args.timeout)
    wall = time.time() - t0

    # a long stream that hangs up: its sequence and blocks must go at once
    stream = await client.chat.completions.create(model=model, max_tokens=3000, stream=True,
                                                  messages=[{"role": "user", "content": "Tell a very long story."}])
    async for _ in stream:
        m = metrics(args.url)
        if m.get("kvlm_kv_blocks_in_use", 0) > 0:
            break
    busy = metrics(args.url)
    await stream.close()
    t_hang = time.time()
    idle = None
    while time.time() - t_hang < 2.0:
        m = metrics(args.url)
        if m.get("kvlm_kv_blocks_in_use", -1) == 0 and m.get("kvlm_running_sequences", -1) == 0:
            idle = time.time() - t_hang
            break
        await asyncio.sleep(0.02)
    await client.close()
    return stats, wall, busy, idle


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--api-key")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()
    stats, wall, busy, idle = asyncio.run(run(args))
    final = metrics(args.url)
    checks = [
        ("no unexpected errors", not stats["errors"], "; ".join(stats["errors"][:5])),
        ("every request answered or hung up", stats["ok"] + stats["hung_up"] == args.requests,
         f"{stats['ok']} ok + {stats['hung_up']} hung up of {args.requests}"),
        ("shared system prompt hits the prefix cache",
         sum(1 for c in stats["shared_cached"] if c >= 128) >= len(stats["shared_cached"]) // 2,
         f"cached_tokens of shared-prefix requests: {sorted(stats['shared_cached'])[:8]}..."),
        ("a hung-up stream frees its blocks within 2 s", busy.get("kvlm_kv_blocks_in_use", 0) > 0 and idle is not None,
         f"in use while streaming {busy.get('kvlm_kv_blocks_in_use')}, idle after {idle}"),
        ("pool idle at the end", final.get("kvlm_kv_blocks_in_use") == 0 and final.get("kvlm_running_sequences") == 0
         and final.get("kvlm_queue_length") == 0, str({k: final.get(k) for k in
                                                       ("kvlm_kv_blocks_in_use", "kvlm_running_sequences", "kvlm_queue_length")})),
    ]
    passed = failed = 0
    print(f"load: {args.requests} requests, {args.clients} clients, {wall:.1f} s, {stats['hung_up']} hung up, "
          f"generated {final.get('kvlm_generation_tokens_total')}, cached prompt tokens "
          f"{final.get('kvlm_prompt_tokens_cached_total')} of {final.get('kvlm_prompt_tokens_total')}")
    for name, ok, detail in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"))
        passed += ok
        failed += not ok
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
