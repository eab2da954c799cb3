/* pcm16k.c - dev tool (not part of the library): kvlm's audio front end as files, so
 * the Whisper references (tests/ref/) can be fed exactly the samples kvlm decodes.
 * Room: dev/whisper/. May touch: src/audio (audio.h, mel.h), libc.
 *
 *   build/pcm16k IN OUT.f32 [--mel MEL.f32] [--rate HZ] [-t THREADS]
 *     OUT.f32  [n] little-endian f32, IN decoded, mixed to mono, resampled to HZ (16000)
 *     MEL.f32  [80][mel_n_frames(n)] little-endian f32, row-major (needs HZ = 16000)
 *   stdout: one line "samples N rate HZ file_rate R channels C format F [mel_frames M]"
 * Exit 0 on success, 1 on an error (the message on stderr), 2 on usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audio/audio.h"
#include "audio/mel.h"

static int usage(void)
{
    fprintf(stderr, "usage: pcm16k IN OUT.f32 [--mel MEL.f32] [--rate HZ] [-t THREADS]\n");
    return 2;
}

/* The host is little-endian x86-64/ARM; the files are documented as little-endian. */
static int write_f32(const char *path, const float *x, int64_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return 1;
    }
    const size_t w = fwrite(x, sizeof *x, (size_t)n, f);
    if (fclose(f) != 0 || w != (size_t)n) {
        fprintf(stderr, "%s: write failed\n", path);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *mel_path = NULL;
    int rate = MEL_SAMPLE_RATE, threads = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mel") && i + 1 < argc) mel_path = argv[++i];
        else if (!strcmp(argv[i], "--rate") && i + 1 < argc) rate = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (argv[i][0] == '-' && argv[i][1]) return usage();
        else if (!in) in = argv[i];
        else if (!out) out = argv[i];
        else return usage();
    }
    if (!in || !out || threads < 1 || (mel_path && rate != MEL_SAMPLE_RATE)) return usage();
    char err[512] = "";
    audio_buf a;
    if (audio_load_file(in, rate, &a, err, sizeof err) != KVLM_OK) {
        fprintf(stderr, "pcm16k: %s\n", err);
        return 1;
    }
    int rc = write_f32(out, a.samples, a.n);
    printf("samples %lld rate %d file_rate %d channels %d format %s", (long long)a.n, a.rate, a.file_rate,
           a.file_channels, a.format);
    if (!rc && mel_path) {
        float *mel = NULL;
        int64_t nf = 0;
        if (mel_compute(a.samples, a.n, 80, threads, &mel, &nf, err, sizeof err) != KVLM_OK) {
            fprintf(stderr, "pcm16k: %s\n", err);
            rc = 1;
        } else {
            rc = write_f32(mel_path, mel, 80 * nf);
            printf(" mel_frames %lld", (long long)nf);
        }
        free(mel);
    }
    printf("\n");
    audio_buf_free(&a);
    return rc;
}
