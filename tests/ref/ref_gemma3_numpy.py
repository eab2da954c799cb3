#!/usr/bin/env python3
"""ref_gemma3_numpy.py - the exact arithmetic behind the Gemma 3 270M references (issue 15 part 7).

Room: tests/ref (reference scripts; never run by the C tests). A float64 numpy forward
pass of the gemma3 architecture over the GGUF's tensors dequantized by
`gguf.quants.dequantize` (gguf 0.19.0 and numpy, the venv of scripts/gen-fixtures.sh),
written from ../shared/GEMMA3.md and llama.cpp's src/models/gemma3.cpp, with no
activation rounding and float64 K/V: the value both llama.cpp and kvlm approximate
(both round every matmul input to 8 bits, differently). It settles the steps where
kvlm's greedy token and llama-server's differ: which one the exact logits prefer, and
by how much.

    PY=~/.cache/kvlm/fixtures-venv/bin/python
    $PY tests/ref/ref_gemma3_numpy.py MODEL tests/data/ref/gemma3_greedy_cases.txt \\
        tests/data/ref/gemma3_greedy_exact.txt [--logits OUTDIR]   (~2 min, ~3 GB)

For every greedy case it runs the prompt, then steps along llama-server's tokens (a
float64 K/V cache) and writes, per step, the exact logit of llama-server's token and
the exact top 4. With --logits it also writes OUTDIR/np_<name>.f32, the exact logits
at the last prompt position (raw little-endian float32 [n_vocab]), to compare kvlm
and llama.cpp's forward references with (tests/ref/README.md gives the figures).

The forward, per layer il (window layers il % 6 < 5: RoPE base 10,000 and keys in
[pos - 511, pos]; the others base 1e6 and every earlier key):
  x = E[ids] * sqrt(640);  h = rmsnorm(x) * attn_norm
  q, k, v = h Wq^T, h Wk^T, h Wv^T; q, k per head: rmsnorm * q_norm / k_norm; NeoX RoPE
  x += rmsnorm(softmax(q k^T / 16 + mask) v Wo^T) * post_attention_norm
  h = rmsnorm(x) * ffn_norm;  x += rmsnorm((gelu_tanh(h Wg^T) * h Wu^T) Wd^T) * post_ffw_norm
  logits = rmsnorm(x) * output_norm . E^T
(eps 1e-6; the norm weights already hold Gemma's +1.)

Output, one block per case, '#' starts a comment line:
    case <name>
    step <i> <ref id> <its exact logit> <id1> <logit1> ... <id4> <logit4>
    end
"""
import os
import sys

import numpy as np

N_SWA, SWA_PERIOD, BASE_SWA, EPS, TOP = 512, 6, 10000.0, 1e-6, 4


class Model:
    def __init__(self, path):
        import gguf
        r = gguf.GGUFReader(path)
        self.t = {t.name: t for t in r.tensors}
        a = "gemma3."
        kv = {f.name: f for f in r.fields.values()}

        def num(key):
            f = kv[a + key]
            return f.parts[f.data[0]][0].item()
        self.D, self.L = num("embedding_length"), num("block_count")
        self.H, self.HKV, self.HD = num("attention.head_count"), num("attention.head_count_kv"), num("attention.key_length")
        self.base = num("rope.freq_base")
        self.E = self.w("token_embd.weight")                  # [V][D]
        self.out_norm = self.w("output_norm.weight")
        names = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_q_norm", "attn_k_norm", "attn_output",
                 "post_attention_norm", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down", "post_ffw_norm"]
        self.layers = [{n: self.w(f"blk.{il}.{n}.weight") for n in names} for il in range(self.L)]

    def w(self, name):
        import gguf
        t = self.t[name]
        return np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float64)

    def rope(self, x, pos, base):
        """NeoX RoPE: x [n][h][HD], element i paired with i + HD/2."""
        half = self.HD // 2
        ang = pos[:, None] * base ** (-np.arange(half, dtype=np.float64) * 2 / self.HD)[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        a, b = x[..., :half], x[..., half:]
        return np.concatenate([a * c - b * s, a * s + b * c], -1)

    def forward(self, ids, cache):
        """Logits [n][V] of ids at positions len(cache[0]) ... (cache: per layer [K, V],
        K/V: [n_past][HKV][HD], extended here)."""
        n, p0 = len(ids), (len(cache[0][0]) if cache else 0)
        if not cache:
            cache.extend([[np.zeros((0, self.HKV, self.HD)), np.zeros((0, self.HKV, self.HD))]
                          for _ in range(self.L)])
        pos = np.arange(p0, p0 + n, dtype=np.float64)
        x = self.E[np.asarray(ids)] * np.sqrt(self.D)
        G = self.H // self.HKV
        for il, P in enumerate(self.layers):
            swa = il % SWA_PERIOD < SWA_PERIOD - 1
            base = BASE_SWA if swa else self.base
            h = rms(x, P["attn_norm"])
            q = rms((h @ P["attn_q"].T).reshape(n, self.H, self.HD), P["attn_q_norm"])
            k = rms((h @ P["attn_k"].T).reshape(n, self.HKV, self.HD), P["attn_k_norm"])
            v = (h @ P["attn_v"].T).reshape(n, self.HKV, self.HD)
            q = self.rope(q, pos, base) / np.sqrt(self.HD)
            cache[il][0] = K = np.concatenate([cache[il][0], self.rope(k, pos, base)])
            cache[il][1] = V = np.concatenate([cache[il][1], v])
            qi, kj = pos[:, None], np.arange(len(K))[None, :]
            mask = (kj > qi) | ((qi - kj >= N_SWA) if swa else False)          # [n][n_kv]
            s = np.einsum("ihd,jhd->hij", q, np.repeat(K, G, axis=1))
            s = np.where(mask[None], -np.inf, s)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            o = np.einsum("hij,jhd->ihd", s, np.repeat(V, G, axis=1)).reshape(n, self.H * self.HD)
            x = x + rms(o @ P["attn_output"].T, P["post_attention_norm"])
            h = rms(x, P["ffn_norm"])
            g = h @ P["ffn_gate"].T
            g = 0.5 * g * (1 + np.tanh(np.sqrt(2 / np.pi) * (g + 0.044715 * g ** 3)))
            x = x + rms((g * (h @ P["ffn_up"].T)) @ P["ffn_down"].T, P["post_ffw_norm"])
        return rms(x, self.out_norm) @ self.E.T


def rms(x, w):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + EPS) * w


def read_cases(path):
    """[(name, prompt ids, gen ids)] of a greedy case file."""
    out, cur = [], {}
    for line in open(path):
        w = line.split()
        if not w or w[0].startswith("#"):
            continue
        if w[0] == "case":
            cur = {"name": w[1]}
        elif w[0] in ("prompt_ids", "gen_ids"):
            cur[w[0]] = [int(i) for i in w[2:]]
            assert len(cur[w[0]]) == int(w[1])
        elif w[0] == "end":
            out.append((cur["name"], cur["prompt_ids"], cur["gen_ids"]))
    return out


def main():
    a = sys.argv[1:]
    if len(a) not in (3, 5) or (len(a) == 5 and a[3] != "--logits"):
        sys.exit(__doc__)
    model_path, cases_path, out_path = a[:3]
    logits_dir = a[4] if len(a) == 5 else None
    m = Model(model_path)
    blocks = []
    for name, prompt, gen in read_cases(cases_path):
        cache = []
        lg = m.forward(prompt, cache)[-1]
        if logits_dir:
            os.makedirs(logits_dir, exist_ok=True)
            lg.astype("<f4").tofile(os.path.join(logits_dir, f"np_{name}.f32"))
        lines, min_margin = [], (np.inf, -1)
        for i, want in enumerate(gen):
            top = np.argsort(-lg)[:TOP]
            min_margin = min(min_margin, (lg[top[0]] - lg[top[1]], i))
            lines.append(f"step {i} {want} {lg[want]:.6f} " + " ".join(f"{t} {lg[t]:.6f}" for t in top) + "\n")
            if int(top[0]) != want:
                lines.append(f"# step {i}: the exact top token is {top[0]}, {lg[top[0]] - lg[want]:.4f} above "
                             f"llama-server's {want}\n")
            if i + 1 < len(gen):
                lg = m.forward([want], cache)[-1]
        print(f"{name}: {len(gen)} steps, exact min margin {min_margin[0]:.4f} at step {min_margin[1]}",
              file=sys.stderr)
        blocks.append(f"\n# {name}: exact min top1-top2 margin {min_margin[0]:.4f} at step {min_margin[1]}\n"
                      f"case {name}\n" + "".join(lines) + "end\n")
    head = ("# gemma3_greedy_exact.txt - float64 numpy logits along llama-server's greedy tokens\n"
            "# (tests/data/ref/gemma3_greedy_cases.txt). Regenerate: tests/ref/ref_gemma3_numpy.py.\n"
            f"# Model {os.path.basename(model_path)}; per step: llama-server's token, its exact logit, the\n"
            f"# exact top {TOP} (id logit).\n")
    with open(out_path, "w") as f:
        f.write(head + "".join(blocks))


if __name__ == "__main__":
    main()
