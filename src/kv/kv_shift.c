/* kv_shift.c - see kv_shift.h for the design. The order of work:
 *
 *   check      units, then a dry run of the allocations against kv_pool_available
 *   residual   KIVI: the current group's f32 K rotated in place
 *   blocks     new blocks [kb, nb_new) from the last to the first, a unit at a time
 *              (a KIVI K span of 4 blocks, else 1): place (in place, or copy and
 *              release the source), then re-encode the unit's moved K
 *   release    the dropped old blocks, the last first
 *
 * old[i] is the block table before the shift; the new table is written into
 * s->blocks as the units are placed (new block j comes from old[j + d], j + d >= j,
 * so each source is read from old[], never from an overwritten entry). */
#include "kv/kv_shift.h"
#include "core/err.h"
#include "kern/attn.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum { BT = KV_BLOCK_TOKENS };

static bool writable(const kv_pool *p, kv_block b) { return kv_pool_refcount(p, b) == 1 && !kv_pool_is_published(p, b); }

/* Positions a KIVI pool's keep and discard come in (its residual group), else 1 and 16. */
static int64_t keep_unit(const kv_pool *p) { return p->res_tokens > 0 ? p->res_tokens : 1; }
static int64_t drop_unit(const kv_pool *p) { return p->res_tokens > 0 ? p->res_tokens : BT; }

kvlm_err kv_shift_plan(const kv_pool *p, int64_t n_pos, int64_t n_keep, int64_t *keep, int64_t *discard,
                       char *err, size_t errlen)
{
    const int64_t ku = keep_unit(p), g = drop_unit(p);
    *keep = *discard = 0;
    if (n_keep < 0) n_keep = 0;
    const int64_t k = (n_keep + ku - 1) / ku * ku, left = n_pos - k;
    if (left < g)
        return err_set(err, errlen, KVLM_ERR_CONTEXT_FULL,
                       "context shift: keeping %lld of %lld positions leaves fewer than %lld to drop", (long long)k,
                       (long long)n_pos, (long long)g);
    int64_t d = (left / 2 + g / 2) / g * g;           /* llama.cpp: left / 2; here to the nearest unit */
    if (d < g) d = g;
    if (d > left / g * g) d = left / g * g;
    *keep = k;
    *discard = d;
    return KVLM_OK;
}

typedef struct shift_job {
    kv_seq *s;
    kv_pool *p;
    int64_t keep, discard, kb, r, d, n_new, nb, nb_new, n_ch, gs_new, span;
    kv_block *old;             /* [nb] the table before */
    bool *consumed;            /* [nb] old[i] released or placed in the new table */
    bool *placed;              /* [nb_new] s->blocks[j] holds the new block j */
    float *row;                /* [n_ch] */
    float *kspan;              /* KIVI K: [KV_KIVI_SPAN][n_ch][16] one span's K in f32 */
    kv_shift_rotate_fn rotate;
    void *user;
} shift_job;

/* K of slot `slot` of block b, layer il, as attention reads it: row [n_ch] f32.
 * KIVI K: b is the first block of its span and j = block offset * 16 + slot. */
static void k_row(const shift_job *J, const kv_block *b, int64_t nb, int64_t il, int64_t j, float *row)
{
    const void *kb[KV_KIVI_SPAN];
    for (int64_t i = 0; i < nb; i++) kb[i] = kv_pool_k(J->p, b[i], il);
    for (int64_t c = 0; c < J->n_ch; c++) row[c] = attn_k_value(kb, J->n_ch, j, c, (int)J->p->type_k);
}

/* V of slot `slot` of layer il: src's bytes into dst, the row and its scales
 * (q8/q4: d [n_ch / 32][16]; KIVI: d, m [16][n_ch / 64]; kv_pool.h, kern/attn.h) */
static void v_slot_copy(const kv_pool *p, kv_block dst, kv_block src, int64_t il, int64_t slot)
{
    memcpy(kv_pool_v(p, dst, il, slot), kv_pool_v(p, src, il, slot), p->row_bytes);
    const int64_t n_ch = p->n_head_kv * p->head_dim;
    uint16_t *dd = (uint16_t *)kv_pool_v(p, dst, il, BT);            /* what follows the 16 rows */
    const uint16_t *sd = (const uint16_t *)kv_pool_v(p, src, il, BT);
    if (p->type_v == KVLM_KV_Q8 || p->type_v == KVLM_KV_Q4)
        for (int64_t g = 0; g < n_ch / KV_Q8_GROUP; g++) dd[g * BT + slot] = sd[g * BT + slot];
    if (kv_type_is_kivi(p->type_v)) {
        const int64_t ng = n_ch / ATTN_KIVI_VGROUP;
        for (int64_t g = 0; g < ng; g++) {
            dd[slot * ng + g] = sd[slot * ng + g];                      /* d [16][ng] */
            dd[BT * ng + slot * ng + g] = sd[BT * ng + slot * ng + g];  /* m [16][ng] */
        }
    }
}

/* The f32 block of the KIVI residual holding new position pos (>= gs_new) of layer il:
 * K [n_ch][16] then V [16][n_ch] (kv_seq.h). */
static float *res_block(const shift_job *J, int64_t il, int64_t pos)
{
    const size_t bf = kv_seq_stage_block_floats(J->p);
    return J->s->res + ((size_t)il * (size_t)(J->p->res_tokens / BT) + (size_t)((pos - J->gs_new) / BT)) * bf;
}

/* KIVI: the current group's K, [gs_new, n_new), rotated in the residual. The
 * residual's positions map one to one: discard is a multiple of R. */
static void rotate_residual(shift_job *J)
{
    for (int64_t il = 0; il < J->p->n_layer; il++)
        for (int64_t pos = J->gs_new; pos < J->n_new; pos++) {   /* blk: K [n_ch][16] */
            float *blk = res_block(J, il, pos);
            const int64_t slot = pos % BT;
            for (int64_t c = 0; c < J->n_ch; c++) J->row[c] = blk[c * BT + slot];
            J->rotate(J->user, il, J->row, -J->discard);
            for (int64_t c = 0; c < J->n_ch; c++) blk[c * BT + slot] = J->row[c];
        }
}

/* The dry run: the same allocations and releases, in the same order, as place_unit. */
static bool fits(const shift_job *J, int64_t first)
{
    int64_t avail = kv_pool_available(J->p);
    for (int64_t j1 = J->nb_new; j1 > first;) {
        const int64_t j0 = (j1 - 1) / J->span * J->span > first ? (j1 - 1) / J->span * J->span : first;
        for (int64_t j = j0; j < j1; j++) {
            const bool boundary = J->r > 0 && j == J->kb;
            const kv_block keep_src = boundary ? J->old[J->kb] : J->old[j + J->d];
            if (!writable(J->p, keep_src) && --avail < 0) return false;
            const kv_block released = J->old[j + J->d];   /* boundary: the moved slots' source */
            if ((boundary || !writable(J->p, keep_src)) && kv_pool_refcount(J->p, released) == 1) avail++;
        }
        j1 = j0;
    }
    return true;
}

/* b, or a fresh copy of it (b is then the caller's to release). */
static kvlm_err own(shift_job *J, kv_block b, kv_block *out, char *err, size_t errlen)
{
    *out = b;
    if (writable(J->p, b)) return KVLM_OK;
    kvlm_err e = kv_pool_alloc(J->p, out, err, errlen);
    if (e == KVLM_OK) kv_pool_copy(J->p, *out, b);
    return e;
}

static void release_old(shift_job *J, int64_t i)
{
    kv_pool_unref(J->p, J->old[i]);
    J->consumed[i] = true;
}

/* Block j of the new table: placed, K of its moved slots re-encoded (the boundary
 * block here, whole units in encode_unit). */
static kvlm_err place(shift_job *J, int64_t j, char *err, size_t errlen)
{
    kvlm_err e;
    kv_block dst;
    const kv_block src = J->old[j + J->d];
    if (J->r > 0 && j == J->kb) {                     /* slots [0, r) kept, [r, 16) from src */
        if ((e = own(J, J->old[J->kb], &dst, err, errlen))) return e;
        if (dst == J->old[J->kb]) J->consumed[J->kb] = true;   /* else released with the dropped ones */
        J->s->blocks[j] = dst;
        J->placed[j] = true;
        for (int64_t il = 0; il < J->p->n_layer; il++)
            for (int64_t slot = J->r; slot < BT && j * BT + slot < J->n_new; slot++) {
                v_slot_copy(J->p, dst, src, il, slot);
                k_row(J, &src, 1, il, slot, J->row);
                J->rotate(J->user, il, J->row, -J->discard);
                kv_seq_store_k(J->s, il, j * BT + slot, J->row);
            }
        release_old(J, j + J->d);
        return KVLM_OK;
    }
    if ((e = own(J, src, &dst, err, errlen))) return e;
    if (dst == src) J->consumed[j + J->d] = true;
    else release_old(J, j + J->d);
    J->s->blocks[j] = dst;
    J->placed[j] = true;
    return KVLM_OK;
}

/* Re-encodes the K of the moved positions of new blocks [j0, j1) (placed; not the
 * boundary block, done in place()). */
static void encode_unit(shift_job *J, int64_t j0, int64_t j1)
{
    const kv_pool *p = J->p;
    const int64_t p0 = (J->r > 0 && j0 == J->kb ? j0 + 1 : j0) * BT, p1 = j1 * BT < J->n_new ? j1 * BT : J->n_new;
    for (int64_t il = 0; il < p->n_layer; il++) {
        if (!kv_type_is_kivi(p->type_k)) {
            for (int64_t pos = p0; pos < p1; pos++) {
                if (p->res_tokens > 0 && pos >= J->gs_new) {   /* rotated already, in f32 */
                    const float *blk = res_block(J, il, pos);
                    for (int64_t c = 0; c < J->n_ch; c++) J->row[c] = blk[c * BT + pos % BT];
                } else {
                    k_row(J, &J->s->blocks[pos / BT], 1, il, pos % BT, J->row);
                    J->rotate(J->user, il, J->row, -J->discard);
                }
                kv_seq_store_k(J->s, il, pos, J->row);
            }
            continue;
        }
        /* KIVI K: j0 starts a span; only a complete one is in the pool (kv_seq.h) */
        if (j1 - j0 < KV_KIVI_SPAN || p1 < j1 * BT) continue;
        if (p0 >= J->gs_new) {                        /* the current group: from the rotated residual */
            kv_seq_store_k_span(J->s, il, j0, res_block(J, il, p0), kv_seq_stage_block_floats(p));
            continue;
        }
        const size_t bf = (size_t)J->n_ch * BT;       /* kspan: [4][n_ch][16] */
        for (int64_t t = 0; t < KV_KIVI_SPAN * BT; t++) {
            k_row(J, &J->s->blocks[j0], KV_KIVI_SPAN, il, t, J->row);
            J->rotate(J->user, il, J->row, -J->discard);
            float *blk = J->kspan + (size_t)(t / BT) * bf;
            for (int64_t c = 0; c < J->n_ch; c++) blk[c * BT + t % BT] = J->row[c];
        }
        kv_seq_store_k_span(J->s, il, j0, J->kspan, bf);
    }
}

/* After a failed allocation (the dry run rules it out): the sequence keeps its kept
 * full blocks only, consistent, and every other block is released. */
static void fall_back(shift_job *J)
{
    for (int64_t j = J->nb_new - 1; j >= J->kb; j--)
        if (J->placed[j]) kv_pool_unref(J->p, J->s->blocks[j]);
    for (int64_t i = J->nb - 1; i >= J->kb; i--)
        if (!J->consumed[i]) kv_pool_unref(J->p, J->old[i]);
    J->s->n_blocks = J->kb;
    J->s->n_pos = J->kb * BT;
}

kvlm_err kv_shift(kv_seq *s, int64_t keep, int64_t discard, kv_shift_rotate_fn rotate, void *user, char *err,
                  size_t errlen)
{
    kv_pool *p = s->pool;
    if (keep < 0 || discard <= 0 || keep % keep_unit(p) || discard % drop_unit(p) || keep + discard > s->n_pos)
        return err_set(err, errlen, KVLM_ERR_INVALID,
                       "context shift: cannot keep %lld and drop %lld of %lld positions (units of %lld and %lld)",
                       (long long)keep, (long long)discard, (long long)s->n_pos, (long long)keep_unit(p),
                       (long long)drop_unit(p));
    kv_seq_truncate(s, s->n_pos);                     /* blocks reserved past the end go */
    shift_job J = { .s = s, .p = p, .keep = keep, .discard = discard, .kb = keep / BT, .r = keep % BT,
                    .d = discard / BT, .n_new = s->n_pos - discard, .nb = s->n_blocks,
                    .n_ch = p->n_head_kv * p->head_dim, .span = kv_pool_span(p), .rotate = rotate, .user = user };
    J.nb_new = (J.n_new + BT - 1) / BT;
    J.gs_new = p->res_tokens > 0 ? kv_seq_group_start(p, J.n_new) : J.n_new;
    /* nothing moves (n_new == keep): a partly kept block stays as it is */
    const int64_t first = J.n_new > keep ? J.kb : J.nb_new;
    J.old = malloc((size_t)J.nb * sizeof *J.old);
    J.consumed = calloc((size_t)J.nb, sizeof *J.consumed);
    J.placed = calloc((size_t)(J.nb_new > 0 ? J.nb_new : 1), sizeof *J.placed);
    J.row = malloc((size_t)J.n_ch * sizeof *J.row);
    if (kv_type_is_kivi(p->type_k)) J.kspan = malloc((size_t)KV_KIVI_SPAN * (size_t)J.n_ch * BT * sizeof *J.kspan);
    kvlm_err e = KVLM_OK;
    if (!J.old || !J.consumed || !J.placed || !J.row || (kv_type_is_kivi(p->type_k) && !J.kspan)) {
        e = err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory for a context shift");
        goto done;
    }
    memcpy(J.old, s->blocks, (size_t)J.nb * sizeof *J.old);
    for (int64_t i = 0; i < J.kb; i++) J.consumed[i] = true;   /* kept as they are */
    if (first > J.kb) J.consumed[J.kb] = true;                   /* the partly kept block, when nothing moves */
    if (!fits(&J, first)) {
        e = err_set(err, errlen, KVLM_ERR_BUDGET, "KV budget exhausted: a context shift needs more blocks than the %lld "
                    "free or cached of %d", (long long)kv_pool_available(p), p->n_blocks);
        goto done;
    }
    if (p->res_tokens > 0) rotate_residual(&J);
    for (int64_t j1 = J.nb_new; j1 > first;) {        /* units, the last first */
        const int64_t j0 = (j1 - 1) / J.span * J.span > first ? (j1 - 1) / J.span * J.span : first;
        for (int64_t j = j0; j < j1; j++)
            if ((e = place(&J, j, err, errlen)) != KVLM_OK) {
                fall_back(&J);
                goto trim;
            }
        encode_unit(&J, j0, j1);
        j1 = j0;
    }
    for (int64_t i = J.nb - 1; i >= J.kb; i--)        /* the dropped ones, the last first */
        if (!J.consumed[i]) release_old(&J, i);
    s->n_blocks = J.nb_new;
    s->n_pos = J.n_new;
    s->no_publish = true;
trim:
    if (s->n_keyed > J.kb) s->n_keyed = J.kb;
    if (s->n_published > J.kb) s->n_published = J.kb;
done:
    free(J.old);
    free(J.consumed);
    free(J.placed);
    free(J.row);
    free(J.kspan);
    return e;
}
