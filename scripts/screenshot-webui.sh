#!/usr/bin/env bash
# screenshot-webui.sh [BUILD] [OUT] - regenerates the README's picture of the chat page,
# docs/chat.png (OUT): starts `kvlm serve` on a free port with the default model (no
# Whisper, no key), and scripts/screenshot-webui.py holds a two-turn greedy chat in
# Debian's headless Chromium (Selenium from scripts/webui-venv.sh, as the browser test)
# and writes a 1280x720 PNG, re-compressed losslessly. The text is the same at every run
# (greedy); the times and speeds under each reply are this machine's.
# BUILD: default build (run `make` first).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${1:-build}
out=${2:-docs/chat.png}
[ -x "$build/kvlm" ] || { echo "screenshot-webui: no $build/kvlm (run make first)" >&2; exit 1; }
for f in "${KVLM_CHROMIUM:-/usr/bin/chromium}" "${KVLM_CHROMEDRIVER:-/usr/bin/chromedriver}"; do
    [ -x "$f" ] || { echo "screenshot-webui: $f is missing (scripts/setup-deps.sh installs it)" >&2; exit 1; }
done
py=$(scripts/webui-venv.sh)
model=$(scripts/fetch-model.sh)
work=$(mktemp -d /tmp/kvlm-shot.XXXXXX)
. tests/util/serve_lib.sh
trap 'serve_kill_all; rm -rf "$work"' EXIT
serve_start shot -t 2 -m "$model"
serve_wait shot || { echo "screenshot-webui: $serve_error" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
"$py" scripts/screenshot-webui.py --url "$base" --out "$out" \
    --chromium "${KVLM_CHROMIUM:-/usr/bin/chromium}" --chromedriver "${KVLM_CHROMEDRIVER:-/usr/bin/chromedriver}"
serve_stop "$pid" shot || { echo "screenshot-webui: $serve_error" >&2; exit 1; }
