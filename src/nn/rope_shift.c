/* rope_shift.c - see rope_shift.h. */
#include "nn/rope_shift.h"
#include "core/err.h"
#include "nn/forward.h"
#include "nn/ops.h"

#include <string.h>

void rope_shift_init(rope_shift *r, const kvlm_model *m, kvlm_kv_type type_k)
{
    memset(r, 0, sizeof *r);
    r->n_head_kv = m->hp.n_head_kv;
    r->head_dim = m->hp.head_dim;
    r->theta = m->hp.rope_theta;
    r->hadamard = forward_rotates(type_k, m->hp.head_dim);
}

void rope_shift_k(void *user, int64_t il, float *k, int64_t delta)
{
    rope_shift *r = user;
    (void)il;                                         /* llama: one theta for every layer */
    if (!r->have_cs || r->delta != delta) {           /* a shift moves every row by one delta */
        ops_rope_table(r->cs, delta, r->head_dim, r->theta);
        r->delta = delta;
        r->have_cs = true;
    }
    if (r->hadamard) ops_hadamard(k, r->n_head_kv, r->head_dim);   /* back from H R(p) k */
    ops_rope(k, r->cs, r->n_head_kv, r->head_dim);    /* k: [n_head_kv][head_dim] */
    if (r->hadamard) ops_hadamard(k, r->n_head_kv, r->head_dim);
}

kvlm_err rope_shift_check(const kvlm_model *m, char *err, size_t errlen)
{
    if (m->hp.n_swa > 0)
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED,
                       "context shift is not supported for %s: its sliding-window layers keep only their "
                       "window and need no shift, and its global layers attend the whole context",
                       m->arch);
    if (m->arch_id != MODEL_ARCH_LLAMA)   /* the re-rotation is llama's pair layout */
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "context shift is not supported for %s", m->arch);
    return KVLM_OK;
}
