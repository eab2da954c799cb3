#!/usr/bin/env python3
"""make_ct2_variants.py - two model directories derived from the float16 Whisper tiny.en
for tests/engine/test_whisper.c (issue 13 part 1: float16 or float32 loads, a multilingual
model is refused). Stdlib only; the file is read with gen_ct2_golden.py's parser (written
from CTranslate2's model_spec.py, not from src/model/ct2.c) and written back in the same
layout (src/model/ct2.h, ../shared/WHISPER.md section 1).

    python3 tests/ref/make_ct2_variants.py SRC_DIR OUT_DIR

SRC_DIR holds model.bin, config.json, vocabulary.txt, tokenizer.json (the cached
whisper-tiny.en). OUT_DIR (a temporary directory: never the cache, never committed) gets
    OUT_DIR/float32/       every float16 variable widened to float32 (dtype id 0, num_bytes
                           doubled; widening is exact), the same names, order, aliases and
                           scalars; the three other files copied
    OUT_DIR/multilingual/  float16 as SRC, but decoder/embeddings/weight has one more row of
                           zeros (51865 rows, a multilingual vocabulary) and vocabulary.txt
                           one more line; not a real model: a loader must refuse it as
                           multilingual before anything else matters
"""
import os
import shutil
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_ct2_golden import parse  # noqa: E402

F32, F16 = 0, 4
CHUNK = 1 << 20   # elements widened per struct call: bounds the Python lists' memory


def widen_f16(raw):
    n = len(raw) // 2
    out = bytearray()
    for i in range(0, n, CHUNK):
        k = min(CHUNK, n - i)
        out += struct.pack(f"<{k}f", *struct.unpack(f"<{k}e", raw[2 * i:2 * (i + k)]))
    return bytes(out)


def put_str(out, s):
    b = s.encode("utf-8") + b"\0"
    out.append(struct.pack("<H", len(b)) + b)


def write_model(path, m, variables):
    """variables: [(name, dtype, dims, raw)] in file order; the header and aliases are m's."""
    assert m["version"] >= 4, "only binary versions >= 4 (dtype id + byte count) are rewritten"
    out = [struct.pack("<I", m["version"])]
    put_str(out, m["spec"])
    out.append(struct.pack("<II", m["revision"], len(variables)))
    for name, dt, dims, raw in variables:
        put_str(out, name)
        out.append(struct.pack(f"<B{len(dims)}I", len(dims), *dims))
        out.append(struct.pack("<BI", dt, len(raw)))
        out.append(raw)
    out.append(struct.pack("<I", len(m["aliases"])))
    for a, t in m["aliases"]:
        put_str(out, a)
        put_str(out, t)
    with open(path, "wb") as f:
        f.write(b"".join(out))


def copy_others(src, dst, skip=()):
    for name in ("config.json", "vocabulary.txt", "tokenizer.json"):
        if name not in skip:
            shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    with open(os.path.join(src, "model.bin"), "rb") as f:
        m = parse(f.read())

    d32 = os.path.join(out, "float32")
    os.makedirs(d32, exist_ok=True)
    write_model(os.path.join(d32, "model.bin"), m,
                [(n, F32, dims, widen_f16(raw)) if dt == F16 else (n, dt, dims, raw)
                 for n, dt, dims, _, raw in m["vars"]])
    copy_others(src, d32)

    dml = os.path.join(out, "multilingual")
    os.makedirs(dml, exist_ok=True)
    variables = []
    for n, dt, dims, _, raw in m["vars"]:
        if n == "decoder/embeddings/weight":
            assert dt == F16 and len(dims) == 2 and dims[0] == 51864, (dt, dims)
            dims, raw = [dims[0] + 1, dims[1]], raw + bytes(2 * dims[1])
        variables.append((n, dt, dims, raw))
    write_model(os.path.join(dml, "model.bin"), m, variables)
    copy_others(src, dml, skip=("vocabulary.txt",))
    with open(os.path.join(src, "vocabulary.txt"), "rb") as f:
        vocab = f.read()
    with open(os.path.join(dml, "vocabulary.txt"), "wb") as f:
        f.write(vocab + (b"" if vocab.endswith(b"\n") else b"\n") + b"<|extra|>\n")


if __name__ == "__main__":
    main()
