/* peak.c - this machine's peaks (roof.h): int8 dot products, FMA, clock and read
 * bandwidth on 1 thread and on every CPU at once; written to build/peak.txt beside the
 * binary, which bench_matmul, bench_attn, bench_gemm and bw read to print fractions.
 *   build/peak [SECONDS]   measure each figure for SECONDS (default 1), print, save
 *   build/peak --show      print the saved figures
 *   build/peak --check     a quick run (0.02 s per figure) saved to build/peak-check.txt
 *                          and read back: exit 1 unless every figure this CPU can run is
 *                          positive, the others 0, and the file round-trips
 * On a shared machine the figures are the best rounds under that load: lower bounds of
 * the quiet machine's. */
#include "roof.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int check(void)
{
    roof_peaks p, q;
    char path[4200];
    if (roof_measure(&p, 0.02, ROOF_OPS | ROOF_BW) != 0 || !roof_path(path, sizeof path, "peak-check.txt")) return 1;
    roof_print(stdout, &p);
    int bad = 0;
    if (p.op[ROOF_CLOCK][0] <= 0 || p.op[ROOF_CLOCK][1] <= 0) bad = printf("check: no clock figure\n");
    if (p.op[ROOF_FMA256][0] <= 0 && p.op[ROOF_FMA512][0] <= 0) bad = printf("check: no FMA figure\n");
    for (int k = 0; k < ROOF_N_KIND; k++)
        if ((p.op[k][0] > 0) != (p.op[k][1] > 0)) bad = printf("check: %s measured on one column only\n", roof_kind_name(k));
    for (int s = 0; s < ROOF_N_BW; s++)
        if (p.bw[s][0] <= 0 || p.bw[s][1] <= 0) bad = printf("check: no read figure at %zu bytes\n", roof_bw_bytes[s]);
    if (roof_save(&p, path) != 0 || roof_load(&q, path) != 0) return printf("check: %s does not round-trip\n", path), 1;
    for (int k = 0; k < ROOF_N_KIND; k++)
        for (int a = 0; a < 2; a++)
            if (fabs(q.op[k][a] - p.op[k][a]) > 1e-5 * fabs(p.op[k][a])) bad = printf("check: %s differs after reload\n", roof_kind_name(k));
    for (int s = 0; s < ROOF_N_BW; s++)
        for (int a = 0; a < 2; a++)
            if (fabs(q.bw[s][a] - p.bw[s][a]) > 1e-5 * fabs(p.bw[s][a])) bad = printf("check: bw differs after reload\n");
    printf("check: %s\n", bad ? "FAILED" : "ok");
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--check")) return check();
    char path[4200];
    if (!roof_path(path, sizeof path, "peak.txt")) {
        fprintf(stderr, "peak: cannot find my own directory\n");
        return 1;
    }
    roof_peaks p;
    if (argc > 1 && !strcmp(argv[1], "--show")) {
        if (roof_load(&p, path) != 0) {
            fprintf(stderr, "peak: no %s for this CPU (run build/peak)\n", path);
            return 1;
        }
        roof_print(stdout, &p);
        return 0;
    }
    const double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    if (!(seconds > 0 && seconds <= 60)) {
        fprintf(stderr, "usage: build/peak [SECONDS per figure, 0-60] | --show | --check\n");
        return 2;
    }
    if (roof_measure(&p, seconds, ROOF_OPS | ROOF_BW) != 0) {
        fprintf(stderr, "peak: could not start threads or allocate buffers\n");
        return 1;
    }
    snprintf(p.source, sizeof p.source, "measured now (%s, load average %.2f, %.2f s per figure)", p.date,
             p.loadavg, p.seconds);
    roof_print(stdout, &p);
    if (roof_save(&p, path) != 0) {
        perror(path);
        return 1;
    }
    printf("saved %s (the benches read it; AMX is reported by some CPUs and never run here)\n", path);
    return 0;
}
