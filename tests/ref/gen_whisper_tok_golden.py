#!/usr/bin/env python3
"""gen_whisper_tok_golden.py - golden encode/decode data for Whisper's tokenizer.

Room: tests/ref (reference scripts; never run by the C tests). Writes
tests/data/whisper/tok_golden.json from Hugging Face `tokenizers` (the python of
scripts/whisper-ref-venv.sh), loading the model directory's own tokenizer.json:

    Tokenizer.from_file(dir + "/tokenizer.json")
    encode(text, add_special_tokens=False).ids      -> "ids"
    decode(ids, skip_special_tokens=True)           -> "decoded" (its UTF-8 bytes;
                                                       absent when it is the text)

tests/tok/test_tok_whisper.c checks src/tok/tok_whisper.c against it. Strings are
stored as their UTF-8 bytes (exact, NUL-safe: the C test reads bytes and ids with
one reader of integer arrays) and as text, for reading. The corpus is
the default model's (tests/ref/gen_tok_golden.py) plus Whisper's own strings and
seeded random ones; strings in which HF finds a special token's text are left out:
HF matches added tokens in the input even with add_special_tokens=False, while
tok_whisper_encode parses no special tokens (a prompt is plain text). The "decode" cases are id sequences (from the corpus ids,
cut in the middle of multi-byte characters, with specials mixed in) and HF's text
for them; HF decodes invalid UTF-8 with U+FFFD per maximal invalid subpart.

Usage: $(scripts/whisper-ref-venv.sh) tests/ref/gen_whisper_tok_golden.py [model_dir]
Deterministic: a re-run on the same files writes an identical file.
"""
import json
import os
import random
import sys

from tokenizers import Tokenizer

DIR = (sys.argv[1] if len(sys.argv) > 1 else
       os.path.expanduser("~/.cache/kvlm/whisper-tiny.en"))
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "whisper",
                   "tok_golden.json")

# The corpus of the default model's golden (tests/ref/gen_tok_golden.py) plus
# Whisper's own cases. Strings with a Whisper special token's text are left out
# (see above): HF gives those the special's id.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_tok_golden import CORPUS as LM_CORPUS  # noqa: E402  (import-safe: no work at import)

WHISPER_CORPUS = [
    ("jfk", " And so my fellow Americans."),
    ("jfk_full", " And so my fellow Americans ask not what your country can do for you,"
                 " ask what you can do for your country."),
    ("prompt_like", " Hello, welcome to the show. Today we talk about Mr. O'Neil's 3rd book."),
    ("no_leading_space", "Hello world"),
    ("punctuation", "Wait... what?! (Really) - yes; no: \"quoted\" 'single' [x] {y} <z>"),
    ("symbols", "a+b=c, 50% off, $9.99, #1, @user, ~/path, a|b, x^2, 3*4/5 & more!"),
    ("dates_times", "2024-06-01 12:30, 1.5e-10, 10:45pm, 3rd, 21st"),
    ("digits_long", "12345678901234567890"),
    ("contractions_mixed", "I'M SURE YOU'LL see it's what they've done; we'd, he's, can't, rock'n'roll"),
    ("newlines", "line one\nline two\n\nline four\n"),
    ("accents", " caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00c9cole Z\u00fcrich Stra\u00dfe"),
    ("cjk_space", " \u4f60\u597d\uff0c\u4e16\u754c\u3002\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8"),
    ("emoji_tones", " I love it \U0001f600\U0001f44d\U0001f3fd \u2764\ufe0f \U0001f468\u200d\U0001f469\u200d\U0001f467"),
    ("emoji_flags", "\U0001f1eb\U0001f1f7\U0001f1ef\U0001f1f5 \U0001f3f4\u200d\u2620\ufe0f"),
    ("fullwidth", "\uff28\uff45\uff4c\uff4c\uff4f\uff01"),
    ("soft_hyphen", "co\u00adop\u00aderate"),
    ("very_long_word", "supercalifragilisticexpialidocious" * 40),
    ("long_digits", "9" * 300),
    ("long_space_run", "x" + " " * 200 + "y"),
    ("long_punct", "!?" * 150),
    ("mixed_script", "abc\u4e2d\u6587def123\u0627\u0644\u0639\u0631\u0628\u064a\u0629"),
    ("angle_not_special", "<|not a token|> <|endoftext (broken) |"),
]


def random_cases(n, seed=13):
    """Random strings over a pool mixing letters, digits, spaces of several kinds,
    punctuation, apostrophes, accents, CJK and emoji: what the regex classes split."""
    pool = (list("abcXYZ019 '\n\t.,!?-_\"") + [" ", " ", "'s", "'ll", "'re"] +
            ["\u00e9", "\u00df", "\u4e2d", "\u3000", "\u00a0", "\u2003", "\U0001f600",
             "\u0301", "\u0663", "\u00bd", "\r\n", "\x0b", "\x0c", "\u200b"])
    rng = random.Random(seed)
    out = []
    for i in range(n):
        out.append(("random_%02d" % i, "".join(rng.choice(pool) for _ in range(rng.randint(1, 40)))))
    return out


def main():
    tok = Tokenizer.from_file(os.path.join(DIR, "tokenizer.json"))
    cases = []
    for name, text in LM_CORPUS + WHISPER_CORPUS + random_cases(24):
        ids = tok.encode(text, add_special_tokens=False).ids
        if any(i >= 50256 for i in ids):   # a special token's text: HF matched it
            print("left out: %s" % name)
            continue
        back = tok.decode(ids, skip_special_tokens=True)
        case = {"name": name, "text": text, "bytes": list(text.encode("utf-8")), "ids": ids}
        if back != text:   # absent: decode gives the text back
            case["decoded"] = list(back.encode("utf-8"))
        cases.append(case)

    by_name = {c["name"]: c["ids"] for c in cases}
    seqs = [
        ("empty", []),
        ("jfk_with_specials", [50257, 50362] + by_name["jfk"] + [50256]),
        ("only_specials", [50256, 50257, 50258, 50357, 50358, 50359, 50360, 50361, 50362]),
        ("emoji_head", by_name["emoji_tones"][:-3]),   # ends inside a 4-byte character
        ("cjk_cut", by_name["cjk_space"][:5]),
        ("emoji_tail", by_name["emoji_tones"][7:]),    # starts with continuation bytes
        ("byte_tokens", [124, 156, 198, 220, 226, 227, 228]),
        ("specials_between", by_name["accents"][:3] + [50360] + by_name["accents"][3:]),
    ]
    decode = []
    for name, ids in seqs:
        decode.append({"name": name, "ids": ids,
                       "decoded": list(tok.decode(ids, skip_special_tokens=True).encode("utf-8"))})

    specials = {s: tok.token_to_id(s) for s in
                ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
                 "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]}
    doc = {"source": "HF tokenizers %s, Tokenizer.from_file(tokenizer.json), add_special_tokens=False"
                     % __import__("tokenizers").__version__,
           "specials": specials, "cases": cases, "decode": decode}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=True, indent=None, separators=(",", ":"))
        f.write("\n")
    print("%s: %d cases, %d decode cases" % (OUT, len(cases), len(decode)))


if __name__ == "__main__":
    main()
