/* test_kv_cache.c - rows land where the accessors say, f16 storage rounds as
 * f32_to_fp16 does, truncation only moves n_pos, accounting is right. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include "kern/quant.h"
#include "kv/kv_cache.h"

static void fill(float *x, int64_t n, float base)
{
    for (int64_t i = 0; i < n; i++) x[i] = base + 0.001f * (float)i;
}

static void test_store_and_read_back(void **state)
{
    (void)state;
    const kvlm_kv_type types[] = { KVLM_KV_F32, KVLM_KV_F16 };
    for (size_t ti = 0; ti < 2; ti++) {
        kv_cache c;
        assert_int_equal(kv_cache_init(&c, 3, 2, 8, 5, types[ti], NULL, 0), KVLM_OK);
        const int64_t w = 2 * 8;
        float k[16], v[16];
        for (int64_t il = 0; il < 3; il++)
            for (int64_t pos = 0; pos < 5; pos++) {
                fill(k, w, (float)(il * 10 + pos));
                fill(v, w, -(float)(il * 10 + pos));
                kv_cache_store(&c, il, pos, k, v);
            }
        for (int64_t il = 0; il < 3; il++)
            for (int64_t pos = 0; pos < 5; pos++) {
                fill(k, w, (float)(il * 10 + pos));
                fill(v, w, -(float)(il * 10 + pos));
                for (int64_t i = 0; i < w; i++) {
                    float kr, vr;
                    if (types[ti] == KVLM_KV_F32) {
                        kr = ((const float *)kv_cache_k_row(&c, il, pos))[i];
                        vr = ((const float *)kv_cache_v_row(&c, il, pos))[i];
                        assert_true(kr == k[i] && vr == v[i]);
                    } else {
                        kr = fp16_to_f32(((const uint16_t *)kv_cache_k_row(&c, il, pos))[i]);
                        vr = fp16_to_f32(((const uint16_t *)kv_cache_v_row(&c, il, pos))[i]);
                        assert_true(kr == fp16_to_f32(f32_to_fp16(k[i])));
                        assert_true(vr == fp16_to_f32(f32_to_fp16(v[i])));
                    }
                }
            }
        assert_int_equal(kv_cache_bytes_per_token(&c), 3 * 2 * w * (int64_t)kv_cache_type_bytes(types[ti]));
        assert_int_equal(kv_cache_bytes_reserved(&c), 5 * kv_cache_bytes_per_token(&c));
        kv_cache_free(&c);
    }
}

static void test_truncate(void **state)
{
    (void)state;
    kv_cache c;
    assert_int_equal(kv_cache_init(&c, 1, 1, 4, 10, KVLM_KV_F16, NULL, 0), KVLM_OK);
    c.n_pos = 7;
    kv_cache_truncate(&c, 9);
    assert_int_equal(c.n_pos, 7);
    kv_cache_truncate(&c, 3);
    assert_int_equal(c.n_pos, 3);
    kv_cache_truncate(&c, -1);
    assert_int_equal(c.n_pos, 0);
    kv_cache_free(&c);
    kv_cache_free(&c);   /* a zeroed cache may be freed again */
}

static void test_bad_dimensions(void **state)
{
    (void)state;
    kv_cache c;
    char err[128];
    assert_int_equal(kv_cache_init(&c, 0, 1, 4, 10, KVLM_KV_F16, err, sizeof err), KVLM_ERR_INVALID);
    assert_int_equal(kv_cache_init(&c, 1, 1, 4, 10, (kvlm_kv_type)99, err, sizeof err), KVLM_ERR_INVALID);
    assert_int_equal(kv_cache_init(&c, INT64_MAX / 2, 1 << 20, 1 << 20, 1 << 20, KVLM_KV_F32, err, sizeof err),
                     KVLM_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_and_read_back),
        cmocka_unit_test(test_truncate),
        cmocka_unit_test(test_bad_dimensions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
