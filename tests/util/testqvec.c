/* testqvec.c - see testqvec.h. */
#include "testqvec.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

test_qmatrix *test_qmatrices(int *n)
{
    *n = 0;
    size_t len;
    char *manifest = test_read_file(test_fixture_path("quant/MANIFEST"), &len);
    if (!manifest) {
        printf("# %s missing: run make fixtures (scripts/gen-fixtures.sh)\n", test_fixture_path("quant/MANIFEST"));
        return NULL;
    }
    test_qmatrix *m = NULL;
    char *save = NULL;
    for (char *line = strtok_r(manifest, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        test_qmatrix *grown = realloc(m, sizeof *m * (size_t)(*n + 1));
        if (!grown) goto fail;
        m = grown;
        test_qmatrix *e = &m[*n];
        memset(e, 0, sizeof *e);
        unsigned type;
        long long rows, n_in;
        if (sscanf(line, "%63s %u %lld %lld", e->name, &type, &rows, &n_in) != 4) goto fail;
        e->type = type;
        e->rows = rows;
        e->n_in = n_in;
        (*n)++;
        char rel[96];
        snprintf(rel, sizeof rel, "quant/%s.q", e->name);
        e->q = (uint8_t *)test_read_file(test_fixture_path(rel), &e->q_len);
        snprintf(rel, sizeof rel, "quant/%s.f32", e->name);
        e->deq = (float *)test_read_file(test_fixture_path(rel), &e->deq_len);
        if (!e->q || !e->deq) goto fail;
    }
    free(manifest);
    return m;
fail:
    printf("# quant/MANIFEST: a malformed line or a missing file\n");
    free(manifest);
    test_qmatrices_free(m, *n);
    *n = 0;
    return NULL;
}

void test_qmatrices_free(test_qmatrix *m, int n)
{
    if (!m) return;
    for (int i = 0; i < n; i++) {
        free(m[i].q);
        free(m[i].deq);
    }
    free(m);
}
