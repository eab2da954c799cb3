#!/usr/bin/env python3
"""gen_spm_fixture.py - a tiny SentencePiece (tokenizer.ggml.model = "llama") GGUF and its golden ids.

Room: tests/ref (reference scripts; never run by the C tests). No SentencePiece
model ships with kvlm, so this script makes one:

  1. trains a sentencepiece BPE model (vocab 800, byte_fallback) on the text of
     /usr/share/common-licenses/GPL-3, with identity normalization and no
     whitespace squeezing (llama.cpp applies neither, so the two references can
     agree on whitespace runs);
  2. writes spm-tiny.gguf (a temporary file) with gguf.GGUFWriter: arch "llama",
     tokenizer.ggml.{model,tokens,scores,token_type,bos/eos/unknown ids,
     add_space_prefix,add_bos_token} plus the few llama.* hyper-parameters that
     llama.cpp wants to open a vocab-only file; no tensors;
  3. writes tests/data/tok/spm_golden.json: for each corpus string, sentencepiece's
     own ids (the golden, ids_sp), and llama.cpp's ids for the same GGUF with
     special-token parsing off and on (ids_llama_plain / ids_llama_special) when
     llama-cpp-python is importable, and whether llama.cpp agrees with sentencepiece.

Usage: ~/.cache/kvlm/venv/bin/python tests/ref/gen_spm_fixture.py
"""
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "..", "data", "tok")
GGUF_OUT = os.path.join(tempfile.gettempdir(), "kvlm-spm-tiny.gguf")   # the repo keeps JSON_OUT
JSON_OUT = os.path.join(OUT_DIR, "spm-tiny.json")
GOLDEN_OUT = os.path.join(OUT_DIR, "spm_golden.json")
TRAIN_TEXT = "/usr/share/common-licenses/GPL-3"
VOCAB = 800

CORPUS = [
    ("empty", ""),
    ("one_space", " "),
    ("hello", "Hello world"),
    ("gpl", "This program is free software: you can redistribute it and/or modify"),
    ("license", "GNU GENERAL PUBLIC LICENSE Version 3, 29 June 2007"),
    ("leading_spaces", "   three leading spaces"),
    ("trailing_spaces", "trailing   "),
    ("double_space", "two  spaces  inside"),
    ("newlines", "line one\nline two\n\n\nline five"),
    ("tabs", "\tcode\t= 1;\n"),
    ("digits", "1234567 3.14159 2007"),
    ("punct", "(a) \"quoted\" [b], {c}; d: e! f? <g>"),
    ("unicode", "H\u00e9llo w\u00f6rld caf\u00e9"),
    ("cjk", "\u6211\u7231\u5317\u4eac"),
    ("emoji", "ok \U0001f999 \U0001f468\u200d\U0001f469\u200d\U0001f467"),
    ("arabic", "\u0645\u0631\u062d\u0628\u0627"),
    ("combining", "e\u0301 a\u0308"),
    ("control_text", "<s> and </s> and <unk> as text"),
    ("byte_text", "<0x41> literal"),
    ("sp_char", "\u2581already\u2581escaped"),
    ("long_word", "licensee" * 40),
    ("caps", "COPYRIGHT NOTICE"),
    ("mixed", "Copyright (C) 2007 Free Software Foundation, Inc. <https://fsf.org/>"),
    ("nul", "a\x00b"),
]


def train(tmpdir):
    import sentencepiece as spm
    with open(TRAIN_TEXT, encoding="utf-8") as f:
        lines = [ln.strip() for ln in f if ln.strip()]
    prefix = os.path.join(tmpdir, "spm")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_prefix=prefix, model_type="bpe",
        vocab_size=VOCAB, byte_fallback=True, character_coverage=1.0,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, split_digits=False, num_threads=1,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    return spm.SentencePieceProcessor(model_file=prefix + ".model")


def write_gguf(sp):
    import gguf
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            t = gguf.TokenType.UNKNOWN
        elif sp.is_control(i):
            t = gguf.TokenType.CONTROL
        elif sp.is_unused(i):
            t = gguf.TokenType.UNUSED
        elif sp.is_byte(i):
            t = gguf.TokenType.BYTE
        else:
            t = gguf.TokenType.NORMAL
        types.append(int(t))
    w = gguf.GGUFWriter(GGUF_OUT, "llama")
    w.add_name("spm-tiny (kvlm test fixture)")
    # hyper-parameters only so that llama.cpp opens the file vocab-only; no tensors
    w.add_context_length(256)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(1)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_json():
    """The GGUF's metadata, key by key, as tests/data/tok/spm-tiny.json (what the
    repository keeps; gen_spm_gguf.py writes the identical GGUF back from it)."""
    import gguf
    r = gguf.GGUFReader(GGUF_OUT)
    kv = []
    for f in r.fields.values():
        if f.name.startswith("GGUF."):
            continue
        t = f.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            et = f.types[1]
            if et == gguf.GGUFValueType.STRING:
                val = [bytes(f.parts[i]).decode("utf-8", errors="surrogateescape") for i in f.data]
            else:
                val = [f.parts[i].tolist()[0] for i in f.data]
            kv.append({"key": f.name, "type": "ARRAY", "elem": et.name, "value": val})
        elif t == gguf.GGUFValueType.STRING:
            kv.append({"key": f.name, "type": "STRING", "value": bytes(f.parts[f.data[0]]).decode()})
        else:
            kv.append({"key": f.name, "type": t.name, "value": f.parts[f.data[0]].tolist()[0]})
    with open(JSON_OUT, "w", encoding="utf-8") as out:
        json.dump({"arch": "llama", "kv": kv}, out, ensure_ascii=False)


def llama_ids():
    try:
        import llama_cpp
    except ImportError:
        return None
    llm = llama_cpp.Llama(model_path=GGUF_OUT, vocab_only=True, verbose=False)
    return lambda raw, special: llm.tokenize(raw, add_bos=False, special=special)


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmpdir:
        sp = train(tmpdir)
    write_gguf(sp)
    write_json()
    lt = llama_ids()
    cases, n_disagree = [], 0
    for name, text in CORPUS:
        raw = text.encode("utf-8")
        case = {"name": name, "text": text, "hex": raw.hex(), "ids_sp": sp.encode(text)}
        if lt is not None:
            case["ids_llama_plain"] = lt(raw, False)
            case["ids_llama_special"] = lt(raw, True)
            case["agree"] = case["ids_llama_plain"] == case["ids_sp"]
            n_disagree += not case["agree"]
        cases.append(case)
    golden = {
        "comment": "generated by tests/ref/gen_spm_fixture.py; ids_sp = sentencepiece "
                   "(the golden, special tokens never parsed); ids_llama_* = llama.cpp on "
                   "spm-tiny.gguf, add_bos off",
        "sentencepiece_vocab": sp.get_piece_size(),
        "bos": sp.bos_id(), "eos": sp.eos_id(), "unk": sp.unk_id(),
        "n_disagree": n_disagree,
        "cases": cases,
    }
    with open(GOLDEN_OUT, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=True, indent=1)
        f.write("\n")
    print(f"wrote {JSON_OUT} (from {GGUF_OUT}) and {GOLDEN_OUT}: "
          f"{len(cases)} strings, llama.cpp disagrees on {n_disagree}")
    for c in cases:
        if c.get("agree") is False:
            print("  disagree:", c["name"], c["ids_sp"], c["ids_llama_plain"], file=sys.stderr)


if __name__ == "__main__":
    main()
