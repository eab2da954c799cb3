#!/usr/bin/env bash
# webui_test.sh [BUILD] - the chat page of `kvlm serve` (GET /, issue 17 part 1):
#   1. curl: GET / and HEAD / answer 200 text/html with a complete <!DOCTYPE html>
#      <html>...</html> document without a key on a server with --api-key, while its
#      /v1 routes (models, kvlm/cache, chat/completions) still answer 401 without it;
#      GET /v1/kvlm/cache with the key holds the documented fields, blocks adding up;
#      POST / is 405
#   2. webui_test.py: the page in a real headless Chromium (Debian's /usr/bin/chromium
#      and /usr/bin/chromedriver, Selenium from scripts/webui-venv.sh): a streamed
#      reply, cached tokens on the second turn, the KV gauge, Stop, the key prompt,
#      and (Whisper model cached) an audio file's transcript
#   3. both servers stop cleanly on SIGTERM
# Screenshots: $KVLM_ARTIFACTS, else the cache's artifacts/webui (outside git).
# A missing browser or driver is a failure, not a skip: setup-deps.sh installs them.
# Prints "ok ..." / "FAIL ..." lines, then "N passed, N failed". BUILD: default build.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
build=${1:-build}
cache="${KVLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvlm}"
artifacts=${KVLM_ARTIFACTS:-$cache/artifacts}/webui
chromium=${KVLM_CHROMIUM:-/usr/bin/chromium}
chromedriver=${KVLM_CHROMEDRIVER:-/usr/bin/chromedriver}
work=$(mktemp -d /tmp/kvlm-webui.XXXXXX)
. tests/util/tally.sh
. tests/util/serve_lib.sh
trap 'serve_kill_all; rm -rf "$work"' EXIT

for f in "$chromium" "$chromedriver"; do
    [ -x "$f" ] || { bad "$f is missing (scripts/setup-deps.sh installs chromium and chromium-driver)"; finish; }
done
py=$(scripts/webui-venv.sh) || { bad "the Selenium venv (scripts/webui-venv.sh)"; finish; }
model=$(scripts/fetch-model.sh 2>/dev/null) || { bad "the default model (scripts/fetch-model.sh)"; finish; }

# servers (tests/util/serve_lib.sh): the model, 2 threads
start() { local name=$1; shift; serve_start "$name" -t 2 -m "$model" "$@"; }
wait_port() { serve_wait "$1" || { bad "$serve_error"; return 1; }; }
stop() { if serve_stop "$1" "$2"; then ok "server $2 stopped cleanly"; else bad "$serve_error"; fi; }

# the plain server also transcribes when the Whisper model and the test clip are there
wdir="$cache/whisper-tiny.en"
jfk=${KVLM_JFK:-$root/../shared/data/jfk.flac}
whisper=() audio=()
if [ -f "$wdir/model.bin" ] && [ -f "$jfk" ]; then whisper=(--whisper whisper); audio=(--audio "$jfk")
else echo "# no Whisper model in $wdir or no $jfk: the page's audio step is left out"; fi
key="k-$RANDOM$RANDOM"
start plain "${whisper[@]}"; plain_pid=$pid
start keyed --api-key "$key"; keyed_pid=$pid
wait_port plain || finish; plain=$base
wait_port keyed || finish; keyed=$base

# 1. curl: the page needs no key, the API does
code=$(curl -s -o "$work/page.html" -D "$work/page.hdr" -w '%{http_code}' "$keyed/")
ctype=$(sed -n 's/^[Cc]ontent-[Tt]ype: *\([^;\r]*\).*/\1/p' "$work/page.hdr")
if [ "$code" = 200 ] && [ "$ctype" = text/html ] && head -c 15 "$work/page.html" | grep -qx '<!DOCTYPE html>' &&
   grep -q '^<html' "$work/page.html" && tail -c 8 "$work/page.html" | cmp -s - <(printf '</html>\n') &&
   cmp -s "$work/page.html" src/server/webui.html; then
    ok "GET / without a key: 200 text/html, the complete document ($(wc -c <"$work/page.html") bytes, = webui.html)"
else
    bad "GET / without a key: $code $ctype: $(head -c 200 "$work/page.html")"
fi
if grep -qiE '(src|href|action)=["'"'"']?(https?:)?//' "$work/page.html" || grep -qE "fetch\\(['\"]https?:" "$work/page.html"; then
    bad "the page refers to another origin: $(grep -oiE '(src|href|action)=["'"'"']?(https?:)?//[^ >]*' "$work/page.html" | head -3)"
else
    ok "the page loads nothing from another origin"
fi
code=$(curl -s -o /dev/null -w '%{http_code} %{content_type}' -I "$keyed/")
[ "$code" = "200 text/html; charset=utf-8" ] && ok "HEAD / without a key: $code" || bad "HEAD /: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$keyed/")
[ "$code" = 405 ] && ok "POST /: 405" || bad "POST /: $code"
for route in "GET /v1/models" "GET /v1/kvlm/cache" "POST /v1/chat/completions"; do
    m=${route%% *} path=${route#* }
    data=(); [ "$m" = POST ] && data=(-d '{"messages":[{"role":"user","content":"hi"}]}')
    code=$(curl -s -o "$work/r.json" -w '%{http_code}' -X "$m" "${data[@]}" "$keyed$path")
    if [ "$code" = 401 ] && grep -q '"code":"invalid_api_key"' "$work/r.json"; then ok "$route without the key: 401"
    else bad "$route without the key: $code $(head -c 200 "$work/r.json")"; fi
done
code=$(curl -s -o "$work/cache.json" -w '%{http_code}' -H "Authorization: Bearer $key" "$keyed/v1/kvlm/cache")
if [ "$code" = 200 ] && "$py" - "$work/cache.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
fields = ["object", "model", "whisper_model", "block_tokens", "blocks_total", "blocks_in_use", "blocks_cached",
          "blocks_free", "bytes_total", "bytes_per_token", "lookups", "hits", "evictions", "tier_loads",
          "running_seqs", "queue_len", "requests", "prompt_tokens", "cached_tokens", "completion_tokens"]
assert sorted(c) == sorted(fields), sorted(set(c) ^ set(fields))
assert c["object"] == "kvlm.cache" and c["whisper_model"] is None and c["block_tokens"] == 16
assert c["blocks_total"] > 0 and c["blocks_in_use"] + c["blocks_cached"] + c["blocks_free"] == c["blocks_total"]
assert c["bytes_total"] == c["blocks_total"] * c["block_tokens"] * c["bytes_per_token"], c
PY
then ok "GET /v1/kvlm/cache with the key: 200, the documented fields, blocks add up"
else bad "GET /v1/kvlm/cache with the key: $code $(head -c 300 "$work/cache.json")"; fi

# 2. the browser
rm -rf "$artifacts"; mkdir -p "$artifacts"
t0=$SECONDS
out=$(timeout 180 "$py" tests/server/webui_test.py --url "$plain" --key-url "$keyed" --key "$key" \
      --artifacts "$artifacts" --chromium "$chromium" --chromedriver "$chromedriver" "${audio[@]}" 2>&1)
echo "$out"
echo "# browser test: $((SECONDS - t0)) s"
add_summary "$out" || bad "webui_test.py printed no summary"

# 3. clean stops
stop "$plain_pid" plain
stop "$keyed_pid" keyed
finish
