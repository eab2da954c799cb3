# kvlm - build, set-up and test entry points. See README.md.
#   make            build build/kvlm (release)
#   make run        set-up (packages when root, model fetch), build, a demo answer
#   make test       set-up, build, unit + real-model tests, ASan/UBSan run, bounded fuzzing
#   make asan       the sanitizer build of the tests (build/asan/)
#   make fuzz       libFuzzer targets (clang), run at once for FUZZ_SECONDS of CPU each
#   make install    PREFIX=DIR (default /usr/local; DESTDIR honoured): bin/kvlm, lib/libkvlm.so*,
#                   lib/libkvlm.a, include/kvlm.h, lib/pkgconfig/kvlm.pc; make uninstall PREFIX=DIR

BUILD    ?= build
CC       ?= cc
OPT      ?= -O2
SAN      ?=
PKGS     := libpcre2-8 libcjson libxxhash libutf8proc libmicrohttpd zlib sndfile soxr fftw3f hiredis libzstd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lpcre2-8 -lcjson -lxxhash -lutf8proc -lmicrohttpd -lz -lsndfile -lsoxr -lfftw3f -lhiredis -lzstd)

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wvla -Wno-unused-parameter
# -fPIC: the same objects make libkvlm.a and libkvlm.so (on x86-64 the cost is a GOT
# load for the few globals other files reach; the hot loops use none)
CFLAGS   := -std=c11 -D_GNU_SOURCE -fPIC -Iinclude -Isrc $(OPT) -g -fno-omit-frame-pointer \
            $(WARN) $(PKG_CFLAGS) $(SAN) $(EXTRA_CFLAGS)
LDLIBS   := $(PKG_LIBS) -lm -lpthread

# Per-ISA objects: the base build assumes only x86-64; SIMD files are compiled for
# their ISA and chosen at run time (src/kern/cpu.c), never by -march=native.
AVX2_FLAGS   := -mavx2 -mfma -mf16c
AVX512_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16 -mavx2 -mfma -mf16c
# Sanitizer builds of the SIMD files leave out two checks: UBSan's pointer-overflow
# and ASan's use-after-scope (the kernels' locals are register arrays whose address
# never escapes). With them, attn_avx512.c alone took 96 cpu-s to compile (gcc;
# 29 s without; clang for fuzz: 74 s -> 18 s) and the ASan test_ctx ran 154 s
# (60 s without). Every load and store of the kernels is still checked by ASan,
# UBSan's other checks stay, and the scalar _ref kernels keep every check.
SIMD_SAN := $(if $(SAN),-fno-sanitize=pointer-overflow -fno-sanitize-address-use-after-scope)
# SIMD_OPT (the fuzz build: -O0): the SIMD files' optimization, after OPT. With ASan+UBSan
# and coverage, clang -O1 took 104-180 s of CPU for matmul_avx512.c alone (the two
# sanitizers together: ASan alone 16 s, UBSan alone 29 s); -O0 keeps every check and
# takes 5 s. The fuzz targets run only a row of each tensor through them (fuzz_gguf).
SIMD_OPT ?=

LIB_SRC  := $(sort $(filter-out src/cli/%, $(wildcard src/*/*.c)))
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/*/test_*.c))
TEST_UTIL_SRC := $(sort $(wildcard tests/util/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_UTIL_OBJ := $(TEST_UTIL_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
LIB      := $(BUILD)/libkvlm.a

.PHONY: all setup deps model fixtures run test tests asan fuzz fuzz-bin clean shared shared-path install uninstall
all: $(BUILD)/kvlm

$(BUILD)/obj/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX2_FLAGS) $(SIMD_SAN) $(SIMD_OPT) -MMD -MP -c $< -o $@
$(BUILD)/obj/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX512_FLAGS) $(SIMD_SAN) $(SIMD_OPT) -MMD -MP -c $< -o $@
$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# webui.c puts webui.html into the binary with the assembler's .incbin, which -MMD cannot see
$(BUILD)/obj/src/server/webui.o: src/server/webui.html

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/kvlm: $(CLI_OBJ) $(LIB)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

# ---- the shared library and install ------------------------------------------------
# libkvlm.so.$(VERSION) (soname libkvlm.so.$(SOMAJOR)) exports only the kvlm_ symbols of
# include/kvlm.h (src/kvlm.map); VERSION's minor number grows with additions to the API,
# SOMAJOR with a break of it.
SOMAJOR := 0
VERSION := $(SOMAJOR).1
SHLIB   := $(BUILD)/libkvlm.so.$(VERSION)
$(SHLIB): $(LIB_OBJ) src/kvlm.map
	$(CC) $(CFLAGS) -shared -Wl,-soname,libkvlm.so.$(SOMAJOR) -Wl,--version-script=src/kvlm.map \
	    -Wl,--no-undefined $(LIB_OBJ) -o $@ $(LDLIBS)
shared: $(SHLIB)
# where it is, for python/setup.py (pip install ./python copies it into the package)
shared-path:
	@echo $(SHLIB)

PREFIX  ?= /usr/local
DESTDIR ?=
INSTDIR := $(DESTDIR)$(PREFIX)
install: $(BUILD)/kvlm $(LIB) $(SHLIB)
	install -d $(INSTDIR)/bin $(INSTDIR)/lib/pkgconfig $(INSTDIR)/include
	install -m 755 $(BUILD)/kvlm $(INSTDIR)/bin/kvlm
	install -m 755 $(SHLIB) $(INSTDIR)/lib/libkvlm.so.$(VERSION)
	ln -sf libkvlm.so.$(VERSION) $(INSTDIR)/lib/libkvlm.so.$(SOMAJOR)
	ln -sf libkvlm.so.$(SOMAJOR) $(INSTDIR)/lib/libkvlm.so
	install -m 644 $(LIB) $(INSTDIR)/lib/libkvlm.a
	install -m 644 include/kvlm.h $(INSTDIR)/include/kvlm.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@REQUIRES@|$(PKGS)|' \
	    src/kvlm.pc.in > $(INSTDIR)/lib/pkgconfig/kvlm.pc
	chmod 644 $(INSTDIR)/lib/pkgconfig/kvlm.pc
uninstall:
	rm -f $(INSTDIR)/bin/kvlm $(INSTDIR)/lib/libkvlm.so.$(VERSION) $(INSTDIR)/lib/libkvlm.so.$(SOMAJOR) \
	    $(INSTDIR)/lib/libkvlm.so $(INSTDIR)/lib/libkvlm.a $(INSTDIR)/include/kvlm.h \
	    $(INSTDIR)/lib/pkgconfig/kvlm.pc

$(BUILD)/tests/%: tests/%.c $(TEST_UTIL_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -Itests/util -MMD -MP $< $(TEST_UTIL_OBJ) $(LIB) -o $@ $(LDLIBS) -lcmocka

tests: $(TEST_BIN) $(BUILD)/kvlm

# dev/whisper/pcm16k: kvlm's 16 kHz mono samples (and mel) of an audio file as raw f32,
# the input of the Whisper references (tests/ref/README.md); built with the tests
$(BUILD)/pcm16k: dev/whisper/pcm16k.c $(LIB)
	$(CC) $(CFLAGS) $< $(LIB) -o $@ $(LDLIBS)
tests: $(BUILD)/pcm16k

# tests/ref/gen_kvblock_corpus: the block images fuzz_kvblock is seeded with (scripts/fuzz.sh)
$(BUILD)/gen_kvblock_corpus: tests/ref/gen_kvblock_corpus.c $(LIB)
	$(CC) $(CFLAGS) $< $(LIB) -o $@ $(LDLIBS)
tests: $(BUILD)/gen_kvblock_corpus

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_UTIL_OBJ:.o=.d)

# ---- set-up -----------------------------------------------------------------------
deps:
	@scripts/setup-deps.sh
model: deps
	@scripts/fetch-model.sh >/dev/null
	@scripts/fetch-model.sh whisper >/dev/null
	@scripts/fetch-model.sh gemma3 >/dev/null
# gen-gemma3-tokref.sh and gen-gemma3-ref.sh after gen-fixtures.sh, which replaces the fixtures dir whole
fixtures: deps
	@scripts/gen-fixtures.sh >/dev/null
	@scripts/gen-gemma3-tokref.sh >/dev/null
	@scripts/gen-gemma3-ref.sh >/dev/null
setup: deps model

# ---- the two commands ----------------------------------------------------------------
run: setup
	@$(MAKE) --no-print-directory all
	$(BUILD)/kvlm run -p "Why is the sky blue? Answer in two sentences." -n 96 --temp 0 --stats

ASAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_SECONDS ?= 15

# -O2: the real-model tests run ~2x faster than at -O1, and every access is still checked
asan:
	@$(MAKE) --no-print-directory BUILD=build/asan OPT=-O2 SAN="$(ASAN_FLAGS)" tests

# libFuzzer targets: fuzz/fuzz_NAME.c -> build/fuzz/fuzz_NAME, linked against a
# clang build of the library with coverage and sanitizers.
# The library of the fuzz build holds only the objects the targets link (28 of 64: what
# the linker took from the whole archive, by its -Map); a target that comes to need
# another fails to link with an undefined reference, and its file goes here. Leaving
# out the rest (gemm_avx512.c alone: 166 s of clang with the sanitizers) and the SIMD
# files at -O0 (SIMD_OPT above) took this build from 165 to 31 cpu-s (fuzz_gguf: ~20%
# fewer inputs in its seconds, its kernel rows at -O0).
FUZZ_LIB_SRC := src/audio/audio.c src/audio/mel.c src/core/err.c src/core/pool.c \
    src/kern/attn.c src/kern/attn_avx2.c src/kern/attn_avx512.c src/kern/cpu.c \
    src/kern/matmul_avx2.c src/kern/matmul_avx512.c src/kern/quant.c src/kern/quant_avx2.c \
    src/kern/quant_avx512.c src/kv/kv_block_io.c src/kv/kv_pool.c src/kv/kv_tiers.c \
    src/model/ct2.c src/model/fmap.c src/model/gguf.c src/server/api.c src/server/api_audio.c \
    src/server/api_req.c src/server/api_resp.c src/tok/detok.c src/tok/tok_whisper.c \
    src/tok/tokenizer.c src/tok/tokenizer_bpe.c src/tok/tokenizer_spm.c
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
fuzz-bin:
	@$(MAKE) --no-print-directory BUILD=build/fuzz CC=clang OPT=-O1 SIMD_OPT=-O0 LIB_SRC="$(FUZZ_LIB_SRC)" \
	    SAN="-fsanitize=fuzzer-no-link $(FUZZ_SAN)" build/fuzz/libkvlm.a
	@for f in $(FUZZ_SRC); do \
	    b=build/fuzz/$$(basename $$f .c); \
	    if [ ! -e $$b ] || [ $$f -nt $$b ] || [ build/fuzz/libkvlm.a -nt $$b ]; then \
	        echo "clang $$f -> $$b"; \
	        clang $(filter-out $(SAN),$(CFLAGS)) -O1 -fsanitize=fuzzer $(FUZZ_SAN) $$f build/fuzz/libkvlm.a \
	            -o $$b $(LDLIBS) || exit 1; \
	    fi; \
	done

fuzz: fuzz-bin
	@scripts/fuzz.sh $(FUZZ_SECONDS)

# the builds use every core (they are independent object files), the three in one make so
# that no core waits while another compiles a build's last big SIMD file; tests run one at a time
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
test: setup fixtures
	@$(MAKE) --no-print-directory -j$(JOBS) tests asan fuzz-bin
	@scripts/run-tests.sh $(FUZZ_SECONDS)

clean:
	rm -rf build
