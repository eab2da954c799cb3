/* api_audio.c - see api_audio.h. Room: server. May touch: api.h, libmicrohttpd's
 * post processor, libc. Nothing here prints.
 *
 * MHD_PostProcessor calls on_part for every piece of every part's value, with
 * the part's name, filename and the offset of the piece in the value. It does not
 * say where a part ends, so a part is taken as finished when the next one starts
 * (a call at offset 0) or when the body ends; then commit() files its value:
 *
 *   body --feed--> MHD_post_process --on_part(key, off, piece)--> part buffer
 *                                                                     | next part / finish
 *                                                                     v
 *                                              fields (file, model, ...) --finish--> api_audio_req
 *
 * The one exception: a part's first call may carry 0 bytes at offset 0 when MHD
 * has not yet seen enough input to know the value's first byte; MHD's window is
 * refilled before each state, so that only happens at the end of a feed (a feed
 * cut just after the part's headers). A call at offset 0 for the same name that
 * follows such a call at the end of the previous feed continues that part. (A
 * body fed whole is thus split exactly; fed in pieces, an empty part whose end
 * falls at the end of a piece, followed by a part of the same name, is taken as
 * one part.) Invariants: the file buffer never grows past max_upload;
 * any other value stays within API_AUDIO_FIELD_MAX; ignored fields are not kept. */
#include "server/api_audio.h"

#include <microhttpd.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { PP_BUFFER = 16 * 1024 };              /* MHD's window over the body; >= 2 * boundary + 2 */
#define DEFAULT_MAX_UPLOAD ((size_t)25 << 20) /* OpenAI's limit */

typedef enum field_id {
    F_FILE, F_MODEL, F_FORMAT, F_TEMPERATURE, F_LANGUAGE, F_PROMPT, F_STREAM, F_GRANULARITY, F_IGNORED,
    F_COUNT = F_IGNORED,
} field_id;

static const char *const FIELD_NAMES[F_COUNT] = {
    "file", "model", "response_format", "temperature", "language", "prompt", "stream", "timestamp_granularities[]",
};

typedef struct vbuf { char *p; size_t len, cap; } vbuf;

struct api_audio_parser {
    struct MHD_PostProcessor *pp;
    api_audio_limits lim;
    api_error err;                 /* err.http_status != 0: failed */
    /* the part being read */
    field_id cur;
    char *cur_key;                 /* its name; NULL before the first part */
    bool last_empty;               /* the last call was a 0-byte call at offset 0 */
    bool empty_at_feed_end;        /* ... and it ended the previous feed (see the top) */
    vbuf val;                      /* its value, unless it is the file or ignored */
    /* what the parts gave */
    vbuf file;
    char *filename;
    char *fields[F_COUNT];         /* committed values of the scalar fields (not file, granularity) */
    bool seen[F_COUNT];
    bool g_segment, g_word;
    char *g_other;                 /* the first granularity that is neither */
};

static void fail(api_audio_parser *p, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(api_audio_parser *p, int status, const char *param, const char *fmt, ...)
{
    if (p->err.http_status) return;   /* the first error stands */
    char msg[sizeof p->err.message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    api_error_set(&p->err, status, NULL, param, "%s", msg);
}

static bool vbuf_add(vbuf *b, const char *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return false;
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return true;
}

/* s[0..n) as a malloc'd string, cut at its first byte that is not UTF-8 or is NUL. */
static char *utf8_dup(const char *s, size_t n)
{
    size_t k = api_utf8_valid_prefix(s, n);
    const char *nul = memchr(s, '\0', k);
    if (nul) k = (size_t)(nul - s);
    char *d = malloc(k + 1);
    if (d) {
        memcpy(d, s, k);
        d[k] = '\0';
    }
    return d;
}

static field_id field_of(const char *key)
{
    if (!strcmp(key, "timestamp_granularities")) return F_GRANULARITY;   /* without [] too */
    for (int i = 0; i < F_COUNT; i++)
        if (!strcmp(key, FIELD_NAMES[i])) return (field_id)i;
    return F_IGNORED;
}

/* The part just read is complete: file its value. */
static void commit(api_audio_parser *p)
{
    if (!p->cur_key || p->cur == F_IGNORED || p->cur == F_FILE) goto done;
    const char *v = p->val.p ? p->val.p : "";
    if (!api_utf8_valid(v, p->val.len) || strlen(v) != p->val.len) {
        fail(p, 400, FIELD_NAMES[p->cur], "The value of '%s' is not UTF-8 text", FIELD_NAMES[p->cur]);
        goto done;
    }
    if (p->cur == F_GRANULARITY) {
        if (!strcmp(v, "segment")) p->g_segment = true;
        else if (!strcmp(v, "word")) p->g_word = true;
        else if (!p->g_other && !(p->g_other = strdup(v))) api_error_set(&p->err, 500, NULL, NULL, "out of memory");
        goto done;
    }
    p->fields[p->cur] = p->val.p ? p->val.p : strdup("");
    p->val = (vbuf){ 0 };
    if (!p->fields[p->cur]) api_error_set(&p->err, 500, NULL, NULL, "out of memory");
done:
    free(p->val.p);
    p->val = (vbuf){ 0 };
}

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                               const char *content_type, const char *transfer_encoding, const char *data,
                               uint64_t off, size_t size)
{
    (void)kind; (void)content_type; (void)transfer_encoding;
    api_audio_parser *p = cls;
    if (p->err.http_status) return MHD_NO;
    if (!key) {
        fail(p, 400, NULL, "A part of the multipart body has no name");
        return MHD_NO;
    }
    const bool continues = off == 0 && p->empty_at_feed_end && p->cur_key && !strcmp(p->cur_key, key);
    p->empty_at_feed_end = false;
    p->last_empty = off == 0 && size == 0;
    if (off == 0 && !continues) {                          /* a new part */
        commit(p);
        free(p->cur_key);
        if (!(p->cur_key = strdup(key))) {
            api_error_set(&p->err, 500, NULL, NULL, "out of memory");
            return MHD_NO;
        }
        p->cur = field_of(key);
        if (p->cur != F_IGNORED && p->cur != F_GRANULARITY) {
            if (p->seen[p->cur]) {
                fail(p, 400, FIELD_NAMES[p->cur], "The parameter '%s' is given more than once", FIELD_NAMES[p->cur]);
                return MHD_NO;
            }
            p->seen[p->cur] = true;
        }
        if (p->cur == F_FILE && !(p->filename = utf8_dup(filename ? filename : "", filename ? strlen(filename) : 0))) {
            api_error_set(&p->err, 500, NULL, NULL, "out of memory");
            return MHD_NO;
        }
    }
    if (p->cur == F_IGNORED || size == 0) return MHD_YES;
    if (p->cur == F_FILE) {
        if (size > p->lim.max_upload - p->file.len) {     /* 413 now: read no further */
            fail(p, 413, "file", "The uploaded file is larger than the server's limit of %zu bytes",
                 p->lim.max_upload);
            return MHD_NO;
        }
        if (!vbuf_add(&p->file, data, size)) {
            api_error_set(&p->err, 500, NULL, NULL, "out of memory");
            return MHD_NO;
        }
        return MHD_YES;
    }
    if (size > API_AUDIO_FIELD_MAX - p->val.len) {
        fail(p, 400, FIELD_NAMES[p->cur], "The parameter '%s' is too long", FIELD_NAMES[p->cur]);
        return MHD_NO;
    }
    if (!vbuf_add(&p->val, data, size)) {
        api_error_set(&p->err, 500, NULL, NULL, "out of memory");
        return MHD_NO;
    }
    return MHD_YES;
}

kvlm_err api_audio_parser_init(struct MHD_Connection *conn, const api_audio_limits *lim, api_audio_parser **out,
                               api_error *e)
{
    *out = NULL;
    const char *ct = conn ? MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE) : NULL;
    static const char mp[] = "multipart/form-data";
    if (!ct || strncasecmp(ct, mp, sizeof mp - 1) || (ct[sizeof mp - 1] && ct[sizeof mp - 1] != ';' &&
                                                      ct[sizeof mp - 1] != ' ')) {
        api_error_set(e, 400, NULL, NULL, "The request must be multipart/form-data (Content-Type: %.64s)",
                      ct ? ct : "none");
        return KVLM_ERR_INVALID;
    }
    api_audio_parser *p = calloc(1, sizeof *p);
    if (!p) {
        api_error_set(e, 500, NULL, NULL, "out of memory");
        return KVLM_ERR_NOMEM;
    }
    p->lim = *lim;
    if (!p->lim.max_upload) p->lim.max_upload = DEFAULT_MAX_UPLOAD;
    /* NULL: no boundary=, an empty one, one too long for the window, or no memory */
    if (!(p->pp = MHD_create_post_processor(conn, PP_BUFFER, on_part, p))) {
        free(p);
        api_error_set(e, 400, NULL, NULL, "The multipart Content-Type has no usable boundary (%.64s)", ct);
        return KVLM_ERR_INVALID;
    }
    *out = p;
    return KVLM_OK;
}

static kvlm_err failed(api_audio_parser *p, api_error *e)
{
    if (e) *e = p->err;
    return p->err.http_status == 500 ? KVLM_ERR_NOMEM : KVLM_ERR_INVALID;
}

kvlm_err api_audio_parser_feed(api_audio_parser *p, const char *data, size_t len, api_error *e)
{
    if (p->err.http_status) return failed(p, e);
    if (len && MHD_post_process(p->pp, data, len) != MHD_YES)
        fail(p, 400, NULL, "The multipart body is malformed");
    p->empty_at_feed_end = p->last_empty;   /* the last call of all ended this feed, or an earlier one */
    return p->err.http_status ? failed(p, e) : KVLM_OK;
}

static bool is_true(const char *v) { return !strcasecmp(v, "true") || !strcmp(v, "1"); }
static bool is_false(const char *v) { return !strcasecmp(v, "false") || !strcmp(v, "0"); }

/* The checks that need every field: fills p->err on the first failure. */
static void check(api_audio_parser *p, api_audio_req *r)
{
    char *const *f = p->fields;
    if (!f[F_MODEL] || !f[F_MODEL][0]) {
        fail(p, 400, "model", "you must provide a model parameter");
        return;
    }
    if (p->lim.model_name && strcmp(f[F_MODEL], p->lim.model_name) &&
        !(p->lim.model_alias && !strcmp(f[F_MODEL], p->lim.model_alias))) {
        api_error_set(&p->err, 404, "model_not_found", "model",
                      "The model `%.64s` does not exist or you do not have access to it.", f[F_MODEL]);
        return;
    }
    if (!p->seen[F_FILE]) {
        fail(p, 400, "file", "you must provide a file parameter (the audio, as a multipart file)");
        return;
    }
    if (p->file.len == 0) {
        fail(p, 400, "file", "The uploaded file is empty");
        return;
    }
    static const char *const formats[] = { "json", "text", "verbose_json", "srt", "vtt" };
    r->format = API_AUDIO_JSON;
    if (f[F_FORMAT]) {
        size_t i = 0;
        while (i < 5 && strcmp(f[F_FORMAT], formats[i])) i++;
        if (i == 5) {
            fail(p, 400, "response_format",
                 "'%.64s' is not one of 'json', 'text', 'srt', 'verbose_json', 'vtt' - 'response_format'",
                 f[F_FORMAT]);
            return;
        }
        r->format = (api_audio_format)i;
    }
    if (p->g_other) {
        fail(p, 400, "timestamp_granularities[]", "'%.64s' is not one of 'word', 'segment'", p->g_other);
        return;
    }
    if (p->g_word) {
        fail(p, 400, "timestamp_granularities[]", "timestamp_granularities 'word' is not supported (only 'segment')");
        return;
    }
    if (p->g_segment && r->format != API_AUDIO_VERBOSE_JSON) {
        fail(p, 400, "timestamp_granularities[]",
             "timestamp_granularities requires response_format=verbose_json");
        return;
    }
    r->ts_segment = p->g_segment;
    if (f[F_TEMPERATURE]) {
        char *end;
        const char *v = f[F_TEMPERATURE];
        double t = strtod(v, &end);
        if (end == v || *end || !isfinite(t) || t < 0 || t > 1) {
            fail(p, 400, "temperature", "temperature must be a number between 0 and 1 (got '%.32s')", v);
            return;
        }
        r->temperature = (float)t;
    }
    if (f[F_LANGUAGE] && strcasecmp(f[F_LANGUAGE], "en") && strcasecmp(f[F_LANGUAGE], "english")) {
        fail(p, 400, "language", "language '%.32s' is not supported: this model transcribes English only (en)",
             f[F_LANGUAGE]);
        return;
    }
    if (f[F_STREAM] && !is_false(f[F_STREAM])) {
        if (is_true(f[F_STREAM])) fail(p, 400, "stream", "stream=true is not supported for transcriptions");
        else fail(p, 400, "stream", "stream must be true or false (got '%.32s')", f[F_STREAM]);
        return;
    }
}

kvlm_err api_audio_parser_finish(api_audio_parser *p, api_audio_req *out, api_error *e)
{
    memset(out, 0, sizeof *out);
    if (p->err.http_status) return failed(p, e);
    /* destroy reports whether the body ended where a multipart body may end */
    enum MHD_Result complete = MHD_destroy_post_processor(p->pp);
    p->pp = NULL;
    if (p->err.http_status) return failed(p, e);
    if (complete != MHD_YES) {
        fail(p, 400, NULL, "The multipart body is truncated (it ends before its closing boundary)");
        return failed(p, e);
    }
    commit(p);
    if (!p->err.http_status) check(p, out);
    if (p->err.http_status) return failed(p, e);
    if (!p->file.p && !vbuf_add(&p->file, "", 0)) {
        api_error_set(&p->err, 500, NULL, NULL, "out of memory");
        return failed(p, e);
    }
    out->file = p->file.p;
    out->file_len = p->file.len;
    p->file = (vbuf){ 0 };
    out->filename = p->filename;
    p->filename = NULL;
    out->model = p->fields[F_MODEL];
    p->fields[F_MODEL] = NULL;
    out->prompt = p->fields[F_PROMPT];
    p->fields[F_PROMPT] = NULL;
    return KVLM_OK;
}

void api_audio_parser_free(api_audio_parser *p)
{
    if (!p) return;
    if (p->pp) MHD_destroy_post_processor(p->pp);
    free(p->cur_key);
    free(p->val.p);
    free(p->file.p);
    free(p->filename);
    for (int i = 0; i < F_COUNT; i++) free(p->fields[i]);
    free(p->g_other);
    free(p);
}

kvlm_err api_audio_parse(struct MHD_Connection *conn, const char *body, size_t len, const api_audio_limits *lim,
                         api_audio_req *out, api_error *e)
{
    memset(out, 0, sizeof *out);
    api_audio_parser *p;
    kvlm_err rc = api_audio_parser_init(conn, lim, &p, e);
    if (rc) return rc;
    rc = api_audio_parser_feed(p, body, len, e);
    if (!rc) rc = api_audio_parser_finish(p, out, e);
    api_audio_parser_free(p);
    return rc;
}

void api_audio_req_free(api_audio_req *r)
{
    if (!r) return;
    free(r->file);
    free(r->filename);
    free(r->model);
    free(r->prompt);
    memset(r, 0, sizeof *r);
}

const char *api_audio_format_name(api_audio_format f)
{
    switch (f) {
    case API_AUDIO_TEXT: return "text";
    case API_AUDIO_VERBOSE_JSON: return "verbose_json";
    case API_AUDIO_SRT: return "srt";
    case API_AUDIO_VTT: return "vtt";
    default: return "json";
    }
}

const char *api_audio_content_type(api_audio_format f)
{
    switch (f) {
    case API_AUDIO_TEXT: return "text/plain; charset=utf-8";
    case API_AUDIO_SRT: return "application/x-subrip";
    case API_AUDIO_VTT: return "text/vtt";
    default: return "application/json";
    }
}
