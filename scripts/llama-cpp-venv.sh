#!/usr/bin/env bash
# llama-cpp-venv.sh - a venv with llama-cpp-python (llama.cpp's own tokenizer and
# runtime behind a Python API), the independent reference of tests/ref/gen_gemma3_tok.py.
# In the cache, never the repository; prints its python. PyPI has only the sdist, so
# pip builds llama.cpp from source (cmake, g++; ~10 min on 2 cores, once): GGML_NATIVE
# with AMX off (this VM's CPU reports AMX but faults on it), no llava/mtmd library.
# A second run is a no-op (the pin and the build flags are stamped in the venv).
set -euo pipefail
cache="${KVLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvlm}"
venv="$cache/llama-cpp-venv"
pin="llama-cpp-python==0.3.36"   # the version the project's llama.cpp references use
cmake_args="-DGGML_NATIVE=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF"
stamp="$pin $cmake_args"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.pin" 2>/dev/null)" != "$stamp" ] || \
   ! "$venv/bin/python" -c 'import llama_cpp' 2>/dev/null; then
    echo "llama-cpp-venv: creating $venv ($pin, built from source: several minutes)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc 2>/dev/null || echo 2)" \
        "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-binary llama-cpp-python "$pin" >&2
    echo "$stamp" > "$venv/.pin"
fi
echo "$venv/bin/python"
