/* tokenizer_bpe.c - GPT-2 style byte-level BPE: the pre-tokenizer regexes chosen by
 * tokenizer.ggml.pre (PCRE2, Unicode properties), the byte <-> char table, merges
 * applied by rank, and tok_bpe_new, the constructor from plain arrays that the GGUF
 * path and tok_whisper share. Room: tok. Follows llama.cpp's llm_tokenizer_bpe, which the
 * golden data comes from. */
#include "tok/tokenizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/err.h"

/* ---- byte-level table: byte b <-> one Unicode char ---------------------------------
 * Printable bytes ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF) stand for themselves;
 * the other 68 map, in byte order, to U+0100.. . */

static uint32_t byte_cp(int b)
{
    if (b <= 0x20) return 256u + (uint32_t)b;                   /* 0x00..0x20 -> U+0100..U+0120 */
    if (b >= 0x7f && b <= 0xa0) return 289u + (uint32_t)(b - 0x7f); /* 0x7f..0xa0 -> U+0121..U+0142 */
    if (b == 0xad) return 323u;                                 /* soft hyphen -> U+0143 */
    return (uint32_t)b;
}

static int cp_byte(uint32_t cp)   /* inverse of byte_cp; -1 for other chars */
{
    if (cp < 0x100) return byte_cp((int)cp) == cp ? (int)cp : -1;
    if (cp <= 288) return (int)(cp - 256);
    if (cp <= 322) return (int)(cp - 289 + 0x7f);
    return cp == 323 ? 0xad : -1;
}

static size_t cp_utf8(uint32_t cp, char *out)   /* cp < 0x800 here */
{
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

size_t tok_bpe_decode_text(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        uint32_t cp;
        size_t len;
        if (c < 0x80) { cp = c; len = 1; }
        else if ((c & 0xe0) == 0xc0 && i + 1 < n) { cp = ((uint32_t)(c & 0x1f) << 6) | (s[i + 1] & 0x3f); len = 2; }
        else { out[o++] = s[i++]; continue; }   /* not a byte-level char: copied as is */
        int b = cp_byte(cp);
        if (b < 0) { memcpy(out + o, s + i, len); o += len; }
        else out[o++] = (char)b;
        i += len;
    }
    return o;
}

size_t tok_bpe_check_text(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        uint32_t cp;
        size_t len;
        if (c < 0x80) { cp = c; len = 1; }
        else if (c >= 0xc2 && c <= 0xdf && i + 1 < n && ((unsigned char)s[i + 1] & 0xc0) == 0x80) {
            cp = ((uint32_t)(c & 0x1f) << 6) | (s[i + 1] & 0x3f);
            len = 2;
        } else return i;   /* invalid UTF-8, or a char of 3+ bytes: none is in the table */
        if (cp_byte(cp) < 0) return i;
        i += len;
    }
    return n;
}

/* ---- pre-tokenizer regexes (llama.cpp's, by tokenizer.ggml.pre) --------------------- */

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define RE_LLAMA3 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}" \
                  "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2 "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}" \
                 "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

typedef struct pre_rule {
    const char *names;              /* space-separated tokenizer.ggml.pre values */
    const char *re[TOK_MAX_REGEX];
    bool ignore_merges;
} pre_rule;

static const pre_rule PRE_RULES[] = {
    { " smollm starcoder refact command-r codeshell exaone minerva ", { "\\p{N}", RE_GPT2 }, false },
    { " llama3 llama-bpe llama-v3 ", { RE_LLAMA3 }, true },
    { " qwen2 ", { RE_QWEN2 }, false },
};
static const pre_rule PRE_DEFAULT = { "", { RE_GPT2 }, false };

/* pre[0..len): a tokenizer.ggml.pre name, NULL or unknown for the GPT-2 regex */
static const pre_rule *pick_rule(const char *pre, size_t len)
{
    if (!pre || len == 0 || len > 60) return &PRE_DEFAULT;
    char key[64];
    snprintf(key, sizeof key, " %.*s ", (int)len, pre);
    for (size_t i = 0; i < sizeof PRE_RULES / sizeof PRE_RULES[0]; i++)
        if (strstr(PRE_RULES[i].names, key)) return &PRE_RULES[i];
    return &PRE_DEFAULT;
}

static kvlm_err compile_regexes(tokenizer *t, const pre_rule *r, char *err, size_t errlen)
{
    for (int i = 0; i < TOK_MAX_REGEX && r->re[i]; i++) {
        int code;
        PCRE2_SIZE at;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)r->re[i], PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &at, NULL);
        if (!re) {
            char msg[128];
            pcre2_get_error_message(code, (PCRE2_UCHAR *)msg, sizeof msg);
            return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "pre-tokenizer regex %d: %s at %zu", i, msg, (size_t)at);
        }
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);   /* best effort: the interpreter is the fallback */
        t->re[t->n_re++] = re;
    }
    t->ignore_merges = r->ignore_merges;
    return KVLM_OK;
}

/* ---- merges ----------------------------------------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL; x ^= x >> 33;
    return x;
}

static void merge_put(tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t res)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint64_t i = mix64(key) & t->m_mask;
    while (t->mkey[i] != UINT64_MAX) {
        if (t->mkey[i] == key) return;   /* the first (lowest) rank wins */
        i = (i + 1) & t->m_mask;
    }
    t->mkey[i] = key;
    t->mrank[i] = rank;
    t->mres[i] = res;
}

/* rank of merging (a, b), -1 if none; *res gets the merged id */
static int32_t merge_get(const tokenizer *t, int32_t a, int32_t b, int32_t *res)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint64_t i = mix64(key) & t->m_mask;; i = (i + 1) & t->m_mask) {
        if (t->mkey[i] == UINT64_MAX) return -1;
        if (t->mkey[i] == key) { *res = t->mres[i]; return t->mrank[i]; }
    }
}

/* merges: [n] "a b" by rank -> the (a, b) -> (rank, result) table */
static kvlm_err load_merges(tokenizer *t, const gguf_str *merges, size_t n, char *err, size_t errlen)
{
    if (n > INT32_MAX) return err_set(err, errlen, KVLM_ERR_FORMAT, "%zu merges are too many", n);
    uint64_t size = 1024;
    while (size < n * 2) size <<= 1;
    t->mkey = malloc(size * sizeof *t->mkey);
    t->mrank = malloc(size * sizeof *t->mrank);
    t->mres = malloc(size * sizeof *t->mres);
    if (!t->mkey || !t->mrank || !t->mres) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory (merges)");
    memset(t->mkey, 0xff, size * sizeof *t->mkey);
    t->m_mask = size - 1;
    char buf[512];
    for (size_t i = 0; i < n; i++) {
        gguf_str s = merges[i];
        if (s.len < 3 || s.len >= sizeof buf) continue;
        const char *sp = memchr(s.ptr + 1, ' ', s.len - 1);   /* as llama.cpp: the first ' ' after byte 0 */
        if (!sp) continue;
        size_t na = (size_t)(sp - s.ptr), nb = s.len - na - 1;
        int32_t a = tok_lookup(t, s.ptr, na), b = tok_lookup(t, sp + 1, nb);
        memcpy(buf, s.ptr, na);
        memcpy(buf + na, sp + 1, nb);
        int32_t r = tok_lookup(t, buf, na + nb);
        if (a >= 0 && b >= 0 && r >= 0) merge_put(t, a, b, (int32_t)i, r);
    }
    return KVLM_OK;
}

kvlm_err tok_bpe_new(const tok_bpe_src *src, tokenizer **out, char *err, size_t errlen)
{
    *out = NULL;
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory (tokenizer)");
    memset(t->byte_tok, 0xff, sizeof t->byte_tok);
    memset(t->byte_piece, 0xff, sizeof t->byte_piece);
    t->kind = TOK_BPE;
    t->bos = t->eos = t->eot = t->unk = -1;
    kvlm_err e;
    if ((e = tok_vocab_init(t, src->tokens, src->n_tokens, err, errlen))) goto fail;
    if (src->types) memcpy(t->type, src->types, (size_t)t->n_vocab);
    for (int b = 0; b < 256; b++) {
        char u[2];
        size_t n = cp_utf8(byte_cp(b), u);
        t->byte_tok[b] = tok_lookup(t, u, n);
    }
    if ((e = load_merges(t, src->merges, src->n_merges, err, errlen))) goto fail;
    if ((e = compile_regexes(t, pick_rule(src->pre, src->pre_len), err, errlen))) goto fail;
    if ((e = tok_build_pieces(t, err, errlen))) goto fail;
    *out = t;
    return KVLM_OK;
fail:
    tokenizer_free(t);
    return e;
}

void tok_bpe_free(tokenizer *t)
{
    for (int i = 0; i < t->n_re; i++) pcre2_code_free(t->re[i]);
    t->n_re = 0;
    free(t->mkey);
    free(t->mrank);
    free(t->mres);
}

/* ---- one word: merges by (rank, leftmost) with a binary heap -----------------------------
 *   sym:  [n] one per byte of the word; id = current token, prev/next = live neighbours
 *   heap: candidate pairs (key = rank, left, right) with the ids they had when
 *         pushed (a, b); stale entries (a side merged since) are skipped when popped */

typedef struct bpe_scratch {
    int32_t *id, *prev, *next;
    tok_heap h;
} bpe_scratch;

static void try_pair(const tokenizer *t, bpe_scratch *s, int32_t l, int32_t r)
{
    if (l < 0 || r < 0) return;
    int32_t res, rank = merge_get(t, s->id[l], s->id[r], &res);
    if (rank >= 0) tok_heap_push(&s->h, (tok_cand){ rank, l, r, s->id[l], s->id[r], res });
}

static void bpe_word(const tokenizer *t, const unsigned char *w, size_t n, bpe_scratch *s, tok_out *o)
{
    if (t->ignore_merges) {
        char enc[1024];
        size_t m = 0;
        for (size_t i = 0; i < n && m + 2 <= sizeof enc; i++) m += cp_utf8(byte_cp(w[i]), enc + m);
        kvlm_token whole = m + 2 <= sizeof enc ? tok_lookup(t, enc, m) : -1;
        if (whole >= 0) { tok_out_push(o, whole); return; }
    }
    /* sym: [n] */
    for (size_t i = 0; i < n; i++) {
        s->id[i] = t->byte_tok[w[i]];
        s->prev[i] = (int32_t)i - 1;
        s->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    s->h.n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (s->id[i] >= 0 && s->id[i + 1] >= 0) try_pair(t, s, (int32_t)i, (int32_t)i + 1);
    while (s->h.n) {
        tok_cand p = tok_heap_pop(&s->h);
        if (s->id[p.left] != p.a || s->next[p.left] != p.right || s->id[p.right] != p.b) continue;
        s->id[p.left] = p.res;                      /* right joins left */
        s->id[p.right] = -2;                        /* dead */
        s->next[p.left] = s->next[p.right];
        if (s->next[p.left] >= 0) s->prev[s->next[p.left]] = p.left;
        if (s->prev[p.left] >= 0 && s->id[s->prev[p.left]] >= 0) try_pair(t, s, s->prev[p.left], p.left);
        if (s->next[p.left] >= 0 && s->id[s->next[p.left]] >= 0) try_pair(t, s, p.left, s->next[p.left]);
    }
    /* A byte whose byte-level char the vocabulary lacks (SmolLM2 has no 0x04 or
     * 0x06) is dropped, as llama.cpp does: its unknown id is <|endoftext|> here. */
    for (int32_t i = 0; i >= 0 && (size_t)i < n; i = s->next[i])
        if (s->id[i] >= 0) tok_out_push(o, s->id[i]);
}

/* ---- a raw fragment: regex splits, then words ---------------------------------------------- */

typedef struct span { size_t off, len; } span;
typedef struct span_list { span *v; size_t n, cap; } span_list;

static bool spans_push(span_list *l, size_t off, size_t len)
{
    if (!len) return true;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        span *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) return false;
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = (span){ off, len };
    return true;
}

/* Splits every span of in by re (matches and the gaps between them), into out.
 * Each span is matched as a subject of its own, as llama.cpp does. */
static bool regex_split(const pcre2_code *re, pcre2_match_data *md, const char *s, const span_list *in,
                        span_list *out)
{
    out->n = 0;
    for (size_t k = 0; k < in->n; k++) {
        const char *sub = s + in->v[k].off;
        size_t len = in->v[k].len, pos = 0, gap = 0;
        while (pos < len) {
            int rc = pcre2_match(re, (PCRE2_SPTR)sub, len, pos, 0, md, NULL);
            if (rc < 0) break;   /* no more matches (or a match error: the rest is one gap) */
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            if (ov[1] <= ov[0]) { pos = ov[0] + 1; continue; }   /* empty match: step on */
            if (!spans_push(out, in->v[k].off + gap, ov[0] - gap)) return false;
            if (!spans_push(out, in->v[k].off + ov[0], ov[1] - ov[0])) return false;
            pos = gap = ov[1];
        }
        if (!spans_push(out, in->v[k].off + gap, len - gap)) return false;
    }
    return true;
}

kvlm_err tok_bpe_encode(const tokenizer *t, const char *s, size_t n, tok_out *o)
{
    kvlm_err e = KVLM_ERR_NOMEM;
    span_list a = { 0 }, b = { 0 };
    bpe_scratch sc = { 0 };
    pcre2_match_data *md = NULL;
    if (!spans_push(&a, 0, n)) goto done;
    for (int i = 0; i < t->n_re; i++) {
        pcre2_match_data_free(md);
        if (!(md = pcre2_match_data_create_from_pattern(t->re[i], NULL))) goto done;
        if (!regex_split(t->re[i], md, s, &a, &b)) goto done;
        span_list sw = a; a = b; b = sw;
    }
    size_t longest = 0;
    for (size_t i = 0; i < a.n; i++) if (a.v[i].len > longest) longest = a.v[i].len;
    sc.id = malloc((longest + 1) * sizeof *sc.id);
    sc.prev = malloc((longest + 1) * sizeof *sc.prev);
    sc.next = malloc((longest + 1) * sizeof *sc.next);
    if (!sc.id || !sc.prev || !sc.next || !tok_heap_alloc(&sc.h, longest)) goto done;
    for (size_t i = 0; i < a.n; i++) bpe_word(t, (const unsigned char *)s + a.v[i].off, a.v[i].len, &sc, o);
    e = KVLM_OK;
done:
    pcre2_match_data_free(md);
    free(a.v); free(b.v);
    free(sc.id); free(sc.prev); free(sc.next); free(sc.h.v);
    return e;
}
