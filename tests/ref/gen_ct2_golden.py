#!/usr/bin/env python3
"""gen_ct2_golden.py - golden facts about the real Whisper tiny.en model.bin for
tests/model/test_ct2.c, from an independent, stdlib-only parser of the CTranslate2
format (written from CTranslate2's python/ctranslate2/specs/model_spec.py
`_serialize` and src/models/model.cc `Model::load`, not from src/model/ct2.c).

    python3 tests/ref/gen_ct2_golden.py [MODEL_BIN] > tests/data/whisper/ct2_golden.txt

MODEL_BIN defaults to $KVLM_CACHE (else $XDG_CACHE_HOME/kvlm, else ~/.cache/kvlm)
/whisper-tiny.en/model.bin. Deterministic: the same file gives the same output.

Output, one fact a line (space-separated; names contain no spaces):
    file_size N | version N | spec NAME | revision N | n_vars N | n_aliases N
    alias ALIAS TARGET
    var NAME DTYPE DIMS OFFSET NBYTES CRC32    DIMS "a,b,c" or "-" for a scalar;
                                               OFFSET of the data in the file;
                                               CRC32 zlib.crc32 of the data, 8 hex digits
    scalar NAME DTYPE VALUE                    every rank-0 integer variable
    values NAME V0 V1 V2 V3                    first 4 elements widened to float (repr)
"""
import os
import struct
import sys
import zlib

DTYPES = {0: ("float32", 4, "f"), 1: ("int8", 1, "b"), 2: ("int16", 2, "h"),
          3: ("int32", 4, "i"), 4: ("float16", 2, "e"), 5: ("bfloat16", 2, None)}
VALUE_TENSORS = ["encoder/conv1/bias", "encoder/conv1/weight", "decoder/embeddings/weight",
                 "decoder/layer_norm/gamma", "decoder/position_encodings/encodings"]


class Reader:
    def __init__(self, data):
        self.d, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.d):
            raise ValueError(f"truncated at {self.pos}")
        b = self.d[self.pos:self.pos + n]
        self.pos += n
        return b

    def u(self, fmt):
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def s(self):
        n = self.u("H")
        b = self.take(n)
        assert n >= 1 and b[-1] == 0 and 0 not in b[:-1], "bad string"
        return b[:-1].decode("utf-8")


def parse(data):
    r = Reader(data)
    out = {"version": r.u("I")}
    out["spec"], out["revision"] = (r.s(), r.u("I")) if out["version"] >= 2 else ("", 0)
    out["vars"] = []
    for _ in range(r.u("I")):
        name = r.s()
        dims = [r.u("I") for _ in range(r.u("B"))]
        n_elem = 1
        for d in dims:
            n_elem *= d
        if out["version"] >= 4:
            dt, nbytes = r.u("B"), r.u("I")
        else:
            dt, nbytes = {4: 0, 2: 2, 1: 1}[r.u("B")], None
            nbytes = r.u("I") * DTYPES[dt][1]
        assert nbytes == n_elem * DTYPES[dt][1], name
        off = r.pos
        out["vars"].append((name, dt, dims, off, r.take(nbytes)))
    out["aliases"] = [(r.s(), r.s()) for _ in range(r.u("I"))] if out["version"] >= 3 else []
    assert r.pos == len(data), f"{len(data) - r.pos} trailing bytes"
    return out


def widen(dt, raw, i):
    name, size, code = DTYPES[dt]
    b = raw[i * size:(i + 1) * size]
    if code is None:   # bfloat16: the high half of a float32
        return struct.unpack("<f", b"\0\0" + b)[0]
    return float(struct.unpack("<" + code, b)[0])


def main():
    if len(sys.argv) > 1:
        path = sys.argv[1]
    else:
        cache = os.environ.get("KVLM_CACHE") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kvlm")
        path = os.path.join(cache, "whisper-tiny.en", "model.bin")
    with open(path, "rb") as f:
        data = f.read()
    m = parse(data)
    w = sys.stdout.write
    w("# tests/data/whisper/ct2_golden.txt - written by tests/ref/gen_ct2_golden.py (stdlib-only parser)\n")
    w(f"file_size {len(data)}\nversion {m['version']}\nspec {m['spec']}\nrevision {m['revision']}\n")
    w(f"n_vars {len(m['vars'])}\nn_aliases {len(m['aliases'])}\n")
    for a, t in m["aliases"]:
        w(f"alias {a} {t}\n")
    by_name = {}
    for name, dt, dims, off, raw in m["vars"]:
        by_name[name] = (dt, raw)
        d = ",".join(map(str, dims)) if dims else "-"
        w(f"var {name} {DTYPES[dt][0]} {d} {off} {len(raw)} {zlib.crc32(raw):08x}\n")
    for name, dt, dims, off, raw in m["vars"]:
        if not dims and dt in (1, 2, 3):
            w(f"scalar {name} {DTYPES[dt][0]} {int(widen(dt, raw, 0))}\n")
    for name in VALUE_TENSORS:
        dt, raw = by_name[name]
        w(f"values {name} " + " ".join(repr(widen(dt, raw, i)) for i in range(4)) + "\n")


if __name__ == "__main__":
    main()
