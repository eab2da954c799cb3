# shellcheck shell=bash disable=SC2034,SC2154   # reads the caller's $build and $work, sets its $pid, $base, $serve_error
# serve_lib.sh - sourced (bash) by the scripts that run `kvlm serve` on loopback
# (tests/server/webui_test.sh, tests/docs/docs_test.sh, scripts/screenshot-webui.sh):
# start one on an ephemeral port, wait until it listens, stop it with SIGTERM.
# The caller sets $build (the build folder) and $work (a scratch folder it removes);
# server NAME writes $work/NAME.port and $work/NAME.log. A function that fails
# returns 1 with the reason in $serve_error. serve_kill_all in the caller's EXIT trap
# kills whatever is left.

serve_pids=()
serve_error=

# serve_start NAME ARGS...: `kvlm serve ARGS` on a free port, in the background; sets $pid
serve_start() {
    local name=$1; shift
    rm -f "$work/$name.port"
    "$build/kvlm" serve --port 0 --port-file "$work/$name.port" "$@" >"$work/$name.log" 2>&1 &
    pid=$!
    serve_pids+=("$pid")
}

# serve_wait NAME: sets $base (http://127.0.0.1:PORT) once server NAME listens (30 s at most)
serve_wait() {
    for _ in $(seq 300); do [ -s "$work/$1.port" ] && break; sleep 0.1; done
    if [ ! -s "$work/$1.port" ]; then serve_error="server $1 did not start: $(tail -3 "$work/$1.log")"; return 1; fi
    base="http://127.0.0.1:$(cat "$work/$1.port")"
}

# serve_stop PID NAME: SIGTERM; success when it exits with status 0 within 20 s and its
# log holds no sanitizer report
serve_stop() {
    kill -TERM "$1"
    for _ in $(seq 200); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$1" 2>/dev/null; then serve_error="server $2 ignored SIGTERM"; return 1; fi
    local rc=0
    wait "$1" || rc=$?
    if [ $rc -ne 0 ] || grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error' "$work/$2.log"; then
        serve_error="server $2 exited with $rc: $(tail -5 "$work/$2.log")"
        return 1
    fi
}

serve_kill_all() {
    local p
    for p in "${serve_pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    return 0
}
