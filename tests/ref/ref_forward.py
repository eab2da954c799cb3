#!/usr/bin/env python3
"""ref_forward.py - an independent numpy reference of the llama forward pass.

Regenerates the `source numpy` cases of tests/data/ref/forward_cases.txt and
their logits files:

    ~/.cache/kvlm/venv/bin/python tests/ref/ref_forward.py [--check-f32] [model.gguf]

The weights are read with gguf.GGUFReader and dequantized with
gguf.quants.dequantize (no kvlm code involved); the whole prompt is recomputed
in one pass (no KV cache) in float64, and the logits of the last position are
written. The prompt ids come from llama.cpp's tokenizer (llama-cpp-python,
vocab_only) when it is installed, checked against HF tokenizers built from the
GGUF vocabulary (which is the fallback source without llama-cpp-python).

With --check-f32, the script also verifies the numpy forward itself: it writes
an F32 copy of the GGUF (the same dequantized weights) to a temporary file, runs
llama.cpp on it with F32 K/V (so llama.cpp rounds no activations) and prints the
max abs logit difference (measured: <= 2.5e-5 on all four prompts).

If tests/data/ref/forward_cases.txt also holds `source llama.cpp` cases (written
by ref_llama_cpp.py) for the same prompt ids, the max abs logit difference
numpy vs llama.cpp is printed.

Output format (tests/data/ref/forward_cases.txt), one block per case:

    case <name>
    prompt_ids <n> <id> <id> ...
    logits <file relative to tests/data/ref/: raw little-endian float32 [n_vocab]>
    source numpy|llama.cpp
    end

Lines starting with '#' are comments. This script rewrites only the blocks whose
source is numpy and keeps the others (ref_llama_cpp.py does the converse), so
the two scripts can be re-run in any order.

Shapes (SmolLM2-135M): n_embd 576, n_layer 30, n_head 9, n_head_kv 3,
head_dim 64, n_ff 1536, n_vocab 49152. The GGUF stores Q/K rows permuted for
llama, so RoPE rotates adjacent pairs (x[2i], x[2i+1]) by pos * theta^(-2i/head_dim).
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
REF_DIR = os.path.join(REPO, "tests", "data", "ref")
CASES_FILE = os.path.join(REF_DIR, "forward_cases.txt")
DEFAULT_MODEL = os.path.expanduser("~/.cache/kvlm/SmolLM2-135M-Instruct.Q4_1.gguf")

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def chatml(user):
    """The SmolLM2 chat template with its default system message."""
    return ("<|im_start|>system\n" + SYSTEM + "<|im_end|>\n"
            "<|im_start|>user\n" + user + "<|im_end|>\n"
            "<|im_start|>assistant\n")


PARAGRAPH = (
    "The history of the printing press begins in the middle of the fifteenth "
    "century, when Johannes Gutenberg combined movable metal type, oil-based ink "
    "and a wooden press adapted from those used to make wine. Before his "
    "invention, books were copied by hand, a slow and expensive process that "
    "kept them out of reach for most people. Within a few decades, printing "
    "shops had spread to more than two hundred cities across Europe, and "
    "millions of volumes were in circulation. Cheaper books helped spread "
    "literacy, new scientific ideas and religious debates. For all of these "
    "reasons, historians often call the printing press one of the most "
    "important inventions in human"
)

# (name, text) of the forward cases; both reference scripts use this list.
# Each prompt's next token is clear: the top-1/top-2 logit margin is >= 0.6 in
# both references (capital 2.5, chat_2plus2 0.63, code_fib 0.71, paragraph 6.4),
# well above the ~0.6-0.8 max logit difference between two correct
# implementations, so "same argmax" is a fair test. (Rejected: "def
# fibonacci(n):\n" alone, margin 0.07 in numpy; a paragraph ending in
# "religious debates, and", margin 0.004 in llama.cpp.)
FORWARD_PROMPTS = [
    ("capital", "The capital of France is"),
    ("chat_2plus2", chatml("What is 2+2?")),
    ("code_fib", 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n'),
    ("paragraph", PARAGRAPH),
]


# ---- tokenization ------------------------------------------------------------------
def tokenize_all(model_path, texts):
    """Token ids for each text, no BOS (the model does not add one), with
    special-token texts such as <|im_start|> turned into their ids.
    llama.cpp's tokenizer is the source when llama-cpp-python is installed; a
    second, independent tokenizer (HF `tokenizers` built from the GGUF's vocab and
    merges) checks it, and is the source when llama.cpp is missing.
    (transformers' AutoTokenizer(gguf_file=...) would be the obvious second
    choice, but its GGUF loader requires torch, which the venv does not have.)"""
    ids_lc = None
    try:
        import llama_cpp  # noqa: F401
        ids_lc = tokenize_llama_cpp(model_path, texts)
    except ImportError:
        pass
    ids_hf = tokenize_hf(model_path, texts)
    if ids_lc is not None:
        for t, a, b in zip(texts, ids_lc, ids_hf):
            if a != b:
                print(f"WARNING: tokenizers disagree on {t!r}:\n  llama.cpp  {a}\n"
                      f"  tokenizers {b}", file=sys.stderr)
    print(f"prompt ids from {'llama.cpp' if ids_lc is not None else 'tokenizers'}",
          file=sys.stderr)
    return ids_lc if ids_lc is not None else ids_hf


def tokenize_llama_cpp(model_path, texts):
    from llama_cpp import Llama
    llm = Llama(model_path=model_path, vocab_only=True, verbose=False)
    return [list(llm.tokenize(t.encode(), add_bos=False, special=True)) for t in texts]


def tokenize_hf(model_path, texts):
    """GPT-2 byte-level BPE with SmolLM's pre-tokenizer (every digit on its own,
    then the GPT-2 split), built with HF tokenizers from the GGUF vocabulary."""
    import gguf
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    r = gguf.GGUFReader(model_path)
    toks = r.fields["tokenizer.ggml.tokens"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    merges = r.fields["tokenizer.ggml.merges"].contents()
    tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(toks)},
                              merges=[tuple(m.split(" ", 1)) for m in merges]))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    CONTROL = 3  # llama.cpp's token type for control tokens such as <|im_start|>
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False)
                           for t, ty in zip(toks, types) if ty == CONTROL])
    return [tk.encode(t, add_special_tokens=False).ids for t in texts]


# ---- the model ---------------------------------------------------------------------
class Model:
    def __init__(self, path):
        import gguf
        r = gguf.GGUFReader(path)
        f = r.fields

        def val(key):
            return f[key].contents()

        assert val("general.architecture") == "llama"
        self.n_layer = int(val("llama.block_count"))
        self.n_embd = int(val("llama.embedding_length"))
        self.n_head = int(val("llama.attention.head_count"))
        self.n_head_kv = int(val("llama.attention.head_count_kv"))
        self.head_dim = self.n_embd // self.n_head
        self.theta = float(val("llama.rope.freq_base"))
        self.eps = float(val("llama.attention.layer_norm_rms_epsilon"))
        tensors = {t.name: t for t in r.tensors}

        def W(name):
            """Dequantized tensor as float32, numpy shape [rows][cols] (ggml's
            ne[1], ne[0]): a matrix maps cols inputs to rows outputs."""
            t = tensors[name]
            return np.ascontiguousarray(gguf.quants.dequantize(t.data, t.tensor_type),
                                        dtype=np.float32)

        self.tok_embd = W("token_embd.weight")                      # [n_vocab][n_embd]
        # Tied embeddings: no output.weight in this file.
        self.output = W("output.weight") if "output.weight" in tensors else self.tok_embd
        self.output_norm = W("output_norm.weight")                  # [n_embd]
        self.layers = []
        for il in range(self.n_layer):
            p = f"blk.{il}."
            self.layers.append(dict(
                attn_norm=W(p + "attn_norm.weight"),                # [n_embd]
                wq=W(p + "attn_q.weight"),                          # [n_head*head_dim][n_embd]
                wk=W(p + "attn_k.weight"),                          # [n_head_kv*head_dim][n_embd]
                wv=W(p + "attn_v.weight"),                          # [n_head_kv*head_dim][n_embd]
                wo=W(p + "attn_output.weight"),                     # [n_embd][n_head*head_dim]
                ffn_norm=W(p + "ffn_norm.weight"),                  # [n_embd]
                w_gate=W(p + "ffn_gate.weight"),                    # [n_ff][n_embd]
                w_up=W(p + "ffn_up.weight"),                        # [n_ff][n_embd]
                w_down=W(p + "ffn_down.weight"),                    # [n_embd][n_ff]
            ))
        self.n_vocab = self.output.shape[0]

    def rmsnorm(self, x, w):
        # x: [n_tok][n_embd]
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x):
        """x: [n_tok][n_heads][head_dim]; rotates (x[2i], x[2i+1]) at position p
        by angle p * theta^(-2i/head_dim)."""
        n_tok, hd = x.shape[0], self.head_dim
        freq = self.theta ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)   # [hd/2]
        ang = np.arange(n_tok, dtype=np.float64)[:, None] * freq[None, :]    # [n_tok][hd/2]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out

    def forward(self, ids):
        """Logits [n_vocab] (float64) of the token after ids[-1]."""
        n_tok, hd = len(ids), self.head_dim
        group = self.n_head // self.n_head_kv
        x = self.tok_embd[np.asarray(ids)].astype(np.float64)         # [n_tok][n_embd]
        mask = np.triu(np.full((n_tok, n_tok), -np.inf), k=1)         # causal
        for L in self.layers:
            # attention
            h = self.rmsnorm(x, L["attn_norm"])
            q = (h @ L["wq"].T.astype(np.float64)).reshape(n_tok, self.n_head, hd)
            k = (h @ L["wk"].T.astype(np.float64)).reshape(n_tok, self.n_head_kv, hd)
            v = (h @ L["wv"].T.astype(np.float64)).reshape(n_tok, self.n_head_kv, hd)
            q, k = self.rope(q), self.rope(k)
            att_out = np.empty((n_tok, self.n_head, hd))
            for hh in range(self.n_head):
                kh = hh // group                                       # GQA: shared KV head
                s = q[:, hh, :] @ k[:, kh, :].T / np.sqrt(hd) + mask   # [n_tok][n_tok]
                s = np.exp(s - s.max(axis=-1, keepdims=True))
                s /= s.sum(axis=-1, keepdims=True)
                att_out[:, hh, :] = s @ v[:, kh, :]
            x = x + att_out.reshape(n_tok, -1) @ L["wo"].T.astype(np.float64)
            # SwiGLU feed-forward
            h = self.rmsnorm(x, L["ffn_norm"])
            g = h @ L["w_gate"].T.astype(np.float64)
            u = h @ L["w_up"].T.astype(np.float64)
            x = x + (g / (1.0 + np.exp(-g)) * u) @ L["w_down"].T.astype(np.float64)
        h = self.rmsnorm(x[-1:], self.output_norm)                    # [1][n_embd]
        return (h @ self.output.T.astype(np.float64))[0]               # [n_vocab]


# ---- the case file (shared with ref_llama_cpp.py) -------------------------------------
def read_forward_cases(path=CASES_FILE):
    """List of dicts {name, prompt_ids, logits, source}."""
    cases, cur = [], None
    if not os.path.exists(path):
        return cases
    with open(path) as fh:
        for line in fh:
            w = line.split()
            if not w or w[0].startswith("#"):
                continue
            if w[0] == "case":
                cur = {"name": w[1]}
            elif w[0] == "prompt_ids":
                cur["prompt_ids"] = [int(t) for t in w[2:]]
                assert len(cur["prompt_ids"]) == int(w[1])
            elif w[0] in ("logits", "source"):
                cur[w[0]] = w[1]
            elif w[0] == "end":
                cases.append(cur)
                cur = None
    return cases


FORWARD_HEADER = """\
# forward_cases.txt - last-position logits of whole prompts, from independent references.
# Regenerate: tests/ref/ref_forward.py (source numpy), tests/ref/ref_llama_cpp.py (source llama.cpp).
# Model: SmolLM2-135M-Instruct.Q4_1.gguf. Format, one block per case:
#   case <name>
#   prompt_ids <n> <id> <id> ...
#   logits <file relative to tests/data/ref/: raw little-endian float32 [n_vocab]>
#   source numpy|llama.cpp
#   end
"""


def write_forward_cases(source, new_cases, path=CASES_FILE):
    """Replaces every case of `source` in the file with new_cases (dicts with
    name, prompt_ids, logits: np.ndarray [n_vocab]); keeps the other sources'
    cases. Writes the logits files next to it as <name>.f32."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    kept = [c for c in read_forward_cases(path) if c["source"] != source]
    out = []
    for c in new_cases:
        fname = c["name"] + ".f32"
        np.asarray(c["logits"], dtype="<f4").tofile(os.path.join(os.path.dirname(path), fname))
        out.append({"name": c["name"], "prompt_ids": c["prompt_ids"],
                    "logits": fname, "source": source})
    order = {"numpy": 0, "llama.cpp": 1}
    allc = sorted(kept + out, key=lambda c: order.get(c["source"], 2))
    with open(path, "w") as fh:
        fh.write(FORWARD_HEADER)
        for c in allc:
            ids = c["prompt_ids"]
            fh.write(f"\ncase {c['name']}\n")
            fh.write(f"prompt_ids {len(ids)} {' '.join(map(str, ids))}\n")
            fh.write(f"logits {c['logits']}\nsource {c['source']}\nend\n")


def load_logits(fname):
    return np.fromfile(os.path.join(REF_DIR, fname), dtype="<f4")


# ---- verification against llama.cpp on an F32 copy of the weights ---------------------
def check_f32(model_path, cases):
    """Max |numpy - llama.cpp| per case, llama.cpp running the dequantized
    weights in F32 with F32 K/V: the same math up to float32 rounding."""
    import tempfile
    import gguf
    from ref_llama_cpp import last_logits, load
    r = gguf.GGUFReader(model_path)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "f32.gguf")
        w = gguf.GGUFWriter(path, arch=r.fields["general.architecture"].contents())
        for f in r.fields.values():
            if f.name == "general.architecture" or f.name.startswith("GGUF."):
                continue
            vt = f.types[0]
            sub = f.types[-1] if vt == gguf.GGUFValueType.ARRAY else None
            val = 0 if f.name == "general.file_type" else f.contents()   # 0: all F32
            w.add_key_value(f.name, val, vt, sub_type=sub)
        for t in r.tensors:
            w.add_tensor(t.name, np.ascontiguousarray(
                gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        GGML_TYPE_F32 = 0
        llm = load(path, type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32)
        for c in cases:
            llm.reset()
            llm.eval(c["prompt_ids"])
            d = np.abs(np.asarray(c["logits"], dtype=np.float32) - last_logits(llm))
            print(f"{c['name']} vs llama.cpp on F32 weights, F32 K/V: max|diff| {d.max():.2e}")
        del llm


# ---- main ----------------------------------------------------------------------------
def main():
    args = [a for a in sys.argv[1:] if a != "--check-f32"]
    model_path = args[0] if args else DEFAULT_MODEL
    names = [n for n, _ in FORWARD_PROMPTS]
    all_ids = tokenize_all(model_path, [t for _, t in FORWARD_PROMPTS])
    m = Model(model_path)
    cases = []
    for name, ids in zip(names, all_ids):
        logits = m.forward(ids)
        top = np.argsort(-logits)[:3]
        print(f"{name}: {len(ids)} tokens, top3 {top.tolist()} "
              f"logits {[round(float(logits[t]), 3) for t in top]}")
        cases.append({"name": "np_" + name, "prompt_ids": ids, "logits": logits})
    # The known answer: " Paris" after "The capital of France is".
    paris = 7042
    assert int(np.argmax(cases[0]["logits"])) == paris, "expected ' Paris' (7042)"
    write_forward_cases("numpy", cases)

    # Compare with llama.cpp's logits for the same prompts, when present.
    lc = {tuple(c["prompt_ids"]): c for c in read_forward_cases() if c["source"] == "llama.cpp"}
    for c in cases:
        o = lc.get(tuple(c["prompt_ids"]))
        if o is None:
            continue
        a = np.asarray(c["logits"], dtype=np.float32)
        b = load_logits(o["logits"])
        print(f"{c['name']} vs {o['name']}: max|diff| {np.max(np.abs(a - b)):.4f}, "
              f"mean|diff| {np.mean(np.abs(a - b)):.4f}, argmax {np.argmax(a)} / {np.argmax(b)}")
    if "--check-f32" in sys.argv[1:]:
        check_f32(model_path, cases)


if __name__ == "__main__":
    main()
