#!/usr/bin/env bash
# python_tests.sh [BUILD] - the Python package (python/, issue 17 part 3) as a user gets it.
# Room: tests.
#   1. `python3 -m venv V && V/bin/pip install ./python` in a temporary venv, with no
#      LD_LIBRARY_PATH: pip runs the Makefile (make shared) and ships libkvlm.so in the package
#   2. `import kvlm` from another directory loads the package's own libkvlm.so
#   3. python/tests (pytest, from scripts/py-venv.sh's venv in the cache, made visible to the
#      temporary venv by a .pth file) against that installed copy, with BUILD/kvlm as the CLI
# Prints "ok ..." / "FAIL ..." lines and pytest's summary, then "N passed, N failed" (the
# pytest cases plus the checks above). Needs the models (scripts/fetch-model.sh, whisper).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
build=${1:-build}
. tests/util/tally.sh
unset LD_LIBRARY_PATH PYTHONPATH

tmp=$(mktemp -d /tmp/kvlm-python.XXXXXX)
testpy=$(scripts/py-venv.sh 2>"$tmp/venv.log") || { bad "scripts/py-venv.sh"; sed 's/^/    | /' "$tmp/venv.log"; finish; }

# 1. a fresh venv and pip install ./python, exactly as the README says
t0=$SECONDS
if python3 -m venv "$tmp/v" >"$tmp/pip.log" 2>&1 &&
   "$tmp/v/bin/pip" install --disable-pip-version-check ./python >>"$tmp/pip.log" 2>&1; then
    ok "python3 -m venv V && V/bin/pip install ./python ($((SECONDS - t0)) s)"
else
    bad "pip install ./python"; tail -n 30 "$tmp/pip.log" | sed 's/^/    | /'; finish
fi

# 2. import from elsewhere: the installed package and its library
site=$("$tmp/v/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
lib=$(cd / && "$tmp/v/bin/python" -c 'import kvlm; print(kvlm.LIB_PATH)' 2>"$tmp/import.log")
if [ "$lib" = "$site/kvlm/libkvlm.so" ] && [ -f "$lib" ]; then
    ok "import kvlm from / loads $lib"
else
    bad "import kvlm from / gave '$lib'"; sed 's/^/    | /' "$tmp/import.log"
fi

# 3. pytest on the installed copy (run from the temporary directory, so that neither python/
#    nor the repository root is on sys.path)
"$testpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' >"$site/kvlm-test-pytest.pth"
(cd "$tmp" && KVLM_CLI="$root/$build/kvlm" "$tmp/v/bin/python" -m pytest -q -p no:cacheprovider \
    "$root/python/tests" >"$tmp/pytest.log" 2>&1)
sed -n '/^=\{5,\}/,$p' "$tmp/pytest.log" | tail -n 60
summary=$(grep -E '^[0-9]+ (passed|failed)|[0-9]+ (passed|failed).* in [0-9.]+s' "$tmp/pytest.log" | tail -1)
p=$(echo "$summary" | sed -n 's/.*\b\([0-9]\+\) passed.*/\1/p'); f=$(echo "$summary" | sed -n 's/.*\b\([0-9]\+\) failed.*/\1/p')
e=$(echo "$summary" | sed -n 's/.*\b\([0-9]\+\) error.*/\1/p')
p=${p:-0} f=$(( ${f:-0} + ${e:-0} ))
if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then f=1; tail -n 30 "$tmp/pytest.log" | sed 's/^/    | /'; fi
echo "pytest python/tests: $p passed, $f failed"
passed=$((passed + p)); failed=$((failed + f))
finish
