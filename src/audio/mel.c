/* mel.c - Whisper's log-mel spectrogram through FFTW3 (single precision). See mel.h.
 * Room: src/audio/. May touch: core (errors, thread pool), FFTW3, libc. Knows no model file.
 *
 * faster-whisper 1.2.1 FeatureExtractor, step by step (numpy in float32 there):
 *   x: [n + 160]               the samples, then MEL_HOP zeros
 *   padded index i in [-200, n + 160 + 200) reads x[reflect(i)] (numpy "reflect",
 *                              repeated when the pad is longer than x, i.e. n < 41)
 *   frame t in [0, n_frames):  w[k] = x[reflect(t*160 - 200 + k)] * hann[k], k < 400
 *   X = rfft(w): [201] complex  (fftwf r2c, one plan for the process)
 *   p[k] = |X[k]|^2             [201]
 *   mel[m][t] = sum_k F[m][k] * p[k]   F: [n_mels][201] (each row nonzero on a few bins)
 *   log10(max(mel, 1e-10)); then max(x, max over all m, t - 8); then (x + 4) / 4
 *
 * Threads split frames (ith/nth); each has its own FFT buffers. The FFTW plan is
 * the one piece of global state in the library: FFTW's planner is not thread-safe,
 * so the plan is made once, under a mutex, and then only fftwf_execute_dft_r2c runs,
 * which is thread-safe on new arrays of the plan's alignment (fftwf_malloc'd). */
#include "audio/mel.h"

#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/pool.h"

/* ---- the Slaney filterbank (librosa htk=False, norm="slaney") ---------------------- */

static double hz_to_mel(double f)
{
    const double f_sp = 200.0 / 3, min_log_hz = 1000.0, logstep = log(6.4) / 27.0;
    return f < min_log_hz ? f / f_sp : min_log_hz / f_sp + log(f / min_log_hz) / logstep;
}

static double mel_to_hz(double m)
{
    const double f_sp = 200.0 / 3, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
    const double logstep = log(6.4) / 27.0;
    return m < min_log_mel ? f_sp * m : min_log_hz * exp(logstep * (m - min_log_mel));
}

void mel_filters(float *filters, int64_t n_mels, int sr)
{
    /* in double like numpy, rounded to f32 at the end (FeatureExtractor's astype) */
    const double max_mel = hz_to_mel(sr / 2.0), step = max_mel / (double)(n_mels + 1);
    const double bin_hz = 1.0 / (MEL_N_FFT * (1.0 / sr));   /* np.fft.rfftfreq */
    for (int64_t m = 0; m < n_mels; m++) {
        /* np.linspace: i * step, the last edge exactly max_mel */
        double f[3];
        for (int j = 0; j < 3; j++) {
            const int64_t i = m + j;
            f[j] = mel_to_hz(i == n_mels + 1 ? max_mel : (double)i * step);
        }
        const double enorm = 2.0 / (f[2] - f[0]);
        /* filters row m: [MEL_N_BINS] */
        for (int k = 0; k < MEL_N_BINS; k++) {
            const double fk = k * bin_hz;
            const double lower = -(f[0] - fk) / (f[1] - f[0]), upper = (f[2] - fk) / (f[2] - f[1]);
            double w = lower < upper ? lower : upper;
            if (w < 0) w = 0;
            filters[m * MEL_N_BINS + k] = (float)(w * enorm);
        }
    }
}

int64_t mel_n_frames(int64_t n) { return n < 0 ? 0 : (n + MEL_HOP) / MEL_HOP; }

/* ---- the FFTW plan: once per process ------------------------------------------------ */

static pthread_mutex_t plan_lock = PTHREAD_MUTEX_INITIALIZER;
static fftwf_plan plan_r2c;   /* [MEL_N_FFT] f32 -> [MEL_N_BINS] complex; never destroyed */

static fftwf_plan get_plan(void)
{
    pthread_mutex_lock(&plan_lock);
    if (!plan_r2c) {
        float *in = fftwf_alloc_real(MEL_N_FFT);
        fftwf_complex *out = fftwf_alloc_complex(MEL_N_BINS);
        if (in && out) plan_r2c = fftwf_plan_dft_r2c_1d(MEL_N_FFT, in, out, FFTW_ESTIMATE);
        fftwf_free(in);
        fftwf_free(out);
    }
    fftwf_plan p = plan_r2c;
    pthread_mutex_unlock(&plan_lock);
    return p;
}

/* ---- frames -------------------------------------------------------------------------- */

typedef struct mel_job {
    const float *x;         /* [n] samples; x[n .. n + MEL_HOP) are the padding zeros */
    int64_t n, n_frames, n_mels;
    const float *filt;      /* [n_mels][MEL_N_BINS] */
    const int *k0, *k1;     /* [n_mels]: filt row m is nonzero only on [k0[m], k1[m]) */
    float hann[MEL_N_FFT];
    fftwf_plan plan;
    float **in;             /* [nth] -> [MEL_N_FFT] */
    fftwf_complex **spec;   /* [nth] -> [MEL_N_BINS] */
    float *out;             /* [n_mels][n_frames] */
    float *thread_max;      /* [nth] */
} mel_job;

/* numpy's reflect pad of x' = x ++ zeros(MEL_HOP), length len: the mirror about the
 * first and last samples, repeated (period 2 * (len - 1)) */
static float padded_at(const mel_job *j, int64_t i)
{
    const int64_t len = j->n + MEL_HOP, period = 2 * (len - 1);
    if (i < 0 || i >= len) {
        i %= period;
        if (i < 0) i += period;
        if (i >= len) i = period - i;
    }
    return i < j->n ? j->x[i] : 0.0f;
}

static void mel_frames(void *arg, int ith, int nth)
{
    mel_job *j = arg;
    float *in = j->in[ith], pw[MEL_N_BINS];
    fftwf_complex *spec = j->spec[ith];
    float mx = -INFINITY;
    int64_t t0, t1;
    pool_split(j->n_frames, ith, nth, &t0, &t1);
    for (int64_t t = t0; t < t1; t++) {
        /* in: [MEL_N_FFT] windowed frame t, centred on sample t * MEL_HOP */
        const int64_t s0 = t * MEL_HOP - MEL_N_FFT / 2;
        if (s0 >= 0 && s0 + MEL_N_FFT <= j->n) {
            for (int k = 0; k < MEL_N_FFT; k++) in[k] = j->x[s0 + k] * j->hann[k];
        } else {
            for (int k = 0; k < MEL_N_FFT; k++) in[k] = padded_at(j, s0 + k) * j->hann[k];
        }
        fftwf_execute_dft_r2c(j->plan, in, spec);
        /* pw: [MEL_N_BINS] power */
        for (int k = 0; k < MEL_N_BINS; k++) pw[k] = spec[k][0] * spec[k][0] + spec[k][1] * spec[k][1];
        /* out[m][t] for m < n_mels */
        for (int64_t m = 0; m < j->n_mels; m++) {
            const float *f = j->filt + m * MEL_N_BINS;
            float s = 0;
            for (int k = j->k0[m]; k < j->k1[m]; k++) s += f[k] * pw[k];
            const float v = log10f(s > 1e-10f ? s : 1e-10f);
            j->out[m * j->n_frames + t] = v;
            if (v > mx) mx = v;
        }
    }
    j->thread_max[ith] = mx;
}

typedef struct norm_job {
    float *out;   /* [n_total] */
    int64_t n_total;
    float floor_;  /* global max - 8 */
} norm_job;

static void mel_normalize(void *arg, int ith, int nth)
{
    norm_job *j = arg;
    int64_t i0, i1;
    pool_split(j->n_total, ith, nth, &i0, &i1);
    for (int64_t i = i0; i < i1; i++) {
        const float v = j->out[i] > j->floor_ ? j->out[i] : j->floor_;
        j->out[i] = (v + 4.0f) / 4.0f;
    }
}

kvlm_err mel_compute(const float *samples, int64_t n, int64_t n_mels, int n_threads, float **out,
                     int64_t *n_frames, char *err, size_t errlen)
{
    if (out) *out = NULL;
    if (n_frames) *n_frames = 0;
    if (!samples || !out || !n_frames || n <= 0)
        return err_set(err, errlen, KVLM_ERR_INVALID, "mel_compute: %s", n <= 0 ? "no samples" : "bad arguments");
    if (n_mels < 1 || n_mels > 512 || n_threads < 1 || n_threads > 1024)
        return err_set(err, errlen, KVLM_ERR_INVALID, "mel_compute: n_mels %lld or n_threads %d out of range",
                       (long long)n_mels, n_threads);
    const int64_t nf = mel_n_frames(n);
    if (nf > INT64_MAX / 4 / n_mels || (uint64_t)(nf * n_mels) > SIZE_MAX / sizeof(float))
        return err_set(err, errlen, KVLM_ERR_INVALID, "mel_compute: %lld samples is too many", (long long)n);
    kvlm_err rc = KVLM_OK;
    mel_job j;
    memset(&j, 0, sizeof j);
    pool *p = NULL;
    float *filt = malloc((size_t)n_mels * MEL_N_BINS * sizeof *filt);
    int *k0 = malloc((size_t)n_mels * sizeof *k0), *k1 = malloc((size_t)n_mels * sizeof *k1);
    float *res = malloc((size_t)(nf * n_mels) * sizeof *res);
    j.in = calloc((size_t)n_threads, sizeof *j.in);
    j.spec = calloc((size_t)n_threads, sizeof *j.spec);
    j.thread_max = calloc((size_t)n_threads, sizeof *j.thread_max);
    if (!filt || !k0 || !k1 || !res || !j.in || !j.spec || !j.thread_max) goto nomem;
    for (int i = 0; i < n_threads; i++) {
        j.in[i] = fftwf_alloc_real(MEL_N_FFT);
        j.spec[i] = fftwf_alloc_complex(MEL_N_BINS);
        if (!j.in[i] || !j.spec[i]) goto nomem;
    }
    if (!(j.plan = get_plan())) {
        rc = err_set(err, errlen, KVLM_ERR_NOMEM, "mel_compute: FFTW could not plan a %d-point FFT", MEL_N_FFT);
        goto fail;
    }
    if ((rc = pool_init(&p, n_threads, err, errlen))) goto fail;

    mel_filters(filt, n_mels, MEL_SAMPLE_RATE);
    for (int64_t m = 0; m < n_mels; m++) {   /* the nonzero span of each row */
        int a = 0, b = MEL_N_BINS;
        while (a < b && filt[m * MEL_N_BINS + a] == 0.0f) a++;
        while (b > a && filt[m * MEL_N_BINS + b - 1] == 0.0f) b--;
        k0[m] = a;
        k1[m] = b;
    }
    /* np.hanning(401)[:-1]: periodic Hann, in double, rounded to f32 */
    for (int k = 0; k < MEL_N_FFT; k++) j.hann[k] = (float)(0.5 - 0.5 * cos(2.0 * M_PI * k / MEL_N_FFT));
    j.x = samples;
    j.n = n;
    j.n_frames = nf;
    j.n_mels = n_mels;
    j.filt = filt;
    j.k0 = k0;
    j.k1 = k1;
    j.out = res;
    pool_run(p, mel_frames, &j);

    float mx = -INFINITY;
    for (int i = 0; i < n_threads; i++)
        if (j.thread_max[i] > mx) mx = j.thread_max[i];
    norm_job nj = {.out = res, .n_total = nf * n_mels, .floor_ = mx - 8.0f};
    pool_run(p, mel_normalize, &nj);

    *out = res;
    *n_frames = nf;
    res = NULL;
    goto done;
nomem:
    rc = err_set(err, errlen, KVLM_ERR_NOMEM, "mel_compute: out of memory for %lld frames", (long long)nf);
fail:
done:
    pool_free(p);
    for (int i = 0; j.in && i < n_threads; i++) fftwf_free(j.in[i]);
    for (int i = 0; j.spec && i < n_threads; i++) fftwf_free(j.spec[i]);
    free(j.in);
    free(j.spec);
    free(j.thread_max);
    free(filt);
    free(k0);
    free(k1);
    free(res);
    return rc;
}
