/* whisper_rules.h - Whisper's decoding rules on one row of logits, as CTranslate2's
 * WhisperReplica::generate applies them (src/models/whisper.cc): the suppressed
 * ids of config.json at every step, suppress_ids_begin at the first, and with
 * timestamps the ApplyTimestampRules processor. Then log-softmax, and the
 * compression ratio faster-whisper's temperature fallback tests.
 * Room: engine. May touch: model/whisper_model (ids), zlib, libm. Pure functions.
 *
 *   logits: [n_vocab] f32, modified in place (disabled ids become -INFINITY)
 *   sampled: [n_sampled] the tokens generated so far in this window (prompt excluded) */
#ifndef KVLM_ENGINE_WHISPER_RULES_H
#define KVLM_ENGINE_WHISPER_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"
#include "model/whisper_model.h"

typedef struct whisper_rules {
    const whisper_model *m;
    bool timestamps;
    int64_t max_initial_timestamp_index;   /* 50: the first timestamp is at most 1.00 s */
} whisper_rules;

void whisper_rules_apply(const whisper_rules *r, float *logits, const kvlm_token *sampled, int64_t n_sampled);

/* out[i] = x[i] - logsumexp(x)   (-INFINITY stays)   x, out: [n] (may alias) */
void whisper_log_softmax(float *out, const float *x, int64_t n);

/* softmax(x)[i] of the raw row (the no-speech probability of <|nocaptions|>) */
float whisper_prob_of(const float *x, int64_t n, int64_t i);

/* len(text) / len(zlib.compress(text)), as faster-whisper's get_compression_ratio;
 * 0 for an empty text. */
float whisper_compression_ratio(const char *text);

#endif
