/* tokenizer_impl.h - the inside of a tokenizer, shared by tokenizer.c (vocabulary,
 * special tokens, pieces), tokenizer_bpe.c and tokenizer_spm.c. Private to src/tok/.
 * Room: tok. Invariants (established by tokenizer_init_gguf or tok_bpe_new, never
 * changed after):
 *
 *   vocabulary, all copied (out of the GGUF, or the caller's arrays for tok_bpe_new):
 *     text_off: [n_vocab + 1]   token i's text is text_buf[text_off[i] .. text_off[i+1])
 *     piece_off:[n_vocab + 1]   its decoded bytes (render_special) in piece_buf
 *     type:     [n_vocab]       TT_* (NORMAL when the file has no token_type)
 *     score:    [n_vocab]       SPM merge scores (NULL for BPE)
 *
 *   text -> id: open addressing, linear probing, power-of-two size, -1 = empty
 *     ids: [id_mask + 1]        at least twice n_vocab; the last duplicate text wins
 *
 *   BPE merges (a, b) -> (rank, result id): open addressing keyed by a<<32|b
 *     mkey: [m_mask + 1] (UINT64_MAX = empty), mrank, mres alongside
 *
 *   special: [n_special] ids of control/user-defined/unknown tokens with non-empty
 *     text, longest text first (then lower id).
 */
#ifndef KVLM_TOK_TOKENIZER_IMPL_H
#define KVLM_TOK_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdint.h>
#include <stdlib.h>
#include "tok/tokenizer.h"

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };
typedef enum tok_kind { TOK_BPE, TOK_SPM } tok_kind;

#define TOK_MAX_REGEX 3

struct tokenizer {
    tok_kind kind;
    int64_t n_vocab;
    char *text_buf;        uint32_t *text_off;
    char *piece_buf;       uint32_t *piece_off;
    uint8_t *type;
    uint8_t *eog;          /* [n_vocab] 1 = end of generation */
    float *score;

    int32_t *ids;          uint64_t id_mask;

    int32_t *special;      size_t n_special;

    kvlm_token bos, eos, eot, unk;
    bool add_bos, add_space_prefix;

    /* BPE */
    int32_t byte_tok[256];         /* raw byte -> id of its byte-level char, -1 if absent */
    uint64_t *mkey; int32_t *mrank; int32_t *mres; uint64_t m_mask;
    pcre2_code *re[TOK_MAX_REGEX]; int n_re;
    bool ignore_merges;            /* llama3: a word that is a token is taken whole */

    /* SPM */
    int32_t byte_piece[256];       /* byte -> id of "<0xXX>", -1 if absent */
};

/* Growing output of ids: counts past cap, writes only below it. */
typedef struct tok_out {
    kvlm_token *ids;
    size_t cap, n;
} tok_out;

static inline void tok_out_push(tok_out *o, kvlm_token id)
{
    if (o->n < o->cap) o->ids[o->n] = id;
    o->n++;
}

/* Merge candidates of one word, lowest (key, left) first: BPE keys by merge rank,
 * SPM by -score. a, b record the two sides as they were when pushed, so a stale
 * candidate can be recognised when popped. A word of n symbols pushes at most
 * n - 1 + 2 * (n - 1) candidates, which tok_heap_alloc reserves. */
typedef struct tok_cand { double key; int32_t left, right, a, b, res; } tok_cand;
typedef struct tok_heap { tok_cand *v; size_t n, cap; } tok_heap;

static inline bool tok_cand_less(const tok_cand *x, const tok_cand *y)
{
    return x->key < y->key || (x->key == y->key && x->left < y->left);
}

static inline bool tok_heap_alloc(tok_heap *h, size_t n_symbols)
{
    h->n = 0;
    h->cap = 3 * n_symbols + 4;
    h->v = malloc(h->cap * sizeof *h->v);
    return h->v != NULL;
}

static inline void tok_heap_push(tok_heap *h, tok_cand c)
{
    if (h->n == h->cap) return;   /* cannot happen within the bound above */
    size_t i = h->n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!tok_cand_less(&c, &h->v[up])) break;
        h->v[i] = h->v[up];
        i = up;
    }
    h->v[i] = c;
}

static inline tok_cand tok_heap_pop(tok_heap *h)   /* h->n > 0 */
{
    tok_cand top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && tok_cand_less(&h->v[c + 1], &h->v[c])) c++;
        if (!tok_cand_less(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

/* text -> id (exact bytes), -1 if none. */
kvlm_token tok_lookup(const tokenizer *t, const char *s, size_t n);

/* "<0xAB>" (exactly 6 bytes) -> 0xAB; -1 otherwise. */
int tok_parse_byte_token(const char *s, size_t n);

/* Vocabulary of t (tokenizer.c): copies tokens[0..n) into text_buf/text_off, sets
 * n_vocab, allocates type (all TT_NORMAL) and eog (all 0) and builds the text -> id
 * table. tok_build_pieces fills piece_buf/piece_off from the texts, types and kind:
 * the last step of every constructor. */
kvlm_err tok_vocab_init(tokenizer *t, const gguf_str *tokens, int64_t n, char *err, size_t errlen);
kvlm_err tok_build_pieces(tokenizer *t, char *err, size_t errlen);

/* The shared constructor of byte-level BPE tokenizers (tokenizer_bpe.c): the GGUF
 * path (tokenizer.ggml.* arrays) and tok_whisper (vocabulary.txt + tokenizer.json)
 * both build through it. Everything is copied; the arrays are borrowed for the
 * call only.
 *   tokens: [n_tokens] id -> token text (byte-level strings, specials as is)
 *   types:  [n_tokens] TT_* per id, or NULL for all TT_NORMAL
 *   merges: [n_merges] "a b" by rank (split at the first ' ' after byte 0); a merge
 *           naming a text not in tokens is skipped, as llama.cpp does
 *   pre:    [pre_len] a tokenizer.ggml.pre name choosing the pre-tokenizer regexes;
 *           NULL / unknown = the GPT-2 regex
 * The result has kind TOK_BPE, no BOS/EOS/EOT/UNK (-1), add_bos false and no
 * special-token list; tokenizer_init_gguf sets those from the GGUF afterwards. */
typedef struct tok_bpe_src {
    const gguf_str *tokens;  int64_t n_tokens;
    const uint8_t *types;
    const gguf_str *merges;  size_t n_merges;
    const char *pre;         size_t pre_len;
} tok_bpe_src;
kvlm_err tok_bpe_new(const tok_bpe_src *src, tokenizer **out, char *err, size_t errlen);

/* Per-kind parts, called by tokenizer.c. tok_spm_init runs after the vocabulary and
 * the text table are built; encode_* tokenize one raw fragment (no special tokens in
 * it). encode_* return KVLM_ERR_NOMEM or KVLM_OK. */
void     tok_bpe_free(tokenizer *t);
kvlm_err tok_bpe_encode(const tokenizer *t, const char *s, size_t n, tok_out *o);
/* decodes a byte-level token text to raw bytes into out (>= n bytes); returns the length */
size_t   tok_bpe_decode_text(const char *s, size_t n, char *out);
/* offset of the first byte of s[0..n) that does not start a valid UTF-8 char of the
 * byte-level table (the 256 chars tok_bpe_decode_text inverts); n if all do */
size_t   tok_bpe_check_text(const char *s, size_t n);

kvlm_err tok_spm_init(tokenizer *t, const gguf_file *f, char *err, size_t errlen);
kvlm_err tok_spm_encode(const tokenizer *t, const char *s, size_t n, bool prefix_space,
                        tok_out *o);

#endif
