# tally.sh - sourced by the shell tests (tests/install, tests/python): counts checks and
# prints them as "ok   ..." / "FAIL ..." lines; finish prints the line "N passed, N failed"
# that scripts/run-tests.sh reads, removes the caller's $tmp and exits (1 on a failure).
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
