#!/usr/bin/env bash
# gen-gemma3-ref.sh - writes <fixtures>/ref/gemma3/: llama.cpp's last-position logits of
# Gemma 3 270M on the five prompts of tests/ref/gemma3_prompts.txt (forward_cases.txt and
# lc_<name>.f32, 1 MB each), which tests/nn/test_reference_gemma3.c compares kvlm with.
# Generated, never tracked: the model from scripts/fetch-model.sh gemma3, llama.cpp through
# the venv of scripts/llama-cpp-venv.sh, tests/ref/ref_gemma3.py logits (~10 s; it imports
# its llama.cpp helpers from tests/ref/ref_llama_cpp.py, which imports ref_forward.py). The greedy
# continuations (llama-server) are small and tracked: tests/data/ref/gemma3_greedy_cases.txt.
# Fixtures dir: $KVLM_FIXTURES, else <cache>/fixtures (as scripts/gen-fixtures.sh, which
# replaces that dir whole: run this after it). A stamp of the inputs makes a second run a
# no-op. Prints the directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache="${KVLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvlm}"
dir="${KVLM_FIXTURES:-$cache/fixtures}/ref/gemma3"
model=$("$root/scripts/fetch-model.sh" gemma3)
py=$("$root/scripts/llama-cpp-venv.sh")
ref="$root/tests/ref"
stamp=$( { cat "$ref/gemma3_prompts.txt" "$ref/ref_gemma3.py" "$ref/ref_llama_cpp.py" "$ref/ref_forward.py" \
               "$(dirname "$py")/../.pin"; echo "$model"; } |
         sha256sum | cut -d' ' -f1)
if [ -f "$dir/forward_cases.txt" ] && [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "$dir"
    exit 0
fi
mkdir -p "$(dirname "$dir")"
tmp=$(mktemp -d "${dir%/}.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$py" "$ref/ref_gemma3.py" logits "$model" "$ref/gemma3_prompts.txt" "$tmp" >&2
echo "$stamp" > "$tmp/.stamp"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "$dir"
