/* cli_bench_plot.c - see cli_bench_plot.h. Hand-written SVG: the picture is
 * a few dozen elements, so no plotting library is worth a dependency.
 *
 *   +-- title -----------------------------------------------+
 *   | ms                                        legend       |
 *   |  ^  .......................................  (nocache) |
 *   |  |         ..........                                  |
 *   |  |_____________________________________   (cached)    |
 *   |  +----------------------------------------> position   |
 *   +--------------------------------------------------------+
 * Data space -> pixels: x = PX0 + pos / x_max * PW, y = PY0 + PH - ms / y_max * PH. */
#include "cli/cli_bench_plot.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { W = 880, H = 540, PX0 = 80, PY0 = 70, PW = 760, PH = 390 };
#define COLOR_CACHED "#1f77b4"
#define COLOR_NOCACHE "#d62728"

int cli_bench_plot_csv(FILE *f, const cli_bench_curve *c)
{
    fprintf(f, "position,ms_cached,ms_nocache\n");
    for (int64_t i = 0; i < c->n; i++)
        fprintf(f, "%lld,%.4f,%.4f\n", (long long)i, c->ms_cached[i], c->ms_nocache[i]);
    return ferror(f) ? -1 : 0;
}

/* A tick step of 1, 2 or 5 times a power of ten giving about `target` ticks over [0, range]. */
static double nice_step(double range, int target)
{
    if (!(range > 0)) return 1;
    double raw = range / target, p = pow(10, floor(log10(raw))), m = raw / p;
    return p * (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double mean(const double *x, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    return n > 0 ? s / (double)n : 0;
}

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static void polyline(FILE *f, const double *ms, int64_t n, double x_max, double y_max, const char *color)
{
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" stroke-linejoin=\"round\" points=\"",
            color);
    for (int64_t i = 0; i < n; i++) {
        double v = ms[i] < y_max ? ms[i] : y_max;   /* a spike beyond the axis is clipped */
        fprintf(f, "%s%.1f,%.1f", i ? " " : "", PX0 + (double)i / x_max * PW, PY0 + PH - v / y_max * PH);
    }
    fprintf(f, "\"/>\n");
}

int cli_bench_plot_svg(FILE *f, const cli_bench_curve *c)
{
    if (c->n < 1) {
        errno = EINVAL;
        return -1;
    }
    /* y range: the 99th percentile of all points, not the maximum, so that one
     * scheduler hiccup on a busy machine does not flatten the picture */
    double *all = malloc(2 * (size_t)c->n * sizeof *all);
    if (!all) return -1;
    memcpy(all, c->ms_cached, (size_t)c->n * sizeof *all);
    memcpy(all + c->n, c->ms_nocache, (size_t)c->n * sizeof *all);
    qsort(all, 2 * (size_t)c->n, sizeof *all, cmp_double);
    double y_hi = all[(2 * (size_t)c->n - 1) * 99 / 100];
    free(all);
    double y_step = nice_step(y_hi, 6), y_max = ceil(y_hi / y_step) * y_step;
    if (!(y_max > 0)) y_max = 1;
    double x_max = c->n > 1 ? (double)(c->n - 1) : 1, x_step = nice_step(x_max, 8);

    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\" font-size=\"13\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H, W, H);
    fprintf(f, "<text x=\"%d\" y=\"28\" font-size=\"17\" font-weight=\"bold\">"
               "kvlm: time per generated token vs position, with and without the KV cache</text>\n", PX0);
    fprintf(f, "<text x=\"%d\" y=\"50\" fill=\"#555\">", PX0);
    xml_text(f, c->subtitle ? c->subtitle : "");
    fprintf(f, "</text>\n");

    /* grid and tick labels */
    for (double y = 0; y <= y_max + y_step * 1e-9; y += y_step) {
        double py = PY0 + PH - y / y_max * PH;
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>\n", PX0, py, PX0 + PW, py);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", PX0 - 8, py + 4, y);
    }
    for (double x = 0; x <= x_max + x_step * 1e-9; x += x_step) {
        double px = PX0 + x / x_max * PW;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#e3e3e3\"/>\n", px, PY0, px, PY0 + PH);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n", px, PY0 + PH + 20, x);
    }
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", PX0, PY0 + PH, PX0 + PW, PY0 + PH);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", PX0, PY0, PX0, PY0 + PH);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">position of the token being fed "
               "(tokens already in the sequence)</text>\n", PX0 + PW / 2, PY0 + PH + 45);
    fprintf(f, "<text transform=\"translate(22 %d) rotate(-90)\" text-anchor=\"middle\">"
               "milliseconds per token</text>\n", PY0 + PH / 2);

    polyline(f, c->ms_nocache, c->n, x_max, y_max, COLOR_NOCACHE);
    polyline(f, c->ms_cached, c->n, x_max, y_max, COLOR_CACHED);

    /* legend, top left inside the plot, where the no-cache curve is still low */
    int lx = PX0 + 16, ly = PY0 + 14;
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"540\" height=\"50\" fill=\"white\" fill-opacity=\"0.85\" "
               "stroke=\"#ccc\"/>\n", lx - 8, ly - 8);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"/>\n",
            lx, ly + 6, lx + 28, ly + 6, COLOR_NOCACHE);
    fprintf(f, "<text x=\"%d\" y=\"%d\">no KV cache: recompute the whole sequence, O(n) per token "
               "(mean %.1f ms)</text>\n", lx + 36, ly + 10, mean(c->ms_nocache, c->n));
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"/>\n",
            lx, ly + 28, lx + 28, ly + 28, COLOR_CACHED);
    fprintf(f, "<text x=\"%d\" y=\"%d\">KV cache: only the new token, O(1) weights + O(n) attention "
               "(mean %.1f ms)</text>\n", lx + 36, ly + 32, mean(c->ms_cached, c->n));
    fprintf(f, "</svg>\n");
    return ferror(f) ? -1 : 0;
}
