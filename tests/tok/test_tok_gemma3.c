/* test_tok_gemma3.c - Gemma 3 270M's SentencePiece tokenizer and turn format against
 * llama.cpp (issue 15 parts 2 and 7). The corpus tests/ref/gemma3_tok_corpus.json was
 * fixed before anything was compared; the reference ids come from llama.cpp's own
 * tokenizer (llama-cpp-python, vocab_only) by tests/ref/gen_gemma3_tok.py, written into
 * the fixtures cache by scripts/gen-gemma3-tokref.sh (make test's set-up). The tokenizer
 * is built straight from the GGUF (tokenizer_init_gguf): no forward pass is needed.
 * Room: tests/tok. Skips without the model (scripts/fetch-model.sh gemma3) or the reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <cJSON.h>

#include "kvlm.h"
#include "model/gguf.h"
#include "testtok.h"
#include "testutil.h"
#include "tok/chat.h"
#include "tok/tokenizer.h"

typedef struct fixture {
    cJSON *ref, *corpus;
    tokenizer *tok;
} fixture;

static cJSON *read_json(const char *path)
{
    size_t len;
    char *text = test_read_file(path, &len);
    if (!text) return NULL;
    cJSON *j = cJSON_Parse(text);
    free(text);
    return j;
}

/* *state: the fixture, or NULL without the model or the reference (the tests skip) */
static int setup(void **state)
{
    *state = NULL;
    const char *model = test_gemma3_path();
    if (!model) { print_message("no Gemma 3 model (scripts/fetch-model.sh gemma3): skipped\n"); return 0; }
    const char *ref_path = test_fixture_path("tok/gemma3_ref.json");
    fixture *fx = calloc(1, sizeof *fx);
    fx->ref = read_json(ref_path);
    if (!fx->ref) {
        print_message("no reference %s (scripts/gen-gemma3-tokref.sh): skipped\n", ref_path);
        free(fx);
        return 0;
    }
    fx->corpus = read_json(test_data_path("../ref/gemma3_tok_corpus.json"));
    assert_non_null(fx->corpus);
    char err[256];
    gguf_file *f;
    assert_int_equal(gguf_open(model, &f, err, sizeof err), KVLM_OK);
    kvlm_err e = tokenizer_init_gguf(f, &fx->tok, err, sizeof err);
    if (e) fail_msg("tokenizer_init_gguf: %s", err);
    gguf_close(f);   /* the tokenizer copies what it needs */
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    if (!fx) return 0;
    cJSON_Delete(fx->ref);
    cJSON_Delete(fx->corpus);
    tokenizer_free(fx->tok);
    free(fx);
    return 0;
}

/* a case's bytes, malloc'd (*n of them) */
static char *case_bytes(const cJSON *c, const char *key, size_t *n)
{
    const char *hex = cJSON_GetObjectItem(c, key)->valuestring;
    char *b = malloc(strlen(hex) / 2 + 1);
    *n = test_hex_decode(hex, b);
    return b;
}

/* ids of text, malloc'd (*n of them) */
static kvlm_token *encode(const tokenizer *t, const char *text, size_t len, bool add_bos, bool special, size_t *n)
{
    char err[256];
    size_t cap = len + 2;
    kvlm_token *ids = malloc(cap * sizeof *ids);
    kvlm_err e = tokenizer_encode(t, text, len, add_bos, special, ids, cap, n, err, sizeof err);
    if (e) fail_msg("tokenize: %s", err);
    return ids;
}

static bool ids_equal(const kvlm_token *ids, size_t n, const cJSON *want)
{
    if (n != (size_t)cJSON_GetArraySize(want)) return false;
    for (size_t i = 0; i < n; i++)
        if (ids[i] != cJSON_GetArrayItem(want, (int)i)->valueint) return false;
    return true;
}

static void print_ids(const char *what, const kvlm_token *ids, size_t n, const cJSON *want)
{
    print_message("  %s kvlm:     ", what);
    for (size_t i = 0; i < n && i < 48; i++) print_message(" %d", ids[i]);
    print_message("\n  %s llama.cpp:", what);
    for (int i = 0; i < cJSON_GetArraySize(want) && i < 48; i++) print_message(" %d", cJSON_GetArrayItem(want, i)->valueint);
    print_message("\n");
}

/* the reference is of this corpus: the same cases in the same order */
static void test_reference_matches_corpus(void **state)
{
    fixture *fx = *state;
    if (!fx) skip();
    const cJSON *cases = cJSON_GetObjectItem(fx->ref, "cases"), *s;
    int i = 0;
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(fx->corpus, "strings")) {
        const cJSON *c = cJSON_GetArrayItem(cases, i++);
        assert_non_null(c);
        assert_string_equal(cJSON_GetObjectItem(c, "name")->valuestring, cJSON_GetObjectItem(s, "name")->valuestring);
        size_t n;
        char *b = case_bytes(c, "hex", &n);
        const char *text = cJSON_GetObjectItem(s, "text")->valuestring;
        if (memchr(b, 0, n) == NULL) {   /* cJSON strings end at a NUL */
            assert_int_equal(n, strlen(text));
            assert_memory_equal(b, text, n);
        }
        free(b);
    }
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(fx->corpus, "bytes")) {
        const cJSON *c = cJSON_GetArrayItem(cases, i++);
        assert_non_null(c);
        assert_string_equal(cJSON_GetObjectItem(c, "hex")->valuestring, cJSON_GetObjectItem(s, "hex")->valuestring);
    }
    assert_int_equal(i, cJSON_GetArraySize(cases));
    assert_true(i >= 30);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(fx->ref, "chats")),
                     cJSON_GetArraySize(cJSON_GetObjectItem(fx->corpus, "chats")));
}

/* every corpus string, special-token parsing on and off, BOS added: llama.cpp's ids exactly */
static void test_ids(void **state)
{
    fixture *fx = *state;
    if (!fx) skip();
    const cJSON *c;
    int n_cases = 0, bad = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(fx->ref, "cases")) {
        size_t len, n;
        char *text = case_bytes(c, "hex", &len);
        for (int special = 1; special >= 0; special--) {
            const cJSON *want = cJSON_GetObjectItem(c, special ? "ids_special" : "ids_plain");
            kvlm_token *ids = encode(fx->tok, text, len, true, special, &n);
            if (!ids_equal(ids, n, want)) {
                print_message("MISMATCH %s (%s)\n", cJSON_GetObjectItem(c, "name")->valuestring,
                              special ? "special" : "plain");
                print_ids("ids", ids, n, want);
                bad++;
            }
            free(ids);
        }
        free(text);
        n_cases++;
    }
    print_message("%d strings, %d mismatches\n", n_cases, bad);
    assert_int_equal(bad, 0);
}

/* the ids llama.cpp gave, detokenized piece by piece (special tokens rendered) */
static void test_decode(void **state)
{
    fixture *fx = *state;
    if (!fx) skip();
    const cJSON *c, *id;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(fx->ref, "cases")) {
        size_t nw, ng = 0;
        char *want = case_bytes(c, "decoded_special_hex", &nw);
        char *got = malloc(nw + 4096);
        cJSON_ArrayForEach(id, cJSON_GetObjectItem(c, "ids_special")) {
            int64_t k = tokenizer_token_bytes(fx->tok, id->valueint, true, got + ng, 256);
            assert_true(k >= 0 && k <= 256);
            ng += (size_t)k;
            assert_true(ng <= nw + 256);
        }
        if (ng != nw || memcmp(got, want, nw)) fail_msg("decode %s differs", cJSON_GetObjectItem(c, "name")->valuestring);
        free(want);
        free(got);
    }
}

/* every token's piece (user-defined runs of spaces/newlines/tabs and HTML tags raw, byte
 * tokens one byte, control tokens only when rendered), BOS/EOS/EOT and the end-of-generation
 * set as llama.cpp has them */
static void test_pieces_and_special_ids(void **state)
{
    fixture *fx = *state;
    if (!fx) skip();
    const cJSON *g = fx->ref;
    assert_int_equal(tokenizer_n_vocab(fx->tok), 262144);
    assert_int_equal(tokenizer_n_vocab(fx->tok), cJSON_GetObjectItem(g, "n_vocab")->valueint);
    assert_int_equal(tokenizer_bos(fx->tok), cJSON_GetObjectItem(g, "bos")->valueint);
    assert_int_equal(tokenizer_eos(fx->tok), cJSON_GetObjectItem(g, "eos")->valueint);
    assert_int_equal(tokenizer_eot(fx->tok), cJSON_GetObjectItem(g, "eot")->valueint);
    assert_int_equal(tokenizer_bos(fx->tok), 2);       /* ../shared/GEMMA3.md */
    assert_int_equal(tokenizer_eos(fx->tok), 1);
    assert_int_equal(tokenizer_eot(fx->tok), 106);     /* <end_of_turn>, found by its text */
    for (int special = 0; special < 2; special++) {
        char hex[17];
        assert_true(test_tok_pieces_hash(fx->tok, special, hex));
        assert_string_equal(hex, cJSON_GetObjectItem(g, special ? "pieces_fnv1a64_special" : "pieces_fnv1a64_plain")->valuestring);
    }
    assert_true(test_tok_eog_equals(fx->tok, cJSON_GetObjectItem(g, "eog")));
    assert_true(tokenizer_is_eog(fx->tok, 1) && tokenizer_is_eog(fx->tok, 106));
    assert_int_equal(tokenizer_find(fx->tok, "<start_of_turn>"), 105);
    assert_int_equal(tokenizer_find(fx->tok, "<end_of_turn>"), 106);
}

/* The ids ../shared/GEMMA3.md gives (measured there with gguf-py and a numpy forward pass),
 * and the user-defined tokens it lists: "\n" 107, "\n\n" 108, two spaces 138, the byte
 * tokens <0x00>..<0xFF> at 238..493 (a lone 0xff byte, which no piece holds, falls back to
 * <0xFF>). */
static void test_known_ids(void **state)
{
    fixture *fx = *state;
    if (!fx) skip();
    static const kvlm_token france[] = { 2, 818, 5279, 529, 7001, 563 };
    size_t n;
    kvlm_token *ids = encode(fx->tok, "The capital of France is", 24, true, false, &n);
    assert_int_equal(n, 6);
    assert_memory_equal(ids, france, sizeof france);
    free(ids);
    struct { const char *s; kvlm_token id; } one[] = { { "\n", 107 }, { "\n\n", 108 }, { "  ", 138 }, { "\xff", 238 + 0xff } };
    for (size_t i = 0; i < sizeof one / sizeof one[0]; i++) {
        ids = encode(fx->tok, one[i].s, strlen(one[i].s), false, false, &n);
        assert_int_equal(n, 1);
        assert_int_equal(ids[0], one[i].id);
        free(ids);
    }
    /* no BOS unless asked; the turn markers are text unless parse_special */
    ids = encode(fx->tok, "<start_of_turn>", 15, false, true, &n);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 105);
    free(ids);
    ids = encode(fx->tok, "<start_of_turn>", 15, false, false, &n);
    assert_true(n > 1);
    free(ids);
}

static void msgs_of(const cJSON *chat, kvlm_chat_msg *v, size_t cap, size_t *n)
{
    const cJSON *m;
    *n = 0;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(chat, "messages")) {
        assert_true(*n < cap);
        v[(*n)++] = (kvlm_chat_msg){ cJSON_GetObjectItem(m, "role")->valuestring,
                                     cJSON_GetObjectItem(m, "content")->valuestring };
    }
}

/* No template in the file: general.architecture picks the Gemma turn format, rendered as
 * llama.cpp's built-in gemma template renders these chats, and tokenized as llama.cpp does. */
static void test_chat_format(void **state)
{
    fixture *fx = *state;
    if (!fx) skip();
    const cJSON *c;
    int n_chats = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(fx->ref, "chats")) {
        kvlm_chat_msg v[16];
        size_t nm;
        msgs_of(c, v, 16, &nm);
        for (int gen = 0; gen < 2; gen++) {
            char *out, err[256];
            assert_int_equal(chat_render(NULL, "gemma3", v, nm, gen, &out, err, sizeof err), KVLM_OK);
            size_t nw;
            char *want = case_bytes(c, gen ? "render_gen_hex" : "render_nogen_hex", &nw);
            if (strlen(out) != nw || memcmp(out, want, nw))
                fail_msg("chat %s (gen %d): got \"%s\", want \"%.*s\"", cJSON_GetObjectItem(c, "name")->valuestring,
                         gen, out, (int)nw, want);
            if (gen) {
                size_t n;
                kvlm_token *ids = encode(fx->tok, out, strlen(out), true, true, &n);
                const cJSON *want_ids = cJSON_GetObjectItem(c, "ids_gen");
                if (!ids_equal(ids, n, want_ids)) {
                    print_ids("chat", ids, n, want_ids);
                    fail_msg("chat %s: ids differ", cJSON_GetObjectItem(c, "name")->valuestring);
                }
                free(ids);
            }
            free(want);
            free(out);
        }
        n_chats++;
    }
    assert_true(n_chats >= 5);
}

/* Where Google's official Gemma 3 template (and not llama.cpp's copy of it) is the rule:
 * a system message's text untrimmed, then a blank line, at the start of the first user
 * turn; contents trimmed as Python's str.strip() does (Unicode spaces too). And kvlm's own
 * choice: a system message with no user turn after it becomes a user turn. The expected
 * strings are written out from those rules. */
static void test_chat_official_rules(void **state)
{
    (void)state;
    char *out, err[256];
    kvlm_chat_msg sys_user[] = { { "system", " Be brief. " }, { "user", "\xe3\x80\x80hi\xc2\xa0\n" } };
    assert_int_equal(chat_render(NULL, "gemma3", sys_user, 2, true, &out, err, sizeof err), KVLM_OK);
    assert_string_equal(out, "<start_of_turn>user\n Be brief. \n\nhi<end_of_turn>\n<start_of_turn>model\n");
    free(out);
    kvlm_chat_msg lone[] = { { "system", "You are a poet." } };
    assert_int_equal(chat_render(NULL, "gemma3", lone, 1, true, &out, err, sizeof err), KVLM_OK);
    assert_string_equal(out, "<start_of_turn>user\nYou are a poet.<end_of_turn>\n<start_of_turn>model\n");
    free(out);
    /* the system text waits for the user turn after a leading model turn */
    kvlm_chat_msg model_first[] = { { "system", "S" }, { "assistant", " A" }, { "user", "U" } };
    assert_int_equal(chat_render(NULL, "gemma3", model_first, 3, false, &out, err, sizeof err), KVLM_OK);
    assert_string_equal(out, "<start_of_turn>model\nA<end_of_turn>\n<start_of_turn>user\nS\n\nU<end_of_turn>\n");
    free(out);
    /* an empty conversation: just the generation prompt; whitespace-only content: empty */
    assert_int_equal(chat_render(NULL, "gemma3", NULL, 0, true, &out, err, sizeof err), KVLM_OK);
    assert_string_equal(out, "<start_of_turn>model\n");
    free(out);
    kvlm_chat_msg blank[] = { { "user", " \t\n\xe2\x80\x83" } };
    assert_int_equal(chat_render(NULL, "gemma3", blank, 1, false, &out, err, sizeof err), KVLM_OK);
    assert_string_equal(out, "<start_of_turn>user\n<end_of_turn>\n");
    free(out);
    /* invalid UTF-8 at the edges is not whitespace and stays */
    kvlm_chat_msg bad[] = { { "user", "\xc2 x \xe2\x80" } };
    assert_int_equal(chat_render(NULL, "gemma3", bad, 1, false, &out, err, sizeof err), KVLM_OK);
    assert_string_equal(out, "<start_of_turn>user\n\xc2 x \xe2\x80<end_of_turn>\n");
    free(out);
    /* a template holding <start_of_turn> is Gemma's whatever the architecture; without a
     * template only the gemma architectures are: llama stays ChatML */
    kvlm_chat_msg u[] = { { "user", "hi" } };
    assert_int_equal(chat_render("{{ '<start_of_turn>' + role }}", "llama", u, 1, true, &out, err, sizeof err), KVLM_OK);
    assert_string_equal(out, "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n");
    free(out);
    assert_int_equal(chat_render(NULL, "llama", u, 1, true, &out, err, sizeof err), KVLM_OK);
    assert_string_equal(out, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    free(out);
    assert_int_equal(chat_render(NULL, "gemma2", u, 1, false, &out, err, sizeof err), KVLM_OK);
    assert_string_equal(out, "<start_of_turn>user\nhi<end_of_turn>\n");
    free(out);
}

/* detokenize(tokenize(s)) == s for text without special markup: every valid UTF-8 corpus
 * string without U+2581 (SentencePiece's own space mark, which decodes to ' ' in any
 * SentencePiece tokenizer), and random strings from pieces that stress the user-defined
 * tokens (runs of spaces, newlines and tabs, HTML tags), byte fallback and merges. */
static bool roundtrips(const tokenizer *t, const char *s, size_t len)
{
    size_t n, o = 0;
    kvlm_token *ids = encode(t, s, len, true, false, &n);
    char *buf = malloc(len + 1);
    bool ok = n >= 1 && ids[0] == 2;   /* BOS, which renders as nothing */
    for (size_t i = 0; ok && i < n; i++) {
        int64_t k = tokenizer_token_bytes(t, ids[i], false, buf + o, len - o);
        ok = k >= 0 && (size_t)k <= len - o;
        o += ok ? (size_t)k : 0;
    }
    ok = ok && o == len && memcmp(buf, s, len) == 0;
    free(ids);
    free(buf);
    return ok;
}

static void test_roundtrip(void **state)
{
    fixture *fx = *state;
    if (!fx) skip();
    const cJSON *s;
    int n = 0;
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(fx->corpus, "strings")) {
        const char *text = cJSON_GetObjectItem(s, "text")->valuestring;
        if (strstr(text, "\xe2\x96\x81")) continue;
        if (!roundtrips(fx->tok, text, strlen(text)))
            fail_msg("round trip of %s differs", cJSON_GetObjectItem(s, "name")->valuestring);
        n++;
    }
    assert_true(n >= 40);
    static const char *const pool[] = {
        " ", "  ", "   ", "\n", "\n\n", "\t", "\t\t", "\r\n", "a", "the", " the", "The", "ing", "x",
        "<table>", "</td>", "<b>", "<s>", "<", ">", "/", "1", "23", "456", "\xc3\xa9", "\xe6\x88\x91",
        "\xf0\x9f\xa6\x99", "\xe2\x80\x8d", "\xd9\x85", "e\xcc\x81", "\x01", "\x7f", "\xef\xbf\xbd", "[multimodal]",
    };
    uint64_t seed = 15;
    char buf[1024];
    for (int trial = 0; trial < (test_quick() ? 100 : 1000); trial++) {
        size_t len = 0, parts = (size_t)(trial % 40);
        for (size_t i = 0; i < parts; i++) {
            seed = test_mix64(seed);
            const char *p = pool[seed % (sizeof pool / sizeof pool[0])];
            size_t pl = strlen(p);
            memcpy(buf + len, p, pl);
            len += pl;
        }
        if (!roundtrips(fx->tok, buf, len)) fail_msg("round trip of random string %d differs", trial);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_matches_corpus),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_pieces_and_special_ids),
        cmocka_unit_test(test_known_ids),
        cmocka_unit_test(test_chat_format),
        cmocka_unit_test(test_roundtrip),
    };
    const struct CMUnitTest rules[] = { cmocka_unit_test(test_chat_official_rules) };
    int r = cmocka_run_group_tests_name("tokenizer_gemma3", tests, setup, teardown);
    return r + cmocka_run_group_tests_name("chat_gemma", rules, NULL, NULL);
}
