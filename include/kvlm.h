/* kvlm.h - the public API of kvlm, a C inference engine built around its KV cache.
 *
 * The only header a program using kvlm includes. Handles are opaque; every
 * function that can fail returns a kvlm_err and writes one line of explanation
 * into a caller-supplied buffer (err, errlen; err may be NULL). The library
 * never prints and never exits.
 *
 * Life cycle:
 *   kvlm_model_load()  -> kvlm_model   (mmap'd weights, tokenizer; read-only, shareable)
 *   kvlm_ctx_init()    -> kvlm_ctx     (one sequence: its KV cache, scratch, threads)
 *   kvlm_ctx_prefill() / kvlm_ctx_decode()  feed tokens; kvlm_ctx_logits() reads the
 *                         next-token distribution of the last fed token
 *   kvlm_sampler_*     turn logits into a token
 *   kvlm_ctx_free(), kvlm_model_free()
 * A model must outlive every context made from it.
 */
#ifndef KVLM_H
#define KVLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors -------------------------------------------------------------- */
typedef enum kvlm_err {
    KVLM_OK = 0,
    KVLM_ERR_IO,           /* open/read/mmap failed */
    KVLM_ERR_FORMAT,       /* malformed, truncated or hostile file contents */
    KVLM_ERR_UNSUPPORTED,  /* valid but not supported (architecture, tensor type) */
    KVLM_ERR_NOMEM,        /* allocation failed */
    KVLM_ERR_INVALID,      /* bad argument (token id out of range, bad parameter) */
    KVLM_ERR_CONTEXT_FULL, /* the sequence would exceed the context size */
    KVLM_ERR_BUDGET,       /* the KV memory budget is exhausted */
} kvlm_err;

/* A stable name for the code, e.g. "KVLM_ERR_FORMAT". Never NULL. */
const char *kvlm_err_name(kvlm_err e);

typedef int32_t kvlm_token;
typedef struct kvlm_model kvlm_model;
typedef struct kvlm_ctx kvlm_ctx;
typedef struct kvlm_sampler kvlm_sampler;

/* ---- model ------------------------------------------------------------- */
/* Loads a GGUF file (mmap, zero-copy). The file is validated as hostile input:
 * a corrupt file gives KVLM_ERR_FORMAT with the file, offset and problem in err. */
kvlm_err kvlm_model_load(const char *path, kvlm_model **out, char *err, size_t errlen);
void     kvlm_model_free(kvlm_model *model);   /* NULL is fine */

typedef struct kvlm_model_info {
    const char *arch;        /* "llama"; valid while the model lives */
    const char *name;        /* general.name, or "" */
    int64_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train;
    float   rope_theta, norm_eps;
    int64_t n_params;        /* parameters counted from tensor shapes */
    int64_t file_bytes;
    kvlm_token bos, eos, eot; /* -1 when absent */
} kvlm_model_info;
void kvlm_model_get_info(const kvlm_model *model, kvlm_model_info *out);

/* ---- tokenizer -------------------------------------------------------------- */
/* Tokenizes text[0..len). With parse_special, special-token texts such as
 * "<|im_start|>" become their ids; otherwise they are ordinary text. BOS is
 * added only if add_bos and the model asks for it (tokenizer.ggml.add_bos_token).
 * Writes at most cap ids to out and the full count to *n_out; if the count is
 * larger than cap, returns KVLM_ERR_INVALID (call again with a larger buffer). */
kvlm_err kvlm_tokenize(const kvlm_model *model, const char *text, size_t len,
                       bool add_bos, bool parse_special,
                       kvlm_token *out, size_t cap, size_t *n_out,
                       char *err, size_t errlen);

/* The bytes of one token (not NUL-terminated; may be part of a UTF-8 char).
 * Control tokens give "" unless render_special. Returns the byte count. A
 * return larger than cap means nothing was written (buffer too small). -1 for
 * an invalid id. */
int64_t kvlm_token_to_bytes(const kvlm_model *model, kvlm_token tok, bool render_special,
                            char *buf, size_t cap);

/* Streaming detokenizer: feeds token bytes, emits only complete UTF-8 chars,
 * holding back an incomplete tail until the next token completes it. */
typedef struct kvlm_detok {
    char pending[8];
    size_t n_pending;
} kvlm_detok;
/* Writes complete UTF-8 text to out (NUL-terminated, cap >= 64 recommended) and
 * returns its length. Invalid sequences are replaced by U+FFFD. */
size_t kvlm_detok_push(kvlm_detok *d, const kvlm_model *model, kvlm_token tok,
                       char *out, size_t cap);
/* Flushes any held-back bytes (as U+FFFD). Returns the length written. */
size_t kvlm_detok_flush(kvlm_detok *d, char *out, size_t cap);

/* True for end-of-generation tokens (EOS, EOT, <|im_end|> ...). */
bool kvlm_token_is_eog(const kvlm_model *model, kvlm_token tok);

/* ---- chat template ---------------------------------------------------------- */
typedef struct kvlm_chat_msg {
    const char *role;        /* "system", "user", "assistant" */
    const char *content;
} kvlm_chat_msg;
/* Renders messages with the model's chat template (ChatML for SmolLM2), adding
 * the model's default system message when the first message is not "system",
 * and, with add_assistant, the opening of the assistant's turn. *out is
 * malloc'd; the caller frees it. */
kvlm_err kvlm_chat_render(const kvlm_model *model, const kvlm_chat_msg *msgs, size_t n_msgs,
                          bool add_assistant, char **out, char *err, size_t errlen);

/* ---- inference context ------------------------------------------------------ */
typedef enum kvlm_kv_type { KVLM_KV_F32 = 0, KVLM_KV_F16 = 1 } kvlm_kv_type;

typedef struct kvlm_ctx_params {
    int64_t n_ctx;           /* max tokens in the sequence; 0 = model's training context */
    int     n_threads;       /* 0 = number of online cores */
    bool    no_kv_cache;     /* naive baseline: recompute the whole sequence every step */
    kvlm_kv_type kv_type;    /* K/V element type (default f16) */
} kvlm_ctx_params;
kvlm_ctx_params kvlm_ctx_default_params(void);

kvlm_err kvlm_ctx_init(const kvlm_model *model, const kvlm_ctx_params *params,
                       kvlm_ctx **out, char *err, size_t errlen);
void     kvlm_ctx_free(kvlm_ctx *ctx);   /* NULL is fine */

/* Appends tokens[0..n) to the sequence and runs the model over them (one batch:
 * matrix-matrix work), leaving the next-token logits of the last one in
 * kvlm_ctx_logits(). n >= 1. KVLM_ERR_CONTEXT_FULL if the sequence would exceed
 * n_ctx (nothing is changed then); KVLM_ERR_INVALID for an id out of range. */
kvlm_err kvlm_ctx_decode(kvlm_ctx *ctx, const kvlm_token *tokens, size_t n,
                         char *err, size_t errlen);

/* Makes the sequence equal to tokens[0..n): keeps the longest common prefix
 * of the current sequence and tokens (its K/V stay in the cache), drops the
 * rest, and decodes only the new tail. At least the last token is always
 * recomputed so that logits are fresh. *n_reused (may be NULL) receives the
 * number of tokens taken from the cache. This is what a chat turn calls. */
kvlm_err kvlm_ctx_prefill(kvlm_ctx *ctx, const kvlm_token *tokens, size_t n,
                          size_t *n_reused, char *err, size_t errlen);

/* Drops every token at position >= n_keep (rollback). */
void kvlm_ctx_truncate(kvlm_ctx *ctx, size_t n_keep);

/* Logits of the next token after the last decoded one: [n_vocab] floats,
 * valid until the next decode/prefill/truncate. NULL before the first decode. */
const float *kvlm_ctx_logits(const kvlm_ctx *ctx);

size_t kvlm_ctx_n_past(const kvlm_ctx *ctx);       /* tokens in the sequence */
size_t kvlm_ctx_n_ctx(const kvlm_ctx *ctx);
const kvlm_token *kvlm_ctx_tokens(const kvlm_ctx *ctx); /* [n_past] */

typedef struct kvlm_stats {
    int64_t n_prompt;          /* tokens given to prefill calls */
    int64_t n_reused;          /* of those, taken from the cache */
    int64_t n_prefilled;       /* tokens computed in batches of > 1 */
    int64_t n_decoded;         /* tokens computed one at a time */
    int64_t n_computed;        /* token positions run through the model in all
                                  (larger than the above with no_kv_cache) */
    double  t_prefill_s, t_decode_s;
    int64_t kv_bytes_per_token;          /* all layers, K and V */
    int64_t kv_bytes_per_token_layer;    /* one layer, K and V */
    int64_t kv_bytes_used;               /* n_past * kv_bytes_per_token */
    int64_t kv_bytes_reserved;           /* allocated for the cache */
} kvlm_stats;
void kvlm_ctx_get_stats(const kvlm_ctx *ctx, kvlm_stats *out);
void kvlm_ctx_reset_stats(kvlm_ctx *ctx);

/* ---- sampling ------------------------------------------------------------------- */
typedef struct kvlm_sampler_params {
    float    temp;            /* <= 0: greedy (argmax, lowest id on ties) */
    int32_t  top_k;           /* <= 0: off */
    float    top_p;           /* >= 1: off */
    float    min_p;           /* <= 0: off */
    float    repeat_penalty;  /* 1: off */
    int32_t  repeat_last_n;   /* how many recent tokens the penalty looks at */
    uint64_t seed;
} kvlm_sampler_params;
kvlm_sampler_params kvlm_sampler_default_params(void);

kvlm_err kvlm_sampler_init(const kvlm_sampler_params *params, int64_t n_vocab,
                           kvlm_sampler **out, char *err, size_t errlen);
void     kvlm_sampler_free(kvlm_sampler *s);
/* Picks a token from logits[0..n_vocab) (not modified). Order of the chain, as
 * in llama.cpp: repetition penalty, top-k, temperature, softmax, top-p, min-p,
 * then a seeded draw. */
kvlm_token kvlm_sampler_sample(kvlm_sampler *s, const float *logits);
/* Records a token as part of the history the repetition penalty sees. */
void kvlm_sampler_accept(kvlm_sampler *s, kvlm_token tok);
void kvlm_sampler_reset(kvlm_sampler *s);

#ifdef __cplusplus
}
#endif
#endif
