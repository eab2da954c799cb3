/* pool.c - see pool.h.
 *
 * State machine: the caller publishes (fn, arg), bumps `gen` and runs its own
 * share; each worker waits until `gen` moves past the value it last served,
 * runs its share and decrements `pending`; the caller spins until pending == 0.
 * Workers spin SPIN_ITERS pauses, then yield the CPU YIELD_ITERS times, then sleep
 * on a condition variable; `n_sleeping` tells the caller whether a broadcast is
 * needed. Yielding matters when threads outnumber free cores (-t 3 on 2 cores, or
 * a busy machine): a waiting thread that only spins holds the core that the
 * thread it waits for needs, and every barrier then costs a scheduler tick. */
#include "core/pool.h"
#include "core/err.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

enum { SPIN_ITERS = 4000, YIELD_ITERS = 20000, CALLER_SPIN_ITERS = 4000 };

struct pool {
    int n_threads;
    pthread_t *threads;
    pool_fn fn;
    void *arg;
    atomic_uint_fast64_t gen;
    atomic_int pending;
    atomic_int n_sleeping;
    atomic_bool stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

typedef struct worker_arg {
    pool *p;
    int ith;
} worker_arg;

static void *worker_main(void *vp)
{
    worker_arg wa = *(worker_arg *)vp;
    free(vp);
    pool *p = wa.p;
    uint64_t seen = 0;
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
            if (atomic_load_explicit(&p->stop, memory_order_acquire)) return NULL;
            if (++spins < SPIN_ITERS) { CPU_RELAX(); continue; }
            if (spins < SPIN_ITERS + YIELD_ITERS) { sched_yield(); continue; }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->n_sleeping, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->n_sleeping, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) return NULL;
        seen = g;
        p->fn(p->arg, wa.ith, p->n_threads);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
    }
}

kvlm_err pool_init(pool **out, int n_threads, char *err, size_t errlen)
{
    *out = NULL;
    if (n_threads < 1 || n_threads > 512)
        return err_set(err, errlen, KVLM_ERR_INVALID, "thread count %d out of range [1, 512]", n_threads);
    pool *p = calloc(1, sizeof *p);
    if (!p) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory for the thread pool");
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        p->n_threads = 1;
        pool_free(p);
        return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory for the thread pool");
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) {
            wa->p = p;
            wa->ith = i;
        }
        if (!wa || pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            p->n_threads = i;   /* join only the ones that started */
            pool_free(p);
            return err_set(err, errlen, KVLM_ERR_NOMEM, "could not start thread %d of %d", i, n_threads);
        }
    }
    *out = p;
    return KVLM_OK;
}

void pool_free(pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

int pool_size(const pool *p) { return p ? p->n_threads : 1; }

void pool_run(pool *p, pool_fn fn, void *arg)
{
    if (!p || p->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->pending, p->n_threads - 1, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1);   /* seq_cst: pairs with n_sleeping (Dekker) */
    if (atomic_load(&p->n_sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0, p->n_threads);
    /* Spin briefly, then yield: on a loaded machine a worker may be descheduled,
     * and spinning through our time slice would only delay it further. */
    for (int spins = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; spins++) {
        if (spins < CALLER_SPIN_ITERS) CPU_RELAX();
        else sched_yield();
    }
}

void pool_split(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi)
{
    int64_t per = n / nth, rem = n % nth;
    *lo = ith * per + (ith < rem ? ith : rem);
    *hi = *lo + per + (ith < rem ? 1 : 0);
}
