/* test_api_audio.c - the multipart parser of POST /v1/audio/transcriptions
 * (src/server/api_audio.c) on real MHD connections (tests/server/upload_conn.h):
 * forms as the openai client (httpx) and curl -F write them parse into the right
 * api_audio_req, also fed in pieces of 1, 7 and 100 bytes; a binary file holding
 * "\r\n--" and NULs comes back byte for byte; a missing or empty file, the 413
 * boundary (max_upload bytes pass, one more is refused, fed whole or in pieces),
 * a bad response_format, word or misplaced segment granularity, another language,
 * bad temperatures, stream=true, an unknown or missing model (404 / 400), a field
 * given twice, a nameless part, non-UTF-8 values, a wrong Content-Type, and a body
 * cut at every byte are each refused with their status and param; a body ending
 * at a PROT_NONE page is read safely. Expected values are written here from
 * RFC 7578 and OpenAI's API reference. No model needed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "upload_conn.h"

#define BOUNDARY "a1b2c3d4e5f60718293a4b5c6d7e8f90"   /* httpx: 32 hex digits */
#define CT "multipart/form-data; boundary=" BOUNDARY

/* ---- building bodies ------------------------------------------------------------ */
typedef struct form { char *p; size_t len, cap; } form;

static void put(form *f, const void *s, size_t n)
{
    if (f->len + n + 1 > f->cap) {
        f->cap = (f->len + n + 1) * 2;
        f->p = realloc(f->p, f->cap);
        assert_non_null(f->p);
    }
    memcpy(f->p + f->len, s, n);
    f->len += n;
    f->p[f->len] = '\0';
}

static void puts_(form *f, const char *s) { put(f, s, strlen(s)); }

static void field(form *f, const char *name, const char *value)
{
    puts_(f, "--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"");
    puts_(f, name);
    puts_(f, "\"\r\n\r\n");
    puts_(f, value);
    puts_(f, "\r\n");
}

static void file(form *f, const char *filename, const void *data, size_t n)
{
    puts_(f, "--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"");
    puts_(f, filename);
    puts_(f, "\"\r\nContent-Type: application/octet-stream\r\n\r\n");
    put(f, data, n);
    puts_(f, "\r\n");
}

static void end(form *f) { puts_(f, "--" BOUNDARY "--\r\n"); }

/* A file of n bytes that holds NULs, CRs, "\r\n--" and most of the boundary. */
static char *audio_bytes(size_t n)
{
    char *b = malloc(n ? n : 1);
    assert_non_null(b);
    static const char tricky[] = "\r\n--" "a1b2c3d4e5f6071829";   /* boundary's head, not all of it */
    for (size_t i = 0; i < n; i++) b[i] = (char)((i * 131 + 7) & 0xFF);
    for (size_t i = 100; i + sizeof tricky < n; i += 997) memcpy(b + i, tricky, sizeof tricky - 1);
    return b;
}

/* ---- running the parser ----------------------------------------------------------- */
static upload_conn UC;

static int setup(void **st)
{
    (void)st;
    return upload_conn_init(&UC);
}

static int teardown(void **st)
{
    (void)st;
    upload_conn_free(&UC);
    return 0;
}

static api_audio_limits lim(size_t max_upload)
{
    return (api_audio_limits){ .model_name = "whisper-tiny.en", .model_alias = "whisper-1", .max_upload = max_upload };
}

/* Parses f with ct; whole and in pieces of `chunk` must agree. Returns the whole result. */
static upload_result *run_ct(const char *ct, const form *f, size_t max_upload, size_t chunk)
{
    UC.lim = lim(max_upload);
    assert_int_equal(upload_conn_parse(&UC, ct, f->p ? f->p : "", f->len, chunk), 0);
    if (chunk) {
        assert_int_equal(UC.split.rc, UC.whole.rc);
        assert_int_equal(UC.split.err.http_status, UC.whole.err.http_status);
        assert_string_equal(UC.split.err.message, UC.whole.err.message);
        if (!UC.whole.rc) {
            assert_int_equal(UC.split.req.file_len, UC.whole.req.file_len);
            assert_memory_equal(UC.split.req.file, UC.whole.req.file, UC.whole.req.file_len);
            assert_string_equal(UC.split.req.model, UC.whole.req.model);
            assert_int_equal(UC.split.req.format, UC.whole.req.format);
        }
    }
    return &UC.whole;
}

static upload_result *run(const form *f, size_t max_upload) { return run_ct(CT, f, max_upload, 7); }

static void expect_error(const form *f, size_t max_upload, int status, const char *param, const char *msg_part)
{
    upload_result *r = run(f, max_upload);
    if (r->rc == KVLM_OK) fail_msg("accepted a form that should get %d (%s)", status, msg_part);
    if (r->err.http_status != status || strcmp(r->err.param, param) || !strstr(r->err.message, msg_part))
        fail_msg("got %d param '%s' \"%s\"; want %d param '%s' \"...%s...\"", r->err.http_status, r->err.param,
                 r->err.message, status, param, msg_part);
    if (status == 404) assert_string_equal(r->err.code, "model_not_found");
    assert_string_equal(r->err.type, "invalid_request_error");
}

/* ---- tests ------------------------------------------------------------------------- */
/* Every field, a tricky binary file, an ignored field; whole and in 1/7/100-byte pieces. */
static void test_full_form(void **st)
{
    (void)st;
    const size_t n = 40000;
    char *audio = audio_bytes(n);
    form f = { 0 };
    field(&f, "model", "whisper-1");
    file(&f, "jfk.flac", audio, n);
    field(&f, "response_format", "verbose_json");
    field(&f, "temperature", "0.2");
    field(&f, "language", "en");
    field(&f, "prompt", "Hello, \"world\"\r\nsecond line caf\xC3\xA9");
    field(&f, "timestamp_granularities[]", "segment");
    field(&f, "stream", "false");
    field(&f, "user", "someone");   /* unknown: ignored */
    end(&f);
    const size_t chunks[] = { 1, 7, 100, 0 };
    for (size_t c = 0; c < 4; c++) {
        UC.lim = lim(0);
        assert_int_equal(upload_conn_parse(&UC, CT, f.p, f.len, chunks[c]), 0);
        for (int w = 0; w < (chunks[c] ? 2 : 1); w++) {
            upload_result *r = w ? &UC.split : &UC.whole;
            if (r->rc) fail_msg("chunk %zu: %d %s", chunks[c], r->err.http_status, r->err.message);
            assert_int_equal(r->req.file_len, n);
            assert_memory_equal(r->req.file, audio, n);
            assert_string_equal(r->req.filename, "jfk.flac");
            assert_string_equal(r->req.model, "whisper-1");
            assert_int_equal(r->req.format, API_AUDIO_VERBOSE_JSON);
            assert_true(r->req.temperature == 0.2f);
            assert_string_equal(r->req.prompt, "Hello, \"world\"\r\nsecond line caf\xC3\xA9");
            assert_true(r->req.ts_segment);
        }
    }
    free(f.p);
    free(audio);
}

/* Only file and model (the loaded model's own name): the defaults. curl's form:
 * its boundary, audio/x-wav, no CRLF after the closing boundary; and a quoted boundary. */
static void test_defaults_and_curl(void **st)
{
    (void)st;
    static const char body[] =
        "--------------------------d74496d66958873e\r\n"
        "Content-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
        "Content-Type: audio/x-wav\r\n\r\n"
        "RIFF....WAVE\r\n"
        "--------------------------d74496d66958873e\r\n"
        "Content-Disposition: form-data; name=\"model\"\r\n\r\n"
        "whisper-tiny.en\r\n"
        "--------------------------d74496d66958873e--";
    form f = { (char *)body, sizeof body - 1, 0 };
    const char *cts[] = { "multipart/form-data; boundary=------------------------d74496d66958873e",
                          "multipart/form-data; boundary=\"------------------------d74496d66958873e\"",
                          "Multipart/Form-Data; boundary=------------------------d74496d66958873e" };
    for (int i = 0; i < 3; i++) {
        upload_result *r = run_ct(cts[i], &f, 0, 5);
        if (r->rc) fail_msg("%s: %s", cts[i], r->err.message);
        assert_int_equal(r->req.file_len, 12);
        assert_memory_equal(r->req.file, "RIFF....WAVE", 12);
        assert_string_equal(r->req.filename, "a.wav");
        assert_string_equal(r->req.model, "whisper-tiny.en");
        assert_int_equal(r->req.format, API_AUDIO_JSON);
        assert_true(r->req.temperature == 0.0f);
        assert_null(r->req.prompt);
        assert_false(r->req.ts_segment);
    }
}

static void test_missing_file(void **st)
{
    (void)st;
    form f = { 0 };
    field(&f, "model", "whisper-1");
    end(&f);
    expect_error(&f, 0, 400, "file", "you must provide a file");
    free(f.p);
    f = (form){ 0 };
    field(&f, "model", "whisper-1");
    file(&f, "empty.wav", "", 0);
    end(&f);
    expect_error(&f, 0, 400, "file", "empty");
    free(f.p);
    form none = { 0 };   /* an empty body */
    expect_error(&none, 0, 400, "model", "you must provide a model");
}

/* max_upload bytes pass; max_upload + 1 gets 413, fed whole or in pieces. */
static void test_upload_limit(void **st)
{
    (void)st;
    const size_t lims[] = { 1, 1000, 16 * 1024, 16 * 1024 + 3, 100000 };
    for (size_t k = 0; k < sizeof lims / sizeof lims[0]; k++) {
        for (size_t extra = 0; extra < 3; extra++) {
            const size_t n = lims[k] + extra;
            char *audio = audio_bytes(n);
            form f = { 0 };
            field(&f, "model", "whisper-1");
            file(&f, "a.flac", audio, n);
            end(&f);
            upload_result *r = run_ct(CT, &f, lims[k], 977);
            if (extra == 0) {
                if (r->rc) fail_msg("limit %zu, file %zu: %s", lims[k], n, r->err.message);
                assert_int_equal(r->req.file_len, n);
                assert_memory_equal(r->req.file, audio, n);
            } else {
                assert_int_equal(r->rc, KVLM_ERR_INVALID);
                assert_int_equal(r->err.http_status, 413);
                assert_string_equal(r->err.param, "file");
                assert_non_null(strstr(r->err.message, "limit"));
            }
            free(f.p);
            free(audio);
        }
    }
}

static form with(const char *name, const char *value, const char *name2, const char *value2)
{
    form f = { 0 };
    field(&f, "model", "whisper-1");
    file(&f, "a.flac", "fLaC", 4);
    if (name) field(&f, name, value);
    if (name2) field(&f, name2, value2);
    end(&f);
    return f;
}

static void expect_ok(form f, api_audio_format fmt)
{
    upload_result *r = run(&f, 0);
    if (r->rc) fail_msg("refused: %d %s", r->err.http_status, r->err.message);
    assert_int_equal(r->req.format, fmt);
    free(f.p);
}

static void expect_err(form f, int status, const char *param, const char *msg)
{
    expect_error(&f, 0, status, param, msg);
    free(f.p);
}

static void test_response_format(void **st)
{
    (void)st;
    const char *names[] = { "json", "text", "verbose_json", "srt", "vtt" };
    for (int i = 0; i < 5; i++) {
        expect_ok(with("response_format", names[i], NULL, NULL), (api_audio_format)i);
        assert_string_equal(api_audio_format_name((api_audio_format)i), names[i]);
    }
    assert_string_equal(api_audio_content_type(API_AUDIO_JSON), "application/json");
    assert_string_equal(api_audio_content_type(API_AUDIO_VERBOSE_JSON), "application/json");
    assert_string_equal(api_audio_content_type(API_AUDIO_TEXT), "text/plain; charset=utf-8");
    assert_string_equal(api_audio_content_type(API_AUDIO_SRT), "application/x-subrip");
    assert_string_equal(api_audio_content_type(API_AUDIO_VTT), "text/vtt");
    expect_err(with("response_format", "xml", NULL, NULL), 400, "response_format", "'xml' is not one of");
    expect_err(with("response_format", "JSON", NULL, NULL), 400, "response_format", "is not one of");
    expect_err(with("response_format", "", NULL, NULL), 400, "response_format", "is not one of");
}

static void test_granularities(void **st)
{
    (void)st;
    expect_err(with("timestamp_granularities[]", "word", "response_format", "verbose_json"), 400,
               "timestamp_granularities[]", "'word' is not supported");
    expect_err(with("timestamp_granularities[]", "segment", NULL, NULL), 400, "timestamp_granularities[]",
               "requires response_format=verbose_json");
    expect_err(with("timestamp_granularities[]", "segment", "response_format", "srt"), 400,
               "timestamp_granularities[]", "requires response_format=verbose_json");
    expect_err(with("timestamp_granularities[]", "char", "response_format", "verbose_json"), 400,
               "timestamp_granularities[]", "'char' is not one of");
    expect_ok(with("timestamp_granularities[]", "segment", "response_format", "verbose_json"),
              API_AUDIO_VERBOSE_JSON);
    form f = with("timestamp_granularities[]", "segment", "timestamp_granularities[]", "segment");   /* repeats */
    f.len -= strlen("--" BOUNDARY "--\r\n");
    field(&f, "response_format", "verbose_json");
    end(&f);
    expect_ok(f, API_AUDIO_VERBOSE_JSON);
}

static void test_language(void **st)
{
    (void)st;
    expect_ok(with("language", "en", NULL, NULL), API_AUDIO_JSON);
    expect_ok(with("language", "English", NULL, NULL), API_AUDIO_JSON);
    expect_err(with("language", "fr", NULL, NULL), 400, "language", "'fr' is not supported");
    expect_err(with("language", "", NULL, NULL), 400, "language", "not supported");
}

static void test_temperature(void **st)
{
    (void)st;
    const char *good[] = { "0", "1", "0.7", "1e-1", "0.0" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) expect_ok(with("temperature", good[i], NULL, NULL), 0);
    const char *bad[] = { "abc", "1.5", "-0.1", "nan", "inf", "", "0.5x", " 0.5x", "1e400" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_err(with("temperature", bad[i], NULL, NULL), 400, "temperature", "between 0 and 1");
}

static void test_stream_model(void **st)
{
    (void)st;
    expect_ok(with("stream", "false", NULL, NULL), API_AUDIO_JSON);
    expect_err(with("stream", "true", NULL, NULL), 400, "stream", "not supported");
    expect_err(with("stream", "maybe", NULL, NULL), 400, "stream", "true or false");
    form f = { 0 };
    field(&f, "model", "gpt-4o-transcribe");
    file(&f, "a.flac", "fLaC", 4);
    end(&f);
    expect_err(f, 404, "model", "The model `gpt-4o-transcribe` does not exist");
    f = (form){ 0 };
    file(&f, "a.flac", "fLaC", 4);
    end(&f);
    expect_err(f, 400, "model", "you must provide a model");
}

static void test_duplicates(void **st)
{
    (void)st;
    expect_err(with("model", "whisper-1", NULL, NULL), 400, "model", "more than once");
    expect_err(with("response_format", "text", "response_format", "json"), 400, "response_format", "more than once");
    form f = { 0 };
    field(&f, "model", "whisper-1");
    file(&f, "a.flac", "fLaC", 4);
    file(&f, "b.flac", "fLaC", 4);
    end(&f);
    expect_err(f, 400, "file", "more than once");
}

/* NUL and invalid UTF-8 in values, a part without a name. */
static void test_bad_values(void **st)
{
    (void)st;
    form f = { 0 };
    puts_(&f, "--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n");
    put(&f, "whisper-1\0x", 11);
    puts_(&f, "\r\n");
    file(&f, "a.flac", "fLaC", 4);
    end(&f);
    expect_err(f, 400, "model", "not UTF-8 text");
    expect_err(with("prompt", "caf\xC3", NULL, NULL), 400, "prompt", "not UTF-8 text");
    f = (form){ 0 };
    field(&f, "model", "whisper-1");
    file(&f, "a.flac", "fLaC", 4);
    puts_(&f, "--" BOUNDARY "\r\nContent-Disposition: form-data\r\n\r\nvalue\r\n");
    end(&f);
    expect_err(f, 400, "", "has no name");
    char *big = malloc(API_AUDIO_FIELD_MAX + 2);
    memset(big, 'a', API_AUDIO_FIELD_MAX + 1);
    big[API_AUDIO_FIELD_MAX + 1] = '\0';
    expect_err(with("prompt", big, NULL, NULL), 400, "prompt", "too long");
    big[API_AUDIO_FIELD_MAX] = '\0';
    expect_ok(with("prompt", big, NULL, NULL), API_AUDIO_JSON);
    free(big);
}

static void test_content_type(void **st)
{
    (void)st;
    form f = with(NULL, NULL, NULL, NULL);
    const char *bad[] = { "application/x-www-form-urlencoded", "application/json", "multipart/form-data",
                          "multipart/form-data; charset=utf-8", "multipart/form-dataX; boundary=" BOUNDARY,
                          "text/plain" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        upload_result *r = run_ct(bad[i], &f, 0, 0);
        if (r->rc == KVLM_OK || r->err.http_status != 400) fail_msg("%s accepted", bad[i]);
    }
    upload_result *r = run_ct("multipart/form-data; boundary=other", &f, 0, 0);   /* wrong boundary */
    assert_int_equal(r->err.http_status, 400);
    free(f.p);
}

/* Every proper prefix of a good body that ends before its closing boundary is refused. */
static void test_truncated(void **st)
{
    (void)st;
    form f = { 0 };
    field(&f, "model", "whisper-1");
    file(&f, "a.flac", "fLaC\r\n-audio", 12);
    field(&f, "response_format", "text");
    end(&f);
    const size_t complete = f.len - strlen("--\r\n");   /* "--BOUNDARY" alone is not an end */
    for (size_t n = 0; n < complete; n++) {
        form cut = { f.p, n, 0 };
        upload_result *r = run_ct(CT, &cut, 0, n % 5 + 1);
        if (r->rc == KVLM_OK) fail_msg("a body cut at %zu of %zu bytes was accepted", n, f.len);
        assert_int_equal(r->err.http_status, 400);
    }
    form whole = { f.p, f.len - 2, 0 };   /* without the final CRLF: complete */
    upload_result *r = run(&whole, 0);
    assert_int_equal(r->rc, KVLM_OK);
    assert_int_equal(r->req.format, API_AUDIO_TEXT);
    free(f.p);
}

/* The body ends right before a PROT_NONE page: no byte past it is read. */
static void test_guard_page(void **st)
{
    (void)st;
    form f = with("response_format", "srt", NULL, NULL);
    const size_t pg = (size_t)sysconf(_SC_PAGESIZE), npg = (f.len + pg - 1) / pg + 1;
    char *m = mmap(NULL, npg * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    assert_int_equal(mprotect(m + (npg - 1) * pg, pg, PROT_NONE), 0);
    char *guard = m + (npg - 1) * pg;
    for (size_t cut = 0; cut <= 40; cut += 8) {   /* also truncated bodies, ending at the guard */
        memcpy(guard - (f.len - cut), f.p, f.len - cut);
        form g = { guard - (f.len - cut), f.len - cut, 0 };
        upload_result *r = run_ct(CT, &g, 0, 3);
        if (cut == 0) assert_int_equal(r->rc, KVLM_OK);
    }
    munmap(m, npg * pg);
    free(f.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_form),
        cmocka_unit_test(test_defaults_and_curl),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_upload_limit),
        cmocka_unit_test(test_response_format),
        cmocka_unit_test(test_granularities),
        cmocka_unit_test(test_language),
        cmocka_unit_test(test_temperature),
        cmocka_unit_test(test_stream_model),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_content_type),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_guard_page),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
