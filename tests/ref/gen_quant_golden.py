#!/usr/bin/env python3
"""gen_quant_golden.py - golden data for tests/kern/test_quant.c from the `gguf` package.

Run from the repo root with the kvlm venv:
    ~/.cache/kvlm/venv/bin/python tests/ref/gen_quant_golden.py [model.gguf]
or, for the test vectors of the Gemma 3 weight types (not tracked), as scripts/gen-fixtures.sh
runs it (make test does) in the fixtures venv:
    python tests/ref/gen_quant_golden.py --vectors OUT_DIR

Writes tests/data/quant/:
    MANIFEST           one case per line: "name type_id n_elems has_input"
    NAME.q             quantized blocks (n_elems / blck_size blocks, raw bytes)
    NAME.f32           gguf.quants.dequantize(NAME.q) as little-endian float32 [n_elems]
    NAME.in.f32        (has_input = 1) the float32 input that gguf.quants.quantize
                       turned into NAME.q; our reference quantizer must reproduce NAME.q
                       bit for bit (the package mirrors ggml's reference quantizers)

Cases: real blocks cut from the default model (Q4_1, Q8_0, F32 rows), synthetic blocks
quantized by the package for the types it can quantize (F16, BF16, Q4_0, Q4_1, Q5_0,
Q5_1, Q8_0), and random bytes with sane fp16 scales for the K-quants, which the package
can only dequantize. Deterministic (fixed seed); the total stays around 150 KB.

--vectors OUT_DIR writes weight matrices of the types Gemma 3 270M's Q4_K_M file uses beside
Q8_0 (Q5_0, Q4_K, Q6_K) and Q5_K (Q5_K_M llama files), for tests/kern/test_quant.c (dequantization
bit for bit) and tests/kern/test_matmul.c (every vec_dot and tiled kernel against a double dot
over these values), into OUT_DIR (the fixtures cache, never the repository):
    MANIFEST           one matrix per line: "name type_id n_rows n_in"
    NAME.q             [n_rows][row bytes] blocks
    NAME.f32           gguf.quants.dequantize(NAME.q), little-endian float32 [n_rows][n_in]
Q5_0 rows are gguf.quants.quantize output of Gaussian rows (640 wide, Gemma's n_in) and random
bytes; K-quant rows (2048 wide) are random bytes with sane fp16 scales plus edge blocks: every
code and 6-bit scale at its maximum, all codes zero, Q6_K scales -128 and 127, zero dmin,
negative d. About 250 KB; deterministic for the pinned gguf and numpy.
"""
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader, quants

OUT = os.path.join("tests", "data", "quant")
QK_K = 256
rng = np.random.default_rng(20240611)
manifest = []


def save(name, qtype, qbytes, n, inp=None):
    qbytes = np.ascontiguousarray(qbytes).view(np.uint8).reshape(-1)
    deq = quants.dequantize(qbytes.reshape(-1), qtype) if qtype != T.F32 else qbytes.view(np.float32)
    deq = np.asarray(deq, dtype=np.float32).reshape(-1)
    assert deq.size == n, (name, deq.size, n)
    qbytes.tofile(os.path.join(OUT, name + ".q"))
    deq.astype("<f4").tofile(os.path.join(OUT, name + ".f32"))
    if inp is not None:
        np.asarray(inp, dtype="<f4").reshape(-1).tofile(os.path.join(OUT, name + ".in.f32"))
    manifest.append(f"{name} {int(qtype)} {n} {1 if inp is not None else 0}")


def synth_input(n):
    """Gaussian blocks of varied scale plus edge blocks: zeros, constant, outlier, ramp."""
    x = rng.standard_normal(n).astype(np.float32)
    scales = np.exp(rng.uniform(-6, 3, n // 32)).astype(np.float32)
    x = (x.reshape(-1, 32) * scales[:, None]).reshape(-1)
    x[0:32] = 0.0                                   # all-zero block
    x[32:64] = -0.75                                # constant block (Q4_1/Q5_1: d = 0)
    x[64:96] = rng.standard_normal(32) * 0.01
    x[70] = 40.0                                    # one outlier
    x[96:128] = np.linspace(-1.0, 1.0, 32)          # ramp: many near-ties
    x[128:160] = np.arange(32) - 16.0               # integers
    x[192:224] = np.arange(32) - 15.5               # with 127 below: d = 1, exact .5 ties in Q8
    x[200] = 127.0
    return x.astype(np.float32)


def real_cases(path):
    r = GGUFReader(path)
    by = {t.name: t for t in r.tensors}
    rows = 4
    for name, tname in (("real_q4_1", "blk.0.attn_q.weight"), ("real_q8_0", "token_embd.weight"),
                        ("real_q4_1_ffn_down", "blk.7.ffn_down.weight")):
        t = by[tname]
        ne0 = int(t.shape[0])
        bs, ts = quants.GGML_QUANT_SIZES[t.tensor_type]
        row_bytes = ne0 // bs * ts
        raw = np.asarray(t.data).view(np.uint8).reshape(-1)[: rows * row_bytes]
        save(name, t.tensor_type, raw, rows * ne0)
    t = by["blk.0.attn_norm.weight"]
    save("real_f32", T.F32, np.asarray(t.data).view(np.uint8).reshape(-1), int(t.shape[0]))


def synth_cases():
    n = 1024
    for qt in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.BF16):
        x = synth_input(n)
        save("synth_" + qt.name.lower(), qt, quants.quantize(x.reshape(-1, 256), qt), n, x)
    # F16 through numpy (RNE), with range edges: overflow, subnormals, ties
    x = synth_input(n)
    x[160:176] = [65504, 65519.99, 65520, 1e6, -65520, 6.1e-5, 6.0e-5, 5.96e-8, 2.98e-8,
                  2.99e-8, 1e-9, -3e-6, 1.0009765625, 1.00048828125, 1.00146484375, 2049.0]
    with np.errstate(over="ignore"):
        h = x.astype(np.float16)
    save("synth_f16", T.F16, h, n, x)
    # BF16 edges: inf, -0, max, a tie (0x3f808000 -> even), subnormal
    x = synth_input(n)
    x[160:166] = np.array([0x7f800000, 0x80000000, 0x7f7fffff, 0x3f808000, 0x3f818000, 0x00012345],
                          dtype=np.uint32).view(np.float32)
    save("synth_bf16_edges", T.BF16, quants.quantize(x.reshape(-1, 256), T.BF16), n, x)


def fp16_bytes(vals):
    return np.asarray(vals, dtype=np.float16).view(np.uint8).reshape(-1, 2)


def kquant_cases():
    nb = 4
    n = nb * QK_K
    sizes = quants.GGML_QUANT_SIZES

    def rnd(k):
        return rng.integers(0, 256, size=(nb, k), dtype=np.uint8)

    def scale():
        return fp16_bytes(np.exp(rng.uniform(-9, -3, nb)) * rng.choice([-1, 1], nb))

    def pos_scale():
        return fp16_bytes(np.exp(rng.uniform(-9, -3, nb)))

    # Q2_K: scales[16] qs[64] d dmin
    q2 = np.concatenate([rnd(16), rnd(64), pos_scale(), pos_scale()], axis=1)
    # Q3_K: hmask[32] qs[64] scales[12] d
    q3 = np.concatenate([rnd(32), rnd(64), rnd(12), scale()], axis=1)
    # Q4_K: d dmin scales[12] qs[128]
    q4 = np.concatenate([pos_scale(), pos_scale(), rnd(12), rnd(128)], axis=1)
    # Q5_K: d dmin scales[12] qh[32] qs[128]
    q5 = np.concatenate([pos_scale(), pos_scale(), rnd(12), rnd(32), rnd(128)], axis=1)
    # Q6_K: ql[128] qh[64] scales[16] (int8) d
    q6 = np.concatenate([rnd(128), rnd(64), rnd(16), scale()], axis=1)
    for qt, blocks in ((T.Q2_K, q2), (T.Q3_K, q3), (T.Q4_K, q4), (T.Q5_K, q5), (T.Q6_K, q6)):
        assert blocks.shape[1] == sizes[qt][1], qt
        save("rand_" + qt.name.lower(), qt, blocks, n)


def vector_cases(out):
    vrng = np.random.default_rng(20250617)
    rows, lines = 8, []

    def fp16(vals):
        return np.asarray(vals, dtype=np.float16).view(np.uint8).reshape(-1, 2)

    def put(name, qt, q, n_in):
        q = np.ascontiguousarray(q, dtype=np.uint8).reshape(-1)
        bs, ts = quants.GGML_QUANT_SIZES[qt]
        assert q.size == rows * n_in // bs * ts, name
        deq = np.asarray(quants.dequantize(q, qt), dtype=np.float32).reshape(-1)
        assert deq.size == rows * n_in and np.all(np.isfinite(deq)), name
        q.tofile(os.path.join(out, name + ".q"))
        deq.astype("<f4").tofile(os.path.join(out, name + ".f32"))
        lines.append(f"{name} {int(qt)} {rows} {n_in}")

    def scales(nb, lo=-9, hi=-3, signed=True):
        v = np.exp(vrng.uniform(lo, hi, nb))
        return fp16(v * vrng.choice([-1, 1], nb) if signed else v)

    # Q5_0, 640 wide: gguf's quantizer on Gaussian rows of varied block scales, then raw bytes
    n5 = 640
    x = vrng.standard_normal((rows, n5)).astype(np.float32)
    x *= np.exp(vrng.uniform(-6, 2, (rows, n5 // 32))).repeat(32, axis=1).astype(np.float32)
    x[0, :32] = 0.0
    x[1, :32] = np.arange(32) - 16.0
    put("q5_0_quant", T.Q5_0, quants.quantize(x, T.Q5_0), n5)
    nb = rows * n5 // 32
    raw = vrng.integers(0, 256, size=(nb, 22), dtype=np.uint8)
    raw[:, 0:2] = scales(nb)
    raw[0, 2:] = 0xFF                          # every code 31
    raw[1, 2:] = 0x00                          # every code 0 (-16)
    put("q5_0_raw", T.Q5_0, raw, n5)

    # K-quants, 2048 wide (8 super-blocks a row): random bytes, then edge blocks
    nk = 2048
    nb = rows * nk // QK_K

    def rnd(k):
        return vrng.integers(0, 256, size=(nb, k), dtype=np.uint8)

    d, dmin = scales(nb, signed=False), scales(nb, signed=False)
    d[3] = fp16([-0.004])[0]                   # negative d
    dmin[4] = fp16([0.0])[0]                   # no mins
    q4 = np.concatenate([d, dmin, rnd(12), rnd(128)], axis=1)
    q4[0, 4:] = 0xFF                           # scales, mins 63; codes 15
    q4[1, 16:] = 0x00                          # codes 0
    put("q4_k_raw", T.Q4_K, q4, nk)
    q5 = np.concatenate([d, dmin, rnd(12), rnd(32), rnd(128)], axis=1)
    q5[0, 4:] = 0xFF                           # codes 31
    q5[1, 16:] = 0x00
    put("q5_k_raw", T.Q5_K, q5, nk)
    q6 = np.concatenate([rnd(128), rnd(64), rnd(16), scales(nb)], axis=1)
    q6[0, :192] = 0xFF                         # codes 63 (+31)
    q6[0, 192:208] = 0x80                      # scales -128
    q6[1, :192] = 0x00                         # codes 0 (-32)
    q6[1, 192:208] = 0x7F                      # scales 127
    put("q6_k_raw", T.Q6_K, q6, nk)

    with open(os.path.join(out, "MANIFEST"), "w") as f:
        f.write("\n".join(lines) + "\n")
    total = sum(os.path.getsize(os.path.join(out, p)) for p in os.listdir(out))
    print(f"{len(lines)} matrices, {total} bytes in {out}")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--vectors":
        os.makedirs(sys.argv[2], exist_ok=True)
        vector_cases(sys.argv[2])
        return
    os.makedirs(OUT, exist_ok=True)
    model = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser(
        "~/.cache/kvlm/SmolLM2-135M-Instruct.Q4_1.gguf")
    real_cases(model)
    synth_cases()
    kquant_cases()
    with open(os.path.join(OUT, "MANIFEST"), "w") as f:
        f.write("\n".join(manifest) + "\n")
    total = sum(os.path.getsize(os.path.join(OUT, p)) for p in os.listdir(OUT))
    print(f"{len(manifest)} cases, {total} bytes in {OUT}")


if __name__ == "__main__":
    main()
