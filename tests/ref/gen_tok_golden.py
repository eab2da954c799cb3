#!/usr/bin/env python3
"""gen_tok_golden.py - golden tokenizer and chat-template data for the default model.

Room: tests/ref (reference scripts; never run by the C tests). Writes
tests/data/tok/smollm2_golden.json from two independent references:

  * llama.cpp, through llama-cpp-python (`Llama(path, vocab_only=True)`): ids for
    every corpus string with special-token parsing on and off, the detokenized
    bytes, every token's piece (as an FNV-1a hash, rendered with and without
    special tokens), the end-of-generation set.
  * Hugging Face `tokenizers`, built from the same GGUF by transformers' own GGUF
    tokenizer converter (transformers.integrations.gguf.gguf_tokenizer_mapping).
    transformers' `AutoTokenizer.from_pretrained(dir, gguf_file=...)` imports torch
    for the tensor reader, and torch is not installed here, so this script reads the
    metadata with the `gguf` package and hands it to the same converter that
    AutoTokenizer would call (`convert_gguf_tokenizer`): same code path minus torch.
    Its `apply_chat_template` renders the chat golden.

When the two disagree on a string, the case is marked "agree": false and the
llama.cpp ids are the golden ones (generations are compared against llama.cpp).
Strings are stored as hex of their UTF-8 bytes (exact, NUL-safe) and as text.

Usage: ~/.cache/kvlm/venv/bin/python tests/ref/gen_tok_golden.py [model.gguf]
"""
import hashlib
import json
import os
import sys

MODEL = (sys.argv[1] if len(sys.argv) > 1 else
         os.environ.get("KVLM_MODEL") or
         os.path.expanduser("~/.cache/kvlm/SmolLM2-135M-Instruct.Q4_1.gguf"))
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "tok",
                   "smollm2_golden.json")

CORPUS = [
    ("empty", ""),
    ("one_space", " "),
    ("four_spaces", "    "),
    ("france", "The capital of France is"),
    ("hello_123", "Hello world! 123"),
    ("digits_run", "1234567"),
    ("pi", "3.14159"),
    ("numbers_mixed", "1,000,000 and 1.5e-10, v2.0.1, 007, x86_64"),
    ("unicode_digits", "\u00bd \u00b2 \u2167 \u0663\u0664\u0665 \uff11\uff12"),
    ("leading_spaces", "  leading spaces"),
    ("trailing_spaces", "trailing spaces   "),
    ("three_newlines", "\n\n\n"),
    ("newline_runs", "a\n\nb\n\n\nc\n"),
    ("ws_only_mix", "   \t\n"),
    ("space_nl_space", "  \n  "),
    ("tabs", "\t\tindented\twith tabs\n"),
    ("tsv", "Tab\tseparated\tvalues\t\t\n"),
    ("crlf", "\r\n windows line\r\nendings\r\n"),
    ("unicode_spaces", "a \t b\u00a0c\u2003d\u3000e\u0085f"),
    ("zero_width", "hello\u200bworld\u200d!"),
    ("python", "def f(x):\n    return x * 2  # comment\n\nprint(f(21))\n"),
    ("c_code", "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n"),
    ("json", "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}"),
    ("markdown", "# Title\n\n- item 1\n- item 2\n\n```python\nx = 1\n```"),
    ("url", "https://example.com/path?q=1&r=two#frag"),
    ("punct_runs", "!!!??? ... --- *** ((())) ;;;"),
    ("contractions", "I'm sure it's fine, they're here, we've won, I'll go, he'd say, don't"),
    ("contractions_upper", "IT'S UPPER 'S 'T 'Re"),
    ("apostrophes", "don't'll''s '' ' 's"),
    ("latin_accents", "H\u00e9llo w\u00f6rld, \u00e7a va? na\u00efve caf\u00e9 \u00c5\u00c4\u00d6 \u00df \u1e9e \ufb01"),
    ("cjk", "\u6211\u7231\u5317\u4eac\u5929\u5b89\u95e8\u3002\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3001\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8"),
    ("arabic", "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645! \u0647\u0630\u0627 \u0627\u062e\u062a\u0628\u0627\u0631."),
    ("hebrew_mixed", "\u05e9\u05dc\u05d5\u05dd world"),
    ("greek_cyrillic", "\u0391\u03bb\u03c6\u03ac\u03b2\u03b7\u03c4\u03bf \u03ba\u03b1\u03b9 \u043a\u0438\u0440\u0438\u043b\u043b\u0438\u0446\u0430"),
    ("thai", "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a"),
    ("hindi", "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e"),
    ("emoji", "I \u2764\ufe0f \U0001f999 and \U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 family \U0001f1eb\U0001f1f7"),
    ("emoji_only", "\U0001f999\U0001f999\U0001f999"),
    ("combining", "e\u0301 a\u0308 n\u0303o Z\u0351\u0352\u0353a\u0300\u0301\u0302l\u0316\u0317go"),
    ("math", "\u2200x\u2208\u211d: x\u00b2\u22650 \u21d2 \u221a(x\u00b2)=|x|"),
    ("currency", "$100.00 + \u20ac50 = \u00a3? \u00a5"),
    ("control_chars", "a\x01\x02b\x7f c\x1b[0m"),
    ("nul_byte", "a\x00b"),
    ("special_chat", "<|im_start|>user\nhi<|im_end|>"),
    ("special_full", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"),
    ("special_alone", "<|endoftext|>"),
    ("special_adjacent", "text<|im_end|>more<|im_start|><|im_start|> x"),
    ("special_partial", "<|im_start hi |im_end|> <|im_"),
    ("special_nested", "<<|im_start|>>"),
    ("special_other", "<repo_name>x<file_sep>y<jupyter_code>z"),
    ("system_default", "You are a helpful AI assistant named SmolLM, trained by Hugging Face"),
    ("long_word", "a" * 300 + "supercalifragilisticexpialidocious" * 10),
    ("pneumono", "Pneumonoultramicroscopicsilicovolcanoconiosis"),
    ("aaaa", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
    ("long_spaces", " " * 70 + "x" + " " * 33),
]

CHATS = [
    ("user_only", [{"role": "user", "content": "hi"}]),
    ("with_system", [{"role": "system", "content": "You are terse."},
                     {"role": "user", "content": "What is 2+2?"}]),
    ("multi_turn", [{"role": "user", "content": "Hello!"},
                    {"role": "assistant", "content": "Hi! How can I help?"},
                    {"role": "user", "content": "Tell me a joke.\nA short one."}]),
    ("unicode", [{"role": "user", "content": "Caf\u00e9 \U0001f999 \u6211\u7231"}]),
    ("empty_content", [{"role": "user", "content": ""}]),
    ("assistant_first", [{"role": "assistant", "content": "I start."},
                         {"role": "user", "content": "ok"}]),
]


def fnv1a64(data, h=0xcbf29ce484222325):
    for b in data:
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def hf_backend():
    """The HF tokenizer transformers builds from this GGUF (see the module comment)."""
    from gguf import GGUFReader
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer)
    r = GGUFReader(MODEL)
    meta = {k: f.contents() for k, f in r.fields.items()
            if k.startswith("tokenizer.") or k == "general.architecture"}
    grouped = {g: {n: meta[f"tokenizer.{k}"] for k, n in ren.items() if f"tokenizer.{k}" in meta}
               for g, ren in GGUF_TOKENIZER_MAPPING.items()}
    backend, _ = convert_gguf_tokenizer(meta["general.architecture"], grouped["tokenizer"])
    return backend, grouped["tokenizer_config"].get("chat_template")


def llama_piece(vocab, tok, special):
    """llama.cpp's piece of one token (llama_token_to_piece), special tokens rendered or not.
    Shared with gen_gemma3_tok.py."""
    import ctypes
    import llama_cpp
    buf = ctypes.create_string_buffer(512)
    n = llama_cpp.llama_token_to_piece(vocab, tok, buf, len(buf), 0, special)
    assert 0 <= n <= len(buf), (tok, n)
    return buf.raw[:n]


def llama_detok(vocab, ids):
    """llama_detokenize with a large buffer (Llama.detokenize truncates pieces longer than
    32 bytes, e.g. the 64-space token), special tokens rendered."""
    import ctypes
    import llama_cpp
    arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
    buf = ctypes.create_string_buffer(1 << 16)
    n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, len(buf), False, True)
    assert 0 <= n <= len(buf)
    return buf.raw[:n]


def main():
    import llama_cpp
    import tokenizers
    import transformers
    from transformers import PreTrainedTokenizerFast

    with open(MODEL, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    llm = llama_cpp.Llama(model_path=MODEL, vocab_only=True, verbose=False)
    vocab = llm._model.vocab
    n_vocab = llm.n_vocab()
    backend, chat_template = hf_backend()

    def hf_ids(text, special):
        backend.encode_special_tokens = not special
        return backend.encode(text, add_special_tokens=False).ids

    def piece(tok, special):
        return llama_piece(vocab, tok, special)

    def detok(ids):
        return llama_detok(vocab, ids)

    cases = []
    n_disagree = 0
    for name, text in CORPUS:
        raw = text.encode("utf-8")
        case = {"name": name, "text": text, "hex": raw.hex()}
        for special in (True, False):
            key = "special" if special else "plain"
            ids = llm.tokenize(raw, add_bos=False, special=special)
            hf = hf_ids(text, special)
            case["ids_" + key] = ids
            if hf != ids:
                case["hf_ids_" + key] = hf
                n_disagree += 1
            dec = b"".join(piece(t, True) for t in ids)
            assert dec == detok(ids), name
            case["decoded_" + key + "_hex"] = dec.hex()
        case["agree"] = "hf_ids_special" not in case and "hf_ids_plain" not in case
        cases.append(case)

    h_special = fnv1a64(b"".join(len(p).to_bytes(4, "little") + p
                                 for p in (piece(t, True) for t in range(n_vocab))))
    h_plain = fnv1a64(b"".join(len(p).to_bytes(4, "little") + p
                               for p in (piece(t, False) for t in range(n_vocab))))
    eog = [t for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t)]

    tok = PreTrainedTokenizerFast(tokenizer_object=backend, chat_template=chat_template)
    chats = []
    for name, msgs in CHATS:
        out = {"name": name, "messages": msgs}
        for gen in (True, False):
            text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
            out["render_gen" if gen else "render_nogen"] = text
        out["ids_gen"] = llm.tokenize(out["render_gen"].encode("utf-8"), add_bos=False, special=True)
        chats.append(out)

    golden = {
        "comment": "generated by tests/ref/gen_tok_golden.py; ids_* are llama.cpp's "
                   "(llama-cpp-python, vocab_only); hf_ids_* appear only where the HF tokenizer "
                   "built by transformers' GGUF converter disagrees (llama.cpp is golden then). "
                   "decoded_*_hex: concatenated token pieces with special tokens rendered. "
                   "pieces_fnv1a64_*: FNV-1a 64 over, for every id, u32le(len) + piece.",
        "model": os.path.basename(MODEL),
        "model_sha256": sha,
        "llama_cpp_python": llama_cpp.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "n_vocab": n_vocab,
        "bos": llm.token_bos(), "eos": llm.token_eos(),
        "eot": llama_cpp.llama_vocab_eot(vocab),
        "eog": eog,
        "pieces_fnv1a64_special": "%016x" % h_special,
        "pieces_fnv1a64_plain": "%016x" % h_plain,
        "n_disagree": n_disagree,
        "cases": cases,
        "chat_template": chat_template,
        "chats": chats,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=True, indent=1)
        f.write("\n")
    print(f"wrote {OUT}: {len(cases)} strings, {len(chats)} chats, "
          f"{n_disagree} llama.cpp/HF disagreements, eog={eog}")
    for c in cases:
        if not c["agree"]:
            print("  disagree:", c["name"], c["ids_special"], c.get("hf_ids_special"),
                  c["ids_plain"], c.get("hf_ids_plain"))


if __name__ == "__main__":
    main()
