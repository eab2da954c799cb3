/* api_audio.h - POST /v1/audio/transcriptions: the multipart/form-data body
 * (RFC 7578) parsed with libmicrohttpd's MHD_PostProcessor into an api_audio_req,
 * with OpenAI's rules and error objects; and what the response of each
 * response_format is called and typed.
 * Room: server. May touch: api.h (errors, UTF-8), libmicrohttpd's post processor,
 * libc. Knows nothing of audio, the model or threads: bytes in, a plain struct out.
 *
 * Why a connection: MHD_create_post_processor takes the Content-Type (encoding
 * and boundary) from an MHD connection's request headers, and keeps pointers into
 * that header for the processor's life; it uses the connection for nothing else.
 * So the parser takes the connection the body came on. Tests and the fuzzer
 * (tests/server/upload_conn.h) get real connections without a port: an MHD daemon
 * with no listening socket, MHD_add_connection on one end of a socketpair, and a
 * request carrying the Content-Type to test, whose handler runs the parser on a
 * body held in memory.
 *
 * Form fields (as the openai client sends them):
 *   file                      required: the audio bytes (and its filename), at
 *                             most lim->max_upload bytes (413 beyond: parsing
 *                             stops there, nothing more is buffered)
 *   model                     required: lim->model_name or lim->model_alias
 *                             (404 model_not_found otherwise)
 *   response_format           json (default), text, verbose_json, srt, vtt
 *   temperature               a number in [0, 1]
 *   language                  "en" or "english" (the model is English-only)
 *   prompt                    UTF-8 text (at most API_AUDIO_FIELD_MAX bytes)
 *   timestamp_granularities[] "segment" (needs verbose_json), "word" (400: not
 *                             supported); may repeat
 *   stream                    "false" is accepted; "true" is refused (400)
 *   anything else             ignored, as OpenAI's multipart endpoint does
 * A field given twice (other than timestamp_granularities[]) is a 400, and so
 * is a body that ends before its closing boundary, a part without a name, a
 * Content-Type other than multipart/form-data with a boundary, or a non-file
 * field over API_AUDIO_FIELD_MAX bytes. */
#ifndef KVLM_SERVER_API_AUDIO_H
#define KVLM_SERVER_API_AUDIO_H

#include <stdbool.h>
#include <stddef.h>
#include "server/api.h"

struct MHD_Connection;

enum { API_AUDIO_FIELD_MAX = 16 * 1024 };   /* bytes of any non-file field */

typedef enum api_audio_format {
    API_AUDIO_JSON = 0,
    API_AUDIO_TEXT,
    API_AUDIO_VERBOSE_JSON,
    API_AUDIO_SRT,
    API_AUDIO_VTT,
} api_audio_format;

typedef struct api_audio_limits {
    const char *model_name;    /* the loaded model's id, e.g. "whisper-tiny.en"; NULL: any */
    const char *model_alias;   /* also accepted, e.g. "whisper-1"; NULL: none */
    size_t max_upload;         /* file bytes; 0 = 25 MiB */
} api_audio_limits;

typedef struct api_audio_req {
    char *file;                /* [file_len] the uploaded bytes (malloc'd; NUL after them) */
    size_t file_len;
    char *filename;            /* as sent, cut at its first byte that is not UTF-8; "" if none */
    char *model;
    api_audio_format format;
    float temperature;         /* 0 unless given */
    char *prompt;              /* NULL unless given */
    bool ts_segment;           /* timestamp_granularities[] included "segment" */
} api_audio_req;

/* Incremental use: init, feed the body in pieces of any size, finish. Each
 * returns KVLM_OK, or an error code with *e filled (status 400, 404 or 413; 500
 * when out of memory); after an error, feed and finish return it again. */
typedef struct api_audio_parser api_audio_parser;
kvlm_err api_audio_parser_init(struct MHD_Connection *conn, const api_audio_limits *lim, api_audio_parser **out,
                               api_error *e);
kvlm_err api_audio_parser_feed(api_audio_parser *p, const char *data, size_t len, api_error *e);
/* Checks the fields and moves them into *out (zeroed first; free with
 * api_audio_req_free, also after an error). */
kvlm_err api_audio_parser_finish(api_audio_parser *p, api_audio_req *out, api_error *e);
void     api_audio_parser_free(api_audio_parser *p);   /* NULL is fine */

/* The whole body at once: init, one feed, finish. */
kvlm_err api_audio_parse(struct MHD_Connection *conn, const char *body, size_t len, const api_audio_limits *lim,
                         api_audio_req *out, api_error *e);
void api_audio_req_free(api_audio_req *r);   /* frees what r holds; r itself is the caller's */

/* "json", "text", "verbose_json", "srt", "vtt": the kvlm_transcript_format name. */
const char *api_audio_format_name(api_audio_format f);
/* application/json, text/plain; charset=utf-8, application/x-subrip, text/vtt. */
const char *api_audio_content_type(api_audio_format f);

#endif
