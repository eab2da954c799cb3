#!/usr/bin/env python3
"""gen_spm_gguf.py OUT_DIR - writes OUT_DIR/tok/spm-tiny.gguf from tests/data/tok/spm-tiny.json.

The tiny SentencePiece vocabulary of the tokenizer tests (made once by
gen_spm_fixture.py, which trains it) is kept in the repository as JSON, the
metadata key by key; this script turns it into the GGUF the tests open, with
gguf.GGUFWriter, in the cache (scripts/gen-fixtures.sh), so no GGUF file is
tracked. The output is byte-identical to what gen_spm_fixture.py wrote.
"""
import json
import os
import sys

from gguf import GGUFValueType as V
from gguf import GGUFWriter

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "data", "tok", "spm-tiny.json")


def main():
    spec = json.load(open(SRC, encoding="utf-8"))
    kv = {e["key"]: e for e in spec["kv"]}
    out = os.path.join(sys.argv[1], "tok")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "spm-tiny.gguf")
    w = GGUFWriter(path, kv["general.architecture"]["value"])
    for e in spec["kv"]:
        if e["key"] == "general.architecture":
            continue   # written by GGUFWriter itself, first
        if e["type"] == "ARRAY":
            w.add_key_value(e["key"], e["value"], V.ARRAY, V[e["elem"]])
        else:
            w.add_key_value(e["key"], e["value"], V[e["type"]])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
