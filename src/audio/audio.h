/* audio.h - audio in: any file libsndfile reads (WAV, FLAC, OGG/Vorbis/Opus, MP3),
 * from a path or from memory, decoded, downmixed to mono and resampled to the
 * rate the caller asks for (16 kHz for Whisper) with libsoxr.
 * Room: audio. May touch: core (errors), libsndfile, libsoxr, libc. Knows no model.
 *
 *   file -> sf_readf_float: [n_frames][n_channels] f32 in [-1, 1]
 *        -> mono: mean over channels               [n_frames]
 *        -> soxr (SOXR_HQ, f32 in/out)             [round(n_frames * rate / file_rate)]
 *
 * Bad input is an error, never a crash: a file that is not audio, truncated,
 * empty (0 frames), with 0 or more than AUDIO_MAX_CHANNELS channels, a sample rate
 * outside [AUDIO_MIN_RATE, AUDIO_MAX_RATE], longer than AUDIO_MAX_SECONDS, a data
 * chunk running past the end of the file, or a non-finite sample gives
 * KVLM_ERR_FORMAT (also for bytes libsndfile recognises as no format at all);
 * KVLM_ERR_UNSUPPORTED is a known container whose encoding libsndfile cannot decode;
 * KVLM_ERR_IO a path that cannot be opened (or a directory); KVLM_ERR_INVALID bad
 * arguments (rate outside the limits). The file name and the problem go in err.
 * kvlm prints nothing; libmpg123 (inside libsndfile, which gives no way to quiet
 * it) may warn on stderr about a damaged MP3. An MP3 cut short decodes to what is
 * there (its header's length is only an estimate); the other formats are checked.
 * A file too short to give one sample at `rate` is KVLM_ERR_FORMAT too. */
#ifndef KVLM_AUDIO_AUDIO_H
#define KVLM_AUDIO_AUDIO_H

#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"

enum { AUDIO_MAX_CHANNELS = 64, AUDIO_MIN_RATE = 1000, AUDIO_MAX_RATE = 768000 };
#define AUDIO_MAX_SECONDS (4.0 * 3600.0)   /* 4 hours */

typedef struct audio_buf {
    float *samples;        /* [n] mono f32, malloc'd; audio_buf_free releases it */
    int64_t n;
    int rate;              /* samples per second of `samples` */
    /* what the file held, for messages and stats: */
    int file_rate, file_channels;
    int64_t file_frames;
    char format[32];       /* "WAV", "FLAC", "OGG", "MP3", ... */
} audio_buf;

/* Decodes path and resamples to rate (Hz). On failure *out is zeroed. */
kvlm_err audio_load_file(const char *path, int rate, audio_buf *out, char *err, size_t errlen);
/* The same from data[0..size) (an upload); name is used in messages. */
kvlm_err audio_load_memory(const void *data, size_t size, const char *name, int rate, audio_buf *out,
                           char *err, size_t errlen);
/* audio_load_memory with a lower duration limit (0 < max_seconds <= AUDIO_MAX_SECONDS):
 * for callers that bound their work, e.g. the fuzz target. */
kvlm_err audio_load_memory_limit(const void *data, size_t size, const char *name, int rate, double max_seconds,
                                 audio_buf *out, char *err, size_t errlen);
void audio_buf_free(audio_buf *b);   /* leaves it zeroed; NULL is fine */

/* Resamples in[0..n_in) from rate_in to rate_out with soxr (HQ): *out malloc'd,
 * *n_out samples. rate_in == rate_out copies. */
kvlm_err audio_resample(const float *in, int64_t n_in, int rate_in, int rate_out, float **out, int64_t *n_out,
                        char *err, size_t errlen);

#endif
