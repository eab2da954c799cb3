/* test_kv_tiers.c - the tiers strung together (kv_tiers): the write queue (order,
 * tickets, flush_to, after, a full queue, a failing tier), lookups (tier order,
 * promotion, reject), chains of loads (stop at the first miss, cancel while a tier
 * is stuck, kv_tiers_free with loads running), per-tier locking (a stuck tier does
 * not block a lookup a faster tier answers), compression (the stored form checked
 * with libzstd itself, hostile frames refused), then the disk tier and the Redis
 * tier adapters end to end.
 *
 * Most tests run on fake tiers: in-memory stores with injectable failures and
 * gates (a call waits at a gate until the test grants a permit, at most GATE_MAX_MS,
 * so a failed test never hangs). Expected images come from test_blob() (a pure
 * function of key and length) or from zpattern() (compressible), never from the
 * code under test; the compressed stored form is built and unpacked here with
 * libzstd's own one-shot calls. Timing bounds are loose (valgrind runs this). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <zstd.h>

#include "testredis.h"
#include "testutil.h"
#include "kv/kv_tier_disk.h"
#include "kv/kv_tier_redis.h"
#include "kv/kv_tiers.h"

enum { FAKE_CAP = 64, LOG_CAP = 512, GATE_MAX_MS = 8000, WAIT_MAX_MS = 5000 };
#define PROMPT_S 1.0   /* "at once": far below GATE_MAX_MS, loose enough for valgrind */

/* ---- a log of every tier call, shared by the fakes ---------------------------------- */

static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_log[LOG_CAP];   /* [g_n_log]: id << 56 | key of each put, in order */
static int g_n_log;

static void log_put(int id, uint64_t key)
{
    pthread_mutex_lock(&g_log_mu);
    if (g_n_log < LOG_CAP) g_log[g_n_log++] = (uint64_t)id << 56 | key;
    pthread_mutex_unlock(&g_log_mu);
}

/* ---- the fake tier ------------------------------------------------------------------ */

typedef struct fake_ent { uint64_t key; uint8_t *data; size_t len; } fake_ent;

typedef struct fake {
    kv_tier base;                 /* base.impl = the fake; what kv_tiers_add takes */
    int id;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    fake_ent ent[FAKE_CAP];       /* [n_ent] */
    int n_ent;
    int64_t gets, puts, drops;    /* calls */
    bool fail_get, fail_put;
    bool gate_get, gate_put;      /* calls wait for a permit */
    int get_permits, put_permits;
    int in_get, in_put;           /* calls waiting at a gate now */
    bool closed;
} fake;

static fake_ent *fake_find(fake *f, uint64_t key)
{
    for (int i = 0; i < f->n_ent; i++)
        if (f->ent[i].key == key) return &f->ent[i];
    return NULL;
}

static void fake_store(fake *f, uint64_t key, const void *data, size_t len)
{
    fake_ent *e = fake_find(f, key);
    if (!e) {
        assert_true(f->n_ent < FAKE_CAP);
        e = &f->ent[f->n_ent++];
        e->key = key;
    } else {
        free(e->data);
    }
    e->data = malloc(len ? len : 1);
    assert_non_null(e->data);
    if (len) memcpy(e->data, data, len);
    e->len = len;
}

static void fake_del(fake *f, uint64_t key)
{
    fake_ent *e = fake_find(f, key);
    if (!e) return;
    free(e->data);
    *e = f->ent[--f->n_ent];
}

/* Waits at a gate (under f->mu) until a permit comes or GATE_MAX_MS pass. */
static void gate_wait(fake *f, bool *gate, int *permits, int *waiting)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += GATE_MAX_MS / 1000;
    (*waiting)++;
    pthread_cond_broadcast(&f->cv);
    while (*gate && *permits == 0)
        if (pthread_cond_timedwait(&f->cv, &f->mu, &until) == ETIMEDOUT) break;
    if (*gate && *permits > 0) (*permits)--;
    (*waiting)--;
}

static kvlm_err fake_get(kv_tier *t, uint64_t key, void **data, size_t *len, char *err, size_t errlen)
{
    fake *f = t->impl;
    *data = NULL;
    *len = 0;
    pthread_mutex_lock(&f->mu);
    f->gets++;
    gate_wait(f, &f->gate_get, &f->get_permits, &f->in_get);
    kvlm_err rc = KVLM_OK;
    fake_ent *e = fake_find(f, key);
    if (f->fail_get) {
        snprintf(err, errlen, "injected get failure");
        rc = KVLM_ERR_IO;
    } else if (e) {
        *data = malloc(e->len ? e->len : 1);
        memcpy(*data, e->data, e->len);
        *len = e->len;
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static kvlm_err fake_put(kv_tier *t, uint64_t key, const void *data, size_t len, char *err, size_t errlen)
{
    fake *f = t->impl;
    pthread_mutex_lock(&f->mu);
    f->puts++;
    gate_wait(f, &f->gate_put, &f->put_permits, &f->in_put);
    kvlm_err rc = KVLM_OK;
    if (f->fail_put) {
        snprintf(err, errlen, "injected put failure");
        rc = KVLM_ERR_IO;
    } else {
        fake_store(f, key, data, len);
        log_put(f->id, key);
    }
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static void fake_drop(kv_tier *t, uint64_t key)
{
    fake *f = t->impl;
    pthread_mutex_lock(&f->mu);
    f->drops++;
    fake_del(f, key);
    pthread_mutex_unlock(&f->mu);
}

static void fake_stats(const kv_tier *t, kv_tier_stats *out)
{
    fake *f = t->impl;
    pthread_mutex_lock(&f->mu);
    *out = (kv_tier_stats){ .n_items = f->n_ent, .evictions = 7 * f->id };   /* evictions: a marker */
    for (int i = 0; i < f->n_ent; i++) out->bytes_stored += (int64_t)f->ent[i].len;
    pthread_mutex_unlock(&f->mu);
}

static void fake_close(kv_tier *t)
{
    fake *f = t->impl;
    pthread_mutex_lock(&f->mu);
    f->closed = true;
    pthread_mutex_unlock(&f->mu);
}

static const kv_tier_ops fake_ops_a = { "fakeA", fake_get, fake_put, fake_drop, fake_stats, fake_close };
static const kv_tier_ops fake_ops_b = { "fakeB", fake_get, fake_put, fake_drop, fake_stats, fake_close };

static fake *fake_new(int id)
{
    fake *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->id = id;
    f->base = (kv_tier){ id == 0 ? &fake_ops_a : &fake_ops_b, f };
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    return f;
}

static void fake_free(fake *f)
{
    if (!f) return;
    for (int i = 0; i < f->n_ent; i++) free(f->ent[i].data);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
}

/* Thread-safe views and knobs of a fake. */
static void fake_set(fake *f, uint64_t key, const void *data, size_t len)
{
    pthread_mutex_lock(&f->mu);
    fake_store(f, key, data, len);
    pthread_mutex_unlock(&f->mu);
}

static void fake_set_blob(fake *f, uint64_t key, size_t len)
{
    uint8_t *b = test_blob(key, len);
    fake_set(f, key, b, len);
    free(b);
}

/* Whether f holds key with exactly want[0..len). want NULL: holds key at all. */
static bool fake_holds(fake *f, uint64_t key, const void *want, size_t len)
{
    pthread_mutex_lock(&f->mu);
    fake_ent *e = fake_find(f, key);
    bool ok = e && (!want || (e->len == len && memcmp(e->data, want, len) == 0));
    pthread_mutex_unlock(&f->mu);
    return ok;
}

static bool fake_holds_blob(fake *f, uint64_t key, size_t len)
{
    uint8_t *b = test_blob(key, len);
    bool ok = fake_holds(f, key, b, len);
    free(b);
    return ok;
}

/* A copy of what f holds under key (NULL if nothing). */
static uint8_t *fake_copy(fake *f, uint64_t key, size_t *len)
{
    pthread_mutex_lock(&f->mu);
    fake_ent *e = fake_find(f, key);
    uint8_t *b = NULL;
    if (e) {
        b = malloc(e->len ? e->len : 1);
        memcpy(b, e->data, e->len);
        *len = e->len;
    }
    pthread_mutex_unlock(&f->mu);
    return b;
}

static void fake_gate(fake *f, bool get, bool on)
{
    pthread_mutex_lock(&f->mu);
    if (get) f->gate_get = on;
    else f->gate_put = on;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static void fake_permit(fake *f, bool get, int n)
{
    pthread_mutex_lock(&f->mu);
    if (get) f->get_permits += n;
    else f->put_permits += n;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static int64_t fake_count(fake *f, const int64_t *field)
{
    pthread_mutex_lock(&f->mu);
    int64_t v = *field;
    pthread_mutex_unlock(&f->mu);
    return v;
}

static int fake_waiting(fake *f, bool get)
{
    pthread_mutex_lock(&f->mu);
    int v = get ? f->in_get : f->in_put;
    pthread_mutex_unlock(&f->mu);
    return v;
}

/* ---- helpers ------------------------------------------------------------------------ */

/* Polls cond every ms for up to WAIT_MAX_MS; the value of cond at the end. */
#define WAIT_FOR(cond) ({ double _t0 = test_now_s(); \
    while (!(cond) && test_now_s() - _t0 < WAIT_MAX_MS / 1e3) test_sleep_ms(1); (cond); })

static kv_tiers *tiers_new(const kv_tiers_params *p, fake *a, fake *b)
{
    kv_tiers_params def = { 0 };
    kv_tiers *t = NULL;
    char err[256] = "";
    assert_int_equal(kv_tiers_create(p ? p : &def, &t, err, sizeof err), KVLM_OK);
    if (a) assert_int_equal(kv_tiers_add(t, &a->base, err, sizeof err), KVLM_OK);
    if (b) assert_int_equal(kv_tiers_add(t, &b->base, err, sizeof err), KVLM_OK);
    pthread_mutex_lock(&g_log_mu);
    g_n_log = 0;
    pthread_mutex_unlock(&g_log_mu);
    return t;
}

static int64_t put_blob(kv_tiers *t, uint64_t key, size_t len)
{
    return kv_tiers_put(t, key, test_blob(key, len), len);
}

static kvlm_tier_stats stats(kv_tiers *t, int i)
{
    kvlm_tier_stats s;
    kv_tiers_get_stats(t, i, &s);
    return s;
}

/* A get that must hit tier want_tier with exactly want[0..len). */
static void get_hit(kv_tiers *t, uint64_t key, const void *want, size_t len, int want_tier)
{
    void *img = (void *)1;
    size_t got = 0;
    int tier = -2;
    char err[256] = "";
    assert_int_equal(kv_tiers_get(t, key, &img, &got, &tier, err, sizeof err), KVLM_OK);
    if (!img) fail_msg("key %llx: a miss (%s)", (unsigned long long)key, err);
    assert_int_equal(tier, want_tier);
    assert_int_equal(got, len);
    if (len) assert_memory_equal(img, want, len);
    free(img);
}

static void get_hit_blob(kv_tiers *t, uint64_t key, size_t len, int want_tier)
{
    uint8_t *b = test_blob(key, len);
    get_hit(t, key, b, len, want_tier);
    free(b);
}

static void get_miss(kv_tiers *t, uint64_t key)
{
    void *img = (void *)1;
    size_t got = 1;
    int tier = -2;
    assert_int_equal(kv_tiers_get(t, key, &img, &got, &tier, NULL, 0), KVLM_OK);
    assert_null(img);
    assert_int_equal(got, 0);
    assert_int_equal(tier, -1);
}

/* Compressible bytes: short runs of a few letters (zstd level 1 shrinks them ~10x). */
static uint8_t *zpattern(uint64_t key, size_t len)
{
    uint8_t *b = malloc(len ? len : 1);
    assert_non_null(b);
    for (size_t i = 0; i < len; i++)   /* b: [len] */
        b[i] = (uint8_t)('a' + (test_mix64(key + i / 64) % 4));
    return b;
}

static void put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* The documented stored form built with libzstd directly: "KVLMZST1", raw (LE), then
 * a frame of src[0..n) (with or without the content size in its header). */
static uint8_t *zstored(const void *src, size_t n, uint64_t raw, bool content_size, size_t *out_len)
{
    size_t cap = 16 + ZSTD_compressBound(n);
    uint8_t *b = malloc(cap);
    assert_non_null(b);
    memcpy(b, "KVLMZST1", 8);
    put_u64le(b + 8, raw);
    ZSTD_CCtx *c = ZSTD_createCCtx();
    assert_non_null(c);
    ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 1);
    ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, content_size ? 1 : 0);
    size_t z = content_size ? ZSTD_compress2(c, b + 16, cap - 16, src, n) : 0;
    if (!content_size) {   /* streaming without a pledged size: no content size in the header */
        ZSTD_outBuffer o = { b + 16, cap - 16, 0 };
        ZSTD_inBuffer in = { src, n, 0 };
        size_t r = ZSTD_compressStream2(c, &o, &in, ZSTD_e_end);
        assert_int_equal(r, 0);
        z = o.pos;
    }
    assert_false(ZSTD_isError(z));
    ZSTD_freeCCtx(c);
    *out_len = 16 + z;
    return b;
}

/* ---- writing ------------------------------------------------------------------------ */

static void test_write_through(void **state)
{
    (void)state;
    fake *a = fake_new(0), *b = fake_new(1);
    kv_tiers *t = tiers_new(NULL, a, b);
    assert_int_equal(kv_tiers_n(t), 2);
    enum { N = 20 };
    int64_t bytes = 0;
    for (uint64_t k = 1; k <= N; k++) {
        assert_int_equal(put_blob(t, k, 100 + k), (int64_t)k);   /* tickets 1, 2, ... */
        bytes += (int64_t)(100 + k);
    }
    assert_int_equal(kv_tiers_last_ticket(t), N);
    kv_tiers_flush(t);
    assert_true(kv_tiers_written(t, N));
    assert_true(kv_tiers_written(t, 0));
    /* every image, in order, to tier 0 then tier 1 */
    pthread_mutex_lock(&g_log_mu);
    assert_int_equal(g_n_log, 2 * N);
    for (int i = 0; i < 2 * N; i++) assert_int_equal(g_log[i], (uint64_t)(i % 2) << 56 | (uint64_t)(i / 2 + 1));
    pthread_mutex_unlock(&g_log_mu);
    for (uint64_t k = 1; k <= N; k++) {
        assert_true(fake_holds_blob(a, k, 100 + k));
        assert_true(fake_holds_blob(b, k, 100 + k));
    }
    for (int i = 0; i < 2; i++) {
        kvlm_tier_stats s = stats(t, i);
        assert_string_equal(s.name, i ? "fakeB" : "fakeA");
        assert_int_equal(s.puts, N);
        assert_int_equal(s.bytes_written, bytes);
        assert_int_equal(s.dropped + s.errors + s.hits + s.misses, 0);
        assert_int_equal(s.n_items, N);          /* the tier's own */
        assert_int_equal(s.bytes_stored, bytes);
        assert_int_equal(s.evictions, 7 * i);
    }
    kvlm_tier_stats none = stats(t, 2);
    assert_int_equal(none.puts, 0);
    assert_string_equal(none.name, "");

    /* a failing tier counts an error; the other still gets the image */
    pthread_mutex_lock(&a->mu);
    a->fail_put = true;
    pthread_mutex_unlock(&a->mu);
    int64_t tk = put_blob(t, 99, 50);
    kv_tiers_flush_to(t, tk);
    assert_false(fake_holds(a, 99, NULL, 0));
    assert_true(fake_holds_blob(b, 99, 50));
    assert_int_equal(stats(t, 0).errors, 1);
    assert_int_equal(stats(t, 0).puts, N);
    assert_int_equal(stats(t, 1).puts, N + 1);

    /* no tier added after use; the tier is closed on that failure */
    fake *c = fake_new(1);
    char err[256] = "";
    assert_int_equal(kv_tiers_add(t, &c->base, err, sizeof err), KVLM_ERR_INVALID);
    assert_true(c->closed);
    fake_free(c);

    /* kv_tiers_free drains: puts still pending are all attempted */
    fake_gate(b, false, true);
    for (uint64_t k = 200; k < 205; k++) put_blob(t, k, 64);
    assert_true(WAIT_FOR(fake_waiting(b, false) == 1));
    fake_gate(b, false, false);
    kv_tiers_free(t);
    for (uint64_t k = 200; k < 205; k++) assert_true(fake_holds_blob(b, k, 64));
    assert_true(a->closed && b->closed);
    fake_free(a);
    fake_free(b);
}

/* What a kv_tiers_after callback saw when it ran. */
typedef struct cb_rec {
    kv_tiers *t;
    fake *f;
    uint64_t key;
    int64_t ticket;
    atomic_int calls;
    pthread_t thread;
    bool written, held;   /* kv_tiers_written(ticket), the fake holding key, at the call */
    int order;
} cb_rec;

static atomic_int g_cb_order;

static void on_written(void *user)
{
    cb_rec *r = user;
    r->thread = pthread_self();
    r->written = kv_tiers_written(r->t, r->ticket);
    r->held = !r->f || fake_holds(r->f, r->key, NULL, 0);
    r->order = atomic_fetch_add(&g_cb_order, 1);
    atomic_fetch_add(&r->calls, 1);
}

static void test_flush_after(void **state)
{
    (void)state;
    fake *a = fake_new(0);
    kv_tiers *t = tiers_new(NULL, a, NULL);
    atomic_store(&g_cb_order, 0);
    fake_gate(a, false, true);
    int64_t t1 = put_blob(t, 1, 100), t2 = put_blob(t, 2, 100);
    assert_int_equal(t2, t1 + 1);

    cb_rec r0 = { .t = t, .ticket = 0 };
    assert_int_equal(kv_tiers_after(t, 0, on_written, &r0), KVLM_OK);   /* written already: at once, here */
    assert_int_equal(atomic_load(&r0.calls), 1);
    assert_true(pthread_equal(r0.thread, pthread_self()));

    cb_rec r1 = { .t = t, .f = a, .key = 1, .ticket = t1 }, r1b = r1, r2 = { .t = t, .f = a, .key = 2, .ticket = t2 };
    assert_int_equal(kv_tiers_after(t, t2, on_written, &r2), KVLM_OK);
    assert_int_equal(kv_tiers_after(t, t1, on_written, &r1), KVLM_OK);
    assert_int_equal(kv_tiers_after(t, t1, on_written, &r1b), KVLM_OK);
    test_sleep_ms(50);
    assert_int_equal(atomic_load(&r1.calls) + atomic_load(&r2.calls), 0);   /* not before the tier has it */
    assert_false(kv_tiers_written(t, t1));

    fake_permit(a, false, 1);
    kv_tiers_flush_to(t, t1);
    assert_true(kv_tiers_written(t, t1));
    assert_true(WAIT_FOR(atomic_load(&r1b.calls) == 1));
    test_sleep_ms(30);
    assert_int_equal(atomic_load(&r2.calls), 0);
    assert_false(kv_tiers_written(t, t2));

    fake_permit(a, false, 1);
    kv_tiers_flush_to(t, t2);
    assert_true(WAIT_FOR(atomic_load(&r2.calls) == 1));
    test_sleep_ms(20);
    cb_rec *rs[3] = { &r1, &r1b, &r2 };
    for (int i = 0; i < 3; i++) {   /* once each, on the writer thread, in ticket then registration order */
        assert_int_equal(atomic_load(&rs[i]->calls), 1);
        assert_false(pthread_equal(rs[i]->thread, pthread_self()));
        assert_true(rs[i]->written);
        assert_true(rs[i]->held);
        assert_int_equal(rs[i]->order, 1 + i);
    }

    /* written already, and a ticket never handed out (= the last): at once */
    cb_rec r3 = { .t = t, .ticket = t1 };
    assert_int_equal(kv_tiers_after(t, t1, on_written, &r3), KVLM_OK);
    assert_int_equal(atomic_load(&r3.calls), 1);
    cb_rec r4 = { .t = t, .ticket = t2 };
    assert_int_equal(kv_tiers_after(t, 1000, on_written, &r4), KVLM_OK);
    assert_int_equal(atomic_load(&r4.calls), 1);
    kv_tiers_flush_to(t, 1000);   /* returns: clamped to the last ticket */

    /* kv_tiers_free calls what is still waiting, once */
    int64_t t3 = put_blob(t, 3, 100);
    cb_rec r5 = { .t = t, .ticket = t3 };
    assert_int_equal(kv_tiers_after(t, t3, on_written, &r5), KVLM_OK);
    fake_gate(a, false, false);
    kv_tiers_free(t);
    assert_int_equal(atomic_load(&r5.calls), 1);
    assert_int_equal(atomic_load(&r1.calls), 1);
    fake_free(a);
}

/* A write that completes while callbacks wait only for later tickets calls none of
 * them (found by bench/tiers: a response ended before its last blocks were below). */
static void test_after_not_early(void **state)
{
    (void)state;
    fake *a = fake_new(0);
    kv_tiers *t = tiers_new(NULL, a, NULL);
    atomic_store(&g_cb_order, 0);
    fake_gate(a, false, true);
    const int64_t t1 = put_blob(t, 1, 100), t2 = put_blob(t, 2, 100), t3 = put_blob(t, 3, 100);
    cb_rec r2 = { .t = t, .f = a, .key = 2, .ticket = t2 }, r3 = { .t = t, .f = a, .key = 3, .ticket = t3 };
    assert_int_equal(kv_tiers_after(t, t3, on_written, &r3), KVLM_OK);
    assert_int_equal(kv_tiers_after(t, t2, on_written, &r2), KVLM_OK);
    fake_permit(a, false, 1);                         /* t1 only: nobody waits for it */
    kv_tiers_flush_to(t, t1);
    test_sleep_ms(30);
    assert_int_equal(atomic_load(&r2.calls) + atomic_load(&r3.calls), 0);
    fake_permit(a, false, 1);                         /* t2: r2, not r3 */
    kv_tiers_flush_to(t, t2);
    test_sleep_ms(30);
    assert_int_equal(atomic_load(&r2.calls), 1);
    assert_int_equal(atomic_load(&r3.calls), 0);
    assert_true(r2.written);
    fake_permit(a, false, 1);
    kv_tiers_flush_to(t, t3);
    assert_int_equal(atomic_load(&r3.calls), 1);
    assert_true(r3.written);
    fake_gate(a, false, false);
    kv_tiers_free(t);
    fake_free(a);
}

static void test_queue_full(void **state)
{
    (void)state;
    fake *a = fake_new(0), *b = fake_new(1);
    kv_tiers_params p = { .max_queue_bytes = 1000 };
    kv_tiers *t = tiers_new(&p, a, b);
    fake_gate(a, false, true);
    assert_int_equal(put_blob(t, 1, 400), 1);
    assert_true(WAIT_FOR(fake_waiting(a, false) == 1));   /* in flight: still counted */
    assert_int_equal(put_blob(t, 2, 400), 2);
    assert_int_equal(put_blob(t, 3, 400), 0);             /* 1200 > 1000: dropped */
    assert_int_equal(put_blob(t, 4, 200), 3);             /* 1000: fits */
    assert_int_equal(put_blob(t, 5, 1), 0);
    assert_int_equal(kv_tiers_last_ticket(t), 3);
    for (int i = 0; i < 2; i++) assert_int_equal(stats(t, i).dropped, 2);
    fake_gate(a, false, false);
    kv_tiers_flush(t);
    for (int i = 0; i < 2; i++) {
        fake *f = i ? b : a;
        assert_true(fake_holds_blob(f, 1, 400) && fake_holds_blob(f, 2, 400) && fake_holds_blob(f, 4, 200));
        assert_false(fake_holds(f, 3, NULL, 0) || fake_holds(f, 5, NULL, 0));
        assert_int_equal(stats(t, i).puts, 3);
    }
    assert_int_equal(put_blob(t, 6, 1000), 4);            /* drained: room again */
    assert_int_equal(put_blob(t, 7, 1001), 0);            /* never fits */
    kv_tiers_free(t);
    fake_free(a);
    fake_free(b);
}

/* ---- reading ------------------------------------------------------------------------ */

static void test_get_promotion(void **state)
{
    (void)state;
    fake *a = fake_new(0), *b = fake_new(1);
    kv_tiers *t = tiers_new(NULL, a, b);
    fake_set_blob(b, 10, 3000);
    get_hit_blob(t, 10, 3000, 1);
    assert_int_equal(stats(t, 0).misses, 1);
    assert_int_equal(stats(t, 1).hits, 1);
    assert_int_equal(stats(t, 1).bytes_read, 3000);
    kv_tiers_flush(t);
    assert_true(fake_holds_blob(a, 10, 3000));   /* promoted */
    get_hit_blob(t, 10, 3000, 0);
    assert_int_equal(stats(t, 0).hits, 1);
    assert_int_equal(fake_count(b, &b->gets), 1);

    /* a compressed stored form is promoted as it is (no recompression) */
    uint8_t *img = zpattern(11, 20000);
    size_t slen;
    uint8_t *st = zstored(img, 20000, 20000, true, &slen);
    fake_set(b, 11, st, slen);
    get_hit(t, 11, img, 20000, 1);
    assert_int_equal(stats(t, 1).bytes_read, 3000 + (int64_t)slen);
    kv_tiers_flush(t);
    assert_true(fake_holds(a, 11, st, slen));
    free(st);
    free(img);

    /* a tier that fails is a miss counted as an error; the next tier answers */
    fake_set_blob(b, 12, 100);
    pthread_mutex_lock(&a->mu);
    a->fail_get = true;
    pthread_mutex_unlock(&a->mu);
    void *got;
    size_t len;
    int tier;
    char err[256] = "";
    assert_int_equal(kv_tiers_get(t, 12, &got, &len, &tier, err, sizeof err), KVLM_OK);
    assert_non_null(got);
    assert_int_equal(tier, 1);
    assert_non_null(strstr(err, "injected get failure"));
    assert_non_null(strstr(err, "fakeA"));
    free(got);
    assert_int_equal(stats(t, 0).errors, 1);
    get_miss(t, 13);
    kvlm_tier_stats s0 = stats(t, 0), s1 = stats(t, 1);
    assert_int_equal(s0.errors, 2);
    assert_int_equal(s0.hits + s0.misses, 5);   /* one lookup each */
    assert_int_equal(s1.hits + s1.misses, 4);
    int64_t h = 0;
    for (int i = 0; i < KVLM_TIER_HIST_BUCKETS; i++) h += s0.load_hist[i];
    assert_int_equal(h, 5);
    assert_true(s0.load_seconds > 0 && s0.load_seconds < 5);
    kv_tiers_free(t);
    fake_free(a);
    fake_free(b);
}

static void test_reject(void **state)
{
    (void)state;
    fake *a = fake_new(0), *b = fake_new(1);
    kv_tiers *t = tiers_new(NULL, a, b);
    fake_set_blob(a, 1, 500);
    fake_set_blob(b, 1, 500);
    get_hit_blob(t, 1, 500, 0);
    kv_tiers_reject(t, 0, 1);
    kv_tiers_flush(t);                       /* the drop is a write-queue item */
    assert_false(fake_holds(a, 1, NULL, 0));
    assert_true(fake_holds(b, 1, NULL, 0));   /* only the tier it came from */
    assert_int_equal(stats(t, 0).invalid, 1);
    assert_int_equal(stats(t, 1).invalid, 0);

    /* rejected after a promotion: gone from the tier and from the tiers above */
    fake_set_blob(b, 2, 500);
    get_hit_blob(t, 2, 500, 1);
    kv_tiers_reject(t, 1, 2);
    kv_tiers_flush(t);
    assert_false(fake_holds(a, 2, NULL, 0));
    assert_false(fake_holds(b, 2, NULL, 0));
    assert_int_equal(stats(t, 1).invalid, 1);
    get_miss(t, 2);
    kv_tiers_reject(t, 2, 1);    /* out of range: ignored */
    kv_tiers_reject(t, -1, 1);
    assert_int_equal(stats(t, 0).invalid + stats(t, 1).invalid, 2);
    kv_tiers_free(t);
    fake_free(a);
    fake_free(b);
}

/* ---- loads -------------------------------------------------------------------------- */

static atomic_int g_on_load;

static void count_on_load(void *user)
{
    (void)user;
    atomic_fetch_add(&g_on_load, 1);
}

static void test_load_chain(void **state)
{
    (void)state;
    fake *a = fake_new(0), *b = fake_new(1);
    atomic_store(&g_on_load, 0);
    kv_tiers_params p = { .on_load = count_on_load };
    kv_tiers *t = tiers_new(&p, a, b);
    const uint64_t keys[6] = { 100, 101, 102, 103, 104, 105 };
    fake_set_blob(a, 100, 1000);
    fake_set_blob(a, 101, 1001);
    fake_set_blob(b, 102, 1002);
    fake_set_blob(a, 104, 1004);   /* after the first miss (103): never fetched */
    kv_load *l = kv_tiers_load(t, keys, 6);
    assert_non_null(l);
    bool done = false;
    assert_true(WAIT_FOR((kv_load_poll(l, &done), done)));
    assert_int_equal(kv_load_poll(l, &done), 3);
    assert_true(WAIT_FOR(atomic_load(&g_on_load) == 4));   /* three fetches, then done */
    for (int64_t i = 0; i < 3; i += 2) {   /* image 1 stays: kv_load_free frees it */
        size_t len;
        int tier;
        void *img = kv_load_take(l, i, &len, &tier);
        assert_non_null(img);
        assert_int_equal(len, 1000 + (size_t)i);
        assert_int_equal(tier, i == 2 ? 1 : 0);
        uint8_t *want = test_blob(keys[i], len);
        assert_memory_equal(img, want, len);
        free(want);
        free(img);
    }
    assert_null(kv_load_take(l, 0, NULL, NULL));   /* taken */
    assert_null(kv_load_take(l, 3, NULL, NULL));   /* not fetched */
    assert_null(kv_load_take(l, -1, NULL, NULL));
    assert_int_equal(fake_count(a, &a->gets), 4);   /* 100, 101, 102, 103: not 104 */
    kv_load_free(l);
    kv_tiers_flush(t);
    assert_true(fake_holds_blob(a, 102, 1002));   /* the load promoted what tier 1 had */

    kv_load *empty = kv_tiers_load(t, keys, 0);
    assert_non_null(empty);
    assert_int_equal(kv_load_poll(empty, &done), 0);
    assert_true(done);
    kv_load_free(empty);
    kv_load_free(NULL);
    kv_tiers_free(t);
    fake_free(a);
    fake_free(b);
}

static void *permit_later(void *arg)
{
    test_sleep_ms(100);
    fake_permit(arg, true, 1);
    return NULL;
}

static void test_load_cancel(void **state)
{
    (void)state;
    fake *a = fake_new(0);
    kv_tiers *t = tiers_new(NULL, a, NULL);
    const uint64_t keys[3] = { 1, 2, 3 };
    for (int i = 0; i < 3; i++) fake_set_blob(a, keys[i], 200);
    fake_gate(a, true, true);
    kv_load *l = kv_tiers_load(t, keys, 3), *l2 = kv_tiers_load(t, keys, 1);
    assert_true(WAIT_FOR(fake_waiting(a, true) == 1));   /* the loader is stuck on key 1 */
    double t0 = test_now_s();
    kv_load_free(l);
    double dt = test_now_s() - t0;
    print_message("kv_load_free with the tier stuck: %.3f ms\n", dt * 1e3);
    assert_true(dt < PROMPT_S);
    fake_gate(a, true, false);
    bool done = false;
    assert_true(WAIT_FOR((kv_load_poll(l2, &done), done)));   /* the next load runs */
    assert_int_equal(kv_load_poll(l2, NULL), 1);
    assert_int_equal(fake_count(a, &a->gets), 2);   /* the cancelled load stopped after the key in flight */
    kv_load_free(l2);

    /* kv_tiers_free with a load stuck and one queued: both done, handles freed after */
    fake_gate(a, true, true);
    l = kv_tiers_load(t, keys, 3);
    l2 = kv_tiers_load(t, keys, 3);
    assert_true(WAIT_FOR(fake_waiting(a, true) == 1));
    pthread_t th;   /* lets the key in flight finish once kv_tiers_free has begun */
    assert_int_equal(pthread_create(&th, NULL, permit_later, a), 0);
    kv_tiers_free(t);
    pthread_join(th, NULL);
    assert_true(kv_load_poll(l, &done) <= 1 && done);
    assert_int_equal(kv_load_poll(l2, &done), 0);
    assert_true(done);
    kv_load_free(l);
    kv_load_free(l2);
    fake_free(a);
}

/* A tier stuck in a call (the loader's get, the writer's put) does not block a
 * lookup that the tier above it answers, nor the counters. */
static void test_slow_tier_no_block(void **state)
{
    (void)state;
    fake *a = fake_new(0), *b = fake_new(1);
    kv_tiers *t = tiers_new(NULL, a, b);
    fake_set_blob(a, 1, 4000);
    fake_gate(b, true, true);
    fake_gate(b, false, true);
    const uint64_t absent = 77;
    kv_load *l = kv_tiers_load(t, &absent, 1);
    assert_true(WAIT_FOR(fake_waiting(b, true) == 1));
    double t0 = test_now_s();
    get_hit_blob(t, 1, 4000, 0);
    assert_int_equal(stats(t, 1).hits, 0);   /* the counters do not wait for the tier either */
    double dt = test_now_s() - t0;
    assert_true(dt < PROMPT_S);

    print_message("get from tier 0 while tier 1 is stuck in the loader's get: %.3f ms\n", dt * 1e3);
    fake_gate(b, true, false);
    bool done = false;
    assert_true(WAIT_FOR((kv_load_poll(l, &done), done)));
    assert_int_equal(kv_load_poll(l, NULL), 0);

    int64_t tk = put_blob(t, 2, 4000);
    assert_true(WAIT_FOR(fake_holds_blob(a, 2, 4000) && fake_waiting(b, false) == 1));
    t0 = test_now_s();
    get_hit_blob(t, 2, 4000, 0);
    dt = test_now_s() - t0;
    print_message("get from tier 0 while tier 1 is stuck in the writer's put: %.3f ms\n", dt * 1e3);
    assert_true(dt < PROMPT_S);
    assert_false(kv_tiers_written(t, tk));
    fake_gate(b, false, false);
    kv_tiers_flush_to(t, tk);
    assert_true(fake_holds_blob(b, 2, 4000));
    kv_load_free(l);
    kv_tiers_free(t);
    fake_free(a);
    fake_free(b);
}

/* ---- compression -------------------------------------------------------------------- */

static uint64_t get_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void test_compress_roundtrip(void **state)
{
    (void)state;
    fake *a = fake_new(0);
    kv_tiers_params p = { .compress = true };
    kv_tiers *t = tiers_new(&p, a, NULL);
    enum { N = 100000 };
    uint8_t *img = zpattern(5, N);
    uint8_t *keep = malloc(N);
    memcpy(keep, img, N);
    kv_tiers_flush_to(t, kv_tiers_put(t, 5, img, N));
    size_t slen = 0;
    uint8_t *st = fake_copy(a, 5, &slen);
    assert_non_null(st);
    assert_memory_equal(st, "KVLMZST1", 8);
    assert_int_equal(get_u64le(st + 8), N);
    assert_true(slen < N / 4);
    uint8_t *raw = malloc(N);
    assert_int_equal(ZSTD_decompress(raw, N, st + 16, slen - 16), N);   /* libzstd's own reading */
    assert_memory_equal(raw, keep, N);
    assert_int_equal(stats(t, 0).bytes_written, (int64_t)slen);
    get_hit(t, 5, keep, N, 0);
    assert_int_equal(stats(t, 0).bytes_read, (int64_t)slen);

    /* incompressible: stored as it is */
    kv_tiers_flush_to(t, put_blob(t, 6, 5000));
    assert_true(fake_holds_blob(a, 6, 5000));
    get_hit_blob(t, 6, 5000, 0);

    /* the empty image */
    kv_tiers_flush_to(t, kv_tiers_put(t, 8, malloc(1), 0));
    get_hit(t, 8, NULL, 0, 0);
    free(st);
    free(raw);
    kv_tiers_free(t);
    fake_free(a);

    /* compress off: stored raw; an image that starts with the magic is wrapped anyway */
    a = fake_new(0);
    kv_tiers_params off = { .compress = false };
    t = tiers_new(&off, a, NULL);
    kv_tiers_flush_to(t, put_blob(t, 1, 3000));
    assert_true(fake_holds_blob(a, 1, 3000));
    memcpy(keep, "KVLMZST1", 8);
    img = malloc(N);
    memcpy(img, keep, N);
    kv_tiers_flush_to(t, kv_tiers_put(t, 2, img, N));
    st = fake_copy(a, 2, &slen);
    assert_memory_equal(st, "KVLMZST1", 8);
    assert_int_equal(get_u64le(st + 8), N);
    assert_int_equal(ZSTD_decompress(raw = malloc(N), N, st + 16, slen - 16), N);
    assert_memory_equal(raw, keep, N);
    get_hit(t, 2, keep, N, 0);
    /* and a compressed value reads back without compress */
    uint8_t *z = zstored(keep + 8, N - 8, N - 8, true, &slen);
    fake_set(a, 3, z, slen);
    get_hit(t, 3, keep + 8, N - 8, 0);
    free(z);
    free(st);
    free(raw);
    free(keep);
    kv_tiers_free(t);
    fake_free(a);
}

typedef struct hostile { const char *what; uint8_t *data; size_t len; } hostile;

/* Stored values that must never decode: each is refused (a miss, counted invalid,
 * dropped from the tier), and kv_tiers_decode says KVLM_ERR_FORMAT. */
static void test_hostile_frames(void **state)
{
    (void)state;
    enum { MAX = 1 << 20, BIG = 8 << 20, N = 50000 };
    uint8_t *img = zpattern(9, N);
    uint8_t *zeros = calloc(1, BIG);
    assert_non_null(zeros);
    hostile h[16];
    int n = 0;
    size_t len;
    uint8_t *ok = zstored(img, N, N, true, &len);

    h[n].what = "truncated frame";
    h[n].data = malloc(len); memcpy(h[n].data, ok, len - 5); h[n++].len = len - 5;
    h[n].what = "raw size one more than the frame";
    h[n].data = zstored(img, N, N + 1, true, &h[n].len); n++;
    h[n].what = "raw size one less than the frame";
    h[n].data = zstored(img, N, N - 1, true, &h[n].len); n++;
    h[n].what = "lying raw size, frame without a content size";
    h[n].data = zstored(img, N, 1000, false, &h[n].len); n++;
    h[n].what = "raw size above the max";
    h[n].data = zstored(zeros, BIG, BIG, true, &h[n].len); n++;
    h[n].what = "bomb declared small (content size in the frame)";
    h[n].data = zstored(zeros, BIG, 4096, true, &h[n].len); n++;
    h[n].what = "bomb declared small (no content size)";
    h[n].data = zstored(zeros, BIG, 4096, false, &h[n].len); n++;
    h[n].what = "raw size 2^63";
    h[n].data = zstored(img, N, 1ull << 63, false, &h[n].len); n++;
    h[n].what = "magic and a short header";
    h[n].data = malloc(12); memcpy(h[n].data, "KVLMZST1\x10\x00\x00\x00", 12); h[n++].len = 12;
    h[n].what = "magic alone";
    h[n].data = malloc(8); memcpy(h[n].data, "KVLMZST1", 8); h[n++].len = 8;
    h[n].what = "garbage after the header";
    h[n].data = test_blob(3, 4000); memcpy(h[n].data, "KVLMZST1", 8); put_u64le(h[n].data + 8, 3000); h[n++].len = 4000;
    h[n].what = "trailing bytes after the frame";
    h[n].data = malloc(len + 3); memcpy(h[n].data, ok, len); memcpy(h[n].data + len, "xyz", 3); h[n++].len = len + 3;
    h[n].what = "two frames";
    h[n].data = malloc(2 * len - 16); memcpy(h[n].data, ok, len); memcpy(h[n].data + len, ok + 16, len - 16);
    put_u64le(h[n].data + 8, 2 * N); h[n++].len = 2 * len - 16;
    h[n].what = "an uncompressed image above the max";
    h[n].data = test_blob(4, MAX + 1); h[n++].len = MAX + 1;
    assert_true(n <= 16);

    for (int i = 0; i < n; i++) {
        void *out = (void *)1;
        size_t olen = 1;
        char err[256] = "";
        kvlm_err rc = kv_tiers_decode(h[i].data, h[i].len, MAX, &out, &olen, err, sizeof err);
        if (rc != KVLM_ERR_FORMAT) fail_msg("%s: decoded (%d)", h[i].what, (int)rc);
        assert_null(out);
        assert_int_equal(olen, 0);
    }
    /* the reference decodes: the good form, a raw image at the max */
    void *out;
    size_t olen;
    assert_int_equal(kv_tiers_decode(ok, len, MAX, &out, &olen, NULL, 0), KVLM_OK);
    assert_int_equal(olen, N);
    assert_memory_equal(out, img, N);
    free(out);
    uint8_t *at_max = test_blob(5, MAX);
    assert_int_equal(kv_tiers_decode(at_max, MAX, MAX, &out, &olen, NULL, 0), KVLM_OK);
    assert_int_equal(olen, MAX);
    assert_memory_equal(out, at_max, MAX);
    free(out);
    free(at_max);
    /* kv_tiers_encode is read by libzstd */
    void *enc;
    size_t elen;
    assert_int_equal(kv_tiers_encode(img, N, true, &enc, &elen, NULL, 0), KVLM_OK);
    uint8_t *back = malloc(N);
    assert_int_equal(ZSTD_decompress(back, N, (uint8_t *)enc + 16, elen - 16), N);
    assert_memory_equal(back, img, N);
    free(back);
    free(enc);

    /* through the tiers: tier 0 holds each hostile value, tier 1 the real image of key 0 */
    fake *a = fake_new(0), *b = fake_new(1);
    kv_tiers_params p = { .max_image_bytes = MAX };
    kv_tiers *t = tiers_new(&p, a, b);
    for (int i = 0; i < n; i++) fake_set(a, (uint64_t)i, h[i].data, h[i].len);
    fake_set(b, 0, img, N);
    get_hit(t, 0, img, N, 1);
    for (int i = 1; i < n; i++) get_miss(t, (uint64_t)i);
    for (int i = 1; i < n; i++)
        if (fake_holds(a, (uint64_t)i, NULL, 0)) fail_msg("%s: not dropped", h[i].what);
    kvlm_tier_stats s = stats(t, 0);
    assert_int_equal(s.invalid, n);
    assert_int_equal(s.misses, n);
    assert_int_equal(s.hits + s.errors, 0);
    kv_tiers_flush(t);
    get_hit(t, 0, img, N, 0);   /* the promoted good image replaced the bad one */
    kv_tiers_free(t);
    fake_free(a);
    fake_free(b);
    for (int i = 0; i < n; i++) free(h[i].data);
    free(ok);
    free(zeros);
    free(img);
}

/* ---- the disk tier ------------------------------------------------------------------ */

static void test_disk_adapter(void **state)
{
    (void)state;
    char *dir = test_make_tmpdir("kvtiers");
    assert_non_null(dir);
    char err[512] = "";
    kv_tier *d = NULL;
    assert_int_equal(kv_tier_disk_new(&d, "", 1000, err, sizeof err), KVLM_ERR_INVALID);
    assert_null(d);
    assert_int_equal(kv_tier_disk_new(&d, dir, 3 * 4000 + 500, err, sizeof err), KVLM_OK);
    kv_tiers *t = tiers_new(NULL, NULL, NULL);
    assert_int_equal(kv_tiers_add(t, d, err, sizeof err), KVLM_OK);
    for (uint64_t k = 1; k <= 5; k++) put_blob(t, k, 4000);
    kv_tiers_flush(t);
    kvlm_tier_stats s = stats(t, 0);
    assert_string_equal(s.name, "disk");
    assert_int_equal(s.puts, 5);
    assert_int_equal(s.bytes_written, 5 * 4000);
    assert_int_equal(s.n_items, 3);
    assert_int_equal(s.bytes_stored, 3 * 4000);
    assert_int_equal(s.evictions, 2);
    for (uint64_t k = 1; k <= 5; k++) {   /* the files, read here */
        char name[21], path[4200];
        kv_disk_file_name(k, name);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        size_t len = 0;
        char *f = test_read_file(path, &len);
        if (k <= 2) { assert_null(f); continue; }
        assert_non_null(f);
        uint8_t *want = test_blob(k, 4000);
        assert_int_equal(len, 4000);
        assert_memory_equal(f, want, 4000);
        free(want);
        free(f);
    }
    get_hit_blob(t, 4, 4000, 0);
    get_miss(t, 1);                        /* evicted: a miss, not an error */
    s = stats(t, 0);
    assert_int_equal(s.hits, 1);
    assert_int_equal(s.misses, 1);
    assert_int_equal(s.errors, 0);
    kv_tiers_reject(t, 0, 4);
    kv_tiers_flush(t);
    get_miss(t, 4);
    assert_int_equal(stats(t, 0).invalid, 1);
    kv_tiers_free(t);

    /* a restart finds the files; compressed writes; an injected full disk costs
     * one error and the tier below still gets the image */
    fake *b = fake_new(1);
    kv_tiers_params p = { .compress = true };
    assert_int_equal(kv_tier_disk_new(&d, dir, 1 << 20, err, sizeof err), KVLM_OK);
    kv_disk *raw = d->impl;
    t = tiers_new(&p, NULL, NULL);
    assert_int_equal(kv_tiers_add(t, d, err, sizeof err), KVLM_OK);
    assert_int_equal(kv_tiers_add(t, &b->base, err, sizeof err), KVLM_OK);
    assert_int_equal(stats(t, 0).n_items, 2);
    get_hit_blob(t, 5, 4000, 0);
    uint8_t *img = zpattern(6, 60000), *keep = malloc(60000);
    memcpy(keep, img, 60000);
    kv_tiers_flush_to(t, kv_tiers_put(t, 6, img, 60000));
    char name[21], path[4200];
    kv_disk_file_name(6, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t flen = 0;
    char *f = test_read_file(path, &flen);
    assert_non_null(f);
    assert_memory_equal(f, "KVLMZST1", 8);
    assert_int_equal(stats(t, 0).bytes_written, (int64_t)flen);
    free(f);
    get_hit(t, 6, keep, 60000, 0);
    kv_disk_set_fail_after(raw, 10);
    kv_tiers_flush_to(t, put_blob(t, 7, 4000));
    assert_int_equal(stats(t, 0).errors, 1);
    assert_true(fake_holds_blob(b, 7, 4000));
    get_hit_blob(t, 7, 4000, 1);
    kv_tiers_flush(t);
    get_hit_blob(t, 7, 4000, 0);   /* promoted onto the disk once it works again */
    kv_tiers_free(t);
    fake_free(b);
    free(keep);
    assert_int_equal(test_rm_tree(dir), 0);
    free(dir);
}

/* ---- the Redis tier ----------------------------------------------------------------- */

static test_redis g_redis;

static int redis_teardown(void **state)
{
    (void)state;
    test_redis_stop(&g_redis);
    return 0;
}

static bool redis_has(redisContext *c, uint64_t key, const void *want, size_t len)
{
    redisReply *r = redisCommand(c, "GET kvlm:blk:%016llx", (unsigned long long)key);
    assert_non_null(r);
    bool ok = r->type == REDIS_REPLY_STRING && (!want || (r->len == len && memcmp(r->str, want, len) == 0));
    freeReplyObject(r);
    return ok;
}

static void test_redis_adapter(void **state)
{
    (void)state;
    if (!test_redis_available()) skip();
    if (!test_redis_start(&g_redis, NULL)) fail_msg("redis-server did not start");
    char err[512] = "";
    kv_tier *r = NULL;
    assert_int_equal(kv_tier_redis_new(&r, "rediss://h", NULL, err, sizeof err), KVLM_ERR_UNSUPPORTED);
    assert_null(r);
    kv_redis_opts o = { .backoff_min_ms = 100, .backoff_max_ms = 200 };
    assert_int_equal(kv_tier_redis_new(&r, g_redis.url, &o, err, sizeof err), KVLM_OK);
    fake *a = fake_new(0);
    kv_tiers *t = tiers_new(NULL, a, NULL);
    assert_int_equal(kv_tiers_add(t, r, err, sizeof err), KVLM_OK);
    for (uint64_t k = 1; k <= 3; k++) put_blob(t, k, 5000);
    kv_tiers_flush(t);
    redisContext *c = test_redis_client(&g_redis);
    assert_non_null(c);
    for (uint64_t k = 1; k <= 3; k++) {   /* on the server, read by the test's own client */
        uint8_t *want = test_blob(k, 5000);
        assert_true(redis_has(c, k, want, 5000));
        free(want);
    }
    kvlm_tier_stats s = stats(t, 1);
    assert_string_equal(s.name, "redis");
    assert_int_equal(s.puts, 3);
    assert_int_equal(s.n_items, 3);
    assert_int_equal(s.bytes_written, 3 * 5000);

    fake_drop(&a->base, 2);
    get_hit_blob(t, 2, 5000, 1);
    get_miss(t, 42);   /* not there: a miss, no error */
    assert_int_equal(stats(t, 1).errors, 0);
    assert_int_equal(stats(t, 1).misses, 1);
    kv_tiers_flush(t);
    assert_true(fake_holds_blob(a, 2, 5000));   /* promoted */
    fake_drop(&a->base, 3);
    get_hit_blob(t, 3, 5000, 1);
    kv_tiers_reject(t, 1, 3);
    kv_tiers_flush(t);
    assert_false(redis_has(c, 3, NULL, 0));
    assert_false(fake_holds(a, 3, NULL, 0));
    redisFree(c);

    /* Redis down: misses counted as errors (the breaker's refusals too), writes go on
     * to the other tier; back up: works again */
    test_redis_kill(&g_redis);
    get_miss(t, 1000);
    get_miss(t, 1001);   /* breaker open */
    assert_int_equal(stats(t, 1).errors, 2);
    kv_tiers_flush_to(t, put_blob(t, 50, 100));
    assert_true(fake_holds_blob(a, 50, 100));
    assert_int_equal(stats(t, 1).errors, 3);
    assert_true(test_redis_restart(&g_redis));
    test_sleep_ms(250);
    kv_tiers_flush_to(t, put_blob(t, 51, 100));
    fake_drop(&a->base, 51);
    get_hit_blob(t, 51, 100, 1);
    kv_tiers_free(t);
    fake_free(a);
    test_redis_stop(&g_redis);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_through),
        cmocka_unit_test(test_flush_after),
        cmocka_unit_test(test_after_not_early),
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_get_promotion),
        cmocka_unit_test(test_reject),
        cmocka_unit_test(test_load_chain),
        cmocka_unit_test(test_load_cancel),
        cmocka_unit_test(test_slow_tier_no_block),
        cmocka_unit_test(test_compress_roundtrip),
        cmocka_unit_test(test_hostile_frames),
        cmocka_unit_test(test_disk_adapter),
        cmocka_unit_test_teardown(test_redis_adapter, redis_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
