#!/usr/bin/env bash
# install_test.sh [BUILD] - `make install` into temporary prefixes, then a program built
# against the installed copy with nothing but pkg-config (issue 17 part 2). Room: tests.
#   1. make install PREFIX=T/usr: bin/kvlm, lib/libkvlm.so.0.N + .so.0 + .so links,
#      lib/libkvlm.a, include/kvlm.h, lib/pkgconfig/kvlm.pc with prefix=T/usr; the soname
#   2. the shared library exports exactly the kvlm_ functions include/kvlm.h declares
#   3. examples/stream.c built with `cc stream.c $(pkg-config --cflags --libs kvlm)` links
#      the installed libkvlm.so.0, and run with LD_LIBRARY_PATH=T/usr/lib on the default
#      model streams the reply the installed `kvlm run --temp 0` gives, and its second
#      turn takes the first turn's tokens from the cache
#   4. the same program linked with the installed libkvlm.a gives it too
#   5. DESTDIR: the files land under DESTDIR, kvlm.pc still says the PREFIX
#   6. make uninstall PREFIX=T/usr removes every file install wrote
# Prints "ok ..." / "FAIL ..." lines, then "N passed, N failed". Needs the model
# (scripts/fetch-model.sh); BUILD (default build) is the release build directory.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
build=${1:-build}
. tests/util/tally.sh

tmp=$(mktemp -d /tmp/kvlm-install.XXXXXX)
prefix=$tmp/usr
model=$(scripts/fetch-model.sh 2>/dev/null) || { bad "the default model (scripts/fetch-model.sh)"; finish; }
question="Why is the sky blue?"
n=24

# 1. install
if make --no-print-directory -s install BUILD="$build" PREFIX="$prefix" >"$tmp/install.log" 2>&1; then
    ok "make install PREFIX=$prefix"
else
    bad "make install PREFIX=$prefix"; sed 's/^/    | /' "$tmp/install.log" | tail -20; finish
fi
lib=$prefix/lib
so=$(cd "$lib" && ls libkvlm.so.0.* 2>/dev/null | head -1)
check "installed files: bin/kvlm lib/$so lib/libkvlm.a include/kvlm.h lib/pkgconfig/kvlm.pc" \
    test -x "$prefix/bin/kvlm" -a -n "$so" -a -f "$lib/libkvlm.a" -a -f "$prefix/include/kvlm.h" \
         -a -f "$lib/pkgconfig/kvlm.pc"
check "links: libkvlm.so -> libkvlm.so.0 -> $so" \
    test "$(readlink "$lib/libkvlm.so")" = libkvlm.so.0 -a "$(readlink "$lib/libkvlm.so.0")" = "$so"
check "soname libkvlm.so.0" \
    sh -c "readelf -d '$lib/$so' | grep -q 'SONAME.*\\[libkvlm.so.0\\]'"
check "kvlm.pc: prefix=$prefix, Libs -lkvlm" \
    sh -c "grep -qx 'prefix=$prefix' '$lib/pkgconfig/kvlm.pc' && grep -q '^Libs:.*-lkvlm' '$lib/pkgconfig/kvlm.pc'"
check "include/kvlm.h is the tree's" cmp -s include/kvlm.h "$prefix/include/kvlm.h"

# 2. exported symbols
grep -o -E '\bkvlm_[a-z0-9_]+\(' include/kvlm.h | tr -d '(' | sort -u >"$tmp/hdr.txt"
nm -D --defined-only "$lib/$so" | awk '{print $3}' | sort -u >"$tmp/so.txt"
if cmp -s "$tmp/hdr.txt" "$tmp/so.txt"; then
    ok "libkvlm.so exports exactly the $(wc -l <"$tmp/hdr.txt") kvlm_ functions of kvlm.h"
else
    bad "exports differ from kvlm.h's functions:"; diff "$tmp/hdr.txt" "$tmp/so.txt" | head -20 | sed 's/^/    | /'
fi

# 3. the example against the shared library, with nothing but pkg-config
export PKG_CONFIG_PATH=$lib/pkgconfig
if cc -std=c11 -Wall -Wextra -Werror examples/stream.c $(pkg-config --cflags --libs kvlm) -o "$tmp/stream" \
      2>"$tmp/cc.log"; then
    ok "cc examples/stream.c \$(pkg-config --cflags --libs kvlm)"
else
    bad "cc examples/stream.c with pkg-config"; sed 's/^/    | /' "$tmp/cc.log" | tail -20; finish
fi
check "the example links $lib/libkvlm.so.0" \
    sh -c "LD_LIBRARY_PATH='$lib' ldd '$tmp/stream' | grep -q 'libkvlm.so.0 => $lib/libkvlm.so.0'"
want=$(LD_LIBRARY_PATH=$lib "$prefix/bin/kvlm" run -m "$model" -p "$question" -n $n --temp 0 -t 2 2>/dev/null)
LD_LIBRARY_PATH=$lib "$tmp/stream" "$model" "$question" "Say it in five words." $n >"$tmp/out.txt" 2>"$tmp/err.txt"
rc=$?
got=$(head -n 1 "$tmp/out.txt")
if [ $rc -eq 0 ] && [ -n "$want" ] && [ "$got" = "$want" ]; then
    ok "the example's first reply is the installed kvlm run's ($(printf '%s' "$want" | wc -w) words)"
else
    bad "the example (rc $rc) gave '$got', kvlm run '$want'"; sed 's/^/    | /' "$tmp/err.txt" | tail -10
fi
cached=$(sed -n 's/^turn 2: [0-9]* prompt tokens, \([0-9]*\) from the cache.*/\1/p' "$tmp/err.txt")
check "its second turn takes the first from the cache (${cached:-none} tokens)" test "${cached:-0}" -gt 0
check "it prints the cache statistics" grep -q '^kv cache: [0-9]* bytes per token' "$tmp/err.txt"

# 4. linked statically from the installed libkvlm.a (its dependencies, kvlm.pc's
#    Requires.private and Libs.private, as the shared libraries Debian's -dev packages give)
if cc -std=c11 examples/stream.c $(pkg-config --cflags kvlm) "$lib/libkvlm.a" \
      $(pkg-config --libs $(pkg-config --print-requires-private kvlm)) -lm -lpthread \
      -o "$tmp/stream_static" 2>"$tmp/cc2.log"; then
    got2=$("$tmp/stream_static" "$model" "$question" "Say it in five words." $n 2>/dev/null | head -n 1)
    check "the statically linked example gives the same reply, without libkvlm.so" \
        sh -c "[ '$(printf '%s' "$got2" | sha256sum)' = '$(printf '%s' "$want" | sha256sum)' ] && \
               ! ldd '$tmp/stream_static' | grep -q libkvlm"
else
    bad "static link against libkvlm.a"; sed 's/^/    | /' "$tmp/cc2.log" | tail -20
fi
unset PKG_CONFIG_PATH

# 5. DESTDIR staging
if make --no-print-directory -s install BUILD="$build" DESTDIR="$tmp/stage" PREFIX=/opt/kvlm >"$tmp/dest.log" 2>&1 &&
   [ -x "$tmp/stage/opt/kvlm/bin/kvlm" ] && grep -qx 'prefix=/opt/kvlm' "$tmp/stage/opt/kvlm/lib/pkgconfig/kvlm.pc"; then
    ok "DESTDIR=$tmp/stage PREFIX=/opt/kvlm: files staged, kvlm.pc says /opt/kvlm"
else
    bad "DESTDIR install"; sed 's/^/    | /' "$tmp/dest.log" | tail -10
fi

# 6. uninstall
make --no-print-directory -s uninstall BUILD="$build" PREFIX="$prefix" >/dev/null 2>&1
left=$(find "$prefix" \( -type f -o -type l \) | wc -l)
check "make uninstall PREFIX=$prefix removes all it installed ($left left)" test "$left" -eq 0
finish
