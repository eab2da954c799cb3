#!/usr/bin/env python3
"""gen_ct2_corpus.py - the seed corpus of fuzz/fuzz_ct2.c: small valid CTranslate2
model.bin files (stdlib only, written from CTranslate2's model_spec.py `_serialize`).

    python3 tests/ref/gen_ct2_corpus.py DIR       # scripts/gen-fixtures.sh: <fixtures>/ct2

One file per binary version 1, 2, 3, 4, 6 with scalars and tensors of every dtype the
version can state, aliases (a chain, and an alias whose "_scale" exists), plus a
Whisper-like v6 file with the real model's scalar names. Deterministic.
"""
import os
import struct
import sys


def s(text):
    b = text.encode() + b"\0"
    return struct.pack("<H", len(b)) + b


# (name, dtype id, dims, struct code, values); pre-v4 files know only f32/i16/i8
VARS = [
    ("b/w", 0, [3, 2], "f", [1.5, -2.0, 0.25, 3.0, -0.125, 1e10]),
    ("a/f32", 0, [2, 3], "f", [0.0, -1.0, 2.5, 4.0, 8.0, -16.0]),
    ("a/i8", 1, [], "b", [-5]),
    ("a/i16", 2, [], "h", [-300]),
    ("b/w_scale", 0, [1], "f", [0.5]),
    ("a/str", 1, [5], "b", list(b"hello")),
    ("a/i32", 3, [], "i", [70000]),
    ("a/f16", 4, [4], "e", [1.0, -2.0, 0.5, 65504.0]),
    ("a/bf16", 5, [2, 2], "H", [0x3F80, 0xC040, 0x4120, 0xBE00]),
]
ITEM = {0: 4, 1: 1, 2: 2, 3: 4, 4: 2, 5: 2}


def model(version, variables, aliases, spec="TestSpec"):
    if version < 4:
        variables = [v for v in variables if v[1] in (0, 1, 2)]
    out = struct.pack("<I", version)
    if version >= 2:
        out += s(spec) + struct.pack("<I", 3)
    out += struct.pack("<I", len(variables))
    for name, dt, dims, code, vals in variables:
        out += s(name) + struct.pack("<B", len(dims)) + b"".join(struct.pack("<I", d) for d in dims)
        data = b"".join(struct.pack("<" + code, x) for x in vals)
        if version >= 4:
            out += struct.pack("<BI", dt, len(data))
        else:
            out += struct.pack("<BI", ITEM[dt], len(vals))
        out += data
    if version >= 3:
        out += struct.pack("<I", len(aliases)) + b"".join(s(a) + s(t) for a, t in aliases)
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_ct2_corpus.py DIR")
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    aliases = [("c/chain", "c/alias"), ("c/alias", "b/w"), ("c/tied", "a/f32")]
    files = {f"v{v}.bin": model(v, VARS, aliases) for v in (1, 2, 3, 4, 6)}
    whisper = [("decoder/activation", 1, [], "b", [3]), ("decoder/embeddings/weight", 4, [4, 2], "e", [0.5] * 8),
               ("decoder/num_heads", 2, [], "h", [6]), ("encoder/conv1/weight", 4, [2, 1, 3], "e", [1.0] * 6)]
    files["whisper_like.bin"] = model(6, whisper, [("decoder/projection/weight", "decoder/embeddings/weight")],
                                      spec="WhisperSpec")
    for name, data in files.items():
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
