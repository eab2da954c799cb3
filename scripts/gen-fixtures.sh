#!/usr/bin/env bash
# gen-fixtures.sh - writes the tests' small GGUF fixtures into the cache, never the
# repository: gguf/{tiny_llama,all_types,kv_only}.gguf (tests/ref/gen_gguf_fixtures.py)
# and tok/spm-tiny.gguf (tests/ref/gen_spm_gguf.py, from tests/data/tok/spm-tiny.json),
# with an independent writer: the `gguf` package from PyPI in a venv of its own; and
# ct2/*.bin, small CTranslate2 model.bin files (tests/ref/gen_ct2_corpus.py, stdlib only),
# the seeds of fuzz_ct2 and of test_ct2's seed case; and quant/, gguf's dequantization of
# Q5_0/Q4_K/Q5_K/Q6_K weight matrices (tests/ref/gen_quant_golden.py --vectors) for
# tests/kern. No model file is tracked.
# Fixtures dir: $KVLM_FIXTURES, else <cache>/fixtures (cache as in fetch-model.sh).
# A stamp of the generators' inputs makes a second run a no-op. Prints the dir.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache="${KVLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvlm}"
dir="${KVLM_FIXTURES:-$cache/fixtures}"
venv="$cache/fixtures-venv"
pins="gguf==0.19.0 numpy==2.4.6"     # the versions the fixtures were first written with
inputs=("$root/tests/ref/gen_gguf_fixtures.py" "$root/tests/ref/gen_spm_gguf.py" "$root/tests/data/tok/spm-tiny.json"
        "$root/tests/ref/gen_ct2_corpus.py" "$root/tests/ref/gen_quant_golden.py")
stamp=$( { cat "${inputs[@]}"; echo "$pins"; } | sha256sum | cut -d' ' -f1)

if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ]; then
    echo "$dir"
    exit 0
fi
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import gguf, numpy' 2>/dev/null; then
    echo "gen-fixtures: creating $venv ($pins)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    # shellcheck disable=SC2086
    "$venv/bin/python" -m pip install -q --disable-pip-version-check $pins >&2
fi
tmp=$(mktemp -d "${dir%/}.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$venv/bin/python" "$root/tests/ref/gen_gguf_fixtures.py" "$tmp" >&2
"$venv/bin/python" "$root/tests/ref/gen_spm_gguf.py" "$tmp" >&2
"$venv/bin/python" "$root/tests/ref/gen_ct2_corpus.py" "$tmp/ct2" >&2
"$venv/bin/python" "$root/tests/ref/gen_quant_golden.py" --vectors "$tmp/quant" >&2
echo "$stamp" > "$tmp/.stamp"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "gen-fixtures: $dir" >&2
echo "$dir"
