"""kvlm._api - the Python face of kvlm's language models: Model, Cache, Context.

Room: python. Uses only kvlm._capi (the C API of include/kvlm.h). What it owns:
  Model    a loaded GGUF file (kvlm_model); every Cache and Context made from it keeps a
           reference to it, and Model.close() first closes them (the C model must outlive them)
  Cache    a KV block pool with a prefix index (kvlm_cache), shared by Contexts; C counts
           references, so closing a Cache leaves it to the Contexts that use it
  Context  one sequence (kvlm_ctx): prefill/decode, logits, fork, statistics, and the
           generation loop of `kvlm run` (sample, stop at end-of-generation, stream the
           text through kvlm's UTF-8 detokenizer)
A Context is used from one thread at a time (the library takes no locks); the C calls
release the GIL while they run.
"""
from __future__ import annotations

import array
import ctypes
import dataclasses
import os
import weakref
from ctypes import byref, c_int32, c_size_t, c_void_p
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Literal, Mapping, Optional, Sequence, Tuple, Union, overload

from . import _capi as C
from ._capi import Error, check, err_buf, lib

ERR_INVALID = C.ENUMS["KVLM_ERR_INVALID"]
ERR_CONTEXT_FULL = C.ENUMS["KVLM_ERR_CONTEXT_FULL"]

Message = Union[Mapping[str, str], Tuple[str, str]]
Tokens = Sequence[int]


# ---- value types -----------------------------------------------------------------------------
def _from_struct(cls: Any, s: ctypes.Structure, **extra: Any) -> Any:
    """A dataclass cls filled from the ctypes struct s, field by field of the same name
    (C strings decoded, arrays as lists); extra gives the fields that need more."""
    vals = {}
    for f in dataclasses.fields(cls):
        if f.name in extra:
            vals[f.name] = extra[f.name]
            continue
        v = getattr(s, f.name)
        if isinstance(v, bytes):
            v = v.decode("utf-8", errors="replace")
        elif isinstance(v, ctypes.Array):
            v = list(v)
        vals[f.name] = v
    return cls(**vals)


@dataclass(frozen=True)
class ModelInfo:
    """kvlm_model_info: a model's geometry (kvlm inspect prints the same)."""
    arch: str
    name: str
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_ctx_train: int
    rope_theta: float
    norm_eps: float
    n_params: int
    file_bytes: int
    bos: int            # -1 when absent
    eos: int
    eot: int
    n_swa: int          # sliding window of the window layers, 0: none
    n_layer_swa: int


@dataclass(frozen=True)
class TierStats:
    """kvlm_tier_stats: one tier below the RAM pool ("disk", "redis")."""
    name: str
    hits: int
    misses: int
    invalid: int
    errors: int
    puts: int
    dropped: int
    evictions: int
    bytes_read: int
    bytes_written: int
    n_items: int
    bytes_stored: int
    load_hist: List[int]
    load_seconds: float


@dataclass(frozen=True)
class CacheStats:
    """kvlm_cache_stats: the block pool (blocks of block_tokens positions)."""
    block_tokens: int
    n_blocks: int
    n_in_use: int       # held by live sequences
    n_cached: int       # held by nobody, kept for prefix hits
    n_free: int
    lookups: int        # prefix-index lookups of full blocks
    hits: int
    evictions: int
    copies: int         # copy-on-write block copies
    bytes_total: int
    bytes_per_token: int
    bytes_per_token_layer: int
    tier_loads: int
    tiers: List[TierStats]


@dataclass(frozen=True)
class KvGroupStats:
    """kvlm_stats.kv_group[i]: the full-attention layers, or the sliding-window ones."""
    n_layer: int
    window: int
    blocks: int
    bytes: int


@dataclass(frozen=True)
class ContextStats:
    """kvlm_stats: a context's token counts, times and K/V memory."""
    n_prompt: int       # tokens given to prefill
    n_reused: int       # of those, taken from the cache
    n_reused_tier: int  # of those, loaded from a tier
    n_prefilled: int
    n_decoded: int
    n_computed: int
    t_prefill_s: float
    t_decode_s: float
    kv_bytes_per_token: int
    kv_bytes_per_token_layer: int
    kv_bytes_used: int
    kv_bytes_reserved: int
    kv_blocks: int
    kv_groups: List[KvGroupStats]
    n_shifts: int
    n_dropped: int
    cache: CacheStats


def _cache_stats(s: C.CacheStats) -> CacheStats:
    tiers = [_from_struct(TierStats, s.tier[i]) for i in range(s.n_tiers)]
    return _from_struct(CacheStats, s, tiers=tiers)


@dataclass(frozen=True)
class Sampling:
    """kvlm_sampler_params: the sampling chain of llama.cpp (repetition penalty, top-k,
    temperature, softmax, top-p, min-p, a seeded draw). The defaults are the C library's
    (kvlm_sampler_default_params; the CLI's, except its seed, which comes from the clock).
    temp <= 0 is greedy (argmax, the lowest id on ties)."""
    temp: float = 0.8
    top_k: int = 40             # <= 0: off
    top_p: float = 0.95         # >= 1: off
    min_p: float = 0.05         # <= 0: off
    repeat_penalty: float = 1.0  # 1: off
    repeat_last_n: int = 64
    seed: int = 0xC0FFEE

    def _c(self) -> C.SamplerParams:
        p = lib.kvlm_sampler_default_params()
        for f in dataclasses.fields(self):
            setattr(p, f.name, getattr(self, f.name))
        return p


@dataclass
class Completion:
    """What one generate() or chat() call produced. str() gives the text."""
    text: str
    tokens: List[int]
    finish_reason: str          # "stop" (end of generation), "length" (max_tokens or a full context)
    prompt_tokens: int          # tokens of the prompt
    cached_tokens: int          # of those, taken from the KV cache instead of computed

    def __str__(self) -> str:
        return self.text


# ---- helpers ---------------------------------------------------------------------------------
def _kv_type(name: Optional[str], same_ok: bool = False) -> int:
    """A K/V type name ("f16", "q8", ...) as kvlm_kv_type; None gives KVLM_KV_SAME when allowed."""
    if name is None and same_ok:
        return C.ENUMS["KVLM_KV_SAME"]
    t = ctypes.c_int()
    if not isinstance(name, str) or not lib.kvlm_kv_type_from_name(name.encode(), byref(t)):
        raise Error(ERR_INVALID, f"unknown K/V type {name!r} (f32, f16, bf16, q8, q4, kivi4, kivi2)")
    return t.value


def _tok_array(tokens: Tokens) -> ctypes.Array:
    return (c_int32 * len(tokens))(*tokens)


def _messages(messages: Sequence[Message]) -> Tuple[ctypes.Array, List[bytes]]:
    """kvlm_chat_msg[] for messages given as {"role", "content"} mappings or (role, content)
    pairs; the bytes list keeps the strings alive while the array is used."""
    keep: List[bytes] = []
    arr = (C.ChatMsg * len(messages))()
    for i, m in enumerate(messages):
        role, content = (m["role"], m["content"]) if isinstance(m, Mapping) else m
        keep += [str(role).encode(), str(content).encode()]
        arr[i].role, arr[i].content = keep[-2], keep[-1]
    return arr, keep


_KNOWN = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": "gemma-3-270m-q4_k_m.gguf",
          "whisper": "whisper-tiny.en"}


def cache_dir() -> str:
    """Where kvlm keeps its models: $KVLM_CACHE, else $XDG_CACHE_HOME/kvlm, else ~/.cache/kvlm
    (as the CLI and scripts/fetch-model.sh)."""
    if os.environ.get("KVLM_CACHE"):
        return os.environ["KVLM_CACHE"]
    xdg = os.environ.get("XDG_CACHE_HOME")
    return os.path.join(xdg, "kvlm") if xdg else os.path.join(os.path.expanduser("~"), ".cache", "kvlm")


def model_path(name_or_path: Union[str, "os.PathLike[str]"]) -> str:
    """A known model name ("smollm2", "gemma3", "whisper") as its path in the cache
    (scripts/fetch-model.sh NAME puts it there; nothing is fetched here); any other value
    is returned as the path it is."""
    s = os.fspath(name_or_path)
    if "/" not in s and s in _KNOWN and not os.path.exists(s):
        return os.path.join(cache_dir(), _KNOWN[s])
    return s


class _Handle:
    """A C handle with a close() that runs once; a closed one raises Error on use."""
    _h: Optional[int] = None
    _what = "object"

    def _ptr(self) -> int:
        if not self._h:
            raise Error(ERR_INVALID, f"the {self._what} is closed")
        return self._h

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:   # interpreter shutdown: the module may be half gone
            pass


# ---- Model ----------------------------------------------------------------------------------
class Model(_Handle):
    """A GGUF model of the llama architecture (or Gemma 3), mmap'd, with its tokenizer and
    chat template. Read-only: any number of Contexts and Caches may use one Model.

    >>> m = kvlm.Model("smollm2")          # or a path to a .gguf file
    >>> ctx = kvlm.Context(m)
    >>> print(ctx.chat([{"role": "user", "content": "Hi"}], max_tokens=16, temp=0))
    """
    _what = "model"

    def __init__(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Loads path (a .gguf file, or a known name: see model_path). A missing file raises
        Error with KVLM_ERR_IO, a corrupt one KVLM_ERR_FORMAT (file, offset and problem in
        the message)."""
        self._deps: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self.path = model_path(path)
        h, err = c_void_p(), err_buf()
        check(lib.kvlm_model_load(self.path.encode(), byref(h), err, C.ERRLEN), err)
        self._h = h.value
        info = C.ModelInfo()
        lib.kvlm_model_get_info(self._h, byref(info))
        self.info: ModelInfo = _from_struct(ModelInfo, info)

    def close(self) -> None:
        """Frees the model, after closing every Context and Cache made from it."""
        if self._h:
            for d in list(self._deps):
                d.close()
            lib.kvlm_model_free(self._h)
            self._h = None

    @property
    def n_vocab(self) -> int:
        return self.info.n_vocab

    def tokenize(self, text: Union[str, bytes], add_bos: bool = True, special: bool = False) -> List[int]:
        """Token ids of text (kvlm_tokenize). With special, special-token texts such as
        "<|im_start|>" become their ids. BOS comes first only if add_bos and the model asks
        for one (SmolLM2 does not)."""
        data = text.encode() if isinstance(text, str) else bytes(text)
        cap = len(data) + 16
        while True:
            out, n, err = (c_int32 * cap)(), c_size_t(), err_buf()
            code = lib.kvlm_tokenize(self._ptr(), data, len(data), add_bos, special, out, cap, byref(n),
                                     err, C.ERRLEN)
            if code == ERR_INVALID and n.value > cap:
                cap = n.value
                continue
            check(code, err)
            return list(out[:n.value])

    def token_to_bytes(self, token: int, special: bool = False) -> bytes:
        """The bytes of one token (maybe part of a UTF-8 character); control tokens give b""
        unless special."""
        cap = 64
        while True:
            buf = ctypes.create_string_buffer(cap)
            n = lib.kvlm_token_to_bytes(self._ptr(), token, special, buf, cap)
            if n < 0:
                raise Error(ERR_INVALID, f"token {token} is not in the vocabulary of {self.n_vocab}")
            if n <= cap:
                return buf.raw[:n]
            cap = n

    def detokenize(self, tokens: Tokens, special: bool = False) -> str:
        """The text of tokens (their bytes joined; invalid UTF-8 becomes U+FFFD)."""
        return b"".join(self.token_to_bytes(t, special) for t in tokens).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        """True for end-of-generation tokens (EOS, EOT, <|im_end|>, ...)."""
        return bool(lib.kvlm_token_is_eog(self._ptr(), token))

    def chat_template(self, messages: Sequence[Message], add_assistant: bool = True) -> str:
        """messages rendered with the model's chat template (kvlm_chat_render): the model's
        default system message first when messages do not start with one and, with
        add_assistant, the opening of the assistant's turn."""
        arr, _keep = _messages(messages)
        out, err = c_void_p(), err_buf()
        check(lib.kvlm_chat_render(self._ptr(), arr, len(messages), add_assistant, byref(out), err, C.ERRLEN),
              err)
        return C.take_string(out.value)

    def kv_bytes_per_token(self, kv_type: str = "f16") -> int:
        """K and V bytes of one position, all layers, for a K/V type."""
        return int(lib.kvlm_kv_bytes_per_token(self._ptr(), _kv_type(kv_type)))

    def __repr__(self) -> str:
        return f"kvlm.Model({self.path!r})"


# ---- Cache ------------------------------------------------------------------------------------
class Cache(_Handle):
    """A KV block pool with a prefix index, to share between Contexts of one model: a
    Context whose prompt starts like one an earlier Context computed takes those blocks
    instead of computing them (automatic prefix caching; logits stay bitwise the same).
    Optional tiers below RAM: a disk directory (cache_dir) and/or Redis."""
    _what = "cache"

    def __init__(self, model: Model, mem_bytes: int = 0, *, n_ctx: int = 0, kv_type: str = "f16",
                 kv_type_v: Optional[str] = None, kv_residual: int = 0,
                 cache_dir: Optional[str] = None, disk_bytes: int = 0, redis: Optional[str] = None,
                 redis_ttl_s: int = 0, write: str = "through", compress: bool = False) -> None:
        """mem_bytes: the K/V budget (0: one sequence of n_ctx tokens, 0 = the model's
        training context). kv_type / kv_type_v: element types of K and V ("f16", "q8", ...;
        V as K by default). cache_dir, redis ("redis://host:port" or "unix:///path"),
        write ("through" or "evict") and compress: the tiers, as kvlm run's --cache-* options.
        Errors: KVLM_ERR_BUDGET below one block, KVLM_ERR_IO for an unusable directory."""
        if write not in ("through", "evict"):
            raise Error(ERR_INVALID, f"write must be 'through' or 'evict', not {write!r}")
        self._model = model
        p = lib.kvlm_cache_default_params()
        p.mem_bytes, p.n_ctx, p.kv_residual = mem_bytes, n_ctx, kv_residual
        p.kv_type, p.kv_type_v = _kv_type(kv_type), _kv_type(kv_type_v, same_ok=True)
        self._strs = [s.encode() if s else None for s in (cache_dir, redis)]
        p.tiers.dir, p.tiers.redis = self._strs
        p.tiers.disk_bytes, p.tiers.redis_ttl_s = disk_bytes, redis_ttl_s
        p.tiers.write = C.ENUMS["KVLM_CACHE_WRITE_EVICT" if write == "evict" else "KVLM_CACHE_WRITE_THROUGH"]
        p.tiers.compress = compress
        h, err = c_void_p(), err_buf()
        check(lib.kvlm_cache_init(model._ptr(), byref(p), byref(h), err, C.ERRLEN), err)
        self._h = h.value
        model._deps.add(self)

    def close(self) -> None:
        """Drops this reference; Contexts using the cache keep theirs."""
        if self._h:
            lib.kvlm_cache_free(self._h)
            self._h = None

    def stats(self) -> CacheStats:
        """Blocks in use, cached and free, prefix hits, evictions, tiers."""
        s = C.CacheStats()
        lib.kvlm_cache_get_stats(self._ptr(), byref(s))
        return _cache_stats(s)

    def flush(self) -> None:
        """Waits until every published block is in every tier (no-op without tiers)."""
        lib.kvlm_cache_flush(self._ptr())


# ---- Context ------------------------------------------------------------------------------------
class Stream(Iterator[str]):
    """The text of a generation as it comes, one piece (whole UTF-8 characters) per token.
    tokens, text and finish_reason grow as it is iterated; result() runs it to the end and
    returns the Completion. A new generate() or any other change to the same Context ends
    an unfinished stream (finish_reason "cancelled")."""

    def __init__(self, ctx: "Context", sampler: int, max_tokens: int, prompt_tokens: int,
                 cached_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.cached_tokens = cached_tokens
        self.tokens: List[int] = []
        self.finish_reason: Optional[str] = None
        self._pieces: List[str] = []
        self._ctx = ctx
        self._max = max_tokens
        self._smp: Optional[int] = sampler     # owned: freed when the stream ends
        self._gen = self._run()

    @property
    def text(self) -> str:
        return "".join(self._pieces)

    def _run(self) -> Iterator[str]:
        ctx, m = self._ctx, self._ctx.model._ptr()
        h = ctx._ptr()
        buf = ctypes.create_string_buffer(4096)
        dt, err, tok = C.Detok(), err_buf(), c_int32()
        finish = "length"
        while self._max < 0 or len(self.tokens) < self._max:
            logits = lib.kvlm_ctx_logits(h)
            if not logits:
                raise Error(ERR_INVALID, "nothing to continue: the context holds no tokens yet")
            t = lib.kvlm_sampler_sample(self._smp, logits)
            if lib.kvlm_token_is_eog(m, t):
                finish = "stop"
                break
            lib.kvlm_sampler_accept(self._smp, t)
            self.tokens.append(t)
            n = lib.kvlm_detok_push(byref(dt), m, t, buf, len(buf))
            if n:
                yield self._piece(buf.raw[:n])
            if len(self.tokens) == self._max:
                break                               # the last token need not be run (as kvlm run)
            tok.value = t
            code = lib.kvlm_ctx_decode(h, byref(tok), 1, err, C.ERRLEN)
            if code == ERR_CONTEXT_FULL and lib.kvlm_ctx_n_past(h) >= lib.kvlm_ctx_n_ctx(h):
                break                               # a full context ends the reply, as in kvlm run
            check(code, err)
        n = lib.kvlm_detok_flush(byref(dt), buf, len(buf))
        self.finish_reason = finish
        if n:
            yield self._piece(buf.raw[:n])

    def _piece(self, b: bytes) -> str:
        s = b.decode("utf-8", errors="replace")
        self._pieces.append(s)
        return s

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> str:
        try:
            return next(self._gen)
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        if self._smp:
            lib.kvlm_sampler_free(self._smp)
            self._smp = None
        if self._ctx._stream is self:
            self._ctx._stream = None

    def close(self) -> None:
        """Stops the generation here (finish_reason "cancelled" if it had not ended)."""
        if self.finish_reason is None:
            self.finish_reason = "cancelled"
        self._gen.close()
        self._release()

    def result(self) -> Completion:
        """Runs the generation to its end; the Completion of all of it."""
        for _ in self:
            pass
        return Completion(self.text, list(self.tokens), self.finish_reason or "cancelled",
                          self.prompt_tokens, self.cached_tokens)

    def __del__(self) -> None:
        try:
            self._release()
        except Exception:
            pass


class Context(_Handle):
    """One sequence over a model: its block table in a KV cache (private, or a shared Cache),
    scratch memory and threads. generate() and chat() are `kvlm run`'s loop; prefill(),
    decode() and logits() are the steps underneath."""
    _what = "context"

    def __init__(self, model: Model, *, n_ctx: int = 0, n_threads: int = 0, cache: Optional[Cache] = None,
                 kv_type: str = "f16", kv_type_v: Optional[str] = None, kv_mem: int = 0, kv_residual: int = 0,
                 no_kv_cache: bool = False, no_prefix_cache: bool = False, cache_ns: int = 0,
                 context_shift: bool = False, n_keep: int = 0, _handle: Optional[int] = None) -> None:
        """n_ctx: the most tokens the sequence holds (0: the model's training context).
        n_threads: 0 = every online core. cache: a shared Cache, or None for a private one
        of kv_mem bytes (0: n_ctx tokens' worth) with K/V types kv_type / kv_type_v.
        no_kv_cache: the O(n^2) baseline. no_prefix_cache: neither publish nor look up
        prefixes. cache_ns: a prefix namespace (no sharing across values). context_shift,
        n_keep: llama.cpp's context shift instead of a full context."""
        self.model = model
        self._cache = cache
        self._stream: Optional[Stream] = None
        if _handle is None:
            p = lib.kvlm_ctx_default_params()
            p.n_ctx, p.n_threads, p.kv_mem, p.kv_residual = n_ctx, n_threads, kv_mem, kv_residual
            p.kv_type, p.kv_type_v = _kv_type(kv_type), _kv_type(kv_type_v, same_ok=True)
            p.cache = cache._ptr() if cache is not None else None
            p.no_kv_cache, p.no_prefix_cache, p.cache_ns = no_kv_cache, no_prefix_cache, cache_ns
            p.context_shift, p.n_keep = context_shift, n_keep
            h, err = c_void_p(), err_buf()
            check(lib.kvlm_ctx_init(model._ptr(), byref(p), byref(h), err, C.ERRLEN), err)
            _handle = h.value
        self._h = _handle
        model._deps.add(self)

    def close(self) -> None:
        """Frees the context (its blocks stay cached in a shared Cache)."""
        if self._h:
            self._end_stream()
            lib.kvlm_ctx_free(self._h)
            self._h = None

    def _end_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    # -- the steps --
    def prefill(self, tokens: Tokens) -> int:
        """Makes the sequence equal to tokens: keeps the longest common prefix with what it
        holds (or a longer one from the shared cache's prefix index) and computes only the
        rest (at least the last token, so that the logits are fresh). Returns how many tokens
        were taken from the cache. KVLM_ERR_CONTEXT_FULL past n_ctx."""
        self._end_stream()
        if not tokens:
            raise Error(ERR_INVALID, "prefill needs at least one token")
        n, err = c_size_t(), err_buf()
        check(lib.kvlm_ctx_prefill(self._ptr(), _tok_array(tokens), len(tokens), byref(n), err, C.ERRLEN), err)
        return n.value

    def decode(self, tokens: Tokens) -> None:
        """Appends tokens to the sequence and runs the model over them (one batch)."""
        self._end_stream()
        if not tokens:
            raise Error(ERR_INVALID, "decode needs at least one token")
        err = err_buf()
        check(lib.kvlm_ctx_decode(self._ptr(), _tok_array(tokens), len(tokens), err, C.ERRLEN), err)

    def logits(self) -> Optional["array.array[float]"]:
        """A copy of the next-token logits after the last token ([n_vocab] floats), or None
        before anything was decoded."""
        p = lib.kvlm_ctx_logits(self._ptr())
        if not p:
            return None
        out = array.array("f", bytes(4 * self.model.n_vocab))
        ctypes.memmove(out.buffer_info()[0], p, 4 * self.model.n_vocab)
        return out

    def truncate(self, n_keep: int) -> None:
        """Drops every token at position >= n_keep."""
        self._end_stream()
        lib.kvlm_ctx_truncate(self._ptr(), n_keep)

    def fork(self) -> "Context":
        """A new Context with this one's sequence and logits that shares its K/V blocks (no
        bytes copied until one of them writes into a shared, partly filled block)."""
        h, err = c_void_p(), err_buf()
        check(lib.kvlm_ctx_fork(self._ptr(), byref(h), err, C.ERRLEN), err)
        return Context(self.model, cache=self._cache, _handle=h.value)

    @property
    def n_past(self) -> int:
        """Tokens in the sequence."""
        return int(lib.kvlm_ctx_n_past(self._ptr()))

    @property
    def n_ctx(self) -> int:
        return int(lib.kvlm_ctx_n_ctx(self._ptr()))

    @property
    def tokens(self) -> List[int]:
        """The sequence's token ids."""
        n = self.n_past
        p = lib.kvlm_ctx_tokens(self._ptr())
        return list(p[:n]) if n else []

    def stats(self) -> ContextStats:
        """Token counts, times, K/V memory of this sequence and its cache's pool."""
        s = C.Stats()
        lib.kvlm_ctx_get_stats(self._ptr(), byref(s))
        groups = [_from_struct(KvGroupStats, s.kv_group[i]) for i in range(s.kv_n_groups)]
        return _from_struct(ContextStats, s, kv_groups=groups, cache=_cache_stats(s.cache))

    def reset_stats(self) -> None:
        lib.kvlm_ctx_reset_stats(self._ptr())

    # -- generation --
    @overload
    def generate(self, prompt: Union[str, bytes, Tokens, None] = ..., max_tokens: int = ...,
                 *, stream: Literal[False] = ..., **kw: Any) -> Completion: ...

    @overload
    def generate(self, prompt: Union[str, bytes, Tokens, None] = ..., max_tokens: int = ...,
                 *, stream: Literal[True], **kw: Any) -> Stream: ...

    def generate(self, prompt: Union[str, bytes, Tokens, None] = None, max_tokens: int = 128, *,
                 stream: bool = False, sampling: Optional[Sampling] = None, temp: Optional[float] = None,
                 top_k: Optional[int] = None, top_p: Optional[float] = None, min_p: Optional[float] = None,
                 repeat_penalty: Optional[float] = None, repeat_last_n: Optional[int] = None,
                 seed: Optional[int] = None, add_bos: bool = True,
                 special: bool = False) -> Union[Completion, Stream]:
        """Continues prompt as plain text (`kvlm run --raw`): prompt is text (tokenized with
        add_bos and special), token ids, or None to continue the sequence as it stands (after
        fork(), say). The prompt is prefilled at once (reusing the cached prefix; errors raise
        here), then up to max_tokens tokens (-1: until the end of generation or a full
        context) are sampled with sampling, whose fields the keyword arguments override.
        stream=False: the Completion; stream=True: a Stream of text pieces."""
        sp = _sampling(sampling, temp=temp, top_k=top_k, top_p=top_p, min_p=min_p,
                       repeat_penalty=repeat_penalty, repeat_last_n=repeat_last_n, seed=seed)
        if isinstance(prompt, (str, bytes)):
            toks: Optional[Tokens] = self.model.tokenize(prompt, add_bos=add_bos, special=special)
            if not toks:
                raise Error(ERR_INVALID, "the prompt is empty")
        else:
            toks = prompt
        self._end_stream()
        smp, err = c_void_p(), err_buf()
        check(lib.kvlm_sampler_init(byref(sp._c()), self.model.n_vocab, byref(smp), err, C.ERRLEN), err)
        try:
            cached = self.prefill(toks) if toks else 0
        except BaseException:
            lib.kvlm_sampler_free(smp.value)
            raise
        s = Stream(self, smp.value, max_tokens, len(toks) if toks else 0, cached)
        self._stream = s
        return s if stream else s.result()

    @overload
    def chat(self, messages: Sequence[Message], max_tokens: int = ..., *,
             stream: Literal[False] = ..., **kw: Any) -> Completion: ...

    @overload
    def chat(self, messages: Sequence[Message], max_tokens: int = ..., *,
             stream: Literal[True], **kw: Any) -> Stream: ...

    def chat(self, messages: Sequence[Message], max_tokens: int = 128, *, stream: bool = False,
             **kw: Any) -> Union[Completion, Stream]:
        """The assistant's reply to messages ({"role", "content"} mappings or (role, content)
        pairs; roles "system", "user", "assistant"), as `kvlm run` gives for one user message:
        the conversation rendered with the chat template, special tokens parsed. The next turn
        passes the whole conversation again; the context keeps what it computed, so only the
        new tokens are computed (Completion.cached_tokens says how many were reused).
        Keyword arguments as for generate()."""
        text = self.model.chat_template(messages, add_assistant=True)
        return self.generate(text, max_tokens, stream=stream, special=True, **kw)  # type: ignore

    def __repr__(self) -> str:
        return f"<kvlm.Context n_past={self.n_past if self._h else 'closed'}>"


def _sampling(base: Optional[Sampling], **overrides: Any) -> Sampling:
    sp = base if base is not None else Sampling()
    changes: Dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(sp, **changes) if changes else sp
