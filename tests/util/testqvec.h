/* testqvec.h - the quantized weight matrices of the fixtures cache's quant/ (written by
 * tests/ref/gen_quant_golden.py --vectors through scripts/gen-fixtures.sh), for tests/kern. */
#ifndef KVLM_TESTQVEC_H
#define KVLM_TESTQVEC_H

#include <stddef.h>
#include <stdint.h>

typedef struct test_qmatrix {
    char name[64];
    uint32_t type;          /* ggml type id */
    int64_t rows, n_in;
    uint8_t *q;             /* [rows][row bytes] blocks, q_len bytes */
    size_t q_len;
    float *deq;             /* gguf.quants.dequantize of q: [rows][n_in], deq_len bytes */
    size_t deq_len;
} test_qmatrix;

/* Every matrix of quant/MANIFEST (a malloc'd array, *n of them), or NULL (a message
 * printed) when the manifest or one of its files is missing or malformed: run
 * `make fixtures`. Sizes are not checked here: the tests compare them with quant_row_size. */
test_qmatrix *test_qmatrices(int *n);
void test_qmatrices_free(test_qmatrix *m, int n);   /* NULL is fine */

#endif
