#!/usr/bin/env bash
# gen-gemma3-tokref.sh - writes <fixtures>/tok/gemma3_ref.json, llama.cpp's tokenizer ids
# for the Gemma 3 corpus (tests/ref/gemma3_tok_corpus.json), which tests/tok/test_tok_gemma3.c
# compares kvlm with. Generated, never tracked: the model from scripts/fetch-model.sh gemma3,
# llama.cpp through the venv of scripts/llama-cpp-venv.sh, tests/ref/gen_gemma3_tok.py
# (which imports its llama.cpp helpers from tests/ref/gen_tok_golden.py).
# Fixtures dir: $KVLM_FIXTURES, else <cache>/fixtures (as scripts/gen-fixtures.sh, which
# replaces that dir whole: run this after it). A stamp of the inputs makes a second run a
# no-op. Prints the file's path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache="${KVLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvlm}"
dir="${KVLM_FIXTURES:-$cache/fixtures}/tok"
out="$dir/gemma3_ref.json"
model=$("$root/scripts/fetch-model.sh" gemma3)
py=$("$root/scripts/llama-cpp-venv.sh")
ref="$root/tests/ref"
stamp=$( { cat "$ref/gemma3_tok_corpus.json" "$ref/gen_gemma3_tok.py" "$ref/gen_tok_golden.py" \
               "$(dirname "$py")/../.pin"; echo "$model"; } | sha256sum | cut -d' ' -f1)
if [ -f "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "$out"
    exit 0
fi
mkdir -p "$dir"
"$py" "$ref/gen_gemma3_tok.py" "$model" "$ref/gemma3_tok_corpus.json" "$out" >&2
echo "$stamp" > "$out.stamp"
echo "$out"
