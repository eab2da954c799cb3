/* testutil.h - helpers shared by the test programs (never linked into the library).
 * Tests find the real model through KVLM_MODEL, else the default cache path. */
#ifndef KVLM_TESTUTIL_H
#define KVLM_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Path of the default model (KVLM_MODEL, else $KVLM_CACHE or ~/.cache/kvlm/...).
 * Returns NULL if no such file exists. Static storage. */
const char *test_model_path(void);

/* Path of Gemma 3 270M (KVLM_GEMMA3, else gemma-3-270m-q4_k_m.gguf in the cache, where
 * scripts/fetch-model.sh gemma3 puts it). NULL if there is no such file. Static storage. */
const char *test_gemma3_path(void);

/* Path of a file under tests/data/ (works from the repo root, where make runs
 * the tests, or with KVLM_TEST_DATA set). Static storage, overwritten by the
 * next call. */
const char *test_data_path(const char *rel);

/* Path of a generated GGUF fixture (gguf/..., tok/spm-tiny.gguf), written into the
 * cache by scripts/gen-fixtures.sh (make test runs it; no GGUF file is tracked):
 * $KVLM_FIXTURES/rel, else <cache>/fixtures/rel with the cache of test_model_path.
 * Static storage, overwritten by the next call. */
const char *test_fixture_path(const char *rel);

/* Reads a whole file into a malloc'd buffer (NUL-terminated; *len excludes the
 * NUL). NULL on failure. */
char *test_read_file(const char *path, size_t *len);

/* True under KVLM_TEST_QUICK, which scripts/run-tests.sh sets for the sanitizer
 * build (~10x slower): a real-model test then runs each of its code paths with
 * fewer tokens, steps or repetitions; the release build runs them all. */
bool test_quick(void);

/* Loads the default model into *m (NULL when there is none: tests then skip) and
 * its vocabulary size into *n_vocab. Returns -1 only if a model exists but does
 * not load (the message is printed): a cmocka group setup returns that. */
struct kvlm_model;
int test_model_load(struct kvlm_model **m, int64_t *n_vocab);
/* The same for the model at path (NULL: none, *m = NULL, returns 0). */
int test_model_load_path(const char *path, struct kvlm_model **m, int64_t *n_vocab);

/* splitmix64's finalizer: a well-mixed 64-bit function of x. */
uint64_t test_mix64(uint64_t x);

/* A malloc'd buffer of len bytes (at least 1 allocated) that is a pure function of
 * (key, len): what the tier tests store and expect back. */
uint8_t *test_blob(uint64_t key, size_t len);

/* Monotonic seconds, and a sleep that resumes after signals. */
double test_now_s(void);
void test_sleep_ms(int ms);

/* Makes $TMPDIR/<prefix>-XXXXXX (TMPDIR else /tmp); returns a malloc'd path, or NULL. */
char *test_make_tmpdir(const char *prefix);

/* Removes a directory tree (no symlinks followed). Returns 0, or -1 if any entry stayed. */
int test_rm_tree(const char *dir);

#endif
