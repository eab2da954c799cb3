/* testref.c - see testref.h. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testref.h"
#include "testtok.h"
#include "testutil.h"

/* Parses "<n> <id> ... <id>" (n ids) into a malloc'd array. 0 on success. */
static int parse_ids(const char *s, kvlm_token **out, size_t *n_out)
{
    char *end;
    long n = strtol(s, &end, 10);
    if (end == s || n < 0 || n > 1000000) return -1;
    kvlm_token *ids = malloc(((size_t)n + 1) * sizeof *ids);
    if (!ids) return -1;
    s = end;
    for (long i = 0; i < n; i++) {
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > INT32_MAX) { free(ids); return -1; }
        ids[i] = (kvlm_token)v;
        s = end;
    }
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
    if (*s != '\0') { free(ids); return -1; }   /* more ids than announced */
    *out = ids;
    *n_out = (size_t)n;
    return 0;
}

/* "<hex>" (the rest of the line) into a malloc'd, NUL-terminated byte string. 0 on success. */
static int parse_hex(const char *s, char **out, size_t *n_out)
{
    size_t n = strspn(s, "0123456789abcdefABCDEF");
    const char *rest = s + n;
    rest += strspn(rest, " \t\r\n");
    if (n % 2 != 0 || *rest != '\0') return -1;
    char *hex = malloc(n + 1), *bytes = malloc(n / 2 + 1);
    if (!hex || !bytes) { free(hex); free(bytes); return -1; }
    memcpy(hex, s, n);
    hex[n] = '\0';
    *n_out = test_hex_decode(hex, bytes);
    bytes[*n_out] = '\0';
    free(hex);
    *out = bytes;
    return 0;
}

/* Copies the first word of s into dst[cap]. */
static void word(char *dst, size_t cap, const char *s)
{
    size_t n = strcspn(s, " \t\r\n");
    if (n >= cap) n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static void free_case(ref_case *c)
{
    free(c->prompt);
    free(c->gen);
    free(c->text);
    memset(c, 0, sizeof *c);
}

void test_ref_free_cases(ref_case_list *l)
{
    for (size_t i = 0; i < l->n; i++) free_case(&l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

int test_ref_read_cases(const char *path, ref_case_list *out)
{
    enum { LINE_CAP = 1 << 16 };
    FILE *f = fopen(path, "r");
    char *line = malloc(LINE_CAP);
    ref_case cur;
    bool in_case = false;
    int lineno = 0;
    memset(&cur, 0, sizeof cur);
    if (!f || !line) {
        print_error("%s: cannot open\n", path);
        goto fail;
    }
    while (fgets(line, LINE_CAP, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == LINE_CAP - 1 && line[len - 1] != '\n' && !feof(f)) {
            print_error("%s:%d: line too long\n", path, lineno);
            goto fail;
        }
        char *s = line + strspn(line, " \t");
        if (*s == '#' || *s == '\n' || *s == '\r' || *s == '\0') continue;
        char key[32];
        word(key, sizeof key, s);
        char *arg = s + strlen(key);
        arg += strspn(arg, " \t");
        if (strcmp(key, "case") == 0) {
            if (in_case) goto bad;
            memset(&cur, 0, sizeof cur);
            word(cur.name, sizeof cur.name, arg);
            in_case = true;
        } else if (!in_case) {
            goto bad;
        } else if (strcmp(key, "prompt_ids") == 0) {
            if (cur.prompt || parse_ids(arg, &cur.prompt, &cur.n_prompt) != 0) goto bad;
        } else if (strcmp(key, "gen_ids") == 0) {
            if (cur.gen || parse_ids(arg, &cur.gen, &cur.n_gen) != 0) goto bad;
        } else if (strcmp(key, "prompt_hex") == 0) {
            if (cur.text || parse_hex(arg, &cur.text, &cur.n_text) != 0) goto bad;
        } else if (strcmp(key, "logits") == 0) {
            word(cur.logits, sizeof cur.logits, arg);
        } else if (strcmp(key, "source") == 0) {
            word(cur.source, sizeof cur.source, arg);
        } else if (strcmp(key, "end") == 0) {
            if (!cur.prompt || cur.n_prompt == 0) goto bad;
            ref_case *v = realloc(out->v, (out->n + 1) * sizeof *v);
            if (!v) goto bad;
            out->v = v;
            out->v[out->n++] = cur;
            memset(&cur, 0, sizeof cur);
            in_case = false;
        }   /* other keys: ignored, for future additions */
    }
    if (in_case) goto bad;
    free(line);
    fclose(f);
    return 0;
bad:
    print_error("%s:%d: malformed\n", path, lineno);
fail:
    free_case(&cur);
    free(line);
    if (f) fclose(f);
    test_ref_free_cases(out);
    return -1;
}

float *test_ref_read_logits(const char *path, int64_t n_vocab)
{
    size_t len = 0;
    char *raw = test_read_file(path, &len);
    if (!raw || len != (size_t)n_vocab * sizeof(float)) {
        print_error("%s: %s (%zu bytes, want %zu)\n", path, raw ? "wrong size" : "cannot read", len,
                    (size_t)n_vocab * sizeof(float));
        free(raw);
        return NULL;
    }
    float *l = malloc(len);   /* raw little-endian float32; this host is little-endian */
    if (l) memcpy(l, raw, len);
    free(raw);
    return l;
}

kvlm_ctx *test_ref_ctx(const kvlm_model *model, int64_t n_ctx, int n_threads, bool no_kv_cache)
{
    kvlm_ctx_params p = kvlm_ctx_default_params();
    p.n_threads = n_threads;
    p.n_ctx = n_ctx;
    p.no_kv_cache = no_kv_cache;
    kvlm_ctx *ctx = NULL;
    char err[256];
    kvlm_err e = kvlm_ctx_init(model, &p, &ctx, err, sizeof err);
    if (e != KVLM_OK) print_error("ctx init: %s\n", err);
    assert_int_equal(e, KVLM_OK);
    return ctx;
}

void test_ref_decode(kvlm_ctx *ctx, const kvlm_token *ids, size_t n)
{
    char err[256];
    kvlm_err e = kvlm_ctx_decode(ctx, ids, n, err, sizeof err);
    if (e != KVLM_OK) print_error("decode: %s\n", err);
    assert_int_equal(e, KVLM_OK);
}

const float *test_ref_prompt_logits(kvlm_ctx *ctx, const ref_case *c)
{
    test_ref_decode(ctx, c->prompt, c->n_prompt);
    const float *l = kvlm_ctx_logits(ctx);
    assert_non_null(l);
    return l;
}

void test_ref_check_ids(const kvlm_token *ids, size_t n, int64_t n_vocab)
{
    for (size_t i = 0; i < n; i++) assert_true(ids[i] >= 0 && ids[i] < n_vocab);
}

kvlm_token test_ref_argmax(const float *l, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (l[i] > l[best] || (isnan(l[best]) && !isnan(l[i]))) best = i;
    return (kvlm_token)best;
}

ref_diff test_ref_logits_diff(const float *got, const float *ref, int64_t n)
{
    ref_diff d = { 0.0, 0.0, 0, true };
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {          /* got, ref: [n] */
        if (!isfinite(got[i])) d.finite = false;
        double a = fabs((double)got[i] - (double)ref[i]);
        if (!(a <= d.max)) { d.max = a; d.at = i; }   /* NaN counts as worst */
        sum += a;
    }
    d.mean = n > 0 ? sum / (double)n : 0.0;
    return d;
}

ref_greedy test_ref_greedy(kvlm_ctx *ctx, const ref_case *c, int64_t n_vocab, float tie_tol)
{
    ref_greedy r;
    memset(&r, 0, sizeof r);
    r.first_miss = c->n_gen;
    size_t n_said = 0;
    for (size_t i = 0; i < c->n_gen; i++) {
        const float *l = kvlm_ctx_logits(ctx);
        assert_non_null(l);
        kvlm_token want = c->gen[i], got = test_ref_argmax(l, n_vocab);
        if (got == want) {
            r.n_exact++;
        } else {
            float gap = l[got] - l[want];
            if (r.first_miss == c->n_gen) r.first_miss = i;
            if (r.n_miss < REF_MAX_MISSES) {
                r.miss_step[r.n_miss] = i;
                r.miss_got[r.n_miss] = got;
                r.miss_gap[r.n_miss++] = gap;
            }
            bool tie = gap <= tie_tol, say = n_said++ < 4;   /* the first few only */
            if (tie) r.n_tie++;
            else r.bad = true;
            if (say)
                print_message("  %s step %zu: %skvlm %d, ref %d, gap %.4f%s\n", c->name, i, tie ? "near-tie, " : "",
                              (int)got, (int)want, (double)gap, tie ? "" : " > the tie tolerance");
        }
        if (i + 1 < c->n_gen) test_ref_decode(ctx, &want, 1);
    }
    return r;
}
