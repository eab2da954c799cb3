/* cli_bench_plot.h - the numbers and the picture behind `kvlm bench
 * --no-kv-cache-curve`: per-token latency against position, with and without
 * the KV cache. Room: cli; plain C and stdio, no model knowledge. */
#ifndef KVLM_CLI_BENCH_PLOT_H
#define KVLM_CLI_BENCH_PLOT_H

#include <stdint.h>
#include <stdio.h>

/* ms_cached, ms_nocache: [n] milliseconds of the decode step that fed the token
 * at position i (the sequence held i tokens before it). */
typedef struct cli_bench_curve {
    int64_t n;
    const double *ms_cached;
    const double *ms_nocache;
    const char *subtitle;   /* one line under the title (model, threads); escaped here */
} cli_bench_curve;

/* "position,ms_cached,ms_nocache" and one row per position. Returns 0, or -1
 * with errno set. */
int cli_bench_plot_csv(FILE *f, const cli_bench_curve *c);

/* A self-contained SVG (no scripts, no external fonts): axes with ticks and
 * grid, one polyline per path, a legend. Returns 0, or -1 with errno set. */
int cli_bench_plot_svg(FILE *f, const cli_bench_curve *c);

#endif
