/* audio.c - audio in: libsndfile decode, mono downmix, libsoxr resampling. See audio.h.
 * Room: src/audio/. May touch: core (errors), libsndfile, libsoxr, libc. Knows no model.
 *
 * The file is read in chunks of AUDIO_CHUNK frames and every chunk goes straight
 * through the downmix into one streaming soxr resampler, so a 4-hour 64-channel
 * file never sits in memory as [n_frames][n_channels]; only the 16 kHz mono output
 * does. audio_resample feeds the same resampler in one piece: soxr's output does
 * not depend on how its input is chunked (tests/audio/test_audio.c asserts it
 * bitwise), so a file and its decoded samples resample identically.
 *
 *   sf_readf_float  chunk: [<= AUDIO_CHUNK][n_channels] f32
 *   mono            chunk: [<= AUDIO_CHUNK] f32 (mean over channels, summed in double)
 *   soxr_process    out:   [~ n_frames * rate / file_rate] f32, grown as needed
 *   trimmed/padded to round(n_frames * rate / file_rate) at the end
 *
 * Input is hostile (uploads): every count from the header is checked against the
 * limits in audio.h before anything is allocated from it, and the decoded frame
 * count is checked again while reading (an MP3's header length is an estimate). */
#include "audio/audio.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sndfile.h>
#include <soxr.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"

enum { AUDIO_CHUNK = 4096 };   /* frames per sf_readf_float call */

/* ---- the resampler: one streaming soxr, or a plain copy when the rates agree ---- */

typedef struct resampler {
    soxr_t soxr;          /* NULL when rate_in == rate_out */
    int rate_in, rate_out;
    float *out;           /* [cap] */
    int64_t n, cap;
    int64_t n_in;         /* input samples fed so far */
    int64_t max_out;      /* refuse to grow beyond this many samples */
} resampler;

static kvlm_err rs_reserve(resampler *r, int64_t need, char *err, size_t errlen)
{
    if (need <= r->cap) return KVLM_OK;
    if (need > r->max_out)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "longer than %.0f s", AUDIO_MAX_SECONDS);
    int64_t cap = r->cap ? r->cap : 4096;
    while (cap < need) cap *= 2;
    if (cap > r->max_out) cap = r->max_out;
    float *p = realloc(r->out, (size_t)cap * sizeof *p);
    if (!p) return err_set(err, errlen, KVLM_ERR_NOMEM, "out of memory for %lld samples", (long long)cap);
    r->out = p;
    r->cap = cap;
    return KVLM_OK;
}

/* expected_in: the input length if known (sizes the first allocation), else 0 */
static kvlm_err rs_init(resampler *r, int rate_in, int rate_out, int64_t expected_in, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->rate_in = rate_in;
    r->rate_out = rate_out;
    r->max_out = (int64_t)(AUDIO_MAX_SECONDS * rate_out) + 2 * AUDIO_CHUNK;
    if (rate_in != rate_out) {
        soxr_error_t e = NULL;
        const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
        const soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
        const soxr_runtime_spec_t rt = soxr_runtime_spec(1);   /* one thread: no OpenMP */
        r->soxr = soxr_create((double)rate_in, (double)rate_out, 1, &e, &io, &q, &rt);
        if (!r->soxr || e)
            return err_set(err, errlen, KVLM_ERR_INVALID, "soxr %d -> %d Hz: %s", rate_in, rate_out,
                           e ? soxr_strerror(e) : "cannot create");
    }
    if (expected_in > 0) {
        /* sized from the header, but at most 60 s up front: a 40-byte FLAC may claim
         * 4 hours; past that the buffer doubles as decoded data actually arrives */
        int64_t want = expected_in / rate_in * rate_out + (expected_in % rate_in) * rate_out / rate_in + 64;
        if (want > (int64_t)60 * rate_out) want = (int64_t)60 * rate_out;
        return rs_reserve(r, want, err, errlen);
    }
    return KVLM_OK;
}

static void rs_free(resampler *r)
{
    if (r->soxr) soxr_delete(r->soxr);
    free(r->out);
    memset(r, 0, sizeof *r);
}

/* Feeds in[0..n); in == NULL (n == 0) flushes the resampler's tail. */
static kvlm_err rs_feed(resampler *r, const float *in, int64_t n, char *err, size_t errlen)
{
    kvlm_err rc;
    if (!r->soxr) {
        if ((rc = rs_reserve(r, r->n + n, err, errlen))) return rc;
        if (n) memcpy(r->out + r->n, in, (size_t)n * sizeof *in);
        r->n += n;
        r->n_in += n;
        return KVLM_OK;
    }
    r->n_in += n;
    for (;;) {
        if (r->cap - r->n < 1024 && (rc = rs_reserve(r, r->n + 1024 + r->cap / 2, err, errlen))) return rc;
        size_t idone = 0, odone = 0;
        soxr_error_t e = soxr_process(r->soxr, in, in ? (size_t)n : 0, &idone, r->out + r->n,
                                      (size_t)(r->cap - r->n), &odone);
        if (e) return err_set(err, errlen, KVLM_ERR_INVALID, "soxr: %s", soxr_strerror(e));
        r->n += (int64_t)odone;
        if (in) {
            in += idone;
            n -= (int64_t)idone;
            if (n == 0) return KVLM_OK;
        } else if (odone == 0) {
            return KVLM_OK;   /* flushed */
        }
    }
}

/* round(n_in * rate_out / rate_in) without overflow (n_in < 2^40, rates < 2^20) */
static int64_t rs_expected(int64_t n_in, int rate_in, int rate_out)
{
    return (n_in * 2 * rate_out + rate_in) / (2 * (int64_t)rate_in);
}

/* Flushes and hands out exactly rs_expected samples (soxr's tail may differ by a
 * sample or two; the missing end is zeros). *out owned by the caller. */
static kvlm_err rs_finish(resampler *r, float **out, int64_t *n_out, char *err, size_t errlen)
{
    kvlm_err rc = rs_feed(r, NULL, 0, err, errlen);
    if (rc) return rc;
    const int64_t want = rs_expected(r->n_in, r->rate_in, r->rate_out);
    if ((rc = rs_reserve(r, want > 0 ? want : 1, err, errlen))) return rc;
    if (r->n < want) memset(r->out + r->n, 0, (size_t)(want - r->n) * sizeof *r->out);
    r->n = want;
    *out = r->out;
    *n_out = r->n;
    r->out = NULL;
    r->cap = r->n = 0;
    return KVLM_OK;
}

static kvlm_err check_rate(int rate, char *err, size_t errlen)
{
    if (rate < AUDIO_MIN_RATE || rate > AUDIO_MAX_RATE)
        return err_set(err, errlen, KVLM_ERR_INVALID, "sample rate %d Hz outside [%d, %d]", rate,
                       AUDIO_MIN_RATE, AUDIO_MAX_RATE);
    return KVLM_OK;
}

kvlm_err audio_resample(const float *in, int64_t n_in, int rate_in, int rate_out, float **out, int64_t *n_out,
                        char *err, size_t errlen)
{
    if (out) *out = NULL;
    if (n_out) *n_out = 0;
    if (!out || !n_out || (!in && n_in) || n_in < 0)
        return err_set(err, errlen, KVLM_ERR_INVALID, "audio_resample: bad arguments");
    kvlm_err rc;
    if ((rc = check_rate(rate_in, err, errlen)) || (rc = check_rate(rate_out, err, errlen))) return rc;
    if ((double)n_in > AUDIO_MAX_SECONDS * rate_in)
        return err_set(err, errlen, KVLM_ERR_INVALID, "%lld samples at %d Hz: longer than %.0f s",
                       (long long)n_in, rate_in, AUDIO_MAX_SECONDS);
    resampler r;
    if ((rc = rs_init(&r, rate_in, rate_out, n_in, err, errlen))) goto fail;
    if ((rc = rs_feed(&r, in, n_in, err, errlen))) goto fail;
    if ((rc = rs_finish(&r, out, n_out, err, errlen))) goto fail;
    rs_free(&r);
    return KVLM_OK;
fail:
    rs_free(&r);
    return rc;
}

/* ---- libsndfile on memory ---------------------------------------------------------- */

typedef struct memfile {
    const unsigned char *data;
    sf_count_t size, pos;
} memfile;

static sf_count_t mem_len(void *user) { return ((memfile *)user)->size; }
static sf_count_t mem_tell(void *user) { return ((memfile *)user)->pos; }
static sf_count_t mem_write(const void *p, sf_count_t n, void *user) { return 0; }

static sf_count_t mem_seek(sf_count_t off, int whence, void *user)
{
    memfile *m = user;
    sf_count_t base = whence == SEEK_CUR ? m->pos : whence == SEEK_END ? m->size : 0;
    /* clamped rather than failed: a hostile header's offset must not overflow */
    if (off > m->size - base) m->pos = m->size;
    else if (off < -base) m->pos = 0;
    else m->pos = base + off;
    return m->pos;
}

static sf_count_t mem_read(void *p, sf_count_t n, void *user)
{
    memfile *m = user;
    sf_count_t left = m->size - m->pos;
    if (n > left) n = left;
    if (n <= 0) return 0;
    memcpy(p, m->data + m->pos, (size_t)n);
    m->pos += n;
    return n;
}

/* ---- Ogg: the header packets must be whole before libsndfile sees the stream -------
 * libsndfile 1.2.0 leaks libvorbis's codec set-up (5,784 bytes, found by ASan) when a
 * Vorbis stream ends or breaks before its three header packets: ogg_vorbis_open
 * returns before it installs the close function that would free them. So an Ogg
 * input is walked here first: pages of the first logical stream, each with its
 * "OggS" capture, a good CRC and the next sequence number, until three packets are
 * complete. Anything short of that is "truncated" without calling libsndfile. */

typedef struct src {
    const unsigned char *mem;   /* the bytes, or NULL to read fd */
    size_t size;
    int fd;
} src;

/* reads up to n bytes at off; returns how many (0 at the end or on an error) */
static size_t src_read(const src *s, uint64_t off, void *buf, size_t n)
{
    if (s->mem) {
        if (off >= s->size) return 0;
        if (n > s->size - off) n = (size_t)(s->size - off);
        memcpy(buf, s->mem + off, n);
        return n;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(s->fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    return got;
}

static uint32_t ogg_crc_update(const uint32_t *table, uint32_t crc, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) crc = (crc << 8) ^ table[((crc >> 24) ^ p[i]) & 0xff];
    return crc;
}

/* The page at off: its length (header + lacing + body) and its header in hdr
 * [27 + 255], or 0 when there is no whole page with a good CRC there. */
static uint64_t ogg_page_at(const src *s, const uint32_t *table, uint64_t off, unsigned char *hdr)
{
    unsigned char body[4096], crc_field[4];
    if (src_read(s, off, hdr, 27) != 27 || memcmp(hdr, "OggS", 4) != 0 || hdr[4] != 0) return 0;
    const int n_seg = hdr[26];
    if (src_read(s, off + 27, hdr + 27, (size_t)n_seg) != (size_t)n_seg) return 0;
    size_t body_len = 0;
    for (int i = 0; i < n_seg; i++) body_len += hdr[27 + i];
    /* the CRC over the header with its CRC field zeroed, then the body */
    memcpy(crc_field, hdr + 22, 4);
    memset(hdr + 22, 0, 4);
    uint32_t crc = ogg_crc_update(table, 0, hdr, 27 + (size_t)n_seg);
    memcpy(hdr + 22, crc_field, 4);
    for (size_t done = 0; done < body_len;) {
        const size_t want = body_len - done < sizeof body ? body_len - done : sizeof body;
        if (src_read(s, off + 27 + (uint64_t)n_seg + done, body, want) != want) return 0;
        crc = ogg_crc_update(table, crc, body, want);
        done += want;
    }
    const uint32_t want_crc = (uint32_t)crc_field[0] | (uint32_t)crc_field[1] << 8 |
                              (uint32_t)crc_field[2] << 16 | (uint32_t)crc_field[3] << 24;
    return crc == want_crc ? 27 + (uint64_t)n_seg + body_len : 0;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* true when the first three packets of the first logical stream are whole */
static bool ogg_headers_whole(const src *s, const uint32_t *table)
{
    unsigned char hdr[27 + 255];
    uint64_t off = 0;
    uint32_t serial = 0, seq = 0;
    int packets = 0;
    for (int page = 0; packets < 3; page++) {
        const uint64_t len = ogg_page_at(s, table, off, hdr);
        if (!len) return false;
        if (page == 0) {
            serial = le32(hdr + 14);
            seq = le32(hdr + 18);
        }
        if (le32(hdr + 14) == serial) {
            if (le32(hdr + 18) != seq) return false;   /* a page is missing */
            seq++;
            for (int i = 0; i < hdr[26] && packets < 3; i++)
                if (hdr[27 + i] < 255) packets++;
        }
        off += len;
    }
    return true;
}

/* true when the input ends with a whole page flagged end-of-stream (a cut file
 * does not: libsndfile would take its last granule as the length, silently) */
static bool ogg_ends_with_eos(const src *s, const uint32_t *table, uint64_t size)
{
    enum { MAX_PAGE = 27 + 255 + 255 * 255 };
    unsigned char hdr[27 + 255];
    const uint64_t start = size > MAX_PAGE ? size - MAX_PAGE : 0;
    unsigned char *tail = malloc(MAX_PAGE);   /* [size - start] the last bytes */
    if (!tail) return false;
    const size_t n = src_read(s, start, tail, (size_t)(size - start));
    bool eos = false;
    for (size_t i = n >= 27 ? n - 27 + 1 : 0; i-- > 0;) {
        if (memcmp(tail + i, "OggS", 4) != 0) continue;
        const uint64_t len = ogg_page_at(s, table, start + i, hdr);
        if (len && start + i + len == size) {
            eos = (hdr[5] & 0x04) != 0;
            break;
        }
    }
    free(tail);
    return eos;
}

/* KVLM_OK unless s is an Ogg stream whose header packets are not whole */
static kvlm_err check_ogg(const src *s, uint64_t size, const char *name, char *err, size_t errlen)
{
    unsigned char magic[4];
    if (src_read(s, 0, magic, 4) != 4 || memcmp(magic, "OggS", 4) != 0) return KVLM_OK;
    uint32_t table[256];   /* Ogg's CRC-32: polynomial 0x04c11db7, not reflected, init 0 */
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t r = i << 24;
        for (int b = 0; b < 8; b++) r = (r & 0x80000000u) ? (r << 1) ^ 0x04c11db7u : r << 1;
        table[i] = r;
    }
    if (!ogg_headers_whole(s, table))
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: truncated or corrupt Ogg stream (its header packets "
                       "are not whole)", name);
    if (!ogg_ends_with_eos(s, table, size))
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: truncated Ogg stream (it does not end with an "
                       "end-of-stream page)", name);
    return KVLM_OK;
}

/* ---- decode -------------------------------------------------------------------------- */

static void format_name(int format, char *buf, size_t cap)
{
    static const struct { int major; const char *name; } known[] = {
        {SF_FORMAT_WAV, "WAV"},   {SF_FORMAT_WAVEX, "WAV"}, {SF_FORMAT_RF64, "WAV"},
        {SF_FORMAT_W64, "W64"},   {SF_FORMAT_FLAC, "FLAC"}, {SF_FORMAT_OGG, "OGG"},
        {SF_FORMAT_MPEG, "MP3"},  {SF_FORMAT_AIFF, "AIFF"}, {SF_FORMAT_AU, "AU"},
        {SF_FORMAT_CAF, "CAF"},
    };
    const int major = format & SF_FORMAT_TYPEMASK;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (known[i].major == major) {
            snprintf(buf, cap, "%s", known[i].name);
            return;
        }
    SF_FORMAT_INFO fi = {.format = major};
    if (sf_command(NULL, SFC_GET_FORMAT_INFO, &fi, sizeof fi) == 0 && fi.extension) {
        size_t i = 0;
        for (; fi.extension[i] && i + 1 < cap; i++)
            buf[i] = (char)(fi.extension[i] >= 'a' && fi.extension[i] <= 'z' ? fi.extension[i] - 32
                                                                              : fi.extension[i]);
        buf[i] = 0;
    } else {
        snprintf(buf, cap, "0x%x", (unsigned)major);
    }
}

/* libsndfile's open error -> kvlm_err: a container it does not know or a broken
 * header is bad input (FORMAT); a known container with an encoding it cannot
 * decode is UNSUPPORTED; a failed read of the file itself is IO. */
static kvlm_err open_error(int sferr, const char *name, char *err, size_t errlen)
{
    const char *why = sf_error_number(sferr);
    switch (sferr) {
    case SF_ERR_UNSUPPORTED_ENCODING:
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "%s: unsupported audio encoding (%s)", name, why);
    case SF_ERR_SYSTEM:
        return err_set(err, errlen, KVLM_ERR_IO, "%s: %s", name, why);
    case SF_ERR_UNRECOGNISED_FORMAT:
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: not an audio file libsndfile can read (%s)", name, why);
    default:
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: bad audio file (%s)", name, why);
    }
}

/* The header's promises, checked before anything is allocated from them. */
static kvlm_err check_header(const SF_INFO *info, double max_s, const char *name, char *err, size_t errlen)
{
    if (info->channels < 1 || info->channels > AUDIO_MAX_CHANNELS)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: %d channels (at most %d)", name, info->channels,
                       AUDIO_MAX_CHANNELS);
    if (info->samplerate < AUDIO_MIN_RATE || info->samplerate > AUDIO_MAX_RATE)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: sample rate %d Hz outside [%d, %d]", name,
                       info->samplerate, AUDIO_MIN_RATE, AUDIO_MAX_RATE);
    /* SF_COUNT_MAX means "unknown"; the decode loop enforces the limit then */
    if (info->frames != SF_COUNT_MAX && (double)info->frames > max_s * info->samplerate)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: %lld frames at %d Hz: longer than %g s", name,
                       (long long)info->frames, info->samplerate, max_s);
    if (info->frames == 0) return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: no audio frames", name);
    return KVLM_OK;
}

/* libsndfile shortens a WAV whose data chunk runs past the end of the file to the
 * bytes present and says so only in its log ("data : 44100 (should be 19956)"); a
 * cut-off upload is an error. A streamed WAV (ffmpeg to a pipe) declares 0 or
 * 0xFFFFFFFF bytes, meaning "to the end of the file": that one is fine. */
static bool log_says_truncated(SNDFILE *sf)
{
    char log[8192] = "";
    sf_command(sf, SFC_GET_LOG_INFO, log, sizeof log);
    log[sizeof log - 1] = 0;
    for (const char *p = log; (p = strstr(p, "\ndata : ")); p++) {
        unsigned long long said, present;
        if (sscanf(p, "\ndata : %llu (should be %llu)", &said, &present) == 2 && said > present &&
            said != 0xffffffffull)
            return true;
    }
    return false;
}

/* Decodes an open sf into out; closes sf. */
static kvlm_err decode(SNDFILE *sf, const SF_INFO *info, double max_s, const char *name, int rate, audio_buf *out,
                       char *err, size_t errlen)
{
    resampler r;
    float *buf = NULL, *mono = NULL;
    kvlm_err rc = check_header(info, max_s, name, err, errlen);
    memset(&r, 0, sizeof r);
    if (rc) goto fail;
    const int major = info->format & SF_FORMAT_TYPEMASK;
    if (major != SF_FORMAT_MPEG && log_says_truncated(sf)) {
        rc = err_set(err, errlen, KVLM_ERR_FORMAT, "%s: truncated (the data ends before its header says)", name);
        goto fail;
    }
    const int c = info->channels;
    const int64_t max_frames = (int64_t)(max_s * info->samplerate);
    const bool exact_len = major != SF_FORMAT_MPEG && info->frames != SF_COUNT_MAX;
    if ((rc = rs_init(&r, info->samplerate, rate, info->frames != SF_COUNT_MAX ? info->frames : 0, err, errlen)))
        goto fail;
    buf = malloc((size_t)AUDIO_CHUNK * (size_t)c * sizeof *buf);   /* [AUDIO_CHUNK][c] */
    mono = malloc((size_t)AUDIO_CHUNK * sizeof *mono);             /* [AUDIO_CHUNK] */
    if (!buf || !mono) {
        rc = err_set(err, errlen, KVLM_ERR_NOMEM, "%s: out of memory", name);
        goto fail;
    }
    int64_t total = 0;
    for (;;) {
        const sf_count_t got = sf_readf_float(sf, buf, AUDIO_CHUNK);
        if (got <= 0) break;
        if (total + got > max_frames) {
            rc = err_set(err, errlen, KVLM_ERR_FORMAT, "%s: longer than %g s", name, max_s);
            goto fail;
        }
        /* buf: [got][c] -> mono: [got] */
        for (sf_count_t t = 0; t < got; t++) {
            double s = 0;
            for (int ch = 0; ch < c; ch++) s += buf[t * c + ch];
            if (!isfinite(s)) {
                rc = err_set(err, errlen, KVLM_ERR_FORMAT, "%s: sample %lld is not a finite number", name,
                             (long long)(total + t));
                goto fail;
            }
            mono[t] = (float)(s / c);
        }
        if ((rc = rs_feed(&r, mono, got, err, errlen))) {
            err_prefix(err, errlen, rc, "%s", name);
            goto fail;
        }
        total += got;
    }
    if (sf_error(sf) != SF_ERR_NO_ERROR) {
        rc = err_set(err, errlen, KVLM_ERR_FORMAT, "%s: decoding failed after %lld frames: %s", name,
                     (long long)total, sf_strerror(sf));
        goto fail;
    }
    if (total == 0) {
        rc = err_set(err, errlen, KVLM_ERR_FORMAT, "%s: no audio frames", name);
        goto fail;
    }
    if (exact_len && total < info->frames) {
        rc = err_set(err, errlen, KVLM_ERR_FORMAT, "%s: truncated: %lld of %lld frames decoded", name,
                     (long long)total, (long long)info->frames);
        goto fail;
    }
    if (rs_expected(total, info->samplerate, rate) == 0) {
        rc = err_set(err, errlen, KVLM_ERR_FORMAT, "%s: too short (%lld frames at %d Hz is no sample at %d Hz)",
                     name, (long long)total, info->samplerate, rate);
        goto fail;
    }
    if ((rc = rs_finish(&r, &out->samples, &out->n, err, errlen))) goto fail;
    out->rate = rate;
    out->file_rate = info->samplerate;
    out->file_channels = c;
    out->file_frames = total;
    format_name(info->format, out->format, sizeof out->format);
    rs_free(&r);
    free(buf);
    free(mono);
    sf_close(sf);
    return KVLM_OK;
fail:
    rs_free(&r);
    free(buf);
    free(mono);
    sf_close(sf);
    return rc;
}

kvlm_err audio_load_memory(const void *data, size_t size, const char *name, int rate, audio_buf *out,
                           char *err, size_t errlen)
{
    return audio_load_memory_limit(data, size, name, rate, AUDIO_MAX_SECONDS, out, err, errlen);
}

kvlm_err audio_load_memory_limit(const void *data, size_t size, const char *name, int rate, double max_seconds,
                                 audio_buf *out, char *err, size_t errlen)
{
    if (out) memset(out, 0, sizeof *out);
    if (!name) name = "audio";
    if (!out || (!data && size) || !(max_seconds > 0 && max_seconds <= AUDIO_MAX_SECONDS))
        return err_set(err, errlen, KVLM_ERR_INVALID, "audio_load_memory: bad arguments");
    kvlm_err rc = check_rate(rate, err, errlen);
    if (rc) return rc;
    if (size == 0) return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: empty (0 bytes)", name);
    if (size > (size_t)INT64_MAX / 2)
        return err_set(err, errlen, KVLM_ERR_INVALID, "%s: %zu bytes is too large", name, size);
    const src s = {.mem = data, .size = size, .fd = -1};
    if ((rc = check_ogg(&s, size, name, err, errlen))) return rc;
    memfile m = {.data = data, .size = (sf_count_t)size, .pos = 0};
    SF_VIRTUAL_IO vio = {.get_filelen = mem_len, .seek = mem_seek, .read = mem_read,
                         .write = mem_write, .tell = mem_tell};
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open_virtual(&vio, SFM_READ, &info, &m);
    if (!sf) return open_error(sf_error(NULL), name, err, errlen);
    return decode(sf, &info, max_seconds, name, rate, out, err, errlen);
}

kvlm_err audio_load_file(const char *path, int rate, audio_buf *out, char *err, size_t errlen)
{
    if (out) memset(out, 0, sizeof *out);
    if (!out || !path) return err_set(err, errlen, KVLM_ERR_INVALID, "audio_load_file: bad arguments");
    kvlm_err rc = check_rate(rate, err, errlen);
    if (rc) return rc;
    /* opened here, not by sf_open, so that a missing or unreadable file is an IO
     * error with errno's reason rather than libsndfile's "format not recognised" */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(err, errlen, KVLM_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
        close(fd);
        return err_set(err, errlen, KVLM_ERR_IO, "%s: %s", path, S_ISDIR(st.st_mode) ? "is a directory" : strerror(errno));
    }
    if (S_ISREG(st.st_mode) && st.st_size == 0) {
        close(fd);
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: empty (0 bytes)", path);
    }
    const src s = {.mem = NULL, .size = 0, .fd = fd};
    if (S_ISREG(st.st_mode) && (rc = check_ogg(&s, (uint64_t)st.st_size, path, err, errlen))) {
        close(fd);
        return rc;
    }
    SF_INFO info;
    memset(&info, 0, sizeof info);
    /* 0: libsndfile never closes fd (it would on a failed open with 1), we do */
    SNDFILE *sf = sf_open_fd(fd, SFM_READ, &info, 0);
    rc = sf ? decode(sf, &info, AUDIO_MAX_SECONDS, path, rate, out, err, errlen) : open_error(sf_error(NULL), path, err, errlen);
    close(fd);
    return rc;
}

void audio_buf_free(audio_buf *b)
{
    if (!b) return;
    free(b->samples);
    memset(b, 0, sizeof *b);
}
