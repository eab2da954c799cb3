/* bw.c - read bandwidth of this machine: 1 thread and every CPU at once, one buffer per
 * thread of 32 KiB (L1) to 512 MiB, the loop of roof.c (64-byte loads, AVX-512 or AVX2
 * chosen at run time, pinned threads, the best of ~20 ms rounds).
 *   build/bw [SECONDS per figure, default 0.5]
 * Prints per size the all-CPU sum as a fraction of n x the 1-thread figure (how far the
 * cores share the level), and this run as a fraction of build/peak.txt's figure when
 * there is one (below 100%: the machine is busier now than when the peaks were taken). */
#include "roof.h"

#include <stdlib.h>

int main(int argc, char **argv)
{
    const double seconds = argc > 1 ? atof(argv[1]) : 0.5;
    if (!(seconds > 0 && seconds <= 60)) {
        fprintf(stderr, "usage: build/bw [SECONDS per figure, 0-60]\n");
        return 2;
    }
    roof_peaks now, saved;
    char path[4200];
    const int have = roof_path(path, sizeof path, "peak.txt") && roof_load(&saved, path) == 0;
    if (roof_measure(&now, seconds, ROOF_BW) != 0) {
        fprintf(stderr, "bw: could not start threads or allocate buffers\n");
        return 1;
    }
    printf("CPU: %s; %d threads; load average %.2f; %s\n", now.cpu, now.n_cpu, now.loadavg,
           have ? saved.source : "no build/peak.txt for this CPU");
    for (int s = 0; s < ROOF_N_BW; s++) {
        const size_t b = roof_bw_bytes[s];
        char a[8], c[8], d[8];
        printf("%5zu %s: 1 thread %6.1f GB/s; %d threads %6.1f GB/s (%s of %d x 1 thread)", b < (1u << 20) ? b >> 10 : b >> 20,
               b < (1u << 20) ? "KiB" : "MiB", now.bw[s][0], now.n_cpu, now.bw[s][1],
               roof_pct(a, now.bw[s][1], now.n_cpu * now.bw[s][0]), now.n_cpu);
        if (have)
            printf("; of peak.txt: %s, %s", roof_pct(c, now.bw[s][0], saved.bw[s][0]), roof_pct(d, now.bw[s][1], saved.bw[s][1]));
        printf("\n");
    }
    return 0;
}
