"""kvlm: a small LLM inference engine in C built around its KV cache, from Python.

The C library (libkvlm.so, built from the checkout by `pip install ./python` and shipped
inside this package) is reached through ctypes: no compiled extension, no dependency.

    import kvlm
    model = kvlm.Model("smollm2")                    # a .gguf path, or a cached known model
    ctx = kvlm.Context(model, n_ctx=2048)
    for piece in ctx.chat([{"role": "user", "content": "Why is the sky blue?"}], stream=True):
        print(piece, end="", flush=True)
    print(ctx.stats().cache)                        # blocks in use, cached, free, prefix hits

    cache = kvlm.Cache(model, 64 << 20)             # one KV pool shared by contexts
    a, b = kvlm.Context(model, cache=cache), kvlm.Context(model, cache=cache)

    w = kvlm.Whisper("whisper")                     # speech to text
    print(w.transcribe("speech.flac").text)

Every failure raises kvlm.Error, whose message is the one the C library wrote.
"""
from ._api import (Cache, CacheStats, Completion, Context, ContextStats, KvGroupStats, Message, Model,
                   ModelInfo, Sampling, Stream, TierStats, cache_dir, model_path)
from ._capi import LIB_PATH, Error
from ._whisper import (SAMPLE_RATE, Segment, TranscribeStats, Transcript, Whisper, WhisperInfo,
                       load_audio)

__version__ = "0.1.0"

__all__ = ["Cache", "CacheStats", "Completion", "Context", "ContextStats", "Error", "KvGroupStats",
           "LIB_PATH", "Message", "Model", "ModelInfo", "SAMPLE_RATE", "Sampling", "Segment", "Stream",
           "TierStats", "TranscribeStats", "Transcript", "Whisper", "WhisperInfo", "cache_dir",
           "load_audio", "model_path", "__version__"]
