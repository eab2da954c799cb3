#!/usr/bin/env bash
# serve_tests.sh [BUILD_DIR] [--quick] - `kvlm serve` end to end on loopback, with
# the official openai client: the API checks (test_openai.py --kvlm), tenant
# isolation (test_tenants.py), a load test (load_test.py; skipped with --quick,
# as under ASan), and a graceful SIGTERM with a stream open (exit status 0,
# the stream ended with an error event and [DONE]), and back-pressure
# (test_limits.py: 413, 429 with Retry-After).
# Prints each part's lines and ends with "N passed, N failed" over all parts.
set -u
build=${1:-build}
quick=${2:-}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
py=$(scripts/serve-venv.sh) || { echo "0 passed, 1 failed"; exit 1; }
work=$(mktemp -d)
passed=0 failed=0
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$work"; }
trap cleanup EXIT

# start NAME ARGS...: a server on an ephemeral port; sets $url and $pid
start() {
    local name=$1; shift
    rm -f "$work/$name.port"
    "$build/kvlm" serve --port 0 --port-file "$work/$name.port" -t 2 "$@" >"$work/$name.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 600); do [ -s "$work/$name.port" ] && break; sleep 0.1; done
    if [ ! -s "$work/$name.port" ]; then
        echo "FAIL server $name did not start:"; tail -20 "$work/$name.log"; failed=$((failed + 1)); return 1
    fi
    url="http://127.0.0.1:$(cat "$work/$name.port")/v1"
}

# tally OUTPUT: adds a part's "N passed, N failed" line
tally() {
    local line p f
    line=$(printf '%s\n' "$1" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
    if [ -z "$line" ]; then failed=$((failed + 1)); return; fi
    p=$(echo "$line" | sed 's/ passed.*//'); f=$(echo "$line" | sed 's/.* passed, \([0-9]*\) failed.*/\1/')
    passed=$((passed + p)); failed=$((failed + f))
}

# stop PID NAME: SIGTERM, exit status 0 within 20 s, no sanitizer report
stop() {
    kill -TERM "$1"
    local rc=0
    for _ in $(seq 200); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$1" 2>/dev/null; then echo "FAIL server $2 ignored SIGTERM"; failed=$((failed + 1)); return; fi
    wait "$1"; rc=$?
    if [ $rc -ne 0 ] || grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error' "$work/$2.log"; then
        echo "FAIL server $2 exited with $rc"; tail -30 "$work/$2.log"; failed=$((failed + 1))
    else
        echo "ok   server $2 stopped cleanly"; passed=$((passed + 1))
    fi
}

# the sanitizer build (--quick) prefills ~10x slower: its requests get more time
[ "$quick" = --quick ] && export KVLM_TEST_TIMEOUT=300
if start api; then
    out=$(timeout 900 "$py" tests/server/test_openai.py --kvlm --url "$url" 2>&1); echo "$out"; tally "$out"
    if [ "$quick" != --quick ]; then
        out=$(timeout 600 "$py" tests/server/load_test.py --url "$url" 2>&1); echo "$out"; tally "$out"
    fi
    # SIGTERM with a stream open: the client sees the stream end with an error event and [DONE]
    curl -sN "$url/chat/completions" -d '{"model":"'"$(basename "$(cat "$work/api.log" | sed -n 's/.*model id "\([^"]*\)".*/\1/p')")"'","max_tokens":3000,"stream":true,"messages":[{"role":"user","content":"Tell a very long story."}]}' >"$work/stream.out" 2>&1 &
    cpid=$!
    for _ in $(seq 100); do grep -q '"content"' "$work/stream.out" 2>/dev/null && break; sleep 0.1; done
    stop "$pid" api
    wait "$cpid"
    if grep -q 'shutting down' "$work/stream.out" && tail -c 20 "$work/stream.out" | grep -q 'DONE'; then
        echo "ok   an open stream ends with an error event and [DONE] on SIGTERM"; passed=$((passed + 1))
    else
        echo "FAIL open stream on SIGTERM:"; tail -c 400 "$work/stream.out"; failed=$((failed + 1))
    fi
fi

printf 'KEY_A a\nKEY_B b\n# comment\n' >"$work/keys"
if start tenants --api-keys "$work/keys"; then
    out=$(timeout 300 "$py" tests/server/test_tenants.py --url "$url" --key-a KEY_A --key-b KEY_B 2>&1)
    echo "$out"; tally "$out"
    stop "$pid" tenants
fi

if start limits --parallel 1 --queue 1 --max-body 4096; then
    out=$(timeout 300 "$py" tests/server/test_limits.py --url "$url" 2>&1)
    echo "$out"; tally "$out"
    stop "$pid" limits
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
