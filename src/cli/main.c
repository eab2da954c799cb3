/* main.c - the kvlm command line: argv -> params -> the public API.
 * Room: cli. May touch: include/kvlm.h only (the CLI is a client of the
 * library like any other program).
 * Exit codes: 0 ok, 1 runtime error, 2 usage error. */
#include "kvlm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

static void usage(FILE *o)
{
    fprintf(o,
        "usage: kvlm <command> [options]\n"
        "\n"
        "commands:\n"
        "  run       generate a continuation of one prompt (-p or -f), streamed to stdout\n"
        "  chat      multi-turn chat on stdin; the KV cache is kept across turns\n"
        "  batch     many prompts (-f FILE.jsonl) through one shared KV cache: a common prefix is\n"
        "            computed once; one JSON result per line, hit rate and time saved on stderr\n"
        "  inspect   print a model's geometry and KV cache memory per context size\n"
        "  bench     speed: prompt processing and generation at depths (see kvlm bench --help)\n"
        "  perplexity  perplexity of a text (-f FILE), KL between K/V cache types (see --help)\n"
        "  serve       OpenAI-compatible HTTP server with continuous batching (see kvlm serve --help)\n"
        "  transcribe  speech to text with Whisper (see kvlm transcribe --help)\n"
        "\n"
        "options (run, chat, batch):\n"
        "  -m, --model PATH      GGUF model, or a known name fetched on first use: smollm2\n"
        "                        (the default, SmolLM2-135M-Instruct), gemma3 (Gemma 3 270M)\n"
        "  -p, --prompt TEXT     prompt text\n"
        "  -f, --file PATH       read the prompt from a file\n"
        "  -n, --n-predict N     tokens to generate (default 128; -1 = until end, or full without a shift)\n"
        "  -c, --ctx-size N      context size in tokens (default: the model's, 8192)\n"
        "  -t, --threads N       threads (default: online cores)\n"
        "      --temp X          temperature (default 0.8; 0 = greedy)\n"
        "      --top-k N         top-k (default 40; 0 = off)\n"
        "      --top-p X         top-p (default 0.95; 1 = off)\n"
        "      --min-p X         min-p (default 0.05; 0 = off)\n"
        "      --repeat-penalty X  repetition penalty (default 1.0 = off)\n"
        "      --repeat-last-n N tokens the penalty looks back (default 64)\n"
        "      --seed N          sampling seed (default: from the clock)\n"
        "      --system TEXT     system message for the chat template\n"
        "      --raw             do not apply the chat template (run only)\n"
        "      --cache-type T    K/V element type: f16 (default), f32, bf16, q8 (8.5 bits), q4 (4.5 bits),\n"
        "                        kivi4 or kivi2 (KIVI: K per channel 6/4 bits, V per position 4.5/2.5 bits)\n"
        "      --cache-type-k T, --cache-type-v T   the same for K or V alone\n"
        "      --kv-residual N   KIVI: positions per residual group read in f32 (16..256 dividing 256; KIVI K: 64, 128, 256; default 128)\n"
        "      --no-kv-cache     recompute the whole sequence at every step (naive baseline)\n"
        "      --kv-mem SIZE     KV block pool budget, e.g. 64M, 1G (default: the context's worth;\n"
        "                        batch: 256M). Blocks nobody uses stay cached within it\n"
        "      --no-prefix-cache do not publish or look up shared prefixes\n"
        "      --parallel N      run: N sequences forked from one prefill (seeds seed..seed+N-1)\n"
        "      --context-shift   run: when the context is full, keep the first --keep tokens, drop half of\n"
        "                        the rest and go on (their K re-rotated, llama.cpp's context shift)\n"
        "      --no-context-shift  chat: stop at a full context instead (chat shifts by default)\n"
        "      --keep N          tokens a context shift keeps at the start (default 0, chat 4; a BOS counts extra)\n"
        "      --stats           print token counts, speeds and KV cache memory to stderr\n"
        "      --session FILE    chat: save the conversation to FILE after every turn; an existing FILE\n"
        "                        is resumed (its turns are the next prompt's start)\n"
        "  -h, --help            this help\n"
        "\n"
        "cache tiers below the RAM pool (run, chat; also serve):\n");
    cli_tier_usage(o, 24);
    fprintf(o,
        "\n"
        "examples:\n"
        "  kvlm run -p \"Why is the sky blue?\" -n 128\n"
        "  kvlm run -p \"...\" -n 64 --temp 0 --no-kv-cache --stats\n"
        "  kvlm chat --stats\n"
        "  kvlm run -f long_doc.txt -p \"Summarize it.\" --cache-dir ~/.cache/kvlm/kv\n"
        "  kvlm chat --session talk.json --cache-dir ~/.cache/kvlm/kv\n"
        "  kvlm batch -f prompts.jsonl --temp 0 -n 64\n"
        "  kvlm inspect\n"
        "  kvlm bench -t 2\n");
}

/* ---- option parsing --------------------------------------------------------------- */
static int parse_long(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_float(const char *s, double lo, double hi, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return -1;
    *out = (float)v;
    return 0;
}

/* Returns 0 on success, 2 on a usage error (message printed). */
static int parse_args(int argc, char **argv, cli_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_predict = 128;
    o->ctx = kvlm_ctx_default_params();
    o->samp = kvlm_sampler_default_params();
    o->samp.seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    int shift = -1;                   /* --context-shift 1, --no-context-shift 0, neither -1 */
    bool keep_given = false;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n;
        int t;
#define NEED_VALUE() do { if (!v) { fprintf(stderr, "kvlm: option %s needs a value\n", a); return 2; } i++; } while (0)
#define BAD_VALUE() do { fprintf(stderr, "kvlm: bad value for %s: '%s'\n", a, v); return 2; } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { o->help = true; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { NEED_VALUE(); o->model = v; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { NEED_VALUE(); o->prompt = v; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { NEED_VALUE(); o->prompt_file = v; }
        else if (!strcmp(a, "--system")) { NEED_VALUE(); o->system = v; }
        else if (!strcmp(a, "--session")) { NEED_VALUE(); o->session = v; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            NEED_VALUE(); if (parse_long(v, -1, 1 << 24, &n)) BAD_VALUE(); o->n_predict = n;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
            NEED_VALUE(); if (parse_long(v, 0, 1 << 24, &n)) BAD_VALUE(); o->ctx.n_ctx = n;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NEED_VALUE(); if (parse_long(v, 1, 512, &n)) BAD_VALUE(); o->ctx.n_threads = (int)n;
        } else if (!strcmp(a, "--temp")) {
            NEED_VALUE(); if (parse_float(v, 0, 100, &o->samp.temp)) BAD_VALUE();
        } else if (!strcmp(a, "--top-k")) {
            NEED_VALUE(); if (parse_long(v, 0, 1 << 30, &n)) BAD_VALUE(); o->samp.top_k = (int32_t)n;
        } else if (!strcmp(a, "--top-p")) {
            NEED_VALUE(); if (parse_float(v, 0, 1, &o->samp.top_p)) BAD_VALUE();
        } else if (!strcmp(a, "--min-p")) {
            NEED_VALUE(); if (parse_float(v, 0, 1, &o->samp.min_p)) BAD_VALUE();
        } else if (!strcmp(a, "--repeat-penalty")) {
            NEED_VALUE(); if (parse_float(v, 0.01, 100, &o->samp.repeat_penalty)) BAD_VALUE();
        } else if (!strcmp(a, "--repeat-last-n")) {
            NEED_VALUE(); if (parse_long(v, 0, 1 << 20, &n)) BAD_VALUE(); o->samp.repeat_last_n = (int32_t)n;
        } else if (!strcmp(a, "--seed")) {
            NEED_VALUE();
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 0);
            if (errno || end == v || *end) BAD_VALUE();
            o->samp.seed = s;
        } else if (!strcmp(a, "--cache-type") || !strcmp(a, "--cache-type-k")) {
            NEED_VALUE();
            if (!kvlm_kv_type_from_name(v, &o->ctx.kv_type)) BAD_VALUE();
            if (!strcmp(a, "--cache-type")) o->ctx.kv_type_v = KVLM_KV_SAME;
        } else if (!strcmp(a, "--cache-type-v")) {
            NEED_VALUE();
            if (!kvlm_kv_type_from_name(v, &o->ctx.kv_type_v)) BAD_VALUE();
        } else if (!strcmp(a, "--kv-residual")) {
            NEED_VALUE(); if (parse_long(v, 16, 256, &n)) BAD_VALUE(); o->ctx.kv_residual = n;
        } else if (!strcmp(a, "--no-kv-cache")) { o->ctx.no_kv_cache = true; }
        else if (!strcmp(a, "--no-prefix-cache")) { o->ctx.no_prefix_cache = true; }
        else if (!strcmp(a, "--kv-mem")) {
            NEED_VALUE(); if (cli_parse_size(v, &o->ctx.kv_mem)) BAD_VALUE();
        } else if (!strcmp(a, "--parallel")) {
            NEED_VALUE(); if (parse_long(v, 1, 256, &n)) BAD_VALUE(); o->n_parallel = (int)n;
        }
        else if (!strcmp(a, "--context-shift")) { shift = 1; }
        else if (!strcmp(a, "--no-context-shift")) { shift = 0; }
        else if (!strcmp(a, "--keep")) {
            NEED_VALUE(); if (parse_long(v, 0, 1 << 24, &n)) BAD_VALUE(); o->ctx.n_keep = (int)n; keep_given = true;
        }
        else if (!strcmp(a, "--stats")) { o->stats = true; }
        else if (!strcmp(a, "--raw")) { o->raw = true; }
        else if ((t = cli_tier_parse(&o->tiers, "kvlm", argc, argv, &i)) != 0) { if (t < 0) return 2; }
        else if (a[0] == '-') { fprintf(stderr, "kvlm: unknown option '%s' (see kvlm --help)\n", a); return 2; }
        else if (!o->model_pos) { o->model_pos = a; }
        else { fprintf(stderr, "kvlm: unexpected argument '%s'\n", a); return 2; }
#undef NEED_VALUE
#undef BAD_VALUE
    }
    if (cli_tier_check(&o->tiers, "kvlm")) return 2;
    o->ctx.tiers = o->tiers.p;
    const char *cmd = argv[1];
    bool gen = !strcmp(cmd, "run") || !strcmp(cmd, "chat");
    if (!o->help && o->tiers.given && !gen) {
        fprintf(stderr, "kvlm %s: the --cache-* tier options are for run, chat and serve\n", cmd);
        return 2;
    }
    if (!o->help && o->session && strcmp(cmd, "chat")) {
        fprintf(stderr, "kvlm %s: --session is for chat\n", cmd);
        return 2;
    }
    if (!o->help && !gen && (shift >= 0 || keep_given)) {
        fprintf(stderr, "kvlm %s: --context-shift, --no-context-shift and --keep are for run and chat\n", cmd);
        return 2;
    }
    o->ctx.context_shift = !strcmp(cmd, "chat") ? shift != 0 : shift == 1;   /* chat: on unless turned off */
    o->shift_default = !strcmp(cmd, "chat") && shift < 0;
    if (o->shift_default && !keep_given) o->ctx.n_keep = 4;   /* chat: 4 attention sinks (README, Context shift) */
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "bench")) return cli_bench(argc, argv);   /* its own options */
    if (!strcmp(cmd, "perplexity")) return cli_perplexity(argc, argv);
    if (!strcmp(cmd, "serve")) return cli_serve(argc, argv);
    if (!strcmp(cmd, "transcribe")) return cli_transcribe(argc, argv);
    cli_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc;
    if (o.help) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "run")) return cli_run(&o);
    if (!strcmp(cmd, "chat")) return cli_chat(&o);
    if (!strcmp(cmd, "inspect") && cli_is_whisper_model(o.model)) return cli_inspect_whisper(o.model);
    if (!strcmp(cmd, "inspect")) return cli_inspect(&o);
    if (!strcmp(cmd, "batch")) return cli_batch(&o);
    fprintf(stderr, "kvlm: unknown command '%s' (see kvlm --help)\n", cmd);
    return 2;
}
