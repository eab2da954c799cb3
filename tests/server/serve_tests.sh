#!/usr/bin/env bash
# serve_tests.sh [BUILD_DIR] [--quick] - `kvlm serve` end to end on loopback, with
# the official openai client: the API checks (test_openai.py --kvlm; --quick: fewer
# concurrent requests), tenant isolation (test_tenants.py), a load test (load_test.py,
# 96 requests; skipped with --quick, as under ASan), and a graceful SIGTERM with a stream open (exit status 0,
# the stream ended with an error event and [DONE]), and back-pressure
# (test_limits.py: 413, 429 with Retry-After), a streaming client that stops
# reading while others stream (test_stall.py: paused, cut off, counted, nothing
# leaked), the KV cache tiers (test_tiers.py:
# --cache-dir restarts, a shared redis-server killed, frozen and corrupted, kill -9
# mid-spill, two writers), and with the Whisper model cached, transcriptions
# (test_audio.py, curl -F 4xx checks).
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
    out=$(timeout 900 "$py" tests/server/test_openai.py --kvlm --url "$url" $quick 2>&1); echo "$out"; tally "$out"
    # 96 requests of 32 clients: three rounds, every kind of request (shared system prompt or
    # not, streamed or not, hung up) many times over; 200 repeated the same
    if [ "$quick" != --quick ]; then
        out=$(timeout 600 "$py" tests/server/load_test.py --url "$url" --requests 96 2>&1); echo "$out"; tally "$out"
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

# a client that stops reading mid-stream (issue 16): a 4 KiB stream queue and a long
# model id (every event carries it) so its buffers fill in a few hundred tokens; a
# short stall time, longer under the sanitizer (the others' first tokens must come
# before the cut)
stall=2; [ "$quick" = --quick ] && stall=4
if start stall --stream-queue 4096 --stream-stall-timeout $stall --model-id "stall-$(printf 'x%.0s' $(seq 240))"; then
    out=$(timeout 600 "$py" tests/server/test_stall.py --url "$url" --stall $stall 2>&1)
    echo "$out"; tally "$out"
    stop "$pid" stall
fi

# KV cache tiers (issue 14): test_tiers.py starts its own servers and its own
# redis-server (a unix socket in $work/tiers, --save "" --appendonly no), because it
# kills, restarts and freezes them mid-request; every child it starts dies with it
# (PR_SET_PDEATHSIG, and killed at its exit, SIGTERM included), so this script's trap
# and timeout cover them. About 60 s (Gemma 3's restart on its --cache-dir: 7 s when
# the machine is idle); --quick: shorter prompts, no load or timing part.
# Without redis-server its Redis parts print a "skip" line each.
tq=; [ "$quick" = --quick ] && tq=--quick
out=$(timeout 900 "$py" tests/server/test_tiers.py --kvlm "$build/kvlm" --work "$work/tiers" \
      --redis-server "${KVLM_REDIS_SERVER:-/usr/bin/redis-server}" $tq 2>&1)
echo "$out"; tally "$out"

# Whisper (issue 13): POST /v1/audio/transcriptions with the openai client in every
# response_format (test_audio.py) and curl -F's 4xx cases; skipped (with the reason)
# when the model is not cached or this build cannot load it yet
wdir="${KVLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvlm}/whisper-tiny.en"
jfk=${KVLM_JFK:-$root/../shared/data/jfk.flac}
if [ ! -f "$wdir/model.bin" ] || [ ! -f "$jfk" ]; then
    echo "skip whisper: no model in $wdir or no $jfk"
else
    rm -f "$work/whisper.port"
    "$build/kvlm" serve --port 0 --port-file "$work/whisper.port" -t 2 --whisper whisper --max-upload 2M \
        >"$work/whisper.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 600); do [ -s "$work/whisper.port" ] && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if [ ! -s "$work/whisper.port" ]; then
        echo "skip whisper: kvlm serve --whisper whisper did not start (no Whisper support in this build?): $(tail -1 "$work/whisper.log")"
    else
        url="http://127.0.0.1:$(cat "$work/whisper.port")/v1"
        out=$(timeout 900 "$py" tests/server/test_audio.py --url "$url" --audio "$jfk" 2>&1); echo "$out"; tally "$out"
        # curl_4xx STATUS NAME CURL-ARGS...: the status and an OpenAI error object
        curl_4xx() {
            local want=$1 name=$2 got; shift 2
            got=$(curl -s -o "$work/curl.out" -w '%{http_code}' "$@" "$url/audio/transcriptions")
            if [ "$got" = "$want" ] && grep -q '"error":{"message":' "$work/curl.out"; then
                echo "ok   curl: $name: $want"; passed=$((passed + 1))
            else
                echo "FAIL curl: $name: got $got, want $want: $(head -c 300 "$work/curl.out")"; failed=$((failed + 1))
            fi
        }
        head -c 3000000 /dev/urandom >"$work/big3m"
        head -c 2097153 /dev/urandom >"$work/big2m1"
        curl_4xx 400 "no file" -F model=whisper-1
        curl_4xx 400 "response_format xml" -F file=@"$jfk" -F model=whisper-1 -F response_format=xml
        curl_4xx 400 "word granularity" -F file=@"$jfk" -F model=whisper-1 -F response_format=verbose_json \
            -F 'timestamp_granularities[]=word'
        curl_4xx 400 "language de" -F file=@"$jfk" -F model=whisper-1 -F language=de
        curl_4xx 400 "stream true" -F file=@"$jfk" -F model=whisper-1 -F stream=true
        curl_4xx 404 "unknown model" -F file=@"$jfk" -F model=whisper-large
        curl_4xx 400 "not audio" -F file=@"$root/README.md" -F model=whisper-1
        curl_4xx 400 "not multipart" -d 'model=whisper-1&file=x'
        curl_4xx 413 "3 MB body over --max-upload 2M" -F file=@"$work/big3m" -F model=whisper-1
        curl_4xx 413 "a file of 2M + 1 bytes" -F file=@"$work/big2m1" -F model=whisper-1
        curl_4xx 405 "GET" -X GET
        stop "$pid" whisper
    fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
