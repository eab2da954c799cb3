/* audio_seeds.c - writes the seed corpus of fuzz/fuzz_audio.c: tiny valid files in
 * every format the loader is meant for, made with libsndfile (sox writes no MP3).
 * Room: dev/whisper/. May touch: libsndfile, libc. Built by hand, not by make:
 *   cc -O2 dev/whisper/audio_seeds.c -o /tmp/audio_seeds -lsndfile -lm && /tmp/audio_seeds fuzz/corpus/audio */
#include <math.h>
#include <sndfile.h>
#include <stdio.h>

static int seed(const char *dir, const char *name, int format, int rate, int channels, double seconds)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    SF_INFO info = {.samplerate = rate, .channels = channels, .format = format};
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    if (!sf) {
        fprintf(stderr, "%s: %s\n", path, sf_strerror(NULL));
        return 1;
    }
    const int frames = (int)(seconds * rate);
    for (int t = 0; t < frames; t++) {
        float x[2];   /* [channels] of frame t: a 440 Hz tone, and a 660 Hz one on the right */
        x[0] = (float)(0.5 * sin(2 * M_PI * 440.0 * t / rate));
        x[1] = (float)(0.3 * sin(2 * M_PI * 660.0 * t / rate));
        sf_writef_float(sf, x, 1);
    }
    sf_close(sf);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    int bad = 0;
    bad |= seed(dir, "pcm16_8k_mono.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 8000, 1, 0.1);
    bad |= seed(dir, "float_16k_stereo.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, 16000, 2, 0.02);
    bad |= seed(dir, "u8_11k_mono.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_U8, 11025, 1, 0.1);
    bad |= seed(dir, "pcm24_44k_stereo.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_24, 44100, 2, 0.05);
    bad |= seed(dir, "vorbis_22k_mono.ogg", SF_FORMAT_OGG | SF_FORMAT_VORBIS, 22050, 1, 0.1);
    bad |= seed(dir, "opus_48k_mono.opus", SF_FORMAT_OGG | SF_FORMAT_OPUS, 48000, 1, 0.1);
    bad |= seed(dir, "layer3_22k_mono.mp3", SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III, 22050, 1, 0.2);
    return bad;
}
