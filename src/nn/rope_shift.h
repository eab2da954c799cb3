/* rope_shift.h - moving a cached K to another position: the RoPE side of a context
 * shift (kv/kv_shift.h does the bytes and calls rope_shift_k for each row).
 * Room: nn. May touch: nn/ops, nn/forward (which K types are stored rotated), model.
 *
 * RoPE rotates each pair (2i, 2i+1) of a head by pos * theta_i (nn/ops.h), and
 * rotations compose: R(p + delta) = R(delta) R(p). So a K stored at position p is
 * moved to p + delta by rotating it by delta * theta_i, with the angles built as
 * ops_rope_table builds them (delta a position like any other, negative here). In
 * exact arithmetic that is the K computed at p + delta from the same hidden state;
 * in float it differs by the rounding of two rotations instead of one (and the
 * cache's own rounding: kv_shift.h).
 * A K type stored in the Hadamard basis (forward_rotates: q8, q4) holds H R(p) k;
 * H is orthonormal and its own inverse, so the row is taken back with H, rotated,
 * and put into the basis again: H R(delta) H (H R(p) k) = H R(p + delta) k.
 *
 * Only models whose layers all attend the whole context can be shifted: a sliding-
 * window layer (Gemma 2 and 3: five local layers of 512 or 1024 positions for each
 * global one) keeps only its window, which needs no shift, while its global layers
 * would, and a shift of one kind of layer alone is not what a context shift is.
 * rope_shift_check refuses them. */
#ifndef KVLM_NN_ROPE_SHIFT_H
#define KVLM_NN_ROPE_SHIFT_H

#include <stdbool.h>
#include <stdint.h>
#include "kvlm.h"
#include "model/model.h"

enum { ROPE_SHIFT_MAX_HEAD_DIM = 512 };   /* model.c refuses larger heads */

typedef struct rope_shift {
    int64_t n_head_kv, head_dim;
    float theta;
    bool hadamard;              /* K is stored in the Hadamard basis */
    int64_t delta;              /* the angles cs holds */
    bool have_cs;
    float cs[ROPE_SHIFT_MAX_HEAD_DIM];   /* [head_dim / 2][2] cos, sin of delta * theta_i */
} rope_shift;

/* The rotation for K of type type_k of model m's geometry. */
void rope_shift_init(rope_shift *r, const kvlm_model *m, kvlm_kv_type type_k);

/* kv_shift_rotate_fn (user: a rope_shift): k: [n_head_kv][head_dim] f32 of layer il,
 * as the cache stores it, from position p to p + delta. */
void rope_shift_k(void *user, int64_t il, float *k, int64_t delta);

/* KVLM_OK if m's K can be shifted (every layer attends the whole context);
 * KVLM_ERR_UNSUPPORTED with the reason in err otherwise. */
kvlm_err rope_shift_check(const kvlm_model *m, char *err, size_t errlen);

#endif
