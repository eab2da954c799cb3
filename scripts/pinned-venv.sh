#!/usr/bin/env bash
# pinned-venv.sh NAME MODULE PIN... - a venv of pinned PyPI packages in the cache
# ($KVLM_CACHE, else $XDG_CACHE_HOME/kvlm, else ~/.cache/kvlm), never the repository:
# $cache/NAME, made with python3 -m venv and pip install PIN..., stamped with the pins.
# Made again when it is missing, its pins changed or `import MODULE` fails; otherwise a
# no-op. Prints its python. Used by serve-venv.sh, webui-venv.sh and py-venv.sh.
set -euo pipefail
name=$1 module=$2
shift 2
cache="${KVLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvlm}"
venv="$cache/$name"
pins="$*"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.pin" 2>/dev/null)" != "$pins" ] || \
   ! "$venv/bin/python" -c "import $module" 2>/dev/null; then
    echo "$name: creating $venv ($pins)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" >&2
    echo "$pins" > "$venv/.pin"
fi
echo "$venv/bin/python"
