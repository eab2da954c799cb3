"""test_kvlm.py - the kvlm Python package on the real models (issue 17 part 3). Room: tests.

Run by tests/python/python_tests.sh against a copy installed with `pip install ./python`
into a fresh venv. References, none of them the Python code under test:
  * the C compiler: struct sizes, alignments and offsets, enum values and macros, and
    every function's signature (a C file assigning each to a pointer of the binding's type,
    compiled with -Werror);
  * llama.cpp (tests/data/tok/smollm2_golden.json, tests/data/ref/greedy_cases.txt):
    token ids, chat-template prompts and a greedy continuation;
  * the C CLI (build/kvlm, or $KVLM_CLI): greedy and seeded replies (`kvlm run`), forks
    (`run --parallel`), a two-turn chat with its cache counts (`kvlm chat --stats`), a
    shared cache's prefix hits (`kvlm batch`), error messages, transcripts
    (`kvlm transcribe`, text and --json).
Models: the cached SmolLM2-135M-Instruct Q4_1 and whisper-tiny.en (scripts/fetch-model.sh),
audio ../shared/data/jfk.flac (or $KVLM_JFK).
"""
from __future__ import annotations

import ctypes
import importlib.metadata
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

import kvlm
from kvlm import _capi

ROOT = Path(__file__).resolve().parents[2]
CLI = os.environ.get("KVLM_CLI", str(ROOT / "build" / "kvlm"))
MODEL = kvlm.model_path("smollm2")
WHISPER = kvlm.model_path("whisper")
JFK = os.environ.get("KVLM_JFK", str(ROOT.parent / "shared" / "data" / "jfk.flac"))
N_CTX = 2048
THREADS = 2


def need(path: str) -> str:
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing (scripts/fetch-model.sh fetches the models)")
    return path


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], input=stdin, capture_output=True, text=True, timeout=120)


def cli_ok(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    r = cli(*args, stdin=stdin)
    assert r.returncode == 0, f"kvlm {' '.join(args)}: {r.stderr}"
    return r


def cli_run(prompt: str, n: int, *extra: str) -> str:
    """`kvlm run`'s reply: its stdout without the newline run adds."""
    out = cli_ok("run", "-m", MODEL, "-p", prompt, "-n", str(n), "-t", str(THREADS), "-c", str(N_CTX),
                 *extra).stdout
    assert out.endswith("\n")
    return out[:-1]


def cli_error(*args: str) -> str:
    """The message of a failing CLI call: its last stderr line without "kvlm: "."""
    r = cli(*args)
    assert r.returncode == 1, r
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("kvlm: "), line
    return line[len("kvlm: "):]


@pytest.fixture(scope="module")
def model() -> kvlm.Model:
    m = kvlm.Model(need(MODEL))
    yield m
    m.close()


@pytest.fixture
def ctx(model: kvlm.Model) -> kvlm.Context:
    c = kvlm.Context(model, n_ctx=N_CTX, n_threads=THREADS)
    yield c
    c.close()


def golden_tok() -> dict:
    with open(ROOT / "tests" / "data" / "tok" / "smollm2_golden.json") as f:
        return json.load(f)


def greedy_cases() -> dict:
    """tests/data/ref/greedy_cases.txt: name -> (prompt ids, llama.cpp's greedy ids)."""
    cases, name, prompt = {}, None, None
    for line in (ROOT / "tests" / "data" / "ref" / "greedy_cases.txt").read_text().splitlines():
        w = line.split()
        if not w or w[0].startswith("#"):
            continue
        if w[0] == "case":
            name = w[1]
        elif w[0] == "prompt_ids":
            prompt = [int(x) for x in w[2:]]
        elif w[0] == "gen_ids":
            cases[name] = (prompt, [int(x) for x in w[2:]])
    return cases


def cc_run(tmp_path: Path, src: str, run: bool = True) -> subprocess.CompletedProcess:
    c = tmp_path / "check.c"
    c.write_text(src)
    exe = tmp_path / "check"
    args = ["cc", "-std=gnu11", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'include'}", str(c)]
    args += ["-o", str(exe)] if run else ["-fsyntax-only"]
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0 or not run:
        return r
    return subprocess.run([str(exe)], capture_output=True, text=True, check=True)


# ---- the package as installed ---------------------------------------------------------------
def test_installed_copy_with_its_own_library() -> None:
    pkg = Path(kvlm.__file__).resolve().parent
    assert ROOT / "python" not in pkg.parents, f"testing the source tree {pkg}, not an installed copy"
    assert Path(kvlm.LIB_PATH) == pkg / "libkvlm.so"
    # from another directory, with no LD_LIBRARY_PATH: the package's library is the one mapped
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    code = ("import kvlm; maps = open('/proc/self/maps').read(); "
            "print(sorted({l.split()[-1] for l in maps.splitlines() if 'libkvlm' in l}))")
    r = subprocess.run([sys.executable, "-c", code], cwd="/", env=env, capture_output=True, text=True, check=True)
    assert r.stdout.strip() == str([str(pkg / "libkvlm.so")])


def test_version_and_no_runtime_dependency() -> None:
    makefile = (ROOT / "Makefile").read_text()
    somajor = re.search(r"^SOMAJOR := (\S+)", makefile, re.M).group(1)
    version = re.search(r"^VERSION := \$\(SOMAJOR\)\.(\S+)", makefile, re.M).group(1)
    assert kvlm.__version__.startswith(f"{somajor}.{version}.")
    assert importlib.metadata.version("kvlm") == kvlm.__version__
    assert not importlib.metadata.requires("kvlm")
    files = [str(f) for f in importlib.metadata.files("kvlm")]
    assert not [f for f in files if f.endswith((".pyd", ".c")) or re.search(r"\.cpython-.*\.so$", f)]


# ---- the binding against the C header -------------------------------------------------------
def layout_lines() -> List[str]:
    """C statements printing what the binding believes: each struct's size and alignment,
    each field's offset and size, each enum and macro."""
    out = []
    for cls in _capi.STRUCTS:
        if cls._c_name_:
            t, expr = cls._c_name_, f"(({cls._c_name_} *)0)[0]"
            off = lambda f, t=t: f"offsetof({t}, {f})"   # noqa: E731
        else:
            parent, member = cls._c_expr_
            expr = f"(({parent} *)0)->{member}"
            off = lambda f, p=parent, m=member: f"offsetof({p}, {m}.{f}) - offsetof({p}, {m})"  # noqa: E731
        out.append(f'printf("{cls.__name__} %zu %zu\\n", sizeof({expr}), (size_t)__alignof__({expr}));')
        for f, _ in cls._fields_:
            out.append(f'printf("{cls.__name__}.{f} %zu %zu\\n", (size_t)({off(f)}), sizeof({expr}.{f}));')
    for name in _capi.ENUMS:
        out.append(f'printf("{name} %lld\\n", (long long)({name}));')
    return out


def test_struct_layouts_enums_and_macros_match_the_header(tmp_path: Path) -> None:
    src = "#include <stddef.h>\n#include <stdio.h>\n#include <kvlm.h>\nint main(void)\n{\n    "
    src += "\n    ".join(layout_lines()) + "\n    return 0;\n}\n"
    r = cc_run(tmp_path, src)
    c_says = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    py_says = {}
    for cls in _capi.STRUCTS:
        py_says[cls.__name__] = f"{ctypes.sizeof(cls)} {ctypes.alignment(cls)}"
        for f, _ in cls._fields_:
            d = getattr(cls, f)
            py_says[f"{cls.__name__}.{f}"] = f"{d.offset} {d.size}"
    py_says.update({k: str(v) for k, v in _capi.ENUMS.items()})
    assert len(c_says) == len(py_says) > 200
    assert {k: v for k, v in py_says.items() if c_says.get(k) != v} == {}


def header_functions() -> List[str]:
    hdr = (ROOT / "include" / "kvlm.h").read_text()
    return sorted(set(re.findall(r"\b(kvlm_[a-z0-9_]+)\(", hdr)))


def signature_src(funcs: dict) -> str:
    lines = ["#include <kvlm.h>"]
    for name, (ret, args) in funcs.items():
        lines.append(f"{ret} (*const chk_{name})({', '.join(args) or 'void'}) = {name};")
    return "\n".join(lines) + "\n"


def test_every_function_bound_with_the_header_signature(tmp_path: Path) -> None:
    assert sorted(_capi.FUNCS) == header_functions()
    r = cc_run(tmp_path, signature_src(_capi.FUNCS), run=False)
    assert r.returncode == 0, r.stderr
    # the check bites: one argument's constness wrong is a compile error
    wrong = dict(_capi.FUNCS)
    wrong["kvlm_ctx_fork"] = ("kvlm_err", ("kvlm_ctx *", "kvlm_ctx **", "char *", "size_t"))
    assert cc_run(tmp_path, signature_src(wrong), run=False).returncode != 0
    for name, (ret, args) in _capi.FUNCS.items():
        f = getattr(_capi.lib, name)
        assert f.argtypes == [_capi.ctype_of(a) for a in args] and f.restype == _capi.ctype_of(ret), name


def test_docs_python_table_names_exist() -> None:
    """Every class, function, method and attribute docs/python.md's API table names (the
    leading identifier of each `code` span of its first column) exists in the package."""
    rows = [l for l in (ROOT / "docs" / "python.md").read_text().splitlines()
            if l.startswith("| ") and not l.startswith("| Python") and not l.startswith("|---")]
    assert len(rows) >= 6, "the API table of docs/python.md is gone"
    classes = [v for v in vars(kvlm).values() if isinstance(v, type)]

    def known(name: str) -> bool:
        if hasattr(kvlm, name):
            return True
        for c in classes:
            ann = {}
            for k in c.__mro__:
                ann.update(getattr(k, "__annotations__", {}))
            if hasattr(c, name) or name in ann or name in getattr(c, "__slots__", ()):
                return True
            try:                                    # an instance attribute its methods set
                if re.search(rf"\bself\.{name}\b\s*(:[^=]*)?=", inspect.getsource(c)):
                    return True
            except (OSError, TypeError):
                pass
        return False

    names = []
    for row in rows:
        first = row.split("|")[1]
        for span in re.findall(r"`([^`]+)`", first):
            m = re.match(r"\.?([A-Za-z_][A-Za-z0-9_]*)", span)
            if m:
                names.append(m.group(1))
    assert len(names) >= 20, names
    missing = sorted({n for n in names if not known(n)})
    assert not missing, f"docs/python.md names what kvlm does not have: {missing}"


def test_sampling_defaults_are_the_libraries() -> None:
    c = _capi.lib.kvlm_sampler_default_params()
    py = kvlm.Sampling()
    for f, ct in _capi.SamplerParams._fields_:
        want = getattr(c, f)
        got = ct(getattr(py, f)).value   # through the C type: 0.95 as a float
        assert got == want, f


# ---- the model: info, tokenizer, chat template (llama.cpp's ids) ----------------------------
def test_model_info(model: kvlm.Model) -> None:
    g = golden_tok()
    i = model.info
    assert (i.arch, i.n_vocab, i.bos, i.eos) == ("llama", g["n_vocab"], g["bos"], g["eos"])
    assert (i.n_layer, i.n_head, i.n_head_kv, i.head_dim) == (30, 9, 3, 64)
    assert i.file_bytes == os.path.getsize(MODEL)
    assert [t for t in range(16) if model.is_eog(t)] == g["eog"]
    assert model.kv_bytes_per_token("f16") == 2 * 2 * i.n_layer * i.n_head_kv * i.head_dim


def test_tokenize_equals_llama_cpp(model: kvlm.Model) -> None:
    g = golden_tok()
    assert len(g["cases"]) > 50
    for c in g["cases"]:
        text = bytes.fromhex(c["hex"])
        assert model.tokenize(text, add_bos=False, special=True) == c["ids_special"], c["name"]
        assert model.tokenize(text, add_bos=False, special=False) == c["ids_plain"], c["name"]
        joined = b"".join(model.token_to_bytes(t, special=True) for t in c["ids_special"])
        assert joined.hex() == c["decoded_special_hex"], c["name"]
    assert model.tokenize("The capital of France is", add_bos=True) == [504, 3575, 282, 4649, 314]  # no BOS asked
    assert model.detokenize([504, 3575, 282, 4649, 314]) == "The capital of France is"


def test_chat_template_gives_llama_cpp_prompts(model: kvlm.Model) -> None:
    cases = greedy_cases()
    for name, user in (("chat_2plus2", "What is 2+2?"), ("chat_sky", "Why is the sky blue? Answer in two sentences.")):
        text = model.chat_template([{"role": "user", "content": user}])
        assert model.tokenize(text, special=True) == cases[name][0], name
        assert model.chat_template([("user", user)]) == text


# ---- generation against llama.cpp and the CLI -----------------------------------------------
def test_greedy_equals_llama_cpp(ctx: kvlm.Context) -> None:
    prompt, want = greedy_cases()["chat_2plus2"]   # smallest top-1/top-2 margin 0.42
    r = ctx.generate(prompt, 64, temp=0)
    assert want[-1] == 2 and r.tokens == want[:-1] and r.finish_reason == "stop"
    assert (r.prompt_tokens, r.cached_tokens) == (len(prompt), 0)


def test_greedy_raw_equals_cli(ctx: kvlm.Context) -> None:
    prompt = "The capital of France is"
    r = ctx.generate(prompt, 32, temp=0)
    assert r.text == cli_run(prompt, 32, "--raw", "--temp", "0")
    assert r.finish_reason == ("length" if len(r.tokens) == 32 else "stop") and len(r.tokens) > 16
    assert ctx.model.detokenize(r.tokens) == r.text
    run = r.tokens[:-1] if r.finish_reason == "length" else r.tokens   # the last one is not run
    assert ctx.tokens == ctx.model.tokenize(prompt) + run


def test_greedy_chat_equals_cli_and_streams(ctx: kvlm.Context) -> None:
    q = "Why is the sky blue?"
    want = cli_run(q, 24, "--temp", "0")
    r = ctx.chat([{"role": "user", "content": q}], 24, temp=0)
    assert r.text == want and str(r) == want
    ctx2 = kvlm.Context(ctx.model, n_ctx=N_CTX, n_threads=THREADS)
    s = ctx2.chat([{"role": "user", "content": q}], 24, stream=True, temp=0)
    assert isinstance(s, kvlm.Stream) and s.finish_reason is None
    pieces = list(s)
    assert len(pieces) > 10 and "".join(pieces) == want and s.tokens == r.tokens
    assert s.finish_reason == r.finish_reason and s.result().text == want
    ctx2.close()


def test_seeded_sampling_equals_cli(ctx: kvlm.Context) -> None:
    q = "Write a short poem about the sea."
    want = cli_run(q, 24, "--seed", "42")           # the library's defaults, chat template
    got = ctx.chat([{"role": "user", "content": q}], 24, seed=42)
    assert got.text == want
    assert ctx.chat([{"role": "user", "content": q}], 24, seed=4242).text != want   # the seed matters
    raw = "Once upon a time"                         # every parameter set, raw text
    args = dict(temp=1.1, top_k=20, top_p=0.9, min_p=0.02, repeat_penalty=1.15, repeat_last_n=32, seed=7)
    want = cli_run(raw, 32, "--raw", "--temp", "1.1", "--top-k", "20", "--top-p", "0.9", "--min-p", "0.02",
                   "--repeat-penalty", "1.15", "--repeat-last-n", "32", "--seed", "7")
    assert ctx.generate(raw, 32, **args).text == want
    assert ctx.generate(raw, 32, sampling=kvlm.Sampling(**args)).text == want


def test_chat_turns_reuse_the_cache_as_cli_chat(ctx: kvlm.Context) -> None:
    q1, q2 = "Name three colors.", "Which of them is the warmest?"
    r = cli_ok("chat", "-m", MODEL, "-n", "24", "--temp", "0", "-t", str(THREADS), "-c", str(N_CTX), "--stats",
               stdin=f"{q1}\n{q2}\n")
    turns = [tuple(int(x) for x in m) for m in
             re.findall(r"\[turn: (\d+) prompt tokens, (\d+) reused from the KV cache", r.stderr)]
    assert len(turns) == 2
    msgs = [{"role": "user", "content": q1}]
    t1 = ctx.chat(msgs, 24, temp=0)
    msgs += [{"role": "assistant", "content": t1.text}, {"role": "user", "content": q2}]
    t2 = ctx.chat(msgs, 24, temp=0)
    assert r.stdout == f"{t1.text}\n{t2.text}\n"
    assert [(t1.prompt_tokens, t1.cached_tokens), (t2.prompt_tokens, t2.cached_tokens)] == turns
    assert t1.cached_tokens == 0 and t2.cached_tokens > t1.prompt_tokens
    s = ctx.stats()
    assert (s.n_prompt, s.n_reused) == (t1.prompt_tokens + t2.prompt_tokens, t2.cached_tokens)
    assert s.n_prefilled + s.n_decoded <= s.n_computed and s.kv_blocks == -(-ctx.n_past // 16)


def test_fork_shares_blocks_and_equals_cli_parallel(ctx: kvlm.Context) -> None:
    prompt = "Here is a list of twelve animals that live in the ocean, with one fact about each of them:"
    out = cli_ok("run", "-m", MODEL, "-p", prompt, "--raw", "-n", "20", "--parallel", "2", "--seed", "11",
                 "-t", str(THREADS), "-c", str(N_CTX)).stdout
    seqs = re.split(r"\n?--- sequence \d \(seed \d+\) ---\n", out)[1:]
    assert len(seqs) == 2
    toks = ctx.model.tokenize(prompt)
    n_prompt = len(toks)
    assert n_prompt > 16 and n_prompt % 16 != 0       # a partly filled block to share
    ctx.prefill(toks)
    before = ctx.stats()
    f = ctx.fork()
    after = f.stats()
    assert (f.n_past, f.tokens) == (ctx.n_past, ctx.tokens)
    assert after.cache.n_in_use == before.cache.n_in_use == before.kv_blocks   # nothing copied
    assert after.kv_blocks == before.kv_blocks
    a = f.generate(None, 20, seed=11)                # as the CLI: the fork first, the source last
    b = ctx.generate(None, 20, seed=12)
    assert seqs[1].endswith("\n") and [a.text, b.text] == [seqs[0], seqs[1][:-1]]
    st = ctx.stats().cache
    assert st.copies >= 1                           # the shared partial block, copied on write
    assert st.n_in_use < 2 * (-(-(n_prompt + 19) // 16))   # the full blocks stay shared
    f.close()


def test_shared_cache_prefix_hits_as_cli_batch(model: kvlm.Model, tmp_path: Path) -> None:
    system = ("You are a meticulous assistant for a shipping company. " * 6).strip()
    q = "What should I do if a parcel is late?"
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": q, "system": system}) + "\n" +
                                      json.dumps({"prompt": q + " Be brief.", "system": system}) + "\n")
    out = cli_ok("batch", "-m", MODEL, "-f", str(tmp_path / "p.jsonl"), "--temp", "0", "-n", "16",
                 "-t", str(THREADS), "-c", str(N_CTX)).stdout
    res = [json.loads(line) for line in out.splitlines()]
    cache = kvlm.Cache(model, 64 << 20)
    got = []
    for qq in (q, q + " Be brief."):
        c = kvlm.Context(model, cache=cache, n_ctx=N_CTX, n_threads=THREADS)
        r = c.chat([{"role": "system", "content": system}, {"role": "user", "content": qq}], 16, temp=0)
        got.append({"text": r.text, "prompt_tokens": r.prompt_tokens, "cached_tokens": r.cached_tokens})
        c.close()                                  # its blocks stay cached for the next one
    assert got == [{k: x[k] for k in ("text", "prompt_tokens", "cached_tokens")} for x in res]
    assert got[0]["cached_tokens"] == 0 and got[1]["cached_tokens"] >= 64
    st = cache.stats()
    assert st.hits * st.block_tokens == got[1]["cached_tokens"] and st.n_in_use == 0 and st.n_cached > 0
    cache.close()


def test_decode_logits_truncate(ctx: kvlm.Context) -> None:
    assert ctx.logits() is None
    toks = ctx.model.tokenize("The capital of France is")
    ctx.decode(toks)
    lg = ctx.logits()
    assert len(lg) == ctx.model.n_vocab
    assert max(range(len(lg)), key=lg.__getitem__) == 7042   # " Paris", llama.cpp's greedy first token
    ctx.truncate(2)
    assert ctx.tokens == toks[:2]
    assert ctx.prefill(toks) == 2


# ---- errors: kvlm.Error with the library's message ------------------------------------------
def test_errors_carry_the_library_message(model: kvlm.Model, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    missing = str(tmp_path / "missing.gguf")
    for path, code in ((str(bad), "KVLM_ERR_FORMAT"), (missing, "KVLM_ERR_IO")):
        with pytest.raises(kvlm.Error) as e:
            kvlm.Model(path)
        assert e.value.name == code and e.value.message == cli_error("run", "-m", path, "-p", "hi")
        assert str(e.value) == f"{code}: {e.value.message}"
    with pytest.raises(kvlm.Error) as e:
        kvlm.Cache(model, 1000)
    assert e.value.name == "KVLM_ERR_BUDGET" and "block" in e.value.message
    small = kvlm.Context(model, n_ctx=16, n_threads=THREADS)
    with pytest.raises(kvlm.Error) as e:
        small.generate("word " * 40)
    assert e.value.name == "KVLM_ERR_CONTEXT_FULL"
    assert e.value.message == cli_error("run", "-m", MODEL, "-c", "16", "--raw", "-p", "word " * 40, "-t", "2")
    with pytest.raises(kvlm.Error) as e:
        small.decode([model.n_vocab])
    assert e.value.name == "KVLM_ERR_INVALID" and str(model.n_vocab) in e.value.message
    small.close()
    with pytest.raises(kvlm.Error, match="closed"):
        small.decode([1])
    with pytest.raises(kvlm.Error, match="KVLM_ERR_INVALID"):
        kvlm.Context(model, kv_type="f12")
    m2 = kvlm.Model(MODEL)                           # closing a model closes what was made from it
    c2, k2 = kvlm.Context(m2, n_ctx=64), kvlm.Cache(m2, 1 << 20)
    m2.close()
    for use in (lambda: c2.decode([1]), k2.stats, lambda: m2.tokenize("x")):
        with pytest.raises(kvlm.Error, match="closed"):
            use()
    c = kvlm.Context(model, n_ctx=64, n_threads=THREADS)
    with pytest.raises(kvlm.Error) as e:
        c.generate("Hi", 4, min_p=2)                 # refused before anything is computed
    assert e.value.name == "KVLM_ERR_INVALID" and "min_p" in e.value.message and c.n_past == 0
    c.close()
    with pytest.raises(kvlm.Error) as e:
        kvlm.load_audio(str(bad))
    assert e.value.name == "KVLM_ERR_FORMAT" and e.value.message == cli_error("transcribe", str(bad))
    with pytest.raises(kvlm.Error) as e:
        kvlm.Whisper(str(tmp_path))
    assert e.value.message == cli_error("transcribe", "-m", str(tmp_path), need(JFK))


# ---- Whisper ---------------------------------------------------------------------------------
def test_transcribe_equals_cli() -> None:
    w = kvlm.Whisper(need(WHISPER), n_threads=THREADS)
    assert w.info.name == "whisper-tiny.en" and w.info.n_mels == 80
    want = cli_ok("transcribe", need(JFK), "-t", str(THREADS)).stdout
    seen: List[kvlm.Segment] = []
    t = w.transcribe(JFK, on_segment=seen.append)
    assert "".join(s.text.lstrip(" ") + "\n" for s in t.segments) == want
    assert [s.text for s in seen] == [s.text for s in t.segments]
    assert "ask not what your country can do for you" in t.text
    assert t.format("json") == cli_ok("transcribe", JFK, "--json", "-t", str(THREADS)).stdout
    assert t.stats.n_windows == 1 and 10.9 < t.stats.audio_s < 11.1
    seg = t.segments[0]
    assert len(seg.tokens) == len(seg.token_probs) > 10 and 0 <= seg.t0 < seg.t1
    samples = kvlm.load_audio(JFK)
    assert len(samples) == int(round(t.stats.audio_s * kvlm.SAMPLE_RATE))
    assert w.transcribe(samples).text == t.text                      # 16 kHz samples in
    assert kvlm.load_audio(Path(JFK).read_bytes()) == samples         # the file's bytes in
    with pytest.raises(kvlm.Error) as e:
        t.format("yaml")
    assert e.value.name == "KVLM_ERR_INVALID"

    def boom(seg: kvlm.Segment) -> None:
        raise RuntimeError("from the callback")
    with pytest.raises(RuntimeError, match="from the callback"):
        w.transcribe(samples, on_segment=boom)
    t.close()
    w.close()
