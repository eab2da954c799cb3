#!/usr/bin/env python3
"""gen_whisper_tok_golden.py - golden encode/decode data for Whisper's tokenizer.

Room: tests/ref (reference scripts; never run by the C tests). Writes
tests/data/whisper/tok_golden.json from Hugging Face `tokenizers` (the python of
scripts/whisper-ref-venv.sh), loading the model directory's own tokenizer.json:

    Tokenizer.from_file(dir + "/tokenizer.json")
    encode(text, add_special_tokens=False).ids      -> "ids"
    decode(ids, skip_special_tokens=True)           -> "decoded_hex"

tests/tok/test_tok_whisper.c checks src/tok/tok_whisper.c against it. Strings are
stored as hex of their UTF-8 bytes (exact, NUL-safe) and as text. No corpus string
contains a special token's text: HF matches added tokens in the input even with
add_special_tokens=False, and tok_whisper_encode parses no special tokens (a
prompt is plain text). The "decode" cases are id sequences (from the corpus ids,
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

CORPUS = [
    ("empty", ""),
    ("one_space", " "),
    ("four_spaces", "    "),
    ("jfk", " And so my fellow Americans."),
    ("jfk_full", " And so my fellow Americans ask not what your country can do for you,"
                 " ask what you can do for your country."),
    ("no_leading_space", "Hello world"),
    ("leading_spaces", "  leading spaces"),
    ("trailing_spaces", "trailing spaces   "),
    ("punctuation", "Wait... what?! (Really) - yes; no: \"quoted\" 'single' [x] {y} <z>"),
    ("symbols", "a+b=c, 50% off, $9.99, #1, @user, ~/path, a|b, x^2, 3*4/5 & more!"),
    ("numbers", "1,000,000 and 1.5e-10, v2.0.1, 007, x86_64, 2024-06-01 12:30"),
    ("digits_run", "12345678901234567890"),
    ("contractions", "I'm sure you'll see it's what they've done; we'd, he's, don't, can't"),
    ("contractions_upper", "I'M SURE YOU'LL SEE IT'S WHAT THEY'VE DONE"),
    ("apostrophe_alone", "' 's 'x rock'n'roll '' '''"),
    ("newlines", "line one\nline two\n\nline four\n"),
    ("newline_runs", "a\n\nb\n\n\nc\n"),
    ("ws_only_mix", "   \t\n"),
    ("space_nl_space", "  \n  "),
    ("tabs", "\t\tindented\twith tabs\n"),
    ("crlf", "\r\n windows line\r\nendings\r\n"),
    ("unicode_spaces", "a \t b\u00a0c\u2003d\u3000e\u0085f"),
    ("zero_width", "hello\u200bworld\u200d!"),
    ("accents", " caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00c9cole Z\u00fcrich Stra\u00dfe"),
    ("combining", "e\u0301 a\u0300 n\u0303 (decomposed)"),
    ("greek_cyrillic", " \u039a\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1 \u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!"),
    ("cjk", " \u4f60\u597d\uff0c\u4e16\u754c\u3002\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8"),
    ("korean", "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8"),
    ("arabic_hebrew", " \u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd"),
    ("devanagari", " \u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e"),
    ("emoji", " I love it \U0001f600\U0001f44d\U0001f3fd \u2764\ufe0f \U0001f468\u200d\U0001f469\u200d\U0001f467"),
    ("emoji_flags", "\U0001f1eb\U0001f1f7\U0001f1ef\U0001f1f5 \U0001f3f4\u200d\u2620\ufe0f"),
    ("unicode_digits", "\u00bd \u00b2 \u2167 \u0663\u0664\u0665 \uff11\uff12"),
    ("math", " \u2200x \u2208 \u211d: x\u00b2 \u2265 0 \u2192 \u221a(x\u00b2) = |x|"),
    ("fullwidth", "\uff28\uff45\uff4c\uff4c\uff4f\uff01"),
    ("control_chars", "a\x00b\x01c\x07d\x1be\x7ff"),
    ("soft_hyphen", "co\u00adop\u00aderate"),
    ("long_word", "Pneumonoultramicroscopicsilicovolcanoconiosis"),
    ("very_long_word", "supercalifragilisticexpialidocious" * 40),
    ("long_digits", "9" * 300),
    ("long_space_run", "x" + " " * 200 + "y"),
    ("long_punct", "!?" * 150),
    ("url", "https://example.com/path?query=1&x=y#frag"),
    ("code", "def f(x):\n    return x * 2  # comment\n\nprint(f(21))\n"),
    ("json", "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}"),
    ("mixed_script", "abc\u4e2d\u6587def123\u0627\u0644\u0639\u0631\u0628\u064a\u0629"),
    ("prompt_like", " Hello, welcome to the show. Today we talk about Mr. O'Neil's 3rd book."),
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
    for name, text in CORPUS + random_cases(24):
        ids = tok.encode(text, add_special_tokens=False).ids
        assert all(i < 50256 for i in ids), (name, ids)
        back = tok.decode(ids, skip_special_tokens=True)
        cases.append({"name": name, "hex": text.encode("utf-8").hex(), "text": text, "ids": ids,
                      "decoded_hex": back.encode("utf-8").hex()})

    by_name = {c["name"]: c["ids"] for c in cases}
    seqs = [
        ("empty", []),
        ("jfk_with_specials", [50257, 50362] + by_name["jfk"] + [50256]),
        ("only_specials", [50256, 50257, 50258, 50357, 50358, 50359, 50360, 50361, 50362]),
        ("emoji_head", by_name["emoji"][:-3]),   # ends inside a 4-byte character
        ("cjk_cut", by_name["cjk"][:5]),
        ("emoji_tail", by_name["emoji"][7:]),    # starts with continuation bytes
        ("byte_tokens", [124, 156, 198, 220, 226, 227, 228]),
        ("specials_between", by_name["accents"][:3] + [50360] + by_name["accents"][3:]),
    ]
    decode = []
    for name, ids in seqs:
        decode.append({"name": name, "ids": ids,
                       "decoded_hex": tok.decode(ids, skip_special_tokens=True).encode("utf-8").hex()})

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
