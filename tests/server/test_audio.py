#!/usr/bin/env python3
"""tests/server/test_audio.py - POST /v1/audio/transcriptions of a live
`kvlm serve --whisper whisper` through the official openai client:
client.audio.transcriptions.create(model="whisper-1", file=jfk.flac) in every
response_format (json, text, verbose_json, srt, vtt), each checked for its shape
and for the words of the reference transcript; timestamp_granularities
(segment with verbose_json works, segment with json and word are 400), another
language (400), an unknown model (404), whisper-tiny.en in /v1/models, three
concurrent transcriptions giving the same text, and /metrics counting the audio
seconds and the latency.

The expected words are faster-whisper 1.2.1's (CTranslate2 4.8.5) on the same model
and file, recorded in ../shared/WHISPER.md section 5: greedy and beam 5, with
and without timestamps, all give these words (only punctuation differs).

    python3 tests/server/test_audio.py --url http://127.0.0.1:PORT/v1 --audio jfk.flac
Prints "skip ..." and "0 passed, 0 failed" when the server has no Whisper model.
"""
import argparse
import concurrent.futures
import os
import re
import sys

import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_limits import metrics  # noqa: E402  (/metrics as {name: value})

REFERENCE = ("and so my fellow americans ask not what your country can do for you "
             "ask what you can do for your country")
CUE = re.compile(r"^(\d\d+):(\d\d):(\d\d)([,.])(\d\d\d) --> (\d\d+):(\d\d):(\d\d)([,.])(\d\d\d)$")


def words(text):
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower()).split())


def cues(body, sep):
    """(start, end, text) of each SRT/VTT cue; raises on a malformed one."""
    out = []
    for block in [b for b in body.strip("\n").split("\n\n") if b and b != "WEBVTT"]:
        lines = block.split("\n")
        if sep == ",":
            assert lines[0].isdigit() and int(lines[0]) == len(out) + 1, f"bad index in {block!r}"
            lines = lines[1:]
        m = CUE.match(lines[0])
        assert m and m.group(4) == sep and m.group(9) == sep, f"bad time line {lines[0]!r}"
        g = [int(x) if x.isdigit() else x for x in m.groups()]
        t0 = g[0] * 3600 + g[1] * 60 + g[2] + g[4] / 1000
        t1 = g[5] * 3600 + g[6] * 60 + g[7] + g[9] / 1000
        out.append((t0, t1, "\n".join(lines[1:])))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--audio", required=True)
    a = ap.parse_args()
    c = openai.OpenAI(base_url=a.url, api_key="none", max_retries=0, timeout=600)
    ids = [m.id for m in c.models.list().data]
    if "whisper-tiny.en" not in ids:
        print(f"skip the server has no Whisper model (models: {ids})")
        print("0 passed, 0 failed")
        return 0
    results = []

    def check(name, ok, detail=""):
        results.append(bool(ok))
        print(f"{'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"))

    def create(**kw):
        with open(a.audio, "rb") as f:
            return c.audio.transcriptions.create(file=f, **kw)

    def expect_error(name, status, **kw):
        try:
            r = create(**kw)
            check(name, False, f"accepted: {r!r:.200}")
        except openai.APIStatusError as e:
            err = e.body if isinstance(e.body, dict) else {}
            check(name, e.status_code == status and "message" in err, f"{e.status_code} {e.body}")

    before = metrics(a.url)
    check("whisper-tiny.en listed in /v1/models", "whisper-tiny.en" in ids, ids)

    r = create(model="whisper-1")
    check("json (default): the reference words", words(r.text) == REFERENCE, r.text)
    r = create(model="whisper-tiny.en", response_format="json")
    check("json with the model's own name", words(r.text) == REFERENCE, r.text)

    t = create(model="whisper-1", response_format="text")
    check("text: a string, one line per segment", isinstance(t, str) and t.endswith("\n") and
          words(t) == REFERENCE and all(line == line.strip() for line in t.splitlines()), repr(t))

    v = create(model="whisper-1", response_format="verbose_json", timestamp_granularities=["segment"])
    segs = v.segments or []
    ok = (v.language == "english" and abs(v.duration - 11.0) < 0.1 and words(v.text) == REFERENCE and segs and
          all(s.start < s.end <= v.duration + 0.5 for s in segs) and
          all(segs[i].end <= segs[i + 1].start + 1e-6 for i in range(len(segs) - 1)) and
          words(" ".join(s.text for s in segs)) == REFERENCE and [s.id for s in segs] == list(range(len(segs))))
    check("verbose_json: task, language, duration, ordered segments", ok, repr(v)[:400])

    for fmt, sep in (("srt", ","), ("vtt", ".")):
        body = create(model="whisper-1", response_format=fmt)
        try:
            cs = cues(body, sep)
            ok = (cs and (fmt != "vtt" or body.startswith("WEBVTT\n\n")) and
                  all(t0 < t1 <= 11.5 for t0, t1, _ in cs) and words(" ".join(x for _, _, x in cs)) == REFERENCE)
            check(f"{fmt}: well-formed cues with the reference words", ok, repr(body))
        except AssertionError as e:
            check(f"{fmt}: well-formed cues", False, f"{e}: {body!r}")

    expect_error("segment granularity without verbose_json: 400", 400, model="whisper-1",
                 timestamp_granularities=["segment"])
    expect_error("word granularity: 400", 400, model="whisper-1", response_format="verbose_json",
                 timestamp_granularities=["word"])
    expect_error("language fr: 400", 400, model="whisper-1", language="fr")
    expect_error("an unknown model: 404", 404, model="whisper-large-v3")
    expect_error("temperature 2: 400", 400, model="whisper-1", temperature=2)
    r = create(model="whisper-1", language="en", temperature=0, prompt="President Kennedy.")
    check("language en, temperature 0 and a prompt are accepted", words(r.text) != "", r.text)

    with concurrent.futures.ThreadPoolExecutor(3) as ex:
        texts = list(ex.map(lambda _: create(model="whisper-1", response_format="text"), range(3)))
    check("three at once: the same text", len(set(texts)) == 1 and words(texts[0]) == REFERENCE, texts)

    after = metrics(a.url)
    n = 10   # successful transcriptions above
    d_audio = after.get("kvlm_audio_seconds_total", 0) - before.get("kvlm_audio_seconds_total", 0)
    d_count = after.get("kvlm_transcription_latency_seconds_count", 0) - \
        before.get("kvlm_transcription_latency_seconds_count", 0)
    check("/metrics: audio seconds and latency count", abs(d_audio - 11.0 * n) < 0.5 * n and d_count == n,
          f"audio {d_audio}, count {d_count}")

    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
