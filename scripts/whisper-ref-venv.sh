#!/usr/bin/env bash
# whisper-ref-venv.sh - the venv of Whisper's independent references (tests/ref/*whisper*,
# bench/whisper): CTranslate2 and faster-whisper from PyPI, numpy, HF tokenizers.
# In the cache, never the repository; prints its python. faster-whisper is installed
# --no-deps (PyAV and onnxruntime are not needed: audio is handed over as numpy arrays,
# and `av` is stubbed by the scripts that import faster_whisper). A second run is a no-op.
set -euo pipefail
cache="${KVLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvlm}"
venv="$cache/whisper-ref-venv"
pins="ctranslate2==4.8.5 numpy==2.3.5 tokenizers==0.22.1 huggingface-hub==0.36.0 tqdm==4.67.1 pyyaml==6.0.3"
fw="faster-whisper==1.2.1"
stamp="$pins $fw"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.pin" 2>/dev/null)" != "$stamp" ] || \
   ! "$venv/bin/python" -c 'import ctranslate2, numpy, tokenizers' 2>/dev/null; then
    echo "whisper-ref-venv: creating $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    # shellcheck disable=SC2086
    "$venv/bin/python" -m pip install -q --disable-pip-version-check $pins >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$fw" >&2
    echo "$stamp" > "$venv/.pin"
fi
echo "$venv/bin/python"
