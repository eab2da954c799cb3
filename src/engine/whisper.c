/* whisper.c - the public Whisper API: model, jobs, windows, decoding. See kvlm.h.
 * Room: engine. May touch: model (whisper_model), nn (whisper), kv, audio, tok,
 * engine/whisper_rules, core.
 *
 * A job walks the audio in windows the way faster-whisper's transcribe does:
 *
 *   WINDOW  mel frames [seek, seek + 3000) (zero-padded) -> encoder -> cross sequence
 *           (the cross K/V of every decoder layer, once); an attempt starts
 *   PROMPT  the attempt's hypotheses run the prompt (previous text, SOT, task) in one
 *           batch: logits of the SOT row give the no-speech probability, of the last
 *           row the first token
 *   STEP    one token per live hypothesis; greedy (beam 1, T = 0), beam search
 *           (T = 0), or best-of sampling (T > 0); a hypothesis ends at EOT or when
 *           the window's token budget is spent
 *   END     the attempt is judged (compression ratio, average log-probability,
 *           no-speech): fall back to the next temperature, or cut the tokens into
 *           segments, move seek, and start the next window or finish
 *
 * Every hypothesis owns a self sequence in the model's KV pool; beams fork their
 * parents' (copy-on-write), and all of a window's hypotheses read one cross
 * sequence. --no-cross-cache rebuilds the cross sequence from the kept encoder
 * output before every step; --no-kv-cache also truncates each self sequence and
 * runs all its tokens again. The arithmetic per token is the same in all three
 * (nn/whisper.h), so they give the same tokens. */
#include "kvlm.h"
#include "core/clock.h"
#include "audio/audio.h"
#include "audio/mel.h"
#include "core/err.h"
#include "core/pool.h"
#include "engine/whisper_rules.h"
#include "kv/kv_pool.h"
#include "kv/kv_seq.h"
#include "model/whisper_model.h"
#include "nn/whisper.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { WH_MAX_BEAM = 16, WH_BEST_OF = 5, WH_MAX_HYP = WH_MAX_BEAM > WH_BEST_OF ? WH_MAX_BEAM : WH_BEST_OF,
       WH_BATCH = 512 };

struct kvlm_whisper {
    whisper_model *m;
    kvlm_whisper_params params;
    pool *threads;
    kv_pool kp;          /* decoder self and cross K/V */
    whisper_enc enc;
    whisper_dec dec;
    void *cross_xq;      /* whisper_cross_xq_bytes */
    float *cross_kv;     /* [1500][2D] */
    float *logits;       /* [logits_rows][n_vocab] (grown when a step needs more) */
    int64_t logits_rows;
    int64_t *first_row;  /* [first_row_cap] a step's first logits row of each job (grown) */
    int first_row_cap;
    float *probs;        /* [n_vocab] sampling scratch */
    kvlm_token *batch;   /* [WH_BATCH] */
    int64_t *rows;       /* [WH_BATCH] */
    whisper_seg *segs;   /* [WH_BATCH] */
};


/* ---- params ----------------------------------------------------------------------- */
kvlm_whisper_params kvlm_whisper_default_params(void)
{
    return (kvlm_whisper_params){ .n_threads = 0, .weights = KVLM_WEIGHTS_AUTO, .kv_type = KVLM_KV_F32,
                                  .kv_mem = 0, .n_jobs = 1 };
}

kvlm_transcribe_params kvlm_transcribe_default_params(void)
{
    return (kvlm_transcribe_params){ .beam = 1, .temperature = 0.0f, .temperature_inc = 0.2f,
                                     .compression_ratio_threshold = 2.4f, .logprob_threshold = -1.0f,
                                     .no_speech_threshold = 0.6f, .timestamps = false,
                                     .condition_on_previous_text = true, .seed = 0x5eed5eedULL };
}

/* ---- model ------------------------------------------------------------------------ */
static int64_t blocks_of(int64_t n) { return (n + KV_BLOCK_TOKENS - 1) / KV_BLOCK_TOKENS; }

kvlm_err kvlm_whisper_load(const char *path, const kvlm_whisper_params *params, kvlm_whisper **out, char *err,
                           size_t errlen)
{
    *out = NULL;
    kvlm_whisper_params p = params ? *params : kvlm_whisper_default_params();
    if (p.n_jobs <= 0) p.n_jobs = 1;
    if (p.n_threads <= 0) p.n_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (p.n_threads <= 0) p.n_threads = 1;
    if (p.kv_type != KVLM_KV_F32 && p.kv_type != KVLM_KV_F16 && p.kv_type != KVLM_KV_BF16 && p.kv_type != KVLM_KV_Q8)
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "whisper: K/V type %s is not supported (f32, f16, bf16, q8)",
                       kvlm_kv_type_name(p.kv_type));
    kvlm_whisper *w = calloc(1, sizeof *w);
    if (!w) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory");
    w->params = p;
    kvlm_err e = whisper_model_load(&w->m, path, p.weights, err, errlen);
    if (e) goto fail;
    const whisper_hparams *hp = &w->m->hp;
    if ((e = pool_init(&w->threads, p.n_threads, err, errlen))) goto fail;
    /* a job: one cross sequence and, at a step, up to 2 * WH_MAX_HYP self sequences
       (the old and the forked beams) of n_text_ctx positions */
    const size_t bb = kv_pool_block_bytes(hp->n_dec_layer, hp->n_head, hp->head_dim, p.kv_type, p.kv_type);
    const int64_t per_job = blocks_of(hp->n_audio_ctx) + 2 * 6 * (blocks_of(hp->n_text_ctx) + 1);
    const kv_pool_params pp = { .n_layer = hp->n_dec_layer, .n_head_kv = hp->n_head, .head_dim = hp->head_dim,
                                .type_k = p.kv_type, .type_v = p.kv_type,
                                .budget_bytes = p.kv_mem ? p.kv_mem : bb * (size_t)(per_job * p.n_jobs) };
    if ((e = kv_pool_init(&w->kp, &pp, err, errlen))) goto fail;
    if ((e = whisper_enc_init(&w->enc, w->m, p.n_threads, err, errlen))) goto fail;
    if ((e = whisper_dec_init(&w->dec, w->m, WH_BATCH, p.n_threads, err, errlen))) goto fail;
    w->cross_xq = malloc(whisper_cross_xq_bytes(w->m));
    w->cross_kv = calloc((size_t)(hp->n_audio_ctx * 2 * hp->d_model), sizeof(float));
    w->logits_rows = (int64_t)p.n_jobs * (WH_MAX_HYP + 1);
    w->logits = malloc((size_t)w->logits_rows * (size_t)hp->n_vocab * sizeof(float));
    w->probs = malloc((size_t)hp->n_vocab * sizeof(float));
    w->batch = malloc(WH_BATCH * sizeof *w->batch);
    w->rows = malloc(WH_BATCH * sizeof *w->rows);
    w->segs = malloc(WH_BATCH * sizeof *w->segs);
    if (!w->cross_xq || !w->cross_kv || !w->logits || !w->probs || !w->batch || !w->rows || !w->segs) {
        e = err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory for the decoder's buffers");
        goto fail;
    }
    *out = w;
    return KVLM_OK;
fail:
    kvlm_whisper_free(w);
    return e;
}

void kvlm_whisper_free(kvlm_whisper *w)
{
    if (!w) return;
    whisper_enc_free(&w->enc);
    whisper_dec_free(&w->dec);
    kv_pool_free(&w->kp);
    pool_free(w->threads);
    whisper_model_free(w->m);
    free(w->cross_xq);
    free(w->cross_kv);
    free(w->logits);
    free(w->probs);
    free(w->first_row);
    free(w->batch);
    free(w->rows);
    free(w->segs);
    free(w);
}

void kvlm_whisper_get_info(const kvlm_whisper *w, kvlm_whisper_info *out)
{
    const whisper_model *m = w->m;
    const whisper_hparams *hp = &m->hp;
    const int64_t per_pos = (int64_t)kv_pool_block_bytes(hp->n_dec_layer, hp->n_head, hp->head_dim, w->kp.type_k,
                                                         w->kp.type_v) / KV_BLOCK_TOKENS;
    *out = (kvlm_whisper_info){
        .name = m->name, .n_mels = hp->n_mels, .n_audio_ctx = hp->n_audio_ctx, .n_text_ctx = hp->n_text_ctx,
        .n_vocab = hp->n_vocab, .d_model = hp->d_model, .n_head = hp->n_head, .head_dim = hp->head_dim,
        .n_ff = hp->n_ff, .n_enc_layer = hp->n_enc_layer, .n_dec_layer = hp->n_dec_layer, .n_params = m->n_params,
        .weights = m->wtype == KVLM_WEIGHTS_Q8_0 ? "q8_0" : m->wtype == KVLM_WEIGHTS_F32 ? "f32"
                   : m->wtype == KVLM_WEIGHTS_AUTO ? "f16 encoder + q8_0 decoder" : "f16",
        .self_kv_bytes_per_token = per_pos,
        .cross_kv_bytes_per_window = per_pos * blocks_of(hp->n_audio_ctx) * KV_BLOCK_TOKENS,
        .weight_bytes = (int64_t)m->arena_bytes,
    };
}

/* ---- audio ------------------------------------------------------------------------ */
static kvlm_err take_audio(kvlm_err e, audio_buf *b, float **samples, int64_t *n)
{
    if (e) return e;
    *samples = b->samples;
    *n = b->n;
    b->samples = NULL;
    return KVLM_OK;
}

kvlm_err kvlm_audio_load_file(const char *path, float **samples, int64_t *n, char *err, size_t errlen)
{
    audio_buf b = { 0 };
    return take_audio(audio_load_file(path, KVLM_SAMPLE_RATE, &b, err, errlen), &b, samples, n);
}

kvlm_err kvlm_audio_load_memory(const void *data, size_t len, float **samples, int64_t *n, char *err,
                                size_t errlen)
{
    audio_buf b = { 0 };
    return take_audio(audio_load_memory(data, len, "upload", KVLM_SAMPLE_RATE, &b, err, errlen), &b, samples, n);
}

/* ---- jobs ------------------------------------------------------------------------- */
typedef struct hyp {
    kv_seq self;
    kvlm_token toks[448];    /* generated tokens of this attempt (no prompt, no EOT) */
    float probs[448];
    int64_t n;
    double logprob;          /* sum of the chosen tokens' log-probabilities (EOT included) */
    bool done;
} hyp;

typedef enum job_state { JOB_WINDOW, JOB_PROMPT, JOB_STEP, JOB_DONE } job_state;

struct kvlm_wjob {
    kvlm_whisper *w;
    kvlm_transcribe_params p;
    job_state state;
    kvlm_err error;
    char errmsg[256];
    float *mel;              /* [n_mels][n_frames] the whole file */
    int64_t n_frames, content_frames, seek, segment_size;
    float *win;              /* [n_mels][3000] this window's features */
    float *enc_out;          /* [1500][D] */
    kv_seq cross;
    kvlm_token prompt[448];
    int64_t n_prompt, sot_index, max_new;
    int attempt;             /* temperature index */
    float temperature;
    hyp *hyps;               /* [n_hyp] live */
    int n_hyp;
    hyp *fin;                /* [n_fin] finished (beam search, best-of) */
    hyp *next;               /* [WH_MAX_BEAM] beam search's next beams, being built */
    int n_fin;
    float no_speech_prob;
    /* the best attempt so far of this window, for the fallback's last resort */
    kvlm_token best_toks[448];
    float best_probs[448];
    int64_t best_n;
    float best_avg, best_cr, best_temp;
    bool have_best, best_below_cr;
    kvlm_token *all_toks;    /* kept segments' tokens (and the initial prompt) */
    int64_t n_all, cap_all, prompt_reset_since;
    uint64_t rng;
    kvlm_transcript *t;
    int64_t cap_seg, cap_steps;
};

static kvlm_err job_fail(kvlm_wjob *j, kvlm_err e, const char *msg)
{
    if (!j->error) {
        j->error = e;
        snprintf(j->errmsg, sizeof j->errmsg, "%s", msg);
    }
    j->state = JOB_DONE;
    return e;
}

/* Releases the blocks of h[0, n) and leaves each sequence empty and usable. */
static void free_hyps(hyp *h, int n)
{
    for (int i = 0; i < n; i++) {
        kv_pool *kp = h[i].self.pool;
        kv_seq_free(&h[i].self);
        if (kp) kv_seq_init(&h[i].self, kp);
    }
}

kvlm_err kvlm_wjob_create(kvlm_whisper *w, const float *samples, int64_t n, const kvlm_transcribe_params *params,
                          kvlm_wjob **out, char *err, size_t errlen)
{
    *out = NULL;
    kvlm_transcribe_params p = params ? *params : kvlm_transcribe_default_params();
    if (p.beam < 1 || p.beam > WH_MAX_BEAM)
        return err_set(err, errlen, KVLM_ERR_INVALID, "beam must be 1..%d", WH_MAX_BEAM);
    if (!(p.temperature >= 0 && p.temperature <= 2) || !(p.temperature_inc <= 1))
        return err_set(err, errlen, KVLM_ERR_INVALID, "temperature must be in [0, 2]");
    if (n < 0 || (n > 0 && !samples)) return err_set(err, errlen, KVLM_ERR_INVALID, "no samples");
    kvlm_wjob *j = calloc(1, sizeof *j);
    const whisper_hparams *hp = &w->m->hp;
    if (!j) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory");
    j->w = w;
    j->p = p;
    j->rng = p.seed ? p.seed : 1;
    kv_seq_init(&j->cross, &w->kp);
    j->hyps = calloc(WH_MAX_HYP, sizeof *j->hyps);
    j->fin = calloc(2 * WH_MAX_HYP, sizeof *j->fin);
    j->next = calloc(WH_MAX_BEAM, sizeof *j->next);
    j->t = calloc(1, sizeof *j->t);
    j->win = malloc((size_t)(hp->n_mels * WHISPER_N_FRAMES) * sizeof(float));
    j->enc_out = malloc((size_t)(hp->n_audio_ctx * hp->d_model) * sizeof(float));
    kvlm_err e = KVLM_OK;
    if (!j->hyps || !j->fin || !j->next || !j->t || !j->win || !j->enc_out) {
        e = err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < WH_MAX_HYP; i++) kv_seq_init(&j->hyps[i].self, &w->kp);
    for (int i = 0; i < 2 * WH_MAX_HYP; i++) kv_seq_init(&j->fin[i].self, &w->kp);
    const double t0 = clock_now_s();
    static const float one_zero = 0.0f;
    if ((e = mel_compute(n ? samples : &one_zero, n ? n : 1, hp->n_mels, w->params.n_threads, &j->mel, &j->n_frames,
                         err, errlen)))
        goto fail;
    j->t->stats.t_mel_s = clock_now_s() - t0;
    j->t->stats.audio_s = (double)n / KVLM_SAMPLE_RATE;
    j->content_frames = j->n_frames - 1;
    if (p.prompt && *p.prompt) {             /* " " + prompt.strip(), as faster-whisper */
        const char *s = p.prompt;
        while (*s == ' ' || *s == '\t' || *s == '\n') s++;
        size_t len = strlen(s);
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\n')) len--;
        char *txt = malloc(len + 2);
        size_t cap = len + 8, n_ids = 0;
        j->all_toks = malloc(cap * sizeof *j->all_toks);
        if (!txt || !j->all_toks) {
            free(txt);
            e = err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory");
            goto fail;
        }
        txt[0] = ' ';
        memcpy(txt + 1, s, len);
        e = tok_whisper_encode(w->m->tok, txt, len + 1, j->all_toks, cap, &n_ids, err, errlen);
        free(txt);
        if (e) goto fail;
        j->n_all = (int64_t)n_ids;
        j->cap_all = (int64_t)cap;
    }
    j->state = j->content_frames > 0 ? JOB_WINDOW : JOB_DONE;
    *out = j;
    return KVLM_OK;
fail:
    kvlm_wjob_free(j);
    return e;
}

void kvlm_wjob_free(kvlm_wjob *j)
{
    if (!j) return;
    for (int i = 0; j->hyps && i < WH_MAX_HYP; i++) kv_seq_free(&j->hyps[i].self);
    for (int i = 0; j->fin && i < 2 * WH_MAX_HYP; i++) kv_seq_free(&j->fin[i].self);
    free(j->hyps);
    free(j->fin);
    free(j->next);
    kv_seq_free(&j->cross);
    free(j->mel);
    free(j->win);
    free(j->enc_out);
    free(j->all_toks);
    kvlm_transcript_free(j->t);
    free(j);
}

bool kvlm_wjob_done(const kvlm_wjob *j) { return j->state == JOB_DONE; }

kvlm_err kvlm_wjob_error(const kvlm_wjob *j, char *err, size_t errlen)
{
    if (j->error && err && errlen) snprintf(err, errlen, "%s", j->errmsg);
    return j->error;
}

kvlm_transcript *kvlm_wjob_take(kvlm_wjob *j)
{
    if (j->state != JOB_DONE || j->error || !j->t) return NULL;
    kvlm_transcript *t = j->t;
    size_t len = 1;
    for (int64_t i = 0; i < t->n_segments; i++) len += strlen(t->segments[i].text);
    free(t->text);
    if (!(t->text = malloc(len))) return NULL;
    char *p = t->text;
    *p = 0;
    for (int64_t i = 0; i < t->n_segments; i++) p = stpcpy(p, t->segments[i].text);
    j->t = NULL;
    return t;
}

/* ---- windows and attempts ---------------------------------------------------------- */
static void stats_kv(kvlm_wjob *j)
{
    kvlm_transcribe_stats *st = &j->t->stats;
    const int64_t bb = (int64_t)j->w->kp.block_bytes;
    int64_t self = 0;
    for (int i = 0; i < j->n_hyp; i++) self += j->hyps[i].self.n_blocks * bb;
    const int64_t cross = j->cross.n_blocks * bb;
    if (self > st->self_kv_bytes) st->self_kv_bytes = self;
    if (cross > st->cross_kv_bytes) st->cross_kv_bytes = cross;
}

/* The prompt of an attempt: [<|startofprev|> prev[-223:]] <|startoftranscript|> [<|notimestamps|>] */
static void build_prompt(kvlm_wjob *j)
{
    const tok_whisper_specials *sp = j->w->m->sp;
    const int64_t n_text = j->w->m->hp.n_text_ctx;
    int64_t n = 0;
    const int64_t n_prev = j->n_all - j->prompt_reset_since;
    if (n_prev > 0) {
        const int64_t keep = n_prev < n_text / 2 - 1 ? n_prev : n_text / 2 - 1;
        j->prompt[n++] = sp->startofprev;
        memcpy(j->prompt + n, j->all_toks + j->n_all - keep, (size_t)keep * sizeof(kvlm_token));
        n += keep;
    }
    j->sot_index = n;
    j->prompt[n++] = sp->sot;
    if (!j->p.timestamps) j->prompt[n++] = sp->notimestamps;
    j->n_prompt = n;
    /* CTranslate2: the tokens before the start token are the prompt steps;
       new tokens: min(max_length / 2, max_length - steps) */
    const int64_t steps = n - 1, half = n_text / 2;
    j->max_new = half < n_text - steps ? half : n_text - steps;
}

static void start_attempt(kvlm_wjob *j)
{
    free_hyps(j->hyps, j->n_hyp);
    free_hyps(j->fin, j->n_fin);
    j->n_fin = 0;
    j->temperature = j->p.temperature + (float)j->attempt * j->p.temperature_inc;
    j->n_hyp = j->temperature > 0 ? WH_BEST_OF : j->p.beam;
    if (j->temperature <= 0 && j->p.beam > 1) j->n_hyp = 1;   /* beams grow from the first */
    for (int i = 0; i < j->n_hyp; i++) {
        kv_seq_truncate(&j->hyps[i].self, 0);
        j->hyps[i].n = 0;
        j->hyps[i].logprob = 0;
        j->hyps[i].done = false;
    }
    build_prompt(j);
    j->state = JOB_PROMPT;
}

static kvlm_err start_window(kvlm_wjob *j, char *err, size_t errlen)
{
    kvlm_whisper *w = j->w;
    const whisper_hparams *hp = &w->m->hp;
    kvlm_transcribe_stats *st = &j->t->stats;
    const int64_t T = WHISPER_N_FRAMES;
    j->segment_size = j->content_frames - j->seek < T ? j->content_frames - j->seek : T;
    for (int64_t c = 0; c < hp->n_mels; c++)        /* win[c][0, 3000): frames [seek, seek + size), then 0 */
        for (int64_t f = 0; f < T; f++)
            j->win[c * T + f] = f < j->segment_size ? j->mel[c * j->n_frames + j->seek + f] : 0.0f;
    double t0 = clock_now_s();
    whisper_enc *en = &w->enc;
    const double c0 = en->t_conv, p0 = en->t_proj, a0 = en->t_attn, f0 = en->t_ffn;
    kvlm_err e = whisper_encode(en, w->threads, j->win, j->enc_out, err, errlen);
    if (e) return e;
    st->t_encode_s += clock_now_s() - t0;
    st->t_enc_conv_s += en->t_conv - c0;
    st->t_enc_proj_s += en->t_proj - p0;
    st->t_enc_attn_s += en->t_attn - a0;
    st->t_enc_ffn_s += en->t_ffn - f0;
    st->n_windows++;
    st->n_enc_positions += hp->n_audio_ctx;
    t0 = clock_now_s();
    kv_seq_truncate(&j->cross, 0);
    if ((e = whisper_cross_fill(&w->enc, w->threads, j->enc_out, &j->cross, w->cross_xq, w->cross_kv, err, errlen)))
        return e;
    st->t_cross_s += clock_now_s() - t0;
    st->n_cross_positions += hp->n_audio_ctx;
    j->attempt = 0;
    j->have_best = false;
    start_attempt(j);
    return KVLM_OK;
}

static kvlm_err push_tokens(kvlm_wjob *j, const kvlm_token *t, int64_t n)
{
    if (j->n_all + n > j->cap_all) {
        int64_t cap = j->cap_all ? j->cap_all * 2 : 1024;
        while (cap < j->n_all + n) cap *= 2;
        kvlm_token *a = realloc(j->all_toks, (size_t)cap * sizeof *a);
        if (!a) return KVLM_ERR_NOMEM;
        j->all_toks = a;
        j->cap_all = cap;
    }
    memcpy(j->all_toks + j->n_all, t, (size_t)n * sizeof *t);
    j->n_all += n;
    return KVLM_OK;
}

/* Appends a segment of tokens [0, n) with times t0, t1 (seconds); skips one whose
 * text is empty or whose times are equal, as faster-whisper does. */
static kvlm_err add_segment(kvlm_wjob *j, const kvlm_token *toks, const float *probs, int64_t n, double t0,
                            double t1, float avg, float cr)
{
    kvlm_transcript *t = j->t;
    char *text = NULL;
    char err[128];
    if (tok_whisper_decode(j->w->m->tok, toks, (size_t)n, &text, err, sizeof err)) return KVLM_ERR_NOMEM;
    bool blank = true;
    for (const char *c = text; *c; c++) blank &= *c == ' ' || *c == '\t' || *c == '\n' || *c == '\r';
    if (blank || t0 == t1) {
        free(text);
        return KVLM_OK;
    }
    if (t->n_segments == j->cap_seg) {
        const int64_t cap = j->cap_seg ? 2 * j->cap_seg : 16;
        kvlm_segment *s = realloc(t->segments, (size_t)cap * sizeof *s);
        if (!s) {
            free(text);
            return KVLM_ERR_NOMEM;
        }
        t->segments = s;
        j->cap_seg = cap;
    }
    kvlm_segment *s = &t->segments[t->n_segments];
    *s = (kvlm_segment){ .t0 = t0, .t1 = t1, .text = text, .n_tokens = n, .avg_logprob = avg,
                         .compression_ratio = cr, .no_speech_prob = j->no_speech_prob,
                         .temperature = j->best_temp, .window = t->stats.n_windows - 1 };
    s->tokens = malloc((size_t)(n ? n : 1) * sizeof *s->tokens);
    s->token_probs = malloc((size_t)(n ? n : 1) * sizeof *s->token_probs);
    if (!s->tokens || !s->token_probs) {
        free(s->tokens);
        free(s->token_probs);
        free(text);
        return KVLM_ERR_NOMEM;
    }
    memcpy(s->tokens, toks, (size_t)n * sizeof *toks);
    memcpy(s->token_probs, probs, (size_t)n * sizeof *probs);
    t->n_segments++;
    if (push_tokens(j, toks, n)) return KVLM_ERR_NOMEM;
    if (j->p.on_segment) j->p.on_segment(j->p.user, s);
    return KVLM_OK;
}

/* faster-whisper's _split_segments_by_timestamps over the chosen tokens, then seek. */
static kvlm_err finish_window(kvlm_wjob *j)
{
    const int64_t tb = j->w->m->sp->timestamp_begin;
    const kvlm_token *tok = j->best_toks;
    const float *pr = j->best_probs;
    const int64_t n = j->best_n;
    const double off = (double)j->seek * 0.01, prec = 0.02, dur = (double)j->segment_size * 0.01;
    const float avg = j->best_avg, cr = j->best_cr;
    kvlm_err e = KVLM_OK;
    if (j->temperature > 0.5f || !j->p.condition_on_previous_text) j->prompt_reset_since = j->n_all;
    /* no speech: skip the window */
    if (j->no_speech_prob > j->p.no_speech_threshold && !(avg > j->p.logprob_threshold)) {
        j->seek += j->segment_size;
        return KVLM_OK;
    }
    if (!j->p.timestamps) {
        e = add_segment(j, tok, pr, n, off, off + dur, avg, cr);
        j->seek += j->segment_size;
        return e;
    }
    const bool single_end = n >= 2 && tok[n - 2] < tb && tok[n - 1] >= tb;
    int64_t last = 0, n_cons = 0;
    for (int64_t i = 1; i < n; i++) {
        if (!(tok[i] >= tb && tok[i - 1] >= tb)) continue;
        n_cons++;
        e = add_segment(j, tok + last, pr + last, i - last, off + (tok[last] - tb) * prec,
                        off + (tok[i - 1] - tb) * prec, avg, cr);
        if (e) return e;
        last = i;
    }
    if (n_cons) {
        if (single_end) {
            e = add_segment(j, tok + last, pr + last, n - last, off + (tok[last] - tb) * prec,
                            off + (tok[n - 1] - tb) * prec, avg, cr);
            j->seek += j->segment_size;
        } else {
            j->seek += (tok[last - 1] - tb) * 2;
        }
        return e;
    }
    double d = dur;
    for (int64_t i = n - 1; i >= 0; i--)
        if (tok[i] >= tb) {
            if (tok[i] != tb) d = (tok[i] - tb) * prec;
            break;
        }
    e = add_segment(j, tok, pr, n, off, off + d, avg, cr);
    j->seek += j->segment_size;
    return e;
}

/* An attempt has ended: choose its result, judge it, fall back or finish the window. */
static kvlm_err end_attempt(kvlm_wjob *j, char *err, size_t errlen)
{
    /* the best finished hypothesis by length-normalised log-probability */
    const hyp *best = NULL;
    double best_score = -INFINITY;
    for (int i = 0; i < j->n_fin; i++) {
        const double s = j->fin[i].logprob / (double)(j->fin[i].n > 0 ? j->fin[i].n : 1);   /* CT2: length penalty 1 */
        if (!best || s > best_score) {
            best = &j->fin[i];
            best_score = s;
        }
    }
    if (!best) return err_set(err, errlen, KVLM_ERR_INVALID, "whisper: an attempt ended with no hypothesis");
    char *text = NULL;
    if (tok_whisper_decode(j->w->m->tok, best->toks, (size_t)best->n, &text, err, errlen)) return KVLM_ERR_NOMEM;
    const char *s = text;                                     /* strip(), as faster-whisper */
    while (*s == ' ') s++;
    char *end = text + strlen(text);
    while (end > s && end[-1] == ' ') *--end = 0;
    const float cr = whisper_compression_ratio(s);
    free(text);
    const float avg = (float)(best->logprob / (double)(best->n + 1));
    bool fallback = cr > j->p.compression_ratio_threshold || avg < j->p.logprob_threshold;
    if (j->no_speech_prob > j->p.no_speech_threshold && avg < j->p.logprob_threshold) fallback = false;
    const bool below_cr = cr <= j->p.compression_ratio_threshold;
    /* keep it if it is the best so far (faster-whisper: among those below the
       compression threshold if any, by average log-probability) */
    if (!j->have_best || (below_cr && !j->best_below_cr) ||
        (below_cr == j->best_below_cr && avg > j->best_avg) || !fallback) {
        memcpy(j->best_toks, best->toks, (size_t)best->n * sizeof *best->toks);
        memcpy(j->best_probs, best->probs, (size_t)best->n * sizeof *best->probs);
        j->best_n = best->n;
        j->best_avg = avg;
        j->best_cr = cr;
        j->best_temp = j->temperature;
        j->best_below_cr = below_cr;
        j->have_best = true;
    }
    const float next_t = j->p.temperature + (float)(j->attempt + 1) * j->p.temperature_inc;
    if (fallback && j->p.temperature_inc > 0 && next_t <= 1.0f + 1e-6f) {
        j->attempt++;
        j->t->stats.n_fallbacks++;
        start_attempt(j);
        return KVLM_OK;
    }
    free_hyps(j->hyps, j->n_hyp);
    free_hyps(j->fin, j->n_fin);
    j->n_hyp = j->n_fin = 0;
    kvlm_err e = finish_window(j);
    if (e) return err_set(err, errlen, e, "out of memory");
    if (j->seek < j->content_frames) j->state = JOB_WINDOW;
    else j->state = JOB_DONE;
    if (j->state == JOB_DONE) kv_seq_truncate(&j->cross, 0);
    return KVLM_OK;
}

/* ---- choosing tokens ---------------------------------------------------------------- */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static kvlm_token argmax(const float *x, int64_t n)
{
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return (kvlm_token)b;
}

/* A draw from softmax(logits / T) (logits already masked). */
static kvlm_token sample(const float *logits, int64_t n, float T, uint64_t *rng, float *tmp)
{
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (tmp[i] = (float)exp((double)(logits[i] - mx) / T));
    const double u = (double)(rng_next(rng) >> 11) * 0x1.0p-53 * sum;
    double acc = 0;
    int64_t last = 0;
    for (int64_t i = 0; i < n; i++) {
        if (tmp[i] <= 0) continue;
        acc += tmp[i];
        last = i;
        if (acc > u) return (kvlm_token)i;
    }
    return (kvlm_token)last;
}

static void hyp_finish(kvlm_wjob *j, hyp *h)
{
    hyp *f = &j->fin[j->n_fin++];
    memcpy(f->toks, h->toks, (size_t)h->n * sizeof *h->toks);
    memcpy(f->probs, h->probs, (size_t)h->n * sizeof *h->probs);
    f->n = h->n;
    f->logprob = h->logprob;
    f->done = true;
}

/* Greedy and sampling: each live hypothesis takes its token from its row. */
static void choose_each(kvlm_wjob *j, float *const *rows)
{
    const int64_t V = j->w->m->hp.n_vocab, eot = j->w->m->sp->eot;
    for (int i = 0; i < j->n_hyp; i++) {
        hyp *h = &j->hyps[i];
        if (h->done) continue;
        float *lg = rows[i];
        const whisper_rules r = { j->w->m, j->p.timestamps, 50 };
        whisper_rules_apply(&r, lg, h->toks, h->n);
        kvlm_token t = j->temperature > 0 ? sample(lg, V, j->temperature, &j->rng, j->w->probs)
                                          : argmax(lg, V);
        whisper_log_softmax(lg, lg, V);
        h->logprob += lg[t];
        if (t == eot || h->n + 1 >= j->max_new) {
            if (t != eot) {
                h->probs[h->n] = expf(lg[t]);
                h->toks[h->n++] = t;
            }
            h->done = true;
            hyp_finish(j, h);
        } else {
            h->probs[h->n] = expf(lg[t]);
            h->toks[h->n++] = t;
        }
    }
}

typedef struct cand { double score; int parent; kvlm_token tok; float lp; } cand;

static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->parent != y->parent) return x->parent - y->parent;
    return x->tok - y->tok;
}

/* Beam search as CTranslate2's BeamSearch (patience 1, length penalty 1): the 2B best
 * (beam, token) candidates by summed log-probability; among the first B, an EOT (or
 * the last allowed step) registers a finished hypothesis and its place goes to the
 * next non-EOT candidate of the second B; the others continue, forking their
 * parents' self sequences. The search ends with B finished hypotheses. */
static kvlm_err choose_beams(kvlm_wjob *j, float *const *rows, char *err, size_t errlen)
{
    const int B = j->p.beam, NC = 2 * B;
    const int64_t V = j->w->m->hp.n_vocab, eot = j->w->m->sp->eot;
    cand c[WH_MAX_BEAM * 2 * WH_MAX_BEAM];
    int nc = 0;
    for (int i = 0; i < j->n_hyp; i++) {
        hyp *h = &j->hyps[i];
        float *lg = rows[i];
        const whisper_rules r = { j->w->m, j->p.timestamps, 50 };
        whisper_rules_apply(&r, lg, h->toks, h->n);
        whisper_log_softmax(lg, lg, V);
        const int base = nc;                       /* this row's NC best, by insertion */
        for (int64_t v = 0; v < V; v++) {
            if (lg[v] == -INFINITY) continue;
            const cand x = { h->logprob + lg[v], i, (kvlm_token)v, lg[v] };
            int at = nc;
            if (nc - base == NC) {
                if (cand_cmp(&x, &c[nc - 1]) >= 0) continue;
                at = nc - 1;
            } else {
                nc++;
            }
            while (at > base && cand_cmp(&x, &c[at - 1]) < 0) {
                c[at] = c[at - 1];
                at--;
            }
            c[at] = x;
        }
    }
    qsort(c, (size_t)nc, sizeof *c, cand_cmp);
    if (nc > NC) nc = NC;
    hyp *next = j->next;
    int n_next = 0, sec = B;
    kvlm_err e = KVLM_OK;
    for (int k = 0; k < B && k < nc && !e; k++) {
        int use = k;
        const hyp *par = &j->hyps[c[k].parent];
        if (c[k].tok == eot || par->n + 1 >= j->max_new) {
            if (j->n_fin < 2 * WH_MAX_HYP) {
                hyp tmp;
                memcpy(tmp.toks, par->toks, (size_t)par->n * sizeof *par->toks);
                memcpy(tmp.probs, par->probs, (size_t)par->n * sizeof *par->probs);
                tmp.n = par->n;
                tmp.logprob = c[k].score;
                if (c[k].tok != eot) {
                    tmp.probs[tmp.n] = expf(c[k].lp);
                    tmp.toks[tmp.n++] = c[k].tok;
                }
                hyp_finish(j, &tmp);
            }
            use = -1;
            for (int q = sec; q < nc; q++)
                if (c[q].tok != eot) {
                    use = q;
                    sec = q + 1;
                    break;
                }
            if (use < 0) continue;
            par = &j->hyps[c[use].parent];
            if (par->n + 1 >= j->max_new) continue;
        }
        hyp *h = &next[n_next++];
        kv_seq_init(&h->self, &j->w->kp);
        if ((e = kv_seq_fork(&h->self, &par->self, err, errlen))) break;
        memcpy(h->toks, par->toks, (size_t)par->n * sizeof *h->toks);
        memcpy(h->probs, par->probs, (size_t)par->n * sizeof *h->probs);
        h->n = par->n;
        h->probs[h->n] = expf(c[use].lp);
        h->toks[h->n++] = c[use].tok;
        h->logprob = c[use].score;
        h->done = false;
    }
    free_hyps(j->hyps, j->n_hyp);
    for (int i = 0; i < n_next; i++) j->hyps[i] = next[i];   /* the block tables move with the structs */
    j->n_hyp = n_next;
    if (e) return e;
    if (j->n_fin >= B)                                /* patience 1: B finished end the search */
        for (int i = 0; i < j->n_hyp; i++) j->hyps[i].done = true;
    return KVLM_OK;
}

/* ---- the step ------------------------------------------------------------------------ */
static kvlm_err grow_first_row(kvlm_whisper *w, int n)
{
    int64_t *f = realloc(w->first_row, (size_t)n * sizeof *f);
    if (!f) return KVLM_ERR_NOMEM;
    w->first_row = f;
    w->first_row_cap = n;
    return KVLM_OK;
}

static kvlm_err grow_logits(kvlm_whisper *w, int64_t rows)
{
    float *l = realloc(w->logits, (size_t)rows * (size_t)w->m->hp.n_vocab * sizeof(float));
    if (!l) return KVLM_ERR_NOMEM;
    w->logits = l;
    w->logits_rows = rows;
    return KVLM_OK;
}

static bool attempt_live(const kvlm_wjob *j)
{
    for (int i = 0; i < j->n_hyp; i++)
        if (!j->hyps[i].done) return true;
    return false;
}

kvlm_err kvlm_wjob_step(kvlm_whisper *w, kvlm_wjob *const *jobs, int n_jobs, char *err, size_t errlen)
{
    const whisper_hparams *hp = &w->m->hp;
    char msg[256];
    /* windows to open: encoder and cross K/V (each job alone) */
    for (int k = 0; k < n_jobs; k++) {
        kvlm_wjob *j = jobs[k];
        if (j->state != JOB_WINDOW) continue;
        kvlm_err e = start_window(j, msg, sizeof msg);
        if (e) job_fail(j, e, msg);
    }
    /* the decoder batch: every live hypothesis of every job, run in calls of at
       most WH_BATCH tokens (a hypothesis is never split: one is <= n_text_ctx) */
    int64_t rows_needed = 0;
    for (int k = 0; k < n_jobs; k++)
        if (jobs[k]->state == JOB_PROMPT || jobs[k]->state == JOB_STEP) rows_needed += jobs[k]->n_hyp + 1;
    if ((rows_needed > w->logits_rows && grow_logits(w, rows_needed)) ||
        (n_jobs > w->first_row_cap && grow_first_row(w, n_jobs)))
        return err_set(err, errlen, KVLM_ERR_NOMEM, "whisper: out of memory for a decoder step");
    int64_t *first_row = w->first_row;
    int64_t n_tok = 0, n_seg = 0, n_out = 0, out0 = 0;
    const double t0 = clock_now_s();
    bool ran = false;
    for (int k = 0; k < n_jobs; k++) {
        kvlm_wjob *j = jobs[k];
        first_row[k] = -1;
        if (j->state != JOB_PROMPT && j->state != JOB_STEP) continue;
        if (j->p.no_cross_cache && j->state == JOB_STEP) {     /* the baseline: cross K/V again */
            const double tc = clock_now_s();
            kv_seq_truncate(&j->cross, 0);
            kvlm_err e = whisper_cross_fill(&w->enc, w->threads, j->enc_out, &j->cross, w->cross_xq, w->cross_kv, msg,
                                            sizeof msg);
            if (e) {
                job_fail(j, e, msg);
                continue;
            }
            j->t->stats.t_cross_s += clock_now_s() - tc;
            j->t->stats.n_cross_positions += hp->n_audio_ctx;
        }
        first_row[k] = n_out;
        for (int i = 0; i < j->n_hyp; i++) {
            hyp *h = &j->hyps[i];
            if (h->done) continue;
            /* tokens to run: the prompt (first step), or the last token; no-kv-cache: all */
            int64_t n = 1, from_prompt = 0;
            if (j->state == JOB_PROMPT || j->p.no_kv_cache) {
                kv_seq_truncate(&h->self, 0);
                n = j->n_prompt + h->n;
                from_prompt = 1;
            }
            if (n_tok + n > WH_BATCH) {               /* full: run what is gathered */
                whisper_decode(&w->dec, w->threads, w->segs, n_seg, w->batch, w->rows + out0, n_out - out0,
                               w->logits + out0 * hp->n_vocab);
                n_tok = n_seg = 0;
                out0 = n_out;
            }
            kvlm_err e = kv_seq_reserve(&h->self, n, msg, sizeof msg);
            if (e) {
                job_fail(j, e, msg);
                first_row[k] = -1;
                break;
            }
            if (from_prompt) {
                memcpy(w->batch + n_tok, j->prompt, (size_t)j->n_prompt * sizeof(kvlm_token));
                memcpy(w->batch + n_tok + j->n_prompt, h->toks, (size_t)h->n * sizeof(kvlm_token));
            } else {
                w->batch[n_tok] = h->toks[h->n - 1];
            }
            if (j->state == JOB_PROMPT && i == 0) w->rows[n_out++] = n_tok + j->sot_index;   /* no-speech row */
            w->rows[n_out++] = n_tok + n - 1;
            w->segs[n_seg++] = (whisper_seg){ &h->self, &j->cross, n };
            n_tok += n;
            j->t->stats.n_dec_positions += n;
        }
    }
    if (n_seg > 0) {
        whisper_decode(&w->dec, w->threads, w->segs, n_seg, w->batch, w->rows + out0, n_out - out0,
                       w->logits + out0 * hp->n_vocab);
        ran = true;
    }
    ran |= out0 > 0;
    const double dt = clock_now_s() - t0;
    /* each job reads its rows */
    for (int k = 0; k < n_jobs; k++) {
        kvlm_wjob *j = jobs[k];
        if ((j->state != JOB_PROMPT && j->state != JOB_STEP) || first_row[k] < 0) continue;
        kvlm_transcribe_stats *st = &j->t->stats;
        int64_t r = first_row[k];
        float *rows[WH_MAX_HYP];
        if (j->state == JOB_PROMPT) {
            j->no_speech_prob = whisper_prob_of(w->logits + r * hp->n_vocab, hp->n_vocab, w->m->sp->nocaptions);
            r++;
        }
        int nr = 0;
        for (int i = 0; i < j->n_hyp; i++)
            if (!j->hyps[i].done) rows[nr++] = w->logits + (r++) * hp->n_vocab;
        if (j->p.step_times && ran) {
            if (st->n_steps == j->cap_steps) {
                const int64_t cap = j->cap_steps ? 2 * j->cap_steps : 256;
                double *s = realloc(st->step_ms, (size_t)cap * sizeof *s);
                if (s) {
                    st->step_ms = s;
                    j->cap_steps = cap;
                }
            }
            if (st->n_steps < j->cap_steps) st->step_ms[st->n_steps] = dt * 1e3;
        }
        st->n_steps++;
        st->t_decode_s += dt;
        stats_kv(j);
        kvlm_err e = KVLM_OK;
        if (j->temperature <= 0 && j->p.beam > 1) e = choose_beams(j, rows, msg, sizeof msg);
        else choose_each(j, rows);
        if (e) {
            job_fail(j, e, msg);
            continue;
        }
        j->state = JOB_STEP;
        if (!attempt_live(j) && (e = end_attempt(j, msg, sizeof msg))) job_fail(j, e, msg);
    }
    (void)err;
    (void)errlen;
    return KVLM_OK;
}

/* ---- one transcription --------------------------------------------------------------- */
kvlm_err kvlm_transcribe(kvlm_whisper *w, const float *samples, int64_t n, const kvlm_transcribe_params *params,
                         kvlm_transcript **out, char *err, size_t errlen)
{
    *out = NULL;
    kvlm_wjob *j;
    kvlm_err e = kvlm_wjob_create(w, samples, n, params, &j, err, errlen);
    if (e) return e;
    while (!kvlm_wjob_done(j))
        if ((e = kvlm_wjob_step(w, &j, 1, err, errlen))) break;
    if (!e) e = kvlm_wjob_error(j, err, errlen);
    if (!e && !(*out = kvlm_wjob_take(j))) e = err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory");
    kvlm_wjob_free(j);
    return e;
}
