#!/usr/bin/env bash
# make_whisper_clips.sh - the espeak-ng test clips of tests/data/whisper/clips/ (issue 13 part 6).
# Every clip is one sentence spoken by espeak-ng (22,050 Hz mono WAV), then resampled by sox
# to 16 kHz mono 16-bit. `-D` turns sox's dither off, so a re-run writes identical bytes
# (sox dithers with a random seed when it requantizes to 16 bits). The sentences are public
# domain (Lincoln, Dickens, Melville, the Harvard sentences) or written for this file.
# Usage: tests/ref/make_whisper_clips.sh [OUTDIR]   (default: tests/data/whisper/clips)
# Needs: espeak-ng 1.51, sox 14.4.2 (Debian packages espeak-ng, sox).
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$here/tests/data/whisper/clips}"
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# clip NAME VOICE SPEED TEXT: espeak-ng -> $tmp/NAME.wav (22,050 Hz) -> sox -> $out/NAME.wav
clip() {
    local name="$1" voice="$2" speed="$3" text="$4"
    echo "espeak-ng -v $voice -s $speed -w $tmp/$name.wav \"$text\"" >&2
    espeak-ng -v "$voice" -s "$speed" -w "$tmp/$name.wav" "$text"
    echo "sox -D $tmp/$name.wav -r 16000 -c 1 -b 16 $out/$name.wav" >&2
    sox -D "$tmp/$name.wav" -r 16000 -c 1 -b 16 "$out/$name.wav"
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$voice" "$speed" \
        "$(soxi -D "$out/$name.wav")" "$text" >> "$tmp/index.tsv"
}

clip us160_fox     en-us     160 "The quick brown fox jumps over the lazy dog near the bank of the river."
clip gb140_lincoln en-gb     140 "Four score and seven years ago our fathers brought forth on this continent a new nation."
clip f3_175_stella en+f3     175 "Please call Stella and ask her to bring these things with her from the store."
clip m7_120_canoe  en-us+m7  120 "The birch canoe slid on the smooth planks."
clip sc200_dickens en-gb-scotland 200 "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness."
clip f2_150_speech en-us+f2  150 "Speech recognition turns spoken words into written text, one window at a time."
clip m3_185_melville en+m3   185 "Call me Ishmael. Some years ago, never mind how long precisely, I thought I would sail about a little."

# index.tsv: name, voice, speed (words per minute), duration (s), text; sorted by name.
{ printf 'name\tvoice\tspeed\tseconds\ttext\n'; sort "$tmp/index.tsv"; } > "$out/index.tsv"
echo "make_whisper_clips: $(wc -l < "$tmp/index.tsv") clips in $out" >&2
