/* transcript_fmt.c - kvlm_transcript_format() and kvlm_transcript_free() of
 * include/kvlm.h: a finished transcript rendered as text, JSON, OpenAI's
 * verbose_json, SubRip or WebVTT.
 * Room: engine. May touch: the public types of kvlm.h, core/err, cJSON, utf8proc,
 * libc. Knows nothing of the model or of HTTP: segments in, bytes out.
 *
 * Shapes (t->segments: [n_segments]; each segment's tokens/token_probs: [n_tokens]):
 *   text          one line per segment: its text without leading blanks, "\n"
 *   json          {"text","segments":[{"id","start","end","text","tokens","token_probs" (when set),
 *                  "avg_logprob","compression_ratio","no_speech_prob","temperature"}],
 *                  "duration"}
 *   verbose_json  {"task":"transcribe","language":"english","duration","text",
 *                  "segments":[{"id","seek","start","end","text","tokens",
 *                  "temperature","avg_logprob","compression_ratio","no_speech_prob"}]}
 *   srt           "N\nHH:MM:SS,mmm --> HH:MM:SS,mmm\ntext\n\n", N from 1
 *   vtt           "WEBVTT\n\n" then "HH:MM:SS.mmm --> HH:MM:SS.mmm\ntext\n\n"
 * Rules, the same for every format:
 *   - times are rounded to the millisecond (halves away from zero), negatives
 *     become 0; hours grow past two digits when the audio is that long;
 *   - the top-level "text" is the joined text without its leading and trailing
 *     blanks (as OpenAI sends it); a segment's JSON "text" is kept as Whisper wrote
 *     it (leading space included), while text/srt/vtt lines drop leading blanks;
 *   - bytes that are not UTF-8 (a character split between segments) become U+FFFD,
 *     so every output is valid UTF-8 and the JSON parses in any client;
 *   - in text/srt/vtt, CR and LF inside a segment become spaces (a blank line
 *     would end an SRT/VTT cue early, and a text line is one segment), and srt/vtt
 *     write "-->" inside text as "->" (as Whisper's writers do);
 *   - seek (verbose_json) is the segment's window index times 3000 mel frames
 *     (10 ms each, 30 s windows); a float goes out as the shortest decimal that
 *     reads back as the same float, so -0.3f prints as -0.3. */
#include "core/err.h"

#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

void kvlm_transcript_free(kvlm_transcript *t)
{
    if (!t) return;
    for (int64_t i = 0; i < t->n_segments; i++) {
        free(t->segments[i].text);
        free(t->segments[i].tokens);
        free(t->segments[i].token_probs);
    }
    free(t->segments);
    free(t->text);
    free(t->stats.step_ms);
    free(t);
}

/* ---- a growing output buffer ---------------------------------------------------- */
typedef struct obuf { char *p; size_t len, cap; bool oom; } obuf;

static void ob_put(obuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) { b->oom = true; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void ob_printf(obuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ob_printf(obuf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) { b->oom = true; return; }   /* never: short fixed formats */
    ob_put(b, tmp, (size_t)n);
}

/* Appends s with every byte sequence that is not UTF-8 replaced by U+FFFD.
 * line: also CR/LF -> ' ' and "-->" -> "->" (text, srt, vtt). */
static void ob_text(obuf *b, const char *s, bool line)
{
    const utf8proc_uint8_t *u = (const utf8proc_uint8_t *)(s ? s : "");
    size_t n = strlen((const char *)u), i = 0;
    while (i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(u + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) {
            ob_put(b, "\xEF\xBF\xBD", 3);
            i++;
            continue;
        }
        if (line && (cp == '\r' || cp == '\n')) ob_put(b, " ", 1);
        else if (line && !strncmp((const char *)u + i, "-->", 3)) { ob_put(b, "->", 2); k = 3; }
        else ob_put(b, (const char *)u + i, (size_t)k);
        i += (size_t)k;
    }
}

/* s sanitized to UTF-8 (see ob_text), malloc'd; trim drops leading and trailing
 * blanks. NULL when out of memory. */
static char *clean_text(const char *s, bool trim)
{
    if (trim && s) {
        while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    }
    obuf b = { 0 };
    ob_text(&b, s, false);
    ob_put(&b, "", 0);
    if (b.oom) { free(b.p); return NULL; }
    if (trim)
        while (b.len > 0 && strchr(" \t\r\n", b.p[b.len - 1])) b.p[--b.len] = '\0';
    return b.p;
}

static const char *skip_blanks(const char *s)
{
    if (!s) return "";
    while (*s == ' ' || *s == '\t') s++;
    return s;
}

/* "HH:MM:SS<sep>mmm" of t seconds. */
static void ob_time(obuf *b, double t, char sep)
{
    long long ms = (isfinite(t) && t > 0) ? llround(t * 1000.0) : 0;
    ob_printf(b, "%02lld:%02lld:%02lld%c%03lld", ms / 3600000, ms / 60000 % 60, ms / 1000 % 60, sep, ms % 1000);
}

/* ---- JSON ------------------------------------------------------------------------ */
static double ms_round(double t)
{
    return (isfinite(t) && t > 0) ? (double)llround(t * 1000.0) / 1000.0 : 0.0;
}

/* A float as the shortest decimal that reads back as the same float (-0.3f ->
 * -0.3, not -0.30000001192092896): 6 to 9 significant digits. */
static double float_num(float x)
{
    if (!isfinite(x)) return 0.0;   /* JSON has no inf/nan; cJSON would print null */
    char tmp[32];
    double d = (double)x;
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(tmp, sizeof tmp, "%.*g", digits, (double)x);
        d = strtod(tmp, NULL);
        if ((float)d == x) break;
    }
    return d;
}

static bool add_num(cJSON *o, const char *k, double v) { return cJSON_AddNumberToObject(o, k, v) != NULL; }

static bool add_str(cJSON *o, const char *k, const char *s, bool trim)
{
    char *c = clean_text(s, trim);
    bool ok = c && cJSON_AddStringToObject(o, k, c);
    free(c);
    return ok;
}

static cJSON *segment_json(const kvlm_segment *sg, int64_t id, bool verbose)
{
    cJSON *o = cJSON_CreateObject(), *tok = cJSON_CreateArray();
    if (!o || !tok) goto fail;
    for (int64_t k = 0; k < sg->n_tokens; k++) {      /* tokens: [n_tokens] */
        cJSON *v = cJSON_CreateNumber((double)sg->tokens[k]);
        if (!v) goto fail;
        cJSON_AddItemToArray(tok, v);
    }
    bool ok = add_num(o, "id", (double)id);
    if (verbose) ok = ok && add_num(o, "seek", (double)(sg->window * 3000));
    ok = ok && add_num(o, "start", ms_round(sg->t0)) && add_num(o, "end", ms_round(sg->t1)) &&
         add_str(o, "text", sg->text, false);
    if (!ok) goto fail;
    cJSON_AddItemToObject(o, "tokens", tok);
    tok = NULL;
    if (!verbose && sg->token_probs) {                  /* token_probs: [n_tokens], kvlm's json only */
        cJSON *pr = cJSON_AddArrayToObject(o, "token_probs");
        if (!pr) goto fail;
        for (int64_t k = 0; k < sg->n_tokens; k++) {
            cJSON *v = cJSON_CreateNumber(float_num(sg->token_probs[k]));
            if (!v) goto fail;
            cJSON_AddItemToArray(pr, v);
        }
    }
    if (verbose) ok = add_num(o, "temperature", float_num(sg->temperature));
    ok = ok && add_num(o, "avg_logprob", float_num(sg->avg_logprob)) &&
         add_num(o, "compression_ratio", float_num(sg->compression_ratio)) &&
         add_num(o, "no_speech_prob", float_num(sg->no_speech_prob));
    if (!verbose) ok = ok && add_num(o, "temperature", float_num(sg->temperature));
    if (ok) return o;
fail:
    cJSON_Delete(tok);
    cJSON_Delete(o);
    return NULL;
}

/* The joined text: t->text, or the segments' texts when it is NULL. malloc'd. */
static char *joined_text(const kvlm_transcript *t)
{
    if (t->text) return clean_text(t->text, true);
    obuf b = { 0 };
    ob_put(&b, "", 0);
    for (int64_t i = 0; i < t->n_segments; i++) ob_put(&b, t->segments[i].text ? t->segments[i].text : "",
                                                        t->segments[i].text ? strlen(t->segments[i].text) : 0);
    if (b.oom) { free(b.p); return NULL; }
    char *c = clean_text(b.p, true);
    free(b.p);
    return c;
}

static char *render_json(const kvlm_transcript *t, bool verbose)
{
    char *out = NULL, *text = joined_text(t);
    cJSON *root = cJSON_CreateObject(), *segs = cJSON_CreateArray();
    if (!text || !root || !segs) goto done;
    const double duration = ms_round(t->stats.audio_s);
    bool ok = true;
    if (verbose) {
        ok = cJSON_AddStringToObject(root, "task", "transcribe") && cJSON_AddStringToObject(root, "language", "english")
             && add_num(root, "duration", duration);
    }
    ok = ok && cJSON_AddStringToObject(root, "text", text);
    if (!ok) goto done;
    for (int64_t i = 0; i < t->n_segments; i++) {
        cJSON *s = segment_json(&t->segments[i], i, verbose);
        if (!s) goto done;
        cJSON_AddItemToArray(segs, s);
    }
    cJSON_AddItemToObject(root, "segments", segs);
    segs = NULL;
    if (!verbose && !add_num(root, "duration", duration)) goto done;
    out = cJSON_PrintUnformatted(root);
done:
    cJSON_Delete(segs);
    cJSON_Delete(root);
    free(text);
    return out;
}

/* ---- text, SubRip, WebVTT ------------------------------------------------------------ */
typedef enum fmt_kind { FMT_TEXT, FMT_SRT, FMT_VTT } fmt_kind;

static char *render_lines(const kvlm_transcript *t, fmt_kind k)
{
    obuf b = { 0 };
    ob_put(&b, "", 0);
    if (k == FMT_VTT) ob_put(&b, "WEBVTT\n\n", 8);
    for (int64_t i = 0; i < t->n_segments; i++) {
        const kvlm_segment *sg = &t->segments[i];
        if (k == FMT_SRT) ob_printf(&b, "%lld\n", (long long)(i + 1));
        if (k != FMT_TEXT) {
            const char sep = k == FMT_SRT ? ',' : '.';
            ob_time(&b, sg->t0, sep);
            ob_put(&b, " --> ", 5);
            ob_time(&b, sg->t1, sep);
            ob_put(&b, "\n", 1);
        }
        ob_text(&b, skip_blanks(sg->text), true);
        ob_put(&b, k == FMT_TEXT ? "\n" : "\n\n", k == FMT_TEXT ? 1 : 2);
    }
    if (b.oom) { free(b.p); return NULL; }
    return b.p;
}

kvlm_err kvlm_transcript_format(const kvlm_transcript *t, const char *format, char **out, char *err,
                                size_t errlen)
{
    if (!out) return err_set(err, errlen, KVLM_ERR_INVALID, "transcript format: out is NULL");
    *out = NULL;
    if (!t || !format) return err_set(err, errlen, KVLM_ERR_INVALID, "transcript format: no transcript or format");
    if (t->n_segments < 0 || (t->n_segments > 0 && !t->segments))
        return err_set(err, errlen, KVLM_ERR_INVALID, "transcript format: bad segment array");
    for (int64_t i = 0; i < t->n_segments; i++)
        if (t->segments[i].n_tokens < 0 || (t->segments[i].n_tokens > 0 && !t->segments[i].tokens))
            return err_set(err, errlen, KVLM_ERR_INVALID, "transcript format: segment %lld has a bad token array",
                           (long long)i);
    char *s;
    if (!strcmp(format, "text")) s = render_lines(t, FMT_TEXT);
    else if (!strcmp(format, "srt")) s = render_lines(t, FMT_SRT);
    else if (!strcmp(format, "vtt")) s = render_lines(t, FMT_VTT);
    else if (!strcmp(format, "json")) s = render_json(t, false);
    else if (!strcmp(format, "verbose_json")) s = render_json(t, true);
    else return err_set(err, errlen, KVLM_ERR_INVALID,
                        "unknown transcript format '%.32s' (text, json, verbose_json, srt, vtt)", format);
    if (!s) return err_set(err, errlen, KVLM_ERR_NOMEM, "transcript format: out of memory");
    *out = s;
    return KVLM_OK;
}
