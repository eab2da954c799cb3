/* whisper_rules.c - see whisper_rules.h. */
#include "engine/whisper_rules.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static void disable(float *logits, int64_t lo, int64_t hi)   /* [lo, hi) */
{
    for (int64_t i = lo; i < hi; i++) logits[i] = -INFINITY;
}

void whisper_rules_apply(const whisper_rules *r, float *logits, const kvlm_token *sampled, int64_t n_sampled)
{
    const whisper_model *m = r->m;
    const tok_whisper_specials *sp = m->sp;
    const int64_t V = m->hp.n_vocab;
    for (int64_t i = 0; i < m->cfg.n_suppress; i++) logits[m->cfg.suppress_ids[i]] = -INFINITY;
    if (n_sampled == 0)
        for (int64_t i = 0; i < m->cfg.n_suppress_begin; i++) logits[m->cfg.suppress_ids_begin[i]] = -INFINITY;
    if (!r->timestamps) return;

    const int64_t tb = sp->timestamp_begin, te = V - 1, eot = sp->eot;
    logits[sp->notimestamps] = -INFINITY;
    bool check_prob = false;
    if (n_sampled == 0) {
        disable(logits, 0, tb);                                   /* a timestamp first */
        disable(logits, tb + r->max_initial_timestamp_index + 1, te + 1);
    } else {
        const kvlm_token last = sampled[n_sampled - 1];
        if (last >= tb) {
            const kvlm_token pen = n_sampled > 1 ? sampled[n_sampled - 2] : last;
            if (pen >= tb) disable(logits, tb, te + 1);          /* a pair closed: text next */
            else {
                disable(logits, 0, eot);                          /* a pair opened: timestamp or EOT */
                check_prob = true;
            }
        } else {
            check_prob = true;
        }
        for (int64_t t = n_sampled - 1; t >= 0; t--)              /* timestamps never decrease */
            if (sampled[t] >= tb) {
                disable(logits, tb, sampled[t]);
                break;
            }
    }
    if (!check_prob) return;
    /* sample a timestamp when their total probability beats every text token's */
    float mx = -INFINITY;
    for (int64_t i = 0; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    if (mx == -INFINITY) return;
    double sum = 0, sum_ts = 0;
    for (int64_t i = 0; i < V; i++) {
        const double e = exp((double)(logits[i] - mx));
        sum += e;
        if (i >= tb) sum_ts += e;
    }
    const double lse = log(sum);
    float max_text = -INFINITY;
    for (int64_t i = 0; i < tb; i++) max_text = logits[i] > max_text ? logits[i] : max_text;
    const double ts_logprob = sum_ts > 0 ? log(sum_ts) - lse : -INFINITY;
    const double text_logprob = (double)(max_text - mx) - lse;
    if (ts_logprob > text_logprob) disable(logits, 0, tb);
}

void whisper_log_softmax(float *out, const float *x, int64_t n)
{
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += exp((double)(x[i] - mx));
    const float lse = mx + (float)log(sum);
    for (int64_t i = 0; i < n; i++) out[i] = x[i] - lse;
}

float whisper_prob_of(const float *x, int64_t n, int64_t i)
{
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    double sum = 0;
    for (int64_t j = 0; j < n; j++) sum += exp((double)(x[j] - mx));
    return (float)(exp((double)(x[i] - mx)) / sum);
}

float whisper_compression_ratio(const char *text)
{
    const size_t n = strlen(text);
    if (!n) return 0;
    uLongf cap = compressBound((uLong)n);
    Bytef *buf = malloc(cap);
    if (!buf) return 0;
    float r = 0;
    if (compress2(buf, &cap, (const Bytef *)text, (uLong)n, Z_DEFAULT_COMPRESSION) == Z_OK && cap > 0)
        r = (float)n / (float)cap;
    free(buf);
    return r;
}
