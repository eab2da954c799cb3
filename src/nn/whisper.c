/* whisper.c - Whisper's encoder and decoder. See whisper.h.
 * D = d_model, F = n_ff, H = n_head, hd = head_dim, A = n_audio_ctx (1500). */
#include "nn/whisper.h"
#include "core/clock.h"
#include "nn/linear.h"
#include "core/err.h"
#include "kern/act.h"
#include "kern/gemm.h"
#include "kern/matmul.h"
#include "kern/quant.h"

#include <math.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>


/* ---- row-wise operations, threaded over rows -------------------------------------- */
typedef enum row_op { ROW_LN, ROW_BIAS_GELU, ROW_BIAS, ROW_ADD_BIAS } row_op;

typedef struct rows_job {
    row_op op;
    float *y;                 /* [n][w] */
    const float *x;           /* [n][w] ROW_LN: input; ROW_ADD_BIAS: the addend */
    const float *g, *b;       /* [w] */
    int64_t n, w;
    float eps;
} rows_job;

/* y = (x - mean) / sqrt(var + eps) * g + b      x, y: [w] */
static void layer_norm(float *y, const float *x, const float *g, const float *b, int64_t w, float eps)
{
    double s = 0;
    for (int64_t i = 0; i < w; i++) s += x[i];
    const float mean = (float)(s / (double)w);
    double v = 0;
    for (int64_t i = 0; i < w; i++) v += (double)(x[i] - mean) * (x[i] - mean);
    const float inv = 1.0f / sqrtf((float)(v / (double)w) + eps);
    for (int64_t i = 0; i < w; i++) y[i] = (x[i] - mean) * inv * g[i] + b[i];
}

static void rows_task(void *arg, int ith, int nth)
{
    const rows_job *j = arg;
    int64_t t0, t1;
    pool_split(j->n, ith, nth, &t0, &t1);
    for (int64_t t = t0; t < t1; t++) {
        float *y = j->y + t * j->w;
        switch (j->op) {
        case ROW_LN: layer_norm(y, j->x + t * j->w, j->g, j->b, j->w, j->eps); break;
        case ROW_BIAS_GELU: act_gelu(y, j->b, j->w); break;   /* exact-erf GELU, vectorized */
        case ROW_BIAS: for (int64_t i = 0; i < j->w; i++) y[i] += j->b[i]; break;
        case ROW_ADD_BIAS: for (int64_t i = 0; i < j->w; i++) y[i] += j->x[t * j->w + i] + j->b[i]; break;
        }
    }
}

static void rows_run(pool *p, rows_job j)
{
    if (j.n == 1) rows_task(&j, 0, 1);
    else pool_run(p, rows_task, &j);
}

/* y = x W^T through the GEMM with W packed (bp), rows of x split among threads */
typedef struct gemm_job {
    const float *x, *bp;
    float *y;
    int64_t n, n_in, n_out;
} gemm_job;

static void gemm_task(void *arg, int ith, int nth)
{
    const gemm_job *j = arg;
    int64_t t0, t1;
    pool_split(j->n, ith, nth, &t0, &t1);
    if (t1 > t0) gemm_f32_packed(t0, t1, j->n_out, j->n_in, j->x, j->n_in, j->bp, j->y, j->n_out);
}

/* y = x W^T: packed (bp, the GEMM) or through nn/linear     x: [n][w->n_in], y: [n][w->n_out] */
static void project(pool *p, void *xq, const float *x, int64_t n, const model_weight *w, const float *bp, float *y)
{
    if (bp) {
        gemm_job j = { x, bp, y, n, w->n_in, w->n_out };
        pool_run(p, gemm_task, &j);
        return;
    }
    const model_weight *ws[1] = { w };
    float *ys[1] = { y };
    linear_project(p, xq, x, n, ws, ys, 1);
}

/* y = x W^T + b, optionally GELU(.)      x: [n][w->n_in], y: [n][w->n_out] */
static void affine_p(pool *p, void *xq, const float *x, int64_t n, const model_weight *w, const float *bp,
                     const float *b, float *y, bool gelu_after)
{
    project(p, xq, x, n, w, bp, y);
    rows_run(p, (rows_job){ .op = gelu_after ? ROW_BIAS_GELU : ROW_BIAS, .y = y, .b = b, .n = n, .w = w->n_out });
}

static void affine(pool *p, void *xq, const float *x, int64_t n, const model_weight *w, const float *b, float *y,
                   bool gelu_after)
{
    affine_p(p, xq, x, n, w, NULL, b, y, gelu_after);
}

/* x += y W^T + b  (the residual add of a block's output)   y: [n][w->n_in], tmp: [n][w->n_out] */
static void residual_p(pool *p, void *xq, float *x, const float *y, int64_t n, const model_weight *w, const float *bp,
                       const float *b, float *tmp)
{
    project(p, xq, y, n, w, bp, tmp);
    rows_run(p, (rows_job){ .op = ROW_ADD_BIAS, .y = x, .x = tmp, .b = b, .n = n, .w = w->n_out });
}

static void residual(pool *p, void *xq, float *x, const float *y, int64_t n, const model_weight *w, const float *b,
                     float *tmp)
{
    residual_p(p, xq, x, y, n, w, NULL, b, tmp);
}

/* W [n_out][n_in] of any row type, widened to f32 and packed as the GEMM's B^T; NULL on no memory */
static float *pack_weight(const model_weight *w)
{
    float *wf = malloc((size_t)(w->n_out * w->n_in) * sizeof(float));
    float *bp = aligned_alloc(64, (gemm_packed_floats(w->n_out, w->n_in) * sizeof(float) + 63) / 64 * 64);
    if (!wf || !bp) {
        free(wf);
        free(bp);
        return NULL;
    }
    const quant_traits *qt = quant_get(w->type);
    for (int64_t r = 0; r < w->n_out; r++)                   /* row r: [n_in] */
        qt->to_float((const uint8_t *)w->data + (size_t)r * w->row_bytes, wf + r * w->n_in, w->n_in);
    gemm_pack_b(wf, w->n_in, true, w->n_out, w->n_in, bp);
    free(wf);
    return bp;
}

static size_t max_xq(const model_weight *const *w, size_t n)
{
    size_t b = 0;
    for (size_t i = 0; i < n; i++)
        if (linear_xq_bytes(w[i]) > b) b = linear_xq_bytes(w[i]);
    return b;
}

/* ---- encoder ------------------------------------------------------------------------ */
kvlm_err whisper_enc_init(whisper_enc *e, const whisper_model *m, int n_threads, char *err, size_t errlen)
{
    memset(e, 0, sizeof *e);
    e->m = m;
    const whisper_hparams *hp = &m->hp;
    const size_t D = (size_t)hp->d_model, F = (size_t)hp->n_ff, A = (size_t)hp->n_audio_ctx, T = WHISPER_N_FRAMES;
    const size_t cols = T * (size_t)hp->n_mels * 3 > A * 3 * D ? T * (size_t)hp->n_mels * 3 : A * 3 * D;
    size_t xqb = max_xq((const model_weight *[]){ &m->conv1, &m->conv2 }, 2) * 2;   /* conv1: 3000 rows */
    for (int64_t il = 0; il < hp->n_enc_layer; il++) {
        const whisper_enc_layer *L = &m->enc[il];
        const size_t b = max_xq((const model_weight *[]){ &L->attn_qkv, &L->attn_out, &L->fc1, &L->fc2 }, 4);
        if (b > xqb) xqb = b;
    }
    e->xq_bytes = xqb;   /* per row of 1500 (conv1's 3000 rows: doubled above) */
    e->cols = malloc(cols * sizeof(float));
    e->y1 = malloc(T * D * sizeof(float));
    e->x = malloc(A * D * sizeof(float));
    e->h = malloc(A * D * sizeof(float));
    e->qkv = malloc(A * 3 * D * sizeof(float));
    e->att = malloc(A * D * sizeof(float));
    e->ff = malloc(A * F * sizeof(float));
    e->xq = malloc(A * xqb);
    const int64_t hd = hp->head_dim;
    e->scores = aligned_alloc(64, (size_t)n_threads * WHISPER_ENC_ROWS * ((A + 15) / 16 * 16) * sizeof(float));
    e->pack_floats = (gemm_packed_floats((int64_t)A, hd) + gemm_packed_floats(hd, (int64_t)A) + 15) / 16 * 16;
    e->gemm_pack = aligned_alloc(64, (size_t)n_threads * e->pack_floats * sizeof(float));
    e->sm_tmp = aligned_alloc(64, (size_t)n_threads * (ATTN_CHUNK + 16) * sizeof(float));
    if (!e->cols || !e->y1 || !e->x || !e->h || !e->qkv || !e->att || !e->ff || !e->xq || !e->scores || !e->gemm_pack ||
        !e->sm_tmp) {
        whisper_enc_free(e);
        return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory for the encoder's scratch");
    }
    e->ak = attn_for(hp->head_dim);
    /* touch the scratch now: a window's first-use page faults (~60 MB) belong to
       loading, not to the first transcription's time */
    memset(e->cols, 0, cols * sizeof(float));
    memset(e->y1, 0, T * D * sizeof(float));
    memset(e->qkv, 0, A * 3 * D * sizeof(float));
    memset(e->ff, 0, A * F * sizeof(float));
    memset(e->xq, 0, A * xqb);
    memset(e->x, 0, A * D * sizeof(float));
    memset(e->h, 0, A * D * sizeof(float));
    memset(e->att, 0, A * D * sizeof(float));
    if (m->wtype != KVLM_WEIGHTS_Q8_0) {
        const int64_t ne = 2 + 4 * hp->n_enc_layer, nw = ne + hp->n_dec_layer;
        if (!(e->packed = calloc((size_t)nw, sizeof *e->packed))) goto nomem;
        for (int64_t i = 0; i < nw; i++) {
            const whisper_enc_layer *L = &m->enc[i < 2 || i >= ne ? 0 : (i - 2) / 4];
            const model_weight *lw[4] = { &L->attn_qkv, &L->attn_out, &L->fc1, &L->fc2 };
            const model_weight *w = i == 0 ? &m->conv1 : i == 1 ? &m->conv2 : i >= ne ? &m->dec[i - ne].cross_kv
                                    : lw[(i - 2) % 4];
            if (!(e->packed[i] = pack_weight(w))) goto nomem;
        }
    }
    return KVLM_OK;
nomem:
    whisper_enc_free(e);
    return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory for the encoder's packed weights");
}

void whisper_enc_free(whisper_enc *e)
{
    if (!e) return;
    if (e->packed)
        for (int64_t i = 0; i < 2 + 4 * e->m->hp.n_enc_layer + e->m->hp.n_dec_layer; i++) free(e->packed[i]);
    free(e->packed);
    free(e->scores);
    free(e->gemm_pack);
    free(e->sm_tmp);
    free(e->cols);
    free(e->y1);
    free(e->x);
    free(e->h);
    free(e->qkv);
    free(e->att);
    free(e->ff);
    free(e->xq);
    memset(e, 0, sizeof *e);
}

/* ---- encoder attention as GEMMs ----------------------------------------------------
 * Per head h, over the A rows of qkv ([A][Q D | K D | V D]); thread ith takes the query
 * rows [t0, t1) and, for each head, packs its own copies of K_h^T and V_h once
 * (kp, vp: gemm_pack_b), then WHISPER_ENC_ROWS query rows at a time:
 *   S = Q_h[rows] K_h^T          gemm, B^T = K_h's rows (ldb 3D)     S: [rows][A]
 *                                (Q's rows are scaled by 1/sqrt(hd) first, by their thread)
 *   P = softmax(S) per row, in place (the attention kernels' vector exp, by chunks)
 *   att[rows, h*hd..] = P V_h    gemm, B = V_h's rows (ldb 3D)       att: [rows][hd] at ldc D
 * A row block's S lives in the thread's slice of e->scores (42 x 1500 floats, 252 KB) and
 * is consumed at once, so S and P stay in L2 next to kp and vp (385 KB each). No thread
 * reads another's rows: one pool_run for all heads. Every query reads all A rows (no mask),
 * as CTranslate2's encoder. The GEMM has no bitwise contract (gemm.h); the encoder needs
 * none (one window, one path). */
/* Rows of scores, already scaled, -> probabilities, in place, by chunks of ATTN_CHUNK
 * columns (the attention kernels' vector exp; a chunk starts 64-byte aligned, as they
 * need: the row stride sa is a multiple of 16). s: [n_rows][sa], A columns used */
static void enc_softmax_rows(const whisper_enc *e, float *s, int64_t n_rows, int64_t sa, int ith)
{
    const int64_t A = e->m->hp.n_audio_ctx, nc = (A + ATTN_CHUNK - 1) / ATTN_CHUNK;
    float *part = e->sm_tmp + (size_t)ith * (size_t)(ATTN_CHUNK + 16), mc[16], lc[16];   /* {m_c, l_c} */
    for (int64_t t = 0; t < n_rows; t++) {            /* row t: [A] scores -> probabilities */
        float *row = s + t * sa;
        float M = -INFINITY;
        for (int64_t c = 0; c < nc; c++) {
            const int64_t n = c == nc - 1 ? A - c * ATTN_CHUNK : ATTN_CHUNK;
            e->ak->softmax(part, row + c * ATTN_CHUNK, 1, n, 0, 0);   /* <- exp(s - m_c), 0 up to the block end */
            mc[c] = part[0];
            lc[c] = part[1];
            M = mc[c] > M ? mc[c] : M;
        }
        double L = 0;
        for (int64_t c = 0; c < nc; c++) L += (double)lc[c] * exp((double)(mc[c] - M));
        for (int64_t c = 0; c < nc; c++) {
            const float f = (float)(exp((double)(mc[c] - M)) / L);
            const int64_t n = c == nc - 1 ? A - c * ATTN_CHUNK : ATTN_CHUNK;
            for (int64_t i = 0; i < n; i++) row[c * ATTN_CHUNK + i] *= f;
        }
    }
}

static void enc_attend_task(void *arg, int ith, int nth)
{
    whisper_enc *e = arg;
    const whisper_hparams *hp = &e->m->hp;
    const int64_t D = hp->d_model, A = hp->n_audio_ctx, hd = hp->head_dim, ld = 3 * D, sa = (A + 15) / 16 * 16;
    const float scale = 1.0f / sqrtf((float)hd);   /* 1/8 for hd = 64: exact, as if applied to S */
    float *kp = e->gemm_pack + (size_t)ith * e->pack_floats;   /* K_h^T packed: [hd][A] */
    float *vp = kp + gemm_packed_floats(A, hd);                 /* V_h packed:   [A][hd] */
    float *s = e->scores + (size_t)ith * WHISPER_ENC_ROWS * (size_t)sa;   /* [WHISPER_ENC_ROWS][sa] */
    int64_t t0, t1;
    pool_split(A, ith, nth, &t0, &t1);
    if (t0 >= t1) return;
    for (int64_t t = t0; t < t1; t++)                  /* this thread's Q rows, all heads: Q / sqrt(hd) */
        for (int64_t i = 0; i < D; i++) e->qkv[t * ld + i] *= scale;
    for (int64_t h = 0; h < hp->n_head; h++) {
        const float *q = e->qkv + h * hd, *k = e->qkv + D + h * hd, *v = e->qkv + 2 * D + h * hd;
        gemm_pack_b(k, ld, true, A, hd, kp);
        gemm_pack_b(v, ld, false, hd, A, vp);
        for (int64_t r = t0; r < t1; r += WHISPER_ENC_ROWS) {   /* r: first query row of the block */
            const int64_t n = t1 - r < WHISPER_ENC_ROWS ? t1 - r : WHISPER_ENC_ROWS;
            gemm_f32_packed(0, n, A, hd, q + r * ld, ld, kp, s, sa);                /* S: [n][sa] */
            enc_softmax_rows(e, s, n, sa, ith);
            gemm_f32_packed(0, n, hd, A, s, sa, vp, e->att + r * D + h * hd, D);    /* att rows */
        }
    }
}

static void enc_attend(whisper_enc *e, pool *p) { pool_run(p, enc_attend_task, e); }

kvlm_err whisper_encode(whisper_enc *e, pool *p, const float *mel, float *out, char *err, size_t errlen)
{
    const whisper_model *m = e->m;
    const whisper_hparams *hp = &m->hp;
    const int64_t D = hp->d_model, A = hp->n_audio_ctx, T = WHISPER_N_FRAMES, C = hp->n_mels;

    double tc = clock_now_s(), tn;
    /* conv1 as a matmul: cols[t][i*3 + k] = mel[i][t + k - 1] (0 outside)   cols: [T][C*3] */
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < C; i++)
            for (int64_t k = 0; k < 3; k++) {
                const int64_t s = t + k - 1;
                e->cols[t * C * 3 + i * 3 + k] = s >= 0 && s < T ? mel[i * T + s] : 0.0f;
            }
    float *const *pk = e->packed;
#define PK(i) (pk ? pk[i] : NULL)
    affine_p(p, e->xq, e->cols, T, &m->conv1, PK(0), m->conv1_b, e->y1, true);          /* y1: [T][D] */
    /* conv2, stride 2: cols[t][i*3 + k] = y1[2t + k - 1][i]                  cols: [A][D*3] */
    for (int64_t t = 0; t < A; t++)
        for (int64_t k = 0; k < 3; k++) {
            const int64_t s = 2 * t + k - 1;
            for (int64_t i = 0; i < D; i++) e->cols[t * D * 3 + i * 3 + k] = s >= 0 && s < T ? e->y1[s * D + i] : 0.0f;
        }
    affine_p(p, e->xq, e->cols, A, &m->conv2, PK(1), m->conv2_b, e->x, true);          /* x: [A][D] */
    for (int64_t i = 0; i < A * D; i++) e->x[i] += m->enc_pos[i];
    tn = clock_now_s();
    e->t_conv += tn - tc;
    tc = tn;

    for (int64_t il = 0; il < hp->n_enc_layer; il++) {
        const whisper_enc_layer *L = &m->enc[il];
        rows_run(p, (rows_job){ .op = ROW_LN, .y = e->h, .x = e->x, .g = L->attn_ln.g, .b = L->attn_ln.b, .n = A,
                                .w = D, .eps = hp->ln_eps });
        affine_p(p, e->xq, e->h, A, &L->attn_qkv, PK(2 + 4 * il), L->attn_qkv_b, e->qkv, false);   /* qkv: [A][3D] */
        tn = clock_now_s();
        e->t_proj += tn - tc;
        tc = tn;
        enc_attend(e, p);                                                        /* att: [A][D] */
        tn = clock_now_s();
        e->t_attn += tn - tc;
        tc = tn;
        residual_p(p, e->xq, e->x, e->att, A, &L->attn_out, PK(3 + 4 * il), L->attn_out_b, e->h);
        tn = clock_now_s();
        e->t_proj += tn - tc;
        tc = tn;
        rows_run(p, (rows_job){ .op = ROW_LN, .y = e->h, .x = e->x, .g = L->ffn_ln.g, .b = L->ffn_ln.b, .n = A,
                                .w = D, .eps = hp->ln_eps });
        affine_p(p, e->xq, e->h, A, &L->fc1, PK(4 + 4 * il), L->fc1_b, e->ff, true);              /* ff: [A][F] */
        residual_p(p, e->xq, e->x, e->ff, A, &L->fc2, PK(5 + 4 * il), L->fc2_b, e->h);
        tn = clock_now_s();
        e->t_ffn += tn - tc;
        tc = tn;
    }
    rows_run(p, (rows_job){ .op = ROW_LN, .y = out, .x = e->x, .g = m->enc_ln.g, .b = m->enc_ln.b, .n = A, .w = D,
                            .eps = hp->ln_eps });
#undef PK
    return KVLM_OK;
}

/* ---- cross K/V ---------------------------------------------------------------------- */
size_t whisper_cross_xq_bytes(const whisper_model *m)
{
    size_t b = 0;
    for (int64_t il = 0; il < m->hp.n_dec_layer; il++)
        if (linear_xq_bytes(&m->dec[il].cross_kv) > b) b = linear_xq_bytes(&m->dec[il].cross_kv);
    return b * (size_t)m->hp.n_audio_ctx;
}

kvlm_err whisper_cross_fill(const whisper_enc *we, pool *p, const float *enc, kv_seq *cross, void *xq, float *kv,
                            char *err, size_t errlen)
{
    const whisper_model *m = we->m;
    const int64_t D = m->hp.d_model, A = m->hp.n_audio_ctx;
    kvlm_err r = kv_seq_reserve(cross, A, err, errlen);
    if (r) return r;
    for (int64_t il = 0; il < m->hp.n_dec_layer; il++) {
        const whisper_dec_layer *L = &m->dec[il];
        affine_p(p, xq, enc, A, &L->cross_kv, we->packed ? we->packed[2 + 4 * m->hp.n_enc_layer + il] : NULL,
                 L->cross_kv_b, kv, false);                                    /* kv: [A][K D | V D] */
        for (int64_t t = 0; t < A; t++) kv_seq_store(cross, il, t, kv + t * 2 * D, kv + t * 2 * D + D);
    }
    kv_seq_advance(cross, A);
    return KVLM_OK;
}

/* ---- decoder ------------------------------------------------------------------------ */
kvlm_err whisper_dec_init(whisper_dec *d, const whisper_model *m, int64_t n_batch, int n_threads, char *err,
                          size_t errlen)
{
    memset(d, 0, sizeof *d);
    d->m = m;
    d->n_batch = n_batch;
    const whisper_hparams *hp = &m->hp;
    const size_t D = (size_t)hp->d_model, F = (size_t)hp->n_ff, nb = (size_t)n_batch;
    size_t xqb = linear_xq_bytes(&m->proj);
    for (int64_t il = 0; il < hp->n_dec_layer; il++) {
        const whisper_dec_layer *L = &m->dec[il];
        const size_t b = max_xq((const model_weight *[]){ &L->self_qkv, &L->self_out, &L->cross_q, &L->cross_out,
                                                           &L->fc1, &L->fc2 }, 6);
        if (b > xqb) xqb = b;
    }
    d->xq_bytes = xqb;
    d->x = malloc(nb * D * sizeof(float));
    d->h = malloc(nb * D * sizeof(float));
    d->qkv = malloc(nb * 3 * D * sizeof(float));
    d->q = malloc(nb * D * sizeof(float));
    d->att = malloc(nb * D * sizeof(float));
    d->ff = malloc(nb * F * sizeof(float));
    d->xq = malloc(nb * xqb);
    d->tok_seg = malloc(nb * sizeof *d->tok_seg);
    d->tok_pos = malloc(nb * sizeof *d->tok_pos);
    d->tok_seq = malloc(nb * sizeof *d->tok_seq);
    d->tok_nkv = malloc(nb * sizeof *d->tok_nkv);
    d->qg = malloc(nb * D * sizeof(float));
    d->og = malloc(nb * D * sizeof(float));
    d->grp_t0 = malloc(nb * sizeof *d->grp_t0);
    d->grp_n = malloc(nb * sizeof *d->grp_n);
    if (!d->x || !d->h || !d->qkv || !d->q || !d->att || !d->ff || !d->xq || !d->tok_seg || !d->tok_pos ||
        !d->tok_seq || !d->tok_nkv || !d->qg || !d->og || !d->grp_t0 || !d->grp_n) {
        whisper_dec_free(d);
        return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory for the decoder's scratch (batch %lld)",
                       (long long)n_batch);
    }
    const int64_t max_kv = hp->n_audio_ctx > hp->n_text_ctx ? hp->n_audio_ctx : hp->n_text_ctx;
    kvlm_err r = attend_init(&d->as, hp->n_head * WHISPER_CROSS_GROUP, hp->n_head, hp->head_dim, max_kv, 8, n_threads,
                             err, errlen);
    if (r) {
        whisper_dec_free(d);
        return r;
    }
    d->ak = attn_for(hp->head_dim);
    return KVLM_OK;
}

void whisper_dec_free(whisper_dec *d)
{
    if (!d) return;
    attend_free(&d->as);
    free(d->x);
    free(d->h);
    free(d->qkv);
    free(d->q);
    free(d->att);
    free(d->ff);
    free(d->xq);
    free(d->tok_seg);
    free(d->tok_pos);
    free(d->tok_seq);
    free(d->tok_nkv);
    free(d->qg);
    free(d->og);
    free(d->grp_t0);
    free(d->grp_n);
    memset(d, 0, sizeof *d);
}

/* Cross-attention: adjacent tokens reading one cross sequence form groups of up to
 * WHISPER_CROSS_GROUP; the groups of each size G run as one attend_run whose "tokens" are
 * the groups, with H*G query heads ([H][G][hd]: K/V head h's G queries adjacent), so a
 * group reads each cross row once. A query head's arithmetic does not depend on the
 * others of its group, so the bits are those of attending alone.   q, att: [n_tok][D] */
static void dec_attend_cross(whisper_dec *d, pool *p, const whisper_seg *segs, int64_t il, int64_t n_tok,
                             const float *q)
{
    const whisper_hparams *hp = &d->m->hp;
    const int64_t D = hp->d_model, H = hp->n_head, hd = hp->head_dim;
    int64_t n_grp = 0;
    for (int64_t t = 0; t < n_tok;) {
        const kv_seq *c = segs[d->tok_seg[t]].cross;
        int64_t n = 1;
        while (t + n < n_tok && n < WHISPER_CROSS_GROUP && segs[d->tok_seg[t + n]].cross == c) n++;
        d->grp_t0[n_grp] = t;
        d->grp_n[n_grp++] = n;
        t += n;
    }
    for (int64_t G = 1; G <= WHISPER_CROSS_GROUP; G++) {
        int64_t nv = 0;
        for (int64_t k = 0; k < n_grp; k++) {          /* gather: qg[v][h][i] = q[t0 + i][h] */
            if (d->grp_n[k] != G) continue;
            const int64_t t0 = d->grp_t0[k];
            for (int64_t h = 0; h < H; h++)
                for (int64_t i = 0; i < G; i++)
                    memcpy(d->qg + ((nv * H + h) * G + i) * hd, q + (t0 + i) * D + h * hd, (size_t)hd * sizeof(float));
            d->tok_seq[nv] = segs[d->tok_seg[t0]].cross;
            d->tok_nkv[nv] = d->tok_seq[nv]->n_pos;
            nv++;
        }
        if (!nv) continue;
        const attend_batch b = { .q = d->qg, .out = d->og, .n_tok = nv, .il = il, .n_head = H * G,
                                 .scale = 1.0f / sqrtf((float)hd), .ak = d->ak, .seq = d->tok_seq, .n_kv = d->tok_nkv };
        attend_run(&d->as, p, &b);
        nv = 0;
        for (int64_t k = 0; k < n_grp; k++) {          /* scatter back */
            if (d->grp_n[k] != G) continue;
            const int64_t t0 = d->grp_t0[k];
            for (int64_t h = 0; h < H; h++)
                for (int64_t i = 0; i < G; i++)
                    memcpy(d->att + (t0 + i) * D + h * hd, d->og + ((nv * H + h) * G + i) * hd, (size_t)hd * sizeof(float));
            nv++;
        }
    }
}

/* att = attention of q [n_tok][D] over each token's self (causal) or cross sequence */
static void dec_attend(whisper_dec *d, pool *p, const whisper_seg *segs, int64_t il, int64_t n_tok, const float *q,
                       bool cross)
{
    const whisper_hparams *hp = &d->m->hp;
    const kvlm_kv_type tk = (cross ? segs[0].cross : segs[0].self)->pool->type_k;
    if (tk == KVLM_KV_F16) {
        memcpy(d->q, q, (size_t)(n_tok * hp->d_model) * sizeof(float));
        d->ak->round_f16(d->q, n_tok * hp->d_model);   /* q.k on f16 operands, as forward.c */
        q = d->q;
    }
    if (cross) {
        dec_attend_cross(d, p, segs, il, n_tok, q);
        return;
    }
    for (int64_t t = 0; t < n_tok; t++) {
        d->tok_seq[t] = segs[d->tok_seg[t]].self;
        d->tok_nkv[t] = d->tok_pos[t] + 1;
    }
    const attend_batch b = { .q = q, .out = d->att, .n_tok = n_tok, .il = il, .n_head = hp->n_head,
                             .scale = 1.0f / sqrtf((float)hp->head_dim), .ak = d->ak,
                             .seq = d->tok_seq, .n_kv = d->tok_nkv };
    attend_run(&d->as, p, &b);
}

void whisper_decode(whisper_dec *d, pool *p, const whisper_seg *segs, int64_t n_seg, const kvlm_token *tokens,
                    const int64_t *out_rows, int64_t n_out, float *logits)
{
    const whisper_model *m = d->m;
    const whisper_hparams *hp = &m->hp;
    const int64_t D = hp->d_model;
    const quant_traits *et = quant_get(m->embed.type);

    int64_t n_tok = 0;
    for (int64_t g = 0; g < n_seg; g++)
        for (int64_t i = 0; i < segs[g].n; i++, n_tok++) {
            d->tok_seg[n_tok] = (int32_t)g;
            d->tok_pos[n_tok] = segs[g].self->n_pos + i;
        }
    /* x[t] = E[tok] + P[pos]                                        x: [n_tok][D] */
    for (int64_t t = 0; t < n_tok; t++) {
        float *x = d->x + t * D;
        et->to_float((const uint8_t *)m->embed.data + (size_t)tokens[t] * m->embed.row_bytes, x, D);
        for (int64_t i = 0; i < D; i++) x[i] += m->dec_pos[d->tok_pos[t] * D + i];
    }
    for (int64_t il = 0; il < hp->n_dec_layer; il++) {
        const whisper_dec_layer *L = &m->dec[il];
        /* self-attention: K/V of the new tokens appended at their positions */
        rows_run(p, (rows_job){ .op = ROW_LN, .y = d->h, .x = d->x, .g = L->self_ln.g, .b = L->self_ln.b,
                                .n = n_tok, .w = D, .eps = hp->ln_eps });
        affine(p, d->xq, d->h, n_tok, &L->self_qkv, L->self_qkv_b, d->qkv, false);   /* qkv: [n_tok][3D] */
        for (int64_t t = 0; t < n_tok; t++) {
            const float *r = d->qkv + t * 3 * D;
            kv_seq_store(segs[d->tok_seg[t]].self, il, d->tok_pos[t], r + D, r + 2 * D);
            memcpy(d->h + t * D, r, (size_t)D * sizeof(float));                     /* h: q [n_tok][D] */
        }
        dec_attend(d, p, segs, il, n_tok, d->h, false);
        residual(p, d->xq, d->x, d->att, n_tok, &L->self_out, L->self_out_b, d->h);
        /* cross-attention over the window's cached K/V */
        rows_run(p, (rows_job){ .op = ROW_LN, .y = d->h, .x = d->x, .g = L->cross_ln.g, .b = L->cross_ln.b,
                                .n = n_tok, .w = D, .eps = hp->ln_eps });
        affine(p, d->xq, d->h, n_tok, &L->cross_q, L->cross_q_b, d->qkv, false);     /* q: [n_tok][D] */
        dec_attend(d, p, segs, il, n_tok, d->qkv, true);
        residual(p, d->xq, d->x, d->att, n_tok, &L->cross_out, L->cross_out_b, d->h);
        /* feed-forward */
        rows_run(p, (rows_job){ .op = ROW_LN, .y = d->h, .x = d->x, .g = L->ffn_ln.g, .b = L->ffn_ln.b,
                                .n = n_tok, .w = D, .eps = hp->ln_eps });
        affine(p, d->xq, d->h, n_tok, &L->fc1, L->fc1_b, d->ff, true);               /* ff: [n_tok][F] */
        residual(p, d->xq, d->x, d->ff, n_tok, &L->fc2, L->fc2_b, d->h);
    }
    for (int64_t g = 0; g < n_seg; g++) kv_seq_advance(segs[g].self, segs[g].n);
    /* logits = LN(x) E^T for the rows asked for                  logits: [n_out][n_vocab] */
    for (int64_t r = 0; r < n_out; r++)
        layer_norm(d->h + r * D, d->x + out_rows[r] * D, m->dec_ln.g, m->dec_ln.b, D, hp->ln_eps);
    const model_weight *ws[1] = { &m->proj };
    float *ys[1] = { logits };
    linear_project(p, d->xq, d->h, n_out, ws, ys, 1);
}
