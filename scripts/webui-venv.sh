#!/usr/bin/env bash
# webui-venv.sh - a venv with Selenium for the chat page's browser test
# (tests/server/webui_test.py), in the cache, never the repository. Prints its python.
# The browser and its driver are Debian's (chromium, chromium-driver: setup-deps.sh),
# given to Selenium by path, so Selenium Manager never tries to download one.
# The pin is the version the test was written against (4.52 wants a certifi newer than
# PyPI serves here); a second run is a no-op.
set -euo pipefail
cache="${KVLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvlm}"
venv="$cache/webui-venv"
pin="selenium==4.51.0"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.pin" 2>/dev/null)" != "$pin" ] || \
   ! "$venv/bin/python" -c 'import selenium' 2>/dev/null; then
    echo "webui-venv: creating $venv ($pin)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$pin" >&2
    echo "$pin" > "$venv/.pin"
fi
echo "$venv/bin/python"
