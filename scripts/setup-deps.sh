#!/usr/bin/env bash
# setup-deps.sh - make sure the system packages kvlm builds and tests with are there.
# As root on Debian it installs what is missing with apt-get; otherwise it names
# the missing packages and fails.
set -euo pipefail

# package -> a file that proves it is installed
declare -A need=(
    [build-essential]=/usr/bin/make
    [pkg-config]=/usr/bin/pkg-config
    [libpcre2-dev]=/usr/include/pcre2.h
    [libcjson-dev]=/usr/include/cjson/cJSON.h
    [libcmocka-dev]=/usr/include/cmocka.h
    [libxxhash-dev]=/usr/include/xxhash.h
    [libutf8proc-dev]=/usr/include/utf8proc.h
    [libmicrohttpd-dev]=/usr/include/microhttpd.h
    [libsndfile1-dev]=/usr/include/sndfile.h
    [libsoxr-dev]=/usr/include/soxr.h
    [libfftw3-dev]=/usr/include/fftw3.h
    [zlib1g-dev]=/usr/include/zlib.h
    [libhiredis-dev]=/usr/include/hiredis/hiredis.h
    [libzstd-dev]=/usr/include/zstd.h
    [redis-server]=/usr/bin/redis-server
    [espeak-ng]=/usr/bin/espeak-ng
    [sox]=/usr/bin/sox
    [clang]=/usr/bin/clang
    [libclang-rt-dev]=__fuzzer__
    [python3]=/usr/bin/python3
    [python3-pip]=__pip__
    [python3-venv]=__venv__
    [cmake]=/usr/bin/cmake
    # the chat page's browser test (tests/server/webui_test.sh): Debian's browser and its
    # matching driver, named explicitly so Selenium never tries to download one
    [chromium]=/usr/bin/chromium
    [chromium-driver]=/usr/bin/chromedriver
)

missing=()
for pkg in "${!need[@]}"; do
    f=${need[$pkg]}
    case "$f" in
        __pip__) python3 -m pip --version >/dev/null 2>&1 || missing+=("$pkg") ;;
        __venv__) python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=("$pkg") ;;
        __fuzzer__) ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 \
                        || missing+=("$pkg") ;;
        *) [ -e "$f" ] || missing+=("$pkg") ;;
    esac
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
else
    echo "setup-deps: missing packages: ${missing[*]}" >&2
    echo "setup-deps: install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
