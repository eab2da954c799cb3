/* test_tok_whisper.c - Whisper's tokenizer (src/tok/tok_whisper.c) against golden ids
 * and texts from HF tokenizers (tests/ref/gen_whisper_tok_golden.py ->
 * tests/data/whisper/tok_golden.json), the ids and facts of ../shared/WHISPER.md
 * section 4 (specials, timestamps, the JFK example), and hostile files.
 * Room: tests/tok. The real-model cases skip when ~/.cache/kvlm/whisper-tiny.en (or
 * $KVLM_CACHE/whisper-tiny.en) is not there; the hostile cases on small synthetic
 * files always run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <cJSON.h>

#include "kvlm.h"
#include "testutil.h"
#include "tok/tok_whisper.h"

/* ---- helpers ------------------------------------------------------------------------ */

static const char *whisper_dir(void)
{
    static char buf[4096];
    const char *cache = getenv("KVLM_CACHE"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (cache && *cache) snprintf(buf, sizeof buf, "%s/whisper-tiny.en", cache);
    else if (xdg && *xdg) snprintf(buf, sizeof buf, "%s/kvlm/whisper-tiny.en", xdg);
    else snprintf(buf, sizeof buf, "%s/.cache/kvlm/whisper-tiny.en", home ? home : ".");
    char v[4200], j[4200];
    snprintf(v, sizeof v, "%s/vocabulary.txt", buf);
    snprintf(j, sizeof j, "%s/tokenizer.json", buf);
    return access(v, R_OK) == 0 && access(j, R_OK) == 0 ? buf : NULL;
}

static void write_file(const char *path, const char *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

typedef struct tmpdir { char path[256]; } tmpdir;

static void tmp_make(tmpdir *d)
{
    snprintf(d->path, sizeof d->path, "/tmp/kvlm-tokw-XXXXXX");
    assert_non_null(mkdtemp(d->path));
}

/* writes dir/name (NULL data: removes it) */
static void tmp_put(const tmpdir *d, const char *name, const char *data, size_t n)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", d->path, name);
    unlink(p);
    if (data) write_file(p, data, n);
}

static void tmp_remove(const tmpdir *d)
{
    tmp_put(d, "vocabulary.txt", NULL, 0);
    tmp_put(d, "tokenizer.json", NULL, 0);
    rmdir(d->path);
}

/* loading d must fail with code and a message containing want */
static void expect_fail(const tmpdir *d, kvlm_err code, const char *want)
{
    char err[512] = "";
    tok_whisper *t = (tok_whisper *)1;
    kvlm_err e = tok_whisper_load(d->path, &t, err, sizeof err);
    if (e != code || !strstr(err, want))
        fail_msg("want %s containing '%s', got %s: '%s'", kvlm_err_name(code), want, kvlm_err_name(e), err);
    assert_null(t);
}

/* ---- the real model ------------------------------------------------------------------- */

typedef struct fixture {
    cJSON *golden;
    tok_whisper *tok;
} fixture;

static int setup(void **state)
{
    const char *dir = whisper_dir();
    if (!dir) { print_message("no whisper-tiny.en in the cache: skipped\n"); *state = NULL; return 0; }
    fixture *fx = calloc(1, sizeof *fx);
    size_t len;
    char *text = test_read_file(test_data_path("whisper/tok_golden.json"), &len);
    if (!text) { fprintf(stderr, "no %s\n", test_data_path("whisper/tok_golden.json")); free(fx); return -1; }
    fx->golden = cJSON_Parse(text);
    free(text);
    char err[512];
    if (!fx->golden || tok_whisper_load(dir, &fx->tok, err, sizeof err) != KVLM_OK) {
        fprintf(stderr, "setup: %s\n", fx->golden ? err : "bad golden JSON");
        cJSON_Delete(fx->golden);
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    if (!fx) return 0;
    cJSON_Delete(fx->golden);
    tok_whisper_free(fx->tok);
    free(fx);
    return 0;
}

#define NEED_MODEL(fx) do { if (!(fx)) { skip(); } } while (0)

/* ids of a JSON array: [n] into out (cap) */
static size_t json_ids(const cJSON *arr, kvlm_token *out, size_t cap)
{
    size_t n = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, arr) { assert_true(n < cap); out[n++] = (kvlm_token)x->valueint; }
    return n;
}

/* bytes of a JSON array of 0..255: [n] into out (cap), through json_ids */
static size_t json_bytes(const cJSON *arr, char *out, size_t cap)
{
    kvlm_token *v = malloc(cap * sizeof *v);
    size_t n = json_ids(arr, v, cap);
    for (size_t i = 0; i < n; i++) out[i] = (char)v[i];
    free(v);
    return n;
}

static void test_golden_encode(void **state)
{
    fixture *fx = *state;
    NEED_MODEL(fx);
    const cJSON *cases = cJSON_GetObjectItem(fx->golden, "cases"), *c;
    size_t n_cases = 0, bad = 0;
    kvlm_token *want = malloc(4096 * sizeof *want), *got = malloc(4096 * sizeof *got);
    char *text = malloc(8192), *dec_want = malloc(8192), err[256];
    cJSON_ArrayForEach(c, cases) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        size_t len = json_bytes(cJSON_GetObjectItem(c, "bytes"), text, 8192);
        size_t nw = json_ids(cJSON_GetObjectItem(c, "ids"), want, 4096), ng = 0;
        assert_int_equal(tok_whisper_encode(fx->tok, text, len, got, 4096, &ng, err, sizeof err), KVLM_OK);
        bool same = ng == nw && memcmp(got, want, nw * sizeof *got) == 0;
        if (!same) {
            size_t k = 0;
            while (k < ng && k < nw && got[k] == want[k]) k++;
            print_message("case %s: %zu ids, want %zu; first difference at %zu\n", name, ng, nw, k);
            bad++;
        }
        /* decode of the golden ids gives HF's decode ("decoded", else the text itself) */
        char *dec = NULL;
        assert_int_equal(tok_whisper_decode(fx->tok, want, nw, &dec, err, sizeof err), KVLM_OK);
        const cJSON *hf = cJSON_GetObjectItem(c, "decoded");
        size_t dn = hf ? json_bytes(hf, dec_want, 8192) : len;
        if (!hf) memcpy(dec_want, text, len);
        /* (control_chars holds a NUL: the text is compared by HF's length) */
        if (memcmp(dec, dec_want, dn) != 0 || dec[dn] != '\0') { print_message("case %s: decode differs\n", name); bad++; }
        free(dec);
        n_cases++;
    }
    print_message("%zu whisper cases, %zu mismatches\n", n_cases, bad);
    free(want); free(got); free(text); free(dec_want);
    assert_true(n_cases >= 90);
    assert_int_equal(bad, 0);
}

static void test_golden_decode(void **state)
{
    fixture *fx = *state;
    NEED_MODEL(fx);
    const cJSON *cases = cJSON_GetObjectItem(fx->golden, "decode"), *c;
    kvlm_token ids[512];
    char want[4096], err[256];
    size_t n_cases = 0;
    cJSON_ArrayForEach(c, cases) {
        size_t n = json_ids(cJSON_GetObjectItem(c, "ids"), ids, 512);
        size_t wn = json_bytes(cJSON_GetObjectItem(c, "decoded"), want, sizeof want);
        char *got = NULL;
        assert_int_equal(tok_whisper_decode(fx->tok, ids, n, &got, err, sizeof err), KVLM_OK);
        if (strlen(got) != wn || memcmp(got, want, wn) != 0)
            fail_msg("decode case %s: got '%s'", cJSON_GetObjectItem(c, "name")->valuestring, got);
        free(got);
        n_cases++;
    }
    assert_int_equal(n_cases, 8);
}

/* WHISPER.md section 4 */
static void test_known_ids(void **state)
{
    fixture *fx = *state;
    NEED_MODEL(fx);
    const tok_whisper_specials *sp = tok_whisper_get_specials(fx->tok);
    assert_int_equal(tok_whisper_n_vocab(fx->tok), 51864);
    assert_int_equal(sp->eot, 50256);
    assert_int_equal(sp->sot, 50257);
    assert_int_equal(sp->lang_en, 50258);
    assert_int_equal(sp->translate, 50357);
    assert_int_equal(sp->transcribe, 50358);
    assert_int_equal(sp->startoflm, 50359);
    assert_int_equal(sp->startofprev, 50360);
    assert_int_equal(sp->nocaptions, 50361);
    assert_int_equal(sp->notimestamps, 50362);
    assert_int_equal(sp->timestamp_begin, 50363);
    assert_int_equal(sp->timestamp_end, 51863);
    /* ... and HF's ids for the same strings */
    const cJSON *hf = cJSON_GetObjectItem(fx->golden, "specials");
    assert_int_equal(cJSON_GetObjectItem(hf, "<|endoftext|>")->valueint, sp->eot);
    assert_int_equal(cJSON_GetObjectItem(hf, "<|startoftranscript|>")->valueint, sp->sot);
    assert_int_equal(cJSON_GetObjectItem(hf, "<|nocaptions|>")->valueint, sp->nocaptions);
    assert_int_equal(cJSON_GetObjectItem(hf, "<|notimestamps|>")->valueint, sp->notimestamps);

    static const char jfk[] = " And so my fellow Americans.";
    static const kvlm_token want[] = { 843, 523, 616, 5891, 3399, 13 };
    kvlm_token got[16];
    size_t n;
    char err[256];
    assert_int_equal(tok_whisper_encode(fx->tok, jfk, strlen(jfk), got, 16, &n, err, sizeof err), KVLM_OK);
    assert_int_equal(n, 6);
    assert_memory_equal(got, want, sizeof want);
    /* a buffer too small: the full count, KVLM_ERR_INVALID */
    assert_int_equal(tok_whisper_encode(fx->tok, jfk, strlen(jfk), got, 3, &n, err, sizeof err), KVLM_ERR_INVALID);
    assert_int_equal(n, 6);
    assert_int_equal(tok_whisper_encode(fx->tok, "", 0, got, 0, &n, err, sizeof err), KVLM_OK);
    assert_int_equal(n, 0);
    /* special-token text is plain text to the encoder */
    assert_int_equal(tok_whisper_encode(fx->tok, "<|endoftext|>", 13, got, 16, &n, err, sizeof err), KVLM_OK);
    for (size_t i = 0; i < n; i++) assert_true(got[i] < 50256);
    /* the greedy JFK transcript ids of WHISPER.md section 5 decode to the sentence */
    static const kvlm_token greedy[] = { 50257, 50362, 843, 523, 616, 5891, 3399, 1265, 407, 644, 534, 1499, 460,
                                         466, 329, 345, 1265, 644, 345, 460, 466, 329, 534, 1499, 13, 50256 };
    char *text = NULL;
    assert_int_equal(tok_whisper_decode(fx->tok, greedy, sizeof greedy / sizeof greedy[0], &text, err, sizeof err),
                     KVLM_OK);
    assert_string_equal(text, " And so my fellow Americans ask not what your country can do for you ask what you can"
                              " do for your country.");
    free(text);
}

static void test_timestamps(void **state)
{
    fixture *fx = *state;
    NEED_MODEL(fx);
    char buf[64], err[256];
    /* <|1.50|> is 50363 + 75 */
    assert_int_equal(tok_whisper_token_bytes(fx->tok, 50438, true, buf, sizeof buf), 8);
    assert_memory_equal(buf, "<|1.50|>", 8);
    assert_int_equal(tok_whisper_token_bytes(fx->tok, 50438, false, buf, sizeof buf), 0);
    assert_int_equal(tok_whisper_token_bytes(fx->tok, 51863, true, buf, sizeof buf), 9);
    assert_memory_equal(buf, "<|30.00|>", 9);
    assert_int_equal(tok_whisper_token_bytes(fx->tok, 50257, true, buf, sizeof buf), 21);
    assert_memory_equal(buf, "<|startoftranscript|>", 21);
    assert_int_equal(tok_whisper_token_bytes(fx->tok, 50256, false, buf, sizeof buf), 0);
    /* byte-level pieces: 843 = "ĠAnd" -> " And"; 220 = "Ġ" -> " "; 198 = "Ċ" -> "\n" */
    assert_int_equal(tok_whisper_token_bytes(fx->tok, 843, false, buf, sizeof buf), 4);
    assert_memory_equal(buf, " And", 4);
    assert_int_equal(tok_whisper_token_bytes(fx->tok, 198, false, buf, sizeof buf), 1);
    assert_int_equal(buf[0], '\n');
    memset(buf, 'x', sizeof buf);
    assert_int_equal(tok_whisper_token_bytes(fx->tok, 843, false, buf, 2), 4);   /* too small: nothing written */
    assert_int_equal(buf[0], 'x');
    assert_int_equal(tok_whisper_token_bytes(fx->tok, -1, true, buf, sizeof buf), -1);
    assert_int_equal(tok_whisper_token_bytes(fx->tok, 51864, true, buf, sizeof buf), -1);

    assert_true(tok_whisper_timestamp_seconds(fx->tok, 50363) == 0.0);
    assert_float_equal(tok_whisper_timestamp_seconds(fx->tok, 50438), 1.5, 1e-9);
    assert_float_equal(tok_whisper_timestamp_seconds(fx->tok, 50364), 0.02, 1e-9);
    assert_float_equal(tok_whisper_timestamp_seconds(fx->tok, 51863), 30.0, 1e-9);
    assert_true(tok_whisper_timestamp_seconds(fx->tok, 50362) < 0);
    assert_true(tok_whisper_timestamp_seconds(fx->tok, 843) < 0);
    assert_true(tok_whisper_timestamp_seconds(fx->tok, 51864) < 0);
    /* every timestamp's text is its time */
    for (kvlm_token id = 50363; id <= 51863; id++) {
        char want[16];
        int c = (id - 50363) * 2;
        int wn = snprintf(want, sizeof want, "<|%d.%02d|>", c / 100, c % 100);
        assert_int_equal(tok_whisper_token_bytes(fx->tok, id, true, buf, sizeof buf), wn);
        assert_memory_equal(buf, want, (size_t)wn);
        assert_float_equal(tok_whisper_timestamp_seconds(fx->tok, id), c / 100.0, 1e-9);
    }
    /* decode drops timestamps and specials */
    static const kvlm_token seg[] = { 50363, 843, 523, 11, 50438, 50438, 616, 5891, 3399, 13, 51863, 50256 };
    char *text = NULL;
    assert_int_equal(tok_whisper_decode(fx->tok, seg, sizeof seg / sizeof seg[0], &text, err, sizeof err), KVLM_OK);
    assert_string_equal(text, " And so, my fellow Americans.");
    free(text);
    static const kvlm_token bad[] = { 843, 51864 };
    text = (char *)1;
    assert_int_equal(tok_whisper_decode(fx->tok, bad, 2, &text, err, sizeof err), KVLM_ERR_INVALID);
    assert_null(text);
    assert_int_equal(tok_whisper_decode(fx->tok, NULL, 0, &text, err, sizeof err), KVLM_OK);
    assert_string_equal(text, "");
    free(text);
}

/* ---- hostile files derived from the real ones ------------------------------------- */

static char *real_file(const char *name, size_t *len)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", whisper_dir(), name);
    char *s = test_read_file(p, len);
    assert_non_null(s);
    return s;
}

/* offset of the start of line k (0-based) of s */
static size_t line_start(const char *s, size_t len, int k)
{
    size_t off = 0;
    for (int i = 0; i < k; i++) {
        const char *nl = memchr(s + off, '\n', len - off);
        assert_non_null(nl);
        off = (size_t)(nl - s) + 1;
    }
    return off;
}

static void test_hostile_real(void **state)
{
    fixture *fx = *state;
    NEED_MODEL(fx);
    size_t vn, jn;
    char *voc = real_file("vocabulary.txt", &vn), *js = real_file("tokenizer.json", &jn);
    char *buf = malloc(vn + jn + 64);
    tmpdir d;
    tmp_make(&d);
    tmp_put(&d, "tokenizer.json", js, jn);

    tmp_put(&d, "vocabulary.txt", voc, vn - 5);   /* cut inside the last line */
    expect_fail(&d, KVLM_ERR_FORMAT, "no newline");
    tmp_put(&d, "vocabulary.txt", voc, line_start(voc, vn, 51000));   /* cut at a line boundary */
    expect_fail(&d, KVLM_ERR_FORMAT, "timestamp");
    tmp_put(&d, "vocabulary.txt", voc, line_start(voc, vn, 40000));   /* ... before the specials */
    expect_fail(&d, KVLM_ERR_FORMAT, "model.vocab");
    size_t a = line_start(voc, vn, 1000), b = line_start(voc, vn, 1001);   /* line 1001 missing */
    memcpy(buf, voc, a);
    memcpy(buf + a, voc + b, vn - b);
    tmp_put(&d, "vocabulary.txt", buf, vn - (b - a));
    expect_fail(&d, KVLM_ERR_FORMAT, "vocabulary.txt line 1001");
    memcpy(buf, voc, a);   /* line 1001 replaced by bad UTF-8 */
    memcpy(buf + a, "\xff\xfe\n", 3);
    memcpy(buf + a + 3, voc + b, vn - b);
    tmp_put(&d, "vocabulary.txt", buf, a + 3 + vn - b);
    expect_fail(&d, KVLM_ERR_FORMAT, "line 1001 (id 1000), byte 0: not byte-level");
    memcpy(buf + a, "\n", 1);   /* an empty line */
    memcpy(buf + a + 1, voc + b, vn - b);
    tmp_put(&d, "vocabulary.txt", buf, a + 1 + vn - b);
    expect_fail(&d, KVLM_ERR_FORMAT, "line 1001 (id 1000) is empty");
    size_t t0 = line_start(voc, vn, 50363 + 10), t1 = line_start(voc, vn, 50363 + 11);   /* a wrong timestamp */
    memcpy(buf, voc, t0);
    memcpy(buf + t0, "<|0.21|>\n", 9);
    memcpy(buf + t0 + 9, voc + t1, vn - t1);
    tmp_put(&d, "vocabulary.txt", buf, t0 + 9 + vn - t1);
    expect_fail(&d, KVLM_ERR_FORMAT, "should be <|0.20|>");
    tmp_put(&d, "vocabulary.txt", voc, vn);

    /* tokenizer.json: truncated, merges removed, a merge naming an unknown token */
    tmp_put(&d, "tokenizer.json", js, jn / 2);
    expect_fail(&d, KVLM_ERR_FORMAT, "not valid JSON");
    cJSON *root = cJSON_Parse(js);
    assert_non_null(root);
    cJSON *model = cJSON_GetObjectItem(root, "model");
    cJSON *merges = cJSON_DetachItemFromObject(model, "merges");
    char *out = cJSON_PrintUnformatted(root);
    tmp_put(&d, "tokenizer.json", out, strlen(out));
    free(out);
    expect_fail(&d, KVLM_ERR_FORMAT, "no model.merges");
    cJSON_ReplaceItemInArray(merges, 7, cJSON_CreateString("Ġ zzzunknown"));
    cJSON_AddItemToObject(model, "merges", merges);
    out = cJSON_PrintUnformatted(root);
    tmp_put(&d, "tokenizer.json", out, strlen(out));
    free(out);
    expect_fail(&d, KVLM_ERR_FORMAT, "model.merges[7]");
    /* the same merges as ["a", "b"] pairs (newer tokenizers files): same ids */
    cJSON *pairs = cJSON_CreateArray(), *m0 = cJSON_Parse(js), *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(cJSON_GetObjectItem(m0, "model"), "merges")) {
        const char *s = e->valuestring, *sp = strchr(s + 1, ' ');
        char left[256];
        snprintf(left, sizeof left, "%.*s", (int)(sp - s), s);
        cJSON *p = cJSON_CreateArray();
        cJSON_AddItemToArray(p, cJSON_CreateString(left));
        cJSON_AddItemToArray(p, cJSON_CreateString(sp + 1));
        cJSON_AddItemToArray(pairs, p);
    }
    cJSON_ReplaceItemInObject(model, "merges", pairs);
    out = cJSON_PrintUnformatted(root);
    tmp_put(&d, "tokenizer.json", out, strlen(out));
    free(out);
    tok_whisper *t = NULL;
    char err[512];
    if (tok_whisper_load(d.path, &t, err, sizeof err)) fail_msg("pairs: %s", err);
    static const char jfk[] = " And so my fellow Americans.";
    kvlm_token ids[16];
    size_t n;
    assert_int_equal(tok_whisper_encode(t, jfk, strlen(jfk), ids, 16, &n, err, sizeof err), KVLM_OK);
    assert_int_equal(n, 6);
    assert_int_equal(ids[3], 5891);
    tok_whisper_free(t);
    cJSON_Delete(m0);
    cJSON_Delete(root);

    tmp_remove(&d);
    free(voc); free(js); free(buf);
}

/* ---- hostile files on a tiny synthetic vocabulary (no model needed) ------------------ */

#define TINY_VOCAB "a\nb\nab\nĠ\nĠab\n<|endoftext|>\n<|startoftranscript|>\n"
#define TINY_JSON(merges) \
    "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"Ġ\":3,\"Ġab\":4,\"<|endoftext|>\":5}," \
    "\"merges\":" merges "},\"added_tokens\":[{\"id\":6,\"content\":\"<|startoftranscript|>\"}]}"

static void put_tiny(const tmpdir *d, const char *vocab, const char *json)
{
    tmp_put(d, "vocabulary.txt", vocab, vocab ? strlen(vocab) : 0);
    tmp_put(d, "tokenizer.json", json, json ? strlen(json) : 0);
}

static void test_tiny(void **state)
{
    (void)state;
    tmpdir d;
    tmp_make(&d);
    put_tiny(&d, TINY_VOCAB, TINY_JSON("[\"a b\",\"Ġ ab\"]"));
    tok_whisper *t = NULL;
    char err[512];
    if (tok_whisper_load(d.path, &t, err, sizeof err)) fail_msg("tiny: %s", err);
    kvlm_token ids[8];
    size_t n;
    assert_int_equal(tok_whisper_encode(t, "ab ab", 5, ids, 8, &n, err, sizeof err), KVLM_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 2);
    assert_int_equal(ids[1], 4);
    const tok_whisper_specials *sp = tok_whisper_get_specials(t);
    assert_int_equal(sp->eot, 5);
    assert_int_equal(sp->sot, 6);
    assert_int_equal(sp->timestamp_begin, -1);
    assert_int_equal(sp->timestamp_end, -1);
    assert_int_equal(sp->notimestamps, -1);
    assert_true(tok_whisper_timestamp_seconds(t, 6) < 0);
    tok_whisper_free(t);
    tok_whisper_free(NULL);
    tmp_remove(&d);
}

#define V_OK TINY_VOCAB
#define J_OK TINY_JSON("[\"a b\"]")

/* files (NULL: absent) -> the error and a part of its message */
static const struct hostile { const char *vocab, *json; kvlm_err code; const char *want; } HOSTILE[] = {
    { NULL, J_OK, KVLM_ERR_IO, "vocabulary.txt" },
    { V_OK, NULL, KVLM_ERR_IO, "tokenizer.json" },
    { "", J_OK, KVLM_ERR_FORMAT, "empty file" },
    { "a\nb\nab\nĠ\nĠab\n<|endoftext|>\n<|startoftranscript|>", J_OK, KVLM_ERR_FORMAT, "no newline" },
    { "a\nb\n中\nĠ\nĠab\n<|endoftext|>\n<|startoftranscript|>\n", J_OK, KVLM_ERR_FORMAT,
      "line 3 (id 2), byte 0: not byte-level" },
    { "a\nb\nab\r\nĠ\nĠab\n<|endoftext|>\n<|startoftranscript|>\n", J_OK, KVLM_ERR_FORMAT, "line 3 (id 2), byte 2" },
    { "a\nb\nab\n\xc3\nĠab\n<|endoftext|>\n<|startoftranscript|>\n", J_OK, KVLM_ERR_FORMAT, "line 4 (id 3), byte 0" },
    { "a\nb\nab\nĠ\nĠab\n<|startoftranscript|>\n<|endoftext|>\n", J_OK, KVLM_ERR_FORMAT,
      "model.vocab['<|endoftext|>'] = 5" },
    { "a\nb\nab\nĠ\nĠab\n<|endoftext|>\n", J_OK, KVLM_ERR_FORMAT, "added token '<|startoftranscript|>'" },
    { V_OK, "", KVLM_ERR_FORMAT, "not valid JSON" },
    { V_OK, "\x89PNG garbage", KVLM_ERR_FORMAT, "not valid JSON" },
    { V_OK, "[1,2]", KVLM_ERR_FORMAT, "not a JSON object" },
    { V_OK, "{\"model\":{\"merges\":[\"a b\"]}}", KVLM_ERR_FORMAT, "no model.vocab" },
    { V_OK, "{\"model\":{\"vocab\":{\"a\":\"zero\"},\"merges\":[\"a b\"]}}", KVLM_ERR_FORMAT, "is not a token id" },
    { V_OK, "{\"model\":{\"vocab\":{\"a\":1e300},\"merges\":[\"a b\"]}}", KVLM_ERR_FORMAT, "is not a token id" },
    { V_OK, "{\"model\":{\"vocab\":{\"a\":99},\"merges\":[\"a b\"]}}", KVLM_ERR_FORMAT, "model.vocab['a'] = 99" },
    { V_OK, TINY_JSON("[]"), KVLM_ERR_FORMAT, "no model.merges" },
    { V_OK, TINY_JSON("{\"a\":1}"), KVLM_ERR_FORMAT, "no model.merges" },
    { V_OK, TINY_JSON("[\"a b\",17]"), KVLM_ERR_FORMAT, "model.merges[1] is neither" },
    { V_OK, TINY_JSON("[[\"a\"]]"), KVLM_ERR_FORMAT, "model.merges[0] is neither" },
    { V_OK, TINY_JSON("[\"ab\"]"), KVLM_ERR_FORMAT, "model.merges[0] 'ab' does not join" },
    { V_OK, TINY_JSON("[\"a b\",\"b a\"]"), KVLM_ERR_FORMAT, "model.merges[1] 'b a'" },   /* "ba" is no token */
    { V_OK, "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0},\"merges\":[\"a b\"]}}", KVLM_ERR_UNSUPPORTED,
      "WordPiece" },
    { V_OK, "{\"pre_tokenizer\":{\"type\":\"Metaspace\"},\"model\":{\"vocab\":{\"a\":0},\"merges\":[\"a b\"]}}",
      KVLM_ERR_UNSUPPORTED, "ByteLevel" },
    { "a\nb\nab\nĠ\nĠab\n", "{\"model\":{\"vocab\":{\"a\":0},\"merges\":[\"a b\"]}}", KVLM_ERR_FORMAT, "<|endoftext|>" },
    { V_OK "<|0.00|>\n<|0.02|>\n", J_OK, KVLM_ERR_FORMAT, "2 timestamp lines from id 7" },   /* stops at 0.02 */
};

static void test_tiny_hostile(void **state)
{
    (void)state;
    tmpdir d;
    tmp_make(&d);
    for (size_t i = 0; i < sizeof HOSTILE / sizeof HOSTILE[0]; i++) {
        put_tiny(&d, HOSTILE[i].vocab, HOSTILE[i].json);
        expect_fail(&d, HOSTILE[i].code, HOSTILE[i].want);
    }
    tmp_remove(&d);
    char err[64];
    tok_whisper *t = (tok_whisper *)1;
    assert_int_equal(tok_whisper_load("/nonexistent-kvlm-dir", &t, err, sizeof err), KVLM_ERR_IO);
    assert_null(t);
}

int main(void)
{
    const struct CMUnitTest real[] = {
        cmocka_unit_test(test_golden_encode),
        cmocka_unit_test(test_golden_decode),
        cmocka_unit_test(test_known_ids),
        cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_hostile_real),
    };
    const struct CMUnitTest tiny[] = {
        cmocka_unit_test(test_tiny),
        cmocka_unit_test(test_tiny_hostile),
    };
    int bad = cmocka_run_group_tests_name("whisper_tokenizer", real, setup, teardown);
    return bad + cmocka_run_group_tests_name("whisper_tokenizer_synthetic", tiny, NULL, NULL);
}
