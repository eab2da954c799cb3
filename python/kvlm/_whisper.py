"""kvlm._whisper - speech to text: Whisper, Transcript, load_audio.

Room: python. Uses only kvlm._capi. A Whisper model is a CTranslate2 WhisperSpec directory
(English-only, float16 or float32: whisper-tiny.en, which scripts/fetch-model.sh whisper
puts in the cache). Audio is any file libsndfile reads (WAV, FLAC, OGG, MP3), mixed to
mono and resampled to 16 kHz by the library, or samples already at 16 kHz.
"""
from __future__ import annotations

import array
import ctypes
import os
from ctypes import POINTER, byref, c_float, c_int64, c_void_p
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Union

from . import _capi as C
from ._api import _Handle, _from_struct, _kv_type, model_path
from ._capi import Error, check, err_buf, lib

ERR_INVALID = C.ENUMS["KVLM_ERR_INVALID"]
SAMPLE_RATE = C.KVLM_SAMPLE_RATE
Audio = Union[str, "os.PathLike[str]", bytes, bytearray, Sequence[float], "array.array[float]"]

_WEIGHTS = {"auto": "KVLM_WEIGHTS_AUTO", "f16": "KVLM_WEIGHTS_F16", "q8_0": "KVLM_WEIGHTS_Q8_0",
            "q8": "KVLM_WEIGHTS_Q8_0", "f32": "KVLM_WEIGHTS_F32"}


@dataclass(frozen=True)
class WhisperInfo:
    """kvlm_whisper_info: the model's geometry and what its K/V cost."""
    name: str
    n_mels: int
    n_audio_ctx: int
    n_text_ctx: int
    n_vocab: int
    d_model: int
    n_head: int
    head_dim: int
    n_ff: int
    n_enc_layer: int
    n_dec_layer: int
    n_params: int
    weights: str
    self_kv_bytes_per_token: int
    cross_kv_bytes_per_window: int
    weight_bytes: int


@dataclass(frozen=True)
class Segment:
    """kvlm_segment: t0, t1 in seconds from the start; text as Whisper wrote it (usually with
    a leading space); tokens and each one's probability; the 30 s window it came from."""
    t0: float
    t1: float
    text: str
    tokens: List[int]
    token_probs: List[float]
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    temperature: float
    window: int


@dataclass(frozen=True)
class TranscribeStats:
    """kvlm_transcribe_stats: positions computed, K/V bytes held, times (seconds)."""
    n_windows: int
    n_enc_positions: int
    n_steps: int
    n_dec_positions: int
    n_cross_positions: int
    n_fallbacks: int
    cross_kv_bytes: int
    self_kv_bytes: int
    t_mel_s: float
    t_encode_s: float
    t_cross_s: float
    t_decode_s: float
    t_enc_conv_s: float
    t_enc_proj_s: float
    t_enc_attn_s: float
    t_enc_ffn_s: float
    audio_s: float
    step_ms: List[float]     # each decoder step's wall time, when asked for (step_times)


def _segment(s: C.Segment) -> Segment:
    n = s.n_tokens
    toks = list(s.tokens[:n]) if n and s.tokens else []
    probs = list(s.token_probs[:n]) if n and s.token_probs else []
    return _from_struct(Segment, s, tokens=toks, token_probs=probs)


class Transcript(_Handle):
    """One transcription: text (every segment's joined), segments, stats, and format()
    for the renderings of `kvlm transcribe --format` (text, json, verbose_json, srt, vtt)."""
    _what = "transcript"

    def __init__(self, p: "ctypes._Pointer[C.Transcript]") -> None:
        self._h = p                          # the POINTER(kvlm_transcript) the calls take
        t = p.contents
        self.text: str = (t.text or b"").decode("utf-8", errors="replace")
        self.segments: List[Segment] = [_segment(t.segments[i]) for i in range(t.n_segments)]
        st = t.stats
        steps = list(st.step_ms[:st.n_steps]) if st.step_ms and st.n_steps > 0 else []
        self.stats: TranscribeStats = _from_struct(TranscribeStats, st, step_ms=steps)

    def format(self, fmt: str = "text") -> str:
        """kvlm_transcript_format: "text" (one line per segment), "json", "verbose_json"
        (OpenAI's shape), "srt" or "vtt" (timestamps need transcribe(timestamps=True))."""
        out, err = c_void_p(), err_buf()
        check(lib.kvlm_transcript_format(self._ptr(), fmt.encode(), byref(out), err, C.ERRLEN), err)
        return C.take_string(out.value)

    def close(self) -> None:
        if self._h:
            lib.kvlm_transcript_free(self._h)
            self._h = None

    def __str__(self) -> str:
        return self.text


def load_audio(audio: Union[str, "os.PathLike[str]", bytes, bytearray]) -> "array.array[float]":
    """The 16 kHz mono samples (floats in [-1, 1]) of an audio file, given as a path or as the
    file's bytes. Bad audio raises Error (KVLM_ERR_FORMAT or KVLM_ERR_UNSUPPORTED)."""
    p, n, err = POINTER(c_float)(), c_int64(), err_buf()
    if isinstance(audio, (bytes, bytearray)):
        data = bytes(audio)
        code = lib.kvlm_audio_load_memory(data, len(data), byref(p), byref(n), err, C.ERRLEN)
    else:
        code = lib.kvlm_audio_load_file(os.fspath(audio).encode(), byref(p), byref(n), err, C.ERRLEN)
    check(code, err)
    try:
        out = array.array("f", bytes(4 * n.value))
        if n.value:
            ctypes.memmove(out.buffer_info()[0], p, 4 * n.value)
        return out
    finally:
        C.free(ctypes.cast(p, c_void_p).value)


def _samples(audio: Audio) -> "array.array[float]":
    if isinstance(audio, (str, os.PathLike, bytes, bytearray)):
        return load_audio(audio)
    if isinstance(audio, array.array) and audio.typecode == "f":
        return audio
    try:
        mv = memoryview(audio)  # type: ignore[arg-type]
        if mv.format == "f":
            return array.array("f", mv.cast("B").tobytes())
    except TypeError:
        pass
    return array.array("f", audio)  # type: ignore[arg-type]


class Whisper(_Handle):
    """A Whisper speech-to-text model (CTranslate2 directory). Per 30 s window the encoder
    runs once and the decoder's cross-attention K/V are projected once into the KV pool.

    >>> w = kvlm.Whisper("whisper")        # the cached whisper-tiny.en, or a directory
    >>> print(w.transcribe("speech.flac").text)
    """
    _what = "whisper model"

    def __init__(self, path: Union[str, "os.PathLike[str]"] = "whisper", *, n_threads: int = 0,
                 weights: str = "auto", kv_type: str = "f32", kv_mem: int = 0, n_jobs: int = 1) -> None:
        """path: a model directory, or "whisper" for the cached tiny.en. weights: "auto" (the
        encoder's f16, the decoder's q8_0), "f16", "q8_0" or "f32". kv_type: the decoder's
        K/V type (f32, f16, bf16, q8). KVLM_ERR_UNSUPPORTED for an int8 or multilingual model,
        KVLM_ERR_FORMAT for a corrupt one, KVLM_ERR_IO for a missing one."""
        if weights not in _WEIGHTS:
            raise Error(ERR_INVALID, f"weights must be auto, f16, q8_0 or f32, not {weights!r}")
        self.path = model_path(path)
        p = lib.kvlm_whisper_default_params()
        p.n_threads, p.weights, p.kv_type = n_threads, C.ENUMS[_WEIGHTS[weights]], _kv_type(kv_type)
        p.kv_mem, p.n_jobs = kv_mem, n_jobs
        h, err = c_void_p(), err_buf()
        check(lib.kvlm_whisper_load(self.path.encode(), byref(p), byref(h), err, C.ERRLEN), err)
        self._h = h.value
        info = C.WhisperInfo()
        lib.kvlm_whisper_get_info(self._h, byref(info))
        self.info: WhisperInfo = _from_struct(WhisperInfo, info)

    def close(self) -> None:
        if self._h:
            lib.kvlm_whisper_free(self._h)
            self._h = None

    def transcribe(self, audio: Audio, *, beam: Optional[int] = None, temperature: Optional[float] = None,
                   temperature_inc: Optional[float] = None, compression_ratio_threshold: Optional[float] = None,
                   logprob_threshold: Optional[float] = None, no_speech_threshold: Optional[float] = None,
                   timestamps: Optional[bool] = None, condition_on_previous_text: Optional[bool] = None,
                   prompt: Optional[str] = None, seed: Optional[int] = None, step_times: bool = False,
                   on_segment: Optional[Callable[[Segment], Any]] = None) -> Transcript:
        """Transcribes audio: a file path, an audio file's bytes, or 16 kHz float samples.
        Options left None keep the library's defaults (kvlm_transcribe_default_params: greedy,
        temperature 0 with fallback steps of 0.2, thresholds 2.4 / -1 / 0.6, no timestamps,
        conditioned on the previous window). on_segment(segment) is called as each segment is
        final, during the call (an exception it raises is raised when the call returns)."""
        samples = _samples(audio)
        p = lib.kvlm_transcribe_default_params()
        opts = dict(beam=beam, temperature=temperature, temperature_inc=temperature_inc,
                    compression_ratio_threshold=compression_ratio_threshold, logprob_threshold=logprob_threshold,
                    no_speech_threshold=no_speech_threshold, timestamps=timestamps,
                    condition_on_previous_text=condition_on_previous_text, seed=seed)
        for k, v in opts.items():
            if v is not None:
                setattr(p, k, v)
        keep = prompt.encode() if prompt is not None else None
        p.prompt, p.step_times = keep, step_times
        raised: List[BaseException] = []

        def trampoline(_user: Optional[int], seg: "ctypes._Pointer[C.Segment]") -> None:
            if raised or on_segment is None:
                return
            try:
                on_segment(_segment(seg.contents))
            except BaseException as e:   # cannot cross the C frames: kept, raised below
                raised.append(e)

        cb = C.ON_SEGMENT(trampoline) if on_segment is not None else C.ON_SEGMENT()
        p.on_segment = cb
        n = len(samples)
        ptr = ctypes.cast(samples.buffer_info()[0], POINTER(c_float)) if n else None
        out, err = POINTER(C.Transcript)(), err_buf()
        check(lib.kvlm_transcribe(self._ptr(), ptr, n, byref(p), byref(out), err, C.ERRLEN), err)
        t = Transcript(out)
        if raised:
            t.close()
            raise raised[0]
        return t
