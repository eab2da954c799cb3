# tally.sh - sourced by the shell tests (tests/install, tests/python, tests/docs,
# tests/server/webui_test.sh): counts checks and prints them as "ok   ..." / "FAIL ..."
# lines; finish prints the line "N passed, N failed" that scripts/run-tests.sh reads,
# removes the caller's $tmp and exits (1 on a failure); add_summary adds a part's own
# "N passed, N failed" (a Python script's) to the counts.
passed=0 failed=0
ok()   { echo "ok   $*"; passed=$((passed + 1)); }
bad()  { echo "FAIL $*"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
finish() {
    echo "$passed passed, $failed failed"
    [ -n "${tmp:-}" ] && rm -rf "$tmp"
    [ "$failed" -eq 0 ]
    exit $?
}

# add_summary OUTPUT: adds the last "N passed, N failed" line of OUTPUT to $passed and $failed
# (returns 1, adding nothing, when there is none)
add_summary() {
    local line f
    line=$(printf '%s\n' "$1" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
    [ -n "$line" ] || return 1
    f=${line#* passed, }
    passed=$((passed + ${line%% passed*}))
    failed=$((failed + ${f%% failed*}))
}
