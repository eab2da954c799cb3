"""kvlm._capi - the C API of include/kvlm.h through ctypes: structs, signatures, the library.

Room: python (the binding's lowest layer). Knows the header, nothing of the Python API
above it (kvlm/_api.py, kvlm/_whisper.py).

Invariants, checked by python/tests/test_kvlm.py against the C compiler:
  * every Structure here has the size, alignment and field offsets of its C struct
    (``STRUCTS`` lists them with their C names);
  * ``FUNCS`` holds every function kvlm.h declares, with its C signature as text; the
    test assigns each function to a pointer of that type in a C file compiled with
    -Werror, so a wrong argument type fails the build, and the ctypes argtypes are
    derived from the same text (``ctype_of``);
  * the enum values and macros below are the header's.

libkvlm.so is loaded from this package's own directory (the build of
python/setup.py puts it there), never through LD_LIBRARY_PATH or the system's path.
"""
from __future__ import annotations

import ctypes
import os
import re
from ctypes import (CFUNCTYPE, POINTER, Structure, c_bool, c_char, c_char_p, c_double, c_float,
                    c_int, c_int32, c_int64, c_size_t, c_uint64, c_void_p)
from typing import Any, Dict, List, Optional, Tuple

# ---- the header's macros and enums -----------------------------------------------------
KVLM_MAX_TIERS = 2
KVLM_TIER_HIST_BUCKETS = 11
KVLM_TIER_DISK_DEFAULT = 4 << 30
KVLM_KV_RESIDUAL_DEFAULT = 128
KVLM_SAMPLE_RATE = 16000

# name -> value, as in the header (the test prints each with the C compiler)
ENUMS: Dict[str, int] = {
    "KVLM_OK": 0, "KVLM_ERR_IO": 1, "KVLM_ERR_FORMAT": 2, "KVLM_ERR_UNSUPPORTED": 3,
    "KVLM_ERR_NOMEM": 4, "KVLM_ERR_INVALID": 5, "KVLM_ERR_CONTEXT_FULL": 6, "KVLM_ERR_BUDGET": 7,
    "KVLM_KV_SAME": -1, "KVLM_KV_F32": 0, "KVLM_KV_F16": 1, "KVLM_KV_Q8": 2, "KVLM_KV_Q4": 3,
    "KVLM_KV_BF16": 4, "KVLM_KV_KIVI4": 5, "KVLM_KV_KIVI2": 6,
    "KVLM_CACHE_WRITE_THROUGH": 0, "KVLM_CACHE_WRITE_EVICT": 1,
    "KVLM_WEIGHTS_AUTO": 0, "KVLM_WEIGHTS_F16": 1, "KVLM_WEIGHTS_Q8_0": 2, "KVLM_WEIGHTS_F32": 3,
    "KVLM_MAX_TIERS": KVLM_MAX_TIERS, "KVLM_TIER_HIST_BUCKETS": KVLM_TIER_HIST_BUCKETS,
    "KVLM_TIER_DISK_DEFAULT": KVLM_TIER_DISK_DEFAULT, "KVLM_KV_RESIDUAL_DEFAULT": KVLM_KV_RESIDUAL_DEFAULT,
    "KVLM_SAMPLE_RATE": KVLM_SAMPLE_RATE,
}

c_enum = c_int   # the header's enums: int-sized, and kvlm_kv_type holds -1


# ---- structs (field for field the header's; names kept) -----------------------------------
class ModelInfo(Structure):
    _c_name_ = "kvlm_model_info"
    _fields_ = [("arch", c_char_p), ("name", c_char_p),
                ("n_vocab", c_int64), ("n_embd", c_int64), ("n_layer", c_int64), ("n_head", c_int64),
                ("n_head_kv", c_int64), ("head_dim", c_int64), ("n_ff", c_int64), ("n_ctx_train", c_int64),
                ("rope_theta", c_float), ("norm_eps", c_float),
                ("n_params", c_int64), ("file_bytes", c_int64),
                ("bos", c_int32), ("eos", c_int32), ("eot", c_int32),
                ("n_swa", c_int64), ("n_layer_swa", c_int64)]


class Detok(Structure):
    _c_name_ = "kvlm_detok"
    _fields_ = [("pending", c_char * 8), ("n_pending", c_size_t)]


class ChatMsg(Structure):
    _c_name_ = "kvlm_chat_msg"
    _fields_ = [("role", c_char_p), ("content", c_char_p)]


class TierParams(Structure):
    _c_name_ = "kvlm_tier_params"
    _fields_ = [("dir", c_char_p), ("disk_bytes", c_int64), ("redis", c_char_p), ("redis_ttl_s", c_int64),
                ("write", c_enum), ("compress", c_bool)]


class TierStats(Structure):
    _c_name_ = "kvlm_tier_stats"
    _fields_ = [("name", c_char * 8), ("hits", c_int64), ("misses", c_int64), ("invalid", c_int64),
                ("errors", c_int64), ("puts", c_int64), ("dropped", c_int64), ("evictions", c_int64),
                ("bytes_read", c_int64), ("bytes_written", c_int64), ("n_items", c_int64),
                ("bytes_stored", c_int64), ("load_hist", c_int64 * KVLM_TIER_HIST_BUCKETS),
                ("load_seconds", c_double)]


class CacheParams(Structure):
    _c_name_ = "kvlm_cache_params"
    _fields_ = [("mem_bytes", c_size_t), ("n_ctx", c_int64), ("kv_type", c_enum), ("kv_type_v", c_enum),
                ("poison", c_bool), ("kv_residual", c_int64), ("tiers", TierParams)]


class CacheStats(Structure):
    _c_name_ = "kvlm_cache_stats"
    _fields_ = [("block_tokens", c_int64), ("n_blocks", c_int64), ("n_in_use", c_int64),
                ("n_cached", c_int64), ("n_free", c_int64), ("lookups", c_int64), ("hits", c_int64),
                ("evictions", c_int64), ("copies", c_int64), ("bytes_total", c_int64),
                ("bytes_per_token", c_int64), ("bytes_per_token_layer", c_int64), ("tier_loads", c_int64),
                ("n_tiers", c_int), ("tier", TierStats * KVLM_MAX_TIERS)]


class CtxParams(Structure):
    _c_name_ = "kvlm_ctx_params"
    _fields_ = [("n_ctx", c_int64), ("n_threads", c_int), ("no_kv_cache", c_bool), ("kv_type", c_enum),
                ("kv_type_v", c_enum), ("cache", c_void_p), ("kv_mem", c_size_t), ("kv_residual", c_int64),
                ("no_prefix_cache", c_bool), ("cache_ns", c_uint64), ("tiers", TierParams),
                ("context_shift", c_bool), ("n_keep", c_int)]


class KvGroup(Structure):
    """kvlm_stats.kv_group[i]: an anonymous struct in the header."""
    _c_name_ = None
    _c_expr_ = ("kvlm_stats", "kv_group[0]")   # where the C test finds it
    _fields_ = [("n_layer", c_int64), ("window", c_int64), ("blocks", c_int64), ("bytes", c_int64)]


class Stats(Structure):
    _c_name_ = "kvlm_stats"
    _fields_ = [("n_prompt", c_int64), ("n_reused", c_int64), ("n_reused_tier", c_int64),
                ("n_prefilled", c_int64), ("n_decoded", c_int64), ("n_computed", c_int64),
                ("t_prefill_s", c_double), ("t_decode_s", c_double),
                ("kv_bytes_per_token", c_int64), ("kv_bytes_per_token_layer", c_int64),
                ("kv_bytes_used", c_int64), ("kv_bytes_reserved", c_int64), ("kv_blocks", c_int64),
                ("kv_n_groups", c_int32), ("kv_group", KvGroup * 2),
                ("n_shifts", c_int64), ("n_dropped", c_int64), ("cache", CacheStats)]


class SamplerParams(Structure):
    _c_name_ = "kvlm_sampler_params"
    _fields_ = [("temp", c_float), ("top_k", c_int32), ("top_p", c_float), ("min_p", c_float),
                ("repeat_penalty", c_float), ("repeat_last_n", c_int32), ("seed", c_uint64)]


class WhisperParams(Structure):
    _c_name_ = "kvlm_whisper_params"
    _fields_ = [("n_threads", c_int), ("weights", c_enum), ("kv_type", c_enum), ("kv_mem", c_size_t),
                ("n_jobs", c_int)]


class WhisperInfo(Structure):
    _c_name_ = "kvlm_whisper_info"
    _fields_ = [("name", c_char_p), ("n_mels", c_int64), ("n_audio_ctx", c_int64), ("n_text_ctx", c_int64),
                ("n_vocab", c_int64), ("d_model", c_int64), ("n_head", c_int64), ("head_dim", c_int64),
                ("n_ff", c_int64), ("n_enc_layer", c_int64), ("n_dec_layer", c_int64), ("n_params", c_int64),
                ("weights", c_char_p), ("self_kv_bytes_per_token", c_int64),
                ("cross_kv_bytes_per_window", c_int64), ("weight_bytes", c_int64)]


class Segment(Structure):
    _c_name_ = "kvlm_segment"
    _fields_ = [("t0", c_double), ("t1", c_double), ("text", c_char_p), ("tokens", POINTER(c_int32)),
                ("n_tokens", c_int64), ("token_probs", POINTER(c_float)), ("avg_logprob", c_float),
                ("compression_ratio", c_float), ("no_speech_prob", c_float), ("temperature", c_float),
                ("window", c_int64)]


class TranscribeStats(Structure):
    _c_name_ = "kvlm_transcribe_stats"
    _fields_ = [("n_windows", c_int64), ("n_enc_positions", c_int64), ("n_steps", c_int64),
                ("n_dec_positions", c_int64), ("n_cross_positions", c_int64), ("n_fallbacks", c_int64),
                ("cross_kv_bytes", c_int64), ("self_kv_bytes", c_int64),
                ("t_mel_s", c_double), ("t_encode_s", c_double), ("t_cross_s", c_double), ("t_decode_s", c_double),
                ("t_enc_conv_s", c_double), ("t_enc_proj_s", c_double), ("t_enc_attn_s", c_double),
                ("t_enc_ffn_s", c_double), ("audio_s", c_double), ("step_ms", POINTER(c_double))]


class Transcript(Structure):
    _c_name_ = "kvlm_transcript"
    _fields_ = [("segments", POINTER(Segment)), ("n_segments", c_int64), ("text", c_char_p),
                ("stats", TranscribeStats)]


# void (*on_segment)(void *user, const kvlm_segment *seg)
ON_SEGMENT = CFUNCTYPE(None, c_void_p, POINTER(Segment))


class TranscribeParams(Structure):
    _c_name_ = "kvlm_transcribe_params"
    _fields_ = [("beam", c_int), ("temperature", c_float), ("temperature_inc", c_float),
                ("compression_ratio_threshold", c_float), ("logprob_threshold", c_float),
                ("no_speech_threshold", c_float), ("timestamps", c_bool),
                ("condition_on_previous_text", c_bool), ("prompt", c_char_p), ("seed", c_uint64),
                ("no_cross_cache", c_bool), ("no_kv_cache", c_bool), ("step_times", c_bool),
                ("on_segment", ON_SEGMENT), ("user", c_void_p)]


STRUCTS: List[type] = [ModelInfo, Detok, ChatMsg, TierParams, TierStats, CacheParams, CacheStats, CtxParams,
                       KvGroup, Stats, SamplerParams, WhisperParams, WhisperInfo, Segment, TranscribeStats,
                       Transcript, TranscribeParams]

# ---- functions: name -> (return type, argument types), as C text ---------------------------
FUNCS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "kvlm_err_name": ("const char *", ("kvlm_err",)),
    "kvlm_model_load": ("kvlm_err", ("const char *", "kvlm_model **", "char *", "size_t")),
    "kvlm_model_free": ("void", ("kvlm_model *",)),
    "kvlm_model_get_info": ("void", ("const kvlm_model *", "kvlm_model_info *")),
    "kvlm_tokenize": ("kvlm_err", ("const kvlm_model *", "const char *", "size_t", "bool", "bool",
                                   "kvlm_token *", "size_t", "size_t *", "char *", "size_t")),
    "kvlm_token_to_bytes": ("int64_t", ("const kvlm_model *", "kvlm_token", "bool", "char *", "size_t")),
    "kvlm_detok_push": ("size_t", ("kvlm_detok *", "const kvlm_model *", "kvlm_token", "char *", "size_t")),
    "kvlm_detok_flush": ("size_t", ("kvlm_detok *", "char *", "size_t")),
    "kvlm_token_is_eog": ("bool", ("const kvlm_model *", "kvlm_token")),
    "kvlm_chat_render": ("kvlm_err", ("const kvlm_model *", "const kvlm_chat_msg *", "size_t", "bool",
                                      "char **", "char *", "size_t")),
    "kvlm_kv_type_name": ("const char *", ("kvlm_kv_type",)),
    "kvlm_kv_type_from_name": ("bool", ("const char *", "kvlm_kv_type *")),
    "kvlm_cache_default_params": ("kvlm_cache_params", ()),
    "kvlm_cache_init": ("kvlm_err", ("const kvlm_model *", "const kvlm_cache_params *", "kvlm_cache **",
                                     "char *", "size_t")),
    "kvlm_cache_free": ("void", ("kvlm_cache *",)),
    "kvlm_cache_flush": ("void", ("kvlm_cache *",)),
    "kvlm_cache_get_stats": ("void", ("const kvlm_cache *", "kvlm_cache_stats *")),
    "kvlm_kv_bytes_sequence": ("int64_t", ("const kvlm_model *", "kvlm_kv_type", "int64_t", "bool")),
    "kvlm_kv_bytes_per_token": ("int64_t", ("const kvlm_model *", "kvlm_kv_type")),
    "kvlm_ctx_default_params": ("kvlm_ctx_params", ()),
    "kvlm_ctx_init": ("kvlm_err", ("const kvlm_model *", "const kvlm_ctx_params *", "kvlm_ctx **",
                                   "char *", "size_t")),
    "kvlm_ctx_free": ("void", ("kvlm_ctx *",)),
    "kvlm_ctx_decode": ("kvlm_err", ("kvlm_ctx *", "const kvlm_token *", "size_t", "char *", "size_t")),
    "kvlm_ctx_prefill": ("kvlm_err", ("kvlm_ctx *", "const kvlm_token *", "size_t", "size_t *",
                                      "char *", "size_t")),
    "kvlm_ctx_decode_all": ("kvlm_err", ("kvlm_ctx *", "const kvlm_token *", "size_t", "float *",
                                         "char *", "size_t")),
    "kvlm_ctx_truncate": ("void", ("kvlm_ctx *", "size_t")),
    "kvlm_ctx_fill_zero": ("kvlm_err", ("kvlm_ctx *", "size_t", "char *", "size_t")),
    "kvlm_ctx_fork": ("kvlm_err", ("const kvlm_ctx *", "kvlm_ctx **", "char *", "size_t")),
    "kvlm_ctx_logits": ("const float *", ("const kvlm_ctx *",)),
    "kvlm_ctx_n_past": ("size_t", ("const kvlm_ctx *",)),
    "kvlm_ctx_n_ctx": ("size_t", ("const kvlm_ctx *",)),
    "kvlm_ctx_tokens": ("const kvlm_token *", ("const kvlm_ctx *",)),
    "kvlm_ctx_get_stats": ("void", ("const kvlm_ctx *", "kvlm_stats *")),
    "kvlm_ctx_reset_stats": ("void", ("kvlm_ctx *",)),
    "kvlm_sampler_default_params": ("kvlm_sampler_params", ()),
    "kvlm_sampler_init": ("kvlm_err", ("const kvlm_sampler_params *", "int64_t", "kvlm_sampler **",
                                       "char *", "size_t")),
    "kvlm_sampler_free": ("void", ("kvlm_sampler *",)),
    "kvlm_sampler_sample": ("kvlm_token", ("kvlm_sampler *", "const float *")),
    "kvlm_sampler_accept": ("void", ("kvlm_sampler *", "kvlm_token")),
    "kvlm_sampler_reset": ("void", ("kvlm_sampler *",)),
    "kvlm_whisper_default_params": ("kvlm_whisper_params", ()),
    "kvlm_whisper_load": ("kvlm_err", ("const char *", "const kvlm_whisper_params *", "kvlm_whisper **",
                                       "char *", "size_t")),
    "kvlm_whisper_free": ("void", ("kvlm_whisper *",)),
    "kvlm_whisper_get_info": ("void", ("const kvlm_whisper *", "kvlm_whisper_info *")),
    "kvlm_audio_load_file": ("kvlm_err", ("const char *", "float **", "int64_t *", "char *", "size_t")),
    "kvlm_audio_load_memory": ("kvlm_err", ("const void *", "size_t", "float **", "int64_t *",
                                            "char *", "size_t")),
    "kvlm_transcript_free": ("void", ("kvlm_transcript *",)),
    "kvlm_transcribe_default_params": ("kvlm_transcribe_params", ()),
    "kvlm_transcribe": ("kvlm_err", ("kvlm_whisper *", "const float *", "int64_t",
                                     "const kvlm_transcribe_params *", "kvlm_transcript **",
                                     "char *", "size_t")),
    "kvlm_wjob_create": ("kvlm_err", ("kvlm_whisper *", "const float *", "int64_t",
                                      "const kvlm_transcribe_params *", "kvlm_wjob **", "char *", "size_t")),
    "kvlm_wjob_step": ("kvlm_err", ("kvlm_whisper *", "kvlm_wjob *const *", "int", "char *", "size_t")),
    "kvlm_wjob_done": ("bool", ("const kvlm_wjob *",)),
    "kvlm_wjob_error": ("kvlm_err", ("const kvlm_wjob *", "char *", "size_t")),
    "kvlm_wjob_take": ("kvlm_transcript *", ("kvlm_wjob *",)),
    "kvlm_wjob_free": ("void", ("kvlm_wjob *",)),
    "kvlm_transcript_format": ("kvlm_err", ("const kvlm_transcript *", "const char *", "char **",
                                            "char *", "size_t")),
}

# handles the header keeps opaque: a pointer to one is a c_void_p
_OPAQUE = {"kvlm_model", "kvlm_ctx", "kvlm_sampler", "kvlm_cache", "kvlm_whisper", "kvlm_wjob"}
_SCALARS: Dict[str, Any] = {
    "kvlm_err": c_enum, "kvlm_kv_type": c_enum, "kvlm_token": c_int32, "size_t": c_size_t,
    "int64_t": c_int64, "uint64_t": c_uint64, "int": c_int, "bool": c_bool, "float": c_float,
    "double": c_double,
}
_STRUCT_BY_C = {s._c_name_: s for s in STRUCTS if s._c_name_}


def ctype_of(decl: str) -> Any:
    """The ctypes type of a C type written as in kvlm.h ("const kvlm_model *", "char **").

    Opaque handles are c_void_p; "const char *" is c_char_p (a NUL-terminated input);
    "char *" is a caller's buffer (POINTER(c_char)); "char **" receives a malloc'd string
    (POINTER(c_void_p), freed with libc's free after it is read)."""
    plain = re.sub(r"\bconst\b", " ", decl)
    stars = plain.count("*")
    base = plain.replace("*", " ").split()
    if len(base) != 1:
        raise ValueError(f"cannot map C type {decl!r}")
    name = base[0]
    if name == "void":
        if stars == 0:
            return None
        t, stars = c_void_p, stars - 1
    elif name == "char":
        if stars == 1:
            return c_char_p if decl.strip().startswith("const") else POINTER(c_char)
        if stars == 2:
            return POINTER(c_void_p)
        raise ValueError(f"cannot map C type {decl!r}")
    elif name in _OPAQUE:
        if stars == 0:
            raise ValueError(f"opaque {name} by value")
        t, stars = c_void_p, stars - 1
    elif name in _SCALARS:
        t = _SCALARS[name]
    elif name in _STRUCT_BY_C:
        t = _STRUCT_BY_C[name]
    else:
        raise ValueError(f"unknown C type {decl!r}")
    for _ in range(stars):
        t = POINTER(t)
    return t


# ---- the library ---------------------------------------------------------------------------
LIB_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libkvlm.so")


def _load() -> ctypes.CDLL:
    if not os.path.exists(LIB_PATH):
        raise ImportError(f"kvlm: {LIB_PATH} is missing: the package was not built with its library "
                          "(install it with `pip install ./python` from a kvlm checkout)")
    lib = ctypes.CDLL(LIB_PATH)
    for name, (ret, args) in FUNCS.items():
        f = getattr(lib, name)
        f.restype = ctype_of(ret)
        f.argtypes = [ctype_of(a) for a in args]
    return lib


lib = _load()
_libc = ctypes.CDLL(None)
_libc.free.argtypes = [c_void_p]
_libc.free.restype = None

ERRLEN = 1024


def err_buf() -> ctypes.Array:
    """A fresh error buffer of ERRLEN bytes for a call's (err, errlen)."""
    return ctypes.create_string_buffer(ERRLEN)


def take_string(p: Optional[int]) -> str:
    """The UTF-8 text of a malloc'd C string (a char ** out), which is then freed."""
    if not p:
        return ""
    try:
        return ctypes.string_at(p).decode("utf-8", errors="replace")
    finally:
        _libc.free(p)


def free(p: Optional[int]) -> None:
    """libc's free, for what the library malloc'd for the caller (audio samples)."""
    if p:
        _libc.free(p)


# ---- errors ----------------------------------------------------------------------------------
class Error(Exception):
    """A kvlm call failed: ``code`` is the kvlm_err value, ``name`` its stable name
    ("KVLM_ERR_FORMAT"), ``message`` the one line the library wrote into its error buffer.
    ``str(error)`` is "NAME: message"."""

    def __init__(self, code: int, message: str) -> None:
        self.code = int(code)
        self.name = err_name(self.code)
        self.message = message
        super().__init__(f"{self.name}: {message}")


def err_name(code: int) -> str:
    """kvlm_err_name(): "KVLM_ERR_IO" for 1, and so on."""
    return lib.kvlm_err_name(code).decode()


def check(code: int, err: ctypes.Array) -> None:
    """Raises Error(code, the text in err) unless code is KVLM_OK."""
    if code != 0:
        raise Error(code, err.value.decode("utf-8", errors="replace"))
