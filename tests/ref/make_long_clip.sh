#!/usr/bin/env bash
# make_long_clip.sh - the long recording of bench/whisper (issue 13 part 8): public-domain text
# (Lincoln's Gettysburg Address, 1863, and the opening paragraph of Dickens's A Tale of Two
# Cities, 1859) spoken sentence by sentence by espeak-ng, voices alternating, concatenated and
# resampled by sox to 16 kHz mono 16-bit (`-D`: no dither, so the bytes are reproducible).
# About 3 minutes. Written to the cache, never the repository; prints the WAV's path.
# The text, one sentence a line, goes beside it (whisper-long.txt) for a word-error count.
# A second run is a no-op when the WAV exists and was made by the same commands.
# Usage: tests/ref/make_long_clip.sh [OUT.wav]
#   default: ${KVLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvlm}/whisper-long.wav
# Needs: espeak-ng, sox (Debian packages).
set -euo pipefail
cache="${KVLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvlm}"
out="${1:-$cache/whisper-long.wav}"
txt="${out%.wav}.txt"

sentences=(
"Four score and seven years ago our fathers brought forth on this continent, a new nation, conceived in Liberty, and dedicated to the proposition that all men are created equal."
"Now we are engaged in a great civil war, testing whether that nation, or any nation so conceived and so dedicated, can long endure."
"We are met on a great battle-field of that war."
"We have come to dedicate a portion of that field, as a final resting place for those who here gave their lives that that nation might live."
"It is altogether fitting and proper that we should do this."
"But, in a larger sense, we can not dedicate, we can not consecrate, we can not hallow this ground."
"The brave men, living and dead, who struggled here, have consecrated it, far above our poor power to add or detract."
"The world will little note, nor long remember what we say here, but it can never forget what they did here."
"It is for us the living, rather, to be dedicated here to the unfinished work which they who fought here have thus far so nobly advanced."
"It is rather for us to be here dedicated to the great task remaining before us, that from these honored dead we take increased devotion to that cause for which they gave the last full measure of devotion, that we here highly resolve that these dead shall not have died in vain, that this nation, under God, shall have a new birth of freedom, and that government of the people, by the people, for the people, shall not perish from the earth."
"It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, it was the season of Darkness, it was the spring of hope, it was the winter of despair, we had everything before us, we had nothing before us, we were all going direct to Heaven, we were all going direct the other way."
"In short, the period was so far like the present period, that some of its noisiest authorities insisted on its being received, for good or for evil, in the superlative degree of comparison only."
)
voices=(en-us en-gb en-us+f2 en-us+m3)
speed=150

# The stamp: the commands below and the text, so an edit of either remakes the file.
stamp="$(printf '%s\n' "v1 espeak-ng $(espeak-ng --version | head -1) sox -D -r 16000 -c 1 -b 16" \
         "${voices[*]} $speed" "${sentences[@]}" | sha256sum | cut -c1-16)"
if [ -s "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "$out"; exit 0
fi
mkdir -p "$(dirname "$out")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
parts=()
for i in "${!sentences[@]}"; do
    v="${voices[$((i % ${#voices[@]}))]}"
    f="$tmp/$(printf '%02d' "$i").wav"
    espeak-ng -v "$v" -s "$speed" -w "$f" "${sentences[$i]}"
    parts+=("$f")
done
# espeak-ng writes 22,050 Hz mono s16: concatenate, then one resample to 16 kHz.
sox -D "${parts[@]}" -r 16000 -c 1 -b 16 "$tmp/long.wav"
mv "$tmp/long.wav" "$out"
printf '%s\n' "${sentences[@]}" > "$txt"
echo "$stamp" > "$out.stamp"
echo "make_long_clip: $(soxi -D "$out") s in $out" >&2
echo "$out"
