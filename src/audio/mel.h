/* mel.h - Whisper's log-mel spectrogram (faster-whisper 1.2.1 FeatureExtractor,
 * ../shared/WHISPER.md section 3), with the FFT through FFTW3 (single precision).
 * Room: audio. May touch: core (errors), FFTW3, libc. Knows no model file.
 *
 *   samples [n] (16 kHz mono) -> pad MEL_HOP zeros at the end
 *   -> STFT, center: reflect-pad n_fft/2 both sides, periodic Hann(400), hop 160
 *      frames = 1 + (n + 160) / 160; the last frame dropped
 *   -> power |X|^2: [n_frames][201] -> Slaney mel filterbank [n_mels][201]
 *   -> log10(max(mel, 1e-10)), then max(x, global max - 8), then (x + 4) / 4
 *   out: [n_mels][n_frames] row-major (a mel bin's frames adjacent, as the
 *        encoder's first convolution reads them)
 * The maximum is over the whole input, not per 30-s window.
 *
 * mel_filters builds the Slaney filterbank from its formula (librosa htk=False,
 * norm="slaney"): linear below 1 kHz (200/3 Hz per mel), logarithmic above
 * (step ln(6.4)/27), n_mels + 2 edges from 0 to sr/2, each triangle scaled by
 * 2 / (f[i+2] - f[i]). */
#ifndef KVLM_AUDIO_MEL_H
#define KVLM_AUDIO_MEL_H

#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"

enum { MEL_SAMPLE_RATE = 16000, MEL_N_FFT = 400, MEL_HOP = 160, MEL_N_BINS = MEL_N_FFT / 2 + 1 };

/* filters: [n_mels][MEL_N_BINS] for a sample rate sr and n_fft MEL_N_FFT */
void mel_filters(float *filters, int64_t n_mels, int sr);

/* Frames mel_compute produces for n samples: (n + MEL_HOP) / MEL_HOP (the STFT's
 * 1 + (n + 160) / 160 minus the dropped last frame). */
int64_t mel_n_frames(int64_t n);

/* out: [n_mels][mel_n_frames(n)] f32, malloc'd into *out. n_threads >= 1 splits
 * frames. n == 0 gives KVLM_ERR_INVALID; out of memory KVLM_ERR_NOMEM. */
kvlm_err mel_compute(const float *samples, int64_t n, int64_t n_mels, int n_threads, float **out,
                     int64_t *n_frames, char *err, size_t errlen);

#endif
