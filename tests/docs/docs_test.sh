#!/usr/bin/env bash
# docs_test.sh [BUILD] - docs/ against what it describes (tests/docs/docs_test.py says
# what is compared): the --help texts of the binary, a live `kvlm serve` (the default
# model on a free port, with an API key and a disk tier, so the auth rules and every
# metric family show), the router and field tables of src/server/, include/kvlm.h and
# libkvlm.a, and the README's first screen and picture. A few seconds.
# Prints "ok ..." / "FAIL ..." lines, then "N passed, N failed". BUILD: default build.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
build=${1:-build}
work=$(mktemp -d /tmp/kvlm-docs.XXXXXX)
. tests/util/tally.sh
. tests/util/serve_lib.sh
trap 'serve_kill_all; rm -rf "$work"' EXIT

model=$(scripts/fetch-model.sh 2>/dev/null) || { bad "the default model (scripts/fetch-model.sh)"; finish; }
key="k-$RANDOM$RANDOM"
serve_start docs -t 1 -m "$model" --kv-mem 8M --api-key "$key" --cache-dir "$work/kv"
serve_wait docs || { bad "$serve_error"; finish; }
out=$(python3 tests/docs/docs_test.py --build "$build" --url "$base" --key "$key" 2>&1)
echo "$out"
add_summary "$out" || bad "docs_test.py printed no summary"
if serve_stop "$pid" docs; then ok "server stopped cleanly"; else bad "$serve_error"; fi
finish
