/* fuzz_ct2.c - libFuzzer target for the CTranslate2 model.bin reader (src/model/ct2.c).
 * Parses the input in place with ct2_open_memory; on success reads every byte of every
 * name and every variable's data (ASan checks them), widens every element through
 * ct2_var_float, and checks that ct2_find on each variable's name gives that variable,
 * that every alias (and alias + "_scale") resolves to a variable of the file, and the
 * scalar getters on every name.
 * Seeds: fuzz/corpus/ct2/ (tests/ref/gen_ct2_corpus.py: small valid files of versions
 * 1, 2, 3, 4 and 6 with every dtype and alias chains). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "model/ct2.h"

enum { FUZZ_MAX_WIDEN = 1 << 16 };   /* elements of a variable run through ct2_var_float */

static bool in_file(const ct2_file *f, const ct2_var *v)
{
    return v >= f->vars && v < f->vars + f->n_vars;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ct2_file *f = NULL;
    char err[512];
    volatile uint8_t sink = 0;
    if (ct2_open_memory(data, size, "fuzz.bin", &f, err, sizeof err) != KVLM_OK) {
        if (f || strncmp(err, "fuzz.bin: offset ", 17) != 0) __builtin_trap();
        return 0;
    }
    sink ^= (uint8_t)strlen(f->spec_name);
    for (int64_t i = 0; i < f->n_vars; i++) {
        const ct2_var *v = &f->vars[i];
        size_t n = strlen(v->name);
        if (n == 0 || ct2_find(f, v->name) != v) __builtin_trap();
        if (v->rank > CT2_MAX_RANK || v->nbytes != (uint64_t)v->n_elem * ct2_dtype_size(v->dtype)) __builtin_trap();
        for (uint64_t k = 0; k < v->nbytes; k++) sink ^= ((const uint8_t *)v->data)[k];
        for (int64_t k = 0; k < v->n_elem && k < FUZZ_MAX_WIDEN; k++) sink ^= (uint8_t)(ct2_var_float(v, k) > 0);
        int64_t iv;
        double dv;
        sink ^= (uint8_t)(ct2_get_int(f, v->name, &iv) + ct2_get_float(f, v->name, &dv));
        char scale[256];
        if (n + 7 <= sizeof scale) {   /* name + "_scale": NULL or a variable of the file */
            snprintf(scale, sizeof scale, "%s_scale", v->name);
            const ct2_var *s = ct2_find(f, scale);
            if (s && !in_file(f, s)) __builtin_trap();
        }
    }
    for (int64_t i = 0; i < f->n_aliases; i++) {
        const ct2_alias *a = &f->aliases[i];
        const ct2_var *v = ct2_find(f, a->alias);
        if (!v || !in_file(f, v) || ct2_find(f, a->target) != v) __builtin_trap();
        char scale[256];
        if (strlen(a->alias) + 7 <= sizeof scale) {
            snprintf(scale, sizeof scale, "%s_scale", a->alias);
            const ct2_var *s = ct2_find(f, scale);
            if (s && !in_file(f, s)) __builtin_trap();
        }
    }
    ct2_close(f);
    (void)sink;
    return 0;
}
