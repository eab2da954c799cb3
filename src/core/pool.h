/* pool.h - a persistent thread pool: n threads (the caller is thread 0) run one
 * function together, each told its index ith of nth, and pool_run returns when
 * all are done.
 * Room: core. May touch: libc, pthreads.
 * Workers spin briefly on a generation counter before sleeping, because a
 * decode step issues a few hundred short jobs and a condition-variable wake-up
 * per job would cost more than the job. */
#ifndef KVLM_CORE_POOL_H
#define KVLM_CORE_POOL_H

#include <stddef.h>
#include "kvlm.h"

typedef struct pool pool;
typedef void (*pool_fn)(void *arg, int ith, int nth);

/* n_threads >= 1 (1 = no worker threads: pool_run calls fn(arg, 0, 1)). */
kvlm_err pool_init(pool **out, int n_threads, char *err, size_t errlen);
void     pool_free(pool *p);                 /* NULL is fine; joins the workers */
int      pool_size(const pool *p);
/* Runs fn(arg, ith, nth) on every thread; returns when every call has returned.
 * Not reentrant: one pool_run at a time per pool. */
void     pool_run(pool *p, pool_fn fn, void *arg);

/* Splits [0, n) into nth nearly equal contiguous parts; part ith is [*lo, *hi). */
void pool_split(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi);

#endif
