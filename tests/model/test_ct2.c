/* test_ct2.c - the CTranslate2 model.bin reader (src/model/ct2.c) on synthetic images
 * and on the real Whisper tiny.en file.
 *
 * Synthetic images are written byte by byte by a small writer (im_*) following the
 * layout in CTranslate2's model_spec.py, so every test states the exact bytes it feeds.
 * A hostile image must give the documented code with "<name>: offset <n>: <problem>",
 * never crash and never read outside the buffer: the guard-page test places every
 * truncation of every valid image right before a PROT_NONE page.
 * Facts about the real file come from tests/data/whisper/ct2_golden.txt, written by
 * tests/ref/gen_ct2_golden.py (an independent stdlib-only Python parser; CRC-32 by
 * Python's zlib), and the shapes from ../shared/WHISPER.md section 2. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/ct2.h"
#include "util/testutil.h"

/* ---- an image writer ------------------------------------------------------------------------ */
enum { IM_CAP = 4096, IM_MAX_VARS = 16 };
typedef struct img {
    uint8_t b[IM_CAP];
    size_t n;
    int version;
    size_t data_off[IM_MAX_VARS];   /* where each variable's data went */
    int n_vars;
} img;

static void im_raw(img *m, const void *p, size_t n)
{
    if (n == 0) return;
    assert_true(m->n + n <= IM_CAP);
    memcpy(m->b + m->n, p, n);
    m->n += n;
}
static void im_le(img *m, uint32_t v, int bytes)
{
    assert_true(m->n + (size_t)bytes <= IM_CAP);
    for (int i = 0; i < bytes; i++) m->b[m->n++] = (uint8_t)(v >> (8 * i));
}
static void im_u8(img *m, uint32_t v) { im_le(m, v, 1); }
static void im_u16(img *m, uint32_t v) { im_le(m, v, 2); }
static void im_u32(img *m, uint32_t v) { im_le(m, v, 4); }
/* str: u16 length including the NUL, the bytes, the NUL */
static void im_str(img *m, const char *s)
{
    size_t n = strlen(s);
    im_u16(m, (uint32_t)n + 1);
    im_raw(m, s, n + 1);
}

/* In a version >= 2 image: num_variables is at 19 (4 + 2 + "TestSpec\0" + 4), var 0 at 23 */
enum { AT_NVARS = 19, AT_VAR0 = 23 };
static void im_header(img *m, int version, uint32_t n_vars)
{
    memset(m, 0, sizeof *m);
    m->version = version;
    im_u32(m, (uint32_t)version);
    if (version >= 2) { im_str(m, "TestSpec"); im_u32(m, 7); }
    im_u32(m, n_vars);
}

/* A variable with explicit fields: tag is the dtype id (v >= 4) or the item size (v < 4);
 * count is num_bytes (v >= 4) or num_elements (v < 4). */
static void im_var_raw(img *m, const char *name, uint32_t rank, const uint32_t *dims, uint32_t tag,
                       uint32_t count, const void *data, size_t ndata)
{
    im_str(m, name);
    im_u8(m, rank);
    for (uint32_t d = 0; d < rank; d++) im_u32(m, dims[d]);
    im_u8(m, tag);
    im_u32(m, count);
    m->data_off[m->n_vars++] = m->n;
    im_raw(m, data, ndata);
}

static size_t dsize(ct2_dtype t) { return t == CT2_I8 ? 1 : (t == CT2_F32 || t == CT2_I32) ? 4 : 2; }

/* A well-formed variable of dtype t (v < 4: t must be f32, i16 or i8). */
static void im_var(img *m, const char *name, uint32_t rank, const uint32_t *dims, ct2_dtype t, const void *data)
{
    uint32_t n = 1;
    for (uint32_t d = 0; d < rank; d++) n *= dims[d];
    size_t nb = n * dsize(t);
    if (m->version >= 4) im_var_raw(m, name, rank, dims, (uint32_t)t, (uint32_t)nb, data, nb);
    else im_var_raw(m, name, rank, dims, (uint32_t)dsize(t), n, data, nb);
}

static void im_alias(img *m, const char *alias, const char *target) { im_str(m, alias); im_str(m, target); }

/* ---- the valid images: every dtype the version can say, scalars, aliases ------------------------ */
static const float F32_W[6] = { 1.5f, -2.0f, 0.25f, 3.0f, -0.125f, 1e10f };   /* "b/w" [3,2] */
static const float F32_A[6] = { 0.0f, -1.0f, 2.5f, 4.0f, 8.0f, -16.0f };       /* "a/f32" [2,3] */
static const float F32_SCALE[1] = { 0.5f };                                    /* "b/w_scale" [1] */
static const int8_t I8_S = -5;
static const int16_t I16_S = -300;
static const int32_t I32_S = 70000;
static const uint16_t F16_V[4] = { 0x3c00, 0xc000, 0x3800, 0x7bff };  /* 1, -2, 0.5, 65504 */
static const uint16_t BF16_V[4] = { 0x3f80, 0xc040, 0x4120, 0xbe00 }; /* 1, -3, 10, -0.125 */
static const uint16_t F16_S = 0x4200;                                  /* 3.0 */
static const int8_t STR_ATTR[5] = { 'h', 'e', 'l', 'l', 'o' };        /* a string attribute: int8 [5] */

/* Variable order in the file (deliberately not sorted by name). */
static int n_valid_vars(int version) { return version >= 4 ? 10 : 6; }

static void build_valid(img *m, int version)
{
    const uint32_t d32[] = { 3, 2 }, d23[] = { 2, 3 }, d1[] = { 1 }, d4[] = { 4 }, d22[] = { 2, 2 }, d5[] = { 5 };
    im_header(m, version, (uint32_t)n_valid_vars(version));
    im_var(m, "b/w", 2, d32, CT2_F32, F32_W);
    im_var(m, "a/f32", 2, d23, CT2_F32, F32_A);
    im_var(m, "a/i8", 0, NULL, CT2_I8, &I8_S);
    im_var(m, "a/i16", 0, NULL, CT2_I16, &I16_S);
    im_var(m, "b/w_scale", 1, d1, CT2_F32, F32_SCALE);
    im_var(m, "a/str", 1, d5, CT2_I8, STR_ATTR);
    if (version >= 4) {
        im_var(m, "a/i32", 0, NULL, CT2_I32, &I32_S);
        im_var(m, "a/f16", 1, d4, CT2_F16, F16_V);
        im_var(m, "a/bf16", 2, d22, CT2_BF16, BF16_V);
        im_var(m, "a/f16s", 0, NULL, CT2_F16, &F16_S);
    }
    if (version >= 3) {
        im_u32(m, 3);
        im_alias(m, "c/chain", "c/alias");   /* an alias of an alias, named before it */
        im_alias(m, "c/alias", "b/w");
        im_alias(m, "c/tied", "a/f32");
    }
}

/* ---- helpers --------------------------------------------------------------------------------------- */
static char g_err[512];

static ct2_file *open_ok(const void *p, size_t n)
{
    ct2_file *f = NULL;
    g_err[0] = 0;
    kvlm_err e = ct2_open_memory(p, n, "t.bin", &f, g_err, sizeof g_err);
    if (e != KVLM_OK) fail_msg("unexpected error %d: %s", e, g_err);
    assert_non_null(f);
    return f;
}

/* Expects code and a message "t.bin: offset <at>: ...<want>..." (at < 0: any offset). */
static void expect_err_at(const img *m, kvlm_err code, long long at, const char *want)
{
    ct2_file *f = (ct2_file *)1;
    g_err[0] = 0;
    kvlm_err e = ct2_open_memory(m->b, m->n, "t.bin", &f, g_err, sizeof g_err);
    if (e != code) fail_msg("expected code %d, got %d: %s", code, e, g_err);
    assert_null(f);
    assert_true(strncmp(g_err, "t.bin: offset ", 14) == 0);
    if (at >= 0) {
        char pre[64];
        snprintf(pre, sizeof pre, "t.bin: offset %lld: ", at);
        if (strncmp(g_err, pre, strlen(pre)) != 0) fail_msg("expected '%s...', got '%s'", pre, g_err);
    }
    if (!strstr(g_err, want)) fail_msg("expected '%s' in '%s'", want, g_err);
}
static void expect_err(const img *m, kvlm_err code, const char *want) { expect_err_at(m, code, -1, want); }

static void check_f32s(const ct2_var *v, const float *want, int64_t n)
{
    assert_int_equal(v->n_elem, n);
    for (int64_t i = 0; i < n; i++) {
        float got;
        memcpy(&got, (const uint8_t *)v->data + 4 * i, 4);
        assert_true(got == want[i]);
        assert_true(ct2_var_float(v, i) == want[i]);
    }
}

static void check_shape(const ct2_var *v, uint32_t rank, const int64_t *dims)
{
    assert_int_equal(v->rank, rank);
    int64_t n = 1;
    for (uint32_t d = 0; d < CT2_MAX_RANK; d++) {
        int64_t want = d < rank ? dims[d] : 1;
        assert_int_equal(v->dims[d], want);
        n *= want;
    }
    assert_int_equal(v->n_elem, n);
}

/* ---- valid images ------------------------------------------------------------------------------------ */
static void check_valid(int version)
{
    img m;
    build_valid(&m, version);
    ct2_file *f = open_ok(m.b, m.n);
    assert_int_equal(f->version, version);
    assert_string_equal(f->spec_name, version >= 2 ? "TestSpec" : "");
    assert_int_equal(f->spec_revision, version >= 2 ? 7 : 0);
    assert_int_equal(f->n_vars, n_valid_vars(version));
    assert_int_equal(f->n_aliases, version >= 3 ? 3 : 0);
    assert_ptr_equal(f->base, m.b);
    assert_int_equal(f->size, m.n);

    static const char *const names[] = { "b/w", "a/f32", "a/i8", "a/i16", "b/w_scale", "a/str",
                                         "a/i32", "a/f16", "a/bf16", "a/f16s" };
    static const ct2_dtype types[] = { CT2_F32, CT2_F32, CT2_I8, CT2_I16, CT2_F32, CT2_I8,
                                       CT2_I32, CT2_F16, CT2_BF16, CT2_F16 };
    static const uint64_t nbytes[] = { 24, 24, 1, 2, 4, 5, 4, 8, 8, 2 };
    for (int i = 0; i < f->n_vars; i++) {
        const ct2_var *v = &f->vars[i];
        assert_string_equal(v->name, names[i]);            /* file order kept */
        assert_int_equal(v->dtype, types[i]);
        assert_int_equal(v->nbytes, nbytes[i]);
        assert_int_equal(v->offset, m.data_off[i]);
        assert_ptr_equal(v->data, m.b + m.data_off[i]);
        assert_ptr_equal(ct2_find(f, names[i]), v);
    }
    static const int64_t s32[] = { 3, 2 }, s23[] = { 2, 3 }, s1[] = { 1 }, s5[] = { 5 }, s4[] = { 4 }, s22[] = { 2, 2 };
    check_shape(&f->vars[0], 2, s32);
    check_shape(&f->vars[1], 2, s23);
    check_shape(&f->vars[2], 0, NULL);
    check_shape(&f->vars[3], 0, NULL);
    check_shape(&f->vars[4], 1, s1);
    check_shape(&f->vars[5], 1, s5);
    check_f32s(&f->vars[0], F32_W, 6);
    check_f32s(&f->vars[1], F32_A, 6);
    check_f32s(&f->vars[4], F32_SCALE, 1);
    assert_memory_equal(f->vars[5].data, "hello", 5);
    assert_true(ct2_var_float(&f->vars[5], 1) == (float)'e');

    int64_t iv = 0;
    double dv = 0;
    assert_true(ct2_get_int(f, "a/i8", &iv));
    assert_int_equal(iv, -5);
    assert_true(ct2_get_int(f, "a/i16", &iv));
    assert_int_equal(iv, -300);
    assert_true(ct2_var_float(&f->vars[2], 0) == -5.0f);
    assert_false(ct2_get_int(f, "a/f32", &iv));    /* 6 elements */
    assert_false(ct2_get_int(f, "b/w_scale", &iv));/* one element, but a float */
    assert_false(ct2_get_int(f, "a/str", &iv));
    assert_false(ct2_get_int(f, "nope", &iv));
    assert_true(ct2_get_float(f, "b/w_scale", &dv));   /* one element of rank 1 */
    assert_true(dv == 0.5);
    assert_false(ct2_get_float(f, "a/i8", &dv));       /* an integer */
    assert_false(ct2_get_float(f, "a/f32", &dv));
    assert_null(ct2_find(f, "nope"));
    assert_null(ct2_find(f, "a"));
    assert_null(ct2_find(f, ""));
    assert_null(ct2_find(f, "b/w_"));
    assert_null(ct2_find(f, "a/f32_scale"));   /* "X_scale" rule is for aliases only */
    assert_null(ct2_find(NULL, "a/i8"));
    assert_null(ct2_find(f, NULL));

    if (version >= 4) {
        const ct2_var *v = ct2_find(f, "a/f16");
        check_shape(v, 1, s4);
        assert_true(ct2_var_float(v, 0) == 1.0f && ct2_var_float(v, 1) == -2.0f);
        assert_true(ct2_var_float(v, 2) == 0.5f && ct2_var_float(v, 3) == 65504.0f);
        v = ct2_find(f, "a/bf16");
        check_shape(v, 2, s22);
        assert_true(ct2_var_float(v, 0) == 1.0f && ct2_var_float(v, 1) == -3.0f);
        assert_true(ct2_var_float(v, 2) == 10.0f && ct2_var_float(v, 3) == -0.125f);
        assert_true(ct2_get_int(f, "a/i32", &iv));
        assert_int_equal(iv, 70000);
        assert_true(ct2_var_float(ct2_find(f, "a/i32"), 0) == 70000.0f);
        assert_true(ct2_get_float(f, "a/f16s", &dv));
        assert_true(dv == 3.0);
        assert_false(ct2_get_int(f, "a/f16s", &iv));
    }
    if (version >= 3) {
        assert_string_equal(f->aliases[0].alias, "c/chain");
        assert_string_equal(f->aliases[0].target, "c/alias");
        assert_string_equal(f->aliases[1].alias, "c/alias");
        assert_string_equal(f->aliases[1].target, "b/w");
        assert_string_equal(f->aliases[2].alias, "c/tied");
        assert_string_equal(f->aliases[2].target, "a/f32");
        assert_ptr_equal(ct2_find(f, "c/alias"), &f->vars[0]);
        assert_ptr_equal(ct2_find(f, "c/chain"), &f->vars[0]);
        assert_ptr_equal(ct2_find(f, "c/tied"), &f->vars[1]);
        /* alias + "_scale" -> target + "_scale", through the chain too */
        assert_ptr_equal(ct2_find(f, "c/alias_scale"), &f->vars[4]);
        assert_ptr_equal(ct2_find(f, "c/chain_scale"), &f->vars[4]);
        assert_null(ct2_find(f, "c/tied_scale"));   /* a/f32_scale does not exist */
        assert_null(ct2_find(f, "c/alia_scale"));
    } else {
        assert_null(ct2_find(f, "c/alias"));
    }
    ct2_close(f);
}

static void test_valid_v1(void **state) { (void)state; check_valid(1); }
static void test_valid_v2(void **state) { (void)state; check_valid(2); }
static void test_valid_v3(void **state) { (void)state; check_valid(3); }
static void test_valid_v4(void **state) { (void)state; check_valid(4); }
static void test_valid_v5(void **state) { (void)state; check_valid(5); }
static void test_valid_v6(void **state) { (void)state; check_valid(6); }

static void test_dtype_tables(void **state)
{
    (void)state;
    static const size_t sizes[] = { 4, 1, 2, 4, 2, 2 };
    static const char *const nm[] = { "float32", "int8", "int16", "int32", "float16", "bfloat16" };
    for (int t = 0; t <= 5; t++) {
        assert_int_equal(ct2_dtype_size((ct2_dtype)t), sizes[t]);
        assert_string_equal(ct2_dtype_name((ct2_dtype)t), nm[t]);
    }
    assert_int_equal(ct2_dtype_size((ct2_dtype)6), 0);
    assert_string_equal(ct2_dtype_name((ct2_dtype)6), "unknown");
    assert_string_equal(ct2_dtype_name((ct2_dtype)-1), "unknown");
}

/* ct2_open: mmap of a file written from the same image gives the same variables. */
static void test_open_file(void **state)
{
    (void)state;
    img m;
    build_valid(&m, 6);
    char path[] = "/tmp/test_ct2_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, m.b, m.n), (ssize_t)m.n);
    close(fd);
    ct2_file *f = NULL;
    char err[256] = "";
    if (ct2_open(path, &f, err, sizeof err) != KVLM_OK) fail_msg("%s", err);
    assert_int_equal(f->n_vars, 10);
    assert_memory_equal(f->vars[0].data, m.b + m.data_off[0], 24);
    assert_ptr_equal(ct2_find(f, "c/chain"), &f->vars[0]);
    ct2_close(f);
    /* an empty file, a missing one, a directory */
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(ct2_open(path, &f, err, sizeof err), KVLM_ERR_FORMAT);
    assert_null(f);
    assert_non_null(strstr(err, "offset 0: truncated"));
    unlink(path);
    assert_int_equal(ct2_open(path, &f, err, sizeof err), KVLM_ERR_IO);
    assert_non_null(strstr(err, path));
    assert_int_equal(ct2_open("/tmp", &f, err, sizeof err), KVLM_ERR_IO);
    assert_null(f);
    ct2_close(NULL);
    assert_int_equal(ct2_open_memory(NULL, 4, "x", &f, err, sizeof err), KVLM_ERR_INVALID);
}

/* Every truncation of every valid image, placed right before a PROT_NONE page. */
static void test_truncation_guard_page(void **state)
{
    (void)state;
    long page = sysconf(_SC_PAGESIZE);
    size_t readable = ((IM_CAP + (size_t)page - 1) / (size_t)page) * (size_t)page;
    uint8_t *region = mmap(NULL, readable + (size_t)page, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(region != MAP_FAILED);
    assert_int_equal(mprotect(region + readable, (size_t)page, PROT_NONE), 0);
    static const int versions[] = { 1, 2, 3, 4, 6 };
    for (size_t vi = 0; vi < sizeof versions / sizeof versions[0]; vi++) {
        img m;
        build_valid(&m, versions[vi]);
        for (size_t n = 0; n <= m.n; n++) {
            uint8_t *start = region + readable - n;
            memcpy(start, m.b, n);
            ct2_file *f = (ct2_file *)1;
            g_err[0] = 0;
            kvlm_err e = ct2_open_memory(start, n, "t.bin", &f, g_err, sizeof g_err);
            if (n == m.n) {
                assert_int_equal(e, KVLM_OK);
                volatile uint8_t s = 0;   /* every data byte is readable */
                for (int64_t i = 0; i < f->n_vars; i++)
                    for (uint64_t k = 0; k < f->vars[i].nbytes; k++) s ^= ((const uint8_t *)f->vars[i].data)[k];
                (void)s;
                ct2_close(f);
            } else {
                if (e != KVLM_ERR_FORMAT) fail_msg("v%d cut at %zu: code %d: %s", versions[vi], n, e, g_err);
                assert_null(f);
                assert_true(strncmp(g_err, "t.bin: offset ", 14) == 0);
                assert_non_null(strstr(g_err, "truncated"));
            }
        }
    }
    munmap(region, readable + (size_t)page);
}

/* ---- hostile images ------------------------------------------------------------------------------------ */
static const float ONE = 1.0f;

static void test_versions(void **state)
{
    (void)state;
    img m;
    build_valid(&m, 6);
    m.b[0] = 0;
    expect_err_at(&m, KVLM_ERR_FORMAT, 0, "binary version 0");
    m.b[0] = 7;
    expect_err_at(&m, KVLM_ERR_UNSUPPORTED, 0, "binary version 7");
    m.b[0] = 6; m.b[3] = 0x80;   /* 2^31 + 6 */
    expect_err(&m, KVLM_ERR_UNSUPPORTED, "binary version 2147483654");
}

static void test_num_variables(void **state)
{
    (void)state;
    img m;
    im_header(&m, 6, 0);
    im_u32(&m, 0);
    expect_err_at(&m, KVLM_ERR_FORMAT, AT_NVARS, "num_variables is 0");
    im_header(&m, 6, 0xffffffffu);
    im_var(&m, "x", 0, NULL, CT2_F32, &ONE);
    im_u32(&m, 0);
    expect_err_at(&m, KVLM_ERR_FORMAT, AT_NVARS, "num_variables 4294967295 needs at least");
    im_header(&m, 1, 3);   /* more variables than the file holds, but plausible */
    im_var(&m, "x", 0, NULL, CT2_F32, &ONE);
    im_var(&m, "y", 0, NULL, CT2_F32, &ONE);
    im_var(&m, "z", 0, NULL, CT2_F32, &ONE);
    m.b[4] = 200;
    expect_err(&m, KVLM_ERR_FORMAT, "num_variables 200");
}

static void test_rank_and_dims(void **state)
{
    (void)state;
    img m;
    const uint32_t nine[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
    im_header(&m, 6, 1);
    im_var_raw(&m, "r9", 9, nine, CT2_F32, 4, &ONE, 4);
    im_u32(&m, 0);
    expect_err_at(&m, KVLM_ERR_FORMAT, AT_VAR0, "variable 'r9': rank 9 exceeds 8");

    const uint32_t eight[8] = { 1, 1, 1, 1, 1, 1, 1, 1 };   /* rank 8 is fine */
    im_header(&m, 6, 1);
    im_var_raw(&m, "r8", 8, eight, CT2_F32, 4, &ONE, 4);
    im_u32(&m, 0);
    ct2_file *f = open_ok(m.b, m.n);
    assert_int_equal(f->vars[0].rank, 8);
    assert_int_equal(f->vars[0].n_elem, 1);
    ct2_close(f);

    const uint32_t zero[3] = { 2, 0, 3 };
    im_header(&m, 6, 1);
    im_var_raw(&m, "z", 3, zero, CT2_F32, 0, NULL, 0);
    im_u32(&m, 0);
    expect_err_at(&m, KVLM_ERR_FORMAT, AT_VAR0, "variable 'z': dimension 1 is 0");

    const uint32_t big[8] = { 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 2, 2, 2, 2 };
    im_header(&m, 6, 1);
    im_var_raw(&m, "big", 8, big, CT2_F32, 4, &ONE, 4);
    im_u32(&m, 0);
    expect_err(&m, KVLM_ERR_FORMAT, "variable 'big': the element count overflows int64");

    const uint32_t two31[2] = { 0x80000000u, 0x80000000u };   /* 2^62 elements: bytes overflow */
    im_header(&m, 6, 1);
    im_var_raw(&m, "b", 2, two31, CT2_F32, 4, &ONE, 4);
    im_u32(&m, 0);
    expect_err(&m, KVLM_ERR_FORMAT, "variable 'b': the byte count overflows int64");
    im_header(&m, 6, 1);
    im_var_raw(&m, "b", 2, two31, CT2_I8, 0, NULL, 0);   /* 2^62 bytes of int8 vs num_bytes 0 */
    im_u32(&m, 0);
    expect_err(&m, KVLM_ERR_FORMAT, "num_bytes 0 but 4611686018427387904 elements of int8 need 4611686018427387904");
}

static void test_byte_counts(void **state)
{
    (void)state;
    img m;
    const uint32_t d23[] = { 2, 3 };
    im_header(&m, 6, 1);
    im_var_raw(&m, "w", 2, d23, CT2_F32, 20, F32_A, 20);
    im_u32(&m, 0);
    expect_err_at(&m, KVLM_ERR_FORMAT, AT_VAR0, "variable 'w': num_bytes 20 but 6 elements of float32 need 24");
    im_header(&m, 6, 1);
    im_var_raw(&m, "w", 2, d23, CT2_F16, 24, F32_A, 24);   /* f32 bytes labelled f16 */
    im_u32(&m, 0);
    expect_err(&m, KVLM_ERR_FORMAT, "num_bytes 24 but 6 elements of float16 need 12");
    im_header(&m, 6, 1);   /* num_bytes right, but past the end of the file */
    im_var_raw(&m, "w", 2, d23, CT2_F32, 24, F32_A, 8);
    char want[96];
    snprintf(want, sizeof want, "truncated: variable 'w': 24 data bytes at offset %zu, 8 left", m.data_off[0]);
    expect_err_at(&m, KVLM_ERR_FORMAT, AT_VAR0, want);
    /* version < 4: num_elements must be prod(dims) */
    im_header(&m, 3, 1);
    im_var_raw(&m, "w", 2, d23, 4, 5, F32_A, 20);
    im_u32(&m, 0);
    expect_err(&m, KVLM_ERR_FORMAT, "variable 'w': num_elements 5 but the dimensions hold 6");
}

static void test_dtype_ids(void **state)
{
    (void)state;
    img m;
    for (uint32_t id = 6; id < 256; id += 249) {   /* 6 and 255 */
        im_header(&m, 6, 1);
        im_var_raw(&m, "x", 0, NULL, id, 4, &ONE, 4);
        im_u32(&m, 0);
        char want[64];
        snprintf(want, sizeof want, "variable 'x': unknown dtype id %u", id);
        expect_err_at(&m, KVLM_ERR_FORMAT, AT_VAR0, want);
    }
    im_header(&m, 2, 1);
    im_var_raw(&m, "x", 0, NULL, 3, 1, &ONE, 3);
    expect_err(&m, KVLM_ERR_FORMAT, "variable 'x': item size 3 is not 1, 2 or 4");
    im_header(&m, 1, 1);
    im_var_raw(&m, "x", 0, NULL, 8, 1, &ONE, 4);
    expect_err(&m, KVLM_ERR_FORMAT, "item size 8");
}

/* What follows a hand-written name in test_names: a float32 scalar 1.0, no aliases. */
static void im_scalar_rest(img *m)
{
    im_u8(m, 0);
    im_u8(m, CT2_F32);
    im_u32(m, 4);
    im_raw(m, &ONE, 4);
    im_u32(m, 0);
}

static void test_names(void **state)
{
    (void)state;
    img m;
    /* length 0: no room for the NUL */
    im_header(&m, 6, 1);
    im_u16(&m, 0);
    im_scalar_rest(&m);
    expect_err_at(&m, KVLM_ERR_FORMAT, AT_VAR0, "variable name: length 0");
    /* length 1: the empty name */
    im_header(&m, 6, 1);
    im_var(&m, "", 0, NULL, CT2_F32, &ONE);
    im_u32(&m, 0);
    expect_err_at(&m, KVLM_ERR_FORMAT, AT_VAR0, "variable name is empty");
    /* no NUL at the stated length */
    im_header(&m, 6, 1);
    im_u16(&m, 3); im_raw(&m, "abc", 3);
    im_scalar_rest(&m);
    expect_err_at(&m, KVLM_ERR_FORMAT, AT_VAR0, "variable name: not NUL-terminated at its length 3");
    /* an inner NUL */
    im_header(&m, 6, 1);
    im_u16(&m, 4); im_raw(&m, "a\0b", 4);
    im_scalar_rest(&m);
    expect_err_at(&m, KVLM_ERR_FORMAT, AT_VAR0, "variable name: NUL at byte 1");
    /* a length past the end */
    im_header(&m, 6, 1);
    static const char tail[] = "abc\0rank-dims-and-more";
    im_u16(&m, 60000);
    im_raw(&m, tail, sizeof tail);
    expect_err_at(&m, KVLM_ERR_FORMAT, AT_VAR0, "truncated: variable name of 60000 bytes");
    /* the spec name obeys the same rules */
    im_header(&m, 6, 1);
    m.b[14] = 'X';   /* "TestSpec\0" -> "TestSpecX" */
    expect_err_at(&m, KVLM_ERR_FORMAT, 4, "spec name: not NUL-terminated");
    /* a non-printable name is quoted safely in messages */
    im_header(&m, 6, 1);
    im_var_raw(&m, "\x01'\xff", 9, (const uint32_t[9]){ 0 }, 0, 0, NULL, 0);
    expect_err(&m, KVLM_ERR_FORMAT, "variable '\\x01\\x27\\xff': rank 9");
}

static void test_duplicates(void **state)
{
    (void)state;
    img m;
    im_header(&m, 6, 3);
    im_var(&m, "b", 0, NULL, CT2_F32, &ONE);
    im_var(&m, "a", 0, NULL, CT2_F32, &ONE);
    size_t at = m.n;
    im_var(&m, "b", 0, NULL, CT2_F32, &ONE);
    im_u32(&m, 0);
    expect_err_at(&m, KVLM_ERR_FORMAT, (long long)at, "duplicate variable name 'b'");

    im_header(&m, 6, 1);
    im_var(&m, "a", 0, NULL, CT2_F32, &ONE);
    im_u32(&m, 2);
    im_alias(&m, "x", "a");
    at = m.n;
    im_alias(&m, "x", "a");
    expect_err_at(&m, KVLM_ERR_FORMAT, (long long)at, "duplicate alias name 'x'");

    im_header(&m, 6, 2);
    im_var(&m, "a", 0, NULL, CT2_F32, &ONE);
    im_var(&m, "b", 0, NULL, CT2_F32, &ONE);
    im_u32(&m, 1);
    at = m.n;
    im_alias(&m, "b", "a");
    expect_err_at(&m, KVLM_ERR_FORMAT, (long long)at, "alias 'b' has the name of a variable");
}

static void test_aliases(void **state)
{
    (void)state;
    img m;
    im_header(&m, 6, 1);
    im_var(&m, "a", 0, NULL, CT2_F32, &ONE);
    im_u32(&m, 1);
    size_t at = m.n;
    im_alias(&m, "x", "missing");
    expect_err_at(&m, KVLM_ERR_FORMAT, (long long)at, "alias 'x' names a missing variable 'missing'");

    im_header(&m, 6, 1);   /* an empty target is a missing variable */
    im_var(&m, "a", 0, NULL, CT2_F32, &ONE);
    im_u32(&m, 1);
    im_alias(&m, "x", "");
    expect_err(&m, KVLM_ERR_FORMAT, "alias 'x' names a missing variable ''");

    im_header(&m, 6, 1);   /* x -> y -> z -> x */
    im_var(&m, "a", 0, NULL, CT2_F32, &ONE);
    im_u32(&m, 4);
    im_alias(&m, "w", "a");
    at = m.n;
    im_alias(&m, "x", "y");
    im_alias(&m, "y", "z");
    im_alias(&m, "z", "x");
    expect_err_at(&m, KVLM_ERR_FORMAT, (long long)at, "alias 'x' leads to a cycle of aliases");

    im_header(&m, 6, 1);   /* x -> x */
    im_var(&m, "a", 0, NULL, CT2_F32, &ONE);
    im_u32(&m, 1);
    im_alias(&m, "x", "x");
    expect_err(&m, KVLM_ERR_FORMAT, "alias 'x' leads to a cycle");

    im_header(&m, 6, 1);   /* a chain ending in a cycle: p -> q -> r -> q */
    im_var(&m, "a", 0, NULL, CT2_F32, &ONE);
    im_u32(&m, 3);
    im_alias(&m, "p", "q");
    im_alias(&m, "q", "r");
    im_alias(&m, "r", "q");
    expect_err(&m, KVLM_ERR_FORMAT, "leads to a cycle");

    im_header(&m, 6, 1);   /* a chain of 26, listed from its near end: all resolve */
    im_var(&m, "a", 0, NULL, CT2_F32, &ONE);
    im_u32(&m, 26);
    char an[2] = "A", tn[2] = "a";
    for (int i = 0; i < 26; i++) {
        an[0] = (char)('A' + i);
        tn[0] = i == 25 ? 'a' : (char)('A' + i + 1);
        im_alias(&m, an, tn);
    }
    ct2_file *f = open_ok(m.b, m.n);
    for (int i = 0; i < 26; i++) {
        an[0] = (char)('A' + i);
        assert_ptr_equal(ct2_find(f, an), &f->vars[0]);
    }
    ct2_close(f);

    im_header(&m, 6, 1);   /* huge num_aliases */
    im_var(&m, "a", 0, NULL, CT2_F32, &ONE);
    at = m.n;
    im_u32(&m, 0x7fffffffu);
    im_alias(&m, "x", "a");
    expect_err_at(&m, KVLM_ERR_FORMAT, (long long)at, "num_aliases 2147483647 needs at least");

    im_header(&m, 6, 1);   /* empty alias name */
    im_var(&m, "a", 0, NULL, CT2_F32, &ONE);
    im_u32(&m, 1);
    im_alias(&m, "", "a");
    expect_err(&m, KVLM_ERR_FORMAT, "alias name is empty");
}

static void test_trailing_bytes(void **state)
{
    (void)state;
    static const int versions[] = { 1, 2, 3, 4, 6 };
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        img m;
        build_valid(&m, versions[i]);
        size_t at = m.n;
        im_u8(&m, 0);
        expect_err_at(&m, KVLM_ERR_FORMAT, (long long)at, "1 trailing bytes");
        im_u32(&m, 0);
        expect_err_at(&m, KVLM_ERR_FORMAT, (long long)at, "5 trailing bytes");
    }
}

/* The fuzz seeds (tests/ref/gen_ct2_corpus.py, an independent Python writer, run by
 * scripts/gen-fixtures.sh into <fixtures>/ct2/) all open. */
static void test_seed_corpus(void **state)
{
    (void)state;
    static const struct { const char *file; int version; int64_t n_vars, n_aliases; } seeds[] = {
        { "v1.bin", 1, 6, 0 }, { "v2.bin", 2, 6, 0 }, { "v3.bin", 3, 6, 3 }, { "v4.bin", 4, 9, 3 },
        { "v6.bin", 6, 9, 3 }, { "whisper_like.bin", 6, 4, 1 },
    };
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "ct2/%s", seeds[i].file);
        size_t n;
        char *buf = test_read_file(test_fixture_path(rel), &n);
        if (!buf) skip();   /* fixtures not generated (make fixtures) */
        ct2_file *f = open_ok(buf, n);
        assert_int_equal(f->version, seeds[i].version);
        assert_int_equal(f->n_vars, seeds[i].n_vars);
        assert_int_equal(f->n_aliases, seeds[i].n_aliases);
        if (seeds[i].n_aliases == 3) {
            assert_ptr_equal(ct2_find(f, "c/chain"), ct2_find(f, "b/w"));
            assert_ptr_equal(ct2_find(f, "c/chain_scale"), ct2_find(f, "b/w_scale"));
            assert_true(ct2_var_float(ct2_find(f, "c/tied"), 5) == -16.0f);
        }
        ct2_close(f);
        free(buf);
    }
}

/* ---- the real model ---------------------------------------------------------------------------------- */
static const char *whisper_dir(void)
{
    static char buf[4096];
    const char *cache = getenv("KVLM_CACHE"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (cache && *cache) snprintf(buf, sizeof buf, "%s/whisper-tiny.en", cache);
    else if (xdg && *xdg) snprintf(buf, sizeof buf, "%s/kvlm/whisper-tiny.en", xdg);
    else snprintf(buf, sizeof buf, "%s/.cache/kvlm/whisper-tiny.en", home ? home : ".");
    return buf;
}

/* zlib's CRC-32 (reflected 0xEDB88320), bit by bit: Python's zlib.crc32 is the reference. */
static uint32_t crc32_bytes(const uint8_t *p, uint64_t n)
{
    static uint32_t table[256];
    if (!table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
            table[i] = c;
        }
    uint32_t c = 0xffffffffu;
    for (uint64_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

typedef struct shape_row { const char *name; uint32_t rank; int64_t dims[3]; } shape_row;

/* ../shared/WHISPER.md section 2 (N = layer 0 and 3 here) */
static const shape_row WHISPER_SHAPES[] = {
    { "encoder/conv1/weight", 3, { 384, 80, 3 } },
    { "encoder/conv1/bias", 1, { 384 } },
    { "encoder/conv2/weight", 3, { 384, 384, 3 } },
    { "encoder/conv2/bias", 1, { 384 } },
    { "encoder/position_encodings/encodings", 2, { 1500, 384 } },
    { "encoder/layer_0/self_attention/layer_norm/gamma", 1, { 384 } },
    { "encoder/layer_3/self_attention/layer_norm/beta", 1, { 384 } },
    { "encoder/layer_0/self_attention/linear_0/weight", 2, { 1152, 384 } },
    { "encoder/layer_0/self_attention/linear_0/bias", 1, { 1152 } },
    { "encoder/layer_3/self_attention/linear_1/weight", 2, { 384, 384 } },
    { "encoder/layer_3/self_attention/linear_1/bias", 1, { 384 } },
    { "encoder/layer_1/ffn/layer_norm/gamma", 1, { 384 } },
    { "encoder/layer_1/ffn/linear_0/weight", 2, { 1536, 384 } },
    { "encoder/layer_1/ffn/linear_0/bias", 1, { 1536 } },
    { "encoder/layer_2/ffn/linear_1/weight", 2, { 384, 1536 } },
    { "encoder/layer_2/ffn/linear_1/bias", 1, { 384 } },
    { "encoder/layer_norm/gamma", 1, { 384 } },
    { "encoder/layer_norm/beta", 1, { 384 } },
    { "decoder/embeddings/weight", 2, { 51864, 384 } },
    { "decoder/position_encodings/encodings", 2, { 448, 384 } },
    { "decoder/layer_0/self_attention/linear_0/weight", 2, { 1152, 384 } },
    { "decoder/layer_0/self_attention/linear_1/weight", 2, { 384, 384 } },
    { "decoder/layer_3/attention/layer_norm/gamma", 1, { 384 } },
    { "decoder/layer_3/attention/linear_0/weight", 2, { 384, 384 } },
    { "decoder/layer_3/attention/linear_0/bias", 1, { 384 } },
    { "decoder/layer_3/attention/linear_1/weight", 2, { 768, 384 } },
    { "decoder/layer_3/attention/linear_1/bias", 1, { 768 } },
    { "decoder/layer_3/attention/linear_2/weight", 2, { 384, 384 } },
    { "decoder/layer_2/ffn/linear_0/weight", 2, { 1536, 384 } },
    { "decoder/layer_2/ffn/linear_1/weight", 2, { 384, 1536 } },
    { "decoder/layer_norm/gamma", 1, { 384 } },
    { "decoder/layer_norm/beta", 1, { 384 } },
};

/* ../shared/WHISPER.md section 2, scalars */
static const struct { const char *name; ct2_dtype t; int64_t v; } WHISPER_SCALARS[] = {
    { "decoder/activation", CT2_I8, 3 }, { "decoder/alibi", CT2_I8, 0 },
    { "decoder/alignment_heads", CT2_I16, 1 }, { "decoder/alignment_layer", CT2_I16, -1 },
    { "decoder/num_heads", CT2_I16, 6 }, { "decoder/pre_norm", CT2_I8, 1 },
    { "decoder/scale_embeddings", CT2_I8, 0 }, { "decoder/start_from_zero_embedding", CT2_I8, 0 },
    { "encoder/num_heads", CT2_I16, 6 },
};

static int dtype_by_name(const char *s)
{
    for (int t = 0; t <= 5; t++)
        if (strcmp(ct2_dtype_name((ct2_dtype)t), s) == 0) return t;
    return -1;
}

/* Checks f against every line of the golden file; returns the number of var lines. */
static int check_golden(const ct2_file *f)
{
    size_t len;
    char *text = test_read_file(test_data_path("whisper/ct2_golden.txt"), &len);
    if (!text) fail_msg("cannot read %s", test_data_path("whisper/ct2_golden.txt"));
    int n_var_lines = 0, n_scalars = 0, n_values = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char kind[16], a[256], b[256], dims[64];
        unsigned long long u1, u2;
        unsigned crc;
        long long ll;
        if (line[0] == '#') continue;
        if (sscanf(line, "%15s", kind) != 1) continue;
        if (!strcmp(kind, "file_size") && sscanf(line, "%*s %llu", &u1) == 1) assert_int_equal(f->size, u1);
        else if (!strcmp(kind, "version") && sscanf(line, "%*s %llu", &u1) == 1) assert_int_equal(f->version, u1);
        else if (!strcmp(kind, "spec") && sscanf(line, "%*s %255s", a) == 1) assert_string_equal(f->spec_name, a);
        else if (!strcmp(kind, "revision") && sscanf(line, "%*s %llu", &u1) == 1) assert_int_equal(f->spec_revision, u1);
        else if (!strcmp(kind, "n_vars") && sscanf(line, "%*s %llu", &u1) == 1) assert_int_equal(f->n_vars, u1);
        else if (!strcmp(kind, "n_aliases") && sscanf(line, "%*s %llu", &u1) == 1) assert_int_equal(f->n_aliases, u1);
        else if (!strcmp(kind, "alias") && sscanf(line, "%*s %255s %255s", a, b) == 2) {
            assert_ptr_equal(ct2_find(f, a), ct2_find(f, b));
            assert_non_null(ct2_find(f, b));
            assert_string_equal(ct2_find(f, a)->name, b);
        } else if (!strcmp(kind, "var") && sscanf(line, "%*s %255s %255s %63s %llu %llu %x", a, b, dims, &u1, &u2, &crc) == 6) {
            const ct2_var *v = ct2_find(f, a);
            if (!v) fail_msg("variable %s not found", a);
            assert_ptr_equal(v, &f->vars[n_var_lines]);     /* same file order */
            assert_int_equal(v->dtype, dtype_by_name(b));
            int64_t want[CT2_MAX_RANK];
            uint32_t rank = 0;
            for (char *p = dims, *end; *p && *p != '-'; p = *end ? end + 1 : end)
            {
                assert_true(rank < CT2_MAX_RANK);
                want[rank++] = strtoll(p, &end, 10);
            }
            check_shape(v, rank, want);
            assert_int_equal(v->offset, u1);
            assert_int_equal(v->nbytes, u2);
            assert_ptr_equal(v->data, f->base + u1);
            if (crc32_bytes(v->data, v->nbytes) != crc) fail_msg("%s: crc32 %08x, golden %08x", a, crc32_bytes(v->data, v->nbytes), crc);
            n_var_lines++;
        } else if (!strcmp(kind, "scalar") && sscanf(line, "%*s %255s %255s %lld", a, b, &ll) == 3) {
            int64_t iv;
            assert_true(ct2_get_int(f, a, &iv));
            assert_int_equal(iv, ll);
            assert_int_equal(ct2_find(f, a)->dtype, dtype_by_name(b));
            n_scalars++;
        } else if (!strcmp(kind, "values")) {
            double x[4];
            assert_int_equal(sscanf(line, "%*s %255s %lf %lf %lf %lf", a, &x[0], &x[1], &x[2], &x[3]), 5);
            const ct2_var *v = ct2_find(f, a);
            assert_non_null(v);
            for (int i = 0; i < 4; i++) assert_true((double)ct2_var_float(v, i) == x[i]);
            n_values++;
        } else {
            fail_msg("unparsed golden line: %s", line);
        }
    }
    free(text);
    assert_int_equal(n_scalars, 9);
    assert_true(n_values >= 4);
    return n_var_lines;
}

static void test_real_whisper(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof path, "%s/model.bin", whisper_dir());
    if (access(path, R_OK) != 0) skip();
    ct2_file *f = NULL;
    char err[512] = "";
    if (ct2_open(path, &f, err, sizeof err) != KVLM_OK) fail_msg("%s", err);
    assert_int_equal(f->version, 6);
    assert_string_equal(f->spec_name, "WhisperSpec");
    assert_int_equal(f->spec_revision, 3);
    assert_int_equal(f->n_vars, 148);
    assert_int_equal(f->size, 75537502);
    assert_int_equal(f->n_aliases, 1);
    assert_string_equal(f->aliases[0].alias, "decoder/projection/weight");
    assert_string_equal(f->aliases[0].target, "decoder/embeddings/weight");
    const ct2_var *emb = ct2_find(f, "decoder/embeddings/weight");
    assert_non_null(emb);
    assert_ptr_equal(ct2_find(f, "decoder/projection/weight"), emb);
    assert_null(ct2_find(f, "decoder/projection/weight_scale"));   /* float16: no scale */
    assert_null(ct2_find(f, "decoder/projection/bias"));
    assert_int_equal(emb->offset, 187);                            /* odd: unaligned */
    for (size_t i = 0; i < sizeof WHISPER_SHAPES / sizeof WHISPER_SHAPES[0]; i++) {
        const ct2_var *v = ct2_find(f, WHISPER_SHAPES[i].name);
        if (!v) fail_msg("missing %s", WHISPER_SHAPES[i].name);
        check_shape(v, WHISPER_SHAPES[i].rank, WHISPER_SHAPES[i].dims);
        assert_int_equal(v->dtype, CT2_F16);
    }
    for (size_t i = 0; i < sizeof WHISPER_SCALARS / sizeof WHISPER_SCALARS[0]; i++) {
        int64_t v;
        assert_true(ct2_get_int(f, WHISPER_SCALARS[i].name, &v));
        assert_int_equal(v, WHISPER_SCALARS[i].v);
        assert_int_equal(ct2_find(f, WHISPER_SCALARS[i].name)->dtype, WHISPER_SCALARS[i].t);
    }
    /* every variable but the 9 scalars is float16; payloads add up (WHISPER.md section 1) */
    uint64_t f16_bytes = 0;
    int n_f16 = 0;
    for (int64_t i = 0; i < f->n_vars; i++)
        if (f->vars[i].dtype == CT2_F16) { n_f16++; f16_bytes += f->vars[i].nbytes; }
    assert_int_equal(n_f16, 148 - 9);
    assert_int_equal(f16_bytes, 75529728);
    /* the K third of the fused QKV bias is zero (the converter zero-fills it) */
    const ct2_var *qkv = ct2_find(f, "encoder/layer_0/self_attention/linear_0/bias");
    for (int64_t i = 384; i < 768; i++) assert_true(ct2_var_float(qkv, i) == 0.0f);
    assert_int_equal(check_golden(f), 148);
    ct2_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_v1),
        cmocka_unit_test(test_valid_v2),
        cmocka_unit_test(test_valid_v3),
        cmocka_unit_test(test_valid_v4),
        cmocka_unit_test(test_valid_v5),
        cmocka_unit_test(test_valid_v6),
        cmocka_unit_test(test_dtype_tables),
        cmocka_unit_test(test_open_file),
        cmocka_unit_test(test_truncation_guard_page),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_num_variables),
        cmocka_unit_test(test_rank_and_dims),
        cmocka_unit_test(test_byte_counts),
        cmocka_unit_test(test_dtype_ids),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_trailing_bytes),
        cmocka_unit_test(test_seed_corpus),
        cmocka_unit_test(test_real_whisper),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
