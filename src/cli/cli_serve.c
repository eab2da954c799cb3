/* cli_serve.c - `kvlm serve`: argv -> serve_params -> serve_run.
 * Room: cli. Parses its own options; the server is src/server/serve.c. */
#include "cli/cli.h"
#include "server/serve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
        "usage: kvlm serve [options]\n\n"
        "An OpenAI-compatible HTTP server: POST /v1/chat/completions, POST /v1/completions\n"
        "(and with --whisper, POST /v1/audio/transcriptions)\n"
        "(stream: true for server-sent events), GET /v1/models, GET /v1/kvlm/cache (the KV pool),\n"
        "/health, /metrics, and a chat page at GET / (loads without a key; asks for it).\n"
        "Requests are batched continuously; prompt prefixes are cached across requests and\n"
        "usage.prompt_tokens_details.cached_tokens reports the hits. SIGINT/SIGTERM stop it.\n\n"
        "options:\n"
        "  -m, --model PATH       GGUF model, or smollm2 (the default) / gemma3, fetched on first use;\n"
        "                         `-m whisper` or a Whisper directory serves speech to text alone\n"
        "      --model-id ID      the model name clients use (default: the file name without .gguf)\n"
        "      --host ADDR        address to listen on (default 127.0.0.1; \"::\" for all)\n"
        "      --port N           port (default 8080; 0 = any free port)\n"
        "      --port-file FILE   write the bound port there once listening\n"
        "  -t, --threads N        forward threads (default: online cores)\n"
        "  -c, --ctx N            positions per sequence (default 4096)\n"
        "      --kv-mem BYTES     KV pool size, suffix K/M/G allowed (default 256M)\n"
        "      --cache-type T     K/V type: f16 (default), f32, bf16, q8, q4, kivi4, kivi2\n"
        "      --cache-type-k T, --cache-type-v T   K or V alone\n"
        "      --parallel N       sequences stepped together (default 16)\n"
        "      --step-tokens N    tokens per step, decodes plus prompt chunks (default 256)\n"
        "      --context-shift    a generation that reaches -c keeps the first --keep tokens, drops half\n"
        "                         of the rest and goes on (max_tokens may then exceed the context)\n"
        "      --keep N           tokens a context shift keeps at the start (default 0; a BOS counts extra)\n"
        "      --queue N          requests waiting before 429 (default 64)\n"
        "      --max-body BYTES   request body limit (default 1M)\n"
        "      --stream-queue BYTES  event bytes held for a stream's client (default 256K); when full,\n"
        "                         its sequences pause until the client reads\n"
        "      --stream-stall-timeout S  cut off a stream whose client reads nothing for S seconds\n"
        "                         while events wait, freeing its sequence (default 30; 0 = never)\n"
        "      --whisper MODEL    also serve speech to text, POST /v1/audio/transcriptions: a CTranslate2\n"
        "                         Whisper directory, or \"whisper\" (the cached whisper-tiny.en)\n"
        "      --max-upload BYTES audio file limit of a transcription (default 25M, OpenAI's)\n"
        "      --api-key KEY      require this bearer key (tenant \"default\")\n"
        "      --api-keys FILE    lines \"KEY TENANT\": prefix caches are per tenant\n"
        "\ncache tiers below the RAM pool (shared by every request; tenants stay apart):\n");
    cli_tier_usage(f, 25);
}

int cli_serve(int argc, char **argv)
{
    serve_params p = serve_default_params();
    p.model_path = NULL;
    int64_t n;
    cli_tier_args tiers = { 0 };
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int t;
#define NEED_VALUE() do { if (!v) { fprintf(stderr, "kvlm serve: option %s needs a value\n", a); return 2; } i++; } while (0)
#define BAD_VALUE() do { fprintf(stderr, "kvlm serve: bad value for %s: '%s'\n", a, v); return 2; } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { NEED_VALUE(); p.model_path = v; }
        else if (!strcmp(a, "--model-id")) { NEED_VALUE(); p.model_id = v; }
        else if (!strcmp(a, "--host")) { NEED_VALUE(); p.host = v; }
        else if (!strcmp(a, "--port")) { NEED_VALUE(); if (cli_parse_i64(v, 0, 65535, &n)) BAD_VALUE(); p.port = (int)n; }
        else if (!strcmp(a, "--port-file")) { NEED_VALUE(); p.port_file = v; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NEED_VALUE(); if (cli_parse_i64(v, 1, 512, &n)) BAD_VALUE(); p.n_threads = (int)n;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            NEED_VALUE(); if (cli_parse_i64(v, 16, 1 << 24, &p.n_ctx)) BAD_VALUE();
        } else if (!strcmp(a, "--kv-mem")) { NEED_VALUE(); if (cli_parse_size(v, &p.kv_mem)) BAD_VALUE(); }
        else if (!strcmp(a, "--max-body")) { NEED_VALUE(); if (cli_parse_size(v, &p.max_body)) BAD_VALUE(); }
        else if (!strcmp(a, "--stream-queue")) {
            NEED_VALUE(); if (cli_parse_size(v, &p.stream_queue) || !p.stream_queue) BAD_VALUE();
        } else if (!strcmp(a, "--stream-stall-timeout")) {
            NEED_VALUE(); if (cli_parse_i64(v, 0, 86400, &n)) BAD_VALUE(); p.stream_stall_s = (int)n;
        } else if (!strcmp(a, "--max-upload")) { NEED_VALUE(); if (cli_parse_size(v, &p.max_upload)) BAD_VALUE(); }
        else if (!strcmp(a, "--whisper")) { NEED_VALUE(); p.whisper_path = v; }
        else if (!strcmp(a, "--cache-type") || !strcmp(a, "--cache-type-k")) {
            NEED_VALUE(); if (!kvlm_kv_type_from_name(v, &p.kv_type)) BAD_VALUE();
            if (!strcmp(a, "--cache-type")) p.kv_type_v = KVLM_KV_SAME;
        } else if (!strcmp(a, "--cache-type-v")) { NEED_VALUE(); if (!kvlm_kv_type_from_name(v, &p.kv_type_v)) BAD_VALUE(); }
        else if (!strcmp(a, "--parallel")) { NEED_VALUE(); if (cli_parse_i64(v, 1, 1024, &p.max_seqs)) BAD_VALUE(); }
        else if (!strcmp(a, "--step-tokens")) { NEED_VALUE(); if (cli_parse_i64(v, 1, 8192, &p.step_tokens)) BAD_VALUE(); }
        else if (!strcmp(a, "--queue")) { NEED_VALUE(); if (cli_parse_i64(v, 0, 1 << 20, &p.queue_max)) BAD_VALUE(); }
        else if (!strcmp(a, "--context-shift")) p.context_shift = true;
        else if (!strcmp(a, "--keep")) { NEED_VALUE(); if (cli_parse_i64(v, 0, 1 << 24, &n)) BAD_VALUE(); p.n_keep = (int)n; }
        else if (!strcmp(a, "--api-key")) { NEED_VALUE(); p.api_key = v; }
        else if (!strcmp(a, "--api-keys")) { NEED_VALUE(); p.api_keys_file = v; }
        else if ((t = cli_tier_parse(&tiers, "kvlm serve", argc, argv, &i)) != 0) { if (t < 0) return 2; }
        else {
            fprintf(stderr, "kvlm serve: unknown option '%s' (see kvlm serve --help)\n", a);
            return 2;
        }
#undef NEED_VALUE
#undef BAD_VALUE
    }
    if (cli_tier_check(&tiers, "kvlm serve")) return 2;
    p.tiers = tiers.p;
    /* -m whisper (or a Whisper directory) serves speech to text alone; known names
       resolve to their cached files, fetched on first use */
    if (p.model_path && cli_is_whisper_model(p.model_path)) {
        if (p.whisper_path) {
            fprintf(stderr, "kvlm serve: -m names a Whisper model and --whisper another; give one\n");
            return 2;
        }
        p.whisper_path = p.model_path;
        p.model_path = NULL;
    } else if (!(p.model_path = cli_model_resolve(p.model_path, "smollm2"))) {
        return 1;
    }
    if (p.whisper_path && !(p.whisper_path = cli_model_resolve(p.whisper_path, "whisper"))) return 1;
    return serve_run(&p);
}
