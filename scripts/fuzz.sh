#!/usr/bin/env bash
# fuzz.sh SECONDS - runs every built libFuzzer target in build/fuzz/ for SECONDS
# each, seeded from fuzz/corpus/NAME/ and, for gguf, the generated GGUF fixtures
# (scripts/gen-fixtures.sh; copied: the repo's corpus is never written). Prints one line per target: "fuzz NAME: ok" or "fuzz NAME: FAILED".
# Exit status: number of failed targets (0 = all clean).
set -u
secs=${1:-30}
failed=0
cache="${KVLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvlm}"
export KVLM_FIXTURES="${KVLM_FIXTURES:-$cache/fixtures}"
fixtures=$KVLM_FIXTURES
for bin in build/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin"); name=${name#fuzz_}
    work=$(mktemp -d)
    [ -d "fuzz/corpus/$name" ] && cp -r "fuzz/corpus/$name/." "$work/"
    [ "$name" = gguf ] && [ -d "$fixtures/gguf" ] && cp "$fixtures"/gguf/*.gguf "$fixtures"/tok/*.gguf "$work/" 2>/dev/null
    log=build/fuzz/$name.log
    if ASAN_OPTIONS=detect_leaks=1 "$bin" -max_total_time="$secs" -rss_limit_mb=4096 -timeout=20 \
            -print_final_stats=1 "$work" >"$log" 2>&1; then
        execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$')
        echo "fuzz $name: ok (${execs:-?} inputs in ${secs}s)"
    else
        echo "fuzz $name: FAILED (see $log)"
        tail -n 30 "$log"
        failed=$((failed + 1))
    fi
    rm -rf "$work"
done
exit $failed
