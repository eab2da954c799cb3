#!/usr/bin/env python3
"""gen_mel_golden.py - golden data for tests/audio (test_mel.c, test_audio.c), from
references independent of kvlm's C code:

  mel_filters_80.f32   [80][201] f32: the Slaney filterbank written here from librosa's
                       formulas (hz_to_mel / mel_to_hz / mel(htk=False, norm="slaney")),
                       checked against faster-whisper's FeatureExtractor.get_mel_filters
  mel_short.f32        short inputs (reflect padding repeated when n < 41): for each case
                       [n] samples (made here) then [80][n_frames] faster-whisper mel
  mel_jfk.f32          faster-whisper FeatureExtractor (1.2.1, numpy) on kvlm's own 16 kHz
                       samples of jfk.flac (written by build/pcm16k): [80][every 4th frame]
  jfk_sox16k.f32       sox's 16 kHz mono resampling of jfk.flac (`sox ... -r 16000 -c 1`),
                       every 50th sample: an independent check of kvlm's decode+resample
  mel_golden.txt       what the files hold (sizes, strides, kvlm sample checksums)

Run in the venv of scripts/whisper-ref-venv.sh from the repository root, after
`make BUILD=build build/pcm16k`:
  $(scripts/whisper-ref-venv.sh) tests/ref/gen_mel_golden.py [--jfk ../shared/data/jfk.flac]
faster_whisper/feature_extractor.py is loaded by path (faster_whisper/__init__ imports av).
"""
import argparse
import glob
import importlib.util
import os
import subprocess
import sys
import tempfile

import numpy as np

OUT = "tests/data/audio"
N_MELS, N_FFT, SR = 80, 400, 16000
JFK_STRIDE, SOX_STRIDE = 4, 50
SHORT_CASES = [1, 7, 40, 41, 199, 400, 1601]


def feature_extractor_module():
    base = os.path.dirname(os.path.dirname(sys.executable))
    paths = glob.glob(os.path.join(base, "lib", "python3*", "site-packages", "faster_whisper",
                                   "feature_extractor.py"))
    if not paths:
        sys.exit("gen_mel_golden: faster_whisper not found; run in the venv of scripts/whisper-ref-venv.sh")
    spec = importlib.util.spec_from_file_location("fw_feature_extractor", paths[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# librosa.core.convert (Slaney, htk=False), written out in numpy
def hz_to_mel(f):
    f = np.asanyarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-300) / min_log_hz) / logstep, f / f_sp)


def mel_to_hz(m):
    m = np.asanyarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def librosa_mel(sr, n_fft, n_mels):
    """librosa.filters.mel(sr, n_fft, n_mels, fmin=0, fmax=sr/2, htk=False, norm='slaney')"""
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2.0), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    weights = np.zeros((n_mels, len(fftfreqs)))
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels])
    return weights * enorm[:, None]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jfk", default="../shared/data/jfk.flac")
    ap.add_argument("--pcm16k", default="build/pcm16k")
    args = ap.parse_args()
    fe_mod = feature_extractor_module()
    fe = fe_mod.FeatureExtractor(feature_size=N_MELS)
    os.makedirs(OUT, exist_ok=True)
    meta = []

    # 1. the filterbank
    mine = librosa_mel(SR, N_FFT, N_MELS)
    theirs = fe_mod.FeatureExtractor.get_mel_filters(SR, N_FFT, n_mels=N_MELS)
    d = np.abs(mine - theirs).max()
    assert d < 1e-12, f"librosa-style filterbank differs from faster-whisper's by {d}"
    mine.astype("<f4").tofile(f"{OUT}/mel_filters_80.f32")
    meta.append(f"filters {N_MELS} {N_FFT // 2 + 1} librosa_vs_faster_whisper_maxdiff {d:.3g}")

    # 2. short inputs: deterministic samples made here, stored with their mel
    rng = np.random.default_rng(13)
    blobs = []
    for n in SHORT_CASES:
        x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / SR) + 0.05 * rng.standard_normal(n)).astype("<f4")
        mel = fe(x)
        assert mel.shape == (N_MELS, (n + 160) // 160)
        blobs += [x, mel.astype("<f4").ravel()]
        meta.append(f"short {n} {mel.shape[1]}")
    np.concatenate(blobs).astype("<f4").tofile(f"{OUT}/mel_short.f32")

    # 3. jfk.flac: faster-whisper's mel of kvlm's own samples
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "jfk16k.f32")
        subprocess.run([args.pcm16k, args.jfk, raw], check=True, stdout=subprocess.DEVNULL)
        x = np.fromfile(raw, dtype="<f4")
        sox = os.path.join(tmp, "sox16k.f32")
        subprocess.run(["sox", args.jfk, "-t", "f32", "-r", str(SR), "-c", "1", sox], check=True)
        s = np.fromfile(sox, dtype="<f4")
    mel = fe(x)
    sel = mel[:, ::JFK_STRIDE]
    np.ascontiguousarray(sel).astype("<f4").tofile(f"{OUT}/mel_jfk.f32")
    meta.append(f"jfk_samples {len(x)} sum {float(np.sum(x, dtype=np.float64)):.9g} "
                f"sumsq {float(np.sum(x.astype(np.float64) ** 2)):.9g}")
    meta.append(f"jfk_mel {N_MELS} {mel.shape[1]} stride {JFK_STRIDE} stored {sel.shape[1]} max {mel.max():.9g}")
    s_sel = s[::SOX_STRIDE]
    s_sel.astype("<f4").tofile(f"{OUT}/jfk_sox16k.f32")
    n_common = min(len(s), len(x))
    meta.append(f"jfk_sox {len(s)} stride {SOX_STRIDE} stored {len(s_sel)} "
                f"kvlm_vs_sox_maxdiff {np.abs(s[:n_common] - x[:n_common]).max():.3g}")
    with open(f"{OUT}/mel_golden.txt", "w") as f:
        f.write("# written by tests/ref/gen_mel_golden.py; read by tests/audio/test_mel.c\n")
        f.write("\n".join(meta) + "\n")
    print("\n".join(meta))


if __name__ == "__main__":
    main()
