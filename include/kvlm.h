/* kvlm.h - the public API of kvlm, a C inference engine built around its KV cache.
 *
 * The only header a program using kvlm includes. Handles are opaque; every
 * function that can fail returns a kvlm_err and writes one line of explanation
 * into a caller-supplied buffer (err, errlen; err may be NULL). The library
 * never prints and never exits.
 *
 * Life cycle:
 *   kvlm_model_load()  -> kvlm_model   (mmap'd weights, tokenizer; read-only, shareable)
 *   kvlm_cache_init()  -> kvlm_cache   (optional: a KV block pool with a prefix index,
 *                         shared by contexts; a context makes a private one otherwise)
 *   kvlm_ctx_init()    -> kvlm_ctx     (one sequence: its block table, scratch, threads)
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
typedef struct kvlm_cache kvlm_cache;

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
    int64_t n_swa;           /* sliding window of the window layers in positions, 0: none */
    int64_t n_layer_swa;     /* layers that attend only the last n_swa positions (gemma3: 15 of 18) */
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
/* K/V element types. q8: 8-bit integers with an f16 scale per 32 channels of one
 * position (K and V alike, 8.5 bits per element, like llama.cpp's q8_0); q4: 4-bit
 * the same way (4.5 bits, like q4_0). Both need head_dim to be a multiple of 32,
 * and attention over them runs in a Hadamard-rotated basis when head_dim is a
 * power of two (outliers spread over the channels before quantization). */
/* bf16: the high half of an f32 (8-bit exponent, 7-bit mantissa). K and V types
 * are chosen separately (kv_type, kv_type_v); KVLM_KV_SAME: V as K.
 * kivi4, kivi2 (KIVI, Liu et al. 2024): 4- or 2-bit codes with a scale and a
 * minimum; K is quantized per channel over each span of 64 positions, V per
 * position over 64 channels (4.5 or 2.5 bits per element, K and V alike). The
 * newest positions, those of the current residual group of kv_residual
 * positions, stay in f32 and are read as such; V is quantized once per block as
 * it fills, K once per span. Needs head_dim to be a multiple of 64, and a KIVI K
 * a kv_residual of 64, 128 or 256 (whole spans). */
typedef enum kvlm_kv_type {
    KVLM_KV_SAME = -1, KVLM_KV_F32 = 0, KVLM_KV_F16 = 1, KVLM_KV_Q8 = 2, KVLM_KV_Q4 = 3, KVLM_KV_BF16 = 4,
    KVLM_KV_KIVI4 = 5, KVLM_KV_KIVI2 = 6
} kvlm_kv_type;
/* "f32", "f16", "bf16", "q8", "q4", "kivi4", "kivi2" <-> the type; from_name
 * returns false for any other name. */
const char *kvlm_kv_type_name(kvlm_kv_type type);
bool        kvlm_kv_type_from_name(const char *name, kvlm_kv_type *out);

/* ---- the KV cache ----------------------------------------------------------------
 * All K/V bytes live in a pool of fixed-size blocks (16 positions x every layer's K
 * and V) carved from one allocation of mem_bytes (PagedAttention). Each sequence
 * maps its positions to blocks through a block table. Full blocks are published in
 * a prefix index under a chained hash of (parent block, token ids, model
 * fingerprint, namespace): a later sequence whose tokens start the same way reuses
 * them instead of computing them (automatic prefix caching). Blocks nobody uses
 * stay cached on an LRU list and are evicted oldest first when memory is needed.
 * Reuse is exact: logits are bitwise those of computing from scratch.
 * A cache may be shared by many contexts of one model, used from one thread at a
 * time (the library takes no locks). It is reference-counted: contexts hold a
 * reference, so kvlm_cache_free may come before theirs. */
/* Tiers below the RAM pool (issue 14): published blocks also go to a disk
 * directory and/or Redis, and a prefix-index miss looks there before computing.
 * All zero: no tiers. A tier that fails (disk full, Redis down) costs only
 * misses, never a failed request or a wrong token. */
typedef enum kvlm_cache_write {
    KVLM_CACHE_WRITE_THROUGH = 0,  /* every published block, asynchronously; a request's
                                      blocks are below before its response ends */
    KVLM_CACHE_WRITE_EVICT = 1,    /* only blocks RAM evicts (and, at exit, what is cached) */
} kvlm_cache_write;
typedef struct kvlm_tier_params {
    const char *dir;               /* disk tier directory (created if missing); NULL or "" = none */
    int64_t     disk_bytes;        /* disk tier budget; 0 = KVLM_TIER_DISK_DEFAULT */
    const char *redis;             /* "redis://[user:pass@]host[:port][/db]" or "unix:///path.sock",
                                      comma-separated for several nodes; NULL or "" = none */
    int64_t     redis_ttl_s;       /* TTL of each Redis key in seconds; 0 = none */
    kvlm_cache_write write;
    bool        compress;          /* zstd-compress block images in the tiers */
} kvlm_tier_params;
#define KVLM_TIER_DISK_DEFAULT ((int64_t)4 << 30)
#define KVLM_MAX_TIERS 2            /* disk, then Redis */
/* Upper bounds (ms) of the load-latency histogram buckets; the last bucket is +Inf. */
#define KVLM_TIER_HIST_BOUNDS_MS { 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000 }
#define KVLM_TIER_HIST_BUCKETS 11

typedef struct kvlm_tier_stats {
    char    name[8];               /* "disk", "redis" */
    int64_t hits, misses;          /* block lookups that found / did not find an image */
    int64_t invalid;               /* images found that failed verification (discarded) */
    int64_t errors;                /* failed calls (I/O errors, Redis down, timeouts) */
    int64_t puts, dropped;         /* images written; writes given up (queue full) */
    int64_t evictions;             /* images the tier removed for its budget */
    int64_t bytes_read, bytes_written;
    int64_t n_items, bytes_stored; /* what the tier holds now (disk: exact; Redis: written by us) */
    int64_t load_hist[KVLM_TIER_HIST_BUCKETS];  /* lookups by latency, KVLM_TIER_HIST_BOUNDS_MS */
    double  load_seconds;          /* summed lookup latency */
} kvlm_tier_stats;

typedef struct kvlm_cache_params {
    size_t       mem_bytes;  /* budget for K/V; 0 = enough for one sequence of n_ctx tokens */
    int64_t      n_ctx;      /* used only when mem_bytes is 0; 0 = the model's training context */
    kvlm_kv_type kv_type;    /* K element type, and V's unless kv_type_v (default f16) */
    kvlm_kv_type kv_type_v;  /* V element type, or KVLM_KV_SAME (the default) */
    bool         poison;     /* debug: freed blocks are filled with NaN, so stale reads show */
    int64_t      kv_residual; /* KIVI: positions per residual group, 16..256 dividing 256
                                 (64..256 with KIVI K); 0 = KVLM_KV_RESIDUAL_DEFAULT */
    kvlm_tier_params tiers;   /* disk / Redis tiers below the pool; zero = none */
} kvlm_cache_params;
#define KVLM_KV_RESIDUAL_DEFAULT 128
kvlm_cache_params kvlm_cache_default_params(void);

/* KVLM_ERR_BUDGET if mem_bytes is below one block (the message says how big one is).
 * With tiers: KVLM_ERR_IO if the directory cannot be created or used, KVLM_ERR_INVALID
 * for a bad Redis URL (KVLM_ERR_UNSUPPORTED for rediss://). A Redis that is down at
 * start is not an error: it is retried. */
kvlm_err kvlm_cache_init(const kvlm_model *model, const kvlm_cache_params *params,
                         kvlm_cache **out, char *err, size_t errlen);
/* Drops the caller's reference; the last one first writes what is pending to the
 * tiers (write-evict: also every cached block). NULL is fine. */
void     kvlm_cache_free(kvlm_cache *cache);
/* Waits until every block published so far is in every tier (a no-op without tiers).
 * What a program calls before it exits, or a signal handler's thread on SIGTERM. */
void     kvlm_cache_flush(kvlm_cache *cache);

typedef struct kvlm_cache_stats {
    int64_t block_tokens;          /* positions per block (16) */
    int64_t n_blocks;              /* blocks in the pool */
    int64_t n_in_use;              /* held by live sequences */
    int64_t n_cached;              /* held by nobody, kept for prefix hits (LRU) */
    int64_t n_free;
    int64_t lookups, hits;         /* prefix-index lookups of full blocks, and hits */
    int64_t evictions;             /* cached blocks reclaimed for new data */
    int64_t copies;                /* copy-on-write block copies */
    int64_t bytes_total;           /* the pool's K/V bytes */
    int64_t bytes_per_token;       /* all layers, K and V */
    int64_t bytes_per_token_layer; /* one layer, K and V */
    int64_t tier_loads;            /* blocks loaded from a tier into the pool */
    int     n_tiers;
    kvlm_tier_stats tier[KVLM_MAX_TIERS];   /* [n_tiers], in lookup order */
} kvlm_cache_stats;
void kvlm_cache_get_stats(const kvlm_cache *cache, kvlm_cache_stats *out);

/* K and V bytes of one position (all layers) for a type of both: what the pool spends. */
/* Bytes of the blocks one sequence of n_pos positions holds in use (whole blocks
 * of 16): every layer's ceil(n_pos / 16) blocks; with window (a model with
 * sliding-window layers) its window layers' only those covering the last n_swa
 * positions, as the pool lets the rest go. -1 for a type the model cannot use. */
int64_t kvlm_kv_bytes_sequence(const kvlm_model *model, kvlm_kv_type type, int64_t n_pos, bool window);
int64_t kvlm_kv_bytes_per_token(const kvlm_model *model, kvlm_kv_type type);

/* ---- inference context ------------------------------------------------------ */
typedef struct kvlm_ctx_params {
    int64_t n_ctx;           /* max tokens in the sequence; 0 = model's training context */
    int     n_threads;       /* 0 = number of online cores */
    bool    no_kv_cache;     /* naive baseline: recompute the whole sequence every step */
    kvlm_kv_type kv_type;    /* K (and V) element type of a private cache (default f16) */
    kvlm_kv_type kv_type_v;  /* V element type, or KVLM_KV_SAME (the default) */
    kvlm_cache *cache;       /* shared cache (the context takes a reference), or NULL
                                for a private one sized by kv_mem */
    size_t  kv_mem;          /* budget of a private cache; 0 = n_ctx tokens' worth */
    int64_t kv_residual;     /* KIVI residual group of a private cache (kvlm_cache_params) */
    bool    no_prefix_cache; /* neither publish blocks nor look prefixes up */
    uint64_t cache_ns;       /* prefix namespace (tenant, salt): no sharing across values */
    kvlm_tier_params tiers;  /* tiers of a private cache (kvlm_cache_params) */
    /* Context shift (llama.cpp's --context-shift): when a decode does not fit, keep
     * the first n_keep tokens (plus the BOS the model adds, as llama.cpp counts it),
     * drop half of the rest, and move the others down, their K re-rotated to the new
     * positions (not recomputed) instead of returning KVLM_ERR_CONTEXT_FULL. Units: the
     * dropped count is rounded to whole blocks of 16 (KIVI caches: n_keep and it to
     * the residual group). The one path outside the bitwise contract: a shifted
     * sequence publishes nothing. KVLM_ERR_UNSUPPORTED at init for a model with
     * sliding-window layers (Gemma 2/3). */
    bool    context_shift;
    int     n_keep;          /* tokens kept at the start (>= 0; default 0, llama.cpp's) */
} kvlm_ctx_params;
kvlm_ctx_params kvlm_ctx_default_params(void);

kvlm_err kvlm_ctx_init(const kvlm_model *model, const kvlm_ctx_params *params,
                       kvlm_ctx **out, char *err, size_t errlen);
void     kvlm_ctx_free(kvlm_ctx *ctx);   /* NULL is fine */

/* Appends tokens[0..n) to the sequence and runs the model over them (one batch:
 * matrix-matrix work), leaving the next-token logits of the last one in
 * kvlm_ctx_logits(). n >= 1. KVLM_ERR_CONTEXT_FULL if the sequence would exceed
 * n_ctx (nothing is changed then); KVLM_ERR_INVALID for an id out of range.
 * With context_shift the sequence is filled to n_ctx, shifted, and so on until
 * every token is in (n may exceed n_ctx); an error after a shift leaves the
 * tokens decoded before it. KVLM_ERR_BUDGET when the KV budget cannot hold them:
 * nothing is appended, except on a model with sliding-window layers (Gemma 3),
 * whose tokens run 512 at a time (one forward batch) so that the windows slide between
 * batches: there the batches done before the budget ran out stay in the sequence
 * (kvlm_ctx_n_past() tells how many tokens it holds, and kvlm_ctx_logits() are the
 * last one's), as after a context shift. */
kvlm_err kvlm_ctx_decode(kvlm_ctx *ctx, const kvlm_token *tokens, size_t n,
                         char *err, size_t errlen);

/* Makes the sequence equal to tokens[0..n): keeps the longest common prefix
 * of the current sequence and tokens (its K/V stay in the cache), or, when the
 * prefix index holds a longer one (blocks published by any context of the same
 * cache, model and namespace), takes that; drops the rest and decodes only the
 * new tail. At least the last token is always recomputed so that logits are
 * fresh. *n_reused (may be NULL) receives the number of tokens taken from the
 * cache. This is what a chat turn or a new request calls.
 * With context_shift, n may exceed n_ctx (the tokens are decoded with shifts), and
 * after a shift tokens is matched against the whole stream the context has seen:
 * a prompt that starts with the kept tokens, then the dropped ones, then the
 * sequence's others (a chat's next turn) decodes only what follows them. */
kvlm_err kvlm_ctx_prefill(kvlm_ctx *ctx, const kvlm_token *tokens, size_t n,
                          size_t *n_reused, char *err, size_t errlen);

/* kvlm_ctx_decode that also writes every token's next-token logits:
 * logits: [n][n_vocab], row i for tokens[i] (what perplexity needs). Row n-1 is
 * also what kvlm_ctx_logits() returns. Bitwise the rows that n single-token
 * decodes would give. KVLM_ERR_INVALID with no_kv_cache. */
kvlm_err kvlm_ctx_decode_all(kvlm_ctx *ctx, const kvlm_token *tokens, size_t n, float *logits,
                             char *err, size_t errlen);

/* Drops every token at position >= n_keep (rollback). */
void kvlm_ctx_truncate(kvlm_ctx *ctx, size_t n_keep);

/* For benchmarks and instruction counts only: appends n positions whose K and V
 * are zero without running the model (their tokens read as id 0), so a step at
 * depth D can be measured without paying for a real fill of D tokens (which
 * takes hours under valgrind). Afterwards the logits are NULL until the next
 * decode, and this context never publishes to the prefix cache (its blocks do
 * not hold what their tokens would compute). KVLM_ERR_CONTEXT_FULL, KVLM_ERR_BUDGET
 * (nothing appended), KVLM_ERR_INVALID with no_kv_cache. */
kvlm_err kvlm_ctx_fill_zero(kvlm_ctx *ctx, size_t n, char *err, size_t errlen);

/* A new context holding a copy of src's sequence (tokens, logits, parameters)
 * that shares src's K/V blocks: no bytes are copied until one of them writes
 * into a shared partly filled block (copy-on-write). For parallel sampling:
 * prefill once, fork n - 1 times, decode each. Both share src's cache. */
kvlm_err kvlm_ctx_fork(const kvlm_ctx *src, kvlm_ctx **out, char *err, size_t errlen);

/* Logits of the next token after the last decoded one: [n_vocab] floats,
 * valid until the next decode/prefill/truncate. NULL before the first decode. */
const float *kvlm_ctx_logits(const kvlm_ctx *ctx);

size_t kvlm_ctx_n_past(const kvlm_ctx *ctx);       /* tokens in the sequence */
size_t kvlm_ctx_n_ctx(const kvlm_ctx *ctx);
const kvlm_token *kvlm_ctx_tokens(const kvlm_ctx *ctx); /* [n_past] */

typedef struct kvlm_stats {
    int64_t n_prompt;          /* tokens given to prefill calls */
    int64_t n_reused;          /* of those, taken from the cache (RAM or a tier) */
    int64_t n_reused_tier;     /* of those, loaded from a tier (disk, Redis) */
    int64_t n_prefilled;       /* tokens computed in batches of > 1 */
    int64_t n_decoded;         /* tokens computed one at a time */
    int64_t n_computed;        /* token positions run through the model in all
                                  (larger than the above with no_kv_cache) */
    double  t_prefill_s, t_decode_s;
    int64_t kv_bytes_per_token;          /* all layers, K and V */
    int64_t kv_bytes_per_token_layer;    /* one layer, K and V */
    int64_t kv_bytes_used;               /* bytes of the blocks this sequence holds */
    int64_t kv_bytes_reserved;           /* the whole pool (shared caches: all of it) */
    int64_t kv_blocks;                   /* blocks this sequence's tables hold */
    /* per layer group: [0] the full-attention layers, [1] the sliding-window ones
       (kv_n_groups 2 only for a model with window layers) */
    int32_t kv_n_groups;
    struct {
        int64_t n_layer;                 /* layers in the group */
        int64_t window;                  /* positions each keeps, 0: all */
        int64_t blocks, bytes;           /* what the sequence holds in the group's tables */
    } kv_group[2];
    int64_t n_shifts, n_dropped;         /* context shifts, and the positions they dropped */
    kvlm_cache_stats cache;              /* the pool this context uses */
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

/* ---- speech to text: Whisper (encoder-decoder) ------------------------------------
 * kvlm_whisper_load() -> kvlm_whisper (a CTranslate2 WhisperSpec directory: model.bin,
 * config.json, vocabulary.txt; English-only, float16 or float32 weights). Audio is
 * cut in 30 s windows; per window the encoder runs once, each decoder layer's
 * cross-attention K and V are projected once from its output into read-only cross
 * blocks of the KV pool (shared by every beam), and the decoder's self-attention K/V
 * grow one position per step in the same block tables as a decoder-only model's.
 * A model is read-only and may be shared by threads; a job is used from one thread
 * at a time. */
typedef struct kvlm_whisper kvlm_whisper;
typedef struct kvlm_wjob kvlm_wjob;

typedef enum kvlm_weight_type {
    KVLM_WEIGHTS_AUTO = 0,   /* the default the README's measurement chose: the encoder's f16
                                (computed in f32), the decoder's Q8_0 */
    KVLM_WEIGHTS_F16,        /* as stored (float32 files are rounded to f16) */
    KVLM_WEIGHTS_Q8_0,       /* linear weights converted at load to Q8_0 rows */
    KVLM_WEIGHTS_F32,        /* widened: the reference path */
} kvlm_weight_type;

typedef struct kvlm_whisper_params {
    int              n_threads;   /* 0 = number of online cores */
    kvlm_weight_type weights;
    kvlm_kv_type     kv_type;     /* decoder self and cross K/V (default f32) */
    size_t           kv_mem;      /* KV pool budget; 0 = enough for n_jobs jobs of beam 5 */
    int              n_jobs;      /* jobs expected at once (the server's parallel count); 0 = 1 */
} kvlm_whisper_params;
kvlm_whisper_params kvlm_whisper_default_params(void);

/* path: a model directory. KVLM_ERR_UNSUPPORTED for an int8 or multilingual model,
 * KVLM_ERR_FORMAT for a corrupt one (file, offset and problem in err). */
kvlm_err kvlm_whisper_load(const char *path, const kvlm_whisper_params *params, kvlm_whisper **out,
                           char *err, size_t errlen);
void     kvlm_whisper_free(kvlm_whisper *w);   /* NULL is fine */

typedef struct kvlm_whisper_info {
    const char *name;            /* "whisper-tiny.en" for the known model, else the directory's name */
    int64_t n_mels, n_audio_ctx, n_text_ctx, n_vocab, d_model, n_head, head_dim, n_ff;
    int64_t n_enc_layer, n_dec_layer;
    int64_t n_params;
    const char *weights;         /* "f16", "q8_0", "f32", "f16 encoder + q8_0 decoder" */
    int64_t self_kv_bytes_per_token;    /* one decoder position, all layers, K and V */
    int64_t cross_kv_bytes_per_window;  /* n_audio_ctx positions, all layers, K and V */
    int64_t weight_bytes;
} kvlm_whisper_info;
void kvlm_whisper_get_info(const kvlm_whisper *w, kvlm_whisper_info *out);

/* Audio in: any file libsndfile reads (WAV, FLAC, OGG, MP3), mixed to mono and
 * resampled to 16 kHz. *samples is malloc'd ([*n] floats in [-1, 1]). Bad audio
 * gives KVLM_ERR_FORMAT (or KVLM_ERR_UNSUPPORTED) with the reason. */
#define KVLM_SAMPLE_RATE 16000
kvlm_err kvlm_audio_load_file(const char *path, float **samples, int64_t *n, char *err, size_t errlen);
kvlm_err kvlm_audio_load_memory(const void *data, size_t len, float **samples, int64_t *n, char *err,
                                size_t errlen);

typedef struct kvlm_segment {
    double t0, t1;               /* seconds from the start of the audio */
    char  *text;                 /* UTF-8, as Whisper wrote it (usually a leading space) */
    kvlm_token *tokens;          /* [n_tokens] text and timestamp ids, no specials */
    int64_t n_tokens;
    float *token_probs;          /* [n_tokens] probability of each chosen token */
    float  avg_logprob, compression_ratio, no_speech_prob, temperature;
    int64_t window;              /* index of the 30 s window it came from */
} kvlm_segment;

typedef struct kvlm_transcribe_stats {
    int64_t n_windows;
    int64_t n_enc_positions;     /* encoder output positions computed */
    int64_t n_steps;             /* decoder steps (one per generated token per beam batch) */
    int64_t n_dec_positions;     /* decoder positions run through the model */
    int64_t n_cross_positions;   /* encoder positions projected to cross K/V */
    int64_t n_fallbacks;         /* windows decoded again at a higher temperature */
    int64_t cross_kv_bytes;      /* peak bytes of cross blocks held */
    int64_t self_kv_bytes;       /* peak bytes of self-attention blocks held */
    double  t_mel_s, t_encode_s, t_cross_s, t_decode_s;
    double  t_enc_conv_s, t_enc_proj_s, t_enc_attn_s, t_enc_ffn_s;   /* parts of t_encode_s (LN in ffn/proj) */
    double  audio_s;
    double *step_ms;             /* [n_steps] wall time of each decoder step */
} kvlm_transcribe_stats;

typedef struct kvlm_transcript {
    kvlm_segment *segments;
    int64_t n_segments;
    char   *text;                /* all segments' text joined */
    kvlm_transcribe_stats stats;
} kvlm_transcript;
void kvlm_transcript_free(kvlm_transcript *t);   /* NULL is fine */

typedef struct kvlm_transcribe_params {
    int      beam;               /* 1 = greedy (default), N = beam search of width N */
    float    temperature;        /* first temperature (default 0) */
    float    temperature_inc;    /* fallback step (default 0.2; <= 0: no fallback) */
    float    compression_ratio_threshold;  /* default 2.4 */
    float    logprob_threshold;  /* default -1 */
    float    no_speech_threshold;/* default 0.6 */
    bool     timestamps;         /* timestamp tokens and segments per window part */
    bool     condition_on_previous_text;   /* default true */
    const char *prompt;          /* initial prompt text, or NULL */
    uint64_t seed;               /* sampling at temperature > 0 (fixed default) */
    bool     no_cross_cache;     /* baseline: cross K/V recomputed at every step */
    bool     no_kv_cache;        /* baseline: also every self K/V at every step */
    bool     step_times;         /* fill stats.step_ms */
    /* Called as each segment is final (NULL: none); the segment is valid during the call. */
    void   (*on_segment)(void *user, const kvlm_segment *seg);
    void    *user;
} kvlm_transcribe_params;
kvlm_transcribe_params kvlm_transcribe_default_params(void);

/* One transcription: samples [n] at 16 kHz. */
kvlm_err kvlm_transcribe(kvlm_whisper *w, const float *samples, int64_t n, const kvlm_transcribe_params *params,
                         kvlm_transcript **out, char *err, size_t errlen);

/* The same as steps many jobs can share (continuous batching): kvlm_wjob_step
 * advances every unfinished job in jobs[] by one step: a job at the start of a
 * window runs its encoder and cross projection, the others one decoder token for
 * each of their beams, all of them in one decoder weight pass. Job results are
 * bitwise those of running each alone. */
kvlm_err kvlm_wjob_create(kvlm_whisper *w, const float *samples, int64_t n, const kvlm_transcribe_params *params,
                          kvlm_wjob **out, char *err, size_t errlen);
kvlm_err kvlm_wjob_step(kvlm_whisper *w, kvlm_wjob *const *jobs, int n_jobs, char *err, size_t errlen);
bool     kvlm_wjob_done(const kvlm_wjob *job);
/* The error a job ended with (KVLM_OK while it runs or when it succeeded). */
kvlm_err kvlm_wjob_error(const kvlm_wjob *job, char *err, size_t errlen);
/* Takes the finished job's transcript (the caller frees it); NULL before it is done. */
kvlm_transcript *kvlm_wjob_take(kvlm_wjob *job);
void     kvlm_wjob_free(kvlm_wjob *job);   /* NULL is fine; frees its blocks */

/* Transcript rendering: "text" (one line per segment), "json" ({"text", "segments":
 * [{id, start, end, text, tokens, avg_logprob, compression_ratio, no_speech_prob,
 * temperature}], "duration"}), "verbose_json" (OpenAI's shape: task, language,
 * duration, text, segments), "srt", "vtt". *out is malloc'd. KVLM_ERR_INVALID for
 * another name. */
kvlm_err kvlm_transcript_format(const kvlm_transcript *t, const char *format, char **out, char *err,
                                size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
