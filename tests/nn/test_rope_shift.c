/* test_rope_shift.c - nn/rope_shift: moving a K row by a position delta.
 *  - composition: RoPE at p, then rope_shift_k by delta, equals RoPE at p + delta
 *    (ops_rope_table's float angles both ways) within float rounding, per pair:
 *    |diff| <= (|p| + |delta| + 16) 2^-22 |pair| (the float angles are exact to about
 *    position * 2^-24 radians, sin/cos to 2^-24), for p and delta up to 10^5;
 *  - in the Hadamard basis (q8/q4 K): H R(p) k moved by delta equals H R(p + delta) k,
 *    within the same bound plus 2^-20 |head| for the two extra transforms;
 *  - with delta 0 a row comes back within rounding (the basis change is undone);
 *  - rope_shift_check refuses the architectures with sliding-window layers.
 * Room: tests/nn. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "model/model.h"
#include "nn/ops.h"
#include "nn/rope_shift.h"

enum { HKV = 3, HD = 64, NCH = HKV * HD };

static uint32_t rng = 777;
static float frand(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 8192.0f - 4.0f;   /* [-4, 4) */
}

static void fake_model(struct kvlm_model *m)
{
    memset(m, 0, sizeof *m);
    m->hp.n_head_kv = HKV;
    m->hp.head_dim = HD;
    m->hp.rope_theta = 100000.0f;                   /* SmolLM2's */
    snprintf(m->arch, sizeof m->arch, "llama");
}

/* moved (by rope_shift) vs direct, both [NCH]; basis: compare pairs (false) or heads */
static void compare(const float *moved, const float *direct, double pos_sum, bool per_head, const char *what)
{
    const double rel = (pos_sum + 16.0) * ldexp(1.0, -22);
    for (int64_t h = 0; h < HKV; h++) {
        double hn = 0;
        for (int64_t i = 0; i < HD; i++) hn += (double)direct[h * HD + i] * direct[h * HD + i];
        hn = sqrt(hn);
        for (int64_t i = 0; i < HD; i += 2) {
            const float *a = moved + h * HD + i, *b = direct + h * HD + i;
            const double pair = sqrt((double)b[0] * b[0] + (double)b[1] * b[1]);
            const double lim = per_head ? rel * hn + ldexp(1.0, -20) * hn : rel * pair + 1e-7;
            for (int k = 0; k < 2; k++)
                if (!(fabs((double)a[k] - b[k]) <= lim))
                    fail_msg("%s: head %lld channel %lld: %.9g vs %.9g (bound %.3g)", what, (long long)h,
                             (long long)(i + k), (double)a[k], (double)b[k], lim);
        }
    }
}

static void test_composes(void **state)
{
    (void)state;
    struct kvlm_model m;
    fake_model(&m);
    static const int64_t pos[] = { 0, 1, 17, 300, 4096, 100000 };
    static const int64_t del[] = { -1, -16, -256, -4000, 7, 2048 };
    for (int hadamard = 0; hadamard < 2; hadamard++) {
        rope_shift rs;
        rope_shift_init(&rs, &m, hadamard ? KVLM_KV_Q8 : KVLM_KV_F16);
        assert_int_equal(rs.hadamard, hadamard);
        for (size_t a = 0; a < sizeof pos / sizeof pos[0]; a++)
            for (size_t b = 0; b < sizeof del / sizeof del[0]; b++) {
                const int64_t p = pos[a], d = del[b];
                if (p + d < 0) continue;
                float k[NCH], x[NCH], y[NCH], cs[HD];
                for (int i = 0; i < NCH; i++) k[i] = frand();
                memcpy(x, k, sizeof x);
                memcpy(y, k, sizeof y);
                ops_rope_table(cs, p, HD, m.hp.rope_theta);
                ops_rope(x, cs, HKV, HD);
                ops_rope_table(cs, p + d, HD, m.hp.rope_theta);
                ops_rope(y, cs, HKV, HD);
                if (hadamard) {
                    ops_hadamard(x, HKV, HD);
                    ops_hadamard(y, HKV, HD);
                }
                rope_shift_k(&rs, 0, x, d);
                char what[64];
                snprintf(what, sizeof what, "%s p %lld delta %lld", hadamard ? "hadamard" : "plain", (long long)p,
                         (long long)d);
                compare(x, y, (double)(p + (d < 0 ? -d : d)), hadamard, what);
            }
        float k[NCH], x[NCH];                         /* delta 0: the row itself */
        for (int i = 0; i < NCH; i++) k[i] = x[i] = frand();
        rope_shift_k(&rs, 0, x, 0);
        compare(x, k, 0.0, hadamard, "delta 0");
    }
}

static void test_check(void **state)
{
    (void)state;
    struct kvlm_model m;
    fake_model(&m);
    char err[256] = "";
    assert_int_equal(rope_shift_check(&m, err, sizeof err), KVLM_OK);
    m.hp.n_swa = 512;                               /* sliding-window layers: refused */
    m.hp.n_layer_swa = 15;
    assert_int_equal(rope_shift_check(&m, err, sizeof err), KVLM_ERR_UNSUPPORTED);
    assert_non_null(strstr(err, "sliding-window"));
    m.hp.n_swa = m.hp.n_layer_swa = 0;              /* another RoPE layout: refused too */
    m.arch_id = MODEL_ARCH_GEMMA3;
    snprintf(m.arch, sizeof m.arch, "gemma3");
    assert_int_equal(rope_shift_check(&m, err, sizeof err), KVLM_ERR_UNSUPPORTED);
    assert_non_null(strstr(err, "gemma3"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_composes),
        cmocka_unit_test(test_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
