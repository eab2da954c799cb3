#!/usr/bin/env bash
# run-tests.sh [FUZZ_SECONDS] - runs every cmocka test program of the release
# build (build/tests) and the ASan+UBSan build (build/asan/tests), then the
# fuzz targets, and closes with the line "N passed, N failed" (test cases;
# a program that crashes or prints no summary counts as one failure).
set -u
fuzz_secs=${1:-30}
passed=0 failed=0 skipped=0
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

run_one() {   # $1 = label, $2 = binary
    local out rc p f s t0=$SECONDS
    # the sanitizer build is ~10x slower: its slowest real-model tests check fewer cases
    if [ "$1" = asan ]; then out=$(KVLM_TEST_QUICK=1 timeout 900 "$2" 2>&1); rc=$?
    else out=$(timeout 900 "$2" 2>&1); rc=$?; fi
    # a program may run several cmocka groups: their summaries add up
    p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
    f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
    s=$(printf '%s\n' "$out" | sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
    p=${p:-0} f=${f:-0} s=${s:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    if [ "$p" -eq 0 ] && [ "$f" -eq 0 ] && [ "$s" -eq 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    printf '%-8s %-40s %3d passed %3d failed %3d skipped %4ds\n' "$1" "${2#*/tests/}" "$p" "$f" "$s" $((SECONDS - t0))
    if [ "$f" -ne 0 ]; then printf '%s\n' "$out" | tail -n 40 | sed 's/^/    | /'; fi
}

for dir in build/tests build/asan/tests; do
    [ -d "$dir" ] || continue
    label=release; [ "$dir" = build/asan/tests ] && label=asan
    while IFS= read -r bin; do run_one "$label" "$bin"; done \
        < <(find "$dir" -type f -name 'test_*' -perm -u+x | sort)
done

# a script printing "N passed, N failed" last: $1 = label, $2 = name, $3 = timeout (s), then the command
run_script() {
    local label=$1 name=$2 secs=$3 out rc line p f t0=$SECONDS
    shift 3
    out=$(timeout "$secs" "$@" 2>&1); rc=$?
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
    p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p'); f=$(echo "$line" | sed -n 's/.* passed, \([0-9]*\) failed.*/\1/p')
    p=${p:-0} f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f))
    printf '%-8s %-40s %3d passed %3d failed %3d skipped %4ds\n' "$label" "$name" "$p" "$f" 0 $((SECONDS - t0))
    if [ "$f" -ne 0 ]; then printf '%s\n' "$out" | grep -v '^ok ' | tail -n 40 | sed 's/^/    | /'; fi
}

# kvlm serve end to end with the openai client: the release build with the load
# test, then the sanitizer build (API checks, tenants, SIGTERM) without it
for b in build build/asan; do
    [ -x "$b/kvlm" ] || continue
    label=release; extra=
    [ "$b" = build/asan ] && { label=asan; extra=--quick; }
    run_script "$label" server/serve_tests.sh 1200 tests/server/serve_tests.sh "$b" $extra
done

# make install into temporary prefixes and a program built against the installed copy
[ -x build/kvlm ] && run_script release install/install_test.sh 600 tests/install/install_test.sh build

# docs/ against the binary's --help, a live server, src/server's tables and kvlm.h (a few seconds)
[ -x build/kvlm ] && run_script release docs/docs_test.sh 120 tests/docs/docs_test.sh build

# the chat page (GET /) in Debian's headless Chromium through Selenium; a missing browser
# or driver fails (setup-deps.sh installs them). Screenshots: <cache>/artifacts/webui
[ -x build/kvlm ] && run_script release server/webui_test.sh 300 tests/server/webui_test.sh build

# the Python package: pip install ./python into a temporary venv, pytest on the real models
[ -x build/kvlm ] && run_script release python/python_tests.sh 600 tests/python/python_tests.sh build

if ls build/fuzz/fuzz_* >/dev/null 2>&1; then
    while IFS= read -r line; do
        echo "$line"
        case "$line" in
            "fuzz "*": ok"*) passed=$((passed + 1)) ;;
            "fuzz "*": FAILED"*) failed=$((failed + 1)) ;;
        esac
    done < <(scripts/fuzz.sh "$fuzz_secs")
fi

echo
if [ "$skipped" -gt 0 ]; then echo "$passed passed, $failed failed, $skipped skipped"; else echo "$passed passed, $failed failed"; fi
[ "$failed" -eq 0 ]
