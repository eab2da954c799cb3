#!/usr/bin/env python3
"""tests/server/webui_test.py - the chat page of a live `kvlm serve` (GET /) in a
real headless Chromium (Debian's chromium and chromium-driver, given by path so
Selenium Manager never runs; webui_browser.py sets it up), driven through Selenium
like a user would:

  1. the page loads and names the model GET /v1/models lists
  2. a typed message gets a reply that grows in several steps (a MutationObserver
     in the page records each change of its text), equal to the greedy answer the
     API gives for the same messages without streaming, with its prompt tokens,
     cached tokens, time to first token and tok/s shown under it
  3. the second turn reports cached tokens > 0 (the first turn's prefix), as the
     page's own figures and as its text
  4. the KV gauge shows what GET /v1/kvlm/cache says once the server is idle
  5. Stop ends a long reply: its text stops growing and the server frees the
     sequence (running_seqs and blocks_in_use back to 0)
  6. (--audio, with a Whisper model loaded) an audio file's transcript is shown
  7. (--key-url, a server with --api-key) the page asks for the key, refuses a
     wrong one, and chats once given the right one; no audio panel without Whisper
  8. no JavaScript errors in the browser's console (401s of the key step aside)
Screenshots of each step go to --artifacts (outside git). Prints "ok"/"FAIL"
lines, then "N passed, N failed".

    webui_test.py --url http://127.0.0.1:P --key-url http://127.0.0.1:Q --key K \
        --artifacts DIR [--audio jfk.flac] [--chromium /usr/bin/chromium] [--chromedriver /usr/bin/chromedriver]
"""
import argparse
import os
import re
import sys
import time

from selenium.webdriver.common.by import By

from webui_browser import Page, api, chromium, wait

results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"), flush=True)
    return ok


# Records (ms, length) of the last assistant reply's text at each DOM change.
OBSERVE = """
window.__growth = [];
const target = document.getElementById('messages');
new MutationObserver(() => {
  const a = target.querySelectorAll('.msg.assistant');
  if (!a.length) return;
  const n = a[a.length - 1].querySelector('.body').textContent.length;
  const g = window.__growth;
  if (!g.length || g[g.length - 1][1] !== n) g.push([performance.now(), n]);
}).observe(target, { childList: true, subtree: true, characterData: true });
"""


def normalize(s):
    return re.sub(r"[^a-z ]", "", s.lower())


def chat_part(p, base, model):
    d = p.d
    d.get(base + "/")
    check("GET / gives the chat page (title 'kvlm chat')", d.title == "kvlm chat", d.title)
    models = [m["id"] for m in api(base, "/v1/models")["data"]]
    shown = p.model_shown()
    check("the page names the loaded model (GET /v1/models)", model in shown and all(m in shown for m in models),
          f"shows {shown!r}, models {models}")

    # 2. a streamed reply, greedy, compared with the API's whole answer
    p.set_field("temperature", 0)
    p.set_field("max-tokens", 40)
    d.execute_script(OBSERVE)
    q1 = "Why is the sky blue?"
    t0 = time.monotonic()
    p.say(q1)
    saw_streaming = wait(lambda: p.reply_state() == "streaming" and len(p.last_reply().text) > 0, 20)
    p.wait_reply()
    t1 = time.monotonic() - t0
    r1 = p.last_reply()
    growth = d.execute_script("return window.__growth")
    reply1 = r1.find_element(By.CSS_SELECTOR, ".body").text
    check("reply 1 done", r1.get_attribute("data-state") == "done", r1.get_attribute("data-state"))
    lens = [n for _, n in growth]
    check(f"reply 1 streamed: its text grew in {len(lens)} steps over "
          f"{(growth[-1][0] - growth[0][0]) if growth else 0:.0f} ms",
          saw_streaming and len(lens) >= 5 and lens == sorted(lens) and lens[0] < lens[-1] / 2
          and growth[-1][0] - growth[0][0] > 50, f"lengths {lens}")
    want = api(base, "/v1/chat/completions", {
        "model": model, "temperature": 0, "max_tokens": 40,
        "messages": [{"role": "system", "content": "You are a helpful assistant."},
                     {"role": "user", "content": q1}]})
    want_text = want["choices"][0]["message"]["content"]
    check("reply 1 = the API's non-streamed greedy answer", reply1.strip() == want_text.strip(),
          f"page {reply1!r} vs API {want_text!r}")
    pt1 = int(r1.get_attribute("data-prompt-tokens") or -1)
    stats = r1.find_element(By.CSS_SELECTOR, ".stats").text
    check("reply 1 stats: prompt tokens, cached tokens, time to first token, tok/s",
          pt1 == want["usage"]["prompt_tokens"] and r1.get_attribute("data-cached-tokens") is not None
          and float(r1.get_attribute("data-ttft-ms") or -1) > 0 and float(r1.get_attribute("data-tps") or -1) > 0
          and f"{pt1} prompt tokens" in stats and "from the cache" in stats and " ms" in stats
          and "tok/s" in stats, f"{stats!r} prompt {pt1}")
    p.shot("01-first-reply")

    # 3. the second turn reuses the first's blocks
    p.set_field("max-tokens", 24)
    p.say("Say it in one short sentence.")
    p.wait_reply()
    r2 = p.last_reply()
    cached2 = int(r2.get_attribute("data-cached-tokens") or -1)
    pt2 = int(r2.get_attribute("data-prompt-tokens") or -1)
    shown2 = r2.find_element(By.CSS_SELECTOR, ".cached-tokens").text
    check(f"turn 2 reports cached tokens: {cached2} of {pt2} prompt tokens",
          r2.get_attribute("data-state") == "done" and 0 < cached2 <= pt2 and pt2 > pt1
          and shown2 == f"{cached2} from the cache", f"cached {cached2}, prompt {pt2}, shown {shown2!r}")
    p.shot("02-second-turn-cached")

    # 4. the gauge against GET /v1/kvlm/cache, idle
    c = api(base, "/v1/kvlm/cache")
    want_g = {"in-use": c["blocks_in_use"], "cached": c["blocks_cached"], "free": c["blocks_free"],
              "total": c["blocks_total"]}
    got_g = wait(lambda: p.gauge() if p.gauge() == want_g else None, 4)
    check(f"gauge = GET /v1/kvlm/cache: {want_g}", got_g == want_g and c["blocks_in_use"] == 0
          and c["blocks_cached"] > 0 and sum(want_g[k] for k in ("in-use", "cached", "free")) == want_g["total"],
          f"page {p.gauge()}, endpoint {c}")
    return t1


def stop_part(p, base):
    p.set_field("max-tokens", 1500)
    p.say("Tell a very long story about a dragon.")
    busy = wait(lambda: p.gauge()["in-use"] > 0 and len(p.last_reply().text) > 20, 15)
    check("gauge shows blocks in use while a reply streams", busy, p.gauge())
    stop = p.el("stop")
    check("Stop is enabled while streaming, Send is not", stop.is_enabled() and not p.el("send").is_enabled())
    stop.click()
    stopped = wait(lambda: p.reply_state() == "stopped", 3)
    n1 = len(p.last_reply().find_element(By.CSS_SELECTOR, ".body").text)
    time.sleep(0.7)
    n2 = len(p.last_reply().find_element(By.CSS_SELECTOR, ".body").text)
    freed = wait(lambda: (lambda c: c if c["running_seqs"] == 0 and c["blocks_in_use"] == 0 else None)(
        api(base, "/v1/kvlm/cache")), 3, 0.1)
    check(f"Stop ends the reply at {n1} characters and the server frees its sequence",
          stopped and n1 == n2 and n1 > 0 and freed and "stopped" in p.last_reply().text
          and p.el("send").is_enabled(), f"state {p.reply_state()}, {n1} -> {n2}, freed {freed}")
    p.shot("03-stopped")


def audio_part(p, audio):
    panel = p.el("audio-panel")
    check("the speech-to-text panel is shown (a Whisper model is loaded)", panel.is_displayed())
    p.el("audio-file").send_keys(os.path.abspath(audio))
    p.el("transcribe").click()
    done = wait(lambda: p.el("transcript").get_attribute("data-state"), 60, 0.1)
    t = p.text("transcript")
    check("the audio file's transcript is shown",
          done == "done" and "ask not what your country can do for you" in normalize(t), t)
    p.shot("05-transcript")


def key_part(p, url, key, model):
    d = p.d
    d.get(url + "/")
    panel = wait(lambda: p.el("key-panel").is_displayed(), 5)
    check("with --api-key the page asks for the key", panel and not p.el("send").is_enabled())
    p.shot("04a-key-asked")
    p.set_field("api-key", "wrong-key")
    p.el("key-submit").click()
    refused = wait(lambda: "refused" in p.text("key-error"), 5)
    check("a wrong key is refused", refused and p.el("key-panel").is_displayed(), p.text("key-error"))
    p.set_field("api-key", key)
    p.el("key-submit").click()
    accepted = wait(lambda: not p.el("key-panel").is_displayed() and model in p.text("model"), 5)
    check("the right key is taken: the panel closes and the model is named", accepted, p.text("model"))
    p.set_field("temperature", 0)
    p.set_field("max-tokens", 12)
    p.say("Hello!")
    p.wait_reply()
    r = p.last_reply()
    gauge_ok = wait(lambda: p.gauge()["total"] > 0, 3)
    check("with the key, a reply streams and the gauge fills",
          r.get_attribute("data-state") == "done" and len(r.find_element(By.CSS_SELECTOR, ".body").text) > 0
          and gauge_ok, f"{r.get_attribute('data-state')}: {r.text!r}")
    check("no speech-to-text panel without a Whisper model", not p.el("audio-panel").is_displayed())
    p.shot("04b-key-chat")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True, help="a server without a key: http://127.0.0.1:PORT")
    ap.add_argument("--key-url", help="a server started with --api-key")
    ap.add_argument("--key")
    ap.add_argument("--audio", help="an audio file to transcribe (the --url server has a Whisper model)")
    ap.add_argument("--artifacts", required=True)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    a = ap.parse_args()
    os.makedirs(a.artifacts, exist_ok=True)
    model = api(a.url, "/v1/kvlm/cache")["model"]

    t = time.monotonic()
    with chromium(a.chromium, a.chromedriver) as driver:
        print(f"# {driver.capabilities.get('browserName')} {driver.capabilities.get('browserVersion')} "
              f"started in {time.monotonic() - t:.1f} s", flush=True)
        p = Page(driver, a.artifacts)
        try:
            t1 = chat_part(p, a.url, model)
            print(f"# reply 1 in {t1:.1f} s", flush=True)
            stop_part(p, a.url)
            if a.audio:
                audio_part(p, a.audio)
            else:
                check("no speech-to-text panel without a Whisper model", not p.el("audio-panel").is_displayed())
            logs = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            if a.key_url:
                key_part(p, a.key_url, a.key, model)
                logs += [e for e in driver.get_log("browser") if e["level"] == "SEVERE"
                         and " 401 " not in e["message"] and "(Unauthorized)" not in e["message"]]
            check("no JavaScript errors in the console", not logs, logs[:3])
        except Exception as e:   # a step that could not run at all fails, with its screenshot
            check(f"the browser steps ran through ({type(e).__name__})", False, str(e)[:500])
            try:
                p.shot("99-failure")
            except Exception:
                pass
    for s in p.shots:
        print(f"# screenshot {s}")
    n_ok = sum(results)
    print(f"{n_ok} passed, {len(results) - n_ok} failed")
    return 0 if n_ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
