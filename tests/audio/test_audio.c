/* test_audio.c - audio in (src/audio/audio.c): decode, downmix, resample, bad input.
 * Inputs are made here: signals written with libsndfile into WAV/FLAC/OGG/MP3 in
 * memory (and to temporary files), and WAV headers crafted byte by byte. Expected
 * values are analytic (a 1 kHz sine keeps its frequency, amplitude and phase after
 * 44.1 kHz -> 16 kHz; the mono mix is the exact mean), or independent: sox's own
 * resampling of jfk.flac (tests/data/audio/jfk_sox16k.f32, tests/ref/gen_mel_golden.py).
 * Every bad input must give an error code and a message, never a crash or a leak
 * (the ASan build runs this file too). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audio/audio.h"
#include "testutil.h"

#define SR 16000

/* ---- writing audio into memory with libsndfile ---------------------------------- */

typedef struct membuf {
    unsigned char *p;
    sf_count_t len, cap, pos;
} membuf;

static sf_count_t mb_len(void *u) { return ((membuf *)u)->len; }
static sf_count_t mb_tell(void *u) { return ((membuf *)u)->pos; }
static sf_count_t mb_seek(sf_count_t off, int whence, void *u)
{
    membuf *m = u;
    m->pos = (whence == SEEK_CUR ? m->pos : whence == SEEK_END ? m->len : 0) + off;
    return m->pos;
}
static sf_count_t mb_read(void *p, sf_count_t n, void *u)
{
    membuf *m = u;
    if (m->pos >= m->len) return 0;
    if (n > m->len - m->pos) n = m->len - m->pos;
    memcpy(p, m->p + m->pos, (size_t)n);
    m->pos += n;
    return n;
}
static sf_count_t mb_write(const void *p, sf_count_t n, void *u)
{
    membuf *m = u;
    if (m->pos + n > m->cap) {
        m->cap = (m->pos + n) * 2;
        m->p = realloc(m->p, (size_t)m->cap);
        assert_non_null(m->p);
    }
    memcpy(m->p + m->pos, p, (size_t)n);
    m->pos += n;
    if (m->pos > m->len) m->len = m->pos;
    return n;
}

/* x: [frames][channels]; returns the encoded bytes (malloc'd) and *len */
static unsigned char *encode(int format, int rate, int channels, const float *x, int64_t frames, size_t *len)
{
    membuf m = {0};
    SF_VIRTUAL_IO vio = {mb_len, mb_seek, mb_read, mb_write, mb_tell};
    SF_INFO info = {.samplerate = rate, .channels = channels, .format = format};
    SNDFILE *sf = sf_open_virtual(&vio, SFM_WRITE, &info, &m);
    if (!sf) fail_msg("libsndfile cannot write format 0x%x: %s", format, sf_strerror(NULL));
    assert_int_equal(sf_writef_float(sf, x, frames), frames);
    sf_close(sf);
    *len = (size_t)m.len;
    return m.p;
}

static void write_file(const char *path, const void *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, len, f), len);
    fclose(f);
}

static char tmpdir[256];

static int setup(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kvlm-test-audio-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *tmp_path(const char *name)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

/* ---- measuring a sine ------------------------------------------------------------- */

/* Least-squares fit of a*sin + b*cos at freq over y[i0, i1) (an integer number of
 * cycles); returns the amplitude, and the rms of what the fit leaves in *resid. */
static double fit_sine(const float *y, int64_t i0, int64_t i1, double freq, int rate, double *resid)
{
    double s = 0, c = 0;
    const int64_t n = i1 - i0;
    for (int64_t i = i0; i < i1; i++) {
        const double ph = 2 * M_PI * freq * (double)i / rate;
        s += y[i] * sin(ph);
        c += y[i] * cos(ph);
    }
    const double a = 2 * s / (double)n, b = 2 * c / (double)n;
    double r = 0;
    for (int64_t i = i0; i < i1; i++) {
        const double ph = 2 * M_PI * freq * (double)i / rate;
        const double e = y[i] - (a * sin(ph) + b * cos(ph));
        r += e * e;
    }
    if (resid) *resid = sqrt(r / (double)n);
    return sqrt(a * a + b * b);
}

static float *sine(int64_t frames, int channels, int rate, double freq, double amp)
{
    float *x = malloc((size_t)(frames * channels) * sizeof *x);   /* [frames][channels] */
    for (int64_t t = 0; t < frames; t++)
        for (int ch = 0; ch < channels; ch++) x[t * channels + ch] = (float)(amp * sin(2 * M_PI * freq * (double)t / rate));
    return x;
}

/* ---- the four formats --------------------------------------------------------------- */

static void test_formats(void **state)
{
    static const struct { const char *name; int format; double amp_tol, resid_tol; int64_t len_tol; } fmts[] = {
        {"WAV", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 1e-3, 1e-3, 0},
        {"FLAC", SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 1e-3, 1e-3, 0},
        {"OGG", SF_FORMAT_OGG | SF_FORMAT_VORBIS, 2e-2, 2e-2, 0},
        {"MP3", SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III, 2e-2, 2e-2, 2048},
    };
    const int64_t frames = 44100 / 2;   /* 0.5 s, stereo, 44.1 kHz, 1 kHz at 0.5 */
    float *x = sine(frames, 2, 44100, 1000, 0.5);
    for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
        size_t len;
        unsigned char *bytes = encode(fmts[f].format, 44100, 2, x, frames, &len);
        for (int from_file = 0; from_file < 2; from_file++) {
            audio_buf a;
            char err[512] = "";
            kvlm_err rc;
            if (from_file) {
                write_file(tmp_path("in.audio"), bytes, len);
                rc = audio_load_file(tmp_path("in.audio"), SR, &a, err, sizeof err);
            } else {
                rc = audio_load_memory(bytes, len, "upload", SR, &a, err, sizeof err);
            }
            if (rc != KVLM_OK) fail_msg("%s (%zu bytes): %s", fmts[f].name, len, err);
            assert_string_equal(a.format, fmts[f].name);
            assert_int_equal(a.rate, SR);
            assert_int_equal(a.file_rate, 44100);
            assert_int_equal(a.file_channels, 2);
            const int64_t want = (frames * SR * 2 + 44100) / (2 * 44100);
            if (llabs(a.n - want) > fmts[f].len_tol)
                fail_msg("%s: %lld samples, want %lld", fmts[f].name, (long long)a.n, (long long)want);
            double resid;
            const double amp = fit_sine(a.samples, 1600, 6400, 1000, SR, &resid);   /* 300 cycles */
            if (fabs(amp - 0.5) > fmts[f].amp_tol || resid > fmts[f].resid_tol)
                fail_msg("%s: amplitude %.5f (want 0.5), residual rms %.5f", fmts[f].name, amp, resid);
            audio_buf_free(&a);
            assert_null(a.samples);
        }
        free(bytes);
    }
    free(x);
}

/* ---- resampling -------------------------------------------------------------------- */

/* A sine keeps its frequency, amplitude and phase: soxr is linear-phase with its
 * delay removed, so the output is the same sine sampled at 16 kHz. */
static void test_resample_sine(void **state)
{
    static const int rates[] = {44100, 48000, 22050, 8000, 11025, 96000};
    for (size_t r = 0; r < sizeof rates / sizeof rates[0]; r++) {
        const int rate = rates[r];
        float *x = sine(rate, 1, rate, 1000, 0.8), *y = NULL;   /* 1 s */
        int64_t n = 0;
        char err[256] = "";
        assert_int_equal(audio_resample(x, rate, rate, SR, &y, &n, err, sizeof err), KVLM_OK);
        assert_int_equal(n, SR);
        double maxe = 0;
        for (int64_t i = 800; i < n - 800; i++)
            maxe = fmax(maxe, fabs(y[i] - 0.8 * sin(2 * M_PI * 1000.0 * (double)i / SR)));
        double resid;
        const double amp = fit_sine(y, 800, n - 800, 1000, SR, &resid);
        print_message("%6d -> 16000 Hz: 1 kHz amplitude %.6f, max |err| %.2e\n", rate, amp, maxe);
        if (maxe > 1e-4 || fabs(amp - 0.8) > 1e-4)
            fail_msg("%d Hz: max |err| %g, amplitude %g", rate, maxe, amp);
        free(x);
        free(y);
    }
    /* the same rate copies */
    float in[3] = {0.1f, -0.2f, 0.3f}, *out = NULL;
    int64_t n = 0;
    assert_int_equal(audio_resample(in, 3, SR, SR, &out, &n, NULL, 0), KVLM_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(in, out, sizeof in);
    free(out);
    assert_int_equal(audio_resample(in, 3, 10, SR, &out, &n, NULL, 0), KVLM_ERR_INVALID);
    assert_null(out);
}

static float *noise(int64_t n, unsigned seed)
{
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        x[i] = (float)((double)(seed >> 8) / (double)(1u << 24) - 0.5) * 0.9f +
               0.3f * (float)sin(0.01 * (double)i);
    }
    return x;
}

/* The loader feeds soxr in chunks of 4096 frames; audio_resample in one piece. The
 * samples must be the same bits (float WAV holds x exactly). Stereo too: the mix is
 * the mean computed in double. */
static void test_chunking_and_downmix(void **state)
{
    const int64_t frames = 100003;
    for (int channels = 1; channels <= 3; channels++) {
        float *x = noise(frames * channels, 7u + (unsigned)channels);   /* [frames][channels] */
        float *mono = malloc((size_t)frames * sizeof *mono);
        for (int64_t t = 0; t < frames; t++) {
            double s = 0;
            for (int ch = 0; ch < channels; ch++) s += x[t * channels + ch];
            mono[t] = (float)(s / channels);
        }
        static const int rates[] = {44100, SR};
        for (size_t r = 0; r < 2; r++) {
            size_t len;
            unsigned char *bytes = encode(SF_FORMAT_WAV | SF_FORMAT_FLOAT, rates[r], channels, x, frames, &len);
            audio_buf a;
            char err[256] = "";
            assert_int_equal(audio_load_memory(bytes, len, "w", SR, &a, err, sizeof err), KVLM_OK);
            float *want = NULL;
            int64_t n_want = 0;
            assert_int_equal(audio_resample(mono, frames, rates[r], SR, &want, &n_want, err, sizeof err), KVLM_OK);
            assert_int_equal(a.n, n_want);
            assert_memory_equal(a.samples, want, (size_t)n_want * sizeof *want);
            if (rates[r] == SR) assert_memory_equal(a.samples, mono, (size_t)frames * sizeof *mono);
            free(want);
            audio_buf_free(&a);
            free(bytes);
        }
        free(mono);
        free(x);
    }
    /* left only: the mix is half of it */
    float st[8] = {0.5f, 0, -0.25f, 0, 1.0f, 0, 0.125f, 0};
    size_t len;
    unsigned char *bytes = encode(SF_FORMAT_WAV | SF_FORMAT_FLOAT, SR, 2, st, 4, &len);
    audio_buf a;
    assert_int_equal(audio_load_memory(bytes, len, "w", SR, &a, NULL, 0), KVLM_OK);
    assert_int_equal(a.n, 4);
    const float half[4] = {0.25f, -0.125f, 0.5f, 0.0625f};
    assert_memory_equal(a.samples, half, sizeof half);
    audio_buf_free(&a);
    free(bytes);
}

static void test_sample_counts(void **state)
{
    static const int rates[] = {8000, 11025, 16000, 22050, 44100, 48000, 96000};
    static const int64_t lens[] = {3, 1000, 4096, 4097, 44101};
    for (size_t r = 0; r < sizeof rates / sizeof rates[0]; r++)
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
            float *x = noise(lens[l], 3);
            size_t len;
            unsigned char *bytes = encode(SF_FORMAT_WAV | SF_FORMAT_PCM_16, rates[r], 1, x, lens[l], &len);
            audio_buf a;
            char err[256] = "";
            assert_int_equal(audio_load_memory(bytes, len, "w", SR, &a, err, sizeof err), KVLM_OK);
            const int64_t want = (int64_t)llround((double)lens[l] * SR / rates[r]);
            if (a.n != want) fail_msg("%lld frames at %d Hz: %lld samples, want %lld", (long long)lens[l], rates[r],
                                      (long long)a.n, (long long)want);
            assert_int_equal(a.file_frames, lens[l]);
            audio_buf_free(&a);
            free(bytes);
            free(x);
        }
}

/* kvlm's 16 kHz mono samples of the real recording against sox's resampler */
static void test_jfk_vs_sox(void **state)
{
    const char *jfk = getenv("KVLM_JFK");
    if (!jfk || !*jfk) jfk = "../shared/data/jfk.flac";
    if (access(jfk, R_OK) != 0) {
        print_message("skipped: %s not found (set KVLM_JFK)\n", jfk);
        skip();
    }
    size_t len;
    float *sox = (float *)test_read_file(test_data_path("audio/jfk_sox16k.f32"), &len);
    assert_non_null(sox);
    const int64_t stride = 50, n_sox = (int64_t)(len / sizeof(float));
    audio_buf a;
    char err[512] = "";
    if (audio_load_file(jfk, SR, &a, err, sizeof err) != KVLM_OK) fail_msg("%s", err);
    assert_string_equal(a.format, "FLAC");
    assert_int_equal(a.file_rate, 44100);
    assert_int_equal(a.file_channels, 2);
    assert_int_equal(a.n, 176000);   /* 11.0 s */
    assert_int_equal((a.n + stride - 1) / stride, n_sox);
    double maxd = 0;
    for (int64_t i = 0; i < n_sox; i++) maxd = fmax(maxd, fabs((double)a.samples[i * stride] - sox[i]));
    print_message("jfk.flac: kvlm vs sox 16 kHz max |diff| %.3g\n", maxd);
    if (maxd > 5e-5) fail_msg("kvlm vs sox: max |diff| %g > 5e-5", maxd);
    audio_buf_free(&a);
    free(sox);
}

/* ---- bad input ---------------------------------------------------------------------- */

/* the canonical 44-byte WAV header */
static size_t wav_header(unsigned char *h, unsigned tag, unsigned channels, uint32_t rate, unsigned bits,
                         uint32_t data_bytes)
{
    const uint32_t align = channels * (bits / 8), byte_rate = rate * align;
    unsigned char *p = h;
#define PUT4(v) do { uint32_t v_ = (v); for (int b_ = 0; b_ < 4; b_++) *p++ = (unsigned char)(v_ >> (8 * b_)); } while (0)
#define PUT2(v) do { unsigned v_ = (v); *p++ = (unsigned char)v_; *p++ = (unsigned char)(v_ >> 8); } while (0)
    memcpy(p, "RIFF", 4); p += 4;
    PUT4(36 + data_bytes);
    memcpy(p, "WAVEfmt ", 8); p += 8;
    PUT4(16);
    PUT2(tag);
    PUT2(channels);
    PUT4(rate);
    PUT4(byte_rate);
    PUT2(align);
    PUT2(bits);
    memcpy(p, "data", 4); p += 4;
    PUT4(data_bytes);
#undef PUT4
#undef PUT2
    return (size_t)(p - h);
}

/* rc must be an error with a message containing want (when not NULL); *a zeroed */
static void expect_bad(const void *p, size_t len, kvlm_err want_rc, const char *want, const char *what)
{
    audio_buf a;
    char err[512] = "";
    const kvlm_err rc = audio_load_memory(p, len, "bad.wav", SR, &a, err, sizeof err);
    print_message("%-28s -> %s: %s\n", what, kvlm_err_name(rc), err);
    if (rc == KVLM_OK) fail_msg("%s: accepted (%lld samples)", what, (long long)a.n);
    if (want_rc != KVLM_OK && rc != want_rc) fail_msg("%s: %s, want %s", what, kvlm_err_name(rc), kvlm_err_name(want_rc));
    assert_true(strlen(err) > 0);
    if (want && !strstr(err, want)) fail_msg("%s: message \"%s\" lacks \"%s\"", what, err, want);
    assert_null(a.samples);
    assert_int_equal(a.n, 0);
}

static void test_crafted_headers(void **state)
{
    unsigned char buf[44 + 4000];
    memset(buf, 0x11, sizeof buf);
    struct { unsigned ch; uint32_t rate; const char *want; const char *what; } cases[] = {
        {0, 16000, NULL, "0 channels"},
        {65, 16000, "channels", "65 channels"},
        {1000, 16000, NULL, "1000 channels"},
        {65535, 16000, NULL, "65535 channels"},
        {1, 0, NULL, "rate 0"},
        {1, 1, "sample rate", "rate 1 Hz"},
        {1, 999, "sample rate", "rate 999 Hz"},
        {1, 768001, "sample rate", "rate 768001 Hz"},
        {1, 0x7fffffff, NULL, "rate 2^31-1"},
        {1, 0xffffffff, NULL, "rate 2^32-1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wav_header(buf, 1, cases[i].ch, cases[i].rate, 16, 4000);
        expect_bad(buf, sizeof buf, KVLM_OK, cases[i].want, cases[i].what);
    }
    /* a valid header with no data: no frames */
    wav_header(buf, 1, 1, 16000, 16, 0);
    expect_bad(buf, 44, KVLM_ERR_FORMAT, "no audio frames", "0 frames");
    /* data runs past the end of the file */
    wav_header(buf, 1, 1, 16000, 16, 1000000);
    expect_bad(buf, sizeof buf, KVLM_ERR_FORMAT, "truncated", "data past the end");
    /* an unknown codec tag */
    wav_header(buf, 0x1234, 1, 16000, 16, 4000);
    expect_bad(buf, sizeof buf, KVLM_OK, NULL, "codec tag 0x1234");
    /* 1 frame at 96 kHz is no sample at 16 kHz */
    wav_header(buf, 1, 1, 96000, 16, 2);
    expect_bad(buf, 46, KVLM_ERR_FORMAT, "too short", "1 frame at 96 kHz");
    /* a NaN in a float WAV */
    float nan_data[4] = {0.1f, NAN, 0.2f, 0.3f};
    size_t len;
    unsigned char *bytes = encode(SF_FORMAT_WAV | SF_FORMAT_FLOAT, SR, 1, nan_data, 4, &len);
    expect_bad(bytes, len, KVLM_ERR_FORMAT, "finite", "NaN sample");
    free(bytes);
}

static void test_truncated(void **state)
{
    static const struct { const char *name; int format; } fmts[] = {
        {"WAV", SF_FORMAT_WAV | SF_FORMAT_PCM_16},
        {"FLAC", SF_FORMAT_FLAC | SF_FORMAT_PCM_16},
        {"OGG", SF_FORMAT_OGG | SF_FORMAT_VORBIS},
        {"MP3", SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III},
    };
    const int64_t frames = 22050;
    float *x = sine(frames, 1, 22050, 440, 0.5);
    for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
        size_t len;
        unsigned char *bytes = encode(fmts[f].format, 22050, 1, x, frames, &len);
        char what[64];
        /* cut inside the header, and in the middle of the data */
        static const size_t cuts[] = {1, 12, 30};
        for (size_t c = 0; c < 3; c++) {
            snprintf(what, sizeof what, "%s cut to %zu bytes", fmts[f].name, cuts[c]);
            expect_bad(bytes, cuts[c], KVLM_OK, NULL, what);
        }
        snprintf(what, sizeof what, "%s cut to half", fmts[f].name);
        if (strcmp(fmts[f].name, "MP3")) {
            expect_bad(bytes, len / 2, KVLM_ERR_FORMAT, NULL, what);
        } else {
            /* an MP3 is a stream of independent frames: a cut one is a shorter
             * file (its header's length is an estimate), never a crash */
            audio_buf a;
            char err[256] = "";
            kvlm_err rc = audio_load_memory(bytes, len / 2, "half.mp3", SR, &a, err, sizeof err);
            print_message("%-28s -> %s: %s (%lld samples)\n", what, kvlm_err_name(rc), err, (long long)a.n);
            if (rc == KVLM_OK) assert_true(a.n > 0 && a.n < frames * SR / 22050);
            audio_buf_free(&a);
        }
        free(bytes);
    }
    free(x);
    /* an Ogg cut after its headers, in the audio pages, and one with a flipped bit
     * in a header page (bad CRC) */
    x = sine(3 * 22050, 1, 22050, 440, 0.5);
    size_t len;
    unsigned char *bytes = encode(SF_FORMAT_OGG | SF_FORMAT_VORBIS, 22050, 1, x, 3 * 22050, &len);
    expect_bad(bytes, len * 3 / 4, KVLM_ERR_FORMAT, "end-of-stream", "OGG cut at 3/4");
    bytes[200] ^= 0x10;
    expect_bad(bytes, len, KVLM_ERR_FORMAT, "header packets", "OGG with a bad CRC");
    free(bytes);
    free(x);
}

static void test_not_audio(void **state)
{
    unsigned seed = 99;
    static const size_t sizes[] = {1, 4, 44, 100, 1000, 10000, 100000};
    unsigned char *r = malloc(100000);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (size_t i = 0; i < sizes[s]; i++) {
            seed = seed * 1103515245u + 12345u;
            r[i] = (unsigned char)(seed >> 16);
        }
        char what[64];
        snprintf(what, sizeof what, "%zu random bytes", sizes[s]);
        expect_bad(r, sizes[s], KVLM_OK, NULL, what);
    }
    free(r);
    const char *text = "Four score and seven years ago our fathers brought forth on this continent, "
                       "a new nation, conceived in Liberty.\n";
    expect_bad(text, strlen(text), KVLM_ERR_FORMAT, "bad.wav", "a text file");
    expect_bad("", 0, KVLM_ERR_FORMAT, "empty", "0 bytes");
}

static void test_bad_paths_and_args(void **state)
{
    audio_buf a;
    char err[512] = "";
    assert_int_equal(audio_load_file("/nonexistent/kvlm/none.wav", SR, &a, err, sizeof err), KVLM_ERR_IO);
    assert_non_null(strstr(err, "/nonexistent/kvlm/none.wav"));
    assert_non_null(strstr(err, "No such file"));
    assert_null(a.samples);
    assert_int_equal(audio_load_file(tmpdir, SR, &a, err, sizeof err), KVLM_ERR_IO);
    assert_non_null(strstr(err, "directory"));
    write_file(tmp_path("empty.wav"), "", 0);
    assert_int_equal(audio_load_file(tmp_path("empty.wav"), SR, &a, err, sizeof err), KVLM_ERR_FORMAT);
    assert_non_null(strstr(err, "empty"));
    write_file(tmp_path("text.wav"), "hello, world\n", 13);
    assert_int_equal(audio_load_file(tmp_path("text.wav"), SR, &a, err, sizeof err), KVLM_ERR_FORMAT);
    assert_non_null(strstr(err, "text.wav"));
    /* arguments */
    assert_int_equal(audio_load_file(NULL, SR, &a, err, sizeof err), KVLM_ERR_INVALID);
    assert_int_equal(audio_load_file(tmp_path("text.wav"), 0, &a, err, sizeof err), KVLM_ERR_INVALID);
    assert_int_equal(audio_load_memory(NULL, 10, "x", SR, &a, err, sizeof err), KVLM_ERR_INVALID);
    assert_int_equal(audio_load_memory("x", 1, "x", SR, NULL, err, sizeof err), KVLM_ERR_INVALID);
    assert_int_equal(audio_load_memory("x", 1, NULL, 10000000, &a, NULL, 0), KVLM_ERR_INVALID);
    audio_buf_free(NULL);
    audio_buf_free(&a);
    /* a caller's lower duration limit: 2 s against 1 s */
    float *x = sine(2 * SR, 1, SR, 440, 0.5);
    size_t len;
    unsigned char *bytes = encode(SF_FORMAT_WAV | SF_FORMAT_PCM_16, SR, 1, x, 2 * SR, &len);
    assert_int_equal(audio_load_memory_limit(bytes, len, "long.wav", SR, 1.0, &a, err, sizeof err), KVLM_ERR_FORMAT);
    assert_non_null(strstr(err, "longer than 1 s"));
    assert_int_equal(audio_load_memory_limit(bytes, len, "long.wav", SR, 2.5, &a, err, sizeof err), KVLM_OK);
    assert_int_equal(a.n, 2 * SR);
    audio_buf_free(&a);
    assert_int_equal(audio_load_memory_limit(bytes, len, "long.wav", SR, 0, &a, err, sizeof err), KVLM_ERR_INVALID);
    free(bytes);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_resample_sine),
        cmocka_unit_test(test_chunking_and_downmix),
        cmocka_unit_test(test_sample_counts),
        cmocka_unit_test(test_jfk_vs_sox),
        cmocka_unit_test(test_crafted_headers),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_not_audio),
        cmocka_unit_test(test_bad_paths_and_args),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
