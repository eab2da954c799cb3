/* kv_seq.c - see kv_seq.h. Every function here keeps the seq's references and
 * the pool's refcounts in step: a block enters blocks[] with one reference
 * (alloc, lookup, ref) and leaves it with one unref. */
#include "kv/kv_seq.h"
#include "core/err.h"
#include "kv/kv_block_io.h"
#include "kern/attn.h"
#include "kern/quant.h"

#include <assert.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <xxhash.h>

static int64_t ceil_blocks(int64_t n_pos) { return (n_pos + KV_BLOCK_TOKENS - 1) / KV_BLOCK_TOKENS; }
/* The blocks of whole spans among n_blocks (KIVI K: the only ones keyed, published or attached) */
static int64_t span_blocks(const kv_pool *p, int64_t n_blocks) { return n_blocks / kv_pool_span(p) * kv_pool_span(p); }

void kv_seq_init(kv_seq *s, kv_pool *pool)
{
    memset(s, 0, sizeof *s);
    s->pool = pool;
    s->window = pool ? pool->tab_window[0] : 0;
}

/* ---- tables ------------------------------------------------------------------------ */
/* Table t of primary sequence s. */
static kv_seq *tab_at(kv_seq *s, int32_t t) { return kv_seq_tab(s, t); }
static int32_t n_tabs(const kv_seq *s) { return s->pool ? s->pool->n_tab : 1; }
/* Tables that exist: all once the others are allocated (subs_alloc), else table 0. */
static int32_t n_live(const kv_seq *s) { return kv_seq_n_tables(s); }

/* The namespace table t chains its keys in: the caller's for table 0 (a model
 * without layer groups keys its blocks as before), else XXH3_64 of 12 bytes
 * (u64 ns, u32 t, little-endian). */
static uint64_t tab_ns(uint64_t ns, int32_t t)
{
    if (t == 0) return ns;
    uint8_t buf[12];
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(ns >> (8 * i));
    for (int i = 0; i < 4; i++) buf[8 + i] = (uint8_t)((uint32_t)t >> (8 * i));
    return XXH3_64bits(buf, sizeof buf);
}

/* The other tables of a primary sequence exist (empty). */
static kvlm_err subs_alloc(kv_seq *s, char *err, size_t errlen)
{
    if (n_tabs(s) <= 1 || s->sub) return KVLM_OK;
    if (!(s->sub = calloc((size_t)(n_tabs(s) - 1), sizeof *s->sub)))
        return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory for block tables");
    for (int32_t t = 1; t < n_tabs(s); t++) {
        kv_seq *u = &s->sub[t - 1];
        kv_seq_init(u, s->pool);
        u->tab = t;
        u->window = s->pool->tab_window[t];
    }
    return KVLM_OK;
}

/* Releases blocks[nb, n_blocks), the last first: the tail of a published chain
 * then reaches the LRU before its head and is evicted first. */
static void release_from(kv_seq *s, int64_t nb)
{
    for (int64_t i = s->n_blocks - 1; i >= nb; i--)   /* < 0: none held (NONE, or mid-attach) */
        if (s->blocks[i] >= 0) kv_pool_unref(s->pool, s->blocks[i]);
    if (nb < s->n_blocks) s->n_blocks = nb;
    if (s->n_dropped > s->n_blocks) s->n_dropped = s->n_blocks;
}

static void free_table(kv_seq *s)
{
    if (s->pool) release_from(s, 0);
    free(s->blocks);
    free(s->keys);
    free(s->res);
}

void kv_seq_free(kv_seq *s)
{
    if (!s) return;
    if (s->sub)
        for (int32_t t = 1; t < n_tabs(s); t++) free_table(&s->sub[t - 1]);
    free(s->sub);
    free_table(s);
    memset(s, 0, sizeof *s);
}

/* Room for n blocks in both tables; the sequence itself is unchanged either way. */
static kvlm_err grow(kv_seq *s, int64_t n, char *err, size_t errlen)
{
    if (n <= s->cap) return KVLM_OK;
    int64_t cap = s->cap ? s->cap : 16;
    while (cap < n) cap *= 2;
    kv_block *b = realloc(s->blocks, (size_t)cap * sizeof *b);
    if (b) s->blocks = b;
    uint64_t *k = b ? realloc(s->keys, (size_t)cap * sizeof *k) : NULL;
    if (k) s->keys = k;
    if (!b || !k)
        return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory for a block table of %lld blocks", (long long)cap);
    s->cap = cap;
    return KVLM_OK;
}

static bool writable(const kv_pool *pool, kv_block b)
{
    return kv_pool_refcount(pool, b) == 1 && !kv_pool_is_published(pool, b);
}

/* Allocates n blocks into out[0, n), all or none. */
static kvlm_err alloc_n(kv_pool *pool, kv_block *out, int64_t n, char *err, size_t errlen)
{
    for (int64_t i = 0; i < n; i++) {
        kvlm_err rc = kv_pool_alloc(pool, &out[i], err, errlen);
        if (rc != KVLM_OK) {
            while (i-- > 0) kv_pool_unref(pool, out[i]);
            return rc;
        }
    }
    return KVLM_OK;
}

/* Bytes of a KIVI residual: [n_layer][R / 16] f32 blocks. */
static size_t res_bytes(const kv_pool *p)
{
    return (size_t)p->n_layer * (size_t)(p->res_tokens / KV_BLOCK_TOKENS) * kv_seq_stage_block_floats(p) * sizeof(float);
}

/* The KIVI residual exists (NaN-filled in poison mode, so a read of a position
 * never written shows). */
static kvlm_err res_alloc(kv_seq *s, char *err, size_t errlen)
{
    if (s->pool->res_tokens == 0 || s->res) return KVLM_OK;
    const size_t bytes = res_bytes(s->pool);
    if (!(s->res = malloc(bytes)))
        return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory for a KIVI residual of %zu bytes", bytes);
    if (s->pool->poison) {
        const uint32_t nan32 = 0x7fc00000u;
        for (size_t i = 0; i + 4 <= bytes; i += 4) memcpy((uint8_t *)s->res + i, &nan32, 4);
    }
    return KVLM_OK;
}

/* The blocks one table needs to make [n_pos, n_pos + n_new) writable: new ones,
 * and copies (copy-on-write) of those a write may touch that are shared or
 * published, the one of position n_pos and, for KIVI K, the earlier ones of its
 * span. cow: [KV_KIVI_SPAN] their indices. */
static int64_t reserve_plan(const kv_seq *s, int64_t n_new, int64_t *cow, int64_t *n_cow, int64_t *n_add)
{
    const int64_t b0 = s->n_pos / KV_BLOCK_TOKENS;   /* block of the first new position */
    const int64_t b1 = ceil_blocks(s->n_pos + n_new);  /* blocks needed: [0, b1) */
    const int64_t w0 = span_blocks(s->pool, b0);
    *n_cow = 0;
    for (int64_t i = w0; i <= b0 && i < s->n_blocks; i++)
        if (s->blocks[i] != KV_BLOCK_NONE && !writable(s->pool, s->blocks[i])) cow[(*n_cow)++] = i;
    *n_add = b1 > s->n_blocks ? b1 - s->n_blocks : 0;
    return *n_add + *n_cow;
}

/* One table's reserve, the pool's room already checked. */
static kvlm_err reserve_table(kv_seq *s, int64_t n_new, char *err, size_t errlen)
{
    int64_t cow[KV_KIVI_SPAN], n_cow, n_add;
    if (reserve_plan(s, n_new, cow, &n_cow, &n_add) == 0) return KVLM_OK;
    kvlm_err rc;
    kv_block fresh[KV_KIVI_SPAN];   /* the copy targets of copy-on-write */
    if ((rc = alloc_n(s->pool, s->blocks + s->n_blocks, n_add, err, errlen)) != KVLM_OK) return rc;
    if (n_cow > 0 && (rc = alloc_n(s->pool, fresh, n_cow, err, errlen)) != KVLM_OK) {
        for (int64_t i = n_add - 1; i >= 0; i--) kv_pool_unref(s->pool, s->blocks[s->n_blocks + i]);
        return rc;
    }
    for (int64_t j = 0; j < n_cow; j++) {
        kv_pool_copy(s->pool, fresh[j], s->blocks[cow[j]]);
        kv_pool_unref(s->pool, s->blocks[cow[j]]);
        s->blocks[cow[j]] = fresh[j];
    }
    s->n_blocks += n_add;
    return KVLM_OK;
}

kvlm_err kv_seq_reserve(kv_seq *s, int64_t n_new, char *err, size_t errlen)
{
    if (n_new < 0) return err_set(err, errlen, KVLM_ERR_INVALID, "cannot reserve %lld positions", (long long)n_new);
    if (n_new == 0) return KVLM_OK;
    kvlm_err rc = subs_alloc(s, err, errlen);
    int64_t need = 0;
    for (int32_t t = 0; t < n_tabs(s) && rc == KVLM_OK; t++) {   /* tables and residuals first: nothing to undo */
        kv_seq *u = tab_at(s, t);
        int64_t cow[KV_KIVI_SPAN], n_cow, n_add;
        if ((rc = res_alloc(u, err, errlen)) == KVLM_OK) need += reserve_plan(u, n_new, cow, &n_cow, &n_add);
        if (rc == KVLM_OK) rc = grow(u, ceil_blocks(u->n_pos + n_new), err, errlen);
    }
    if (rc != KVLM_OK || need == 0) return rc;
    if (kv_pool_available(s->pool) < need)   /* checked first so nothing is evicted in vain */
        return err_set(err, errlen, KVLM_ERR_BUDGET,
                       "KV budget exhausted: %lld more blocks needed, %lld free or cached of %d",
                       (long long)need, (long long)kv_pool_available(s->pool), s->pool->n_blocks);
    for (int32_t t = 0; t < n_tabs(s) && rc == KVLM_OK; t++) rc = reserve_table(tab_at(s, t), n_new, err, errlen);
    return rc;
}

/* one value in a 2-byte type */
static uint16_t to_half(float x, kvlm_kv_type t) { return t == KVLM_KV_BF16 ? f32_to_bf16(x) : f32_to_fp16(x); }

/* row: [n] f32 -> dst (a V row) in type t (f32, f16, bf16) */
static void store_row(const kv_pool *pool, void *dst, const float *row, kvlm_kv_type t)
{
    const int64_t n = pool->n_head_kv * pool->head_dim;
    if (t == KVLM_KV_F32) {
        memcpy(dst, row, (size_t)n * sizeof(float));
        return;
    }
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = to_half(row[i], t);
}

/* row: [n] f32 -> channel c of slot `slot` of a channel-major K block:
 * dst[c * KV_BLOCK_TOKENS + slot] in type t (f32, f16, bf16) */
static void store_col(const kv_pool *pool, void *dst, int64_t slot, const float *row, kvlm_kv_type t)
{
    const int64_t n = pool->n_head_kv * pool->head_dim;
    if (t == KVLM_KV_F32) {
        float *d = dst;
        for (int64_t c = 0; c < n; c++) d[c * KV_BLOCK_TOKENS + slot] = row[c];
        return;
    }
    uint16_t *d = dst;
    for (int64_t c = 0; c < n; c++) d[c * KV_BLOCK_TOKENS + slot] = to_half(row[c], t);
}

/* q8: x[0..32) -> q[i * qstride] (int8) with x ~ d * q, d = max|x| / 127 stored as f16;
 * the ints are rounded from x / d in f32 (d before its f16 rounding), as ggml's q8_0. */
static void quant_group_q8(const float *x, int8_t *q, size_t qstride, uint16_t *d)
{
    float amax = 0.0f;
    for (int i = 0; i < KV_Q8_GROUP; i++) amax = fmaxf(amax, fabsf(x[i]));
    const float dd = amax / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
    for (int i = 0; i < KV_Q8_GROUP; i++) q[(size_t)i * qstride] = (int8_t)roundf(x[i] * id);
    *d = f32_to_fp16(dd);
}

/* q8 K of slot `slot`: ints [n_ch][16] then scales [n_ch / 32][16] */
static void store_col_q8(const kv_pool *pool, void *dst, int64_t slot, const float *row)
{
    const int64_t n = pool->n_head_kv * pool->head_dim;
    int8_t *q = dst;
    uint16_t *d = (uint16_t *)(q + n * KV_BLOCK_TOKENS);
    for (int64_t g = 0; g < n / KV_Q8_GROUP; g++)
        quant_group_q8(row + g * KV_Q8_GROUP, q + g * KV_Q8_GROUP * KV_BLOCK_TOKENS + slot, KV_BLOCK_TOKENS,
                       d + g * KV_BLOCK_TOKENS + slot);
}

/* q8 V of slot `slot`: ints [16][n_ch] then scales [n_ch / 32][16]; dst = the V part */
static void store_row_q8(const kv_pool *pool, void *dst, int64_t slot, const float *row)
{
    const int64_t n = pool->n_head_kv * pool->head_dim;
    int8_t *q = (int8_t *)dst + slot * n;
    uint16_t *d = (uint16_t *)((int8_t *)dst + n * KV_BLOCK_TOKENS) + slot;
    for (int64_t g = 0; g < n / KV_Q8_GROUP; g++)
        quant_group_q8(row + g * KV_Q8_GROUP, q + g * KV_Q8_GROUP, 1, d + g * KV_BLOCK_TOKENS);
}

/* q4 of x[0..32) as ggml's q4_0: d = (the value of largest magnitude) / -8, stored
 * as f16; q = min(15, trunc(x / d + 8.5)) in [0, 15], value = d * (q - 8).
 * q[i] receives the 4 bits of x[i] (the caller packs them). */
static void quant_group_q4(const float *x, uint8_t *q, uint16_t *d)
{
    float amax = 0.0f, mx = 0.0f;
    for (int i = 0; i < KV_Q8_GROUP; i++)
        if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); mx = x[i]; }
    const float dd = mx / -8.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
    for (int i = 0; i < KV_Q8_GROUP; i++) {
        const int v = (int)(x[i] * id + 8.5f);
        q[i] = (uint8_t)(v > 15 ? 15 : v < 0 ? 0 : v);
    }
    *d = f32_to_fp16(dd);
}

/* q4 K of slot `slot`: nibbles [n_ch][8] (byte slot % 8 of a channel, low nibble for
 * slots 0-7, high for 8-15), then scales [n_ch / 32][16] */
static void store_col_q4(const kv_pool *pool, void *dst, int64_t slot, const float *row)
{
    const int64_t n = pool->n_head_kv * pool->head_dim;
    uint8_t *q = dst, v[KV_Q8_GROUP];
    uint16_t *d = (uint16_t *)(q + n * KV_BLOCK_TOKENS / 2);
    const int shift = slot < 8 ? 0 : 4;
    for (int64_t g = 0; g < n / KV_Q8_GROUP; g++) {
        quant_group_q4(row + g * KV_Q8_GROUP, v, d + g * KV_BLOCK_TOKENS + slot);
        for (int i = 0; i < KV_Q8_GROUP; i++) {
            uint8_t *b = q + (g * KV_Q8_GROUP + i) * (KV_BLOCK_TOKENS / 2) + slot % 8;
            *b = (uint8_t)((*b & (0xF0 >> shift)) | (v[i] << shift));
        }
    }
}

/* q4 V of slot `slot`: nibbles [16][n_ch / 2] (byte i of a group: channel i low,
 * i + 16 high), then scales [n_ch / 32][16]; dst = the V part */
static void store_row_q4(const kv_pool *pool, void *dst, int64_t slot, const float *row)
{
    const int64_t n = pool->n_head_kv * pool->head_dim;
    uint8_t *q = (uint8_t *)dst + slot * n / 2, v[KV_Q8_GROUP];
    uint16_t *d = (uint16_t *)((uint8_t *)dst + n * KV_BLOCK_TOKENS / 2) + slot;
    for (int64_t g = 0; g < n / KV_Q8_GROUP; g++) {
        quant_group_q4(row + g * KV_Q8_GROUP, v, d + g * KV_BLOCK_TOKENS);
        for (int i = 0; i < KV_Q8_GROUP / 2; i++) q[g * KV_Q8_GROUP / 2 + i] = (uint8_t)(v[i] | (v[i + 16] << 4));
    }
}

/* k: [n_ch] f32 -> slot `slot` of a K part kd of a non-KIVI type */
static void store_k(const kv_pool *p, void *kd, int64_t slot, const float *k)
{
    switch (p->type_k) {
    case KVLM_KV_Q4: store_col_q4(p, kd, slot, k); break;
    case KVLM_KV_Q8: store_col_q8(p, kd, slot, k); break;
    default: store_col(p, kd, slot, k, p->type_k); break;
    }
}

/* v: [n_ch] f32 -> row `slot` of a V part vd of a non-KIVI type */
static void store_v(const kv_pool *p, void *vd, int64_t slot, const float *v)
{
    switch (p->type_v) {
    case KVLM_KV_Q4: store_row_q4(p, vd, slot, v); break;
    case KVLM_KV_Q8: store_row_q8(p, vd, slot, v); break;
    default: store_row(p, (uint8_t *)vd + (size_t)slot * p->row_bytes, v, p->type_v); break;
    }
}

void kv_seq_store(kv_seq *s0, int64_t il0, int64_t pos, const float *k, const float *v)
{
    assert(il0 >= 0 && il0 < s0->pool->n_layer_model);
    kv_seq *s = (kv_seq *)kv_seq_table(s0, il0);
    const int64_t il = kv_seq_slot(s0, il0);
    assert(pos >= 0 && pos < s->n_blocks * KV_BLOCK_TOKENS);
    assert(s->pool->res_tokens == 0);   /* KIVI stores through kv_seq_stage */
    const kv_block b = s->blocks[pos / KV_BLOCK_TOKENS];
    assert(writable(s->pool, b));   /* else a shared or published block would change under its readers */
    const int64_t slot = pos % KV_BLOCK_TOKENS;
    store_k(s->pool, kv_pool_k(s->pool, b, il), slot, k);
    store_v(s->pool, kv_pool_v(s->pool, b, il, 0), slot, v);
}

void kv_seq_store_k(kv_seq *s, int64_t il, int64_t pos, const float *k)
{
    assert(il >= 0 && il < s->pool->n_layer && pos >= 0 && pos < s->n_blocks * KV_BLOCK_TOKENS);
    assert(!kv_type_is_kivi(s->pool->type_k));
    const kv_block b = s->blocks[pos / KV_BLOCK_TOKENS];
    assert(writable(s->pool, b));
    store_k(s->pool, kv_pool_k(s->pool, b, il), pos % KV_BLOCK_TOKENS, k);
}

/* ---- KIVI ------------------------------------------------------------------------ */
/* x[i * xstride], i in [0, n) -> unsigned b-bit codes with *d = (max - min) / (2^b - 1)
 * and *m = min, both stored as f16, packed in runs of `run` values as attn.h
 * describes (in a run, with span = run * b / 8 bytes, value k sits in byte k % span
 * at bits b * (k / span)). The codes are rounded against the stored d and m, so
 * a value comes back within d / 2 whatever the f16 rounding did.
 *   pack: [n / run][span] bytes */
static void kivi_quant(const float *x, size_t xstride, int n, int bits, int run, uint8_t *pack, uint16_t *d,
                       uint16_t *m)
{
    float mn = x[0], mx = x[0];
    for (int i = 1; i < n; i++) {
        mn = fminf(mn, x[(size_t)i * xstride]);
        mx = fmaxf(mx, x[(size_t)i * xstride]);
    }
    const int top = (1 << bits) - 1, span = run * bits / 8;
    *d = f32_to_fp16((mx - mn) / (float)top);
    *m = f32_to_fp16(mn);
    const float df = fp16_to_f32(*d), mf = fp16_to_f32(*m), id = df > 0.0f ? 1.0f / df : 0.0f;
    memset(pack, 0, (size_t)(n / run * span));
    for (int i = 0; i < n; i++) {
        float q = roundf((x[(size_t)i * xstride] - mf) * id);
        q = q > 0.0f ? (q < (float)top ? q : (float)top) : 0.0f;   /* NaN -> 0 */
        const int r = i / run, k = i % run;
        pack[r * span + k % span] |= (uint8_t)((int)q << (bits * (k / span)));
    }
}

/* KIVI V of block b, layer il, from its 16 positions in f32: per position over
 * groups of 64 channels.   blk: K [n_ch][16] then V [16][n_ch] (kv_seq_stage's layout) */
static void kivi_store_v(const kv_pool *p, int64_t il, kv_block b, const float *blk)
{
    const int64_t n = p->n_head_kv * p->head_dim, ng = n / ATTN_KIVI_VGROUP;
    const int bits = attn_kivi_bits((int)p->type_v);
    uint8_t *vd = kv_pool_v(p, b, il, 0);
    uint16_t *d = (uint16_t *)(vd + KV_BLOCK_TOKENS * p->row_bytes), *m = d + KV_BLOCK_TOKENS * ng;
    const float *vf = blk + n * KV_BLOCK_TOKENS;
    for (int64_t slot = 0; slot < KV_BLOCK_TOKENS; slot++)
        for (int64_t g = 0; g < ng; g++)
            kivi_quant(vf + slot * n + g * ATTN_KIVI_VGROUP, 1, ATTN_KIVI_VGROUP, bits, 32,
                       vd + slot * p->row_bytes + (size_t)(g * ATTN_KIVI_VGROUP * bits / 8), d + slot * ng + g,
                       m + slot * ng + g);
}

/* KIVI K of the span of KV_KIVI_SPAN blocks b[0..4), layer il, from its 64
 * positions in f32: per channel over the span; block r gets its 16 slots' codes
 * and the scales of channels [r n / 4, (r + 1) n / 4) (kern/attn.h).
 *   blk0: the span's first f32 block, the next ones bf floats apart */
static void kivi_store_k_span(const kv_pool *p, int64_t il, const kv_block *b, const float *blk0, size_t bf)
{
    const int64_t n = p->n_head_kv * p->head_dim, nq = n / KV_KIVI_SPAN, BT = KV_BLOCK_TOKENS;
    const int bits = attn_kivi_bits((int)p->type_k), cb = 2 * bits;   /* code bytes of a channel in a block */
    uint8_t *kd[KV_KIVI_SPAN];
    for (int r = 0; r < KV_KIVI_SPAN; r++) kd[r] = kv_pool_k(p, b[r], il);
    for (int64_t c = 0; c < n; c++) {
        float x[KV_KIVI_SPAN * KV_BLOCK_TOKENS];      /* channel c over the span's positions */
        uint8_t pack[KV_KIVI_SPAN * 8];
        for (int r = 0; r < KV_KIVI_SPAN; r++) memcpy(x + r * BT, blk0 + (size_t)r * bf + c * BT, BT * sizeof *x);
        uint16_t *sc = (uint16_t *)(kd[c / nq] + (size_t)n * (size_t)cb);   /* d [nq], then m [nq] */
        kivi_quant(x, 1, KV_KIVI_SPAN * BT, bits, BT, pack, sc + c % nq, sc + nq + c % nq);
        for (int r = 0; r < KV_KIVI_SPAN; r++) memcpy(kd[r] + (size_t)c * (size_t)cb, pack + r * cb, (size_t)cb);
    }
}

void kv_seq_store_k_span(kv_seq *s, int64_t il, int64_t b0, const float *blk0, size_t bf)
{
    assert(kv_type_is_kivi(s->pool->type_k) && b0 % KV_KIVI_SPAN == 0 && b0 + KV_KIVI_SPAN <= s->n_blocks);
    for (int64_t r = 0; r < KV_KIVI_SPAN; r++) assert(writable(s->pool, s->blocks[b0 + r]));
    kivi_store_k_span(s->pool, il, s->blocks + b0, blk0, bf);
}

void kv_seq_stage(kv_seq *s0, int64_t il0, int64_t pos0, int64_t n, const float *k, const float *v, float *stage)
{
    kv_seq *s = (kv_seq *)kv_seq_table(s0, il0);
    const int64_t il = kv_seq_slot(s0, il0);
    const kv_pool *p = s->pool;
    assert(p->res_tokens > 0 && s->res && pos0 == s->n_pos && pos0 + n <= s->n_blocks * KV_BLOCK_TOKENS);
    const int64_t n_ch = p->n_head_kv * p->head_dim, BT = KV_BLOCK_TOKENS, span = kv_pool_span(p);
    const size_t bf = kv_seq_stage_block_floats(p);
    const int64_t g0 = kv_seq_group_start(p, pos0), end = pos0 + n;
    float *res = s->res + (size_t)il * (size_t)(p->res_tokens / BT) * bf;   /* res: [R / 16][bf] */
    /* stage: blocks of [g0, end); the residual [g0, pos0) first */
    memcpy(stage, res, (size_t)((pos0 - g0 + BT - 1) / BT) * bf * sizeof *stage);
    for (int64_t t = 0; t < n; t++) {                 /* k, v: [n][n_ch] */
        const int64_t pos = pos0 + t, slot = pos % BT;
        float *blk = stage + (size_t)((pos - g0) / BT) * bf;
        for (int64_t c = 0; c < n_ch; c++) blk[c * BT + slot] = k[t * n_ch + c];
        memcpy(blk + n_ch * BT + slot * n_ch, v + t * n_ch, (size_t)n_ch * sizeof *v);
        const kv_block b = s->blocks[pos / BT];
        assert(writable(p, b));
        /* a non-KIVI part is stored as it comes; KIVI V when its block is full, K when its span is */
        if (!kv_type_is_kivi(p->type_k)) store_k(p, kv_pool_k(p, b, il), slot, k + t * n_ch);
        if (!kv_type_is_kivi(p->type_v)) store_v(p, kv_pool_v(p, b, il, 0), slot, v + t * n_ch);
        if (slot == BT - 1 && kv_type_is_kivi(p->type_v)) kivi_store_v(p, il, b, blk);
        if ((pos + 1) % (span * BT) == 0 && kv_type_is_kivi(p->type_k)) {   /* a span of K is complete */
            const int64_t p0 = pos + 1 - span * BT;   /* >= g0: R holds whole spans */
            for (int64_t r = 0; r < span; r++) assert(writable(p, s->blocks[p0 / BT + r]));
            kivi_store_k_span(p, il, s->blocks + p0 / BT, stage + (size_t)((p0 - g0) / BT) * bf, bf);
        }
    }
    /* the residual of the group of position `end` */
    const int64_t g1 = kv_seq_group_start(p, end);
    memcpy(res, stage + (size_t)((g1 - g0) / BT) * bf, (size_t)((end - g1 + BT - 1) / BT) * bf * sizeof *stage);
}

void kv_seq_advance(kv_seq *s0, int64_t n)
{
    for (int32_t t = 0; t < n_tabs(s0); t++) {
        kv_seq *s = tab_at(s0, t);
        assert(n >= 0 && s->n_pos + n <= s->n_blocks * KV_BLOCK_TOKENS);
        s->n_pos += n;
    }
}

/* The first block a window table must hold for a query at position pos: the
 * block of pos + 1 - window, down to its KIVI K span's start; 0 without a window. */
static int64_t window_first_block(const kv_seq *s, int64_t pos)
{
    if (s->window <= 0 || pos + 1 <= s->window) return 0;
    return span_blocks(s->pool, (pos + 1 - s->window) / KV_BLOCK_TOKENS);
}

void kv_seq_slide(kv_seq *s0)
{
    for (int32_t t = 0; t < n_live(s0); t++) {
        kv_seq *s = tab_at(s0, t);
        if (s->window <= 0) continue;
        const int64_t d = window_first_block(s, s->n_pos);   /* the next query's window starts there */
        for (int64_t i = s->n_dropped; i < d && i < s->n_blocks; i++) {   /* oldest first: evicted first */
            if (s->blocks[i] != KV_BLOCK_NONE) kv_pool_unref(s->pool, s->blocks[i]);
            s->blocks[i] = KV_BLOCK_NONE;
        }
        if (d > s->n_dropped) s->n_dropped = d < s->n_blocks ? d : s->n_blocks;
    }
}

int64_t kv_seq_held(const kv_seq *s0, bool window)
{
    int64_t n = 0;
    for (int32_t t = 0; t < n_live(s0); t++) {
        const kv_seq *s = tab_at((kv_seq *)s0, t);
        if ((s->window > 0) != window) continue;
        for (int64_t i = s->n_dropped; i < s->n_blocks; i++) n += s->blocks[i] != KV_BLOCK_NONE;
    }
    return n;
}

static void truncate_table(kv_seq *s, int64_t n_keep);

void kv_seq_truncate(kv_seq *s, int64_t n_keep)
{
    if (n_keep < 0) n_keep = 0;
    /* a window table that has let go of blocks n_keep's window needs cannot go on
       from n_keep: nothing can be kept then (the caller recomputes, or finds the
       blocks in the prefix cache) */
    for (int32_t t = 0; t < n_live(s); t++) {
        const kv_seq *u = tab_at(s, t);
        if (n_keep < u->n_pos && window_first_block(u, n_keep) < u->n_dropped) n_keep = 0;
    }
    truncate_table(s, n_keep);
    for (int32_t t = 1; t < n_live(s); t++) truncate_table(&s->sub[t - 1], s->n_pos);
}

static void truncate_table(kv_seq *s, int64_t n_keep)
{
    if (s->pool && s->pool->res_tokens > 0 && n_keep < s->n_pos &&
        kv_seq_group_start(s->pool, n_keep) < kv_seq_group_start(s->pool, s->n_pos))
        n_keep = kv_seq_group_start(s->pool, n_keep);   /* the f32 residual of that group is gone */
    if (n_keep < s->n_pos) s->n_pos = n_keep;
    release_from(s, ceil_blocks(s->n_pos));
    /* keyed and published: full blocks of whole spans (a KIVI K span is rewritten until complete) */
    const int64_t n_full = span_blocks(s->pool, s->n_pos / KV_BLOCK_TOKENS);
    if (s->n_keyed > n_full) s->n_keyed = n_full;
    if (s->n_published > n_full) s->n_published = n_full;
    if (s->n_below > s->n_published) s->n_below = s->n_published;
}

static kvlm_err fork_table(kv_seq *dst, const kv_seq *src, char *err, size_t errlen);

kvlm_err kv_seq_fork(kv_seq *dst, const kv_seq *src, char *err, size_t errlen)
{
    if (dst->n_blocks > 0 || dst->pool != src->pool)
        return err_set(err, errlen, KVLM_ERR_INVALID, "fork needs an empty sequence over the same pool");
    kvlm_err rc = src->sub ? subs_alloc(dst, err, errlen) : KVLM_OK;
    for (int32_t t = 0; t < n_live(src) && rc == KVLM_OK; t++)
        rc = fork_table(tab_at(dst, t), tab_at((kv_seq *)src, t), err, errlen);
    if (rc != KVLM_OK)   /* dst back to empty */
        for (int32_t t = 0; t < n_live(dst); t++) {
            kv_seq *u = tab_at(dst, t);
            release_from(u, 0);
            u->n_pos = u->n_keyed = u->n_published = 0;
        }
    return rc;
}

static kvlm_err fork_table(kv_seq *dst, const kv_seq *src, char *err, size_t errlen)
{
    const int64_t nb = ceil_blocks(src->n_pos);
    kvlm_err rc = grow(dst, nb, err, errlen);
    if (rc == KVLM_OK && src->res) rc = res_alloc(dst, err, errlen);
    if (rc != KVLM_OK) return rc;
    if (src->res) memcpy(dst->res, src->res, res_bytes(src->pool));
    for (int64_t i = 0; i < nb; i++) {   /* blocks: [nb], shared (a window's dropped ones stay NONE) */
        dst->blocks[i] = src->blocks[i];
        if (src->blocks[i] != KV_BLOCK_NONE) kv_pool_ref(src->pool, src->blocks[i]);
    }
    dst->n_dropped = src->n_dropped;
    if (src->n_keyed > 0) memcpy(dst->keys, src->keys, (size_t)src->n_keyed * sizeof *dst->keys);
    dst->n_blocks = nb;
    dst->n_pos = src->n_pos;
    dst->n_keyed = src->n_keyed;
    dst->n_published = src->n_published;
    dst->n_below = src->n_below;
    dst->fingerprint = src->fingerprint;
    dst->ns = src->ns;
    dst->no_publish = src->no_publish;
    return KVLM_OK;
}

/* The namespace block i's key is chained under. In a KIVI K pool a block's bytes
 * also depend on the rest of its span (its K scales cover the span's 64
 * positions), so it commits to the span's later tokens too: equal keys still
 * mean equal bytes. tokens reach the end of block i's span. */
static uint64_t link_ns(const kv_pool *p, int64_t i, const kvlm_token *tokens, uint64_t ns)
{
    const int64_t span = kv_pool_span(p), rest = span - 1 - i % span;   /* later blocks of the span */
    if (rest <= 0) return ns;
    uint8_t buf[sizeof ns + (KV_KIVI_SPAN - 1) * KV_BLOCK_TOKENS * sizeof *tokens];
    const size_t nt = (size_t)(rest * KV_BLOCK_TOKENS) * sizeof *tokens;
    memcpy(buf, &ns, sizeof ns);
    memcpy(buf + sizeof ns, tokens + (i + 1) * KV_BLOCK_TOKENS, nt);
    return XXH3_64bits(buf, sizeof ns + nt);
}

/* The link of full block i: tokens[16i, 16i+16) after blocks[i-1] and keys[i-1]
 * (a window table's: loose, no parent block; kv_pool.h "Layer groups"). */
static void block_link(const kv_seq *s, kv_link *link, int64_t i, const kvlm_token *tokens,
                       uint64_t fingerprint, uint64_t ns)
{
    const uint64_t parent_key = i > 0 ? s->keys[i - 1] : KV_ROOT_KEY;
    if (s->window > 0) {
        kv_pool_link_loose(link, parent_key, tokens + i * KV_BLOCK_TOKENS, fingerprint, link_ns(s->pool, i, tokens, ns));
    } else {
        const kv_block parent = i > 0 ? s->blocks[i - 1] : KV_BLOCK_NONE;
        kv_pool_link(link, parent, parent_key, tokens + i * KV_BLOCK_TOKENS, fingerprint,
                     link_ns(s->pool, i, tokens, ns));
    }
    link->tab = s->tab;
}

/* Records link.key as keys[i], or checks it against the key recorded earlier. */
static kvlm_err record_key(kv_seq *s, int64_t i, uint64_t key, char *err, size_t errlen)
{
    if (i < s->n_keyed) {
        if (s->keys[i] != key)
            return err_set(err, errlen, KVLM_ERR_INVALID,
                           "publish: tokens of block %lld differ from those published before", (long long)i);
        return KVLM_OK;
    }
    s->keys[i] = key;
    s->n_keyed = i + 1;
    return KVLM_OK;
}

/* Publishes blocks[i] (full, its parent blocks[i-1] published). Returns false
 * when the chain must stop here: a hash collision, or a duplicate of a published
 * block that cannot be adopted. */
static bool publish_block(kv_seq *s, int64_t i, const kv_link *link)
{
    const kv_block b = s->blocks[i];
    const kv_block got = kv_pool_publish(s->pool, b, link);
    if (got == KV_BLOCK_NONE) return false;
    if (got == b) return true;
    /* The same content is already published as `got`: keep that copy. Only if b
     * is ours alone: a fork holding b would keep b as the parent of its next
     * block while our next block, once published, would name `got`, and a
     * sequence holding a published block must hold that block's parent. */
    const bool alone = kv_pool_refcount(s->pool, b) == 1;
    kv_pool_unref(s->pool, alone ? b : got);
    if (alone) s->blocks[i] = got;
    return alone;
}

static kvlm_err publish_table(kv_seq *s, const kvlm_token *tokens, int64_t n_tokens, uint64_t fingerprint,
                              uint64_t ns, char *err, size_t errlen);

kvlm_err kv_seq_publish(kv_seq *s, const kvlm_token *tokens, int64_t n_tokens,
                        uint64_t fingerprint, uint64_t ns, char *err, size_t errlen)
{
    kvlm_err rc = KVLM_OK;
    for (int32_t t = 0; t < n_live(s) && rc == KVLM_OK; t++)
        rc = publish_table(tab_at(s, t), tokens, n_tokens, fingerprint, tab_ns(ns, t), err, errlen);
    return rc;
}

static kvlm_err publish_table(kv_seq *s, const kvlm_token *tokens, int64_t n_tokens, uint64_t fingerprint,
                              uint64_t ns, char *err, size_t errlen)
{
    if (n_tokens < 0 || n_tokens > s->n_pos)
        return err_set(err, errlen, KVLM_ERR_INVALID, "publish: %lld tokens but %lld positions committed",
                       (long long)n_tokens, (long long)s->n_pos);
    if (s->n_keyed > 0 && (fingerprint != s->fingerprint || ns != s->ns))
        return err_set(err, errlen, KVLM_ERR_INVALID, "publish: fingerprint or namespace changed");
    if (s->no_publish) return KVLM_OK;               /* shifted K (kv_shift.h) never enters the index */
    s->fingerprint = fingerprint;
    s->ns = ns;
    const int64_t n_full = span_blocks(s->pool, n_tokens / KV_BLOCK_TOKENS);
    for (int64_t i = s->n_published; i < n_full; i++) {   /* blocks[i]: full, blocks[i-1] published */
        kv_link link;
        block_link(s, &link, i, tokens, fingerprint, ns);
        kvlm_err rc = record_key(s, i, link.key, err, errlen);
        if (rc != KVLM_OK) return rc;
        if (s->blocks[i] == KV_BLOCK_NONE) {          /* left the window unpublished: only its key */
            s->n_published = i + 1;
            continue;
        }
        if (kv_pool_is_published(s->pool, s->blocks[i])) {   /* by a fork sharing it */
            kv_block_info info;
            kv_pool_block_info(s->pool, s->blocks[i], &info);
            if (info.link.key != link.key || info.link.parent != link.parent)
                return err_set(err, errlen, KVLM_ERR_INVALID,
                               "publish: block %lld is published with other tokens", (long long)i);
        } else if (!publish_block(s, i, &link)) {
            break;
        }
        s->n_published = i + 1;
    }
    return KVLM_OK;
}

/* Blocks a prefix attach may take: at most floor((n - 1) / 16), so that the last
 * token is always left to compute; KIVI K: whole spans (block_link reads to a
 * span's end). */
static int64_t attach_max_blocks(const kv_seq *s, int64_t n_tokens)
{
    return n_tokens > 0 ? span_blocks(s->pool, (n_tokens - 1) / KV_BLOCK_TOKENS) : 0;
}

/* A window table's block during an attach (kv_seq_attach_ram .. attach_end), besides
 * a held block and KV_BLOCK_NONE: */
enum {
    UNPROBED = -2,   /* not looked up yet */
    WANTED = -3      /* not in RAM: for the tiers to supply (kv_seq_next_wants) */
};

/* Blocks every full table holds (from the root). */
static int64_t full_blocks(kv_seq *s)
{
    int64_t k = INT64_MAX;
    for (int32_t t = 0; t < n_tabs(s); t++) {
        const kv_seq *u = tab_at(s, t);
        if (u->window <= 0 && u->n_blocks < k) k = u->n_blocks;
    }
    return k;
}

/* The end an attach of groups can still reach: where the full tables end together,
 * before any miss, in whole KIVI residual groups. */
static int64_t attach_goal(kv_seq *s)
{
    const int64_t rb = s->pool->res_tokens > 0 ? s->pool->res_tokens / KV_BLOCK_TOKENS : 1;
    int64_t k = full_blocks(s);
    if (k > s->attach_lim) k = s->attach_lim;
    return k / rb * rb;
}

/* Full table u holds blocks [0, nb) of the chain (those past it go back). */
static void full_hold(kv_seq *u, int64_t nb)
{
    release_from(u, nb);
    u->n_pos = u->n_blocks * KV_BLOCK_TOKENS;
    u->n_keyed = u->n_published = u->n_blocks;
}

/* Window tables: the keys of blocks [n_blocks, k), each table chaining its own,
 * their blocks not looked up yet. */
static void key_windows(kv_seq *s, const kvlm_token *tokens, int64_t k)
{
    for (int32_t t = 0; t < n_tabs(s); t++) {
        kv_seq *u = tab_at(s, t);
        if (u->window <= 0) continue;
        for (int64_t i = u->n_blocks; i < k; i++) {
            kv_link link;
            block_link(u, &link, i, tokens, u->fingerprint, u->ns);
            u->keys[i] = link.key;
            u->blocks[i] = UNPROBED;
            u->n_blocks = u->n_keyed = i + 1;
        }
    }
}

/* Window table u's block i in RAM, if it was not looked up yet. */
static void probe(kv_seq *u, int64_t i, const kvlm_token *tokens)
{
    if (u->blocks[i] != UNPROBED) return;
    kv_link link;
    block_link(u, &link, i, tokens, u->fingerprint, u->ns);
    const kv_block b = kv_pool_lookup(u->pool, &link);
    u->blocks[i] = b != KV_BLOCK_NONE ? b : WANTED;
}

/* attach_ram for layer groups: the full tables' chains from the root, as far as
 * they all reach; the window tables keyed over that, looked up later (next_wants,
 * attach_end). */
static kvlm_err attach_groups(kv_seq *s, const kvlm_token *tokens, int64_t n_tokens, uint64_t fingerprint,
                              uint64_t ns, char *err, size_t errlen)
{
    kvlm_err rc = subs_alloc(s, err, errlen);
    const int64_t max_blocks = attach_max_blocks(s, n_tokens);
    for (int32_t t = 0; t < n_tabs(s) && rc == KVLM_OK; t++) rc = grow(tab_at(s, t), max_blocks, err, errlen);
    if (rc != KVLM_OK) return rc;
    int64_t k = max_blocks;
    for (int32_t t = 0; t < n_tabs(s); t++) {        /* full tables: hits from the root */
        kv_seq *u = tab_at(s, t);
        u->fingerprint = fingerprint;
        u->ns = tab_ns(ns, t);
        if (u->window > 0) continue;
        int64_t i = 0;
        for (; i < k; i++) {
            kv_link link;
            block_link(u, &link, i, tokens, fingerprint, u->ns);
            const kv_block b = kv_pool_lookup(s->pool, &link);
            if (b == KV_BLOCK_NONE) break;
            u->blocks[i] = b;
            u->keys[i] = link.key;
            u->n_blocks = i + 1;
        }
        k = i;
    }
    for (int32_t t = 0; t < n_tabs(s); t++)
        if (tab_at(s, t)->window <= 0) full_hold(tab_at(s, t), k);
    s->attach_lim = max_blocks;
    key_windows(s, tokens, k);
    return KVLM_OK;
}

kvlm_err kv_seq_attach_ram(kv_seq *s, const kvlm_token *tokens, int64_t n_tokens, uint64_t fingerprint,
                           uint64_t ns, char *err, size_t errlen)
{
    if (s->n_blocks > 0 || s->n_pos > 0)
        return err_set(err, errlen, KVLM_ERR_INVALID, "attach_prefix needs an empty sequence");
    if (n_tabs(s) > 1) return attach_groups(s, tokens, n_tokens, fingerprint, ns, err, errlen);
    const int64_t max_blocks = attach_max_blocks(s, n_tokens);
    kvlm_err rc = grow(s, max_blocks, err, errlen);
    if (rc != KVLM_OK) return rc;
    s->fingerprint = fingerprint;
    s->ns = ns;
    s->attach_lim = max_blocks;
    int64_t i = 0;
    for (; i < max_blocks; i++) {   /* blocks[i] <- lookup(chain of tokens[0, 16(i+1))) */
        kv_link link;
        block_link(s, &link, i, tokens, fingerprint, ns);
        const kv_block b = kv_pool_lookup(s->pool, &link);
        if (b == KV_BLOCK_NONE) break;
        s->blocks[i] = b;
        s->keys[i] = link.key;
        s->n_blocks = i + 1;
    }
    s->n_pos = i * KV_BLOCK_TOKENS;
    s->n_keyed = s->n_published = i;
    return KVLM_OK;
}

int64_t kv_seq_next_wants(kv_seq *s, const kvlm_token *tokens, int64_t n_tokens, kv_want *out, int64_t cap)
{
    const int64_t max_blocks = attach_max_blocks(s, n_tokens);
    const int64_t lim = s->attach_lim < max_blocks ? s->attach_lim : max_blocks;
    int64_t n = 0;
    if (n_tabs(s) == 1 || full_blocks(s) < lim) {   /* the full tables' chains, a block of each at a time */
        const int64_t k = n_tabs(s) == 1 ? s->n_blocks : full_blocks(s);
        uint64_t parent[KV_MAX_TABLES];
        for (int32_t t = 0; t < n_tabs(s); t++) {
            kv_seq *u = tab_at(s, t);
            if (u->window > 0 && n_tabs(s) > 1) continue;
            full_hold(u, k);
            parent[t] = k > 0 ? u->keys[k - 1] : KV_ROOT_KEY;
        }
        for (int64_t i = k; i < lim && n < cap; i++)
            for (int32_t t = 0; t < n_tabs(s) && n < cap; t++) {
                const kv_seq *u = tab_at(s, t);
                if (u->window > 0 && n_tabs(s) > 1) continue;
                out[n] = (kv_want){ .key = kv_pool_chain_key(parent[t], tokens + i * KV_BLOCK_TOKENS, u->fingerprint,
                                                             link_ns(s->pool, i, tokens, u->ns)),
                                    .tab = t, .block = i };
                parent[t] = out[n++].key;
            }
        return n;
    }
    const int64_t k = attach_goal(s);                 /* the windows before k: what RAM lacks */
    key_windows(s, tokens, k);
    int64_t lo = k;
    for (int32_t t = 0; t < n_tabs(s); t++)
        if (tab_at(s, t)->window > 0 && window_first_block(tab_at(s, t), k * KV_BLOCK_TOKENS) < lo)
            lo = window_first_block(tab_at(s, t), k * KV_BLOCK_TOKENS);
    for (int64_t i = lo; i < k; i++)                  /* oldest first: a miss at i still leaves [.., i) useful */
        for (int32_t t = 0; t < n_tabs(s) && n < cap; t++) {
            kv_seq *u = tab_at(s, t);
            if (u->window <= 0 || i < window_first_block(u, k * KV_BLOCK_TOKENS)) continue;
            probe(u, i, tokens);
            if (u->blocks[i] == WANTED) out[n++] = (kv_want){ .key = u->keys[i], .tab = t, .block = i };
        }
    return n;
}

kvlm_err kv_seq_attach_image(kv_seq *s, const kvlm_token *tokens, int64_t n_tokens, const kv_want *w,
                             const void *image, size_t len, char *err, size_t errlen)
{
    const int64_t i = w->block;
    kv_seq *u = w->tab >= 0 && w->tab < n_live(s) ? tab_at(s, w->tab) : NULL;
    const bool window = u && u->window > 0 && n_tabs(s) > 1;
    bool ok = u && i >= 0 && i < attach_max_blocks(s, n_tokens) && i < s->attach_lim;
    if (ok && window) ok = i < u->n_blocks && u->blocks[i] == WANTED;
    else if (ok) ok = i == u->n_blocks && u->n_pos == i * KV_BLOCK_TOKENS && u->n_published == i;
    if (!ok)
        return err_set(err, errlen, KVLM_ERR_INVALID, "attach_image: block %lld of table %d is not wanted",
                       (long long)i, (int)w->tab);
    kv_link link;
    block_link(u, &link, i, tokens, u->fingerprint, u->ns);
    if (link.key != w->key)
        return err_set(err, errlen, KVLM_ERR_INVALID, "attach_image: block %lld of table %d has another key",
                       (long long)i, (int)w->tab);
    kv_block b = kv_pool_lookup(s->pool, &link);      /* computed meanwhile by another sequence */
    if (b == KV_BLOCK_NONE) {
        kvlm_err rc;
        if ((rc = kv_pool_alloc(s->pool, &b, err, errlen)) != KVLM_OK) return rc;
        if ((rc = kv_block_decode(s->pool, image, len, &link, b, err, errlen)) != KVLM_OK) {
            kv_pool_unref(s->pool, b);
            return rc;
        }
        const kv_block got = kv_pool_publish(s->pool, b, &link);
        if (got != b) {                               /* a collision: the key names other content */
            kv_pool_unref(s->pool, b);
            if (got != KV_BLOCK_NONE) kv_pool_unref(s->pool, got);
            return err_set(err, errlen, KVLM_ERR_INVALID, "attach_image: key of block %lld is taken",
                           (long long)i);
        }
    }
    u->blocks[i] = b;
    if (window) return KVLM_OK;
    u->keys[i] = link.key;
    u->n_blocks = i + 1;
    u->n_pos = (i + 1) * KV_BLOCK_TOKENS;
    u->n_keyed = u->n_published = i + 1;
    return KVLM_OK;
}

void kv_seq_attach_miss(kv_seq *s, const kv_want *w)
{
    if (w->block < s->attach_lim) s->attach_lim = w->block < 0 ? 0 : w->block;
}

/* attach_end for layer groups: the largest k <= attach_goal (a multiple of a KIVI
 * residual group) for which every window table has the blocks of the window before
 * position 16k, looked up from k down (k only falls: each block looked up once);
 * the rest of what was found goes back. */
static void settle_groups(kv_seq *s, const kvlm_token *tokens)
{
    const int64_t rb = s->pool->res_tokens > 0 ? s->pool->res_tokens / KV_BLOCK_TOKENS : 1;
    int64_t k = attach_goal(s);
    key_windows(s, tokens, k);
    for (bool changed = true; changed;) {
        changed = false;
        k = k / rb * rb;
        for (int32_t t = 0; t < n_tabs(s) && !changed; t++) {
            kv_seq *u = tab_at(s, t);
            if (u->window <= 0) continue;
            for (int64_t i = k - 1; i >= window_first_block(u, k * KV_BLOCK_TOKENS); i--) {
                probe(u, i, tokens);
                if (u->blocks[i] < 0) {               /* in neither RAM nor a tier */
                    k = i;
                    changed = true;
                    break;
                }
            }
        }
    }
    for (int32_t t = 0; t < n_tabs(s); t++) {        /* keep [lo, k) of each window, [0, k) of full tables */
        kv_seq *u = tab_at(s, t);
        if (u->window > 0) {
            const int64_t lo = window_first_block(u, k * KV_BLOCK_TOKENS);
            for (int64_t i = u->n_blocks - 1; i >= 0; i--) {
                if ((i < lo || i >= k) && u->blocks[i] >= 0) kv_pool_unref(s->pool, u->blocks[i]);
                if (i < lo || i >= k || u->blocks[i] < 0) u->blocks[i] = KV_BLOCK_NONE;
            }
            u->n_blocks = k;
            u->n_dropped = lo;
            u->n_pos = k * KV_BLOCK_TOKENS;
            u->n_keyed = u->n_published = k;
        } else {
            full_hold(u, k);
        }
        u->n_below = u->n_published;
    }
}

int64_t kv_seq_attach_end(kv_seq *s, const kvlm_token *tokens)
{
    if (n_tabs(s) > 1) {
        settle_groups(s, tokens);
        return s->n_pos;
    }
    if (s->pool->res_tokens > 0) {                    /* KIVI: whole residual groups only */
        const int64_t keep = kv_seq_group_start(s->pool, s->n_blocks * KV_BLOCK_TOKENS) / KV_BLOCK_TOKENS;
        release_from(s, keep);
        s->n_pos = keep * KV_BLOCK_TOKENS;
        s->n_keyed = s->n_published = keep;
    }
    s->n_below = s->n_published;
    return s->n_pos;
}

kvlm_err kv_seq_attach_prefix(kv_seq *s, const kvlm_token *tokens, int64_t n_tokens,
                              uint64_t fingerprint, uint64_t ns, int64_t *n_reused,
                              char *err, size_t errlen)
{
    *n_reused = 0;
    kvlm_err rc = kv_seq_attach_ram(s, tokens, n_tokens, fingerprint, ns, err, errlen);
    if (rc != KVLM_OK) return rc;
    *n_reused = kv_seq_attach_end(s, tokens);
    return KVLM_OK;
}
