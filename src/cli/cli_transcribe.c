/* cli_transcribe.c - `kvlm transcribe FILE [options]` and `kvlm inspect -m whisper`.
 * Room: cli; uses only include/kvlm.h. stdout: the transcript (text, one line per
 * segment as each window is final, or the chosen format at the end); stderr:
 * progress, timings and --stats; --stats-json FILE: the same numbers and every step's
 * time as JSON (bench/whisper reads it). Exit 0 on success, 1 on a runtime error, 2 on usage. */
#include "cli/cli.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f,
        "usage: kvlm transcribe FILE [options]    (options may come before or after FILE)\n"
        "Speech to text with Whisper (WAV, FLAC, OGG, MP3; any rate and channel count).\n"
        "  -m, --model M        whisper (the cached tiny.en, default) or a CTranslate2 Whisper directory\n"
        "  --format F           text (default: one line per segment), json, srt, vtt\n"
        "  --srt, --vtt, --json short for --format srt / vtt / json\n"
        "  --timestamps         decode with timestamp tokens (segments inside each 30 s window);\n"
        "                       srt and vtt imply it\n"
        "  --beam N             beam search of width N (default 1: greedy); beams share one cross cache\n"
        "  --temperature T      first temperature (default 0); falls back by --temperature-inc (0.2)\n"
        "  --temperature-inc D  0 turns the fallback off\n"
        "  --seed S             sampling seed for fallback temperatures (fixed default)\n"
        "  --prompt TEXT        initial prompt (vocabulary, spelling)\n"
        "  --no-condition       do not give the previous window's text as the prompt\n"
        "  --no-cross-cache     baseline: recompute the cross-attention K/V at every step\n"
        "  --no-kv-cache        baseline: also recompute every self-attention K/V at every step\n"
        "  --weights W          auto (default: encoder f16, decoder q8_0), f16, q8_0 or f32\n"
        "  --kv-type T          decoder K/V element type: f32 (default), f16, bf16, q8\n"
        "  -t, --threads N      threads (default: all cores)\n"
        "  --stats              positions computed, K/V bytes and per-step times on stderr\n"
        "  --stats-json FILE    the same numbers, every step's ms and the text as JSON (- = stdout)\n"
        "  -h, --help\n");
}

bool cli_is_whisper_model(const char *m)
{
    if (!m) return false;
    if (!strcmp(m, "whisper")) return true;
    char path[4200];
    snprintf(path, sizeof path, "%s/model.bin", m);
    struct stat st;
    return stat(path, &st) == 0;
}

static kvlm_whisper *open_whisper(const char *m, const kvlm_whisper_params *wp)
{
    char err[512];
    if (m && !strcmp(m, "whisper-tiny.en")) m = "whisper";
    const char *dir = cli_model_resolve(m, "whisper");   /* fetched on first use */
    if (!dir) return NULL;
    kvlm_whisper *w;
    if (kvlm_whisper_load(dir, wp, &w, err, sizeof err)) {
        fprintf(stderr, "kvlm: %s\n", err);
        return NULL;
    }
    return w;
}

static void print_segment(void *user, const kvlm_segment *s)
{
    (void)user;
    const char *t = s->text;
    while (*t == ' ') t++;
    printf("%s\n", t);
    fflush(stdout);
}

static double median(double *v, int64_t n)
{
    if (n <= 0) return 0;
    for (int64_t i = 1; i < n; i++)        /* insertion sort: steps are few */
        for (int64_t k = i; k > 0 && v[k - 1] > v[k]; k--) {
            const double t = v[k]; v[k] = v[k - 1]; v[k - 1] = t;
        }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The median of stats.step_ms (0 without step times), sorted in a copy. */
static double step_median(const kvlm_transcribe_stats *s)
{
    double *v = s->step_ms && s->n_steps > 0 ? malloc((size_t)s->n_steps * sizeof *v) : NULL;
    if (!v) return 0;
    memcpy(v, s->step_ms, (size_t)s->n_steps * sizeof *v);
    const double med = median(v, s->n_steps);
    free(v);
    return med;
}

static void print_stats(const kvlm_whisper *w, const kvlm_transcript *t, double wall, const kvlm_transcribe_params *p)
{
    const kvlm_transcribe_stats *s = &t->stats;
    kvlm_whisper_info in;
    kvlm_whisper_get_info(w, &in);
    fprintf(stderr, "\n--- transcribe stats (%s, weights %s, %s%s) ---\n", in.name, in.weights,
            p->no_kv_cache ? "no K/V cache" : p->no_cross_cache ? "no cross cache" : "cross + self cache",
            p->beam > 1 ? ", beam search" : "");
    fprintf(stderr, "audio           %.2f s in %lld window(s), %lld segment(s), %lld fallback(s)\n", s->audio_s,
            (long long)s->n_windows, (long long)t->n_segments, (long long)s->n_fallbacks);
    fprintf(stderr, "mel             %.1f ms\n", s->t_mel_s * 1e3);
    fprintf(stderr, "encoder         %.1f ms (%lld positions, %.1f ms per window)\n", s->t_encode_s * 1e3,
            (long long)s->n_enc_positions, s->n_windows ? s->t_encode_s * 1e3 / (double)s->n_windows : 0.0);
    fprintf(stderr, "  of which       convolutions %.1f, QKV/out projections %.1f, attention %.1f, feed-forward %.1f ms\n",
            s->t_enc_conv_s * 1e3, s->t_enc_proj_s * 1e3, s->t_enc_attn_s * 1e3, s->t_enc_ffn_s * 1e3);
    fprintf(stderr, "cross K/V       %.1f ms projecting %lld encoder positions; %.2f MB held (one copy per window)\n",
            s->t_cross_s * 1e3, (long long)s->n_cross_positions, (double)s->cross_kv_bytes / 1e6);
    fprintf(stderr, "self K/V        %.3f MB peak (%lld bytes per position)\n", (double)s->self_kv_bytes / 1e6,
            (long long)in.self_kv_bytes_per_token);
    const double med = step_median(s);
    fprintf(stderr, "decoder         %.1f ms, %lld steps, %lld positions computed, median step %.3f ms\n",
            s->t_decode_s * 1e3, (long long)s->n_steps, (long long)s->n_dec_positions, med);
    fprintf(stderr, "wall            %.1f ms (model load excluded), %.1fx real time\n", wall * 1e3,
            wall > 0 ? s->audio_s / wall : 0.0);
}

/* --stats-json: every stats field, each step's ms and the median, as one JSON object.
 * Times in ms; wall is kvlm_transcribe's (model load and file decoding excluded). */
static int write_stats_json(const char *path, const kvlm_whisper *w, const kvlm_transcript *t, double wall,
                            const kvlm_transcribe_params *p, int n_threads)
{
    const kvlm_transcribe_stats *s = &t->stats;
    kvlm_whisper_info in;
    kvlm_whisper_get_info(w, &in);
    int64_t n_tokens = 0;
    for (int64_t i = 0; i < t->n_segments; i++) n_tokens += t->segments[i].n_tokens;
    const double med = step_median(s);
    cJSON *j = cJSON_CreateObject(), *steps = cJSON_CreateArray();
    if (!j || !steps) {
        cJSON_Delete(j);
        cJSON_Delete(steps);
        return -1;
    }
    cJSON_AddStringToObject(j, "model", in.name);
    cJSON_AddStringToObject(j, "weights", in.weights);
    cJSON_AddNumberToObject(j, "threads", n_threads);
    cJSON_AddNumberToObject(j, "beam", p->beam);
    cJSON_AddBoolToObject(j, "timestamps", p->timestamps);
    cJSON_AddBoolToObject(j, "no_cross_cache", p->no_cross_cache);
    cJSON_AddBoolToObject(j, "no_kv_cache", p->no_kv_cache);
    cJSON_AddNumberToObject(j, "audio_s", s->audio_s);
    cJSON_AddNumberToObject(j, "n_windows", (double)s->n_windows);
    cJSON_AddNumberToObject(j, "n_segments", (double)t->n_segments);
    cJSON_AddNumberToObject(j, "n_tokens", (double)n_tokens);
    cJSON_AddNumberToObject(j, "n_steps", (double)s->n_steps);
    cJSON_AddNumberToObject(j, "n_enc_positions", (double)s->n_enc_positions);
    cJSON_AddNumberToObject(j, "n_dec_positions", (double)s->n_dec_positions);
    cJSON_AddNumberToObject(j, "n_cross_positions", (double)s->n_cross_positions);
    cJSON_AddNumberToObject(j, "n_fallbacks", (double)s->n_fallbacks);
    cJSON_AddNumberToObject(j, "cross_kv_bytes", (double)s->cross_kv_bytes);
    cJSON_AddNumberToObject(j, "self_kv_bytes", (double)s->self_kv_bytes);
    cJSON_AddNumberToObject(j, "mel_ms", s->t_mel_s * 1e3);
    cJSON_AddNumberToObject(j, "encode_ms", s->t_encode_s * 1e3);
    cJSON_AddNumberToObject(j, "cross_ms", s->t_cross_s * 1e3);
    cJSON_AddNumberToObject(j, "decode_ms", s->t_decode_s * 1e3);
    cJSON_AddNumberToObject(j, "wall_ms", wall * 1e3);
    cJSON_AddNumberToObject(j, "median_step_ms", med);
    for (int64_t i = 0; s->step_ms && i < s->n_steps; i++) cJSON_AddItemToArray(steps, cJSON_CreateNumber(s->step_ms[i]));
    cJSON_AddItemToObject(j, "step_ms", steps);
    cJSON_AddStringToObject(j, "text", t->text ? t->text : "");
    char *txt = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!txt) return -1;
    const bool to_stdout = !strcmp(path, "-");
    FILE *f = to_stdout ? stdout : fopen(path, "w");
    int rc = f ? 0 : -1;
    if (f) {
        fprintf(f, "%s\n", txt);
        if (to_stdout ? fflush(f) != 0 : fclose(f) != 0) rc = -1;
    }
    free(txt);
    return rc;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define NEED(v) do { if (i + 1 >= argc) { fprintf(stderr, "kvlm transcribe: %s needs a value\n", a); return 2; } \
                     v = argv[++i]; } while (0)

int cli_transcribe(int argc, char **argv)
{
    const char *file = NULL, *model = NULL, *format = "text";
    kvlm_whisper_params wp = kvlm_whisper_default_params();
    kvlm_transcribe_params tp = kvlm_transcribe_default_params();
    bool stats = false;
    const char *stats_json = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int64_t n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { NEED(model); }
        else if (!strcmp(a, "--format")) { NEED(format); }
        else if (!strcmp(a, "--srt")) format = "srt";
        else if (!strcmp(a, "--vtt")) format = "vtt";
        else if (!strcmp(a, "--json")) format = "json";
        else if (!strcmp(a, "--timestamps")) tp.timestamps = true;
        else if (!strcmp(a, "--no-cross-cache")) tp.no_cross_cache = true;
        else if (!strcmp(a, "--no-kv-cache")) tp.no_kv_cache = tp.no_cross_cache = true;
        else if (!strcmp(a, "--no-condition")) tp.condition_on_previous_text = false;
        else if (!strcmp(a, "--stats")) stats = true;
        else if (!strcmp(a, "--stats-json")) { NEED(stats_json); }
        else if (!strcmp(a, "--prompt")) { NEED(tp.prompt); }
        else if (!strcmp(a, "--beam")) {
            NEED(v);
            if (cli_parse_i64(v, 1, 16, &n)) { fprintf(stderr, "kvlm transcribe: --beam takes 1..16\n"); return 2; }
            tp.beam = (int)n;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NEED(v);
            if (cli_parse_i64(v, 1, 1024, &n)) { fprintf(stderr, "kvlm transcribe: bad thread count\n"); return 2; }
            wp.n_threads = (int)n;
        } else if (!strcmp(a, "--seed")) {
            NEED(v);
            if (cli_parse_i64(v, 0, INT64_MAX, &n)) { fprintf(stderr, "kvlm transcribe: bad seed\n"); return 2; }
            tp.seed = (uint64_t)n;
        } else if (!strcmp(a, "--temperature") || !strcmp(a, "--temperature-inc")) {
            NEED(v);
            char *end;
            const float f = strtof(v, &end);
            if (*end || end == v || !(f >= 0 && f <= 2)) {
                fprintf(stderr, "kvlm transcribe: %s takes a number in [0, 2]\n", a);
                return 2;
            }
            if (!strcmp(a, "--temperature")) tp.temperature = f;
            else tp.temperature_inc = f;
        } else if (!strcmp(a, "--weights")) {
            NEED(v);
            if (!strcmp(v, "auto")) wp.weights = KVLM_WEIGHTS_AUTO;
            else if (!strcmp(v, "f16")) wp.weights = KVLM_WEIGHTS_F16;
            else if (!strcmp(v, "q8_0") || !strcmp(v, "q8")) wp.weights = KVLM_WEIGHTS_Q8_0;
            else if (!strcmp(v, "f32")) wp.weights = KVLM_WEIGHTS_F32;
            else { fprintf(stderr, "kvlm transcribe: --weights takes auto, f16, q8_0 or f32\n"); return 2; }
        } else if (!strcmp(a, "--kv-type")) {
            NEED(v);
            if (!kvlm_kv_type_from_name(v, &wp.kv_type)) {
                fprintf(stderr, "kvlm transcribe: unknown K/V type %s\n", v);
                return 2;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "kvlm transcribe: unknown option %s (see kvlm transcribe --help)\n", a);
            return 2;
        } else if (!file) file = a;
        else { fprintf(stderr, "kvlm transcribe: one audio file at a time (%s and %s)\n", file, a); return 2; }
    }
    if (!file) { usage(stderr); return 2; }
    if (strcmp(format, "text") && strcmp(format, "json") && strcmp(format, "srt") && strcmp(format, "vtt")) {
        fprintf(stderr, "kvlm transcribe: --format takes text, json, srt or vtt\n");
        return 2;
    }
    if (!strcmp(format, "srt") || !strcmp(format, "vtt")) tp.timestamps = true;
    tp.step_times = stats || stats_json;
    char err[512];
    float *samples = NULL;
    int64_t n = 0;
    if (kvlm_audio_load_file(file, &samples, &n, err, sizeof err)) {
        fprintf(stderr, "kvlm: %s\n", err);
        return 1;
    }
    kvlm_whisper *w = open_whisper(model, &wp);
    if (!w) {
        free(samples);
        return 1;
    }
    if (!strcmp(format, "text")) tp.on_segment = print_segment;
    const double t0 = now_s();
    kvlm_transcript *t = NULL;
    kvlm_err e = kvlm_transcribe(w, samples, n, &tp, &t, err, sizeof err);
    const double wall = now_s() - t0;
    free(samples);
    int rc = 0;
    if (e) {
        fprintf(stderr, "kvlm: %s\n", err);
        rc = 1;
    } else {
        if (strcmp(format, "text")) {
            char *s = NULL;
            if (kvlm_transcript_format(t, format, &s, err, sizeof err)) {
                fprintf(stderr, "kvlm: %s\n", err);
                rc = 1;
            } else {
                fputs(s, stdout);
                free(s);
            }
        }
        if (stats) print_stats(w, t, wall, &tp);
        if (!rc && stats_json && write_stats_json(stats_json, w, t, wall, &tp, wp.n_threads)) {
            fprintf(stderr, "kvlm: cannot write %s\n", stats_json);
            rc = 1;
        }
    }
    kvlm_transcript_free(t);
    kvlm_whisper_free(w);
    return rc;
}

int cli_inspect_whisper(const char *m)
{
    kvlm_whisper_params wp = kvlm_whisper_default_params();
    wp.n_threads = 1;
    kvlm_whisper *w = open_whisper(m, &wp);
    if (!w) return 1;
    kvlm_whisper_info in;
    kvlm_whisper_get_info(w, &in);
    printf("model            %s (Whisper encoder-decoder, CTranslate2 format)\n", in.name);
    printf("parameters       %lld (%.1f MB of weights as %s)\n", (long long)in.n_params, (double)in.weight_bytes / 1e6,
           in.weights);
    printf("audio            %lld mel bins, %lld encoder positions (30 s windows, 20 ms each)\n",
           (long long)in.n_mels, (long long)in.n_audio_ctx);
    printf("encoder          %lld layers, d_model %lld, %lld heads x %lld, ffn %lld\n", (long long)in.n_enc_layer,
           (long long)in.d_model, (long long)in.n_head, (long long)in.head_dim, (long long)in.n_ff);
    printf("decoder          %lld layers, %lld text positions, vocabulary %lld\n", (long long)in.n_dec_layer,
           (long long)in.n_text_ctx, (long long)in.n_vocab);
    printf("self K/V         %lld bytes per decoder position (all layers, K and V, f32); %.2f MB for %lld positions\n",
           (long long)in.self_kv_bytes_per_token, (double)(in.self_kv_bytes_per_token * in.n_text_ctx) / 1e6,
           (long long)in.n_text_ctx);
    printf("cross K/V        %.2f MB per 30 s window (%lld positions x %lld layers, projected once, shared by "
           "every beam)\n", (double)in.cross_kv_bytes_per_window / 1e6, (long long)in.n_audio_ctx,
           (long long)in.n_dec_layer);
    kvlm_whisper_free(w);
    return 0;
}
