/* kv_tiers.c - the tiers strung together (the design is in kv_tiers.h).
 * Room: kv. May touch: kv_tier (through kv_tier_ops only), core (errors, clock),
 * libc, pthreads, zstd. Knows nothing of the pool or of what an image holds.
 *
 * State and its locks:
 *
 *   mu    write queue  head -> item -> item -> tail      (tickets done+1 .. last)
 *         callbacks    cbs: sorted by ticket, fired by the writer once done >= ticket
 *         pending      bytes of queued and in-flight items (<= max_queue_bytes)
 *   lmu   load queue   lhead -> load -> load -> ltail     (the loader pops the head)
 *   slot[i].mu         every call on tier i's handle
 *   smu   slot[i].st, slot[i].own (counters), spare (one cached zstd decoder)
 *   kv_load.mu         that load's refs, cancelled, done, count, img[]
 *
 * Lock order: slot[i].mu before smu; mu, lmu and kv_load.mu are never held around a
 * tier call or a callback. Invariants: done <= last; items in the queue have tickets
 * done+1 .. last in order (the in-flight one is done+1); pending = sum of the lens
 * of queued and in-flight items. */
#include "kv/kv_tiers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "core/clock.h"
#include "core/err.h"

#define ZMAGIC "KVLMZST1"
enum { ZMAGIC_LEN = 8, ZHDR = 16, ZLEVEL = 1, TIER_ERRLEN = 256 };

static const double hist_bounds_ms[] = KVLM_TIER_HIST_BOUNDS_MS;
_Static_assert(sizeof hist_bounds_ms / sizeof hist_bounds_ms[0] == KVLM_TIER_HIST_BUCKETS - 1,
               "one bound per bucket but the last (+Inf)");

typedef struct tier_slot {
    kv_tier *tier;
    pthread_mutex_t mu;        /* serialises every call on tier (handles are not thread-safe) */
    kvlm_tier_stats st;        /* kv_tiers' counters (under smu) */
    kv_tier_stats own;         /* the tier's own after its last call (under smu) */
} tier_slot;

typedef enum wr_kind {
    WR_PUT,                    /* an image: encoded (compress) by the writer */
    WR_STORED,                 /* bytes already in stored form (a promoted compressed image) */
    WR_DROP,                   /* drop key from the tiers of mask */
} wr_kind;

typedef struct wr_item {
    struct wr_item *next;
    int64_t  ticket;
    uint64_t key;
    void    *data;             /* [len], owned by the item */
    size_t   len;
    unsigned mask;             /* bit i: tier i */
    wr_kind  kind;
} wr_item;

typedef struct after_cb {
    struct after_cb *next;
    int64_t ticket;
    void  (*fn)(void *user);
    void   *user;
} after_cb;

typedef struct load_img { void *data; size_t len; int tier; } load_img;

struct kv_load {
    pthread_mutex_t mu;
    int      refs;             /* the caller's and, until the loader is done with it, the queue's */
    bool     cancelled, done;
    int64_t  n, count;         /* keys; images fetched (img[0, count)) */
    uint64_t *keys;            /* [n] */
    load_img *img;             /* [n]; data NULL once taken */
    struct kv_load *next;      /* load queue (under kv_tiers.lmu) */
};

struct kv_tiers {
    kv_tiers_params p;
    tier_slot   slot[KVLM_MAX_TIERS];
    int         n;
    atomic_bool used;          /* a put, get or load happened: no more kv_tiers_add */

    pthread_mutex_t mu;
    pthread_cond_t  cv_work;   /* the writer: an item or stop */
    pthread_cond_t  cv_done;   /* flushers: done moved */
    wr_item   *head, *tail;
    size_t     pending;
    int64_t    last, done;
    int64_t    cb_done;        /* the callbacks of tickets <= cb_done have returned */
    after_cb  *cbs;
    bool       stop;
    pthread_t  writer;

    pthread_mutex_t lmu;
    pthread_cond_t  cv_load;
    kv_load   *lhead, *ltail;
    atomic_bool lstop;
    pthread_t  loader;

    pthread_mutex_t smu;
    ZSTD_DCtx *spare;
};

/* ---- the stored form ---------------------------------------------------------------- */

/* A malloc'd copy of p[0..len) (at least 1 byte allocated), NULL on out of memory. */
static void *memdup_n(const void *p, size_t len)
{
    void *b = malloc(len ? len : 1);
    if (b && len) memcpy(b, p, len);
    return b;
}

static bool has_magic(const void *b, size_t len)
{
    return len >= ZMAGIC_LEN && memcmp(b, ZMAGIC, ZMAGIC_LEN) == 0;
}

/* The compressed stored form of image[0..len) into *out, or *out NULL when it would
 * not be smaller and force is false (then the image is stored as it is). */
static kvlm_err zwrap(ZSTD_CCtx *cctx, const void *image, size_t len, bool force, void **out, size_t *out_len,
                      char *err, size_t errlen)
{
    *out = NULL;
    *out_len = 0;
    if (!cctx) return err_set(err, errlen, KVLM_ERR_NOMEM, "kv tiers: out of memory for a zstd compressor");
    size_t cap = ZHDR + ZSTD_compressBound(len);
    uint8_t *b = malloc(cap);
    if (!b) return err_set(err, errlen, KVLM_ERR_NOMEM, "kv tiers: out of memory compressing %zu bytes", len);
    size_t z = ZSTD_compressCCtx(cctx, b + ZHDR, cap - ZHDR, image, len, ZLEVEL);
    if (ZSTD_isError(z)) {
        free(b);
        return err_set(err, errlen, KVLM_ERR_NOMEM, "kv tiers: zstd: %s", ZSTD_getErrorName(z));
    }
    if (!force && ZHDR + z >= len) { free(b); return KVLM_OK; }
    memcpy(b, ZMAGIC, ZMAGIC_LEN);
    for (int i = 0; i < 8; i++) b[ZMAGIC_LEN + i] = (uint8_t)((uint64_t)len >> (8 * i));   /* u64 LE */
    *out = b;
    *out_len = ZHDR + z;
    return KVLM_OK;
}

/* The image of stored[0..len): *image NULL when stored is itself the image (no magic),
 * else a malloc'd decompression of exactly its declared raw size (<= max). Hostile
 * input: the raw size is checked against max before any allocation, the frame must
 * be one complete frame covering the rest, declare the same size if it declares one,
 * and decode to exactly that size (zstd never writes past the buffer it is given). */
static kvlm_err zunwrap(ZSTD_DCtx **dctx, const void *stored, size_t len, size_t max, void **image, size_t *ilen,
                        char *err, size_t errlen)
{
    *image = NULL;
    *ilen = 0;
    if (!has_magic(stored, len)) {
        if (len > max) return err_set(err, errlen, KVLM_ERR_FORMAT, "kv tiers: an image of %zu bytes (max %zu)", len, max);
        return KVLM_OK;
    }
    const uint8_t *s = stored;
    if (len < ZHDR) return err_set(err, errlen, KVLM_ERR_FORMAT, "kv tiers: a compressed image of %zu bytes", len);
    uint64_t raw = 0;
    for (int i = 0; i < 8; i++) raw |= (uint64_t)s[ZMAGIC_LEN + i] << (8 * i);
    if (raw > max) return err_set(err, errlen, KVLM_ERR_FORMAT, "kv tiers: a compressed image of %llu bytes (max %zu)",
                                  (unsigned long long)raw, max);
    const uint8_t *f = s + ZHDR;
    size_t flen = len - ZHDR;
    unsigned long long fcs = ZSTD_getFrameContentSize(f, flen);
    if (fcs == ZSTD_CONTENTSIZE_ERROR || (fcs != ZSTD_CONTENTSIZE_UNKNOWN && fcs != raw))
        return err_set(err, errlen, KVLM_ERR_FORMAT, "kv tiers: a zstd frame header that does not match its size");
    size_t fsz = ZSTD_findFrameCompressedSize(f, flen);
    if (ZSTD_isError(fsz) || fsz != flen)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "kv tiers: a truncated or padded zstd frame");
    if (!*dctx) *dctx = ZSTD_createDCtx();
    if (!*dctx) return err_set(err, errlen, KVLM_ERR_NOMEM, "kv tiers: out of memory for a zstd decoder");
    uint8_t *b = malloc(raw ? (size_t)raw : 1);
    if (!b) return err_set(err, errlen, KVLM_ERR_NOMEM, "kv tiers: out of memory for %llu bytes", (unsigned long long)raw);
    size_t got = ZSTD_decompressDCtx(*dctx, b, (size_t)raw, f, flen);
    if (ZSTD_isError(got) || got != raw) {
        free(b);
        return err_set(err, errlen, KVLM_ERR_FORMAT, "kv tiers: a zstd frame that does not decode to %llu bytes (%s)",
                       (unsigned long long)raw, ZSTD_isError(got) ? ZSTD_getErrorName(got) : "size differs");
    }
    *image = b;
    *ilen = (size_t)raw;
    return KVLM_OK;
}

kvlm_err kv_tiers_encode(const void *image, size_t len, bool compress, void **out, size_t *out_len,
                         char *err, size_t errlen)
{
    *out = NULL;
    *out_len = 0;
    bool magic = has_magic(image, len);
    if (compress || magic) {
        ZSTD_CCtx *c = ZSTD_createCCtx();
        kvlm_err rc = zwrap(c, image, len, magic, out, out_len, err, errlen);
        ZSTD_freeCCtx(c);
        if (rc != KVLM_OK || *out) return rc;
    }
    if (!(*out = memdup_n(image, len))) return err_set(err, errlen, KVLM_ERR_NOMEM, "kv tiers: out of memory");
    *out_len = len;
    return KVLM_OK;
}

kvlm_err kv_tiers_decode(const void *stored, size_t len, size_t max_image, void **image, size_t *image_len,
                         char *err, size_t errlen)
{
    ZSTD_DCtx *d = NULL;
    kvlm_err rc = zunwrap(&d, stored, len, max_image, image, image_len, err, errlen);
    ZSTD_freeDCtx(d);
    if (rc != KVLM_OK || *image) return rc;
    if (!(*image = memdup_n(stored, len))) return err_set(err, errlen, KVLM_ERR_NOMEM, "kv tiers: out of memory");
    *image_len = len;
    return KVLM_OK;
}

/* ---- counters ----------------------------------------------------------------------- */

static int hist_bucket(double seconds)
{
    double ms = seconds * 1e3;
    int b = 0;
    while (b < KVLM_TIER_HIST_BUCKETS - 1 && ms > hist_bounds_ms[b]) b++;
    return b;
}

typedef enum look_outcome { LOOK_HIT, LOOK_MISS, LOOK_ERROR, LOOK_INVALID } look_outcome;

/* One lookup's counters, with the tier's own counters taken after the call. */
static void count_lookup(kv_tiers *t, int i, look_outcome o, double seconds, size_t bytes, const kv_tier_stats *own)
{
    pthread_mutex_lock(&t->smu);
    kvlm_tier_stats *st = &t->slot[i].st;
    if (o == LOOK_HIT) st->hits++;
    else st->misses++;
    if (o == LOOK_ERROR) st->errors++;
    if (o == LOOK_INVALID) st->invalid++;
    st->bytes_read += (int64_t)bytes;
    st->load_hist[hist_bucket(seconds)]++;
    st->load_seconds += seconds;
    t->slot[i].own = *own;
    pthread_mutex_unlock(&t->smu);
}

static void count_put(kv_tiers *t, int i, bool ok, size_t bytes, const kv_tier_stats *own)
{
    pthread_mutex_lock(&t->smu);
    kvlm_tier_stats *st = &t->slot[i].st;
    if (ok) { st->puts++; st->bytes_written += (int64_t)bytes; }
    else st->errors++;
    if (own) t->slot[i].own = *own;
    pthread_mutex_unlock(&t->smu);
}

static void count_mask(kv_tiers *t, unsigned mask, bool dropped)
{
    pthread_mutex_lock(&t->smu);
    for (int i = 0; i < t->n; i++)
        if (mask >> i & 1) {
            if (dropped) t->slot[i].st.dropped++;
            else t->slot[i].st.invalid++;
        }
    pthread_mutex_unlock(&t->smu);
}

void kv_tiers_get_stats(const kv_tiers *tc, int i, kvlm_tier_stats *out)
{
    memset(out, 0, sizeof *out);
    kv_tiers *t = (kv_tiers *)tc;   /* the mutex is not part of the value */
    if (i < 0 || i >= t->n) return;
    pthread_mutex_lock(&t->smu);
    *out = t->slot[i].st;
    out->evictions = t->slot[i].own.evictions;
    out->n_items = t->slot[i].own.n_items;
    out->bytes_stored = t->slot[i].own.bytes_stored;
    pthread_mutex_unlock(&t->smu);
    snprintf(out->name, sizeof out->name, "%s", t->slot[i].tier->ops->name);
}

/* ---- tier calls (each under the tier's mutex) --------------------------------------- */

static void tier_drop(kv_tiers *t, int i, uint64_t key)
{
    tier_slot *s = &t->slot[i];
    kv_tier_stats own;
    pthread_mutex_lock(&s->mu);
    s->tier->ops->drop(s->tier, key);
    s->tier->ops->get_stats(s->tier, &own);
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_lock(&t->smu);
    s->own = own;
    pthread_mutex_unlock(&t->smu);
}

static void tier_put(kv_tiers *t, int i, uint64_t key, const void *data, size_t len)
{
    tier_slot *s = &t->slot[i];
    kv_tier_stats own;
    char msg[TIER_ERRLEN] = "";
    pthread_mutex_lock(&s->mu);
    kvlm_err rc = s->tier->ops->put(s->tier, key, data, len, msg, sizeof msg);
    s->tier->ops->get_stats(s->tier, &own);
    pthread_mutex_unlock(&s->mu);
    count_put(t, i, rc == KVLM_OK, len, &own);
}

/* ---- the write queue ---------------------------------------------------------------- */

/* Appends an item and returns its ticket; 0 when it is dropped (queue full, out of
 * memory): data freed, counted dropped in mask's tiers. */
static int64_t enqueue(kv_tiers *t, wr_kind kind, uint64_t key, void *data, size_t len, unsigned mask)
{
    wr_item *it = malloc(sizeof *it);
    pthread_mutex_lock(&t->mu);
    if (!it || len > t->p.max_queue_bytes - t->pending) {
        pthread_mutex_unlock(&t->mu);
        free(it);
        free(data);
        count_mask(t, mask, true);
        return 0;
    }
    *it = (wr_item){ .ticket = ++t->last, .key = key, .data = data, .len = len, .mask = mask, .kind = kind };
    t->pending += len;
    if (t->tail) t->tail->next = it;
    else t->head = it;
    t->tail = it;
    int64_t ticket = it->ticket;
    pthread_cond_signal(&t->cv_work);
    pthread_mutex_unlock(&t->mu);
    return ticket;
}

static void write_item(kv_tiers *t, wr_item *it, ZSTD_CCtx **cctx)
{
    if (it->kind == WR_DROP) {
        for (int i = 0; i < t->n; i++)
            if (it->mask >> i & 1) tier_drop(t, i, it->key);
        return;
    }
    const void *bytes = it->data;
    size_t n = it->len;
    void *enc = NULL;
    bool magic = has_magic(it->data, it->len);
    if (it->kind == WR_PUT && (t->p.compress || magic)) {
        if (!*cctx) *cctx = ZSTD_createCCtx();
        size_t enc_len;
        kvlm_err rc = zwrap(*cctx, it->data, it->len, magic, &enc, &enc_len, NULL, 0);
        if (rc != KVLM_OK && magic) {   /* cannot be stored unwrapped */
            count_mask(t, it->mask, true);
            return;
        }
        if (enc) { bytes = enc; n = enc_len; }
    }
    for (int i = 0; i < t->n; i++)
        if (it->mask >> i & 1) tier_put(t, i, it->key, bytes, n);
    free(enc);
}

/* Unlinks the callbacks whose ticket is <= done (the list is sorted). Under mu. */
static after_cb *pop_ready(kv_tiers *t)
{
    after_cb **end = &t->cbs;
    while (*end && (*end)->ticket <= t->done) end = &(*end)->next;
    if (end == &t->cbs) return NULL;                  /* none ready: the list stays */
    after_cb *ready = t->cbs;
    t->cbs = *end;
    *end = NULL;                                      /* the last ready one ends the returned list */
    return ready;
}

static void run_cbs(after_cb *c)
{
    while (c) {
        after_cb *next = c->next;
        c->fn(c->user);
        free(c);
        c = next;
    }
}

static void *writer_main(void *arg)
{
    kv_tiers *t = arg;
    ZSTD_CCtx *cctx = NULL;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (!t->head && !t->stop) pthread_cond_wait(&t->cv_work, &t->mu);
        wr_item *it = t->head;
        if (!it) break;   /* stopped and drained */
        t->head = it->next;
        if (!t->head) t->tail = NULL;
        pthread_mutex_unlock(&t->mu);
        write_item(t, it, &cctx);
        pthread_mutex_lock(&t->mu);
        t->done = it->ticket;
        t->pending -= it->len;
        after_cb *ready = pop_ready(t);
        pthread_cond_broadcast(&t->cv_done);
        pthread_mutex_unlock(&t->mu);
        run_cbs(ready);
        free(it->data);
        free(it);
        pthread_mutex_lock(&t->mu);
        t->cb_done = t->done;
        pthread_cond_broadcast(&t->cv_done);
    }
    pthread_mutex_unlock(&t->mu);
    ZSTD_freeCCtx(cctx);
    return NULL;
}

int64_t kv_tiers_put(kv_tiers *t, uint64_t key, void *image, size_t len)
{
    atomic_store(&t->used, true);
    return enqueue(t, WR_PUT, key, image, len, (1u << t->n) - 1);
}

int64_t kv_tiers_last_ticket(const kv_tiers *tc)
{
    kv_tiers *t = (kv_tiers *)tc;
    pthread_mutex_lock(&t->mu);
    int64_t last = t->last;
    pthread_mutex_unlock(&t->mu);
    return last;
}

bool kv_tiers_written(kv_tiers *t, int64_t ticket)
{
    pthread_mutex_lock(&t->mu);
    bool w = t->done >= ticket;
    pthread_mutex_unlock(&t->mu);
    return w;
}

void kv_tiers_flush_to(kv_tiers *t, int64_t ticket)
{
    pthread_mutex_lock(&t->mu);
    if (ticket > t->last) ticket = t->last;
    while (t->cb_done < ticket) pthread_cond_wait(&t->cv_done, &t->mu);   /* written, its callbacks run */
    pthread_mutex_unlock(&t->mu);
}

void kv_tiers_flush(kv_tiers *t) { kv_tiers_flush_to(t, INT64_MAX); }

kvlm_err kv_tiers_after(kv_tiers *t, int64_t ticket, void (*fn)(void *user), void *user)
{
    after_cb *c = malloc(sizeof *c);
    pthread_mutex_lock(&t->mu);
    if (ticket > t->last) ticket = t->last;
    if (ticket <= t->done) {
        pthread_mutex_unlock(&t->mu);
        free(c);
        fn(user);
        return KVLM_OK;
    }
    if (!c) { pthread_mutex_unlock(&t->mu); return KVLM_ERR_NOMEM; }
    *c = (after_cb){ .ticket = ticket, .fn = fn, .user = user };
    after_cb **at = &t->cbs;   /* after every callback of a ticket <= this one */
    while (*at && (*at)->ticket <= ticket) at = &(*at)->next;
    c->next = *at;
    *at = c;
    pthread_mutex_unlock(&t->mu);
    return KVLM_OK;
}

/* ---- lookups ------------------------------------------------------------------------ */

/* Queues what tier i had for the tiers above it: the stored bytes when they are a
 * compressed form (ownership moves), else a copy of the image. */
static void promote(kv_tiers *t, int i, uint64_t key, const void *img, size_t ilen, void *stored, size_t slen)
{
    unsigned mask = (1u << i) - 1;
    if (stored) { enqueue(t, WR_STORED, key, stored, slen, mask); return; }
    void *copy = memdup_n(img, ilen);
    if (!copy) { count_mask(t, mask, true); return; }
    enqueue(t, WR_PUT, key, copy, ilen, mask);
}

/* The first tier's image of key (see kv_tiers_get); *dctx is created when needed. */
static void lookup(kv_tiers *t, uint64_t key, ZSTD_DCtx **dctx, void **image, size_t *len, int *from,
                   char *err, size_t errlen)
{
    *image = NULL;
    *len = 0;
    *from = -1;
    for (int i = 0; i < t->n; i++) {
        tier_slot *s = &t->slot[i];
        void *stored = NULL, *img = NULL;
        size_t slen = 0, ilen = 0;
        kv_tier_stats own;
        char msg[TIER_ERRLEN] = "";
        double t0 = clock_now_s();
        pthread_mutex_lock(&s->mu);
        kvlm_err rc = s->tier->ops->get(s->tier, key, &stored, &slen, msg, sizeof msg);
        s->tier->ops->get_stats(s->tier, &own);
        pthread_mutex_unlock(&s->mu);
        look_outcome o = LOOK_MISS;
        if (rc != KVLM_OK) {
            free(stored);
            stored = NULL;
            slen = 0;
            o = LOOK_ERROR;
        } else if (stored) {
            rc = zunwrap(dctx, stored, slen, t->p.max_image_bytes, &img, &ilen, msg, sizeof msg);
            o = rc == KVLM_OK ? LOOK_HIT : rc == KVLM_ERR_FORMAT ? LOOK_INVALID : LOOK_ERROR;
        }
        count_lookup(t, i, o, clock_now_s() - t0, slen, &own);
        if (o == LOOK_ERROR) err_set(err, errlen, KVLM_ERR_IO, "%s tier: %s", s->tier->ops->name, msg);
        if (o == LOOK_INVALID) tier_drop(t, i, key);
        if (o != LOOK_HIT) { free(stored); continue; }
        if (!img) { img = stored; ilen = slen; stored = NULL; }   /* stored as it is */
        if (i > 0) promote(t, i, key, img, ilen, stored, slen);
        else free(stored);
        *image = img;
        *len = ilen;
        *from = i;
        return;
    }
}

kvlm_err kv_tiers_get(kv_tiers *t, uint64_t key, void **image, size_t *len, int *tier,
                      char *err, size_t errlen)
{
    atomic_store(&t->used, true);
    pthread_mutex_lock(&t->smu);
    ZSTD_DCtx *d = t->spare;
    t->spare = NULL;
    pthread_mutex_unlock(&t->smu);
    int from;
    lookup(t, key, &d, image, len, &from, err, errlen);
    if (tier) *tier = from;
    pthread_mutex_lock(&t->smu);
    if (!t->spare) { t->spare = d; d = NULL; }
    pthread_mutex_unlock(&t->smu);
    ZSTD_freeDCtx(d);
    return KVLM_OK;
}

void kv_tiers_reject(kv_tiers *t, int tier, uint64_t key)
{
    if (tier < 0 || tier >= t->n) return;
    count_mask(t, 1u << tier, false);
    /* dropped by the writer, from this tier and any it was promoted to, so the caller
       (the scheduler) never waits on a slow tier; a later put of the recomputed block
       is queued behind the drop */
    enqueue(t, WR_DROP, key, NULL, 0, (1u << (tier + 1)) - 1);
}

/* ---- loads -------------------------------------------------------------------------- */

static void load_unref(kv_load *l)
{
    pthread_mutex_lock(&l->mu);
    int refs = --l->refs;
    pthread_mutex_unlock(&l->mu);
    if (refs > 0) return;
    for (int64_t i = 0; i < l->count; i++) free(l->img[i].data);
    free(l->img);
    free(l->keys);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

kv_load *kv_tiers_load(kv_tiers *t, const uint64_t *keys, int64_t n)
{
    atomic_store(&t->used, true);
    kv_load *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    if (pthread_mutex_init(&l->mu, NULL) != 0) { free(l); return NULL; }
    l->refs = 1;
    if (n <= 0) { l->done = true; return l; }
    l->keys = malloc((size_t)n * sizeof *l->keys);
    l->img = calloc((size_t)n, sizeof *l->img);
    if (!l->keys || !l->img) { load_unref(l); return NULL; }
    memcpy(l->keys, keys, (size_t)n * sizeof *l->keys);
    l->n = n;
    l->refs = 2;
    pthread_mutex_lock(&t->lmu);
    if (t->ltail) t->ltail->next = l;
    else t->lhead = l;
    t->ltail = l;
    pthread_cond_signal(&t->cv_load);
    pthread_mutex_unlock(&t->lmu);
    return l;
}

static void notify(kv_tiers *t)
{
    if (t->p.on_load) t->p.on_load(t->p.user);
}

/* Fetches l's keys in order until a miss, a cancel or kv_tiers_free. */
static void run_load(kv_tiers *t, kv_load *l, ZSTD_DCtx **dctx)
{
    for (int64_t i = 0; i < l->n; i++) {   /* keys: [n] */
        pthread_mutex_lock(&l->mu);
        bool cancelled = l->cancelled;
        pthread_mutex_unlock(&l->mu);
        if (cancelled || atomic_load(&t->lstop)) return;
        void *img;
        size_t len;
        int from;
        lookup(t, l->keys[i], dctx, &img, &len, &from, NULL, 0);
        if (!img) return;
        pthread_mutex_lock(&l->mu);
        cancelled = l->cancelled;
        if (!cancelled) {
            l->img[i] = (load_img){ img, len, from };
            l->count = i + 1;
        }
        pthread_mutex_unlock(&l->mu);
        if (cancelled) { free(img); return; }
        notify(t);
    }
}

static void *loader_main(void *arg)
{
    kv_tiers *t = arg;
    ZSTD_DCtx *dctx = NULL;
    for (;;) {
        pthread_mutex_lock(&t->lmu);
        while (!t->lhead && !atomic_load(&t->lstop)) pthread_cond_wait(&t->cv_load, &t->lmu);
        kv_load *l = t->lhead;
        if (l) {
            t->lhead = l->next;
            if (!t->lhead) t->ltail = NULL;
        }
        pthread_mutex_unlock(&t->lmu);
        if (!l) break;   /* stopped and drained */
        if (!atomic_load(&t->lstop)) run_load(t, l, &dctx);
        pthread_mutex_lock(&l->mu);
        l->done = true;
        pthread_mutex_unlock(&l->mu);
        notify(t);
        load_unref(l);
    }
    ZSTD_freeDCtx(dctx);
    return NULL;
}

int64_t kv_load_poll(kv_load *l, bool *done)
{
    pthread_mutex_lock(&l->mu);
    int64_t count = l->count;
    if (done) *done = l->done;
    pthread_mutex_unlock(&l->mu);
    return count;
}

void *kv_load_take(kv_load *l, int64_t i, size_t *len, int *tier)
{
    void *data = NULL;
    pthread_mutex_lock(&l->mu);
    if (i >= 0 && i < l->count) {
        data = l->img[i].data;
        if (len) *len = l->img[i].len;
        if (tier) *tier = l->img[i].tier;
        l->img[i].data = NULL;
    }
    pthread_mutex_unlock(&l->mu);
    return data;
}

void kv_load_free(kv_load *l)
{
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->cancelled = true;
    for (int64_t i = 0; i < l->count; i++) {   /* img: [count] */
        free(l->img[i].data);
        l->img[i].data = NULL;
    }
    pthread_mutex_unlock(&l->mu);
    load_unref(l);
}

/* ---- life cycle --------------------------------------------------------------------- */

kvlm_err kv_tiers_create(const kv_tiers_params *p, kv_tiers **out, char *err, size_t errlen)
{
    kv_tiers *t = calloc(1, sizeof *t);
    if (!t) return err_set(err, errlen, KVLM_ERR_NOMEM, "kv tiers: out of memory");
    t->p = *p;
    if (!t->p.max_image_bytes) t->p.max_image_bytes = KV_TIERS_MAX_IMAGE_DEFAULT;
    if (!t->p.max_queue_bytes) t->p.max_queue_bytes = KV_TIERS_MAX_QUEUE_DEFAULT;
    atomic_init(&t->used, false);
    atomic_init(&t->lstop, false);
    if (pthread_mutex_init(&t->mu, NULL) || pthread_mutex_init(&t->lmu, NULL) || pthread_mutex_init(&t->smu, NULL) ||
        pthread_cond_init(&t->cv_work, NULL) || pthread_cond_init(&t->cv_done, NULL) ||
        pthread_cond_init(&t->cv_load, NULL)) {
        free(t);   /* glibc's init allocates nothing */
        return err_set(err, errlen, KVLM_ERR_NOMEM, "kv tiers: cannot create a mutex");
    }
    if (pthread_create(&t->writer, NULL, writer_main, t) != 0) {
        free(t);
        return err_set(err, errlen, KVLM_ERR_IO, "kv tiers: cannot start the writer thread");
    }
    if (pthread_create(&t->loader, NULL, loader_main, t) != 0) {
        pthread_mutex_lock(&t->mu);
        t->stop = true;
        pthread_cond_signal(&t->cv_work);
        pthread_mutex_unlock(&t->mu);
        pthread_join(t->writer, NULL);
        free(t);
        return err_set(err, errlen, KVLM_ERR_IO, "kv tiers: cannot start the loader thread");
    }
    *out = t;
    return KVLM_OK;
}

kvlm_err kv_tiers_add(kv_tiers *t, kv_tier *tier, char *err, size_t errlen)
{
    if (!tier) return err_set(err, errlen, KVLM_ERR_INVALID, "kv tiers: no tier");
    kvlm_err rc = KVLM_OK;
    if (atomic_load(&t->used)) rc = err_set(err, errlen, KVLM_ERR_INVALID, "kv tiers: a tier added after use");
    else if (t->n >= KVLM_MAX_TIERS) rc = err_set(err, errlen, KVLM_ERR_INVALID, "kv tiers: more than %d tiers", KVLM_MAX_TIERS);
    else if (pthread_mutex_init(&t->slot[t->n].mu, NULL) != 0)
        rc = err_set(err, errlen, KVLM_ERR_NOMEM, "kv tiers: cannot create a mutex");
    if (rc != KVLM_OK) { tier->ops->close(tier); return rc; }
    tier_slot *s = &t->slot[t->n];
    s->tier = tier;
    tier->ops->get_stats(tier, &s->own);
    pthread_mutex_lock(&t->mu);
    t->n++;
    pthread_mutex_unlock(&t->mu);
    return KVLM_OK;
}

int kv_tiers_n(const kv_tiers *t) { return t->n; }

kv_write_mode kv_tiers_mode(const kv_tiers *t) { return t->p.mode; }

void kv_tiers_free(kv_tiers *t)
{
    if (!t) return;
    /* the loader first: it may still queue promotions for the writer */
    pthread_mutex_lock(&t->lmu);
    atomic_store(&t->lstop, true);
    pthread_cond_signal(&t->cv_load);
    pthread_mutex_unlock(&t->lmu);
    pthread_join(t->loader, NULL);
    pthread_mutex_lock(&t->mu);
    t->stop = true;
    pthread_cond_signal(&t->cv_work);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->writer, NULL);
    run_cbs(t->cbs);   /* none: every ticket completed (after() never waits past the last) */
    for (int i = 0; i < t->n; i++) {
        t->slot[i].tier->ops->close(t->slot[i].tier);
        pthread_mutex_destroy(&t->slot[i].mu);
    }
    ZSTD_freeDCtx(t->spare);
    pthread_mutex_destroy(&t->mu);
    pthread_mutex_destroy(&t->lmu);
    pthread_mutex_destroy(&t->smu);
    pthread_cond_destroy(&t->cv_work);
    pthread_cond_destroy(&t->cv_done);
    pthread_cond_destroy(&t->cv_load);
    free(t);
}
