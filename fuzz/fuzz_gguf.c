/* fuzz_gguf.c - libFuzzer target for the GGUF reader (src/model/gguf.c).
 * Parses the input in place with gguf_open_memory; on success reads every byte of
 * every view it hands out (keys, strings, string arrays, numeric array elements,
 * tensor data) so ASan checks them, and runs each supported tensor's first row through
 * the reference and fast kernels (dequantize, quantize to vec_dot_type, vec_dot), so
 * hostile block contents (NaN/inf scales, extreme codes) are fuzzed too.
 * Then builds a tokenizer from the (hostile) metadata and tokenizes a fixed text.
 * Seeds: the GGUF fixtures scripts/gen-fixtures.sh writes into the cache
 * (tests/ref/gen_gguf_fixtures.py), copied in by scripts/fuzz.sh. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kern/quant.h"
#include "model/gguf.h"
#include "tok/tokenizer.h"

enum { FUZZ_MAX_ROW = 4096 };   /* elements of a row run through the kernels */

static void touch_kv(const gguf_kv *kv, volatile uint8_t *sink)
{
    for (uint64_t k = 0; k < kv->key.len; k++) *sink ^= (uint8_t)kv->key.ptr[k];
    if (kv->type == GGUF_VT_STR)
        for (uint64_t k = 0; k < kv->v.s.len; k++) *sink ^= (uint8_t)kv->v.s.ptr[k];
    if (kv->type != GGUF_VT_ARR) return;
    for (uint64_t j = 0; j < kv->v.arr.n; j++) {
        int64_t iv;
        double dv;
        if (kv->v.arr.type == GGUF_VT_STR) {
            const gguf_str s = kv->v.arr.strs[j];
            for (uint64_t k = 0; k < s.len; k++) *sink ^= (uint8_t)s.ptr[k];
        } else if (gguf_arr_get_int(kv, j, &iv)) {
            *sink ^= (uint8_t)iv;
        } else if (gguf_arr_get_float(kv, j, &dv)) {
            *sink ^= (uint8_t)(dv > 0);
        }
    }
}

static void run_kernels(const gguf_tensor *t, volatile uint8_t *sink)
{
    static float row[FUZZ_MAX_ROW];
    static uint64_t xq[FUZZ_MAX_ROW * 2];   /* >= quant_row_size of any vec_dot_type */
    const quant_traits *qt = quant_get(t->type);
    if (!qt || !qt->supported || t->ne[0] > FUZZ_MAX_ROW) return;
    const int64_t n = t->ne[0];
    qt->to_float(t->data, row, n);
    const quant_traits *vt = quant_get(qt->vec_dot_type);
    vt->from_float(row, xq, n);
    float a = qt->vec_dot(t->data, xq, n);
    const quant_traits *fast = quant_get_fast(t->type);
    quant_get_fast(qt->vec_dot_type)->from_float(row, xq, n);
    float b = fast->vec_dot(t->data, xq, n);
    *sink ^= (uint8_t)(a == b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file *f = NULL;
    char err[512];
    volatile uint8_t sink = 0;
    if (gguf_open_memory(data, size, "fuzz.gguf", &f, err, sizeof err) != KVLM_OK) {
        sink ^= (uint8_t)strlen(err);
        return 0;
    }
    for (uint64_t i = 0; i < f->n_kv; i++) {
        touch_kv(&f->kv[i], &sink);
        char key[128];
        if (f->kv[i].key.len < sizeof key) {   /* lookups find what iteration sees */
            memcpy(key, f->kv[i].key.ptr, f->kv[i].key.len);
            key[f->kv[i].key.len] = '\0';
            if (strlen(key) == f->kv[i].key.len && gguf_find_kv(f, key) != &f->kv[i]) __builtin_trap();
            int64_t iv; double dv; bool bv; gguf_str sv; const gguf_kv *av;
            sink ^= (uint8_t)(gguf_get_int(f, key, &iv, err, sizeof err) + gguf_get_float(f, key, &dv, err, sizeof err) +
                              gguf_get_bool(f, key, &bv, err, sizeof err) + gguf_get_str(f, key, &sv, err, sizeof err) +
                              gguf_get_arr(f, key, &av, err, sizeof err));
        }
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        for (uint64_t k = 0; k < t->name.len; k++) sink ^= (uint8_t)t->name.ptr[k];
        for (uint64_t k = 0; k < t->nbytes; k++) sink ^= ((const uint8_t *)t->data)[k];
        run_kernels(t, &sink);
    }
    /* hostile tokenizer metadata: init must fail cleanly or give a usable tokenizer */
    tokenizer *tok = NULL;
    if (tokenizer_init_gguf(f, &tok, err, sizeof err) == KVLM_OK) {
        static const char text[] = "Hello <|im_start|> w\xc3\xb6rld 123 \xff";
        kvlm_token ids[256];
        size_t n;
        if (tokenizer_encode(tok, text, sizeof text - 1, true, true, ids, 256, &n, err, sizeof err) == KVLM_OK)
            for (size_t i = 0; i < n; i++) {
                char piece[64];
                if (ids[i] < 0 || ids[i] >= tokenizer_n_vocab(tok)) __builtin_trap();
                sink ^= (uint8_t)tokenizer_token_bytes(tok, ids[i], true, piece, sizeof piece);
            }
        tokenizer_free(tok);
    }
    gguf_close(f);
    return 0;
}
