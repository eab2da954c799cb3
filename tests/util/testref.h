/* testref.h - the golden case files of the forward-pass references and the comparisons
 * made on them, shared by tests/nn/test_reference.c (SmolLM2: tests/data/ref/, from
 * tests/ref/ref_forward.py and ref_llama_cpp.py) and tests/nn/test_reference_gemma3.c
 * (Gemma 3: tests/ref/ref_gemma3.py). The file format, one block per case, '#' comments:
 *   case <name>
 *   prompt_ids <n> <id> ... <id>
 *   gen_ids <m> <id> ...              (greedy cases)
 *   logits <file> / source <name>     (forward cases: raw little-endian f32 [n_vocab])
 *   prompt_hex <hex of the prompt's bytes>   (optional)
 *   end
 * Other keys are ignored. */
#ifndef KVLM_TESTREF_H
#define KVLM_TESTREF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"

typedef struct ref_case {
    char name[64];
    kvlm_token *prompt;      /* [n_prompt] */
    size_t n_prompt;
    kvlm_token *gen;         /* [n_gen] (greedy cases) */
    size_t n_gen;
    char logits[128];        /* the logits file's name (forward cases) */
    char source[32];         /* "numpy" | "llama.cpp" (forward cases) */
    char *text;              /* prompt_hex decoded ([n_text] bytes, NUL after them), or NULL */
    size_t n_text;
} ref_case;

typedef struct ref_case_list {
    ref_case *v;
    size_t n;
} ref_case_list;

/* Reads the blocks of the file at path into *out (appended). 0 on success; on failure
 * prints the file and line, frees *out and returns -1. */
int  test_ref_read_cases(const char *path, ref_case_list *out);
void test_ref_free_cases(ref_case_list *l);   /* empty afterwards */

/* The raw little-endian f32 [n_vocab] at path, malloc'd; NULL (printed) on a missing
 * file or a wrong size. */
float *test_ref_read_logits(const char *path, int64_t n_vocab);

/* A context on model with n_ctx positions and n_threads (default params otherwise);
 * fails the test if it cannot be made. */
kvlm_ctx *test_ref_ctx(const kvlm_model *model, int64_t n_ctx, int n_threads, bool no_kv_cache);
/* kvlm_ctx_decode, failing the test (with the message) on an error */
void test_ref_decode(kvlm_ctx *ctx, const kvlm_token *ids, size_t n);
/* Decodes c's prompt into ctx and returns the logits at its last position (ctx's). */
const float *test_ref_prompt_logits(kvlm_ctx *ctx, const ref_case *c);
/* fails the test unless every id is in [0, n_vocab) */
void test_ref_check_ids(const kvlm_token *ids, size_t n, int64_t n_vocab);

/* Argmax, lowest id on ties (NaN never wins). */
kvlm_token test_ref_argmax(const float *l, int64_t n);

/* |got - ref| over [n]: the largest (NaN counts as the worst), where, and the mean. */
typedef struct ref_diff {
    double max, mean;
    int64_t at;
    bool finite;             /* every got[i] finite */
} ref_diff;
ref_diff test_ref_logits_diff(const float *got, const float *ref, int64_t n);

/* Teacher-forced along c->gen: ctx holds c's prompt (decoded by the caller); at every
 * step kvlm's argmax is compared with the reference token, which is then decoded. A step
 * where they differ is a near-tie if kvlm's top logit minus its logit of the reference
 * token is <= tie_tol, else bad. The first few misses are printed. Since kvlm's logits
 * do not depend on how tokens are batched, the steps before first_miss are also what a
 * free-running greedy generation gives. */
enum { REF_MAX_MISSES = 8 };
typedef struct ref_greedy {
    size_t n_exact, n_tie;   /* steps equal, near-ties */
    size_t first_miss;       /* step of the first miss, n_gen if none */
    bool bad;                /* a miss that is not a near-tie */
    size_t n_miss;           /* the first REF_MAX_MISSES misses: */
    size_t miss_step[REF_MAX_MISSES];
    kvlm_token miss_got[REF_MAX_MISSES];   /* kvlm's argmax there ... */
    float miss_gap[REF_MAX_MISSES];        /* ... its logit minus kvlm's logit of the reference token */
} ref_greedy;
ref_greedy test_ref_greedy(kvlm_ctx *ctx, const ref_case *c, int64_t n_vocab, float tie_tol);

#endif
