#!/usr/bin/env python3
"""ref_llama_cpp.py - golden data from llama.cpp (llama-cpp-python) on the same GGUF.

Regenerates tests/data/ref/greedy_cases.txt and the `source llama.cpp` cases of
tests/data/ref/forward_cases.txt (with their logits files):

    ~/.cache/kvlm/venv/bin/python tests/ref/ref_llama_cpp.py [model.gguf]

llama.cpp settings: n_ctx 512, n_threads 2, n_batch 512, seed 1234, default f16
K/V cache, flash attention off (llama-cpp-python's default), no BOS added, no
extra weight buffer types (no AMX/repacking: see load()). Only
the low-level eval() is used and the next token is the argmax of the raw logits
(np.argmax: lowest id on ties), so no sampler setting (temperature, repeat
penalty, ...) can interfere. Generation runs for exactly GEN_LEN tokens, or
stops right after an end-of-generation token (<|endoftext|>, <|im_end|>) if one
is produced first (that token is recorded as the last gen id).

Output formats (tests/data/ref/), '#' starts a comment line:

greedy_cases.txt, one block per case:
    case <name>
    prompt_ids <n> <id> <id> ...
    gen_ids <m> <id> <id> ...
    end
  A comment line before each block gives the smallest top-1 minus top-2 logit
  margin over the generated steps and the step where it occurs: a small margin
  means another engine with slightly different rounding may diverge there.

forward_cases.txt: see ref_forward.py (this script writes the `source llama.cpp`
blocks and keeps the numpy ones), logits files lc_<prompt>.f32: raw
little-endian float32 [n_vocab], llama.cpp's logits at the last prompt position.
"""
import ctypes
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_forward import (DEFAULT_MODEL, FORWARD_PROMPTS, REF_DIR, chatml,  # noqa: E402
                         write_forward_cases)

GEN_LEN = 64
SEED = 1234

# (name, text) of the greedy cases: raw and ChatML-formatted. Chosen so that
# llama.cpp's top-1/top-2 margin stays away from 0 over the 64 steps (printed
# when run and kept as a comment in the file). Rejected, for example: a paragraph
# ending in "religious debates, and" (margin 0.004 at the first step, a coin flip
# for any other engine), "Write a Python function that reverses a string." (0.0009).
GREEDY_PROMPTS = [
    ("capital", "The capital of France is"),
    ("chat_2plus2", chatml("What is 2+2?")),
    ("code_fib", "def fibonacci(n):\n"),
    ("chat_photosyn", chatml("Explain photosynthesis in one paragraph.")),
    ("chat_sky", chatml("Why is the sky blue? Answer in two sentences.")),
    # added for wide margins all along (1.82, 1.07, 0.32, 0.96, 1.12, 0.40): the
    # cases the whole-continuation requirement can rely on whatever the float
    # order of a kernel
    ("count", "1, 2, 3, 4, 5,"),
    ("chat_count", chatml("Count from 1 to 20.")),
    ("chat_capital_it", chatml("What is the capital of Italy?")),
    ("tens", "10, 20, 30, 40,"),
    ("hundreds", "100, 200, 300,"),
    ("chat_list", chatml("Write the numbers from 1 to 10, one per line.")),
]


def load(model_path, **kw):
    """The llama.cpp context. Weights stay in plain CPU buffers
    (use_extra_bufts = false): on this VM the CPU reports AMX, so ggml puts the
    weights in its AMX buffer type, and the first matmul dies with a general
    protection fault on `ldtilecfg` (the hypervisor does not enable tile state).
    llama-cpp-python has no argument for it, so the default-params function that
    Llama.__init__ calls is wrapped."""
    import llama_cpp.llama_cpp as lc
    from llama_cpp import Llama
    orig = lc.llama_model_default_params

    def no_extra_bufts():
        mp = orig()
        mp.use_extra_bufts = False
        return mp
    lc.llama_model_default_params = no_extra_bufts
    args = dict(n_ctx=512, n_threads=2, n_threads_batch=2, n_batch=512, seed=SEED,
                logits_all=False, flash_attn=False, verbose=False)
    args.update(kw)   # ref_gemma3.py: another n_ctx and n_ubatch
    try:
        return Llama(model_path=model_path, **args)
    finally:
        lc.llama_model_default_params = orig


def last_logits(llm):
    """llama.cpp's logits of the last evaluated token: float32 [n_vocab] copy."""
    import llama_cpp
    n_vocab = llm.n_vocab()
    p = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    arr = np.ctypeslib.as_array(ctypes.cast(p, ctypes.POINTER(ctypes.c_float)),
                                shape=(n_vocab,))
    return arr.astype(np.float32).copy()


def run_prompt(llm, ids):
    llm.reset()
    llm.eval(ids)
    return last_logits(llm)


def greedy(llm, ids, eog):
    """Returns (gen_ids, min_margin, step_of_min_margin)."""
    logits = run_prompt(llm, ids)
    gen, min_margin, min_step = [], float("inf"), -1
    for step in range(GEN_LEN):
        tok = int(np.argmax(logits))
        top2 = np.partition(logits, -2)[-2:]
        margin = float(top2[1] - top2[0])
        if margin < min_margin:
            min_margin, min_step = margin, step
        gen.append(tok)
        if tok in eog or step == GEN_LEN - 1:
            break
        llm.eval([tok])
        logits = last_logits(llm)
    return gen, min_margin, min_step


GREEDY_HEADER = """\
# greedy_cases.txt - greedy (argmax of raw logits) continuations from llama.cpp.
# Regenerate: tests/ref/ref_llama_cpp.py. Model: SmolLM2-135M-Instruct.Q4_1.gguf,
# llama.cpp via llama-cpp-python {ver}, n_ctx 512, 2 threads, f16 K/V, no flash attention.
# {gen_len} tokens per case, fewer only if an end-of-generation token came first
# (it is then the last gen id). Format, one block per case:
#   case <name>
#   prompt_ids <n> <id> <id> ...
#   gen_ids <m> <id> <id> ...
#   end
"""


def main():
    import llama_cpp
    model_path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL
    llm = load(model_path)

    def tok(text):
        return list(llm.tokenize(text.encode(), add_bos=False, special=True))

    # Forward cases: last-prompt-position logits.
    cases = []
    for name, text in FORWARD_PROMPTS:
        ids = tok(text)
        logits = run_prompt(llm, ids)
        print(f"forward {name}: {len(ids)} tokens, argmax {int(np.argmax(logits))}")
        cases.append({"name": "lc_" + name, "prompt_ids": ids, "logits": logits})
    write_forward_cases("llama.cpp", cases)

    # Greedy cases.
    eog = {i for i in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(
        llama_cpp.llama_model_get_vocab(llm.model), i)}
    out = [GREEDY_HEADER.format(ver=llama_cpp.__version__, gen_len=GEN_LEN)]
    for name, text in GREEDY_PROMPTS:
        ids = tok(text)
        gen, margin, step = greedy(llm, ids, eog)
        text_out = llm.detokenize(gen).decode("utf-8", errors="replace")
        print(f"greedy {name}: {len(gen)} tokens, min margin {margin:.4f} at step {step}: "
              f"{text_out!r}")
        out.append(f"\n# min top1-top2 margin {margin:.4f} at gen step {step}\n"
                   f"case {name}\n"
                   f"prompt_ids {len(ids)} {' '.join(map(str, ids))}\n"
                   f"gen_ids {len(gen)} {' '.join(map(str, gen))}\n"
                   "end\n")
    with open(os.path.join(REF_DIR, "greedy_cases.txt"), "w") as fh:
        fh.write("".join(out))


if __name__ == "__main__":
    main()
