#!/usr/bin/env bash
# fuzz.sh SECONDS - runs every built libFuzzer target in build/fuzz/ for SECONDS
# of CPU each, seeded from fuzz/corpus/NAME/ and, for gguf and ct2, the generated model
# fixtures (scripts/gen-fixtures.sh), for kvblock the block images build/gen_kvblock_corpus
# writes (copied or written into a temporary dir: the repo's corpus is never written). Prints one line per target: "fuzz NAME: ok" or "fuzz NAME: FAILED".
# The targets run at once (libFuzzer is single-threaded): with more targets than
# cores each runs SECONDS * targets / cores of wall time, so each still gets about
# SECONDS of CPU (3 targets, 2 cores, 20 s: 30 s in all instead of 60 s).
# Lines come in target order once all have finished.
# Exit status: number of failed targets (0 = all clean).
set -u
secs=${1:-30}
failed=0
cache="${KVLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvlm}"
export KVLM_FIXTURES="${KVLM_FIXTURES:-$cache/fixtures}"
fixtures=$KVLM_FIXTURES
bins=()
for bin in build/fuzz/fuzz_*; do [ -x "$bin" ] && bins+=("$bin"); done
[ ${#bins[@]} -gt 0 ] || exit 0
cores=$(nproc 2>/dev/null || echo 1)
wall=$secs
[ ${#bins[@]} -gt "$cores" ] && wall=$(( (secs * ${#bins[@]} + cores - 1) / cores ))

# fuzz_one BIN: runs one target; its result line (and on failure the log's tail)
# goes to build/fuzz/NAME.result
fuzz_one() {
    local bin=$1 name work log execs
    name=$(basename "$bin"); name=${name#fuzz_}
    work=$(mktemp -d)
    [ -d "fuzz/corpus/$name" ] && cp -r "fuzz/corpus/$name/." "$work/"
    [ "$name" = gguf ] && [ -d "$fixtures/gguf" ] && cp "$fixtures"/gguf/*.gguf "$fixtures"/tok/*.gguf "$work/" 2>/dev/null
    [ "$name" = ct2 ] && [ -d "$fixtures/ct2" ] && cp "$fixtures"/ct2/*.bin "$work/" 2>/dev/null
    [ "$name" = kvblock ] && [ -x build/gen_kvblock_corpus ] && build/gen_kvblock_corpus "$work" >/dev/null
    log=build/fuzz/$name.log
    if ASAN_OPTIONS=detect_leaks=1 "$bin" -max_total_time="$wall" -rss_limit_mb=4096 -timeout=20 \
            -print_final_stats=1 "$work" >"$log" 2>&1; then
        execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$')
        echo "fuzz $name: ok (${execs:-?} inputs in ${wall}s)"
    else
        echo "fuzz $name: FAILED (see $log)"
        tail -n 30 "$log"
    fi >"build/fuzz/$name.result"
    rm -rf "$work"
}

for bin in "${bins[@]}"; do fuzz_one "$bin" & done
wait
for bin in "${bins[@]}"; do
    name=$(basename "$bin"); name=${name#fuzz_}
    if [ -s "build/fuzz/$name.result" ]; then cat "build/fuzz/$name.result"; else echo "fuzz $name: FAILED (no result)"; fi
    grep -q "^fuzz $name: ok" "build/fuzz/$name.result" 2>/dev/null || failed=$((failed + 1))
    rm -f "build/fuzz/$name.result"
done
exit $failed
