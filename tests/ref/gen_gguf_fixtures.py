#!/usr/bin/env python3
"""gen_gguf_fixtures.py - tiny valid GGUF files written by an independent writer.

Run by scripts/gen-fixtures.sh (make test does it) as  python gen_gguf_fixtures.py OUT_DIR:
the files go to OUT_DIR/gguf/ in the cache, never into the repository.

Uses gguf.GGUFWriter (the `gguf` package), not our code, so tests/model/test_gguf.c can
check that our reader agrees with another implementation on every value type. The same
files seed the fuzz target (scripts/fuzz.sh copies them). Each file is < 4 KB;
deterministic for the gguf and numpy versions gen-fixtures.sh pins.

    tiny_llama.gguf  llama-shaped metadata (vocab of 8 tokens, 2 merges) and tensors
                     token_embd.weight Q8_0 [64, 8], blk.0.attn_norm.weight F32 [64],
                     blk.0.attn_q.weight Q4_1 [64, 16]
    all_types.gguf   one key of each of the 13 value types, arrays of several element
                     types, general.alignment 64, tensors F16 [32], BF16 [16], Q4_0 [64],
                     Q6_K [256], I32 [3]
    kv_only.gguf     metadata only, no tensors
"""
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V
from gguf import GGUFWriter, quants

rng = np.random.default_rng(7)


def write(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def tiny_llama(path):
    w = GGUFWriter(path, "llama")
    w.add_name("tiny")
    w.add_block_count(1)
    w.add_context_length(128)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["<|endoftext|>", "a", "b", "c", "ab", "abc", "\u0120the", "!"])
    w.add_token_types([3, 1, 1, 1, 1, 1, 1, 1])
    w.add_token_merges(["a b", "ab c"])
    w.add_bos_token_id(0)
    w.add_eos_token_id(0)
    x = rng.standard_normal((8, 64)).astype(np.float32)
    w.add_tensor("token_embd.weight", quants.quantize(x, T.Q8_0), raw_dtype=T.Q8_0)
    w.add_tensor("blk.0.attn_norm.weight", np.linspace(0.5, 1.5, 64, dtype=np.float32))
    x = rng.standard_normal((16, 64)).astype(np.float32)
    w.add_tensor("blk.0.attn_q.weight", quants.quantize(x, T.Q4_1), raw_dtype=T.Q4_1)
    write(w)


def all_types(path):
    w = GGUFWriter(path, "test")
    w.add_custom_alignment(64)
    w.add_key_value("t.u8", 200, V.UINT8)
    w.add_key_value("t.i8", -5, V.INT8)
    w.add_key_value("t.u16", 60000, V.UINT16)
    w.add_key_value("t.i16", -300, V.INT16)
    w.add_key_value("t.u32", 4000000000, V.UINT32)
    w.add_key_value("t.i32", -70000, V.INT32)
    w.add_key_value("t.f32", 0.25, V.FLOAT32)
    w.add_key_value("t.bool", True, V.BOOL)
    w.add_key_value("t.str", "h\u00e9llo", V.STRING)
    w.add_key_value("t.u64", 2**63 + 5, V.UINT64)
    w.add_key_value("t.i64", -(2**40), V.INT64)
    w.add_key_value("t.f64", -1.5e300, V.FLOAT64)
    w.add_key_value("t.arr_i16", [1, -2, 3], V.ARRAY, V.INT16)
    w.add_key_value("t.arr_f64", [0.5, -0.25], V.ARRAY, V.FLOAT64)
    w.add_key_value("t.arr_bool", [True, False, True], V.ARRAY, V.BOOL)
    w.add_key_value("t.arr_str", ["x", "", "yz"], V.ARRAY, V.STRING)
    w.add_tensor("f16", np.arange(32, dtype=np.float16))
    bf = quants.quantize(np.linspace(-1, 1, 16, dtype=np.float32), T.BF16)
    w.add_tensor("bf16", bf, raw_dtype=T.BF16)
    w.add_tensor("q4_0", quants.quantize(rng.standard_normal(64).astype(np.float32), T.Q4_0), raw_dtype=T.Q4_0)
    q6 = rng.integers(0, 256, 210, dtype=np.uint8)
    q6[208:210] = np.array([0.001], dtype=np.float16).view(np.uint8)
    w.add_tensor("q6_k", q6, raw_dtype=T.Q6_K)
    w.add_tensor("i32", np.array([1, 2, 3], dtype=np.int32))
    write(w)


def kv_only(path):
    w = GGUFWriter(path, "none")
    w.add_key_value("only.key", "value", V.STRING)
    w.add_key_value("only.arr", [1, 2, 3, 4], V.ARRAY, V.UINT32)
    write(w)


def main():
    out = os.path.join(sys.argv[1], "gguf")
    os.makedirs(out, exist_ok=True)
    for fn, gen in (("tiny_llama.gguf", tiny_llama), ("all_types.gguf", all_types), ("kv_only.gguf", kv_only)):
        path = os.path.join(out, fn)
        gen(path)
        size = os.path.getsize(path)
        assert size < 4096, (fn, size)
        print(f"{path}: {size} bytes")


if __name__ == "__main__":
    main()
