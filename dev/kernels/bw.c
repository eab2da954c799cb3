/* bw.c - read bandwidth of this machine: 1 and 2 threads, buffers from L2 size to 400 MB.
 * cc -O2 -mavx512f -pthread bw.c -o build/bw */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
typedef struct { const char *b; size_t n; int reps; double gbs; long long sink; } job;

static void *run(void *arg)
{
    job *j = arg;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    double t0 = now();
    for (int r = 0; r < j->reps; r++)
        for (size_t i = 0; i < j->n; i += 256) {
            a0 = _mm512_add_epi64(a0, _mm512_load_si512(j->b + i));
            a1 = _mm512_add_epi64(a1, _mm512_load_si512(j->b + i + 64));
            a2 = _mm512_add_epi64(a2, _mm512_load_si512(j->b + i + 128));
            a3 = _mm512_add_epi64(a3, _mm512_load_si512(j->b + i + 192));
        }
    double t = now() - t0;
    j->gbs = (double)j->n * j->reps / t / 1e9;
    j->sink = _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
    return NULL;
}

int main(void)
{
    size_t sizes[] = { 1 << 20, 16 << 20, 100 << 20, 400 << 20 };
    for (int s = 0; s < 4; s++) {
        size_t n = sizes[s];
        char *b[2];
        for (int k = 0; k < 2; k++) { b[k] = aligned_alloc(64, n); memset(b[k], k + 1, n); }
        int reps = (int)((2000 << 20) / n); if (reps < 2) reps = 2;
        job j1 = { b[0], n, reps, 0, 0 };
        run(&j1);
        job j2[2] = { { b[0], n, reps, 0, 0 }, { b[1], n, reps, 0, 0 } };
        pthread_t th;
        pthread_create(&th, NULL, run, &j2[1]);
        run(&j2[0]);
        pthread_join(th, NULL);
        printf("%4zu MB: 1 thread %.1f GB/s; 2 threads %.1f + %.1f GB/s (sink %lld)\n", n >> 20, j1.gbs,
               j2[0].gbs, j2[1].gbs, j1.sink + j2[0].sink + j2[1].sink);
        free(b[0]); free(b[1]);
    }
    return 0;
}
