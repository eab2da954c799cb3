/* fuzz_upload.c - libFuzzer target: arbitrary bodies for POST /v1/audio/transcriptions
 * through the multipart parser (src/server/api_audio.c, MHD_PostProcessor), on a
 * real MHD connection over a socketpair (tests/server/upload_conn.h: no port).
 * Input: byte 0 picks the Content-Type (b0 % 8: 0-4 the fixed boundary "XyZ" in
 * several spellings, 5 urlencoded, 6 no boundary, 7 the input's first line up to
 * '\n' is the whole Content-Type) and the piece size of the second parse
 * ((b0 / 8) % 32 * 7 bytes; 0: whole only); the rest is the body. Seeds in
 * fuzz/corpus/upload start with '0' (0x30: boundary XyZ, pieces of 42 bytes).
 * Checks: no crash/leak/UB (sanitizers); fed whole or in pieces the parser gives
 * the same status and, on success, the same fields (except the one case
 * api_audio.c documents: an empty part that ends a piece, followed by a part of
 * the same name); a success has a file of 1..max_upload bytes, the served model or
 * its alias, a known format, a temperature in [0, 1], UTF-8 strings; a failure is
 * a 400/404/413 whose JSON error parses back. max_upload is 4096. */
#include <cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/server/upload_conn.h"

static upload_conn UC;
static bool started;

static void check_ok(const api_audio_req *r)
{
    if (!r->file || r->file_len == 0 || r->file_len > 4096) abort();
    if (!r->model || (strcmp(r->model, "whisper-tiny.en") && strcmp(r->model, "whisper-1"))) abort();
    if (r->format < API_AUDIO_JSON || r->format > API_AUDIO_VTT) abort();
    if (!(r->temperature >= 0 && r->temperature <= 1)) abort();
    if (!r->filename || !api_utf8_valid(r->filename, strlen(r->filename))) abort();
    if (r->prompt && !api_utf8_valid(r->prompt, strlen(r->prompt))) abort();
    if (r->ts_segment && r->format != API_AUDIO_VERBOSE_JSON) abort();
}

static void check_err(const upload_result *u)
{
    const int st = u->err.http_status;
    if (st != 400 && st != 404 && st != 413) abort();
    char *j = api_error_json(&u->err);
    if (!j) abort();
    cJSON *o = cJSON_Parse(j);
    if (!o || !cJSON_GetObjectItem(cJSON_GetObjectItem(o, "error"), "message")) abort();
    cJSON_Delete(o);
    free(j);
}

static void check(const upload_result *u)
{
    if (u->rc == KVLM_OK) check_ok(&u->req);
    else check_err(u);
}

/* "The parameter 'NAME' is given more than once": the duplicate-field error (its
   text, not a value that happens to contain the words) */
static bool is_dup(const char *msg)
{
    static const char head[] = "The parameter '", tail[] = "' is given more than once";
    const size_t n = strlen(msg);
    return strncmp(msg, head, sizeof head - 1) == 0 && n >= sizeof head - 1 + sizeof tail - 1 &&
           strcmp(msg + n - (sizeof tail - 1), tail) == 0 && !strchr(msg + sizeof head - 1, '\n');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!started) {
        if (upload_conn_init(&UC)) abort();
        UC.lim = (api_audio_limits){ .model_name = "whisper-tiny.en", .model_alias = "whisper-1", .max_upload = 4096 };
        started = true;
    }
    if (size < 1) return 0;
    static const char *const cts[7] = {
        "multipart/form-data; boundary=XyZ", "multipart/form-data; boundary=\"XyZ\"",
        "multipart/form-data;boundary=XyZ", "MULTIPART/FORM-DATA; boundary=XyZ",
        "multipart/form-data; charset=utf-8; boundary=XyZ", "application/x-www-form-urlencoded",
        "multipart/form-data",
    };
    const size_t kind = data[0] % 8, chunk = (size_t)(data[0] / 8 % 32) * 7;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    char ct[256];
    if (kind < 7) {
        snprintf(ct, sizeof ct, "%s", cts[kind]);
    } else {
        const char *nl = memchr(body, '\n', len);
        size_t n = nl ? (size_t)(nl - body) : len;
        if (n >= sizeof ct) n = sizeof ct - 1;
        memcpy(ct, body, n);
        ct[n] = '\0';
        if (nl) {
            len -= (size_t)(nl + 1 - body);
            body = nl + 1;
        }
    }
    if (upload_conn_parse(&UC, ct, body, len, chunk)) return 0;   /* MHD itself refused the request */
    check(&UC.whole);
    if (chunk) {
        check(&UC.split);
        /* the documented quirk (api_audio.c): in pieces, an empty part ending at a piece
           boundary merges with a following part of the same name, so a duplicate field
           may be seen on one side only, either side */
        const bool dup_w = UC.whole.rc && is_dup(UC.whole.err.message);
        const bool dup_s = UC.split.rc && is_dup(UC.split.err.message);
        const bool merged_dup = dup_w != dup_s;
        if (!merged_dup) {
            if (UC.whole.err.http_status != UC.split.err.http_status) abort();
            if (UC.whole.rc == KVLM_OK &&
                (UC.whole.req.file_len != UC.split.req.file_len ||
                 memcmp(UC.whole.req.file, UC.split.req.file, UC.whole.req.file_len) ||
                 strcmp(UC.whole.req.model, UC.split.req.model) || UC.whole.req.format != UC.split.req.format))
                abort();
        }
    }
    return 0;
}
