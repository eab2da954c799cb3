/* test_tiers.c - the KV cache's tiers (disk, Redis) on the real model: a block that
 * comes back from below gives the bits a cold run computes.
 *   cold vs disk hit after a restart vs RAM hit, for f16, q8 and KIVI-4
 *   cold vs Redis hit from a second instance (a real redis-server on a private socket)
 *   a corrupted and a truncated block file: detected, counted, recomputed, removed
 *   write-evict: evicted blocks, and at exit the cached ones, are found after a restart
 *   a disk that refuses writes (RLIMIT_FSIZE): spilling stops, generation goes on
 *   the scheduler: its sequences load from the tiers and give the same greedy tokens
 *   block files of format version 1 (before layer groups): refused, counted, removed
 * Gemma 3 270M (layer groups: one full table, five window tables of 512 positions),
 * bitwise equal to cold:
 *   prompt A written through to disk, the RAM pool dropped: A hits from disk (the
 *   chain, then each window's blocks before the end), and B, diverging more than a
 *   window before A's end, hits its windows from disk (only those RAM lacks)
 *   the same between two instances on one Redis
 *   write-evict: window blocks the LRU evicts go below with their table, and are found
 *   the scheduler's asynchronous rounds (chain, then windows)
 * The cold reference is a private cache without tiers. Room: tests/engine. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvlm.h"
#include "testredis.h"
#include "testrun.h"
#include "testutil.h"
#include "engine/sched.h"
#include "kv/kv_block_io.h"
#include <xxhash.h>

static kvlm_model *g_model;
static int64_t g_vocab;
static kvlm_kv_type g_kv_type = KVLM_KV_F16;
enum { KIVI_RES = 64, MAX_TOK = 1024, GEN = 8 };

#define NEED_MODEL() do { if (!g_model) skip(); } while (0)

static const char *DOC =
    "The harbour office keeps a ledger of every ship that enters the bay. Each line gives the ship's "
    "name, its home port, the cargo it declares and the berth it is given. In the winter of the flood "
    "the ledger was moved to the upper floor, and three pages were copied again by a clerk whose hand "
    "is easy to tell from the others: he writes his sevens with a bar and never abbreviates the months. "
    "Question: which details of a ship does each line of the ledger record, and who copied the pages?";

static int setup(void **state)
{
    (void)state;
    signal(SIGXFSZ, SIG_IGN);   /* the full-disk test: a write past the limit fails with EFBIG instead */
    return test_model_load(&g_model, &g_vocab);
}

static test_run g_cold_doc[3];
static bool g_have_cold_doc[3];

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++)
        if (g_have_cold_doc[i]) test_free_run(&g_cold_doc[i]);
    kvlm_model_free(g_model);
    return 0;
}

static size_t doc_tokens(kvlm_token *out)
{
    size_t n;
    assert_int_equal(kvlm_tokenize(g_model, DOC, strlen(DOC), true, true, out, MAX_TOK, &n, NULL, 0), KVLM_OK);
    assert_true(n > 96);
    return n;
}

/* positions a hit comes in: blocks, or for KIVI whole residual groups */
static size_t hit_unit(void) { return g_kv_type == KVLM_KV_KIVI4 ? KIVI_RES : 16; }
/* what a full hit of n prompt tokens reuses: the last token is always computed */
static size_t full_hit(size_t n) { return (n - 1) / hit_unit() * hit_unit(); }

static kvlm_cache *tier_cache(const char *dir, const char *redis, kvlm_cache_write w, size_t blocks)
{
    kvlm_cache_params cp = kvlm_cache_default_params();
    cp.poison = true;
    cp.kv_type = g_kv_type;
    cp.kv_residual = KIVI_RES;
    cp.mem_bytes = blocks * (size_t)kvlm_kv_bytes_per_token(g_model, cp.kv_type) * 16 + 4096;
    cp.tiers.dir = dir;
    cp.tiers.redis = redis;
    cp.tiers.write = w;
    kvlm_cache *c;
    char err[256];
    kvlm_err e = kvlm_cache_init(g_model, &cp, &c, err, sizeof err);
    if (e) fail_msg("cache: %s", err);
    return c;
}

static kvlm_ctx *new_ctx(kvlm_cache *cache) { return test_ctx_new(g_model, cache, g_kv_type, KIVI_RES, MAX_TOK); }

/* Prefills t on cache (NULL: a private one without tiers), checks the reuse, runs greedy. */
static void run_on(kvlm_cache *cache, const kvlm_token *t, size_t n, size_t want_reused, size_t want_tier,
                   test_run *r)
{
    kvlm_ctx *c = new_ctx(cache);
    size_t reused = 9999;
    assert_int_equal(kvlm_ctx_prefill(c, t, n, &reused, NULL, 0), KVLM_OK);
    kvlm_stats st;
    kvlm_ctx_get_stats(c, &st);
    if (reused != want_reused || (size_t)st.n_reused_tier != want_tier)
        fail_msg("reused %zu (tiers %lld), expected %zu (tiers %zu)", reused, (long long)st.n_reused_tier,
                 want_reused, want_tier);
    test_greedy(c, g_vocab, r, GEN);
    kvlm_ctx_free(c);
}

static kvlm_tier_stats tier_stats(kvlm_cache *c, int i)
{
    kvlm_cache_stats st;
    kvlm_cache_get_stats(c, &st);
    assert_true(i < st.n_tiers);
    return st.tier[i];
}

/* ---- block files in chain order --------------------------------------------------- */
enum { MAX_FILES = 128 };
typedef struct chain { char path[MAX_FILES][512]; int n; } chain;

/* The block files of dir ordered from the first block on (by their headers' parent keys). */
static void chain_files(const char *dir, chain *out)
{
    char names[MAX_FILES][512];
    uint64_t key[MAX_FILES], parent[MAX_FILES];
    int n = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) && n < MAX_FILES;) {
        if (e->d_name[0] == '.') continue;
        snprintf(names[n], sizeof names[n], "%s/%s", dir, e->d_name);
        size_t len;
        char *img = test_read_file(names[n], &len);
        if (!img) continue;
        kv_block_hdr h;
        if (kv_block_io_peek(img, len, &h, NULL, 0) == KVLM_OK) {
            key[n] = h.key;
            parent[n] = h.parent_key;
            n++;
        }
        free(img);
    }
    closedir(d);
    out->n = 0;
    for (uint64_t want = KV_ROOT_KEY;;) {
        int i = 0;
        while (i < n && parent[i] != want) i++;
        if (i == n) break;
        snprintf(out->path[out->n++], sizeof out->path[0], "%s", names[i]);
        want = key[i];
    }
    assert_int_equal(out->n, n);   /* one chain, every file on it */
}

/* ---- tests ------------------------------------------------------------------------- */
/* The document's cold run for the current g_kv_type (f16, q8, KIVI-4), computed once
 * (g_cold_doc, beside teardown): eight cases compare to the f16 one. */

static const test_run *cold_doc(void)
{
    const int i = g_kv_type == KVLM_KV_Q8 ? 1 : g_kv_type == KVLM_KV_KIVI4 ? 2 : 0;
    if (!g_have_cold_doc[i]) {
        kvlm_token t[MAX_TOK];
        run_on(NULL, t, doc_tokens(t), 0, 0, &g_cold_doc[i]);
        g_have_cold_doc[i] = true;
    }
    return &g_cold_doc[i];
}

/* The document's tokens, their cold run and a fresh tier directory. */
typedef struct fx { kvlm_token t[MAX_TOK]; size_t n; const test_run *cold; char *dir; } fx;

static void fx_begin(fx *f)
{
    f->n = doc_tokens(f->t);
    f->cold = cold_doc();
    f->dir = test_make_tmpdir("kvtier");
    assert_non_null(f->dir);
}

static void fx_end(fx *f)
{
    test_rm_tree(f->dir);
    free(f->dir);
}

/* A cache on f's directory computes the document (nothing reused) and goes. */
static void fx_compute(fx *f, kvlm_cache_write w, size_t blocks)
{
    kvlm_cache *a = tier_cache(f->dir, NULL, w, blocks);
    test_run r;
    run_on(a, f->t, f->n, 0, 0, &r);
    test_assert_runs_equal(f->cold, &r, "cold vs computed with a tier");
    test_free_run(&r);
    kvlm_cache_free(a);
}
static void test_disk_restart(void **state)
{
    (void)state;
    NEED_MODEL();
    fx f;
    fx_begin(&f);
    const size_t n = f.n;
    kvlm_cache *a = tier_cache(f.dir, NULL, KVLM_CACHE_WRITE_THROUGH, 256);
    test_run first, disk, ram;
    run_on(a, f.t, n, 0, 0, &first);                  /* computed, written through */
    kvlm_cache_flush(a);
    kvlm_tier_stats ts = tier_stats(a, 0);
    assert_string_equal(ts.name, "disk");
    const size_t span = g_kv_type == KVLM_KV_KIVI4 ? 4 : 1;   /* KIVI K publishes 4 blocks at a time */
    assert_int_equal(ts.puts, (n + GEN - 1) / (16 * span) * span);   /* every full block, once */
    kvlm_cache_free(a);                               /* the "restart" */
    kvlm_cache *b = tier_cache(f.dir, NULL, KVLM_CACHE_WRITE_THROUGH, 256);
    run_on(b, f.t, n, full_hit(n), full_hit(n), &disk);
    ts = tier_stats(b, 0);
    assert_int_equal(ts.invalid, 0);
    assert_true(ts.hits >= (int64_t)(full_hit(n) / 16));
    run_on(b, f.t, n, full_hit(n), 0, &ram);          /* now in RAM */
    test_assert_runs_equal(f.cold, &first, "cold vs written through");
    test_assert_runs_equal(f.cold, &disk, "cold vs disk after restart");
    test_assert_runs_equal(f.cold, &ram, "cold vs RAM");
    kvlm_cache_free(b);
    test_free_run(&first);
    test_free_run(&disk);
    test_free_run(&ram);
    fx_end(&f);
}

static void test_disk_restart_q8(void **state)
{
    g_kv_type = KVLM_KV_Q8;
    test_disk_restart(state);
    g_kv_type = KVLM_KV_F16;
}

static void test_disk_restart_kivi(void **state)
{
    g_kv_type = KVLM_KV_KIVI4;
    test_disk_restart(state);
    g_kv_type = KVLM_KV_F16;
}

/* Namespaces (tenants, cache_salt) stay apart below RAM too: a restart finds a
 * prefix only under the namespace that computed it. */
static void test_namespaces_isolated(void **state)
{
    (void)state;
    NEED_MODEL();
    fx f;
    fx_begin(&f);
    const uint64_t ns[3] = { 7, 8, 7 };
    const size_t want[3] = { 0, 0, full_hit(f.n) };
    for (int i = 0; i < 3; i++) {                     /* 7 computes, 8 misses, 7 hits after a restart */
        kvlm_cache *c = tier_cache(f.dir, NULL, KVLM_CACHE_WRITE_THROUGH, 256);
        kvlm_ctx *x;
        kvlm_ctx_params p = kvlm_ctx_default_params();
        p.n_threads = 2;
        p.n_ctx = MAX_TOK;
        p.cache = c;
        p.cache_ns = ns[i];
        assert_int_equal(kvlm_ctx_init(g_model, &p, &x, NULL, 0), KVLM_OK);
        size_t reused = 9999;
        assert_int_equal(kvlm_ctx_prefill(x, f.t, f.n, &reused, NULL, 0), KVLM_OK);
        if (reused != want[i]) fail_msg("namespace %llu, run %d: reused %zu, expected %zu",
                                        (unsigned long long)ns[i], i, reused, want[i]);
        kvlm_ctx_free(x);
        kvlm_cache_free(c);
    }
    fx_end(&f);
}

/* Two instances (caches) on one Redis: the second hits what the first computed. */
static void test_redis_second_instance(void **state)
{
    (void)state;
    NEED_MODEL();
    test_redis r;
    if (!test_redis_start(&r, NULL)) skip();
    kvlm_token t[MAX_TOK];
    const size_t n = doc_tokens(t);
    const kvlm_kv_type types[3] = { KVLM_KV_F16, KVLM_KV_Q8, KVLM_KV_KIVI4 };
    for (int k = 0; k < 3; k++) {
        g_kv_type = types[k];
        test_run one, two;
        const test_run *cold = cold_doc();
        kvlm_cache *a = tier_cache(NULL, r.url, KVLM_CACHE_WRITE_THROUGH, 256);
        kvlm_cache *b = tier_cache(NULL, r.url, KVLM_CACHE_WRITE_THROUGH, 256);
        run_on(a, t, n, 0, 0, &one);
        kvlm_cache_flush(a);
        run_on(b, t, n, full_hit(n), full_hit(n), &two);
        assert_string_equal(tier_stats(b, 0).name, "redis");
        assert_int_equal(tier_stats(b, 0).invalid, 0);
        test_assert_runs_equal(cold, &one, "cold vs first instance");
        test_assert_runs_equal(cold, &two, "cold vs Redis hit in a second instance");
        kvlm_cache_free(a);
        kvlm_cache_free(b);
        test_free_run(&one);
        test_free_run(&two);
    }
    g_kv_type = KVLM_KV_F16;
    test_redis_stop(&r);
}

/* A block file with one byte flipped, another cut short: loading stops before each,
 * counts it invalid, removes it, and the rest is computed. */
static void test_damaged_files(void **state)
{
    (void)state;
    NEED_MODEL();
    fx f;
    fx_begin(&f);
    fx_compute(&f, KVLM_CACHE_WRITE_THROUGH, 256);
    chain ch;
    chain_files(f.dir, &ch);
    assert_true(ch.n >= 5);
    /* block 4: a flipped byte in its payload */
    size_t len;
    char *img = test_read_file(ch.path[4], &len);
    assert_non_null(img);
    img[len / 2] ^= 0x20;
    FILE *fp = fopen(ch.path[4], "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(img, 1, len, fp), len);
    fclose(fp);
    free(img);
    test_run r2, r3, r4;
    kvlm_cache *b = tier_cache(f.dir, NULL, KVLM_CACHE_WRITE_THROUGH, 256);
    run_on(b, f.t, f.n, 4 * 16, 4 * 16, &r2);
    assert_int_equal(tier_stats(b, 0).invalid, 1);
    kvlm_cache_free(b);                               /* block 4 was recomputed and written again */
    /* block 2: cut short */
    assert_int_equal(truncate(ch.path[2], 1000), 0);
    kvlm_cache *c = tier_cache(f.dir, NULL, KVLM_CACHE_WRITE_THROUGH, 256);
    run_on(c, f.t, f.n, 2 * 16, 2 * 16, &r3);
    assert_int_equal(tier_stats(c, 0).invalid, 1);
    kvlm_cache_free(c);
    kvlm_cache *d = tier_cache(f.dir, NULL, KVLM_CACHE_WRITE_THROUGH, 256);   /* both rewritten: a full hit */
    run_on(d, f.t, f.n, full_hit(f.n), full_hit(f.n), &r4);
    kvlm_cache_free(d);
    test_assert_runs_equal(f.cold, &r2, "cold vs a flipped byte in block 4");
    test_assert_runs_equal(f.cold, &r3, "cold vs block 2 cut short");
    test_assert_runs_equal(f.cold, &r4, "cold vs the repaired files");
    test_free_run(&r2);
    test_free_run(&r3);
    test_free_run(&r4);
    fx_end(&f);
}

/* Write-evict: nothing goes below until RAM evicts; what it evicts, and at exit
 * what it still caches, is found after a restart. */
static void test_write_evict(void **state)
{
    (void)state;
    NEED_MODEL();
    kvlm_token t[MAX_TOK], u[MAX_TOK];
    const size_t n = doc_tokens(t);
    memcpy(u, t, n * sizeof *t);
    u[1] = u[1] == 100 ? 101 : 100;                   /* another prompt from its second token on */
    const size_t blocks = (n + GEN) / 16 + 2;         /* room for one sequence: the second evicts the first */
    char *dir = test_make_tmpdir("kvtier");
    assert_non_null(dir);
    test_run cold_u, r;
    const test_run *cold_t = cold_doc();
    run_on(NULL, u, n, 0, 0, &cold_u);
    kvlm_cache *a = tier_cache(dir, NULL, KVLM_CACHE_WRITE_EVICT, blocks);
    run_on(a, t, n, 0, 0, &r);
    test_free_run(&r);
    kvlm_cache_flush(a);
    assert_int_equal(tier_stats(a, 0).puts, 0);       /* nothing evicted yet */
    run_on(a, u, n, 0, 0, &r);                        /* evicts t's blocks */
    test_free_run(&r);
    kvlm_cache_flush(a);
    assert_true(tier_stats(a, 0).puts > 0);
    kvlm_cache_free(a);                               /* u's cached blocks go below too */
    kvlm_cache *b = tier_cache(dir, NULL, KVLM_CACHE_WRITE_EVICT, 256);
    test_run rt, ru;
    run_on(b, t, n, full_hit(n), full_hit(n), &rt);
    run_on(b, u, n, full_hit(n), full_hit(n), &ru);
    test_assert_runs_equal(cold_t, &rt, "cold vs evicted to disk");
    test_assert_runs_equal(&cold_u, &ru, "cold vs written at exit");
    kvlm_cache_free(b);
    test_free_run(&cold_u);
    test_free_run(&rt);
    test_free_run(&ru);
    test_rm_tree(dir);
    free(dir);
}

/* A disk that refuses writes (files limited to 64 KiB, smaller than a block):
 * every put fails and is counted, the run is exact, nothing half-written is left. */
static void test_disk_full(void **state)
{
    (void)state;
    NEED_MODEL();
    fx f;
    fx_begin(&f);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 64 << 10;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    kvlm_cache *a = tier_cache(f.dir, NULL, KVLM_CACHE_WRITE_THROUGH, 256);
    test_run r;
    run_on(a, f.t, f.n, 0, 0, &r);
    kvlm_cache_flush(a);
    const kvlm_tier_stats ts = tier_stats(a, 0);
    kvlm_cache_free(a);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_true(ts.errors > 0);
    assert_int_equal(ts.puts, 0);
    test_assert_runs_equal(f.cold, &r, "cold vs a disk that refuses writes");
    chain ch;
    chain_files(f.dir, &ch);
    assert_int_equal(ch.n, 0);
    test_free_run(&r);
    fx_end(&f);
}

/* ---- the scheduler ----------------------------------------------------------------- */
typedef struct out { kvlm_token tok[GEN]; int n; bool done; } out;

static bool on_token(void *user, sched_seq *q, kvlm_token tok, kvlm_err e)
{
    (void)q;
    out *o = user;
    if (e != KVLM_OK) { o->done = true; return false; }
    o->tok[o->n++] = tok;
    if (o->n == GEN) o->done = true;
    return o->n < GEN;
}

/* Greedy tokens of the scheduler of model m on cache for t; *cached gets its cached
 * positions. Returns the ticket of the last tier write of its blocks. */
static int64_t sched_run_m(const kvlm_model *m, int64_t n_ctx, kvlm_cache *cache, const kvlm_token *t, size_t n,
                        out *o, size_t *cached)
{
    sched_params p = { .n_threads = 2, .n_ctx = n_ctx, .step_tokens = 64, .max_seqs = 4 };
    sched *S;
    assert_int_equal(sched_init(m, cache, &p, on_token, &S, NULL, 0), KVLM_OK);
    kvlm_sampler_params sp = kvlm_sampler_default_params();
    sp.temp = 0;
    sched_seq *q;
    int64_t ticket = 0;
    memset(o, 0, sizeof *o);
    assert_int_equal(sched_add(S, t, n, GEN, &sp, 0, o, &q, cached, &ticket, NULL, 0), KVLM_OK);
    for (int i = 0; i < 100000 && !o->done; i++)
        if (sched_step(S) == 0) test_sleep_ms(1);    /* a load in flight */
    assert_true(o->done);
    while (sched_n_seqs(S) > 0) sched_step(S);
    sched_free(S);
    return ticket;
}

static void sched_run(kvlm_cache *cache, const kvlm_token *t, size_t n, out *o, size_t *cached)
{
    const int64_t ticket = sched_run_m(g_model, MAX_TOK, cache, t, n, o, cached);
    assert_true(ticket > 0 || cache == NULL);
}

static void test_sched_loads(void **state)
{
    (void)state;
    NEED_MODEL();
    kvlm_token t[MAX_TOK];
    const size_t n = doc_tokens(t);
    char *dir = test_make_tmpdir("kvtier");
    assert_non_null(dir);
    kvlm_cache *a = tier_cache(dir, NULL, KVLM_CACHE_WRITE_THROUGH, 256);
    out o1, o2;
    size_t c1 = 99, c2 = 0;
    sched_run(a, t, n, &o1, &c1);
    assert_int_equal(c1, 0);
    kvlm_cache_free(a);
    kvlm_cache *b = tier_cache(dir, NULL, KVLM_CACHE_WRITE_THROUGH, 256);
    sched_run(b, t, n, &o2, &c2);
    assert_int_equal(c2, full_hit(n));
    assert_int_equal(o1.n, GEN);
    assert_memory_equal(o1.tok, o2.tok, sizeof o1.tok);
    const test_run *cold = cold_doc();                /* and both equal the context's cold run */
    assert_memory_equal(o1.tok, cold->tok, GEN * sizeof *cold->tok);
    kvlm_cache_free(b);
    test_rm_tree(dir);
    free(dir);
}

/* Block files of format version 1 (what kvlm wrote before layer groups: the same
 * chain keys for a model without groups) are refused when read: counted invalid,
 * removed, computed again and written in version 2. The loading stops at the first
 * one, so each run replaces the next. */
static void test_v1_files_rejected(void **state)
{
    (void)state;
    NEED_MODEL();
    fx f;
    fx_begin(&f);
    fx_compute(&f, KVLM_CACHE_WRITE_THROUGH, 256);
    chain ch;
    chain_files(f.dir, &ch);
    assert_true(ch.n >= 3);
    for (int i = 0; i < ch.n; i++) {                  /* each file -> its v1 form, byte by byte */
        size_t len;
        uint8_t *img = (uint8_t *)test_read_file(ch.path[i], &len);
        assert_non_null(img);
        const size_t pay = len - 158 - 16, m = 142 + pay + 16;
        uint8_t *v1 = malloc(m);
        assert_non_null(v1);
        memcpy(v1, img, 142);
        v1[8] = 1;                                    /* version 1, LE */
        v1[12] = 142;                                 /* its header bytes */
        memcpy(v1 + 142, img + 158, pay);
        const XXH128_hash_t h = XXH3_128bits(v1, m - 16);
        for (int k = 0; k < 8; k++) {
            v1[m - 16 + k] = (uint8_t)(h.low64 >> (8 * k));
            v1[m - 8 + k] = (uint8_t)(h.high64 >> (8 * k));
        }
        FILE *fp = fopen(ch.path[i], "wb");
        assert_non_null(fp);
        assert_int_equal(fwrite(v1, 1, m, fp), m);
        fclose(fp);
        free(v1);
        free(img);
    }
    test_run r1, r2;
    kvlm_cache *b = tier_cache(f.dir, NULL, KVLM_CACHE_WRITE_THROUGH, 256);
    run_on(b, f.t, f.n, 0, 0, &r1);                   /* block 0 refused: nothing reused */
    assert_int_equal(tier_stats(b, 0).invalid, 1);
    kvlm_cache_free(b);                               /* block 0 written again, in version 2 */
    kvlm_cache *c = tier_cache(f.dir, NULL, KVLM_CACHE_WRITE_THROUGH, 256);
    run_on(c, f.t, f.n, 16, 16, &r2);                 /* block 0 from disk, block 1 refused */
    assert_int_equal(tier_stats(c, 0).invalid, 1);
    kvlm_cache_free(c);
    size_t len;
    char *img = test_read_file(ch.path[0], &len);
    assert_non_null(img);
    kv_block_hdr hdr;
    assert_int_equal(kv_block_io_peek(img, len, &hdr, NULL, 0), KVLM_OK);
    assert_int_equal(hdr.version, 2);
    free(img);
    test_assert_runs_equal(f.cold, &r1, "cold vs version 1 files refused");
    test_assert_runs_equal(f.cold, &r2, "cold vs block 0 rewritten");
    test_free_run(&r1);
    test_free_run(&r2);
    fx_end(&f);
}

/* ---- Gemma 3: layer groups below RAM ------------------------------------------------ */
static kvlm_model *g_gemma;
static int64_t g_gvocab;
enum { G_WINDOW = 512, G_TABLES = 6, G_CTX = 2048 };
static kvlm_token *g_a, *g_b;       /* prompt A: the GPL-3 text; B: A's first g_shared, then other text */
static size_t g_na, g_nb, g_shared;
static test_run g_cold_a, g_cold_b;

#define NEED_GEMMA() do { if (!g_gemma) skip(); } while (0)

static kvlm_ctx *gem_ctx(kvlm_cache *cache) { return test_ctx_new(g_gemma, cache, KVLM_KV_F16, 0, G_CTX); }

/* Prefills t on cache (NULL: a private one), then GEN greedy steps into r;
 * *reused and *tier get what the prefill reused (from the tiers). */
static void gem_run(kvlm_cache *cache, const kvlm_token *t, size_t n, size_t *reused, int64_t *tier, test_run *r)
{
    kvlm_ctx *c = gem_ctx(cache);
    char err[256];
    if (kvlm_ctx_prefill(c, t, n, reused, err, sizeof err) != KVLM_OK) fail_msg("prefill: %s", err);
    kvlm_stats st;
    kvlm_ctx_get_stats(c, &st);
    if (tier) *tier = st.n_reused_tier;
    test_greedy(c, g_gvocab, r, GEN);
    kvlm_ctx_free(c);
}

static kvlm_cache *gem_cache(const char *dir, const char *redis, kvlm_cache_write w, size_t mem)
{
    kvlm_cache_params cp = kvlm_cache_default_params();
    cp.poison = true;
    cp.mem_bytes = mem;
    cp.tiers.dir = dir;
    cp.tiers.redis = redis;
    cp.tiers.write = w;
    kvlm_cache *c;
    char err[256];
    if (kvlm_cache_init(g_gemma, &cp, &c, err, sizeof err)) fail_msg("cache: %s", err);
    return c;
}

/* The first block a window table holds for a prefix of k blocks (kv_seq.h): that of
 * position 16k + 1 - window. */
static int64_t win_lo(int64_t k) { return 16 * k + 1 <= G_WINDOW ? 0 : (16 * k + 1 - G_WINDOW) / 16; }
/* Blocks a hit of a prompt of n tokens ends at, when all of it is there: the last token is computed. */
static int64_t hit_blocks(size_t n) { return (int64_t)(n - 1) / 16; }

static int gem_setup(void **state)
{
    (void)state;
    const char *path = test_gemma3_path();
    if (!path) return 0;
    char err[256];
    if (kvlm_model_load(path, &g_gemma, err, sizeof err) != KVLM_OK) {
        fprintf(stderr, "load: %s\n", err);
        return -1;
    }
    kvlm_model_info in;
    kvlm_model_get_info(g_gemma, &in);
    g_gvocab = in.n_vocab;
    size_t len;
    char *text = test_read_file("/usr/share/common-licenses/GPL-3", &len);
    g_a = malloc(4096 * sizeof *g_a);
    g_b = malloc(G_CTX * sizeof *g_b);
    if (!text || !g_a || !g_b) return -1;
    size_t n_text = 0;
    const kvlm_err e = kvlm_tokenize(g_gemma, text, len, true, false, g_a, 4096, &n_text, NULL, 0);
    free(text);
    if ((e != KVLM_OK && e != KVLM_ERR_INVALID) || n_text < 3100) return -1;   /* INVALID: more than 4096 */
    /* A: > 1,000 tokens (700 under the sanitizers); B diverges 600 > 512 before A's end */
    g_na = test_quick() ? 700 : 1300;
    g_shared = g_na - 600;
    memcpy(g_b, g_a, g_shared * sizeof *g_b);
    memcpy(g_b + g_shared, g_a + 2600, 400 * sizeof *g_b);
    g_nb = g_shared + 400;
    size_t reused = 99;
    gem_run(NULL, g_a, g_na, &reused, NULL, &g_cold_a);
    gem_run(NULL, g_b, g_nb, &reused, NULL, &g_cold_b);
    return 0;
}

static int gem_teardown(void **state)
{
    (void)state;
    if (g_gemma) {
        test_free_run(&g_cold_a);
        test_free_run(&g_cold_b);
    }
    kvlm_model_free(g_gemma);
    free(g_a);
    free(g_b);
    return 0;
}

/* Counts dir's block files by their headers' table; checks each window field. */
static void files_by_table(const char *dir, int64_t count[G_TABLES])
{
    memset(count, 0, G_TABLES * sizeof *count);
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len;
        char *img = test_read_file(path, &len);
        assert_non_null(img);
        kv_block_hdr h;
        if (kv_block_io_peek(img, len, &h, NULL, 0) != KVLM_OK) fail_msg("%s does not peek", path);
        assert_true(h.n_tab == G_TABLES && h.tab >= 0 && h.tab < G_TABLES && h.n_layer == 3 && h.n_layer_model == 18);
        assert_int_equal(h.window, h.tab == 0 ? 0 : G_WINDOW);
        count[h.tab]++;
        free(img);
    }
    closedir(d);
}

/* want_tier: the positions from the tiers, or -1: some, -2: any number */
static void check_reuse(const char *what, size_t reused, size_t want, int64_t tier, int64_t want_tier)
{
    if (reused != want || (want_tier >= 0 && tier != want_tier) || (want_tier == -1 && tier <= 0))
        fail_msg("%s: reused %zu (tiers %lld), expected %zu (tiers %lld)", what, reused, (long long)tier, want,
                 (long long)want_tier);
}

/* Disk, write-through: A computed and written (every table's blocks), the pool
 * dropped, A again from disk; B, whose prefix needs windows A's second run did not
 * load, takes them from disk; B on a fresh pool takes everything from disk. */
static void test_gemma_disk(void **state)
{
    (void)state;
    NEED_GEMMA();
    char *dir = test_make_tmpdir("kvtier");
    assert_non_null(dir);
    const int64_t ka = hit_blocks(g_na), kb = (int64_t)g_shared / 16;
    const size_t full_a = (size_t)ka * 16, full_b = (size_t)kb * 16;
    size_t reused;
    int64_t tier;
    test_run first, a2, b2, b3;
    double t0 = test_now_s();
    kvlm_cache *c1 = gem_cache(dir, NULL, KVLM_CACHE_WRITE_THROUGH, 64 << 20);
    gem_run(c1, g_a, g_na, &reused, &tier, &first);
    check_reuse("A, computed", reused, 0, tier, 0);
    kvlm_cache_flush(c1);
    const int64_t n_full = (int64_t)(g_na + GEN - 1) / 16;   /* every table's full blocks, written once */
    assert_int_equal(tier_stats(c1, 0).puts, G_TABLES * n_full);
    kvlm_cache_free(c1);
    int64_t count[G_TABLES];
    files_by_table(dir, count);
    for (int t = 0; t < G_TABLES; t++) assert_int_equal(count[t], n_full);
    const double t_cold = test_now_s() - t0;

    t0 = test_now_s();
    kvlm_cache *c2 = gem_cache(dir, NULL, KVLM_CACHE_WRITE_THROUGH, 64 << 20);   /* the RAM pool dropped */
    gem_run(c2, g_a, g_na, &reused, &tier, &a2);
    check_reuse("A from disk", reused, full_a, tier, (int64_t)full_a);
    kvlm_tier_stats ts = tier_stats(c2, 0);
    assert_int_equal(ts.invalid, 0);
    assert_int_equal(ts.hits, ka + (G_TABLES - 1) * (ka - win_lo(ka)));   /* the chain, then the windows */
    const double t_hit = test_now_s() - t0;
    gem_run(c2, g_b, g_nb, &reused, &tier, &b2);
    check_reuse("B, its windows from disk", reused, full_b, tier, -1);
    const kvlm_tier_stats ts2 = tier_stats(c2, 0);
    /* the chain was in RAM; the windows before B's end were not (A's run loaded those before A's end) */
    assert_int_equal(ts2.hits - ts.hits, (G_TABLES - 1) * (kb - win_lo(kb)));
    kvlm_cache_free(c2);
    kvlm_cache *c3 = gem_cache(dir, NULL, KVLM_CACHE_WRITE_THROUGH, 64 << 20);
    gem_run(c3, g_b, g_nb, &reused, &tier, &b3);   /* B's own blocks were written by its run in c2 */
    check_reuse("B from disk", reused, (size_t)hit_blocks(g_nb) * 16, tier, hit_blocks(g_nb) * 16);
    kvlm_cache_free(c3);
    print_message("    A: computed %.2f s, from disk %.2f s (%lld blocks)\n", t_cold, t_hit, (long long)ts.hits);
    test_assert_runs_equal(&g_cold_a, &first, "cold vs written through");
    test_assert_runs_equal(&g_cold_a, &a2, "cold vs A from disk");
    test_assert_runs_equal(&g_cold_b, &b2, "cold vs B with its windows from disk");
    test_assert_runs_equal(&g_cold_b, &b3, "cold vs B from disk");
    test_free_run(&first);
    test_free_run(&a2);
    test_free_run(&b2);
    test_free_run(&b3);
    test_rm_tree(dir);
    free(dir);
}

/* Two instances on one Redis: the second hits A and B from what the first computed. */
static void test_gemma_redis(void **state)
{
    (void)state;
    NEED_GEMMA();
    test_redis r;
    if (!test_redis_start(&r, NULL)) skip();
    size_t reused;
    int64_t tier;
    test_run one, two, b2;
    kvlm_cache *a = gem_cache(NULL, r.url, KVLM_CACHE_WRITE_THROUGH, 64 << 20);
    kvlm_cache *b = gem_cache(NULL, r.url, KVLM_CACHE_WRITE_THROUGH, 64 << 20);
    gem_run(a, g_a, g_na, &reused, &tier, &one);
    kvlm_cache_flush(a);
    gem_run(b, g_a, g_na, &reused, &tier, &two);
    check_reuse("A from Redis", reused, (size_t)hit_blocks(g_na) * 16, tier, hit_blocks(g_na) * 16);
    gem_run(b, g_b, g_nb, &reused, &tier, &b2);
    check_reuse("B, its windows from Redis", reused, g_shared / 16 * 16, tier, -1);
    assert_string_equal(tier_stats(b, 0).name, "redis");
    assert_int_equal(tier_stats(b, 0).invalid, 0);
    kvlm_cache_free(a);
    kvlm_cache_free(b);
    test_redis_stop(&r);
    test_assert_runs_equal(&g_cold_a, &one, "cold vs first instance");
    test_assert_runs_equal(&g_cold_a, &two, "cold vs A from Redis in a second instance");
    test_assert_runs_equal(&g_cold_b, &b2, "cold vs B with its windows from Redis");
    test_free_run(&one);
    test_free_run(&two);
    test_free_run(&b2);
}

/* Write-evict on a pool too small for A's blocks: the window blocks A lets go are
 * evicted from the LRU while A runs and go below (their images name their window
 * table), so B, right after, finds its windows on disk; after a restart A and B
 * hit from disk. Under the sanitizers A (700 tokens) is too short to let any window
 * block go while it runs (its window tables hold the window and a 512-token batch),
 * so there B's own blocks evict A's, and only the restart is checked. */
static void test_gemma_write_evict(void **state)
{
    (void)state;
    NEED_GEMMA();
    char *dir = test_make_tmpdir("kvtier");
    assert_non_null(dir);
    const size_t block = 3 * 2 * 16 * 256 * 2;       /* 3 layers, K and V, 16 positions, 256 f16 channels */
    const size_t mem = (test_quick() ? 300 : (size_t)(hit_blocks(g_na) + 1 + (G_TABLES - 1) * (2 * G_WINDOW / 16 + 2) + 16)) *
                       block;
    size_t reused;
    int64_t tier;
    test_run a1, b1, a2, b2;
    kvlm_cache *c1 = gem_cache(dir, NULL, KVLM_CACHE_WRITE_EVICT, mem);
    gem_run(c1, g_a, g_na, &reused, &tier, &a1);
    kvlm_cache_flush(c1);
    int64_t count[G_TABLES];
    files_by_table(dir, count);
    int64_t n_win = 0;
    for (int t = 1; t < G_TABLES; t++) n_win += count[t];
    if (!test_quick()) {
        assert_int_equal(count[0], 0);                /* the full table's blocks stayed in RAM, */
        assert_true(n_win > 0);                       /* the windows' oldest were evicted */
        assert_int_equal(tier_stats(c1, 0).puts, n_win);
    }
    gem_run(c1, g_b, g_nb, &reused, &tier, &b1);
    check_reuse("B, evicted windows from disk", reused, g_shared / 16 * 16, tier, test_quick() ? -2 : -1);
    kvlm_cache_flush(c1);
    assert_true(tier_stats(c1, 0).puts > 0);
    kvlm_cache_free(c1);                              /* what is still cached goes below */
    kvlm_cache *c2 = gem_cache(dir, NULL, KVLM_CACHE_WRITE_EVICT, 64 << 20);
    gem_run(c2, g_a, g_na, &reused, &tier, &a2);
    check_reuse("A after a restart", reused, (size_t)hit_blocks(g_na) * 16, tier, hit_blocks(g_na) * 16);
    gem_run(c2, g_b, g_nb, &reused, &tier, &b2);
    check_reuse("B after a restart", reused, (size_t)hit_blocks(g_nb) * 16, tier, -1);   /* B's own blocks too */
    assert_int_equal(tier_stats(c2, 0).invalid, 0);
    kvlm_cache_free(c2);
    test_assert_runs_equal(&g_cold_a, &a1, "cold vs A on a small write-evict pool");
    test_assert_runs_equal(&g_cold_b, &b1, "cold vs B with evicted windows from disk");
    test_assert_runs_equal(&g_cold_a, &a2, "cold vs A evicted to disk");
    test_assert_runs_equal(&g_cold_b, &b2, "cold vs B evicted to disk");
    test_free_run(&a1);
    test_free_run(&b1);
    test_free_run(&a2);
    test_free_run(&b2);
    test_rm_tree(dir);
    free(dir);
}

/* The scheduler's asynchronous loads, after a restart: B first (both rounds from
 * disk: the chain to where B leaves A, then the windows before that), then A (the
 * chain partly in RAM, the rest and A's windows from disk). */
static void test_gemma_sched(void **state)
{
    (void)state;
    NEED_GEMMA();
    char *dir = test_make_tmpdir("kvtier");
    assert_non_null(dir);
    out o;
    size_t cached = 99;
    kvlm_cache *c1 = gem_cache(dir, NULL, KVLM_CACHE_WRITE_THROUGH, 64 << 20);
    assert_true(sched_run_m(g_gemma, G_CTX, c1, g_a, g_na, &o, &cached) > 0);
    assert_int_equal(cached, 0);
    assert_memory_equal(o.tok, g_cold_a.tok, GEN * sizeof *o.tok);
    kvlm_cache_free(c1);
    kvlm_cache *c2 = gem_cache(dir, NULL, KVLM_CACHE_WRITE_THROUGH, 64 << 20);
    sched_run_m(g_gemma, G_CTX, c2, g_b, g_nb, &o, &cached);
    assert_int_equal(cached, g_shared / 16 * 16);
    assert_memory_equal(o.tok, g_cold_b.tok, GEN * sizeof *o.tok);
    sched_run_m(g_gemma, G_CTX, c2, g_a, g_na, &o, &cached);
    assert_int_equal(cached, (size_t)hit_blocks(g_na) * 16);
    assert_memory_equal(o.tok, g_cold_a.tok, GEN * sizeof *o.tok);
    assert_int_equal(tier_stats(c2, 0).invalid, 0);
    kvlm_cache_free(c2);
    test_rm_tree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_disk_restart),
        cmocka_unit_test(test_disk_restart_q8),
        cmocka_unit_test(test_disk_restart_kivi),
        cmocka_unit_test(test_namespaces_isolated),
        cmocka_unit_test(test_redis_second_instance),
        cmocka_unit_test(test_damaged_files),
        cmocka_unit_test(test_write_evict),
        cmocka_unit_test(test_disk_full),
        cmocka_unit_test(test_sched_loads),
        cmocka_unit_test(test_v1_files_rejected),
    };
    const struct CMUnitTest g[] = {
        cmocka_unit_test(test_gemma_disk),
        cmocka_unit_test(test_gemma_redis),
        cmocka_unit_test(test_gemma_write_evict),
        cmocka_unit_test(test_gemma_sched),
    };
    const int rc = cmocka_run_group_tests_name("kv_tiers", t, setup, teardown);
    return rc | cmocka_run_group_tests_name("kv_tiers_gemma3", g, gem_setup, gem_teardown);
}
