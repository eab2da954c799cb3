#!/usr/bin/env python3
"""ref_whisper.py - the independent reference for kvlm's Whisper (issue 13 part 6).

Run with the venv of scripts/whisper-ref-venv.sh (CTranslate2 4.8.5, faster-whisper 1.2.1):
    PY=$(scripts/whisper-ref-venv.sh)
    $PY tests/ref/ref_whisper.py                       # every clip + jfk (sox stand-in)
    $PY tests/ref/ref_whisper.py --jfk-f32 FILE        # jfk from kvlm's own 16 kHz samples
    $PY tests/ref/ref_whisper.py --only us160_fox      # one clip
Writes tests/data/whisper/ref/<clip>.json, one per clip; a re-run rewrites identical files.

Inputs, as 16 kHz mono float32 samples:
  - tests/data/whisper/clips/*.wav (made by tests/ref/make_whisper_clips.sh), read with the
    stdlib `wave` module as int16 / 32768 (what libsndfile's sf_readf_float gives for s16);
  - jfk: kvlm's own 16 kHz samples as raw little-endian f32, from --jfk-f32 FILE or else by
    running build/pcm16k (dev/whisper/pcm16k.c, `make` builds it); without either,
    `sox jfk.flac -r 16000 -c 1 -t f32 -` stands in and the file says "provisional": true.
The JSON records `samples_sha256` (of the f32 little-endian bytes) so the C test can check it
was fed the same samples.

What each file holds (the model is ~/.cache/kvlm/whisper-tiny.en, CT2 on the CPU, 2 threads):
  mel        faster-whisper FeatureExtractor (padding=160), the first window exactly as
             transcribe() builds it: pad_or_trim(features[:, :min(3000, content_frames)]),
             [80][3000]. Stored: whole-window mean/absmax/min/max, the per-frame mean over
             the 80 bins of every content frame, and all 80 bins of a few frames (`rows`).
  encoder    ctranslate2.models.Whisper(compute_type="float32").encode(window): [1500][384].
             Stored: mean/absmax/rms and all 384 channels of a few positions.
  greedy_notimestamps / greedy_timestamps   generate(beam_size=1, suppress_blank=True,
             suppress_tokens=[-1], max_length=448, return_scores, return_logits_vocab,
             return_no_speech_prob) with prompts [50257, 50362] / [50257], float32.
             `logprobs[i]` = log_softmax(step i's processed logits)[ids[i]] (the logits CT2
             returns are after suppression/timestamp rules); `eot_logprob` is the last step's;
             `score` is CT2's own: (sum(logprobs) + eot_logprob) / len(ids), but summed in
             float32 by CT2, so it is ~3e-5 per token less negative than the float64
             log_softmax here (the many tiny exp() terms are lost next to the top one; checked
             on jfk against one-token generate() calls). `margins[i]` = chosen logit minus
             the runner-up's at step i; `min_margin` their minimum.
  beam5_notimestamps   generate(beam_size=5, patience=1, length_penalty=1), float32.
  int8_greedy_notimestamps   as greedy_notimestamps with compute_type="int8", and its WER
             against the float32 greedy text (tests/ref/wer.py).
  transcribe faster-whisper WhisperModel(dir, compute_type="float32", cpu_threads=2)
             .transcribe(samples, beam_size 1|5, temperature 0|default fallback list,
             without_timestamps False|True), every other option at its default; segments.
             ctranslate2.set_random_seed(0) before each call (sampling only happens if a
             fallback triggers; `temperature` per segment says whether it did).
  wer        word errors of each text against the spoken text (clips: index.tsv; jfk: the
             known sentence).
Floats are rounded to 7 significant digits (9 for scores/log-probs) so the files are stable.
"""
import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import types
import wave

sys.modules.setdefault("av", types.ModuleType("av"))  # faster_whisper imports PyAV; unused here

import numpy as np  # noqa: E402
import ctranslate2  # noqa: E402
import faster_whisper  # noqa: E402
from faster_whisper import WhisperModel  # noqa: E402
from faster_whisper.audio import pad_or_trim  # noqa: E402
from faster_whisper.feature_extractor import FeatureExtractor  # noqa: E402
from faster_whisper.tokenizer import Tokenizer  # noqa: E402
import tokenizers  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wer import wer  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SOT, NO_TIMESTAMPS, EOT = 50257, 50362, 50256
THREADS = 2
JFK_TEXT = ("And so my fellow Americans, ask not what your country can do for you, "
            "ask what you can do for your country.")
FALLBACK = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]  # faster-whisper's default temperature list


def f7(v):
    return float(f"{float(v):.7g}")


def f9(v):
    return float(f"{float(v):.9g}")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_wav16k(path):
    """16 kHz mono s16 WAV -> float32 samples int16 / 32768."""
    with wave.open(path, "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (16000, 1, 2):
            sys.exit(f"{path}: not 16 kHz mono 16-bit")
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / np.float32(32768.0)


def jfk_samples(jfk_f32, pcm16k):
    """(samples, source description, provisional): --jfk-f32, else build/pcm16k (the audio
    helper's dev tool, kvlm's own front end), else sox as a provisional stand-in."""
    flac = os.path.join(ROOT, "..", "shared", "data", "jfk.flac")
    if not os.path.exists(flac):
        flac = "/work/shared/data/jfk.flac"
    if jfk_f32:
        return (np.fromfile(jfk_f32, dtype="<f4"),
                "kvlm's own 16 kHz samples: build/pcm16k ../shared/data/jfk.flac OUT.f32 "
                "(dev/whisper/pcm16k.c)", False)
    if os.access(pcm16k, os.X_OK):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "jfk16k.f32")
            subprocess.run([pcm16k, flac, out], check=True, stdout=subprocess.DEVNULL)
            return (np.fromfile(out, dtype="<f4"),
                    "kvlm's own 16 kHz samples: build/pcm16k ../shared/data/jfk.flac OUT.f32 "
                    "(dev/whisper/pcm16k.c)", False)
    cmd = ["sox", flac, "-r", "16000", "-c", "1", "-t", "f32", "-"]
    raw = subprocess.run(cmd, check=True, stdout=subprocess.PIPE).stdout
    return (np.frombuffer(raw, dtype="<f4").copy(),
            "stand-in: sox ../shared/data/jfk.flac -r 16000 -c 1 -t f32 -", True)


def mel_window(samples):
    """faster-whisper's first window and the number of content frames."""
    features = FeatureExtractor()(samples)          # [80][n_frames], padding=160
    content = features.shape[-1] - 1
    window = pad_or_trim(features[:, :min(3000, content)])  # [80][3000], 0.0 after content
    return np.ascontiguousarray(window, dtype=np.float32), features.shape[-1], content


def mel_summary(window, n_frames, content):
    rows = sorted(set([0, 1, min(content, 3000) // 2, min(content, 3000) - 1, 2999]))
    return {
        "shape": [80, 3000], "feature_frames": int(n_frames), "content_frames": int(content),
        "mean": f7(window.astype(np.float64).mean()), "absmax": f7(np.abs(window).max()),
        "min": f7(window.min()), "max": f7(window.max()),
        "frame_means": [f7(v) for v in window[:, :min(content, 3000)].astype(np.float64)
                        .mean(axis=0)],
        "rows": {str(r): [f7(v) for v in window[:, r]] for r in rows},  # frame r: [80] bins
    }


def enc_summary(enc, content):
    e = enc[0].astype(np.float64)                   # [1500][384]
    n_pos = (min(content, 3000) + 1) // 2           # positions that saw audio
    rows = sorted(set([0, n_pos // 2, max(n_pos - 1, 0), 1499]))
    return {
        "shape": [1500, 384], "mean": f7(e.mean()), "absmax": f7(np.abs(e).max()),
        "rms": f7(np.sqrt((e * e).mean())),
        "rows": {str(r): [f7(v) for v in enc[0, r]] for r in rows},  # position r: [384]
    }


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def generate(model, enc, prompt, tok, beam):
    r = model.generate(enc, [prompt], beam_size=beam, patience=1, length_penalty=1,
                       suppress_blank=True, suppress_tokens=[-1], max_length=448,
                       return_scores=True, return_logits_vocab=(beam == 1),
                       return_no_speech_prob=True)[0]
    ids = list(r.sequences_ids[0])
    out = {"prompt": prompt, "ids": ids, "text": tok.decode(ids),
           "score": f9(r.scores[0]), "no_speech_prob": f9(r.no_speech_prob)}
    if any(i > EOT for i in ids):
        out["text_with_timestamps"] = tok.decode_with_timestamps(ids)
    if beam == 1:
        steps = r.logits[0]                         # one [51864] logit vector per step
        lps = [log_softmax(np.array(s))[t] for s, t in zip(steps, ids + [EOT])]
        out["logprobs"] = [f9(v) for v in lps[:len(ids)]]
        out["eot_logprob"] = f9(lps[len(ids)]) if len(lps) > len(ids) else None
        # margins[i]: logit of the chosen token minus the best other one at step i (EOT
        # step included): how close greedy came to a tie, i.e. how fragile exact agreement is.
        margins = []
        for s, t in zip(steps, ids + [EOT]):
            v = np.array(s).astype(np.float64)
            chosen = v[t]
            v[t] = -np.inf
            margins.append(f7(chosen - v.max()))
        out["margins"] = margins
        out["min_margin"] = min(margins)
    return out


def transcribe(fw, samples, beam, fallback, without_ts):
    ctranslate2.set_random_seed(0)
    segs, _info = fw.transcribe(samples, language="en", beam_size=beam,
                                temperature=FALLBACK if fallback else 0.0,
                                without_timestamps=without_ts)
    return [{"start": f7(s.start), "end": f7(s.end), "text": s.text, "tokens": list(s.tokens),
             "avg_logprob": f9(s.avg_logprob), "no_speech_prob": f9(s.no_speech_prob),
             "compression_ratio": f9(s.compression_ratio), "temperature": s.temperature}
            for s in segs]


def wer_entry(ref_text, hyp_text):
    e, n, r = wer(ref_text, hyp_text)
    return {"errors": e, "ref_words": n, "wer": round(r, 4)}


def to_json(obj, indent=0):
    """JSON with dicts indented and lists of scalars on one line (small, diffable)."""
    pad = " " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f'{pad} {json.dumps(k)}: {to_json(v, indent + 1)}' for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        return "[\n" + ",\n".join(f"{pad} {to_json(v, indent + 1)}" for v in obj) + \
            "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/kvlm/whisper-tiny.en"))
    ap.add_argument("--clips", default=os.path.join(ROOT, "tests/data/whisper/clips"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/data/whisper/ref"))
    ap.add_argument("--jfk-f32", help="raw f32 16 kHz samples of jfk.flac from kvlm's front end")
    ap.add_argument("--pcm16k", default=os.path.join(ROOT, "build/pcm16k"),
                    help="kvlm's dev tool that writes them (used when --jfk-f32 is not given)")
    ap.add_argument("--only", action="append", help="clip name (repeatable); default all")
    args = ap.parse_args()

    index = {}
    with open(os.path.join(args.clips, "index.tsv"), encoding="utf-8") as f:
        next(f)
        for line in f:
            name, voice, speed, secs, text = line.rstrip("\n").split("\t")
            index[name] = {"voice": voice, "speed_wpm": int(speed), "text": text}
    names = sorted(index) + ["jfk"]
    if args.only:
        names = [n for n in names if n in args.only]

    tok = Tokenizer(tokenizers.Tokenizer.from_file(os.path.join(args.model, "tokenizer.json")),
                    multilingual=False, task="transcribe", language="en")
    m32 = ctranslate2.models.Whisper(args.model, device="cpu", compute_type="float32",
                                     intra_threads=THREADS)
    m8 = ctranslate2.models.Whisper(args.model, device="cpu", compute_type="int8",
                                    intra_threads=THREADS)
    fw = WhisperModel(args.model, device="cpu", compute_type="float32", cpu_threads=THREADS)
    model_sha = sha256_file(os.path.join(args.model, "model.bin"))
    os.makedirs(args.out, exist_ok=True)

    for name in names:
        if name == "jfk":
            samples, source, provisional = jfk_samples(args.jfk_f32, args.pcm16k)
            spoken = JFK_TEXT
            meta = {"source": source}
        else:
            samples = read_wav16k(os.path.join(args.clips, name + ".wav"))
            spoken = index[name]["text"]
            provisional = False
            meta = {"source": f"tests/data/whisper/clips/{name}.wav (int16 / 32768)",
                    "voice": index[name]["voice"], "speed_wpm": index[name]["speed_wpm"]}
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        window, n_frames, content = mel_window(samples)
        feats = ctranslate2.StorageView.from_array(window[None])       # [1][80][3000]
        enc32 = m32.encode(feats, to_cpu=True)                         # [1][1500][384]
        enc8 = m8.encode(feats, to_cpu=True)
        res = {
            "clip": name,
            "provisional": provisional,
            "spoken_text": spoken,
            **meta,
            "n_samples": int(samples.size),
            "samples_sha256": hashlib.sha256(samples.astype("<f4").tobytes()).hexdigest(),
            "mel": mel_summary(window, n_frames, content),
            "encoder": enc_summary(np.array(enc32), content),
            "greedy_notimestamps": generate(m32, enc32, [SOT, NO_TIMESTAMPS], tok, 1),
            "greedy_timestamps": generate(m32, enc32, [SOT], tok, 1),
            "beam5_notimestamps": generate(m32, enc32, [SOT, NO_TIMESTAMPS], tok, 5),
            "int8_greedy_notimestamps": generate(m8, enc8, [SOT, NO_TIMESTAMPS], tok, 1),
        }
        res["int8_greedy_notimestamps"]["wer_vs_float32_greedy"] = wer_entry(
            res["greedy_notimestamps"]["text"], res["int8_greedy_notimestamps"]["text"])
        res["transcribe"] = {}
        for beam in (1, 5):
            for fallback in (False, True):
                for without_ts in (True, False):
                    key = (f"beam{beam}_{'fallback' if fallback else 'temp0'}_"
                           f"{'notimestamps' if without_ts else 'timestamps'}")
                    res["transcribe"][key] = transcribe(fw, samples, beam, fallback, without_ts)
        res["wer_vs_spoken"] = {
            k: wer_entry(spoken, res[k]["text"])
            for k in ("greedy_notimestamps", "greedy_timestamps", "beam5_notimestamps",
                      "int8_greedy_notimestamps")}
        res["versions"] = {
            "ctranslate2": ctranslate2.__version__, "faster_whisper": faster_whisper.__version__,
            "numpy": np.__version__, "tokenizers": tokenizers.__version__,
            "python": platform.python_version(), "model_bin_sha256": model_sha,
            "device": "cpu", "threads": THREADS}
        res["command"] = "$(scripts/whisper-ref-venv.sh) tests/ref/ref_whisper.py"
        path = os.path.join(args.out, name + ".json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(to_json(res) + "\n")
        g, i8 = res["greedy_notimestamps"], res["int8_greedy_notimestamps"]
        print(f"{name}: {len(g['ids'])} ids, f32 {g['text']!r}; int8 WER "
              f"{i8['wer_vs_float32_greedy']['errors']} -> {os.path.relpath(path, ROOT)}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
