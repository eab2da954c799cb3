/* tokenizer.c - see tokenizer.h. The vocabulary (copied out of the GGUF or arrays), the
 * text -> id table, special tokens and pieces; the per-kind work is in
 * tokenizer_bpe.c and tokenizer_spm.c. Room: tok. */
#include "tok/tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "core/err.h"

/* ---- text -> id --------------------------------------------------------------------- */

static uint64_t text_hash(const char *s, size_t n) { return XXH3_64bits(s, n); }

static const char *tok_text(const tokenizer *t, int64_t id, size_t *n)
{
    *n = t->text_off[id + 1] - t->text_off[id];
    return t->text_buf + t->text_off[id];
}

kvlm_token tok_lookup(const tokenizer *t, const char *s, size_t n)
{
    for (uint64_t i = text_hash(s, n) & t->id_mask;; i = (i + 1) & t->id_mask) {
        int32_t id = t->ids[i];
        if (id < 0) return -1;
        size_t tn;
        const char *ts = tok_text(t, id, &tn);
        if (tn == n && memcmp(ts, s, n) == 0) return id;
    }
}

kvlm_token tokenizer_find(const tokenizer *t, const char *text)
{
    return tok_lookup(t, text, strlen(text));
}

static kvlm_err build_id_table(tokenizer *t, char *err, size_t errlen)
{
    uint64_t size = 1024;
    while (size < (uint64_t)t->n_vocab * 2) size <<= 1;
    t->ids = malloc(size * sizeof *t->ids);
    if (!t->ids) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory (token table)");
    memset(t->ids, 0xff, size * sizeof *t->ids);
    t->id_mask = size - 1;
    for (int64_t id = 0; id < t->n_vocab; id++) {
        size_t n;
        const char *s = tok_text(t, id, &n);
        uint64_t i = text_hash(s, n) & t->id_mask;
        for (; t->ids[i] >= 0; i = (i + 1) & t->id_mask) {
            size_t on;
            const char *os = tok_text(t, t->ids[i], &on);
            if (on == n && memcmp(os, s, n) == 0) break;   /* duplicate text: the last wins */
        }
        t->ids[i] = (int32_t)id;
    }
    return KVLM_OK;
}

int tok_parse_byte_token(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
              : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* ---- metadata ------------------------------------------------------------------------ */

static kvlm_err get_opt_id(const gguf_file *f, const char *key, int64_t n_vocab, kvlm_token *out,
                           char *err, size_t errlen)
{
    int64_t v;
    if (!gguf_find_kv(f, key)) return KVLM_OK;
    kvlm_err e = gguf_get_int(f, key, &v, err, errlen);
    if (e) return e;
    /* llama.cpp writes -1 / out-of-range ids for "none" in some files: treat as none. */
    *out = (v >= 0 && v < n_vocab) ? (kvlm_token)v : -1;
    return KVLM_OK;
}

static kvlm_err get_opt_bool(const gguf_file *f, const char *key, bool *out, char *err, size_t errlen)
{
    if (!gguf_find_kv(f, key)) return KVLM_OK;
    return gguf_get_bool(f, key, out, err, errlen);
}

/* token texts: tokens[n] -> text_buf/text_off, types all NORMAL, the id table */
kvlm_err tok_vocab_init(tokenizer *t, const gguf_str *tokens, int64_t n, char *err, size_t errlen)
{
    if (n <= 0 || n > INT32_MAX)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "vocabulary: %lld tokens", (long long)n);
    t->n_vocab = n;
    uint64_t total = 0;
    for (int64_t i = 0; i < n; i++) total += tokens[i].len;
    if (total >= UINT32_MAX)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "vocabulary: %llu bytes of text is too much",
                       (unsigned long long)total);
    t->text_buf = malloc(total ? total : 1);
    t->text_off = malloc(((size_t)n + 1) * sizeof *t->text_off);
    t->type = malloc((size_t)n);
    t->eog = calloc((size_t)n, 1);
    if (!t->text_buf || !t->text_off || !t->type || !t->eog)
        return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory (vocabulary)");
    memset(t->type, TT_NORMAL, (size_t)n);
    uint32_t off = 0;
    for (int64_t i = 0; i < n; i++) {
        t->text_off[i] = off;
        memcpy(t->text_buf + off, tokens[i].ptr, tokens[i].len);
        off += (uint32_t)tokens[i].len;
    }
    t->text_off[n] = off;
    return build_id_table(t, err, errlen);
}

/* type: [n_vocab] from tokenizer.ggml.token_type (all NORMAL without it) */
static kvlm_err read_types(const gguf_file *f, int64_t n_vocab, uint8_t *type, char *err, size_t errlen)
{
    memset(type, TT_NORMAL, (size_t)n_vocab);
    const gguf_kv *kv = gguf_find_kv(f, "tokenizer.ggml.token_type");
    if (!kv) return KVLM_OK;
    if (kv->type != GGUF_VT_ARR || kv->v.arr.n != (uint64_t)n_vocab || kv->v.arr.type == GGUF_VT_STR)
        return err_set(err, errlen, KVLM_ERR_FORMAT,
                       "%s: tokenizer.ggml.token_type (offset %llu) must be an integer array of %lld",
                       f->path, (unsigned long long)kv->offset, (long long)n_vocab);
    for (int64_t i = 0; i < n_vocab; i++) {
        int64_t v;
        if (!gguf_arr_get_int(kv, (uint64_t)i, &v))
            return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: tokenizer.ggml.token_type[%lld] is not an integer",
                           f->path, (long long)i);
        type[i] = (v >= TT_NORMAL && v <= TT_BYTE) ? (uint8_t)v : TT_NORMAL;
    }
    return KVLM_OK;
}

static kvlm_err read_scores(tokenizer *t, const gguf_file *f, char *err, size_t errlen)
{
    const gguf_kv *kv = gguf_find_kv(f, "tokenizer.ggml.scores");
    if (kv) {
        if (kv->type != GGUF_VT_ARR || kv->v.arr.n != (uint64_t)t->n_vocab)
            return err_set(err, errlen, KVLM_ERR_FORMAT,
                           "%s: tokenizer.ggml.scores (offset %llu) must be a float array of %lld",
                           f->path, (unsigned long long)kv->offset, (long long)t->n_vocab);
        t->score = malloc((size_t)t->n_vocab * sizeof *t->score);
        if (!t->score) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory (scores)");
        for (int64_t i = 0; i < t->n_vocab; i++) {
            double v;
            if (!gguf_arr_get_float(kv, (uint64_t)i, &v))
                return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: tokenizer.ggml.scores[%lld] is not a number",
                               f->path, (long long)i);
            t->score[i] = (float)v;
        }
    }
    return KVLM_OK;
}

/* ---- special tokens, end of generation, pieces ---------------------------------------- */

typedef struct spec_key { uint32_t len; int32_t id; } spec_key;

static int cmp_spec_key(const void *a, const void *b)
{
    const spec_key *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;   /* longest first */
    return (x->id > y->id) - (x->id < y->id);                /* then lower id */
}

static kvlm_err build_special(tokenizer *t, char *err, size_t errlen)
{
    t->special = malloc((size_t)t->n_vocab * sizeof *t->special);
    if (!t->special) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory (special tokens)");
    for (int64_t id = 0; id < t->n_vocab; id++) {
        uint8_t ty = t->type[id];
        size_t n;
        tok_text(t, id, &n);
        if (n > 0 && (ty == TT_CONTROL || ty == TT_USER || ty == TT_UNKNOWN)) t->special[t->n_special++] = (int32_t)id;
    }
    spec_key *keys = malloc((t->n_special ? t->n_special : 1) * sizeof *keys);
    if (!keys) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory (special tokens)");
    for (size_t i = 0; i < t->n_special; i++) {
        int32_t id = t->special[i];
        keys[i] = (spec_key){ t->text_off[id + 1] - t->text_off[id], id };
    }
    qsort(keys, t->n_special, sizeof *keys, cmp_spec_key);
    for (size_t i = 0; i < t->n_special; i++) t->special[i] = keys[i].id;
    free(keys);
    return KVLM_OK;
}

/* Special tokens llama.cpp (0.3.36, llama_vocab::impl::load) finds by their text. Each
 * one present becomes a control token whatever its token_type says (so it is matched in
 * text only with parse_special, and its piece is rendered only on request); those of
 * TEXT_EOG also end generation. llama.cpp takes only the first FIM prefix/suffix/middle/
 * pad/repo/sep token it meets in its hash order; kvlm takes all (no file seen has two). */
static const char *const TEXT_FIM[] = {
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>", "<PRE>",
    "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>",
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "hole\xef\xbd\x9c>", "<SUF>",
    "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>",
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>", "<MID>",
    "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>",
};
static const char *const TEXT_EOG[] = {
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]",                     /* FIM pad */
    "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>",         /* FIM repo */
    "<|file_sep|>",                                                                /* FIM sep */
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>",
    "</s>",          /* paddleocr's; Gemma 3's "</s>" (strikethrough end, user-defined) is caught too */
    "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>",
    "<eos>", "<turn|>", "<|tool_response>",
    "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>", "[e~[",
};
/* gpt-oss: always rendered (user-defined) */
static const char *const TEXT_USER[] = { "<|channel|>", "<|message|>", "<|start|>", "<|constrain|>" };

#define N_OF(a) (sizeof (a) / sizeof (a)[0])

/* sets token text's type to ty (if present); true if it changed */
static bool set_type(tokenizer *t, const char *text, uint8_t ty)
{
    kvlm_token id = tokenizer_find(t, text);
    if (id < 0 || t->type[id] == ty) return false;
    t->type[id] = ty;
    return true;
}

/* makes id (if any) a control token; unknown stays unknown (it behaves alike); true if changed */
static bool make_control(tokenizer *t, kvlm_token id)
{
    if (id < 0 || t->type[id] == TT_CONTROL || t->type[id] == TT_UNKNOWN) return false;
    t->type[id] = TT_CONTROL;
    return true;
}

static bool eog_has(const tokenizer *t, const char *text)
{
    kvlm_token id = tokenizer_find(t, text);
    return id >= 0 && t->eog[id];
}

/* The end-of-generation set and the types llama.cpp gives the tokens above: EOS, EOT, the
 * TEXT_EOG tokens, minus its two workarounds (o200k_harmony/solar-open: <|end|> is not
 * EOG but user-defined when <|return|> and a call token, or a call token and <|flush|>,
 * are there; gemma4/plamo: </s> is a normal token when <|tool_response> or <|plamo:eos|>
 * is EOG). Returns true if any token's type changed (the pieces must then be rebuilt). */
static bool mark_eog(tokenizer *t)
{
    bool changed = false;
    for (size_t i = 0; i < N_OF(TEXT_FIM); i++) changed |= make_control(t, tokenizer_find(t, TEXT_FIM[i]));
    for (size_t i = 0; i < N_OF(TEXT_EOG); i++) {
        kvlm_token id = tokenizer_find(t, TEXT_EOG[i]);
        if (id < 0) continue;
        t->eog[id] = 1;
        changed |= make_control(t, id);
    }
    for (size_t i = 0; i < N_OF(TEXT_USER); i++) changed |= set_type(t, TEXT_USER[i], TT_USER);
    bool call = eog_has(t, "<|call|>") || eog_has(t, "<|calls|>");
    if (eog_has(t, "<|end|>") && call && (eog_has(t, "<|return|>") || eog_has(t, "<|flush|>"))) {
        t->eog[tokenizer_find(t, "<|end|>")] = 0;
        changed |= set_type(t, "<|end|>", TT_USER);
    }
    if (eog_has(t, "</s>") && (eog_has(t, "<|tool_response>") || eog_has(t, "<|plamo:eos|>"))) {
        t->eog[tokenizer_find(t, "</s>")] = 0;
        changed |= set_type(t, "</s>", TT_NORMAL);
    }
    if (t->eos >= 0) t->eog[t->eos] = 1;
    if (t->eot >= 0) t->eog[t->eot] = 1;
    return changed;
}

static void pick_eot(tokenizer *t)
{
    static const char *const names[] = { "<|im_end|>", "<|eot_id|>", "<end_of_turn>" };
    for (size_t i = 0; t->eot < 0 && i < sizeof names / sizeof names[0]; i++) t->eot = tokenizer_find(t, names[i]);
}

/* piece of a token with special tokens rendered: what detokenization appends. */
static size_t piece_of(const tokenizer *t, int64_t id, char *out)
{
    size_t n;
    const char *s = tok_text(t, id, &n);
    uint8_t ty = t->type[id];
    if (t->kind == TOK_BPE) {
        if (ty == TT_NORMAL) return tok_bpe_decode_text(s, n, out);
        if (ty == TT_UNUSED || ty == TT_BYTE) return 0;
        memcpy(out, s, n);
        return n;
    }
    /* SPM */
    if (ty == TT_BYTE) {
        int v = tok_parse_byte_token(s, n);
        if (v < 0) return 0;
        out[0] = (char)v;
        return 1;
    }
    if (ty == TT_UNUSED) return 0;
    /* CONTROL, UNKNOWN, USER: the text as it is (llama.cpp's token_to_piece; for Gemma's
     * user-defined "\n\n", "  ", "<table>" ... that is their raw bytes) */
    if (ty == TT_CONTROL || ty == TT_UNKNOWN || ty == TT_USER) { memcpy(out, s, n); return n; }
    size_t o = 0;   /* NORMAL: U+2581 -> ' ' */
    for (size_t i = 0; i < n;) {
        if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) { out[o++] = ' '; i += 3; }
        else out[o++] = s[i++];
    }
    return o;
}

kvlm_err tok_build_pieces(tokenizer *t, char *err, size_t errlen)
{
    size_t cap = (size_t)t->text_off[t->n_vocab] + 3 * (size_t)t->n_vocab + 1;
    t->piece_buf = malloc(cap);
    t->piece_off = malloc(((size_t)t->n_vocab + 1) * sizeof *t->piece_off);
    if (!t->piece_buf || !t->piece_off) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory (pieces)");
    uint32_t off = 0;
    for (int64_t id = 0; id < t->n_vocab; id++) {
        t->piece_off[id] = off;
        off += (uint32_t)piece_of(t, id, t->piece_buf + off);
    }
    t->piece_off[t->n_vocab] = off;
    return KVLM_OK;
}

/* ---- init / free ---------------------------------------------------------------------- */

/* tokenizer.ggml.model -> *kind, tokenizer.ggml.tokens -> *toks (checked) */
static kvlm_err read_model(const gguf_file *f, tok_kind *kind, const gguf_kv **toks, char *err, size_t errlen)
{
    gguf_str model;
    kvlm_err e;
    if ((e = gguf_get_str(f, "tokenizer.ggml.model", &model, err, errlen))) return e;
    if (gguf_str_eq(model, "gpt2")) *kind = TOK_BPE;
    else if (gguf_str_eq(model, "llama")) *kind = TOK_SPM;
    else
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model '%.*s' is not supported (gpt2, llama)",
                       f->path, (int)(model.len > 64 ? 64 : model.len), model.ptr);
    if ((e = gguf_get_arr(f, "tokenizer.ggml.tokens", toks, err, errlen))) return e;
    if ((*toks)->v.arr.type != GGUF_VT_STR || (*toks)->v.arr.n == 0 || (*toks)->v.arr.n > INT32_MAX)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: tokenizer.ggml.tokens (offset %llu) must be a non-empty string array",
                       f->path, (unsigned long long)(*toks)->offset);
    return KVLM_OK;
}

/* gpt2: the shared BPE constructor over the GGUF's tokens, types, merges and pre */
static kvlm_err new_bpe(const gguf_file *f, const gguf_kv *toks, const uint8_t *types, tokenizer **out,
                        char *err, size_t errlen)
{
    const gguf_kv *kv;
    kvlm_err e = gguf_get_arr(f, "tokenizer.ggml.merges", &kv, err, errlen);
    if (e) return e;
    if (kv->v.arr.type != GGUF_VT_STR || kv->v.arr.n > INT32_MAX)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: tokenizer.ggml.merges (offset %llu) must be a string array",
                       f->path, (unsigned long long)kv->offset);
    gguf_str pre = { NULL, 0 };
    if (gguf_get_str(f, "tokenizer.ggml.pre", &pre, NULL, 0) != KVLM_OK) pre = (gguf_str){ NULL, 0 };
    tok_bpe_src src = { toks->v.arr.strs, (int64_t)toks->v.arr.n, types, kv->v.arr.strs, (size_t)kv->v.arr.n,
                        pre.ptr, (size_t)pre.len };
    return tok_bpe_new(&src, out, err, errlen);
}

static kvlm_err init_ids(tokenizer *t, const gguf_file *f, char *err, size_t errlen)
{
    kvlm_err e;
    t->bos = t->eos = t->eot = t->unk = -1;
    t->add_bos = t->kind == TOK_SPM;
    t->add_space_prefix = t->kind == TOK_SPM;
    if ((e = get_opt_id(f, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos, err, errlen))) return e;
    if ((e = get_opt_id(f, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos, err, errlen))) return e;
    if ((e = get_opt_id(f, "tokenizer.ggml.eot_token_id", t->n_vocab, &t->eot, err, errlen))) return e;
    if ((e = get_opt_id(f, "tokenizer.ggml.unknown_token_id", t->n_vocab, &t->unk, err, errlen))) return e;
    if ((e = get_opt_bool(f, "tokenizer.ggml.add_bos_token", &t->add_bos, err, errlen))) return e;
    if ((e = get_opt_bool(f, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err, errlen))) return e;
    pick_eot(t);
    if (mark_eog(t) && t->kind == TOK_BPE) {   /* BPE pieces were built from the old types */
        free(t->piece_buf);
        free(t->piece_off);
        t->piece_buf = NULL;
        t->piece_off = NULL;
        return tok_build_pieces(t, err, errlen);
    }
    return KVLM_OK;
}

kvlm_err tokenizer_init_gguf(const gguf_file *f, tokenizer **out, char *err, size_t errlen)
{
    *out = NULL;
    tokenizer *t = NULL;
    uint8_t *types = NULL;
    const gguf_kv *toks;
    tok_kind kind = TOK_BPE;
    kvlm_err e;
    if ((e = read_model(f, &kind, &toks, err, errlen))) return e;
    int64_t n_vocab = (int64_t)toks->v.arr.n;
    if (!(types = malloc((size_t)n_vocab))) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory (vocabulary)");
    if ((e = read_types(f, n_vocab, types, err, errlen))) goto fail;
    if (kind == TOK_BPE) {
        if ((e = new_bpe(f, toks, types, &t, err, errlen))) goto fail;
    } else {
        if (!(t = calloc(1, sizeof *t))) { e = err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory (tokenizer)"); goto fail; }
        memset(t->byte_tok, 0xff, sizeof t->byte_tok);
        memset(t->byte_piece, 0xff, sizeof t->byte_piece);
        t->kind = TOK_SPM;
        if ((e = tok_vocab_init(t, toks->v.arr.strs, n_vocab, err, errlen))) goto fail;
        memcpy(t->type, types, (size_t)n_vocab);
    }
    if ((e = read_scores(t, f, err, errlen))) goto fail;
    if ((e = init_ids(t, f, err, errlen))) goto fail;
    if ((e = build_special(t, err, errlen))) goto fail;
    if (kind == TOK_SPM) {   /* BPE pieces were built by tok_bpe_new */
        if ((e = tok_spm_init(t, f, err, errlen))) goto fail;
        if ((e = tok_build_pieces(t, err, errlen))) goto fail;
    }
    free(types);
    *out = t;
    return KVLM_OK;
fail:
    free(types);
    tokenizer_free(t);
    return e;
}

void tokenizer_free(tokenizer *t)
{
    if (!t) return;
    tok_bpe_free(t);
    free(t->text_buf);
    free(t->text_off);
    free(t->piece_buf);
    free(t->piece_off);
    free(t->type);
    free(t->eog);
    free(t->score);
    free(t->ids);
    free(t->special);
    free(t);
}

/* ---- encode ---------------------------------------------------------------------------
 * Special tokens split the text first, the llama.cpp way: for each special token in
 * order (longest first), every raw fragment is cut at each of its occurrences. Then
 * each remaining raw fragment is tokenized by the model's kind. */

typedef struct frag { size_t off, len; kvlm_token tok; } frag;   /* tok >= 0: a special token */

typedef struct frag_list { frag *v; size_t n, cap; } frag_list;

static bool frags_push(frag_list *l, frag x)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        frag *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) return false;
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = x;
    return true;
}

/* Appends fragment f to dst, cut at every occurrence of special token id (left to
 * right, non-overlapping). false on OOM. */
static bool split_fragment(const tokenizer *t, const char *text, frag f, kvlm_token id, frag_list *dst)
{
    size_t sn;
    const char *s = tok_text(t, id, &sn);
    while (f.len) {
        const char *base = text + f.off;
        const char *hit = f.tok < 0 ? memmem(base, f.len, s, sn) : NULL;
        if (!hit) return frags_push(dst, f);
        size_t pre = (size_t)(hit - base);
        if (pre && !frags_push(dst, (frag){ f.off, pre, -1 })) return false;
        if (!frags_push(dst, (frag){ f.off + pre, sn, id })) return false;
        f.off += pre + sn;
        f.len -= pre + sn;
    }
    return true;
}

/* text -> *l: raw fragments and special tokens, in order. Each pass over one special
 * token rebuilds the list (linear in its length). */
static kvlm_err partition(const tokenizer *t, const char *text, size_t len, bool parse_special, frag_list *l)
{
    frag_list tmp = { 0 };
    if (len && !frags_push(l, (frag){ 0, len, -1 })) return KVLM_ERR_NOMEM;
    for (size_t k = 0; k < t->n_special; k++) {
        kvlm_token id = t->special[k];
        if (!parse_special && t->type[id] != TT_USER) continue;
        tmp.n = 0;
        for (size_t i = 0; i < l->n; i++)
            if (!split_fragment(t, text, l->v[i], id, &tmp)) { free(tmp.v); return KVLM_ERR_NOMEM; }
        frag_list sw = *l;
        *l = tmp;
        tmp = sw;
    }
    free(tmp.v);
    return KVLM_OK;
}

kvlm_err tokenizer_encode(const tokenizer *t, const char *text, size_t len, bool add_bos,
                          bool parse_special, kvlm_token *out, size_t cap, size_t *n_out,
                          char *err, size_t errlen)
{
    tok_out o = { out, out ? cap : 0, 0 };
    frag_list l = { 0 };
    kvlm_err e = KVLM_OK;
    *n_out = 0;
    if (!text && len) return err_set(err, errlen, KVLM_ERR_INVALID, "tokenize: NULL text");
    if (add_bos && t->add_bos && t->bos >= 0) tok_out_push(&o, t->bos);
    if ((e = partition(t, text, len, parse_special, &l))) goto done;
    bool prev_special = true;   /* SPM: a space prefix on the first raw fragment */
    for (size_t i = 0; i < l.n && !e; i++) {
        frag f = l.v[i];
        if (f.tok >= 0) {
            tok_out_push(&o, f.tok);
            prev_special = true;
            continue;
        }
        if (t->kind == TOK_BPE) e = tok_bpe_encode(t, text + f.off, f.len, &o);
        else e = tok_spm_encode(t, text + f.off, f.len, t->add_space_prefix && prev_special, &o);
        prev_special = false;
    }
done:
    free(l.v);
    if (e) return err_set(err, errlen, e, "tokenize: out of memory");
    *n_out = o.n;
    if (o.n > cap)
        return err_set(err, errlen, KVLM_ERR_INVALID, "tokenize: %zu tokens do not fit in %zu", o.n, cap);
    return KVLM_OK;
}

/* ---- pieces and ids ----------------------------------------------------------------- */

int64_t tokenizer_token_bytes(const tokenizer *t, kvlm_token tok, bool render_special, char *buf, size_t cap)
{
    if (tok < 0 || tok >= t->n_vocab) return -1;
    uint8_t ty = t->type[tok];
    if (!render_special && (ty == TT_CONTROL || ty == TT_UNKNOWN)) return 0;
    size_t n = t->piece_off[tok + 1] - t->piece_off[tok];
    if (n <= cap && n) memcpy(buf, t->piece_buf + t->piece_off[tok], n);
    return (int64_t)n;
}

bool tokenizer_is_eog(const tokenizer *t, kvlm_token tok)
{
    return tok >= 0 && tok < t->n_vocab && t->eog[tok];
}

kvlm_token tokenizer_bos(const tokenizer *t) { return t->bos; }
kvlm_token tokenizer_eos(const tokenizer *t) { return t->eos; }
kvlm_token tokenizer_eot(const tokenizer *t) { return t->eot; }
int64_t tokenizer_n_vocab(const tokenizer *t) { return t->n_vocab; }
