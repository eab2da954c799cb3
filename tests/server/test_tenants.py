#!/usr/bin/env python3
"""tests/server/test_tenants.py - API keys and prefix-cache isolation of a live
`kvlm serve --api-keys FILE` whose file maps KEY_A to tenant a and KEY_B to b:
no key or a wrong key is refused (401); a tenant's second request hits its own
cached prefix; the other tenant, and the same tenant with another cache_salt,
never do (their cached_tokens is 0), so no tenant can hit or time another's prompt.

    python3 tests/server/test_tenants.py --url http://127.0.0.1:PORT/v1 --key-a KA --key-b KB
"""
import argparse
import json
import sys
import urllib.error
import urllib.request

import openai
from openai import OpenAI

PROMPT = ("Tenant isolation check. " * 20) + "Now say hello."


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--key-a", required=True)
    ap.add_argument("--key-b", required=True)
    a = ap.parse_args()
    ca = OpenAI(base_url=a.url, api_key=a.key_a, timeout=60, max_retries=0)
    cb = OpenAI(base_url=a.url, api_key=a.key_b, timeout=60, max_retries=0)
    bad = OpenAI(base_url=a.url, api_key="not-a-key", timeout=60, max_retries=0)
    model = ca.models.list().data[0].id
    msgs = [{"role": "user", "content": PROMPT}]

    def cached(client, **extra):
        r = client.chat.completions.create(model=model, messages=msgs, max_tokens=4, temperature=0, **extra)
        return r.usage.prompt_tokens_details.cached_tokens, r.usage.prompt_tokens

    results = []

    def check(name, ok, detail=""):
        results.append(ok)
        print(f"{'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"))

    try:
        bad.models.list()
        check("wrong key refused", False, "no error")
    except openai.AuthenticationError:
        check("wrong key refused", True)
    req = urllib.request.Request(a.url + "/chat/completions", method="POST",
                                 data=json.dumps({"model": model, "messages": msgs}).encode())
    try:                                        # no Authorization header at all (the client insists on one)
        urllib.request.urlopen(req, timeout=60)
        check("missing key refused", False, "no error")
    except urllib.error.HTTPError as e:
        body = json.loads(e.read())
        check("missing key refused", e.code == 401 and body["error"]["code"] == "invalid_api_key", f"{e.code} {body}")
    c1, n = cached(ca)
    c2, _ = cached(ca)
    check("tenant a: cold, then its own prefix hit", c1 == 0 and c2 >= n - 16, f"{c1}, {c2} of {n}")
    c3, _ = cached(cb)
    check("tenant b never hits tenant a's prefix", c3 == 0, f"cached {c3}")
    c4, _ = cached(cb)
    check("tenant b hits its own", c4 >= n - 16, f"cached {c4}")
    c5, _ = cached(ca, extra_body={"cache_salt": "s1"})
    c6, _ = cached(ca, extra_body={"cache_salt": "s1"})
    check("a cache_salt scopes further (cold, then its own hit)", c5 == 0 and c6 >= n - 16, f"{c5}, {c6}")
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
