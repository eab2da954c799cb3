/* test_mel.c - the log-mel front end (src/audio/mel.c) against faster-whisper 1.2.1.
 * Golden data: tests/data/audio/ from tests/ref/gen_mel_golden.py (numpy; faster-whisper's
 * FeatureExtractor loaded by path), never from kvlm's C code:
 *   - the Slaney filterbank [80][201] written from librosa's formulas
 *   - the mel of short inputs (n = 1 .. 1601: numpy's repeated reflect padding)
 *   - the mel of jfk.flac computed by faster-whisper from kvlm's own 16 kHz samples
 *     (skipped when ../shared/data/jfk.flac or $KVLM_JFK is absent)
 * and the invariants: frames = (n + 160) / 160, the same bits for any thread count,
 * concurrent calls (the shared FFTW plan) agree, bad arguments are errors. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audio/audio.h"
#include "audio/mel.h"
#include "testutil.h"

/* Tolerances, from the measured differences (FFTW vs numpy's pocketfft, both f32):
 * the filterbank is the same double formula rounded to f32; the mel of jfk.flac
 * differs by at most 1.5e-5 (normalized log10 units). */
#define FILTER_TOL 1e-9
#define MEL_TOL    1e-4
#define MEL_MEAN_TOL 1e-6

static float *read_f32(const char *rel, size_t *n)
{
    size_t len = 0;
    char *p = test_read_file(test_data_path(rel), &len);
    if (!p) fail_msg("cannot read tests/data/%s: run tests/ref/gen_mel_golden.py", rel);
    *n = len / sizeof(float);
    return (float *)p;
}

/* the line of mel_golden.txt starting with key, or NULL */
static const char *golden_line(const char *key)
{
    static char line[512];
    FILE *f = fopen(test_data_path("audio/mel_golden.txt"), "r");
    if (!f) return NULL;
    const char *found = NULL;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key)) && line[strlen(key)] == ' ') {
            found = line;
            break;
        }
    fclose(f);
    return found;
}

static void test_filters(void **state)
{
    (void)state;
    size_t n;
    float *want = read_f32("audio/mel_filters_80.f32", &n);
    assert_int_equal(n, 80 * MEL_N_BINS);
    float *got = malloc(80 * MEL_N_BINS * sizeof *got);
    mel_filters(got, 80, MEL_SAMPLE_RATE);
    double maxd = 0;
    for (size_t i = 0; i < n; i++) maxd = fmax(maxd, fabs((double)got[i] - want[i]));
    if (maxd > FILTER_TOL) fail_msg("filterbank max |diff| %g > %g", maxd, FILTER_TOL);
    /* the triangles: each row has a peak and is zero away from it */
    for (int m = 0; m < 80; m++) {
        float mx = 0;
        for (int k = 0; k < MEL_N_BINS; k++) mx = fmaxf(mx, got[m * MEL_N_BINS + k]);
        assert_true(mx > 0);
    }
    free(got);
    free(want);
}

static double max_diff(const float *a, const float *b, size_t n, double *mean)
{
    double mx = 0, sum = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]);
        mx = fmax(mx, d);
        sum += d;
    }
    if (mean) *mean = n ? sum / n : 0;
    return mx;
}

static void test_short_inputs(void **state)
{
    (void)state;
    size_t total;
    float *blob = read_f32("audio/mel_short.f32", &total);
    FILE *f = fopen(test_data_path("audio/mel_golden.txt"), "r");
    assert_non_null(f);
    char line[512];
    size_t off = 0;
    int cases = 0;
    while (fgets(line, sizeof line, f)) {
        long long n, nf;
        if (sscanf(line, "short %lld %lld", &n, &nf) != 2) continue;
        assert_int_equal(mel_n_frames(n), nf);
        assert_true(off + (size_t)n + 80 * (size_t)nf <= total);
        const float *x = blob + off, *want = x + n;
        float *got = NULL;
        int64_t got_nf = 0;
        char err[256] = "";
        assert_int_equal(mel_compute(x, n, 80, 1, &got, &got_nf, err, sizeof err), KVLM_OK);
        assert_int_equal(got_nf, nf);
        const double d = max_diff(got, want, 80 * (size_t)nf, NULL);
        if (d > MEL_TOL) fail_msg("n=%lld: mel max |diff| %g > %g", n, d, MEL_TOL);
        free(got);
        off += (size_t)n + 80 * (size_t)nf;
        cases++;
    }
    fclose(f);
    assert_int_equal(off, total);
    assert_true(cases >= 5);
    free(blob);
}

static const char *jfk_path(void)
{
    const char *p = getenv("KVLM_JFK");
    if (p && *p) return p;
    return "../shared/data/jfk.flac";
}

static void test_jfk(void **state)
{
    (void)state;
    FILE *probe = fopen(jfk_path(), "rb");
    if (!probe) {
        print_message("skipped: %s not found (set KVLM_JFK)\n", jfk_path());
        skip();
    }
    fclose(probe);
    const char *ls = golden_line("jfk_samples"), *lm;
    assert_non_null(ls);
    long long n_want;
    double sum_want, sumsq_want;
    assert_int_equal(sscanf(ls, "jfk_samples %lld sum %lf sumsq %lf", &n_want, &sum_want, &sumsq_want), 3);
    long long n_mels, nf_want, stride, stored;
    double max_want;
    assert_non_null(lm = golden_line("jfk_mel"));
    assert_int_equal(sscanf(lm, "jfk_mel %lld %lld stride %lld stored %lld max %lf", &n_mels, &nf_want, &stride,
                            &stored, &max_want), 5);

    char err[512] = "";
    audio_buf a;
    if (audio_load_file(jfk_path(), MEL_SAMPLE_RATE, &a, err, sizeof err) != KVLM_OK) fail_msg("%s", err);
    /* the golden mel was made from these samples: if they moved, regenerate it */
    assert_int_equal(a.n, n_want);
    double sum = 0, sumsq = 0;
    for (int64_t i = 0; i < a.n; i++) {
        sum += a.samples[i];
        sumsq += (double)a.samples[i] * a.samples[i];
    }
    if (fabs(sum - sum_want) > 1e-3 || fabs(sumsq - sumsq_want) > 1e-6 * sumsq_want)
        fail_msg("kvlm's samples of jfk.flac changed (sum %.9g vs %.9g, sumsq %.9g vs %.9g): "
                 "rerun tests/ref/gen_mel_golden.py", sum, sum_want, sumsq, sumsq_want);

    float *mel1 = NULL, *mel2 = NULL;
    int64_t nf1 = 0, nf2 = 0;
    assert_int_equal(mel_compute(a.samples, a.n, n_mels, 1, &mel1, &nf1, err, sizeof err), KVLM_OK);
    assert_int_equal(mel_compute(a.samples, a.n, n_mels, 3, &mel2, &nf2, err, sizeof err), KVLM_OK);
    assert_int_equal(nf1, nf_want);
    assert_int_equal(nf2, nf_want);
    assert_memory_equal(mel1, mel2, (size_t)(n_mels * nf1) * sizeof(float));   /* threads change no bit */

    size_t n_gold;
    float *gold = read_f32("audio/mel_jfk.f32", &n_gold);   /* [n_mels][stored] */
    assert_int_equal(n_gold, (size_t)(n_mels * stored));
    double mx = 0, sum_d = 0;
    float top = -INFINITY;
    for (int64_t i = 0; i < n_mels * nf1; i++) top = fmaxf(top, mel1[i]);
    for (long long m = 0; m < n_mels; m++)
        for (long long s = 0; s < stored; s++) {
            const double d = fabs((double)mel1[m * nf1 + s * stride] - gold[m * stored + s]);
            mx = fmax(mx, d);
            sum_d += d;
        }
    const double mean = sum_d / (double)(n_mels * stored);
    print_message("jfk mel vs faster-whisper: max |diff| %.3g, mean %.3g over %lld frames\n", mx, mean, stored);
    if (mx > MEL_TOL || mean > MEL_MEAN_TOL)
        fail_msg("jfk mel max |diff| %g (tol %g), mean %g (tol %g)", mx, MEL_TOL, mean, MEL_MEAN_TOL);
    assert_true(fabs(top - max_want) < MEL_TOL);
    free(gold);
    free(mel1);
    free(mel2);
    audio_buf_free(&a);
}

typedef struct conc_arg {
    const float *x;
    int64_t n;
    float *out;
    kvlm_err rc;
} conc_arg;

static void *conc_run(void *p)
{
    conc_arg *c = p;
    int64_t nf;
    c->rc = mel_compute(c->x, c->n, 80, 2, &c->out, &nf, NULL, 0);
    return NULL;
}

/* The FFTW plan is made once under a mutex and shared: calls from several threads
 * at once must all succeed and agree bit for bit. */
static void test_concurrent_calls(void **state)
{
    (void)state;
    enum { N = 16000 * 3, T = 4 };
    float *x = malloc(N * sizeof *x);
    for (int i = 0; i < N; i++) x[i] = 0.4f * sinf(0.07f * (float)i) + 0.1f * sinf(1.3f * (float)i);
    pthread_t th[T];
    conc_arg c[T];
    for (int t = 0; t < T; t++) {
        c[t] = (conc_arg){.x = x, .n = N};
        assert_int_equal(pthread_create(&th[t], NULL, conc_run, &c[t]), 0);
    }
    for (int t = 0; t < T; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < T; t++) {
        assert_int_equal(c[t].rc, KVLM_OK);
        assert_memory_equal(c[t].out, c[0].out, (size_t)80 * mel_n_frames(N) * sizeof(float));
    }
    for (int t = 0; t < T; t++) free(c[t].out);
    free(x);
}

static void test_frames_and_errors(void **state)
{
    (void)state;
    assert_int_equal(mel_n_frames(176000), 1101);   /* WHISPER.md: 11 s of JFK */
    assert_int_equal(mel_n_frames(480000), 3001);
    assert_int_equal(mel_n_frames(1), 1);
    assert_int_equal(mel_n_frames(159), 1);
    assert_int_equal(mel_n_frames(160), 2);
    float x[4] = {0}, *out = (float *)1;
    int64_t nf = 7;
    char err[256] = "";
    assert_int_equal(mel_compute(x, 0, 80, 1, &out, &nf, err, sizeof err), KVLM_ERR_INVALID);
    assert_null(out);
    assert_int_equal(nf, 0);
    assert_true(strlen(err) > 0);
    assert_int_equal(mel_compute(NULL, 4, 80, 1, &out, &nf, err, sizeof err), KVLM_ERR_INVALID);
    assert_int_equal(mel_compute(x, 4, 0, 1, &out, &nf, err, sizeof err), KVLM_ERR_INVALID);
    assert_int_equal(mel_compute(x, 4, 80, 0, &out, &nf, err, sizeof err), KVLM_ERR_INVALID);
    /* silence: every value is log10(1e-10) = -10, clamped to max - 8 = -10, (x+4)/4 */
    assert_int_equal(mel_compute(x, 4, 80, 1, &out, &nf, err, sizeof err), KVLM_OK);
    assert_int_equal(nf, 1);
    for (int m = 0; m < 80; m++) assert_float_equal(out[m], -1.5f, 1e-6);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_short_inputs),
        cmocka_unit_test(test_jfk),
        cmocka_unit_test(test_concurrent_calls),
        cmocka_unit_test(test_frames_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
