/* test_transcript_fmt.c - kvlm_transcript_format (src/engine/transcript_fmt.c):
 * transcripts built by hand, each format compared byte for byte with text written
 * out here from the formats' definitions (SubRip, WebVTT, OpenAI's verbose_json):
 * times past an hour, millisecond rounding and its carry, UTF-8 and a broken
 * UTF-8 sequence, quotes and line breaks in text, "-->" in a cue, no segments,
 * an unknown format; and the JSON formats parsed back with cJSON field by field.
 * No model needed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kvlm.h"

/* Two segments: the JFK sentence split as faster-whisper splits it. */
static kvlm_token TOK0[] = { 50364, 843, 523, 11, 616, 5891, 3399, 50764 };
static kvlm_token TOK1[] = { 50764, 1265, 644, 345, 460, 466, 329, 534, 1499, 13, 50914 };

static kvlm_segment seg(double t0, double t1, const char *text, kvlm_token *tok, int64_t n, int64_t window)
{
    return (kvlm_segment){ .t0 = t0, .t1 = t1, .text = (char *)text, .tokens = tok, .n_tokens = n,
                           .avg_logprob = -0.25f, .compression_ratio = 1.5f, .no_speech_prob = 0.0125f,
                           .temperature = 0.2f, .window = window };
}

static char *fmt(const kvlm_transcript *t, const char *f)
{
    char *out = NULL, err[256];
    kvlm_err rc = kvlm_transcript_format(t, f, &out, err, sizeof err);
    if (rc) fail_msg("format %s: %s", f, err);
    assert_non_null(out);
    return out;
}

static void expect(const kvlm_transcript *t, const char *f, const char *want)
{
    char *got = fmt(t, f);
    if (strcmp(got, want)) fail_msg("format %s:\n got: [%s]\nwant: [%s]", f, got, want);
    free(got);
}

static void test_jfk_text_srt_vtt(void **st)
{
    (void)st;
    kvlm_segment s[2] = { seg(0, 8, " And so, my fellow Americans", TOK0, 8, 0),
                          seg(8, 11, " ask what you can do for your country.", TOK1, 11, 0) };
    kvlm_transcript t = { .segments = s, .n_segments = 2,
                          .text = " And so, my fellow Americans ask what you can do for your country." };
    t.stats.audio_s = 11.0;
    expect(&t, "text", "And so, my fellow Americans\nask what you can do for your country.\n");
    expect(&t, "srt",
           "1\n00:00:00,000 --> 00:00:08,000\nAnd so, my fellow Americans\n\n"
           "2\n00:00:08,000 --> 00:00:11,000\nask what you can do for your country.\n\n");
    expect(&t, "vtt",
           "WEBVTT\n\n"
           "00:00:00.000 --> 00:00:08.000\nAnd so, my fellow Americans\n\n"
           "00:00:08.000 --> 00:00:11.000\nask what you can do for your country.\n\n");
    expect(&t, "json",
           "{\"text\":\"And so, my fellow Americans ask what you can do for your country.\",\"segments\":["
           "{\"id\":0,\"start\":0,\"end\":8,\"text\":\" And so, my fellow Americans\","
           "\"tokens\":[50364,843,523,11,616,5891,3399,50764],\"avg_logprob\":-0.25,\"compression_ratio\":1.5,"
           "\"no_speech_prob\":0.0125,\"temperature\":0.2},"
           "{\"id\":1,\"start\":8,\"end\":11,\"text\":\" ask what you can do for your country.\","
           "\"tokens\":[50764,1265,644,345,460,466,329,534,1499,13,50914],\"avg_logprob\":-0.25,"
           "\"compression_ratio\":1.5,\"no_speech_prob\":0.0125,\"temperature\":0.2}],\"duration\":11}");
    {   /* token probabilities, when the segments carry them, follow the tokens (json only) */
        float pr[] = { 0.5f, 0.25f };
        kvlm_token tk[] = { 843, 13 };
        kvlm_segment one = seg(0, 1, " And.", tk, 2, 0);
        one.token_probs = pr;
        kvlm_transcript t1 = { .segments = &one, .n_segments = 1 };
        expect(&t1, "json",
               "{\"text\":\"And.\",\"segments\":[{\"id\":0,\"start\":0,\"end\":1,\"text\":\" And.\","
               "\"tokens\":[843,13],\"token_probs\":[0.5,0.25],\"avg_logprob\":-0.25,\"compression_ratio\":1.5,"
               "\"no_speech_prob\":0.0125,\"temperature\":0.2}],\"duration\":0}");
    }
    expect(&t, "verbose_json",
           "{\"task\":\"transcribe\",\"language\":\"english\",\"duration\":11,"
           "\"text\":\"And so, my fellow Americans ask what you can do for your country.\",\"segments\":["
           "{\"id\":0,\"seek\":0,\"start\":0,\"end\":8,\"text\":\" And so, my fellow Americans\","
           "\"tokens\":[50364,843,523,11,616,5891,3399,50764],\"temperature\":0.2,\"avg_logprob\":-0.25,"
           "\"compression_ratio\":1.5,\"no_speech_prob\":0.0125},"
           "{\"id\":1,\"seek\":0,\"start\":8,\"end\":11,\"text\":\" ask what you can do for your country.\","
           "\"tokens\":[50764,1265,644,345,460,466,329,534,1499,13,50914],\"temperature\":0.2,"
           "\"avg_logprob\":-0.25,\"compression_ratio\":1.5,\"no_speech_prob\":0.0125}]}");
}

/* 3599.9996 s rounds up to exactly one hour (every field carries); 3723.4564 is
 * 1:02:03.456; 0.0004 rounds down and 0.0006 up; 360000 s is 100 hours. */
static void test_times(void **st)
{
    (void)st;
    kvlm_segment s[3] = { seg(0.0004, 0.0006, "a", NULL, 0, 0), seg(3599.9996, 3723.4564, "b", NULL, 0, 1),
                          seg(-1.0, 360000.0, "c", NULL, 0, 2) };
    kvlm_transcript t = { .segments = s, .n_segments = 3, .text = "abc" };
    expect(&t, "srt",
           "1\n00:00:00,000 --> 00:00:00,001\na\n\n"
           "2\n01:00:00,000 --> 01:02:03,456\nb\n\n"
           "3\n00:00:00,000 --> 100:00:00,000\nc\n\n");
    expect(&t, "vtt",
           "WEBVTT\n\n00:00:00.000 --> 00:00:00.001\na\n\n01:00:00.000 --> 01:02:03.456\nb\n\n"
           "00:00:00.000 --> 100:00:00.000\nc\n\n");
    char *j = fmt(&t, "verbose_json");
    cJSON *root = cJSON_Parse(j);
    assert_non_null(root);
    cJSON *segs = cJSON_GetObjectItem(root, "segments");
    assert_int_equal(cJSON_GetArraySize(segs), 3);
    assert_true(cJSON_GetObjectItem(cJSON_GetArrayItem(segs, 0), "start")->valuedouble == 0.0);
    assert_true(cJSON_GetObjectItem(cJSON_GetArrayItem(segs, 0), "end")->valuedouble == 0.001);
    assert_true(cJSON_GetObjectItem(cJSON_GetArrayItem(segs, 1), "start")->valuedouble == 3600.0);
    assert_true(cJSON_GetObjectItem(cJSON_GetArrayItem(segs, 1), "end")->valuedouble == 3723.456);
    assert_true(cJSON_GetObjectItem(cJSON_GetArrayItem(segs, 2), "start")->valuedouble == 0.0);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(segs, 1), "seek")->valueint, 3000);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(segs, 2), "seek")->valueint, 6000);
    cJSON_Delete(root);
    free(j);
}

/* Quotes, backslashes, a tab and line breaks; UTF-8 kept; a lone continuation
 * byte and a truncated 3-byte sequence become U+FFFD; "-->" in a cue. */
static void test_text_escapes(void **st)
{
    (void)st;
    kvlm_segment s[2] = { seg(1, 2, " \"Ich bin ein Berliner\"\n\\ caf\xC3\xA9\t\xE2\x82\xAC", NULL, 0, 0),
                          seg(2, 3, "  bad \x80 cut \xE2\x82 a --> b\r\n", NULL, 0, 0) };
    kvlm_transcript t = { .segments = s, .n_segments = 2, .text = NULL };
    expect(&t, "text", "\"Ich bin ein Berliner\" \\ caf\xC3\xA9\t\xE2\x82\xAC\n"
                       "bad \xEF\xBF\xBD cut \xEF\xBF\xBD\xEF\xBF\xBD a -> b  \n");
    expect(&t, "srt", "1\n00:00:01,000 --> 00:00:02,000\n\"Ich bin ein Berliner\" \\ caf\xC3\xA9\t\xE2\x82\xAC\n\n"
                      "2\n00:00:02,000 --> 00:00:03,000\nbad \xEF\xBF\xBD cut \xEF\xBF\xBD\xEF\xBF\xBD a -> b  \n\n");
    char *j = fmt(&t, "json");
    cJSON *root = cJSON_Parse(j);
    assert_non_null(root);
    /* text NULL: the segments joined, then trimmed; JSON keeps "-->" and line breaks */
    assert_string_equal(cJSON_GetObjectItem(root, "text")->valuestring,
                        "\"Ich bin ein Berliner\"\n\\ caf\xC3\xA9\t\xE2\x82\xAC  bad \xEF\xBF\xBD cut "
                        "\xEF\xBF\xBD\xEF\xBF\xBD a --> b");
    cJSON *s0 = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "segments"), 0);
    assert_string_equal(cJSON_GetObjectItem(s0, "text")->valuestring,
                        " \"Ich bin ein Berliner\"\n\\ caf\xC3\xA9\t\xE2\x82\xAC");
    assert_non_null(strstr(j, "\\\"Ich bin ein Berliner\\\"\\n\\\\ caf"));   /* escaped on the wire */
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(s0, "tokens")), 0);
    cJSON_Delete(root);
    free(j);
}

static void test_empty(void **st)
{
    (void)st;
    kvlm_transcript t = { .segments = NULL, .n_segments = 0, .text = NULL };
    t.stats.audio_s = 2.5;
    expect(&t, "text", "");
    expect(&t, "srt", "");
    expect(&t, "vtt", "WEBVTT\n\n");
    expect(&t, "json", "{\"text\":\"\",\"segments\":[],\"duration\":2.5}");
    expect(&t, "verbose_json",
           "{\"task\":\"transcribe\",\"language\":\"english\",\"duration\":2.5,\"text\":\"\",\"segments\":[]}");
}

static void test_errors(void **st)
{
    (void)st;
    kvlm_transcript t = { 0 };
    char *out = (char *)1, err[128] = "";
    assert_int_equal(kvlm_transcript_format(&t, "xml", &out, err, sizeof err), KVLM_ERR_INVALID);
    assert_null(out);
    assert_non_null(strstr(err, "xml"));
    assert_int_equal(kvlm_transcript_format(&t, NULL, &out, err, sizeof err), KVLM_ERR_INVALID);
    assert_int_equal(kvlm_transcript_format(NULL, "text", &out, err, sizeof err), KVLM_ERR_INVALID);
    t.n_segments = 1;   /* segments NULL */
    assert_int_equal(kvlm_transcript_format(&t, "text", &out, NULL, 0), KVLM_ERR_INVALID);
    kvlm_transcript_free(NULL);
}

/* Every field of verbose_json back from cJSON, for a transcript with odd values. */
static void test_json_round_trip(void **st)
{
    (void)st;
    kvlm_segment s[3];
    for (int i = 0; i < 3; i++) {
        s[i] = seg(1.25 * i + 0.1234, 1.25 * i + 1.0, i == 1 ? " \xE6\x97\xA5\xE6\x9C\xAC" : " x", TOK1, 11 - i, i);
        s[i].avg_logprob = -0.1f * (float)(i + 1);
        s[i].compression_ratio = 2.4f + (float)i;
        s[i].no_speech_prob = 1e-6f * (float)(i + 1);
        s[i].temperature = 0.2f * (float)i;
    }
    kvlm_transcript t = { .segments = s, .n_segments = 3, .text = "  x \xE6\x97\xA5\xE6\x9C\xAC x \n" };
    t.stats.audio_s = 40.1234;
    for (int v = 0; v < 2; v++) {
        char *j = fmt(&t, v ? "verbose_json" : "json");
        cJSON *root = cJSON_Parse(j);
        assert_non_null(root);
        assert_string_equal(cJSON_GetObjectItem(root, "text")->valuestring, "x \xE6\x97\xA5\xE6\x9C\xAC x");
        assert_true(cJSON_GetObjectItem(root, "duration")->valuedouble == 40.123);
        if (v) {
            assert_string_equal(cJSON_GetObjectItem(root, "task")->valuestring, "transcribe");
            assert_string_equal(cJSON_GetObjectItem(root, "language")->valuestring, "english");
        } else {
            assert_null(cJSON_GetObjectItem(root, "task"));
        }
        cJSON *segs = cJSON_GetObjectItem(root, "segments");
        assert_int_equal(cJSON_GetArraySize(segs), 3);
        for (int i = 0; i < 3; i++) {
            cJSON *o = cJSON_GetArrayItem(segs, i);
            assert_int_equal(cJSON_GetObjectItem(o, "id")->valueint, i);
            if (v) assert_int_equal(cJSON_GetObjectItem(o, "seek")->valueint, 3000 * i);
            else assert_null(cJSON_GetObjectItem(o, "seek"));
            assert_true(fabs(cJSON_GetObjectItem(o, "start")->valuedouble - (1.25 * i + 0.123)) < 1e-12);
            assert_true(fabs(cJSON_GetObjectItem(o, "end")->valuedouble - (1.25 * i + 1.0)) < 1e-12);
            assert_string_equal(cJSON_GetObjectItem(o, "text")->valuestring, s[i].text);
            cJSON *tk = cJSON_GetObjectItem(o, "tokens");
            assert_int_equal(cJSON_GetArraySize(tk), 11 - i);
            for (int k = 0; k < 11 - i; k++) assert_int_equal(cJSON_GetArrayItem(tk, k)->valueint, TOK1[k]);
            assert_true((float)cJSON_GetObjectItem(o, "avg_logprob")->valuedouble == s[i].avg_logprob);
            assert_true((float)cJSON_GetObjectItem(o, "compression_ratio")->valuedouble == s[i].compression_ratio);
            assert_true((float)cJSON_GetObjectItem(o, "no_speech_prob")->valuedouble == s[i].no_speech_prob);
            assert_true((float)cJSON_GetObjectItem(o, "temperature")->valuedouble == s[i].temperature);
        }
        cJSON_Delete(root);
        free(j);
    }
}

/* kvlm_transcript_free releases everything a transcript owns (ASan: no leak). */
static void test_transcript_free(void **st)
{
    (void)st;
    kvlm_transcript *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->n_segments = 2;
    t->segments = calloc(2, sizeof *t->segments);
    for (int i = 0; i < 2; i++) {
        t->segments[i].text = strdup(" hi");
        t->segments[i].tokens = calloc(3, sizeof(kvlm_token));
        t->segments[i].token_probs = calloc(3, sizeof(float));
        t->segments[i].n_tokens = 3;
    }
    t->text = strdup(" hi hi");
    t->stats.step_ms = calloc(4, sizeof(double));
    expect(t, "text", "hi\nhi\n");
    kvlm_transcript_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jfk_text_srt_vtt),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_text_escapes),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_json_round_trip),
        cmocka_unit_test(test_transcript_free),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
