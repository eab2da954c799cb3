#!/usr/bin/env python3
"""ref_gemma3.py - llama.cpp's references for Gemma 3 270M on the same GGUF (issue 15 part 7).

Room: tests/ref (reference scripts; never run by the C tests). The prompts are the five
of tests/ref/gemma3_prompts.txt (fixed, in their own commit, before any output was
compared), raw (no chat template), tokenized by llama.cpp with BOS added and special
tokens parsed (as llama-server tokenizes a /completion prompt). Two parts:

  logits MODEL PROMPTS OUTDIR
      llama-cpp-python 0.3.36 (the venv of scripts/llama-cpp-venv.sh: AMX off): n_ctx
      4096, 2 threads, n_batch/n_ubatch 512, f16 K/V (the default), flash attention
      off, no extra weight buffer types (no repacking, no AMX: load()). Writes
      OUTDIR/forward_cases.txt and OUTDIR/lc_<name>.f32: llama.cpp's logits at the
      last prompt position, raw little-endian float32 [n_vocab]. Generated into the
      fixtures cache by scripts/gen-gemma3-ref.sh (make test's set-up), not tracked
      (five files of 1 MB).

  greedy MODEL PROMPTS OUT.txt [--server PATH] [--fa on|off|auto]
      llama-server (bench/peers --path llama-server) started here on a free port of
      127.0.0.1 with --no-repack -c 4096 -np 1 -t 2 -fa off; for each prompt
      POST /completion {prompt: the text, n_predict: 64, temperature: 0,
      cache_prompt: false, return_tokens: true}. /tokenize must give the same prompt
      ids as llama-cpp-python. Then llama-cpp-python (as above) is teacher-forced
      along the server's tokens, the prompt fed in the server's batches
      (server_chunks): each block's comments give the smallest top-1 minus top-2
      logit margin and its step, and any step where llama-cpp-python's own
      argmax is another token (with the gap). The server's tokens end with the end
      of generation token if it stopped at one (stop_type eos). OUT.txt is small and
      tracked: tests/data/ref/gemma3_greedy_cases.txt.

Flash attention is off in both parts: llama-server's default (auto) turns it on on
the CPU, where its V sums are kept in f16, a rounding kvlm does not have; --fa auto
reproduces the server's default for a comparison (tests/ref/README.md).

Formats (one block per prompt, '#' starts a comment line):
  forward_cases.txt:  case lc_<name> / source llama.cpp / prompt_hex <hex of the text> /
                      prompt_ids <n> <id>... / logits lc_<name>.f32 / end
  greedy:             case <name> / prompt_ids <n> <id>... / gen_ids <m> <id>... / end
"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_llama_cpp import last_logits, load as lc_load  # noqa: E402  (the SmolLM2 generator's helpers)

GEN_LEN = 64
N_CTX = 4096
THREADS = 2


def prompt_texts(path):
    """[(name, text)] of gemma3_prompts.txt (format in its header)."""
    out, name, lines = [], None, []

    def flush():
        if name is not None:
            out.append((name, "\n".join(lines)))
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.startswith("prompt "):
                flush()
                name, lines = line.split(None, 1)[1].strip(), []
            elif line.startswith("|"):
                if name is None:
                    raise ValueError(f"{path}: text line before any prompt")
                lines.append(line[2:] if line.startswith("| ") else line[1:])
            elif line.strip() and not line.startswith("#"):
                raise ValueError(f"{path}: unexpected line {line!r}")
    flush()
    return out


def load(model_path):
    """llama-cpp-python's context (ref_llama_cpp.load: weights in plain CPU buffers,
    use_extra_bufts = false, so no repacked or AMX weights)."""
    return lc_load(model_path, n_ctx=N_CTX, n_threads=THREADS, n_threads_batch=THREADS, n_batch=512,
                   n_ubatch=512, logits_all=False, flash_attn=False)


def tokenize(llm, text):
    return list(llm.tokenize(text.encode("utf-8"), add_bos=True, special=True))


def eog_set(llm):
    import llama_cpp
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    return {i for i in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, i)}


def cmd_logits(model, prompts, outdir):
    import llama_cpp
    llm = load(model)
    os.makedirs(outdir, exist_ok=True)
    out = [f"# forward_cases.txt - llama.cpp's last-position logits on tests/ref/gemma3_prompts.txt.\n"
           f"# Made by tests/ref/ref_gemma3.py logits (scripts/gen-gemma3-ref.sh); model "
           f"{os.path.basename(model)}, llama-cpp-python {llama_cpp.__version__}, n_ctx {N_CTX}, "
           f"{THREADS} threads, f16 K/V, no flash attention, no repacking.\n"]
    for name, text in prompts:
        ids = tokenize(llm, text)
        llm.reset()
        llm.eval(ids)
        lg = last_logits(llm)
        lg.astype("<f4").tofile(os.path.join(outdir, f"lc_{name}.f32"))
        top = np.argsort(-lg)[:2]
        print(f"logits {name}: {len(ids)} tokens, argmax {top[0]} ({lg[top[0]]:.4f}), "
              f"margin {lg[top[0]] - lg[top[1]]:.4f}", file=sys.stderr)
        out.append(f"\n# top-1 {top[0]} ({lg[top[0]]:.4f}), top-2 {top[1]} ({lg[top[1]]:.4f})\n"
                   f"case lc_{name}\nsource llama.cpp\nprompt_hex {text.encode().hex()}\n"
                   f"prompt_ids {len(ids)} {' '.join(map(str, ids))}\nlogits lc_{name}.f32\nend\n")
    with open(os.path.join(outdir, "forward_cases.txt"), "w") as f:
        f.write("".join(out))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def server_greedy(server, model, prompts, fa):
    """{name: (gen ids, stop_type, server prompt ids)} from a llama-server of our own."""
    port = free_port()
    args = [server, "-m", model, "--host", "127.0.0.1", "--port", str(port), "--no-repack", "-c", str(N_CTX),
            "-np", "1", "-t", str(THREADS), "-fa", fa]
    print("server: " + " ".join(args), file=sys.stderr)
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {proc.returncode}")
            time.sleep(0.2)
        else:
            raise RuntimeError("llama-server did not become healthy")
        res = {}
        for name, text in prompts:
            tok = post(port, "/tokenize", {"content": text, "add_special": True, "parse_special": True})["tokens"]
            r = post(port, "/completion", {"prompt": text, "n_predict": GEN_LEN, "temperature": 0,
                                           "cache_prompt": False, "return_tokens": True})
            res[name] = (list(r["tokens"]), r.get("stop_type", "?"), tok)
            print(f"server {name}: {len(r['tokens'])} tokens, stop {r.get('stop_type')}: {r['content']!r}",
                  file=sys.stderr)
        return res
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def server_chunks(n, n_ubatch=512):
    """The batches llama-server 0.3.36 splits an uncached prompt of n tokens into
    (tools/server/server-context.cpp, update_slots): for its SWA context checkpoints it
    stops a batch 4 + n_ubatch and 4 tokens before the prompt's end. llama.cpp's logits
    depend on that split by up to ~0.08 (the last rows of a small batch take other
    matmul kernels), so the teacher-forced margins are computed with the same split."""
    cuts = sorted({c for c in (n - 4 - n_ubatch, n - 4) if 0 < c < n} | {0, n})
    return list(zip(cuts[:-1], cuts[1:]))


def cmd_greedy(model, prompts, out_path, server, fa):
    import llama_cpp
    srv = server_greedy(server, model, prompts, fa)
    llm = load(model)
    eog = eog_set(llm)
    blocks = []
    for name, text in prompts:
        ids = tokenize(llm, text)
        gen, stop, srv_ids = srv[name]
        if srv_ids != ids:
            raise RuntimeError(f"{name}: llama-server's prompt ids differ from llama-cpp-python's")
        llm.reset()
        for lo, hi in server_chunks(len(ids)):
            llm.eval(ids[lo:hi])
        notes, min_margin, min_step = [], float("inf"), -1
        steps = gen + ([None] if stop == "eos" and gen[-1] not in eog else [])
        for i, want in enumerate(steps):
            lg = last_logits(llm)
            top = np.argsort(-lg)[:2]
            margin = float(lg[top[0]] - lg[top[1]])
            if margin < min_margin:
                min_margin, min_step = margin, i
            if want is None:                     # the server stopped here: end of generation
                if int(top[0]) not in eog:
                    raise RuntimeError(f"{name}: server stopped (eos) but llama-cpp-python's argmax "
                                       f"{top[0]} is not end of generation")
                gen = gen + [int(top[0])]
                break
            if int(top[0]) != want:
                notes.append(f"# step {i}: llama-cpp-python's argmax {top[0]}, the server's {want}, "
                             f"gap {lg[top[0]] - lg[want]:.4f}\n")
            if i + 1 < len(steps):
                llm.eval([want])
        shown = llm.detokenize(gen).decode("utf-8", errors="replace")
        print(f"greedy {name}: {len(gen)} tokens, min margin {min_margin:.4f} at step {min_step}, "
              f"{len(notes)} steps where llama-cpp-python differs", file=sys.stderr)
        blocks.append(f"\n# {name}: {len(ids)} prompt tokens; stop {stop}; min top1-top2 margin "
                      f"{min_margin:.4f} at gen step {min_step}\n# text {json.dumps(shown, ensure_ascii=False)}\n"
                      + "".join(notes) +
                      f"case {name}\nprompt_ids {len(ids)} {' '.join(map(str, ids))}\n"
                      f"gen_ids {len(gen)} {' '.join(map(str, gen))}\nend\n")
    head = (f"# gemma3_greedy_cases.txt - llama-server's greedy continuations of tests/ref/gemma3_prompts.txt.\n"
            f"# Regenerate: tests/ref/ref_gemma3.py greedy (tests/ref/README.md). Model {os.path.basename(model)},\n"
            f"# llama.cpp of llama-cpp-python {llama_cpp.__version__} (bench/peers), llama-server --no-repack "
            f"-c {N_CTX} -np 1 -t {THREADS} -fa {fa};\n"
            f"# /completion: raw prompt (BOS added), n_predict {GEN_LEN}, temperature 0, cache_prompt false.\n"
            f"# Margins and differing steps: llama-cpp-python (f16 K/V, no flash attention, no repacking)\n"
            f"# teacher-forced along the server's tokens, the prompt in the server's batches. An end of\n"
            f"# generation token, if the server stopped at one, is the last gen id.\n")
    with open(out_path, "w") as f:
        f.write(head + "".join(blocks))


def main():
    a = sys.argv[1:]
    if len(a) >= 4 and a[0] == "logits":
        cmd_logits(a[1], prompt_texts(a[2]), a[3])
    elif len(a) >= 4 and a[0] == "greedy":
        opts = dict(zip(a[4::2], a[5::2]))
        server = opts.get("--server") or subprocess.run(
            [os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "peers"),
             "--path", "llama-server"], check=True, capture_output=True, text=True).stdout.strip()
        cmd_greedy(a[1], prompt_texts(a[2]), a[3], server, opts.get("--fa", "off"))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
