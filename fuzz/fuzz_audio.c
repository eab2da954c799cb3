/* fuzz_audio.c - libFuzzer target for audio in (src/audio/audio.c) and the log-mel
 * front end (src/audio/mel.c): the input is an upload. audio_load_memory_limit
 * decodes it (libsndfile: WAV, FLAC, Ogg Vorbis/Opus, MP3, and whatever else it
 * recognises), downmixes and resamples it to 16 kHz; what comes out goes through
 * mel_compute. Decoded audio is capped at FUZZ_MAX_SECONDS so that a few bytes of
 * FLAC claiming hours stay fast (the 4-hour production limit is the same code path
 * with a bigger number). Every sample is read so ASan checks the whole buffer.
 * Seeds: fuzz/corpus/audio/ (tiny valid files, made by dev/whisper/audio_seeds.c). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "audio/audio.h"
#include "audio/mel.h"

#define FUZZ_MAX_SECONDS 10.0

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    audio_buf a;
    char err[256];
    if (audio_load_memory_limit(data, size, "fuzz", MEL_SAMPLE_RATE, FUZZ_MAX_SECONDS, &a, err, sizeof err) != KVLM_OK)
        return 0;
    volatile float sink = 0;
    for (int64_t i = 0; i < a.n; i++) sink += a.samples[i];   /* a.samples: [a.n] */
    float *mel = NULL;
    int64_t n_frames = 0;
    if (mel_compute(a.samples, a.n, 80, 1, &mel, &n_frames, err, sizeof err) == KVLM_OK)
        for (int64_t i = 0; i < 80 * n_frames; i++) sink += mel[i];   /* mel: [80][n_frames] */
    free(mel);
    audio_buf_free(&a);
    (void)sink;
    return 0;
}
