#!/usr/bin/env bash
# serve-venv.sh - a venv with the official `openai` client for the server tests
# (tests/server/*.py), in the cache, never the repository. Prints its python.
# The pin is the version the tests were written against; a second run is a no-op.
set -euo pipefail
cache="${KVLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvlm}"
venv="$cache/serve-venv"
pin="openai==3.51.0"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.pin" 2>/dev/null)" != "$pin" ] || \
   ! "$venv/bin/python" -c 'import openai' 2>/dev/null; then
    echo "serve-venv: creating $venv ($pin)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$pin" >&2
    echo "$pin" > "$venv/.pin"
fi
echo "$venv/bin/python"
