/* test_gguf.c - the GGUF reader on the real model and on crafted hostile files.
 *
 * Crafted files are built in memory by a small writer (gb_*) so every test states the
 * exact bytes it feeds. A hostile file must give KVLM_ERR_FORMAT or
 * KVLM_ERR_UNSUPPORTED with "<name>: offset <n>:" in the message, never crash and
 * never read outside the buffer: the guard-page test places every truncation of a valid
 * file right before a PROT_NONE page. Facts about the real file were read with the
 * `gguf` Python package (GGUFReader) independently. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kern/quant.h"
#include "model/gguf.h"
#include "util/testutil.h"

/* ---- a growable little-endian writer ---------------------------------------------------- */
typedef struct gb { uint8_t *p; size_t n, cap; } gb;

static void gb_put(gb *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void gb_uint(gb *b, uint64_t v, int bytes)
{
    uint8_t t[8];
    for (int i = 0; i < bytes; i++) t[i] = (uint8_t)(v >> (8 * i));
    gb_put(b, t, (size_t)bytes);
}
static void gb_u32(gb *b, uint32_t v) { gb_uint(b, v, 4); }
static void gb_u64(gb *b, uint64_t v) { gb_uint(b, v, 8); }
static void gb_str(gb *b, const char *s) { gb_u64(b, strlen(s)); gb_put(b, s, strlen(s)); }
static void gb_f32(gb *b, float f) { uint32_t u; memcpy(&u, &f, 4); gb_u32(b, u); }
static void gb_f64(gb *b, double f) { uint64_t u; memcpy(&u, &f, 8); gb_u64(b, u); }
static void gb_pad(gb *b, size_t align) { while (b->n % align) gb_uint(b, 0, 1); }

static void gb_header(gb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    gb_put(b, "GGUF", 4);
    gb_u32(b, version);
    gb_u64(b, n_tensors);
    gb_u64(b, n_kv);
}
static void gb_kv_u32(gb *b, const char *key, uint32_t v) { gb_str(b, key); gb_u32(b, GGUF_VT_U32); gb_u32(b, v); }
static void gb_kv_str(gb *b, const char *key, const char *v) { gb_str(b, key); gb_u32(b, GGUF_VT_STR); gb_str(b, v); }
static void gb_tensor(gb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off)
{
    gb_str(b, name);
    gb_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) gb_u64(b, ne[i]);
    gb_u32(b, type);
    gb_u64(b, off);
}

/* The crafted valid file: every value type, numeric/bool/string arrays, alignment 64,
 * three tensors (F32 [4], Q8_0 [32, 2], Q4_1 [64]) with data. ~1 KB. */
enum { CRAFT_ALIGN = 64, CRAFT_N_KV = 19, CRAFT_N_TENSORS = 3 };
static gb craft(void)
{
    gb b = { 0 };
    gb_header(&b, 3, CRAFT_N_TENSORS, CRAFT_N_KV);
    gb_kv_str(&b, "general.architecture", "llama");
    gb_kv_u32(&b, "general.alignment", CRAFT_ALIGN);
    gb_str(&b, "t.u8");   gb_u32(&b, GGUF_VT_U8);   gb_uint(&b, 200, 1);
    gb_str(&b, "t.i8");   gb_u32(&b, GGUF_VT_I8);   gb_uint(&b, (uint8_t)-5, 1);
    gb_str(&b, "t.u16");  gb_u32(&b, GGUF_VT_U16);  gb_uint(&b, 60000, 2);
    gb_str(&b, "t.i16");  gb_u32(&b, GGUF_VT_I16);  gb_uint(&b, (uint16_t)-300, 2);
    gb_str(&b, "t.i32");  gb_u32(&b, GGUF_VT_I32);  gb_u32(&b, (uint32_t)-70000);
    gb_str(&b, "t.f32");  gb_u32(&b, GGUF_VT_F32);  gb_f32(&b, 1e-5f);
    gb_str(&b, "t.bool"); gb_u32(&b, GGUF_VT_BOOL); gb_uint(&b, 1, 1);
    gb_str(&b, "t.u64");  gb_u32(&b, GGUF_VT_U64);  gb_u64(&b, 0xffffffffffffffffull);
    gb_str(&b, "t.i64");  gb_u32(&b, GGUF_VT_I64);  gb_u64(&b, (uint64_t)-1234567890123ll);
    gb_str(&b, "t.f64");  gb_u32(&b, GGUF_VT_F64);  gb_f64(&b, 100000.0);
    gb_str(&b, "t.empty_str"); gb_u32(&b, GGUF_VT_STR); gb_str(&b, "");
    gb_str(&b, "t.arr_i32"); gb_u32(&b, GGUF_VT_ARR); gb_u32(&b, GGUF_VT_I32); gb_u64(&b, 3);
    gb_u32(&b, 1); gb_u32(&b, (uint32_t)-2); gb_u32(&b, 3);
    gb_str(&b, "t.arr_f32"); gb_u32(&b, GGUF_VT_ARR); gb_u32(&b, GGUF_VT_F32); gb_u64(&b, 2);
    gb_f32(&b, 0.5f); gb_f32(&b, -2.0f);
    gb_str(&b, "t.arr_bool"); gb_u32(&b, GGUF_VT_ARR); gb_u32(&b, GGUF_VT_BOOL); gb_u64(&b, 2);
    gb_uint(&b, 0, 1); gb_uint(&b, 1, 1);
    gb_str(&b, "t.arr_str"); gb_u32(&b, GGUF_VT_ARR); gb_u32(&b, GGUF_VT_STR); gb_u64(&b, 3);
    gb_str(&b, "a"); gb_str(&b, ""); gb_str(&b, "h\xc3\xa9llo");
    gb_str(&b, "t.arr_empty"); gb_u32(&b, GGUF_VT_ARR); gb_u32(&b, GGUF_VT_U64); gb_u64(&b, 0);
    gb_str(&b, "t.arr_u8"); gb_u32(&b, GGUF_VT_ARR); gb_u32(&b, GGUF_VT_U8); gb_u64(&b, 5);
    gb_put(&b, "\x01\x02\x03\x04\xff", 5);
    /* tensors: data offsets relative to the data section, multiples of 64 */
    gb_tensor(&b, "norm.weight", 1, (const uint64_t[]){ 4 }, QT_F32, 0);
    gb_tensor(&b, "emb.weight", 2, (const uint64_t[]){ 32, 2 }, QT_Q8_0, 64);
    gb_tensor(&b, "w.weight", 1, (const uint64_t[]){ 64 }, QT_Q4_1, 192);
    gb_pad(&b, CRAFT_ALIGN);
    size_t data = b.n;
    gb_f32(&b, 1.0f); gb_f32(&b, 2.0f); gb_f32(&b, 3.0f); gb_f32(&b, 4.0f);
    gb_pad(&b, CRAFT_ALIGN);
    for (int i = 0; i < 2 * 34; i++) gb_uint(&b, (uint8_t)(i * 7), 1);   /* Q8_0: 2 blocks */
    while (b.n < data + 192) gb_uint(&b, 0, 1);
    for (int i = 0; i < 2 * 20; i++) gb_uint(&b, (uint8_t)(i * 3), 1);   /* Q4_1: 2 blocks; ends the file */
    return b;
}

/* Expects failure with code, the name and "offset " in the message; returns the message. */
static char g_err[512];
static const char *expect_fail(const void *buf, size_t n, kvlm_err code)
{
    gguf_file *f = (gguf_file *)0x1;
    g_err[0] = '\0';
    kvlm_err e = gguf_open_memory(buf, n, "crafted.gguf", &f, g_err, sizeof g_err);
    if (e != code)
        fail_msg("expected %s, got %s (n=%zu): %s", kvlm_err_name(code), kvlm_err_name(e), n, g_err);
    assert_null(f);
    if (!strstr(g_err, "crafted.gguf: offset ")) fail_msg("message lacks name/offset: %s", g_err);
    return g_err;
}

static void expect_msg(const void *buf, size_t n, kvlm_err code, const char *needle)
{
    const char *m = expect_fail(buf, n, code);
    if (!strstr(m, needle)) fail_msg("message \"%s\" lacks \"%s\"", m, needle);
}

/* ---- the crafted valid file --------------------------------------------------------------------- */
static void test_crafted_valid(void **state)
{
    (void)state;
    gb b = craft();
    assert_true(b.n < 4096);
    gguf_file *f = NULL;
    char err[256] = "";
    assert_int_equal(gguf_open_memory(b.p, b.n, "crafted.gguf", &f, err, sizeof err), KVLM_OK);
    assert_int_equal(f->version, 3);
    assert_int_equal(f->n_kv, CRAFT_N_KV);
    assert_int_equal(f->n_tensors, CRAFT_N_TENSORS);
    assert_int_equal(f->alignment, CRAFT_ALIGN);
    assert_int_equal(f->data_offset % CRAFT_ALIGN, 0);
    assert_string_equal(f->path, "crafted.gguf");

    int64_t i;
    double d;
    bool bo;
    gguf_str s;
    assert_int_equal(gguf_get_int(f, "t.u8", &i, err, sizeof err), KVLM_OK);   assert_int_equal(i, 200);
    assert_int_equal(gguf_get_int(f, "t.i8", &i, err, sizeof err), KVLM_OK);   assert_int_equal(i, -5);
    assert_int_equal(gguf_get_int(f, "t.u16", &i, err, sizeof err), KVLM_OK);  assert_int_equal(i, 60000);
    assert_int_equal(gguf_get_int(f, "t.i16", &i, err, sizeof err), KVLM_OK);  assert_int_equal(i, -300);
    assert_int_equal(gguf_get_int(f, "t.i32", &i, err, sizeof err), KVLM_OK);  assert_int_equal(i, -70000);
    assert_int_equal(gguf_get_int(f, "t.i64", &i, err, sizeof err), KVLM_OK);  assert_true(i == -1234567890123ll);
    assert_int_equal(gguf_get_int(f, "general.alignment", &i, err, sizeof err), KVLM_OK); assert_int_equal(i, 64);
    /* u64 beyond INT64_MAX is a format error for get_int, fine for get_float */
    assert_int_equal(gguf_get_int(f, "t.u64", &i, err, sizeof err), KVLM_ERR_FORMAT);
    assert_non_null(strstr(err, "t.u64"));
    assert_int_equal(gguf_get_float(f, "t.u64", &d, err, sizeof err), KVLM_OK);
    assert_true(d == 18446744073709551615.0);
    assert_int_equal(gguf_find_kv(f, "t.u64")->v.u, 0xffffffffffffffffull);
    assert_int_equal(gguf_get_float(f, "t.f32", &d, err, sizeof err), KVLM_OK); assert_true(d == (double)1e-5f);
    assert_int_equal(gguf_get_float(f, "t.f64", &d, err, sizeof err), KVLM_OK); assert_true(d == 100000.0);
    assert_int_equal(gguf_get_float(f, "t.i8", &d, err, sizeof err), KVLM_OK);  assert_true(d == -5.0);
    assert_int_equal(gguf_get_bool(f, "t.bool", &bo, err, sizeof err), KVLM_OK); assert_true(bo);
    assert_int_equal(gguf_get_str(f, "general.architecture", &s, err, sizeof err), KVLM_OK);
    assert_true(gguf_str_eq(s, "llama"));
    assert_false(gguf_str_eq(s, "llam"));
    assert_false(gguf_str_eq(s, "llamas"));
    assert_int_equal(gguf_get_str(f, "t.empty_str", &s, err, sizeof err), KVLM_OK);
    assert_int_equal(s.len, 0);
    /* wrong types and absent keys */
    assert_int_equal(gguf_get_int(f, "t.f32", &i, err, sizeof err), KVLM_ERR_FORMAT);
    assert_non_null(strstr(err, "'t.f32'")); assert_non_null(strstr(err, "float32"));
    assert_non_null(strstr(err, "offset "));
    assert_int_equal(gguf_get_int(f, "t.bool", &i, err, sizeof err), KVLM_ERR_FORMAT);
    assert_int_equal(gguf_get_float(f, "general.architecture", &d, err, sizeof err), KVLM_ERR_FORMAT);
    assert_int_equal(gguf_get_bool(f, "t.u8", &bo, err, sizeof err), KVLM_ERR_FORMAT);
    assert_int_equal(gguf_get_str(f, "t.arr_str", &s, err, sizeof err), KVLM_ERR_FORMAT);
    assert_int_equal(gguf_get_str(f, "nope", &s, err, sizeof err), KVLM_ERR_INVALID);
    assert_non_null(strstr(err, "key not found"));
    assert_non_null(strstr(err, "nope"));
    assert_int_equal(gguf_get_int(f, "t", &i, NULL, 0), KVLM_ERR_INVALID);       /* prefix of keys */
    assert_int_equal(gguf_get_int(f, "t.u8x", &i, NULL, 0), KVLM_ERR_INVALID);
    /* arrays */
    const gguf_kv *a;
    assert_int_equal(gguf_get_arr(f, "t.u8", &a, err, sizeof err), KVLM_ERR_FORMAT);
    assert_int_equal(gguf_get_arr(f, "t.arr_i32", &a, err, sizeof err), KVLM_OK);
    assert_int_equal(a->v.arr.type, GGUF_VT_I32);
    assert_int_equal(a->v.arr.n, 3);
    assert_true(gguf_arr_get_int(a, 1, &i)); assert_int_equal(i, -2);
    assert_true(gguf_arr_get_int(a, 2, &i)); assert_int_equal(i, 3);
    assert_false(gguf_arr_get_int(a, 3, &i));
    assert_true(gguf_arr_get_float(a, 0, &d)); assert_true(d == 1.0);
    assert_int_equal(gguf_get_arr(f, "t.arr_f32", &a, err, sizeof err), KVLM_OK);
    assert_true(gguf_arr_get_float(a, 1, &d)); assert_true(d == -2.0);
    assert_false(gguf_arr_get_int(a, 0, &i));
    assert_int_equal(gguf_get_arr(f, "t.arr_bool", &a, err, sizeof err), KVLM_OK);
    assert_true(gguf_arr_get_int(a, 1, &i)); assert_int_equal(i, 1);
    assert_int_equal(gguf_get_arr(f, "t.arr_u8", &a, err, sizeof err), KVLM_OK);
    assert_true(gguf_arr_get_int(a, 4, &i)); assert_int_equal(i, 255);
    assert_int_equal(gguf_get_arr(f, "t.arr_empty", &a, err, sizeof err), KVLM_OK);
    assert_int_equal(a->v.arr.n, 0);
    assert_int_equal(gguf_get_arr(f, "t.arr_str", &a, err, sizeof err), KVLM_OK);
    assert_int_equal(a->v.arr.type, GGUF_VT_STR);
    assert_int_equal(a->v.arr.n, 3);
    assert_true(gguf_str_eq(a->v.arr.strs[0], "a"));
    assert_true(gguf_str_eq(a->v.arr.strs[1], ""));
    assert_true(gguf_str_eq(a->v.arr.strs[2], "h\xc3\xa9llo"));
    assert_false(gguf_arr_get_int(a, 0, &i));
    /* file order is kept; kv offsets increase */
    assert_true(gguf_str_eq(f->kv[0].key, "general.architecture"));
    for (uint64_t k = 1; k < f->n_kv; k++) assert_true(f->kv[k].offset > f->kv[k - 1].offset);
    assert_int_equal(f->kv[0].offset, 24);
    /* tensors */
    const gguf_tensor *t = gguf_find_tensor(f, "emb.weight");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 32); assert_int_equal(t->ne[1], 2);
    assert_int_equal(t->ne[2], 1); assert_int_equal(t->ne[3], 1);
    assert_int_equal(t->type, QT_Q8_0);
    assert_int_equal(t->nbytes, 68);
    assert_ptr_equal(t->data, b.p + f->data_offset + 64);
    t = gguf_find_tensor(f, "norm.weight");
    assert_non_null(t);
    float v[4];
    memcpy(v, t->data, sizeof v);
    assert_true(v[0] == 1.0f && v[3] == 4.0f);
    t = gguf_find_tensor(f, "w.weight");
    assert_non_null(t);
    assert_int_equal(t->nbytes, 40);
    assert_ptr_equal((const uint8_t *)t->data + t->nbytes, b.p + b.n);   /* ends the file */
    assert_null(gguf_find_tensor(f, "w.weigh"));
    assert_null(gguf_find_tensor(f, "zzz"));
    assert_null(gguf_find_kv(f, ""));
    assert_string_equal(gguf_vtype_name(GGUF_VT_F64), "float64");
    assert_string_equal(gguf_vtype_name((gguf_vtype)99), "unknown");
    gguf_close(f);
    gguf_close(NULL);
    free(b.p);
}

/* Every truncation of the crafted file fails cleanly (plain heap copy: ASan sees overreads). */
static void test_truncation(void **state)
{
    (void)state;
    gb b = craft();
    for (size_t n = 0; n < b.n; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        assert_non_null(copy);
        memcpy(copy, b.p, n);
        expect_fail(copy, n, KVLM_ERR_FORMAT);
        free(copy);
    }
    free(b.p);
}

/* Every truncation placed right before a PROT_NONE page: one byte too far faults. */
static void test_guard_page(void **state)
{
    (void)state;
    gb b = craft();
    long page = sysconf(_SC_PAGESIZE);
    size_t readable = ((b.n + (size_t)page - 1) / (size_t)page) * (size_t)page;
    uint8_t *region = mmap(NULL, readable + (size_t)page, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(region != MAP_FAILED);
    assert_int_equal(mprotect(region + readable, (size_t)page, PROT_NONE), 0);
    for (size_t n = 0; n <= b.n; n++) {
        uint8_t *start = region + readable - n;
        memcpy(start, b.p, n);
        if (n == b.n) {
            gguf_file *f = NULL;
            char err[256];
            assert_int_equal(gguf_open_memory(start, n, "guarded", &f, err, sizeof err), KVLM_OK);
            for (uint64_t i = 0; i < f->n_tensors; i++) {      /* touch all tensor bytes */
                volatile uint8_t s = 0;
                for (uint64_t k = 0; k < f->tensors[i].nbytes; k++) s ^= ((const uint8_t *)f->tensors[i].data)[k];
                (void)s;
            }
            gguf_close(f);
        } else {
            gguf_file *f = NULL;
            g_err[0] = 0;
            kvlm_err e = gguf_open_memory(start, n, "crafted.gguf", &f, g_err, sizeof g_err);
            assert_int_equal(e, KVLM_ERR_FORMAT);
            assert_non_null(strstr(g_err, "offset "));
        }
    }
    munmap(region, readable + (size_t)page);
    free(b.p);
}

/* ---- hostile headers and values ----------------------------------------------------------------- */
static void test_bad_header(void **state)
{
    (void)state;
    gb b = craft();
    uint8_t *p = b.p;
    expect_msg(p, 0, KVLM_ERR_FORMAT, "truncated");
    memcpy(p, "GGUG", 4);
    expect_msg(p, b.n, KVLM_ERR_FORMAT, "bad magic");
    memcpy(p, "GGUF", 4);
    p[4] = 1;                                  /* version 1 */
    expect_msg(p, b.n, KVLM_ERR_UNSUPPORTED, "version 1");
    p[4] = 4;
    expect_msg(p, b.n, KVLM_ERR_FORMAT, "version 4");
    p[4] = 0; p[7] = 3;                        /* 0x03000000: a big-endian v3 file */
    expect_msg(p, b.n, KVLM_ERR_UNSUPPORTED, "big-endian");
    p[7] = 0; p[4] = 2;                        /* version 2 parses the same */
    gguf_file *f = NULL;
    assert_int_equal(gguf_open_memory(p, b.n, "v2", &f, NULL, 0), KVLM_OK);
    assert_int_equal(f->version, 2);
    gguf_close(f);
    p[4] = 3;
    /* huge counts: rejected before any allocation (ASan would report a huge malloc) */
    uint64_t huge = 0x7fffffffffffffffull;
    memcpy(p + 8, &huge, 8);
    expect_msg(p, b.n, KVLM_ERR_FORMAT, "cannot fit");
    uint64_t three = 3;
    memcpy(p + 8, &three, 8);
    memcpy(p + 16, &huge, 8);
    expect_msg(p, b.n, KVLM_ERR_FORMAT, "cannot fit");
    uint64_t many = b.n / 13;                  /* plausible alone, too many together */
    memcpy(p + 16, &many, 8);
    memcpy(p + 8, &many, 8);
    expect_msg(p, b.n, KVLM_ERR_FORMAT, "cannot fit");
    free(b.p);
}

/* A small file with one kv whose value bytes are given raw. */
static gb one_kv(const char *key, uint32_t type, const void *val, size_t n)
{
    gb b = { 0 };
    gb_header(&b, 3, 0, 1);
    gb_str(&b, key);
    gb_u32(&b, type);
    gb_put(&b, val, n);
    return b;
}

static void test_bad_values(void **state)
{
    (void)state;
    gb b;
    /* huge key length */
    b = (gb){ 0 };
    gb_header(&b, 3, 0, 1);
    gb_u64(&b, 0xfffffffffffffff0ull); gb_put(&b, "abcdefghijklmnop", 16);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "exceeds");
    free(b.p);
    /* empty key */
    b = one_kv("", GGUF_VT_U32, "\0\0\0\0", 4);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "empty key");
    free(b.p);
    /* huge string value length */
    b = one_kv("k", GGUF_VT_STR, "\xff\xff\xff\xff\xff\xff\xff\x7f" "abc", 11);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "exceeds");
    free(b.p);
    /* unknown value type */
    b = one_kv("k", 13, "\0\0\0\0\0\0\0\0\0\0\0\0\0", 13);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "unknown value type 13");
    free(b.p);
    b = one_kv("k", 0xffffffffu, "\0\0\0\0\0\0\0\0\0\0\0\0\0", 13);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "unknown value type");
    free(b.p);
    /* bool not 0/1 */
    b = one_kv("k", GGUF_VT_BOOL, "\x02", 1);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "bool");
    free(b.p);
    /* arrays: huge count of numbers, of strings; nested arrays; unknown element type; bad bools */
    static const uint8_t huge_u32[] = { 4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 1, 2, 3, 4 };
    b = one_kv("k", GGUF_VT_ARR, huge_u32, sizeof huge_u32);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "cannot fit");
    free(b.p);
    static const uint8_t huge_str[] = { 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 1, 0, 0, 0, 0, 0, 0, 0, 'x' };
    b = one_kv("k", GGUF_VT_ARR, huge_str, sizeof huge_str);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "cannot fit");
    free(b.p);
    static const uint8_t str_trunc[] = { 8, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 'x',
                                         0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0 };
    b = one_kv("k", GGUF_VT_ARR, str_trunc, sizeof str_trunc);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "exceeds");
    free(b.p);
    static const uint8_t nested[] = { 9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0 };
    b = one_kv("k", GGUF_VT_ARR, nested, sizeof nested);
    expect_msg(b.p, b.n, KVLM_ERR_UNSUPPORTED, "arrays of arrays");
    free(b.p);
    static const uint8_t unk_elem[] = { 77, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1 };
    b = one_kv("k", GGUF_VT_ARR, unk_elem, sizeof unk_elem);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "unknown array element type 77");
    free(b.p);
    static const uint8_t bad_bools[] = { 7, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 9 };
    b = one_kv("k", GGUF_VT_ARR, bad_bools, sizeof bad_bools);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "bool element 2");
    free(b.p);
    /* duplicate keys, reported at the second one with the first's offset */
    b = (gb){ 0 };
    gb_header(&b, 3, 0, 3);
    gb_kv_u32(&b, "a.b", 1);
    gb_kv_u32(&b, "x", 2);
    size_t second = b.n;
    gb_kv_str(&b, "a.b", "again");
    char want[64];
    snprintf(want, sizeof want, "offset %zu: duplicate key 'a.b' (first at offset 24)", second);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, want);
    free(b.p);
    /* a key with odd bytes is quoted safely */
    b = one_kv("bad\n\x01key'", GGUF_VT_BOOL, "\x05", 1);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "bad\\x0a\\x01key\\x27");
    free(b.p);
}

/* A file with one tensor info (ne given) and enough zero data after it. */
static gb one_tensor(uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off, size_t data_bytes)
{
    gb b = { 0 };
    gb_header(&b, 3, 1, 0);
    gb_tensor(&b, "blk.0.attn_q.weight", n_dims, ne, type, off);
    gb_pad(&b, 32);
    for (size_t i = 0; i < data_bytes; i++) gb_uint(&b, 0, 1);
    return b;
}

static void test_bad_tensors(void **state)
{
    (void)state;
    gb b;
    b = one_tensor(2, (const uint64_t[]){ 32, 2 }, QT_Q8_0, 0, 68);       /* the valid base case */
    gguf_file *f = NULL;
    assert_int_equal(gguf_open_memory(b.p, b.n, "ok", &f, NULL, 0), KVLM_OK);
    assert_int_equal(f->data_offset, 96);   /* 24 header + 59 info, padded to 32 */
    gguf_close(f);
    free(b.p);
    b = one_tensor(2, (const uint64_t[]){ 32, 2 }, QT_Q8_0, 0, 67);        /* one byte short */
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "tensor 'blk.0.attn_q.weight': data [96, 164) extends past end of file (163 bytes)");
    free(b.p);
    b = one_tensor(0, NULL, QT_F32, 0, 64);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "n_dims 0");
    free(b.p);
    b = one_tensor(5, (const uint64_t[]){ 1, 1, 1, 1, 1 }, QT_F32, 0, 64);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "n_dims 5");
    free(b.p);
    b = one_tensor(2, (const uint64_t[]){ 4, 0 }, QT_F32, 0, 64);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "ne[1] = 0");
    free(b.p);
    b = one_tensor(1, (const uint64_t[]){ 0x8000000000000000ull }, QT_F32, 0, 64);   /* negative as int64 */
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "ne[0]");
    free(b.p);
    b = one_tensor(3, (const uint64_t[]){ 1ull << 40, 1ull << 40, 1ull << 40 }, QT_F32, 0, 64);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "overflows");
    free(b.p);
    b = one_tensor(2, (const uint64_t[]){ 1ull << 62, 2 }, QT_F32, 0, 64);           /* bytes overflow */
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "overflows");
    free(b.p);
    b = one_tensor(2, (const uint64_t[]){ 1ull << 40, 1ull << 20 }, QT_F32, 0, 64);  /* fits, far past EOF */
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "extends past end of file");
    free(b.p);
    b = one_tensor(1, (const uint64_t[]){ 32 }, 4, 0, 64);                           /* removed Q4_2 */
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "tensor 'blk.0.attn_q.weight': unknown type 4");
    free(b.p);
    b = one_tensor(1, (const uint64_t[]){ 32 }, 1000, 0, 64);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "unknown type 1000");
    free(b.p);
    b = one_tensor(1, (const uint64_t[]){ 48 }, QT_Q4_1, 0, 64);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "not a multiple of Q4_1's block size 32");
    free(b.p);
    b = one_tensor(1, (const uint64_t[]){ 4 }, QT_F32, 16, 64);                      /* misaligned */
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "not a multiple of the alignment 32");
    free(b.p);
    b = one_tensor(1, (const uint64_t[]){ 4 }, QT_F32, 0xffffffffffffffe0ull, 64);   /* offset overflow */
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "overflows");
    free(b.p);
    b = one_tensor(1, (const uint64_t[]){ 4 }, QT_F32, 64, 64);                      /* out of range */
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "extends past end of file");
    free(b.p);
    /* general.alignment 1 allows odd offsets, but blocks must stay aligned for their structs */
    b = (gb){ 0 };
    gb_header(&b, 3, 2, 1);
    gb_kv_u32(&b, "general.alignment", 1);
    gb_tensor(&b, "bytes", 1, (const uint64_t[]){ 3 }, QT_I8, 0);
    gb_tensor(&b, "halfs", 1, (const uint64_t[]){ 32 }, QT_Q4_0, 4);
    assert_int_equal(b.n % 2, 1);              /* data section at 131: "halfs" at 135 */
    for (int i = 0; i < 4 + 18; i++) gb_uint(&b, 0, 1);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "tensor 'halfs': data at offset");
    free(b.p);
    /* the same file parses with an even offset; and a buffer at an odd address fails */
    b = (gb){ 0 };
    gb_header(&b, 3, 1, 0);
    gb_tensor(&b, "f", 1, (const uint64_t[]){ 1 }, QT_F32, 0);
    gb_pad(&b, 32);
    gb_f32(&b, 1.0f);
    uint8_t *odd = malloc(b.n + 1);
    assert_non_null(odd);
    memcpy(odd + 1, b.p, b.n);
    expect_msg(odd + 1, b.n, KVLM_ERR_FORMAT, "not 4-byte aligned for F32");
    free(odd);
    free(b.p);
    /* known-but-unsupported types parse (the model loader rejects them) */
    b = one_tensor(1, (const uint64_t[]){ 32 }, QT_IQ4_NL, 0, 18);
    assert_int_equal(gguf_open_memory(b.p, b.n, "iq", &f, NULL, 0), KVLM_OK);
    assert_int_equal(f->tensors[0].nbytes, 18);
    gguf_close(f);
    free(b.p);
    /* empty tensor name, duplicate tensors */
    b = (gb){ 0 };
    gb_header(&b, 3, 1, 0);
    gb_tensor(&b, "", 1, (const uint64_t[]){ 4 }, QT_F32, 0);
    gb_pad(&b, 32);
    for (int i = 0; i < 16; i++) gb_uint(&b, 0, 1);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "empty tensor name");
    free(b.p);
    b = (gb){ 0 };
    gb_header(&b, 3, 2, 0);
    gb_tensor(&b, "a", 1, (const uint64_t[]){ 4 }, QT_F32, 0);
    gb_tensor(&b, "a", 1, (const uint64_t[]){ 4 }, QT_F32, 32);
    gb_pad(&b, 32);
    for (int i = 0; i < 64; i++) gb_uint(&b, 0, 1);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "duplicate tensor 'a' (first at offset 24)");
    free(b.p);
}

static void test_bad_alignment(void **state)
{
    (void)state;
    static const uint32_t bad[] = { 0, 3, 48, 0x80000001u };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        gb b = { 0 };
        gb_header(&b, 3, 0, 1);
        gb_kv_u32(&b, "general.alignment", bad[k]);
        expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "power of two");
        free(b.p);
    }
    gb b = { 0 };
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "general.alignment"); gb_u32(&b, GGUF_VT_U64); gb_u64(&b, 32);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "general.alignment has type uint64");
    free(b.p);
    /* a file whose data section would start past its end */
    b = (gb){ 0 };
    gb_header(&b, 3, 1, 1);
    gb_kv_u32(&b, "general.alignment", 1u << 30);
    gb_tensor(&b, "t", 1, (const uint64_t[]){ 1 }, QT_I8, 0);
    gb_u32(&b, 0);
    expect_msg(b.p, b.n, KVLM_ERR_FORMAT, "past the end of the file");
    free(b.p);
    /* no tensors, no data section: valid */
    b = (gb){ 0 };
    gb_header(&b, 3, 0, 0);
    gguf_file *f = NULL;
    assert_int_equal(gguf_open_memory(b.p, b.n, "empty", &f, NULL, 0), KVLM_OK);
    assert_int_equal(f->n_kv, 0);
    assert_null(gguf_find_kv(f, "x"));
    assert_null(gguf_find_tensor(f, "x"));
    gguf_close(f);
    free(b.p);
}

/* Reads every byte that a successful open hands out (ASan checks each view). */
static void touch_all(const gguf_file *f)
{
    volatile uint8_t x = 0;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        for (uint64_t k = 0; k < kv->key.len; k++) x ^= (uint8_t)kv->key.ptr[k];
        if (kv->type == GGUF_VT_STR)
            for (uint64_t k = 0; k < kv->v.s.len; k++) x ^= (uint8_t)kv->v.s.ptr[k];
        if (kv->type == GGUF_VT_ARR && kv->v.arr.type == GGUF_VT_STR)
            for (uint64_t j = 0; j < kv->v.arr.n; j++)
                for (uint64_t k = 0; k < kv->v.arr.strs[j].len; k++) x ^= (uint8_t)kv->v.arr.strs[j].ptr[k];
        int64_t iv;
        double dv;
        if (kv->type == GGUF_VT_ARR)
            for (uint64_t j = 0; j < kv->v.arr.n; j++) {
                if (gguf_arr_get_int(kv, j, &iv)) x ^= (uint8_t)iv;
                if (gguf_arr_get_float(kv, j, &dv)) x ^= (uint8_t)(dv != 0);
            }
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        for (uint64_t k = 0; k < t->name.len; k++) x ^= (uint8_t)t->name.ptr[k];
        for (uint64_t k = 0; k < t->nbytes; k++) x ^= ((const uint8_t *)t->data)[k];
    }
    (void)x;
}

/* Random byte mutations of the crafted file: any outcome but a crash (run under ASan). */
static void test_mutations(void **state)
{
    (void)state;
    gb b = craft();
    uint8_t *m = malloc(b.n);
    assert_non_null(m);
    uint64_t r = 12345;
    int n_ok = 0, n_err = 0;
    for (int it = 0; it < 20000; it++) {
        memcpy(m, b.p, b.n);
        int flips = 1 + it % 4;
        for (int k = 0; k < flips; k++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = (size_t)(r >> 33) % b.n;
            uint8_t v = (uint8_t)(r >> 20);
            m[pos] = (it & 1) ? v : (uint8_t)(m[pos] ^ (1u << (v & 7)));
        }
        gguf_file *f = NULL;
        char err[256] = "";
        kvlm_err e = gguf_open_memory(m, b.n, "mut", &f, err, sizeof err);
        if (e == KVLM_OK) {
            touch_all(f);
            gguf_close(f);
            n_ok++;
        } else {
            assert_true(e == KVLM_ERR_FORMAT || e == KVLM_ERR_UNSUPPORTED);
            assert_non_null(strstr(err, "mut: offset "));
            n_err++;
        }
    }
    assert_true(n_ok > 0 && n_err > 0);
    free(m);
    free(b.p);
}

/* ---- gguf_open on files ------------------------------------------------------------------------- */
static void test_open_files(void **state)
{
    (void)state;
    gguf_file *f = (gguf_file *)0x1;
    char err[512];
    assert_int_equal(gguf_open("/nonexistent/x.gguf", &f, err, sizeof err), KVLM_ERR_IO);
    assert_null(f);
    assert_non_null(strstr(err, "/nonexistent/x.gguf"));
    assert_int_equal(gguf_open("/tmp", &f, err, sizeof err), KVLM_ERR_IO);
    char path[] = "/tmp/kvlm_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(gguf_open(path, &f, err, sizeof err), KVLM_ERR_FORMAT);   /* empty */
    assert_non_null(strstr(err, "offset 0"));
    gb b = craft();
    assert_int_equal(write(fd, b.p, b.n), (ssize_t)b.n);
    close(fd);
    assert_int_equal(gguf_open(path, &f, err, sizeof err), KVLM_OK);
    assert_string_equal(f->path, path);
    assert_int_equal(f->size, b.n);
    assert_non_null(gguf_find_tensor(f, "w.weight"));
    gguf_close(f);
    assert_int_equal(truncate(path, (off_t)b.n - 1), 0);
    assert_int_equal(gguf_open(path, &f, err, sizeof err), KVLM_ERR_FORMAT);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "extends past end of file"));
    unlink(path);
    free(b.p);
}

/* ---- files written by another implementation (tests/ref/gen_gguf_fixtures.py) ----------------- */
static gguf_file *open_fixture(const char *rel)
{
    gguf_file *f = NULL;
    char err[512] = "";
    kvlm_err e = gguf_open(test_fixture_path(rel), &f, err, sizeof err);
    if (e) fail_msg("%s: %s", rel, err);
    return f;
}

static void test_python_fixtures(void **state)
{
    (void)state;
    int64_t i;
    double d;
    bool b;
    gguf_str s;
    const gguf_kv *a;
    gguf_file *f = open_fixture("gguf/all_types.gguf");
    assert_int_equal(f->alignment, 64);
    assert_int_equal(f->n_kv, 18);
    assert_int_equal(gguf_get_int(f, "t.u8", &i, NULL, 0), KVLM_OK);  assert_int_equal(i, 200);
    assert_int_equal(gguf_get_int(f, "t.i8", &i, NULL, 0), KVLM_OK);  assert_int_equal(i, -5);
    assert_int_equal(gguf_get_int(f, "t.u16", &i, NULL, 0), KVLM_OK); assert_int_equal(i, 60000);
    assert_int_equal(gguf_get_int(f, "t.i16", &i, NULL, 0), KVLM_OK); assert_int_equal(i, -300);
    assert_int_equal(gguf_get_int(f, "t.u32", &i, NULL, 0), KVLM_OK); assert_int_equal(i, 4000000000ll);
    assert_int_equal(gguf_get_int(f, "t.i32", &i, NULL, 0), KVLM_OK); assert_int_equal(i, -70000);
    assert_int_equal(gguf_get_int(f, "t.i64", &i, NULL, 0), KVLM_OK); assert_true(i == -(1ll << 40));
    assert_int_equal(gguf_get_int(f, "t.u64", &i, NULL, 0), KVLM_ERR_FORMAT);
    assert_true(gguf_find_kv(f, "t.u64")->v.u == (1ull << 63) + 5);
    assert_int_equal(gguf_get_float(f, "t.f32", &d, NULL, 0), KVLM_OK); assert_true(d == 0.25);
    assert_int_equal(gguf_get_float(f, "t.f64", &d, NULL, 0), KVLM_OK); assert_true(d == -1.5e300);
    assert_int_equal(gguf_get_bool(f, "t.bool", &b, NULL, 0), KVLM_OK); assert_true(b);
    assert_int_equal(gguf_get_str(f, "t.str", &s, NULL, 0), KVLM_OK);   assert_true(gguf_str_eq(s, "h\xc3\xa9llo"));
    assert_int_equal(gguf_get_arr(f, "t.arr_i16", &a, NULL, 0), KVLM_OK);
    assert_true(gguf_arr_get_int(a, 1, &i)); assert_int_equal(i, -2);
    assert_int_equal(gguf_get_arr(f, "t.arr_f64", &a, NULL, 0), KVLM_OK);
    assert_true(gguf_arr_get_float(a, 1, &d)); assert_true(d == -0.25);
    assert_int_equal(gguf_get_arr(f, "t.arr_bool", &a, NULL, 0), KVLM_OK);
    assert_true(gguf_arr_get_int(a, 2, &i)); assert_int_equal(i, 1);
    assert_int_equal(gguf_get_arr(f, "t.arr_str", &a, NULL, 0), KVLM_OK);
    assert_int_equal(a->v.arr.n, 3);
    assert_true(gguf_str_eq(a->v.arr.strs[2], "yz"));
    static const struct { const char *name; uint32_t type; int64_t ne0; uint64_t off; } ts[] = {
        { "f16", QT_F16, 32, 768 }, { "bf16", QT_BF16, 16, 832 }, { "q4_0", QT_Q4_0, 64, 896 },
        { "q6_k", QT_Q6_K, 256, 960 }, { "i32", QT_I32, 3, 1216 },
    };
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
        const gguf_tensor *t = gguf_find_tensor(f, ts[k].name);
        assert_non_null(t);
        assert_int_equal(t->type, ts[k].type);
        assert_int_equal(t->ne[0], ts[k].ne0);
        assert_int_equal((const uint8_t *)t->data - f->base, ts[k].off);   /* GGUFReader's data_offset */
    }
    float h[32];
    quant_get(QT_F16)->to_float(gguf_find_tensor(f, "f16")->data, h, 32);
    for (int k = 0; k < 32; k++) assert_true(h[k] == (float)k);
    gguf_close(f);

    f = open_fixture("gguf/tiny_llama.gguf");
    assert_int_equal(gguf_get_str(f, "general.architecture", &s, NULL, 0), KVLM_OK);
    assert_true(gguf_str_eq(s, "llama"));
    assert_int_equal(gguf_get_int(f, "llama.embedding_length", &i, NULL, 0), KVLM_OK);
    assert_int_equal(i, 64);
    assert_int_equal(gguf_get_arr(f, "tokenizer.ggml.tokens", &a, NULL, 0), KVLM_OK);
    assert_int_equal(a->v.arr.n, 8);
    assert_true(gguf_str_eq(a->v.arr.strs[6], "\xc4\xa0the"));
    const gguf_tensor *t = gguf_find_tensor(f, "blk.0.attn_q.weight");
    assert_non_null(t);
    assert_int_equal(t->type, QT_Q4_1);
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->ne[1], 16);
    assert_int_equal(t->nbytes, 16 * 2 * 20);
    gguf_close(f);

    f = open_fixture("gguf/kv_only.gguf");
    assert_int_equal(f->n_tensors, 0);
    assert_int_equal(gguf_get_arr(f, "only.arr", &a, NULL, 0), KVLM_OK);
    assert_true(gguf_arr_get_int(a, 3, &i)); assert_int_equal(i, 4);
    gguf_close(f);
}

/* ---- the real model ------------------------------------------------------------------------------ */
static void test_real_model(void **state)
{
    (void)state;
    const char *path = test_model_path();
    if (!path) skip();
    gguf_file *f = NULL;
    char err[512] = "";
    kvlm_err e = gguf_open(path, &f, err, sizeof err);
    if (e) fail_msg("%s", err);
    assert_int_equal(f->version, 3);
    assert_int_equal(f->size, 98362432);
    assert_int_equal(f->n_tensors, 272);
    assert_int_equal(f->alignment, 32);
    int n_q4_1 = 0, n_f32 = 0, n_q8_0 = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        n_q4_1 += t->type == QT_Q4_1;
        n_f32 += t->type == QT_F32;
        n_q8_0 += t->type == QT_Q8_0;
        char name[128];
        assert_true(t->name.len < sizeof name);
        memcpy(name, t->name.ptr, t->name.len);
        name[t->name.len] = '\0';
        assert_ptr_equal(gguf_find_tensor(f, name), t);
        assert_true((const uint8_t *)t->data + t->nbytes <= f->base + f->size);
    }
    assert_int_equal(n_q4_1, 210);
    assert_int_equal(n_f32, 61);
    assert_int_equal(n_q8_0, 1);
    gguf_str s;
    assert_int_equal(gguf_get_str(f, "general.architecture", &s, err, sizeof err), KVLM_OK);
    assert_true(gguf_str_eq(s, "llama"));
    int64_t v;
    assert_int_equal(gguf_get_int(f, "llama.block_count", &v, err, sizeof err), KVLM_OK);
    assert_int_equal(v, 30);
    assert_int_equal(gguf_get_int(f, "llama.embedding_length", &v, err, sizeof err), KVLM_OK);
    assert_int_equal(v, 576);
    assert_int_equal(gguf_get_int(f, "llama.attention.head_count_kv", &v, err, sizeof err), KVLM_OK);
    assert_int_equal(v, 3);
    double d;
    assert_int_equal(gguf_get_float(f, "llama.rope.freq_base", &d, err, sizeof err), KVLM_OK);
    assert_true(d == 100000.0);
    bool b;
    assert_int_equal(gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &b, err, sizeof err), KVLM_OK);
    const gguf_kv *a;
    assert_int_equal(gguf_get_arr(f, "tokenizer.ggml.tokens", &a, err, sizeof err), KVLM_OK);
    assert_int_equal(a->v.arr.type, GGUF_VT_STR);
    assert_int_equal(a->v.arr.n, 49152);
    assert_true(gguf_str_eq(a->v.arr.strs[0], "<|endoftext|>"));
    assert_true(gguf_str_eq(a->v.arr.strs[1], "<|im_start|>"));
    assert_true(gguf_str_eq(a->v.arr.strs[2], "<|im_end|>"));
    assert_int_equal(gguf_get_arr(f, "tokenizer.ggml.merges", &a, err, sizeof err), KVLM_OK);
    assert_int_equal(a->v.arr.n, 48900);
    assert_int_equal(gguf_get_arr(f, "tokenizer.ggml.token_type", &a, err, sizeof err), KVLM_OK);
    assert_int_equal(a->v.arr.type, GGUF_VT_I32);
    assert_true(gguf_arr_get_int(a, 0, &v));
    /* offsets as GGUFReader reports them */
    const gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->type, QT_Q8_0);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 576);
    assert_int_equal(t->ne[1], 49152);
    assert_int_equal(t->nbytes, 30081024);
    assert_int_equal((const uint8_t *)t->data - f->base, 1785664);
    assert_int_equal(f->data_offset, 1785664);
    t = gguf_find_tensor(f, "blk.0.attn_k.weight");
    assert_non_null(t);
    assert_int_equal(t->type, QT_Q4_1);
    assert_int_equal(t->ne[0], 576);
    assert_int_equal(t->ne[1], 192);
    assert_int_equal(t->nbytes, 69120);
    assert_int_equal((const uint8_t *)t->data - f->base, 33530176);
    t = gguf_find_tensor(f, "blk.29.ffn_norm.weight");
    assert_non_null(t);
    assert_int_equal(t->type, QT_F32);
    assert_null(gguf_find_tensor(f, "output.weight"));
    gguf_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crafted_valid),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_guard_page),
        cmocka_unit_test(test_bad_header),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_bad_tensors),
        cmocka_unit_test(test_bad_alignment),
        cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_open_files),
        cmocka_unit_test(test_python_fixtures),
        cmocka_unit_test(test_real_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
