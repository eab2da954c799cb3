"""bench/benchutil.py - small helpers the python benches share (standard library only).

    import benchutil                    # with bench/ on sys.path (a script in bench/ has it)
    ap.add_argument("--reps", type=benchutil.positive)
    commit, dirty = benchutil.git_commit()      # short hash of HEAD, tracked files changed?
    rc = benchutil.stop_proc(proc)              # SIGTERM, SIGKILL after 30 s
    benchutil.wait_ready(proc, ready, 60, "kvlm serve", tail)   # poll ready() until True
"""
import argparse
import os
import signal
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def positive(s):
    """argparse type: an int >= 1."""
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: '{s}'")
    return v


def git_commit():
    """(short hash of the repo's HEAD, whether tracked files differ from it); ("nogit", False) outside git."""
    try:
        h = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                           check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return h, bool(dirty)
    except (OSError, subprocess.CalledProcessError):
        return "nogit", False


def stop_proc(proc, timeout=30):
    """SIGTERM, then SIGKILL after timeout s. Returns the exit code (None if killed)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return None
    return proc.returncode


def wait_ready(proc, ready, timeout, what, tail):
    """Polls ready() every 0.1 s until it returns True. RuntimeError with tail() (the
    server's log) if proc exits first or timeout s pass."""
    t_end = time.time() + timeout
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: exited with {proc.returncode} at start:\n{tail()}")
        if time.time() > t_end:
            raise RuntimeError(f"{what}: not ready after {timeout} s:\n{tail()}")
        time.sleep(0.1)
