/* tok_whisper.c - see tok_whisper.h. Room: tok. May touch: core (errors), the
 * shared BPE tokenizer of src/tok (tokenizer_impl.h: tok_bpe_new builds it, the
 * GGUF path uses the same constructor), detok (U+FFFD rules), cJSON, libc.
 *
 *   vocabulary.txt --lines--> tokens: [n_vocab] id -> byte-level text
 *   tokenizer.json --cJSON--> model.vocab, added_tokens (checked against tokens)
 *                             model.merges: [n_merges] "a b" by rank
 *   tokens + merges + types (ids >= eot: TT_CONTROL) --tok_bpe_new--> bpe
 *
 * bpe owns copies of everything; the file buffers and the cJSON tree are freed
 * before tok_whisper_load returns. Invariant after load: eot >= 0, and every id in
 * [0, eot) is a byte-level token whose piece is its decoded bytes. */
#include "tok/tok_whisper.h"

#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/err.h"
#include "tok/detok.h"
#include "tok/tokenizer_impl.h"

#define VOCAB_MAX_BYTES ((size_t)16 << 20)   /* 51,864 lines are 422,309 bytes */
#define JSON_MAX_BYTES ((size_t)64 << 20)    /* tokenizer.json is 2,128,466 bytes */
#define N_TIMESTAMPS 1501                    /* <|0.00|> .. <|30.00|> */

struct tok_whisper {
    tokenizer *bpe;
    tok_whisper_specials sp;
};

/* ---- files ------------------------------------------------------------------------ */

static kvlm_err read_all(const char *path, size_t max, char **out, size_t *len, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, errlen, KVLM_ERR_IO, "%s: %s", path, strerror(errno));
    kvlm_err e = KVLM_OK;
    char *buf = malloc(max + 1);
    if (!buf) { e = err_set(err, errlen, KVLM_ERR_NOMEM, "%s: out of memory", path); goto done; }
    size_t n = fread(buf, 1, max + 1, f);
    if (ferror(f)) { e = err_set(err, errlen, KVLM_ERR_IO, "%s: read error", path); goto done; }
    if (n > max) { e = err_set(err, errlen, KVLM_ERR_FORMAT, "%s: larger than %zu bytes", path, max); goto done; }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    buf = NULL;
done:
    free(buf);
    fclose(f);
    return e;
}

/* ---- vocabulary.txt: one token per line, the id is the line number -------------------
 *   lines: [n] views into the file buffer (no '\n') */

static kvlm_err split_lines(const char *path, const char *buf, size_t len, gguf_str **lines, int64_t *n_out,
                            char *err, size_t errlen)
{
    *lines = NULL;
    if (len == 0) return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: empty file", path);
    if (buf[len - 1] != '\n')
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: the last line has no newline (truncated?)", path);
    int64_t n = 0;
    for (size_t i = 0; i < len; i++) n += buf[i] == '\n';
    gguf_str *v = malloc((size_t)n * sizeof *v);
    if (!v) return err_set(err, errlen, KVLM_ERR_NOMEM, "%s: out of memory", path);
    size_t start = 0;
    for (int64_t id = 0; id < n; id++) {
        const char *nl = memchr(buf + start, '\n', len - start);
        size_t l = (size_t)(nl - (buf + start));
        size_t bad = tok_bpe_check_text(buf + start, l);
        if (l == 0 || bad < l) {
            free(v);
            if (l == 0) return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: line %lld (id %lld) is empty", path,
                                       (long long)id + 1, (long long)id);
            return err_set(err, errlen, KVLM_ERR_FORMAT,
                           "%s: line %lld (id %lld), byte %zu: not byte-level text (invalid UTF-8, or a "
                           "char outside GPT-2's byte table)", path, (long long)id + 1, (long long)id, bad);
        }
        v[id] = (gguf_str){ buf + start, l };
        start += l + 1;
    }
    *lines = v;
    *n_out = n;
    return KVLM_OK;
}

static bool line_is(const gguf_str *lines, int64_t n, int64_t id, const char *s, size_t len)
{
    return id >= 0 && id < n && lines[id].len == len && memcmp(lines[id].ptr, s, len) == 0;
}

/* ---- tokenizer.json ----------------------------------------------------------------- */

/* id of a JSON number that is an integer in [0, INT32_MAX], else -1 */
static int64_t json_id(const cJSON *j)
{
    if (!cJSON_IsNumber(j) || j->valuedouble < 0 || j->valuedouble > INT32_MAX) return -1;
    int64_t v = (int64_t)j->valuedouble;
    return (double)v == j->valuedouble ? v : -1;
}

/* model.vocab and added_tokens must name the same text as vocabulary.txt for each id */
static kvlm_err check_agreement(const char *path, const cJSON *root, const gguf_str *lines, int64_t n,
                                char *err, size_t errlen)
{
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "model"), "vocab");
    if (!cJSON_IsObject(vocab) || !vocab->child)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: no model.vocab object", path);
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int64_t id = json_id(e);
        if (id < 0) return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: model.vocab['%.40s'] is not a token id", path, e->string);
        if (!line_is(lines, n, id, e->string, strlen(e->string)))
            return err_set(err, errlen, KVLM_ERR_FORMAT,
                           "%s: model.vocab['%.40s'] = %lld, but vocabulary.txt line %lld is '%.*s'", path,
                           e->string, (long long)id, (long long)id + 1,
                           id < n ? (int)(lines[id].len > 40 ? 40 : lines[id].len) : 6,
                           id < n ? lines[id].ptr : "(none)");
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), *a;
    if (added && !cJSON_IsArray(added))
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: added_tokens is not an array", path);
    cJSON_ArrayForEach(a, added) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(a, "content");
        int64_t id = json_id(cJSON_GetObjectItemCaseSensitive(a, "id"));
        if (!cJSON_IsString(c) || id < 0)
            return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: an added_tokens entry without id and content", path);
        if (!line_is(lines, n, id, c->valuestring, strlen(c->valuestring)))
            return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: added token '%.40s' has id %lld, which vocabulary.txt "
                           "gives another text (or does not have)", path, c->valuestring, (long long)id);
    }
    return KVLM_OK;
}

/* The pre-tokenizer and model kinds this file implements: ByteLevel, BPE. */
static kvlm_err check_kinds(const char *path, const cJSON *root, char *err, size_t errlen)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "BPE") != 0)
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "%s: model.type '%.40s' (only BPE)", path, type->valuestring);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "ignore_merges")) ||
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback")))
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "%s: ignore_merges / byte_fallback are not supported", path);
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(pre, "type");
    if (cJSON_IsObject(pre) && !(cJSON_IsString(pt) && strcmp(pt->valuestring, "ByteLevel") == 0))
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "%s: pre_tokenizer is not ByteLevel", path);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pre, "add_prefix_space")))
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "%s: pre_tokenizer.add_prefix_space is not supported", path);
    return KVLM_OK;
}

/* model.merges -> merges: [n] "a b" views. Entries are "a b" strings (tokenizers
 * < 0.20) or ["a", "b"] pairs (newer files), whose joined text goes in *pool. */
static kvlm_err read_merges(const char *path, const cJSON *root, gguf_str **merges, size_t *n_out, char **pool,
                            char *err, size_t errlen)
{
    *merges = NULL;
    *pool = NULL;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "model"), "merges"), *e;
    int n = cJSON_GetArraySize(m);
    if (!cJSON_IsArray(m) || n <= 0) return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: no model.merges array", path);
    size_t pool_len = 0, i = 0;
    for (e = m->child; e; e = e->next, i++) {
        const cJSON *a = cJSON_GetArrayItem(e, 0), *b = cJSON_GetArrayItem(e, 1);
        if (cJSON_IsString(e)) continue;
        if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 || !cJSON_IsString(a) || !cJSON_IsString(b))
            return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]",
                           path, i);
        pool_len += strlen(a->valuestring) + strlen(b->valuestring) + 1;
    }
    gguf_str *v = malloc((size_t)n * sizeof *v);
    char *p = malloc(pool_len + 1);
    if (!v || !p) {
        free(v); free(p);
        return err_set(err, errlen, KVLM_ERR_NOMEM, "%s: out of memory (merges)", path);
    }
    size_t off = 0;
    i = 0;
    cJSON_ArrayForEach(e, m) {
        if (cJSON_IsString(e)) {
            v[i] = (gguf_str){ e->valuestring, strlen(e->valuestring) };
        } else {
            const char *a = cJSON_GetArrayItem(e, 0)->valuestring, *b = cJSON_GetArrayItem(e, 1)->valuestring;
            size_t na = strlen(a), nb = strlen(b);
            memcpy(p + off, a, na);
            p[off + na] = ' ';
            memcpy(p + off + na + 1, b, nb);
            v[i] = (gguf_str){ p + off, na + 1 + nb };
            off += na + 1 + nb;
        }
        i++;
    }
    *merges = v;
    *n_out = (size_t)n;
    *pool = p;
    return KVLM_OK;
}

/* Every merge must join two tokens of the vocabulary into a third, as HF requires
 * (tok_bpe_new silently skips the others, llama.cpp's rule for GGUF files). */
static kvlm_err check_merges(const char *path, const tokenizer *t, const gguf_str *merges, size_t n,
                             char *err, size_t errlen)
{
    char buf[512];
    for (size_t i = 0; i < n; i++) {
        gguf_str s = merges[i];
        const char *sp = s.len >= 3 && s.len < sizeof buf ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
        size_t na = sp ? (size_t)(sp - s.ptr) : 0, nb = sp ? s.len - na - 1 : 0;
        if (sp && nb) {
            memcpy(buf, s.ptr, na);
            memcpy(buf + na, sp + 1, nb);
        }
        if (!sp || !nb || tok_lookup(t, s.ptr, na) < 0 || tok_lookup(t, sp + 1, nb) < 0 ||
            tok_lookup(t, buf, na + nb) < 0)
            return err_set(err, errlen, KVLM_ERR_FORMAT,
                           "%s: model.merges[%zu] '%.*s' does not join two vocabulary tokens into a third", path, i,
                           (int)(s.len > 60 ? 60 : s.len), s.ptr);
    }
    return KVLM_OK;
}

/* ---- specials and timestamps -------------------------------------------------------- */

static kvlm_err find_specials(const char *path, tok_whisper *w, char *err, size_t errlen)
{
    tok_whisper_specials *sp = &w->sp;
    const tokenizer *t = w->bpe;
    sp->eot = tokenizer_find(t, "<|endoftext|>");
    sp->sot = tokenizer_find(t, "<|startoftranscript|>");
    sp->translate = tokenizer_find(t, "<|translate|>");
    sp->transcribe = tokenizer_find(t, "<|transcribe|>");
    sp->startoflm = tokenizer_find(t, "<|startoflm|>");
    sp->startofprev = tokenizer_find(t, "<|startofprev|>");
    sp->nocaptions = tokenizer_find(t, "<|nocaptions|>");
    sp->notimestamps = tokenizer_find(t, "<|notimestamps|>");
    sp->lang_en = tokenizer_find(t, "<|en|>");
    sp->timestamp_begin = tokenizer_find(t, "<|0.00|>");
    sp->timestamp_end = -1;
    if (sp->eot < 0 || sp->sot < 0)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: no <|endoftext|> or <|startoftranscript|> line", path);
    if (sp->timestamp_begin < 0) return KVLM_OK;
    /* <|0.00|> .. <|30.00|> in 0.02 s steps, the last lines of the file */
    int64_t k = 0;
    for (; k < N_TIMESTAMPS && sp->timestamp_begin + k < t->n_vocab; k++) {
        char want[16];
        int c = (int)(2 * k);   /* centiseconds */
        int len = snprintf(want, sizeof want, "<|%d.%02d|>", c / 100, c % 100);
        kvlm_token id = (kvlm_token)(sp->timestamp_begin + k);
        size_t n = t->text_off[id + 1] - t->text_off[id];
        if ((size_t)len != n || memcmp(t->text_buf + t->text_off[id], want, n) != 0)
            return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: line %lld (id %lld) should be %s", path,
                           (long long)id + 1, (long long)id, want);
    }
    if (k < N_TIMESTAMPS || sp->timestamp_begin + k != t->n_vocab)
        return err_set(err, errlen, KVLM_ERR_FORMAT,
                       "%s: %lld timestamp lines from id %lld, then %lld more (want <|0.00|> .. <|30.00|> last; "
                       "truncated?)", path, (long long)k, (long long)sp->timestamp_begin,
                       (long long)(t->n_vocab - sp->timestamp_begin - k));
    sp->timestamp_end = (kvlm_token)(sp->timestamp_begin + N_TIMESTAMPS - 1);
    return KVLM_OK;
}

/* ---- load / free -------------------------------------------------------------------- */

kvlm_err tok_whisper_load(const char *dir, tok_whisper **out, char *err, size_t errlen)
{
    *out = NULL;
    char vpath[4096], jpath[4096];
    if ((size_t)snprintf(vpath, sizeof vpath, "%s/vocabulary.txt", dir) >= sizeof vpath ||
        (size_t)snprintf(jpath, sizeof jpath, "%s/tokenizer.json", dir) >= sizeof jpath)
        return err_set(err, errlen, KVLM_ERR_INVALID, "%s: path too long", dir);
    char *vbuf = NULL, *jbuf = NULL, *pool = NULL;
    gguf_str *lines = NULL, *merges = NULL;
    uint8_t *types = NULL;
    cJSON *root = NULL;
    int64_t n_vocab = 0;
    size_t vlen, jlen, n_merges = 0;
    kvlm_err e;
    tok_whisper *w = calloc(1, sizeof *w);
    if (!w) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory (tokenizer)");

    if ((e = read_all(vpath, VOCAB_MAX_BYTES, &vbuf, &vlen, err, errlen))) goto fail;
    if ((e = split_lines(vpath, vbuf, vlen, &lines, &n_vocab, err, errlen))) goto fail;
    if ((e = read_all(jpath, JSON_MAX_BYTES, &jbuf, &jlen, err, errlen))) goto fail;
    const char *end = jbuf;
    if (!(root = cJSON_ParseWithLengthOpts(jbuf, jlen, &end, false))) {
        e = err_set(err, errlen, KVLM_ERR_FORMAT, "%s: not valid JSON (at byte %td)", jpath, end - jbuf);
        goto fail;
    }
    if (!cJSON_IsObject(root)) { e = err_set(err, errlen, KVLM_ERR_FORMAT, "%s: not a JSON object", jpath); goto fail; }
    if ((e = check_kinds(jpath, root, err, errlen))) goto fail;
    if ((e = check_agreement(jpath, root, lines, n_vocab, err, errlen))) goto fail;
    if ((e = read_merges(jpath, root, &merges, &n_merges, &pool, err, errlen))) goto fail;

    /* types: [n_vocab] ids from <|endoftext|> on are specials and timestamps */
    int64_t eot = -1;
    for (int64_t id = 0; id < n_vocab && eot < 0; id++)
        if (line_is(lines, n_vocab, id, "<|endoftext|>", 13)) eot = id;
    if (n_vocab <= 0 || !(types = malloc((size_t)n_vocab))) { e = err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory"); goto fail; }
    for (int64_t id = 0; id < n_vocab; id++) types[id] = eot >= 0 && id >= eot ? TT_CONTROL : TT_NORMAL;
    tok_bpe_src src = { lines, n_vocab, types, merges, n_merges, NULL, 0 };   /* GPT-2 regex */
    if ((e = tok_bpe_new(&src, &w->bpe, err, errlen))) goto fail;
    if ((e = check_merges(jpath, w->bpe, merges, n_merges, err, errlen))) goto fail;
    if ((e = find_specials(vpath, w, err, errlen))) goto fail;
    *out = w;
    w = NULL;
fail:
    tok_whisper_free(w);
    cJSON_Delete(root);
    free(vbuf); free(jbuf); free(pool);
    free(lines); free(merges); free(types);
    return e;
}

void tok_whisper_free(tok_whisper *t)
{
    if (!t) return;
    tokenizer_free(t->bpe);
    free(t);
}

int64_t tok_whisper_n_vocab(const tok_whisper *t) { return t->bpe->n_vocab; }

const tok_whisper_specials *tok_whisper_get_specials(const tok_whisper *t) { return &t->sp; }

double tok_whisper_timestamp_seconds(const tok_whisper *t, kvlm_token id)
{
    if (t->sp.timestamp_begin < 0 || id < t->sp.timestamp_begin || id > t->sp.timestamp_end) return -1.0;
    return (double)(id - t->sp.timestamp_begin) * 0.02;
}

/* ---- decode / encode ---------------------------------------------------------------- */

int64_t tok_whisper_token_bytes(const tok_whisper *t, kvlm_token id, bool render_special, char *buf, size_t cap)
{
    return tokenizer_token_bytes(t->bpe, id, render_special, buf, cap);   /* ids >= eot are TT_CONTROL */
}

kvlm_err tok_whisper_decode(const tok_whisper *t, const kvlm_token *ids, size_t n, char **out,
                            char *err, size_t errlen)
{
    *out = NULL;
    const tokenizer *b = t->bpe;
    size_t raw_len = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= b->n_vocab)
            return err_set(err, errlen, KVLM_ERR_INVALID, "decode: id %d at %zu is not in [0, %lld)", (int)ids[i], i,
                           (long long)b->n_vocab);
        if (ids[i] < t->sp.eot) raw_len += b->piece_off[ids[i] + 1] - b->piece_off[ids[i]];
    }
    /* raw: [raw_len] joined bytes; text: U+FFFD-repaired, at most 3 bytes per raw byte */
    size_t cap = 3 * (raw_len + 3) + 1;
    char *raw = malloc(raw_len + 1), *text = malloc(cap);
    if (!raw || !text) {
        free(raw); free(text);
        return err_set(err, errlen, KVLM_ERR_NOMEM, "decode: out of memory");
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= t->sp.eot) continue;
        size_t pn = b->piece_off[ids[i] + 1] - b->piece_off[ids[i]];
        memcpy(raw + o, b->piece_buf + b->piece_off[ids[i]], pn);
        o += pn;
    }
    kvlm_detok d = { 0 };
    size_t tn = detok_push(&d, raw, raw_len, text, cap);
    tn += detok_flush(&d, text + tn, cap - tn);
    text[tn] = '\0';
    free(raw);
    *out = text;
    return KVLM_OK;
}

kvlm_err tok_whisper_encode(const tok_whisper *t, const char *text, size_t len, kvlm_token *out, size_t cap,
                            size_t *n_out, char *err, size_t errlen)
{
    return tokenizer_encode(t->bpe, text, len, false, false, out, cap, n_out, err, errlen);
}
